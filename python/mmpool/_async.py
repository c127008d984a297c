"""asyncio for mmpool: waiting for bytes in the event loop, not in a thread.

Each event loop that waits gets one notifier (``mmpool._core.Notifier``, the
C library's ``mmpool_notifier``): one file descriptor, watched with
``loop.add_reader``, however many coroutines wait. A ticket in line is
registered with it under a number of this module's choosing; when the
library decides the ticket (granted, pool closed, total lowered below it,
cancelled) it queues an event and the fd turns readable, and the loop drains
the events, collects each grant without blocking and resolves the waiting
coroutine's future. The loop thread never waits on the pool: every call it
makes returns at once.

Cancellation follows asyncio: a cancelled waiter (``task.cancel()``,
``asyncio.timeout``, ``wait_for``) leaves the line, and a grant that raced
the cancellation goes back; ``acquire_async``'s own ``timeout`` leaves the
line as a blocking ``acquire``'s does (counted in ``stats().timeouts``) and
raises ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Generator, Optional

from ._lib import as_u64, core, timeout_ns

if TYPE_CHECKING:
    from ._pool import Lease, Pool
    from ._ticket import Ticket

DRAIN_BATCH = 256
"""Events moved out of the notifier per call."""
RETRY_S = 0.001
"""How soon a registration or a grant's collection is tried again when a
shared pool's lock was kept busy."""


class _LoopWatch:
    """The notifier of one event loop and the futures of the tickets it
    watches. Used from the loop's thread only."""

    __slots__ = ("_loop", "_notifier", "_fd", "_waiting", "_numbers", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the loop holds the watch (its reader), not the reverse
        self._notifier = core.Notifier()
        self._fd = self._notifier.fd
        self._waiting: dict[int, tuple[Ticket, asyncio.Future[Lease]]] = {}
        self._numbers = itertools.count(1)
        loop.add_reader(self._fd, self._on_readable)

    def watch(self, ticket: Ticket, future: asyncio.Future[Lease]) -> int:
        """Registers ``ticket``; its fate resolves ``future``. Returns the key."""
        key = next(self._numbers)
        registered = ticket._notify(self._notifier, key)
        self._waiting[key] = (ticket, future)
        if not registered:
            self._later(self._register, key)
        return key

    def _register(self, key: int) -> None:
        """Registers again a ticket whose shared pool's lock was kept busy."""
        entry = self._waiting.get(key)
        if entry is None or entry[1].done():
            return
        ticket, future = entry
        try:
            registered = ticket._notify(self._notifier, key)
        except concurrent.futures.CancelledError:  # cancel() from another thread took it
            self._waiting.pop(key, None)
            future.cancel()
            return
        except Exception as e:  # noqa: BLE001 - the waiter's to see
            self._waiting.pop(key, None)
            future.set_exception(e)
            return
        if not registered:
            self._later(self._register, key)

    def _later(self, callback: Any, key: int) -> None:
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            loop.call_later(RETRY_S, callback, key)

    def forget(self, key: int) -> None:
        self._waiting.pop(key, None)

    def expire(self, key: int, timeout: float) -> None:
        """``acquire_async``'s timeout ran out: the ticket leaves the line
        (one timeout in the pool's figures) unless its grant came first."""
        entry = self._waiting.pop(key, None)
        if entry is None or entry[1].done():
            return
        ticket, future = entry
        self._settle(ticket, future, ticket._leave)
        if not future.done():
            ticket.cancel()  # out of line for certain, even if the shared pool's lock was busy
            future.set_exception(
                TimeoutError(
                    f"{type(ticket.pool).__name__}.acquire_async: a request for {ticket.nbytes} bytes was not "
                    f"granted within {timeout} s (pass a longer timeout to wait longer, or release bytes sooner)"
                )
            )

    def _on_readable(self) -> None:
        while True:
            events = self._notifier.drain(DRAIN_BATCH)
            for _ticket_id, key, _status in events:
                entry = self._waiting.pop(key, None)
                if entry is None:
                    continue  # given up already (cancelled, timed out): its bytes went back then
                self._collect(key, entry)
            if len(events) < DRAIN_BATCH:
                return

    def _collect(self, key: int, entry: tuple[Ticket, asyncio.Future[Lease]]) -> None:
        ticket, future = entry
        self._settle(ticket, future, ticket._collect)
        if not future.done():
            # Decided, but a shared pool's lock was kept by one holder past
            # 1 ms, so the zero wait gave up; the grant stays: try again soon.
            self._waiting[key] = entry
            self._later(self._retry, key)

    def _retry(self, key: int) -> None:
        entry = self._waiting.pop(key, None)
        if entry is not None:
            self._collect(key, entry)

    @staticmethod
    def _settle(ticket: Ticket, future: asyncio.Future[Lease], collect: Any) -> None:
        """Resolves ``future`` with what ``collect()`` gives: the lease, or the
        ticket's fate as an exception; leaves it pending for ``None``."""
        if future.done():
            ticket.cancel()
            return
        try:
            lease = collect()
        except concurrent.futures.CancelledError:  # cancel() from another thread took it
            future.cancel()
        except Exception as e:  # noqa: BLE001 - the ticket's fate, delivered to its waiter
            future.set_exception(e)
        else:
            if lease is not None:
                future.set_result(lease)

    def abandon(self) -> None:
        """The loop closed with waiters left: their tickets leave the line."""
        waiting, self._waiting = self._waiting, {}
        for ticket, _future in waiting.values():
            ticket.cancel()


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatch] = weakref.WeakKeyDictionary()
_watches_lock = threading.Lock()


