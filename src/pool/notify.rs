//! The notifier: tickets registered with it become events in its queue when
//! their fate is decided, and its file descriptor (an eventfd) is readable
//! while the queue holds any, so that one event loop watches one fd however
//! many tickets it has in line.
//!
//! * Whoever decides a ticket (a grant, a close, a shrink of the total, a
//!   cancel) does so under the pool's lock and queues the event there, under
//!   the notifier's own small lock (order: pool's lock, then notifier's lock;
//!   never the reverse). The eventfd is written later, once the pool's lock is
//!   let go (`Rings`), as a sleeping thread is woken (`Wakes`).
//! * The eventfd's counter is 1 exactly when the queue is non-empty and its
//!   bell was rung, else 0: the bell (`Bell`) says which, under the
//!   notifier's lock, so a byte is never written twice nor left behind by a
//!   drain that emptied the queue.
//! * Each ticket's registration (`Registrations`, kept with the line under
//!   the pool's lock) queues its event once: the first decision takes the
//!   notifier out of the registration.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use super::error::Error;
use super::lease::{IdMap, Ticket};
use super::sync::{Arc, Mutex};

/// How a registered ticket was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Its bytes were taken for it: collect them with a zero wait
    /// (`Pool::wait_ticket`), or give them back with `Pool::cancel_ticket`.
    Granted,
    /// It left the line because the pool was closed.
    Closed,
    /// It left the line because the total was lowered below it.
    ExceedsCapacity { total: u64 },
    /// It left the line: cancelled, or a wait that leaves the line ran out.
    Cancelled,
    /// Not a ticket: the hand-off whose token id is `Event::ticket`'s id
    /// finished (every part completed or expired; its bytes, if it held
    /// any, are back). Nothing is collected.
    HandoffFinished,
}

impl Decision {
    /// The decision as the error a collecting wait returns (`Ok` for a grant).
    pub fn result(self, ticket: Ticket, requested: u64) -> Result<(), Error> {
        match self {
            Decision::Granted => Ok(()),
            Decision::Closed => Err(Error::Closed),
            Decision::ExceedsCapacity { total } => Err(Error::ExceedsCapacity { requested, total }),
            Decision::Cancelled => Err(Error::InvalidLease(format!("ticket {:#x} left the line", ticket.id))),
            Decision::HandoffFinished => {
                Err(Error::InvalidLease(format!("{:#x} is a finished hand-off, not a ticket", ticket.id)))
            }
        }
    }
}

/// A decided ticket, as queued on a notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub ticket: Ticket,
    /// The value given when the ticket was registered.
    pub user: u64,
    pub decision: Decision,
}

/// Where the eventfd stands, known under the notifier's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bell {
    /// Counter 0, nothing owed.
    Quiet,
    /// Events were queued; a `ring` will write the byte (counter still 0).
    Owed,
    /// Counter 1.
    Rung,
}

struct Queue {
    events: VecDeque<Event>,
    bell: Bell,
    /// The notifier's last handle is gone: events are dropped.
    detached: bool,
}

/// The notifier's state, held by its handles and by every registration.
/// The eventfd is closed when the last of them goes, so no grant ever
/// writes to a reused descriptor number.
pub(crate) struct Core {
    queue: Mutex<Queue>,
    fd: EventFd,
}

impl Core {
    /// Under the deciding side's lock: queues `event`. `true` when the
    /// caller must `ring` once it has let go of that lock.
    fn push(&self, event: Event) -> bool {
        let mut q = self.queue.lock();
        if q.detached {
            return false;
        }
        q.events.push_back(event);
        if q.bell == Bell::Quiet {
            q.bell = Bell::Owed;
            return true;
        }
        false
    }

    /// Queues `event` and rings, for a caller that holds no pool lock.
    pub(crate) fn post(&self, event: Event) {
        if self.push(event) {
            self.ring();
        }
    }

    /// Writes the byte owed, unless a drain emptied the queue meanwhile or
    /// another ring wrote it.
    fn ring(&self) {
        let mut q = self.queue.lock();
        if q.bell == Bell::Owed {
            self.fd.signal();
            q.bell = Bell::Rung;
        }
    }

    /// Moves up to `max` events, oldest first, to `put`; with the queue
    /// empty afterwards the fd is no longer readable.
    fn drain(&self, max: usize, mut put: impl FnMut(Event)) -> usize {
        let mut q = self.queue.lock();
        let n = max.min(q.events.len());
        for e in q.events.drain(..n) {
            put(e);
        }
        if q.events.is_empty() {
            self.quiet(&mut q);
        }
        n
    }

    fn quiet(&self, q: &mut Queue) {
        if q.bell == Bell::Rung {
            self.fd.reset();
        }
        q.bell = Bell::Quiet;
    }

    fn detach(&self) {
        let mut q = self.queue.lock();
        q.detached = true;
        q.events = VecDeque::new();
        self.quiet(&mut q);
    }
}

/// The handles' shared part: dropping the last handle detaches the core.
struct Owner {
    core: Arc<Core>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.core.detach();
    }
}

/// A queue of decided tickets with a file descriptor that is readable while
/// it holds any. Clones are handles to the same notifier; every method may
/// be called from any thread. When the last handle is dropped, tickets still
/// registered keep their places in line and their events are dropped.
#[derive(Clone)]
pub struct Notifier {
    owner: Arc<Owner>,
}

impl Notifier {
    /// A notifier with its own eventfd (non-blocking, close-on-exec).
    pub fn new() -> Result<Notifier, Error> {
        let core = Core {
            queue: Mutex::new(Queue { events: VecDeque::new(), bell: Bell::Quiet, detached: false }),
            fd: EventFd::new()?,
        };
        Ok(Notifier { owner: Arc::new(Owner { core: Arc::new(core) }) })
    }

