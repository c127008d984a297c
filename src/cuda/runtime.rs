//! The CUDA runtime, loaded when first needed with `dlopen`: mmpool never
//! links CUDA at build time and works without it.
//!
//! `MMPOOL_CUDART` names a library file explicitly (failing to load it is an
//! error that names it); otherwise the sonames of CUDA 13, 12 and 11 are tried
//! in that order. The runtime is loaded once per process and stays loaded.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::pool::Error;

/// The sonames tried, newest first, when `MMPOOL_CUDART` is not set.
pub const SONAMES: [&str; 3] = ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"];

/// The environment variable that names the runtime library file explicitly.
pub const ENV_CUDART: &str = "MMPOOL_CUDART";

/// A CUDA stream as the runtime sees it (`cudaStream_t`); NULL is the default stream.
pub type Stream = *mut c_void;

type Status = c_int;
type MallocFn = unsafe extern "C" fn(*mut *mut c_void, usize) -> Status;
type FreeFn = unsafe extern "C" fn(*mut c_void) -> Status;
type MallocAsyncFn = unsafe extern "C" fn(*mut *mut c_void, usize, Stream) -> Status;
type FreeAsyncFn = unsafe extern "C" fn(*mut c_void, Stream) -> Status;
type ErrorTextFn = unsafe extern "C" fn(Status) -> *const c_char;
type MemGetInfoFn = unsafe extern "C" fn(*mut usize, *mut usize) -> Status;
type DeviceCountFn = unsafe extern "C" fn(*mut c_int) -> Status;
type SetDeviceFn = unsafe extern "C" fn(c_int) -> Status;
type StreamSyncFn = unsafe extern "C" fn(Stream) -> Status;
type GetDeviceFn = unsafe extern "C" fn(*mut c_int) -> Status;
type HostAllocFn = unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> Status;
type IpcGetFn = unsafe extern "C" fn(*mut IpcMemHandle, *mut c_void) -> Status;
type IpcOpenFn = unsafe extern "C" fn(*mut *mut c_void, IpcMemHandle, c_uint) -> Status;

/// `cudaIpcMemHandle_t`: 64 opaque bytes naming device memory to another
/// process, passed by value as CUDA does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcMemHandle {
    pub reserved: [u8; 64],
}

/// `cudaHostAllocPortable`: the pinned memory counts as pinned in every CUDA context.
const HOST_ALLOC_PORTABLE: c_uint = 1;
/// `cudaIpcMemLazyEnablePeerAccess`, the one flag `cudaIpcOpenMemHandle` takes.
const IPC_LAZY_ENABLE_PEER_ACCESS: c_uint = 1;

/// The loaded runtime: its handle (never closed) and the entry points mmpool uses.
pub struct Runtime {
    path: String,
    malloc: MallocFn,
    free: FreeFn,
    malloc_async: Option<MallocAsyncFn>,
    free_async: Option<FreeAsyncFn>,
    error_name: ErrorTextFn,
    error_string: ErrorTextFn,
    mem_get_info: Option<MemGetInfoFn>,
    device_count: Option<DeviceCountFn>,
    set_device: Option<SetDeviceFn>,
    get_device: Option<GetDeviceFn>,
    stream_sync: Option<StreamSyncFn>,
    host_alloc: Option<HostAllocFn>,
    free_host: Option<FreeFn>,
    ipc_get: Option<IpcGetFn>,
    ipc_open: Option<IpcOpenFn>,
    ipc_close: Option<FreeFn>,
}

/// The runtime, loading it on first use. The outcome, failure included, is
/// kept for the life of the process.
pub fn runtime() -> Result<&'static Runtime, Error> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME.get_or_init(load).as_ref().map_err(|why| Error::Cuda(why.clone()))
}

fn load() -> Result<Runtime, String> {
    match std::env::var_os(ENV_CUDART).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = path.to_string_lossy().into_owned();
            let handle = open(&path).map_err(|why| {
                format!("{ENV_CUDART}={path} could not be loaded: {why}")
            })?;
            Runtime::resolve(handle, path)
        }
        None => {
            let mut tried = Vec::new();
            for name in SONAMES {
                match open(name) {
                    Ok(handle) => return Runtime::resolve(handle, name.to_string()),
                    Err(why) => tried.push(why),
                }
            }
            Err(format!(
                "no CUDA runtime found (tried {}; set {ENV_CUDART} to the library file): {}",
                SONAMES.join(", "),
                tried.join("; ")
            ))
        }
    }
}

/// The text of the calling thread's last dlopen/dlsym failure.
fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the
    // next dl* call on this thread; it is copied at once.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        "unknown dynamic loader error".into()
    } else {
        // SAFETY: non-NULL, NUL-terminated, see above.
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }
}

fn open(name: &str) -> Result<*mut c_void, String> {
    let c_name = CString::new(name).map_err(|_| format!("`{name}` contains a NUL byte"))?;
    // SAFETY: a valid C string; loading a library runs its initialisers, which
    // is what loading the CUDA runtime is for.
    let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        Err(dl_error())
    } else {
        Ok(handle)
    }
}

