//! The shared pool with real processes: this test binary runs itself again as
//! helper processes (the ignored test `helper`, told its role through the
//! environment), which attach to the pool, hold, wait, stop inside the lock,
//! and get killed with SIGKILL.
//!
//! The crash rounds run `MMPOOL_SHARED_ROUNDS` times each (default 200; set
//! more for a long run, e.g. `MMPOOL_SHARED_ROUNDS=5000 cargo test --release
//! --test shared_processes`). After every round every byte is accounted for
//! (`available + bytes held by live leases == total`, nobody waiting), and
//! the survivor's wait, measured from the kill, is below one second: a bound
//! on how long a dead process can keep bytes from the living.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use mmpool::pool::shared::{self, OpenFlags};
use mmpool::pool::sync::Arc;
use mmpool::{Error, Pool, Wait};

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

#[path = "support/processes.rs"]
mod processes;
use processes::{park, say, Helper, Name, ROLE};

const CREATE: OpenFlags = OpenFlags { create: true, exclusive: false, group: false };
/// The bound no survivor may wait past after a kill.
const RECLAIM_BOUND: Duration = Duration::from_secs(1);

fn rounds() -> usize {
    std::env::var("MMPOOL_SHARED_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn attach(name: &str) -> Arc<Pool> {
    Pool::open_shared(name, 0, OpenFlags::default()).expect("attach")
}

/// The body of every helper process; a no-op when run as a plain test.
#[test]
#[ignore = "run by the other tests as a helper process"]
fn helper() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let args: Vec<&str> = role.split(' ').collect();
    let n = |i: usize| args[i].parse::<u64>().unwrap();
    match args[0] {
        // Acquire and hold until killed.
        "hold" => {
            let pool = attach(args[1]);
            let _lease = pool.acquire(n(2), Wait::Forever).unwrap();
            say("held");
            park();
        }
        // Acquire, tell the lease's id, and hold until killed.
        "hold-id" => {
            let pool = attach(args[1]);
            let lease = pool.acquire(n(2), Wait::Forever).unwrap();
            say(&format!("held {}", lease.id));
            park();
        }
        // Join the line and wait until granted (or killed).
        "wait" => {
            let pool = attach(args[1]);
            say("attached");
            let lease = pool.acquire(n(2), Wait::Forever).unwrap();
            say("granted");
            pool.release(lease.id).unwrap();
        }
        // Stop (SIGSTOP) inside the pool's lock, half-way through a grant.
        "stop-in-lock" => {
            let pool = attach(args[1]);
            pool.shared_backend().unwrap().debug_stop_inside_lock(n(2)).unwrap();
        }
        // Wait for a grant, append our index to the log, then release at
        // once ("now") or when the parent closes stdin ("later").
        "fifo" => {
            let pool = attach(args[1]);
            say("attached");
            let lease = pool.acquire(n(2), Wait::Forever).unwrap();
            let mut log = std::fs::OpenOptions::new().append(true).open(args[4]).unwrap();
            // One write(2) per line: appends of concurrent helpers never interleave.
            log.write_all(format!("{}\n", args[3]).as_bytes()).unwrap();
            drop(log);
            if args[5] == "later" {
                park();
            }
            pool.release(lease.id).unwrap();
        }
        // The global pool from the environment.
        "env" => {
            let Some(pool) = mmpool::pool::global() else {
                say("global none");
                return;
            };
            let lease = pool.acquire(n(1), Wait::Forever).unwrap();
            say(&format!("global shared={} total={} available={}", pool.is_shared(), pool.total_bytes(), pool.available_bytes()));
            park();
            pool.release(lease.id).unwrap();
        }
        // Hold a lease, fork; the child must be a process of its own.
        "fork" => fork_role(args[1]),
        // Attach to corrupted segments `first..first+count` and use what opens.
        "attach-corrupt" => {
            for k in n(2)..n(2) + n(3) {
                let name = format!("{}-{k}", args[1]);
                let outcome = match Pool::open_shared(&name, 0, OpenFlags::default()) {
                    Ok(pool) => exercise(&pool),
                    Err(e) => format!("refused: {e}"),
                };
                assert!(!outcome.is_empty());
                say(&format!("{k} {}", outcome.replace('\n', " ")));
            }
        }
        // Attach, then hold a lease ("hold"), wait in line ("wait") or stop
        // inside the lock ("inlock") while the parent damages the file; then
        // report what each call answers. Must end normally.
        "damaged" => {
            let pool = attach(args[1]);
            let outcome = match args[3] {
                "hold" => {
                    let lease = pool.acquire(n(2), Wait::Forever).unwrap();
                    say(&format!("held {}", lease.id));
                    next_line();
                    let released = pool.release(lease.id);
                    format!("release={}", kind(&released))
                }
                "wait" => {
                    say("attached");
                    format!("wait={}", kind(&pool.acquire(n(2), Wait::Forever)))
                }
                _ => format!("inlock={}", kind(&pool.shared_backend().unwrap().debug_stop_inside_lock(n(2)))),
            };
            say(&format!("{outcome} {}", after_damage(&pool)));
        }
        // Hold a lease and tell the process slot; park until told, then make
        // one call (which heals a lock word that names this process).
        "idle" => {
            let pool = attach(args[1]);
            let _lease = pool.acquire(1, Wait::Forever).unwrap();
            let me = pool.shared_snapshot().unwrap().unwrap().procs.into_iter().find(|p| p.is_self).unwrap();
            say(&format!("slot {}", me.slot));
            park();
        }
        // A creator that took its temporary file's INIT_LOCK and builds forever.
        "tmp-creator" => {
            let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(args[1]).unwrap();
            lock_byte(&f, shared::SharedPool::debug_init_lock_offset());
            say("building");
            park();
        }
        other => panic!("unknown role {other}"),
    }
}

