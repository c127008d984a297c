//! Library log lines go to stderr, filtered by `MMPOOL_LOG`, when no callback
//! is installed. Each case runs in a child process (this test binary again),
//! because the filter is read once per process.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use std::process::Command;

const ROLE: &str = "MMPOOL_LOG_TEST_ROLE";

/// Run by the other tests in a child process: logs one info line (the global
/// pool's size) and one error line (a shared pool that does not exist).
#[test]
#[ignore = "run by the other tests as a child process"]
fn child() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    // The first look at the global pool reads the environment, which names
    // a shared pool that does not exist: an error line.
    assert!(mmpool::pool::global().is_none());
    mmpool::pool::init_global(1.0, 4).unwrap();
    mmpool::pool::set_global(None);
}

/// The child's stderr with `MMPOOL_LOG` set to `level` (`None`: unset).
fn stderr_with(level: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    // --nocapture: the library writes to the process's stderr, which the test
    // harness would otherwise capture.
    cmd.args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1", "-q"]).env(ROLE, "1");
    cmd.env_remove("MMPOOL_LOG").env_remove("MMPOOL_SHARED_TOTAL_BYTES").env_remove("MMPOOL_SHARED_GIB");
    cmd.env("MMPOOL_SHARED_NAME", format!("log-test-missing-{}", std::process::id()));
    if let Some(level) = level {
        cmd.env("MMPOOL_LOG", level);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const INFO: &str = "mmpool info: global pool of 268435456 bytes";
const ERROR: &str = "mmpool error:";

#[test]
fn by_default_errors_reach_stderr_and_info_does_not() {
    let err = stderr_with(None);
    assert!(err.contains(ERROR), "{err}");
    assert!(!err.contains(INFO), "{err}");
}

#[test]
fn info_level_shows_the_global_pools_size() {
    let err = stderr_with(Some("info"));
    assert!(err.contains(INFO), "{err}");
    assert!(err.contains(ERROR), "{err}");
}

#[test]
fn off_silences_everything() {
    let err = stderr_with(Some("off"));
    assert!(!err.contains("mmpool "), "{err}");
}