fn symbol(handle: *mut c_void, name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `handle` came from a successful dlopen and is never closed;
    // `name` is a valid C string.
    let sym = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!sym.is_null()).then_some(sym)
}

/// Casts a resolved symbol (a non-NULL `*mut c_void`) to its function type.
macro_rules! entry {
    ($sym:expr, $ty:ty) => {
        // SAFETY: the symbol is the CUDA runtime entry point of that name,
        // whose C signature `$ty` spells (cuda_runtime_api.h).
        unsafe { std::mem::transmute::<*mut c_void, $ty>($sym) }
    };
}

impl Runtime {
    fn resolve(handle: *mut c_void, path: String) -> Result<Runtime, String> {
        let required = |name: &CStr| {
            symbol(handle, name)
                .ok_or_else(|| format!("{path} lacks {}: {}", name.to_string_lossy(), dl_error()))
        };
        Ok(Runtime {
            malloc: entry!(required(c"cudaMalloc")?, MallocFn),
            free: entry!(required(c"cudaFree")?, FreeFn),
            error_name: entry!(required(c"cudaGetErrorName")?, ErrorTextFn),
            error_string: entry!(required(c"cudaGetErrorString")?, ErrorTextFn),
            malloc_async: symbol(handle, c"cudaMallocAsync").map(|p| entry!(p, MallocAsyncFn)),
            free_async: symbol(handle, c"cudaFreeAsync").map(|p| entry!(p, FreeAsyncFn)),
            mem_get_info: symbol(handle, c"cudaMemGetInfo").map(|p| entry!(p, MemGetInfoFn)),
            device_count: symbol(handle, c"cudaGetDeviceCount").map(|p| entry!(p, DeviceCountFn)),
            set_device: symbol(handle, c"cudaSetDevice").map(|p| entry!(p, SetDeviceFn)),
            get_device: symbol(handle, c"cudaGetDevice").map(|p| entry!(p, GetDeviceFn)),
            stream_sync: symbol(handle, c"cudaStreamSynchronize").map(|p| entry!(p, StreamSyncFn)),
            host_alloc: symbol(handle, c"cudaHostAlloc").map(|p| entry!(p, HostAllocFn)),
            free_host: symbol(handle, c"cudaFreeHost").map(|p| entry!(p, FreeFn)),
            ipc_get: symbol(handle, c"cudaIpcGetMemHandle").map(|p| entry!(p, IpcGetFn)),
            ipc_open: symbol(handle, c"cudaIpcOpenMemHandle").map(|p| entry!(p, IpcOpenFn)),
            ipc_close: symbol(handle, c"cudaIpcCloseMemHandle").map(|p| entry!(p, FreeFn)),
            path,
        })
    }

