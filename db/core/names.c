/*
 * names.c - the names of statuses and metrics, for messages and for the
 * API (qv_strerror, qv_status_name, qv_metric_name, qv_metric_parse):
 * below both the front door and the engine, which name metrics in their
 * messages.
 */
#include <string.h>

#include "db/core/handle.h"

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
    [QV_ERR_LIMIT] = "a limit of the database was reached",
    [QV_ERR_IN_USE] = "database in use by another process",
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
    [QV_ERR_LIMIT] = "LIMIT",
    [QV_ERR_IN_USE] = "IN_USE",
};

_Static_assert(sizeof status_text / sizeof status_text[0] == QV_STATUS_LAST + 1,
               "every status has its sentence");
_Static_assert(sizeof status_names / sizeof status_names[0] == QV_STATUS_LAST + 1,
               "every status has its name");

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

static const char *const metric_names[] = {
    [QV_METRIC_L2] = "l2", [QV_METRIC_IP] = "ip", [QV_METRIC_COSINE] = "cosine"
};

const char *qv_metric_name(qv_metric metric)
{
    if ((unsigned)metric >= sizeof metric_names / sizeof metric_names[0])
        return NULL;
    return metric_names[metric];
}

qv_status qv_metric_parse(const char *name, qv_metric *out)
{
    if (!out)
        return QV_ERR_INVALID;
    for (unsigned m = 0; name && m < sizeof metric_names / sizeof *metric_names;
         m++) {
        if (strcmp(name, metric_names[m]) == 0) {
            *out = (qv_metric)m;
            return QV_OK;
        }
    }
    return QV_ERR_INVALID;
}
