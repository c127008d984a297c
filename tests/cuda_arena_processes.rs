//! A device arena shared between processes over the stand-in runtime
//! (tests/fake_cudart), whose device memory is a shared memfd and whose IPC
//! calls map it in another process, on one placed shared pool: a producer
//! fills a lease's range, shares it (a hand-off token carrying the offset)
//! and exports the arena once; consumer processes attach the pool, open the
//! arena once, turn the token into a pointer with no CUDA call, read the
//! producer's bytes and answer there, draw allocations of their own from the
//! same arena through the shared placement (no cudaMalloc but the
//! producer's one), which the producer finds at their offsets clear of every
//! other range, and complete their parts.
#![cfg(not(loom))] // these tests use the C boundary and real processes; loom runs tests/loom.rs

#[allow(dead_code)] // expect_fail: not used here
#[path = "support/c_errors.rs"]
mod c_errors;
mod fake_cudart;
#[path = "support/processes.rs"]
mod processes;

use std::ffi::{c_void, CString};
use std::ptr;

use ::mmpool::ffi::arena::*;
use ::mmpool::ffi::cuda::{mmpool_cuda_free, mmpool_cuda_malloc};
use ::mmpool::ffi::handoff::*;
use ::mmpool::ffi::mmpool_status::*;
use ::mmpool::ffi::placed::*;
use ::mmpool::ffi::pool::*;
use ::mmpool::ffi::shared::*;
use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
use ::mmpool::ffi::{mmpool, mmpool_handoff_token, mmpool_lease, mmpool_stats};
use c_errors::last_error;
use fake_cudart::fake;
use processes::{say, Helper, Name, ROLE};

const TOTAL: u64 = 1 << 20;
/// The producer's lease, which the consumers read.
const NBYTES: usize = 5000;
/// What each consumer allocates from the arena itself.
const DRAWN: usize = 3000;

/// The placed shared pool `name`: created with `total` bytes, or (0) attached.
fn shared_placed_pool(name: &str, total: u64) -> *mut mmpool {
    let opts = mmpool_shared_options {
        size: std::mem::size_of::<mmpool_shared_options>() as u64,
        total_bytes: total,
        flags: if total > 0 { MMPOOL_SHARED_CREATE } else { 0 },
        alignment: if total > 0 { MMPOOL_DEFAULT_ALIGNMENT } else { 0 },
        ..Default::default()
    };
    let c_name = CString::new(name).unwrap();
    let mut p = ptr::null_mut();
    assert_eq!(mmpool_open_shared_with(c_name.as_ptr(), &opts, &mut p), MMPOOL_OK, "{}", last_error());
    p
}

