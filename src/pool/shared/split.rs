//! Splitting a lease in two and merging two into one, for the shared
//! backend: under the segment's lock, the bytes move between the two entries
//! and the pool's free bytes do not change. Both leases must be this
//! process's, as for every other use of a lease.

use std::sync::atomic::Ordering::Relaxed;

use super::super::error::Error;
use super::super::lease::Lease;
use super::super::local::{check_merge, check_split};
use super::segment::LEASE;
use super::table::Locked;
use super::SharedPool;

impl SharedPool {
    /// The entry of lease `id`, outstanding and this process's.
    pub(super) fn own_lease(&self, g: &Locked<'_>, id: u64) -> Result<usize, Error> {
        let released = || Error::InvalidLease(format!("lease {id:#x} was already released"));
        let i = self.own(g, id, "lease")?.ok_or_else(released)?;
        if g.entry(i).state.load(Relaxed) != LEASE {
            return Err(released());
        }
        Ok(i)
    }

    /// Moves `nbytes` of lease `id` into a new lease; returns (what `id`
    /// holds now, the new lease).
    pub(crate) fn split_lease(&self, id: u64, nbytes: u64) -> Result<(Lease, Lease), Error> {
        self.after(self.split_lease_in(id, nbytes))
    }

    fn split_lease_in(&self, id: u64, nbytes: u64) -> Result<(Lease, Lease), Error> {
        self.check_issued(id, "lease")?;
        let g = self.lock()?;
        let i = self.own_lease(&g, id)?;
        let e = g.entry(i);
        let left = check_split(id, nbytes, e.nbytes.load(Relaxed))?;
        let (j, new) = g.alloc(LEASE, nbytes)?;
        e.nbytes.store(left, Relaxed);
        if let Err(err) = g.split_range(i, left, j) {
            // The new lease's bytes go back into `id`.
            g.merge_into(i, j);
            return Err(err);
        }
        Ok((Lease { id, nbytes: left }, Lease { id: new, nbytes }))
    }

    /// Moves every byte of lease `from` into lease `into` and ends `from`;
    /// returns what `into` holds now.
    pub(crate) fn merge_leases(&self, into: u64, from: u64) -> Result<Lease, Error> {
        self.after(self.merge_leases_in(into, from))
    }

    fn merge_leases_in(&self, into: u64, from: u64) -> Result<Lease, Error> {
        check_merge(into, from)?;
        self.check_issued(into, "lease")?;
        self.check_issued(from, "lease")?;
        let g = self.lock()?;
        let (a, b) = (self.own_lease(&g, into)?, self.own_lease(&g, from)?);
        g.merge_ranges(a, b)?;
        Ok(Lease { id: into, nbytes: g.merge_into(a, b) })
    }
}
