/*
 * topk.h - the k nearest of a stream of (distance, id) candidates.
 *
 * A bounded max-heap: its root is the worst of the best k seen so far, so
 * a candidate that is not better than the root is rejected with one
 * comparison (the common case once the heap is full).
 *
 * Equal distances are ordered by a caller-supplied tie-break, because the
 * order users see is by their external id, which only the caller can
 * resolve. It is called only on exact ties, which are rare.
 *
 * Any float may be pushed: infinities order as usual, and a NaN ranks
 * as +inf (after every finite distance), so no candidate is lost to a
 * comparison that is always false.
 */
#ifndef QV_ANN_TOPK_H
#define QV_ANN_TOPK_H

#include <stddef.h>
#include <stdint.h>

typedef struct topk_item {
    float dist;
    uint32_t id;
} topk_item;

/* <0 when a comes before b, >0 after; never 0 for distinct ids. */
typedef int (*topk_tiebreak)(void *ctx, uint32_t a, uint32_t b);

typedef struct topk {
    topk_item *items;
    size_t k, n;
    topk_tiebreak tiebreak;  /* NULL: order by id */
    void *tiebreak_ctx;
} topk;

/* Returns 0, or -1 when out of memory. */
int topk_init(topk *h, size_t k, topk_tiebreak tiebreak, void *ctx);
void topk_release(topk *h);

void topk_push_slow(topk *h, float dist, uint32_t id);

static inline void topk_push(topk *h, float dist, uint32_t id)
{
    /* false for NaN, which topk_push_slow ranks as +inf */
    if (h->n == h->k && dist > h->items[0].dist)
        return;
    topk_push_slow(h, dist, id);
}

/* Sort the kept items nearest first (ties by the tie-break), in place. */
void topk_sort(topk *h);

#endif
