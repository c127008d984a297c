// The C++ wrapper mmpool.hpp: RAII releases on scope exit and on exceptions,
// move semantics, errors as exceptions, optional results, FIFO through the
// wrapper, the global pool.
#include "mmpool.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace mp = mmpool_cpp;
using namespace std::chrono_literals;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);        \
            std::exit(1);                                                                  \
        }                                                                                  \
    } while (0)

// Runs `body`, which must throw mp::Error with `status`; returns its what().
template <class F>
std::string expect_error(mmpool_status status, F body, int line) {
    try {
        body();
    } catch (const mp::Error &e) {
        if (e.status() != status) {
            std::fprintf(stderr, "line %d: FAILED: threw %s, expected %s\n", line,
                         mmpool_status_str(e.status()), mmpool_status_str(status));
            std::exit(1);
        }
        return e.what();
    }
    std::fprintf(stderr, "line %d: FAILED: no exception, expected %s\n", line, mmpool_status_str(status));
    std::exit(1);
}
#define EXPECT_ERROR(status, ...) expect_error(status, [&] { __VA_ARGS__; }, __LINE__)

static_assert(!std::is_copy_constructible_v<mp::Lease>, "Lease is move-only");
static_assert(!std::is_copy_assignable_v<mp::Lease>, "Lease is move-only");
static_assert(std::is_nothrow_move_constructible_v<mp::Lease>, "Lease moves without throwing");
static_assert(!std::is_copy_constructible_v<mp::Ticket>, "Ticket is move-only");
static_assert(std::is_copy_constructible_v<mp::Pool>, "Pool copies are references");

static void leases_release_on_scope_exit() {
    mp::Pool pool(100);
    {
        mp::Lease lease = pool.acquire(60);
        CHECK(lease);
        CHECK(lease.nbytes() == 60);
        CHECK(lease.id() != 0);
        CHECK(pool.available_bytes() == 40);
    }
    CHECK(pool.available_bytes() == 100);
    CHECK(pool.stats().outstanding_leases == 0);
}

static void leases_release_when_an_exception_unwinds() {
    mp::Pool pool(100);
    bool caught = false;
    try {
        mp::Lease a = pool.acquire(30);
        auto b = pool.try_acquire(50);
        CHECK(b);
        CHECK(pool.available_bytes() == 20);
        throw std::runtime_error("decode failed");
    } catch (const std::runtime_error &) {
        caught = true;
    }
    CHECK(caught);
    CHECK(pool.available_bytes() == 100);

    // An mmpool error thrown mid-way also unwinds the leases taken before it.
    std::string what = EXPECT_ERROR(MMPOOL_ERR_EXCEEDS_CAPACITY, {
        mp::Lease a = pool.acquire(70);
        CHECK(pool.available_bytes() == 30);
        pool.acquire(101);
    });
    CHECK(what.find("MMPOOL_ERR_EXCEEDS_CAPACITY") != std::string::npos);
    CHECK(what.find("mmpool_acquire") != std::string::npos);
    CHECK(pool.available_bytes() == 100);
}

static void leases_move() {
    mp::Pool pool(100);
    mp::Lease a = pool.acquire(30);
    const std::uint64_t id = a.id();
    mp::Lease b = std::move(a);
    CHECK(!a);  // NOLINT: moved-from is empty by contract
    CHECK(b && b.id() == id && b.nbytes() == 30);
    a.release();  // an empty lease: no-op
    CHECK(pool.available_bytes() == 70);

    // Move-assignment releases what the target held first.
    b = pool.acquire(10);
    CHECK(pool.available_bytes() == 90);
    CHECK(b.nbytes() == 10);

    std::vector<mp::Lease> held;
    for (int i = 0; i < 9; i++) held.push_back(pool.acquire(10));
    CHECK(pool.available_bytes() == 0);
    held.erase(held.begin(), held.begin() + 4);
    CHECK(pool.available_bytes() == 40);
    held.clear();
    CHECK(pool.available_bytes() == 90);

    // release() is idempotent.
    b.release();
    b.release();
    CHECK(!b);
    CHECK(pool.available_bytes() == 100);
    CHECK(pool.stats().grants == 11);
}

