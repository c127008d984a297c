/*
 * Split and merge (bytes move between leases, never free meanwhile) and
 * hand-offs: a lease shared with consumer threads, the bytes back with the
 * last completion, the producer's wait, tokens refused when altered; the
 * same on a shared pool (its consumers here are threads of this process;
 * tests/shared_handoff.rs and examples/handoff_consumers.c use processes).
 */
#include <unistd.h>

#include "check.h"

typedef struct {
    mmpool *pool;
    mmpool_handoff_token token;
    uint32_t part;
    mmpool_status status;
} consumer;

static void *consume_main(void *arg) {
    consumer *c = (consumer *)arg;
    c->status = mmpool_handoff_claim(c->pool, c->token, c->part);
    if (c->status == MMPOOL_OK) c->status = mmpool_handoff_complete(c->pool, c->token, c->part);
    return NULL;
}

/* Hands `token` to `n` (at most 4) consumer threads, one part each, waits
 * for the hand-off as its producer, then joins them: each claimed and
 * completed its part. */
static void consume_with_threads(mmpool *pool, mmpool_handoff_token token, uint32_t n) {
    consumer c[4];
    pthread_t t[4];
    CHECK(n <= 4);
    for (uint32_t i = 0; i < n; i++) {
        c[i] = (consumer){pool, token, i, MMPOOL_ERR_INTERNAL};
        CHECK(pthread_create(&t[i], NULL, consume_main, &c[i]) == 0);
    }
    CHECK_OK(mmpool_handoff_wait(pool, token, MMPOOL_WAIT_FOREVER));
    for (uint32_t i = 0; i < n; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK_OK(c[i].status);
    }
}

static void split_and_merge_move_bytes_between_leases(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease a, b, sentinel = {7, 8}, out = sentinel;
    CHECK_OK(mmpool_acquire(pool, 100, &a));
    CHECK_STATUS(mmpool_lease_split(pool, &a, 0, &out), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_lease_split(pool, &a, 100, &out), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_U64(out.id, sentinel.id);
    CHECK_OK(mmpool_lease_split(pool, &a, 40, &b));
    CHECK_U64(a.nbytes, 60);
    CHECK_U64(b.nbytes, 40);
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_STATUS(mmpool_lease_merge(pool, &a, a), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_OK(mmpool_lease_merge(pool, &a, b));
    CHECK_U64(a.nbytes, 100);
    CHECK_OK(mmpool_release(pool, b)); /* merged away: a no-op */
    CHECK_U64(mmpool_available_bytes(pool), 0);
    CHECK_OK(mmpool_release(pool, a));
    CHECK_U64(mmpool_available_bytes(pool), 100);
    mmpool_unref(pool);
}

static void the_last_of_four_consumers_returns_the_bytes(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(64, &pool));
    mmpool_lease lease;
    CHECK_OK(mmpool_acquire(pool, 64, &lease));
    mmpool_handoff_token token;
    CHECK_OK(mmpool_lease_share(pool, lease, 4, MMPOOL_NO_CLAIM_DEADLINE, 0, &token));
    mmpool_handoff_token altered = token;
    altered.nonce ^= 2;
    CHECK_STATUS(mmpool_handoff_complete(pool, altered, 0), MMPOOL_ERR_INVALID_LEASE);
    CHECK(sizeof(mmpool_handoff_token) == 32);
    CHECK_U64(token.flags, 0);
    CHECK_U64(token.offset, 0);
    altered = token;
    altered.flags = MMPOOL_TOKEN_PLACED;
    CHECK_STATUS(mmpool_handoff_complete(pool, altered, 0), MMPOOL_ERR_INVALID_LEASE);
    altered = token;
    altered.offset = 4096;
    CHECK_STATUS(mmpool_handoff_complete(pool, altered, 0), MMPOOL_ERR_INVALID_LEASE);
    CHECK_STATUS(mmpool_handoff_complete(pool, token, 4), MMPOOL_ERR_INVALID_LEASE);
    consume_with_threads(pool, token, 4);
    CHECK_U64(mmpool_available_bytes(pool), 64);
    CHECK_OK(mmpool_handoff_complete(pool, token, 0)); /* finished: a no-op */
    mmpool_handoff_stats s;
    CHECK_OK(mmpool_get_handoff_stats(pool, &s));
    CHECK_U64(s.outstanding, 0);
    CHECK_U64(s.finished, 1);
    mmpool_unref(pool);
}

static void a_shared_pool_hands_off_to_threads_within_its_limit(void) {
    char name[64];
    snprintf(name, sizeof name, "c-test-handoff-%ld", (long)getpid());
    mmpool_unlink_shared(name);
    mmpool_shared_options o = {.size = sizeof o, .total_bytes = 64, .flags = MMPOOL_SHARED_CREATE, .max_handoffs = 1};
    mmpool *pool = NULL;
    CHECK_OK(mmpool_open_shared_with(name, &o, &pool));
    mmpool_lease a, b;
    CHECK_OK(mmpool_acquire(pool, 40, &a));
    CHECK_OK(mmpool_acquire(pool, 8, &b));
    mmpool_handoff_token token;
    CHECK_OK(mmpool_lease_share(pool, a, 2, MMPOOL_NO_CLAIM_DEADLINE, 0, &token));
    CHECK(sizeof token == 32 && token.flags == 0 && token.offset == 0);
    mmpool_handoff_token second = token;
    CHECK_STATUS(mmpool_lease_share(pool, b, 1, MMPOOL_NO_CLAIM_DEADLINE, 0, &second), MMPOOL_ERR_SYSTEM);
    CHECK(strstr(mmpool_last_error(), "max_handoffs") != NULL);
    CHECK_U64(second.id, token.id); /* untouched on failure */
    CHECK_U64(mmpool_available_bytes(pool), 16);
    mmpool_handoff_token altered = token;
    altered.offset = 8;
    CHECK_STATUS(mmpool_handoff_claim(pool, altered, 0), MMPOOL_ERR_INVALID_LEASE);
    consume_with_threads(pool, token, 2);
    CHECK_U64(mmpool_available_bytes(pool), 56);
    CHECK_OK(mmpool_release(pool, b));
    mmpool_handoff_stats s;
    CHECK_OK(mmpool_get_handoff_stats(pool, &s));
    CHECK_U64(s.outstanding, 0);
    CHECK_U64(s.finished, 1);
    CHECK_U64(mmpool_available_bytes(pool), 64);
    mmpool_unref(pool);
    CHECK_OK(mmpool_unlink_shared(name));
}

int main(void) {
    split_and_merge_move_bytes_between_leases();
    the_last_of_four_consumers_returns_the_bytes();
    a_shared_pool_hands_off_to_threads_within_its_limit();
    puts("test_handoff: ok");
    return 0;
}
