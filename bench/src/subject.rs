//! What every implementation under test offers: a blocking byte semaphore
//! with leases, and the two figures the scenarios read from its inside.

use std::time::Instant;

/// A grant: what the implementation needs to take it back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grant {
    pub id: u64,
    pub nbytes: u64,
}

/// A byte budget that threads acquire from and release to.
pub trait Subject: Send + Sync + 'static {
    /// Short name used in the table and the JSON file.
    const NAME: &'static str;
    /// Whether it can make a thread wait (the floor cannot: it only spins).
    const BLOCKS: bool = true;

    fn new(total: u64) -> Self;
    /// Waits as long as it takes.
    fn acquire(&self, nbytes: u64) -> Grant;
    /// Waits until `deadline`; `None` if it passed first (nothing is held then).
    fn acquire_until(&self, nbytes: u64, deadline: Instant) -> Option<Grant>;
    fn release(&self, grant: Grant);
    /// Requests asleep (or about to sleep) in the implementation now.
    fn waiters(&self) -> u64;
    /// Wake-ups so far after which the thread went back to sleep ungranted.
    fn futile_wakeups(&self) -> u64;
}
