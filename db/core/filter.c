/*
 * filter.c - parse, check and evaluate payload filters.
 *
 * The filter stays the JSON tree jansson parsed: checking walks it once
 * and names the first malformed part; matching walks it per payload.
 * Semantics: a missing field matches nothing but $ne, $nin and
 * $exists:false; comparisons only hold between two numbers or two
 * strings; equality compares JSON values exactly (1 and 1.0 are equal).
 */
#include "db/core/filter.h"

#include <errno.h>
#include <string.h>

#include "db/core/error.h"
#include "common/json.h"

#define MAX_DEPTH 32

static const char *const value_ops[] = {"$eq", "$ne", "$gt", "$gte", "$lt",
                                        "$lte", "$in", "$nin", "$exists",
                                        NULL};

static int known_value_op(const char *op)
{
    for (int i = 0; value_ops[i]; i++) {
        if (strcmp(op, value_ops[i]) == 0)
            return 1;
    }
    return 0;
}

static int scalar(const json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v) ||
           json_is_null(v);
}

/* Check {"$op": operand, ...} for field. */
static qv_status check_ops(const qv_db *db, const char *field,
                           const json_t *ops)
{
    const char *op;
    json_t *arg;
    if (json_object_size(ops) == 0)
        return qv_fail(db, QV_ERR_INVALID, "filter: '%s' has an empty "
                       "operator object", field);
    json_object_foreach((json_t *)ops, op, arg) {
        if (!known_value_op(op))
            return qv_fail(db, QV_ERR_INVALID, "filter: unknown operator "
                           "'%s' at '%s'", op, field);
        if ((!strcmp(op, "$in") || !strcmp(op, "$nin"))) {
            size_t i;
            json_t *x;
            if (!json_is_array(arg))
                return qv_fail(db, QV_ERR_INVALID, "filter: %s at '%s' needs "
                               "an array", op, field);
            json_array_foreach(arg, i, x) {
                if (!scalar(x))
                    return qv_fail(db, QV_ERR_INVALID, "filter: %s at '%s' "
                                   "holds a non-scalar at %zu", op, field, i);
            }
        } else if (!strcmp(op, "$exists")) {
            if (!json_is_boolean(arg))
                return qv_fail(db, QV_ERR_INVALID, "filter: $exists at '%s' "
                               "needs true or false", field);
        } else if (op[1] == 'g' || op[1] == 'l') {
            if (!json_is_number(arg) && !json_is_string(arg))
                return qv_fail(db, QV_ERR_INVALID, "filter: %s at '%s' needs "
                               "a number or a string", op, field);
        } else if (!scalar(arg)) {
            return qv_fail(db, QV_ERR_INVALID, "filter: %s at '%s' needs a "
                           "string, number, boolean or null", op, field);
        }
    }
    return QV_OK;
}

static qv_status check_node(const qv_db *db, const json_t *node, int depth);

static qv_status check_list(const qv_db *db, const char *op,
                            const json_t *list, int depth)
{
    size_t i;
    json_t *x;
    if (!json_is_array(list) || json_array_size(list) == 0)
        return qv_fail(db, QV_ERR_INVALID, "filter: %s needs a non-empty "
                       "array of filters", op);
    json_array_foreach(list, i, x) {
        qv_status st = check_node(db, x, depth + 1);
        if (st != QV_OK)
            return st;
    }
    return QV_OK;
}

static qv_status check_node(const qv_db *db, const json_t *node, int depth)
{
    const char *key;
    json_t *v;
    if (depth > MAX_DEPTH)
        return qv_fail(db, QV_ERR_INVALID, "filter: nested deeper than %d",
                       MAX_DEPTH);
    if (!json_is_object(node))
        return qv_fail(db, QV_ERR_INVALID, "filter: expected an object, "
                       "found %s", json_is_array(node) ? "an array"
                                                       : "a plain value");
    json_object_foreach((json_t *)node, key, v) {
        qv_status st = QV_OK;
        if (!strcmp(key, "$and") || !strcmp(key, "$or"))
            st = check_list(db, key, v, depth);
        else if (!strcmp(key, "$not"))
            st = check_node(db, v, depth + 1);
        else if (key[0] == '$')
            st = qv_fail(db, QV_ERR_INVALID, "filter: unknown operator '%s' "
                         "(use $and, $or, $not, or a field name)", key);
        else if (!*key)
            st = qv_fail(db, QV_ERR_INVALID, "filter: empty field name");
        else if (json_is_object(v))
            st = check_ops(db, key, v);
        else if (!scalar(v))
            st = qv_fail(db, QV_ERR_INVALID, "filter: '%s' must be compared "
                         "with a scalar or an operator object", key);
        if (st != QV_OK)
            return st;
    }
    return QV_OK;
}

