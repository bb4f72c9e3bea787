#include "ann/hnsw.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <simde/x86/avx2.h>

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

typedef struct cand {
    float d;
    uint32_t id;
} cand;

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
    pthread_mutex_t copies_lock;
    void **retired_copies;
    size_t nretired_copies, retired_copies_cap;
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
    /* level-0 in-degrees, to find nodes that lost their last incoming
     * edge without walking the graph; such nodes wait in lost */
    _Atomic uint32_t *indeg0;
    uint32_t *lost;
    size_t nlost, lost_cap;
    int lost_overflow;       /* a lost node could not be noted: walk */
    pthread_mutex_t lost_lock;
    atomic_ulong removed_edges;  /* since the last whole walk */
    /* upper lists replaced while searches may still read them */
    uint32_t **retired;
    size_t nretired, retired_cap;
    /* the level-0 walk's marks and queue, kept between walks */
    uint8_t *walk_seen;
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
    pthread_mutex_init(&h->copies_lock, NULL);
    if (params->external && !(h->zeros = qv_calloc(1, h->stride))) {
        pthread_mutex_destroy(&h->copies_lock);
        qv_mem_free(h);
        return NULL;
    }
    h->link0_stride = 1 + h->M0;
    h->upper_stride = 1 + params->M;
    h->level_mult = 1.0 / log((double)(params->M > 1 ? params->M : 2));
    atomic_init(&h->entry, pack_entry(HNSW_NO_NODE, NO_LEVEL));
    pthread_mutex_init(&h->entry_lock, NULL);
    pthread_mutex_init(&h->dirty_lock, NULL);
    pthread_mutex_init(&h->lost_lock, NULL);
    for (unsigned i = 0; i < LOCK_STRIPES; i++)
        pthread_mutex_init(&h->node_locks[i], NULL);
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
    qv_mem_free(h->retired);
    if (h->elems)
        munmap(h->elems, h->elems_len);
    free_copies(h);
    if (h->links0)
        munmap(h->links0, h->links0_len);
    qv_mem_free(h->levels);
    qv_mem_free((void *)h->dirty_flag);
    qv_mem_free(h->dirty);
    qv_mem_free((void *)h->indeg0);
    qv_mem_free(h->lost);
    qv_mem_free(h->walk_seen);
    qv_mem_free(h->walk_queue);
    pthread_mutex_destroy(&h->lost_lock);
    pthread_mutex_destroy(&h->entry_lock);
    pthread_mutex_destroy(&h->dirty_lock);
    for (unsigned i = 0; i < LOCK_STRIPES; i++)
        pthread_mutex_destroy(&h->node_locks[i]);
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

/* Keep a copy that searches may still read until hnsw_reclaim; if it
 * cannot be noted, leak it (never free memory a search may read). */
static void copy_retire(hnsw *h, uint8_t *copy)
{
    if (!copy)
        return;
    atomic_fetch_sub(&h->ncopies, 1);
    pthread_mutex_lock(&h->copies_lock);
    if (h->nretired_copies == h->retired_copies_cap) {
        size_t cap = h->retired_copies_cap ? 2 * h->retired_copies_cap : 64;
        void **p = qv_realloc(h->retired_copies, cap * sizeof *p);
        if (p) {
            h->retired_copies = p;
            h->retired_copies_cap = cap;
        }
    }
    if (h->nretired_copies < h->retired_copies_cap)
        h->retired_copies[h->nretired_copies++] = copy - COPY_HEAD;
    pthread_mutex_unlock(&h->copies_lock);
}

/* Give node id location at; the copy it held before is retired. */
static void relocate(hnsw *h, uint32_t id, uint64_t at)
{
    copy_retire(h, copy_of(h, atomic_exchange(&h->loc[id], at)));
}

