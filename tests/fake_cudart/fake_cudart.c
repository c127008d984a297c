/*
 * A stand-in for libcudart over host memory, for tests on machines without a
 * GPU. It exports the entry points mmpool resolves, with CUDA's signatures
 * and error numbers, plus controls for the tests:
 *
 *   fake_cudart_set_capacity(bytes)  cudaMalloc* fail with
 *                                    cudaErrorMemoryAllocation (2) beyond it
 *   fake_cudart_live_bytes()         device bytes allocated and not yet freed
 *   fake_cudart_live_count()         device allocations not yet freed
 *   fake_cudart_async_calls()        cudaMallocAsync + cudaFreeAsync calls
 *   fake_cudart_malloc_calls()       cudaMalloc + cudaMallocAsync calls
 *   fake_cudart_free_calls()         cudaFree + cudaFreeAsync calls
 *   fake_cudart_host_live_count()    cudaHostAlloc allocations not yet freed
 *   fake_cudart_ipc_open_count()     IPC mappings opened and not yet closed
 *   fake_cudart_stream_syncs()       cudaStreamSynchronize calls
 *   fake_cudart_device()             the device cudaSetDevice last selected
 *
 * Device memory is a memfd mapped MAP_SHARED, so that the IPC calls work
 * across processes: cudaIpcGetMemHandle writes into the 64-byte handle the
 * exporting process's id, the memfd's descriptor, its inode and size;
 * cudaIpcOpenMemHandle in another process opens /proc/<pid>/fd/<fd>, checks
 * the inode and size, and maps the same pages, so both see the same bytes
 * (while the exporter keeps the allocation, as with CUDA).
 *
 * Errors, as the real runtime numbers them: cudaFree of a pointer it did not
 * hand out (or of pinned host memory), cudaFreeHost of one it did not hand
 * out, cudaIpcGetMemHandle of anything but the start of a device allocation,
 * an IPC flag other than cudaIpcMemLazyEnablePeerAccess, cudaIpcCloseMemHandle
 * of a pointer it did not open: cudaErrorInvalidValue (1). A handle it cannot
 * open: cudaErrorInvalidResourceHandle (400). cudaSetDevice of a device other
 * than 0: cudaErrorInvalidDevice (101). Thread-safe.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int cudaError_t;
typedef void *cudaStream_t;
typedef struct cudaIpcMemHandle_st {
    char reserved[64];
} cudaIpcMemHandle_t;

enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
};

enum { cudaIpcMemLazyEnablePeerAccess = 1 };

/* Where a block's memory came from. */
enum kind { DEVICE, HOST, OPENED };

struct block {
    void *ptr;
    size_t size;
    enum kind kind;
    int fd; /* DEVICE: the memfd behind it; otherwise -1 */
    struct block *next;
};

/* The IPC handle's contents (the first bytes of cudaIpcMemHandle_t). */
struct wire {
    char magic[8];
    int64_t pid;
    int64_t fd;
    uint64_t ino;
    uint64_t size;
};

static const char MAGIC[8] = "fakecuda";

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct block *blocks;
static size_t live_bytes, live_count, host_live_count, ipc_open_count, capacity = SIZE_MAX;
static unsigned long async_calls, malloc_calls, free_calls, stream_syncs;
static int current_device;

#define READ_LOCKED(type, name, expr) \
    type name(void) {                 \
        pthread_mutex_lock(&lock);    \
        type n = (expr);              \
        pthread_mutex_unlock(&lock);  \
        return n;                     \
    }

void fake_cudart_set_capacity(size_t bytes) {
    pthread_mutex_lock(&lock);
    capacity = bytes;
    pthread_mutex_unlock(&lock);
}

READ_LOCKED(size_t, fake_cudart_live_bytes, live_bytes)
READ_LOCKED(size_t, fake_cudart_live_count, live_count)
READ_LOCKED(size_t, fake_cudart_host_live_count, host_live_count)
READ_LOCKED(size_t, fake_cudart_ipc_open_count, ipc_open_count)
READ_LOCKED(unsigned long, fake_cudart_async_calls, async_calls)
READ_LOCKED(unsigned long, fake_cudart_malloc_calls, malloc_calls)
READ_LOCKED(unsigned long, fake_cudart_free_calls, free_calls)
READ_LOCKED(unsigned long, fake_cudart_stream_syncs, stream_syncs)
READ_LOCKED(int, fake_cudart_device, current_device)

