/*
 * handle.h - what the front door (db.c) and the transports share; not part
 * of the API.
 *
 * A qv_db is a transport: a table of operations behind the public calls.
 * db.c checks every argument that does not need the database (names, ids,
 * finiteness, payload JSON, k) and then calls the transport, so embedded
 * and remote handles refuse bad input with the same messages. The
 * embedded transport (db/engine/) checks the rest against the stored
 * collection (existence, dimension); the remote one (wire/remote/) leaves
 * that to the server's embedded handle.
 */
#ifndef QV_DB_CORE_HANDLE_H
#define QV_DB_CORE_HANDLE_H

#include "db/quiver.h"

/* The last status this version knows (quiver.h appends new ones). */
#define QV_STATUS_LAST QV_ERR_IN_USE

#define QV_DEFAULT_M 16
#define QV_DEFAULT_EF_CONSTRUCTION 200
#define QV_DEFAULT_EF 64
#define QV_SCAN_MAX 10000

typedef struct qv_db_ops {
    void (*close)(qv_db *db);
    qv_status (*create_collection)(qv_db *db, const char *name,
                                   const qv_collection_config *config);
    qv_status (*drop_collection)(qv_db *db, const char *name);
    qv_status (*describe_collection)(qv_db *db, const char *name,
                                     qv_collection_info *info);
    qv_status (*list_collections)(qv_db *db, qv_collection_info **out,
                                  size_t *count);
    /* docs[i].payload is already compact JSON or NULL. */
    qv_status (*upsert)(qv_db *db, const char *collection, const qv_doc *docs,
                        size_t n);
    qv_status (*get)(qv_db *db, const char *collection, const char *id,
                     qv_record **out);
    qv_status (*delete_doc)(qv_db *db, const char *collection, const char *id);
    qv_status (*search)(qv_db *db, const char *collection, const float *query,
                        uint32_t dim, const qv_search_options *options,
                        qv_hits **out);
    qv_status (*search_batch)(qv_db *db, const char *collection,
                              const float *queries, size_t nq, uint32_t dim,
                              const qv_search_options *options,
                              qv_batch_hits **out);
    qv_status (*scan)(qv_db *db, const char *collection, const char *filter,
                      const char *after, uint32_t limit, qv_page **out);
    qv_status (*delete_where)(qv_db *db, const char *collection,
                              const char *filter, uint64_t *deleted);
    qv_status (*backup)(qv_db *db, const char *dir);
    qv_status (*compact)(qv_db *db);
    qv_status (*check)(qv_db *db, char **report);
    qv_status (*count)(qv_db *db, const char *collection, const char *filter,
                       uint64_t *count);
    qv_status (*create_index)(qv_db *db, const char *collection,
                              const char *field, qv_index_type type);
    qv_status (*stats)(qv_db *db, char **json);
    qv_status (*set_threads)(qv_db *db, uint32_t threads);
    qv_status (*position_get)(qv_db *db, const char *name, uint64_t *value);
    /* staged: store it with the next write of this thread, else now */
    qv_status (*position_put)(qv_db *db, const char *name, uint64_t value,
                              int staged);
    qv_status (*write_token)(qv_db *db, uint64_t *token);
    qv_status (*read_after)(qv_db *db, uint64_t token);
    qv_status (*cluster_status)(qv_db *db, char **json);
    qv_status (*cluster_drain)(qv_db *db, const char *node, int cancel);
    qv_status (*train)(qv_db *db, const char *collection);
    qv_status (*drop_index)(qv_db *db, const char *collection,
                            const char *field);
    qv_status (*table_create)(qv_db *db, const char *name,
                              const qv_table_config *config);
    qv_status (*table_drop)(qv_db *db, const char *name);
    qv_status (*table_describe)(qv_db *db, const char *name,
                                qv_table_info *info);
    /* ids and grads (rows) are checked: finite, n in range */
    qv_status (*table_lookup)(qv_db *db, const char *name,
                              const uint64_t *ids, size_t n, uint32_t dim,
                              float *out);
    qv_status (*table_update)(qv_db *db, const char *name,
                              const uint64_t *ids, size_t n, uint32_t dim,
                              const float *grads);
    qv_status (*table_load)(qv_db *db, const char *name, uint64_t first,
                            size_t n, uint32_t dim, const float *rows);
    qv_status (*list_tables)(qv_db *db, qv_table_info **out, size_t *count);
    qv_status (*list_indexes)(qv_db *db, const char *collection,
                              qv_index_info **out, size_t *count);
} qv_db_ops;

