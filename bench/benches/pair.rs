//! The cost of one acquire+release pair, per implementation that
//! `mmpool-bench` compares (the same adapters, compiled in here from its
//! sources), alone and with threads competing for a pool that fits three.
//!
//!     cargo bench -p mmpool-bench --bench pair
//!
//! `mmpool-bench` has the other scenarios (wake-ups, starvation, wait times,
//! memory); this is the statistically careful view of the first two.

// The adapters carry methods only the command's scenarios use.
#![allow(dead_code)]

#[path = "../src/baselines.rs"]
mod baselines;
#[path = "../src/block_on.rs"]
mod block_on;
#[path = "../src/mmpool_c.rs"]
mod mmpool_c;
#[path = "../src/subject.rs"]
mod subject;

use baselines::{Floor, RefParkingLot, RefStd, Tokio};
use divan::{black_box, Bencher};
use mmpool_c::MmpoolC;
use subject::Subject;

const UNIT: u64 = 64 << 20;

fn main() {
    divan::main();
}

/// One thread, nobody else: what every grant costs at least.
#[divan::bench(types = [Floor, MmpoolC, RefStd, RefParkingLot, Tokio])]
fn uncontended<S: Subject>(bencher: Bencher) {
    let s = S::new(3 * UNIT);
    bencher.bench_local(|| {
        let g = s.acquire(black_box(UNIT));
        s.release(black_box(g));
    });
}

/// Threads acquiring and releasing at once on a pool that fits three leases
/// (with four threads, one is usually waiting).
#[divan::bench(types = [MmpoolC, RefStd, RefParkingLot, Tokio], threads = [2, 4])]
fn contended<S: Subject>(bencher: Bencher) {
    let s = S::new(3 * UNIT);
    bencher.bench(|| {
        let g = s.acquire(black_box(UNIT));
        s.release(black_box(g));
    });
}
