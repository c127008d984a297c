//! Gated CUDA allocations over the stand-in runtime (tests/fake_cudart): the
//! success paths, bookkeeping and failures that need a runtime that works.
//!
//! The stand-in's counters and mmpool's global pool are process-wide, so each
//! test holds `serial()` for its whole run.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

#[path = "support/c_errors.rs"]
mod c_errors;
mod fake_cudart;

use std::ffi::c_void;
use std::ptr;

use ::mmpool::ffi::cuda::*;
use ::mmpool::ffi::mmpool_status::{self, *};
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
use ::mmpool::ffi::{mmpool, mmpool_lease, mmpool_stats};
use c_errors::{expect_fail, last_error};
use fake_cudart::{eight_threads, fake, serial, ROUNDS, SIZE, THREADS};

fn new_pool(total: u64) -> *mut mmpool {
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init(total, &mut p), MMPOOL_OK);
    p
}

fn available(p: *mut mmpool) -> u64 {
    mmpool_available_bytes(p)
}

fn stats(p: *mut mmpool) -> mmpool_stats {
    let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
    assert_eq!(mmpool_get_stats(p, &mut s), MMPOOL_OK);
    s
}

fn malloc(p: *mut mmpool, size: usize) -> *mut c_void {
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_malloc(p, &mut d, size, MMPOOL_WAIT_FOREVER), MMPOOL_OK, "{}", last_error());
    d
}

fn expect(status: mmpool_status, code: mmpool_status, words: &[&str]) {
    for w in words {
        expect_fail(status, code, w);
    }
}

#[test]
fn bytes_are_charged_while_allocated_and_returned_on_free() {
    let _s = serial();
    let f = fake();
    let (bytes0, count0) = (f.live_bytes(), f.live_count());
    let p = new_pool(1000);
    let a = malloc(p, 300);
    let b = malloc(p, 200);
    assert!(!a.is_null() && !b.is_null() && a != b);
    assert_eq!(available(p), 500);
    assert_eq!(stats(p).outstanding_leases, 2);
    assert_eq!(f.live_bytes() - bytes0, 500, "the runtime allocated exactly what was charged");
    assert_eq!(mmpool_cuda_free(p, a), MMPOOL_OK);
    assert_eq!(available(p), 800);
    assert_eq!(mmpool_cuda_free(ptr::null_mut(), b), MMPOOL_OK, "NULL pool: whichever pool paid");
    assert_eq!(available(p), 1000);
    assert_eq!((f.live_bytes(), f.live_count()), (bytes0, count0), "the runtime freed both");
    mmpool_unref(p);
}

#[test]
fn zero_bytes_and_null_frees_are_no_ops() {
    let _s = serial();
    let p = new_pool(10);
    let mut d = 0x1 as *mut c_void;
    assert_eq!(mmpool_cuda_malloc(p, &mut d, 0, 0), MMPOOL_OK);
    assert!(d.is_null());
    assert_eq!(mmpool_cuda_free(p, ptr::null_mut()), MMPOOL_OK);
    assert_eq!(mmpool_cuda_free_async(p, ptr::null_mut(), ptr::null_mut()), MMPOOL_OK);
    assert_eq!(mmpool_cuda_dev_free(p.cast(), ptr::null_mut(), 0, ptr::null_mut()), 0);
    assert_eq!(available(p), 10);
    assert_eq!(stats(p).grants, 0);
    mmpool_unref(p);
}

#[test]
fn unknown_and_double_frees_are_reported_and_not_passed_to_cuda() {
    let _s = serial();
    let f = fake();
    let p = new_pool(100);
    let a = malloc(p, 40);
    assert_eq!(mmpool_cuda_free(p, a), MMPOOL_OK);
    let count = f.live_count();
    expect(mmpool_cuda_free(p, a), MMPOOL_ERR_INVALID_LEASE, &["mmpool_cuda_free", "already freed"]);
    let mut local = 0u64;
    let foreign = (&mut local as *mut u64).cast::<c_void>();
    expect(mmpool_cuda_free(p, foreign), MMPOOL_ERR_INVALID_LEASE, &["not held by mmpool"]);
    assert_ne!(mmpool_cuda_dev_free(p.cast(), foreign, 8, ptr::null_mut()), 0);
    assert_eq!(f.live_count(), count, "nothing reached cudaFree");
    assert_eq!(available(p), 100, "no bytes came back twice");
    mmpool_unref(p);
}

#[test]
fn a_pointer_is_freed_only_into_its_own_pool() {
    let _s = serial();
    let (p, q) = (new_pool(100), new_pool(100));
    let a = malloc(p, 60);
    expect(mmpool_cuda_free(q, a), MMPOOL_ERR_INVALID_ARGUMENT, &["not allocated from this pool"]);
    assert_eq!((available(p), available(q)), (40, 100), "nothing moved");
    assert_eq!(mmpool_cuda_free(p, a), MMPOOL_OK);
    assert_eq!(available(p), 100);
    mmpool_unref(p);
    mmpool_unref(q);
}

