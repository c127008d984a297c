"""``Pool`` and ``Lease``: the Pythonic face of one C pool handle."""

from __future__ import annotations

import threading
import time
import weakref
from ctypes import byref, c_void_p, sizeof
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, TypeVar

from . import _lib
from ._lib import (
    ERR_TIMEOUT,
    ERR_WOULD_BLOCK,
    LeaseStruct,
    StatsStruct,
    TicketStruct,
    as_u64,
    check,
    error_for,
    lib,
    timeout_ns,
)

WAIT_SLICE_NS = 50_000_000
"""A blocked acquire returns to Python this often (50 ms) to let signal
handlers run, so Ctrl-C interrupts it; its place in line is kept meanwhile."""

_try_acquire = lib.mmpool_try_acquire
_release = lib.mmpool_release
_enqueue = lib.mmpool_enqueue
_ticket_wait = lib.mmpool_ticket_wait
_ticket_cancel = lib.mmpool_ticket_cancel
_lease_resize = lib.mmpool_lease_resize

P = TypeVar("P", bound="Pool")
L = TypeVar("L", bound="Lease")


@dataclass(frozen=True)
class PoolStats:
    """Figures of a pool at one moment (``mmpool_stats``). Counters count since
    the pool was created."""

    total_bytes: int
    """The pool's total budget."""
    available_bytes: int
    """Bytes grantable now (0 while the total is below what is in use)."""
    in_use_bytes: int
    """Bytes granted and not yet returned."""
    peak_in_use_bytes: int
    """The most bytes ever in use at once."""
    outstanding_leases: int
    """Leases granted and not yet released."""
    waiters: int
    """Requests waiting in line now."""
    grants: int
    """Leases granted since creation."""
    waited_grants: int
    """Requests that waited in line before their grant."""
    timeouts: int
    """Requests that gave up when their wait ran out."""
    would_blocks: int
    """Try-once requests refused because the bytes were not free at once
    (a blocking ``acquire`` that has to queue counts one too: it tries first)."""
    capacity_rejections: int
    """Requests refused because they exceed the total."""
    closed_rejections: int
    """Requests refused or woken because the pool was closed."""
    wait_ns_total: int
    """Sum of the waits of ``waited_grants``, in nanoseconds."""
    wait_ns_max: int
    """Longest of those waits, in nanoseconds."""
    futile_wakeups: int
    """Times a waiting thread woke and slept again without a grant."""


_ID_FIELD = LeaseStruct.id
_NBYTES_FIELD = LeaseStruct.nbytes


