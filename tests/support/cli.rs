//! Runs the built `mmpool` command and keeps what it said. Shared by the
//! command's tests (tests/cli_*.rs); each includes this file with `#[path]`.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// One run of the command.
pub struct Run {
    /// The exit status; -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `mmpool ARGS...` in the tests' working directory.
pub fn mmpool(args: &[&str]) -> Run {
    run(Command::new(env!("CARGO_BIN_EXE_mmpool")).args(args))
}

/// `mmpool ARGS...` with `dir` as its working directory.
pub fn mmpool_in(dir: &Path, args: &[&str]) -> Run {
    run(Command::new(env!("CARGO_BIN_EXE_mmpool")).args(args).current_dir(dir))
}

fn run(command: &mut Command) -> Run {
    let out = command.output().expect("the mmpool command starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
