//! Exports for arenas: one device or pinned host allocation of a placed
//! pool's total, leases as pointers into it, and device arenas exported to
//! and opened in other processes. Each validates and calls
//! `crate::cuda::arena`.

use std::ffi::c_void;
use std::sync::Arc;

use super::boundary::{arg, out, Failure};
use super::handle::{self, mmpool};
use super::handoff::token;
use super::status::mmpool_status;
use super::types::{mmpool_handoff_token, mmpool_lease};
use crate::cuda::arena::{Arena, Exported, Kind};
use crate::cuda::runtime::IpcMemHandle;
use crate::pool::Error;

/// An arena: one allocation of a placed pool's total (device memory, or
/// pinned host memory), in which each lease of the pool lies at its offset.
/// Opaque and thread-safe; owned by the caller of `mmpool_cuda_arena_new` /
/// `mmpool_cuda_arena_open` until `mmpool_cuda_arena_free`. It holds a
/// reference to its pool.
pub struct mmpool_cuda_arena {
    _opaque: [u8; 0],
}

/// `mmpool_cuda_arena_new` kind: device memory (`cudaMalloc` on the device
/// given), attached to the pool: gated allocations of the pool draw from it.
pub const MMPOOL_CUDA_ARENA_DEVICE: u32 = 0;
/// `mmpool_cuda_arena_new` kind: pinned host memory (`cudaHostAlloc`,
/// portable), for staging copies; not attached, not exportable.
pub const MMPOOL_CUDA_ARENA_PINNED_HOST: u32 = 1;

/// `mmpool_cuda_exported_arena.magic`: marks an exported arena ("mmAR").
pub const MMPOOL_CUDA_ARENA_MAGIC: u32 = 0x5241_6d6d;

/// An exported device arena, from `mmpool_cuda_arena_export`: a plain value
/// of 80 bytes to send as it is to the consumer processes, which open it
/// with `mmpool_cuda_arena_open`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mmpool_cuda_exported_arena {
    /// `MMPOOL_CUDA_ARENA_MAGIC`.
    pub magic: u32,
    /// The device the arena lies on.
    pub device: i32,
    /// The arena's size in bytes.
    pub nbytes: u64,
    /// The `cudaIpcMemHandle_t` of the arena's memory.
    pub ipc_handle: [u8; 64],
}

const _: () = assert!(std::mem::size_of::<mmpool_cuda_exported_arena>() == 80);

impl From<Exported> for mmpool_cuda_exported_arena {
    fn from(e: Exported) -> Self {
        mmpool_cuda_exported_arena {
            magic: MMPOOL_CUDA_ARENA_MAGIC,
            device: e.device,
            nbytes: e.nbytes,
            ipc_handle: e.handle.reserved,
        }
    }
}

fn exported(e: &mmpool_cuda_exported_arena) -> Result<Exported, Error> {
    if e.magic != MMPOOL_CUDA_ARENA_MAGIC {
        return Err(Error::InvalidArgument(format!(
            "not an exported arena (magic {:#x}, expected {MMPOOL_CUDA_ARENA_MAGIC:#x})",
            e.magic
        )));
    }
    Ok(Exported { handle: IpcMemHandle { reserved: e.ipc_handle }, nbytes: e.nbytes, device: e.device })
}

fn kind(kind: u32) -> Result<Kind, Error> {
    match kind {
        MMPOOL_CUDA_ARENA_DEVICE => Ok(Kind::Device),
        MMPOOL_CUDA_ARENA_PINNED_HOST => Ok(Kind::PinnedHost),
        other => Err(Error::InvalidArgument(format!(
            "kind must be MMPOOL_CUDA_ARENA_DEVICE (0) or MMPOOL_CUDA_ARENA_PINNED_HOST (1), got {other}"
        ))),
    }
}

fn into_raw(arena: Arc<Arena>) -> *mut mmpool_cuda_arena {
    Arc::into_raw(arena) as *mut mmpool_cuda_arena
}

/// Borrows the arena behind `ptr` for one call, refusing NULL.
///
/// # Safety
/// A non-NULL `ptr` comes from `mmpool_cuda_arena_new` / `_open` and is not freed.
unsafe fn borrow<'a>(ptr: *const mmpool_cuda_arena) -> Result<&'a Arena, Failure> {
    // SAFETY: the caller's contract; NULL is refused by `arg`.
    unsafe { arg(ptr.cast::<Arena>(), "arena") }
}

