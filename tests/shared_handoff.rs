//! Hand-offs on a shared pool with real processes: this test binary runs
//! itself again as producer and consumer processes (the ignored test
//! `helper`), which attach to a pool this process created. The producer
//! prints its token; this process sends it to the consumers through their
//! stdin (a pipe). Consumers get killed with SIGKILL before claiming, after
//! claiming and in the middle of completing, producers after sharing; after
//! every round `available + held by live leases and hand-offs == total`.
#![cfg(not(loom))] // real processes; loom runs tests/loom.rs

use std::io::Write;
use std::thread;
use std::time::Duration;

use mmpool::pool::shared::{self, OpenFlags};
use mmpool::pool::sync::Arc;
use mmpool::pool::{Decision, Event, Notifier, Token};
use mmpool::Ticket;
use mmpool::{Pool, Wait};

#[path = "support/processes.rs"]
mod processes;
use processes::{park, say, Helper, Name, ROLE};

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

const TOTAL: u64 = 1000;
// Claim deadlines here are long enough (1 s, 300 ms in the rounds, where a
// late claim is expected and counted) for a consumer process to start and
// claim first.
const CREATE: OpenFlags = OpenFlags { create: true, exclusive: false, group: false };
/// Longer than any wait here should take; only a bug reaches it.
fn patience() -> Wait {
    Wait::timeout_ns(20_000_000_000)
}

fn open(name: &Name) -> Arc<Pool> {
    Pool::open_shared(&name.0, TOTAL, CREATE).unwrap()
}

/// Every byte is accounted for: free, in a live lease or held by a hand-off.
fn assert_whole(pool: &Pool) {
    let s = pool.stats();
    let held = pool.handoff_stats().held_bytes;
    assert_eq!(s.available_bytes + pool.leased_bytes() + held, s.total_bytes, "{s:?} held by hand-offs {held}");
}

fn token_line(t: &Token) -> String {
    format!("token {} {} {} {} {}", t.id, t.nonce, t.parts, t.flags, t.offset)
}

fn parse_token(line: &str) -> Token {
    let v: Vec<u64> = line.split(' ').skip(1).map(|w| w.parse().unwrap()).collect();
    assert_eq!(v.len(), 5, "{line}");
    Token { id: v[0], nonce: v[1], parts: v[2] as u32, flags: v[3] as u32, offset: v[4] }
}

fn producer(name: &Name, nbytes: u64, parts: u32, deadline_ms: &str, extra: u64) -> (Helper, Token) {
    let args = [name.0.as_str(), &nbytes.to_string(), &parts.to_string(), deadline_ms, &extra.to_string()];
    let mut p = Helper::spawn("produce", &args, &[]);
    let token = parse_token(&p.report());
    (p, token)
}

/// A consumer of part `part` that does `how` once it has the token.
fn consumer(name: &Name, token: &Token, part: u32, how: &str) -> Helper {
    let mut c = Helper::spawn("consume", &[&name.0, &part.to_string(), how], &[]);
    let stdin = c.child.stdin.as_mut().unwrap();
    stdin.write_all(format!("{}\n", token_line(token)).as_bytes()).unwrap();
    stdin.flush().unwrap();
    c
}

