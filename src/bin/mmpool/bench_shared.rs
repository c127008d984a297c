//! `mmpool bench-shared`: what sharing one pool between processes costs, next
//! to the in-process pool measured in the same run, and how long a waiter
//! waits for the bytes of a holder killed with SIGKILL.
//!
//! Helper processes are this program run again with a hidden first argument
//! (`--worker`, `--hold`).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mmpool::pool::shared::{self, OpenFlags};
use mmpool::{Pool, Wait};

use crate::args::{count, settle, unknown, Args};

const USAGE: &str = "\
usage: mmpool bench-shared [--iters N] [--kills K]

Measures, in one run:
  1. acquire+release of 4 KiB by one thread: in-process pool vs shared pool;
  2. the same with two contenders: two threads on the in-process pool vs two
     processes on the shared pool;
  3. K times: a process holding the whole shared pool is killed with SIGKILL
     while this process waits for the bytes; the time from the kill to the
     grant (bounded by the reclaim interval).
--iters N (1 to 10^9, default 200000), --kills K (0 to 1000, default 20).";

const CHUNK: u64 = 4096;
const TOTAL: u64 = 1 << 30;

fn ns_per_op(iters: u64, f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn cycle(pool: &Arc<Pool>, iters: u64) {
    for _ in 0..iters {
        let lease = pool.acquire(CHUNK, Wait::Forever).expect("acquire");
        pool.release(lease.id).expect("release");
    }
}

fn helper(args: &[&str]) -> Result<(Child, BufReader<std::process::ChildStdout>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut child = Command::new(exe)
        .arg("bench-shared")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start a helper process: {e}"))?;
    let out = BufReader::new(child.stdout.take().ok_or("no helper stdout")?);
    Ok((child, out))
}

fn expect_line(out: &mut BufReader<std::process::ChildStdout>, want: &str) -> Result<(), String> {
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim() == want {
        Ok(())
    } else {
        Err(format!("helper said {line:?}, expected {want:?}"))
    }
}

/// Hidden helper roles.
fn helper_role(role: &str, name: &str, iters: u64) -> i32 {
    let pool = match Pool::open_shared(name, 0, OpenFlags::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mmpool bench-shared helper: {e}");
            return 1;
        }
    };
    let say = |s: &str| {
        println!("{s}");
        let _ = std::io::stdout().flush();
    };
    match role {
        "--worker" => {
            say("ready");
            let mut go = String::new();
            let _ = std::io::stdin().read_line(&mut go);
            cycle(&pool, iters);
            say("done");
        }
        "--hold" => {
            let _lease = pool.acquire(pool.total_bytes(), Wait::Forever).expect("acquire");
            say("held");
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        }
        _ => return 2,
    }
    0
}

fn run(iters: u64, kills: usize) -> Result<(), String> {
    let name = format!("bench-{}", std::process::id());
    let _ = shared::unlink(&name);
    let create = OpenFlags { create: true, ..OpenFlags::default() };
    let sharedp = Pool::open_shared(&name, TOTAL, create).map_err(|e| e.to_string())?;
    let result = measure(&name, &sharedp, iters, kills);
    let _ = shared::unlink(&name);
    result
}

