#include "ann/hnsw.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>


#include "common/alloc.h"
#include "common/check.h"
#include "ann/codec.h"
#include "ann/distance.h"

#define LOCK_STRIPES 4096u
#define NO_LEVEL (-1)
/* A location (hnsw.loc) with this bit is the address of a copy the graph
 * owns; without it, an offset from the caller's base. */
#define LOC_OWN (UINT64_C(1) << 63)
/* Bytes before an owned copy's element: its serial (hnsw_settle), and
 * 64 so that the element keeps the allocation's alignment. */
#define COPY_HEAD 64

/* Allocations replaced while searches may still read them, freed all at
 * once by hnsw_reclaim; writers add to it side by side under its lock. */
typedef struct retired_list {
    pthread_mutex_t lock;
    void **items;
    size_t n, cap;
} retired_list;

typedef struct cand {
    float d;
    uint32_t id;
} cand;

/* A node's in-neighbours at some levels (the write side). */
typedef struct revlist {
    uint32_t *ids;
    uint32_t n, cap;
} revlist;

#define DEPTH_NONE UINT32_MAX   /* not labelled (yet): new or cut off */
#define MARK_PENDING 1u         /* in h->pending, not examined yet */
#define MARK_RAISE 2u           /* one spreading raise, this repair */
#define MAX_RAISES 3            /* spreading raises of a node a repair */

struct hnsw {
    hnsw_params p;
    uint32_t M0;            /* level-0 degree bound: 2M */
    const codec *codec;     /* NULL: elements are float vectors */
    size_t elem_bytes;      /* bytes of an element's data */
    size_t stride;          /* bytes per element slot, a multiple of 64
                               for vectors (16 for codes) */
    size_t link0_stride;    /* u32 per level-0 list: count + M0 ids */
    size_t upper_stride;    /* u32 per upper list: count + M ids */
    uint32_t cap;
    uint8_t *elems;         /* vectors or codes: a huge-page region, see
                               region_grow; unused with external */
    size_t elems_len;
    /*
     * External elements (hnsw_params.external): per node its location,
     * an offset from base or, with LOC_OWN, an owned copy (a node a write
     * in progress changed, one whose stored vector is not where an
     * offset can stay valid, or the zero element of an empty slot).
     * Copies replaced while searches may read them wait in
     * retired_copies until hnsw_reclaim. See hnsw_set_base.
     */
    _Atomic uint64_t *loc;
    _Atomic(const char *) base;
    uint8_t *zeros;                 /* the element of an empty slot */
    atomic_uint_fast64_t copy_serial;  /* serial of the last copy made */
    atomic_size_t ncopies;          /* owned copies in use */
    retired_list retired_copies;
    uint32_t *links0;       /* likewise */
    size_t links0_len;
    uint32_t **upper;       /* per node: lists of levels 1..level */
    int8_t *levels;         /* NO_LEVEL for an empty slot */
    atomic_uint count;
    double level_mult;
    /* entry point and top level, packed so that readers load both at once */
    _Atomic uint64_t entry;
    pthread_mutex_t entry_lock;
    pthread_mutex_t node_locks[LOCK_STRIPES];
    /* level-0 in-degrees, read by inserts to order ties (tie_key) */
    _Atomic uint32_t *indeg0;
    /* upper lists replaced while searches may still read them; the
     * insert workers of hnsw_insert_parallel add to it side by side */
    retired_list retired;
    /*
     * The write side (see "the write side" below): what a removal and
     * the repair after a write need to stay local. Only writers read it;
     * it is never stored, and the first write after a load rebuilds it
     * from the lists.
     *  - rev0[id]: the nodes whose level-0 list holds id; revup[id]: the
     *    nodes whose upper lists hold id, once per level.
     *  - depth[id]: a support label. Invariant (when labels_valid): the
     *    entry point has depth 0, and every other live node has a
     *    level-0 in-neighbour of smaller depth, so following those
     *    in-edges back ends at the entry point: every node is reachable.
     *  - pending: nodes whose support may have gone (they lost a level-0
     *    in-edge, or are new), examined by the next hnsw_repair.
     */
    atomic_int rev_ready;    /* rev0 and revup match the lists */
    atomic_int labels_valid; /* depth holds the invariant above */
    revlist *rev0, *revup;
    atomic_size_t rev_slots; /* ids the reverse lists have room for, all
                                together: hnsw_memory_bytes reads it
                                while writers grow the lists */
    uint32_t *depth;
    uint8_t *mark;           /* per node: MARK_PENDING, MARK_RAISE x n */
    pthread_mutex_t rev_locks[LOCK_STRIPES];
    uint32_t *pending;
    size_t npending, pending_cap;
    int pending_overflow;    /* a node could not be noted: relabel all */
    pthread_mutex_t pending_lock;
    unsigned long walks;     /* whole-graph walks the repairs fell back to */
    /* the level-0 walk's queue, kept between walks */
    uint32_t *walk_queue;
    uint32_t walk_cap;
    /* nodes changed since the last hnsw_dirty_clear */
    _Atomic uint8_t *dirty_flag;
    uint32_t *dirty;
    size_t ndirty;
    pthread_mutex_t dirty_lock;
};

struct hnsw_scratch {
    unsigned long distances;   /* computed by searches since the last read */
    /* the query the distances are measured from: q for vectors; for
     * codes qbuf, prepared from qvec */
    const float *q;
    void *qbuf;
    size_t qbuf_cap;
    float *qvec;
    size_t qvec_cap;
    uint32_t bridges;          /* see hnsw_scratch_set_bridges */
    uint16_t *visited;
    uint32_t visited_cap;
    uint16_t epoch;
    cand *cands, *res, *tmp;
    size_t cands_cap, res_cap, tmp_cap;
};

/* ---- small helpers ---- */

static inline uint32_t load_u32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store_u32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline int node_level(const hnsw *h, uint32_t id)
{
    return __atomic_load_n(&h->levels[id], __ATOMIC_ACQUIRE);
}

static inline uint64_t pack_entry(uint32_t id, int level)
{
    return (uint64_t)(uint32_t)(level + 1) << 32 | id;
}

static inline void unpack_entry(uint64_t e, uint32_t *id, int *level)
{
    *id = (uint32_t)e;
    *level = (int)(e >> 32) - 1;
}

static inline const void *vec_of(const hnsw *h, uint32_t id)
{
    if (!h->loc)
        return h->elems + (size_t)id * h->stride;
    uint64_t at = atomic_load_explicit(&h->loc[id], memory_order_acquire);
    if (at & LOC_OWN)
        return (const void *)(uintptr_t)(at & ~LOC_OWN);
    return atomic_load_explicit(&h->base, memory_order_relaxed) + at;
}

/* The list of node id at level: [count][ids...]. */
static inline uint32_t *list_of(const hnsw *h, uint32_t id, int level)
{
    if (level == 0)
        return h->links0 + (size_t)id * h->link0_stride;
    return h->upper[id] + (size_t)(level - 1) * h->upper_stride;
}

static inline uint32_t max_degree(const hnsw *h, int level)
{
    return level == 0 ? h->M0 : h->p.M;
}

static inline float distance(const hnsw *h, const float *a, const float *b)
{
    if (h->p.metric == HNSW_L2)
        return dist_l2sq(a, b, h->p.dim);
    return 1.0f - dist_dot(a, b, h->p.dim);
}

/* Distance from the scratch's query to an element. */
static inline float qdist(const hnsw *h, const hnsw_scratch *s,
                          const void *elem)
{
    if (!h->codec)
        return distance(h, s->q, elem);
    return codec_query_distance(h->codec, s->qbuf, elem);
}

/* Distance between two elements. */
static inline float edist(const hnsw *h, const void *a, const void *b)
{
    if (!h->codec)
        return distance(h, a, b);
    return codec_code_distance(h->codec, a, b);
}

static pthread_mutex_t *node_lock(hnsw *h, uint32_t id)
{
    return &h->node_locks[id % LOCK_STRIPES];
}

static void mark_dirty(hnsw *h, uint32_t id)
{
    if (atomic_exchange(&h->dirty_flag[id], 1))
        return;
    pthread_mutex_lock(&h->dirty_lock);
    h->dirty[h->ndirty++] = id;
    pthread_mutex_unlock(&h->dirty_lock);
}

/* ---- heaps of candidates ---- */

/* Min-heap when min is set, else max-heap, on distance. */
static inline int before(cand a, cand b, int min)
{
    return min ? a.d < b.d : a.d > b.d;
}

static void heap_push(cand *heap, size_t *n, cand c, int min)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(c, heap[parent], min))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = c;
}

static cand heap_pop(cand *heap, size_t *n, int min)
{
    cand top = heap[0], last = heap[--*n];
    size_t i = 0, size = *n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= size)
            break;
        if (child + 1 < size && before(heap[child + 1], heap[child], min))
            child++;
        if (!before(heap[child], last, min))
            break;
        heap[i] = heap[child];
        i = child;
    }
    if (size > 0)
        heap[i] = last;
    return top;
}

static int by_distance(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->d != b->d)
        return a->d < b->d ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Node id's place within a tie, smaller first (sort_candidates). */
static float tie_key(const hnsw *h, uint32_t id, int copy_of_base)
{
    uint32_t in = atomic_load_explicit(&h->indeg0[id], memory_order_relaxed);
    if (copy_of_base)
        return (float)in;
    int level = node_level(h, id);
    in = in < (1u << 20) ? in : (1u << 20) - 1;
    return -(float)((uint32_t)(level > 0 ? level : 0) << 20 | in);
}

/*
 * Sort candidates nearest first, and order the ties: candidates at exactly
 * equal distance are copies of one vector, and the heuristic keeps the
 * first of them (of copies of the base, the first max/2). Ordered by id
 * alone, the oldest copies always won: every new copy was dropped from
 * every full list, became an orphan, and each repair searched for it
 * again and lost the same tie (quadratic inserts, and unreachable copies).
 *  - Copies of the base itself (the tie at self_d, the base's distance to
 *    itself): fewest level-0 in-edges first, so the copy that is kept is
 *    one few others point to and the one dropped keeps other in-edges.
 *  - Copies of another vector, of which one is kept: the highest level
 *    first, then the most in-edges, so a group of copies is entered
 *    through the nodes that descents pass through; the least linked copy
 *    as the entrance left groups that no beam found.
 * Distinct vectors rarely tie, so this costs a scan of adjacent
 * distances. The keys are read once into the distance field of the tie
 * (restored after): the sort sees fixed keys while other inserts change
 * in-degrees.
 */
static void sort_candidates(const hnsw *h, cand *c, size_t n, float self_d)
{
    qsort(c, n, sizeof *c, by_distance);
    for (size_t i = 0, end; i + 1 < n; i = end) {
        for (end = i + 1; end < n && c[end].d == c[i].d; end++)
            ;
        if (end - i < 2)
            continue;
        float d = c[i].d;
        for (size_t j = i; j < end; j++)
            c[j].d = tie_key(h, c[j].id, d == self_d);
        qsort(c + i, end - i, sizeof *c, by_distance);
        for (size_t j = i; j < end; j++)
            c[j].d = d;
    }
}

/* ---- creation and growth ---- */

static void free_copies(hnsw *h);

