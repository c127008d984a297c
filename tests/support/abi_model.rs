//! A reference model of mmpool's C ABI and a driver that runs one sequence of
//! calls on the library and on the model side by side. After every call it
//! asserts that both agree: the status code, the out-parameters (written on
//! success, untouched on failure), the message of `mmpool_last_error`, the
//! available bytes and every deterministic field of `mmpool_stats`.
//!
//! The driver is single-threaded, so the model is exact: what a call returns
//! follows from the calls before it. No call is made that could block.
//!
//! Shared by the property tests (tests/proptest_abi.rs), the fuzz target
//! (fuzz/fuzz_targets/abi.rs) and the replay of its corpus (tests/fuzz_replay.rs);
//! each includes this file with `#[path]`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::CStr;
use std::ptr;

use ::mmpool::ffi::mmpool_status::{self, *};
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::mmpool_last_error;
use ::mmpool::ffi::split::{mmpool_lease_merge, mmpool_lease_split};
use ::mmpool::ffi::types::{MMPOOL_MAX_TOTAL, MMPOOL_WAIT_FOREVER};
use ::mmpool::ffi::{mmpool, mmpool_handoff_token, mmpool_lease, mmpool_stats, mmpool_ticket};

#[path = "abi_handoff.rs"]
mod handoff;
#[path = "abi_placed.rs"]
mod placed;
pub use handoff::{Deadline, TokenRef};
use placed::Placement;

/// Pools driven at once; operations name one by `slot % SLOTS`.
pub const SLOTS: usize = 4;
/// The slot whose first pool is placed.
pub const PLACED_SLOT: u8 = 3;
/// A tight pool, a roomy one, a huge one and a placed one (total,
/// alignment; 0: not placed).
const INITIAL: [(u64, u64); SLOTS] = [(8, 0), (1000, 0), (1 << 40, 0), (1000, 8)];

/// A byte count, mostly relative to the pool's total so that the interesting
/// edges (exactly the total, one more) come up often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 0 to 15 bytes.
    Small(u8),
    Total,
    TotalMinus1,
    TotalPlus1,
    Half,
    /// 2^60, the largest total a pool accepts.
    MaxTotal,
    MaxTotalPlus1,
    Max,
    Raw(u64),
}

impl Size {
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Size::Small(n) => u64::from(n % 16),
            Size::Total => total,
            Size::TotalMinus1 => total.saturating_sub(1),
            Size::TotalPlus1 => total.saturating_add(1),
            Size::Half => total / 2,
            Size::MaxTotal => MMPOOL_MAX_TOTAL,
            Size::MaxTotalPlus1 => MMPOOL_MAX_TOTAL + 1,
            Size::Max => u64::MAX,
            Size::Raw(n) => n,
        }
    }
}

/// A lease or ticket id given to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRef {
    /// One of the ids the library has handed out so far, of any pool.
    Known(u16),
    Zero,
    /// An id no pool of this process issued (its pool tag is above 2^23).
    Garbage(u64),
    /// One of the slot's live leases or unredeemed tickets (0 when none):
    /// in a long sequence, `Known` mostly names ids long gone.
    Live(u16),
}

impl IdRef {
    fn resolve(self, known: &[u64], m: &Model) -> u64 {
        match self {
            IdRef::Known(_) if known.is_empty() => 0,
            IdRef::Known(i) => known[usize::from(i) % known.len()],
            IdRef::Zero => 0,
            IdRef::Garbage(x) => x | 1 << 63,
            // A lease for even `i`, a ticket for odd (either when the other kind is none).
            IdRef::Live(i) => {
                let i = usize::from(i / 2);
                if m.fates.is_empty() || (i % 2 == 0 && !m.leases.is_empty()) {
                    return m.leases.keys().nth(i % m.leases.len().max(1)).copied().unwrap_or(0);
                }
                let mut tickets: Vec<u64> = m.fates.keys().copied().collect();
                tickets.sort_unstable();
                tickets[i % tickets.len()]
            }
        }
    }
}

/// One call (or, for `RefUnref` and `Null`, a small group of calls) of the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `mmpool_init` into a slot; a valid total replaces the slot's pool,
    /// whose leases and tickets are returned first.
    Init { slot: u8, total: Size },
    /// `mmpool_acquire`, made only when the model says it cannot block.
    Acquire { slot: u8, size: Size },
    /// `mmpool_acquire_timeout` with a timeout of 0.
    AcquireNoWait { slot: u8, size: Size },
    TryAcquire { slot: u8, size: Size },
    /// `mmpool_release`, with a made-up `nbytes` the pool must ignore.
    Release { slot: u8, id: IdRef, nbytes: u64 },
    Enqueue { slot: u8, size: Size },
    /// `mmpool_ticket_wait` with a timeout of 0, or without limit when the
    /// model says the ticket's fate is already settled.
    TicketWait { slot: u8, id: IdRef, forever: bool },
    TicketCancel { slot: u8, id: IdRef },
    /// `mmpool_lease_resize` with a timeout of 0.
    Resize { slot: u8, id: IdRef, size: Size },
    SetTotal { slot: u8, total: Size },
    Close { slot: u8 },
    /// `mmpool_get_stats` with the struct size picked by `size_sel`.
    Stats { slot: u8, size_sel: u8 },
    /// `mmpool_ref` then `mmpool_unref`: the pool must stay usable.
    RefUnref { slot: u8 },
    /// A call with a NULL where a pointer is required, picked by `call`.
    Null { slot: u8, call: u8 },
    /// `mmpool_lease_split` of `size` bytes off a lease.
    Split { slot: u8, id: IdRef, size: Size },
    /// `mmpool_lease_merge` of lease `from` into lease `into`.
    Merge { slot: u8, into: IdRef, from: IdRef },
    /// `mmpool_lease_share` of a lease in `parts` parts with `flags`
    /// (`MMPOOL_SHARE_KEEP_LEASE`, or an unknown bit).
    Share { slot: u8, id: IdRef, parts: u8, flags: u8, deadline: Deadline },
    /// `mmpool_handoff_claim` of the part `part` picks (see `handoff::part`).
    Claim { slot: u8, token: TokenRef, part: u8 },
    Complete { slot: u8, token: TokenRef, part: u8 },
    /// `mmpool_handoff_wait` with a timeout of 0.
    WaitHandoff { slot: u8, token: TokenRef },
    /// `mmpool_get_handoff_stats`, or with a NULL pointer.
    HandoffStats { slot: u8, null: bool },
    /// `mmpool_init_placed` into a slot, alignment `1 << (align % 14)`, or
    /// for `align` 250 and above an alignment no pool may have (0, 3, 6...).
    InitPlaced { slot: u8, total: Size, align: u8 },
    /// `mmpool_lease_offset`.
    LeaseOffset { slot: u8, id: IdRef },
}

