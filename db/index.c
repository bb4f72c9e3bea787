#include "index.h"

#include <stdio.h>
#include <roaring/roaring.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "keys.h"

_Static_assert(QV_M_MAX <= HNSW_M_MAX, "the API allows an M the graph lacks");

/* One collection's slot in the registry: the graph now in use. */
typedef struct index_slot {
    uint32_t coll_id;
    pthread_mutex_t lock;      /* held while (re)loading or swapping */
    live_index *current;       /* holds one reference */
    struct index_slot *next;
} index_slot;

typedef struct index_registry {
    pthread_mutex_t lock;
    index_slot *slots;
} index_registry;

static void *registry_create(void)
{
    index_registry *r = qv_calloc(1, sizeof *r);
    if (r)
        pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void registry_free(void *arg)
{
    index_registry *r = arg;
    index_slot *slot = r->slots;
    while (slot) {
        index_slot *next = slot->next;
        index_release(slot->current);
        pthread_mutex_destroy(&slot->lock);
        qv_mem_free(slot);
        slot = next;
    }
    pthread_mutex_destroy(&r->lock);
    qv_mem_free(r);
}

static index_slot *find_slot(emb_db *db, uint32_t coll_id, int create)
{
    index_registry *r = st_env_user(db->env, registry_create, registry_free);
    if (!r)
        return NULL;
    pthread_mutex_lock(&r->lock);
    index_slot *slot = r->slots;
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

static void live_free(live_index *ix)
{
    for (int i = 0; i < FILTER_CACHE; i++) {
        qv_mem_free(ix->cache[i].filter);
        if (ix->cache[i].matches)
            roaring_bitmap_free(ix->cache[i].matches);
    }
    pthread_mutex_destroy(&ix->cache_lock);
    hnsw_free(ix->graph);
    for (int i = 0; i < ix->npool; i++)
        hnsw_scratch_free(ix->pool[i]);
    pthread_rwlock_destroy(&ix->grow_lock);
    pthread_mutex_destroy(&ix->pool_lock);
    qv_mem_free(ix);
}

void index_release(live_index *ix)
{
    if (ix && atomic_fetch_sub(&ix->refs, 1) == 1)
        live_free(ix);
}

static live_index *live_create(const coll_rec *rec)
{
    hnsw_params p = {
        .dim = rec->dim,
        .M = rec->M,
        .ef_construction = rec->ef_construction,
        .metric = (enum hnsw_metric)rec->metric,
        .seed = rec->id,
    };
    live_index *ix = qv_calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    ix->graph = hnsw_create(&p);
    if (!ix->graph) {
        qv_mem_free(ix);
        return NULL;
    }
    atomic_init(&ix->refs, 1);
    atomic_init(&ix->stale, 0);
    atomic_init(&ix->generation, rec->generation);
    pthread_rwlock_init(&ix->grow_lock, NULL);
    pthread_mutex_init(&ix->pool_lock, NULL);
    pthread_mutex_init(&ix->cache_lock, NULL);
    return ix;
}

/*
 * Fill the graph from the snapshot: the graph and vector records share
 * their keys, so two cursors walk them side by side.
 */
static qv_status load_nodes(emb_db *db, MDB_txn *txn, const coll_rec *rec,
                            hnsw *graph)
{
    MDB_cursor *gcur = NULL, *vcur = NULL;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, rec->id);
    size_t vec_bytes = (size_t)rec->dim * sizeof(float);
    qv_status st = QV_OK;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_GRAPH), &gcur);
    if (rc == 0)
        rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_VECTORS), &vcur);
    MDB_val gkey = {sizeof prefix, prefix}, gval, vkey, vval;
    if (rc == 0)
        rc = mdb_cursor_get(gcur, &gkey, &gval, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(gcur, &gkey, &gval, MDB_NEXT)) {
        const unsigned char *k = gkey.mv_data;
        if (gkey.mv_size != KEY_DOC_LEN || memcmp(k, prefix, sizeof prefix))
            break;
        uint32_t iid = key_get_u32(k + KEY_COLL_LEN);
        vkey = gkey;
        rc = mdb_cursor_get(vcur, &vkey, &vval, MDB_SET_KEY);
        if (rc != 0 || vval.mv_size != vec_bytes) {
            st = qv_fail(&db->base, QV_ERR_CORRUPT, "graph node %u has no "
                         "vector of %zu bytes", iid, vec_bytes);
            break;
        }
        int lr = -1;
        uint32_t sum;
        if (iid < hnsw_capacity(graph) && gval.mv_size > sizeof sum) {
            size_t body = gval.mv_size - sizeof sum;
            memcpy(&sum, (char *)gval.mv_data + body, sizeof sum);
            if (sum == record_checksum(gval.mv_data, body))
                lr = hnsw_record_load(graph, iid, vval.mv_data, gval.mv_data,
                                      body);
        }
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
        st = emb_status(db, rc, "loading the index");
    mdb_cursor_close(gcur);
    mdb_cursor_close(vcur);
    return st;
}

