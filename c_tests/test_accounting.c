/*
 * Accounting: what acquire, try_acquire and release do to the bytes, whose
 * record decides a release, 0-byte and 64-bit requests, lease ids.
 */
#include "check.h"

static void acquire_and_release_move_exactly_the_bytes(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    CHECK_U64(mmpool_total_bytes(pool), 100);
    CHECK_U64(mmpool_available_bytes(pool), 100);

    mmpool_lease a, b;
    CHECK_OK(mmpool_acquire(pool, 30, &a));
    CHECK(a.id != 0);
    CHECK_U64(a.nbytes, 30);
    CHECK_U64(mmpool_available_bytes(pool), 70);

    CHECK_OK(mmpool_try_acquire(pool, 70, &b));
    CHECK(b.id != 0 && b.id != a.id);
    CHECK_U64(b.nbytes, 70);
    CHECK_U64(mmpool_available_bytes(pool), 0);

    mmpool_lease c = {12345, 6789};
    CHECK_STATUS(mmpool_try_acquire(pool, 1, &c), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_STATUS(mmpool_acquire_timeout(pool, 1, 0, &c), MMPOOL_ERR_TIMEOUT);
    /* Failures write no out-parameter. */
    CHECK_U64(c.id, 12345);
    CHECK_U64(c.nbytes, 6789);
    CHECK_U64(mmpool_available_bytes(pool), 0);

    CHECK_OK(mmpool_release(pool, a));
    CHECK_U64(mmpool_available_bytes(pool), 30);
    /* Released twice: a no-op, no bytes twice. */
    CHECK_OK(mmpool_release(pool, a));
    CHECK_U64(mmpool_available_bytes(pool), 30);

    /* The pool's record decides how many bytes come back, not the caller's. */
    mmpool_lease forged = b;
    forged.nbytes = 1;
    CHECK_OK(mmpool_release(pool, forged));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    CHECK_OK(mmpool_release(pool, b));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    mmpool_unref(pool);
}

static void inflated_nbytes_return_no_extra_bytes(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease a, b;
    CHECK_OK(mmpool_acquire(pool, 10, &a));
    CHECK_OK(mmpool_acquire(pool, 50, &b));
    a.nbytes = 90;
    CHECK_OK(mmpool_release(pool, a));
    CHECK_U64(mmpool_available_bytes(pool), 50);
    CHECK_OK(mmpool_release(pool, b));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    mmpool_unref(pool);
}

static void zero_bytes_are_granted_even_when_full(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(5, &pool));
    mmpool_lease all, zero, zero_try;
    CHECK_OK(mmpool_acquire(pool, 5, &all));
    CHECK_OK(mmpool_acquire(pool, 0, &zero));
    CHECK_OK(mmpool_try_acquire(pool, 0, &zero_try));
    CHECK_U64(zero.nbytes, 0);
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_OK(mmpool_release(pool, zero));
    CHECK_OK(mmpool_release(pool, zero_try));
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_OK(mmpool_release(pool, all));
    CHECK_U64(mmpool_available_bytes(pool), 5);
    mmpool_unref(pool);
}

static void above_total_is_rejected_with_nothing_reserved(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease l = {7, 7};
    CHECK_STATUS(mmpool_acquire(pool, 101, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_LAST_ERROR_NAMES("mmpool_acquire");
    CHECK_STATUS(mmpool_acquire_timeout(pool, 101, 1000, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_try_acquire(pool, 101, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_acquire(pool, UINT64_MAX, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    mmpool_ticket t = {9};
    CHECK_STATUS(mmpool_enqueue(pool, 101, &t), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_U64(t.id, 9);
    CHECK_U64(l.id, 7);
    CHECK_U64(mmpool_available_bytes(pool), 100);
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.in_use_bytes, 0);
    CHECK_U64(s.waiters, 0);
    CHECK_U64(s.outstanding_leases, 0);
    /* Exactly the total is fine. */
    CHECK_OK(mmpool_acquire(pool, 100, &l));
    CHECK_OK(mmpool_release(pool, l));
    mmpool_unref(pool);
}

static void sizes_are_64_bit(void) {
    const uint64_t tib = 1ull << 40;
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(3 * tib, &pool));
    CHECK_U64(mmpool_total_bytes(pool), 3 * tib);
    mmpool_lease big, odd;
    CHECK_OK(mmpool_acquire(pool, 2 * tib + 5, &big));
    CHECK_U64(big.nbytes, 2 * tib + 5);
    CHECK_OK(mmpool_acquire(pool, (1ull << 33) + 1, &odd));
    CHECK_U64(mmpool_available_bytes(pool), 3 * tib - (2 * tib + 5) - ((1ull << 33) + 1));
    CHECK_OK(mmpool_release(pool, big));
    CHECK_OK(mmpool_release(pool, odd));
    CHECK_U64(mmpool_available_bytes(pool), 3 * tib);
    mmpool_unref(pool);

    CHECK_OK(mmpool_init(MMPOOL_MAX_TOTAL, &pool));
    CHECK_U64(mmpool_total_bytes(pool), MMPOOL_MAX_TOTAL);
    CHECK_OK(mmpool_acquire(pool, MMPOOL_MAX_TOTAL, &big));
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_OK(mmpool_release(pool, big));
    CHECK_U64(mmpool_available_bytes(pool), MMPOOL_MAX_TOTAL);
    mmpool_unref(pool);
}

static void lease_ids_are_unique_across_pools(void) {
    enum { N = 64 };
    mmpool *a = NULL, *b = NULL;
    CHECK_OK(mmpool_init(N, &a));
    CHECK_OK(mmpool_init(N, &b));
    mmpool_lease leases[2 * N];
    for (int i = 0; i < N; i++) {
        CHECK_OK(mmpool_acquire(a, 1, &leases[2 * i]));
        CHECK_OK(mmpool_acquire(b, 1, &leases[2 * i + 1]));
    }
    for (int i = 0; i < 2 * N; i++) {
        CHECK(leases[i].id != 0);
        for (int j = 0; j < i; j++) CHECK(leases[i].id != leases[j].id);
    }
    /* Released ids are not handed out again. */
    mmpool_lease first = leases[0];
    CHECK_OK(mmpool_release(a, first));
    mmpool_lease again;
    CHECK_OK(mmpool_acquire(a, 1, &again));
    for (int i = 0; i < 2 * N; i++) CHECK(again.id != leases[i].id);
    CHECK_OK(mmpool_release(a, again));
    for (int i = 0; i < N; i++) {
        CHECK_OK(mmpool_release(a, leases[2 * i]));
        CHECK_OK(mmpool_release(b, leases[2 * i + 1]));
    }
    CHECK_U64(mmpool_available_bytes(a), N);
    CHECK_U64(mmpool_available_bytes(b), N);
    mmpool_unref(a);
    mmpool_unref(b);
}

int main(void) {
    acquire_and_release_move_exactly_the_bytes();
    inflated_nbytes_return_no_extra_bytes();
    zero_bytes_are_granted_even_when_full();
    above_total_is_rejected_with_nothing_reserved();
    sizes_are_64_bit();
    lease_ids_are_unique_across_pools();
    puts("accounting: ok");
    return 0;
}
