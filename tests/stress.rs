//! Stress: many threads run random operations on one pool at once, an
//! in-process pool and a shared one in turn (acquire in
//! every form, release, double release, foreign ids, tickets, lease resizes,
//! total changes), checking what each thread can know while it runs, and at
//! quiescence that every byte came back and every counter matches what the
//! threads saw.
//!
//! `MMPOOL_STRESS_OPS` sets the operations in all (default 1,600,000 in a
//! release build, 160,000 in a debug one), `MMPOOL_STRESS_THREADS` the threads
//! (16), `MMPOOL_STRESS_SEED` the first thread's seed. The long mode is
//! `MMPOOL_STRESS_OPS=10000000` (scripts/test-reliability.sh --long).
//! Run: cargo test --release --test stress -- --nocapture
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mmpool::{Error, Lease, Pool, Wait};

/// The two totals the pool switches between. Every ordinary request fits in
/// the smaller, so a change of total never fails a waiter and the counters
/// stay exactly predictable.
const TOTAL_HIGH: u64 = 1024;
const TOTAL_LOW: u64 = 640;
const MAX_REQUEST: u64 = 256;
const MAX_HELD: usize = 4;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

/// What one thread saw; summed, it must equal the pool's counters.
#[derive(Default, Debug, Clone, Copy)]
struct Seen {
    ops: u64,
    grants: u64,
    timeouts: u64,
    ticket_timeouts: u64,
    would_blocks: u64,
    capacity_rejections: u64,
    double_releases: u64,
    foreign_refusals: u64,
    resizes: u64,
    total_changes: u64,
}

