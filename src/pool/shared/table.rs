//! What a process does to the segment while it holds the segment's lock: the
//! line, grants, entries, reaping dead processes and repair.
//!
//! Invariant (restored by `repair` after a holder died inside the lock):
//! `available == total - (bytes of LEASE and GRANTED entries and of
//! hand-off records)`, `waiting` and
//! `leases` count their entries, and the ring holds every WAITING entry's id
//! in order of arrival (plus holes: ids whose entry moved on, skipped).

use std::ops::Deref;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::doorbell;
use super::figures;
use super::futex::{self, now_ns};
use super::handoffs;
use super::inside::{Inside, Mark};
use super::liveness::{self, PROC_LOCK_BASE};
use super::lock;
use super::segment::*;
use crate::pool::notify::Rings;
use crate::pool::MAX_TOTAL;
use crate::pool::Error;

/// The segment and this process's slot, while this process holds the
/// segment's lock: what the table's plain updates need. `Locked` derefs to
/// it; the fast paths (`fast.rs`) hold only this, in a `Quick`.
#[derive(Clone, Copy)]
pub(crate) struct Held<'a> {
    pub(crate) seg: &'a Segment<'a>,
    /// This process's slot.
    pub(crate) me: usize,
}

/// The segment while this process holds its lock. Unlocks on drop, then wakes
/// the tickets whose fate it changed, the doorbells of the processes that
/// own them, and this process's notifiers with events queued meanwhile.
pub(crate) struct Locked<'a> {
    held: Held<'a>,
    /// This process's descriptor of the segment file (for liveness probes).
    pub(crate) fd: RawFd,
    /// The attachment's threads inside the lock, and this one's mark there
    /// (see `lock.rs`).
    inside: (&'a Inside, Mark),
    woken: Vec<usize>,
    /// Slots whose doorbell was bumped (`doorbell::bump`).
    pub(crate) doorbells: Vec<usize>,
    /// Notifiers to ring (events queued under the lock).
    pub(crate) rings: Rings,
}

impl<'a> Deref for Locked<'a> {
    type Target = Held<'a>;
    #[inline(always)]
    fn deref(&self) -> &Held<'a> {
        &self.held
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A bug interrupted an update: leave the segment consistent.
            let _ = self.repair();
        }
        lock::unlock(&self.seg.header.lock, self.inside.0, self.inside.1);
        for &i in &self.woken {
            if let Some(e) = self.seg.entries.get(i) {
                futex::wake(&e.futex, i32::MAX);
            }
        }
        doorbell::wake(self.seg, &self.doorbells);
        std::mem::take(&mut self.rings).run();
    }
}

/// The lock as a fast path holds it (`fast.rs`): taken at the first try,
/// from a free word, by `try_take`; no lists of tickets to wake (a fast path
/// decides no ticket's fate). Unlocks on drop.
pub(crate) struct Quick<'a> {
    held: Held<'a>,
    fd: RawFd,
    inside: &'a Inside,
    mark: Mark,
}

impl<'a> Quick<'a> {
    /// The lock, if its word is free now and stays so for one swap; `None`
    /// changes nothing (the full path waits for it).
    #[inline(always)]
    pub(crate) fn try_take(seg: &'a Segment<'a>, me: usize, fd: RawFd, inside: &'a Inside) -> Option<Quick<'a>> {
        let mark = lock::try_lock(&seg.header.lock, me, inside)?;
        Some(Quick { held: Held { seg, me }, fd, inside, mark })
    }
}

impl<'a> Deref for Quick<'a> {
    type Target = Held<'a>;
    #[inline(always)]
    fn deref(&self) -> &Held<'a> {
        &self.held
    }
}

impl Drop for Quick<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if std::thread::panicking() {
            // As `Locked` does: repair, then unlock (its drop does both).
            drop(Locked::new(self.seg, self.me, self.fd, (self.inside, self.mark)));
            return;
        }
        lock::unlock(&self.seg.header.lock, self.inside, self.mark);
    }
}

fn sat(v: i128) -> i64 {
    v.clamp(-(MAX_TOTAL as i128) * 4, MAX_TOTAL as i128 * 4) as i64
}

