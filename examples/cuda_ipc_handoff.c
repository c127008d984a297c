/*
 * The hand-off of examples/handoff_consumers.c with real device memory and
 * CUDA IPC: a producer cudaMalloc's a frame charged to a shared pool, fills
 * it, and sends two consumer processes the frame's cudaIpcMemHandle_t next to
 * the hand-off token through a pipe. Each consumer claims its part, opens the
 * handle (cudaIpcOpenMemHandle), copies the frame back to the host, checks
 * every byte, closes the handle and completes its part. The producer, which
 * owns the memory, shared with MMPOOL_SHARE_KEEP_LEASE: it waits for the
 * hand-off, frees the memory, then releases the lease.
 *
 * The consumers are forked before the producer touches CUDA (a CUDA context
 * does not survive fork). Exit status 0 when both consumers read the frame
 * intact and the pool is whole at the end; 1 otherwise: without a GPU the
 * producer's cudaMalloc fails, the consumers end, and the pool is whole.
 *
 *   cc -D_GNU_SOURCE -Iinclude -I<cuda>/include examples/cuda_ipc_handoff.c \
 *      -Ltarget/release -lmmpool -L<cuda>/lib -l:libcudart.so.12
 */
#include <cuda_runtime_api.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consumer_processes.h"
#include "mmpool.h"

#define FRAME_BYTES (8u << 20)
#define CONSUMERS 2u
#define SECOND_NS 1000000000ull

/* What the producer sends each consumer. */
typedef struct message {
    mmpool_handoff_token token;
    cudaIpcMemHandle_t frame;
} message;

static uint8_t pixel(size_t i) { return (uint8_t)(i * 31u + 7u); }

static int mm_fail(const char *who, const char *what, mmpool_status s) {
    fprintf(stderr, "%s: %s: %s (%s)\n", who, what, mmpool_status_str(s), mmpool_last_error());
    return 1;
}

static int cuda_fail(const char *who, const char *what, cudaError_t e) {
    fprintf(stderr, "%s: %s: %s\n", who, what, cudaGetErrorString(e));
    return 1;
}

static int consume(int in, uint32_t part, void *pool_name) {
    const char *name = pool_name;
    char who[32];
    snprintf(who, sizeof who, "consumer %u", part);
    message m;
    if (read(in, &m, sizeof m) != (ssize_t)sizeof m) {
        fprintf(stderr, "%s: no message (the producer failed)\n", who);
        return 1;
    }
    mmpool *pool = NULL;
    mmpool_status s = mmpool_open_shared(name, 0, 0, &pool);
    if (s != MMPOOL_OK) return mm_fail(who, "attach", s);
    if ((s = mmpool_handoff_claim(pool, m.token, part)) != MMPOOL_OK) return mm_fail(who, "claim", s);
    void *frame = NULL;
    cudaError_t e = cudaIpcOpenMemHandle(&frame, m.frame, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) return cuda_fail(who, "cudaIpcOpenMemHandle", e);
    uint8_t *host = malloc(FRAME_BYTES);
    if (host == NULL) return 1;
    if ((e = cudaMemcpy(host, frame, FRAME_BYTES, cudaMemcpyDeviceToHost)) != cudaSuccess)
        return cuda_fail(who, "cudaMemcpy", e);
    int intact = 1;
    for (size_t i = 0; i < FRAME_BYTES; i++) intact &= host[i] == pixel(i);
    free(host);
    if ((e = cudaIpcCloseMemHandle(frame)) != cudaSuccess) return cuda_fail(who, "cudaIpcCloseMemHandle", e);
    if ((s = mmpool_handoff_complete(pool, m.token, part)) != MMPOOL_OK) return mm_fail(who, "complete", s);
    mmpool_unref(pool);
    printf("%s: read %u bytes through CUDA IPC, %s\n", who, FRAME_BYTES, intact ? "intact" : "CORRUPT");
    return intact ? 0 : 1;
}

/* Decodes into device memory charged to `lease`, hands it to the consumers
 * and frees it once they are done; 0 on success. */
static int share_frame(mmpool *pool, mmpool_lease lease, const int out[CONSUMERS]) {
    const char *who = "producer";
    void *frame = NULL;
    cudaError_t e = cudaMalloc(&frame, FRAME_BYTES);
    if (e != cudaSuccess) return cuda_fail(who, "cudaMalloc", e);
    int rc = 1;
    message m;
    memset(&m, 0, sizeof m);
    uint8_t *host = malloc(FRAME_BYTES);
    if (host == NULL) goto done;
    for (size_t i = 0; i < FRAME_BYTES; i++) host[i] = pixel(i);
    e = cudaMemcpy(frame, host, FRAME_BYTES, cudaMemcpyHostToDevice);
    free(host);
    if (e != cudaSuccess) {
        cuda_fail(who, "cudaMemcpy", e);
        goto done;
    }
    if ((e = cudaIpcGetMemHandle(&m.frame, frame)) != cudaSuccess) {
        cuda_fail(who, "cudaIpcGetMemHandle", e);
        goto done;
    }
    mmpool_status s = mmpool_lease_share(pool, lease, CONSUMERS, 30 * SECOND_NS, MMPOOL_SHARE_KEEP_LEASE, &m.token);
    if (s != MMPOOL_OK) {
        mm_fail(who, "share", s);
        goto done;
    }
    if (send_to_consumers(CONSUMERS, out, &m, sizeof m) != 0) goto done;
    /* The consumers read the memory until the hand-off finishes. */
    s = mmpool_handoff_wait(pool, m.token, 60 * SECOND_NS);
    rc = s == MMPOOL_OK ? 0 : mm_fail(who, "wait", s);
done:
    e = cudaFree(frame);
    return e == cudaSuccess ? rc : cuda_fail(who, "cudaFree", e);
}

/* The producer's part, after the consumers were forked; 0 on success. The
 * lease is released after the memory is freed, success or not. */
static int produce(mmpool *pool, const int out[CONSUMERS]) {
    mmpool_lease lease;
    mmpool_status s = mmpool_acquire(pool, FRAME_BYTES, &lease);
    if (s != MMPOOL_OK) return mm_fail("producer", "acquire", s);
    int rc = share_frame(pool, lease, out);
    if ((s = mmpool_release(pool, lease)) != MMPOOL_OK) return mm_fail("producer", "release", s);
    return rc;
}

int main(void) {
    char name[64];
    snprintf(name, sizeof name, "example-cuda-ipc-%ld", (long)getpid());
    const uint64_t total = 4ull * FRAME_BYTES;
    mmpool *pool = NULL;
    mmpool_status s = mmpool_open_shared(name, total, MMPOOL_SHARED_EXCLUSIVE, &pool);
    if (s != MMPOOL_OK) return mm_fail("producer", "create the shared pool", s);

    int out[CONSUMERS];
    pid_t child[CONSUMERS];
    if (fork_consumers(CONSUMERS, consume, name, child, out) != 0) return 1;
    int ok = produce(pool, out) == 0;
    ok &= consumers_succeeded(CONSUMERS, out, child); /* after a failed producer: they read no message */
    uint64_t available = mmpool_available_bytes(pool);
    printf("producer: %" PRIu64 " of %" PRIu64 " bytes available\n", available, total);
    ok &= available == total;
    mmpool_unref(pool);
    mmpool_unlink_shared(name);
    puts(ok ? "cuda_ipc_handoff: ok" : "cuda_ipc_handoff: FAILED");
    return ok ? 0 : 1;
}
