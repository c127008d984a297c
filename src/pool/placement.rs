//! Exact placement of aligned ranges in `[0, total)`: where a placed pool's
//! leases lie.
//!
//! Every range, free or used, is a node of one array, linked in address
//! order by indices (`prev`, `next`); free ranges are also linked among
//! themselves (`fprev`, `fnext`), and nodes not in use sit on a spare list.
//! Links are `u32` indices, never pointers, so the same code runs over a
//! `Vec` in this process ([`VecStore`], which grows) and over a fixed region
//! of a shared segment (any [`Store`]); every index read is checked against
//! the capacity, every walk is bounded by it, and what does not add up is
//! [`PlaceError::Damaged`], never a panic.
//!
//! Policy: **best fit** over the free ranges (the one whose room from its
//! first aligned offset exceeds the request least; the lower address on a
//! tie). A request is refused only when no free range holds an aligned
//! range of its size, so placement is exact, and so are the figures
//! ([`PlaceStats`]). Best fit rather than address-ordered first fit: both
//! scan the free list here, but best fit leaves the large free ranges whole
//! for the large requests of a mixed load (video frames of hundreds of MiB
//! beside images of a few), which first fit would nibble at from the low end.
//!
//! Each used range is exactly its size (no rounding): the bytes up to the
//! next aligned offset stay free, so free bytes plus used bytes is always
//! the total. Free neighbours coalesce, so free ranges never touch; hence
//! `free ranges <= used ranges + 1` and `2 * used + 1` nodes always suffice.
//!
//! Costs: `alloc` scans the free ranges, `free`, `grow`, `shrink`, `split`
//! and `merge` find their range by a walk in address order; both are linear
//! in the number of ranges, which stays small (a range per live lease).

use std::fmt;

/// No node: the end of a list.
pub const NIL: u32 = u32::MAX;

const KIND_SPARE: u32 = 0;
const KIND_FREE: u32 = 1;
const KIND_USED: u32 = 2;

/// One range, or a spare node. Plain data with a fixed layout, so that it
/// can live in a shared segment.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Node {
    pub start: u64,
    pub len: u64,
    /// Address order.
    pub prev: u32,
    pub next: u32,
    /// The free list (free nodes) or the spare list (`fnext` only).
    pub fprev: u32,
    pub fnext: u32,
    pub kind: u32,
    pub _pad: u32,
}

/// The allocator's own figures and list heads. Plain data, as `Node`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub total: u64,
    pub alignment: u64,
    pub free_bytes: u64,
    pub free_ranges: u64,
    pub used_ranges: u64,
    /// The lowest range.
    pub first: u32,
    pub free_first: u32,
    pub spare_first: u32,
    pub _pad: u32,
}

/// Where the nodes and the header live. Indices below `capacity()` only
/// are passed to `load` and `save` (the allocator checks them first).
pub trait Store {
    fn capacity(&self) -> u32;
    fn load(&self, i: u32) -> Node;
    fn save(&mut self, i: u32, node: Node);
    fn header(&self) -> Header;
    fn set_header(&mut self, h: Header);
    /// Adds nodes (at least one) at the end when full; `false` for a fixed
    /// region.
    fn grow(&mut self) -> bool {
        false
    }
}

/// An in-process store: a `Vec` that doubles when full, or (`fixed`) keeps its
/// size, as a segment's region does.
#[derive(Debug, Clone, Default)]
pub struct VecStore {
    nodes: Vec<Node>,
    header: Header,
    fixed: bool,
}

impl VecStore {
    /// A store of `nodes` nodes that never grows.
    pub fn fixed(nodes: usize) -> VecStore {
        VecStore {
            nodes: vec![Node::default(); nodes],
            header: Header::default(),
            fixed: true,
        }
    }
}

