/*
 * Timeouts: a wait that runs out reserves nothing, never returns before its
 * time, counts in the stats, and when it was at the head of the line lets the
 * ones behind it proceed at once.
 */
#include "check.h"

static void a_timeout_reserves_nothing_and_waits_its_time(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 60, &held));

    const uint64_t timeout = 20 * 1000000ull; /* 20 ms */
    mmpool_lease l = {42, 42};
    uint64_t start = now_ns();
    CHECK_STATUS(mmpool_acquire_timeout(pool, 50, timeout, &l), MMPOOL_ERR_TIMEOUT);
    uint64_t waited = now_ns() - start;
    CHECK_LAST_ERROR_NAMES("mmpool_acquire_timeout");
    if (waited < timeout) FAIL_AT("returned after %" PRIu64 " ns, before the %" PRIu64 " ns timeout", waited, timeout);
    CHECK_U64(l.id, 42);
    CHECK_U64(mmpool_available_bytes(pool), 40);
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.timeouts, 1);
    CHECK_U64(s.waiters, 0);
    CHECK_U64(s.in_use_bytes, 60);

    /* A zero timeout does not wait at all, and counts as a timeout. */
    CHECK_STATUS(mmpool_acquire_timeout(pool, 50, 0, &l), MMPOOL_ERR_TIMEOUT);
    CHECK_U64(get_stats(pool).timeouts, 2);
    /* What fits is granted whatever the timeout. */
    CHECK_OK(mmpool_acquire_timeout(pool, 40, 0, &l));
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_OK(mmpool_release(pool, l));
    CHECK_OK(mmpool_release(pool, held));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    mmpool_unref(pool);
}

/* The head of the line times out; the request behind it, which fits, is
 * granted without anyone releasing anything. (The head's 2 s timeout only has
 * to outlast starting the second thread.) */
static void a_head_that_times_out_lets_the_next_through(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 5, &held));

    waiter head, next;
    start_waiter(&head, pool, 10, 2000 * 1000000ull, 1);
    start_waiter(&next, pool, 3, MMPOOL_WAIT_FOREVER, 2);
    join_waiter(&head);
    CHECK_STATUS(head.status, MMPOOL_ERR_TIMEOUT);
    join_waiter(&next);
    CHECK_OK(next.status);
    CHECK_U64(next.lease.nbytes, 3);
    CHECK_U64(mmpool_available_bytes(pool), 2);
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.timeouts, 1);
    CHECK_U64(s.waiters, 0);
    CHECK_OK(mmpool_release(pool, next.lease));
    CHECK_OK(mmpool_release(pool, held));
    CHECK_U64(mmpool_available_bytes(pool), 10);
    mmpool_unref(pool);
}

/* Long timeouts through mmpool_acquire_timeout wait until a release:
 * MMPOOL_WAIT_FOREVER and the largest finite value. */
static void wait_forever_waits_for_the_release(void) {
    const uint64_t timeouts[2] = {MMPOOL_WAIT_FOREVER, UINT64_MAX - 1};
    for (int i = 0; i < 2; i++) {
        mmpool *pool = NULL;
        CHECK_OK(mmpool_init(4, &pool));
        mmpool_lease held;
        CHECK_OK(mmpool_acquire(pool, 4, &held));
        waiter w;
        start_waiter_call(&w, pool, 4, 1, timeouts[i], 1);
        CHECK_OK(mmpool_release(pool, held));
        join_waiter(&w);
        CHECK_OK(w.status);
        CHECK_U64(mmpool_available_bytes(pool), 0);
        CHECK_OK(mmpool_release(pool, w.lease));
        CHECK_U64(get_stats(pool).timeouts, 0);
        mmpool_unref(pool);
    }
}

int main(void) {
    a_timeout_reserves_nothing_and_waits_its_time();
    a_head_that_times_out_lets_the_next_through();
    wait_forever_waits_for_the_release();
    puts("timeouts: ok");
    return 0;
}