static void leases_resize() {
    mp::Pool pool(100);
    mp::Lease l = pool.acquire(40);
    l.resize(10);
    CHECK(l.nbytes() == 10 && pool.available_bytes() == 90);
    mp::Lease other = pool.acquire(80);
    CHECK(!l.resize_for(30, 1ms));
    CHECK(l.nbytes() == 10);
    CHECK(l.resize_for(20, 0ms));
    CHECK(pool.available_bytes() == 0);
    EXPECT_ERROR(MMPOOL_ERR_EXCEEDS_CAPACITY, l.resize(101));
    mp::Lease empty;
    EXPECT_ERROR(MMPOOL_ERR_INVALID_LEASE, empty.resize(1));
}

static void optional_results_and_errors() {
    mp::Pool pool(10);
    mp::Lease all = pool.acquire(10);
    CHECK(!pool.try_acquire(1));
    CHECK(!pool.acquire_for(1, 2ms));
    CHECK(!pool.acquire_for(1, -5s));  // negative: do not wait
    CHECK(pool.stats().would_blocks == 1);
    CHECK(pool.stats().timeouts == 2);
    all.release();
    auto got = pool.acquire_for(10, std::chrono::hours::max());
    CHECK(got && got->nbytes() == 10);
    got.reset();
    CHECK(pool.available_bytes() == 10);

    EXPECT_ERROR(MMPOOL_ERR_INVALID_ARGUMENT, mp::Pool(0));
    EXPECT_ERROR(MMPOOL_ERR_EXCEEDS_CAPACITY, pool.try_acquire(11));
    EXPECT_ERROR(MMPOOL_ERR_EXCEEDS_CAPACITY, pool.acquire_for(11, 1s));
    EXPECT_ERROR(MMPOOL_ERR_INVALID_ARGUMENT, pool.set_total(0));
    pool.close();
    EXPECT_ERROR(MMPOOL_ERR_CLOSED, pool.acquire(1));
    EXPECT_ERROR(MMPOOL_ERR_CLOSED, pool.try_acquire(1));
    EXPECT_ERROR(MMPOOL_ERR_CLOSED, pool.enqueue(1));

    CHECK(mp::detail::timeout_ns(-1ms) == 0);
    CHECK(mp::detail::timeout_ns(0s) == 0);
    CHECK(mp::detail::timeout_ns(7ns) == 7);
    CHECK(mp::detail::timeout_ns(3ms) == 3000000);
    CHECK(mp::detail::timeout_ns(std::chrono::duration<double>(0.5)) == 500000000);
    CHECK(mp::detail::timeout_ns(std::chrono::hours::max()) == MMPOOL_WAIT_FOREVER);
    CHECK(mp::detail::timeout_ns(std::chrono::nanoseconds::max()) == 9223372036854775807ull);
    CHECK(mp::detail::timeout_ns(std::chrono::duration<std::int64_t, std::pico>(2500)) == 2);
    CHECK(mp::detail::timeout_ns(std::chrono::hours(5124095)) == 5124095ull * 3600 * 1000000000);
    CHECK(mp::detail::timeout_ns(std::chrono::hours(5124096)) == MMPOOL_WAIT_FOREVER);
    CHECK(mp::detail::timeout_ns(std::chrono::duration<double>(1e30)) == MMPOOL_WAIT_FOREVER);
}

static void pool_copies_are_references() {
    mp::Lease outlives;
    {
        mp::Pool a(50);
        mp::Pool b = a;  // mmpool_ref
        {
            mp::Pool c(1);
            c = b;  // drops the 1-byte pool, shares a's
            mp::Lease l = c.acquire(20);
            CHECK(a.available_bytes() == 30);
        }
        mp::Pool d = std::move(b);
        CHECK(b.get() == nullptr);  // NOLINT: moved-from is empty by contract
        mp::Pool &same = a;
        a = same;  // self-assignment keeps the reference
        outlives = d.acquire(5);
        CHECK(a.available_bytes() == 45);
    }
    // Every Pool object is gone; the lease's own reference keeps the pool alive
    // (a use after free here is what the ASan and valgrind runs would catch).
    CHECK(outlives.nbytes() == 5);
    outlives.release();

    mmpool *raw = nullptr;
    CHECK(mmpool_init(8, &raw) == MMPOOL_OK);
    {
        mp::Pool shared = mp::Pool::share(raw);
        mp::Lease l = shared.acquire(8);
        CHECK(mmpool_available_bytes(raw) == 0);
    }
    CHECK(mmpool_available_bytes(raw) == 8);  // still ours
    mp::Pool adopted = mp::Pool::adopt(raw);  // now the wrapper's
    CHECK(adopted.total_bytes() == 8);
}

