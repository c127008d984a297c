/*
 * mmpool.hpp: header-only C++17 wrappers over the mmpool C API (mmpool.h).
 *
 *   mmpool_cpp::Pool pool(512ull << 20);                  // a 512 MiB budget
 *   {
 *       mmpool_cpp::Lease lease = pool.acquire(nbytes);   // waits in line
 *       ... cudaMalloc, decode, cudaFree ...
 *   }                                                     // bytes go back here
 *   if (auto lease = pool.acquire_for(nbytes, std::chrono::milliseconds(50))) { ... }
 *   if (auto lease = pool.try_acquire(nbytes)) { ... }
 *
 * Pool is a counted reference to a pool (copying adds a reference), Lease and
 * Ticket are move-only owners that give their bytes or their place back when
 * destroyed. Failures throw mmpool_cpp::Error, which carries the status and
 * the library's message; "not now" results (a timeout, a busy pool) are an
 * empty std::optional instead.
 *
 * The namespace is mmpool_cpp, not mmpool: the C header declares the type
 * `struct mmpool` in the global namespace, and C++ forbids a namespace of the
 * same name beside it. `namespace mp = mmpool_cpp;` gives a shorter name.
 *
 * All types may be used from many threads as the C API allows: different
 * objects freely; one Lease or Ticket object from one thread at a time.
 */
#ifndef MMPOOL_HPP
#define MMPOOL_HPP

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <ratio>
#include <string>
#include <type_traits>
#include <utility>

#include "mmpool.h"

namespace mmpool_cpp {

/// A failed mmpool call: `status()` is the C status code, `what()` reads
/// "MMPOOL_ERR_...: <the library's message>".
class Error : public std::runtime_error {
public:
    Error(mmpool_status status, const std::string &message)
        : std::runtime_error(std::string(mmpool_status_str(status)) + ": " + message),
          status_(status) {}

    mmpool_status status() const noexcept { return status_; }

private:
    mmpool_status status_;
};

namespace detail {

/// Throws Error for anything but MMPOOL_OK, with this thread's last message.
inline void check(mmpool_status status) {
    if (status != MMPOOL_OK) throw Error(status, mmpool_last_error());
}

/// A timeout in nanoseconds for the C API: zero or negative is 0 (do not
/// wait), values of 2^64-1 ns (about 584 years) or more are
/// MMPOOL_WAIT_FOREVER. Integer durations convert exactly, without overflow.
template <class Rep, class Period>
std::uint64_t timeout_ns(std::chrono::duration<Rep, Period> timeout) {
    using std::chrono::duration;
    using std::chrono::duration_cast;
    using ns64 = duration<std::uint64_t, std::nano>;
    if (!(timeout > timeout.zero())) return 0;  // also NaN
    if constexpr (std::is_floating_point_v<Rep>) {
        const double ns = duration<double, std::nano>(timeout).count();
        return ns >= 18446744073709551615.0 ? MMPOOL_WAIT_FOREVER : static_cast<std::uint64_t>(ns);
    } else if constexpr (std::ratio_less_v<Period, std::nano>) {
        // Finer than nanoseconds: truncate to whole nanoseconds first.
        return timeout_ns(duration_cast<ns64>(duration<std::uint64_t, Period>(
            static_cast<std::uint64_t>(timeout.count()))));
    } else {
        // The most units of Period that fit in 2^64-1 ns; above it, forever.
        constexpr std::uint64_t limit = duration_cast<duration<std::uint64_t, Period>>(ns64::max()).count();
        const auto count = static_cast<std::uint64_t>(timeout.count());
        if (count > limit) return MMPOOL_WAIT_FOREVER;
        return duration_cast<ns64>(duration<std::uint64_t, Period>(count)).count();
    }
}

}  // namespace detail

class Pool;

/// Bytes held from a pool. Move-only; the destructor releases them. Holds its
/// own reference to the pool, so it may outlive every Pool object.
class Lease {
public:
    /// An empty lease (holds nothing).
    Lease() noexcept = default;

    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;

    Lease(Lease &&other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), lease_(std::exchange(other.lease_, {})) {}

    Lease &operator=(Lease &&other) noexcept {
        if (this != &other) {
            release();
            pool_ = std::exchange(other.pool_, nullptr);
            lease_ = std::exchange(other.lease_, {});
        }
        return *this;
    }

    ~Lease() { release(); }

    /// Gives the bytes back now. Idempotent: later calls (and the destructor)
    /// do nothing.
    void release() noexcept {
        if (pool_ == nullptr) return;
        // Cannot fail: the lease came from this pool and is released once.
        (void)mmpool_release(pool_, lease_);
        mmpool_unref(pool_);
        pool_ = nullptr;
        lease_ = {};
    }

    /// Changes the bytes held, waiting in line without limit to grow. Throws
    /// Error (EXCEEDS_CAPACITY, CLOSED, INVALID_LEASE for an empty lease).
    void resize(std::uint64_t new_nbytes) { detail::check(resize_raw(new_nbytes, MMPOOL_WAIT_FOREVER)); }

