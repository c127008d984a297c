//! The hand-off calls of a shared pool: each takes the segment's lock and
//! applies `handoffs.rs`. Only the producer's wait sleeps, on its record's
//! futex word, in slices after which it looks for dead processes (whose
//! claimed parts complete by themselves) as a waiter in line does.

use std::time::{Duration, Instant};

use super::super::error::Error;
use super::super::handoff::{check_parts, HandoffInfo, HandoffStats, Token};
use super::super::local::Wait;
use super::handoffs::{self, SharedHandoff};
use super::lock::Until;
use super::{futex, SharedPool, RECLAIM_INTERVAL};

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
            if keep_lease {
                return handoffs::create(&g, 0, parts, claim_within, None);
            }
            let nbytes = g.entry(i).nbytes.load(std::sync::atomic::Ordering::Relaxed);
            let token = handoffs::create(&g, nbytes, parts, claim_within, None)?;
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
}
