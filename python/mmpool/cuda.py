"""Arenas: one CUDA allocation of a placed pool's total, in which every
lease of the pool lies at its offset (``mmpool_cuda_arena_*``, through
ctypes; no call here is a hot path).

A device arena is allocated once (``cudaMalloc``) and attached to its pool
in this process: the pool's gated allocations (``mmpool_cuda_malloc``, the
nvJPEG / nvImageCodec / PyTorch callbacks) then draw placed leases from it
instead of calling ``cudaMalloc``. A lease becomes a device pointer (an
``int`` for ``torch.cuda`` / ``cupy`` pointer APIs) with no CUDA call::

    pool = mmpool.Pool(1 << 30, placed=True)
    arena = pool.cuda_arena("device", device=0)
    with pool.acquire(nbytes) as lease:
        ptr = arena.pointer(lease)

Another process opens it once from :meth:`CudaArena.export`'s bytes
(``cudaIpcOpenMemHandle``) with :func:`open_arena`, on a placed pool there;
addresses then come with no CUDA call: ``arena.base + offset``, or from a
hand-off token of that pool (:meth:`CudaArena.token_pointer`). A pinned host arena (``"pinned"``,
``cudaHostAlloc``) serves staging copies in this process only.

The CUDA runtime is loaded on first use (``MMPOOL_CUDART`` names one
explicitly); without it, or without a driver, creating an arena raises
:class:`mmpool.CudaError` naming the CUDA error, and the pool is untouched.
"""

from __future__ import annotations

import threading
from ctypes import POINTER, Structure, byref, c_int, c_int32, c_uint8, c_uint32, c_uint64, c_void_p, sizeof
from typing import TYPE_CHECKING, Optional

from ._handoff import TokenStruct, _LeaseStruct, _token
from ._lib import check, lib

if TYPE_CHECKING:
    from ._pool import Lease, Pool

__all__ = ["CudaArena", "open_arena"]

KINDS = {"device": 0, "pinned": 1}  # MMPOOL_CUDA_ARENA_DEVICE, MMPOOL_CUDA_ARENA_PINNED_HOST
EXPORT_MAGIC = 0x5241_6D6D  # MMPOOL_CUDA_ARENA_MAGIC


class ExportedArenaStruct(Structure):
    """``mmpool_cuda_exported_arena``: 80 bytes."""

    _fields_ = [("magic", c_uint32), ("device", c_int32), ("nbytes", c_uint64), ("ipc_handle", c_uint8 * 64)]


EXPORT_SIZE = sizeof(ExportedArenaStruct)

for _name, _restype, _argtypes in (
    ("mmpool_cuda_arena_new", c_int, [c_void_p, c_uint32, c_int32, POINTER(c_void_p)]),
    ("mmpool_cuda_arena_export", c_int, [c_void_p, POINTER(ExportedArenaStruct)]),
    ("mmpool_cuda_arena_open", c_int, [c_void_p, POINTER(ExportedArenaStruct), POINTER(c_void_p)]),
    ("mmpool_cuda_arena_pointer", c_int, [c_void_p, _LeaseStruct, POINTER(c_void_p)]),
    ("mmpool_cuda_arena_token_pointer", c_int, [c_void_p, TokenStruct, POINTER(c_void_p)]),
    ("mmpool_cuda_arena_range", c_int, [c_void_p, POINTER(c_void_p), POINTER(c_uint64)]),
    ("mmpool_cuda_arena_free", c_int, [c_void_p]),
):
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
del _name, _restype, _argtypes, _fn