fn stats(p: *mut mmpool) -> mmpool_stats {
    let mut s = mmpool_stats { size: std::mem::size_of::<mmpool_stats>() as u64, ..Default::default() };
    assert_eq!(mmpool_get_stats(p, &mut s), MMPOOL_OK);
    s
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn token_line(t: &mmpool_handoff_token) -> String {
    format!("{} {} {} {} {}", t.id, t.nonce, t.parts, t.flags, t.offset)
}

fn parse_token(words: &[&str]) -> mmpool_handoff_token {
    let n = |i: usize| words[i].parse::<u64>().unwrap();
    mmpool_handoff_token { id: n(0), nonce: n(1), parts: n(2) as u32, flags: n(3) as u32, offset: n(4) }
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
    let who: u8 = args[2].parse().unwrap();
    let token = parse_token(&args[3..8]);
    let exported = parse_export(&args[8..]);
    let q = shared_placed_pool(args[1], 0);
    let mut a = ptr::null_mut();
    assert_eq!(mmpool_cuda_arena_open(q, &exported, &mut a), MMPOOL_OK, "{}", last_error());
    assert_eq!(f.ipc_open_count(), 1);
    let (mut base, mut nbytes) = (ptr::null_mut::<c_void>(), 0u64);
    assert_eq!(mmpool_cuda_arena_range(a, &mut base, &mut nbytes), MMPOOL_OK);
    assert_eq!(nbytes, exported.nbytes);
    let mut at_token = ptr::null_mut();
    assert_eq!(mmpool_cuda_arena_token_pointer(a, token, &mut at_token), MMPOOL_OK, "{}", last_error());
    assert_eq!(at_token as usize, base as usize + token.offset as usize);
    // SAFETY: the producer's lease: NBYTES bytes inside the mapped arena,
    // which the producer keeps until every part is completed.
    let seen = unsafe { std::slice::from_raw_parts_mut(at_token.cast::<u8>(), NBYTES) };
    // Each consumer answers in its own quarter of the range, so the others'
    // answers may be there already; the first and last quarter stay the
    // producer's, and so is this consumer's own before it writes.
    let (slice, produced) = (NBYTES / 4, pattern(0, NBYTES));
    let at = who as usize * slice;
    for (from, to) in [(0, slice), (at, at + slice), (3 * slice, NBYTES)] {
        assert!(seen[from..to] == produced[from..to], "consumer {who} sees other bytes than the producer wrote");
    }
    seen[at..at + slice].copy_from_slice(&pattern(who, slice));
    // An allocation of this process's own, drawn from the opened arena
    // through the shared pool's placement.
    let mut mine = ptr::null_mut();
    assert_eq!(mmpool_cuda_malloc(q, &mut mine, DRAWN, MMPOOL_WAIT_FOREVER), MMPOOL_OK, "{}", last_error());
    let drawn = mine as usize - base as usize;
    assert!(drawn as u64 + DRAWN as u64 <= nbytes, "drawn outside the arena");
    // SAFETY: DRAWN bytes of the arena, this process's allocation.
    unsafe { std::ptr::write_bytes(mine.cast::<u8>(), 0x40 + who, DRAWN) };
    say(&format!("read, drew {drawn}"));
    std::io::stdin().read_line(&mut String::new()).unwrap(); // the producer has looked
    assert_eq!(mmpool_cuda_free(q, mine), MMPOOL_OK, "{}", last_error());
    assert_eq!(mmpool_handoff_complete(q, token, u32::from(who) - 1), MMPOOL_OK, "{}", last_error());
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    assert_eq!(f.ipc_open_count(), 0, "cudaIpcCloseMemHandle");
    assert_eq!((f.malloc_calls(), f.free_calls()), (0, 0), "no cudaMalloc or cudaFree in a consumer");
    mmpool_unref(q);
    say("closed");
}

#[test]
fn consumer_processes_turn_the_token_into_a_pointer_share_the_bytes_and_draw_from_the_arena() {
    let f = fake();
    let name = Name::new("arena");
    let p = shared_placed_pool(&name.0, TOTAL);
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
    let mut base = ptr::null_mut::<c_void>();
    assert_eq!(mmpool_cuda_arena_range(a, &mut base, ptr::null_mut()), MMPOOL_OK);
    assert_eq!(d as usize, base as usize + at as usize);
    // SAFETY: the lease's NBYTES bytes of the arena (shared host memory behind the stand-in).
    let mine = unsafe { std::slice::from_raw_parts_mut(d.cast::<u8>(), NBYTES) };
    mine.copy_from_slice(&pattern(0, NBYTES));
    let mut t = mmpool_handoff_token::default();
    let keep = MMPOOL_SHARE_KEEP_LEASE;
    assert_eq!(mmpool_lease_share(p, lease, 2, MMPOOL_NO_CLAIM_DEADLINE, keep, &mut t), MMPOOL_OK, "{}", last_error());
    assert_eq!((t.flags & MMPOOL_TOKEN_PLACED, t.offset), (MMPOOL_TOKEN_PLACED, at), "the token carries the offset");
    let mut e = mmpool_cuda_exported_arena { magic: 0, device: -1, nbytes: 0, ipc_handle: [0; 64] };
    assert_eq!(mmpool_cuda_arena_export(a, &mut e), MMPOOL_OK, "{}", last_error());
    let line = format!("{} {}", token_line(&t), export_line(&e));
    let calls = (f.malloc_calls(), f.free_calls());

    let mut consumers: Vec<Helper> =
        (1..=2u8).map(|who| Helper::spawn("consume", &[&name.0, &who.to_string(), &line], &[])).collect();
    let mut drawn = Vec::new();
    for c in &mut consumers {
        let report = c.report();
        drawn.push(report.strip_prefix("read, drew ").unwrap_or_else(|| panic!("{report}")).parse::<u64>().unwrap());
    }
    // The consumers' own allocations: clear of every other range, and what
    // each wrote there is in the producer's mapping.
    let mut ranges = vec![(first, 3000u64), (at, NBYTES as u64)];
    ranges.extend(drawn.iter().map(|&o| (o, DRAWN as u64)));
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "ranges {:?} and {:?} overlap", w[0], w[1]);
    }
    for (i, &o) in drawn.iter().enumerate() {
        // SAFETY: a consumer's DRAWN bytes inside the arena, still allocated
        // (it waits for our word before freeing them).
        let theirs = unsafe { std::slice::from_raw_parts(base.cast::<u8>().add(o as usize), DRAWN) };
        assert!(theirs.iter().all(|&b| b == 0x41 + i as u8), "consumer {}'s allocation is not in the arena", i + 1);
    }
    assert_eq!(stats(p).outstanding_leases, 4, "two leases here, one in each consumer");
    for c in &mut consumers {
        c.tell();
        assert_eq!(c.report(), "closed");
    }
    for c in consumers {
        assert!(c.finish().success());
    }
    assert_eq!(mmpool_handoff_wait(p, t, 0), MMPOOL_OK, "both parts completed");
    let slice = NBYTES / 4;
    for who in 1..=2u8 {
        let at = who as usize * slice;
        assert_eq!(&mine[at..at + slice], pattern(who, slice).as_slice(), "consumer {who}'s answer");
    }
    let produced = pattern(0, NBYTES);
    assert_eq!(&mine[..slice], &produced[..slice], "the rest is the producer's");
    assert_eq!(&mine[3 * slice..], &produced[3 * slice..], "the rest is the producer's");
    assert_eq!((f.malloc_calls(), f.free_calls()), calls, "the arena was allocated once");
    assert_eq!(mmpool_release(p, lease), MMPOOL_OK);
    assert_eq!(mmpool_release(p, pad), MMPOOL_OK);
    assert_eq!(mmpool_cuda_arena_free(a), MMPOOL_OK);
    assert_eq!(mmpool_available_bytes(p), TOTAL, "the consumers' bytes came back too");
    mmpool_unref(p);
}
