//! Notifiers on a shared pool: a grant made by another process reaches this
//! process's event loop.
//!
//! * Each process record holds a doorbell word and a `listening` mark
//!   (`segment.rs`). Whoever decides a ticket (`Locked::set_fate`, under the
//!   segment's lock, in any process) bumps the doorbell of the ticket's owner
//!   if it listens, and wakes it with a shared futex once the lock is let go.
//! * A process that registers a ticket runs one relay thread per attached
//!   pool (started by its first registration): it reads the doorbell, looks
//!   at its registered tickets under the lock, queues the events of those
//!   decided, and sleeps on the doorbell while it still reads the same value
//!   (so a bump after the look is never missed), at most `RECLAIM_INTERVAL`,
//!   after which it looks for dead processes as a waiting thread does.
//! * This process's own calls that end a registered ticket (a collecting
//!   wait, a cancel, a wait that leaves) queue its event under the same lock
//!   (`Relay::ended`), so each ticket has exactly one event.
//! * Lock order: the segment's lock, then the registrations, then a
//!   notifier's queue. The relay stops (and is joined) when the pool's handle
//!   is dropped; tickets still registered then get a `Closed` event.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::segment::{Entry, Segment, FAILED_CAPACITY, FAILED_CLOSED, GRANTED, LEASE, WAITING};
use super::table::Locked;
use super::{futex, generation, segment, OnTimeout, SharedPool, PATIENT, RECLAIM_INTERVAL, SHORT_LOCK_WAIT};
use crate::pool::error::Error;
use crate::pool::lease::Ticket;
use crate::pool::notify::{Core, Decision, Registrations, Rings};

/// Under the lock, from `set_fate`: bumps the doorbell of `e`'s owner if it
/// listens, and notes its slot in `slots` for `wake`.
pub(crate) fn bump(seg: &Segment<'_>, e: &Entry, slots: &mut Vec<usize>) {
    bump_slot(seg, e.owner.load(Relaxed) as usize, slots);
}

/// `bump` for the process in `slot` (a hand-off it watches finished).
pub(crate) fn bump_slot(seg: &Segment<'_>, slot: usize, slots: &mut Vec<usize>) {
    let Some(p) = seg.procs.get(slot) else { return };
    if p.listening.load(Relaxed) == 0 {
        return;
    }
    p.doorbell.fetch_add(1, Release);
    if !slots.contains(&slot) {
        slots.push(slot);
    }
}

/// After the lock is let go: wakes the relays of `slots`.
pub(crate) fn wake(seg: &Segment<'_>, slots: &[usize]) {
    for &slot in slots {
        if let Some(p) = seg.procs.get(slot) {
            futex::wake(&p.doorbell, i32::MAX);
        }
    }
}

/// How the ticket `id` of this process stands, as an event says it; `None`
/// while it waits. A ticket no longer in its entry left the line.
fn decision(g: &Locked<'_>, id: u64) -> Option<Decision> {
    let Some(i) = g.find(id).filter(|&i| g.entry(i).owner.load(Relaxed) as usize == g.me) else {
        return Some(Decision::Cancelled);
    };
    match g.entry(i).state.load(Relaxed) {
        WAITING => None,
        GRANTED | LEASE => Some(Decision::Granted),
        FAILED_CLOSED => Some(Decision::Closed),
        FAILED_CAPACITY => Some(Decision::ExceedsCapacity { total: g.total() }),
        _ => Some(Decision::Cancelled),
    }
}

/// How long a registration waits for the relay's own locks: they are held
/// for microseconds, except in a forked child whose parent held one at fork.
const FORK_SAFE_WAIT: Duration = Duration::from_secs(1);

fn held_at_fork() -> Error {
    Error::System(
        "the shared pool's notifier state stayed locked for 1 s (copied locked by fork?); open the pool afresh \
         in this process to use notifiers"
            .into(),
    )
}

/// The relay thread of one attachment.
struct Running {
    thread: std::thread::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    slot: usize,
    generation: u16,
}

