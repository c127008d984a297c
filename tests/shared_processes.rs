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

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mmpool::pool::shared::{self, OpenFlags};
use mmpool::pool::sync::Arc;
use mmpool::{Error, Pool, Wait};

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

const ROLE: &str = "MMPOOL_TEST_ROLE";
const CREATE: OpenFlags = OpenFlags { create: true, exclusive: false, group: false };
/// The bound no survivor may wait past after a kill.
const RECLAIM_BOUND: Duration = Duration::from_secs(1);

fn rounds() -> usize {
    std::env::var("MMPOOL_SHARED_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// A pool name unique to this process and test; the file is removed on drop.
struct Name(String);

impl Name {
    fn new(test: &str) -> Name {
        let name = format!("proc-{}-{test}", std::process::id());
        let _ = shared::unlink(&name);
        Name(name)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shared::unlink(&self.0);
    }
}

// ---- helper processes --------------------------------------------------------

/// A helper process running `role` with `args`; killed on drop if still running.
struct Helper {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn(role: &str, args: &[&str], env: &[(&str, &str)]) -> Helper {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "helper", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, format!("{role} {}", args.join(" ")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Helpers log only errors; the expected ones are in the reports.
            .env("MMPOOL_LOG", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn helper");
        let out = BufReader::new(child.stdout.take().unwrap());
        Helper { child, out }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// The next line the helper reports (lines it prints start with "@@").
    fn report(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line).unwrap() == 0 {
                panic!("helper {} ended without reporting", self.pid());
            }
            if let Some(rest) = line.trim_end().strip_prefix("@@") {
                return rest.to_string();
            }
        }
    }

    fn kill(&mut self) -> Instant {
        // SAFETY: kill(2) of our own child, which has not been reaped.
        let at = Instant::now();
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGKILL) }, 0);
        let _ = self.child.wait();
        at
    }

    /// Waits until the helper stops itself (SIGSTOP).
    fn wait_stopped(&self) {
        let mut status = 0;
        // SAFETY: waitpid(2) of our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid(), &mut status, libc::WUNTRACED) };
        assert_eq!(rc, self.pid());
        assert!(libc::WIFSTOPPED(status), "helper did not stop: status {status:#x}");
    }

    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        self.child.wait().unwrap()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn say(line: &str) {
    println!("@@{line}");
    std::io::stdout().flush().unwrap();
}

/// Blocks until the parent closes stdin (or kills this process).
fn park() {
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
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
        other => panic!("unknown role {other}"),
    }
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

/// Drops this test process's log lines: each recovery below logs a warning.
fn quiet() {
    mmpool::log::set_sink(Some(Box::new(|_, _| {})));
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
    quiet();
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
