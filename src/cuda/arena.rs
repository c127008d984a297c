//! Arenas: one allocation of a placed pool's total, device memory
//! (`cudaMalloc`) or pinned host memory (`cudaHostAlloc`), in which every
//! lease of the pool is the range `[offset, offset + nbytes)`. A lease
//! becomes a pointer by arithmetic, with no CUDA call.
//!
//! A device arena is exported once (`cudaIpcGetMemHandle`) and opened once
//! in each consumer process (`cudaIpcOpenMemHandle`); there a hand-off token,
//! which carries its lease's offset, becomes a pointer with no CUDA call.
//!
//! A device arena, made here or opened, is *attached* to its pool in this
//! process: the gated allocations (`mmpool_cuda_malloc`, the nvJPEG /
//! nvImageCodec / PyTorch callbacks) charged to that pool then draw a placed
//! lease and return its pointer instead of calling `cudaMalloc`, and their
//! free releases the lease instead of calling `cudaFree`. A pool has at most
//! one attached arena per process.
//!
//! An arena holds a handle of its pool. Its memory goes back to CUDA when its
//! owner frees it and the last allocation drawn from it is freed.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::registry::Record;
use super::runtime::{runtime, IpcMemHandle, Runtime};
use crate::log::{self, Level};
use crate::pool::{Error, Pool, Token, Wait, TOKEN_PLACED};

/// What an arena's memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Device memory of one device (`cudaMalloc`).
    Device,
    /// Pinned host memory (`cudaHostAlloc`), for staging copies. Not exported.
    PinnedHost,
}

/// Where the memory came from, which decides how it goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Allocated by this process.
    Allocated,
    /// Another process's device arena, opened here (`cudaIpcOpenMemHandle`).
    Opened,
}

/// What a consumer process needs to open a device arena: the IPC handle, the
/// arena's size and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub handle: IpcMemHandle,
    pub nbytes: u64,
    pub device: i32,
}

/// One allocation backing a placed pool. Thread-safe.
pub struct Arena {
    pool: Arc<Pool>,
    kind: Kind,
    origin: Origin,
    device: i32,
    /// The first byte, as an address (the memory is not Rust's to touch).
    base: usize,
    nbytes: u64,
    /// The IPC handle once exported (or the one it was opened with).
    handle: OnceLock<IpcMemHandle>,
}

/// The device arena attached to each pool in this process, by the address
/// of the pool's core (kept alive by the arena's handle of it).
static ATTACHED: Mutex<Vec<(usize, Weak<Arena>)>> = Mutex::new(Vec::new());
/// How many entries `ATTACHED` has, so that the gated allocations of a
/// process without arenas skip its lock.
static ENTRIES: AtomicUsize = AtomicUsize::new(0);

fn key(pool: &Pool) -> usize {
    pool.core_ptr() as usize
}

/// The device arena attached to `pool` in this process, if any.
pub fn attached(pool: &Pool) -> Option<Arc<Arena>> {
    let k = key(pool);
    if ENTRIES.load(Ordering::Acquire) == 0 {
        return None;
    }
    ATTACHED.lock().iter().find(|(at, _)| *at == k).and_then(|(_, a)| a.upgrade())
}

fn busy() -> Error {
    Error::InvalidArgument("the pool already has a device arena in this process; free it first".into())
}

/// Refuses a second device arena for `pool` in this process.
fn none_attached(pool: &Pool) -> Result<(), Error> {
    attached(pool).map_or(Ok(()), |_| Err(busy()))
}

/// Attaches `arena` to its pool, refused while another one is.
fn attach(arena: &Arc<Arena>) -> Result<(), Error> {
    let mut list = ATTACHED.lock();
    list.retain(|(_, a)| a.strong_count() > 0);
    let k = key(&arena.pool);
    let fresh = !list.iter().any(|(at, _)| *at == k);
    if fresh {
        list.push((k, Arc::downgrade(arena)));
    }
    ENTRIES.store(list.len(), Ordering::Release);
    if fresh {
        Ok(())
    } else {
        Err(busy())
    }
}

