//! `mmpool demo --placed`: the demo on a placed pool. Every grant's range
//! is checked (aligned, inside the budget), and the fragmentation figures
//! are sampled at each grant; the table shows them at their worst.

use std::sync::Mutex;

use mmpool::pool::DEFAULT_ALIGNMENT;
use mmpool::{Lease, Pool, Stats};

use crate::demo::human;

/// The alignment of the demo's placed pool.
pub const ALIGNMENT: u64 = DEFAULT_ALIGNMENT;

/// Fragmentation seen at the grants of a run.
#[derive(Default)]
pub struct Fragmentation {
    worst: Mutex<Worst>,
}

#[derive(Default, Clone, Copy)]
struct Worst {
    grants: u64,
    /// The grant-time figures with the most free ranges.
    most_ranges: Option<Stats>,
    /// The grant-time figures whose largest free range was the smallest
    /// share of the free bytes.
    tightest: Option<Stats>,
    /// Grants whose range was misplaced (never, if placement is right).
    misplaced: u64,
}

fn share(s: &Stats) -> f64 {
    if s.available_bytes == 0 {
        1.0
    } else {
        s.largest_free_range as f64 / s.available_bytes as f64
    }
}

impl Fragmentation {
    /// Checks `lease`'s range and samples the pool's figures.
    pub fn note(&self, pool: &Pool, lease: &Lease) {
        let misplaced = match pool.lease_offset(lease.id) {
            Ok(at) => {
                at % ALIGNMENT != 0
                    || at
                        .checked_add(lease.nbytes)
                        .map_or(true, |end| end > pool.total_bytes())
            }
            Err(_) => true,
        };
        let s = pool.stats();
        let mut w = self.worst.lock().unwrap_or_else(|e| e.into_inner());
        w.grants += 1;
        w.misplaced += u64::from(misplaced);
        if w.most_ranges
            .map_or(true, |m| s.free_ranges > m.free_ranges)
        {
            w.most_ranges = Some(s);
        }
        if s.available_bytes > 0 && w.tightest.map_or(true, |t| share(&s) < share(&t)) {
            w.tightest = Some(s);
        }
    }

    /// The table's rows; `Err` when a grant's range was misplaced.
    pub fn report(&self) -> Result<(), String> {
        let w = *self.worst.lock().unwrap_or_else(|e| e.into_inner());
        let row = |label: &str, s: &Stats| {
            println!(
                "{label:<28}{} free in {} ranges, largest {} ({} bytes free, largest free range {} bytes, {} free ranges)",
                human(s.available_bytes),
                s.free_ranges,
                human(s.largest_free_range),
                s.available_bytes,
                s.largest_free_range,
                s.free_ranges
            );
        };
        println!();
        println!(
            "{:<28}{} grants, {} misplaced (offsets aligned to {ALIGNMENT} bytes, ranges inside the budget)",
            "placed grants", w.grants, w.misplaced
        );
        if let Some(s) = w.most_ranges {
            row("most free ranges", &s);
        }
        if let Some(s) = w.tightest {
            row("smallest largest range", &s);
        }
        if w.misplaced > 0 {
            return Err(format!(
                "{} grants were placed outside the budget or unaligned",
                w.misplaced
            ));
        }
        Ok(())
    }
}
