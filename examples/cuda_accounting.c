/*
 * Checks mmpool's accounting against the device: allocates through
 * mmpool_cuda_malloc until the budget is spent, compares the pool's bytes in
 * use with what cudaMemGetInfo says the device lost, frees everything and
 * checks that both come back.
 *
 *   cuda_accounting [BUDGET_MIB] [BUFFER_MIB]      (defaults: 64 8)
 *
 * Exits 0 when every check holds, 1 otherwise. scripts/gpu-check.sh runs it
 * on a GPU; scripts/test-cuda.sh runs it over the stand-in runtime.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "mmpool.h"

#define MIB ((size_t)1 << 20)
#define MAX_BUFFERS 1024

static int failures;

static void check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

static size_t device_free(void) {
    size_t free_bytes = 0, total = 0;
    cudaError_t e = cudaMemGetInfo(&free_bytes, &total);
    if (e != cudaSuccess) {
        fprintf(stderr, "cudaMemGetInfo: %s: %s\n", cudaGetErrorName(e), cudaGetErrorString(e));
        exit(1);
    }
    return free_bytes;
}

int main(int argc, char **argv) {
    size_t budget = (argc > 1 ? strtoull(argv[1], NULL, 10) : 64) * MIB;
    size_t size = (argc > 2 ? strtoull(argv[2], NULL, 10) : 8) * MIB;
    if (budget == 0 || size == 0 || budget / size > MAX_BUFFERS) {
        fprintf(stderr, "usage: %s [BUDGET_MIB] [BUFFER_MIB] (at most %d buffers)\n", argv[0], MAX_BUFFERS);
        return 2;
    }
    cudaError_t e = cudaFree(NULL); /* create the context before measuring */
    if (e != cudaSuccess) {
        fprintf(stderr, "CUDA is not usable here: %s: %s\n", cudaGetErrorName(e), cudaGetErrorString(e));
        return 1;
    }

    mmpool *pool = NULL;
    if (mmpool_init(budget, &pool) != MMPOOL_OK) {
        fprintf(stderr, "mmpool_init: %s\n", mmpool_last_error());
        return 1;
    }
    size_t before = device_free();

    void *buffers[MAX_BUFFERS];
    size_t n = 0;
    while (n < MAX_BUFFERS && mmpool_cuda_malloc(pool, &buffers[n], size, 0) == MMPOOL_OK) n++;
    mmpool_status refused = mmpool_cuda_malloc(pool, &buffers[0], size, 0);
    size_t in_use = budget - mmpool_available_bytes(pool);
    size_t lost = before - device_free();
    size_t slack = n * 2 * MIB + 32 * MIB; /* page rounding, driver bookkeeping */

    printf("budget %zu MiB, %zu buffers of %zu MiB: pool in use %zu bytes, device lost %zu bytes (ratio %.3f)\n",
           budget / MIB, n, size / MIB, in_use, lost, in_use ? (double)lost / (double)in_use : 0.0);
    check(n == budget / size, "the budget admitted exactly budget / size buffers");
    check(refused == MMPOOL_ERR_TIMEOUT, "one more buffer is refused (MMPOOL_ERR_TIMEOUT) without waiting");
    check(in_use == n * size, "the pool charges exactly the bytes allocated");
    check(lost >= in_use, "the device lost at least what the pool charged");
    check(lost <= in_use + slack, "the device lost no more than that plus page rounding");

    for (size_t i = 0; i < n; i++) {
        if (mmpool_cuda_free(pool, buffers[i]) != MMPOOL_OK) {
            fprintf(stderr, "mmpool_cuda_free: %s\n", mmpool_last_error());
            failures++;
        }
    }
    size_t after = device_free();
    size_t kept = before > after ? before - after : 0;
    printf("after freeing: pool available %llu of %zu, device keeps %zu bytes\n",
           (unsigned long long)mmpool_available_bytes(pool), budget, kept);
    check(mmpool_available_bytes(pool) == budget, "the pool is whole again");
    check(kept <= 32 * MIB, "the device got its memory back");
    mmpool_unref(pool);
    return failures == 0 ? 0 : 1;
}
