"""Times acquire+release through a ``with`` block: mmpool's ``Pool`` against a
pure-Python, Condition-based byte semaphore (the algorithm of the module that
``mmpool.vllm`` replaces), measured in the same run. Prints the ratio.

    python python/bench/bench_with.py [--seconds 1.0]

Cases: one thread with ample budget; 8 threads with ample budget (only the
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


def case(name: str, make: Callable[[type], object], threads: int, seconds: float, rounds: int) -> None:
    ours, theirs = [], []
    for _ in range(rounds):  # interleaved, so drift in machine load hits both
        ours.append(run(make(mmpool.Pool), threads, seconds))
        theirs.append(run(make(ConditionPool), threads, seconds))
    for i, clock in enumerate(("wall", "CPU")):
        a = statistics.median(r[i] for r in ours)
        b = statistics.median(r[i] for r in theirs)
        print(f"{name:<32} {clock:>4}: mmpool {1e9 / a:6.0f} ns/pair   "
              f"Condition {1e9 / b:6.0f} ns/pair   ratio {a / b:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case and pool (median shown)")
    args = parser.parse_args()
    print(f"acquire+release of {NBYTES} bytes in a with block; median of {args.rounds} x {args.seconds} s")
    case("1 thread, ample budget", lambda cls: cls(1 << 40), 1, args.seconds, args.rounds)
    case("8 threads, ample budget", lambda cls: cls(1 << 40), 8, args.seconds, args.rounds)
    case("8 threads, budget for 4 at once", lambda cls: cls(4 * NBYTES), 8, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
