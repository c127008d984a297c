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
#include <sys/wait.h>
#include <unistd.h>

#include "mmpool.h"

#define FRAME_BYTES (256u * 1024u)
#define CONSUMERS 2u
#define SECOND_NS 1000000000ull

static uint8_t pixel(size_t i) { return (uint8_t)(i * 31u + 7u); }

static int fail(const char *what, mmpool_status s) {
    fprintf(stderr, "handoff_consumers: %s: %s (%s)\n", what, mmpool_status_str(s), mmpool_last_error());
    return 1;
}

/* A consumer process: the token comes through `in`, the frame is `frame_fd`. */
static int consume(const char *name, int in, int frame_fd, uint32_t part) {
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
    for (uint32_t part = 0; part < CONSUMERS; part++) {
        int pipe_fd[2];
        if (pipe(pipe_fd) != 0) {
            perror("pipe");
            return 1;
        }
        fflush(stdout);
        child[part] = fork();
        if (child[part] < 0) {
            perror("fork");
            return 1;
        }
        if (child[part] == 0) {
            close(pipe_fd[1]);
            int rc = consume(name, pipe_fd[0], frame_fd, part);
            fflush(stdout);
            _exit(rc);
        }
        close(pipe_fd[0]);
        if (write(pipe_fd[1], &token, sizeof token) != (ssize_t)sizeof token) {
            perror("write the token");
            return 1;
        }
        close(pipe_fd[1]);
    }

    /* Wait for both consumers; then the bytes are back. */
    int ok = 1;
    if ((s = mmpool_handoff_wait(pool, token, 30 * SECOND_NS)) != MMPOOL_OK) ok = !fail("wait for the hand-off", s);
    for (uint32_t part = 0; part < CONSUMERS; part++) {
        int status = 0;
        ok &= waitpid(child[part], &status, 0) == child[part] && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
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