/* Adds a block; the lock is held. */
static void push(void *ptr, size_t size, enum kind kind, int fd, struct block *b) {
    b->ptr = ptr;
    b->size = size;
    b->kind = kind;
    b->fd = fd;
    b->next = blocks;
    blocks = b;
}

/* Unlinks and returns the block of `ptr` if it is of `kind`; the lock is held. */
static struct block *unlink_block(void *ptr, enum kind kind) {
    for (struct block **at = &blocks; *at != NULL; at = &(*at)->next) {
        struct block *b = *at;
        if (b->ptr == ptr) {
            if (b->kind != kind) return NULL;
            *at = b->next;
            return b;
        }
    }
    return NULL;
}

/* `size` bytes of a new memfd mapped shared, its descriptor in *fd; NULL on failure. */
static void *map_memfd(size_t size, int *fd) {
    *fd = memfd_create("fake_cudart", MFD_CLOEXEC);
    if (*fd < 0) return NULL;
    if (ftruncate(*fd, (off_t)size) != 0) {
        close(*fd);
        return NULL;
    }
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (mem == MAP_FAILED) {
        close(*fd);
        return NULL;
    }
    return mem;
}

cudaError_t cudaMalloc(void **ptr, size_t size) {
    if (ptr == NULL) return cudaErrorInvalidValue;
    pthread_mutex_lock(&lock);
    malloc_calls += 1;
    pthread_mutex_unlock(&lock);
    if (size == 0) {
        *ptr = NULL;
        return cudaSuccess;
    }
    struct block *b = malloc(sizeof *b);
    int fd = -1;
    void *mem = b == NULL ? NULL : map_memfd(size, &fd);
    pthread_mutex_lock(&lock);
    int fits = live_bytes <= capacity && size <= capacity - live_bytes;
    if (b == NULL || mem == NULL || !fits) {
        pthread_mutex_unlock(&lock);
        free(b);
        if (mem != NULL) {
            munmap(mem, size);
            close(fd);
        }
        return cudaErrorMemoryAllocation;
    }
    push(mem, size, DEVICE, fd, b);
    live_bytes += size;
    live_count += 1;
    pthread_mutex_unlock(&lock);
    *ptr = mem;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (ptr == NULL) return cudaSuccess;
    pthread_mutex_lock(&lock);
    free_calls += 1;
    struct block *b = unlink_block(ptr, DEVICE);
    if (b == NULL) {
        pthread_mutex_unlock(&lock);
        return cudaErrorInvalidValue;
    }
    live_bytes -= b->size;
    live_count -= 1;
    pthread_mutex_unlock(&lock);
    munmap(b->ptr, b->size);
    close(b->fd);
    free(b);
    return cudaSuccess;
}

cudaError_t cudaMallocAsync(void **ptr, size_t size, cudaStream_t stream) {
    (void)stream;
    pthread_mutex_lock(&lock);
    async_calls += 1;
    pthread_mutex_unlock(&lock);
    return cudaMalloc(ptr, size);
}

cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream) {
    (void)stream;
    pthread_mutex_lock(&lock);
    async_calls += 1;
    pthread_mutex_unlock(&lock);
    return cudaFree(ptr);
}

/* Work is never queued here: there is nothing to wait for. */
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    (void)stream;
    pthread_mutex_lock(&lock);
    stream_syncs += 1;
    pthread_mutex_unlock(&lock);
    return cudaSuccess;
}

