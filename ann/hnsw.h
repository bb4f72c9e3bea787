/*
 * hnsw.h - the in-memory HNSW graph (Malkov and Yashunin, 2016/2018).
 *
 * The graph is a compact traversal form: node slots are indexed by the
 * database's dense internal ids, vectors are copied into one aligned
 * array, level-0 neighbour lists into another. It does no I/O: the db
 * layer persists every node record that an insert or removal changed
 * (hnsw_dirty_*) and rebuilds the graph from those records at open.
 *
 * Threads: searches may run concurrently with each other and with one
 * writer. Writers are serialized by the caller, except that
 * hnsw_insert_parallel runs several inserts at once under per-node
 * locks. Neighbour lists are read and written with relaxed atomic
 * operations, so a search concurrent with a writer sees every list
 * either before or after an update of each entry: always valid node ids.
 * Growing the arrays (hnsw_reserve) needs no search to be running.
 */
#ifndef QV_ANN_HNSW_H
#define QV_ANN_HNSW_H

#include <stddef.h>
#include <stdint.h>

#include "ann/codec.h"
#include "ann/topk.h"

enum hnsw_metric { HNSW_L2 = 0, HNSW_IP = 1, HNSW_COSINE = 2 };

#define HNSW_MAX_LEVEL 15
#define HNSW_M_MAX 128   /* the largest M a graph may have */
#define HNSW_NO_NODE UINT32_MAX

typedef struct hnsw_params {
    uint32_t dim;
    uint32_t M;                /* neighbours per node above level 0 */
    uint32_t ef_construction;
    enum hnsw_metric metric;
    uint64_t seed;             /* for levels */
    /* NULL: nodes hold float vectors. Else nodes hold this codec's codes
     * and every distance is a code distance; the codec must outlive the
     * graph. */
    const codec *codec;
    /* Nonzero: the float vectors of an l2 or ip graph stay where the
     * caller keeps them, in one region that may move (LMDB's map): each
     * node holds an offset from the base the caller sets (hnsw_set_base),
     * or a copy of its own. See "external elements" below. */
    int external;
} hnsw_params;

typedef struct hnsw hnsw;
/* Per-thread working memory of a search or insert. */
typedef struct hnsw_scratch hnsw_scratch;

hnsw *hnsw_create(const hnsw_params *params);
void hnsw_free(hnsw *h);

/* Make room for node slots [0, slots). Returns 0 or -1 (out of memory). */
int hnsw_reserve(hnsw *h, uint32_t slots);
uint32_t hnsw_capacity(const hnsw *h);
/* Live nodes. */
uint32_t hnsw_count(const hnsw *h);
int hnsw_contains(const hnsw *h, uint32_t id);

/* A node's level drawn from the geometric distribution, fixed by id and
 * salt so that a rebuild draws the same. */
int hnsw_random_level(const hnsw *h, uint32_t id, uint64_t salt);

/*
 * Insert node id (a free slot below capacity) with its vector at level.
 * Returns 0 or -1 when out of memory (then the graph is unchanged).
 */
int hnsw_insert(hnsw *h, hnsw_scratch *s, uint32_t id, const float *vec,
                int level);

/* Insert n nodes using up to threads threads; levels[i] for ids[i]. */
int hnsw_insert_parallel(hnsw *h, const uint32_t *ids, const float *const *vecs,
                         const int *levels, size_t n, unsigned threads);

/*
 * Remove node id and reconnect the nodes that pointed to it, so the graph
 * stays navigable. The graph keeps, for writers only, the reverse of
 * every list, so this reads the lists of id's in-neighbours, not every
 * list. Returns 0 or -1 when out of memory (then the graph must be
 * rebuilt from its records).
 */
int hnsw_remove(hnsw *h, hnsw_scratch *s, uint32_t id);

/*
 * The k nearest live nodes to q among a beam of ef (ef >= k) into out
 * (topk initialised with capacity >= k by the caller). For cosine, q must
 * be unit length. Removed nodes are walked through but never returned.
 * With allowed (one bit per node id below allowed_n, see hnsw_allows;
 * NULL for all) only
 * allowed nodes are returned, and the walk measures and expands allowed
 * nodes, reaching others' allowed neighbours two hops on, plus at most
 * the scratch's bridges of rejected nodes (hnsw_scratch_set_bridges);
 * fewer than k come back only when it reached fewer allowed nodes.
 */
void hnsw_search(const hnsw *h, hnsw_scratch *s, const float *q, uint32_t k,
                 uint32_t ef, const uint64_t *allowed, uint32_t allowed_n,
                 topk *out);

/* Whether the bit set allowed (bit id % 64 of word id / 64, ids below n;
 * NULL: every id) has id. A bit rather than a byte per node keeps the set
 * of 60,000 nodes in 7.5 KiB, in L1 beside the vectors a walk streams. */
static inline int hnsw_allows(const uint64_t *allowed, uint32_t n,
                              uint32_t id)
{
    return !allowed || (id < n && (allowed[id >> 6] >> (id & 63)) & 1);
}

/*
 * Make every node reachable from the entry point again, after a batch of
 * inserts or removals. The pruning heuristic and removals can cut a
 * node's last incoming edge, or a group's (hnswlib's graphs have such
 * orphans too). Each node holds a label that an in-neighbour of smaller
 * label proves reachable; the repair examines only the nodes the batch
 * touched, moves labels where that suffices and gives the rest an edge
 * from a nearby node labelled below them (they are "adopted"). Its work
 * grows with the batch, not the graph; a walk of the whole graph is left
 * for the first write after a load, a change of entry point and a repair
 * that exceeds its budget (hnsw_walks counts them). Returns 0 or -1 when
 * out of memory (then the graph must be rebuilt from its records);
 * *repaired counts the adopted nodes.
 */
