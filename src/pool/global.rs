//! The process-wide pool that every language binding in the process shares.

use super::error::Error;
use super::front::Pool;
use super::sync::Arc;
use crate::log::{self, Level};

static GLOBAL: parking_lot::Mutex<Option<Arc<Pool>>> = parking_lot::Mutex::new(None);

/// The global pool, if one is installed (a new reference).
pub fn global() -> Option<Arc<Pool>> {
    GLOBAL.lock().clone()
}

/// Installs `pool` as the global pool (`None` disables gating). The slot keeps
/// its own reference; the one it replaces is dropped outside the lock.
pub fn set_global(pool: Option<Arc<Pool>>) {
    let old = std::mem::replace(&mut *GLOBAL.lock(), pool);
    drop(old);
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
