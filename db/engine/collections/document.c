/*
 * document.c - upsert, get and delete of documents.
 *
 * A document is three records (keys.h): its external id mapped to a dense
 * internal id, the document (id and payload) and its vector. Internal ids
 * of deleted documents are kept in FREEIDS and handed out again, so ids
 * stay dense and space is reused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "db/engine/store/txn.h"
#include "db/core/error.h"
#include "db/core/filter.h"
#include "db/engine/graphs/graph.h"
#include "storage/keys.h"
#include "db/engine/store/pindex.h"

/* put_document's code for a collection that has used every internal id:
 * below storage's codes and LMDB's (storage/env.h), so never one of them. */
#define ERR_COLLECTION_FULL (-100000)

/* Take the lowest free internal id of the collection, if there is one. */
static int take_free_iid(eng_db *db, MDB_txn *txn, uint32_t coll,
                         uint32_t *iid, int *found)
{
    MDB_cursor *cur;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, coll);
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_FREEIDS), &cur);
    if (rc != 0)
        return rc;
    MDB_val key = {sizeof prefix, prefix}, val;
    *found = 0;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    if (rc == 0 && key.mv_size == KEY_DOC_LEN &&
        memcmp(key.mv_data, prefix, sizeof prefix) == 0) {
        *iid = key_get_u32((const unsigned char *)key.mv_data + KEY_COLL_LEN);
        *found = 1;
        rc = mdb_cursor_del(cur, 0);
    } else if (rc == MDB_NOTFOUND || rc == 0) {
        rc = 0;
    }
    mdb_cursor_close(cur);
    return rc;
}

/* Give a new document an internal id and map its external id to it. */
static int assign_iid(eng_db *db, MDB_txn *txn, coll_rec *rec,
                      MDB_val *ids_key, uint32_t *iid)
{
    int found;
    int rc = take_free_iid(db, txn, rec->id, iid, &found);
    if (rc != 0)
        return rc;
    if (found && *iid >= rec->next_iid)
        return MDB_CORRUPTED;   /* a free id is one handed out before */
    if (!found) {
        if (rec->next_iid == UINT32_MAX)
            return ERR_COLLECTION_FULL;
        *iid = rec->next_iid++;
    }
    rec->count++;
    MDB_val val = {sizeof *iid, iid};
    return mdb_put(txn, st_dbi(db->env, ST_DB_IDS), ids_key, &val, 0);
}

/*
 * Store one document. *iid is its internal id; *vector_changed is 0 when
 * it replaced a document with the very same vector (the index needs no
 * change then, which makes re-running an import cheap).
 */
/* Keep the payload indexes of document iid exact: the entries of its old
 * payload (the docs record at key, if any) go, the new payload's come. */
static int reindex_payload(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                           const pindex_set *set, uint32_t iid,
                           const MDB_val *key, const char *new_text)
{
    if (set->n == 0)
        return 0;
    MDB_val old;
    json_t *before = NULL, *after = NULL;
    int rc = 0;
    if (mdb_get(txn, st_dbi(db->env, ST_DB_DOCS), (MDB_val *)key, &old) == 0)
        rc = pindex_payload_of(&old, &before);
    if (rc == 0 && new_text)
        rc = filter_payload(new_text, strlen(new_text), &after);
    if (rc == 0)
        rc = pindex_update(db, txn, rec->id, set, iid, before, after);
    json_decref(before);
    json_decref(after);
    return rc;
}

