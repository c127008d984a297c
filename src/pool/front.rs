//! `Pool`, the one type callers hold, and `PoolCore`, what it points to: a
//! front over the backend that keeps the bytes, either in this process
//! (`LocalPool`) or in a named segment shared by every process on the host
//! (`SharedPool`). Each method is one match.

use std::ops::Deref;
use std::ptr::NonNull;

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
// indirection.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Local(LocalPool),
    #[cfg(not(loom))]
    Shared(SharedPool),
}

/// A byte budget. Cheap to share as `Arc<Pool>`; every method (those of
/// [`PoolCore`], which it dereferences to) may be called from any thread at
/// any time.
///
/// Lifetime: an `Arc<Pool>` is a handle, and the `Arc`'s count is the
/// handles (and the threads waiting in the pool, which hold one each while
/// they wait). The pool itself, its [`PoolCore`], is a separate allocation
/// that outstanding leases keep without counting there: when the last handle
/// goes, an in-process pool is retired (closed, and every release then goes
/// through its lock, where the leases left are counted down), and the
/// release of its last lease frees it. A shared pool's leases hold one
/// handle each instead: its release takes a lock in any case.
///
/// A release after the last handle is a C caller's (`mmpool_release` on a
/// pointer it no longer holds a reference through), and reaches the core
/// through that pointer, never through this handle: so the handle's drop,
/// which retires the pool, never overlaps a use of the handle.
pub struct Pool {
    core: NonNull<PoolCore>,
}

// SAFETY: `Pool` only points to its core, which is Send + Sync.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

/// What a [`Pool`] handle points to: the pool. Reached through the handle,
/// or (C) through the pointer of a handle, for the releases of leases
/// outstanding after the last handle.
pub struct PoolCore {
    live: AtomicU64,
    backend: Backend,
    /// The handles' `Arc`, not counted: to hold one for a waiting thread
    /// or a shared-backend lease, and to count C's references.
    handle: Weak<Pool>,
}

