//! Which threads of one attachment are inside the segment's lock (holding
//! it, or swapping the word to take it), so that a waiter finding the word
//! naming its own process can tell a holder among its threads from a stale
//! or corrupt word (see `lock.rs`).
//!
//! Each thread has a cell of its own, by a process-wide index it claims on
//! first use and gives back when it ends: marking is a plain store to that
//! cell, not a read-modify-write shared by every thread of the attachment.
//! The compare-and-swap that takes the lock orders the store: a waiter whose
//! load of the word reads that swap (or a later change of the same word)
//! sees the cell set. Threads beyond the cells (more than `CELLS` alive at
//! once that use shared pools) count in a counter the attachment shares
//! instead (a read-modify-write each way).
//!
//! Indices are claimed from a bitmap with atomic operations only, no lock:
//! a child made by `fork` keeps the forking thread's index, and the indices
//! of the parent's other threads are lost to it (those threads are not in
//! the child; the counter serves when the cells run out).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Cells per attachment, the threads that can have one at once.
const CELLS: usize = 128;
const WORDS: usize = CELLS / 64;
/// This thread's index before its first use.
const UNCLAIMED: u8 = u8::MAX;
/// No cell for this thread: it counts in `Inside::others`.
const NO_CELL: u8 = u8::MAX - 1;

/// Process-wide: which indices threads hold.
static CLAIMED: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

thread_local! {
    /// This thread's index, `UNCLAIMED` or `NO_CELL`: one load on the
    /// lock's path (no destructor, so no state to check).
    static INDEX: Cell<u8> = const { Cell::new(UNCLAIMED) };
    /// Gives the index back when the thread ends (touched once, when it is
    /// claimed, so that its destructor runs).
    static GIVE_BACK: GiveBack = const { GiveBack };
}

struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        let i = INDEX.get();
        // Whatever this thread does later (other destructors) counts in the
        // shared counters.
        INDEX.set(NO_CELL);
        if (i as usize) < CELLS {
            CLAIMED[i as usize / 64].fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
        }
    }
}

/// This thread's index, claimed on first use.
#[inline(always)]
fn index() -> u8 {
    let i = INDEX.get();
    if i != UNCLAIMED {
        return i;
    }
    claim()
}

#[cold]
fn claim() -> u8 {
    let mut claimed = NO_CELL;
    'words: for (w, word) in CLAIMED.iter().enumerate() {
        let mut bits = word.load(Ordering::Relaxed);
        while bits != u64::MAX {
            let bit = (!bits).trailing_zeros() as usize;
            match word.compare_exchange_weak(bits, bits | 1 << bit, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    claimed = (w * 64 + bit) as u8;
                    break 'words;
                }
                Err(now) => bits = now,
            }
        }
    }
    INDEX.set(claimed);
    // Registers the destructor; during this thread's teardown that fails,
    // and then the index goes back at once.
    if claimed != NO_CELL && GIVE_BACK.try_with(|_| ()).is_err() {
        drop(GiveBack);
    }
    INDEX.get()
}

/// The threads of one attachment inside its lock.
pub(crate) struct Inside {
    cells: [AtomicBool; CELLS],
    /// Threads without a cell that are inside.
    others: AtomicUsize,
}

/// A thread marked inside, by [`Inside::enter`]; [`Inside::leave`] ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark(u8);

impl Inside {
    pub(crate) fn new() -> Inside {
        Inside { cells: [const { AtomicBool::new(false) }; CELLS], others: AtomicUsize::new(0) }
    }

    /// Marks the calling thread inside, before it swaps the lock word.
    #[inline(always)]
    pub(crate) fn enter(&self) -> Mark {
        let i = index();
        match self.cells.get(i as usize) {
            Some(cell) => cell.store(true, Ordering::Relaxed),
            None => {
                self.others.fetch_add(1, Ordering::SeqCst);
            }
        }
        Mark(i)
    }

    /// Ends a mark: after the unlock's change of the word, or after a swap
    /// that failed. Any thread may end a mark it was handed.
    #[inline(always)]
    pub(crate) fn leave(&self, mark: Mark) {
        match self.cells.get(mark.0 as usize) {
            Some(cell) => cell.store(false, Ordering::Release),
            None => {
                self.others.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Whether any thread of this attachment is inside. Read after a load
    /// of the lock word that saw the word it judges.
    pub(crate) fn any(&self) -> bool {
        self.others.load(Ordering::SeqCst) != 0 || self.cells.iter().any(|c| c.load(Ordering::Acquire))
    }

    /// No thread is inside (a fresh attachment, in a child after `fork`).
    pub(crate) fn clear(&self) {
        for c in &self.cells {
            c.store(false, Ordering::Relaxed);
        }
        self.others.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_shows_until_it_is_left_on_every_thread() {
        let inside = Inside::new();
        assert!(!inside.any());
        let mine = inside.enter();
        assert!(inside.any());
        let theirs = std::thread::scope(|s| s.spawn(|| inside.enter()).join().unwrap());
        assert_ne!(mine, theirs, "threads alive at once have cells of their own");
        inside.leave(mine);
        assert!(inside.any(), "the other thread's mark stays");
        inside.leave(theirs);
        assert!(!inside.any());
    }

    #[test]
    fn threads_beyond_the_cells_count_in_the_shared_counter() {
        // More threads inside at once than there are cells: those without
        // one count in the counter, and the attachment shows someone inside
        // until the last of them leaves.
        let inside = Inside::new();
        let n = CELLS + 2;
        let entered = std::sync::Barrier::new(n + 1);
        let go = std::sync::Barrier::new(n + 1);
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        let mark = inside.enter();
                        entered.wait();
                        go.wait();
                        inside.leave(mark);
                        mark
                    })
                })
                .collect();
            entered.wait();
            assert!(inside.any());
            go.wait();
            let marks: Vec<Mark> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert!(marks.iter().filter(|m| m.0 == NO_CELL).count() >= 2, "{n} threads, {CELLS} cells");
        });
        assert!(!inside.any(), "every thread left");
        let mark = inside.enter();
        inside.clear();
        assert!(!inside.any(), "cleared");
        let _ = mark;
    }
}