impl Op {
    /// Reads one operation from the front of `data`; `None` when it runs out.
    /// Every byte string decodes to some sequence, so a fuzzer can mutate freely.
    pub fn decode(data: &mut &[u8]) -> Option<Op> {
        let (&code, rest) = data.split_first()?;
        *data = rest;
        let slot = take_u8(data);
        Some(match code % 26 {
            0 => Op::Init { slot, total: take_size(data) },
            1 => Op::Acquire { slot, size: take_size(data) },
            2 => Op::AcquireNoWait { slot, size: take_size(data) },
            3 => Op::TryAcquire { slot, size: take_size(data) },
            4 => Op::Release { slot, id: take_id(data), nbytes: take_u64(data) },
            5 => Op::Enqueue { slot, size: take_size(data) },
            6 => Op::TicketWait { slot, id: take_id(data), forever: take_u8(data) & 1 == 1 },
            7 => Op::TicketCancel { slot, id: take_id(data) },
            8 => Op::Resize { slot, id: take_id(data), size: take_size(data) },
            9 => Op::SetTotal { slot, total: take_size(data) },
            10 => Op::Close { slot },
            11 => Op::Stats { slot, size_sel: take_u8(data) },
            12 => Op::RefUnref { slot },
            13 => Op::Null { slot, call: take_u8(data) },
            14 => Op::Split { slot, id: take_id(data), size: take_size(data) },
            15 => Op::Merge { slot, into: take_id(data), from: take_id(data) },
            16 | 17 => Op::Share {
                slot,
                id: take_id(data),
                parts: take_u8(data),
                flags: take_u8(data),
                deadline: Deadline::decode(take_u8(data)),
            },
            18 => Op::Claim { slot, token: TokenRef::decode(data), part: take_u8(data) },
            19 | 20 => Op::Complete { slot, token: TokenRef::decode(data), part: take_u8(data) },
            21 => Op::WaitHandoff { slot, token: TokenRef::decode(data) },
            22 => Op::HandoffStats { slot, null: take_u8(data) & 1 == 1 },
            23 => Op::InitPlaced { slot, total: take_size(data), align: take_u8(data) },
            _ => Op::LeaseOffset { slot, id: take_id(data) },
        })
    }

    /// The bytes `decode` reads back as this operation (for writing seeds).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let put_size = |out: &mut Vec<u8>, s: Size| match s {
            Size::Small(n) => out.push(n % 16),
            Size::Total => out.push(16),
            Size::TotalMinus1 => out.push(17),
            Size::TotalPlus1 => out.push(18),
            Size::Half => out.push(19),
            Size::MaxTotal => out.push(20),
            Size::MaxTotalPlus1 => out.push(21),
            Size::Max => out.push(22),
            Size::Raw(n) => {
                out.push(23);
                out.extend_from_slice(&n.to_le_bytes());
            }
        };
        let put_id = |out: &mut Vec<u8>, id: IdRef| match id {
            IdRef::Known(i) => {
                out.push(0);
                out.extend_from_slice(&i.to_le_bytes());
            }
            IdRef::Zero => out.push(1),
            IdRef::Garbage(x) => {
                out.push(2);
                out.extend_from_slice(&x.to_le_bytes());
            }
            IdRef::Live(i) => {
                out.push(3);
                out.extend_from_slice(&i.to_le_bytes());
            }
        };
        match *self {
            Op::Init { slot, total } => {
                out.extend([0, slot]);
                put_size(out, total);
            }
            Op::Acquire { slot, size } => {
                out.extend([1, slot]);
                put_size(out, size);
            }
            Op::AcquireNoWait { slot, size } => {
                out.extend([2, slot]);
                put_size(out, size);
            }
            Op::TryAcquire { slot, size } => {
                out.extend([3, slot]);
                put_size(out, size);
            }
            Op::Release { slot, id, nbytes } => {
                out.extend([4, slot]);
                put_id(out, id);
                out.extend_from_slice(&nbytes.to_le_bytes());
            }
            Op::Enqueue { slot, size } => {
                out.extend([5, slot]);
                put_size(out, size);
            }
            Op::TicketWait { slot, id, forever } => {
                out.extend([6, slot]);
                put_id(out, id);
                out.push(u8::from(forever));
            }
            Op::TicketCancel { slot, id } => {
                out.extend([7, slot]);
                put_id(out, id);
            }
            Op::Resize { slot, id, size } => {
                out.extend([8, slot]);
                put_id(out, id);
                put_size(out, size);
            }
            Op::SetTotal { slot, total } => {
                out.extend([9, slot]);
                put_size(out, total);
            }
            Op::Close { slot } => out.extend([10, slot]),
            Op::Stats { slot, size_sel } => out.extend([11, slot, size_sel]),
            Op::RefUnref { slot } => out.extend([12, slot]),
            Op::Null { slot, call } => out.extend([13, slot, call]),
            Op::Split { slot, id, size } => {
                out.extend([14, slot]);
                put_id(out, id);
                put_size(out, size);
            }
            Op::Merge { slot, into, from } => {
                out.extend([15, slot]);
                put_id(out, into);
                put_id(out, from);
            }
            Op::Share { slot, id, parts, flags, deadline } => {
                out.extend([16, slot]);
                put_id(out, id);
                out.extend([parts, flags, deadline.encode()]);
            }
            Op::Claim { slot, token, part } => {
                out.extend([18, slot]);
                token.encode(out);
                out.push(part);
            }
            Op::Complete { slot, token, part } => {
                out.extend([19, slot]);
                token.encode(out);
                out.push(part);
            }
            Op::WaitHandoff { slot, token } => {
                out.extend([21, slot]);
                token.encode(out);
            }
            Op::HandoffStats { slot, null } => out.extend([22, slot, u8::from(null)]),
            Op::InitPlaced { slot, total, align } => {
                out.extend([23, slot]);
                put_size(out, total);
                out.push(align);
            }
            Op::LeaseOffset { slot, id } => {
                out.extend([24, slot]);
                put_id(out, id);
            }
        }
    }
}

