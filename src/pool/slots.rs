//! Outstanding leases of the in-process pool, recorded without a lock on the
//! common path.
//!
//! A fixed table of slots, each one atomic word (`generation << 2 | state`)
//! plus the lease's size. A lease id names its slot and the slot's generation
//! at grant time, so ids are never reused and a release finds its record in
//! one step. Claiming, releasing and resizing a slot each pass through `BUSY`,
//! a state held for a few instructions by one thread, during which nobody
//! else touches the slot's size; no thread ever sleeps holding a slot.
//!
//! A thread starts looking for a free slot at a place derived from its stack
//! address, so threads rarely meet on one slot. When `PROBES` slots in a row
//! are busy (a thread holding many leases at once), the lease goes to a small
//! locked overflow map instead. So do the leases of requests that waited in
//! line: they keep their ticket's id, and waiting is the slow path anyway.
//!
//! Id layout: `tag` (22 bits, the pool) | `kind` (2 bits) | 40 bits, where a
//! slot lease's 40 bits are `generation << 10 | slot`, an overflow lease's
//! and a ticket's are a sequence number.

use super::error::Error;
use super::histogram::{size_bucket, SizeCounts, SIZE_BUCKETS};
use super::lease::IdMap;
use super::sync::{spin_wait, AtomicU64, Mutex, Ordering};

// Under loom the table is tiny, so that models stay small and reach the
// overflow map too.
#[cfg(not(loom))]
const SLOT_BITS: u32 = 10;
#[cfg(loom)]
const SLOT_BITS: u32 = 1;
const SLOTS: usize = 1 << SLOT_BITS;
#[cfg(not(loom))]
const PROBES: usize = 16;
#[cfg(loom)]
const PROBES: usize = 1;
const LOW_BITS: u32 = 40;
const LOW_MASK: u64 = (1 << LOW_BITS) - 1;
const KIND_BITS: u32 = 2;
const TAG_SHIFT: u32 = LOW_BITS + KIND_BITS;
const TAG_BITS: u32 = 64 - TAG_SHIFT;
/// A slot whose generation reaches this is retired rather than wrapped.
const GEN_MAX: u64 = (1 << (LOW_BITS - SLOT_BITS)) - 1;

const KIND_SLOT: u64 = 0;
const KIND_OVERFLOW: u64 = 1;
const KIND_TICKET: u64 = 2;

const FREE: u64 = 0;
const BUSY: u64 = 1;
const HELD: u64 = 2;
const STATE: u64 = 3;

// Pool tags are process-wide; std's atomic even under loom, so that the
// counter survives the model's iterations (only uniqueness matters).
static NEXT_TAG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Slot {
    word: AtomicU64,
    nbytes: AtomicU64,
    /// Sizes of the leases granted in this slot, counted by the thread that
    /// holds the slot `BUSY` at that moment (its only writer then); beside
    /// the word that thread has just written, so counting touches no other
    /// memory.
    sizes: SizeCounts,
}

#[derive(Default)]
struct Overflow {
    next_seq: u64,
    /// Leases recorded under their ticket's id.
    ticket_grants: u64,
    leases: IdMap<u64>,
    /// Sizes of the leases recorded here (overflow and ticket leases).
    sizes: [u64; SIZE_BUCKETS],
    sized_bytes: u64,
}

impl Overflow {
    fn count_size(&mut self, nbytes: u64) {
        self.sizes[size_bucket(nbytes)] += 1;
        self.sized_bytes = self.sized_bytes.wrapping_add(nbytes);
    }
}

/// What an id refers to, for the pool that decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdKind {
    Slot { slot: usize, gen: u64 },
    Overflow { seq: u64 },
    Ticket { seq: u64 },
    /// Not an id of this pool (another pool's, 0, or garbage).
    Foreign,
}

/// The outcome of removing a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// It was outstanding; these bytes go back.
    Now(u64),
    /// It was released before.
    Already,
}

/// A slot claimed for a lease about to be granted, and its word before.
#[derive(Clone, Copy)]
pub(crate) struct Claim<'a> {
    slot: &'a Slot,
    index: usize,
    word: u64,
}

pub(crate) struct LeaseSlots {
    tag: u64,
    /// The high bits every slot lease id of this pool shares (tag and kind).
    prefix: u64,
    slots: Box<[Slot; SLOTS]>,
    overflow: Mutex<Overflow>,
}

/// Where this thread starts looking for a free slot: its stack address,
/// mixed, is stable for the thread and differs between threads.
#[inline(always)]
fn home_slot() -> usize {
    (stack_address().wrapping_shr(14).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOT_BITS)) as usize
}

