//! Shared pools' figures in Prometheus' text exposition format (version
//! 0.0.4), for `mmpool status NAME --prometheus` and `mmpool exporter`.
//!
//! The families and their names are those of the Python collector
//! (`mmpool.prometheus`): an `mmpool_` prefix, base units, `_total` on
//! counters, a `pool` label. A shared pool adds what only it knows: one
//! sample per attached process (label `pid`) of the bytes it holds, its
//! leases and its requests in line, and `mmpool_pool_up`, 0 for a pool that
//! could not be read (the exporter keeps serving the others).

use mmpool::pool::histogram::{size_bound, WAIT_BOUNDS_NS};
use mmpool::pool::shared::SharedSnapshot;
use mmpool::Stats;

/// What one pool contributes to a scrape: its figures, or nothing when it
/// could not be read.
pub struct PoolFigures<'a> {
    pub name: &'a str,
    pub snapshot: Option<&'a SharedSnapshot>,
}

/// A sample's value.
enum Value {
    Count(u64),
    Seconds(u64),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Count(n) => n.to_string(),
            // Nanoseconds as seconds; Rust prints f64 in full, never with an
            // exponent, which every Prometheus parser reads.
            Value::Seconds(ns) => format!("{}", *ns as f64 / 1e9),
        }
    }
}

type Pick = fn(&Stats) -> Value;

/// (name, type, help, the figure) for each family read from `Stats`.
const FAMILIES: [(&str, &str, &str, Pick); 13] = [
    ("mmpool_total_bytes", "gauge", "The pool's total budget in bytes.", |s| Value::Count(s.total_bytes)),
    ("mmpool_in_use_bytes", "gauge", "Bytes granted and not yet returned.", |s| Value::Count(s.in_use_bytes)),
    ("mmpool_available_bytes", "gauge", "Bytes grantable now.", |s| Value::Count(s.available_bytes)),
    ("mmpool_peak_in_use_bytes", "gauge", "The most bytes ever in use at once.", |s| {
        Value::Count(s.peak_in_use_bytes)
    }),
    ("mmpool_waiters", "gauge", "Requests waiting in line now.", |s| Value::Count(s.waiters)),
    ("mmpool_outstanding_leases", "gauge", "Leases granted and not yet released.", |s| {
        Value::Count(s.outstanding_leases)
    }),
    ("mmpool_wait_max_seconds", "gauge", "The longest wait of a grant, in seconds.", |s| {
        Value::Seconds(s.wait_ns_max)
    }),
    ("mmpool_grants_total", "counter", "Leases granted.", |s| Value::Count(s.grants)),
    ("mmpool_waited_grants_total", "counter", "Grants that waited in line first.", |s| Value::Count(s.waited_grants)),
    ("mmpool_timeouts_total", "counter", "Requests that gave up when their wait ran out.", |s| {
        Value::Count(s.timeouts)
    }),
    ("mmpool_would_blocks_total", "counter", "try_acquire calls refused because the bytes were not free.", |s| {
        Value::Count(s.would_blocks)
    }),
    ("mmpool_capacity_rejections_total", "counter", "Requests refused because they exceed the total.", |s| {
        Value::Count(s.capacity_rejections)
    }),
    ("mmpool_closed_rejections_total", "counter", "Requests refused or woken because the pool was closed.", |s| {
        Value::Count(s.closed_rejections)
    }),
];

/// The help of the one figure an engine subtracts from its KV cache.
const BUDGET_AND_RESERVED_HELP: &str = "The pool's total budget plus every attached process's reservations, in bytes.";

type PickProcess = fn(&mmpool::pool::shared::ProcInfo) -> u64;

/// The per-process families of a shared pool.
const PROCESS_FAMILIES: [(&str, &str, PickProcess); 3] = [
    ("mmpool_process_held_bytes", "Bytes held by an attached process's leases.", |p| p.bytes_held),
    ("mmpool_process_leases", "Leases held by an attached process.", |p| p.leases),
    ("mmpool_process_waiters", "Requests of an attached process waiting in line.", |p| p.waiting),
];

/// A label value escaped as the format asks: backslash, double quote and
/// line feed.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    *out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// A bound in nanoseconds as seconds in plain decimal (`0.000001`, `100`),
/// as the Python collector writes its `le` labels.
fn seconds_text(ns: u64) -> String {
    let (whole, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:09}").trim_end_matches('0').to_string()
    }
}