static int put_document(eng_db *db, MDB_txn *txn, coll_rec *rec,
                        const pindex_set *set, const qv_doc *doc,
                        uint32_t *iid_out, int *vector_changed)
{
    unsigned char ids_buf[KEY_IDS_MAX], doc_buf[KEY_DOC_LEN];
    size_t id_len = strlen(doc->id);
    MDB_val ids_key = {key_ids(ids_buf, rec->id, doc->id, id_len), ids_buf};
    MDB_val val;
    uint32_t iid;

    size_t vec_bytes = rec->dim * sizeof(float);
    int existed = 0;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_IDS), &ids_key, &val);
    if (rc == 0) {
        rc = ids_entry_iid(&val, rec, &iid);
        existed = 1;
    } else if (rc == MDB_NOTFOUND) {
        rc = assign_iid(db, txn, rec, &ids_key, &iid);
    }
    if (rc != 0)
        return rc;

    key_doc(doc_buf, rec->id, iid);
    MDB_val key = {sizeof doc_buf, doc_buf};
    *iid_out = iid;
    rc = reindex_payload(db, txn, rec, set, iid, &key, doc->payload);
    if (rc != 0)
        return rc;
    *vector_changed = 1;
    if (existed &&
        mdb_get(txn, st_dbi(db->env, ST_DB_VECTORS), &key, &val) == 0 &&
        val.mv_size == vec_bytes && memcmp(val.mv_data, doc->vector,
                                           vec_bytes) == 0)
        *vector_changed = 0;
    size_t payload_len = doc->payload ? strlen(doc->payload) : 0;
    val.mv_size = 1 + id_len + payload_len;
    rc = mdb_put(txn, st_dbi(db->env, ST_DB_DOCS), &key, &val, MDB_RESERVE);
    if (rc != 0)
        return rc;
    unsigned char *p = val.mv_data;
    p[0] = (unsigned char)id_len;
    memcpy(p + 1, doc->id, id_len);
    if (payload_len)
        memcpy(p + 1 + id_len, doc->payload, payload_len);

    if (!*vector_changed)
        return 0;
    val = (MDB_val){vec_bytes, (void *)doc->vector};
    return mdb_put(txn, st_dbi(db->env, ST_DB_VECTORS), &key, &val, 0);
}

struct upsert_ctx {
    eng_db *db;
    const char *name;
    const qv_doc *docs;
    size_t n;
    qv_status status;
    live_graph *touched;    /* the graph this attempt changed */
    uint32_t *iids;         /* per document */
    int *changed;           /* per document: the index must take it */
    /* nodes that took new vectors, for graph_offsets_refill */
    uint32_t *indexed;
    size_t nindexed;
    uint64_t epoch;
    uint64_t generation;    /* committed by this attempt */
    uint32_t fresh_from;    /* internal ids from here on were never used */
};

static qv_status check_batch(eng_db *db, const char *name,
                             const coll_rec *rec, const qv_doc *docs,
                             size_t n)
{
    char what[48];
    qv_status st = QV_OK;
    for (size_t i = 0; i < n && st == QV_OK; i++) {
        snprintf(what, sizeof what, "document %zu: ", i);
        st = coll_check_dim(db, name, rec, what, docs[i].dim);
        if (st == QV_OK)
            st = validate_vector_rule(&db->base, what, docs[i].vector,
                                      rec->dim, (qv_metric)rec->metric,
                                      coll_f16_codes(rec));
    }
    return st;
}

/* Order by internal id, then by position in the batch. */
static int by_iid_then_position(const void *pa, const void *pb, void *arg)
{
    const uint32_t *iids = arg;
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    if (iids[a] != iids[b])
        return iids[a] < iids[b] ? -1 : 1;
    return a < b ? -1 : 1;
}

/*
 * The documents whose vector the index must take: for an id repeated in
 * the batch only the last one. Returns how many, their positions in order.
 */
static size_t documents_to_insert(const struct upsert_ctx *c, size_t *order)
{
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++)
        order[i] = i;
    qsort_r(order, c->n, sizeof *order, by_iid_then_position, c->iids);
    int run_changed = 0;
    for (size_t i = 0; i < c->n; i++) {
        /* A later copy of an id compares its vector with the earlier copy
         * stored by this same batch: the run needs indexing if any copy
         * changed it (the first copy of a new document always does). */
        run_changed |= c->changed[order[i]];
        int last = i + 1 == c->n || c->iids[order[i + 1]] != c->iids[order[i]];
        if (last && run_changed)
            order[m++] = order[i];
        if (last)
            run_changed = 0;
    }
    return m;
}

