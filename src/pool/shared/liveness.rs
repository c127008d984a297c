//! Whether an attached process lives, decided by the kernel: each attached
//! process holds an open-file-description (OFD) write lock on one byte of the
//! segment's file, at `PROC_LOCK_BASE + its slot`. The kernel drops the lock
//! when the process dies (however it dies), so a byte nobody locks is a slot
//! whose process is gone. Pids play no part: they are reused and differ
//! across namespaces.
//!
//! An OFD lock belongs to the open file description, which `fork` shares with
//! the child. So that a child never keeps its parent's slot alive, every such
//! descriptor is registered here and a `pthread_atfork` child handler closes
//! them in the child; the child attaches afresh when it uses the pool.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

/// Offset of slot 0's byte. Far past the end of the segment: the bytes locked
/// need not exist, and nothing maps them.
pub(crate) const PROC_LOCK_BASE: i64 = 1 << 40;
/// Held by a creator while it initialises a segment.
pub(crate) const INIT_LOCK: i64 = PROC_LOCK_BASE - 1;

fn flock(kind: libc::c_int, offset: i64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset;
    fl.l_len = 1;
    fl.l_pid = 0; // required by OFD locks
    fl
}

/// Takes the write lock on byte `offset` without waiting. `Ok(false)`: another
/// open file description holds it.
pub(crate) fn try_lock(fd: RawFd, offset: i64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK, offset);
    // SAFETY: F_OFD_SETLK with a valid flock pointer.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// Drops this description's lock on byte `offset`.
pub(crate) fn unlock(fd: RawFd, offset: i64) {
    let mut fl = flock(libc::F_UNLCK, offset);
    // SAFETY: F_OFD_SETLK with a valid flock pointer; failure leaves a lock
    // that closing the descriptor drops anyway.
    unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl) };
}

/// Whether another open file description than `fd`'s holds a lock on byte
/// `offset`. (A description never conflicts with its own locks, so a process
/// asks this only about bytes it does not hold itself.)
pub(crate) fn held_by_other(fd: RawFd, offset: i64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK, offset);
    // SAFETY: F_OFD_GETLK with a valid flock pointer, which it overwrites.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

// ---- fork ------------------------------------------------------------------

const REGISTRY: usize = 256;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicI32 = AtomicI32::new(-1);
static DESCRIPTORS: [AtomicI32; REGISTRY] = [EMPTY; REGISTRY];
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

/// How many forks deep this process is; an attachment made at another
/// generation belongs to an ancestor.
pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Acquire)
}

extern "C" fn in_child_after_fork() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
    for slot in &DESCRIPTORS {
        let fd = slot.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: closing a descriptor the parent registered; close is
            // async-signal-safe, as code after fork must be.
            unsafe { libc::close(fd) };
        }
    }
}

/// Registers `fd` to be closed in children; returns its registry index.
pub(crate) fn register(fd: RawFd) -> Result<usize, String> {
    ATFORK.call_once(|| {
        // SAFETY: installs a child handler that only touches atomics and
        // calls close(2).
        unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
    });
    for (i, slot) in DESCRIPTORS.iter().enumerate() {
        if slot.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Ok(i);
        }
    }
    Err(format!("this process has {REGISTRY} shared-pool handles open, the most it can"))
}

/// Removes a registration; returns whether `fd` was still registered (false
/// in a child, where the fork handler has closed it already).
pub(crate) fn unregister(index: usize, fd: RawFd) -> bool {
    DESCRIPTORS
        .get(index)
        .is_some_and(|slot| slot.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Acquire).is_ok())
}
