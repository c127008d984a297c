//! In-process placed pools: every lease holds an aligned range of
//! `[0, total)`, grants stay strictly first come first served, and the
//! fragmentation figures are exact. A random sequence checks the ranges
//! and figures after every step; a threaded stress checks that no two live
//! ranges ever overlap.
#![cfg(not(loom))]

#[path = "support/placed_sequence.rs"]
mod placed_sequence;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::thread;

use mmpool::{Error, Pool, Ticket, Wait};

fn now() -> Wait {
    Wait::timeout_ns(0)
}

#[test]
fn alignment_must_be_a_power_of_two() {
    assert!(matches!(
        Pool::new_placed(1 << 20, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Pool::new_placed(1 << 20, 384),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Pool::new_placed(0, 256),
        Err(Error::InvalidArgument(_))
    ));
    let p = Pool::new_placed(1 << 20, mmpool::pool::DEFAULT_ALIGNMENT).unwrap();
    assert!(p.is_placed());
    assert_eq!(p.alignment(), 256);
    let q = Pool::new(1 << 20).unwrap();
    assert!(!q.is_placed());
    assert_eq!(q.alignment(), 0);
}

#[test]
fn leases_get_aligned_disjoint_offsets() {
    let p = Pool::new_placed(4096, 256).unwrap();
    let a = p.acquire(100, Wait::Forever).unwrap();
    let b = p.try_acquire(300).unwrap();
    let c = p.acquire(256, now()).unwrap();
    let offs: Vec<u64> = [a, b, c]
        .iter()
        .map(|l| p.lease_offset(l.id).unwrap())
        .collect();
    assert_eq!(offs, vec![0, 256, 768]);
    // Charged its size: 656 bytes leased, the slivers after a and b free.
    let s = p.stats();
    assert_eq!(s.in_use_bytes, 656);
    assert_eq!(s.available_bytes, 4096 - 656);
    assert_eq!(p.leased_bytes() + s.available_bytes, 4096);
    assert_eq!((s.free_ranges, s.largest_free_range), (3, 4096 - 1024));
    p.release(b.id).unwrap();
    assert!(matches!(p.lease_offset(b.id), Err(Error::InvalidLease(_))));
    let s = p.stats();
    assert_eq!((s.free_ranges, s.largest_free_range), (2, 4096 - 1024));
    // A 0-byte lease has no range and reads offset 0.
    let z = p.try_acquire(0).unwrap();
    assert_eq!(p.lease_offset(z.id).unwrap(), 0);
    let q = Pool::new(4096).unwrap();
    let l = q.acquire(10, now()).unwrap();
    assert!(matches!(
        q.lease_offset(l.id),
        Err(Error::InvalidArgument(_))
    ));
    let s = q.stats();
    assert_eq!((s.free_ranges, s.largest_free_range), (1, 4086));
    q.acquire(4086, now()).unwrap();
    let s = q.stats();
    assert_eq!((s.free_ranges, s.largest_free_range), (0, 0));
}

#[test]
fn fragmentation_blocks_a_fitting_byte_count_and_fifo_holds() {
    let p = Pool::new_placed(1024, 256).unwrap();
    placed_sequence::a_large_head_is_not_passed(&p, &p);
}

#[test]
fn a_cancelled_grant_frees_its_range() {
    let p = Pool::new_placed(1024, 256).unwrap();
    let a = p.try_acquire(1024).unwrap();
    let t: Ticket = p.enqueue(512).unwrap();
    p.release(a.id).unwrap();
    // Granted, never collected: cancelling returns the bytes and the range.
    p.cancel_ticket(t).unwrap();
    let s = p.stats();
    assert_eq!((s.available_bytes, s.largest_free_range), (1024, 1024));
}

#[test]
fn resize_shrinks_at_once_and_grows_in_place_only() {
    let p = Pool::new_placed(4096, 256).unwrap();
    let a = p.try_acquire(1024).unwrap();
    let b = p.try_acquire(1024).unwrap();
    assert_eq!(p.lease_offset(b.id).unwrap(), 1024);
    // Shrink: the tail is free at once, and placed there.
    assert_eq!(p.resize_lease(a.id, 300, now()).unwrap().nbytes, 300);
    assert_eq!(p.available_bytes(), 4096 - 1324);
    let c = p.try_acquire(500).unwrap();
    assert_eq!(p.lease_offset(c.id).unwrap(), 512);
    // Grow in place: 300 -> 512 fits before c; 513 does not.
    assert!(matches!(
        p.resize_lease(a.id, 513, now()),
        Err(Error::WouldBlock { queued: false, .. })
    ));
    assert_eq!(p.resize_lease(a.id, 512, now()).unwrap().nbytes, 512);
    assert_eq!(p.lease_offset(a.id).unwrap(), 0);
    // b grows into the free space after it.
    assert_eq!(p.resize_lease(b.id, 3072, now()).unwrap().nbytes, 3072);
    assert!(matches!(
        p.resize_lease(b.id, 3073, now()),
        Err(Error::WouldBlock { .. })
    ));
    let s = p.stats();
    assert_eq!(s.in_use_bytes, 512 + 500 + 3072);
    assert_eq!(s.available_bytes + p.leased_bytes(), 4096);
    assert!(matches!(
        p.resize_lease(b.id, 5000, now()),
        Err(Error::ExceedsCapacity { .. })
    ));
    assert!(matches!(p.set_total(8192), Err(Error::InvalidArgument(_))));
}

#[test]
fn split_gives_the_tail_and_merge_takes_adjacent_only() {
    let p = Pool::new_placed(8192, 256).unwrap();
    let a = p.try_acquire(1000).unwrap();
    let b = p.try_acquire(1000).unwrap();
    let (kept, tail) = p.split_lease(a.id, 400).unwrap();
    assert_eq!((kept.nbytes, tail.nbytes), (600, 400));
    assert_eq!(p.lease_offset(tail.id).unwrap(), 600);
    assert!(matches!(
        p.merge_leases(tail.id, a.id),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        p.merge_leases(a.id, b.id),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(p.merge_leases(a.id, tail.id).unwrap().nbytes, 1000);
    assert!(matches!(
        p.lease_offset(tail.id),
        Err(Error::InvalidLease(_))
    ));
    p.release(a.id).unwrap();
    p.release(b.id).unwrap();
    let s = p.stats();
    assert_eq!(
        (s.available_bytes, s.free_ranges, s.outstanding_leases),
        (8192, 1, 0)
    );
}

#[test]
fn long_random_sequence_keeps_ranges_disjoint_and_figures_exact() {
    let p = Pool::new_placed(1 << 24, 4096).unwrap();
    let sum = placed_sequence::random_sequence(&p, 42, 100_000);
    assert!(sum.handoffs_finished > 0);
}

#[test]
fn threads_never_hold_overlapping_ranges() {
    let (total, align) = (1u64 << 20, 256);
    let p = Pool::new_placed(total, align).unwrap();
    let held: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
    thread::scope(|s| {
        for t in 0..4u64 {
            let (p, held) = (&p, &held);
            s.spawn(move || {
                let mut rng = placed_sequence::Rng(t + 1);
                for _ in 0..3000 {
                    let size = if rng.below(8) == 0 {
                        total / 2
                    } else {
                        1 + rng.below(total / 16)
                    };
                    let l = p.acquire(size, Wait::Forever).unwrap();
                    let off = p.lease_offset(l.id).unwrap();
                    assert_eq!(off % align, 0);
                    assert!(off + size <= total);
                    {
                        let mut h = held.lock().unwrap();
                        if let Some((&o, &n)) = h.range(..off + size).next_back() {
                            assert!(o + n <= off, "{off}+{size} overlaps {o}+{n}");
                        }
                        h.insert(off, size);
                    }
                    held.lock().unwrap().remove(&off);
                    p.release(l.id).unwrap();
                }
            });
        }
    });
    let s = p.stats();
    assert_eq!(
        (
            s.available_bytes,
            s.free_ranges,
            s.largest_free_range,
            s.waiters
        ),
        (total, 1, total, 0)
    );
}

#[test]
fn a_hand_off_carries_the_offset_and_holds_the_range() {
    use mmpool::pool::TOKEN_PLACED;
    let p = Pool::new_placed(4096, 256).unwrap();
    let _a = p.try_acquire(1000).unwrap();
    let b = p.try_acquire(1000).unwrap();
    let at = p.lease_offset(b.id).unwrap();
    assert_eq!(at, 1024);
    let t = p.share_lease(b.id, 2, None, false).unwrap();
    assert_eq!((t.flags & TOKEN_PLACED, t.offset), (TOKEN_PLACED, at));
    // The lease is gone, its range is the hand-off's until the last part.
    assert!(matches!(p.lease_offset(b.id), Err(Error::InvalidLease(_))));
    assert_eq!(p.stats().largest_free_range, 4096 - 2048);
    p.complete_part(&t, 0).unwrap();
    assert_eq!(p.stats().free_ranges, 2);
    p.complete_part(&t, 1).unwrap();
    let s = p.stats();
    assert_eq!(
        (s.available_bytes, s.free_ranges, s.largest_free_range),
        (4096 - 1000, 1, 4096 - 1024)
    );
    // Keeping the lease: the token says where it lies, the range stays.
    let c = p.try_acquire(100).unwrap();
    let at = p.lease_offset(c.id).unwrap();
    let t = p.share_lease(c.id, 1, None, true).unwrap();
    assert_eq!((t.flags, t.offset), (TOKEN_PLACED, at));
    p.complete_part(&t, 0).unwrap();
    assert_eq!(p.lease_offset(c.id).unwrap(), at);
    // Not placed: no flag.
    let q = Pool::new(4096).unwrap();
    let l = q.try_acquire(10).unwrap();
    let t = q.share_lease(l.id, 1, None, false).unwrap();
    assert_eq!((t.flags, t.offset), (0, 0));
}
