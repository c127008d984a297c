/*
 * Misuse through the ABI: every NULL pointer argument, invalid sizes, leases
 * the pool never issued, double release, status codes out of range. Each
 * failure returns its status, writes no out-parameter and leaves a message
 * naming the function and the argument.
 */
#include <limits.h>

#include "check.h"

/* `expr` fails with NULL_ARGUMENT and the message names `fn` and `arg`. */
#define CHECK_NULL_REFUSED(expr, fn, arg)                                      \
    do {                                                                       \
        CHECK_STATUS(expr, MMPOOL_ERR_NULL_ARGUMENT);                          \
        CHECK_LAST_ERROR_NAMES(fn);                                            \
        if (strstr(mmpool_last_error(), arg) == NULL)                          \
            FAIL_AT("the message for %s does not name the NULL argument `%s`", \
                    #expr, arg);                                               \
    } while (0)

static void every_null_pointer_is_refused(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(100, &pool));
    mmpool_lease l = {0, 0};
    mmpool_ticket t = {0};
    mmpool_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;

    CHECK_NULL_REFUSED(mmpool_init(100, NULL), "mmpool_init", "out_pool");
    CHECK_NULL_REFUSED(mmpool_acquire(NULL, 1, &l), "mmpool_acquire", "pool");
    CHECK_NULL_REFUSED(mmpool_acquire(pool, 1, NULL), "mmpool_acquire", "out_lease");
    CHECK_NULL_REFUSED(mmpool_acquire_timeout(NULL, 1, 0, &l), "mmpool_acquire_timeout", "pool");
    CHECK_NULL_REFUSED(mmpool_acquire_timeout(pool, 1, 0, NULL), "mmpool_acquire_timeout", "out_lease");
    CHECK_NULL_REFUSED(mmpool_try_acquire(NULL, 1, &l), "mmpool_try_acquire", "pool");
    CHECK_NULL_REFUSED(mmpool_try_acquire(pool, 1, NULL), "mmpool_try_acquire", "out_lease");
    CHECK_NULL_REFUSED(mmpool_release(NULL, l), "mmpool_release", "pool");
    CHECK_NULL_REFUSED(mmpool_enqueue(NULL, 1, &t), "mmpool_enqueue", "pool");
    CHECK_NULL_REFUSED(mmpool_enqueue(pool, 1, NULL), "mmpool_enqueue", "out_ticket");
    CHECK_NULL_REFUSED(mmpool_ticket_wait(NULL, t, 0, &l), "mmpool_ticket_wait", "pool");
    CHECK_NULL_REFUSED(mmpool_ticket_wait(pool, t, 0, NULL), "mmpool_ticket_wait", "out_lease");
    CHECK_NULL_REFUSED(mmpool_ticket_cancel(NULL, t), "mmpool_ticket_cancel", "pool");
    CHECK_NULL_REFUSED(mmpool_lease_resize(NULL, &l, 1, 0), "mmpool_lease_resize", "pool");
    CHECK_NULL_REFUSED(mmpool_lease_resize(pool, NULL, 1, 0), "mmpool_lease_resize", "lease");
    CHECK_NULL_REFUSED(mmpool_set_total(NULL, 1), "mmpool_set_total", "pool");
    CHECK_NULL_REFUSED(mmpool_close(NULL), "mmpool_close", "pool");
    CHECK_NULL_REFUSED(mmpool_get_stats(NULL, &s), "mmpool_get_stats", "pool");
    CHECK_NULL_REFUSED(mmpool_get_stats(pool, NULL), "mmpool_get_stats", "out_stats");

    /* Value getters answer 0 for NULL and say why. */
    CHECK_U64(mmpool_total_bytes(NULL), 0);
    CHECK_LAST_ERROR_NAMES("mmpool_total_bytes");
    CHECK_U64(mmpool_available_bytes(NULL), 0);
    CHECK_LAST_ERROR_NAMES("mmpool_available_bytes");

    /* Documented as accepting NULL. */
    mmpool_ref(NULL);
    mmpool_unref(NULL);
    CHECK_OK(mmpool_set_log_callback(NULL, NULL));

    /* Nothing above touched the pool. */
    mmpool_stats after = get_stats(pool);
    CHECK_U64(after.available_bytes, 100);
    CHECK_U64(after.grants, 0);
    CHECK_U64(after.waiters, 0);
    CHECK_U64(after.total_bytes, 100);
    mmpool_unref(pool);
}

