//! Plain values passed through the ABI.

use crate::pool::{HandoffStats, Lease, Stats, Ticket, Token};

/// `timeout_ns` value that waits without limit.
pub const MMPOOL_WAIT_FOREVER: u64 = u64::MAX;

/// The largest total a pool accepts: 2^60 bytes.
pub const MMPOOL_MAX_TOTAL: u64 = 0x1000_0000_0000_0000;
const _: () = assert!(MMPOOL_MAX_TOTAL == crate::pool::MAX_TOTAL);

/// A grant of bytes, a plain value. `id` 0 means "no lease".
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mmpool_lease {
    /// Unique across all pools of the process, never reused.
    pub id: u64,
    /// The bytes it holds (informational: the pool's own record decides what a
    /// release returns).
    pub nbytes: u64,
}

/// A place in line from `mmpool_enqueue`. `id` 0 means "none".
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mmpool_ticket {
    pub id: u64,
}

/// Figures of a pool. Set `size = sizeof(mmpool_stats)` before calling
/// `mmpool_get_stats`; it writes the fields that fit in `size` bytes and sets
/// `size` to the number of bytes it wrote, so the struct can grow at its end
/// without breaking callers built against an older header.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mmpool_stats {
    /// In: the caller's `sizeof(mmpool_stats)`. Out: bytes written.
    pub size: u64,
    /// The pool's total budget.
    pub total_bytes: u64,
    /// Bytes grantable now (0 while the total is below what is in use).
    pub available_bytes: u64,
    /// Bytes granted and not yet returned.
    pub in_use_bytes: u64,
    /// The most bytes ever in use at once.
    pub peak_in_use_bytes: u64,
    /// Leases granted and not yet released.
    pub outstanding_leases: u64,
    /// Requests waiting in line now.
    pub waiters: u64,
    /// Leases granted since creation.
    pub grants: u64,
    /// Requests (acquires and lease growths) that waited before their grant.
    pub waited_grants: u64,
    /// Requests that gave up when their wait ran out: timed acquires and lease
    /// growths, and tickets whose `mmpool_ticket_wait_or_leave` ran out (a
    /// `mmpool_ticket_wait` slice that runs out keeps its place and is not counted).
    pub timeouts: u64,
    /// `mmpool_try_acquire` calls refused because the bytes were not free at
    /// once (a request that waits in line is not counted here).
    pub would_blocks: u64,
    /// Requests refused because they exceed the total.
    pub capacity_rejections: u64,
    /// Requests refused or woken because the pool was closed.
    pub closed_rejections: u64,
    /// Sum of the waits of `waited_grants`, in nanoseconds.
    pub wait_ns_total: u64,
    /// Longest of those waits, in nanoseconds.
    pub wait_ns_max: u64,
    /// Times a waiting thread woke and went back to sleep without a grant.
    pub futile_wakeups: u64,
    /// Bytes the attached processes hold outside any lease
    /// (`mmpool_set_reservation`): not part of the budget; an engine sizing
    /// its KV cache subtracts `total_bytes + reserved_bytes`.
    pub reserved_bytes: u64,
    /// The largest request that could be granted a range now: in a placed
    /// pool (`mmpool_init_placed`) the most room a free range has from its
    /// first aligned offset; in any other pool `available_bytes`. (A placed
    /// pool's free bytes are `available_bytes`.)
    pub largest_free_range: u64,
    /// Free ranges of a placed pool, each maximal (free neighbours join);
    /// in any other pool 1 when `available_bytes > 0`, else 0.
    pub free_ranges: u64,
}

/// A hand-off's token from `mmpool_lease_share`: a plain value of 32 bytes to
/// send to the consumers as it is. A token this pool never issued, or one
/// with any field altered (the nonce covers them all), is refused with
/// `MMPOOL_ERR_INVALID_LEASE`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mmpool_handoff_token {
    /// The hand-off, unique within its pool, never reused; 0 means "none".
    pub id: u64,
    /// Proves the token came from the pool.
    pub nonce: u64,
    /// How many parts: consumers complete parts 0 to `parts - 1`.
    pub parts: u32,
    /// `MMPOOL_TOKEN_PLACED` when `offset` says where the lease lies; 0
    /// otherwise.
    pub flags: u32,
    /// With `MMPOOL_TOKEN_PLACED`: the lease's offset in its placed pool
    /// (the consumer finds the bytes there); otherwise 0.
    pub offset: u64,
}

/// Hand-off figures of a pool, from `mmpool_get_handoff_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mmpool_handoff_stats {
    /// Hand-offs shared and not yet finished.
    pub outstanding: u64,
    /// Bytes they hold (those of leases shared without `MMPOOL_SHARE_KEEP_LEASE`).
    pub held_bytes: u64,
    /// Hand-offs made since the pool was created.
    pub shared: u64,
    /// Hand-offs finished: every part completed or expired.
    pub finished: u64,
    /// Parts that expired: nobody claimed or completed them by the claim deadline.
    pub expired_parts: u64,
}

impl From<Token> for mmpool_handoff_token {
    fn from(t: Token) -> Self {
        mmpool_handoff_token { id: t.id, nonce: t.nonce, parts: t.parts, flags: t.flags, offset: t.offset }
    }
}

impl From<HandoffStats> for mmpool_handoff_stats {
    fn from(s: HandoffStats) -> Self {
        mmpool_handoff_stats {
            outstanding: s.outstanding,
            held_bytes: s.held_bytes,
            shared: s.shared,
            finished: s.finished,
            expired_parts: s.expired_parts,
        }
    }
}

impl From<Lease> for mmpool_lease {
    fn from(l: Lease) -> Self {
        mmpool_lease { id: l.id, nbytes: l.nbytes }
    }
}

impl From<Ticket> for mmpool_ticket {
    fn from(t: Ticket) -> Self {
        mmpool_ticket { id: t.id }
    }
}

impl From<Stats> for mmpool_stats {
    fn from(s: Stats) -> Self {
        mmpool_stats {
            size: std::mem::size_of::<mmpool_stats>() as u64,
            total_bytes: s.total_bytes,
            available_bytes: s.available_bytes,
            in_use_bytes: s.in_use_bytes,
            peak_in_use_bytes: s.peak_in_use_bytes,
            outstanding_leases: s.outstanding_leases,
            waiters: s.waiters,
            grants: s.grants,
            waited_grants: s.waited_grants,
            timeouts: s.timeouts,
            would_blocks: s.would_blocks,
            capacity_rejections: s.capacity_rejections,
            closed_rejections: s.closed_rejections,
            wait_ns_total: s.wait_ns_total,
            wait_ns_max: s.wait_ns_max,
            futile_wakeups: s.futile_wakeups,
            reserved_bytes: s.reserved_bytes,
            largest_free_range: s.largest_free_range,
            free_ranges: s.free_ranges,
        }
    }
}