/* Pinned host memory: plain host memory, counted apart from device memory. */
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags) {
    (void)flags;
    if (ptr == NULL) return cudaErrorInvalidValue;
    struct block *b = malloc(sizeof *b);
    void *mem = malloc(size == 0 ? 1 : size);
    if (b == NULL || mem == NULL) {
        free(b);
        free(mem);
        return cudaErrorMemoryAllocation;
    }
    pthread_mutex_lock(&lock);
    push(mem, size, HOST, -1, b);
    host_live_count += 1;
    pthread_mutex_unlock(&lock);
    *ptr = mem;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *ptr) {
    if (ptr == NULL) return cudaSuccess;
    pthread_mutex_lock(&lock);
    struct block *b = unlink_block(ptr, HOST);
    if (b == NULL) {
        pthread_mutex_unlock(&lock);
        return cudaErrorInvalidValue;
    }
    host_live_count -= 1;
    pthread_mutex_unlock(&lock);
    free(b->ptr);
    free(b);
    return cudaSuccess;
}

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t *handle, void *dev_ptr) {
    if (handle == NULL || dev_ptr == NULL) return cudaErrorInvalidValue;
    pthread_mutex_lock(&lock);
    struct block *found = NULL;
    for (struct block *b = blocks; b != NULL; b = b->next) {
        if (b->ptr == dev_ptr && b->kind == DEVICE) found = b;
    }
    struct stat st;
    if (found == NULL || fstat(found->fd, &st) != 0) {
        pthread_mutex_unlock(&lock);
        return cudaErrorInvalidValue;
    }
    struct wire w;
    memcpy(w.magic, MAGIC, sizeof w.magic);
    w.pid = (int64_t)getpid();
    w.fd = found->fd;
    w.ino = (uint64_t)st.st_ino;
    w.size = (uint64_t)found->size;
    pthread_mutex_unlock(&lock);
    memset(handle, 0, sizeof *handle);
    memcpy(handle->reserved, &w, sizeof w);
    return cudaSuccess;
}

cudaError_t cudaIpcOpenMemHandle(void **dev_ptr, cudaIpcMemHandle_t handle, unsigned int flags) {
    if (dev_ptr == NULL || flags != cudaIpcMemLazyEnablePeerAccess) return cudaErrorInvalidValue;
    struct wire w;
    memcpy(&w, handle.reserved, sizeof w);
    if (memcmp(w.magic, MAGIC, sizeof w.magic) != 0 || w.size == 0) return cudaErrorInvalidResourceHandle;
    char path[64];
    snprintf(path, sizeof path, "/proc/%lld/fd/%lld", (long long)w.pid, (long long)w.fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return cudaErrorInvalidResourceHandle;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_ino != w.ino || (uint64_t)st.st_size != w.size) {
        close(fd);
        return cudaErrorInvalidResourceHandle;
    }
    void *mem = mmap(NULL, (size_t)w.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    struct block *b = malloc(sizeof *b);
    if (mem == MAP_FAILED || b == NULL) {
        if (mem != MAP_FAILED) munmap(mem, (size_t)w.size);
        free(b);
        return cudaErrorMemoryAllocation;
    }
    pthread_mutex_lock(&lock);
    push(mem, (size_t)w.size, OPENED, -1, b);
    ipc_open_count += 1;
    pthread_mutex_unlock(&lock);
    *dev_ptr = mem;
    return cudaSuccess;
}

cudaError_t cudaIpcCloseMemHandle(void *dev_ptr) {
    pthread_mutex_lock(&lock);
    struct block *b = unlink_block(dev_ptr, OPENED);
    if (b == NULL) {
        pthread_mutex_unlock(&lock);
        return cudaErrorInvalidValue;
    }
    ipc_open_count -= 1;
    pthread_mutex_unlock(&lock);
    munmap(b->ptr, b->size);
    free(b);
    return cudaSuccess;
}

/* Every kind of copy is a host copy here. */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, int kind) {
    if (kind < 0 || kind > 4) return cudaErrorInvalidMemcpyDirection;
    if (count == 0) return cudaSuccess;
    if (dst == NULL || src == NULL) return cudaErrorInvalidValue;
    memmove(dst, src, count);
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device != 0) return cudaErrorInvalidDevice;
    pthread_mutex_lock(&lock);
    current_device = device;
    pthread_mutex_unlock(&lock);
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    if (device == NULL) return cudaErrorInvalidValue;
    *device = fake_cudart_device();
    return cudaSuccess;
}

const char *cudaGetErrorName(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "unknown error";
    }
}

/* The stand-in device: 1 GiB, less what is allocated, capped by the capacity. */
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes == NULL || total_bytes == NULL) return cudaErrorInvalidValue;
    pthread_mutex_lock(&lock);
    size_t total = capacity < ((size_t)1 << 30) ? capacity : ((size_t)1 << 30);
    *total_bytes = total;
    *free_bytes = live_bytes < total ? total - live_bytes : 0;
    pthread_mutex_unlock(&lock);
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *count) {
    if (count == NULL) return cudaErrorInvalidValue;
    *count = 1;
    return cudaSuccess;
}