impl Store for VecStore {
    fn capacity(&self) -> u32 {
        self.nodes.len() as u32
    }
    fn load(&self, i: u32) -> Node {
        self.nodes[i as usize]
    }
    fn save(&mut self, i: u32, node: Node) {
        self.nodes[i as usize] = node;
    }
    fn header(&self) -> Header {
        self.header
    }
    fn set_header(&mut self, h: Header) {
        self.header = h;
    }
    fn grow(&mut self) -> bool {
        let n = self.nodes.len();
        let more = n.max(4);
        if self.fixed || n + more >= NIL as usize {
            return false;
        }
        self.nodes.resize(n + more, Node::default());
        true
    }
}

/// Why a placement call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceError {
    /// A bad argument (size 0, alignment not a power of two, ...).
    Invalid(String),
    /// No free aligned range of this size exists now.
    NoFit { size: u64 },
    /// No node is left for another range (a fixed store holds at most
    /// `(capacity - 1) / 2` used ranges).
    OutOfNodes,
    /// No used range starts at this offset.
    NotAllocated { offset: u64 },
    /// The store's contents do not add up: damaged.
    Damaged(String),
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaceError::Invalid(why) => write!(f, "{why}"),
            PlaceError::NoFit { size } => write!(f, "no free aligned range of {size} bytes"),
            PlaceError::OutOfNodes => write!(f, "the placement table is full"),
            PlaceError::NotAllocated { offset } => {
                write!(f, "no range is allocated at offset {offset}")
            }
            PlaceError::Damaged(why) => write!(f, "the placement table is damaged: {why}"),
        }
    }
}

impl std::error::Error for PlaceError {}

/// Exact fragmentation figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaceStats {
    pub total: u64,
    pub alignment: u64,
    /// Bytes in no used range (`total - used_bytes`).
    pub free_bytes: u64,
    pub used_bytes: u64,
    /// Maximal free ranges (free neighbours coalesce).
    pub free_ranges: u64,
    pub used_ranges: u64,
    /// The largest request `alloc` grants now: the most room any free
    /// range has from its first aligned offset (0 when none).
    pub largest_free_range: u64,
}

/// One range as `ranges` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub len: u64,
    pub free: bool,
}

/// The placement state over a store.
#[derive(Debug, Clone)]
pub struct Placement<S: Store = VecStore> {
    store: S,
}

fn damaged(why: impl Into<String>) -> PlaceError {
    PlaceError::Damaged(why.into())
}

/// The first multiple of `alignment` (a power of two) at or above `x`, if
/// it fits a `u64`.
fn align_up(x: u64, alignment: u64) -> Option<u64> {
    x.checked_add(alignment - 1).map(|v| v & !(alignment - 1))
}

/// Room for an aligned range in `[start, start + len)`.
fn room(start: u64, len: u64, alignment: u64) -> u64 {
    match align_up(start, alignment) {
        Some(a) if a - start <= len => len - (a - start),
        _ => 0,
    }
}

impl Placement<VecStore> {
    /// An in-process placement of `[0, total)` with offsets that are
    /// multiples of `alignment` (a power of two).
    pub fn new(total: u64, alignment: u64) -> Result<Self, PlaceError> {
        Placement::init(
            VecStore {
                nodes: vec![Node::default(); 4],
                header: Header::default(),
                fixed: false,
            },
            total,
            alignment,
        )
    }
}

