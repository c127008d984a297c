//! A placed shared pool's placement state, in a region of its segment: a
//! head, then a fixed number of nodes, all atomics (any bit pattern another
//! process leaves is a value to read), position independent (links are
//! indices). Changed only under the segment's lock; [`RegionStore`] gives
//! `placement::Placement` its view of them, and every index that view
//! reads is checked by `Placement` against the region's node count, which
//! comes from the layout (never from the region itself).
//!
//! Bounds: every lease, granted ticket and hand-off of the pool holds at
//! most one range, and free ranges never touch, so `2 * records + 1` nodes
//! always suffice ([`nodes_for`]): placement never runs out of nodes.
//! After a holder died inside the lock, the state is rebuilt from the
//! records of the ranges held ([`rebuild`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::pool::placement::{Header, Node, PlaceError, Placement, Store};

/// The region's head: `placement::Header` as atomics.
#[repr(C, align(64))]
#[derive(Default)]
pub struct RegionHead {
    total: AtomicU64,
    alignment: AtomicU64,
    free_bytes: AtomicU64,
    free_ranges: AtomicU64,
    used_ranges: AtomicU64,
    first: AtomicU32,
    free_first: AtomicU32,
    spare_first: AtomicU32,
    _pad: AtomicU32,
}

/// One node: `placement::Node` as atomics.
#[repr(C)]
#[derive(Default)]
pub struct RegionNode {
    start: AtomicU64,
    len: AtomicU64,
    prev: AtomicU32,
    next: AtomicU32,
    fprev: AtomicU32,
    fnext: AtomicU32,
    kind: AtomicU32,
    _pad: AtomicU32,
}

/// Nodes for a pool whose records (leases, tickets, hand-offs) number `records`.
pub fn nodes_for(records: usize) -> usize {
    2 * records + 1
}

/// Bytes of a region of `nodes` nodes (a multiple of 64).
pub fn span(nodes: usize) -> usize {
    (std::mem::size_of::<RegionHead>() + nodes * std::mem::size_of::<RegionNode>()).div_ceil(64)
        * 64
}

/// The placement's view of a region; valid while the caller holds the
/// segment's lock.
pub struct RegionStore<'a> {
    pub head: &'a RegionHead,
    pub nodes: &'a [RegionNode],
}

impl Store for RegionStore<'_> {
    fn capacity(&self) -> u32 {
        self.nodes.len().min(u32::MAX as usize - 1) as u32
    }

    fn load(&self, i: u32) -> Node {
        let n = &self.nodes[i as usize];
        Node {
            start: n.start.load(Relaxed),
            len: n.len.load(Relaxed),
            prev: n.prev.load(Relaxed),
            next: n.next.load(Relaxed),
            fprev: n.fprev.load(Relaxed),
            fnext: n.fnext.load(Relaxed),
            kind: n.kind.load(Relaxed),
            _pad: 0,
        }
    }

    fn save(&mut self, i: u32, v: Node) {
        let n = &self.nodes[i as usize];
        n.start.store(v.start, Relaxed);
        n.len.store(v.len, Relaxed);
        n.prev.store(v.prev, Relaxed);
        n.next.store(v.next, Relaxed);
        n.fprev.store(v.fprev, Relaxed);
        n.fnext.store(v.fnext, Relaxed);
        n.kind.store(v.kind, Relaxed);
    }

    fn header(&self) -> Header {
        let h = self.head;
        Header {
            total: h.total.load(Relaxed),
            alignment: h.alignment.load(Relaxed),
            free_bytes: h.free_bytes.load(Relaxed),
            free_ranges: h.free_ranges.load(Relaxed),
            used_ranges: h.used_ranges.load(Relaxed),
            first: h.first.load(Relaxed),
            free_first: h.free_first.load(Relaxed),
            spare_first: h.spare_first.load(Relaxed),
            _pad: 0,
        }
    }

    fn set_header(&mut self, v: Header) {
        let h = self.head;
        h.total.store(v.total, Relaxed);
        h.alignment.store(v.alignment, Relaxed);
        h.free_bytes.store(v.free_bytes, Relaxed);
        h.free_ranges.store(v.free_ranges, Relaxed);
        h.used_ranges.store(v.used_ranges, Relaxed);
        h.first.store(v.first, Relaxed);
        h.free_first.store(v.free_first, Relaxed);
        h.spare_first.store(v.spare_first, Relaxed);
    }
}

/// Sets a region up as one free range `[0, total)`.
pub fn init(
    store: RegionStore<'_>,
    total: u64,
    alignment: u64,
) -> Result<Placement<RegionStore<'_>>, PlaceError> {
    Placement::init(store, total, alignment)
}

/// Sets a region up again from the ranges held (`(offset, size)` each),
/// after a holder died inside the lock; returns, for each range, whether it
/// was taken back (a range that overlaps one before it, or lies outside the
/// total, is refused: its record is to be dropped by the caller).
pub fn rebuild<'a>(
    store: RegionStore<'a>,
    total: u64,
    alignment: u64,
    held: impl IntoIterator<Item = (u64, u64)>,
) -> Result<(Placement<RegionStore<'a>>, Vec<bool>), PlaceError> {
    let mut p = Placement::init(store, total, alignment)?;
    let taken = held
        .into_iter()
        .map(|(at, size)| p.claim(at, size).is_ok())
        .collect();
    Ok((p, taken))
}