static void reclaim_copies(hnsw *h)
{
    pthread_mutex_lock(&h->copies_lock);
    for (size_t i = 0; i < h->nretired_copies; i++)
        qv_mem_free(h->retired_copies[i]);
    h->nretired_copies = 0;
    pthread_mutex_unlock(&h->copies_lock);
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
    reclaim_copies(h);
    qv_mem_free(h->retired_copies);
    qv_mem_free((void *)h->loc);
    qv_mem_free(h->zeros);
    pthread_mutex_destroy(&h->copies_lock);
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
    pthread_mutex_lock(&h->copies_lock);
    size_t n = h->nretired_copies;
    pthread_mutex_unlock(&h->copies_lock);
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
        grow((void **)&h->indeg0, sizeof(uint32_t), h->cap, new_cap) != 0)
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

static void note_lost(hnsw *h, uint32_t id)
{
    pthread_mutex_lock(&h->lost_lock);
    if (h->nlost == h->lost_cap) {
        size_t cap = h->lost_cap ? 2 * h->lost_cap : 64;
        uint32_t *p = qv_realloc(h->lost, cap * sizeof *p);
        if (p) {
            h->lost = p;
            h->lost_cap = cap;
        }
    }
    if (h->nlost < h->lost_cap)
        h->lost[h->nlost++] = id;
    else
        h->lost_overflow = 1;
    pthread_mutex_unlock(&h->lost_lock);
}

static void edge_added(hnsw *h, int level, uint32_t to)
{
    if (level == 0)
        atomic_fetch_add(&h->indeg0[to], 1);
}

/* A node whose last level-0 in-edge goes is noted as lost. */
static void edge_removed(hnsw *h, int level, uint32_t to)
{
    atomic_fetch_add(&h->removed_edges, 1);
    if (level == 0 && atomic_fetch_sub(&h->indeg0[to], 1) == 1)
        note_lost(h, to);
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
    /* in-degrees: additions first, so a kept edge never reads as lost */
    for (size_t i = 0; i < n; i++)
        edge_added(h, level, cands[i].id);
    for (uint32_t i = 0; i < nold; i++)
        edge_removed(h, level, old[i]);
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
        edge_added(h, level, id);
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
    if (h->nretired == h->retired_cap) {
        size_t cap = h->retired_cap ? 2 * h->retired_cap : 16;
        uint32_t **p = qv_realloc(h->retired, cap * sizeof *p);
        if (!p)
            return -1;
        h->retired = p;
        h->retired_cap = cap;
    }
    h->retired[h->nretired++] = list;
    return 0;
}