class Lease(LeaseStruct):
    """Bytes granted by a :class:`Pool`, held until :meth:`release`.

    Use it as a context manager so the bytes go back even when the body
    raises::

        with pool.acquire(nbytes):
            decode_on_gpu()

    A lease that is dropped without being released keeps its bytes: release
    it explicitly or with ``with``. Safe to use from several threads.
    (It is the ``mmpool_lease`` struct itself, so no copy is made per call.)
    """

    _pool: Pool
    _released: bool

    @property
    def id(self) -> int:
        """The lease's id: unique in the process, never reused."""
        return _ID_FIELD.__get__(self, Lease)

    @property
    def nbytes(self) -> int:
        """The bytes this lease holds (what it held, once released)."""
        return _NBYTES_FIELD.__get__(self, Lease)

    @property
    def pool(self) -> Pool:
        """The pool that granted it."""
        return self._pool

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Returns the bytes to the pool. Releasing again does nothing."""
        if self._released:
            return
        status = _release(self._pool._handle, self)
        if status:
            raise error_for(status)
        self._released = True

    def resize(self, nbytes: int, timeout: float | None = None) -> None:
        """Changes what the lease holds to ``nbytes``. Shrinking returns the
        difference at once; growing waits in line for it (GIL released) up to
        ``timeout`` seconds (``None``: no limit).

        Raises ``ValueError`` (negative, above the total, or already
        released), ``TimeoutError`` (the lease keeps its old size),
        ``PoolClosedError``.
        """
        n = as_u64(nbytes, "nbytes")
        check(_lease_resize(self._pool._handle, self, n, timeout_ns(timeout)))

    def __enter__(self: L) -> L:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<{type(self).__name__} id={self.id:#x} nbytes={self.nbytes} {state}>"


# Python wrappers by handle address, so that looking a pool up through the C
# global gives back the object already wrapping it (identity, like the pure
# Python original). A wrapper holds a reference, so its address is not reused.
_wrappers: weakref.WeakValueDictionary[tuple[int, type], Pool] = weakref.WeakValueDictionary()
_wrappers_lock = threading.Lock()


class Pool:
    """A byte budget with first-come-first-served waiting, backed by the C
    library: the same pool can be used from C, C++ and Python at once.

    ``Pool(total_bytes)`` creates one. Every method may be called from any
    thread; a blocked :meth:`acquire` releases the GIL and can be interrupted
    with Ctrl-C. As a context manager, the pool is closed on exit.
    """

    __slots__ = ("_handle", "_as_parameter_", "__weakref__")
    _lease_class: ClassVar[type[Lease]] = Lease

    def __init__(self, total_bytes: int) -> None:
        total = as_u64(total_bytes, "total_bytes")
        handle = c_void_p()
        check(lib.mmpool_init(total, byref(handle)))
        self._handle = handle
        self._as_parameter_ = handle
        _remember(self)

    @classmethod
    def _adopt(cls: type[P], address: int) -> P:
        """A wrapper of the handle at ``address``, taking over one reference
        the caller owns (or the existing wrapper, dropping that reference)."""
        with _wrappers_lock:
            existing = _wrappers.get((address, cls))
            if existing is None:
                pool = cls.__new__(cls)
                pool._handle = c_void_p(address)
                pool._as_parameter_ = pool._handle
                _wrappers[(address, cls)] = pool
                return pool
        lib.mmpool_unref(address)
        return existing  # type: ignore[return-value]

    def __del__(self, _unref: Any = lib.mmpool_unref) -> None:
        # The default argument keeps the C function reachable during
        # interpreter shutdown, when module globals may already be gone.
        handle = getattr(self, "_handle", None)
        if handle:
            self._handle = None
            _unref(handle)

    @property
    def handle(self) -> int:
        """The ``mmpool *`` as an integer, for C code: a borrowed reference,
        valid while this object lives (``mmpool_ref`` it to keep it longer)."""
        return self._handle.value or 0

    @property
    def total_bytes(self) -> int:
        """The pool's total budget in bytes."""
        return lib.mmpool_total_bytes(self._handle)

    @property
    def available_bytes(self) -> int:
        """Bytes grantable now."""
        return lib.mmpool_available_bytes(self._handle)

    def acquire(self, nbytes: int, timeout: float | None = None) -> Lease:
        """Acquires ``nbytes``, waiting in line (first come, first served) up
        to ``timeout`` seconds (``None``: as long as it takes; ``0``: only if
        grantable at once). The GIL is released while waiting, and Ctrl-C
        interrupts the wait without losing bytes.

        Raises ``ValueError`` (negative, or more than the pool's total: it
        could never be granted), ``TimeoutError`` (nothing was reserved),
        ``PoolClosedError``.
        """
        n = nbytes if type(nbytes) is int and 0 <= nbytes <= _lib.U64_MAX else as_u64(nbytes, "nbytes")
        wait_ns = _lib.WAIT_FOREVER if timeout is None else timeout_ns(timeout)
        lease = self._lease_class()
        status = _try_acquire(self._handle, n, lease)
        if not status:
            lease._pool = self
            lease._released = False
            return lease
        if status != ERR_WOULD_BLOCK:
            raise error_for(status)
        if wait_ns == 0:
            raise TimeoutError(
                f"{n} bytes are not grantable at once ({self.available_bytes} available, "
                f"or others wait in line); pass a longer timeout to wait for them"
            )
        return self._wait_in_line(n, wait_ns)

    def _wait_in_line(self, n: int, wait_ns: int) -> Lease:
        """Joins the line and waits in slices; on any exception (Ctrl-C too)
        leaves it so that no granted byte is lost."""
        handle = self._handle
        ticket = TicketStruct()
        check(_enqueue(handle, n, byref(ticket)))
        lease = self._lease_class()
        deadline = None if wait_ns == _lib.WAIT_FOREVER else time.monotonic_ns() + wait_ns
        try:
            while True:
                slice_ns = WAIT_SLICE_NS
                if deadline is not None:
                    slice_ns = max(0, min(slice_ns, deadline - time.monotonic_ns()))
                status = _ticket_wait(handle, ticket, slice_ns, lease)
                if not status:
                    lease._pool = self
                    lease._released = False
                    return lease
                if status != ERR_TIMEOUT:
                    raise error_for(status)  # the ticket has left the line
                if deadline is not None and time.monotonic_ns() >= deadline:
                    raise TimeoutError(
                        f"timed out waiting for {n} bytes; nothing was reserved "
                        "(wait longer, or free bytes sooner)"
                    )
        except BaseException:
            if lease.id:
                _release(handle, lease)  # granted and collected, not yet handed over
            else:
                _ticket_cancel(handle, ticket)  # gives back a grant not yet collected
            raise

    def try_acquire(self, nbytes: int) -> Lease | None:
        """Acquires ``nbytes`` only if that is possible at once without jumping
        the line; ``None`` otherwise. Raises ``ValueError`` (negative, above
        the total) and ``PoolClosedError``."""
        n = as_u64(nbytes, "nbytes")
        lease = self._lease_class()
        status = _try_acquire(self._handle, n, lease)
        if not status:
            lease._pool = self
            lease._released = False
            return lease
        if status == ERR_WOULD_BLOCK:
            return None
        raise error_for(status)

    def stats(self) -> PoolStats:
        """The pool's figures now."""
        raw = StatsStruct()
        raw.size = sizeof(StatsStruct)
        check(lib.mmpool_get_stats(self._handle, byref(raw)))
        return PoolStats(*(getattr(raw, name) for name in _lib.STATS_FIELDS))

    def resize(self, total_bytes: int) -> None:
        """Changes the pool's total (1 to 2^60 bytes). Growing grants waiters at
        once; shrinking revokes nothing, and waiters larger than the new total
        fail with ``ValueError``."""
        check(lib.mmpool_set_total(self._handle, as_u64(total_bytes, "total_bytes")))

    def close(self) -> None:
        """Closes the pool: waiters wake with ``PoolClosedError``, later
        acquires fail with it, releases still return bytes. Idempotent."""
        check(lib.mmpool_close(self._handle))

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pool) and other.handle == self.handle

    def __hash__(self) -> int:
        return hash(self.handle)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} total_bytes={self.total_bytes} available_bytes={self.available_bytes}>"