fn measure(name: &str, sharedp: &Arc<Pool>, iters: u64, kills: usize) -> Result<(), String> {
    let local = Pool::new(TOTAL).map_err(|e| e.to_string())?;
    cycle(&local, iters / 10);
    cycle(sharedp, iters / 10);

    // 1. One thread.
    let local_ns = ns_per_op(iters, || cycle(&local, iters));
    let shared_ns = ns_per_op(iters, || cycle(sharedp, iters));
    println!("acquire+release of 4 KiB, {iters} times, one thread:");
    println!("  in-process pool   {local_ns:>9.1} ns");
    println!("  shared pool       {shared_ns:>9.1} ns   ({:.2}x the in-process pool)", shared_ns / local_ns);

    // 2. Two contenders.
    let two_threads = {
        let barrier = Arc::new(Barrier::new(2));
        let (p, b) = (Arc::clone(&local), Arc::clone(&barrier));
        let other = std::thread::spawn(move || {
            b.wait();
            cycle(&p, iters);
        });
        barrier.wait();
        let ns = ns_per_op(iters, || cycle(&local, iters));
        other.join().map_err(|_| "the other thread failed")?;
        ns
    };
    let two_procs = {
        let (mut child, mut out) = helper(&["--worker", name, &iters.to_string()])?;
        expect_line(&mut out, "ready")?;
        writeln!(child.stdin.as_mut().ok_or("no helper stdin")?, "go").map_err(|e| e.to_string())?;
        let ns = ns_per_op(iters, || cycle(sharedp, iters));
        expect_line(&mut out, "done")?;
        let _ = child.wait();
        ns
    };
    println!("the same with two contenders (time per operation of one of them):");
    println!("  in-process pool, two threads    {two_threads:>9.1} ns");
    println!(
        "  shared pool, two processes      {two_procs:>9.1} ns   ({:.2}x the in-process pool)",
        two_procs / two_threads
    );

    // 3. Kill to grant.
    let mut waits = Vec::with_capacity(kills);
    for _ in 0..kills {
        let (mut child, mut out) = helper(&["--hold", name])?;
        expect_line(&mut out, "held")?;
        let p = Arc::clone(sharedp);
        let waiter = std::thread::spawn(move || {
            let lease = p.acquire(TOTAL, Wait::Forever);
            (lease, Instant::now())
        });
        let give_up = Instant::now() + Duration::from_secs(10);
        while sharedp.stats().waiters == 0 {
            if Instant::now() > give_up {
                return Err("the waiter never joined the line".into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let killed = Instant::now();
        child.kill().map_err(|e| e.to_string())?;
        let _ = child.wait();
        let (lease, granted) = waiter.join().map_err(|_| "the waiter failed")?;
        let lease = lease.map_err(|e| e.to_string())?;
        waits.push(granted - killed);
        sharedp.release(lease.id).map_err(|e| e.to_string())?;
    }
    if !waits.is_empty() {
        waits.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "SIGKILL of a holder to its bytes granted to a waiter, {}: min {:.1} ms, median {:.1} ms, \
             max {:.1} ms (reclaim interval {:.0} ms)",
            count(kills as u64, "time"),
            ms(waits[0]),
            ms(waits[waits.len() / 2]),
            ms(waits[waits.len() - 1]),
            ms(shared::RECLAIM_INTERVAL)
        );
    }
    Ok(())
}

/// `--iters` and `--kills`; `None` for `--help`.
fn parse(args: &[String]) -> Result<Option<(u64, usize)>, String> {
    let (mut iters, mut kills) = (200_000, 20);
    let mut a = Args::new(args);
    while let Some(flag) = a.next_flag() {
        match flag.as_str() {
            "--iters" => iters = a.number_in(&flag, 1..=1_000_000_000)?,
            "--kills" => kills = a.number_in(&flag, 0..=1000)?,
            "-h" | "--help" => return Ok(None),
            other => return Err(unknown(other)),
        }
    }
    Ok(Some((iters, kills)))
}

/// `mmpool bench-shared`.
pub fn bench_shared_main(args: &[String]) -> i32 {
    if let [role, name, rest @ ..] = args {
        if role == "--worker" || role == "--hold" {
            let iters = rest.first().and_then(|v| v.parse().ok()).unwrap_or(0);
            return helper_role(role, name, iters);
        }
    }
    let (iters, kills) = match settle("bench-shared", USAGE, parse(args)) {
        Ok(counts) => counts,
        Err(code) => return code,
    };
    match run(iters, kills) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mmpool bench-shared: {e}");
            1
        }
    }
}
