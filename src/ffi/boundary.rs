//! The boundary every export runs inside: panics are caught, NULL pointers are
//! refused, and each failure leaves its message in a thread-local slot that
//! `mmpool_last_error()` returns.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::mmpool_status;
use crate::pool::Error;

/// Why an export failed: a NULL pointer it refused, or the engine's error.
#[derive(Debug)]
pub enum Failure {
    Null(&'static str),
    Engine(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(e)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}").replace('\0', " ");
    let text = CString::new(text).unwrap_or_default();
    // The slot may be gone while the thread is being torn down; then the
    // message has nowhere to go and is dropped.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

/// This thread's last failure message (empty before the first failure).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Records `failure` for `function` and returns its status code.
pub(crate) fn fail(function: &str, failure: &Failure) -> mmpool_status {
    match failure {
        Failure::Null(arg) => {
            set_last_error(function, &format!("`{arg}` must not be NULL"));
            mmpool_status::MMPOOL_ERR_NULL_ARGUMENT
        }
        Failure::Engine(e) => {
            set_last_error(function, &e.to_string());
            mmpool_status::of(e)
        }
    }
}

/// Runs an export's body: its result as a status, a panic as `INTERNAL`.
pub(crate) fn run(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> mmpool_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => mmpool_status::MMPOOL_OK,
        Ok(Err(failure)) => fail(function, &failure),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail(function, &Failure::Engine(Error::Internal(what)))
        }
    }
}

/// Like [`run`] for exports that return a value: `fallback` on any failure.
pub(crate) fn run_value<T>(function: &str, fallback: T, body: impl FnOnce() -> Result<T, Failure>) -> T {
    let mut out = None;
    run(function, || {
        out = Some(body()?);
        Ok(())
    });
    out.unwrap_or(fallback)
}

/// Wraps an export's body: `boundary!("name", { ... Ok(()) })` returns an
/// `mmpool_status`; `boundary!("name", fallback => { ... Ok(value) })` returns
/// the value, or `fallback` on failure.
macro_rules! boundary {
    ($name:expr, $fallback:expr => $body:block) => {
        $crate::ffi::boundary::run_value($name, $fallback, || -> Result<_, $crate::ffi::boundary::Failure> { $body })
    };
    ($name:expr, $body:block) => {
        $crate::ffi::boundary::run($name, || -> Result<(), $crate::ffi::boundary::Failure> { $body })
    };
}

/// Turns a pointer argument into a reference, refusing NULL.
///
/// # Safety
/// A non-NULL `ptr` must be valid for reads (and writes through `&mut`) of a
/// `T` for the duration of the call, as the C API documents for each argument.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &'static str) -> Result<&'a T, Failure> {
    // SAFETY: the caller's contract above; NULL is refused here.
    unsafe { ptr.as_ref() }.ok_or(Failure::Null(name))
}

/// Like [`arg`] for an out-parameter.
///
/// # Safety
/// As for [`arg`], valid for writes.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, name: &'static str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller's contract above; NULL is refused here.
    unsafe { ptr.as_mut() }.ok_or(Failure::Null(name))
}

/// A NUL-terminated string argument as UTF-8, refusing NULL and other bytes.
///
/// # Safety
/// A non-NULL `ptr` is a NUL-terminated string that lives for the call.
pub(crate) unsafe fn utf8_arg<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a str, Failure> {
    // SAFETY: the caller's contract; NULL is refused here.
    let first = unsafe { arg(ptr, name) }?;
    // SAFETY: the caller's contract: NUL-terminated.
    let text = unsafe { std::ffi::CStr::from_ptr(first) };
    text.to_str().map_err(|_| crate::pool::Error::InvalidArgument(format!("{name} is not UTF-8")).into())
}
