/* The bounded heap against a full sort of the same stream. */
#include <math.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "ann/topk.h"
#include "tests/test_util.h"

static int by_dist_then_id(const void *pa, const void *pb)
{
    const topk_item *a = pa, *b = pb;
    if (a->dist != b->dist)
        return a->dist < b->dist ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Distances are drawn from a small set so that ties are frequent. */
static void check_stream(size_t n, size_t k, uint64_t seed)
{
    topk_item *all = malloc(n * sizeof *all);
    topk heap;
    assert_int_equal(topk_init(&heap, k, NULL, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        all[i].dist = (float)(tu_rand(&seed) % 50);
        all[i].id = (uint32_t)i;
        topk_push(&heap, all[i].dist, all[i].id);
    }
    qsort(all, n, sizeof *all, by_dist_then_id);
    topk_sort(&heap);
    size_t expect = k < n ? k : n;
    assert_int_equal(heap.n, expect);
    for (size_t i = 0; i < expect; i++) {
        assert_true(heap.items[i].dist == all[i].dist);
        assert_int_equal(heap.items[i].id, all[i].id);
    }
    topk_release(&heap);
    free(all);
}

static void test_matches_sort(void **state)
{
    check_stream(1000, 10, 1);
    check_stream(1000, 1, 2);
    check_stream(5, 10, 3);     /* fewer candidates than k */
    check_stream(2000, 2000, 4);
    check_stream(0, 3, 5);
}

/* A tie-break that orders ids in reverse. */
static int reverse_ids(void *ctx, uint32_t a, uint32_t b)
{
    (*(int *)ctx)++;
    return a > b ? -1 : 1;
}

static void test_tiebreak_callback_orders_equal_distances(void **state)
{
    topk heap;
    int calls = 0;
    assert_int_equal(topk_init(&heap, 3, reverse_ids, &calls), 0);
    for (uint32_t id = 0; id < 10; id++)
        topk_push(&heap, 1.0f, id);
    topk_sort(&heap);
    assert_int_equal(heap.items[0].id, 9);
    assert_int_equal(heap.items[1].id, 8);
    assert_int_equal(heap.items[2].id, 7);
    assert_true(calls > 0);
    topk_release(&heap);
}

/* Infinite and NaN distances keep their candidates: NaN ranks as +inf,
 * after every finite distance, and the heap stays ordered around them. */
static void test_non_finite_distances_keep_their_place(void **state)
{
    static const float dists[] = {NAN, 3, INFINITY, 1, NAN, -INFINITY, 2,
                                  NAN, 0, INFINITY};
    size_t n = sizeof dists / sizeof *dists;
    for (size_t k = 1; k <= n + 1; k++) {
        topk heap;
        assert_int_equal(topk_init(&heap, k, NULL, NULL), 0);
        for (size_t i = 0; i < n; i++)
            topk_push(&heap, dists[i], (uint32_t)i);
        topk_sort(&heap);
        /* -inf(5), 0(8), 1(3), 2(6), 3(1), then +inf and NaN by id: 0, 2,
         * 4, 7, 9 */
        static const uint32_t order[] = {5, 8, 3, 6, 1, 0, 2, 4, 7, 9};
        assert_int_equal(heap.n, k < n ? k : n);
        for (size_t i = 0; i < heap.n; i++) {
            assert_int_equal(heap.items[i].id, order[i]);
            assert_false(isnan(heap.items[i].dist));
        }
        topk_release(&heap);
    }
}

static void test_init_reports_out_of_memory(void **state)
{
    topk heap;
    qv_alloc_fail_at(1, 0);
    assert_int_equal(topk_init(&heap, 10, NULL, NULL), -1);
    topk_release(&heap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_sort),
        cmocka_unit_test(test_tiebreak_callback_orders_equal_distances),
        cmocka_unit_test(test_non_finite_distances_keep_their_place),
        cmocka_unit_test(test_init_reports_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
