/*
 * search.c - k-nearest-neighbour search, exact or through the HNSW index.
 *
 * Both paths collect candidates (distance, internal id) in a bounded
 * heap, then resolve them to documents in the caller's read snapshot.
 *
 * Exact: one pass over the collection's vectors in the snapshot; LMDB
 * hands out pointers into its memory map, so no vector is copied.
 *
 * HNSW: the graph in memory (db/index.h) may be slightly ahead of the
 * snapshot (a write in progress in this process), so the beam of ef
 * candidates is resolved in the snapshot and candidates it does not hold
 * are passed over: every hit is a document of the snapshot.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "ann/distance.h"
#include "db/engine/store/txn.h"
#include "db/core/error.h"
#include "db/core/filter.h"
#include "db/engine/graphs/graph.h"
#include "common/json.h"
#include "storage/keys.h"
#include "db/engine/store/pindex.h"
#include "storage/reader.h"
#include "ann/topk.h"

/* Distance for the metric; for cosine, q is unit length. */
static inline float score(qv_metric metric, const float *q, const float *v,
                          size_t dim)
{
    switch (metric) {
    case QV_METRIC_IP:
        return 1.0f - dist_dot(q, v, dim);
    case QV_METRIC_COSINE:
        return dist_cosine(q, v, dim);
    case QV_METRIC_L2:
    default:
        return dist_l2sq(q, v, dim);
    }
}

/* A document's external id and payload (mv_data NULL for none),
 * straight from the snapshot. */
static int doc_fields(eng_db *db, MDB_txn *txn, uint32_t coll, uint32_t iid,
                      MDB_val *id, MDB_val *payload)
{
    unsigned char buf[KEY_DOC_LEN];
    key_doc(buf, coll, iid);
    MDB_val key = {sizeof buf, buf}, val;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_DOCS), &key, &val);
    if (rc != 0)
        return rc;
    return doc_record_split(&val, id, payload);
}

static int doc_ext_id(eng_db *db, MDB_txn *txn, uint32_t coll, uint32_t iid,
                      MDB_val *id)
{
    return doc_fields(db, txn, coll, iid, id, NULL);
}

static int compare_ids(const MDB_val *a, const MDB_val *b)
{
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = memcmp(a->mv_data, b->mv_data, n);
    if (c != 0)
        return c;
    return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

struct tiebreak_ctx {
    eng_db *db;
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
        return a < b ? -1 : 1;  /* unreadable: resolution reports it */
    int c = compare_ids(&ida, &idb);
    return c ? c : (a < b ? -1 : 1);
}

/* Offer every vector of the collection (that allowed allows) to the
 * heap. */
static qv_status scan_vectors(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                              const float *q, const uint64_t *allowed,
                              topk *heap)
{
    MDB_cursor *cur;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, rec->id);
    qv_metric metric = (qv_metric)rec->metric;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_VECTORS), &cur);
    if (rc != 0)
        return eng_status(db, rc, "searching");
    qv_status st = QV_OK;
    MDB_val key = {sizeof prefix, prefix}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const unsigned char *k = key.mv_data;
        if (key.mv_size != KEY_DOC_LEN || memcmp(k, prefix, sizeof prefix))
            break;
        uint32_t iid = key_get_u32(k + KEY_COLL_LEN);
        if ((st = vector_record_check(db, &val, rec->dim, iid)) != QV_OK)
            break;
        if (!hnsw_allows(allowed, rec->next_iid, iid))
            continue;
        topk_push(heap, score(metric, q, val.mv_data, rec->dim), iid);
    }
    mdb_cursor_close(cur);
    if (st == QV_OK && rc != 0 && rc != MDB_NOTFOUND)
        st = eng_status(db, rc, "searching");
    return st;
}

/* A candidate resolved to its document in the snapshot. */
typedef struct resolved {
    float dist;
    MDB_val id;
    MDB_val payload;   /* mv_data NULL: none (or not asked for) */
} resolved;

static int by_distance_then_id(const void *pa, const void *pb)
{
    const resolved *a = pa, *b = pb;
    if (a->dist != b->dist)
        return a->dist < b->dist ? -1 : 1;
    return compare_ids(&a->id, &b->id);
}

/*
 * Resolve the sorted heap's candidates into out (room for k), nearest
 * first. Candidates the snapshot lacks are passed over when skip_missing
 * (the graph ran ahead of the snapshot), else they mean corruption.
 */
static qv_status resolve(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                         const topk *heap, size_t k, int skip_missing,
                         int with_payload, resolved *out, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < heap->n && *n < k; i++) {
        out[*n].payload = (MDB_val){0, NULL};
        int rc = doc_fields(db, txn, rec->id, heap->items[i].id, &out[*n].id,
                            with_payload ? &out[*n].payload : NULL);
        if (rc == MDB_NOTFOUND && skip_missing)
            continue;
        if (rc != 0)
            return rc == MDB_NOTFOUND
                       ? qv_fail(&db->base, QV_ERR_CORRUPT, "vector %u has "
                                 "no document", heap->items[i].id)
                       : eng_status(db, rc, "reading hit ids");
        out[(*n)++].dist = heap->items[i].dist;
    }
    qsort(out, *n, sizeof *out, by_distance_then_id);
    return QV_OK;
}

