// mmpool.h compiles as C++17 with -Wall -Wextra -Werror -pedantic: the
// declarations have C linkage and the types are usable from C++.
#include "mmpool.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(std::is_trivially_copyable_v<mmpool_lease>, "mmpool_lease is a plain value");
static_assert(std::is_standard_layout_v<mmpool_stats>, "mmpool_stats is a C struct");
static_assert(sizeof(mmpool_lease) == 16, "mmpool_lease is two uint64_t");
static_assert(std::is_same_v<decltype(&mmpool_acquire),
                             mmpool_status (*)(mmpool *, uint64_t, mmpool_lease *)>,
              "mmpool_acquire's signature");

int main() {
    // Linking succeeds only if the declarations have C linkage.
    mmpool *pool = nullptr;
    if (mmpool_init(64, &pool) != MMPOOL_OK) return 1;
    mmpool_lease lease{};
    if (mmpool_acquire(pool, 64, &lease) != MMPOOL_OK || lease.nbytes != 64) return 1;
    if (mmpool_release(pool, lease) != MMPOOL_OK) return 1;
    mmpool_unref(pool);
    if (std::strcmp(mmpool_version(), MMPOOL_EXPECTED_VERSION) != 0) {
        std::fprintf(stderr, "FAILED: mmpool_version() %s, Cargo.toml %s\n", mmpool_version(),
                     MMPOOL_EXPECTED_VERSION);
        return 1;
    }
    std::printf("header (C++17): ok\n");
    return 0;
}
