//! The synchronisation facade of the engine.
//!
//! Every lock, condition variable, atomic and `Arc` the engine uses comes from
//! here, so that `RUSTFLAGS="--cfg loom" cargo test --test loom` swaps in loom's
//! model-checked versions without touching the engine's code. In normal builds
//! the locks are parking_lot's (no poisoning, small, fast uncontended).

use std::time::Instant;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Reference counts stay std's under loom too: they are not what the models
/// check, and methods taking `self: &Arc<Self>` need std's `Arc`.
pub use std::sync::{Arc, Weak};

/// A mutual-exclusion lock. It is never held while a thread sleeps in the pool.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard of [`Mutex`]; dereferences to the protected value.
#[cfg(not(loom))]
pub(crate) struct MutexGuard<'a, T>(parking_lot::MutexGuard<'a, T>);
#[cfg(loom)]
pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            #[cfg(not(loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            MutexGuard(self.inner.lock())
        }
        #[cfg(loom)]
        {
            MutexGuard(Some(self.inner.lock().unwrap()))
        }
    }
}

impl<T> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        #[cfg(not(loom))]
        {
            &self.0
        }
        #[cfg(loom)]
        {
            self.0.as_ref().expect("guard present")
        }
    }
}

impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        {
            &mut self.0
        }
        #[cfg(loom)]
        {
            self.0.as_mut().expect("guard present")
        }
    }
}

/// Where the thread of one waiting request sleeps until that request's own
/// record (an atomic word) changes. Outside loom it is `parking_lot_core`'s
/// parking lot keyed by the word's address: a wake reaches only the threads
/// asleep on that word, and a wake that comes before the sleep is never lost
/// (the word is re-read under the lot's lock). Under loom it is a lock and a
/// condition variable of its own.
#[derive(Default)]
pub(crate) struct Parker {
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    cv: loom::sync::Condvar,
}

impl Parker {
    /// Sleeps while `word` holds `value`, until woken or `deadline`.
    /// Spurious returns are allowed; callers re-check the word.
    pub(crate) fn sleep_while(&self, word: &AtomicU64, value: u64, deadline: Option<Instant>) {
        #[cfg(not(loom))]
        {
            // SAFETY: the key is the address of a live atomic word that no
            // other parking-lot user keys on (parking_lot's locks key on
            // their own addresses); the callbacks neither panic nor park.
            unsafe {
                parking_lot_core::park(
                    word as *const AtomicU64 as usize,
                    || word.load(Ordering::Acquire) == value,
                    || {},
                    |_, _| {},
                    parking_lot_core::DEFAULT_PARK_TOKEN,
                    deadline,
                );
            }
        }
        #[cfg(loom)]
        {
            let _ = deadline;
            let guard = self.lock.lock().unwrap();
            if word.load(Ordering::Acquire) == value {
                drop(self.cv.wait(guard).unwrap());
            }
        }
    }

    /// Wakes the threads asleep on `word`, after the caller changed it.
    pub(crate) fn wake(&self, word: &AtomicU64) {
        #[cfg(not(loom))]
        {
            // SAFETY: as in `sleep_while`: the key is the word's address.
            unsafe {
                parking_lot_core::unpark_all(word as *const AtomicU64 as usize, parking_lot_core::DEFAULT_UNPARK_TOKEN);
            }
        }
        #[cfg(loom)]
        {
            let _ = word;
            let _guard = self.lock.lock().unwrap();
            self.cv.notify_all();
        }
    }
}

/// Under loom, a value whose leak fails the model: the engine holds one, so
/// a pool never freed (a lifetime bug) is reported. Nothing outside loom.
#[derive(Default)]
pub(crate) struct LeakCheck {
    #[cfg(loom)]
    _track: Option<loom::alloc::Track<()>>,
}

impl LeakCheck {
    pub(crate) fn new() -> Self {
        LeakCheck {
            #[cfg(loom)]
            _track: Some(loom::alloc::Track::new(())),
        }
    }
}

/// One round of waiting for another thread to leave a short critical state
/// (a lease slot being updated): yields the processor.
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
