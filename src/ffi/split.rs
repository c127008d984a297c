//! Exports that split a lease in two and merge two leases into one.

use super::boundary::out;
use super::handle::{borrow, mmpool};
use super::status::mmpool_status;
use super::types::mmpool_lease;

/// Moves `nbytes` of `*lease` into a new lease, atomically: the bytes are
/// never free meanwhile, so nobody else can be granted them. `nbytes` must be
/// 1 or more and fewer than the lease holds. On `OK`, `lease->nbytes` is what
/// the lease holds now, `*out_new` is the new lease (`nbytes` bytes), which is
/// released, resized, split and merged like any other, and the pool's stats
/// count one more outstanding lease and one more grant; bytes in use do not
/// change. On failure neither is written and both leases are as before.
///
/// Threads: any thread may call it; a release of `*lease` by another thread
/// at the same time either comes first (then this fails with `INVALID_LEASE`)
/// or releases what is left after the split. A lease of a shared pool must be
/// this process's, and the new one is this process's too.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (unknown, another pool's or
/// another process's, or released lease), `INVALID_ARGUMENT` (`nbytes` 0, or
/// not fewer than the lease holds), `SYSTEM` (a shared pool has no free lease
/// record left; the lease keeps its bytes).
#[no_mangle]
pub extern "C" fn mmpool_lease_split(
    pool: *mut mmpool,
    lease: *mut mmpool_lease,
    nbytes: u64,
    out_new: *mut mmpool_lease,
) -> mmpool_status {
    boundary!("mmpool_lease_split", {
        // SAFETY: the C contract: `pool` is a held handle, `lease` read-writable,
        // `out_new` writable.
        let (pool, lease, out_new) =
            unsafe { (borrow(pool, "pool")?, out(lease, "lease")?, out(out_new, "out_new")?) };
        let (left, new) = pool.split_lease(lease.id, nbytes)?;
        *lease = left.into();
        *out_new = new.into();
        Ok(())
    })
}

/// Moves every byte of lease `from` into `*into`, atomically (the bytes are
/// never free meanwhile), and ends `from`: releasing it later is a no-op, as
/// for any released lease. On `OK`, `into->nbytes` is what it holds now and
/// the pool's stats count one outstanding lease fewer; bytes in use do not
/// change. On failure `*into` is not written and both leases are as before
/// (except when another thread released `*into` during the call: then both
/// leases' bytes went back, as if the release came after the merge, and the
/// call fails with `INVALID_LEASE`).
///
/// Threads: any thread may call it. Both leases must be of this pool (and,
/// for a shared pool, of this process).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (either lease unknown, another
/// pool's or another process's, or released), `INVALID_ARGUMENT` (the same
/// lease twice).
#[no_mangle]
pub extern "C" fn mmpool_lease_merge(pool: *mut mmpool, into: *mut mmpool_lease, from: mmpool_lease) -> mmpool_status {
    boundary!("mmpool_lease_merge", {
        // SAFETY: the C contract: `pool` is a held handle, `into` read-writable.
        let (pool, into) = unsafe { (borrow(pool, "pool")?, out(into, "into")?) };
        *into = pool.merge_leases(into.id, from.id)?.into();
        Ok(())
    })
}
