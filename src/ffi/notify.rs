//! Exports of the notifier: one pollable fd for any number of tickets in
//! line, for C event loops (epoll, poll, select) and asyncio's `add_reader`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::boundary::{arg, out, Failure};
use super::handle::borrow;
use super::handle::mmpool;
use super::status::mmpool_status;
use super::types::mmpool_ticket;
use crate::pool::{Decision, Error, Event, Notifier, Ticket};

const LIVE: u64 = 0x6d6d_6e6f_7469_6679;

/// A notifier: a queue of decided tickets and a file descriptor (an eventfd)
/// that is readable while the queue holds any. Opaque and thread-safe: every
/// function may be called on one notifier from many threads at once, and it
/// may serve tickets of many pools. Created by `mmpool_notifier_new`, freed by
/// `mmpool_notifier_free`. One notifier costs one fd however many tickets are
/// registered with it, and no thread.
pub struct mmpool_notifier {
    live: AtomicU64,
    notifier: Notifier,
}

/// A decided ticket, as `mmpool_notifier_drain` reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mmpool_event {
    /// The ticket that was decided.
    pub ticket: mmpool_ticket,
    /// The value given to `mmpool_ticket_notify`.
    pub user_data: u64,
    /// `MMPOOL_OK`: granted; collect the lease with
    /// `mmpool_ticket_wait(pool, ticket, 0, &lease)` (it does not wait; on a
    /// shared pool whose lock one holder keeps past 1 ms it answers
    /// `MMPOOL_ERR_TIMEOUT` and the grant stays: try again) or give the bytes
    /// back with `mmpool_ticket_cancel`. Otherwise the ticket left
    /// the line with nothing reserved: `MMPOOL_ERR_CLOSED` (the pool was
    /// closed), `MMPOOL_ERR_EXCEEDS_CAPACITY` (the total was lowered below it),
    /// `MMPOOL_ERR_INVALID_LEASE` (cancelled, or a
    /// `mmpool_ticket_wait_or_leave` on it ran out).
    ///
    /// An event of `mmpool_handoff_notify` carries the hand-off's token id in
    /// `ticket.id` and `MMPOOL_OK`: the hand-off finished; nothing is
    /// collected (tell the two kinds apart by `user_data`).
    pub status: mmpool_status,
}

impl From<Event> for mmpool_event {
    fn from(e: Event) -> Self {
        let status = match e.decision {
            Decision::Granted => mmpool_status::MMPOOL_OK,
            Decision::Closed => mmpool_status::MMPOOL_ERR_CLOSED,
            Decision::ExceedsCapacity { .. } => mmpool_status::MMPOOL_ERR_EXCEEDS_CAPACITY,
            Decision::Cancelled => mmpool_status::MMPOOL_ERR_INVALID_LEASE,
            Decision::HandoffFinished => mmpool_status::MMPOOL_OK,
        };
        mmpool_event { ticket: e.ticket.into(), user_data: e.user, status }
    }
}

/// The notifier behind `ptr`, refusing NULL and (best effort) freed ones.
///
/// # Safety
/// A non-NULL `ptr` comes from `mmpool_notifier_new` and is not freed
/// during the call.
pub(super) unsafe fn notifier<'a>(ptr: *const mmpool_notifier, name: &'static str) -> Result<&'a Notifier, Failure> {
    // SAFETY: forwarded contract; NULL is refused by `arg`.
    let n = unsafe { arg(ptr, name) }?;
    if n.live.load(Ordering::Acquire) != LIVE {
        return Err(Error::InvalidArgument(format!("`{name}` is not a live mmpool notifier")).into());
    }
    Ok(&n.notifier)
}

/// Creates a notifier and its eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`) and
/// stores it in `*out_notifier`; free it with `mmpool_notifier_free`.
///
/// Errors: `NULL_ARGUMENT` (`out_notifier`), `SYSTEM` (no descriptor could be made).
#[no_mangle]
pub extern "C" fn mmpool_notifier_new(out_notifier: *mut *mut mmpool_notifier) -> mmpool_status {
    boundary!("mmpool_notifier_new", {
        // SAFETY: the C contract: `out_notifier` is NULL or writable.
        let out_notifier = unsafe { out(out_notifier, "out_notifier") }?;
        let n = Box::new(mmpool_notifier { live: AtomicU64::new(LIVE), notifier: Notifier::new()? });
        *out_notifier = Box::into_raw(n);
        Ok(())
    })
}

