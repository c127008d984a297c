//! The uncontended acquire and release of a shared pool, for the C
//! boundary's fast path (and the front's first try): one compare-and-swap
//! of the lock word taken free (`Quick`), the entry and the counts updated
//! in place as the full path does, one unlock. Anything unusual leaves the
//! pool as it was and sends the caller to the full path, which starts over
//! and handles it: the lock held or contested (waiting, takeover after a
//! crash), another fork generation, tickets abandoned by this process, a
//! hand-off's claim deadline passed, a closed pool, requests in line, too
//! few bytes, a placed pool's acquire, a full table, an id that is not this
//! process's outstanding lease, and damage found after the update (the full
//! path then reports it).
//!
//! Clock reads: none, unless a hand-off with a claim deadline is
//! outstanding (then one, to see whether it is due). A lease's entry
//! records no arrival time (`Held::alloc_entry`).

use std::sync::atomic::Ordering::{Acquire, Relaxed};

use super::handoffs;
use super::segment::LEASE;
use super::table::{Held, Quick};
use super::{generation, Attachment, SharedPool, NO_SLOT};
use crate::pool::lease::Lease;

impl SharedPool {
    /// Grants `nbytes` at once when nothing unusual stands in the way (see
    /// the module's list); `None` changes nothing. Never panics.
    #[inline]
    pub(crate) fn acquire_fast(&self, nbytes: u64) -> Option<Lease> {
        let g = self.quick()?;
        let granted = g.grant_now(nbytes);
        drop(g);
        granted.filter(|_| !self.map.is_damaged())
    }

    /// Releases this process's outstanding lease `id` when nobody waits in
    /// line (whom its bytes could let through): `true` when done; `false`
    /// changes nothing, and the full path decides (it also tells a released
    /// lease, a foreign one and a ticket apart). Never panics.
    #[inline]
    pub(crate) fn release_fast(&self, id: u64) -> bool {
        let Some(g) = self.quick() else { return false };
        let done = g.end_lease_now(id);
        drop(g);
        done && !self.map.is_damaged()
    }

    /// The lock, taken at the first try by this generation's attachment,
    /// with nothing owed that the full path's lock does first (abandoned
    /// tickets to free, hand-offs due to expire).
    #[inline(always)]
    fn quick(&self) -> Option<Quick<'_>> {
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.generation != generation()
            || a.slot as u64 == NO_SLOT
            || self.any_abandoned.load(Relaxed)
        {
            return None;
        }
        let seg = self.seg();
        let g = Quick::try_take(seg, a.slot, a.fd, &self.inside)?;
        (!handoffs::any_due(seg)).then_some(g)
    }
}

impl Held<'_> {
    /// Under the lock: a lease of `nbytes` if the plain rule grants it now
    /// (open, nobody in line, enough available, not placed) and an entry is
    /// free; else `None`, nothing changed.
    #[inline(always)]
    fn grant_now(&self, nbytes: u64) -> Option<Lease> {
        let h = self.seg.header;
        if self.is_placed() || self.closed() || nbytes > h.total.load(Relaxed) || !self.grantable_now(nbytes) {
            return None;
        }
        let (_, id) = self.alloc_entry(LEASE, nbytes)?;
        self.take(nbytes);
        Some(Lease { id, nbytes })
    }

    /// Under the lock: ends `id` if it is an outstanding lease of this
    /// process and nobody waits in line; else `false`, nothing changed.
    #[inline(always)]
    fn end_lease_now(&self, id: u64) -> bool {
        if self.waiting() != 0 {
            return false;
        }
        let Some(i) = self.find(id) else { return false };
        let e = self.entry(i);
        if e.owner.load(Relaxed) as usize != self.me || e.state.load(Relaxed) != LEASE {
            return false;
        }
        self.free_entry(i);
        true
    }
}
