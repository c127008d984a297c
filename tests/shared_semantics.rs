//! The shared backend follows the same rules as the in-process pool, checked
//! here within one process (the tests with several processes are in
//! shared_processes.rs). Each test uses its own pool name and removes it.
#![cfg(not(loom))] // these tests use the C boundary and real threads; loom runs tests/loom.rs

use mmpool::pool::shared::{self, Limits, OpenFlags, SharedOptions};
use mmpool::pool::sync::Arc;
use mmpool::{Error, Pool, Ticket, Wait};

const CREATE: OpenFlags = OpenFlags { create: true, exclusive: false, group: false };

/// A pool name unique to this process and test; the file is removed on drop.
struct Name(String);

impl Name {
    fn new(test: &str) -> Name {
        let name = format!("test-{}-{test}", std::process::id());
        let _ = shared::unlink(&name);
        Name(name)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shared::unlink(&self.0);
    }
}

fn open(name: &Name, total: u64) -> Arc<Pool> {
    Pool::open_shared(&name.0, total, CREATE).unwrap()
}

fn soon() -> Wait {
    Wait::timeout_ns(20_000_000)
}

fn assert_whole(pool: &Pool) {
    assert_eq!(pool.available_bytes() + pool.leased_bytes(), pool.total_bytes(), "{:?}", pool.stats());
}

#[test]
fn acquire_release_and_double_release() {
    let name = Name::new("basic");
    let pool = open(&name, 100);
    assert!(pool.is_shared());
    let a = pool.acquire(60, Wait::Forever).unwrap();
    assert_eq!(a.nbytes, 60);
    assert_eq!(pool.available_bytes(), 40);
    assert_eq!(pool.lease(a.id).map(|l| l.nbytes), Some(60));
    assert!(matches!(pool.try_acquire(41), Err(Error::WouldBlock { requested: 41, available: 40, queued: false })));
    pool.release(a.id).unwrap();
    pool.release(a.id).unwrap(); // a no-op
    assert_eq!(pool.available_bytes(), 100);
    assert!(matches!(pool.release(0), Err(Error::InvalidLease(_))));
    let other = Pool::new(10).unwrap();
    let foreign = other.acquire(1, Wait::Forever).unwrap();
    assert!(matches!(pool.release(foreign.id), Err(Error::InvalidLease(_))), "an in-process pool's lease");
    assert!(matches!(pool.acquire(101, Wait::Forever), Err(Error::ExceedsCapacity { requested: 101, total: 100 })));
    let s = pool.stats();
    assert_eq!((s.grants, s.would_blocks, s.capacity_rejections, s.outstanding_leases), (1, 1, 1, 0));
    assert_eq!(s.peak_in_use_bytes, 60);
}

#[test]
fn fifo_a_small_request_waits_behind_a_large_one() {
    let name = Name::new("fifo");
    let pool = open(&name, 10);
    let held = pool.acquire(8, Wait::Forever).unwrap();
    let big = pool.enqueue(5).unwrap();
    // 2 bytes are free, but the 5-byte request came first.
    assert!(matches!(pool.try_acquire(1), Err(Error::WouldBlock { queued: true, .. })));
    assert!(matches!(pool.acquire(1, soon()), Err(Error::Timeout { requested: 1 })));
    let small = pool.enqueue(1).unwrap();
    assert!(matches!(pool.wait_ticket(small, Wait::timeout_ns(0)), Err(Error::Timeout { .. })));
    pool.release(held.id).unwrap();
    let big = pool.wait_ticket(big, Wait::timeout_ns(0)).unwrap();
    let small = pool.wait_ticket(small, Wait::timeout_ns(0)).unwrap();
    assert_eq!((big.nbytes, small.nbytes, pool.available_bytes()), (5, 1, 4));
    assert!(matches!(pool.wait_ticket(Ticket { id: small.id }, Wait::timeout_ns(0)), Err(Error::InvalidLease(_))));
    assert!(matches!(pool.release(Ticket { id: small.id }.id), Ok(())));
    pool.release(big.id).unwrap();
    assert_whole(&pool);
}