/// Writes the notifier's fd to `*out_fd`: watch it for readability (epoll,
/// poll, select, asyncio's `add_reader`); it is readable while events are
/// queued. The notifier owns it: do not read, write or close it yourself.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a freed notifier, best effort).
#[no_mangle]
pub extern "C" fn mmpool_notifier_fd(notifier: *const mmpool_notifier, out_fd: *mut std::ffi::c_int) -> mmpool_status {
    boundary!("mmpool_notifier_fd", {
        // SAFETY: the C contract: `notifier` is a live notifier, `out_fd` writable.
        let (n, out_fd) = unsafe { (self::notifier(notifier, "notifier")?, out(out_fd, "out_fd")?) };
        *out_fd = n.fd();
        Ok(())
    })
}

/// Registers a ticket of `pool` (from `mmpool_enqueue` or
/// `mmpool_acquire_or_enqueue`) with `notifier`: when the ticket is decided
/// (granted, the pool closed, the total lowered below it, cancelled by
/// `mmpool_ticket_cancel` from any thread) one event `{ticket, user_data,
/// status}` is queued on the notifier and its fd turns readable. A ticket
/// already decided queues its event at once. The ticket keeps its place in
/// line and may still be waited on or cancelled as before; a ticket redeemed
/// by `mmpool_ticket_wait` after its event is simply done. One notifier per
/// ticket. Works for in-process and shared pools: a grant made by another
/// process reaches this one (the first registration on a shared pool starts
/// one relay thread for that pool in this process, stopped when the pool's
/// last reference goes; tickets still registered then get `CLOSED`).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (the ticket is already
/// registered, or a freed notifier), `INVALID_LEASE` (not a ticket of this
/// pool, or already redeemed or cancelled), `TIMEOUT` (a shared pool whose
/// lock one holder kept for 100 ms: nothing was registered, the ticket keeps
/// its place; try again), `SYSTEM` (the relay thread could not start).
#[no_mangle]
pub extern "C" fn mmpool_ticket_notify(
    pool: *mut mmpool,
    ticket: mmpool_ticket,
    notifier: *mut mmpool_notifier,
    user_data: u64,
) -> mmpool_status {
    boundary!("mmpool_ticket_notify", {
        // SAFETY: the C contract: `pool` is a held handle, `notifier` a live notifier.
        let (pool, n) = unsafe { (borrow(pool, "pool")?, self::notifier(notifier, "notifier")?) };
        pool.notify_ticket(Ticket { id: ticket.id }, n, user_data)?;
        Ok(())
    })
}

/// Moves up to `capacity` queued events into `events` (oldest first) and
/// writes their count to `*out_count` (0 when none are queued). The fd stops
/// being readable when the queue becomes empty, and stays readable while
/// events remain. Never blocks. Thread-safe; normally called by the loop
/// thread after the fd turned readable. An event may name a ticket that was
/// cancelled after it was decided: its `mmpool_ticket_wait` then returns
/// `INVALID_LEASE` (the bytes already went back); match events to your own
/// records by `user_data` and ignore ones you cancelled.
///
/// Errors: `NULL_ARGUMENT` (`notifier`, `events` or `out_count`),
/// `INVALID_ARGUMENT` (a freed notifier, best effort).
#[no_mangle]
pub extern "C" fn mmpool_notifier_drain(
    notifier: *mut mmpool_notifier,
    events: *mut mmpool_event,
    capacity: usize,
    out_count: *mut usize,
) -> mmpool_status {
    boundary!("mmpool_notifier_drain", {
        // SAFETY: the C contract: `notifier` is a live notifier, `out_count`
        // writable, `events` checked for NULL here.
        let (n, out_count) = unsafe { (self::notifier(notifier, "notifier")?, out(out_count, "out_count")?) };
        if events.is_null() {
            return Err(Failure::Null("events"));
        }
        let mut k = 0;
        n.drain_with(capacity, |e| {
            // SAFETY: the C contract: `events` has room for `capacity` events
            // and `drain_with` hands over at most `capacity`.
            unsafe { events.add(k).write(e.into()) };
            k += 1;
        });
        *out_count = k;
        Ok(())
    })
}

/// Frees the notifier. Tickets still registered keep their places in line;
/// their events are dropped. The fd is closed only when no grant can still
/// write to it (no write ever reaches a reused fd number), so stop watching
/// it before this call. NULL is a no-op; freeing twice is undefined.
#[no_mangle]
pub extern "C" fn mmpool_notifier_free(notifier: *mut mmpool_notifier) {
    boundary!("mmpool_notifier_free", {
        if notifier.is_null() {
            return Ok(());
        }
        // SAFETY: the C contract: a live notifier from `mmpool_notifier_new`,
        // freed once; no other call uses it from now on.
        let n = unsafe { Box::from_raw(notifier) };
        n.live.store(0, Ordering::Release);
        drop(n);
        Ok(())
    });
}
