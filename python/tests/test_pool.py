"""The Pythonic API: Pool, Lease, stats, errors."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import mmpool
from conftest import granted_after_a_wait, wait_until


def test_acquire_and_release_move_bytes():
    pool = mmpool.Pool(1000)
    assert pool.total_bytes == 1000
    lease = pool.acquire(300)
    assert lease.nbytes == 300
    assert pool.available_bytes == 700
    lease.release()
    assert pool.available_bytes == 1000


def test_release_is_idempotent():
    pool = mmpool.Pool(100)
    lease = pool.acquire(60)
    other = pool.acquire(40)
    lease.release()
    lease.release()
    assert pool.available_bytes == 60  # not 100: the second release returned nothing
    other.release()
    assert pool.available_bytes == 100


def test_lease_context_manager_releases_when_the_body_raises():
    pool = mmpool.Pool(100)
    with pytest.raises(RuntimeError, match="decode failed"):
        with pool.acquire(70) as lease:
            assert pool.available_bytes == 30
            raise RuntimeError("decode failed")
    assert lease.released
    assert pool.available_bytes == 100


def test_lease_ids_are_unique():
    pool = mmpool.Pool(100)
    leases = [pool.acquire(1) for _ in range(50)]
    assert len({lease.id for lease in leases}) == 50
    assert all(lease.id != 0 for lease in leases)


def test_zero_bytes_are_granted_even_when_the_pool_is_empty():
    pool = mmpool.Pool(10)
    with pool.acquire(10):
        with pool.acquire(0, timeout=0) as empty:
            assert empty.nbytes == 0


def test_try_acquire_returns_none_when_the_bytes_are_not_free():
    pool = mmpool.Pool(100)
    held = pool.acquire(80)
    assert pool.try_acquire(30) is None
    lease = pool.try_acquire(20)
    assert lease is not None and lease.nbytes == 20
    assert pool.available_bytes == 0
    held.release()
    lease.release()


def test_try_acquire_does_not_jump_the_line():
    pool = mmpool.Pool(100)
    held = pool.acquire(50)
    granted = []
    waiter = threading.Thread(target=lambda: granted.append(pool.acquire(100)))
    waiter.start()
    wait_until(lambda: pool.stats().waiters == 1, "the waiter is in line")
    assert pool.available_bytes == 50
    assert pool.try_acquire(10) is None  # would fit, but someone is first in line
    held.release()
    waiter.join(30)
    assert granted[0].nbytes == 100
    granted[0].release()
    assert pool.available_bytes == 100


def test_timeout_raises_timeout_error_and_reserves_nothing():
    pool = mmpool.Pool(100)
    held = pool.acquire(90)
    with pytest.raises(TimeoutError):
        pool.acquire(20, timeout=0.05)
    with pytest.raises(TimeoutError, match="longer timeout"):
        pool.acquire(20, timeout=0)
    stats = pool.stats()
    assert stats.waiters == 0
    assert stats.available_bytes == 10
    assert stats.outstanding_leases == 1
    held.release()
    assert pool.available_bytes == 100


def test_a_timed_acquire_gets_the_bytes_when_they_come_in_time():
    pool = mmpool.Pool(100)
    lease = granted_after_a_wait(pool, 50, timeout=60)
    assert lease.nbytes == 50
    lease.release()


@pytest.mark.parametrize("bad", [-1, -(2**70)])
def test_negative_sizes_are_value_errors(bad):
    pool = mmpool.Pool(100)
    with pytest.raises(ValueError, match="non-negative"):
        pool.acquire(bad)
    with pytest.raises(ValueError, match="non-negative"):
        pool.try_acquire(bad)
    # Refused in Python: the library never saw them.
    assert pool.stats().capacity_rejections == 0


def test_non_integer_sizes_are_type_errors():
    pool = mmpool.Pool(100)
    with pytest.raises(TypeError):
        pool.acquire(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        mmpool.Pool("100")  # type: ignore[arg-type]


def test_a_request_above_the_total_is_a_value_error_that_says_what_to_change():
    pool = mmpool.Pool(100)
    with pytest.raises(ValueError) as info:
        pool.acquire(101)
    message = str(info.value)
    assert "101" in message and "100" in message
    assert "raise the budget" in message
    assert pool.stats().capacity_rejections == 1
    assert pool.available_bytes == 100


@pytest.mark.parametrize("timeout", [-1, float("nan")])
def test_invalid_timeouts_are_value_errors(timeout):
    pool = mmpool.Pool(100)
    with pytest.raises(ValueError, match="timeout"):
        pool.acquire(1, timeout=timeout)
    assert pool.available_bytes == 100


@pytest.mark.parametrize("total", [0, 2**60 + 1])
def test_invalid_totals_are_value_errors(total):
    with pytest.raises(ValueError, match="between 1 and 2\\^60"):
        mmpool.Pool(total)


def test_close_wakes_waiters_with_pool_closed_error_and_release_still_works():
    pool = mmpool.Pool(100)
    held = pool.acquire(100)
    errors = []

    def wait():
        try:
            pool.acquire(10)
        except mmpool.PoolClosedError as e:
            errors.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_until(lambda: pool.stats().waiters == 1, "the waiter is in line")
    pool.close()
    waiter.join(30)
    assert len(errors) == 1 and "closed" in str(errors[0])
    assert str(errors[0]).startswith("Pool.acquire: ") and "mmpool_" not in str(errors[0])
    with pytest.raises(mmpool.PoolClosedError):
        pool.acquire(1)
    with pytest.raises(mmpool.PoolClosedError):
        pool.try_acquire(1)
    held.release()
    assert pool.available_bytes == 100
    pool.close()  # idempotent


def test_pool_context_manager_closes():
    with mmpool.Pool(10) as pool:
        pool.acquire(1).release()
    with pytest.raises(mmpool.PoolClosedError):
        pool.acquire(1)


def test_lease_resize_shrinks_and_grows():
    pool = mmpool.Pool(100)
    lease = pool.acquire(50)
    lease.resize(20)
    assert lease.nbytes == 20 and pool.available_bytes == 80
    lease.resize(90, timeout=1)
    assert lease.nbytes == 90 and pool.available_bytes == 10
    other = pool.acquire(10)
    with pytest.raises(TimeoutError):
        lease.resize(95, timeout=0.01)
    assert lease.nbytes == 90  # kept its old size
    with pytest.raises(ValueError):
        lease.resize(101)
    with pytest.raises(ValueError):
        lease.resize(-1)
    lease.release()
    other.release()
    assert pool.available_bytes == 100
    with pytest.raises(ValueError, match="released"):
        lease.resize(10)


def test_pool_resize_changes_the_total_and_grants_waiters():
    pool = mmpool.Pool(100)
    held = pool.acquire(100)
    result = []
    waiter = threading.Thread(target=lambda: result.append(pool.acquire(80)))
    waiter.start()
    wait_until(lambda: pool.stats().waiters == 1, "the waiter is in line")
    pool.resize(300)  # 200 more: the waiter is granted without any release
    waiter.join(30)
    assert pool.total_bytes == 300 and result[0].nbytes == 80
    assert pool.available_bytes == 120
    pool.resize(150)  # below what is in use: nothing is revoked
    assert pool.available_bytes == 0
    assert pool.try_acquire(1) is None
    with pytest.raises(ValueError):
        pool.resize(0)
    result[0].release()
    held.release()
    assert pool.available_bytes == 150


def test_stats_is_a_frozen_dataclass_with_the_pool_figures():
    pool = mmpool.Pool(1000)
    a = pool.acquire(300)
    b = pool.acquire(200)
    b.release()
    stats = pool.stats()
    assert isinstance(stats, mmpool.PoolStats)
    assert (stats.total_bytes, stats.available_bytes, stats.in_use_bytes) == (1000, 700, 300)
    assert stats.peak_in_use_bytes == 500
    assert stats.outstanding_leases == 1
    assert stats.grants == 2
    assert stats.waiters == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.total_bytes = 5  # type: ignore[misc]
    a.release()


def test_pools_are_independent():
    one, two = mmpool.Pool(10), mmpool.Pool(10)
    lease = one.acquire(10)
    assert two.available_bytes == 10
    lease.release()


def test_a_lease_outlives_its_pool_object():
    pool = mmpool.Pool(10)
    lease = pool.acquire(4)
    del pool  # the lease keeps the pool alive
    assert lease.pool.available_bytes == 6
    lease.release()
    assert lease.pool.available_bytes == 10


def test_acquire_takes_its_arguments_by_position_or_by_keyword():
    pool = mmpool.Pool(100)
    for lease in (pool.acquire(1), pool.acquire(2, 1.0), pool.acquire(3, timeout=None),
                  pool.acquire(nbytes=4), pool.acquire(nbytes=5, timeout=0)):
        lease.release()
    assert pool.stats().grants == 5 and pool.available_bytes == 100
    with pytest.raises(TypeError):
        pool.acquire()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        pool.acquire(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        pool.acquire(1, size=2)  # type: ignore[call-arg]
