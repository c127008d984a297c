//! Without a CUDA runtime an arena cannot be made: `MMPOOL_ERR_CUDA` naming
//! the library, nothing attached, the pool whole. The runtime is loaded once
//! per process, so this binary points `MMPOOL_CUDART` at a file that does not
//! exist before anything loads it.
#![cfg(not(loom))] // these tests use the C boundary; loom runs tests/loom.rs

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
use ::mmpool::ffi::{mmpool_cuda_arena, mmpool_cuda_exported_arena, mmpool_stats};
use c_errors::last_error;

const MISSING: &str = "/nonexistent/mmpool-test/libcudart.so.12";

fn stats(p: *mut ::mmpool::ffi::mmpool) -> mmpool_stats {
    let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
    assert_eq!(mmpool_get_stats(p, &mut s), MMPOOL_OK);
    s
}

#[test]
fn no_arena_without_a_runtime_and_the_pool_stays_whole() {
    std::env::set_var("MMPOOL_CUDART", MISSING);
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init_placed(1 << 20, MMPOOL_DEFAULT_ALIGNMENT, &mut p), MMPOOL_OK);
    let before = stats(p);
    let mut a = 0x1 as *mut mmpool_cuda_arena;
    for kind in [MMPOOL_CUDA_ARENA_DEVICE, MMPOOL_CUDA_ARENA_PINNED_HOST] {
        assert_eq!(mmpool_cuda_arena_new(p, kind, 0, &mut a), MMPOOL_ERR_CUDA);
        let msg = last_error();
        assert!(msg.starts_with("mmpool_cuda_arena_new: CUDA error:") && msg.contains(MISSING), "{msg}");
    }
    let e =
        mmpool_cuda_exported_arena { magic: MMPOOL_CUDA_ARENA_MAGIC, device: 0, nbytes: 1 << 20, ipc_handle: [1; 64] };
    assert_eq!(mmpool_cuda_arena_open(p, &e, &mut a), MMPOOL_ERR_CUDA);
    assert!(last_error().contains(MISSING), "{}", last_error());
    assert_eq!(a, 0x1 as *mut mmpool_cuda_arena, "the out-parameter is untouched");
    assert_eq!(stats(p), before, "the pool is whole and untouched");
    // Nothing attached: a gated allocation fails as it does without an arena.
    let mut d = ptr::null_mut::<c_void>();
    assert_eq!(mmpool_cuda_malloc(p, &mut d, 100, MMPOOL_WAIT_FOREVER), MMPOOL_ERR_CUDA);
    assert_eq!(mmpool_available_bytes(p), 1 << 20);
    mmpool_unref(p);
}
