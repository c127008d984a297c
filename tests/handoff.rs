//! Hand-offs of an in-process pool: a lease shared with N consumers (threads
//! here) whose bytes go back when the last part completes; tokens, parts,
//! claims, the producer's wait, expiry of unclaimed parts, and the C calls.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

#[path = "support/c_errors.rs"]
mod c_errors;

use std::ptr;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use ::mmpool::ffi::handoff::*;
use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
use ::mmpool::ffi::{mmpool, mmpool_handoff_stats, mmpool_handoff_token, mmpool_lease};
use ::mmpool::log::{set_sink, Level};
use ::mmpool::pool::shared::{self, OpenFlags};
use ::mmpool::pool::{Decision, Event, HandoffStats, Notifier, Token};
use ::mmpool::Ticket;
use ::mmpool::{Error, Pool, Wait};

fn assert_whole(pool: &Pool) {
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes(), "{:?}", pool.stats());
}

fn invalid_lease(r: Result<impl std::fmt::Debug, Error>) {
    assert!(matches!(r, Err(Error::InvalidLease(_))), "{r:?}");
}

#[test]
fn the_last_completion_returns_the_bytes_and_repeats_count_once() {
    let pool = Pool::new(100).unwrap();
    let lease = pool.acquire(60, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 3, None, false).unwrap();
    assert_eq!(token.parts, 3);
    let s = pool.stats();
    assert_eq!((s.available_bytes, s.in_use_bytes, s.outstanding_leases), (40, 60, 0), "the bytes stay taken");
    assert_eq!(
        pool.handoff_stats(),
        HandoffStats { outstanding: 1, held_bytes: 60, shared: 1, finished: 0, expired_parts: 0 }
    );
    assert_whole(&pool);
    pool.release(lease.id).unwrap(); // the lease ended when it was shared: a no-op
    assert_eq!(pool.available_bytes(), 40);
    pool.complete_part(&token, 0).unwrap();
    pool.complete_part(&token, 0).unwrap();
    pool.complete_part(&token, 2).unwrap();
    let info = pool.handoff(&token).unwrap().unwrap();
    assert_eq!((info.parts_left, info.nbytes), (1, 60));
    assert_eq!(pool.available_bytes(), 40, "a part is still open");
    assert!(matches!(pool.wait_handoff(&token, Wait::timeout_ns(0)), Err(Error::Timeout { .. })));
    pool.complete_part(&token, 1).unwrap();
    assert_eq!(pool.available_bytes(), 100);
    assert_eq!(pool.handoff(&token).unwrap(), None);
    pool.wait_handoff(&token, Wait::Forever).unwrap();
    pool.complete_part(&token, 1).unwrap(); // a finished hand-off: still a no-op
    assert_eq!(pool.available_bytes(), 100);
    assert_eq!(
        pool.handoff_stats(),
        HandoffStats { outstanding: 0, held_bytes: 0, shared: 1, finished: 1, expired_parts: 0 }
    );
}

#[test]
fn forged_altered_and_foreign_tokens_and_parts_out_of_range_are_refused() {
    let pool = Pool::new(100).unwrap();
    let other = Pool::new(100).unwrap();
    let lease = pool.acquire(10, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 2, None, false).unwrap();
    let theirs = other.share_lease(other.acquire(1, Wait::Forever).unwrap().id, 2, None, false).unwrap();
    for bad in [
        Token { nonce: token.nonce ^ 1, ..token },
        Token { parts: 64, ..token },
        Token { id: token.id + 1, ..token },
        Token { id: 0, ..token },
        Token { flags: 1, ..token },
        Token { offset: 4096, ..token },
        Token { flags: 1, offset: 4096, ..token },
        theirs,
    ] {
        invalid_lease(pool.complete_part(&bad, 0));
        invalid_lease(pool.claim_part(&bad, 0));
        invalid_lease(pool.wait_handoff(&bad, Wait::timeout_ns(0)));
    }
    invalid_lease(pool.complete_part(&token, 2));
    invalid_lease(pool.claim_part(&token, 2));
    assert_eq!(pool.handoff(&token).unwrap().unwrap().parts_left, 2, "nothing was completed");
    assert!(matches!(pool.share_lease(lease.id, 1, None, false), Err(Error::InvalidLease(_))), "shared already");
    let l = pool.acquire(1, Wait::Forever).unwrap();
    for parts in [0, 65] {
        assert!(matches!(pool.share_lease(l.id, parts, None, false), Err(Error::InvalidArgument(_))));
    }
    assert_eq!(pool.lease(l.id).map(|l| l.nbytes), Some(1), "a refused share leaves the lease");
    assert_eq!(other.handoff_stats().outstanding, 1);
}

