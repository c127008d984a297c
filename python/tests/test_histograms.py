"""The wait and request-size histograms in ``PoolStats``: sizes land in their
bucket exactly; a wait at least as long as a known hold lands in a bucket at
least that long; a shared pool's histograms are the merge over its processes."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import time

import mmpool
from conftest import wait_until

DELAY_S = 0.02


def nonzero(histogram):
    return [(le, count) for le, count in histogram if count]


def test_the_buckets_are_the_documented_ones():
    s = mmpool.Pool(100).stats()
    waits = [le for le, _ in s.wait_histogram]
    assert waits[:4] == [1e-06, 2e-06, 5e-06, 1e-05]
    assert waits[-2:] == [100.0, math.inf] and len(waits) == 26
    sizes = [le for le, _ in s.request_size_histogram]
    assert sizes[:3] == [4096, 16384, 65536]
    assert sizes[-2:] == [2**60, math.inf] and len(sizes) == 26
    assert all(count == 0 for _, count in s.wait_histogram + s.request_size_histogram)


def test_sizes_land_in_their_bucket():
    pool = mmpool.Pool(2**30)
    for n in (1, 4096, 4097, 2**20, 2**20 + 1):
        pool.acquire(n).release()
    s = pool.stats()
    assert nonzero(s.request_size_histogram) == [(4096, 2), (16384, 1), (2**20, 1), (2**22, 1)]
    assert s.request_bytes_total == 1 + 4096 + 4097 + 2**20 + 2**20 + 1
    assert s.grants == 5


def held_then_released_after(pool: mmpool.Pool, nbytes: int, delay_s: float) -> threading.Thread:
    """Holds all of ``pool`` and, once a request is in line, has a timer
    thread release it ``delay_s`` later."""
    held = pool.acquire(pool.total_bytes)

    def release_later() -> None:
        wait_until(lambda: pool.stats().waiters == 1, "a request is in line")
        start = time.monotonic()
        while time.monotonic() - start < delay_s:
            time.sleep(delay_s / 4)
        held.release()

    timer = threading.Thread(target=release_later)
    timer.start()
    return timer


def assert_one_wait_of_at_least(s: mmpool.PoolStats, delay_s: float) -> None:
    landed = nonzero(s.wait_histogram)
    assert sum(count for _, count in landed) == s.waited_grants == 1
    assert all(le >= delay_s for le, _ in landed), landed
    assert s.wait_ns_total >= delay_s * 1e9


def test_a_known_wait_lands_at_or_above_its_bucket():
    pool = mmpool.Pool(100)
    timer = held_then_released_after(pool, 100, DELAY_S)
    pool.acquire(30).release()  # waits for the timer's release
    timer.join()
    assert_one_wait_of_at_least(pool.stats(), DELAY_S)


def test_a_shared_pools_histograms_merge_two_processes_and_outlive_them(shared_name):
    pool = mmpool.SharedPool(shared_name, 2**20)
    pool.acquire(5000).release()  # this process: one lease, le 16384
    timer = held_then_released_after(pool, 2**20, DELAY_S)
    # Another process: a lease of 100 KiB (le 262144) after a wait of at
    # least DELAY_S, then one of 1 MiB at once; it stays attached until told
    # to go. This process's hold is one of 1 MiB too.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, mmpool
                pool = mmpool.SharedPool({shared_name!r})
                pool.acquire(100 * 1024).release()
                pool.acquire(2**20).release()
                print("done", flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "done"
        timer.join()
        attached = pool.stats()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The figures of both processes, merged: sizes exactly, the one wait at
    # least as long as the hold.
    assert nonzero(attached.request_size_histogram) == [(16384, 1), (262144, 1), (2**20, 2)]
    assert attached.request_bytes_total == 5000 + 100 * 1024 + 2 * 2**20
    assert_one_wait_of_at_least(attached, DELAY_S)
    # The child detached: its figures stay in the pool's, nothing goes back.
    gone = pool.stats()
    assert gone.request_size_histogram == attached.request_size_histogram
    assert gone.wait_histogram == attached.wait_histogram
