//! Exports for callers that wait in slices of their own (a language runtime
//! that must run signal handlers between slices, an event loop): join the line
//! without counting a refusal, and end such a wait the way a one-call timed
//! acquire ends, so that the pool's counters read the same either way.

use super::boundary::out;
use super::handle::borrow;
use super::handle::mmpool;
use super::status::mmpool_status;
use super::types::{mmpool_lease, mmpool_ticket};
use crate::pool::{Admission, Ticket, Wait};

/// Acquires `nbytes` at once if that is possible without jumping the line;
/// otherwise joins the line, as `mmpool_acquire` does before it sleeps. On `OK`
/// both out-parameters are written and exactly one id is nonzero:
/// `out_lease->id` (granted; `*out_ticket` is `{0}`) or `out_ticket->id` (in
/// line; `*out_lease` is `{0, 0}`): redeem the ticket with `mmpool_ticket_wait`
/// or `mmpool_ticket_wait_or_leave`, or leave with `mmpool_ticket_cancel`.
/// Neither outcome counts as a refusal: `would_blocks` counts `mmpool_try_acquire`
/// alone. Never waits; thread-safe like every call on the pool.
///
/// Errors: `NULL_ARGUMENT`, `EXCEEDS_CAPACITY` (nbytes > total), `CLOSED`.
#[no_mangle]
pub extern "C" fn mmpool_acquire_or_enqueue(
    pool: *mut mmpool,
    nbytes: u64,
    out_lease: *mut mmpool_lease,
    out_ticket: *mut mmpool_ticket,
) -> mmpool_status {
    boundary!("mmpool_acquire_or_enqueue", {
        // SAFETY: the C contract: `pool` is a held handle, both out-parameters writable.
        let (pool, out_lease, out_ticket) =
            unsafe { (borrow(pool, "pool")?, out(out_lease, "out_lease")?, out(out_ticket, "out_ticket")?) };
        let (lease, ticket) = match pool.acquire_or_enqueue(nbytes)? {
            Admission::Granted(lease) => (lease.into(), mmpool_ticket::default()),
            Admission::Queued(ticket) => (mmpool_lease::default(), ticket.into()),
        };
        *out_lease = lease;
        *out_ticket = ticket;
        Ok(())
    })
}

/// As `mmpool_ticket_wait`, but for the last slice of a wait: if `timeout_ns`
/// runs out first, the ticket leaves the line (it cannot be waited on again)
/// and the pool counts one timeout, as `mmpool_acquire_timeout` does. On `OK`
/// the lease has the ticket's id.
///
/// Errors: `NULL_ARGUMENT`, `TIMEOUT` (nothing reserved; the ticket is gone),
/// `CLOSED`, `EXCEEDS_CAPACITY` (the total was lowered below it),
/// `INVALID_LEASE` (not this pool's ticket, or already redeemed or cancelled).
#[no_mangle]
pub extern "C" fn mmpool_ticket_wait_or_leave(
    pool: *mut mmpool,
    ticket: mmpool_ticket,
    timeout_ns: u64,
    out_lease: *mut mmpool_lease,
) -> mmpool_status {
    boundary!("mmpool_ticket_wait_or_leave", {
        // SAFETY: the C contract: `pool` is a held handle, `out_lease` writable.
        let (pool, out_lease) = unsafe { (borrow(pool, "pool")?, out(out_lease, "out_lease")?) };
        let lease = pool.wait_ticket_or_leave(Ticket { id: ticket.id }, Wait::timeout_ns(timeout_ns))?;
        *out_lease = lease.into();
        Ok(())
    })
}