hnsw *hnsw_create(const hnsw_params *params)
{
    if (params->M < 2 || params->M > HNSW_M_MAX)
        return NULL;
    hnsw *h = qv_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->p = *params;
    h->M0 = 2 * params->M;
    h->codec = params->codec;
    if (h->codec) {
        h->elem_bytes = codec_code_bytes(h->codec);
        h->stride = (h->elem_bytes + 15u) & ~(size_t)15;
    } else {
        h->elem_bytes = params->dim * sizeof(float);
        h->stride = ((params->dim + 15u) & ~(size_t)15) * sizeof(float);
    }
    if (params->external && (h->codec || params->metric == HNSW_COSINE)) {
        qv_mem_free(h);   /* only plain l2 and ip vectors are used as
                             stored */
        return NULL;
    }
    pthread_mutex_init(&h->retired_copies.lock, NULL);
    if (params->external && !(h->zeros = qv_calloc(1, h->stride))) {
        pthread_mutex_destroy(&h->retired_copies.lock);
        qv_mem_free(h);
        return NULL;
    }
    h->link0_stride = 1 + h->M0;
    h->upper_stride = 1 + params->M;
    h->level_mult = 1.0 / log((double)(params->M > 1 ? params->M : 2));
    atomic_init(&h->entry, pack_entry(HNSW_NO_NODE, NO_LEVEL));
    pthread_mutex_init(&h->entry_lock, NULL);
    pthread_mutex_init(&h->retired.lock, NULL);
    pthread_mutex_init(&h->dirty_lock, NULL);
    pthread_mutex_init(&h->pending_lock, NULL);
    for (unsigned i = 0; i < LOCK_STRIPES; i++) {
        pthread_mutex_init(&h->node_locks[i], NULL);
        pthread_mutex_init(&h->rev_locks[i], NULL);
    }
    /* an empty graph's write side is complete */
    atomic_init(&h->rev_ready, 1);
    atomic_init(&h->labels_valid, 1);
    return h;
}

void hnsw_free(hnsw *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->cap; i++)
        qv_mem_free(h->upper[i]);
    qv_mem_free(h->upper);
    hnsw_reclaim(h);
    qv_mem_free(h->retired.items);
    if (h->elems)
        munmap(h->elems, h->elems_len);
    free_copies(h);
    if (h->links0)
        munmap(h->links0, h->links0_len);
    qv_mem_free(h->levels);
    qv_mem_free((void *)h->dirty_flag);
    qv_mem_free(h->dirty);
    qv_mem_free((void *)h->indeg0);
    for (uint32_t i = 0; i < h->cap; i++) {
        qv_mem_free(h->rev0[i].ids);
        qv_mem_free(h->revup[i].ids);
    }
    qv_mem_free(h->rev0);
    qv_mem_free(h->revup);
    qv_mem_free(h->depth);
    qv_mem_free(h->mark);
    qv_mem_free(h->pending);
    qv_mem_free(h->walk_queue);
    pthread_mutex_destroy(&h->pending_lock);
    pthread_mutex_destroy(&h->entry_lock);
    pthread_mutex_destroy(&h->retired.lock);
    pthread_mutex_destroy(&h->dirty_lock);
    for (unsigned i = 0; i < LOCK_STRIPES; i++) {
        pthread_mutex_destroy(&h->node_locks[i]);
        pthread_mutex_destroy(&h->rev_locks[i]);
    }
    qv_mem_free(h);
}

/* ---- external elements ---- */

static inline uint64_t zeros_at(const hnsw *h)
{
    return (uint64_t)(uintptr_t)h->zeros | LOC_OWN;
}

/* The owned copy a location names, NULL for an offset or the zeros. */
static uint8_t *copy_of(const hnsw *h, uint64_t at)
{
    if (!(at & LOC_OWN) || at == zeros_at(h))
        return NULL;
    return (uint8_t *)(uintptr_t)(at & ~LOC_OWN);
}

static uint64_t copy_serial(const uint8_t *copy)
{
    uint64_t serial;
    memcpy(&serial, copy - COPY_HEAD, sizeof serial);
    return serial;
}

/* A new copy of elem (or zeros, elem NULL) as a location; 0 when out of
 * memory. */
static uint64_t copy_new(hnsw *h, const void *elem)
{
    uint8_t *mem = qv_malloc(COPY_HEAD + h->elem_bytes);
    if (!mem)
        return 0;
    uint64_t serial = atomic_fetch_add(&h->copy_serial, 1) + 1;
    memcpy(mem, &serial, sizeof serial);
    if (elem)
        memcpy(mem + COPY_HEAD, elem, h->elem_bytes);
    else
        memset(mem + COPY_HEAD, 0, h->elem_bytes);
    atomic_fetch_add(&h->ncopies, 1);
    return (uint64_t)(uintptr_t)(mem + COPY_HEAD) | LOC_OWN;
}

/* Add p to the list; -1 when the list cannot grow (p is not kept). */
static int retired_push(retired_list *list, void *p)
{
    int rc = 0;
    pthread_mutex_lock(&list->lock);
    if (list->n == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 64;
        void **items = qv_realloc(list->items, cap * sizeof *items);
        if (items) {
            list->items = items;
            list->cap = cap;
        } else {
            rc = -1;
        }
    }
    if (rc == 0)
        list->items[list->n++] = p;
    pthread_mutex_unlock(&list->lock);
    return rc;
}

static void retired_free_all(retired_list *list)
{
    pthread_mutex_lock(&list->lock);
    for (size_t i = 0; i < list->n; i++)
        qv_mem_free(list->items[i]);
    list->n = 0;
    pthread_mutex_unlock(&list->lock);
}

/* Keep a copy that searches may still read until hnsw_reclaim; if it
 * cannot be noted, leak it (never free memory a search may read). */
static void copy_retire(hnsw *h, uint8_t *copy)
{
    if (!copy)
        return;
    atomic_fetch_sub(&h->ncopies, 1);
    (void)retired_push(&h->retired_copies, copy - COPY_HEAD);
}

/* Give node id location at; the copy it held before is retired. */
static void relocate(hnsw *h, uint32_t id, uint64_t at)
{
    copy_retire(h, copy_of(h, atomic_exchange(&h->loc[id], at)));
}

static void free_copies(hnsw *h)
{
    if (h->loc) {
        for (uint32_t id = 0; id < h->cap; id++) {
            uint8_t *copy = copy_of(h, atomic_load(&h->loc[id]));
            if (copy)
                qv_mem_free(copy - COPY_HEAD);
        }
    }
    retired_free_all(&h->retired_copies);
    qv_mem_free(h->retired_copies.items);
    qv_mem_free((void *)h->loc);
    qv_mem_free(h->zeros);
    pthread_mutex_destroy(&h->retired_copies.lock);
}

/* Make room for the locations of slots [0, new_cap); new slots hold the
 * zero element. */
static int grow_locations(hnsw *h, uint32_t new_cap)
{
    _Atomic uint64_t *p = qv_realloc((void *)h->loc, new_cap * sizeof *p);
    if (!p)
        return -1;
    for (uint32_t i = h->cap; i < new_cap; i++)
        atomic_init(&p[i], zeros_at(h));
    h->loc = p;
    return 0;
}

void hnsw_set_base(hnsw *h, const void *base)
{
    atomic_store_explicit(&h->base, base, memory_order_relaxed);
}

int hnsw_place_at(hnsw *h, uint32_t id, uint64_t offset)
{
    if (!h->loc || id >= h->cap || (offset & LOC_OWN))
        return -1;
    relocate(h, id, offset);
    return 0;
}

int hnsw_place_copy(hnsw *h, uint32_t id, const void *elem)
{
    if (!h->loc || id >= h->cap)
        return -1;
    uint64_t at = copy_new(h, elem);
    if (!at)
        return -2;
    relocate(h, id, at);
    return 0;
}

void hnsw_own_element(hnsw *h, uint32_t id)
{
    if (!h->loc || id >= h->cap)
        return;
    uint64_t at = atomic_load(&h->loc[id]);
    if (at & LOC_OWN)
        return;   /* a copy already */
    uint64_t copy = copy_new(h, vec_of(h, id));
    relocate(h, id, copy ? copy : zeros_at(h));
}

uint64_t hnsw_copy_serial(const hnsw *h)
{
    return atomic_load(&h->copy_serial);
}

int hnsw_settle(hnsw *h, uint32_t id, uint64_t serial, uint64_t offset)
{
    if (!h->loc || id >= h->cap || (offset & LOC_OWN))
        return 0;
    uint64_t at = atomic_load(&h->loc[id]);
    uint8_t *copy = copy_of(h, at);
    if (!copy || copy_serial(copy) > serial ||
        !atomic_compare_exchange_strong(&h->loc[id], &at, offset))
        return 0;
    copy_retire(h, copy);
    return 1;
}

size_t hnsw_retired_bytes(hnsw *h)
{
    pthread_mutex_lock(&h->retired_copies.lock);
    size_t n = h->retired_copies.n;
    pthread_mutex_unlock(&h->retired_copies.lock);
    return n * (COPY_HEAD + h->elem_bytes);
}

/* Grow one array to new_cap elements, zeroing the new part. */
static int grow(void **arr, size_t elem, uint32_t old_cap, uint32_t new_cap)
{
    void *p = qv_realloc(*arr, (size_t)new_cap * elem);
    if (!p)
        return -1;
    memset((char *)p + (size_t)old_cap * elem, 0,
           (size_t)(new_cap - old_cap) * elem);
    *arr = p;
    return 0;
}

#define HUGE_PAGE (2u << 20)

/*
 * The two arrays a search walks at random, vectors and level-0 lists, live
 * in anonymous mappings advised to use transparent huge pages: loading the
 * graph then takes a few hundred page faults instead of one per 4 KiB, and
 * traversal misses the TLB far less. Grows to hold need bytes, keeping
 * the first used bytes. (Fault injection does not reach these.)
 */