impl<'a> Locked<'a> {
    /// Wraps a lock the caller has just taken.
    pub(crate) fn new(seg: &'a Segment<'a>, me: usize, fd: RawFd, inside: (&'a Inside, Mark)) -> Self {
        Locked { held: Held { seg, me }, fd, inside, woken: Vec::new(), doorbells: Vec::new(), rings: Rings::default() }
    }
}

impl<'a> Held<'a> {
    pub(crate) fn entry(&self, i: usize) -> &'a Entry {
        // Callers pass indices below the length; the rest wrap (no division
        // on the common path).
        let entries = self.seg.entries;
        entries.get(i).unwrap_or_else(|| &entries[i % entries.len()])
    }

    pub(crate) fn total(&self) -> u64 {
        self.seg.header.total.load(Relaxed)
    }

    pub(crate) fn available(&self) -> i64 {
        self.seg.header.available.load(Relaxed)
    }

    pub(crate) fn closed(&self) -> bool {
        self.seg.header.closed.load(Relaxed) != 0
    }

    pub(crate) fn waiting(&self) -> u64 {
        self.seg.header.waiting.load(Relaxed)
    }

    pub(crate) fn add_available(&self, delta: i128) {
        let h = self.seg.header;
        h.available.store(sat(i128::from(h.available.load(Relaxed)) + delta), Relaxed);
    }

    fn note_peak(&self) {
        let h = self.seg.header;
        let in_use = (i128::from(self.total()) - i128::from(self.available())).max(0) as u64;
        if in_use > h.peak.load(Relaxed) {
            h.peak.store(in_use, Relaxed);
        }
    }

    /// Whether `nbytes` can be granted now without jumping the line.
    #[inline(always)]
    pub(crate) fn grantable_now(&self, nbytes: u64) -> bool {
        self.waiting() == 0 && self.available() >= 0 && nbytes <= self.available() as u64 && self.placeable(nbytes)
    }

    /// Takes `nbytes` from what is available (the caller checked they fit).
    pub(crate) fn take(&self, nbytes: u64) {
        self.add_available(-i128::from(nbytes));
        self.note_peak();
    }