impl Deref for Pool {
    type Target = PoolCore;
    #[inline]
    fn deref(&self) -> &PoolCore {
        // SAFETY: a handle's core is freed only after the last handle is
        // gone (`PoolCore::retire`), so it is live while `self` is.
        unsafe { self.core.as_ref() }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: this is the last handle; the core is live (freed only after
        // it) and the call below is the handle's last use of it.
        unsafe { PoolCore::retire(self.core.as_ptr()) };
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

impl Pool {
    /// A pool of `total_bytes` (1 ..= 2^60) in this process.
    pub fn new(total_bytes: u64) -> Result<Arc<Pool>, Error> {
        Ok(Self::with(Backend::Local(LocalPool::new(total_bytes)?)))
    }

    /// A placed pool of `total_bytes` (1 ..= 2^60) in this process: every
    /// lease also holds a range `[offset, offset + nbytes)` of `[0, total)`
    /// at an offset that is a multiple of `alignment` (a power of two;
    /// `DEFAULT_ALIGNMENT` is 256), and live ranges never overlap. See
    /// [`PoolCore::lease_offset`] and the rules in `local::placed`.
    pub fn new_placed(total_bytes: u64, alignment: u64) -> Result<Arc<Pool>, Error> {
        Ok(Self::with(Backend::Local(LocalPool::new_placed(total_bytes, alignment)?)))
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
        Arc::new_cyclic(|me| {
            let core = PoolCore { live: AtomicU64::new(LIVE), backend, handle: me.clone() };
            Pool { core: NonNull::from(Box::leak(Box::new(core))) }
        })
    }

    /// The core this handle points to, for C (see `PoolCore::release_raw`).
    pub fn core_ptr(&self) -> *const PoolCore {
        self.core.as_ptr()
    }
}

/// Holds one handle of the pool for a lease of the shared backend just
/// granted (see `Pool`'s lifetime rules).
#[cfg(not(loom))]
fn keep(core: &PoolCore) {
    std::mem::forget(core.handle());
}

/// A shared-backend grant, with its handle held (`keep`) when it succeeded.
#[cfg(not(loom))]
fn kept(core: &PoolCore, granted: Result<Lease, Error>) -> Result<Lease, Error> {
    let lease = granted?;
    keep(core);
    Ok(lease)
}

impl PoolCore {
    #[inline]
    fn backend(&self) -> &Backend {
        &self.backend
    }

    /// A new handle, for a caller that holds one (so the pool has one).
    /// Panics otherwise: a broken contract, caught at the C boundary.
    pub fn handle(&self) -> Arc<Pool> {
        self.handle.upgrade().expect("a call on a pool with no handle left")
    }

    /// A new handle, or `None` when the pool's last handle is gone.
    pub fn try_handle(&self) -> Option<Arc<Pool>> {
        self.handle.upgrade()
    }

    /// The handles left (and the threads waiting, which hold one each).
    pub fn handle_count(&self) -> usize {
        self.handle.strong_count()
    }

    /// Drops one handle that C holds through a core pointer (`Arc::into_raw`
    /// of the handle was not used: C holds the core's address).
    ///
    /// # Safety
    /// The caller holds that handle (it was leaked with `mem::forget`) and
    /// does not use `this` through it afterwards.
    pub unsafe fn drop_handle(this: *const PoolCore) {
        // SAFETY: the handle held keeps the core live up to here, and the
        // `Arc` allocation with it.
        let arc = unsafe { (*this).handle.as_ptr() };
        // SAFETY: one strong count this caller owns; it may be the last,
        // whose drop retires (and perhaps frees) the core: not used after.
        unsafe { Arc::decrement_strong_count(arc) };
    }

    /// Retires the pool after its last handle: closes an in-process one and
    /// frees it at once if no lease is outstanding.
    ///
    /// # Safety
    /// Called once, by the last handle's drop; `this` is not used after.
    unsafe fn retire(this: *const PoolCore) {
        let idle = {
            // SAFETY: the core is live: it is freed below at the earliest.
            let core = unsafe { &*this };
            match core.backend() {
                Backend::Local(b) => b.retire(),
                #[cfg(not(loom))]
                Backend::Shared(_) => true,
            }
        };
        if idle {
            // SAFETY: no handle is left and no lease is outstanding.
            unsafe { Self::free(this) };
        }
    }

    /// Ends the pool: drops the backend, and the weak reference that keeps
    /// the handles' allocation, which frees it once the `Arc` lets go too.
    ///
    /// # Safety
    /// Called once, when no handle is left and no lease is outstanding; no
    /// reference to the core is used afterwards.
    unsafe fn free(this: *const PoolCore) {
        // SAFETY: live until the line below.
        unsafe { (*this).live.store(0, Ordering::Release) };
        // SAFETY: allocated by `Pool::with` with `Box`; the contract above:
        // nobody uses it any more.
        drop(unsafe { Box::from_raw(this as *mut PoolCore) });
    }

    /// Returns a lease's bytes, through the core's address: what C calls,
    /// also after the pool's last handle is gone (for its outstanding
    /// leases; the last of those releases frees the pool).
    ///
    /// # Safety
    /// `this` is a live core: the caller holds a handle to it, or `id` is an
    /// outstanding lease of it (see `mmpool_release`'s contract).
    pub unsafe fn release_raw(this: *const PoolCore, id: u64) -> Result<(), Error> {
        // SAFETY: the contract above; `core` is not used once the pool may be
        // freed (below).
        let core = unsafe { &*this };
        match core.backend() {
            Backend::Local(b) => {
                if !b.release_fast(id) && b.release(id)? == Released::Last {
                    // SAFETY: the pool's handles are gone and this was its
                    // last lease; `core` is not used after.
                    unsafe { Self::free(this) };
                }
            }
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                if b.release_fast(id) || b.release(id)? {
                    // SAFETY: a lease was removed and its grant kept a handle
                    // (`keep`); this is the call's last use of the core.
                    unsafe { Self::drop_handle(this) };
                }
            }
        }
        Ok(())
    }

    /// Whether this memory still holds a pool that has not been dropped. Only a
    /// best-effort check against stale handles, never a guarantee.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) == LIVE
    }

    /// Whether the pool places its leases (see [`Pool::new_placed`]).
    pub fn is_placed(&self) -> bool {
        match self.backend() {
            Backend::Local(b) => b.is_placed(),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.is_placed(),
        }
    }

    /// The alignment of a placed pool's offsets; 0 for a pool that is not
    /// placed.
    pub fn alignment(&self) -> u64 {
        match self.backend() {
            Backend::Local(b) => b.alignment(),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.alignment(),
        }
    }

    /// Where lease `id`'s range starts in a placed pool (a 0-byte lease
    /// has none and reads 0). A pool that is not placed:
    /// `InvalidArgument`; a lease not outstanding: `InvalidLease`.
    pub fn lease_offset(&self, id: u64) -> Result<u64, Error> {
        match self.backend() {
            Backend::Local(b) => b.lease_offset(id),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.lease_offset(id),
        }
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
    /// fast path, inlined into each export: a lease, or `None` to go on to
    /// [`PoolCore::acquire_fast_shared`] and the full path (nothing is held
    /// then). Never panics.
    ///
    /// A shared pool answers `None`: a call to its fast path from here would
    /// make every export save and restore registers around it, which the
    /// in-process pair pays for; the shared pool's is tried out of line.
    #[inline]
    pub fn acquire_fast(&self, nbytes: u64) -> Option<Lease> {
        match self.backend() {
            Backend::Local(b) => b.acquire_fast(nbytes),
            #[cfg(not(loom))]
            Backend::Shared(_) => None,
        }
    }

    /// The uncontended acquire of a shared pool, out of line: the C
    /// boundary tries it before its full path's checks, and the full paths
    /// ([`Pool::acquire`], [`Pool::try_acquire`]) before they wait or give
    /// up. A lease, or `None` (nothing held; always for an in-process pool).
    /// Its lease holds a handle, as the full path's does (see `Pool`).
    /// Never panics.
    #[inline(never)]
    #[cfg_attr(loom, allow(unused_variables))] // no shared pools under loom
    pub fn acquire_fast_shared(&self, nbytes: u64) -> Option<Lease> {
        match self.backend() {
            Backend::Local(_) => None,
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                // The caller holds a handle, so the count is not 0 (a pool
                // with none left goes to the full path, which says so).
                if self.handle.strong_count() == 0 {
                    return None;
                }
                let lease = b.acquire_fast(nbytes)?;
                // SAFETY: the handles' `Arc` is live with a count of 1 or
                // more (the caller's, above); this adds the lease's, which
                // its release drops (`drop_handle`).
                unsafe { Arc::increment_strong_count(self.handle.as_ptr()) };
                Some(lease)
            }
        }
    }

    /// The uncontended release of an in-process pool's lease, for the C
    /// boundary's fast path: `true` when done, `false` to go on to
    /// [`PoolCore::release_fast_shared`] and [`PoolCore::release_raw`]
    /// (which also handles every misuse). Never panics. A shared pool
    /// answers `false`, as in `acquire_fast`.
    #[inline]
    pub fn release_fast(&self, id: u64) -> bool {
        match self.backend() {
            Backend::Local(b) => b.release_fast(id),
            #[cfg(not(loom))]
            Backend::Shared(_) => false,
        }
    }

    /// The uncontended release of a shared pool's lease, out of line (see
    /// `acquire_fast_shared`): `true` when done, `false` to call
    /// [`PoolCore::release_raw`] (always for an in-process pool). It drops
    /// the lease's handle, which may be the last: hence the core's address.
    /// Never panics.
    ///
    /// # Safety
    /// As for `release_raw`.
    #[inline(never)]
    #[cfg_attr(loom, allow(unused_variables))] // no shared pools under loom
    pub unsafe fn release_fast_shared(this: *const PoolCore, id: u64) -> bool {
        // SAFETY: the contract above; `core` is not used once the pool may
        // be freed (below).
        let core = unsafe { &*this };
        match core.backend() {
            Backend::Local(_) => false,
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                if !b.release_fast(id) {
                    return false;
                }
                // SAFETY: a lease was removed and its grant kept a handle;
                // this is the call's last use of the core.
                unsafe { Self::drop_handle(this) };
                true
            }
        }
    }

