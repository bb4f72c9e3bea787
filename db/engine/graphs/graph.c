#include "db/engine/graphs/graph.h"

#include <math.h>
#include <stdio.h>
#include <roaring/roaring.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "ann/codec.h"
#include "ann/distance.h"
#include "db/core/error.h"
#include "storage/keys.h"
#include "storage/reader.h"

_Static_assert(QV_M_MAX <= HNSW_M_MAX, "the API allows an M the graph lacks");

/* One collection's slot in the registry: the graph now in use. */
typedef struct graph_slot {
    uint32_t coll_id;
    pthread_mutex_t lock;      /* held while (re)loading or swapping */
    live_graph *current;       /* holds one reference */
    struct graph_slot *next;
} graph_slot;

typedef struct graph_registry {
    pthread_mutex_t lock;
    graph_slot *slots;
} graph_registry;

static void *registry_create(void)
{
    graph_registry *r = qv_calloc(1, sizeof *r);
    if (r)
        pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void registry_free(void *arg)
{
    graph_registry *r = arg;
    graph_slot *slot = r->slots;
    while (slot) {
        graph_slot *next = slot->next;
        graph_release(slot->current);
        pthread_mutex_destroy(&slot->lock);
        qv_mem_free(slot);
        slot = next;
    }
    pthread_mutex_destroy(&r->lock);
    qv_mem_free(r);
}

static graph_slot *find_slot(eng_db *db, uint32_t coll_id, int create)
{
    graph_registry *r = st_env_user(db->env, ST_USER_INDEXES, registry_create, registry_free);
    if (!r)
        return NULL;
    pthread_mutex_lock(&r->lock);
    graph_slot *slot = r->slots;
    while (slot && slot->coll_id != coll_id)
        slot = slot->next;
    if (!slot && create && (slot = qv_calloc(1, sizeof *slot))) {
        slot->coll_id = coll_id;
        pthread_mutex_init(&slot->lock, NULL);
        slot->next = r->slots;
        r->slots = slot;
    }
    pthread_mutex_unlock(&r->lock);
    return slot;
}

static void live_free(live_graph *ix)
{
    qv_mem_free((void *)ix->offsets);
    pthread_mutex_destroy(&ix->offsets_lock);
    for (int i = 0; i < FILTER_CACHE; i++) {
        qv_mem_free(ix->cache[i].filter);
        if (ix->cache[i].matches)
            roaring_bitmap_free(ix->cache[i].matches);
        allowed_release(ix->cache[i].allowed);
    }
    pthread_mutex_destroy(&ix->cache_lock);
    hnsw_free(ix->graph);
    codec_free(ix->codec);
    for (int i = 0; i < ix->npool; i++)
        hnsw_scratch_free(ix->pool[i]);
    pthread_rwlock_destroy(&ix->grow_lock);
    pthread_mutex_destroy(&ix->pool_lock);
    qv_mem_free(ix);
}

/* Drop one reference: 1 when it was the last. */
static int unref(atomic_int *refs)
{
    int before = atomic_fetch_sub(refs, 1);
    QV_ASSERT(before > 0);
    return before == 1;
}

void graph_release(live_graph *ix)
{
    if (ix && unref(&ix->refs))
        live_free(ix);
}

/*
 * Whether rec's graph reads its vectors where LMDB keeps them, in the map
 * (see ARCHITECTURE.md, "Vectors in place"): plain l2 and ip vectors
 * larger than half a page, which LMDB stores in overflow pages of their
 * own that stay put until the vector itself changes. Smaller vectors
 * share leaf pages that move with every write to them, codes are not
 * stored vectors, and cosine graphs measure unit vectors: those keep
 * copies in the graph, as every graph of a handle opened with
 * QV_OPEN_VECTORS_IN_MEMORY does.
 */
static int vectors_in_place(eng_db *db, const coll_rec *rec)
{
    return !(db->base.flags & QV_OPEN_VECTORS_IN_MEMORY) && !rec->codec &&
           rec->metric != QV_METRIC_COSINE &&
           (size_t)rec->dim * sizeof(float) > st_page_bytes(db->env) / 2;
}

/* A live index for rec whose graph holds cd's codes (NULL: vectors); it
 * owns cd, also when it cannot be made. */
static live_graph *live_create(eng_db *db, const coll_rec *rec, codec *cd)
{
    hnsw_params p = {
        .dim = rec->dim,
        .M = rec->M,
        .ef_construction = rec->ef_construction,
        .metric = (enum hnsw_metric)rec->metric,
        .seed = rec->id,
        .codec = cd,
        .external = !cd && vectors_in_place(db, rec),
    };
    live_graph *ix = qv_calloc(1, sizeof *ix);
    if (!ix) {
        codec_free(cd);
        return NULL;
    }
    ix->codec = cd;
    ix->external = p.external;
    ix->file_epoch = st_file_epoch(db->env);
    ix->graph = hnsw_create(&p);
    if (!ix->graph) {
        codec_free(cd);
        qv_mem_free(ix);
        return NULL;
    }
    pthread_mutex_init(&ix->offsets_lock, NULL);
    atomic_init(&ix->refs, 1);
    atomic_init(&ix->stale, 0);
    atomic_init(&ix->generation, rec->generation);
    atomic_init(&ix->rewritten_at, 0);
    pthread_rwlock_init(&ix->grow_lock, NULL);
    pthread_mutex_init(&ix->pool_lock, NULL);
    pthread_mutex_init(&ix->cache_lock, NULL);
    return ix;
}

/*
 * Fill the graph from the snapshot: the graph and vector records share
 * their keys, so two cursors walk them side by side. A graph over codes
 * (cd) has each code checked by its codec first. A graph of vectors in
 * place (external) takes its records only; place_vectors follows.
 */
static qv_status load_nodes(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                            hnsw *graph, const codec *cd, int external)
{
    MDB_cursor *gcur = NULL, *vcur = NULL;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, rec->id);
    /* a node's element: its vector, or its code for a graph over codes */
    size_t vec_bytes = hnsw_element_bytes(graph);
    enum st_db elems = rec->codec ? ST_DB_CODES : ST_DB_VECTORS;
    qv_status st = QV_OK;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_GRAPH), &gcur);
    if (rc == 0 && !external)
        rc = mdb_cursor_open(txn, st_dbi(db->env, elems), &vcur);
    MDB_val gkey = {sizeof prefix, prefix}, gval, vkey, vval = {0, NULL};
    if (rc == 0)
        rc = mdb_cursor_get(gcur, &gkey, &gval, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(gcur, &gkey, &gval, MDB_NEXT)) {
        const unsigned char *k = gkey.mv_data;
        if (gkey.mv_size != KEY_DOC_LEN || memcmp(k, prefix, sizeof prefix))
            break;
        uint32_t iid = key_get_u32(k + KEY_COLL_LEN);
        vkey = gkey;
        if (!external)
            rc = mdb_cursor_get(vcur, &vkey, &vval, MDB_SET_KEY);
        if (!external && (rc != 0 || vval.mv_size != vec_bytes)) {
            st = qv_fail(&db->base, QV_ERR_CORRUPT, "graph node %u has no "
                         "%s of %zu bytes", iid, rec->codec ? "code" : "vector",
                         vec_bytes);
            break;
        }
        if (cd && codec_check_code(cd, vval.mv_data) != 0) {
            st = qv_fail(&db->base, QV_ERR_CORRUPT, "the code of graph node "
                         "%u is malformed", iid);
            break;
        }
        int lr = -1;
        size_t body;
        if (iid < hnsw_capacity(graph) && sealed_record_open(&gval, &body) == 0)
            lr = hnsw_record_load(graph, iid, vval.mv_data, gval.mv_data, body);
        if (lr != 0) {
            st = lr == -2 ? qv_fail(&db->base, QV_ERR_NOMEM, "out of memory "
                                    "loading the index")
                          : qv_fail(&db->base, QV_ERR_CORRUPT, "graph record "
                                    "of node %u fails its checksum or is "
                                    "malformed", iid);
            break;
        }
    }
    if (st == QV_OK && rc != 0 && rc != MDB_NOTFOUND)
        st = eng_status(db, rc, "loading the index");
    mdb_cursor_close(gcur);
    mdb_cursor_close(vcur);
    return st;
}