/// One line from the parent (or its end).
fn next_line() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// A call's answer in a word, and the message of a system error.
fn kind<T>(r: &Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Error::System(m)) if m.contains("was truncated") => "damaged".into(),
        Err(Error::System(m)) => format!("system({m})"),
        Err(Error::Timeout { .. }) => "timeout".into(),
        Err(e) => format!("other({e})"),
    }
}

/// What every kind of call answers on a damaged pool.
fn after_damage(pool: &Arc<Pool>) -> String {
    let stats = pool.stats();
    let acquire = pool.acquire(1, Wait::timeout_ns(100_000_000));
    let tried = pool.try_acquire(1);
    let ticket = pool.enqueue(1);
    let release = pool.release(u64::MAX);
    let snap = pool.shared_snapshot().unwrap();
    format!(
        "acquire={} try={} enqueue={} release={} snapshot={} total={} damaged={}",
        kind(&acquire),
        kind(&tried),
        kind(&ticket),
        kind(&release),
        kind(&snap),
        stats.total_bytes,
        pool.shared_backend().unwrap().is_damaged()
    )
}

/// Takes an OFD write lock on byte `offset` of `f` (as the library does).
fn lock_byte(f: &std::fs::File, offset: i64) {
    // SAFETY: flock is a plain C struct; all-zero is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset;
    fl.l_len = 1;
    // SAFETY: F_OFD_SETLK with a valid flock on an open descriptor.
    assert_eq!(unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(f), libc::F_OFD_SETLK, &mut fl) }, 0);
}

/// Uses a pool that opened from a corrupted segment; it must behave as a pool.
fn exercise(pool: &Arc<Pool>) -> String {
    let total = pool.total_bytes();
    let first = pool.try_acquire(1);
    let second = pool.acquire(1, Wait::timeout_ns(1_000_000));
    for lease in [&first, &second].into_iter().flatten() {
        pool.release(lease.id).unwrap();
    }
    let stats = pool.stats();
    let snap = pool.shared_snapshot().unwrap();
    format!("opened total={total} first={} second={} waiters={} snapshot={}", first.is_ok(), second.is_ok(), stats.waiters, snap.is_ok())
}

fn fork_role(name: &str) {
    let pool = attach(name);
    let lease = pool.acquire(1, Wait::Forever).unwrap();
    // SAFETY: fork(2); the child only uses this library and then _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match (pool.release(lease.id), pool.acquire(2, Wait::Forever)) {
            (Err(Error::InvalidLease(_)), Ok(mine)) => {
                let snap = pool.shared_snapshot().unwrap().unwrap();
                let two = snap.procs.iter().filter(|p| !p.is_self).count() >= 1
                    && snap.procs.iter().any(|p| p.is_self && p.bytes_held == 2);
                pool.release(mine.id).unwrap();
                if two { 0 } else { 3 }
            }
            _ => 2,
        };
        // SAFETY: ends the forked child without running the parent's atexit work.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waitpid(2) of the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "forked child status {status:#x}");
    assert_eq!(pool.lease(lease.id).map(|l| l.nbytes), Some(1), "the parent's lease survived the child");
    pool.release(lease.id).unwrap();
    say(&format!("fork ok available={}", pool.available_bytes()));
}

// ---- checks ------------------------------------------------------------------

