//! Model checking of the engine's synchronisation with loom: every
//! interleaving (up to LOOM_MAX_PREEMPTIONS preemptions) of the scenarios
//! below is run, and each must end with every byte accounted for, no request
//! granted twice, and no thread left waiting (loom reports a deadlock).
//!
//! Run: RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!      LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom -- --test-threads=1
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use loom::thread;
use mmpool::pool::sync::Arc;
use mmpool::{Error, Pool, Wait};

static EXPLORED: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` under loom and prints how many interleavings were explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let before = EXPLORED.load(Ordering::Relaxed);
    loom::model(move || {
        EXPLORED.fetch_add(1, Ordering::Relaxed);
        f();
    });
    // Tests run on parallel threads, so the count is approximate per test but
    // the sum over the run is exact.
    println!("loom: {name}: {} interleavings", EXPLORED.load(Ordering::Relaxed) - before);
}

/// Conservation: nothing waits, and free plus leased is the total.
fn assert_whole(pool: &Pool) {
    let s = pool.stats();
    assert_eq!(s.waiters, 0);
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes(), "{s:?}");
}

fn expired() -> Wait {
    Wait::Until(Instant::now())
}

#[test]
fn acquire_and_release_race() {
    model("acquire_and_release_race", || {
        let pool = Pool::new(2).unwrap();
        let p = pool.clone();
        let t = thread::spawn(move || {
            let l = p.acquire(2, Wait::Forever).unwrap();
            assert_eq!(p.available_bytes(), 0, "a 2-byte lease of 2 leaves nothing");
            p.release(l.id).unwrap();
        });
        let l = pool.acquire(1, Wait::Forever).unwrap();
        pool.release(l.id).unwrap();
        t.join().unwrap();
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 2);
    });
}

#[test]
fn one_release_hands_off_to_several_waiters_in_order() {
    model("one_release_hands_off_to_several_waiters_in_order", || {
        let pool = Pool::new(2).unwrap();
        let hold = pool.acquire(2, Wait::Forever).unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let p = pool.clone();
                thread::spawn(move || {
                    let l = p.acquire(1, Wait::Forever).unwrap();
                    p.release(l.id).unwrap();
                    l.id
                })
            })
            .collect();
        pool.release(hold.id).unwrap();
        let ids: Vec<u64> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_ne!(ids[0], ids[1], "one grant, one lease");
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 2);
    });
}

#[test]
fn timeout_races_a_grant() {
    model("timeout_races_a_grant", || {
        let pool = Pool::new(1).unwrap();
        let hold = pool.acquire(1, Wait::Forever).unwrap();
        let p = pool.clone();
        // A deadline already past: the waiter gives up at its first look,
        // racing the release that would grant it.
        let t = thread::spawn(move || match p.acquire(1, expired()) {
            Ok(l) => {
                p.release(l.id).unwrap();
                true
            }
            Err(Error::Timeout { .. }) => false,
            Err(e) => panic!("unexpected {e:?}"),
        });
        pool.release(hold.id).unwrap();
        t.join().unwrap();
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 1);
    });
}

#[test]
fn head_timeout_hands_off_to_the_next_in_line() {
    model("head_timeout_hands_off_to_the_next_in_line", || {
        let pool = Pool::new(2).unwrap();
        let hold = pool.acquire(1, Wait::Forever).unwrap();
        let p = pool.clone();
        // The head wants 2 (only 1 free) and gives up; the 1-byte request
        // behind it must then be granted without any release.
        let head = thread::spawn(move || p.acquire(2, expired()).is_ok());
        let second = pool.acquire(1, Wait::Forever).unwrap();
        let head_got_it = head.join().unwrap();
        assert!(!head_got_it, "2 bytes were never free");
        pool.release(second.id).unwrap();
        pool.release(hold.id).unwrap();
        assert_whole(&pool);
    });
}

#[test]
fn cancel_races_a_grant() {
    model("cancel_races_a_grant", || {
        let pool = Pool::new(1).unwrap();
        let hold = pool.acquire(1, Wait::Forever).unwrap();
        let ticket = pool.enqueue(1).unwrap();
        let p = pool.clone();
        let t = thread::spawn(move || p.cancel_ticket(ticket).unwrap());
        pool.release(hold.id).unwrap();
        t.join().unwrap();
        // Granted or not, the cancel returned everything.
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 1);
    });
}

#[test]
fn close_races_a_wait() {
    model("close_races_a_wait", || {
        let pool = Pool::new(1).unwrap();
        let hold = pool.acquire(1, Wait::Forever).unwrap();
        let p = pool.clone();
        let t = thread::spawn(move || p.acquire(1, Wait::Forever));
        let p2 = pool.clone();
        let closer = thread::spawn(move || p2.close());
        pool.release(hold.id).unwrap();
        closer.join().unwrap();
        match t.join().unwrap() {
            Ok(l) => pool.release(l.id).unwrap(),
            Err(e) => assert_eq!(e, Error::Closed),
        }
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 1);
    });
}

#[test]
fn lease_growth_races_its_release() {
    model("lease_growth_races_its_release", || {
        let pool = Pool::new(4).unwrap();
        let lease = pool.acquire(2, Wait::Forever).unwrap();
        let p = pool.clone();
        let grower = thread::spawn(move || p.resize_lease(lease.id, 4, Wait::Forever));
        pool.release(lease.id).unwrap();
        match grower.join().unwrap() {
            // Grown before the release: the release returned all 4.
            Ok(l) => assert_eq!(l.nbytes, 4),
            Err(e) => assert!(matches!(e, Error::InvalidLease(_)), "{e:?}"),
        }
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 4);
    });
}

#[test]
fn pool_resize_races_a_waiter() {
    model("pool_resize_races_a_waiter", || {
        let pool = Pool::new(2).unwrap();
        let hold = pool.acquire(2, Wait::Forever).unwrap();
        let p = pool.clone();
        let t = thread::spawn(move || p.acquire(2, Wait::Forever));
        pool.set_total(4).unwrap(); // 2 more: the waiter fits without a release
        let l = t.join().unwrap().unwrap();
        pool.release(l.id).unwrap();
        pool.release(hold.id).unwrap();
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 4);
    });
}

#[test]
fn shrinking_the_pool_fails_a_waiter_that_no_longer_fits() {
    model("shrinking_the_pool_fails_a_waiter_that_no_longer_fits", || {
        let pool = Pool::new(2).unwrap();
        let hold = pool.acquire(2, Wait::Forever).unwrap();
        let p = pool.clone();
        let t = thread::spawn(move || p.acquire(2, Wait::Forever));
        pool.set_total(1).unwrap();
        pool.release(hold.id).unwrap();
        assert!(matches!(t.join().unwrap(), Err(Error::ExceedsCapacity { requested: 2, total: 1 })));
        assert_whole(&pool);
        assert_eq!(pool.available_bytes(), 1);
    });
}

#[test]
fn concurrent_releases_of_one_lease_return_it_once() {
    model("concurrent_releases_of_one_lease_return_it_once", || {
        let pool = Pool::new(3).unwrap();
        let lease = pool.acquire(2, Wait::Forever).unwrap();
        let p = pool.clone();
        let t = thread::spawn(move || p.release(lease.id).unwrap());
        pool.release(lease.id).unwrap();
        t.join().unwrap();
        assert_eq!(pool.available_bytes(), 3);
        let _keep: Arc<Pool> = pool;
    });
}
