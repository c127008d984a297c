//! Splitting a lease in two and merging two into one, on both backends: the
//! bytes move between leases and are never free meanwhile, the stats count
//! the leases exactly, and each misuse fails with its own code and message.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

#[path = "support/c_errors.rs"]
mod c_errors;

use std::ptr;
use std::thread;

use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::split::*;
use ::mmpool::ffi::{mmpool, mmpool_lease};
use ::mmpool::pool::shared::{self, OpenFlags};
use ::mmpool::pool::sync::Arc;
use ::mmpool::{Error, Pool, Wait};

const CREATE: OpenFlags = OpenFlags { create: true, exclusive: false, group: false };

/// A shared pool's name unique to this process and test; removed on drop.
struct Name(String);

impl Name {
    fn new(test: &str) -> Name {
        let name = format!("test-{}-split-{test}", std::process::id());
        let _ = shared::unlink(&name);
        Name(name)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shared::unlink(&self.0);
    }
}

/// Runs `check` on an in-process pool and on a shared one of `total` bytes.
fn on_both(test: &str, total: u64, check: impl Fn(&Arc<Pool>)) {
    check(&Pool::new(total).unwrap());
    let name = Name::new(test);
    check(&Pool::open_shared(&name.0, total, CREATE).unwrap());
}

fn assert_whole(pool: &Pool) {
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes(), "{:?}", pool.stats());
}

