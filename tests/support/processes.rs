//! Helper processes for tests with real processes: the test binary runs
//! itself again as the ignored test `helper`, told its role through the
//! environment (`ROLE`), reports lines starting with "@@" on its stdout and
//! reads lines from its stdin; and pool names that clean up after themselves.
//! Included with `#[path]` by the tests that use it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use mmpool::pool::shared;

pub const ROLE: &str = "MMPOOL_TEST_ROLE";

/// A pool name unique to this process and test; the file is removed on drop.
pub struct Name(pub String);

impl Name {
    pub fn new(test: &str) -> Name {
        let name = format!("proc-{}-{test}", std::process::id());
        let _ = shared::unlink(&name);
        Name(name)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shared::unlink(&self.0);
    }
}

// ---- helper processes --------------------------------------------------------

/// A helper process running `role` with `args`; killed on drop if still running.
pub struct Helper {
    pub child: Child,
    pub out: BufReader<ChildStdout>,
}

impl Helper {
    pub fn spawn(role: &str, args: &[&str], env: &[(&str, &str)]) -> Helper {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "helper", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, format!("{role} {}", args.join(" ")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Helpers log only errors; the expected ones are in the reports.
            .env("MMPOOL_LOG", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn helper");
        let out = BufReader::new(child.stdout.take().unwrap());
        Helper { child, out }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// The next line the helper reports (lines it prints start with "@@").
    pub fn report(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line).unwrap() == 0 {
                panic!("helper {} ended without reporting", self.pid());
            }
            if let Some(rest) = line.trim_end().strip_prefix("@@") {
                return rest.to_string();
            }
        }
    }

    pub fn kill(&mut self) -> Instant {
        // SAFETY: kill(2) of our own child, which has not been reaped.
        let at = Instant::now();
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGKILL) }, 0);
        let _ = self.child.wait();
        at
    }

    /// Waits until the helper stops itself (SIGSTOP).
    pub fn wait_stopped(&self) {
        let mut status = 0;
        // SAFETY: waitpid(2) of our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid(), &mut status, libc::WUNTRACED) };
        assert_eq!(rc, self.pid());
        assert!(libc::WIFSTOPPED(status), "helper did not stop: status {status:#x}");
    }

    /// Sends the helper one line (what `next_line` waits for).
    pub fn tell(&mut self) {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) of our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        self.child.wait().unwrap()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn say(line: &str) {
    println!("@@{line}");
    std::io::stdout().flush().unwrap();
}

/// Blocks until the parent closes stdin (or kills this process).
pub fn park() {
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
}
