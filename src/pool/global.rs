//! The process-wide pool that every language binding in the process shares.
//!
//! Unless the program installs one first, the first use of the global pool
//! reads the environment: `MMPOOL_SHARED_NAME` attaches the process to that
//! shared pool (see [`ENV_NAME`] and the variables after it).

use std::sync::atomic::{AtomicBool, Ordering};

use super::error::Error;
use super::front::Pool;
use super::shared::{Limits, OpenFlags, SharedOptions};
use super::sync::Arc;
use crate::log::{self, Level};

static GLOBAL: parking_lot::Mutex<Option<Arc<Pool>>> = parking_lot::Mutex::new(None);
/// Whether the environment was consulted (or an explicit choice made it moot).
static ENV_DONE: AtomicBool = AtomicBool::new(false);

/// Name of the shared pool the global pool attaches to.
pub(crate) const ENV_NAME: &str = "MMPOOL_SHARED_NAME";
/// Its total in bytes; given (or `ENV_GIB`), the pool is created if missing.
pub(crate) const ENV_TOTAL_BYTES: &str = "MMPOOL_SHARED_TOTAL_BYTES";
/// Its total in GiB (`floor(gib * 2^30)` bytes), when `ENV_TOTAL_BYTES` is unset.
pub(crate) const ENV_GIB: &str = "MMPOOL_SHARED_GIB";
/// `1` creates the segment with mode 0660 and accepts one of the group's.
pub(crate) const ENV_GROUP: &str = "MMPOOL_SHARED_GROUP";

/// The global pool, if one is installed (a new reference). The first call,
/// when nothing was installed before, attaches to the shared pool the
/// environment names, if any.
pub fn global() -> Option<Arc<Pool>> {
    let mut slot = GLOBAL.lock();
    if !ENV_DONE.swap(true, Ordering::AcqRel) && slot.is_none() {
        *slot = from_env();
    }
    slot.clone()
}

/// Installs `pool` as the global pool (`None` disables gating). The slot keeps
/// its own reference; the one it replaces is dropped outside the lock. An
/// explicit choice overrides the environment.
pub fn set_global(pool: Option<Arc<Pool>>) {
    ENV_DONE.store(true, Ordering::Release);
    let old = std::mem::replace(&mut *GLOBAL.lock(), pool);
    drop(old);
}

/// The total the environment asks for: `Ok(0)` when it names none.
fn env_total() -> Result<u64, String> {
    if let Ok(v) = std::env::var(ENV_TOTAL_BYTES) {
        return v.trim().parse::<u64>().map_err(|e| format!("{ENV_TOTAL_BYTES}={v:?}: {e}"));
    }
    if let Ok(v) = std::env::var(ENV_GIB) {
        let gib: f64 = v.trim().parse().map_err(|e| format!("{ENV_GIB}={v:?}: {e}"))?;
        if !gib.is_finite() || gib <= 0.0 || gib * (1u64 << 30) as f64 > super::state::MAX_TOTAL as f64 {
            return Err(format!("{ENV_GIB}={v:?} must be a positive number of GiB up to 2^30"));
        }
        return Ok((gib * (1u64 << 30) as f64).floor() as u64);
    }
    Ok(0)
}

/// The shared pool `MMPOOL_SHARED_NAME` names, attached; `None` (with an
/// error logged) when it is unset or cannot be opened.
fn from_env() -> Option<Arc<Pool>> {
    let name = std::env::var(ENV_NAME).ok().filter(|n| !n.is_empty())?;
    let opened = env_total().map_err(Error::InvalidArgument).and_then(|total| {
        let group = std::env::var(ENV_GROUP).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let flags = OpenFlags { create: total != 0, exclusive: false, group };
        let limits = Limits::from_env()?;
        Pool::open_shared_with(&name, &SharedOptions { total_bytes: total, flags, limits, alignment: 0 })
    });
    match opened {
        Ok(pool) => {
            log::log(
                Level::Info,
                &format!("global pool: shared pool {name:?} of {} bytes ({ENV_NAME})", pool.total_bytes()),
            );
            Some(pool)
        }
        Err(e) => {
            log::log(Level::Error, &format!("global pool disabled: {ENV_NAME}={name:?}: {e}"));
            None
        }
    }
}

/// This process's share of a budget of `gib` GiB split over `processes`
/// processes: `floor(gib * 2^30) / processes` bytes. `Ok(None)` when `gib <= 0`
/// (gating disabled).
pub fn split_budget(gib: f64, processes: u32) -> Result<Option<u64>, Error> {
    if !gib.is_finite() {
        return Err(Error::InvalidArgument(format!("the budget must be a finite number of GiB, got {gib}")));
    }
    if gib <= 0.0 {
        return Ok(None);
    }
    if processes == 0 {
        return Err(Error::InvalidArgument("api_process_count must be at least 1, got 0".into()));
    }
    let bytes = (gib * (1u64 << 30) as f64).floor();
    if bytes > super::state::MAX_TOTAL as f64 {
        return Err(Error::InvalidArgument(format!("a budget of {gib} GiB is above the 2^60-byte maximum")));
    }
    let share = bytes as u64 / u64::from(processes);
    if share == 0 {
        return Err(Error::InvalidArgument(format!(
            "{gib} GiB split over {processes} processes leaves less than one byte each"
        )));
    }
    Ok(Some(share))
}

/// Creates and installs the global pool from a GiB budget split over
/// `processes` API processes, and logs the result. `Ok(None)` when `gib <= 0`:
/// gating is disabled and the slot emptied.
pub fn init_global(gib: f64, processes: u32) -> Result<Option<Arc<Pool>>, Error> {
    let Some(bytes) = split_budget(gib, processes)? else {
        set_global(None);
        log::log(Level::Info, "global pool disabled (budget <= 0 GiB)");
        return Ok(None);
    };
    let pool = Pool::new(bytes)?;
    set_global(Some(Arc::clone(&pool)));
    log::log(
        Level::Info,
        &format!(
            "global pool of {bytes} bytes for this process ({gib:.2} GiB budget across {processes} process(es))"
        ),
    );
    Ok(Some(pool))
}
