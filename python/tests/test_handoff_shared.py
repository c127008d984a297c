"""Hand-offs on mmpool.SharedPool with real processes: the token travels to
consumer processes through a pipe (their stdin), as bytes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import mmpool

CONSUMER = """
import sys, mmpool
pool = mmpool.SharedPool(sys.argv[1], 0, create=False)
token = bytes.fromhex(sys.stdin.readline().strip())
part = int(sys.argv[2])
if sys.argv[3] == "complete":
    with pool.claim(token, part):
        pass
    print("completed", flush=True)
else:
    pool.claim(token, part)
    print("claimed", flush=True)
    sys.stdin.readline()  # killed here
"""


def consumer(name: str, token: bytes, part: int, how: str = "complete") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CONSUMER), name, str(part), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(token.hex() + "\n")
    proc.stdin.flush()
    return proc


def report(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def test_two_consumer_processes_complete_and_the_bytes_come_back(shared_name):
    pool = mmpool.SharedPool(shared_name, 1000, max_handoffs=8)
    lease = pool.acquire(600)
    token = lease.share(parts=2, claim_deadline=600)
    assert len(token) == 32 and lease.detached
    assert pool.available_bytes == 400 and pool.handoff_stats().held_bytes == 600
    procs = [consumer(shared_name, token, part) for part in (0, 1)]
    for proc in procs:
        assert report(proc) == "completed"
        assert proc.wait(timeout=30) == 0
    pool.wait_handoff(token, timeout=10)
    s = pool.handoff_stats()
    assert (s.outstanding, s.finished, s.expired_parts, pool.available_bytes) == (0, 1, 0, 1000)


def test_a_killed_claimant_completes_by_itself_and_a_waiting_producer_releases(shared_name):
    pool = mmpool.SharedPool(shared_name, 1000)
    lease = pool.acquire(1000)
    token = lease.share(parts=2, keep_lease=True)
    claimer = consumer(shared_name, token, 0, "claim")
    try:
        assert report(claimer) == "claimed"
    finally:
        claimer.kill()
        claimer.wait()
    finisher = consumer(shared_name, token, 1)
    assert report(finisher) == "completed"
    assert finisher.wait(timeout=30) == 0
    pool.wait_handoff(token, timeout=10)  # part 0 completed when its claimant was reclaimed
    assert pool.available_bytes == 0, "the producer kept its lease"
    lease.release()
    assert pool.available_bytes == 1000
    assert pool.handoff_stats().expired_parts == 0


def test_max_handoffs_is_a_limit_chosen_at_creation(shared_name):
    pool = mmpool.SharedPool(shared_name, 100, max_handoffs=1)
    with pytest.raises(ValueError, match="max_handoffs 1, but 2 was asked"):
        mmpool.SharedPool(shared_name, 0, create=False, max_handoffs=2)
    token = pool.acquire(10).share(parts=1)
    second = pool.acquire(10)
    with pytest.raises(OSError, match="max_handoffs"):
        second.share(parts=1)
    assert not second.detached, "a refused share keeps the lease"
    pool.complete(token, 0)
    assert pool.available_bytes == 90
    second.release()
    assert pool.available_bytes == 100
