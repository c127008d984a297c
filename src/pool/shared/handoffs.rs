//! Hand-offs of a shared pool (the rules are `pool::handoff`'s): records in
//! a region of the segment of their own, after the figures, so that a
//! consumer in any attached process claims and completes parts.
//!
//! * A record holds its token's fields, the bytes it holds, its producer
//!   (slot, pid and the slot's attachment time as its generation), the
//!   parts' done and claimed bits with each claimant (slot, pid,
//!   generation), the claim deadline and when it was shared (CLOCK_MONOTONIC,
//!   host-wide). A token's id is `seq << 16 | record`: `seq` counts
//!   hand-offs and is never reused, so a token names its record and a
//!   finished hand-off's token is still known for what it is (its `nonce`,
//!   a keyed hash of every other field under the region's secret, proves it).
//! * Bytes: sharing moves a lease's bytes into its record (the entry ends,
//!   its bytes stay taken); the completion that leaves no part open gives
//!   them back as a release does (the line is granted from its head). The
//!   producer's leaving or death returns nothing a record holds.
//! * Crash safety: a process that leaves (detaches, dies and is reaped, or
//!   is found dead in its slot by its successor) completes the parts it
//!   claimed and had not completed (`release_claims`, from
//!   `Locked::release_owner`). Parts nobody claimed by the claim deadline
//!   expire (`expire_due`): whoever takes the lock after it (the head's
//!   `next_deadline_ns` says when with one load), waiters in line, which
//!   wake for it, and producers waiting for their hand-off.
//! * Notifiers: a record marks the process slots watching it; the
//!   completion that finishes it rings their doorbells, and each one's relay
//!   thread posts the events (`handoff_calls::Watches`).
//! * Damage: every field read from here is untrusted; a record whose fields
//!   cannot be right is dropped by `repair` (its bytes come back) and never
//!   indexes anything unchecked.
//!
//! Every field is an atomic changed only under the segment's lock, except
//! each record's `futex`, which a finishing completion bumps for waiters.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use super::doorbell;
use super::futex::{self, now_ns};
use super::segment::{Segment, PROC_ATTACHED};
use super::table::Locked;
use crate::log::{self, Level};
use crate::pool::handoff::{check_parts, part_error, placement, HandoffInfo, HandoffStats, Token, MAX_PARTS, TOKEN_PLACED};
use crate::pool::{Error, MAX_TOTAL};

const PARTS: usize = MAX_PARTS as usize;
/// `HandoffRecord::state`.
const FREE: u32 = 0;
const LIVE: u32 = 1;
/// The low bits of a token's id: its record.
const INDEX_BITS: u32 = 16;
const _: () = assert!(super::segment::HANDOFFS_RANGE.1 <= 1 << INDEX_BITS);
/// `Claimant::slot` of a part nobody claimed.
const NOBODY: u32 = u32::MAX;
/// Words of `HandoffRecord::watchers`: a bit per process slot.
const WATCHER_WORDS: usize = 4;
const _: () = assert!(super::segment::PROCS_RANGE.1 as usize <= WATCHER_WORDS * 64);

/// Who claimed a part.
#[repr(C)]
pub(crate) struct Claimant {
    slot: AtomicU32,
    pid: AtomicU32,
    /// The slot's `attached_ns` when it claimed.
    gen: AtomicU64,
}

/// One hand-off.
#[repr(C, align(64))]
pub(crate) struct HandoffRecord {
    state: AtomicU32,
    parts: AtomicU32,
    id: AtomicU64,
    flags: AtomicU32,
    producer_slot: AtomicU32,
    offset: AtomicU64,
    nbytes: AtomicU64,
    producer_pid: AtomicU32,
    /// Bumped when it finishes; a waiting producer sleeps on it.
    futex: AtomicU32,
    producer_gen: AtomicU64,
    done: AtomicU64,
    claimed: AtomicU64,
    /// CLOCK_MONOTONIC of the claim deadline; 0: none, or passed.
    deadline_ns: AtomicU64,
    since_ns: AtomicU64,
    claimants: [Claimant; PARTS],
    /// Process slots whose notifiers watch it (`mmpool_handoff_notify`),
    /// one bit each: their doorbells ring when it finishes.
    watchers: [AtomicU64; WATCHER_WORDS],
}

