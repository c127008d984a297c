//! Library log lines: to a sink the embedding program installs, else stderr.
//!
//! `MMPOOL_LOG` (`off|error|warn|info|debug`) sets the most detailed level that
//! is emitted. Unset, stderr gets warnings and errors, and an installed sink
//! gets info too (a binding forwards it to its own logging, which filters again).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use parking_lot::RwLock;

/// Severity of a log line; lower is more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Where log lines go when installed.
pub type Sink = Box<dyn Fn(Level, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static HAS_SINK: AtomicU8 = AtomicU8::new(0);

/// The `MMPOOL_LOG` setting: `Some(0)` for off, `Some(level)`, or `None` unset.
fn env_level() -> Option<u8> {
    static LEVEL: OnceLock<Option<u8>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let v = std::env::var("MMPOOL_LOG").ok()?;
        Some(match v.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "0" => 0,
            "error" => Level::Error as u8,
            "warn" | "warning" => Level::Warn as u8,
            "info" => Level::Info as u8,
            "debug" | "trace" => Level::Debug as u8,
            _ => Level::Warn as u8,
        })
    })
}

/// Installs (or with `None`, removes) the sink for log lines.
pub fn set_sink(sink: Option<Sink>) {
    let mut slot = SINK.write();
    HAS_SINK.store(u8::from(sink.is_some()), Ordering::Release);
    *slot = sink;
}

/// Whether a line at `level` would go anywhere.
pub fn enabled(level: Level) -> bool {
    let has_sink = HAS_SINK.load(Ordering::Acquire) != 0;
    let max = env_level().unwrap_or(if has_sink { Level::Info as u8 } else { Level::Warn as u8 });
    (level as u8) <= max
}

/// Emits one log line.
pub fn log(level: Level, message: &str) {
    if !enabled(level) {
        return;
    }
    let sink = SINK.read();
    match sink.as_ref() {
        Some(f) => f(level, message),
        None => eprintln!("mmpool {}: {message}", level.name()),
    }
}
