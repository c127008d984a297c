//! `Pool`, the one type callers hold: a front over the backend that keeps the
//! bytes, either in this process (`LocalPool`) or in a named segment shared by
//! every process on the host (`SharedPool`). Each method is one match.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;

use super::error::Error;
use super::handoff::{HandoffInfo, HandoffStats, Token};
use super::lease::{Admission, Lease, Ticket};
use super::local::{LocalPool, Released, Wait};
use super::notify::Notifier;
#[cfg(not(loom))]
use super::shared::{OpenFlags, SharedOptions, SharedPool, SharedSnapshot};
use super::stats::Stats;
use super::sync::{Arc, AtomicU64, Ordering, Weak};

const LIVE: u64 = 0x6d6d_706f_6f6c_2121;

// The in-process backend stays inline: the fast path reaches it with no
// indirection. A pool is one allocation either way.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Local(LocalPool),
    #[cfg(not(loom))]
    Shared(SharedPool),
}

/// What the pool's memory holds besides its liveness mark. Dropped by hand
/// (`Pool::free`), by whoever ends the pool's life.
struct Inner {
    backend: ManuallyDrop<Backend>,
    /// Keeps the allocation after the last handle, while leases remain.
    anchor: ManuallyDrop<Weak<Pool>>,
}

/// A byte budget. Cheap to share as `Arc<Pool>`; every method may be called
/// from any thread at any time.
///
/// Lifetime: the `Arc`'s count is the handles (and the threads waiting in
/// the pool, which hold one each while they wait). Outstanding leases do not
/// count there: when the last handle goes, an in-process pool is retired
/// (closed, and every release then goes through its lock, where the leases
/// left are counted down), and the release of its last lease frees it; the
/// memory stays meanwhile, held by a weak reference of its own. A shared
/// pool's leases hold one handle each instead: its release takes a lock in
/// any case.
pub struct Pool {
    live: AtomicU64,
    inner: UnsafeCell<Inner>,
}

// SAFETY: `inner` is written only by `free`, which runs once, when nothing
// else can use the pool (no handle, no outstanding lease); until then it is
// only read, and the backends are Send + Sync.
unsafe impl Sync for Pool {}
// SAFETY: as above.
unsafe impl Send for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = match self.backend() {
            Backend::Local(b) => b.retire(),
            #[cfg(not(loom))]
            Backend::Shared(_) => true,
        };
        if idle {
            // SAFETY: no handle is left and no lease is outstanding.
            unsafe { self.free() };
        }
    }
}

/// Calls the same method on whichever backend the pool has.
macro_rules! dispatch {
    ($self:expr, $b:ident => $call:expr) => {
        match $self.backend() {
            Backend::Local($b) => $call,
            #[cfg(not(loom))]
            Backend::Shared($b) => $call,
        }
    };
}

/// What a hand-off call on a shared pool answers: its records are kept by
/// this process only, so the shared backend does not offer them.
#[cfg(not(loom))]
fn no_shared_handoffs() -> Error {
    Error::InvalidArgument("hand-offs are available on in-process pools only, not yet on shared pools".into())
}

/// Holds one handle of the pool for a lease of the shared backend just
/// granted (see `Pool`'s lifetime rules).
#[cfg(not(loom))]
fn keep(owner: &Arc<Pool>) {
    std::mem::forget(Arc::clone(owner));
}

