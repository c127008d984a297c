//! The figures of one run: kept as flat rows, printed as one table with the
//! goals' ratios beneath it, and written as JSON.

use std::fmt::Write;

use super::{Entry, Plan};

/// One figure.
pub struct Row {
    pub scenario: &'static str,
    pub implementation: &'static str,
    /// Threads (or leases, waiters) the figure was measured at, where it matters.
    pub count: Option<usize>,
    pub metric: &'static str,
    /// `None` where the implementation cannot take part, or did not finish
    /// (a request not granted within its limit).
    pub value: Option<f64>,
}

pub struct Report {
    names: Vec<&'static str>,
    rows: Vec<Row>,
    quick: bool,
    threads: Vec<usize>,
    waiters: usize,
    leases: usize,
    latency_threads: usize,
    starve_trials: usize,
    starve_limit_s: f64,
    hold_us: u128,
    long_holds: &'static [(&'static str, crate::scenarios::Hold)],
    long_threads: Vec<usize>,
}

pub const SCENARIOS: [&str; 12] = [
    "uncontended",
    "contended",
    "contended_200us",
    "contended_2ms",
    "contended_200us_work",
    "contended_2ms_work",
    "contended_200us_blocked",
    "contended_2ms_blocked",
    "wakeups",
    "starvation",
    "wait_time",
    "memory",
];

impl Report {
    pub fn new(entries: &[Entry], plan: &Plan) -> Report {
        Report {
            names: entries.iter().map(|e| e.name).collect(),
            rows: Vec::new(),
            quick: plan.quick,
            threads: plan.threads.to_vec(),
            waiters: plan.waiters,
            leases: plan.leases,
            latency_threads: plan.latency_threads,
            starve_trials: plan.starve_trials,
            starve_limit_s: plan.starve_limit.as_secs_f64(),
            hold_us: plan.hold.as_micros(),
            long_holds: plan.long_holds,
            long_threads: plan.long_threads.to_vec(),
        }
    }

    pub fn add(&mut self, scenario: &'static str, implementation: &'static str, count: Option<usize>, metric: &'static str, value: Option<f64>) {
        self.rows.push(Row { scenario, implementation, count, metric, value });
    }

    fn get(&self, scenario: &str, implementation: &str, metric: &str) -> Option<f64> {
        self.get_at(scenario, implementation, None, metric)
    }

