//! `mmpool bench` writes a file only when asked (`--json PATH`), wherever it
//! runs. (Its figures are tested in tests/bench_smoke.rs.)
#![cfg(not(loom))] // these tests run the command; loom runs tests/loom.rs
#![cfg(feature = "bench")]

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn bench_without_json_writes_no_file_and_with_it_writes_only_that_one() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let r = cli::mmpool_in(&dir, &["bench", "--quick"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("uncontended acquire+release"), "the bench ran and printed its table:\n{}", r.stdout);
    assert_eq!(files(&dir), Vec::<PathBuf>::new(), "no --json, no file");
    assert!(!r.stdout.contains("figures written"), "{}", r.stdout);

    // The same directory takes the file a relative --json names, and only it.
    let r = cli::mmpool_in(&dir, &["bench", "--quick", "--json=out/figures.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(files(&dir), [dir.join("out/figures.json")]);
    assert!(r.stdout.contains("figures written to out/figures.json"), "{}", r.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}
