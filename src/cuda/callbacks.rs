//! Allocator callbacks that libraries call with no way to pass a timeout or,
//! for PyTorch, to receive an error: nvJPEG and nvImageCodec (`dev_malloc` /
//! `dev_free`, returning 0 or a failure code) and PyTorch's pluggable
//! allocator (`alloc` returning a pointer, `free` returning nothing).
//!
//! Their wait in line is bounded by one process-wide timeout: `set_timeout`,
//! initially `MMPOOL_CUDA_TIMEOUT_MS` (milliseconds, or `forever`), else
//! [`DEFAULT_TIMEOUT_MS`]. A bound matters: a thread that holds device memory
//! and waits for more than is left could otherwise wait for itself forever.
//!
//! PyTorch (checked up to its 2.9 sources) does not check what the alloc
//! function returns: a NULL becomes a tensor without memory that faults on
//! first use, far from the cause. So a failed PyTorch allocation, by default,
//! logs the reason and aborts the process; [`TorchFailure::ReturnNull`] (or
//! `MMPOOL_TORCH_ON_FAILURE=null`) logs and returns NULL instead.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::log::{self, Level};
use crate::pool::{Error, Wait};

/// The callbacks' wait in line when nothing else is configured: one minute.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// Environment variable: the callbacks' wait in milliseconds, or `forever`.
pub const ENV_TIMEOUT: &str = "MMPOOL_CUDA_TIMEOUT_MS";

/// Environment variable: `abort` (default) or `null`, see [`TorchFailure`].
pub const ENV_TORCH_ON_FAILURE: &str = "MMPOOL_TORCH_ON_FAILURE";

/// What a PyTorch allocation that cannot be served does after logging why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TorchFailure {
    /// Abort the process: loud, at the cause, never a tensor without memory.
    Abort = 0,
    /// Return NULL (for callers that check it).
    ReturnNull = 1,
}

fn timeout_slot() -> &'static AtomicU64 {
    static SLOT: OnceLock<AtomicU64> = OnceLock::new();
    SLOT.get_or_init(|| {
        let ns = match std::env::var(ENV_TIMEOUT) {
            Ok(v) => parse_timeout_ms(&v).unwrap_or_else(|| {
                log::log(
                    Level::Warn,
                    &format!("{ENV_TIMEOUT}={v:?} is not a number of milliseconds or `forever`; using {DEFAULT_TIMEOUT_MS}"),
                );
                DEFAULT_TIMEOUT_MS * 1_000_000
            }),
            Err(_) => DEFAULT_TIMEOUT_MS * 1_000_000,
        };
        AtomicU64::new(ns)
    })
}

/// `ms` as nanoseconds (`u64::MAX` for `forever`), or `None` if malformed.
pub fn parse_timeout_ms(ms: &str) -> Option<u64> {
    let ms = ms.trim();
    if ms.eq_ignore_ascii_case("forever") || ms.eq_ignore_ascii_case("inf") {
        return Some(u64::MAX);
    }
    ms.parse::<u64>().ok().map(|ms| ms.saturating_mul(1_000_000))
}

/// The callbacks' wait in line, in nanoseconds (`u64::MAX`: no limit).
pub fn timeout_ns() -> u64 {
    timeout_slot().load(Ordering::Relaxed)
}

/// Sets the callbacks' wait in line, in nanoseconds (`u64::MAX`: no limit).
pub fn set_timeout_ns(ns: u64) {
    timeout_slot().store(ns, Ordering::Relaxed);
}

/// A new wait of the configured length, starting now.
pub fn wait() -> Wait {
    Wait::timeout_ns(timeout_ns())
}

fn torch_slot() -> &'static AtomicU8 {
    static SLOT: OnceLock<AtomicU8> = OnceLock::new();
    SLOT.get_or_init(|| {
        let mode = match std::env::var(ENV_TORCH_ON_FAILURE).as_deref().map(str::trim) {
            Ok("null") => TorchFailure::ReturnNull,
            Ok("abort") | Err(_) => TorchFailure::Abort,
            Ok(other) => {
                log::log(
                    Level::Warn,
                    &format!("{ENV_TORCH_ON_FAILURE}={other:?} is neither `abort` nor `null`; using `abort`"),
                );
                TorchFailure::Abort
            }
        };
        AtomicU8::new(mode as u8)
    })
}

/// What a failed PyTorch allocation does.
pub fn torch_failure() -> TorchFailure {
    match torch_slot().load(Ordering::Relaxed) {
        1 => TorchFailure::ReturnNull,
        _ => TorchFailure::Abort,
    }
}

pub fn set_torch_failure(mode: TorchFailure) {
    torch_slot().store(mode as u8, Ordering::Relaxed);
}

/// Checks PyTorch's signed size: `Ok` for 0 and up.
pub fn torch_size(size: isize) -> Result<usize, Error> {
    usize::try_from(size).map_err(|_| Error::InvalidArgument(format!("size {size} is negative")))
}

/// Logs why a nvJPEG / nvImageCodec callback failed: the library passes on
/// only a status of its own, so the reason would otherwise be lost.
pub fn report_device_callback_failure(message: &str) {
    log::log(Level::Warn, message);
}

/// A PyTorch allocation could not be served: logs `message` and, per
/// [`torch_failure`], aborts or returns (and the caller returns NULL).
pub fn torch_alloc_failed(message: &str) {
    log::log(Level::Error, message);
    if torch_failure() == TorchFailure::Abort {
        // Written to stderr directly as well: the log may be filtered or sent
        // to a sink that is never flushed before the abort.
        eprintln!(
            "mmpool: aborting: {message}. PyTorch cannot be told that an allocation failed (a NULL \
             return becomes a tensor without memory); set {ENV_TORCH_ON_FAILURE}=null to return \
             NULL instead, or raise the budget or {ENV_TIMEOUT}."
        );
        std::process::abort();
    }
}

/// A PyTorch free failed: it has no way to hear of it, so it is logged.
pub fn torch_free_failed(message: &str) {
    log::log(Level::Error, message);
}
