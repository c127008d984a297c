/*
 * Assertions and thread helpers shared by the C tests of the mmpool ABI.
 * A failed check prints where and why (with mmpool_last_error()) and exits 1,
 * also while other threads are blocked in the pool.
 */
#ifndef MMPOOL_C_TESTS_CHECK_H
#define MMPOOL_C_TESTS_CHECK_H

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmpool.h"

#define FAIL_AT(...)                                                        \
    do {                                                                    \
        fprintf(stderr, "%s:%d: FAILED: ", __FILE__, __LINE__);             \
        fprintf(stderr, __VA_ARGS__);                                       \
        fprintf(stderr, "\n  mmpool_last_error(): \"%s\"\n", mmpool_last_error()); \
        fflush(stderr);                                                     \
        exit(1);                                                            \
    } while (0)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) FAIL_AT("%s", #cond);                                  \
    } while (0)

/* Expects `expr` (an mmpool call) to return `status`. */
#define CHECK_STATUS(expr, status)                                          \
    do {                                                                    \
        mmpool_status got_ = (expr);                                        \
        if (got_ != (status))                                               \
            FAIL_AT("%s returned %s, expected %s", #expr,                   \
                    mmpool_status_str(got_), mmpool_status_str(status));    \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, MMPOOL_OK)

#define CHECK_U64(actual, expected)                                         \
    do {                                                                    \
        uint64_t a_ = (uint64_t)(actual), e_ = (uint64_t)(expected);        \
        if (a_ != e_)                                                       \
            FAIL_AT("%s == %" PRIu64 ", expected %s == %" PRIu64, #actual,  \
                    a_, #expected, e_);                                     \
    } while (0)

#define CHECK_STR(actual, expected)                                         \
    do {                                                                    \
        const char *a_ = (actual), *e_ = (expected);                        \
        if (a_ == NULL || strcmp(a_, e_) != 0)                              \
            FAIL_AT("%s == \"%s\", expected \"%s\"", #actual,               \
                    a_ ? a_ : "(null)", e_);                                \
    } while (0)

/* The failure just returned left a message on this thread naming `fn`. */
#define CHECK_LAST_ERROR_NAMES(fn)                                          \
    do {                                                                    \
        const char *m_ = mmpool_last_error();                               \
        if (m_ == NULL || m_[0] == '\0' || strstr(m_, fn) == NULL)          \
            FAIL_AT("mmpool_last_error() does not name %s", fn);            \
    } while (0)

static inline mmpool_stats get_stats(mmpool *pool) {
    mmpool_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    CHECK_OK(mmpool_get_stats(pool, &s));
    return s;
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Waits (polling, up to 30 s) until `pool` has exactly `n` waiters. This only
 * orders the test: a thread counted as a waiter has taken its place in line.
 */
#define WAIT_FOR_WAITERS(pool, n)                                           \
    do {                                                                    \
        uint64_t deadline_ = now_ns() + 30000000000ull;                     \
        while (get_stats(pool).waiters != (uint64_t)(n)) {                  \
            if (now_ns() > deadline_)                                       \
                FAIL_AT("the pool never reached %d waiters", (int)(n));     \
            pause_ms(1);                                                    \
        }                                                                   \
    } while (0)

/* A thread that makes one mmpool call and keeps what it returned. */
typedef struct waiter {
    pthread_t thread;
    mmpool *pool;
    uint64_t nbytes;
    int timed;           /* 1: mmpool_acquire_timeout(timeout_ns); 0: mmpool_acquire */
    uint64_t timeout_ns;
    mmpool_status status;
    mmpool_lease lease;
    uint64_t waited_ns;
} waiter;

static inline void *waiter_main(void *arg) {
    waiter *w = (waiter *)arg;
    uint64_t start = now_ns();
    w->status = w->timed ? mmpool_acquire_timeout(w->pool, w->nbytes, w->timeout_ns, &w->lease)
                         : mmpool_acquire(w->pool, w->nbytes, &w->lease);
    w->waited_ns = now_ns() - start;
    return NULL;
}

/* Starts a thread acquiring `nbytes` (with mmpool_acquire_timeout when `timed`)
 * and returns once the pool counts `expected_waiters` waiters. */
static inline void start_waiter_call(waiter *w, mmpool *pool, uint64_t nbytes, int timed,
                                     uint64_t timeout_ns, uint64_t expected_waiters) {
    memset(w, 0, sizeof *w);
    w->pool = pool;
    w->nbytes = nbytes;
    w->timed = timed;
    w->timeout_ns = timeout_ns;
    w->status = MMPOOL_ERR_INTERNAL;
    if (pthread_create(&w->thread, NULL, waiter_main, w) != 0) FAIL_AT("pthread_create");
    WAIT_FOR_WAITERS(pool, expected_waiters);
}

/* As start_waiter_call: mmpool_acquire for MMPOOL_WAIT_FOREVER, else timed. */
static inline void start_waiter(waiter *w, mmpool *pool, uint64_t nbytes, uint64_t timeout_ns,
                                uint64_t expected_waiters) {
    start_waiter_call(w, pool, nbytes, timeout_ns != MMPOOL_WAIT_FOREVER, timeout_ns,
                      expected_waiters);
}

static inline void join_waiter(waiter *w) {
    if (pthread_join(w->thread, NULL) != 0) FAIL_AT("pthread_join");
}

#endif /* MMPOOL_C_TESTS_CHECK_H */
