//! Per-process figures of a shared pool: its histograms (see
//! `pool::histogram`) and its fixed reservations, one record per process
//! slot in a region of their own after the ring (`Segment::figures`,
//! indexed like `procs`), then one more record for the processes that left.
//!
//! When a process leaves (detaches, or is reaped dead) its histograms are
//! folded into that last record and its slot's record starts from zero, so
//! the pool-wide histogram (the merge of every record) never goes
//! backwards; its reservations end with it.
//!
//! Every field is an atomic changed only under the segment's lock; readers
//! without the lock see each counter whole. Indices are bounds-checked and a
//! label read back is whatever bytes are there, decoded lossily.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::segment::Segment;
use crate::pool::histogram::{size_bucket, wait_bucket, Histograms, SIZE_BUCKETS, WAIT_BUCKETS};
use crate::pool::reservations::{check_bytes, check_label, too_many, Reservation, MAX_LABEL_BYTES, MAX_RESERVATIONS};
use crate::pool::Error;

const LABEL_WORDS: usize = MAX_LABEL_BYTES / 8;
const _: () = assert!(MAX_LABEL_BYTES % 8 == 0);

/// One labelled reservation; `bytes` 0 means the record is free.
#[repr(C)]
pub(crate) struct Reserved {
    pub(crate) bytes: AtomicU64,
    /// The label's bytes, zero-padded.
    pub(crate) label: [AtomicU64; LABEL_WORDS],
}

/// The figures of one process slot (or of the processes that left).
#[repr(C, align(64))]
pub(crate) struct ProcFigures {
    pub(crate) waits: [AtomicU64; WAIT_BUCKETS],
    pub(crate) wait_ns_total: AtomicU64,
    pub(crate) sizes: [AtomicU64; SIZE_BUCKETS],
    pub(crate) size_bytes_total: AtomicU64,
    pub(crate) reserved: [Reserved; MAX_RESERVATIONS],
}

fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl ProcFigures {
    fn histograms(&self) -> Histograms {
        Histograms {
            waits: std::array::from_fn(|i| self.waits[i].load(Relaxed)),
            wait_ns_total: self.wait_ns_total.load(Relaxed),
            sizes: std::array::from_fn(|i| self.sizes[i].load(Relaxed)),
            size_bytes_total: self.size_bytes_total.load(Relaxed),
        }
    }

    fn add_histograms(&self, h: &Histograms) {
        for (c, n) in self.waits.iter().zip(h.waits) {
            add(c, n);
        }
        add(&self.wait_ns_total, h.wait_ns_total);
        for (c, n) in self.sizes.iter().zip(h.sizes) {
            add(c, n);
        }
        add(&self.size_bytes_total, h.size_bytes_total);
    }

    fn clear(&self) {
        let counters = self.waits.iter().chain(&self.sizes).chain([&self.wait_ns_total, &self.size_bytes_total]);
        for c in counters {
            c.store(0, Relaxed);
        }
        for r in &self.reserved {
            r.bytes.store(0, Relaxed);
        }
    }

    fn reservations(&self) -> Vec<Reservation> {
        self.reserved
            .iter()
            .filter_map(|r| {
                let bytes = r.bytes.load(Relaxed);
                (bytes != 0).then(|| Reservation { label: read_label(r), bytes })
            })
            .collect()
    }
}

fn read_label(r: &Reserved) -> String {
    let raw: Vec<u8> = r.label.iter().flat_map(|w| w.load(Relaxed).to_le_bytes()).collect();
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn label_words(label: &str) -> [u64; LABEL_WORDS] {
    let mut raw = [0u8; MAX_LABEL_BYTES];
    raw[..label.len()].copy_from_slice(label.as_bytes());
    std::array::from_fn(|i| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default()))
}

/// The record of process slot `slot`, if the region has one.
fn of<'a>(seg: &Segment<'a>, slot: usize) -> Option<&'a ProcFigures> {
    // The last record is the departed processes', not a slot's.
    if slot < seg.procs.len() {
        seg.figures.get(slot)
    } else {
        None
    }
}

/// Under the lock: a wait of `ns` by a request of the process in `slot`.
pub(crate) fn count_wait(seg: &Segment<'_>, slot: usize, ns: u64) {
    if let Some(f) = of(seg, slot) {
        add(&f.waits[wait_bucket(ns)], 1);
        add(&f.wait_ns_total, ns);
    }
}

/// Under the lock: a lease of `nbytes` granted to the process in `slot`.
pub(crate) fn count_size(seg: &Segment<'_>, slot: usize, nbytes: u64) {
    if let Some(f) = of(seg, slot) {
        add(&f.sizes[size_bucket(nbytes)], 1);
        add(&f.size_bytes_total, nbytes);
    }
}

/// Under the lock: the process in `slot` left. Its histograms move to the
/// departed record; its reservations end.
pub(crate) fn depart(seg: &Segment<'_>, slot: usize) {
    let (Some(f), Some(departed)) = (of(seg, slot), seg.figures.get(seg.procs.len())) else { return };
    departed.add_histograms(&f.histograms());
    f.clear();
}

/// Under the lock: every record starts over (an abandoned pool reset).
pub(crate) fn reset(seg: &Segment<'_>) {
    for f in seg.figures {
        f.clear();
    }
}

/// The pool's histograms: the merge of every record, departed ones included.
pub(crate) fn merged(seg: &Segment<'_>) -> Histograms {
    let mut out = Histograms::default();
    for h in seg.figures.iter().map(ProcFigures::histograms) {
        out.merge(&h);
    }
    out
}

/// The reservations of the process in `slot`.
pub(crate) fn reservations(seg: &Segment<'_>, slot: usize) -> Vec<Reservation> {
    of(seg, slot).map(ProcFigures::reservations).unwrap_or_default()
}

/// The sum of every process's reservations.
pub(crate) fn reserved_total(seg: &Segment<'_>) -> u64 {
    (0..seg.procs.len()).flat_map(|s| reservations(seg, s)).fold(0u64, |sum, r| sum.saturating_add(r.bytes))
}

/// Under the lock: records that the process in `slot` holds `bytes` outside
/// any lease under `label` (0 removes it).
pub(crate) fn set_reservation(seg: &Segment<'_>, slot: usize, label: &str, bytes: u64) -> Result<(), Error> {
    check_label(label)?;
    check_bytes(bytes)?;
    let f = of(seg, slot).ok_or_else(|| Error::Internal(format!("process slot {slot} has no figures")))?;
    let words = label_words(label);
    let same = |r: &&Reserved| r.bytes.load(Relaxed) != 0 && r.label.iter().zip(words).all(|(w, x)| w.load(Relaxed) == x);
    if let Some(r) = f.reserved.iter().find(same) {
        r.bytes.store(bytes, Relaxed);
        return Ok(());
    }
    if bytes == 0 {
        return Ok(());
    }
    let Some(r) = f.reserved.iter().find(|r| r.bytes.load(Relaxed) == 0) else {
        return Err(too_many(&f.reservations()));
    };
    for (w, x) in r.label.iter().zip(words) {
        w.store(x, Relaxed);
    }
    r.bytes.store(bytes, Relaxed);
    Ok(())
}
