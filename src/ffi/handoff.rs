//! Exports for hand-offs: a lease shared with N consumers, whose bytes go
//! back when the last of them completes its part.

use super::boundary::out;
use super::handle::{borrow, mmpool};
use super::notify::{mmpool_notifier, notifier};
use super::status::mmpool_status;
use super::types::{mmpool_handoff_stats, mmpool_handoff_token, mmpool_lease};
use crate::pool::{Error, Token, Wait};

/// `mmpool_lease_share` flag: the lease stays the producer's. Completions
/// only count; the producer waits for them (`mmpool_handoff_wait`), frees
/// its memory, then releases the lease itself.
pub const MMPOOL_SHARE_KEEP_LEASE: u32 = 1;

/// `claim_deadline_ns` value for parts that never expire.
pub const MMPOOL_NO_CLAIM_DEADLINE: u64 = u64::MAX;

/// `mmpool_handoff_token.flags` bit: `offset` is the lease's offset in a
/// placed pool.
pub const MMPOOL_TOKEN_PLACED: u32 = 1;
const _: () = assert!(MMPOOL_TOKEN_PLACED == crate::pool::TOKEN_PLACED);

fn token(t: &mmpool_handoff_token) -> Token {
    Token { id: t.id, nonce: t.nonce, parts: t.parts, flags: t.flags, offset: t.offset }
}

/// Turns `lease` into a hand-off of `parts` parts (1 to 64) and writes its
/// token to `*out_token`. The token is a plain value: send it by any means to
/// the consumers, each of which completes one part (`mmpool_handoff_complete`)
/// on this pool. Without `MMPOOL_SHARE_KEEP_LEASE` the lease ends now (a
/// later release of it is a no-op) and its bytes stay taken, held by the
/// hand-off, until the last part completes; with it the lease stays the
/// producer's. Parts nobody has claimed (`mmpool_handoff_claim`) or completed
/// `claim_deadline_ns` from now expire: they count as completed, are counted
/// in `mmpool_handoff_stats.expired_parts` and logged once per hand-off.
/// `MMPOOL_NO_CLAIM_DEADLINE` means never (a shared pool's deadline is on
/// the host's CLOCK_MONOTONIC). Expired parts are collected at
/// the deadline by requests waiting in line and by a producer waiting in
/// `mmpool_handoff_wait`, else by the pool's next hand-off call or hand-off
/// stats read.
///
/// On a shared pool a consumer in any attached process claims and
/// completes parts; a part claimed by a process that then dies or detaches
/// completes by itself (within the reclaim bound of leases), and the
/// producer's death returns nothing the hand-off holds. At most
/// `mmpool_shared_options.max_handoffs` hand-offs are outstanding at once
/// (beyond: `SYSTEM`).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (unknown, another pool's, or
/// released lease, a shared pool's lease of another process),
/// `INVALID_ARGUMENT` (`parts` 0 or above 64, unknown `flags`), `SYSTEM` (a
/// shared pool's `max_handoffs` hand-offs are outstanding).
#[no_mangle]
pub extern "C" fn mmpool_lease_share(
    pool: *mut mmpool,
    lease: mmpool_lease,
    parts: u32,
    claim_deadline_ns: u64,
    flags: u32,
    out_token: *mut mmpool_handoff_token,
) -> mmpool_status {
    boundary!("mmpool_lease_share", {
        // SAFETY: the C contract: `pool` is a held handle, `out_token` writable.
        let (pool, out_token) = unsafe { (borrow(pool, "pool")?, out(out_token, "out_token")?) };
        if flags & !MMPOOL_SHARE_KEEP_LEASE != 0 {
            return Err(Error::InvalidArgument(format!("unknown flags {flags:#x}")).into());
        }
        let deadline =
            (claim_deadline_ns != MMPOOL_NO_CLAIM_DEADLINE).then(|| std::time::Duration::from_nanos(claim_deadline_ns));
        let t = pool.share_lease(lease.id, parts, deadline, flags & MMPOOL_SHARE_KEEP_LEASE != 0)?;
        *out_token = t.into();
        Ok(())
    })
}

