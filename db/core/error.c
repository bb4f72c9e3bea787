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
