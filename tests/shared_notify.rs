//! Notifiers on shared pools: decisions made by this process or by another
//! one reach this process's notifier through its doorbell and relay thread;
//! a process killed with registered tickets gives its bytes and places back.
//! Real processes: this binary runs itself again as helpers (the ignored test
//! `notify_helper`, told its role through the environment).
#![cfg(not(loom))]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use mmpool::pool::shared::{self, OpenFlags};
use mmpool::pool::sync::Arc;
use mmpool::pool::Admission;
use mmpool::{Decision, Error, Event, Notifier, Pool, Ticket, Wait};

const ROLE: &str = "MMPOOL_NOTIFY_ROLE";

/// A pool of `total` bytes under a name unique to this process and test,
/// removed on drop.
struct Named {
    name: String,
}

impl Named {
    fn create(test: &str, total: u64) -> (Named, Arc<Pool>) {
        let name = format!("notify-{}-{test}", std::process::id());
        let _ = shared::unlink(&name);
        let pool = Pool::open_shared(&name, total, OpenFlags { create: true, ..OpenFlags::default() }).unwrap();
        (Named { name }, pool)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = shared::unlink(&self.name);
    }
}

/// Blocks until the notifier's fd is readable (the test harness bounds a
/// test that never gets there), then drains everything queued.
fn next_events(n: &Notifier) -> Vec<Event> {
    let mut p = libc::pollfd { fd: n.fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    assert_eq!(unsafe { libc::poll(&mut p, 1, -1) }, 1);
    let mut out = Vec::new();
    assert!(n.drain(&mut out, usize::MAX) > 0, "readable with nothing queued");
    out
}

fn event(ticket: Ticket, user: u64, decision: Decision) -> Event {
    Event { ticket, user, decision }
}

fn assert_whole(pool: &Pool) {
    assert_eq!(pool.stats().waiters, 0);
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes());
}

fn now() -> Wait {
    Wait::timeout_ns(0)
}

/// The threads of this process named `mmpool-relay`.
fn relay_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == "mmpool-relay")
        .count()
}

// ---- helper processes --------------------------------------------------------

struct Helper {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn(role: &str) -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "notify_helper", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, role)
            .env("MMPOOL_LOG", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        let out = BufReader::new(child.stdout.take().unwrap());
        Helper { child, out }
    }

    /// The helper's next report (a line starting with "@@").
    fn report(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "the helper ended without reporting");
            if let Some(rest) = line.trim_end().strip_prefix("@@") {
                return rest.to_string();
            }
        }
    }

    /// Waits until the helper stops itself (SIGSTOP).
    fn wait_stopped(&self) {
        let pid = self.child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: waitpid(2) of our own child with a valid status pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) }, pid);
        assert!(libc::WIFSTOPPED(status), "the helper did not stop: status {status:#x}");
    }

    /// Continues a stopped helper.
    fn resume(&self) {
        // SAFETY: kill(2) of our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) }, 0);
    }

    fn go(&mut self) {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn say(line: &str) {
    println!("@@{line}");
    std::io::stdout().flush().unwrap();
}

fn wait_for_go() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
#[ignore = "run by the other tests as a helper process"]
fn notify_helper() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let args: Vec<&str> = role.split(' ').collect();
    let pool = Pool::open_shared(args[1], 0, OpenFlags::default()).unwrap();
    match args[0] {
        // Hold every byte until told, then release them.
        "hold" => {
            let lease = pool.acquire(pool.total_bytes(), Wait::Forever).unwrap();
            say("held");
            wait_for_go();
            pool.release(lease.id).unwrap();
            say("released");
            wait_for_go();
        }
        // Take a ticket granted at once (2 bytes) and one that waits (the
        // total), register both, and wait to be killed.
        "register" => {
            let n = Notifier::new().unwrap();
            let granted = pool.enqueue(2).unwrap();
            let waiting = pool.enqueue(pool.total_bytes()).unwrap();
            pool.notify_ticket(granted, &n, 1).unwrap();
            pool.notify_ticket(waiting, &n, 2).unwrap();
            say("registered");
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        }
        // One relay thread per attached pool, however many registrations;
        // none after the pool is dropped, and the notifier hears `Closed`.
        "threads" => {
            let n = Notifier::new().unwrap();
            let before = relay_threads();
            let hold = pool.acquire(pool.total_bytes(), Wait::Forever).unwrap();
            let tickets: Vec<Ticket> = (0..100).map(|_| pool.enqueue(1).unwrap()).collect();
            for (i, t) in tickets.iter().enumerate() {
                pool.notify_ticket(*t, &n, i as u64).unwrap();
            }
            pool.release(hold.id).unwrap();
            let mut granted = 0;
            while granted < 100 {
                granted += next_events(&n).iter().filter(|e| e.decision == Decision::Granted).count();
            }
            // Counted once the relay has delivered (it is named by then).
            let during = relay_threads();
            let more = pool.enqueue(pool.total_bytes()).unwrap();
            pool.notify_ticket(more, &n, 7).unwrap();
            drop(pool);
            let closed = next_events(&n);
            say(&format!("before={before} during={during} after={} closed={closed:?}", relay_threads()));
        }
        // Stop (SIGSTOP) inside the pool's lock; once continued, let it go.
        "stop-in-lock" => {
            pool.shared_backend().unwrap().debug_stop_inside_lock(0).unwrap();
            say("continued");
            wait_for_go();
        }
        other => panic!("unknown role {other}"),
    }
}