/// A shared pool's notifier side in this process: the registrations of its
/// tickets and the relay thread.
#[derive(Default)]
pub(crate) struct Relay {
    /// Taken only while holding the segment's lock.
    regs: parking_lot::Mutex<Registrations>,
    /// 1 + the fork generation that registered a ticket, 0 before (checked
    /// before `regs`, so that a forked child's calls never take the
    /// registrations of its parent, which fork may have copied locked).
    used: AtomicU32,
    running: parking_lot::Mutex<Option<Running>>,
}

impl Relay {
    /// Under the lock: this process is ending the ticket `id` (about to
    /// collect it, free it or give it back): its event, if registered and
    /// not yet queued, says how it stood (waiting: it left the line).
    pub(crate) fn ended(&self, g: &mut Locked<'_>, id: u64) {
        if self.used.load(Relaxed) != u32::from(generation()) + 1 {
            return;
        }
        let mut regs = self.regs.lock();
        regs.decide(id, decision(g, id).unwrap_or(Decision::Cancelled), &mut g.rings);
        regs.forget(id);
    }

    /// Whether a registered ticket still waits for its event.
    fn any_pending(&self) -> bool {
        self.regs.lock().pending().next().is_some()
    }

    /// Queues the events of the registered tickets that were decided.
    /// After a slice slept out, first looks for dead processes.
    fn scan(&self, pool: &SharedPool, slept_out: bool) {
        if !self.any_pending() {
            return;
        }
        if slept_out {
            pool.check_file_now();
        }
        let Ok(mut g) = pool.lock_by(PATIENT, 0) else { return };
        if slept_out {
            g.maybe_reap();
        }
        let mut regs = self.regs.lock();
        // In order of arrival, as the line decides them.
        let mut decided: Vec<(u64, u64, Decision)> = regs
            .pending()
            .filter_map(|id| {
                let pos = g.find(id).map_or(0, |i| g.entry(i).pos.load(Relaxed));
                decision(&g, id).map(|d| (pos, id, d))
            })
            .collect();
        decided.sort_unstable_by_key(|&(pos, id, _)| (pos, id));
        for (_, id, d) in decided {
            regs.decide(id, d, &mut g.rings);
        }
    }

    /// The pool is gone for this process: every registered ticket left the line.
    fn close_all(&self) {
        let mut rings = Rings::default();
        let mut regs = self.regs.lock();
        let pending: Vec<u64> = regs.pending().collect();
        for id in pending {
            regs.decide(id, Decision::Closed, &mut rings);
        }
        regs.clear();
        drop(regs);
        rings.run();
    }

    /// Starts this attachment's relay thread unless it runs.
    pub(super) fn ensure(&self, pool: &SharedPool) -> Result<(), Error> {
        let a = pool.me()?;
        let mut running = self.running.try_lock_for(FORK_SAFE_WAIT).ok_or_else(held_at_fork)?;
        if let Some(r) = running.as_ref() {
            if r.generation == a.generation && r.slot == a.slot && !r.thread.is_finished() {
                return Ok(());
            }
        }
        if let Some(old) = running.take() {
            if old.generation == a.generation {
                let _ = old.thread.join();
            } else {
                // An ancestor's thread, absent in this process after fork;
                // its registrations were the ancestor's tickets.
                std::mem::forget(old.thread);
                self.regs.try_lock_for(FORK_SAFE_WAIT).ok_or_else(held_at_fork)?.clear();
            }
        }
        let p = pool.seg().procs.get(a.slot).ok_or_else(|| Error::Internal("process slot out of range".into()))?;
        p.listening.store(1, Release);
        let stop = Arc::new(AtomicBool::new(false));
        let (slot, stopping) = (a.slot, Arc::clone(&stop));
        let addr = pool as *const SharedPool as usize;
        let thread = std::thread::Builder::new()
            .name("mmpool-relay".into())
            .spawn(move || {
                // SAFETY: the pool lives inside its `Pool`'s allocation, which
                // does not move, and its `Drop` stops and joins this thread
                // (`stop`) before any of its fields is dropped.
                let pool = unsafe { &*(addr as *const SharedPool) };
                relay_main(pool, slot, &stopping);
            })
            .map_err(|e| Error::System(format!("start the shared pool's notifier thread: {e}")))?;
        *running = Some(Running { thread, stop, slot, generation: a.generation });
        Ok(())
    }

