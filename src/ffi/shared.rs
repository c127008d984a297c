//! Exports for pools shared by every process on the host.

use std::ffi::{c_char, CStr};

use super::boundary::out;
use super::handle::{self, mmpool};
use super::status::mmpool_status;
use crate::pool::shared::{self, OpenFlags};
use crate::pool::{Error, Pool};

/// `mmpool_open_shared` flag: create the pool if no pool of that name exists.
pub const MMPOOL_SHARED_CREATE: u32 = 1;
/// `mmpool_open_shared` flag: fail if a pool of that name exists (implies
/// `MMPOOL_SHARED_CREATE`).
pub const MMPOOL_SHARED_EXCLUSIVE: u32 = 2;
/// `mmpool_open_shared` flag: create the segment with mode 0660 instead of
/// 0600, and accept a pool that another user of the group created.
pub const MMPOOL_SHARED_GROUP: u32 = 4;
const _: () = assert!(
    MMPOOL_SHARED_CREATE == OpenFlags::CREATE
        && MMPOOL_SHARED_EXCLUSIVE == OpenFlags::EXCLUSIVE
        && MMPOOL_SHARED_GROUP == OpenFlags::GROUP
);

/// The name as UTF-8, refusing NULL and bytes that cannot be a pool name.
///
/// # Safety
/// A non-NULL `name` is a NUL-terminated string.
unsafe fn name_arg<'a>(name: *const c_char) -> Result<&'a str, super::boundary::Failure> {
    // SAFETY: the caller's contract.
    let name = unsafe { super::boundary::arg(name, "name") }?;
    // SAFETY: the caller's contract: NUL-terminated.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str().map_err(|_| Error::InvalidArgument("the pool name is not UTF-8".into()).into())
}

/// Creates or attaches to the pool named `name`, one budget for every process
/// on the host that opens the same name, and stores a handle with one
/// reference in `*out_pool`. The handle works with every function that takes
/// an `mmpool *` (acquire, release, tickets, resize, stats, set_total, close,
/// set_global); grants are first come, first served across all processes.
///
/// - `name`: 1 to 64 characters of `A-Z a-z 0-9 . _ -`. The pool lives in the
///   file `/dev/shm/mmpool.<name>`, mode 0600 (0660 with `MMPOOL_SHARED_GROUP`).
///   Attaching checks the file's owner, mode, size and header.
/// - `total_bytes`: the budget (1 to 2^60). An existing pool must have this
///   total, or the call fails naming both numbers; 0 accepts whatever it is
///   (and cannot create).
/// - `flags`: `MMPOOL_SHARED_CREATE`, `MMPOOL_SHARED_EXCLUSIVE`,
///   `MMPOOL_SHARED_GROUP`, or 0 to attach to an existing pool only.
///
/// Crash safety: when a process dies (even by SIGKILL, while holding leases,
/// waiting, or inside the pool's lock), the others take back what it held
/// within about 50 ms. A pool that no live process is attached to is reset
/// (counters, closed state, and the total when one is given) by the next open
/// with `MMPOOL_SHARED_CREATE`. A child created by fork() does not inherit
/// its parent's attachment or leases: on first use of the handle it attaches
/// as a process of its own. Leases are owned by the process that acquired
/// them; another process cannot release them. `mmpool_close` closes the pool
/// for every process. Limits: 128 attached processes, 4096 outstanding leases
/// plus tickets, 1024 waiters; beyond them calls fail with `SYSTEM` saying so.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (bad name, unknown flags, a
/// total out of range or different from the pool's, an existing pool with
/// `EXCLUSIVE`, a file of another owner or with a mode others can use),
/// `SYSTEM` (no such pool without `CREATE`, a truncated or corrupt segment,
/// a full process table, or a failed OS call; the message says which).
#[no_mangle]
pub extern "C" fn mmpool_open_shared(
    name: *const c_char,
    total_bytes: u64,
    flags: u32,
    out_pool: *mut *mut mmpool,
) -> mmpool_status {
    boundary!("mmpool_open_shared", {
        // SAFETY: the C contract: `name` is NULL or a C string, `out_pool`
        // NULL or writable.
        let (name, out_pool) = unsafe { (name_arg(name)?, out(out_pool, "out_pool")?) };
        let flags = OpenFlags::from_bits(flags)?;
        *out_pool = handle::into_raw(Pool::open_shared(name, total_bytes, flags)?);
        Ok(())
    })
}

/// Removes the name of the shared pool `name` (its file in /dev/shm).
/// Processes attached keep using the pool; the next open with
/// `MMPOOL_SHARED_CREATE` makes a new one. Operators: `mmpool unlink NAME`.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (bad name), `SYSTEM` (no such
/// pool, or the OS refused).
#[no_mangle]
pub extern "C" fn mmpool_unlink_shared(name: *const c_char) -> mmpool_status {
    boundary!("mmpool_unlink_shared", {
        // SAFETY: the C contract: `name` is NULL or a C string.
        let name = unsafe { name_arg(name) }?;
        shared::unlink(name)?;
        Ok(())
    })
}
