//! Placed pools of the in-process backend: every lease of 1 byte or more
//! also holds a range `[offset, offset + nbytes)` of `[0, total)`, placed
//! by `placement` under the wait-list lock.
//!
//! Rules (the documented behaviour of a placed pool):
//! * A lease is charged its size, not its aligned size: `nbytes` bytes of
//!   the budget and a range of exactly `nbytes` bytes at an aligned offset.
//!   The bytes up to the next aligned offset stay free (they count in the
//!   free bytes and the free ranges), so `available + leased == total` and
//!   the available bytes equal the placement's free bytes.
//! * A request is granted when its range can be placed: strictly first come,
//!   first served, so a request at the head of the line that finds no range
//!   keeps everyone behind it waiting (a small one that would fit elsewhere
//!   included); `try` fails with `WouldBlock` while none fits.
//! * The state word keeps `QUEUED` for the pool's life, so the lock-free
//!   fast paths always step aside to the locked ones (the fast path of a
//!   pool that is not placed is not touched).
//! * A 0-byte lease has no range; its offset reads 0.
//! * Resize: shrinking frees the tail at once; growing takes the free range
//!   right after the lease, in place, when nobody waits in line; otherwise
//!   it fails at once with `WouldBlock` (a range cannot move under its
//!   holder, so waiting would not reliably help). A 0-byte lease cannot grow.
//! * Split: the new lease gets the tail of the range (its offset is the old
//!   offset plus what the old lease keeps, aligned or not). Merge: only of
//!   a lease with the lease whose range follows it directly, else
//!   `InvalidArgument`.
//! * The total of a placed pool is fixed (`set_total` is `InvalidArgument`):
//!   its ranges index one buffer.

use super::super::error::Error;
use super::super::lease::{IdMap, Lease};
use super::super::placement::{PlaceError, PlaceStats, Placement};
use super::super::waitlist::Waitlist;
use super::{LocalPool, Wait};

/// Alignment of a placed pool when none is given.
pub const DEFAULT_ALIGNMENT: u64 = 256;

/// The placement of a placed pool and where each lease's range lies; kept
/// in the wait list, under its lock.
pub(crate) struct Placed {
    map: Placement,
    /// The offsets of the ranges held, by lease id (a ticket's id from the
    /// moment it is granted).
    offsets: IdMap<u64>,
}

fn internal(e: PlaceError) -> Error {
    match e {
        PlaceError::Invalid(why) => Error::InvalidArgument(why),
        e => Error::Internal(format!("placement: {e}")),
    }
}

/// Refuses an alignment a placed pool cannot have.
pub(crate) fn check_alignment(alignment: u64) -> Result<(), Error> {
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "alignment must be a power of two, got {alignment}"
        )));
    }
    Ok(())
}

impl Placed {
    pub(crate) fn new(total: u64, alignment: u64) -> Result<Placed, Error> {
        check_alignment(alignment)?;
        Ok(Placed {
            map: Placement::new(total, alignment).map_err(internal)?,
            offsets: IdMap::default(),
        })
    }

    /// Places `nbytes` (1 or more) for `id`; `false` when no range fits.
    pub(crate) fn place(&mut self, id: u64, nbytes: u64) -> Result<bool, Error> {
        match self.map.alloc(nbytes) {
            Ok(at) => {
                self.offsets.insert(id, at);
                Ok(true)
            }
            Err(PlaceError::NoFit { .. }) => Ok(false),
            Err(e) => Err(internal(e)),
        }
    }

    /// Frees `id`'s range, if it has one.
    pub(crate) fn release(&mut self, id: u64) -> Result<(), Error> {
        match self.offsets.remove(&id) {
            Some(at) => self.map.free(at).map(drop).map_err(internal),
            None => Ok(()),
        }
    }

