//! The line of waiting requests, kept under one lock, and each request's own
//! record. Order of arrival decides order of grant.
//!
//! A request in line is a [`Waiter`]: its size, its place, and one atomic
//! word that says where it stands (waiting, granted, or why it left). The
//! grant is decided under the lock and written straight into that word; the
//! requesting thread sleeps on the word alone, so it wakes only for its own
//! fate and reads it without taking the lock again. Two-phase tickets
//! (`enqueue`, then `wait` in slices) are also kept by id until redeemed.

use std::collections::VecDeque;
use std::time::Instant;

use super::error::Error;
use super::histogram::{wait_bucket, WAIT_BUCKETS};
use super::lease::IdMap;
use super::notify::{Core, Decision, Registrations, Rings};
use super::local::Placed;
use super::sync::{monotonic_ns, Arc, AtomicU64, Ordering, Parker, ASLEEP};

const WAITING: u64 = 0;
const GRANTED: u64 = 1;
const CLOSED: u64 = 2;
const CANCELLED: u64 = 3;
/// The total that made it fail sits above the three low bits.
const TOO_LARGE: u64 = 4;
const TOTAL_SHIFT: u32 = 3;

/// A request waiting in line, or finished: its own record.
pub(crate) struct Waiter {
    pub(crate) ticket: u64,
    pub(crate) nbytes: u64,
    /// When it joined the line (`monotonic_ns`).
    since_ns: u64,
    /// How long it waited in line, written by the thread that granted it
    /// (from the clock reading it counted the wait with) before the fate,
    /// so that the waiting thread reads the figure without a clock of its
    /// own. Only the fate orders it.
    waited_ns: std::sync::atomic::AtomicU64,
    /// `WAITING` (`ASLEEP` while its thread sleeps on it), or a fate:
    /// `GRANTED`, `CLOSED`, `CANCELLED`, `total << 3 | TOO_LARGE` (none has
    /// `ASLEEP`'s low half, as `Parker` needs). The fate is written once,
    /// under the wait-list lock.
    word: AtomicU64,
    parker: Parker,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    Waiting,
    /// Its bytes were taken from the pool for it; the collector records them.
    Granted,
    /// It left the line without bytes.
    Failed(Error),
}

impl Waiter {
    /// A record that joined the line at `since_ns` (0 for one granted
    /// without waiting) with the fate word `word`.
    fn new(ticket: u64, nbytes: u64, word: u64, since_ns: u64) -> Waiter {
        Waiter {
            ticket,
            nbytes,
            since_ns,
            waited_ns: std::sync::atomic::AtomicU64::new(0),
            word: AtomicU64::new(word),
            parker: Parker::default(),
        }
    }

    /// How long it waited in line: until its grant for a granted request
    /// (the granter's figure: 0 when granted without waiting), until now
    /// otherwise.
    pub(crate) fn waited_ns(&self) -> u64 {
        match self.word.load(Ordering::Acquire) {
            GRANTED => self.waited_ns.load(std::sync::atomic::Ordering::Relaxed),
            _ => monotonic_ns().saturating_sub(self.since_ns),
        }
    }

    /// Its fate; read without the lock (a fate, once written, never changes).
    pub(crate) fn fate(&self) -> Fate {
        match self.word.load(Ordering::Acquire) {
            WAITING | ASLEEP => Fate::Waiting,
            GRANTED => Fate::Granted,
            CLOSED => Fate::Failed(Error::Closed),
            CANCELLED => Fate::Failed(Error::InvalidLease(format!("ticket {:#x} was cancelled", self.ticket))),
            w => Fate::Failed(Error::ExceedsCapacity { requested: self.nbytes, total: w >> TOTAL_SHIFT }),
        }
    }

    pub(crate) fn is_waiting(&self) -> bool {
        matches!(self.word.load(Ordering::Acquire), WAITING | ASLEEP)
    }

    /// Its fate as a notifier's event says it; `None` while it waits.
    fn decision(&self) -> Option<Decision> {
        match self.word.load(Ordering::Acquire) {
            WAITING | ASLEEP => None,
            w => Some(decision_of(w)),
        }
    }

    /// Sleeps while it is waiting, at most until `deadline`; may return early.
    pub(crate) fn sleep(&self, deadline: Option<Instant>) {
        self.parker.sleep(&self.word, deadline);
    }

    /// Wakes its thread (after a `settle` that said it sleeps).
    pub(crate) fn wake(&self) {
        self.parker.wake(&self.word);
    }

}

/// A fate word (not `WAITING`) as a notifier's decision.
fn decision_of(fate: u64) -> Decision {
    match fate {
        GRANTED => Decision::Granted,
        CLOSED => Decision::Closed,
        CANCELLED => Decision::Cancelled,
        w => Decision::ExceedsCapacity { total: w >> TOTAL_SHIFT },
    }
}

