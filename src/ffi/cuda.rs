//! Exports for gated CUDA allocations: `mmpool_cuda_*` for C and C++ callers
//! and for nvJPEG / nvImageCodec allocator structs, `mmpool_torch_*` for
//! PyTorch's pluggable allocator. Each validates and calls `crate::cuda`.

use std::ffi::{c_int, c_void, CStr};

use super::boundary::{last_error_ptr, out};
use super::handle::{self, mmpool};
use super::status::mmpool_status;
use crate::cuda::{self, callbacks, Order};
use crate::pool::{Error, Wait};

/// A CUDA stream: `cudaStream_t` is `struct CUstream_st *`, so the functions
/// below take streams without mmpool.h including a CUDA header, and their
/// addresses fit nvJPEG's, nvImageCodec's and PyTorch's allocator types with
/// no cast, in C and in C++. NULL is the default stream.
pub struct CUstream_st {
    _opaque: [u8; 0],
}

/// `mmpool_torch_set_failure_mode`: abort the process (the default).
pub const MMPOOL_TORCH_ABORT: c_int = 0;
/// `mmpool_torch_set_failure_mode`: return NULL.
pub const MMPOOL_TORCH_RETURN_NULL: c_int = 1;

fn last_error_text() -> String {
    // SAFETY: last_error_ptr never returns NULL; the text is NUL-terminated
    // and valid until the next failing call on this thread.
    unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
}

/// Loads the CUDA runtime if that has not happened yet and counts the devices
/// it sees, into `*out_device_count` unless that is NULL. The runtime is
/// `MMPOOL_CUDART` if set (a file path), else `libcudart.so.13`, `.so.12`,
/// `.so.11.0`, found by the dynamic loader; it is loaded once per process.
///
/// Errors: `CUDA` (no runtime could be loaded, or it reports no usable driver
/// or device: the message names the library and the CUDA error).
#[no_mangle]
pub extern "C" fn mmpool_cuda_load(out_device_count: *mut u32) -> mmpool_status {
    boundary!("mmpool_cuda_load", {
        let count = cuda::runtime()?.device_count()?;
        if !out_device_count.is_null() {
            // SAFETY: the C contract: a non-NULL `out_device_count` is writable.
            *unsafe { out(out_device_count, "out_device_count") }? = count;
        }
        Ok(())
    })
}

/// Allocates `size` bytes of device memory (`cudaMalloc`) paid for by `pool`:
/// first acquires `size` bytes, waiting in line up to `timeout_ns`
/// (`MMPOOL_WAIT_FOREVER`: no limit; 0: no wait), then allocates. On success
/// `*ptr` is the memory; free it with `mmpool_cuda_free`. A `size` of 0
/// allocates nothing and sets `*ptr` to NULL.
///
/// `pool` NULL means the global pool (`mmpool_global`); when none is
/// installed, gating is disabled and the memory is allocated uncharged.
/// When the pool has a device arena in this process (`mmpool_cuda_arena_new`,
/// `mmpool_cuda_arena_open`), the memory is a placed lease's range of it and
/// no `cudaMalloc` is made; here and in the callbacks below.
///
/// Errors: `NULL_ARGUMENT` (`ptr`), `INVALID_ARGUMENT` (not a live pool),
/// `EXCEEDS_CAPACITY`, `TIMEOUT`, `CLOSED` (nothing reserved, nothing
/// allocated); `CUDA` (no runtime, or `cudaMalloc` failed: the bytes went back
/// to the pool and the message carries the CUDA error's name and text).
#[no_mangle]
pub extern "C" fn mmpool_cuda_malloc(pool: *mut mmpool, ptr: *mut *mut c_void, size: usize, timeout_ns: u64) -> mmpool_status {
    boundary!("mmpool_cuda_malloc", {
        // SAFETY: the C contract: `pool` is NULL or a held handle; `ptr` is
        // NULL or writable.
        let (pool, ptr) = unsafe { (handle::clone_arc(pool)?, out(ptr, "ptr")?) };
        // SAFETY: immediate allocation, no stream involved.
        *ptr = unsafe { cuda::malloc(pool, size, Wait::timeout_ns(timeout_ns), Order::Now) }?;
        Ok(())
    })
}

