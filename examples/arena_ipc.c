/*
 * A device arena shared by processes through CUDA IPC: a producer decodes a
 * JPEG with nvJPEG into a placed pool's device arena (nvJPEG's own buffers
 * and the output image are placed leases in it: one cudaMalloc in all), then
 * shares the image's lease with N consumer processes (a hand-off token, which
 * carries the lease's offset), each of which attaches the pool, opens the
 * exported arena once (cudaIpcOpenMemHandle), turns the token into the
 * image's device pointer with no further CUDA call, copies it back, checks
 * the producer's pixel sum and completes its part.
 *
 *   arena_ipc FILE.jpg CONSUMERS [BUDGET_MIB]
 *
 * The pool is a placed shared pool (named after the producer's pid, unlinked
 * at the end) that each consumer attaches. Prints one line per process and
 * whether the pool is whole at the end.
 * Exit 0 on success, 1 on any failure with the reason on stderr.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>
#include <nvjpeg.h>

#include "mmpool.h"

extern char **environ;

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, mmpool_last_error());
    return 1;
}

static int read_whole(const char *path, unsigned char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        if (f != NULL) fclose(f);
        return -1;
    }
    long n = ftell(f);
    rewind(f);
    *data = n > 0 ? malloc((size_t)n) : NULL;
    *len = *data == NULL ? 0 : fread(*data, 1, (size_t)n, f);
    fclose(f);
    return n > 0 && *len == (size_t)n ? 0 : -1;
}

/* The sum of `n` bytes of device memory, read back with cudaMemcpy. */
static unsigned long long sum_device(const void *ptr, size_t n, cudaError_t *e) {
    unsigned char *host = malloc(n);
    unsigned long long sum = 0;
    *e = host == NULL ? cudaErrorMemoryAllocation : cudaMemcpy(host, ptr, n, cudaMemcpyDeviceToHost);
    for (size_t i = 0; *e == cudaSuccess && i < n; i++) sum += host[i];
    free(host);
    return sum;
}