/// Threads whose request was settled under the wait-list lock and that are
/// asleep, and notifiers whose tickets were: woken and rung by
/// [`Wakes::run`] once the lock is let go, so that the lock is never held
/// across the system call. Holding their records keeps the words alive (a
/// record still held is not reused).
#[derive(Default)]
pub(crate) struct Wakes {
    /// Filled from the front.
    list: [Option<Arc<Waiter>>; 4],
    rings: Rings,
}

impl Wakes {
    /// Runs the wakes; the lock must have been let go.
    #[inline(never)]
    pub(crate) fn run(self) {
        for w in self.list.iter().map_while(Option::as_ref) {
            w.wake();
        }
        self.rings.run();
    }
}

/// Under the lock: writes `w`'s fate; its thread, if asleep, is woken later
/// (or at once when `wakes` is full), and its notifier, if registered, gets
/// its event.
#[inline]
fn settle(wakes: &mut Wakes, notify: &mut Registrations, w: &Arc<Waiter>, fate: u64) {
    if w.parker.settle(&w.word, fate) {
        match wakes.list.iter_mut().find(|e| e.is_none()) {
            Some(e) => *e = Some(Arc::clone(w)),
            None => w.wake(),
        }
    }
    notify.decide(w.ticket, decision_of(fate), &mut wakes.rings);
}

/// Counters only the lock holder changes.
#[derive(Default, Clone, Copy)]
pub(crate) struct WaitCounters {
    pub(crate) waited_grants: u64,
    pub(crate) wait_ns_total: u64,
    pub(crate) wait_ns_max: u64,
    /// The histogram of those waits (see `histogram`).
    pub(crate) waits: [u64; WAIT_BUCKETS],
}

#[derive(Default)]
pub(crate) struct Waitlist {
    tickets_issued: u64,
    line: VecDeque<Arc<Waiter>>,
    /// Two-phase tickets not yet redeemed or cancelled, by id.
    tickets: IdMap<Arc<Waiter>>,
    pub(crate) counters: WaitCounters,
    /// Once the pool's last handle is gone: the leases still outstanding.
    pub(crate) retired: Option<u64>,
    /// Records of finished requests, reused once their thread let go of
    /// them, so that waiting costs no allocation in the steady state.
    spare: Vec<Arc<Waiter>>,
    /// Two-phase tickets registered with a notifier.
    notify: Registrations,
    /// Threads to wake and notifiers to ring once the lock is let go.
    wakes: Wakes,
    /// A placed pool's placement (see `local::placed`).
    pub(crate) placed: Option<Box<Placed>>,
}

/// Spare records kept at most.
const SPARES: usize = 64;

impl Waitlist {
    /// An empty line; `placed` for a placed pool.
    pub(crate) fn with_placement(placed: Option<Box<Placed>>) -> Waitlist {
        Waitlist { placed, ..Waitlist::default() }
    }

    /// Numbers the next ticket (from 1).
    pub(crate) fn next_ticket_seq(&mut self) -> u64 {
        self.tickets_issued += 1;
        self.tickets_issued
    }

    pub(crate) fn ticket_issued(&self, seq: u64) -> bool {
        seq != 0 && seq <= self.tickets_issued
    }

    /// Puts a request at the end of the line; a two-phase ticket is also
    /// kept by id.
    pub(crate) fn push(&mut self, ticket: u64, nbytes: u64, two_phase: bool) -> Arc<Waiter> {
        let w = self.record(Waiter::new(ticket, nbytes, WAITING, monotonic_ns()));
        self.line.push_back(Arc::clone(&w));
        if two_phase {
            self.tickets.insert(ticket, Arc::clone(&w));
        }
        w
    }

    /// Records a two-phase ticket that was granted without waiting.
    pub(crate) fn granted_at_once(&mut self, ticket: u64, nbytes: u64) {
        let w = self.record(Waiter::new(ticket, nbytes, GRANTED, 0));
        self.tickets.insert(ticket, w);
    }

    /// `fresh` in a spare record nobody holds any more, or in a new one.
    fn record(&mut self, fresh: Waiter) -> Arc<Waiter> {
        if let Some(i) = self.spare.iter().position(|w| Arc::strong_count(w) == 1) {
            let mut w = self.spare.swap_remove(i);
            if let Some(slot) = Arc::get_mut(&mut w) {
                *slot = fresh;
                return w;
            }
        }
        Arc::new(fresh)
    }