fn rounds() -> usize {
    std::env::var("MMPOOL_SHARED_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

fn completes(name: &Name, token: &Token, part: u32) {
    let mut c = consumer(name, token, part, "complete");
    assert_eq!(c.report(), "completed");
    assert!(c.finish().success());
}

fn read_token() -> Token {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    parse_token(line.trim_end())
}

/// The body of every helper process; a no-op when run as a plain test.
#[test]
#[ignore = "run by the other tests as a helper process"]
fn helper() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let args: Vec<&str> = role.split(' ').collect();
    if args[0] == "global" {
        // The global pool from the environment: its hand-off limit.
        let limit = mmpool::pool::global().map(|p| p.shared_backend().unwrap().limits().max_handoffs);
        say(&format!("global {limit:?}"));
        return;
    }
    let total = if args[0] == "produce-exit" { TOTAL } else { 0 };
    let pool =
        Pool::open_shared(args[1], total, OpenFlags { create: total != 0, ..OpenFlags::default() }).expect("attach");
    match args[0] {
        // Create the pool, share a lease of `nbytes` in `parts` parts, print
        // the token and leave (detach).
        "produce-exit" => {
            let lease = pool.acquire(args[2].parse().unwrap(), Wait::Forever).unwrap();
            let token = pool.share_lease(lease.id, args[3].parse().unwrap(), None, false).unwrap();
            say(&token_line(&token));
        }
        // Hold `extra` bytes in a plain lease, share a lease of `nbytes` in
        // `parts` parts (deadline in ms, or "-"), print the token, park.
        "produce" => {
            let n = |i: usize| args[i].parse::<u64>().unwrap();
            let _plain = (n(5) > 0).then(|| pool.acquire(n(5), Wait::Forever).unwrap());
            let lease = pool.acquire(n(2), Wait::Forever).unwrap();
            let deadline = args[4].parse().ok().map(Duration::from_millis);
            let token = pool.share_lease(lease.id, n(3) as u32, deadline, false).unwrap();
            say(&token_line(&token));
            park();
        }
        // Keep the lease, wait for the consumers, then release it.
        "produce-wait" => {
            let lease = pool.acquire(args[2].parse().unwrap(), Wait::Forever).unwrap();
            let token = pool.share_lease(lease.id, args[3].parse().unwrap(), None, true).unwrap();
            say(&token_line(&token));
            pool.wait_handoff(&token, patience()).unwrap();
            say(&format!("finished, holding {}", pool.lease(lease.id).map_or(0, |l| l.nbytes)));
            pool.release(lease.id).unwrap();
            say("released");
        }
        "consume" => {
            let part: u32 = args[2].parse().unwrap();
            let token = read_token();
            if args[3] != "idle" {
                // A claim after the claim deadline finds the part expired.
                match pool.claim_part(&token, part) {
                    Err(mmpool::Error::InvalidLease(m)) if m.contains("expired") => return say("late"),
                    claimed => claimed.unwrap(),
                }
            }
            match args[3] {
                "complete" => {
                    pool.complete_part(&token, part).unwrap();
                    pool.complete_part(&token, part).unwrap(); // twice counts once
                    say("completed");
                }
                "claim" => {
                    say("claimed");
                    park();
                }
                "stop-completing" => {
                    say("claimed");
                    pool.shared_backend().unwrap().debug_stop_completing(&token, part).unwrap();
                }
                _ => {
                    say("got it");
                    park();
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn one_two_and_four_consumer_processes_complete_and_a_waiter_in_line_gets_the_bytes() {
    for n in [1u32, 2, 4] {
        let name = Name::new(&format!("handoff-n{n}"));
        let pool = open(&name);
        let (_producer, token) = producer(&name, 600, n, "-", 0);
        assert_eq!(pool.available_bytes(), 400, "n={n}: the hand-off holds the lease's bytes");
        assert_eq!(pool.handoff_stats().held_bytes, 600);
        assert_whole(&pool);
        let waiter = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || pool.acquire(TOTAL, patience()))
        };
        let mut consumers: Vec<Helper> = (0..n).map(|p| consumer(&name, &token, p, "complete")).collect();
        for c in &mut consumers {
            assert_eq!(c.report(), "completed");
        }
        let lease = waiter.join().unwrap().unwrap();
        assert_eq!(lease.nbytes, TOTAL, "n={n}");
        pool.release(lease.id).unwrap();
        for c in consumers {
            assert!(c.finish().success());
        }
        let s = pool.handoff_stats();
        assert_eq!((s.outstanding, s.finished, s.expired_parts, s.held_bytes), (0, 1, 0, 0), "n={n}");
        assert_eq!(pool.available_bytes(), TOTAL);
        assert_whole(&pool);
    }
}

#[test]
fn a_producer_that_keeps_its_lease_waits_across_processes_then_releases() {
    let name = Name::new("handoff-keep");
    let pool = open(&name);
    let mut producer = Helper::spawn("produce-wait", &[&name.0, "700", "2"], &[]);
    let token = parse_token(&producer.report());
    assert_eq!(pool.available_bytes(), 300);
    completes(&name, &token, 0);
    assert_eq!(pool.handoff(&token).unwrap().map(|i| i.parts_left), Some(1));
    completes(&name, &token, 1);
    assert_eq!(producer.report(), "finished, holding 700", "the bytes stay the lease's until it is released");
    assert_eq!(producer.report(), "released");
    assert!(producer.finish().success());
    assert_eq!(pool.available_bytes(), TOTAL);
    assert_whole(&pool);
}

#[test]
fn a_consumer_killed_before_claiming_leaves_its_part_to_expire_at_the_deadline() {
    let name = Name::new("handoff-kill-before");
    let pool = open(&name);
    let (_producer, token) = producer(&name, 500, 2, "1000", 0);
    let mut idle = consumer(&name, &token, 0, "idle");
    assert_eq!(idle.report(), "got it");
    idle.kill();
    completes(&name, &token, 1);
    assert_eq!(pool.available_bytes(), 500, "part 0 is still open");
    pool.wait_handoff(&token, patience()).unwrap();
    let s = pool.handoff_stats();
    assert_eq!((s.outstanding, s.finished, s.expired_parts), (0, 1, 1));
    assert_eq!(pool.available_bytes(), TOTAL);
    assert_whole(&pool);
}

#[test]
fn a_consumer_killed_after_claiming_completes_its_part_by_itself() {
    let name = Name::new("handoff-kill-after");
    let pool = open(&name);
    let (_producer, token) = producer(&name, 500, 2, "-", 0);
    let mut claimer = consumer(&name, &token, 0, "claim");
    assert_eq!(claimer.report(), "claimed");
    let listed = pool.shared_snapshot().unwrap().unwrap().handoffs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].claimants, vec![claimer.pid() as u32]);
    claimer.kill();
    completes(&name, &token, 1);
    pool.wait_handoff(&token, patience()).unwrap();
    let s = pool.handoff_stats();
    assert_eq!((s.outstanding, s.finished, s.expired_parts), (0, 1, 0), "it completed, it did not expire");
    assert_eq!(pool.available_bytes(), TOTAL);
    assert_whole(&pool);
}

#[test]
fn a_consumer_killed_in_the_middle_of_completing_counts_once() {
    let name = Name::new("handoff-kill-mid");
    let pool = open(&name);
    let (_producer, token) = producer(&name, 500, 2, "-", 0);
    let mut stopped = consumer(&name, &token, 0, "stop-completing");
    assert_eq!(stopped.report(), "claimed");
    stopped.wait_stopped(); // inside the lock, part 0 completed, not yet let go
    stopped.kill();
    completes(&name, &token, 1); // takes the lock over from the dead holder
    pool.wait_handoff(&token, patience()).unwrap();
    let s = pool.handoff_stats();
    assert_eq!((s.outstanding, s.finished, s.expired_parts, s.held_bytes), (0, 1, 0, 0));
    assert_eq!(pool.available_bytes(), TOTAL, "the bytes came back once");
    assert!(pool.shared_snapshot().unwrap().unwrap().lock_recoveries >= 1);
    assert_whole(&pool);
}

#[test]
fn a_producer_killed_after_sharing_leaves_the_bytes_held_until_the_consumers_complete() {
    let name = Name::new("handoff-kill-producer");
    let pool = open(&name);
    let (mut producer, token) = producer(&name, 500, 2, "-", 200);
    assert_eq!(pool.available_bytes(), 300);
    producer.kill();
    // Waiting in line reaps the dead producer: its plain lease comes back,
    // the hand-off's bytes do not.
    let lease = pool.acquire(500, patience()).unwrap();
    assert_eq!(pool.available_bytes(), 0);
    assert_eq!(pool.handoff_stats().held_bytes, 500);
    assert_whole(&pool);
    pool.release(lease.id).unwrap();
    completes(&name, &token, 0);
    assert_eq!(pool.available_bytes(), 500);
    completes(&name, &token, 1);
    assert_eq!(pool.available_bytes(), TOTAL);
    assert_eq!(pool.handoff_stats().finished, 1);
    assert_whole(&pool);
}

#[test]
fn unclaimed_parts_expire_and_a_waiter_in_line_wakes_for_them() {
    let name = Name::new("handoff-expire");
    let pool = open(&name);
    let (_producer, token) = producer(&name, TOTAL, 3, "1000", 0);
    completes(&name, &token, 0);
    // Nobody claims parts 1 and 2: at the deadline they expire, and the
    // request waiting in line for every byte is granted.
    let lease = pool.acquire(TOTAL, patience()).unwrap();
    let s = pool.handoff_stats();
    assert_eq!((s.outstanding, s.finished, s.expired_parts), (0, 1, 2));
    pool.release(lease.id).unwrap();
    assert!(matches!(pool.claim_part(&token, 1), Err(mmpool::Error::InvalidLease(_))), "expired");
    pool.complete_part(&token, 2).unwrap(); // a finished hand-off: a no-op
    assert_eq!(pool.available_bytes(), TOTAL);
    assert_whole(&pool);
}

#[test]
fn a_hand_off_outlives_every_process_and_a_pool_started_over() {
    let name = Name::new("handoff-abandoned");
    let mut producer = Helper::spawn("produce-exit", &[&name.0, "300", "2"], &[]);
    let token = parse_token(&producer.report());
    assert!(producer.finish().success());
    // No process is attached now: this open starts the pool over, keeping
    // the hand-off whose token may still be on its way.
    let pool = open(&name);
    assert_eq!(pool.available_bytes(), TOTAL - 300);
    assert_eq!(pool.handoff(&token).unwrap().map(|i| (i.nbytes, i.parts_left)), Some((300, 2)));
    assert_whole(&pool);
    completes(&name, &token, 0);
    completes(&name, &token, 1);
    assert_eq!(pool.available_bytes(), TOTAL);
    assert_whole(&pool);
}

#[test]
fn the_global_pool_takes_its_hand_off_limit_from_the_environment() {
    let name = Name::new("handoff-env");
    let run = |limit: &str| {
        let env = [
            ("MMPOOL_SHARED_NAME", name.0.as_str()),
            ("MMPOOL_SHARED_TOTAL_BYTES", "1000"),
            ("MMPOOL_SHARED_MAX_HANDOFFS", limit),
        ];
        let mut h = Helper::spawn("global", &[&name.0], &env);
        let said = h.report();
        assert!(h.finish().success());
        said
    };
    let _creator = {
        let limits = mmpool::pool::shared::Limits { max_handoffs: 7, ..Default::default() };
        Pool::open_shared_with(
            &name.0,
            &mmpool::pool::shared::SharedOptions { total_bytes: TOTAL, flags: CREATE, limits, alignment: 0 },
        )
        .unwrap()
    };
    assert_eq!(run("7"), "global Some(7)");
    assert_eq!(run("0"), "global Some(7)", "0 accepts the pool's");
    assert_eq!(run("8"), "global None", "another limit than the pool's is refused");
}

/// Waits (poll(2)) for the notifier's fd and drains its events.
fn events(n: &Notifier) -> Vec<Event> {
    let mut fd = libc::pollfd { fd: n.fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut fd, 1, 20_000) }, 1, "an event comes");
    let mut out = Vec::new();
    n.drain(&mut out, 16);
    out
}