/// An address on this thread's stack: the stack pointer where it is one
/// instruction to read, else a local's address.
#[inline(always)]
fn stack_address() -> u64 {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        let sp: u64;
        // SAFETY: reads the stack pointer into a register; touches no memory.
        unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        sp
    }
    #[cfg(all(target_arch = "aarch64", not(loom)))]
    {
        let sp: u64;
        // SAFETY: reads the stack pointer into a register; touches no memory.
        unsafe { std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        sp
    }
    #[cfg(any(loom, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as u64
    }
}

impl LeaseSlots {
    pub(crate) fn new() -> Result<Self, Error> {
        let tag = NEXT_TAG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A loom run creates millions of pools, one or two alive at a time:
        // there the tags wrap (they need only differ between live pools).
        #[cfg(loom)]
        let tag = tag % ((1 << TAG_BITS) - 1) + 1;
        if tag >= 1 << TAG_BITS {
            return Err(Error::System(format!(
                "this process has created {} pools, the most it can tell apart",
                (1u64 << TAG_BITS) - 1
            )));
        }
        let slots: Box<[Slot]> =
            (0..SLOTS).map(|_| Slot { word: AtomicU64::new(0), nbytes: AtomicU64::new(0), sizes: SizeCounts::new() }).collect();
        let slots: Box<[Slot; SLOTS]> = slots.try_into().map_err(|_| Error::Internal("lease table size".into()))?;
        let overflow = Mutex::new(Overflow { next_seq: 1, ..Overflow::default() });
        Ok(LeaseSlots { tag, prefix: tag << TAG_SHIFT | KIND_SLOT << LOW_BITS, slots, overflow })
    }

    #[inline(always)]
    fn id(&self, kind: u64, low: u64) -> u64 {
        self.tag << TAG_SHIFT | kind << LOW_BITS | low
    }

    /// The id of this pool's ticket number `seq` (counted from 1).
    pub(crate) fn ticket_id(&self, seq: u64) -> Result<u64, Error> {
        if seq > LOW_MASK {
            return Err(Error::System("this pool has issued 2^40 tickets, all it can; create a new pool".into()));
        }
        Ok(self.id(KIND_TICKET, seq))
    }

    pub(crate) fn kind(&self, id: u64) -> IdKind {
        if id >> TAG_SHIFT != self.tag {
            return IdKind::Foreign;
        }
        let low = id & LOW_MASK;
        match (id >> LOW_BITS) & ((1 << KIND_BITS) - 1) {
            KIND_SLOT if low >> SLOT_BITS != 0 => {
                IdKind::Slot { slot: (low as usize) & (SLOTS - 1), gen: low >> SLOT_BITS }
            }
            KIND_OVERFLOW if low != 0 => IdKind::Overflow { seq: low },
            KIND_TICKET if low != 0 => IdKind::Ticket { seq: low },
            _ => IdKind::Foreign,
        }
    }

    /// Records the lease of a granted ticket under the ticket's own id.
    pub(crate) fn insert_ticket(&self, ticket: u64, nbytes: u64) {
        let mut overflow = self.overflow.lock();
        overflow.leases.insert(ticket, nbytes);
        overflow.ticket_grants += 1;
        overflow.count_size(nbytes);
    }

