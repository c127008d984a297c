//! The layout of a shared pool's segment: one header, a table of attached
//! processes, a table of entries (leases and tickets) and the line of waiting
//! tickets as a ring of ids.
//!
//! Every field is an atomic, so any bit pattern another process leaves is a
//! valid value to read; the code that reads a number from here treats it as
//! untrusted: every index is bounds-checked and every size range-checked.
//! Fields change only under the segment's lock (`lock`), except the lock word
//! itself and each entry's `futex` wake-up counter.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// "MMPOOLSH", little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MMPOOLSH");
/// Bumped whenever the layout below changes.
pub(crate) const LAYOUT_VERSION: u32 = 1;

/// Processes that can be attached at once.
pub(crate) const MAX_PROCS: usize = 128;
/// Leases plus tickets (waiting, granted or failed) outstanding at once, over
/// all processes.
pub(crate) const MAX_ENTRIES: usize = 4096;
/// Requests that can wait in line at once.
pub(crate) const MAX_WAITERS: usize = 1024;

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
    /// The line: ids at `ring[head % MAX_WAITERS .. tail % MAX_WAITERS]`.
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
}

/// An attached process. Whether it lives is decided by its byte lock on the
/// segment's file (see `liveness.rs`), never by `pid`, which is for people.
#[repr(C)]
pub(crate) struct Proc {
    pub(crate) state: AtomicU32,
    pub(crate) pid: AtomicU32,
    pub(crate) attached_ns: AtomicU64,
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
}

#[repr(C, align(4096))]
pub(crate) struct Segment {
    pub(crate) header: Header,
    pub(crate) procs: [Proc; MAX_PROCS],
    pub(crate) entries: [Entry; MAX_ENTRIES],
    pub(crate) ring: [AtomicU64; MAX_WAITERS],
}

/// Bytes of a segment file.
pub(crate) const SEGMENT_SIZE: usize = std::mem::size_of::<Segment>();
pub(crate) const HEADER_SIZE: usize = std::mem::size_of::<Header>();

// ---- ids ------------------------------------------------------------------
//
// A shared pool's id is `1 << 63 | nonce << 52 | gen << 12 | entry`: the top
// bit keeps it apart from in-process pools' ids (which never set it), the
// nonce from other shared pools', and (entry, generation) pairs are never
// reused, so an id is unique and tells where its record lives.

const ENTRY_BITS: u32 = 12;
const GEN_BITS: u32 = 40;
pub(crate) const NONCE_MASK: u32 = (1 << 11) - 1;
/// The last generation an entry may issue; an entry that reached it retires.
pub(crate) const GEN_MAX: u64 = (1 << GEN_BITS) - 1;
const _: () = assert!(MAX_ENTRIES == 1 << ENTRY_BITS);
const _: () = assert!(MAX_PROCS < 255);

pub(crate) fn make_id(nonce: u32, gen: u64, entry: usize) -> u64 {
    1 << 63
        | u64::from(nonce & NONCE_MASK) << (ENTRY_BITS + GEN_BITS)
        | (gen & GEN_MAX) << ENTRY_BITS
        | entry as u64
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

/// Checks the fixed part of a header against this build's layout. Any
/// difference is a segment made by another layout or not by mmpool at all.
pub(crate) fn check_header(h: &Header) -> Result<(), String> {
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
    let fields = [
        ("header size", u64::from(h.header_size.load(Relaxed)), HEADER_SIZE as u64),
        ("segment size", h.segment_size.load(Relaxed), SEGMENT_SIZE as u64),
        ("process table size", u64::from(h.max_procs.load(Relaxed)), MAX_PROCS as u64),
        ("entry table size", u64::from(h.max_entries.load(Relaxed)), MAX_ENTRIES as u64),
        ("line size", u64::from(h.max_waiters.load(Relaxed)), MAX_WAITERS as u64),
    ];
    for (what, found, expected) in fields {
        if found != expected {
            return Err(format!("{what} is {found}, expected {expected}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_carry_their_pool() {
        let id = make_id(0x5a5, 7, 4095);
        assert_eq!(parse_id(id, 0x5a5), Some(IdParts { entry: 4095, gen: 7 }));
        assert_eq!(parse_id(id, 0x5a4), None, "another pool's nonce");
        assert_eq!(parse_id(7 << 40 | 3, 0x5a5), None, "an in-process pool's id");
        assert_eq!(parse_id(make_id(1, 0, 3), 1), None, "generation 0 is never issued");
    }

    #[test]
    fn layout_is_what_the_header_says() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        assert_eq!(SEGMENT_SIZE % 4096, 0);
    }
}