struct qv_db {
    const qv_db_ops *ops;
    uint32_t flags;   /* QV_OPEN_* */
};

/* validate.c: checks that need no database. Each sets the message. */
qv_status validate_collection_name(const qv_db *db, const char *name);
/* The n reserved words of an option struct named what are all 0
 * (quiver.h, "Structs grow"). */
qv_status validate_reserved(const qv_db *db, const char *what,
                            const uint64_t *reserved, size_t n);
/* The ranges of a collection's or table's (kind) shards and replicas:
 * shards 0 to QV_SHARDS_MAX, replicas 0 to QV_REPLICAS_MAX and only with
 * shards. */
qv_status validate_sharding(const qv_db *db, const char *kind,
                            uint32_t shards, uint32_t replicas);
/*
 * Every check of a collection's config, the one place for them
 * (qv_create_collection, qv_collection_config_check, the engine's
 * create): config not NULL, its reserved words, dim, metric, M,
 * ef_construction, the codec against dim, train_min against the codec,
 * the ranges of shards and replicas (never whether this database can
 * make a sharded collection). On QV_OK, *resolved (when not NULL) is the
 * config with the defaults of M and ef_construction filled in, and
 * *spec_out (when not NULL) its codec, parsed (codec none when NULL).
 */
struct codec_spec;
qv_status validate_collection_config(const qv_db *db,
                                     const qv_collection_config *config,
                                     qv_collection_config *resolved,
                                     struct codec_spec *spec_out);
qv_status validate_doc_id(const qv_db *db, const char *what, const char *id);
qv_status validate_vector(const qv_db *db, const char *what,
                          const float *vector, uint32_t dim);
/*
 * The vectors a collection of metric accepts beyond finiteness (quiver.h,
 * "Which vectors"): l2 and ip a squared norm within QV_SQNORM_MAX, cosine
 * not all zeros; with f16_codes (a stored vector of an l2 or ip collection
 * with codec f16) components within QV_F16_MAX. v's components must be
 * finite already. vector_outside_rule returns 0 when v qualifies, else 1
 * with the reason in why; validate_vector_rule sets it as the message of
 * QV_ERR_INVALID, after what ("document 3: ").
 */
int vector_outside_rule(const float *v, uint32_t dim, qv_metric metric,
                        int f16_codes, char *why, size_t len);
qv_status validate_vector_rule(const qv_db *db, const char *what,
                               const float *v, uint32_t dim, qv_metric metric,
                               int f16_codes);
/* Parse payload text; on success *compact is a new string (qv_mem_free). */
qv_status payload_normalize(const qv_db *db, const char *what,
                            const char *payload, char **compact);

/* results.c: a qv_record in one allocation (NULL when out of memory);
 * payload may be NULL for none. */
qv_record *record_new(const char *id, size_t id_len, const float *vector,
                      uint32_t dim, const char *payload, size_t payload_len);

/*
 * results.c: a page of records in one allocation. ids[i], vecs[i],
 * payloads[i] (NULL for none) with their lengths; next is the id to
 * resume after, or NULL. NULL when out of memory.
 */
typedef struct record_src {
    const char *id;
    size_t id_len;
    const float *vector;
    const char *payload;   /* NULL: none */
    size_t payload_len;
} record_src;
qv_page *page_new(const record_src *src, size_t n, uint32_t dim, int more);

/* embedded.c */
qv_status eng_open(const char *path, const qv_open_options *opts,
                        qv_db **out);

/* wire/remote.c: the remote transport, for "qv://host:port" */
qv_status remote_open(const char *uri, const qv_open_options *opts,
                      qv_db **out);

#endif
