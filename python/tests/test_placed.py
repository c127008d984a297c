"""Placed pools from Python: Pool(total, placed=True, alignment=...),
Lease.offset, the fragmentation figures in PoolStats, FIFO with a large
request at the head, resize in place, split/merge and hand-off tokens."""

from __future__ import annotations

import threading

import pytest

import mmpool
from conftest import wait_until


def test_offsets_are_aligned_and_disjoint():
    pool = mmpool.Pool(4096, placed=True)
    assert (pool.placed, pool.alignment) == (True, 256)
    a, b, c = pool.acquire(100), pool.try_acquire(300), pool.acquire(256, timeout=0)
    assert [x.offset for x in (a, b, c)] == [0, 256, 768]
    s = pool.stats()
    assert (s.available_bytes, s.free_ranges, s.largest_free_range) == (4096 - 656, 3, 4096 - 1024)
    b.release()
    with pytest.raises(ValueError, match="Lease.offset"):
        b.offset
    a.release()
    c.release()
    s = pool.stats()
    assert (s.available_bytes, s.free_ranges, s.largest_free_range) == (4096, 1, 4096)


def test_bad_alignments_and_plain_pools():
    for bad in (0, 3, 384):
        with pytest.raises(ValueError, match="power of two"):
            mmpool.Pool(4096, placed=True, alignment=bad)
    assert mmpool.Pool(1 << 20, placed=True, alignment=4096).alignment == 4096
    plain = mmpool.Pool(1000)
    assert (plain.placed, plain.alignment) == (False, 0)
    lease = plain.acquire(10)
    with pytest.raises(ValueError, match="not placed"):
        lease.offset
    s = plain.stats()
    assert (s.largest_free_range, s.free_ranges) == (990, 1)
    with pytest.raises(ValueError):
        mmpool.Pool(4096, placed=True).resize(8192)


def test_a_large_request_at_the_head_is_not_passed():
    pool = mmpool.Pool(1024, placed=True)
    quarters = [pool.try_acquire(256) for _ in range(4)]
    quarters[0].release()
    quarters[2].release()
    assert pool.available_bytes == 512
    assert pool.try_acquire(512) is None, "512 bytes free, but in two ranges"
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(512)))
    waiter.start()
    wait_until(lambda: pool.stats().waiters == 1, "the large request is in line")
    assert pool.try_acquire(1) is None, "a small request does not pass the head"
    quarters[1].release()
    waiter.join()
    assert got[0].offset == 0
    got[0].release()
    quarters[3].release()


def test_resize_split_merge_and_share_keep_ranges():
    pool = mmpool.Pool(8192, placed=True)
    a, b = pool.acquire(1000), pool.acquire(1000)
    assert b.offset == 1024
    a.resize(1024)
    with pytest.raises(TimeoutError):
        a.resize(1025)
    assert a.nbytes == 1024
    a.resize(512)
    tail = a.split(200)
    assert tail.offset == 312
    with pytest.raises(ValueError, match="adjacent"):
        a.merge(b)
    a.merge(tail)
    assert a.nbytes == 512
    token = b.share(1)
    assert pool.stats().free_ranges == 2
    pool.complete(token, 0)
    s = pool.stats()
    assert (s.free_ranges, s.available_bytes) == (1, 8192 - 512)
    a.release()


def test_shared_placed_pool_shares_its_ranges(tmp_path):
    import os
    import uuid

    name = f"pytest-placed-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    pool = mmpool.SharedPool(name, 4096, placed=True, alignment=512)
    try:
        other = mmpool.SharedPool(name, 0)
        assert (other.placed, other.alignment) == (True, 512)
        with pytest.raises(ValueError, match="alignment"):
            mmpool.SharedPool(name, 0, placed=True, alignment=256)
        a, b = pool.acquire(100), other.acquire(100)
        assert (a.offset, b.offset) == (0, 512)
        s = other.stats()
        assert (s.available_bytes, s.free_ranges, s.largest_free_range) == (4096 - 200, 2, 4096 - 1024)
        a.release()
        b.release()
        assert pool.stats().free_ranges == 1
    finally:
        mmpool.SharedPool.unlink(name)
