"""The process's global pool. It lives in the C library, so Python, C and C++
code in one process see the same pool whoever installed it."""

from __future__ import annotations

import math
from ctypes import byref, c_void_p
from typing import Optional

from ._lib import check, lib
from ._pool import P, Pool, wrap_new_reference

# The object last installed from Python, so that reading the global back gives
# that very object while it is still the one installed.
_installed: Optional[Pool] = None


def lookup(cls: type[P]) -> P | None:
    address = lib.mmpool_global()
    installed = _installed
    if address and installed is not None and installed.handle == address and isinstance(installed, cls):
        lib.mmpool_unref(address)
        return installed  # type: ignore[return-value]
    return wrap_new_reference(address, cls)


def install(pool: Pool | None) -> None:
    global _installed
    if pool is not None and not isinstance(pool, Pool):
        raise TypeError(f"expected an mmpool.Pool or None, got {type(pool).__name__}")
    check(lib.mmpool_set_global(None if pool is None else pool._handle))
    _installed = pool


def init(cls: type[P], gib: float, api_process_count: int) -> P | None:
    global _installed
    count = api_process_count.__index__()
    if not isinstance(gib, (int, float)):
        raise TypeError(f"the budget must be a number of GiB, got {type(gib).__name__}")
    enabled = math.isnan(gib) or gib > 0
    if enabled and not 1 <= count <= 0xFFFF_FFFF:
        raise ValueError(f"api_process_count must be a positive number of processes, got {count}")
    out = c_void_p()
    check(lib.mmpool_init_global(float(gib), count if enabled else 1, byref(out)))
    pool = wrap_new_reference(out.value, cls)
    _installed = pool
    return pool


def global_pool() -> Pool | None:
    """The process's global pool, or ``None`` when gating is disabled. The same
    pool that ``mmpool_global()`` returns to C code in this process."""
    return lookup(Pool)


def set_global_pool(pool: Pool | None) -> None:
    """Installs ``pool`` as the process's global pool (``None`` disables
    gating), for Python and C code alike."""
    install(pool)


def init_global_pool(gib: float, api_process_count: int = 1) -> Pool | None:
    """Creates and installs the global pool from a budget of ``gib`` GiB split
    evenly over ``api_process_count`` processes: this process gets
    ``floor(gib * 2**30) // api_process_count`` bytes, and the ``mmpool`` logger
    says so. ``gib <= 0`` disables gating and returns ``None``.

    Raises ``ValueError`` for a process count below 1, a NaN or infinite
    budget, or a share below one byte.
    """
    return init(Pool, gib, api_process_count)