#[test]
fn a_notifier_in_a_third_process_gets_the_event_when_consumer_processes_finish_it() {
    let name = Name::new("handoff-notify");
    let pool = open(&name);
    let (_producer, token) = producer(&name, 400, 2, "-", 0);
    let n = Notifier::new().unwrap();
    pool.notify_handoff(&token, &n, 77).unwrap();
    completes(&name, &token, 0);
    assert!(!n.is_readable(), "a part is still open");
    completes(&name, &token, 1);
    let finished = Event { ticket: Ticket { id: token.id }, user: 77, decision: Decision::HandoffFinished };
    assert_eq!(events(&n), vec![finished]);
    assert_eq!(pool.available_bytes(), TOTAL);
    // A watch still open when this process's handle goes ends with `Closed`.
    let (_other_producer, other) = producer(&name, 100, 1, "-", 0);
    pool.notify_handoff(&other, &n, 78).unwrap();
    drop(pool);
    assert_eq!(events(&n), vec![Event { ticket: Ticket { id: other.id }, user: 78, decision: Decision::Closed }]);
}

#[test]
fn expired_parts_are_counted_and_logged_once_per_hand_off() {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    // Other tests of this binary log expiries too: this one's say "4242 bytes".
    mmpool::log::set_sink(Some(Box::new(move |level, line| {
        if level == mmpool::log::Level::Warn && line.contains("(4242 bytes)") {
            seen.lock().unwrap().push(line.to_string());
        }
    })));
    let name = Name::new("handoff-log");
    let pool = Pool::open_shared(&name.0, 10_000, CREATE).unwrap();
    let lease = pool.acquire(4242, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 3, Some(Duration::from_millis(300)), false).unwrap();
    pool.claim_part(&token, 0).unwrap();
    // The producer's wait collects the expiry at the deadline; part 0 is
    // claimed, so the hand-off stays open.
    let waited = pool.wait_handoff(&token, Wait::timeout_ns(1_300_000_000));
    assert!(matches!(waited, Err(mmpool::Error::Timeout { .. })), "{waited:?}");
    assert_eq!(pool.handoff_stats().expired_parts, 2);
    assert_eq!(pool.handoff(&token).unwrap().map(|i| (i.parts_left, i.claimed)), Some((1, 1)));
    assert_eq!(pool.available_bytes(), 10_000 - 4242);
    let _ = pool.stats();
    pool.complete_part(&token, 0).unwrap();
    assert_eq!(pool.available_bytes(), 10_000);
    mmpool::log::set_sink(None);
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("2 part(s) nobody claimed") && lines[0].contains("1 part(s) still open"), "{lines:?}");
}