/// Claims part `part` of a hand-off: says a consumer took it up, so that it
/// does not expire at the claim deadline. Claiming it again is a no-op. On a
/// shared pool the claim binds the part to the calling process: if that
/// process dies or detaches before completing it, it completes by itself
/// (the latest claimant holds it).
///
/// Threads: any thread, at any time.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (a token this pool never issued
/// or one altered, `part` out of range, a part already completed or expired,
/// a finished hand-off).
#[no_mangle]
pub extern "C" fn mmpool_handoff_claim(pool: *mut mmpool, token: mmpool_handoff_token, part: u32) -> mmpool_status {
    boundary!("mmpool_handoff_claim", {
        // SAFETY: the C contract: `pool` is a held handle.
        let pool = unsafe { borrow(pool, "pool") }?;
        pool.claim_part(&self::token(&token), part)?;
        Ok(())
    })
}

/// Completes part `part` of a hand-off, claimed or not. Completing a part
/// again, or any part of a finished hand-off, is a no-op returning `OK`. The
/// completion that leaves no part open returns the hand-off's bytes to the
/// pool and wakes a producer in `mmpool_handoff_wait`.
///
/// Threads: any thread, at any time; completions of the same hand-off may
/// race (on a shared pool, from any attached process: the segment's lock
/// serializes them).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (a token this pool never issued
/// or one altered, `part` out of range).
#[no_mangle]
pub extern "C" fn mmpool_handoff_complete(pool: *mut mmpool, token: mmpool_handoff_token, part: u32) -> mmpool_status {
    boundary!("mmpool_handoff_complete", {
        // SAFETY: the C contract: `pool` is a held handle.
        let pool = unsafe { borrow(pool, "pool") }?;
        pool.complete_part(&self::token(&token), part)?;
        Ok(())
    })
}

/// Waits up to `timeout_ns` (`MMPOOL_WAIT_FOREVER`: without limit; 0: not at
/// all) until the hand-off is finished: every part completed or expired.
/// `OK` at once for a finished one. On a shared pool the producer waits in
/// any attached process, on the hand-off's futex word in the segment, and
/// meanwhile reclaims dead processes (whose claimed parts complete).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (a token this pool never issued
/// or one altered), `TIMEOUT` (parts are still open).
#[no_mangle]
pub extern "C" fn mmpool_handoff_wait(
    pool: *mut mmpool,
    token: mmpool_handoff_token,
    timeout_ns: u64,
) -> mmpool_status {
    boundary!("mmpool_handoff_wait", {
        // SAFETY: the C contract: `pool` is a held handle.
        let pool = unsafe { borrow(pool, "pool") }?;
        pool.wait_handoff(&self::token(&token), Wait::timeout_ns(timeout_ns))?;
        Ok(())
    })
}

/// Registers `notifier` for the hand-off: when it finishes (every part
/// completed or expired, its bytes back) one event `{ticket = {token.id},
/// user_data, MMPOOL_OK}` is queued on the notifier and its fd turns
/// readable; a finished hand-off queues its event at once. Several notifiers
/// may watch one hand-off.
///
/// On a shared pool the hand-off may finish in any process: the event comes
/// through this process's relay thread for the pool (the one ticket events
/// use, started by the first registration), woken by the finishing process;
/// a watch still open when this process's handle of the pool goes ends with
/// one event `{ticket = {token.id}, user_data, MMPOOL_ERR_CLOSED}`.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a freed notifier),
/// `INVALID_LEASE` (a token this pool never issued or one altered).
#[no_mangle]
pub extern "C" fn mmpool_handoff_notify(
    pool: *mut mmpool,
    token: mmpool_handoff_token,
    notifier: *mut mmpool_notifier,
    user_data: u64,
) -> mmpool_status {
    boundary!("mmpool_handoff_notify", {
        // SAFETY: the C contract: `pool` is a held handle, `notifier` a live notifier.
        let (pool, n) = unsafe { (borrow(pool, "pool")?, self::notifier(notifier, "notifier")?) };
        pool.notify_handoff(&self::token(&token), n, user_data)?;
        Ok(())
    })
}

/// Writes the pool's hand-off figures to `*out_stats`. Expired parts are
/// collected first.
///
/// Errors: `NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn mmpool_get_handoff_stats(pool: *const mmpool, out_stats: *mut mmpool_handoff_stats) -> mmpool_status {
    boundary!("mmpool_get_handoff_stats", {
        // SAFETY: the C contract: `pool` is a held handle, `out_stats` writable.
        let (pool, out_stats) = unsafe { (borrow(pool, "pool")?, out(out_stats, "out_stats")?) };
        *out_stats = pool.handoff_stats().into();
        Ok(())
    })
}