/// The log sink is one per process: a test that sets it holds this while it runs.
static LOG: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Drops this test process's log lines (each recovery below logs a warning)
/// while the guard lives.
fn quiet() -> parking_lot::MutexGuard<'static, ()> {
    let guard = LOG.lock();
    mmpool::log::set_sink(Some(Box::new(|_, _| {})));
    guard
}

type Lines = Arc<parking_lot::Mutex<Vec<String>>>;

/// Collects this test process's log lines while the guard lives.
fn capture_log() -> (parking_lot::MutexGuard<'static, ()>, Lines) {
    let guard = LOG.lock();
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    mmpool::log::set_sink(Some(Box::new(move |_, m| sink.lock().push(m.to_string()))));
    (guard, lines)
}

/// How many collected lines contain `text`.
fn said(lines: &Lines, text: &str) -> usize {
    lines.lock().iter().filter(|m| m.contains(text)).count()
}

fn assert_whole(pool: &Pool, round: usize) {
    let s = pool.stats();
    assert_eq!(s.waiters, 0, "round {round}: {s:?}");
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes(), "round {round}: {s:?}");
}

/// Polls `cond` until it holds (a precondition of the next step, not a timing claim).
fn until(what: &str, cond: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < give_up, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Starts a waiter thread in this process; it returns when it was granted.
fn waiter(pool: &Arc<Pool>, nbytes: u64) -> std::thread::JoinHandle<(mmpool::Lease, Instant)> {
    let p = Arc::clone(pool);
    std::thread::spawn(move || {
        let lease = p.acquire(nbytes, Wait::Forever).unwrap();
        (lease, Instant::now())
    })
}

/// Collects the waiter's grant after a kill: the wait from the kill must stay
/// under the reclaim bound, and once the lease is back every byte is whole.
/// Returns that wait.
fn granted_after_kill(
    pool: &Arc<Pool>,
    w: std::thread::JoinHandle<(mmpool::Lease, Instant)>,
    killed: Instant,
    round: usize,
) -> Duration {
    let (lease, granted) = w.join().unwrap();
    let waited = granted - killed;
    assert!(waited < RECLAIM_BOUND, "round {round}: waited {waited:?} after the kill");
    pool.release(lease.id).unwrap();
    assert_whole(pool, round);
    waited
}

fn report_waits(what: &str, waits: &mut [Duration]) {
    waits.sort();
    let n = waits.len();
    println!(
        "{what}: {n} rounds, wait from kill to grant: median {:?}, max {:?}",
        waits[n / 2],
        waits[n - 1]
    );
}

#[test]
fn kill_9_of_a_holder_gives_its_bytes_to_the_waiter() {
    let name = Name::new("holder");
    let pool = Pool::open_shared(&name.0, 1000, CREATE).unwrap();
    let mut waits = Vec::new();
    for round in 0..rounds() {
        let mut holder = Helper::spawn("hold", &[&name.0, "1000"], &[]);
        assert_eq!(holder.report(), "held");
        let w = waiter(&pool, 1000);
        until("the waiter is in line", || pool.stats().waiters == 1);
        let killed = holder.kill();
        waits.push(granted_after_kill(&pool, w, killed, round));
    }
    report_waits("holder killed", &mut waits);
}

#[test]
fn a_lease_of_another_process_cannot_be_released_here() {
    let name = Name::new("foreign");
    let pool = Pool::open_shared(&name.0, 100, CREATE).unwrap();
    let mut holder = Helper::spawn("hold-id", &[&name.0, "60"], &[]);
    let report = holder.report();
    let id: u64 = report.strip_prefix("held ").expect("held <id>").parse().unwrap();
    let err = pool.release(id).unwrap_err();
    assert!(matches!(&err, Error::InvalidLease(t) if t.contains("another process")), "{err:?}");
    assert!(matches!(pool.resize_lease(id, 1, Wait::Forever), Err(Error::InvalidLease(_))));
    assert_eq!(pool.available_bytes(), 40, "the refused calls changed nothing");
    holder.kill();
    // Once its owner is gone, the lease's bytes come back to the living.
    let lease = pool.acquire(100, Wait::timeout_ns(5_000_000_000)).unwrap();
    pool.release(lease.id).unwrap();
    assert_whole(&pool, 0);
}

#[test]
fn kill_9_of_the_head_waiter_lets_the_next_one_through() {
    let name = Name::new("head");
    let pool = Pool::open_shared(&name.0, 1000, CREATE).unwrap();
    let mut waits = Vec::new();
    for round in 0..rounds() {
        let held = pool.acquire(1000, Wait::Forever).unwrap();
        let mut head = Helper::spawn("wait", &[&name.0, "600"], &[]);
        assert_eq!(head.report(), "attached");
        until("the helper heads the line", || pool.stats().waiters == 1);
        let w = waiter(&pool, 1000);
        until("the second waiter is in line", || pool.stats().waiters == 2);
        let killed = head.kill();
        pool.release(held.id).unwrap();
        waits.push(granted_after_kill(&pool, w, killed, round));
    }
    report_waits("head waiter killed", &mut waits);
}

#[test]
fn kill_9_of_a_process_stopped_inside_the_lock() {
    let _log = quiet();
    let name = Name::new("inlock");
    let pool = Pool::open_shared(&name.0, 1000, CREATE).unwrap();
    let backend = pool.shared_backend().unwrap();
    let mut waits = Vec::new();
    for round in 0..rounds() {
        let mut stopped = Helper::spawn("stop-in-lock", &[&name.0, "300"], &[]);
        stopped.wait_stopped();
        // It took 300 bytes without recording them, then stopped holding the lock.
        let w = waiter(&pool, 1000);
        until("the waiter sleeps on the lock", || backend.debug_lock_contended());
        let killed = stopped.kill();
        waits.push(granted_after_kill(&pool, w, killed, round));
        assert_eq!(pool.available_bytes(), 1000, "round {round}: the half-made grant was undone");
    }
    let snap = pool.shared_snapshot().unwrap().unwrap();
    assert!(snap.lock_recoveries >= rounds() as u64, "{snap:?}");
    report_waits("killed inside the lock", &mut waits);
}

#[test]
fn grants_follow_arrival_across_processes() {
    let name = Name::new("fifo");
    let pool = Pool::open_shared(&name.0, 10, CREATE).unwrap();
    let log = std::env::temp_dir().join(format!("mmpool-fifo-{}.log", std::process::id()));
    std::fs::write(&log, "").unwrap();
    let log_path = log.to_str().unwrap().to_string();
    let held = pool.acquire(8, Wait::Forever).unwrap();
    // 2 bytes are free. Each later request would fit in them, but must wait
    // behind the 5-byte one that came first, and behind each other.
    let sizes = ["5", "1", "2", "1", "6"];
    let mut helpers = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let index = i.to_string();
        let mut h = Helper::spawn("fifo", &[&name.0, size, &index, &log_path, "later"], &[]);
        assert_eq!(h.report(), "attached");
        // A helper that jumped the line would never show up as waiting.
        until("the helper is in line", || pool.stats().waiters == i as u64 + 1);
        helpers.push(h);
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "", "nobody jumped the line");
    let lines = || std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect::<Vec<_>>();
    // The release grants 5, 1, 2 and 1 (9 of 10); 6 must wait for them.
    pool.release(held.id).unwrap();
    until("four grants", || lines().len() == 4);
    let mut first = lines();
    first.sort();
    assert_eq!(first, ["0", "1", "2", "3"]);
    assert_eq!(pool.stats().waiters, 1, "the 6-byte request still waits");
    let mut helpers = helpers.into_iter();
    assert!(helpers.next().unwrap().finish().success()); // 5 bytes back: 6 fit
    until("the fifth grant", || lines().len() == 5);
    assert_eq!(lines()[4], "4");
    for h in helpers {
        assert!(h.finish().success());
    }
    let _ = std::fs::remove_file(&log);
    assert_eq!(pool.stats().waited_grants, 5);
    assert_whole(&pool, 0);
}