/// The region's own header, before the records.
#[repr(C, align(64))]
pub(crate) struct HandoffsHead {
    /// The key of the tokens' nonces: random, set by the first hand-off.
    secret: [AtomicU64; 2],
    /// The next token's `seq` (from 1).
    next_seq: AtomicU64,
    shared: AtomicU64,
    finished: AtomicU64,
    expired_parts: AtomicU64,
    /// The earliest claim deadline still to pass (0: none).
    next_deadline_ns: AtomicU64,
}

impl HandoffsHead {
    /// Bytes of the region with `records` records.
    pub(crate) const fn span(records: usize) -> usize {
        std::mem::size_of::<HandoffsHead>() + records * std::mem::size_of::<HandoffRecord>()
    }
}

/// One outstanding hand-off of a shared pool, as `mmpool status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedHandoff {
    pub info: HandoffInfo,
    /// The process that shared it (it may be gone).
    pub producer_pid: u32,
    /// The processes holding claimed parts not yet completed, one per part.
    pub claimants: Vec<u32>,
}

fn all_bits(parts: u32) -> u64 {
    if parts >= MAX_PARTS {
        u64::MAX
    } else {
        (1 << parts) - 1
    }
}

fn parts_of(r: &HandoffRecord) -> u32 {
    r.parts.load(Relaxed).clamp(1, MAX_PARTS)
}

fn nonce(h: &HandoffsHead, id: u64, parts: u32, flags: u32, offset: u64) -> u64 {
    #[allow(deprecated)] // SipHash with a key of our own; std offers no other keyed hasher
    let mut s = std::hash::SipHasher::new_with_keys(h.secret[0].load(Relaxed), h.secret[1].load(Relaxed));
    s.write_u64(id);
    s.write_u32(parts);
    s.write_u32(flags);
    s.write_u64(offset);
    s.finish() | 1
}

fn token_of(h: &HandoffsHead, r: &HandoffRecord) -> Token {
    let (id, parts, flags, offset) = (r.id.load(Relaxed), parts_of(r), r.flags.load(Relaxed), r.offset.load(Relaxed));
    Token { id, nonce: nonce(h, id, parts, flags, offset), parts, flags, offset }
}

/// The record a token names, if this pool issued it (unaltered).
fn check(seg: &Segment<'_>, token: &Token) -> Result<usize, Error> {
    let h = seg.handoffs_head;
    let index = (token.id & ((1 << INDEX_BITS) - 1)) as usize;
    let seq = token.id >> INDEX_BITS;
    let issued = seq != 0
        && seq < h.next_seq.load(Relaxed)
        && index < seg.handoffs.len()
        && token.nonce == nonce(h, token.id, token.parts, token.flags, token.offset);
    if !issued {
        return Err(Error::InvalidLease(format!(
            "hand-off token {:#x} was not issued by this pool (or was altered)",
            token.id
        )));
    }
    Ok(index)
}

fn check_part(token: &Token, part: u32) -> Result<u64, Error> {
    if part >= token.parts || part >= MAX_PARTS {
        return Err(part_error(token, part));
    }
    Ok(1 << part)
}

/// The record of a checked token while the hand-off is outstanding.
fn live<'a>(seg: &Segment<'a>, index: usize, token: &Token) -> Option<&'a HandoffRecord> {
    let r = seg.handoffs.get(index)?;
    (r.state.load(Relaxed) == LIVE && r.id.load(Relaxed) == token.id && r.parts.load(Relaxed) == token.parts)
        .then_some(r)
}

/// A key for the nonces that is not all zeros, drawn from std's random seed.
fn fresh_secret(h: &HandoffsHead) {
    if h.secret.iter().any(|w| w.load(Relaxed) != 0) {
        return;
    }
    let state = std::collections::hash_map::RandomState::new();
    for (k, w) in h.secret.iter().enumerate() {
        let mut s = state.build_hasher();
        s.write_u64(now_ns() ^ (k as u64) << 32 ^ u64::from(std::process::id()));
        w.store(s.finish() | 1, Relaxed);
    }
}