    /// Waits in line for `nbytes`, up to `wait`.
    pub fn acquire(&self, nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        match self.backend() {
            Backend::Local(b) => b.acquire_fast(nbytes).map_or_else(
                || {
                    let _waiting = self.handle();
                    b.acquire(nbytes, wait)
                },
                Ok,
            ),
            #[cfg(not(loom))]
            Backend::Shared(b) => self.acquire_fast_shared(nbytes).map_or_else(|| kept(self, b.acquire(nbytes, wait)), Ok),
        }
    }

    /// Grants `nbytes` only if that is possible at once without jumping the line.
    pub fn try_acquire(&self, nbytes: u64) -> Result<Lease, Error> {
        match self.backend() {
            Backend::Local(b) => b.acquire_fast(nbytes).map_or_else(|| b.try_acquire(nbytes), Ok),
            #[cfg(not(loom))]
            Backend::Shared(b) => self.acquire_fast_shared(nbytes).map_or_else(|| kept(self, b.try_acquire(nbytes)), Ok),
        }
    }

    /// Returns a lease's bytes. Releasing a lease twice is a no-op. (After
    /// the last handle, C releases the leases left with `release_raw`.)
    pub fn release(&self, id: u64) -> Result<(), Error> {
        // SAFETY: `&self` comes from a handle the caller holds, so the pool is
        // not retired and this release cannot free it; a shared lease's
        // handle is not the caller's last either.
        unsafe { Self::release_raw(self, id) }
    }

