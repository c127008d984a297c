//! A random sequence of calls on a placed pool, checked after every step
//! against a model of the live ranges: no overlap, inside, aligned where
//! placed, every byte counted, the fragmentation figures exact. Included
//! with `#[path]` by the placed pools' tests (in-process and shared).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};

use mmpool::pool::{Token, TOKEN_PLACED};
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

#[path = "free_ranges.rs"]
mod free_ranges;
pub use free_ranges::room;

/// An open hand-off of the sequence: its token, the range it came from,
/// the parts completed (one bit each) and, when the producer kept its
/// lease, that lease (which then still holds the range).
struct Open {
    token: Token,
    off: u64,
    n: u64,
    done: u64,
    kept: Option<u64>,
}

/// What the sequence holds: live leases (`offset -> (id, nbytes)`) and the
/// ranges held by open hand-offs whose lease ended (`offset -> nbytes`).
#[derive(Default)]
pub struct Held {
    pub leases: BTreeMap<u64, (u64, u64)>,
    pub handoffs: BTreeMap<u64, u64>,
}

impl Held {
    /// Every range held, `(offset, nbytes)`, in offset order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self.leases.iter().map(|(&o, &(_, n))| (o, n)).collect();
        all.extend(self.handoffs.iter().map(|(&o, &n)| (o, n)));
        all.sort_unstable();
        all
    }
}

/// Checks the held ranges against the pool's figures: leases and
/// hand-offs never overlap, lie inside, leases are where the pool says,
/// `available + leased + held by hand-offs == total`, and the free ranges
/// are those between the held ones.
pub fn check(p: &Pool, held: &Held, total: u64, align: u64) {
    let mut at = 0;
    let mut gaps = Vec::new();
    for (off, n) in held.ranges() {
        assert!(off >= at, "ranges overlap at {off}");
        assert!(off + n <= total, "inside");
        if off > at {
            gaps.push((at, off - at));
        }
        at = off + n;
    }
    if at < total {
        gaps.push((at, total - at));
    }
    for (&off, &(id, _)) in &held.leases {
        assert_eq!(p.lease_offset(id).unwrap(), off);
    }
    let leased: u64 = held.leases.values().map(|v| v.1).sum();
    let in_handoffs: u64 = held.handoffs.values().sum();
    let s = p.stats();
    let h = p.handoff_stats();
    assert_eq!(h.held_bytes, in_handoffs);
    assert_eq!(s.in_use_bytes, leased + in_handoffs);
    assert_eq!(s.available_bytes + leased + in_handoffs, total);
    // An in-process pool counts hand-offs' bytes as leased; a shared one
    // counts its lease entries only.
    let shared = p.shared_backend().is_some();
    assert_eq!(
        p.leased_bytes(),
        leased + if shared { 0 } else { in_handoffs }
    );
    assert_eq!(s.free_ranges, gaps.len() as u64);
    assert_eq!(
        s.largest_free_range,
        gaps.iter()
            .map(|g| room(g.0, g.1, align))
            .max()
            .unwrap_or(0)
    );
}

/// What a random sequence did.
#[derive(Debug, Default)]
pub struct Summary {
    pub steps: u32,
    pub grants: u64,
    pub handoffs_made: u64,
    pub handoffs_finished: u64,
    pub crashes: u64,
    /// Ranges the crashed holders held when they died.
    pub crash_ranges: u64,
}

/// `steps` random calls (try, timed acquire, ticket cancel or timeout,
/// release, resize, split, merge, hand-off of a lease, completion of a
/// hand-off's part) on placed pool `p`, which must be empty; after each,
/// every held range is checked against the pool's figures.
pub fn random_sequence(p: &Pool, seed: u64, steps: u32) -> Summary {
    random_sequence_with(p, seed, steps, 0, &mut |_, _| 0)
}

/// `random_sequence`, and every `every` steps (0: never) `crash(p,
/// ranges)` with the ranges the sequence holds: a shared pool's test
/// makes another process hold ranges there and die, and returns how many
/// it held. The figures are checked after it like after any step.
pub fn random_sequence_with(
    p: &Pool,
    seed: u64,
    steps: u32,
    every: u32,
    crash: &mut dyn FnMut(&Pool, &[(u64, u64)]) -> u64,
) -> Summary {
    let (total, align) = (p.total_bytes(), p.alignment());
    let mut rng = Rng(seed);
    let mut held = Held::default();
    let mut open: Vec<Open> = Vec::new();
    // Leases kept by the producer of an open hand-off: left alone until it
    // finishes.
    let mut busy: HashSet<u64> = HashSet::new();
    let mut sum = Summary {
        steps,
        ..Summary::default()
    };
    for step in 0..steps {
        let live = &mut held.leases;
        let picks: Vec<(u64, (u64, u64))> = live
            .iter()
            .filter(|(_, v)| !busy.contains(&v.0))
            .map(|(&o, &v)| (o, v))
            .collect();
        let op = if live.len() > 40 {
            3
        } else if open.len() > 8 {
            9
        } else {
            rng.below(10)
        };
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
                        sum.grants += 1;
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
                    Some((next, _)) if busy.contains(&next) => {}
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
            8 if !picks.is_empty() => {
                let (off, (id, n)) = picks[rng.below(picks.len() as u64) as usize];
                let parts = 1 + rng.below(3) as u32;
                let keep = rng.below(2) == 0;
                let token = p.share_lease(id, parts, None, keep).unwrap();
                assert_eq!(
                    (token.flags, token.offset, token.parts),
                    (TOKEN_PLACED, off, parts)
                );
                sum.handoffs_made += 1;
                if keep {
                    busy.insert(id);
                } else {
                    live.remove(&off);
                    held.handoffs.insert(off, n);
                    assert!(matches!(p.lease_offset(id), Err(Error::InvalidLease(_))));
                }
                open.push(Open {
                    token,
                    off,
                    n,
                    done: 0,
                    kept: keep.then_some(id),
                });
            }
            9 if !open.is_empty() => {
                let i = rng.below(open.len() as u64) as usize;
                let h = &mut open[i];
                let part = rng.below(u64::from(h.token.parts)) as u32;
                // Completing a part again counts once.
                p.complete_part(&h.token, part).unwrap();
                h.done |= 1 << part;
                let left = h.token.parts - h.done.count_ones();
                let info = p.handoff(&h.token).unwrap();
                if left > 0 {
                    let info = info.expect("open while parts are left");
                    assert_eq!(info.parts_left, left);
                    assert_eq!(info.nbytes, if h.kept.is_some() { 0 } else { h.n });
                } else {
                    assert!(info.is_none(), "finished with its last part");
                    sum.handoffs_finished += 1;
                    let h = open.swap_remove(i);
                    match h.kept {
                        // Still the producer's, to release like any lease.
                        Some(id) => assert!(busy.remove(&id)),
                        None => assert_eq!(held.handoffs.remove(&h.off), Some(h.n)),
                    }
                }
            }
            _ => {}
        }
        if every > 0 && step % every == every - 1 {
            sum.crash_ranges += crash(p, &held.ranges());
            sum.crashes += 1;
        }
        check(p, &held, total, align);
    }
    assert!(sum.grants > u64::from(steps) / 100, "{} grants", sum.grants);
    println!(
        "placed sequence: {} steps, {} grants, {} hand-offs made, {} finished, {} crashes of a holder survived ({} ranges held by the dead)",
        sum.steps,
        sum.grants,
        sum.handoffs_made,
        sum.handoffs_finished,
        sum.crashes,
        sum.crash_ranges
    );
    sum
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
