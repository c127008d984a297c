//! Hand-offs of the in-process backend (see `pool::handoff` for the rules):
//! sharing moves a lease's bytes into a hand-off record without freeing
//! them, and the completion that finishes it returns them as a release does.

use std::time::{Duration, Instant};

use super::super::error::Error;
use super::super::handoff::{check_parts, Finished, HandoffInfo, HandoffStats, Token};
use super::super::notify::Core;
use super::super::slots::Removed;
use super::super::sync::Arc;
use super::{LocalPool, Wait};

impl LocalPool {
    /// Turns lease `id` into a hand-off of `parts` parts. With `keep_lease`
    /// the lease stays the producer's (to release after `wait_handoff`) and
    /// the hand-off holds no bytes; otherwise the lease ends and its bytes
    /// are the hand-off's until its last part completes.
    pub(crate) fn share_lease(
        &self,
        id: u64,
        parts: u32,
        claim_within: Option<Duration>,
        keep_lease: bool,
    ) -> Result<Token, Error> {
        check_parts(parts)?;
        self.reap_handoffs();
        if keep_lease {
            self.leases.get(id)?;
            let at = self.placed_offset(id)?;
            return self.handoffs.create(0, parts, claim_within, at);
        }
        let mut wl = self.lock();
        let nbytes = match self.leases.remove(id)? {
            Removed::Now(nbytes) => nbytes,
            Removed::Already => return Err(Error::InvalidLease(format!("lease {id:#x} was already released"))),
        };
        // A placed lease's range stays taken: the hand-off holds it now.
        let at = wl.placed.as_mut().and_then(|p| p.take_offset(id));
        if let Some(outstanding) = wl.retired.as_mut() {
            *outstanding -= 1;
        }
        drop(wl);
        self.handoffs.create(nbytes, parts, claim_within, at)
    }

    /// Marks a part as taken up, so that it does not expire.
    pub(crate) fn claim_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        self.reap_handoffs();
        self.handoffs.claim(token, part)
    }

    /// Completes a part (again: a no-op); the last returns the bytes.
    pub(crate) fn complete_part(&self, token: &Token, part: u32) -> Result<(), Error> {
        let done = self.handoffs.complete(token, part)?;
        if let Some(f) = done {
            self.finish_handoff(f);
        }
        self.reap_handoffs();
        Ok(())
    }

    /// Waits up to `wait` for the hand-off to finish.
    pub(crate) fn wait_handoff(&self, token: &Token, wait: Wait) -> Result<(), Error> {
        self.handoffs.wait(token, wait, |done| done.into_iter().for_each(|f| self.finish_handoff(f)))
    }

    /// Posts an event on `core` when the hand-off finishes.
    pub(crate) fn notify_handoff(&self, token: &Token, core: &Arc<Core>, user: u64) -> Result<(), Error> {
        self.reap_handoffs();
        self.handoffs.notify(token, core, user)
    }

    /// What an outstanding hand-off is now; `None` once it finished.
    pub(crate) fn handoff(&self, token: &Token) -> Result<Option<HandoffInfo>, Error> {
        self.reap_handoffs();
        self.handoffs.info(token)
    }

    pub(crate) fn handoffs(&self) -> Vec<HandoffInfo> {
        self.reap_handoffs();
        self.handoffs.list()
    }

    pub(crate) fn handoff_stats(&self) -> HandoffStats {
        self.reap_handoffs();
        self.handoffs.stats()
    }

    /// Expires the parts whose claim deadline passed and returns the bytes
    /// of the hand-offs that finishes.
    pub(crate) fn reap_handoffs(&self) {
        for f in self.handoffs.reap(Instant::now()) {
            self.finish_handoff(f);
        }
    }

    fn finish_handoff(&self, f: Finished) {
        match f.offset {
            Some(at) => self.give_back_range(at, f.nbytes),
            None => self.give_back(f.nbytes),
        }
        self.handoffs.announce(f);
    }
}
