/*
 * db.c - the public API: argument checks common to every transport, then
 * dispatch to the handle's transport.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "db/core/error.h"
#include "common/json.h"
#include "db/core/filter.h"
#include "ann/embed.h"
#include "db/core/handle.h"
#include "common/utf8.h"


/*
 * The reserved words of an option struct must be 0 (quiver.h, "Structs
 * grow"): a later version gives them meaning, so a caller that left
 * garbage there would change behaviour on upgrade; refused today instead.
 * The count comes from the array, since fields take words from its front.
 */
#define CHECK_RESERVED(db, what, words) \
    validate_reserved(db, what, words, sizeof(words) / sizeof *(words))

qv_status qv_open(const char *uri, const qv_open_options *opts, qv_db **out)
{
    qv_error_clear(NULL);
    if (!out)
        return qv_fail(NULL, QV_ERR_INVALID, "out is NULL");
    *out = NULL;
    qv_json_adopt();   /* process-wide; see common/json.h */
    if (!uri || !*uri)
        return qv_fail(NULL, QV_ERR_INVALID, "uri is empty");
    if (opts && (opts->flags &
                 ~(QV_OPEN_READONLY | QV_OPEN_NOSYNC | QV_OPEN_PREAD |
                   QV_OPEN_VECTORS_IN_MEMORY)))
        return qv_fail(NULL, QV_ERR_INVALID, "unknown open flags 0x%x",
                       opts->flags);
    if (opts && CHECK_RESERVED(NULL, "qv_open_options", opts->reserved))
        return QV_ERR_INVALID;
    if (strncmp(uri, "qv://", 5) == 0 || strncmp(uri, "qvs://", 6) == 0)
        return remote_open(uri, opts, out);
    return eng_open(uri, opts, out);
}

void qv_close(qv_db *db)
{
    if (db)
        db->ops->close(db);
}

const char *qv_errmsg(const qv_db *db)
{
    return qv_error_message(db);
}

const char *qv_version(void)
{
    return QV_VERSION;
}

void qv_free(void *object)
{
    qv_mem_free(object);
}

/* Common start of every call on a handle. */
#define BEGIN_CALL(db)                                                    \
    do {                                                                  \
        if (!(db))                                                        \
            return qv_fail(NULL, QV_ERR_INVALID, "database handle is NULL"); \
        qv_error_clear(db);                                               \
    } while (0)

static qv_status check_writable(qv_db *db)
{
    if (db->flags & QV_OPEN_READONLY)
        return qv_fail(db, QV_ERR_READONLY,
                       "the database was opened read-only");
    return QV_OK;
}

/* A write to the collection or table name: the handle writable, the
 * name valid. */
static qv_status check_write_to(qv_db *db, const char *name)
{
    qv_status st = check_writable(db);
    return st == QV_OK ? validate_collection_name(db, name) : st;
}

qv_status qv_create_collection(qv_db *db, const char *name,
                               const qv_collection_config *config)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, name);
    if (st != QV_OK)
        return st;
    qv_collection_config cfg;
    st = validate_collection_config(db, config, &cfg, NULL);
    if (st != QV_OK)
        return st;
    return db->ops->create_collection(db, name, &cfg);
}

/* Answered here for both transports: the checks need no database, and
 * are the very ones qv_create_collection runs before its transport. */
qv_status qv_collection_config_check(qv_db *db,
                                     const qv_collection_config *config)
{
    BEGIN_CALL(db);
    return validate_collection_config(db, config, NULL, NULL);
}

qv_status qv_drop_collection(qv_db *db, const char *name)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, name);
    if (st != QV_OK)
        return st;
    return db->ops->drop_collection(db, name);
}

qv_status qv_describe_collection(qv_db *db, const char *name,
                                 qv_collection_info *info)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, name);
    if (st != QV_OK)
        return st;
    if (!info)
        return qv_fail(db, QV_ERR_INVALID, "info is NULL");
    return db->ops->describe_collection(db, name, info);
}

qv_status qv_list_collections(qv_db *db, qv_collection_info **out,
                              size_t *count)
{
    BEGIN_CALL(db);
    if (!out || !count)
        return qv_fail(db, QV_ERR_INVALID, "out or count is NULL");
    return db->ops->list_collections(db, out, count);
}

/* Free the payload copies of a normalized batch. */
static void free_payloads(qv_doc *docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        qv_mem_free((char *)docs[i].payload);
    qv_mem_free(docs);
}

/*
 * Check every document of a batch and copy it with its payload in compact
 * form. The message names the first bad document by its index.
 */
