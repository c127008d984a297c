//! Histograms of waits and of request sizes, with fixed log-spaced buckets.
//!
//! * Waits of the requests that waited in line before their grant (the same
//!   requests as `Stats::waited_grants`, so a histogram's count is that
//!   counter and its sum `Stats::wait_ns_total`): buckets 1-2-5 per decade
//!   from 1 µs to 100 s, [`WAIT_BOUNDS_NS`], `le` as Prometheus means it
//!   (a wait of exactly 2 ms counts in the bucket `le 0.002`), then one
//!   bucket for longer waits (`+Inf`).
//! * Sizes of granted leases, one observation per lease when it is granted
//!   (so the count is `Stats::grants`; a lease that grows later is not
//!   observed again): powers of 4 from 4 KiB to 2^60 bytes (the largest
//!   total), [`size_bound`], then `+Inf` (always empty, as no request above
//!   the total is granted).
//!
//! Counts are per bucket, not cumulative; [`cumulative`] gives Prometheus'
//! running sums. The index of a size's bucket is a few instructions from
//! `leading_zeros`, cheap enough for the in-process fast path, which counts
//! into a record only its own thread touches at that moment (see `slots`).

use super::sync::{AtomicU64, Ordering};

/// Buckets of the wait histogram: the finite bounds, then `+Inf`.
pub const WAIT_BUCKETS: usize = WAIT_BOUNDS_NS.len() + 1;
/// Buckets of the size histogram: the finite bounds, then `+Inf`.
pub const SIZE_BUCKETS: usize = SIZE_FINITE + 1;

/// The upper bounds (inclusive) of the finite wait buckets, in nanoseconds:
/// 1, 2, 5 µs, 10, 20, 50 µs, ... 50 s, 100 s.
pub const WAIT_BOUNDS_NS: [u64; 25] = {
    let mut bounds = [0u64; 25];
    let mut decade = 1_000u64;
    let mut i = 0;
    while i < 24 {
        bounds[i] = decade;
        bounds[i + 1] = 2 * decade;
        bounds[i + 2] = 5 * decade;
        decade *= 10;
        i += 3;
    }
    bounds[24] = decade;
    bounds
};

/// The finite size buckets: 4 KiB = 2^12, 2^14, ... 2^60.
const SIZE_FINITE: usize = 25;
const SIZE_FIRST_LOG2: u32 = 12;

/// The upper bound (inclusive), in bytes, of finite size bucket `i`
/// (`i < SIZE_BUCKETS - 1`): `4096 * 4^i`.
pub const fn size_bound(i: usize) -> u64 {
    1u64 << (SIZE_FIRST_LOG2 + 2 * i as u32)
}

/// The bucket of a wait of `ns` nanoseconds.
pub fn wait_bucket(ns: u64) -> usize {
    WAIT_BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// The bucket of a request of `nbytes`: the smallest `4096 * 4^i` that is at
/// least `nbytes` (0 for anything up to 4 KiB), for every size up to 2^63
/// (no grant is larger than 2^60; a size above 2^63 lands in bucket 0). A
/// subtraction, a bit scan and a byte from a table.
#[inline(always)]
pub fn size_bucket(nbytes: u64) -> usize {
    // 0 wraps to all ones, whose top bit (63) the table maps to 0. The low
    // bit set makes the scanned value never 0 (`nbytes` 1 then scans as 2
    // does: both bucket 0), so the scan needs no test for it.
    SIZE_BUCKET_BY_TOP_BIT[(nbytes.wrapping_sub(1) | 1).ilog2() as usize] as usize
}

/// `size_bucket` by the top bit of `nbytes - 1`, one less than its bit
/// length `ceil(log2(nbytes))` (for `nbytes >= 2`). The top bit 63
/// (`nbytes` 0, or above 2^63) is bucket 0.
const SIZE_BUCKET_BY_TOP_BIT: [u8; 64] = {
    let mut table = [0u8; 64];
    let mut top = 0;
    while top < 63 {
        let log2 = top as u32 + 1;
        let i = (log2.saturating_sub(SIZE_FIRST_LOG2) as usize + 1) / 2;
        table[top] = if i < SIZE_FINITE { i as u8 } else { SIZE_FINITE as u8 };
        top += 1;
    }
    table
};

/// A pool's histograms, read on demand (`Pool::histograms`): counting is
/// cheap, reading them walks every lease slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histograms {
    /// The waits of the requests that waited in line, by bucket (not
    /// cumulative; bounds [`WAIT_BOUNDS_NS`], the last bucket for longer ones).
    pub waits: [u64; WAIT_BUCKETS],
    /// The sum of those waits, in nanoseconds.
    pub wait_ns_total: u64,
    /// The sizes of the granted leases at grant, by bucket (not cumulative;
    /// bounds [`size_bound`], the last bucket for larger ones).
    pub sizes: [u64; SIZE_BUCKETS],
    /// The sum of those sizes.
    pub size_bytes_total: u64,
}

