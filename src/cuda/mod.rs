//! Gated CUDA allocations: the bytes are acquired from a pool before the
//! device memory is allocated and released after it is freed.
//!
//! * [`runtime`]: libcudart, loaded at run time with dlopen (never linked).
//! * [`registry`]: which pointer is paid for by which lease.
//! * [`gated`]: the gated malloc and free, immediate or stream-ordered.
//! * [`callbacks`]: settings and failure handling for the allocator hooks of
//!   nvJPEG, nvImageCodec and PyTorch, which cannot pass a timeout or (PyTorch)
//!   receive an error.

pub mod callbacks;
pub mod gated;
pub mod registry;
pub mod runtime;

pub use gated::{free, malloc, Order};
pub use runtime::{runtime, Runtime, Stream};
