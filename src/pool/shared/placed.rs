//! Placed shared pools: every lease and granted ticket of 1 byte or more
//! holds a range `[offset, offset + nbytes)` of `[0, total)`, recorded in
//! its entry (`Entry::offset`) and placed in the segment's placement region
//! (`placement.rs`), under the segment's lock. The rules are the in-process
//! backend's (`local::placed`): charged its own size, strict FIFO, resize
//! shrinks at once and grows in place only (else `WouldBlock`), split gives
//! the tail, merge takes the range right after only, the total is fixed.
//! Entries free their range wherever they free their bytes (release,
//! cancel, the reaping of a dead process), so a dead process's ranges come
//! back with its bytes; repair rebuilds the region from the entries.
//! A hand-off's token carries the lease's offset, and the hand-off holds
//! the range until its last part, as in-process.

use std::sync::atomic::Ordering::Relaxed;

use super::super::error::Error;
use super::super::lease::Lease;
use super::super::placement::{PlaceError, PlaceStats, Placement};
use super::handoffs;
use super::placement::RegionStore;
use super::segment::{Segment, GRANTED, LEASE, NO_RANGE};
use super::table::{Held, Locked};
use super::SharedPool;

fn internal(e: PlaceError) -> Error {
    match e {
        PlaceError::Invalid(why) => Error::InvalidArgument(why),
        e => Error::System(format!("the shared pool's placement region: {e}")),
    }
}

fn region<'a>(seg: &Segment<'a>) -> Option<Placement<RegionStore<'a>>> {
    seg.placement
        .map(|(head, nodes)| Placement::over(RegionStore { head, nodes }))
}

/// Sets up a new segment's placement region, if it has one.
pub(crate) fn init_region(seg: &Segment<'_>, total: u64, alignment: u64) -> Result<(), Error> {
    match seg.placement {
        Some((head, nodes)) => Placement::init(RegionStore { head, nodes }, total, alignment)
            .map(drop)
            .map_err(internal),
        None => Ok(()),
    }
}

/// The alignment of a segment's placement; 0 when it has none.
pub(crate) fn alignment_of(seg: &Segment<'_>) -> u64 {
    region(seg).map_or(0, |p| p.alignment())
}

