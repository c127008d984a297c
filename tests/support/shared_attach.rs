//! A driver for the shared pool's attach path: it takes a real segment with
//! history (leases, a waiting ticket, counters; its process gone), patches it
//! as the input says (bytes or extreme words in the header, the process
//! table, the entries or the line; or a changed length), writes it under a
//! fresh name and attaches with `mmpool_open_shared` through the C ABI.
//!
//! Whatever the bytes, the open must answer with a documented status and a
//! message, never a panic (not even one the boundary catches: `INTERNAL`) or
//! a hang; a pool that opens must then work as a pool through the ABI.
//!
//! Shared by the fuzz target (fuzz/fuzz_targets/shared_attach.rs) and the
//! replay of its corpus (tests/fuzz_replay.rs); each includes this file with
//! `#[path]`.

#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::os::unix::fs::OpenOptionsExt;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use ::mmpool::ffi::mmpool_status::{self, *};
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::process::mmpool_last_error;
use ::mmpool::ffi::shared::*;
use ::mmpool::ffi::{mmpool, mmpool_lease, mmpool_stats, mmpool_ticket};

/// Bytes at the start that hold the header (and the first process slots).
const HEADER_SPAN: usize = 512;
/// Bytes at the start that hold the header, the process table and the first entries.
const TABLES_SPAN: usize = 8192;
/// Words an input can write over a field.
const EXTREMES: [u64; 8] = [0, 1, u64::MAX, 1 << 63, 1 << 60, (1 << 60) + 1, 0xff, 0x5245_4459];

fn last_error() -> String {
    // SAFETY: mmpool_last_error never returns NULL and its text stays valid
    // until the next failing call on this thread.
    unsafe { CStr::from_ptr(mmpool_last_error()) }.to_string_lossy().into_owned()
}

/// A name no other process or iteration uses.
fn fresh_name(what: &str) -> CString {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    CString::new(format!("fuzz-{what}-{}-{n}", std::process::id())).unwrap()
}

fn path_of(name: &CStr) -> String {
    format!("/dev/shm/mmpool.{}", name.to_str().unwrap())
}

fn ok(function: &str, status: mmpool_status) {
    assert_eq!(status, MMPOOL_OK, "{function}: {}", last_error());
}

/// A valid segment with history, made once per process: a pool of 1 MiB
/// with two leases taken, one released, and a 1 MiB ticket waiting, copied
/// while its owner held them; then everything was returned and the name removed.
fn base_segment() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let name = fresh_name("base");
        let mut p = ptr::null_mut();
        ok("mmpool_open_shared", mmpool_open_shared(name.as_ptr(), 1 << 20, MMPOOL_SHARED_EXCLUSIVE, &mut p));
        let (mut a, mut b) = (mmpool_lease::default(), mmpool_lease::default());
        ok("mmpool_acquire", mmpool_acquire(p, 1000, &mut a));
        ok("mmpool_acquire", mmpool_acquire(p, 5000, &mut b));
        let mut t = mmpool_ticket::default();
        ok("mmpool_enqueue", mmpool_enqueue(p, 1 << 20, &mut t));
        ok("mmpool_release", mmpool_release(p, a));
        let bytes = std::fs::read(path_of(&name)).expect("read the segment");
        ok("mmpool_ticket_cancel", mmpool_ticket_cancel(p, t));
        ok("mmpool_release", mmpool_release(p, b));
        mmpool_unref(p);
        ok("mmpool_unlink_shared", mmpool_unlink_shared(name.as_ptr()));
        bytes
    })
}

fn take_u8(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((&b, rest)) => {
            *data = rest;
            b
        }
        None => 0,
    }
}

fn take_u32(data: &mut &[u8]) -> u32 {
    u32::from_le_bytes([take_u8(data), take_u8(data), take_u8(data), take_u8(data)])
}

