//! The layout of a shared pool's segment: one header, a table of attached
//! processes, a table of entries (leases and tickets), the line of waiting
//! tickets as a ring of ids, and the per-process figures (`figures.rs`).
//!
//! Every field is an atomic, so any bit pattern another process leaves is a
//! valid value to read; the code that reads a number from here treats it as
//! untrusted: every index is bounds-checked and every size range-checked.
//! Fields change only under the segment's lock (`lock`), except the lock word
//! itself and each entry's `futex` wake-up counter.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

use super::figures::ProcFigures;
use super::handoffs::{HandoffRecord, HandoffsHead};
use super::placement::{self, RegionHead, RegionNode};

/// "MMPOOLSH", little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MMPOOLSH");
/// Bumped whenever the layout below changes.
pub(crate) const LAYOUT_VERSION: u32 = 4;

/// The sizes of a segment's tables, chosen by its creator (see `Limits`).
/// Bounds: processes 1 ..= 254 (a slot must fit the lock word's byte and
/// leave 0 for "free"), leases plus tickets 1 ..= 65536 (an id's entry
/// bits), waiters 1 ..= the entries (each waiter is an entry).
pub(crate) const PROCS_RANGE: (u32, u32) = (1, 254);
pub(crate) const ENTRIES_RANGE: (u32, u32) = (1, 1 << ENTRY_BITS);
/// Defaults: what every segment had before the limits could be chosen.
pub(crate) const DEFAULT_PROCS: u32 = 128;
pub(crate) const DEFAULT_ENTRIES: u32 = 4096;
pub(crate) const DEFAULT_WAITERS: u32 = 1024;
/// Hand-off records: 1 ..= 4096, default 256 (`handoffs.rs`).
pub(crate) const HANDOFFS_RANGE: (u32, u32) = (1, 4096);
pub(crate) const DEFAULT_HANDOFFS: u32 = 256;

/// `Header::init_state`: the creator writes `READY` last.
pub(crate) const INIT_READY: u32 = 0x5245_4459;

/// `Proc::state`.
pub(crate) const PROC_FREE: u32 = 0;
pub(crate) const PROC_ATTACHED: u32 = 1;

/// `Entry::state`. Every change of an entry's meaning is one store of this
/// word, so a process killed between two stores leaves each entry whole.
pub(crate) const FREE: u32 = 0;
/// A ticket in line.
pub(crate) const WAITING: u32 = 1;
/// A ticket whose bytes were taken for it; its owner has not collected them.
pub(crate) const GRANTED: u32 = 2;
/// A lease.
pub(crate) const LEASE: u32 = 3;
/// A ticket that left the line because the pool was closed.
pub(crate) const FAILED_CLOSED: u32 = 4;
/// A ticket that left the line because the total was lowered below it.
pub(crate) const FAILED_CAPACITY: u32 = 5;