#[test]
fn a_waiter_in_another_thread_is_woken_by_the_release_that_grants_it() {
    let name = Name::new("wake");
    let pool = open(&name, 4);
    let held = pool.acquire(4, Wait::Forever).unwrap();
    let p = pool.clone();
    let waiter = std::thread::spawn(move || p.acquire(3, Wait::Forever));
    while pool.stats().waiters == 0 {
        std::thread::yield_now();
    }
    pool.release(held.id).unwrap();
    let lease = waiter.join().unwrap().unwrap();
    assert_eq!(lease.nbytes, 3);
    assert_eq!(pool.stats().waited_grants, 1);
    pool.release(lease.id).unwrap();
    assert_whole(&pool);
}

#[test]
fn tickets_cancel_and_resize() {
    let name = Name::new("tickets");
    let pool = open(&name, 10);
    let a = pool.acquire(6, Wait::Forever).unwrap();
    let t = pool.enqueue(6).unwrap();
    pool.cancel_ticket(t).unwrap();
    pool.cancel_ticket(t).unwrap(); // finished: a no-op
    assert_eq!(pool.stats().waiters, 0);
    // Grow by 4 (fits), then by 1 more (does not: times out, keeps its size).
    let a = pool.resize_lease(a.id, 10, Wait::Forever).unwrap();
    assert_eq!((a.nbytes, pool.available_bytes()), (10, 0));
    assert!(matches!(pool.resize_lease(a.id, 11, Wait::Forever), Err(Error::ExceedsCapacity { .. })));
    let a = pool.resize_lease(a.id, 3, Wait::Forever).unwrap();
    assert_eq!(pool.available_bytes(), 7);
    // A growth that must wait is granted by a release.
    let b = pool.acquire(7, Wait::Forever).unwrap();
    let p = pool.clone();
    let grow = std::thread::spawn(move || p.resize_lease(a.id, 5, Wait::Forever));
    while pool.stats().waiters == 0 {
        std::thread::yield_now();
    }
    pool.resize_lease(b.id, 5, Wait::Forever).unwrap();
    assert_eq!(grow.join().unwrap().unwrap().nbytes, 5);
    assert_eq!(pool.lease(a.id).unwrap().nbytes, 5);
    pool.release(a.id).unwrap();
    pool.release(b.id).unwrap();
    assert!(matches!(pool.resize_lease(a.id, 1, Wait::Forever), Err(Error::InvalidLease(_))));
    assert_whole(&pool);
}

#[test]
fn set_total_and_close_reach_waiters() {
    let name = Name::new("close");
    let pool = open(&name, 10);
    let a = pool.acquire(10, Wait::Forever).unwrap();
    let big = pool.enqueue(9).unwrap();
    let small = pool.enqueue(2).unwrap();
    pool.set_total(5).unwrap();
    assert!(matches!(pool.wait_ticket(big, Wait::timeout_ns(0)), Err(Error::ExceedsCapacity { requested: 9, total: 5 })));
    pool.set_total(12).unwrap(); // 2 free now: the small one is granted
    assert_eq!(pool.wait_ticket(small, Wait::timeout_ns(0)).unwrap().nbytes, 2);
    let late = pool.enqueue(5).unwrap();
    pool.close();
    assert!(pool.is_closed());
    assert!(matches!(pool.wait_ticket(late, Wait::Forever), Err(Error::Closed)));
    assert!(matches!(pool.acquire(1, Wait::Forever), Err(Error::Closed)));
    pool.release(a.id).unwrap(); // releases still work
    pool.release(small.id).unwrap();
    assert_eq!(pool.available_bytes(), 12);
}

