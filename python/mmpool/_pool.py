"""``Pool`` and ``Lease``: the Pythonic face of one C pool handle. Their C
halves (``mmpool._core``: acquire, try, enqueue, release, resize, the handle)
are the hot path; the rest calls the library through ctypes. Tickets are in
``_ticket.py``, waiting in an event loop in ``_async.py``."""

from __future__ import annotations

import threading
import weakref
from ctypes import byref, c_size_t, c_void_p, sizeof
from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence, Tuple, TypeVar

from . import _handoff, _lib, _placed
from ._async import AcquireAsync
from ._lib import HistogramsStruct, ReservationStruct, StatsStruct, as_u64, check, core, lib
from ._ticket import Ticket

P = TypeVar("P", bound="Pool")


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
    """Requests that gave up when their wait ran out (``acquire`` and
    ``Lease.resize`` with a timeout, from Python or C)."""
    would_blocks: int
    """``try_acquire`` calls refused because the bytes were not free at once
    (an ``acquire`` that waits in line is not a refusal and is not counted)."""
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
    reserved_bytes: int
    """Bytes the attached processes hold outside any lease
    (:meth:`Pool.set_reservation`); not part of the budget: an engine sizing
    its KV cache subtracts ``total_bytes + reserved_bytes``."""
    largest_free_range: int
    """The largest request that could be granted a range now: in a placed
    pool the most room a free range has from its first aligned offset; in
    any other pool ``available_bytes``."""
    free_ranges: int
    """Free ranges of a placed pool (each maximal); in any other pool 1 while
    bytes are available, else 0."""
    wait_histogram: Tuple[Tuple[float, int], ...] = ()
    """The waits of the requests that waited in line, as ``(le_seconds,
    count)`` per bucket (not cumulative): bounds 1, 2, 5 per decade from 1 µs
    to 100 s, then ``inf``. A wait of exactly a bound counts in its bucket."""
    request_size_histogram: Tuple[Tuple[float, int], ...] = ()
    """The sizes of the granted leases at their grant, as ``(le_bytes,
    count)`` per bucket (not cumulative): bounds the powers of 4 from 4 KiB to
    2^60 bytes, then ``inf``."""
    request_bytes_total: int = 0
    """The sum of those sizes."""
    reservations: Tuple[Tuple[int, str, int], ...] = ()
    """Each reservation as ``(pid, label, nbytes)`` (every attached process's,
    for a shared pool)."""


class Lease(core.LeaseBase):
    """Bytes granted by a :class:`Pool`, held until :meth:`release`.

    Use it as a context manager so the bytes go back even when the body
    raises::

        with pool.acquire(nbytes):
            decode_on_gpu()

    A lease garbage-collected while it still holds bytes gives them back and
    emits a ``ResourceWarning`` (shown under ``python -X dev``; with
    ``-X tracemalloc`` it names the line that acquired it), as an unclosed
    file does. To keep the bytes on purpose, for C code that will release
    them, call :meth:`detach`. Safe to use from several threads.

    ``id``, ``nbytes``, ``pool``, ``released``, ``detached``; ``release()``
    (idempotent), ``resize(nbytes, timeout=None)``, ``detach()`` -> id,
    ``split(nbytes)`` -> Lease, ``merge(other)``, ``share(parts, ...)`` -> token,
    ``offset`` (placed pools).
    """

    __slots__ = ()

    @property
    def offset(self) -> int:
        """Where the lease's range starts in its placed pool
        (``Pool(total, placed=True)``): its bytes are ``[offset, offset +
        nbytes)`` of the pool's buffer (0 for a 0-byte lease, which has none).
        Raises ``ValueError`` for a pool that is not placed and for a lease
        released, merged away or shared."""
        return _placed.lease_offset(self)

    def share(self, parts: int = 1, claim_deadline: Optional[float] = None, keep_lease: bool = False) -> bytes:
        """Hands the lease to ``parts`` consumers and returns the token
        (``bytes``, picklable) to send them; each completes one part
        (:meth:`Pool.claim`, :meth:`Pool.complete`). The lease ends here (it
        counts as detached) and its bytes go back when the last part
        completes; with ``keep_lease`` it stays this lease's, to release after
        :meth:`Pool.wait_handoff`. Parts nobody claimed or completed
        ``claim_deadline`` seconds from now expire (``None``: never).
        In-process pools only for now."""
        return _handoff.share(self, parts, claim_deadline, keep_lease)

    def __repr__(self) -> str:
        state = "detached" if self.detached else "released" if self.released else "held"
        return f"<{type(self).__name__} id={self.id:#x} nbytes={self.nbytes} {state}>"


