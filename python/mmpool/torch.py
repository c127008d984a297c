"""PyTorch's CUDA allocations, paid for by mmpool's global pool.

PyTorch's pluggable allocator hands every CUDA tensor allocation to
``mmpool_torch_alloc`` and every free to ``mmpool_torch_free`` in the very
library this package loaded, so tensors share the budget with the decoders in
the process::

    import mmpool, mmpool.torch

    mmpool.init_global_pool(4.0)          # before the first CUDA tensor
    mmpool.torch.install_allocator()
    x = torch.empty(1 << 20, device="cuda")   # 1 MiB... charged to the pool

Each allocation waits in line for its bytes up to the callback timeout (60 s
unless set here or by ``MMPOOL_CUDA_TIMEOUT_MS``), then calls ``cudaMalloc``.
PyTorch does not check what an allocator returns, so an allocation that cannot
be served (timeout, closed pool, a size above the total, a CUDA error) is
logged and then, by default, aborts the process with the reason on stderr,
rather than handing PyTorch a tensor without memory. ``on_failure="null"``
returns NULL instead.

Importing this module needs PyTorch; without it, the import fails with a
clear :class:`ImportError`.
"""

from __future__ import annotations

import math
import warnings
from ctypes import c_int, c_uint64
from typing import Any, Optional

try:
    import torch as _torch
except ImportError as _e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "mmpool.torch needs PyTorch with CUDA support (`pip install torch`); "
        "the rest of mmpool works without it"
    ) from _e

from ._lib import LIBRARY_PATH, WAIT_FOREVER, check, lib

__all__ = ["install_allocator", "set_failure_mode", "set_timeout"]

lib.mmpool_cuda_set_callback_timeout.restype = c_int
lib.mmpool_cuda_set_callback_timeout.argtypes = [c_uint64]
lib.mmpool_torch_set_failure_mode.restype = c_int
lib.mmpool_torch_set_failure_mode.argtypes = [c_int]

_FAILURE_MODES = {"abort": 0, "null": 1}  # MMPOOL_TORCH_ABORT, MMPOOL_TORCH_RETURN_NULL

ALLOC_FUNCTION = "mmpool_torch_alloc"
FREE_FUNCTION = "mmpool_torch_free"


def set_timeout(seconds: float) -> None:
    """How long an allocation waits in line for its bytes, in seconds
    (``math.inf``: no limit; 0: no wait). Process-wide; it applies to the
    nvJPEG / nvImageCodec callbacks too."""
    seconds = float(seconds)
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"timeout must be a number of seconds >= 0 or math.inf, got {seconds!r}")
    ns = WAIT_FOREVER if math.isinf(seconds) else min(int(seconds * 1e9), WAIT_FOREVER - 1)
    check(lib.mmpool_cuda_set_callback_timeout(ns))


def set_failure_mode(mode: str) -> None:
    """What a failed allocation does after logging why: ``"abort"`` (the
    default) ends the process; ``"null"`` returns NULL to PyTorch, which then
    holds a tensor without memory that faults when used."""
    if mode not in _FAILURE_MODES:
        raise ValueError(f"on_failure must be 'abort' or 'null', got {mode!r}")
    check(lib.mmpool_torch_set_failure_mode(_FAILURE_MODES[mode]))


def install_allocator(*, timeout: Optional[float] = None, on_failure: Optional[str] = None) -> Any:
    """Makes PyTorch allocate CUDA memory through mmpool's global pool and
    returns the ``CUDAPluggableAllocator``. Call it before the first CUDA
    tensor: PyTorch cannot swap an allocator it has used.

    ``timeout`` (seconds, see :func:`set_timeout`) and ``on_failure``
    (see :func:`set_failure_mode`) change those settings when given.
    Without a global pool (see :func:`mmpool.init_global_pool`) allocations
    are not charged; a warning says so.
    """
    if timeout is not None:
        set_timeout(timeout)
    if on_failure is not None:
        set_failure_mode(on_failure)
    address = lib.mmpool_global()
    if address:
        lib.mmpool_unref(address)
    else:
        warnings.warn(
            "mmpool has no global pool: PyTorch allocations will not be charged "
            "(call mmpool.init_global_pool first)",
            RuntimeWarning,
            stacklevel=2,
        )
    allocator = _torch.cuda.memory.CUDAPluggableAllocator(LIBRARY_PATH, ALLOC_FUNCTION, FREE_FUNCTION)
    _torch.cuda.memory.change_current_allocator(allocator)
    return allocator