#[repr(C)]
pub(crate) struct Header {
    pub(crate) magic: AtomicU64,
    pub(crate) layout_version: AtomicU32,
    pub(crate) header_size: AtomicU32,
    pub(crate) segment_size: AtomicU64,
    pub(crate) max_procs: AtomicU32,
    pub(crate) max_entries: AtomicU32,
    pub(crate) max_waiters: AtomicU32,
    pub(crate) init_state: AtomicU32,
    /// The lock word (see `lock.rs`).
    pub(crate) lock: AtomicU32,
    /// Random at creation; part of every id so that ids of other pools are told apart.
    pub(crate) nonce: AtomicU32,
    pub(crate) closed: AtomicU32,
    /// Where the search for a free entry starts.
    pub(crate) alloc_hint: AtomicU32,
    pub(crate) total: AtomicU64,
    /// `total` minus the bytes of leases and granted tickets (negative after
    /// the total was lowered below what is in use). Derivable from the
    /// entries; repair recomputes it.
    pub(crate) available: AtomicI64,
    pub(crate) peak: AtomicU64,
    pub(crate) grants: AtomicU64,
    pub(crate) waited_grants: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) would_blocks: AtomicU64,
    pub(crate) capacity_rejections: AtomicU64,
    pub(crate) closed_rejections: AtomicU64,
    pub(crate) wait_ns_total: AtomicU64,
    pub(crate) wait_ns_max: AtomicU64,
    /// Order of arrival of tickets.
    pub(crate) next_pos: AtomicU64,
    /// The line: ids at `ring[head % waiters .. tail % waiters]`.
    pub(crate) ring_head: AtomicU64,
    pub(crate) ring_tail: AtomicU64,
    /// Entries in state `WAITING` (derivable).
    pub(crate) waiting: AtomicU64,
    /// Entries in state `LEASE` (derivable).
    pub(crate) leases: AtomicU64,
    /// CLOCK_MONOTONIC of the last search for dead processes.
    pub(crate) last_reap_ns: AtomicU64,
    pub(crate) created_ns: AtomicU64,
    pub(crate) creator_pid: AtomicU32,
    /// Recoveries of the lock from a process that died holding it.
    pub(crate) lock_recoveries: AtomicU32,
    pub(crate) reaped_procs: AtomicU64,
    /// A lock word that a waiter saw unchanged for a whole slice while its
    /// holder lived, and since when (CLOCK_MONOTONIC, written first): what
    /// `mmpool status` shows as the lock's holder and for how long.
    pub(crate) lock_seen_word: AtomicU32,
    /// The last such word reported in the log (each is reported once).
    pub(crate) lock_reported_word: AtomicU32,
    pub(crate) lock_seen_ns: AtomicU64,
    /// Hand-off records (`handoffs.rs`), chosen at creation.
    pub(crate) max_handoffs: AtomicU32,
    /// Nodes of a placed pool's placement region (`placement.rs`); 0 for a
    /// pool that is not placed.
    pub(crate) placement_nodes: AtomicU32,
}

/// An attached process. Whether it lives is decided by its byte lock on the
/// segment's file (see `liveness.rs`), never by `pid`, which is for people.
#[repr(C)]
pub(crate) struct Proc {
    pub(crate) state: AtomicU32,
    pub(crate) pid: AtomicU32,
    pub(crate) attached_ns: AtomicU64,
    /// The process's doorbell (see `doorbell.rs`): bumped, under the lock,
    /// whenever one of its tickets is decided while `listening`; its relay
    /// thread sleeps on it.
    pub(crate) doorbell: AtomicU32,
    /// Nonzero while the process has a relay thread.
    pub(crate) listening: AtomicU32,
}

/// A lease or a ticket. Cache-line sized: waiters sleep on `futex`.
#[repr(C, align(64))]
pub(crate) struct Entry {
    pub(crate) id: AtomicU64,
    pub(crate) nbytes: AtomicU64,
    /// Order of arrival (tickets).
    pub(crate) pos: AtomicU64,
    /// CLOCK_MONOTONIC when it joined the line.
    pub(crate) since_ns: AtomicU64,
    /// The generation of the last id issued from this entry.
    pub(crate) gen: AtomicU64,
    pub(crate) state: AtomicU32,
    /// Index of the owning process in `procs`.
    pub(crate) owner: AtomicU32,
    /// Bumped whenever the ticket's fate changes; its waiters sleep on it.
    pub(crate) futex: AtomicU32,
    /// In a placed pool, where the range of a lease or granted ticket
    /// starts (`NO_RANGE`: it has none).
    pub(crate) offset: AtomicU64,
}

/// `Entry::offset` of an entry without a range.
pub(crate) const NO_RANGE: u64 = u64::MAX;