static int region_grow(void **region, size_t *len, size_t used, size_t need)
{
    size_t new_len = (need + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (new_len <= *len)
        return 0;
    void *p = mmap(NULL, new_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    madvise(p, new_len, MADV_HUGEPAGE);
    if (*region) {
        memcpy(p, *region, used);
        munmap(*region, *len);
    }
    *region = p;   /* fresh anonymous pages read as zeros */
    *len = new_len;
    return 0;
}

int hnsw_reserve(hnsw *h, uint32_t slots)
{
    if (slots <= h->cap)
        return 0;
    uint32_t new_cap = h->cap ? h->cap : 64;
    while (new_cap < slots)
        new_cap = new_cap > UINT32_MAX / 2 ? UINT32_MAX : new_cap * 2;
    size_t vec_bytes = h->p.external ? 0 : h->stride;
    size_t link_bytes = h->link0_stride * sizeof(uint32_t);
    if (h->p.external && grow_locations(h, new_cap) != 0)
        return -1;
    if ((vec_bytes && region_grow((void **)&h->elems, &h->elems_len,
                                  h->cap * vec_bytes,
                                  new_cap * vec_bytes) != 0) ||
        region_grow((void **)&h->links0, &h->links0_len, h->cap * link_bytes,
                    new_cap * link_bytes) != 0 ||
        grow((void **)&h->upper, sizeof(uint32_t *), h->cap, new_cap) != 0 ||
        grow((void **)&h->levels, 1, h->cap, new_cap) != 0 ||
        grow((void **)&h->dirty_flag, 1, h->cap, new_cap) != 0 ||
        grow((void **)&h->dirty, sizeof(uint32_t), h->cap, new_cap) != 0 ||
        grow((void **)&h->indeg0, sizeof(uint32_t), h->cap, new_cap) != 0 ||
        grow((void **)&h->rev0, sizeof(revlist), h->cap, new_cap) != 0 ||
        grow((void **)&h->revup, sizeof(revlist), h->cap, new_cap) != 0 ||
        grow((void **)&h->depth, sizeof(uint32_t), h->cap, new_cap) != 0 ||
        grow((void **)&h->mark, 1, h->cap, new_cap) != 0)
        return -1;
    memset(h->levels + h->cap, NO_LEVEL, new_cap - h->cap);
    h->cap = new_cap;
    return 0;
}

uint32_t hnsw_capacity(const hnsw *h) { return h->cap; }
uint32_t hnsw_count(const hnsw *h) { return atomic_load(&h->count); }

int hnsw_contains(const hnsw *h, uint32_t id)
{
    return id < h->cap && node_level(h, id) >= 0;
}

const float *hnsw_vector(const hnsw *h, uint32_t id)
{
    if (h->codec)
        return NULL;
    return vec_of(h, id);
}

uint32_t hnsw_entry(const hnsw *h)
{
    uint32_t id;
    int level;
    unpack_entry(atomic_load(&h->entry), &id, &level);
    return id;
}

int hnsw_max_level(const hnsw *h)
{
    uint32_t id;
    int level;
    unpack_entry(atomic_load(&h->entry), &id, &level);
    return level;
}

void hnsw_set_entry(hnsw *h, uint32_t entry, int max_level)
{
    atomic_store(&h->entry, pack_entry(entry, max_level));
}

/* splitmix64: a good 64-bit mix for drawing levels from ids. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int hnsw_random_level(const hnsw *h, uint32_t id, uint64_t salt)
{
    uint64_t r = mix64(h->p.seed ^ mix64(salt) ^ id);
    double u = ((double)(r >> 11) + 1.0) / 9007199254740993.0;  /* (0, 1] */
    int level = (int)(-log(u) * h->level_mult);
    return level > HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : level;
}

/* ---- scratch ---- */

void hnsw_scratch_set_bridges(hnsw_scratch *s, uint32_t bridges)
{
    s->bridges = bridges;
}

unsigned long hnsw_scratch_distances(hnsw_scratch *s)
{
    unsigned long n = s->distances;
    s->distances = 0;
    return n;
}

hnsw_scratch *hnsw_scratch_create(void)
{
    return qv_calloc(1, sizeof(hnsw_scratch));
}

void hnsw_scratch_free(hnsw_scratch *s)
{
    if (!s)
        return;
    qv_mem_free(s->visited);
    qv_mem_free(s->cands);
    qv_mem_free(s->res);
    qv_mem_free(s->tmp);
    qv_mem_free(s->qbuf);
    qv_mem_free(s->qvec);
    qv_mem_free(s);
}

static int ensure_cands(cand **arr, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    cand *p = qv_realloc(*arr, need * sizeof *p);
    if (!p)
        return -1;
    *arr = p;
    *cap = need;
    return 0;
}

static int ensure_bytes(void **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    void *p = qv_malloc(need);
    if (!p)
        return -1;
    qv_mem_free(*buf);
    *buf = p;
    *cap = need;
    return 0;
}

/* Measure distances from v (unit length for cosine). */
static void set_query(const hnsw *h, hnsw_scratch *s, const float *v)
{
    if (!h->codec)
        s->q = v;
    else
        codec_query_prepare(h->codec, v, s->qbuf);
}

/* Measure distances from node id's own element. */
static void query_from_node(const hnsw *h, hnsw_scratch *s, uint32_t id)
{
    if (!h->codec) {
        s->q = vec_of(h, id);
        return;
    }
    codec_decode(h->codec, vec_of(h, id), s->qvec);
    codec_query_prepare(h->codec, s->qvec, s->qbuf);
}

/* Size the scratch for h and a beam of ef; start a new visited epoch. */
static int scratch_prepare(hnsw_scratch *s, const hnsw *h, size_t ef)
{
    if (s->visited_cap < h->cap) {
        uint16_t *v = qv_calloc(h->cap, sizeof *v);
        if (!v)
            return -1;
        qv_mem_free(s->visited);
        s->visited = v;
        s->visited_cap = h->cap;
        s->epoch = 0;
    }
    if (h->codec && (ensure_bytes(&s->qbuf, &s->qbuf_cap,
                                  codec_query_bytes(h->codec)) != 0 ||
                     ensure_bytes((void **)&s->qvec, &s->qvec_cap,
                                  h->p.dim * sizeof(float)) != 0))
        return -1;
    size_t need = ef + h->M0 + 1;
    if (ensure_cands(&s->cands, &s->cands_cap, need * 2) != 0 ||
        ensure_cands(&s->res, &s->res_cap, need) != 0 ||
        ensure_cands(&s->tmp, &s->tmp_cap, 2 * (size_t)h->M0 + 2) != 0)
        return -1;
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->visited_cap * sizeof *s->visited);
        s->epoch = 1;
    }
    return 0;
}

/* ---- search ---- */

/* External elements: ask for the locations of the n nodes of ids at
 * once, so that each element's address is known without a wait when
 * its turn to be fetched comes (always inlined: see prefetch_lists0). */
static inline __attribute__((always_inline)) void
prefetch_locations(const hnsw *h, const uint32_t *ids, uint32_t n)
{
    if (!h->loc)
        return;
    for (uint32_t i = 0; i < n; i++)
        __builtin_prefetch(&h->loc[load_u32(&ids[i])]);
}

/* Greedy descent from (*cur, *curd) at one upper level. */
static void greedy_step(const hnsw *h, const hnsw_scratch *s, int level,
                        uint32_t *cur, float *curd)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        const uint32_t *list = list_of(h, *cur, level);
        uint32_t n = load_u32(list);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t nb = load_u32(&list[1 + i]);
            float d = qdist(h, s, vec_of(h, nb));
            if (d < *curd) {
                *curd = d;
                *cur = nb;
                changed = 1;
            }
        }
    }
}


/*
 * Beam search at one level from entry: leaves the best ef nodes found in
 * s->res as a max-heap of *nres entries. (A filtered search walks level 0
 * with search_level_filtered instead.)
 */
static void search_level(const hnsw *h, hnsw_scratch *s, uint32_t entry,
                         float entry_d, size_t ef, int level, size_t *nres)
{
    size_t ncand = 0;
    uint16_t epoch = s->epoch;
    *nres = 0;
    s->visited[entry] = epoch;
    heap_push(s->cands, &ncand, (cand){entry_d, entry}, 1);
    heap_push(s->res, nres, (cand){entry_d, entry}, 0);
    while (ncand > 0) {
        cand c = heap_pop(s->cands, &ncand, 1);
        if (*nres >= ef && c.d > s->res[0].d)
            break;
        const uint32_t *list = list_of(h, c.id, level);
        uint32_t n = load_u32(list);
        prefetch_locations(h, list + 1, n);
        if (n > 0)
            __builtin_prefetch(vec_of(h, load_u32(&list[1])));
        for (uint32_t i = 0; i < n; i++) {
            uint32_t nb = load_u32(&list[1 + i]);
            if (i + 1 < n) {
                uint32_t next = load_u32(&list[2 + i]);
                __builtin_prefetch(&s->visited[next]);
                __builtin_prefetch(vec_of(h, next));
            }
            if (s->visited[nb] == epoch)
                continue;
            s->visited[nb] = epoch;
            s->distances++;
            float d = qdist(h, s, vec_of(h, nb));
            if (*nres < ef || d < s->res[0].d) {
                if (ncand == s->cands_cap &&
                    ensure_cands(&s->cands, &s->cands_cap, 2 * ncand) != 0)
                    continue;  /* out of memory: a narrower search */
                heap_push(s->cands, &ncand, (cand){d, nb}, 1);
                heap_push(s->res, nres, (cand){d, nb}, 0);
                if (*nres > ef)
                    heap_pop(s->res, nres, 0);
            }
        }
    }
}

/*
 * A greedy step at an upper level that moves only to nodes the filter
 * allows, found among the neighbours and, through rejected neighbours,
 * their neighbours: the descent of a filtered search, so that level 0
 * starts at an allowed node near the query rather than in a region the
 * filter rejects.
 */
static void greedy_step_filtered(const hnsw *h, hnsw_scratch *s, int level,
                                 const uint64_t *allowed, uint32_t allowed_n,
                                 uint32_t *cur, float *curd)
{
    int changed = 1;
    int here_ok = hnsw_allows(allowed, allowed_n, *cur);
    while (changed) {
        changed = 0;
        const uint32_t *list = list_of(h, *cur, level);
        uint32_t n = load_u32(list);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t nb = load_u32(&list[1 + i]);
            uint32_t pick[HNSW_M_MAX + 1], np = 0;
            if (hnsw_allows(allowed, allowed_n, nb)) {
                pick[np++] = nb;
            } else if (node_level(h, nb) >= level) {
                const uint32_t *two = list_of(h, nb, level);
                uint32_t m = load_u32(two);
                for (uint32_t j = 0; j < m && np <= HNSW_M_MAX; j++) {
                    uint32_t nb2 = load_u32(&two[1 + j]);
                    if (hnsw_allows(allowed, allowed_n, nb2))
                        pick[np++] = nb2;
                }
            }
            for (uint32_t j = 0; j < np; j++) {
                float d = qdist(h, s, vec_of(h, pick[j]));
                if (d < *curd || !here_ok) {
                    *curd = d;
                    *cur = pick[j];
                    here_ok = changed = 1;
                }
            }
        }
    }
}

/* Measure node nb and offer it to the beam (a filtered walk's step). */
static void offer(const hnsw *h, hnsw_scratch *s, uint32_t nb, size_t ef,
                  size_t *ncand, size_t *nres)
{
    s->visited[nb] = s->epoch;
    s->distances++;
    float d = qdist(h, s, vec_of(h, nb));
    if (*nres >= ef && d >= s->res[0].d)
        return;
    if (*ncand == s->cands_cap &&
        ensure_cands(&s->cands, &s->cands_cap, 2 * *ncand) != 0)
        return;
    heap_push(s->cands, ncand, (cand){d, nb}, 1);
    heap_push(s->res, nres, (cand){d, nb}, 0);
    if (*nres > ef)
        heap_pop(s->res, nres, 0);
}

/* Offer the n nodes of ids in turn, each one's element fetched while the
 * one before it is measured (as search_level does). */
static void offer_all(const hnsw *h, hnsw_scratch *s, const uint32_t *ids,
                      uint32_t n, size_t ef, size_t *ncand, size_t *nres)
{
    if (n > 0)
        __builtin_prefetch(vec_of(h, ids[0]));
    for (uint32_t i = 0; i < n; i++) {
        if (i + 1 < n)
            __builtin_prefetch(vec_of(h, ids[i + 1]));
        offer(h, s, ids[i], ef, ncand, nres);
    }
}

/*
 * A filtered walk at level 0 (after ACORN, Patel et al. 2024): only nodes
 * the filter allows are put on the beam. From each expanded node its
 * allowed neighbours are measured, then, when they are fewer than M,
 * through its neighbours the filter rejects, their allowed neighbours (two
 * hops), up to 2M measurements an expansion. Rejected nodes are passed
 * through without a distance, but for the scratch's bridges (measured and
 * expanded, never returned), so a walk whose query lies among rejected
 * nodes does not explore them all before it finds allowed ones, and the
 * two hops keep the allowed part connected when it is sparse. The entry
 * is expanded whether allowed or not.
 */
/*
 * Seed a walk whose descent found no allowed node with a few allowed ones
 * from spread-out places; the walk then moves over allowed nodes towards
 * the query.
 */
