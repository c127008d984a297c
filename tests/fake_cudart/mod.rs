//! The stand-in CUDA runtime for tests: `fake_cudart.c` beside this file,
//! compiled with the system C compiler into the test's scratch directory and
//! selected through `MMPOOL_CUDART` before mmpool first loads a runtime.

#![allow(dead_code)]

use std::ffi::{c_int, c_ulong, c_void, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Entry points that control and observe the stand-in.
pub struct Fake {
    set_capacity: unsafe extern "C" fn(usize),
    live_bytes: unsafe extern "C" fn() -> usize,
    live_count: unsafe extern "C" fn() -> usize,
    host_live_count: unsafe extern "C" fn() -> usize,
    ipc_open_count: unsafe extern "C" fn() -> usize,
    async_calls: unsafe extern "C" fn() -> c_ulong,
    malloc_calls: unsafe extern "C" fn() -> c_ulong,
    free_calls: unsafe extern "C" fn() -> c_ulong,
    stream_syncs: unsafe extern "C" fn() -> c_ulong,
    device: unsafe extern "C" fn() -> c_int,
}

/// Reads one of the stand-in's figures.
fn read<T>(f: unsafe extern "C" fn() -> T) -> T {
    // SAFETY: a plain function of the stand-in that takes a lock and returns
    // a number, no pointers involved.
    unsafe { f() }
}

// `unsigned long` is 32 bits on some targets: the casts to u64 are not idle there.
#[allow(clippy::unnecessary_cast)]
impl Fake {
    /// Makes `cudaMalloc*` fail with cudaErrorMemoryAllocation beyond `bytes`.
    pub fn set_capacity(&self, bytes: usize) {
        // SAFETY: a plain function of the stand-in, no pointers involved.
        unsafe { (self.set_capacity)(bytes) }
    }
    /// Device bytes the stand-in has allocated and not freed.
    pub fn live_bytes(&self) -> usize {
        read(self.live_bytes)
    }
    /// Device allocations the stand-in holds.
    pub fn live_count(&self) -> usize {
        read(self.live_count)
    }
    /// Pinned host allocations (cudaHostAlloc) the stand-in holds.
    pub fn host_live_count(&self) -> usize {
        read(self.host_live_count)
    }
    /// IPC mappings opened (cudaIpcOpenMemHandle) and not closed.
    pub fn ipc_open_count(&self) -> usize {
        read(self.ipc_open_count)
    }
    /// Calls of cudaMallocAsync and cudaFreeAsync so far.
    pub fn async_calls(&self) -> u64 {
        read(self.async_calls) as u64
    }
    /// Calls of cudaMalloc and cudaMallocAsync so far.
    pub fn malloc_calls(&self) -> u64 {
        read(self.malloc_calls) as u64
    }
    /// Calls of cudaFree and cudaFreeAsync so far.
    pub fn free_calls(&self) -> u64 {
        read(self.free_calls) as u64
    }
    /// The device cudaSetDevice last made current.
    pub fn device(&self) -> i32 {
        read(self.device)
    }
    /// Calls of cudaStreamSynchronize so far.
    pub fn stream_syncs(&self) -> u64 {
        read(self.stream_syncs) as u64
    }
}

/// Serialises the tests of one binary that use the stand-in: its counters
/// and mmpool's global pool are process-wide. Resets the capacity, the
/// global pool and the callbacks' timeout.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    use ::mmpool::ffi::cuda::mmpool_cuda_set_callback_timeout;
    use ::mmpool::ffi::mmpool_status::MMPOOL_OK;
    use ::mmpool::ffi::process::mmpool_set_global;
    use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fake().set_capacity(usize::MAX);
    assert_eq!(mmpool_set_global(std::ptr::null_mut()), MMPOOL_OK);
    assert_eq!(mmpool_cuda_set_callback_timeout(MMPOOL_WAIT_FOREVER), MMPOOL_OK);
    guard
}