/* Insert the batch's new or changed vectors into the graph. */
static qv_status insert_into_graph(struct upsert_ctx *c, MDB_txn *txn,
                                   const coll_rec *rec, const size_t *order,
                                   size_t m)
{
    live_graph *ix = c->touched;
    hnsw *g = ix->graph;
    uint32_t *ids = qv_malloc(m * sizeof *ids);
    const float **vecs = qv_malloc(m * sizeof *vecs);
    int *levels = qv_malloc(m * sizeof *levels);
    hnsw_scratch *s = graph_scratch_get(ix);
    int rc = !ids || !vecs || !levels || !s ? -1 : 0;
    int rewrites = 0;
    for (size_t i = 0; i < m && rc == 0; i++) {
        ids[i] = c->iids[order[i]];
        vecs[i] = c->docs[order[i]].vector;
        levels[i] = hnsw_random_level(g, ids[i], rec->generation);
        rewrites |= ids[i] < c->fresh_from;
    }
    /*
     * A slot used before (a document's new vector, or the id of a deleted
     * one) may be under a running search's feet: searches walk through
     * removed nodes too. Its vector is rewritten in place, so such a batch
     * waits for the running searches and holds new ones off until it is
     * linked. Fresh slots need no such care: nothing reaches them before
     * they are published.
     */
    if (rewrites) {
        pthread_rwlock_wrlock(&ix->grow_lock);
        atomic_store(&ix->rewritten_at, rec->generation + 1);
    }
    for (size_t i = 0; i < m && rc == 0; i++) {
        if (hnsw_contains(g, ids[i]))   /* a new vector for a document */
            rc = hnsw_remove(g, s, ids[i]);
    }
    unsigned threads = eng_threads(c->db);
    if (rc == 0 && threads > 1 && m >= 4u * threads) {
        rc = hnsw_insert_parallel(g, ids, vecs, levels, m, threads);
    } else {
        for (size_t i = 0; i < m && rc == 0; i++)
            rc = hnsw_insert(g, s, ids[i], vecs[i], levels[i]);
    }
    size_t orphans;
    if (rc == 0)
        rc = hnsw_repair(g, s, &orphans);
    if (rewrites)
        pthread_rwlock_unlock(&ix->grow_lock);
    graph_scratch_put(ix, s);
    qv_mem_free(vecs);
    qv_mem_free(levels);
    if (rc != 0) {
        qv_mem_free(ids);
        graph_mark_stale(ix);
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory while "
                       "indexing");
    }
    qv_mem_free(c->indexed);
    c->indexed = ids;
    c->nindexed = m;
    rc = graph_put_codes(c->db, txn, rec, ix, ids, m, &c->epoch);
    if (rc != 0) {
        graph_mark_stale(ix);
        return eng_status(c->db, rc, "storing codes");
    }
    return QV_OK;
}

static qv_status graph_insert_documents(struct upsert_ctx *c, MDB_txn *txn,
                                 const coll_rec *rec)
{
    size_t *order = qv_malloc(c->n * sizeof *order);
    if (!order)
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory");
    size_t m = documents_to_insert(c, order);
    qv_status st = graph_reserve(c->db, c->touched, rec->next_iid);
    if (st == QV_OK && m > 0)
        st = insert_into_graph(c, txn, rec, order, m);
    qv_mem_free(order);
    return st;
}

/* Forget the graph changes of an attempt that did not commit. */
static void drop_touched(live_graph **touched)
{
    graph_mark_stale(*touched);
    graph_release(*touched);
    *touched = NULL;
}

static int upsert_txn(MDB_txn *txn, void *arg)
{
    struct upsert_ctx *c = arg;
    coll_rec rec;
    if (c->touched)  /* an earlier attempt ran out of map and was undone */
        drop_touched(&c->touched);
    c->status = catalog_get(c->db, txn, c->name, &rec);
    c->fresh_from = rec.next_iid;
    if (c->status == QV_OK)
        c->status = check_batch(c->db, c->name, &rec, c->docs, c->n);
    if (c->status == QV_OK)
        c->status = graph_acquire(c->db, txn, &rec, &c->touched);
    if (c->status != QV_OK)
        return ST_ABORT;
    pindex_set set;
    int rc = pindex_load(c->db, txn, rec.id, &set);
    for (size_t i = 0; i < c->n && rc == 0; i++)
        rc = put_document(c->db, txn, &rec, &set, &c->docs[i], &c->iids[i],
                          &c->changed[i]);
    if (rc == ERR_COLLECTION_FULL) {
        c->status = qv_fail(&c->db->base, QV_ERR_LIMIT,
                            "collection '%s' holds the most documents it can "
                            "(%u)", c->name, QV_DOCS_MAX);
        return ST_ABORT;
    }
    if (rc == 0 && c->touched) {
        c->status = graph_insert_documents(c, txn, &rec);
        if (c->status != QV_OK)
            return ST_ABORT;
        rc = graph_flush(c->db, txn, &rec, c->touched);
    }
    if (rc == 0 && !coll_has_graph(&rec) && rec.count >= rec.train_min) {
        /* enough vectors: train the codec and build the graph now */
        c->status = graph_train(c->db, txn, &rec);
        if (c->status != QV_OK)
            return ST_ABORT;
    }
    if (rc == 0)
        rc = catalog_put(c->db, txn, c->name, &rec);
    c->generation = rec.generation;
    return rc;
}