/// Frees device memory from `mmpool_cuda_malloc` (`cudaFree`, which waits for
/// the device) and returns its bytes to the pool that paid for them. NULL is a
/// no-op, as for `cudaFree`. A range of a device arena is released with no
/// CUDA call and no wait: no work may use it any more. `pool` may be NULL (whichever pool paid); if not,
/// it must be the pool given at allocation.
///
/// Errors: `INVALID_LEASE` (mmpool does not hold `ptr`: never allocated
/// through mmpool, or already freed; nothing is done), `INVALID_ARGUMENT`
/// (`ptr` came from another pool; nothing is done), `CUDA` (`cudaFree` failed;
/// mmpool has forgotten `ptr` and returned its bytes all the same).
#[no_mangle]
pub extern "C" fn mmpool_cuda_free(pool: *mut mmpool, ptr: *mut c_void) -> mmpool_status {
    boundary!("mmpool_cuda_free", {
        // SAFETY: the C contract: `pool` is NULL or a held handle.
        let pool = unsafe { handle::clone_arc(pool) }?;
        // SAFETY: the C contract: `ptr` is NULL or memory from
        // mmpool_cuda_malloc that no work uses any more.
        unsafe { cuda::free(pool, ptr, Order::Now) }?;
        Ok(())
    })
}

/// Stream-ordered `mmpool_cuda_malloc`: acquires as it does, then allocates
/// with `cudaMallocAsync` on `stream` (NULL: the default stream). Free it
/// with `mmpool_cuda_free_async` (or `mmpool_cuda_free`).
///
/// Errors: as `mmpool_cuda_malloc`; `CUDA` also when the runtime has no
/// `cudaMallocAsync` (before CUDA 11.2) or the device no memory pools.
#[no_mangle]
pub extern "C" fn mmpool_cuda_malloc_async(
    pool: *mut mmpool,
    ptr: *mut *mut c_void,
    size: usize,
    stream: *mut CUstream_st,
    timeout_ns: u64,
) -> mmpool_status {
    boundary!("mmpool_cuda_malloc_async", {
        // SAFETY: as for mmpool_cuda_malloc.
        let (pool, ptr) = unsafe { (handle::clone_arc(pool)?, out(ptr, "ptr")?) };
        let order = Order::OnStream(stream.cast());
        // SAFETY: the C contract: `stream` is NULL or a live stream.
        *ptr = unsafe { cuda::malloc(pool, size, Wait::timeout_ns(timeout_ns), order) }?;
        Ok(())
    })
}

/// Stream-ordered `mmpool_cuda_free`: enqueues `cudaFreeAsync(ptr, stream)`
/// and returns the bytes to the pool at once, when the free is *enqueued*,
/// not when the stream reaches it. Until then the pool may grant bytes that
/// the device has not freed yet, by at most the sizes of frees still in
/// flight; use `mmpool_cuda_free` where that slack matters.
///
/// Errors: as `mmpool_cuda_free`.
#[no_mangle]
pub extern "C" fn mmpool_cuda_free_async(pool: *mut mmpool, ptr: *mut c_void, stream: *mut CUstream_st) -> mmpool_status {
    boundary!("mmpool_cuda_free_async", {
        // SAFETY: the C contract: `pool` is NULL or a held handle.
        let pool = unsafe { handle::clone_arc(pool) }?;
        // SAFETY: the C contract: `ptr` is NULL or mmpool-allocated memory not
        // used by work outside `stream`'s order; `stream` is NULL or live.
        unsafe { cuda::free(pool, ptr, Order::OnStream(stream.cast())) }?;
        Ok(())
    })
}

