//! mmpool as a C program uses it: every call goes through the exported
//! `extern "C"` functions, boundary (argument checks, panic catching) included.

use std::ffi::CString;
use std::time::Instant;

use ::mmpool::ffi::pool::{
    mmpool_acquire, mmpool_acquire_timeout, mmpool_get_stats, mmpool_init, mmpool_release, mmpool_unref,
};
use ::mmpool::ffi::shared::{mmpool_open_shared, mmpool_unlink_shared, MMPOOL_SHARED_CREATE};
use ::mmpool::ffi::{mmpool, mmpool_lease, mmpool_stats, mmpool_status};

use super::subject::{Grant, Subject};

/// `SHARED`: a pool shared between processes (a segment of its own, named
/// after this process and removed with the subject) instead of an
/// in-process one; the calls are the same.
pub struct MmpoolC<const SHARED: bool = false> {
    handle: *mut mmpool,
    /// The shared pool's name.
    name: Option<CString>,
}

/// mmpool's shared pool, through the same C functions.
pub type MmpoolSharedC = MmpoolC<true>;

// SAFETY: an `mmpool` handle may be used from many threads at once (the C
// contract); this struct holds one reference and only passes the pointer on.
unsafe impl<const SHARED: bool> Send for MmpoolC<SHARED> {}
// SAFETY: as above: every export is thread-safe on a shared handle.
unsafe impl<const SHARED: bool> Sync for MmpoolC<SHARED> {}

impl<const SHARED: bool> MmpoolC<SHARED> {
    fn stats(&self) -> mmpool_stats {
        let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
        check(mmpool_get_stats(self.handle, &mut s), "mmpool_get_stats");
        s
    }
}

fn check(status: mmpool_status, what: &str) {
    assert_eq!(status, mmpool_status::MMPOOL_OK, "{what} failed");
}

impl<const SHARED: bool> Subject for MmpoolC<SHARED> {
    const NAME: &'static str = if SHARED { "mmpool-shared" } else { "mmpool" };

    fn new(total: u64) -> Self {
        let mut handle = std::ptr::null_mut();
        if !SHARED {
            check(mmpool_init(total, &mut handle), "mmpool_init");
            return MmpoolC { handle, name: None };
        }
        let name = CString::new(format!("mmpool-bench-{}", std::process::id())).expect("no NUL in the name");
        mmpool_unlink_shared(name.as_ptr());
        check(mmpool_open_shared(name.as_ptr(), total, MMPOOL_SHARED_CREATE, &mut handle), "mmpool_open_shared");
        MmpoolC { handle, name: Some(name) }
    }

    fn acquire(&self, nbytes: u64) -> Grant {
        let mut lease = mmpool_lease::default();
        check(mmpool_acquire(self.handle, nbytes, &mut lease), "mmpool_acquire");
        Grant { id: lease.id, nbytes: lease.nbytes }
    }

    fn acquire_until(&self, nbytes: u64, deadline: Instant) -> Option<Grant> {
        let ns = deadline.saturating_duration_since(Instant::now()).as_nanos().min(u64::MAX as u128 - 1) as u64;
        let mut lease = mmpool_lease::default();
        match mmpool_acquire_timeout(self.handle, nbytes, ns, &mut lease) {
            mmpool_status::MMPOOL_ERR_TIMEOUT => None,
            status => {
                check(status, "mmpool_acquire_timeout");
                Some(Grant { id: lease.id, nbytes: lease.nbytes })
            }
        }
    }

    fn release(&self, grant: Grant) {
        let lease = mmpool_lease { id: grant.id, nbytes: grant.nbytes };
        check(mmpool_release(self.handle, lease), "mmpool_release");
    }

    fn waiters(&self) -> u64 {
        self.stats().waiters
    }

    fn futile_wakeups(&self) -> u64 {
        self.stats().futile_wakeups
    }
}

impl<const SHARED: bool> Drop for MmpoolC<SHARED> {
    fn drop(&mut self) {
        mmpool_unref(self.handle);
        if let Some(name) = &self.name {
            mmpool_unlink_shared(name.as_ptr());
        }
    }
}