#[test]
fn tokens_the_pool_never_issued_or_altered_are_refused_and_records_are_bounded() {
    let name = Name::new("handoff-refuse");
    let opts = mmpool::pool::shared::SharedOptions {
        total_bytes: TOTAL,
        flags: CREATE,
        limits: mmpool::pool::shared::Limits { max_handoffs: 2, ..Default::default() },
        alignment: 0,
    };
    let pool = Pool::open_shared_with(&name.0, &opts).unwrap();
    let a = pool.acquire(10, Wait::Forever).unwrap();
    let token = pool.share_lease(a.id, 2, None, false).unwrap();
    for bad in [
        Token { nonce: token.nonce ^ 2, ..token },
        Token { parts: 3, ..token },
        Token { flags: 1, ..token },
        Token { offset: 64, ..token },
        Token { id: token.id + (1 << 16), ..token },
        Token { id: 0, ..token },
    ] {
        assert!(matches!(pool.complete_part(&bad, 0), Err(mmpool::Error::InvalidLease(_))), "{bad:?}");
        assert!(matches!(pool.claim_part(&bad, 0), Err(mmpool::Error::InvalidLease(_))), "{bad:?}");
    }
    assert!(matches!(pool.complete_part(&token, 2), Err(mmpool::Error::InvalidLease(m)) if m.contains("out of range")));
    let b = pool.acquire(10, Wait::Forever).unwrap();
    let _second = pool.share_lease(b.id, 1, None, false).unwrap();
    let c = pool.acquire(10, Wait::Forever).unwrap();
    let full = pool.share_lease(c.id, 1, None, false);
    assert!(matches!(&full, Err(mmpool::Error::System(m)) if m.contains("max_handoffs")), "{full:?}");
    assert_eq!(pool.lease(c.id).map(|l| l.nbytes), Some(10), "a refused share keeps the lease");
    assert_whole(&pool);
}