/// A mapped segment seen through its tables, whose lengths are the
/// segment's limits (checked against the file when it was mapped).
#[derive(Clone, Copy)]
pub(crate) struct Segment<'a> {
    pub(crate) header: &'a Header,
    pub(crate) procs: &'a [Proc],
    pub(crate) entries: &'a [Entry],
    pub(crate) ring: &'a [AtomicU64],
    /// One record per process slot, then the departed processes' record.
    pub(crate) figures: &'a [ProcFigures],
    pub(crate) handoffs_head: &'a HandoffsHead,
    pub(crate) handoffs: &'a [HandoffRecord],
    /// A placed pool's placement region.
    pub(crate) placement: Option<(&'a RegionHead, &'a [RegionNode])>,
}

/// Where the tables of a segment with given limits lie, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) procs: usize,
    pub(crate) entries: usize,
    pub(crate) waiters: usize,
    pub(crate) procs_at: usize,
    pub(crate) entries_at: usize,
    pub(crate) ring_at: usize,
    /// `procs + 1` records of `ProcFigures`.
    pub(crate) figures_at: usize,
    pub(crate) handoffs: usize,
    /// A `HandoffsHead`, then `handoffs` records.
    pub(crate) handoffs_at: usize,
    /// A placed pool's placement region: nodes (0: not placed) and where.
    pub(crate) placement_nodes: usize,
    pub(crate) placement_at: usize,
    /// Bytes of the file: a whole number of pages.
    pub(crate) size: usize,
}

pub(crate) const PAGE: usize = 4096;
pub(crate) const HEADER_SIZE: usize = std::mem::size_of::<Header>();

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl Layout {
    /// The layout for `(procs, entries, waiters, handoffs)`, or why they are
    /// out of bounds.
    pub(crate) fn new(procs: u32, entries: u32, waiters: u32, handoffs: u32) -> Result<Layout, String> {
        let within = |what: &str, v: u32, (lo, hi): (u32, u32)| {
            if v < lo || v > hi {
                Err(format!("{what} {v} is out of range ({lo} to {hi})"))
            } else {
                Ok(())
            }
        };
        within("max processes", procs, PROCS_RANGE)?;
        within("max leases and tickets", entries, ENTRIES_RANGE)?;
        within("max waiters", waiters, (1, entries))?;
        within("max hand-offs", handoffs, HANDOFFS_RANGE)?;
        let (procs, entries, waiters, handoffs) = (procs as usize, entries as usize, waiters as usize, handoffs as usize);
        let procs_at = round_up(HEADER_SIZE, 64);
        let entries_at = round_up(procs_at + procs * std::mem::size_of::<Proc>(), 64);
        let ring_at = entries_at + entries * std::mem::size_of::<Entry>();
        let figures_at = round_up(ring_at + waiters * 8, 64);
        let handoffs_at = round_up(figures_at + (procs + 1) * std::mem::size_of::<ProcFigures>(), 64);
        let size = round_up(handoffs_at + HandoffsHead::span(handoffs), PAGE);
        Ok(Layout {
            procs,
            entries,
            waiters,
            procs_at,
            entries_at,
            ring_at,
            figures_at,
            handoffs,
            handoffs_at,
            placement_nodes: 0,
            placement_at: 0,
            size,
        })
    }

    /// This layout with a placement region after the other tables.
    pub(crate) fn placed(self) -> Layout {
        let placement_nodes = placement::nodes_for(self.entries + self.handoffs);
        let placement_at = round_up(self.handoffs_at + HandoffsHead::span(self.handoffs), 64);
        let size = round_up(placement_at + placement::span(placement_nodes), PAGE);
        Layout { placement_nodes, placement_at, size, ..self }
    }

    /// The layout a header declares, checked against the bounds and against
    /// the size it records.
    pub(crate) fn of_header(h: &Header) -> Result<Layout, String> {
        use std::sync::atomic::Ordering::Relaxed;
        let l = Layout::new(
            h.max_procs.load(Relaxed),
            h.max_entries.load(Relaxed),
            h.max_waiters.load(Relaxed),
            h.max_handoffs.load(Relaxed),
        )
        .map_err(|why| format!("its header is corrupt: {why}"))?;
        let l = match h.placement_nodes.load(Relaxed) {
            0 => l,
            n if n as usize == l.placed().placement_nodes => l.placed(),
            n => return Err(format!("its header is corrupt: {n} placement nodes")),
        };
        let recorded = h.segment_size.load(Relaxed);
        if recorded != l.size as u64 {
            return Err(format!("segment size is {recorded}, its limits make it {}", l.size));
        }
        Ok(l)
    }

    /// The tables of a mapping of at least `self.size` bytes at `base`.
    ///
    /// # Safety
    /// `base` is page-aligned and points to `self.size` mapped, readable and
    /// writable bytes that stay mapped for `'a`.
    pub(crate) unsafe fn segment<'a>(&self, base: *const u8) -> Segment<'a> {
        // SAFETY: the caller's contract; every offset is within `size` and
        // aligned for its type (64 for the tables, the page for the header);
        // every type here consists only of atomics, for which any bit pattern
        // is valid and shared mutation through `&` is sound.
        unsafe {
            Segment {
                header: &*base.cast::<Header>(),
                procs: std::slice::from_raw_parts(base.add(self.procs_at).cast::<Proc>(), self.procs),
                entries: std::slice::from_raw_parts(base.add(self.entries_at).cast::<Entry>(), self.entries),
                ring: std::slice::from_raw_parts(base.add(self.ring_at).cast::<AtomicU64>(), self.waiters),
                figures: std::slice::from_raw_parts(base.add(self.figures_at).cast::<ProcFigures>(), self.procs + 1),
                handoffs_head: &*base.add(self.handoffs_at).cast::<HandoffsHead>(),
                handoffs: std::slice::from_raw_parts(
                    base.add(self.handoffs_at + HandoffsHead::span(0)).cast::<HandoffRecord>(),
                    self.handoffs,
                ),
                placement: (self.placement_nodes > 0).then(|| {
                    let head = base.add(self.placement_at);
                    (
                        &*head.cast::<RegionHead>(),
                        std::slice::from_raw_parts(
                            head.add(std::mem::size_of::<RegionHead>()).cast::<RegionNode>(),
                            self.placement_nodes,
                        ),
                    )
                }),
            }
        }
    }
}

