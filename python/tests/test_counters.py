"""What a Python acquire counts in the pool's figures: the same as the C
calls count. A wait is not a would-block refusal (only try_acquire's are);
a timed-out acquire is exactly one timeout; an interrupted one is neither."""

from __future__ import annotations

import os
import uuid

import pytest

import mmpool
from conftest import granted_after_a_wait


@pytest.fixture(params=["local", "shared"])
def make_pool(request):
    names = []

    def make(total: int) -> mmpool.Pool:
        if request.param == "local":
            return mmpool.Pool(total)
        name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        return mmpool.SharedPool(name, total)

    yield make
    for name in names:
        mmpool.SharedPool.unlink(name)


def counts(pool: mmpool.Pool) -> tuple[int, int, int]:
    s = pool.stats()
    return s.would_blocks, s.timeouts, s.waited_grants


def test_an_acquire_that_waited_counts_no_would_block(make_pool):
    pool = make_pool(100)
    lease = granted_after_a_wait(pool, 60, timeout=60)
    assert lease.nbytes == 60
    assert counts(pool) == (0, 0, 1)  # waited once, refused never
    lease.release()


def test_a_try_acquire_refusal_is_the_one_would_block(make_pool):
    # The canary for the test above: the counter does move when it should.
    pool = make_pool(100)
    held = pool.acquire(100)
    assert pool.try_acquire(1) is None
    assert counts(pool) == (1, 0, 0)
    held.release()


@pytest.mark.parametrize("timeout", [0, 0.02])
def test_a_timed_out_acquire_counts_exactly_one_timeout(make_pool, timeout):
    pool = make_pool(100)
    held = pool.acquire(90)
    with pytest.raises(TimeoutError):
        pool.acquire(20, timeout=timeout)
    stats = pool.stats()
    assert (stats.timeouts, stats.would_blocks, stats.waiters) == (1, 0, 0)
    assert (stats.available_bytes, stats.outstanding_leases) == (10, 1)  # nothing reserved
    held.release()


def test_a_timeout_spanning_several_wait_slices_counts_once():
    old = mmpool._lib.core._set_wait_slice_ns(2_000_000)
    try:
        pool = mmpool.Pool(100)
        held = pool.acquire(100)
        with pytest.raises(TimeoutError):
            pool.acquire(1, timeout=0.05)  # about 25 slices
        assert counts(pool) == (0, 1, 0)
        held.release()
    finally:
        mmpool._lib.core._set_wait_slice_ns(old)


def test_the_python_figures_equal_those_of_the_same_calls_from_c(make_pool):
    # Python does what C's mmpool_acquire_timeout does, count for count: the
    # same sequence through both must leave the same figures.
    pool = make_pool(100)
    held = pool.acquire(100)
    for _ in range(3):
        with pytest.raises(TimeoutError):
            pool.acquire(10, timeout=0)
    assert pool.try_acquire(10) is None
    held.release()
    with pool.acquire(100, timeout=1):
        pass
    s = pool.stats()
    assert (s.timeouts, s.would_blocks, s.grants, s.waited_grants, s.waiters) == (3, 1, 2, 0, 0)
