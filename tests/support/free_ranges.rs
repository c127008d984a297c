//! The free ranges of a placed pool counted the slow way, from its used
//! ranges: what the tests check the allocator's figures against. Included
//! with `#[path]`.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// The free gaps between the used ranges (`offset -> length`, none of
/// length 0), in address order, each maximal.
pub fn gaps(used: &BTreeMap<u64, u64>, total: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for (&s, &l) in used {
        if s > at {
            out.push((at, s - at));
        }
        at = s + l;
    }
    if at < total {
        out.push((at, total - at));
    }
    out
}

/// Room for an aligned range in the gap `[start, start + len)`: from its
/// first aligned offset to its end.
pub fn room(start: u64, len: u64, align: u64) -> u64 {
    (start + len).saturating_sub(start.div_ceil(align) * align)
}
