//! `mmpool demo`: a simulated decoding front end on one GPU-memory budget.
//!
//! Worker threads decode a random mix of images (1-8 MiB) and video batches
//! (100-800 MiB). Each decode acquires its bytes, "runs" for a time that grows
//! with its size, and releases them. At the end a table shows that the budget
//! was never exceeded, who waited and for how long, and that the largest
//! requests were not starved.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mmpool::pool::MAX_TOTAL;
use mmpool::{Pool, Stats, Wait};

use crate::args::{count, parse_bytes, settle, unknown, Args};

const HELP: &str = "\
usage: mmpool demo [--budget BYTES] [--workers N] [--duration SECONDS | --requests N]
                   [--video-share F] [--seed N]

Worker threads decode a random mix of images (1-8 MiB) and video batches
(100-800 MiB) through one budget; a table then shows the peak against the
budget, who waited and how long. Flags take `--flag value` or `--flag=value`.

  --budget BYTES       the pool's budget, 800MiB to 2^60 bytes, e.g. 2GiB (default 1GiB)
  --workers N          decoding threads, 1 to 1024 (default 8)
  --duration SECONDS   how long to run, 0.001 to 86400 (default 3)
  --requests N         instead of a duration: each worker makes N requests, then
                       stops (1 to 1000000)
  --video-share F      fraction of requests that are video batches, 0 to 1 (default 0.1)
  --seed N             seeds each worker's sequence of request sizes and classes
                       (default 1). It cannot fix timing: with --duration, how many
                       requests fit in the time (so the grant counts) varies from
                       run to run; with --requests the counts and the bytes repeat
                       exactly, and only the waits and the peak vary.
  --version            print the version";

const MIB: u64 = 1 << 20;
const MAX_WORKERS: usize = 1024;
const MAX_SECONDS: f64 = 86_400.0;
const MAX_REQUESTS: u64 = 1_000_000;

/// When the workers stop.
#[derive(Clone, Copy)]
enum Length {
    /// After this long (a worker finishes the decode it is in).
    For(Duration),
    /// After this many requests each.
    Requests(u64),
}

struct Config {
    budget: u64,
    workers: usize,
    length: Length,
    video_share: f64,
    seed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Image,
    Video,
}

/// One finished decode.
struct Sample {
    class: Class,
    nbytes: u64,
    waited: Duration,
}

/// xorshift64*: small, seedable, good enough to pick sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn parse(args: &[String]) -> Result<Option<Config>, String> {
    let mut a = Args::new(args);
    let mut c = Config {
        budget: 1 << 30,
        workers: 8,
        length: Length::For(Duration::from_secs(3)),
        video_share: 0.1,
        seed: 1,
    };
    let (mut duration, mut requests) = (None, None);
    while let Some(flag) = a.next_flag() {
        match flag.as_str() {
            "--budget" => c.budget = budget(&a.value(&flag)?)?,
            "--workers" => c.workers = a.number_in(&flag, 1..=MAX_WORKERS)?,
            "--duration" => duration = Some(a.number_in(&flag, 0.001..=MAX_SECONDS)?),
            "--requests" => requests = Some(a.number_in(&flag, 1..=MAX_REQUESTS)?),
            "--video-share" => c.video_share = a.number_in(&flag, 0.0..=1.0)?,
            "--seed" => c.seed = a.number_in(&flag, 0..=u64::MAX)?,
            "--help" | "-h" => return Ok(None),
            other => return Err(unknown(other)),
        }
    }
    c.length = match (duration, requests) {
        (Some(_), Some(_)) => return Err("--duration and --requests exclude each other: give one".into()),
        (Some(seconds), None) => Length::For(Duration::from_secs_f64(seconds)),
        (None, Some(n)) => Length::Requests(n),
        (None, None) => c.length,
    };
    Ok(Some(c))
}

/// `--budget`: a size that holds the largest video batch and that a pool accepts.
fn budget(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text).map_err(|e| format!("--budget: {e}"))?;
    if !(800 * MIB..=MAX_TOTAL).contains(&bytes) {
        return Err(format!(
            "--budget must be from 800 MiB (the largest video batch) to 2^60 bytes, got `{text}`"
        ));
    }
    Ok(bytes)
}

pub fn main(args: &[String]) -> i32 {
    let config = match settle("demo", HELP, parse(args)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run(&config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mmpool demo: {e}");
            1
        }
    }
}