/* Bytes of the hits' ids and payloads, NULs included. */
static size_t id_bytes(const resolved *r, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += r[i].id.mv_size + 1 +
                 (r[i].payload.mv_data ? r[i].payload.mv_size + 1 : 0);
    return bytes;
}

static char *copy_text(char **text, const MDB_val *v)
{
    char *s = *text;
    memcpy(s, v->mv_data, v->mv_size);
    s[v->mv_size] = '\0';
    *text += v->mv_size + 1;
    return s;
}

/* Fill hits from r, copying ids and payloads to *text; advances *text. */
static void fill_hits(qv_hits *hits, qv_hit *slots, const resolved *r,
                      size_t n, char **text)
{
    hits->count = n;
    hits->hits = slots;
    hits->explain = NULL;
    hits->missing_count = 0;   /* one database: no shard is missing */
    hits->missing = NULL;
    for (size_t i = 0; i < n; i++) {
        slots[i].id = copy_text(text, &r[i].id);
        slots[i].distance = r[i].dist;
        slots[i].payload = r[i].payload.mv_data
                               ? copy_text(text, &r[i].payload) : NULL;
    }
}

/*
 * Check each of the nq queries against the metric's bound (quiver.h,
 * "Which vectors"); for cosine, *owned is a unit-length copy of them
 * (otherwise NULL).
 */
static qv_status prepare_queries(eng_db *db, const coll_rec *rec,
                                 const float *queries, size_t nq,
                                 float **owned)
{
    char what[48] = "query ";
    *owned = NULL;
    for (size_t i = 0; i < nq; i++) {
        if (nq > 1)
            snprintf(what, sizeof what, "query %zu: ", i);
        qv_status st = validate_vector_rule(&db->base, what,
                                            queries + i * rec->dim, rec->dim,
                                            (qv_metric)rec->metric, 0);
        if (st != QV_OK)
            return st;
    }
    if (rec->metric != QV_METRIC_COSINE)
        return QV_OK;
    float *copy = qv_malloc(nq * rec->dim * sizeof(float));
    if (!copy)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nq; i++)   /* none is all zeros: checked above */
        (void)dist_normalize(queries + i * rec->dim, rec->dim,
                             copy + i * rec->dim);
    *owned = copy;
    return QV_OK;
}

/* What one search call holds: the snapshot, the record, maybe a graph. */
struct search_ctx {
    eng_db *db;
    MDB_txn *txn;
    coll_rec rec;
    live_graph *ix;
    float *normalized;
    const float *queries;
    size_t nq;
    const qv_search_options *opt;
    size_t beam;     /* candidates collected per query */
    int exact;       /* the plan: brute force (asked for, or a filter that
                        few documents match) */
    json_t *filter;
    int filter_rc;   /* ENOMEM: a payload could not be read for it */
    roaring_bitmap_t *matches;  /* the filter's matching documents */
    const uint64_t *allowed;  /* the same, one bit per internal id below
                                 rec.next_iid: for a graph walk only */
    allowed_set *allowed_ref;  /* what allowed points into */
    int matches_in_cache;   /* matches NULL until need_matches() copies
                               them from the collection's cache */
    uint64_t nallowed;
    uint64_t estimated;   /* matches the indexes promised (a superset) */
    atomic_ulong distances;   /* computed, for explain (batch workers
                                 share it) */
    int widenings;
    const char *plan;
    int untrained;        /* a codec not trained yet: exact scans serve */
    size_t rerank;        /* a graph over codes: candidates re-scored with
                             full vectors (0: code distances are final) */
    size_t reranked;      /* for explain: vectors read, and how long */
    double rerank_seconds;
};

/*
 * Matches of a filter beyond which the graph is walked instead of a scan
 * of the matching documents: 2% of the collection, at least 64 x k. A
 * scan costs one distance per match, always; a filtered walk's cost grows
 * as matches thin out. The walk that measures only allowed nodes and
 * reaches others' neighbours two hops on (hnsw_search) kept 10% filters
 * at 0.45-0.51 of unfiltered QPS with recall 0.957 on Fashion-MNIST, where
 * the plain walk it replaced needed scans up to 20% (docs/FILTERS.md).
 */
static uint64_t exact_limit(const coll_rec *rec, uint32_t k)
{
    uint64_t limit = rec->count / 50;    /* 2% */
    return limit > 64u * k ? limit : 64u * k;
}