struct place_walk {
    eng_db *db;
    hnsw *graph;
    size_t vec_bytes;
    uint8_t *placed;     /* per slot: its vector was found */
    uint32_t nplaced;
    uint32_t bad;        /* the node whose vector failed */
    qv_status st;
};

/* One vector record: its node reads it in place when it lies in overflow
 * pages of its own (st_fixed_offset: no byte of the vector is read),
 * else from a copy. Records of ids without a node are left alone. */
static void place_vector(void *arg, const MDB_val *key, const MDB_val *val)
{
    struct place_walk *w = arg;
    if (w->st != QV_OK || key->mv_size != KEY_DOC_LEN)
        return;
    uint32_t iid = key_get_u32((const unsigned char *)key->mv_data +
                               KEY_COLL_LEN);
    if (!hnsw_contains(w->graph, iid))
        return;
    w->bad = iid;
    if (val->mv_size != w->vec_bytes) {
        w->st = QV_ERR_CORRUPT;
        return;
    }
    uint64_t off = st_fixed_offset(w->db->env, val->mv_data);
    int rc = off != UINT64_MAX ? hnsw_place_at(w->graph, iid, off)
                               : hnsw_place_copy(w->graph, iid, val->mv_data);
    if (rc != 0) {
        w->st = rc == -2 ? QV_ERR_NOMEM : QV_ERR_CORRUPT;
        return;
    }
    w->nplaced += !w->placed[iid];
    w->placed[iid] = 1;
}

/* Where every node's vector lies: a walk of the vector records' keys,
 * which reads leaf pages but none of the vectors. Every node must have
 * one. */
