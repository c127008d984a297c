"""Forwards the library's log lines to Python's ``logging`` (logger ``mmpool``)."""

from __future__ import annotations

import atexit
import logging

from ._lib import LOG_FN, check, lib

logger = logging.getLogger("mmpool")

_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}

GLOBAL_DISABLED = "global pool disabled: "
global_failure: str | None = None
"""The library's reason, when the shared pool that ``MMPOOL_SHARED_NAME``
names could not be opened as the global pool (it logs it once)."""


def _forward(level: int, message: bytes | None, _user_data: object) -> None:
    # Called from any thread, possibly while the library holds a lock: it
    # only logs, never calls back into mmpool, and never raises into C.
    global global_failure
    try:
        text = (message or b"").decode("utf-8", "replace")
        if level == 1 and text.startswith(GLOBAL_DISABLED):
            global_failure = text[len(GLOBAL_DISABLED) :]
        logger.log(_LEVELS.get(level, logging.WARNING), "%s", text)
    except Exception:  # noqa: BLE001 - a broken handler must not break the pool
        pass


# Kept alive for as long as the library may call it.
_callback = LOG_FN(_forward)


def install() -> None:
    check(lib.mmpool_set_log_callback(_callback, None))
    atexit.register(uninstall)


def uninstall() -> None:
    """Sends log lines back to stderr (done at interpreter exit, before the
    callback's Python objects go away)."""
    lib.mmpool_set_log_callback(LOG_FN(), None)
