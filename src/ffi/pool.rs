//! Exports that act on one pool.

use super::boundary::out;
use super::sized::write_sized;
use super::handle::{self, borrow, mmpool};
use super::status::mmpool_status;
use super::types::{mmpool_lease, mmpool_stats, mmpool_ticket};
use crate::pool::{Lease, Pool, PoolCore, Ticket, Wait};

/// Creates a pool of `total_bytes` (1 to 2^60) and stores it, with one
/// reference, in `*out_pool`.
///
/// Errors: `NULL_ARGUMENT` (`out_pool`), `INVALID_ARGUMENT` (total 0 or above 2^60).
#[no_mangle]
pub extern "C" fn mmpool_init(total_bytes: u64, out_pool: *mut *mut mmpool) -> mmpool_status {
    boundary!("mmpool_init", {
        // SAFETY: the C contract: `out_pool` is NULL or writable.
        let out_pool = unsafe { out(out_pool, "out_pool") }?;
        *out_pool = handle::into_raw(Pool::new(total_bytes)?);
        Ok(())
    })
}

/// Adds a reference to `pool`. NULL is ignored.
#[no_mangle]
pub extern "C" fn mmpool_ref(pool: *mut mmpool) {
    boundary!("mmpool_ref", {
        if pool.is_null() {
            return Ok(());
        }
        // SAFETY: the C contract: a non-NULL `pool` is a handle the caller holds.
        unsafe { handle::add_ref(pool) }
    });
}

/// Drops a reference to `pool`. With the last one (no handle, waiting thread
/// or global slot left) the pool is closed, and freed at once if no lease is
/// outstanding, else by the release of its last lease. NULL is ignored.
#[no_mangle]
pub extern "C" fn mmpool_unref(pool: *mut mmpool) {
    boundary!("mmpool_unref", {
        // SAFETY: the C contract: a non-NULL `pool` is a reference the caller holds.
        unsafe { handle::drop_ref(pool) }
    });
}

/// Acquires `nbytes`, waiting in line (first come, first served) as long as it
/// takes. A 0-byte request is granted at once.
///
/// Errors: `NULL_ARGUMENT`, `EXCEEDS_CAPACITY` (nbytes > total), `CLOSED`.
#[no_mangle]
pub extern "C" fn mmpool_acquire(pool: *mut mmpool, nbytes: u64, out_lease: *mut mmpool_lease) -> mmpool_status {
    // SAFETY: the C contract: `pool` is NULL or a held handle, `out_lease` NULL or writable.
    if unsafe { grant_fast(pool, out_lease, |p| p.acquire_fast(nbytes)) } {
        return mmpool_status::MMPOOL_OK;
    }
    acquire_full(pool, nbytes, out_lease)
}

/// Out of line and `extern "C"` (it cannot unwind: the boundary catches
/// panics), so that the export reaches it with a plain jump.
#[cold]
#[inline(never)]
extern "C" fn acquire_full(pool: *mut mmpool, nbytes: u64, out_lease: *mut mmpool_lease) -> mmpool_status {
    acquire("mmpool_acquire", pool, nbytes, Some(Wait::Forever), out_lease)
}

/// Acquires `nbytes`, waiting in line at most `timeout_ns` nanoseconds
/// (`MMPOOL_WAIT_FOREVER`: no limit; 0: no wait at all).
///
/// Errors: as `mmpool_acquire`, plus `TIMEOUT` (nothing was reserved).
#[no_mangle]
pub extern "C" fn mmpool_acquire_timeout(
    pool: *mut mmpool,
    nbytes: u64,
    timeout_ns: u64,
    out_lease: *mut mmpool_lease,
) -> mmpool_status {
    // SAFETY: as in `mmpool_acquire`.
    if unsafe { grant_fast(pool, out_lease, |p| p.acquire_fast(nbytes)) } {
        return mmpool_status::MMPOOL_OK;
    }
    acquire_timeout_full(pool, nbytes, timeout_ns, out_lease)
}