// ---- tests -------------------------------------------------------------------

#[test]
fn every_decision_in_this_process_reaches_the_notifier() {
    let (_name, pool) = Named::create("local", 10);
    let n = Notifier::new().unwrap();
    let hold = pool.acquire(10, Wait::Forever).unwrap();
    let granted = pool.enqueue(4).unwrap();
    let cancelled = pool.enqueue(4).unwrap();
    let too_big = pool.enqueue(9).unwrap();
    let small = pool.enqueue(1).unwrap();
    for (i, t) in [granted, cancelled, too_big, small].iter().enumerate() {
        pool.notify_ticket(*t, &n, i as u64).unwrap();
    }
    assert!(matches!(pool.notify_ticket(granted, &n, 9), Err(Error::InvalidArgument(_))));
    pool.cancel_ticket(cancelled).unwrap();
    assert_eq!(next_events(&n), vec![event(cancelled, 1, Decision::Cancelled)]);
    pool.set_total(8).unwrap();
    assert_eq!(next_events(&n), vec![event(too_big, 2, Decision::ExceedsCapacity { total: 8 })]);
    pool.release(hold.id).unwrap();
    assert_eq!(next_events(&n), vec![event(granted, 0, Decision::Granted), event(small, 3, Decision::Granted)]);
    let a = pool.wait_ticket(granted, now()).unwrap();
    let b = pool.wait_ticket(small, now()).unwrap();
    pool.release(a.id).unwrap();
    pool.release(b.id).unwrap();
    assert!(matches!(pool.wait_ticket(too_big, now()), Err(Error::ExceedsCapacity { .. })));
    assert!(!n.is_readable());

    // Decided before it was registered: the event comes at once.
    let at_once = pool.enqueue(3).unwrap();
    pool.notify_ticket(at_once, &n, 5).unwrap();
    assert_eq!(next_events(&n), vec![event(at_once, 5, Decision::Granted)]);
    pool.cancel_ticket(at_once).unwrap();
    let hold = pool.acquire(8, Wait::Forever).unwrap();
    let Admission::Queued(waiting) = pool.acquire_or_enqueue(8).unwrap() else { panic!("the pool is held") };
    pool.notify_ticket(waiting, &n, 6).unwrap();
    pool.close();
    assert_eq!(next_events(&n), vec![event(waiting, 6, Decision::Closed)]);
    assert_eq!(pool.wait_ticket(waiting, now()), Err(Error::Closed));
    pool.release(hold.id).unwrap();
    assert_whole(&pool);
}

#[test]
fn a_ticket_collected_at_once_has_one_event() {
    let (_name, pool) = Named::create("collect", 4);
    let n = Notifier::new().unwrap();
    for round in 0..50 {
        let hold = pool.acquire(4, Wait::Forever).unwrap();
        let t = pool.enqueue(4).unwrap();
        pool.notify_ticket(t, &n, round).unwrap();
        pool.release(hold.id).unwrap();
        // The relay and this collection race to report the grant.
        let lease = pool.wait_ticket(t, Wait::Forever).unwrap();
        assert_eq!(next_events(&n), vec![event(t, round, Decision::Granted)]);
        pool.release(lease.id).unwrap();
    }
    assert!(!n.is_readable());
    assert_whole(&pool);
}

