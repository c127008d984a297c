"""mmpool.vllm against the documented behaviour of the pure-Python module it replaces."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

import mmpool
from conftest import run_python, wait_until
from mmpool.vllm import (
    MultiModalGPUMemoryLease,
    MultiModalGPUMemoryPool,
    get_mm_gpu_ipc_pool,
    maybe_init_mm_gpu_ipc_pool,
    reserve_mm_ipc_gpu_memory,
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


# reserve_mm_ipc_gpu_memory: vLLM's engine worker's arithmetic, with its
# figures written out here (128 MiB of surfaces per hardware decoder, a CUDA
# context of int(1.8 * 1024) MiB per API server, two decoders by default).
MIB = 1 << 20
SURFACES = 128 * MIB
CONTEXT = int(1.8 * 1024 * MIB)


class MultiModalConfig:
    """The part of vLLM's MultiModalConfig that the reservation reads."""

    def __init__(self, gib, video=None, gpu=True):
        self.mm_ipc_gpu_memory_gb = gib
        self.media_io_kwargs = {} if video is None else {"video": video}
        self._gpu = gpu

    def use_gpu_video_backend(self):
        return self._gpu


def test_reserve_without_a_multimodal_config_reserves_nothing():
    assert reserve_mm_ipc_gpu_memory(10 * GIB, None, 4) == 10 * GIB


def test_reserve_counts_the_budget_once_and_decoders_per_api_server():
    config = MultiModalConfig(2.0, {"video_backend": "pynvvideocodec", "hw_decoders": 3})
    left = reserve_mm_ipc_gpu_memory(40 * GIB, config, api_process_count=4)
    assert left == 40 * GIB - 2 * GIB - 4 * (3 * SURFACES + CONTEXT)


def test_reserve_uses_two_decoders_by_default_and_one_for_other_gpu_backends(monkeypatch):
    monkeypatch.delenv("VLLM_VIDEO_LOADER_BACKEND", raising=False)
    nv = MultiModalConfig(1.0, {"backend": "pynvvideocodec"})
    assert reserve_mm_ipc_gpu_memory(20 * GIB, nv, 2) == 20 * GIB - GIB - 2 * (2 * SURFACES + CONTEXT)
    other = MultiModalConfig(1.0, {"video_backend": "opencv"})
    assert reserve_mm_ipc_gpu_memory(20 * GIB, other, 2) == 20 * GIB - GIB - 2 * (SURFACES + CONTEXT)
    # the environment names the loader when the config does not
    monkeypatch.setenv("VLLM_VIDEO_LOADER_BACKEND", "pynvvideocodec")
    assert reserve_mm_ipc_gpu_memory(20 * GIB, MultiModalConfig(1.0), 1) == 19 * GIB - 2 * SURFACES - CONTEXT


def test_reserve_without_a_gpu_video_backend_reserves_only_the_budget():
    config = MultiModalConfig(1.5, {"video_backend": "pynvvideocodec"}, gpu=False)
    assert reserve_mm_ipc_gpu_memory(10 * GIB, config, 8) == 10 * GIB - int(1.5 * GIB)
    assert reserve_mm_ipc_gpu_memory(10 * GIB, MultiModalConfig(0.0, gpu=False), 8) == 10 * GIB


def test_reserve_treats_a_process_count_below_one_as_one():
    config = MultiModalConfig(1.0, {"video_backend": "opencv"})
    assert reserve_mm_ipc_gpu_memory(10 * GIB, config, 0) == 9 * GIB - SURFACES - CONTEXT


def test_reserve_accepts_plain_numbers():
    assert reserve_mm_ipc_gpu_memory(10 * GIB, 2.0, 3) == 8 * GIB
    assert reserve_mm_ipc_gpu_memory(10 * GIB, 2.0, 3, fixed_bytes_per_server=MIB) == 8 * GIB - 3 * MIB
    config = MultiModalConfig(1.0, {"video_backend": "pynvvideocodec"})
    assert reserve_mm_ipc_gpu_memory(10 * GIB, config, 2, fixed_bytes_per_server=0) == 9 * GIB
    with pytest.raises(ValueError, match="fixed_bytes_per_server"):
        reserve_mm_ipc_gpu_memory(10 * GIB, 1.0, 1, fixed_bytes_per_server=-1)


@pytest.mark.parametrize("decoders", [0, -1, True, 2.0])
def test_reserve_refuses_a_bad_decoder_count_as_vllm_does(decoders):
    config = MultiModalConfig(1.0, {"video_backend": "pynvvideocodec", "hw_decoders": decoders})
    with pytest.raises(ValueError, match="hw_decoders must be a positive integer"):
        reserve_mm_ipc_gpu_memory(10 * GIB, config, 1)


