"""Pool.enqueue and Ticket from threads: a place in line redeemed once,
cancellable from any thread, nothing lost or granted twice."""

from __future__ import annotations

import concurrent.futures
import gc
import threading
import warnings

import pytest

import mmpool
from conftest import wait_until


def test_a_ticket_granted_at_once_is_redeemed_by_wait():
    pool = mmpool.Pool(100)
    ticket = pool.enqueue(40)
    assert isinstance(ticket, mmpool.Ticket) and ticket.pool is pool
    assert (ticket.nbytes, ticket.state) == (40, "waiting")
    lease = ticket.wait(timeout=0)
    assert isinstance(lease, mmpool.Lease)
    assert (lease.id, lease.nbytes, ticket.state) == (ticket.id, 40, "redeemed")
    assert pool.available_bytes == 60
    with pytest.raises(ValueError, match="already redeemed"):
        ticket.wait(timeout=0)  # redeemed once
    ticket.cancel()  # does nothing to the lease now
    assert pool.available_bytes == 60
    lease.release()
    assert pool.available_bytes == 100


def test_a_timed_out_wait_keeps_the_place_in_line():
    pool = mmpool.Pool(100)
    held = pool.acquire(100)
    ticket = pool.enqueue(70)
    with pytest.raises(TimeoutError, match="Ticket.wait"):
        ticket.wait(timeout=0.01)
    assert ticket.state == "waiting" and pool.stats().waiters == 1
    behind = pool.enqueue(10)  # joins behind it, though 10 bytes will be free first
    held.release()
    with behind.wait(timeout=0) as small, ticket.wait(timeout=0) as big:
        assert (big.nbytes, small.nbytes, pool.available_bytes) == (70, 10, 20)
    assert pool.stats().timeouts == 0  # the place was kept: no request gave up


def test_cancel_from_another_thread_wakes_a_blocked_wait_with_cancelled_error():
    pool = mmpool.Pool(100)
    held = pool.acquire(100)
    ticket = pool.enqueue(50)
    raised: list[BaseException] = []

    def waiter() -> None:
        try:
            ticket.wait()
        except BaseException as e:  # noqa: BLE001 - checked below
            raised.append(e)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: pool.stats().waiters == 1, "the ticket is in line")
    ticket.cancel()
    thread.join(30)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], concurrent.futures.CancelledError), raised
    assert "was cancelled" in str(raised[0])
    assert ticket.state == "cancelled" and pool.stats().waiters == 0
    held.release()
    assert pool.available_bytes == 100


def test_cancelling_a_granted_ticket_gives_its_bytes_back():
    pool = mmpool.Pool(100)
    held = pool.acquire(100)
    ticket = pool.enqueue(60)
    held.release()  # granted to the ticket, not collected
    assert pool.available_bytes == 40
    ticket.cancel()
    ticket.cancel()  # idempotent
    assert pool.available_bytes == 100 and pool.stats().outstanding_leases == 0
    with pytest.raises(concurrent.futures.CancelledError):
        ticket.wait(timeout=0)


def test_a_cancel_racing_a_wait_loses_no_byte_and_grants_once():
    pool = mmpool.Pool(10)
    for _ in range(200):
        held = pool.acquire(10)
        ticket = pool.enqueue(10)
        got: list[object] = []

        def waiter() -> None:
            try:
                got.append(ticket.wait(timeout=30))
            except concurrent.futures.CancelledError as e:
                got.append(e)

        thread = threading.Thread(target=waiter)
        thread.start()
        held.release()  # the grant races the cancel below
        ticket.cancel()
        thread.join(30)
        assert len(got) == 1
        if isinstance(got[0], mmpool.Lease):
            assert got[0].nbytes == 10 and pool.available_bytes == 0
            got[0].release()
        assert pool.available_bytes == 10 and pool.stats().outstanding_leases == 0


def test_closing_the_pool_fails_a_waiting_ticket():
    pool = mmpool.Pool(10)
    held = pool.acquire(10)
    ticket = pool.enqueue(5)
    pool.close()
    with pytest.raises(mmpool.PoolClosedError, match="Ticket.wait"):
        ticket.wait(timeout=0)
    assert ticket.state == "gone"
    with pytest.raises(mmpool.PoolClosedError, match="Pool.enqueue"):
        pool.enqueue(1)
    held.release()


def test_enqueue_refuses_what_acquire_refuses():
    pool = mmpool.Pool(10)
    with pytest.raises(ValueError, match="exceeds"):
        pool.enqueue(11)
    with pytest.raises(ValueError, match="non-negative"):
        pool.enqueue(-1)
    with pytest.raises(TypeError):
        pool.enqueue(1.5)
    with pytest.raises(TypeError, match="Pool.enqueue"):
        mmpool.Ticket()


def test_a_ticket_dropped_in_line_leaves_it_with_a_resource_warning():
    pool = mmpool.Pool(10)
    held = pool.acquire(10)
    ticket = pool.enqueue(4)
    assert pool.stats().waiters == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del ticket
        gc.collect()
    assert pool.stats().waiters == 0
    assert any("unredeemed ticket for 4 bytes" in str(w.message) for w in caught), [str(w.message) for w in caught]
    held.release()
    assert pool.available_bytes == 10


def test_the_vllm_pool_words_its_tickets_refusals():
    from mmpool.vllm import MultiModalGPUMemoryLease, MultiModalGPUMemoryPool

    pool = MultiModalGPUMemoryPool(100)
    with pytest.raises(ValueError, match="mm-ipc-gpu-memory-gb"):
        pool.enqueue(101)
    with pool.enqueue(10).wait() as lease:
        assert isinstance(lease, MultiModalGPUMemoryLease)