static void seed_from_matches(const hnsw *h, hnsw_scratch *s, uint32_t entry,
                              size_t ef, const uint64_t *allowed,
                              uint32_t allowed_n, size_t *ncand, size_t *nres)
{
    uint32_t step = allowed_n / 4 + 1, seeds = 0;
    if (allowed_n == 0)
        return;
    for (uint32_t at = (entry * 2654435761u) % allowed_n, tried = 0;
         tried < allowed_n && seeds < 4; tried++) {
        if (hnsw_allows(allowed, allowed_n, at) && node_level(h, at) >= 0 &&
            s->visited[at] != s->epoch) {
            offer(h, s, at, ef, ncand, nres);
            seeds++;
            at = (at + step) % allowed_n;
            continue;
        }
        at = at + 1 == allowed_n ? 0 : at + 1;
    }
}

/* An expanded node's neighbours (list): the allowed ones not seen yet
 * into pick, every rejected one into rejected; returns how many picked. */
static uint32_t split_neighbours(const hnsw_scratch *s, const uint32_t *list,
                                 const uint64_t *allowed, uint32_t allowed_n,
                                 uint32_t *pick, uint32_t *rejected,
                                 uint32_t *nrejected)
{
    uint32_t n = load_u32(list), npick = 0;
    uint16_t epoch = s->epoch;
    *nrejected = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nb = load_u32(&list[1 + i]);
        if (!hnsw_allows(allowed, allowed_n, nb))
            rejected[(*nrejected)++] = nb;
        else if (s->visited[nb] != epoch)
            pick[npick++] = nb;
    }
    return npick;
}

/* Ask for the level-0 lists of the n nodes ids: their first two lines
 * (a 33-entry list spans three; asking for all of them was slower, more
 * misses in flight than the core keeps). Always inlined: GCC counts a
 * prefetch as no side effect, finds a function of prefetches alone pure
 * and deletes its calls (the filtered walk lost 30% of its speed so). */
static inline __attribute__((always_inline)) void
prefetch_lists0(const hnsw *h, const uint32_t *ids, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const char *list = (const char *)list_of(h, ids[i], 0);
        __builtin_prefetch(list);
        __builtin_prefetch(list + 64);
    }
}

/* Measure rejected nodes not seen yet, while *bridges lasts, and put them
 * among the candidates to expand (never among the results): rejected
 * nodes near the query, walked through as a plain filtered walk does. */
static void walk_through(const hnsw *h, hnsw_scratch *s,
                         const uint32_t *rejected, uint32_t n,
                         size_t *bridges, size_t *ncand)
{
    uint16_t epoch = s->epoch;
    for (uint32_t i = 0; i < n && *bridges > 0; i++) {
        uint32_t nb = rejected[i];
        if (s->visited[nb] == epoch)
            continue;
        (*bridges)--;
        s->visited[nb] = epoch;
        s->distances++;
        float d = qdist(h, s, vec_of(h, nb));
        if (*ncand < s->cands_cap)
            heap_push(s->cands, ncand, (cand){d, nb}, 1);
    }
}

/* The allowed nodes not seen yet in the lists of the n rejected nodes,
 * up to budget, into pick (marked seen, so each is picked once). */
static uint32_t two_hop_picks(const hnsw *h, hnsw_scratch *s,
                              const uint32_t *rejected, uint32_t n,
                              const uint64_t *allowed, uint32_t allowed_n,
                              uint32_t budget, uint32_t *pick)
{
    uint32_t npick = 0;
    uint16_t epoch = s->epoch;
    for (uint32_t i = 0; i < n && npick < budget; i++) {
        const uint32_t *two = list_of(h, rejected[i], 0);
        uint32_t m = load_u32(two);
        for (uint32_t j = 0; j < m && npick < budget; j++) {
            uint32_t nb2 = load_u32(&two[1 + j]);
            if (hnsw_allows(allowed, allowed_n, nb2) &&
                s->visited[nb2] != epoch) {
                s->visited[nb2] = epoch;
                pick[npick++] = nb2;
            }
        }
    }
    return npick;
}

static void search_level_filtered(const hnsw *h, hnsw_scratch *s,
                                  uint32_t entry, float entry_d,
                                  uint32_t seed, size_t ef,
                                  const uint64_t *allowed, uint32_t allowed_n,
                                  size_t *nres)
{
    size_t ncand = 0;
    *nres = 0;
    /* rejected nodes the walk may measure and pass through (set by the
     * caller from the share the filter rejects) */
    size_t bridges = s->bridges;
    s->visited[entry] = s->epoch;
    heap_push(s->cands, &ncand, (cand){entry_d, entry}, 1);
    if (hnsw_allows(allowed, allowed_n, entry))
        heap_push(s->res, nres, (cand){entry_d, entry}, 0);
    if (seed != HNSW_NO_NODE && s->visited[seed] != s->epoch &&
        hnsw_allows(allowed, allowed_n, seed))
        offer(h, s, seed, ef, &ncand, nres);
    if (*nres == 0)
        seed_from_matches(h, s, entry, ef, allowed, allowed_n, &ncand, nres);
    while (ncand > 0) {
        cand c = heap_pop(s->cands, &ncand, 1);
        if (*nres >= ef && c.d > s->res[0].d)
            break;
        uint32_t pick[HNSW_M_MAX * 2], rejected[HNSW_M_MAX * 2], nrejected;
        uint32_t npick = split_neighbours(s, list_of(h, c.id, 0), allowed,
                                          allowed_n, pick, rejected,
                                          &nrejected);
        /* two hops only where one found few allowed nodes; the lists they
         * read are fetched while the picks are measured */
        int two_hops = npick < h->p.M;
        if (two_hops)
            prefetch_lists0(h, rejected, nrejected);
        offer_all(h, s, pick, npick, ef, &ncand, nres);
        walk_through(h, s, rejected, nrejected, &bridges, &ncand);
        if (two_hops) {
            npick = two_hop_picks(h, s, rejected, nrejected, allowed,
                                  allowed_n, h->M0 - npick, pick);
            offer_all(h, s, pick, npick, ef, &ncand, nres);
        }
    }
}

/* Descend from the entry point to level stop + 1; returns the start. */
static uint32_t descend(const hnsw *h, const hnsw_scratch *s, uint32_t ep,
                        int top, int stop, float *d)
{
    *d = qdist(h, s, vec_of(h, ep));
    for (int l = top; l > stop; l--)
        greedy_step(h, s, l, &ep, d);
    return ep;
}

void hnsw_search(const hnsw *h, hnsw_scratch *s, const float *q, uint32_t k,
                 uint32_t ef, const uint64_t *allowed, uint32_t allowed_n,
                 topk *out)
{
    uint32_t ep;
    int top;
    unpack_entry(atomic_load(&h->entry), &ep, &top);
    if (ep == HNSW_NO_NODE || k == 0)
        return;
    size_t beam = ef > k ? ef : k;
    if (scratch_prepare(s, h, beam) != 0)
        return;
    set_query(h, s, q);
    float d;
    size_t nres;
    if (!allowed) {
        ep = descend(h, s, ep, top, 0, &d);
        search_level(h, s, ep, d, beam, 0, &nres);
    } else {
        /* two starts: the plain descent ends near the query, whose own
         * neighbourhood the filter may reject (its allowed nodes two hops
         * away are then the nearest ones, on the border of that region);
         * the filtered descent ends at an allowed node */
        float fd = qdist(h, s, vec_of(h, ep));
        uint32_t fep = ep;
        for (int l = top; l > 0; l--)
            greedy_step_filtered(h, s, l, allowed, allowed_n, &fep, &fd);
        ep = descend(h, s, ep, top, 0, &d);
        /* short only when the allowed nodes the walk can reach are
         * fewer than k: the caller widens or scans the matches */
        search_level_filtered(h, s, ep, d, fep, beam, allowed, allowed_n,
                              &nres);
    }
    for (size_t i = 0; i < nres; i++) {
        if (node_level(h, s->res[i].id) >= 0)
            topk_push(out, s->res[i].d, s->res[i].id);
    }
}

/* ---- insertion ---- */

/*
 * The neighbour-selection heuristic (the paper's algorithm 4, as in
 * hnswlib): take candidates nearest first, keep one only if it is nearer
 * to the base than to every one kept so far. cands is sorted ascending
 * (sort_candidates); the kept ones are moved to its front. Returns how
 * many were kept.
 *
 * Copies of the base (elements equal to base byte for byte; self_d is the
 * base's distance to itself as cands measure it, so only a candidate at
 * exactly that distance is compared) are as near to each other as to the
 * base, so the heuristic keeps them all: a vector with more than max
 * copies got lists of nothing but copies, its group lost its edges out
 * and walks that entered it could not leave (recall@10 0.46, against
 * 0.86 with this cap, on 32-d data that is 90% copies of ten vectors;
 * some such groups were cut off). At most half of the kept are copies;
 * the rest stay for other neighbours.
 */
static size_t select_neighbors(const hnsw *h, const void *base, float self_d,
                               cand *cands, size_t n, size_t max)
{
    size_t kept = 0, copies = 0;
    for (size_t i = 0; i < n && kept < max; i++) {
        const void *v = vec_of(h, cands[i].id);
        int copy = cands[i].d == self_d &&
                   memcmp(v, base, h->elem_bytes) == 0;
        if (copy && copies == max / 2)
            continue;
        int good = 1;
        for (size_t j = 0; j < kept && good; j++)
            good = edist(h, v, vec_of(h, cands[j].id)) >= cands[i].d;
        if (good) {
            cands[kept++] = cands[i];
            copies += copy;
        }
    }
    return kept;
}

/* ---- the write side: reverse lists and support labels ---- */

/* Append id (-1 when out of memory). */
static int rev_add(hnsw *h, revlist *r, uint32_t id)
{
    if (r->n == r->cap) {
        uint32_t cap = r->cap ? 2 * r->cap : 8;
        uint32_t *p = qv_realloc(r->ids, cap * sizeof *p);
        if (!p)
            return -1;
        atomic_fetch_add(&h->rev_slots, cap - r->cap);
        r->ids = p;
        r->cap = cap;
    }
    r->ids[r->n++] = id;
    return 0;
}

/* Drop one occurrence of id (order is not kept). */
static void rev_drop(revlist *r, uint32_t id)
{
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->ids[i] == id) {
            r->ids[i] = r->ids[--r->n];
            return;
        }
    }
    QV_ASSERT(!"a removed edge was not in the reverse list");
}

/* Queue node id for the next repair (once while it waits). Any writer
 * thread; when the queue cannot grow, the repair walks the whole graph. */
static void note_pending(hnsw *h, uint32_t id)
{
    pthread_mutex_lock(&h->pending_lock);
    if (h->mark[id] & MARK_PENDING)
        goto done;
    if (h->npending == h->pending_cap) {
        size_t cap = h->pending_cap ? 2 * h->pending_cap : 64;
        uint32_t *p = qv_realloc(h->pending, cap * sizeof *p);
        if (p) {
            h->pending = p;
            h->pending_cap = cap;
        }
    }
    if (h->npending < h->pending_cap) {
        h->pending[h->npending++] = id;
        h->mark[id] |= MARK_PENDING;
    } else {
        h->pending_overflow = 1;
    }
done:
    pthread_mutex_unlock(&h->pending_lock);
}

static revlist *rev_of(hnsw *h, int level, uint32_t to)
{
    return level == 0 ? &h->rev0[to] : &h->revup[to];
}

/* The reverse list of to at level, locked (unlock_rev), while the graph
 * keeps reverse lists; NULL, nothing locked, while it does not. */