#[test]
fn a_failed_cuda_allocation_returns_its_bytes_and_names_the_error() {
    let _s = serial();
    let f = fake();
    let p = new_pool(1 << 20);
    f.set_capacity(f.live_bytes() + 100);
    let mut d = 0x1 as *mut c_void;
    expect(
        mmpool_cuda_malloc(p, &mut d, 4096, MMPOOL_WAIT_FOREVER),
        MMPOOL_ERR_CUDA,
        &["mmpool_cuda_malloc", "cudaMalloc failed", "cudaErrorMemoryAllocation (2)", "out of memory", "bytes free"],
    );
    assert_eq!(d, 0x1 as *mut c_void, "the out-parameter is untouched");
    assert_eq!(available(p), 1 << 20, "the lease went back");
    assert_eq!(stats(p).outstanding_leases, 0);
    mmpool_unref(p);
}

#[test]
fn pool_refusals_allocate_nothing() {
    let _s = serial();
    let f = fake();
    let p = new_pool(100);
    let count = f.live_count();
    let mut d = ptr::null_mut();
    expect(mmpool_cuda_malloc(p, &mut d, 101, 0), MMPOOL_ERR_EXCEEDS_CAPACITY, &["exceeds"]);
    let mut held = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 80, &mut held), MMPOOL_OK);
    expect(mmpool_cuda_malloc(p, &mut d, 50, 1_000_000), MMPOOL_ERR_TIMEOUT, &["timed out"]);
    assert_eq!(mmpool_close(p), MMPOOL_OK);
    expect(mmpool_cuda_malloc(p, &mut d, 10, 0), MMPOOL_ERR_CLOSED, &["closed"]);
    expect(mmpool_cuda_malloc(p, ptr::null_mut(), 10, 0), MMPOOL_ERR_NULL_ARGUMENT, &["`ptr`"]);
    assert_eq!(f.live_count(), count, "cudaMalloc was never reached");
    assert_eq!(mmpool_release(p, held), MMPOOL_OK);
    assert_eq!(available(p), 100);
    mmpool_unref(p);
}

#[test]
fn stream_ordered_allocations_are_charged_and_returned() {
    let _s = serial();
    let f = fake();
    let p = new_pool(1000);
    let calls = f.async_calls();
    let stream = 0x5 as *mut CUstream_st;
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_malloc_async(p, &mut d, 700, stream, MMPOOL_WAIT_FOREVER), MMPOOL_OK);
    assert_eq!(available(p), 300);
    assert_eq!(mmpool_cuda_free_async(p, d, stream), MMPOOL_OK);
    assert_eq!(available(p), 1000);
    assert_eq!(f.async_calls() - calls, 2, "cudaMallocAsync and cudaFreeAsync were used");
    mmpool_unref(p);
}

#[test]
fn eight_threads_never_hold_more_device_memory_than_the_budget() {
    let _s = serial();
    let f = fake();
    let base = f.live_bytes();
    // Room for three allocations at a time: most threads wait in line.
    let total = 3 * SIZE as u64;
    let p = new_pool(total);
    eight_threads(p as usize, move |_, _| {
        let held = f.live_bytes() - base;
        assert!(held as u64 <= total, "{held} bytes on the device, budget {total}");
    });
    let s = stats(p);
    assert_eq!(s.available_bytes, total);
    assert_eq!(s.grants, (THREADS * ROUNDS) as u64);
    assert!(s.peak_in_use_bytes <= total);
    assert_eq!(f.live_bytes(), base, "every allocation was freed");
    mmpool_unref(p);
}

#[test]
fn nvjpeg_style_callbacks_charge_the_pool_given_as_context() {
    let _s = serial();
    let p = new_pool(1000);
    let ctx = p.cast::<c_void>();
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_dev_malloc(ctx, &mut d, 600, ptr::null_mut()), 0);
    assert!(!d.is_null());
    assert_eq!(available(p), 400);
    // The size passed to free is the library's; the pool's record decides.
    assert_eq!(mmpool_cuda_dev_free(ctx, d, 1, ptr::null_mut()), 0);
    assert_eq!(available(p), 1000);
    // Failures come back as the status code, non-zero.
    assert_eq!(mmpool_cuda_dev_malloc(ctx, &mut d, 1001, ptr::null_mut()), MMPOOL_ERR_EXCEEDS_CAPACITY as i32);
    assert_eq!(mmpool_cuda_dev_malloc(ctx, ptr::null_mut(), 1, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT as i32);
    mmpool_unref(p);
}

#[test]
fn callbacks_wait_in_line_only_as_long_as_the_callback_timeout() {
    let _s = serial();
    let p = new_pool(100);
    let ctx = p.cast::<c_void>();
    let mut held = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 100, &mut held), MMPOOL_OK);
    assert_eq!(mmpool_cuda_set_callback_timeout(0), MMPOOL_OK);
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_dev_malloc(ctx, &mut d, 10, ptr::null_mut()), MMPOOL_ERR_TIMEOUT as i32);
    assert!(last_error().contains("timed out"));
    assert_eq!(stats(p).timeouts, 1);
    assert_eq!(mmpool_release(p, held), MMPOOL_OK);
    assert_eq!(mmpool_cuda_dev_malloc(ctx, &mut d, 10, ptr::null_mut()), 0);
    assert_eq!(mmpool_cuda_dev_free(ctx, d, 10, ptr::null_mut()), 0);
    mmpool_unref(p);
}