fn take_u8(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((&b, rest)) => {
            *data = rest;
            b
        }
        None => 0,
    }
}

fn take_u64(data: &mut &[u8]) -> u64 {
    let n = data.len().min(8);
    let mut bytes = [0u8; 8];
    bytes[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    u64::from_le_bytes(bytes)
}

fn take_size(data: &mut &[u8]) -> Size {
    match take_u8(data) % 24 {
        n @ 0..=15 => Size::Small(n),
        16 => Size::Total,
        17 => Size::TotalMinus1,
        18 => Size::TotalPlus1,
        19 => Size::Half,
        20 => Size::MaxTotal,
        21 => Size::MaxTotalPlus1,
        22 => Size::Max,
        _ => Size::Raw(take_u64(data)),
    }
}

fn take_id(data: &mut &[u8]) -> IdRef {
    match take_u8(data) % 4 {
        0 => IdRef::Known(u16::from_le_bytes([take_u8(data), take_u8(data)])),
        1 => IdRef::Zero,
        2 => IdRef::Garbage(take_u64(data)),
        _ => IdRef::Live(u16::from_le_bytes([take_u8(data), take_u8(data)])),
    }
}

/// Runs every operation `data` decodes to, then retires all pools.
pub fn run_bytes(mut data: &[u8]) {
    let mut h = Harness::new();
    while let Some(op) = Op::decode(&mut data) {
        h.apply(op);
    }
    h.finish();
}

/// Runs `ops`, then retires all pools.
pub fn run_ops(ops: &[Op]) {
    let mut h = Harness::new();
    for &op in ops {
        h.apply(op);
    }
    h.finish();
}

// ---- the model ---------------------------------------------------------------

/// Where a ticket stands until it is redeemed or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Waiting,
    Granted(u64),
    Failed(mmpool_status),
}

/// The counters of `mmpool_stats` that a single thread determines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counters {
    peak: u64,
    grants: u64,
    waited_grants: u64,
    timeouts: u64,
    would_blocks: u64,
    capacity_rejections: u64,
    closed_rejections: u64,
}

/// What one pool should be, written from the ABI's documented rules.
#[derive(Debug)]
struct Model {
    total: u64,
    /// Free bytes; negative after the total was lowered below what is in use.
    avail: i128,
    closed: bool,
    leases: BTreeMap<u64, u64>,
    /// Waiting tickets in order of arrival, with their sizes.
    line: VecDeque<(u64, u64)>,
    /// Tickets not yet redeemed or cancelled.
    fates: HashMap<u64, Fate>,
    /// Every lease and ticket id this pool handed out.
    issued: HashSet<u64>,
    /// The ticket ids among them (a lease id is no ticket).
    tickets: HashSet<u64>,
    c: Counters,
    handoffs: handoff::Handoffs,
    /// The ranges of a placed pool.
    placed: Option<Placement>,
}

/// What a request for bytes comes to when it is made.
#[derive(Debug, PartialEq, Eq)]
enum Now {
    Granted,
    MustWait,
    Refused(mmpool_status),
}

impl Model {
    fn new(total: u64, placed: Option<Placement>) -> Self {
        Model {
            total,
            avail: i128::from(total),
            closed: false,
            leases: BTreeMap::new(),
            line: VecDeque::new(),
            fates: HashMap::new(),
            issued: HashSet::new(),
            tickets: HashSet::new(),
            c: Counters::default(),
            handoffs: handoff::Handoffs::default(),
            placed,
        }
    }

    /// Whether `n` bytes can be granted now (in a placed pool: a free
    /// range has room for them).
    fn fits(&self, n: u64) -> bool {
        i128::from(n) <= self.avail && self.placed.as_ref().map_or(true, |p| p.fits(self.total, n))
    }

    /// Checks and records where a placed pool put the `n` bytes just granted to `id`.
    fn place(&mut self, id: u64, n: u64) {
        if let Some(p) = self.placed.as_mut() {
            p.place(self.total, id, n);
        }
    }

    /// Frees `id`'s range in a placed pool (before its bytes go back).
    fn unplace(&mut self, id: u64) {
        if let Some(p) = self.placed.as_mut() {
            p.free(id);
        }
    }

    fn in_use(&self) -> u64 {
        (i128::from(self.total) - self.avail).max(0) as u64
    }

    fn take(&mut self, n: u64) {
        self.avail -= i128::from(n);
        self.c.peak = self.c.peak.max(self.in_use());
    }

    /// Grants from the head of the line while the bytes reach, strictly in order.
    fn grant_ready(&mut self) {
        while let Some(&(ticket, n)) = self.line.front() {
            if !self.fits(n) {
                return;
            }
            self.line.pop_front();
            self.take(n);
            self.place(ticket, n);
            self.c.waited_grants += 1;
            self.fates.insert(ticket, Fate::Granted(n));
        }
    }

    fn give(&mut self, n: u64) {
        self.avail += i128::from(n);
        self.grant_ready();
    }

    /// Whether an acquire of `n` would have to wait (it is not refused at once).
    fn would_wait(&self, n: u64) -> bool {
        n <= self.total && n > 0 && !self.closed && !(self.line.is_empty() && self.fits(n))
    }

