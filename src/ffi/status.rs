//! Status codes and their meaning.

use crate::pool::Error;

/// The result of every fallible mmpool function. `MMPOOL_OK` is 0; every other
/// value is a failure, after which `mmpool_last_error()` says what happened on
/// this thread and no out-parameter was written.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mmpool_status {
    /// Success.
    MMPOOL_OK = 0,
    /// A required pointer was NULL.
    MMPOOL_ERR_NULL_ARGUMENT = 1,
    /// Total 0, a NaN or infinite budget, process count 0, bad flags or name,
    /// a stats struct of unknown size, or a handle that is not a live pool.
    MMPOOL_ERR_INVALID_ARGUMENT = 2,
    /// The request is larger than the pool's total and can never be granted;
    /// nothing was reserved.
    MMPOOL_ERR_EXCEEDS_CAPACITY = 3,
    /// The wait ran out; nothing was reserved.
    MMPOOL_ERR_TIMEOUT = 4,
    /// try: not grantable right now (too few bytes, or others wait in line);
    /// nothing was reserved.
    MMPOOL_ERR_WOULD_BLOCK = 5,
    /// The pool was closed, before or during the wait.
    MMPOOL_ERR_CLOSED = 6,
    /// A lease or ticket id this pool never issued (another pool's too), or a
    /// ticket that was already redeemed or cancelled.
    MMPOOL_ERR_INVALID_LEASE = 7,
    /// An operating-system call failed; `mmpool_last_error()` says which.
    MMPOOL_ERR_SYSTEM = 8,
    /// The CUDA runtime is missing or one of its calls failed.
    MMPOOL_ERR_CUDA = 9,
    /// A bug was caught at the boundary; the pool's state is intact.
    MMPOOL_ERR_INTERNAL = 10,
}

impl mmpool_status {
    pub(crate) fn of(error: &Error) -> Self {
        use mmpool_status::*;
        match error {
            Error::InvalidArgument(_) => MMPOOL_ERR_INVALID_ARGUMENT,
            Error::ExceedsCapacity { .. } => MMPOOL_ERR_EXCEEDS_CAPACITY,
            Error::Timeout { .. } => MMPOOL_ERR_TIMEOUT,
            Error::WouldBlock { .. } => MMPOOL_ERR_WOULD_BLOCK,
            Error::Closed => MMPOOL_ERR_CLOSED,
            Error::InvalidLease(_) => MMPOOL_ERR_INVALID_LEASE,
            Error::System(_) => MMPOOL_ERR_SYSTEM,
            Error::Cuda(_) => MMPOOL_ERR_CUDA,
            Error::Internal(_) => MMPOOL_ERR_INTERNAL,
        }
    }

    /// The code's name as written in C, for any integer a caller may pass.
    pub(crate) fn name_of(code: i32) -> &'static std::ffi::CStr {
        match code {
            0 => c"MMPOOL_OK",
            1 => c"MMPOOL_ERR_NULL_ARGUMENT",
            2 => c"MMPOOL_ERR_INVALID_ARGUMENT",
            3 => c"MMPOOL_ERR_EXCEEDS_CAPACITY",
            4 => c"MMPOOL_ERR_TIMEOUT",
            5 => c"MMPOOL_ERR_WOULD_BLOCK",
            6 => c"MMPOOL_ERR_CLOSED",
            7 => c"MMPOOL_ERR_INVALID_LEASE",
            8 => c"MMPOOL_ERR_SYSTEM",
            9 => c"MMPOOL_ERR_CUDA",
            10 => c"MMPOOL_ERR_INTERNAL",
            _ => c"MMPOOL_ERR_UNKNOWN",
        }
    }
}
