//! `mmpool_set_reservation` and `mmpool_get_reservations`: bytes a process
//! holds on the device outside any lease, reported beside the budget.

use std::ffi::c_char;

use super::boundary::{out, utf8_arg};
use super::handle::{borrow, mmpool};
use super::status::mmpool_status;
use crate::pool::reservations::{MAX_LABEL_BYTES, MAX_RESERVATIONS};

/// Labels one process may hold at once in one pool.
pub const MMPOOL_MAX_RESERVATIONS: usize = 8;
/// Bytes of `mmpool_reservation.label`: a label of at most 32 bytes and its NUL.
pub const MMPOOL_RESERVATION_LABEL_SIZE: usize = 33;
const _: () = assert!(MMPOOL_MAX_RESERVATIONS == MAX_RESERVATIONS && MMPOOL_RESERVATION_LABEL_SIZE == MAX_LABEL_BYTES + 1);

/// One reservation as `mmpool_get_reservations` reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mmpool_reservation {
    /// The bytes reserved.
    pub bytes: u64,
    /// The process that holds them.
    pub pid: u32,
    /// The label, NUL-terminated (UTF-8, no control characters).
    pub label: [c_char; MMPOOL_RESERVATION_LABEL_SIZE],
}

/// Records that the calling process holds `bytes` on the device outside any
/// lease under `label` (its CUDA context, a decoder's surfaces), replacing
/// what the label held; `bytes` 0 removes the label. Reservations take
/// nothing from the budget: they are reported beside it
/// (`mmpool_stats.reserved_bytes`, `mmpool_get_reservations`, `mmpool
/// status`, the metrics), so that an engine subtracts one figure from its
/// KV cache: the total plus the reservations.
///
/// An in-process pool keeps them for the pool; a shared pool for each
/// attached process, until that process detaches or dies. Thread-safe.
///
/// Errors: `NULL_ARGUMENT` (`pool`, `label`), `INVALID_ARGUMENT` (a label
/// that is empty, over 32 bytes, not UTF-8 or holding control characters;
/// `bytes` above 2^60; a new label when the process already holds
/// `MMPOOL_MAX_RESERVATIONS`), `SYSTEM` (a shared pool damaged under this process).
#[no_mangle]
pub extern "C" fn mmpool_set_reservation(pool: *mut mmpool, label: *const c_char, bytes: u64) -> mmpool_status {
    boundary!("mmpool_set_reservation", {
        // SAFETY: the C contract: `pool` is a held handle; `label` is NULL or
        // a NUL-terminated string.
        let (pool, label) = unsafe { (borrow(pool, "pool")?, utf8_arg(label, "label")?) };
        pool.set_reservation(label, bytes)?;
        Ok(())
    })
}

/// Lists the reservations recorded in `pool` (every attached process's for
/// a shared pool): writes the first `min(capacity, count)` into `out` and
/// the count of all of them into `*out_count`. `out` may be NULL when
/// `capacity` is 0 (to learn the count). Thread-safe; a moment's picture.
///
/// Errors: `NULL_ARGUMENT` (`pool`, `out_count`, or `out` with a non-zero
/// `capacity`), `SYSTEM` (a shared pool damaged under this process).
#[no_mangle]
pub extern "C" fn mmpool_get_reservations(
    pool: *const mmpool,
    out: *mut mmpool_reservation,
    capacity: usize,
    out_count: *mut usize,
) -> mmpool_status {
    boundary!("mmpool_get_reservations", {
        // SAFETY: the C contract: `pool` is a held handle; `out_count` is NULL or writable.
        let (pool, count) = unsafe { (borrow(pool, "pool")?, self::out(out_count, "out_count")?) };
        if capacity > 0 && out.is_null() {
            return Err(super::boundary::Failure::Null("out"));
        }
        let held = pool.reservations()?;
        for (i, h) in held.iter().take(capacity).enumerate() {
            let mut label = [0 as c_char; MMPOOL_RESERVATION_LABEL_SIZE];
            for (dst, &b) in label.iter_mut().zip(h.reservation.label.as_bytes().iter().take(MAX_LABEL_BYTES)) {
                *dst = b as c_char;
            }
            let record = mmpool_reservation { bytes: h.reservation.bytes, pid: h.pid, label };
            // SAFETY: the C contract: `out` points to `capacity` writable records; `i < capacity`.
            unsafe { out.add(i).write(record) };
        }
        *count = held.len();
        Ok(())
    })
}