#[test]
fn grants_are_made_in_order_of_arrival_one_at_a_time() {
    let name = Name::new("order");
    let pool = Pool::open_shared(&name.0, 4, CREATE).unwrap();
    let log = std::env::temp_dir().join(format!("mmpool-order-{}.log", std::process::id()));
    std::fs::write(&log, "").unwrap();
    let log_path = log.to_str().unwrap().to_string();
    let held = pool.acquire(4, Wait::Forever).unwrap();
    // Each wants the whole pool, so they are granted strictly one after
    // another, and the log shows the order of the grants.
    let mut helpers = Vec::new();
    for i in 0..6 {
        let index = i.to_string();
        let size = if i % 2 == 0 { "4" } else { "3" };
        let mut h = Helper::spawn("fifo", &[&name.0, size, &index, &log_path, "now"], &[]);
        assert_eq!(h.report(), "attached");
        until("the helper is in line", || pool.stats().waiters == i + 1);
        helpers.push(h);
    }
    pool.release(held.id).unwrap();
    for h in helpers {
        assert!(h.finish().success());
    }
    let order = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(order, "0\n1\n2\n3\n4\n5\n");
    assert_whole(&pool, 0);
}

#[test]
fn a_forked_child_attaches_as_a_process_of_its_own() {
    let name = Name::new("fork");
    let pool = Pool::open_shared(&name.0, 100, CREATE).unwrap();
    let mut h = Helper::spawn("fork", &[&name.0], &[]);
    assert_eq!(h.report(), "fork ok available=100");
    assert!(h.finish().success());
    assert_whole(&pool, 0);
    assert_eq!(pool.shared_snapshot().unwrap().unwrap().procs.len(), 1);
}

