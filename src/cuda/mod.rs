//! Gated CUDA allocations: the bytes are acquired from a pool before the
//! device memory is allocated and released after it is freed.
//!
//! * [`runtime`]: libcudart, loaded at run time with dlopen (never linked).
//! * [`registry`]: which pointer is paid for by which lease.
//! * [`gated`]: the gated malloc and free, immediate or stream-ordered.
//! * [`arena`]: one allocation of a placed pool's total, device or pinned
//!   host memory, that leases become pointers into; exported to and opened
//!   in other processes; gated allocations draw from it when attached.
//! * [`callbacks`]: settings and failure handling for the allocator hooks of
//!   nvJPEG, nvImageCodec and PyTorch, which cannot pass a timeout or (PyTorch)
//!   receive an error.

pub mod arena;
pub mod callbacks;
pub mod gated;
pub mod registry;
pub mod runtime;

pub use gated::{free, malloc, Order};
pub use runtime::{runtime, Runtime, Stream};
