//! Replays the committed fuzz corpus (fuzz/corpus/<target>/*) on stable Rust,
//! so every input the fuzzers kept, including any that once found a bug, is
//! checked by the ordinary test run without a nightly toolchain.
//!
//! The fuzzers themselves: fuzz/ (`cargo +nightly fuzz run abi`).
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

#[path = "support/abi_model.rs"]
mod abi_model;
#[path = "support/shared_attach.rs"]
mod shared_attach;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// Runs `check` on every input, naming the one that failed.
fn replay(target: &str, check: impl Fn(&[u8])) -> usize {
    let inputs = corpus(target);
    assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
    for (path, data) in &inputs {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data)));
        assert!(outcome.is_ok(), "fuzz input {} failed (see the panic above)", path.display());
    }
    inputs.len()
}

#[test]
fn the_abi_corpus_agrees_with_the_model() {
    let n = replay("abi", abi_model::run_bytes);
    println!("fuzz_replay: {n} inputs of the abi target, all agreed with the model");
}

#[test]
fn the_shared_attach_corpus_is_refused_or_usable() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let (opened, live) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let n = replay("shared_attach", |data| {
        live.fetch_add(usize::from(data.starts_with(b"LIVE")), Relaxed);
        if shared_attach::run(data) {
            opened.fetch_add(1, Relaxed);
        }
    });
    let (opened, live) = (opened.into_inner(), live.into_inner());
    assert!(live > 0, "the corpus holds inputs of the live mode");
    println!(
        "fuzz_replay: {n} damaged segments ({live} damaged while attached), {opened} opened (or stayed) usable, {} refused",
        n - opened
    );
}