/// A shared-backend grant, with its handle held (`keep`) when it succeeded.
#[cfg(not(loom))]
fn kept(owner: &Arc<Pool>, granted: Result<Lease, Error>) -> Result<Lease, Error> {
    let lease = granted?;
    keep(owner);
    Ok(lease)
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
        Arc::new_cyclic(|me| Pool {
            live: AtomicU64::new(LIVE),
            inner: UnsafeCell::new(Inner {
                backend: ManuallyDrop::new(backend),
                anchor: ManuallyDrop::new(me.clone()),
            }),
        })
    }

    #[inline]
    fn backend(&self) -> &Backend {
        // SAFETY: see `Sync` above: only `free` writes `inner`, after every use.
        unsafe { &(*self.inner.get()).backend }
    }

    /// Ends the pool: drops the backend, then the anchor, which frees the
    /// memory once the `Arc` lets go of it too.
    ///
    /// # Safety
    /// Called once, when no handle is left and no lease is outstanding; the
    /// caller does not touch the pool afterwards.
    unsafe fn free(&self) {
        self.live.store(0, Ordering::Release);
        // SAFETY: the contract above: nobody else uses the pool any more.
        let inner = unsafe { &mut *self.inner.get() };
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut inner.backend) };
        // SAFETY: taken once; the weak reference may be the allocation's last,
        // so it is moved out before it is dropped.
        drop(unsafe { ManuallyDrop::take(&mut inner.anchor) });
    }

    /// Whether this memory still holds a pool that has not been dropped. Only a
    /// best-effort check against stale handles, never a guarantee.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) == LIVE
    }

    /// Whether the bytes live in a segment shared by processes.
    pub fn is_shared(&self) -> bool {
        !matches!(self.backend(), Backend::Local(_))
    }

    /// A shared pool's figures with its table of attached processes; `None`
    /// for an in-process pool.
    #[cfg(not(loom))]
    pub fn shared_snapshot(&self) -> Option<Result<SharedSnapshot, Error>> {
        match self.backend() {
            Backend::Shared(s) => Some(s.snapshot()),
            Backend::Local(_) => None,
        }
    }

    /// The shared backend, for tests and operator tools; `None` for an
    /// in-process pool.
    #[cfg(not(loom))]
    #[doc(hidden)]
    pub fn shared_backend(&self) -> Option<&SharedPool> {
        match self.backend() {
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

    /// The uncontended acquire of an in-process pool, for the C boundary's
    /// fast path: a lease, or `None` to call [`Pool::acquire`] or
    /// [`Pool::try_acquire`] (nothing is held then). Never panics.
    #[inline]
    pub fn acquire_fast(&self, nbytes: u64) -> Option<Lease> {
        match self.backend() {
            Backend::Local(b) => b.acquire_fast(nbytes),
            #[cfg(not(loom))]
            Backend::Shared(_) => None,
        }
    }

    /// The uncontended release of an in-process pool's lease, for the C
    /// boundary's fast path: `true` when done, `false` to call
    /// [`Pool::release`] (which also handles every misuse). Never panics.
    #[inline]
    pub fn release_fast(&self, id: u64) -> bool {
        match self.backend() {
            Backend::Local(b) => b.release_fast(id),
            #[cfg(not(loom))]
            Backend::Shared(_) => false,
        }
    }

    /// Waits in line for `nbytes`, up to `wait`.
    pub fn acquire(self: &Arc<Self>, nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        match self.backend() {
            Backend::Local(b) => b.acquire_fast(nbytes).map_or_else(
                || {
                    let _waiting = Arc::clone(self);
                    b.acquire(nbytes, wait)
                },
                Ok,
            ),
            #[cfg(not(loom))]
            Backend::Shared(b) => kept(self, b.acquire(nbytes, wait)),
        }
    }

    /// Grants `nbytes` only if that is possible at once without jumping the line.
    pub fn try_acquire(self: &Arc<Self>, nbytes: u64) -> Result<Lease, Error> {
        match self.backend() {
            Backend::Local(b) => b.acquire_fast(nbytes).map_or_else(|| b.try_acquire(nbytes), Ok),
            #[cfg(not(loom))]
            Backend::Shared(b) => kept(self, b.try_acquire(nbytes)),
        }
    }

    /// Returns a lease's bytes. Releasing a lease twice is a no-op. This is
    /// the one call allowed on a pool whose handles are all gone, for the
    /// leases still outstanding; the last of them frees the pool.
    pub fn release(self: &Arc<Self>, id: u64) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(b) => {
                if !b.release_fast(id) && b.release(id)? == Released::Last {
                    // SAFETY: the pool's handles are gone and this was its
                    // last lease; this is the call's last use of the pool.
                    unsafe { self.free() };
                }
            }
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                if b.release(id)? {
                    // SAFETY: a lease was removed and its grant called `keep`;
                    // this is the call's last use of the pool.
                    unsafe { Arc::decrement_strong_count(Arc::as_ptr(self)) };
                }
            }
        }
        Ok(())
    }

    /// Joins the line for `nbytes` and returns at once with the place.
    pub fn enqueue(self: &Arc<Self>, nbytes: u64) -> Result<Ticket, Error> {
        dispatch!(self, b => b.enqueue(nbytes))
    }

    /// Waits up to `wait` for a ticket's grant. On timeout the ticket keeps its
    /// place and may be waited on again.
    pub fn wait_ticket(self: &Arc<Self>, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        let _waiting = Arc::clone(self);
        match self.backend() {
            Backend::Local(b) => b.wait_ticket(ticket, wait),
            #[cfg(not(loom))]
            Backend::Shared(b) => kept(self, b.wait_ticket(ticket, wait)),
        }
    }

    /// Grants `nbytes` at once when possible without jumping the line, else
    /// joins the line: what `acquire` does before it sleeps, for callers that
    /// wait in their own slices. Counts neither a would-block nor a timeout.
    pub fn acquire_or_enqueue(self: &Arc<Self>, nbytes: u64) -> Result<Admission, Error> {
        match self.backend() {
            Backend::Local(b) => b.acquire_fast(nbytes).map_or_else(|| b.acquire_or_enqueue(nbytes), |l| Ok(Admission::Granted(l))),
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                let admission = b.acquire_or_enqueue(nbytes)?;
                if let Admission::Granted(_) = admission {
                    keep(self);
                }
                Ok(admission)
            }
        }
    }

    /// As `wait_ticket`, but when `wait` runs out the ticket leaves the line
    /// and counts as a timeout, as a timed `acquire` does.
    pub fn wait_ticket_or_leave(self: &Arc<Self>, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        let _waiting = Arc::clone(self);
        match self.backend() {
            Backend::Local(b) => b.wait_ticket_or_leave(ticket, wait),
            #[cfg(not(loom))]
            Backend::Shared(b) => kept(self, b.wait_ticket_or_leave(ticket, wait)),
        }
    }

    /// Leaves the line; if the grant already happened, its bytes go back.
    /// Cancelling a finished ticket is a no-op.
    pub fn cancel_ticket(&self, ticket: Ticket) -> Result<(), Error> {
        dispatch!(self, b => b.cancel_ticket(ticket))
    }

    /// Registers a ticket of this pool (from `enqueue` or
    /// `acquire_or_enqueue`) with a notifier: when it is decided (granted,
    /// the pool closed, the total lowered below it, cancelled) one event
    /// `{ticket, user, decision}` is queued on `n` and its fd turns readable;
    /// a ticket already decided queues its event at once. One notifier per
    /// ticket (again: `InvalidArgument`); a ticket not of this pool, or
    /// already redeemed or cancelled: `InvalidLease`. On a shared pool, a
    /// decision made by any process reaches `n` through this process's
    /// relay thread for the pool (one, started by the first registration).
    pub fn notify_ticket(&self, ticket: Ticket, n: &Notifier, user: u64) -> Result<(), Error> {
        dispatch!(self, b => b.notify_ticket(ticket, n.core(), user))
    }

    /// Changes what a lease holds. Shrinking returns bytes at once; growing
    /// waits in line for the difference, like an acquire, up to `wait`.
    pub fn resize_lease(self: &Arc<Self>, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        let _waiting = Arc::clone(self);
        dispatch!(self, b => b.resize_lease(id, new_nbytes, wait))
    }

    /// Moves `nbytes` (1 or more, fewer than the lease holds) of lease `id`
    /// into a new lease, atomically: the bytes are never free meanwhile.
    /// Returns (what `id` holds now, the new lease). The new lease counts as
    /// a grant.
    pub fn split_lease(self: &Arc<Self>, id: u64, nbytes: u64) -> Result<(Lease, Lease), Error> {
        match self.backend() {
            Backend::Local(b) => b.split_lease(id, nbytes),
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                let split = b.split_lease(id, nbytes)?;
                keep(self);
                Ok(split)
            }
        }
    }

    /// Moves every byte of lease `from` into lease `into` of the same pool,
    /// atomically, and ends `from` (a later release of it is a no-op).
    /// Returns what `into` holds now.
    pub fn merge_leases(self: &Arc<Self>, into: u64, from: u64) -> Result<Lease, Error> {
        match self.backend() {
            Backend::Local(b) => b.merge_leases(into, from),
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                let merged = b.merge_leases(into, from)?;
                // SAFETY: `from`'s grant called `keep`, and the caller's own
                // handle keeps the pool alive past this.
                unsafe { Arc::decrement_strong_count(Arc::as_ptr(self)) };
                Ok(merged)
            }
        }
    }

    /// Turns lease `id` into a hand-off of `parts` parts (1 to `MAX_PARTS`)
    /// and returns its token. Without `keep_lease` the lease ends and its
    /// bytes go back when the last part completes; with it the lease stays
    /// the producer's, to release after `wait_handoff`. Parts nobody has
    /// claimed or completed `claim_within` after now expire.
    pub fn share_lease(
        &self,
        id: u64,
        parts: u32,
        claim_within: Option<std::time::Duration>,
        keep_lease: bool,
    ) -> Result<Token, Error> {
        match self.backend() {
            Backend::Local(b) => b.share_lease(id, parts, claim_within, keep_lease),
            #[cfg(not(loom))]
            Backend::Shared(_) => Err(no_shared_handoffs()),
        }
    }

    /// Marks part `part` of a hand-off as taken up, so that it does not
    /// expire. A completed or expired part cannot be claimed.
    pub fn claim_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(b) => b.claim_part(token, part),
            #[cfg(not(loom))]
            Backend::Shared(_) => Err(no_shared_handoffs()),
        }
    }

    /// Completes part `part` of a hand-off (again: a no-op); the last part
    /// finishes it.
    pub fn complete_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(b) => b.complete_part(token, part),
            #[cfg(not(loom))]
            Backend::Shared(_) => Err(no_shared_handoffs()),
        }
    }

    /// Waits up to `wait` for a hand-off to finish (every part completed or
    /// expired); `Timeout` when the wait runs out first.
    pub fn wait_handoff(self: &Arc<Self>, token: &Token, wait: Wait) -> Result<(), Error> {
        let _waiting = Arc::clone(self);
        match self.backend() {
            Backend::Local(b) => b.wait_handoff(token, wait),
            #[cfg(not(loom))]
            Backend::Shared(_) => Err(no_shared_handoffs()),
        }
    }

    /// Posts one event on `n` when the hand-off finishes (at once if it
    /// has): `{ticket: Ticket { id: token.id }, user, HandoffFinished}`.
    pub fn notify_handoff(&self, token: &Token, n: &Notifier, user: u64) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(b) => b.notify_handoff(token, n.core(), user),
            #[cfg(not(loom))]
            Backend::Shared(_) => Err(no_shared_handoffs()),
        }
    }

    /// What an outstanding hand-off is now; `None` once it finished.
    pub fn handoff(&self, token: &Token) -> Result<Option<HandoffInfo>, Error> {
        match self.backend() {
            Backend::Local(b) => b.handoff(token),
            #[cfg(not(loom))]
            Backend::Shared(_) => Err(no_shared_handoffs()),
        }
    }

    /// Every outstanding hand-off, oldest first (none for a shared pool).
    pub fn handoffs(&self) -> Vec<HandoffInfo> {
        match self.backend() {
            Backend::Local(b) => b.handoffs(),
            #[cfg(not(loom))]
            Backend::Shared(_) => Vec::new(),
        }
    }

    /// The hand-off figures (zeros for a shared pool).
    pub fn handoff_stats(&self) -> HandoffStats {
        match self.backend() {
            Backend::Local(b) => b.handoff_stats(),
            #[cfg(not(loom))]
            Backend::Shared(_) => HandoffStats::default(),
        }
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

    /// The figures, or why there are none: a shared pool whose file was
    /// damaged under this process fails with that damage (`stats` reads
    /// zeros then).
    pub fn checked_stats(&self) -> Result<Stats, Error> {
        match self.backend() {
            Backend::Local(b) => Ok(b.stats()),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.checked_stats(),
        }
    }

    /// Bytes held by outstanding leases (and in-process hand-offs), from the pool's own records (of every
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
