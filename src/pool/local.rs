//! The in-process backend: a byte-weighted semaphore that grants strictly in
//! order of arrival.
//!
//! * Fast path: with nobody in line, an acquire is one compare-and-swap on the
//!   state word plus one on a slot of the lease table (`slots`); a release is
//!   the reverse. No lock is taken and no thread sleeps holding anything.
//! * Slow path: a request that cannot be granted at once joins the line under
//!   the wait-list lock. Whoever returns bytes while someone waits grants from
//!   the head of the line, in order, as far as the bytes reach, and wakes only
//!   those it granted.
//! * A request leaving the line (timeout, cancel, close) re-runs the grant from
//!   the head, so the ones behind it never wait on a request that is gone.

use std::time::{Duration, Instant};

mod handoff;
mod placed;
mod split;
pub use placed::DEFAULT_ALIGNMENT;
#[cfg(not(loom))]
pub(crate) use placed::check_alignment;
pub(crate) use placed::Placed;
#[cfg(not(loom))]
pub(crate) use split::{check_merge, check_split};

use super::bottleneck::{Loud, Scene};
use super::error::Error;
use super::histogram::Histograms;
use super::handoff::{earliest, Handoffs};
use super::lease::{Admission, Lease, Ticket};
use super::notify::Core;
use super::reservations::{HeldReservation, Reservations};
use super::slots::{IdKind, LeaseSlots, Removed};
use super::state::{Snapshot, State, MAX_TOTAL};
use super::stats::Stats;
use super::sync::{Arc, AtomicI64, AtomicU64, LeakCheck, Mutex, MutexGuard, Ordering};
use std::ops::{Deref, DerefMut};
use super::waitlist::{Fate, Waiter, Waitlist};

/// How long a request may wait for its grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until granted or the pool is closed.
    Forever,
    /// Until this instant; an instant already past means "do not wait".
    Until(Instant),
}

impl Wait {
    /// A timeout in nanoseconds from now; `u64::MAX` means forever.
    pub fn timeout_ns(ns: u64) -> Wait {
        if ns == u64::MAX {
            return Wait::Forever;
        }
        Instant::now().checked_add(Duration::from_nanos(ns)).map_or(Wait::Forever, Wait::Until)
    }

    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Forever => None,
            Wait::Until(at) => Some(at),
        }
    }
}

/// What a waiting request does when its time runs out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnTimeout {
    /// Leave the line (the one-call acquire forms).
    Leave,
    /// Keep the place (a ticket waited on in slices).
    Stay,
}

/// What a release did, for the front, which owns the pool's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// An outstanding lease was removed and its bytes returned.
    Now,
    /// The lease was released before: a no-op.
    Already,
    /// As `Now`, and it was the last lease of a pool whose handles are all
    /// gone (`retire`): the caller frees the pool, touching it no more.
    Last,
}