/// Records a hand-off of `nbytes` (0 when the producer keeps its lease) by
/// this process in `parts` parts; unclaimed parts expire `claim_within`
/// from now. `placed`: the lease's offset in a placed pool.
pub(crate) fn create(
    g: &Locked<'_>,
    nbytes: u64,
    parts: u32,
    claim_within: Option<Duration>,
    placed: Option<u64>,
) -> Result<Token, Error> {
    check_parts(parts)?;
    let (seg, h) = (g.seg, g.seg.handoffs_head);
    let Some(index) = seg.handoffs.iter().position(|r| r.state.load(Relaxed) != LIVE) else {
        return Err(Error::System(format!(
            "all {} hand-off records of the shared pool are in use (its limit max_handoffs, chosen at creation); \
             complete hand-offs, or create the pool with a larger max_handoffs",
            seg.handoffs.len()
        )));
    };
    fresh_secret(h);
    // Past 2^48 hand-offs (or a damaged count) the ids would lose bits.
    let seq = h.next_seq.load(Relaxed).clamp(1, (1 << (64 - INDEX_BITS)) - 2);
    h.next_seq.store(seq + 1, Relaxed);
    let now = now_ns();
    let deadline = claim_within.map_or(0, |d| now.saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64).max(1));
    let (flags, offset) = placement(placed);
    let r = &seg.handoffs[index];
    let me = seg.procs.get(g.me);
    r.id.store(seq << INDEX_BITS | index as u64, Relaxed);
    r.parts.store(parts, Relaxed);
    r.flags.store(flags, Relaxed);
    r.offset.store(offset, Relaxed);
    r.nbytes.store(nbytes, Relaxed);
    r.producer_slot.store(g.me as u32, Relaxed);
    r.producer_pid.store(me.map_or(0, |p| p.pid.load(Relaxed)), Relaxed);
    r.producer_gen.store(me.map_or(0, |p| p.attached_ns.load(Relaxed)), Relaxed);
    r.done.store(0, Relaxed);
    r.claimed.store(0, Relaxed);
    r.deadline_ns.store(deadline, Relaxed);
    r.since_ns.store(now, Relaxed);
    for c in &r.claimants {
        c.slot.store(NOBODY, Relaxed);
    }
    for w in &r.watchers {
        w.store(0, Relaxed);
    }
    r.state.store(LIVE, Relaxed);
    h.shared.fetch_add(1, Relaxed);
    let next = h.next_deadline_ns.load(Relaxed);
    if deadline != 0 && (next == 0 || deadline < next) {
        h.next_deadline_ns.store(deadline, Relaxed);
    }
    Ok(token_of(h, r))
}

/// Claims a part for this process: it no longer expires, and completes by
/// itself if this process leaves first. Again: the latest claimant holds it.
pub(crate) fn claim(g: &Locked<'_>, token: &Token, part: u32) -> Result<(), Error> {
    let seg = g.seg;
    let index = check(seg, token)?;
    let bit = check_part(token, part)?;
    let gone =
        || Error::InvalidLease(format!("part {part} of hand-off {:#x} was already completed or expired", token.id));
    let r = live(seg, index, token).ok_or_else(gone)?;
    if r.done.load(Relaxed) & bit != 0 {
        return Err(gone());
    }
    let me = seg.procs.get(g.me);
    let c = &r.claimants[part as usize];
    c.slot.store(g.me as u32, Relaxed);
    c.pid.store(me.map_or(0, |p| p.pid.load(Relaxed)), Relaxed);
    c.gen.store(me.map_or(0, |p| p.attached_ns.load(Relaxed)), Relaxed);
    r.claimed.fetch_or(bit, Relaxed);
    Ok(())
}

