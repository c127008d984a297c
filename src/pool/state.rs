//! The pool's lock-free state word: available bytes and two flags in one atomic.
//!
//! Layout of the `u64`: bits 2..64 hold the available bytes as a signed number
//! (negative after the total was lowered below what is in use), bit 0 is
//! `QUEUED` (someone waits in line) and bit 1 is `CLOSED`.
//!
//! The rule that makes the fast path safe: while `QUEUED` is set, only a thread
//! holding the wait-list lock changes the available bytes. Fast acquires and
//! fast releases only succeed on a word without `QUEUED`, and setting `QUEUED`
//! is a compare-and-swap on the same word, so a byte released in parallel is
//! never missed by a thread that is about to queue.

use super::sync::{AtomicU64, Ordering};

const QUEUED: u64 = 1;
const CLOSED: u64 = 2;
const FLAGS: u64 = QUEUED | CLOSED;
const SHIFT: u32 = 2;

/// Largest total a pool accepts (2^60 bytes, one exbibyte), so that available
/// bytes plus or minus any total always fit the word's signed 62 bits.
pub const MAX_TOTAL: u64 = 1 << 60;

/// One reading of the state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) available: i64,
    pub(crate) queued: bool,
    pub(crate) closed: bool,
}

impl Snapshot {
    #[inline(always)]
    fn decode(word: u64) -> Self {
        Snapshot {
            available: (word as i64) >> SHIFT,
            queued: word & QUEUED != 0,
            closed: word & CLOSED != 0,
        }
    }

    /// Whether `nbytes` fit into what is available.
    pub(crate) fn fits(&self, nbytes: u64) -> bool {
        self.available >= 0 && nbytes <= self.available as u64
    }
}

#[inline(always)]
fn encode(word: u64, available: i64) -> u64 {
    ((available << SHIFT) as u64) | (word & FLAGS)
}

pub(crate) struct State {
    word: AtomicU64,
}

impl State {
    pub(crate) fn new(total: u64) -> Self {
        State { word: AtomicU64::new(encode(0, total as i64)) }
    }

    pub(crate) fn load(&self) -> Snapshot {
        Snapshot::decode(self.word.load(Ordering::Acquire))
    }

    /// Applies `change` to the word atomically: `change` sees the current
    /// reading and returns the new available bytes and flags, or `None` to
    /// leave the word as it is. Returns the reading it acted on, and whether
    /// it changed the word.
    #[inline(always)]
    fn update(&self, change: impl Fn(Snapshot, u64) -> Option<u64>) -> (Snapshot, bool) {
        match self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| change(Snapshot::decode(w), w)) {
            Ok(w) => (Snapshot::decode(w), true),
            Err(w) => (Snapshot::decode(w), false),
        }
    }

    /// Fast path: takes `nbytes` if nobody is queued, the pool is open and
    /// enough is available; returns the bytes left. On failure returns the
    /// reading that refused it.
    #[inline(always)]
    pub(crate) fn try_take(&self, nbytes: u64) -> Result<i64, Snapshot> {
        let (s, taken) = self.update(|s, w| {
            (!s.queued && !s.closed && s.fits(nbytes)).then(|| encode(w, s.available - nbytes as i64))
        });
        if taken {
            Ok(s.available - nbytes as i64)
        } else {
            Err(s)
        }
    }

    /// Fast path, first look: the word as read and the bytes that taking
    /// `nbytes` would leave, if the word grants them now (nobody queued,
    /// open, enough available).
    #[inline(always)]
    pub(crate) fn peek_take(&self, nbytes: u64) -> Option<(u64, i64)> {
        Self::would_take(self.word.load(Ordering::Acquire), nbytes)
    }

    #[inline(always)]
    fn would_take(w: u64, nbytes: u64) -> Option<(u64, i64)> {
        let s = Snapshot::decode(w);
        (!s.queued && !s.closed && s.fits(nbytes)).then(|| (w, s.available - nbytes as i64))
    }

    /// Fast path, second step: takes the bytes `peek_take` saw, re-checking
    /// if the word changed since; returns the bytes left.
    #[inline(always)]
    pub(crate) fn take_from(&self, seen: (u64, i64), nbytes: u64) -> Option<i64> {
        let (mut w, mut left) = seen;
        loop {
            // `would_take` passed only a word with no flag set: the new word
            // is the bytes left, shifted, with no flag either.
            match self.word.compare_exchange_weak(w, (left << SHIFT) as u64, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(left),
                Err(now) => (w, left) = Self::would_take(now, nbytes)?,
            }
        }
    }

    /// Fast path: gives back `nbytes` unless someone is queued, in which case
    /// nothing changes and the caller must give them back under the lock.
    #[inline(always)]
    pub(crate) fn try_give(&self, nbytes: u64) -> bool {
        // The bytes sit above the flags, so adding them shifted keeps the
        // flags as they are (`CLOSED` may be set) and cannot carry out of
        // the word: a lease holds at most `MAX_TOTAL`, and available plus
        // it stays within the signed 62 bits.
        let more = nbytes << SHIFT;
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w & QUEUED == 0).then(|| w.wrapping_add(more)))
            .is_ok()
    }

    /// Under the wait-list lock: takes `nbytes` if they fit (ignoring `QUEUED`,
    /// which the lock holder owns) and returns the bytes left, else sets
    /// `QUEUED` and returns `Err`.
    pub(crate) fn take_or_queue(&self, nbytes: u64) -> Result<i64, ()> {
        let (s, _) = self.update(|s, w| {
            Some(if s.fits(nbytes) { encode(w, s.available - nbytes as i64) } else { w | QUEUED })
        });
        if s.fits(nbytes) {
            Ok(s.available - nbytes as i64)
        } else {
            Err(())
        }
    }

    /// Under the wait-list lock: takes `nbytes` if they fit, for the head of
    /// the line. Returns the bytes left on success.
    pub(crate) fn take_locked(&self, nbytes: u64) -> Option<i64> {
        let (s, taken) = self.update(|s, w| s.fits(nbytes).then(|| encode(w, s.available - nbytes as i64)));
        taken.then(|| s.available - nbytes as i64)
    }

    /// Adds a signed amount to the available bytes (a release under the lock,
    /// or a change of the total).
    pub(crate) fn add(&self, delta: i64) {
        self.word.fetch_add((delta << SHIFT) as u64, Ordering::AcqRel);
    }

    /// Under the wait-list lock, when the line has become empty.
    pub(crate) fn clear_queued(&self) {
        self.word.fetch_and(!QUEUED, Ordering::AcqRel);
    }

    pub(crate) fn set_closed(&self) {
        self.word.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Under the wait-list lock, when the pool's last handle is gone: closed,
    /// and `QUEUED` for good, so that from now on every release takes the
    /// lock, where the outstanding leases are counted down.
    pub(crate) fn retire(&self) {
        self.word.fetch_or(CLOSED | QUEUED, Ordering::AcqRel);
    }

    /// At creation of a placed pool: `QUEUED` for good, so that every
    /// request and release takes the wait-list lock, where ranges are placed.
    pub(crate) fn queue_for_good(&self) {
        self.word.fetch_or(QUEUED, Ordering::AcqRel);
    }
}