/// A byte budget shared by the threads of one process; the front `Pool`
/// holds it and decides its lifetime (see `retire`).
pub(crate) struct LocalPool {
    total: AtomicU64,
    state: State,
    leases: LeaseSlots,
    waitlist: Mutex<Waitlist>,
    /// The fewest bytes ever available, so that the peak in use is
    /// `total - low_water` (moved with the total when it changes).
    low_water: AtomicI64,
    timeouts: AtomicU64,
    would_blocks: AtomicU64,
    capacity_rejections: AtomicU64,
    closed_rejections: AtomicU64,
    futile_wakeups: AtomicU64,
    reservations: Reservations,
    loud: Loud,
    handoffs: Handoffs,
    /// The alignment of a placed pool's offsets (its placement is in the
    /// wait list); 0 for a pool that is not placed.
    alignment: u64,
    _leak_check: LeakCheck,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl LocalPool {
    /// A pool of `total_bytes` (1 ..= 2^60).
    pub(crate) fn new(total_bytes: u64) -> Result<LocalPool, Error> {
        check_total(total_bytes)?;
        Self::with(total_bytes, None)
    }

    /// A placed pool of `total_bytes` whose leases lie at offsets that are
    /// multiples of `alignment` (a power of two); see `placed`.
    pub(crate) fn new_placed(total_bytes: u64, alignment: u64) -> Result<LocalPool, Error> {
        check_total(total_bytes)?;
        let placed = Placed::new(total_bytes, alignment)?;
        let pool = Self::with(total_bytes, Some(placed))?;
        // `QUEUED` for good: every request and release takes the lock,
        // where ranges are placed.
        pool.state.queue_for_good();
        Ok(pool)
    }

    fn with(total_bytes: u64, placed: Option<Placed>) -> Result<LocalPool, Error> {
        let alignment = placed.as_ref().map_or(0, Placed::alignment);
        Ok(LocalPool {
            total: AtomicU64::new(total_bytes),
            state: State::new(total_bytes),
            leases: LeaseSlots::new()?,
            waitlist: Mutex::new(Waitlist::with_placement(placed.map(Box::new))),
            low_water: AtomicI64::new(total_bytes as i64),
            timeouts: AtomicU64::new(0),
            would_blocks: AtomicU64::new(0),
            capacity_rejections: AtomicU64::new(0),
            closed_rejections: AtomicU64::new(0),
            futile_wakeups: AtomicU64::new(0),
            reservations: Reservations::default(),
            loud: Loud::default(),
            handoffs: Handoffs::default(),
            alignment,
            _leak_check: LeakCheck::new(),
        })
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    pub(crate) fn available_bytes(&self) -> u64 {
        self.state.load().available.max(0) as u64
    }

    /// The uncontended acquire: with nobody in line and enough free (a first
    /// look at the state word), one compare-and-swap on this thread's home
    /// slot of the lease table, claimed first, and one on the state word. `None` sends the caller to
    /// `acquire` or `try_acquire`, which start over and say why (nothing is
    /// held then). Nothing in it can panic.
    #[inline(always)]
    pub(crate) fn acquire_fast(&self, nbytes: u64) -> Option<Lease> {
        let seen = self.state.peek_take(nbytes)?;
        let claim = self.leases.claim_home()?;
        match self.state.take_from(seen, nbytes) {
            Some(left) => {
                self.note_low(left);
                Some(Lease { id: self.leases.fill(claim, nbytes), nbytes })
            }
            None => {
                self.leases.unclaim(claim);
                None
            }
        }
    }

    /// The uncontended release of a slot lease: one compare-and-swap on the
    /// slot, one on the state word, then the slot is free (the last thing
    /// done to the pool). `false` sends the caller to `release`.
    #[inline]
    pub(crate) fn release_fast(&self, id: u64) -> bool {
        self.leases.remove_fast(id, |nbytes| self.state.try_give(nbytes))
    }

    /// Waits in line for `nbytes`, up to `wait` (after `acquire_fast`
    /// turned it down).
    pub(crate) fn acquire(&self, nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        self.check_request(nbytes)?;
        match self.take_now(nbytes) {
            Ok(()) => return self.record(nbytes),
            Err(s) if s.closed => return Err(self.closed()),
            Err(_) => {}
        }
        let ticket = match self.join_line(nbytes, false)? {
            Joined::Now(ticket) => ticket,
            Joined::Queued(w) => {
                self.wait_for(&w, wait, OnTimeout::Leave)?;
                w.ticket
            }
        };
        if self.is_placed() {
            return Ok(self.collect(ticket, nbytes));
        }
        self.record(nbytes)
    }

    /// Grants `nbytes` only if that is possible at once without jumping the
    /// line (after `acquire_fast` turned it down).
    pub(crate) fn try_acquire(&self, nbytes: u64) -> Result<Lease, Error> {
        self.check_request(nbytes)?;
        match self.take_now(nbytes) {
            Ok(()) => self.record(nbytes),
            Err(s) if s.closed => Err(self.closed()),
            Err(_) if self.is_placed() => self.try_place(nbytes),
            Err(s) => {
                bump(&self.would_blocks);
                Err(Error::WouldBlock {
                    requested: nbytes,
                    available: s.available.max(0) as u64,
                    queued: s.queued,
                })
            }
        }
    }

    /// Returns a lease's bytes (after `release_fast` turned it down), under
    /// the wait-list lock: someone is in line (the bytes go to its head),
    /// the lease is in the overflow map, it was released before, or the pool
    /// is retired. Releasing a lease twice is a no-op.
    pub(crate) fn release(&self, id: u64) -> Result<Released, Error> {
        let mut wl = self.lock();
        match self.leases.remove(id)? {
            Removed::Now(nbytes) => {
                if let Some(p) = wl.placed.as_mut() {
                    p.release(id)?;
                }
                self.state.add(nbytes as i64);
                self.grant_ready(&mut wl);
                Ok(match wl.retired.as_mut() {
                    Some(left) => {
                        *left -= 1;
                        if *left == 0 {
                            Released::Last
                        } else {
                            Released::Now
                        }
                    }
                    None => Released::Now,
                })
            }
            Removed::Already => {
                if let IdKind::Ticket { .. } = self.leases.kind(id) {
                    if wl.ticket(id).is_some() {
                        return Err(Error::InvalidLease(format!(
                            "{id:#x} is a ticket not yet redeemed: redeem it with wait or leave with cancel"
                        )));
                    }
                    self.check_ticket(&wl, id)?;
                }
                Ok(Released::Already)
            }
        }
    }

    /// The pool's last handle is gone. From now on it is closed and every
    /// release takes the lock, where the leases still outstanding are
    /// counted down; tickets nobody can redeem return their bytes. `true`
    /// when no lease is outstanding: the caller frees the pool now;
    /// otherwise the release that returns the last lease says `Last`.
    pub(crate) fn retire(&self) -> bool {
        let mut wl = self.lock();
        self.state.retire();
        let granted = wl.drop_tickets();
        self.state.add(granted as i64);
        // After `retire` above no fast release can finish, and a release that
        // finished before it is waited out of its slot here.
        let outstanding = self.leases.outstanding();
        wl.retired = Some(outstanding);
        outstanding == 0
    }

    /// Joins the line for `nbytes` and returns at once with the place.
    pub(crate) fn enqueue(&self, nbytes: u64) -> Result<Ticket, Error> {
        self.check_request(nbytes)?;
        let id = match self.join_line(nbytes, true)? {
            Joined::Now(id) => id,
            Joined::Queued(w) => w.ticket,
        };
        Ok(Ticket { id })
    }

    /// Waits up to `wait` for a ticket's grant. On timeout the ticket keeps its
    /// place and may be waited on again.
    pub(crate) fn wait_ticket(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        self.redeem(ticket, wait, OnTimeout::Stay)
    }

    /// Waits for a ticket's fate and collects it. A ticket that times out
    /// keeps its place (`Stay`) or has left the line (`Leave`: `wait_for`
    /// took it out of the ticket map with the line, under one lock).
    fn redeem(&self, ticket: Ticket, wait: Wait, on_timeout: OnTimeout) -> Result<Lease, Error> {
        let w = {
            let wl = self.lock();
            match wl.ticket(ticket.id) {
                Some(w) => Arc::clone(w),
                None => {
                    self.check_ticket(&wl, ticket.id)?;
                    return Err(Error::InvalidLease(format!(
                        "ticket {:#x} was already redeemed or cancelled",
                        ticket.id
                    )));
                }
            }
        };
        match self.wait_for(&w, wait, on_timeout) {
            Err(e @ Error::Timeout { .. }) => Err(e),
            outcome => {
                // Granted or failed: whoever takes the ticket's record owns
                // its fate (a cancel may have taken it first).
                if self.lock().take_ticket(ticket.id).is_none() {
                    return Err(Error::InvalidLease(format!("ticket {:#x} was cancelled meanwhile", ticket.id)));
                }
                outcome?;
                self.leases.insert_ticket(ticket.id, w.nbytes);
                Ok(Lease { id: ticket.id, nbytes: w.nbytes })
            }
        }
    }

    /// Grants `nbytes` at once when that is possible without jumping the
    /// line, else joins the line: the first step of `acquire`, for callers
    /// that wait for the ticket in their own slices. Counts no refusal.
    pub(crate) fn acquire_or_enqueue(&self, nbytes: u64) -> Result<Admission, Error> {
        self.check_request(nbytes)?;
        match self.take_now(nbytes) {
            Ok(()) => self.record(nbytes).map(Admission::Granted),
            Err(s) if s.closed => Err(self.closed()),
            Err(_) => self.enqueue(nbytes).map(Admission::Queued),
        }
    }

    /// As `wait_ticket`, but a ticket whose time runs out leaves the line and
    /// counts as a timeout, as the one-call `acquire` does.
    pub(crate) fn wait_ticket_or_leave(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        self.redeem(ticket, wait, OnTimeout::Leave)
    }

    /// Leaves the line; if the grant already happened, its bytes go back.
    /// Cancelling a finished ticket is a no-op.
    pub(crate) fn cancel_ticket(&self, ticket: Ticket) -> Result<(), Error> {
        let mut wl = self.lock();
        let Some(fate) = wl.ticket(ticket.id).map(|w| w.fate()) else {
            return self.check_ticket(&wl, ticket.id);
        };
        let w = wl.take_ticket(ticket.id);
        match fate {
            Fate::Waiting => self.grant_ready(&mut wl),
            Fate::Granted => {
                if let Some(p) = wl.placed.as_mut() {
                    p.release(ticket.id)?;
                }
                self.state.add(w.map_or(0, |w| w.nbytes) as i64);
                self.grant_ready(&mut wl);
            }
            Fate::Failed(_) => {}
        }
        Ok(())
    }

    /// Registers a ticket with a notifier (see `Pool::notify_ticket`); the
    /// event of a ticket already decided is queued at once, and the fd rung
    /// once the lock is let go.
    pub(crate) fn notify_ticket(&self, ticket: Ticket, core: &Arc<Core>, user: u64) -> Result<(), Error> {
        let mut wl = self.lock();
        if wl.ticket(ticket.id).is_none() {
            self.check_ticket(&wl, ticket.id)?;
            return Err(Error::InvalidLease(format!("ticket {:#x} was already redeemed or cancelled", ticket.id)));
        }
        wl.register(ticket.id, core, user)
    }

    /// Changes what a lease holds. Shrinking returns bytes at once; growing
    /// waits in line for the difference, like an acquire, up to `wait`.
    pub(crate) fn resize_lease(&self, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        if self.is_placed() {
            return self.resize_placed(id, new_nbytes, wait);
        }
        let old = self.leases.get(id)?;
        if new_nbytes <= old {
            let (before, after) = self.leases.update(id, |cur| cur.min(new_nbytes))?;
            self.give_back(before - after);
            return Ok(Lease { id, nbytes: after });
        }
        self.check_request(new_nbytes)?;
        let delta = new_nbytes - old;
        match self.take_now(delta) {
            Ok(()) => {}
            Err(s) if s.closed => return Err(self.closed()),
            Err(_) => {
                if let Joined::Queued(w) = self.join_line(delta, false)? {
                    self.wait_for(&w, wait, OnTimeout::Leave)?;
                }
            }
        }
        match self.leases.update(id, |cur| cur + delta) {
            Ok((_, after)) => Ok(Lease { id, nbytes: after }),
            Err(_) => {
                self.give_back(delta);
                Err(Error::InvalidLease(format!("lease {id:#x} was released while it grew")))
            }
        }
    }

    /// Changes the total. Growing grants waiters at once; shrinking never
    /// revokes a lease, and waiters larger than the new total fail.
    pub(crate) fn set_total(&self, new_total: u64) -> Result<(), Error> {
        check_total(new_total)?;
        if self.is_placed() {
            return Err(Error::InvalidArgument(
                "the total of a placed pool is fixed: its ranges index one buffer".into(),
            ));
        }
        let mut wl = self.lock();
        let old = self.total.swap(new_total, Ordering::AcqRel);
        let delta = new_total as i64 - old as i64;
        self.state.add(delta);
        self.low_water.fetch_add(delta, Ordering::Relaxed);
        let failed = wl.fail_where(Some(new_total));
        self.capacity_rejections.fetch_add(failed, Ordering::Relaxed);
        self.grant_ready(&mut wl);
        Ok(())
    }

    /// Closes the pool: waiters wake with `Closed`, new requests fail with it,
    /// releases still return bytes. Closing twice is a no-op.
    pub(crate) fn close(&self) {
        let mut wl = self.lock();
        self.state.set_closed();
        let failed = wl.fail_where(None);
        self.closed_rejections.fetch_add(failed, Ordering::Relaxed);
        if wl.retired.is_none() && wl.placed.is_none() {
            self.state.clear_queued();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load().closed
    }

    pub(crate) fn stats(&self) -> Stats {
        // The total and the free bytes are read together under the wait-list
        // lock, which `set_total` holds while it changes both.
        let (waiters, counters, total, s, low, place) = {
            let wl = self.lock();
            let place = wl.placed.as_ref().map(|p| p.stats());
            (wl.len() as u64, wl.counters, self.total_bytes(), self.state.load(), self.low_water.load(Ordering::Relaxed), place)
        };
        let (outstanding, _, grants) = self.leases.totals();
        let stats = Stats {
            total_bytes: total,
            available_bytes: s.available.max(0) as u64,
            in_use_bytes: (total as i64 - s.available).max(0) as u64,
            peak_in_use_bytes: (total as i64 - low).max(0) as u64,
            outstanding_leases: outstanding,
            waiters,
            grants,
            waited_grants: counters.waited_grants,
            timeouts: self.timeouts.load(Ordering::Relaxed),
            would_blocks: self.would_blocks.load(Ordering::Relaxed),
            capacity_rejections: self.capacity_rejections.load(Ordering::Relaxed),
            closed_rejections: self.closed_rejections.load(Ordering::Relaxed),
            wait_ns_total: counters.wait_ns_total,
            wait_ns_max: counters.wait_ns_max,
            futile_wakeups: self.futile_wakeups.load(Ordering::Relaxed),
            reserved_bytes: self.reservations.total(),
            ..Stats::default()
        };
        match place {
            Some(p) => Stats { largest_free_range: p.largest_free_range, free_ranges: p.free_ranges, ..stats },
            None => stats.unplaced(),
        }
    }

    /// The histograms: the waits counted under the wait-list lock, the sizes
    /// from every lease slot.
    pub(crate) fn histograms(&self) -> Histograms {
        let (waits, wait_ns_total) = {
            let wl = self.lock();
            (wl.counters.waits, wl.counters.wait_ns_total)
        };
        let (sizes, size_bytes_total) = self.leases.sizes();
        Histograms { waits, wait_ns_total, sizes, size_bytes_total }
    }

    /// Records that this process holds `bytes` outside any lease under
    /// `label` (0 removes it); see `reservations`.
    pub(crate) fn set_reservation(&self, label: &str, bytes: u64) -> Result<(), Error> {
        self.reservations.set(label, bytes)
    }

    /// The reservations recorded in this pool, all this process's.
    pub(crate) fn reservations(&self) -> Vec<HeldReservation> {
        let pid = std::process::id();
        self.reservations.list().into_iter().map(|reservation| HeldReservation { pid, reservation }).collect()
    }

    /// Bytes held by outstanding leases and hand-offs, from the pool's own
    /// records. With no grant waiting to be collected,
    /// `available + leased == total`.
    pub(crate) fn leased_bytes(&self) -> u64 {
        self.leases.totals().1 + self.handoffs.stats().held_bytes
    }

    /// Bytes and size of the lease `id` if it is outstanding.
    pub(crate) fn lease(&self, id: u64) -> Option<Lease> {
        self.leases.get(id).ok().map(|nbytes| Lease { id, nbytes })
    }

    // ---- internals -------------------------------------------------------

    /// Takes the wait-list lock; threads granted while it is held are woken
    /// after it is let go.
    fn lock(&self) -> Held<'_> {
        Held(Some(self.waitlist.lock()))
    }

    fn check_request(&self, nbytes: u64) -> Result<(), Error> {
        let total = self.total_bytes();
        if nbytes > total {
            bump(&self.capacity_rejections);
            return Err(Error::ExceedsCapacity { requested: nbytes, total });
        }
        Ok(())
    }

    fn closed(&self) -> Error {
        bump(&self.closed_rejections);
        Error::Closed
    }

    /// The lock-free attempt. Zero bytes are granted at once, line or not.
    fn take_now(&self, nbytes: u64) -> Result<(), Snapshot> {
        if nbytes == 0 {
            let s = self.state.load();
            return if s.closed { Err(s) } else { Ok(()) };
        }
        let left = self.state.try_take(nbytes)?;
        self.note_low(left);
        Ok(())
    }

    /// Lowers the low-water mark of available bytes to `left` if it is lower.
    #[inline(always)]
    fn note_low(&self, left: i64) {
        if left < self.low_water.load(Ordering::Relaxed) {
            self.low_water.fetch_min(left, Ordering::Relaxed);
        }
    }

    /// Records bytes already taken as a new lease.
    fn record(&self, nbytes: u64) -> Result<Lease, Error> {
        match self.leases.insert(nbytes) {
            Ok(id) => Ok(Lease { id, nbytes }),
            Err(e) => {
                self.give_back(nbytes);
                Err(e)
            }
        }
    }

    /// Refuses a ticket id that has no record: never issued, or already finished.
    fn check_ticket(&self, wl: &Waitlist, id: u64) -> Result<(), Error> {
        match self.leases.kind(id) {
            IdKind::Ticket { seq } if wl.ticket_issued(seq) => Ok(()),
            _ if id == 0 => Err(Error::InvalidLease("ticket id 0 means \"none\"".into())),
            _ => Err(Error::InvalidLease(format!("ticket {id:#x} was not issued by this pool"))),
        }
    }

    /// Returns bytes; with someone in line, grants from its head.
    fn give_back(&self, nbytes: u64) {
        if nbytes == 0 || self.state.try_give(nbytes) {
            return;
        }
        let mut wl = self.lock();
        self.state.add(nbytes as i64);
        self.grant_ready(&mut wl);
    }

    /// Under the lock: grants from the head of the line while the bytes reach.
    fn grant_ready(&self, wl: &mut Waitlist) {
        while let Some(head) = wl.head() {
            if wl.placed.is_some() {
                let (ticket, nbytes) = (head.ticket, head.nbytes);
                // A damaged placement (a bug) keeps the line waiting.
                if !self.place_locked(wl, ticket, nbytes).unwrap_or(false) {
                    return;
                }
                wl.grant_head();
                continue;
            }
            match self.state.take_locked(head.nbytes) {
                Some(left) => {
                    self.note_low(left);
                    wl.grant_head();
                }
                None => return,
            }
        }
        // A retired pool keeps `QUEUED` so that releases keep coming here,
        // and so does a placed pool.
        if wl.retired.is_none() && wl.placed.is_none() {
            self.state.clear_queued();
        }
    }

    /// Takes a ticket and either grants it at once or puts it in line.
    fn join_line(&self, nbytes: u64, two_phase: bool) -> Result<Joined, Error> {
        let mut wl = self.lock();
        let ticket = self.leases.ticket_id(wl.next_ticket_seq())?;
        if self.state.load().closed {
            return Err(self.closed());
        }
        // Re-checked under the lock: the total may have shrunk meanwhile.
        self.check_request(nbytes)?;
        let now = if nbytes == 0 {
            true
        } else if !wl.is_empty() {
            false
        } else if wl.placed.is_some() {
            self.place_locked(&mut wl, ticket, nbytes)?
        } else {
            match self.state.take_or_queue(nbytes) {
                Ok(left) => {
                    self.note_low(left);
                    true
                }
                Err(()) => false,
            }
        };
        if now {
            if two_phase {
                wl.granted_at_once(ticket, nbytes);
            }
            return Ok(Joined::Now(ticket));
        }
        Ok(Joined::Queued(wl.push(ticket, nbytes, two_phase)))
    }

    /// Waits until the request's fate is decided (`Ok` for a grant) or its
    /// time runs out; then, holding no lock, says so if the wait was too
    /// long (a ticket that stays in line has not timed out, only this wait).
    fn wait_for(&self, w: &Waiter, wait: Wait, on_timeout: OnTimeout) -> Result<(), Error> {
        let outcome = self.wait_in_line(w, wait, on_timeout);
        if on_timeout == OnTimeout::Leave || outcome.is_ok() {
            let seen = outcome.clone().map(|()| w.nbytes);
            self.loud.after_wait(&seen, Some(w.waited_ns()), || {
                let s = self.stats();
                let pool = format!("in-process pool {:p}", self);
                Scene { pool, in_use_bytes: s.in_use_bytes, total_bytes: s.total_bytes, waiters: s.waiters }
            });
        }
        outcome
    }

    /// `wait_for`'s wait. The grant is read from the request's own record,
    /// without the wait-list lock; only giving up takes it.
    fn wait_in_line(&self, w: &Waiter, wait: Wait, on_timeout: OnTimeout) -> Result<(), Error> {
        let deadline = wait.deadline();
        loop {
            match w.fate() {
                Fate::Granted => return Ok(()),
                Fate::Failed(e) => return Err(e),
                Fate::Waiting => {}
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                if on_timeout == OnTimeout::Stay {
                    return Err(Error::Timeout { requested: w.nbytes });
                }
                let mut wl = self.lock();
                // Under the lock the fate is settled: leave, or take what came.
                if wl.leave(w) {
                    self.grant_ready(&mut wl);
                    bump(&self.timeouts);
                    return Err(Error::Timeout { requested: w.nbytes });
                }
                continue;
            }
            // A hand-off whose claim deadline passes may return the bytes
            // this request waits for: wake then too, and collect them.
            let expiry = self.handoffs.next_claim_deadline();
            let until = earliest(deadline, expiry);
            w.sleep(until);
            // The clock is read only when a deadline could have passed.
            let now = until.map(|_| Instant::now());
            if expiry.zip(now).is_some_and(|(at, now)| now >= at) {
                self.reap_handoffs();
                continue;
            }
            if w.is_waiting() && deadline.zip(now).map_or(true, |(at, now)| now < at) {
                bump(&self.futile_wakeups);
            }
        }
    }
}

/// The wait-list lock, held. Dropping it lets go of the lock, then wakes
/// the threads whose requests were settled meanwhile.
struct Held<'a>(Option<MutexGuard<'a, Waitlist>>);

impl Deref for Held<'_> {
    type Target = Waitlist;
    fn deref(&self) -> &Waitlist {
        self.0.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Waitlist {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.0.take() {
            match guard.take_wake() {
                Ok(one) => {
                    drop(guard);
                    if let Some(w) = one {
                        w.wake();
                    }
                }
                Err(()) => {
                    let wakes = guard.take_wakes();
                    drop(guard);
                    wakes.run();
                }
            }
        }
    }
}

/// How a request joined the line.
enum Joined {
    /// Granted at once, under this ticket id.
    Now(u64),
    /// Waiting, with its own record.
    Queued(Arc<Waiter>),
}

pub(crate) fn check_total(total: u64) -> Result<(), Error> {
    if total == 0 || total > MAX_TOTAL {
        return Err(Error::InvalidArgument(format!(
            "total_bytes must be between 1 and 2^60, got {total}"
        )));
    }
    Ok(())
}