impl Seen {
    fn add(&mut self, o: &Seen) {
        self.ops += o.ops;
        self.grants += o.grants;
        self.timeouts += o.timeouts;
        self.ticket_timeouts += o.ticket_timeouts;
        self.would_blocks += o.would_blocks;
        self.capacity_rejections += o.capacity_rejections;
        self.double_releases += o.double_releases;
        self.foreign_refusals += o.foreign_refusals;
        self.resizes += o.resizes;
        self.total_changes += o.total_changes;
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn short_wait(rng: &mut Rng) -> Wait {
    Wait::timeout_ns(rng.below(200_000))
}

struct Worker {
    pool: Arc<Pool>,
    /// Bytes the threads hold by their own count, raised after a grant and
    /// lowered before a release: it can never exceed the largest total.
    held_bytes: Arc<AtomicU64>,
    rng: Rng,
    held: Vec<Lease>,
    released: Vec<u64>,
    granted_ids: Vec<u64>,
    seen: Seen,
}

impl Worker {
    fn granted(&mut self, lease: Lease) {
        assert_eq!(self.pool.lease(lease.id), Some(lease), "the pool's record of a fresh lease");
        let held = self.held_bytes.fetch_add(lease.nbytes, Ordering::SeqCst) + lease.nbytes;
        assert!(held <= TOTAL_HIGH, "{held} bytes held at once in a pool of at most {TOTAL_HIGH}");
        self.seen.grants += 1;
        self.granted_ids.push(lease.id);
        self.held.push(lease);
    }

    fn release_one(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let lease = self.held.swap_remove(self.rng.below(self.held.len() as u64) as usize);
        self.held_bytes.fetch_sub(lease.nbytes, Ordering::SeqCst);
        self.pool.release(lease.id).unwrap();
        assert_eq!(self.pool.lease(lease.id), None, "a released lease is gone");
        if self.released.len() == 8 {
            self.released.remove(0);
        }
        self.released.push(lease.id);
    }

    fn request(&mut self) -> u64 {
        1 + self.rng.below(MAX_REQUEST)
    }

    fn step(&mut self) {
        self.seen.ops += 1;
        let full = self.held.len() >= MAX_HELD;
        match self.rng.below(100) {
            // Acquire with a short timeout.
            0..=19 if !full => {
                let n = self.request();
                let wait = short_wait(&mut self.rng);
                match self.pool.acquire(n, wait) {
                    Ok(l) => self.granted(l),
                    Err(Error::Timeout { .. }) => self.seen.timeouts += 1,
                    Err(e) => panic!("acquire({n}): {e:?}"),
                }
            }
            // Wait as long as it takes, only while holding nothing, so no
            // thread holds bytes while waiting without limit.
            20..=22 if self.held.is_empty() => {
                let n = self.request();
                let l = self.pool.acquire(n, Wait::Forever).unwrap();
                self.granted(l);
            }
            23..=37 if !full => {
                let n = self.request();
                match self.pool.try_acquire(n) {
                    Ok(l) => self.granted(l),
                    Err(Error::WouldBlock { .. }) => self.seen.would_blocks += 1,
                    Err(e) => panic!("try_acquire({n}): {e:?}"),
                }
            }
            // A ticket: wait for it in slices, then give up and cancel.
            38..=45 if !full => {
                let n = self.request();
                let ticket = self.pool.enqueue(n).unwrap();
                for _ in 0..2 {
                    let wait = short_wait(&mut self.rng);
                    match self.pool.wait_ticket(ticket, wait) {
                        Ok(l) => {
                            assert_eq!((l.id, l.nbytes), (ticket.id, n));
                            return self.granted(l);
                        }
                        Err(Error::Timeout { .. }) => self.seen.ticket_timeouts += 1,
                        Err(e) => panic!("wait_ticket: {e:?}"),
                    }
                }
                self.pool.cancel_ticket(ticket).unwrap();
                // Cancelled: the id is finished and no lease. (Not a zero
                // wait: on a shared pool that may time out on a lock one
                // holder keeps past 1 ms. A ticket still in line would time
                // out after the 10 s and fail the check.)
                let after = self.pool.wait_ticket(ticket, Wait::timeout_ns(10_000_000_000));
                assert!(matches!(after, Err(Error::InvalidLease(_))), "a cancelled ticket: {after:?}");
            }
            46..=79 => self.release_one(),
            // Release again a lease this thread already released: a no-op.
            80..=84 if !self.released.is_empty() => {
                let id = self.released[self.rng.below(self.released.len() as u64) as usize];
                self.pool.release(id).unwrap();
                assert_eq!(self.pool.lease(id), None);
                self.seen.double_releases += 1;
            }
            // Shrink or grow one of this thread's leases.
            85..=92 if !self.held.is_empty() => {
                let i = self.rng.below(self.held.len() as u64) as usize;
                let old = self.held[i];
                let new = self.request();
                let wait = short_wait(&mut self.rng);
                // A shrink hands bytes to others at once: uncount them first.
                if new < old.nbytes {
                    self.held_bytes.fetch_sub(old.nbytes - new, Ordering::SeqCst);
                }
                match self.pool.resize_lease(old.id, new, wait) {
                    Ok(l) => {
                        assert_eq!((l.id, l.nbytes), (old.id, new));
                        if new > old.nbytes {
                            let held = self.held_bytes.fetch_add(new - old.nbytes, Ordering::SeqCst);
                            assert!(held + new - old.nbytes <= TOTAL_HIGH);
                        }
                        self.held[i] = l;
                        self.seen.resizes += 1;
                    }
                    Err(Error::Timeout { .. }) => {
                        // Unchanged (a shared pool's shrink, too, gives up
                        // on a lock one holder keeps past its deadline).
                        if new < old.nbytes {
                            self.held_bytes.fetch_add(old.nbytes - new, Ordering::SeqCst);
                        }
                        self.seen.timeouts += 1
                    }
                    Err(e) => panic!("resize_lease({new}): {e:?}"),
                }
                assert_eq!(self.pool.lease(old.id), Some(self.held[i]));
            }
            // Requests no pool of this size can grant, and ids it never issued.
            93..=94 => {
                let n = TOTAL_HIGH + 1 + self.rng.below(1 << 20);
                assert!(matches!(self.pool.try_acquire(n), Err(Error::ExceedsCapacity { .. })));
                self.seen.capacity_rejections += 1;
            }
            95..=96 => {
                let garbage = self.rng.next() | 1 << 63;
                assert!(matches!(self.pool.release(garbage), Err(Error::InvalidLease(_))));
                self.seen.foreign_refusals += 1;
            }
            97 => {
                let to = if self.rng.below(2) == 0 { TOTAL_LOW } else { TOTAL_HIGH };
                self.pool.set_total(to).unwrap();
                self.seen.total_changes += 1;
            }
            _ => {
                let s = self.pool.stats();
                assert!(s.total_bytes == TOTAL_LOW || s.total_bytes == TOTAL_HIGH);
                assert!(s.peak_in_use_bytes <= TOTAL_HIGH && s.available_bytes <= TOTAL_HIGH);
                // Not in_use_bytes: a reading taken during a change of total
                // can be off by the change (see the ignored test below).
            }
        }
    }
}

#[test]
fn many_threads_of_random_operations_lose_and_double_grant_nothing() {
    let default_ops = if cfg!(debug_assertions) { 160_000 } else { 1_600_000 };
    let total_ops = env_u64("MMPOOL_STRESS_OPS", default_ops);
    stress("in-process pool", Pool::new(TOTAL_HIGH).unwrap(), total_ops);
}

/// The same on a pool shared between processes (here, the threads of one),
/// where every operation goes through the segment's lock.
#[test]
fn the_shared_pool_under_the_same_load_loses_and_double_grants_nothing() {
    let default_ops = if cfg!(debug_assertions) { 160_000 } else { 1_600_000 };
    let total_ops = env_u64("MMPOOL_STRESS_OPS", default_ops);
    /// Removes the pool's name however the test ends.
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = mmpool::pool::shared::unlink(&self.0);
        }
    }
    let name = Unlink(format!("stress-{}", std::process::id()));
    let _ = mmpool::pool::shared::unlink(&name.0);
    let flags = mmpool::pool::shared::OpenFlags { create: true, exclusive: true, group: false };
    stress("shared pool", Pool::open_shared(&name.0, TOTAL_HIGH, flags).unwrap(), total_ops);
}

/// Closes the pool when dropped by a panicking thread.
struct CloseOnPanic(Arc<Pool>);