qv_status document_upsert(qv_db *base, const char *collection,
                          const qv_doc *docs, size_t n)
{
    eng_db *db = (eng_db *)base;
    struct upsert_ctx c = {.db = db, .name = collection, .docs = docs,
                           .n = n, .status = QV_OK};
    c.iids = qv_calloc(n, sizeof *c.iids);
    c.changed = qv_calloc(n, sizeof *c.changed);
    qv_status st;
    if (!c.iids || !c.changed)
        st = qv_fail(base, QV_ERR_NOMEM, "out of memory for %zu documents", n);
    else
        st = eng_write(db, upsert_txn, &c, &c.status, "upserting documents");
    if (c.touched) {
        if (st != QV_OK)
            graph_mark_stale(c.touched);
        else
            graph_offsets_refill(db, c.touched, collection, c.generation,
                                 c.epoch, c.indexed, c.nindexed);
        graph_release(c.touched);
    }
    qv_mem_free(c.indexed);
    qv_mem_free(c.iids);
    qv_mem_free(c.changed);
    return st;
}

/* Look up the internal id of an external id. */
static qv_status find_iid(eng_db *db, MDB_txn *txn, const char *collection,
                          const coll_rec *rec, const char *id, uint32_t *iid)
{
    unsigned char buf[KEY_IDS_MAX];
    MDB_val key = {key_ids(buf, rec->id, id, strlen(id)), buf}, val;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_IDS), &key, &val);
    if (rc == MDB_NOTFOUND)
        return qv_fail(&db->base, QV_ERR_NOT_FOUND,
                       "document '%s' not found in collection '%s'", id,
                       collection);
    if (rc != 0)
        return eng_status(db, rc, "looking up a document id");
    if (ids_entry_iid(&val, rec, iid) != 0)
        return qv_fail(&db->base, QV_ERR_CORRUPT,
                       "id map entry of '%s' is malformed (%zu bytes, or an "
                       "internal id from the next one on)", id, val.mv_size);
    return QV_OK;
}

struct delete_ctx {
    eng_db *db;
    const char *name;
    const char *id;
    qv_status status;
    live_graph *touched;
};

/* Take nodes iids[0..n) out of the graph and write the records that
 * changed. */
static int unindex_documents(struct delete_ctx *c, MDB_txn *txn,
                             coll_rec *rec, const uint32_t *iids, size_t n)
{
    live_graph *ix = c->touched;
    if (!ix)
        return 0;   /* no graph: the codec is not trained yet */
    graph_offsets_forget(ix, iids, n);
    hnsw_scratch *s = graph_scratch_get(ix);
    size_t orphans;
    int rc = s ? 0 : -1;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = hnsw_remove(ix->graph, s, iids[i]);
    if (rc == 0)
        rc = hnsw_repair(ix->graph, s, &orphans);
    graph_scratch_put(ix, s);
    if (rc != 0) {
        graph_mark_stale(ix);
        c->status = qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory "
                            "while updating the index");
        return ST_ABORT;
    }
    return graph_flush(c->db, txn, rec, ix);
}

/* Remove document iid (external id ext) from every record but the graph;
 * its internal id becomes free. */