static void mark_allowed(void *arg, const MDB_val *key, const MDB_val *val)
{
    struct search_ctx *c = arg;
    json_t *payload;
    MDB_val id;
    if (c->filter_rc || key->mv_size != KEY_DOC_LEN ||
        doc_record_split(val, &id, NULL) != 0)
        return;
    uint32_t iid = key_get_u32((const unsigned char *)key->mv_data +
                               KEY_COLL_LEN);
    c->filter_rc = pindex_payload_of(val, &payload);
    if (c->filter_rc)
        return;
    if (iid < c->rec.next_iid && filter_match(c->filter, payload))
        roaring_bitmap_add(c->matches, iid);
    json_decref(payload);
}

static bool set_allowed(uint32_t iid, void *arg)
{
    allowed_set *a = arg;
    if (iid < a->n)
        a->bits[iid >> 6] |= UINT64_C(1) << (iid & 63);
    return true;
}

static qv_status need_matches(struct search_ctx *c);

/* The bit-per-id form of the matches that a filtered graph walk reads:
 * from the collection's cache when this snapshot's searches with this
 * filter built it already (at 50% of 60,000 documents building it took
 * a quarter of each query), else built and cached. */
static qv_status build_allowed(struct search_ctx *c)
{
    uint64_t txn_id = (uint64_t)mdb_txn_id(c->txn);
    allowed_set *a = graph_cached_allowed(c->ix, c->opt->filter, txn_id);
    if (!a) {
        qv_status st = need_matches(c);
        if (st != QV_OK)
            return st;
        uint32_t n = c->rec.next_iid;
        a = qv_calloc(1, sizeof *a + ((size_t)n / 64 + 1) * sizeof(uint64_t));
        if (!a)
            return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory for "
                           "the filter's matches");
        atomic_init(&a->refs, 1);
        a->n = n;
        roaring_iterate(c->matches, set_allowed, a);
        graph_cache_allowed(c->ix, c->opt->filter, txn_id, a);
    }
    c->allowed_ref = a;
    c->allowed = a->bits;
    return QV_OK;
}

struct candidate_walk {
    struct search_ctx *c;
    int rc;
};

/* Evaluate the filter on one candidate from the payload indexes. */
static bool check_candidate(uint32_t iid, void *arg)
{
    struct candidate_walk *w = arg;
    struct search_ctx *c = w->c;
    unsigned char buf[KEY_DOC_LEN];
    key_doc(buf, c->rec.id, iid);
    MDB_val key = {sizeof buf, buf}, val;
    int rc = mdb_get(c->txn, st_dbi(c->db->env, ST_DB_DOCS), &key, &val);
    if (rc == 0)
        mark_allowed(c, &key, &val);
    else if (rc != MDB_NOTFOUND)
        w->rc = rc;
    if (w->rc == 0)
        w->rc = c->filter_rc;
    return w->rc == 0;
}

/*
 * The documents of the snapshot that match the filter: the payload indexes
 * narrow the candidates where they can, and the filter is evaluated on
 * each candidate's payload (on every document when they cannot).
 */
static qv_status compute_allowed(struct search_ctx *c)
{
    pindex_set set;
    int exact = 0;
    int rc = pindex_load(c->db, c->txn, c->rec.id, &set);
    roaring_bitmap_t *cands = rc ? NULL
                                 : pindex_candidates(c->db, c->txn, c->rec.id,
                                                     &set, c->filter, &exact);
    c->estimated = cands ? roaring_bitmap_get_cardinality(cands)
                         : c->rec.count;
    if (rc == 0 && cands && exact) {
        c->matches = cands;  /* the matches themselves */
        cands = NULL;
    } else if (rc == 0) {
        c->matches = roaring_bitmap_create();
        if (cands) {
            struct candidate_walk w = {c, 0};
            roaring_iterate(cands, check_candidate, &w);
            rc = w.rc;
        } else {
            rc = eng_walk_range(c->db, c->txn, ST_DB_DOCS, c->rec.id,
                                mark_allowed, c);
            rc = rc ? rc : c->filter_rc;
        }
    }
    if (cands)
        roaring_bitmap_free(cands);
    if (rc == 0 && !c->matches)
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory for the "
                       "filter's matches");
    c->nallowed = c->matches ? roaring_bitmap_get_cardinality(c->matches) : 0;
    return rc ? eng_status(c->db, rc, "filtering") : QV_OK;
}

static qv_status allowed_for(struct search_ctx *c, const char *text);

/* The matches as a bitmap, for plans that iterate them. */
static qv_status need_matches(struct search_ctx *c)
{
    if (c->matches || !c->matches_in_cache)
        return QV_OK;
    c->matches = graph_cached_matches(c->ix, c->opt->filter,
                                      (uint64_t)mdb_txn_id(c->txn));
    return c->matches ? QV_OK : compute_allowed(c);  /* evicted since */
}

