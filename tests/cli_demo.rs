//! The `mmpool demo` command runs, stays within its budget and loses nothing.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::process::Command;

fn demo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mmpool")).arg("demo").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn demo_reports_a_peak_within_the_budget() {
    let (ok, stdout, stderr) = demo(&["--duration", "0.5", "--workers", "6", "--budget", "900MiB", "--video-share", "0.3"]);
    assert!(ok, "{stdout}\n{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("peak in use")).expect("a peak line");
    // "... (PEAK of TOTAL bytes, ...)"
    let inside = line.split('(').nth(1).unwrap();
    let words: Vec<&str> = inside.split_whitespace().collect();
    let (peak, total): (u64, u64) = (words[0].parse().unwrap(), words[2].parse().unwrap());
    assert_eq!(total, 900 << 20);
    assert!(peak > 0 && peak <= total, "{line}");
    for needle in ["grants that waited", "image", "video", "largest request", "throughput"] {
        assert!(stdout.contains(needle), "missing `{needle}` in\n{stdout}");
    }
}

#[test]
fn demo_refuses_bad_flags_with_usage() {
    let (ok, _, stderr) = demo(&["--workers", "0"]);
    assert!(!ok);
    assert!(stderr.contains("--workers"), "{stderr}");
    let (ok, _, stderr) = demo(&["--budget", "10MiB"]);
    assert!(!ok);
    assert!(stderr.contains("800 MiB"), "{stderr}");
    let (ok, _, stderr) = demo(&["--frobnicate"]);
    assert!(!ok && stderr.contains("unknown option"), "{stderr}");
}
