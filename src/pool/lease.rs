//! Lease ids and the table of outstanding leases.
//!
//! An id is `tag << SEQ_BITS | seq`: `tag` is unique to a pool within the
//! process and `seq` counts up from 1 within the pool, so ids are never reused
//! and an id tells which pool issued it. Tickets (places in line) draw from the
//! same sequence; a granted ticket's lease keeps the ticket's id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::error::Error;
use super::sync::{AtomicU64, Mutex, Ordering};

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

const TAG_BITS: u32 = 24;
const SEQ_BITS: u32 = 64 - TAG_BITS;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

// Pool tags are process-wide; under loom they come from std so that the
// counter survives the model's iterations (only uniqueness matters).
static NEXT_TAG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Hands out a pool's ids.
pub(crate) struct IdSource {
    tag: u64,
    next_seq: AtomicU64,
}

impl IdSource {
    pub(crate) fn new() -> Result<Self, Error> {
        let tag = NEXT_TAG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if tag >= 1 << TAG_BITS {
            return Err(Error::System(format!(
                "this process has created {} pools, the most it can tell apart",
                (1u64 << TAG_BITS) - 1
            )));
        }
        Ok(IdSource { tag, next_seq: AtomicU64::new(1) })
    }

    pub(crate) fn next(&self) -> Result<u64, Error> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if seq > SEQ_MASK {
            return Err(Error::System(
                "this pool has issued 2^40 lease ids, all it can; create a new pool".into(),
            ));
        }
        Ok(self.tag << SEQ_BITS | seq)
    }

    /// Whether this pool issued `id` (it may have been released since).
    pub(crate) fn issued(&self, id: u64) -> bool {
        let seq = id & SEQ_MASK;
        id >> SEQ_BITS == self.tag && seq != 0 && seq < self.next_seq.load(Ordering::Relaxed)
    }

    /// Rejects ids this pool never issued, saying what is wrong with them.
    pub(crate) fn check(&self, id: u64, what: &str) -> Result<(), Error> {
        if self.issued(id) {
            Ok(())
        } else if id == 0 {
            Err(Error::InvalidLease(format!("{what} id 0 means \"none\"")))
        } else {
            Err(Error::InvalidLease(format!("{what} {id:#x} was not issued by this pool")))
        }
    }
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

const SHARDS: usize = 16;

struct Shard<K> {
    leases: IdMap<u64>,
    granted: u64,
    /// A reference that keeps the pool alive while this shard holds leases.
    keepalive: Option<K>,
}

#[repr(align(64))]
struct Padded<T>(T);

/// Outstanding leases, split into shards so that threads releasing different
/// leases rarely meet on one lock. No lock here is held while sleeping.
pub(crate) struct LeaseTable<K> {
    shards: Vec<Padded<Mutex<Shard<K>>>>,
}

impl<K: Clone> LeaseTable<K> {
    pub(crate) fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Padded(Mutex::new(Shard { leases: IdMap::default(), granted: 0, keepalive: None }))
            })
            .collect();
        LeaseTable { shards }
    }

    fn shard(&self, id: u64) -> &Mutex<Shard<K>> {
        &self.shards[(id as usize) % SHARDS].0
    }

    /// Records a new lease; `owner` is cloned into the shard when it was empty.
    pub(crate) fn insert(&self, id: u64, nbytes: u64, owner: &K) {
        let mut shard = self.shard(id).lock();
        if shard.leases.is_empty() {
            shard.keepalive = Some(owner.clone());
        }
        shard.leases.insert(id, nbytes);
        shard.granted += 1;
    }

    /// Removes a lease. Returns its bytes and, when the shard became empty, the
    /// reference it held, which the caller drops after its last use of the pool.
    pub(crate) fn remove(&self, id: u64) -> Option<(u64, Option<K>)> {
        let mut shard = self.shard(id).lock();
        let nbytes = shard.leases.remove(&id)?;
        let keep = if shard.leases.is_empty() { shard.keepalive.take() } else { None };
        Some((nbytes, keep))
    }

    pub(crate) fn get(&self, id: u64) -> Option<u64> {
        self.shard(id).lock().leases.get(&id).copied()
    }

    /// Applies `f` to a lease's size; returns (old, new) or `None` if absent.
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(u64) -> u64) -> Option<(u64, u64)> {
        let mut shard = self.shard(id).lock();
        let slot = shard.leases.get_mut(&id)?;
        let old = *slot;
        *slot = f(old);
        Some((old, *slot))
    }

    /// (outstanding leases, bytes they hold, leases granted so far).
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        self.shards.iter().fold((0, 0, 0), |(n, bytes, granted), s| {
            let s = s.0.lock();
            (n + s.leases.len() as u64, bytes + s.leases.values().sum::<u64>(), granted + s.granted)
        })
    }
}
