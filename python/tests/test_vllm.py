"""mmpool.vllm against the documented behaviour of the pure-Python module it replaces."""

from __future__ import annotations

import threading

import pytest

import mmpool
from conftest import wait_until
from mmpool.vllm import (
    MultiModalGPUMemoryLease,
    MultiModalGPUMemoryPool,
    get_mm_gpu_ipc_pool,
    maybe_init_mm_gpu_ipc_pool,
    set_mm_gpu_ipc_pool,
)

GIB = 1 << 30


@pytest.mark.parametrize("total", [0, -5])
def test_total_must_be_positive(total):
    with pytest.raises(ValueError, match="positive"):
        MultiModalGPUMemoryPool(total)


def test_acquire_returns_a_lease_with_id_and_size():
    pool = MultiModalGPUMemoryPool(1000)
    assert pool.total_bytes == 1000 and pool.available_bytes == 1000
    lease = pool.acquire(400)
    assert isinstance(lease, MultiModalGPUMemoryLease)
    assert lease.nbytes == 400 and isinstance(lease.lease_id, int)
    assert pool.available_bytes == 600
    lease.release()
    assert pool.available_bytes == 1000


def test_negative_and_too_large_requests_are_value_errors():
    pool = MultiModalGPUMemoryPool(1000)
    with pytest.raises(ValueError, match="negative"):
        pool.acquire(-1)
    with pytest.raises(ValueError) as info:
        pool.acquire(1001)
    assert "1001" in str(info.value) and "1000" in str(info.value)
    assert "--mm-ipc-gpu-memory-gb" in str(info.value)
    assert pool.available_bytes == 1000


def test_release_is_idempotent_and_the_lease_is_a_context_manager():
    pool = MultiModalGPUMemoryPool(100)
    with pytest.raises(KeyError):
        with pool.acquire(100) as lease:
            raise KeyError("decode failed")
    assert pool.available_bytes == 100
    lease.release()
    pool._release(lease)
    assert pool.available_bytes == 100
    keep = pool.acquire(30)
    lease.release()
    assert pool.available_bytes == 70
    keep.release()


def test_acquire_blocks_until_enough_is_released():
    pool = MultiModalGPUMemoryPool(100)
    first = pool.acquire(60)
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(60)))
    waiter.start()
    wait_until(lambda: pool.stats().waiters == 1, "the second request waits")
    assert got == []
    first.release()
    waiter.join(30)
    assert got[0].nbytes == 60 and pool.available_bytes == 40
    got[0].release()


def test_maybe_init_with_zero_budget_disables_gating():
    set_mm_gpu_ipc_pool(MultiModalGPUMemoryPool(10))
    assert maybe_init_mm_gpu_ipc_pool(0) is None
    assert get_mm_gpu_ipc_pool() is None
    assert maybe_init_mm_gpu_ipc_pool(0, api_process_count=0) is None


@pytest.mark.parametrize("count", [0, -3])
def test_maybe_init_refuses_non_positive_process_counts(count):
    with pytest.raises(ValueError, match="api_process_count"):
        maybe_init_mm_gpu_ipc_pool(1.0, api_process_count=count)


def test_maybe_init_splits_the_budget_evenly_and_installs_the_pool():
    pool = maybe_init_mm_gpu_ipc_pool(2.5, api_process_count=3)
    assert isinstance(pool, MultiModalGPUMemoryPool)
    assert pool.total_bytes == int(2.5 * GIB) // 3
    assert get_mm_gpu_ipc_pool() is pool


def test_set_and_get_return_the_same_object():
    pool = MultiModalGPUMemoryPool(1 << 20)
    set_mm_gpu_ipc_pool(pool)
    assert get_mm_gpu_ipc_pool() is pool
    set_mm_gpu_ipc_pool(None)
    assert get_mm_gpu_ipc_pool() is None


def test_the_vllm_global_is_the_library_global():
    pool = maybe_init_mm_gpu_ipc_pool(1.0)
    seen = mmpool.global_pool()
    assert seen is not None and seen.handle == pool.handle
    lease = pool.acquire(GIB // 2)
    assert seen.available_bytes == GIB // 2
    lease.release()
    # and the other way: a pool installed through mmpool is what vLLM code gets
    other = mmpool.Pool(77)
    mmpool.set_global_pool(other)
    got = get_mm_gpu_ipc_pool()
    assert isinstance(got, MultiModalGPUMemoryPool) and got.handle == other.handle
