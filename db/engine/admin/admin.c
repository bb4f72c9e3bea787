/*
 * admin.c - the embedded transport's scan, backup, stats, sizes and
 * settings.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "ann/codec.h"
#include "db/engine/store/txn.h"
#include "db/core/error.h"
#include "db/core/filter.h"
#include "db/engine/graphs/graph.h"
#include "common/json.h"
#include "storage/keys.h"

/* One document of a scan, from its ids entry. */
static int scan_one(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                    const MDB_val *ids_key, const MDB_val *ids_val,
                    record_src *out)
{
    uint32_t iid;
    if (ids_entry_iid(ids_val, rec, &iid) != 0)
        return MDB_CORRUPTED;
    unsigned char buf[KEY_DOC_LEN];
    key_doc(buf, rec->id, iid);
    MDB_val key = {sizeof buf, buf}, doc, vec;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_DOCS), &key, &doc);
    if (rc == 0)
        rc = mdb_get(txn, st_dbi(db->env, ST_DB_VECTORS), &key, &vec);
    if (rc != 0)
        return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
    MDB_val id, payload;
    if (doc_record_split(&doc, &id, &payload) != 0 ||
        vector_record_fault(&vec, rec->dim) != REC_OK)
        return MDB_CORRUPTED;
    out->id = (const char *)ids_key->mv_data + KEY_COLL_LEN;
    out->id_len = ids_key->mv_size - KEY_COLL_LEN;
    out->vector = vec.mv_data;
    out->payload_len = payload.mv_size;
    out->payload = payload.mv_data;
    return 0;
}

/* Walk the ids map from after; fill src with up to limit documents. */
static int scan_walk(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                     const json_t *filter, const char *after, uint32_t limit,
                     record_src *src, size_t *n, int *more)
{
    MDB_cursor *cur;
    unsigned char start[KEY_IDS_MAX], prefix[KEY_COLL_LEN];
    key_put_u32(prefix, rec->id);
    MDB_val key = {key_ids(start, rec->id, after ? after : "",
                           after ? strlen(after) : 0), start}, val;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_IDS), &cur);
    if (rc != 0)
        return rc;
    *n = 0;
    *more = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size <= KEY_COLL_LEN || memcmp(key.mv_data, prefix,
                                                  sizeof prefix))
            break;
        if (after && key.mv_size == KEY_COLL_LEN + strlen(after) &&
            memcmp((char *)key.mv_data + KEY_COLL_LEN, after,
                   strlen(after)) == 0)
            continue;  /* the page starts after it */
        if (*n == limit) {
            *more = 1;
            break;
        }
        rc = scan_one(db, txn, rec, &key, &val, &src[*n]);
        if (rc != 0)
            break;
        if (filter) {
            json_t *payload;
            rc = filter_payload(src[*n].payload, src[*n].payload_len,
                                &payload);
            if (rc != 0)
                break;
            int match = filter_match(filter, payload);
            json_decref(payload);
            if (!match)
                continue;
        }
        ++*n;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

qv_status admin_scan(qv_db *base, const char *collection, const char *filter,
                     const char *after, uint32_t limit, qv_page **out)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    json_t *f = NULL;
    coll_rec rec;
    size_t n = 0;
    int more = 0;
    if (filter) {
        qv_status fst = filter_parse(base, filter, &f);
        if (fst != QV_OK)
            return fst;
    }
    record_src *src = qv_malloc(limit * sizeof *src);
    if (!src) {
        json_decref(f);
        return qv_fail(base, QV_ERR_NOMEM, "out of memory for a page");
    }
    qv_status st = eng_read_begin(db, &txn, "scanning");
    if (st != QV_OK) {
        qv_mem_free(src);
        json_decref(f);
        return st;
    }
    st = catalog_get(db, txn, collection, &rec);
    if (st == QV_OK) {
        int rc = scan_walk(db, txn, &rec, f, after, limit, src, &n, &more);
        if (rc != 0)
            st = eng_status(db, rc, "scanning");
    }
    if (st == QV_OK) {
        *out = page_new(src, n, rec.dim, more);
        if (!*out)
            st = qv_fail(base, QV_ERR_NOMEM, "out of memory for a page");
    }
    st_read_end(db->env, txn);
    qv_mem_free(src);
    json_decref(f);
    return st;
}

