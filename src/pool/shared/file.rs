//! Finding, creating and mapping a shared pool's segment file.
//!
//! The segment of pool `NAME` is the file `/dev/shm/mmpool.NAME` (what
//! `shm_open("/mmpool.NAME")` opens). A creator builds a new segment under a
//! private temporary name, holding its `INIT_LOCK` byte, writes the header
//! (`init_state = READY` last) and only then publishes it with `link(2)`,
//! which fails if the name exists: so a segment under the name is complete,
//! and of two racing creators exactly one wins. A segment found under the
//! name that is not `READY` (left by a creator that died while making it in
//! place, or by another tool) is rebuilt when no process holds its
//! `INIT_LOCK`, else waited for.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::time::{Duration, Instant};

use super::futex::now_ns;
use super::liveness::{self, INIT_LOCK};
use super::segment::*;
use super::sigbus::{self, Registered};
use super::OpenFlags;
use crate::pool::Error;

/// Where segments live.
pub(crate) const SHM_DIR: &str = "/dev/shm";
/// Prefix of every segment's file name.
pub(crate) const FILE_PREFIX: &str = "mmpool.";
/// Longest pool name accepted.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// The largest segment any limits make (with a margin): bigger files are refused unmapped.
const MAX_SEGMENT: usize = 8 << 20;
/// How long an opener waits for another process to finish creating the segment.
const CREATION_WAIT: Duration = Duration::from_secs(2);

/// Checks a pool name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) || name == "." || name == ".." {
        return Err(Error::InvalidArgument(format!(
            "shared pool name {name:?} must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        )));
    }
    Ok(())
}

/// The segment file's path for a (validated) name.
pub fn path_of(name: &str) -> String {
    format!("{SHM_DIR}/{FILE_PREFIX}{name}")
}

fn cpath(path: &str) -> CString {
    // Validated names never contain NUL.
    CString::new(path).unwrap_or_default()
}

fn sys(what: &str, path: &str, err: io::Error) -> Error {
    Error::System(format!("{what} {path}: {err}"))
}

/// A segment mapped into this process. Unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    /// Bytes mapped.
    len: usize,
    /// The tables' places; `None` until the header was checked.
    layout: Option<Layout>,
    /// The tables themselves, made once by `check` (borrowed as `'_` only:
    /// `segment` shortens the lifetime to the mapping's).
    tables: Option<Segment<'static>>,
    /// Its registration with the SIGBUS handler.
    guard: Registered,
}

// SAFETY: the mapping is plain shared memory whose every field is an atomic;
// any thread may use it.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of the file (a whole number of pages, at
    /// least one, that the caller checked the file has).
    fn new(fd: RawFd, path: &str, len: usize) -> Result<Mapping, Error> {
        // SAFETY: a fresh shared mapping of the file; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(sys("mmap", path, io::Error::last_os_error()));
        }
        let unmap = |e: Error| {
            // SAFETY: unmaps the region just mapped, which nothing uses yet.
            unsafe { libc::munmap(ptr, len) };
            e
        };
        let guard = sigbus::register(ptr.cast(), len).map_err(|e| unmap(Error::System(e)))?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::System("mmap returned NULL".into()))?;
        Ok(Mapping { ptr, len, layout: None, tables: None, guard })
    }

    /// Whether a fault or `damage` replaced the mapping by zero pages.
    #[inline]
    pub(crate) fn is_damaged(&self) -> bool {
        sigbus::is_damaged(self.guard)
    }

    /// Replaces the mapping by zero pages (its file shrank): from now on it
    /// reads zeros and never faults.
    pub(crate) fn damage(&self) {
        sigbus::mark_damaged(self.guard);
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The header, which the first page holds.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: at least one page is mapped, page-aligned, for as long as
        // `self`; Header consists only of atomics (any bit pattern is valid).
        unsafe { &*self.ptr.as_ptr().cast::<Header>() }
    }

    /// Checks the header and that its layout is what is mapped.
    fn check(&mut self, path: &str) -> Result<(), Error> {
        let layout = check_header(self.header()).map_err(|why| Error::System(format!("{path}: {why}")))?;
        if layout.size != self.len {
            return Err(Error::System(format!(
                "{path} is {} bytes, its header makes a segment of {}: truncated or not an mmpool segment",
                self.len, layout.size
            )));
        }
        self.layout = Some(layout);
        // SAFETY: the checked layout fits in the `len` bytes mapped at `ptr`,
        // which stay mapped until `self` is dropped; `segment` hands the
        // tables out only for borrows of `self`.
        self.tables = Some(unsafe { layout.segment(self.ptr.as_ptr()) });
        Ok(())
    }

    pub(crate) fn layout(&self) -> Layout {
        // Mappings handed out are checked (`Opened` is built after `check`).
        self.layout.unwrap_or_else(|| unreachable!("an unchecked mapping was used"))
    }

    pub(crate) fn segment(&self) -> &Segment<'_> {
        // Mappings handed out are checked (`Opened` is built after `check`).
        self.tables.as_ref().unwrap_or_else(|| unreachable!("an unchecked mapping was used"))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        sigbus::unregister(self.guard);
        // SAFETY: unmaps exactly the region mmap returned; no reference into it
        // outlives `self` (they all borrow from it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An open, checked and mapped segment.
