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
//! A holder named by the word is judged after every slice the word stayed
//! the same (`judge`): a dead process's word is taken over; so is a word
//! naming this very process when none of its threads holds or is taking the
//! lock (`inside`: a cell per thread of the attachment, see `inside.rs`; a
//! corrupt word, or one left by a predecessor in the slot). A word naming a live process that does not let
//! go cannot be taken from it; calls with a deadline give up at it.
//!
//! Not a process-shared condition variable, nor a pthread mutex: it never
//! loses a wake-up after a crash and a corrupt word cannot hang a call that
//! has a deadline.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::futex;
use super::inside::{Inside, Mark};

const OWNER_MASK: u32 = 0xff;
const SEQ_ONE: u32 = 1 << 8;
const SEQ_MASK: u32 = 0x7fff_ff00;
const CONTENDED: u32 = 1 << 31;

/// Longest a thread sleeps before checking for a dead holder. Also the slice
/// in which waiters for bytes check for dead processes.
pub(crate) const RECLAIM_SLICE: Duration = Duration::from_millis(50);

/// How long one holder must have kept the lock for a call past its deadline
/// to give up on it (the lock is then stuck, not busy).
pub(crate) const GRACE: Duration = Duration::from_millis(1);

/// How the lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a holder that released it: the segment is consistent.
    Clean,
    /// From the holder in the slot given, gone or (this slot) not holding it:
    /// the segment must be repaired.
    TakenOver(usize),
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

/// How long `lock` may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// As long as it takes.
    Forever,
    /// Until this instant, if by then one holder has kept the lock for
    /// `GRACE` (a lock that changes hands is still waited for: it is busy,
    /// not stuck).
    Deadline(Instant),
    /// Until one holder has kept the lock this long (the word unchanged):
    /// for calls without a deadline that must not wait on a stuck holder,
    /// yet wait as long as the lock changes hands.
    Unchanged(Duration),
}

impl Until {
    pub(crate) fn from_deadline(deadline: Option<Instant>) -> Until {
        deadline.map_or(Until::Forever, Until::Deadline)
    }
}

/// The wait ended while the word named another holder (its last value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut(pub(crate) u32);

/// Takes the lock for process slot `me`, waiting as `until` says, and
/// returns how, with the calling thread's mark in `inside` (which the
/// unlock ends). `inside` holds this attachment's threads that hold the
/// lock or are swapping the word to take it; `judge(owner, word)` says
/// whether a holder other than `me` is gone, asked after each full slice
/// the word stayed at `word`. A word naming `me` is taken over when
/// `inside` shows that no thread of this attachment holds it.
pub(crate) fn lock(
    word: &AtomicU32,
    me: usize,
    inside: &Inside,
    until: Until,
    judge: impl Fn(usize, u32) -> bool,
) -> Result<(Acquired, Mark), TimedOut> {
    let mut slept = false;
    // For `Until::Unchanged`: the word (without CONTENDED) and since when.
    let mut kept: Option<(u32, Instant)> = None;
    loop {
        let seen = word.load(Ordering::SeqCst);
        let Some(owner) = holder(seen) else {
            if let Some(mark) = swap(word, inside, seen, word_for(me, seen, slept)) {
                return Ok((Acquired::Clean, mark));
            }
            continue;
        };
        let mut held_for = || {
            let since = match kept {
                Some((w, since)) if w == seen & !CONTENDED => since,
                _ => kept.insert((seen & !CONTENDED, Instant::now())).1,
            };
            since.elapsed()
        };
        let slice = match until {
            Until::Forever => RECLAIM_SLICE,
            Until::Deadline(at) => {
                let held = held_for();
                let now = Instant::now();
                if now < at {
                    (at - now).min(RECLAIM_SLICE)
                } else if held >= GRACE {
                    return Err(TimedOut(seen));
                } else {
                    GRACE - held
                }
            }
            Until::Unchanged(bound) => {
                let held = held_for();
                if held >= bound {
                    return Err(TimedOut(seen));
                }
                (bound - held).min(RECLAIM_SLICE)
            }
        };
        if seen & CONTENDED == 0
            && word.compare_exchange_weak(seen, seen | CONTENDED, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            continue;
        }
        let now = seen | CONTENDED;
        let timed_out = futex::wait(word, now, slice);
        slept = true;
        if !timed_out || word.load(Ordering::SeqCst) != now {
            continue;
        }
        let gone = if owner == me { !inside.any() } else { judge(owner, now) };
        if gone {
            if let Some(mark) = swap(word, inside, now, word_for(me, now, true)) {
                return Ok((Acquired::TakenOver(owner), mark));
            }
        }
    }
}

/// Swaps the word from `from` to `to`, marked in `inside` from before the
/// swap until the unlock (or the swap's failure): whoever sees the word name
/// `me`, then no mark, knows that no thread of `me` swapped it in and still
/// holds it (the swap orders the mark before it: a load that reads the word
/// it wrote also sees the mark).
#[inline(always)]
fn swap(word: &AtomicU32, inside: &Inside, from: u32, to: u32) -> Option<Mark> {
    let mark = inside.enter();
    if word.compare_exchange(from, to, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
        return Some(mark);
    }
    inside.leave(mark);
    None
}

