"""Placed pools' offsets: where a lease's range lies (``mmpool_lease_offset``)."""

from __future__ import annotations

from ctypes import POINTER, byref, c_int, c_uint64, c_void_p
from typing import TYPE_CHECKING

from ._handoff import _LeaseStruct
from ._lib import check, lib

if TYPE_CHECKING:
    from ._pool import Lease

DEFAULT_ALIGNMENT = 256
"""``MMPOOL_DEFAULT_ALIGNMENT``."""


lib.mmpool_lease_offset.restype = c_int
lib.mmpool_lease_offset.argtypes = [c_void_p, _LeaseStruct, POINTER(c_uint64)]


def lease_offset(lease: Lease) -> int:
    """``Lease.offset``: the start of the lease's range in its placed pool."""
    out = c_uint64(0)
    check(lib.mmpool_lease_offset(lease.pool.handle, _LeaseStruct(lease.id, lease.nbytes), byref(out)), "Lease.offset")
    return out.value
