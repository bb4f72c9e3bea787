/*
 * collection.c - collections as the API sees them: create, drop, describe
 * (with the sizes of their records and graph) and list. Above the catalog
 * record (store/catalog.c), which only reads and writes records, and the
 * graphs, which a drop forgets.
 */
#include <string.h>

#include "common/alloc.h"
#include "db/core/error.h"
#include "db/engine/graphs/graph.h"
#include "db/engine/store/txn.h"
#include "storage/keys.h"


static void add_bytes(void *ctx, const MDB_val *key, const MDB_val *val)
{
    *(uint64_t *)ctx += key->mv_size + val->mv_size;
}

qv_status collection_sizes(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                           qv_collection_info *info)
{
    static const enum st_db parts[] = {ST_DB_IDS, ST_DB_DOCS, ST_DB_VECTORS,
                                       ST_DB_FREEIDS, ST_DB_GRAPH,
                                       ST_DB_PINDEX, ST_DB_PENTRIES};
    info->disk_bytes = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        int rc = eng_walk_range(db, txn, parts[i], rec->id, add_bytes,
                                &info->disk_bytes);
        if (rc != 0)
            return eng_status(db, rc, "measuring a collection");
    }
    info->memory_bytes = graph_memory_bytes(db, rec->id);
    return QV_OK;
}

struct create_ctx {
    eng_db *db;
    const char *name;
    const qv_collection_config *config;
    codec_spec spec;
    qv_status status;
};

static int create_txn(MDB_txn *txn, void *arg)
{
    struct create_ctx *c = arg;
    MDB_val key = catalog_key(c->name), val;
    int rc = mdb_get(txn, st_dbi(c->db->env, ST_DB_CATALOG), &key, &val);
    if (rc == 0) {
        c->status = qv_fail(&c->db->base, QV_ERR_EXISTS,
                            "collection '%s' already exists", c->name);
        return ST_ABORT;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    coll_rec rec = {
        .format = COLL_FORMAT,
        .dim = c->config->dim,
        .metric = (uint32_t)c->config->metric,
        .M = c->config->M,
        .ef_construction = c->config->ef_construction,
        .entry = UINT32_MAX,
        .max_level = -1,
    };
    rec.codec = c->spec.kind;
    rec.codec_param = c->spec.param;
    rec.train_min = c->config->train_min ? c->config->train_min
                                         : codec_train_min(&c->spec);
    rc = eng_next_id(c->db, txn, META_NEXT_COLLECTION, &rec.id);
    if (rc == 0)
        rc = catalog_put(c->db, txn, c->name, &rec);
    return rc;
}

qv_status catalog_create(qv_db *base, const char *name,
                         const qv_collection_config *config)
{
    eng_db *db = (eng_db *)base;
    struct create_ctx c = {db, name, config, {CODEC_NONE, 0}, QV_OK};
    /* The front door checked config with this same function; here it
     * gives the codec, parsed. */
    qv_status st = validate_collection_config(base, config, NULL, &c.spec);
    if (st != QV_OK)
        return st;
    if (config->shards)
        return qv_fail(base, QV_ERR_UNSUPPORTED, "shards and replicas need a "
                       "cluster node (quiverd --cluster); this database is a "
                       "single node");
    return eng_write(db, create_txn, &c, &c.status, "creating a collection");
}

struct drop_ctx {
    eng_db *db;
    const char *name;
    uint32_t coll_id;
    qv_status status;
};

static int drop_txn(MDB_txn *txn, void *arg)
{
    static const enum st_db per_collection[] = {
        ST_DB_IDS, ST_DB_DOCS, ST_DB_VECTORS, ST_DB_FREEIDS, ST_DB_GRAPH,
        ST_DB_PINDEX, ST_DB_PENTRIES, ST_DB_CODES, ST_DB_CODECS
    };
    struct drop_ctx *c = arg;
    coll_rec rec;
    c->status = catalog_get(c->db, txn, c->name, &rec);
    if (c->status != QV_OK)
        return ST_ABORT;
    c->coll_id = rec.id;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, rec.id);
    int rc = 0;
    for (size_t i = 0; i < sizeof per_collection / sizeof *per_collection &&
                       rc == 0; i++)
        rc = st_delete_prefix(txn, st_dbi(c->db->env, per_collection[i]),
                              prefix, sizeof prefix);
    MDB_val key = catalog_key(c->name);
    if (rc == 0)
        rc = mdb_del(txn, st_dbi(c->db->env, ST_DB_CATALOG), &key, NULL);
    return rc;
}

