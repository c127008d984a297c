/*
 * Lease resize (shrink at once, grow in line with a timeout) and pool resize
 * (mmpool_set_total: grow grants waiters, shrink revokes nothing, waiters
 * above the new total fail).
 */
#include "check.h"

typedef struct {
    mmpool *pool;
    mmpool_lease lease;
    uint64_t new_nbytes;
    mmpool_status status;
} grower;

static void *grow_main(void *arg) {
    grower *g = (grower *)arg;
    g->status = mmpool_lease_resize(g->pool, &g->lease, g->new_nbytes, MMPOOL_WAIT_FOREVER);
    return NULL;
}

static void shrinking_returns_bytes_at_once(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease l;
    CHECK_OK(mmpool_acquire(pool, 80, &l));
    uint64_t id = l.id;
    CHECK_OK(mmpool_lease_resize(pool, &l, 30, 0));
    CHECK_U64(l.id, id);
    CHECK_U64(l.nbytes, 30);
    CHECK_U64(mmpool_available_bytes(pool), 70);
    CHECK_OK(mmpool_lease_resize(pool, &l, 0, 0));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    CHECK_OK(mmpool_lease_resize(pool, &l, 55, 0));
    CHECK_U64(l.nbytes, 55);
    CHECK_U64(mmpool_available_bytes(pool), 45);
    /* The release returns what the lease holds now. */
    CHECK_OK(mmpool_release(pool, l));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    mmpool_unref(pool);
}

static void growing_waits_with_a_timeout(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease l, other;
    CHECK_OK(mmpool_acquire(pool, 40, &l));
    CHECK_OK(mmpool_acquire(pool, 50, &other));
    CHECK_STATUS(mmpool_lease_resize(pool, &l, 60, 1000000), MMPOOL_ERR_TIMEOUT);
    CHECK_U64(l.nbytes, 40); /* keeps its old size */
    CHECK_U64(mmpool_available_bytes(pool), 10);
    CHECK_STATUS(mmpool_lease_resize(pool, &l, 101, 0), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_lease_resize(pool, &l, UINT64_MAX, 0), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_U64(l.nbytes, 40);
    CHECK_OK(mmpool_lease_resize(pool, &l, 50, 0));
    CHECK_U64(mmpool_available_bytes(pool), 0);

    /* A growth waits in line; the release of `other` grants it. */
    grower g = {pool, l, 90, MMPOOL_ERR_INTERNAL};
    pthread_t t;
    if (pthread_create(&t, NULL, grow_main, &g) != 0) FAIL_AT("pthread_create");
    WAIT_FOR_WAITERS(pool, 1);
    /* Nothing is free and a request waits: a try fails. */
    mmpool_lease x;
    CHECK_STATUS(mmpool_try_acquire(pool, 1, &x), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_OK(mmpool_release(pool, other));
    if (pthread_join(t, NULL) != 0) FAIL_AT("pthread_join");
    CHECK_OK(g.status);
    CHECK_U64(g.lease.id, l.id);
    CHECK_U64(g.lease.nbytes, 90);
    CHECK_U64(mmpool_available_bytes(pool), 10);
    CHECK(get_stats(pool).waited_grants >= 1);

    CHECK_OK(mmpool_release(pool, g.lease));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    /* A released lease cannot be resized. */
    mmpool_lease gone = g.lease;
    CHECK_STATUS(mmpool_lease_resize(pool, &gone, 1, 0), MMPOOL_ERR_INVALID_LEASE);
    CHECK_LAST_ERROR_NAMES("mmpool_lease_resize");
    CHECK_U64(gone.nbytes, 90);
    mmpool_lease unknown = {0, 0};
    CHECK_STATUS(mmpool_lease_resize(pool, &unknown, 1, 0), MMPOOL_ERR_INVALID_LEASE);
    mmpool_unref(pool);
}

static void growing_the_total_grants_waiters(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 6, &held));
    waiter w;
    start_waiter(&w, pool, 8, MMPOOL_WAIT_FOREVER, 1);
    CHECK_OK(mmpool_set_total(pool, 14));
    join_waiter(&w);
    CHECK_OK(w.status);
    CHECK_U64(mmpool_total_bytes(pool), 14);
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_OK(mmpool_release(pool, w.lease));
    CHECK_OK(mmpool_release(pool, held));
    CHECK_U64(mmpool_available_bytes(pool), 14);
    mmpool_unref(pool);
}

static void shrinking_the_total_revokes_nothing(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 8, &held));
    CHECK_OK(mmpool_set_total(pool, 4));
    CHECK_U64(mmpool_total_bytes(pool), 4);
    CHECK_U64(mmpool_available_bytes(pool), 0);
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.in_use_bytes, 8);
    CHECK_U64(s.outstanding_leases, 1);
    mmpool_lease l;
    CHECK_STATUS(mmpool_try_acquire(pool, 1, &l), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_STATUS(mmpool_acquire(pool, 5, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    /* A request that fits the new total waits until enough has come back. */
    waiter w;
    start_waiter(&w, pool, 4, MMPOOL_WAIT_FOREVER, 1);
    CHECK_OK(mmpool_release(pool, held));
    join_waiter(&w);
    CHECK_OK(w.status);
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_OK(mmpool_release(pool, w.lease));
    CHECK_U64(mmpool_available_bytes(pool), 4);
    mmpool_unref(pool);
}

static void waiters_above_the_new_total_fail(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 10, &held));
    waiter big, small;
    start_waiter(&big, pool, 8, MMPOOL_WAIT_FOREVER, 1);
    start_waiter(&small, pool, 2, MMPOOL_WAIT_FOREVER, 2);
    mmpool_ticket t;
    CHECK_OK(mmpool_enqueue(pool, 9, &t));
    uint64_t rejections = get_stats(pool).capacity_rejections;
    CHECK_OK(mmpool_set_total(pool, 5));
    join_waiter(&big);
    CHECK_STATUS(big.status, MMPOOL_ERR_EXCEEDS_CAPACITY);
    mmpool_lease l;
    CHECK_STATUS(mmpool_ticket_wait(pool, t, 0, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_U64(get_stats(pool).capacity_rejections, rejections + 2);
    /* The 2-byte waiter still waits: 10 bytes are held against a total of 5. */
    CHECK_U64(get_stats(pool).waiters, 1);
    CHECK_OK(mmpool_release(pool, held));
    join_waiter(&small);
    CHECK_OK(small.status);
    CHECK_U64(mmpool_available_bytes(pool), 3);
    CHECK_OK(mmpool_release(pool, small.lease));
    mmpool_unref(pool);
}

static void invalid_totals_are_refused(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    CHECK_STATUS(mmpool_set_total(pool, 0), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_set_total");
    CHECK_STATUS(mmpool_set_total(pool, MMPOOL_MAX_TOTAL + 1), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_set_total(pool, UINT64_MAX), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_U64(mmpool_total_bytes(pool), 10);
    CHECK_OK(mmpool_set_total(pool, MMPOOL_MAX_TOTAL));
    CHECK_U64(mmpool_available_bytes(pool), MMPOOL_MAX_TOTAL);
    mmpool_unref(pool);
}

int main(void) {
    shrinking_returns_bytes_at_once();
    growing_waits_with_a_timeout();
    growing_the_total_grants_waiters();
    shrinking_the_total_revokes_nothing();
    waiters_above_the_new_total_fail();
    invalid_totals_are_refused();
    puts("resize: ok");
    return 0;
}