#[test]
fn a_release_in_another_process_wakes_this_processs_notifier() {
    let (name, pool) = Named::create("cross", 8);
    let mut holder = Helper::spawn(&format!("hold {}", name.name));
    assert_eq!(holder.report(), "held");
    let n = Notifier::new().unwrap();
    let tickets: Vec<Ticket> = (0..4).map(|_| pool.enqueue(2).unwrap()).collect();
    for (i, t) in tickets.iter().enumerate() {
        pool.notify_ticket(*t, &n, 10 + i as u64).unwrap();
    }
    assert!(!n.is_readable());
    holder.go();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.extend(next_events(&n));
    }
    let want: Vec<Event> = tickets.iter().enumerate().map(|(i, &t)| event(t, 10 + i as u64, Decision::Granted)).collect();
    assert_eq!(seen, want, "in order of arrival");
    assert_eq!(holder.report(), "released");
    for t in tickets {
        let lease = pool.wait_ticket(t, now()).unwrap();
        pool.release(lease.id).unwrap();
    }
    assert_whole(&pool);
}

#[test]
fn a_process_killed_with_registered_tickets_gives_its_bytes_and_place_back() {
    let (name, pool) = Named::create("kill", 4);
    let mut victim = Helper::spawn(&format!("register {}", name.name));
    assert_eq!(victim.report(), "registered");
    // The victim holds 2 bytes (a ticket granted at once) and waits first
    // in line for all 4; this ticket waits behind it.
    assert_eq!(pool.available_bytes(), 2);
    let n = Notifier::new().unwrap();
    let mine = pool.enqueue(3).unwrap();
    pool.notify_ticket(mine, &n, 42).unwrap();
    assert!(!n.is_readable());
    victim.kill9();
    // Nobody in this process waits in a thread: the relay finds the dead
    // process, its bytes come back and its place goes.
    assert_eq!(next_events(&n), vec![event(mine, 42, Decision::Granted)]);
    let lease = pool.wait_ticket(mine, now()).unwrap();
    assert_eq!(pool.available_bytes(), 1);
    pool.release(lease.id).unwrap();
    assert_whole(&pool);
    assert_eq!(pool.available_bytes(), 4);
}

#[test]
fn one_relay_thread_per_pool_stopped_with_the_pool() {
    let (name, _pool) = Named::create("threads", 100);
    let mut helper = Helper::spawn(&format!("threads {}", name.name));
    let report = helper.report();
    let closed = "closed=[Event { ticket: Ticket { id: ";
    assert!(report.starts_with("before=0 during=1 after=0 ") && report.contains(closed), "{report}");
    assert!(report.ends_with("user: 7, decision: Closed }]"), "{report}");
}

#[test]
fn a_deferred_ticket_registers_once_the_lock_is_free_and_its_event_names_it() {
    let (name, pool) = Named::create("deferred", 4);
    let mut stuck = Helper::spawn(&format!("stop-in-lock {}", name.name));
    stuck.wait_stopped();
    // The lock stays taken: the request gets a ticket not yet in line, and
    // registering it gives up rather than block an event loop.
    let Admission::Queued(t) = pool.acquire_or_enqueue(1).unwrap() else { panic!("the lock is held") };
    let n = Notifier::new().unwrap();
    assert!(matches!(pool.notify_ticket(t, &n, 3), Err(Error::Timeout { .. })));
    assert!(!n.is_readable());
    stuck.resume();
    assert_eq!(stuck.report(), "continued");
    pool.notify_ticket(t, &n, 3).unwrap();
    assert_eq!(next_events(&n), vec![event(t, 3, Decision::Granted)], "the event names the caller's ticket");
    let lease = pool.wait_ticket(t, now()).unwrap();
    assert_eq!(lease.nbytes, 1);
    pool.release(lease.id).unwrap();
    assert_whole(&pool);
}
