//! Placed shared pools: the placement lives in the segment, so every
//! process sees the same ranges; a dead process's ranges come back with its
//! bytes; the random sequence of the in-process tests runs here too.
#![cfg(not(loom))]

#[path = "support/placed_sequence.rs"]
mod placed_sequence;
#[path = "support/processes.rs"]
mod processes;

use std::time::Duration;

use mmpool::pool::shared::{Limits, OpenFlags, SharedOptions};
use mmpool::pool::sync::Arc;
use mmpool::{Error, Pool, Wait};
use processes::{park, say, Helper, Name, ROLE};

const CREATE: OpenFlags = OpenFlags {
    create: true,
    exclusive: false,
    group: false,
};

fn open(name: &str, total: u64, alignment: u64, flags: OpenFlags) -> Result<Arc<Pool>, Error> {
    Pool::open_shared_with(
        name,
        &SharedOptions {
            total_bytes: total,
            flags,
            limits: Limits::default(),
            alignment,
        },
    )
}

fn now() -> Wait {
    Wait::timeout_ns(0)
}

/// The body of every helper process; a no-op when run as a plain test.
#[test]
#[ignore = "run by the other tests as a helper process"]
fn helper() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let args: Vec<&str> = role.split(' ').collect();
    // Stop (SIGSTOP) inside the pool's lock, half-way through a grant.
    if args[0] == "stop-in-lock" {
        let pool = open(args[1], 0, 0, OpenFlags::default()).unwrap();
        pool.shared_backend()
            .unwrap()
            .debug_stop_inside_lock(args[2].parse().unwrap())
            .unwrap();
    }
    // Acquire and report the range, then hold it until killed.
    if args[0] == "hold" {
        let pool = open(args[1], 0, 0, OpenFlags::default()).unwrap();
        let lease = pool
            .acquire(args[2].parse().unwrap(), Wait::Forever)
            .unwrap();
        say(&format!("held {}", pool.lease_offset(lease.id).unwrap()));
        park();
    }
    // Try to acquire each size, report the ranges granted, hold them until
    // killed.
    if args[0] == "grab" {
        let pool = open(args[1], 0, 0, OpenFlags::default()).unwrap();
        let got: Vec<String> = args[2..]
            .iter()
            .filter_map(|n| {
                let n: u64 = n.parse().unwrap();
                let l = pool.try_acquire(n).ok()?;
                Some(format!("{}:{n}", pool.lease_offset(l.id).unwrap()))
            })
            .collect();
        say(&format!("got {}", got.join(" ")));
        park();
    }
}

