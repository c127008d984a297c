"""acquire_async on a SharedPool across processes: a release in one process
wakes the event loop of another, and a process killed with coroutines in
line gives their places back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import mmpool
from conftest import LOOPS, wait_until

CHILD = """
import asyncio, sys, mmpool
kind, name, n, nbytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if kind == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()
pool = mmpool.SharedPool(name, 0, create=False)

async def one(i):
    async with pool.acquire_async(nbytes, timeout=60) as lease:
        print("granted", i, lease.nbytes, flush=True)

async def main():
    print("started", flush=True)
    await asyncio.gather(*(one(i) for i in range(n)))

loop.run_until_complete(main())
print("done", flush=True)
"""


def child(kind: str, name: str, n: int, nbytes: int) -> subprocess.Popen[str]:
    if kind == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed (it is in the test extra: pip install .[test])")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), kind, name, str(n), str(nbytes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("kind", LOOPS)
def test_a_release_in_one_process_wakes_coroutines_in_another(shared_name, kind):
    pool = mmpool.SharedPool(shared_name, 100)
    held = pool.acquire(100)
    proc = child(kind, shared_name, 3, 40)
    try:
        wait_until(lambda: pool.stats().waiters == 3, "the child's three coroutines are in line")
        held.release()  # this process's release grants two of them at once, then the third
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    lines = out.split("\n")
    assert lines[0] == "started" and lines[-2] == "done", out
    assert sorted(lines[1:4]) == ["granted 0 40", "granted 1 40", "granted 2 40"], out
    assert (pool.available_bytes, pool.stats().outstanding_leases, pool.stats().waiters) == (100, 0, 0)


@pytest.mark.parametrize("kind", LOOPS)
def test_coroutines_in_two_processes_share_one_fifo_line(shared_name, kind, run):
    """The parent's loop waits behind a child's coroutine on the same pool;
    the child's grant and release in its own loop wake the parent's."""
    import asyncio

    from conftest import until

    pool = mmpool.SharedPool(shared_name, 100)
    held = pool.acquire(100)
    proc = child(kind, shared_name, 1, 100)

    async def main() -> int:
        await until(lambda: pool.stats().waiters == 1, "the child's coroutine is in line")
        mine = asyncio.ensure_future(pool.acquire_async(100, timeout=60))
        await until(lambda: pool.stats().waiters == 2, "this loop's coroutine is in line behind it")
        held.release()  # first the child's, which releases: then this loop's
        lease = await mine
        nbytes = lease.nbytes
        lease.release()
        return nbytes

    try:
        assert run(main()) == 100
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out.split("\n")[1] == "granted 0 100", out
    assert (pool.available_bytes, pool.stats().waiters) == (100, 0)


def test_kill_9_of_a_process_with_waiting_coroutines_frees_their_places(shared_name):
    pool = mmpool.SharedPool(shared_name, 100)
    held = pool.acquire(100)
    proc = child("asyncio", shared_name, 5, 30)
    try:
        wait_until(lambda: pool.stats().waiters == 5, "the child's five coroutines are in line")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    held.release()
    # The dead process's tickets leave the line: this process gets the whole pool.
    with pool.acquire(100, timeout=30):
        pass
    wait_until(lambda: pool.stats().waiters == 0, "the dead child's places to be gone")
    assert (pool.available_bytes, pool.stats().outstanding_leases) == (100, 0)