static void to_hex(const void *data, size_t len, char *out) {
    const unsigned char *b = data;
    for (size_t i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static int from_hex(const char *text, void *data, size_t len) {
    unsigned char *b = data;
    if (strlen(text) != 2 * len) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        if (sscanf(text + 2 * i, "%2x", &v) != 1) return -1;
        b[i] = (unsigned char)v;
    }
    return 0;
}

/* The placed shared pool `name`: created with `total` bytes, or (0) attached. */
static mmpool *shared_placed_pool(const char *name, uint64_t total) {
    mmpool_shared_options opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.total_bytes = total;
    opts.flags = total > 0 ? MMPOOL_SHARED_CREATE : 0;
    opts.alignment = total > 0 ? MMPOOL_DEFAULT_ALIGNMENT : 0;
    mmpool *pool = NULL;
    return mmpool_open_shared_with(name, &opts, &pool) == MMPOOL_OK ? pool : NULL;
}

/* arena_ipc consume POOL EXPORT_HEX TOKEN_HEX NBYTES SUM INDEX */
static int consume(char **argv) {
    mmpool_cuda_exported_arena exported;
    if (from_hex(argv[3], &exported, sizeof exported) != 0) {
        fprintf(stderr, "consumer: not an exported arena\n");
        return 1;
    }
    mmpool_handoff_token token;
    if (from_hex(argv[4], &token, sizeof token) != 0) {
        fprintf(stderr, "consumer: not a hand-off token\n");
        return 1;
    }
    size_t n = (size_t)strtoull(argv[5], NULL, 10);
    unsigned long long expected = strtoull(argv[6], NULL, 10);
    const char *who = argv[7];
    mmpool *pool = shared_placed_pool(argv[2], 0);
    if (pool == NULL) return fail("consumer");
    int ok = 0;
    mmpool_cuda_arena *arena = NULL;
    void *pixels = NULL;
    if (mmpool_cuda_arena_open(pool, &exported, &arena) != MMPOOL_OK) {
        fail("consumer");
        goto done;
    }
    /* The token says where the image lies: no CUDA call. */
    if (mmpool_cuda_arena_token_pointer(arena, token, &pixels) != MMPOOL_OK) {
        fail("consumer");
        goto done;
    }
    cudaError_t e;
    unsigned long long sum = sum_device(pixels, n, &e);
    if (e != cudaSuccess) {
        fprintf(stderr, "consumer %s: reading through CUDA IPC: %s\n", who, cudaGetErrorName(e));
        goto done;
    }
    printf("consumer %s: %zu bytes at offset %llu through CUDA IPC, pixel sum %llu (%s)\n", who, n,
           (unsigned long long)token.offset, sum, sum == expected ? "matches" : "DIFFERS");
    ok = sum == expected;
done:
    /* Completed also after a failure, so that the producer is not kept waiting. */
    if (mmpool_handoff_complete(pool, token, (uint32_t)strtoul(who, NULL, 10)) != MMPOOL_OK) {
        fail("consumer");
        ok = 0;
    }
    if (arena != NULL && mmpool_cuda_arena_free(arena) != MMPOOL_OK) ok = 0;
    mmpool_unref(pool);
    fflush(stdout);
    return ok ? 0 : 1;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Seconds for `rounds` gated allocations and frees of `size` bytes charged to `pool`. */
static double time_gated(mmpool *pool, int rounds, size_t size) {
    double start = now_s();
    for (int i = 0; i < rounds; i++) {
        void *p = NULL;
        if (mmpool_cuda_malloc(pool, &p, size, MMPOOL_WAIT_FOREVER) != MMPOOL_OK || mmpool_cuda_free(pool, p) != MMPOOL_OK) {
            fail("producer");
            return -1.0;
        }
    }
    return now_s() - start;
}

/* Prints what an allocation and free cost drawn from the arena against
 * cudaMalloc and cudaFree of a pool without one, measured here and now. */
static void compare_allocation_cost(mmpool *placed, uint64_t budget) {
    enum { ROUNDS = 200 };
    const size_t size = 1 << 20;
    mmpool *plain = NULL;
    if (mmpool_init(budget, &plain) != MMPOOL_OK) return;
    double cuda = time_gated(plain, ROUNDS, size), arena = time_gated(placed, ROUNDS, size);
    if (cuda > 0 && arena > 0)
        printf("allocation + free of 1 MiB, %d rounds: cudaMalloc/cudaFree %.1f us, arena %.2f us (%.0fx)\n", ROUNDS,
               cuda / ROUNDS * 1e6, arena / ROUNDS * 1e6, cuda / arena);
    mmpool_unref(plain);
}

/* Starts `consumers` copies of this program as consumers and waits for them. */
static int run_consumers(const char *self, char *name, uint32_t consumers, char *hex, char *token, size_t n,
                         unsigned long long sum) {
    char len[32], total[32], index[16];
    snprintf(len, sizeof len, "%zu", n);
    snprintf(total, sizeof total, "%llu", sum);
    pid_t pids[16];
    uint32_t started = 0;
    int ok = 1;
    fflush(stdout);
    for (; started < consumers && started < 16; started++) {
        snprintf(index, sizeof index, "%u", started);
        char *args[] = {(char *)self, "consume", name, hex, token, len, total, index, NULL};
        if (posix_spawn(&pids[started], "/proc/self/exe", NULL, NULL, args, environ) != 0) {
            perror("posix_spawn");
            ok = 0;
            break;
        }
    }
    for (uint32_t i = 0; i < started; i++) {
        int status = 0;
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = 0;
    }
    return ok && started == consumers;
}

static int produce(const char *self, const char *file, uint32_t consumers, uint64_t budget) {
    unsigned char *jpeg = NULL;
    size_t jpeg_len = 0;
    if (read_whole(file, &jpeg, &jpeg_len) != 0) return 1;
    char name[64];
    snprintf(name, sizeof name, "mmpool-arena-ipc-%ld", (long)getpid());
    mmpool *pool = shared_placed_pool(name, budget);
    if (pool == NULL) return fail("producer");
    int ok = 0;
    mmpool_cuda_arena *arena = NULL;
    nvjpegHandle_t handle = NULL;
    nvjpegJpegState_t state = NULL;
    mmpool_lease out = {0, 0};
    if (mmpool_cuda_arena_new(pool, MMPOOL_CUDA_ARENA_DEVICE, 0, &arena) != MMPOOL_OK) {
        fail("producer");
        goto done;
    }
    mmpool_cuda_exported_arena exported;
    if (mmpool_cuda_arena_export(arena, &exported) != MMPOOL_OK) {
        fail("producer");
        goto done;
    }
    compare_allocation_cost(pool, budget);
    /* nvJPEG's device buffers are drawn from the arena through the pool. */
    nvjpegDevAllocatorV2_t dev = {mmpool_cuda_dev_malloc, mmpool_cuda_dev_free, pool};
    nvjpegStatus_t s = nvjpegCreateExV2(NVJPEG_BACKEND_DEFAULT, &dev, NULL, 0, &handle);
    if (s != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegCreateExV2 failed (%d)\n", (int)s);
        handle = NULL;
        goto done;
    }
    if (nvjpegJpegStateCreate(handle, &state) != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegJpegStateCreate failed\n");
        state = NULL;
        goto done;
    }
    int components = 0, widths[NVJPEG_MAX_COMPONENT], heights[NVJPEG_MAX_COMPONENT];
    nvjpegChromaSubsampling_t subsampling;
    if (nvjpegGetImageInfo(handle, jpeg, jpeg_len, &components, &subsampling, widths, heights) != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegGetImageInfo failed\n");
        goto done;
    }
    size_t w = (size_t)widths[0], h = (size_t)heights[0], n = w * h * 3;
    /* The output: one placed lease, interleaved RGB at its offset in the arena. */
    if (mmpool_acquire(pool, n, &out) != MMPOOL_OK) {
        fail("producer");
        goto done;
    }
    void *pixels = NULL;
    uint64_t offset = 0;
    if (mmpool_cuda_arena_pointer(arena, out, &pixels) != MMPOOL_OK || mmpool_lease_offset(pool, out, &offset) != MMPOOL_OK) {
        fail("producer");
        goto done;
    }
    nvjpegImage_t image;
    memset(&image, 0, sizeof image);
    image.channel[0] = pixels;
    image.pitch[0] = w * 3;
    if (nvjpegDecode(handle, state, jpeg, jpeg_len, NVJPEG_OUTPUT_RGBI, &image, NULL) != NVJPEG_STATUS_SUCCESS) {
        fprintf(stderr, "nvjpegDecode failed\n");
        goto done;
    }
    cudaError_t e = cudaStreamSynchronize(NULL);
    unsigned long long sum = e == cudaSuccess ? sum_device(pixels, n, &e) : 0;
    if (e != cudaSuccess) {
        fprintf(stderr, "reading the image back: %s\n", cudaGetErrorName(e));
        goto done;
    }
    mmpool_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    mmpool_get_stats(pool, &st);
    printf("producer: decoded RGB %zux%zu into the arena at offset %llu, pixel sum %llu; %llu leases (nvJPEG's and "
           "the image) in one cudaMalloc of %llu bytes\n",
           w, h, (unsigned long long)offset, sum, (unsigned long long)st.outstanding_leases,
           (unsigned long long)budget);
    /* The producer keeps the lease and frees it once every consumer is done. */
    mmpool_handoff_token token;
    if (mmpool_lease_share(pool, out, consumers, MMPOOL_NO_CLAIM_DEADLINE, MMPOOL_SHARE_KEEP_LEASE, &token) != MMPOOL_OK) {
        fail("producer");
        goto done;
    }
    char hex[2 * sizeof exported + 1], token_hex[2 * sizeof token + 1];
    to_hex(&exported, sizeof exported, hex);
    to_hex(&token, sizeof token, token_hex);
    if (!run_consumers(self, name, consumers, hex, token_hex, n, sum)) {
        fprintf(stderr, "producer: a consumer failed\n");
        goto done;
    }
    if (mmpool_handoff_wait(pool, token, 0) != MMPOOL_OK) {
        fail("producer");
        goto done;
    }
    printf("producer: all %u consumers read the image and completed their parts\n", consumers);
    ok = 1;
done:
    if (out.id != 0) mmpool_release(pool, out);
    if (state != NULL) nvjpegJpegStateDestroy(state);
    if (handle != NULL) nvjpegDestroy(handle);
    if (arena != NULL) mmpool_cuda_arena_free(arena);
    mmpool_stats end;
    memset(&end, 0, sizeof end);
    end.size = sizeof end;
    mmpool_get_stats(pool, &end);
    printf("producer: pool available=%llu of %llu -> %s\n", (unsigned long long)end.available_bytes,
           (unsigned long long)end.total_bytes, end.available_bytes == end.total_bytes ? "whole" : "NOT whole");
    if (end.available_bytes != end.total_bytes) ok = 0;
    mmpool_unref(pool);
    mmpool_unlink_shared(name);
    free(jpeg);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 8 && strcmp(argv[1], "consume") == 0) return consume(argv);
    if (argc == 3 || argc == 4) {
        uint64_t mib = argc == 4 ? strtoull(argv[3], NULL, 10) : 64;
        return produce(argv[0], argv[1], (uint32_t)strtoul(argv[2], NULL, 10), mib << 20);
    }
    fprintf(stderr, "usage: %s FILE.jpg CONSUMERS [BUDGET_MIB]\n", argv[0]);
    return 2;
}