    /// Adds one to a counter that only holders of the lock change: a load
    /// and a store, no locked instruction.
    fn count(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// The entry holding `id`, if it still does.
    #[inline]
    pub(crate) fn find(&self, id: u64) -> Option<usize> {
        let parts = parse_id(id, self.seg.header.nonce.load(Relaxed))?;
        let e = self.seg.entries.get(parts.entry)?;
        (e.id.load(Relaxed) == id && e.state.load(Relaxed) != FREE).then_some(parts.entry)
    }

    /// Records a new entry owned by this process; `state` is stored last.
    pub(crate) fn alloc(&self, state: u32, nbytes: u64) -> Result<(usize, u64), Error> {
        self.alloc_entry(state, nbytes).ok_or_else(|| self.table_full())
    }

    /// `alloc`, `None` when every entry is taken. A lease's entry records no
    /// arrival time (only tickets' waits are timed): no clock is read.
    #[inline]
    pub(crate) fn alloc_entry(&self, state: u32, nbytes: u64) -> Option<(usize, u64)> {
        let h = self.seg.header;
        let n = self.seg.entries.len();
        let start = h.alloc_hint.load(Relaxed) as usize % n;
        for k in 0..n {
            let i = if start + k < n { start + k } else { start + k - n };
            let e = &self.seg.entries[i];
            let gen = e.gen.load(Relaxed);
            if e.state.load(Relaxed) != FREE || gen >= GEN_MAX {
                continue;
            }
            let id = make_id(h.nonce.load(Relaxed), gen + 1, i);
            e.gen.store(gen + 1, Relaxed);
            e.id.store(id, Relaxed);
            e.nbytes.store(nbytes, Relaxed);
            e.owner.store(self.me as u32, Relaxed);
            e.pos.store(h.next_pos.load(Relaxed), Relaxed);
            Self::count(&h.next_pos, 1);
            e.since_ns.store(if state == LEASE { 0 } else { now_ns() }, Relaxed);
            e.offset.store(NO_RANGE, Relaxed);
            e.state.store(state, Relaxed);
            h.alloc_hint.store(if i + 1 < n { i as u32 + 1 } else { 0 }, Relaxed);
            match state {
                LEASE => self.count_grant(self.me, nbytes),
                WAITING => Self::count(&h.waiting, 1),
                _ => {}
            }
            return Some((i, id));
        }
        None
    }

    #[cold]
    fn table_full(&self) -> Error {
        Error::System(format!(
            "all {} lease and ticket records of the shared pool are in use (its limit max_leases, chosen at \
             creation); release leases or cancel tickets, or create the pool with a larger max_leases",
            self.seg.entries.len()
        ))
    }

    /// A new lease of `nbytes` for the process in `owner`: counted and
    /// recorded in its size histogram.
    fn count_grant(&self, owner: usize, nbytes: u64) {
        let h = self.seg.header;
        Self::count(&h.leases, 1);
        Self::count(&h.grants, 1);
        figures::count_size(self.seg, owner, nbytes);
    }

    /// Frees entry `i` and fixes the counts: a lease's or grant's bytes come
    /// back to what is available (the range of a placed pool's too). Returns
    /// the state it had. Granting to the line is the caller's (`free`).
    #[inline]
    pub(crate) fn free_entry(&self, i: usize) -> u32 {
        let e = self.entry(i);
        let h = self.seg.header;
        let state = e.state.load(Relaxed);
        e.state.store(FREE, Relaxed);
        match state {
            LEASE | GRANTED => {
                if state == LEASE {
                    h.leases.store(h.leases.load(Relaxed).saturating_sub(1), Relaxed);
                }
                self.unplace(i);
                self.add_available(i128::from(e.nbytes.load(Relaxed).min(MAX_TOTAL)));
            }
            WAITING => h.waiting.store(h.waiting.load(Relaxed).saturating_sub(1), Relaxed),
            _ => {}
        }
        state
    }

    /// Moves the bytes of lease entry `from` into lease entry `into` and
    /// frees `from`, the pool's free bytes unchanged; returns what `into`
    /// holds now.
    pub(crate) fn merge_into(&self, into: usize, from: usize) -> u64 {
        let h = self.seg.header;
        let (a, b) = (self.entry(into), self.entry(from));
        let merged = a.nbytes.load(Relaxed).saturating_add(b.nbytes.load(Relaxed)).min(MAX_TOTAL);
        a.nbytes.store(merged, Relaxed);
        b.state.store(FREE, Relaxed);
        h.leases.store(h.leases.load(Relaxed).saturating_sub(1), Relaxed);
        merged
    }

    /// Turns a collected GRANTED entry into a lease.
    pub(crate) fn make_lease(&self, i: usize) {
        let e = self.entry(i);
        e.state.store(LEASE, Relaxed);
        self.count_grant(e.owner.load(Relaxed) as usize, e.nbytes.load(Relaxed));
    }
}

impl<'a> Locked<'a> {
    pub(crate) fn give(&mut self, nbytes: u64) {
        self.add_available(i128::from(nbytes));
        if self.waiting() > 0 {
            self.grant_ready();
        }
    }

    /// Puts a new WAITING entry at the end of the line.
    pub(crate) fn join_line(&mut self, nbytes: u64) -> Result<(usize, u64), Error> {
        let h = self.seg.header;
        let cap = self.seg.ring.len() as u64;
        let len = |h: &Header| h.ring_tail.load(Relaxed).wrapping_sub(h.ring_head.load(Relaxed));
        if len(h) >= cap {
            self.rebuild_ring();
            if len(h) >= cap {
                return Err(Error::System(format!(
                    "{cap} requests already wait in the shared pool's line (its limit max_waiters, chosen at \
                     creation)"
                )));
            }
        }
        let (i, id) = self.alloc(WAITING, nbytes)?;
        let tail = h.ring_tail.load(Relaxed);
        self.seg.ring[(tail % cap) as usize].store(id, Relaxed);
        h.ring_tail.store(tail.wrapping_add(1), Relaxed);
        Ok((i, id))
    }

    /// Sets an entry's state and wakes whoever waits on it.
    fn set_fate(&mut self, i: usize, state: u32) {
        let e = self.entry(i);
        e.state.store(state, Relaxed);
        e.futex.fetch_add(1, Relaxed);
        self.woken.push(i);
        doorbell::bump(self.seg, e, &mut self.doorbells);
    }

    /// Frees an entry, returning its bytes if it held any, and fixing counts;
    /// grants to the line what it let through.
    pub(crate) fn free(&mut self, i: usize) {
        match self.free_entry(i) {
            // Those behind it may fit now.
            WAITING => self.grant_ready(),
            LEASE | GRANTED if self.waiting() > 0 => self.grant_ready(),
            _ => {}
        }
    }