static qv_status place_vectors(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                               hnsw *graph)
{
    uint32_t cap = hnsw_capacity(graph);
    struct place_walk w = {db, graph, hnsw_element_bytes(graph),
                           qv_calloc(cap ? cap : 1, 1), 0, 0, QV_OK};
    if (!w.placed)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory loading the "
                       "index");
    int rc = eng_walk_range(db, txn, ST_DB_VECTORS, rec->id, place_vector,
                            &w);
    qv_status st = QV_OK;
    if (rc != 0)
        st = eng_status(db, rc, "loading the index");
    else if (w.st == QV_ERR_NOMEM)
        st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory loading the "
                     "index");
    else if (w.st != QV_OK)
        st = qv_fail(&db->base, QV_ERR_CORRUPT, "the vector of graph node %u "
                     "is not %zu bytes", w.bad, w.vec_bytes);
    else if (w.nplaced != hnsw_count(graph)) {
        uint32_t iid = 0;
        while (iid < cap && (w.placed[iid] || !hnsw_contains(graph, iid)))
            iid++;
        st = qv_fail(&db->base, QV_ERR_CORRUPT, "graph node %u has no vector "
                     "of %zu bytes", iid, w.vec_bytes);
    }
    qv_mem_free(w.placed);
    return st;
}

/* The collection's stored codec (codec_record_decode, records.h). */
static qv_status load_codec(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                            codec **out)
{
    unsigned char k[KEY_COLL_LEN];
    key_put_u32(k, rec->id);
    MDB_val key = {sizeof k, k}, val;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_CODECS), &key, &val);
    if (rc == MDB_NOTFOUND)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "the collection's trained "
                       "codec is missing");
    if (rc != 0)
        return eng_status(db, rc, "loading the codec");
    codec_rec_head head;
    const unsigned char *params;
    size_t len;
    if (val.mv_size < sizeof head + sizeof(uint32_t))
        return qv_fail(&db->base, QV_ERR_CORRUPT, "the codec record is %zu "
                       "bytes", val.mv_size);
    if (codec_record_decode(&val, &head, &params, &len) != 0 ||
        head.kind != rec->codec || head.param != rec->codec_param ||
        head.dim != rec->dim)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "the codec record fails "
                       "its checksum or does not match the collection");
    codec_spec spec = {(enum codec_kind)rec->codec, rec->codec_param};
    int malformed;
    *out = codec_blob_load(&spec, rec->dim, rec->metric != QV_METRIC_L2,
                           params, len, &malformed);
    if (!*out)
        return malformed ? qv_fail(&db->base, QV_ERR_CORRUPT, "the codec "
                                   "record is malformed")
                         : qv_fail(&db->base, QV_ERR_NOMEM, "out of memory "
                                   "loading the codec");
    return QV_OK;
}

static int store_codec(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                       const codec *cd)
{
    unsigned char k[KEY_COLL_LEN];
    key_put_u32(k, rec->id);
    codec_rec_head head = {rec->codec, rec->codec_param, rec->dim};
    size_t body = sizeof head + codec_blob_size(cd);
    MDB_val key = {sizeof k, k}, val = {body + sizeof(uint32_t), NULL};
    int rc = mdb_put(txn, st_dbi(db->env, ST_DB_CODECS), &key, &val,
                     MDB_RESERVE);
    if (rc != 0)
        return rc;
    unsigned char *p = val.mv_data;
    memcpy(p, &head, sizeof head);
    codec_blob_write(cd, p + sizeof head);
    sealed_record_seal(p, body);
    return 0;
}

/* Make room for offsets of slots [0, cap). */
static int grow_offsets(live_graph *ix, uint32_t cap)
{
    if (!ix->codec || cap <= ix->offsets_cap)
        return 0;
    _Atomic uint64_t *p = qv_realloc((void *)ix->offsets, cap * sizeof *p);
    if (!p)
        return -1;
    for (uint32_t i = ix->offsets_cap; i < cap; i++)
        atomic_init(&p[i], OFFSET_UNKNOWN);
    ix->offsets = p;
    ix->offsets_cap = cap;
    return 0;
}

struct offsets_walk {
    eng_db *db;
    live_graph *ix;
};

static void note_offset(void *arg, const MDB_val *key, const MDB_val *val)
{
    struct offsets_walk *w = arg;
    if (key->mv_size != KEY_DOC_LEN)
        return;
    uint32_t iid = key_get_u32((const unsigned char *)key->mv_data +
                               KEY_COLL_LEN);
    if (iid < w->ix->offsets_cap)
        atomic_store(&w->ix->offsets[iid],
                     st_fixed_offset(w->db->env, val->mv_data));
}

/* Where each full vector lies in the data file: a walk of the vector
 * records' keys, which reads leaf pages but none of the vectors. */
static qv_status load_offsets(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                              live_graph *ix)
{
    if (grow_offsets(ix, hnsw_capacity(ix->graph)) != 0)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory loading the "
                       "index");
    struct offsets_walk w = {db, ix};
    int rc = eng_walk_range(db, txn, ST_DB_VECTORS, rec->id, note_offset, &w);
    return rc ? eng_status(db, rc, "loading the index") : QV_OK;
}