impl<S: Store> Placement<S> {
    /// Sets up `store` (at least one node) as one free range `[0, total)`.
    pub fn init(mut store: S, total: u64, alignment: u64) -> Result<Self, PlaceError> {
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(PlaceError::Invalid(format!(
                "alignment must be a power of two, got {alignment}"
            )));
        }
        if total == 0 {
            return Err(PlaceError::Invalid("total must be at least 1".into()));
        }
        let cap = store.capacity();
        if cap == 0 || cap == NIL {
            return Err(PlaceError::Invalid(format!(
                "a store needs 1 to {} nodes, has {cap}",
                NIL - 1
            )));
        }
        store.save(
            0,
            Node {
                start: 0,
                len: total,
                prev: NIL,
                next: NIL,
                fprev: NIL,
                fnext: NIL,
                kind: KIND_FREE,
                _pad: 0,
            },
        );
        for i in 1..cap {
            let fnext = if i + 1 < cap { i + 1 } else { NIL };
            store.save(
                i,
                Node {
                    fnext,
                    ..Node::default()
                },
            );
        }
        store.set_header(Header {
            total,
            alignment,
            free_bytes: total,
            free_ranges: 1,
            used_ranges: 0,
            first: 0,
            free_first: 0,
            spare_first: if cap > 1 { 1 } else { NIL },
            _pad: 0,
        });
        Ok(Placement { store })
    }

    /// Wraps a store set up before without checking it: every call checks
    /// what it reads (for a store under a lock, looked at call by call).
    pub fn over(store: S) -> Self {
        Placement { store }
    }

    /// Takes over a store set up before (by `init`, perhaps in another
    /// process), after checking its header.
    pub fn attach(store: S) -> Result<Self, PlaceError> {
        let p = Placement { store };
        let h = p.store.header();
        if h.alignment == 0
            || !h.alignment.is_power_of_two()
            || h.total == 0
            || h.free_bytes > h.total
        {
            return Err(damaged(format!("header {h:?}")));
        }
        Ok(p)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn into_store(self) -> S {
        self.store
    }

    pub fn total(&self) -> u64 {
        self.store.header().total
    }

    pub fn alignment(&self) -> u64 {
        self.store.header().alignment
    }

    fn node(&self, i: u32) -> Result<Node, PlaceError> {
        if i >= self.store.capacity() {
            return Err(damaged(format!(
                "node index {i} outside {} nodes",
                self.store.capacity()
            )));
        }
        Ok(self.store.load(i))
    }

    fn save(&mut self, i: u32, n: Node) {
        self.store.save(i, n);
    }

    /// Walks the ranges in address order until `f` says stop (`Some`).
    fn walk<T>(&self, mut f: impl FnMut(u32, &Node) -> Option<T>) -> Result<Option<T>, PlaceError> {
        let h = self.store.header();
        let mut i = h.first;
        let mut end = 0u64;
        for _ in 0..=self.store.capacity() {
            if i == NIL {
                if end != h.total {
                    return Err(damaged(format!(
                        "the ranges end at {end}, not at {}",
                        h.total
                    )));
                }
                return Ok(None);
            }
            let n = self.node(i)?;
            if n.start != end || n.len == 0 || n.kind == KIND_SPARE || n.kind > KIND_USED {
                return Err(damaged(format!("node {i} {n:?} after offset {end}")));
            }
            end = n
                .start
                .checked_add(n.len)
                .filter(|&e| e <= h.total)
                .ok_or_else(|| damaged(format!("node {i} ends past the total")))?;
            if let Some(t) = f(i, &n) {
                return Ok(Some(t));
            }
            i = n.next;
        }
        Err(damaged("the address list does not end"))
    }

    /// The used range that starts at `offset`.
    fn find_used(&self, offset: u64) -> Result<(u32, Node), PlaceError> {
        self.walk(|i, n| (n.start >= offset).then_some((i, *n)))?
            .filter(|(_, n)| n.start == offset && n.kind == KIND_USED)
            .ok_or(PlaceError::NotAllocated { offset })
    }

    /// A spare node, growing the store if it has none.
    fn take_spare(&mut self) -> Result<u32, PlaceError> {
        let mut h = self.store.header();
        if h.spare_first == NIL {
            let old = self.store.capacity();
            if !self.store.grow() {
                return Err(PlaceError::OutOfNodes);
            }
            let cap = self.store.capacity();
            for i in old..cap {
                let fnext = if i + 1 < cap { i + 1 } else { NIL };
                self.save(
                    i,
                    Node {
                        fnext,
                        ..Node::default()
                    },
                );
            }
            h.spare_first = old;
        }
        let i = h.spare_first;
        let n = self.node(i)?;
        if n.kind != KIND_SPARE {
            return Err(damaged(format!("spare node {i} is in use")));
        }
        h.spare_first = n.fnext;
        self.store.set_header(h);
        Ok(i)
    }

    /// Whether `k` spare nodes can be had (for a change that must not stop
    /// half done).
    fn reserve(&mut self, k: usize) -> Result<(), PlaceError> {
        let mut got = Vec::with_capacity(k);
        let mut outcome = Ok(());
        for _ in 0..k {
            match self.take_spare() {
                Ok(i) => got.push(i),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        for i in got.into_iter().rev() {
            self.put_spare(i);
        }
        outcome
    }

    fn put_spare(&mut self, i: u32) {
        let mut h = self.store.header();
        self.save(
            i,
            Node {
                fnext: h.spare_first,
                ..Node::default()
            },
        );
        h.spare_first = i;
        self.store.set_header(h);
    }

    /// Puts node `i` (already saved as free) at the head of the free list.
    fn link_free(&mut self, i: u32) -> Result<(), PlaceError> {
        let mut h = self.store.header();
        let mut n = self.node(i)?;
        n.fprev = NIL;
        n.fnext = h.free_first;
        if h.free_first != NIL {
            let mut f = self.node(h.free_first)?;
            f.fprev = i;
            self.save(h.free_first, f);
        }
        self.save(i, n);
        h.free_first = i;
        h.free_ranges += 1;
        self.store.set_header(h);
        Ok(())
    }

    fn unlink_free(&mut self, i: u32) -> Result<(), PlaceError> {
        let n = self.node(i)?;
        let mut h = self.store.header();
        if n.fprev == NIL {
            if h.free_first != i {
                return Err(damaged(format!("free node {i} is not linked")));
            }
            h.free_first = n.fnext;
        } else {
            let mut p = self.node(n.fprev)?;
            p.fnext = n.fnext;
            self.save(n.fprev, p);
        }
        if n.fnext != NIL {
            let mut x = self.node(n.fnext)?;
            x.fprev = n.fprev;
            self.save(n.fnext, x);
        }
        h.free_ranges = h
            .free_ranges
            .checked_sub(1)
            .ok_or_else(|| damaged("free range count below 0"))?;
        self.store.set_header(h);
        Ok(())
    }

    /// Inserts node `i` (start, len, kind set) into the address list after
    /// `after` (`NIL`: first).
    fn link_after(&mut self, i: u32, after: u32) -> Result<(), PlaceError> {
        let mut n = self.node(i)?;
        let mut h = self.store.header();
        let next = if after == NIL {
            h.first
        } else {
            self.node(after)?.next
        };
        n.prev = after;
        n.next = next;
        self.save(i, n);
        if after == NIL {
            h.first = i;
            self.store.set_header(h);
        } else {
            let mut a = self.node(after)?;
            a.next = i;
            self.save(after, a);
        }
        if next != NIL {
            let mut x = self.node(next)?;
            x.prev = i;
            self.save(next, x);
        }
        Ok(())
    }

    /// Takes node `i` out of the address list (it keeps its fields).
    fn unlink(&mut self, i: u32) -> Result<(), PlaceError> {
        let n = self.node(i)?;
        if n.prev == NIL {
            let mut h = self.store.header();
            h.first = n.next;
            self.store.set_header(h);
        } else {
            let mut p = self.node(n.prev)?;
            p.next = n.next;
            self.save(n.prev, p);
        }
        if n.next != NIL {
            let mut x = self.node(n.next)?;
            x.prev = n.prev;
            self.save(n.next, x);
        }
        Ok(())
    }

    fn add_free_bytes(&mut self, delta: i128) -> Result<(), PlaceError> {
        let mut h = self.store.header();
        let v = h.free_bytes as i128 + delta;
        if v < 0 || v > h.total as i128 {
            return Err(damaged(format!("free bytes would be {v}")));
        }
        h.free_bytes = v as u64;
        self.store.set_header(h);
        Ok(())
    }

    fn add_used_ranges(&mut self, delta: i64) -> Result<(), PlaceError> {
        let mut h = self.store.header();
        h.used_ranges = h
            .used_ranges
            .checked_add_signed(delta)
            .ok_or_else(|| damaged("used range count below 0"))?;
        self.store.set_header(h);
        Ok(())
    }

    /// A new free range `[start, start + len)` after `after` in address
    /// order, merged into the free range after it when there is one.
    fn free_piece(&mut self, start: u64, len: u64, after: u32) -> Result<(), PlaceError> {
        let next = if after == NIL {
            self.store.header().first
        } else {
            self.node(after)?.next
        };
        if next != NIL {
            let mut x = self.node(next)?;
            if x.kind == KIND_FREE {
                x.start = start;
                x.len += len;
                self.save(next, x);
                return self.add_free_bytes(len as i128);
            }
        }
        let i = self.take_spare()?;
        self.save(
            i,
            Node {
                start,
                len,
                kind: KIND_FREE,
                ..Node::default()
            },
        );
        self.link_after(i, after)?;
        self.link_free(i)?;
        self.add_free_bytes(len as i128)
    }

    /// Places `size` bytes (1 or more) at an aligned offset and returns it.
    pub fn alloc(&mut self, size: u64) -> Result<u64, PlaceError> {
        if size == 0 {
            return Err(PlaceError::Invalid(
                "a range of 0 bytes has no place".into(),
            ));
        }
        let h = self.store.header();
        let mut best: Option<(u64, u64, u32)> = None; // (waste, start, index)
        let mut i = h.free_first;
        for _ in 0..=self.store.capacity() {
            if i == NIL {
                break;
            }
            let n = self.node(i)?;
            if n.kind != KIND_FREE {
                return Err(damaged(format!("node {i} on the free list is not free")));
            }
            let r = room(n.start, n.len, h.alignment);
            if r >= size {
                let key = (r - size, n.start, i);
                if best.map_or(true, |b| (key.0, key.1) < (b.0, b.1)) {
                    best = Some(key);
                }
            }
            i = n.fnext;
        }
        if i != NIL {
            return Err(damaged("the free list does not end"));
        }
        let Some((_, _, i)) = best else {
            return Err(PlaceError::NoFit { size });
        };
        let n = self.node(i)?;
        let at = align_up(n.start, h.alignment).ok_or_else(|| damaged("alignment overflow"))?;
        self.carve(i, n, at, size)?;
        Ok(at)
    }

    /// Turns `[at, at + size)` of free node `i` (`n`) into a used range;
    /// the pieces around it stay free.
    fn carve(&mut self, i: u32, n: Node, at: u64, size: u64) -> Result<(), PlaceError> {
        let (head, tail) = (at - n.start, n.start + n.len - (at + size));
        self.reserve(usize::from(head > 0) + usize::from(tail > 0))?;
        self.unlink_free(i)?;
        self.save(
            i,
            Node {
                start: at,
                len: size,
                kind: KIND_USED,
                ..n
            },
        );
        self.add_free_bytes(-(n.len as i128))?;
        self.add_used_ranges(1)?;
        if head > 0 {
            self.free_piece(n.start, head, n.prev)?;
        }
        if tail > 0 {
            self.free_piece(at + size, tail, i)?;
        }
        Ok(())
    }

    /// Takes exactly `[offset, offset + size)` (size 1 or more), which must
    /// lie inside one free range: how a store is rebuilt from the records of
    /// the ranges held (a shared segment's repair). The offset need not be
    /// aligned (a split's tail is not).
    pub fn claim(&mut self, offset: u64, size: u64) -> Result<(), PlaceError> {
        let end = offset
            .checked_add(size)
            .filter(|&e| size > 0 && e <= self.total());
        let Some(end) = end else {
            return Err(PlaceError::Invalid(format!(
                "range {offset}+{size} is not inside the total"
            )));
        };
        let found = self.walk(|i, n| (n.start + n.len > offset).then_some((i, *n)))?;
        match found {
            Some((i, n)) if n.kind == KIND_FREE && n.start + n.len >= end => {
                self.carve(i, n, offset, size)
            }
            _ => Err(PlaceError::Invalid(format!(
                "range {offset}+{size} is not free"
            ))),
        }
    }

    /// Marks node `i` (used, unlinked from nothing) free, merging it with
    /// free neighbours.
    fn release_node(&mut self, i: u32) -> Result<(), PlaceError> {
        let mut n = self.node(i)?;
        self.add_free_bytes(n.len as i128)?;
        self.add_used_ranges(-1)?;
        if n.prev != NIL {
            let p = self.node(n.prev)?;
            if p.kind == KIND_FREE {
                // Grow the free neighbour before over this one.
                self.unlink(i)?;
                self.put_spare(i);
                let mut p = self.node(n.prev)?;
                p.len += n.len;
                self.save(n.prev, p);
                return self.absorb_next(n.prev);
            }
        }
        n.kind = KIND_FREE;
        self.save(i, n);
        self.link_free(i)?;
        self.absorb_next(i)
    }

    /// Merges the free node `i` with the free node after it, if any.
    fn absorb_next(&mut self, i: u32) -> Result<(), PlaceError> {
        let mut n = self.node(i)?;
        if n.next == NIL {
            return Ok(());
        }
        let x = self.node(n.next)?;
        if x.kind != KIND_FREE {
            return Ok(());
        }
        let j = n.next;
        self.unlink_free(j)?;
        self.unlink(j)?;
        self.put_spare(j);
        n = self.node(i)?;
        n.len += x.len;
        self.save(i, n);
        Ok(())
    }

    /// Frees the range at `offset`; returns its size.
    pub fn free(&mut self, offset: u64) -> Result<u64, PlaceError> {
        let (i, n) = self.find_used(offset)?;
        self.release_node(i)?;
        Ok(n.len)
    }

    /// The size of the used range at `offset`.
    pub fn size_at(&self, offset: u64) -> Result<u64, PlaceError> {
        self.find_used(offset).map(|(_, n)| n.len)
    }

    /// Grows the range at `offset` to `new_size` in place, from a free right
    /// neighbour; `false` (nothing changed) when there is not room there.
    pub fn grow(&mut self, offset: u64, new_size: u64) -> Result<bool, PlaceError> {
        let (i, mut n) = self.find_used(offset)?;
        if new_size <= n.len {
            return Err(PlaceError::Invalid(format!(
                "grow to {new_size} bytes from {}",
                n.len
            )));
        }
        let more = new_size - n.len;
        if n.next == NIL {
            return Ok(false);
        }
        let j = n.next;
        let mut x = self.node(j)?;
        if x.kind != KIND_FREE || x.len < more {
            return Ok(false);
        }
        if x.len == more {
            self.unlink_free(j)?;
            self.unlink(j)?;
            self.put_spare(j);
        } else {
            x.start += more;
            x.len -= more;
            self.save(j, x);
        }
        n = self.node(i)?;
        n.len = new_size;
        self.save(i, n);
        self.add_free_bytes(-(more as i128))?;
        Ok(true)
    }

    /// Shrinks the range at `offset` to `new_size` (1 or more); the tail is
    /// free at once.
    pub fn shrink(&mut self, offset: u64, new_size: u64) -> Result<(), PlaceError> {
        let (i, mut n) = self.find_used(offset)?;
        if new_size == 0 || new_size > n.len {
            return Err(PlaceError::Invalid(format!(
                "shrink to {new_size} bytes from {}",
                n.len
            )));
        }
        if new_size == n.len {
            return Ok(());
        }
        let tail = n.len - new_size;
        self.reserve(1)?;
        n.len = new_size;
        self.save(i, n);
        self.free_piece(offset + new_size, tail, i)
    }

    /// Cuts the range at `offset` in two at `at` (0 < at < size): the range
    /// keeps `at` bytes, a new used range holds the rest. Returns the new
    /// range's offset, `offset + at` (aligned only if `at` is).
    pub fn split(&mut self, offset: u64, at: u64) -> Result<u64, PlaceError> {
        let (i, mut n) = self.find_used(offset)?;
        if at == 0 || at >= n.len {
            return Err(PlaceError::Invalid(format!(
                "split at {at} of a range of {} bytes",
                n.len
            )));
        }
        let j = self.take_spare()?;
        self.save(
            j,
            Node {
                start: offset + at,
                len: n.len - at,
                kind: KIND_USED,
                ..Node::default()
            },
        );
        n.len = at;
        self.save(i, n);
        self.link_after(j, i)?;
        self.add_used_ranges(1)?;
        Ok(offset + at)
    }

    /// Joins the range at `second` into the range at `first`, which it must
    /// follow directly; returns the joined size.
    pub fn merge(&mut self, first: u64, second: u64) -> Result<u64, PlaceError> {
        let (i, mut n) = self.find_used(first)?;
        let (j, x) = self.find_used(second)?;
        if n.next != j {
            return Err(PlaceError::Invalid(format!(
                "the range at {second} does not follow the range at {first} directly"
            )));
        }
        self.unlink(j)?;
        self.put_spare(j);
        n = Node {
            len: n.len + x.len,
            ..self.node(i)?
        };
        self.save(i, n);
        self.add_used_ranges(-1)?;
        Ok(n.len)
    }

    /// The figures: counters kept as the ranges change, and the largest
    /// placeable request from one pass over the free ranges.
    pub fn stats(&self) -> Result<PlaceStats, PlaceError> {
        let h = self.store.header();
        let mut largest = 0;
        let mut i = h.free_first;
        for _ in 0..=self.store.capacity() {
            if i == NIL {
                return Ok(PlaceStats {
                    total: h.total,
                    alignment: h.alignment,
                    free_bytes: h.free_bytes,
                    used_bytes: h.total - h.free_bytes,
                    free_ranges: h.free_ranges,
                    used_ranges: h.used_ranges,
                    largest_free_range: largest,
                });
            }
            let n = self.node(i)?;
            if n.kind != KIND_FREE {
                return Err(damaged(format!("node {i} on the free list is not free")));
            }
            largest = largest.max(room(n.start, n.len, h.alignment));
            i = n.fnext;
        }
        Err(damaged("the free list does not end"))
    }

    /// Every range in address order.
    pub fn ranges(&self) -> Result<Vec<Range>, PlaceError> {
        let mut out = Vec::new();
        self.walk(|_, n| {
            out.push(Range {
                start: n.start,
                len: n.len,
                free: n.kind == KIND_FREE,
            });
            None::<()>
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(p: &Placement) -> Vec<(u64, u64)> {
        p.ranges()
            .unwrap()
            .into_iter()
            .filter(|r| !r.free)
            .map(|r| (r.start, r.len))
            .collect()
    }

    #[test]
    fn aligned_best_fit_and_coalescing() {
        let mut p = Placement::new(4096, 256).unwrap();
        let a = p.alloc(100).unwrap();
        let b = p.alloc(300).unwrap();
        let c = p.alloc(256).unwrap();
        assert_eq!((a, b, c), (0, 256, 768));
        // The 156-byte sliver after `a` and the 212 after `b` stay free.
        let s = p.stats().unwrap();
        assert_eq!(s.free_bytes, 4096 - 656);
        assert_eq!(s.free_ranges, 3);
        assert_eq!(s.largest_free_range, 4096 - 1024);
        p.free(b).unwrap();
        // [100, 768) is free again in one range: room 512 from 256.
        assert_eq!(p.stats().unwrap().free_ranges, 2);
        // Best fit: 400 goes into the hole at 256, not the big tail.
        assert_eq!(p.alloc(400).unwrap(), 256);
        p.free(a).unwrap();
        p.free(c).unwrap();
        p.free(256).unwrap();
        let s = p.stats().unwrap();
        assert_eq!(
            (
                s.free_bytes,
                s.free_ranges,
                s.used_ranges,
                s.largest_free_range
            ),
            (4096, 1, 0, 4096)
        );
    }

    #[test]
    fn refuses_only_when_nothing_fits() {
        let mut p = Placement::new(1000, 256).unwrap();
        // Offsets 0, 256, 512, 768: a request of 232 fits at 768 only.
        assert_eq!(p.alloc(768).unwrap(), 0);
        assert_eq!(p.stats().unwrap().largest_free_range, 232);
        assert_eq!(p.alloc(233), Err(PlaceError::NoFit { size: 233 }));
        assert_eq!(p.alloc(232).unwrap(), 768);
        assert_eq!(p.alloc(1), Err(PlaceError::NoFit { size: 1 }));
        assert!(matches!(p.alloc(0), Err(PlaceError::Invalid(_))));
    }

    #[test]
    fn grow_shrink_split_merge() {
        let mut p = Placement::new(1 << 20, 256).unwrap();
        let a = p.alloc(1000).unwrap();
        assert!(p.grow(a, 5000).unwrap());
        let b = p.alloc(256).unwrap();
        assert_eq!(b, 5120);
        // Only 120 bytes free between a's end and b.
        assert!(!p.grow(a, 5121).unwrap());
        assert!(p.grow(a, 5120).unwrap());
        assert_eq!(p.stats().unwrap().free_ranges, 1);
        p.shrink(a, 10).unwrap();
        assert_eq!(used(&p), vec![(0, 10), (5120, 256)]);
        let t = p.split(b, 100).unwrap();
        assert_eq!(t, 5220);
        assert_eq!(used(&p), vec![(0, 10), (5120, 100), (5220, 156)]);
        assert!(matches!(p.merge(a, t), Err(PlaceError::Invalid(_))));
        assert_eq!(p.merge(b, t).unwrap(), 256);
        assert_eq!(p.free(t), Err(PlaceError::NotAllocated { offset: t }));
        assert_eq!(used(&p), vec![(0, 10), (5120, 256)]);
    }

    #[test]
    fn fixed_store_runs_out_of_nodes_cleanly() {
        let mut p = Placement::init(VecStore::fixed(5), 1 << 16, 16).unwrap();
        // 5 nodes hold 2 used ranges in any arrangement.
        assert_eq!(p.alloc(8).unwrap(), 0);
        assert_eq!(p.alloc(8).unwrap(), 16);
        // A third needs a free piece on each side of it: 2 nodes, 1 left.
        let before = p.ranges().unwrap();
        assert_eq!(p.alloc(8), Err(PlaceError::OutOfNodes));
        assert_eq!(p.ranges().unwrap(), before);
        assert_eq!(p.stats().unwrap().used_ranges, 2);
        p.free(0).unwrap();
        assert_eq!(p.alloc(8).unwrap(), 0);
    }

    #[test]
    fn damaged_indices_are_errors() {
        let mut p = Placement::init(VecStore::fixed(8), 4096, 256).unwrap();
        p.alloc(100).unwrap();
        let mut s = p.into_store();
        let mut h = s.header();
        h.free_first = 77;
        s.set_header(h);
        let mut p = Placement::attach(s).unwrap();
        assert!(matches!(p.alloc(10), Err(PlaceError::Damaged(_))));
        assert!(matches!(p.stats(), Err(PlaceError::Damaged(_))));
        let mut s = p.into_store();
        let mut h = s.header();
        h.free_first = 1;
        // A loop in the address list.
        let mut n = s.load(0);
        n.next = 0;
        s.save(0, n);
        s.set_header(h);
        let p = Placement::attach(s).unwrap();
        assert!(matches!(p.ranges(), Err(PlaceError::Damaged(_))));
        assert!(matches!(
            p.size_at(5),
            Err(PlaceError::Damaged(_)) | Err(PlaceError::NotAllocated { .. })
        ));
    }
}
