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
//! * Hand-offs: a lease shared with consumers in any process lives in a
//!   record of the segment's hand-off region (`handoffs.rs`, the calls in
//!   `handoff_calls.rs`), owned by no process: the producer's death leaves
//!   it, a claimant's death completes the parts it claimed.
//!
//! * Damage: a segment file truncated under the mappings would end every
//!   attached process with SIGBUS; `sigbus.rs` turns such a fault into a
//!   handle that refuses every call (`SharedPool::intact`). A lock word that
//!   no thread holds is taken over (`lock.rs`); calls with a deadline keep it
//!   also while waiting for the lock.
//!
//! Limits (`Limits`), chosen by the creator and recorded in the header:
//! attached processes, outstanding leases plus tickets, requests waiting at
//! once; past them a request fails with `Error::System` naming the limit.

mod doorbell;
mod fast;
mod figures;
mod file;
mod futex;
mod handoff_calls;
mod handoffs;
mod inside;
mod liveness;
mod lock;
mod placed;
#[doc(hidden)]
pub mod placement;
mod segment;
mod sigbus;
mod split;
mod table;

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use file::{path_of, unlink, validate_name};
pub use handoffs::SharedHandoff;

use super::bottleneck::{Loud, Scene};
use super::error::Error;
use super::histogram::Histograms;
use super::lease::{Admission, Lease, Ticket};
use super::local::{check_total, Wait};
use super::reservations::{HeldReservation, Reservation};
use super::stats::Stats;
use crate::log::{self, Level};
use file::Mapping;
use liveness::PROC_LOCK_BASE;
use inside::Inside;
use lock::{Acquired, Until};
use segment::*;

use table::Locked;

/// The sizes of a shared pool's tables, chosen when it is created and fixed
/// for its life. In a request, 0 means the default when creating and
/// whatever the pool has when attaching; any other value must equal the
/// pool's, or the open fails naming both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Processes attached at once (1 to 254; default 128).
    pub max_processes: u32,
    /// Outstanding leases plus tickets, over all processes (1 to 65536;
    /// default 4096).
    pub max_leases: u32,
    /// Requests waiting in line at once (1 to `max_leases`; default 1024, or
    /// `max_leases` if that is smaller).
    pub max_waiters: u32,
    /// Hand-offs outstanding at once (1 to 4096; default 256).
    pub max_handoffs: u32,
}

impl Limits {
    /// What a pool gets when its creator chooses nothing.
    pub const DEFAULT: Limits = Limits {
        max_processes: DEFAULT_PROCS,
        max_leases: DEFAULT_ENTRIES,
        max_waiters: DEFAULT_WAITERS,
        max_handoffs: DEFAULT_HANDOFFS,
    };

    /// The layout a creator asking for these makes (0s become defaults).
    fn layout(self) -> Result<Layout, Error> {
        let pick = |v: u32, default: u32| if v == 0 { default } else { v };
        let procs = pick(self.max_processes, DEFAULT_PROCS);
        let entries = pick(self.max_leases, DEFAULT_ENTRIES);
        let waiters = pick(self.max_waiters, DEFAULT_WAITERS.min(entries));
        let handoffs = pick(self.max_handoffs, DEFAULT_HANDOFFS);
        Layout::new(procs, entries, waiters, handoffs).map_err(|why| Error::InvalidArgument(format!("shared pool limits: {why}")))
    }

    fn of(layout: &Layout) -> Limits {
        Limits {
            max_processes: layout.procs as u32,
            max_leases: layout.entries as u32,
            max_waiters: layout.waiters as u32,
            max_handoffs: layout.handoffs as u32,
        }
    }

    /// Refuses an attach whose requested limits differ from the pool's.
    fn check_against(self, name: &str, has: Limits) -> Result<(), Error> {
        let pairs = [
            ("max_processes", self.max_processes, has.max_processes),
            ("max_leases", self.max_leases, has.max_leases),
            ("max_waiters", self.max_waiters, has.max_waiters),
            ("max_handoffs", self.max_handoffs, has.max_handoffs),
        ];
        for (what, asked, existing) in pairs {
            if asked != 0 && asked != existing {
                return Err(Error::InvalidArgument(format!(
                    "shared pool {name:?} has {what} {existing}, but {asked} was asked for (limits are chosen \
                     when a pool is created; pass 0 to accept the existing one)"
                )));
            }
        }
        Ok(())
    }
}

impl Limits {
    /// Environment variables that set the limits of the global pool
    /// (`MMPOOL_SHARED_NAME`): unset or 0 means as `Limits` says for 0.
    pub const ENV: [&'static str; 4] = [
        "MMPOOL_SHARED_MAX_PROCESSES",
        "MMPOOL_SHARED_MAX_LEASES",
        "MMPOOL_SHARED_MAX_WAITERS",
        "MMPOOL_SHARED_MAX_HANDOFFS",
    ];

    /// The limits the environment asks for; an unparsable value is named.
    pub fn from_env() -> Result<Limits, Error> {
        let mut v = [0u32; 4];
        for (slot, key) in v.iter_mut().zip(Self::ENV) {
            if let Ok(text) = std::env::var(key) {
                *slot = text.trim().parse().map_err(|e| Error::InvalidArgument(format!("{key}={text:?}: {e}")))?;
            }
        }
        Ok(Limits { max_processes: v[0], max_leases: v[1], max_waiters: v[2], max_handoffs: v[3] })
    }
}

