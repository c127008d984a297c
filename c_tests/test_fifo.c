/*
 * Strict FIFO with threads. Each thread is started only after the one before
 * it is counted as a waiter, so the order of the line is known; the order of
 * grants is then recorded by threads that each need the whole pool, so one
 * thread's record happens before the next one's grant.
 */
#include "check.h"

enum { N = 6, TOTAL = 10 };

typedef struct {
    mmpool *pool;
    int index;
    uint64_t nbytes;
    mmpool_status status;
} runner;

static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static int order[N + 1];
static int granted;

static void *take_record_release(void *arg) {
    runner *r = (runner *)arg;
    mmpool_lease lease;
    r->status = mmpool_acquire(r->pool, r->nbytes, &lease);
    if (r->status != MMPOOL_OK) return NULL;
    pthread_mutex_lock(&order_lock);
    order[granted++] = r->index;
    pthread_mutex_unlock(&order_lock);
    r->status = mmpool_release(r->pool, lease);
    return NULL;
}

static void start_runner(pthread_t *t, runner *r, mmpool *pool, int index, uint64_t nbytes) {
    r->pool = pool;
    r->index = index;
    r->nbytes = nbytes;
    r->status = MMPOOL_ERR_INTERNAL;
    if (pthread_create(t, NULL, take_record_release, r) != 0) FAIL_AT("pthread_create");
}

/* Whole-pool requests are granted one at a time, in the order they queued. */
static void grants_follow_arrival_order(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(TOTAL, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, TOTAL, &held));

    pthread_t threads[N];
    runner runners[N];
    granted = 0;
    for (int i = 0; i < N; i++) {
        start_runner(&threads[i], &runners[i], pool, i, TOTAL);
        WAIT_FOR_WAITERS(pool, i + 1);
    }
    CHECK_OK(mmpool_release(pool, held));
    for (int i = 0; i < N; i++) {
        if (pthread_join(threads[i], NULL) != 0) FAIL_AT("pthread_join");
        CHECK_OK(runners[i].status);
    }
    CHECK(granted == N);
    for (int i = 0; i < N; i++) {
        if (order[i] != i) FAIL_AT("grant %d went to thread %d, not thread %d", i, order[i], i);
    }
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.waited_grants, N);
    CHECK_U64(s.available_bytes, TOTAL);
    mmpool_unref(pool);
}

/* A small request that would fit waits behind a big one queued before it. */
static void a_small_request_does_not_overtake(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(TOTAL, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 5, &held));

    pthread_t big_t, small_t;
    runner big, small;
    granted = 0;
    start_runner(&big_t, &big, pool, 0, TOTAL);
    WAIT_FOR_WAITERS(pool, 1);
    start_runner(&small_t, &small, pool, 1, 1);
    /* 5 bytes are free, yet the 1-byte request joins the line. */
    WAIT_FOR_WAITERS(pool, 2);
    CHECK_U64(mmpool_available_bytes(pool), 5);

    /* try_acquire does not jump the line either. */
    mmpool_lease l;
    CHECK_STATUS(mmpool_try_acquire(pool, 1, &l), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_U64(mmpool_available_bytes(pool), 5);
    /* Nor does a timed acquire. */
    CHECK_STATUS(mmpool_acquire_timeout(pool, 1, 1000000, &l), MMPOOL_ERR_TIMEOUT);
    CHECK_U64(get_stats(pool).waiters, 2);

    CHECK_OK(mmpool_release(pool, held));
    if (pthread_join(big_t, NULL) != 0 || pthread_join(small_t, NULL) != 0) FAIL_AT("pthread_join");
    CHECK_OK(big.status);
    CHECK_OK(small.status);
    CHECK(granted == 2);
    CHECK(order[0] == 0 && order[1] == 1);
    CHECK_U64(mmpool_available_bytes(pool), TOTAL);
    mmpool_unref(pool);
}

/* A release grants from the head as far as the bytes reach, and no further:
 * with [4, 4, 4] waiting and 9 bytes returned, the first two are granted and
 * the third still waits though 1 byte is free. */
static void a_release_grants_from_the_head_as_far_as_it_reaches(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(9, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 9, &held));
    waiter w[3];
    for (int i = 0; i < 3; i++) start_waiter(&w[i], pool, 4, MMPOOL_WAIT_FOREVER, (uint64_t)i + 1);
    CHECK_OK(mmpool_release(pool, held));
    join_waiter(&w[0]);
    join_waiter(&w[1]);
    CHECK_OK(w[0].status);
    CHECK_OK(w[1].status);
    CHECK_U64(mmpool_available_bytes(pool), 1);
    WAIT_FOR_WAITERS(pool, 1);
    CHECK_OK(mmpool_release(pool, w[0].lease));
    join_waiter(&w[2]);
    CHECK_OK(w[2].status);
    CHECK_U64(mmpool_available_bytes(pool), 1);
    CHECK_OK(mmpool_release(pool, w[1].lease));
    CHECK_OK(mmpool_release(pool, w[2].lease));
    CHECK_U64(mmpool_available_bytes(pool), 9);
    mmpool_unref(pool);
}

int main(void) {
    grants_follow_arrival_order();
    a_small_request_does_not_overtake();
    a_release_grants_from_the_head_as_far_as_it_reaches();
    puts("fifo: ok");
    return 0;
}
