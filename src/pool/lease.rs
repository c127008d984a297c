//! The values a pool hands out: leases and tickets, and the map keyed by
//! their ids. How ids are made and recorded is `slots`'s business.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};


/// A grant: `nbytes` bytes held under `id` until released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Unique across all pools of the process, never reused, never 0.
    pub id: u64,
    /// The bytes it holds.
    pub nbytes: u64,
}

/// A place in line, redeemed with `Pool::wait_ticket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// Unique across all pools of the process, never reused, never 0.
    pub id: u64,
}

/// What a request that may wait gets at once: its lease, or its place in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Granted without waiting.
    Granted(Lease),
    /// In line; redeem the ticket with `Pool::wait_ticket` or leave with
    /// `Pool::cancel_ticket`.
    Queued(Ticket),
}

/// Ids are dense counters: a multiply spreads them over the hash table.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
