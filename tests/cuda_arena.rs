//! Arenas over the stand-in runtime (tests/fake_cudart): one allocation of a
//! placed pool's total, leases and hand-off tokens as pointers into it, gated
//! allocations drawn from it with no cudaMalloc/cudaFree, and a device arena
//! exported by one process and opened by another that sees the same bytes.
//!
//! The stand-in's counters and mmpool's global pool are process-wide, so each
//! test holds `serial()` for its whole run.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

#[path = "support/c_errors.rs"]
mod c_errors;
mod fake_cudart;

use std::ffi::c_void;
use std::ptr;

use ::mmpool::ffi::arena::*;
use ::mmpool::ffi::cuda::*;
use ::mmpool::ffi::handoff::*;
use ::mmpool::ffi::mmpool_status::{self, *};
use ::mmpool::ffi::placed::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
use ::mmpool::ffi::{mmpool, mmpool_handoff_token, mmpool_lease, mmpool_stats};
use c_errors::{expect_fail, last_error};
use fake_cudart::{eight_threads, fake, serial, ROUNDS, SIZE, THREADS};

const ALIGN: u64 = 256;

fn expect(status: mmpool_status, code: mmpool_status, words: &[&str]) {
    for w in words {
        expect_fail(status, code, w);
    }
}

fn placed_pool(total: u64) -> *mut mmpool {
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init_placed(total, ALIGN, &mut p), MMPOOL_OK, "{}", last_error());
    p
}

fn stats(p: *mut mmpool) -> mmpool_stats {
    let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
    assert_eq!(mmpool_get_stats(p, &mut s), MMPOOL_OK);
    s
}

fn new_arena(p: *mut mmpool, kind: u32) -> *mut mmpool_cuda_arena {
    let mut a = ptr::null_mut();
    assert_eq!(mmpool_cuda_arena_new(p, kind, 0, &mut a), MMPOOL_OK, "{}", last_error());
    a
}

fn range(a: *mut mmpool_cuda_arena) -> (usize, u64) {
    let (mut base, mut nbytes) = (ptr::null_mut(), 0u64);
    assert_eq!(mmpool_cuda_arena_range(a, &mut base, &mut nbytes), MMPOOL_OK);
    (base as usize, nbytes)
}

fn acquire(p: *mut mmpool, nbytes: u64) -> mmpool_lease {
    let mut l = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, nbytes, &mut l), MMPOOL_OK, "{}", last_error());
    l
}

fn offset(p: *mut mmpool, l: mmpool_lease) -> u64 {
    let mut at = u64::MAX;
    assert_eq!(mmpool_lease_offset(p, l, &mut at), MMPOOL_OK, "{}", last_error());
    at
}

fn pointer(a: *mut mmpool_cuda_arena, l: mmpool_lease) -> usize {
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_arena_pointer(a, l, &mut d), MMPOOL_OK, "{}", last_error());
    d as usize
}

fn malloc(p: *mut mmpool, size: usize) -> *mut c_void {
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_malloc(p, &mut d, size, MMPOOL_WAIT_FOREVER), MMPOOL_OK, "{}", last_error());
    d
}

/// The stand-in's (cudaMalloc calls, cudaFree calls).
fn cuda_calls() -> (u64, u64) {
    (fake().malloc_calls(), fake().free_calls())
}