    /// Like resize, waiting at most `timeout` to grow; false when it ran out
    /// (the lease keeps its size).
    template <class Rep, class Period>
    bool resize_for(std::uint64_t new_nbytes, std::chrono::duration<Rep, Period> timeout) {
        const mmpool_status status = resize_raw(new_nbytes, detail::timeout_ns(timeout));
        if (status == MMPOOL_ERR_TIMEOUT) return false;
        detail::check(status);
        return true;
    }

    /// Whether it holds a lease (a 0-byte lease counts).
    explicit operator bool() const noexcept { return pool_ != nullptr; }
    std::uint64_t id() const noexcept { return lease_.id; }
    std::uint64_t nbytes() const noexcept { return lease_.nbytes; }
    /// The C value (id 0 when empty).
    mmpool_lease get() const noexcept { return lease_; }

private:
    friend class Pool;
    friend class Ticket;

    // Takes `lease` and a new reference to `pool`.
    Lease(mmpool *pool, mmpool_lease lease) noexcept : pool_(pool), lease_(lease) { mmpool_ref(pool_); }

    mmpool_status resize_raw(std::uint64_t new_nbytes, std::uint64_t timeout_ns) {
        if (pool_ == nullptr) throw Error(MMPOOL_ERR_INVALID_LEASE, "resize of an empty Lease");
        return mmpool_lease_resize(pool_, &lease_, new_nbytes, timeout_ns);
    }

    mmpool *pool_ = nullptr;
    mmpool_lease lease_ = {};
};

/// A place in line from Pool::enqueue. Move-only; the destructor leaves the
/// line (returning the bytes if they were granted but never collected).
class Ticket {
public:
    Ticket() noexcept = default;
    Ticket(const Ticket &) = delete;
    Ticket &operator=(const Ticket &) = delete;

    Ticket(Ticket &&other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), ticket_(std::exchange(other.ticket_, {})) {}

    Ticket &operator=(Ticket &&other) noexcept {
        if (this != &other) {
            cancel();
            pool_ = std::exchange(other.pool_, nullptr);
            ticket_ = std::exchange(other.ticket_, {});
        }
        return *this;
    }

    ~Ticket() { cancel(); }

    /// Waits at most `timeout` for the grant. Empty when it ran out: the place
    /// in line is kept, and wait_for may be called again. On a grant the ticket
    /// is used up. Throws Error (CLOSED, EXCEEDS_CAPACITY, or INVALID_LEASE
    /// for a used-up ticket).
    template <class Rep, class Period>
    std::optional<Lease> wait_for(std::chrono::duration<Rep, Period> timeout) {
        return wait_ns(detail::timeout_ns(timeout));
    }

    /// Waits without limit for the grant.
    Lease wait() { return std::move(*wait_ns(MMPOOL_WAIT_FOREVER)); }

    /// Leaves the line. Idempotent.
    void cancel() noexcept {
        if (pool_ == nullptr) return;
        (void)mmpool_ticket_cancel(pool_, ticket_);
        mmpool_unref(pool_);
        pool_ = nullptr;
        ticket_ = {};
    }

    /// Whether it still stands in line (or holds an uncollected grant).
    explicit operator bool() const noexcept { return pool_ != nullptr; }
    std::uint64_t id() const noexcept { return ticket_.id; }

private:
    friend class Pool;

    Ticket(mmpool *pool, mmpool_ticket ticket) noexcept : pool_(pool), ticket_(ticket) { mmpool_ref(pool_); }

    std::optional<Lease> wait_ns(std::uint64_t timeout_ns) {
        if (pool_ == nullptr) throw Error(MMPOOL_ERR_INVALID_LEASE, "wait on an empty Ticket");
        mmpool_lease lease{};
        const mmpool_status status = mmpool_ticket_wait(pool_, ticket_, timeout_ns, &lease);
        if (status == MMPOOL_ERR_TIMEOUT) return std::nullopt;
        if (status != MMPOOL_OK) {
            Error error(status, mmpool_last_error());
            cancel();  // the ticket has left the line
            throw error;
        }
        Lease granted(pool_, lease);
        mmpool_unref(std::exchange(pool_, nullptr));
        ticket_ = {};
        return granted;
    }

    mmpool *pool_ = nullptr;
    mmpool_ticket ticket_ = {};
};

/// A reference to a pool. Copying adds a reference (mmpool_ref), destruction
/// drops one (mmpool_unref); a moved-from Pool is empty and may only be
/// assigned to or destroyed.
class Pool {
public:
    /// A new pool of `total_bytes` (1 to 2^60). Throws Error (INVALID_ARGUMENT).
    explicit Pool(std::uint64_t total_bytes) { detail::check(mmpool_init(total_bytes, &pool_)); }

