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
use std::thread;
use std::time::{Duration, Instant};

use mmpool::{Pool, Wait};

use crate::args::{parse_bytes, Args};

const HELP: &str = "\
usage: mmpool demo [--budget BYTES] [--workers N] [--duration SECONDS] [--video-share F] [--seed N]

  --budget BYTES       the pool's budget, e.g. 1GiB, 512MiB (default 1GiB)
  --workers N          decoding threads (default 8)
  --duration SECONDS   how long to run (default 3)
  --video-share F      fraction of requests that are video batches (default 0.1)
  --seed N             random seed (default 1)";

const MIB: u64 = 1 << 20;

struct Config {
    budget: u64,
    workers: usize,
    duration: Duration,
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
        duration: Duration::from_secs(3),
        video_share: 0.1,
        seed: 1,
    };
    while let Some(flag) = a.next_flag() {
        match flag.as_str() {
            "--budget" => c.budget = parse_bytes(&a.value(&flag)?)?,
            "--workers" => c.workers = a.number(&flag)?,
            "--duration" => c.duration = Duration::from_secs_f64(a.number(&flag)?),
            "--video-share" => c.video_share = a.number(&flag)?,
            "--seed" => c.seed = a.number(&flag)?,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if c.workers == 0 || !(0.0..=1.0).contains(&c.video_share) {
        return Err("--workers must be at least 1 and --video-share between 0 and 1".into());
    }
    if c.budget < 800 * MIB {
        return Err(format!("--budget must hold the largest video batch (800 MiB), got {} bytes", c.budget));
    }
    Ok(Some(c))
}

pub fn main(args: &[String]) -> i32 {
    let config = match parse(args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{HELP}");
            return 0;
        }
        Err(e) => {
            eprintln!("mmpool demo: {e}\n{HELP}");
            return 2;
        }
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
    println!(
        "mmpool demo: {} workers decoding through a {} budget for {:.1} s ({:.0}% video batches)",
        c.workers,
        human(c.budget),
        c.duration.as_secs_f64(),
        c.video_share * 100.0
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..c.workers)
        .map(|w| {
            let (pool, stop) = (pool.clone(), stop.clone());
            let (seed, share) = (c.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w as u64 + 1), c.video_share);
            thread::spawn(move || decode_loop(&pool, &stop, Rng(seed | 1), share))
        })
        .collect();

    let live = std::io::stderr().is_terminal();
    while started.elapsed() < c.duration {
        thread::sleep(Duration::from_millis(if live { 100 } else { 1000 }));
        let s = pool.stats();
        let line = format!(
            "{:5.1} s  decodes {:>7}  in use {:>9} / {}  peak {:>9}  waiting {:>2}",
            started.elapsed().as_secs_f64(),
            s.grants,
            human(s.in_use_bytes),
            human(s.total_bytes),
            human(s.peak_in_use_bytes),
            s.waiters
        );
        if live {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }
    if live {
        eprintln!();
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.join().map_err(|_| "a worker panicked".to_string())?);
    }
    let elapsed = started.elapsed();
    report(&pool, &samples, elapsed)
}

fn decode_loop(pool: &Arc<Pool>, stop: &AtomicBool, mut rng: Rng, video_share: f64) -> Vec<Sample> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
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
    println!("{:<28}{}", "grants", s.grants);
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
