//! The engine: a byte budget that grants strictly first come, first served.
//!
//! Nothing here knows about C; `crate::ffi` translates. See `local` for the
//! algorithm and `state` for the lock-free word behind the fast path.

mod error;
#[cfg(not(loom))]
mod global;
mod lease;
mod local;
mod state;
mod stats;
pub mod sync;
mod waitlist;

pub use error::Error;
#[cfg(not(loom))]
pub use global::{global, init_global, set_global, split_budget};
pub use lease::{Lease, Ticket};
pub use local::{Pool, Wait};
pub use state::MAX_TOTAL;
pub use stats::Stats;
