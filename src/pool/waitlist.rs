//! The line of waiting requests and the fate of every ticket, kept under one
//! lock. Order of arrival decides order of grant; each request has its own
//! condition variable, so a grant wakes exactly the threads waiting on it.

use std::collections::BTreeMap;
use std::time::Instant;

use super::error::Error;
use super::lease::IdMap;
use super::sync::{Arc, Condvar};

/// A request waiting in line.
pub(crate) struct Waiter {
    pub(crate) ticket: u64,
    pub(crate) nbytes: u64,
    pub(crate) since: Instant,
    pub(crate) signal: Arc<Condvar>,
}

/// Where a ticket stands.
pub(crate) enum Fate {
    /// In line at `pos`; threads waiting for it sleep on `signal`.
    Waiting { pos: u64, nbytes: u64, signal: Arc<Condvar> },
    /// Its bytes were taken from the pool for it; the collector records them.
    Granted { nbytes: u64 },
    /// It left the line without bytes (pool closed, total lowered below it).
    Failed(Error),
}

/// Counters only the lock holder changes.
#[derive(Default, Clone, Copy)]
pub(crate) struct WaitCounters {
    pub(crate) waited_grants: u64,
    pub(crate) wait_ns_total: u64,
    pub(crate) wait_ns_max: u64,
    /// Times a sleeping thread woke and found its request still waiting.
    pub(crate) futile_wakeups: u64,
}

#[derive(Default)]
pub(crate) struct Waitlist {
    tickets_issued: u64,
    next_pos: u64,
    line: BTreeMap<u64, Waiter>,
    fates: IdMap<Fate>,
    pub(crate) counters: WaitCounters,
}

impl Waitlist {
    /// Numbers the next ticket (from 1).
    pub(crate) fn next_ticket_seq(&mut self) -> u64 {
        self.tickets_issued += 1;
        self.tickets_issued
    }

    pub(crate) fn ticket_issued(&self, seq: u64) -> bool {
        seq != 0 && seq <= self.tickets_issued
    }

    /// Puts a request at the end of the line.
    pub(crate) fn push(&mut self, ticket: u64, nbytes: u64) {
        let pos = self.next_pos;
        self.next_pos += 1;
        let signal = Arc::new(Condvar::new());
        self.line.insert(pos, Waiter { ticket, nbytes, since: Instant::now(), signal: signal.clone() });
        self.fates.insert(ticket, Fate::Waiting { pos, nbytes, signal });
    }

    /// Records a ticket that was granted without waiting.
    pub(crate) fn granted_at_once(&mut self, ticket: u64, nbytes: u64) {
        self.fates.insert(ticket, Fate::Granted { nbytes });
    }

    pub(crate) fn head(&self) -> Option<&Waiter> {
        self.line.first_key_value().map(|(_, w)| w)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.line.len()
    }

    /// When a ticket still in line joined it.
    pub(crate) fn joined(&self, ticket: u64) -> Option<Instant> {
        match self.fates.get(&ticket)? {
            Fate::Waiting { pos, .. } => self.line.get(pos).map(|w| w.since),
            _ => None,
        }
    }

    pub(crate) fn fate(&self, ticket: u64) -> Option<&Fate> {
        self.fates.get(&ticket)
    }

    /// Removes a finished ticket's record and returns it.
    pub(crate) fn take_fate(&mut self, ticket: u64) -> Option<Fate> {
        let fate = self.fates.remove(&ticket)?;
        if let Fate::Waiting { pos, .. } = fate {
            self.line.remove(&pos);
        }
        Some(fate)
    }

    /// Grants the head of the line: it leaves the line and its threads wake.
    pub(crate) fn grant_head(&mut self) {
        if let Some((_, w)) = self.line.pop_first() {
            let waited = w.since.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            let c = &mut self.counters;
            c.waited_grants += 1;
            c.wait_ns_total = c.wait_ns_total.saturating_add(waited);
            c.wait_ns_max = c.wait_ns_max.max(waited);
            self.fates.insert(w.ticket, Fate::Granted { nbytes: w.nbytes });
            w.signal.notify_all();
        }
    }

    /// Fails every waiter for which `doomed(nbytes)` holds with `error()`.
    pub(crate) fn fail_where(&mut self, doomed: impl Fn(u64) -> bool, error: impl Fn(u64) -> Error) {
        let positions: Vec<u64> =
            self.line.iter().filter(|(_, w)| doomed(w.nbytes)).map(|(p, _)| *p).collect();
        for pos in positions {
            if let Some(w) = self.line.remove(&pos) {
                self.fates.insert(w.ticket, Fate::Failed(error(w.nbytes)));
                w.signal.notify_all();
            }
        }
    }
}
