/*
 * filter.h - JSON filters on payload fields (docs/FILTERS.md).
 *
 *   {"label": 3}                          equality (AND over several keys)
 *   {"label": {"$in": [1, 2]}}            $eq $ne $in $nin
 *   {"price": {"$gte": 10, "$lt": 50}}    $gt $gte $lt $lte (numbers or
 *                                         strings, compared within a type)
 *   {"tag": {"$exists": true}}
 *   {"$and": [..]} {"$or": [..]} {"$not": {..}}
 *   {"a.b": 1}                            a dotted path into nested objects
 */
#ifndef QV_DB_CORE_FILTER_H
#define QV_DB_CORE_FILTER_H

#include <jansson.h>

#include "db/quiver.h"

/*
 * Parse and check filter text. On success *out is the filter (json_decref
 * it); on failure the message names the offending part.
 */
qv_status filter_parse(const qv_db *db, const char *text, json_t **out);

/*
 * The JSON value of a stored payload (len bytes of text, not NUL-
 * terminated), for filter_match: *out is NULL when len is 0, and when the
 * text does not parse (a damaged record reads as one without payload).
 * Returns 0, or ENOMEM when memory ran out (*out NULL: the caller must not
 * take it for a payload without the field).
 */
int filter_payload(const char *text, size_t len, json_t **out);

/* The value at a dotted path ("a.b") in a payload, or NULL. */
const json_t *filter_lookup(const json_t *payload, const char *path);

/* Does a payload (a JSON object, or NULL for none) match the filter? */
int filter_match(const json_t *filter, const json_t *payload);

#endif