static void invalid_totals_are_refused(void) {
    mmpool *sentinel = (mmpool *)&sentinel;
    mmpool *p = sentinel;
    CHECK_STATUS(mmpool_init(0, &p), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_init");
    CHECK_STATUS(mmpool_init(MMPOOL_MAX_TOTAL + 1, &p), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_init(UINT64_MAX, &p), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK(p == sentinel);
}

static void leases_the_pool_never_issued(void) {
    mmpool *a = NULL, *b = NULL;
    CHECK_OK(mmpool_init(100, &a));
    CHECK_OK(mmpool_init(100, &b));
    mmpool_lease la, lb;
    CHECK_OK(mmpool_acquire(a, 10, &la));
    CHECK_OK(mmpool_acquire(b, 20, &lb));

    /* Another pool's lease: refused, and neither pool's bytes move. */
    CHECK_STATUS(mmpool_release(a, lb), MMPOOL_ERR_INVALID_LEASE);
    CHECK_LAST_ERROR_NAMES("mmpool_release");
    CHECK_STATUS(mmpool_release(b, la), MMPOOL_ERR_INVALID_LEASE);
    CHECK_U64(mmpool_available_bytes(a), 90);
    CHECK_U64(mmpool_available_bytes(b), 80);

    /* Id 0 ("no lease") and ids never issued. */
    mmpool_lease zero = {0, 10};
    CHECK_STATUS(mmpool_release(a, zero), MMPOOL_ERR_INVALID_LEASE);
    mmpool_lease unknown[3] = {{la.id + lb.id + 1000, 10}, {UINT64_MAX, 10}, {1ull << 63, 10}};
    for (int i = 0; i < 3; i++) CHECK_STATUS(mmpool_release(a, unknown[i]), MMPOOL_ERR_INVALID_LEASE);
    CHECK_U64(mmpool_available_bytes(a), 90);

    /* The right pool takes them back; a second release is a no-op. */
    CHECK_OK(mmpool_release(a, la));
    CHECK_OK(mmpool_release(a, la));
    CHECK_OK(mmpool_release(b, lb));
    CHECK_OK(mmpool_release(b, lb));
    CHECK_U64(mmpool_available_bytes(a), 100);
    CHECK_U64(mmpool_available_bytes(b), 100);
    /* A released lease of another pool is still not this pool's. */
    CHECK_STATUS(mmpool_release(a, lb), MMPOOL_ERR_INVALID_LEASE);
    mmpool_unref(a);
    mmpool_unref(b);
}

static void huge_sizes_are_answered(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(1000, &pool));
    mmpool_lease l;
    mmpool_ticket t;
    CHECK_STATUS(mmpool_acquire(pool, UINT64_MAX, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_acquire_timeout(pool, UINT64_MAX, UINT64_MAX, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_try_acquire(pool, 1001, &l), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_enqueue(pool, UINT64_MAX, &t), MMPOOL_ERR_EXCEEDS_CAPACITY);
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.available_bytes, 1000);
    CHECK_U64(s.capacity_rejections, 4);
    CHECK_U64(s.waiters, 0);
    mmpool_unref(pool);
}

static void every_status_has_its_name(void) {
    static const char *const names[] = {
        "MMPOOL_OK",
        "MMPOOL_ERR_NULL_ARGUMENT",
        "MMPOOL_ERR_INVALID_ARGUMENT",
        "MMPOOL_ERR_EXCEEDS_CAPACITY",
        "MMPOOL_ERR_TIMEOUT",
        "MMPOOL_ERR_WOULD_BLOCK",
        "MMPOOL_ERR_CLOSED",
        "MMPOOL_ERR_INVALID_LEASE",
        "MMPOOL_ERR_SYSTEM",
        "MMPOOL_ERR_CUDA",
        "MMPOOL_ERR_INTERNAL",
    };
    CHECK(MMPOOL_OK == 0 && MMPOOL_ERR_INTERNAL == 10);
    for (int code = MMPOOL_OK; code <= MMPOOL_ERR_INTERNAL; code++)
        CHECK_STR(mmpool_status_str((mmpool_status)code), names[code]);
    const int out_of_range[] = {-1, 11, 12, 1000, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++)
        CHECK_STR(mmpool_status_str((mmpool_status)out_of_range[i]), "MMPOOL_ERR_UNKNOWN");
}

static void *fail_once(void *arg) {
    const char **seen = (const char **)arg;
    /* A new thread starts with an empty message, never NULL. */
    seen[0] = mmpool_last_error()[0] == '\0' ? "empty" : "not empty";
    mmpool_init(0, NULL);
    return NULL;
}

static void the_last_error_is_per_thread(void) {
    mmpool *out = NULL;
    CHECK_STATUS(mmpool_init(0, &out), MMPOOL_ERR_INVALID_ARGUMENT);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", mmpool_last_error());
    CHECK(strstr(mine, "mmpool_init") != NULL);

    const char *seen[1] = {NULL};
    pthread_t t;
    if (pthread_create(&t, NULL, fail_once, seen) != 0 || pthread_join(t, NULL) != 0)
        FAIL_AT("thread");
    CHECK_STR(seen[0], "empty");
    /* The other thread's NULL_ARGUMENT did not overwrite this thread's message. */
    CHECK_STR(mmpool_last_error(), mine);
}

int main(void) {
    every_null_pointer_is_refused();
    invalid_totals_are_refused();
    leases_the_pool_never_issued();
    huge_sizes_are_answered();
    every_status_has_its_name();
    the_last_error_is_per_thread();
    puts("misuse: ok");
    return 0;
}