/// Everything an open of a shared pool can ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedOptions {
    /// The budget; 0 accepts an existing pool's (and cannot create).
    pub total_bytes: u64,
    pub flags: OpenFlags,
    pub limits: Limits,
    /// A placed pool's alignment (a power of two; see `Pool::new_placed`):
    /// creates a placed pool, and attaching needs the pool to be placed with
    /// it. 0: a pool that is not placed when creating, either when attaching.
    pub alignment: u64,
}

/// Who holds the pool's lock, when a snapshot could not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The process slot the lock word names (it may be out of the table).
    pub slot: usize,
    /// That slot's pid, 0 if none is recorded there.
    pub pid: u32,
    /// Whether that slot's process lives.
    pub alive: bool,
    /// How long the word has named it unchanged, as far as waiters saw.
    pub held_for: Duration,
}

/// The longest a holder may keep the lock before the waiters say so in the
/// log (once per holding) and `mmpool status` shows it.
pub const LOCK_HELD_REPORT: Duration = Duration::from_secs(1);

/// How long `try_acquire` and `acquire_or_enqueue` (which have no deadline
/// of their own), a snapshot and a detaching handle wait for the pool's lock
/// while one holder keeps it (the lock changing hands starts it over).
const SHORT_LOCK_WAIT: Duration = Duration::from_millis(100);
const PATIENT: Until = Until::Unchanged(SHORT_LOCK_WAIT);

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
    /// Bytes it holds outside any lease, by label.
    pub reservations: Vec<Reservation>,
}

/// A shared pool's figures and its attached processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSnapshot {
    pub name: String,
    pub path: String,
    pub closed: bool,
    pub stats: Stats,
    /// The pool's histograms (every process's, merged).
    pub histograms: Histograms,
    pub procs: Vec<ProcInfo>,
    /// Times a process took the lock over from one that died inside it.
    pub lock_recoveries: u64,
    /// Dead processes whose holdings were taken back.
    pub reaped_procs: u64,
    /// The limits chosen at creation.
    pub limits: Limits,
    /// Set when the lock could not be taken for the snapshot (the figures
    /// were then read without it).
    pub lock_holder: Option<LockHolder>,
    /// Outstanding hand-offs, oldest first.
    pub handoffs: Vec<SharedHandoff>,
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
    /// Threads of this attachment inside the lock (see `lock.rs`).
    inside: Inside,
    /// Tickets whose wait ran out while the lock could not be taken: freed
    /// by this process the next time it holds the lock.
    abandoned: parking_lot::Mutex<Vec<u64>>,
    /// Tickets of `acquire_or_enqueue` not yet in line (see `defer`): by id,
    /// their bytes and the ticket in line once they joined it.
    deferred: parking_lot::Mutex<std::collections::HashMap<u64, (u64, Option<u64>)>>,
    /// Whether `abandoned` may hold any (checked before locking it).
    any_abandoned: AtomicBool,
    /// Whether the damage was logged.
    damage_logged: AtomicBool,
    /// Whether a replaced or removed file was logged.
    moved_logged: AtomicBool,
    /// The rate limit of this handle's lines on slow waits.
    loud: Loud,
    /// Tickets registered with notifiers, and the thread that relays their
    /// decisions (`doorbell.rs`).
    relay: doorbell::Relay,
    /// Hand-offs watched by notifiers of this process (the relay posts
    /// their events).
    handoff_watches: handoff_calls::Watches,
}

fn generation() -> u16 {
    liveness::fork_generation() as u16
}

/// Takes the segment's lock for `me` by `deadline`, repairing the segment
/// if it was taken over from a holder that is gone. A waiter also looks at
/// the file after each slice: if it shrank, the mapping is damaged (zero
/// pages, see `sigbus.rs`) and the wait ends at once.
#[inline]
fn lock_segment<'a>(
    map: &'a Mapping,
    me: usize,
    fd: RawFd,
    inside: &'a Inside,
    until: Until,
) -> Result<Locked<'a>, lock::TimedOut> {
    let seg = map.segment();
    let (how, mark) = lock::lock(&seg.header.lock, me, inside, until, |slot, word| {
        if file::shrunk(fd, map.len()) {
            map.damage();
            return true;
        }
        let dead = table::slot_is_dead(seg, fd, slot);
        if !dead {
            note_held(seg, slot, word);
        }
        dead
    })?;
    let mut g = Locked::new(seg, me, fd, (inside, mark));
    if let Acquired::TakenOver(holder) = how {
        repair_after_takeover(&mut g, holder);
    }
    Ok(g)
}

/// After the lock was taken over from `holder`: count it, say it, repair.
#[cold]
fn repair_after_takeover(g: &mut Locked<'_>, holder: usize) {
    let (seg, me) = (g.seg, g.me);
    {
        seg.header.lock_recoveries.fetch_add(1, Relaxed);
        log::log(
            Level::Warn,
            if holder == me {
                "shared pool: the lock word named this process, which did not hold it (a corrupt word or a \
                 predecessor's); took it over and repaired the pool from its lease table"
            } else {
                "shared pool: took the lock over from a process that died holding it; repairing"
            },
        );
        // A total out of range leaves the segment as it is; the calls then
        // refuse it one by one.
        let _ = g.repair();
        g.reap_dead();
    }
}