/// Out of line and `extern "C"` (it cannot unwind: the boundary catches
/// panics), so that the export reaches it with a plain jump.
#[cold]
#[inline(never)]
extern "C" fn acquire_timeout_full(pool: *mut mmpool, nbytes: u64, timeout_ns: u64, out_lease: *mut mmpool_lease) -> mmpool_status {
    acquire("mmpool_acquire_timeout", pool, nbytes, Some(Wait::timeout_ns(timeout_ns)), out_lease)
}

/// Acquires `nbytes` only if possible at once without jumping the line.
///
/// Errors: as `mmpool_acquire`, plus `WOULD_BLOCK` (too few bytes free, or
/// others are waiting; nothing was reserved).
#[no_mangle]
pub extern "C" fn mmpool_try_acquire(pool: *mut mmpool, nbytes: u64, out_lease: *mut mmpool_lease) -> mmpool_status {
    // SAFETY: as in `mmpool_acquire`.
    if unsafe { grant_fast(pool, out_lease, |p| p.acquire_fast(nbytes)) } {
        return mmpool_status::MMPOOL_OK;
    }
    try_acquire_full(pool, nbytes, out_lease)
}

/// Out of line and `extern "C"` (it cannot unwind: the boundary catches
/// panics), so that the export reaches it with a plain jump.
#[cold]
#[inline(never)]
extern "C" fn try_acquire_full(pool: *mut mmpool, nbytes: u64, out_lease: *mut mmpool_lease) -> mmpool_status {
    acquire("mmpool_try_acquire", pool, nbytes, None, out_lease)
}

/// One of the engine's uncontended acquires (`fast`), outside the boundary (it
/// cannot panic): `true` when it granted and wrote `*out_lease`; `false`
/// leaves everything to the next path.
///
/// # Safety
/// `pool` is NULL or a held handle; `out_lease` is NULL or writable.
#[inline(always)]
unsafe fn grant_fast(pool: *mut mmpool, out_lease: *mut mmpool_lease, fast: impl FnOnce(&PoolCore) -> Option<Lease>) -> bool {
    // SAFETY: the contract above.
    let Some(p) = (unsafe { handle::peek(pool) }) else { return false };
    if out_lease.is_null() {
        return false;
    }
    let Some(lease) = fast(p) else { return false };
    // SAFETY: `out_lease` is non-NULL and writable per the contract.
    unsafe { out_lease.write(lease.into()) };
    true
}

/// The full path of the acquire exports: the boundary, every check, waiting.
#[inline]
fn acquire(
    name: &'static str,
    pool: *mut mmpool,
    nbytes: u64,
    wait: Option<Wait>,
    out_lease: *mut mmpool_lease,
) -> mmpool_status {
    // A shared pool's uncontended acquire, before the boundary's checks.
    // SAFETY: as in `mmpool_acquire`.
    if unsafe { grant_fast(pool, out_lease, |p| p.acquire_fast_shared(nbytes)) } {
        return mmpool_status::MMPOOL_OK;
    }
    boundary!(name, {
        // SAFETY: the C contract: `pool` is a held handle, `out_lease` writable.
        let (pool, out_lease) = unsafe { (borrow(pool, "pool")?, out(out_lease, "out_lease")?) };
        let lease = match wait {
            Some(wait) => pool.acquire(nbytes, wait),
            None => pool.try_acquire(nbytes),
        }?;
        *out_lease = lease.into();
        Ok(())
    })
}

/// Returns a lease's bytes to the pool. The pool's own record decides how many,
/// not `lease.nbytes`. Releasing a lease already released is a no-op (`OK`).
/// Allowed after the pool's last reference was dropped, for its outstanding
/// leases; the last such release frees the pool.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (an id this pool never issued,
/// including another pool's leases and id 0).
#[no_mangle]
pub extern "C" fn mmpool_release(pool: *mut mmpool, lease: mmpool_lease) -> mmpool_status {
    // SAFETY: the C contract: `pool` is NULL or a handle the caller holds, or
    // the pool of an outstanding lease.
    if let Some(p) = unsafe { handle::peek(pool) } {
        if p.release_fast(lease.id) {
            return mmpool_status::MMPOOL_OK;
        }
    }
    release(pool, lease)
}

