//! The segment's lock: a futex word that names its holder, so that a holder
//! killed inside the lock is noticed and the lock taken over.
//!
//! Word: bits 0..8 the holder's process slot + 1 (0: free), bits 8..31 a
//! sequence bumped by every acquisition, bit 31 `CONTENDED` (someone sleeps on
//! the word; the unlocker must wake one). A thread that finds the lock held
//! sleeps on the word for at most `RECLAIM_SLICE`; when that runs out it asks
//! the kernel whether the holder's process still lives (its byte lock, see
//! `liveness.rs`) and, if not, takes the word over with a compare-and-swap of
//! the exact value it saw. The sequence makes that swap fail if the lock
//! changed hands meanwhile, even to a new process in the same slot.
//!
//! Not a process-shared condition variable, nor a pthread mutex: it never
//! loses a wake-up after a crash and a corrupt word cannot hang anyone (an
//! owner that no live process holds is taken over like a dead one).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::futex;

const OWNER_MASK: u32 = 0xff;
const SEQ_ONE: u32 = 1 << 8;
const SEQ_MASK: u32 = 0x7fff_ff00;
const CONTENDED: u32 = 1 << 31;

/// Longest a thread sleeps before checking for a dead holder. Also the slice
/// in which waiters for bytes check for dead processes.
pub(crate) const RECLAIM_SLICE: Duration = Duration::from_millis(50);

/// How the lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a holder that released it: the segment is consistent.
    Clean,
    /// From a holder that died inside it: the segment must be repaired.
    TakenOver,
}

fn word_for(slot: usize, seen: u32, contended: bool) -> u32 {
    let seq = (seen & SEQ_MASK).wrapping_add(SEQ_ONE) & SEQ_MASK;
    (slot as u32 + 1) | seq | if contended { CONTENDED } else { 0 }
}

/// The slot named as holder by a word, if any (it may be out of range).
pub(crate) fn holder(word: u32) -> Option<usize> {
    match word & OWNER_MASK {
        0 => None,
        tag => Some(tag as usize - 1),
    }
}

/// Takes the lock for process slot `me`. `is_dead(slot)` says whether the
/// process in `slot` is gone; it is asked only after a full slice of waiting.
/// (For `me` itself the caller answers: another thread of this process holds
/// it, unless the slot was just claimed and the word is a dead predecessor's.)
pub(crate) fn lock(word: &AtomicU32, me: usize, is_dead: impl Fn(usize) -> bool) -> Acquired {
    let mut slept = false;
    loop {
        let seen = word.load(Ordering::Relaxed);
        let Some(owner) = holder(seen) else {
            if word
                .compare_exchange_weak(seen, word_for(me, seen, slept), Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Acquired::Clean;
            }
            continue;
        };
        if seen & CONTENDED == 0
            && word.compare_exchange_weak(seen, seen | CONTENDED, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            continue;
        }
        let timed_out = futex::wait(word, seen | CONTENDED, RECLAIM_SLICE);
        slept = true;
        if timed_out && is_dead(owner) {
            let now = seen | CONTENDED;
            if word
                .compare_exchange(now, word_for(me, now, true), Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Acquired::TakenOver;
            }
        }
    }
}

/// Releases the lock; wakes one sleeper if any.
pub(crate) fn unlock(word: &AtomicU32) {
    let before = word.fetch_and(SEQ_MASK, Ordering::Release);
    if before & CONTENDED != 0 {
        futex::wake(word, 1);
    }
}

/// Whether a thread sleeps on the lock (for tests that must know a waiter is
/// blocked before they act).
pub(crate) fn is_contended(word: &AtomicU32) -> bool {
    word.load(Ordering::Relaxed) & CONTENDED != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_holder_is_taken_over_and_a_live_one_is_not() {
        let word = AtomicU32::new(0);
        assert_eq!(lock(&word, 3, |_| panic!("no holder to ask about")), Acquired::Clean);
        assert_eq!(holder(word.load(Ordering::Relaxed)), Some(3));
        // Slot 3 "dies" holding it: slot 5 takes it over after one slice.
        assert_eq!(lock(&word, 5, |slot| slot == 3), Acquired::TakenOver);
        assert_eq!(holder(word.load(Ordering::Relaxed)), Some(5));
        unlock(&word);
        assert_eq!(holder(word.load(Ordering::Relaxed)), None);
    }

    #[test]
    fn every_acquisition_changes_the_word() {
        let word = AtomicU32::new(0);
        lock(&word, 0, |_| false);
        let first = word.load(Ordering::Relaxed);
        unlock(&word);
        lock(&word, 0, |_| false);
        assert_ne!(word.load(Ordering::Relaxed), first, "the sequence must differ");
    }

    #[test]
    fn a_corrupt_holder_beyond_the_table_is_taken_over() {
        let word = AtomicU32::new(0xfe);
        assert_eq!(lock(&word, 1, |slot| slot >= 128), Acquired::TakenOver);
    }
}