static qv_status normalize_batch(qv_db *db, const qv_doc *docs, size_t n,
                                 qv_doc **out)
{
    qv_doc *copy = qv_calloc(n, sizeof *copy);
    if (!copy)
        return qv_fail(db, QV_ERR_NOMEM, "out of memory for %zu documents", n);
    qv_status st = QV_OK;
    char what[48];
    for (size_t i = 0; i < n && st == QV_OK; i++) {
        snprintf(what, sizeof what, "document %zu: ", i);
        st = validate_doc_id(db, what, docs[i].id);
        if (st == QV_OK)
            st = validate_vector(db, what, docs[i].vector, docs[i].dim);
        copy[i] = docs[i];
        copy[i].payload = NULL;
        if (st == QV_OK && docs[i].payload)
            st = payload_normalize(db, what, docs[i].payload,
                                   (char **)&copy[i].payload);
    }
    if (st != QV_OK) {
        free_payloads(copy, n);
        return st;
    }
    *out = copy;
    return QV_OK;
}

qv_status qv_upsert(qv_db *db, const char *collection, const qv_doc *docs,
                    size_t n)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, collection);
    if (st != QV_OK)
        return st;
    if (!docs || n == 0)
        return qv_fail(db, QV_ERR_INVALID, "no documents given");
    qv_doc *normalized = NULL;
    st = normalize_batch(db, docs, n, &normalized);
    if (st != QV_OK)
        return st;
    st = db->ops->upsert(db, collection, normalized, n);
    free_payloads(normalized, n);
    return st;
}

qv_status qv_get(qv_db *db, const char *collection, const char *id,
                 qv_record **out)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, collection);
    if (st == QV_OK)
        st = validate_doc_id(db, "", id);
    if (st != QV_OK)
        return st;
    if (!out)
        return qv_fail(db, QV_ERR_INVALID, "out is NULL");
    return db->ops->get(db, collection, id, out);
}

qv_status qv_delete(qv_db *db, const char *collection, const char *id)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, collection);
    if (st == QV_OK)
        st = validate_doc_id(db, "", id);
    if (st != QV_OK)
        return st;
    return db->ops->delete_doc(db, collection, id);
}

/* A filter's syntax (NULL: none), checked before any transport sees it. */
static qv_status check_filter(qv_db *db, const char *filter)
{
    json_t *f;
    if (!filter)
        return QV_OK;
    qv_status st = filter_parse(db, filter, &f);
    json_decref(st == QV_OK ? f : NULL);
    return st;
}

static qv_status check_search_options(qv_db *db,
                                      const qv_search_options *options)
{
    if (CHECK_RESERVED(db, "qv_search_options", options->reserved))
        return QV_ERR_INVALID;
    if (options->k == 0 || options->k > QV_K_MAX)
        return qv_fail(db, QV_ERR_INVALID, "k must be 1 to %d, not %u",
                       QV_K_MAX, options->k);
    if (options->ef > QV_EF_MAX)
        return qv_fail(db, QV_ERR_INVALID, "ef must be 0 to %d, not %u",
                       QV_EF_MAX, options->ef);
    if (options->rerank > QV_RERANK_MAX)
        return qv_fail(db, QV_ERR_INVALID, "rerank must be 0 to %d, not %u",
                       QV_RERANK_MAX, options->rerank);
    return check_filter(db, options->filter);
}

qv_status qv_search(qv_db *db, const char *collection, const float *query,
                    uint32_t dim, const qv_search_options *options,
                    qv_hits **out)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, collection);
    if (st == QV_OK)
        st = validate_vector(db, "query ", query, dim);
    if (st != QV_OK)
        return st;
    if (!options || !out)
        return qv_fail(db, QV_ERR_INVALID, "options or out is NULL");
    st = check_search_options(db, options);
    if (st != QV_OK)
        return st;
    return db->ops->search(db, collection, query, dim, options, out);
}

qv_status qv_search_batch(qv_db *db, const char *collection,
                          const float *queries, size_t nq, uint32_t dim,
                          const qv_search_options *options,
                          qv_batch_hits **out)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, collection);
    if (st != QV_OK)
        return st;
    if (nq == 0 || nq > QV_BATCH_MAX)
        return qv_fail(db, QV_ERR_INVALID, "a batch holds 1 to %d queries, "
                       "not %zu", QV_BATCH_MAX, nq);
    if (!queries || !options || !out)
        return qv_fail(db, QV_ERR_INVALID, "queries, options or out is NULL");
    char what[48];
    for (size_t i = 0; i < nq && st == QV_OK; i++) {
        snprintf(what, sizeof what, "query %zu: ", i);
        st = validate_vector(db, what, queries + i * dim, dim);
    }
    if (st == QV_OK)
        st = check_search_options(db, options);
    if (st != QV_OK)
        return st;
    return db->ops->search_batch(db, collection, queries, nq, dim, options,
                                 out);
}

