//! Fragmentation of placed pools: the same line of requests, on the demo's
//! size mix, placed by each allocator in turn, in simulated time (so every
//! allocator sees exactly the same arrivals and holds, and the figures do
//! not depend on the machine).
//!
//! Requests arrive at random (a Poisson stream offering a set share of the
//! pool's bytes times time), wait in one strict FIFO line, and are granted
//! from its head while the allocator places them; each holds its range for
//! the demo's decode time, then frees it. Figures per allocator:
//! - the bytes in use at the moments a request reached the head of the line
//!   and could not be placed, as a share of the total (mean and lowest): an
//!   exact byte count waits only when the bytes are spent, a placement also
//!   when the free bytes are split into pieces too small;
//! - at those moments, the largest request the allocator would have placed
//!   (found by trying), and how often a free aligned range of the head's
//!   size existed and the allocator refused anyway (inexact placement);
//! - the largest request granted, and wait percentiles (arrival to grant).
//!
//! `bytes only` is the byte budget without placement (what an unplaced
//! mmpool pool does): the best any placement can do on the same line.

mod crates;
mod first_fit;
mod mmpool_placement;

use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use first_fit::FreeRanges;
use std::cmp::Reverse;

pub use crates::{OffsetAllocator, Rlsf};
pub use first_fit::FirstFit;
pub use mmpool_placement::MmpoolPlacement;

const MIB: u64 = 1 << 20;

/// A range placed by an allocator: where it starts, and what the allocator
/// needs to free it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub offset: u64,
    pub handle: u64,
}

/// An allocator of aligned ranges in `[0, total)`.
pub trait Placer {
    const NAME: &'static str;
    fn new(total: u64, alignment: u64) -> Self;
    /// Places `size` bytes, or `None` when it cannot now.
    fn alloc(&mut self, size: u64) -> Option<Placed>;
    fn free(&mut self, placed: Placed);
}

/// The byte budget alone: every request that fits the free bytes is placed.
pub struct BytesOnly {
    free: u64,
    sizes: BTreeMap<u64, u64>,
    next: u64,
}

impl Placer for BytesOnly {
    const NAME: &'static str = "bytes only";

    fn new(total: u64, _alignment: u64) -> Self {
        BytesOnly { free: total, sizes: BTreeMap::new(), next: 0 }
    }

    fn alloc(&mut self, size: u64) -> Option<Placed> {
        if size > self.free {
            return None;
        }
        self.free -= size;
        self.next += 1;
        self.sizes.insert(self.next, size);
        Some(Placed { offset: 0, handle: self.next })
    }

    fn free(&mut self, placed: Placed) {
        self.free += self.sizes.remove(&placed.handle).expect("a placed handle");
    }
}

/// The line every allocator is given.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub total: u64,
    pub alignment: u64,
    pub requests: usize,
    /// Share of requests that are video batches (100-800 MiB); the rest are
    /// images (1-8 MiB).
    pub video_share: f64,
    /// Bytes times time offered, as a share of the pool's.
    pub offered: f64,
    pub seed: u64,
}

impl Line {
    pub fn new(quick: bool) -> Line {
        Line {
            total: 4 << 30,
            alignment: 256,
            requests: if quick { 4_000 } else { 40_000 },
            video_share: 0.1,
            offered: 0.8,
            seed: 15,
        }
    }
}

/// One request of the line: arrival and hold in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Request {
    at: u64,
    size: u64,
    hold: u64,
}

/// xorshift64*: the same stream on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The demo's request (`mmpool demo`): its size and decode time.
fn demo_request(rng: &mut Rng, video_share: f64) -> (u64, u64) {
    let size = if rng.unit() < video_share { (100 + rng.below(701)) * MIB } else { (1 + rng.below(8)) * MIB };
    (size, (200 + size / MIB * 125) * 1_000)
}

fn requests(line: &Line) -> Vec<Request> {
    let mut rng = Rng::new(line.seed);
    let drawn: Vec<(u64, u64)> = (0..line.requests).map(|_| demo_request(&mut rng, line.video_share)).collect();
    // The mean of bytes times time per request, from the requests drawn:
    // arrivals come at the rate that offers `offered` of the pool.
    let mean = drawn.iter().map(|&(s, h)| s as f64 * h as f64).sum::<f64>() / drawn.len() as f64;
    let gap = mean / (line.offered * line.total as f64);
    let mut at = 0.0;
    drawn
        .into_iter()
        .map(|(size, hold)| {
            at += -gap * (1.0 - rng.unit()).ln();
            Request { at: at as u64, size, hold }
        })
        .collect()
}

