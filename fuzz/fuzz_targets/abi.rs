//! Drives the C ABI with arbitrary call sequences and arguments (garbage and
//! foreign lease ids, huge sizes, NULLs, odd stats sizes) on three pools,
//! checking every call against the reference model. Any disagreement, panic
//! (even one the boundary would catch) or hang is a finding.
//!
//! Run: cargo +nightly fuzz run abi fuzz/corpus/abi

#![no_main]

#[path = "../../tests/support/abi_model.rs"]
mod abi_model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    abi_model::run_bytes(data);
});