/// Completes a part, claimed or not (again, or of a finished hand-off: a
/// no-op); the last returns the bytes.
pub(crate) fn complete(g: &mut Locked<'_>, token: &Token, part: u32) -> Result<(), Error> {
    let seg = g.seg;
    let index = check(seg, token)?;
    let bit = check_part(token, part)?;
    if let Some(r) = live(seg, index, token) {
        mark_done(g, r, bit);
    }
    Ok(())
}

/// Marks `bits` done; the hand-off finishes when none is left open.
fn mark_done(g: &mut Locked<'_>, r: &HandoffRecord, bits: u64) {
    let all = all_bits(parts_of(r));
    let done = r.done.load(Relaxed) | bits;
    r.done.store(done, Relaxed);
    r.claimed.store(r.claimed.load(Relaxed) & !bits, Relaxed);
    if done & all == all {
        r.state.store(FREE, Relaxed);
        r.deadline_ns.store(0, Relaxed);
        r.futex.fetch_add(1, Relaxed);
        futex::wake(&r.futex, i32::MAX);
        g.seg.handoffs_head.finished.fetch_add(1, Relaxed);
        if r.flags.load(Relaxed) & TOKEN_PLACED != 0 && r.nbytes.load(Relaxed) > 0 {
            g.free_range_at(r.offset.load(Relaxed));
        }
        ring_watchers(g, r);
        g.give(r.nbytes.load(Relaxed).min(MAX_TOTAL));
    }
}

/// Rings the doorbells of the processes watching a finished hand-off.
fn ring_watchers(g: &mut Locked<'_>, r: &HandoffRecord) {
    for (k, w) in r.watchers.iter().enumerate() {
        let bits = w.swap(0, Relaxed);
        for b in (0..64).filter(|b| bits & 1 << b != 0) {
            doorbell::bump_slot(g.seg, k * 64 + b, &mut g.doorbells);
        }
    }
}

/// Marks this process as watching the hand-off, whose finish then rings
/// its doorbell; `true` when it has finished already.
pub(crate) fn watch(g: &Locked<'_>, token: &Token) -> Result<bool, Error> {
    let index = check(g.seg, token)?;
    let Some(r) = live(g.seg, index, token) else { return Ok(true) };
    if let Some(w) = r.watchers.get(g.me / 64) {
        w.fetch_or(1 << (g.me % 64), Relaxed);
    }
    Ok(false)
}

/// Whether a claim deadline has passed (one load, no clock read, when no
/// deadline is set): for the fast paths, which leave expiring to the full
/// path's `expire_due`.
#[inline(always)]
pub(crate) fn any_due(seg: &Segment<'_>) -> bool {
    let next = seg.handoffs_head.next_deadline_ns.load(Relaxed);
    next != 0 && now_ns() >= next
}

/// Expires what is due, if a claim deadline has passed (one load when none).
#[inline]
pub(crate) fn expire_due(g: &mut Locked<'_>) {
    let next = g.seg.handoffs_head.next_deadline_ns.load(Relaxed);
    if next != 0 {
        expire(g, next);
    }
}

#[cold]
fn expire(g: &mut Locked<'_>, next: u64) {
    let now = now_ns();
    if now < next {
        return;
    }
    let seg = g.seg;
    let mut earliest = 0u64;
    for r in seg.handoffs {
        let at = r.deadline_ns.load(Relaxed);
        if r.state.load(Relaxed) != LIVE || at == 0 {
            continue;
        }
        if now < at {
            earliest = if earliest == 0 { at } else { earliest.min(at) };
            continue;
        }
        // The deadline passes once, whether or not a part lapses.
        r.deadline_ns.store(0, Relaxed);
        let all = all_bits(parts_of(r));
        let lapsed = all & !r.done.load(Relaxed) & !r.claimed.load(Relaxed);
        if lapsed == 0 {
            continue;
        }
        let n = lapsed.count_ones();
        seg.handoffs_head.expired_parts.fetch_add(u64::from(n), Relaxed);
        let left = (all & !(r.done.load(Relaxed) | lapsed)).count_ones();
        log::log(
            Level::Warn,
            &format!(
                "shared pool: hand-off {:#x} ({} bytes): {n} part(s) nobody claimed by the claim deadline expired; \
                 {left} part(s) still open",
                r.id.load(Relaxed),
                r.nbytes.load(Relaxed)
            ),
        );
        mark_done(g, r, lapsed);
    }
    seg.handoffs_head.next_deadline_ns.store(earliest, Relaxed);
}

