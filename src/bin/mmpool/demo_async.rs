//! `mmpool demo --async`: the same front end as an event loop. N coroutines
//! (tasks of one loop thread) wait for their bytes in the loop, on one
//! notifier fd, and only a granted decode goes to a small executor of
//! threads, which decode and release. No thread ever sleeps in the pool.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mmpool::{Event, Notifier};
use mmpool::pool::Admission;
use mmpool::{Lease, Pool, Ticket, Wait};

use crate::demo::{decode_time, next_request, progress, Class, Config, Length, Rng, Sample};

/// What the loop and its executor show beside the common table.
pub struct LoopFigures {
    pub executor_threads: usize,
    /// Coroutines waiting in the loop for their bytes at once, at most.
    pub most_waiting: usize,
    /// Threads of the whole process, at most (sampled by the loop).
    pub process_threads: u64,
    /// Decodes the executor ran, and the longest any of its threads spent
    /// inside a pool call (only releases: it never waits for bytes).
    pub executor_decodes: u64,
    pub executor_longest_pool_call: Duration,
}

/// A decode handed to the executor with its lease already granted.
struct Job {
    task: usize,
    lease: Lease,
    class: Class,
    waited: Duration,
}

/// The executor: a few threads that decode and release.
struct Executor {
    queue: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
    finished: Mutex<Vec<(usize, Sample)>>,
    /// Readable when `finished` has entries.
    doorbell: OwnedFd,
    decodes: AtomicU64,
    longest_pool_call_ns: AtomicU64,
}

impl Executor {
    fn run(&self, pool: &Arc<Pool>) {
        loop {
            let job = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if let Some(job) = q.0.pop_front() {
                        break job;
                    }
                    if q.1 {
                        return;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            thread::sleep(decode_time(job.lease.nbytes));
            let called = Instant::now();
            let released = pool.release(job.lease.id);
            let spent = called.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            self.longest_pool_call_ns.fetch_max(spent, Ordering::Relaxed);
            if let Err(e) = released {
                eprintln!("mmpool demo: release failed: {e}");
            }
            self.decodes.fetch_add(1, Ordering::Relaxed);
            let sample = Sample { class: job.class, nbytes: job.lease.nbytes, waited: job.waited };
            self.finished.lock().unwrap_or_else(|e| e.into_inner()).push((job.task, sample));
            ring(self.doorbell.as_raw_fd());
        }
    }

    fn submit(&self, job: Job) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).0.push_back(job);
        self.ready.notify_one();
    }

    fn stop(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.ready.notify_all();
    }
}

/// Where one coroutine stands.
enum Task {
    /// About to ask for its next decode's bytes.
    Ready,
    /// In line for `nbytes` since `asked`, its ticket registered with the
    /// loop's notifier.
    Waiting { ticket: Ticket, class: Class, asked: Instant },
    /// Its decode is in the executor.
    Decoding,
    /// No more requests.
    Done,
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn eventfd() -> Result<OwnedFd, String> {
    // SAFETY: eventfd takes no pointers; a negative result is an error.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_error("eventfd"));
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable.
fn ring(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd this program
    // owns; a full counter (EAGAIN) still leaves it readable.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Resets an eventfd's readability.
fn clear(fd: RawFd) {
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into a live u64; EAGAIN (not readable) is fine.
    unsafe { libc::read(fd, (&mut n as *mut u64).cast(), 8) };
}

/// An epoll set watching two descriptors for readability.
struct Poller(OwnedFd);

impl Poller {
    fn new(fds: &[RawFd]) -> Result<Poller, String> {
        // SAFETY: no pointers; a negative result is an error.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(os_error("epoll_create1"));
        }
        // SAFETY: a descriptor just opened, owned by nobody else.
        let poller = Poller(unsafe { OwnedFd::from_raw_fd(ep) });
        for &fd in fds {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            // SAFETY: `ev` is a live epoll_event; both descriptors are open.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
                return Err(os_error("epoll_ctl"));
            }
        }
        Ok(poller)
    }

    /// Waits up to `timeout` for either descriptor to turn readable.
    fn wait(&self, timeout: Duration) {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 2];
        let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: `evs` has room for the 2 events asked for.
        unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), 2, ms) };
    }
}

/// This process's thread count, from /proc.
fn threads_now() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|n| n.trim().parse().ok())))
        .unwrap_or(0)
}

/// The loop: its coroutines, their requests and the notifier they wait on.
struct Front<'a> {
    pool: &'a Arc<Pool>,
    notifier: Notifier,
    executor: &'a Executor,
    tasks: Vec<Task>,
    /// Of `tasks`: how many are `Waiting`, and how many are not `Done`
    /// (kept by `set`, so the loop never scans them).
    waiting: usize,
    open: usize,
    rngs: Vec<Rng>,
    made: Vec<u64>,
    requests: u64,
    video_share: f64,
    stopping: bool,
    samples: Vec<Sample>,
}