static qv_status load_index(emb_db *db, MDB_txn *txn, const coll_rec *rec,
                            live_index **out)
{
    live_index *ix = live_create(rec);
    if (!ix || hnsw_reserve(ix->graph, rec->next_iid) != 0) {
        if (ix)
            live_free(ix);
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for the index "
                       "of %u slots", rec->next_iid);
    }
    qv_status st = load_nodes(db, txn, rec, ix->graph);
    if (st == QV_OK && hnsw_count(ix->graph) != rec->count)
        st = qv_fail(&db->base, QV_ERR_CORRUPT, "the index has %u nodes but "
                     "the collection %llu documents", hnsw_count(ix->graph),
                     (unsigned long long)rec->count);
    if (st == QV_OK && rec->count > 0 &&
        (rec->entry >= rec->next_iid || !hnsw_contains(ix->graph, rec->entry)))
        st = qv_fail(&db->base, QV_ERR_CORRUPT, "the index entry point %u is "
                     "not a node", rec->entry);
    if (st != QV_OK) {
        live_free(ix);
        return st;
    }
    hnsw_set_entry(ix->graph, rec->count ? rec->entry : HNSW_NO_NODE,
                   rec->count ? rec->max_level : -1);
    *out = ix;
    return QV_OK;
}

qv_status index_acquire(emb_db *db, MDB_txn *txn, const coll_rec *rec,
                        live_index **out)
{
    index_slot *slot = find_slot(db, rec->id, 1);
    if (!slot)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    qv_status st = QV_OK;
    pthread_mutex_lock(&slot->lock);
    live_index *cur = slot->current;
    if (!cur || atomic_load(&cur->stale) ||
        atomic_load(&cur->generation) < rec->generation) {
        live_index *fresh = NULL;
        st = load_index(db, txn, rec, &fresh);
        if (st == QV_OK) {
            index_release(cur);
            slot->current = cur = fresh;
        }
    }
    if (st == QV_OK) {
        atomic_fetch_add(&cur->refs, 1);
        *out = cur;
    }
    pthread_mutex_unlock(&slot->lock);
    return st;
}

void index_mark_stale(live_index *ix)
{
    if (ix)
        atomic_store(&ix->stale, 1);
}

uint64_t index_memory_bytes(emb_db *db, uint32_t coll_id)
{
    index_slot *slot = find_slot(db, coll_id, 0);
    uint64_t bytes = 0;
    if (!slot)
        return 0;
    pthread_mutex_lock(&slot->lock);
    if (slot->current) {
        pthread_rwlock_rdlock(&slot->current->grow_lock);
        bytes = hnsw_memory_bytes(slot->current->graph);
        pthread_rwlock_unlock(&slot->current->grow_lock);
    }
    pthread_mutex_unlock(&slot->lock);
    return bytes;
}

void index_forget(emb_db *db, uint32_t coll_id)
{
    index_slot *slot = find_slot(db, coll_id, 0);
    if (!slot)
        return;
    pthread_mutex_lock(&slot->lock);
    index_release(slot->current);
    slot->current = NULL;
    pthread_mutex_unlock(&slot->lock);
}

hnsw_scratch *index_scratch_get(live_index *ix)
{
    hnsw_scratch *s = NULL;
    pthread_mutex_lock(&ix->pool_lock);
    if (ix->npool > 0)
        s = ix->pool[--ix->npool];
    pthread_mutex_unlock(&ix->pool_lock);
    return s ? s : hnsw_scratch_create();
}

void index_scratch_put(live_index *ix, hnsw_scratch *s)
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

qv_status index_reserve(emb_db *db, live_index *ix, uint32_t slots)
{
    int rc = 0;
    if (slots > hnsw_capacity(ix->graph)) {
        pthread_rwlock_wrlock(&ix->grow_lock);
        rc = hnsw_reserve(ix->graph, slots);
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

int index_flush(emb_db *db, MDB_txn *txn, coll_rec *rec, live_index *ix)
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
                uint32_t sum = record_checksum(val.mv_data, body);
                memcpy((char *)val.mv_data + body, &sum, sizeof sum);
            }
        } else {
            rc = mdb_del(txn, dbi, &key, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
        }
    }
    hnsw_dirty_clear(g);
    if (rc != 0) {
        index_mark_stale(ix);
        return rc;
    }
    rec->entry = hnsw_entry(g);
    rec->max_level = hnsw_max_level(g);
    rec->generation++;
    atomic_store(&ix->generation, rec->generation);
    return 0;
}

qv_status index_check_snapshot(emb_db *db, MDB_txn *txn, const coll_rec *rec,
                               char *err, size_t errlen)
{
    live_index *ix = NULL;
    qv_status st = load_index(db, txn, rec, &ix);
    if (st != QV_OK) {
        snprintf(err, errlen, "%s", qv_errmsg(&db->base));
        return st;
    }
    int rc = hnsw_check(ix->graph, err, errlen);
    if (rc != 0)
        st = rc == -2 ? QV_ERR_NOMEM : QV_ERR_CORRUPT;
    live_free(ix);
    return st;
}

void *index_cached_matches(live_index *ix, const char *filter, uint64_t txn_id)
{
    roaring_bitmap_t *copy = NULL;
    pthread_mutex_lock(&ix->cache_lock);
    for (int i = 0; i < FILTER_CACHE; i++) {
        filter_cache_entry *e = &ix->cache[i];
        if (e->matches && e->txn_id == txn_id && !strcmp(e->filter, filter)) {
            e->used = ++ix->cache_clock;
            copy = roaring_bitmap_copy(e->matches);
            break;
        }
    }
    pthread_mutex_unlock(&ix->cache_lock);
    return copy;
}

void index_cache_matches(live_index *ix, const char *filter, uint64_t txn_id,
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
    *victim = (filter_cache_entry){text, txn_id, copy, ++ix->cache_clock};
    pthread_mutex_unlock(&ix->cache_lock);
}