qv_status admin_backup(qv_db *base, const char *dir)
{
    eng_db *db = (eng_db *)base;
    char path[4096];
    struct stat st;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qv_fail(base, QV_ERR_IO, "backup directory %s: %s", dir,
                       strerror(errno));
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &st) == 0)
        return qv_fail(base, QV_ERR_EXISTS, "%s already holds a database; "
                       "back up into a new directory", dir);
    int rc = st_backup(db->env, dir);
    if (rc != 0)
        return eng_status(db, rc, "writing the backup");
    return QV_OK;
}

qv_status admin_compact(qv_db *base)
{
    eng_db *db = (eng_db *)base;
    int rc = st_compact(db->env);
    /* every page moved: the graphs' offsets of full vectors are void */
    graph_forget_all(db);
    if (rc == ST_ERR_IN_USE)
        return qv_fail(base, QV_ERR_IN_USE, "another process has the database "
                       "open (or it cannot be told); compact needs it alone");
    return eng_status(db, rc, "compacting");
}

qv_status admin_stats(qv_db *base, char **json)
{
    eng_db *db = (eng_db *)base;
    qv_collection_info *list = NULL;
    size_t n = 0;
    qv_status st = catalog_list(base, &list, &n);
    if (st != QV_OK)
        return st;
    uint64_t docs = 0;
    for (size_t i = 0; i < n; i++)
        docs += list[i].count;
    qv_mem_free(list);
    struct st_figures f;
    st_figures(db->env, &f);
    long rss_kb = 0;
    char line[256];
    FILE *status = fopen("/proc/self/status", "r");
    while (status && fgets(line, sizeof line, status) &&
           sscanf(line, "VmRSS: %ld kB", &rss_kb) != 1)
        ;
    if (status)
        fclose(status);
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:b, s:I}",
                          "collections", (json_int_t)n,
                          "documents", (json_int_t)docs,
                          "file_bytes", (json_int_t)f.file_bytes,
                          "used_bytes", (json_int_t)f.used_bytes,
                          "map_bytes", (json_int_t)f.map_bytes,
                          "page_bytes", (json_int_t)f.page_bytes,
                          "last_txn", (json_int_t)f.last_txn,
                          "readers", f.readers,
                          "sync", !(base->flags & QV_OPEN_NOSYNC),
                          "rss_bytes", (json_int_t)rss_kb * 1024);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text)
        return qv_fail(base, QV_ERR_NOMEM, "out of memory for stats");
    *json = qv_strndup(text, strlen(text));
    qv_json_free(text);
    return *json ? QV_OK : qv_fail(base, QV_ERR_NOMEM, "out of memory");
}

qv_status admin_set_threads(qv_db *base, uint32_t threads)
{
    eng_db *db = (eng_db *)base;
    db->threads = threads ? threads : eng_default_threads();
    return QV_OK;
}

struct train_ctx {
    eng_db *db;
    const char *name;
    qv_status status;
};

static int train_txn(MDB_txn *txn, void *arg)
{
    struct train_ctx *c = arg;
    coll_rec rec;
    c->status = catalog_get(c->db, txn, c->name, &rec);
    if (c->status != QV_OK)
        return ST_ABORT;
    codec_spec spec = {(enum codec_kind)rec.codec, rec.codec_param};
    char text[CODEC_SPEC_MAX];
    codec_format(&spec, text);
    if (!codec_train_min(&spec))
        c->status = qv_fail(&c->db->base, QV_ERR_INVALID, "collection '%s' "
                            "has codec %s, which learns nothing from the "
                            "data", c->name, text);
    else if (rec.count < codec_train_least(&spec))
        c->status = qv_fail(&c->db->base, QV_ERR_INVALID, "collection '%s' "
                            "has %llu documents; training %s needs at least "
                            "%u", c->name, (unsigned long long)rec.count,
                            text, codec_train_least(&spec));
    else
        c->status = graph_train(c->db, txn, &rec);
    if (c->status != QV_OK)
        return ST_ABORT;
    return catalog_put(c->db, txn, c->name, &rec);
}

qv_status admin_train(qv_db *base, const char *collection)
{
    eng_db *db = (eng_db *)base;
    struct train_ctx c = {db, collection, QV_OK};
    return eng_write(db, train_txn, &c, &c.status, "training the codec");
}