impl Front<'_> {
    /// Starts coroutine `i`'s next request, or ends it.
    fn step(&mut self, i: usize) -> Result<(), String> {
        if self.stopping || self.made[i] >= self.requests {
            self.set(i, Task::Done);
            return Ok(());
        }
        self.made[i] += 1;
        let (class, nbytes) = next_request(&mut self.rngs[i], self.video_share);
        let asked = Instant::now();
        match self.pool.acquire_or_enqueue(nbytes).map_err(|e| format!("acquire failed: {e}"))? {
            Admission::Granted(lease) => self.decode(i, lease, class, asked),
            Admission::Queued(ticket) => {
                self.pool.notify_ticket(ticket, &self.notifier, i as u64).map_err(|e| format!("cannot wait in the loop: {e}"))?;
                self.set(i, Task::Waiting { ticket, class, asked });
            }
        }
        Ok(())
    }

    fn decode(&mut self, task: usize, lease: Lease, class: Class, asked: Instant) {
        self.set(task, Task::Decoding);
        self.executor.submit(Job { task, lease, class, waited: asked.elapsed() });
    }

    /// A decided ticket: collect its lease and hand the decode on.
    fn decided(&mut self, e: &Event) -> Result<(), String> {
        let i = e.user as usize;
        let Some(Task::Waiting { ticket, class, asked }) = self.tasks.get(i) else {
            return Ok(());
        };
        let (ticket, class, asked) = (*ticket, *class, *asked);
        if ticket != e.ticket {
            return Ok(());
        }
        let lease = self.pool.wait_ticket(ticket, Wait::timeout_ns(0)).map_err(|e| format!("acquire failed: {e}"))?;
        self.decode(i, lease, class, asked);
        Ok(())
    }

    /// At the end: coroutines still in line leave it.
    fn stop(&mut self) {
        self.stopping = true;
        for i in 0..self.tasks.len() {
            if let Task::Waiting { ticket, .. } = self.tasks[i] {
                let _ = self.pool.cancel_ticket(ticket);
                self.set(i, Task::Done);
            }
        }
    }

    /// Moves coroutine `i` to `to`, keeping the counts.
    fn set(&mut self, i: usize, to: Task) {
        let from = std::mem::replace(&mut self.tasks[i], to);
        let waits = |t: &Task| usize::from(matches!(t, Task::Waiting { .. }));
        let opens = |t: &Task| usize::from(!matches!(t, Task::Done));
        self.waiting = self.waiting + waits(&self.tasks[i]) - waits(&from);
        self.open = self.open + opens(&self.tasks[i]) - opens(&from);
    }

    fn waiting(&self) -> usize {
        self.waiting
    }

    fn busy(&self) -> bool {
        self.open > 0
    }
}

pub fn run(c: &Config, pool: &Arc<Pool>, executor_threads: usize) -> Result<(Vec<Sample>, LoopFigures), String> {
    let executor = Arc::new(Executor {
        queue: Mutex::new((VecDeque::new(), false)),
        ready: Condvar::new(),
        finished: Mutex::new(Vec::new()),
        doorbell: eventfd()?,
        decodes: AtomicU64::new(0),
        longest_pool_call_ns: AtomicU64::new(0),
    });
    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(executor_threads);
    for n in 0..executor_threads {
        let (ex, pool) = (Arc::clone(&executor), Arc::clone(pool));
        match thread::Builder::new().name(format!("executor-{n}")).spawn(move || ex.run(&pool)) {
            Ok(t) => threads.push(t),
            Err(e) => {
                executor.stop();
                threads.into_iter().for_each(|t| drop(t.join()));
                return Err(format!("cannot start executor thread {} of {executor_threads}: {e}", n + 1));
            }
        }
    }
    let result = drive(c, pool, &executor);
    executor.stop();
    for t in threads {
        t.join().map_err(|_| "an executor thread panicked".to_string())?;
    }
    let (samples, most_waiting, process_threads) = result?;
    let figures = LoopFigures {
        executor_threads,
        most_waiting,
        process_threads,
        executor_decodes: executor.decodes.load(Ordering::Relaxed),
        executor_longest_pool_call: Duration::from_nanos(executor.longest_pool_call_ns.load(Ordering::Relaxed)),
    };
    Ok((samples, figures))
}

/// The loop thread's work, until every coroutine is done.
fn drive(c: &Config, pool: &Arc<Pool>, executor: &Executor) -> Result<(Vec<Sample>, usize, u64), String> {
    let notifier = Notifier::new().map_err(|e| format!("cannot make a notifier: {e}"))?;
    let poller = Poller::new(&[notifier.fd(), executor.doorbell.as_raw_fd()])?;
    let requests = match c.length {
        Length::For(_) => u64::MAX,
        Length::Requests(n) => n,
    };
    let mut front = Front {
        pool,
        notifier,
        executor,
        tasks: (0..c.workers).map(|_| Task::Ready).collect(),
        waiting: 0,
        open: c.workers,
        rngs: (0..c.workers).map(|w| Rng::for_worker(c.seed, w)).collect(),
        made: vec![0; c.workers],
        requests,
        video_share: c.video_share,
        stopping: false,
        samples: Vec::new(),
    };
    for i in 0..c.workers {
        front.step(i)?;
    }
    let started = Instant::now();
    let (mut most_waiting, mut process_threads) = (front.waiting(), threads_now());
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let every = Duration::from_millis(if live { 100 } else { 1000 });
    let mut printed = started;
    let mut events: Vec<Event> = Vec::with_capacity(256);
    while front.busy() {
        if let Length::For(d) = c.length {
            if !front.stopping && started.elapsed() >= d {
                front.stop();
            }
        }
        poller.wait(every.min(Duration::from_millis(50)));
        clear(executor.doorbell.as_raw_fd());
        loop {
            events.clear();
            if front.notifier.drain(&mut events, 256) == 0 {
                break;
            }
            for e in &events {
                front.decided(e)?;
            }
        }
        let finished = std::mem::take(&mut *executor.finished.lock().unwrap_or_else(|e| e.into_inner()));
        for (task, sample) in finished {
            front.samples.push(sample);
            front.step(task)?;
        }
        most_waiting = most_waiting.max(front.waiting());
        if printed.elapsed() >= every {
            printed = Instant::now();
            process_threads = process_threads.max(threads_now());
            progress(&pool.stats(), started, live, false);
        }
    }
    process_threads = process_threads.max(threads_now());
    Ok((front.samples, most_waiting, process_threads))
}