qv_status filter_parse(const qv_db *db, const char *text, json_t **out)
{
    json_error_t err;
    size_t len = strlen(text);
    if (len > QV_FILTER_MAX)
        return qv_fail(db, QV_ERR_INVALID, "filter is %zu bytes; the limit "
                       "is %u", len, QV_FILTER_MAX);
    json_t *f;
    int rc = qv_json_load(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                          &err, &f);
    if (rc == ENOMEM)
        return qv_fail(db, QV_ERR_NOMEM, "filter: out of memory while "
                       "parsing it");
    if (rc != 0)
        return qv_fail(db, QV_ERR_INVALID, "filter is not valid JSON: %s at "
                       "column %d", err.text, err.column);
    qv_status st = check_node(db, f, 0);
    if (st != QV_OK) {
        json_decref(f);
        return st;
    }
    *out = f;
    return QV_OK;
}

/* ---- evaluation ---- */

int filter_payload(const char *text, size_t len, json_t **out)
{
    *out = NULL;
    if (len == 0)
        return 0;
    int rc = qv_json_load(text, len, 0, NULL, out);
    return rc == ENOMEM ? ENOMEM : 0;
}

const json_t *filter_lookup(const json_t *payload, const char *path)
{
    const json_t *cur = payload;
    char part[256];
    while (cur && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part || !json_is_object(cur))
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        cur = json_object_get(cur, part);
        path += n + (path[n] == '.');
    }
    return cur;
}

/* <0, 0, >0 for comparable values; 2 when they do not compare. */
static int compare(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        return x < y ? -1 : x > y;
    }
    if (json_is_string(a) && json_is_string(b)) {
        int c = strcmp(json_string_value(a), json_string_value(b));
        return c < 0 ? -1 : c > 0;
    }
    return 2;
}

static int equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal((json_t *)a, (json_t *)b);
}

static int in_list(const json_t *v, const json_t *list)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) {
        if (v && equal(v, x))
            return 1;
    }
    return 0;
}

static int match_op(const char *op, const json_t *arg, const json_t *v)
{
    if (!strcmp(op, "$exists"))
        return json_is_true(arg) == (v != NULL);
    if (!strcmp(op, "$ne"))
        return !v || !equal(v, arg);
    if (!strcmp(op, "$nin"))
        return !in_list(v, arg);
    if (!v)
        return 0;
    if (!strcmp(op, "$eq"))
        return equal(v, arg);
    if (!strcmp(op, "$in"))
        return in_list(v, arg);
    int c = compare(v, arg);
    if (c == 2)
        return 0;
    if (!strcmp(op, "$gt"))
        return c > 0;
    if (!strcmp(op, "$gte"))
        return c >= 0;
    if (!strcmp(op, "$lt"))
        return c < 0;
    return c <= 0;  /* $lte */
}

int filter_match(const json_t *filter, const json_t *payload)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)filter, key, v) {
        int ok;
        if (!strcmp(key, "$and") || !strcmp(key, "$or")) {
            size_t i;
            json_t *x;
            int any = 0, all = 1;
            json_array_foreach(v, i, x) {
                int m = filter_match(x, payload);
                any |= m;
                all &= m;
            }
            ok = key[1] == 'a' ? all : any;
        } else if (!strcmp(key, "$not")) {
            ok = !filter_match(v, payload);
        } else {
            const json_t *field = payload ? filter_lookup(payload, key) : NULL;
            if (json_is_object(v)) {
                const char *op;
                json_t *arg;
                ok = 1;
                json_object_foreach(v, op, arg) {
                    if (!match_op(op, arg, field)) {
                        ok = 0;
                        break;
                    }
                }
            } else {
                ok = field && equal(field, v);
            }
        }
        if (!ok)
            return 0;
    }
    return 1;
}