    fn get_at(&self, scenario: &str, implementation: &str, count: Option<usize>, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| {
                r.scenario == scenario
                    && r.implementation == implementation
                    && r.metric == metric
                    && (count.is_none() || r.count == count)
            })
            .and_then(|r| r.value)
    }

    fn took_part(&self, scenario: &str, implementation: &str) -> bool {
        self.rows.iter().any(|r| r.scenario == scenario && r.implementation == implementation)
    }

    /// One line: a label, then one cell per implementation.
    fn line(&self, out: &mut String, label: &str, cell: impl Fn(&'static str) -> String) {
        let _ = write!(out, "{label:<46}");
        for &n in &self.names {
            let _ = write!(out, "{:>16}", cell(n));
        }
        out.push('\n');
    }

    /// A line of one metric, formatted with `digits` decimals ("-" where the
    /// implementation does not take part).
    #[allow(clippy::too_many_arguments)]
    fn metric_line(&self, out: &mut String, label: &str, scenario: &str, count: Option<usize>, metric: &str, scale: f64, digits: usize) {
        self.line(out, label, |n| match self.get_at(scenario, n, count, metric) {
            Some(v) => format!("{:.*}", digits, v * scale),
            None if self.took_part(scenario, n) => "n/a".into(),
            None => "-".into(),
        });
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let cpu = cpu_model();
        let _ = writeln!(
            out,
            "\nmmpool bench: {} CPUs ({cpu}), {} build, {} run\n",
            cpus(),
            if cfg!(debug_assertions) { "debug" } else { "release" },
            if self.quick { "quick" } else { "full" }
        );
        self.line(&mut out, "", |n| n.to_string());
        self.metric_line(&mut out, "1 uncontended acquire+release, ns", "uncontended", None, "ns_per_pair", 1.0, 1);
        let floor = self.get("uncontended", "floor", "ns_per_pair");
        self.line(&mut out, "    x floor", |n| match (self.get("uncontended", n, "ns_per_pair"), floor) {
            (Some(v), Some(f)) => format!("{:.2}", v / f),
            _ => "-".into(),
        });
        for (i, &t) in self.threads.iter().enumerate() {
            let label = if i == 0 {
                format!("{:<37}{t:>2} thr", format!("2 contended, 3 fit, hold {}us, kops/s:", self.hold_us))
            } else {
                format!("{:>37}{t:>2} thr", "")
            };
            self.metric_line(&mut out, &label, "contended", Some(t), "ops_per_s", 1e-3, 0);
        }
        for &(scenario, hold) in self.long_holds {
            for (i, &t) in self.long_threads.iter().enumerate() {
                let label = if i == 0 {
                    format!("{:>37}{t:>2} thr", format!("{}, kops/s:", hold.label()))
                } else {
                    format!("{:>37}{t:>2} thr", "")
                };
                self.metric_line(&mut out, &label, scenario, Some(t), "ops_per_s", 1e-3, 2);
            }
        }
        self.switch_lines(&mut out);
        self.metric_line(
            &mut out,
            &format!("3 futile wake-ups per release, {} waiting", self.waiters),
            "wakeups",
            None,
            "futile_per_release",
            1.0,
            2,
        );
        let limit = format!("not in {}s", self.starve_limit_s);
        let grant = |metric: &'static str| {
            let limit = limit.clone();
            move |n: &'static str| match (self.get("starvation", n, "granted"), self.get("starvation", n, metric)) {
                (Some(g), Some(v)) if g > 0.0 => format!("{v:.2}"),
                (Some(_), _) => limit.clone(),
                (None, _) => "-".into(),
            }
        };
        let trials = self.starve_trials;
        self.line(&mut out, &format!("4 90% amid 30% stream, grant ms: median of {trials}"), grant("grant_ms_median"));
        self.line(&mut out, &format!("{:>33}max of {trials}", ""), grant("grant_ms_max"));
        self.metric_line(&mut out, "    the small leases' hold, ms", "starvation", None, "hold_ms", 1.0, 2);
        let t = Some(self.latency_threads);
        let label = format!("5 wait for a grant, {} threads, us: p50", self.latency_threads);
        self.metric_line(&mut out, &label, "wait_time", t, "p50_us", 1.0, 1);
        self.metric_line(&mut out, &format!("{:>42}p99", ""), "wait_time", t, "p99_us", 1.0, 1);
        self.metric_line(&mut out, &format!("{:>42}max", ""), "wait_time", t, "max_us", 1.0, 0);
        self.metric_line(&mut out, "6 heap bytes: per pool", "memory", None, "bytes_per_pool", 1.0, 0);
        self.metric_line(&mut out, &format!("{:>14}per lease ({} outstanding)", "", self.leases), "memory", None, "bytes_per_lease", 1.0, 1);
        self.metric_line(&mut out, &format!("{:>14}per waiting thread ({})", "", self.waiters), "memory", None, "bytes_per_waiter", 1.0, 1);
        out.push('\n');
        out.push_str(&self.goals());
        out
    }

    /// The workers' context switches per operation in the busy rows of
    /// scenario 2, "voluntary+involuntary": a FIFO pool hands each grant to a
    /// sleeping thread, so each operation puts a worker to sleep; a pool that
    /// lets the releaser take the bytes straight back does not.
    fn switch_lines(&self, out: &mut String) {
        let busy = [("contended", format!("hold {}us", self.hold_us))].into_iter().chain(
            self.long_holds
                .iter()
                .filter(|(_, h)| h.busy())
                .map(|&(s, h)| (s, h.label())),
        );
        let _ = writeln!(out, "  context switches per operation, voluntary+involuntary:");
        for (scenario, label) in busy {
            for (i, &t) in self.long_threads.iter().enumerate() {
                let name = if i == 0 { format!("{label}:") } else { String::new() };
                let row = format!("{:>37}{t:>2} thr", name);
                self.line(out, &row, |n| {
                    let at = |m| self.get_at(scenario, n, Some(t), m);
                    match (at("voluntary_switches_per_op"), at("involuntary_switches_per_op")) {
                        (Some(v), Some(i)) => format!("{v:.2}+{i:.2}"),
                        _ => "-".into(),
                    }
                });
            }
        }
    }

    /// Each goal of mmpool with its measured ratio; never a pass/fail of the run.
    fn goals(&self) -> String {
        let mut out = String::from("goals (measured, not asserted):\n");
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let pair = |n| self.get("uncontended", n, "ns_per_pair");
        if let (Some(m), Some(f), Some(pl)) = (pair("mmpool"), pair("floor"), pair("ref-parking_lot")) {
            let _ = writeln!(out, "  uncontended pair through the C ABI <= 2x floor:      {:>6.2}x  {}", m / f, verdict(m <= 2.0 * f));
            let _ = writeln!(out, "  ... and no slower than ref-parking_lot:              {:>6.2}x  {}", pl / m, verdict(pl >= m));
        }
        for &t in &self.threads {
            if let Some((m, n, b)) = self.against_best("contended", t) {
                let _ = writeln!(out, "  contended, {t:>2} threads, >= best baseline ({n:<15}) {:>6.2}x  {}", m / b, verdict(m >= b));
                self.against_fifo_peer(&mut out, "contended", t, n);
            }
        }
        for &(scenario, hold) in self.long_holds {
            for &t in &self.long_threads {
                if let Some((m, n, b)) = self.against_best(scenario, t) {
                    let what = format!("{}, {t:>2} threads, >= 0.97x best ({n})", hold.label());
                    let _ = writeln!(out, "  {what:<52} {:>6.2}x  {}", m / b, verdict(m >= 0.97 * b));
                    self.against_fifo_peer(&mut out, scenario, t, n);
                }
            }
        }
        if let Some(w) = self.get("wakeups", "mmpool", "futile_per_release") {
            let _ = writeln!(out, "  futile wake-ups per release = 0:                      {w:>6.2}   {}", verdict(w == 0.0));
        }
        if let (Some(g), Some(h)) = (self.get("starvation", "mmpool", "grant_ms_max"), self.get("starvation", "mmpool", "hold_ms")) {
            let _ = writeln!(out, "  90% request granted within 2x the small hold:         {:>6.2}x  {}", g / h, verdict(g <= 2.0 * h));
        } else if self.took_part("starvation", "mmpool") {
            let _ = writeln!(out, "  90% request granted within 2x the small hold:         not granted  MISSED");
        }
        out
    }

    /// Where the best baseline is not FIFO, mmpool against tokio's
    /// Semaphore, the FIFO baseline, in the same cell (a figure, not a goal).
    fn against_fifo_peer(&self, out: &mut String, scenario: &str, t: usize, best: &str) {
        let at = |n| self.get_at(scenario, n, Some(t), "ops_per_s");
        if let (false, Some(m), Some(f)) = (best == "tokio", at("mmpool"), at("tokio")) {
            let _ = writeln!(out, "  {:<52} {:>6.2}x", "    ... against tokio, FIFO like mmpool", m / f);
        }
    }

    /// mmpool's figure of `scenario` at `t` threads, and the best other
    /// implementation's name and figure.
    fn against_best(&self, scenario: &str, t: usize) -> Option<(f64, &'static str, f64)> {
        let best = self
            .names
            .iter()
            .filter(|&&n| n != "mmpool")
            .filter_map(|&n| self.get_at(scenario, n, Some(t), "ops_per_s").map(|v| (n, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some((self.get_at(scenario, "mmpool", Some(t), "ops_per_s")?, best.0, best.1))
    }

    pub fn json(&self) -> String {
        let mut out = String::from("{\n");
        let _ = writeln!(out, "  \"machine\": {{\"cpus\": {}, \"cpu\": {}}},", cpus(), quote(&cpu_model()));
        let _ = writeln!(out, "  \"build\": {},", quote(if cfg!(debug_assertions) { "debug" } else { "release" }));
        let _ = writeln!(out, "  \"mode\": {},", quote(if self.quick { "quick" } else { "full" }));
        let _ = writeln!(out, "  \"hold_us\": {},", self.hold_us);
        let list = |items: &[&str]| items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "  \"implementations\": [{}],", list(&self.names));
        let _ = writeln!(out, "  \"scenarios\": [{}],", list(&SCENARIOS));
        out.push_str("  \"rows\": [\n");
        for (i, r) in self.rows.iter().enumerate() {
            let count = r.count.map_or("null".to_string(), |c| c.to_string());
            let value = r.value.filter(|v| v.is_finite()).map_or("null".to_string(), |v| format!("{v}"));
            let _ = write!(
                out,
                "    {{\"scenario\": {}, \"implementation\": {}, \"count\": {count}, \"metric\": {}, \"value\": {value}}}",
                quote(r.scenario),
                quote(r.implementation),
                quote(r.metric)
            );
            out.push_str(if i + 1 < self.rows.len() { ",\n" } else { "\n" });
        }
        out.push_str("  ]\n}\n");
        out
    }
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
