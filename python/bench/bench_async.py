"""Release -> coroutine resumed: how long a coroutine waiting for bytes takes
to run again after another thread releases them, and how many threads the
waiting costs, for three ways of waiting in an asyncio loop, measured in the
same run:

- ``await pool.acquire_async(n)`` (mmpool: one notifier fd per loop);
- ``await loop.run_in_executor(executor, pool.acquire, n)`` on an 8-thread
  executor (what a server does without it: a worker parks per waiter);
- a pure-Python pool on ``asyncio.Condition`` (released from the thread with
  ``run_coroutine_threadsafe``, as its lock belongs to the loop).

    python python/bench/bench_async.py [--rounds 2000] [--waiters 64] [--uvloop]

Latency: one coroutine waits on a full pool of 1 byte; a releaser thread sees
it in line, notes the time and releases; the coroutine notes when it runs
again and hands its lease back to the releaser, ``--rounds`` times. Threads:
``--waiters`` coroutines wait at once, and the process's OS threads are
counted while they wait (beyond the loop's own). Prints p50/p99 and the
ratios. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import queue
import threading
import time
from typing import Any, Callable

import mmpool


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class ConditionPool:
    """A byte pool for one event loop on asyncio.Condition (notify_all on
    every release, each waiter re-checks)."""

    def __init__(self, total: int) -> None:
        self.free = total
        self.waiters = 0
        self.cond = asyncio.Condition()

    async def acquire(self, nbytes: int) -> int:
        async with self.cond:
            self.waiters += 1
            try:
                await self.cond.wait_for(lambda: self.free >= nbytes)
            finally:
                self.waiters -= 1
            self.free -= nbytes
        return nbytes

    async def release(self, nbytes: int) -> None:
        async with self.cond:
            self.free += nbytes
            self.cond.notify_all()


class Way:
    """One way of waiting: how a coroutine acquires, how a thread releases,
    how many wait in line now."""

    name = ""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def acquire(self) -> Any: ...
    def release(self, lease: Any) -> None: ...
    def waiting(self) -> int: ...
    def close(self) -> None:
        pass


class AcquireAsync(Way):
    name = "mmpool acquire_async"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.pool = mmpool.Pool(1)

    async def acquire(self) -> Any:
        return await self.pool.acquire_async(1)

    def release(self, lease: Any) -> None:
        lease.release()

    def waiting(self) -> int:
        return self.pool.stats().waiters


class Executor(AcquireAsync):
    name = "run_in_executor(acquire), 8 threads"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.executor = concurrent.futures.ThreadPoolExecutor(8)

    async def acquire(self) -> Any:
        return await self.loop.run_in_executor(self.executor, self.pool.acquire, 1)

    def close(self) -> None:
        self.executor.shutdown()


class Condition(Way):
    name = "asyncio.Condition pool"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.pool = ConditionPool(1)

    async def acquire(self) -> Any:
        return await self.pool.acquire(1)

    def release(self, lease: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.pool.release(lease), self.loop)

    def waiting(self) -> int:
        return self.pool.waiters


def spin_until(condition: Callable[[], bool]) -> None:
    while not condition():
        time.sleep(0)


async def latencies(way: Way, rounds: int) -> list[float]:
    """Release -> resumed, in microseconds, ``rounds`` times."""
    handoff: queue.Queue[Any] = queue.Queue()
    released_at = [0]

    def releaser() -> None:
        while True:
            lease = handoff.get()
            if lease is None:
                return
            spin_until(lambda: way.waiting() == 1)
            released_at[0] = time.perf_counter_ns()
            way.release(lease)

    thread = threading.Thread(target=releaser)
    thread.start()
    handoff.put(await way.acquire())  # the byte, held by the releaser
    out = []
    for i in range(rounds):
        lease = await way.acquire()
        out.append((time.perf_counter_ns() - released_at[0]) / 1000)
        if i + 1 < rounds:
            handoff.put(lease)
    handoff.put(None)
    thread.join()
    way.release(lease)
    await asyncio.sleep(0.01)  # the Condition pool's release runs in the loop
    return out


async def threads_while_waiting(way: Way, waiters: int, base: int) -> int:
    """OS threads beyond the ``base`` the process had before ``way`` was
    made, while ``waiters`` coroutines wait."""
    held = await way.acquire()
    tasks = [asyncio.ensure_future(way.acquire()) for _ in range(waiters)]
    in_line = min(waiters, 8) if isinstance(way, Executor) else waiters  # the rest queue for a worker
    while way.waiting() != in_line:
        await asyncio.sleep(0.001)
    extra = os_threads() - base
    way.release(held)
    for task in tasks:
        way.release(await task)
    await asyncio.sleep(0.01)  # the Condition pool's last release runs in the loop
    return extra


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def bench(rounds: int, waiters: int) -> None:
    loop = asyncio.get_running_loop()
    rows = []
    for cls in (AcquireAsync, Executor, Condition):
        base = os_threads()
        way = cls(loop)
        try:
            await latencies(way, min(rounds, 50))  # warm-up
            lat = await latencies(way, rounds)
            rows.append((way.name, percentile(lat, 50), percentile(lat, 99), await threads_while_waiting(way, waiters, base)))
        finally:
            way.close()
    print(f"{'way of waiting':<38} {'p50 us':>8} {'p99 us':>8}   threads while {waiters} wait")
    for name, p50, p99, threads in rows:
        print(f"{name:<38} {p50:8.1f} {p99:8.1f}   {threads}")
    mine = rows[0]
    for name, p50, p99, _ in rows[1:]:
        print(f"ratio {name} / acquire_async: p50 {p50 / mine[1]:.2f}x, p99 {p99 / mine[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="releases timed per way")
    parser.add_argument("--waiters", type=int, default=64, help="coroutines waiting at once for the thread count")
    parser.add_argument("--uvloop", action="store_true", help="run in a uvloop loop instead of asyncio's")
    args = parser.parse_args()
    loop: asyncio.AbstractEventLoop
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    print(f"release -> coroutine resumed; {args.rounds} rounds; {type(loop).__module__}.{type(loop).__name__}")
    try:
        loop.run_until_complete(bench(args.rounds, args.waiters))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