static qv_status search_begin(struct search_ctx *c, eng_db *db,
                              const char *collection, const float *queries,
                              size_t nq, uint32_t dim,
                              const qv_search_options *opt)
{
    memset(c, 0, sizeof *c);
    c->db = db;
    c->opt = opt;
    c->nq = nq;
    qv_status st = eng_read_begin(db, &c->txn, "searching");
    if (st != QV_OK)
        return st;
    st = catalog_get(db, c->txn, collection, &c->rec);
    if (st == QV_OK)
        st = coll_check_dim(db, collection, &c->rec,
                            nq == 1 ? "query " : "queries: ", dim);
    if (st == QV_OK)
        st = prepare_queries(db, &c->rec, queries, nq, &c->normalized);
    c->queries = c->normalized ? c->normalized : queries;
    if (st == QV_OK && opt->filter && c->rec.count > 0 && !opt->exact)
        st = graph_acquire(db, c->txn, &c->rec, &c->ix);
    if (st == QV_OK && opt->filter &&
        (st = filter_parse(&db->base, opt->filter, &c->filter)) == QV_OK)
        st = allowed_for(c, opt->filter);
    if (st != QV_OK)
        return st;
    c->untrained = !coll_has_graph(&c->rec);
    c->exact = opt->exact || c->untrained ||
               (c->filter && c->nallowed <= exact_limit(&c->rec, opt->k));
    if (c->exact) {
        uint64_t avail = c->filter ? c->nallowed : c->rec.count;
        c->beam = opt->k < avail ? opt->k : (size_t)avail;
        return st;
    }
    if (c->rec.count == 0)
        return QV_OK;  /* beam 0: nothing to search */
    if (!c->ix && (st = graph_acquire(db, c->txn, &c->rec, &c->ix)) != QV_OK)
        return st;
    if (c->filter && (st = build_allowed(c)) != QV_OK)
        return st;
    uint32_t ef = opt->ef ? opt->ef : QV_DEFAULT_EF;
    c->beam = ef > opt->k ? ef : opt->k;
    if (c->ix->codec && !opt->no_rerank) {
        c->rerank = opt->rerank ? opt->rerank : 4u * opt->k;
        c->rerank = c->rerank > opt->k ? c->rerank : opt->k;
        c->beam = c->beam > c->rerank ? c->beam : c->rerank;
    }
    /* Nodes a write in progress added are in the graph but not in the
     * snapshot, and are passed over: widen the beam by that many so k
     * hits still come back. */
    uint32_t in_graph = hnsw_count(c->ix->graph);
    if (in_graph > c->rec.count)
        c->beam += in_graph - (size_t)c->rec.count;
    return QV_OK;
}

/*
 * The filter's matches, from the collection's cache when the same filter
 * ran on this very snapshot (no write since), else computed and cached.
 */
static qv_status allowed_for(struct search_ctx *c, const char *text)
{
    uint64_t txn_id = (uint64_t)mdb_txn_id(c->txn);
    uint64_t count;
    if (c->ix && graph_cached_count(c->ix, text, txn_id, &count)) {
        /* the bitmap itself is copied only if the plan scans it */
        c->estimated = c->nallowed = count;
        c->matches_in_cache = 1;
        return QV_OK;
    }
    qv_status st = compute_allowed(c);
    if (st == QV_OK && c->ix)
        graph_cache_matches(c->ix, text, txn_id, c->matches);
    return st;
}

static void search_end(struct search_ctx *c)
{
    json_decref(c->filter);
    if (c->matches)
        roaring_bitmap_free(c->matches);
    allowed_release(c->allowed_ref);
    graph_release(c->ix);
    qv_mem_free(c->normalized);
    st_read_end(c->db->env, c->txn);
}

/* Ask for the first lines of a vector ahead of its use (the hardware
 * prefetcher follows with the rest). Always inlined: GCC may find a
 * function of prefetches alone pure and delete its calls. */
static inline __attribute__((always_inline)) void
prefetch_vector(const float *v, uint32_t dim)
{
    const char *p = (const char *)v;
    size_t bytes = (size_t)dim * sizeof(float);
    for (size_t at = 0; at < bytes && at < 256; at += 64)
        __builtin_prefetch(p + at);
}

/* Score the matches from the graph's vectors in memory: allowed only
 * when the graph is exactly the snapshot's (no write since). */
