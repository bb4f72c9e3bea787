#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "ann/codec.h"
#include "ann/distance.h"
#include "db/core/error.h"
#include "db/core/handle.h"
#include "common/json.h"
#include "common/utf8.h"

qv_status validate_collection_name(const qv_db *db, const char *name)
{
    if (!name)
        return qv_fail(db, QV_ERR_INVALID, "collection name is NULL");
    size_t len = strlen(name);
    if (len == 0 || len > QV_NAME_MAX)
        return qv_fail(db, QV_ERR_INVALID,
                       "collection name must be 1 to %d bytes, not %zu",
                       QV_NAME_MAX, len);
    if (!isalnum((unsigned char)name[0]) && name[0] != '_')
        return qv_fail(db, QV_ERR_INVALID,
                       "collection name '%s' must start with a letter, digit "
                       "or '_'", name);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.')
            return qv_fail(db, QV_ERR_INVALID,
                           "collection name has byte 0x%02x at %zu; allowed "
                           "are letters, digits, '_', '-' and '.'", c, i);
    }
    return QV_OK;
}

qv_status validate_reserved(const qv_db *db, const char *what,
                            const uint64_t *reserved, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (reserved[i])
            return qv_fail(db, QV_ERR_INVALID, "%s.reserved[%zu] is not 0; "
                           "zero-initialise the struct ({0} or a designated "
                           "initializer)", what, i);
    }
    return QV_OK;
}

qv_status validate_sharding(const qv_db *db, const char *kind,
                            uint32_t shards, uint32_t replicas)
{
    if (shards > QV_SHARDS_MAX)
        return qv_fail(db, QV_ERR_INVALID, "shards must be 0 to %d, not %u",
                       QV_SHARDS_MAX, shards);
    if (replicas > QV_REPLICAS_MAX)
        return qv_fail(db, QV_ERR_INVALID, "replicas must be 0 to %d, not %u",
                       QV_REPLICAS_MAX, replicas);
    if (replicas && !shards)
        return qv_fail(db, QV_ERR_INVALID, "replicas need shards: replicas "
                       "is %u but shards is 0 (an ordinary %s has no "
                       "replicas)", replicas, kind);
    return QV_OK;
}

qv_status validate_collection_config(const qv_db *db,
                                     const qv_collection_config *config,
                                     qv_collection_config *resolved,
                                     struct codec_spec *spec_out)
{
    if (!config)
        return qv_fail(db, QV_ERR_INVALID, "collection config is NULL");
    if (validate_reserved(db, "qv_collection_config", config->reserved,
                          sizeof config->reserved / sizeof *config->reserved))
        return QV_ERR_INVALID;
    if (config->dim == 0 || config->dim > QV_DIM_MAX)
        return qv_fail(db, QV_ERR_INVALID,
                       "dimension must be 1 to %d, not %u", QV_DIM_MAX,
                       config->dim);
    if (!qv_metric_name(config->metric))
        return qv_fail(db, QV_ERR_INVALID,
                       "unknown metric %d; use l2, ip or cosine",
                       (int)config->metric);
    qv_collection_config cfg = *config;
    if (cfg.M == 0)
        cfg.M = QV_DEFAULT_M;
    if (cfg.ef_construction == 0)
        cfg.ef_construction = QV_DEFAULT_EF_CONSTRUCTION;
    if (cfg.M < 2 || cfg.M > QV_M_MAX)
        return qv_fail(db, QV_ERR_INVALID, "M must be 2 to %d, not %u",
                       QV_M_MAX, cfg.M);
    if (cfg.ef_construction > QV_EF_MAX)
        return qv_fail(db, QV_ERR_INVALID,
                       "ef_construction must be 1 to %d, not %u", QV_EF_MAX,
                       cfg.ef_construction);
    codec_spec spec = {CODEC_NONE, 0};
    char why[160];
    if (cfg.codec && codec_parse(cfg.codec, cfg.dim, &spec, why,
                                 sizeof why) != 0)
        return qv_fail(db, QV_ERR_INVALID, "%s", why);
    if (cfg.train_min && !codec_train_min(&spec))
        return qv_fail(db, QV_ERR_INVALID, "train_min applies only to the "
                       "codecs that are trained (sq8, pq, bin)");
    if (cfg.train_min && (cfg.train_min < codec_train_least(&spec) ||
                          cfg.train_min > QV_TRAIN_MIN_MOST))
        return qv_fail(db, QV_ERR_INVALID, "train_min of codec %s must be %u "
                       "to %d, not %u", cfg.codec, codec_train_least(&spec),
                       QV_TRAIN_MIN_MOST, cfg.train_min);
    if (validate_sharding(db, "collection", cfg.shards, cfg.replicas) !=
        QV_OK)
        return QV_ERR_INVALID;
    if (resolved)
        *resolved = cfg;
    if (spec_out)
        *spec_out = spec;
    return QV_OK;
}

