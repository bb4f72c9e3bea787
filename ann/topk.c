#include "ann/topk.h"

#include <math.h>

#include "common/alloc.h"

int topk_init(topk *h, size_t k, topk_tiebreak tiebreak, void *ctx)
{
    h->items = qv_malloc(k * sizeof *h->items);
    h->k = k;
    h->n = 0;
    h->tiebreak = tiebreak;
    h->tiebreak_ctx = ctx;
    return h->items ? 0 : -1;
}

void topk_release(topk *h)
{
    qv_mem_free(h->items);
    h->items = NULL;
    h->n = 0;
}

/* True when a ranks after b (a is the worse of the two). */
static int ranks_after(const topk *h, topk_item a, topk_item b)
{
    if (a.dist != b.dist)
        return a.dist > b.dist;
    if (h->tiebreak)
        return h->tiebreak(h->tiebreak_ctx, a.id, b.id) > 0;
    return a.id > b.id;
}

static void sift_down(topk *h, size_t i, size_t n)
{
    topk_item *it = h->items;
    for (;;) {
        size_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_after(h, it[l], it[worst]))
            worst = l;
        if (r < n && ranks_after(h, it[r], it[worst]))
            worst = r;
        if (worst == i)
            return;
        topk_item t = it[i];
        it[i] = it[worst];
        it[worst] = t;
        i = worst;
    }
}

static void sift_up(topk *h, size_t i)
{
    topk_item *it = h->items;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ranks_after(h, it[i], it[parent]))
            return;
        topk_item t = it[i];
        it[i] = it[parent];
        it[parent] = t;
        i = parent;
    }
}

void topk_push_slow(topk *h, float dist, uint32_t id)
{
    /* NaN compares false with everything, which would break the heap's
     * order and drop candidates at random: it ranks last instead, like
     * +inf. (topk_push's one comparison sends NaN here.) Quiver's own
     * distances are finite (quiver.h, "Which vectors"). */
    if (isnan(dist))
        dist = INFINITY;
    topk_item cand = {dist, id};
    if (h->n < h->k) {
        h->items[h->n] = cand;
        sift_up(h, h->n++);
        return;
    }
    if (!ranks_after(h, h->items[0], cand))
        return;
    h->items[0] = cand;
    sift_down(h, 0, h->n);
}

void topk_sort(topk *h)
{
    /* Heap sort: move the worst to the end until the heap is empty. */
    for (size_t end = h->n; end > 1; end--) {
        topk_item t = h->items[0];
        h->items[0] = h->items[end - 1];
        h->items[end - 1] = t;
        sift_down(h, 0, end - 1);
    }
}
