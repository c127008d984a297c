/*
 * Decodes a JPEG file with nvJPEG, every device allocation paid for by an
 * mmpool budget: nvJPEG's own buffers through mmpool's device allocator
 * (nvjpegCreateExV2), the output image through mmpool_cuda_malloc.
 *
 *   nvjpeg_decode FILE.jpg [BUDGET_MIB]
 *
 * Prints the image size, a checksum of the decoded pixels, the pool's peak
 * use, and at the end whether the pool is whole again (available == total).
 * Exits 0 on success, 1 on any failure, with the reason on stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>
#include <nvjpeg.h>

#include "mmpool.h"

static const char *nvjpeg_status_name(nvjpegStatus_t s) {
    switch (s) {
    case NVJPEG_STATUS_SUCCESS: return "NVJPEG_STATUS_SUCCESS";
    case NVJPEG_STATUS_NOT_INITIALIZED: return "NVJPEG_STATUS_NOT_INITIALIZED";
    case NVJPEG_STATUS_INVALID_PARAMETER: return "NVJPEG_STATUS_INVALID_PARAMETER";
    case NVJPEG_STATUS_BAD_JPEG: return "NVJPEG_STATUS_BAD_JPEG";
    case NVJPEG_STATUS_JPEG_NOT_SUPPORTED: return "NVJPEG_STATUS_JPEG_NOT_SUPPORTED";
    case NVJPEG_STATUS_ALLOCATOR_FAILURE: return "NVJPEG_STATUS_ALLOCATOR_FAILURE";
    case NVJPEG_STATUS_EXECUTION_FAILED: return "NVJPEG_STATUS_EXECUTION_FAILED";
    case NVJPEG_STATUS_ARCH_MISMATCH: return "NVJPEG_STATUS_ARCH_MISMATCH";
    case NVJPEG_STATUS_INTERNAL_ERROR: return "NVJPEG_STATUS_INTERNAL_ERROR";
    case NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED: return "NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED";
    default: return "unknown nvjpegStatus_t";
    }
}

static int read_file(const char *path, unsigned char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *bigger = realloc(buf, cap *= 2);
            if (bigger == NULL) free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    if (buf == NULL) {
        fprintf(stderr, "%s: out of host memory\n", path);
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

/* Pinned host memory is not device memory: it is not charged. nvjpegCreateExV2
 * takes both allocators, so these pass straight to the CUDA runtime. */
static int pinned_malloc(void *ctx, void **ptr, size_t size, cudaStream_t stream) {
    (void)ctx;
    (void)stream;
    return cudaHostAlloc(ptr, size, cudaHostAllocDefault) == cudaSuccess ? 0 : 1;
}

static int pinned_free(void *ctx, void *ptr, size_t size, cudaStream_t stream) {
    (void)ctx;
    (void)size;
    (void)stream;
    return cudaFreeHost(ptr) == cudaSuccess ? 0 : 1;
}

