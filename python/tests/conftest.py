"""Shared helpers of the mmpool Python tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

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


def ctrl_c_raises(code: str) -> str:
    """``code`` (dedented) for a child that must turn SIGINT into
    KeyboardInterrupt, as at a terminal. Python installs that handler only
    when SIGINT is not ignored at start, and a shell without job control
    starts background commands with SIGINT ignored; so the child installs it
    itself instead of trusting what the test run inherited."""
    return "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n" + textwrap.dedent(code)


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


LOOPS = ["asyncio", "uvloop"]
"""The event loops every asyncio test runs under."""


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            pytest.skip("uvloop is not installed (it is in the test extra: pip install .[test])")
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.fixture(params=LOOPS)
def run(request) -> Callable[[Awaitable[Any]], Any]:
    """Runs a coroutine to completion in a fresh event loop of each kind (the
    standard asyncio loop and uvloop), as ``asyncio.run`` does: tasks left
    over are cancelled and the loop is closed."""

    def run(main: Awaitable[Any]) -> Any:
        loop = new_loop(request.param)
        try:
            return loop.run_until_complete(main)
        finally:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    run.kind = request.param  # type: ignore[attr-defined]
    return run


async def until(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """``wait_until`` for coroutines: polls while the loop keeps running."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        await asyncio.sleep(0.001)