/// One pool's samples of a histogram family: the cumulative `_bucket`s
/// (`bound(i)` is bucket `i`'s `le`, `None` for the last, `+Inf`), `_sum`
/// and `_count`.
fn histogram(out: &mut String, name: &str, pool: &str, counts: &[u64], bound: impl Fn(usize) -> Option<String>, sum: &str) {
    let mut total = 0u64;
    for (i, c) in counts.iter().enumerate() {
        total = total.saturating_add(*c);
        let le = bound(i).unwrap_or_else(|| "+Inf".into());
        *out += &format!("{name}_bucket{{pool=\"{pool}\",le=\"{le}\"}} {total}\n");
    }
    *out += &format!("{name}_sum{{pool=\"{pool}\"}} {sum}\n{name}_count{{pool=\"{pool}\"}} {total}\n");
}

/// The text exposition of `pools`: every family once, one sample per pool
/// (and per attached process), so that several pools make one valid scrape.
pub fn render(pools: &[PoolFigures<'_>]) -> String {
    let mut out = String::new();
    let read: Vec<(String, &SharedSnapshot)> =
        pools.iter().filter_map(|p| p.snapshot.map(|s| (escape(p.name), s))).collect();
    header(&mut out, "mmpool_pool_up", "gauge", "1 when the pool could be read for this scrape, else 0.");
    for p in pools {
        out += &format!("mmpool_pool_up{{pool=\"{}\"}} {}\n", escape(p.name), u8::from(p.snapshot.is_some()));
    }
    for (name, kind, help, pick) in FAMILIES {
        header(&mut out, name, kind, help);
        for (pool, s) in &read {
            out += &format!("{name}{{pool=\"{pool}\"}} {}\n", pick(&s.stats).text());
        }
    }
    header(&mut out, "mmpool_wait_seconds", "histogram", "Waits in line of the requests that waited before their grant.");
    for (pool, s) in &read {
        let bound = |i: usize| WAIT_BOUNDS_NS.get(i).map(|&ns| seconds_text(ns));
        let sum = Value::Seconds(s.histograms.wait_ns_total).text();
        histogram(&mut out, "mmpool_wait_seconds", pool, &s.histograms.waits, bound, &sum);
    }
    header(&mut out, "mmpool_request_bytes", "histogram", "Sizes of the granted leases at their grant.");
    for (pool, s) in &read {
        let finite = s.histograms.sizes.len() - 1;
        let bound = |i: usize| (i < finite).then(|| size_bound(i).to_string());
        let sum = s.histograms.size_bytes_total.to_string();
        histogram(&mut out, "mmpool_request_bytes", pool, &s.histograms.sizes, bound, &sum);
    }
    header(&mut out, "mmpool_reserved_bytes", "gauge", "Bytes an attached process holds outside any lease, by label.");
    for (pool, s) in &read {
        for p in s.procs.iter().filter(|p| !p.is_self) {
            for r in &p.reservations {
                let label = escape(&r.label);
                out += &format!("mmpool_reserved_bytes{{pool=\"{pool}\",pid=\"{}\",label=\"{label}\"}} {}\n", p.pid, r.bytes);
            }
        }
    }
    header(&mut out, "mmpool_budget_and_reserved_bytes", "gauge", BUDGET_AND_RESERVED_HELP);
    for (pool, s) in &read {
        let figure = s.stats.total_bytes.saturating_add(s.stats.reserved_bytes);
        out += &format!("mmpool_budget_and_reserved_bytes{{pool=\"{pool}\"}} {figure}\n");
    }
    for (name, help, pick) in PROCESS_FAMILIES {
        header(&mut out, name, "gauge", help);
        for (pool, s) in &read {
            for p in s.procs.iter().filter(|p| !p.is_self) {
                out += &format!("{name}{{pool=\"{pool}\",pid=\"{}\"}} {}\n", p.pid, pick(p));
            }
        }
    }
    out
}

/// Two attached processes for tests: pid 7 holding a lease of 4 bytes and
/// 5 reserved bytes under `label`, and pid 8, the reader itself.
#[cfg(test)]
pub fn two_processes(label: &str) -> Vec<mmpool::pool::shared::ProcInfo> {
    use mmpool::pool::reservations::Reservation;
    use mmpool::pool::shared::ProcInfo;
    let reservations = vec![Reservation { label: label.into(), bytes: 5 }];
    vec![
        ProcInfo { slot: 0, pid: 7, leases: 1, bytes_held: 4, waiting: 0, is_self: false, reservations },
        ProcInfo { slot: 1, pid: 8, leases: 0, bytes_held: 0, waiting: 0, is_self: true, reservations: vec![] },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmpool::pool::histogram::Histograms;
    use mmpool::pool::shared::Limits;

    fn snapshot(name: &str) -> SharedSnapshot {
        SharedSnapshot {
            name: name.into(),
            path: format!("/dev/shm/mmpool.{name}"),
            closed: false,
            stats: Stats {
                reserved_bytes: 5,
                total_bytes: 10,
                in_use_bytes: 4,
                wait_ns_total: 1_500_000,
                waited_grants: 2,
                ..Stats::default()
            },
            histograms: Histograms {
                waits: std::array::from_fn(|i| u64::from(i == 0 || i == 9)),
                wait_ns_total: 1_500_000,
                sizes: std::array::from_fn(|i| if i == 1 { 3 } else { 0 }),
                size_bytes_total: 30000,
            },
            procs: two_processes("nvdec \"x\""),
            lock_recoveries: 0,
            reaped_procs: 0,
            limits: Limits { max_processes: 3, max_leases: 40, max_waiters: 5, max_handoffs: 6 },
            lock_holder: None,
            handoffs: Vec::new(),
        }
    }

    #[test]
    fn each_family_appears_once_with_a_sample_per_readable_pool() {
        let (a, b) = (snapshot("a"), snapshot("b\"q"));
        let text = render(&[
            PoolFigures { name: "a", snapshot: Some(&a) },
            PoolFigures { name: "b\"q", snapshot: Some(&b) },
            PoolFigures { name: "gone", snapshot: None },
        ]);
        assert_eq!(text.matches("# TYPE mmpool_in_use_bytes gauge\n").count(), 1, "{text}");
        assert!(text.contains("mmpool_in_use_bytes{pool=\"a\"} 4\n"), "{text}");
        assert!(text.contains("mmpool_in_use_bytes{pool=\"b\\\"q\"} 4\n"), "{text}");
        assert!(!text.contains("mmpool_in_use_bytes{pool=\"gone\"}"), "{text}");
        assert!(text.contains("mmpool_pool_up{pool=\"gone\"} 0\n") && text.contains("mmpool_pool_up{pool=\"a\"} 1\n"));
        assert!(text.contains("# TYPE mmpool_grants_total counter\n"), "{text}");
        assert!(text.contains("mmpool_wait_seconds_sum{pool=\"a\"} 0.0015\n"), "{text}");
        assert!(text.contains("mmpool_wait_seconds_count{pool=\"a\"} 2\n"), "{text}");
        assert!(text.contains("# TYPE mmpool_wait_seconds histogram\n"), "{text}");
        assert!(text.contains("mmpool_wait_seconds_bucket{pool=\"a\",le=\"0.000001\"} 1\n"), "{text}");
        assert!(text.contains("mmpool_wait_seconds_bucket{pool=\"a\",le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("mmpool_wait_seconds_bucket{pool=\"a\",le=\"0.001\"} 2\n"), "{text}");
        assert!(text.contains("mmpool_wait_seconds_bucket{pool=\"a\",le=\"100\"} 2\n"), "{text}");
        assert!(text.contains("mmpool_wait_seconds_bucket{pool=\"a\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("mmpool_request_bytes_bucket{pool=\"a\",le=\"4096\"} 0\n"), "{text}");
        assert!(text.contains("mmpool_request_bytes_bucket{pool=\"a\",le=\"16384\"} 3\n"), "{text}");
        assert!(text.contains("mmpool_request_bytes_bucket{pool=\"a\",le=\"1152921504606846976\"} 3\n"), "{text}");
        assert!(text.contains("mmpool_request_bytes_sum{pool=\"a\"} 30000\nmmpool_request_bytes_count{pool=\"a\"} 3\n"), "{text}");
        assert!(text.contains("mmpool_process_held_bytes{pool=\"a\",pid=\"7\"} 4\n"), "{text}");
        assert!(!text.contains("pid=\"8\""), "the reading process is not listed: {text}");
        assert!(text.contains("mmpool_reserved_bytes{pool=\"a\",pid=\"7\",label=\"nvdec \\\"x\\\"\"} 5\n"), "{text}");
        assert!(text.contains("mmpool_budget_and_reserved_bytes{pool=\"a\"} 15\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
