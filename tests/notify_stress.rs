//! Stress of the notifier: threads take tickets and register them with one
//! notifier whose loop thread collects the grants, while tickets are
//! cancelled before their grant, racing it (from another thread) or after
//! it, waited on with a timeout that leaves the line, and finally closed.
//! At the end every registered ticket had exactly one event, its decision is
//! the one its fate allows, and every byte is back. An in-process pool and a
//! shared one in turn.
//!
//! `MMPOOL_NOTIFY_STRESS_OPS` sets the tickets per producer thread (default
//! 3,000), `MMPOOL_STRESS_SEED` the first seed.
#![cfg(not(loom))]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use mmpool::pool::shared::{self, OpenFlags};
use mmpool::{Decision, Error, Event, Lease, Notifier, Pool, Ticket, Wait};

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

const TOTAL: u64 = 64;
const MAX_REQUEST: u64 = 16;
const PRODUCERS: u64 = 4;

/// What happens to a ticket after it is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Cancelled at once by the thread that took it.
    CancelNow,
    /// Cancelled by another thread, racing the releases.
    CancelRacing,
    /// Collected by the loop when its grant arrives.
    Collect,
    /// Given back by the loop when its grant arrives.
    CancelAfterGrant,
    /// Waited on by its thread with a short timeout that leaves the line.
    WaitOrLeave,
}

#[derive(Debug)]
struct Record {
    mode: Mode,
    /// The events it had (exactly one is right).
    events: Vec<Decision>,
    /// For `WaitOrLeave`: whether its wait was granted.
    waited: Option<bool>,
}

type Book = Arc<Mutex<HashMap<u64, Record>>>;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn drain_ready(n: &Notifier) -> Vec<Event> {
    let mut p = libc::pollfd { fd: n.fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call. The timeout
    // only lets the loop look at its flags; nothing is measured.
    unsafe { libc::poll(&mut p, 1, 5) };
    let mut out = Vec::new();
    n.drain(&mut out, 64);
    out
}

/// Tickets registered whose event the loop has not had yet.
const IN_FLIGHT_MAX: u64 = 256;

/// The loop thread: records each event, collects or gives back the grants
/// as their mode says, holds up to four leases, and lets the oldest go
/// whenever a look finds nothing (so the line always moves).
fn run_loop(pool: Arc<Pool>, n: Notifier, book: Book, in_flight: Arc<AtomicU64>, producers_done: Arc<AtomicBool>) {
    let mut held: VecDeque<Lease> = VecDeque::new();
    // Grants whose collection found a shared pool's lock kept by one holder
    // past the zero wait's grace: they keep their grant; collected later.
    let mut retry: Vec<Ticket> = Vec::new();
    loop {
        for t in std::mem::take(&mut retry) {
            collect(&pool, t, &mut held, &mut retry);
        }
        let events = drain_ready(&n);
        if events.is_empty() {
            if let Some(l) = held.pop_front() {
                pool.release(l.id).unwrap();
            } else if retry.is_empty()
                && producers_done.load(Ordering::Acquire)
                && book.lock().unwrap().values().all(|r| !r.events.is_empty())
            {
                return;
            }
        }
        in_flight.fetch_sub(events.len() as u64, Ordering::AcqRel);
        for e in events {
            let mode = {
                let mut b = book.lock().unwrap();
                let r = b.get_mut(&e.user).expect("an event for a ticket nobody registered");
                assert_eq!(e.ticket.id, e.user);
                r.events.push(e.decision);
                r.mode
            };
            if e.decision != Decision::Granted {
                continue;
            }
            match mode {
                Mode::Collect => collect(&pool, e.ticket, &mut held, &mut retry),
                Mode::CancelAfterGrant => {
                    pool.cancel_ticket(e.ticket).unwrap();
                    assert!(matches!(pool.wait_ticket(e.ticket, Wait::Forever), Err(Error::InvalidLease(_))));
                }
                _ => {}
            }
        }
    }
}

/// Collects a granted ticket with a zero wait into `held` (at most four
/// kept), or keeps it for another try.
fn collect(pool: &Arc<Pool>, t: Ticket, held: &mut VecDeque<Lease>, retry: &mut Vec<Ticket>) {
    match pool.wait_ticket(t, Wait::timeout_ns(0)) {
        Ok(lease) => held.push_back(lease),
        Err(Error::Timeout { .. }) if pool.is_shared() => retry.push(t),
        Err(e) => panic!("a granted ticket {t:?} does not collect: {e:?}"),
    }
    if held.len() > 4 {
        pool.release(held.pop_front().unwrap().id).unwrap();
    }
}

fn producer(pool: Arc<Pool>, n: Notifier, book: Book, in_flight: Arc<AtomicU64>, racer: mpsc::Sender<Ticket>, seed: u64, ops: u64) {
    let mut rng = Rng(seed);
    for _ in 0..ops {
        // A shared pool's line has room for 1024.
        while in_flight.load(Ordering::Acquire) >= IN_FLIGHT_MAX {
            std::thread::yield_now();
        }
        let t = pool.enqueue(1 + rng.below(MAX_REQUEST)).unwrap();
        let mode = match rng.below(5) {
            0 => Mode::CancelNow,
            1 => Mode::CancelRacing,
            2 => Mode::CancelAfterGrant,
            3 => Mode::WaitOrLeave,
            _ => Mode::Collect,
        };
        book.lock().unwrap().insert(t.id, Record { mode, events: Vec::new(), waited: None });
        in_flight.fetch_add(1, Ordering::AcqRel);
        pool.notify_ticket(t, &n, t.id).unwrap();
        match mode {
            Mode::CancelNow => pool.cancel_ticket(t).unwrap(),
            Mode::CancelRacing => racer.send(t).unwrap(),
            Mode::WaitOrLeave => {
                let got = match pool.wait_ticket_or_leave(t, Wait::timeout_ns(rng.below(200_000))) {
                    Ok(lease) => {
                        pool.release(lease.id).unwrap();
                        true
                    }
                    Err(Error::Timeout { .. }) => false,
                    Err(e) => panic!("unexpected {e:?}"),
                };
                book.lock().unwrap().get_mut(&t.id).unwrap().waited = Some(got);
            }
            Mode::Collect | Mode::CancelAfterGrant => {}
        }
    }
}

/// Every ticket had one event, the one its fate allows.
fn check_book(book: &Book) -> HashMap<&'static str, usize> {
    let mut tally = HashMap::new();
    for (id, r) in book.lock().unwrap().iter() {
        assert_eq!(r.events.len(), 1, "ticket {id:#x} ({:?}) had events {:?}", r.mode, r.events);
        let d = r.events[0];
        let allowed = match r.mode {
            Mode::Collect | Mode::CancelAfterGrant => d == Decision::Granted,
            Mode::CancelNow | Mode::CancelRacing => matches!(d, Decision::Granted | Decision::Cancelled),
            Mode::WaitOrLeave => (d == Decision::Granted) == r.waited.expect("its wait ended"),
        };
        assert!(allowed, "ticket {id:#x} ({:?}, waited {:?}) was decided {d:?}", r.mode, r.waited);
        let what = match (r.mode, d) {
            (Mode::Collect | Mode::CancelAfterGrant, _) => "granted",
            (Mode::WaitOrLeave, Decision::Granted) => "waited and granted",
            (Mode::WaitOrLeave, _) => "timed out",
            (_, Decision::Granted) => "cancelled after the grant",
            _ => "cancelled in line",
        };
        *tally.entry(what).or_insert(0) += 1;
    }
    tally
}

