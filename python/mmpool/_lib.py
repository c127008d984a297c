"""The loaded C library, its prototypes, the compiled hot path, and the one
place where a status code becomes a Python exception.

:data:`lib` is a :class:`ctypes.CDLL` (each call releases the GIL while it runs
in C) for the rarely used calls: creating pools, figures, the total, the
global pool, logging. :data:`core` is ``mmpool._core``, the CPython extension
that acquires, tries, releases and resizes leases; it links the very file
ctypes loaded. Both turn a failing status into an exception here
(:func:`check`, :func:`exception_for`), in the Python API's words.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import re
from ctypes import POINTER, Structure, c_char_p, c_double, c_int, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import Any, Callable

from . import _extension
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
    "reserved_bytes",
    "largest_free_range",
    "free_ranges",
)


class StatsStruct(Structure):
    """``mmpool_stats``: ``size`` then the figures, all ``uint64_t``."""

    _fields_ = [("size", c_uint64)] + [(name, c_uint64) for name in STATS_FIELDS]


WAIT_BUCKETS = 26
SIZE_BUCKETS = 26


class HistogramsStruct(Structure):
    """``mmpool_histograms``: ``size`` then the two histograms, all ``uint64_t``."""

    _fields_ = [
        ("size", c_uint64),
        ("wait_count", c_uint64),
        ("wait_sum_ns", c_uint64),
        ("wait_le_ns", c_uint64 * WAIT_BUCKETS),
        ("wait_counts", c_uint64 * WAIT_BUCKETS),
        ("size_count", c_uint64),
        ("size_sum_bytes", c_uint64),
        ("size_le_bytes", c_uint64 * SIZE_BUCKETS),
        ("size_counts", c_uint64 * SIZE_BUCKETS),
    ]


RESERVATION_LABEL_SIZE = 33


class ReservationStruct(Structure):
    """``mmpool_reservation``: bytes, pid, a NUL-terminated label."""

    _fields_ = [("bytes", c_uint64), ("pid", c_uint32), ("label", ctypes.c_char * RESERVATION_LABEL_SIZE)]


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
        ("max_handoffs", c_uint32),
        ("reserved", c_uint32),
        ("alignment", c_uint64),
    ]


_POOL = c_void_p

# name: (restype, argtypes), as declared in include/mmpool.h. Only the calls
# made through ctypes; leases and waits are mmpool._core's.
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "mmpool_init": (c_int, [c_uint64, POINTER(c_void_p)]),
    "mmpool_init_placed": (c_int, [c_uint64, c_uint64, POINTER(c_void_p)]),
    "mmpool_alignment": (c_uint64, [_POOL]),
    "mmpool_ref": (None, [_POOL]),
    "mmpool_unref": (None, [_POOL]),
    "mmpool_set_total": (c_int, [_POOL, c_uint64]),
    "mmpool_close": (c_int, [_POOL]),
    "mmpool_total_bytes": (c_uint64, [_POOL]),
    "mmpool_available_bytes": (c_uint64, [_POOL]),
    "mmpool_get_stats": (c_int, [_POOL, POINTER(StatsStruct)]),
    "mmpool_get_histograms": (c_int, [_POOL, POINTER(HistogramsStruct)]),
    "mmpool_set_reservation": (c_int, [_POOL, c_char_p, c_uint64]),
    "mmpool_get_reservations": (c_int, [_POOL, POINTER(ReservationStruct), ctypes.c_size_t, POINTER(ctypes.c_size_t)]),
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

_C_FUNCTION = re.compile(r"^mmpool_\w+: ")
_HINTS = {
    (ERR_TIMEOUT, "acquire"): " (pass a longer timeout to wait longer, or release bytes sooner)",
}


def error_for(status: int, where: str | None = None, message: str | None = None) -> BaseException:
    """The exception for a failing ``status`` that a call on this thread just
    returned, carrying the library's message (read before any other call) in
    the Python API's words: the C function's name becomes ``where`` (such as
    ``"Pool.acquire"``)."""
    text = _C_FUNCTION.sub("", last_error() if message is None else message) or status_name(status)
    operation = where.rpartition(".")[2] if where else ""
    text += _HINTS.get((status, operation), "")
    return _EXCEPTIONS.get(status, InternalError)(f"{where}: {text}" if where else text)


def exception_for(status: int, message: bytes, obj: object, operation: str, nbytes: int) -> BaseException:
    """:func:`error_for` as ``mmpool._core`` calls it: ``obj`` is the pool or
    lease whose method ``operation`` failed with ``message`` on a request for
    ``nbytes``. A class may word its own refusals with a method
    ``_exception(status, operation, nbytes, exception)`` (mmpool.vllm does)."""
    where = f"{type(obj).__name__}.{operation}"
    exception = error_for(status, where, message.decode("utf-8", "replace"))
    reword = getattr(obj, "_exception", None)
    return exception if reword is None else reword(status, operation, nbytes, exception)


def check(status: int, where: str | None = None) -> None:
    """Raises the matching exception unless ``status`` is ``MMPOOL_OK``."""
    if status:
        raise error_for(status, where)


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


core = _extension.load(Path(LIBRARY_PATH))
"""``mmpool._core``: ``PoolBase``, ``LeaseBase`` and ``TicketBase``, the C halves of Pool, Lease and Ticket."""
core._configure(exception_for, as_u64, timeout_ns, concurrent.futures.CancelledError)
if core._library_symbol() != ctypes.cast(lib.mmpool_version, c_void_p).value:
    raise ImportError(
        f"mmpool._core ({core.__file__}) is linked to another copy of libmmpool than {LIBRARY_PATH}: "
        "two copies would mean two global pools; reinstall the package"
    )