#[test]
fn null_context_means_the_global_pool_or_no_gating() {
    let _s = serial();
    let f = fake();
    // No global pool installed: gating is disabled, the memory is still
    // allocated and its free still checked.
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_dev_malloc(ptr::null_mut(), &mut d, 64, ptr::null_mut()), 0);
    let count = f.live_count();
    assert_eq!(mmpool_cuda_dev_free(ptr::null_mut(), d, 64, ptr::null_mut()), 0);
    assert_eq!(f.live_count(), count - 1);
    assert_ne!(mmpool_cuda_dev_free(ptr::null_mut(), d, 64, ptr::null_mut()), 0, "double free");

    let g = new_pool(500);
    assert_eq!(mmpool_set_global(g), MMPOOL_OK);
    assert_eq!(mmpool_cuda_dev_malloc(ptr::null_mut(), &mut d, 64, ptr::null_mut()), 0);
    assert_eq!(available(g), 436);
    // The global pool is replaced; the free still pays back the pool that paid.
    assert_eq!(mmpool_set_global(ptr::null_mut()), MMPOOL_OK);
    assert_eq!(mmpool_cuda_dev_free(ptr::null_mut(), d, 64, ptr::null_mut()), 0);
    assert_eq!(available(g), 500);
    mmpool_unref(g);
}

#[test]
fn pytorch_style_callbacks_charge_the_global_pool() {
    let _s = serial();
    let g = new_pool(1000);
    assert_eq!(mmpool_set_global(g), MMPOOL_OK);
    let a = mmpool_torch_alloc(250, 0, ptr::null_mut());
    let b = mmpool_torch_alloc(250, 0, ptr::null_mut());
    assert!(!a.is_null() && !b.is_null());
    assert_eq!(available(g), 500);
    assert!(mmpool_torch_alloc(0, 0, ptr::null_mut()).is_null(), "empty tensors get NULL");
    assert_eq!(available(g), 500);
    mmpool_torch_free(a, 250, 0, ptr::null_mut());
    mmpool_torch_free(b, 1, 0, ptr::null_mut());
    mmpool_torch_free(ptr::null_mut(), 0, 0, ptr::null_mut());
    assert_eq!(available(g), 1000);
    assert_eq!(mmpool_set_global(ptr::null_mut()), MMPOOL_OK);
    mmpool_unref(g);
}

#[test]
fn a_failed_pytorch_allocation_returns_null_when_asked_to() {
    let _s = serial();
    let g = new_pool(100);
    assert_eq!(mmpool_set_global(g), MMPOOL_OK);
    assert_eq!(mmpool_torch_set_failure_mode(MMPOOL_TORCH_RETURN_NULL), MMPOOL_OK);
    assert!(mmpool_torch_alloc(101, 0, ptr::null_mut()).is_null());
    assert!(last_error().contains("exceeds"), "{}", last_error());
    assert!(mmpool_torch_alloc(-1, 0, ptr::null_mut()).is_null());
    assert!(last_error().contains("negative"), "{}", last_error());
    assert_eq!(available(g), 100);
    assert_eq!(mmpool_torch_set_failure_mode(MMPOOL_TORCH_ABORT), MMPOOL_OK);
    expect(mmpool_torch_set_failure_mode(7), MMPOOL_ERR_INVALID_ARGUMENT, &["got 7"]);
    assert_eq!(mmpool_set_global(ptr::null_mut()), MMPOOL_OK);
    mmpool_unref(g);
}

const ABORT_CHILD: &str = "MMPOOL_TEST_TORCH_ABORT_CHILD";

/// Run in a child process by the test below: an over-budget PyTorch
/// allocation in the default mode, which must not return.
#[test]
#[ignore = "run as a child process by a_failed_pytorch_allocation_aborts_by_default"]
fn torch_abort_child() {
    if std::env::var_os(ABORT_CHILD).is_none() {
        return;
    }
    let _s = serial();
    let g = new_pool(100);
    assert_eq!(mmpool_set_global(g), MMPOOL_OK);
    let p = mmpool_torch_alloc(4096, 0, ptr::null_mut());
    println!("returned {p:p}");
}

#[test]
fn a_failed_pytorch_allocation_aborts_by_default() {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "torch_abort_child", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(ABORT_CHILD, "1")
        .env_remove("MMPOOL_TORCH_ON_FAILURE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.contains("returned"), "the allocation returned: {stdout}");
    assert!(stderr.contains("mmpool: aborting: mmpool_torch_alloc:"), "{stderr}");
    assert!(stderr.contains("4096 bytes exceeds the pool's total of 100"), "{stderr}");
}
