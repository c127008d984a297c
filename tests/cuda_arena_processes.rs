//! A device arena shared between processes over the stand-in runtime
//! (tests/fake_cudart), whose device memory is a shared memfd and whose IPC
//! calls map it in another process: a producer fills a lease's range, exports
//! the arena once; consumer processes open it once, find the bytes at the
//! lease's offset, and what they write there the producer sees.
#![cfg(not(loom))] // these tests use the C boundary and real processes; loom runs tests/loom.rs

#[allow(dead_code)] // expect_fail: not used here
#[path = "support/c_errors.rs"]
mod c_errors;
mod fake_cudart;
#[path = "support/processes.rs"]
mod processes;

use std::ffi::c_void;
use std::ptr;

use ::mmpool::ffi::arena::*;
use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::placed::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::{mmpool, mmpool_lease};
use c_errors::last_error;
use fake_cudart::fake;
use processes::{say, Helper, ROLE};

const TOTAL: u64 = 1 << 20;
const NBYTES: usize = 5000;

fn placed_pool(total: u64) -> *mut mmpool {
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_init_placed(total, 256, &mut p), MMPOOL_OK, "{}", last_error());
    p
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn export_line(e: &mmpool_cuda_exported_arena) -> String {
    format!("{} {} {} {}", e.magic, e.device, e.nbytes, hex(&e.ipc_handle))
}

fn parse_export(words: &[&str]) -> mmpool_cuda_exported_arena {
    let handle = unhex(words[3]);
    mmpool_cuda_exported_arena {
        magic: words[0].parse().unwrap(),
        device: words[1].parse().unwrap(),
        nbytes: words[2].parse().unwrap(),
        ipc_handle: handle.try_into().unwrap(),
    }
}

/// What producer and consumer `i` write: a pattern of their own.
fn pattern(who: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(who)).collect()
}

/// The body of every helper process; a no-op when run as a plain test.
#[test]
#[ignore = "run by the other tests as a helper process"]
fn helper() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let args: Vec<&str> = role.split(' ').collect();
    assert_eq!(args[0], "consume");
    let f = fake();
    let (who, offset): (u8, usize) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    let exported = parse_export(&args[3..]);
    let q = placed_pool(exported.nbytes);
    let mut a = ptr::null_mut();
    assert_eq!(mmpool_cuda_arena_open(q, &exported, &mut a), MMPOOL_OK, "{}", last_error());
    assert_eq!(f.ipc_open_count(), 1);
    let (mut base, mut nbytes) = (ptr::null_mut::<c_void>(), 0u64);
    assert_eq!(mmpool_cuda_arena_range(a, &mut base, &mut nbytes), MMPOOL_OK);
    assert_eq!(nbytes, exported.nbytes);
    // SAFETY: the producer's lease: NBYTES bytes at `offset` inside the mapped arena.
    let seen = unsafe { std::slice::from_raw_parts_mut(base.cast::<u8>().add(offset), NBYTES) };
    // Each consumer answers in its own quarter of the range, so the others'
    // answers may be there already; the first and last quarter stay the
    // producer's, and so is this consumer's own before it writes.
    let (slice, produced) = (NBYTES / 4, pattern(0, NBYTES));
    let at = who as usize * slice;
    for (from, to) in [(0, slice), (at, at + slice), (3 * slice, NBYTES)] {
        assert!(seen[from..to] == produced[from..to], "consumer {who} sees other bytes than the producer wrote");
    }
    seen[at..at + slice].copy_from_slice(&pattern(who, slice));
    say("read");
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    assert_eq!(f.ipc_open_count(), 0, "cudaIpcCloseMemHandle");
    assert_eq!(f.malloc_calls(), 0, "no cudaMalloc in a consumer");
    mmpool_unref(q);
    say("closed");
}

#[test]
fn two_consumer_processes_open_the_exported_arena_once_and_share_the_bytes() {
    let f = fake();
    let p = placed_pool(TOTAL);
    let mut a = ptr::null_mut();
    assert_eq!(mmpool_cuda_arena_new(p, MMPOOL_CUDA_ARENA_DEVICE, 0, &mut a), MMPOOL_OK, "{}", last_error());
    let mut pad = mmpool_lease::default();
    let mut lease = mmpool_lease::default();
    assert_eq!(mmpool_acquire(p, 3000, &mut pad), MMPOOL_OK);
    assert_eq!(mmpool_acquire(p, NBYTES as u64, &mut lease), MMPOOL_OK);
    let (mut first, mut at, mut d) = (0u64, 0u64, ptr::null_mut());
    assert_eq!(mmpool_lease_offset(p, pad, &mut first), MMPOOL_OK);
    assert_eq!(mmpool_lease_offset(p, lease, &mut at), MMPOOL_OK);
    assert_eq!(mmpool_cuda_arena_pointer(a, lease, &mut d), MMPOOL_OK);
    assert_ne!(at, first, "two leases, two places");
    // SAFETY: the lease's NBYTES bytes of the arena (shared host memory behind the stand-in).
    let mine = unsafe { std::slice::from_raw_parts_mut(d.cast::<u8>(), NBYTES) };
    mine.copy_from_slice(&pattern(0, NBYTES));
    let mut e = mmpool_cuda_exported_arena { magic: 0, device: -1, nbytes: 0, ipc_handle: [0; 64] };
    assert_eq!(mmpool_cuda_arena_export(a, &mut e), MMPOOL_OK, "{}", last_error());
    let line = export_line(&e);
    let calls = f.malloc_calls();

    let mut consumers: Vec<Helper> =
        (1..=2u8).map(|who| Helper::spawn("consume", &[&who.to_string(), &at.to_string(), &line], &[])).collect();
    for c in &mut consumers {
        assert_eq!(c.report(), "read");
        assert_eq!(c.report(), "closed");
    }
    for c in consumers {
        assert!(c.finish().success());
    }
    let slice = NBYTES / 4;
    for who in 1..=2u8 {
        let at = who as usize * slice;
        assert_eq!(
            &mine[at..at + slice],
            pattern(who, slice).as_slice(),
            "consumer {who}'s bytes reached the producer"
        );
    }
    let produced = pattern(0, NBYTES);
    assert_eq!(&mine[..slice], &produced[..slice], "the rest is the producer's");
    assert_eq!(&mine[3 * slice..], &produced[3 * slice..], "the rest is the producer's");
    assert_eq!(f.malloc_calls(), calls, "the arena was allocated once");
    assert_eq!(mmpool_release(p, lease), MMPOOL_OK);
    assert_eq!(mmpool_release(p, pad), MMPOOL_OK);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    assert_eq!(mmpool_available_bytes(p), TOTAL);
    mmpool_unref(p);
}
