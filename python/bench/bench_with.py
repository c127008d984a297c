"""Times acquire+release through a ``with`` block: mmpool's ``Pool`` (and
``mmpool.vllm``'s drop-in pool) against a pure-Python, Condition-based byte
semaphore (the algorithm of the module that ``mmpool.vllm`` replaces),
measured in the same run. Prints the ratios, then each goal as met or missed.

    python python/bench/bench_with.py [--seconds 1.0] [--rounds 3]

Cases: one thread with ample budget, through ``Pool`` and through
``mmpool.vllm.MultiModalGPUMemoryPool``; 8 threads with ample budget (only the
GIL is shared); 8 threads on a budget that fits 4 requests at once (half of
them wait at any time). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Callable

import mmpool
from mmpool.vllm import MultiModalGPUMemoryPool


class ConditionPool:
    """Reference algorithm: one Condition; a waiter re-checks after every
    release (notify_all); leases are ids in a set so release is idempotent."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self.cond = threading.Condition()
        self.next_id = 0
        self.live: set[int] = set()

    def acquire(self, nbytes: int) -> "ConditionLease":
        if nbytes < 0 or nbytes > self.total:
            raise ValueError(nbytes)
        with self.cond:
            while self.free < nbytes:
                self.cond.wait()
            self.free -= nbytes
            lease_id = self.next_id
            self.next_id += 1
            self.live.add(lease_id)
        return ConditionLease(self, lease_id, nbytes)

    def give_back(self, lease: "ConditionLease") -> None:
        with self.cond:
            if lease.lease_id in self.live:
                self.live.discard(lease.lease_id)
                self.free += lease.nbytes
                self.cond.notify_all()


class ConditionLease:
    def __init__(self, pool: ConditionPool, lease_id: int, nbytes: int) -> None:
        self.pool = pool
        self.lease_id = lease_id
        self.nbytes = nbytes

    def release(self) -> None:
        self.pool.give_back(self)

    def __enter__(self) -> "ConditionLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


NBYTES = 1 << 20


def run(pool, threads: int, seconds: float) -> tuple[float, float]:
    """Acquire+release pairs per second of wall-clock time and per second of
    this process's CPU time (less disturbed by other load on the machine)."""
    stop = threading.Event()
    counts = [0] * threads

    def loop(i: int) -> None:
        acquire = pool.acquire
        n = 0
        while not stop.is_set():
            for _ in range(100):
                with acquire(NBYTES):
                    pass
            n += 100
        counts[i] = n

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    start, cpu = time.perf_counter(), time.process_time()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return sum(counts) / wall, sum(counts) / cpu


def case(name: str, ours: type, make: Callable[[type], object], threads: int, seconds: float, rounds: int) -> float:
    """Prints the wall-clock and CPU rows of one case; returns the CPU ratio
    (pairs per CPU second, ours over the baseline's)."""
    mine, theirs = [], []
    for _ in range(rounds):  # interleaved, so drift in machine load hits both
        mine.append(run(make(ours), threads, seconds))
        theirs.append(run(make(ConditionPool), threads, seconds))
    ratio = 0.0
    for i, clock in enumerate(("wall", "CPU")):
        a = statistics.median(r[i] for r in mine)
        b = statistics.median(r[i] for r in theirs)
        ratio = a / b
        print(f"{name:<32} {clock:>4}: mmpool {1e9 / a:6.0f} ns/pair   "
              f"Condition {1e9 / b:6.0f} ns/pair   ratio {ratio:5.2f}x")
    return ratio


GOALS = [  # (case, the least ratio it must reach)
    ("1 thread, ample budget", 5.0),
    ("1 thread, mmpool.vllm", 4.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case and pool (median shown)")
    args = parser.parse_args()
    print(f"acquire+release of {NBYTES} bytes in a with block; median of {args.rounds} x {args.seconds} s")
    ample = lambda cls: cls(1 << 40)  # noqa: E731
    ratios = {
        "1 thread, ample budget": case("1 thread, ample budget", mmpool.Pool, ample, 1, args.seconds, args.rounds),
        "1 thread, mmpool.vllm": case("1 thread, mmpool.vllm", MultiModalGPUMemoryPool, ample, 1, args.seconds,
                                      args.rounds),
    }
    case("8 threads, ample budget", mmpool.Pool, ample, 8, args.seconds, args.rounds)
    case("8 threads, budget for 4 at once", mmpool.Pool, lambda cls: cls(4 * NBYTES), 8, args.seconds, args.rounds)
    for name, least in GOALS:
        verdict = "met" if ratios[name] >= least else "MISSED"
        print(f"goal: {name} >= {least:.0f}x the Condition pool (CPU): {verdict} ({ratios[name]:.2f}x)")


if __name__ == "__main__":
    main()