fn invalid_argument(r: Result<impl std::fmt::Debug, Error>) {
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

fn invalid_lease(r: Result<impl std::fmt::Debug, Error>) {
    assert!(matches!(r, Err(Error::InvalidLease(_))), "{r:?}");
}

#[test]
fn split_moves_bytes_into_a_new_lease_and_frees_none() {
    on_both("split", 100, |pool| {
        let a = pool.acquire(100, Wait::Forever).unwrap();
        let (left, b) = pool.split_lease(a.id, 30).unwrap();
        assert_eq!((left.id, left.nbytes, b.nbytes), (a.id, 70, 30));
        assert_ne!(b.id, a.id);
        assert_eq!(pool.lease(a.id).map(|l| l.nbytes), Some(70));
        assert_eq!(pool.lease(b.id).map(|l| l.nbytes), Some(30));
        let s = pool.stats();
        assert_eq!((s.available_bytes, s.in_use_bytes, s.outstanding_leases, s.grants), (0, 100, 2, 2));
        assert!(matches!(pool.try_acquire(1), Err(Error::WouldBlock { .. })), "a split frees nothing");
        assert_whole(pool);
        pool.release(b.id).unwrap();
        assert_eq!(pool.available_bytes(), 30, "the new lease returns what was split off");
        let (_, c) = pool.split_lease(a.id, 69).unwrap();
        pool.release(a.id).unwrap();
        assert_eq!(pool.available_bytes(), 31, "the old lease returns what it kept");
        pool.release(c.id).unwrap();
        let s = pool.stats();
        assert_eq!((s.available_bytes, s.outstanding_leases), (100, 0));
    });
}

#[test]
fn merge_moves_every_byte_and_ends_the_other_lease() {
    on_both("merge", 100, |pool| {
        let a = pool.acquire(40, Wait::Forever).unwrap();
        let b = pool.acquire(60, Wait::Forever).unwrap();
        let merged = pool.merge_leases(a.id, b.id).unwrap();
        assert_eq!((merged.id, merged.nbytes), (a.id, 100));
        assert_eq!(pool.lease(b.id), None);
        let s = pool.stats();
        assert_eq!((s.available_bytes, s.in_use_bytes, s.outstanding_leases, s.grants), (0, 100, 1, 2));
        assert!(matches!(pool.try_acquire(1), Err(Error::WouldBlock { .. })), "a merge frees nothing");
        pool.release(b.id).unwrap(); // the merged-away lease is released: a no-op
        assert_eq!(pool.available_bytes(), 0);
        pool.release(a.id).unwrap();
        let s = pool.stats();
        assert_eq!((s.available_bytes, s.outstanding_leases), (100, 0));
    });
}

#[test]
fn misuse_fails_and_changes_nothing() {
    on_both("misuse", 100, |pool| {
        let a = pool.acquire(10, Wait::Forever).unwrap();
        let b = pool.acquire(20, Wait::Forever).unwrap();
        let gone = pool.acquire(5, Wait::Forever).unwrap();
        pool.release(gone.id).unwrap();
        let other = Pool::new(10).unwrap();
        let foreign = other.acquire(1, Wait::Forever).unwrap();
        let before = pool.stats();
        invalid_argument(pool.split_lease(a.id, 0));
        invalid_argument(pool.split_lease(a.id, 10));
        invalid_argument(pool.split_lease(a.id, 11));
        invalid_lease(pool.split_lease(gone.id, 1));
        invalid_lease(pool.split_lease(foreign.id, 1));
        invalid_lease(pool.split_lease(0, 1));
        invalid_argument(pool.merge_leases(a.id, a.id));
        invalid_lease(pool.merge_leases(a.id, gone.id));
        invalid_lease(pool.merge_leases(gone.id, a.id));
        invalid_lease(pool.merge_leases(a.id, foreign.id));
        invalid_lease(pool.merge_leases(foreign.id, a.id));
        invalid_lease(pool.merge_leases(a.id, 0));
        assert_eq!(pool.stats(), before);
        assert_eq!((pool.lease(a.id).unwrap().nbytes, pool.lease(b.id).unwrap().nbytes), (10, 20));
        assert_eq!(other.lease(foreign.id).unwrap().nbytes, 1);
        assert_whole(pool);
    });
}

#[test]
fn leases_off_the_fast_path_split_and_merge_too() {
    // Leases granted after a wait keep their ticket's id; many leases held
    // by one thread spill out of the in-process table's slots.
    on_both("slow", 3000, |pool| {
        let many: Vec<_> = (0..1500).map(|_| pool.acquire(1, Wait::Forever).unwrap()).collect();
        let big = pool.acquire(1500, Wait::Forever).unwrap();
        let ticket = pool.enqueue(1000).unwrap();
        pool.release(big.id).unwrap();
        let waited = pool.wait_ticket(ticket, Wait::Forever).unwrap();
        let (_, part) = pool.split_lease(waited.id, 400).unwrap();
        let last = *many.last().unwrap();
        assert_eq!(pool.merge_leases(last.id, part.id).unwrap().nbytes, 401);
        assert_eq!(pool.merge_leases(waited.id, many[0].id).unwrap().nbytes, 601);
        assert_whole(pool);
        for l in many.iter().chain([&waited, &part]) {
            pool.release(l.id).unwrap();
        }
        let s = pool.stats();
        assert_eq!((s.available_bytes, s.outstanding_leases), (3000, 0));
    });
}

#[test]
fn a_shared_pools_new_lease_holds_a_handle_and_a_merged_one_lets_it_go() {
    let name = Name::new("handles");
    let pool = Pool::open_shared(&name.0, 100, CREATE).unwrap();
    let a = pool.acquire(50, Wait::Forever).unwrap();
    let held = Arc::strong_count(&pool);
    let (_, b) = pool.split_lease(a.id, 20).unwrap();
    assert_eq!(Arc::strong_count(&pool), held + 1);
    pool.merge_leases(b.id, a.id).unwrap();
    assert_eq!(Arc::strong_count(&pool), held);
    pool.release(b.id).unwrap();
    assert_eq!(Arc::strong_count(&pool), held - 1);
}

/// Splits, merges and releases racing: whatever wins, no byte is lost or
/// returned twice, and the stats agree with the pool's own records.
#[test]
fn split_and_merge_racing_releases_lose_no_byte() {
    on_both("race", 1 << 20, |pool| {
        thread::scope(|s| {
            for t in 0..3u64 {
                let pool = &*pool;
                s.spawn(move || {
                    let mut held: Vec<u64> = Vec::new();
                    let mut rng = 0x9e37_79b9u64 ^ t;
                    for _ in 0..3000 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        match (rng % 4, held.len()) {
                            (0, _) | (_, 0) => held.push(pool.acquire(1 + rng % 64, Wait::Forever).unwrap().id),
                            (1, n) => {
                                let id = held[(rng >> 8) as usize % n];
                                match pool.split_lease(id, 1) {
                                    Ok((_, b)) => held.push(b.id),
                                    Err(Error::InvalidArgument(_)) => {}
                                    Err(e) => panic!("{e}"),
                                }
                            }
                            (2, n) if n >= 2 => {
                                let from = held.swap_remove((rng >> 8) as usize % n);
                                pool.merge_leases(held[0], from).unwrap();
                            }
                            (_, n) => pool.release(held.swap_remove((rng >> 8) as usize % n)).unwrap(),
                        }
                    }
                    for id in held {
                        pool.release(id).unwrap();
                    }
                });
            }
            // One thread splits a lease that another releases at the same time.
            s.spawn(|| {
                for _ in 0..2000 {
                    let a = pool.acquire(8, Wait::Forever).unwrap();
                    thread::scope(|r| {
                        let split = r.spawn(|| pool.split_lease(a.id, 3));
                        pool.release(a.id).unwrap();
                        match split.join().unwrap() {
                            Ok((_, b)) => pool.release(b.id).unwrap(),
                            Err(e) => assert!(matches!(e, Error::InvalidLease(_)), "{e}"),
                        }
                    });
                }
            });
        });
        let s = pool.stats();
        assert_eq!((s.available_bytes, s.in_use_bytes, s.outstanding_leases), (1 << 20, 0, 0), "{s:?}");
    });
}