int hnsw_repair(hnsw *h, hnsw_scratch *s, size_t *repaired);

/* Whole-graph walks the repairs have made (see hnsw_repair). */
unsigned long hnsw_walks(const hnsw *h);

hnsw_scratch *hnsw_scratch_create(void);
/* Distances the beam searches on s computed since the last call. */
unsigned long hnsw_scratch_distances(hnsw_scratch *s);

/*
 * Rejected nodes a filtered search on s may measure and walk through
 * (default 0): near a query whose neighbourhood the filter rejects, they
 * lead to the nearest allowed nodes, two hops on.
 */
void hnsw_scratch_set_bridges(hnsw_scratch *s, uint32_t bridges);
void hnsw_scratch_free(hnsw_scratch *s);

/* The stored vector of a node (unit length for cosine); valid while no
 * hnsw_reserve runs. NULL for a graph over codes. */
const float *hnsw_vector(const hnsw *h, uint32_t id);

/* Bytes of a node's element (vector or code), and the element itself. */
size_t hnsw_element_bytes(const hnsw *h);
const void *hnsw_element(const hnsw *h, uint32_t id);

/*
 * ---- external elements (hnsw_params.external) ----
 *
 * Each node's vector is read at base + its offset, where base is the
 * start of a region the caller owns (LMDB's map of the data file), or
 * from a copy the graph owns. The caller's contract:
 *  - hnsw_set_base before every use, with the region's current start;
 *    the region neither moves nor loses the bytes at a node's offset
 *    while any search, insert or removal runs.
 *  - A write that changes or deletes a stored vector gives the node a
 *    copy before that change takes effect (hnsw_insert does, into the
 *    copy; hnsw_own_element for a removal), so no reader follows an
 *    offset to bytes that were replaced.
 *  - Once the new vector lies at a lasting offset, hnsw_settle swaps the
 *    copy for it; the copy is freed by hnsw_reclaim.
 * Offsets are below 2^63.
 */
void hnsw_set_base(hnsw *h, const void *base);
/* At load, before searches: node id's element at base + offset, or a
 * copy of elem (a vector that has no lasting offset). 0; -1 for a graph
 * without external elements or an id beyond capacity; -2 out of memory
 * (hnsw_place_copy). */
int hnsw_place_at(hnsw *h, uint32_t id, uint64_t offset);
int hnsw_place_copy(hnsw *h, uint32_t id, const void *elem);
/* A write is about to delete node id's stored vector: the node reads a
 * copy from now on (the zero vector if none can be allocated: removed
 * nodes are walked through, never returned). No-op for other graphs. */
void hnsw_own_element(hnsw *h, uint32_t id);
/* Serial of the last copy made: a write reads it after its changes, and
 * settles with it once committed. */
uint64_t hnsw_copy_serial(const hnsw *h);
/*
 * Swap node id's copy for offset, if the copy is one made up to serial
 * (by the write that read hnsw_copy_serial, or before: a later write
 * made a newer copy, which its own settle swaps). 1 if swapped. Not
 * concurrently with hnsw_reclaim.
 */
int hnsw_settle(hnsw *h, uint32_t id, uint64_t serial, uint64_t offset);
/* Bytes of copies waiting for hnsw_reclaim. */
size_t hnsw_retired_bytes(hnsw *h);


/* Entry point and top level, for persistence; HNSW_NO_NODE when empty. */
uint32_t hnsw_entry(const hnsw *h);
int hnsw_max_level(const hnsw *h);

/* ---- persistence of node records ---- */

/*
 * Nodes changed since hnsw_dirty_clear (inserted, relinked or removed).
 * The caller writes hnsw_record of each, or deletes the record of a node
 * no longer in the graph.
 */
size_t hnsw_dirty_count(const hnsw *h);
const uint32_t *hnsw_dirty_ids(const hnsw *h);
void hnsw_dirty_clear(hnsw *h);

/* Bytes of node id's record, and the record itself. */
size_t hnsw_record_size(const hnsw *h, uint32_t id);
void hnsw_record_write(const hnsw *h, uint32_t id, void *buf);

/*
 * Restore a node from its record and element (at open): its vector, or
 * its code for a graph over codes (hnsw_element_bytes bytes). The entry point is
 * set afterwards with hnsw_set_entry. Returns 0, or -1 if the record is
 * malformed, -2 when out of memory.
 */
int hnsw_record_load(hnsw *h, uint32_t id, const void *elem, const void *rec,
                     size_t len);
void hnsw_set_entry(hnsw *h, uint32_t entry, int max_level);

/*
 * Check the graph's invariants: every stored neighbour is a live node of
 * at least that level, degrees are within bounds, no self loops, the entry
 * point has the top level and every live node is reachable from it over
 * level 0. Once a write built the write side (hnsw_repair): the reverse
 * lists and in-degrees match the lists, and after a repair every node
 * but the entry point has a level-0 in-neighbour labelled below it.
 * Returns 0, -1 with the first violation described in err, or -2 when
 * out of memory (nothing was found).
 */
int hnsw_check(const hnsw *h, char *err, size_t errlen);
/*
 * The part of hnsw_check that searches and inserts rely on to stay within
 * the lists (all but reachability): run on a graph restored from records
 * (hnsw_record_load checks each record alone) before it is used. 0, or
 * -1 with the first violation in err.
 */
int hnsw_check_links(const hnsw *h, char *err, size_t errlen);

/* Free the lists replaced by inserts into reused slots, and the copies
 * replaced by hnsw_settle or later writes; only while no search, write
 * or hnsw_settle is running. */
void hnsw_reclaim(hnsw *h);

/* Resident bytes of the graph and its vectors or codes, for stats. */
size_t hnsw_memory_bytes(const hnsw *h);

#endif
