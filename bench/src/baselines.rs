//! The implementations mmpool is measured against, each written the way
//! people write it today.
//!
//! * [`Floor`]: the least an uncontended acquire+release can cost, one
//!   compare-and-swap that subtracts if enough is left and one atomic add. It
//!   keeps no record of leases and cannot make a thread sleep (it spins).
//! * [`Reference`]: the algorithm of the Python module mmpool generalises, in
//!   Rust: one mutex, one condition variable notified with `notify_all` on
//!   every release, a set of outstanding lease ids. Any waiter that fits may
//!   take the bytes. Two lock flavours: std's and parking_lot's.
//! * [`Tokio`]: tokio's `Semaphore`, permits standing for bytes, waited on
//!   from plain threads with the small `block_on` beside this file.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::DerefMut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::block_on::block_on;
use super::subject::{Grant, Subject};

// ---- floor -----------------------------------------------------------------

pub struct Floor {
    available: AtomicU64,
}

impl Floor {
    fn try_take(&self, nbytes: u64) -> bool {
        let mut now = self.available.load(Ordering::Relaxed);
        loop {
            if now < nbytes {
                return false;
            }
            match self.available.compare_exchange_weak(now, now - nbytes, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }
}

impl Subject for Floor {
    const NAME: &'static str = "floor";
    const BLOCKS: bool = false;

    fn new(total: u64) -> Self {
        Floor { available: AtomicU64::new(total) }
    }

    fn acquire(&self, nbytes: u64) -> Grant {
        while !self.try_take(nbytes) {
            std::hint::spin_loop();
        }
        Grant { id: 0, nbytes }
    }

    fn acquire_until(&self, nbytes: u64, deadline: Instant) -> Option<Grant> {
        loop {
            if self.try_take(nbytes) {
                return Some(Grant { id: 0, nbytes });
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::hint::spin_loop();
        }
    }

    fn release(&self, grant: Grant) {
        self.available.fetch_add(grant.nbytes, Ordering::Release);
    }

    fn waiters(&self) -> u64 {
        0
    }

    fn futile_wakeups(&self) -> u64 {
        0
    }
}

// ---- the reference algorithm -------------------------------------------------

/// Lease ids are dense counters; a multiply spreads them (SipHash would make
/// the reference slower for reasons that have nothing to do with its algorithm).
#[derive(Default)]
pub struct MulHasher(u64);

impl Hasher for MulHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// What the reference keeps under its one lock.
pub struct Books {
    available: u64,
    next_id: u64,
    outstanding: HashSet<u64, BuildHasherDefault<MulHasher>>,
    /// Instrumentation for the scenarios (not part of the algorithm).
    waiting: u64,
    futile_wakeups: u64,
}

/// One mutex and one condition variable, of some flavour.
pub trait Lock: Send + Sync + 'static {
    const FLAVOUR: &'static str;
    type Guard<'a>: DerefMut<Target = Books>
    where
        Self: 'a;
    fn new(books: Books) -> Self;
    fn lock(&self) -> Self::Guard<'_>;
    /// Sleeps until notified (or spuriously woken); `false` if `deadline` passed.
    fn wait<'a>(&'a self, guard: Self::Guard<'a>, deadline: Option<Instant>) -> (Self::Guard<'a>, bool);
    fn notify_all(&self);
}

pub struct StdLock {
    books: std::sync::Mutex<Books>,
    cond: std::sync::Condvar,
}

impl Lock for StdLock {
    const FLAVOUR: &'static str = "ref-std";
    type Guard<'a> = std::sync::MutexGuard<'a, Books>;

    fn new(books: Books) -> Self {
        StdLock { books: std::sync::Mutex::new(books), cond: std::sync::Condvar::new() }
    }

    fn lock(&self) -> Self::Guard<'_> {
        relock(self.books.lock())
    }

    fn wait<'a>(&'a self, guard: Self::Guard<'a>, deadline: Option<Instant>) -> (Self::Guard<'a>, bool) {
        match deadline {
            None => (relock(self.cond.wait(guard)), true),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let (guard, result) = relock(self.cond.wait_timeout(guard, left));
                (guard, !result.timed_out())
            }
        }
    }

    fn notify_all(&self) {
        self.cond.notify_all();
    }
}

/// A panic under the lock does not stop the scenario's other threads.
fn relock<G>(result: std::sync::LockResult<G>) -> G {
    result.unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct PlLock {
    books: parking_lot::Mutex<Books>,
    cond: parking_lot::Condvar,
}

impl Lock for PlLock {
    const FLAVOUR: &'static str = "ref-parking_lot";
    type Guard<'a> = parking_lot::MutexGuard<'a, Books>;

    fn new(books: Books) -> Self {
        PlLock { books: parking_lot::Mutex::new(books), cond: parking_lot::Condvar::new() }
    }

    fn lock(&self) -> Self::Guard<'_> {
        self.books.lock()
    }

    fn wait<'a>(&'a self, mut guard: Self::Guard<'a>, deadline: Option<Instant>) -> (Self::Guard<'a>, bool) {
        match deadline {
            None => {
                self.cond.wait(&mut guard);
                (guard, true)
            }
            Some(at) => {
                let result = self.cond.wait_until(&mut guard, at);
                (guard, !result.timed_out())
            }
        }
    }

    fn notify_all(&self) {
        self.cond.notify_all();
    }
}