// ---- ids ------------------------------------------------------------------
//
// A shared pool's id is `1 << 63 | nonce << 52 | gen << 16 | entry`: the top
// bit keeps it apart from in-process pools' ids (which never set it), the
// nonce from other shared pools', and (entry, generation) pairs are never
// reused, so an id is unique and tells where its record lives.

const ENTRY_BITS: u32 = 16;
const GEN_BITS: u32 = 36;
pub(crate) const NONCE_MASK: u32 = (1 << 11) - 1;
/// The last generation an entry may issue; an entry that reached it retires.
pub(crate) const GEN_MAX: u64 = (1 << GEN_BITS) - 1;
const _: () = assert!(PROCS_RANGE.1 < 255);

pub(crate) fn make_id(nonce: u32, gen: u64, entry: usize) -> u64 {
    1 << 63
        | u64::from(nonce & NONCE_MASK) << (ENTRY_BITS + GEN_BITS)
        | (gen & GEN_MAX) << ENTRY_BITS
        | entry as u64
}

/// An id for a ticket of one process that has not joined the line yet
/// (generation 0, which no entry issues; `k` below 2^16).
pub(crate) fn make_deferred_id(nonce: u32, k: u64) -> u64 {
    1 << 63 | u64::from(nonce & NONCE_MASK) << (ENTRY_BITS + GEN_BITS) | (k & ((1 << ENTRY_BITS) - 1))
}