    /// Takes over one reference the caller holds (from mmpool_init, mmpool_global...).
    static Pool adopt(mmpool *pool) noexcept { return Pool(pool, Adopt{}); }

    /// Adds a reference to a pool the caller keeps using through C.
    static Pool share(mmpool *pool) noexcept {
        mmpool_ref(pool);
        return Pool(pool, Adopt{});
    }

    /// The process's global pool, or empty when gating is disabled.
    static std::optional<Pool> global() {
        mmpool *pool = mmpool_global();
        if (pool == nullptr) return std::nullopt;
        return Pool(pool, Adopt{});
    }

    /// Installs `pool` as the global pool.
    static void set_global(const Pool &pool) { detail::check(mmpool_set_global(pool.pool_)); }

    /// Empties the global slot: gating disabled.
    static void disable_global() { detail::check(mmpool_set_global(nullptr)); }

    /// Creates and installs the global pool: this process's share of
    /// `budget_gib` GiB split over `api_process_count` processes. Empty (and
    /// gating disabled) for a budget <= 0. Throws Error (INVALID_ARGUMENT).
    static std::optional<Pool> init_global(double budget_gib, std::uint32_t api_process_count) {
        mmpool *pool = nullptr;
        detail::check(mmpool_init_global(budget_gib, api_process_count, &pool));
        if (pool == nullptr) return std::nullopt;
        return Pool(pool, Adopt{});
    }

    Pool(const Pool &other) noexcept : pool_(other.pool_) { mmpool_ref(pool_); }
    Pool(Pool &&other) noexcept : pool_(std::exchange(other.pool_, nullptr)) {}

    Pool &operator=(const Pool &other) noexcept {
        mmpool_ref(other.pool_);  // first: `other` may be `*this`
        mmpool_unref(pool_);
        pool_ = other.pool_;
        return *this;
    }

    Pool &operator=(Pool &&other) noexcept {
        if (this != &other) {
            mmpool_unref(pool_);
            pool_ = std::exchange(other.pool_, nullptr);
        }
        return *this;
    }

    ~Pool() { mmpool_unref(pool_); }

    /// Waits in line, without limit, for `nbytes`. Throws Error
    /// (EXCEEDS_CAPACITY, CLOSED).
    Lease acquire(std::uint64_t nbytes) {
        mmpool_lease lease{};
        detail::check(mmpool_acquire(pool_, nbytes, &lease));
        return Lease(pool_, lease);
    }

    /// Waits in line at most `timeout`; empty when it ran out (nothing
    /// reserved). Throws Error (EXCEEDS_CAPACITY, CLOSED).
    template <class Rep, class Period>
    std::optional<Lease> acquire_for(std::uint64_t nbytes, std::chrono::duration<Rep, Period> timeout) {
        mmpool_lease lease{};
        const mmpool_status status =
            mmpool_acquire_timeout(pool_, nbytes, detail::timeout_ns(timeout), &lease);
        if (status == MMPOOL_ERR_TIMEOUT) return std::nullopt;
        detail::check(status);
        return Lease(pool_, lease);
    }

    /// Grants `nbytes` only if possible now without jumping the line; empty
    /// otherwise. Throws Error (EXCEEDS_CAPACITY, CLOSED).
    std::optional<Lease> try_acquire(std::uint64_t nbytes) {
        mmpool_lease lease{};
        const mmpool_status status = mmpool_try_acquire(pool_, nbytes, &lease);
        if (status == MMPOOL_ERR_WOULD_BLOCK) return std::nullopt;
        detail::check(status);
        return Lease(pool_, lease);
    }

    /// Joins the line for `nbytes` now; collect the grant with Ticket::wait_for.
    /// Throws Error (EXCEEDS_CAPACITY, CLOSED).
    Ticket enqueue(std::uint64_t nbytes) {
        mmpool_ticket ticket{};
        detail::check(mmpool_enqueue(pool_, nbytes, &ticket));
        return Ticket(pool_, ticket);
    }

    /// Changes the total (1 to 2^60); see mmpool_set_total.
    void set_total(std::uint64_t new_total) { detail::check(mmpool_set_total(pool_, new_total)); }

    /// Wakes every waiter with CLOSED; later acquires throw it.
    void close() { detail::check(mmpool_close(pool_)); }

    std::uint64_t total_bytes() const noexcept { return mmpool_total_bytes(pool_); }
    std::uint64_t available_bytes() const noexcept { return mmpool_available_bytes(pool_); }

    mmpool_stats stats() const {
        mmpool_stats stats{};
        stats.size = sizeof stats;
        detail::check(mmpool_get_stats(pool_, &stats));
        return stats;
    }

    /// The C handle, still owned by this object.
    mmpool *get() const noexcept { return pool_; }

private:
    struct Adopt {};
    Pool(mmpool *adopted, Adopt) noexcept : pool_(adopted) {}

    mmpool *pool_ = nullptr;
};

}  // namespace mmpool_cpp

#endif  // MMPOOL_HPP