/// Out of line and `extern "C"`, as `acquire_full`.
#[cold]
#[inline(never)]
extern "C" fn release(pool: *mut mmpool, lease: mmpool_lease) -> mmpool_status {
    // A shared pool's uncontended release, before the boundary's checks.
    // SAFETY: as in `mmpool_release`.
    if let Some(p) = unsafe { handle::peek(pool) } {
        // SAFETY: as above.
        if unsafe { PoolCore::release_fast_shared(p, lease.id) } {
            return mmpool_status::MMPOOL_OK;
        }
    }
    boundary!("mmpool_release", {
        // SAFETY: the C contract: `pool` is a held handle, or the pool of an
        // outstanding lease.
        let pool = unsafe { borrow(pool, "pool") }?;
        // SAFETY: as above; `pool` is not used after (this may free it).
        unsafe { PoolCore::release_raw(pool, lease.id) }?;
        Ok(())
    })
}

/// Joins the line for `nbytes` and returns at once with a ticket; redeem it
/// with `mmpool_ticket_wait` (as often as needed: a timeout keeps the place)
/// or leave with `mmpool_ticket_cancel`. A ticket that can be granted at once
/// is granted immediately and its wait returns at once.
///
/// Errors: `NULL_ARGUMENT`, `EXCEEDS_CAPACITY`, `CLOSED`.
#[no_mangle]
pub extern "C" fn mmpool_enqueue(pool: *mut mmpool, nbytes: u64, out_ticket: *mut mmpool_ticket) -> mmpool_status {
    boundary!("mmpool_enqueue", {
        // SAFETY: the C contract: `pool` is a held handle, `out_ticket` writable.
        let (pool, out_ticket) = unsafe { (borrow(pool, "pool")?, out(out_ticket, "out_ticket")?) };
        *out_ticket = pool.enqueue(nbytes)?.into();
        Ok(())
    })
}

/// Waits up to `timeout_ns` for a ticket's grant (`MMPOOL_WAIT_FOREVER`: no
/// limit; 0: just look). On `OK` the lease has the ticket's id. On `TIMEOUT`
/// the ticket keeps its place in line.
///
/// Errors: `NULL_ARGUMENT`, `TIMEOUT`, `CLOSED` (the ticket left the line),
/// `EXCEEDS_CAPACITY` (the total was lowered below it; it left the line),
/// `INVALID_LEASE` (not this pool's ticket, or already redeemed or cancelled).
#[no_mangle]
pub extern "C" fn mmpool_ticket_wait(
    pool: *mut mmpool,
    ticket: mmpool_ticket,
    timeout_ns: u64,
    out_lease: *mut mmpool_lease,
) -> mmpool_status {
    boundary!("mmpool_ticket_wait", {
        // SAFETY: the C contract: `pool` is a held handle, `out_lease` writable.
        let (pool, out_lease) = unsafe { (borrow(pool, "pool")?, out(out_lease, "out_lease")?) };
        let lease = pool.wait_ticket(Ticket { id: ticket.id }, Wait::timeout_ns(timeout_ns))?;
        *out_lease = lease.into();
        Ok(())
    })
}

/// Leaves the line. If the ticket was already granted but not yet redeemed,
/// its bytes go back to the pool. Cancelling a finished ticket is a no-op.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (not a ticket of this pool).
#[no_mangle]
pub extern "C" fn mmpool_ticket_cancel(pool: *mut mmpool, ticket: mmpool_ticket) -> mmpool_status {
    boundary!("mmpool_ticket_cancel", {
        // SAFETY: the C contract: `pool` is a held handle.
        let pool = unsafe { borrow(pool, "pool") }?;
        pool.cancel_ticket(Ticket { id: ticket.id })?;
        Ok(())
    })
}

