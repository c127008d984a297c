/* A consumer of an installed mmpool: budget, acquire, release, version. */
#include <mmpool.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    if (strcmp(mmpool_version(), MMPOOL_EXPECTED_VERSION) != 0 ||
        strcmp(mmpool_version(), MMPOOL_VERSION_STRING) != 0) {
        fprintf(stderr, "FAILED: library %s, header %s, expected %s\n", mmpool_version(),
                MMPOOL_VERSION_STRING, MMPOOL_EXPECTED_VERSION);
        return 1;
    }
    mmpool *pool = NULL;
    mmpool_lease lease;
    if (mmpool_init(64u << 20, &pool) != MMPOOL_OK) return 1;
    if (mmpool_acquire(pool, 48u << 20, &lease) != MMPOOL_OK) return 1;
    mmpool_lease second;
    mmpool_status busy = mmpool_try_acquire(pool, 32u << 20, &second);
    if (busy != MMPOOL_ERR_WOULD_BLOCK) {
        fprintf(stderr, "FAILED: try_acquire gave %s\n", mmpool_status_str(busy));
        return 1;
    }
    if (mmpool_release(pool, lease) != MMPOOL_OK) return 1;
    if (mmpool_available_bytes(pool) != 64u << 20) return 1;
    mmpool_unref(pool);
    printf("consumer: mmpool %s works\n", mmpool_version());
    return 0;
}