    /// The id at the head of the line, skipping holes.
    fn head(&mut self) -> Option<usize> {
        let h = self.seg.header;
        let cap = self.seg.ring.len() as u64;
        loop {
            let (head, tail) = (h.ring_head.load(Relaxed), h.ring_tail.load(Relaxed));
            let len = tail.wrapping_sub(head);
            if len == 0 {
                return None;
            }
            if len > cap {
                self.rebuild_ring();
                continue;
            }
            let id = self.seg.ring[(head % cap) as usize].load(Relaxed);
            match self.find(id) {
                Some(i) if self.entry(i).state.load(Relaxed) == WAITING => return Some(i),
                _ => h.ring_head.store(head.wrapping_add(1), Relaxed),
            }
        }
    }

    /// Grants from the head of the line, in order, as far as the bytes reach.
    pub(crate) fn grant_ready(&mut self) {
        let h = self.seg.header;
        while let Some(i) = self.head() {
            let e = self.entry(i);
            let nbytes = e.nbytes.load(Relaxed);
            if self.available() < 0 || nbytes > self.available() as u64 || !self.place(i, nbytes) {
                return;
            }
            self.take(nbytes);
            h.ring_head.store(h.ring_head.load(Relaxed).wrapping_add(1), Relaxed);
            h.waiting.store(h.waiting.load(Relaxed).saturating_sub(1), Relaxed);
            let waited = now_ns().saturating_sub(e.since_ns.load(Relaxed));
            h.waited_grants.fetch_add(1, Relaxed);
            h.wait_ns_total.store(h.wait_ns_total.load(Relaxed).saturating_add(waited), Relaxed);
            h.wait_ns_max.fetch_max(waited, Relaxed);
            figures::count_wait(self.seg, e.owner.load(Relaxed) as usize, waited);
            self.set_fate(i, GRANTED);
        }
    }

    /// Fails every WAITING entry for which `doomed(nbytes)` holds; returns how many.
    pub(crate) fn fail_where(&mut self, state: u32, doomed: impl Fn(u64) -> bool) -> u64 {
        let h = self.seg.header;
        let mut failed = 0;
        for (i, e) in self.seg.entries.iter().enumerate() {
            if e.state.load(Relaxed) == WAITING && doomed(e.nbytes.load(Relaxed)) {
                h.waiting.store(h.waiting.load(Relaxed).saturating_sub(1), Relaxed);
                self.set_fate(i, state);
                failed += 1;
            }
        }
        failed
    }

    /// Rewrites the line from the WAITING entries, in order of arrival.
    fn rebuild_ring(&mut self) {
        let h = self.seg.header;
        let cap = self.seg.ring.len();
        let mut line: Vec<(u64, usize)> = (0..self.seg.entries.len())
            .filter(|&i| self.seg.entries[i].state.load(Relaxed) == WAITING)
            .map(|i| (self.seg.entries[i].pos.load(Relaxed), i))
            .collect();
        line.sort_unstable();
        for &(_, i) in line.iter().skip(cap) {
            // More waiting than the line holds: only a corrupt segment does this.
            self.set_fate(i, FAILED_CAPACITY);
        }
        line.truncate(cap);
        for (k, &(_, i)) in line.iter().enumerate() {
            self.seg.ring[k].store(self.seg.entries[i].id.load(Relaxed), Relaxed);
        }
        h.ring_head.store(0, Relaxed);
        h.ring_tail.store(line.len() as u64, Relaxed);
        h.waiting.store(line.len() as u64, Relaxed);
        if let Some(&(pos, _)) = line.last() {
            if h.next_pos.load(Relaxed) <= pos {
                h.next_pos.store(pos.wrapping_add(1), Relaxed);
            }
        }
    }

    /// Whether the process in `slot` is gone (its byte lock is free), asked
    /// through `fd`, which must not be the slot's own descriptor. A failed
    /// probe counts as alive: reclaiming a live process's bytes would break
    /// the budget; waiting longer only delays.
    pub(crate) fn is_dead(&self, slot: usize) -> bool {
        slot_is_dead(self.seg, self.fd, slot)
    }

