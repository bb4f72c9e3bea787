#include "db/core/error.h"

#include <stdarg.h>
#include <stdio.h>

#include "common/utf8.h"

static _Thread_local const void *msg_owner;
static _Thread_local char msg_text[QV_ERRMSG_MAX];

qv_status qv_fail(const void *owner, qv_status status, const char *fmt, ...)
{
    /* Messages quote what callers and clients sent (ids, names, filters):
     * escaped, so a message is printable UTF-8 whatever those held. */
    char raw[QV_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    utf8_printable(raw, msg_text, sizeof msg_text);
    msg_owner = owner;
    return status;
}

void qv_error_clear(const void *owner)
{
    (void)owner;
    msg_owner = NULL;
    msg_text[0] = '\0';
}

const char *qv_error_message(const void *owner)
{
    return msg_owner == owner ? msg_text : "";
}

static const char *const status_text[] = {
    [QV_OK] = "success",
    [QV_ERR_INVALID] = "invalid argument",
    [QV_ERR_DIMENSION] = "vector dimension does not match the collection",
    [QV_ERR_NOT_FOUND] = "not found",
    [QV_ERR_EXISTS] = "already exists",
    [QV_ERR_NOMEM] = "out of memory",
    [QV_ERR_IO] = "input/output error",
    [QV_ERR_FULL] = "disk full",
    [QV_ERR_CORRUPT] = "database is corrupt",
    [QV_ERR_READONLY] = "database is open read-only",
    [QV_ERR_UNSUPPORTED] = "not supported",
    [QV_ERR_INTERNAL] = "internal error",
    [QV_ERR_CONNECTION] = "connection failed or broke",
    [QV_ERR_TIMEOUT] = "timed out",
    [QV_ERR_PROTOCOL] = "protocol error",
    [QV_ERR_UNAUTHENTICATED] = "not authenticated",
    [QV_ERR_BUSY] = "server busy",
};

static const char *const status_names[] = {
    [QV_OK] = "OK",
    [QV_ERR_INVALID] = "INVALID",
    [QV_ERR_DIMENSION] = "DIMENSION",
    [QV_ERR_NOT_FOUND] = "NOT_FOUND",
    [QV_ERR_EXISTS] = "EXISTS",
    [QV_ERR_NOMEM] = "NOMEM",
    [QV_ERR_IO] = "IO",
    [QV_ERR_FULL] = "FULL",
    [QV_ERR_CORRUPT] = "CORRUPT",
    [QV_ERR_READONLY] = "READONLY",
    [QV_ERR_UNSUPPORTED] = "UNSUPPORTED",
    [QV_ERR_INTERNAL] = "INTERNAL",
    [QV_ERR_CONNECTION] = "CONNECTION",
    [QV_ERR_TIMEOUT] = "TIMEOUT",
    [QV_ERR_PROTOCOL] = "PROTOCOL",
    [QV_ERR_UNAUTHENTICATED] = "UNAUTHENTICATED",
    [QV_ERR_BUSY] = "BUSY",
};

const char *qv_strerror(qv_status status)
{
    if ((unsigned)status >= sizeof status_text / sizeof status_text[0])
        return "unknown status";
    return status_text[status];
}

const char *qv_status_name(qv_status status)
{
    if ((unsigned)status >= sizeof status_names / sizeof status_names[0])
        return "UNKNOWN";
    return status_names[status];
}
