//! Loud when the budget is the bottleneck: a warning when a request waited in
//! line longer than a threshold before its grant, or timed out there, naming
//! the pool, the request and the bytes held, at most one line per pool
//! per interval (the lines held back are counted in the next one).
//!
//! Both backends call [`Loud::after_wait`] from the waiting thread once its
//! wait has an outcome and it holds no lock (a log sink may call back into
//! the embedding program, Python's logging say).
//!
//! `MMPOOL_SLOW_WAIT_MS` sets the threshold (default 1000; `off` for no
//! lines); `MMPOOL_SLOW_WAIT_LOG_INTERVAL_MS` the interval (default 10000).
//! Both are read once, on the first wait that has an outcome.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use super::error::Error;
use crate::log::{self, Level};

/// The threshold and the interval, in nanoseconds; `None` for no lines.
fn settings() -> Option<(u64, u64)> {
    static SETTINGS: OnceLock<Option<(u64, u64)>> = OnceLock::new();
    *SETTINGS.get_or_init(|| {
        let ms = |name: &str, default: u64| -> Option<u64> {
            match std::env::var(name) {
                Err(_) => Some(default),
                Ok(v) if v.trim().eq_ignore_ascii_case("off") => None,
                Ok(v) => Some(v.trim().parse().unwrap_or(default)),
            }
        };
        let threshold = ms("MMPOOL_SLOW_WAIT_MS", 1000)?;
        let interval = ms("MMPOOL_SLOW_WAIT_LOG_INTERVAL_MS", 10_000).unwrap_or(10_000);
        Some((threshold.saturating_mul(1_000_000), interval.saturating_mul(1_000_000)))
    })
}

/// Nanoseconds since the first call, never 0 (0 means "no line yet").
fn clock_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    (start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64).max(1)
}

/// What the holders had when the line was written (after the grant, for a
/// grant).
pub(crate) struct Scene {
    /// How the pool is named in the line (`pool "decode"`, `pool 0x5f..`).
    pub(crate) pool: String,
    pub(crate) in_use_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) waiters: u64,
}

/// One pool's rate limit.
#[derive(Default)]
pub(crate) struct Loud {
    last_line_ns: AtomicU64,
    held_back: AtomicU64,
}

impl Loud {
    /// After a wait in line that started at `joined_ns_ago` nanoseconds ago
    /// (`None`: the request was granted before it slept) and ended with
    /// `outcome` (the granted bytes, or the error): writes the line when the
    /// wait was too long or ran out, unless the pool wrote one within the
    /// interval. `scene` is read only when a line is written.
    pub(crate) fn after_wait(&self, outcome: &Result<u64, Error>, waited_ns: Option<u64>, scene: impl FnOnce() -> Scene) {
        // Model checking explores the engine's interleavings, not its logging.
        if cfg!(loom) {
            return;
        }
        let Some((threshold, interval)) = settings() else { return };
        let (what, nbytes, waited) = match (outcome, waited_ns) {
            (Ok(n), Some(w)) if w >= threshold => ("waited", *n, w),
            (Err(Error::Timeout { requested }), w) => ("timed out", *requested, w.unwrap_or(0)),
            _ => return,
        };
        let now = clock_ns();
        let last = self.last_line_ns.load(Ordering::Relaxed);
        if (last != 0 && now.saturating_sub(last) < interval)
            || self.last_line_ns.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let held_back = self.held_back.swap(0, Ordering::Relaxed);
        log::log(Level::Warn, &line(what, nbytes, waited, threshold, held_back, &scene()));
    }
}

fn line(what: &str, nbytes: u64, waited_ns: u64, threshold_ns: u64, held_back: u64, s: &Scene) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let (after, held) = if what == "waited" {
        let after = format!("waited {:.1} ms in line before its grant (over {:.0} ms)", ms(waited_ns), ms(threshold_ns));
        (after, "in use with it")
    } else {
        (format!("timed out after {:.1} ms in line", ms(waited_ns)), "held")
    };
    let mut out = format!(
        "{}: a request for {nbytes} bytes {after}; the budget is the bottleneck: {} of {} bytes {held}, {} requests waiting",
        s.pool, s.in_use_bytes, s.total_bytes, s.waiters
    );
    if held_back > 0 {
        out += &format!(" ({held_back} more slow waits or timeouts since the last line)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_pool_the_request_and_the_holders() {
        let s = Scene { pool: "pool \"decode\"".into(), in_use_bytes: 900, total_bytes: 1000, waiters: 2 };
        assert_eq!(
            line("waited", 200, 1_500_000_000, 1_000_000_000, 0, &s),
            "pool \"decode\": a request for 200 bytes waited 1500.0 ms in line before its grant (over 1000 ms); \
             the budget is the bottleneck: 900 of 1000 bytes in use with it, 2 requests waiting"
        );
        assert!(line("timed out", 5, 20_000_000, 1, 4, &s)
            .starts_with("pool \"decode\": a request for 5 bytes timed out after 20.0 ms in line;"));
        assert!(line("timed out", 5, 20_000_000, 1, 4, &s).ends_with("(4 more slow waits or timeouts since the last line)"));
    }
}
