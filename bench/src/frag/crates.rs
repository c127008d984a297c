//! The two crates the placement issue names, behind [`Placer`]:
//! `offset-allocator` (Sebastian Aaltonen's OffsetAllocator: O(1), sizes
//! rounded to 256 bins of a small float) and `rlsf` (TLSF: O(1), free lists
//! by two-level size classes). Both pick a free block from a size class at
//! least as large as the request, so either may refuse a request that some
//! free range would hold: the table counts it.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ptr::NonNull;

use super::{Placed, Placer};

/// `offset_allocator::Allocator` counts in `u32` units: one unit is one
/// alignment (256 bytes: 16 Mi units for a 4 GiB pool), which also makes
/// every offset aligned.
pub struct OffsetAllocator {
    unit: u64,
    inner: offset_allocator::Allocator<u32>,
    /// The live allocations by offset (the crate's handle is opaque).
    live: HashMap<u64, offset_allocator::Allocation<u32>>,
}

impl Placer for OffsetAllocator {
    const NAME: &'static str = "offset-allocator";

    fn new(total: u64, alignment: u64) -> Self {
        let units = u32::try_from(total / alignment).expect("the pool fits u32 units of its alignment");
        OffsetAllocator { unit: alignment, inner: offset_allocator::Allocator::new(units), live: HashMap::new() }
    }

    fn alloc(&mut self, size: u64) -> Option<Placed> {
        let units = u32::try_from(size.div_ceil(self.unit)).ok()?;
        let a = self.inner.allocate(units)?;
        let offset = u64::from(a.offset) * self.unit;
        self.live.insert(offset, a);
        Some(Placed { offset, handle: offset })
    }

    fn free(&mut self, placed: Placed) {
        let a = self.live.remove(&placed.handle).expect("a live allocation");
        self.inner.free(a);
    }
}

/// TLSF with 2^28 first-level classes of 32 sub-classes (blocks up to 8 GiB).
type Tlsf = rlsf::Tlsf<'static, u32, u32, 28, 32>;

/// `rlsf` manages real memory: it keeps its block headers inside the blocks,
/// so it cannot manage device memory itself. Here it manages a host region
/// of the pool's size (reserved, only the pages its headers touch become
/// resident); an offset is an address minus the region's start. The headers
/// (16 bytes a block) come out of the pool, as they would.
pub struct Rlsf {
    alignment: u64,
    tlsf: Tlsf,
    region: NonNull<u8>,
    layout: Layout,
}

impl Placer for Rlsf {
    const NAME: &'static str = "rlsf";

    fn new(total: u64, alignment: u64) -> Self {
        let layout = Layout::from_size_align(total as usize, 4096).expect("a valid layout");
        // SAFETY: the layout's size is not zero.
        let region = NonNull::new(unsafe { std::alloc::alloc(layout) }).expect("the region is allocated");
        let mut tlsf = Tlsf::new();
        // SAFETY: the region is this struct's until its drop, which drops
        // the allocator (nothing of it touches the region then) first.
        unsafe { tlsf.insert_free_block_ptr(NonNull::slice_from_raw_parts(region, total as usize)) };
        Rlsf { alignment, tlsf, region, layout }
    }

    fn alloc(&mut self, size: u64) -> Option<Placed> {
        let layout = Layout::from_size_align(size as usize, self.alignment as usize).ok()?;
        let p = self.tlsf.allocate(layout)?;
        let offset = p.as_ptr() as u64 - self.region.as_ptr() as u64;
        Some(Placed { offset, handle: offset })
    }

    fn free(&mut self, placed: Placed) {
        // SAFETY: `placed` came from `alloc` (an address inside the region,
        // allocated with this alignment) and is freed once.
        unsafe {
            let p = NonNull::new_unchecked(self.region.as_ptr().add(placed.handle as usize));
            self.tlsf.deallocate(p, self.alignment as usize);
        }
    }
}

impl Drop for Rlsf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the allocator, which
        // points into it, is not used again.
        unsafe { std::alloc::dealloc(self.region.as_ptr(), self.layout) };
    }
}
