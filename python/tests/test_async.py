"""Pool.acquire_async and `await ticket` in one event loop thread, under the
standard asyncio loop and under uvloop (the `run` fixture): FIFO with
threads and C callers, asyncio's cancellation and timeouts, no thread per
waiter, no byte lost or granted twice."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import gc
import os
import random
import sys
import threading
import tracemalloc

import pytest

import mmpool
from mmpool import _async
from conftest import until, wait_until


def os_threads() -> int:
    """Threads of this process as the kernel counts them (C threads too)."""
    return len(os.listdir("/proc/self/task"))


def settled(pool: mmpool.Pool) -> tuple[int, int, int]:
    stats = pool.stats()
    return stats.available_bytes, stats.outstanding_leases, stats.waiters


def test_free_bytes_are_granted_without_a_trip_through_the_loop():
    pool = mmpool.Pool(100)
    # No event loop at all: a grant at once completes on the first step.
    step = pool.acquire_async(30).__await__()
    with pytest.raises(StopIteration) as done:
        step.send(None)
    lease = done.value.value
    assert isinstance(lease, mmpool.Lease) and lease.nbytes == 30 and pool.available_bytes == 70
    lease.release()


def test_await_and_async_with(run):
    pool = mmpool.Pool(100)

    async def main() -> None:
        lease = await pool.acquire_async(40)
        assert (lease.nbytes, pool.available_bytes) == (40, 60)
        lease.release()
        async with pool.acquire_async(70) as held:
            assert held.nbytes == 70 and pool.available_bytes == 30
        assert held.released and pool.available_bytes == 100
        with pytest.raises(RuntimeError, match="body"):
            async with pool.acquire_async(10):
                raise RuntimeError("body failed")
        assert pool.available_bytes == 100

    run(main())


def test_a_waiting_coroutine_is_woken_by_a_release(run):
    pool = mmpool.Pool(100)

    async def main() -> None:
        held = pool.acquire(100)
        waiter = asyncio.ensure_future(pool.acquire_async(60))
        await until(lambda: pool.stats().waiters == 1, "the coroutine is in line")
        assert not waiter.done()
        held.release()
        lease = await waiter
        assert lease.nbytes == 60 and pool.available_bytes == 40
        lease.release()

    run(main())
    assert settled(pool) == (100, 0, 0)


def test_a_release_from_another_thread_wakes_the_loop(run):
    pool = mmpool.Pool(10)
    held = pool.acquire(10)

    async def main() -> mmpool.Lease:
        waiter = asyncio.ensure_future(pool.acquire_async(10))
        await until(lambda: pool.stats().waiters == 1, "the coroutine is in line")
        threading.Thread(target=held.release).start()
        return await waiter

    run(main()).release()
    assert settled(pool) == (10, 0, 0)


def test_the_timeout_leaves_the_line_and_counts(run):
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    async def main() -> None:
        with pytest.raises(TimeoutError, match=r"Pool.acquire_async: a request for 50 bytes was not granted within 0.05 s"):
            await pool.acquire_async(50, timeout=0.05)

    run(main())
    assert pool.stats().timeouts == 1 and pool.stats().waiters == 0
    held.release()
    assert settled(pool) == (100, 0, 0)


@pytest.mark.parametrize("how", ["cancel", "wait_for", "timeout"])
def test_a_cancelled_waiter_leaves_the_line(run, how):
    if how == "timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout is new in Python 3.11")
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    async def main() -> None:
        if how == "cancel":
            task = asyncio.ensure_future(pool.acquire_async(50))
            await until(lambda: pool.stats().waiters == 1, "the coroutine is in line")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        elif how == "wait_for":
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(pool.acquire_async(50), 0.05)
        else:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):  # type: ignore[attr-defined]
                    await pool.acquire_async(50)
        assert pool.stats().waiters == 0
        behind = asyncio.ensure_future(pool.acquire_async(100))  # not blocked by a ghost
        await until(lambda: pool.stats().waiters == 1, "the next coroutine is in line")
        held.release()
        (await behind).release()

    run(main())
    assert settled(pool) == (100, 0, 0)
    assert pool.stats().timeouts == 0  # cancellations are no timeouts


def test_a_grant_that_raced_the_cancellation_goes_back(run):
    """The grant is decided and even delivered to the waiter's future, but
    the task is cancelled before it resumes: CancelledError, bytes back."""
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(pool.acquire_async(80))
        await until(lambda: pool.stats().waiters == 1, "the coroutine is in line")
        held.release()
        assert pool.available_bytes == 20  # granted to the waiter, not collected yet
        _async._watch_for(loop)._on_readable()  # collected: the waiter's future holds the lease
        assert pool.available_bytes == 20 and pool.stats().outstanding_leases == 1
        task.cancel()  # before the task resumes
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert settled(pool) == (100, 0, 0)


def test_a_grant_decided_but_not_delivered_goes_back_on_cancel(run):
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    async def main() -> None:
        task = asyncio.ensure_future(pool.acquire_async(80))
        await until(lambda: pool.stats().waiters == 1, "the coroutine is in line")
        held.release()  # decided; its event is queued but the loop has not drained it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert settled(pool) == (100, 0, 0)


def test_closing_the_pool_fails_every_waiter(run):
    pool = mmpool.Pool(10)
    held = pool.acquire(10)

    async def main() -> None:
        tasks = [asyncio.ensure_future(pool.acquire_async(5)) for _ in range(20)]
        await until(lambda: pool.stats().waiters == 20, "all in line")
        pool.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, mmpool.PoolClosedError) for r in results), results
        with pytest.raises(mmpool.PoolClosedError, match="Pool.acquire_async"):
            await pool.acquire_async(1)

    run(main())
    held.release()
    assert pool.stats().outstanding_leases == 0


def test_lowering_the_total_below_a_waiter_fails_it(run):
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    async def main() -> None:
        task = asyncio.ensure_future(pool.acquire_async(80))
        await until(lambda: pool.stats().waiters == 1, "in line")
        pool.resize(50)
        with pytest.raises(ValueError):
            await task
        with pytest.raises(ValueError, match="Pool.acquire_async"):
            await pool.acquire_async(51)

    run(main())
    held.release()
    assert settled(pool) == (50, 0, 0)


def test_arguments_are_checked_at_the_call():
    pool = mmpool.Pool(10)
    with pytest.raises(ValueError, match="non-negative"):
        pool.acquire_async(-1)
    with pytest.raises(ValueError, match="timeout"):
        pool.acquire_async(1, timeout=-1)
    with pytest.raises(TypeError):
        pool.acquire_async(1.5)


def test_await_ticket_and_cancel_from_another_thread(run):
    pool = mmpool.Pool(100)
    held = pool.acquire(100)

    async def main() -> None:
        first, second = pool.enqueue(60), pool.enqueue(40)
        watch = _async._watch_for(asyncio.get_running_loop())
        waiting = asyncio.ensure_future(_await(first))
        await until(lambda: len(watch._waiting) == 1, "the coroutine awaits the ticket")
        canceller = threading.Thread(target=first.cancel)
        canceller.start()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        canceller.join()
        assert first.state == "cancelled" and pool.stats().waiters == 1
        with pytest.raises(asyncio.CancelledError):
            await first  # cancelled before the await: the same
        held.release()
        lease = await second
        assert lease.nbytes == 40 and second.state == "redeemed"
        lease.release()

    run(main())
    assert settled(pool) == (100, 0, 0)


async def _await(ticket: mmpool.Ticket) -> mmpool.Lease:
    return await ticket


def test_the_global_pool_has_acquire_async(run):
    pool = mmpool.init_global_pool(1 / 1024)  # 1 MiB

    async def main() -> None:
        async with mmpool.global_pool(required=True).acquire_async(1 << 20) as lease:
            assert lease.nbytes == 1 << 20
            late = asyncio.ensure_future(mmpool.global_pool(required=True).acquire_async(10))
            await until(lambda: pool.stats().waiters == 1, "in line on the global pool")
        (await late).release()

    run(main())
    assert settled(pool) == (1 << 20, 0, 0)


def test_a_shared_pool_has_acquire_async(run, shared_name):
    shared = mmpool.SharedPool(shared_name, 1000)

    async def main() -> None:
        async with shared.acquire_async(1000):
            assert shared.available_bytes == 0
            late = asyncio.ensure_future(shared.acquire_async(10))
            await until(lambda: shared.stats().waiters == 1, "in line on the shared pool")
        (await late).release()

    run(main())
    assert settled(shared) == (1000, 0, 0)


def test_one_notifier_fd_per_loop_however_many_wait(run):
    pool = mmpool.Pool(1)
    held = pool.acquire(1)

    async def one() -> None:
        async with pool.acquire_async(1):
            pass

    async def main() -> tuple[int, int]:
        tasks = [asyncio.ensure_future(one())]
        await until(lambda: pool.stats().waiters == 1, "the first is in line")
        fds = len(os.listdir("/proc/self/fd"))  # with this loop's notifier
        tasks += [asyncio.ensure_future(one()) for _ in range(99)]
        await until(lambda: pool.stats().waiters == 100, "all in line")
        more = len(os.listdir("/proc/self/fd")) - fds
        watched = len(_async._watch_for(asyncio.get_running_loop())._waiting)
        held.release()
        await asyncio.gather(*tasks)
        return more, watched

    gc.collect()  # no earlier loop's notifier is freed while counting
    gc.disable()
    try:
        assert run(main()) == (0, 100)  # no fd more for 99 more waiters: all on one notifier
    finally:
        gc.enable()
    assert settled(pool) == (1, 0, 0)


def test_ten_thousand_coroutines_wait_in_fifo_order_without_threads(run, capsys):
    n, traced = 10_000, 1_000
    pool = mmpool.Pool(1)
    held = pool.acquire(1)
    order: list[int] = []

    async def worker(i: int) -> None:
        lease = await pool.acquire_async(1)
        order.append(i)
        lease.release()  # the next in line is granted only now

    async def main() -> tuple[int, int, int, float]:
        threads_before, os_before = threading.active_count(), os_threads()
        # Memory is traced over the first `traced` waiters only: tracing
        # slows every allocation several times over, and the cost of one
        # waiter does not depend on how many wait.
        tracemalloc.start()
        base = tracemalloc.take_snapshot()
        tasks = []
        for i in range(n):
            tasks.append(asyncio.ensure_future(worker(i)))
            # Each joins the line before the next starts: the order is the
            # order of the observed waiter count, not of task scheduling.
            while pool.stats().waiters != i + 1:
                await asyncio.sleep(0)
            if i + 1 == traced:
                grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(base, "filename"))
                tracemalloc.stop()
        during = (threading.active_count(), os_threads())
        assert during == (threads_before, os_before), (threads_before, os_before, during)
        held.release()
        await asyncio.gather(*tasks)
        return threads_before, os_before, n, grown / traced

    _, os_before, _, per_waiter = run(main())
    assert order == list(range(n))
    assert settled(pool) == (1, 0, 0)
    with capsys.disabled():
        print(f"\n[{run.kind}] {n} coroutines waiting: {per_waiter:.0f} bytes of Python memory per waiter "
              f"(tracemalloc over the first {traced}; task, coroutine, future and the notifier's record), "
              f"{os_before} OS threads throughout")


def test_fifo_across_coroutines_threads_and_a_c_caller(run):
    pool = mmpool.Pool(1)
    held = pool.acquire(1)
    order: list[str] = []
    c = ctypes.CDLL(mmpool.get_library_path())  # the loaded copy: the same pool

    class CLease(ctypes.Structure):
        _fields_ = [("id", ctypes.c_uint64), ("nbytes", ctypes.c_uint64)]

    c.mmpool_acquire.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(CLease)]
    c.mmpool_release.argtypes = [ctypes.c_void_p, CLease]

    def thread_waiter(name: str) -> None:
        with pool.acquire(1):
            order.append(name)

    def c_waiter(name: str) -> None:
        lease = CLease()
        assert c.mmpool_acquire(pool.handle, 1, ctypes.byref(lease)) == 0  # blocks in C
        order.append(name)
        assert c.mmpool_release(pool.handle, lease) == 0

    async def coroutine_waiter(name: str) -> None:
        async with pool.acquire_async(1):
            order.append(name)

    async def main() -> list[str]:
        kinds = ["coroutine", "thread", "c", "coroutine", "c", "thread", "coroutine", "coroutine", "c", "thread"]
        tasks, threads, expected = [], [], []
        for i, kind in enumerate(kinds):
            name = f"{kind}-{i}"
            expected.append(name)
            if kind == "coroutine":
                tasks.append(asyncio.ensure_future(coroutine_waiter(name)))
            else:
                threads.append(threading.Thread(target=thread_waiter if kind == "thread" else c_waiter, args=(name,)))
                threads[-1].start()
            await until(lambda: pool.stats().waiters == i + 1, f"{name} is in line")
        held.release()
        await asyncio.gather(*tasks)
        for thread in threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 30)
        return expected

    expected = run(main())
    assert order == expected
    assert settled(pool) == (1, 0, 0)


def test_random_cancellation_stress_accounts_for_every_byte(run):
    total = 1000
    pool = mmpool.Pool(total)
    rng = random.Random(1234)
    held_now = 0
    peak = 0
    granted_ids: set[int] = set()
    outcomes: dict[str, int] = {}
    errors: list[str] = []

    def note(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    async def hold(lease: mmpool.Lease, seconds: float) -> None:
        nonlocal held_now, peak
        if lease.id in granted_ids:
            errors.append(f"lease {lease.id:#x} granted twice")
        granted_ids.add(lease.id)
        held_now += lease.nbytes
        peak = max(peak, held_now)
        if held_now > total:
            errors.append(f"{held_now} bytes held at once, above the total {total}")
        try:
            await asyncio.sleep(seconds)
        finally:
            held_now -= lease.nbytes
            lease.release()

    async def one(seed: int) -> None:
        r = random.Random(seed)
        nbytes = r.randint(1, total)
        mode = r.choice(["plain", "timeout", "ticket"])
        try:
            if mode == "plain":
                lease = await pool.acquire_async(nbytes)
            elif mode == "timeout":
                lease = await pool.acquire_async(nbytes, timeout=r.choice([0, 0.001, 0.01]))
            else:
                lease = await pool.enqueue(nbytes)
            await hold(lease, r.choice([0, 0, 0.001, 0.005]))
            note("held")
        except TimeoutError:
            note("timeout")
        except asyncio.CancelledError:
            note("cancelled")
            raise

    def thread_worker(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(30):
            nbytes = r.randint(1, total)
            if r.random() < 0.5:
                ticket = pool.enqueue(nbytes)
                if r.random() < 0.5:
                    ticket.cancel()  # racing its grant
                try:
                    ticket.wait(timeout=0.01).release()
                except (TimeoutError, concurrent.futures.CancelledError):
                    ticket.cancel()
            else:
                try:
                    pool.acquire(nbytes, timeout=0.01).release()
                except TimeoutError:
                    pass

    async def main() -> None:
        threads = [threading.Thread(target=thread_worker, args=(rng.random(),)) for _ in range(3)]
        for thread in threads:
            thread.start()
        tasks: list[asyncio.Task[None]] = []
        for _ in range(1500):
            tasks.append(asyncio.ensure_future(one(rng.randrange(2**32))))
            if rng.random() < 0.3:
                # cancel a random task: before its grant, racing it, or while it holds the bytes
                rng.choice(tasks).cancel()
            if rng.random() < 0.2:
                await asyncio.sleep(rng.choice([0, 0, 0.001]))
        await asyncio.gather(*tasks, return_exceptions=True)
        for thread in threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 60)
        # Pool close with coroutines in line and holding.
        keep = pool.acquire(total // 2)
        closing = [asyncio.ensure_future(one(rng.randrange(2**32))) for _ in range(100)]
        await until(lambda: pool.stats().waiters > 0, "some in line before the close")
        pool.close()
        results = await asyncio.gather(*closing, return_exceptions=True)
        assert all(r is None or isinstance(r, (mmpool.PoolClosedError, asyncio.CancelledError)) for r in results), [
            r for r in results if r is not None
        ]
        keep.release()

    run(main())
    assert not errors, errors[:5]
    assert outcomes.get("held", 0) > 100 and outcomes.get("cancelled", 0) > 50 and outcomes.get("timeout", 0) > 10, outcomes
    stats = pool.stats()
    assert (stats.available_bytes, stats.in_use_bytes, stats.outstanding_leases, stats.waiters) == (total, 0, 0, 0)
    assert held_now == 0 and peak <= total
