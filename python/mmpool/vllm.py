"""Drop-in names for vLLM's multimodal GPU IPC memory module.

A server switches from its pure-Python pool to mmpool by changing one import::

    from mmpool.vllm import (MultiModalGPUMemoryPool, get_mm_gpu_ipc_pool,
                             maybe_init_mm_gpu_ipc_pool, set_mm_gpu_ipc_pool)

Same names, signatures and behaviour (blocking acquire, idempotent release,
leases as context managers, the global pool, the budget split over API
processes), with two differences that only help: waiters are served strictly
first come, first served (a large request is never starved by small ones),
and the global pool is the C library's, shared with C/C++ decoders in the
process. Lease ids are unique integers but do not count up from 0.
"""

from __future__ import annotations

from typing import Optional

from . import _global
from ._lib import ERR_EXCEEDS_CAPACITY
from ._pool import Lease, Pool

__all__ = [
    "MultiModalGPUMemoryLease",
    "MultiModalGPUMemoryPool",
    "get_mm_gpu_ipc_pool",
    "maybe_init_mm_gpu_ipc_pool",
    "set_mm_gpu_ipc_pool",
]


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
