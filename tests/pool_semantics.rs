//! The engine's rules, one test each: accounting, strict FIFO, tickets,
//! timeouts, close, resizes, stats and the lifetime of a pool.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use mmpool::pool::PoolCore;
use mmpool::{Error, Pool, Ticket, Wait};

const FOREVER: Wait = Wait::Forever;

fn now() -> Wait {
    Wait::timeout_ns(0)
}

fn within(ms: u64) -> Wait {
    Wait::timeout_ns(ms * 1_000_000)
}

/// Blocks until `pool` has `n` waiters (a condition, not a guess at timing).
fn until_waiters(pool: &Pool, n: u64) {
    while pool.stats().waiters != n {
        thread::yield_now();
    }
}

fn assert_whole(pool: &Pool) {
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes());
}

#[test]
fn acquire_and_release_move_exactly_the_leased_bytes() {
    let pool = Pool::new(100).unwrap();
    let a = pool.acquire(30, FOREVER).unwrap();
    let b = pool.try_acquire(70).unwrap();
    assert_eq!((a.nbytes, b.nbytes), (30, 70));
    assert_eq!(pool.available_bytes(), 0);
    assert_eq!(pool.leased_bytes(), 100);
    pool.release(a.id).unwrap();
    assert_eq!(pool.available_bytes(), 30);
    pool.release(b.id).unwrap();
    assert_eq!(pool.available_bytes(), 100);
}

#[test]
fn release_is_idempotent_and_the_pool_record_decides_the_bytes() {
    let pool = Pool::new(100).unwrap();
    let lease = pool.acquire(40, FOREVER).unwrap();
    pool.release(lease.id).unwrap();
    pool.release(lease.id).unwrap();
    assert_eq!(pool.available_bytes(), 100);
}

#[test]
fn ids_never_repeat_and_foreign_ids_are_refused() {
    let a = Pool::new(10).unwrap();
    let b = Pool::new(10).unwrap();
    let la = a.acquire(1, FOREVER).unwrap();
    let lb = b.acquire(1, FOREVER).unwrap();
    assert_ne!(la.id, lb.id);
    assert!(matches!(b.release(la.id), Err(Error::InvalidLease(_))));
    assert!(matches!(a.release(0), Err(Error::InvalidLease(_))));
    assert!(matches!(a.release(la.id + 1_000), Err(Error::InvalidLease(_))));
    // The failed releases changed nothing.
    assert_eq!((a.available_bytes(), b.available_bytes()), (9, 9));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let l = a.acquire(1, FOREVER).unwrap();
        assert!(seen.insert(l.id), "id {} issued twice", l.id);
        a.release(l.id).unwrap();
    }
}

#[test]
fn requests_above_the_total_fail_without_reserving() {
    let pool = Pool::new(100).unwrap();
    for result in [pool.acquire(101, FOREVER), pool.try_acquire(101), pool.acquire(u64::MAX, now())] {
        assert!(matches!(result, Err(Error::ExceedsCapacity { total: 100, .. })), "{result:?}");
    }
    assert!(matches!(pool.enqueue(101), Err(Error::ExceedsCapacity { .. })));
    assert_eq!(pool.available_bytes(), 100);
    assert_eq!(pool.stats().capacity_rejections, 4);
}

#[test]
fn totals_out_of_range_are_invalid() {
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(Pool::new(mmpool::pool::MAX_TOTAL + 1), Err(Error::InvalidArgument(_))));
    let big = Pool::new(mmpool::pool::MAX_TOTAL).unwrap();
    // Sizes beyond 4 GiB work like any other.
    let l = big.acquire(600 << 30, FOREVER).unwrap();
    assert_eq!(big.available_bytes(), mmpool::pool::MAX_TOTAL - (600 << 30));
    big.release(l.id).unwrap();
}

