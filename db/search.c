/*
 * search.c - exact k-nearest-neighbour search.
 *
 * One pass over the collection's vectors in a read snapshot: LMDB hands
 * out pointers into its memory map, so no vector is copied; each one is
 * scored with the SIMD kernels and offered to a bounded heap.
 */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "distance.h"
#include "embedded.h"
#include "error.h"
#include "keys.h"
#include "topk.h"

/* Distance for the metric; for cosine, q is unit length. */
static inline float score(qv_metric metric, const float *q, const float *v,
                          size_t dim)
{
    switch (metric) {
    case QV_METRIC_IP:
        return 1.0f - dist_dot(q, v, dim);
    case QV_METRIC_COSINE:
        return 1.0f - dist_dot(q, v, dim) / sqrtf(dist_dot(v, v, dim));
    case QV_METRIC_L2:
    default:
        return dist_l2sq(q, v, dim);
    }
}

/* A document's external id, straight from the snapshot. */
static int doc_ext_id(emb_db *db, MDB_txn *txn, uint32_t coll, uint32_t iid,
                      MDB_val *id)
{
    unsigned char buf[KEY_DOC_LEN];
    key_doc(buf, coll, iid);
    MDB_val key = {sizeof buf, buf}, val;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_DOCS), &key, &val);
    if (rc != 0)
        return rc;
    const unsigned char *p = val.mv_data;
    if (val.mv_size < 1 || val.mv_size < 1u + p[0])
        return MDB_CORRUPTED;
    id->mv_size = p[0];
    id->mv_data = (void *)(p + 1);
    return 0;
}

struct tiebreak_ctx {
    emb_db *db;
    MDB_txn *txn;
    uint32_t coll;
};

/* Order equal distances by external id (bytewise, shorter first). */
static int compare_ext_ids(void *arg, uint32_t a, uint32_t b)
{
    struct tiebreak_ctx *t = arg;
    MDB_val ida, idb;
    if (doc_ext_id(t->db, t->txn, t->coll, a, &ida) != 0 ||
        doc_ext_id(t->db, t->txn, t->coll, b, &idb) != 0)
        return a < b ? -1 : 1;  /* unreadable: the hit resolution reports it */
    size_t n = ida.mv_size < idb.mv_size ? ida.mv_size : idb.mv_size;
    int c = memcmp(ida.mv_data, idb.mv_data, n);
    if (c != 0)
        return c;
    return ida.mv_size < idb.mv_size ? -1 : 1;
}

/* Offer every vector of the collection to the heap. */
static qv_status scan_vectors(emb_db *db, MDB_txn *txn, const coll_rec *rec,
                              const float *q, topk *heap)
{
    MDB_cursor *cur;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, rec->id);
    size_t vec_bytes = (size_t)rec->dim * sizeof(float);
    qv_metric metric = (qv_metric)rec->metric;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_VECTORS), &cur);
    if (rc != 0)
        return emb_status(db, rc, "searching");
    qv_status st = QV_OK;
    MDB_val key = {sizeof prefix, prefix}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const unsigned char *k = key.mv_data;
        if (key.mv_size != KEY_DOC_LEN || memcmp(k, prefix, sizeof prefix))
            break;
        if (val.mv_size != vec_bytes) {
            st = qv_fail(&db->base, QV_ERR_CORRUPT,
                         "vector record is %zu bytes, expected %zu",
                         val.mv_size, vec_bytes);
            break;
        }
        topk_push(heap, score(metric, q, val.mv_data, rec->dim),
                  key_get_u32(k + KEY_COLL_LEN));
    }
    mdb_cursor_close(cur);
    if (st == QV_OK && rc != 0 && rc != MDB_NOTFOUND)
        st = emb_status(db, rc, "searching");
    return st;
}

/* Turn the sorted heap into one caller-owned qv_hits allocation. */
static qv_status make_hits(emb_db *db, MDB_txn *txn, const coll_rec *rec,
                           const topk *heap, qv_hits **out)
{
    MDB_val *ids = qv_calloc(heap->n, sizeof *ids);
    if (!ids)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for hits");
    qv_status st = QV_OK;
    size_t text = 0;
    for (size_t i = 0; i < heap->n; i++) {
        int rc = doc_ext_id(db, txn, rec->id, heap->items[i].id, &ids[i]);
        if (rc != 0) {
            st = rc == MDB_NOTFOUND
                     ? qv_fail(&db->base, QV_ERR_CORRUPT,
                               "vector %u has no document", heap->items[i].id)
                     : emb_status(db, rc, "reading hit ids");
            goto cleanup;
        }
        text += ids[i].mv_size + 1;
    }
    qv_hits *hits = qv_malloc(sizeof *hits + heap->n * sizeof(qv_hit) + text);
    if (!hits) {
        st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for hits");
        goto cleanup;
    }
    hits->count = heap->n;
    hits->hits = (qv_hit *)(hits + 1);
    char *p = (char *)(hits->hits + heap->n);
    for (size_t i = 0; i < heap->n; i++) {
        memcpy(p, ids[i].mv_data, ids[i].mv_size);
        p[ids[i].mv_size] = '\0';
        hits->hits[i].id = p;
        hits->hits[i].distance = heap->items[i].dist;
        p += ids[i].mv_size + 1;
    }
    *out = hits;
cleanup:
    qv_mem_free(ids);
    return st;
}

/* For cosine, a unit-length copy of the query; otherwise the query. */
static qv_status prepare_query(emb_db *db, const coll_rec *rec,
                               const float *query, float **owned,
                               const float **q)
{
    *owned = NULL;
    *q = query;
    if (rec->metric != QV_METRIC_COSINE)
        return QV_OK;
    float norm = sqrtf(dist_dot(query, query, rec->dim));
    if (!(norm > 0.0f))
        return qv_fail(&db->base, QV_ERR_INVALID,
                       "query vector is all zeros, which has no cosine "
                       "distance");
    *owned = qv_malloc(rec->dim * sizeof(float));
    if (!*owned)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < rec->dim; i++)
        (*owned)[i] = query[i] / norm;
    *q = *owned;
    return QV_OK;
}

qv_status search_exact(qv_db *base, const char *collection, const float *query,
                       uint32_t dim, const qv_search_options *options,
                       qv_hits **out)
{
    emb_db *db = (emb_db *)base;
    MDB_txn *txn;
    coll_rec rec;
    float *normalized = NULL;
    const float *q;
    topk heap = {0};
    qv_status st = emb_read_begin(db, &txn, "searching");
    if (st != QV_OK)
        return st;
    st = catalog_get(db, txn, collection, &rec);
    if (st == QV_OK)
        st = coll_check_dim(db, collection, &rec, "query ", dim);
    if (st == QV_OK)
        st = prepare_query(db, &rec, query, &normalized, &q);
    if (st != QV_OK)
        goto cleanup;
    size_t k = options->k < rec.count ? options->k : (size_t)rec.count;
    struct tiebreak_ctx tb = {db, txn, rec.id};
    if (topk_init(&heap, k, compare_ext_ids, &tb) != 0) {
        st = qv_fail(base, QV_ERR_NOMEM, "out of memory for k=%zu", k);
        goto cleanup;
    }
    if (k > 0)
        st = scan_vectors(db, txn, &rec, q, &heap);
    if (st == QV_OK) {
        topk_sort(&heap);
        st = make_hits(db, txn, &rec, &heap, out);
    }
cleanup:
    topk_release(&heap);
    qv_mem_free(normalized);
    st_read_end(db->env, txn);
    return st;
}
