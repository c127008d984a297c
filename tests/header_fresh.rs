//! The checked-in include/mmpool.h must be exactly what cbindgen generates
//! from src/ffi now. Regenerate with `MMPOOL_UPDATE_HEADER=1 cargo build`.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

#[test]
fn checked_in_header_matches_the_generated_one() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/mmpool.h")).unwrap();
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/mmpool.h")).unwrap();
    assert!(
        generated == checked_in,
        "include/mmpool.h is stale: run `MMPOOL_UPDATE_HEADER=1 cargo build` and commit it"
    );
}

#[test]
fn header_version_matches_the_crate() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/mmpool.h")).unwrap();
    let expect = format!("#define MMPOOL_VERSION_STRING \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(header.contains(&expect), "missing `{expect}`");
}
