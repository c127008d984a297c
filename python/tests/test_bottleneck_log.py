"""The warning that the budget is the bottleneck reaches Python's logging
(logger ``mmpool``) when a request times out in line."""

from __future__ import annotations

import logging

import pytest

import mmpool


def test_a_timeout_in_line_is_a_warning_naming_the_request_and_the_bytes_held(caplog):
    pool = mmpool.Pool(1000)
    held = pool.acquire(900)
    with caplog.at_level(logging.INFO, logger="mmpool"):
        pool.try_acquire(500)  # canary: a refusal without a wait says nothing
        assert [r for r in caplog.records if "bottleneck" in r.getMessage()] == []
        with pytest.raises(TimeoutError):
            pool.acquire(200, timeout=0.02)
    lines = [r for r in caplog.records if r.name == "mmpool" and "bottleneck" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert lines[0].levelno == logging.WARNING
    message = lines[0].getMessage()
    assert message.startswith("in-process pool 0x") and "a request for 200 bytes timed out after" in message
    assert "900 of 1000 bytes held, 0 requests waiting" in message
    held.release()
