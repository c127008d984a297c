//! `mmpool status NAME [--json]` and `mmpool unlink NAME` against a live
//! shared pool, and the C exports that open and unlink one.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::ffi::CString;
use std::process::Command;

use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::pool::{mmpool_acquire, mmpool_release, mmpool_total_bytes, mmpool_unref};
use ::mmpool::ffi::process::mmpool_last_error;
use ::mmpool::ffi::shared::*;
use ::mmpool::ffi::{mmpool, mmpool_lease};
use ::mmpool::pool::shared::{self, OpenFlags};
use ::mmpool::{Pool, Wait};

fn mmpool_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mmpool")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn last_error() -> String {
    // SAFETY: mmpool_last_error returns a valid C string.
    unsafe { std::ffi::CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn status_shows_the_pool_and_its_processes_and_unlink_removes_it() {
    let name = format!("cli-{}", std::process::id());
    let pool = Pool::open_shared(&name, 1 << 20, OpenFlags { create: true, ..OpenFlags::default() }).unwrap();
    let lease = pool.acquire(4096, Wait::Forever).unwrap();

    let (code, out, err) = mmpool_cmd(&["status", &name]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1048576 bytes") && out.contains("4096 bytes"), "{out}");
    let me = std::process::id().to_string();
    let row = out.lines().find(|l| l.split_whitespace().next() == Some(me.as_str())).expect(&out);
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), [me.as_str(), "1", "4096", "0", "0"], "{out}");

    let (code, out, _) = mmpool_cmd(&["status", &name, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total_bytes"], 1 << 20);
    assert_eq!(v["in_use_bytes"], 4096);
    assert_eq!(v["processes"].as_array().unwrap().len(), 1, "the status command does not list itself: {v}");
    assert_eq!(v["processes"][0]["pid"], std::process::id());
    assert_eq!(v["processes"][0]["bytes_held"], 4096);

    pool.release(lease.id).unwrap();
    let (code, out, _) = mmpool_cmd(&["unlink", &name]);
    assert_eq!(code, 0);
    assert!(out.contains(&shared::path_of(&name)));
    let (code, _, err) = mmpool_cmd(&["status", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("no shared pool"), "{err}");
    let (code, _, err) = mmpool_cmd(&["status", "../etc"]);
    assert_eq!(code, 1);
    assert!(err.contains("must be 1 to 64 characters"), "{err}");
}

#[test]
fn the_c_exports_open_use_and_unlink_a_shared_pool() {
    let name = CString::new(format!("ffi-{}", std::process::id())).unwrap();
    let mut pool: *mut mmpool = std::ptr::null_mut();
    assert_eq!(mmpool_open_shared(std::ptr::null(), 1, MMPOOL_SHARED_CREATE, &mut pool), MMPOOL_ERR_NULL_ARGUMENT);
    assert!(last_error().contains("`name`"), "{}", last_error());
    assert_eq!(mmpool_open_shared(name.as_ptr(), 1, 64, &mut pool), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("unknown shared-pool flags"), "{}", last_error());
    let bad = CString::new("a/b").unwrap();
    assert_eq!(mmpool_open_shared(bad.as_ptr(), 1, MMPOOL_SHARED_CREATE, &mut pool), MMPOOL_ERR_INVALID_ARGUMENT);
    assert_eq!(mmpool_open_shared(name.as_ptr(), 0, 0, &mut pool), MMPOOL_ERR_SYSTEM, "no pool yet");
    assert!(pool.is_null(), "out-parameters are written only on success");

    assert_eq!(mmpool_open_shared(name.as_ptr(), 1000, MMPOOL_SHARED_EXCLUSIVE, &mut pool), MMPOOL_OK);
    let mut again: *mut mmpool = std::ptr::null_mut();
    assert_eq!(mmpool_open_shared(name.as_ptr(), 1000, MMPOOL_SHARED_EXCLUSIVE, &mut again), MMPOOL_ERR_INVALID_ARGUMENT);
    assert_eq!(mmpool_open_shared(name.as_ptr(), 999, 0, &mut again), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("1000") && last_error().contains("999"), "{}", last_error());
    assert_eq!(mmpool_total_bytes(pool), 1000);
    let mut lease = mmpool_lease::default();
    assert_eq!(mmpool_acquire(pool, 600, &mut lease), MMPOOL_OK);
    assert_eq!(lease.nbytes, 600);
    assert_eq!(mmpool_release(pool, lease), MMPOOL_OK);
    mmpool_unref(pool);

    assert_eq!(mmpool_unlink_shared(name.as_ptr()), MMPOOL_OK);
    assert_eq!(mmpool_unlink_shared(name.as_ptr()), MMPOOL_ERR_SYSTEM);
    assert_eq!(mmpool_unlink_shared(std::ptr::null()), MMPOOL_ERR_NULL_ARGUMENT);
}

#[test]
fn status_shows_the_limits_and_a_holder_that_keeps_the_lock() {
    use std::os::unix::fs::FileExt;
    let name = format!("cli-lock-{}", std::process::id());
    let limits = shared::Limits { max_processes: 5, max_leases: 50, max_waiters: 7, max_handoffs: 9 };
    let opts = shared::SharedOptions { total_bytes: 100, flags: OpenFlags { create: true, ..OpenFlags::default() }, limits, alignment: 0 };
    let pool = Pool::open_shared_with(&name, &opts).unwrap();
    let (code, out, err) = mmpool_cmd(&["status", &name]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("limits      5 processes, 50 leases and tickets, 7 waiters"), "{out}");
    assert!(out.contains("lock        free"), "{out}");

    // The lock word names this process, which sits idle: the status command
    // reads the figures without the lock and shows who holds it.
    let me = pool.shared_snapshot().unwrap().unwrap().procs.into_iter().find(|p| p.is_self).unwrap();
    let word = (me.slot as u32 + 1) | 1 << 8;
    let f = std::fs::OpenOptions::new().write(true).open(shared::path_of(&name)).unwrap();
    f.write_all_at(&word.to_le_bytes(), shared::SharedPool::debug_lock_word_offset()).unwrap();
    let (code, out, err) = mmpool_cmd(&["status", &name, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lock_holder"]["pid"], std::process::id(), "{v}");
    assert_eq!(v["lock_holder"]["alive"], true, "{v}");
    assert_eq!((v["max_processes"].as_u64(), v["max_leases"].as_u64(), v["max_waiters"].as_u64()), (Some(5), Some(50), Some(7)));
    let (_, text, _) = mmpool_cmd(&["status", &name]);
    assert!(text.contains(&format!("lock        held by pid {} (slot {}, alive) for", std::process::id(), me.slot)), "{text}");
    // This process's next call finds that none of its threads holds it and takes it back.
    let lease = pool.acquire(10, Wait::timeout_ns(5_000_000_000)).unwrap();
    pool.release(lease.id).unwrap();
    drop(pool);
    shared::unlink(&name).unwrap();
}

#[test]
fn the_c_export_with_options_checks_them() {
    let name = CString::new(format!("ffi-opts-{}", std::process::id())).unwrap();
    let size = std::mem::size_of::<mmpool_shared_options>() as u64;
    let options = |total_bytes, flags, max_leases| mmpool_shared_options {
        size,
        total_bytes,
        flags,
        max_processes: 0,
        max_leases,
        max_waiters: 0,
        ..Default::default()
    };
    let mut pool: *mut mmpool = std::ptr::null_mut();
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), std::ptr::null(), &mut pool), MMPOOL_ERR_NULL_ARGUMENT);
    assert!(last_error().contains("`options`"), "{}", last_error());
    let unsized_ = mmpool_shared_options { size: 0, ..options(1000, MMPOOL_SHARED_CREATE, 0) };
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &unsized_, &mut pool), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("sizeof(mmpool_shared_options)"), "{}", last_error());
    let out_of_range = options(1000, MMPOOL_SHARED_CREATE, 70_000);
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &out_of_range, &mut pool), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("out of range"), "{}", last_error());
    assert!(pool.is_null(), "out-parameters are written only on success");
    // A longer struct from a newer header: its unknown tail must be zero.
    #[repr(C)]
    struct Longer(mmpool_shared_options, u64);
    let longer = |tail| Longer(mmpool_shared_options { size: size + 8, ..options(1000, MMPOOL_SHARED_EXCLUSIVE, 64) }, tail);
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &longer(1).0, &mut pool), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("the rest must be 0"), "{}", last_error());
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &longer(0).0, &mut pool), MMPOOL_OK, "{}", last_error());
    // A shorter one (only size and total): the rest reads as 0, accepting the pool's limits.
    let mut again: *mut mmpool = std::ptr::null_mut();
    let short = mmpool_shared_options { size: 16, ..options(1000, 0, 999) };
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &short, &mut again), MMPOOL_OK, "{}", last_error());
    mmpool_unref(again);
    let other = options(0, 0, 65);
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &other, &mut again), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("max_leases 64") && last_error().contains("65 was asked"), "{}", last_error());
    let handoffs = mmpool_shared_options { max_handoffs: 3, ..options(0, 0, 0) };
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &handoffs, &mut again), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("max_handoffs 256") && last_error().contains("3 was asked"), "{}", last_error());
    let reserved = mmpool_shared_options { reserved: 1, ..options(0, 0, 0) };
    assert_eq!(mmpool_open_shared_with(name.as_ptr(), &reserved, &mut again), MMPOOL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("reserved"), "{}", last_error());
    mmpool_unref(pool);
    assert_eq!(mmpool_unlink_shared(name.as_ptr()), MMPOOL_OK);
}