static revlist *lock_rev(hnsw *h, int level, uint32_t to)
{
    if (!atomic_load_explicit(&h->rev_ready, memory_order_relaxed))
        return NULL;
    pthread_mutex_lock(&h->rev_locks[to % LOCK_STRIPES]);
    return rev_of(h, level, to);
}

static void unlock_rev(hnsw *h, uint32_t to)
{
    pthread_mutex_unlock(&h->rev_locks[to % LOCK_STRIPES]);
}

/* The edge from -> to at level was added. The reverse lists are kept
 * while they are complete (a failed append leaves them incomplete: the
 * write fails and the graph is reloaded). */
static void edge_added(hnsw *h, int level, uint32_t from, uint32_t to)
{
    if (level == 0)
        atomic_fetch_add(&h->indeg0[to], 1);
    revlist *rev = lock_rev(h, level, to);
    if (!rev)
        return;
    if (rev_add(h, rev, from) != 0)
        atomic_store(&h->rev_ready, 0);
    unlock_rev(h, to);
}

/* The edge from -> to at level went: at level 0, to may have lost the
 * in-edge its label relied on, and waits for the repair. */
static void edge_removed(hnsw *h, int level, uint32_t from, uint32_t to)
{
    if (level == 0)
        atomic_fetch_sub(&h->indeg0[to], 1);
    revlist *rev = lock_rev(h, level, to);
    if (!rev)
        return;
    rev_drop(rev, from);
    unlock_rev(h, to);
    if (level == 0)
        note_pending(h, to);
}

/* Rebuild the reverse lists from the lists (after a load). */
static int rebuild_rev(hnsw *h)
{
    for (uint32_t id = 0; id < h->cap; id++) {
        h->rev0[id].n = h->revup[id].n = 0;
        uint32_t need = atomic_load(&h->indeg0[id]);
        if (h->rev0[id].cap < need) {
            uint32_t cap = need + need / 4 + 4;
            uint32_t *p = qv_realloc(h->rev0[id].ids, cap * sizeof *p);
            if (!p)
                return -1;
            atomic_fetch_add(&h->rev_slots, cap - h->rev0[id].cap);
            h->rev0[id].ids = p;
            h->rev0[id].cap = cap;
        }
    }
    for (uint32_t id = 0; id < h->cap; id++) {
        for (int l = 0; l <= node_level(h, id); l++) {
            const uint32_t *list = list_of(h, id, l);
            for (uint32_t i = 0, n = load_u32(list); i < n; i++) {
                if (rev_add(h, rev_of(h, l, list[1 + i]), id) != 0)
                    return -1;
            }
        }
    }
    return 0;
}

/*
 * The write side complete: the first write after a load builds it, so a
 * process that only searches never pays for it. Only a lone writer (no
 * parallel insert running) calls this.
 */
static int write_side_ready(hnsw *h)
{
    if (atomic_load(&h->rev_ready))
        return 0;
    if (rebuild_rev(h) != 0)
        return -1;
    atomic_store(&h->rev_ready, 1);
    atomic_store(&h->labels_valid, 0);
    return 0;
}

static int ids_have(const uint32_t *ids, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == id)
            return 1;
    }
    return 0;
}

static int cands_have(const cand *c, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].id == id)
            return 1;
    }
    return 0;
}

/* Replace the list of node at level by the ids of cands[0..n). */
static void write_list(hnsw *h, uint32_t node, int level, const cand *cands,
                       size_t n)
{
    uint32_t *list = list_of(h, node, level);
    uint32_t old[2 * HNSW_M_MAX + 1];
    uint32_t nold = load_u32(list);
    QV_ASSERT(n <= max_degree(h, level) && nold <= max_degree(h, level));
    for (uint32_t i = 0; i < nold; i++)
        old[i] = load_u32(&list[1 + i]);
    /* ids first, then the count: a reader that saw the old count reads
     * old or new ids, every one a valid node */
    for (size_t i = 0; i < n; i++) {
        QV_ASSERT(cands[i].id != node && cands[i].id < h->cap);
        store_u32(&list[1 + i], cands[i].id);
    }
    store_u32(list, (uint32_t)n);
    /* only the edges that changed: a kept edge is no news to the repair
     * (lists are short; the quadratic scan costs less than a distance) */
    for (size_t i = 0; i < n; i++) {
        if (!ids_have(old, nold, cands[i].id))
            edge_added(h, level, node, cands[i].id);
    }
    for (uint32_t i = 0; i < nold; i++) {
        if (!cands_have(cands, n, old[i]))
            edge_removed(h, level, node, old[i]);
    }
}

/* Add id to node's list at level, pruning with the heuristic when full. */
static void link_back(hnsw *h, cand *tmp, uint32_t node, uint32_t id,
                      int level)
{
    pthread_mutex_t *lock = node_lock(h, node);
    pthread_mutex_lock(lock);
    uint32_t *list = list_of(h, node, level);
    uint32_t n = load_u32(list), max = max_degree(h, level);
    for (uint32_t i = 0; i < n; i++) {
        if (load_u32(&list[1 + i]) == id)
            goto done;
    }
    if (n < max) {
        store_u32(&list[1 + n], id);
        store_u32(list, n + 1);
        edge_added(h, level, node, id);
    } else {
        const void *v = vec_of(h, node);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t nb = load_u32(&list[1 + i]);
            tmp[i] = (cand){edist(h, v, vec_of(h, nb)), nb};
        }
        tmp[n] = (cand){edist(h, v, vec_of(h, id)), id};
        float self_d = edist(h, v, v);
        sort_candidates(h, tmp, n + 1, self_d);
        write_list(h, node, level, tmp,
                   select_neighbors(h, v, self_d, tmp, n + 1, max));
    }
    mark_dirty(h, node);
done:
    pthread_mutex_unlock(lock);
}

/* Copy the beam (a max-heap) out sorted nearest first, live nodes only. */
static size_t sorted_beam(const hnsw *h, hnsw_scratch *s, size_t nres,
                          uint32_t skip)
{
    size_t n = 0;
    for (size_t i = 0; i < nres; i++) {
        uint32_t id = s->res[i].id;
        if (id != skip && node_level(h, id) >= 0)
            s->cands[n++] = s->res[i];
    }
    sort_candidates(h, s->cands, n, qdist(h, s, vec_of(h, skip)));
    return n;
}

/* Connect node id, already holding its element and level, into the graph;
 * the query of s is its vector. */
static void connect_node(hnsw *h, hnsw_scratch *s, uint32_t id, int level,
                         uint32_t ep, int top)
{
    float d;
    ep = descend(h, s, ep, top, level, &d);
    for (int l = level < top ? level : top; l >= 0; l--) {
        size_t nres;
        s->epoch++;
        if (s->epoch == 0) {
            memset(s->visited, 0, s->visited_cap * sizeof *s->visited);
            s->epoch = 1;
        }
        search_level(h, s, ep, d, h->p.ef_construction, l, &nres);
        size_t n = sorted_beam(h, s, nres, id);
        if (n == 0)
            continue;
        ep = s->cands[0].id;
        d = s->cands[0].d;
        const void *own = vec_of(h, id);
        n = select_neighbors(h, own, qdist(h, s, own), s->cands, n, h->p.M);
        pthread_mutex_lock(node_lock(h, id));
        write_list(h, id, l, s->cands, n);
        pthread_mutex_unlock(node_lock(h, id));
        for (size_t i = 0; i < n; i++)
            link_back(h, s->tmp, s->cands[i].id, id, l);
    }
}

/* Keep a replaced list until no search can be reading it. */
static int retire(hnsw *h, uint32_t *list)
{
    return retired_push(&h->retired, list);
}

void hnsw_reclaim(hnsw *h)
{
    retired_free_all(&h->retired);
    retired_free_all(&h->retired_copies);
}

/* Give node id the upper lists of its level. */
static int place_upper(hnsw *h, uint32_t id, int level)
{
    if (level > 0) {
        uint32_t *up = qv_calloc((size_t)level * h->upper_stride,
                                 sizeof *up);
        if (!up || (h->upper[id] && retire(h, h->upper[id]) != 0)) {
            qv_mem_free(up);
            return -1;
        }
        h->upper[id] = up;
    }
    return 0;
}

/* Give node id the upper lists of its level and, for external elements,
 * a copy of its own to store the new vector in (a write in progress: its
 * vector is in no committed page yet, see hnsw_settle). */
static int place_node(hnsw *h, uint32_t id, int level)
{
    if (h->loc) {
        uint64_t at = copy_new(h, NULL);
        if (!at)
            return -1;
        relocate(h, id, at);
    }
    return place_upper(h, id, level);
}

/* An empty level-0 list, then the level: the node is live. */
static void publish_node(hnsw *h, uint32_t id, int level)
{
    store_u32(list_of(h, id, 0), 0);
    __atomic_store_n(&h->levels[id], (int8_t)level, __ATOMIC_RELEASE);
}

/* Unit length in place; a zero vector (cosine collections refuse them)
 * stays zero. */
static void normalize(float *v, uint32_t dim)
{
    (void)dist_normalize(v, dim, v);
}

/* Store vec as node id's element (unit length for cosine, encoded for a
 * codec); the query of s becomes the stored vector. */
static void store_vector(hnsw *h, hnsw_scratch *s, uint32_t id,
                         const float *vec)
{
    /* external: the copy place_node gave the node, no padding */
    uint8_t *dst = h->loc ? (uint8_t *)(uintptr_t)vec_of(h, id)
                          : h->elems + (size_t)id * h->stride;
    if (!h->loc)
        memset(dst + h->elem_bytes, 0, h->stride - h->elem_bytes);
    if (!h->codec) {
        memcpy(dst, vec, h->elem_bytes);
        if (h->p.metric == HNSW_COSINE)
            normalize((float *)(void *)dst, h->p.dim);
        s->q = (const float *)(const void *)dst;
        return;
    }
    memcpy(s->qvec, vec, h->p.dim * sizeof *vec);
    if (h->p.metric == HNSW_COSINE)
        normalize(s->qvec, h->p.dim);
    codec_encode(h->codec, s->qvec, dst);
    codec_query_prepare(h->codec, s->qvec, s->qbuf);
}

/* hnsw_insert once the write side is complete (insert_worker's too). */
static int insert_node(hnsw *h, hnsw_scratch *s, uint32_t id,
                       const float *vec, int level)
{
    if (scratch_prepare(s, h, h->p.ef_construction) != 0 ||
        place_node(h, id, level) != 0)
        return -1;
    QV_ASSERT(h->rev0[id].n == 0 && h->revup[id].n == 0);
    store_vector(h, s, id, vec);
    h->depth[id] = DEPTH_NONE;   /* labelled by the repair */
    publish_node(h, id, level);
    mark_dirty(h, id);
    atomic_fetch_add(&h->count, 1);

    uint32_t ep;
    int top;
    unpack_entry(atomic_load(&h->entry), &ep, &top);
    int raises = level > top;
    if (raises) {
        /* a new top level: one insert at a time may change the entry */
        pthread_mutex_lock(&h->entry_lock);
        unpack_entry(atomic_load(&h->entry), &ep, &top);
        raises = level > top;
        if (!raises)
            pthread_mutex_unlock(&h->entry_lock);
    }
    if (ep != HNSW_NO_NODE)
        connect_node(h, s, id, level, ep, top);
    if (raises) {
        atomic_store(&h->entry, pack_entry(id, level));
        /* labels count from the entry point: a new one relabels */
        atomic_store(&h->labels_valid, 0);
        pthread_mutex_unlock(&h->entry_lock);
    }
    note_pending(h, id);
    return atomic_load(&h->rev_ready) ? 0 : -1;
}