#[test]
fn the_environment_attaches_the_global_pool() {
    let name = Name::new("env");
    let pool = Pool::open_shared(&name.0, 4096, CREATE).unwrap();
    let env = [("MMPOOL_SHARED_NAME", name.0.as_str()), ("MMPOOL_SHARED_TOTAL_BYTES", "4096")];
    let mut a = Helper::spawn("env", &["1000"], &env);
    assert_eq!(a.report(), "global shared=true total=4096 available=3096");
    let gib = [("MMPOOL_SHARED_NAME", name.0.as_str())];
    let mut b = Helper::spawn("env", &["96"], &gib);
    assert_eq!(b.report(), "global shared=true total=4096 available=3000");
    assert_eq!(pool.available_bytes(), 3000);
    let snap = pool.shared_snapshot().unwrap().unwrap();
    let mut held: Vec<u64> = snap.procs.iter().map(|p| p.bytes_held).collect();
    held.sort();
    assert_eq!(held, [0, 96, 1000]);
    assert!(a.finish().success() && b.finish().success());
    assert_whole(&pool, 0);
    // A different total is refused: the helper's global pool stays disabled.
    let wrong = [("MMPOOL_SHARED_NAME", name.0.as_str()), ("MMPOOL_SHARED_TOTAL_BYTES", "5000")];
    let mut c = Helper::spawn("env", &["1"], &wrong);
    assert_eq!(c.report(), "global none", "a global pool with another total must not attach");
}

// ---- corrupted segments --------------------------------------------------------