impl Histograms {
    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Histograms) {
        merge(&mut self.waits, &other.waits);
        merge(&mut self.sizes, &other.sizes);
        self.wait_ns_total = self.wait_ns_total.wrapping_add(other.wait_ns_total);
        self.size_bytes_total = self.size_bytes_total.wrapping_add(other.size_bytes_total);
    }
}

/// Running sums of per-bucket counts, as Prometheus' `_bucket` samples are.
pub fn cumulative<const N: usize>(counts: &[u64; N]) -> [u64; N] {
    let mut out = [0u64; N];
    let mut sum = 0u64;
    for (o, c) in out.iter_mut().zip(counts) {
        sum = sum.saturating_add(*c);
        *o = sum;
    }
    out
}

/// Adds `b` into `a`, bucket by bucket.
pub fn merge<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(*y);
    }
}

/// Counters of the size histogram that only one thread at a time changes
/// (the holder of a lease slot, or of a lock): a count is a load and a
/// store, no read-modify-write instruction; readers on other threads see
/// each counter whole.
pub(crate) struct SizeCounts {
    counts: [AtomicU64; SIZE_BUCKETS],
    /// The sum of the sizes counted.
    bytes: AtomicU64,
}

impl SizeCounts {
    pub(crate) fn new() -> SizeCounts {
        SizeCounts { counts: std::array::from_fn(|_| AtomicU64::new(0)), bytes: AtomicU64::new(0) }
    }

    /// Counts one request of `nbytes`. The caller is the only writer of this
    /// record until it lets go (by a release store of its own).
    #[inline(always)]
    pub(crate) fn count_exclusive(&self, nbytes: u64) {
        let c = &self.counts[size_bucket(nbytes)];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.bytes.store(self.bytes.load(Ordering::Relaxed).wrapping_add(nbytes), Ordering::Relaxed);
    }

    /// Adds this record's counts into `into` and its sum into `bytes`.
    pub(crate) fn add_to(&self, into: &mut [u64; SIZE_BUCKETS], bytes: &mut u64) {
        for (o, c) in into.iter_mut().zip(&self.counts) {
            *o = o.saturating_add(c.load(Ordering::Relaxed));
        }
        *bytes = bytes.wrapping_add(self.bytes.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_bounds_run_one_two_five_from_a_microsecond_to_a_hundred_seconds() {
        assert_eq!(WAIT_BOUNDS_NS[0], 1_000);
        assert_eq!(&WAIT_BOUNDS_NS[..4], &[1_000, 2_000, 5_000, 10_000]);
        assert_eq!(WAIT_BOUNDS_NS[23], 50_000_000_000);
        assert_eq!(WAIT_BOUNDS_NS[24], 100_000_000_000);
        assert!(WAIT_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_wait_lands_in_the_first_bucket_at_least_as_long() {
        assert_eq!(wait_bucket(0), 0);
        assert_eq!(wait_bucket(1_000), 0, "le is inclusive");
        assert_eq!(wait_bucket(1_001), 1);
        assert_eq!(wait_bucket(2_000_000), 10, "2 ms");
        assert_eq!(wait_bucket(100_000_000_000), 24);
        assert_eq!(wait_bucket(100_000_000_001), WAIT_BUCKETS - 1, "+Inf");
        assert_eq!(wait_bucket(u64::MAX), WAIT_BUCKETS - 1);
    }

    #[test]
    fn a_size_lands_in_the_smallest_power_of_four_bucket_that_holds_it() {
        assert_eq!(size_bound(0), 4096);
        assert_eq!(size_bound(1), 16384);
        assert_eq!(size_bound(SIZE_BUCKETS - 2), 1 << 60);
        for (n, bucket) in [(0, 0), (1, 0), (4096, 0), (4097, 1), (16384, 1), (16385, 2), (1 << 20, 4)] {
            assert_eq!(size_bucket(n), bucket, "{n}");
        }
        assert_eq!(size_bucket(1 << 60), SIZE_BUCKETS - 2);
        assert_eq!(size_bucket((1 << 60) + 1), SIZE_BUCKETS - 1);
        assert_eq!(size_bucket(1 << 63), SIZE_BUCKETS - 1);
        // Every size lands in a bucket whose bound holds it and whose
        // predecessor's does not.
        for n in (0..63).flat_map(|s| [(1u64 << s) - 1, 1 << s, (1 << s) + 1]).chain([1 << 63]) {
            let i = size_bucket(n);
            assert!(i == SIZE_BUCKETS - 1 || n <= size_bound(i), "{n}");
            assert!(i == 0 || n > size_bound(i - 1), "{n}");
        }
    }

    #[test]
    fn cumulative_counts_are_running_sums() {
        assert_eq!(cumulative(&[1, 0, 2, 3]), [1, 1, 3, 6]);
        let mut a = [1, 2, 3];
        merge(&mut a, &[3, 2, 1]);
        assert_eq!(a, [4, 4, 4]);
    }
}