    /// An acquire of `n` without waiting: refusals are counted here, the
    /// caller counts what "must wait" means for its form.
    fn request(&mut self, n: u64) -> Now {
        if n > self.total {
            self.c.capacity_rejections += 1;
            return Now::Refused(MMPOOL_ERR_EXCEEDS_CAPACITY);
        }
        if self.closed {
            self.c.closed_rejections += 1;
            return Now::Refused(MMPOOL_ERR_CLOSED);
        }
        if n == 0 {
            return Now::Granted;
        }
        if self.line.is_empty() && self.fits(n) {
            self.take(n);
            return Now::Granted;
        }
        Now::MustWait
    }

    fn pending(&self, id: u64) -> bool {
        self.fates.contains_key(&id)
    }
}

// ---- the driver --------------------------------------------------------------

struct Slot {
    handle: *mut mmpool,
    model: Model,
}

/// Runs operations on real pools and on their models, checking each step.
pub struct Harness {
    slots: Vec<Slot>,
    /// Every id the library handed out, in order, for `IdRef::Known`.
    known: Vec<u64>,
    seen: HashSet<u64>,
    /// Every hand-off token the library handed out, in order, for `TokenRef`.
    tokens: Vec<mmpool_handoff_token>,
    steps: u64,
    /// Every operation goes to this slot, and only it is checked after each.
    only: Option<usize>,
}

const SENTINEL_LEASE: mmpool_lease = mmpool_lease { id: 0x5e47_1e1e, nbytes: 0xdead_beef };
const SENTINEL_TICKET: mmpool_ticket = mmpool_ticket { id: 0x5e47_1e1f };
const STATS_WORDS: usize = std::mem::size_of::<mmpool_stats>() / 8;
const SENTINEL_WORD: u64 = 0xa5a5_a5a5_a5a5_a5a5;

