/*
 * The global pool: mmpool_init_global's split of a GiB budget over processes,
 * disabling, invalid budgets, the log line it writes, and mmpool_set_global.
 */
#include <math.h>

#include "check.h"

static char last_info[512];
static int split_logged;

static void capture_log(mmpool_log_level level, const char *message, void *user_data) {
    int *calls = (int *)user_data;
    ++*calls;
    if (level == MMPOOL_LOG_INFO) {
        snprintf(last_info, sizeof last_info, "%s", message);
        if (strstr(message, "536870912") != NULL) split_logged = 1;
    }
}

/* Installs a global pool and checks what this process got. */
static void check_share(double gib, uint32_t processes, uint64_t expected) {
    mmpool *p = NULL;
    CHECK_OK(mmpool_init_global(gib, processes, &p));
    CHECK(p != NULL);
    CHECK_U64(mmpool_total_bytes(p), expected);
    mmpool *g = mmpool_global();
    CHECK(g != NULL);
    CHECK_U64(mmpool_total_bytes(g), expected);
    /* The same pool: bytes taken through one handle are gone from the other. */
    mmpool_lease l;
    CHECK_OK(mmpool_acquire(g, 1, &l));
    CHECK_U64(mmpool_available_bytes(p), expected - 1);
    CHECK_OK(mmpool_release(p, l));
    mmpool_unref(g);
    mmpool_unref(p);
}

static void the_budget_is_split_over_processes(void) {
    CHECK(mmpool_global() == NULL); /* nothing installed at start */
    check_share(2.0, 4, 1ull << 29);          /* exactly 2^29 */
    check_share(1.0, 1, 1ull << 30);
    check_share(1.0, 3, 357913941ull);        /* floor(2^30 / 3) */
    check_share(0.5, 2, 1ull << 28);
    check_share(1.5, 7, 230087533ull);        /* floor(1.5 * 2^30) / 7 */
    check_share(100.0, 1, 100ull << 30);      /* above 4 GiB */
    check_share(1e-9, 1, 1);                  /* floor(1.073741824) */
}

static void the_split_is_logged(void) {
    int calls = 0;
    CHECK_OK(mmpool_set_log_callback(capture_log, &calls));
    split_logged = 0;
    mmpool *p = NULL;
    CHECK_OK(mmpool_init_global(2.0, 4, &p));
    CHECK(calls >= 1);
    if (!split_logged) FAIL_AT("no info line gives the 536870912 bytes (last: \"%s\")", last_info);
    mmpool_unref(p);
    CHECK_OK(mmpool_set_log_callback(NULL, NULL));
}

static void a_budget_of_zero_or_less_disables(void) {
    const double budgets[3] = {0.0, -1.0, -0.0};
    for (int i = 0; i < 3; i++) {
        mmpool *p = NULL;
        CHECK_OK(mmpool_init_global(1.0, 2, NULL)); /* something to disable */
        mmpool *installed = mmpool_global();
        CHECK(installed != NULL);
        mmpool_unref(installed);
        p = (mmpool *)&p; /* must be overwritten with NULL */
        CHECK_OK(mmpool_init_global(budgets[i], 4, &p));
        CHECK(p == NULL);
        CHECK(mmpool_global() == NULL);
    }
    /* out_pool may be NULL. */
    CHECK_OK(mmpool_init_global(-3.0, 1, NULL));
    CHECK(mmpool_global() == NULL);
}

static void invalid_budgets_are_refused(void) {
    mmpool *installed = NULL;
    CHECK_OK(mmpool_init_global(1.0, 8, &installed));
    const double bad[3] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        mmpool *p = (mmpool *)&installed; /* a sentinel that must stay */
        CHECK_STATUS(mmpool_init_global(bad[i], 4, &p), MMPOOL_ERR_INVALID_ARGUMENT);
        CHECK_LAST_ERROR_NAMES("mmpool_init_global");
        CHECK(p == (mmpool *)&installed);
    }
    mmpool *p = (mmpool *)&installed;
    CHECK_STATUS(mmpool_init_global(2.0, 0, &p), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK(p == (mmpool *)&installed);
    /* Above 2^60 bytes, and a share below one byte. */
    CHECK_STATUS(mmpool_init_global(2e9, 1, &p), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_init_global(1e-10, 1, &p), MMPOOL_ERR_INVALID_ARGUMENT);
    /* A refused call leaves the installed pool in place. */
    mmpool *g = mmpool_global();
    CHECK(g != NULL);
    CHECK_U64(mmpool_total_bytes(g), 1ull << 27);
    mmpool_lease l;
    CHECK_OK(mmpool_acquire(g, 5, &l));
    CHECK_U64(mmpool_available_bytes(installed), (1ull << 27) - 5);
    CHECK_OK(mmpool_release(installed, l));
    mmpool_unref(g);
    mmpool_unref(installed);
}

static void set_global_installs_and_disables(void) {
    mmpool *mine = NULL;
    CHECK_OK(mmpool_init(12345, &mine));
    CHECK_OK(mmpool_set_global(mine));
    mmpool *g = mmpool_global();
    CHECK(g != NULL);
    CHECK_U64(mmpool_total_bytes(g), 12345);
    mmpool_lease l;
    CHECK_OK(mmpool_acquire(mine, 45, &l));
    CHECK_U64(mmpool_available_bytes(g), 12300);
    CHECK_OK(mmpool_release(g, l));
    mmpool_unref(g);
    CHECK_OK(mmpool_set_global(NULL));
    CHECK(mmpool_global() == NULL);
    CHECK_U64(mmpool_total_bytes(mine), 12345); /* our reference is untouched */
    mmpool_unref(mine);
}

int main(void) {
    /* The callback receives info lines unless MMPOOL_LOG says otherwise. */
    unsetenv("MMPOOL_LOG");
    the_budget_is_split_over_processes();
    the_split_is_logged();
    a_budget_of_zero_or_less_disables();
    invalid_budgets_are_refused();
    set_global_installs_and_disables();
    puts("global: ok");
    return 0;
}