static qv_status load_graph(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                            live_graph **out)
{
    codec *cd = NULL;
    qv_status st = catalog_check_ids(db, txn, rec);
    if (st == QV_OK && rec->codec)
        st = load_codec(db, txn, rec, &cd);
    if (st != QV_OK)
        return st;
    live_graph *ix = live_create(db, rec, cd);
    if (!ix || hnsw_reserve(ix->graph, rec->next_iid) != 0) {
        if (ix)
            live_free(ix);
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for the index "
                       "of %u slots", rec->next_iid);
    }
    if (ix->external && !st_map_base(db->env))
        st = qv_fail(&db->base, QV_ERR_IO, "cannot tell where the data file "
                     "is mapped");
    if (st == QV_OK) {
        hnsw_set_base(ix->graph, st_map_base(db->env));
        st = load_nodes(db, txn, rec, ix->graph, ix->codec, ix->external);
    }
    if (st == QV_OK && ix->external)
        st = place_vectors(db, txn, rec, ix->graph);
    if (st == QV_OK && ix->codec)
        st = load_offsets(db, txn, rec, ix);
    if (st == QV_OK && hnsw_count(ix->graph) != rec->count)
        st = qv_fail(&db->base, QV_ERR_CORRUPT, "the index has %u nodes but "
                     "the collection %llu documents", hnsw_count(ix->graph),
                     (unsigned long long)rec->count);
    if (st == QV_OK && rec->count > 0 &&
        (rec->entry >= rec->next_iid || !hnsw_contains(ix->graph, rec->entry)))
        st = qv_fail(&db->base, QV_ERR_CORRUPT, "the index entry point %u is "
                     "not a node", rec->entry);
    char err[160];
    if (st == QV_OK) {
        /* each record was checked alone; a search trusts their links to
         * name nodes of their levels, and the entry point its level */
        hnsw_set_entry(ix->graph, rec->count ? rec->entry : HNSW_NO_NODE,
                       rec->count ? rec->max_level : -1);
        if (hnsw_check_links(ix->graph, err, sizeof err) != 0)
            st = qv_fail(&db->base, QV_ERR_CORRUPT, "the index records are "
                         "inconsistent: %s", err);
    }
    if (st != QV_OK) {
        live_free(ix);
        return st;
    }
    *out = ix;
    return QV_OK;
}

qv_status graph_acquire(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                        live_graph **out)
{
    *out = NULL;
    if (!coll_has_graph(rec))
        return QV_OK;   /* exact scans serve until the codec is trained */
    graph_slot *slot = find_slot(db, rec->id, 1);
    if (!slot)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    qv_status st = QV_OK;
    pthread_mutex_lock(&slot->lock);
    live_graph *cur = slot->current;
    /* a graph of another data file (compaction) has offsets into it */
    if (!cur || atomic_load(&cur->stale) ||
        atomic_load(&cur->generation) < rec->generation ||
        cur->file_epoch != st_file_epoch(db->env)) {
        live_graph *fresh = NULL;
        st = load_graph(db, txn, rec, &fresh);
        if (st == QV_OK) {
            graph_release(cur);
            slot->current = cur = fresh;
        }
    }
    if (st == QV_OK && cur->external && !st_map_base(db->env))
        st = qv_fail(&db->base, QV_ERR_IO, "cannot tell where the data file "
                     "is mapped");
    if (st == QV_OK) {
        /* the map stays where it is until this transaction ends */
        if (cur->external)
            hnsw_set_base(cur->graph, st_map_base(db->env));
        atomic_fetch_add(&cur->refs, 1);
        *out = cur;
    }
    pthread_mutex_unlock(&slot->lock);
    return st;
}

void graph_mark_stale(live_graph *ix)
{
    if (ix)
        atomic_store(&ix->stale, 1);
}

uint64_t graph_memory_bytes(eng_db *db, uint32_t coll_id)
{
    graph_slot *slot = find_slot(db, coll_id, 0);
    uint64_t bytes = 0;
    if (!slot)
        return 0;
    pthread_mutex_lock(&slot->lock);
    if (slot->current) {
        pthread_rwlock_rdlock(&slot->current->grow_lock);
        live_graph *ix = slot->current;
        bytes = hnsw_memory_bytes(ix->graph) +
                (ix->codec ? codec_memory_bytes(ix->codec) : 0) +
                (uint64_t)ix->offsets_cap * sizeof *ix->offsets;
        pthread_rwlock_unlock(&slot->current->grow_lock);
    }
    pthread_mutex_unlock(&slot->lock);
    return bytes;
}

void graph_forget(eng_db *db, uint32_t coll_id)
{
    graph_slot *slot = find_slot(db, coll_id, 0);
    if (!slot)
        return;
    pthread_mutex_lock(&slot->lock);
    graph_release(slot->current);
    slot->current = NULL;
    pthread_mutex_unlock(&slot->lock);
}

void graph_forget_all(eng_db *db)
{
    graph_registry *r = st_env_user(db->env, ST_USER_INDEXES, registry_create, registry_free);
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    for (graph_slot *slot = r->slots; slot; slot = slot->next) {
        pthread_mutex_lock(&slot->lock);
        graph_release(slot->current);
        slot->current = NULL;
        pthread_mutex_unlock(&slot->lock);
    }
    pthread_mutex_unlock(&r->lock);
}

hnsw_scratch *graph_scratch_get(live_graph *ix)
{
    hnsw_scratch *s = NULL;
    pthread_mutex_lock(&ix->pool_lock);
    if (ix->npool > 0)
        s = ix->pool[--ix->npool];
    pthread_mutex_unlock(&ix->pool_lock);
    return s ? s : hnsw_scratch_create();
}

