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
//! An input that starts with `LIVE` runs the other mode: the same patches
//! (and truncations) are written into the file of a pool this process is
//! attached to, holding a lease and a waiting ticket; then every call must
//! still answer a documented status, and the process must live (a truncated
//! file makes the pool refuse calls with `SYSTEM`, never a SIGBUS).
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

/// One change an input asks for.
enum Patch<'a> {
    Bytes(usize, &'a [u8]),
    Word(usize, u64),
    Len(usize),
}

/// Reads the patches of an input for a segment of `size` bytes: a sequence
/// of `[kind][offset: u32 LE][len][len bytes]` (raw bytes), or `[kind]
/// [offset][which]` (one of `EXTREMES` as an aligned word), or a new length.
fn patches(mut data: &[u8], size: usize, mut apply: impl FnMut(Patch<'_>)) {
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
                // Bytes past the input's end read as 0.
                let len = usize::from(take_u8(&mut data) % 32);
                let bytes: Vec<u8> = (0..len).map(|_| take_u8(&mut data)).collect();
                apply(Patch::Bytes(at, &bytes));
            }
            2 => apply(Patch::Word(at & !7, EXTREMES[usize::from(take_u8(&mut data)) % EXTREMES.len()])),
            // A file of another length: cut short, or grown with zeros.
            _ if kind & 0x80 == 0 => apply(Patch::Len(offset % size)),
            _ => apply(Patch::Len(size + offset % 8192)),
        }
    }
}

/// The segment the input describes (see `patches`).
pub fn patched_segment(data: &[u8]) -> Vec<u8> {
    let mut seg = base_segment().to_vec();
    let size = seg.len();
    patches(data, size, |p| match p {
        Patch::Bytes(at, bytes) => {
            for (i, &b) in bytes.iter().enumerate() {
                if let Some(slot) = seg.get_mut(at + i) {
                    *slot = b;
                }
            }
        }
        Patch::Word(at, word) => {
            if at + 8 <= seg.len() {
                seg[at..at + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
        Patch::Len(len) => seg.resize(len, 0),
    });
    seg
}

/// Statuses an open of a damaged segment may answer.
const OPEN_ANSWERS: [mmpool_status; 3] = [MMPOOL_OK, MMPOOL_ERR_INVALID_ARGUMENT, MMPOOL_ERR_SYSTEM];

/// Runs one input in the mode it names (see the module documentation).
/// Returns whether the pool opened (live: whether it still worked after).
pub fn run(data: &[u8]) -> bool {
    match data.strip_prefix(b"LIVE") {
        Some(rest) => run_live(rest),
        None => run_attach(data),
    }
}

/// Writes the segment `data` describes, attaches to it, and uses the pool if
/// it opened. Returns whether it opened.
fn run_attach(data: &[u8]) -> bool {
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

/// Damages the file of a pool this process is attached to (holding a lease
/// and a waiting ticket) as `data` says, then uses the pool. Returns whether
/// the pool still granted.
fn run_live(data: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let name = fresh_name("live");
    let path = path_of(&name);
    let mut p = ptr::null_mut::<mmpool>();
    ok("mmpool_open_shared", mmpool_open_shared(name.as_ptr(), 1 << 20, MMPOOL_SHARED_EXCLUSIVE, &mut p));
    let mut held = mmpool_lease::default();
    ok("mmpool_acquire", mmpool_acquire(p, 1000, &mut held));
    let mut t = mmpool_ticket::default();
    ok("mmpool_enqueue", mmpool_enqueue(p, 1 << 20, &mut t));
    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open the segment");
    let size = file.metadata().expect("stat the segment").len() as usize;
    patches(data, size, |patch| {
        let _ = match patch {
            Patch::Bytes(at, bytes) => file.write_all_at(bytes, at as u64),
            Patch::Word(at, word) => file.write_all_at(&word.to_le_bytes(), at as u64),
            Patch::Len(len) => file.set_len(len as u64),
        };
    });
    let no_bug = |function: &str, st: mmpool_status| {
        assert_ne!(st, MMPOOL_ERR_INTERNAL, "{function}: {}", last_error());
        st
    };
    let mut l = mmpool_lease::default();
    let granted = no_bug("mmpool_try_acquire", mmpool_try_acquire(p, 1, &mut l)) == MMPOOL_OK;
    if granted {
        no_bug("mmpool_release", mmpool_release(p, l));
    }
    exercise(p);
    // What was held before the damage: given back, refused, or a no-op that
    // reports the damage; never a crash.
    for (what, st) in [
        ("mmpool_ticket_cancel", mmpool_ticket_cancel(p, t)),
        ("mmpool_release", mmpool_release(p, held)),
    ] {
        let st = no_bug(what, st);
        assert!(
            [MMPOOL_OK, MMPOOL_ERR_INVALID_LEASE, MMPOOL_ERR_SYSTEM].contains(&st),
            "{what} answered {st:?}: {}",
            last_error()
        );
    }
    mmpool_unref(p);
    let _ = std::fs::remove_file(&path);
    granted
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
