/*
 * Placed pools: aligned disjoint offsets, FIFO with fragmentation (a large
 * request at the head is not passed by a small one), exact figures in
 * mmpool_stats, resize in place, split and merge of ranges, the offset in
 * a hand-off's token, and the misuses of mmpool_lease_offset.
 */
#include <stddef.h>
#include <unistd.h>

#include "check.h"

static uint64_t offset_of(mmpool *pool, mmpool_lease lease) {
    uint64_t off = 0xdead;
    CHECK_OK(mmpool_lease_offset(pool, lease, &off));
    return off;
}

static void offsets_are_aligned_and_disjoint(void) {
    mmpool *pool = NULL;
    CHECK_STATUS(mmpool_init_placed(4096, 0, &pool), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_init_placed(4096, 3, &pool), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_init_placed");
    CHECK_STATUS(mmpool_init_placed(4096, 256, NULL), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_OK(mmpool_init_placed(4096, MMPOOL_DEFAULT_ALIGNMENT, &pool));
    CHECK_U64(mmpool_alignment(pool), 256);
    mmpool_lease a, b, c;
    CHECK_OK(mmpool_acquire(pool, 100, &a));
    CHECK_OK(mmpool_try_acquire(pool, 300, &b));
    CHECK_OK(mmpool_acquire_timeout(pool, 256, 0, &c));
    CHECK_U64(offset_of(pool, a), 0);
    CHECK_U64(offset_of(pool, b), 256);
    CHECK_U64(offset_of(pool, c), 768);
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.size, sizeof s);
    CHECK_U64(s.available_bytes, 4096 - 656);
    CHECK_U64(s.free_ranges, 3);
    CHECK_U64(s.largest_free_range, 4096 - 1024);
    CHECK_STATUS(mmpool_try_acquire(pool, 4097, &a), MMPOOL_ERR_EXCEEDS_CAPACITY);
    CHECK_STATUS(mmpool_set_total(pool, 8192), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_OK(mmpool_release(pool, b));
    uint64_t off = 7;
    CHECK_STATUS(mmpool_lease_offset(pool, b, &off), MMPOOL_ERR_INVALID_LEASE);
    CHECK_U64(off, 7);
    CHECK_STATUS(mmpool_lease_offset(pool, a, NULL), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(mmpool_lease_offset(NULL, a, &off), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_OK(mmpool_release(pool, a));
    CHECK_OK(mmpool_release(pool, c));
    s = get_stats(pool);
    CHECK_U64(s.free_ranges, 1);
    CHECK_U64(s.largest_free_range, 4096);
    mmpool_unref(pool);

    /* Not placed: no offsets; one free range of the available bytes. */
    CHECK_OK(mmpool_init(1000, &pool));
    CHECK_U64(mmpool_alignment(pool), 0);
    CHECK_OK(mmpool_acquire(pool, 10, &a));
    CHECK_STATUS(mmpool_lease_offset(pool, a, &off), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_lease_offset");
    s = get_stats(pool);
    CHECK_U64(s.largest_free_range, 990);
    CHECK_U64(s.free_ranges, 1);
    /* A caller built against the older, shorter struct gets only its fields. */
    mmpool_stats old;
    memset(&old, 0xab, sizeof old);
    old.size = offsetof(mmpool_stats, largest_free_range);
    CHECK_OK(mmpool_get_stats(pool, &old));
    CHECK_U64(old.size, offsetof(mmpool_stats, largest_free_range));
    CHECK_U64(old.largest_free_range, 0xababababababababULL);
    CHECK_OK(mmpool_release(pool, a));
    mmpool_unref(pool);
}

static void a_large_head_is_not_passed(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init_placed(1024, 256, &pool));
    mmpool_lease l[4];
    for (int i = 0; i < 4; i++) CHECK_OK(mmpool_try_acquire(pool, 256, &l[i]));
    CHECK_OK(mmpool_release(pool, l[0]));
    CHECK_OK(mmpool_release(pool, l[2]));
    /* 512 bytes free in two ranges of 256: 512 does not fit. */
    mmpool_lease got;
    CHECK_STATUS(mmpool_try_acquire(pool, 512, &got), MMPOOL_ERR_WOULD_BLOCK);
    mmpool_ticket big, small;
    CHECK_OK(mmpool_enqueue(pool, 512, &big));
    CHECK_STATUS(mmpool_ticket_wait(pool, big, 0, &got), MMPOOL_ERR_TIMEOUT);
    CHECK_STATUS(mmpool_try_acquire(pool, 1, &got), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_OK(mmpool_enqueue(pool, 100, &small));
    CHECK_STATUS(mmpool_ticket_wait(pool, small, 0, &got), MMPOOL_ERR_TIMEOUT);
    CHECK_OK(mmpool_release(pool, l[1]));
    mmpool_lease g_big, g_small;
    CHECK_OK(mmpool_ticket_wait(pool, big, 0, &g_big));
    CHECK_OK(mmpool_ticket_wait(pool, small, 0, &g_small));
    CHECK_U64(offset_of(pool, g_big), 0);
    CHECK_U64(offset_of(pool, g_small), 512);
    CHECK_OK(mmpool_release(pool, g_big));
    CHECK_OK(mmpool_release(pool, g_small));
    CHECK_OK(mmpool_release(pool, l[3]));
    CHECK_U64(mmpool_available_bytes(pool), 1024);
    mmpool_unref(pool);
}

static void resize_split_merge_and_hand_off_keep_ranges(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init_placed(8192, 256, &pool));
    mmpool_lease a, b, tail;
    CHECK_OK(mmpool_acquire(pool, 1000, &a));
    CHECK_OK(mmpool_acquire(pool, 1000, &b));
    CHECK_U64(offset_of(pool, b), 1024);
    /* Grows in place up to b, not past it. */
    CHECK_OK(mmpool_lease_resize(pool, &a, 1024, 0));
    CHECK_U64(a.nbytes, 1024);
    CHECK_STATUS(mmpool_lease_resize(pool, &a, 1025, MMPOOL_WAIT_FOREVER), MMPOOL_ERR_WOULD_BLOCK);
    CHECK_U64(a.nbytes, 1024);
    CHECK_OK(mmpool_lease_resize(pool, &a, 512, 0));
    CHECK_U64(get_stats(pool).available_bytes, 8192 - 1512);
    CHECK_OK(mmpool_lease_split(pool, &a, 200, &tail));
    CHECK_U64(offset_of(pool, tail), 312);
    CHECK_STATUS(mmpool_lease_merge(pool, &tail, a), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_lease_merge(pool, &a, b), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_OK(mmpool_lease_merge(pool, &a, tail));
    CHECK_U64(a.nbytes, 512);
    mmpool_handoff_token token;
    CHECK_OK(mmpool_lease_share(pool, b, 1, MMPOOL_NO_CLAIM_DEADLINE, 0, &token));
    CHECK_U64(token.flags, MMPOOL_TOKEN_PLACED);
    CHECK_U64(token.offset, 1024);
    CHECK_U64(get_stats(pool).free_ranges, 2);
    CHECK_OK(mmpool_handoff_complete(pool, token, 0));
    mmpool_stats s = get_stats(pool);
    CHECK_U64(s.free_ranges, 1);
    CHECK_U64(s.available_bytes, 8192 - 512);
    CHECK_OK(mmpool_release(pool, a));
    CHECK_U64(get_stats(pool).largest_free_range, 8192);
    mmpool_unref(pool);
}

static void a_shared_placed_pool_keeps_its_ranges_in_the_segment(void) {
    char name[64];
    snprintf(name, sizeof name, "ctest-placed-%d", (int)getpid());
    (void)mmpool_unlink_shared(name);
    mmpool_shared_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.total_bytes = 4096;
    o.flags = MMPOOL_SHARED_CREATE;
    o.alignment = 3;
    mmpool *pool = NULL, *other = NULL;
    CHECK_STATUS(mmpool_open_shared_with(name, &o, &pool), MMPOOL_ERR_INVALID_ARGUMENT);
    o.alignment = 256;
    CHECK_OK(mmpool_open_shared_with(name, &o, &pool));
    CHECK_U64(mmpool_alignment(pool), 256);
    /* An older caller's struct, without `alignment`: either kind attaches. */
    o.size = offsetof(mmpool_shared_options, alignment);
    o.total_bytes = 0;
    CHECK_OK(mmpool_open_shared_with(name, &o, &other));
    CHECK_U64(mmpool_alignment(other), 256);
    mmpool_lease a, b;
    CHECK_OK(mmpool_acquire(pool, 100, &a));
    CHECK_OK(mmpool_acquire(other, 100, &b));
    CHECK_U64(offset_of(pool, a), 0);
    CHECK_U64(offset_of(pool, b), 256);
    mmpool_stats s = get_stats(other);
    CHECK_U64(s.free_ranges, 2);
    CHECK_U64(s.largest_free_range, 4096 - 512);
    mmpool_handoff_token token;
    CHECK_OK(mmpool_lease_share(pool, a, 1, MMPOOL_NO_CLAIM_DEADLINE, 0, &token));
    CHECK_U64(token.flags, MMPOOL_TOKEN_PLACED);
    CHECK_U64(token.offset, 0);
    CHECK_OK(mmpool_handoff_complete(other, token, 0));
    CHECK_OK(mmpool_release(other, b));
    CHECK_U64(get_stats(pool).largest_free_range, 4096);
    mmpool_unref(other);
    mmpool_unref(pool);
    CHECK_OK(mmpool_unlink_shared(name));
}

int main(void) {
    offsets_are_aligned_and_disjoint();
    a_large_head_is_not_passed();
    resize_split_merge_and_hand_off_keep_ranges();
    a_shared_placed_pool_keeps_its_ranges_in_the_segment();
    puts("test_placed: ok");
    return 0;
}