qv_status catalog_drop(qv_db *base, const char *name)
{
    eng_db *db = (eng_db *)base;
    struct drop_ctx c = {db, name, 0, QV_OK};
    qv_status st = eng_write(db, drop_txn, &c, &c.status,
                             "dropping a collection");
    if (st == QV_OK)
        graph_forget(db, c.coll_id);
    return st;
}

static void fill_info(qv_collection_info *info, const char *name, size_t len,
                      const coll_rec *rec)
{
    memset(info, 0, sizeof *info);
    memcpy(info->name, name, len);
    info->dim = rec->dim;
    info->metric = (qv_metric)rec->metric;
    info->count = rec->count;
    info->M = rec->M;
    info->ef_construction = rec->ef_construction;
    codec_spec spec = {(enum codec_kind)rec->codec, rec->codec_param};
    codec_format(&spec, info->codec);
    info->codec_trained = coll_has_graph(rec);
    info->train_min = rec->train_min;
    info->code_bytes = (uint32_t)codec_spec_code_bytes(&spec, rec->dim);
}

qv_status catalog_describe(qv_db *base, const char *name,
                           qv_collection_info *info)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    coll_rec rec;
    qv_status st = eng_read_begin(db, &txn, "describing a collection");
    if (st != QV_OK)
        return st;
    st = catalog_get(db, txn, name, &rec);
    qv_collection_info filled;   /* info stays untouched on error */
    if (st == QV_OK) {
        fill_info(&filled, name, strlen(name), &rec);
        st = collection_sizes(db, txn, &rec, &filled);
    }
    st_read_end(db->env, txn);
    if (st == QV_OK)
        *info = filled;
    return st;
}

/* Copy every catalog entry into list (NULL: only count them). */
static qv_status catalog_scan(eng_db *db, MDB_txn *txn,
                              qv_collection_info *list, size_t *count)
{
    MDB_cursor *cur;
    MDB_val key, val;
    size_t n = 0;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_CATALOG), &cur);
    if (rc != 0)
        return eng_status(db, rc, "listing collections");
    qv_status st = QV_OK;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), n++) {
        if (!list)
            continue;
        coll_rec rec;
        if (key.mv_size > QV_NAME_MAX) {
            st = qv_fail(&db->base, QV_ERR_CORRUPT,
                         "catalog entry %zu is malformed", n);
            break;
        }
        st = catalog_decode(db, key.mv_data, key.mv_size, &val, &rec);
        if (st != QV_OK)
            break;
        fill_info(&list[n], key.mv_data, key.mv_size, &rec);
    }
    mdb_cursor_close(cur);
    if (st == QV_OK && rc != MDB_NOTFOUND)
        st = eng_status(db, rc, "listing collections");
    *count = n;
    return st;
}

qv_status catalog_list(qv_db *base, qv_collection_info **out, size_t *count)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    qv_collection_info *list = NULL;
    size_t n = 0;
    qv_status st = eng_read_begin(db, &txn, "listing collections");
    if (st != QV_OK)
        return st;
    st = catalog_scan(db, txn, NULL, &n);
    if (st == QV_OK && n > 0) {
        list = qv_calloc(n, sizeof *list);
        st = list ? catalog_scan(db, txn, list, &n)
                  : qv_fail(base, QV_ERR_NOMEM, "listing collections: out of "
                            "memory");
    }
    st_read_end(db->env, txn);
    if (st != QV_OK) {
        qv_mem_free(list);
        return st;
    }
    *out = list;
    *count = n;
    return QV_OK;
}
