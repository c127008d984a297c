//! The opaque handle: a `Pool` behind an `Arc`, its pointer given to C.

use std::mem::ManuallyDrop;
use std::ops::Deref;

use super::boundary::Failure;
use crate::pool::sync::Arc;
use crate::pool::{Error, Pool};

/// A pool. Opaque, thread-safe (every function may be called on one pool from
/// many threads at once) and reference-counted: `mmpool_init` returns it with
/// one reference; `mmpool_ref` adds one; `mmpool_unref` drops one. Each
/// thread waiting in it and the global slot hold a reference too. An
/// outstanding lease keeps the pool's memory: after the last reference is
/// dropped the pool is closed, its outstanding leases may still be released
/// (and its figures read), and the release of the last one frees it.
pub struct mmpool {
    _opaque: [u8; 0],
}

/// Gives one reference to C.
pub(crate) fn into_raw(pool: Arc<Pool>) -> *mut mmpool {
    Arc::into_raw(pool) as *mut mmpool
}

/// A pool borrowed from C for the duration of one call.
pub(crate) struct Borrowed(ManuallyDrop<Arc<Pool>>);

impl Deref for Borrowed {
    type Target = Arc<Pool>;
    fn deref(&self) -> &Arc<Pool> {
        &self.0
    }
}

/// Borrows the pool behind `ptr`, refusing NULL and (best effort) handles that
/// no longer hold a pool.
///
/// # Safety
/// A non-NULL `ptr` must come from this library (`mmpool_init`, `mmpool_global`,
/// ...) and the caller must hold a reference to it for the duration of the call.
pub(crate) unsafe fn borrow(ptr: *const mmpool, name: &'static str) -> Result<Borrowed, Failure> {
    if ptr.is_null() {
        return Err(Failure::Null(name));
    }
    // SAFETY: per the contract above, `ptr` came from `Arc::into_raw` and a
    // reference is held, so the allocation is live; ManuallyDrop leaves the
    // count as it is.
    let pool = ManuallyDrop::new(unsafe { Arc::from_raw(ptr as *const Pool) });
    if !pool.is_live() {
        return Err(Error::InvalidArgument(format!("`{name}` is not a live mmpool handle")).into());
    }
    Ok(Borrowed(pool))
}

/// The pool behind `ptr` for an export's fast path, or `None` (NULL, or not
/// a live handle) to take the export's full path, which says why.
///
/// # Safety
/// As for [`borrow`].
#[inline]
pub(crate) unsafe fn peek<'a>(ptr: *const mmpool) -> Option<&'a Pool> {
    // SAFETY: per the contract of `borrow`, a non-NULL `ptr` is a live
    // allocation holding a `Pool` for the duration of the call.
    let pool = unsafe { (ptr as *const Pool).as_ref() }?;
    pool.is_live().then_some(pool)
}

/// Adds a reference.
///
/// # Safety
/// As for [`borrow`].
pub(crate) unsafe fn add_ref(ptr: *const mmpool) -> Result<(), Failure> {
    // SAFETY: forwarded contract.
    let pool = unsafe { borrow(ptr, "pool") }?;
    std::mem::forget(Arc::clone(&pool));
    Ok(())
}

/// Drops a reference; NULL is ignored.
///
/// # Safety
/// As for [`borrow`]; the reference dropped is one the caller held.
pub(crate) unsafe fn drop_ref(ptr: *const mmpool) -> Result<(), Failure> {
    if ptr.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded contract.
    let pool = unsafe { borrow(ptr, "pool") }?;
    drop(ManuallyDrop::into_inner(pool.0));
    Ok(())
}

/// Takes the pointer's pool as a new `Arc` (a new reference), or `None` for NULL.
///
/// # Safety
/// As for [`borrow`].
pub(crate) unsafe fn clone_arc(ptr: *const mmpool) -> Result<Option<Arc<Pool>>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    let pool = unsafe { borrow(ptr, "pool") }?;
    Ok(Some(Arc::clone(&pool)))
}
