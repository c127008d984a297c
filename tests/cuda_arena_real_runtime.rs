//! With NVIDIA's real `libcudart.so.12` on a machine without a GPU: making
//! an arena fails with `MMPOOL_ERR_CUDA`, the message names the CUDA error,
//! nothing is attached and the pool is whole. `scripts/test-cuda.sh` runs it
//! with `MMPOOL_CUDART` set to the library from the `nvidia-cuda-runtime-cu12`
//! wheel.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

#[allow(dead_code)] // expect_fail: not used here
#[path = "support/c_errors.rs"]
mod c_errors;

use std::ffi::c_void;
use std::ptr;

use ::mmpool::ffi::arena::*;
use ::mmpool::ffi::cuda::*;
use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::placed::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
use ::mmpool::ffi::{mmpool_cuda_arena, mmpool_stats};
use c_errors::last_error;

fn stats(p: *mut ::mmpool::ffi::mmpool) -> mmpool_stats {
    let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
    assert_eq!(mmpool_get_stats(p, &mut s), MMPOOL_OK);
    s
}

/// No driver (35) or no device (100), by name, number and NVIDIA's text.
fn names_the_missing_driver(msg: &str) -> bool {
    msg.contains("cudaErrorInsufficientDriver (35): CUDA driver version is insufficient")
        || msg.contains("cudaErrorNoDevice (100): no CUDA-capable device is detected")
}

#[test]
#[ignore = "needs MMPOOL_CUDART=<the wheel's libcudart.so.12> and no GPU; scripts/test-cuda.sh runs it"]
fn a_real_runtime_without_a_gpu_makes_no_arena_and_leaves_the_pool_whole() {
    std::env::var("MMPOOL_CUDART").expect("MMPOOL_CUDART must name the real libcudart.so.12");
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init_placed(1 << 20, 256, &mut p), MMPOOL_OK, "{}", last_error());
    let before = stats(p);
    for kind in [MMPOOL_CUDA_ARENA_DEVICE, MMPOOL_CUDA_ARENA_PINNED_HOST] {
        let mut a = 0x1 as *mut mmpool_cuda_arena;
        assert_eq!(mmpool_cuda_arena_new(p, kind, 0, &mut a), MMPOOL_ERR_CUDA);
        let msg = last_error();
        println!("kind {kind}: mmpool_last_error(): {msg}");
        assert!(msg.starts_with("mmpool_cuda_arena_new: CUDA error: cuda"), "{msg}");
        assert!(names_the_missing_driver(&msg), "{msg}");
        assert_eq!(a, 0x1 as *mut mmpool_cuda_arena, "the out-parameter is untouched");
    }
    assert_eq!(stats(p), before, "the pool is whole and untouched");

    // Nothing was attached: a gated allocation still goes to cudaMalloc,
    // which fails the same way and returns its bytes.
    let mut d = 0x1 as *mut c_void;
    assert_eq!(mmpool_cuda_malloc(p, &mut d, 4096, MMPOOL_WAIT_FOREVER), MMPOOL_ERR_CUDA);
    assert!(last_error().contains("cudaMalloc failed"), "{}", last_error());
    assert_eq!(mmpool_available_bytes(p), 1 << 20);
    mmpool_unref(p);
}
