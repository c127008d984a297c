//! The placement allocator against a brute-force model: long random
//! sequences of alloc, free, grow, shrink, split and merge, every figure
//! recounted from the model after every step.

#![cfg(not(loom))] // the segment region is part of the shared backend, which loom leaves out

use std::collections::BTreeMap;

use mmpool::placement::{PlaceError, Placement, Store};
use mmpool::pool::shared::placement::{nodes_for, rebuild, RegionHead, RegionNode, RegionStore};
use proptest::prelude::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The free gaps between the model's used ranges, in address order.
fn gaps(used: &BTreeMap<u64, u64>, total: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for (&s, &l) in used {
        if s > at {
            out.push((at, s - at));
        }
        at = s + l;
    }
    if at < total {
        out.push((at, total - at));
    }
    out
}

/// Room for an aligned range in a gap, counted the slow way.
fn room(start: u64, len: u64, align: u64) -> u64 {
    let first = start.div_ceil(align) * align;
    if first >= start + len {
        0
    } else {
        start + len - first
    }
}

fn check<S: Store>(p: &Placement<S>, used: &BTreeMap<u64, u64>, total: u64, align: u64) {
    let ranges = p.ranges().unwrap();
    let mut at = 0;
    let mut prev_free = false;
    for r in &ranges {
        assert_eq!(r.start, at, "ranges tile [0, total)");
        assert!(r.len > 0);
        assert!(!(r.free && prev_free), "free neighbours coalesce");
        prev_free = r.free;
        at += r.len;
    }
    assert_eq!(at, total);
    let got: BTreeMap<u64, u64> = ranges
        .iter()
        .filter(|r| !r.free)
        .map(|r| (r.start, r.len))
        .collect();
    assert_eq!(&got, used, "used ranges are the model's");
    for (&s, &l) in used {
        assert!(s + l <= total, "inside");
    }
    let gs = gaps(used, total);
    let free: u64 = gs.iter().map(|g| g.1).sum();
    let st = p.stats().unwrap();
    assert_eq!(st.free_bytes, free);
    assert_eq!(st.free_bytes + used.values().sum::<u64>(), total);
    assert_eq!(st.used_bytes, total - free);
    assert_eq!(st.free_ranges, gs.len() as u64);
    assert_eq!(st.used_ranges, used.len() as u64);
    assert_eq!(
        st.largest_free_range,
        gs.iter().map(|g| room(g.0, g.1, align)).max().unwrap_or(0)
    );
}

/// One long sequence over a placement in this process's heap.
fn run(seed: u64, steps: usize, total: u64, align: u64) {
    run_over(Placement::new(total, align).unwrap(), seed, steps);
}