pub(crate) struct Opened {
    pub(crate) fd: OwnedFd,
    pub(crate) map: Mapping,
    /// (st_dev, st_ino) of the file, to recognise it when reopening by name.
    pub(crate) identity: (u64, u64),
}

fn open_fd(path: &str, extra: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cpath(path);
    // SAFETY: a NUL-terminated path; the flags ask for a new descriptor.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn fstat(fd: RawFd, path: &str) -> Result<libc::stat, Error> {
    // SAFETY: stat is a plain C struct; all-zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(sys("fstat", path, io::Error::last_os_error()));
    }
    Ok(st)
}

/// Whether the file behind `fd` is now shorter than `len`, the bytes mapped
/// (a failed fstat says no: only a sure answer damages a mapping).
pub(crate) fn shrunk(fd: RawFd, len: usize) -> bool {
    // SAFETY: stat is a plain C struct; all-zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor and a valid out-pointer; a bad descriptor fails.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    ok && (st.st_size.max(0) as u64) < len as u64
}

/// Identity of whatever the path names now, if anything.
pub(crate) fn identity_of_path(path: &str) -> Option<(u64, u64)> {
    let c = cpath(path);
    // SAFETY: as in fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    (unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Who may open a segment: its owner must be this user (or, with
/// `OpenFlags::group`, the file must be group read-write), and no one else
/// may have any access.
fn check_owner_and_mode(st: &libc::stat, path: &str, flags: OpenFlags) -> Result<(), Error> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::InvalidArgument(format!("{path} is not a regular file")));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o007 != 0 || mode & 0o7000 != 0 {
        return Err(Error::InvalidArgument(format!(
            "{path} has mode {mode:04o}: a segment others may access is refused (expected 0600 or 0660)"
        )));
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != euid {
        if !flags.group {
            return Err(Error::InvalidArgument(format!(
                "{path} belongs to uid {}, not to this process's uid {euid}; pass MMPOOL_SHARED_GROUP to \
                 share a pool between users of one group",
                st.st_uid
            )));
        }
        if mode & 0o060 != 0o060 {
            return Err(Error::InvalidArgument(format!(
                "{path} belongs to uid {} and is not group read-write (mode {mode:04o})",
                st.st_uid
            )));
        }
    }
    Ok(())
}

