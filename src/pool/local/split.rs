//! Splitting a lease in two and merging two into one, for the in-process
//! backend. The bytes move between the records of the leases and are never
//! free meanwhile: the state word does not change.
//!
//! Both take the wait-list lock, which orders them against the slow path's
//! releases and against `retire`, whose count of outstanding leases they keep
//! right. A fast release of one of the leases meanwhile finds its record busy
//! or already changed, never half-changed (see `slots`).

use super::super::error::Error;
use super::super::lease::Lease;
use super::super::slots::Removed;
use super::LocalPool;

/// Refuses the arguments a split can never take, whatever the lease holds.
pub(crate) fn check_split(id: u64, nbytes: u64, held: u64) -> Result<u64, Error> {
    if nbytes == 0 || nbytes >= held {
        return Err(Error::InvalidArgument(format!(
            "cannot split {nbytes} bytes off lease {id:#x}, which holds {held}: a split takes 1 byte or \
             more and leaves 1 byte or more"
        )));
    }
    Ok(held - nbytes)
}

/// Refuses merging a lease with itself.
pub(crate) fn check_merge(into: u64, from: u64) -> Result<(), Error> {
    if into == from {
        return Err(Error::InvalidArgument(format!("cannot merge lease {into:#x} with itself")));
    }
    Ok(())
}

impl LocalPool {
    /// Moves `nbytes` of lease `id` into a new lease; returns (what `id`
    /// holds now, the new lease).
    pub(crate) fn split_lease(&self, id: u64, nbytes: u64) -> Result<(Lease, Lease), Error> {
        let mut wl = self.lock();
        let (_, left) = self.leases.try_update(id, |held| check_split(id, nbytes, held))?;
        match self.leases.insert(nbytes) {
            Ok(new) => {
                if let Some(p) = wl.placed.as_mut() {
                    // The new lease gets the tail of the range.
                    if let Err(e) = p.split(id, left, new) {
                        let _ = self.leases.remove(new);
                        let _ = self.leases.update(id, |held| held + nbytes);
                        return Err(e);
                    }
                }
                if let Some(outstanding) = wl.retired.as_mut() {
                    *outstanding += 1;
                }
                Ok((Lease { id, nbytes: left }, Lease { id: new, nbytes }))
            }
            Err(e) => {
                // No id for the new lease: the bytes go back where they were,
                // or to the pool if a fast release took the lease meanwhile.
                if self.leases.update(id, |held| held + nbytes).is_err() {
                    self.state.add(nbytes as i64);
                    self.grant_ready(&mut wl);
                }
                Err(e)
            }
        }
    }

    /// Moves every byte of lease `from` into lease `into` and ends `from`;
    /// returns what `into` holds now.
    pub(crate) fn merge_leases(&self, into: u64, from: u64) -> Result<Lease, Error> {
        check_merge(into, from)?;
        let mut wl = self.lock();
        self.leases.get(into)?;
        if let Some(p) = wl.placed.as_mut() {
            // Placed leases are removed under this lock only: both stay.
            self.leases.get(from)?;
            p.merge(into, from)?;
        }
        let nbytes = match self.leases.remove(from)? {
            Removed::Now(nbytes) => nbytes,
            Removed::Already => {
                return Err(Error::InvalidLease(format!("lease {from:#x} was already released")));
            }
        };
        if let Some(outstanding) = wl.retired.as_mut() {
            *outstanding -= 1;
        }
        match self.leases.update(into, |held| held + nbytes) {
            Ok((_, after)) => Ok(Lease { id: into, nbytes: after }),
            Err(_) => {
                // A fast release took `into` since it was looked up: as if it
                // came after the merge, both leases' bytes go back.
                self.state.add(nbytes as i64);
                self.grant_ready(&mut wl);
                Err(Error::InvalidLease(format!(
                    "lease {into:#x} was released while lease {from:#x} merged into it; the bytes of both went back"
                )))
            }
        }
    }
}
