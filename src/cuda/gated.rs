//! Device allocations that pay for their bytes first: acquire from the pool,
//! then allocate; free, then release.
//!
//! `pool` is the pool to charge; `None` means the process's global pool, and
//! when no global pool is installed gating is disabled: the allocation goes
//! straight to CUDA, uncharged (and is still recorded, so its free is checked
//! like any other).
//!
//! When the pool has a device arena in this process ([`super::arena`]), an
//! allocation is a placed lease of the arena and its free releases it: no
//! `cudaMalloc` or `cudaFree` at all (a stream-ordered free waits for its
//! stream first, as the range may be granted again at once).

use std::ffi::c_void;
use std::sync::Arc;

use super::arena;
use super::registry::{self, Record};
use super::runtime::{runtime, Stream};
use crate::log::{self, Level};
use crate::pool::{self, Error, Pool, Wait};

/// When the memory is allocated or freed.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    /// At once (`cudaMalloc`, `cudaFree`; a free waits for the device).
    Now,
    /// In the order of work on a stream (`cudaMallocAsync`, `cudaFreeAsync`).
    /// The bytes go back to the pool when the free is enqueued, not when the
    /// stream reaches it.
    OnStream(Stream),
    /// At once, as `Now`, for a library's allocator callback that names the
    /// stream the memory was used on (nvJPEG, nvImageCodec, PyTorch): a free
    /// of an arena's range, which `cudaFree` would not guard, first waits
    /// for that stream's work.
    NowAfter(Stream),
}

/// Acquires `size` bytes from `pool` (see the module docs for `None`), waiting
/// up to `wait`, then allocates them on the device. If the allocation fails,
/// the bytes go back and the CUDA error is returned. A size of 0 allocates
/// nothing and returns NULL.
///
/// # Safety
/// A stream in `order` must be NULL or a live stream of the current device.
pub unsafe fn malloc(pool: Option<Arc<Pool>>, size: usize, wait: Wait, order: Order) -> Result<*mut c_void, Error> {
    if size == 0 {
        return Ok(std::ptr::null_mut());
    }
    let pool = pool.or_else(pool::global);
    let nbytes = size as u64;
    // A pool with a device arena here: a placed lease is the allocation.
    if let Some(arena) = pool.as_deref().and_then(arena::attached) {
        let (ptr, record) = arena.draw(nbytes, wait)?;
        remember(ptr, record);
        return Ok(ptr);
    }
    // Without a runtime there is nothing to wait for.
    let rt = runtime()?;
    let lease = match &pool {
        Some(pool) => pool.acquire(nbytes, wait)?.id,
        None => 0,
    };
    let record = Record { pool, lease, nbytes, arena: None };
    let allocated = match order {
        Order::Now | Order::NowAfter(_) => rt.malloc(size),
        // SAFETY: the stream per this function's contract.
        Order::OnStream(stream) => unsafe { rt.malloc_async(size, stream) },
    };
    match allocated {
        Ok(ptr) => {
            remember(ptr, record);
            Ok(ptr)
        }
        Err(e) => {
            record.release();
            Err(match e {
                Error::Cuda(why) => Error::Cuda(with_device_memory(why, rt)),
                other => other,
            })
        }
    }
}

/// Records who pays for `ptr`. An entry already there was freed behind
/// mmpool's back: its bytes go back now.
fn remember(ptr: *mut c_void, record: Record) {
    if let Some(stale) = registry::insert(ptr, record) {
        log::log(
            Level::Warn,
            &format!(
                "{ptr:p} was handed out again while mmpool still held it: it was freed without \
                 mmpool; its {} bytes go back to the pool now",
                stale.nbytes
            ),
        );
        stale.release();
    }
}

/// Adds the device's free and total memory to an allocation failure's text
/// when the runtime can tell them.
fn with_device_memory(why: String, rt: &super::runtime::Runtime) -> String {
    match rt.mem_get_info() {
        Ok((free, total)) => format!("{why} (the device has {free} of {total} bytes free)"),
        Err(_) => why,
    }
}

/// Frees `ptr` and returns its bytes to the pool that paid for them. NULL is
/// a no-op. `pool`, when given, must be that pool. A pointer mmpool does not
/// hold (never allocated through it, or already freed) is refused and left
/// alone. If CUDA reports an error, the pointer is forgotten and its bytes go
/// back all the same (CUDA will not give that memory back later either), and
/// the error is returned.
///
/// # Safety
/// The memory must not be in use any more (for `Order::Now`: by any work;
/// for `Order::OnStream`: by work that is not ordered before the free on that
/// stream); a stream must be NULL or a live stream.
pub unsafe fn free(pool: Option<Arc<Pool>>, ptr: *mut c_void, order: Order) -> Result<(), Error> {
    if ptr.is_null() {
        return Ok(());
    }
    let record = registry::take(ptr, pool.as_ref())?;
    if record.arena.is_some() {
        // A range of an arena: the lease was the allocation. Its range may
        // be granted again at once, so work still queued on the stream must
        // be done with it first.
        let synced = match order {
            Order::Now => Ok(()),
            // SAFETY: the stream per this function's contract.
            Order::OnStream(stream) | Order::NowAfter(stream) => {
                runtime().and_then(|rt| unsafe { rt.stream_synchronize(stream) })
            }
        };
        record.release();
        return synced;
    }
    // A record exists only for memory the loaded runtime allocated.
    let rt = runtime()?;
    let freed = match order {
        // SAFETY: the memory came from this runtime and is no longer in use
        // (this function's contract); the record was claimed, so no one
        // else frees it.
        Order::Now | Order::NowAfter(_) => unsafe { rt.free(ptr) },
        // SAFETY: as above, and the stream per the contract.
        Order::OnStream(stream) => unsafe { rt.free_async(ptr, stream) },
    };
    let nbytes = record.nbytes;
    record.release();
    freed.map_err(|e| match e {
        Error::Cuda(why) => {
            Error::Cuda(format!("{why}; mmpool forgot {ptr:p} and returned its {nbytes} bytes to the pool"))
        }
        other => other,
    })
}