int hnsw_insert(hnsw *h, hnsw_scratch *s, uint32_t id, const float *vec,
                int level)
{
    if (write_side_ready(h) != 0)
        return -1;
    return insert_node(h, s, id, vec, level);
}

struct parallel_job {
    hnsw *h;
    const uint32_t *ids;
    const float *const *vecs;
    const int *levels;
    size_t n;
    atomic_size_t next;
    atomic_int failed;
};

static void *insert_worker(void *arg)
{
    struct parallel_job *job = arg;
    hnsw_scratch *s = hnsw_scratch_create();
    if (!s) {
        atomic_store(&job->failed, 1);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n || atomic_load(&job->failed))
            break;
        if (insert_node(job->h, s, job->ids[i], job->vecs[i],
                        job->levels[i]) != 0)
            atomic_store(&job->failed, 1);
    }
    hnsw_scratch_free(s);
    return NULL;
}

int hnsw_insert_parallel(hnsw *h, const uint32_t *ids, const float *const *vecs,
                         const int *levels, size_t n, unsigned threads)
{
    struct parallel_job job = {.h = h, .ids = ids, .vecs = vecs,
                               .levels = levels, .n = n};
    if (write_side_ready(h) != 0)
        return -1;
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, 0);
    if (threads > 64)
        threads = 64;
    pthread_t tids[64];
    unsigned started = 0;
    for (; started + 1 < threads && started < n; started++) {
        if (pthread_create(&tids[started], NULL, insert_worker, &job) != 0)
            break;
    }
    insert_worker(&job);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    return atomic_load(&job.failed) ? -1 : 0;
}

/* ---- removal ---- */

#define RELINK_FILL 2   /* candidates put in a removed neighbour's place */

/*
 * Take the removed node out of ref's list at level and put in its place
 * the removed node's RELINK_FILL neighbours nearest to ref that ref does
 * not hold yet (room permitting: the list just lost an entry, and the
 * degree bound holds). The rest of the list stays as it is.
 *
 * Why not the heuristic over both lists, as this once did: that pruned
 * every list a removal touched to the heuristic's choice, well below the
 * fill that back-links give lists in a fresh build. On 20,000 random
 * 32-d vectors replaced three times over, the mean level-0 degree fell
 * from 23 to 18.5 and recall@10 at ef 32 from 0.83 to 0.79. Filling the
 * gap with the nearest candidates keeps the degree of a fresh build
 * (23.4) and its recall (within 0.01), and measures a tenth of the
 * distances. Two, because one left the degree at 22 and recall 0.01
 * lower: some removed nodes offer no candidate ref does not hold.
 */
/* Of the removed node's neighbours at level, up to RELINK_FILL not
 * marked in the scratch's visited epoch, nearest to v first, into fill;
 * returns how many (a linear pick: no sort for two of at most 2M). */
static size_t nearest_fill(const hnsw *h, hnsw_scratch *s, const void *v,
                           uint32_t removed, int level, cand *fill)
{
    const uint32_t *from = list_of(h, removed, level);
    size_t got = 0;
    for (uint32_t i = 0, n = load_u32(from); i < n; i++) {
        uint32_t nb = load_u32(&from[1 + i]);
        if (s->visited[nb] == s->epoch || node_level(h, nb) < level)
            continue;
        s->visited[nb] = s->epoch;
        cand c = {edist(h, v, vec_of(h, nb)), nb};
        size_t at = got < RELINK_FILL ? got++ : RELINK_FILL;
        for (; at > 0 && by_distance(&c, &fill[at - 1]) < 0; at--) {
            if (at < RELINK_FILL)
                fill[at] = fill[at - 1];
        }
        if (at < RELINK_FILL)
            fill[at] = c;
    }
    return got;
}

static void relink(hnsw *h, hnsw_scratch *s, uint32_t ref, uint32_t removed,
                   int level, int removed_level)
{
    uint32_t *list = list_of(h, ref, level);
    uint32_t n = load_u32(list), kept = 0;
    cand fill[RELINK_FILL];
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->visited_cap * sizeof *s->visited);
        s->epoch = 1;
    }
    s->visited[ref] = s->visited[removed] = s->epoch;
    for (uint32_t i = 0; i < n; i++)
        s->visited[load_u32(&list[1 + i])] = s->epoch;
    size_t nfill = level <= removed_level
                       ? nearest_fill(h, s, vec_of(h, ref), removed, level,
                                      fill)
                       : 0;
    /* the list in place: the removed node out (the entries after it move
     * up one), the fill appended; ids before the count, as write_list */
    pthread_mutex_lock(node_lock(h, ref));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nb = load_u32(&list[1 + i]);
        if (nb != removed)
            store_u32(&list[1 + kept++], nb);
    }
    for (size_t i = 0; i < nfill && kept < max_degree(h, level); i++)
        store_u32(&list[1 + kept++], fill[i].id);
    store_u32(list, kept);
    pthread_mutex_unlock(node_lock(h, ref));
    edge_removed(h, level, ref, removed);
    for (uint32_t i = n - 1; i < kept; i++)
        edge_added(h, level, ref, load_u32(&list[1 + i]));
    mark_dirty(h, ref);
}

static int list_has(const uint32_t *list, uint32_t id)
{
    uint32_t n = load_u32(list);
    for (uint32_t i = 0; i < n; i++) {
        if (load_u32(&list[1 + i]) == id)
            return 1;
    }
    return 0;
}

/*
 * Relink every node that points to the removed node: the reverse lists
 * name them, so a removal reads the lists of its in-neighbours (about 2M
 * of them) instead of every list in the graph. They are copied first:
 * each relink drops an entry of the removed node's reverse lists.
 */
static int unlink_referrers(hnsw *h, hnsw_scratch *s, uint32_t removed,
                            int removed_level)
{
    const revlist *r0 = &h->rev0[removed], *ru = &h->revup[removed];
    size_t n = (size_t)r0->n + ru->n;
    uint32_t *refs = qv_malloc((n ? n : 1) * sizeof *refs);
    if (!refs)
        return -1;
    for (uint32_t i = 0; i < r0->n; i++)
        refs[i] = r0->ids[i];
    for (uint32_t i = 0; i < ru->n; i++)
        refs[r0->n + i] = ru->ids[i];
    uint32_t n0 = r0->n;
    for (size_t i = 0; i < n; i++) {
        uint32_t ref = refs[i];
        int from = i < n0 ? 0 : 1;
        int to = i < n0 ? 0 : node_level(h, ref);
        for (int l = from; l <= to && l <= removed_level; l++) {
            if (list_has(list_of(h, ref, l), removed))
                relink(h, s, ref, removed, l, removed_level);
        }
    }
    qv_mem_free(refs);
    QV_ASSERT(!atomic_load(&h->rev_ready) ||
              (h->rev0[removed].n == 0 && h->revup[removed].n == 0));
    return 0;
}

/* Drop the removed node's own edges at every level; its upper lists
 * stay allocated until the slot is reused (a concurrent search may still
 * be reading them), but empty. */
static void drop_own_edges(hnsw *h, uint32_t id, int level)
{
    for (int l = 0; l <= level; l++) {
        uint32_t *list = list_of(h, id, l);
        uint32_t n = load_u32(list);
        store_u32(list, 0);
        for (uint32_t i = 0; i < n; i++)
            edge_removed(h, l, id, load_u32(&list[1 + i]));
    }
}

/* The live node of the highest level, preferring the removed one's
 * neighbours at its top level. */
static void choose_new_entry(hnsw *h, uint32_t removed, int removed_level)
{
    uint32_t best = HNSW_NO_NODE;
    int best_level = NO_LEVEL;
    const uint32_t *list = list_of(h, removed, removed_level);
    for (uint32_t i = 0; i < load_u32(list); i++) {
        uint32_t nb = load_u32(&list[1 + i]);
        if (node_level(h, nb) > best_level)
            best = nb, best_level = node_level(h, nb);
    }
    for (uint32_t id = 0; id < h->cap && best_level < removed_level; id++) {
        if (node_level(h, id) > best_level)
            best = id, best_level = node_level(h, id);
    }
    atomic_store(&h->entry, pack_entry(best, best_level));
}

int hnsw_remove(hnsw *h, hnsw_scratch *s, uint32_t id)
{
    if (!hnsw_contains(h, id))
        return 0;
    if (write_side_ready(h) != 0 || scratch_prepare(s, h, 1) != 0)
        return -1;
    int level = node_level(h, id);
    __atomic_store_n(&h->levels[id], (int8_t)NO_LEVEL, __ATOMIC_RELEASE);
    atomic_fetch_sub(&h->count, 1);
    mark_dirty(h, id);
    if (unlink_referrers(h, s, id, level) != 0)
        return -1;
    if (hnsw_entry(h) == id) {
        /* rare (the top node): the labels start from the new entry */
        choose_new_entry(h, id, level);
        atomic_store(&h->labels_valid, 0);
    }
    drop_own_edges(h, id, level);
    return atomic_load(&h->rev_ready) ? 0 : -1;
}

/* ---- reachability ---- */

/*
 * Mark in seen every node reachable from the entry point over level-0
 * edges; returns how many. queue holds cap entries. Level 0 alone, since
 * a search ends with a beam at level 0: a node that only upper-level
 * edges lead to would be found by the descent at best by chance.
 */
static size_t mark_reachable(const hnsw *h, uint8_t *seen, uint32_t *queue)
{
    uint32_t ep = hnsw_entry(h);
    if (ep == HNSW_NO_NODE)
        return 0;
    size_t head = 0, tail = 0;
    memset(seen, 0, h->cap);
    queue[tail++] = ep;
    seen[ep] = 1;
    /* done once every live node is marked: the rest of the queue can only
     * meet marked ones */
    size_t live = hnsw_count(h);
    while (head < tail && tail < live) {
        /* the lists of nodes a few places ahead in the queue: the walk is
         * bound by their cache misses, which then overlap */
        if (head + 8 < tail)
            __builtin_prefetch(list_of(h, queue[head + 8], 0));
        uint32_t id = queue[head++];
        const uint32_t *list = list_of(h, id, 0);
        uint32_t n = load_u32(list);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t nb = load_u32(&list[1 + i]);
            if (!seen[nb] && node_level(h, nb) >= 0) {
                seen[nb] = 1;
                queue[tail++] = nb;
            }
        }
    }
    return tail;
}

/* Room for a walk's queue of every slot (kept between walks: a walk must
 * not map and fault in fresh pages each time). */
static int walk_queue_ready(hnsw *h)
{
    if (h->walk_cap >= h->cap)
        return 0;
    uint32_t *queue = qv_realloc(h->walk_queue, h->cap * sizeof *queue);
    if (!queue)
        return -1;
    h->walk_queue = queue;
    h->walk_cap = h->cap;
    return 0;
}

/*
 * Label every node by its level-0 distance from the entry point (a
 * breadth-first walk: each node's parent in the walk is an in-neighbour of
 * smaller depth, so the labels hold the invariant); the nodes it does not
 * reach are left unlabelled and queued for the repair, which adopts them.
 * O(nodes x degree): run after a load, when the entry point changed, or
 * when a local repair gave up.
 */