#[test]
fn status_lists_outstanding_hand_offs_with_their_producer_and_claimants() {
    let name = format!("cli-handoff-{}", std::process::id());
    let _ = shared::unlink(&name);
    let pool = Pool::open_shared(&name, 100, OpenFlags { create: true, ..OpenFlags::default() }).unwrap();
    let (code, out, err) = mmpool_cmd(&["status", &name]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hand-offs outstanding: 0"), "{out}");
    let lease = pool.acquire(40, Wait::Forever).unwrap();
    let token = pool.share_lease(lease.id, 3, None, false).unwrap();
    pool.claim_part(&token, 1).unwrap();
    pool.complete_part(&token, 2).unwrap();
    let me = std::process::id();
    let (code, out, err) = mmpool_cmd(&["status", &name]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hand-offs outstanding: 1"), "{out}");
    let row = out.lines().find(|l| l.contains(&format!("{:#x}", token.id))).unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], me.to_string(), "the producer: {row}");
    assert_eq!((cells[3], cells[4], cells[6]), ("40", "2", "3"), "bytes, parts left of parts: {row}");
    assert_eq!(cells[7], me.to_string(), "the claimant: {row}");
    let (code, out, err) = mmpool_cmd(&["status", &name, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let h = &v["handoffs"][0];
    assert_eq!((h["token_id"].as_u64(), h["producer_pid"].as_u64()), (Some(token.id), Some(u64::from(me))), "{v}");
    assert_eq!((h["bytes"].as_u64(), h["parts_left"].as_u64()), (Some(40), Some(2)), "{v}");
    assert_eq!(h["claimants"], serde_json::json!([me]), "{v}");
    drop(pool);
    shared::unlink(&name).unwrap();
}
