//! With NVIDIA's real `libcudart.so.12` on a machine without a GPU:
//! `mmpool_cuda_malloc` fails with `MMPOOL_ERR_CUDA`, the message names the
//! CUDA error, and the pool is whole. `scripts/test-cuda.sh` runs it with
//! `MMPOOL_CUDART` set to the library from the `nvidia-cuda-runtime-cu12` wheel.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::ffi::{c_void, CStr};
use std::ptr;

use ::mmpool::ffi::cuda::*;
use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;

fn last_error() -> String {
    // SAFETY: never NULL; valid until the next failing call on this thread.
    unsafe { CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

#[test]
#[ignore = "needs MMPOOL_CUDART=<the wheel's libcudart.so.12> and no GPU; scripts/test-cuda.sh runs it"]
fn a_real_runtime_without_a_gpu_fails_cleanly() {
    let cudart = std::env::var("MMPOOL_CUDART").expect("MMPOOL_CUDART must name the real libcudart.so.12");
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init(1 << 20, &mut p), MMPOOL_OK);
    let mut d = 0x1 as *mut c_void;
    assert_eq!(mmpool_cuda_malloc(p, &mut d, 4096, MMPOOL_WAIT_FOREVER), MMPOOL_ERR_CUDA);
    let msg = last_error();
    println!("mmpool_last_error(): {msg}");
    assert!(msg.starts_with("mmpool_cuda_malloc: CUDA error: cudaMalloc failed with cudaError"), "{msg}");
    // No driver (35) or no device (100), by name, number and NVIDIA's text.
    assert!(
        msg.contains("cudaErrorInsufficientDriver (35): CUDA driver version is insufficient")
            || msg.contains("cudaErrorNoDevice (100): no CUDA-capable device is detected"),
        "{msg}"
    );
    assert_eq!(d, 0x1 as *mut c_void, "the out-parameter is untouched");
    assert_eq!(mmpool_available_bytes(p), 1 << 20, "the lease went back");

    let mut count = 0u32;
    assert_eq!(mmpool_cuda_load(&mut count), MMPOOL_ERR_CUDA);
    assert!(last_error().contains("cudaGetDeviceCount failed"), "{}", last_error());
    assert!(!cudart.is_empty());
    mmpool_unref(p);
}
