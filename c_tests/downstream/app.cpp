// A C++ consumer of an installed mmpool through mmpool.hpp.
#include <mmpool.hpp>

#include <cstdio>
#include <cstring>

int main() {
    mmpool_cpp::Pool pool(1 << 20);
    {
        mmpool_cpp::Lease lease = pool.acquire(1 << 19);
        if (pool.try_acquire(1 << 20)) return 1;
    }
    if (pool.available_bytes() != 1 << 20) return 1;
    try {
        pool.acquire(2 << 20);
        return 1;
    } catch (const mmpool_cpp::Error &e) {
        if (e.status() != MMPOOL_ERR_EXCEEDS_CAPACITY) return 1;
    }
    if (std::strcmp(mmpool_version(), MMPOOL_EXPECTED_VERSION) != 0) return 1;
    std::printf("consumer (C++): mmpool %s works\n", mmpool_version());
    return 0;
}
