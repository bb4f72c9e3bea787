/*
 * embedded.h - the in-process transport: the database in this process's
 * LMDB environment. Shared by embedded.c, catalog.c, document.c, search.c.
 */
#ifndef QV_DB_ENGINE_STORE_TXN_H
#define QV_DB_ENGINE_STORE_TXN_H

#include <lmdb.h>
#include <stddef.h>
#include <string.h>

#include "ann/codec.h"
#include "storage/env.h"
#include "db/core/handle.h"
#include "db/engine/store/records.h"

typedef struct eng_db {
    qv_db base;
    st_env *env;
    unsigned threads;   /* for index building; >= 1 */
} eng_db;

/* The collection record (coll_rec) and every other stored record:
 * db/engine/store/records.h. */

/* Whether the collection's graph exists: always without a codec, and once
 * the codec is trained with one (before, searches are exact scans). */
static inline int coll_has_graph(const coll_rec *rec)
{
    return rec->codec == 0 || rec->codec_trained;
}

/* Whether the collection's stored vectors must fit codec f16's halves
 * (quiver.h, "Which vectors"); cosine vectors are encoded unit length. */
static inline int coll_f16_codes(const coll_rec *rec)
{
    return rec->codec == CODEC_F16 && rec->metric != QV_METRIC_COSINE;
}

/*
 * Check a vector record read in a snapshot before its floats are read in
 * place (vector_record_fault): QV_OK, or QV_ERR_CORRUPT naming internal
 * id iid.
 */
qv_status vector_record_check(eng_db *db, const MDB_val *val, uint32_t dim,
                              uint32_t iid);

/*
 * The internal id an ids map entry (val) holds (ids_value_decode), below the
 * collection's next_iid, which sizes the graph and the bit sets an id
 * indexes. 0, or MDB_CORRUPTED.
 */
int ids_entry_iid(const MDB_val *val, const coll_rec *rec, uint32_t *iid);

/* Turn an LMDB or errno code into a status and a message about doing. */
qv_status eng_status(eng_db *db, int rc, const char *doing);

/* qv_position_get, and qv_position_put (stage: qv_position_with_next_write,
 * which eng_write spends). */
qv_status eng_position_get(qv_db *base, const char *name, uint64_t *value);
qv_status eng_position_put(qv_db *base, const char *name, uint64_t value,
                           int stage);
/* Drop what this thread staged for db, if anything (db is closing: a
 * handle opened later at the same address must not inherit it). */
void eng_position_unstage(const eng_db *db);

/*
 * Run fn in a write transaction (see st_write). When fn aborts with
 * ST_ABORT, *fn_status (set by fn, with its message) is returned. A
 * position this thread staged for db (eng_position_put) is stored in the
 * same transaction.
 */
/* qv_write_token and qv_read_after: an embedded handle has no log. */
qv_status eng_write_token(qv_db *base, uint64_t *token);
qv_status eng_read_after(qv_db *base, uint64_t token);
/* qv_cluster_status: an embedded handle is no node. */
qv_status eng_cluster_status(qv_db *base, char **json);
qv_status eng_cluster_drain(qv_db *base, const char *node, int cancel);

qv_status eng_write(eng_db *db, st_write_fn fn, void *ctx,
                    const qv_status *fn_status, const char *doing);

/* Begin a read snapshot; the message names what it was for. */
qv_status eng_read_begin(eng_db *db, MDB_txn **txn, const char *doing);

/*
 * Call fn for every record of collection coll in sub-db which, in key
 * order. Returns 0 or an LMDB code.
 */
int eng_walk_range(eng_db *db, MDB_txn *txn, enum st_db which, uint32_t coll,
                   void (*fn)(void *ctx, const MDB_val *key,
                              const MDB_val *val),
                   void *ctx);

/* Take the next value (from 1) of the counter named name in META. */
int eng_next_id(eng_db *db, MDB_txn *txn, const char *name, uint32_t *id);

/* The catalog's key of collection name: the name's bytes. */
static inline MDB_val catalog_key(const char *name)
{
    return (MDB_val){strlen(name), (void *)name};
}

/* Load the record of collection name; QV_ERR_NOT_FOUND if there is none. */
qv_status catalog_get(eng_db *db, MDB_txn *txn, const char *name,
                      coll_rec *rec);
/* Decode and check the record val of the collection named name (len
 * bytes): QV_ERR_CORRUPT, with the reason, when it fails a check. */
qv_status catalog_decode(eng_db *db, const char *name, size_t len,
                         const MDB_val *val, coll_rec *rec);
int catalog_put(eng_db *db, MDB_txn *txn, const char *name,
                const coll_rec *rec);
/*
 * At open: the database's format (META "format"; absent: format 1).
 * QV_ERR_UNSUPPORTED for a format newer than QV_FORMAT, QV_ERR_CORRUPT for
 * a malformed record; a new, empty database opened for writing has
 * QV_FORMAT stored. Messages belong to no handle (the open failed).
 */
qv_status catalog_check_format(eng_db *db);
/*
 * Every internal id below a collection's next_iid is a document's or
 * free, so count + free ids == next_iid. catalog_count_free counts the
 * free ids of collection coll (0 or an LMDB code); catalog_check_ids
 * says CORRUPT when the sum is off, before anything is sized by next_iid
 * (a damaged one could be billions).
 */
int catalog_count_free(eng_db *db, MDB_txn *txn, uint32_t coll,
                       uint64_t *free_ids);
qv_status catalog_check_ids(eng_db *db, MDB_txn *txn, const coll_rec *rec);

/* QV_ERR_DIMENSION unless dim is the collection's. */
qv_status coll_check_dim(eng_db *db, const char *name, const coll_rec *rec,
                         const char *what, uint32_t dim);

/* Transport operations, one file each. */
qv_status catalog_create(qv_db *db, const char *name,
                         const qv_collection_config *config);
qv_status catalog_drop(qv_db *db, const char *name);
qv_status catalog_describe(qv_db *db, const char *name,
                           qv_collection_info *info);
qv_status catalog_list(qv_db *db, qv_collection_info **out, size_t *count);
qv_status document_upsert(qv_db *db, const char *collection,
                          const qv_doc *docs, size_t n);
qv_status document_get(qv_db *db, const char *collection, const char *id,
                       qv_record **out);
qv_status document_delete(qv_db *db, const char *collection, const char *id);
qv_status document_delete_where(qv_db *db, const char *collection,
                                const char *filter, uint64_t *deleted);
qv_status search_knn(qv_db *db, const char *collection, const float *query,
                     uint32_t dim, const qv_search_options *options,
                     qv_hits **out);
qv_status search_count(qv_db *db, const char *collection, const char *filter,
                       uint64_t *count);
qv_status search_batch(qv_db *db, const char *collection, const float *queries,
                       size_t nq, uint32_t dim, const qv_search_options *options,
                       qv_batch_hits **out);

/* Worker threads configured for the handle (never 0), and the default:
 * one per online CPU. */
unsigned eng_threads(const eng_db *db);
unsigned eng_default_threads(void);

/* admin.c */
qv_status collection_sizes(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                           qv_collection_info *info);
qv_status admin_scan(qv_db *db, const char *collection, const char *filter,
                     const char *after, uint32_t limit, qv_page **out);
qv_status admin_backup(qv_db *db, const char *dir);
qv_status admin_compact(qv_db *db);
qv_status admin_train(qv_db *db, const char *collection);
/* check.c */
qv_status check_database(qv_db *db, char **report);
qv_status admin_stats(qv_db *db, char **json);
qv_status admin_set_threads(qv_db *db, uint32_t threads);

#endif
