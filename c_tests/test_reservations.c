/*
 * mmpool_set_reservation and mmpool_get_reservations: labelled bytes held
 * outside any lease, reported beside the budget and never taken from it.
 */
#include <unistd.h>

#include "check.h"

static size_t list(mmpool *pool, mmpool_reservation *out, size_t capacity) {
    size_t count = 12345;
    CHECK_OK(mmpool_get_reservations(pool, out, capacity, &count));
    return count;
}

static void reservations_are_reported_beside_the_budget(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(1000, &pool));
    CHECK_OK(mmpool_set_reservation(pool, "cuda-context", 500));
    CHECK_OK(mmpool_set_reservation(pool, "nvdec-surfaces", 300));
    CHECK_OK(mmpool_set_reservation(pool, "cuda-context", 600)); /* replaces */
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.reserved_bytes, 900);
    CHECK_U64(s.total_bytes, 1000);
    CHECK_U64(s.available_bytes, 1000); /* nothing taken from the budget */

    mmpool_reservation r[4];
    memset(r, 0, sizeof r);
    CHECK_U64(list(pool, NULL, 0), 2);
    CHECK_U64(list(pool, r, 1), 2); /* the count of all, one written */
    CHECK_U64(r[1].bytes, 0);
    CHECK_U64(list(pool, r, 4), 2);
    CHECK_STR(r[0].label, "cuda-context");
    CHECK_U64(r[0].bytes, 600);
    CHECK_U64(r[0].pid, (uint64_t)getpid());
    CHECK_STR(r[1].label, "nvdec-surfaces");
    CHECK_U64(r[1].bytes, 300);

    CHECK_OK(mmpool_set_reservation(pool, "cuda-context", 0)); /* removes */
    CHECK_OK(mmpool_set_reservation(pool, "never-set", 0));
    CHECK_U64(list(pool, r, 4), 1);
    CHECK_STR(r[0].label, "nvdec-surfaces");
    CHECK_U64(get_stats(pool).reserved_bytes, 300);
    mmpool_unref(pool);
}

static void bad_labels_and_too_many_are_refused_with_a_message(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init(1000, &pool));
    CHECK_STATUS(mmpool_set_reservation(pool, NULL, 1), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(mmpool_set_reservation(NULL, "a", 1), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(mmpool_set_reservation(pool, "", 1), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_set_reservation");
    CHECK_STATUS(mmpool_set_reservation(pool, "a\nb", 1), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_set_reservation(pool, "\xff\xfe", 1), MMPOOL_ERR_INVALID_ARGUMENT);
    char longest[MMPOOL_RESERVATION_LABEL_SIZE];
    memset(longest, 'x', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    CHECK_OK(mmpool_set_reservation(pool, longest, 1));
    char too_long[MMPOOL_RESERVATION_LABEL_SIZE + 1];
    memset(too_long, 'y', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    CHECK_STATUS(mmpool_set_reservation(pool, too_long, 1), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_set_reservation(pool, "huge", (1ull << 60) + 1), MMPOOL_ERR_INVALID_ARGUMENT);

    char label[8];
    for (int i = 1; i < MMPOOL_MAX_RESERVATIONS; i++) {
        snprintf(label, sizeof label, "l%d", i);
        CHECK_OK(mmpool_set_reservation(pool, label, 1));
    }
    CHECK_STATUS(mmpool_set_reservation(pool, "one-more", 1), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mmpool_last_error(), "remove one") != NULL);
    mmpool_reservation r[MMPOOL_MAX_RESERVATIONS];
    CHECK_U64(list(pool, r, MMPOOL_MAX_RESERVATIONS), MMPOOL_MAX_RESERVATIONS);
    CHECK_STR(r[0].label, longest);

    size_t count = 7;
    CHECK_STATUS(mmpool_get_reservations(pool, NULL, 1, &count), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_U64(count, 7); /* out-params untouched on failure */
    CHECK_STATUS(mmpool_get_reservations(pool, r, 1, NULL), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(mmpool_get_reservations(NULL, r, 1, &count), MMPOOL_ERR_NULL_ARGUMENT);
    mmpool_unref(pool);
}

int main(void) {
    reservations_are_reported_beside_the_budget();
    bad_labels_and_too_many_are_refused_with_a_message();
    puts("test_reservations: ok");
    return 0;
}
