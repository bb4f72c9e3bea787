/*
 * check.h - QV_ASSERT, for the library's internal invariants: a graph's
 * list within its degree and its ids within the graph, a reference count
 * that never goes below zero. Not for input (that gets a status).
 *
 * Active where QV_CHECKS is defined (the sanitizer, fuzz and test builds):
 * a failure prints the condition, file, line and function, then aborts.
 * Compiled out of the release build, where the conditions sit on hot
 * paths (the graph walk) and are proved by the tests.
 */
#ifndef QV_COMMON_CHECK_H
#define QV_COMMON_CHECK_H

#ifdef QV_CHECKS
#define QV_ASSERT(cond)                                                   \
    ((cond) ? (void)0                                                     \
            : qv_assert_failed(#cond, __FILE__, __LINE__, __func__))
#else
#define QV_ASSERT(cond) ((void)0)
#endif

void qv_assert_failed(const char *cond, const char *file, int line,
                      const char *func) __attribute__((noreturn, cold));

#endif