def test_reserve_names_all_three_figures_when_nothing_is_left():
    config = MultiModalConfig(4.0, {"video_backend": "pynvvideocodec", "hw_decoders": 2})
    reserved = 4 * GIB + 2 * (2 * SURFACES + CONTEXT)  # 8.1 GiB
    with pytest.raises(ValueError) as info:
        reserve_mm_ipc_gpu_memory(reserved, config, 2)  # exactly nothing left is refused too
    message = str(info.value)
    assert "reserves 8.1 GiB (4.0 GiB raw-frame budget, 4.1 GiB decoder cache budget)" in message
    assert "only 8.1 GiB is available for the KV cache" in message
    assert "mm_ipc_gpu_memory_gb" in message
    assert reserve_mm_ipc_gpu_memory(reserved + 1, config, 2) == 1  # one byte more is enough


def test_api_servers_share_one_named_pool_through_the_environment(shared_name):
    """The README's recipe: each server installs the pool MMPOOL_SHARED_NAME
    names as vLLM's pool and sees the whole budget and the others' holdings."""
    code = f"""
        import os, sys
        os.environ.update(MMPOOL_SHARED_NAME={shared_name!r}, MMPOOL_SHARED_GIB="1")
        import mmpool, mmpool.vllm
        mmpool.vllm.set_mm_gpu_ipc_pool(mmpool.global_pool(required=True))
        pool = mmpool.vllm.get_mm_gpu_ipc_pool()
        lease = pool.acquire(1000)
        print(type(pool).__name__, pool.total_bytes, pool.available_bytes)
        sys.stdout.flush()
        sys.stdin.readline()
    """
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().split() == ["MultiModalGPUMemoryPool", str(GIB), str(GIB - 1000)]
        second = run_python(code.replace("sys.stdin.readline()", ""))
        assert second.returncode == 0, second.stderr
        assert second.stdout.split() == ["MultiModalGPUMemoryPool", str(GIB), str(GIB - 2000)]
    finally:
        first.communicate("\n", timeout=30)


def test_reserve_reads_a_named_shared_pools_total_and_reservations(shared_name):
    from mmpool.vllm import reserve_mm_ipc_gpu_memory

    pool = mmpool.SharedPool(shared_name, 3 * GIB)
    pool.set_reservation("cuda-context", GIB)
    pool.set_reservation("nvdec-surfaces", GIB // 2)
    left = reserve_mm_ipc_gpu_memory(10 * GIB, 8.0, 4, shared_pool=shared_name)
    assert left == 10 * GIB - 3 * GIB - GIB - GIB // 2  # the pool's total and reservations, not 8 GiB
    with pytest.raises(ValueError, match=r"reserves 4\.5 GiB \(3\.0 GiB raw-frame budget, 1\.5 GiB decoder"):
        reserve_mm_ipc_gpu_memory(4 * GIB, 8.0, 4, shared_pool=shared_name)


def test_the_async_pattern_waits_in_the_loop_and_decodes_in_the_executor():
    """The module docstring's flow: wait in the loop, decode in the executor,
    release. While requests wait for bytes, no work is queued for the
    executor and no worker is busy but the one decoding."""
    import asyncio
    import concurrent.futures
    import threading

    pool = MultiModalGPUMemoryPool(100)
    executor = concurrent.futures.ThreadPoolExecutor(1)
    first_running, let_go = threading.Event(), threading.Event()
    seen: list[tuple[int, int]] = []

    def decode_on_gpu(video: int) -> int:
        seen.append((video, pool.stats().in_use_bytes))  # its 60 bytes are held already
        if video == 0:
            first_running.set()
            let_go.wait(30)
        return video

    async def decode_video(video: int, nbytes: int) -> int:
        loop = asyncio.get_running_loop()
        async with pool.acquire_async(nbytes, timeout=30) as lease:
            assert isinstance(lease, MultiModalGPUMemoryLease)
            return await loop.run_in_executor(executor, decode_on_gpu, video)

    async def main() -> list[int]:
        tasks = [asyncio.ensure_future(decode_video(i, 60)) for i in range(6)]
        while not (first_running.is_set() and pool.stats().waiters == 5):
            await asyncio.sleep(0.001)
        assert executor._work_queue.qsize() == 0  # the five wait in the loop, not for a worker
        let_go.set()
        return await asyncio.gather(*tasks)

    try:
        assert asyncio.run(main()) == list(range(6))
    finally:
        executor.shutdown()
    assert seen == [(i, 60) for i in range(6)]
    assert (pool.available_bytes, pool.stats().outstanding_leases) == (100, 0)
