//! The placed-pool part of the reference model (tests/support/abi_model.rs):
//! the live ranges of a pool made by `mmpool_init_placed`.
//!
//! Which offset a request gets is the allocator's choice: the model reads
//! it back (`mmpool_lease_offset`) when it grants, and checks it is aligned,
//! inside `[0, total)` and clear of every other live range. What the model
//! predicts is whether a request fits: exactly when some free range, from
//! its first aligned offset, has room for it (recounted from the model's
//! ranges), strictly in line order; and it predicts the fragmentation
//! figures (`largest_free_range`, `free_ranges`) the same way.

use super::*;
use ::mmpool::ffi::placed::{mmpool_init_placed, mmpool_lease_offset};

#[path = "free_ranges.rs"]
mod free_ranges;
use free_ranges::{gaps, room};

/// The ranges of a placed pool.
#[derive(Debug)]
pub(super) struct Placement {
    handle: *mut mmpool,
    pub(super) align: u64,
    /// Live ranges: offset -> length (never 0).
    ranges: BTreeMap<u64, u64>,
    /// The offsets of the ranges of leases and granted tickets, by id (a
    /// lease of 0 bytes has none).
    at: HashMap<u64, u64>,
}

impl Placement {
    pub(super) fn new(handle: *mut mmpool, align: u64) -> Self {
        Placement { handle, align, ranges: BTreeMap::new(), at: HashMap::new() }
    }

    /// (largest request placeable now, free ranges), counted the slow way.
    pub(super) fn figures(&self, total: u64) -> (u64, u64) {
        let gaps = gaps(&self.ranges, total);
        (gaps.iter().map(|&(s, l)| room(s, l, self.align)).max().unwrap_or(0), gaps.len() as u64)
    }

    pub(super) fn fits(&self, total: u64, n: u64) -> bool {
        n == 0 || gaps(&self.ranges, total).iter().any(|&(s, l)| room(s, l, self.align) >= n)
    }

    /// Reads where the library placed `id`'s `n` bytes and checks the range.
    pub(super) fn place(&mut self, total: u64, id: u64, n: u64) {
        if n > 0 {
            let off = self.read_offset(id);
            assert_eq!(off % self.align, 0, "lease {id:#x} at {off} is not aligned to {}", self.align);
            self.insert(total, id, off, n);
        }
    }

    fn read_offset(&self, id: u64) -> u64 {
        let mut off = u64::MAX;
        let st = mmpool_lease_offset(self.handle, mmpool_lease { id, nbytes: 0 }, &mut off);
        check_status("mmpool_lease_offset", st, MMPOOL_OK, &id);
        off
    }

    fn insert(&mut self, total: u64, id: u64, off: u64, n: u64) {
        assert!(off.checked_add(n).is_some_and(|end| end <= total), "lease {id:#x} at {off} + {n} is outside {total}");
        if let Some((&prev, &len)) = self.ranges.range(..=off).next_back() {
            assert!(prev + len <= off, "lease {id:#x} at {off} overlaps the range at {prev} + {len}");
        }
        if let Some((&next, _)) = self.ranges.range(off..).next() {
            assert!(off + n <= next, "lease {id:#x} at {off} + {n} overlaps the range at {next}");
        }
        self.ranges.insert(off, n);
        self.at.insert(id, off);
    }

    /// Frees `id`'s range, if it has one.
    pub(super) fn free(&mut self, id: u64) {
        if let Some(off) = self.at.remove(&id) {
            self.ranges.remove(&off);
        }
    }

    /// Takes `id`'s range from the leases; it stays live (a hand-off holds it).
    pub(super) fn take(&mut self, id: u64) -> Option<u64> {
        self.at.remove(&id)
    }

    pub(super) fn offset(&self, id: u64) -> Option<u64> {
        self.at.get(&id).copied()
    }

    pub(super) fn free_at(&mut self, off: u64) {
        self.ranges.remove(&off).expect("a live range");
    }

    /// Shrinks `id`'s range to `new` bytes (0: frees it).
    pub(super) fn shrink(&mut self, id: u64, new: u64) {
        match self.offset(id) {
            Some(_) if new == 0 => self.free(id),
            Some(off) => {
                self.ranges.insert(off, new);
            }
            None => {}
        }
    }

    /// Whether `id`'s range can grow in place to `new` bytes.
    pub(super) fn grows(&self, total: u64, id: u64, new: u64) -> bool {
        let off = self.at[&id];
        let next = self.ranges.range(off + 1..).next().map_or(total, |(&next, _)| next);
        off + new <= next
    }

    pub(super) fn grow(&mut self, id: u64, new: u64) {
        self.ranges.insert(self.at[&id], new);
    }

    /// The new lease of a split gets the tail, aligned or not: it must lie
    /// right after what `id` keeps.
    pub(super) fn split(&mut self, total: u64, id: u64, keep: u64, new_id: u64, n: u64) {
        let off = self.at[&id];
        self.ranges.insert(off, keep);
        let tail = self.read_offset(new_id);
        assert_eq!(tail, off + keep, "a split's new lease takes the tail of the range");
        self.insert(total, new_id, tail, n);
    }

