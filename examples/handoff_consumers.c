/*
 * A producer process hands a decoded frame to two consumer processes over a
 * shared pool, the way a front end hands GPU output to tensor-parallel
 * workers: the frame's bytes are charged to the budget until both consumers
 * are done with them.
 *
 * Host memory stands in for the device buffer: the producer "decodes" into a
 * memfd (where a GPU exists this is cudaMalloc'ed memory and a CUDA IPC handle;
 * see scripts/gpu-check.sh). It acquires the frame's bytes, shares the lease in
 * two parts and sends each consumer the token (a 32-byte value) through a
 * pipe. Each consumer attaches to the pool, claims its part (should it die now,
 * the part completes by itself), maps the buffer, checks every byte and
 * completes its part. The producer waits for the hand-off and sees the bytes
 * back in the pool.
 *
 * Exit status 0 when both consumers read the frame intact and every byte came
 * back; 1 otherwise. Linux only (memfd_create, fork).
 *
 *   cc -D_GNU_SOURCE -Iinclude examples/handoff_consumers.c -Ltarget/release -lmmpool
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "consumer_processes.h"
#include "mmpool.h"

#define FRAME_BYTES (256u * 1024u)
#define CONSUMERS 2u
#define SECOND_NS 1000000000ull

static uint8_t pixel(size_t i) { return (uint8_t)(i * 31u + 7u); }

static int fail(const char *what, mmpool_status s) {
    fprintf(stderr, "handoff_consumers: %s: %s (%s)\n", what, mmpool_status_str(s), mmpool_last_error());
    return 1;
}

/* What every consumer is given. */
typedef struct frame_info {
    const char *pool_name;
    int fd;
} frame_info;

/* A consumer process: the token comes through `in`, the frame is `arg`'s fd. */
static int consume(int in, uint32_t part, void *arg) {
    const char *name = ((frame_info *)arg)->pool_name;
    int frame_fd = ((frame_info *)arg)->fd;
    mmpool_handoff_token token;
    if (read(in, &token, sizeof token) != (ssize_t)sizeof token) {
        fprintf(stderr, "consumer %u: no token\n", part);
        return 1;
    }
    mmpool *pool = NULL;
    mmpool_status s = mmpool_open_shared(name, 0, 0, &pool);
    if (s != MMPOOL_OK) return fail("consumer: attach", s);
    if ((s = mmpool_handoff_claim(pool, token, part)) != MMPOOL_OK) return fail("consumer: claim", s);
    const uint8_t *frame = mmap(NULL, FRAME_BYTES, PROT_READ, MAP_SHARED, frame_fd, 0);
    if (frame == MAP_FAILED) {
        perror("consumer: mmap");
        return 1;
    }
    int intact = 1;
    for (size_t i = 0; i < FRAME_BYTES; i++) intact &= frame[i] == pixel(i);
    munmap((void *)frame, FRAME_BYTES);
    if ((s = mmpool_handoff_complete(pool, token, part)) != MMPOOL_OK) return fail("consumer: complete", s);
    mmpool_unref(pool);
    printf("consumer %u: read %u bytes, %s\n", part, FRAME_BYTES, intact ? "intact" : "CORRUPT");
    return intact ? 0 : 1;
}

int main(void) {
    char name[64];
    snprintf(name, sizeof name, "example-handoff-%ld", (long)getpid());
    const uint64_t total = 4ull * FRAME_BYTES;
    mmpool *pool = NULL;
    mmpool_status s = mmpool_open_shared(name, total, MMPOOL_SHARED_EXCLUSIVE, &pool);
    if (s != MMPOOL_OK) return fail("create the shared pool", s);

    /* Decode: charge the frame to the budget, then write it. */
    mmpool_lease lease;
    if ((s = mmpool_acquire(pool, FRAME_BYTES, &lease)) != MMPOOL_OK) return fail("acquire", s);
    int frame_fd = memfd_create("frame", 0);
    if (frame_fd < 0 || ftruncate(frame_fd, FRAME_BYTES) != 0) {
        perror("memfd");
        return 1;
    }
    uint8_t *frame = mmap(NULL, FRAME_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, frame_fd, 0);
    if (frame == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (size_t i = 0; i < FRAME_BYTES; i++) frame[i] = pixel(i);

    /* Share: the lease ends, its bytes stay charged until both parts complete. */
    mmpool_handoff_token token;
    s = mmpool_lease_share(pool, lease, CONSUMERS, 10 * SECOND_NS, 0, &token);
    if (s != MMPOOL_OK) return fail("share", s);

    pid_t child[CONSUMERS];
    int out[CONSUMERS];
    frame_info info = {name, frame_fd};
    if (fork_consumers(CONSUMERS, consume, &info, child, out) != 0) return 1;
    int ok = send_to_consumers(CONSUMERS, out, &token, sizeof token) == 0;

    /* Wait for both consumers; then the bytes are back. */
    if ((s = mmpool_handoff_wait(pool, token, 30 * SECOND_NS)) != MMPOOL_OK) ok = !fail("wait for the hand-off", s);
    ok &= consumers_succeeded(CONSUMERS, out, child);
    mmpool_handoff_stats hs;
    if ((s = mmpool_get_handoff_stats(pool, &hs)) != MMPOOL_OK) return fail("hand-off stats", s);
    uint64_t available = mmpool_available_bytes(pool);
    printf("producer: %" PRIu64 " of %" PRIu64 " bytes available, %" PRIu64 " hand-off finished, %" PRIu64
           " parts expired\n",
           available, total, hs.finished, hs.expired_parts);
    ok &= available == total && hs.finished == 1 && hs.outstanding == 0 && hs.expired_parts == 0;
    munmap(frame, FRAME_BYTES);
    close(frame_fd);
    mmpool_unref(pool);
    mmpool_unlink_shared(name);
    puts(ok ? "handoff_consumers: ok" : "handoff_consumers: FAILED");
    return ok ? 0 : 1;
}
