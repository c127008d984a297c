//! The six scenarios, each generic over the implementation under test so that
//! every implementation runs exactly the same code around its calls.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::heap;
use super::subject::Subject;

const MIB: u64 = 1 << 20;
/// The size of one lease in the throughput and wake-up scenarios (a batch of
/// decoded frames).
pub const UNIT: u64 = 64 * MIB;

/// One acquire+release with nobody else around; the unit scenario 1 times and
/// the callgrind mode counts.
#[inline(always)]
pub fn pair<S: Subject>(s: &S) {
    let grant = s.acquire(black_box(UNIT));
    s.release(black_box(grant));
}

/// Scenario 1: Nanoseconds per uncontended acquire+release.
pub fn uncontended<S: Subject>(pairs: u64) -> f64 {
    let s = S::new(3 * UNIT);
    for _ in 0..1000 {
        pair(&s);
    }
    let start = Instant::now();
    for _ in 0..pairs {
        pair(&s);
    }
    start.elapsed().as_nanos() as f64 / pairs as f64
}

/// Hand-offs for the callgrind mode: two threads pass a pool's whole budget
/// back and forth `rounds` times each way. Each one sleeps briefly before it
/// releases, so that the other is asleep in `acquire` by then: every release
/// grants a sleeping waiter, and every acquire waits and is woken.
pub fn handoffs<S: Subject>(rounds: u64) {
    let pause = Duration::from_micros(200);
    let s = Arc::new(S::new(UNIT));
    let mut held = s.acquire(UNIT);
    let other = {
        let s = Arc::clone(&s);
        thread::spawn(move || {
            for _ in 0..rounds {
                let g = s.acquire(UNIT);
                thread::sleep(pause);
                s.release(g);
            }
        })
    };
    for _ in 0..rounds {
        thread::sleep(pause);
        s.release(held);
        held = s.acquire(UNIT);
    }
    // Released before the join: an implementation that lets a running
    // thread take back what it just released may have starved the other.
    s.release(held);
    other.join().expect("the other thread panicked");
}

/// Busy for `d` of wall-clock time (the "work" done while a lease is held).
/// Time off the core counts too: a spin descheduled half way is done when
/// it gets its core back, whatever it did.
pub fn spin_for(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// This thread's processor time so far.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable `timespec` for the duration of the
    // call; CLOCK_THREAD_CPUTIME_ID names the calling thread's clock.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        panic!("clock_gettime(CLOCK_THREAD_CPUTIME_ID): {}", std::io::Error::last_os_error());
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Busy until this thread has run on a core for `d`: a fixed amount of
/// work, as a decode on the CPU is, that does not progress while the
/// thread waits for a core.
pub fn work_for(d: Duration) {
    let end = thread_cpu_time() + d;
    while thread_cpu_time() < end {
        std::hint::spin_loop();
    }
}

/// How a worker holds its lease: busy on a core for a wall-clock time, busy
/// for an amount of processor time (work), or blocked (asleep, as a decode
/// is while it waits for the GPU to finish).
#[derive(Clone, Copy, Debug)]
pub enum Hold {
    Busy(Duration),
    Work(Duration),
    Blocked(Duration),
}

impl Hold {
    pub fn run(self) {
        match self {
            Hold::Busy(d) => spin_for(d),
            Hold::Work(d) => work_for(d),
            Hold::Blocked(d) => thread::sleep(d),
        }
    }

    /// E.g. "hold 200us", "work 200us" or "blocked 200us".
    pub fn label(self) -> String {
        match self {
            Hold::Busy(d) => format!("hold {}us", d.as_micros()),
            Hold::Work(d) => format!("work {}us", d.as_micros()),
            Hold::Blocked(d) => format!("blocked {}us", d.as_micros()),
        }
    }

    /// Whether the hold keeps its thread on a core.
    pub fn busy(self) -> bool {
        !matches!(self, Hold::Blocked(_))
    }
}

/// What a run of `threads` workers on a pool of three leases did.
pub struct Contended {
    pub ops_per_s: f64,
    /// Nanoseconds each acquire took, sorted (only when asked to record).
    pub waits_ns: Vec<u64>,
    /// Context switches of the workers per operation: voluntary (the worker
    /// went to sleep, in acquire or in a blocked hold) and involuntary (the
    /// scheduler took its core away).
    pub voluntary_per_op: f64,
    pub involuntary_per_op: f64,
}

/// This thread's context switches so far: (voluntary, involuntary).
fn switches() -> (u64, u64) {
    // SAFETY: an all-zero `rusage` is a valid value for the kernel to fill,
    // and the pointer is to a live local for the duration of the call.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `rusage`; RUSAGE_THREAD names the
    // calling thread.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        return (0, 0);
    }
    (u.ru_nvcsw as u64, u.ru_nivcsw as u64)
}

