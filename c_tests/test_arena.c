/*
 * Device arenas from C over the stand-in CUDA runtime (tests/fake_cudart,
 * linked into this program and named by MMPOOL_CUDART, so that mmpool loads
 * the same copy): one cudaMalloc for the arena, gated allocations and the
 * nvJPEG-style callbacks drawn from it with no cudaMalloc/cudaFree, lease and
 * token pointers at their offsets, export, and the misuses.
 */
#include <stddef.h>

#include "check.h"

/* The stand-in's counters. */
unsigned long fake_cudart_malloc_calls(void);
unsigned long fake_cudart_free_calls(void);

static void gated_allocations_draw_from_the_arena(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init_placed(1 << 16, MMPOOL_DEFAULT_ALIGNMENT, &pool));
    unsigned long mallocs = fake_cudart_malloc_calls(), frees = fake_cudart_free_calls();
    mmpool_cuda_arena *arena = NULL;
    CHECK_OK(mmpool_cuda_arena_new(pool, MMPOOL_CUDA_ARENA_DEVICE, 0, &arena));
    CHECK_U64(fake_cudart_malloc_calls(), mallocs + 1);
    void *base = NULL;
    uint64_t nbytes = 0;
    CHECK_OK(mmpool_cuda_arena_range(arena, &base, &nbytes));
    CHECK_U64(nbytes, 1 << 16);
    CHECK(base != NULL);

    enum { N = 5 };
    const size_t sizes[N] = {100, 4096, 1, 3000, 700};
    unsigned char *p[N];
    for (int i = 0; i < N; i++) {
        void *d = NULL;
        if (i == 3)
            CHECK(mmpool_cuda_dev_malloc(pool, &d, sizes[i], NULL) == 0);
        else
            CHECK_OK(mmpool_cuda_malloc(pool, &d, sizes[i], MMPOOL_WAIT_FOREVER));
        p[i] = d;
        CHECK(p[i] >= (unsigned char *)base && p[i] + sizes[i] <= (unsigned char *)base + nbytes);
        CHECK_U64((uint64_t)(p[i] - (unsigned char *)base) % MMPOOL_DEFAULT_ALIGNMENT, 0);
        memset(p[i], i + 1, sizes[i]); /* host memory behind the stand-in */
    }
    for (int i = 0; i < N; i++)
        for (size_t j = 0; j < sizes[i]; j++) CHECK(p[i][j] == (unsigned char)(i + 1));
    CHECK_U64(get_stats(pool).in_use_bytes, 100 + 4096 + 1 + 3000 + 700);
    CHECK_U64(fake_cudart_malloc_calls(), mallocs + 1);
    CHECK(mmpool_cuda_dev_free(pool, p[3], sizes[3], NULL) == 0);
    for (int i = 0; i < N; i++)
        if (i != 3) CHECK_OK(mmpool_cuda_free(pool, p[i]));
    CHECK_STATUS(mmpool_cuda_free(pool, p[0]), MMPOOL_ERR_INVALID_LEASE);
    CHECK_U64(fake_cudart_free_calls(), frees);
    CHECK_U64(get_stats(pool).available_bytes, 1 << 16);

    CHECK_OK(mmpool_cuda_arena_free(arena));
    CHECK_U64(fake_cudart_free_calls(), frees + 1);
    mmpool_unref(pool);
}