    /// Keeps a finished request's record for reuse.
    fn recycle(&mut self, w: Arc<Waiter>) {
        if self.spare.len() < SPARES {
            self.spare.push(w);
        }
    }

    pub(crate) fn head(&self) -> Option<&Waiter> {
        self.line.front().map(|w| &**w)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.line.len()
    }

    /// The record of a two-phase ticket not yet redeemed.
    pub(crate) fn ticket(&self, id: u64) -> Option<&Arc<Waiter>> {
        self.tickets.get(&id)
    }

    /// Ends a two-phase ticket: forgets its id and, if it still waits, takes
    /// it out of line (its thread, if any, wakes to `CANCELLED`).
    pub(crate) fn take_ticket(&mut self, id: u64) -> Option<Arc<Waiter>> {
        let w = self.tickets.remove(&id)?;
        if w.is_waiting() {
            self.unlink(&w);
            settle(&mut self.wakes, &mut self.notify, &w, CANCELLED);
        }
        self.notify.forget(id);
        Some(w)
    }

    /// A request that gave up leaves the line, if it is still in it; `false`
    /// when its fate was decided first.
    pub(crate) fn leave(&mut self, w: &Waiter) -> bool {
        if !w.is_waiting() {
            return false;
        }
        self.unlink(w);
        if self.tickets.remove(&w.ticket).is_some() {
            self.notify.decide(w.ticket, Decision::Cancelled, &mut self.wakes.rings);
            self.notify.forget(w.ticket);
        }
        true
    }

    /// Takes a waiting request out of the line (a scan: lines are short, and
    /// only requests that give up leave from the middle).
    fn unlink(&mut self, w: &Waiter) {
        if let Some(i) = self.line.iter().position(|x| std::ptr::eq(&**x, w)) {
            self.line.remove(i);
        }
    }

    /// Grants the head of the line: it leaves the line, its record says
    /// `GRANTED`, and its thread wakes.
    pub(crate) fn grant_head(&mut self) {
        if let Some(w) = self.line.pop_front() {
            let waited = monotonic_ns().saturating_sub(w.since_ns);
            w.waited_ns.store(waited, std::sync::atomic::Ordering::Relaxed);
            let c = &mut self.counters;
            c.waited_grants += 1;
            c.wait_ns_total = c.wait_ns_total.saturating_add(waited);
            c.wait_ns_max = c.wait_ns_max.max(waited);
            c.waits[wait_bucket(waited)] += 1;
            settle(&mut self.wakes, &mut self.notify, &w, GRANTED);
            self.recycle(w);
        }
    }

    /// Fails every waiter larger than `total` (`None`: every waiter, the
    /// pool is closed). Returns how many.
    pub(crate) fn fail_where(&mut self, total: Option<u64>) -> u64 {
        let before = self.line.len();
        let (wakes, notify) = (&mut self.wakes, &mut self.notify);
        self.line.retain(|w| {
            let doomed = total.map_or(true, |t| w.nbytes > t);
            if doomed {
                settle(wakes, notify, w, total.map_or(CLOSED, |t| t << TOTAL_SHIFT | TOO_LARGE));
            }
            !doomed
        });
        (before - self.line.len()) as u64
    }

    /// The one thread to wake, if that is all there is to do once the lock
    /// is let go (the common case: a release that grants one waiter), taken
    /// out; `Err` when there is more (see `take_wakes`).
    #[inline]
    pub(crate) fn take_wake(&mut self) -> Result<Option<Arc<Waiter>>, ()> {
        let wakes = &mut self.wakes;
        if wakes.list[1].is_none() && wakes.rings.is_empty() {
            return Ok(wakes.list[0].take());
        }
        Err(())
    }

    /// All the threads to wake and notifiers to ring, taken out before the
    /// lock is let go.
    pub(crate) fn take_wakes(&mut self) -> Wakes {
        std::mem::take(&mut self.wakes)
    }

    /// Forgets every two-phase ticket (nobody can redeem them any more) and
    /// returns the bytes of those granted and never collected.
    pub(crate) fn drop_tickets(&mut self) -> u64 {
        let mut granted = 0;
        for (_, w) in std::mem::take(&mut self.tickets) {
            if w.fate() == Fate::Granted {
                granted += w.nbytes;
            }
        }
        self.fail_where(None);
        self.notify.clear();
        granted
    }

    /// Registers the two-phase ticket `id` (it must be held: see `ticket`)
    /// with a notifier; one already decided has its event queued at once.
    pub(crate) fn register(&mut self, id: u64, core: &Arc<Core>, user: u64) -> Result<(), Error> {
        let decided = self.tickets.get(&id).and_then(|w| w.decision());
        self.notify.register(id, id, core, user, decided, &mut self.wakes.rings)
    }
}
