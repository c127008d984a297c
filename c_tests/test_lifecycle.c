/*
 * Lifecycle and reference counts: init, ref, unref, the references held by the
 * global slot and by a thread waiting inside a call. Use after free or a leak
 * here is what the ASan and valgrind runs of this program catch.
 */
#include "check.h"

static void refs_keep_the_pool_until_the_last_unref(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(1000, &pool));
    CHECK(pool != NULL);
    mmpool_ref(pool);
    mmpool_ref(pool);
    mmpool_unref(pool);
    mmpool_unref(pool);
    /* One reference is left: the pool still works. */
    mmpool_lease lease;
    CHECK_OK(mmpool_acquire(pool, 600, &lease));
    CHECK_U64(mmpool_available_bytes(pool), 400);
    CHECK_OK(mmpool_release(pool, lease));
    CHECK_U64(mmpool_available_bytes(pool), 1000);
    mmpool_unref(pool);
}

static void pools_are_independent(void) {
    mmpool *a = NULL, *b = NULL;
    CHECK_OK(mmpool_init(10, &a));
    CHECK_OK(mmpool_init(20, &b));
    CHECK(a != b);
    mmpool_lease la;
    CHECK_OK(mmpool_acquire(a, 10, &la));
    CHECK_U64(mmpool_available_bytes(a), 0);
    CHECK_U64(mmpool_available_bytes(b), 20);
    mmpool_unref(b);
    CHECK_OK(mmpool_release(a, la));
    mmpool_unref(a);
}

static void the_global_slot_holds_its_own_reference(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(4096, &pool));
    CHECK_OK(mmpool_set_global(pool));
    mmpool_unref(pool); /* the slot's reference keeps it alive */

    mmpool *g = mmpool_global();
    CHECK(g != NULL);
    CHECK_U64(mmpool_total_bytes(g), 4096);
    mmpool_lease lease;
    CHECK_OK(mmpool_acquire(g, 96, &lease));
    CHECK_U64(mmpool_available_bytes(g), 4000);
    CHECK_OK(mmpool_release(g, lease));

    /* Emptying the slot drops its reference; ours (from mmpool_global) stays. */
    CHECK_OK(mmpool_set_global(NULL));
    CHECK(mmpool_global() == NULL);
    CHECK_U64(mmpool_total_bytes(g), 4096);
    mmpool_unref(g);
}

/* A thread blocked in mmpool_acquire holds a reference: the creator may drop
 * its own while the call is still running. */
static void a_waiting_call_holds_a_reference(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(8, &pool));
    mmpool_lease held;
    CHECK_OK(mmpool_acquire(pool, 8, &held));
    waiter w;
    start_waiter(&w, pool, 8, MMPOOL_WAIT_FOREVER, 1);
    CHECK_OK(mmpool_close(pool));
    CHECK_OK(mmpool_release(pool, held));
    mmpool_unref(pool); /* the waiter may still be inside its call */
    join_waiter(&w);
    CHECK_STATUS(w.status, MMPOOL_ERR_CLOSED);
}

static void unref_of_null_is_a_no_op(void) {
    mmpool_unref(NULL);
    mmpool_ref(NULL);
}

int main(void) {
    refs_keep_the_pool_until_the_last_unref();
    pools_are_independent();
    the_global_slot_holds_its_own_reference();
    a_waiting_call_holds_a_reference();
    unref_of_null_is_a_no_op();
    puts("lifecycle: ok");
    return 0;
}
