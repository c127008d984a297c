//! The notifier: tickets registered with it become events behind one fd.
//! Every test checks the events (which ticket, which decision, in which
//! order), the fd's readability (by poll with no wait) and the pool's bytes.

use std::sync::Arc;

use mmpool::ffi::notify::*;
use mmpool::ffi::{mmpool_status::*, mmpool_ticket};
use mmpool::pool::Admission;
use mmpool::{Decision, Error, Event, Lease, Notifier, Pool, Ticket, Wait};

fn now() -> Wait {
    Wait::timeout_ns(0)
}

fn drain_all(n: &Notifier) -> Vec<Event> {
    let mut out = Vec::new();
    n.drain(&mut out, usize::MAX);
    out
}

fn granted(ticket: Ticket, user: u64) -> Event {
    Event { ticket, user, decision: Decision::Granted }
}

/// Free plus leased is the total, and nobody waits.
fn assert_whole(pool: &Pool) {
    assert_eq!(pool.stats().waiters, 0);
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes());
}

/// A pool of `total` bytes, all held by one lease, and `k` tickets of
/// `each` bytes in line behind it, registered with `n` (user value = index).
fn line_up(total: u64, each: u64, k: usize, n: &Notifier) -> (Arc<Pool>, Lease, Vec<Ticket>) {
    let pool = Pool::new(total).unwrap();
    let hold = pool.acquire(total, Wait::Forever).unwrap();
    let tickets: Vec<Ticket> = (0..k).map(|_| pool.enqueue(each).unwrap()).collect();
    for (i, t) in tickets.iter().enumerate() {
        pool.notify_ticket(*t, n, i as u64).unwrap();
    }
    (pool, hold, tickets)
}

#[test]
fn the_fd_turns_readable_when_a_registered_ticket_is_granted() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(10, 4, 1, &n);
    assert!(!n.is_readable(), "nothing decided yet");
    assert!(drain_all(&n).is_empty());
    pool.release(hold.id).unwrap();
    assert!(n.is_readable());
    assert_eq!(drain_all(&n), vec![granted(t[0], 0)]);
    assert!(!n.is_readable(), "the drain that empties the queue resets the fd");
    let lease = pool.wait_ticket(t[0], now()).unwrap();
    assert_eq!(lease, Lease { id: t[0].id, nbytes: 4 });
    pool.release(lease.id).unwrap();
    assert_whole(&pool);
}

#[test]
fn a_poll_in_another_thread_wakes_on_a_grant() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(10, 10, 1, &n);
    let fd = n.fd();
    let poller = std::thread::spawn(move || {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; the notifier outlives the join below.
        let rc = unsafe { libc::poll(&mut p, 1, -1) };
        (rc, p.revents & libc::POLLIN != 0)
    });
    pool.release(hold.id).unwrap();
    assert_eq!(poller.join().unwrap(), (1, true));
    assert_eq!(drain_all(&n), vec![granted(t[0], 0)]);
}

#[test]
fn drains_move_events_in_batches_oldest_first() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(5, 1, 5, &n);
    pool.release(hold.id).unwrap();
    let mut out = Vec::new();
    assert_eq!(n.drain(&mut out, 0), 0);
    assert!(n.is_readable(), "a drain of capacity 0 leaves the events");
    assert_eq!(n.drain(&mut out, 2), 2);
    assert!(n.is_readable(), "three events remain");
    assert_eq!(n.drain(&mut out, 2), 2);
    assert!(n.is_readable(), "one event remains");
    assert_eq!(n.drain(&mut out, 2), 1);
    assert!(!n.is_readable());
    assert_eq!(n.drain(&mut out, 2), 0);
    let want: Vec<Event> = t.iter().enumerate().map(|(i, &t)| granted(t, i as u64)).collect();
    assert_eq!(out, want);
}