static int score_in_memory(struct search_ctx *c, const float *q, topk *heap)
{
    if (!c->ix || c->ix->codec ||
        atomic_load(&c->ix->generation) != c->rec.generation)
        return 0;   /* (a graph over codes has no vectors in memory) */
    hnsw *g = c->ix->graph;
    pthread_rwlock_rdlock(&c->ix->grow_lock);
    int cosine = c->rec.metric == QV_METRIC_COSINE;
    roaring_uint32_iterator_t *it = roaring_create_iterator(c->matches);
    uint32_t ids[256], n;
    /* in runs of 256 ids, each vector fetched while the one before it
     * is measured: the matches lie all over the graph's memory */
    while (it && (n = roaring_read_uint32_iterator(it, ids, 256)) > 0) {
        uint32_t live = 0;
        for (uint32_t i = 0; i < n; i++)
            if (ids[i] < c->rec.next_iid && hnsw_contains(g, ids[i]))
                ids[live++] = ids[i];
        for (uint32_t i = 0; i < live; i++) {
            if (i + 1 < live)
                prefetch_vector(hnsw_vector(g, ids[i + 1]), c->rec.dim);
            const float *v = hnsw_vector(g, ids[i]);
            /* the graph keeps cosine vectors unit length: 1 - dot is the
             * distance */
            float d = cosine ? 1.0f - dist_dot(q, v, c->rec.dim)
                             : score((qv_metric)c->rec.metric, q, v,
                                     c->rec.dim);
            topk_push(heap, d, ids[i]);
        }
        c->distances += live;
    }
    roaring_free_uint32_iterator(it);
    pthread_rwlock_unlock(&c->ix->grow_lock);
    return 1;
}

/* Measure document iid with its vector in the search's snapshot and push
 * it; one that the snapshot lacks is passed over. */
static qv_status score_from_snapshot(struct search_ctx *c, const float *q,
                                     uint32_t iid, topk *heap)
{
    unsigned char buf[KEY_DOC_LEN];
    key_doc(buf, c->rec.id, iid);
    MDB_val key = {sizeof buf, buf}, val;
    int rc = mdb_get(c->txn, st_dbi(c->db->env, ST_DB_VECTORS), &key, &val);
    if (rc == MDB_NOTFOUND)
        return QV_OK;
    if (rc != 0)
        return eng_status(c->db, rc, "searching");
    qv_status st = vector_record_check(c->db, &val, c->rec.dim, iid);
    if (st == QV_OK) {
        topk_push(heap, score((qv_metric)c->rec.metric, q, val.mv_data,
                              c->rec.dim), iid);
        c->distances++;
    }
    return st;
}

/*
 * The walk measured the graph's vectors, and a write not in this search's
 * snapshot has rewritten some (a document's new vector): measure the
 * candidates again with the snapshot's own vectors, so that every hit's
 * distance is that of the document the snapshot holds. Rare: only a
 * search that overlaps such a write pays it.
 */
static qv_status rescore_from_snapshot(struct search_ctx *c, const float *q,
                                       topk *heap)
{
    size_t n = heap->n;
    uint32_t *ids = qv_malloc((n + 1) * sizeof *ids);
    if (!ids)
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = heap->items[i].id;
    heap->n = 0;
    qv_status st = QV_OK;
    for (size_t i = 0; i < n && st == QV_OK; i++)
        st = score_from_snapshot(c, q, ids[i], heap);
    qv_mem_free(ids);
    return st;
}

/* Few documents match: fetch their vectors one by one rather than walk
 * every vector of the collection. */
static qv_status fetch_allowed(struct search_ctx *c, const float *q,
                               topk *heap)
{
    qv_status st = QV_OK;
    roaring_uint32_iterator_t *it = roaring_create_iterator(c->matches);
    for (; it && it->has_value && st == QV_OK;
         roaring_advance_uint32_iterator(it))
        st = score_from_snapshot(c, q, it->current_value, heap);
    roaring_free_uint32_iterator(it);
    return st;
}

/*
 * A graph over codes: re-score the best c->rerank candidates of query q
 * with their full vectors, read from the data file in one batch (see
 * storage/reader.h), and keep only those in heap. Offsets come from the
 * index when it knows them for this snapshot, else from a lookup in it;
 * candidates the snapshot lacks (a write in progress) are dropped.
 */