    /// Joins the line for `nbytes` and returns at once with the place.
    pub fn enqueue(&self, nbytes: u64) -> Result<Ticket, Error> {
        dispatch!(self, b => b.enqueue(nbytes))
    }

    /// Waits up to `wait` for a ticket's grant. On timeout the ticket keeps its
    /// place and may be waited on again.
    pub fn wait_ticket(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        let _waiting = self.handle();
        match self.backend() {
            Backend::Local(b) => b.wait_ticket(ticket, wait),
            #[cfg(not(loom))]
            Backend::Shared(b) => kept(self, b.wait_ticket(ticket, wait)),
        }
    }

    /// Grants `nbytes` at once when possible without jumping the line, else
    /// joins the line: what `acquire` does before it sleeps, for callers that
    /// wait in their own slices. Counts neither a would-block nor a timeout.
    pub fn acquire_or_enqueue(&self, nbytes: u64) -> Result<Admission, Error> {
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
    pub fn wait_ticket_or_leave(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        let _waiting = self.handle();
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
    pub fn resize_lease(&self, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        let _waiting = self.handle();
        dispatch!(self, b => b.resize_lease(id, new_nbytes, wait))
    }

    /// Moves `nbytes` (1 or more, fewer than the lease holds) of lease `id`
    /// into a new lease, atomically: the bytes are never free meanwhile.
    /// Returns (what `id` holds now, the new lease). The new lease counts as
    /// a grant.
    pub fn split_lease(&self, id: u64, nbytes: u64) -> Result<(Lease, Lease), Error> {
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
    pub fn merge_leases(&self, into: u64, from: u64) -> Result<Lease, Error> {
        match self.backend() {
            Backend::Local(b) => b.merge_leases(into, from),
            #[cfg(not(loom))]
            Backend::Shared(b) => {
                let merged = b.merge_leases(into, from)?;
                // SAFETY: `from`'s grant called `keep`, and the caller's own
                // handle keeps the pool alive past this: not the last one.
                unsafe { Self::drop_handle(self) };
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
            Backend::Shared(b) => {
                let token = b.share_lease(id, parts, claim_within, keep_lease)?;
                if !keep_lease {
                    // SAFETY: the lease's grant called `keep`, and the caller's
                    // own handle keeps the pool alive past this: not the last one.
                    unsafe { Self::drop_handle(self) };
                }
                Ok(token)
            }
        }
    }

    /// Marks part `part` of a hand-off as taken up, so that it does not
    /// expire. A completed or expired part cannot be claimed.
    pub fn claim_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(b) => b.claim_part(token, part),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.claim_part(token, part),
        }
    }

    /// Completes part `part` of a hand-off (again: a no-op); the last part
    /// finishes it.
    pub fn complete_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        match self.backend() {
            Backend::Local(b) => b.complete_part(token, part),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.complete_part(token, part),
        }
    }

    /// Waits up to `wait` for a hand-off to finish (every part completed or
    /// expired); `Timeout` when the wait runs out first.
    pub fn wait_handoff(&self, token: &Token, wait: Wait) -> Result<(), Error> {
        let _waiting = self.handle();
        match self.backend() {
            Backend::Local(b) => b.wait_handoff(token, wait),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.wait_handoff(token, wait),
        }
    }

    /// Posts one event on `n` when the hand-off finishes (at once if it
    /// has): `{ticket: Ticket { id: token.id }, user, HandoffFinished}`.
    pub fn notify_handoff(&self, token: &Token, n: &Notifier, user: u64) -> Result<(), Error> {
        dispatch!(self, b => b.notify_handoff(token, n.core(), user))
    }

    /// What an outstanding hand-off is now; `None` once it finished.
    pub fn handoff(&self, token: &Token) -> Result<Option<HandoffInfo>, Error> {
        match self.backend() {
            Backend::Local(b) => b.handoff(token),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.handoff(token),
        }
    }

    /// Every outstanding hand-off, oldest first (none for a shared pool
    /// this process cannot read: damaged).
    pub fn handoffs(&self) -> Vec<HandoffInfo> {
        match self.backend() {
            Backend::Local(b) => b.handoffs(),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.shared_handoffs().unwrap_or_default().into_iter().map(|h| h.info).collect(),
        }
    }

    /// The hand-off figures (zeros for a damaged shared pool).
    pub fn handoff_stats(&self) -> HandoffStats {
        match self.backend() {
            Backend::Local(b) => b.handoff_stats(),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.handoff_stats().unwrap_or_default(),
        }
    }

    /// Changes the total. Growing grants waiters at once; shrinking never
    /// revokes a lease, and waiters larger than the new total fail.
    pub fn set_total(&self, new_total: u64) -> Result<(), Error> {
        dispatch!(self, b => b.set_total(new_total))
    }

    /// The wait and request-size histograms (see `histogram`); a shared
    /// pool's fail only when it was damaged under this process. Reading them
    /// walks the lease slots: for scrapes, not for every request.
    pub fn histograms(&self) -> Result<super::histogram::Histograms, Error> {
        match self.backend() {
            Backend::Local(b) => Ok(b.histograms()),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.histograms(),
        }
    }

    /// Records that this process holds `bytes` on the device outside any
    /// lease under `label` (a CUDA context, decoder surfaces); 0 removes it.
    /// Reservations take nothing from the budget: they are reported beside
    /// it (`Stats::reserved_bytes`, `reservations`). At most
    /// `reservations::MAX_RESERVATIONS` labels per process and pool, each 1
    /// to `MAX_LABEL_BYTES` bytes without control characters. A shared
    /// pool's end when this process detaches or dies.
    pub fn set_reservation(&self, label: &str, bytes: u64) -> Result<(), Error> {
        dispatch!(self, b => b.set_reservation(label, bytes))
    }

    /// The reservations recorded in this pool (every attached process's, for
    /// a shared pool, which fails only when damaged under this process).
    pub fn reservations(&self) -> Result<Vec<super::reservations::HeldReservation>, Error> {
        match self.backend() {
            Backend::Local(b) => Ok(b.reservations()),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.reservations(),
        }
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
        match self.backend() {
            Backend::Local(b) => b.stats(),
            #[cfg(not(loom))]
            Backend::Shared(b) => b.stats(),
        }
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
