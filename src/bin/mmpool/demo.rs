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
use crate::demo_placed::Fragmentation;

const HELP: &str = "\
usage: mmpool demo [--budget BYTES] [--workers N] [--duration SECONDS | --requests N]
                   [--video-share F] [--seed N] [--async [--executor N] | --placed]

Worker threads decode a random mix of images (1-8 MiB) and video batches
(100-800 MiB) through one budget; a table then shows the peak against the
budget, who waited and how long. Flags take `--flag value` or `--flag=value`.

  --budget BYTES       the pool's budget, 800MiB to 2^60 bytes, e.g. 2GiB (default 1GiB)
  --workers N          decoding threads, 1 to 1024 (default 8); with --async,
                       coroutines of the event loop, 1 to 100000
  --duration SECONDS   how long to run, 0.001 to 86400 (default 3)
  --requests N         instead of a duration: each worker makes N requests, then
                       stops (1 to 1000000)
  --video-share F      fraction of requests that are video batches, 0 to 1 (default 0.1)
  --seed N             seeds each worker's sequence of request sizes and classes
                       (default 1). It cannot fix timing: with --duration, how many
                       requests fit in the time (so the grant counts) varies from
                       run to run; with --requests the counts and the bytes repeat
                       exactly, and only the waits and the peak vary.
  --async              the front end as an event loop: the workers are coroutines
                       of one loop thread that wait for their bytes in the loop
                       (one notifier fd for all), and only a granted decode goes
                       to a small executor of threads, which decode and release
  --executor N         with --async: the executor's threads, 1 to 1024 (default 4)
  --placed             a placed pool: every grant also gets a range of the budget
                       at a 256-byte aligned offset, as in one preallocated buffer;
                       the table adds the fragmentation at its worst (free bytes,
                       largest free range, free ranges), sampled at each grant
  --version            print the version";

const MIB: u64 = 1 << 20;
const MAX_WORKERS: usize = 1024;
const MAX_COROUTINES: usize = 100_000;
const MAX_SECONDS: f64 = 86_400.0;
const MAX_REQUESTS: u64 = 1_000_000;

/// When the workers stop.
#[derive(Clone, Copy)]
pub enum Length {
    /// After this long (a worker finishes the decode it is in).
    For(Duration),
    /// After this many requests each.
    Requests(u64),
}

pub struct Config {
    budget: u64,
    pub workers: usize,
    pub length: Length,
    pub video_share: f64,
    pub seed: u64,
    /// `--async`: the executor's threads.
    executor: Option<usize>,
    /// `--placed`.
    placed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Image,
    Video,
}

/// One finished decode.
pub struct Sample {
    pub class: Class,
    pub nbytes: u64,
    pub waited: Duration,
}

/// xorshift64*: small, seedable, good enough to pick sizes.
pub struct Rng(u64);