    /// Takes `id`'s range out of the lease records, still allocated (a
    /// hand-off holds it now, and frees it with `free_at`).
    pub(crate) fn take_offset(&mut self, id: u64) -> Option<u64> {
        self.offsets.remove(&id)
    }

    pub(crate) fn free_at(&mut self, at: u64) -> Result<(), Error> {
        self.map.free(at).map(drop).map_err(internal)
    }

    pub(crate) fn offset(&self, id: u64) -> Option<u64> {
        self.offsets.get(&id).copied()
    }

    fn shrink(&mut self, id: u64, new: u64) -> Result<(), Error> {
        match (self.offset(id), new) {
            (None, _) => Ok(()),
            (Some(_), 0) => self.release(id),
            (Some(at), n) => self.map.shrink(at, n).map_err(internal),
        }
    }

    fn grow(&mut self, id: u64, new: u64) -> Result<bool, Error> {
        match self.offset(id) {
            Some(at) => self.map.grow(at, new).map_err(internal),
            None => Err(Error::InvalidArgument(format!(
                "lease {id:#x} holds 0 bytes of a placed pool and has no range to grow; acquire a new lease"
            ))),
        }
    }

    /// Gives `new_id` the tail of `id`'s range past its first `keep` bytes.
    pub(crate) fn split(&mut self, id: u64, keep: u64, new_id: u64) -> Result<(), Error> {
        let at = self
            .offset(id)
            .ok_or_else(|| Error::Internal(format!("lease {id:#x} has no range")))?;
        let tail = self.map.split(at, keep).map_err(internal)?;
        self.offsets.insert(new_id, tail);
        Ok(())
    }

    /// Joins `from`'s range into `into`'s, which it must follow directly
    /// (a 0-byte `from` has none and joins trivially).
    pub(crate) fn merge(&mut self, into: u64, from: u64) -> Result<(), Error> {
        let Some(second) = self.offset(from) else {
            return Ok(());
        };
        let adjacent = match self.offset(into) {
            Some(first) => {
                self.map
                    .size_at(first)
                    .map_err(internal)?
                    .checked_add(first)
                    == Some(second)
            }
            None => false,
        };
        if !adjacent {
            return Err(Error::InvalidArgument(format!(
                "lease {from:#x}'s range does not follow lease {into:#x}'s directly: a placed pool merges \
                 adjacent ranges only"
            )));
        }
        self.offsets.remove(&from);
        let first = self.offset(into).unwrap_or(0);
        self.map.merge(first, second).map(drop).map_err(internal)
    }

    pub(crate) fn stats(&self) -> PlaceStats {
        self.map.stats().unwrap_or_default()
    }

    pub(crate) fn alignment(&self) -> u64 {
        self.map.alignment()
    }
}

impl LocalPool {
    pub(crate) fn is_placed(&self) -> bool {
        self.alignment != 0
    }

    /// The alignment of a placed pool's offsets; 0 when it is not placed.
    pub(crate) fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where lease `id`'s range starts.
    pub(crate) fn lease_offset(&self, id: u64) -> Result<u64, Error> {
        if !self.is_placed() {
            return Err(not_placed());
        }
        let wl = self.lock();
        match placed(&wl).offset(id) {
            Some(at) => Ok(at),
            // A 0-byte lease has no range.
            None => self.leases.get(id).map(|_| 0),
        }
    }

    /// Where lease `id`'s range starts when the pool is placed and the
    /// lease has a range; `None` otherwise.
    pub(crate) fn placed_offset(&self, id: u64) -> Result<Option<u64>, Error> {
        if !self.is_placed() {
            return Ok(None);
        }
        let wl = self.lock();
        Ok(placed(&wl).offset(id))
    }

    /// Returns a finished hand-off's bytes and its range at `at`.
    pub(crate) fn give_back_range(&self, at: u64, nbytes: u64) {
        let mut wl = self.lock();
        // A damaged placement (a bug) keeps the range; the bytes go back.
        let _ = placed_mut(&mut wl).free_at(at);
        self.state.add(nbytes as i64);
        self.grant_ready(&mut wl);
    }