#[test]
fn a_producer_that_keeps_its_lease_waits_for_the_consumers_then_releases() {
    let pool = Pool::new(100).unwrap();
    let lease = pool.acquire(100, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 4, None, true).unwrap();
    assert_eq!(pool.stats().outstanding_leases, 1);
    thread::scope(|s| {
        for part in 0..4 {
            let pool = &pool;
            s.spawn(move || pool.complete_part(&token, part).unwrap());
        }
        pool.wait_handoff(&token, Wait::Forever).unwrap();
        assert_eq!(pool.handoff(&token).unwrap(), None, "every part completed when the wait ends");
        assert_eq!(pool.available_bytes(), 0, "the lease is still the producer's");
    });
    pool.release(lease.id).unwrap();
    assert_eq!(pool.available_bytes(), 100);
}

#[test]
fn consumer_threads_complete_and_a_waiting_acquire_gets_the_bytes() {
    for n in [1u32, 2, 4] {
        let pool = Pool::new(64).unwrap();
        let lease = pool.acquire(64, Wait::Forever).unwrap();
        let token = pool.share_lease(lease.id, n, Some(Duration::from_secs(600)), false).unwrap();
        thread::scope(|s| {
            let pool = &pool;
            let next = s.spawn(move || pool.acquire(64, Wait::Forever).unwrap());
            for part in 0..n {
                s.spawn(move || {
                    pool.claim_part(&token, part).unwrap();
                    pool.claim_part(&token, part).unwrap();
                    pool.complete_part(&token, part).unwrap();
                    invalid_lease(pool.claim_part(&token, part));
                });
            }
            pool.wait_handoff(&token, Wait::Forever).unwrap();
            let l = next.join().unwrap();
            assert_eq!(l.nbytes, 64);
            pool.release(l.id).unwrap();
        });
        let h = pool.handoff_stats();
        assert_eq!((h.outstanding, h.finished, h.expired_parts), (0, 1, 0));
        assert_eq!(pool.available_bytes(), 64);
    }
}

