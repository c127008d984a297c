//! The device pointers mmpool handed out, and the lease that pays for each.
//!
//! A free names only the pointer; this record says which pool's bytes come
//! back. Entries are claimed (removed) before the memory goes back to CUDA, so
//! CUDA handing the same address to a new allocation can never meet a stale
//! entry, and two frees of one pointer cannot both succeed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::arena::Arena;
use crate::pool::{Error, Pool};

/// What pays for one device allocation.
pub struct Record {
    /// The pool charged, or `None` for an allocation made while gating was
    /// disabled (no global pool installed).
    pub pool: Option<Arc<Pool>>,
    /// The lease in `pool` (0 when ungated).
    pub lease: u64,
    /// The bytes allocated.
    pub nbytes: u64,
    /// The arena the memory lies in (a placed lease's range, no CUDA
    /// allocation of its own), or `None` for memory from `cudaMalloc*`.
    pub arena: Option<Arc<Arena>>,
}

impl Record {
    /// Returns the lease's bytes to its pool (nothing when ungated).
    pub fn release(self) {
        if let Some(pool) = self.pool {
            // The lease was issued by this pool and is released only here,
            // once, so this cannot fail.
            let _ = pool.release(self.lease);
        }
    }
}

static RECORDS: Mutex<Option<HashMap<usize, Record>>> = Mutex::new(None);

/// Remembers that `ptr` is paid for by `record`. An entry already there for
/// the address is stale (its memory was freed behind mmpool's back, outside
/// it) and is returned so the caller can settle it.
pub fn insert(ptr: *mut std::ffi::c_void, record: Record) -> Option<Record> {
    RECORDS.lock().get_or_insert_with(HashMap::new).insert(ptr as usize, record)
}

/// Claims the record of `ptr` for a free. When `pool` is given it must be the
/// pool that paid for the pointer; otherwise the record stays and an error
/// says so.
pub fn take(ptr: *mut std::ffi::c_void, pool: Option<&Arc<Pool>>) -> Result<Record, Error> {
    let mut records = RECORDS.lock();
    let map = records.get_or_insert_with(HashMap::new);
    let Some(record) = map.get(&(ptr as usize)) else {
        return Err(Error::InvalidLease(format!(
            "device pointer {ptr:p} is not held by mmpool: it was not allocated through \
             mmpool, or it was already freed"
        )));
    };
    if let Some(pool) = pool {
        if !record.pool.as_ref().is_some_and(|own| Arc::ptr_eq(own, pool)) {
            return Err(Error::InvalidArgument(format!(
                "device pointer {ptr:p} was not allocated from this pool; pass the pool it came \
                 from, or NULL to free it from whichever pool paid for it"
            )));
        }
    }
    Ok(map.remove(&(ptr as usize)).expect("present: checked under the same lock"))
}

/// (pointers held, bytes they hold), over all pools and ungated allocations.
pub fn outstanding() -> (u64, u64) {
    RECORDS
        .lock()
        .as_ref()
        .map_or((0, 0), |m| (m.len() as u64, m.values().map(|r| r.nbytes).sum()))
}