#[test]
fn a_request_waits_behind_earlier_ones_even_when_it_would_fit() {
    let pool = Pool::new(10).unwrap();
    let hold = pool.acquire(8, FOREVER).unwrap();
    let big = pool.enqueue(6).unwrap(); // needs 6, only 2 free: waits
    // 1 byte would fit, but someone is in line: no jumping.
    assert!(matches!(pool.try_acquire(1), Err(Error::WouldBlock { queued: true, .. })));
    let small = pool.enqueue(1).unwrap();
    assert!(matches!(pool.wait_ticket(small, now()), Err(Error::Timeout { .. })));
    pool.release(hold.id).unwrap();
    // Both are granted, in order, by the one release.
    let big = pool.wait_ticket(big, now()).unwrap();
    let small = pool.wait_ticket(small, now()).unwrap();
    assert_eq!((big.nbytes, small.nbytes), (6, 1));
    assert_eq!(pool.available_bytes(), 3);
}

#[test]
fn zero_byte_requests_are_granted_at_once_even_with_a_line() {
    let pool = Pool::new(10).unwrap();
    let hold = pool.acquire(10, FOREVER).unwrap();
    let _waiting = pool.enqueue(5).unwrap();
    let zero = pool.try_acquire(0).unwrap();
    assert_eq!(zero.nbytes, 0);
    let zero2 = pool.acquire(0, now()).unwrap();
    pool.release(zero.id).unwrap();
    pool.release(zero2.id).unwrap();
    pool.release(hold.id).unwrap();
}

#[test]
fn threads_are_granted_in_the_order_they_queued() {
    const N: usize = 12;
    let pool = Pool::new(1).unwrap();
    let hold = pool.acquire(1, FOREVER).unwrap();
    // Tickets are taken in a known order; each thread then waits on its own.
    let tickets: Vec<Ticket> = (0..N).map(|_| pool.enqueue(1).unwrap()).collect();
    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = tickets
        .into_iter()
        .enumerate()
        .rev() // start the threads in the opposite order to their tickets
        .map(|(i, t)| {
            let (pool, order) = (pool.clone(), order.clone());
            thread::spawn(move || {
                let lease = pool.wait_ticket(t, FOREVER).unwrap();
                order.lock().unwrap().push(i);
                pool.release(lease.id).unwrap();
            })
        })
        .collect();
    pool.release(hold.id).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..N).collect::<Vec<_>>());
    assert_whole(&pool);
}

#[test]
fn blocking_acquirers_are_granted_in_arrival_order() {
    const N: u64 = 8;
    let pool = Pool::new(1).unwrap();
    let hold = pool.acquire(1, FOREVER).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for i in 0..N {
        let (p, order) = (pool.clone(), order.clone());
        handles.push(thread::spawn(move || {
            let lease = p.acquire(1, FOREVER).unwrap();
            order.lock().unwrap().push(i);
            p.release(lease.id).unwrap();
        }));
        // The next thread starts only once this one is in line.
        until_waiters(&pool, i + 1);
    }
    pool.release(hold.id).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..N).collect::<Vec<_>>());
}

