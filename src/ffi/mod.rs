//! The C ABI. Each export validates its arguments, runs inside the boundary
//! (no panic crosses it; failures set `mmpool_last_error`), calls the engine
//! and writes its out-parameters only on success. No pool logic lives here.
//!
//! `include/mmpool.h` is generated from this module by cbindgen (see build.rs).

#![allow(non_camel_case_types)]
// The exports take raw pointers from C by design; each one is checked for NULL
// at the boundary and otherwise trusted per the contract in the header docs.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[macro_use]
pub mod boundary;
pub mod cuda;
pub mod handoff;
pub mod handle;
pub mod notify;
pub mod histograms;
pub mod placed;
pub mod pool;
pub mod process;
pub mod reservations;
pub mod shared;
pub(crate) mod sized;
pub mod sliced_wait;
pub mod split;
pub mod status;
pub mod types;

pub use handle::mmpool;
pub use notify::{mmpool_event, mmpool_notifier};
pub use histograms::mmpool_histograms;
pub use status::mmpool_status;
pub use types::{mmpool_handoff_stats, mmpool_handoff_token, mmpool_lease, mmpool_stats, mmpool_ticket};