static int remove_records(eng_db *db, MDB_txn *txn, coll_rec *rec,
                          const pindex_set *set, uint32_t iid,
                          const char *ext, size_t ext_len)
{
    unsigned char ids_buf[KEY_IDS_MAX], doc_buf[KEY_DOC_LEN];
    MDB_val ids_key = {key_ids(ids_buf, rec->id, ext, ext_len), ids_buf};
    key_doc(doc_buf, rec->id, iid);
    MDB_val key = {sizeof doc_buf, doc_buf}, empty = {0, NULL};
    int rc = reindex_payload(db, txn, rec, set, iid, &key, NULL);
    if (rc == 0)
        rc = mdb_del(txn, st_dbi(db->env, ST_DB_IDS), &ids_key, NULL);
    if (rc == 0)
        rc = mdb_del(txn, st_dbi(db->env, ST_DB_DOCS), &key, NULL);
    if (rc == 0)
        rc = mdb_del(txn, st_dbi(db->env, ST_DB_VECTORS), &key, NULL);
    if (rc == 0 && rec->codec) {
        rc = mdb_del(txn, st_dbi(db->env, ST_DB_CODES), &key, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;   /* none before training */
    }
    if (rc == 0)
        rc = mdb_put(txn, st_dbi(db->env, ST_DB_FREEIDS), &key, &empty, 0);
    rec->count--;
    return rc;
}

/*
 * What a delete reads first, in its transaction: the collection's record,
 * the internal id of c->id when iid is not NULL (a delete by id), the
 * graph and the payload indexes. 0, or ST_ABORT with c->status set, or
 * an LMDB code.
 */
static int begin_delete(struct delete_ctx *c, MDB_txn *txn, coll_rec *rec,
                        uint32_t *iid, pindex_set *set)
{
    if (c->touched)  /* an earlier attempt ran out of map and was undone */
        drop_touched(&c->touched);
    c->status = catalog_get(c->db, txn, c->name, rec);
    if (c->status == QV_OK && iid)
        c->status = find_iid(c->db, txn, c->name, rec, c->id, iid);
    if (c->status == QV_OK)
        c->status = graph_acquire(c->db, txn, rec, &c->touched);
    if (c->status != QV_OK)
        return ST_ABORT;
    return pindex_load(c->db, txn, rec->id, set);
}

static int delete_txn(MDB_txn *txn, void *arg)
{
    struct delete_ctx *c = arg;
    coll_rec rec;
    uint32_t iid;
    pindex_set set;
    int rc = begin_delete(c, txn, &rec, &iid, &set);
    if (rc == 0)
        rc = remove_records(c->db, txn, &rec, &set, iid, c->id,
                            strlen(c->id));
    if (rc == 0)
        rc = unindex_documents(c, txn, &rec, &iid, 1);
    if (rc == 0)
        rc = catalog_put(c->db, txn, c->name, &rec);
    return rc;
}

/* The documents a filter matches, gathered before any is deleted. */
struct doomed {
    const json_t *filter;
    uint32_t *iids;
    char (*ids)[QV_ID_MAX + 1];
    size_t n, cap;
    int failed;
};

static void gather_doomed(void *arg, const MDB_val *key, const MDB_val *val)
{
    struct doomed *d = arg;
    MDB_val id;
    json_t *payload;
    if (d->failed || key->mv_size != KEY_DOC_LEN ||
        doc_record_split(val, &id, NULL) != 0)
        return;
    if (pindex_payload_of(val, &payload) != 0) {
        d->failed = 1;
        return;
    }
    int match = filter_match(d->filter, payload);
    json_decref(payload);
    if (!match)
        return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        uint32_t *iids = qv_realloc(d->iids, cap * sizeof *iids);
        if (iids)
            d->iids = iids;
        void *ids = iids ? qv_realloc(d->ids, cap * sizeof *d->ids) : NULL;
        if (!ids) {
            d->failed = 1;
            return;
        }
        d->ids = ids;
        d->cap = cap;
    }
    d->iids[d->n] = key_get_u32((const unsigned char *)key->mv_data +
                                KEY_COLL_LEN);
    memcpy(d->ids[d->n], id.mv_data, id.mv_size);
    d->ids[d->n][id.mv_size] = '\0';
    d->n++;
}

struct delete_where_ctx {
    struct delete_ctx base;
    const json_t *filter;
    uint64_t deleted;
};

