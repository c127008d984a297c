/*
 * Canary for the AddressSanitizer build: writes one byte past a heap block.
 * Built exactly like the unit tests; the test passes only when ASan reports
 * the overflow, so a build that silently lost its instrumentation fails.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mmpool.h"

int main(void) {
    mmpool *pool = NULL;
    if (mmpool_init(64, &pool) != MMPOOL_OK) return 2;
    volatile size_t n = 16;
    char *block = malloc(n);
    if (block == NULL) return 2;
    block[n] = 'x'; /* one past the end: must be reported */
    printf("heap overflow went unnoticed: %c\n", block[n]);
    free(block);
    mmpool_unref(pool);
    return 0;
}