/// Writes a fresh header and empty tables into a zero-filled segment.
pub(crate) fn initialise(h: &Header, layout: &Layout, total: u64) {
    h.init_state.store(0, Relaxed);
    h.magic.store(MAGIC, Relaxed);
    h.layout_version.store(LAYOUT_VERSION, Relaxed);
    h.header_size.store(HEADER_SIZE as u32, Relaxed);
    h.segment_size.store(layout.size as u64, Relaxed);
    h.max_procs.store(layout.procs as u32, Relaxed);
    h.max_entries.store(layout.entries as u32, Relaxed);
    h.max_waiters.store(layout.waiters as u32, Relaxed);
    h.max_handoffs.store(layout.handoffs as u32, Relaxed);
    h.placement_nodes.store(layout.placement_nodes as u32, Relaxed);
    h.lock.store(0, Relaxed);
    let nonce = (now_ns() ^ u64::from(std::process::id()).rotate_left(17)) as u32;
    h.nonce.store(nonce.wrapping_mul(0x9e37_79b9) >> 21 & NONCE_MASK, Relaxed);
    h.total.store(total, Relaxed);
    h.available.store(total as i64, Relaxed);
    h.created_ns.store(now_ns(), Relaxed);
    h.creator_pid.store(std::process::id(), Relaxed);
    h.init_state.store(INIT_READY, Release);
}

/// What a creator makes: the total, the flags, the tables' layout.
#[derive(Clone, Copy)]
pub(crate) struct Making {
    pub(crate) total: u64,
    pub(crate) flags: OpenFlags,
    pub(crate) layout: Layout,
    /// A placed pool's alignment (its layout has a placement region), else 0.
    pub(crate) alignment: u64,
}

/// The temporary name a creator builds under: `mmpool.NAME~PID~NS.tmp`. `~`
/// is never part of a pool name, so no pool's file looks like one.
fn tmp_prefix(path: &str) -> String {
    format!("{path}~")
}

/// Attempts at a temporary name before giving up (each is lost only to a
/// cleaner that removed the file between its creation and its lock).
const BUILD_ATTEMPTS: usize = 8;

/// Builds a complete segment under a temporary name; returns its descriptor,
/// mapping and temporary path. The descriptor holds the file's `INIT_LOCK`
/// from before the segment is written until the caller has published it and
/// removed the temporary name (`finish_tmp`): a temporary file whose
/// `INIT_LOCK` nobody holds is a dead creator's (`remove_stale_tmp`).
fn build(path: &str, making: Making) -> Result<(Opened, String), Error> {
    let mode: libc::mode_t = if making.flags.group { 0o660 } else { 0o600 };
    for _ in 0..BUILD_ATTEMPTS {
        let tmp = format!("{}{}~{}.tmp", tmp_prefix(path), std::process::id(), now_ns());
        let fd = open_fd(&tmp, libc::O_CREAT | libc::O_EXCL, mode).map_err(|e| sys("create", &tmp, e))?;
        let st = fstat(fd.as_raw_fd(), &tmp)?;
        let identity = (st.st_dev, st.st_ino);
        // Claimed only if the name still refers to this file once it is
        // locked: a cleaner removes a file only while holding its lock.
        if !liveness::try_lock(fd.as_raw_fd(), INIT_LOCK).map_err(|e| sys("lock", &tmp, e))?
            || identity_of_path(&tmp) != Some(identity)
        {
            continue;
        }
        let remove = |e: Error| {
            unlink_path(&tmp);
            e
        };
        // Exact mode whatever the umask; then size it.
        // SAFETY: a valid descriptor this call owns.
        if unsafe { libc::fchmod(fd.as_raw_fd(), mode) } != 0 {
            return Err(remove(sys("fchmod", &tmp, io::Error::last_os_error())));
        }
        // SAFETY: as above.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), making.layout.size as libc::off_t) } != 0 {
            return Err(remove(sys("ftruncate", &tmp, io::Error::last_os_error())));
        }
        let mut map = Mapping::new(fd.as_raw_fd(), &tmp, making.layout.size).map_err(remove)?;
        initialise(map.header(), &making.layout, making.total);
        map.check(&tmp).map_err(remove)?;
        super::placed::init_region(map.segment(), making.total, making.alignment).map_err(remove)?;
        return Ok((Opened { fd, map, identity }, tmp));
    }
    Err(Error::System(format!("could not claim a temporary file for {path} in {BUILD_ATTEMPTS} attempts")))
}

