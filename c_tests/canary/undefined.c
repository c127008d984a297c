/*
 * Canary for the UndefinedBehaviorSanitizer build: a signed overflow.
 * Built exactly like the unit tests; the test passes only when UBSan reports
 * it, so a build that silently lost its instrumentation fails.
 */
#include <limits.h>
#include <stdio.h>

#include "mmpool.h"

int main(void) {
    volatile int big = INT_MAX;
    /* mmpool_version() is never NULL, so this adds 1 at run time. */
    int one = mmpool_version() != NULL;
    int sum = big + one; /* INT_MAX + 1: must be reported */
    printf("signed overflow went unnoticed: %d\n", sum);
    return 0;
}
