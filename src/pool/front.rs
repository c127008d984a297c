//! `Pool`, the one type callers hold: a front over the backend that keeps the
//! bytes, either in this process (`LocalPool`) or in a named segment shared by
//! every process on the host (`SharedPool`). Each method is one match.

use super::error::Error;
use super::lease::{Admission, Lease, Ticket};
use super::local::{LocalPool, Wait};
#[cfg(not(loom))]
use super::shared::{OpenFlags, SharedOptions, SharedPool, SharedSnapshot};
use super::stats::Stats;
use super::sync::{Arc, AtomicU64, Ordering};

/// Holds one reference of the pool for a lease just granted: a pool lives as
/// long as any lease can still be released into it.
pub(crate) fn keep(owner: &Arc<Pool>) {
    std::mem::forget(Arc::clone(owner));
}

/// Drops the reference a released lease held (see `keep`). It may be the last
/// one, freeing the pool; `owner` itself stays valid as a value.
///
/// # Safety
/// The caller removed a lease whose grant called `keep`, drops its reference
/// exactly once, and does not use the pool after this call.
pub(crate) unsafe fn unkeep(owner: &Arc<Pool>) {
    // SAFETY: the count dropped here was added by `keep` for this lease.
    unsafe { Arc::decrement_strong_count(Arc::as_ptr(owner)) };
}

const LIVE: u64 = 0x6d6d_706f_6f6c_2121;

enum Backend {
    Local(LocalPool),
    #[cfg(not(loom))]
    Shared(SharedPool),
}

/// A byte budget. Cheap to share as `Arc<Pool>`; every method may be called
/// from any thread at any time.
pub struct Pool {
    live: AtomicU64,
    backend: Backend,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.live.store(0, Ordering::Release);
    }
}

/// Calls the same method on whichever backend the pool has.
macro_rules! dispatch {
    ($self:expr, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Local($b) => $call,
            #[cfg(not(loom))]
            Backend::Shared($b) => $call,
        }
    };
}

impl Pool {
    /// A pool of `total_bytes` (1 ..= 2^60) in this process.
    pub fn new(total_bytes: u64) -> Result<Arc<Pool>, Error> {
        Ok(Self::with(Backend::Local(LocalPool::new(total_bytes)?)))
    }

    /// Creates or attaches to the pool named `name` that all processes on the
    /// host share (see [`super::shared`]). `total_bytes` 0 accepts the existing
    /// pool's total; otherwise it must equal it.
    #[cfg(not(loom))]
    pub fn open_shared(name: &str, total_bytes: u64, flags: OpenFlags) -> Result<Arc<Pool>, Error> {
        Ok(Self::with(Backend::Shared(SharedPool::open(name, total_bytes, flags)?)))
    }

    /// `open_shared` with every option, the limits included.
    #[cfg(not(loom))]
    pub fn open_shared_with(name: &str, options: &SharedOptions) -> Result<Arc<Pool>, Error> {
        Ok(Self::with(Backend::Shared(SharedPool::open_with(name, options)?)))
    }

    fn with(backend: Backend) -> Arc<Pool> {
        Arc::new(Pool { live: AtomicU64::new(LIVE), backend })
    }