qv_status qv_scan(qv_db *db, const char *collection, const char *after,
                  uint32_t limit, qv_page **out)
{
    return qv_scan_where(db, collection, NULL, after, limit, out);
}

qv_status qv_delete_where(qv_db *db, const char *collection,
                          const char *filter, uint64_t *deleted)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, collection);
    if (st != QV_OK)
        return st;
    if (!filter || !deleted)
        return qv_fail(db, QV_ERR_INVALID, "filter or deleted is NULL");
    if ((st = check_filter(db, filter)) != QV_OK)
        return st;
    return db->ops->delete_where(db, collection, filter, deleted);
}

qv_status qv_scan_where(qv_db *db, const char *collection, const char *filter,
                        const char *after, uint32_t limit, qv_page **out)
{
    BEGIN_CALL(db);
    qv_status fst = check_filter(db, filter);
    if (fst != QV_OK)
        return fst;
    qv_status st = validate_collection_name(db, collection);
    if (st == QV_OK && after)
        st = validate_doc_id(db, "after: ", after);
    if (st != QV_OK)
        return st;
    if (!out)
        return qv_fail(db, QV_ERR_INVALID, "out is NULL");
    if (limit == 0 || limit > QV_SCAN_MAX)
        return qv_fail(db, QV_ERR_INVALID, "limit must be 1 to %d, not %u",
                       QV_SCAN_MAX, limit);
    return db->ops->scan(db, collection, filter, after, limit, out);
}

qv_status qv_backup(qv_db *db, const char *dir)
{
    BEGIN_CALL(db);
    if (!dir || !*dir)
        return qv_fail(db, QV_ERR_INVALID, "backup directory is empty");
    return db->ops->backup(db, dir);
}

qv_status qv_list_indexes(qv_db *db, const char *collection,
                          qv_index_info **out, size_t *count)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, collection);
    if (st == QV_OK && (!out || !count))
        st = qv_fail(db, QV_ERR_INVALID, "out or count is NULL");
    return st == QV_OK ? db->ops->list_indexes(db, collection, out, count)
                       : st;
}

/* The checks of an index call: a writable handle, the names. */
static qv_status check_index_call(qv_db *db, const char *collection,
                                  const char *field)
{
    qv_status st = check_write_to(db, collection);
    if (st != QV_OK)
        return st;
    size_t len = field ? strlen(field) : 0;
    if (len == 0 || len > QV_FIELD_MAX || field[0] == '$' ||
        field[0] == '.' || field[len - 1] == '.')
        return qv_fail(db, QV_ERR_INVALID, "field must be 1 to %d bytes, not "
                       "starting with '$' or '.' nor ending with '.'",
                       QV_FIELD_MAX);
    size_t bad;
    if (!utf8_valid(field, len, &bad))
        return qv_fail(db, QV_ERR_INVALID, "field is not valid UTF-8 (byte "
                       "0x%02x at %zu)", (unsigned char)field[bad], bad);
    return QV_OK;
}

qv_status qv_drop_index(qv_db *db, const char *collection, const char *field)
{
    BEGIN_CALL(db);
    qv_status st = check_index_call(db, collection, field);
    return st == QV_OK ? db->ops->drop_index(db, collection, field) : st;
}

qv_status qv_create_index(qv_db *db, const char *collection,
                          const char *field, qv_index_type type)
{
    BEGIN_CALL(db);
    qv_status st = check_index_call(db, collection, field);
    if (st != QV_OK)
        return st;
    if ((unsigned)type > QV_INDEX_FLOAT)
        return qv_fail(db, QV_ERR_INVALID, "unknown index type %d; use "
                       "keyword, int or float", (int)type);
    return db->ops->create_index(db, collection, field, type);
}

qv_status qv_count(qv_db *db, const char *collection, const char *filter,
                   uint64_t *count)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, collection);
    if (st != QV_OK)
        return st;
    if (!count)
        return qv_fail(db, QV_ERR_INVALID, "count is NULL");
    if ((st = check_filter(db, filter)) != QV_OK)
        return st;
    return db->ops->count(db, collection, filter, count);
}

qv_status qv_check(qv_db *db, char **report)
{
    BEGIN_CALL(db);
    if (!report)
        return qv_fail(db, QV_ERR_INVALID, "report is NULL");
    *report = NULL;
    return db->ops->check(db, report);
}