    /// Stops and joins the relay thread (from the pool's `Drop`); tickets
    /// still registered get a `Closed` event.
    pub(crate) fn stop(&self, pool: &SharedPool) {
        // A lock copied held by fork is given up on (the thread is absent then).
        let Some(r) = self.running.try_lock_for(FORK_SAFE_WAIT).and_then(|mut r| r.take()) else { return };
        if r.generation != generation() {
            std::mem::forget(r.thread); // an ancestor's: see `ensure`
            return;
        }
        r.stop.store(true, Release);
        if let Some(p) = pool.seg().procs.get(r.slot) {
            p.listening.store(0, Relaxed);
            p.doorbell.fetch_add(1, Release);
            futex::wake(&p.doorbell, i32::MAX);
        }
        let _ = r.thread.join();
        self.close_all();
        pool.handoff_watches.close_all();
    }
}

/// How long an idle relay (no ticket waiting for its event) sleeps: a
/// registration of a waiting ticket rings the doorbell.
const IDLE_SLEEP: Duration = Duration::from_secs(3600);

/// The relay thread: look, then sleep on the doorbell while it is unchanged
/// (in slices of `RECLAIM_INTERVAL` while tickets wait, to find dead processes).
fn relay_main(pool: &SharedPool, slot: usize, stop: &AtomicBool) {
    let mut slept_out = false;
    while !stop.load(Acquire) {
        let Some(p) = pool.seg().procs.get(slot) else { return };
        let seen = p.doorbell.load(Acquire);
        if pool.intact().is_err() {
            pool.relay.close_all();
            return;
        }
        pool.relay.scan(pool, slept_out);
        pool.handoff_watches.scan(pool);
        if stop.load(Acquire) {
            return;
        }
        let waiting = pool.relay.any_pending() || pool.handoff_watches.any();
        let slice = if waiting { RECLAIM_INTERVAL } else { IDLE_SLEEP };
        slept_out = futex::wait(&p.doorbell, seen, slice);
    }
}

/// Processes' doorbells reset when a slot is taken (a dead predecessor's
/// relay no longer listens).
pub(crate) fn reset(seg: &Segment<'_>, slot: usize) {
    if let Some(p) = seg.procs.get(slot) {
        p.listening.store(0, Relaxed);
    }
}

impl SharedPool {
    /// Registers a ticket of this process with a notifier (see
    /// `Pool::notify_ticket`): starts the relay on first use; a ticket
    /// already decided queues its event at once.
    pub(crate) fn notify_ticket(&self, ticket: Ticket, core: &Arc<Core>, user: u64) -> Result<(), Error> {
        self.after(self.notify_ticket_in(ticket, core, user))
    }

    fn notify_ticket_in(&self, ticket: Ticket, core: &Arc<Core>, user: u64) -> Result<(), Error> {
        // An event loop calls this: it waits for the lock as long as it
        // changes hands, but not past `SHORT_LOCK_WAIT` on one stuck holder.
        let real = if segment::is_deferred_id(ticket.id, self.seg().header.nonce.load(Relaxed)) {
            self.enqueue_deferred(ticket.id, Some(Instant::now() + SHORT_LOCK_WAIT), OnTimeout::Stay)?
        } else {
            ticket
        };
        self.check_issued(real.id, "ticket")?;
        self.relay.ensure(self)?;
        let mut g = self.lock_by(PATIENT, 0)?;
        let gone = || Error::InvalidLease(format!("ticket {:#x} was already redeemed or cancelled", ticket.id));
        let i = self.own(&g, real.id, "ticket")?.ok_or_else(gone)?;
        if g.entry(i).state.load(Relaxed) == LEASE {
            return Err(gone());
        }
        let decided = decision(&g, real.id);
        self.relay.used.store(u32::from(generation()) + 1, Relaxed);
        let mut regs = self.relay.regs.lock();
        regs.register(real.id, ticket.id, core, user, decided, &mut g.rings)?;
        if decided.is_none() {
            // An idle relay sleeps long: it starts looking for dead processes now.
            let (seg, e) = (g.seg, g.entry(i));
            bump(seg, e, &mut g.doorbells);
        }
        Ok(())
    }
}
