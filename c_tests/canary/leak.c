/*
 * Canary for the leak checkers (valgrind memcheck, LeakSanitizer): loses a
 * heap block and a pool reference on purpose. Built exactly like the unit
 * tests; the test script fails unless the checker reports a definite leak.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mmpool.h"

static void *lost;

int main(void) {
    mmpool *pool = NULL;
    if (mmpool_init(64, &pool) != MMPOOL_OK) return 2;
    lost = malloc(4096);
    if (lost == NULL) return 2;
    lost = NULL; /* the only pointer to the block is gone */
    pool = NULL; /* and so is the only reference to the pool */
    puts("leaked a 4096-byte block and a pool");
    return 0;
}