/// The pool behind `ptr` as a new handle, refusing NULL.
///
/// # Safety
/// As for `handle::clone_arc`.
unsafe fn pool_arg(ptr: *mut mmpool) -> Result<Arc<crate::pool::Pool>, Failure> {
    // SAFETY: forwarded contract.
    unsafe { handle::clone_arc(ptr) }?.ok_or(Failure::Null("pool"))
}

/// Allocates one arena of the placed pool's total (`mmpool_init_placed`)
/// and writes it to `*out_arena`. `kind` `MMPOOL_CUDA_ARENA_DEVICE`:
/// `cudaMalloc` on `device` (made current for the call, then the previous
/// device is current again), and the arena is attached to the pool in this
/// process: from now on `mmpool_cuda_malloc`, `mmpool_cuda_malloc_async`,
/// `mmpool_cuda_dev_malloc` and (for the global pool) `mmpool_torch_alloc`
/// charged to this pool acquire a placed lease and return its pointer in the
/// arena, with no `cudaMalloc`; their frees release the lease with no
/// `cudaFree` (a stream-ordered free first waits for its stream:
/// `cudaStreamSynchronize`). `MMPOOL_CUDA_ARENA_PINNED_HOST`:
/// `cudaHostAlloc` (portable); `device` is not used.
///
/// The arena's size is the pool's total now; a lease placed beyond it after
/// the total grows has no pointer (`INVALID_ARGUMENT`).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a pool that is not placed,
/// an unknown `kind`, a pool that already has a device arena in this
/// process), `CUDA` (no runtime, or the allocation failed: the message names
/// the CUDA error; nothing is allocated and the pool is untouched).
#[no_mangle]
pub extern "C" fn mmpool_cuda_arena_new(
    pool: *mut mmpool,
    kind: u32,
    device: i32,
    out_arena: *mut *mut mmpool_cuda_arena,
) -> mmpool_status {
    boundary!("mmpool_cuda_arena_new", {
        // SAFETY: the C contract: `pool` is a held handle, `out_arena` writable.
        let (pool, out_arena) = unsafe { (pool_arg(pool)?, out(out_arena, "out_arena")?) };
        *out_arena = into_raw(Arena::new(pool, self::kind(kind)?, device)?);
        Ok(())
    })
}

/// Writes to `*out_export` what another process needs to open this device
/// arena (`cudaIpcGetMemHandle` on the first call; later calls return the
/// same). Send the value as it is; the arena must stay allocated while
/// consumers use it.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a pinned host arena), `CUDA`
/// (the runtime refused: the message names the CUDA error).
#[no_mangle]
pub extern "C" fn mmpool_cuda_arena_export(
    arena: *const mmpool_cuda_arena,
    out_export: *mut mmpool_cuda_exported_arena,
) -> mmpool_status {
    boundary!("mmpool_cuda_arena_export", {
        // SAFETY: the C contract: `arena` is live, `out_export` writable.
        let (arena, out_export) = unsafe { (borrow(arena)?, out(out_export, "out_export")?) };
        *out_export = arena.export()?.into();
        Ok(())
    })
}

/// Opens, in a consumer process, a device arena another process exported
/// (`cudaIpcOpenMemHandle` on the exported device, made current for the
/// call), for `pool`, a placed pool of this process: hand-off tokens resolve
/// (`mmpool_cuda_arena_token_pointer`) only when it is the pool that issued
/// them; leases of `pool` resolve at their offsets. Once per process: then
/// pointers come with no CUDA call, and the opened arena is attached to the
/// pool as `mmpool_cuda_arena_new` attaches one. CUDA cannot open an arena in
/// the process that allocated it; use that process's arena there.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (not an exported arena, a
/// pool that is not placed or already has a device arena in this process),
/// `CUDA` (no runtime, or `cudaIpcOpenMemHandle` failed: the message names
/// the CUDA error).
#[no_mangle]
pub extern "C" fn mmpool_cuda_arena_open(
    pool: *mut mmpool,
    exported: *const mmpool_cuda_exported_arena,
    out_arena: *mut *mut mmpool_cuda_arena,
) -> mmpool_status {
    boundary!("mmpool_cuda_arena_open", {
        // SAFETY: the C contract: `pool` is a held handle, `exported`
        // readable, `out_arena` writable.
        let (pool, e, out_arena) =
            unsafe { (pool_arg(pool)?, arg(exported, "exported")?, out(out_arena, "out_arena")?) };
        *out_arena = into_raw(Arena::open(pool, &self::exported(e)?)?);
        Ok(())
    })
}