static qv_status rerank(struct search_ctx *c, const float *q, topk *heap)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    topk_sort(heap);
    size_t n = heap->n < c->rerank ? heap->n : c->rerank;
    size_t vec_bytes = (size_t)c->rec.dim * sizeof(float);
    /* one allocation per query: ids, offsets, requests, vectors */
    char *mem = qv_malloc(n * (sizeof(uint32_t) + sizeof(uint64_t) +
                               sizeof(st_read) + vec_bytes) + 1);
    if (!mem)
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory for "
                       "re-ranking");
    st_read *reads = (st_read *)(void *)mem;
    uint64_t *offs = (uint64_t *)(void *)(reads + n);
    uint32_t *ids = (uint32_t *)(void *)(offs + n);
    float *vecs = (float *)(void *)(ids + n);
    for (size_t i = 0; i < n; i++)
        ids[i] = heap->items[i].id;
    graph_vector_offsets(c->ix, c->rec.generation, ids, n, offs);
    qv_status st = QV_OK;
    size_t m = 0;
    for (size_t i = 0; i < n && st == QV_OK; i++) {
        if (offs[i] == OFFSET_UNKNOWN) {
            unsigned char buf[KEY_DOC_LEN];
            key_doc(buf, c->rec.id, ids[i]);
            MDB_val key = {sizeof buf, buf}, val;
            int rc = mdb_get(c->txn, st_dbi(c->db->env, ST_DB_VECTORS), &key,
                             &val);
            if (rc == MDB_NOTFOUND)
                continue;
            if (rc != 0) {
                st = eng_status(c->db, rc, "re-ranking");
                break;
            }
            if (val.mv_size != vec_bytes)
                st = qv_fail(&c->db->base, QV_ERR_CORRUPT, "vector record "
                             "is %zu bytes, expected %zu", val.mv_size,
                             vec_bytes);
            offs[i] = st_map_offset(c->db->env, val.mv_data);
        }
        ids[m] = ids[i];
        reads[m] = (st_read){offs[i], vec_bytes,
                             vecs + m * (size_t)c->rec.dim};
        m++;
    }
    if (st == QV_OK) {
        int err = st_read_batch(c->db->env, reads, m,
                                !(c->db->base.flags & QV_OPEN_PREAD));
        if (err)
            st = qv_fail(&c->db->base, err == ENOSPC ? QV_ERR_FULL
                                                     : QV_ERR_IO,
                         "reading full vectors for re-ranking: %s",
                         strerror(err));
    }
    if (st == QV_OK) {
        heap->n = 0;
        for (size_t i = 0; i < m; i++)
            topk_push(heap, score((qv_metric)c->rec.metric, q,
                                  vecs + i * (size_t)c->rec.dim, c->rec.dim),
                      ids[i]);
        c->distances += m;
        c->reranked += m;
    }
    qv_mem_free(mem);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->rerank_seconds += (double)(t1.tv_sec - t0.tv_sec) +
                         (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return st;
}

/* Whether query results need rerank() after collect(). */
static int needs_rerank(const struct search_ctx *c)
{
    return !c->exact && c->rerank > 0;
}

/* Candidates of query i into heap (initialised with c->beam). */
static qv_status collect(struct search_ctx *c, hnsw_scratch *s, size_t i,
                         topk *heap)
{
    const float *q = c->queries + i * c->rec.dim;
    if (c->beam == 0)
        return QV_OK;
    if (c->exact && c->filter) {
        qv_status st = need_matches(c);
        if (st != QV_OK)
            return st;
    }
    if (c->exact && c->filter && score_in_memory(c, q, heap))
        return QV_OK;
    if (c->exact && c->filter)
        return fetch_allowed(c, q, heap);
    if (c->exact) {
        c->distances += c->allowed ? c->nallowed : c->rec.count;
        return scan_vectors(c->db, c->txn, &c->rec, q, c->allowed, heap);
    }
    /* a filtered walk may pass through as many rejected nodes as the
     * beam's share of them: none unfiltered, half the beam at 50% */
    double rejected = c->filter && c->rec.count
                          ? 1.0 - (double)c->nallowed / (double)c->rec.count
                          : 0.0;
    hnsw_scratch_set_bridges(s, (uint32_t)((double)c->beam * rejected));
    pthread_rwlock_rdlock(&c->ix->grow_lock);
    hnsw_search(c->ix->graph, s, q, (uint32_t)c->beam, (uint32_t)c->beam,
                c->allowed, c->rec.next_iid, heap);
    int newer = atomic_load(&c->ix->rewritten_at) > c->rec.generation;
    pthread_rwlock_unlock(&c->ix->grow_lock);
    c->distances += hnsw_scratch_distances(s);
    /* code distances are estimates that a re-rank replaces anyway */
    return newer && !c->ix->codec ? rescore_from_snapshot(c, q, heap)
                                  : QV_OK;
}

static char *explain_json(const struct search_ctx *c);

