"""Drop-in names for vLLM's multimodal GPU IPC memory module.

A server switches from its pure-Python pool to mmpool by changing one import,
whichever of the module's two homes it imported from
(``vllm.multimodal.gpu_ipc_memory`` or, since the move,
``vllm.frontend.processing.multimodal.gpu_ipc_memory``)::

    from mmpool.vllm import (MultiModalGPUMemoryPool, get_mm_gpu_ipc_pool,
                             maybe_init_mm_gpu_ipc_pool, set_mm_gpu_ipc_pool,
                             reserve_mm_ipc_gpu_memory)

Same names, signatures and behaviour (blocking acquire, idempotent release,
leases as context managers, the global pool, the budget split over API
processes), with two differences that only help: waiters are served strictly
first come, first served (a large request is never starved by small ones),
and the global pool is the C library's, shared with C/C++ decoders in the
process. Lease ids are unique integers but do not count up from 0.

The pool also waits in the event loop (``acquire_async``), so a request takes
a worker of the server's media executor only once its bytes are held, instead
of parking one while it waits::

    async def decode_video(video, nbytes, executor):
        pool = get_mm_gpu_ipc_pool()
        loop = asyncio.get_running_loop()
        async with pool.acquire_async(nbytes, timeout=30):   # wait in the loop, no thread
            return await loop.run_in_executor(executor, decode_on_gpu, video)
        # released here, after the decode

A request cancelled while it waits (the client went away) leaves the line;
one cancelled during the decode releases on the way out.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from . import _global, _log
from ._lib import ERR_EXCEEDS_CAPACITY
from ._pool import Lease, Pool, SharedPool

__all__ = [
    "MultiModalGPUMemoryLease",
    "MultiModalGPUMemoryPool",
    "get_mm_gpu_ipc_pool",
    "maybe_init_mm_gpu_ipc_pool",
    "reserve_mm_ipc_gpu_memory",
    "set_mm_gpu_ipc_pool",
]

GIB = 1 << 30
MIB = 1 << 20
# vLLM's figures for its GPU video decoder (PyNvVideoCodec), per API server: an
# upper bound for each hardware decoder's retained surfaces, and the CUDA
# context with the driver's own allocation.
DECODER_SURFACE_BYTES = 128 * MIB
DECODER_CUDA_CONTEXT_BYTES = int(1.8 * 1024 * MIB)
DEFAULT_HW_DECODERS = 2
GPU_VIDEO_BACKEND = "pynvvideocodec"


class MultiModalGPUMemoryLease(Lease):
    """Bytes acquired from a :class:`MultiModalGPUMemoryPool`. ``release()`` is
    idempotent; as a context manager it releases even when the body raises."""

    __slots__ = ()

    @property
    def lease_id(self) -> int:
        return self.id


class MultiModalGPUMemoryPool(Pool):
    """Blocking byte-counting pool for front-end GPU multimodal memory; every
    method may be called from any thread."""

    _lease_class = MultiModalGPUMemoryLease

    def __init__(self, total_bytes: int) -> None:
        if total_bytes <= 0:
            raise ValueError(f"the pool's total_bytes must be a positive number of bytes, got {total_bytes}")
        super().__init__(total_bytes)

    # acquire_async(nbytes, timeout=None) is Pool's: the same line, waited
    # for in the event loop (see the module's docstring for the pattern).
    # acquire(nbytes, timeout=None) is Pool's compiled one: it reserves
    # nbytes, blocking until they are free (first come, first served), and
    # raises ValueError when nbytes is negative or larger than the whole pool,
    # since such a request could never be granted, in the words below.

    def _exception(self, status: int, operation: str, nbytes: int, exception: BaseException) -> BaseException:
        if status == ERR_EXCEEDS_CAPACITY:
            return ValueError(
                f"Multimodal GPU decode requested {nbytes} bytes, more than the total pool size of "
                f"{self.total_bytes} bytes, so it could never be granted. Raise --mm-ipc-gpu-memory-gb "
                "or send smaller multimodal inputs."
            )
        return exception

    def _release(self, lease: Lease) -> None:
        lease.release()


def get_mm_gpu_ipc_pool() -> Optional[MultiModalGPUMemoryPool]:
    """The process-global pool, or ``None`` when gating is disabled."""
    return _global.lookup(MultiModalGPUMemoryPool)


def set_mm_gpu_ipc_pool(pool: Optional[Pool]) -> None:
    """Installs the process-global pool (``None`` disables gating)."""
    _global.install(pool)


def maybe_init_mm_gpu_ipc_pool(
    mm_ipc_gpu_memory_gb: float,
    api_process_count: int = 1,
) -> Optional[MultiModalGPUMemoryPool]:
    """Creates and installs the global pool from the configured GiB budget, each
    of ``api_process_count`` API processes getting an equal share. A budget of
    0 (or less) leaves gating disabled and returns ``None``."""
    if mm_ipc_gpu_memory_gb <= 0:
        set_mm_gpu_ipc_pool(None)
        return None
    if api_process_count <= 0:
        raise ValueError(f"api_process_count must be at least 1, got {api_process_count}")
    return _global.init(MultiModalGPUMemoryPool, mm_ipc_gpu_memory_gb, api_process_count)


def reserve_mm_ipc_gpu_memory(
    available_kv_cache_memory_bytes: int,
    mm_config: Union[Any, float, None],
    api_process_count: int = 1,
    *,
    fixed_bytes_per_server: Optional[int] = None,
    shared_pool: Optional[str] = None,
) -> int:
    """The KV-cache bytes left once the front end's GPU memory is set aside,
    as vLLM's engine worker computes them: the whole raw-frame budget
    (``mm_ipc_gpu_memory_gb``, split over the API servers, so counted once)
    plus, per API server, the bytes each holds outside the budget.

    ``mm_config`` is vLLM's ``MultiModalConfig`` (or any object with
    ``mm_ipc_gpu_memory_gb``, ``media_io_kwargs`` and
    ``use_gpu_video_backend()``), a plain number of GiB, or ``None`` (no
    multimodal processing: nothing is reserved). With a config whose video
    backend decodes on the GPU, each server holds its decoders' surfaces
    (128 MiB each, ``hw_decoders`` of them for PyNvVideoCodec, default 2) and
    its CUDA context (1.8 GiB); with a plain number, nothing unless given.
    ``fixed_bytes_per_server`` replaces that per-server figure (an mmpool
    pool's fixed reservations, say). A process count below 1 counts as 1.

    ``shared_pool`` names a shared pool the API servers draw from and record
    their fixed bytes in (:meth:`mmpool.Pool.set_reservation`): the
    raw-frame budget is then that pool's total and the per-server part the
    sum of every attached process's reservations (unless
    ``fixed_bytes_per_server`` is given), the figures of the pool itself.

    Raises ``ValueError`` naming the reservation, its raw-frame and per-server
    parts and the available bytes when nothing would be left for the KV cache.
    """
    if mm_config is None:
        return available_kv_cache_memory_bytes
    servers = max(1, api_process_count)
    if isinstance(mm_config, (int, float)) and not isinstance(mm_config, bool):
        gib, per_server = float(mm_config), 0
    else:
        gib, per_server = float(mm_config.mm_ipc_gpu_memory_gb), _decoder_bytes(mm_config)
    if fixed_bytes_per_server is not None:
        if fixed_bytes_per_server < 0:
            raise ValueError(f"fixed_bytes_per_server must not be negative, got {fixed_bytes_per_server}")
        per_server = fixed_bytes_per_server
    raw_frames = int(gib * GIB)
    fixed = servers * per_server
    if shared_pool is not None:
        stats = SharedPool(shared_pool, create=False).stats()
        raw_frames = stats.total_bytes
        if fixed_bytes_per_server is None:
            fixed, per_server = stats.reserved_bytes, stats.reserved_bytes // servers
    reserved = raw_frames + fixed
    if reserved <= 0:
        return available_kv_cache_memory_bytes
    remaining = available_kv_cache_memory_bytes - reserved
    if remaining <= 0:
        raise ValueError(
            f"frontend multimodal GPU decoding reserves {_gib(reserved)} GiB "
            f"({_gib(raw_frames)} GiB raw-frame budget, {_gib(fixed)} GiB decoder cache budget), "
            f"but only {_gib(available_kv_cache_memory_bytes)} GiB is available for the KV cache. "
            "Reduce mm_ipc_gpu_memory_gb or hw_decoders, use a different video backend, or "
            "increase gpu_memory_utilization."
        )
    _log.logger.info(
        "Reserving %s GiB of GPU memory for frontend multimodal decoding (%s GiB raw-frame "
        "budget, %s GiB decoder+CUDA-context across %d API server(s) @ %s GiB/server); KV cache "
        "memory reduced to %s GiB.",
        _gib(reserved), _gib(raw_frames), _gib(fixed), servers, _gib(per_server), _gib(remaining),
    )
    return remaining


def _decoder_bytes(mm_config: Any) -> int:
    """One API server's decoder surfaces and CUDA context, by vLLM's rule: none
    unless the configured video backend decodes on the GPU."""
    if not mm_config.use_gpu_video_backend():
        return 0
    video = (getattr(mm_config, "media_io_kwargs", None) or {}).get("video", {})
    loader = video.get("video_backend") or os.environ.get("VLLM_VIDEO_LOADER_BACKEND", "opencv")
    decoders = 1
    if GPU_VIDEO_BACKEND in (loader, video.get("backend")):
        decoders = video.get("hw_decoders", DEFAULT_HW_DECODERS)
        if isinstance(decoders, bool) or not isinstance(decoders, int) or decoders < 1:
            raise ValueError("hw_decoders must be a positive integer")
    return DECODER_SURFACE_BYTES * decoders + DECODER_CUDA_CONTEXT_BYTES


def _gib(nbytes: int) -> float:
    """Bytes as GiB rounded to two places, as vLLM's messages print them."""
    return round(nbytes / GIB, 2)
