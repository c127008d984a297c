/*
 * mmpool.h compiles as strict C11 (no POSIX or GNU extensions) with
 * -Wall -Wextra -Werror -pedantic, its layout is what other languages rely
 * on, and its version macros match the library and Cargo.toml.
 */
#include "mmpool.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(mmpool_lease) == 16, "mmpool_lease is two uint64_t");
_Static_assert(offsetof(mmpool_lease, nbytes) == 8, "mmpool_lease.nbytes follows id");
_Static_assert(sizeof(mmpool_ticket) == 8, "mmpool_ticket is one uint64_t");
_Static_assert(offsetof(mmpool_stats, size) == 0, "mmpool_stats starts with its size");
_Static_assert(sizeof(mmpool_stats) % 8 == 0, "mmpool_stats is whole uint64_t words");
_Static_assert(MMPOOL_WAIT_FOREVER == UINT64_MAX, "MMPOOL_WAIT_FOREVER");
_Static_assert(MMPOOL_MAX_TOTAL == (1ull << 60), "MMPOOL_MAX_TOTAL is 2^60");

#define STR2(x) #x
#define STR(x) STR2(x)

int main(void) {
    const char *from_macros =
        STR(MMPOOL_VERSION_MAJOR) "." STR(MMPOOL_VERSION_MINOR) "." STR(MMPOOL_VERSION_PATCH);
    int ok = strcmp(from_macros, MMPOOL_VERSION_STRING) == 0 &&
             strcmp(mmpool_version(), MMPOOL_VERSION_STRING) == 0 &&
             strcmp(mmpool_version(), MMPOOL_EXPECTED_VERSION) == 0;
    if (!ok) {
        fprintf(stderr, "FAILED: versions differ: macros %s, MMPOOL_VERSION_STRING %s, "
                        "mmpool_version() %s, Cargo.toml %s\n",
                from_macros, MMPOOL_VERSION_STRING, mmpool_version(), MMPOOL_EXPECTED_VERSION);
        return 1;
    }
    printf("header (C): ok, version %s\n", mmpool_version());
    return 0;
}