qv_status search_knn(qv_db *base, const char *collection, const float *query,
                     uint32_t dim, const qv_search_options *options,
                     qv_hits **out)
{
    eng_db *db = (eng_db *)base;
    struct search_ctx c;
    topk heap = {0};
    resolved *r = NULL;
    hnsw_scratch *s = NULL;
    size_t n = 0;
    qv_status st = search_begin(&c, db, collection, query, 1, dim, options);
    if (st != QV_OK)
        goto cleanup;
    struct tiebreak_ctx tb = {db, c.txn, c.rec.id};
    r = qv_malloc((options->k + 1) * sizeof *r);
    if (!r || (c.ix && !(s = graph_scratch_get(c.ix)))) {
        st = qv_fail(base, QV_ERR_NOMEM, "out of memory for k=%u",
                     options->k);
        goto cleanup;
    }
    /* A filtered walk that comes back short while more documents match
     * widens its beam, and at last scans the matches: never short. */
    for (;;) {
        if (topk_init(&heap, c.beam, c.exact ? compare_ext_ids : NULL,
                      &tb) != 0) {
            st = qv_fail(base, QV_ERR_NOMEM, "out of memory for k=%u",
                         options->k);
            goto cleanup;
        }
        st = collect(&c, s, 0, &heap);
        if (st == QV_OK && needs_rerank(&c))
            st = rerank(&c, c.queries, &heap);
        if (st != QV_OK)
            goto cleanup;
        topk_sort(&heap);
        st = resolve(db, c.txn, &c.rec, &heap, options->k, !c.exact,
                     options->with_payload, r, &n);
        if (st != QV_OK)
            goto cleanup;
        uint64_t matching = c.filter ? c.nallowed : c.rec.count;
        uint64_t want = matching < options->k ? matching : options->k;
        if (c.exact || n >= want)
            break;
        topk_release(&heap);
        c.widenings++;
        /* a walk came back short: it reached fewer than k of the nodes it
         * may return (a graph whose codes or distances trap it, or a
         * filter that leaves few); a wider beam rarely reaches more, so
         * while they are few enough to score, score them */
        if (c.beam >= c.rec.count || !c.filter ||
            c.nallowed <= c.rec.count / 5) {
            c.exact = 1;
            c.beam = (size_t)want;
        } else {
            c.beam *= 4;
        }
    }
    char *explain = options->explain ? explain_json(&c) : NULL;
    size_t explain_len = explain ? strlen(explain) + 1 : 0;
    qv_hits *hits = options->explain && !explain
                        ? NULL
                        : qv_malloc(sizeof *hits + n * sizeof(qv_hit) +
                                    id_bytes(r, n) + explain_len);
    if (!hits) {
        qv_json_free(explain);
        st = qv_fail(base, QV_ERR_NOMEM, "out of memory for hits");
        goto cleanup;
    }
    char *text = (char *)((qv_hit *)(hits + 1) + n);
    fill_hits(hits, (qv_hit *)(hits + 1), r, n, &text);
    hits->explain = explain ? memcpy(text, explain, explain_len) : NULL;
    qv_json_free(explain);
    *out = hits;
cleanup:
    if (c.ix)
        graph_scratch_put(c.ix, s);
    topk_release(&heap);
    qv_mem_free(r);
    search_end(&c);
    return st;
}

/* The plan a search took, as JSON text (qv_json_free()), or NULL when
 * memory ran out. */
static char *explain_json(const struct search_ctx *c)
{
    const char *plan = c->opt->exact        ? "exact scan (asked for)"
                       : c->untrained ? "exact scan (the codec is not "
                                        "trained yet)"
                       : c->exact && c->filter
                           ? (c->widenings ? "filtered walk, then exact scan "
                                             "of the matches"
                                           : "exact scan of the matches")
                       : c->filter         ? "filtered graph walk"
                                           : "graph walk";
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:i, s:I, s:s, s:f}", "plan",
                          plan,
                          "estimated_matches",
                          (json_int_t)(c->filter ? c->estimated
                                                 : c->rec.count),
                          "matches",
                          (json_int_t)(c->filter ? c->nallowed : c->rec.count),
                          "distances", (json_int_t)c->distances, "widenings",
                          c->widenings, "reranked", (json_int_t)c->reranked,
                          "rerank_io", !c->reranked ? "none"
                                       : c->db->base.flags & QV_OPEN_PREAD
                                           ? "pread" : st_io_name(),
                          "rerank_ms", c->rerank_seconds * 1e3);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

/* ---- batch ---- */

struct batch_job {
    struct search_ctx *c;
    topk *heaps;
    atomic_size_t next;
    atomic_int failed;
};

static void *batch_worker(void *arg)
{
    struct batch_job *job = arg;
    hnsw_scratch *s = graph_scratch_get(job->c->ix);
    if (!s) {
        atomic_store(&job->failed, 1);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->c->nq)
            break;
        collect(job->c, s, i, &job->heaps[i]);
    }
    graph_scratch_put(job->c->ix, s);
    return NULL;
}

/* Collect the candidates of every query: graph searches in parallel. */
static qv_status collect_all(struct search_ctx *c, topk *heaps,
                             unsigned threads)
{
    if (c->exact || !c->ix) {
        /* exact scans walk LMDB cursors, which belong to one thread */
        qv_status st = QV_OK;
        for (size_t i = 0; i < c->nq && st == QV_OK; i++)
            st = collect(c, NULL, i, &heaps[i]);
        return st;
    }
    struct batch_job job = {.c = c, .heaps = heaps};
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, 0);
    pthread_t tids[64];
    unsigned started = 0;
    if (threads > 64)
        threads = 64;
    for (; started + 1 < threads && started + 1 < c->nq; started++) {
        if (pthread_create(&tids[started], NULL, batch_worker, &job) != 0)
            break;
    }
    batch_worker(&job);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (atomic_load(&job.failed))
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory");
    return QV_OK;
}