/// Producers share leases with consumer threads fed through a channel;
/// each producer waits for its hand-off, then checks the bytes came back
/// (nothing else holds the pool's last bytes it looks at).
#[test]
fn producers_and_consumers_over_a_channel_lose_no_byte() {
    let pool = Pool::new(1 << 20).unwrap();
    let (send, recv) = std::sync::mpsc::channel::<(Token, u32)>();
    let recv = Mutex::new(recv);
    thread::scope(|s| {
        for _ in 0..3 {
            let (pool, recv) = (&pool, &recv);
            s.spawn(move || loop {
                let next = recv.lock().unwrap().recv();
                let Ok((token, part)) = next else { return };
                if part % 2 == 0 {
                    pool.claim_part(&token, part).unwrap();
                }
                pool.complete_part(&token, part).unwrap();
                pool.complete_part(&token, part).unwrap();
            });
        }
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let (pool, send) = (&pool, send.clone());
                s.spawn(move || {
                    for round in 0..300u64 {
                        let parts = (round % 4 + 1) as u32;
                        let lease = pool.acquire(1 + (round * 7 + p) % 1000, Wait::Forever).unwrap();
                        let token = pool.share_lease(lease.id, parts, None, round % 5 == 0).unwrap();
                        for part in (0..parts).rev() {
                            send.send((token, part)).unwrap();
                        }
                        pool.wait_handoff(&token, Wait::Forever).unwrap();
                        assert_eq!(pool.handoff(&token).unwrap(), None);
                        pool.release(lease.id).unwrap(); // kept: returns the bytes; shared: a no-op
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        drop(send);
    });
    let h = pool.handoff_stats();
    assert_eq!((h.outstanding, h.held_bytes, h.shared, h.finished), (0, 0, 900, 900));
    let st = pool.stats();
    assert_eq!((st.available_bytes, st.outstanding_leases), (1 << 20, 0));
}

#[test]
fn unclaimed_parts_expire_at_the_deadline_counted_and_logged_once() {
    let lines = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    set_sink(Some(Box::new(move |level, line| {
        if level == Level::Warn && line.contains("hand-off") {
            seen.lock().unwrap().push(line.to_string());
        }
    })));
    let pool = Pool::new(100).unwrap();
    let lease = pool.acquire(100, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 4, Some(Duration::from_millis(50)), false).unwrap();
    pool.claim_part(&token, 0).unwrap();
    pool.complete_part(&token, 1).unwrap();
    // The producer's wait collects the expiry at the deadline; part 0 is
    // claimed, so the hand-off stays open until it completes.
    assert!(matches!(pool.wait_handoff(&token, Wait::timeout_ns(300_000_000)), Err(Error::Timeout { .. })));
    let info = pool.handoff(&token).unwrap().unwrap();
    assert_eq!((info.parts_left, info.claimed), (1, 1));
    assert_eq!(pool.handoff_stats().expired_parts, 2);
    invalid_lease(pool.claim_part(&token, 3));
    assert_eq!(pool.available_bytes(), 0);
    pool.complete_part(&token, 0).unwrap();
    assert_eq!(pool.available_bytes(), 100);
    assert_eq!(pool.handoff_stats().expired_parts, 2);
    // Nobody claims anything: the whole hand-off expires.
    let lease = pool.acquire(30, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 2, Some(Duration::ZERO), false).unwrap();
    pool.wait_handoff(&token, Wait::Forever).unwrap();
    assert_eq!(pool.available_bytes(), 100);
    let h = pool.handoff_stats();
    assert_eq!((h.outstanding, h.finished, h.expired_parts), (0, 2, 4));
    set_sink(None);
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 2, "one line per hand-off: {lines:?}");
    assert!(lines[0].contains("2 part(s) nobody claimed") && lines[0].contains("1 part(s) still open"), "{lines:?}");
}

#[test]
fn a_waiting_acquire_gets_the_bytes_of_a_hand_off_that_expires() {
    let pool = Pool::new(10).unwrap();
    let lease = pool.acquire(10, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 3, Some(Duration::from_millis(20)), false).unwrap();
    // Nobody else calls the pool: the waiter itself wakes at the deadline.
    let l = pool.acquire(10, Wait::Forever).unwrap();
    assert_eq!(pool.handoff(&token).unwrap(), None);
    assert_eq!(pool.handoff_stats().expired_parts, 3);
    assert_eq!(pool.stats().futile_wakeups, 0, "waking for the deadline is no futile wake-up");
    pool.release(l.id).unwrap();
    // Every part claimed: the deadline passes, nothing expires, and the
    // producer's wait sleeps past it until its own time runs out.
    let lease = pool.acquire(10, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 2, Some(Duration::from_millis(20)), false).unwrap();
    pool.claim_part(&token, 0).unwrap();
    pool.claim_part(&token, 1).unwrap();
    assert!(matches!(pool.wait_handoff(&token, Wait::timeout_ns(100_000_000)), Err(Error::Timeout { .. })));
    assert_eq!(pool.handoff_stats().expired_parts, 3, "claimed parts do not expire");
    pool.complete_part(&token, 0).unwrap();
    pool.complete_part(&token, 1).unwrap();
    assert_eq!(pool.available_bytes(), 10);
}

#[test]
fn a_notifier_gets_one_event_when_the_hand_off_finishes() {
    let pool = Pool::new(100).unwrap();
    let n = Notifier::new().unwrap();
    let lease = pool.acquire(100, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 2, None, false).unwrap();
    pool.notify_handoff(&token, &n, 7).unwrap();
    pool.complete_part(&token, 0).unwrap();
    assert!(!n.is_readable(), "a part is still open");
    let mut events = Vec::new();
    assert_eq!(n.drain(&mut events, 8), 0);
    thread::scope(|s| {
        s.spawn(|| pool.complete_part(&token, 1).unwrap());
    });
    assert!(n.is_readable());
    assert_eq!(n.drain(&mut events, 8), 1);
    assert_eq!(events, [Event { ticket: Ticket { id: token.id }, user: 7, decision: Decision::HandoffFinished }]);
    assert_eq!(pool.available_bytes(), 100, "the event comes after the bytes are back");
    // A finished hand-off's event is queued at once.
    pool.notify_handoff(&token, &n, 8).unwrap();
    events.clear();
    assert_eq!(n.drain(&mut events, 8), 1);
    assert_eq!(events[0].user, 8);
    invalid_lease(pool.notify_handoff(&Token { nonce: 1, ..token }, &n, 9));
}

// ---- the C ABI ----------------------------------------------------------

use c_errors::expect_fail;

#[test]
fn the_c_calls_write_only_on_success_and_say_why_they_fail() {
    let mut p: *mut mmpool = ptr::null_mut();
    assert_eq!(mmpool_init(100, &mut p), MMPOOL_OK);
    let mut lease = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 70, &mut lease), MMPOOL_OK);
    let sentinel = mmpool_handoff_token { id: 7, nonce: 8, parts: 9, flags: 10, offset: 11 };
    let mut t = sentinel;
    let none = MMPOOL_NO_CLAIM_DEADLINE;
    expect_fail(mmpool_lease_share(ptr::null_mut(), lease, 2, none, 0, &mut t), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_lease_share(p, lease, 2, none, 0, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_token`");
    expect_fail(mmpool_lease_share(p, lease, 0, none, 0, &mut t), MMPOOL_ERR_INVALID_ARGUMENT, "1 to 64 parts");
    expect_fail(mmpool_lease_share(p, lease, 65, none, 0, &mut t), MMPOOL_ERR_INVALID_ARGUMENT, "1 to 64 parts");
    expect_fail(mmpool_lease_share(p, lease, 2, none, 4, &mut t), MMPOOL_ERR_INVALID_ARGUMENT, "unknown flags");
    let unknown = mmpool_lease { id: 99, nbytes: 1 };
    expect_fail(mmpool_lease_share(p, unknown, 2, none, 0, &mut t), MMPOOL_ERR_INVALID_LEASE, "not issued");
    assert_eq!(t, sentinel);
    assert_eq!(mmpool_lease_share(p, lease, 2, none, 0, &mut t), MMPOOL_OK);
    assert_eq!((t.parts, t.flags, t.offset), (2, 0, 0));
    assert_eq!(std::mem::size_of::<mmpool_handoff_token>(), 32);
    assert_ne!(t.id, 0);

    expect_fail(mmpool_handoff_complete(ptr::null_mut(), t, 0), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_handoff_claim(ptr::null_mut(), t, 0), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_handoff_wait(ptr::null_mut(), t, 0), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_handoff_complete(p, t, 2), MMPOOL_ERR_INVALID_LEASE, "out of range");
    for altered in [
        mmpool_handoff_token { flags: MMPOOL_TOKEN_PLACED, ..t },
        mmpool_handoff_token { flags: 2, ..t },
        mmpool_handoff_token { offset: 1 << 20, ..t },
        mmpool_handoff_token { parts: 3, ..t },
    ] {
        expect_fail(mmpool_handoff_complete(p, altered, 0), MMPOOL_ERR_INVALID_LEASE, "altered");
    }
    let forged = mmpool_handoff_token { nonce: t.nonce.wrapping_add(2), ..t };
    expect_fail(mmpool_handoff_complete(p, forged, 0), MMPOOL_ERR_INVALID_LEASE, "not issued by this pool");
    expect_fail(mmpool_handoff_wait(p, t, 0), MMPOOL_ERR_TIMEOUT, "timed out");
    assert_eq!(mmpool_handoff_claim(p, t, 1), MMPOOL_OK);
    assert_eq!(mmpool_handoff_complete(p, t, 0), MMPOOL_OK);
    assert_eq!(mmpool_available_bytes(p), 30);
    assert_eq!(mmpool_handoff_complete(p, t, 1), MMPOOL_OK);
    assert_eq!(mmpool_available_bytes(p), 100);
    assert_eq!(mmpool_handoff_wait(p, t, MMPOOL_WAIT_FOREVER), MMPOOL_OK);

    expect_fail(mmpool_handoff_notify(p, t, ptr::null_mut(), 1), MMPOOL_ERR_NULL_ARGUMENT, "`notifier`");

    let mut hs = mmpool_handoff_stats { outstanding: 5, ..Default::default() };
    expect_fail(mmpool_get_handoff_stats(p, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_stats`");
    assert_eq!(mmpool_get_handoff_stats(p, &mut hs), MMPOOL_OK);
    assert_eq!(hs, mmpool_handoff_stats { outstanding: 0, held_bytes: 0, shared: 1, finished: 1, expired_parts: 0 });
    mmpool_unref(p);
}

#[test]
fn a_shared_pool_hands_off_and_posts_the_notifier_event() {
    let name = format!("test-{}-handoff", std::process::id());
    let _ = shared::unlink(&name);
    let pool = Pool::open_shared(&name, 10, OpenFlags { create: true, exclusive: false, group: false }).unwrap();
    let lease = pool.acquire(4, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 1, None, false).unwrap();
    assert_eq!(pool.available_bytes(), 6);
    let n = Notifier::new().unwrap();
    pool.notify_handoff(&token, &n, 1).unwrap();
    invalid_lease(pool.notify_handoff(&Token { nonce: 1, ..token }, &n, 9));
    let mut events = Vec::new();
    assert_eq!(n.drain(&mut events, 8), 0, "not finished yet");
    pool.complete_part(&token, 0).unwrap();
    assert_eq!(pool.available_bytes(), 10);
    // The relay thread posts it; this wait ends at once if it has.
    let mut fd = libc::pollfd { fd: n.fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut fd, 1, 20_000) }, 1, "the event comes");
    assert_eq!(n.drain(&mut events, 8), 1);
    assert_eq!(events[0], Event { ticket: Ticket { id: token.id }, user: 1, decision: Decision::HandoffFinished });
    pool.notify_handoff(&token, &n, 2).unwrap(); // finished: at once
    assert_eq!(n.drain(&mut events, 8), 1);
    assert_eq!(events[1].user, 2);
    pool.release(lease.id).unwrap(); // shared away: a no-op
    assert_eq!(pool.available_bytes(), 10);
    drop(pool);
    let _ = shared::unlink(&name);
}
