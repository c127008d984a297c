"""Shared helpers of the mmpool Python tests."""

from __future__ import annotations

import os
import subprocess
import threading
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

import mmpool

REPO = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Polls ``condition`` until it holds; fails the test after ``limit_s``.
    Used to learn a state (someone is in line), never to prove an order."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.002)


def granted_after_a_wait(pool: mmpool.Pool, nbytes: int, timeout: float | None = None) -> mmpool.Lease:
    """Fills ``pool``, has another thread ``acquire(nbytes, timeout)``, waits
    until it is in line, frees the pool and returns the lease it was granted."""
    held = pool.acquire(pool.total_bytes)
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(nbytes, timeout=timeout)))
    waiter.start()
    wait_until(lambda: pool.stats().waiters == 1, "the waiter is in line")
    held.release()
    waiter.join(30)
    assert got, "the waiter was not granted"
    return got[0]


def run_python(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a child interpreter (same environment); a hang becomes
    a failure instead of a stuck test run."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def no_global_pool_leaks():
    """Each test starts and ends with gating disabled."""
    mmpool.set_global_pool(None)
    yield
    mmpool.set_global_pool(None)


@pytest.fixture
def shared_name():
    """A fresh shared pool name, unlinked after the test."""
    n = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield n
    try:
        mmpool.SharedPool.unlink(n)
    except OSError:
        pass