/// What one allocator did with the line.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    /// Requests that reached the head of the line and could not be placed.
    pub blocked: usize,
    /// Bytes in use at those moments, as shares of the total.
    pub in_use_mean: f64,
    pub in_use_min: f64,
    /// The largest request placeable at those moments, mean (bytes).
    pub placeable_mean: f64,
    /// The same as a share of the bytes free then, mean over the moments
    /// with any byte free (1 for no fragmentation at all).
    pub placeable_share: f64,
    share_moments: usize,
    /// Of those moments, how many had a free aligned range of the head's size.
    pub refused_with_room: usize,
    pub largest_granted: u64,
    /// Waits from arrival to grant, nanoseconds, sorted.
    pub waits: Vec<u64>,
    /// When the last range was freed (the run's length), nanoseconds.
    pub makespan: u64,
}

impl Outcome {
    pub fn wait_quantile(&self, q: f64) -> u64 {
        let i = ((self.waits.len() as f64 - 1.0) * q).round() as usize;
        self.waits.get(i).copied().unwrap_or(0)
    }
}

/// The largest size (in steps of the alignment) `p` places now, found by
/// trying; what it placed is freed again.
fn placeable<P: Placer>(p: &mut P, line: &Line) -> u64 {
    let (mut lo, mut hi) = (0u64, line.total / line.alignment);
    while lo < hi {
        let mid = (lo + hi + 1) / 2;
        match p.alloc(mid * line.alignment) {
            Some(placed) => {
                p.free(placed);
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    lo * line.alignment
}

/// Runs the line through allocator `P`. Ranges are checked against the
/// shadow as they are placed (aligned, inside the pool, not overlapping).
pub fn run<P: Placer>(line: &Line) -> Outcome {
    let exact = P::NAME != BytesOnly::NAME;
    let reqs = requests(line);
    let mut p = P::new(line.total, line.alignment);
    // The exact free ranges beside the allocator under test, to judge it.
    let mut shadow = FreeRanges::new(line.total, line.alignment);
    let mut ends: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut live: Vec<Option<Placed>> = vec![None; reqs.len()];
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let (mut next, mut used) = (0usize, 0u64);
    let mut head_blocked: Option<usize> = None;
    let mut out = Outcome {
        name: P::NAME,
        blocked: 0,
        in_use_mean: 0.0,
        in_use_min: 1.0,
        placeable_mean: 0.0,
        placeable_share: 0.0,
        share_moments: 0,
        refused_with_room: 0,
        largest_granted: 0,
        waits: Vec::with_capacity(reqs.len()),
        makespan: 0,
    };
    loop {
        let arrival = reqs.get(next).map(|r| r.at);
        let end = ends.peek().map(|Reverse((t, _))| *t);
        let now = match (arrival, end) {
            (None, None) => break,
            (Some(a), Some(e)) => a.min(e),
            (Some(a), None) => a,
            (None, Some(e)) => e,
        };
        while let Some(&Reverse((t, i))) = ends.peek() {
            if t > now {
                break;
            }
            ends.pop();
            let placed = live[i].take().expect("a live range");
            p.free(placed);
            used -= reqs[i].size;
            if exact {
                shadow.give(placed.offset, reqs[i].size);
            }
            out.makespan = t;
        }
        while next < reqs.len() && reqs[next].at <= now {
            waiting.push_back(next);
            next += 1;
        }
        while let Some(&i) = waiting.front() {
            let r = reqs[i];
            match p.alloc(r.size) {
                Some(placed) => {
                    if exact {
                        assert_eq!(placed.offset % line.alignment, 0, "{}: unaligned offset", P::NAME);
                        assert!(placed.offset + r.size <= line.total, "{}: range past the end", P::NAME);
                        shadow.take(placed.offset, r.size);
                    }
                    waiting.pop_front();
                    live[i] = Some(placed);
                    used += r.size;
                    out.largest_granted = out.largest_granted.max(r.size);
                    out.waits.push(now - r.at);
                    ends.push(Reverse((now + r.hold, i)));
                }
                None => {
                    if head_blocked != Some(i) {
                        head_blocked = Some(i);
                        out.blocked += 1;
                        let share = used as f64 / line.total as f64;
                        out.in_use_mean += share;
                        out.in_use_min = out.in_use_min.min(share);
                        let most = placeable(&mut p, line) as f64;
                        out.placeable_mean += most;
                        if used < line.total {
                            out.placeable_share += most / (line.total - used) as f64;
                            out.share_moments += 1;
                        }
                        if exact && shadow.first_fit(r.size).is_some() {
                            out.refused_with_room += 1;
                        }
                    }
                    break;
                }
            }
        }
    }
    if out.blocked > 0 {
        out.in_use_mean /= out.blocked as f64;
        out.placeable_mean /= out.blocked as f64;
        out.placeable_share /= out.share_moments.max(1) as f64;
    } else {
        out.in_use_min = 0.0;
    }
    out.waits.sort_unstable();
    out
}

/// The table of outcomes, the first one the reference for the ratios.
pub fn table(line: &Line, outcomes: &[Outcome]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "7 placement, demo mix ({:.0}% video 100-800 MiB, images 1-8 MiB), {} GiB pool, {}-byte alignment,",
        line.video_share * 100.0,
        line.total >> 30,
        line.alignment
    );
    let _ = writeln!(
        s,
        "  {} requests in one FIFO line offering {:.0}% of the pool (simulated time, seed {})",
        line.requests,
        line.offered * 100.0,
        line.seed
    );
    let _ = write!(s, "{:<44}", "");
    for o in outcomes {
        let _ = write!(s, "{:>17}", o.name);
    }
    s.push('\n');
    let reference = &outcomes[0];
    let mut row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
        let _ = write!(s, "{label:<44}");
        for o in outcomes {
            let _ = write!(s, "{:>17}", f(o));
        }
        s.push('\n');
    };
    row("head of the line blocked, times", &|o| o.blocked.to_string());
    row("in use when blocked, mean % of total", &|o| format!("{:.1}", o.in_use_mean * 100.0));
    row("  x bytes only", &|o| format!("{:.3}", o.in_use_mean / reference.in_use_mean));
    row("in use when blocked, lowest %", &|o| format!("{:.1}", o.in_use_min * 100.0));
    row("largest placeable when blocked, mean MiB", &|o| format!("{:.0}", o.placeable_mean / MIB as f64));
    row("  as a share of the free bytes, mean", &|o| format!("{:.2}", o.placeable_share));
    row("refused with an aligned free range that fit", &|o| o.refused_with_room.to_string());
    row("largest request granted, MiB", &|o| (o.largest_granted / MIB).to_string());
    for (label, q) in [("wait, ms: p50", 0.5), ("          p90", 0.9), ("          p99", 0.99), ("          max", 1.0)]
    {
        row(label, &|o| format!("{:.1}", o.wait_quantile(q) as f64 / 1e6));
    }
    row("  p99 x bytes only", &|o| {
        let r = reference.wait_quantile(0.99).max(1);
        format!("{:.2}", o.wait_quantile(0.99) as f64 / r as f64)
    });
    row("all done after, s (simulated)", &|o| format!("{:.2}", o.makespan as f64 / 1e9));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Line {
        Line { requests: 1_500, ..Line::new(true) }
    }

    fn granted_all<P: Placer>(line: &Line) -> Outcome {
        let o = run::<P>(line);
        assert_eq!(o.waits.len(), line.requests, "{}: every request is granted once", o.name);
        assert!(o.blocked > 0, "{}: the line offers enough to make requests wait", o.name);
        o
    }

    #[test]
    fn exact_placements_never_refuse_a_request_that_a_free_range_holds() {
        let line = small();
        for o in [granted_all::<MmpoolPlacement>(&line), granted_all::<FirstFit>(&line)] {
            assert_eq!(o.refused_with_room, 0, "{}", o.name);
        }
        // The size-class allocators are run through the same checks (every
        // range aligned, inside the pool, over no live one).
        granted_all::<OffsetAllocator>(&line);
        granted_all::<Rlsf>(&line);
    }

    #[test]
    fn the_byte_budget_waits_only_when_the_head_does_not_fit_the_free_bytes() {
        let line = small();
        let o = granted_all::<BytesOnly>(&line);
        // Blocked with the largest request placeable smaller than the head
        // (at most 800 MiB): what is in use is more than the total less that.
        assert!(o.in_use_min > 1.0 - 800.0 / 4096.0, "{}", o.in_use_min);
    }
}
