//! The hand-off calls of a shared pool: each takes the segment's lock and
//! applies `handoffs.rs`. Only the producer's wait sleeps, on its record's
//! futex word, in slices after which it looks for dead processes (whose
//! claimed parts complete by themselves) as a waiter in line does.

use std::time::{Duration, Instant};

use super::super::error::Error;
use super::super::handoff::{check_parts, finished_event, HandoffInfo, HandoffStats, Token};
use super::super::lease::Ticket;
use super::super::local::Wait;
use super::super::notify::{Core, Decision, Event};
use super::super::sync::Arc;
use super::handoffs::{self, SharedHandoff};
use super::lock::Until;
use super::{futex, generation, SharedPool, PATIENT, RECLAIM_INTERVAL};

/// The notifiers of this process watching hand-offs of the pool, until each
/// finishes; the relay thread (`doorbell.rs`) looks at them when its
/// doorbell rings (a watched hand-off finished in any process) and after
/// each slice. Taken only while holding the segment's lock, or with no lock
/// at all when the pool is gone for this process.
#[derive(Default)]
pub(crate) struct Watches {
    list: parking_lot::Mutex<Vec<Watch>>,
}

/// (token, notifier, user value, the fork generation that registered it).
type Watch = (Token, Arc<Core>, u64, u16);

/// How long a call waits for the watches' lock: held for microseconds,
/// except in a forked child whose parent's relay held it at fork.
const FORK_SAFE_WAIT: Duration = Duration::from_secs(1);

impl Watches {
    /// The list, unless it stays locked (copied locked by fork).
    fn list(&self) -> Option<parking_lot::MutexGuard<'_, Vec<Watch>>> {
        self.list.try_lock_for(FORK_SAFE_WAIT)
    }

    pub(super) fn any(&self) -> bool {
        self.list().is_some_and(|l| !l.is_empty())
    }

    /// Posts the events of the watched hand-offs that finished.
    pub(super) fn scan(&self, pool: &SharedPool) {
        if !self.any() {
            return;
        }
        let Ok(g) = pool.lock_by(PATIENT, 0) else { return };
        let mut finished = Vec::new();
        let Some(mut list) = self.list() else { return };
        list.retain(|(token, core, user, gen)| {
            // An ancestor's watch (copied by fork) is its own, not this process's.
            let done = *gen != generation() || !matches!(handoffs::pending(g.seg, token), Ok(Some(_)));
            if done && *gen == generation() {
                finished.push((Arc::clone(core), finished_event(token.id, *user)));
            }
            !done
        });
        drop(list);
        drop(g);
        for (core, event) in finished {
            core.post(event);
        }
    }

    /// The pool is gone for this process: every watch ends with `Closed`.
    pub(super) fn close_all(&self) {
        let ended: Vec<_> = self.list().map(|mut l| l.drain(..).collect()).unwrap_or_default();
        for (token, core, user, gen) in ended {
            if gen == generation() {
                core.post(Event { ticket: Ticket { id: token.id }, user, decision: Decision::Closed });
            }
        }
    }
}

impl SharedPool {
    /// Turns lease `id` (this process's) into a hand-off of `parts` parts;
    /// with `keep_lease` the lease stays and the hand-off holds no bytes.
    pub(crate) fn share_lease(
        &self,
        id: u64,
        parts: u32,
        claim_within: Option<Duration>,
        keep_lease: bool,
    ) -> Result<Token, Error> {
        check_parts(parts)?;
        self.check_issued(id, "lease")?;
        let g = self.lock()?;
        let shared = self.own_lease(&g, id).and_then(|i| {
            // A placed lease's range: the token carries it, and without
            // `keep_lease` the hand-off holds it until its last part.
            let at = g.entry_range(i);
            if keep_lease {
                return handoffs::create(&g, 0, parts, claim_within, at);
            }
            let nbytes = g.entry(i).nbytes.load(std::sync::atomic::Ordering::Relaxed);
            let token = handoffs::create(&g, nbytes, parts, claim_within, at)?;
            handoffs::take_lease_bytes(&g, i);
            Ok(token)
        });
        drop(g);
        self.after(shared)
    }