/// After publishing (or failing to): removes the temporary name, then lets
/// go of the `INIT_LOCK` that kept cleaners away from it.
fn finish_tmp(opened: &Opened, tmp: &str) {
    unlink_path(tmp);
    liveness::unlock(opened.fd.as_raw_fd(), INIT_LOCK);
}

/// Removes the temporary files of pool `path` whose creators died before
/// publishing them: those whose `INIT_LOCK` this process can take, and that
/// the name still refers to while it holds it. Returns how many.
pub(crate) fn remove_stale_tmp(path: &str) -> usize {
    let prefix = tmp_prefix(path);
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else { return 0 };
    let mut removed = 0;
    for entry in dir.flatten() {
        let candidate = format!("{SHM_DIR}/{}", entry.file_name().to_string_lossy());
        if !candidate.starts_with(&prefix) || !candidate.ends_with(".tmp") {
            continue;
        }
        let Ok(fd) = open_fd(&candidate, 0, 0) else { continue };
        let Ok(st) = fstat(fd.as_raw_fd(), &candidate) else { continue };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        if liveness::try_lock(fd.as_raw_fd(), INIT_LOCK).unwrap_or(false)
            && identity_of_path(&candidate) == Some((st.st_dev, st.st_ino))
        {
            unlink_path(&candidate);
            removed += 1;
        }
        // Closing `fd` drops the lock.
    }
    if removed > 0 {
        crate::log::log(
            crate::log::Level::Info,
            &format!("removed {removed} temporary file(s) of {path} left by creators that died"),
        );
    }
    removed
}

fn unlink_path(path: &str) {
    let c = cpath(path);
    // SAFETY: a NUL-terminated path; failure is harmless here.
    unsafe { libc::unlink(c.as_ptr()) };
}

/// Creates the segment if it does not exist: `Ok(None)` when another process
/// published one first.
fn create(path: &str, making: Making) -> Result<Option<Opened>, Error> {
    remove_stale_tmp(path);
    let (opened, tmp) = build(path, making)?;
    let (ct, cp) = (cpath(&tmp), cpath(path));
    // SAFETY: two NUL-terminated paths.
    let rc = unsafe { libc::link(ct.as_ptr(), cp.as_ptr()) };
    let err = io::Error::last_os_error();
    finish_tmp(&opened, &tmp);
    match rc {
        0 => Ok(Some(opened)),
        _ if err.raw_os_error() == Some(libc::EEXIST) => Ok(None),
        _ => Err(sys("publish", path, err)),
    }
}

/// Replaces a segment left unfinished under the name, if it is still the one
/// the name refers to and nobody else is replacing it.
fn replace_unfinished(path: &str, old: &OwnedFd, old_identity: (u64, u64), making: Making) -> Result<(), Error> {
    if making.total == 0 {
        return Err(Error::InvalidArgument(format!(
            "{path} was left unfinished by a creator that died; give a total to rebuild it, or remove it with \
             `mmpool unlink`"
        )));
    }
    if !liveness::try_lock(old.as_raw_fd(), INIT_LOCK).map_err(|e| sys("lock", path, e))? {
        return Ok(()); // another process is on it; the caller retries
    }
    if identity_of_path(path) != Some(old_identity) {
        return Ok(()); // already replaced or removed
    }
    let (opened, tmp) = build(path, making)?;
    let (ct, cp) = (cpath(&tmp), cpath(path));
    // SAFETY: two NUL-terminated paths.
    let renamed = unsafe { libc::rename(ct.as_ptr(), cp.as_ptr()) } == 0;
    let err = io::Error::last_os_error();
    finish_tmp(&opened, &tmp);
    if !renamed {
        return Err(sys("rename over", path, err));
    }
    crate::log::log(crate::log::Level::Warn, &format!("rebuilt {path}: its creator died before finishing it"));
    Ok(())
}

