//! Process-wide exports: the global pool, logging, version and error text.

use std::ffi::{c_char, c_int, c_void, CString};

use super::boundary::{last_error_ptr, out};
use super::handle::{self, mmpool};
use super::status::mmpool_status;
use crate::log::{self, Level};
use crate::pool;

/// The global pool with a NEW reference (drop it with `mmpool_unref`), or NULL
/// when gating is disabled.
///
/// Unless `mmpool_set_global` or `mmpool_init_global` ran first, the first call
/// reads the environment, so that processes share one budget without code:
/// - `MMPOOL_SHARED_NAME`: attach this process to the shared pool of that
///   name (see `mmpool_open_shared`);
/// - `MMPOOL_SHARED_TOTAL_BYTES` (bytes) or `MMPOOL_SHARED_GIB` (GiB,
///   `floor(gib * 2^30)` bytes): its total; with one set, the pool is created
///   if missing, and an existing pool must have this total; with neither, the
///   pool must exist and its total is accepted;
/// - `MMPOOL_SHARED_GROUP=1`: create it with mode 0660 for the group.
///
/// If the pool cannot be opened, an error is logged and NULL returned.
#[no_mangle]
pub extern "C" fn mmpool_global() -> *mut mmpool {
    boundary!("mmpool_global", std::ptr::null_mut() => {
        Ok(pool::global().map_or(std::ptr::null_mut(), handle::into_raw))
    })
}

/// Installs `pool` as the global pool; the slot takes its own reference (the
/// caller keeps its own). NULL disables gating.
///
/// Errors: `INVALID_ARGUMENT` (a handle that is not a live pool).
#[no_mangle]
pub extern "C" fn mmpool_set_global(pool: *mut mmpool) -> mmpool_status {
    boundary!("mmpool_set_global", {
        // SAFETY: the C contract: `pool` is NULL or a held handle.
        let pool = unsafe { handle::clone_arc(pool) }?;
        pool::set_global(pool);
        Ok(())
    })
}

/// Creates and installs the global pool from a budget of `budget_gib` GiB split
/// evenly over `api_process_count` processes: this process gets
/// `floor(budget_gib * 2^30) / api_process_count` bytes, and an info log line
/// says so. `budget_gib <= 0` disables gating and stores NULL. `out_pool` may
/// be NULL; otherwise it receives a NEW reference (or NULL when disabled).
///
/// Errors: `INVALID_ARGUMENT` (NaN or infinite budget, process count 0, a
/// share below one byte or a budget above 2^60 bytes).
#[no_mangle]
pub extern "C" fn mmpool_init_global(
    budget_gib: f64,
    api_process_count: u32,
    out_pool: *mut *mut mmpool,
) -> mmpool_status {
    boundary!("mmpool_init_global", {
        let installed = pool::init_global(budget_gib, api_process_count)?;
        if !out_pool.is_null() {
            // SAFETY: the C contract: a non-NULL `out_pool` is writable.
            let out_pool = unsafe { out(out_pool, "out_pool") }?;
            *out_pool = installed.map_or(std::ptr::null_mut(), handle::into_raw);
        }
        Ok(())
    })
}

/// The name of a status code, such as `"MMPOOL_ERR_TIMEOUT"`. Static, never
/// NULL; `"MMPOOL_ERR_UNKNOWN"` for a value that is no status.
#[no_mangle]
pub extern "C" fn mmpool_status_str(status: StatusArg) -> *const c_char {
    mmpool_status::name_of(status.0).as_ptr()
}

/// A status code as C passes it: any `int`, so that a value outside the enum
/// is answered, not undefined behaviour. Spelled `mmpool_status` in the header.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct StatusArg(pub c_int);

/// This thread's last failure, in words, such as "mmpool_acquire: a request
/// for 9 bytes exceeds the pool's total of 8 bytes ...". Never NULL; empty
/// before the first failure. Valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn mmpool_last_error() -> *const c_char {
    last_error_ptr()
}

/// The library's version, such as `"0.1.0"`: the same as the header's
/// `MMPOOL_VERSION_*` macros when header and library match.
#[no_mangle]
pub extern "C" fn mmpool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Severity of a log line.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mmpool_log_level {
    MMPOOL_LOG_ERROR = 1,
    MMPOOL_LOG_WARN = 2,
    MMPOOL_LOG_INFO = 3,
    MMPOOL_LOG_DEBUG = 4,
}

/// Receives library log lines. `message` is valid only during the call. It may
/// be called from any thread, also while mmpool holds internal locks: it must
/// not call back into mmpool.
pub type mmpool_log_fn =
    Option<unsafe extern "C" fn(level: mmpool_log_level, message: *const c_char, user_data: *mut c_void)>;

struct CSink {
    callback: unsafe extern "C" fn(mmpool_log_level, *const c_char, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: the C contract of mmpool_set_log_callback: the callback and its
// user_data may be used from any thread.
unsafe impl Send for CSink {}
// SAFETY: as above.
unsafe impl Sync for CSink {}

impl CSink {
    fn emit(&self, level: Level, message: &str) {
        let level = match level {
            Level::Error => mmpool_log_level::MMPOOL_LOG_ERROR,
            Level::Warn => mmpool_log_level::MMPOOL_LOG_WARN,
            Level::Info => mmpool_log_level::MMPOOL_LOG_INFO,
            Level::Debug => mmpool_log_level::MMPOOL_LOG_DEBUG,
        };
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the callback was given by the caller for exactly this use;
        // the message is a valid C string for the duration of the call.
        unsafe { (self.callback)(level, text.as_ptr(), self.user_data) }
    }
}

/// Sends library log lines to `callback(level, message, user_data)` instead of
/// stderr; NULL restores stderr. `MMPOOL_LOG` (`off|error|warn|info|debug`)
/// sets the most detailed level emitted (default: warn to stderr, info to a
/// callback).
#[no_mangle]
pub extern "C" fn mmpool_set_log_callback(callback: mmpool_log_fn, user_data: *mut c_void) -> mmpool_status {
    boundary!("mmpool_set_log_callback", {
        let sink: Option<log::Sink> = callback.map(|callback| {
            let sink = CSink { callback, user_data };
            Box::new(move |level: Level, message: &str| sink.emit(level, message)) as log::Sink
        });
        log::set_sink(sink);
        Ok(())
    })
}
