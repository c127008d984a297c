"""Hand-offs: a lease shared with N consumers, whose bytes go back to the
pool when the last of them completes its part (``mmpool_lease_share`` and
the ``mmpool_handoff_*`` calls, through ctypes: none of it is a hot path).

A token is 32 ``bytes``, the C struct ``mmpool_handoff_token`` little
endian, ``struct`` format ``"<QQIIQ"``: ``id``, ``nonce``, ``parts``,
``flags`` (bit ``TOKEN_PLACED``: ``offset`` is the lease's offset in a
placed pool) and ``offset``. Send it, or pickle it, next to whatever names
the memory; altering any field makes the pool refuse it."""

from __future__ import annotations

import struct
from ctypes import POINTER, Structure, byref, c_int, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._lib import U64_MAX, as_u64, check, lib, timeout_ns

if TYPE_CHECKING:
    from ._pool import Lease, Pool

SHARE_KEEP_LEASE = 1
TOKEN_PLACED = 1
NO_CLAIM_DEADLINE = U64_MAX
_TOKEN = struct.Struct("<QQIIQ")


class TokenStruct(Structure):
    """``mmpool_handoff_token``."""

    _fields_ = [("id", c_uint64), ("nonce", c_uint64), ("parts", c_uint32), ("flags", c_uint32), ("offset", c_uint64)]


HANDOFF_STATS_FIELDS = ("outstanding", "held_bytes", "shared", "finished", "expired_parts")


class HandoffStatsStruct(Structure):
    """``mmpool_handoff_stats``."""

    _fields_ = [(name, c_uint64) for name in HANDOFF_STATS_FIELDS]


class _LeaseStruct(Structure):
    """``mmpool_lease``."""

    _fields_ = [("id", c_uint64), ("nbytes", c_uint64)]


for _name, _restype, _argtypes in (
    ("mmpool_lease_share", c_int, [c_void_p, _LeaseStruct, c_uint32, c_uint64, c_uint32, POINTER(TokenStruct)]),
    ("mmpool_handoff_claim", c_int, [c_void_p, TokenStruct, c_uint32]),
    ("mmpool_handoff_complete", c_int, [c_void_p, TokenStruct, c_uint32]),
    ("mmpool_handoff_wait", c_int, [c_void_p, TokenStruct, c_uint64]),
    ("mmpool_get_handoff_stats", c_int, [c_void_p, POINTER(HandoffStatsStruct)]),
):
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
del _name, _restype, _argtypes, _fn


@dataclass(frozen=True)
class HandoffStats:
    """Hand-off figures of a pool (``mmpool_handoff_stats``)."""

    outstanding: int
    """Hand-offs shared and not yet finished."""
    held_bytes: int
    """Bytes they hold."""
    shared: int
    """Hand-offs made since the pool was created."""
    finished: int
    """Hand-offs finished: every part completed or expired."""
    expired_parts: int
    """Parts nobody claimed or completed by the claim deadline."""


def _token(token: bytes, where: str) -> TokenStruct:
    if not isinstance(token, (bytes, bytearray, memoryview)) or len(token) != _TOKEN.size:
        raise ValueError(f"{where}: a hand-off token is {_TOKEN.size} bytes from Lease.share, got {token!r:.60}")
    return TokenStruct(*_TOKEN.unpack(bytes(token)))


def _part(part: int, where: str) -> int:
    n = as_u64(part, "part")
    if n > 0xFFFF_FFFF:
        raise ValueError(f"{where}: part {n} is out of range")
    return n


def share(lease: Lease, parts: int, claim_deadline: float | None, keep_lease: bool) -> bytes:
    """``Lease.share``: the lease becomes a hand-off of ``parts`` parts."""
    where = f"{type(lease).__name__}.share"
    if lease.released or lease.detached:
        raise ValueError(f"{where}: the lease was {'detached' if lease.detached else 'already released'}")
    deadline = NO_CLAIM_DEADLINE if claim_deadline is None else timeout_ns(claim_deadline)
    out = TokenStruct()
    flags = SHARE_KEEP_LEASE if keep_lease else 0
    n = min(as_u64(parts, "parts"), 0xFFFF_FFFF)  # above 64 the library refuses it
    grant = _LeaseStruct(lease.id, lease.nbytes)
    check(lib.mmpool_lease_share(lease.pool.handle, grant, n, deadline, flags, byref(out)), where)
    if not keep_lease:
        lease.detach()  # the bytes are the hand-off's now
    return _TOKEN.pack(out.id, out.nonce, out.parts, out.flags, out.offset)


def complete(pool: Pool, token: bytes, part: int) -> None:
    where = f"{type(pool).__name__}.complete"
    check(lib.mmpool_handoff_complete(pool.handle, _token(token, where), _part(part, where)), where)


def wait(pool: Pool, token: bytes, timeout: float | None) -> None:
    where = f"{type(pool).__name__}.wait_handoff"
    check(lib.mmpool_handoff_wait(pool.handle, _token(token, where), timeout_ns(timeout)), where)


def stats(pool: Pool) -> HandoffStats:
    out = HandoffStatsStruct()
    check(lib.mmpool_get_handoff_stats(pool.handle, byref(out)), f"{type(pool).__name__}.handoff_stats")
    return HandoffStats(*(getattr(out, name) for name in HANDOFF_STATS_FIELDS))


class ClaimedPart:
    """Part ``part`` of a hand-off, claimed by this process: it no longer
    expires at the claim deadline. As a context manager, its exit completes
    it (also when the body raises); :meth:`complete` does so earlier, and
    completing again does nothing."""

    __slots__ = ("pool", "token", "part", "completed")

    def __init__(self, pool: Pool, token: bytes, part: int) -> None:
        where = f"{type(pool).__name__}.claim"
        check(lib.mmpool_handoff_claim(pool.handle, _token(token, where), _part(part, where)), where)
        self.pool, self.token, self.part, self.completed = pool, bytes(token), part, False

    def complete(self) -> None:
        if not self.completed:
            complete(self.pool, self.token, self.part)
            self.completed = True

    def __enter__(self) -> ClaimedPart:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.complete()

    def __repr__(self) -> str:
        return f"<ClaimedPart {self.part} {'completed' if self.completed else 'claimed'}>"
