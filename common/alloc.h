/*
 * alloc.h - the one allocator of the library.
 *
 * Every allocation goes through these wrappers so that tests can make the
 * N-th one fail (qv_alloc_fail_at) and check that each caller turns it into
 * QV_ERR_NOMEM without leaking.
 */
#ifndef QV_COMMON_ALLOC_H
#define QV_COMMON_ALLOC_H

#include <stddef.h>

void *qv_malloc(size_t size);
void *qv_calloc(size_t count, size_t size);
void *qv_realloc(void *ptr, size_t size);
char *qv_strndup(const char *s, size_t n);
/* Free memory from the wrappers above. NULL is a no-op. */
void qv_mem_free(void *ptr);

/*
 * Fault injection for tests: from the n-th allocation counted from now
 * (1 = the next one) every allocation fails if persistent is non-zero,
 * else only that one. n = 0 turns injection off.
 */
void qv_alloc_fail_at(unsigned long n, int persistent);

/* Allocations made through the wrappers since the process started. */
unsigned long qv_alloc_calls(void);

/*
 * For an allocator of a library's own (jansson's, common/json.c): counts
 * one allocation like the wrappers do and says whether injection fails it
 * (1) or not (0).
 */
int qv_alloc_injected(void);

#endif