#[test]
fn rounds_of_consumers_completing_dying_and_idling_lose_no_byte() {
    let name = Name::new("handoff-rounds");
    let pool = open(&name);
    let mut rng = Rng(0x5eed_4a4d_0ff5);
    let mut expired = 0;
    for round in 0..rounds() {
        let parts = 1 + rng.below(4) as u32;
        let timed = rng.below(2) == 0;
        let (mut producer, token) = producer(&name, 100 + rng.below(400), parts, if timed { "300" } else { "-" }, 50);
        let mut idle_parts = Vec::new();
        let mut consumers = Vec::new();
        let mut late = 0;
        for part in 0..parts {
            let how = ["complete", "claim", "idle", "stop-completing"][rng.index(4)];
            let mut c = consumer(&name, &token, part, how);
            let said = c.report();
            if said == "late" {
                assert!(timed, "round {round}: only a timed hand-off's parts expire");
                late += 1;
                assert!(c.finish().success());
                continue;
            }
            match how {
                "complete" => assert_eq!(said, "completed"),
                "idle" => {
                    assert_eq!(said, "got it");
                    idle_parts.push(part);
                }
                "claim" => assert_eq!(said, "claimed"),
                _ => {
                    assert_eq!(said, "claimed");
                    c.wait_stopped();
                }
            }
            if how != "complete" {
                c.kill();
            }
            consumers.push(c);
        }
        if rng.below(2) == 0 {
            producer.kill();
        }
        if timed {
            expired += idle_parts.len() as u64 + late;
        } else {
            // Nobody will complete these, and they never expire: this process does.
            for &part in &idle_parts {
                pool.complete_part(&token, part).unwrap();
            }
        }
        pool.wait_handoff(&token, patience()).unwrap();
        let s = pool.handoff_stats();
        assert_eq!((s.outstanding, s.held_bytes, s.expired_parts), (0, 0, expired), "round {round}");
        assert_eq!(s.finished, round as u64 + 1, "round {round}");
        assert_whole(&pool);
        drop(producer);
        // With the producer gone its plain lease comes back too (waiting reaps it).
        let all = pool.acquire(TOTAL, patience()).unwrap();
        pool.release(all.id).unwrap();
    }
}