#[test]
fn a_large_request_is_not_starved_by_a_stream_of_small_ones() {
    let pool = Pool::new(100).unwrap();
    let stop = Arc::new(AtomicUsize::new(0));
    let streamers: Vec<_> = (0..4)
        .map(|_| {
            let (p, stop) = (pool.clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while stop.load(Ordering::Relaxed) == 0 {
                    let l = p.acquire(30, FOREVER).unwrap();
                    std::hint::black_box(&l);
                    p.release(l.id).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    // Let the stream run until it has certainly made grants.
    while pool.stats().grants < 1000 {
        thread::yield_now();
    }
    let big = pool.enqueue(90).unwrap();
    // Read after the big request joined the line: from then on only the
    // requests ahead of it (at most one per streamer) can be granted before
    // it, and none after it until it is released (90 of 100 leaves too little).
    let before = pool.stats().grants;
    let lease = pool.wait_ticket(big, FOREVER).unwrap();
    let after = pool.stats().grants;
    stop.store(1, Ordering::Relaxed);
    pool.release(lease.id).unwrap();
    for s in streamers {
        s.join().unwrap();
    }
    // `grants` counts leases recorded, the big one included.
    assert!(after - before <= 4 + 1, "{} grants overtook the big request", after - before - 1);
    assert_whole(&pool);
}

#[test]
fn a_head_waiter_that_times_out_lets_the_ones_behind_proceed() {
    let pool = Pool::new(10).unwrap();
    let hold = pool.acquire(5, FOREVER).unwrap();
    let p = pool.clone();
    let head = thread::spawn(move || p.acquire(10, within(50)));
    until_waiters(&pool, 1);
    let behind = pool.enqueue(3).unwrap(); // fits, but waits behind the head
    assert!(matches!(head.join().unwrap(), Err(Error::Timeout { requested: 10 })));
    // The head left the line: the one behind is granted without anyone releasing.
    let lease = pool.wait_ticket(behind, within(10_000)).unwrap();
    assert_eq!(lease.nbytes, 3);
    assert_eq!(pool.stats().timeouts, 1);
    pool.release(lease.id).unwrap();
    pool.release(hold.id).unwrap();
    assert_eq!(pool.available_bytes(), 10);
}

#[test]
fn a_ticket_keeps_its_place_across_timed_out_waits() {
    let pool = Pool::new(4).unwrap();
    let hold = pool.acquire(4, FOREVER).unwrap();
    let first = pool.enqueue(4).unwrap();
    let second = pool.enqueue(1).unwrap();
    for _ in 0..3 {
        assert!(matches!(pool.wait_ticket(first, within(1)), Err(Error::Timeout { .. })));
    }
    pool.release(hold.id).unwrap();
    // Still first: it got the bytes, the second still waits.
    let lease = pool.wait_ticket(first, now()).unwrap();
    assert!(matches!(pool.wait_ticket(second, now()), Err(Error::Timeout { .. })));
    pool.release(lease.id).unwrap();
    assert_eq!(pool.wait_ticket(second, now()).unwrap().nbytes, 1);
}

#[test]
fn cancelling_returns_granted_bytes_and_is_idempotent() {
    let pool = Pool::new(10).unwrap();
    let granted = pool.enqueue(6).unwrap(); // granted at once, not yet redeemed
    assert_eq!(pool.available_bytes(), 4);
    pool.cancel_ticket(granted).unwrap();
    assert_eq!(pool.available_bytes(), 10);
    pool.cancel_ticket(granted).unwrap();
    assert!(matches!(pool.wait_ticket(granted, now()), Err(Error::InvalidLease(_))));
    let other = Pool::new(10).unwrap();
    assert!(matches!(other.cancel_ticket(granted), Err(Error::InvalidLease(_))));
    // A ticket in line is not a lease.
    let hold = pool.acquire(10, FOREVER).unwrap();
    let waiting = pool.enqueue(1).unwrap();
    assert!(matches!(pool.release(waiting.id), Err(Error::InvalidLease(_))));
    pool.cancel_ticket(waiting).unwrap();
    pool.release(hold.id).unwrap();
    assert_eq!(pool.stats().waiters, 0);
    assert_eq!(pool.available_bytes(), 10);
}

#[test]
fn close_wakes_every_waiter_and_refuses_new_requests_but_takes_releases() {
    let pool = Pool::new(10).unwrap();
    let hold = pool.acquire(10, FOREVER).unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let p = pool.clone();
            let h = thread::spawn(move || p.acquire(1 + i, FOREVER));
            until_waiters(&pool, i + 1);
            h
        })
        .collect();
    pool.close();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Err(Error::Closed));
    }
    assert_eq!(pool.acquire(1, FOREVER), Err(Error::Closed));
    assert_eq!(pool.try_acquire(0), Err(Error::Closed));
    assert!(matches!(pool.enqueue(1), Err(Error::Closed)));
    pool.release(hold.id).unwrap();
    assert_eq!(pool.available_bytes(), 10);
    pool.close(); // twice is fine
    assert_eq!(pool.stats().closed_rejections, 6);
}

