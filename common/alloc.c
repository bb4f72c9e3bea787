#include "common/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Countdown to the injected failure; 0 means no injection. */
static atomic_ulong fail_countdown;
static atomic_int fail_persistent;

void qv_alloc_fail_at(unsigned long n, int persistent)
{
    atomic_store(&fail_persistent, persistent);
    atomic_store(&fail_countdown, n);
}

static atomic_ulong calls;

unsigned long qv_alloc_calls(void)
{
    return atomic_load(&calls);
}

/* True when the allocation being made now must fail. */
static int injected_failure(void)
{
    atomic_fetch_add(&calls, 1);
    unsigned long left = atomic_load(&fail_countdown);
    if (left == 0)
        return 0;
    if (left == 1) {
        if (!atomic_load(&fail_persistent))
            atomic_store(&fail_countdown, 0);
        return 1;
    }
    atomic_fetch_sub(&fail_countdown, 1);
    return 0;
}

int qv_alloc_injected(void)
{
    return injected_failure();
}

void *qv_malloc(size_t size)
{
    if (injected_failure())
        return NULL;
    return malloc(size ? size : 1);
}

void *qv_calloc(size_t count, size_t size)
{
    if (injected_failure())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *qv_realloc(void *ptr, size_t size)
{
    if (injected_failure())
        return NULL;
    return realloc(ptr, size ? size : 1);
}

char *qv_strndup(const char *s, size_t n)
{
    char *copy = qv_malloc(n + 1);
    if (copy) {
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    return copy;
}

void qv_mem_free(void *ptr)
{
    free(ptr);
}