#[test]
fn cancel_close_and_shrink_each_queue_their_decision() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(10, 0, 0, &n);
    let small = pool.enqueue(3).unwrap();
    let cancelled = pool.enqueue(4).unwrap();
    let big = pool.enqueue(9).unwrap();
    for (i, t) in [small, cancelled, big].iter().enumerate() {
        pool.notify_ticket(*t, &n, 100 + i as u64).unwrap();
    }
    assert!(t.is_empty());
    pool.cancel_ticket(cancelled).unwrap();
    assert_eq!(drain_all(&n), vec![Event { ticket: cancelled, user: 101, decision: Decision::Cancelled }]);
    pool.set_total(8).unwrap();
    assert_eq!(drain_all(&n), vec![Event { ticket: big, user: 102, decision: Decision::ExceedsCapacity { total: 8 } }]);
    pool.close();
    assert_eq!(drain_all(&n), vec![Event { ticket: small, user: 100, decision: Decision::Closed }]);
    assert!(!n.is_readable());
    assert_eq!(pool.wait_ticket(small, now()), Err(Error::Closed));
    assert!(matches!(pool.wait_ticket(big, now()), Err(Error::ExceedsCapacity { requested: 9, total: 8 })));
    assert!(matches!(pool.wait_ticket(cancelled, now()), Err(Error::InvalidLease(_))));
    pool.release(hold.id).unwrap();
    assert_whole(&pool);
}

#[test]
fn a_ticket_already_decided_queues_its_event_at_once() {
    let n = Notifier::new().unwrap();
    let pool = Pool::new(10).unwrap();
    let at_once = pool.enqueue(4).unwrap();
    let Admission::Queued(queued) = pool.acquire_or_enqueue(7).unwrap() else { panic!("4 of 10 are held") };
    pool.close();
    pool.notify_ticket(at_once, &n, 1).unwrap();
    pool.notify_ticket(queued, &n, 2).unwrap();
    assert!(n.is_readable());
    assert_eq!(
        drain_all(&n),
        vec![granted(at_once, 1), Event { ticket: queued, user: 2, decision: Decision::Closed }]
    );
    let lease = pool.wait_ticket(at_once, now()).unwrap();
    pool.release(lease.id).unwrap();
    assert_eq!(pool.wait_ticket(queued, now()), Err(Error::Closed));
    assert_whole(&pool);
}

#[test]
fn a_ticket_registers_with_one_notifier_once() {
    let (a, b) = (Notifier::new().unwrap(), Notifier::new().unwrap());
    let (pool, hold, t) = line_up(4, 4, 1, &a);
    assert!(matches!(pool.notify_ticket(t[0], &a, 9), Err(Error::InvalidArgument(_))));
    assert!(matches!(pool.notify_ticket(t[0], &b, 9), Err(Error::InvalidArgument(_))));
    pool.release(hold.id).unwrap();
    assert_eq!(drain_all(&a), vec![granted(t[0], 0)], "the first registration stands");
    assert!(drain_all(&b).is_empty() && !b.is_readable());
    // Decided, still not redeemed: registering again is still refused.
    assert!(matches!(pool.notify_ticket(t[0], &b, 9), Err(Error::InvalidArgument(_))));
    assert!(drain_all(&a).is_empty(), "one event per ticket");
}

#[test]
fn tickets_of_another_pool_redeemed_or_cancelled_are_refused() {
    let n = Notifier::new().unwrap();
    let (pool, hold, _) = line_up(4, 0, 0, &n);
    let other = Pool::new(4).unwrap();
    let foreign = other.enqueue(1).unwrap();
    assert!(matches!(pool.notify_ticket(foreign, &n, 0), Err(Error::InvalidLease(_))));
    assert!(matches!(pool.notify_ticket(Ticket { id: 0 }, &n, 0), Err(Error::InvalidLease(_))));
    assert!(matches!(pool.notify_ticket(Ticket { id: hold.id }, &n, 0), Err(Error::InvalidLease(_))));
    let cancelled = pool.enqueue(1).unwrap();
    pool.cancel_ticket(cancelled).unwrap();
    assert!(matches!(pool.notify_ticket(cancelled, &n, 0), Err(Error::InvalidLease(_))));
    pool.release(hold.id).unwrap();
    let redeemed = pool.enqueue(1).unwrap();
    let lease = pool.wait_ticket(redeemed, now()).unwrap();
    assert!(matches!(pool.notify_ticket(redeemed, &n, 0), Err(Error::InvalidLease(_))));
    assert!(drain_all(&n).is_empty() && !n.is_readable());
    pool.release(lease.id).unwrap();
    other.cancel_ticket(foreign).unwrap();
}

#[test]
fn a_grant_then_a_cancel_is_one_event_and_the_bytes_go_back() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(6, 6, 1, &n);
    pool.release(hold.id).unwrap();
    pool.cancel_ticket(t[0]).unwrap();
    assert_eq!(drain_all(&n), vec![granted(t[0], 0)], "decided once, as granted");
    assert!(matches!(pool.wait_ticket(t[0], now()), Err(Error::InvalidLease(_))));
    assert_eq!(pool.available_bytes(), 6);
    assert_whole(&pool);
}