def _watch_for(loop: asyncio.AbstractEventLoop) -> _LoopWatch:
    watch = _watches.get(loop)
    if watch is not None:
        return watch
    with _watches_lock:
        for other, old in list(_watches.items()):
            if other.is_closed():
                del _watches[other]
                old.abandon()
        watch = _watches.get(loop)
        if watch is None:
            watch = _watches[loop] = _LoopWatch(loop)
        return watch


async def wait(ticket: Ticket, timeout: Optional[float] = None) -> Lease:
    """Waits in the running loop for ``ticket``'s grant. On any exception
    (cancellation included) the ticket leaves the line, and a grant that
    raced it goes back."""
    loop = asyncio.get_running_loop()
    watch = _watch_for(loop)
    future: asyncio.Future[Lease] = loop.create_future()
    try:
        key = watch.watch(ticket, future)
    except concurrent.futures.CancelledError as e:  # cancel() came first: asyncio's own kind
        raise asyncio.CancelledError(*e.args) from None
    timer = None if timeout is None else loop.call_later(timeout, watch.expire, key, timeout)
    try:
        return await future
    except BaseException:
        watch.forget(key)
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().release()  # granted, but the waiter was cancelled before it resumed
        ticket.cancel()
        raise
    finally:
        if timer is not None:
            timer.cancel()


class AcquireAsync:
    """What :meth:`Pool.acquire_async` returns: ``await`` it for the
    :class:`Lease`, or use it as ``async with`` (released on exit)."""

    __slots__ = ("_pool", "_nbytes", "_timeout", "_lease")

    def __init__(self, pool: Pool, nbytes: int, timeout: Optional[float]) -> None:
        self._pool = pool
        self._nbytes = as_u64(nbytes, "nbytes")
        timeout_ns(timeout)  # refuses negative and NaN timeouts here, at the call
        self._timeout = None if timeout is None else float(timeout)
        self._lease: Optional[Lease] = None

    async def _acquire(self) -> Lease:
        got = self._pool._acquire_or_enqueue(self._nbytes)
        if not isinstance(got, core.TicketBase):
            return got  # granted at once: no trip through the loop
        try:
            return await wait(got, self._timeout)  # type: ignore[arg-type]
        except BaseException:
            got.cancel()  # also when it could not be watched at all
            raise

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._acquire().__await__()

    async def __aenter__(self) -> Lease:
        self._lease = await self._acquire()
        return self._lease

    async def __aexit__(self, *exc_info: object) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()
