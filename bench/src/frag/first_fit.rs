//! Address-ordered first fit: the plain baseline. Free ranges in a map by
//! start, neighbours merged; a request takes the lowest-addressed free range
//! that holds it from its first aligned offset. Exact (it refuses only when
//! no free range holds the request) and linear in the free ranges.

use std::collections::BTreeMap;

use super::{Placed, Placer};

/// Free ranges by start, neighbours merged: first fit's own record, and the
/// exact record beside every allocator under test (`Shadow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FreeRanges {
    alignment: u64,
    /// start -> length.
    pub(super) ranges: BTreeMap<u64, u64>,
}

impl FreeRanges {
    pub(super) fn new(total: u64, alignment: u64) -> FreeRanges {
        FreeRanges { alignment, ranges: BTreeMap::from([(0, total)]) }
    }

    /// The lowest aligned offset where `size` bytes lie in one free range.
    pub(super) fn first_fit(&self, size: u64) -> Option<u64> {
        let a = self.alignment;
        self.ranges.iter().find_map(|(&s, &l)| {
            let at = s.div_ceil(a) * a;
            (at + size <= s + l).then_some(at)
        })
    }

    /// Marks `[offset, offset + size)` used; panics unless all of it was
    /// free (an allocator placing over a live range).
    pub(super) fn take(&mut self, offset: u64, size: u64) {
        let (&s, &l) = self.ranges.range(..=offset).next_back().expect("placed inside a free range");
        assert!(offset + size <= s + l, "range {offset}+{size} overlaps a live one");
        self.ranges.remove(&s);
        if offset > s {
            self.ranges.insert(s, offset - s);
        }
        if offset + size < s + l {
            self.ranges.insert(offset + size, s + l - offset - size);
        }
    }

    /// Marks `[offset, offset + size)` free again, merged with its neighbours.
    pub(super) fn give(&mut self, offset: u64, size: u64) {
        let (mut start, mut len) = (offset, size);
        if let Some((&s, &l)) = self.ranges.range(..offset).next_back() {
            if s + l == offset {
                self.ranges.remove(&s);
                (start, len) = (s, l + len);
            }
        }
        if let Some(l) = self.ranges.remove(&(offset + size)) {
            len += l;
        }
        self.ranges.insert(start, len);
    }
}

pub struct FirstFit {
    free: FreeRanges,
    /// start -> length of each used range.
    used: BTreeMap<u64, u64>,
}

impl Placer for FirstFit {
    const NAME: &'static str = "first-fit";

    fn new(total: u64, alignment: u64) -> Self {
        FirstFit { free: FreeRanges::new(total, alignment), used: BTreeMap::new() }
    }

    fn alloc(&mut self, size: u64) -> Option<Placed> {
        let at = self.free.first_fit(size)?;
        self.free.take(at, size);
        self.used.insert(at, size);
        Some(Placed { offset: at, handle: at })
    }

    fn free(&mut self, placed: Placed) {
        let size = self.used.remove(&placed.offset).expect("a used range");
        self.free.give(placed.offset, size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_range_that_holds_the_request_is_taken_and_frees_merge() {
        let mut f = FirstFit::new(4096, 256);
        let a = f.alloc(100).unwrap();
        let b = f.alloc(1000).unwrap();
        assert_eq!((a.offset, b.offset), (0, 256), "aligned, lowest first");
        f.free(a);
        assert_eq!(f.alloc(200).unwrap().offset, 0, "the freed hole is lowest");
        assert!(f.alloc(4096).is_none());
        f.free(Placed { offset: 0, handle: 0 });
        f.free(b);
        assert_eq!(f.free.ranges, BTreeMap::from([(0, 4096)]), "merged whole again");
    }

    #[test]
    fn free_ranges_refuse_a_take_over_a_live_range() {
        let mut r = FreeRanges::new(1024, 256);
        r.take(256, 256);
        r.take(0, 100);
        assert_eq!(r.first_fit(512), Some(512));
        assert_eq!(r.first_fit(513), None);
        r.give(256, 256);
        r.give(0, 100);
        assert_eq!(r.ranges, BTreeMap::from([(0, 1024)]));
        r.take(0, 512);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.take(256, 10))).is_err());
    }
}
