//! Fixed reservations: bytes a process holds on the device outside any lease
//! (its CUDA context, a decoder's surfaces), each under a label. They take
//! nothing from the budget; they are reported beside it, so that an engine
//! sizing its KV cache subtracts one figure: the budget plus the
//! reservations.
//!
//! An in-process pool keeps one list for its process (here); a shared pool
//! keeps one per attached process in its segment (`shared::figures`), which
//! ends when that process detaches or dies.

use super::error::Error;
use super::sync::Mutex;
use super::MAX_TOTAL;

/// Labels one process may hold at once, per pool.
pub const MAX_RESERVATIONS: usize = 8;
/// The longest label, in bytes of UTF-8.
pub const MAX_LABEL_BYTES: usize = 32;

/// One labelled reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub label: String,
    pub bytes: u64,
}

/// A reservation and the process that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReservation {
    pub pid: u32,
    pub reservation: Reservation,
}

/// Refuses a label that is empty, longer than [`MAX_LABEL_BYTES`], or holds
/// control characters (it becomes a Prometheus label value and a line of
/// `mmpool status`).
pub(crate) fn check_label(label: &str) -> Result<(), Error> {
    if label.is_empty() || label.len() > MAX_LABEL_BYTES || label.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "a reservation's label must be 1 to {MAX_LABEL_BYTES} bytes of UTF-8 without control characters, \
             got {label:?}"
        )));
    }
    Ok(())
}

/// Refuses a reservation's size above the largest total.
pub(crate) fn check_bytes(bytes: u64) -> Result<(), Error> {
    if bytes > MAX_TOTAL {
        return Err(Error::InvalidArgument(format!("a reservation is at most 2^60 bytes, got {bytes}")));
    }
    Ok(())
}

/// The refusal of a new label when a process holds all it may.
pub(crate) fn too_many(held: &[Reservation]) -> Error {
    let labels: Vec<&str> = held.iter().map(|r| r.label.as_str()).collect();
    Error::InvalidArgument(format!(
        "this process already holds {MAX_RESERVATIONS} reservations in this pool ({}); remove one (0 bytes) first",
        labels.join(", ")
    ))
}

/// The sum of some reservations' bytes.
pub fn total(reservations: &[Reservation]) -> u64 {
    reservations.iter().fold(0u64, |sum, r| sum.saturating_add(r.bytes))
}

/// The reservations of an in-process pool.
pub(crate) struct Reservations {
    list: Mutex<Vec<Reservation>>,
}

impl Default for Reservations {
    fn default() -> Self {
        Reservations { list: Mutex::new(Vec::new()) }
    }
}

impl Reservations {
    /// Records `bytes` under `label`, replacing what it held; 0 removes it.
    pub(crate) fn set(&self, label: &str, bytes: u64) -> Result<(), Error> {
        check_label(label)?;
        check_bytes(bytes)?;
        let mut list = self.list.lock();
        match list.iter().position(|r| r.label == label) {
            Some(i) if bytes == 0 => {
                list.remove(i);
            }
            Some(i) => list[i].bytes = bytes,
            None if bytes == 0 => {}
            None if list.len() >= MAX_RESERVATIONS => return Err(too_many(&list)),
            None => list.push(Reservation { label: label.to_owned(), bytes }),
        }
        Ok(())
    }

    pub(crate) fn list(&self) -> Vec<Reservation> {
        self.list.lock().clone()
    }

    /// The sum of their bytes.
    pub(crate) fn total(&self) -> u64 {
        total(&self.list.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_replaced_and_removed() {
        let r = Reservations::default();
        r.set("cuda-context", 500).unwrap();
        r.set("nvdec-surfaces", 300).unwrap();
        r.set("cuda-context", 600).unwrap();
        assert_eq!(total(&r.list()), 900);
        r.set("cuda-context", 0).unwrap();
        assert_eq!(r.list(), vec![Reservation { label: "nvdec-surfaces".into(), bytes: 300 }]);
        r.set("never-set", 0).unwrap();
        for bad in ["", "a\nb", &"x".repeat(MAX_LABEL_BYTES + 1)] {
            assert!(matches!(r.set(bad, 1), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        assert!(r.set(&"x".repeat(MAX_LABEL_BYTES), 1).is_ok());
        assert!(matches!(r.set("big", MAX_TOTAL + 1), Err(Error::InvalidArgument(_))));
        for i in 2..MAX_RESERVATIONS {
            r.set(&format!("l{i}"), 1).unwrap();
        }
        let e = r.set("one-more", 1).unwrap_err();
        assert!(e.to_string().contains("nvdec-surfaces"), "{e}");
        r.set("l2", 0).unwrap();
        r.set("one-more", 1).unwrap();
    }
}