qv_status validate_doc_id(const qv_db *db, const char *what, const char *id)
{
    if (!id)
        return qv_fail(db, QV_ERR_INVALID, "%sid is NULL", what);
    size_t len = strlen(id);
    if (len == 0)
        return qv_fail(db, QV_ERR_INVALID, "%sid is empty", what);
    if (len > QV_ID_MAX)
        return qv_fail(db, QV_ERR_INVALID,
                       "%sid is %zu bytes; the limit is %d", what, len,
                       QV_ID_MAX);
    size_t bad;
    if (!utf8_valid(id, len, &bad))
        return qv_fail(db, QV_ERR_INVALID, "%sid is not valid UTF-8 (byte "
                       "0x%02x at %zu)", what, (unsigned char)id[bad], bad);
    return QV_OK;
}

qv_status validate_vector(const qv_db *db, const char *what,
                          const float *vector, uint32_t dim)
{
    if (dim == 0)
        return qv_fail(db, QV_ERR_DIMENSION, "%svector is empty", what);
    if (!vector)
        return qv_fail(db, QV_ERR_INVALID, "%svector is NULL", what);
    for (uint32_t i = 0; i < dim; i++) {
        if (!isfinite(vector[i]))
            return qv_fail(db, QV_ERR_INVALID, "%svector[%u] is %s", what, i,
                           isnan(vector[i]) ? "NaN" : "infinite");
    }
    return QV_OK;
}

qv_status payload_normalize(const qv_db *db, const char *what,
                            const char *payload, char **compact)
{
    json_error_t err;
    json_t *root = NULL;
    qv_status st = QV_OK;
    char *text = NULL;

    size_t len = strlen(payload);
    if (len > QV_PAYLOAD_MAX) {
        st = qv_fail(db, QV_ERR_INVALID, "%spayload is %zu bytes; the limit "
                     "is %u", what, len, QV_PAYLOAD_MAX);
        goto cleanup;
    }
    int rc = qv_json_load(payload, len,
                          JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err,
                          &root);
    if (rc == ENOMEM) {
        st = qv_fail(db, QV_ERR_NOMEM, "%spayload: out of memory while "
                     "parsing it", what);
        goto cleanup;
    }
    if (rc != 0) {
        st = qv_fail(db, QV_ERR_INVALID, "%spayload is not valid JSON: %s "
                     "at line %d column %d", what, err.text, err.line,
                     err.column);
        goto cleanup;
    }
    if (!json_is_object(root)) {
        st = qv_fail(db, QV_ERR_INVALID, "%spayload must be a JSON object",
                     what);
        goto cleanup;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        st = qv_fail(db, QV_ERR_NOMEM, "%spayload: out of memory", what);
        goto cleanup;
    }
    *compact = qv_strndup(text, strlen(text));
    if (!*compact)
        st = qv_fail(db, QV_ERR_NOMEM, "%spayload: out of memory", what);
cleanup:
    qv_json_free(text);
    json_decref(root);
    return st;
}

int vector_outside_rule(const float *v, uint32_t dim, qv_metric metric,
                        int f16_codes, char *why, size_t len)
{
    if (metric == QV_METRIC_COSINE) {
        for (uint32_t i = 0; i < dim; i++)
            if (v[i] != 0.0f)
                return 0;
        snprintf(why, len, "vector is all zeros, which has no cosine "
                 "distance");
        return 1;
    }
    for (uint32_t i = 0; f16_codes && i < dim; i++) {
        if (fabsf(v[i]) > QV_F16_MAX) {
            snprintf(why, len, "vector[%u] is %.6g, beyond %.0f, the "
                     "largest magnitude codec f16 holds (metric %s)", i,
                     (double)v[i], (double)QV_F16_MAX,
                     qv_metric_name(metric));
            return 1;
        }
    }
    double sq = dist_sqnorm(v, dim);
    if (sq <= QV_SQNORM_MAX)
        return 0;
    /* as many digits as it takes to print it above the limit */
    char num[32];
    for (int digits = 3; digits <= 17; digits++) {
        snprintf(num, sizeof num, "%.*g", digits, sq);
        if (strtod(num, NULL) > QV_SQNORM_MAX)
            break;
    }
    snprintf(why, len, "vector's squared norm %s exceeds %.0e, the limit "
             "for metric %s", num, QV_SQNORM_MAX, qv_metric_name(metric));
    return 1;
}

qv_status validate_vector_rule(const qv_db *db, const char *what,
                               const float *v, uint32_t dim, qv_metric metric,
                               int f16_codes)
{
    char why[160];
    if (!vector_outside_rule(v, dim, metric, f16_codes, why, sizeof why))
        return QV_OK;
    return qv_fail(db, QV_ERR_INVALID, "%s%s", what, why);
}