static int delete_where_txn(MDB_txn *txn, void *arg)
{
    struct delete_where_ctx *w = arg;
    struct delete_ctx *c = &w->base;
    coll_rec rec;
    struct doomed d = {.filter = w->filter};
    pindex_set set;
    int rc = begin_delete(c, txn, &rec, NULL, &set);
    if (rc == 0)
        rc = eng_walk_range(c->db, txn, ST_DB_DOCS, rec.id, gather_doomed, &d);
    if (rc == 0 && d.failed) {
        c->status = qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory");
        rc = ST_ABORT;
    }
    for (size_t i = 0; i < d.n && rc == 0; i++)
        rc = remove_records(c->db, txn, &rec, &set, d.iids[i], d.ids[i],
                            strlen(d.ids[i]));
    if (rc == 0 && d.n > 0)
        rc = unindex_documents(c, txn, &rec, d.iids, d.n);
    if (rc == 0 && d.n > 0)
        rc = catalog_put(c->db, txn, c->name, &rec);
    w->deleted = d.n;
    qv_mem_free(d.iids);
    qv_mem_free(d.ids);
    return rc;
}

qv_status document_delete_where(qv_db *base, const char *collection,
                                const char *filter, uint64_t *deleted)
{
    eng_db *db = (eng_db *)base;
    json_t *f = NULL;
    qv_status st = filter_parse(base, filter, &f);
    if (st != QV_OK)
        return st;
    struct delete_where_ctx w = {{db, collection, NULL, QV_OK, NULL}, f, 0};
    st = eng_write(db, delete_where_txn, &w, &w.base.status,
                   "deleting documents");
    if (w.base.touched) {
        if (st != QV_OK)
            graph_mark_stale(w.base.touched);
        graph_release(w.base.touched);
    }
    json_decref(f);
    if (st == QV_OK)
        *deleted = w.deleted;
    return st;
}

qv_status document_delete(qv_db *base, const char *collection, const char *id)
{
    eng_db *db = (eng_db *)base;
    struct delete_ctx c = {db, collection, id, QV_OK, NULL};
    qv_status st = eng_write(db, delete_txn, &c, &c.status,
                             "deleting a document");
    if (c.touched) {
        if (st != QV_OK)
            graph_mark_stale(c.touched);
        graph_release(c.touched);
    }
    return st;
}

/* Copy a stored document into one caller-owned allocation. */
static qv_status make_record(eng_db *db, const coll_rec *rec,
                             const MDB_val *doc, const MDB_val *vec,
                             qv_record **out)
{
    MDB_val id, payload;
    if (doc_record_split(doc, &id, &payload) != 0 ||
        vector_record_fault(vec, rec->dim) != REC_OK)
        return qv_fail(&db->base, QV_ERR_CORRUPT,
                       "document record is malformed (%zu bytes, vector %zu "
                       "bytes)", doc->mv_size, vec->mv_size);
    *out = record_new(id.mv_data, id.mv_size, vec->mv_data, rec->dim,
                      payload.mv_data, payload.mv_size);
    return *out ? QV_OK : qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
}

qv_status document_get(qv_db *base, const char *collection, const char *id,
                       qv_record **out)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    coll_rec rec;
    uint32_t iid;
    qv_status st = eng_read_begin(db, &txn, "reading a document");
    if (st != QV_OK)
        return st;
    st = catalog_get(db, txn, collection, &rec);
    if (st == QV_OK)
        st = find_iid(db, txn, collection, &rec, id, &iid);
    if (st == QV_OK) {
        unsigned char buf[KEY_DOC_LEN];
        key_doc(buf, rec.id, iid);
        MDB_val key = {sizeof buf, buf}, doc, vec;
        int rc = mdb_get(txn, st_dbi(db->env, ST_DB_DOCS), &key, &doc);
        if (rc == 0)
            rc = mdb_get(txn, st_dbi(db->env, ST_DB_VECTORS), &key, &vec);
        if (rc == MDB_NOTFOUND)
            st = qv_fail(base, QV_ERR_CORRUPT, "document '%s' has an id but "
                         "no record", id);
        else if (rc != 0)
            st = eng_status(db, rc, "reading a document");
        else
            st = make_record(db, &rec, &doc, &vec, out);
    }
    st_read_end(db->env, txn);
    return st;
}