/// A waiter saw `word` name the live process in `slot` for a whole slice:
/// records since when (for `mmpool status`), and says in the log, once per
/// holding, when that passes `LOCK_HELD_REPORT`.
fn note_held(seg: &Segment<'_>, slot: usize, word: u32) {
    let h = seg.header;
    let now = futex::now_ns();
    if h.lock_seen_word.load(Acquire) != word {
        h.lock_seen_ns.store(now.saturating_sub(lock::RECLAIM_SLICE.as_nanos() as u64), Relaxed);
        h.lock_seen_word.store(word, Release);
        return;
    }
    let held = Duration::from_nanos(now.saturating_sub(h.lock_seen_ns.load(Relaxed)));
    if held >= LOCK_HELD_REPORT && h.lock_reported_word.swap(word, Relaxed) != word {
        let pid = seg.procs.get(slot).map_or(0, |p| p.pid.load(Relaxed));
        log::log(
            Level::Warn,
            &format!(
                "shared pool: the lock has been held for {:.1} s by pid {pid} (slot {slot}), which is alive; calls \
                 with a timeout time out, calls without one wait for it (`mmpool status` shows the holder)",
                held.as_secs_f64()
            ),
        );
    }
}

/// Who the lock word names now, seen without the lock.
fn lock_holder(seg: &Segment<'_>, fd: RawFd) -> Option<LockHolder> {
    let word = seg.header.lock.load(Relaxed);
    let slot = lock::holder(word)?;
    let h = seg.header;
    let since = if h.lock_seen_word.load(Acquire) == word { h.lock_seen_ns.load(Relaxed) } else { futex::now_ns() };
    Some(LockHolder {
        slot,
        pid: seg.procs.get(slot).map_or(0, |p| p.pid.load(Relaxed)),
        alive: !table::slot_is_dead(seg, fd, slot),
        held_for: Duration::from_nanos(futex::now_ns().saturating_sub(since)),
    })
}

/// Registers this process in a slot of the segment; returns the slot.
fn attach(pool: &SharedPool, fd: RawFd, opts: &SharedOptions, created: bool) -> Result<usize, Error> {
    attach_by(pool, fd, opts, created, Until::Forever)
}

/// `attach`, giving up (`Error::Timeout`) if the lock stays taken past `deadline`.
fn attach_by(
    pool: &SharedPool,
    fd: RawFd,
    opts: &SharedOptions,
    created: bool,
    until: Until,
) -> Result<usize, Error> {
    let (seg, name, flags) = (pool.seg(), pool.name.as_str(), opts.flags);
    let map = &pool.map;
    let has = Limits::of(&pool.map.layout());
    opts.limits.check_against(name, has)?;
    let alignment = placed::alignment_of(seg);
    if opts.alignment != 0 && opts.alignment != alignment {
        return Err(Error::InvalidArgument(format!(
            "shared pool {name:?} is {}, but a placed pool with alignment {} was asked for",
            if alignment == 0 { "not placed".to_string() } else { format!("placed with alignment {alignment}") },
            opts.alignment
        )));
    }
    let mut slot = None;
    for s in 0..seg.procs.len() {
        let claimed = liveness::try_lock(fd, PROC_LOCK_BASE + s as i64)
            .map_err(|e| Error::System(format!("lock a process slot of {}: {e}", path_of(name))))?;
        if claimed {
            slot = Some(s);
            break;
        }
    }
    let Some(me) = slot else {
        return Err(Error::System(format!(
            "all {} process slots of shared pool {name:?} are taken (its limit max_processes, chosen at creation)",
            seg.procs.len()
        )));
    };
    // A fresh slot: no thread of this attachment is inside the lock.
    pool.inside.clear();
    let registered = (|| {
        let mut g =
            lock_segment(map, me, fd, &pool.inside, until).map_err(|_| Error::Timeout { requested: 0 })?;
        pool.check_file(fd);
        pool.intact()?;
        g.repair()?;
        // Whatever the slot still records is a dead predecessor's: this
        // process holds the slot's byte lock now.
        g.release_owner(me);
        g.reap_dead();
        let others =
            (0..seg.procs.len()).filter(|&s| s != me && seg.procs[s].state.load(Relaxed) == PROC_ATTACHED).count();
        let existing = g.total();
        let total = opts.total_bytes;
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
        doorbell::reset(seg, me);
        p.state.store(PROC_ATTACHED, Relaxed);
        Ok(me)
    })();
    if registered.is_err() {
        liveness::unlock(fd, PROC_LOCK_BASE + me as i64);
    }
    pool.intact()?;
    registered
}