void graph_scratch_put(live_graph *ix, hnsw_scratch *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&ix->pool_lock);
    if (ix->npool < SCRATCH_POOL) {
        ix->pool[ix->npool++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&ix->pool_lock);
    hnsw_scratch_free(s);
}

/* Copies of vectors waiting to be freed beyond which a write waits for
 * running searches to free them (else it frees them when none runs). */
#define RECLAIM_FORCE (64u << 20)

qv_status graph_reserve(eng_db *db, live_graph *ix, uint32_t slots)
{
    int rc = 0;
    if (slots > hnsw_capacity(ix->graph) ||
        hnsw_retired_bytes(ix->graph) > RECLAIM_FORCE) {
        pthread_rwlock_wrlock(&ix->grow_lock);
        rc = hnsw_reserve(ix->graph, slots);
        if (rc == 0)
            rc = grow_offsets(ix, hnsw_capacity(ix->graph));
        hnsw_reclaim(ix->graph);
        pthread_rwlock_unlock(&ix->grow_lock);
    } else if (pthread_rwlock_trywrlock(&ix->grow_lock) == 0) {
        hnsw_reclaim(ix->graph);  /* no search running: free old lists */
        pthread_rwlock_unlock(&ix->grow_lock);
    }
    if (rc != 0)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory growing the "
                       "index to %u slots", slots);
    return QV_OK;
}

int graph_flush(eng_db *db, MDB_txn *txn, coll_rec *rec, live_graph *ix)
{
    hnsw *g = ix->graph;
    if (hnsw_dirty_count(g) == 0)
        return 0;  /* the graph did not change: its generation stands */
    MDB_dbi dbi = st_dbi(db->env, ST_DB_GRAPH);
    const uint32_t *ids = hnsw_dirty_ids(g);
    int rc = 0;
    for (size_t i = 0; i < hnsw_dirty_count(g) && rc == 0; i++) {
        unsigned char k[KEY_DOC_LEN];
        key_doc(k, rec->id, ids[i]);
        MDB_val key = {sizeof k, k}, val;
        if (hnsw_contains(g, ids[i])) {
            size_t body = hnsw_record_size(g, ids[i]);
            val.mv_size = body + sizeof(uint32_t);
            rc = mdb_put(txn, dbi, &key, &val, MDB_RESERVE);
            if (rc == 0) {
                hnsw_record_write(g, ids[i], val.mv_data);
                sealed_record_seal(val.mv_data, body);
            }
        } else {
            rc = mdb_del(txn, dbi, &key, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
        }
    }
    hnsw_dirty_clear(g);
    if (rc != 0) {
        graph_mark_stale(ix);
        return rc;
    }
    rec->entry = hnsw_entry(g);
    rec->max_level = hnsw_max_level(g);
    rec->generation++;
    atomic_store(&ix->generation, rec->generation);
    return 0;
}

qv_status graph_check_snapshot(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                               char *err, size_t errlen)
{
    live_graph *ix = NULL;
    if (!coll_has_graph(rec))
        return QV_OK;   /* no graph before the codec is trained */
    qv_status st = load_graph(db, txn, rec, &ix);
    if (st != QV_OK) {
        snprintf(err, errlen, "%s", qv_error_message(&db->base));
        return st;
    }
    int rc = hnsw_check(ix->graph, err, errlen);
    if (rc != 0)
        st = rc == -2 ? QV_ERR_NOMEM : QV_ERR_CORRUPT;
    live_free(ix);
    return st;
}

static filter_cache_entry *cache_find(live_graph *ix, const char *filter,
                                      uint64_t txn_id)
{
    for (int i = 0; i < FILTER_CACHE; i++) {
        filter_cache_entry *e = &ix->cache[i];
        if (e->matches && e->txn_id == txn_id && !strcmp(e->filter, filter))
            return e;
    }
    return NULL;
}

int graph_cached_count(live_graph *ix, const char *filter, uint64_t txn_id,
                       uint64_t *count)
{
    pthread_mutex_lock(&ix->cache_lock);
    filter_cache_entry *e = cache_find(ix, filter, txn_id);
    if (e) {
        e->used = ++ix->cache_clock;
        *count = roaring_bitmap_get_cardinality(e->matches);
    }
    pthread_mutex_unlock(&ix->cache_lock);
    return e != NULL;
}

void *graph_cached_matches(live_graph *ix, const char *filter, uint64_t txn_id)
{
    roaring_bitmap_t *copy = NULL;
    pthread_mutex_lock(&ix->cache_lock);
    filter_cache_entry *e = cache_find(ix, filter, txn_id);
    if (e) {
        e->used = ++ix->cache_clock;
        copy = roaring_bitmap_copy(e->matches);
    }
    pthread_mutex_unlock(&ix->cache_lock);
    return copy;
}

void allowed_release(allowed_set *a)
{
    if (a && unref(&a->refs))
        qv_mem_free(a);
}

allowed_set *graph_cached_allowed(live_graph *ix, const char *filter,
                                  uint64_t txn_id)
{
    allowed_set *a = NULL;
    pthread_mutex_lock(&ix->cache_lock);
    filter_cache_entry *e = cache_find(ix, filter, txn_id);
    if (e && e->allowed) {
        a = e->allowed;
        atomic_fetch_add(&a->refs, 1);
    }
    pthread_mutex_unlock(&ix->cache_lock);
    return a;
}

void graph_cache_allowed(live_graph *ix, const char *filter, uint64_t txn_id,
                         allowed_set *a)
{
    pthread_mutex_lock(&ix->cache_lock);
    filter_cache_entry *e = cache_find(ix, filter, txn_id);
    if (e && !e->allowed) {
        atomic_fetch_add(&a->refs, 1);
        e->allowed = a;
    }
    pthread_mutex_unlock(&ix->cache_lock);
}

void graph_cache_matches(live_graph *ix, const char *filter, uint64_t txn_id,
                         const void *matches)
{
    char *text = qv_strndup(filter, strlen(filter));
    roaring_bitmap_t *copy = text ? roaring_bitmap_copy(matches) : NULL;
    if (!copy) {
        qv_mem_free(text);
        return;
    }
    pthread_mutex_lock(&ix->cache_lock);
    filter_cache_entry *victim = &ix->cache[0];
    for (int i = 1; i < FILTER_CACHE; i++) {
        if (ix->cache[i].used < victim->used)
            victim = &ix->cache[i];
    }
    qv_mem_free(victim->filter);
    if (victim->matches)
        roaring_bitmap_free(victim->matches);
    allowed_release(victim->allowed);
    *victim = (filter_cache_entry){text, txn_id, copy, NULL,
                                   ++ix->cache_clock};
    pthread_mutex_unlock(&ix->cache_lock);
}

/* ---- codes and the offsets of full vectors ---- */

uint64_t graph_offsets_forget(live_graph *ix, const uint32_t *ids, size_t n)
{
    if (ix->external) {
        /* their pages are freed when this write commits */
        for (size_t i = 0; i < n; i++)
            hnsw_own_element(ix->graph, ids[i]);
        return 0;
    }
    if (!ix->codec)
        return 0;
    pthread_mutex_lock(&ix->offsets_lock);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < ix->offsets_cap)
            atomic_store(&ix->offsets[ids[i]], OFFSET_UNKNOWN);
    }
    uint64_t epoch = ++ix->offsets_epoch;
    pthread_mutex_unlock(&ix->offsets_lock);
    return epoch;
}

