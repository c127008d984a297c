//! Shared pools' figures in Prometheus' text exposition format (version
//! 0.0.4), for `mmpool status NAME --prometheus` and `mmpool exporter`.
//!
//! The families and their names are those of the Python collector
//! (`mmpool.prometheus`): an `mmpool_` prefix, base units, `_total` on
//! counters, a `pool` label. A shared pool adds what only it knows: one
//! sample per attached process (label `pid`) of the bytes it holds, its
//! leases and its requests in line, and `mmpool_pool_up`, 0 for a pool that
//! could not be read (the exporter keeps serving the others).

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
    header(&mut out, "mmpool_wait_seconds", "summary", "Waits of the grants that waited in line.");
    for (pool, s) in &read {
        out += &format!("mmpool_wait_seconds_count{{pool=\"{pool}\"}} {}\n", s.stats.waited_grants);
        out += &format!("mmpool_wait_seconds_sum{{pool=\"{pool}\"}} {}\n", Value::Seconds(s.stats.wait_ns_total).text());
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

#[cfg(test)]
mod tests {
    use super::*;
    use mmpool::pool::shared::{Limits, ProcInfo};

    fn snapshot(name: &str) -> SharedSnapshot {
        SharedSnapshot {
            name: name.into(),
            path: format!("/dev/shm/mmpool.{name}"),
            closed: false,
            stats: Stats { total_bytes: 10, in_use_bytes: 4, wait_ns_total: 1_500_000, waited_grants: 2, ..Stats::default() },
            procs: vec![
                ProcInfo { slot: 0, pid: 7, leases: 1, bytes_held: 4, waiting: 0, is_self: false },
                ProcInfo { slot: 1, pid: 8, leases: 0, bytes_held: 0, waiting: 0, is_self: true },
            ],
            lock_recoveries: 0,
            reaped_procs: 0,
            limits: Limits { max_processes: 3, max_leases: 40, max_waiters: 5 },
            lock_holder: None,
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
        assert!(text.contains("mmpool_process_held_bytes{pool=\"a\",pid=\"7\"} 4\n"), "{text}");
        assert!(!text.contains("pid=\"8\""), "the reading process is not listed: {text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
