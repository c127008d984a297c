//! mmpool's own placement (`mmpool::placement::Placement`, what a placed
//! pool uses): exact best fit over the free ranges.

use mmpool::placement::{PlaceError, Placement};

use super::{Placed, Placer};

pub struct MmpoolPlacement(Placement);

impl Placer for MmpoolPlacement {
    const NAME: &'static str = "mmpool";

    fn new(total: u64, alignment: u64) -> Self {
        MmpoolPlacement(Placement::new(total, alignment).expect("a valid pool"))
    }

    fn alloc(&mut self, size: u64) -> Option<Placed> {
        match self.0.alloc(size) {
            Ok(offset) => Some(Placed { offset, handle: offset }),
            Err(PlaceError::NoFit { .. }) => None,
            Err(e) => panic!("mmpool placement: {e}"),
        }
    }

    fn free(&mut self, placed: Placed) {
        self.0.free(placed.handle).expect("a placed range");
    }
}