#[test]
fn attaching_checks_the_total_and_the_flags() {
    let name = Name::new("attach");
    let first = open(&name, 1000);
    let err = Pool::open_shared(&name.0, 999, CREATE).err().unwrap();
    let Error::InvalidArgument(text) = err else { panic!("{err:?}") };
    assert!(text.contains("1000") && text.contains("999"), "{text}");
    let second = Pool::open_shared(&name.0, 0, OpenFlags::default()).unwrap();
    assert_eq!(second.total_bytes(), 1000);
    let lease = second.acquire(600, Wait::Forever).unwrap();
    assert_eq!(first.available_bytes(), 400, "one budget for both handles");
    let exclusive = OpenFlags { exclusive: true, ..CREATE };
    assert!(matches!(Pool::open_shared(&name.0, 1000, exclusive), Err(Error::InvalidArgument(_))));
    // Only the process that holds a lease may release it (handles of one
    // process count as separate attachments).
    assert!(matches!(first.release(lease.id), Err(Error::InvalidLease(_))));
    second.release(lease.id).unwrap();
    assert!(matches!(Pool::open_shared("no/slash", 1, CREATE), Err(Error::InvalidArgument(_))));
    assert!(matches!(Pool::open_shared(&format!("{}-missing", name.0), 0, OpenFlags::default()), Err(Error::System(_))));
    assert!(matches!(OpenFlags::from_bits(8), Err(Error::InvalidArgument(_))));
}

#[test]
fn dropping_the_last_handle_detaches_and_gives_back_tickets() {
    let name = Name::new("detach");
    let keeper = open(&name, 10);
    let other = Pool::open_shared(&name.0, 0, OpenFlags::default()).unwrap();
    let lease = keeper.acquire(10, Wait::Forever).unwrap();
    let _ticket = other.enqueue(4).unwrap();
    assert_eq!(keeper.stats().waiters, 1);
    drop(other);
    assert_eq!(keeper.stats().waiters, 0, "the detached process's ticket left the line");
    let snap = keeper.shared_snapshot().unwrap().unwrap();
    assert_eq!(snap.procs.len(), 1);
    assert_eq!((snap.procs[0].leases, snap.procs[0].bytes_held), (1, 10));
    keeper.release(lease.id).unwrap();
    assert_whole(&keeper);
}

#[test]
fn a_lease_keeps_its_handle_attached() {
    let name = Name::new("keep");
    let watcher = open(&name, 10);
    let pool = Pool::open_shared(&name.0, 0, OpenFlags::default()).unwrap();
    let lease = pool.acquire(3, Wait::Forever).unwrap();
    let weak = Arc::downgrade(&pool);
    drop(pool);
    assert_eq!(watcher.available_bytes(), 7, "the lease still holds its bytes");
    let pool = weak.upgrade().expect("the lease keeps the handle alive");
    pool.release(lease.id).unwrap();
    drop(pool);
    assert!(weak.upgrade().is_none());
    assert_eq!(watcher.available_bytes(), 10);
}

#[test]
fn a_pool_nobody_is_attached_to_starts_over_on_create_and_not_otherwise() {
    let name = Name::new("abandoned");
    let pool = open(&name, 10);
    let lease = pool.acquire(4, Wait::Forever).unwrap();
    pool.release(lease.id).unwrap();
    pool.close();
    drop(pool); // the last process detaches; the file stays
    let attached = Pool::open_shared(&name.0, 0, OpenFlags::default()).unwrap();
    assert!(attached.is_closed(), "attaching alone changes nothing");
    drop(attached);
    let reopened = Pool::open_shared(&name.0, 20, CREATE).unwrap();
    assert!(!reopened.is_closed());
    assert_eq!((reopened.total_bytes(), reopened.available_bytes(), reopened.stats().grants), (20, 20, 0));
}

/// Writes a file where a segment belongs, as a creator that died (or is
/// still busy) before finishing would leave it.
fn unfinished(name: &Name, bytes: &[u8]) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let path = shared::path_of(&name.0);
    let mut f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path).unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

#[test]
fn a_segment_its_creator_left_unfinished_is_rebuilt() {
    let name = Name::new("unfinished");
    unfinished(&name, b"");
    let err = Pool::open_shared(&name.0, 0, OpenFlags::default()).err().unwrap();
    assert!(matches!(&err, Error::InvalidArgument(t) if t.contains("unfinished")), "{err:?}");
    let pool = open(&name, 77);
    assert_eq!(pool.total_bytes(), 77);
    let lease = pool.acquire(77, Wait::Forever).unwrap();
    pool.release(lease.id).unwrap();
    assert_whole(&pool);
}

