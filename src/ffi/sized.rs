//! Out-structs that begin with their own size (`mmpool_stats`,
//! `mmpool_histograms`): the caller sets `size` to its `sizeof`, the library
//! writes the fields that fit and sets `size` to the bytes written, so such a
//! struct can grow at its end without breaking callers built against an
//! older header.

use super::boundary::{arg, Failure};
use crate::pool::Error;

/// Writes the leading bytes of `value` that fit in the caller's `out->size`.
///
/// # Safety
/// `T` is `repr(C)`, starts with a `u64` size and holds only `u64`s;
/// `out` is NULL or points to at least `out->size` writable bytes (the C
/// contract of the calls that take such a struct).
pub(crate) unsafe fn write_sized<T>(out: *mut T, value: &T, name: &'static str, type_name: &str) -> Result<(), Failure> {
    // SAFETY: the caller's contract: a non-NULL `out` starts with a readable `u64`.
    let size = *unsafe { arg(out as *const u64, name) }?;
    if size == 0 || size % 8 != 0 {
        return Err(Error::InvalidArgument(format!(
            "{name}->size must be set to sizeof({type_name}) ({}), got {size}",
            std::mem::size_of::<T>()
        ))
        .into());
    }
    let len = (size as usize).min(std::mem::size_of::<T>());
    // SAFETY: `len` bytes fit in both `value` and the caller's buffer (it
    // declared `size >= len` writable bytes); they do not overlap; then the
    // leading `u64` (within `len`, which is at least 8) records `len`.
    unsafe {
        std::ptr::copy_nonoverlapping(value as *const T as *const u8, out as *mut u8, len);
        (out as *mut u64).write(len as u64);
    }
    Ok(())
}
