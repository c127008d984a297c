"""The loaded C library, its prototypes, and the one place where a status code
becomes a Python exception.

Every other module of the package (and ``mmpool.torch``) calls the C ABI
through :data:`lib` and turns a failing status into an exception with
:func:`check` or :func:`error_for`. ``lib`` is a :class:`ctypes.CDLL`, so each
call releases the GIL while it runs in C.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, Structure, c_char_p, c_double, c_int, c_uint32, c_uint64, c_void_p
from typing import Any, Callable, NoReturn

from ._errors import CudaError, InternalError, PoolClosedError
from ._paths import find_library

# Status codes (enum mmpool_status).
OK = 0
ERR_NULL_ARGUMENT = 1
ERR_INVALID_ARGUMENT = 2
ERR_EXCEEDS_CAPACITY = 3
ERR_TIMEOUT = 4
ERR_WOULD_BLOCK = 5
ERR_CLOSED = 6
ERR_INVALID_LEASE = 7
ERR_SYSTEM = 8
ERR_CUDA = 9
ERR_INTERNAL = 10

WAIT_FOREVER = 2**64 - 1
"""``timeout_ns`` that waits without limit (``MMPOOL_WAIT_FOREVER``)."""
U64_MAX = 2**64 - 1


class LeaseStruct(Structure):
    """``mmpool_lease``."""

    _fields_ = [("id", c_uint64), ("nbytes", c_uint64)]


class TicketStruct(Structure):
    """``mmpool_ticket``."""

    _fields_ = [("id", c_uint64)]


STATS_FIELDS = (
    "total_bytes",
    "available_bytes",
    "in_use_bytes",
    "peak_in_use_bytes",
    "outstanding_leases",
    "waiters",
    "grants",
    "waited_grants",
    "timeouts",
    "would_blocks",
    "capacity_rejections",
    "closed_rejections",
    "wait_ns_total",
    "wait_ns_max",
    "futile_wakeups",
)


class StatsStruct(Structure):
    """``mmpool_stats``: ``size`` then the figures, all ``uint64_t``."""

    _fields_ = [("size", c_uint64)] + [(name, c_uint64) for name in STATS_FIELDS]


LOG_FN = ctypes.CFUNCTYPE(None, c_int, c_char_p, c_void_p)
"""``mmpool_log_fn``: ``void (*)(mmpool_log_level, const char *, void *)``."""

class SharedOptionsStruct(Structure):
    """``mmpool_shared_options`` (size first)."""

    _fields_ = [
        ("size", c_uint64),
        ("total_bytes", c_uint64),
        ("flags", c_uint32),
        ("max_processes", c_uint32),
        ("max_leases", c_uint32),
        ("max_waiters", c_uint32),
    ]


_POOL = c_void_p
_LEASE_P = POINTER(LeaseStruct)

# name: (restype, argtypes), as declared in include/mmpool.h.
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "mmpool_init": (c_int, [c_uint64, POINTER(c_void_p)]),
    "mmpool_ref": (None, [_POOL]),
    "mmpool_unref": (None, [_POOL]),
    "mmpool_acquire": (c_int, [_POOL, c_uint64, _LEASE_P]),
    "mmpool_acquire_timeout": (c_int, [_POOL, c_uint64, c_uint64, _LEASE_P]),
    "mmpool_try_acquire": (c_int, [_POOL, c_uint64, _LEASE_P]),
    "mmpool_release": (c_int, [_POOL, LeaseStruct]),
    "mmpool_enqueue": (c_int, [_POOL, c_uint64, POINTER(TicketStruct)]),
    "mmpool_ticket_wait": (c_int, [_POOL, TicketStruct, c_uint64, _LEASE_P]),
    "mmpool_ticket_cancel": (c_int, [_POOL, TicketStruct]),
    "mmpool_lease_resize": (c_int, [_POOL, _LEASE_P, c_uint64, c_uint64]),
    "mmpool_set_total": (c_int, [_POOL, c_uint64]),
    "mmpool_close": (c_int, [_POOL]),
    "mmpool_total_bytes": (c_uint64, [_POOL]),
    "mmpool_available_bytes": (c_uint64, [_POOL]),
    "mmpool_get_stats": (c_int, [_POOL, POINTER(StatsStruct)]),
    "mmpool_global": (c_void_p, []),
    "mmpool_set_global": (c_int, [_POOL]),
    "mmpool_init_global": (c_int, [c_double, c_uint32, POINTER(c_void_p)]),
    "mmpool_status_str": (c_char_p, [c_int]),
    "mmpool_last_error": (c_char_p, []),
    "mmpool_version": (c_char_p, []),
    "mmpool_set_log_callback": (c_int, [LOG_FN, c_void_p]),
    "mmpool_open_shared": (c_int, [c_char_p, c_uint64, c_uint32, POINTER(c_void_p)]),
    "mmpool_open_shared_with": (c_int, [c_char_p, POINTER(SharedOptionsStruct), POINTER(c_void_p)]),
    "mmpool_unlink_shared": (c_int, [c_char_p]),
}

LIBRARY_PATH = str(find_library())
"""The file that was loaded: C extensions link this very file (one copy, one global pool)."""

lib = ctypes.CDLL(LIBRARY_PATH)
for _name, (_restype, _argtypes) in PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
del _name, _restype, _argtypes, _fn


def last_error() -> str:
    """This thread's last failure message from the library."""
    return (lib.mmpool_last_error() or b"").decode("utf-8", "replace")