/// Threads of [`eight_threads`], rounds each, and the largest allocation.
pub const THREADS: usize = 8;
pub const ROUNDS: usize = 200;
pub const SIZE: usize = 4096;

/// Runs [`THREADS`] threads of [`ROUNDS`] gated allocations each on `pool`
/// (an `mmpool *` as an address): `mmpool_cuda_malloc` of up to [`SIZE`]
/// bytes, `check(address, size)`, fill with a pattern of its own, yield,
/// check the pattern survived (no other live buffer overlaps it), free.
pub fn eight_threads(pool: usize, check: impl Fn(usize, usize) + Send + Sync + Copy + 'static) {
    use ::mmpool::ffi::cuda::{mmpool_cuda_free, mmpool_cuda_malloc};
    use ::mmpool::ffi::mmpool_status::MMPOOL_OK;
    use ::mmpool::ffi::types::MMPOOL_WAIT_FOREVER;
    let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                let p = pool as *mut ::mmpool::ffi::mmpool;
                start.wait();
                for round in 0..ROUNDS {
                    let size = SIZE - (t * 64 + round) % 512;
                    let mut d = std::ptr::null_mut();
                    assert_eq!(mmpool_cuda_malloc(p, &mut d, size, MMPOOL_WAIT_FOREVER), MMPOOL_OK);
                    check(d as usize, size);
                    let pattern = (t * ROUNDS + round) as u8;
                    // SAFETY: `d` is `size` writable bytes owned by this
                    // thread (host memory behind the stand-in).
                    let buf = unsafe { std::slice::from_raw_parts_mut(d.cast::<u8>(), size) };
                    buf.fill(pattern);
                    std::thread::yield_now();
                    assert!(buf.iter().all(|&b| b == pattern), "buffer shared with another thread");
                    assert_eq!(mmpool_cuda_free(p, d), MMPOOL_OK);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

/// Compiles `src` into a shared library `name` in the test scratch directory.
pub fn compile(src: &str, name: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.so", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(src)
        .arg("-lpthread")
        .status()
        .unwrap_or_else(|e| panic!("could not run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "compiling {src} failed");
    out
}

/// Builds the stand-in, points `MMPOOL_CUDART` at it (once per process,
/// before any test loads a runtime) and returns its controls.
pub fn fake() -> &'static Fake {
    static FAKE: OnceLock<Fake> = OnceLock::new();
    FAKE.get_or_init(|| {
        let path = compile(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake_cudart/fake_cudart.c"), "fake_cudart");
        std::env::set_var("MMPOOL_CUDART", &path);
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; the library is the stand-in just built.
        // mmpool's own dlopen of the same file later returns this same copy.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "could not load {}", path.display());
        let sym = |name: &str| {
            let c_name = CString::new(name).unwrap();
            // SAFETY: a live handle and a valid C string.
            let p = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
            assert!(!p.is_null(), "the stand-in lacks {name}");
            p
        };
        // SAFETY (the casts here): each symbol is the
        // stand-in's function of that C signature (fake_cudart.c).
        let sizes =
            |name: &str| unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> usize>(sym(name)) };
        // SAFETY: as above.
        let counts =
            |name: &str| unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_ulong>(sym(name)) };
        Fake {
            // SAFETY: as above.
            set_capacity: unsafe {
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn(usize)>(sym("fake_cudart_set_capacity"))
            },
            live_bytes: sizes("fake_cudart_live_bytes"),
            live_count: sizes("fake_cudart_live_count"),
            host_live_count: sizes("fake_cudart_host_live_count"),
            ipc_open_count: sizes("fake_cudart_ipc_open_count"),
            async_calls: counts("fake_cudart_async_calls"),
            malloc_calls: counts("fake_cudart_malloc_calls"),
            free_calls: counts("fake_cudart_free_calls"),
            stream_syncs: counts("fake_cudart_stream_syncs"),
            // SAFETY: as above.
            device: unsafe {
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(sym("fake_cudart_device"))
            },
        }
    })
}