#[test]
fn ranges_are_placed_in_the_segment_for_every_attachment() {
    let name = Name::new("placed-basics");
    assert!(matches!(
        open(&name.0, 4096, 3, CREATE),
        Err(Error::InvalidArgument(_))
    ));
    let p = open(&name.0, 4096, 256, CREATE).unwrap();
    assert!(p.is_placed());
    assert_eq!(p.alignment(), 256);
    // A second attachment (as another process would) sees the same ranges.
    let q = open(&name.0, 0, 0, OpenFlags::default()).unwrap();
    assert_eq!(q.alignment(), 256);
    assert!(matches!(
        open(&name.0, 0, 512, OpenFlags::default()),
        Err(Error::InvalidArgument(_))
    ));
    let a = p.acquire(100, now()).unwrap();
    let b = q.try_acquire(300).unwrap();
    assert_eq!(
        (p.lease_offset(a.id).unwrap(), q.lease_offset(b.id).unwrap()),
        (0, 256)
    );
    assert_eq!(
        p.lease_offset(b.id).unwrap(),
        256,
        "any process reads any lease's offset"
    );
    let s = p.stats();
    assert_eq!(
        (s.available_bytes, s.free_ranges, s.largest_free_range),
        (4096 - 400, 2, 4096 - 768)
    );
    assert!(matches!(p.set_total(8192), Err(Error::InvalidArgument(_))));
    // Resize in place, split and merge.
    assert!(matches!(
        p.resize_lease(a.id, 257, now()),
        Err(Error::WouldBlock { .. })
    ));
    assert_eq!(p.resize_lease(a.id, 256, now()).unwrap().nbytes, 256);
    let (_, tail) = p.split_lease(a.id, 56).unwrap();
    assert_eq!(p.lease_offset(tail.id).unwrap(), 200);
    assert_eq!(p.merge_leases(a.id, tail.id).unwrap().nbytes, 256);
    p.release(a.id).unwrap();
    q.release(b.id).unwrap();
    let s = q.stats();
    assert_eq!(
        (s.available_bytes, s.free_ranges, s.largest_free_range),
        (4096, 1, 4096)
    );
    // Not placed: no offsets.
    let plain = Name::new("placed-plain");
    let r = open(&plain.0, 4096, 0, CREATE).unwrap();
    let l = r.acquire(10, now()).unwrap();
    assert!(matches!(
        r.lease_offset(l.id),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        (r.stats().free_ranges, r.stats().largest_free_range),
        (1, 4086)
    );
}

#[test]
fn a_hand_off_carries_the_offset_and_holds_the_range_across_attachments() {
    use mmpool::pool::TOKEN_PLACED;
    let name = Name::new("placed-handoff");
    let p = open(&name.0, 4096, 256, CREATE).unwrap();
    let q = open(&name.0, 0, 0, OpenFlags::default()).unwrap();
    let _a = p.try_acquire(1000).unwrap();
    let b = p.try_acquire(1000).unwrap();
    let t = p.share_lease(b.id, 2, None, false).unwrap();
    assert_eq!((t.flags, t.offset), (TOKEN_PLACED, 1024));
    assert!(matches!(p.lease_offset(b.id), Err(Error::InvalidLease(_))));
    assert_eq!(
        q.stats().largest_free_range,
        4096 - 2048,
        "the hand-off holds the range"
    );
    q.complete_part(&t, 0).unwrap();
    q.complete_part(&t, 1).unwrap();
    let s = q.stats();
    assert_eq!(
        (s.available_bytes, s.free_ranges, s.largest_free_range),
        (4096 - 1000, 1, 4096 - 1024)
    );
    let c = q.try_acquire(3000).unwrap();
    assert_eq!(
        q.lease_offset(c.id).unwrap(),
        1024,
        "placed where the hand-off's range was"
    );
}

#[test]
fn a_large_request_at_the_head_waits_for_a_range_across_attachments() {
    let name = Name::new("placed-fifo");
    let p = open(&name.0, 1024, 256, CREATE).unwrap();
    let q = open(&name.0, 0, 0, OpenFlags::default()).unwrap();
    placed_sequence::a_large_head_is_not_passed(&p, &q);
}

#[test]
fn kill_9_of_a_holder_frees_its_range() {
    let name = Name::new("placed-kill");
    let p = open(&name.0, 1 << 20, 4096, CREATE).unwrap();
    let mine = p.try_acquire(1000).unwrap();
    let mut holder = Helper::spawn("hold", &[&name.0, "500000"], &[]);
    assert_eq!(holder.report(), "held 4096");
    // The rest does not fit while the holder lives: the request waits.
    let want = (1 << 20) - 4096;
    let t = p.enqueue(want).unwrap();
    assert!(matches!(
        p.wait_ticket(t, now()),
        Err(Error::Timeout { .. })
    ));
    holder.kill();
    let got = p
        .wait_ticket(
            t,
            Wait::timeout_ns(Duration::from_secs(30).as_nanos() as u64),
        )
        .unwrap();
    assert_eq!(
        p.lease_offset(got.id).unwrap(),
        4096,
        "the dead holder's range was placed again"
    );
    p.release(got.id).unwrap();
    p.release(mine.id).unwrap();
    let s = p.stats();
    assert_eq!(
        (s.available_bytes, s.free_ranges, s.largest_free_range),
        (1 << 20, 1, 1 << 20)
    );
}

/// Another process attaches to pool `name`, takes ranges of the sizes
/// `sizes` with try, reports them and is killed (SIGKILL): while it lives
/// its ranges are aligned, inside, disjoint from `mine` (the ranges this
/// process holds) and from each other, and counted; once the reaper has
/// seen it die (waited for with a deadline) its bytes are free again.
/// The caller then checks the free ranges and this process's leases.
/// Returns how many ranges the child held.
fn crash_a_holder(name: &str, p: &Pool, mine: &[(u64, u64)], sizes: &[u64]) -> u64 {
    let (total, align) = (p.total_bytes(), p.alignment());
    let args: Vec<String> = std::iter::once(name.to_string())
        .chain(sizes.iter().map(u64::to_string))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = Helper::spawn("grab", &args, &[]);
    let report = child.report();
    let theirs: Vec<(u64, u64)> = report
        .strip_prefix("got")
        .unwrap_or_else(|| panic!("helper said {report:?}"))
        .split_whitespace()
        .map(|r| {
            let (off, n) = r.split_once(':').unwrap();
            (off.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    let mut all: Vec<(u64, u64, bool)> = mine.iter().map(|&(o, n)| (o, n, false)).collect();
    all.extend(theirs.iter().map(|&(o, n)| (o, n, true)));
    all.sort_unstable();
    let mut at = 0;
    for &(off, n, child_range) in &all {
        assert!(
            off >= at,
            "ranges overlap at {off} (the child's: {child_range})"
        );
        assert!(off + n <= total, "inside");
        at = off + n;
    }
    for &(off, _) in &theirs {
        assert_eq!(off % align, 0, "the child's range is aligned");
    }
    let mine_bytes: u64 = mine.iter().map(|r| r.1).sum();
    let their_bytes: u64 = theirs.iter().map(|r| r.1).sum();
    assert_eq!(p.available_bytes(), total - mine_bytes - their_bytes);
    child.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while p.stats().available_bytes != total - mine_bytes {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead child's {their_bytes} bytes never came back"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    theirs.len() as u64
}

#[test]
fn long_random_sequence_over_a_shared_placed_pool() {
    let name = Name::new("placed-sequence");
    let p = open(&name.0, 1 << 24, 4096, CREATE).unwrap();
    // Fewer steps than in process by default: each check takes the segment
    // lock per live lease. scripts/test-reliability.sh runs 10^5 in a release
    // build (MMPOOL_PLACED_SHARED_STEPS).
    let steps = std::env::var("MMPOOL_PLACED_SHARED_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15_000);
    // Every 1,000 steps a holder in another process dies.
    let mut rng = placed_sequence::Rng(11);
    let sum = placed_sequence::random_sequence_with(&p, 7, steps, 1_000, &mut |p, mine| {
        let sizes: Vec<u64> = (0..1 + rng.below(4))
            .map(|_| 1 + rng.below(p.total_bytes() / 20))
            .collect();
        crash_a_holder(&name.0, p, mine, &sizes)
    });
    assert_eq!(sum.crashes, u64::from(steps / 1_000));
    assert!(sum.crash_ranges > 0, "no dead holder held a range");
    assert!(sum.handoffs_finished > 0);
}

#[test]
fn kill_9_inside_the_lock_rebuilds_the_placement_from_the_entries() {
    let name = Name::new("placed-inlock");
    let p = open(&name.0, 1 << 20, 4096, CREATE).unwrap();
    let a = p.try_acquire(1000).unwrap();
    let b = p.try_acquire(5000).unwrap();
    p.release(a.id).unwrap();
    let before = p.stats();
    // Attached before the lock is held (attaching takes it).
    let q = open(&name.0, 0, 0, OpenFlags::default()).unwrap();
    let mut stopped = Helper::spawn("stop-in-lock", &[&name.0, "300"], &[]);
    stopped.wait_stopped();
    // The next to lock takes the lock over from the dead holder and repairs
    // the segment: the placement is rebuilt from the entries.
    let backend = p.shared_backend().unwrap();
    let taker = std::thread::spawn(move || {
        let c = q.acquire(2000, Wait::Forever).unwrap();
        (q.lease_offset(c.id).unwrap(), q)
    });
    let since = std::time::Instant::now();
    while !backend.debug_lock_contended() {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the taker never waited on the lock"
        );
        std::thread::yield_now();
    }
    stopped.kill();
    let (at, _q) = taker.join().unwrap();
    assert_eq!(
        at, 0,
        "b's range at 4096 stayed taken; the free one at 0 was placed"
    );
    assert_eq!(p.lease_offset(b.id).unwrap(), 4096);
    let after = p.stats();
    assert_eq!(
        after.available_bytes,
        before.available_bytes - 2000,
        "the half-made grant was undone"
    );
    assert_eq!(after.free_ranges, before.free_ranges);
}
