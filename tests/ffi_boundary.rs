//! The C ABI's boundary, called as C calls it: status codes, out-parameters
//! written only on success, messages for every failure, reference counts.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::ffi::CStr;
use std::ptr;

use ::mmpool::ffi::mmpool_status::{self, *};
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
use ::mmpool::ffi::{mmpool, mmpool_lease, mmpool_stats, mmpool_ticket};

fn last_error() -> String {
    // SAFETY: mmpool_last_error never returns NULL and the text is valid
    // until the next failing call on this thread.
    unsafe { CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

fn new_pool(total: u64) -> *mut mmpool {
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init(total, &mut p), MMPOOL_OK);
    assert!(!p.is_null());
    p
}

fn expect_fail(status: mmpool_status, code: mmpool_status, words: &str) {
    assert_eq!(status, code, "{}", last_error());
    let msg = last_error();
    assert!(msg.contains(words), "message `{msg}` lacks `{words}`");
}

#[test]
fn null_pointers_are_refused_with_a_message() {
    expect_fail(mmpool_init(1, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "mmpool_init: `out_pool`");
    let p = new_pool(10);
    let mut lease = mmpool_lease::default();
    expect_fail(mmpool_acquire(ptr::null_mut(), 1, &mut lease), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_acquire(p, 1, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_lease`");
    expect_fail(mmpool_try_acquire(p, 1, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_lease`");
    expect_fail(mmpool_acquire_timeout(p, 1, 0, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_lease`");
    expect_fail(mmpool_enqueue(p, 1, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_ticket`");
    expect_fail(mmpool_lease_resize(p, ptr::null_mut(), 1, 0), MMPOOL_ERR_NULL_ARGUMENT, "`lease`");
    expect_fail(mmpool_get_stats(p, ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`out_stats`");
    expect_fail(mmpool_release(ptr::null_mut(), lease), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_close(ptr::null_mut()), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    expect_fail(mmpool_set_total(ptr::null_mut(), 5), MMPOOL_ERR_NULL_ARGUMENT, "`pool`");
    assert_eq!(mmpool_total_bytes(ptr::null()), 0);
    assert!(last_error().contains("mmpool_total_bytes"));
    assert_eq!(mmpool_available_bytes(ptr::null()), 0);
    mmpool_ref(ptr::null_mut());
    mmpool_unref(ptr::null_mut());
    assert_eq!(mmpool_available_bytes(p), 10, "nothing was reserved by the failures");
    mmpool_unref(p);
}

#[test]
fn out_parameters_are_untouched_on_failure() {
    let p = new_pool(10);
    let sentinel = mmpool_lease { id: 77, nbytes: 88 };
    let mut lease = sentinel;
    expect_fail(mmpool_acquire(p, 11, &mut lease), MMPOOL_ERR_EXCEEDS_CAPACITY, "exceeds the pool's total of 10");
    assert_eq!(lease, sentinel);
    let mut held = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 10, &mut held), MMPOOL_OK);
    expect_fail(mmpool_try_acquire(p, 1, &mut lease), MMPOOL_ERR_WOULD_BLOCK, "only 0 bytes are available");
    expect_fail(mmpool_acquire_timeout(p, 1, 1_000, &mut lease), MMPOOL_ERR_TIMEOUT, "timed out");
    assert_eq!(lease, sentinel);
    let mut out = ptr::null_mut::<mmpool>();
    expect_fail(mmpool_init(0, &mut out), MMPOOL_ERR_INVALID_ARGUMENT, "total_bytes");
    assert!(out.is_null());
    assert_eq!(mmpool_release(p, held), MMPOOL_OK);
    mmpool_unref(p);
}

#[test]
fn release_rules_hold_through_the_abi() {
    let a = new_pool(10);
    let b = new_pool(10);
    let mut la = mmpool_lease::default();
    assert_eq!(mmpool_acquire(a, 4, &mut la), MMPOOL_OK);
    expect_fail(mmpool_release(b, la), MMPOOL_ERR_INVALID_LEASE, "not issued by this pool");
    expect_fail(mmpool_release(a, mmpool_lease { id: 0, nbytes: 0 }), MMPOOL_ERR_INVALID_LEASE, "id 0");
    // The caller's nbytes is ignored: the pool's record decides.
    assert_eq!(mmpool_release(a, mmpool_lease { id: la.id, nbytes: 9999 }), MMPOOL_OK);
    assert_eq!(mmpool_release(a, la), MMPOOL_OK);
    assert_eq!(mmpool_available_bytes(a), 10);
    mmpool_unref(a);
    mmpool_unref(b);
}

#[test]
fn tickets_and_resize_through_the_abi() {
    let p = new_pool(10);
    let mut hold = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 10, &mut hold), MMPOOL_OK);
    let mut t = mmpool_ticket::default();
    assert_eq!(mmpool_enqueue(p, 4, &mut t), MMPOOL_OK);
    let mut got = mmpool_lease::default();
    expect_fail(mmpool_ticket_wait(p, t, 0, &mut got), MMPOOL_ERR_TIMEOUT, "timed out");
    assert_eq!(mmpool_lease_resize(p, &mut hold, 6, 0), MMPOOL_OK);
    assert_eq!(hold.nbytes, 6);
    assert_eq!(mmpool_ticket_wait(p, t, MMPOOL_WAIT_FOREVER, &mut got), MMPOOL_OK);
    assert_eq!((got.id, got.nbytes), (t.id, 4), "a redeemed ticket's lease keeps its id");
    expect_fail(mmpool_ticket_wait(p, t, 0, &mut got), MMPOOL_ERR_INVALID_LEASE, "already redeemed");
    assert_eq!(mmpool_ticket_cancel(p, t), MMPOOL_OK);
    assert_eq!(mmpool_release(p, got), MMPOOL_OK);
    assert_eq!(mmpool_release(p, hold), MMPOOL_OK);
    assert_eq!(mmpool_available_bytes(p), 10);
    mmpool_unref(p);
}

#[test]
fn stats_honour_the_callers_struct_size() {
    let p = new_pool(10);
    let mut l = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 3, &mut l), MMPOOL_OK);
    let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
    assert_eq!(mmpool_get_stats(p, &mut s), MMPOOL_OK);
    assert_eq!((s.total_bytes, s.available_bytes, s.in_use_bytes, s.outstanding_leases), (10, 7, 3, 1));
    assert_eq!(s.size, std::mem::size_of::<mmpool_stats>() as u64);
    // An older, shorter struct: only its fields are written.
    let mut short = mmpool_stats { size: 24, ..Default::default() };
    short.in_use_bytes = 12345;
    assert_eq!(mmpool_get_stats(p, &mut short), MMPOOL_OK);
    assert_eq!((short.size, short.total_bytes, short.available_bytes, short.in_use_bytes), (24, 10, 7, 12345));
    for bad in [0, 7, 13] {
        let mut s = mmpool_stats { size: bad, ..Default::default() };
        expect_fail(mmpool_get_stats(p, &mut s), MMPOOL_ERR_INVALID_ARGUMENT, "sizeof(mmpool_stats)");
    }
    assert_eq!(mmpool_release(p, l), MMPOOL_OK);
    mmpool_unref(p);
}

#[test]
fn status_names_cover_every_code_and_any_int() {
    let names: Vec<String> = (-1..=11)
        // SAFETY: the returned pointer is a static C string.
        .map(|c| unsafe { CStr::from_ptr(mmpool_status_str(StatusArg(c))) }.to_str().unwrap().to_string())
        .collect();
    assert_eq!(names[1], "MMPOOL_OK");
    assert_eq!(names[5], "MMPOOL_ERR_TIMEOUT");
    assert_eq!(names[11], "MMPOOL_ERR_INTERNAL");
    assert_eq!(names[0], "MMPOOL_ERR_UNKNOWN");
    assert_eq!(names[12], "MMPOOL_ERR_UNKNOWN");
    // SAFETY: static C string.
    let version = unsafe { CStr::from_ptr(mmpool_version()) }.to_str().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_lease_keeps_the_pool_alive_after_the_last_handle_is_dropped() {
    let p = new_pool(10);
    let mut l = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 5, &mut l), MMPOOL_OK);
    mmpool_ref(p);
    mmpool_unref(p);
    mmpool_unref(p); // the caller's last reference; the lease holds another
    // Still valid memory: the outstanding lease keeps the pool.
    assert_eq!(mmpool_available_bytes(p), 5);
    assert_eq!(mmpool_release(p, l), MMPOOL_OK); // frees the pool
}

#[test]
fn the_global_slot_holds_its_own_reference() {
    // One test touches the process-global slot, so it is not raced.
    let mut out = ptr::null_mut();
    assert_eq!(mmpool_init_global(2.0, 4, &mut out), MMPOOL_OK);
    assert_eq!(mmpool_total_bytes(out), 1 << 29);
    let g = mmpool_global();
    assert_eq!(g, out, "the same pool");
    mmpool_unref(g);
    mmpool_unref(out);
    let g = mmpool_global();
    assert_eq!(mmpool_total_bytes(g), 1 << 29, "the slot's reference keeps it");
    mmpool_unref(g);
    expect_fail(mmpool_init_global(f64::NAN, 1, ptr::null_mut()), MMPOOL_ERR_INVALID_ARGUMENT, "finite");
    expect_fail(mmpool_init_global(1.0, 0, ptr::null_mut()), MMPOOL_ERR_INVALID_ARGUMENT, "api_process_count");
    let mut out = new_pool(1);
    let stale = out;
    assert_eq!(mmpool_init_global(0.0, 1, &mut out), MMPOOL_OK);
    assert!(out.is_null() && mmpool_global().is_null());
    let p = stale;
    assert_eq!(mmpool_set_global(p), MMPOOL_OK);
    mmpool_unref(p);
    let g = mmpool_global();
    assert_eq!(mmpool_total_bytes(g), 1);
    mmpool_unref(g);
    assert_eq!(mmpool_set_global(ptr::null_mut()), MMPOOL_OK);
    assert!(mmpool_global().is_null());
}