impl Held<'_> {
    pub(crate) fn is_placed(&self) -> bool {
        self.seg.placement.is_some()
    }

    /// Whether a range of `nbytes` can be placed now (exact: the largest
    /// free range is the largest request placeable).
    pub(crate) fn placeable(&self, nbytes: u64) -> bool {
        region(self.seg).is_none_or_fits(nbytes)
    }

    /// In a placed pool, places a range for entry `i` (1 byte or more);
    /// `false` when none fits. Other pools: `true`.
    pub(crate) fn place(&self, i: usize, nbytes: u64) -> bool {
        // Entries of other pools keep the NO_RANGE of their allocation.
        let Some(mut p) = region(self.seg) else {
            return true;
        };
        let e = self.entry(i);
        e.offset.store(NO_RANGE, Relaxed);
        if nbytes == 0 {
            return true;
        }
        match p.alloc(nbytes) {
            Ok(at) => {
                e.offset.store(at, Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Where entry `i`'s range starts, in a placed pool, if it has one.
    pub(crate) fn entry_range(&self, i: usize) -> Option<u64> {
        let at = self.entry(i).offset.load(Relaxed);
        (self.is_placed() && at != NO_RANGE).then_some(at)
    }

    /// Frees the range at `at` (a finished hand-off's).
    pub(crate) fn free_range_at(&self, at: u64) {
        if let Some(mut p) = region(self.seg) {
            // A damaged region keeps the range; the bytes still go back.
            let _ = p.free(at);
        }
    }

    /// Frees entry `i`'s range, if it has one.
    pub(crate) fn unplace(&self, i: usize) {
        let Some(mut p) = region(self.seg) else {
            return;
        };
        // Under the segment's lock nobody else changes the entry: a load and
        // a store, not a locked swap.
        let e = self.entry(i);
        let at = e.offset.load(Relaxed);
        e.offset.store(NO_RANGE, Relaxed);
        if at != NO_RANGE {
            // A damaged region keeps the range; the bytes still go back.
            let _ = p.free(at);
        }
    }

    /// The figures of the placement region, if the pool is placed.
    pub(crate) fn place_stats(&self) -> Option<PlaceStats> {
        region(self.seg).and_then(|p| p.stats().ok())
    }

    /// Gives the tail of `from`'s range past `keep` bytes to entry `to`.
    pub(crate) fn split_range(&self, from: usize, keep: u64, to: usize) -> Result<(), Error> {
        let Some(mut p) = region(self.seg) else {
            return Ok(());
        };
        let at = self.entry(from).offset.load(Relaxed);
        let tail = p.split(at, keep).map_err(internal)?;
        self.entry(to).offset.store(tail, Relaxed);
        Ok(())
    }

    /// Joins `from`'s range into `into`'s, which it must follow directly.
    pub(crate) fn merge_ranges(&self, into: usize, from: usize) -> Result<(), Error> {
        let Some(mut p) = region(self.seg) else {
            return Ok(());
        };
        let (a, b) = (self.entry(into), self.entry(from));
        let (first, second) = (a.offset.load(Relaxed), b.offset.load(Relaxed));
        if second == NO_RANGE {
            return Ok(());
        }
        let adjacent =
            first != NO_RANGE && first.checked_add(a.nbytes.load(Relaxed)) == Some(second);
        if !adjacent {
            return Err(Error::InvalidArgument(
                "the second lease's range does not follow the first's directly: a placed pool merges adjacent \
                 ranges only"
                    .into(),
            ));
        }
        p.merge(first, second).map_err(internal)?;
        b.offset.store(NO_RANGE, Relaxed);
        Ok(())
    }

    /// Sets the region up again from the entries and the hand-offs that
    /// hold ranges; returns the entries whose range cannot be taken back
    /// (overlapping, outside), for the caller to drop.
    pub(crate) fn rebuild_placement(&self) -> Vec<usize> {
        let Some((head, nodes)) = self.seg.placement else {
            return Vec::new();
        };
        let (total, alignment) = (self.total(), alignment_of(self.seg).max(1));
        let Ok(mut p) = Placement::init(RegionStore { head, nodes }, total, alignment) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for (i, e) in self.seg.entries.iter().enumerate() {
            let (state, n, at) = (
                e.state.load(Relaxed),
                e.nbytes.load(Relaxed),
                e.offset.load(Relaxed),
            );
            if !matches!(state, LEASE | GRANTED) || n == 0 {
                continue;
            }
            if at == NO_RANGE || p.claim(at, n).is_err() {
                dropped.push(i);
            }
        }
        for (at, n) in handoffs::held_ranges(self.seg) {
            // One that cannot be taken back (damaged) keeps its bytes until
            // it finishes; its range is then simply not placed.
            let _ = p.claim(at, n);
        }
        dropped
    }
}

impl Locked<'_> {
    /// Takes the bytes of a new entry granted at once, with its range.
    pub(crate) fn take_placed(&mut self, i: usize, nbytes: u64) -> Result<(), Error> {
        self.take(nbytes);
        if self.place(i, nbytes) {
            return Ok(());
        }
        // Checked as placeable under this lock: only damage gets here.
        self.free(i);
        Err(Error::System(
            "the shared pool's placement region refused a range it reported free".into(),
        ))
    }
}

trait Fits {
    fn is_none_or_fits(self, nbytes: u64) -> bool;
}

impl Fits for Option<Placement<RegionStore<'_>>> {
    fn is_none_or_fits(self, nbytes: u64) -> bool {
        self.map_or(true, |p| {
            p.stats().is_ok_and(|s| s.largest_free_range >= nbytes)
        })
    }
}

impl SharedPool {
    pub(crate) fn is_placed(&self) -> bool {
        self.seg().placement.is_some()
    }

    pub(crate) fn alignment(&self) -> u64 {
        alignment_of(self.seg())
    }

    /// Where lease `id`'s range starts (0 for a 0-byte lease).
    pub(crate) fn lease_offset(&self, id: u64) -> Result<u64, Error> {
        if !self.is_placed() {
            return Err(Error::InvalidArgument(
                "the pool is not placed: its leases have no offsets".into(),
            ));
        }
        self.check_issued(id, "lease")?;
        let g = self.lock()?;
        let released = || Error::InvalidLease(format!("lease {id:#x} is not outstanding"));
        let i = g
            .find(id)
            .filter(|&i| g.entry(i).state.load(Relaxed) == LEASE)
            .ok_or_else(released)?;
        let at = g.entry(i).offset.load(Relaxed);
        Ok(if at == NO_RANGE { 0 } else { at })
    }

    /// `resize_lease` of a placed pool: shrinks at once, grows in place only.
    pub(crate) fn resize_placed(
        &self,
        g: &mut Locked<'_>,
        i: usize,
        id: u64,
        new: u64,
    ) -> Result<Lease, Error> {
        let e = g.entry(i);
        let old = e.nbytes.load(Relaxed);
        let at = e.offset.load(Relaxed);
        let mut p = region(g.seg).ok_or_else(|| Error::Internal("not placed".into()))?;
        if new <= old {
            if new == 0 {
                g.unplace(i);
            } else if at != NO_RANGE && new < old {
                p.shrink(at, new).map_err(internal)?;
            }
            e.nbytes.store(new, Relaxed);
            g.give(old - new);
            return Ok(Lease { id, nbytes: new });
        }
        self.check_request(g, new)?;
        if at == NO_RANGE {
            return Err(Error::InvalidArgument(format!(
                "lease {id:#x} holds 0 bytes of a placed pool and has no range to grow; acquire a new lease"
            )));
        }
        let queued = g.waiting() > 0;
        if queued || !p.grow(at, new).map_err(internal)? {
            SharedPool::bump(&g.seg.header.would_blocks);
            return Err(Error::WouldBlock {
                requested: new - old,
                available: g.available().max(0) as u64,
                queued,
            });
        }
        g.take(new - old);
        e.nbytes.store(new, Relaxed);
        Ok(Lease { id, nbytes: new })
    }
}
