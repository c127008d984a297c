/*
 * mmpool_get_stats: every counter after a known sequence, and the size
 * protocol that lets the struct grow.
 */
#include "check.h"

static void counters_follow_a_known_sequence(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.size, sizeof(mmpool_stats));
    CHECK_U64(s.total_bytes, 100);
    CHECK_U64(s.available_bytes, 100);
    CHECK_U64(s.in_use_bytes, 0);
    CHECK_U64(s.peak_in_use_bytes, 0);
    CHECK_U64(s.outstanding_leases, 0);
    CHECK_U64(s.waiters, 0);
    CHECK_U64(s.grants, 0);
    CHECK_U64(s.waited_grants, 0);
    CHECK_U64(s.timeouts, 0);
    CHECK_U64(s.would_blocks, 0);
    CHECK_U64(s.capacity_rejections, 0);
    CHECK_U64(s.closed_rejections, 0);
    CHECK_U64(s.wait_ns_total, 0);
    CHECK_U64(s.wait_ns_max, 0);

    mmpool_lease a, b, x;
    CHECK_OK(mmpool_acquire(pool, 70, &a));          /* grant 1, no wait */
    CHECK_OK(mmpool_try_acquire(pool, 20, &b));      /* grant 2 */
    CHECK_STATUS(mmpool_try_acquire(pool, 20, &x), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_STATUS(mmpool_try_acquire(pool, 11, &x), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_STATUS(mmpool_acquire(pool, 101, &x), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_acquire_timeout(pool, 50, 0, &x), MMPOOL_ERR_TIMEOUT);
    CHECK_OK(mmpool_release(pool, b));

    s = get_stats(pool);
    CHECK_U64(s.available_bytes, 30);
    CHECK_U64(s.in_use_bytes, 70);
    CHECK_U64(s.peak_in_use_bytes, 90);
    CHECK_U64(s.outstanding_leases, 1);
    CHECK_U64(s.grants, 2);
    CHECK_U64(s.waited_grants, 0);
    CHECK_U64(s.would_blocks, 2);
    CHECK_U64(s.capacity_rejections, 1);
    CHECK_U64(s.timeouts, 1);
    CHECK_U64(s.wait_ns_total, 0);

    /* Two grants that had to wait, each at least 5 ms. */
    waiter w1, w2;
    start_waiter(&w1, pool, 60, MMPOOL_WAIT_FOREVER, 1);
    start_waiter(&w2, pool, 40, MMPOOL_WAIT_FOREVER, 2);
    s = get_stats(pool);
    CHECK_U64(s.waiters, 2);
    pause_ms(5);
    CHECK_OK(mmpool_release(pool, a));
    join_waiter(&w1);
    CHECK_OK(w1.status);
    CHECK_OK(mmpool_release(pool, w1.lease));
    join_waiter(&w2);
    CHECK_OK(w2.status);
    s = get_stats(pool);
    CHECK_U64(s.waiters, 0);
    CHECK_U64(s.grants, 4);
    CHECK_U64(s.waited_grants, 2);
    CHECK_U64(s.outstanding_leases, 1);
    CHECK_U64(s.in_use_bytes, 40);
    CHECK_U64(s.peak_in_use_bytes, 100); /* both granted by one release */
    /* Each waited at least the 5 ms before the first release. */
    CHECK(s.wait_ns_max >= 5000000u);
    CHECK(s.wait_ns_total >= 10000000u);
    CHECK(s.wait_ns_total >= s.wait_ns_max);
    CHECK(s.wait_ns_total <= 2 * s.wait_ns_max);

    CHECK_OK(mmpool_close(pool));
    CHECK_STATUS(mmpool_acquire(pool, 1, &x), MMPOOL_ERR_CLOSED);
    CHECK_U64(get_stats(pool).closed_rejections, 1);
    CHECK_OK(mmpool_release(pool, w2.lease));
    s = get_stats(pool);
    CHECK_U64(s.outstanding_leases, 0);
    CHECK_U64(s.available_bytes, 100);
    mmpool_unref(pool);
}

/* The struct may grow: an older caller's smaller size gets the fields that fit
 * and nothing past them; a larger size gets what the library knows. */
static void the_size_field_bounds_what_is_written(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(1000, &pool));
    mmpool_lease l;
    CHECK_OK(mmpool_acquire(pool, 250, &l));

    struct {
        uint64_t words[3];
        uint64_t guard[20];
    } small;
    memset(&small, 0xAB, sizeof small);
    small.words[0] = 3 * sizeof(uint64_t);
    CHECK_OK(mmpool_get_stats(pool, (mmpool_stats *)(void *)&small));
    CHECK_U64(small.words[0], 24);
    CHECK_U64(small.words[1], 1000); /* total_bytes */
    CHECK_U64(small.words[2], 750);  /* available_bytes */
    for (int i = 0; i < 20; i++) CHECK_U64(small.guard[i], 0xABABABABABABABABull);

    struct {
        mmpool_stats stats;
        uint64_t extra[4];
    } big;
    memset(&big, 0xCD, sizeof big);
    big.stats.size = sizeof big;
    CHECK_OK(mmpool_get_stats(pool, &big.stats));
    CHECK_U64(big.stats.size, sizeof(mmpool_stats));
    CHECK_U64(big.stats.in_use_bytes, 250);
    for (int i = 0; i < 4; i++) CHECK_U64(big.extra[i], 0xCDCDCDCDCDCDCDCDull);

    mmpool_stats bad;
    memset(&bad, 0, sizeof bad);
    bad.size = 0;
    CHECK_STATUS(mmpool_get_stats(pool, &bad), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_get_stats");
    bad.size = 12;
    CHECK_STATUS(mmpool_get_stats(pool, &bad), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_U64(bad.size, 12);
    CHECK_U64(bad.total_bytes, 0);

    CHECK_OK(mmpool_release(pool, l));
    mmpool_unref(pool);
}

int main(void) {
    counters_follow_a_known_sequence();
    the_size_field_bounds_what_is_written();
    puts("stats: ok");
    return 0;
}
