//! The opaque handle: C's `mmpool *` is the address of a pool's core
//! (`PoolCore`), and each reference it holds is one `Arc<Pool>` handle,
//! leaked while C holds it.

use super::boundary::Failure;
use crate::pool::sync::Arc;
use crate::pool::{Error, Pool, PoolCore};

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
    let core = pool.core_ptr();
    std::mem::forget(pool);
    core as *mut mmpool
}

/// Borrows the pool behind `ptr` for the duration of one call, refusing NULL
/// and (best effort) pointers that no longer hold a pool.
///
/// # Safety
/// A non-NULL `ptr` must come from this library (`mmpool_init`, `mmpool_global`,
/// ...) and the caller must hold a reference to it for the duration of the
/// call (or, for `mmpool_release`, an outstanding lease of it).
pub(crate) unsafe fn borrow<'a>(ptr: *const mmpool, name: &'static str) -> Result<&'a PoolCore, Failure> {
    if ptr.is_null() {
        return Err(Failure::Null(name));
    }
    // SAFETY: per the contract above, `ptr` is the address of a live core.
    let pool = unsafe { &*(ptr as *const PoolCore) };
    if !pool.is_live() {
        return Err(Error::InvalidArgument(format!("`{name}` is not a live mmpool handle")).into());
    }
    Ok(pool)
}

/// The pool behind `ptr` for an export's fast path, or `None` (NULL, or not
/// a live handle) to take the export's full path, which says why.
///
/// # Safety
/// As for [`borrow`].
#[inline]
pub(crate) unsafe fn peek<'a>(ptr: *const mmpool) -> Option<&'a PoolCore> {
    // SAFETY: per the contract of `borrow`, a non-NULL `ptr` is a live core
    // for the duration of the call.
    let pool = unsafe { (ptr as *const PoolCore).as_ref() }?;
    pool.is_live().then_some(pool)
}

/// Adds a reference.
///
/// # Safety
/// As for [`borrow`].
pub(crate) unsafe fn add_ref(ptr: *const mmpool) -> Result<(), Failure> {
    // SAFETY: forwarded contract.
    let pool = unsafe { borrow(ptr, "pool") }?;
    std::mem::forget(new_handle(pool, "`pool` has no reference left to add to")?);
    Ok(())
}

/// A new handle of a borrowed pool, refused with `refusal` once its last
/// handle is gone.
fn new_handle(pool: &PoolCore, refusal: &str) -> Result<Arc<Pool>, Failure> {
    pool.try_handle().ok_or_else(|| Error::InvalidArgument(refusal.into()).into())
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
    if pool.handle_count() == 0 {
        return Err(Error::InvalidArgument("`pool` has no reference left to drop".into()).into());
    }
    // SAFETY: the caller's reference is one leaked handle (`into_raw`,
    // `add_ref`), dropped here once; `pool` is not used after.
    unsafe { PoolCore::drop_handle(pool) };
    Ok(())
}

/// Takes the pointer's pool as a new handle (a new reference), or `None` for
/// NULL.
///
/// # Safety
/// As for [`borrow`].
pub(crate) unsafe fn clone_arc(ptr: *const mmpool) -> Result<Option<Arc<Pool>>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    let pool = unsafe { borrow(ptr, "pool") }?;
    Ok(Some(new_handle(pool, "`pool` has no reference left")?))
}
