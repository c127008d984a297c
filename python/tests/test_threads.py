"""Threads: the GIL is released while waiting, FIFO holds, no byte is lost,
and an exception in the middle of a wait gives every byte back."""

from __future__ import annotations

import os
import random
import signal
import threading

import pytest

import mmpool
from conftest import run_python, wait_until


def test_a_blocked_acquire_releases_the_gil():
    # One wait slice of an hour: the waiter sits in a single C call, so another
    # Python thread can only count (and then release the bytes the waiter
    # needs) if that call released the GIL. Run in a child so that a GIL held
    # by the waiter shows as a timeout, not as a hung test run.
    result = run_python(
        """
        import threading, mmpool
        mmpool._lib.core._set_wait_slice_ns(3600 * 10**9)
        pool = mmpool.Pool(100)
        held = pool.acquire(100)
        got = []
        waiter = threading.Thread(target=lambda: got.append(pool.acquire(100)))
        waiter.start()
        while pool.stats().waiters != 1:
            pass
        count = 0
        def work():
            global count
            for _ in range(100_000):
                count += 1
            held.release()
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        waiter.join()
        print(count, got[0].nbytes, pool.stats().waited_grants)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["100000", "100", "1"]


def test_sixteen_threads_hammering_lose_no_bytes_and_never_overcommit():
    total = 1000
    pool = mmpool.Pool(total)
    held = 0
    peak = 0
    lock = threading.Lock()
    errors = []

    def hammer(seed: int) -> None:
        nonlocal held, peak
        rng = random.Random(seed)
        try:
            for _ in range(300):
                nbytes = rng.randint(0, total)
                with pool.acquire(nbytes) as lease:
                    with lock:
                        held += lease.nbytes
                        peak = max(peak, held)
                        over = held > total
                    if over:
                        errors.append(f"{held} bytes held at once, above the total {total}")
                    if rng.random() < 0.3:
                        smaller = rng.randint(0, lease.nbytes)
                        with lock:  # counted out before the pool can re-grant them
                            held -= lease.nbytes - smaller
                        lease.resize(smaller)
                    with lock:
                        held -= lease.nbytes
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    stats = pool.stats()
    assert stats.available_bytes == total
    assert stats.in_use_bytes == 0
    assert stats.outstanding_leases == 0
    assert stats.waiters == 0
    assert stats.grants == 16 * 300
    assert stats.peak_in_use_bytes <= total


def test_sixteen_waiting_threads_are_served_in_the_order_they_queued():
    # Each request is more than half the pool, so grants happen one at a
    # time; the order they joined the line is known from the waiter count.
    total = 100
    pool = mmpool.Pool(total)
    blocker = pool.acquire(total)
    rng = random.Random(4)
    sizes = [rng.randint(51, 100) for _ in range(16)]
    served = []

    def worker(index: int) -> None:
        with pool.acquire(sizes[index]):
            served.append(index)

    threads = []
    for index in range(16):
        t = threading.Thread(target=worker, args=(index,))
        t.start()
        threads.append(t)
        wait_until(lambda: pool.stats().waiters == index + 1, f"thread {index} is in line")
    blocker.release()
    for t in threads:
        t.join(60)
    assert served == list(range(16))
    assert pool.available_bytes == total


def test_a_small_request_does_not_overtake_a_large_one():
    pool = mmpool.Pool(100)
    held = pool.acquire(60)  # 40 free
    order = []
    big = threading.Thread(target=lambda: order.append(("big", pool.acquire(90))))
    big.start()
    wait_until(lambda: pool.stats().waiters == 1, "the large request is in line")
    small = threading.Thread(target=lambda: order.append(("small", pool.acquire(20))))
    small.start()
    wait_until(lambda: pool.stats().waiters == 2, "the small request is in line")
    assert order == []  # 20 bytes would fit, but the large request is first
    held.release()
    big.join(30)
    assert [name for name, _ in order] == ["big"]
    order[0][1].release()
    small.join(30)
    assert [name for name, _ in order] == ["big", "small"]
    order[1][1].release()
    assert pool.available_bytes == 100


class Interrupt(BaseException):
    pass


@pytest.fixture
def short_slices():
    old = mmpool._lib.core._set_wait_slice_ns(1_000_000)
    yield
    mmpool._lib.core._set_wait_slice_ns(old)


def interrupt_while_waiting(pool: mmpool.Pool, handler) -> None:
    """Raises ``handler``'s exception in this (the main) thread between two
    slices of a wait for 70 bytes: a signal handler runs there, as Ctrl-C's does."""
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        sender = threading.Thread(
            target=lambda: (wait_until(lambda: pool.stats().waiters == 1, "the main thread is in line"),
                            os.kill(os.getpid(), signal.SIGUSR1))
        )
        sender.start()
        with pytest.raises(Interrupt):
            pool.acquire(70)
        sender.join(30)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_an_exception_after_the_grant_but_before_collection_gives_the_bytes_back(short_slices):
    # The handler runs after a slice ran out: it releases the bytes, so the
    # ticket is granted in C, then raises before the grant is collected.
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    def grant_then_interrupt(signum, frame):
        held.release()
        assert pool.stats().waiters == 0  # granted, not collected
        raise Interrupt()

    interrupt_while_waiting(pool, grant_then_interrupt)
    stats = pool.stats()
    assert stats.available_bytes == 100
    assert stats.outstanding_leases == 0
    assert stats.waiters == 0


def test_an_exception_while_in_line_leaves_the_line(short_slices):
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    def interrupt(signum, frame):
        assert pool.stats().waiters == 1
        raise Interrupt()

    interrupt_while_waiting(pool, interrupt)
    stats = pool.stats()
    assert (stats.waiters, stats.timeouts) == (0, 0)  # left the line; not a timeout
    held.release()
    assert pool.available_bytes == 100
    with pool.acquire(100, timeout=0):  # nobody is left in line ahead
        pass