// Whole-pool requests queue one after another; each thread records its turn
// while it holds the whole pool, so the record is the grant order.
static void fifo_through_the_wrapper() {
    constexpr int n = 5;
    mp::Pool pool(10);
    auto wait_for_waiters = [&](std::uint64_t k) {
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (pool.stats().waiters != k) {
            CHECK(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(1ms);
        }
    };
    std::mutex lock;
    std::vector<int> order;
    std::vector<std::thread> threads;
    {
        mp::Lease gate = pool.acquire(5);
        for (int i = 0; i < n; i++) {
            threads.emplace_back([&, i] {
                mp::Lease l = pool.acquire(10);
                std::lock_guard<std::mutex> g(lock);
                order.push_back(i);
            });
            wait_for_waiters(static_cast<std::uint64_t>(i) + 1);
        }
        // 5 bytes are free, yet a small request does not jump the line.
        CHECK(pool.available_bytes() == 5);
        CHECK(!pool.try_acquire(1));
    }  // gate released here
    for (auto &t : threads) t.join();
    CHECK(order.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; i++) CHECK(order[static_cast<std::size_t>(i)] == i);
    CHECK(pool.available_bytes() == 10);

    // Tickets: the line's order from one thread, no scheduling involved.
    mp::Lease held = pool.acquire(6);
    mp::Ticket big = pool.enqueue(10);
    mp::Ticket small = pool.enqueue(1);
    CHECK(!small.wait_for(0ms));
    CHECK(!big.wait_for(1ms));  // keeps its place
    held.release();
    auto big_lease = big.wait_for(0ms);
    CHECK(big_lease && big_lease->nbytes() == 10);
    CHECK(!big);  // used up
    CHECK(!small.wait_for(0ms));
    big_lease.reset();
    mp::Lease small_lease = small.wait();
    CHECK(small_lease.nbytes() == 1);
    CHECK(pool.available_bytes() == 9);
}

static void tickets_leave_the_line_when_destroyed() {
    mp::Pool pool(10);
    mp::Lease held = pool.acquire(5);
    mp::Ticket behind;
    {
        mp::Ticket head = pool.enqueue(10);
        behind = pool.enqueue(3);
        CHECK(!behind.wait_for(0ms));
        CHECK(pool.stats().waiters == 2);
    }  // head leaves the line
    auto l = behind.wait_for(0ms);
    CHECK(l && l->nbytes() == 3);
    CHECK(pool.stats().waiters == 0);

    // A granted but uncollected ticket returns its bytes when destroyed.
    l.reset();
    held.release();
    {
        mp::Lease all = pool.acquire(10);
        mp::Ticket t = pool.enqueue(7);
        all.release();  // grants the ticket
        CHECK(pool.available_bytes() == 3);
    }
    CHECK(pool.available_bytes() == 10);
    CHECK(pool.stats().waiters == 0);
}

static void the_global_pool() {
    CHECK(!mp::Pool::global());
    auto mine = mp::Pool::init_global(2.0, 4);
    CHECK(mine && mine->total_bytes() == (1ull << 29));
    auto g = mp::Pool::global();
    CHECK(g && g->total_bytes() == (1ull << 29));
    {
        mp::Lease l = g->acquire(100);
        CHECK(mine->available_bytes() == (1ull << 29) - 100);
    }
    CHECK(!mp::Pool::init_global(0.0, 4));
    CHECK(!mp::Pool::global());
    EXPECT_ERROR(MMPOOL_ERR_INVALID_ARGUMENT, mp::Pool::init_global(1.0, 0));

    mp::Pool::set_global(*mine);
    CHECK(mp::Pool::global()->total_bytes() == (1ull << 29));
    mp::Pool::disable_global();
    CHECK(!mp::Pool::global());
}

int main() {
    leases_release_on_scope_exit();
    leases_release_when_an_exception_unwinds();
    leases_move();
    leases_resize();
    optional_results_and_errors();
    pool_copies_are_references();
    fifo_through_the_wrapper();
    tickets_leave_the_line_when_destroyed();
    the_global_pool();
    std::printf("mmpool.hpp: ok\n");
    return 0;
}
