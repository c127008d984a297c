//! mmpool: a byte budget for GPU memory, shared by every language in a process.
//!
//! Decoders acquire the bytes they are about to allocate on the device and
//! release them after freeing; when the budget is spent they wait in line,
//! strictly first come, first served. The C ABI lives in [`ffi`] (and the
//! generated `include/mmpool.h`); Rust callers use [`pool`] directly.

pub mod log;
pub mod pool;

#[cfg(not(loom))]
pub mod cuda;
#[cfg(not(loom))]
pub mod ffi;

pub use pool::placement;
pub use pool::{Decision, Error, Event, Lease, Notifier, Pool, Stats, Ticket, Wait};
