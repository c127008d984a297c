"""``Ticket``: a place in a pool's line, redeemed by a thread (``wait``) or
in an event loop (``await``). The C half (``mmpool._core.TicketBase``) holds
the place and its state; the ``await`` goes through :mod:`mmpool._async`."""

from __future__ import annotations

from typing import Any, Generator

from . import _async
from ._lib import core


class Ticket(core.TicketBase):
    """A place in a pool's line from :meth:`Pool.enqueue`, redeemed once for a
    :class:`Lease`:

    - ``ticket.wait(timeout=None)`` in a thread (GIL released, Ctrl-C
      interrupts it). A timeout raises ``TimeoutError`` and keeps the place:
      wait again or cancel.
    - ``await ticket`` in an event loop (asyncio or uvloop), without a thread:
      the loop's one notifier fd wakes it. Cancelling the awaiting task (or
      ``asyncio.timeout`` / ``wait_for`` running out) cancels the ticket.
    - ``ticket.cancel()`` from any thread leaves the line, and a grant not yet
      collected goes back. A thread blocked in ``wait`` then raises
      ``concurrent.futures.CancelledError`` (what ``Future.result`` raises
      for a cancelled future); an ``await`` raises ``asyncio.CancelledError``.
      If the grant was collected first, cancel does nothing and the lease is
      the waiter's: no byte is lost or granted twice.

    A ticket garbage-collected while still in line leaves it and emits a
    ``ResourceWarning``. ``id``, ``nbytes``, ``pool``, ``state``
    (``"waiting"``, ``"redeemed"``, ``"cancelled"``, ``"gone"``).
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        return _async.wait(self).__await__()

    def _exception(self, status: int, operation: str, nbytes: int, exception: BaseException) -> BaseException:
        # The pool's own wording of refusals (mmpool.vllm's) applies to its tickets too.
        reword = getattr(self.pool, "_exception", None)
        return exception if reword is None else reword(status, operation, nbytes, exception)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id:#x} nbytes={self.nbytes} {self.state}>"
