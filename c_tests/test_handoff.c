/*
 * Split and merge (bytes move between leases, never free meanwhile) and
 * hand-offs: a lease shared with consumer threads, the bytes back with the
 * last completion, the producer's wait, tokens refused when altered.
 */
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
    consumer c[4];
    pthread_t t[4];
    for (uint32_t i = 0; i < 4; i++) {
        c[i] = (consumer){pool, token, i, MMPOOL_ERR_INTERNAL};
        CHECK(pthread_create(&t[i], NULL, consume_main, &c[i]) == 0);
    }
    CHECK_OK(mmpool_handoff_wait(pool, token, MMPOOL_WAIT_FOREVER));
    CHECK_U64(mmpool_available_bytes(pool), 64);
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK_OK(c[i].status);
    }
    CHECK_OK(mmpool_handoff_complete(pool, token, 0)); /* finished: a no-op */
    mmpool_handoff_stats s;
    CHECK_OK(mmpool_get_handoff_stats(pool, &s));
    CHECK_U64(s.outstanding, 0);
    CHECK_U64(s.finished, 1);
    mmpool_unref(pool);
}

int main(void) {
    split_and_merge_move_bytes_between_leases();
    the_last_of_four_consumers_returns_the_bytes();
    puts("test_handoff: ok");
    return 0;
}
