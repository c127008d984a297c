"""The global pool and log forwarding."""

from __future__ import annotations

import logging

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
