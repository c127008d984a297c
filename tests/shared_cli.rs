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
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), [me.as_str(), "1", "4096", "0"], "{out}");

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