    /// The descriptor to watch for readability. The notifier owns it: do not
    /// read, write or close it.
    pub fn fd(&self) -> RawFd {
        self.owner.core.fd.raw()
    }

    /// Appends up to `max` queued events to `out`, oldest first; returns how
    /// many. Never blocks. The fd stays readable while events remain.
    pub fn drain(&self, out: &mut Vec<Event>, max: usize) -> usize {
        self.drain_with(max, |e| out.push(e))
    }

    /// As `drain`, handing each event to `put` (called under the notifier's
    /// lock: it must not call the notifier or a pool).
    pub fn drain_with(&self, max: usize, put: impl FnMut(Event)) -> usize {
        self.owner.core.drain(max, put)
    }

    /// Whether the fd reads as readable now (for tests and loops that poll).
    pub fn is_readable(&self) -> bool {
        self.owner.core.fd.is_readable()
    }

    /// Under loom, the eventfd's simulated counter (it must stay 0 or 1).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn debug_counter(&self) -> u64 {
        self.owner.core.fd.counter()
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.owner.core
    }
}

/// Notifiers owed a ring, filled under a pool's lock and rung after it is
/// let go (each at most once per batch: only the push that found the bell
/// quiet adds it).
#[derive(Default)]
pub(crate) struct Rings {
    list: Vec<Arc<Core>>,
}

impl Rings {
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Rings each notifier (none, in the common case: one test, inline).
    #[inline]
    pub(crate) fn run(self) {
        if !self.list.is_empty() {
            self.ring_all();
        }
    }

    #[inline(never)]
    fn ring_all(self) {
        for core in &self.list {
            core.ring();
        }
    }
}

/// A ticket's registration: the notifier until its event is queued.
struct Registration {
    core: Option<Arc<Core>>,
    user: u64,
    /// The ticket id its event names (the caller's, which a shared pool's
    /// deferred ticket does not share with the ticket in line).
    shown: u64,
}

/// The registrations of a pool's tickets, by ticket id, kept under the
/// pool's lock.
#[derive(Default)]
pub(crate) struct Registrations {
    map: IdMap<Registration>,
}

impl Registrations {
    /// Registers `ticket` with `core`, its events naming `shown`; a ticket
    /// already `decided` queues its event at once. A ticket registers once.
    pub(crate) fn register(
        &mut self,
        ticket: u64,
        shown: u64,
        core: &Arc<Core>,
        user: u64,
        decided: Option<Decision>,
        rings: &mut Rings,
    ) -> Result<(), Error> {
        if self.map.contains_key(&ticket) {
            return Err(Error::InvalidArgument(format!(
                "ticket {ticket:#x} is already registered with a notifier (one notifier per ticket)"
            )));
        }
        self.map.insert(ticket, Registration { core: Some(Arc::clone(core)), user, shown });
        if let Some(decision) = decided {
            self.decide(ticket, decision, rings);
        }
        Ok(())
    }

    /// `ticket` was decided: queues its event if it is registered and has
    /// not had one.
    /// With no registration (the common case), one test, inline.
    #[inline]
    pub(crate) fn decide(&mut self, ticket: u64, decision: Decision, rings: &mut Rings) {
        if !self.map.is_empty() {
            self.decide_registered(ticket, decision, rings);
        }
    }

    #[inline(never)]
    fn decide_registered(&mut self, ticket: u64, decision: Decision, rings: &mut Rings) {
        let Some(r) = self.map.get_mut(&ticket) else { return };
        if let Some(core) = r.core.take() {
            if core.push(Event { ticket: Ticket { id: r.shown }, user: r.user, decision }) {
                rings.list.push(core);
            }
        }
    }

    /// The tickets registered whose event is not yet queued.
    pub(crate) fn pending(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.iter().filter(|(_, r)| r.core.is_some()).map(|(&id, _)| id)
    }

    /// `ticket` is gone (redeemed, cancelled, or its pool retired).
    pub(crate) fn forget(&mut self, ticket: u64) {
        if !self.map.is_empty() {
            self.map.remove(&ticket);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map = IdMap::default();
    }
}

// ---- the eventfd ------------------------------------------------------------

#[cfg(not(loom))]
struct EventFd(std::os::fd::OwnedFd);

#[cfg(not(loom))]
impl EventFd {
    fn new() -> Result<EventFd, Error> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd(2) with valid flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::System(format!("eventfd: {}", std::io::Error::last_os_error())));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn raw(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Adds 1 to the counter (it is 0 here: see `Bell`).
    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to this eventfd. It cannot
        // fail short of a counter near 2^64, which `Bell` rules out.
        unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
    }

    /// Sets the counter to 0 (a non-blocking read; nothing to read is fine).
    fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from this eventfd.
        unsafe { libc::read(self.raw(), (&mut v as *mut u64).cast(), 8) };
    }

    fn is_readable(&self) -> bool {
        let mut p = libc::pollfd { fd: self.raw(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }
}

/// Under loom the eventfd is its counter, so that models see every write.
#[cfg(loom)]
struct EventFd(super::sync::AtomicU64);

#[cfg(loom)]
impl EventFd {
    fn new() -> Result<EventFd, Error> {
        Ok(EventFd(super::sync::AtomicU64::new(0)))
    }
    fn raw(&self) -> RawFd {
        -1
    }
    fn signal(&self) {
        self.0.fetch_add(1, super::sync::Ordering::AcqRel);
    }
    fn reset(&self) {
        self.0.store(0, super::sync::Ordering::Release);
    }
    fn is_readable(&self) -> bool {
        self.0.load(super::sync::Ordering::Acquire) > 0
    }
    fn counter(&self) -> u64 {
        self.0.load(super::sync::Ordering::Acquire)
    }
}