/// Device-memory allocator for nvJPEG (`nvjpegDevAllocatorV2_t.dev_malloc`)
/// and nvImageCodec (`nvimgcodecDeviceAllocator_t.device_malloc`), with the
/// pool as the context (`dev_ctx` / `device_ctx`): an `mmpool *`, or NULL for
/// the global pool (uncharged if none is installed). Acquires `size` bytes,
/// waiting in line up to the callback timeout (`mmpool_cuda_set_callback_timeout`),
/// then `cudaMalloc`s them; `stream` is not used.
///
/// ```c
/// nvjpegDevAllocatorV2_t dev = { mmpool_cuda_dev_malloc, mmpool_cuda_dev_free, pool };
/// nvjpegCreateExV2(NVJPEG_BACKEND_DEFAULT, &dev, NULL, 0, &handle);
/// ```
///
/// Returns 0 on success, else the `mmpool_status` of the failure (non-zero;
/// the library reports an allocator failure); the reason is logged at warn
/// level and left in `mmpool_last_error()` on the calling thread.
#[no_mangle]
pub extern "C" fn mmpool_cuda_dev_malloc(ctx: *mut c_void, ptr: *mut *mut c_void, size: usize, stream: *mut CUstream_st) -> c_int {
    let _ = stream;
    let status = boundary!("mmpool_cuda_dev_malloc", {
        // SAFETY: the C contract: `ctx` is NULL or a held `mmpool *`; `ptr`
        // is NULL or writable.
        let (pool, ptr) = unsafe { (handle::clone_arc(ctx.cast())?, out(ptr, "ptr")?) };
        // SAFETY: immediate allocation, no stream involved.
        *ptr = unsafe { cuda::malloc(pool, size, callbacks::wait(), Order::Now) }?;
        Ok(())
    });
    device_callback_result(status)
}

/// The matching free for `mmpool_cuda_dev_malloc` (`dev_free` /
/// `device_free`): `cudaFree`, then the bytes go back to the pool that paid
/// for them (the pool's record decides how many, not `size`). NULL is a
/// no-op. Memory drawn from the pool's device arena (`mmpool_cuda_arena_new`)
/// is not freed but released after `cudaStreamSynchronize(stream)`, since its
/// range may be granted again at once.
///
/// Returns 0 on success, else the `mmpool_status` of the failure, logged and
/// left in `mmpool_last_error()` as for `mmpool_cuda_free`.
#[no_mangle]
pub extern "C" fn mmpool_cuda_dev_free(ctx: *mut c_void, ptr: *mut c_void, size: usize, stream: *mut CUstream_st) -> c_int {
    let _ = size;
    let status = boundary!("mmpool_cuda_dev_free", {
        // SAFETY: the C contract: `ctx` is NULL or a held `mmpool *`.
        let pool = unsafe { handle::clone_arc(ctx.cast()) }?;
        // SAFETY: the C contract: `ptr` is NULL or memory from
        // mmpool_cuda_dev_malloc that no work but `stream`'s uses any more;
        // `stream` is NULL or live.
        unsafe { cuda::free(pool, ptr, Order::NowAfter(stream.cast())) }?;
        Ok(())
    });
    device_callback_result(status)
}

fn device_callback_result(status: mmpool_status) -> c_int {
    if status != mmpool_status::MMPOOL_OK {
        callbacks::report_device_callback_failure(&last_error_text());
    }
    status as c_int
}