/*
 * A filtered walk of query i that came back short while more documents
 * match: scan the matches instead, so a batch is never short either.
 */
static qv_status fill_short(struct search_ctx *c, size_t i, resolved *r,
                            size_t *n)
{
    uint64_t want = c->nallowed < c->opt->k ? c->nallowed : c->opt->k;
    if (!c->filter || c->exact || *n >= want)
        return QV_OK;
    topk heap;
    if (topk_init(&heap, (size_t)want, NULL, NULL) != 0)
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory");
    qv_status st = scan_vectors(c->db, c->txn, &c->rec,
                                c->queries + i * c->rec.dim, c->allowed,
                                &heap);
    if (st == QV_OK) {
        topk_sort(&heap);
        st = resolve(c->db, c->txn, &c->rec, &heap, c->opt->k, 0,
                     c->opt->with_payload, r, n);
    }
    topk_release(&heap);
    return st;
}

/* Resolve every query's heap and pack the results in one allocation. */
static qv_status pack_batch(struct search_ctx *c, topk *heaps,
                            qv_batch_hits **out)
{
    size_t k = c->opt->k;
    resolved *r = qv_malloc(c->nq * k * sizeof *r);
    size_t *counts = qv_calloc(c->nq, sizeof *counts);
    size_t total = 0, text = 0;
    qv_status st = r && counts ? QV_OK
                               : qv_fail(&c->db->base, QV_ERR_NOMEM,
                                         "out of memory for hits");
    for (size_t i = 0; i < c->nq && st == QV_OK; i++) {
        if (needs_rerank(c) &&
            (st = rerank(c, c->queries + i * c->rec.dim, &heaps[i])) != QV_OK)
            break;
        topk_sort(&heaps[i]);
        st = resolve(c->db, c->txn, &c->rec, &heaps[i], k, !c->exact,
                     c->opt->with_payload, r + i * k, &counts[i]);
        if (st == QV_OK)
            st = fill_short(c, i, r + i * k, &counts[i]);
        total += counts[i];
        text += id_bytes(r + i * k, counts[i]);
    }
    qv_batch_hits *b = NULL;
    if (st == QV_OK) {
        b = qv_malloc(sizeof *b + c->nq * sizeof(qv_hits) +
                      total * sizeof(qv_hit) + text);
        if (!b)
            st = qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory for hits");
    }
    if (st == QV_OK) {
        b->count = c->nq;
        b->results = (qv_hits *)(b + 1);
        qv_hit *slots = (qv_hit *)(b->results + c->nq);
        char *p = (char *)(slots + total);
        for (size_t i = 0; i < c->nq; i++) {
            fill_hits(&b->results[i], slots, r + i * k, counts[i], &p);
            slots += counts[i];
        }
        *out = b;
    }
    qv_mem_free(r);
    qv_mem_free(counts);
    return st;
}

qv_status search_batch(qv_db *base, const char *collection,
                       const float *queries, size_t nq, uint32_t dim,
                       const qv_search_options *options, qv_batch_hits **out)
{
    eng_db *db = (eng_db *)base;
    struct search_ctx c;
    topk *heaps = NULL;
    qv_status st = search_begin(&c, db, collection, queries, nq, dim, options);
    if (st != QV_OK)
        goto cleanup;
    struct tiebreak_ctx tb = {db, c.txn, c.rec.id};
    heaps = qv_calloc(nq, sizeof *heaps);
    for (size_t i = 0; heaps && i < nq && st == QV_OK; i++) {
        if (topk_init(&heaps[i], c.beam, c.exact ? compare_ext_ids
                                                        : NULL, &tb) != 0)
            st = QV_ERR_NOMEM;
    }
    if (!heaps || st != QV_OK) {
        st = qv_fail(base, QV_ERR_NOMEM, "out of memory for %zu queries", nq);
        goto cleanup;
    }
    unsigned threads = options->threads ? options->threads : eng_threads(db);
    st = collect_all(&c, heaps, threads);
    if (st == QV_OK)
        st = pack_batch(&c, heaps, out);
cleanup:
    for (size_t i = 0; heaps && i < nq; i++)
        topk_release(&heaps[i]);
    qv_mem_free(heaps);
    search_end(&c);
    return st;
}

qv_status search_count(qv_db *base, const char *collection, const char *filter,
                       uint64_t *count)
{
    struct search_ctx c = {.db = (eng_db *)base};
    qv_status st = eng_read_begin(c.db, &c.txn, "counting");
    if (st != QV_OK)
        return st;
    st = catalog_get(c.db, c.txn, collection, &c.rec);
    if (st == QV_OK && !filter)
        *count = c.rec.count;
    if (st == QV_OK && filter &&
        (st = filter_parse(base, filter, &c.filter)) == QV_OK &&
        (st = compute_allowed(&c)) == QV_OK)
        *count = c.nallowed;
    search_end(&c);
    return st;
}