    /// The file or soname the runtime was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `cudaMalloc`.
    pub fn malloc(&self, size: usize) -> Result<*mut c_void, Error> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: cudaMalloc writes one pointer to a valid location.
        self.check("cudaMalloc", unsafe { (self.malloc)(&mut ptr, size) })?;
        Ok(ptr)
    }

    /// `cudaFree`.
    ///
    /// # Safety
    /// `ptr` must be device memory from this runtime that is not in use any more.
    pub unsafe fn free(&self, ptr: *mut c_void) -> Result<(), Error> {
        // SAFETY: the caller's contract.
        self.check("cudaFree", unsafe { (self.free)(ptr) })
    }

    /// `cudaMallocAsync` on `stream`.
    ///
    /// # Safety
    /// `stream` must be NULL or a live stream of the current device.
    pub unsafe fn malloc_async(&self, size: usize, stream: Stream) -> Result<*mut c_void, Error> {
        let f = self.malloc_async.ok_or_else(|| self.missing("cudaMallocAsync"))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: one pointer is written to a valid location; the stream per
        // the caller's contract.
        self.check("cudaMallocAsync", unsafe { f(&mut ptr, size, stream) })?;
        Ok(ptr)
    }

    /// `cudaFreeAsync` on `stream`.
    ///
    /// # Safety
    /// As for [`Runtime::free`], and `stream` as for [`Runtime::malloc_async`].
    pub unsafe fn free_async(&self, ptr: *mut c_void, stream: Stream) -> Result<(), Error> {
        let f = self.free_async.ok_or_else(|| self.missing("cudaFreeAsync"))?;
        // SAFETY: the caller's contract.
        self.check("cudaFreeAsync", unsafe { f(ptr, stream) })
    }

    /// `cudaMemGetInfo`: (free, total) bytes of the current device.
    pub fn mem_get_info(&self) -> Result<(usize, usize), Error> {
        let f = self.mem_get_info.ok_or_else(|| self.missing("cudaMemGetInfo"))?;
        let (mut free, mut total) = (0, 0);
        // SAFETY: two sizes are written to valid locations.
        self.check("cudaMemGetInfo", unsafe { f(&mut free, &mut total) })?;
        Ok((free, total))
    }

    /// `cudaGetDeviceCount`.
    pub fn device_count(&self) -> Result<u32, Error> {
        let f = self.device_count.ok_or_else(|| self.missing("cudaGetDeviceCount"))?;
        let mut n: c_int = 0;
        // SAFETY: one int is written to a valid location.
        self.check("cudaGetDeviceCount", unsafe { f(&mut n) })?;
        Ok(n.max(0) as u32)
    }

    /// `cudaStreamSynchronize`: waits until the work queued on `stream` is done.
    ///
    /// # Safety
    /// `stream` must be NULL or a live stream.
    pub unsafe fn stream_synchronize(&self, stream: Stream) -> Result<(), Error> {
        let f = self.stream_sync.ok_or_else(|| self.missing("cudaStreamSynchronize"))?;
        // SAFETY: the caller's contract.
        self.check("cudaStreamSynchronize", unsafe { f(stream) })
    }

    /// `cudaGetDevice`: the calling thread's current device.
    pub fn device(&self) -> Result<i32, Error> {
        let f = self.get_device.ok_or_else(|| self.missing("cudaGetDevice"))?;
        let mut device: c_int = 0;
        // SAFETY: one int is written to a valid location.
        self.check("cudaGetDevice", unsafe { f(&mut device) })?;
        Ok(device)
    }

    /// `cudaSetDevice`: makes `device` the calling thread's current device.
    pub fn set_device(&self, device: i32) -> Result<(), Error> {
        let f = self.set_device.ok_or_else(|| self.missing("cudaSetDevice"))?;
        // SAFETY: takes a number, writes nothing.
        self.check("cudaSetDevice", unsafe { f(device) })
    }

    /// `cudaHostAlloc(size, cudaHostAllocPortable)`: pinned host memory.
    pub fn host_alloc(&self, size: usize) -> Result<*mut c_void, Error> {
        let f = self.host_alloc.ok_or_else(|| self.missing("cudaHostAlloc"))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: one pointer is written to a valid location.
        self.check("cudaHostAlloc", unsafe { f(&mut ptr, size, HOST_ALLOC_PORTABLE) })?;
        Ok(ptr)
    }

    /// `cudaFreeHost`.
    ///
    /// # Safety
    /// `ptr` must be pinned memory from [`Runtime::host_alloc`] not in use any more.
    pub unsafe fn free_host(&self, ptr: *mut c_void) -> Result<(), Error> {
        let f = self.free_host.ok_or_else(|| self.missing("cudaFreeHost"))?;
        // SAFETY: the caller's contract.
        self.check("cudaFreeHost", unsafe { f(ptr) })
    }

    /// `cudaIpcGetMemHandle` of the device allocation starting at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be the start of a live device allocation of this runtime.
    pub unsafe fn ipc_get_mem_handle(&self, ptr: *mut c_void) -> Result<IpcMemHandle, Error> {
        let f = self.ipc_get.ok_or_else(|| self.missing("cudaIpcGetMemHandle"))?;
        let mut handle = IpcMemHandle { reserved: [0; 64] };
        // SAFETY: the handle is written to a valid location; `ptr` per the
        // caller's contract.
        self.check("cudaIpcGetMemHandle", unsafe { f(&mut handle, ptr) })?;
        Ok(handle)
    }

    /// `cudaIpcOpenMemHandle(handle, cudaIpcMemLazyEnablePeerAccess)`: maps
    /// another process's device allocation into this one, on the current device.
    pub fn ipc_open_mem_handle(&self, handle: IpcMemHandle) -> Result<*mut c_void, Error> {
        let f = self.ipc_open.ok_or_else(|| self.missing("cudaIpcOpenMemHandle"))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: one pointer is written to a valid location; the handle is
        // a value the runtime validates.
        self.check("cudaIpcOpenMemHandle", unsafe { f(&mut ptr, handle, IPC_LAZY_ENABLE_PEER_ACCESS) })?;
        Ok(ptr)
    }

    /// `cudaIpcCloseMemHandle`.
    ///
    /// # Safety
    /// `ptr` must come from [`Runtime::ipc_open_mem_handle`] and not be in use any more.
    pub unsafe fn ipc_close_mem_handle(&self, ptr: *mut c_void) -> Result<(), Error> {
        let f = self.ipc_close.ok_or_else(|| self.missing("cudaIpcCloseMemHandle"))?;
        // SAFETY: the caller's contract.
        self.check("cudaIpcCloseMemHandle", unsafe { f(ptr) })
    }

    fn missing(&self, name: &str) -> Error {
        Error::Cuda(format!("{} has no {name} (not a CUDA runtime, or one too old for it: cudaMallocAsync needs 11.2)", self.path))
    }

    /// `Ok` for cudaSuccess; otherwise an error naming the call and the CUDA
    /// error by name, number and text.
    fn check(&self, call: &str, status: Status) -> Result<(), Error> {
        if status == 0 {
            return Ok(());
        }
        let text = |f: ErrorTextFn| {
            // SAFETY: the runtime returns a static NUL-terminated string (or
            // NULL, handled) for any error value.
            let p = unsafe { f(status) };
            if p.is_null() {
                String::from("?")
            } else {
                // SAFETY: non-NULL and static, see above.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        Err(Error::Cuda(format!(
            "{call} failed with {} ({status}): {}",
            text(self.error_name),
            text(self.error_string)
        )))
    }
}