void hnsw_reclaim(hnsw *h)
{
    for (size_t i = 0; i < h->nretired; i++)
        qv_mem_free(h->retired[i]);
    h->nretired = 0;
    reclaim_copies(h);
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

int hnsw_insert(hnsw *h, hnsw_scratch *s, uint32_t id, const float *vec,
                int level)
{
    if (scratch_prepare(s, h, h->p.ef_construction) != 0 ||
        place_node(h, id, level) != 0)
        return -1;
    store_vector(h, s, id, vec);
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
        pthread_mutex_unlock(&h->entry_lock);
    }
    return 0;
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
        if (hnsw_insert(job->h, s, job->ids[i], job->vecs[i],
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

/*
 * Rebuild ref's list at level without the removed node: its remaining
 * neighbours and the removed node's neighbours are the candidates.
 */
static void relink(hnsw *h, hnsw_scratch *s, uint32_t ref, uint32_t removed,
                   int level, int removed_level)
{
    uint32_t *list = list_of(h, ref, level);
    uint32_t n = load_u32(list);
    const void *v = vec_of(h, ref);
    size_t m = 0;
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->visited_cap * sizeof *s->visited);
        s->epoch = 1;
    }
    s->visited[ref] = s->visited[removed] = s->epoch;
    for (int pass = 0; pass < 2; pass++) {
        const uint32_t *src = pass == 0 ? list : list_of(h, removed, level);
        uint32_t cnt = pass == 0 ? n
                                 : level <= removed_level ? load_u32(src)
                                                          : 0;
        for (uint32_t i = 0; i < cnt; i++) {
            uint32_t nb = load_u32(&src[1 + i]);
            if (s->visited[nb] == s->epoch || node_level(h, nb) < level)
                continue;
            s->visited[nb] = s->epoch;
            s->tmp[m++] = (cand){edist(h, v, vec_of(h, nb)), nb};
        }
    }
    float self_d = edist(h, v, v);
    sort_candidates(h, s->tmp, m, self_d);
    write_list(h, ref, level, s->tmp,
               select_neighbors(h, v, self_d, s->tmp, m,
                                max_degree(h, level)));
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

/* Relink ref's level-0 list if it still holds the removed node (once a
 * node: *last is the one seen before). */
static void unlink_from(hnsw *h, hnsw_scratch *s, uint32_t ref,
                        uint32_t removed, int removed_level, uint32_t *last)
{
    if (ref == *last)
        return;
    *last = ref;
    if (node_level(h, ref) >= 0 && list_has(list_of(h, ref, 0), removed))
        relink(h, s, ref, removed, 0, removed_level);
}

/*
 * Relink every node whose level-0 list holds the removed node. The graph
 * is directed, so every list is read: all of them lie in one array, which
 * is compared with the removed id 8 entries a step (a delete at 60,000
 * nodes scanned them in 1 ms one entry at a time). A match may be a
 * list's count or an entry past its count; unlink_from checks the list.
 * Only this writer changes lists, and a relink only its own.
 */
static void unlink_level0(hnsw *h, hnsw_scratch *s, uint32_t removed,
                          int removed_level)
{
    const uint32_t *all = h->links0;
    size_t stride = h->link0_stride, total = (size_t)h->cap * stride, at = 0;
    uint32_t last = HNSW_NO_NODE;
    simde__m256i want = simde_mm256_set1_epi32((int)removed);
    for (; at + 8 <= total; at += 8) {
        simde__m256i v = simde_mm256_loadu_si256((const void *)(all + at));
        unsigned mask = (unsigned)simde_mm256_movemask_ps(
            simde_mm256_castsi256_ps(simde_mm256_cmpeq_epi32(v, want)));
        for (; mask; mask &= mask - 1) {
            size_t pos = at + (size_t)__builtin_ctz(mask);
            unlink_from(h, s, (uint32_t)(pos / stride), removed,
                        removed_level, &last);
        }
    }
    for (; at < total; at++) {
        if (all[at] == removed)
            unlink_from(h, s, (uint32_t)(at / stride), removed,
                        removed_level, &last);
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
    if (scratch_prepare(s, h, 1) != 0)
        return -1;
    int level = node_level(h, id);
    __atomic_store_n(&h->levels[id], (int8_t)NO_LEVEL, __ATOMIC_RELEASE);
    atomic_fetch_sub(&h->count, 1);
    mark_dirty(h, id);
    /* The graph is directed: find every node that points to id, at
     * level 0 in one scan of all lists, above it among the few nodes
     * that have upper levels. */
    unlink_level0(h, s, id, level);
    for (uint32_t ref = 0; level > 0 && ref < h->cap; ref++) {
        int ref_level = node_level(h, ref);
        for (int l = 1; l <= ref_level && l <= level; l++) {
            if (list_has(list_of(h, ref, l), id))
                relink(h, s, ref, id, l, level);
        }
    }
    if (hnsw_entry(h) == id)
        choose_new_entry(h, id, level);
    const uint32_t *own = list_of(h, id, 0);
    for (uint32_t i = 0, n = load_u32(own); i < n; i++)
        edge_removed(h, 0, load_u32(&own[1 + i]));
    store_u32(list_of(h, id, 0), 0);
    /* upper lists stay allocated until the slot is reused: a concurrent
     * search may still be reading them */
    return 0;
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

/*
 * Give the unreachable node u an incoming level-0 edge from the nearest
 * reachable node with room in its list (reachable: the walk's marks, or
 * NULL to trust the descent): appending removes no edge, so nothing else
 * becomes unreachable. Falls back to the pruning link.
 */
static void adopt_orphan(hnsw *h, hnsw_scratch *s, uint32_t u,
                         const uint8_t *reachable)
{
    uint32_t ep;
    int top;
    unpack_entry(atomic_load(&h->entry), &ep, &top);
    query_from_node(h, s, u);
    float d;
    uint32_t start = descend(h, s, ep, top, 0, &d);
    /* the descent may end in the cut-off part (upper levels reach it);
     * a walk of level 0 from a reachable node meets only reachable ones */
    if (reachable && !reachable[start]) {
        start = ep;
        d = qdist(h, s, vec_of(h, ep));
    }
    ep = start;
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->visited_cap * sizeof *s->visited);
        s->epoch = 1;
    }
    size_t nres;
    search_level(h, s, ep, d, h->p.ef_construction, 0, &nres);
    size_t n = sorted_beam(h, s, nres, u);
    for (size_t i = 0; i < n; i++) {
        uint32_t *list = list_of(h, s->cands[i].id, 0);
        if (load_u32(list) < h->M0) {
            link_back(h, s->tmp, s->cands[i].id, u, 0);
            return;
        }
    }
    if (n > 0)
        link_back(h, s->tmp, s->cands[0].id, u, 0);
}

/* Adopt the nodes noted as lost whose level-0 in-degree is still zero. */
static void adopt_lost(hnsw *h, hnsw_scratch *s, size_t *repaired)
{
    for (int round = 0; round < 8; round++) {
        pthread_mutex_lock(&h->lost_lock);
        uint32_t *lost = h->lost;
        size_t n = h->nlost;
        h->lost = NULL;
        h->nlost = h->lost_cap = 0;
        pthread_mutex_unlock(&h->lost_lock);
        for (size_t i = 0; i < n; i++) {
            uint32_t u = lost[i];
            if (node_level(h, u) >= 0 && atomic_load(&h->indeg0[u]) == 0 &&
                u != hnsw_entry(h)) {
                adopt_orphan(h, s, u, NULL);
                ++*repaired;
            }
        }
        qv_mem_free(lost);
        if (n == 0)
            return;
    }
}

/* Walk the whole graph and adopt every unreachable node. */
static int walk_and_adopt(hnsw *h, hnsw_scratch *s, size_t *repaired)
{
    /* kept between walks: a walk per write must not map and fault in
     * fresh pages each time */
    if (h->walk_cap < h->cap) {
        uint8_t *seen = qv_realloc(h->walk_seen, h->cap);
        if (seen)
            h->walk_seen = seen;
        uint32_t *queue = seen ? qv_realloc(h->walk_queue,
                                            h->cap * sizeof *queue)
                               : NULL;
        if (!queue)
            return -1;
        h->walk_queue = queue;
        h->walk_cap = h->cap;
    }
    uint8_t *seen = h->walk_seen;
    uint32_t *queue = h->walk_queue;
    if (!seen || !queue)
        return 0;   /* an empty graph */
    /* a few rounds: the fallback link may prune, which is rare */
    for (int round = 0; round < 4; round++) {
        if (mark_reachable(h, seen, queue) == hnsw_count(h))
            break;
        for (uint32_t id = 0; id < h->cap; id++) {
            if (!seen[id] && node_level(h, id) >= 0) {
                adopt_orphan(h, s, id, seen);
                ++*repaired;
            }
        }
    }
    atomic_store(&h->removed_edges, 0);
    h->lost_overflow = 0;
    return 0;
}

/*
 * Nodes that lost their last level-0 in-edge are adopted at once, which
 * costs nothing when none did. A group of nodes can also be cut off while
 * they still point at each other; that needs a walk of level 0 from the
 * entry point, done after every change that removed an edge. (It was once
 * spread over many writes, until a check of level-0 reachability showed
 * groups cut off in between, found by no search; the walk costs about a
 * millisecond at 60,000 nodes.)
 */
int hnsw_repair(hnsw *h, hnsw_scratch *s, size_t *repaired)
{
    *repaired = 0;
    if (scratch_prepare(s, h, h->p.ef_construction) != 0)
        return -1;
    adopt_lost(h, s, repaired);
    if (h->lost_overflow || atomic_load(&h->removed_edges) > 0)
        return walk_and_adopt(h, s, repaired);
    return 0;
}

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
            edge_added(h, l, list[1 + i]);
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
    if (h->loc)
        bytes += atomic_load(&h->ncopies) * (COPY_HEAD + h->elem_bytes);
    for (uint32_t id = 0; id < h->cap; id++) {
        if (h->upper[id] && node_level(h, id) > 0)
            bytes += (size_t)node_level(h, id) * h->upper_stride * 4;
    }
    return bytes;
}
