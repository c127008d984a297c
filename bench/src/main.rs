//! `mmpool-bench`: mmpool (through its C functions) against the admission
//! controllers people use today, over the same scenarios in one process, as
//! one table and, when asked, a JSON file of the figures. A crate of its own in the
//! workspace, so that the library and the `mmpool` command carry none of
//! the baselines (tokio, the reference algorithm).
//!
//! Scenario code is shared and generic over [`subject::Subject`]; each
//! implementation is one adapter. The figures are measured, never judged
//! here beyond printing each goal's ratio.

mod baselines;
mod block_on;
mod frag;
mod heap;
mod mmpool_c;
mod report;
mod scenarios;
mod subject;

use std::time::Duration;

use baselines::{Floor, RefParkingLot, RefStd, Tokio};
use mmpool_c::{MmpoolC, MmpoolSharedC};
use report::Report;
use scenarios::{Contended, Hold, Memory, Starvation, Wakeups};
use subject::Subject;

/// This program's allocator: the system's, counting while the memory
/// scenario measures (and costing one relaxed load per call otherwise).
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

const HELP: &str = "\
usage: mmpool-bench [--quick] [--json PATH] [--hold-us N]
       mmpool-bench --callgrind-pair NAME [--pairs N]
       mmpool-bench --fragmentation [--quick]

Runs floor, mmpool (through its C functions), the reference algorithm on std
and on parking_lot, and tokio's Semaphore over six scenarios and prints one
table; with --json, the figures also go to a JSON file. Build with --release.

  --quick                a short run with small counts (smoke tests, ~5 s)
  --json PATH            write the figures to PATH (no file is written without it)
  --hold-us N            busy time a lease is held in scenarios 2 and 5
                         (default 2; longer holds show the cost of handing
                         bytes to a sleeping thread fade)
  --callgrind-pair NAME  only run N uncontended acquire+release pairs of NAME
                         (floor, mmpool, ref-std, ref-parking_lot, tokio, or
                         mmpool-shared: a shared pool), for counting
                         instructions under valgrind --tool=callgrind
  --pairs N              pairs for --callgrind-pair (default 100000)
  --callgrind-handoff NAME  only run N rounds of two threads handing the
                         whole pool to each other (each release grants the
                         other thread, asleep in acquire), for valgrind
  --rounds N             rounds for --callgrind-handoff (default 1000)
  --fragmentation        only the placement scenario: one FIFO line of the
                         demo's requests placed by each allocator in turn
                         (simulated time), as a table";

/// How long and how often each scenario runs.
pub struct Plan {
    pub quick: bool,
    /// Scenario 1: pairs per timed batch, and batches per implementation
    /// (interleaved across implementations, median reported).
    pub pairs: u64,
    pub pair_rounds: usize,
    /// Scenario 2: thread counts, run time per cell, rounds (median reported).
    pub threads: &'static [usize],
    pub contended_for: Duration,
    pub contended_rounds: usize,
    /// Scenarios 2 and 5: busy time a lease is held.
    pub hold: Duration,
    /// Scenario 2 again with realistic holds (a decode takes that long):
    /// the row's scenario name and hold, the thread counts, time per cell.
    pub long_holds: &'static [(&'static str, Hold)],
    pub long_threads: &'static [usize],
    pub long_for: Duration,
    /// Scenario 3: parked waiters, and each one's hold once granted.
    pub waiters: usize,
    pub wake_hold: Duration,
    /// Scenario 4: the small leases' hold, the big request's limit, trials.
    pub stream_hold: Duration,
    pub starve_limit: Duration,
    pub starve_trials: usize,
    /// Scenario 5: thread count and run time.
    pub latency_threads: usize,
    pub latency_for: Duration,
    /// Scenario 6: outstanding leases and waiters measured.
    pub leases: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let ms = Duration::from_millis;
        Plan {
            quick,
            pairs: if quick { 20_000 } else { 200_000 },
            pair_rounds: if quick { 3 } else { 9 },
            threads: &[2, 4, 8, 16],
            contended_for: if quick { ms(40) } else { ms(250) },
            contended_rounds: if quick { 1 } else { 3 },
            hold: Duration::from_micros(2),
            long_holds: &LONG_HOLDS,
            long_threads: &[8, 16],
            long_for: if quick { ms(100) } else { ms(1000) },
            waiters: 16,
            wake_hold: ms(1),
            stream_hold: ms(1),
            starve_limit: if quick { ms(300) } else { ms(2000) },
            starve_trials: if quick { 1 } else { 5 },
            latency_threads: 8,
            latency_for: if quick { ms(60) } else { ms(600) },
            leases: 4096,
        }
    }
}

