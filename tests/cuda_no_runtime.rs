//! Without a CUDA runtime every CUDA entry point fails cleanly with
//! `MMPOOL_ERR_CUDA`, says why, and leaves the pool whole. The runtime is
//! loaded once per process, so this binary points `MMPOOL_CUDART` at a file
//! that does not exist before anything loads it.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::Once;

use ::mmpool::ffi::cuda::*;
use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;

const MISSING: &str = "/nonexistent/mmpool-test/libcudart.so.12";

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("MMPOOL_CUDART", MISSING));
}

fn last_error() -> String {
    // SAFETY: never NULL; valid until the next failing call on this thread.
    unsafe { CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn allocations_fail_with_a_message_naming_the_library_and_the_pool_stays_whole() {
    setup();
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init(1000, &mut p), MMPOOL_OK);
    let mut d = 0x1 as *mut c_void;
    assert_eq!(mmpool_cuda_malloc(p, &mut d, 100, MMPOOL_WAIT_FOREVER), MMPOOL_ERR_CUDA);
    let msg = last_error();
    assert!(msg.contains("mmpool_cuda_malloc") && msg.contains(&format!("MMPOOL_CUDART={MISSING}")), "{msg}");
    assert_eq!(d, 0x1 as *mut c_void, "the out-parameter is untouched");
    assert_eq!(mmpool_cuda_malloc_async(p, &mut d, 100, ptr::null_mut(), 0), MMPOOL_ERR_CUDA);
    assert_eq!(mmpool_cuda_dev_malloc(p.cast(), &mut d, 100, ptr::null_mut()), MMPOOL_ERR_CUDA as i32);
    let mut count = 7u32;
    assert_eq!(mmpool_cuda_load(&mut count), MMPOOL_ERR_CUDA);
    assert_eq!(count, 7);
    assert_eq!(mmpool_available_bytes(p), 1000);
    assert_eq!(mmpool_cuda_free(p, ptr::null_mut()), MMPOOL_OK, "freeing NULL needs no runtime");
    mmpool_unref(p);
}

#[test]
fn a_pytorch_allocation_without_a_runtime_fails_as_configured() {
    setup();
    assert_eq!(mmpool_torch_set_failure_mode(MMPOOL_TORCH_RETURN_NULL), MMPOOL_OK);
    assert!(mmpool_torch_alloc(100, 0, ptr::null_mut()).is_null());
    assert!(last_error().contains(MISSING), "{}", last_error());
}