    /// Frees every entry of the process in `slot` (bytes come back) and
    /// ends its figures: the process has left (or a new one takes a dead
    /// one's slot), so its histograms join the departed record.
    pub(crate) fn release_owner(&mut self, slot: usize) {
        figures::depart(self.seg, slot);
        handoffs::release_claims(self, slot);
        for i in 0..self.seg.entries.len() {
            let e = &self.seg.entries[i];
            if e.state.load(Relaxed) != FREE && e.owner.load(Relaxed) as usize == slot {
                self.free(i);
            }
        }
    }

    /// Finds processes that died and gives back everything they held.
    /// Returns how many were found.
    pub(crate) fn reap_dead(&mut self) -> u64 {
        let h = self.seg.header;
        let mut reaped = 0;
        for slot in 0..self.seg.procs.len() {
            let p = &self.seg.procs[slot];
            if slot == self.me || p.state.load(Relaxed) != PROC_ATTACHED || !self.is_dead(slot) {
                continue;
            }
            self.release_owner(slot);
            p.state.store(PROC_FREE, Relaxed);
            reaped += 1;
        }
        h.last_reap_ns.store(now_ns(), Relaxed);
        if reaped > 0 {
            h.reaped_procs.fetch_add(reaped, Relaxed);
            self.grant_ready();
        }
        reaped
    }

    /// Reaps if nobody has for a while (cheap paths call this before refusing).
    pub(crate) fn maybe_reap(&mut self) -> u64 {
        let last = self.seg.header.last_reap_ns.load(Relaxed);
        if now_ns().saturating_sub(last) >= lock::RECLAIM_SLICE.as_nanos() as u64 / 2 {
            self.reap_dead()
        } else {
            0
        }
    }

    /// Makes the derivable parts whole again from the entries, and drops
    /// entries that cannot be right. Used after taking the lock over from a
    /// dead holder, on attaching, and after a caught panic. Fails only if the
    /// total itself is out of range (a corrupt segment that no entry can fix).
    pub(crate) fn repair(&mut self) -> Result<(), Error> {
        let h = self.seg.header;
        let total = h.total.load(Relaxed);
        if total == 0 || total > MAX_TOTAL {
            return Err(Error::System(format!("the shared pool's total ({total}) is out of range: the segment is corrupt")));
        }
        for p in self.seg.procs {
            if !matches!(p.state.load(Relaxed), PROC_FREE | PROC_ATTACHED) {
                p.state.store(PROC_FREE, Relaxed);
            }
        }
        let nonce = h.nonce.load(Relaxed);
        let (mut held, mut leases) = (0i128, 0u64);
        for (i, e) in self.seg.entries.iter().enumerate() {
            let state = e.state.load(Relaxed);
            if state == FREE {
                continue;
            }
            let owner = e.owner.load(Relaxed) as usize;
            let sound = (WAITING..=FAILED_CAPACITY).contains(&state)
                && self.seg.procs.get(owner).is_some_and(|p| p.state.load(Relaxed) == PROC_ATTACHED || owner == self.me)
                && parse_id(e.id.load(Relaxed), nonce) == Some(IdParts { entry: i, gen: e.gen.load(Relaxed) })
                && e.nbytes.load(Relaxed) <= MAX_TOTAL;
            if !sound {
                e.state.store(FREE, Relaxed);
                continue;
            }
            if matches!(state, LEASE | GRANTED) {
                held += i128::from(e.nbytes.load(Relaxed));
            }
            leases += u64::from(state == LEASE);
        }
        held += i128::from(handoffs::repair(self.seg));
        for i in self.rebuild_placement() {
            // Its range overlaps another's or lies outside: it cannot be right.
            let e = &self.seg.entries[i];
            held -= i128::from(e.nbytes.load(Relaxed));
            leases -= u64::from(e.state.load(Relaxed) == LEASE);
            e.state.store(FREE, Relaxed);
        }
        h.available.store(sat(i128::from(total) - held), Relaxed);
        h.leases.store(leases, Relaxed);
        h.alloc_hint.store(h.alloc_hint.load(Relaxed) % self.seg.entries.len() as u32, Relaxed);
        self.rebuild_ring();
        self.note_peak();
        self.grant_ready();
        Ok(())
    }
}

/// See `Locked::is_dead`; usable without holding the lock.
pub(crate) fn slot_is_dead(seg: &Segment<'_>, fd: RawFd, slot: usize) -> bool {
    if slot >= seg.procs.len() {
        return true;
    }
    !liveness::held_by_other(fd, PROC_LOCK_BASE + slot as i64).unwrap_or(true)
}