/// The realistic holds of scenario 2's second part: busy on a core for a
/// wall-clock time, busy for an amount of processor time (a decode on the
/// CPU), and blocked (the worker asleep, as a decode waiting for its GPU).
/// With more holders than cores a busy hold also competes for the
/// processor, which the blocked rows take out of the comparison; a
/// wall-clock hold also progresses while its thread is off the core, which
/// the work rows take out.
const LONG_HOLDS: [(&str, Hold); 6] = [
    ("contended_200us", Hold::Busy(Duration::from_micros(200))),
    ("contended_2ms", Hold::Busy(Duration::from_millis(2))),
    ("contended_200us_work", Hold::Work(Duration::from_micros(200))),
    ("contended_2ms_work", Hold::Work(Duration::from_millis(2))),
    ("contended_200us_blocked", Hold::Blocked(Duration::from_micros(200))),
    ("contended_2ms_blocked", Hold::Blocked(Duration::from_millis(2))),
];

/// One implementation: its scenarios, monomorphised.
pub struct Entry {
    pub name: &'static str,
    pub blocks: bool,
    uncontended: fn(u64) -> f64,
    contended: fn(usize, Duration, Hold, bool) -> Contended,
    wakeups: fn(usize, Duration) -> Result<Wakeups, String>,
    starvation: fn(Duration, Duration, usize) -> Starvation,
    memory: fn(usize, usize) -> Result<Memory, String>,
    pairs: fn(u64),
    handoffs: fn(u64),
}

fn entry<S: Subject>() -> Entry {
    Entry {
        name: S::NAME,
        blocks: S::BLOCKS,
        uncontended: scenarios::uncontended::<S>,
        contended: scenarios::contended::<S>,
        wakeups: scenarios::wakeups::<S>,
        starvation: scenarios::starvation::<S>,
        memory: scenarios::memory::<S>,
        pairs: |n| {
            let s = S::new(3 * scenarios::UNIT);
            for _ in 0..1000 + n {
                scenarios::pair(&s);
            }
        },
        handoffs: scenarios::handoffs::<S>,
    }
}

fn entries() -> Vec<Entry> {
    vec![entry::<Floor>(), entry::<MmpoolC>(), entry::<RefStd>(), entry::<RefParkingLot>(), entry::<Tokio>()]
}

/// The implementations the callgrind modes know: the table's, and mmpool's
/// shared pool (whose scenarios are `mmpool bench-shared`'s).
fn callgrind_entries() -> Vec<Entry> {
    let mut all = entries();
    all.push(entry::<MmpoolSharedC>());
    all
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run_main(&args));
}

/// The value after `flag`, parsed.
fn value_of<T: std::str::FromStr>(flag: &str, next: Option<&String>) -> Result<T, String> {
    let v = next.ok_or_else(|| format!("`{flag}` needs a value"))?;
    v.parse().map_err(|_| format!("`{flag}` got `{v}`, which it cannot use"))
}