/// One long sequence over `p`, each step checked against the model.
/// Returns the model's ranges at the end.
fn run_over<S: Store>(
    mut p: Placement<S>,
    seed: u64,
    steps: usize,
) -> (Placement<S>, BTreeMap<u64, u64>) {
    let (total, align) = (p.total(), p.alignment());
    let mut rng = Rng(seed);
    let mut used: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut refused, mut granted) = (0u64, 0u64);
    for _ in 0..steps {
        let live: Vec<(u64, u64)> = used.iter().map(|(&s, &l)| (s, l)).collect();
        let pick = |rng: &mut Rng| live[rng.below(live.len() as u64) as usize];
        // Past 40 live ranges only frees: the ranges stay few, so that the
        // brute-force recount after each step stays cheap.
        let op = if live.len() > 40 { 4 } else { rng.below(10) };
        match op {
            0..=3 => {
                let size = match rng.below(4) {
                    0 => 1 + rng.below(align * 2),
                    1 | 2 => 1 + rng.below((total / 16).max(1)),
                    _ => 1 + rng.below((total / 3).max(1)),
                };
                let gs = gaps(&used, total);
                let best = gs
                    .iter()
                    .filter(|g| room(g.0, g.1, align) >= size)
                    .min_by_key(|g| (room(g.0, g.1, align) - size, g.0))
                    .copied();
                match p.alloc(size) {
                    Ok(at) => {
                        granted += 1;
                        assert_eq!(at % align, 0, "aligned");
                        let (gs_, gl) = best.expect("granted only where the model has room");
                        assert!(
                            at >= gs_ && at + size <= gs_ + gl,
                            "best fit: in the tightest gap"
                        );
                        used.insert(at, size);
                    }
                    Err(PlaceError::NoFit { .. }) => {
                        refused += 1;
                        assert!(
                            best.is_none(),
                            "refused only when no gap has room for {size}"
                        );
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            4 | 5 if !live.is_empty() => {
                let (s, l) = pick(&mut rng);
                assert_eq!(p.free(s).unwrap(), l);
                used.remove(&s);
            }
            6 if !live.is_empty() => {
                let (s, l) = pick(&mut rng);
                let new = l + 1 + rng.below((total / 8).max(1));
                let right = gaps(&used, total)
                    .into_iter()
                    .find(|g| g.0 == s + l)
                    .map_or(0, |g| g.1);
                let grown = p.grow(s, new).unwrap();
                assert_eq!(
                    grown,
                    new - l <= right,
                    "grows exactly when the right neighbour has room"
                );
                if grown {
                    used.insert(s, new);
                }
            }
            7 if !live.is_empty() => {
                let (s, l) = pick(&mut rng);
                let new = 1 + rng.below(l);
                p.shrink(s, new).unwrap();
                used.insert(s, new);
            }
            8 if !live.is_empty() => {
                let (s, l) = pick(&mut rng);
                if l > 1 {
                    let at = 1 + rng.below(l - 1);
                    assert_eq!(p.split(s, at).unwrap(), s + at);
                    used.insert(s, at);
                    used.insert(s + at, l - at);
                }
            }
            9 if !live.is_empty() => {
                let (s, l) = pick(&mut rng);
                let (t, tl) = pick(&mut rng);
                let merged = p.merge(s, t);
                if t == s + l {
                    assert_eq!(merged.unwrap(), l + tl);
                    used.remove(&t);
                    used.insert(s, l + tl);
                } else {
                    assert!(matches!(
                        merged,
                        Err(PlaceError::Invalid(_)) | Err(PlaceError::NotAllocated { .. })
                    ));
                }
            }
            _ => {}
        }
        check(&p, &used, total, align);
    }
    assert!(
        refused > 0 && granted > 0,
        "the sequence both filled and refused ({granted} granted, {refused} refused)"
    );
    (p, used)
}

/// A region of a shared segment's layout, here in the heap.
fn region(records: usize) -> (RegionHead, Vec<RegionNode>) {
    (
        RegionHead::default(),
        (0..nodes_for(records))
            .map(|_| RegionNode::default())
            .collect(),
    )
}

#[test]
fn long_random_sequence_over_a_segment_region() {
    // At most 42 ranges are live at once (see `run_over`): 48 records'
    // worth of nodes never run out.
    let (head, nodes) = region(48);
    let store = RegionStore {
        head: &head,
        nodes: &nodes,
    };
    let p = Placement::init(store, 1 << 30, 256).unwrap();
    let (p, used) = run_over(p, 0xfeed, 100_000);
    let before = p.ranges().unwrap();
    // Rebuilt from the ranges held, as after a holder died in the lock: the
    // same ranges, and an overlapping or outside record is refused.
    let mut held: Vec<(u64, u64)> = used.iter().map(|(&s, &l)| (s, l)).collect();
    let first = held.first().copied();
    if let Some((s, l)) = first {
        held.push((s, l));
    }
    held.push(((1 << 30) - 1, 2));
    let (head2, nodes2) = region(48);
    let (q, taken) = rebuild(
        RegionStore {
            head: &head2,
            nodes: &nodes2,
        },
        1 << 30,
        256,
        held,
    )
    .unwrap();
    assert_eq!(q.ranges().unwrap(), before);
    let refused = taken.iter().filter(|t| !**t).count();
    assert_eq!(refused, 1 + usize::from(first.is_some()));
    check(&q, &used, 1 << 30, 256);
}

#[test]
fn a_damaged_region_gives_errors_not_panics() {
    let (head, nodes) = region(4);
    let mut p = Placement::init(
        RegionStore {
            head: &head,
            nodes: &nodes,
        },
        1 << 20,
        256,
    )
    .unwrap();
    let a = p.alloc(1000).unwrap();
    p.alloc(1000).unwrap();
    let mut store = p.into_store();
    // Another process left a link past the region's end.
    let mut n = store.load(0);
    n.next = 1_000_000;
    store.save(0, n);
    let mut p = Placement::attach(store).unwrap();
    assert!(matches!(p.free(a), Err(PlaceError::Damaged(_))));
    assert!(matches!(p.ranges(), Err(PlaceError::Damaged(_))));
    let mut store = p.into_store();
    let mut h = store.header();
    h.spare_first = 77;
    h.free_first = 3;
    store.set_header(h);
    let mut p = Placement::attach(store).unwrap();
    for size in [1, 300, 1 << 19] {
        assert!(matches!(
            p.alloc(size),
            Err(PlaceError::Damaged(_)) | Err(PlaceError::NoFit { .. })
        ));
    }
    let _ = p.stats();
}

#[test]
fn long_random_sequence_over_a_vec_store() {
    // Half the steps of the segment region's run (the same code over another
    // store), so that the file stays short.
    run(0x5eed, 50_000, 1 << 30, 256);
}

#[test]
fn odd_total_and_coarse_alignment() {
    run(7, 5_000, 1_000_003, 4096);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences(seed in any::<u64>(), total in 1u64..(1 << 24), shift in 0u32..13) {
        run(seed, 2_000, total, 1 << shift);
    }
}