#[test]
fn a_wait_that_leaves_the_line_queues_a_cancelled_event() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(2, 1, 1, &n);
    assert!(matches!(pool.wait_ticket_or_leave(t[0], now()), Err(Error::Timeout { .. })));
    assert_eq!(drain_all(&n), vec![Event { ticket: t[0], user: 0, decision: Decision::Cancelled }]);
    pool.release(hold.id).unwrap();
    assert!(drain_all(&n).is_empty());
    assert_whole(&pool);
}

#[test]
fn ten_thousand_tickets_on_one_fd_are_granted_in_order() {
    const K: usize = 10_000;
    let n = Notifier::new().unwrap();
    let pool = Pool::new(K as u64).unwrap();
    let holds: Vec<Lease> = (0..100).map(|_| pool.acquire(100, Wait::Forever).unwrap()).collect();
    let tickets: Vec<Ticket> = (0..K).map(|_| pool.enqueue(1).unwrap()).collect();
    for (i, t) in tickets.iter().enumerate() {
        pool.notify_ticket(*t, &n, i as u64).unwrap();
    }
    assert_eq!(pool.stats().waiters, K as u64);
    let mut seen = Vec::with_capacity(K);
    for (k, hold) in holds.iter().enumerate() {
        assert!(!n.is_readable());
        pool.release(hold.id).unwrap();
        assert!(n.is_readable());
        while n.drain(&mut seen, 37) == 37 {}
        assert_eq!(seen.len(), 100 * (k + 1), "each release of 100 bytes grants 100 one-byte tickets");
    }
    let want: Vec<Event> = tickets.iter().enumerate().map(|(i, &t)| granted(t, i as u64)).collect();
    assert_eq!(seen, want, "in order of arrival");
    for t in &tickets {
        let lease = pool.wait_ticket(*t, now()).unwrap();
        pool.release(lease.id).unwrap();
    }
    assert_whole(&pool);
}

#[test]
fn freeing_the_notifier_leaves_its_tickets_in_line() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(3, 1, 3, &n);
    let clone = n.clone();
    drop(n);
    pool.release(hold.id).unwrap();
    assert_eq!(drain_all(&clone).len(), 3, "a clone is the same notifier, still alive");
    let m = Notifier::new().unwrap();
    let (pool2, hold2, t2) = line_up(3, 1, 3, &m);
    drop(m);
    pool2.cancel_ticket(t2[2]).unwrap();
    pool2.release(hold2.id).unwrap();
    for t in [t[0], t[1], t[2], t2[0], t2[1]] {
        let p = if t2.contains(&t) { &pool2 } else { &pool };
        let lease = p.wait_ticket(t, now()).unwrap();
        p.release(lease.id).unwrap();
    }
    assert_whole(&pool);
    assert_whole(&pool2);
}

#[test]
fn dropping_the_pool_closes_its_registered_tickets() {
    let n = Notifier::new().unwrap();
    let (pool, hold, t) = line_up(2, 2, 2, &n);
    drop(pool);
    assert_eq!(
        drain_all(&n),
        vec![
            Event { ticket: t[0], user: 0, decision: Decision::Closed },
            Event { ticket: t[1], user: 1, decision: Decision::Closed },
        ]
    );
    // The lease keeps the retired pool's memory; its release frees it.
    let _ = hold;
}

#[test]
fn threads_and_registered_tickets_share_one_line() {
    let n = Notifier::new().unwrap();
    let pool = Pool::new(1).unwrap();
    let hold = pool.acquire(1, Wait::Forever).unwrap();
    let first = pool.enqueue(1).unwrap();
    pool.notify_ticket(first, &n, 1).unwrap();
    let p = Arc::clone(&pool);
    let waiter = std::thread::spawn(move || {
        let l = p.acquire(1, Wait::Forever).unwrap();
        p.release(l.id).unwrap();
    });
    while pool.stats().waiters < 2 {
        std::thread::yield_now();
    }
    let last = pool.enqueue(1).unwrap();
    pool.notify_ticket(last, &n, 3).unwrap();
    pool.release(hold.id).unwrap();
    assert_eq!(drain_all(&n), vec![granted(first, 1)], "the thread behind it is not granted yet");
    let lease = pool.wait_ticket(first, now()).unwrap();
    pool.release(lease.id).unwrap();
    waiter.join().unwrap();
    assert_eq!(drain_all(&n), vec![granted(last, 3)], "after the thread, in order");
    let lease = pool.wait_ticket(last, now()).unwrap();
    pool.release(lease.id).unwrap();
    assert_whole(&pool);
}