/// `slice`, shortened to end at the next claim deadline (for waiters in
/// line, which then expire it).
pub(crate) fn until_deadline(seg: &Segment<'_>, slice: Duration) -> Duration {
    match seg.handoffs_head.next_deadline_ns.load(Relaxed) {
        0 => slice,
        at => slice.min(Duration::from_nanos(at.saturating_sub(now_ns()))),
    }
}

/// The process in `slot` left (detached, or died and was reaped): the parts
/// it claimed and had not completed complete by themselves.
pub(crate) fn release_claims(g: &mut Locked<'_>, slot: usize) {
    let seg = g.seg;
    for r in seg.handoffs {
        if r.state.load(Relaxed) != LIVE {
            continue;
        }
        let claimed = r.claimed.load(Relaxed) & all_bits(parts_of(r));
        let bits = (0..PARTS)
            .filter(|&p| claimed & 1 << p != 0 && r.claimants[p].slot.load(Relaxed) as usize == slot)
            .fold(0u64, |b, p| b | 1 << p);
        if bits != 0 {
            log::log(
                Level::Warn,
                &format!(
                    "shared pool: hand-off {:#x}: {} part(s) claimed by a process that left (slot {slot}) \
                     completed by themselves",
                    r.id.load(Relaxed),
                    bits.count_ones()
                ),
            );
            mark_done(g, r, bits);
        }
    }
}

/// Makes the records whole (see `Locked::repair`): drops those that cannot
/// be right, completes claims of processes no longer attached, ends those
/// left without an open part; returns the bytes the rest hold.
pub(crate) fn repair(seg: &Segment<'_>) -> u64 {
    let mut held = 0u64;
    let mut earliest = 0u64;
    for (i, r) in seg.handoffs.iter().enumerate() {
        let state = r.state.load(Relaxed);
        if state == FREE {
            continue;
        }
        let (parts, id) = (r.parts.load(Relaxed), r.id.load(Relaxed));
        let sound = state == LIVE
            && (1..=MAX_PARTS).contains(&parts)
            && (id & ((1 << INDEX_BITS) - 1)) as usize == i
            && id >> INDEX_BITS != 0
            && id >> INDEX_BITS < seg.handoffs_head.next_seq.load(Relaxed)
            && r.nbytes.load(Relaxed) <= MAX_TOTAL;
        if !sound {
            r.state.store(FREE, Relaxed);
            continue;
        }
        let claimed = r.claimed.load(Relaxed);
        let stale = (0..PARTS)
            .filter(|&p| {
                let c = &r.claimants[p];
                claimed & 1 << p != 0
                    && !seg.procs.get(c.slot.load(Relaxed) as usize).is_some_and(|proc| {
                        proc.state.load(Relaxed) == PROC_ATTACHED
                            && proc.attached_ns.load(Relaxed) == c.gen.load(Relaxed)
                    })
            })
            .fold(0u64, |b, p| b | 1 << p);
        let all = all_bits(parts);
        let done = r.done.load(Relaxed) | stale;
        r.done.store(done, Relaxed);
        r.claimed.store(claimed & !stale & all, Relaxed);
        if done & all == all {
            r.state.store(FREE, Relaxed);
            r.futex.fetch_add(1, Relaxed);
            futex::wake(&r.futex, i32::MAX);
            continue;
        }
        held = held.saturating_add(r.nbytes.load(Relaxed));
        let at = r.deadline_ns.load(Relaxed);
        if at != 0 {
            earliest = if earliest == 0 { at } else { earliest.min(at) };
        }
    }
    seg.handoffs_head.next_deadline_ns.store(earliest, Relaxed);
    held.min(MAX_TOTAL)
}