class CudaArena:
    """One device or pinned host allocation of a placed pool's total.
    ``pool.cuda_arena(kind, device)`` makes one; :func:`open_arena` opens
    another process's. :meth:`free` (or leaving the ``with`` block, or
    garbage collection) gives it back; pointers from it must not be used
    after. Safe to use from several threads.

    ``pool``, ``kind`` (``"device"``, ``"pinned"``), ``device`` (-1 for
    pinned), ``base`` and ``nbytes`` (its address range), ``opened``
    (another process's arena).
    """

    __slots__ = ("pool", "kind", "device", "opened", "base", "nbytes", "_handle", "_lock", "__weakref__")

    def __init__(self, pool: Pool, kind: str = "device", device: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"CudaArena: kind must be 'device' or 'pinned', got {kind!r}")
        handle = c_void_p()
        check(lib.mmpool_cuda_arena_new(pool.handle, KINDS[kind], int(device), byref(handle)), "Pool.cuda_arena")
        self._adopt(pool, handle.value, kind, int(device) if kind == "device" else -1, False)

    def _adopt(self, pool: Pool, handle: Optional[int], kind: str, device: int, opened: bool) -> None:
        self.pool, self.kind, self.device, self.opened = pool, kind, device, opened
        self._handle, self._lock = handle, threading.Lock()
        base, nbytes = c_void_p(), c_uint64()
        check(lib.mmpool_cuda_arena_range(handle, byref(base), byref(nbytes)), "CudaArena")
        self.base, self.nbytes = base.value or 0, nbytes.value

    def _live(self, where: str) -> int:
        handle = self._handle
        if handle is None:
            raise ValueError(f"CudaArena.{where}: the arena was freed")
        return handle

    def pointer(self, lease: Lease) -> int:
        """The address of ``lease`` (a lease of this arena's pool): the
        arena's base plus the lease's offset."""
        out = c_void_p()
        grant = _LeaseStruct(lease.id, lease.nbytes)
        check(lib.mmpool_cuda_arena_pointer(self._live("pointer"), grant, byref(out)), "CudaArena.pointer")
        return out.value or 0

    def token_pointer(self, token: bytes) -> int:
        """The address of a hand-off's bytes from its token (``Lease.share``
        of a placed lease): the arena's base plus the offset it carries. Call
        it before completing the part: a finished hand-off's bytes may be
        granted again."""
        out = c_void_p()
        t = _token(token, "CudaArena.token_pointer")
        check(lib.mmpool_cuda_arena_token_pointer(self._live("token_pointer"), t, byref(out)), "CudaArena.token_pointer")
        return out.value or 0

    def export(self) -> bytes:
        """What another process needs to open this device arena
        (:func:`open_arena`): 80 bytes, picklable. Keep the arena while
        consumers use it."""
        out = ExportedArenaStruct()
        check(lib.mmpool_cuda_arena_export(self._live("export"), byref(out)), "CudaArena.export")
        return bytes(out)

    def free(self) -> None:
        """Detaches the arena from its pool and gives its memory back once the
        allocations drawn from it are freed. Again: a no-op."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            check(lib.mmpool_cuda_arena_free(handle), "CudaArena.free")

    @property
    def freed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> CudaArena:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.free()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            lib.mmpool_cuda_arena_free(handle)

    def __repr__(self) -> str:
        state = "freed" if self.freed else "opened" if self.opened else "allocated"
        return f"<CudaArena {self.kind} device={self.device} base={self.base:#x} nbytes={self.nbytes} {state}>"


def open_arena(pool: Pool, exported: bytes) -> CudaArena:
    """Opens another process's device arena from its :meth:`CudaArena.export`
    bytes, for ``pool``, a placed pool of this process (hand-off tokens
    resolve only on the pool that issued them). Once per process; CUDA cannot
    open it in the process that made it."""
    if not isinstance(exported, (bytes, bytearray, memoryview)) or len(exported) != EXPORT_SIZE:
        raise ValueError(f"open_arena: an exported arena is {EXPORT_SIZE} bytes from CudaArena.export, got {exported!r:.60}")
    e = ExportedArenaStruct.from_buffer_copy(bytes(exported))
    handle = c_void_p()
    check(lib.mmpool_cuda_arena_open(pool.handle, byref(e), byref(handle)), "open_arena")
    arena = CudaArena.__new__(CudaArena)
    arena._adopt(pool, handle.value, "device", e.device, True)
    return arena
