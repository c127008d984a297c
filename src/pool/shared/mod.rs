//! One budget for every process on the host: a named pool in shared memory
//! that survives any of its processes dying.
//!
//! * Where: the file `/dev/shm/mmpool.NAME`, mode 0600 (0660 with
//!   `group`), holding a fixed-size segment (`segment.rs`): a header, a table
//!   of attached processes, a table of entries (leases and tickets) and the
//!   line of waiting tickets. Opening checks owner, mode, size and header;
//!   every number read from the segment is range-checked (`file.rs`).
//! * Order: strictly first come, first served across processes, as in one
//!   process. All changes happen under the segment's lock (`lock.rs`); a
//!   release grants from the head of the line and wakes exactly the tickets
//!   it granted, each of which sleeps on its own futex word.
//! * Crash safety: each attached process holds a kernel byte lock on the
//!   file (`liveness.rs`). A process that dies loses it; the others notice
//!   within `RECLAIM_INTERVAL` (waiters sleep in slices of that length and
//!   then look) and free everything it held (`table.rs`). A process killed
//!   inside the lock is noticed the same way by those waiting for the lock,
//!   who take it over and rebuild what can be derived from the entries.
//! * fork: a child does not inherit its parent's attachment; on first use it
//!   attaches afresh, with its own slot, leases and tickets.
//!
//! Limits: `MAX_PROCS` attached processes, `MAX_ENTRIES` outstanding leases
//! plus tickets, `MAX_WAITERS` waiting at once; past them a request fails
//! with `Error::System` saying which limit.

mod file;
mod futex;
mod liveness;
mod lock;
mod segment;
mod table;

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use file::{path_of, unlink, validate_name};

use super::error::Error;
use super::lease::{Admission, Lease, Ticket};
use super::local::{check_total, Wait};
use super::stats::Stats;
use crate::log::{self, Level};
use file::Mapping;
use liveness::PROC_LOCK_BASE;
use lock::Acquired;
use segment::*;

/// The fixed capacities of a shared pool: attached processes, outstanding
/// leases plus tickets, waiting requests, and the longest name.
pub fn limits() -> [(&'static str, usize); 4] {
    [
        ("attached processes", MAX_PROCS),
        ("leases and tickets", MAX_ENTRIES),
        ("waiting requests", MAX_WAITERS),
        ("name length", file::MAX_NAME_LEN),
    ]
}
use table::Locked;

/// The longest a survivor waits before it notices that a process died (while
/// holding bytes, waiting in line, or inside the lock) and takes back what it
/// held. Reclaiming takes a little more (one pass over the tables).
pub const RECLAIM_INTERVAL: Duration = lock::RECLAIM_SLICE;

/// How to open a shared pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Create the pool if no pool of that name exists (needs a total).
    pub create: bool,
    /// Fail if a pool of that name exists (implies `create`).
    pub exclusive: bool,
    /// Create the file with mode 0660 instead of 0600, and accept a pool
    /// another user of the group created.
    pub group: bool,
}

impl OpenFlags {
    pub(crate) const CREATE: u32 = 1;
    pub(crate) const EXCLUSIVE: u32 = 2;
    pub(crate) const GROUP: u32 = 4;

    /// From the C flag bits; unknown bits are refused.
    pub fn from_bits(bits: u32) -> Result<OpenFlags, Error> {
        let known = Self::CREATE | Self::EXCLUSIVE | Self::GROUP;
        if bits & !known != 0 {
            return Err(Error::InvalidArgument(format!(
                "unknown shared-pool flags {:#x} (known: CREATE 1, EXCLUSIVE 2, GROUP 4)",
                bits & !known
            )));
        }
        let exclusive = bits & Self::EXCLUSIVE != 0;
        Ok(OpenFlags { create: bits & Self::CREATE != 0 || exclusive, exclusive, group: bits & Self::GROUP != 0 })
    }
}

/// One attached process, as `mmpool status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub slot: usize,
    pub pid: u32,
    /// Leases it holds.
    pub leases: u64,
    /// Bytes its leases hold.
    pub bytes_held: u64,
    /// Requests of it waiting in line.
    pub waiting: u64,
    /// Whether this is the process that took the snapshot.
    pub is_self: bool,
}