/// Allocation function for PyTorch's `CUDAPluggableAllocator`, charging the
/// global pool (uncharged if none is installed):
///
/// ```python
/// alloc = torch.cuda.memory.CUDAPluggableAllocator(
///     "libmmpool.so", "mmpool_torch_alloc", "mmpool_torch_free")
/// torch.cuda.memory.change_current_allocator(alloc)
/// ```
/// (`mmpool.torch.install_allocator()` does this.) Acquires `size` bytes,
/// waiting up to the callback timeout (`mmpool_cuda_set_callback_timeout`),
/// then `cudaMalloc`s them on the current device (`device` and `stream` are
/// not used). A `size` of 0 returns NULL, which PyTorch accepts for an empty
/// tensor.
///
/// Failure (timeout, closed pool, a size above the pool's total, a CUDA
/// error): PyTorch does not check the returned pointer, so NULL would become
/// a tensor without memory. The reason is logged at error level and then, by
/// default, the process aborts with the reason on stderr. With
/// `mmpool_torch_set_failure_mode(MMPOOL_TORCH_RETURN_NULL)` (or
/// `MMPOOL_TORCH_ON_FAILURE=null`) it returns NULL instead.
#[no_mangle]
pub extern "C" fn mmpool_torch_alloc(size: isize, device: c_int, stream: *mut CUstream_st) -> *mut c_void {
    let _ = (device, stream);
    let mut allocated = std::ptr::null_mut();
    let status = boundary!("mmpool_torch_alloc", {
        let size = callbacks::torch_size(size)?;
        // SAFETY: immediate allocation, no stream involved.
        allocated = unsafe { cuda::malloc(None, size, callbacks::wait(), Order::Now) }?;
        Ok(())
    });
    if status != mmpool_status::MMPOOL_OK {
        callbacks::torch_alloc_failed(&last_error_text());
    }
    allocated
}

/// Free function for PyTorch's `CUDAPluggableAllocator`: `cudaFree`, then the
/// bytes go back to the pool that paid for them. NULL is a no-op; `size` and
/// `device` are not used. Memory drawn from the global pool's device arena
/// is not freed but released after `cudaStreamSynchronize(stream)`. PyTorch cannot hear of a failure (a
/// pointer mmpool does not hold, a CUDA error), so it is logged at error level.
#[no_mangle]
pub extern "C" fn mmpool_torch_free(ptr: *mut c_void, size: isize, device: c_int, stream: *mut CUstream_st) {
    let _ = (size, device);
    let status = boundary!("mmpool_torch_free", {
        // SAFETY: the C contract: `ptr` is NULL or memory from
        // mmpool_torch_alloc that no work but `stream`'s uses any more;
        // `stream` is NULL or live.
        unsafe { cuda::free(None, ptr, Order::NowAfter(stream.cast())) }?;
        Ok(())
    });
    if status != mmpool_status::MMPOOL_OK {
        callbacks::torch_free_failed(&last_error_text());
    }
}

/// Sets how long the allocator callbacks (`mmpool_cuda_dev_malloc`,
/// `mmpool_torch_alloc`), which cannot take a timeout argument, wait in line:
/// `timeout_ns` nanoseconds, `MMPOOL_WAIT_FOREVER` for no limit, 0 for no
/// wait. Process-wide. The initial value is `MMPOOL_CUDA_TIMEOUT_MS`
/// (milliseconds or `forever`) if set, else 60 seconds.
#[no_mangle]
pub extern "C" fn mmpool_cuda_set_callback_timeout(timeout_ns: u64) -> mmpool_status {
    boundary!("mmpool_cuda_set_callback_timeout", {
        callbacks::set_timeout_ns(timeout_ns);
        Ok(())
    })
}

/// Sets what `mmpool_torch_alloc` does after logging a failure:
/// `MMPOOL_TORCH_ABORT` (the default) aborts the process;
/// `MMPOOL_TORCH_RETURN_NULL` returns NULL. Process-wide. The initial value is
/// `MMPOOL_TORCH_ON_FAILURE` (`abort` or `null`) if set.
///
/// Errors: `INVALID_ARGUMENT` (another value).
#[no_mangle]
pub extern "C" fn mmpool_torch_set_failure_mode(mode: c_int) -> mmpool_status {
    boundary!("mmpool_torch_set_failure_mode", {
        let mode = match mode {
            MMPOOL_TORCH_ABORT => callbacks::TorchFailure::Abort,
            MMPOOL_TORCH_RETURN_NULL => callbacks::TorchFailure::ReturnNull,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "mode must be MMPOOL_TORCH_ABORT (0) or MMPOOL_TORCH_RETURN_NULL (1), got {other}"
                ))
                .into())
            }
        };
        callbacks::set_torch_failure(mode);
        Ok(())
    })
}
