/*
 * index.h - the HNSW graphs of this process's open collections.
 *
 * The graph of a collection lives in LMDB (one record per node, sub-db
 * graph) and, for traversal, in memory (ann/hnsw.h). The memory form is
 * loaded from a snapshot on first use and kept in step by this process's
 * writes; every write also bumps the collection's generation, so a reader
 * whose snapshot is newer than the graph in memory (another process
 * wrote) loads the graph again from that snapshot.
 *
 * A write changes the graph in memory while its transaction is open; if
 * the transaction does not commit, the graph is marked stale and the next
 * user reloads it, so memory never runs ahead of the database for long.
 * Searches run concurrently with a write: they see each neighbour list
 * before or after an update and take their hits from their own snapshot.
 */
#ifndef QV_DB_ENGINE_GRAPHS_GRAPH_H
#define QV_DB_ENGINE_GRAPHS_GRAPH_H

#include <pthread.h>
#include <stdatomic.h>

#include "db/engine/store/txn.h"
#include "ann/hnsw.h"

#define SCRATCH_POOL 16
#define FILTER_CACHE 16

/* A filter's matches as one bit per internal id (hnsw_allows), what a
 * filtered walk reads; shared by the searches of one snapshot, counted. */
typedef struct allowed_set {
    atomic_int refs;
    uint32_t n;              /* internal ids covered */
    uint64_t bits[];         /* hnsw_allows's bit set */
} allowed_set;

void allowed_release(allowed_set *a);

/* A filter's matching set, valid for one snapshot (LMDB txn id). */
typedef struct filter_cache_entry {
    char *filter;            /* the filter's text */
    uint64_t txn_id;
    void *matches;           /* roaring_bitmap_t */
    allowed_set *allowed;    /* its bytes, once a walk needed them */
    uint64_t used;           /* for least-recently-used eviction */
} filter_cache_entry;

/* An offset not known: the vector changed since the index was loaded. */
#define OFFSET_UNKNOWN UINT64_MAX

typedef struct live_graph {
    hnsw *graph;
    codec *codec;     /* owned; NULL: the graph holds the float vectors */
    /* With a codec: the data file offset of each node's full vector,
     * read by re-ranking without a B-tree lookup (hot metadata). Valid
     * for snapshots of this index's generation; a write forgets the
     * offsets of the vectors it changes, and after its commit fills them
     * in again unless another write came between (offsets_epoch). */
    _Atomic uint64_t *offsets;
    uint32_t offsets_cap;
    pthread_mutex_t offsets_lock;
    uint64_t offsets_epoch;
    _Atomic uint64_t generation;  /* of the collection it reflects */
    /* The graph reads its vectors in place in LMDB's map (hnsw's
     * external elements): offsets into the data file of file_epoch
     * (st_file_epoch); a compaction makes it reload. */
    int external;
    uint64_t file_epoch;
    atomic_int refs;
    atomic_int stale;
    /* searches hold it shared; growing the graph's arrays, and inserts
     * that rewrite slots used before, exclusive */
    pthread_rwlock_t grow_lock;
    /* the generation the last rewrite of a used slot commits as: a search
     * whose snapshot is older may have measured vectors its snapshot does
     * not hold (written under grow_lock exclusive) */
    _Atomic uint64_t rewritten_at;
    pthread_mutex_t pool_lock;
    hnsw_scratch *pool[SCRATCH_POOL];
    int npool;
    /* recent filters' matches: a repeated filter between two writes
     * costs a bitmap copy instead of index lookups and payload reads */
    pthread_mutex_t cache_lock;
    filter_cache_entry cache[FILTER_CACHE];
    uint64_t cache_clock;
} live_graph;

/* The cached matches of filter at txn_id: a new bitmap, or NULL. */
void *graph_cached_matches(live_graph *ix, const char *filter,
                           uint64_t txn_id);
/* How many match filter at txn_id, if it is cached: 1, else 0. */
int graph_cached_count(live_graph *ix, const char *filter, uint64_t txn_id,
                       uint64_t *count);
/* The cached byte form of filter's matches at txn_id (a reference to
 * release), or NULL; and remember one (the cache takes a reference). */
