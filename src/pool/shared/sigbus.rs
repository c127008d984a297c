//! Surviving a segment file that shrinks under the mappings: an access to a
//! page of a shared file mapping past the file's end raises `SIGBUS`, which
//! would end the process. Anyone who may open the file can truncate it.
//!
//! Each mapping of a segment is registered here. A process-wide `SIGBUS`
//! handler, installed once before the first mapping, acts only on faults the
//! kernel raised (`si_code > 0`) at an address inside a registered mapping:
//! it maps zero pages over the whole mapping (`MAP_FIXED`, private and
//! anonymous, so the faulting access retries and reads zeros instead of
//! faulting again) and marks the mapping damaged; the pool then refuses every
//! call with a message (`SharedPool::intact`). Every other `SIGBUS` goes to
//! the handler that was installed before, as the kernel would have delivered
//! it: the same `siginfo` and context to an `SA_SIGINFO` handler, its mask
//! applied, `SA_RESETHAND` honoured; with no handler before, the default
//! action (the fault repeats, or a sent signal is raised again, and the
//! process ends as it would have without mmpool). So it coexists with Python's
//! faulthandler, the JVM and the CUDA runtime when they install theirs first;
//! a handler installed later that does not chain to the one before takes
//! faults in segments from us (the process then dies of them as before).
//!
//! Everything the handler touches is an atomic or a syscall: mmap(2),
//! sigaction(2), pthread_sigmask(2), raise(3).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Mappings that can be registered at once (as many as a process can have
/// shared-pool descriptors, plus mappings being built or inspected).
const SLOTS: usize = 512;

struct Region {
    /// Start address; 0 while the slot is free. Written after `len`.
    start: AtomicUsize,
    len: AtomicUsize,
    damaged: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_REGION: Region = Region { start: AtomicUsize::new(0), len: AtomicUsize::new(0), damaged: AtomicU32::new(0) };
static REGIONS: [Region; SLOTS] = [FREE_REGION; SLOTS];
static INSTALL: Once = Once::new();
/// The handler that was installed before ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
/// Set once the previous handler, installed with `SA_RESETHAND`, has run.
static PREVIOUS_RESET: AtomicBool = AtomicBool::new(false);

/// A registered mapping; unregister it before unmapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registered(usize);

/// Registers the mapping `[start, start + len)` (installing the handler on
/// the first call).
pub(crate) fn register(start: *mut u8, len: usize) -> Result<Registered, String> {
    INSTALL.call_once(install);
    for (i, r) in REGIONS.iter().enumerate() {
        if r.start.load(Ordering::Acquire) == 0 && r.len.compare_exchange(0, len, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            r.damaged.store(0, Ordering::Release);
            r.start.store(start as usize, Ordering::Release);
            return Ok(Registered(i));
        }
    }
    Err(format!("this process has {SLOTS} shared-pool segments mapped, the most it can"))
}

/// Removes a registration (the mapping is about to be unmapped).
pub(crate) fn unregister(r: Registered) {
    let region = &REGIONS[r.0];
    region.start.store(0, Ordering::Release);
    region.len.store(0, Ordering::Release);
}

/// Whether the mapping was found damaged (and replaced by zero pages).
#[inline]
pub(crate) fn is_damaged(r: Registered) -> bool {
    REGIONS[r.0].damaged.load(Ordering::Acquire) != 0
}

/// Replaces the mapping by zero pages and marks it damaged, as the handler
/// does on a fault (for a shrunk file found by other means, before any
/// access faults). Returns whether the pages were replaced.
pub(crate) fn mark_damaged(r: Registered) -> bool {
    let region = &REGIONS[r.0];
    let (start, len) = (region.start.load(Ordering::Acquire), region.len.load(Ordering::Acquire));
    start != 0 && zero_over(region, start, len)
}

fn zero_over(region: &Region, start: usize, len: usize) -> bool {
    // SAFETY: `[start, start + len)` is a mapping this module registered and
    // that stays mapped while registered; replacing its pages by zero pages
    // keeps every address valid, and every value the pool keeps there is an
    // atomic, for which zero is a valid value.
    let p = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    let replaced = p != libc::MAP_FAILED;
    if replaced {
        region.damaged.store(1, Ordering::Release);
    }
    replaced
}

fn install() {
    // SAFETY: sigaction is a plain C struct; all-zero is a valid value.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigbus;
    ours.sa_sigaction = handler as usize;
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: a valid, empty signal set.
    unsafe { libc::sigemptyset(&mut ours.sa_mask) };
    // SAFETY: as above.
    let mut before: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigaction pointers; the handler only does what the module
    // documentation lists.
    if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut before) } == 0 {
        let _ = PREVIOUS.set(before);
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code > 0 {
        for region in &REGIONS {
            let start = region.start.load(Ordering::Acquire);
            let len = region.len.load(Ordering::Acquire);
            if start != 0 && addr >= start && addr - start < len {
                if zero_over(region, start, len) {
                    return; // the access retries on zero pages
                }
                break;
            }
        }
    }
    pass_on(sig, info, ctx, code > 0);
}

