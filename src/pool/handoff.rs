//! Hand-offs: a lease's bytes held for N consumers, returned when the last
//! of them completes its part.
//!
//! A hand-off is its own record, apart from leases: `share` moves a lease's
//! bytes into one (or, when the producer keeps the lease, only counts), and
//! the producer gets a [`Token`], a small value it sends to the consumers
//! next to whatever names the memory. Each consumer completes one part;
//! completing a part twice counts once; the completion that leaves no part
//! open finishes the hand-off: its bytes go back to the pool and a producer
//! waiting for it wakes. A part may be claimed first, which only says that
//! someone took it up: parts nobody has claimed or completed when the
//! claim deadline passes expire (complete by themselves, counted and logged
//! once per hand-off).
//!
//! This module keeps the records and decides; the backend moves the bytes.
//! The table's lock is the innermost: nothing else is locked under it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::error::Error;
use super::lease::IdMap;
use super::lease::Ticket;
use super::local::Wait;
use super::notify::{Core, Decision, Event};
use super::sync::{Arc, AtomicU64, Mutex, Ordering, Parker};
use crate::log::{self, Level};

/// The most parts one hand-off has: one bit each in a word.
pub const MAX_PARTS: u32 = 64;

/// What a producer sends to the consumers of a hand-off: a plain value.
/// `nonce` is derived from a secret of the pool with every other field, so
/// a token this pool never issued (forged, altered, or of another pool) is
/// refused, and a token of a finished hand-off is still known for what it
/// is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// Unique within the pool, never reused, never 0.
    pub id: u64,
    pub nonce: u64,
    /// How many parts: a consumer completes one of `0..parts`.
    pub parts: u32,
    /// `TOKEN_PLACED`: `offset` is the lease's offset in a placed pool.
    pub flags: u32,
    /// The lease's offset in a placed pool (with `TOKEN_PLACED`), else 0.
    pub offset: u64,
}

/// `Token::flags` bit: `offset` is the lease's offset in a placed pool.
pub const TOKEN_PLACED: u32 = 1;

/// Where a hand-off's lease lies, carried in its token: `Some(offset)` in
/// a placed pool, `None` elsewhere.
pub(crate) fn placement(offset: Option<u64>) -> (u32, u64) {
    offset.map_or((0, 0), |at| (TOKEN_PLACED, at))
}

/// What a hand-off is now, for `handoff_state` and the status listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffInfo {
    pub token: Token,
    /// Bytes it holds (0 when the producer kept the lease).
    pub nbytes: u64,
    /// Parts neither completed nor expired.
    pub parts_left: u32,
    /// Parts claimed and not yet completed.
    pub claimed: u32,
    /// Time since it was shared.
    pub age: Duration,
}

/// Hand-off figures of a pool. Counters count since the pool was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoffStats {
    /// Hand-offs shared and not yet finished.
    pub outstanding: u64,
    /// Bytes they hold.
    pub held_bytes: u64,
    /// Hand-offs made.
    pub shared: u64,
    /// Hand-offs finished (every part completed or expired).
    pub finished: u64,
    /// Parts that expired: nobody claimed or completed them by the deadline.
    pub expired_parts: u64,
}

/// Where a producer waits for its hand-off: a word that turns 1 when it
/// finishes, and the means to sleep on it.
#[derive(Default)]
pub(crate) struct Bell {
    word: AtomicU64,
    parker: Parker,
}

impl Bell {
    fn rung(&self) -> bool {
        matches!(self.word.load(Ordering::Acquire), 1)
    }

    fn ring(&self) {
        if self.parker.settle(&self.word, 1) {
            self.parker.wake(&self.word);
        }
    }
}

struct Record {
    /// Bytes it holds: those of the lease it came from, or 0 when the
    /// producer kept its lease.
    nbytes: u64,
    parts: u32,
    /// Parts completed or expired, one bit each.
    done: u64,
    /// Parts claimed, one bit each.
    claimed: u64,
    /// `Token::flags` and `Token::offset` of its token.
    flags: u32,
    offset: u64,
    deadline: Option<Instant>,
    since: Instant,
    bell: Arc<Bell>,
    /// Every part is done and the bytes are on their way back: the record
    /// stays, for a waiting producer, until they are (`announce`).
    finishing: bool,
    /// Notifiers that get an event when it finishes, with their values.
    watchers: Vec<(Arc<Core>, u64)>,
}

