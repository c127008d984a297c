/*
 * How mmpool's allocator functions plug into nvJPEG, nvImageCodec and
 * PyTorch: each assignment below compiles with no cast, as C and as C++
 * (scripts/test-cuda.sh builds this file both ways with -Werror against the
 * real headers from NVIDIA's wheels). Running it prints the wiring; it needs
 * no GPU.
 */
#include <stdio.h>
#include <sys/types.h>

#include <cuda_runtime_api.h>
#include <nvimgcodec.h>
#include <nvjpeg.h>

#include "mmpool.h"

/* PyTorch's CUDAPluggableAllocator looks these up by name in libmmpool.so;
 * its documented signatures are: */
typedef void *(*torch_alloc_fn)(ssize_t size, int device, cudaStream_t stream);
typedef void (*torch_free_fn)(void *ptr, ssize_t size, int device, cudaStream_t stream);

int main(void) {
    mmpool *pool = NULL; /* NULL context: the global pool */

    /* nvJPEG: nvjpegCreateExV2(backend, &dev, NULL, 0, &handle) */
    nvjpegDevAllocatorV2_t dev;
    dev.dev_malloc = mmpool_cuda_dev_malloc;
    dev.dev_free = mmpool_cuda_dev_free;
    dev.dev_ctx = pool;

    /* nvImageCodec: nvimgcodecInstanceCreateInfo_t.device_allocator = &alloc */
    nvimgcodecDeviceAllocator_t alloc;
    alloc.struct_type = NVIMGCODEC_STRUCTURE_TYPE_DEVICE_ALLOCATOR;
    alloc.struct_size = sizeof alloc;
    alloc.struct_next = NULL;
    alloc.device_malloc = mmpool_cuda_dev_malloc;
    alloc.device_free = mmpool_cuda_dev_free;
    alloc.device_ctx = pool;
    alloc.device_mem_padding = 0;

    torch_alloc_fn torch_alloc = mmpool_torch_alloc;
    torch_free_fn torch_free = mmpool_torch_free;

    /* The stream-ordered pair takes a cudaStream_t as is. */
    cudaStream_t stream = NULL;
    mmpool_status (*malloc_async)(mmpool *, void **, size_t, cudaStream_t, uint64_t) = mmpool_cuda_malloc_async;

    printf("nvjpegDevAllocatorV2_t: dev_malloc=%s dev_free=%s\n",
           dev.dev_malloc == mmpool_cuda_dev_malloc ? "mmpool_cuda_dev_malloc" : "?",
           dev.dev_free == mmpool_cuda_dev_free ? "mmpool_cuda_dev_free" : "?");
    printf("nvimgcodecDeviceAllocator_t: device_malloc=%s device_free=%s\n",
           alloc.device_malloc == mmpool_cuda_dev_malloc ? "mmpool_cuda_dev_malloc" : "?",
           alloc.device_free == mmpool_cuda_dev_free ? "mmpool_cuda_dev_free" : "?");
    printf("CUDAPluggableAllocator: alloc=%s free=%s\n",
           torch_alloc == mmpool_torch_alloc ? "mmpool_torch_alloc" : "?",
           torch_free == mmpool_torch_free ? "mmpool_torch_free" : "?");
    return malloc_async == mmpool_cuda_malloc_async && stream == NULL ? 0 : 1;
}
