/*
 * Close: every waiter (threads and tickets) wakes with MMPOOL_ERR_CLOSED and
 * holds nothing, later requests fail the same way, releases still return
 * bytes, closing twice is a no-op.
 */
#include "check.h"

enum { THREADS = 4 };

static void close_wakes_every_waiter(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 90, &held));

    waiter w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        /* Two wait forever, two with a long timeout. */
        start_waiter(&w[i], pool, 20 + (uint64_t)i,
                     i % 2 ? 600 * 1000000000ull : MMPOOL_WAIT_FOREVER, (uint64_t)i + 1);
    }
    mmpool_ticket t;
    CHECK_OK(mmpool_enqueue(pool, 50, &t));
    CHECK_U64(get_stats(pool).waiters, THREADS + 1);

    CHECK_OK(mmpool_close(pool));
    for (int i = 0; i < THREADS; i++) {
        join_waiter(&w[i]);
        CHECK_STATUS(w[i].status, MMPOOL_ERR_CLOSED);
        CHECK_U64(w[i].lease.id, 0);
    }
    mmpool_lease l = {0, 0};
    CHECK_STATUS(mmpool_ticket_wait(pool, t, 0, &l), MMPOOL_ERR_CLOSED);
    CHECK_U64(l.id, 0);

    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.waiters, 0);
    CHECK_U64(s.in_use_bytes, 90);
    CHECK_U64(s.outstanding_leases, 1);
    CHECK_U64(s.closed_rejections, THREADS + 1);
    CHECK_U64(s.available_bytes, 10);

    /* Releases still work after close. */
    CHECK_OK(mmpool_release(pool, held));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    mmpool_unref(pool);
}

static void requests_after_close_fail(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease kept;
    CHECK_OK(mmpool_acquire(pool, 10, &kept));
    CHECK_OK(mmpool_close(pool));
    CHECK_OK(mmpool_close(pool));

    mmpool_lease l = {5, 5};
    mmpool_ticket t = {5};
    CHECK_STATUS(mmpool_acquire(pool, 1, &l), MMPOOL_ERR_CLOSED);
    CHECK_LAST_ERROR_NAMES("mmpool_acquire");
    CHECK_STATUS(mmpool_acquire_timeout(pool, 1, 1000, &l), MMPOOL_ERR_CLOSED);
    CHECK_STATUS(mmpool_try_acquire(pool, 1, &l), MMPOOL_ERR_CLOSED);
    CHECK_STATUS(mmpool_acquire(pool, 0, &l), MMPOOL_ERR_CLOSED);
    CHECK_STATUS(mmpool_enqueue(pool, 1, &t), MMPOOL_ERR_CLOSED);
    CHECK_U64(l.id, 5);
    CHECK_U64(t.id, 5);
    /* Growing a lease is a request too; shrinking only gives back. */
    CHECK_STATUS(mmpool_lease_resize(pool, &kept, 20, 0), MMPOOL_ERR_CLOSED);
    CHECK_U64(kept.nbytes, 10);
    CHECK_OK(mmpool_lease_resize(pool, &kept, 4, 0));
    CHECK_U64(kept.nbytes, 4);
    CHECK_U64(mmpool_available_bytes(pool), 96);

    CHECK_OK(mmpool_release(pool, kept));
    CHECK_OK(mmpool_release(pool, kept));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    CHECK_U64(get_stats(pool).closed_rejections, 6);
    mmpool_unref(pool);
}

int main(void) {
    close_wakes_every_waiter();
    requests_after_close_fail();
    puts("close: ok");
    return 0;
}