/// A mutated copy of `valid`: flipped bytes (mostly in the header and the
/// first tables), extreme words, or a truncation.
fn mutate(valid: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    match rng.index(5) {
        0 => bytes.truncate(rng.index(valid.len())),
        1 => {
            for _ in 0..1 + rng.index(8) {
                let i = rng.index(512);
                bytes[i] ^= 1 << rng.index(8);
            }
        }
        2 => {
            for _ in 0..1 + rng.index(4) {
                let i = rng.index(512 / 8) * 8;
                let word: u64 = [0, u64::MAX, 1 << 63, 1 << 60, rng.next(), 0xff][rng.index(6)];
                bytes[i..i + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
        3 => {
            // Tables: processes, entries, the line.
            for _ in 0..1 + rng.index(64) {
                let i = 512 + rng.index(valid.len() - 512);
                bytes[i] = rng.next() as u8;
            }
        }
        _ => {
            for _ in 0..1 + rng.index(16) {
                let i = rng.index(valid.len());
                bytes[i] = rng.next() as u8;
            }
        }
    }
    bytes
}

#[test]
fn corrupted_segments_are_refused_or_usable_never_a_crash() {
    let cases: usize = std::env::var("MMPOOL_SHARED_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let name = Name::new("fuzz");
    let valid = {
        // A segment with history: leases, a waiter, counters.
        let pool = Pool::open_shared(&name.0, 1 << 20, CREATE).unwrap();
        let a = pool.acquire(1000, Wait::Forever).unwrap();
        let _b = pool.acquire(5000, Wait::Forever).unwrap();
        let _t = pool.enqueue(1 << 20).unwrap();
        pool.release(a.id).unwrap();
        let bytes = std::fs::read(shared::path_of(&name.0)).unwrap();
        drop(pool);
        bytes
    };
    let prefix = format!("{}-case", name.0);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (mut opened, mut refused) = (0, 0);
    // In batches, so that /dev/shm (64 MiB in a default container) never
    // holds more than a few megabytes of cases at once.
    const BATCH: usize = 16;
    for first in (0..cases).step_by(BATCH) {
        let count = BATCH.min(cases - first);
        let mut names = Vec::new();
        for k in first..first + count {
            let case = Name(format!("{prefix}-{k}"));
            let path = shared::path_of(&case.0);
            std::fs::write(&path, mutate(&valid, &mut rng)).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            names.push(case);
        }
        let mut h = Helper::spawn("attach-corrupt", &[&prefix, &first.to_string(), &count.to_string()], &[]);
        for k in first..first + count {
            let line = h.report();
            let (index, outcome) = line.split_once(' ').unwrap();
            assert_eq!(index, k.to_string());
            if outcome.starts_with("opened") {
                opened += 1;
            } else {
                assert!(outcome.starts_with("refused: "), "{outcome}");
                refused += 1;
            }
        }
        let status = h.finish();
        assert!(status.success(), "the process attaching cases {first}.. failed: {status:?}");
    }
    println!("corrupted segments: {cases} cases, {opened} opened and usable, {refused} refused with an error");
    assert!(refused > 0 && opened > 0, "the mutations should produce both outcomes");
}

// ---- a damaged file under attached processes -------------------------------------

fn path(name: &Name) -> String {
    shared::path_of(&name.0)
}

fn truncate(name: &Name, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path(name)).unwrap().set_len(len).unwrap();
}

/// Every call of a helper after the damage says so; the helper lived to tell.
fn assert_told_damage(line: &str, first: &str) {
    assert!(line.starts_with(first), "{line}");
    for call in ["acquire", "try", "enqueue", "release", "snapshot"] {
        assert!(line.contains(&format!("{call}=damaged")), "{call}: {line}");
    }
    assert!(line.ends_with("total=0 damaged=true"), "{line}");
}

#[test]
fn a_truncated_segment_kills_no_attached_process() {
    let _log = quiet();
    for cut in ["empty", "one page", "half"] {
        let name = Name::new("cut");
        let pool = Pool::open_shared(&name.0, 1000, CREATE).unwrap();
        let backend = pool.shared_backend().unwrap();
        let size = std::fs::metadata(path(&name)).unwrap().len();
        let len = match cut {
            "empty" => 0,
            "one page" => 4096,
            _ => size / 2,
        };
        // One process holds a lease, one waits in line behind it, one sits
        // inside the lock (stopped), and a thread of this one waits for the lock.
        let mut holder = Helper::spawn("damaged", &[&name.0, "600", "hold"], &[]);
        assert!(holder.report().starts_with("held "));
        let mut waiter = Helper::spawn("damaged", &[&name.0, "600", "wait"], &[]);
        assert_eq!(waiter.report(), "attached");
        until("the helper waits in line", || pool.stats().waiters == 1);
        let inlock = Helper::spawn("damaged", &[&name.0, "100", "inlock"], &[]);
        inlock.wait_stopped();
        let p = Arc::clone(&pool);
        let mine = std::thread::spawn(move || p.acquire(1, Wait::timeout_ns(30_000_000_000)));
        until("this process's thread sleeps on the lock", || backend.debug_lock_contended());

        truncate(&name, len);
        inlock.signal(libc::SIGCONT);
        holder.tell();

        let mut inlock = inlock;
        assert_told_damage(&inlock.report(), "inlock=");
        assert_told_damage(&holder.report(), "release=damaged");
        assert_told_damage(&waiter.report(), "wait=damaged");
        for (who, h) in [("holder", holder), ("waiter", waiter), ("inlock", inlock)] {
            let status = h.finish();
            assert!(status.success(), "{cut}: the {who} ended with {status:?}");
        }
        let mine = mine.join().unwrap();
        assert!(matches!(&mine, Err(Error::System(m)) if m.contains("was truncated") && m.contains("mmpool unlink")), "{cut}: {mine:?}");
        assert!(backend.is_damaged());
        assert!(matches!(pool.release(u64::MAX), Err(Error::System(_))), "releases report it");
        assert!(matches!(pool.checked_stats(), Err(Error::System(m)) if m.contains("was truncated")), "{cut}: stats report it");
        drop(pool);
        // The name can be removed and a new pool made under it.
        shared::unlink(&name.0).unwrap();
        let fresh = Pool::open_shared(&name.0, 1000, CREATE).unwrap();
        let lease = fresh.acquire(1000, Wait::Forever).unwrap();
        fresh.release(lease.id).unwrap();
        println!("truncated to {cut} ({len} of {size} bytes): every process lived and was told");
    }
}

#[test]
fn a_file_replaced_under_attached_processes_kills_none() {
    let (_log, logged) = capture_log();
    // Rewritten in place (`cp other file`: O_TRUNC, then new bytes), and
    // replaced by another file (rename over the name).
    let name = Name::new("replace");
    let other = Name::new("replace-other");
    let pool = Pool::open_shared(&name.0, 1000, CREATE).unwrap();
    let lease = pool.acquire(10, Wait::Forever).unwrap();
    {
        let _o = Pool::open_shared(&other.0, 77, CREATE).unwrap();
    }
    let mut holder = Helper::spawn("damaged", &[&name.0, "5", "hold"], &[]);
    assert!(holder.report().starts_with("held "));
    let bytes = std::fs::read(path(&other)).unwrap();
    {
        let f = std::fs::OpenOptions::new().write(true).truncate(true).open(path(&name)).unwrap();
        f.write_all_at(&bytes, 0).unwrap();
    }
    holder.tell();
    let told = holder.report();
    assert!(holder.finish().success(), "{told}");
    // Whatever this process reads now (the other pool's bytes, or zeros if
    // it touched the file while it was empty), it answers with a status.
    let answers = after_damage(&pool);
    assert!(!answers.contains("other(internal"), "{answers}");
    let _ = pool.release(lease.id);
    drop(pool);

    // Replaced by another file: the attached process keeps its whole pool.
    let name = Name::new("rename");
    let pool = Pool::open_shared(&name.0, 1000, CREATE).unwrap();
    let lease = pool.acquire(10, Wait::Forever).unwrap();
    logged.lock().clear();
    std::fs::rename(path(&other), path(&name)).unwrap();
    for _ in 0..2 {
        let _ = pool.stats();
    }
    assert!(!pool.shared_backend().unwrap().is_damaged());
    pool.release(lease.id).unwrap();
    assert_eq!(pool.available_bytes(), 1000, "its own segment, not the file now under the name");
    assert_eq!(said(&logged, "removed or replaced"), 1, "the log says it once: {:?}", logged.lock());
    let now = Pool::open_shared(&name.0, 0, OpenFlags::default()).unwrap();
    assert_eq!(now.total_bytes(), 77, "the name opens the file now under it");
}

// ---- a corrupt lock word -----------------------------------------------------------

/// Writes the pool's lock word in its file, as a stray write would.
fn write_lock_word(name: &Name, word: u32) {
    let f = std::fs::OpenOptions::new().write(true).open(path(name)).unwrap();
    f.write_all_at(&word.to_le_bytes(), shared::SharedPool::debug_lock_word_offset()).unwrap();
}

/// A word naming slot `slot` as holder (sequence 1, nobody sleeping on it).
fn word_naming(slot: usize) -> u32 {
    (slot as u32 + 1) | 1 << 8
}

fn my_slot(pool: &Pool) -> usize {
    pool.shared_snapshot().unwrap().unwrap().procs.into_iter().find(|p| p.is_self).unwrap().slot
}

#[test]
fn a_lock_word_naming_no_live_holder_is_taken_over_timed_or_not() {
    let name = Name::new("word");
    let pool = Pool::open_shared(&name.0, 100, CREATE).unwrap();
    let (_log, logged) = capture_log();
    let me = my_slot(&pool);
    // This process itself (it does not hold the lock), a slot with no
    // process, and garbage past the table; each with a timed and an untimed call.
    let words = [word_naming(me), word_naming(77), 0xfe | 5 << 8, 0x7fff_ffff];
    let before = pool.shared_snapshot().unwrap().unwrap().lock_recoveries;
    for (k, word) in words.into_iter().enumerate() {
        for timed in [true, false] {
            write_lock_word(&name, word);
            let wait = if timed { Wait::timeout_ns(5_000_000_000) } else { Wait::Forever };
            let lease = pool.acquire(10, wait).unwrap_or_else(|e| panic!("word {word:#x}, timed {timed}: {e}"));
            pool.release(lease.id).unwrap();
            assert_whole(&pool, k);
        }
    }
    let after = pool.shared_snapshot().unwrap().unwrap().lock_recoveries;
    assert_eq!(after - before, 2 * words.len() as u64, "each word was taken over once");
    assert_eq!(said(&logged, "named this process, which did not hold it"), 2, "{:?}", logged.lock());
}

#[test]
fn a_lock_word_naming_a_live_idle_process_times_out_timed_calls_and_shows_the_holder() {
    let name = Name::new("stuck");
    let pool = Pool::open_shared(&name.0, 100, CREATE).unwrap();
    let (_log, logged) = capture_log();
    let mut idle = Helper::spawn("idle", &[&name.0], &[]);
    let slot: usize = idle.report().strip_prefix("slot ").unwrap().parse().unwrap();
    // A request waits in line (the bytes are held) when the word goes bad.
    let big = pool.acquire(99, Wait::Forever).unwrap();
    let p = Arc::clone(&pool);
    let in_line = std::thread::spawn(move || p.acquire(1, Wait::timeout_ns(300_000_000)));
    until("a request waits in line", || pool.stats().waiters == 1);
    write_lock_word(&name, word_naming(slot));
    // Its wait runs out while the lock cannot be taken: it returns, and its
    // ticket leaves the line the next time this process holds the lock.
    assert!(matches!(in_line.join().unwrap(), Err(Error::Timeout { requested: 1 })));

    // Timed calls return at their deadline.
    for timeout_ms in [0u64, 200] {
        let started = Instant::now();
        let r = pool.acquire(1, Wait::timeout_ns(timeout_ms * 1_000_000));
        let took = started.elapsed();
        assert!(matches!(r, Err(Error::Timeout { requested: 1 })), "{r:?}");
        assert!(took >= Duration::from_millis(timeout_ms), "returned before its deadline: {took:?}");
    }
    assert!(matches!(pool.try_acquire(1), Err(Error::Timeout { .. })));
    // The two-phase form that Python's acquire uses returns with a place at
    // once, and its timed waits return at their deadline.
    let deferred = match pool.acquire_or_enqueue(1).unwrap() {
        mmpool::pool::Admission::Queued(t) => t,
        granted => panic!("granted while the lock is taken: {granted:?}"),
    };
    let started = Instant::now();
    assert!(matches!(pool.wait_ticket(deferred, Wait::timeout_ns(100_000_000)), Err(Error::Timeout { requested: 1 })));
    assert!(started.elapsed() >= Duration::from_millis(100));
    // An untimed call waits for the live holder...
    let p = Arc::clone(&pool);
    let untimed = std::thread::spawn(move || {
        let lease = p.acquire(1, Wait::Forever);
        (lease, Instant::now())
    });
    // ...and the holder is visible: its pid, for how long, said once in the log.
    until("the holder is reported", || said(&logged, "has been held for") > 0);
    assert_eq!(said(&logged, &format!("by pid {} (slot {slot})", idle.pid())), 1, "{:?}", logged.lock());
    let snap = pool.shared_snapshot().unwrap().unwrap();
    let holder = snap.lock_holder.expect("the snapshot could not take the lock");
    assert_eq!((holder.pid, holder.slot, holder.alive), (idle.pid() as u32, slot, true));
    assert!(holder.held_for >= mmpool::pool::shared::LOCK_HELD_REPORT, "{holder:?}");
    assert!(!untimed.is_finished(), "the untimed call must wait for a live holder");
    let killed = idle.kill();
    pool.release(big.id).unwrap();
    let (lease, returned) = untimed.join().unwrap();
    assert!(returned > killed, "it returned only once the holder was gone");
    pool.release(lease.unwrap().id).unwrap();
    // The deferred place joins the line once the lock is free, and is granted.
    let lease = pool.wait_ticket(deferred, Wait::timeout_ns(5_000_000_000)).unwrap();
    assert_eq!(lease.nbytes, 1);
    pool.release(lease.id).unwrap();
    assert!(matches!(pool.wait_ticket(deferred, Wait::timeout_ns(0)), Err(Error::InvalidLease(_))), "redeemed once");
    // The abandoned ticket holds nothing and waits no more.
    assert_whole(&pool, 0);
    assert_eq!(said(&logged, "has been held for"), 1, "said once: {:?}", logged.lock());
}

// ---- temporary files of creators that died ----------------------------------------

#[test]
fn temporary_files_of_dead_creators_are_removed_and_live_ones_kept() {
    let name = Name::new("litter");
    let tmp = |who: &str| format!("{}~{who}~1.tmp", path(&name));
    let (dead, live) = (tmp("dead"), tmp("live"));
    // A pool whose name looks like a temporary file of this one: never touched.
    let lookalike = Name(format!("{}.1.2.tmp", name.0));
    let _l = Pool::open_shared(&lookalike.0, 5, CREATE).unwrap();
    let mut killed = Helper::spawn("tmp-creator", &[&dead], &[]);
    assert_eq!(killed.report(), "building");
    let mut building = Helper::spawn("tmp-creator", &[&live], &[]);
    assert_eq!(building.report(), "building");
    killed.kill();
    // A later creator removes what the dead one left, not the live one's.
    let pool = Pool::open_shared(&name.0, 100, CREATE).unwrap();
    assert!(!std::path::Path::new(&dead).exists(), "the dead creator's file is gone");
    assert!(std::path::Path::new(&live).exists(), "a live creator's file is kept");
    drop(pool);
    shared::unlink(&name.0).unwrap();
    assert!(std::path::Path::new(&live).exists(), "unlink keeps a live creator's file too");
    building.kill();
    // `mmpool unlink` (this call) removes it once its creator is gone, even
    // with no pool under the name.
    shared::unlink(&name.0).unwrap();
    assert!(!std::path::Path::new(&live).exists());
    assert!(matches!(shared::unlink(&name.0), Err(Error::System(_))), "nothing left to remove");
    assert_eq!(Pool::open_shared(&lookalike.0, 0, OpenFlags::default()).unwrap().total_bytes(), 5);
}