    /// Whether a merge of `from` into `into` is allowed: `from` has no range
    /// or it follows `into`'s directly.
    pub(super) fn adjacent(&self, into: u64, from: u64) -> bool {
        match (self.offset(into), self.offset(from)) {
            (_, None) => true,
            (Some(first), Some(second)) => first + self.ranges[&first] == second,
            (None, Some(_)) => false,
        }
    }

    pub(super) fn merge(&mut self, into: u64, from: u64) {
        if let Some(second) = self.take(from) {
            let len = self.ranges.remove(&second).expect("a live range");
            *self.ranges.get_mut(&self.at[&into]).expect("a live range") += len;
        }
    }

    /// After every step: each range the model knows is where the library
    /// says, and they hold every byte in use.
    pub(super) fn check(&self, in_use: u64) {
        for (&id, &off) in &self.at {
            assert_eq!(self.read_offset(id), off, "lease {id:#x} moved");
        }
        assert_eq!(self.ranges.values().sum::<u64>(), in_use, "the ranges hold every byte in use");
    }
}

impl Harness {
    /// `mmpool_init_placed` into a slot.
    pub(super) fn init_placed(&mut self, slot: usize, total: u64, align: u64) {
        let mut p = SENTINEL_TICKET.id as *mut mmpool;
        let st = mmpool_init_placed(total, align, &mut p);
        if total == 0 || total > MMPOOL_MAX_TOTAL || !align.is_power_of_two() {
            check_status("mmpool_init_placed", st, MMPOOL_ERR_INVALID_ARGUMENT, &(total, align));
            assert_eq!(p, SENTINEL_TICKET.id as *mut mmpool, "out_pool written on failure");
            return;
        }
        check_status("mmpool_init_placed", st, MMPOOL_OK, &(total, align));
        if !self.slots[slot].handle.is_null() {
            self.retire(slot);
        }
        self.slots[slot] = Slot { handle: p, model: Model::new(total, Some(Placement::new(p, align))) };
    }

    /// `mmpool_lease_offset`: the offset of a lease (or of a granted ticket,
    /// which holds its range from its grant), 0 for one of 0 bytes.
    pub(super) fn lease_offset(&mut self, slot: usize, id: u64) {
        let mut off = SENTINEL_WORD;
        let st = mmpool_lease_offset(self.slots[slot].handle, mmpool_lease { id, nbytes: 3 }, &mut off);
        let m = &self.slots[slot].model;
        let (want, at) = match &m.placed {
            None => (MMPOOL_ERR_INVALID_ARGUMENT, None),
            Some(p) => match p.offset(id) {
                Some(at) => (MMPOOL_OK, Some(at)),
                None if m.leases.contains_key(&id) => (MMPOOL_OK, Some(0)),
                None => (MMPOOL_ERR_INVALID_LEASE, None),
            },
        };
        check_status("mmpool_lease_offset", st, want, &id);
        assert_eq!(off, at.unwrap_or(SENTINEL_WORD), "mmpool_lease_offset's out-parameter");
    }

    /// `mmpool_lease_resize` with a timeout of 0 on a placed pool: shrinks
    /// at once, grows only in place while nobody waits, else `WOULD_BLOCK`.
    pub(super) fn resize_placed(&mut self, slot: usize, id: u64, new: u64) {
        let before = mmpool_lease { id, nbytes: 0x0dd };
        let mut lease = before;
        let st = mmpool_lease_resize(self.slots[slot].handle, &mut lease, new, 0);
        let m = &mut self.slots[slot].model;
        let total = m.total;
        let held = if m.issued.contains(&id) { m.leases.get(&id).copied() } else { None };
        let want = match held {
            None => MMPOOL_ERR_INVALID_LEASE,
            Some(old) if new <= old => {
                m.leases.insert(id, new);
                m.placed.as_mut().expect("placed").shrink(id, new);
                m.give(old - new);
                MMPOOL_OK
            }
            Some(_) if m.closed => {
                m.c.closed_rejections += 1;
                MMPOOL_ERR_CLOSED
            }
            Some(_) if new > total => {
                m.c.capacity_rejections += 1;
                MMPOOL_ERR_EXCEEDS_CAPACITY
            }
            Some(_) if !m.line.is_empty() => {
                m.c.would_blocks += 1;
                MMPOOL_ERR_WOULD_BLOCK
            }
            Some(0) => MMPOOL_ERR_INVALID_ARGUMENT,
            Some(old) => {
                let p = m.placed.as_mut().expect("placed");
                if p.grows(total, id, new) {
                    p.grow(id, new);
                    m.leases.insert(id, new);
                    m.take(new - old);
                    MMPOOL_OK
                } else {
                    m.c.would_blocks += 1;
                    MMPOOL_ERR_WOULD_BLOCK
                }
            }
        };
        check_resized(st, want, lease, before, new);
    }
}
