//! A random sequence of calls on a placed pool, checked after every step
//! against a model of the live ranges: no overlap, inside, aligned where
//! placed, every byte counted, the fragmentation figures exact. Included
//! with `#[path]` by the placed pools' tests (in-process and shared).
#![allow(dead_code)]

use std::collections::BTreeMap;

use mmpool::{Error, Pool, Wait};

fn now() -> Wait {
    Wait::timeout_ns(0)
}

pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// Room for an aligned range in a gap, counted the slow way.
pub fn room(start: u64, len: u64, align: u64) -> u64 {
    let first = start.div_ceil(align) * align;
    (start + len).saturating_sub(first)
}

/// Checks the live ranges (`offset -> (id, nbytes)`, 0-byte leases left
/// out) against the pool's figures.
pub fn check(p: &Pool, live: &BTreeMap<u64, (u64, u64)>, total: u64, align: u64) {
    let mut at = 0;
    let mut gaps = Vec::new();
    for (&off, &(id, n)) in live {
        assert!(off >= at, "ranges overlap at {off}");
        assert!(off + n <= total, "inside");
        assert_eq!(p.lease_offset(id).unwrap(), off);
        if off > at {
            gaps.push((at, off - at));
        }
        at = off + n;
    }
    if at < total {
        gaps.push((at, total - at));
    }
    let used: u64 = live.values().map(|v| v.1).sum();
    let s = p.stats();
    assert_eq!(s.in_use_bytes, used);
    assert_eq!(s.available_bytes + p.leased_bytes(), total);
    assert_eq!(s.free_ranges, gaps.len() as u64);
    assert_eq!(
        s.largest_free_range,
        gaps.iter()
            .map(|g| room(g.0, g.1, align))
            .max()
            .unwrap_or(0)
    );
}