    /// `try_acquire` of a placed pool: granted only when nobody waits and
    /// a range fits now.
    pub(crate) fn try_place(&self, nbytes: u64) -> Result<Lease, Error> {
        let mut wl = self.lock();
        if self.state.load().closed {
            return Err(self.closed());
        }
        self.check_request(nbytes)?;
        let queued = !wl.is_empty();
        if !queued {
            let ticket = self.leases.ticket_id(wl.next_ticket_seq())?;
            if self.place_locked(&mut wl, ticket, nbytes)? {
                drop(wl);
                return Ok(self.collect(ticket, nbytes));
            }
        }
        super::bump(&self.would_blocks);
        Err(Error::WouldBlock {
            requested: nbytes,
            available: self.available_bytes(),
            queued,
        })
    }

    /// Under the lock: places `nbytes` for `id` and takes them from the
    /// budget; `false` (nothing changed) when no range fits.
    pub(crate) fn place_locked(
        &self,
        wl: &mut Waitlist,
        id: u64,
        nbytes: u64,
    ) -> Result<bool, Error> {
        let p = placed_mut(wl);
        if !p.place(id, nbytes)? {
            return Ok(false);
        }
        match self.state.take_locked(nbytes) {
            Some(left) => {
                self.note_low(left);
                Ok(true)
            }
            None => {
                // Free bytes and placement agree; kept safe if they did not.
                p.release(id)?;
                Ok(false)
            }
        }
    }

    /// Records a granted placed request as the lease `id` (its ticket's id,
    /// under which its range was placed).
    pub(crate) fn collect(&self, id: u64, nbytes: u64) -> Lease {
        self.leases.insert_ticket(id, nbytes);
        Lease { id, nbytes }
    }

    /// `resize_lease` of a placed pool (see the rules above).
    pub(crate) fn resize_placed(
        &self,
        id: u64,
        new_nbytes: u64,
        _wait: Wait,
    ) -> Result<Lease, Error> {
        let mut wl = self.lock();
        let old = self.leases.get(id)?;
        if new_nbytes <= old {
            placed_mut(&mut wl).shrink(id, new_nbytes)?;
            self.leases.update(id, |_| new_nbytes)?;
            self.state.add((old - new_nbytes) as i64);
            self.grant_ready(&mut wl);
            return Ok(Lease {
                id,
                nbytes: new_nbytes,
            });
        }
        if self.state.load().closed {
            return Err(self.closed());
        }
        self.check_request(new_nbytes)?;
        let queued = !wl.is_empty();
        if queued || !placed_mut(&mut wl).grow(id, new_nbytes)? {
            super::bump(&self.would_blocks);
            return Err(Error::WouldBlock {
                requested: new_nbytes - old,
                available: self.available_bytes(),
                queued,
            });
        }
        let delta = new_nbytes - old;
        match self.state.take_locked(delta) {
            Some(left) => self.note_low(left),
            None => {
                placed_mut(&mut wl).shrink(id, old)?;
                return Err(Error::Internal(
                    "placed pool: free bytes and placement disagree".into(),
                ));
            }
        }
        self.leases.update(id, |_| new_nbytes)?;
        Ok(Lease {
            id,
            nbytes: new_nbytes,
        })
    }
}

fn not_placed() -> Error {
    Error::InvalidArgument("the pool is not placed: its leases have no offsets".into())
}

/// The placement of a placed pool's wait list (the callers checked).
fn placed(wl: &Waitlist) -> &Placed {
    wl.placed
        .as_deref()
        .expect("a placed pool keeps its placement in its wait list")
}

fn placed_mut(wl: &mut Waitlist) -> &mut Placed {
    wl.placed
        .as_deref_mut()
        .expect("a placed pool keeps its placement in its wait list")
}