// ---- the C ABI ----------------------------------------------------------

use c_errors::expect_fail;


fn c_pool(total: u64) -> *mut mmpool {
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init(total, &mut p), MMPOOL_OK);
    p
}

#[test]
fn the_c_calls_write_only_on_success_and_say_why_they_fail() {
    let p = c_pool(100);
    let mut a = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 60, &mut a), MMPOOL_OK);
    let sentinel = mmpool_lease { id: 77, nbytes: 88 };
    let mut new = sentinel;
    expect_fail(mmpool_lease_split(ptr::null_mut(), &mut a, 1, &mut new), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_lease_split(p, ptr::null_mut(), 1, &mut new), MMPOOL_ERR_NULL_ARGUMENT, "`lease`");
    expect_fail(mmpool_lease_split(p, &mut a, 1, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_new`");
    expect_fail(mmpool_lease_split(p, &mut a, 0, &mut new), MMPOOL_ERR_INVALID_ARGUMENT, "mmpool_lease_split: invalid argument");
    expect_fail(mmpool_lease_split(p, &mut a, 60, &mut new), MMPOOL_ERR_INVALID_ARGUMENT, "which holds 60");
    let mut unknown = mmpool_lease { id: 12345, nbytes: 60 };
    expect_fail(mmpool_lease_split(p, &mut unknown, 1, &mut new), MMPOOL_ERR_INVALID_LEASE, "not issued by this pool");
    assert_eq!((a.nbytes, new, unknown.id), (60, sentinel, 12345));

    assert_eq!(mmpool_lease_split(p, &mut a, 25, &mut new), MMPOOL_OK);
    assert_eq!((a.nbytes, new.nbytes), (35, 25));
    assert_ne!(new.id, a.id);

    let before = a;
    expect_fail(mmpool_lease_merge(ptr::null_mut(), &mut a, new), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_lease_merge(p, ptr::null_mut(), new), MMPOOL_ERR_NULL_ARGUMENT, "`into`");
    expect_fail(mmpool_lease_merge(p, &mut a, a), MMPOOL_ERR_INVALID_ARGUMENT, "with itself");
    expect_fail(mmpool_lease_merge(p, &mut a, unknown), MMPOOL_ERR_INVALID_LEASE, "not issued by this pool");
    assert_eq!(a, before);
    assert_eq!(mmpool_lease_merge(p, &mut a, new), MMPOOL_OK);
    assert_eq!(a, mmpool_lease { id: before.id, nbytes: 60 });
    expect_fail(mmpool_lease_merge(p, &mut a, new), MMPOOL_ERR_INVALID_LEASE, "already released");
    assert_eq!(mmpool_release(p, new), MMPOOL_OK, "a merged-away lease releases as a no-op");
    assert_eq!(mmpool_available_bytes(p), 40);
    assert_eq!(mmpool_release(p, a), MMPOOL_OK);
    assert_eq!(mmpool_available_bytes(p), 100);
    mmpool_unref(p);
}
