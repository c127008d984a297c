//! Attaches to damaged shared-pool segments: a real segment with history,
//! patched as the input says, written under a fresh name in /dev/shm. The
//! open must refuse it with a status and a message or give a pool that
//! works; a panic (even one the boundary would catch) or a hang is a finding.
//!
//! Run: cargo +nightly fuzz run shared_attach fuzz/corpus/shared_attach

#![no_main]

#[path = "../../tests/support/shared_attach.rs"]
mod shared_attach;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shared_attach::run(data);
});
