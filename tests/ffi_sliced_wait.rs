//! `mmpool_acquire_or_enqueue` and `mmpool_ticket_wait_or_leave`, the calls a
//! binding that waits in slices makes: they count what the one-call acquire
//! counts (a wait is no would-block; a timed-out wait is one timeout), on an
//! in-process pool and on a shared one.
#![cfg(not(loom))] // these tests use the C boundary; loom runs tests/loom.rs

use std::ffi::{CStr, CString};
use std::ptr;

use ::mmpool::ffi::mmpool_status::{self, *};
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::mmpool_last_error;
use ::mmpool::ffi::shared::{mmpool_open_shared, mmpool_unlink_shared, MMPOOL_SHARED_CREATE};
use ::mmpool::ffi::sliced_wait::*;
use ::mmpool::ffi::{mmpool, mmpool_lease, mmpool_stats, mmpool_ticket};

fn last_error() -> String {
    // SAFETY: mmpool_last_error never returns NULL; the text is valid until
    // the next failing call on this thread.
    unsafe { CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

/// An in-process pool, or a shared one under a name removed on drop.
struct TestPool {
    pool: *mut mmpool,
    name: Option<CString>,
}

impl TestPool {
    fn local(total: u64) -> TestPool {
        let mut pool = ptr::null_mut();
        assert_eq!(mmpool_init(total, &mut pool), MMPOOL_OK);
        TestPool { pool, name: None }
    }

    fn shared(test: &str, total: u64) -> TestPool {
        let name = CString::new(format!("test-{}-sliced-{test}", std::process::id())).unwrap();
        mmpool_unlink_shared(name.as_ptr());
        let mut pool = ptr::null_mut();
        assert_eq!(mmpool_open_shared(name.as_ptr(), total, MMPOOL_SHARED_CREATE, &mut pool), MMPOOL_OK, "{}", last_error());
        TestPool { pool, name: Some(name) }
    }

    fn stats(&self) -> mmpool_stats {
        let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
        assert_eq!(mmpool_get_stats(self.pool, &mut s), MMPOOL_OK);
        s
    }

    fn acquire(&self, nbytes: u64) -> mmpool_lease {
        let mut lease = mmpool_lease::default();
        assert_eq!(mmpool_acquire(self.pool, nbytes, &mut lease), MMPOOL_OK);
        lease
    }

    /// `mmpool_acquire_or_enqueue`, asserting OK and that exactly one id is set.
    fn admit(&self, nbytes: u64) -> (mmpool_lease, mmpool_ticket) {
        let mut lease = mmpool_lease { id: 77, nbytes: 88 };
        let mut ticket = mmpool_ticket { id: 99 };
        assert_eq!(mmpool_acquire_or_enqueue(self.pool, nbytes, &mut lease, &mut ticket), MMPOOL_OK, "{}", last_error());
        assert!((lease.id == 0) != (ticket.id == 0), "exactly one of {lease:?} and {ticket:?} is set");
        (lease, ticket)
    }

    fn wait_or_leave(&self, ticket: mmpool_ticket, timeout_ns: u64) -> (mmpool_status, mmpool_lease) {
        let mut lease = mmpool_lease::default();
        (mmpool_ticket_wait_or_leave(self.pool, ticket, timeout_ns, &mut lease), lease)
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        mmpool_unref(self.pool);
        if let Some(name) = &self.name {
            mmpool_unlink_shared(name.as_ptr());
        }
    }
}

fn both(test: &str, total: u64, check: impl Fn(&TestPool)) {
    check(&TestPool::local(total));
    check(&TestPool::shared(test, total));
}

#[test]
fn free_bytes_are_granted_at_once_and_nothing_is_counted_as_refused() {
    both("grant", 100, |p| {
        let (lease, ticket) = p.admit(60);
        assert_eq!((lease.nbytes, ticket.id), (60, 0));
        assert_eq!(mmpool_available_bytes(p.pool), 40);
        let s = p.stats();
        assert_eq!((s.grants, s.would_blocks, s.timeouts, s.waiters), (1, 0, 0, 0));
        assert_eq!(mmpool_release(p.pool, lease), MMPOOL_OK);
        assert_eq!(mmpool_available_bytes(p.pool), 100);
    });
}

#[test]
fn a_request_that_must_wait_joins_the_line_and_is_no_would_block() {
    both("queue", 100, |p| {
        let held = p.acquire(70);
        let (lease, ticket) = p.admit(50);
        assert_eq!(lease, mmpool_lease::default());
        let s = p.stats();
        assert_eq!((s.waiters, s.would_blocks), (1, 0));
        // Canary: a try-once refusal on the same pool is counted.
        let mut refused = mmpool_lease::default();
        assert_eq!(mmpool_try_acquire(p.pool, 50, &mut refused), MMPOOL_ERR_WOULD_BLOCK);
        assert_eq!(p.stats().would_blocks, 1);
        // The release grants the ticket; the wait collects it under the ticket's id.
        assert_eq!(mmpool_release(p.pool, held), MMPOOL_OK);
        let (status, granted) = p.wait_or_leave(ticket, 1_000_000_000);
        assert_eq!(status, MMPOOL_OK, "{}", last_error());
        assert_eq!((granted.id, granted.nbytes), (ticket.id, 50));
        let s = p.stats();
        assert_eq!((s.waiters, s.waited_grants, s.timeouts, s.would_blocks), (0, 1, 0, 1));
        assert_eq!(mmpool_release(p.pool, granted), MMPOOL_OK);
        assert_eq!(mmpool_available_bytes(p.pool), 100);
    });
}

#[test]
fn a_last_slice_that_runs_out_leaves_the_line_and_counts_one_timeout() {
    both("timeout", 100, |p| {
        let held = p.acquire(70);
        let (_, ticket) = p.admit(50);
        // Canary: an ordinary slice that runs out keeps the place and counts nothing.
        let mut out = mmpool_lease { id: 5, nbytes: 6 };
        assert_eq!(mmpool_ticket_wait(p.pool, ticket, 0, &mut out), MMPOOL_ERR_TIMEOUT);
        assert_eq!((p.stats().waiters, p.stats().timeouts), (1, 0));
        let (status, lease) = p.wait_or_leave(ticket, 1_000_000);
        assert_eq!(status, MMPOOL_ERR_TIMEOUT);
        assert!(last_error().contains("mmpool_ticket_wait_or_leave"), "{}", last_error());
        assert_eq!(lease, mmpool_lease::default(), "out_lease is written only on success");
        let s = p.stats();
        assert_eq!((s.waiters, s.timeouts, s.would_blocks, s.outstanding_leases), (0, 1, 0, 1));
        assert_eq!(mmpool_available_bytes(p.pool), 30, "nothing was reserved");
        // The ticket is gone: neither wait can redeem it, and cancelling is a no-op.
        assert_eq!(mmpool_ticket_wait(p.pool, ticket, 0, &mut out), MMPOOL_ERR_INVALID_LEASE);
        assert_eq!(p.wait_or_leave(ticket, 0).0, MMPOOL_ERR_INVALID_LEASE);
        assert_eq!(out, mmpool_lease { id: 5, nbytes: 6 });
        assert_eq!(mmpool_release(p.pool, held), MMPOOL_OK);
        assert_eq!(mmpool_available_bytes(p.pool), 100);
    });
}

#[test]
fn a_head_that_times_out_hands_its_turn_to_the_next_in_line() {
    both("handoff", 100, |p| {
        let held = p.acquire(60);
        let (_, big) = p.admit(80);
        let (_, small) = p.admit(30); // fits in the 40 free bytes, but waits behind `big`
        assert_eq!(p.stats().waiters, 2);
        assert_eq!(p.wait_or_leave(big, 0).0, MMPOOL_ERR_TIMEOUT);
        let (status, lease) = p.wait_or_leave(small, 0);
        assert_eq!(status, MMPOOL_OK, "the next in line was granted when the head left: {}", last_error());
        assert_eq!(lease.nbytes, 30);
        assert_eq!(p.stats().timeouts, 1);
        assert_eq!(mmpool_release(p.pool, lease), MMPOOL_OK);
        assert_eq!(mmpool_release(p.pool, held), MMPOOL_OK);
    });
}

#[test]
fn refusals_write_no_out_parameter() {
    both("refuse", 100, |p| {
        let mut lease = mmpool_lease { id: 7, nbytes: 8 };
        let mut ticket = mmpool_ticket { id: 9 };
        let status = mmpool_acquire_or_enqueue(p.pool, 101, &mut lease, &mut ticket);
        assert_eq!(status, MMPOOL_ERR_EXCEEDS_CAPACITY);
        assert!(last_error().starts_with("mmpool_acquire_or_enqueue: "), "{}", last_error());
        assert_eq!((lease, ticket), (mmpool_lease { id: 7, nbytes: 8 }, mmpool_ticket { id: 9 }));
        assert_eq!(
            mmpool_acquire_or_enqueue(ptr::null_mut(), 1, &mut lease, &mut ticket),
            MMPOOL_ERR_NULL_ARGUMENT
        );
        assert_eq!(mmpool_acquire_or_enqueue(p.pool, 1, ptr::null_mut(), &mut ticket), MMPOOL_ERR_NULL_ARGUMENT);
        assert_eq!(mmpool_acquire_or_enqueue(p.pool, 1, &mut lease, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT);
        assert_eq!(
            mmpool_ticket_wait_or_leave(p.pool, mmpool_ticket { id: 1 }, 0, ptr::null_mut()),
            MMPOOL_ERR_NULL_ARGUMENT
        );
        assert_eq!(mmpool_close(p.pool), MMPOOL_OK);
        assert_eq!(mmpool_acquire_or_enqueue(p.pool, 1, &mut lease, &mut ticket), MMPOOL_ERR_CLOSED);
        assert_eq!((lease, ticket), (mmpool_lease { id: 7, nbytes: 8 }, mmpool_ticket { id: 9 }));
        assert_eq!(mmpool_available_bytes(p.pool), 100);
    });
}
