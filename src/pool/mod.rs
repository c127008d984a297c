//! The engine: a byte budget that grants strictly first come, first served.
//!
//! Nothing here knows about C; `crate::ffi` translates. [`Pool`] is a front
//! over two backends: `local` (threads of one process; see it for the
//! algorithm and `state` for the lock-free word behind the fast path) and
//! [`shared`] (one named pool for every process on the host). A [`Notifier`]
//! turns decided tickets into events behind one pollable fd.

mod bottleneck;
mod error;
mod front;
#[cfg(not(loom))]
mod global;
pub mod histogram;
mod handoff;
mod lease;
mod local;
mod notify;
pub mod placement;
pub mod reservations;
#[cfg(not(loom))]
pub mod shared;
mod slots;
mod state;
mod stats;
pub mod sync;
mod waitlist;

pub use error::Error;
pub use front::{Pool, PoolCore};
pub use handoff::{HandoffInfo, HandoffStats, Token, MAX_PARTS, TOKEN_PLACED};
#[cfg(not(loom))]
pub use global::{global, init_global, set_global, split_budget};
pub use lease::{Admission, Lease, Ticket};
pub use local::{Wait, DEFAULT_ALIGNMENT};
pub use notify::{Decision, Event, Notifier};
pub use state::MAX_TOTAL;
pub use stats::Stats;
