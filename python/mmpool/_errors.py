"""The Python exceptions that mmpool's status codes become."""

from __future__ import annotations


class PoolClosedError(RuntimeError):
    """The pool was closed before or during the request; no new grants are made
    (releases still work). Create a new pool, or stop sending work to this one."""


class CudaError(RuntimeError):
    """The CUDA runtime is missing or one of its calls failed."""


class InternalError(RuntimeError):
    """A bug in mmpool was caught at its boundary; the pool's state is intact."""


class GlobalPoolError(RuntimeError):
    """``global_pool(required=True)`` found no global pool; the message says
    why (none installed, or the shared pool the environment names could not be
    opened) and what to change."""