/// A shared pool's figures and its attached processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSnapshot {
    pub name: String,
    pub path: String,
    pub closed: bool,
    pub stats: Stats,
    pub procs: Vec<ProcInfo>,
    /// Times a process took the lock over from one that died inside it.
    pub lock_recoveries: u64,
    /// Dead processes whose holdings were taken back.
    pub reaped_procs: u64,
}

/// What a one-call wait does when its time runs out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnTimeout {
    Leave,
    Stay,
}

const NO_SLOT: u64 = 0xff;

/// This process's attachment, packed in one word so that every call checks
/// it with one load: slot (8 bits), fork-registry index (8), descriptor (32),
/// fork generation (16).
#[derive(Clone, Copy)]
struct Attachment {
    slot: usize,
    registry: usize,
    fd: RawFd,
    generation: u16,
}

impl Attachment {
    fn pack(self) -> u64 {
        self.slot as u64 | (self.registry as u64) << 8 | u64::from(self.fd as u32) << 16 | u64::from(self.generation) << 48
    }
    fn unpack(w: u64) -> Attachment {
        Attachment {
            slot: (w & 0xff) as usize,
            registry: (w >> 8 & 0xff) as usize,
            fd: (w >> 16) as u32 as RawFd,
            generation: (w >> 48) as u16,
        }
    }
}

/// A shared pool attached to this process. `Pool` holds it.
pub struct SharedPool {
    name: String,
    map: Mapping,
    identity: (u64, u64),
    attachment: AtomicU64,
    reattach: parking_lot::Mutex<()>,
}

fn generation() -> u16 {
    liveness::fork_generation() as u16
}

/// Takes the segment's lock for `me`, repairing the segment if it was taken
/// over from a dead holder. `attaching`: `me` was just claimed, so a word
/// naming `me` is a dead predecessor's.
fn lock_segment(seg: &Segment, me: usize, fd: RawFd, attaching: bool) -> Result<Locked<'_>, Error> {
    let how = lock::lock(&seg.header.lock, me, |slot| {
        if slot == me {
            attaching
        } else {
            Locked::is_dead(fd, slot)
        }
    });
    let mut g = Locked::new(seg, me, fd);
    if how == Acquired::TakenOver {
        seg.header.lock_recoveries.fetch_add(1, Relaxed);
        log::log(Level::Warn, "shared pool: took the lock over from a process that died holding it; repairing");
        g.repair()?;
        g.reap_dead();
    }
    Ok(g)
}

/// Registers this process in a slot of the segment; returns the slot.
fn attach(seg: &Segment, fd: RawFd, name: &str, total: u64, flags: OpenFlags, created: bool) -> Result<usize, Error> {
    let mut slot = None;
    for s in 0..MAX_PROCS {
        let claimed = liveness::try_lock(fd, PROC_LOCK_BASE + s as i64)
            .map_err(|e| Error::System(format!("lock a process slot of {}: {e}", path_of(name))))?;
        if claimed {
            slot = Some(s);
            break;
        }
    }
    let Some(me) = slot else {
        return Err(Error::System(format!(
            "all {MAX_PROCS} process slots of shared pool {name:?} are taken (its fixed limit)"
        )));
    };
    let registered = (|| {
        let mut g = lock_segment(seg, me, fd, true)?;
        g.repair()?;
        // Whatever the slot still records is a dead predecessor's: this
        // process holds the slot's byte lock now.
        g.release_owner(me);
        g.reap_dead();
        let others = (0..MAX_PROCS).filter(|&s| s != me && seg.procs[s].state.load(Relaxed) == PROC_ATTACHED).count();
        let existing = g.total();
        if others == 0 && flags.create && !created {
            reset_abandoned(&mut g, if total == 0 { existing } else { total });
            log::log(Level::Info, &format!("shared pool {name:?}: no live process was attached; reset it"));
        } else if total != 0 && total != existing {
            return Err(Error::InvalidArgument(format!(
                "shared pool {name:?} has a total of {existing} bytes, but {total} bytes were asked for \
                 (pass 0 to accept the existing total)"
            )));
        }
        let p = &seg.procs[me];
        p.pid.store(std::process::id(), Relaxed);
        p.attached_ns.store(futex::now_ns(), Relaxed);
        p.state.store(PROC_ATTACHED, Relaxed);
        Ok(me)
    })();
    if registered.is_err() {
        liveness::unlock(fd, PROC_LOCK_BASE + me as i64);
    }
    registered
}