/// Changes what `*lease` holds to `new_nbytes`. Shrinking returns the
/// difference at once; growing waits in line for it, like an acquire, up to
/// `timeout_ns`. On `OK`, `lease->nbytes` is updated.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (unknown or released lease),
/// `EXCEEDS_CAPACITY`, `TIMEOUT` (the lease keeps its old size), `CLOSED`.
#[no_mangle]
pub extern "C" fn mmpool_lease_resize(
    pool: *mut mmpool,
    lease: *mut mmpool_lease,
    new_nbytes: u64,
    timeout_ns: u64,
) -> mmpool_status {
    boundary!("mmpool_lease_resize", {
        // SAFETY: the C contract: `pool` is a held handle, `lease` read-writable.
        let (pool, lease) = unsafe { (borrow(pool, "pool")?, out(lease, "lease")?) };
        let resized = pool.resize_lease(lease.id, new_nbytes, Wait::timeout_ns(timeout_ns))?;
        *lease = resized.into();
        Ok(())
    })
}

/// Changes the pool's total to `new_total` (1 to 2^60). Growing grants waiters
/// at once; shrinking below what is in use revokes nothing: new grants wait
/// until enough has come back, and waiters larger than the new total fail with
/// `EXCEEDS_CAPACITY`.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn mmpool_set_total(pool: *mut mmpool, new_total: u64) -> mmpool_status {
    boundary!("mmpool_set_total", {
        // SAFETY: the C contract: `pool` is a held handle.
        let pool = unsafe { borrow(pool, "pool") }?;
        pool.set_total(new_total)?;
        Ok(())
    })
}

/// Closes the pool: every waiter wakes with `CLOSED`, later acquires fail with
/// it, releases still return bytes. Closing twice is a no-op.
#[no_mangle]
pub extern "C" fn mmpool_close(pool: *mut mmpool) -> mmpool_status {
    boundary!("mmpool_close", {
        // SAFETY: the C contract: `pool` is a held handle.
        let pool = unsafe { borrow(pool, "pool") }?;
        pool.close();
        Ok(())
    })
}

/// The pool's total in bytes; 0 (with `mmpool_last_error` set) for NULL.
#[no_mangle]
pub extern "C" fn mmpool_total_bytes(pool: *const mmpool) -> u64 {
    boundary!("mmpool_total_bytes", 0 => {
        // SAFETY: the C contract: `pool` is a held handle.
        Ok(unsafe { borrow(pool, "pool") }?.total_bytes())
    })
}

/// Bytes grantable now; 0 (with `mmpool_last_error` set) for NULL.
#[no_mangle]
pub extern "C" fn mmpool_available_bytes(pool: *const mmpool) -> u64 {
    boundary!("mmpool_available_bytes", 0 => {
        // SAFETY: the C contract: `pool` is a held handle.
        Ok(unsafe { borrow(pool, "pool") }?.available_bytes())
    })
}

/// Fills `*out_stats` with the pool's figures. Set `out_stats->size = sizeof(mmpool_stats)`
/// first (any multiple of 8 from 8 up is accepted: the fields that fit are
/// written and `out_stats->size` becomes the bytes written).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (size not a multiple of 8, or 0),
/// `SYSTEM` (a shared pool whose file was truncated under this process).
#[no_mangle]
pub extern "C" fn mmpool_get_stats(pool: *const mmpool, out_stats: *mut mmpool_stats) -> mmpool_status {
    boundary!("mmpool_get_stats", {
        // SAFETY: the C contract: `pool` is a held handle; `out_stats` is NULL
        // or points to at least `out_stats->size` writable bytes.
        let pool = unsafe { borrow(pool, "pool") }?;
        let stats = mmpool_stats::from(pool.checked_stats()?);
        // SAFETY: as above; `mmpool_stats` is `repr(C)`, all `u64`, size first.
        unsafe { write_sized(out_stats, &stats, "out_stats", "mmpool_stats") }?;
        Ok(())
    })
}