#[test]
fn shrinking_a_lease_returns_bytes_and_growing_waits_in_line() {
    let pool = Pool::new(100).unwrap();
    let a = pool.acquire(60, FOREVER).unwrap();
    let a = pool.resize_lease(a.id, 20, FOREVER).unwrap();
    assert_eq!((a.nbytes, pool.available_bytes()), (20, 80));
    let b = pool.acquire(70, FOREVER).unwrap();
    // Growing by 20 needs 20 of the 10 free: it times out and keeps its size.
    assert!(matches!(pool.resize_lease(a.id, 40, within(10)), Err(Error::Timeout { .. })));
    assert_eq!(pool.lease(a.id).unwrap().nbytes, 20);
    let p = pool.clone();
    let grower = thread::spawn(move || p.resize_lease(a.id, 40, FOREVER));
    until_waiters(&pool, 1);
    assert!(matches!(pool.try_acquire(1), Err(Error::WouldBlock { queued: true, .. })));
    pool.release(b.id).unwrap();
    assert_eq!(grower.join().unwrap().unwrap().nbytes, 40);
    assert_eq!(pool.available_bytes(), 60);
    assert!(matches!(pool.resize_lease(a.id, 101, FOREVER), Err(Error::ExceedsCapacity { .. })));
    pool.release(a.id).unwrap();
    assert!(matches!(pool.resize_lease(a.id, 1, FOREVER), Err(Error::InvalidLease(_))));
    assert_eq!(pool.available_bytes(), 100);
}

#[test]
fn changing_the_total_grants_or_fails_waiters_and_revokes_nothing() {
    let pool = Pool::new(10).unwrap();
    let hold = pool.acquire(8, FOREVER).unwrap();
    let waiting = pool.enqueue(5).unwrap();
    pool.set_total(13).unwrap(); // 5 free now: the waiter is granted
    let w = pool.wait_ticket(waiting, now()).unwrap();
    assert_eq!(pool.available_bytes(), 0);
    // Shrink below what is in use: nothing is revoked, nothing is available.
    pool.set_total(6).unwrap();
    assert_eq!(pool.stats().in_use_bytes, 13);
    assert_eq!(pool.available_bytes(), 0);
    let too_big = pool.enqueue(6).unwrap();
    pool.set_total(4).unwrap(); // the waiter no longer fits the total at all
    assert!(matches!(pool.wait_ticket(too_big, now()), Err(Error::ExceedsCapacity { requested: 6, total: 4 })));
    pool.release(hold.id).unwrap(); // 13 - 8 = 5 in use, total 4: still nothing free
    assert_eq!(pool.available_bytes(), 0);
    pool.release(w.id).unwrap();
    assert_eq!(pool.available_bytes(), 4);
    assert!(matches!(pool.set_total(0), Err(Error::InvalidArgument(_))));
}

#[test]
fn stats_count_what_happened() {
    let pool = Pool::new(10).unwrap();
    let a = pool.acquire(6, FOREVER).unwrap();
    let _ = pool.try_acquire(5); // would block
    let _ = pool.acquire(11, FOREVER); // capacity
    let _ = pool.acquire(5, within(1)); // timeout
    let p = pool.clone();
    let waiter = thread::spawn(move || p.acquire(5, FOREVER).unwrap());
    until_waiters(&pool, 1);
    let s = pool.stats();
    assert_eq!((s.waiters, s.outstanding_leases, s.in_use_bytes, s.available_bytes), (1, 1, 6, 4));
    pool.release(a.id).unwrap();
    let b = waiter.join().unwrap();
    let s = pool.stats();
    assert_eq!(s.total_bytes, 10);
    assert_eq!(s.grants, 2);
    assert_eq!(s.waited_grants, 1); // the timed-out request was never granted
    assert_eq!(s.would_blocks, 1);
    assert_eq!(s.capacity_rejections, 1);
    assert_eq!(s.timeouts, 1);
    assert_eq!(s.peak_in_use_bytes, 6);
    assert!(s.wait_ns_max > 0 && s.wait_ns_total >= s.wait_ns_max);
    pool.release(b.id).unwrap();
}