static int relabel(hnsw *h)
{
    if (walk_queue_ready(h) != 0)
        return -1;
    for (uint32_t id = 0; id < h->cap; id++)
        h->depth[id] = DEPTH_NONE;
    uint32_t ep = hnsw_entry(h), *queue = h->walk_queue;
    size_t head = 0, tail = 0;
    if (ep != HNSW_NO_NODE) {
        h->depth[ep] = 0;
        queue[tail++] = ep;
    }
    while (head < tail) {
        if (head + 8 < tail)
            __builtin_prefetch(list_of(h, queue[head + 8], 0));
        uint32_t id = queue[head++];
        const uint32_t *list = list_of(h, id, 0);
        for (uint32_t i = 0, n = load_u32(list); i < n; i++) {
            uint32_t nb = load_u32(&list[1 + i]);
            if (h->depth[nb] == DEPTH_NONE && node_level(h, nb) >= 0) {
                h->depth[nb] = h->depth[id] + 1;
                queue[tail++] = nb;
            }
        }
    }
    for (uint32_t id = 0; tail < hnsw_count(h) && id < h->cap; id++) {
        if (node_level(h, id) >= 0 && h->depth[id] == DEPTH_NONE)
            note_pending(h, id);
    }
    h->walks++;
    atomic_store(&h->labels_valid, 1);
    return 0;
}

/* The smallest label among u's level-0 in-neighbours (DEPTH_NONE: none
 * is labelled). */
static uint32_t best_in_depth(const hnsw *h, uint32_t u)
{
    const revlist *r = &h->rev0[u];
    uint32_t best = DEPTH_NONE;
    for (uint32_t i = 0; i < r->n; i++) {
        uint32_t d = h->depth[r->ids[i]];
        best = d < best ? d : best;
    }
    return best;
}

/* u's label went from old to new: queue the out-neighbours whose support
 * it may have been (labelled in (old, new]), and the unlabelled ones,
 * which u's label may now reach. */
static void label_changed(hnsw *h, uint32_t u, uint32_t old, uint32_t new)
{
    const uint32_t *list = list_of(h, u, 0);
    for (uint32_t i = 0, n = load_u32(list); i < n; i++) {
        uint32_t v = load_u32(&list[1 + i]), d = h->depth[v];
        if (d == DEPTH_NONE || (old != DEPTH_NONE && d > old && d <= new))
            note_pending(h, v);
    }
}

/*
 * Add u to node's level-0 list and keep it there: appended when there is
 * room, else the rest of the list is pruned by the heuristic to make
 * room (the edges it drops queue their targets for the repair).
 */
static void link_kept(hnsw *h, cand *tmp, uint32_t node, uint32_t u)
{
    uint32_t *list = list_of(h, node, 0);
    uint32_t n = load_u32(list);
    if (list_has(list, u))
        return;
    if (n < h->M0) {
        link_back(h, tmp, node, u, 0);
        return;
    }
    const void *v = vec_of(h, node);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nb = load_u32(&list[1 + i]);
        tmp[i] = (cand){edist(h, v, vec_of(h, nb)), nb};
    }
    float self_d = edist(h, v, v);
    sort_candidates(h, tmp, n, self_d);
    size_t kept = select_neighbors(h, v, self_d, tmp, n, h->M0 - 1);
    tmp[kept++] = (cand){edist(h, v, vec_of(h, u)), u};
    pthread_mutex_lock(node_lock(h, node));
    write_list(h, node, 0, tmp, kept);
    pthread_mutex_unlock(node_lock(h, node));
    mark_dirty(h, node);
}

/*
 * Whether w is proven reachable without u, for u to hang from: following
 * level-0 in-edges from nodes labelled ever lower reaches the entry point
 * without meeting u. Those are edges the graph holds now, so the chain is
 * a path from the entry point, whatever the repair has still to examine.
 * Labels fall along it, so it is as long as w's label (bounded, in case
 * labels climbed high).
 */
static int proven(const hnsw *h, uint32_t w, uint32_t u)
{
    uint32_t ep = hnsw_entry(h);
    for (int step = 0; step < 256; step++) {
        if (w == ep)
            return 1;
        if (w == u || h->depth[w] == DEPTH_NONE)
            return 0;
        const revlist *r = &h->rev0[w];
        uint32_t next = HNSW_NO_NODE;
        for (uint32_t i = 0; i < r->n; i++) {
            if (h->depth[r->ids[i]] < h->depth[w] &&
                (next == HNSW_NO_NODE ||
                 h->depth[r->ids[i]] < h->depth[next]))
                next = r->ids[i];
        }
        if (next == HNSW_NO_NODE)
            return 0;
        w = next;
    }
    return 0;
}

/*
 * The node to adopt u among the beam s->cands[0..n) (nearest first): the
 * nearest labelled below u with room in its list, else the nearest
 * labelled below u; else the nearest whose label is proven (u's label
 * then rises above it); else none (HNSW_NO_NODE).
 */
static uint32_t choose_adopter(const hnsw *h, const hnsw_scratch *s,
                               size_t n, uint32_t u)
{
    uint32_t below = h->depth[u], first = HNSW_NO_NODE;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s->cands[i].id;
        if (h->depth[c] >= below)
            continue;
        if (load_u32(list_of(h, c, 0)) < h->M0)
            return c;
        if (first == HNSW_NO_NODE)
            first = c;
    }
    for (size_t i = 0; first == HNSW_NO_NODE && i < n; i++) {
        if (proven(h, s->cands[i].id, u))
            first = s->cands[i].id;
    }
    return first;
}

/*
 * Give u an in-edge from a node near it that proves it reachable (found
 * by a search for u's own element, see choose_adopter), keeping u's label
 * when the adopter is labelled below it and else raising it above the
 * adopter's (an unlabelled u takes its first label so). -1 when the
 * search met no such node.
 */
static int adopt(hnsw *h, hnsw_scratch *s, uint32_t u)
{
    uint32_t ep, old = h->depth[u];
    int top;
    unpack_entry(atomic_load(&h->entry), &ep, &top);
    query_from_node(h, s, u);
    float d;
    uint32_t start = descend(h, s, ep, top, 0, &d);
    /* the descent may end among unlabelled nodes (upper levels reach
     * them); from the entry point the walk meets labelled ones */
    if (h->depth[start] == DEPTH_NONE) {
        start = ep;
        d = qdist(h, s, vec_of(h, ep));
    }
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->visited_cap * sizeof *s->visited);
        s->epoch = 1;
    }
    size_t nres;
    search_level(h, s, start, d, h->p.ef_construction, 0, &nres);
    uint32_t w = choose_adopter(h, s, sorted_beam(h, s, nres, u), u);
    if (w == HNSW_NO_NODE)
        return -1;
    link_kept(h, s->tmp, w, u);
    if (h->depth[w] >= old || old == DEPTH_NONE) {
        h->depth[u] = h->depth[w] + 1;
        label_changed(h, u, old, h->depth[u]);
    }
    return 0;
}

/* Whether v has a level-0 in-neighbour other than u labelled below it. */
static int supported_without(const hnsw *h, uint32_t v, uint32_t u)
{
    const revlist *r = &h->rev0[v];
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->ids[i] != u && h->depth[r->ids[i]] < h->depth[v])
            return 1;
    }
    return 0;
}

/*
 * Whether u's label may rise from old to new with no other node losing
 * its support: each out-neighbour labelled in (old, new] has another
 * in-neighbour labelled below it. Then the invariant holds at every node
 * but u before and after, so the raise needs no further work.
 */
static int raise_is_safe(const hnsw *h, uint32_t u, uint32_t old,
                         uint32_t new)
{
    const uint32_t *list = list_of(h, u, 0);
    for (uint32_t i = 0, n = load_u32(list); i < n; i++) {
        uint32_t v = load_u32(&list[1 + i]), d = h->depth[v];
        if (d != DEPTH_NONE && d > old && d <= new &&
            !supported_without(h, v, u))
            return 0;
    }
    return 1;
}

/*
 * Restore the invariant at u: nothing to do while an in-neighbour is
 * labelled below it. An unlabelled u takes the label above its lowest
 * labelled in-neighbour's; a labelled one rises so when that is safe
 * (raise_is_safe), which costs a few hundred label reads. A raise that
 * others relied on spreads to them, which is still cheaper than a search
 * where the graph is connected, but a group cut off from the rest would
 * raise each other's labels without end: after MAX_RAISES such raises in
 * one repair, u is adopted instead (a search for u finds it an in-edge
 * from a node labelled below, which changes no label, or proven
 * reachable). 1 when u was adopted, 0 when nothing or a new label was
 * needed, -1 when no adopter was found.
 */
static int support(hnsw *h, hnsw_scratch *s, uint32_t u)
{
    if (node_level(h, u) < 0 || u == hnsw_entry(h))
        return 0;
    uint32_t d = h->depth[u], best = best_in_depth(h, u);
    if (best < d && d != DEPTH_NONE)
        return 0;
    int safe = best != DEPTH_NONE &&
               (d == DEPTH_NONE || raise_is_safe(h, u, d, best + 1));
    if (best != DEPTH_NONE && !safe && h->mark[u] >> 1 < MAX_RAISES) {
        h->mark[u] = (uint8_t)(h->mark[u] + MARK_RAISE);
        safe = 1;   /* spreads: label_changed queues who relied on u */
    }
    if (safe) {
        h->depth[u] = best + 1;
        label_changed(h, u, d, best + 1);
        return 0;
    }
    return adopt(h, s, u) == 0 ? 1 : -1;
}

/*
 * Examine the queued nodes (and those the examination queues) until none
 * is left, or budget examinations were made. 0 when the invariant holds
 * again, -1 when the repair gave up (then a walk relabels). The queue
 * keeps every entry until the end, so that the marks can be cleared.
 */
static int drain_pending(hnsw *h, hnsw_scratch *s, size_t budget,
                         size_t *adopted)
{
    int rc = 0;
    size_t at = 0;
    for (; at < h->npending && !h->pending_overflow; at++) {
        uint32_t u = h->pending[at];
        h->mark[u] &= (uint8_t)~MARK_PENDING;
        int r = at < budget ? support(h, s, u) : -1;
        if (r < 0) {
            rc = -1;
            break;
        }
        *adopted += (size_t)r;
    }
    for (size_t i = 0; i < h->npending; i++)
        h->mark[h->pending[i]] = 0;
    h->npending = 0;
    if (h->pending_overflow)
        rc = -1;
    h->pending_overflow = 0;
    return rc;
}

/*
 * The local repair. Every node whose support may have gone was queued as
 * the write changed lists; each is examined with its own in-neighbours
 * (about 2M labels read), and only the labels it changes spread the
 * work, so a write's repair costs in proportion to what the write
 * touched. A walk of the whole graph remains for what the local repair
 * cannot settle within its budget, after a load, and when the entry
 * point changes (a new top level, or the top node removed): all rare,
 * and counted (hnsw_walks).
 */
int hnsw_repair(hnsw *h, hnsw_scratch *s, size_t *repaired)
{
    *repaired = 0;
    if (write_side_ready(h) != 0 ||
        scratch_prepare(s, h, h->p.ef_construction) != 0)
        return -1;
    if (!atomic_load(&h->labels_valid) && relabel(h) != 0)
        return -1;
    size_t budget = 16 * h->npending + 1024;
    int settled = drain_pending(h, s, budget, repaired) == 0;
    /* a few rounds of walk and adoption: after a walk only cut-off nodes
     * lack a label, and any labelled node can adopt them; the adoptions'
     * pruning may cut others, rarely */
    for (int round = 0; round < 4 && !settled; round++) {
        if (relabel(h) != 0)
            return -1;
        settled = drain_pending(h, s, 16 * (size_t)hnsw_count(h) + 1024,
                                repaired) == 0;
    }
    if (!settled)
        atomic_store(&h->labels_valid, 0);   /* the next repair walks */
    return atomic_load(&h->rev_ready) ? 0 : -1;
}