int graph_put_codes(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                    live_graph *ix, const uint32_t *ids, size_t n,
                    uint64_t *epoch)
{
    *epoch = 0;
    if (ix->external)
        *epoch = hnsw_copy_serial(ix->graph);   /* for the settle */
    if (!ix->codec)
        return 0;
    *epoch = graph_offsets_forget(ix, ids, n);
    MDB_dbi dbi = st_dbi(db->env, ST_DB_CODES);
    size_t bytes = hnsw_element_bytes(ix->graph);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char k[KEY_DOC_LEN];
        key_doc(k, rec->id, ids[i]);
        MDB_val key = {sizeof k, k};
        MDB_val val = {bytes, (void *)hnsw_element(ix->graph, ids[i])};
        rc = mdb_put(txn, dbi, &key, &val, 0);
    }
    return rc;
}

/*
 * After a write to a graph of vectors in place committed: its nodes read
 * their new vectors where LMDB put them, and their copies go (the
 * settle; ARCHITECTURE.md, "Vectors in place"). A node a later write
 * changed again keeps that write's copy (hnsw_settle compares serials);
 * a vector that is not in overflow pages of its own keeps its copy.
 */
/*
 * Where the full vectors of ids lie in the data file, read in a snapshot
 * taken now: OFFSET_UNKNOWN for one that is missing, not of dim floats, or
 * not in overflow pages of its own (st_fixed_offset). *rec is the
 * collection's record in that snapshot; *ok is 0 when the collection is
 * gone (then no offset was read). NULL when out of memory or no snapshot
 * could be taken; qv_mem_free it.
 */
static uint64_t *read_offsets(eng_db *db, const char *name,
                              const uint32_t *ids, size_t n, coll_rec *rec,
                              int *ok)
{
    uint64_t *found = qv_malloc(n * sizeof *found);
    MDB_txn *txn;
    if (!found || st_read_begin(db->env, &txn) != 0) {
        qv_mem_free(found);
        return NULL;
    }
    *ok = catalog_get(db, txn, name, rec) == QV_OK;
    for (size_t i = 0; i < n && *ok; i++) {
        unsigned char k[KEY_DOC_LEN];
        key_doc(k, rec->id, ids[i]);
        MDB_val key = {sizeof k, k}, val;
        found[i] = mdb_get(txn, st_dbi(db->env, ST_DB_VECTORS), &key,
                           &val) == 0 &&
                           val.mv_size == (size_t)rec->dim * sizeof(float)
                       ? st_fixed_offset(db->env, val.mv_data)
                       : OFFSET_UNKNOWN;
    }
    st_read_end(db->env, txn);
    return found;
}