#[test]
fn a_segment_whose_creator_is_still_at_work_is_waited_for_not_rebuilt() {
    use std::os::fd::AsRawFd;
    let name = Name::new("creating");
    let file = unfinished(&name, b"");
    // Play a live creator: hold the file's init byte lock (an OFD lock of
    // this descriptor, which the library's own descriptor conflicts with).
    // SAFETY: a zeroed flock is valid; fcntl with a valid descriptor and flock.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = shared::SharedPool::debug_init_lock_offset();
    fl.l_len = 1;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) }, 0);
    let err = Pool::open_shared(&name.0, 77, CREATE).err().unwrap();
    assert!(matches!(&err, Error::System(t) if t.contains("still being created")), "{err:?}");
    assert_eq!(std::fs::metadata(shared::path_of(&name.0)).unwrap().len(), 0, "left alone");
    drop(file); // the creator dies
    assert_eq!(open(&name, 77).total_bytes(), 77);
}

#[test]
fn a_file_others_may_read_or_of_another_size_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let name = Name::new("mode");
    drop(open(&name, 10));
    let path = shared::path_of(&name.0);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Pool::open_shared(&name.0, 0, OpenFlags::default()).err().unwrap();
    assert!(matches!(&err, Error::InvalidArgument(t) if t.contains("0644")), "{err:?}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(4096).unwrap();
    let err = Pool::open_shared(&name.0, 0, OpenFlags::default()).err().unwrap();
    assert!(matches!(&err, Error::System(t) if t.contains("truncated")), "{err:?}");
    // Longer than a segment of this layout: refused as well, not half-mapped.
    f.set_len(16 << 20).unwrap();
    let err = Pool::open_shared(&name.0, 0, OpenFlags::default()).err().unwrap();
    assert!(matches!(&err, Error::System(t) if t.contains("not an mmpool segment")), "{err:?}");
}

// ---- limits chosen at creation ----------------------------------------------------

fn with_limits(name: &Name, total: u64, max_processes: u32, max_leases: u32, max_waiters: u32) -> Result<Arc<Pool>, Error> {
    let limits = Limits { max_processes, max_leases, max_waiters, ..Limits::default() };
    Pool::open_shared_with(&name.0, &SharedOptions { total_bytes: total, flags: CREATE, limits, alignment: 0 })
}

#[test]
fn limits_set_at_creation_are_kept_shown_and_enforced() {
    let name = Name::new("limits");
    let pool = with_limits(&name, 100, 2, 3, 1).unwrap();
    let snap = pool.shared_snapshot().unwrap().unwrap();
    assert_eq!(snap.limits, Limits { max_processes: 2, max_leases: 3, max_waiters: 1, max_handoffs: 256 });
    // Processes: each handle is an attachment of its own; a third finds no slot.
    let second = Pool::open_shared(&name.0, 0, OpenFlags::default()).unwrap();
    let third = Pool::open_shared(&name.0, 0, OpenFlags::default()).map(|_| ());
    assert!(matches!(&third, Err(Error::System(m)) if m.contains("all 2 process slots") && m.contains("max_processes")), "{third:?}");
    drop(second);
    // Waiters: one may wait; the second is refused, naming the limit.
    let a = pool.acquire(100, Wait::Forever).unwrap();
    let t = pool.enqueue(1).unwrap();
    let over = pool.enqueue(1);
    assert!(matches!(&over, Err(Error::System(m)) if m.contains("1 requests already wait") && m.contains("max_waiters")), "{over:?}");
    pool.cancel_ticket(t).unwrap();
    pool.release(a.id).unwrap();
    // Leases plus tickets: three, then none.
    let leases: Vec<_> = (0..3).map(|_| pool.acquire(1, Wait::Forever).unwrap()).collect();
    let fourth = pool.acquire(1, Wait::Forever);
    assert!(matches!(&fourth, Err(Error::System(m)) if m.contains("all 3 lease and ticket records") && m.contains("max_leases")), "{fourth:?}");
    for l in leases {
        pool.release(l.id).unwrap();
    }
    assert_whole(&pool);
}