unsigned long hnsw_walks(const hnsw *h) { return h->walks; }

/* ---- persistence ---- */

size_t hnsw_dirty_count(const hnsw *h) { return h->ndirty; }
const uint32_t *hnsw_dirty_ids(const hnsw *h) { return h->dirty; }

void hnsw_dirty_clear(hnsw *h)
{
    for (size_t i = 0; i < h->ndirty; i++)
        atomic_store(&h->dirty_flag[h->dirty[i]], 0);
    h->ndirty = 0;
}

/* Record: [level u8][3 zero bytes] then per level [count u32][ids u32...]. */
size_t hnsw_record_size(const hnsw *h, uint32_t id)
{
    int level = node_level(h, id);
    size_t size = 4;
    for (int l = 0; l <= level; l++)
        size += 4 * (1 + (size_t)load_u32(list_of(h, id, l)));
    return size;
}

void hnsw_record_write(const hnsw *h, uint32_t id, void *buf)
{
    unsigned char *p = buf;
    int level = node_level(h, id);
    memset(p, 0, 4);
    p[0] = (unsigned char)level;
    p += 4;
    for (int l = 0; l <= level; l++) {
        const uint32_t *list = list_of(h, id, l);
        size_t bytes = 4 * (1 + (size_t)load_u32(list));
        memcpy(p, list, bytes);
        p += bytes;
    }
}

int hnsw_record_load(hnsw *h, uint32_t id, const void *elem, const void *rec,
                     size_t len)
{
    const unsigned char *p = rec, *end = p + len;
    if (id >= h->cap || len < 4 || p[0] > HNSW_MAX_LEVEL)
        return -1;
    /* the write side is rebuilt by the first write (write_side_ready) */
    atomic_store(&h->rev_ready, 0);
    atomic_store(&h->labels_valid, 0);
    int level = p[0];
    p += 4;
    if (place_upper(h, id, level) != 0)
        return -2;
    if (!h->loc) {   /* external elements are placed apart */
        uint8_t *dst = h->elems + (size_t)id * h->stride;
        memcpy(dst, elem, h->elem_bytes);
        memset(dst + h->elem_bytes, 0, h->stride - h->elem_bytes);
        if (!h->codec && h->p.metric == HNSW_COSINE)
            normalize((float *)(void *)dst, h->p.dim);
    }
    publish_node(h, id, level);
    for (int l = 0; l <= level; l++) {
        uint32_t n;
        if (end - p < 4)
            goto malformed;
        memcpy(&n, p, 4);
        if (n > max_degree(h, l) || (size_t)(end - p) < 4 * (1 + (size_t)n))
            goto malformed;
        uint32_t *list = list_of(h, id, l);
        memcpy(list, p, 4 * (1 + (size_t)n));
        for (uint32_t i = 0; i < n; i++) {
            if (list[1 + i] >= h->cap)
                goto malformed;
        }
        for (uint32_t i = 0; i < n; i++)
            edge_added(h, l, id, list[1 + i]);
        p += 4 * (1 + (size_t)n);
    }
    if (p != end)
        goto malformed;
    atomic_fetch_add(&h->count, 1);
    return 0;
malformed:
    store_u32(list_of(h, id, 0), 0);
    h->levels[id] = NO_LEVEL;
    return -1;
}

/* ---- invariants ---- */

static int check_lists(const hnsw *h, char *err, size_t errlen)
{
    for (uint32_t id = 0; id < h->cap; id++) {
        int level = node_level(h, id);
        for (int l = 0; l <= level; l++) {
            const uint32_t *list = list_of(h, id, l);
            uint32_t n = load_u32(list);
            if (n > max_degree(h, l)) {
                snprintf(err, errlen, "node %u level %d: degree %u over %u",
                         id, l, n, max_degree(h, l));
                return -1;
            }
            for (uint32_t i = 0; i < n; i++) {
                uint32_t nb = list[1 + i];
                if (nb == id || nb >= h->cap || node_level(h, nb) < l) {
                    snprintf(err, errlen, "node %u level %d: neighbour %u "
                             "is %s", id, l, nb, nb == id ? "itself"
                             : "not a node of that level");
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* The entry point is a node of the top level (none only when empty). */
static int check_entry(const hnsw *h, char *err, size_t errlen)
{
    uint32_t ep;
    int top;
    unpack_entry(atomic_load(&h->entry), &ep, &top);
    if (ep == HNSW_NO_NODE) {
        if (hnsw_count(h) == 0)
            return 0;
        snprintf(err, errlen, "%u nodes but no entry point", hnsw_count(h));
        return -1;
    }
    if (!hnsw_contains(h, ep) || node_level(h, ep) != top) {
        snprintf(err, errlen, "entry point %u is not a node of level %d", ep,
                 top);
        return -1;
    }
    return 0;
}

int hnsw_check_links(const hnsw *h, char *err, size_t errlen)
{
    if (check_lists(h, err, errlen) != 0)
        return -1;
    return check_entry(h, err, errlen);
}

/* Every live node reachable from the entry point over all levels (the
 * entry point checked). */
static int check_reachable(const hnsw *h, char *err, size_t errlen)
{
    uint32_t live = hnsw_count(h);
    if (hnsw_entry(h) == HNSW_NO_NODE)
        return 0;
    uint8_t *seen = qv_malloc(h->cap);
    uint32_t *queue = qv_malloc((size_t)h->cap * sizeof *queue);
    int rc = -1;
    if (!seen || !queue) {
        snprintf(err, errlen, "out of memory");
        rc = -2;
        goto cleanup;
    }
    size_t reached = mark_reachable(h, seen, queue);
    if (reached != live) {
        uint32_t lost = 0;
        while (lost < h->cap && (seen[lost] || !hnsw_contains(h, lost)))
            lost++;
        snprintf(err, errlen, "%zu of %u nodes reachable from the entry "
                 "point; node %u is not", reached, live, lost);
        goto cleanup;
    }
    rc = 0;
cleanup:
    qv_mem_free(seen);
    qv_mem_free(queue);
    return rc;
}

/* How many times ref's upper lists hold id. */
static uint32_t upper_links(const hnsw *h, uint32_t ref, uint32_t id)
{
    uint32_t n = 0;
    for (int l = 1; l <= node_level(h, ref); l++)
        n += (uint32_t)list_has(list_of(h, ref, l), id);
    return n;
}

/* Node id's reverse lists hold exactly the nodes whose lists hold it;
 * in0 is how many level-0 lists hold it. */
static int check_rev_of(const hnsw *h, uint32_t id, uint32_t in0, char *err,
                        size_t errlen)
{
    const revlist *r0 = &h->rev0[id], *ru = &h->revup[id];
    if (r0->n != in0 || atomic_load(&h->indeg0[id]) != in0) {
        snprintf(err, errlen, "node %u: %u level-0 lists hold it, but its "
                 "reverse list has %u and its in-degree is %u", id, in0,
                 r0->n, atomic_load(&h->indeg0[id]));
        return -1;
    }
    for (uint32_t i = 0; i < r0->n; i++) {
        uint32_t ref = r0->ids[i];
        if (node_level(h, ref) < 0 || !list_has(list_of(h, ref, 0), id) ||
            ids_have(r0->ids, i, ref)) {
            snprintf(err, errlen, "node %u: reverse list names %u, whose "
                     "level-0 list does not hold it once", id, ref);
            return -1;
        }
    }
    for (uint32_t i = 0; i < ru->n; i++) {
        uint32_t ref = ru->ids[i], times = 0;
        for (uint32_t j = 0; j < ru->n; j++)
            times += ru->ids[j] == ref;
        if (node_level(h, ref) < 0 || upper_links(h, ref, id) != times) {
            snprintf(err, errlen, "node %u: upper reverse list names %u %u "
                     "times, unlike its lists", id, ref, times);
            return -1;
        }
    }
    return 0;
}

/* Every node but the entry point has a level-0 in-neighbour labelled
 * below it: the labels prove every node reachable. */
static int check_labels(const hnsw *h, char *err, size_t errlen)
{
    uint32_t ep = hnsw_entry(h);
    for (uint32_t id = 0; id < h->cap; id++) {
        if (node_level(h, id) < 0)
            continue;
        uint32_t d = h->depth[id];
        int ok = id == ep ? d == 0
                          : d != DEPTH_NONE && best_in_depth(h, id) < d;
        if (!ok) {
            snprintf(err, errlen, "node %u: label %u has no in-neighbour "
                     "labelled below it", id, d);
            return -1;
        }
    }
    return 0;
}

/*
 * The write side, when built: the reverse lists and in-degrees match the
 * lists (upper-level edges counted too, in the reverse lists), and when
 * no repair is pending the labels hold their invariant.
 */
static int check_write_side(const hnsw *h, char *err, size_t errlen)
{
    if (!atomic_load(&h->rev_ready))
        return 0;
    uint32_t *in0 = qv_calloc(h->cap ? h->cap : 1, sizeof *in0);
    int rc = -2;
    if (!in0) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    for (uint32_t id = 0; id < h->cap; id++) {
        const uint32_t *list = list_of(h, id, 0);
        for (uint32_t i = 0; node_level(h, id) >= 0 && i < list[0]; i++)
            in0[list[1 + i]]++;
    }
    rc = -1;
    for (uint32_t id = 0; id < h->cap; id++) {
        if (check_rev_of(h, id, in0[id], err, errlen) != 0)
            goto cleanup;
    }
    if (atomic_load(&h->labels_valid) && h->npending == 0 &&
        check_labels(h, err, errlen) != 0)
        goto cleanup;
    rc = 0;
cleanup:
    qv_mem_free(in0);
    return rc;
}

int hnsw_check(const hnsw *h, char *err, size_t errlen)
{
    uint32_t live = 0;
    for (uint32_t id = 0; id < h->cap; id++)
        live += node_level(h, id) >= 0;
    if (live != hnsw_count(h)) {
        snprintf(err, errlen, "count %u but %u live nodes", hnsw_count(h),
                 live);
        return -1;
    }
    if (hnsw_check_links(h, err, errlen) != 0)
        return -1;
    int rc = check_write_side(h, err, errlen);
    if (rc != 0)
        return rc;
    return check_reachable(h, err, errlen);  /* -2: out of memory */
}

size_t hnsw_element_bytes(const hnsw *h) { return h->elem_bytes; }

const void *hnsw_element(const hnsw *h, uint32_t id)
{
    return vec_of(h, id);
}

size_t hnsw_memory_bytes(const hnsw *h)
{
    size_t elem = h->loc ? sizeof *h->loc : h->stride;
    size_t bytes = (size_t)h->cap * (elem +
                                     h->link0_stride * sizeof(uint32_t) +
                                     sizeof(uint32_t *) + 2 + sizeof(uint32_t));
    /* the write side: list headers, labels, marks and the lists */
    bytes += (size_t)h->cap * (2 * sizeof(revlist) + sizeof(uint32_t) + 1);
    if (h->loc)
        bytes += atomic_load(&h->ncopies) * (COPY_HEAD + h->elem_bytes);
    /* read beside writers: only the levels (atomic) and the lists' total */
    for (uint32_t id = 0; id < h->cap; id++)
        if (node_level(h, id) > 0)   /* NO_LEVEL for an empty slot */
            bytes += (size_t)node_level(h, id) * h->upper_stride * 4;
    return bytes + atomic_load(&h->rev_slots) * sizeof(uint32_t);
}
