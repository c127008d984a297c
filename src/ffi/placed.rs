//! Exports of placed pools: pools whose leases each hold a range of
//! `[0, total)` at an aligned offset (for one preallocated buffer).

use super::boundary::out;
use super::handle::{self, borrow, mmpool};
use super::status::mmpool_status;
use super::types::mmpool_lease;
use crate::pool::Pool;

/// The alignment of a placed pool's offsets when a caller has no reason
/// to pick another: 256 bytes.
pub const MMPOOL_DEFAULT_ALIGNMENT: u64 = 256;
const _: () = assert!(MMPOOL_DEFAULT_ALIGNMENT == crate::pool::DEFAULT_ALIGNMENT);

/// Creates a placed pool of `total_bytes` (1 to 2^60) and stores it, with
/// one reference, in `*out_pool`. Every lease of 1 byte or more also holds
/// the range `[offset, offset + nbytes)` of `[0, total_bytes)`, at an offset
/// that is a multiple of `alignment` (a power of two; `MMPOOL_DEFAULT_ALIGNMENT`
/// is 256); live ranges never overlap (`mmpool_lease_offset` reads it).
///
/// Rules: a request waits in line, first come first served, until a free
/// range of its size exists (a request at the head is never passed by a
/// smaller one that would fit elsewhere); `mmpool_try_acquire` fails with
/// `WOULD_BLOCK` while none does. A lease is charged its own size (not
/// rounded up): the bytes up to the next aligned offset stay free, so
/// `available_bytes` is the free bytes and `largest_free_range` the largest
/// request placeable now. `mmpool_lease_resize` shrinks at once (the tail is
/// free) and grows in place only, from the free range right after the
/// lease while nobody waits; otherwise it fails at once with `WOULD_BLOCK`
/// (the lease keeps its range). `mmpool_lease_split` gives the new lease the
/// tail of the range; `mmpool_lease_merge` joins only a lease whose range
/// directly follows `into`'s (else `INVALID_ARGUMENT`). A hand-off token
/// carries the offset (`MMPOOL_TOKEN_PLACED`), and the hand-off holds the
/// range until its last part. `mmpool_set_total` on a placed pool is
/// `INVALID_ARGUMENT`: its ranges index one buffer. A 0-byte lease has no
/// range (its offset reads 0).
///
/// Errors: `NULL_ARGUMENT` (`out_pool`), `INVALID_ARGUMENT` (total 0 or
/// above 2^60, alignment 0 or not a power of two).
#[no_mangle]
pub extern "C" fn mmpool_init_placed(
    total_bytes: u64,
    alignment: u64,
    out_pool: *mut *mut mmpool,
) -> mmpool_status {
    boundary!("mmpool_init_placed", {
        // SAFETY: the C contract: `out_pool` is NULL or writable.
        let out_pool = unsafe { out(out_pool, "out_pool") }?;
        *out_pool = handle::into_raw(Pool::new_placed(total_bytes, alignment)?);
        Ok(())
    })
}

/// Writes where `lease`'s range starts in placed `pool` to `*out_offset`
/// (0 for a 0-byte lease, which has none).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (the pool is not placed),
/// `INVALID_LEASE` (not an outstanding lease of this pool).
#[no_mangle]
pub extern "C" fn mmpool_lease_offset(
    pool: *const mmpool,
    lease: mmpool_lease,
    out_offset: *mut u64,
) -> mmpool_status {
    boundary!("mmpool_lease_offset", {
        // SAFETY: the C contract: `pool` is a held handle, `out_offset` NULL or writable.
        let (pool, out_offset) = unsafe { (borrow(pool, "pool")?, out(out_offset, "out_offset")?) };
        *out_offset = pool.lease_offset(lease.id)?;
        Ok(())
    })
}

/// The alignment of placed `pool`'s offsets; 0 when the pool is not placed
/// (or `pool` is NULL).
#[no_mangle]
pub extern "C" fn mmpool_alignment(pool: *const mmpool) -> u64 {
    boundary!("mmpool_alignment", 0 => {
        // SAFETY: the C contract: `pool` is a held handle.
        Ok(unsafe { borrow(pool, "pool") }?.alignment())
    })
}
