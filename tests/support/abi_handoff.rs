//! The hand-off part of the reference model (tests/support/abi_model.rs):
//! `mmpool_lease_share`, `mmpool_handoff_claim`, `mmpool_handoff_complete`,
//! `mmpool_handoff_wait` with a timeout of 0 and `mmpool_get_handoff_stats`.
//!
//! Claim deadlines are modelled only where their outcome is certain:
//! none (`MMPOOL_NO_CLAIM_DEADLINE`), an hour (never passes during a
//! sequence), or 0 (already passed by the next instant: the pool collects
//! it at its next reap). An in-process pool reaps (expires unclaimed parts
//! past their deadline) at the start of share (after the flags and parts
//! checks), claim and stats, after a successful complete, and in a
//! producer's wait when that hand-off's own deadline has passed; requests
//! reap only while they sleep in line, which a single thread never does.

use super::*;
use ::mmpool::ffi::handoff::{
    mmpool_get_handoff_stats, mmpool_handoff_claim, mmpool_handoff_complete, mmpool_handoff_wait, mmpool_lease_share,
    MMPOOL_NO_CLAIM_DEADLINE, MMPOOL_SHARE_KEEP_LEASE, MMPOOL_TOKEN_PLACED,
};
use ::mmpool::ffi::{mmpool_handoff_stats, mmpool_handoff_token};

/// The claim deadline given to `mmpool_lease_share`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    Never,
    /// 0 ns: passed at the pool's next reap.
    Passed,
    /// An hour: never passes while a sequence runs.
    Far,
}

impl Deadline {
    fn ns(self) -> u64 {
        match self {
            Deadline::Never => MMPOOL_NO_CLAIM_DEADLINE,
            Deadline::Passed => 0,
            Deadline::Far => 3_600_000_000_000,
        }
    }

    pub(super) fn decode(b: u8) -> Deadline {
        match b % 3 {
            0 => Deadline::Never,
            1 => Deadline::Passed,
            _ => Deadline::Far,
        }
    }

    pub(super) fn encode(self) -> u8 {
        self as u8
    }
}

/// A token given to a hand-off call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRef {
    /// One of the tokens the library has handed out so far, of any pool.
    Known(u16),
    /// One of the slot's outstanding hand-offs (a made-up token when none).
    Open(u16),
    /// A known token with one field altered (by `kind`), or a made-up one:
    /// no pool issued it.
    Forged { of: u16, kind: u8, x: u64 },
}

impl TokenRef {
    pub(super) fn resolve(self, known: &[mmpool_handoff_token], h: &Handoffs) -> mmpool_handoff_token {
        let pick = |i: u16| {
            if known.is_empty() {
                mmpool_handoff_token::default()
            } else {
                known[usize::from(i) % known.len()]
            }
        };
        match self {
            TokenRef::Known(i) => pick(i),
            TokenRef::Open(_) if h.open.is_empty() => mmpool_handoff_token::default(),
            TokenRef::Open(i) => {
                let id = h.open.keys().nth(usize::from(i) % h.open.len()).expect("in range");
                h.issued[id]
            }
            TokenRef::Forged { of, kind, x } => {
                let mut t = pick(of);
                match kind % 6 {
                    0 => t = mmpool_handoff_token { id: x | 1 << 62, nonce: x.rotate_left(7), ..t },
                    1 => t.nonce ^= x | 2,
                    2 => t.parts ^= (x as u32 & 0x7f) | 1,
                    3 => t.offset ^= x | 1,
                    4 => t.flags ^= 1,
                    _ => t = mmpool_handoff_token::default(),
                }
                t
            }
        }
    }

    pub(super) fn decode(data: &mut &[u8]) -> TokenRef {
        let of = u16::from_le_bytes([take_u8(data), take_u8(data)]);
        match take_u8(data) {
            k @ 0..=99 => TokenRef::Known(of.wrapping_add(u16::from(k))),
            100..=199 => TokenRef::Open(of),
            k => TokenRef::Forged { of, kind: k, x: take_u64(data) },
        }
    }