/// Whether `id` is one of `make_deferred_id`'s for this nonce.
pub(crate) fn is_deferred_id(id: u64, nonce: u32) -> bool {
    id >> 63 == 1
        && ((id >> (ENTRY_BITS + GEN_BITS)) as u32 & NONCE_MASK) == nonce & NONCE_MASK
        && (id >> ENTRY_BITS) & GEN_MAX == 0
}

/// A decoded id: which entry and generation, if it is a shared pool's id
/// with this nonce at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdParts {
    pub(crate) entry: usize,
    pub(crate) gen: u64,
}

pub(crate) fn parse_id(id: u64, nonce: u32) -> Option<IdParts> {
    if id >> 63 != 1 || ((id >> (ENTRY_BITS + GEN_BITS)) as u32 & NONCE_MASK) != nonce & NONCE_MASK {
        return None;
    }
    let gen = (id >> ENTRY_BITS) & GEN_MAX;
    let entry = (id & ((1 << ENTRY_BITS) - 1)) as usize;
    (gen != 0).then_some(IdParts { entry, gen })
}

/// Checks the fixed part of a header against this build's layout and
/// returns the layout its limits give. Any difference is a segment made by
/// another layout or not by mmpool at all.
pub(crate) fn check_header(h: &Header) -> Result<Layout, String> {
    use std::sync::atomic::Ordering::Relaxed;
    let magic = h.magic.load(Relaxed);
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#018x}: not an mmpool shared pool"));
    }
    let version = h.layout_version.load(Relaxed);
    if version != LAYOUT_VERSION {
        return Err(format!(
            "layout version {version}, this library reads version {LAYOUT_VERSION}"
        ));
    }
    let header_size = h.header_size.load(Relaxed);
    if header_size != HEADER_SIZE as u32 {
        return Err(format!("header size is {header_size}, expected {HEADER_SIZE}"));
    }
    Layout::of_header(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_carry_their_pool() {
        let id = make_id(0x5a5, 7, 65535);
        assert_eq!(parse_id(id, 0x5a5), Some(IdParts { entry: 65535, gen: 7 }));
        assert_eq!(parse_id(id, 0x5a4), None, "another pool's nonce");
        assert_eq!(parse_id(7 << 40 | 3, 0x5a5), None, "an in-process pool's id");
        assert_eq!(parse_id(make_id(1, 0, 3), 1), None, "generation 0 is never issued");
        let deferred = make_deferred_id(0x5a5, 9);
        assert!(is_deferred_id(deferred, 0x5a5) && parse_id(deferred, 0x5a5).is_none());
        assert!(!is_deferred_id(id, 0x5a5) && !is_deferred_id(deferred, 0x5a4));
    }

    #[test]
    fn layouts_are_whole_pages_and_refuse_limits_out_of_bounds() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        assert_eq!(std::mem::size_of::<Proc>(), 24);
        let l = Layout::new(DEFAULT_PROCS, DEFAULT_ENTRIES, DEFAULT_WAITERS, DEFAULT_HANDOFFS).unwrap();
        assert_eq!(l.size % PAGE, 0);
        assert!(l.ring_at + 8 * 1024 <= l.figures_at && l.entries_at % 64 == 0 && l.figures_at % 64 == 0);
        assert!(l.figures_at + 129 * std::mem::size_of::<ProcFigures>() <= l.handoffs_at);
        assert!(l.handoffs_at % 64 == 0 && l.handoffs_at + HandoffsHead::span(256) <= l.size);
        assert!(Layout::new(1, 1, 1, 1).is_ok() && Layout::new(254, 65536, 65536, 4096).is_ok());
        for (p, e, w, o) in
            [(0, 1, 1, 1), (255, 1, 1, 1), (1, 0, 1, 1), (1, 65537, 1, 1), (1, 4, 0, 1), (1, 4, 5, 1), (1, 1, 1, 0), (1, 1, 1, 4097)]
        {
            assert!(Layout::new(p, e, w, o).is_err(), "({p}, {e}, {w}, {o})");
        }
    }
}