/// Writes the pointer of `lease` (a lease of the arena's pool) to `*ptr`:
/// the arena's base plus the lease's offset. No CUDA call.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (not a live lease of the pool),
/// `INVALID_ARGUMENT` (its range lies outside the arena).
#[no_mangle]
pub extern "C" fn mmpool_cuda_arena_pointer(
    arena: *const mmpool_cuda_arena,
    lease: mmpool_lease,
    ptr: *mut *mut c_void,
) -> mmpool_status {
    boundary!("mmpool_cuda_arena_pointer", {
        // SAFETY: the C contract: `arena` is live, `ptr` writable.
        let (arena, ptr) = unsafe { (borrow(arena)?, out(ptr, "ptr")?) };
        *ptr = arena.pointer(lease.id)?;
        Ok(())
    })
}

/// Writes the pointer of a hand-off's bytes to `*ptr`: the arena's base
/// plus the offset the token carries (`MMPOOL_TOKEN_PLACED`). No CUDA call;
/// the pool checks the token. Call it before completing the part: a
/// finished hand-off's bytes may be granted again.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_LEASE` (a token the pool never issued,
/// or one altered, or a finished hand-off), `INVALID_ARGUMENT` (a token
/// without an offset, or whose range lies outside the arena).
#[no_mangle]
pub extern "C" fn mmpool_cuda_arena_token_pointer(
    arena: *const mmpool_cuda_arena,
    token: mmpool_handoff_token,
    ptr: *mut *mut c_void,
) -> mmpool_status {
    boundary!("mmpool_cuda_arena_token_pointer", {
        // SAFETY: the C contract: `arena` is live, `ptr` writable.
        let (arena, ptr) = unsafe { (borrow(arena)?, out(ptr, "ptr")?) };
        *ptr = arena.token_pointer(&self::token(&token))?;
        Ok(())
    })
}

/// Writes the arena's first byte to `*out_base` and its size to
/// `*out_nbytes` (either may be NULL). No CUDA call.
///
/// Errors: `NULL_ARGUMENT` (`arena`).
#[no_mangle]
pub extern "C" fn mmpool_cuda_arena_range(
    arena: *const mmpool_cuda_arena,
    out_base: *mut *mut c_void,
    out_nbytes: *mut u64,
) -> mmpool_status {
    boundary!("mmpool_cuda_arena_range", {
        // SAFETY: the C contract: `arena` is live.
        let arena = unsafe { borrow(arena) }?;
        // SAFETY: the C contract: each out-parameter is NULL or writable.
        if let Some(base) = unsafe { out_base.as_mut() } {
            *base = arena.base();
        }
        // SAFETY: as above.
        if let Some(nbytes) = unsafe { out_nbytes.as_mut() } {
            *nbytes = arena.nbytes();
        }
        Ok(())
    })
}

/// Frees the caller's arena: it is detached from its pool (gated
/// allocations go back to `cudaMalloc`), and its memory goes back to CUDA
/// (`cudaFree`, `cudaFreeHost`, or for an opened one `cudaIpcCloseMemHandle`)
/// once the gated allocations drawn from it are freed too. Pointers from
/// `mmpool_cuda_arena_pointer` / `_token_pointer` must not be used after.
/// NULL is a no-op.
#[no_mangle]
pub extern "C" fn mmpool_cuda_arena_free(arena: *mut mmpool_cuda_arena) -> mmpool_status {
    boundary!("mmpool_cuda_arena_free", {
        if arena.is_null() {
            return Ok(());
        }
        // SAFETY: the C contract: `arena` came from `into_raw` and the
        // caller gives its reference up here, once.
        let arena = unsafe { Arc::from_raw(arena.cast_const().cast::<Arena>()) };
        arena.detach();
        Ok(())
    })
}