/* Reports the pool's state; returns whether it is whole (nothing held). */
static int report_pool(mmpool *pool) {
    mmpool_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    mmpool_get_stats(pool, &st);
    printf("pool: total=%llu available=%llu peak_in_use=%llu grants=%llu -> %s\n",
           (unsigned long long)st.total_bytes, (unsigned long long)st.available_bytes,
           (unsigned long long)st.peak_in_use_bytes, (unsigned long long)st.grants,
           st.available_bytes == st.total_bytes ? "available == total" : "available != total");
    return st.available_bytes == st.total_bytes;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s FILE.jpg [BUDGET_MIB]\n", argv[0]);
        return 2;
    }
    uint64_t budget = (argc == 3 ? strtoull(argv[2], NULL, 10) : 256) << 20;

    unsigned char *jpeg = NULL;
    size_t jpeg_len = 0;
    if (read_file(argv[1], &jpeg, &jpeg_len) != 0) return 1;

    mmpool *pool = NULL;
    if (mmpool_init(budget, &pool) != MMPOOL_OK) {
        fprintf(stderr, "mmpool_init: %s\n", mmpool_last_error());
        return 1;
    }

    int ok = 0;
    nvjpegHandle_t handle = NULL;
    nvjpegJpegState_t state = NULL;
    nvjpegImage_t image;
    memset(&image, 0, sizeof image);
    nvjpegStatus_t s;

    /* Every device buffer nvJPEG allocates is charged to `pool`. */
    nvjpegDevAllocatorV2_t dev = {mmpool_cuda_dev_malloc, mmpool_cuda_dev_free, pool};
    nvjpegPinnedAllocatorV2_t pinned = {pinned_malloc, pinned_free, NULL};
    s = nvjpegCreateExV2(NVJPEG_BACKEND_DEFAULT, &dev, &pinned, 0, &handle);
    if (s != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegCreateExV2 failed: %s (%d)\n", nvjpeg_status_name(s), (int)s);
        handle = NULL;
        goto done;
    }
    s = nvjpegJpegStateCreate(handle, &state);
    if (s != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegJpegStateCreate failed: %s (%d)\n", nvjpeg_status_name(s), (int)s);
        state = NULL;
        goto done;
    }

    int components = 0, widths[NVJPEG_MAX_COMPONENT], heights[NVJPEG_MAX_COMPONENT];
    nvjpegChromaSubsampling_t subsampling;
    s = nvjpegGetImageInfo(handle, jpeg, jpeg_len, &components, &subsampling, widths, heights);
    if (s != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegGetImageInfo failed: %s (%d)\n", nvjpeg_status_name(s), (int)s);
        goto done;
    }
    size_t w = (size_t)widths[0], h = (size_t)heights[0];
    printf("%s: %zux%zu, %d component(s)\n", argv[1], w, h, components);

    /* The output planes (RGB, planar) are device memory charged to the pool too. */
    for (int c = 0; c < 3; c++) {
        void *plane = NULL;
        if (mmpool_cuda_malloc(pool, &plane, w * h, MMPOOL_WAIT_FOREVER) != MMPOOL_OK) {
            fprintf(stderr, "output plane %d: %s\n", c, mmpool_last_error());
            goto done;
        }
        image.channel[c] = plane;
        image.pitch[c] = w;
    }

    s = nvjpegDecode(handle, state, jpeg, jpeg_len, NVJPEG_OUTPUT_RGB, &image, NULL);
    if (s != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegDecode failed: %s (%d)\n", nvjpeg_status_name(s), (int)s);
        goto done;
    }
    cudaError_t e = cudaStreamSynchronize(NULL);
    unsigned char *host = malloc(w * h);
    unsigned long long checksum = 0;
    for (int c = 0; e == cudaSuccess && host != NULL && c < 3; c++) {
        e = cudaMemcpy(host, image.channel[c], w * h, cudaMemcpyDeviceToHost);
        for (size_t i = 0; e == cudaSuccess && i < w * h; i++) checksum += host[i];
    }
    free(host);
    if (e != cudaSuccess) {
        fprintf(stderr, "reading the image back: %s: %s\n", cudaGetErrorName(e), cudaGetErrorString(e));
        goto done;
    }
    printf("decoded: RGB %zux%zu, pixel sum %llu\n", w, h, checksum);
    ok = 1;

done:
    if (!ok) {
        /* Say whether CUDA itself is usable here (no driver, no device...). */
        uint32_t devices = 0;
        if (mmpool_cuda_load(&devices) != MMPOOL_OK)
            fprintf(stderr, "%s\n", mmpool_last_error());
        else
            fprintf(stderr, "the CUDA runtime sees %u device(s)\n", (unsigned)devices);
    }
    report_pool(pool);
    for (int c = 0; c < 3; c++) {
        if (image.channel[c] != NULL && mmpool_cuda_free(pool, image.channel[c]) != MMPOOL_OK) {
            fprintf(stderr, "mmpool_cuda_free: %s\n", mmpool_last_error());
            ok = 0;
        }
    }
    if (state != NULL) nvjpegJpegStateDestroy(state);
    if (handle != NULL) nvjpegDestroy(handle);
    printf("after cleanup: ");
    if (!report_pool(pool)) ok = 0;
    mmpool_unref(pool);
    free(jpeg);
    return ok ? 0 : 1;
}