#[test]
fn leases_and_waiters_keep_the_pool_alive() {
    let pool = Pool::new(10).unwrap();
    let weak = Arc::downgrade(&pool);
    let lease = pool.acquire(3, FOREVER).unwrap();
    let keeper = pool.clone();
    drop(pool);
    assert!(weak.upgrade().is_some(), "a handle left keeps the pool");
    // The last handle goes; C would still hold the core's address.
    let core = keeper.core_ptr();
    drop(keeper);
    assert!(weak.upgrade().is_none(), "no handle is left");
    // The outstanding lease keeps the core: the pool is closed, its figures
    // readable and the lease releasable, which frees it.
    // SAFETY: the lease is outstanding, so the core is live until its release.
    let view = unsafe { &*core };
    assert!(view.is_closed());
    assert_eq!(view.available_bytes(), 7);
    assert_eq!(view.stats().outstanding_leases, 1);
    assert_eq!(view.handle_count(), 0);
    assert!(view.try_handle().is_none(), "no handle can be made from a retired pool");
    // SAFETY: as above; `view` is not used after.
    unsafe { PoolCore::release_raw(core, lease.id) }.unwrap();
}

#[test]
fn many_threads_with_timeouts_and_cancels_lose_no_bytes() {
    let pool = Pool::new(64).unwrap();
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let p = pool.clone();
            thread::spawn(move || {
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..3000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let n = x % 40;
                    match x % 5 {
                        0 => {
                            if let Ok(l) = p.try_acquire(n) {
                                p.release(l.id).unwrap();
                            }
                        }
                        1 => {
                            if let Ok(l) = p.acquire(n, Wait::timeout_ns(x % 20_000)) {
                                p.release(l.id).unwrap();
                                p.release(l.id).unwrap();
                            }
                        }
                        2 => {
                            let t = p.enqueue(n).unwrap();
                            if x % 3 == 0 {
                                p.cancel_ticket(t).unwrap();
                            } else {
                                match p.wait_ticket(t, Wait::timeout_ns(x % 50_000)) {
                                    Ok(l) => p.release(l.id).unwrap(),
                                    Err(_) => p.cancel_ticket(t).unwrap(),
                                }
                            }
                        }
                        3 => {
                            let l = p.acquire(n / 2, FOREVER).unwrap();
                            if let Ok(l) = p.resize_lease(l.id, n, Wait::timeout_ns(x % 10_000)) {
                                p.resize_lease(l.id, n / 4, FOREVER).unwrap();
                            }
                            p.release(l.id).unwrap();
                        }
                        _ => {
                            let l = p.acquire(n, FOREVER).unwrap();
                            p.release(l.id).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.available_bytes, s.outstanding_leases, s.waiters), (64, 0, 0));
    assert_whole(&pool);
}

#[test]
fn the_global_budget_is_split_evenly_and_floored() {
    use mmpool::pool::split_budget;
    assert_eq!(split_budget(2.0, 4).unwrap(), Some(1 << 29));
    assert_eq!(split_budget(1.0, 3).unwrap(), Some((1u64 << 30) / 3));
    assert_eq!(split_budget(0.5, 1).unwrap(), Some(1 << 29));
    assert_eq!(split_budget(0.0, 1).unwrap(), None);
    assert_eq!(split_budget(-1.0, 0).unwrap(), None);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(split_budget(bad, 1), Err(Error::InvalidArgument(_))));
    }
    assert!(matches!(split_budget(1.0, 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(split_budget(1e-12, 1), Err(Error::InvalidArgument(_))));
}
