/*
 * A stand-in for libcudart over host memory, for tests on machines without a
 * GPU. It exports the entry points mmpool resolves, with CUDA's signatures
 * and error numbers, plus controls for the tests:
 *
 *   fake_cudart_set_capacity(bytes)  cudaMalloc* fail with
 *                                    cudaErrorMemoryAllocation (2) beyond it
 *   fake_cudart_live_bytes()         bytes allocated and not yet freed
 *   fake_cudart_live_count()         allocations not yet freed
 *   fake_cudart_async_calls()        cudaMallocAsync + cudaFreeAsync calls
 *
 * cudaFree of a pointer it did not hand out fails with cudaErrorInvalidValue
 * (1), as the real runtime does. Thread-safe.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef int cudaError_t;
typedef void *cudaStream_t;

enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };

struct block {
    void *ptr;
    size_t size;
    struct block *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct block *blocks;
static size_t live_bytes, live_count, capacity = SIZE_MAX;
static unsigned long async_calls;

void fake_cudart_set_capacity(size_t bytes) {
    pthread_mutex_lock(&lock);
    capacity = bytes;
    pthread_mutex_unlock(&lock);
}

size_t fake_cudart_live_bytes(void) {
    pthread_mutex_lock(&lock);
    size_t n = live_bytes;
    pthread_mutex_unlock(&lock);
    return n;
}

size_t fake_cudart_live_count(void) {
    pthread_mutex_lock(&lock);
    size_t n = live_count;
    pthread_mutex_unlock(&lock);
    return n;
}

unsigned long fake_cudart_async_calls(void) {
    pthread_mutex_lock(&lock);
    unsigned long n = async_calls;
    pthread_mutex_unlock(&lock);
    return n;
}

cudaError_t cudaMalloc(void **ptr, size_t size) {
    if (ptr == NULL) return cudaErrorInvalidValue;
    if (size == 0) {
        *ptr = NULL;
        return cudaSuccess;
    }
    struct block *b = malloc(sizeof *b);
    void *mem = malloc(size);
    pthread_mutex_lock(&lock);
    int fits = live_bytes <= capacity && size <= capacity - live_bytes;
    if (b == NULL || mem == NULL || !fits) {
        pthread_mutex_unlock(&lock);
        free(b);
        free(mem);
        return cudaErrorMemoryAllocation;
    }
    b->ptr = mem;
    b->size = size;
    b->next = blocks;
    blocks = b;
    live_bytes += size;
    live_count += 1;
    pthread_mutex_unlock(&lock);
    *ptr = mem;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (ptr == NULL) return cudaSuccess;
    pthread_mutex_lock(&lock);
    for (struct block **at = &blocks; *at != NULL; at = &(*at)->next) {
        struct block *b = *at;
        if (b->ptr == ptr) {
            *at = b->next;
            live_bytes -= b->size;
            live_count -= 1;
            pthread_mutex_unlock(&lock);
            free(b->ptr);
            free(b);
            return cudaSuccess;
        }
    }
    pthread_mutex_unlock(&lock);
    return cudaErrorInvalidValue;
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

const char *cudaGetErrorName(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
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