    /// Claims a part for this process.
    pub(crate) fn claim_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        let g = self.lock()?;
        let claimed = handoffs::claim(&g, token, part);
        drop(g);
        self.after(claimed)
    }

    /// Completes a part (again: a no-op); the last returns the bytes.
    pub(crate) fn complete_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        let mut g = self.lock()?;
        let completed = handoffs::complete(&mut g, token, part);
        drop(g);
        self.after(completed)
    }

    /// Waits up to `wait` for the hand-off to finish.
    pub(crate) fn wait_handoff(&self, token: &Token, wait: Wait) -> Result<(), Error> {
        let deadline = wait.deadline();
        loop {
            let mut g = self.lock_by(Until::from_deadline(deadline), 0)?;
            g.maybe_reap();
            let Some((word, seen)) = handoffs::pending(g.seg, token)? else { return self.after(Ok(())) };
            let now = Instant::now();
            if deadline.is_some_and(|at| now >= at) {
                return self.after(Err(Error::Timeout { requested: 0 }));
            }
            let slice = deadline.map_or(RECLAIM_INTERVAL, |at| (at - now).min(RECLAIM_INTERVAL));
            let slice = handoffs::until_deadline(g.seg, slice);
            drop(g);
            futex::wait(word, seen, slice);
            self.intact()?;
        }
    }

    /// Posts one event on `core` when the hand-off finishes, in any process
    /// (at once if it has): through this process's relay thread.
    pub(crate) fn notify_handoff(&self, token: &Token, core: &Arc<Core>, user: u64) -> Result<(), Error> {
        self.relay.ensure(self)?;
        let g = self.lock_by(PATIENT, 0)?;
        let finished = handoffs::watch(&g, token);
        if let Ok(false) = finished {
            let held = || {
                Error::System(
                    "the shared pool's hand-off watches stayed locked for 1 s (copied locked by fork?)".into(),
                )
            };
            self.handoff_watches.list().ok_or_else(held)?.push((*token, Arc::clone(core), user, generation()));
        }
        drop(g);
        if self.after(finished)? {
            core.post(finished_event(token.id, user));
        }
        Ok(())
    }

    /// What an outstanding hand-off is now; `None` once it finished.
    pub(crate) fn handoff(&self, token: &Token) -> Result<Option<HandoffInfo>, Error> {
        let g = self.lock()?;
        let info = handoffs::info(g.seg, token);
        drop(g);
        self.after(info)
    }

    /// Every outstanding hand-off, oldest first, with its processes.
    pub(crate) fn shared_handoffs(&self) -> Result<Vec<SharedHandoff>, Error> {
        let g = self.lock()?;
        let all = handoffs::list(g.seg);
        drop(g);
        self.after(Ok(all))
    }

    pub(crate) fn handoff_stats(&self) -> Result<HandoffStats, Error> {
        let g = self.lock()?;
        let stats = handoffs::stats(g.seg);
        drop(g);
        self.after(Ok(stats))
    }

    /// Completes a part and stops this process with SIGSTOP before letting
    /// the lock go: for tests of a consumer killed in the middle of
    /// completing. Continued instead, it lets the lock go.
    #[doc(hidden)]
    pub fn debug_stop_completing(&self, token: &Token, part: u32) -> Result<(), Error> {
        let mut g = self.lock()?;
        let completed = handoffs::complete(&mut g, token, part);
        // SAFETY: raise(3) with a valid signal number.
        unsafe { libc::raise(libc::SIGSTOP) };
        drop(g);
        self.after(completed)
    }

    /// Where the hand-off region lies in the segment's file: (offset, bytes),
    /// for tests that damage it.
    #[doc(hidden)]
    pub fn debug_handoffs_span(&self) -> (u64, u64) {
        let l = self.map.layout();
        (l.handoffs_at as u64, handoffs::HandoffsHead::span(l.handoffs) as u64)
    }
}