impl Rng {
    /// Worker `w`'s sequence under `seed`.
    pub fn for_worker(seed: u64, w: usize) -> Rng {
        Rng((seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w as u64 + 1)) | 1)
    }

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
        executor: None,
        placed: false,
    };
    let (mut duration, mut requests, mut workers, mut executor, mut asynchronous) = (None, None, None, None, false);
    while let Some(flag) = a.next_flag() {
        match flag.as_str() {
            "--budget" => c.budget = budget(&a.value(&flag)?)?,
            "--workers" => workers = Some(a.value(&flag)?),
            "--async" => asynchronous = true,
            "--placed" => c.placed = true,
            "--executor" => executor = Some(a.number_in(&flag, 1..=MAX_WORKERS)?),
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
    if let Some(w) = workers {
        // Threads, or coroutines of the event loop.
        let most = if asynchronous { MAX_COROUTINES } else { MAX_WORKERS };
        c.workers = match w.parse::<usize>() {
            Ok(n) if (1..=most).contains(&n) => n,
            _ if asynchronous => return Err(format!("--workers must be from 1 to {most}, got `{w}`")),
            _ => return Err(format!("--workers must be from 1 to {most}, got `{w}` (up to {MAX_COROUTINES} with --async)")),
        };
    }
    if c.placed && asynchronous {
        return Err("--placed and --async exclude each other: give one".into());
    }
    if executor.is_some() && !asynchronous {
        return Err("--executor needs --async".into());
    }
    if asynchronous {
        c.executor = Some(executor.unwrap_or(4));
    }
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
    let pool = if c.placed { Pool::new_placed(c.budget, crate::demo_placed::ALIGNMENT) } else { Pool::new(c.budget) }
        .map_err(|e| e.to_string())?;
    let fragmentation = c.placed.then(|| Arc::new(crate::demo_placed::Fragmentation::default()));
    let length = match c.length {
        Length::For(d) => format!(" for {:.1} s", d.as_secs_f64()),
        Length::Requests(n) => format!(", {} each", count(n, "request")),
    };
    let who = match c.executor {
        None => count(c.workers as u64, "worker"),
        Some(n) => format!(
            "{} on one event loop thread, an executor of {},",
            count(c.workers as u64, "coroutine"),
            count(n as u64, "thread")
        ),
    };
    println!(
        "mmpool demo: {who} decoding through a {} budget{length} ({:.0}% video batches, seed {})",
        human(c.budget),
        c.video_share * 100.0,
        c.seed
    );
    if let Some(executor) = c.executor {
        let started = Instant::now();
        let (samples, figures) = crate::demo_async::run(c, &pool, executor)?;
        let elapsed = started.elapsed();
        progress(&pool.stats(), started, std::io::stderr().is_terminal(), true);
        report(&pool, &samples, elapsed)?;
        loop_report(&figures);
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers = match start_workers(c, &pool, &stop, &fragmentation) {
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
    report(&pool, &samples, elapsed)?;
    fragmentation.map_or(Ok(()), |f| f.report())
}

type Worker = JoinHandle<Vec<Sample>>;

/// One thread per worker; on failure, the ones started and why.
fn start_workers(
    c: &Config,
    pool: &Arc<Pool>,
    stop: &Arc<AtomicBool>,
    fragmentation: &Option<Arc<Fragmentation>>,
) -> Result<Vec<Worker>, (Vec<Worker>, String)> {
    let requests = match c.length {
        Length::For(_) => u64::MAX,
        Length::Requests(n) => n,
    };
    let mut workers = Vec::with_capacity(c.workers);
    for w in 0..c.workers {
        let (pool, stop, fragmentation) = (pool.clone(), stop.clone(), fragmentation.clone());
        let (rng, share) = (Rng::for_worker(c.seed, w), c.video_share);
        let spawned = thread::Builder::new()
            .name(format!("decode-{w}"))
            .spawn(move || decode_loop(&pool, &stop, rng, share, requests, fragmentation.as_deref()));
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => return Err((workers, format!("cannot start worker {} of {}: {e}", w + 1, c.workers))),
        }
    }
    Ok(workers)
}

pub fn progress(s: &Stats, started: Instant, live: bool, last: bool) {
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

fn decode_loop(
    pool: &Arc<Pool>,
    stop: &AtomicBool,
    mut rng: Rng,
    video_share: f64,
    requests: u64,
    fragmentation: Option<&Fragmentation>,
) -> Vec<Sample> {
    let mut out = Vec::new();
    for _ in 0..requests {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (class, nbytes) = next_request(&mut rng, video_share);
        let asked = Instant::now();
        let lease = match pool.acquire(nbytes, Wait::Forever) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mmpool demo: acquire failed: {e}");
                break;
            }
        };
        let waited = asked.elapsed();
        if let Some(f) = fragmentation {
            f.note(pool, &lease);
        }
        thread::sleep(decode_time(nbytes));
        let _ = pool.release(lease.id);
        out.push(Sample { class, nbytes, waited });
    }
    out
}

/// The next decode's class and size: a video batch of 100-800 MiB, or an
/// image of 1-8 MiB.
pub fn next_request(rng: &mut Rng, video_share: f64) -> (Class, u64) {
    if rng.unit() < video_share {
        (Class::Video, (100 + rng.below(701)) * MIB)
    } else {
        (Class::Image, (1 + rng.below(8)) * MIB)
    }
}

/// How long a decode of `nbytes` takes: about 1 ms per 8 MiB, at least 0.2 ms.
pub fn decode_time(nbytes: u64) -> Duration {
    Duration::from_micros(200 + nbytes / MIB * 125)
}

/// The event loop's rows: where the waiting happened.
fn loop_report(f: &crate::demo_async::LoopFigures) {
    println!();
    println!("{:<28}{} at most, all in the loop thread", "coroutines waiting at once", f.most_waiting);
    println!(
        "{:<28}{} at most: the loop thread and {} executor threads",
        "threads in the process", f.process_threads, f.executor_threads
    );
    println!(
        "{:<28}{} decodes; in pool calls at most {:.1} us at a time (releases: the bytes were waited for in the loop)",
        "executor threads",
        f.executor_decodes,
        f.executor_longest_pool_call.as_secs_f64() * 1e6
    );
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