/// Opens (and with `flags.create`, creates) the segment of `name`, checks its
/// owner, mode, size and header, and maps it. `created` tells whether this
/// call made it.
pub(crate) fn open(name: &str, making: Making) -> Result<(Opened, bool), Error> {
    let (total, flags) = (making.total, making.flags);
    let path = path_of(name);
    let give_up_at = Instant::now() + CREATION_WAIT;
    loop {
        let fd = match open_fd(&path, 0, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && flags.create => {
                if total == 0 {
                    return Err(Error::InvalidArgument(format!(
                        "no shared pool named {name:?} exists, and total_bytes 0 cannot create one"
                    )));
                }
                match create(&path, making)? {
                    Some(opened) => return Ok((opened, true)),
                    None if flags.exclusive => return Err(exists(name, &path)),
                    None => continue,
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Error::System(format!(
                    "no shared pool named {name:?} ({path} does not exist); create it with MMPOOL_SHARED_CREATE"
                )))
            }
            Err(e) => return Err(sys("open", &path, e)),
        };
        if flags.exclusive {
            return Err(exists(name, &path));
        }
        let st = fstat(fd.as_raw_fd(), &path)?;
        check_owner_and_mode(&st, &path, flags)?;
        let size = st.st_size.max(0) as u64;
        let identity = (st.st_dev, st.st_ino);
        if size != 0 && (size < PAGE as u64 || size % PAGE as u64 != 0 || size > MAX_SEGMENT as u64) {
            return Err(Error::System(format!(
                "{path} is {size} bytes, not a whole number of pages up to {MAX_SEGMENT}: truncated or not an \
                 mmpool segment (remove it with `mmpool unlink {name}`)"
            )));
        }
        if size != 0 {
            let mut map = Mapping::new(fd.as_raw_fd(), &path, size as usize)?;
            if map.header().init_state.load(std::sync::atomic::Ordering::Acquire) == INIT_READY {
                map.check(&path).map_err(|e| match e {
                    Error::System(why) => Error::System(format!("{why} (remove it with `mmpool unlink {name}`)")),
                    other => other,
                })?;
                return Ok((Opened { fd, map, identity }, false));
            }
        }
        // Empty, or not READY: unfinished.
        let creator_alive = liveness::held_by_other(fd.as_raw_fd(), INIT_LOCK).map_err(|e| sys("probe", &path, e))?;
        if !creator_alive {
            replace_unfinished(&path, &fd, identity, making)?;
        }
        if Instant::now() >= give_up_at {
            return Err(Error::System(format!(
                "{path} is still being created by another process after {CREATION_WAIT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn exists(name: &str, path: &str) -> Error {
    Error::InvalidArgument(format!(
        "a shared pool named {name:?} already exists ({path}) and MMPOOL_SHARED_EXCLUSIVE was given"
    ))
}

/// Opens the same file again (a new open file description), for a process
/// that must attach afresh after fork. Fails if the name now refers to
/// another file.
pub(crate) fn reopen(name: &str, identity: (u64, u64)) -> Result<OwnedFd, Error> {
    let path = path_of(name);
    let fd = open_fd(&path, 0, 0).map_err(|e| sys("reopen", &path, e))?;
    let st = fstat(fd.as_raw_fd(), &path)?;
    if (st.st_dev, st.st_ino) != identity {
        return Err(Error::System(format!(
            "{path} was removed or replaced since this handle was opened; open the pool again"
        )));
    }
    Ok(fd)
}

/// Removes a pool's name. Processes attached keep using it; the next open
/// with MMPOOL_SHARED_CREATE makes a new pool.
///
/// Also removes temporary files of the name that creators killed while
/// building left behind (never one a live creator is building); it succeeds
/// if it removed any, even when the name itself did not exist.
pub fn unlink(name: &str) -> Result<(), Error> {
    validate_name(name)?;
    let path = path_of(name);
    let stale = remove_stale_tmp(&path);
    let c = cpath(&path);
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::unlink(c.as_ptr()) } != 0 {
        let err = io::Error::last_os_error();
        if stale > 0 && err.raw_os_error() == Some(libc::ENOENT) {
            return Ok(());
        }
        return Err(sys("unlink", &path, err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["a", "decode-0", "Team_A.pool", &"x".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../etc", "sp ace", "nul\0", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(matches!(validate_name(bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
    }
}