/// Starts an abandoned pool over: no process is attached, so nothing it
/// records is held by anyone.
fn reset_abandoned(g: &mut Locked<'_>, total: u64) {
    let h = &g.seg.header;
    for i in 0..MAX_ENTRIES {
        g.seg.entries[i].state.store(FREE, Relaxed);
    }
    h.total.store(total, Relaxed);
    h.available.store(total as i64, Relaxed);
    h.closed.store(0, Relaxed);
    for c in [
        &h.peak, &h.grants, &h.waited_grants, &h.timeouts, &h.would_blocks, &h.capacity_rejections,
        &h.closed_rejections, &h.wait_ns_total, &h.wait_ns_max, &h.waiting, &h.leases, &h.ring_head, &h.ring_tail,
    ] {
        c.store(0, Relaxed);
    }
}

impl SharedPool {
    /// Creates or attaches to the pool `name`. `total` 0 accepts the existing
    /// pool's total; otherwise it must equal it (or creates with it).
    pub fn open(name: &str, total: u64, flags: OpenFlags) -> Result<SharedPool, Error> {
        validate_name(name)?;
        if total != 0 {
            check_total(total)?;
        }
        let (opened, created) = file::open(name, total, flags)?;
        let file::Opened { fd, map, identity } = opened;
        let registry = liveness::register(fd.as_raw_fd()).map_err(Error::System)?;
        let fd = fd.into_raw_fd();
        let pool = SharedPool {
            name: name.to_string(),
            map,
            identity,
            attachment: AtomicU64::new(NO_SLOT),
            reattach: parking_lot::Mutex::new(()),
        };
        let unregistered = |e: Error| {
            if liveness::unregister(registry, fd) {
                // SAFETY: the descriptor this call opened and nothing else uses.
                unsafe { libc::close(fd) };
            }
            e
        };
        let slot = attach(pool.map.segment(), fd, name, total, flags, created).map_err(unregistered)?;
        pool.attachment.store(Attachment { slot, registry, fd, generation: generation() }.pack(), Release);
        Ok(pool)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn seg(&self) -> &Segment {
        self.map.segment()
    }

    /// This process's attachment; in a child after fork, a fresh one.
    fn me(&self) -> Result<Attachment, Error> {
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.generation == generation() && a.slot as u64 != NO_SLOT {
            return Ok(a);
        }
        let _one = self.reattach.lock();
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.generation == generation() && a.slot as u64 != NO_SLOT {
            return Ok(a);
        }
        // The attachment is an ancestor's; its descriptor was closed at fork.
        let fd = file::reopen(&self.name, self.identity)?;
        let registry = liveness::register(fd.as_raw_fd()).map_err(Error::System)?;
        let fd = fd.into_raw_fd();
        match attach(self.seg(), fd, &self.name, 0, OpenFlags::default(), false) {
            Ok(slot) => {
                let a = Attachment { slot, registry, fd, generation: generation() };
                self.attachment.store(a.pack(), Release);
                Ok(a)
            }
            Err(e) => {
                if liveness::unregister(registry, fd) {
                    // SAFETY: the descriptor this call opened.
                    unsafe { libc::close(fd) };
                }
                Err(e)
            }
        }
    }

    fn lock(&self) -> Result<Locked<'_>, Error> {
        let a = self.me()?;
        lock_segment(self.seg(), a.slot, a.fd, false)
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    fn closed_error(&self) -> Error {
        Self::bump(&self.seg().header.closed_rejections);
        Error::Closed
    }

    fn capacity_error(&self, requested: u64, total: u64) -> Error {
        Self::bump(&self.seg().header.capacity_rejections);
        Error::ExceedsCapacity { requested, total }
    }

    /// Rejects ids this pool never issued, saying what is wrong with them.
    fn check_issued(&self, id: u64, what: &str) -> Result<(), Error> {
        let issued = segment::parse_id(id, self.seg().header.nonce.load(Relaxed))
            .and_then(|p| self.seg().entries.get(p.entry).map(|e| p.gen <= e.gen.load(Relaxed)));
        match issued {
            Some(true) => Ok(()),
            _ if id == 0 => Err(Error::InvalidLease(format!("{what} id 0 means \"none\""))),
            _ => Err(Error::InvalidLease(format!("{what} {id:#x} was not issued by this pool"))),
        }
    }

    /// The entry of `id` if it is this process's; errors name the owner.
    fn own(&self, g: &Locked<'_>, id: u64, what: &str) -> Result<Option<usize>, Error> {
        let Some(i) = g.find(id) else { return Ok(None) };
        let owner = g.entry(i).owner.load(Relaxed) as usize;
        if owner != g.me {
            let pid = self.seg().procs.get(owner).map_or(0, |p| p.pid.load(Relaxed));
            return Err(Error::InvalidLease(format!(
                "{what} {id:#x} belongs to another process (pid {pid}) of the shared pool; only its owner may use it"
            )));
        }
        Ok(Some(i))
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.seg().header.total.load(Relaxed)
    }

    pub(crate) fn available_bytes(&self) -> u64 {
        self.seg().header.available.load(Relaxed).max(0) as u64
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.seg().header.closed.load(Relaxed) != 0
    }

    /// Under the lock: takes `nbytes` at once if the line allows, reaping dead
    /// processes first when they might be what stands in the way.
    fn take_now(g: &mut Locked<'_>, nbytes: u64) -> bool {
        if nbytes != 0 && !g.grantable_now(nbytes) {
            g.maybe_reap();
        }
        nbytes == 0 || g.grantable_now(nbytes)
    }

    fn check_request(&self, g: &Locked<'_>, nbytes: u64) -> Result<(), Error> {
        if nbytes > g.total() {
            return Err(self.capacity_error(nbytes, g.total()));
        }
        if g.closed() {
            return Err(self.closed_error());
        }
        Ok(())
    }

    pub(crate) fn acquire(&self, nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        let mut g = self.lock()?;
        self.check_request(&g, nbytes)?;
        if Self::take_now(&mut g, nbytes) {
            let (_, id) = g.alloc(LEASE, nbytes)?;
            g.take(nbytes);
            return Ok(Lease { id, nbytes });
        }
        let (i, id) = g.join_line(nbytes)?;
        drop(g);
        let nbytes = self.wait_for(i, id, wait, OnTimeout::Leave, |g, i| {
            g.make_lease(i);
            Ok(g.entry(i).nbytes.load(Relaxed))
        })?;
        Ok(Lease { id, nbytes })
    }

    pub(crate) fn try_acquire(&self, nbytes: u64) -> Result<Lease, Error> {
        let mut g = self.lock()?;
        self.check_request(&g, nbytes)?;
        if !Self::take_now(&mut g, nbytes) {
            Self::bump(&self.seg().header.would_blocks);
            return Err(Error::WouldBlock {
                requested: nbytes,
                available: g.available().max(0) as u64,
                queued: g.waiting() > 0,
            });
        }
        let (_, id) = g.alloc(LEASE, nbytes)?;
        g.take(nbytes);
        Ok(Lease { id, nbytes })
    }

    /// `Ok(true)` when a lease was outstanding and is now removed.
    pub(crate) fn release(&self, id: u64) -> Result<bool, Error> {
        self.check_issued(id, "lease")?;
        let mut g = self.lock()?;
        let Some(i) = self.own(&g, id, "lease")? else { return Ok(false) };
        if g.entry(i).state.load(Relaxed) != LEASE {
            return Err(Error::InvalidLease(format!(
                "{id:#x} is a ticket, not a lease: redeem it with wait or leave with cancel"
            )));
        }
        g.free(i);
        Ok(true)
    }

    pub(crate) fn enqueue(&self, nbytes: u64) -> Result<Ticket, Error> {
        let mut g = self.lock()?;
        self.check_request(&g, nbytes)?;
        let id = if Self::take_now(&mut g, nbytes) {
            let (_, id) = g.alloc(GRANTED, nbytes)?;
            g.take(nbytes);
            id
        } else {
            g.join_line(nbytes)?.1
        };
        Ok(Ticket { id })
    }

    pub(crate) fn wait_ticket(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        self.redeem(ticket, wait, OnTimeout::Stay)
    }

    fn redeem(&self, ticket: Ticket, wait: Wait, on_timeout: OnTimeout) -> Result<Lease, Error> {
        self.check_issued(ticket.id, "ticket")?;
        let i = segment::parse_id(ticket.id, self.seg().header.nonce.load(Relaxed)).map_or(0, |p| p.entry);
        let nbytes = self.wait_for(i, ticket.id, wait, on_timeout, |g, i| {
            g.make_lease(i);
            Ok(g.entry(i).nbytes.load(Relaxed))
        })?;
        Ok(Lease { id: ticket.id, nbytes })
    }

    /// Grants at once when possible without jumping the line, else joins it;
    /// counts no refusal (see the local backend's).
    pub(crate) fn acquire_or_enqueue(&self, nbytes: u64) -> Result<Admission, Error> {
        let mut g = self.lock()?;
        self.check_request(&g, nbytes)?;
        if !Self::take_now(&mut g, nbytes) {
            return Ok(Admission::Queued(Ticket { id: g.join_line(nbytes)?.1 }));
        }
        let (_, id) = g.alloc(LEASE, nbytes)?;
        g.take(nbytes);
        Ok(Admission::Granted(Lease { id, nbytes }))
    }

    /// As `wait_ticket`, but a ticket whose time runs out leaves the line and
    /// counts as a timeout.
    pub(crate) fn wait_ticket_or_leave(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        self.redeem(ticket, wait, OnTimeout::Leave)
    }

    pub(crate) fn cancel_ticket(&self, ticket: Ticket) -> Result<(), Error> {
        self.check_issued(ticket.id, "ticket")?;
        let mut g = self.lock()?;
        if let Some(i) = self.own(&g, ticket.id, "ticket")? {
            if g.entry(i).state.load(Relaxed) != LEASE {
                g.free(i);
            }
        }
        Ok(())
    }

    pub(crate) fn resize_lease(&self, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        self.check_issued(id, "lease")?;
        let released = || Error::InvalidLease(format!("lease {id:#x} was already released"));
        let mut g = self.lock()?;
        let i = self.own(&g, id, "lease")?.ok_or_else(released)?;
        let e = g.entry(i);
        if e.state.load(Relaxed) != LEASE {
            return Err(released());
        }
        let old = e.nbytes.load(Relaxed);
        if new_nbytes <= old {
            e.nbytes.store(new_nbytes, Relaxed);
            g.give(old - new_nbytes);
            return Ok(Lease { id, nbytes: new_nbytes });
        }
        if new_nbytes > g.total() {
            return Err(self.capacity_error(new_nbytes, g.total()));
        }
        if g.closed() {
            return Err(self.closed_error());
        }
        let delta = new_nbytes - old;
        if Self::take_now(&mut g, delta) {
            g.take(delta);
            e.nbytes.store(new_nbytes, Relaxed);
            return Ok(Lease { id, nbytes: new_nbytes });
        }
        let (t, tid) = g.join_line(delta)?;
        drop(g);
        let nbytes = self.wait_for(t, tid, wait, OnTimeout::Leave, |g, t| {
            // The grant moves into the lease, if the lease is still there.
            let e = g.entry(i);
            let delta = g.entry(t).nbytes.load(Relaxed);
            if e.id.load(Relaxed) == id && e.state.load(Relaxed) == LEASE {
                let grown = e.nbytes.load(Relaxed).saturating_add(delta);
                e.nbytes.store(grown, Relaxed);
                g.entry(t).state.store(FREE, Relaxed);
                Ok(grown)
            } else {
                g.free(t);
                Err(Error::InvalidLease(format!("lease {id:#x} was released while it grew")))
            }
        })?;
        Ok(Lease { id, nbytes })
    }

    pub(crate) fn set_total(&self, new_total: u64) -> Result<(), Error> {
        check_total(new_total)?;
        let mut g = self.lock()?;
        let h = &self.seg().header;
        let old = h.total.swap(new_total, Relaxed);
        g.add_available(i128::from(new_total) - i128::from(old));
        let failed = g.fail_where(FAILED_CAPACITY, |n| n > new_total);
        h.capacity_rejections.fetch_add(failed, Relaxed);
        g.grant_ready();
        Ok(())
    }

    pub(crate) fn close(&self) {
        // Closing cannot report failure; a pool this process cannot lock
        // (only after a failed re-attach in a forked child) stays as it is.
        let Ok(mut g) = self.lock() else { return };
        let h = &self.seg().header;
        h.closed.store(1, Relaxed);
        let failed = g.fail_where(FAILED_CLOSED, |_| true);
        h.closed_rejections.fetch_add(failed, Relaxed);
    }

    /// The pool's figures. Dead processes are reaped first (at most once per
    /// half reclaim slice), so an observer sees their bytes back.
    pub(crate) fn stats(&self) -> Stats {
        let h = &self.seg().header;
        let mut g = self.lock();
        if let Ok(g) = g.as_mut() {
            g.maybe_reap();
        }
        let total = h.total.load(Relaxed);
        let available = h.available.load(Relaxed);
        Stats {
            total_bytes: total,
            available_bytes: available.max(0) as u64,
            in_use_bytes: (i128::from(total) - i128::from(available)).clamp(0, i128::from(u64::MAX)) as u64,
            peak_in_use_bytes: h.peak.load(Relaxed),
            outstanding_leases: h.leases.load(Relaxed),
            waiters: h.waiting.load(Relaxed),
            grants: h.grants.load(Relaxed),
            waited_grants: h.waited_grants.load(Relaxed),
            timeouts: h.timeouts.load(Relaxed),
            would_blocks: h.would_blocks.load(Relaxed),
            capacity_rejections: h.capacity_rejections.load(Relaxed),
            closed_rejections: h.closed_rejections.load(Relaxed),
            wait_ns_total: h.wait_ns_total.load(Relaxed),
            wait_ns_max: h.wait_ns_max.load(Relaxed),
            ..Stats::default()
        }
    }

    pub(crate) fn leased_bytes(&self) -> u64 {
        let _g = self.lock();
        self.seg()
            .entries
            .iter()
            .filter(|e| e.state.load(Relaxed) == LEASE)
            .map(|e| e.nbytes.load(Relaxed))
            .fold(0u64, u64::saturating_add)
    }

    pub(crate) fn lease(&self, id: u64) -> Option<Lease> {
        let g = self.lock().ok()?;
        let i = g.find(id)?;
        let e = g.entry(i);
        (e.state.load(Relaxed) == LEASE).then(|| Lease { id, nbytes: e.nbytes.load(Relaxed) })
    }

    /// Figures and the table of attached processes (dead ones are reaped first).
    pub fn snapshot(&self) -> Result<SharedSnapshot, Error> {
        let stats = self.stats();
        let mut g = self.lock()?;
        g.reap_dead();
        let seg = self.seg();
        let mut procs: Vec<ProcInfo> = (0..MAX_PROCS)
            .filter(|&s| seg.procs[s].state.load(Relaxed) == PROC_ATTACHED)
            .map(|s| ProcInfo {
                slot: s,
                pid: seg.procs[s].pid.load(Relaxed),
                leases: 0,
                bytes_held: 0,
                waiting: 0,
                is_self: s == g.me,
            })
            .collect();
        for e in &seg.entries {
            let state = e.state.load(Relaxed);
            let Some(p) = procs.iter_mut().find(|p| p.slot == e.owner.load(Relaxed) as usize) else { continue };
            match state {
                LEASE => {
                    p.leases += 1;
                    p.bytes_held = p.bytes_held.saturating_add(e.nbytes.load(Relaxed));
                }
                WAITING => p.waiting += 1,
                _ => {}
            }
        }
        let h = &seg.header;
        Ok(SharedSnapshot {
            name: self.name.clone(),
            path: path_of(&self.name),
            closed: g.closed(),
            stats: Stats { waiters: g.waiting(), ..stats },
            procs,
            lock_recoveries: u64::from(h.lock_recoveries.load(Relaxed)),
            reaped_procs: h.reaped_procs.load(Relaxed),
        })
    }

    /// Waits for a ticket's fate and collects it with `collect` (under the
    /// lock): its granted bytes, or why not. Sleeps on the ticket's futex word
    /// in slices of `RECLAIM_INTERVAL`, after each of which it looks for dead
    /// processes whose holdings would let the line move.
    fn wait_for(
        &self,
        i: usize,
        id: u64,
        wait: Wait,
        on_timeout: OnTimeout,
        collect: impl FnOnce(&mut Locked<'_>, usize) -> Result<u64, Error>,
    ) -> Result<u64, Error> {
        let deadline = wait.deadline();
        let mut slept_out = false;
        loop {
            let mut g = self.lock()?;
            if slept_out {
                g.maybe_reap();
            }
            let Some(i) = self.own(&g, id, "ticket")?.filter(|&k| k == i) else {
                return Err(Error::InvalidLease(format!("ticket {id:#x} was already redeemed or cancelled")));
            };
            let e = g.entry(i);
            let nbytes = e.nbytes.load(Relaxed);
            match e.state.load(Relaxed) {
                GRANTED => return collect(&mut g, i),
                FAILED_CLOSED => {
                    g.free(i);
                    return Err(Error::Closed);
                }
                FAILED_CAPACITY => {
                    g.free(i);
                    return Err(Error::ExceedsCapacity { requested: nbytes, total: g.total() });
                }
                WAITING => {}
                _ => return Err(Error::InvalidLease(format!("ticket {id:#x} was already redeemed"))),
            }
            let now = Instant::now();
            if deadline.is_some_and(|at| now >= at) {
                if on_timeout == OnTimeout::Leave {
                    g.free(i);
                    Self::bump(&self.seg().header.timeouts);
                }
                return Err(Error::Timeout { requested: nbytes });
            }
            let seen = e.futex.load(Ordering::Acquire);
            drop(g);
            let slice = deadline.map_or(RECLAIM_INTERVAL, |at| (at - now).min(RECLAIM_INTERVAL));
            slept_out = futex::wait(&e.futex, seen, slice);
        }
    }

    // ---- for tests and operator tools --------------------------------------

    /// The byte of a segment's file that a creator locks while it builds the
    /// segment (for tests that play a creator).
    #[doc(hidden)]
    pub fn debug_init_lock_offset() -> i64 {
        liveness::INIT_LOCK
    }

    /// Whether a thread of some process sleeps waiting for the segment's lock.
    #[doc(hidden)]
    pub fn debug_lock_contended(&self) -> bool {
        lock::is_contended(&self.seg().header.lock)
    }

    /// Takes the lock, takes `nbytes` from the available bytes without
    /// recording them anywhere (as an acquire interrupted half-way would),
    /// and stops this process with SIGSTOP, inside the lock. For tests of
    /// recovery from a process killed there; if the process is continued
    /// instead, it undoes the change and unlocks.
    #[doc(hidden)]
    pub fn debug_stop_inside_lock(&self, nbytes: u64) -> Result<(), Error> {
        let mut g = self.lock()?;
        g.take(nbytes);
        // SAFETY: raise(3) with a valid signal number.
        unsafe { libc::raise(libc::SIGSTOP) };
        g.give(nbytes);
        Ok(())
    }
}

impl Drop for SharedPool {
    fn drop(&mut self) {
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.slot as u64 == NO_SLOT || a.generation != generation() {
            return; // never attached, or an ancestor's attachment (closed at fork)
        }
        if let Ok(mut g) = lock_segment(self.seg(), a.slot, a.fd, false) {
            g.release_owner(a.slot);
            self.seg().procs[a.slot].state.store(PROC_FREE, Relaxed);
        }
        if liveness::unregister(a.registry, a.fd) {
            // SAFETY: this attachment's descriptor, used by nothing else now;
            // closing it drops its byte locks.
            unsafe { libc::close(a.fd) };
        }
    }
}