static void settle_copies(eng_db *db, live_graph *ix, const char *name,
                          uint64_t serial, const uint32_t *ids, size_t n)
{
    coll_rec rec;
    int ok;
    uint64_t *found = read_offsets(db, name, ids, n, &rec, &ok);
    if (!found)
        return;
    ok = ok && ix->file_epoch == st_file_epoch(db->env);
    /* shared: no hnsw_reclaim frees a copy while its serial is read */
    pthread_rwlock_rdlock(&ix->grow_lock);
    for (size_t i = 0; i < n && ok; i++) {
        if (found[i] != OFFSET_UNKNOWN)
            hnsw_settle(ix->graph, ids[i], serial, found[i]);
    }
    pthread_rwlock_unlock(&ix->grow_lock);
    qv_mem_free(found);
}

void graph_offsets_refill(eng_db *db, live_graph *ix, const char *name,
                          uint64_t generation, uint64_t epoch,
                          const uint32_t *ids, size_t n)
{
    if (ix->external && n > 0)
        settle_copies(db, ix, name, epoch, ids, n);
    if (!ix->codec || n == 0)
        return;
    coll_rec rec;
    int ok;
    uint64_t *found = read_offsets(db, name, ids, n, &rec, &ok);
    if (!found)
        return;
    ok = ok && rec.generation == generation;
    /* stored only if no write forgot offsets since ours (epoch) and the
     * index still reflects our commit (generation) */
    pthread_mutex_lock(&ix->offsets_lock);
    if (ok && ix->offsets_epoch == epoch &&
        atomic_load(&ix->generation) == generation) {
        pthread_rwlock_rdlock(&ix->grow_lock);
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < ix->offsets_cap)
                atomic_store_explicit(&ix->offsets[ids[i]], found[i],
                                      memory_order_release);
        }
        pthread_rwlock_unlock(&ix->grow_lock);
    }
    pthread_mutex_unlock(&ix->offsets_lock);
    qv_mem_free(found);
}

void graph_vector_offsets(live_graph *ix, uint64_t generation,
                          const uint32_t *ids, size_t n, uint64_t *out)
{
    int valid = ix->offsets && atomic_load(&ix->generation) == generation;
    if (valid) {
        pthread_rwlock_rdlock(&ix->grow_lock);
        for (size_t i = 0; i < n; i++)
            out[i] = ids[i] < ix->offsets_cap
                         ? atomic_load_explicit(&ix->offsets[ids[i]],
                                                memory_order_acquire)
                         : OFFSET_UNKNOWN;
        pthread_rwlock_unlock(&ix->grow_lock);
        /* a write that committed meanwhile may have refilled some with
         * its own vectors' offsets: then none is trusted */
        valid = atomic_load(&ix->generation) == generation;
    }
    for (size_t i = 0; i < n && !valid; i++)
        out[i] = OFFSET_UNKNOWN;
}

/* ---- training ---- */

/* Bounds of the sample a codec is trained on. */
#define TRAIN_SAMPLE_MAX 25600
#define TRAIN_SAMPLE_BYTES (256u << 20)
/* Vectors copied out of LMDB at a time while encoding and building. */
#define TRAIN_CHUNK 4096

/* Up to max vectors of the collection, from start (an internal id) on,
 * copied into vecs (unit length for cosine) with their ids; every
 * stride-th record only. Returns how many, or -1 with *rc set. */
static long copy_vectors(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                         uint32_t *start, size_t stride, size_t max,
                         uint32_t *ids, float *vecs, int *rc)
{
    MDB_cursor *cur;
    unsigned char k[KEY_DOC_LEN];
    key_doc(k, rec->id, *start);
    size_t n = 0, seen = 0, vec_bytes = (size_t)rec->dim * sizeof(float);
    *rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_VECTORS), &cur);
    if (*rc != 0)
        return -1;
    MDB_val key = {sizeof k, k}, val;
    for (*rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         *rc == 0 && n < max;
         *rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const unsigned char *p = key.mv_data;
        if (key.mv_size != KEY_DOC_LEN || key_get_u32(p) != rec->id)
            break;
        if (val.mv_size != vec_bytes) {
            *rc = MDB_CORRUPTED;
            break;
        }
        uint32_t iid = key_get_u32(p + KEY_COLL_LEN);
        *start = iid + 1;
        if (seen++ % stride)
            continue;
        float *v = vecs + n * rec->dim;
        memcpy(v, val.mv_data, vec_bytes);
        if (rec->metric == QV_METRIC_COSINE)
            (void)dist_normalize(v, rec->dim, v);  /* never all zeros */
        ids[n++] = iid;
    }
    if (*rc == MDB_NOTFOUND || (*rc == 0 && n <= max))
        *rc = 0;
    if (*rc == 0 && n == 0)
        *start = UINT32_MAX;  /* the end */
    mdb_cursor_close(cur);
    return *rc == 0 ? (long)n : -1;
}

/* Encode every vector with ix's codec: into the graph as new nodes (the
 * first training) or over the stored codes (a re-training). */