/// The first step of `lock`, alone: takes a free lock for `me` (cleanly,
/// as `Acquired::Clean`) if no other thread swaps the word first; `None`,
/// the lock held or contested, changes nothing (call `lock` then).
#[inline(always)]
pub(crate) fn try_lock(word: &AtomicU32, me: usize, inside: &Inside) -> Option<Mark> {
    let seen = word.load(Ordering::SeqCst);
    if holder(seen).is_some() {
        return None;
    }
    swap(word, inside, seen, word_for(me, seen, false))
}

/// Releases the lock taken with `mark`; wakes one sleeper if any.
pub(crate) fn unlock(word: &AtomicU32, inside: &Inside, mark: Mark) {
    let before = word.fetch_and(SEQ_MASK, Ordering::SeqCst);
    inside.leave(mark);
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

    fn take(word: &AtomicU32, me: usize, inside: &Inside, judge: impl Fn(usize, u32) -> bool) -> (Acquired, Mark) {
        lock(word, me, inside, Until::Forever, judge).unwrap()
    }

    #[test]
    fn a_dead_holder_is_taken_over_and_a_live_one_is_not() {
        let (word, a, b) = (AtomicU32::new(0), Inside::new(), Inside::new());
        assert_eq!(take(&word, 3, &a, |_, _| panic!("no holder to ask about")).0, Acquired::Clean);
        assert_eq!(holder(word.load(Ordering::Relaxed)), Some(3));
        assert!(a.any(), "the holder is marked in its attachment");
        // Slot 3 "dies" holding it: slot 5 takes it over after one slice.
        let (how, mark) = take(&word, 5, &b, |slot, _| slot == 3);
        assert_eq!(how, Acquired::TakenOver(3));
        assert_eq!(holder(word.load(Ordering::Relaxed)), Some(5));
        unlock(&word, &b, mark);
        assert_eq!(holder(word.load(Ordering::Relaxed)), None);
        assert!(!b.any());
    }

    #[test]
    fn every_acquisition_changes_the_word() {
        let (word, inside) = (AtomicU32::new(0), Inside::new());
        let (_, mark) = take(&word, 0, &inside, |_, _| false);
        let first = word.load(Ordering::Relaxed);
        unlock(&word, &inside, mark);
        take(&word, 0, &inside, |_, _| false);
        assert_ne!(word.load(Ordering::Relaxed), first, "the sequence must differ");
    }

    #[test]
    fn a_corrupt_holder_beyond_the_table_is_taken_over() {
        let (word, inside) = (AtomicU32::new(0xfe), Inside::new());
        assert_eq!(take(&word, 1, &inside, |slot, _| slot >= 128).0, Acquired::TakenOver(253));
    }

    #[test]
    fn a_word_naming_me_is_mine_only_while_a_thread_of_mine_is_inside() {
        // Nobody of slot 2 is inside: the word is stale, taken over.
        let (word, inside) = (AtomicU32::new(3 | SEQ_ONE), Inside::new());
        let (how, mark) = take(&word, 2, &inside, |_, _| panic!("not asked about itself"));
        assert_eq!(how, Acquired::TakenOver(2));
        unlock(&word, &inside, mark);
        // Another thread of slot 2 holds it: this one waits, here until its
        // deadline, and the holder's unlock then finds its word.
        let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            let holder_thread = s.spawn(|| {
                let (how, mark) = take(&word, 2, &inside, |_, _| panic!("the lock is free"));
                held.wait();
                release.wait();
                unlock(&word, &inside, mark);
                how
            });
            held.wait();
            let at = Instant::now() + Duration::from_millis(120);
            let r = lock(&word, 2, &inside, Until::Deadline(at), |_, _| true).map(|_| ());
            assert_eq!(r, Err(TimedOut(word.load(Ordering::Relaxed))));
            assert!(Instant::now() >= at);
            release.wait();
            assert_eq!(holder_thread.join().unwrap(), Acquired::Clean);
        });
        assert_eq!(holder(word.load(Ordering::Relaxed)), None, "the holder let go of its own word");
        assert!(!inside.any());
    }

    #[test]
    fn a_live_holder_keeps_it_until_the_deadline() {
        let (word, inside) = (AtomicU32::new(8 | SEQ_ONE), Inside::new());
        let at = Instant::now() + Duration::from_millis(80);
        assert!(lock(&word, 1, &inside, Until::Deadline(at), |slot, _| slot != 7).is_err());
        assert!(Instant::now() >= at, "returned at the deadline, not before");
        assert!(!inside.any(), "a call that timed out leaves no mark behind");
        assert_eq!(holder(word.load(Ordering::Relaxed)), Some(7));
    }

    #[test]
    fn a_bound_on_one_holder_resets_when_the_lock_changes_hands() {
        let (word, inside) = (AtomicU32::new(8 | SEQ_ONE), Inside::new());
        let started = Instant::now();
        let r = std::thread::scope(|scope| {
            scope.spawn(|| {
                // Another acquisition by the same holder after 60 ms: the
                // word changes (its sequence), so the 100 ms bound starts over.
                std::thread::sleep(Duration::from_millis(60));
                word.store(8 | 2 * SEQ_ONE, Ordering::SeqCst);
            });
            lock(&word, 1, &inside, Until::Unchanged(Duration::from_millis(100)), |_, _| false)
        });
        assert!(r.is_err());
        assert!(started.elapsed() >= Duration::from_millis(160), "{:?}", started.elapsed());
    }
}
