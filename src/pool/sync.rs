//! The synchronisation facade of the engine.
//!
//! Every lock, condition variable, atomic and `Arc` the engine uses comes from
//! here, so that `RUSTFLAGS="--cfg loom" cargo test --test loom` swaps in loom's
//! model-checked versions without touching the engine's code. In normal builds
//! the locks are parking_lot's (no poisoning, small, fast uncontended).

use std::time::Instant;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// Reference counts stay std's under loom too: they are not what the models
/// check, and methods taking `self: &Arc<Self>` need std's `Arc`.
pub use std::sync::Arc;

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

/// A condition variable used with [`Mutex`]. The engine gives each waiting
/// request its own, so a notification reaches exactly the threads it concerns.
#[derive(Default)]
pub(crate) struct Condvar {
    #[cfg(not(loom))]
    inner: parking_lot::Condvar,
    #[cfg(loom)]
    inner: loom::sync::Condvar,
}

impl Condvar {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sleeps until notified or until `deadline` (`None`: no deadline).
    /// Spurious returns are allowed; callers re-check their condition.
    pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>, deadline: Option<Instant>) {
        #[cfg(not(loom))]
        {
            match deadline {
                Some(at) => {
                    self.inner.wait_until(&mut guard.0, at);
                }
                None => self.inner.wait(&mut guard.0),
            }
        }
        #[cfg(loom)]
        {
            // loom does not model time: a timed wait is a plain wait there, and
            // the models exercise timeouts by abandoning a ticket instead.
            let _ = deadline;
            let g = guard.0.take().expect("guard present");
            guard.0 = Some(self.inner.wait(g).unwrap());
        }
    }

    pub(crate) fn notify_all(&self) {
        self.inner.notify_all();
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