/// Runs `f` with `device` as the calling thread's current device, restoring
/// the one that was current before.
fn on_device<T>(rt: &Runtime, device: i32, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let before = rt.device()?;
    if before == device {
        return f();
    }
    rt.set_device(device)?;
    let result = f();
    if let Err(e) = rt.set_device(before) {
        log::log(Level::Warn, &format!("could not make device {before} current again: {e}"));
    }
    result
}

fn placed(pool: &Pool) -> Result<(), Error> {
    if pool.is_placed() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "an arena needs a placed pool (mmpool_init_placed), whose leases have offsets".into(),
        ))
    }
}

fn size_of(nbytes: u64) -> Result<usize, Error> {
    usize::try_from(nbytes)
        .map_err(|_| Error::InvalidArgument(format!("{nbytes} bytes do not fit this machine's address space")))
}

impl Arena {
    /// Allocates one arena of the pool's total: on `device` for
    /// [`Kind::Device`] (which is then attached to the pool), pinned host
    /// memory for [`Kind::PinnedHost`] (`device` unused). The pool is not
    /// touched; on failure nothing is allocated.
    pub fn new(pool: Arc<Pool>, kind: Kind, device: i32) -> Result<Arc<Arena>, Error> {
        placed(&pool)?;
        if kind == Kind::Device {
            none_attached(&pool)?;
        }
        let nbytes = pool.total_bytes();
        let size = size_of(nbytes)?;
        let rt = runtime()?;
        let ptr = match kind {
            Kind::Device => on_device(rt, device, || rt.malloc(size))?,
            Kind::PinnedHost => rt.host_alloc(size)?,
        };
        let device = if kind == Kind::Device { device } else { -1 };
        let arena = Arc::new(Arena {
            pool,
            kind,
            origin: Origin::Allocated,
            device,
            base: ptr as usize,
            nbytes,
            handle: OnceLock::new(),
        });
        if kind == Kind::Device {
            // Dropping the arena on refusal (a race with another new) frees it.
            attach(&arena)?;
        }
        Ok(arena)
    }

    /// Opens another process's exported device arena for `pool` (the same
    /// placed pool, opened in this process) and attaches it to the pool.
    pub fn open(pool: Arc<Pool>, exported: &Exported) -> Result<Arc<Arena>, Error> {
        placed(&pool)?;
        if exported.nbytes == 0 {
            return Err(Error::InvalidArgument("the exported arena has 0 bytes: not an exported arena".into()));
        }
        none_attached(&pool)?;
        size_of(exported.nbytes)?;
        let rt = runtime()?;
        let ptr = on_device(rt, exported.device, || rt.ipc_open_mem_handle(exported.handle))?;
        let arena = Arc::new(Arena {
            pool,
            kind: Kind::Device,
            origin: Origin::Opened,
            device: exported.device,
            base: ptr as usize,
            nbytes: exported.nbytes,
            handle: OnceLock::from(exported.handle),
        });
        attach(&arena)?;
        Ok(arena)
    }

