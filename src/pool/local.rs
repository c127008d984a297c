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

use super::bottleneck::{Loud, Scene};
use super::error::Error;
use super::front::{keep, Pool};
use super::lease::{Admission, Lease, Ticket};
use super::slots::{IdKind, LeaseSlots, Removed};
use super::state::{Snapshot, State, MAX_TOTAL};
use super::stats::Stats;
use super::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};
use super::waitlist::{Fate, Waitlist};

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

/// A byte budget shared by the threads of one process; the front `Pool`
/// holds it. Methods that may create leases or sleep take the front's `Arc`
/// (`owner`): leases and waiting threads keep it alive.
pub(crate) struct LocalPool {
    total: AtomicU64,
    state: State,
    leases: LeaseSlots,
    waitlist: Mutex<Waitlist>,
    peak: AtomicU64,
    timeouts: AtomicU64,
    would_blocks: AtomicU64,
    capacity_rejections: AtomicU64,
    closed_rejections: AtomicU64,
    loud: Loud,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl LocalPool {
    /// A pool of `total_bytes` (1 ..= 2^60).
    pub(crate) fn new(total_bytes: u64) -> Result<LocalPool, Error> {
        check_total(total_bytes)?;
        Ok(LocalPool {
            total: AtomicU64::new(total_bytes),
            state: State::new(total_bytes),
            leases: LeaseSlots::new()?,
            waitlist: Mutex::new(Waitlist::default()),
            peak: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            would_blocks: AtomicU64::new(0),
            capacity_rejections: AtomicU64::new(0),
            closed_rejections: AtomicU64::new(0),
            loud: Loud::default(),
        })
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    pub(crate) fn available_bytes(&self) -> u64 {
        self.state.load().available.max(0) as u64
    }

    /// Waits in line for `nbytes`, up to `wait`.
    pub(crate) fn acquire(&self, owner: &Arc<Pool>, nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        self.check_request(nbytes)?;
        match self.take_now(nbytes) {
            Ok(()) => return self.record(owner, nbytes),
            Err(s) if s.closed => return Err(self.closed()),
            Err(_) => {}
        }
        let _hold = Arc::clone(owner);
        let ticket = self.join_line(nbytes)?;
        let nbytes = self.wait_for(ticket, nbytes, wait, OnTimeout::Leave)?;
        Ok(self.record_ticket(owner, ticket, nbytes))
    }

    /// Grants `nbytes` only if that is possible at once without jumping the line.
    pub(crate) fn try_acquire(&self, owner: &Arc<Pool>, nbytes: u64) -> Result<Lease, Error> {
        self.check_request(nbytes)?;
        match self.take_now(nbytes) {
            Ok(()) => self.record(owner, nbytes),
            Err(s) if s.closed => Err(self.closed()),
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

    /// Returns a lease's bytes. Releasing a lease twice is a no-op. `Ok(true)`
    /// when a lease was outstanding: the caller then drops the reference the
    /// lease held on the pool (`record`), as its very last use of the pool.
    pub(crate) fn release(&self, id: u64) -> Result<bool, Error> {
        match self.leases.remove(id)? {
            Removed::Now(nbytes) => {
                self.give_back(nbytes);
                Ok(true)
            }
            Removed::Already => {
                if let IdKind::Ticket { .. } = self.leases.kind(id) {
                    let wl = self.waitlist.lock();
                    if wl.fate(id).is_some() {
                        return Err(Error::InvalidLease(format!(
                            "{id:#x} is a ticket not yet redeemed: redeem it with wait or leave with cancel"
                        )));
                    }
                    self.check_ticket(&wl, id)?;
                }
                Ok(false)
            }
        }
    }

    /// Joins the line for `nbytes` and returns at once with the place.
    pub(crate) fn enqueue(&self, nbytes: u64) -> Result<Ticket, Error> {
        self.check_request(nbytes)?;
        Ok(Ticket { id: self.join_line(nbytes)? })
    }

    /// Waits up to `wait` for a ticket's grant. On timeout the ticket keeps its
    /// place and may be waited on again.
    pub(crate) fn wait_ticket(&self, owner: &Arc<Pool>, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        let _hold = Arc::clone(owner);
        let nbytes = self.wait_for(ticket.id, 0, wait, OnTimeout::Stay)?;
        Ok(self.record_ticket(owner, ticket.id, nbytes))
    }

    /// Grants `nbytes` at once when that is possible without jumping the
    /// line, else joins the line: the first step of `acquire`, for callers
    /// that wait for the ticket in their own slices. Counts no refusal.
    pub(crate) fn acquire_or_enqueue(&self, owner: &Arc<Pool>, nbytes: u64) -> Result<Admission, Error> {
        self.check_request(nbytes)?;
        match self.take_now(nbytes) {
            Ok(()) => self.record(owner, nbytes).map(Admission::Granted),
            Err(s) if s.closed => Err(self.closed()),
            Err(_) => Ok(Admission::Queued(Ticket { id: self.join_line(nbytes)? })),
        }
    }

    /// As `wait_ticket`, but a ticket whose time runs out leaves the line and
    /// counts as a timeout, as the one-call `acquire` does.
    pub(crate) fn wait_ticket_or_leave(&self, owner: &Arc<Pool>, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        let _hold = Arc::clone(owner);
        let nbytes = self.wait_for(ticket.id, 0, wait, OnTimeout::Leave)?;
        Ok(self.record_ticket(owner, ticket.id, nbytes))
    }

    /// Leaves the line; if the grant already happened, its bytes go back.
    /// Cancelling a finished ticket is a no-op.
    pub(crate) fn cancel_ticket(&self, ticket: Ticket) -> Result<(), Error> {
        let mut wl = self.waitlist.lock();
        match wl.take_fate(ticket.id) {
            Some(Fate::Waiting { .. }) => self.grant_ready(&mut wl),
            Some(Fate::Granted { nbytes }) => {
                self.state.add(nbytes as i64);
                self.grant_ready(&mut wl);
            }
            Some(Fate::Failed(_)) => {}
            None => self.check_ticket(&wl, ticket.id)?,
        }
        Ok(())
    }

    /// Changes what a lease holds. Shrinking returns bytes at once; growing
    /// waits in line for the difference, like an acquire, up to `wait`.
    pub(crate) fn resize_lease(&self, owner: &Arc<Pool>, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        let old = self.leases.get(id)?;
        if new_nbytes <= old {
            let (before, after) = self.leases.update(id, |cur| cur.min(new_nbytes))?;
            self.give_back(before - after);
            return Ok(Lease { id, nbytes: after });
        }
        self.check_request(new_nbytes)?;
        let delta = new_nbytes - old;
        let _hold = Arc::clone(owner);
        match self.take_now(delta) {
            Ok(()) => {}
            Err(s) if s.closed => return Err(self.closed()),
            Err(_) => {
                let ticket = self.join_line(delta)?;
                self.wait_for(ticket, delta, wait, OnTimeout::Leave)?;
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
        let mut wl = self.waitlist.lock();
        let old = self.total.swap(new_total, Ordering::AcqRel);
        self.state.add(new_total as i64 - old as i64);
        let before = wl.len();
        wl.fail_where(|n| n > new_total, |n| Error::ExceedsCapacity { requested: n, total: new_total });
        self.capacity_rejections.fetch_add((before - wl.len()) as u64, Ordering::Relaxed);
        self.grant_ready(&mut wl);
        Ok(())
    }

    /// Closes the pool: waiters wake with `Closed`, new requests fail with it,
    /// releases still return bytes. Closing twice is a no-op.
    pub(crate) fn close(&self) {
        let mut wl = self.waitlist.lock();
        self.state.set_closed();
        self.closed_rejections.fetch_add(wl.len() as u64, Ordering::Relaxed);
        wl.fail_where(|_| true, |_| Error::Closed);
        self.state.clear_queued();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load().closed
    }

    pub(crate) fn stats(&self) -> Stats {
        // The total and the free bytes are read together under the wait-list
        // lock, which `set_total` holds while it changes both.
        let (waiters, counters, total, s) = {
            let wl = self.waitlist.lock();
            (wl.len() as u64, wl.counters, self.total_bytes(), self.state.load())
        };
        let (outstanding, _, grants) = self.leases.totals();
        Stats {
            total_bytes: total,
            available_bytes: s.available.max(0) as u64,
            in_use_bytes: (total as i64 - s.available).max(0) as u64,
            peak_in_use_bytes: self.peak.load(Ordering::Relaxed),
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
            futile_wakeups: counters.futile_wakeups,
        }
    }

    /// Bytes held by outstanding leases, from the pool's own records. With no
    /// grant waiting to be collected, `available + leased == total`.
    pub(crate) fn leased_bytes(&self) -> u64 {
        self.leases.totals().1
    }

    /// Bytes and size of the lease `id` if it is outstanding.
    pub(crate) fn lease(&self, id: u64) -> Option<Lease> {
        self.leases.get(id).ok().map(|nbytes| Lease { id, nbytes })
    }

    // ---- internals -------------------------------------------------------

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
        self.note_in_use(left);
        Ok(())
    }

    fn note_in_use(&self, left: i64) {
        let in_use = (self.total_bytes() as i64 - left).max(0) as u64;
        if in_use > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(in_use, Ordering::Relaxed);
        }
    }

    /// Records bytes already taken as a new lease. The lease holds a
    /// reference on the pool until it is released (see `release`).
    fn record(&self, owner: &Arc<Pool>, nbytes: u64) -> Result<Lease, Error> {
        match self.leases.insert(nbytes) {
            Ok(id) => {
                keep(owner);
                Ok(Lease { id, nbytes })
            }
            Err(e) => {
                self.give_back(nbytes);
                Err(e)
            }
        }
    }

    /// Records the lease of a granted ticket; it keeps the ticket's id.
    fn record_ticket(&self, owner: &Arc<Pool>, ticket: u64, nbytes: u64) -> Lease {
        self.leases.insert_ticket(ticket, nbytes);
        keep(owner);
        Lease { id: ticket, nbytes }
    }

    /// Refuses a ticket id that has no fate: never issued, or already finished.
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
        let mut wl = self.waitlist.lock();
        self.state.add(nbytes as i64);
        self.grant_ready(&mut wl);
    }

    /// Under the lock: grants from the head of the line while the bytes reach.
    fn grant_ready(&self, wl: &mut MutexGuard<'_, Waitlist>) {
        while let Some(head) = wl.head() {
            match self.state.take_locked(head.nbytes) {
                Some(left) => {
                    self.note_in_use(left);
                    wl.grant_head();
                }
                None => return,
            }
        }
        self.state.clear_queued();
    }

    /// Takes a ticket and either grants it at once or puts it in line.
    fn join_line(&self, nbytes: u64) -> Result<u64, Error> {
        let mut wl = self.waitlist.lock();
        let ticket = self.leases.ticket_id(wl.next_ticket_seq())?;
        if self.state.load().closed {
            return Err(self.closed());
        }
        // Re-checked under the lock: the total may have shrunk meanwhile.
        self.check_request(nbytes)?;
        if nbytes == 0 {
            wl.granted_at_once(ticket, 0);
        } else if !wl.is_empty() {
            wl.push(ticket, nbytes);
        } else {
            match self.state.take_or_queue(nbytes) {
                Ok(left) => {
                    self.note_in_use(left);
                    wl.granted_at_once(ticket, nbytes);
                }
                Err(()) => wl.push(ticket, nbytes),
            }
        }
        Ok(ticket)
    }

    /// Waits for a ticket's fate and collects it: its granted bytes, or why
    /// not; then, holding no lock, says so if the wait was too long.
    fn wait_for(&self, ticket: u64, nbytes: u64, wait: Wait, on_timeout: OnTimeout) -> Result<u64, Error> {
        let mut joined = None;
        let outcome = self.wait_in_line(ticket, nbytes, wait, on_timeout, &mut joined);
        let waited = joined.map(|at: Instant| at.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64);
        // A ticket that stays in line has not timed out, only this wait's slice.
        if on_timeout == OnTimeout::Leave || outcome.is_ok() {
            self.loud.after_wait(&outcome, waited, || {
                let s = self.stats();
                let pool = format!("in-process pool {:p}", self);
                Scene { pool, in_use_bytes: s.in_use_bytes, total_bytes: s.total_bytes, waiters: s.waiters }
            });
        }
        outcome
    }

    /// `wait_for` under the lock; `joined` gets the time the ticket joined
    /// the line, if it is still in line when first looked at.
    fn wait_in_line(
        &self,
        ticket: u64,
        nbytes: u64,
        wait: Wait,
        on_timeout: OnTimeout,
        joined: &mut Option<Instant>,
    ) -> Result<u64, Error> {
        let deadline = wait.deadline();
        let mut wl = self.waitlist.lock();
        loop {
            if joined.is_none() {
                *joined = wl.joined(ticket);
            }
            let signal = match wl.fate(ticket) {
                None => {
                    self.check_ticket(&wl, ticket)?;
                    return Err(Error::InvalidLease(format!(
                        "ticket {ticket:#x} was already redeemed or cancelled"
                    )));
                }
                Some(Fate::Waiting { signal, nbytes: queued, .. }) => {
                    if deadline.is_some_and(|at| Instant::now() >= at) {
                        let requested = (*queued).max(nbytes);
                        if on_timeout == OnTimeout::Leave {
                            wl.take_fate(ticket);
                            self.grant_ready(&mut wl);
                            bump(&self.timeouts);
                        }
                        return Err(Error::Timeout { requested });
                    }
                    Arc::clone(signal)
                }
                Some(Fate::Granted { .. } | Fate::Failed(_)) => {
                    return match wl.take_fate(ticket) {
                        Some(Fate::Granted { nbytes }) => Ok(nbytes),
                        Some(Fate::Failed(e)) => Err(e),
                        _ => Err(Error::Internal("a ticket's fate changed under the lock".into())),
                    };
                }
            };
            signal.wait(&mut wl, deadline);
            if matches!(wl.fate(ticket), Some(Fate::Waiting { .. }))
                && deadline.map_or(true, |at| Instant::now() < at)
            {
                wl.counters.futile_wakeups += 1;
            }
        }
    }
}

pub(crate) fn check_total(total: u64) -> Result<(), Error> {
    if total == 0 || total > MAX_TOTAL {
        return Err(Error::InvalidArgument(format!(
            "total_bytes must be between 1 and 2^60, got {total}"
        )));
    }
    Ok(())
}
