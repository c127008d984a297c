//! Loud when the budget is the bottleneck: a warning names the pool, the
//! request and the holders when a request waited in line past the threshold
//! or timed out, at most one line per pool per interval. One test in its own
//! binary, because the settings are read once per process (set below, before
//! any wait). The waits are made long by fixed holds; scheduling can only make
//! them longer.
#![cfg(not(loom))] // real threads and a shared pool; loom runs tests/loom.rs

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mmpool::log::{set_sink, Level};
use mmpool::pool::shared::OpenFlags;
use mmpool::{Error, Pool, Wait};

fn lines(seen: &Mutex<Vec<String>>) -> Vec<String> {
    seen.lock().unwrap().clone()
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Fills `pool`, has a thread wait for `nbytes`, holds the bytes `hold`
/// longer once it is in line, then frees them: the thread's wait is at least
/// `hold`.
fn wait_at_least(pool: &Arc<Pool>, nbytes: u64, hold: Duration) {
    let all = pool.acquire(pool.total_bytes(), Wait::Forever).unwrap();
    let waiter = {
        let pool = Arc::clone(pool);
        std::thread::spawn(move || pool.release(pool.acquire(nbytes, Wait::Forever).unwrap().id).unwrap())
    };
    wait_until("the waiter is in line", || pool.stats().waiters == 1);
    std::thread::sleep(hold);
    pool.release(all.id).unwrap();
    waiter.join().unwrap();
}

#[test]
fn slow_waits_and_timeouts_are_logged_with_the_holders_and_rate_limited() {
    std::env::set_var("MMPOOL_SLOW_WAIT_MS", "20");
    std::env::set_var("MMPOOL_SLOW_WAIT_LOG_INTERVAL_MS", "300");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    set_sink(Some(Box::new(move |level, line| {
        if level == Level::Warn && line.contains("bottleneck") {
            sink.lock().unwrap().push(line.to_string());
        }
    })));

    // Canary: requests that never wait write nothing.
    let pool = Pool::new(100).unwrap();
    for _ in 0..3 {
        let lease = pool.acquire(100, Wait::Forever).unwrap();
        pool.release(lease.id).unwrap();
    }
    assert_eq!(lines(&seen), Vec::<String>::new());

    // A wait of at least 40 ms (threshold 20): one line, naming the pool,
    // the request and what the holders have when it is written (the grant).
    wait_at_least(&pool, 60, Duration::from_millis(40));
    let got = lines(&seen);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("in-process pool 0x"), "{}", got[0]);
    assert!(got[0].contains("a request for 60 bytes waited "), "{}", got[0]);
    assert!(got[0].contains("in line before its grant (over 20 ms)"), "{}", got[0]);
    assert!(got[0].contains("60 of 100 bytes in use with it, 0 requests waiting"), "{}", got[0]);

    // Within the interval: held back, and counted in the next line.
    wait_at_least(&pool, 70, Duration::from_millis(40));
    assert_eq!(lines(&seen).len(), 1, "{:?}", lines(&seen));
    std::thread::sleep(Duration::from_millis(350));
    let all = pool.acquire(100, Wait::Forever).unwrap();
    assert!(matches!(pool.acquire(50, Wait::timeout_ns(30_000_000)), Err(Error::Timeout { .. })));
    let got = lines(&seen);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].contains("a request for 50 bytes timed out after "), "{}", got[1]);
    assert!(got[1].contains("100 of 100 bytes held, 0 requests waiting"), "{}", got[1]);
    assert!(got[1].ends_with("(1 more slow waits or timeouts since the last line)"), "{}", got[1]);
    pool.release(all.id).unwrap();

    // A shared pool: named in the line; its own rate limit.
    let name = format!("slow-wait-{}", std::process::id());
    let shared = Pool::open_shared(&name, 1000, OpenFlags { create: true, ..OpenFlags::default() }).unwrap();
    let held = shared.acquire(900, Wait::Forever).unwrap();
    // A ticket whose wait runs out but that stays in line has not timed out
    // (callers wait in slices so): no line, and none held back.
    let ticket = shared.enqueue(200).unwrap();
    assert!(matches!(shared.wait_ticket(ticket, Wait::timeout_ns(30_000_000)), Err(Error::Timeout { .. })));
    shared.cancel_ticket(ticket).unwrap();
    assert_eq!(lines(&seen).len(), 2, "{:?}", lines(&seen));
    assert!(matches!(shared.acquire(200, Wait::timeout_ns(30_000_000)), Err(Error::Timeout { .. })));
    let got = lines(&seen);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(!got[2].contains("more slow waits"), "{}", got[2]);
    assert!(got[2].starts_with(&format!("shared pool {name:?}: a request for 200 bytes timed out after ")), "{}", got[2]);
    assert!(got[2].contains("900 of 1000 bytes held, 0 requests waiting"), "{}", got[2]);
    shared.release(held.id).unwrap();
    mmpool::pool::shared::unlink(&name).unwrap();
    set_sink(None);
}
