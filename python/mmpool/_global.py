"""The process's global pool. It lives in the C library, so Python, C and C++
code in one process see the same pool whoever installed it."""

from __future__ import annotations

import math
import os
from ctypes import byref, c_void_p
from typing import Optional

from . import _log
from ._errors import GlobalPoolError
from ._lib import check, lib
from ._pool import P, Pool, wrap_new_reference

# The object last installed from Python, so that reading the global back gives
# that very object while it is still the one installed.
_installed: Optional[Pool] = None
_warned = False

ENV_NAME = "MMPOOL_SHARED_NAME"


def lookup(cls: type[P], required: bool = False) -> P | None:
    address = lib.mmpool_global()
    if not address:
        return _missing(required)
    installed = _installed
    if installed is not None and installed.handle == address and isinstance(installed, cls):
        lib.mmpool_unref(address)
        return installed  # type: ignore[return-value]
    return wrap_new_reference(address, cls)


def _missing(required: bool) -> None:
    """No global pool: says so loudly when the environment asked for one that
    could not be opened (a logging warning, once), and raises if required."""
    global _warned
    reason = _log.global_failure
    if reason is not None:
        reason = reason.split(": ", 1)[1] if reason.startswith(ENV_NAME + "=") else reason
        reason = reason.replace(" (pass 0 to accept the existing total)", "")
        message = (
            f"{os.environ.get(ENV_NAME, '')!r} is not the global pool, so nothing is gated: {reason}. "
            "A shared pool keeps its total while any process is attached: give MMPOOL_SHARED_GIB "
            "(or MMPOOL_SHARED_TOTAL_BYTES) that total, or unset both to accept it; once no process "
            "is attached, the next one to open the pool recreates it with its own total"
        )
        if not _warned:
            _warned = True
            _log.logger.warning("%s=%s", ENV_NAME, message)
        if required:
            raise GlobalPoolError(f"no global pool: {ENV_NAME}={message}")
    elif required:
        raise GlobalPoolError(
            "no global pool: none was installed (mmpool.init_global_pool or set_global_pool, or "
            f"mmpool_set_global from C), and {ENV_NAME} names no shared pool"
        )
    return None


def install(pool: Pool | None) -> None:
    global _installed
    if pool is not None and not isinstance(pool, Pool):
        raise TypeError(f"expected an mmpool.Pool or None, got {type(pool).__name__}")
    check(lib.mmpool_set_global(None if pool is None else pool.handle), "set_global_pool")
    _installed = pool
    _log.global_failure = None  # an explicit choice replaces the environment's


def init(cls: type[P], gib: float, api_process_count: int) -> P | None:
    global _installed
    count = api_process_count.__index__()
    if not isinstance(gib, (int, float)):
        raise TypeError(f"the budget must be a number of GiB, got {type(gib).__name__}")
    enabled = math.isnan(gib) or gib > 0
    if enabled and not 1 <= count <= 0xFFFF_FFFF:
        raise ValueError(f"api_process_count must be a positive number of processes, got {count}")
    out = c_void_p()
    check(lib.mmpool_init_global(float(gib), count if enabled else 1, byref(out)), "init_global_pool")
    pool = wrap_new_reference(out.value, cls, in_process=True)
    _installed = pool
    _log.global_failure = None
    return pool


def global_pool(*, required: bool = False) -> Pool | None:
    """The process's global pool, or ``None`` when gating is disabled. The same
    pool that ``mmpool_global()`` returns to C code in this process.

    On first use, with nothing installed, it attaches to the shared pool that
    ``MMPOOL_SHARED_NAME`` names. If that fails (a total in
    ``MMPOOL_SHARED_GIB`` other than the pool's, say), the ``mmpool`` logger
    warns with the reason and this returns ``None``; ``required=True`` raises
    :class:`GlobalPoolError` instead, as it does whenever there is no global pool.
    """
    return lookup(Pool, required)


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
