/*
 * Two-phase waiting: mmpool_enqueue takes a place in line at once, from one
 * thread, so the order is known without any thread scheduling;
 * mmpool_ticket_wait redeems it (again and again on timeout, keeping the
 * place); mmpool_ticket_cancel leaves the line.
 */
#include "check.h"

static void tickets_are_granted_in_line_order(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 6, &held));

    mmpool_ticket big, small;
    CHECK_OK(mmpool_enqueue(pool, 10, &big));
    CHECK_OK(mmpool_enqueue(pool, 1, &small));
    CHECK(big.id != 0 && small.id != 0 && big.id != small.id);
    CHECK_U64(get_stats(pool).waiters, 2);

    /* 4 bytes are free but the 1-byte ticket is behind the 10-byte one. */
    mmpool_lease l = {0, 0};
    CHECK_STATUS(mmpool_ticket_wait(pool, small, 0, &l), MMPOOL_ERR_TIMEOUT);
    CHECK_STATUS(mmpool_ticket_wait(pool, big, 1000000, &l), MMPOOL_ERR_TIMEOUT);
    /* Timeouts keep the place: still two in line, nothing reserved. */
    CHECK_U64(get_stats(pool).waiters, 2);
    CHECK_U64(mmpool_available_bytes(pool), 4);
    CHECK_U64(l.id, 0);

    CHECK_OK(mmpool_release(pool, held));
    mmpool_lease lb;
    CHECK_OK(mmpool_ticket_wait(pool, big, 0, &lb));
    CHECK_U64(lb.id, big.id);
    CHECK_U64(lb.nbytes, 10);
    CHECK_STATUS(mmpool_ticket_wait(pool, small, 0, &l), MMPOOL_ERR_TIMEOUT);

    CHECK_OK(mmpool_release(pool, lb));
    mmpool_lease ls;
    CHECK_OK(mmpool_ticket_wait(pool, small, MMPOOL_WAIT_FOREVER, &ls));
    CHECK_U64(ls.id, small.id);
    CHECK_U64(ls.nbytes, 1);
    CHECK_U64(mmpool_available_bytes(pool), 9);

    /* A redeemed ticket cannot be redeemed again. */
    CHECK_STATUS(mmpool_ticket_wait(pool, small, 0, &l), MMPOOL_ERR_INVALID_LEASE);
    CHECK_LAST_ERROR_NAMES("mmpool_ticket_wait");
    CHECK_OK(mmpool_release(pool, ls));
    CHECK_U64(mmpool_available_bytes(pool), 10);
    mmpool_unref(pool);
}

static void a_ticket_granted_at_once_is_redeemed_at_once(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_ticket t;
    CHECK_OK(mmpool_enqueue(pool, 7, &t));
    mmpool_lease l;
    CHECK_OK(mmpool_ticket_wait(pool, t, 0, &l));
    CHECK_U64(l.nbytes, 7);
    CHECK_U64(mmpool_available_bytes(pool), 3);
    CHECK_OK(mmpool_release(pool, l));
    mmpool_unref(pool);
}

/* Cancelling the head lets those behind it proceed without any release. */
static void cancelling_the_head_grants_the_next(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 5, &held));
    mmpool_ticket head, next;
    CHECK_OK(mmpool_enqueue(pool, 10, &head));
    CHECK_OK(mmpool_enqueue(pool, 3, &next));
    mmpool_lease l;
    CHECK_STATUS(mmpool_ticket_wait(pool, next, 0, &l), MMPOOL_ERR_TIMEOUT);
    CHECK_OK(mmpool_ticket_cancel(pool, head));
    CHECK_OK(mmpool_ticket_wait(pool, next, 0, &l));
    CHECK_U64(mmpool_available_bytes(pool), 2);
    CHECK_U64(get_stats(pool).waiters, 0);
    /* A cancelled ticket cannot be redeemed; cancelling it again is a no-op. */
    mmpool_lease none = {0, 0};
    CHECK_STATUS(mmpool_ticket_wait(pool, head, 0, &none), MMPOOL_ERR_INVALID_LEASE);
    CHECK_U64(none.id, 0);
    CHECK_OK(mmpool_ticket_cancel(pool, head));
    CHECK_OK(mmpool_release(pool, l));
    CHECK_OK(mmpool_release(pool, held));
    CHECK_U64(mmpool_available_bytes(pool), 10);
    mmpool_unref(pool);
}

/* A ticket granted but never redeemed gives its bytes back when cancelled. */
static void cancelling_a_granted_ticket_returns_its_bytes(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(10, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 10, &held));
    mmpool_ticket t;
    CHECK_OK(mmpool_enqueue(pool, 8, &t));
    CHECK_OK(mmpool_release(pool, held)); /* grants the ticket */
    CHECK_U64(mmpool_available_bytes(pool), 2);
    CHECK_OK(mmpool_ticket_cancel(pool, t));
    CHECK_U64(mmpool_available_bytes(pool), 10);
    mmpool_lease l;
    CHECK_STATUS(mmpool_ticket_wait(pool, t, 0, &l), MMPOOL_ERR_INVALID_LEASE);
    mmpool_unref(pool);
}

static void a_ticket_is_not_a_lease_nor_another_pools_ticket(void) {
    mmpool *a = NULL, *b = NULL;
    CHECK_OK(mmpool_init(10, &a));
    CHECK_OK(mmpool_init(10, &b));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(a, 10, &held));
    mmpool_ticket t;
    CHECK_OK(mmpool_enqueue(a, 4, &t));
    mmpool_lease l;
    CHECK_STATUS(mmpool_ticket_wait(b, t, 0, &l), MMPOOL_ERR_INVALID_LEASE);
    CHECK_STATUS(mmpool_ticket_cancel(b, t), MMPOOL_ERR_INVALID_LEASE);
    mmpool_ticket zero = {0};
    CHECK_STATUS(mmpool_ticket_wait(a, zero, 0, &l), MMPOOL_ERR_INVALID_LEASE);
    CHECK_STATUS(mmpool_ticket_cancel(a, zero), MMPOOL_ERR_INVALID_LEASE);
    /* Releasing a waiting ticket's id as if it were a lease is refused. */
    mmpool_lease as_lease = {t.id, 4};
    CHECK_STATUS(mmpool_release(a, as_lease), MMPOOL_ERR_INVALID_LEASE);
    CHECK_U64(get_stats(a).waiters, 1);
    CHECK_OK(mmpool_ticket_cancel(a, t));
    CHECK_OK(mmpool_release(a, held));
    CHECK_U64(mmpool_available_bytes(a), 10);
    mmpool_unref(a);
    mmpool_unref(b);
}

int main(void) {
    tickets_are_granted_in_line_order();
    a_ticket_granted_at_once_is_redeemed_at_once();
    cancelling_the_head_grants_the_next();
    cancelling_a_granted_ticket_returns_its_bytes();
    a_ticket_is_not_a_lease_nor_another_pools_ticket();
    puts("tickets: ok");
    return 0;
}