static qv_status encode_all(eng_db *db, MDB_txn *txn, coll_rec *rec,
                            live_graph *ix, int build)
{
    uint32_t *ids = qv_malloc(TRAIN_CHUNK * sizeof *ids);
    float *vecs = qv_malloc((size_t)TRAIN_CHUNK * rec->dim * sizeof *vecs);
    const float **ptrs = qv_malloc(TRAIN_CHUNK * sizeof *ptrs);
    int *levels = qv_malloc(TRAIN_CHUNK * sizeof *levels);
    uint8_t *code = qv_malloc(codec_code_bytes(ix->codec));
    qv_status st = ids && vecs && ptrs && levels && code
                       ? QV_OK
                       : qv_fail(&db->base, QV_ERR_NOMEM, "out of memory "
                                 "training the codec");
    uint32_t start = 0;
    while (st == QV_OK && start != UINT32_MAX) {
        int rc;
        long n = copy_vectors(db, txn, rec, &start, 1, TRAIN_CHUNK, ids,
                              vecs, &rc);
        if (n < 0) {
            st = eng_status(db, rc, "training the codec");
            break;
        }
        if (n == 0)
            break;
        if (build) {
            for (long i = 0; i < n; i++) {
                ptrs[i] = vecs + (size_t)i * rec->dim;
                levels[i] = hnsw_random_level(ix->graph, ids[i],
                                              rec->generation);
            }
            if (hnsw_insert_parallel(ix->graph, ids, ptrs, levels, (size_t)n,
                                     eng_threads(db)) != 0)
                st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory "
                             "building the index");
            uint64_t epoch;
            if (st == QV_OK && (rc = graph_put_codes(db, txn, rec, ix, ids,
                                                     (size_t)n, &epoch)))
                st = eng_status(db, rc, "storing codes");
            continue;
        }
        MDB_dbi dbi = st_dbi(db->env, ST_DB_CODES);
        for (long i = 0; i < n && st == QV_OK; i++) {
            unsigned char k[KEY_DOC_LEN];
            key_doc(k, rec->id, ids[i]);
            codec_encode(ix->codec, vecs + (size_t)i * rec->dim, code);
            MDB_val key = {sizeof k, k};
            MDB_val val = {codec_code_bytes(ix->codec), code};
            if ((rc = mdb_put(txn, dbi, &key, &val, 0)) != 0)
                st = eng_status(db, rc, "storing codes");
        }
    }
    qv_mem_free(ids);
    qv_mem_free(vecs);
    qv_mem_free(ptrs);
    qv_mem_free(levels);
    qv_mem_free(code);
    return st;
}

qv_status graph_train(eng_db *db, MDB_txn *txn, coll_rec *rec)
{
    qv_status st = catalog_check_ids(db, txn, rec);
    if (st != QV_OK)
        return st;
    codec_spec spec = {(enum codec_kind)rec->codec, rec->codec_param};
    size_t max = TRAIN_SAMPLE_BYTES / ((size_t)rec->dim * sizeof(float));
    max = max < TRAIN_SAMPLE_MAX ? max : TRAIN_SAMPLE_MAX;
    size_t stride = rec->count > max ? (size_t)(rec->count / max) : 1;
    size_t want = (size_t)(rec->count / stride);
    want = want < max ? want : max;
    uint32_t *ids = qv_malloc((want ? want : 1) * sizeof *ids);
    float *sample = qv_malloc((want ? want : 1) * rec->dim * sizeof *sample);
    codec *cd = NULL;
    int rc = 0;
    uint32_t start = 0;
    long n = ids && sample ? copy_vectors(db, txn, rec, &start, stride, want,
                                          ids, sample, &rc)
                           : -2;
    if (n == -2)
        st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for a training "
                     "sample of %zu vectors", want);
    else if (n < 0)
        st = eng_status(db, rc, "training the codec");
    else if (!(cd = codec_train(&spec, rec->dim, rec->metric != QV_METRIC_L2,
                                sample, (size_t)n, rec->id, eng_threads(db))))
        st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory training the "
                     "codec");
    qv_mem_free(ids);
    qv_mem_free(sample);
    if (st == QV_OK && (rc = store_codec(db, txn, rec, cd)) != 0)
        st = eng_status(db, rc, "storing the codec");
    if (st != QV_OK) {
        codec_free(cd);
        return st;
    }
    int build = !rec->codec_trained;
    live_graph *ix = live_create(db, rec, cd);   /* owns cd from here */
    if (!ix || hnsw_reserve(ix->graph, rec->next_iid) != 0 ||
        grow_offsets(ix, hnsw_capacity(ix->graph)) != 0)
        st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for the index");
    if (st == QV_OK)
        st = encode_all(db, txn, rec, ix, build);
    if (st == QV_OK && build) {
        hnsw_scratch *s = hnsw_scratch_create();
        size_t orphans;
        if (!s || hnsw_repair(ix->graph, s, &orphans) != 0)
            st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory building "
                         "the index");
        hnsw_scratch_free(s);
        if (st == QV_OK && (rc = graph_flush(db, txn, rec, ix)) != 0)
            st = eng_status(db, rc, "storing the index");
    }
    if (st == QV_OK) {
        rec->codec_trained = 1;
        if (!build)
            rec->generation++;   /* new codes: every process reloads */
    }
    if (ix)
        graph_release(ix);
    return st;
}
