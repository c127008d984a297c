//! What can go wrong in the engine, in words a caller can act on.

use std::fmt;

/// The reasons an engine call fails. Each maps to exactly one C status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An argument is out of range or malformed; the text says which and why.
    InvalidArgument(String),
    /// The request is larger than the pool's total: it could never be granted.
    ExceedsCapacity { requested: u64, total: u64 },
    /// The wait ran out before the bytes were granted; nothing was reserved.
    Timeout { requested: u64 },
    /// A try-once request could not be granted right now; nothing was reserved.
    WouldBlock { requested: u64, available: u64, queued: bool },
    /// The pool was closed before or during the wait.
    Closed,
    /// A lease or ticket id this pool never issued, or one no longer usable.
    InvalidLease(String),
    /// An operating-system call failed; the text names it and the error.
    System(String),
    /// The CUDA runtime is missing or one of its calls failed.
    Cuda(String),
    /// A bug was caught; the pool's state is intact.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::ExceedsCapacity { requested, total } => write!(
                f,
                "a request for {requested} bytes exceeds the pool's total of {total} bytes \
                 and could never be granted; raise the budget or split the request"
            ),
            Error::Timeout { requested } => write!(
                f,
                "timed out waiting for {requested} bytes; nothing was reserved"
            ),
            Error::WouldBlock { requested, available, queued } => {
                if *queued {
                    write!(
                        f,
                        "{requested} bytes cannot be granted now: earlier requests are waiting \
                         in line (first come, first served); nothing was reserved"
                    )
                } else {
                    write!(
                        f,
                        "{requested} bytes cannot be granted now: only {available} bytes are \
                         available; nothing was reserved"
                    )
                }
            }
            Error::Closed => write!(f, "the pool is closed; no new grants are made"),
            Error::InvalidLease(why) => write!(f, "invalid lease: {why}"),
            Error::System(why) => write!(f, "system error: {why}"),
            Error::Cuda(why) => write!(f, "CUDA error: {why}"),
            Error::Internal(why) => write!(f, "internal error (a bug in mmpool; state is intact): {why}"),
        }
    }
}

impl std::error::Error for Error {}
