//! A consistent-enough picture of a pool for operators and tests.

/// Figures of one pool. Counters count since the pool was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// The pool's total budget.
    pub total_bytes: u64,
    /// Bytes that can be granted now (0 while the total is below what is in use).
    pub available_bytes: u64,
    /// Bytes granted and not yet returned.
    pub in_use_bytes: u64,
    /// The most bytes ever in use at once.
    pub peak_in_use_bytes: u64,
    /// Leases granted and not yet released.
    pub outstanding_leases: u64,
    /// Requests waiting in line now.
    pub waiters: u64,
    /// Leases granted.
    pub grants: u64,
    /// Requests (acquires and lease growths) that had to wait in line before their grant.
    pub waited_grants: u64,
    /// Requests that gave up when their wait ran out.
    pub timeouts: u64,
    /// Try-once requests refused because the bytes were not free at once.
    pub would_blocks: u64,
    /// Requests refused because they exceed the total.
    pub capacity_rejections: u64,
    /// Requests refused or woken because the pool was closed.
    pub closed_rejections: u64,
    /// Sum of the waits of `waited_grants`, in nanoseconds.
    pub wait_ns_total: u64,
    /// Longest of those waits, in nanoseconds.
    pub wait_ns_max: u64,
    /// Times a waiting thread woke and went back to sleep without a grant
    /// (spurious wake-ups of the operating system; mmpool itself wakes only
    /// the requests it granted or failed).
    pub futile_wakeups: u64,
    /// Bytes the attached processes hold outside any lease (fixed
    /// reservations, see `Pool::set_reservation`); not part of the budget.
    pub reserved_bytes: u64,
    /// The largest request that could be placed now: for a placed pool the
    /// most room a free range has from its first aligned offset; for any
    /// other pool the available bytes.
    pub largest_free_range: u64,
    /// Free ranges of a placed pool (free neighbours coalesce, so each is
    /// maximal); for any other pool 1 when bytes are available, else 0.
    pub free_ranges: u64,
}

impl Stats {
    /// A pool that is not placed: its free bytes count as one range.
    pub(crate) fn unplaced(self) -> Stats {
        Stats {
            largest_free_range: self.available_bytes,
            free_ranges: u64::from(self.available_bytes > 0),
            ..self
        }
    }
}