/// `steps` random calls (try, timed acquire, ticket cancel or timeout,
/// release, resize, split, merge) on placed pool `p`, which must be empty;
/// after each, every live range is checked against the pool's figures.
pub fn random_sequence(p: &Pool, seed: u64, steps: u32) {
    let (total, align) = (p.total_bytes(), p.alignment());
    let mut rng = Rng(seed);
    let mut live: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut grants = 0;
    for step in 0..steps {
        let picks: Vec<(u64, (u64, u64))> = live.iter().map(|(&o, &v)| (o, v)).collect();
        let op = if live.len() > 40 { 3 } else { rng.below(8) };
        let size = if rng.below(4) == 0 {
            1 + rng.below(total / 3)
        } else {
            1 + rng.below(total / 40)
        };
        match op {
            0 | 1 => {
                let got = if op == 0 {
                    p.try_acquire(size)
                } else {
                    p.acquire(size, now())
                };
                match got {
                    Ok(l) => {
                        grants += 1;
                        let off = p.lease_offset(l.id).unwrap();
                        assert_eq!(off % align, 0);
                        live.insert(off, (l.id, size));
                    }
                    Err(Error::WouldBlock { .. }) | Err(Error::Timeout { .. }) => {
                        assert!(
                            p.stats().largest_free_range < size,
                            "refused while a range fits"
                        );
                    }
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
            2 => {
                // A ticket that leaves the line (timeout) or is cancelled.
                let t = p.enqueue(size).unwrap();
                match p.wait_ticket_or_leave(t, now()) {
                    Ok(l) => {
                        let off = p.lease_offset(l.id).unwrap();
                        live.insert(off, (l.id, size));
                    }
                    Err(Error::Timeout { .. }) => p.cancel_ticket(t).unwrap(),
                    Err(e) => panic!("{e}"),
                }
            }
            3 | 4 if !picks.is_empty() => {
                let (off, (id, _)) = picks[rng.below(picks.len() as u64) as usize];
                p.release(id).unwrap();
                live.remove(&off);
            }
            5 if !picks.is_empty() => {
                let (off, (id, n)) = picks[rng.below(picks.len() as u64) as usize];
                let new = if rng.below(2) == 0 {
                    1 + rng.below(n)
                } else {
                    n + 1 + rng.below(total / 20)
                };
                match p.resize_lease(id, new, now()) {
                    Ok(l) => {
                        assert_eq!(l.nbytes, new);
                        live.insert(off, (id, new));
                    }
                    Err(Error::WouldBlock { .. }) | Err(Error::ExceedsCapacity { .. }) => {
                        assert!(new > n)
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            6 if !picks.is_empty() => {
                let (off, (id, n)) = picks[rng.below(picks.len() as u64) as usize];
                if n > 1 {
                    let keep = 1 + rng.below(n - 1);
                    let (_, tail) = p.split_lease(id, n - keep).unwrap();
                    live.insert(off, (id, keep));
                    live.insert(off + keep, (tail.id, n - keep));
                }
            }
            7 if !picks.is_empty() => {
                let (off, (id, n)) = picks[rng.below(picks.len() as u64) as usize];
                match live.get(&(off + n)).copied() {
                    Some((next, m)) => {
                        assert_eq!(p.merge_leases(id, next).unwrap().nbytes, n + m);
                        live.remove(&(off + n));
                        live.insert(off, (id, n + m));
                    }
                    None => {
                        let (_, (other, _)) = picks[rng.below(picks.len() as u64) as usize];
                        if other != id {
                            assert!(matches!(
                                p.merge_leases(id, other),
                                Err(Error::InvalidArgument(_))
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        check(&p, &live, total, align);
    }
    assert!(grants > u64::from(steps) / 100, "{grants} grants");
}

/// On an empty placed pool of 1024 bytes aligned to 256, seen as `p` and
/// as `q` (the same handle, or another attachment of a shared pool): free
/// bytes in two holes do not grant a request larger than either; that
/// request waits at the head, and a small one that would fit a hole waits
/// behind it, until the lease between the holes goes.
pub fn a_large_head_is_not_passed(p: &Pool, q: &Pool) {
    let l: Vec<_> = (0..4).map(|_| p.try_acquire(256).unwrap()).collect();
    p.release(l[0].id).unwrap();
    p.release(l[2].id).unwrap();
    // 512 bytes free, but in two ranges of 256.
    assert_eq!(p.available_bytes(), 512);
    assert_eq!(p.stats().largest_free_range, 256);
    assert!(matches!(
        p.try_acquire(512),
        Err(Error::WouldBlock { queued: false, .. })
    ));
    assert!(matches!(p.acquire(512, now()), Err(Error::Timeout { .. })));
    assert!(matches!(
        p.try_acquire(1025),
        Err(Error::ExceedsCapacity { .. })
    ));
    // The large request waits at the head; a small one that would fit in
    // either hole waits behind it.
    let big = q.enqueue(512).unwrap();
    assert!(matches!(
        q.wait_ticket(big, now()),
        Err(Error::Timeout { .. })
    ));
    assert!(matches!(
        p.try_acquire(1),
        Err(Error::WouldBlock { queued: true, .. })
    ));
    let small = q.enqueue(200).unwrap();
    assert!(matches!(
        q.wait_ticket(small, now()),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(p.stats().waiters, 2);
    // Freeing the lease between the holes makes [0, 768) one range.
    p.release(l[1].id).unwrap();
    let got = q.wait_ticket(big, now()).unwrap();
    assert_eq!(q.lease_offset(got.id).unwrap(), 0);
    let got_small = q.wait_ticket(small, now()).unwrap();
    assert_eq!(q.lease_offset(got_small.id).unwrap(), 512);
    q.release(got.id).unwrap();
    q.release(got_small.id).unwrap();
    p.release(l[3].id).unwrap();
    let s = p.stats();
    assert_eq!(
        (
            s.available_bytes,
            s.free_ranges,
            s.largest_free_range,
            s.outstanding_leases
        ),
        (1024, 1, 1024, 0)
    );
}