fn run(c: &Config) -> Result<(), String> {
    let pool = Pool::new(c.budget).map_err(|e| e.to_string())?;
    let length = match c.length {
        Length::For(d) => format!(" for {:.1} s", d.as_secs_f64()),
        Length::Requests(n) => format!(", {} each", count(n, "request")),
    };
    println!(
        "mmpool demo: {} decoding through a {} budget{length} ({:.0}% video batches, seed {})",
        count(c.workers as u64, "worker"),
        human(c.budget),
        c.video_share * 100.0,
        c.seed
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers = match start_workers(c, &pool, &stop) {
        Ok(w) => w,
        Err((started, e)) => {
            stop.store(true, Ordering::Relaxed);
            for w in started {
                let _ = w.join();
            }
            return Err(e);
        }
    };

    // The live line counts grants so far: decodes finished and in flight.
    let live = std::io::stderr().is_terminal();
    let every = Duration::from_millis(if live { 100 } else { 1000 });
    let mut printed = started;
    loop {
        let done = match c.length {
            Length::For(d) => started.elapsed() >= d,
            Length::Requests(_) => workers.iter().all(JoinHandle::is_finished),
        };
        if done {
            break;
        }
        thread::sleep(Duration::from_millis(10));
        if printed.elapsed() >= every {
            printed = Instant::now();
            progress(&pool.stats(), started, live, false);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.join().map_err(|_| "a worker panicked".to_string())?);
    }
    let elapsed = started.elapsed();
    // The last line: every decode has ended, so its grants are the table's.
    progress(&pool.stats(), started, live, true);
    report(&pool, &samples, elapsed)
}

type Worker = JoinHandle<Vec<Sample>>;

/// One thread per worker; on failure, the ones started and why.
fn start_workers(c: &Config, pool: &Arc<Pool>, stop: &Arc<AtomicBool>) -> Result<Vec<Worker>, (Vec<Worker>, String)> {
    let requests = match c.length {
        Length::For(_) => u64::MAX,
        Length::Requests(n) => n,
    };
    let mut workers = Vec::with_capacity(c.workers);
    for w in 0..c.workers {
        let (pool, stop) = (pool.clone(), stop.clone());
        let (seed, share) = (c.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w as u64 + 1), c.video_share);
        let spawned = thread::Builder::new()
            .name(format!("decode-{w}"))
            .spawn(move || decode_loop(&pool, &stop, Rng(seed | 1), share, requests));
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => return Err((workers, format!("cannot start worker {} of {}: {e}", w + 1, c.workers))),
        }
    }
    Ok(workers)
}

fn progress(s: &Stats, started: Instant, live: bool, last: bool) {
    let line = format!(
        "{:5.1} s  grants {:>7}  in use {:>9} / {}  peak {:>9}  waiting {:>2}",
        started.elapsed().as_secs_f64(),
        s.grants,
        human(s.in_use_bytes),
        human(s.total_bytes),
        human(s.peak_in_use_bytes),
        s.waiters
    );
    match (live, last) {
        (true, false) => {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        }
        (true, true) => eprintln!("\r{line}"),
        (false, _) => eprintln!("{line}"),
    }
}

fn decode_loop(pool: &Arc<Pool>, stop: &AtomicBool, mut rng: Rng, video_share: f64, requests: u64) -> Vec<Sample> {
    let mut out = Vec::new();
    for _ in 0..requests {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (class, nbytes) = if rng.unit() < video_share {
            (Class::Video, (100 + rng.below(701)) * MIB)
        } else {
            (Class::Image, (1 + rng.below(8)) * MIB)
        };
        let asked = Instant::now();
        let lease = match pool.acquire(nbytes, Wait::Forever) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mmpool demo: acquire failed: {e}");
                break;
            }
        };
        let waited = asked.elapsed();
        // The decode: about 1 ms per 8 MiB, at least 0.2 ms.
        thread::sleep(Duration::from_micros(200 + nbytes / MIB * 125));
        let _ = pool.release(lease.id);
        out.push(Sample { class, nbytes, waited });
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(pool: &Pool, samples: &[Sample], elapsed: Duration) -> Result<(), String> {
    let s = pool.stats();
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!();
    println!("{:<28}{}", "budget", human(s.total_bytes));
    println!(
        "{:<28}{} ({} of {} bytes, {:.1}%)",
        "peak in use",
        human(s.peak_in_use_bytes),
        s.peak_in_use_bytes,
        s.total_bytes,
        100.0 * s.peak_in_use_bytes as f64 / s.total_bytes as f64
    );
    println!("{:<28}{} (one per decode)", "grants", s.grants);
    println!("{:<28}{} ({:.1}%)", "grants that waited", s.waited_grants, 100.0 * s.waited_grants as f64 / s.grants.max(1) as f64);
    println!();
    println!("{:<8}{:>9}{:>12}{:>12}{:>12}", "class", "decodes", "wait p50", "wait p99", "wait max");
    for (name, class) in [("image", Class::Image), ("video", Class::Video)] {
        let mut waits: Vec<Duration> = samples.iter().filter(|x| x.class == class).map(|x| x.waited).collect();
        waits.sort();
        println!(
            "{:<8}{:>9}{:>12}{:>12}{:>12}",
            name,
            waits.len(),
            ms(percentile(&waits, 50.0)),
            ms(percentile(&waits, 99.0)),
            ms(waits.last().copied().unwrap_or_default())
        );
    }
    if let Some(largest) = samples.iter().max_by_key(|x| (x.nbytes, x.waited)) {
        println!();
        println!("{:<28}{} waited {}", "largest request", human(largest.nbytes), ms(largest.waited));
    }
    let bytes: u64 = samples.iter().map(|x| x.nbytes).sum();
    println!("{:<28}{} ({bytes} bytes)", "bytes granted", human(bytes));
    println!(
        "{:<28}{:.0} decodes/s, {}/s admitted",
        "throughput",
        samples.len() as f64 / elapsed.as_secs_f64(),
        human((bytes as f64 / elapsed.as_secs_f64()) as u64)
    );
    if s.peak_in_use_bytes > s.total_bytes {
        return Err(format!("the budget was exceeded: peak {} > {}", s.peak_in_use_bytes, s.total_bytes));
    }
    if s.in_use_bytes != 0 || s.outstanding_leases != 0 {
        return Err(format!("bytes were lost: {} still in use after every decode ended", s.in_use_bytes));
    }
    Ok(())
}

/// Bytes in the largest binary unit that keeps the number at least 1.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