/// Scenarios 2 and 5: `threads` workers loop acquire(UNIT), busy `hold`, release, on a
/// pool that fits three leases, for `run_for`. With `record`, each acquire's
/// duration is kept (it costs two clock reads per operation).
pub fn contended<S: Subject>(threads: usize, run_for: Duration, hold: Hold, record: bool) -> Contended {
    let s = Arc::new(S::new(3 * UNIT));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (s, stop, start) = (Arc::clone(&s), Arc::clone(&stop), Arc::clone(&start));
            thread::spawn(move || {
                let mut waits = Vec::with_capacity(if record { 1 << 16 } else { 0 });
                let mut ops = 0u64;
                start.wait();
                let before = switches();
                while !stop.load(Ordering::Relaxed) {
                    let grant = if record {
                        let t = Instant::now();
                        let g = s.acquire(UNIT);
                        waits.push(t.elapsed().as_nanos() as u64);
                        g
                    } else {
                        s.acquire(UNIT)
                    };
                    hold.run();
                    s.release(grant);
                    ops += 1;
                }
                let after = switches();
                (ops, waits, (after.0 - before.0, after.1 - before.1))
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    let mut waits_ns = Vec::new();
    let (mut voluntary, mut involuntary) = (0, 0);
    for w in workers {
        let (n, waits, (v, i)) = w.join().expect("a worker panicked");
        ops += n;
        waits_ns.extend(waits);
        voluntary += v;
        involuntary += i;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    waits_ns.sort_unstable();
    let per_op = |n: u64| n as f64 / ops.max(1) as f64;
    Contended { ops_per_s: ops as f64 / elapsed, waits_ns, voluntary_per_op: per_op(voluntary), involuntary_per_op: per_op(involuntary) }
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Polls `cond` until it holds or `limit` passes.
fn wait_until(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Threads that each take the whole pool once, in a chain.
pub struct Wakeups {
    /// Releases made while at least one thread was waiting.
    pub releases: u64,
    /// Wake-ups after which the thread went back to sleep without a grant.
    pub futile: u64,
    /// Waiters that got their grant (all of them, or the run failed).
    pub granted: u64,
}

/// Scenario 3: `waiters` threads park on a pool that one lease holds whole, each asking
/// for all of it; then the lease is released, and each waiter, once granted,
/// holds for `hold` (sleeping, as a decode waiting on its GPU work does) and
/// releases. Every release can satisfy exactly one waiter.
pub fn wakeups<S: Subject>(waiters: usize, hold: Duration) -> Result<Wakeups, String> {
    let s = Arc::new(S::new(UNIT));
    let holder = s.acquire(UNIT);
    let threads: Vec<_> = (0..waiters)
        .map(|_| {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let g = s.acquire(UNIT);
                thread::sleep(hold);
                s.release(g);
            })
        })
        .collect();
    if !wait_until(Duration::from_secs(20), || s.waiters() == waiters as u64) {
        return Err(format!("{}: {} of {waiters} threads were waiting after 20 s", S::NAME, s.waiters()));
    }
    let before = s.futile_wakeups();
    s.release(holder);
    let mut granted = 0;
    for t in threads {
        t.join().map_err(|_| format!("{}: a waiter panicked", S::NAME))?;
        granted += 1;
    }
    Ok(Wakeups { releases: waiters as u64, futile: s.futile_wakeups() - before, granted })
}

/// How a large request fared amid a stream of small ones.
pub struct Starvation {
    /// Mean time a small lease was held.
    pub hold: Duration,
    /// Time to grant of each trial; `None` where it was not granted in time.
    pub grants: Vec<Option<Duration>>,
}

/// Scenario 4: Four threads stream requests for 30% of the pool, each held `hold`; a
/// request for 90% then waits at most `timeout`. Repeated `trials` times
/// (stopping at the first that is not granted).
pub fn starvation<S: Subject>(hold: Duration, timeout: Duration, trials: usize) -> Starvation {
    const PART: u64 = 100 * MIB;
    let mut held = Duration::ZERO;
    let mut holds = 0u32;
    let mut grants = Vec::new();
    for _ in 0..trials {
        let s = Arc::new(S::new(10 * PART));
        let stop = Arc::new(AtomicBool::new(false));
        let streamers: Vec<_> = (0..4)
            .map(|_| {
                let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
                thread::spawn(move || {
                    let (mut held, mut holds) = (Duration::ZERO, 0u32);
                    while !stop.load(Ordering::Relaxed) {
                        let g = s.acquire(3 * PART);
                        let t = Instant::now();
                        thread::sleep(hold);
                        held += t.elapsed();
                        holds += 1;
                        s.release(g);
                    }
                    (held, holds)
                })
            })
            .collect();
        thread::sleep(hold * 20);
        let t0 = Instant::now();
        let big = s.acquire_until(9 * PART, t0 + timeout);
        let waited = t0.elapsed();
        if let Some(g) = big {
            s.release(g);
        }
        stop.store(true, Ordering::Relaxed);
        for t in streamers {
            let (h, n) = t.join().expect("a streamer panicked");
            held += h;
            holds += n;
        }
        grants.push(big.map(|_| waited));
        if big.is_none() {
            break;
        }
    }
    Starvation { hold: held / holds.max(1), grants }
}

/// Heap bytes an implementation needs.
pub struct Memory {
    /// For one empty pool: its heap plus its inline struct.
    pub per_pool: f64,
    /// For each outstanding lease, amortised over `leases`.
    pub per_lease: f64,
    /// For each thread waiting in line, amortised over `waiters` (`None` for
    /// an implementation that cannot make a thread wait).
    pub per_waiter: Option<f64>,
}

/// Scenario 6: Heap retained by a new pool, by `leases` outstanding leases, and by
/// `waiters` threads waiting in line.
pub fn memory<S: Subject>(leases: usize, waiters: usize) -> Result<Memory, String> {
    let (pool, heap_bytes) = heap::retained_by(|| S::new(UNIT));
    let per_pool = (heap_bytes as usize + std::mem::size_of::<S>()) as f64;

    let mut held = Vec::with_capacity(leases);
    let ((), lease_bytes) = heap::retained_by(|| {
        for _ in 0..leases {
            held.push(pool.acquire(1));
        }
    });
    for g in held {
        pool.release(g);
    }
    let per_lease = lease_bytes as f64 / leases as f64;
    if !S::BLOCKS {
        return Ok(Memory { per_pool, per_lease, per_waiter: None });
    }

    // Two rounds on the same threads: the first parks them once, so that
    // per-thread set-up (thread-locals, the lock library's tables) and the
    // capacity the pool keeps from earlier waits are not counted; the second,
    // identical, is measured.
    let s = Arc::new(S::new(UNIT));
    let go = Arc::new(Barrier::new(waiters + 1));
    let done = Arc::new(Barrier::new(waiters + 1));
    let threads: Vec<_> = (0..waiters)
        .map(|_| {
            let (s, go, done) = (Arc::clone(&s), Arc::clone(&go), Arc::clone(&done));
            thread::spawn(move || {
                for _ in 0..2 {
                    go.wait();
                    let g = s.acquire(UNIT);
                    s.release(g);
                    done.wait();
                }
            })
        })
        .collect();
    let mut waiter_bytes = 0;
    let mut parked = true;
    for round in 0..2 {
        let holder = s.acquire(UNIT);
        let (all_parked, bytes) = heap::retained_by(|| {
            go.wait();
            wait_until(Duration::from_secs(20), || s.waiters() == waiters as u64)
        });
        s.release(holder);
        done.wait();
        parked &= all_parked;
        if round == 1 {
            waiter_bytes = bytes;
        }
    }
    for t in threads {
        t.join().map_err(|_| format!("{}: a waiter panicked", S::NAME))?;
    }
    if !parked {
        return Err(format!("{}: the waiters did not all park within 20 s", S::NAME));
    }
    Ok(Memory { per_pool, per_lease, per_waiter: Some(waiter_bytes as f64 / waiters as f64) })
}
