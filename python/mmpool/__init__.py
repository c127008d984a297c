"""mmpool: a byte budget for GPU memory with first-come-first-served waiting.

Code about to allocate device memory acquires the bytes from a :class:`Pool`
first and releases them after freeing; when the budget is spent, acquirers
wait in line. The pool lives in a C library (``libmmpool.so``) that C, C++
and CUDA code in the same process share with Python::

    import mmpool

    pool = mmpool.init_global_pool(4.0)          # 4 GiB for this process
    with pool.acquire(nbytes):                   # waits in line if needed
        decode_on_gpu()

C/C++ extensions build against :func:`get_include` and link
:func:`get_library_path` (or ``find_package(mmpool)`` with
``-Dmmpool_DIR=$(python -c "import mmpool; print(mmpool.get_cmake_dir())")``)
so that they use the very library Python loaded: one copy, one global pool.
"""

from __future__ import annotations

from . import _log
from ._errors import CudaError, GlobalPoolError, InternalError, PoolClosedError
from ._global import global_pool, init_global_pool, set_global_pool
from ._lib import LIBRARY_PATH as _LIBRARY_PATH
from ._lib import lib as _c
from ._paths import cmake_dir as _cmake_dir
from ._paths import include_dir as _include_dir
from ._pool import Lease, Pool, PoolStats, SharedPool
from ._ticket import Ticket

__all__ = [
    "CudaError",
    "GlobalPoolError",
    "InternalError",
    "Lease",
    "Pool",
    "PoolClosedError",
    "PoolStats",
    "SharedPool",
    "Ticket",
    "get_cmake_dir",
    "get_include",
    "get_library_path",
    "global_pool",
    "init_global_pool",
    "set_global_pool",
]

__version__: str = _c.mmpool_version().decode()
"""The loaded library's version (the package is versioned with it)."""


def get_include() -> str:
    """The directory holding ``mmpool.h`` (and ``mmpool.hpp``) for C/C++ extensions."""
    return str(_include_dir())


def get_library_path() -> str:
    """The path of the shared library this package loaded. Link C/C++
    extensions against this file so that they share its global pool."""
    return _LIBRARY_PATH


def get_cmake_dir() -> str:
    """The directory holding ``mmpoolConfig.cmake``: pass it as ``mmpool_DIR``
    to ``find_package(mmpool)``, which defines ``mmpool::mmpool`` pointing at
    :func:`get_library_path` and :func:`get_include`."""
    return str(_cmake_dir())


_log.install()