def status_name(status: int) -> str:
    return (lib.mmpool_status_str(status) or b"?").decode("ascii", "replace")


_EXCEPTIONS: dict[int, Callable[[str], BaseException]] = {
    ERR_NULL_ARGUMENT: ValueError,
    ERR_INVALID_ARGUMENT: ValueError,
    ERR_EXCEEDS_CAPACITY: ValueError,
    ERR_INVALID_LEASE: ValueError,
    ERR_TIMEOUT: TimeoutError,
    ERR_WOULD_BLOCK: TimeoutError,
    ERR_CLOSED: PoolClosedError,
    ERR_SYSTEM: OSError,
    ERR_CUDA: CudaError,
    ERR_INTERNAL: InternalError,
}


def error_for(status: int) -> BaseException:
    """The exception for a failing ``status`` that a call on this thread just
    returned, carrying the library's message (read before any other call)."""
    message = last_error() or status_name(status)
    return _EXCEPTIONS.get(status, InternalError)(message)


def check(status: int) -> None:
    """Raises the matching exception unless ``status`` is ``MMPOOL_OK``."""
    if status:
        raise error_for(status)


def call(function: Callable[..., int], *args: Any) -> None:
    """Calls a C function that returns ``mmpool_status`` and raises on failure:
    ``call(lib.mmpool_close, pool)``."""
    status = function(*args)
    if status:
        raise error_for(status)


def raise_for(status: int) -> NoReturn:
    raise error_for(status)


def as_u64(value: object, name: str) -> int:
    """``value`` as a byte count for C: an integer from 0 to 2^64-1, checked
    here so a negative or non-integer size never reaches the library."""
    try:
        n = value.__index__()  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"{name} must be an integer number of bytes, got {type(value).__name__} {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be a non-negative number of bytes, got {n}")
    if n > U64_MAX:
        raise ValueError(f"{name} must be below 2^64 bytes, got {n}")
    return n


def timeout_ns(timeout: float | None) -> int:
    """A timeout in seconds (``None``: forever) as C's ``timeout_ns``."""
    if timeout is None:
        return WAIT_FOREVER
    seconds = float(timeout)
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"timeout must be None (wait forever) or a number of seconds >= 0, got {timeout!r}")
    return min(int(seconds * 1e9), WAIT_FOREVER - 1)
