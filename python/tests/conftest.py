"""Shared helpers of the mmpool Python tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
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
