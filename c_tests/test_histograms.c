/*
 * mmpool_get_histograms: request sizes land in their bucket exactly, a wait
 * of a known least length lands in a bucket at least that long, and the
 * size protocol that lets the struct grow.
 */
#include "check.h"

static mmpool_histograms get_histograms(mmpool *pool) {
    mmpool_histograms h;
    memset(&h, 0, sizeof h);
    h.size = sizeof h;
    CHECK_OK(mmpool_get_histograms(pool, &h));
    return h;
}

static uint64_t sum(const uint64_t *counts, int n) {
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += counts[i];
    return total;
}

static void bounds_are_the_documented_ones(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_histograms h = get_histograms(pool);
    CHECK_U64(h.size, sizeof h);
    CHECK_U64(h.wait_le_ns[0], 1000u);
    CHECK_U64(h.wait_le_ns[1], 2000u);
    CHECK_U64(h.wait_le_ns[2], 5000u);
    CHECK_U64(h.wait_le_ns[3], 10000u);
    CHECK_U64(h.wait_le_ns[MMPOOL_WAIT_BUCKETS - 2], 100000000000ull);
    CHECK_U64(h.wait_le_ns[MMPOOL_WAIT_BUCKETS - 1], UINT64_MAX);
    CHECK_U64(h.size_le_bytes[0], 4096u);
    CHECK_U64(h.size_le_bytes[1], 16384u);
    CHECK_U64(h.size_le_bytes[MMPOOL_SIZE_BUCKETS - 2], 1ull << 60);
    CHECK_U64(h.size_le_bytes[MMPOOL_SIZE_BUCKETS - 1], UINT64_MAX);
    CHECK_U64(sum(h.wait_counts, MMPOOL_WAIT_BUCKETS) + sum(h.size_counts, MMPOOL_SIZE_BUCKETS), 0);
    mmpool_unref(pool);
}

static void sizes_land_in_their_bucket(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(1ull << 30, &pool));
    /* 4096 -> le 4096 (0); 4097 and 16384 -> le 16384 (1); 1 MiB -> le 2^20 (4);
       0 bytes -> le 4096 (0). Each acquired and released at once. */
    const uint64_t sizes[] = {4096, 4097, 16384, 1u << 20, 0};
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        mmpool_lease l;
        CHECK_OK(mmpool_acquire(pool, sizes[i], &l));
        CHECK_OK(mmpool_release(pool, l));
        total += sizes[i];
    }
    /* Held at once, so that they spread over several lease records. */
    mmpool_lease held[40];
    for (int i = 0; i < 40; i++) CHECK_OK(mmpool_acquire(pool, 65536, &held[i]));
    for (int i = 0; i < 40; i++) CHECK_OK(mmpool_release(pool, held[i]));
    total += 40 * 65536;
    mmpool_histograms h = get_histograms(pool);
    CHECK_U64(h.size_counts[0], 2);
    CHECK_U64(h.size_counts[1], 2);
    CHECK_U64(h.size_counts[2], 40);
    CHECK_U64(h.size_counts[4], 1);
    CHECK_U64(sum(h.size_counts, MMPOOL_SIZE_BUCKETS), 45);
    CHECK_U64(h.size_count, 45);
    CHECK_U64(h.size_sum_bytes, total);
    CHECK_U64(h.size_count, get_stats(pool).grants);
    CHECK_U64(h.wait_count, 0);
    mmpool_unref(pool);
}

/* The waiter joins the line before the 20 ms start; the release comes after
   them, so its wait is at least 20 ms: it lands in a bucket whose bound is at
   least 20 ms, and nothing lands below. */
static void a_known_wait_lands_at_or_above_its_bucket(void) {
    const uint64_t delay_ns = 20000000u;
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease all;
    CHECK_OK(mmpool_acquire(pool, 100, &all));
    waiter w;
    start_waiter(&w, pool, 30, MMPOOL_WAIT_FOREVER, 1);
    uint64_t start = now_ns();
    while (now_ns() - start < delay_ns) pause_ms(1);
    CHECK_OK(mmpool_release(pool, all));
    join_waiter(&w);
    CHECK_OK(w.status);
    CHECK_OK(mmpool_release(pool, w.lease));

    mmpool_histograms h = get_histograms(pool);
    mmpool_stats s = get_stats(pool);
    CHECK_U64(h.wait_count, 1);
    CHECK_U64(h.wait_count, s.waited_grants);
    CHECK_U64(h.wait_sum_ns, s.wait_ns_total);
    CHECK(h.wait_sum_ns >= delay_ns);
    CHECK_U64(sum(h.wait_counts, MMPOOL_WAIT_BUCKETS), 1);
    for (int i = 0; i < MMPOOL_WAIT_BUCKETS; i++) {
        if (h.wait_counts[i] != 0) CHECK(h.wait_le_ns[i] >= delay_ns);
    }
    /* Both leases are observed by size: 100 and 30 bytes, le 4096. */
    CHECK_U64(h.size_counts[0], 2);
    mmpool_unref(pool);
}

static void the_size_protocol_writes_what_fits(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease l;
    CHECK_OK(mmpool_acquire(pool, 5, &l));
    /* An older, shorter struct: size and the two wait figures only. */
    uint64_t small[4] = {24, 0, 0, 0xdeadbeef};
    CHECK_OK(mmpool_get_histograms(pool, (mmpool_histograms *)(void *)small));
    CHECK_U64(small[0], 24);
    CHECK_U64(small[3], 0xdeadbeef);

    mmpool_histograms h;
    memset(&h, 0, sizeof h);
    h.size = 12;
    CHECK_STATUS(mmpool_get_histograms(pool, &h), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_get_histograms");
    CHECK_U64(h.size, 12);
    h.size = 0;
    CHECK_STATUS(mmpool_get_histograms(pool, &h), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_get_histograms(pool, NULL), MMPOOL_ERR_NULL_ARGUMENT);
    h.size = sizeof h;
    CHECK_STATUS(mmpool_get_histograms(NULL, &h), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_OK(mmpool_release(pool, l));
    mmpool_unref(pool);
}

int main(void) {
    bounds_are_the_documented_ones();
    sizes_land_in_their_bucket();
    a_known_wait_lands_at_or_above_its_bucket();
    the_size_protocol_writes_what_fits();
    puts("test_histograms: ok");
    return 0;
}