    /// Claims this thread's home slot for a lease about to be granted, if it
    /// is free: the slot is `BUSY` until [`fill`](Self::fill) or
    /// [`unclaim`](Self::unclaim). One slot only, so that the fast path
    /// stays small; [`insert`](Self::insert) probes further. Lock-free;
    /// nothing in it can panic.
    #[inline(always)]
    pub(crate) fn claim_home(&self) -> Option<Claim<'_>> {
        self.claim_at(home_slot())
    }

    /// Claims slot `index` if it is free.
    #[inline(always)]
    fn claim_at(&self, index: usize) -> Option<Claim<'_>> {
        let slot = &self.slots[index & (SLOTS - 1)];
        let word = slot.word.load(Ordering::Relaxed);
        // Free (state 0) and below the last generation, in one comparison:
        // a state other than 0 rotates into the top bits.
        if word.rotate_right(2) >= GEN_MAX {
            return None;
        }
        // The state is `FREE` (0): the word is the generation shifted, and
        // the next generation's words are plain sums.
        slot.word.compare_exchange(word, word + (1 << 2) + BUSY, Ordering::Acquire, Ordering::Relaxed).ok()?;
        Some(Claim { slot, index: index & (SLOTS - 1), word })
    }

    /// Records a lease of `nbytes` in a claimed slot; returns its id.
    #[inline(always)]
    pub(crate) fn fill(&self, claim: Claim<'_>, nbytes: u64) -> u64 {
        let slot = claim.slot;
        // `claim.word` is `FREE` (see `claim_at`): the new generation,
        // shifted by 2, is one generation more.
        let gen_shifted = claim.word + (1 << 2);
        slot.nbytes.store(nbytes, Ordering::Relaxed);
        // The slot is `BUSY`: this thread is the only one counting into its
        // record until the store below lets go of it.
        slot.sizes.count_exclusive(nbytes);
        slot.word.store(gen_shifted + HELD, Ordering::Release);
        // `gen << SLOT_BITS` from `gen << 2`, whose low bits are 0.
        let gen_bits = if SLOT_BITS >= 2 {
            gen_shifted << SLOT_BITS.saturating_sub(2)
        } else {
            gen_shifted >> (2 - SLOT_BITS.min(2))
        };
        self.prefix | gen_bits | claim.index as u64
    }

    /// Gives a claimed slot back unused.
    #[inline(always)]
    pub(crate) fn unclaim(&self, claim: Claim<'_>) {
        claim.slot.word.store(claim.word, Ordering::Release);
    }

    /// Records a lease of `nbytes` and returns its new id: in a slot, or in
    /// the overflow map when the slots near this thread are taken.
    pub(crate) fn insert(&self, nbytes: u64) -> Result<u64, Error> {
        let home = home_slot();
        if let Some(claim) = (0..PROBES).find_map(|i| self.claim_at(home + i)) {
            return Ok(self.fill(claim, nbytes));
        }
        self.insert_overflow(nbytes)
    }

    #[cold]
    fn insert_overflow(&self, nbytes: u64) -> Result<u64, Error> {
        let mut overflow = self.overflow.lock();
        let seq = overflow.next_seq;
        if seq > LOW_MASK {
            return Err(Error::System("this pool has issued all the lease ids it can; create a new pool".into()));
        }
        overflow.next_seq += 1;
        let id = self.id(KIND_OVERFLOW, seq);
        overflow.leases.insert(id, nbytes);
        overflow.count_size(nbytes);
        Ok(id)
    }

    /// Removes a slot lease in one pass if `give(nbytes)` accepts its bytes:
    /// the slot goes `HELD` -> `BUSY`, `give` runs, then the slot is `FREE`,
    /// and that store is the last this call does to the pool. `false` (and
    /// the slot `HELD` again) for anything else: an id that is no slot lease,
    /// a slot someone else holds busy, or a `give` that refused; the full
    /// `remove` then decides. Lock-free, and nothing in it can panic.
    #[inline]
    pub(crate) fn remove_fast(&self, id: u64, give: impl FnOnce(u64) -> bool) -> bool {
        // Generation 0 is never `HELD`, so the exchange below refuses it.
        if id & !LOW_MASK != self.prefix {
            return false;
        }
        let (index, gen) = ((id as usize) & (SLOTS - 1), (id & LOW_MASK) >> SLOT_BITS);
        let slot = &self.slots[index];
        let held = gen << 2 | HELD;
        if slot.word.compare_exchange(held, gen << 2 | BUSY, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        if !give(slot.nbytes.load(Ordering::Relaxed)) {
            slot.word.store(held, Ordering::Release);
            return false;
        }
        slot.word.store(gen << 2 | FREE, Ordering::Release);
        true
    }

    /// Outstanding leases, counted exactly: a slot some thread holds `BUSY`
    /// is waited out, so that a release caught between returning its bytes
    /// and freeing its slot is not counted. Callers make sure no new lease
    /// can appear meanwhile.
    pub(crate) fn outstanding(&self) -> u64 {
        let mut count = 0;
        for slot in self.slots.iter() {
            let mut word = slot.word.load(Ordering::Acquire);
            while word & STATE == BUSY {
                spin_wait();
                word = slot.word.load(Ordering::Acquire);
            }
            count += u64::from(word & STATE == HELD);
        }
        count + self.overflow.lock().leases.len() as u64
    }

    /// Takes slot `index` at generation `gen` from `HELD` to `BUSY`, waiting
    /// out another thread's `BUSY`. `Err` carries why it is not outstanding.
    fn lock_held(&self, index: usize, gen: u64) -> Result<&Slot, Removed> {
        let slot = &self.slots[index];
        loop {
            let word = slot.word.load(Ordering::Acquire);
            let (now, state) = (word >> 2, word & STATE);
            if now != gen || state == FREE {
                return Err(Removed::Already);
            }
            if state == HELD
                && slot
                    .word
                    .compare_exchange(word, gen << 2 | BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(slot);
            }
            spin_wait();
        }
    }

    /// Whether an id of this pool was ever granted (it may be released since).
    /// Tickets are judged by the wait list, which numbers them.
    fn issued(&self, kind: IdKind) -> bool {
        match kind {
            IdKind::Slot { slot, gen } => gen <= self.slots[slot].word.load(Ordering::Acquire) >> 2,
            IdKind::Overflow { seq } => seq < self.overflow.lock().next_seq,
            IdKind::Ticket { .. } => true,
            IdKind::Foreign => false,
        }
    }

    fn refuse(&self, id: u64) -> Error {
        if id == 0 {
            Error::InvalidLease("lease id 0 means \"none\"".into())
        } else {
            Error::InvalidLease(format!("lease {id:#x} was not issued by this pool"))
        }
    }

    /// Removes a lease: its bytes if it was outstanding, `Already` if it was
    /// released before, an error for an id this pool never granted.
    pub(crate) fn remove(&self, id: u64) -> Result<Removed, Error> {
        // An outstanding slot lease that nobody holds busy (the common case)
        // in one pass; anything else is decided below.
        let mut nbytes = 0;
        if self.remove_fast(id, |n| {
            nbytes = n;
            true
        }) {
            return Ok(Removed::Now(nbytes));
        }
        self.remove_decided(id)
    }

    #[inline(never)]
    fn remove_decided(&self, id: u64) -> Result<Removed, Error> {
        let kind = self.kind(id);
        match kind {
            IdKind::Slot { slot: index, gen } => match self.lock_held(index, gen) {
                Ok(slot) => {
                    let nbytes = slot.nbytes.load(Ordering::Relaxed);
                    slot.word.store(gen << 2 | FREE, Ordering::Release);
                    Ok(Removed::Now(nbytes))
                }
                Err(_) if !self.issued(kind) => Err(self.refuse(id)),
                Err(already) => Ok(already),
            },
            IdKind::Overflow { .. } | IdKind::Ticket { .. } => {
                let mut overflow = self.overflow.lock();
                match overflow.leases.remove(&id) {
                    Some(nbytes) => Ok(Removed::Now(nbytes)),
                    None => {
                        drop(overflow);
                        if self.issued(kind) {
                            Ok(Removed::Already)
                        } else {
                            Err(self.refuse(id))
                        }
                    }
                }
            }
            IdKind::Foreign => Err(self.refuse(id)),
        }
    }

    /// Applies `f` to an outstanding lease's size; returns (old, new).
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(u64) -> u64) -> Result<(u64, u64), Error> {
        self.try_update(id, |n| Ok(f(n)))
    }

    /// As `update`, where `f` may refuse (the size stays as it was then).
    pub(crate) fn try_update(
        &self,
        id: u64,
        f: impl FnOnce(u64) -> Result<u64, Error>,
    ) -> Result<(u64, u64), Error> {
        let kind = self.kind(id);
        let gone = || Error::InvalidLease(format!("lease {id:#x} was already released"));
        match kind {
            IdKind::Slot { slot: index, gen } => match self.lock_held(index, gen) {
                Ok(slot) => {
                    let old = slot.nbytes.load(Ordering::Relaxed);
                    let new = f(old);
                    if let Ok(new) = new {
                        slot.nbytes.store(new, Ordering::Relaxed);
                    }
                    slot.word.store(gen << 2 | HELD, Ordering::Release);
                    Ok((old, new?))
                }
                Err(_) if !self.issued(kind) => Err(self.refuse(id)),
                Err(_) => Err(gone()),
            },
            IdKind::Overflow { .. } | IdKind::Ticket { .. } => {
                let mut overflow = self.overflow.lock();
                if let Some(n) = overflow.leases.get_mut(&id) {
                    let old = *n;
                    *n = f(old)?;
                    return Ok((old, *n));
                }
                drop(overflow);
                Err(if self.issued(kind) { gone() } else { self.refuse(id) })
            }
            IdKind::Foreign => Err(self.refuse(id)),
        }
    }

    /// The size of an outstanding lease.
    pub(crate) fn get(&self, id: u64) -> Result<u64, Error> {
        self.update(id, |n| n).map(|(n, _)| n)
    }

    /// (outstanding leases, bytes they hold, leases granted so far). Exact
    /// when nothing changes meanwhile.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        let (mut count, mut bytes, mut granted) = (0, 0, 0);
        for slot in self.slots.iter() {
            let word = slot.word.load(Ordering::Acquire);
            granted += word >> 2;
            if word & STATE != FREE {
                count += 1;
                bytes += slot.nbytes.load(Ordering::Relaxed);
            }
        }
        let overflow = self.overflow.lock();
        count += overflow.leases.len() as u64;
        bytes += overflow.leases.values().sum::<u64>();
        granted += overflow.next_seq - 1 + overflow.ticket_grants;
        (count, bytes, granted)
    }

    /// The size histogram of the leases granted so far and the sum of their
    /// sizes (as `totals`, exact when nothing changes meanwhile).
    pub(crate) fn sizes(&self) -> ([u64; SIZE_BUCKETS], u64) {
        let (mut out, mut bytes) = {
            let overflow = self.overflow.lock();
            (overflow.sizes, overflow.sized_bytes)
        };
        for slot in self.slots.iter() {
            slot.sizes.add_to(&mut out, &mut bytes);
        }
        (out, bytes)
    }
}