qv_status qv_compact(qv_db *db)
{
    BEGIN_CALL(db);
    qv_status st = check_writable(db);
    return st == QV_OK ? db->ops->compact(db) : st;
}

qv_status qv_train(qv_db *db, const char *collection)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, collection);
    return st == QV_OK ? db->ops->train(db, collection) : st;
}

qv_status qv_stats(qv_db *db, char **json)
{
    BEGIN_CALL(db);
    if (!json)
        return qv_fail(db, QV_ERR_INVALID, "json is NULL");
    return db->ops->stats(db, json);
}

/* 1 to QV_NAME_MAX bytes of [A-Za-z0-9_.:/-]. */
static qv_status check_position_name(qv_db *db, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > QV_NAME_MAX)
        return qv_fail(db, QV_ERR_INVALID, "a position name is 1 to %d "
                       "bytes", QV_NAME_MAX);
    size_t ok = strspn(name, "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/-");
    if (ok != n)
        return qv_fail(db, QV_ERR_INVALID, "position name '%s': byte %zu is "
                       "not one of [A-Za-z0-9_.:/-]", name, ok);
    return QV_OK;
}

qv_status qv_position_get(qv_db *db, const char *name, uint64_t *value)
{
    BEGIN_CALL(db);
    if (!value)
        return qv_fail(db, QV_ERR_INVALID, "value is NULL");
    qv_status st = check_position_name(db, name);
    return st != QV_OK ? st : db->ops->position_get(db, name, value);
}

qv_status qv_position_put(qv_db *db, const char *name, uint64_t value)
{
    BEGIN_CALL(db);
    qv_status st = check_writable(db);
    if (st == QV_OK)
        st = check_position_name(db, name);
    return st != QV_OK ? st : db->ops->position_put(db, name, value, 0);
}

qv_status qv_position_with_next_write(qv_db *db, const char *name,
                                      uint64_t value)
{
    BEGIN_CALL(db);
    qv_status st = check_writable(db);
    if (st == QV_OK)
        st = check_position_name(db, name);
    return st != QV_OK ? st : db->ops->position_put(db, name, value, 1);
}

qv_status qv_write_token(qv_db *db, uint64_t *token)
{
    BEGIN_CALL(db);
    if (!token)
        return qv_fail(db, QV_ERR_INVALID, "token is NULL");
    return db->ops->write_token(db, token);
}

qv_status qv_read_after(qv_db *db, uint64_t token)
{
    BEGIN_CALL(db);
    return db->ops->read_after(db, token);
}

qv_status qv_cluster_status(qv_db *db, char **json)
{
    BEGIN_CALL(db);
    if (!json)
        return qv_fail(db, QV_ERR_INVALID, "json is NULL");
    return db->ops->cluster_status(db, json);
}

qv_status qv_cluster_drain(qv_db *db, const char *node, int cancel)
{
    BEGIN_CALL(db);
    if (!node)
        return qv_fail(db, QV_ERR_INVALID, "node is NULL");
    return db->ops->cluster_drain(db, node, cancel);
}

qv_status qv_set_threads(qv_db *db, uint32_t threads)
{
    BEGIN_CALL(db);
    if (threads > 1024)
        return qv_fail(db, QV_ERR_INVALID, "threads must be 0 to 1024, not %u",
                       threads);
    return db->ops->set_threads(db, threads);
}

/* ---- embedding tables ---- */

/* config checked, with its defaults filled in *resolved. */
static qv_status table_config_resolve(qv_db *db, const qv_table_config *config,
                                      qv_table_config *resolved)
{
    if (!config)
        return qv_fail(db, QV_ERR_INVALID, "table config is NULL");
    if (CHECK_RESERVED(db, "qv_table_config", config->reserved))
        return QV_ERR_INVALID;
    qv_table_config cfg = *config;
    if (!cfg.method)
        cfg.method = "full";
    if (cfg.learning_rate == 0)
        cfg.learning_rate = 0.01f;
    if (cfg.init == 0)
        cfg.init = 0.01f;
    emb_spec spec = {.rows = cfg.rows, .dim = cfg.dim,
                     .optimizer = (enum emb_optimizer)cfg.optimizer,
                     .lr = cfg.learning_rate, .init = cfg.init};
    char why[160];
    if (emb_parse_method(cfg.method, &spec, why, sizeof why) != 0 ||
        emb_check_spec(&spec, QV_TABLE_BYTES_MAX, QV_TABLE_DIM_MAX, why,
                       sizeof why) != 0)
        return qv_fail(db, QV_ERR_INVALID, "%s", why);
    if (validate_sharding(db, "table", cfg.shards, cfg.replicas) != QV_OK)
        return QV_ERR_INVALID;
    *resolved = cfg;
    return QV_OK;
}

