//! A minimal `block_on` for driving one future from a plain thread, with a
//! waker that counts: a wake followed by a poll that is still `Pending` is a
//! wake-up that went back to sleep without a grant.
//!
//! No runtime is needed to wait on tokio's `Semaphore`; the future only needs a
//! waker, and this one unparks the thread that is blocked on it.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// Wakes one parked thread.
struct Unparker {
    thread: Thread,
    notified: AtomicBool,
}

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.notified.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

thread_local! {
    // One waker per thread, made once: the uncontended path allocates nothing.
    static WAKER: (Arc<Unparker>, Waker) = {
        let unparker = Arc::new(Unparker { thread: thread::current(), notified: AtomicBool::new(false) });
        let waker = Waker::from(Arc::clone(&unparker));
        (unparker, waker)
    };
}

/// How one `block_on` went.
pub struct Blocked<T> {
    /// The future's output, or `None` if `deadline` passed first.
    pub output: Option<T>,
    /// Wakes after which the future was still pending.
    pub futile_wakeups: u64,
}

/// Polls `fut` on this thread until it is ready or `deadline` passes (then the
/// future is dropped, which for a semaphore means leaving its line).
/// `on_first_pending` runs once, when the future first has to wait, and
/// `on_done` after it, whichever way the wait ends.
pub fn block_on<F: Future>(
    fut: F,
    deadline: Option<Instant>,
    on_first_pending: impl FnOnce(),
    on_done: impl FnOnce(),
) -> Blocked<F::Output> {
    WAKER.with(|(unparker, waker)| {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(waker);
        unparker.notified.store(false, Ordering::Relaxed);
        let mut first_pending = Some(on_first_pending);
        let mut woken = false;
        let mut futile_wakeups = 0;
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                if first_pending.is_none() {
                    on_done();
                }
                return Blocked { output: Some(v), futile_wakeups };
            }
            match first_pending.take() {
                Some(hook) => hook(),
                None if woken => futile_wakeups += 1,
                None => {}
            }
            // Sleep until a wake; an unpark without one (spurious) sleeps again.
            while !unparker.notified.swap(false, Ordering::Acquire) {
                match deadline {
                    None => thread::park(),
                    Some(at) => {
                        let now = Instant::now();
                        if now >= at {
                            on_done();
                            return Blocked { output: None, futile_wakeups };
                        }
                        thread::park_timeout(at - now);
                    }
                }
            }
            woken = true;
        }
    })
}