/// The segment the input describes: a sequence of patches, each
/// `[kind][offset: u32 LE][len][len bytes]` (raw bytes), or `[kind][offset]
/// [which]` (one of `EXTREMES` as an aligned word), or a new length.
pub fn patched_segment(mut data: &[u8]) -> Vec<u8> {
    let mut seg = base_segment().to_vec();
    let size = seg.len();
    while !data.is_empty() {
        let kind = take_u8(&mut data);
        let offset = take_u32(&mut data) as usize;
        let at = match kind & 3 {
            0 => offset % HEADER_SPAN,
            1 => offset % TABLES_SPAN,
            2 => size - 1 - offset % TABLES_SPAN,
            _ => offset % size,
        };
        match kind >> 2 & 3 {
            0 | 1 => {
                let len = usize::from(take_u8(&mut data) % 32);
                for i in 0..len {
                    let b = take_u8(&mut data);
                    if let Some(slot) = seg.get_mut(at + i) {
                        *slot = b;
                    }
                }
            }
            2 => {
                let word = EXTREMES[usize::from(take_u8(&mut data)) % EXTREMES.len()];
                let at = at & !7;
                if at + 8 <= seg.len() {
                    seg[at..at + 8].copy_from_slice(&word.to_le_bytes());
                }
            }
            _ => {
                // A file of another length: cut short, or grown with zeros.
                if kind & 0x80 == 0 {
                    seg.truncate(offset % size);
                } else {
                    seg.resize(size + offset % 8192, 0);
                }
            }
        }
    }
    seg
}

/// Statuses an open of a damaged segment may answer.
const OPEN_ANSWERS: [mmpool_status; 3] = [MMPOOL_OK, MMPOOL_ERR_INVALID_ARGUMENT, MMPOOL_ERR_SYSTEM];

/// Writes the segment `data` describes, attaches to it, and uses the pool if
/// it opened. Returns whether it opened.
pub fn run(data: &[u8]) -> bool {
    let seg = patched_segment(data);
    let name = fresh_name("case");
    let path = path_of(&name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &seg))
        .expect("write the segment");
    let mut p = ptr::null_mut::<mmpool>();
    let st = mmpool_open_shared(name.as_ptr(), 0, 0, &mut p);
    assert!(OPEN_ANSWERS.contains(&st), "mmpool_open_shared answered {st:?}: {}", last_error());
    let opened = st == MMPOOL_OK;
    if opened {
        assert!(!p.is_null());
        exercise(p);
        mmpool_unref(p);
    } else {
        assert!(p.is_null(), "out_pool written on failure");
        let msg = last_error();
        assert!(msg.starts_with("mmpool_open_shared: "), "{msg}");
    }
    let _ = std::fs::remove_file(&path);
    opened
}

/// Uses a pool that opened from a damaged segment: every call answers a
/// status other than `INTERNAL`, and what it grants can be given back.
fn exercise(p: *mut mmpool) {
    let no_bug = |function: &str, st: mmpool_status| {
        assert_ne!(st, MMPOOL_ERR_INTERNAL, "{function}: {}", last_error());
        st
    };
    let mut leases = Vec::new();
    let mut l = mmpool_lease::default();
    if no_bug("mmpool_try_acquire", mmpool_try_acquire(p, 1, &mut l)) == MMPOOL_OK {
        leases.push(l);
    }
    if no_bug("mmpool_acquire_timeout", mmpool_acquire_timeout(p, 64, 1_000_000, &mut l)) == MMPOOL_OK {
        leases.push(l);
    }
    let mut t = mmpool_ticket::default();
    if no_bug("mmpool_enqueue", mmpool_enqueue(p, 1, &mut t)) == MMPOOL_OK {
        match no_bug("mmpool_ticket_wait", mmpool_ticket_wait(p, t, 0, &mut l)) {
            MMPOOL_OK => leases.push(l),
            _ => {
                no_bug("mmpool_ticket_cancel", mmpool_ticket_cancel(p, t));
            }
        }
    }
    if let Some(first) = leases.first_mut() {
        no_bug("mmpool_lease_resize", mmpool_lease_resize(p, first, 2, 0));
    }
    let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
    no_bug("mmpool_get_stats", mmpool_get_stats(p, &mut s));
    mmpool_total_bytes(p);
    mmpool_available_bytes(p);
    for lease in leases {
        // A lease this process was granted is its own to give back.
        assert_eq!(mmpool_release(p, lease), MMPOOL_OK, "{}", last_error());
        assert_eq!(mmpool_release(p, lease), MMPOOL_OK, "a second release is a no-op");
    }
    no_bug("mmpool_release", mmpool_release(p, mmpool_lease { id: u64::MAX, nbytes: 1 }));
}