fn last_error() -> String {
    // SAFETY: mmpool_last_error never returns NULL and its text stays valid
    // until the next failing call on this thread.
    unsafe { CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

/// Checks a status against the expected one; a failure must leave a message
/// naming the function.
fn check_status(function: &str, got: mmpool_status, want: mmpool_status, ctx: &dyn std::fmt::Debug) {
    assert_eq!(got, want, "{function} returned {got:?}, the model expects {want:?} ({ctx:?}); last error: {}", last_error());
    if want != MMPOOL_OK {
        let msg = last_error();
        assert!(msg.starts_with(function), "{function} failed with message `{msg}`");
    }
}

impl Harness {
    pub fn new() -> Self {
        let mut h = Harness { slots: Vec::new(), known: Vec::new(), seen: HashSet::new(), tokens: Vec::new(), steps: 0, only: None };
        for (total, align) in INITIAL {
            h.slots.push(Slot { handle: ptr::null_mut(), model: Model::new(total, None) });
            let slot = h.slots.len() - 1;
            if align == 0 {
                let handle = h.init_ok(total);
                h.slots[slot] = Slot { handle, model: Model::new(total, None) };
            } else {
                h.init_placed(slot, total, align);
            }
        }
        h
    }

    /// A harness whose operations all go to the placed slot, checked alone
    /// after each (for long sequences).
    pub fn placed_only() -> Self {
        Harness { only: Some(usize::from(PLACED_SLOT)), ..Harness::new() }
    }

    /// What the placed slot saw: its grants, waited grants and would-blocks.
    pub fn placed_figures(&self) -> String {
        let c = &self.slots[usize::from(PLACED_SLOT)].model.c;
        format!("{} grants, {} after waiting, {} would-blocks", c.grants, c.waited_grants, c.would_blocks)
    }

    fn id(&self, slot: usize, id: IdRef) -> u64 {
        id.resolve(&self.known, &self.slots[slot].model)
    }

    fn token(&self, slot: usize, token: TokenRef) -> mmpool_handoff_token {
        token.resolve(&self.tokens, &self.slots[slot].model.handoffs)
    }

    /// Operations applied so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn init_ok(&mut self, total: u64) -> *mut mmpool {
        let mut p = ptr::null_mut();
        check_status("mmpool_init", mmpool_init(total, &mut p), MMPOOL_OK, &total);
        assert!(!p.is_null());
        p
    }

    /// Notes a fresh id: never 0, never seen before in any pool.
    fn fresh(&mut self, slot: usize, id: u64) {
        assert_ne!(id, 0, "the library handed out id 0");
        assert!(self.seen.insert(id), "the library handed out id {id:#x} twice");
        self.known.push(id);
        self.slots[slot].model.issued.insert(id);
    }

    pub fn apply(&mut self, op: Op) {
        self.steps += 1;
        let slot = match op {
            Op::Init { slot, .. }
            | Op::Acquire { slot, .. }
            | Op::AcquireNoWait { slot, .. }
            | Op::TryAcquire { slot, .. }
            | Op::Release { slot, .. }
            | Op::Enqueue { slot, .. }
            | Op::TicketWait { slot, .. }
            | Op::TicketCancel { slot, .. }
            | Op::Resize { slot, .. }
            | Op::SetTotal { slot, .. }
            | Op::Close { slot }
            | Op::Stats { slot, .. }
            | Op::RefUnref { slot }
            | Op::Null { slot, .. }
            | Op::Split { slot, .. }
            | Op::Merge { slot, .. }
            | Op::Share { slot, .. }
            | Op::Claim { slot, .. }
            | Op::Complete { slot, .. }
            | Op::WaitHandoff { slot, .. }
            | Op::HandoffStats { slot, .. }
            | Op::InitPlaced { slot, .. }
            | Op::LeaseOffset { slot, .. } => self.only.unwrap_or(usize::from(slot) % SLOTS),
        };
        let total = self.slots[slot].model.total;
        match op {
            Op::Init { total: size, .. } => self.init(slot, size.bytes(total)),
            Op::Acquire { size, .. } => {
                let n = size.bytes(total);
                if !self.slots[slot].model.would_wait(n) {
                    self.acquire(slot, n, Form::Blocking);
                }
            }
            Op::AcquireNoWait { size, .. } => self.acquire(slot, size.bytes(total), Form::NoWait),
            Op::TryAcquire { size, .. } => self.acquire(slot, size.bytes(total), Form::Try),
            Op::Release { id, nbytes, .. } => {
                let id = self.id(slot, id);
                self.release(slot, id, nbytes);
            }
            Op::Enqueue { size, .. } => self.enqueue(slot, size.bytes(total)),
            Op::TicketWait { id, forever, .. } => {
                let id = self.id(slot, id);
                let settled = self.slots[slot].model.fates.get(&id) != Some(&Fate::Waiting);
                self.ticket_wait(slot, id, forever && settled);
            }
            Op::TicketCancel { id, .. } => {
                let id = self.id(slot, id);
                self.ticket_cancel(slot, id);
            }
            Op::Resize { id, size, .. } => {
                let id = self.id(slot, id);
                self.resize(slot, id, size.bytes(total));
            }
            Op::SetTotal { total: size, .. } => self.set_total(slot, size.bytes(total)),
            Op::Close { .. } => self.close(slot),
            Op::Stats { size_sel, .. } => self.sized_stats(slot, size_sel),
            Op::RefUnref { .. } => {
                let p = self.slots[slot].handle;
                mmpool_ref(p);
                mmpool_unref(p);
            }
            Op::Null { call, .. } => self.null_call(slot, call),
            Op::Split { id, size, .. } => {
                let id = self.id(slot, id);
                self.split(slot, id, size.bytes(total));
            }
            Op::Merge { into, from, .. } => {
                let (into, from) = (self.id(slot, into), self.id(slot, from));
                self.merge(slot, into, from);
            }
            Op::Share { id, parts, flags, deadline, .. } => {
                let id = self.id(slot, id);
                self.share(slot, id, u32::from(parts), u32::from(flags), deadline);
            }
            Op::Claim { token, part, .. } => {
                let token = self.token(slot, token);
                self.claim(slot, token, handoff::part(&token, part));
            }
            Op::Complete { token, part, .. } => {
                let token = self.token(slot, token);
                self.complete(slot, token, handoff::part(&token, part));
            }
            Op::WaitHandoff { token, .. } => {
                let token = self.token(slot, token);
                self.wait_handoff(slot, token);
            }
            Op::HandoffStats { null, .. } => self.handoff_stats(slot, null),
            Op::InitPlaced { total: size, align, .. } => {
                let align = if align >= 250 { 3 * u64::from(align - 250) } else { 1 << (align % 14) };
                self.init_placed(slot, size.bytes(total), align);
            }
            Op::LeaseOffset { id, .. } => {
                let id = self.id(slot, id);
                self.lease_offset(slot, id);
            }
        }
        self.check_all();
    }

    /// Returns every lease and ticket of every pool, checks the pools came
    /// back whole, and drops the handles.
    pub fn finish(mut self) {
        for slot in 0..SLOTS {
            self.retire(slot);
        }
        self.slots.clear();
    }

    fn init(&mut self, slot: usize, total: u64) {
        let mut p = SENTINEL_TICKET.id as *mut mmpool;
        let st = mmpool_init(total, &mut p);
        if total == 0 || total > MMPOOL_MAX_TOTAL {
            check_status("mmpool_init", st, MMPOOL_ERR_INVALID_ARGUMENT, &total);
            assert_eq!(p, SENTINEL_TICKET.id as *mut mmpool, "out_pool written on failure");
            return;
        }
        check_status("mmpool_init", st, MMPOOL_OK, &total);
        self.retire(slot);
        self.slots[slot] = Slot { handle: p, model: Model::new(total, None) };
    }

    /// Cancels every pending ticket and releases every lease of a slot's pool
    /// (each call checked against the model), asserts that all bytes came
    /// back, then drops the handle.
    fn retire(&mut self, slot: usize) {
        self.finish_handoffs(slot);
        loop {
            let m = &self.slots[slot].model;
            // Cancel in order of arrival; a cancel may grant the ones behind.
            let next = m.line.front().map(|&(t, _)| t).or_else(|| m.fates.keys().min().copied());
            match next {
                Some(t) => self.ticket_cancel(slot, t),
                None => break,
            }
        }
        let leases: Vec<u64> = self.slots[slot].model.leases.keys().copied().collect();
        for id in leases {
            self.release(slot, id, 0);
        }
        let s = self.stats(slot);
        assert_eq!(
            (s.available_bytes, s.in_use_bytes, s.outstanding_leases, s.waiters, s.largest_free_range, s.free_ranges),
            (s.total_bytes, 0, 0, 0, s.total_bytes, 1)
        );
        mmpool_unref(self.slots[slot].handle);
        self.slots[slot].handle = ptr::null_mut();
    }

    fn acquire(&mut self, slot: usize, n: u64, form: Form) {
        let p = self.slots[slot].handle;
        let mut out = SENTINEL_LEASE;
        let (function, st) = match form {
            Form::Blocking => ("mmpool_acquire", mmpool_acquire(p, n, &mut out)),
            Form::NoWait => ("mmpool_acquire_timeout", mmpool_acquire_timeout(p, n, 0, &mut out)),
            Form::Try => ("mmpool_try_acquire", mmpool_try_acquire(p, n, &mut out)),
        };
        let m = &mut self.slots[slot].model;
        let want = match m.request(n) {
            Now::Granted => MMPOOL_OK,
            Now::Refused(status) => status,
            Now::MustWait => match form {
                Form::Blocking => unreachable!("a blocking acquire is only made when it cannot wait"),
                Form::NoWait => {
                    m.c.timeouts += 1;
                    MMPOOL_ERR_TIMEOUT
                }
                Form::Try => {
                    m.c.would_blocks += 1;
                    MMPOOL_ERR_WOULD_BLOCK
                }
            },
        };
        check_status(function, st, want, &(n, &m.line));
        if want == MMPOOL_OK {
            assert_eq!(out.nbytes, n);
            self.fresh(slot, out.id);
            let m = &mut self.slots[slot].model;
            m.leases.insert(out.id, n);
            m.place(out.id, n);
            if m.placed.is_some() && n > 0 {
                // A placed pool grants through its line: the lease's id is
                // a ticket's, and cancelling it is the no-op of an ended one.
                m.tickets.insert(out.id);
            }
            m.c.grants += 1;
        } else {
            assert_eq!(out, SENTINEL_LEASE, "{function} wrote its out-parameter on failure");
        }
    }

    fn release(&mut self, slot: usize, id: u64, nbytes: u64) {
        let st = mmpool_release(self.slots[slot].handle, mmpool_lease { id, nbytes });
        let m = &mut self.slots[slot].model;
        let want = if !m.issued.contains(&id) {
            MMPOOL_ERR_INVALID_LEASE
        } else if let Some(held) = m.leases.remove(&id) {
            m.unplace(id);
            m.give(held);
            MMPOOL_OK
        } else if m.pending(id) {
            // A ticket still in line or not yet redeemed is no lease.
            MMPOOL_ERR_INVALID_LEASE
        } else {
            // Released before, or a ticket that ended: a no-op.
            MMPOOL_OK
        };
        check_status("mmpool_release", st, want, &id);
    }

    fn enqueue(&mut self, slot: usize, n: u64) {
        let mut out = SENTINEL_TICKET;
        let st = mmpool_enqueue(self.slots[slot].handle, n, &mut out);
        let m = &mut self.slots[slot].model;
        let want = if n > m.total {
            m.c.capacity_rejections += 1;
            MMPOOL_ERR_EXCEEDS_CAPACITY
        } else if m.closed {
            m.c.closed_rejections += 1;
            MMPOOL_ERR_CLOSED
        } else {
            MMPOOL_OK
        };
        check_status("mmpool_enqueue", st, want, &n);
        if want != MMPOOL_OK {
            assert_eq!(out, SENTINEL_TICKET, "mmpool_enqueue wrote its out-parameter on failure");
            return;
        }
        self.fresh(slot, out.id);
        let m = &mut self.slots[slot].model;
        m.tickets.insert(out.id);
        let fate = if n == 0 {
            Fate::Granted(0)
        } else if m.line.is_empty() && m.fits(n) {
            m.take(n);
            m.place(out.id, n);
            Fate::Granted(n)
        } else {
            m.line.push_back((out.id, n));
            Fate::Waiting
        };
        m.fates.insert(out.id, fate);
    }

    fn ticket_wait(&mut self, slot: usize, id: u64, forever: bool) {
        let mut out = SENTINEL_LEASE;
        let timeout = if forever { MMPOOL_WAIT_FOREVER } else { 0 };
        let st = mmpool_ticket_wait(self.slots[slot].handle, mmpool_ticket { id }, timeout, &mut out);
        let m = &mut self.slots[slot].model;
        let want = if !m.tickets.contains(&id) {
            MMPOOL_ERR_INVALID_LEASE
        } else {
            match m.fates.get(&id).copied() {
                None => MMPOOL_ERR_INVALID_LEASE,
                Some(Fate::Waiting) => MMPOOL_ERR_TIMEOUT,
                Some(Fate::Failed(status)) => {
                    m.fates.remove(&id);
                    status
                }
                Some(Fate::Granted(n)) => {
                    m.fates.remove(&id);
                    m.leases.insert(id, n);
                    m.c.grants += 1;
                    assert_eq!(out, mmpool_lease { id, nbytes: n }, "a redeemed ticket's lease keeps its id");
                    MMPOOL_OK
                }
            }
        };
        check_status("mmpool_ticket_wait", st, want, &id);
        if want != MMPOOL_OK {
            assert_eq!(out, SENTINEL_LEASE, "mmpool_ticket_wait wrote its out-parameter on failure");
        }
    }

    fn ticket_cancel(&mut self, slot: usize, id: u64) {
        let st = mmpool_ticket_cancel(self.slots[slot].handle, mmpool_ticket { id });
        let m = &mut self.slots[slot].model;
        let want = if !m.tickets.contains(&id) {
            MMPOOL_ERR_INVALID_LEASE
        } else {
            match m.fates.remove(&id) {
                Some(Fate::Waiting) => {
                    m.line.retain(|&(t, _)| t != id);
                    m.grant_ready();
                }
                Some(Fate::Granted(n)) => {
                    m.unplace(id);
                    m.give(n);
                }
                Some(Fate::Failed(_)) | None => {}
            }
            MMPOOL_OK
        };
        check_status("mmpool_ticket_cancel", st, want, &id);
    }

    fn resize(&mut self, slot: usize, id: u64, new: u64) {
        if self.slots[slot].model.placed.is_some() {
            return self.resize_placed(slot, id, new);
        }
        let before = mmpool_lease { id, nbytes: 0x0dd };
        let mut lease = before;
        let st = mmpool_lease_resize(self.slots[slot].handle, &mut lease, new, 0);
        let m = &mut self.slots[slot].model;
        let held = if m.issued.contains(&id) { m.leases.get(&id).copied() } else { None };
        let want = match held {
            None => MMPOOL_ERR_INVALID_LEASE,
            Some(old) if new <= old => {
                m.leases.insert(id, new);
                m.give(old - new);
                MMPOOL_OK
            }
            // The grown size, not the difference, must fit in the total.
            Some(_) if new > m.total => {
                m.c.capacity_rejections += 1;
                MMPOOL_ERR_EXCEEDS_CAPACITY
            }
            Some(old) => match m.request(new - old) {
                Now::Granted => {
                    m.leases.insert(id, new);
                    MMPOOL_OK
                }
                Now::Refused(status) => status,
                Now::MustWait => {
                    m.c.timeouts += 1;
                    MMPOOL_ERR_TIMEOUT
                }
            },
        };
        check_resized(st, want, lease, before, new);
    }
}

/// Checks what `mmpool_lease_resize` of `before` to `new` bytes returned
/// and left in `lease`: the new size on success, nothing changed on failure.
fn check_resized(st: mmpool_status, want: mmpool_status, lease: mmpool_lease, before: mmpool_lease, new: u64) {
    check_status("mmpool_lease_resize", st, want, &(before.id, new));
    if want == MMPOOL_OK {
        assert_eq!(lease, mmpool_lease { id: before.id, nbytes: new });
    } else {
        assert_eq!(lease, before, "mmpool_lease_resize changed the lease on failure");
    }
}

impl Harness {

    /// A split moves bytes between leases: nothing is freed or taken, and
    /// the new lease counts as a grant.
    fn split(&mut self, slot: usize, id: u64, n: u64) {
        let before = mmpool_lease { id, nbytes: 0x0dd };
        let (mut lease, mut out) = (before, SENTINEL_LEASE);
        let st = mmpool_lease_split(self.slots[slot].handle, &mut lease, n, &mut out);
        let m = &self.slots[slot].model;
        let want = match m.leases.get(&id) {
            None => MMPOOL_ERR_INVALID_LEASE,
            Some(&held) if n == 0 || n >= held => MMPOOL_ERR_INVALID_ARGUMENT,
            Some(_) => MMPOOL_OK,
        };
        check_status("mmpool_lease_split", st, want, &(id, n));
        if want != MMPOOL_OK {
            assert_eq!((lease, out), (before, SENTINEL_LEASE), "mmpool_lease_split wrote on failure");
            return;
        }
        self.fresh(slot, out.id);
        let m = &mut self.slots[slot].model;
        let left = m.leases[&id] - n;
        assert_eq!((lease, out.nbytes), (mmpool_lease { id, nbytes: left }, n));
        m.leases.insert(id, left);
        m.leases.insert(out.id, n);
        let total = m.total;
        if let Some(p) = m.placed.as_mut() {
            p.split(total, id, left, out.id, n);
        }
        m.c.grants += 1;
    }

    /// A merge moves every byte of `from` into `into` and ends `from`.
    fn merge(&mut self, slot: usize, into: u64, from: u64) {
        let before = mmpool_lease { id: into, nbytes: 0x0dd };
        let mut lease = before;
        let st = mmpool_lease_merge(self.slots[slot].handle, &mut lease, mmpool_lease { id: from, nbytes: 1 });
        let m = &mut self.slots[slot].model;
        let want = if into == from {
            MMPOOL_ERR_INVALID_ARGUMENT
        } else if !(m.leases.contains_key(&into) && m.leases.contains_key(&from)) {
            MMPOOL_ERR_INVALID_LEASE
        } else if m.placed.as_ref().is_some_and(|p| !p.adjacent(into, from)) {
            // A placed pool merges only a range that directly follows.
            MMPOOL_ERR_INVALID_ARGUMENT
        } else {
            MMPOOL_OK
        };
        check_status("mmpool_lease_merge", st, want, &(into, from));
        if want != MMPOOL_OK {
            assert_eq!(lease, before, "mmpool_lease_merge wrote on failure");
            return;
        }
        if let Some(p) = m.placed.as_mut() {
            p.merge(into, from);
        }
        let moved = m.leases.remove(&from).unwrap_or(0);
        let merged = m.leases[&into] + moved;
        m.leases.insert(into, merged);
        assert_eq!(lease, mmpool_lease { id: into, nbytes: merged });
    }

    fn set_total(&mut self, slot: usize, new: u64) {
        let st = mmpool_set_total(self.slots[slot].handle, new);
        let m = &mut self.slots[slot].model;
        // The total of a placed pool is fixed: its ranges index one buffer.
        let want = if new == 0 || new > MMPOOL_MAX_TOTAL || m.placed.is_some() {
            MMPOOL_ERR_INVALID_ARGUMENT
        } else {
            m.avail += i128::from(new) - i128::from(m.total);
            m.total = new;
            // Waiters that can never fit fail; nobody's lease is revoked.
            let mut kept = VecDeque::new();
            for (ticket, n) in m.line.drain(..) {
                if n > new {
                    m.c.capacity_rejections += 1;
                    m.fates.insert(ticket, Fate::Failed(MMPOOL_ERR_EXCEEDS_CAPACITY));
                } else {
                    kept.push_back((ticket, n));
                }
            }
            m.line = kept;
            m.grant_ready();
            MMPOOL_OK
        };
        check_status("mmpool_set_total", st, want, &new);
    }

    fn close(&mut self, slot: usize) {
        let st = mmpool_close(self.slots[slot].handle);
        let m = &mut self.slots[slot].model;
        m.closed = true;
        for (ticket, _) in m.line.drain(..) {
            m.c.closed_rejections += 1;
            m.fates.insert(ticket, Fate::Failed(MMPOOL_ERR_CLOSED));
        }
        check_status("mmpool_close", st, MMPOOL_OK, &slot);
    }

    fn stats(&self, slot: usize) -> mmpool_stats {
        let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
        check_status("mmpool_get_stats", mmpool_get_stats(self.slots[slot].handle, &mut s), MMPOOL_OK, &slot);
        s
    }

    /// `mmpool_get_stats` with a struct size other than the current one: an
    /// older caller's shorter struct, a newer caller's longer one, or garbage.
    fn sized_stats(&mut self, slot: usize, size_sel: u8) {
        let full = std::mem::size_of::<mmpool_stats>() as u64;
        let size = match size_sel % 10 {
            0 => full,
            1 => 8,
            2 => 16,
            3 => 24,
            4 => full - 8,
            5 => full + 8,
            6 => full + 64,
            7 => 0,
            8 => 7,
            _ => 8 * u64::from(size_sel / 10) + u64::from(size_sel % 3) * 3,
        };
        let reference = self.stats(slot);
        // Room for the largest size picked above, with sentinels after it.
        let mut buf = [SENTINEL_WORD; STATS_WORDS + 40];
        buf[0] = size;
        let st = mmpool_get_stats(self.slots[slot].handle, buf.as_mut_ptr() as *mut mmpool_stats);
        if size == 0 || size % 8 != 0 {
            check_status("mmpool_get_stats", st, MMPOOL_ERR_INVALID_ARGUMENT, &size);
            assert_eq!(buf[0], size);
            assert!(buf[1..].iter().all(|&w| w == SENTINEL_WORD), "written on failure");
            return;
        }
        check_status("mmpool_get_stats", st, MMPOOL_OK, &size);
        let written = (size.min(full) / 8) as usize;
        assert_eq!(buf[0], written as u64 * 8, "size must say how many bytes were written");
        let words = stats_words(&reference);
        assert_eq!(&buf[1..written], &words[1..written], "a prefix of the current struct");
        assert!(buf[written..].iter().all(|&w| w == SENTINEL_WORD), "written past {written} words");
    }

    /// Each pointer argument the ABI requires, given as NULL: the call must
    /// refuse with NULL_ARGUMENT, write nothing and change nothing.
    fn null_call(&mut self, slot: usize, call: u8) {
        let p = self.slots[slot].handle;
        let null = ptr::null_mut::<mmpool>();
        let some_lease = self.known.last().map_or(mmpool_lease::default(), |&id| mmpool_lease { id, nbytes: 1 });
        let mut out = SENTINEL_LEASE;
        let mut ticket = SENTINEL_TICKET;
        let mut stats = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
        let (function, st) = match call % 16 {
            0 => ("mmpool_init", mmpool_init(1, ptr::null_mut())),
            1 => ("mmpool_acquire", mmpool_acquire(null, 1, &mut out)),
            2 => ("mmpool_acquire", mmpool_acquire(p, 1, ptr::null_mut())),
            3 => ("mmpool_acquire_timeout", mmpool_acquire_timeout(p, 1, 0, ptr::null_mut())),
            4 => ("mmpool_try_acquire", mmpool_try_acquire(p, 1, ptr::null_mut())),
            5 => ("mmpool_release", mmpool_release(null, some_lease)),
            6 => ("mmpool_enqueue", mmpool_enqueue(p, 1, ptr::null_mut())),
            7 => ("mmpool_ticket_wait", mmpool_ticket_wait(p, mmpool_ticket { id: some_lease.id }, 0, ptr::null_mut())),
            8 => ("mmpool_ticket_cancel", mmpool_ticket_cancel(null, mmpool_ticket { id: some_lease.id })),
            9 => ("mmpool_lease_resize", mmpool_lease_resize(p, ptr::null_mut(), 1, 0)),
            10 => ("mmpool_set_total", mmpool_set_total(null, 5)),
            11 => ("mmpool_close", mmpool_close(null)),
            12 => ("mmpool_get_stats", mmpool_get_stats(p, ptr::null_mut())),
            13 => ("mmpool_get_stats", mmpool_get_stats(null, &mut stats)),
            14 => ("mmpool_enqueue", mmpool_enqueue(null, 1, &mut ticket)),
            _ => {
                // The value getters answer 0 for NULL; ref and unref ignore it.
                assert_eq!(mmpool_total_bytes(null), 0);
                assert!(last_error().starts_with("mmpool_total_bytes"), "{}", last_error());
                assert_eq!(mmpool_available_bytes(null), 0);
                assert!(last_error().starts_with("mmpool_available_bytes"), "{}", last_error());
                mmpool_ref(null);
                mmpool_unref(null);
                return;
            }
        };
        check_status(function, st, MMPOOL_ERR_NULL_ARGUMENT, &call);
        assert!(last_error().contains("must not be NULL"), "{}", last_error());
        assert_eq!(out, SENTINEL_LEASE);
        assert_eq!(ticket, SENTINEL_TICKET);
        assert_eq!(stats.total_bytes, 0);
    }

    /// After every step: each pool's figures are the model's.
    fn check_all(&self) {
        for slot in self.only.map_or(0..SLOTS, |only| only..only + 1) {
            let m = &self.slots[slot].model;
            let p = self.slots[slot].handle;
            let s = self.stats(slot);
            let avail = m.avail.max(0) as u64;
            assert_eq!(mmpool_total_bytes(p), m.total);
            assert_eq!(mmpool_available_bytes(p), avail);
            let held: u64 = m.leases.values().sum::<u64>()
                + m.fates.values().map(|f| if let Fate::Granted(n) = f { *n } else { 0 }).sum::<u64>()
                + m.handoffs.held();
            assert_eq!(m.in_use(), held, "the model itself lost bytes");
            assert_eq!(
                (s.total_bytes, s.available_bytes, s.in_use_bytes, s.outstanding_leases, s.waiters),
                (m.total, avail, m.in_use(), m.leases.len() as u64, m.line.len() as u64),
                "slot {slot}: (total, available, in use, leases, waiters) after step {}",
                self.steps
            );
            let c = Counters {
                peak: s.peak_in_use_bytes,
                grants: s.grants,
                waited_grants: s.waited_grants,
                timeouts: s.timeouts,
                would_blocks: s.would_blocks,
                capacity_rejections: s.capacity_rejections,
                closed_rejections: s.closed_rejections,
            };
            assert_eq!(c, m.c, "slot {slot}: counters after step {}", self.steps);
            assert_eq!(s.futile_wakeups, 0, "nothing sleeps in a single thread");
            assert!(s.wait_ns_max <= s.wait_ns_total);
            // The fragmentation figures, recounted from the model's ranges.
            let figures = match &m.placed {
                Some(placed) => {
                    placed.check(m.in_use());
                    placed.figures(m.total)
                }
                None => (avail, u64::from(avail > 0)),
            };
            assert_eq!((s.largest_free_range, s.free_ranges), figures, "slot {slot}: (largest free range, free ranges) after step {}", self.steps);
            self.check_handoffs(slot);
        }
    }
}

/// The stats struct as the words C sees.
fn stats_words(s: &mmpool_stats) -> [u64; STATS_WORDS] {
    // SAFETY: mmpool_stats is repr(C) and made only of u64 fields, so it has
    // the size and alignment of [u64; STATS_WORDS] and no padding.
    unsafe { std::mem::transmute_copy(s) }
}

#[derive(Clone, Copy)]
enum Form {
    Blocking,
    NoWait,
    Try,
}
