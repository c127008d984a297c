//! Exports for pools shared by every process on the host.

use std::ffi::c_char;

use super::boundary::out;
use super::handle::{self, mmpool};
use super::status::mmpool_status;
use crate::pool::shared::{self, Limits, OpenFlags, SharedOptions};
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
    unsafe { super::boundary::utf8_arg(name, "name") }
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
/// plus tickets, 1024 waiters, unless the creator chose others
/// (`mmpool_open_shared_with`); beyond them calls fail with `SYSTEM` saying so.
///
/// Damage: if the segment's file is truncated while processes are attached,
/// none of them dies (a SIGBUS handler of mmpool takes faults in its own
/// mappings only, passing every other SIGBUS to the handler installed before
/// it); every call on the handle then fails with `SYSTEM` saying what
/// happened and what to do, and releases do nothing. Remove the name
/// (`mmpool_unlink_shared`) and open the pool again. A call with a timeout
/// returns by its deadline also while another process keeps the pool's lock;
/// `mmpool_try_acquire` gives up when one holder keeps the lock 100 ms.
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

/// Options of `mmpool_open_shared_with`. Zero-initialise it, set `size =
/// sizeof(mmpool_shared_options)`, then the fields wanted: the struct can grow
/// at its end, and fields past `size` read as 0.
///
/// The limits are chosen by the creator and fixed for the pool's life; 0
/// means the default when creating and "whatever the pool has" when
/// attaching; any other value must equal the pool's. The caller owns the
/// struct; the call only reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct mmpool_shared_options {
    /// The caller's `sizeof(mmpool_shared_options)`: a multiple of 8, at least 8.
    pub size: u64,
    /// The budget (1 to 2^60); 0 accepts an existing pool's and cannot create.
    pub total_bytes: u64,
    /// `MMPOOL_SHARED_CREATE`, `MMPOOL_SHARED_EXCLUSIVE`, `MMPOOL_SHARED_GROUP`.
    pub flags: u32,
    /// Processes attached at once: 1 to 254, default 128.
    pub max_processes: u32,
    /// Outstanding leases plus tickets over all processes: 1 to 65536, default 4096.
    pub max_leases: u32,
    /// Requests waiting in line at once: 1 to `max_leases`, default 1024 (or
    /// `max_leases` if smaller).
    pub max_waiters: u32,
    /// Hand-offs outstanding at once (`mmpool_lease_share`): 1 to 4096,
    /// default 256.
    pub max_handoffs: u32,
    /// 0.
    pub reserved: u32,
    /// A placed pool's alignment (a power of two; see `mmpool_init_placed`
    /// for the rules): creates a placed pool, whose leases each hold a range
    /// of `[0, total_bytes)` (`mmpool_lease_offset`), and attaching needs
    /// the pool to be placed with this alignment. 0: a pool that is not
    /// placed when creating, either kind when attaching. A dead process's
    /// ranges come back with its bytes; a hand-off's token carries the
    /// offset, and the hand-off holds the range until its last part.
    pub alignment: u64,
}

/// `mmpool_open_shared` with every option, the limits included (see
/// `mmpool_shared_options`); otherwise the same: ownership, crash safety,
/// fork, thread rules and errors. An open that asks for limits other than
/// the pool's fails with `INVALID_ARGUMENT` naming both; limits out of range
/// give `INVALID_ARGUMENT` naming the bounds. Beyond the limits, calls fail
/// with `SYSTEM` naming the limit (`max_processes`, `max_leases`, `max_waiters`,
/// `max_handoffs`).
///
/// Errors: `NULL_ARGUMENT` (`name`, `options`, `out_pool`),
/// `INVALID_ARGUMENT` (as for `mmpool_open_shared`; `options->size` not a
/// multiple of 8 or 0, or longer than this library knows with bytes past it
/// not 0; `options->reserved` not 0; limits), `SYSTEM`.
#[no_mangle]
pub extern "C" fn mmpool_open_shared_with(
    name: *const c_char,
    options: *const mmpool_shared_options,
    out_pool: *mut *mut mmpool,
) -> mmpool_status {
    boundary!("mmpool_open_shared_with", {
        // SAFETY: the C contract: `name` is NULL or a C string, `options` NULL
        // or readable for `options->size` bytes, `out_pool` NULL or writable.
        let (name, o, out_pool) =
            unsafe { (name_arg(name)?, options_arg(options)?, out(out_pool, "out_pool")?) };
        if o.reserved != 0 {
            return Err(Error::InvalidArgument(format!("options->reserved must be 0, got {}", o.reserved)).into());
        }
        let limits = Limits {
            max_processes: o.max_processes,
            max_leases: o.max_leases,
            max_waiters: o.max_waiters,
            max_handoffs: o.max_handoffs,
        };
        let flags = OpenFlags::from_bits(o.flags)?;
        let opts = SharedOptions { total_bytes: o.total_bytes, flags, limits, alignment: o.alignment };
        *out_pool = handle::into_raw(Pool::open_shared_with(name, &opts)?);
        Ok(())
    })
}

/// The caller's options, as many bytes as it declared (the rest 0).
///
/// # Safety
/// A non-NULL `options` is readable for `options->size` bytes.
unsafe fn options_arg(options: *const mmpool_shared_options) -> Result<mmpool_shared_options, super::boundary::Failure> {
    // SAFETY: the caller's contract; the first field is a u64.
    let size = *unsafe { super::boundary::arg(options as *const u64, "options") }?;
    let known = std::mem::size_of::<mmpool_shared_options>();
    if size == 0 || size % 8 != 0 {
        return Err(Error::InvalidArgument(format!(
            "options->size must be set to sizeof(mmpool_shared_options) ({known}), got {size}"
        ))
        .into());
    }
    let bytes = options.cast::<u8>();
    if size as usize > known {
        // SAFETY: the caller declared `size` readable bytes.
        let tail = unsafe { std::slice::from_raw_parts(bytes.add(known), size as usize - known) };
        if tail.iter().any(|&b| b != 0) {
            return Err(Error::InvalidArgument(format!(
                "options->size is {size}, and this library knows only the first {known} bytes of \
                 mmpool_shared_options; the rest must be 0"
            ))
            .into());
        }
    }
    let mut o = mmpool_shared_options::default();
    let len = (size as usize).min(known);
    // SAFETY: `len` bytes are readable at `bytes` (declared by the caller) and
    // writable in `o`; they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes, (&mut o as *mut mmpool_shared_options).cast::<u8>(), len) };
    Ok(o)
}

/// Removes the name of the shared pool `name` (its file in /dev/shm).
/// Processes attached keep using the pool; the next open with
/// `MMPOOL_SHARED_CREATE` makes a new one. Also removes the temporary files
/// of the name that creators killed while building it left behind (never one
/// a live creator is building). Operators: `mmpool unlink NAME`.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (bad name), `SYSTEM` (no such
/// pool and no stale temporary file, or the OS refused).
#[no_mangle]
pub extern "C" fn mmpool_unlink_shared(name: *const c_char) -> mmpool_status {
    boundary!("mmpool_unlink_shared", {
        // SAFETY: the C contract: `name` is NULL or a C string.
        let name = unsafe { name_arg(name) }?;
        shared::unlink(name)?;
        Ok(())
    })
}
