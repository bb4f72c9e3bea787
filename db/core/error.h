/*
 * error.h - the per-thread, per-handle error message behind qv_errmsg().
 *
 * A message belongs to the handle (any pointer) whose call failed, in the
 * thread that made the call; the next call on that handle clears it.
 */
#ifndef QV_DB_CORE_ERROR_H
#define QV_DB_CORE_ERROR_H

#include "db/quiver.h"

#define QV_ERRMSG_MAX 512

/* Record a message for owner and return status, for `return qv_fail(..)`. */
qv_status qv_fail(const void *owner, qv_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Forget the calling thread's message; done at the start of every call. */
void qv_error_clear(const void *owner);

/* The calling thread's message for owner, or "". */
const char *qv_error_message(const void *owner);

#endif