    pub(super) fn encode(self, out: &mut Vec<u8>) {
        match self {
            TokenRef::Known(i) => {
                out.extend_from_slice(&i.to_le_bytes());
                out.push(0);
            }
            TokenRef::Open(i) => {
                out.extend_from_slice(&i.to_le_bytes());
                out.push(100);
            }
            TokenRef::Forged { of, kind, x } => {
                out.extend_from_slice(&of.to_le_bytes());
                out.push(kind.max(200));
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// The part number a call names: `sel` below 200 picks a part in range,
/// above it one past the end (64 and beyond included).
pub(super) fn part(token: &mmpool_handoff_token, sel: u8) -> u32 {
    match sel {
        0..=199 => u32::from(sel) % token.parts.max(1),
        s => token.parts + u32::from(s - 200),
    }
}

/// An outstanding hand-off as the model sees it.
#[derive(Debug)]
pub(super) struct Handoff {
    parts: u32,
    /// Bytes it holds (0 when the producer kept the lease).
    nbytes: u64,
    /// Parts completed or expired, one bit each.
    done: u64,
    claimed: u64,
    /// Its claim deadline has passed and no reap has collected it yet.
    due: bool,
    /// The range it holds in a placed pool (taken from the lease it came from).
    range: Option<u64>,
}

impl Handoff {
    fn all(&self) -> u64 {
        if self.parts == 64 {
            u64::MAX
        } else {
            (1 << self.parts) - 1
        }
    }

    fn left(&self) -> u32 {
        (self.all() & !self.done).count_ones()
    }
}

/// The hand-offs of one pool.
#[derive(Debug, Default)]
pub(super) struct Handoffs {
    /// Outstanding ones by token id.
    open: BTreeMap<u64, Handoff>,
    /// Every token the pool issued, by id.
    issued: HashMap<u64, mmpool_handoff_token>,
    shared: u64,
    finished: u64,
    expired_parts: u64,
}

impl Handoffs {
    /// Bytes the outstanding hand-offs hold.
    pub(super) fn held(&self) -> u64 {
        self.open.values().map(|h| h.nbytes).sum()
    }

    /// Whether a reap would change anything now.
    pub(super) fn any_due(&self) -> bool {
        self.open.values().any(|h| h.due)
    }

    fn valid(&self, t: &mmpool_handoff_token) -> bool {
        self.issued.get(&t.id) == Some(t)
    }

    pub(super) fn stats(&self) -> mmpool_handoff_stats {
        mmpool_handoff_stats {
            outstanding: self.open.len() as u64,
            held_bytes: self.held(),
            shared: self.shared,
            finished: self.finished,
            expired_parts: self.expired_parts,
        }
    }
}

impl Model {
    /// The last part of hand-off `id` is done: its bytes go back as a
    /// release's do (granting the line from its head).
    fn finish_handoff(&mut self, id: u64) {
        let h = self.handoffs.open.remove(&id).expect("an open hand-off");
        self.handoffs.finished += 1;
        if let (Some(p), Some(at)) = (self.placed.as_mut(), h.range) {
            p.free_at(at);
        }
        self.give(h.nbytes);
    }

    /// Expires the parts nobody claimed or completed of every hand-off
    /// whose deadline has passed; the deadline passes once.
    fn reap(&mut self) {
        let mut finished = Vec::new();
        for (&id, h) in self.handoffs.open.iter_mut().filter(|(_, h)| h.due) {
            h.due = false;
            let lapsed = h.all() & !h.done & !h.claimed;
            h.done |= lapsed;
            self.handoffs.expired_parts += u64::from(lapsed.count_ones());
            if lapsed != 0 && h.left() == 0 {
                finished.push(id);
            }
        }
        for id in finished {
            self.finish_handoff(id);
        }
    }
}

const SENTINEL_TOKEN: mmpool_handoff_token =
    mmpool_handoff_token { id: 0x5e47_70ce, nonce: 0xdead, parts: 0xbeef, flags: 0xf00d, offset: 0xcafe };

impl Harness {
    pub(super) fn share(&mut self, slot: usize, id: u64, parts: u32, flags: u32, deadline: Deadline) {
        let mut out = SENTINEL_TOKEN;
        let st = mmpool_lease_share(
            self.slots[slot].handle,
            mmpool_lease { id, nbytes: 7 },
            parts,
            deadline.ns(),
            flags,
            &mut out,
        );
        let m = &mut self.slots[slot].model;
        let keep = flags & MMPOOL_SHARE_KEEP_LEASE != 0;
        let mut placement = (0, 0);
        let want = if flags & !MMPOOL_SHARE_KEEP_LEASE != 0 || parts == 0 || parts > 64 {
            MMPOOL_ERR_INVALID_ARGUMENT
        } else {
            m.reap();
            match m.leases.get(&id).copied() {
                None => MMPOOL_ERR_INVALID_LEASE,
                Some(n) => {
                    let nbytes = if keep { 0 } else { n };
                    // The token says where a placed lease lies.
                    let at = m.placed.as_ref().and_then(|p| p.offset(id));
                    placement = at.map_or((0, 0), |at| (MMPOOL_TOKEN_PLACED, at));
                    let mut range = None;
                    if !keep {
                        m.leases.remove(&id);
                        range = m.placed.as_mut().and_then(|p| p.take(id));
                    }
                    let due = deadline == Deadline::Passed;
                    let h = Handoff { parts, nbytes, done: 0, claimed: 0, due, range };
                    m.handoffs.open.insert(out.id, h);
                    m.handoffs.shared += 1;
                    MMPOOL_OK
                }
            }
        };
        check_status("mmpool_lease_share", st, want, &(id, parts, flags, deadline));
        if want != MMPOOL_OK {
            assert_eq!(out, SENTINEL_TOKEN, "mmpool_lease_share wrote its out-parameter on failure");
            return;
        }
        assert_ne!(out.id, 0, "a hand-off token has id 0");
        assert_eq!((out.parts, out.flags, out.offset), (parts, placement.0, placement.1), "token fields");
        let m = &mut self.slots[slot].model;
        assert!(m.handoffs.issued.insert(out.id, out).is_none(), "hand-off id {:#x} issued twice", out.id);
        self.tokens.push(out);
    }

    pub(super) fn claim(&mut self, slot: usize, token: mmpool_handoff_token, part: u32) {
        let st = mmpool_handoff_claim(self.slots[slot].handle, token, part);
        let m = &mut self.slots[slot].model;
        m.reap();
        let want = if !m.handoffs.valid(&token) || part >= token.parts {
            MMPOOL_ERR_INVALID_LEASE
        } else {
            match m.handoffs.open.get_mut(&token.id) {
                Some(h) if h.done & 1 << part == 0 => {
                    h.claimed |= 1 << part;
                    MMPOOL_OK
                }
                // Completed, expired, or the hand-off finished.
                _ => MMPOOL_ERR_INVALID_LEASE,
            }
        };
        check_status("mmpool_handoff_claim", st, want, &(token, part));
    }

    pub(super) fn complete(&mut self, slot: usize, token: mmpool_handoff_token, part: u32) {
        let st = mmpool_handoff_complete(self.slots[slot].handle, token, part);
        let m = &mut self.slots[slot].model;
        let want = if !m.handoffs.valid(&token) || part >= token.parts {
            MMPOOL_ERR_INVALID_LEASE
        } else {
            if let Some(h) = m.handoffs.open.get_mut(&token.id) {
                // Again, or a part that expired: counts once.
                h.done |= 1 << part;
                h.claimed &= !(1 << part);
                if h.left() == 0 {
                    m.finish_handoff(token.id);
                }
            }
            m.reap();
            MMPOOL_OK
        };
        check_status("mmpool_handoff_complete", st, want, &(token, part));
    }

    /// `mmpool_handoff_wait` with a timeout of 0: it never sleeps.
    pub(super) fn wait_handoff(&mut self, slot: usize, token: mmpool_handoff_token) {
        let st = mmpool_handoff_wait(self.slots[slot].handle, token, 0);
        let m = &mut self.slots[slot].model;
        let want = if !m.handoffs.valid(&token) {
            MMPOOL_ERR_INVALID_LEASE
        } else {
            // Its own deadline having passed, the wait reaps (every hand-off).
            if m.handoffs.open.get(&token.id).is_some_and(|h| h.due) {
                m.reap();
            }
            if m.handoffs.open.contains_key(&token.id) {
                MMPOOL_ERR_TIMEOUT
            } else {
                MMPOOL_OK
            }
        };
        check_status("mmpool_handoff_wait", st, want, &token);
    }

    pub(super) fn handoff_stats(&mut self, slot: usize, null: bool) {
        let p = self.slots[slot].handle;
        if null {
            let st = mmpool_get_handoff_stats(p, ptr::null_mut());
            check_status("mmpool_get_handoff_stats", st, MMPOOL_ERR_NULL_ARGUMENT, &slot);
            let mut s = mmpool_handoff_stats { outstanding: 0x5e47, ..Default::default() };
            let st = mmpool_get_handoff_stats(ptr::null(), &mut s);
            check_status("mmpool_get_handoff_stats", st, MMPOOL_ERR_NULL_ARGUMENT, &slot);
            assert_eq!(s.outstanding, 0x5e47, "written on failure");
            return;
        }
        let got = self.read_handoff_stats(slot);
        let m = &mut self.slots[slot].model;
        m.reap();
        assert_eq!(got, m.handoffs.stats(), "slot {slot}: hand-off stats after step {}", self.steps);
    }

    fn read_handoff_stats(&self, slot: usize) -> mmpool_handoff_stats {
        let mut s = mmpool_handoff_stats::default();
        let st = mmpool_get_handoff_stats(self.slots[slot].handle, &mut s);
        check_status("mmpool_get_handoff_stats", st, MMPOOL_OK, &slot);
        s
    }

    /// After every step: the hand-off figures, read only when no reap is
    /// due (reading them reaps, which would change what the next step sees).
    pub(super) fn check_handoffs(&self, slot: usize) {
        let m = &self.slots[slot].model;
        if !m.handoffs.any_due() {
            assert_eq!(
                self.read_handoff_stats(slot),
                m.handoffs.stats(),
                "slot {slot}: hand-off stats after step {}",
                self.steps
            );
        }
    }

    /// Completes every part of every outstanding hand-off of a slot.
    pub(super) fn finish_handoffs(&mut self, slot: usize) {
        while let Some((&id, h)) = self.slots[slot].model.handoffs.open.iter().next() {
            let token = self.slots[slot].model.handoffs.issued[&id];
            let part = (h.all() & !h.done).trailing_zeros();
            self.complete(slot, token, part);
        }
    }
}
