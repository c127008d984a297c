//! The synchronisation facade of the engine.
//!
//! Every lock, condition variable, atomic and `Arc` the engine uses comes from
//! here, so that `RUSTFLAGS="--cfg loom" cargo test --test loom` swaps in loom's
//! model-checked versions without touching the engine's code. In normal builds
//! the locks are parking_lot's (no poisoning, small, fast uncontended).

use std::time::Instant;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Reference counts stay std's under loom too: they are not what the models
/// check, and methods taking `self: &Arc<Self>` need std's `Arc`.
pub use std::sync::{Arc, Weak};

/// A mutual-exclusion lock. It is never held while a thread sleeps in the pool.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard of [`Mutex`]; dereferences to the protected value.
#[cfg(not(loom))]
pub(crate) struct MutexGuard<'a, T>(parking_lot::MutexGuard<'a, T>);
#[cfg(loom)]
pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            #[cfg(not(loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            MutexGuard(self.inner.lock())
        }
        #[cfg(loom)]
        {
            MutexGuard(Some(self.inner.lock().unwrap()))
        }
    }
}

impl<T> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        #[cfg(not(loom))]
        {
            &self.0
        }
        #[cfg(loom)]
        {
            self.0.as_ref().expect("guard present")
        }
    }
}

impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        {
            &mut self.0
        }
        #[cfg(loom)]
        {
            self.0.as_mut().expect("guard present")
        }
    }
}

/// The value a waiting request's word holds while its thread sleeps on it
/// (0 while it waits awake; anything else is its fate). No fate may share
/// its low 32 bits.
pub(crate) const ASLEEP: u64 = u64::MAX;

/// Where the thread of one waiting request sleeps until that request's own
/// record, an atomic word, holds its fate. Outside loom it is a private
/// futex on the word's low half: the thread marks the word `ASLEEP` and
/// sleeps while it says so (the kernel re-reads it, so a fate written first
/// is never missed), and whoever writes the fate wakes it only if it was
/// marked, so a grant to a thread that has not gone to sleep costs no system
/// call. Under loom the same marks, with a lock and a condition variable of
/// its own in place of the futex.
#[derive(Default)]
pub(crate) struct Parker {
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    cv: loom::sync::Condvar,
}

/// The 32-bit half of `word` that holds its low bits, for the futex calls.
#[cfg(not(loom))]
fn low_half(word: &AtomicU64) -> *mut u32 {
    let p = word.as_ptr() as *mut u32;
    if cfg!(target_endian = "big") {
        p.wrapping_add(1)
    } else {
        p
    }
}

/// futex(2) on `addr` with `op`, `val` and `timeout` (FUTEX_WAIT's; other
/// operations ignore it); the result is not needed (callers re-check the
/// word). On x86-64 the system call is made inline: glibc's variadic
/// `syscall()` costs as many instructions again, twice per hand-off.
///
/// # Safety
/// `addr` is a live, aligned futex word of this process; `timeout` is NULL
/// or a valid timespec.
#[cfg(not(loom))]
unsafe fn futex(addr: *mut u32, op: libc::c_int, val: u32, timeout: *const libc::timespec) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract; the kernel reads `*addr` and
    // `*timeout` only, and the instruction clobbers rcx and r11 alone
    // (declared), besides the result in rax.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_futex => _,
            in("rdi") addr,
            in("rsi") op,
            in("rdx") val,
            in("r10") timeout,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    unsafe {
        libc::syscall(libc::SYS_futex, addr, op, val, timeout, std::ptr::null::<u32>(), 0u32);
    }
}

impl Parker {
    /// Sleeps while `word` shows no fate (0 or `ASLEEP`), until woken or
    /// `deadline`. Spurious returns are allowed (a signal, the deadline);
    /// callers re-check the word.
    pub(crate) fn sleep(&self, word: &AtomicU64, deadline: Option<Instant>) {
        #[cfg(not(loom))]
        {
            let timeout = match deadline {
                None => None,
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    Some(libc::timespec {
                        tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
                        tv_nsec: left.subsec_nanos() as libc::c_long,
                    })
                }
            };
            if word.compare_exchange(0, ASLEEP, Ordering::AcqRel, Ordering::Acquire).is_err_and(|w| w != ASLEEP) {
                return;
            }
            let ts = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: the futex word is the live, aligned low half of `word`,
            // private to this process; `ts` is NULL or a valid timespec.
            // FUTEX_WAIT only reads the word, and sleeps only while it shows
            // `ASLEEP`'s low half.
            unsafe { futex(low_half(word), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, ASLEEP as u32, ts) };
        }
        #[cfg(loom)]
        {
            let _ = deadline;
            let guard = self.lock.lock().unwrap();
            if matches!(word.compare_exchange(0, ASLEEP, Ordering::AcqRel, Ordering::Acquire), Ok(_) | Err(ASLEEP)) {
                drop(self.cv.wait(guard).unwrap());
            }
        }
    }

    /// Writes `fate` into `word`; `true` when a thread sleeps on it and must
    /// be woken with [`wake`](Self::wake) (which may wait until the caller
    /// has let go of its lock, as long as the word's memory stays).
    #[must_use]
    pub(crate) fn settle(&self, word: &AtomicU64, fate: u64) -> bool {
        word.swap(fate, Ordering::AcqRel) == ASLEEP
    }

    /// Wakes the thread asleep on `word` (see `settle`).
    pub(crate) fn wake(&self, word: &AtomicU64) {
        #[cfg(not(loom))]
        // SAFETY: as in `sleep`; FUTEX_WAKE uses the address only as a key.
        unsafe { futex(low_half(word), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX as u32, std::ptr::null()) };
        #[cfg(loom)]
        {
            let _ = word;
            let _guard = self.lock.lock().unwrap();
            self.cv.notify_all();
        }
    }
}

/// Nanoseconds on the monotonic clock (the one `Instant` reads), as one
/// number, so that a wait's length is a subtraction: the wait-time figures
/// read it once when a request joins the line and once at its grant.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given, a valid
    // local; CLOCK_MONOTONIC exists on every system the futex needs.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// Under loom, a value whose leak fails the model: the engine holds one, so
/// a pool never freed (a lifetime bug) is reported. Nothing outside loom.
#[derive(Default)]
pub(crate) struct LeakCheck {
    #[cfg(loom)]
    _track: Option<loom::alloc::Track<()>>,
}

impl LeakCheck {
    pub(crate) fn new() -> Self {
        LeakCheck {
            #[cfg(loom)]
            _track: Some(loom::alloc::Track::new(())),
        }
    }
}

/// One round of waiting for another thread to leave a short critical state
/// (a lease slot being updated): yields the processor.
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