/// Delivers the signal to the handler installed before ours.
fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, fault: bool) {
    let Some(before) = PREVIOUS.get().filter(|_| !PREVIOUS_RESET.load(Ordering::Acquire)) else {
        return default_action(sig, fault);
    };
    match before.sa_sigaction {
        libc::SIG_DFL => default_action(sig, fault),
        // Ignoring a fault is impossible (it repeats); the kernel kills then.
        libc::SIG_IGN => {
            if fault {
                default_action(sig, fault)
            }
        }
        handler => {
            if before.sa_flags & libc::SA_RESETHAND != 0 {
                PREVIOUS_RESET.store(true, Ordering::Release);
            }
            // SAFETY: blocks the signals the previous handler asked to be
            // blocked while it runs; our return restores the thread's mask.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &before.sa_mask, std::ptr::null_mut()) };
            if before.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: an SA_SIGINFO handler has this signature; it gets
                // what the kernel gave us.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(handler) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a plain handler has this signature.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                f(sig);
            }
        }
    }
}

/// What the kernel would have done with no handler: the default action.
fn default_action(sig: libc::c_int, fault: bool) {
    // SAFETY: sigaction is a plain C struct; zero with SIG_DFL is the default
    // disposition.
    let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    // SAFETY: a valid sigaction pointer.
    unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
    if !fault {
        // Blocked while this handler runs; delivered, with the default
        // action, when it returns. (A fault simply repeats.)
        // SAFETY: raise(3) with a valid signal number.
        unsafe { libc::raise(sig) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_in_a_registered_mapping_reads_zeros_and_marks_it() {
        // A file of one page, mapped over two: the second page faults.
        let path = std::env::temp_dir().join(format!("mmpool-sigbus-{}", std::process::id()));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        f.set_len(4096).unwrap();
        // SAFETY: a fresh shared mapping of two pages of a file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let r = register(p.cast(), 8192).unwrap();
        // SAFETY: within the mapping; the first page is backed by the file.
        let first = unsafe { &*(p.cast::<std::sync::atomic::AtomicU64>()) };
        first.store(7, Ordering::Relaxed);
        assert!(!is_damaged(r));
        // SAFETY: within the mapping, past the file's end: faults, and the
        // handler replaces the mapping by zero pages.
        let beyond = unsafe { &*(p.cast::<u8>().add(4096).cast::<std::sync::atomic::AtomicU64>()) };
        assert_eq!(beyond.load(Ordering::Relaxed), 0);
        assert!(is_damaged(r));
        assert_eq!(first.load(Ordering::Relaxed), 0, "the whole mapping now reads zeros");
        unregister(r);
        // SAFETY: unmaps the region mapped above.
        unsafe { libc::munmap(p, 8192) };
        let _ = std::fs::remove_file(path);
    }
}