static void leases_and_tokens_become_pointers(void) {
    mmpool *pool = NULL;
    CHECK_OK(mmpool_init_placed(1 << 16, MMPOOL_DEFAULT_ALIGNMENT, &pool));
    mmpool_cuda_arena *arena = NULL;
    CHECK_OK(mmpool_cuda_arena_new(pool, MMPOOL_CUDA_ARENA_DEVICE, 0, &arena));
    void *base = NULL;
    CHECK_OK(mmpool_cuda_arena_range(arena, &base, NULL));
    mmpool_lease pad, lease;
    CHECK_OK(mmpool_acquire(pool, 3000, &pad));
    CHECK_OK(mmpool_acquire(pool, 1000, &lease));
    uint64_t offset = 0;
    CHECK_OK(mmpool_lease_offset(pool, lease, &offset));
    void *ptr = NULL, *from_token = NULL;
    CHECK_OK(mmpool_cuda_arena_pointer(arena, lease, &ptr));
    CHECK(ptr == (unsigned char *)base + offset);
    mmpool_handoff_token token;
    CHECK_OK(mmpool_lease_share(pool, lease, 1, MMPOOL_NO_CLAIM_DEADLINE, 0, &token));
    CHECK_OK(mmpool_cuda_arena_token_pointer(arena, token, &from_token));
    CHECK(from_token == ptr);
    mmpool_handoff_token altered = token;
    altered.offset += MMPOOL_DEFAULT_ALIGNMENT;
    CHECK_STATUS(mmpool_cuda_arena_token_pointer(arena, altered, &from_token), MMPOOL_ERR_INVALID_LEASE);
    CHECK_LAST_ERROR_NAMES("mmpool_cuda_arena_token_pointer");
    CHECK_OK(mmpool_handoff_complete(pool, token, 0));
    CHECK_STATUS(mmpool_cuda_arena_token_pointer(arena, token, &from_token), MMPOOL_ERR_INVALID_LEASE);

    mmpool_cuda_exported_arena exported, again;
    CHECK_OK(mmpool_cuda_arena_export(arena, &exported));
    CHECK_OK(mmpool_cuda_arena_export(arena, &again));
    CHECK(memcmp(&exported, &again, sizeof exported) == 0);
    CHECK_U64(sizeof exported, 80);
    CHECK_U64(exported.magic, MMPOOL_CUDA_ARENA_MAGIC);
    CHECK_U64(exported.nbytes, 1 << 16);
    mmpool_cuda_arena *opened = NULL;
    CHECK_STATUS(mmpool_cuda_arena_open(pool, &exported, &opened), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK(opened == NULL);
    CHECK_OK(mmpool_release(pool, pad));
    CHECK_OK(mmpool_cuda_arena_free(arena));
    mmpool_unref(pool);
}

static void misuse_gives_status_codes(void) {
    mmpool *plain = NULL, *pool = NULL;
    CHECK_OK(mmpool_init(4096, &plain));
    CHECK_OK(mmpool_init_placed(4096, MMPOOL_DEFAULT_ALIGNMENT, &pool));
    mmpool_cuda_arena *arena = NULL;
    CHECK_STATUS(mmpool_cuda_arena_new(plain, MMPOOL_CUDA_ARENA_DEVICE, 0, &arena), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_NAMES("mmpool_cuda_arena_new");
    CHECK_STATUS(mmpool_cuda_arena_new(NULL, MMPOOL_CUDA_ARENA_DEVICE, 0, &arena), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(mmpool_cuda_arena_new(pool, 9, 0, &arena), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_cuda_arena_new(pool, MMPOOL_CUDA_ARENA_DEVICE, -1, &arena), MMPOOL_ERR_CUDA);
    CHECK_STATUS(mmpool_cuda_arena_new(pool, MMPOOL_CUDA_ARENA_DEVICE, 0, NULL), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK(arena == NULL);
    CHECK_OK(mmpool_cuda_arena_new(pool, MMPOOL_CUDA_ARENA_PINNED_HOST, 0, &arena));
    mmpool_cuda_exported_arena exported;
    CHECK_STATUS(mmpool_cuda_arena_export(arena, &exported), MMPOOL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mmpool_cuda_arena_export(arena, NULL), MMPOOL_ERR_NULL_ARGUMENT);
    mmpool_lease none = {0, 0};
    void *ptr = NULL;
    CHECK_STATUS(mmpool_cuda_arena_pointer(arena, none, &ptr), MMPOOL_ERR_INVALID_LEASE);
    CHECK_STATUS(mmpool_cuda_arena_pointer(NULL, none, &ptr), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(mmpool_cuda_arena_range(NULL, NULL, NULL), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_STATUS(mmpool_cuda_arena_open(pool, NULL, &arena), MMPOOL_ERR_NULL_ARGUMENT);
    CHECK_OK(mmpool_cuda_arena_free(arena));
    CHECK_OK(mmpool_cuda_arena_free(NULL));
    CHECK_U64(get_stats(pool).available_bytes, 4096);
    mmpool_unref(plain);
    mmpool_unref(pool);
}

int main(void) {
    gated_allocations_draw_from_the_arena();
    leases_and_tokens_become_pointers();
    misuse_gives_status_codes();
    puts("test_arena: ok");
    return 0;
}