impl Record {
    fn all(&self) -> u64 {
        if self.parts == MAX_PARTS {
            u64::MAX
        } else {
            (1 << self.parts) - 1
        }
    }

    fn left(&self) -> u32 {
        (self.all() & !self.done).count_ones()
    }
}

#[derive(Default)]
struct Table {
    next: u64,
    records: IdMap<Record>,
    stats: HandoffStats,
}

/// A finished hand-off: the backend returns `nbytes` (held here; 0 when
/// the producer kept its lease), then calls `Handoffs::announce`, outside
/// every lock.
#[must_use]
pub(crate) struct Finished {
    id: u64,
    pub(crate) nbytes: u64,
    /// The range its bytes hold in a placed pool, which goes back with them.
    pub(crate) offset: Option<u64>,
}

/// The hand-offs of one pool.
pub(crate) struct Handoffs {
    secret: RandomState,
    table: Mutex<Table>,
    /// Records with a claim deadline still to pass: read without the lock
    /// by waiters of the pool, which then wake for that deadline too. A hint
    /// only (std's atomic, unmodelled under loom); the table decides.
    timed: std::sync::atomic::AtomicUsize,
}

impl Default for Handoffs {
    fn default() -> Self {
        Handoffs {
            secret: RandomState::new(),
            table: Mutex::new(Table { next: 1, ..Table::default() }),
            timed: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

pub(crate) fn part_error(token: &Token, part: u32) -> Error {
    Error::InvalidLease(format!("part {part} is out of range: hand-off {:#x} has parts 0..{}", token.id, token.parts))
}

impl Handoffs {
    fn nonce(&self, id: u64, parts: u32, flags: u32, offset: u64) -> u64 {
        let mut h = self.secret.build_hasher();
        h.write_u64(id);
        h.write_u32(parts);
        h.write_u32(flags);
        h.write_u64(offset);
        h.finish() | 1
    }

    fn token(&self, id: u64, r: &Record) -> Token {
        Token {
            id,
            nonce: self.nonce(id, r.parts, r.flags, r.offset),
            parts: r.parts,
            flags: r.flags,
            offset: r.offset,
        }
    }

    /// Refuses a token this pool never issued.
    fn check(&self, t: &Table, token: &Token) -> Result<(), Error> {
        if token.id == 0
            || token.id >= t.next
            || token.nonce != self.nonce(token.id, token.parts, token.flags, token.offset)
        {
            return Err(Error::InvalidLease(format!(
                "hand-off token {:#x} was not issued by this pool (or was altered)",
                token.id
            )));
        }
        Ok(())
    }

    /// Refuses a part number outside the token's range.
    fn check_part(token: &Token, part: u32) -> Result<(), Error> {
        if part >= token.parts {
            return Err(part_error(token, part));
        }
        Ok(())
    }

    /// Records a hand-off of `nbytes` (moved out of a lease by the caller,
    /// or 0 when the producer keeps its lease) in `parts` parts (1 ..= 64);
    /// unclaimed parts expire after `claim_within`. `placed`: the lease's
    /// offset in a placed pool, carried in the token.
    pub(crate) fn create(
        &self,
        nbytes: u64,
        parts: u32,
        claim_within: Option<Duration>,
        placed: Option<u64>,
    ) -> Result<Token, Error> {
        check_parts(parts)?;
        let since = Instant::now();
        let deadline = claim_within.map(|d| since.checked_add(d).unwrap_or(since + Duration::from_secs(1 << 40)));
        let mut t = self.table.lock();
        let id = t.next;
        t.next += 1;
        let bell = Arc::new(Bell::default());
        let (flags, offset) = placement(placed);
        let r = Record {
            nbytes,
            parts,
            done: 0,
            claimed: 0,
            flags,
            offset,
            deadline,
            since,
            bell,
            finishing: false,
            watchers: Vec::new(),
        };
        let token = self.token(id, &r);
        t.records.insert(id, r);
        t.stats.shared += 1;
        t.stats.outstanding += 1;
        t.stats.held_bytes += nbytes;
        if deadline.is_some() {
            self.timed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(token)
    }

    /// Marks a part as taken up, so that it does not expire. Claiming a
    /// claimed part again is a no-op; a completed or expired part, or a
    /// finished hand-off, cannot be claimed.
    pub(crate) fn claim(&self, token: &Token, part: u32) -> Result<(), Error> {
        let mut t = self.table.lock();
        self.check(&t, token)?;
        Self::check_part(token, part)?;
        let gone =
            || Error::InvalidLease(format!("part {part} of hand-off {:#x} was already completed or expired", token.id));
        let r = t.records.get_mut(&token.id).filter(|r| !r.finishing).ok_or_else(gone)?;
        if r.done & 1 << part != 0 {
            return Err(gone());
        }
        r.claimed |= 1 << part;
        Ok(())
    }

    /// Completes a part; completing it again (or any part of a finished
    /// hand-off) is a no-op. `Some` when this completion finished it.
    pub(crate) fn complete(&self, token: &Token, part: u32) -> Result<Option<Finished>, Error> {
        let mut t = self.table.lock();
        self.check(&t, token)?;
        Self::check_part(token, part)?;
        let Some(r) = t.records.get_mut(&token.id).filter(|r| !r.finishing) else {
            return Ok(None);
        };
        r.done |= 1 << part;
        r.claimed &= !(1 << part);
        if r.left() > 0 {
            return Ok(None);
        }
        Ok(Some(self.finish(&mut t, token.id)))
    }

    fn finish(&self, t: &mut Table, id: u64) -> Finished {
        let (nbytes, offset) = match t.records.get_mut(&id) {
            Some(r) => {
                r.finishing = true;
                if r.deadline.take().is_some() {
                    self.timed.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
                (r.nbytes, (r.flags & TOKEN_PLACED != 0 && r.nbytes > 0).then_some(r.offset))
            }
            None => (0, None),
        };
        t.stats.outstanding -= 1;
        t.stats.finished += 1;
        t.stats.held_bytes -= nbytes;
        Finished { id, nbytes, offset }
    }

    /// Ends a finished hand-off once its bytes are back, wakes the producer
    /// waiting for it and posts its event on the notifiers watching it.
    pub(crate) fn announce(&self, f: Finished) {
        let record = self.table.lock().records.remove(&f.id);
        if let Some(r) = record {
            r.bell.ring();
            for (core, user) in r.watchers {
                core.post(finished_event(f.id, user));
            }
        }
    }

    /// Posts an event on `core` when the hand-off finishes (at once if it
    /// has).
    pub(crate) fn notify(&self, token: &Token, core: &Arc<Core>, user: u64) -> Result<(), Error> {
        let mut t = self.table.lock();
        self.check(&t, token)?;
        if let Some(r) = t.records.get_mut(&token.id) {
            r.watchers.push((Arc::clone(core), user));
            return Ok(());
        }
        drop(t);
        core.post(finished_event(token.id, user));
        Ok(())
    }

    /// Expires the parts past their claim deadline that nobody claimed or
    /// completed (a line in the log per hand-off), and finishes the
    /// hand-offs that leaves without an open part.
    pub(crate) fn reap(&self, now: Instant) -> Vec<Finished> {
        let mut t = self.table.lock();
        let mut expired = Vec::new();
        for (&id, r) in t.records.iter_mut() {
            if r.finishing || r.deadline.map_or(true, |at| now < at) {
                continue;
            }
            // The deadline passes once, whether or not a part lapses.
            r.deadline = None;
            self.timed.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let lapsed = r.all() & !r.done & !r.claimed;
            if lapsed == 0 {
                continue;
            }
            r.done |= lapsed;
            expired.push((id, lapsed.count_ones(), r.left(), r.nbytes));
        }
        let mut finished = Vec::new();
        for (id, n, left, nbytes) in expired {
            t.stats.expired_parts += u64::from(n);
            log::log(
                Level::Warn,
                &format!(
                    "hand-off {id:#x} ({nbytes} bytes): {n} part(s) nobody claimed by the claim deadline expired; \
                     {left} part(s) still open"
                ),
            );
            if left == 0 {
                finished.push(self.finish(&mut t, id));
            }
        }
        finished
    }

    /// The earliest claim deadline of any hand-off still to pass, for a
    /// waiter of the pool, which wakes then to `reap` (the bytes of a
    /// hand-off that expires may be what it waits for).
    pub(crate) fn next_claim_deadline(&self) -> Option<Instant> {
        if self.timed.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return None;
        }
        self.table.lock().records.values().filter_map(|r| r.deadline).min()
    }

    /// The claim deadline of hand-off `id` still to pass, for its producer's wait.
    fn next_deadline(&self, id: u64) -> Option<Instant> {
        self.table.lock().records.get(&id).and_then(|r| r.deadline)
    }

    /// The bell of a hand-off whose bytes are not all back yet, or `None`.
    fn bell(&self, token: &Token) -> Result<Option<Arc<Bell>>, Error> {
        let t = self.table.lock();
        self.check(&t, token)?;
        Ok(t.records.get(&token.id).map(|r| Arc::clone(&r.bell)))
    }

    /// Waits up to `wait` for the hand-off to finish. `reap` runs at each
    /// claim deadline passed meanwhile, with `finished` given what it
    /// finished (the backend returns the bytes).
    pub(crate) fn wait(&self, token: &Token, wait: Wait, finished: impl Fn(Vec<Finished>)) -> Result<(), Error> {
        let Some(bell) = self.bell(token)? else {
            return Ok(());
        };
        let deadline = wait.deadline();
        loop {
            if bell.rung() {
                return Ok(());
            }
            let now = Instant::now();
            if self.next_deadline(token.id).is_some_and(|at| now >= at) {
                finished(self.reap(now));
                continue;
            }
            if deadline.is_some_and(|at| now >= at) {
                return Err(Error::Timeout { requested: 0 });
            }
            bell.parker.sleep(&bell.word, earliest(deadline, self.next_deadline(token.id)));
        }
    }

    /// What an outstanding hand-off is now; `None` once it finished.
    pub(crate) fn info(&self, token: &Token) -> Result<Option<HandoffInfo>, Error> {
        let t = self.table.lock();
        self.check(&t, token)?;
        Ok(t.records.get(&token.id).filter(|r| !r.finishing).map(|r| self.info_of(token.id, r)))
    }

    fn info_of(&self, id: u64, r: &Record) -> HandoffInfo {
        HandoffInfo {
            token: self.token(id, r),
            nbytes: r.nbytes,
            parts_left: r.left(),
            claimed: r.claimed.count_ones(),
            age: r.since.elapsed(),
        }
    }

    /// Every outstanding hand-off, oldest first.
    pub(crate) fn list(&self) -> Vec<HandoffInfo> {
        let t = self.table.lock();
        let mut all: Vec<_> =
            t.records.iter().filter(|(_, r)| !r.finishing).map(|(&id, r)| self.info_of(id, r)).collect();
        all.sort_by_key(|i| i.token.id);
        all
    }

    pub(crate) fn stats(&self) -> HandoffStats {
        self.table.lock().stats
    }
}

/// The sooner of two optional instants (`None`: never).
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn finished_event(id: u64, user: u64) -> Event {
    Event { ticket: Ticket { id }, user, decision: Decision::HandoffFinished }
}

/// Refuses a number of parts a hand-off cannot have.
pub(crate) fn check_parts(parts: u32) -> Result<(), Error> {
    if parts == 0 || parts > MAX_PARTS {
        return Err(Error::InvalidArgument(format!("a hand-off has 1 to {MAX_PARTS} parts, not {parts}")));
    }
    Ok(())
}
