"""The wait and request-size histograms in ``PoolStats``: sizes land in their
bucket exactly; a wait at least as long as a known hold lands in a bucket at
least that long; a shared pool's histograms are the merge over its processes."""

from __future__ import annotations

import math
import os
import threading
import time
import uuid

import pytest

import mmpool
from conftest import run_python, wait_until

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