#[test]
fn a_damaged_hand_off_region_answers_calls_and_is_repaired_by_the_next_attach() {
    use std::os::unix::fs::FileExt;
    let name = Name::new("handoff-damage");
    let pool = open(&name);
    let (offset, len) = pool.shared_backend().unwrap().debug_handoffs_span();
    let file = std::fs::OpenOptions::new().write(true).open(shared::path_of(&name.0)).unwrap();
    let mut rng = Rng(0xdead_beef_cafe);
    for round in 0..12u64 {
        let a = pool.acquire(100, Wait::Forever).unwrap();
        let t1 = pool.share_lease(a.id, 3, Some(Duration::from_secs(1)), false).ok();
        let b = pool.acquire(50, Wait::Forever).unwrap();
        let t2 = pool.share_lease(b.id, 2, None, true).ok();
        let words: Vec<u8> = (0..len / 8)
            .flat_map(|_| {
                match round % 4 {
                    0 => u64::MAX,
                    1 => 1,
                    2 => rng.next(),
                    _ => rng.next() & 0xffff_0000_0000_0001,
                }
                .to_le_bytes()
            })
            .collect();
        file.write_all_at(&words, offset).unwrap();
        for t in t1.iter().chain(&t2) {
            let _ = pool.claim_part(t, 1);
            let _ = pool.complete_part(t, 0);
            let _ = pool.wait_handoff(t, Wait::timeout_ns(0));
            let _ = pool.handoff(t);
        }
        let listed = pool.handoffs();
        let _ = (pool.handoff_stats(), pool.stats(), pool.shared_snapshot());
        for h in &listed {
            let _ = pool.complete_part(&h.token, 0);
        }
        // Attaching repairs: records that cannot be right are dropped.
        let other = Pool::open_shared(&name.0, 0, OpenFlags::default()).unwrap();
        assert_whole(&pool);
        pool.release(b.id).unwrap();
        for h in pool.handoffs() {
            for part in 0..h.token.parts {
                pool.complete_part(&h.token, part).unwrap();
            }
        }
        assert_eq!(pool.available_bytes(), TOTAL, "round {round}: {:?}", pool.handoff_stats());
        drop(other);
    }
}