# Python wrappers by handle address, so that looking a pool up through the C
# global gives back the object already wrapping it (identity, like the pure
# Python original). A wrapper holds a reference, so its address is not reused.
_wrappers: weakref.WeakValueDictionary[tuple[int, type], Pool] = weakref.WeakValueDictionary()
_wrappers_lock = threading.Lock()


class Pool(core.PoolBase):
    """A byte budget with first-come-first-served waiting, backed by the C
    library: the same pool can be used from C, C++ and Python at once.

    ``Pool(total_bytes)`` creates one. ``Pool(total_bytes, placed=True,
    alignment=256)`` creates a placed pool: every lease also holds a range of
    ``[0, total_bytes)`` at an offset that is a multiple of ``alignment`` (a
    power of two), read from :attr:`Lease.offset`; live ranges never overlap.
    A request waits in line (first come, first served) until a free range of
    its size exists; ``try_acquire`` returns ``None`` while none does. A lease
    is charged its own size; ``Lease.resize`` shrinks at once and grows in
    place only (else ``TimeoutError`` at once, the lease unchanged; see
    ``mmpool_init_placed`` in mmpool.h for every rule); :meth:`resize` of the
    total is refused. Every method may be called from any
    thread; a blocked :meth:`acquire` releases the GIL and can be interrupted
    with Ctrl-C. As a context manager, the pool is closed on exit.

    ``acquire(nbytes, timeout=None)`` -> :class:`Lease`,
    ``try_acquire(nbytes)`` -> ``Lease | None`` and ``enqueue(nbytes)`` ->
    :class:`Ticket` are compiled (``mmpool._core``); :meth:`acquire_async`
    waits in an event loop.
    """

    __slots__ = ("__weakref__",)
    _lease_class: ClassVar[type[Lease]] = Lease
    _ticket_class: ClassVar[type[Ticket]] = Ticket

    def __init__(self, total_bytes: int, placed: bool = False, alignment: int = _placed.DEFAULT_ALIGNMENT) -> None:
        total = as_u64(total_bytes, "total_bytes")
        handle = c_void_p()
        if placed:
            align = as_u64(alignment, "alignment")
            check(lib.mmpool_init_placed(total, align, byref(handle)), type(self).__name__)
        else:
            check(lib.mmpool_init(total, byref(handle)), type(self).__name__)
        self._own(handle.value, True)  # an in-process pool: calls keep the GIL
        _remember(self)

    @classmethod
    def _adopt(cls: type[P], address: int, in_process: bool = False) -> P:
        """A wrapper of the handle at ``address``, taking over one reference
        the caller owns (or the existing wrapper, dropping that reference).
        ``in_process``: the handle is known to be an in-process pool, whose
        calls may keep the GIL; otherwise every call releases it."""
        with _wrappers_lock:
            existing = _wrappers.get((address, cls))
            if existing is None:
                pool = cls.__new__(cls)
                pool._own(address, in_process)
                _wrappers[(address, cls)] = pool
                return pool
        lib.mmpool_unref(address)
        return existing  # type: ignore[return-value]

    def _where(self, operation: str) -> str:
        return f"{type(self).__name__}.{operation}"

    def acquire_async(self, nbytes: int, timeout: Optional[float] = None) -> AcquireAsync:
        """Acquires ``nbytes`` in an asyncio (or uvloop) event loop:
        ``lease = await pool.acquire_async(n)``, or ``async with
        pool.acquire_async(n) as lease:`` (released on exit).

        Granted at once, without a trip through the loop, when the bytes are
        free and nobody waits; otherwise the coroutine waits in the same
        first-come-first-served line as threads and C callers, without a
        thread: one notifier fd per loop wakes it. ``timeout`` seconds
        (``None``: no limit) run out with ``TimeoutError`` and count in
        ``stats().timeouts``. Cancelling the task (``asyncio.timeout``,
        ``wait_for``) leaves the line; a grant that raced the cancellation
        goes back. The loop never blocks on the pool.

        Raises ``ValueError`` (negative, above the total), ``TimeoutError``,
        :class:`PoolClosedError`."""
        return AcquireAsync(self, nbytes, timeout)

    @property
    def placed(self) -> bool:
        """Whether the pool places its leases (``Pool(..., placed=True)``)."""
        return self.alignment != 0

    @property
    def alignment(self) -> int:
        """The alignment of a placed pool's offsets; 0 when it is not placed."""
        return lib.mmpool_alignment(self.handle)

    @property
    def total_bytes(self) -> int:
        """The pool's total budget in bytes."""
        return lib.mmpool_total_bytes(self.handle)

    @property
    def available_bytes(self) -> int:
        """Bytes grantable now."""
        return lib.mmpool_available_bytes(self.handle)

    def stats(self) -> PoolStats:
        """The pool's figures now."""
        raw = StatsStruct()
        raw.size = sizeof(StatsStruct)
        check(lib.mmpool_get_stats(self.handle, byref(raw)), self._where("stats"))
        hist = HistogramsStruct()
        hist.size = sizeof(HistogramsStruct)
        check(lib.mmpool_get_histograms(self.handle, byref(hist)), self._where("stats"))
        return PoolStats(
            *(getattr(raw, name) for name in _lib.STATS_FIELDS),
            wait_histogram=_buckets(hist.wait_le_ns, hist.wait_counts, 1_000_000_000),
            request_size_histogram=_buckets(hist.size_le_bytes, hist.size_counts, 1),
            request_bytes_total=hist.size_sum_bytes,
            reservations=self._reservations(),
        )

    def _reservations(self) -> Tuple[Tuple[int, str, int], ...]:
        count = c_size_t(0)
        records = (ReservationStruct * 0)()
        while True:
            where = self._where("stats")
            check(lib.mmpool_get_reservations(self.handle, records, len(records), byref(count)), where)
            if count.value <= len(records):
                break
            records = (ReservationStruct * count.value)()  # grew meanwhile: read again
        return tuple((r.pid, r.label.decode("utf-8", "replace"), r.bytes) for r in records[: count.value])

    def set_reservation(self, label: str, nbytes: int) -> None:
        """Records that this process holds ``nbytes`` on the device outside
        any lease under ``label`` (its CUDA context, decoder surfaces),
        replacing what the label held; 0 removes it. Reservations take
        nothing from the budget; they are reported beside it
        (``PoolStats.reserved_bytes`` and ``reservations``, ``mmpool status``,
        the metrics). At most 8 labels per process and pool, each 1 to 32
        bytes of UTF-8 without control characters (else ``ValueError``). A
        shared pool's end when this process detaches or exits."""
        if not isinstance(label, str):
            raise TypeError(f"a reservation's label is a str, got {type(label).__name__}")
        if "\0" in label:
            raise ValueError(f"a reservation's label holds no NUL, got {label!r}")
        where = self._where("set_reservation")
        check(lib.mmpool_set_reservation(self.handle, label.encode("utf-8"), as_u64(nbytes, "nbytes")), where)

    def claim(self, token: bytes, part: int) -> _handoff.ClaimedPart:
        """Claims part ``part`` of the hand-off ``token`` (from
        :meth:`Lease.share`) for this process; a context manager whose exit
        completes it."""
        return _handoff.ClaimedPart(self, token, part)

    def complete(self, token: bytes, part: int) -> None:
        """Completes part ``part`` of a hand-off, claimed or not; again does
        nothing. The last part's completion returns the bytes."""
        _handoff.complete(self, token, part)

    def wait_handoff(self, token: bytes, timeout: Optional[float] = None) -> None:
        """Waits up to ``timeout`` seconds (``None``: no limit) until every
        part of the hand-off is completed or expired; ``TimeoutError`` when
        the time runs out first."""
        _handoff.wait(self, token, timeout)

    def handoff_stats(self) -> _handoff.HandoffStats:
        """The pool's hand-off figures."""
        return _handoff.stats(self)

    def resize(self, total_bytes: int) -> None:
        """Changes the pool's total (1 to 2^60 bytes). Growing grants waiters at
        once; shrinking revokes nothing, and waiters larger than the new total
        fail with ``ValueError``."""
        check(lib.mmpool_set_total(self.handle, as_u64(total_bytes, "total_bytes")), self._where("resize"))

    def close(self) -> None:
        """Closes the pool: waiters wake with ``PoolClosedError``, later
        acquires fail with it, releases still return bytes. Idempotent."""
        check(lib.mmpool_close(self.handle), self._where("close"))

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

    ``max_processes``, ``max_leases`` (leases plus tickets),
    ``max_waiters`` and ``max_handoffs`` (outstanding hand-offs) are the
    limits chosen when the pool is created (0: the defaults 128, 4096, 1024
    and 256); attaching with other non-zero values raises ``ValueError``
    naming both.

    Hand-offs work across processes: a token from :meth:`Lease.share` in one
    process is claimed and completed in any attached process; a part claimed
    by a process that dies completes by itself.

    ``placed=True`` (with ``alignment``, default 256) creates a placed pool,
    as :class:`Pool` does: the ranges live in the segment, so every process
    sees the same offsets (:attr:`Lease.offset`), and a dead process's ranges
    come back with its bytes; attaching with ``placed=True`` requires the
    pool to be placed with that alignment (without it, either kind is
    accepted). A hand-off's token carries the offset.
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
        max_handoffs: int = 0,
        placed: bool = False,
        alignment: int = _placed.DEFAULT_ALIGNMENT,
    ) -> None:
        total = as_u64(total_bytes, "total_bytes")
        flags = (SHARED_CREATE if create else 0) | (SHARED_EXCLUSIVE if exclusive else 0)
        flags |= SHARED_GROUP if group else 0
        limits = {
            "max_processes": max_processes,
            "max_leases": max_leases,
            "max_waiters": max_waiters,
            "max_handoffs": max_handoffs,
        }
        opts = _lib.SharedOptionsStruct(sizeof(_lib.SharedOptionsStruct), total, flags)
        for key, value in limits.items():
            if as_u64(value, key) >= 2**32:
                raise ValueError(f"{key} must be below 2^32, got {value}")
            setattr(opts, key, value)
        if placed:
            opts.alignment = as_u64(alignment, "alignment")
            if opts.alignment == 0:
                raise ValueError("alignment must be a power of two, got 0")
        handle = c_void_p()
        check(lib.mmpool_open_shared_with(_shared_name(name), byref(opts), byref(handle)), "SharedPool")
        self._own(handle.value, False)  # calls take the segment's lock: they release the GIL
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
        check(lib.mmpool_unlink_shared(_shared_name(name)), "SharedPool.unlink")

    def __repr__(self) -> str:
        return f"<SharedPool {self._name!r} total_bytes={self.total_bytes} available_bytes={self.available_bytes}>"


def _buckets(bounds: Sequence[int], counts: Sequence[int], per_unit: int) -> Tuple[Tuple[float, int], ...]:
    """``(le, count)`` pairs from C's bounds (``UINT64_MAX``: +Inf), each
    bound divided by ``per_unit`` (1e9 for nanoseconds to seconds: a
    division, so that 1000 ns is exactly ``1e-06``)."""
    return tuple(
        (float("inf") if le == _lib.U64_MAX else le / per_unit, count) for le, count in zip(bounds, counts)
    )


def _shared_name(name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"a shared pool's name is a str, got {type(name).__name__}")
    return name.encode("utf-8")


def _remember(pool: Pool) -> None:
    with _wrappers_lock:
        _wrappers[(pool.handle, type(pool))] = pool


def wrap_new_reference(address: Optional[int], cls: type[P], in_process: bool = False) -> P | None:
    """A ``cls`` wrapper for a new reference returned by C (``None`` for NULL);
    ``in_process`` as for :meth:`Pool._adopt`."""
    if not address:
        return None
    return cls._adopt(address, in_process)