    /// Whether this memory still holds a pool that has not been dropped. Only a
    /// best-effort check against stale handles, never a guarantee.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) == LIVE
    }

    /// Whether the bytes live in a segment shared by processes.
    pub fn is_shared(&self) -> bool {
        !matches!(self.backend, Backend::Local(_))
    }

    /// A shared pool's figures with its table of attached processes; `None`
    /// for an in-process pool.
    #[cfg(not(loom))]
    pub fn shared_snapshot(&self) -> Option<Result<SharedSnapshot, Error>> {
        match &self.backend {
            Backend::Shared(s) => Some(s.snapshot()),
            Backend::Local(_) => None,
        }
    }

    /// The shared backend, for tests and operator tools; `None` for an
    /// in-process pool.
    #[cfg(not(loom))]
    #[doc(hidden)]
    pub fn shared_backend(&self) -> Option<&SharedPool> {
        match &self.backend {
            Backend::Shared(s) => Some(s),
            Backend::Local(_) => None,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        dispatch!(self, b => b.total_bytes())
    }

    pub fn available_bytes(&self) -> u64 {
        dispatch!(self, b => b.available_bytes())
    }

    /// Waits in line for `nbytes`, up to `wait`.
    pub fn acquire(self: &Arc<Self>, nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        dispatch!(self, b => b.acquire(self, nbytes, wait))
    }

    /// Grants `nbytes` only if that is possible at once without jumping the line.
    pub fn try_acquire(self: &Arc<Self>, nbytes: u64) -> Result<Lease, Error> {
        dispatch!(self, b => b.try_acquire(self, nbytes))
    }

    /// Returns a lease's bytes. Releasing a lease twice is a no-op.
    pub fn release(self: &Arc<Self>, id: u64) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(b) => {
                if b.release(id)? {
                    // SAFETY: a lease was removed, and its grant called `keep`;
                    // this is the call's last use of the pool.
                    unsafe { unkeep(self) };
                }
                Ok(())
            }
            #[cfg(not(loom))]
            Backend::Shared(b) => b.release(self, id),
        }
    }

    /// Joins the line for `nbytes` and returns at once with the place.
    pub fn enqueue(self: &Arc<Self>, nbytes: u64) -> Result<Ticket, Error> {
        dispatch!(self, b => b.enqueue(nbytes))
    }

    /// Waits up to `wait` for a ticket's grant. On timeout the ticket keeps its
    /// place and may be waited on again.
    pub fn wait_ticket(self: &Arc<Self>, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        dispatch!(self, b => b.wait_ticket(self, ticket, wait))
    }

    /// Grants `nbytes` at once when possible without jumping the line, else
    /// joins the line: what `acquire` does before it sleeps, for callers that
    /// wait in their own slices. Counts neither a would-block nor a timeout.
    pub fn acquire_or_enqueue(self: &Arc<Self>, nbytes: u64) -> Result<Admission, Error> {
        dispatch!(self, b => b.acquire_or_enqueue(self, nbytes))
    }

    /// As `wait_ticket`, but when `wait` runs out the ticket leaves the line
    /// and counts as a timeout, as a timed `acquire` does.
    pub fn wait_ticket_or_leave(self: &Arc<Self>, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        dispatch!(self, b => b.wait_ticket_or_leave(self, ticket, wait))
    }

    /// Leaves the line; if the grant already happened, its bytes go back.
    /// Cancelling a finished ticket is a no-op.
    pub fn cancel_ticket(&self, ticket: Ticket) -> Result<(), Error> {
        dispatch!(self, b => b.cancel_ticket(ticket))
    }

    /// Changes what a lease holds. Shrinking returns bytes at once; growing
    /// waits in line for the difference, like an acquire, up to `wait`.
    pub fn resize_lease(self: &Arc<Self>, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        dispatch!(self, b => b.resize_lease(self, id, new_nbytes, wait))
    }

    /// Changes the total. Growing grants waiters at once; shrinking never
    /// revokes a lease, and waiters larger than the new total fail.
    pub fn set_total(&self, new_total: u64) -> Result<(), Error> {
        dispatch!(self, b => b.set_total(new_total))
    }

    /// Closes the pool: waiters wake with `Closed`, new requests fail with it,
    /// releases still return bytes. Closing twice is a no-op. A shared pool is
    /// closed for every process attached to it.
    pub fn close(&self) {
        dispatch!(self, b => b.close())
    }

    pub fn is_closed(&self) -> bool {
        dispatch!(self, b => b.is_closed())
    }

    pub fn stats(&self) -> Stats {
        dispatch!(self, b => b.stats())
    }

    /// Bytes held by outstanding leases, from the pool's own records (of every
    /// process, for a shared pool). With no grant waiting to be collected,
    /// `available + leased == total`.
    pub fn leased_bytes(&self) -> u64 {
        dispatch!(self, b => b.leased_bytes())
    }

    /// Bytes and size of the lease `id` if it is outstanding.
    pub fn lease(&self, id: u64) -> Option<Lease> {
        dispatch!(self, b => b.lease(id))
    }
}