#[test]
fn an_attach_asking_for_other_limits_is_refused_naming_both() {
    let name = Name::new("limits-mismatch");
    let _pool = with_limits(&name, 100, 0, 64, 0).unwrap();
    let got = _pool.shared_snapshot().unwrap().unwrap().limits;
    assert_eq!(got, Limits { max_processes: 128, max_leases: 64, max_waiters: 64, max_handoffs: 256 }, "defaults fill what was not asked");
    let err = with_limits(&name, 0, 0, 65, 0).map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("max_leases 64") && m.contains("65 was asked")), "{err:?}");
    assert!(with_limits(&name, 0, 128, 64, 64).is_ok(), "the same limits attach");
    assert!(with_limits(&name, 0, 0, 0, 0).is_ok(), "0 accepts the pool's");
}

#[test]
fn limits_out_of_bounds_are_refused_naming_the_bounds() {
    let name = Name::new("limits-bounds");
    for (p, e, w, what) in [(255, 0, 0, "max processes 255"), (0, 65537, 0, "max leases and tickets 65537"), (0, 8, 9, "max waiters 9")] {
        let err = with_limits(&name, 100, p, e, w).map(|_| ()).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains(what) && m.contains("out of range")), "{err:?}");
    }
    assert!(!std::path::Path::new(&shared::path_of(&name.0)).exists(), "nothing was created");
    let big = with_limits(&name, 100, 254, 65536, 65536).unwrap();
    assert_eq!(big.shared_snapshot().unwrap().unwrap().limits.max_leases, 65536);
}

#[test]
fn threads_racing_fast_and_full_paths_keep_the_budget_and_exact_counts() {
    // Uncontended calls take the fast path, contended ones (the lock held by
    // another thread, requests in line) the full one; the two interleave here.
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 2_000;
    let name = Name::new("fastrace");
    let pool = open(&name, 10);
    let held = AtomicU64::new(0);
    let (granted, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (pool, held, granted, refused) = (&pool, &held, &granted, &refused);
            s.spawn(move || {
                for k in 0..ROUNDS {
                    let nbytes = 1 + (t * 7 + k * 3) % 6;
                    let lease = if k % 3 == 0 {
                        match pool.try_acquire(nbytes) {
                            Ok(l) => l,
                            Err(Error::WouldBlock { .. }) => {
                                refused.fetch_add(1, SeqCst);
                                continue;
                            }
                            Err(e) => panic!("try_acquire: {e:?}"),
                        }
                    } else {
                        pool.acquire(nbytes, Wait::Forever).unwrap()
                    };
                    assert_eq!(lease.nbytes, nbytes);
                    granted.fetch_add(1, SeqCst);
                    // Counted after the grant and before the release: never
                    // more than the pool actually lends, so never over its total.
                    let now = held.fetch_add(nbytes, SeqCst) + nbytes;
                    assert!(now <= 10, "{now} bytes held at once in a pool of 10");
                    std::thread::yield_now();
                    held.fetch_sub(nbytes, SeqCst);
                    pool.release(lease.id).unwrap();
                    pool.release(lease.id).unwrap(); // released: a no-op
                }
            });
        }
    });
    let s = pool.stats();
    assert_eq!((s.available_bytes, s.outstanding_leases, s.waiters), (10, 0, 0), "{s:?}");
    assert_eq!(s.grants, granted.load(SeqCst));
    assert_eq!(s.would_blocks, refused.load(SeqCst));
    assert!(s.peak_in_use_bytes <= 10 && s.peak_in_use_bytes >= 6, "{s:?}");
    let sizes: u64 = pool.histograms().unwrap().sizes.iter().sum();
    assert_eq!(sizes, s.grants, "every grant counted once in the size histogram");
    assert_whole(&pool);
}
