//! The CUDA runtime, loaded when first needed with `dlopen`: mmpool never
//! links CUDA at build time and works without it.
//!
//! `MMPOOL_CUDART` names a library file explicitly (failing to load it is an
//! error that names it); otherwise the sonames of CUDA 13, 12 and 11 are tried
//! in that order. The runtime is loaded once per process and stays loaded.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
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

    fn missing(&self, name: &str) -> Error {
        Error::Cuda(format!("{} has no {name} (a CUDA runtime older than 11.2?)", self.path))
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