/// Zeroes the counters of an abandoned pool starting over (the key and the
/// count of tokens stay, so no old token is taken for a new one); the
/// outstanding hand-offs stay too, made whole as by `repair`: returns the
/// bytes they hold.
pub(crate) fn reset(seg: &Segment<'_>) -> u64 {
    let h = seg.handoffs_head;
    for c in [&h.shared, &h.finished, &h.expired_parts] {
        c.store(0, Relaxed);
    }
    repair(seg)
}

/// The ranges live hand-offs of a placed pool hold: `(offset, nbytes)`.
pub(crate) fn held_ranges(seg: &Segment<'_>) -> Vec<(u64, u64)> {
    let holds = |r: &&HandoffRecord| {
        r.state.load(Relaxed) == LIVE && r.flags.load(Relaxed) & TOKEN_PLACED != 0 && r.nbytes.load(Relaxed) > 0
    };
    seg.handoffs.iter().filter(holds).map(|r| (r.offset.load(Relaxed), r.nbytes.load(Relaxed))).collect()
}

/// Ends lease entry `i` without returning its bytes: they are a hand-off's now.
pub(crate) fn take_lease_bytes(g: &Locked<'_>, i: usize) {
    let h = g.seg.header;
    g.entry(i).state.store(super::segment::FREE, Relaxed);
    h.leases.store(h.leases.load(Relaxed).saturating_sub(1), Relaxed);
}

/// How the producer's wait stands: `None` once the hand-off finished, else
/// its record's wake-up word and the value to sleep on.
pub(crate) fn pending<'a>(seg: &Segment<'a>, token: &Token) -> Result<Option<(&'a AtomicU32, u32)>, Error> {
    let index = check(seg, token)?;
    Ok(live(seg, index, token).map(|r| (&r.futex, r.futex.load(Relaxed))))
}

fn info_of(h: &HandoffsHead, r: &HandoffRecord, now: u64) -> HandoffInfo {
    let all = all_bits(parts_of(r));
    HandoffInfo {
        token: token_of(h, r),
        nbytes: r.nbytes.load(Relaxed),
        parts_left: (all & !r.done.load(Relaxed)).count_ones(),
        claimed: (all & r.claimed.load(Relaxed)).count_ones(),
        age: Duration::from_nanos(now.saturating_sub(r.since_ns.load(Relaxed))),
    }
}

/// What an outstanding hand-off is now; `None` once it finished.
pub(crate) fn info(seg: &Segment<'_>, token: &Token) -> Result<Option<HandoffInfo>, Error> {
    let index = check(seg, token)?;
    Ok(live(seg, index, token).map(|r| info_of(seg.handoffs_head, r, now_ns())))
}

/// Every outstanding hand-off, oldest first.
pub(crate) fn list(seg: &Segment<'_>) -> Vec<SharedHandoff> {
    let now = now_ns();
    let mut all: Vec<SharedHandoff> = seg
        .handoffs
        .iter()
        .filter(|r| r.state.load(Relaxed) == LIVE)
        .map(|r| {
            let claimed = r.claimed.load(Relaxed) & all_bits(parts_of(r));
            SharedHandoff {
                info: info_of(seg.handoffs_head, r, now),
                producer_pid: r.producer_pid.load(Relaxed),
                claimants: (0..PARTS)
                    .filter(|&p| claimed & 1 << p != 0)
                    .map(|p| r.claimants[p].pid.load(Relaxed))
                    .collect(),
            }
        })
        .collect();
    all.sort_by_key(|s| s.info.token.id >> INDEX_BITS);
    all
}

/// The hand-off figures.
pub(crate) fn stats(seg: &Segment<'_>) -> HandoffStats {
    let h = seg.handoffs_head;
    let live = seg.handoffs.iter().filter(|r| r.state.load(Relaxed) == LIVE);
    let (outstanding, held_bytes) =
        live.fold((0u64, 0u64), |(n, b), r| (n + 1, b.saturating_add(r.nbytes.load(Relaxed).min(MAX_TOTAL))));
    HandoffStats {
        outstanding,
        held_bytes,
        shared: h.shared.load(Relaxed),
        finished: h.finished.load(Relaxed),
        expired_parts: h.expired_parts.load(Relaxed),
    }
}