    /// What another process needs to open this device arena. The IPC handle
    /// is made on the first call and returned again after.
    pub fn export(&self) -> Result<Exported, Error> {
        if self.kind != Kind::Device {
            return Err(Error::InvalidArgument(
                "a pinned host arena belongs to its process and cannot be exported".into(),
            ));
        }
        let handle = match self.handle.get() {
            Some(h) => *h,
            None => {
                // SAFETY: `base` is the start of this arena's device
                // allocation, live while the arena is.
                let h = unsafe { runtime()?.ipc_get_mem_handle(self.base as *mut c_void) }?;
                *self.handle.get_or_init(|| h)
            }
        };
        Ok(Exported { handle, nbytes: self.nbytes, device: self.device })
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The device (-1 for pinned host memory).
    pub fn device(&self) -> i32 {
        self.device
    }

    /// Whether the memory is another process's, opened here.
    pub fn is_opened(&self) -> bool {
        self.origin == Origin::Opened
    }

    pub fn base(&self) -> *mut c_void {
        self.base as *mut c_void
    }

    pub fn nbytes(&self) -> u64 {
        self.nbytes
    }

    /// `base + offset` for `nbytes` bytes there, refused when the range does
    /// not lie inside the arena (the pool's total grew after it was made).
    fn at(&self, offset: u64, nbytes: u64) -> Result<*mut c_void, Error> {
        match offset.checked_add(nbytes) {
            Some(end) if offset < self.nbytes && end <= self.nbytes => {
                Ok(self.base.wrapping_add(offset as usize) as *mut c_void)
            }
            _ => Err(Error::InvalidArgument(format!(
                "{nbytes} bytes at offset {offset} lie outside the arena's {} bytes (the pool's \
                 total grew after the arena was made?)",
                self.nbytes
            ))),
        }
    }

    /// The pointer of lease `id` of the pool: base + its offset.
    pub fn pointer(&self, id: u64) -> Result<*mut c_void, Error> {
        let offset = self.pool.lease_offset(id)?;
        let nbytes = self.pool.lease(id).map_or(0, |l| l.nbytes);
        self.at(offset, nbytes)
    }

    /// The pointer of the lease a hand-off token names: base + the offset it
    /// carries. The pool checks that it issued the token and that the
    /// hand-off is not finished (its bytes could be granted again).
    pub fn token_pointer(&self, token: &Token) -> Result<*mut c_void, Error> {
        if token.flags & TOKEN_PLACED == 0 {
            return Err(Error::InvalidArgument(format!(
                "hand-off token {:#x} carries no offset: its lease was not placed",
                token.id
            )));
        }
        let info = self.pool.handoff(token)?.ok_or_else(|| {
            Error::InvalidLease(format!("hand-off {:#x} is finished: its bytes went back to the pool", token.id))
        })?;
        self.at(token.offset, info.nbytes)
    }

    /// Acquires a placed lease of `nbytes` for a gated allocation and returns
    /// its pointer with the record that pays for it.
    pub(crate) fn draw(self: &Arc<Self>, nbytes: u64, wait: Wait) -> Result<(*mut c_void, Record), Error> {
        let lease = self.pool.acquire(nbytes, wait)?;
        let record =
            Record { pool: Some(Arc::clone(&self.pool)), lease: lease.id, nbytes, arena: Some(Arc::clone(self)) };
        match self.pointer(lease.id) {
            Ok(ptr) => Ok((ptr, record)),
            Err(e) => {
                record.release();
                Err(e)
            }
        }
    }

    /// Stops serving gated allocations of its pool (those drawn already stay
    /// valid until freed).
    pub fn detach(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let mut list = ATTACHED.lock();
        list.retain(|(_, a)| !a.ptr_eq(&me) && a.strong_count() > 0);
        ENTRIES.store(list.len(), Ordering::Release);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let Ok(rt) = runtime() else { return };
        let ptr = self.base as *mut c_void;
        // SAFETY: the memory came from this runtime in `new` / `open`, and
        // nothing mmpool handed out uses it any more: every drawn allocation
        // holds the arena, and the C owner freed its reference.
        let freed = unsafe {
            match (self.origin, self.kind) {
                (Origin::Opened, _) => rt.ipc_close_mem_handle(ptr),
                (Origin::Allocated, Kind::Device) => rt.free(ptr),
                (Origin::Allocated, Kind::PinnedHost) => rt.free_host(ptr),
            }
        };
        if let Err(e) = freed {
            log::log(Level::Warn, &format!("freeing an arena of {} bytes: {e}", self.nbytes));
        }
    }
}