pub struct Reference<L: Lock> {
    lock: L,
}

impl<L: Lock> Reference<L> {
    fn take(&self, nbytes: u64, deadline: Option<Instant>) -> Option<Grant> {
        let mut books = self.lock.lock();
        if books.available < nbytes {
            books.waiting += 1;
            loop {
                let (again, in_time) = self.lock.wait(books, deadline);
                books = again;
                if books.available >= nbytes {
                    break;
                }
                if !in_time {
                    books.waiting -= 1;
                    return None;
                }
                books.futile_wakeups += 1;
            }
            books.waiting -= 1;
        }
        books.available -= nbytes;
        let id = books.next_id;
        books.next_id += 1;
        books.outstanding.insert(id);
        Some(Grant { id, nbytes })
    }
}

impl<L: Lock> Subject for Reference<L> {
    const NAME: &'static str = L::FLAVOUR;

    fn new(total: u64) -> Self {
        let books =
            Books { available: total, next_id: 0, outstanding: HashSet::default(), waiting: 0, futile_wakeups: 0 };
        Reference { lock: L::new(books) }
    }

    fn acquire(&self, nbytes: u64) -> Grant {
        self.take(nbytes, None).expect("a wait without deadline ends with a grant")
    }

    fn acquire_until(&self, nbytes: u64, deadline: Instant) -> Option<Grant> {
        self.take(nbytes, Some(deadline))
    }

    fn release(&self, grant: Grant) {
        let mut books = self.lock.lock();
        if books.outstanding.remove(&grant.id) {
            books.available += grant.nbytes;
            self.lock.notify_all();
        }
    }

    fn waiters(&self) -> u64 {
        self.lock.lock().waiting
    }

    fn futile_wakeups(&self) -> u64 {
        self.lock.lock().futile_wakeups
    }
}

pub type RefStd = Reference<StdLock>;
pub type RefParkingLot = Reference<PlLock>;

// ---- tokio's Semaphore -------------------------------------------------------

/// tokio counts permits, at most `u32::MAX` per acquire: one permit stands for
/// `2^shift` bytes, the smallest power of two that fits the total in a u32
/// (1 byte for pools up to 4 GiB, as in every scenario here), and a request
/// takes its bytes rounded up to whole permits.
pub struct Tokio {
    sem: tokio::sync::Semaphore,
    shift: u32,
    waiting: AtomicU64,
    futile_wakeups: AtomicU64,
}

impl Tokio {
    fn permits(&self, nbytes: u64) -> u32 {
        let p = nbytes.div_ceil(1u64 << self.shift);
        u32::try_from(p).expect("the shift fits every request in a u32")
    }

    fn take(&self, nbytes: u64, deadline: Option<Instant>) -> Option<Grant> {
        let permits = self.permits(nbytes);
        if let Ok(permit) = self.sem.try_acquire_many(permits) {
            permit.forget();
            return Some(Grant { id: 0, nbytes });
        }
        let waited = block_on(
            self.sem.acquire_many(permits),
            deadline,
            || {
                self.waiting.fetch_add(1, Ordering::Relaxed);
            },
            || {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            },
        );
        self.futile_wakeups.fetch_add(waited.futile_wakeups, Ordering::Relaxed);
        let permit = waited.output?.expect("the semaphore is never closed");
        permit.forget();
        Some(Grant { id: 0, nbytes })
    }
}

impl Subject for Tokio {
    const NAME: &'static str = "tokio";

    fn new(total: u64) -> Self {
        let mut shift = 0;
        while total.div_ceil(1u64 << shift) > u64::from(u32::MAX) {
            shift += 1;
        }
        let permits = total.div_ceil(1u64 << shift) as usize;
        Tokio {
            sem: tokio::sync::Semaphore::new(permits),
            shift,
            waiting: AtomicU64::new(0),
            futile_wakeups: AtomicU64::new(0),
        }
    }

    fn acquire(&self, nbytes: u64) -> Grant {
        self.take(nbytes, None).expect("a wait without deadline ends with a grant")
    }

    fn acquire_until(&self, nbytes: u64, deadline: Instant) -> Option<Grant> {
        self.take(nbytes, Some(deadline))
    }

    fn release(&self, grant: Grant) {
        self.sem.add_permits(self.permits(grant.nbytes) as usize);
    }

    fn waiters(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    fn futile_wakeups(&self) -> u64 {
        self.futile_wakeups.load(Ordering::Relaxed)
    }
}
