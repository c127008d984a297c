//! `mmpool_get_histograms`: the wait and request-size histograms of a pool.

use super::handle::{borrow, mmpool};
use super::sized::write_sized;
use super::status::mmpool_status;
use crate::pool::histogram::{size_bound, Histograms, SIZE_BUCKETS, WAIT_BOUNDS_NS, WAIT_BUCKETS};

/// Buckets of `mmpool_histograms.wait_counts`: 25 finite bounds, then +Inf.
pub const MMPOOL_WAIT_BUCKETS: usize = 26;
/// Buckets of `mmpool_histograms.size_counts`: 25 finite bounds, then +Inf.
pub const MMPOOL_SIZE_BUCKETS: usize = 26;
const _: () = assert!(MMPOOL_WAIT_BUCKETS == WAIT_BUCKETS && MMPOOL_SIZE_BUCKETS == SIZE_BUCKETS);

/// Histograms of a pool, counted since it was created (for a shared pool:
/// the merge over every process that ever attached). Set
/// `size = sizeof(mmpool_histograms)` before calling `mmpool_get_histograms`;
/// as for `mmpool_stats`, the fields that fit in `size` bytes are written
/// and `size` becomes the bytes written.
///
/// Bucket `i` counts the observations above bound `i - 1` and at most bound
/// `i` (per bucket, not cumulative; Prometheus' `_bucket` samples are the
/// running sums). The last bound of each histogram is `UINT64_MAX`: +Inf.
///
/// * Waits: the requests that waited in line before their grant (acquires,
///   tickets and lease growths: `mmpool_stats.waited_grants`), bounds 1, 2, 5
///   per decade from 1 us to 100 s: 1000, 2000, 5000, 10000, ...
///   50000000000, 100000000000 ns.
/// * Sizes: each lease at its grant (`mmpool_stats.grants`; a later growth is
///   not observed again), bounds the powers of 4 from 4 KiB to 2^60 bytes:
///   4096, 16384, 65536, ... 2^60.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mmpool_histograms {
    /// In: the caller's `sizeof(mmpool_histograms)`. Out: bytes written.
    pub size: u64,
    /// Requests that waited in line: the sum of `wait_counts`
    /// (`mmpool_stats.waited_grants` when nothing changed meanwhile).
    pub wait_count: u64,
    /// Sum of their waits in nanoseconds (`mmpool_stats.wait_ns_total` when
    /// nothing changed meanwhile).
    pub wait_sum_ns: u64,
    /// Upper bound (inclusive) of each wait bucket, in nanoseconds.
    pub wait_le_ns: [u64; MMPOOL_WAIT_BUCKETS],
    /// Waits per bucket.
    pub wait_counts: [u64; MMPOOL_WAIT_BUCKETS],
    /// Leases granted: the sum of `size_counts` (`mmpool_stats.grants` when
    /// nothing changed meanwhile).
    pub size_count: u64,
    /// Sum of their sizes at grant, in bytes.
    pub size_sum_bytes: u64,
    /// Upper bound (inclusive) of each size bucket, in bytes.
    pub size_le_bytes: [u64; MMPOOL_SIZE_BUCKETS],
    /// Leases per bucket.
    pub size_counts: [u64; MMPOOL_SIZE_BUCKETS],
}

impl From<&Histograms> for mmpool_histograms {
    fn from(h: &Histograms) -> Self {
        let bound = |bounds: &[u64], i: usize| bounds.get(i).copied().unwrap_or(u64::MAX);
        let size_bounds: [u64; SIZE_BUCKETS - 1] = std::array::from_fn(size_bound);
        mmpool_histograms {
            size: std::mem::size_of::<mmpool_histograms>() as u64,
            wait_count: h.waits.iter().fold(0, |a, &c| a.saturating_add(c)),
            wait_sum_ns: h.wait_ns_total,
            wait_le_ns: std::array::from_fn(|i| bound(&WAIT_BOUNDS_NS, i)),
            wait_counts: h.waits,
            size_count: h.sizes.iter().fold(0, |a, &c| a.saturating_add(c)),
            size_sum_bytes: h.size_bytes_total,
            size_le_bytes: std::array::from_fn(|i| bound(&size_bounds, i)),
            size_counts: h.sizes,
        }
    }
}

/// Fills `*out_histograms` with the pool's histograms. Set
/// `out_histograms->size = sizeof(mmpool_histograms)` first (any multiple of
/// 8 from 8 up: the fields that fit are written, and `size` becomes the
/// bytes written). Thread-safe; the figures are a moment's, read without
/// stopping the pool (counts of different buckets may be a grant apart
/// while requests are granted meanwhile).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (size not a multiple of 8, or 0),
/// `SYSTEM` (a shared pool whose file was truncated under this process).
#[no_mangle]
pub extern "C" fn mmpool_get_histograms(pool: *const mmpool, out_histograms: *mut mmpool_histograms) -> mmpool_status {
    boundary!("mmpool_get_histograms", {
        // SAFETY: the C contract: `pool` is a held handle; `out_histograms` is
        // NULL or points to at least `out_histograms->size` writable bytes.
        let pool = unsafe { borrow(pool, "pool") }?;
        let histograms = mmpool_histograms::from(&pool.histograms()?);
        // SAFETY: as above; `mmpool_histograms` is `repr(C)`, all `u64`, size first.
        unsafe { write_sized(out_histograms, &histograms, "out_histograms", "mmpool_histograms") }
    })
}
