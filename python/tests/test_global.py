"""The global pool and log forwarding."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

import mmpool

GIB = 1 << 30


def test_init_global_pool_splits_the_budget_and_installs_it():
    pool = mmpool.init_global_pool(1.5, api_process_count=4)
    assert pool is not None
    assert pool.total_bytes == (3 * GIB // 2) // 4
    assert mmpool.global_pool() is pool


def test_a_budget_of_zero_or_less_disables_gating():
    mmpool.init_global_pool(1.0)
    assert mmpool.init_global_pool(0) is None
    assert mmpool.global_pool() is None
    assert mmpool.init_global_pool(-2.0, api_process_count=0) is None  # the count is not looked at


@pytest.mark.parametrize("count", [0, -1, 2**32])
def test_init_global_pool_refuses_bad_process_counts(count):
    with pytest.raises(ValueError, match="api_process_count"):
        mmpool.init_global_pool(1.0, api_process_count=count)
    assert mmpool.global_pool() is None


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), 2.0**31])
def test_init_global_pool_refuses_budgets_it_cannot_split(budget):
    with pytest.raises(ValueError, match="GiB"):
        mmpool.init_global_pool(budget)


def test_set_global_pool_installs_and_removes():
    pool = mmpool.Pool(1234)
    mmpool.set_global_pool(pool)
    assert mmpool.global_pool() is pool
    mmpool.set_global_pool(None)
    assert mmpool.global_pool() is None
    with pytest.raises(TypeError):
        mmpool.set_global_pool(42)  # type: ignore[arg-type]


def test_the_global_slot_keeps_the_pool_alive():
    mmpool.set_global_pool(mmpool.Pool(4321))
    again = mmpool.global_pool()
    assert again is not None and again.total_bytes == 4321
    lease = again.acquire(21)
    assert mmpool.global_pool().available_bytes == 4300
    lease.release()


def test_library_log_lines_reach_python_logging(caplog):
    with caplog.at_level(logging.INFO, logger="mmpool"):
        mmpool.init_global_pool(2.0, api_process_count=2)
    records = [r for r in caplog.records if r.name == "mmpool"]
    assert records, "no log line reached the mmpool logger"
    assert records[-1].levelno == logging.INFO
    assert str(GIB) in records[-1].getMessage()


def test_global_pool_required_raises_when_there_is_none():
    assert mmpool.global_pool() is None
    with pytest.raises(mmpool.GlobalPoolError, match="none was installed"):
        mmpool.global_pool(required=True)
    pool = mmpool.init_global_pool(1.0)
    assert mmpool.global_pool(required=True) is pool


def test_a_shared_pool_of_another_total_is_loud_not_quiet(tmp_path):
    # Another process holds the shared pool with a total of 4096 bytes; a
    # process whose MMPOOL_SHARED_GIB asks for 1 GiB cannot attach. It must
    # hear why where it looks: a logging warning, and an exception on
    # explicit use.
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    holder = mmpool.SharedPool(name, 4096)
    try:
        env = dict(os.environ, MMPOOL_SHARED_NAME=name, MMPOOL_SHARED_GIB="1")
        code = textwrap.dedent(
            """
            import logging, mmpool
            logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
            print("global:", mmpool.global_pool(), flush=True)
            try:
                mmpool.global_pool(required=True)
            except mmpool.GlobalPoolError as e:
                print("raised:", e, flush=True)
            """
        )
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        mmpool.SharedPool.unlink(name)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "global: None"
    raised = lines[1]
    assert raised.startswith("raised: no global pool: MMPOOL_SHARED_NAME=")
    for words in ("4096", str(GIB), "MMPOOL_SHARED_GIB", "recreates it with its own total"):
        assert words in raised, raised
    assert "mmpool_" not in raised and "pass 0" not in raised
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING mmpool: ")]
    assert len(warnings) == 1, result.stderr  # once, not per lookup
    assert "4096" in warnings[0] and "MMPOOL_SHARED_GIB" in warnings[0]
    assert holder.total_bytes == 4096


def test_a_matching_total_attaches_the_global_pool_to_the_shared_pool():
    # The canary of the test above: the same environment with the right
    # total gates on the shared pool, warning nothing.
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    holder = mmpool.SharedPool(name, GIB)
    try:
        env = dict(os.environ, MMPOOL_SHARED_NAME=name, MMPOOL_SHARED_GIB="1")
        code = "import mmpool; p = mmpool.global_pool(required=True); print(p.total_bytes, p.acquire(7).nbytes)"
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        mmpool.SharedPool.unlink(name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(GIB), "7"]
    assert "WARNING" not in result.stderr and holder.total_bytes == GIB