qv_status qv_table_config_check(qv_db *db, const qv_table_config *config)
{
    BEGIN_CALL(db);
    qv_table_config cfg;
    return table_config_resolve(db, config, &cfg);
}

qv_status qv_table_create(qv_db *db, const char *name,
                          const qv_table_config *config)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, name);
    qv_table_config cfg;
    if (st == QV_OK)
        st = table_config_resolve(db, config, &cfg);
    return st == QV_OK ? db->ops->table_create(db, name, &cfg) : st;
}

qv_status qv_table_drop(qv_db *db, const char *name)
{
    BEGIN_CALL(db);
    qv_status st = check_write_to(db, name);
    return st == QV_OK ? db->ops->table_drop(db, name) : st;
}

qv_status qv_table_describe(qv_db *db, const char *name, qv_table_info *info)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, name);
    if (st == QV_OK && !info)
        st = qv_fail(db, QV_ERR_INVALID, "info is NULL");
    return st == QV_OK ? db->ops->table_describe(db, name, info) : st;
}

qv_status qv_list_tables(qv_db *db, qv_table_info **out, size_t *count)
{
    BEGIN_CALL(db);
    if (!out || !count)
        return qv_fail(db, QV_ERR_INVALID, "out or count is NULL");
    return db->ops->list_tables(db, out, count);
}

/* The arrays of a batch: present, and n within bounds. */
static qv_status check_batch_arrays(qv_db *db, const void *a, const void *b,
                                    size_t n)
{
    if (n == 0 || n > QV_TABLE_BATCH_MAX)
        return qv_fail(db, QV_ERR_INVALID, "a batch holds 1 to %d ids, not "
                       "%zu", QV_TABLE_BATCH_MAX, n);
    if (!a || !b)
        return qv_fail(db, QV_ERR_INVALID, "ids, rows or out is NULL");
    return QV_OK;
}

static qv_status check_table_dim(qv_db *db, uint32_t dim)
{
    if (dim == 0 || dim > QV_TABLE_DIM_MAX)
        return qv_fail(db, QV_ERR_DIMENSION, "dimension must be 1 to %d, "
                       "not %u", QV_TABLE_DIM_MAX, dim);
    return QV_OK;
}

static qv_status check_finite_rows(qv_db *db, const char *what,
                                   const float *v, size_t n, uint32_t dim)
{
    qv_status st = check_table_dim(db, dim);
    if (st != QV_OK)
        return st;
    for (size_t i = 0; i < n * dim; i++) {
        if (!isfinite(v[i]))
            return qv_fail(db, QV_ERR_INVALID, "%s of id %zu, element %zu, "
                           "is not a finite number", what, i / dim,
                           i % dim);
    }
    return QV_OK;
}

qv_status qv_table_lookup(qv_db *db, const char *name, const uint64_t *ids,
                          size_t n, uint32_t dim, float *out)
{
    BEGIN_CALL(db);
    qv_status st = validate_collection_name(db, name);
    if (st == QV_OK)
        st = check_batch_arrays(db, ids, out, n);
    if (st == QV_OK)
        st = check_table_dim(db, dim);
    return st == QV_OK ? db->ops->table_lookup(db, name, ids, n, dim, out)
                       : st;
}

/* The checks of a write of rows (gradients or trained rows) to a table. */
static qv_status check_table_write(qv_db *db, const char *name,
                                   const void *ids, const float *rows,
                                   size_t n, uint32_t dim, const char *what)
{
    qv_status st = check_write_to(db, name);
    if (st == QV_OK)
        st = check_batch_arrays(db, ids, rows, n);
    if (st == QV_OK)
        st = check_finite_rows(db, what, rows, n, dim);
    return st;
}

qv_status qv_table_update(qv_db *db, const char *name, const uint64_t *ids,
                          size_t n, uint32_t dim, const float *grads)
{
    BEGIN_CALL(db);
    qv_status st = check_table_write(db, name, ids, grads, n, dim,
                                     "the gradient");
    return st == QV_OK ? db->ops->table_update(db, name, ids, n, dim, grads)
                       : st;
}

qv_status qv_table_load(qv_db *db, const char *name, uint64_t first,
                        size_t n, uint32_t dim, const float *rows)
{
    BEGIN_CALL(db);
    qv_status st = check_table_write(db, name, rows, rows, n, dim, "the row");
    return st == QV_OK ? db->ops->table_load(db, name, first, n, dim, rows)
                       : st;
}
