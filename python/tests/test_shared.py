"""mmpool.SharedPool: one budget shared by processes, through the C library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import mmpool
from conftest import ctrl_c_raises, wait_until


@pytest.fixture
def name(shared_name):
    return shared_name


def child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_share_one_budget(name):
    pool = mmpool.SharedPool(name, 1000)
    assert (pool.name, pool.total_bytes, pool.available_bytes) == (name, 1000, 1000)
    proc = child(
        f"""
        import sys, mmpool
        pool = mmpool.SharedPool({name!r}, 0, create=False)
        lease = pool.acquire(600)
        print(pool.total_bytes, flush=True)
        sys.stdin.readline() if sys.stdin else None
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1000", proc.stderr.read() if proc.stderr else ""
        # The child's 600 bytes are gone from this process's view of the pool.
        assert pool.available_bytes == 400
        assert pool.try_acquire(401) is None
        with pool.acquire(400):
            assert pool.available_bytes == 0
    finally:
        proc.kill()
        proc.wait()
    # The dead child's bytes come back to the survivors: to an acquire that
    # needs them, and to an observer looking at the figures.
    with pool.acquire(1000, timeout=10):
        pass
    wait_until(lambda: pool.stats().available_bytes == 1000, "the figures to show the bytes back")
    assert pool.stats().outstanding_leases == 0


def test_a_waiter_in_another_process_is_granted_when_bytes_come_back(name):
    pool = mmpool.SharedPool(name, 100)
    held = pool.acquire(100)
    proc = child(
        f"""
        import mmpool
        pool = mmpool.SharedPool({name!r})
        with pool.acquire(70, timeout=30) as lease:
            print("granted", lease.nbytes, flush=True)
        """
    )
    wait_until(lambda: pool.stats().waiters == 1, "the child to wait in line")
    held.release()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.split() == ["granted", "70"]
    wait_until(lambda: pool.available_bytes == 100, "the child's release")


def test_ctrl_c_in_a_shared_wait_loses_no_bytes(name):
    pool = mmpool.SharedPool(name, 10)
    held = pool.acquire(10)
    proc = child(
        ctrl_c_raises(
            f"""
            import mmpool
            pool = mmpool.SharedPool({name!r})
            try:
                pool.acquire(5)
            except KeyboardInterrupt:
                print("interrupted", pool.stats().waiters, flush=True)
            """
        )
    )
    try:
        wait_until(lambda: pool.stats().waiters == 1, "the child to wait in line")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out.split() == ["interrupted", "0"], err
    held.release()
    assert pool.available_bytes == 10


def test_attach_rules_and_errors(name):
    with pytest.raises(OSError):
        mmpool.SharedPool(name, 0, create=False)  # no such pool
    pool = mmpool.SharedPool(name, 64)
    with pytest.raises(ValueError, match="64"):
        mmpool.SharedPool(name, 65)  # a different total names both numbers
    with pytest.raises(ValueError):
        mmpool.SharedPool(name, 64, exclusive=True)
    assert mmpool.SharedPool(name).total_bytes == 64
    for bad in ["", "a/b", "x" * 65]:
        with pytest.raises(ValueError):
            mmpool.SharedPool(bad, 1)
    with pytest.raises(TypeError):
        mmpool.SharedPool(b"bytes", 1)  # type: ignore[arg-type]
    mmpool.SharedPool.unlink(name)
    with pytest.raises(OSError):
        mmpool.SharedPool.unlink(name)
    assert pool.available_bytes == 64  # attached handles keep working


def test_limits_chosen_at_creation_are_enforced_and_checked_on_attach(name):
    pool = mmpool.SharedPool(name, 100, max_processes=3, max_leases=2, max_waiters=1)
    leases = [pool.acquire(1), pool.acquire(1)]
    with pytest.raises(OSError, match="max_leases"):
        pool.acquire(1)
    for lease in leases:
        lease.release()
    with pytest.raises(ValueError, match="max_leases 2, but 5 was asked"):
        mmpool.SharedPool(name, 0, max_leases=5)
    same = mmpool.SharedPool(name, 0, max_processes=3, max_leases=2, max_waiters=1)
    assert same.total_bytes == 100
    with pytest.raises(ValueError, match="out of range"):
        mmpool.SharedPool(name + "-x", 100, max_processes=255)


def test_a_truncated_file_fails_calls_instead_of_killing_the_process(name):
    pool = mmpool.SharedPool(name, 1 << 20)
    lease = pool.acquire(1000)
    os.truncate(f"/dev/shm/mmpool.{name}", 0)
    with pytest.raises(OSError, match="was truncated"):
        pool.acquire(1, timeout=1.0)
    with pytest.raises(OSError, match="mmpool unlink"):
        lease.release()
    with pytest.raises(OSError, match="was truncated"):
        pool.stats()
    mmpool.SharedPool.unlink(name)
    fresh = mmpool.SharedPool(name, 1 << 20)
    assert fresh.available_bytes == 1 << 20


def test_a_lock_word_naming_a_live_idle_process_does_not_outlive_a_timeout(name):
    import struct
    import time

    pool = mmpool.SharedPool(name, 1000)  # the first process attached: slot 0
    proc = child(
        f"""
        import sys, time, mmpool
        pool = mmpool.SharedPool({name!r}, 0, create=False)
        print("attached", flush=True)
        time.sleep(60)
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "attached"
        # The lock word (offset 40 of the header) now names slot 1, the idle child.
        with open(f"/dev/shm/mmpool.{name}", "r+b") as f:
            f.seek(40)
            f.write(struct.pack("<I", 2 | 1 << 8))
        for timeout in (0.0, 0.2):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                pool.acquire(1, timeout=timeout)
            assert time.monotonic() - started >= timeout
    finally:
        proc.kill()
        proc.wait()
    # Its holder gone, the lock is taken over and the pool works.
    with pool.acquire(1000, timeout=10):
        pass