/// Starts an abandoned pool over: no process is attached, so nothing it
/// records is held by anyone, except the outstanding hand-offs, whose tokens
/// may still be on their way to consumers: they and their bytes stay.
fn reset_abandoned(g: &mut Locked<'_>, total: u64) {
    let h = g.seg.header;
    for e in g.seg.entries {
        e.state.store(FREE, Relaxed);
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
    figures::reset(g.seg);
    h.available.store(total as i64 - handoffs::reset(g.seg) as i64, Relaxed);
    // No entry holds a range; the hand-offs kept keep theirs.
    g.rebuild_placement();
}

impl SharedPool {
    /// Creates or attaches to the pool `name`. `total` 0 accepts the existing
    /// pool's total; otherwise it must equal it (or creates with it).
    pub fn open(name: &str, total: u64, flags: OpenFlags) -> Result<SharedPool, Error> {
        Self::open_with(name, &SharedOptions { total_bytes: total, flags, limits: Limits::default(), alignment: 0 })
    }

    /// Creates or attaches to the pool `name` as `opts` says.
    pub fn open_with(name: &str, opts: &SharedOptions) -> Result<SharedPool, Error> {
        let (pool, fd, registry, created) = Self::map(name, opts)?;
        let unregistered = |e: Error| {
            if liveness::unregister(registry, fd) {
                // SAFETY: the descriptor this call opened and nothing else uses.
                unsafe { libc::close(fd) };
            }
            e
        };
        let slot = attach(&pool, fd, opts, created).map_err(unregistered)?;
        pool.attachment.store(Attachment { slot, registry, fd, generation: generation() }.pack(), Release);
        Ok(pool)
    }

    /// Opens (or creates) and maps the segment, not yet attached: the pool,
    /// its descriptor (registered for fork at the index given) and whether
    /// this call created it.
    fn map(name: &str, opts: &SharedOptions) -> Result<(SharedPool, RawFd, usize, bool), Error> {
        validate_name(name)?;
        if opts.total_bytes != 0 {
            check_total(opts.total_bytes)?;
        }
        if opts.alignment != 0 {
            super::local::check_alignment(opts.alignment)?;
        }
        let layout = opts.limits.layout()?;
        let layout = if opts.alignment != 0 { layout.placed() } else { layout };
        let making = file::Making { total: opts.total_bytes, flags: opts.flags, layout, alignment: opts.alignment };
        let (opened, created) = file::open(name, making)?;
        let file::Opened { fd, map, identity } = opened;
        let registry = liveness::register(fd.as_raw_fd()).map_err(Error::System)?;
        let fd = fd.into_raw_fd();
        let pool = SharedPool {
            name: name.to_string(),
            map,
            identity,
            attachment: AtomicU64::new(NO_SLOT),
            reattach: parking_lot::Mutex::new(()),
            inside: Inside::new(),
            abandoned: parking_lot::Mutex::new(Vec::new()),
            any_abandoned: AtomicBool::new(false),
            deferred: parking_lot::Mutex::new(std::collections::HashMap::new()),
            damage_logged: AtomicBool::new(false),
            moved_logged: AtomicBool::new(false),
            loud: Loud::default(),
            relay: doorbell::Relay::default(),
            handoff_watches: handoff_calls::Watches::default(),
        };
        Ok((pool, fd, registry, created))
    }

    /// The limits the pool was created with.
    pub fn limits(&self) -> Limits {
        Limits::of(&self.map.layout())
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn seg(&self) -> &Segment<'_> {
        self.map.segment()
    }

    /// `Ok` unless the segment was found damaged: its file shrank under the
    /// mapping (a fault there, see `sigbus.rs`, or `check_file`). Then the
    /// mapping reads zeros, and every call fails with this error.
    #[inline(always)]
    /// `stats`, failing when the segment was damaged before or while they
    /// were read (a damaged mapping reads as zeros).
    pub(crate) fn checked_stats(&self) -> Result<Stats, Error> {
        self.intact()?;
        let stats = self.stats();
        self.intact()?;
        Ok(stats)
    }

    fn intact(&self) -> Result<(), Error> {
        if self.map.is_damaged() {
            return Err(self.damage_error());
        }
        Ok(())
    }

    #[cold]
    fn damage_error(&self) -> Error {
        let path = path_of(&self.name);
        let msg = format!(
            "shared pool {:?}: its file {path} was truncated while this process was attached, so the pool \
             is gone for this handle (its leases and tickets with it; releasing them does nothing); remove the \
             file with `mmpool unlink {}` and open the pool again",
            self.name, self.name
        );
        if !self.damage_logged.swap(true, Relaxed) {
            log::log(Level::Error, &msg);
        }
        Error::System(msg)
    }

    /// The cheap detector, on slow paths: a file shorter than the mapping is
    /// damage (found before an access faults); a name that now refers to
    /// another file, or none, is said in the log once (this handle keeps the
    /// segment it has, which is whole).
    fn check_file(&self, fd: RawFd) {
        let path = path_of(&self.name);
        if file::shrunk(fd, self.map.len()) {
            self.map.damage();
            return;
        }
        if file::identity_of_path(&path) != Some(self.identity) && !self.moved_logged.swap(true, Relaxed) {
            log::log(
                Level::Warn,
                &format!(
                    "shared pool {:?}: {path} was removed or replaced by another file; this process keeps the \
                     pool it attached to, which processes opening the name now do not share",
                    self.name
                ),
            );
        }
    }

    /// This process's attachment; in a child after fork, a fresh one.
    #[inline(always)]
    fn me(&self) -> Result<Attachment, Error> {
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.generation == generation() && a.slot as u64 != NO_SLOT {
            return Ok(a);
        }
        self.attach_afresh()
    }

    #[cold]
    fn attach_afresh(&self) -> Result<Attachment, Error> {
        let _one = self.reattach.lock();
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.generation == generation() && a.slot as u64 != NO_SLOT {
            return Ok(a);
        }
        // The attachment is an ancestor's; its descriptor was closed at fork.
        let fd = file::reopen(&self.name, self.identity)?;
        let registry = liveness::register(fd.as_raw_fd()).map_err(Error::System)?;
        let fd = fd.into_raw_fd();
        match attach(self, fd, &SharedOptions::default(), false) {
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

    #[inline]
    fn lock(&self) -> Result<Locked<'_>, Error> {
        self.lock_by(Until::Forever, 0)
    }

    /// Takes the lock by `deadline` (a request for `requested` bytes times
    /// out at it), first freeing the tickets this process abandoned.
    #[inline(always)]
    fn lock_by(&self, until: Until, requested: u64) -> Result<Locked<'_>, Error> {
        let a = self.me()?;
        let Ok(mut g) = lock_segment(&self.map, a.slot, a.fd, &self.inside, until) else {
            return Err(Error::Timeout { requested });
        };
        if self.any_abandoned.load(Relaxed) {
            self.free_abandoned(&mut g);
        }
        handoffs::expire_due(&mut g);
        self.intact()?;
        Ok(g)
    }

    /// `lock_by` for a request that leaves the line when its time runs out:
    /// running out while still waiting for the lock is its timeout too, and
    /// counts as one, as it does in line.
    fn lock_or_leave(&self, until: Until, requested: u64) -> Result<Locked<'_>, Error> {
        let locked = self.lock_by(until, requested);
        if let Err(Error::Timeout { .. }) = locked {
            Self::bump(&self.seg().header.timeouts);
        }
        locked
    }

    /// Frees the tickets this process abandoned (see `abandoned`).
    #[cold]
    fn free_abandoned(&self, g: &mut Locked<'_>) {
        {
            let mut ids = self.abandoned.lock();
            self.any_abandoned.store(false, Relaxed);
            for id in ids.drain(..) {
                if let Some(i) = g.find(id).filter(|&i| g.entry(i).owner.load(Relaxed) as usize == g.me) {
                    if g.entry(i).state.load(Relaxed) != LEASE {
                        self.relay.ended(g, id);
                        g.free(i);
                    }
                }
            }
        }
    }

    /// A call's result, unless the segment was found damaged meanwhile.
    #[inline(always)]
    fn after<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        self.intact()?;
        r
    }

    /// `check_file` with this process's descriptor, if attached.
    fn check_file_now(&self) {
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.slot as u64 != NO_SLOT && a.generation == generation() {
            self.check_file(a.fd);
        }
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
        self.after(self.acquire_in(nbytes, wait))
    }

    fn acquire_in(&self, nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        let mut g = self.lock_or_leave(Until::from_deadline(wait.deadline()), nbytes)?;
        self.check_request(&g, nbytes)?;
        if Self::take_now(&mut g, nbytes) {
            let (i, id) = g.alloc(LEASE, nbytes)?;
            g.take_placed(i, nbytes)?;
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
        self.after(self.try_acquire_in(nbytes))
    }

    fn try_acquire_in(&self, nbytes: u64) -> Result<Lease, Error> {
        let mut g = self.lock_by(PATIENT, nbytes)?;
        self.check_request(&g, nbytes)?;
        if !Self::take_now(&mut g, nbytes) {
            Self::bump(&self.seg().header.would_blocks);
            return Err(Error::WouldBlock {
                requested: nbytes,
                available: g.available().max(0) as u64,
                queued: g.waiting() > 0,
            });
        }
        let (i, id) = g.alloc(LEASE, nbytes)?;
        g.take_placed(i, nbytes)?;
        Ok(Lease { id, nbytes })
    }

    /// `Ok(true)` when a lease was outstanding and is now removed.
    pub(crate) fn release(&self, id: u64) -> Result<bool, Error> {
        self.after(self.release_in(id))
    }

    fn release_in(&self, id: u64) -> Result<bool, Error> {
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
        self.after(self.enqueue_in(nbytes))
    }

    fn enqueue_in(&self, nbytes: u64) -> Result<Ticket, Error> {
        let mut g = self.lock()?;
        self.check_request(&g, nbytes)?;
        let id = if Self::take_now(&mut g, nbytes) {
            let (i, id) = g.alloc(GRANTED, nbytes)?;
            g.take_placed(i, nbytes)?;
            id
        } else {
            g.join_line(nbytes)?.1
        };
        Ok(Ticket { id })
    }

    pub(crate) fn wait_ticket(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        self.after(self.redeem(ticket, wait, OnTimeout::Stay))
    }

    /// Redeems a ticket; a deferred one (see `deferred`) first joins the
    /// line, by the same deadline, and is forgotten once it has an outcome.
    fn redeem(&self, ticket: Ticket, wait: Wait, on_timeout: OnTimeout) -> Result<Lease, Error> {
        if !segment::is_deferred_id(ticket.id, self.seg().header.nonce.load(Relaxed)) {
            return self.redeem_in_line(ticket, wait, on_timeout);
        }
        let outcome = self.enqueue_deferred(ticket.id, wait.deadline(), on_timeout).and_then(|real| self.redeem_in_line(real, wait, on_timeout));
        if on_timeout == OnTimeout::Leave || !matches!(outcome, Err(Error::Timeout { .. })) {
            self.deferred.lock().remove(&ticket.id);
        }
        outcome
    }

    /// The ticket in line for a deferred one, joining the line now if the
    /// lock can be taken by `deadline`.
    fn enqueue_deferred(&self, id: u64, deadline: Option<Instant>, on_timeout: OnTimeout) -> Result<Ticket, Error> {
        let forgotten = || Error::InvalidLease(format!("ticket {id:#x} was already redeemed or cancelled"));
        let (nbytes, real) = *self.deferred.lock().get(&id).ok_or_else(forgotten)?;
        if let Some(real) = real {
            return Ok(Ticket { id: real });
        }
        let until = Until::from_deadline(deadline);
        let mut g = match on_timeout {
            OnTimeout::Leave => self.lock_or_leave(until, nbytes)?,
            OnTimeout::Stay => self.lock_by(until, nbytes)?,
        };
        self.check_request(&g, nbytes)?;
        let real = if Self::take_now(&mut g, nbytes) {
            let (i, real) = g.alloc(GRANTED, nbytes)?;
            g.take_placed(i, nbytes)?;
            real
        } else {
            g.join_line(nbytes)?.1
        };
        drop(g);
        match self.deferred.lock().get_mut(&id) {
            Some(entry) => entry.1 = Some(real),
            None => return Err(forgotten()),
        }
        Ok(Ticket { id: real })
    }

    /// A place "in line" for a request that could not take the pool's lock
    /// within `SHORT_LOCK_WAIT`: a ticket of this process only, which joins
    /// the line when it is first waited on and the lock can be taken.
    fn defer(&self, nbytes: u64) -> Ticket {
        let nonce = self.seg().header.nonce.load(Relaxed);
        let mut map = self.deferred.lock();
        let mut k = map.len() as u64;
        let id = loop {
            let id = segment::make_deferred_id(nonce, k);
            if !map.contains_key(&id) {
                break id;
            }
            k += 1;
        };
        map.insert(id, (nbytes, None));
        Ticket { id }
    }

    fn redeem_in_line(&self, ticket: Ticket, wait: Wait, on_timeout: OnTimeout) -> Result<Lease, Error> {
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
        self.after(self.acquire_or_enqueue_in(nbytes))
    }

    fn acquire_or_enqueue_in(&self, nbytes: u64) -> Result<Admission, Error> {
        // It has no deadline of its own; its caller waits next, in slices,
        // with one: a lock that stays taken defers the joining to those waits.
        let mut g = match self.lock_by(PATIENT, nbytes) {
            Err(Error::Timeout { .. }) => return Ok(Admission::Queued(self.defer(nbytes))),
            locked => locked?,
        };
        self.check_request(&g, nbytes)?;
        if !Self::take_now(&mut g, nbytes) {
            return Ok(Admission::Queued(Ticket { id: g.join_line(nbytes)?.1 }));
        }
        let (i, id) = g.alloc(LEASE, nbytes)?;
        g.take_placed(i, nbytes)?;
        Ok(Admission::Granted(Lease { id, nbytes }))
    }

    /// As `wait_ticket`, but a ticket whose time runs out leaves the line and
    /// counts as a timeout.
    pub(crate) fn wait_ticket_or_leave(&self, ticket: Ticket, wait: Wait) -> Result<Lease, Error> {
        self.after(self.redeem(ticket, wait, OnTimeout::Leave))
    }

    pub(crate) fn cancel_ticket(&self, ticket: Ticket) -> Result<(), Error> {
        self.after(self.cancel_ticket_in(ticket))
    }

    fn cancel_ticket_in(&self, ticket: Ticket) -> Result<(), Error> {
        let ticket = if segment::is_deferred_id(ticket.id, self.seg().header.nonce.load(Relaxed)) {
            match self.deferred.lock().remove(&ticket.id) {
                Some((_, Some(real))) => Ticket { id: real },
                _ => return Ok(()), // never in line, or finished: nothing to give back
            }
        } else {
            ticket
        };
        self.check_issued(ticket.id, "ticket")?;
        let mut g = self.lock()?;
        if let Some(i) = self.own(&g, ticket.id, "ticket")? {
            if g.entry(i).state.load(Relaxed) != LEASE {
                self.relay.ended(&mut g, ticket.id);
                g.free(i);
            }
        }
        Ok(())
    }

    pub(crate) fn resize_lease(&self, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        self.after(self.resize_lease_in(id, new_nbytes, wait))
    }

    fn resize_lease_in(&self, id: u64, new_nbytes: u64, wait: Wait) -> Result<Lease, Error> {
        self.check_issued(id, "lease")?;
        let mut g = self.lock_or_leave(Until::from_deadline(wait.deadline()), new_nbytes)?;
        let i = self.own_lease(&g, id)?;
        if g.is_placed() {
            return self.resize_placed(&mut g, i, id, new_nbytes);
        }
        let e = g.entry(i);
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
        if self.is_placed() {
            return Err(Error::InvalidArgument("the total of a placed pool is fixed: its ranges index one buffer".into()));
        }
        let mut g = self.lock()?;
        let h = self.seg().header;
        let old = h.total.swap(new_total, Relaxed);
        g.add_available(i128::from(new_total) - i128::from(old));
        let failed = g.fail_where(FAILED_CAPACITY, |n| n > new_total);
        h.capacity_rejections.fetch_add(failed, Relaxed);
        g.grant_ready();
        drop(g);
        self.intact()
    }

    /// The histograms: the merge of every process's record, and of the
    /// processes that left.
    pub(crate) fn histograms(&self) -> Result<Histograms, Error> {
        self.intact()?;
        let merged = figures::merged(self.seg());
        self.after(Ok(merged))
    }

    /// Records that this process holds `bytes` outside any lease under
    /// `label` (0 removes it), in its own record of the segment.
    pub(crate) fn set_reservation(&self, label: &str, bytes: u64) -> Result<(), Error> {
        let g = self.lock()?;
        let set = figures::set_reservation(g.seg, g.me, label, bytes);
        drop(g);
        self.after(set)
    }

    /// The reservations of every attached process.
    pub(crate) fn reservations(&self) -> Result<Vec<HeldReservation>, Error> {
        let g = self.lock()?;
        let seg = self.seg();
        let held = (0..seg.procs.len())
            .filter(|&s| seg.procs[s].state.load(Relaxed) == PROC_ATTACHED)
            .flat_map(|s| {
                let pid = seg.procs[s].pid.load(Relaxed);
                figures::reservations(seg, s).into_iter().map(move |reservation| HeldReservation { pid, reservation })
            })
            .collect();
        drop(g);
        self.after(Ok(held))
    }

    pub(crate) fn close(&self) {
        // Closing cannot report failure; a pool this process cannot lock
        // (only after a failed re-attach in a forked child) stays as it is.
        let Ok(mut g) = self.lock() else { return };
        let h = self.seg().header;
        h.closed.store(1, Relaxed);
        let failed = g.fail_where(FAILED_CLOSED, |_| true);
        h.closed_rejections.fetch_add(failed, Relaxed);
    }

    /// The pool's figures. Dead processes are reaped first (at most once per
    /// half reclaim slice), so an observer sees their bytes back.
    /// A holder that keeps the lock delays this by `SHORT_LOCK_WAIT` at most:
    /// the figures are then read without it.
    pub(crate) fn stats(&self) -> Stats {
        self.check_file_now();
        let h = self.seg().header;
        let mut g = self.lock_by(PATIENT, 0);
        if let Ok(g) = g.as_mut() {
            g.maybe_reap();
        }
        let place = g.as_ref().ok().and_then(|g| g.place_stats());
        let total = h.total.load(Relaxed);
        let available = h.available.load(Relaxed);
        let stats = Stats {
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
            reserved_bytes: figures::reserved_total(self.seg()),
            ..Stats::default()
        };
        match place {
            Some(p) => Stats { largest_free_range: p.largest_free_range, free_ranges: p.free_ranges, ..stats },
            None => stats.unplaced(),
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

    /// Figures and the table of attached processes (dead ones are reaped
    /// first). If a holder keeps the lock past `SHORT_LOCK_WAIT`, they are
    /// read without it and `lock_holder` says who holds it.
    pub fn snapshot(&self) -> Result<SharedSnapshot, Error> {
        self.intact()?;
        let stats = self.stats();
        let a = self.me()?;
        match self.lock_by(PATIENT, 0) {
            Ok(mut g) => {
                g.reap_dead();
                Ok(self.snapshot_of(stats, Some(a.slot), None))
            }
            Err(Error::Timeout { .. }) => Ok(self.snapshot_of(stats, Some(a.slot), lock_holder(self.seg(), a.fd))),
            Err(e) => Err(e),
        }
    }

    /// The snapshot as the segment reads now; `me` is this process's slot.
    fn snapshot_of(&self, stats: Stats, me: Option<usize>, lock_holder: Option<LockHolder>) -> SharedSnapshot {
        let seg = self.seg();
        let mut procs: Vec<ProcInfo> = (0..seg.procs.len())
            .filter(|&s| seg.procs[s].state.load(Relaxed) == PROC_ATTACHED)
            .map(|s| ProcInfo {
                slot: s,
                pid: seg.procs[s].pid.load(Relaxed),
                leases: 0,
                bytes_held: 0,
                waiting: 0,
                is_self: Some(s) == me,
                reservations: figures::reservations(seg, s),
            })
            .collect();
        let mut waiting = 0;
        for e in seg.entries {
            let state = e.state.load(Relaxed);
            waiting += u64::from(state == WAITING);
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
        let h = seg.header;
        SharedSnapshot {
            name: self.name.clone(),
            path: path_of(&self.name),
            closed: h.closed.load(Relaxed) != 0,
            stats: Stats { waiters: waiting, ..stats },
            histograms: figures::merged(seg),
            procs,
            lock_recoveries: u64::from(h.lock_recoveries.load(Relaxed)),
            reaped_procs: h.reaped_procs.load(Relaxed),
            limits: self.limits(),
            lock_holder,
            handoffs: handoffs::list(seg),
        }
    }

    /// What `mmpool status` shows: attaches to the pool `name` and takes a
    /// snapshot; if the pool's lock stays taken by a live holder, the
    /// snapshot is read without attaching, and says who holds the lock.
    pub fn inspect(name: &str) -> Result<SharedSnapshot, Error> {
        let opts = SharedOptions::default();
        let (pool, fd, registry, _) = Self::map(name, &opts)?;
        let attached = attach_by(&pool, fd, &opts, false, PATIENT);
        let snapshot = match attached {
            Ok(slot) => {
                pool.attachment.store(Attachment { slot, registry, fd, generation: generation() }.pack(), Release);
                return pool.snapshot();
            }
            Err(Error::Timeout { .. }) => {
                let stats = Stats {
                    total_bytes: pool.total_bytes(),
                    available_bytes: pool.available_bytes(),
                    in_use_bytes: pool.total_bytes().saturating_sub(pool.available_bytes()),
                    ..Stats::default()
                };
                Ok(pool.snapshot_of(stats, None, lock_holder(pool.seg(), fd)))
            }
            Err(e) => Err(e),
        };
        if liveness::unregister(registry, fd) {
            // SAFETY: the descriptor `map` opened, used by nothing else.
            unsafe { libc::close(fd) };
        }
        snapshot
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
        let mut joined = None;
        let outcome = self.wait_in_line(i, id, wait, on_timeout, collect, &mut joined);
        // Holding no lock now: says so if the wait was too long. A ticket that
        // stays in line has not timed out, only this wait's slice.
        if on_timeout == OnTimeout::Leave || outcome.is_ok() {
            self.loud.after_wait(&outcome, joined.map(|at| futex::now_ns().saturating_sub(at)), || {
                let s = self.stats();
                let pool = format!("shared pool {:?}", self.name);
                Scene { pool, in_use_bytes: s.in_use_bytes, total_bytes: s.total_bytes, waiters: s.waiters }
            });
        }
        outcome
    }

    /// `wait_for`'s wait; `joined` gets the time (`now_ns`) the ticket joined
    /// the line, if it is still in line when first looked at.
    fn wait_in_line(
        &self,
        i: usize,
        id: u64,
        wait: Wait,
        on_timeout: OnTimeout,
        collect: impl FnOnce(&mut Locked<'_>, usize) -> Result<u64, Error>,
        joined: &mut Option<u64>,
    ) -> Result<u64, Error> {
        let deadline = wait.deadline();
        let mut slept_out = false;
        loop {
            let mut g = match self.lock_by(Until::from_deadline(deadline), 0) {
                Ok(g) => g,
                Err(Error::Timeout { .. }) => {
                    // The lock stayed taken to the end: the ticket cannot
                    // leave the line now; it does the next time this process
                    // holds the lock.
                    if on_timeout == OnTimeout::Leave {
                        self.abandoned.lock().push(id);
                        self.any_abandoned.store(true, Relaxed);
                        Self::bump(&self.seg().header.timeouts);
                    }
                    let requested = self.seg().entries.get(i).map_or(0, |e| e.nbytes.load(Relaxed));
                    return Err(Error::Timeout { requested });
                }
                Err(e) => return Err(e),
            };
            if slept_out {
                self.check_file_now();
                g.maybe_reap();
                self.intact()?;
            }
            let Some(i) = self.own(&g, id, "ticket")?.filter(|&k| k == i) else {
                return Err(Error::InvalidLease(format!("ticket {id:#x} was already redeemed or cancelled")));
            };
            let e = g.entry(i);
            let nbytes = e.nbytes.load(Relaxed);
            let state = e.state.load(Relaxed);
            if state != WAITING {
                self.relay.ended(&mut g, id);
            }
            match state {
                GRANTED => return collect(&mut g, i),
                FAILED_CLOSED => {
                    g.free(i);
                    return Err(Error::Closed);
                }
                FAILED_CAPACITY => {
                    g.free(i);
                    return Err(Error::ExceedsCapacity { requested: nbytes, total: g.total() });
                }
                WAITING => {
                    joined.get_or_insert(e.since_ns.load(Relaxed));
                }
                _ => return Err(Error::InvalidLease(format!("ticket {id:#x} was already redeemed"))),
            }
            let now = Instant::now();
            if deadline.is_some_and(|at| now >= at) {
                if on_timeout == OnTimeout::Leave {
                    self.relay.ended(&mut g, id);
                    g.free(i);
                    Self::bump(&self.seg().header.timeouts);
                }
                return Err(Error::Timeout { requested: nbytes });
            }
            let seen = e.futex.load(Ordering::Acquire);
            drop(g);
            let slice = deadline.map_or(RECLAIM_INTERVAL, |at| (at - now).min(RECLAIM_INTERVAL));
            // A claim deadline may free what this ticket waits for.
            let slice = handoffs::until_deadline(self.seg(), slice);
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

    /// Where the lock word lies in the segment's file (for tests that
    /// corrupt it).
    #[doc(hidden)]
    pub fn debug_lock_word_offset() -> u64 {
        std::mem::offset_of!(Header, lock) as u64
    }

    /// Whether this handle found its segment damaged (its file truncated
    /// under it): every call on it then fails.
    pub fn is_damaged(&self) -> bool {
        self.map.is_damaged()
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
        drop(g);
        self.intact()
    }
}

impl Drop for SharedPool {
    fn drop(&mut self) {
        self.relay.stop(self);
        let a = Attachment::unpack(self.attachment.load(Acquire));
        if a.slot as u64 == NO_SLOT || a.generation != generation() {
            return; // never attached, or an ancestor's attachment (closed at fork)
        }
        // Without the lock (damaged, or a holder that keeps it) the
        // descriptor is simply closed: the others then reap this process.
        if self.intact().is_ok() {
            if let Ok(mut g) = lock_segment(&self.map, a.slot, a.fd, &self.inside, PATIENT) {
                g.release_owner(a.slot);
                self.seg().procs[a.slot].state.store(PROC_FREE, Relaxed);
            }
        }
        if liveness::unregister(a.registry, a.fd) {
            // SAFETY: this attachment's descriptor, used by nothing else now;
            // closing it drops its byte locks.
            unsafe { libc::close(a.fd) };
        }
    }
}