fn stress(label: &str, pool: Arc<Pool>) {
    let ops = env_u64("MMPOOL_NOTIFY_STRESS_OPS", 3_000);
    let seed = env_u64("MMPOOL_STRESS_SEED", 0x005e_ed0f_1e57);
    let n = Notifier::new().unwrap();
    let book: Book = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let looper = {
        let (pool, n, book, done) = (Arc::clone(&pool), n.clone(), Arc::clone(&book), Arc::clone(&done));
        let in_flight = Arc::clone(&in_flight);
        std::thread::spawn(move || run_loop(pool, n, book, in_flight, done))
    };
    let (racer_tx, racer_rx) = mpsc::channel::<Ticket>();
    let racer = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            for t in racer_rx {
                pool.cancel_ticket(t).unwrap();
            }
        })
    };
    // Leases taken and returned by plain acquires, so that the bytes churn.
    let churn = {
        let (pool, done) = (Arc::clone(&pool), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0xc4);
            while !done.load(Ordering::Acquire) {
                if let Ok(l) = pool.acquire(1 + rng.below(MAX_REQUEST), Wait::timeout_ns(rng.below(100_000))) {
                    pool.release(l.id).unwrap();
                }
            }
        })
    };
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|k| {
            let (pool, n, book, tx) = (Arc::clone(&pool), n.clone(), Arc::clone(&book), racer_tx.clone());
            let in_flight = Arc::clone(&in_flight);
            std::thread::spawn(move || producer(pool, n, book, in_flight, tx, seed.wrapping_add(k), ops))
        })
        .collect();
    drop(racer_tx);
    for p in producers {
        p.join().unwrap();
    }
    racer.join().unwrap();
    done.store(true, Ordering::Release);
    churn.join().unwrap();
    looper.join().unwrap();
    let tally = check_book(&book);
    assert_eq!(tally.values().sum::<usize>() as u64, PRODUCERS * ops);
    assert_eq!(pool.stats().waiters, 0);
    assert_eq!(pool.available_bytes(), TOTAL, "every byte came back");
    assert_eq!(pool.leased_bytes(), 0);

    // Close with tickets in line: each hears it once.
    let hold = pool.acquire(TOTAL, Wait::Forever).unwrap();
    let closing: Vec<Ticket> = (0..5).map(|_| pool.enqueue(1).unwrap()).collect();
    for t in &closing {
        pool.notify_ticket(*t, &n, t.id).unwrap();
    }
    pool.close();
    let mut seen = Vec::new();
    while seen.len() < closing.len() {
        seen.extend(drain_ready(&n));
    }
    let want: Vec<Event> = closing.iter().map(|&t| Event { ticket: t, user: t.id, decision: Decision::Closed }).collect();
    assert_eq!(seen, want);
    pool.release(hold.id).unwrap();
    assert_eq!(pool.available_bytes(), TOTAL);
    println!("{label}: {} tickets: {tally:?}; close: {} events", PRODUCERS * ops, seen.len());
}

#[test]
fn random_cancellations_lose_no_event_and_no_byte() {
    stress("in-process", Pool::new(TOTAL).unwrap());
}

#[test]
fn random_cancellations_on_a_shared_pool_lose_no_event_and_no_byte() {
    let name = format!("notify-stress-{}", std::process::id());
    let _ = shared::unlink(&name);
    let pool = Pool::open_shared(&name, TOTAL, OpenFlags { create: true, ..OpenFlags::default() }).unwrap();
    stress("shared", pool);
    let _ = shared::unlink(&name);
}