#[test]
fn a_device_arena_is_one_allocation_and_leases_are_pointers_at_their_offsets() {
    let _s = serial();
    let f = fake();
    let (count0, bytes0) = (f.live_count(), f.live_bytes());
    let p = placed_pool(1 << 20);
    let calls = cuda_calls();
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    assert_eq!(cuda_calls(), (calls.0 + 1, calls.1), "one cudaMalloc");
    assert_eq!((f.live_count() - count0, f.live_bytes() - bytes0), (1, 1 << 20), "of the pool's total");
    let (base, nbytes) = range(a);
    assert_eq!(nbytes, 1 << 20);
    let leases: Vec<_> = [1000u64, 4096, 300_000, 1].iter().map(|&n| acquire(p, n)).collect();
    for l in &leases {
        assert_eq!(pointer(a, *l), base + offset(p, *l) as usize);
    }
    assert_eq!(cuda_calls(), (calls.0 + 1, calls.1), "no CUDA call per lease");
    let mut d = ptr::null_mut();
    let bogus = mmpool_lease { id: u64::MAX - 1, nbytes: 1 };
    expect(mmpool_cuda_arena_pointer(a, bogus, &mut d), MMPOOL_ERR_INVALID_LEASE, &["mmpool_cuda_arena_pointer"]);
    expect(mmpool_cuda_arena_pointer(a, leases[0], ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, &["`ptr`"]);
    expect(mmpool_cuda_arena_pointer(ptr::null(), leases[0], &mut d), MMPOOL_ERR_NULL_ARGUMENT, &["`arena`"]);
    for l in leases {
        assert_eq!(mmpool_release(p, l), MMPOOL_OK);
    }
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    assert_eq!(cuda_calls(), (calls.0 + 1, calls.1 + 1), "one cudaFree");
    assert_eq!((f.live_count(), f.live_bytes()), (count0, bytes0));
    assert_eq!(mmpool_cuda_arena_free(ptr::null_mut()), MMPOOL_OK, "NULL is a no-op");
    mmpool_unref(p);
}

#[test]
fn refusals_allocate_nothing_and_leave_the_pool_whole() {
    let _s = serial();
    let f = fake();
    let calls = cuda_calls();
    let mut unplaced = ptr::null_mut();
    assert_eq!(mmpool_init(1 << 20, &mut unplaced), MMPOOL_OK);
    let mut a = 0x1 as *mut mmpool_cuda_arena;
    expect(
        mmpool_cuda_arena_new(unplaced, MMPOOL_CUDA_ARENA_DEVICE, 0, &mut a),
        MMPOOL_ERR_INVALID_ARGUMENT,
        &["mmpool_cuda_arena_new", "placed pool"],
    );
    assert_eq!(a, 0x1 as *mut mmpool_cuda_arena, "the out-parameter is untouched");
    mmpool_unref(unplaced);

    let p = placed_pool(1 << 20);
    expect(mmpool_cuda_arena_new(p, 7, 0, &mut a), MMPOOL_ERR_INVALID_ARGUMENT, &["got 7"]);
    expect(mmpool_cuda_arena_new(ptr::null_mut(), 0, 0, &mut a), MMPOOL_ERR_NULL_ARGUMENT, &["`pool`"]);
    expect(mmpool_cuda_arena_new(p, 0, 0, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, &["`out_arena`"]);
    expect(
        mmpool_cuda_arena_new(p, MMPOOL_CUDA_ARENA_DEVICE, 3, &mut a),
        MMPOOL_ERR_CUDA,
        &["cudaSetDevice failed with cudaErrorInvalidDevice (101)"],
    );
    f.set_capacity(f.live_bytes() + 1000);
    expect(
        mmpool_cuda_arena_new(p, MMPOOL_CUDA_ARENA_DEVICE, 0, &mut a),
        MMPOOL_ERR_CUDA,
        &["cudaMalloc failed with cudaErrorMemoryAllocation (2)"],
    );
    f.set_capacity(usize::MAX);
    assert_eq!(a, 0x1 as *mut mmpool_cuda_arena);
    assert_eq!(cuda_calls().1, calls.1, "nothing to free");
    assert_eq!(f.device(), 0, "the current device is the one before");
    let s = stats(p);
    assert_eq!((s.available_bytes, s.outstanding_leases, s.grants), (1 << 20, 0, 0), "the pool is whole");

    let first = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    expect(
        mmpool_cuda_arena_new(p, MMPOOL_CUDA_ARENA_DEVICE, 0, &mut a),
        MMPOOL_ERR_INVALID_ARGUMENT,
        &["already has a device arena"],
    );
    assert_eq!(mmpool_cuda_arena_free(first), MMPOOL_OK);
    let second = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    assert_eq!(mmpool_cuda_arena_free(second), MMPOOL_OK, "a freed arena makes room for another");
    mmpool_unref(p);
}

#[test]
fn gated_allocations_draw_from_the_arena_with_no_cuda_calls() {
    let _s = serial();
    const TOTAL: u64 = 64 * 1024;
    let p = placed_pool(TOTAL);
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    let (base, nbytes) = range(a);
    let calls = cuda_calls();
    let sizes = [100usize, 4096, 1, 257, 10_000, 512, 3000];
    let ptrs: Vec<_> = sizes.iter().map(|&n| malloc(p, n)).collect();
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_dev_malloc(p.cast(), &mut d, 2048, ptr::null_mut()), 0, "{}", last_error());
    let stream = 0x5 as *mut CUstream_st;
    let mut e = ptr::null_mut();
    assert_eq!(mmpool_cuda_malloc_async(p, &mut e, 700, stream, MMPOOL_WAIT_FOREVER), MMPOOL_OK);
    assert_eq!(cuda_calls(), calls, "no cudaMalloc per allocation");

    let mut all: Vec<(usize, usize)> = ptrs.iter().zip(sizes).map(|(&q, n)| (q as usize, n)).collect();
    all.push((d as usize, 2048));
    all.push((e as usize, 700));
    for &(q, n) in &all {
        assert!(q >= base && q + n <= base + nbytes as usize, "{q:#x}+{n} outside the arena");
        assert_eq!((q - base) as u64 % ALIGN, 0, "{q:#x} is not aligned");
    }
    // Fill each with its own byte, then check none was overwritten: the
    // ranges are distinct and do not overlap.
    for (i, &(q, n)) in all.iter().enumerate() {
        // SAFETY: `n` bytes of the arena (host memory behind the stand-in), owned here.
        unsafe { std::ptr::write_bytes(q as *mut u8, i as u8 + 1, n) };
    }
    for (i, &(q, n)) in all.iter().enumerate() {
        // SAFETY: as above.
        let buf = unsafe { std::slice::from_raw_parts(q as *const u8, n) };
        assert!(buf.iter().all(|&b| b == i as u8 + 1), "allocation {i} overlaps another");
    }
    let held: u64 = all.iter().map(|&(_, n)| n as u64).sum();
    assert_eq!(stats(p).in_use_bytes, held);
    assert_eq!(stats(p).outstanding_leases, all.len() as u64);

    let syncs = fake().stream_syncs();
    let async_calls = fake().async_calls();
    assert_eq!(mmpool_cuda_free_async(p, e, stream), MMPOOL_OK);
    assert_eq!(fake().stream_syncs(), syncs + 1, "a stream-ordered free waits for its stream");
    assert_eq!(fake().async_calls(), async_calls, "no cudaFreeAsync");
    assert_eq!(mmpool_cuda_dev_free(p.cast(), d, 2048, stream), 0);
    assert_eq!(fake().stream_syncs(), syncs + 2, "a callback's free waits for the stream it names");
    for q in ptrs {
        assert_eq!(mmpool_cuda_free(p, q), MMPOOL_OK, "{}", last_error());
    }
    assert_eq!(fake().stream_syncs(), syncs + 2, "mmpool_cuda_free waits for nothing");
    expect(mmpool_cuda_free(p, all[0].0 as *mut c_void), MMPOOL_ERR_INVALID_LEASE, &["already freed"]);
    assert_eq!(cuda_calls(), calls, "no cudaFree per free");
    assert_eq!(stats(p).available_bytes, TOTAL);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    mmpool_unref(p);
}

#[test]
fn a_full_arena_makes_allocations_wait_and_time_out_like_the_pool() {
    let _s = serial();
    let p = placed_pool(4096);
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    let calls = cuda_calls();
    let x = malloc(p, 4096);
    let mut d = ptr::null_mut();
    expect(mmpool_cuda_malloc(p, &mut d, 1, 1_000_000), MMPOOL_ERR_TIMEOUT, &["timed out"]);
    expect(mmpool_cuda_malloc(p, &mut d, 4097, 0), MMPOOL_ERR_EXCEEDS_CAPACITY, &["exceeds"]);
    assert_eq!(mmpool_cuda_free(p, x), MMPOOL_OK);
    let y = malloc(p, 4096);
    assert_eq!(x, y, "the one range that fits");
    assert_eq!(mmpool_cuda_free(p, y), MMPOOL_OK);
    assert_eq!(cuda_calls(), calls);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    mmpool_unref(p);
}

#[test]
fn pytorch_callbacks_draw_from_the_global_pools_arena() {
    let _s = serial();
    let g = placed_pool(1 << 16);
    assert_eq!(mmpool_set_global(g), MMPOOL_OK);
    let a = new_arena(g, MMPOOL_CUDA_ARENA_DEVICE);
    let (base, nbytes) = range(a);
    let calls = cuda_calls();
    let x = mmpool_torch_alloc(1000, 0, ptr::null_mut()) as usize;
    let y = mmpool_torch_alloc(5000, 0, ptr::null_mut()) as usize;
    assert!(x != y && x >= base && y >= base && x.max(y) < base + nbytes as usize);
    assert_eq!(stats(g).in_use_bytes, 6000);
    let syncs = fake().stream_syncs();
    mmpool_torch_free(x as *mut c_void, 1000, 0, ptr::null_mut());
    mmpool_torch_free(y as *mut c_void, 5000, 0, ptr::null_mut());
    assert_eq!(fake().stream_syncs(), syncs + 2, "each free waits for the stream PyTorch names");
    assert_eq!(cuda_calls(), calls, "no cudaMalloc or cudaFree");
    assert_eq!(stats(g).available_bytes, 1 << 16);
    assert_eq!(mmpool_set_global(ptr::null_mut()), MMPOOL_OK);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    mmpool_unref(g);
}

#[test]
fn a_freed_arena_stops_serving_and_its_memory_outlives_what_was_drawn() {
    let _s = serial();
    let f = fake();
    let count0 = f.live_count();
    let p = placed_pool(8192);
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    let drawn = malloc(p, 100);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    assert_eq!(f.live_count(), count0 + 1, "still held by the allocation drawn from it");
    // SAFETY: 100 bytes of the arena, still allocated.
    unsafe { std::ptr::write_bytes(drawn.cast::<u8>(), 7, 100) };
    let calls = cuda_calls();
    let fresh = malloc(p, 100);
    assert_eq!(cuda_calls(), (calls.0 + 1, calls.1), "detached: back to cudaMalloc");
    assert_eq!(mmpool_cuda_free(p, fresh), MMPOOL_OK);
    assert_eq!(mmpool_cuda_free(p, drawn), MMPOOL_OK);
    assert_eq!(f.live_count(), count0, "the arena went back with its last allocation");
    assert_eq!(stats(p).available_bytes, 8192);
    mmpool_unref(p);
}

#[test]
fn a_pinned_host_arena_is_not_attached_nor_exported() {
    let _s = serial();
    let f = fake();
    let host0 = f.host_live_count();
    let p = placed_pool(1 << 16);
    let calls = cuda_calls();
    let a = new_arena(p, MMPOOL_CUDA_ARENA_PINNED_HOST);
    assert_eq!(f.host_live_count(), host0 + 1, "one cudaHostAlloc");
    assert_eq!(cuda_calls(), calls, "no device memory");
    let l = acquire(p, 5000);
    let (base, _) = range(a);
    assert_eq!(pointer(a, l), base + offset(p, l) as usize);
    let mut e = std::mem::MaybeUninit::<mmpool_cuda_exported_arena>::zeroed();
    expect(mmpool_cuda_arena_export(a, e.as_mut_ptr()), MMPOOL_ERR_INVALID_ARGUMENT, &["pinned host"]);
    let d = malloc(p, 100);
    assert_eq!(cuda_calls().0, calls.0 + 1, "gated allocations still use cudaMalloc");
    assert_eq!(mmpool_cuda_free(p, d), MMPOOL_OK);
    assert_eq!(mmpool_release(p, l), MMPOOL_OK);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    assert_eq!(f.host_live_count(), host0, "cudaFreeHost");
    mmpool_unref(p);
}

#[test]

fn a_token_becomes_the_pointer_of_its_lease() {
    let _s = serial();
    let p = placed_pool(1 << 16);
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    let _pad = acquire(p, 3000);
    let l = acquire(p, 1000);
    let at = pointer(a, l);
    let t = share(p, l);
    assert_eq!(t.flags & MMPOOL_TOKEN_PLACED, MMPOOL_TOKEN_PLACED);
    let calls = cuda_calls();
    let mut d = ptr::null_mut();
    assert_eq!(mmpool_cuda_arena_token_pointer(a, t, &mut d), MMPOOL_OK, "{}", last_error());
    assert_eq!(d as usize, at);
    assert_eq!(cuda_calls(), calls, "no CUDA call");
    assert_eq!(mmpool_handoff_complete(p, t, 0), MMPOOL_OK);
    assert_eq!(mmpool_handoff_complete(p, t, 1), MMPOOL_OK);
    expect(mmpool_cuda_arena_token_pointer(a, t, &mut d), MMPOOL_ERR_INVALID_LEASE, &["finished"]);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    mmpool_unref(p);
}

/// Shares `l` in two parts with no claim deadline.
fn share(p: *mut mmpool, l: mmpool_lease) -> mmpool_handoff_token {
    let mut t = mmpool_handoff_token::default();
    assert_eq!(mmpool_lease_share(p, l, 2, MMPOOL_NO_CLAIM_DEADLINE, 0, &mut t), MMPOOL_OK, "{}", last_error());
    t
}

#[test]
fn tokens_without_an_offset_or_altered_give_no_pointer() {
    let _s = serial();
    let p = placed_pool(1 << 16);
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    let t = share(p, acquire(p, 1000));
    let mut d = 0x1 as *mut c_void;
    let unplaced = mmpool_handoff_token { flags: 0, offset: 0, ..t };
    expect(
        mmpool_cuda_arena_token_pointer(a, unplaced, &mut d),
        MMPOOL_ERR_INVALID_ARGUMENT,
        &["mmpool_cuda_arena_token_pointer", "carries no offset"],
    );
    // A token that says it is placed but that the pool did not issue so.
    let forged = mmpool_handoff_token { flags: MMPOOL_TOKEN_PLACED, offset: t.offset + 256, ..t };
    expect(mmpool_cuda_arena_token_pointer(a, forged, &mut d), MMPOOL_ERR_INVALID_LEASE, &["altered"]);
    assert_eq!(d, 0x1 as *mut c_void, "the out-parameter is untouched");
    assert_eq!(mmpool_handoff_complete(p, t, 0), MMPOOL_OK);
    assert_eq!(mmpool_handoff_complete(p, t, 1), MMPOOL_OK);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    mmpool_unref(p);
}

#[test]
fn an_exported_arena_is_refused_where_it_was_not_made() {
    let _s = serial();
    let p = placed_pool(1 << 16);
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    let mut e = std::mem::MaybeUninit::<mmpool_cuda_exported_arena>::zeroed();
    assert_eq!(mmpool_cuda_arena_export(a, e.as_mut_ptr()), MMPOOL_OK, "{}", last_error());
    // SAFETY: written on OK.
    let e = unsafe { e.assume_init() };
    assert_eq!((e.magic, e.nbytes, e.device), (MMPOOL_CUDA_ARENA_MAGIC, 1 << 16, 0));
    let mut again = e;
    assert_eq!(mmpool_cuda_arena_export(a, &mut again), MMPOOL_OK);
    assert_eq!(again, e, "exported once: the same handle");
    let q = placed_pool(1 << 16);
    let mut opened = ptr::null_mut();
    let bad = mmpool_cuda_exported_arena { magic: 0, ..e };
    expect(mmpool_cuda_arena_open(q, &bad, &mut opened), MMPOOL_ERR_INVALID_ARGUMENT, &["not an exported arena"]);
    let garbage = mmpool_cuda_exported_arena { ipc_handle: [0xAB; 64], ..e };
    expect(
        mmpool_cuda_arena_open(q, &garbage, &mut opened),
        MMPOOL_ERR_CUDA,
        &["cudaIpcOpenMemHandle failed with cudaErrorInvalidResourceHandle (400)"],
    );
    expect(mmpool_cuda_arena_open(p, &e, &mut opened), MMPOOL_ERR_INVALID_ARGUMENT, &["already has a device arena"]);
    assert!(opened.is_null());
    assert_eq!(fake().ipc_open_count(), 0);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    mmpool_unref(p);
    mmpool_unref(q);
}

#[test]
fn eight_threads_drawing_from_one_arena_never_share_a_byte() {
    let _s = serial();
    // Room for about three allocations at a time: most threads wait in line.
    let total = 3 * SIZE as u64 + 512;
    let p = placed_pool(total);
    let a = new_arena(p, MMPOOL_CUDA_ARENA_DEVICE);
    let (base, nbytes) = range(a);
    let calls = cuda_calls();
    eight_threads(p as usize, move |at, size| {
        assert!(at >= base && at + size <= base + nbytes as usize, "{at:#x}+{size} outside the arena");
    });
    assert_eq!(cuda_calls(), calls, "no cudaMalloc or cudaFree for 1600 allocations");
    let s = stats(p);
    assert_eq!((s.available_bytes, s.outstanding_leases, s.grants), (total, 0, (THREADS * ROUNDS) as u64));
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    mmpool_unref(p);
}