fn run_main(args: &[String]) -> i32 {
    let mut quick = false;
    let mut json: Option<String> = None;
    let mut callgrind: Option<String> = None;
    let mut handoff: Option<String> = None;
    let mut rounds: u64 = 1000;
    let mut pairs: u64 = 100_000;
    let mut help = false;
    let mut hold_us: Option<u64> = None;
    let mut fragmentation = false;
    let mut a = args.iter();
    let parsed: Result<(), String> = (|| {
        while let Some(flag) = a.next() {
            match flag.as_str() {
                "--quick" => quick = true,
                "--json" => json = Some(value_of("--json", a.next())?),
                "--callgrind-pair" => callgrind = Some(value_of("--callgrind-pair", a.next())?),
                "--pairs" => pairs = value_of("--pairs", a.next())?,
                "--callgrind-handoff" => handoff = Some(value_of("--callgrind-handoff", a.next())?),
                "--rounds" => rounds = value_of("--rounds", a.next())?,
                "--hold-us" => hold_us = Some(value_of("--hold-us", a.next())?),
                "--fragmentation" => fragmentation = true,
                "--help" | "-h" => help = true,
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        eprintln!("mmpool-bench: {e}\n{HELP}");
        return 2;
    }
    if help {
        println!("{HELP}");
        return 0;
    }
    if fragmentation {
        print!("{}", fragmentation_table(quick));
        return 0;
    }
    if let Some(name) = handoff {
        return match callgrind_entries().into_iter().find(|e| e.name == name && e.blocks) {
            Some(e) => {
                (e.handoffs)(rounds);
                println!("{name}: {rounds} rounds of two hand-offs");
                0
            }
            None => {
                eprintln!("mmpool-bench: no blocking implementation named `{name}`\n{HELP}");
                2
            }
        };
    }
    if let Some(name) = callgrind {
        return match callgrind_entries().into_iter().find(|e| e.name == name) {
            Some(e) => {
                (e.pairs)(pairs);
                println!("{name}: {pairs} pairs (+1000 warm-up)");
                0
            }
            None => {
                eprintln!("mmpool-bench: no implementation named `{name}`\n{HELP}");
                2
            }
        };
    }
    let mut plan = Plan::new(quick);
    if let Some(us) = hold_us {
        plan.hold = Duration::from_micros(us);
    }
    match run(&plan, json.as_deref()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mmpool-bench: {e}");
            1
        }
    }
}

/// The placement scenario's table: every allocator over the same line.
fn fragmentation_table(quick: bool) -> String {
    let line = frag::Line::new(quick);
    let outcomes = vec![
        frag::run::<frag::BytesOnly>(&line),
        frag::run::<frag::MmpoolPlacement>(&line),
        frag::run::<frag::FirstFit>(&line),
        frag::run::<frag::OffsetAllocator>(&line),
        frag::run::<frag::Rlsf>(&line),
    ];
    frag::table(&line, &outcomes)
}

fn progress(step: &str) {
    eprintln!("mmpool-bench: {step}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One cell of scenario 2 for every implementation: `plan.contended_rounds`
/// runs each, interleaved across implementations.
fn contended_cells(blocking: &[&Entry], plan: &Plan, threads: usize, run_for: Duration, hold: Hold) -> Vec<Vec<Contended>> {
    let mut cells: Vec<Vec<Contended>> = (0..blocking.len()).map(|_| Vec::new()).collect();
    for _ in 0..plan.contended_rounds {
        for (e, c) in blocking.iter().zip(&mut cells) {
            c.push((e.contended)(threads, run_for, hold, false));
        }
    }
    cells
}

/// The medians of each implementation's runs: throughput and the workers'
/// context switches per operation.
fn add_contended(report: &mut Report, scenario: &'static str, blocking: &[&Entry], threads: usize, cells: Vec<Vec<Contended>>) {
    for (e, runs) in blocking.iter().zip(cells) {
        let of = |f: fn(&Contended) -> f64| median(runs.iter().map(f).collect());
        report.add(scenario, e.name, Some(threads), "ops_per_s", Some(of(|c| c.ops_per_s)));
        report.add(scenario, e.name, Some(threads), "voluntary_switches_per_op", Some(of(|c| c.voluntary_per_op)));
        report.add(scenario, e.name, Some(threads), "involuntary_switches_per_op", Some(of(|c| c.involuntary_per_op)));
    }
}

fn run(plan: &Plan, json_path: Option<&str>) -> Result<(), String> {
    if cfg!(debug_assertions) && !plan.quick {
        eprintln!("mmpool-bench: this is a debug build; figures need `cargo run --release -p mmpool-bench`");
    }
    let all = entries();
    let mut report = Report::new(&all, plan);

    progress("1/6 uncontended acquire+release");
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
    for _ in 0..plan.pair_rounds {
        for (e, s) in all.iter().zip(&mut samples) {
            s.push((e.uncontended)(plan.pairs));
        }
    }
    for (e, s) in all.iter().zip(samples) {
        report.add("uncontended", e.name, None, "ns_per_pair", Some(median(s)));
    }

    let blocking: Vec<&Entry> = all.iter().filter(|e| e.blocks).collect();
    progress("2/6 contended throughput");
    for &t in plan.threads {
        let cells = contended_cells(&blocking, plan, t, plan.contended_for, Hold::Busy(plan.hold));
        add_contended(&mut report, "contended", &blocking, t, cells);
    }

    for &(scenario, hold) in plan.long_holds {
        progress(&format!("2/6 contended throughput, {}", hold.label()));
        for &t in plan.long_threads {
            let cells = contended_cells(&blocking, plan, t, plan.long_for, hold);
            add_contended(&mut report, scenario, &blocking, t, cells);
        }
    }

    progress("3/6 wake-ups per release");
    for e in &blocking {
        let w = (e.wakeups)(plan.waiters, plan.wake_hold)?;
        report.add("wakeups", e.name, Some(plan.waiters), "futile_per_release", Some(w.futile as f64 / w.releases as f64));
        report.add("wakeups", e.name, Some(plan.waiters), "futile", Some(w.futile as f64));
        report.add("wakeups", e.name, Some(plan.waiters), "granted", Some(w.granted as f64));
    }

    progress("4/6 starvation of a large request");
    for e in &blocking {
        let s = (e.starvation)(plan.stream_hold, plan.starve_limit, plan.starve_trials);
        let granted: Vec<f64> = s.grants.iter().flatten().map(|d| d.as_secs_f64() * 1e3).collect();
        let all_granted = granted.len() == s.grants.len();
        let (med, max) = if all_granted {
            (Some(median(granted.clone())), granted.iter().copied().reduce(f64::max))
        } else {
            (None, None)
        };
        report.add("starvation", e.name, Some(4), "hold_ms", Some(s.hold.as_secs_f64() * 1e3));
        report.add("starvation", e.name, Some(4), "granted", Some(all_granted as u8 as f64));
        report.add("starvation", e.name, Some(4), "limit_ms", Some(plan.starve_limit.as_secs_f64() * 1e3));
        report.add("starvation", e.name, Some(4), "grant_ms_median", med);
        report.add("starvation", e.name, Some(4), "grant_ms_max", max);
    }

    progress("5/6 wait times");
    for e in &blocking {
        let c = (e.contended)(plan.latency_threads, plan.latency_for, Hold::Busy(plan.hold), true);
        let t = Some(plan.latency_threads);
        for (metric, q) in [("p50_us", 0.5), ("p99_us", 0.99), ("max_us", 1.0)] {
            report.add("wait_time", e.name, t, metric, Some(scenarios::quantile(&c.waits_ns, q) as f64 / 1e3));
        }
    }

    progress("6/6 memory");
    for e in &all {
        let m = (e.memory)(plan.leases, plan.waiters)?;
        report.add("memory", e.name, None, "bytes_per_pool", Some(m.per_pool));
        report.add("memory", e.name, Some(plan.leases), "bytes_per_lease", Some(m.per_lease));
        report.add("memory", e.name, Some(plan.waiters), "bytes_per_waiter", m.per_waiter);
    }

    print!("{}", report.table());
    let Some(json_path) = json_path else { return Ok(()) };
    if let Some(dir) = std::path::Path::new(json_path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(json_path, report.json()).map_err(|e| format!("cannot write {json_path}: {e}"))?;
    println!("figures written to {json_path}");
    Ok(())
}