allowed_set *graph_cached_allowed(live_graph *ix, const char *filter,
                                  uint64_t txn_id);
void graph_cache_allowed(live_graph *ix, const char *filter, uint64_t txn_id,
                         allowed_set *a);
/* Remember matches (a roaring_bitmap_t, copied) for filter at txn_id. */
void graph_cache_matches(live_graph *ix, const char *filter, uint64_t txn_id,
                         const void *matches);

/*
 * The collection's graph, current for the snapshot txn (loaded or
 * reloaded from it when needed). Release with graph_release(). *out is
 * NULL for a collection whose codec is not trained yet (it has no graph).
 */
qv_status graph_acquire(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                        live_graph **out);
void graph_release(live_graph *ix);

/* Working memory for one search or write on ix. */
hnsw_scratch *graph_scratch_get(live_graph *ix);
void graph_scratch_put(live_graph *ix, hnsw_scratch *s);

/* Make room for node slots [0, slots), waiting for searches to finish. */
qv_status graph_reserve(eng_db *db, live_graph *ix, uint32_t slots);

/*
 * In a write transaction, after the graph changed: write the records of
 * every node it changed, bump rec's generation and entry point (the caller
 * stores rec). On failure the graph is marked stale.
 */
int graph_flush(eng_db *db, MDB_txn *txn, coll_rec *rec, live_graph *ix);

/*
 * In a write transaction, after nodes ids[0..n) took new vectors: store
 * their codes (a graph over codes) and forget their vector offsets.
 * Returns 0 or an LMDB code; *epoch is for graph_offsets_refill (for a
 * graph of vectors in place, the serial its settle needs).
 */
int graph_put_codes(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                    live_graph *ix, const uint32_t *ids, size_t n,
                    uint64_t *epoch);
/* Forget the vector offsets of ids (removed nodes); returns the epoch. A
 * graph of vectors in place copies their vectors, whose pages the write
 * frees (hnsw_own_element). */
uint64_t graph_offsets_forget(live_graph *ix, const uint32_t *ids, size_t n);
/*
 * After the write that forgot ids' offsets (at epoch) committed collection
 * name at generation: read them from a new snapshot, unless another write
 * came since. Best effort: offsets left unknown only cost a lookup. A
 * graph of vectors in place swaps the write's copies of ids' vectors for
 * where LMDB stored them (settle_copies in graph.c).
 */
void graph_offsets_refill(eng_db *db, live_graph *ix, const char *name,
                          uint64_t generation, uint64_t epoch,
                          const uint32_t *ids, size_t n);
/*
 * The data file offsets of ids' full vectors for a snapshot at generation:
 * OFFSET_UNKNOWN where the index does not know it for that snapshot (the
 * caller looks those up in its snapshot). Only vectors in overflow pages
 * of their own have known offsets (st_fixed_offset): smaller ones share
 * leaf pages, which move with every write to the page.
 */
void graph_vector_offsets(live_graph *ix, uint64_t generation,
                          const uint32_t *ids, size_t n, uint64_t *out);

/*
 * Train the codec of the collection (rec, updated) on a sample of its
 * vectors and store it. The first training also encodes every vector and
 * builds the graph over the codes; later ones re-encode every vector and
 * keep the graph. In a write transaction.
 */
qv_status graph_train(eng_db *db, MDB_txn *txn, coll_rec *rec);

/* A write that touched ix did not commit: reload before the next use. */
void graph_mark_stale(live_graph *ix);

/*
 * Load the collection's graph afresh from the snapshot and check it
 * (hnsw_check, node count, entry point). QV_OK, or a status with the first
 * violation in err.
 */
qv_status graph_check_snapshot(eng_db *db, MDB_txn *txn, const coll_rec *rec,
                               char *err, size_t errlen);

/* Bytes the collection's graph holds in this process; 0 if not loaded. */
uint64_t graph_memory_bytes(eng_db *db, uint32_t coll_id);

/* The collection was dropped: forget its graph. */
void graph_forget(eng_db *db, uint32_t coll_id);
/* The database file was rewritten (compaction): forget every graph. */
void graph_forget_all(eng_db *db);

#endif