impl Drop for CloseOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
        }
    }
}

fn stress(label: &str, pool: Arc<Pool>, total_ops: u64) {
    let threads = env_u64("MMPOOL_STRESS_THREADS", 16).max(1);
    let seed = env_u64("MMPOOL_STRESS_SEED", 0x6d6d_706f_6f6c);
    let per_thread = total_ops.div_ceil(threads);

    let held_bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let mut w = Worker {
                pool: pool.clone(),
                held_bytes: held_bytes.clone(),
                rng: Rng(seed.wrapping_add(t).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
                held: Vec::new(),
                released: Vec::new(),
                granted_ids: Vec::new(),
                seen: Seen::default(),
            };
            std::thread::spawn(move || {
                // A worker that fails keeps its leases: close the pool, so
                // that the others' unlimited waits end and the test fails
                // with this worker's message instead of hanging.
                let _close_on_failure = CloseOnPanic(w.pool.clone());
                for _ in 0..per_thread {
                    w.step();
                }
                while !w.held.is_empty() {
                    w.release_one();
                }
                (w.seen, w.granted_ids)
            })
        })
        .collect();
    let mut seen = Seen::default();
    let mut ids = Vec::new();
    for w in workers {
        let (s, granted) = w.join().expect("a worker failed; see its message above");
        seen.add(&s);
        ids.extend(granted);
    }
    let elapsed = started.elapsed();

    // Quiescence: everything came back, nobody waits, and the pool's
    // counters are exactly what the threads saw.
    let s = pool.stats();
    assert_eq!(held_bytes.load(Ordering::SeqCst), 0);
    assert_eq!((s.available_bytes, s.in_use_bytes, pool.leased_bytes()), (s.total_bytes, 0, 0), "{s:?}");
    assert_eq!((s.outstanding_leases, s.waiters), (0, 0), "{s:?}");
    assert_eq!(s.grants, seen.grants, "grants");
    assert_eq!(s.timeouts, seen.timeouts, "timeouts (ticket waits keep their place and are not counted)");
    assert_eq!(s.would_blocks, seen.would_blocks, "would_blocks");
    assert_eq!(s.capacity_rejections, seen.capacity_rejections, "capacity_rejections");
    assert_eq!(s.closed_rejections, 0);
    assert!(s.peak_in_use_bytes <= TOTAL_HIGH && s.peak_in_use_bytes > 0);
    assert!(s.wait_ns_max <= s.wait_ns_total);
    // Every grant counted once by size, every wait in line once by length,
    // although the sizes of fast-path grants are counted without a lock.
    let h = pool.histograms().unwrap();
    assert_eq!(h.sizes.iter().sum::<u64>(), s.grants, "size histogram {:?}", h.sizes);
    assert_eq!(h.waits.iter().sum::<u64>(), s.waited_grants, "wait histogram {:?}", h.waits);
    assert_eq!(h.wait_ns_total, s.wait_ns_total);
    let granted = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), granted, "a lease id was handed out twice");

    // The pool still works as new: the whole total in one grant.
    let all = pool.try_acquire(s.total_bytes).unwrap();
    pool.release(all.id).unwrap();

    println!(
        "stress, {label}: {} threads x {per_thread} = {} operations in {:.2?} ({:.0} ops/s), seed {seed:#x}: \
         {} grants ({} after waiting), {} timeouts, {} ticket timeouts, {} would-blocks, {} resizes, \
         {} double releases, {} foreign ids refused, {} capacity refusals, {} total changes, \
         {} futile wake-ups; zero failures",
        threads,
        seen.ops,
        elapsed,
        seen.ops as f64 / elapsed.as_secs_f64().max(1e-9),
        s.grants,
        s.waited_grants,
        seen.timeouts,
        seen.ticket_timeouts,
        seen.would_blocks,
        seen.resizes,
        seen.double_releases,
        seen.foreign_refusals,
        seen.capacity_rejections,
        seen.total_changes,
        s.futile_wakeups,
    );
}

/// While one thread changes the total back and forth and nothing else
/// happens, every stats reading must show exactly the bytes in use: a
/// change of total moves the total and the free bytes together.
#[test]
fn stats_taken_while_the_total_changes_show_what_is_in_use() {
    let pool = Pool::new(TOTAL_HIGH).unwrap();
    let held = pool.acquire(700, Wait::Forever).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changer = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                pool.set_total(TOTAL_LOW).unwrap();
                pool.set_total(TOTAL_HIGH).unwrap();
            }
        })
    };
    let mut torn = Vec::new();
    for _ in 0..200_000 {
        let s = pool.stats();
        if s.in_use_bytes != 700 {
            torn.push((s.total_bytes, s.available_bytes, s.in_use_bytes));
        }
    }
    stop.store(true, Ordering::Relaxed);
    changer.join().unwrap();
    pool.release(held.id).unwrap();
    assert!(torn.is_empty(), "{} of 200000 readings were torn, e.g. (total, available, in use) = {:?}", torn.len(), &torn[..torn.len().min(3)]);
}