SHARED_CREATE = 1
SHARED_EXCLUSIVE = 2
SHARED_GROUP = 4


class SharedPool(Pool):
    """One budget for every process on the host that opens the same ``name``.

    ``SharedPool(name, total_bytes)`` creates the pool if it does not exist
    (``create=False``: attach only; ``exclusive=True``: fail if it exists) or
    attaches to it; ``total_bytes`` 0 accepts the existing pool's total, any
    other value must equal it. Grants are first come, first served across all
    processes, and the bytes of a process that dies (even by SIGKILL) come back
    to the others within about 50 ms. Everything else is as for :class:`Pool`;
    note that :meth:`close` closes the pool for every process.

    The pool lives in ``/dev/shm/mmpool.<name>``, mode 0600 (0660 with
    ``group=True``); :meth:`unlink` removes the name.

    ``max_processes``, ``max_leases`` (leases plus tickets) and
    ``max_waiters`` are the limits chosen when the pool is created (0: the
    defaults 128, 4096 and 1024); attaching with other non-zero values
    raises ``ValueError`` naming both.
    """

    __slots__ = ("_name",)

    def __init__(
        self,
        name: str,
        total_bytes: int = 0,
        *,
        create: bool = True,
        exclusive: bool = False,
        group: bool = False,
        max_processes: int = 0,
        max_leases: int = 0,
        max_waiters: int = 0,
    ) -> None:
        total = as_u64(total_bytes, "total_bytes")
        flags = (SHARED_CREATE if create else 0) | (SHARED_EXCLUSIVE if exclusive else 0)
        flags |= SHARED_GROUP if group else 0
        limits = {"max_processes": max_processes, "max_leases": max_leases, "max_waiters": max_waiters}
        opts = _lib.SharedOptionsStruct(sizeof(_lib.SharedOptionsStruct), total, flags)
        for key, value in limits.items():
            if as_u64(value, key) >= 2**32:
                raise ValueError(f"{key} must be below 2^32, got {value}")
            setattr(opts, key, value)
        handle = c_void_p()
        check(lib.mmpool_open_shared_with(_shared_name(name), byref(opts), byref(handle)))
        self._handle = handle
        self._as_parameter_ = handle
        self._name = name
        _remember(self)

    @property
    def name(self) -> str:
        """The name every process opens the pool by."""
        return self._name

    @staticmethod
    def unlink(name: str) -> None:
        """Removes the pool's name; attached processes keep using the pool, and
        the next create makes a new one. Raises ``OSError`` if there is none."""
        check(lib.mmpool_unlink_shared(_shared_name(name)))

    def __repr__(self) -> str:
        return f"<SharedPool {self._name!r} total_bytes={self.total_bytes} available_bytes={self.available_bytes}>"


def _shared_name(name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"a shared pool's name is a str, got {type(name).__name__}")
    return name.encode("utf-8")


def _remember(pool: Pool) -> None:
    with _wrappers_lock:
        _wrappers[(pool.handle, type(pool))] = pool


def wrap_new_reference(address: Optional[int], cls: type[P]) -> P | None:
    """A ``cls`` wrapper for a new reference returned by C (``None`` for NULL)."""
    if not address:
        return None
    return cls._adopt(address)