// ---- the C ABI --------------------------------------------------------------

#[test]
fn the_c_calls_refuse_null_and_report_events_with_their_status() {
    let mut nf: *mut mmpool_notifier = std::ptr::null_mut();
    assert_eq!(mmpool_notifier_new(std::ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT);
    assert_eq!(mmpool_notifier_new(&mut nf), MMPOOL_OK);
    let mut fd = -7;
    assert_eq!(mmpool_notifier_fd(std::ptr::null(), &mut fd), MMPOOL_ERR_NULL_ARGUMENT);
    assert_eq!(mmpool_notifier_fd(nf, std::ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT);
    assert_eq!(fd, -7, "out-parameters are written only on success");
    assert_eq!(mmpool_notifier_fd(nf, &mut fd), MMPOOL_OK);
    assert!(fd >= 0);

    let mut pool = std::ptr::null_mut();
    assert_eq!(mmpool::ffi::pool::mmpool_init(4, &mut pool), MMPOOL_OK);
    let mut t = [mmpool_ticket { id: 0 }; 3];
    for (i, nbytes) in [4u64, 4, 5].iter().enumerate() {
        let st = mmpool::ffi::pool::mmpool_enqueue(pool, *nbytes, &mut t[i]);
        assert_eq!(st, if *nbytes > 4 { MMPOOL_ERR_EXCEEDS_CAPACITY } else { MMPOOL_OK });
    }
    assert_eq!(mmpool_ticket_notify(std::ptr::null_mut(), t[0], nf, 1), MMPOOL_ERR_NULL_ARGUMENT);
    assert_eq!(mmpool_ticket_notify(pool, t[0], std::ptr::null_mut(), 1), MMPOOL_ERR_NULL_ARGUMENT);
    assert_eq!(mmpool_ticket_notify(pool, t[0], nf, 1), MMPOOL_OK);
    assert_eq!(mmpool_ticket_notify(pool, t[0], nf, 1), MMPOOL_ERR_INVALID_ARGUMENT);
    assert_eq!(mmpool_ticket_notify(pool, t[1], nf, 2), MMPOOL_OK);
    assert_eq!(mmpool_ticket_notify(pool, mmpool_ticket { id: 12345 }, nf, 3), MMPOOL_ERR_INVALID_LEASE);
    assert_eq!(mmpool::ffi::pool::mmpool_close(pool), MMPOOL_OK);

    let blank = mmpool_event { ticket: mmpool_ticket { id: 0 }, user_data: 0, status: MMPOOL_ERR_INTERNAL };
    let mut ev = [blank; 4];
    let mut count = 99usize;
    assert_eq!(mmpool_notifier_drain(nf, std::ptr::null_mut(), 4, &mut count), MMPOOL_ERR_NULL_ARGUMENT);
    assert_eq!(mmpool_notifier_drain(nf, ev.as_mut_ptr(), 4, std::ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT);
    assert_eq!(count, 99);
    assert_eq!(mmpool_notifier_drain(nf, ev.as_mut_ptr(), 1, &mut count), MMPOOL_OK);
    assert_eq!(count, 1);
    assert_eq!(ev[0], mmpool_event { ticket: t[0], user_data: 1, status: MMPOOL_OK }, "granted at once");
    assert_eq!(mmpool_notifier_drain(nf, ev[1..].as_mut_ptr(), 3, &mut count), MMPOOL_OK);
    assert_eq!(count, 1);
    assert_eq!(ev[1], mmpool_event { ticket: t[1], user_data: 2, status: MMPOOL_ERR_CLOSED });
    assert_eq!(ev[2], blank, "nothing written past the count");
    assert_eq!(mmpool_notifier_drain(nf, ev.as_mut_ptr(), 4, &mut count), MMPOOL_OK);
    assert_eq!(count, 0);

    let mut lease = mmpool::ffi::mmpool_lease::default();
    assert_eq!(mmpool::ffi::pool::mmpool_ticket_wait(pool, t[0], 0, &mut lease), MMPOOL_OK);
    assert_eq!(mmpool::ffi::pool::mmpool_release(pool, lease), MMPOOL_OK);
    mmpool::ffi::pool::mmpool_unref(pool);
    mmpool_notifier_free(nf);
    mmpool_notifier_free(std::ptr::null_mut());
}
