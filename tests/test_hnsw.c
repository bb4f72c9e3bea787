/*
 * The HNSW index: graph invariants, recall against exact search on
 * generated data (always) and on Fashion-MNIST (when ../shared/data is
 * there), persistence without rebuild, deletes, replaced vectors, batch
 * search, another process's writes, and bad index parameters.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ann/hnsw.h"
#include "tests/test_util.h"

#define FMNIST "/../shared/data/fashion-mnist-784-euclidean/"

/* Clustered data: 20 centres in dim dimensions, points scattered round
 * them, which is closer to real embeddings than uniform noise. */
static float *clustered(uint64_t seed, size_t n, size_t dim)
{
    float *centres = malloc(20 * dim * sizeof *centres);
    float *v = malloc(n * dim * sizeof *v);
    tu_rand_vector(&seed, centres, 20 * dim);
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (tu_rand(&seed) % 20) * dim;
        for (size_t j = 0; j < dim; j++)
            v[i * dim + j] = c[j] + 0.3f * tu_randf(&seed);
    }
    free(centres);
    return v;
}

static void create(qv_db *db, const char *name, uint32_t dim, qv_metric m,
                   uint32_t M, uint32_t efc)
{
    qv_collection_config cfg = {.dim = dim, .metric = m, .M = M,
                                .ef_construction = efc};
    assert_ok(db, qv_create_collection(db, name, &cfg));
}

static void upsert_rows(qv_db *db, const char *name, const float *v,
                        size_t first, size_t n, size_t dim)
{
    qv_doc *docs = calloc(n, sizeof *docs);
    char (*ids)[16] = calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "%zu", first + i);
        docs[i] = (qv_doc){ids[i], v + (first + i) * dim, (uint32_t)dim, NULL};
    }
    assert_ok(db, qv_upsert(db, name, docs, n));
    free(docs);
    free(ids);
}

/* qv_check: the whole database, this collection's index included. */
static void assert_index_valid(qv_db *db, const char *name)
{
    char *report = NULL;
    qv_status st = qv_check(db, &report);
    if (st != QV_OK)
        fail_msg("check after changes to %s: %s", name,
                 report ? report : qv_errmsg(db));
    assert_non_null(strstr(report, "ok: "));
    qv_free(report);
}

/* recall@k of HNSW against exact search, over nq queries. */
static double recall(qv_db *db, const char *name, const float *queries,
                     size_t nq, size_t dim, uint32_t k, uint32_t ef)
{
    unsigned long hit = 0, total = 0;
    for (size_t i = 0; i < nq; i++) {
        const float *q = queries + i * dim;
        qv_hits *approx, *exact;
        assert_ok(db, qv_search(db, name, q, (uint32_t)dim,
                                &(qv_search_options){.k = k, .ef = ef},
                                &approx));
        assert_ok(db, qv_search(db, name, q, (uint32_t)dim,
                                &(qv_search_options){.k = k, .exact = 1},
                                &exact));
        assert_int_equal(approx->count, exact->count);
        for (size_t a = 0; a < approx->count; a++)
            for (size_t e = 0; e < exact->count; e++)
                hit += strcmp(approx->hits[a].id, exact->hits[e].id) == 0;
        total += exact->count;
        qv_free(approx);
        qv_free(exact);
    }
    return total ? (double)hit / (double)total : 1.0;
}

static int setup(void **state)
{
    qv_open_options oo = {.flags = QV_OPEN_NOSYNC, .threads = 2};
    return tu_setup(state, &oo);
}

/* ---- the graph alone ---- */

static void test_graph_invariants_through_inserts_and_removals(void **state)
{
    enum { N = 1500, D = 12 };
    hnsw_params p = {.dim = D, .M = 8, .ef_construction = 50,
                     .metric = HNSW_L2, .seed = 3};
    hnsw *h = hnsw_create(&p);
    hnsw_scratch *s = hnsw_scratch_create();
    float *v = clustered(11, N, D);
    char err[256];
    size_t orphans;
    assert_int_equal(hnsw_reserve(h, N), 0);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(hnsw_insert(h, s, i, v + i * D,
                                     hnsw_random_level(h, i, 0)), 0);
    assert_int_equal(hnsw_repair(h, s, &orphans), 0);
    if (hnsw_check(h, err, sizeof err) != 0)
        fail_msg("after inserts: %s", err);
    for (uint32_t i = 0; i < N; i += 3)
        assert_int_equal(hnsw_remove(h, s, i), 0);
    assert_int_equal(hnsw_repair(h, s, &orphans), 0);
    if (hnsw_check(h, err, sizeof err) != 0)
        fail_msg("after removals: %s", err);
    assert_int_equal(hnsw_count(h), N - (N + 2) / 3);
    /* the entry point itself removed, repeatedly */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(hnsw_remove(h, s, hnsw_entry(h)), 0);
        assert_int_equal(hnsw_repair(h, s, &orphans), 0);
        if (hnsw_check(h, err, sizeof err) != 0)
            fail_msg("after removing the entry point: %s", err);
    }
    /* reuse the removed slots */
    for (uint32_t i = 0; i < N; i += 3)
        assert_int_equal(hnsw_insert(h, s, i, v + i * D, 0), 0);
    assert_int_equal(hnsw_repair(h, s, &orphans), 0);
    if (hnsw_check(h, err, sizeof err) != 0)
        fail_msg("after reuse: %s", err);
    free(v);
    hnsw_scratch_free(s);
    hnsw_free(h);
}

static void test_parallel_inserts_keep_invariants(void **state)
{
    enum { N = 2000, D = 16 };
    hnsw_params p = {.dim = D, .M = 8, .ef_construction = 40,
                     .metric = HNSW_COSINE, .seed = 5};
    hnsw *h = hnsw_create(&p);
    float *v = clustered(12, N, D);
    uint32_t *ids = malloc(N * sizeof *ids);
    const float **vecs = malloc(N * sizeof *vecs);
    int *levels = malloc(N * sizeof *levels);
    for (uint32_t i = 0; i < N; i++) {
        ids[i] = i;
        vecs[i] = v + i * D;
        levels[i] = hnsw_random_level(h, i, 0);
    }
    assert_int_equal(hnsw_reserve(h, N), 0);
    assert_int_equal(hnsw_insert_parallel(h, ids, vecs, levels, N, 4), 0);
    hnsw_scratch *s = hnsw_scratch_create();
    size_t orphans;
    assert_int_equal(hnsw_repair(h, s, &orphans), 0);
    hnsw_scratch_free(s);
    char err[256];
    if (hnsw_check(h, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(hnsw_count(h), N);
    free(v);
    free(ids);
    free(vecs);
    free(levels);
    hnsw_free(h);
}

/* One insert or removal at a time with the incremental repair after
 * each: every node stays reachable throughout. */
static void test_reachable_after_each_single_change(void **state)
{
    enum { N = 2500, D = 8 };
    hnsw_params p = {.dim = D, .M = 4, .ef_construction = 16,
                     .metric = HNSW_L2, .seed = 9};
    hnsw *h = hnsw_create(&p);
    hnsw_scratch *s = hnsw_scratch_create();
    float *v = clustered(71, N, D);
    char err[256];
    size_t orphans, adopted = 0;
    assert_int_equal(hnsw_reserve(h, N), 0);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(hnsw_insert(h, s, i, v + i * D,
                                     hnsw_random_level(h, i, 0)), 0);
        assert_int_equal(hnsw_repair(h, s, &orphans), 0);
        adopted += orphans;
        if (i % 250 == 249 && hnsw_check(h, err, sizeof err) != 0)
            fail_msg("after insert %u: %s", i, err);
    }
    uint64_t rng = 4;
    for (int k = 0; k < 1200; k++) {
        uint32_t id = (uint32_t)(tu_rand(&rng) % N);
        assert_int_equal(hnsw_remove(h, s, id), 0);
        assert_int_equal(hnsw_repair(h, s, &orphans), 0);
        adopted += orphans;
        if (k % 100 == 99 && hnsw_check(h, err, sizeof err) != 0)
            fail_msg("after removal %d: %s", k, err);
    }
    printf("# %zu orphans adopted along the way\n", adopted);
    free(v);
    hnsw_scratch_free(s);
    hnsw_free(h);
}

/* hnsw_check, failing the test with its message. */
static void assert_graph_valid(const hnsw *h, const char *when)
{
    char err[256];
    if (hnsw_check(h, err, sizeof err) != 0)
        fail_msg("%s: %s", when, err);
}

/*
 * Rounds of churn as documents see it: each batch removes a random share
 * of the nodes, gives some of the freed slots new vectors and adds new
 * nodes, then repairs. After every batch the whole graph passes
 * hnsw_check, which for a graph written in this process also proves the
 * write side: the reverse lists hold exactly the lists' edges, and every
 * node has an in-neighbour labelled below it. The repairs stay local:
 * whole-graph walks happen only when the entry point changes (a new top
 * level or the top node removed), not once a batch.
 */
static void test_churn_keeps_every_invariant_locally(void **state)
{
    enum { N = 1200, D = 8, BATCHES = 60, SLOTS = 2 * N };
    hnsw_params p = {.dim = D, .M = 6, .ef_construction = 32,
                     .metric = HNSW_L2, .seed = 21};
    hnsw *h = hnsw_create(&p);
    hnsw_scratch *s = hnsw_scratch_create();
    float *v = clustered(31, SLOTS, D);
    uint64_t rng = 5;
    size_t orphans;
    uint32_t next = 0, entries = 0;
    assert_int_equal(hnsw_reserve(h, SLOTS), 0);
    for (; next < N; next++)
        assert_int_equal(hnsw_insert(h, s, next, v + next * D,
                                     hnsw_random_level(h, next, 0)), 0);
    assert_int_equal(hnsw_repair(h, s, &orphans), 0);
    assert_graph_valid(h, "after the first inserts");
    unsigned long walks = hnsw_walks(h);
    for (int b = 0; b < BATCHES; b++) {
        uint32_t entry = hnsw_entry(h);
        for (int i = 0; i < 40; i++) {
            uint32_t id = (uint32_t)(tu_rand(&rng) % next);
            assert_int_equal(hnsw_remove(h, s, id), 0);
            if (i % 2 == 0) {   /* a new vector in the freed slot */
                tu_rand_vector(&rng, v + id * D, D);
                assert_int_equal(hnsw_insert(h, s, id, v + id * D,
                                  hnsw_random_level(h, id, (uint64_t)b + 1)),
                                 0);
            }
        }
        for (int i = 0; i < 10 && next < SLOTS; i++, next++)
            assert_int_equal(hnsw_insert(h, s, next, v + next * D,
                                         hnsw_random_level(h, next, 0)), 0);
        assert_int_equal(hnsw_repair(h, s, &orphans), 0);
        assert_graph_valid(h, "after a batch of churn");
        entries += hnsw_entry(h) != entry;
    }
    printf("# %lu walks in %d batches, %u changes of entry point\n",
           hnsw_walks(h) - walks, BATCHES, entries);
    assert_true(hnsw_walks(h) - walks <= entries);
    free(v);
    hnsw_scratch_free(s);
    hnsw_free(h);
}

/* The ids of the nodes whose level-0 list holds one of ids[0..n) (from
 * their records), into out; returns how many. */
static size_t pointing_into(const hnsw *h, uint32_t slots, uint32_t lo,
                            uint32_t hi, uint32_t *out)
{
    size_t n = 0;
    unsigned char rec[4096];
    for (uint32_t id = 0; id < slots; id++) {
        if (!hnsw_contains(h, id) || (id >= lo && id < hi))
            continue;
        hnsw_record_write(h, id, rec);
        uint32_t count;
        memcpy(&count, rec + 4, 4);
        for (uint32_t i = 0; i < count; i++) {
            uint32_t nb;
            memcpy(&nb, rec + 8 + 4 * i, 4);
            if (nb >= lo && nb < hi) {
                out[n++] = id;
                break;
            }
        }
    }
    return n;
}

/*
 * A far cluster hangs from the rest by the few nodes that link into it.
 * Removing those nodes, again and again as the removals' relinks make
 * new ones, cuts the cluster off while its nodes still point at each
 * other, which in-degrees alone do not see. The local repair finds it
 * from the nodes that lost in-edges (their labels rise within the
 * cluster until one is adopted from outside) without a walk of the graph.
 */
static void test_local_repair_adopts_a_cut_off_group(void **state)
{
    enum { NA = 600, NB = 30, D = 4, N = NA + NB };
    hnsw_params p = {.dim = D, .M = 4, .ef_construction = 24,
                     .metric = HNSW_L2, .seed = 2};
    hnsw *h = hnsw_create(&p);
    hnsw_scratch *s = hnsw_scratch_create();
    float *v = malloc(N * D * sizeof *v);
    uint32_t *bridges = malloc(N * sizeof *bridges);
    uint64_t rng = 77;
    size_t orphans, adopted = 0;
    for (uint32_t i = 0; i < N; i++) {
        for (int j = 0; j < D; j++)
            v[i * D + j] = tu_randf(&rng) + (i >= NA ? 50.0f : 0.0f);
    }
    assert_int_equal(hnsw_reserve(h, N), 0);
    /* level 0 for all: no upper level leads into the cluster either */
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(hnsw_insert(h, s, i, v + i * D, 0), 0);
    assert_int_equal(hnsw_repair(h, s, &orphans), 0);
    assert_graph_valid(h, "after the inserts");
    unsigned long walks = hnsw_walks(h);
    for (int round = 0; round < 20; round++) {
        size_t n = pointing_into(h, N, NA, N, bridges);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            if (bridges[i] != hnsw_entry(h))
                assert_int_equal(hnsw_remove(h, s, bridges[i]), 0);
        }
        assert_int_equal(hnsw_repair(h, s, &orphans), 0);
        adopted += orphans;
        assert_graph_valid(h, "after removing the bridges");
    }
    printf("# %zu adopted, %lu walks\n", adopted, hnsw_walks(h) - walks);
    assert_true(adopted > 0);
    assert_int_equal(hnsw_walks(h) - walks, 0);
    free(v);
    free(bridges);
    hnsw_scratch_free(s);
    hnsw_free(h);
}

/*
 * A graph written in memory and the one loaded from its records are the
 * same graph: the same records byte for byte, and once the loaded one
 * has rebuilt its write side (the first repair) it passes hnsw_check,
 * reverse lists and labels included, and repairing it changes nothing.
 */
static void test_loaded_graph_equals_the_written_one(void **state)
{
    enum { N = 900, D = 6 };
    hnsw_params p = {.dim = D, .M = 5, .ef_construction = 30,
                     .metric = HNSW_L2, .seed = 8};
    hnsw *h = hnsw_create(&p), *g = hnsw_create(&p);
    hnsw_scratch *s = hnsw_scratch_create();
    float *v = clustered(41, N, D);
    unsigned char a[4096], b[4096];
    uint64_t rng = 3;
    size_t orphans;
    assert_int_equal(hnsw_reserve(h, N), 0);
    assert_int_equal(hnsw_reserve(g, N), 0);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(hnsw_insert(h, s, i, v + i * D,
                                     hnsw_random_level(h, i, 0)), 0);
    for (int i = 0; i < 300; i++)
        assert_int_equal(hnsw_remove(h, s, (uint32_t)(tu_rand(&rng) % N)),
                         0);
    assert_int_equal(hnsw_repair(h, s, &orphans), 0);
    for (uint32_t i = 0; i < N; i++) {
        if (!hnsw_contains(h, i))
            continue;
        size_t len = hnsw_record_size(h, i);
        assert_true(len <= sizeof a);
        hnsw_record_write(h, i, a);
        assert_int_equal(hnsw_record_load(g, i, hnsw_element(h, i), a, len),
                         0);
    }
    hnsw_set_entry(g, hnsw_entry(h), hnsw_max_level(h));
    assert_int_equal(hnsw_count(g), hnsw_count(h));
    hnsw_dirty_clear(g);
    assert_int_equal(hnsw_repair(g, s, &orphans), 0);
    assert_int_equal(orphans, 0);
    assert_int_equal(hnsw_dirty_count(g), 0);
    assert_graph_valid(g, "the loaded graph");
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(hnsw_contains(g, i), hnsw_contains(h, i));
        if (!hnsw_contains(h, i))
            continue;
        assert_int_equal(hnsw_record_size(g, i), hnsw_record_size(h, i));
        hnsw_record_write(h, i, a);
        hnsw_record_write(g, i, b);
        assert_memory_equal(a, b, hnsw_record_size(h, i));
    }
    free(v);
    hnsw_scratch_free(s);
    hnsw_free(h);
    hnsw_free(g);
}

/*
 * Build a graph of the n vectors v one thread, repairing after every
 * batch as a write does; returns the distances the walks of the inserts
 * and of the repairs computed, *adopted the orphans the repairs adopted.
 * The graph must pass hnsw_check.
 */
static unsigned long build_and_count(const char *what, const float *v,
                                     size_t n, size_t dim, size_t *adopted)
{
    enum { BATCH = 100 };
    hnsw_params p = {.dim = (uint32_t)dim, .M = 8, .ef_construction = 64,
                     .metric = HNSW_L2, .seed = 13};
    hnsw *h = hnsw_create(&p);
    hnsw_scratch *s = hnsw_scratch_create();
    unsigned long distances = 0;
    size_t orphans;
    char err[256];
    *adopted = 0;
    assert_int_equal(hnsw_reserve(h, (uint32_t)n), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(hnsw_insert(h, s, i, v + i * dim,
                                     hnsw_random_level(h, i, 0)), 0);
        if (i % BATCH == BATCH - 1 || i + 1 == n) {
            assert_int_equal(hnsw_repair(h, s, &orphans), 0);
            *adopted += orphans;
        }
    }
    distances = hnsw_scratch_distances(s);
    printf("# %s: %.0f distances an insert, %zu orphans adopted\n", what,
           (double)distances / (double)n, *adopted);
    if (hnsw_check(h, err, sizeof err) != 0)
        fail_msg("%s: %s", what, err);
    hnsw_scratch_free(s);
    hnsw_free(h);
    return distances;
}

/*
 * Identical vectors tie at every distance: their inserts must cost no
 * more work than distinct vectors (the ties once made every new copy an
 * orphan that each repair searched for again, and left it unreachable),
 * and the graph must stay whole. Work is counted in distances, not time.
 */
static void test_duplicates_cost_what_distinct_vectors_cost(void **state)
{
    enum { N = 3000, D = 4 };
    float *v = malloc(N * D * sizeof *v), values[10][D];
    uint64_t rng = 17;
    size_t adopted;
    tu_rand_vector(&rng, v, N * D);
    unsigned long distinct = build_and_count("distinct", v, N, D, &adopted);
    for (size_t i = 0; i < N * D; i++)
        v[i] = i % D == D - 1;              /* every row [0, 0, 0, 1] */
    unsigned long same = build_and_count("one value", v, N, D, &adopted);
    assert_true(same <= 2 * distinct);
    assert_true(adopted <= N / 100);
    tu_rand_vector(&rng, &values[0][0], 10 * D);
    for (size_t i = 0; i < N; i++)
        memcpy(v + i * D, values[tu_rand(&rng) % 10], sizeof values[0]);
    unsigned long ten = build_and_count("ten values", v, N, D, &adopted);
    assert_true(ten <= 2 * distinct);
    assert_true(adopted <= N / 100);
    free(v);
}

/* ---- through the API ---- */

static void check_generated_recall(qv_db *db, qv_metric metric)
{
    enum { N = 3000, D = 24, NQ = 100 };
    const char *name = qv_metric_name(metric);
    float *v = clustered(100 + metric, N + NQ, D);
    create(db, name, D, metric, 16, 100);
    for (size_t first = 0; first < N; first += 500)
        upsert_rows(db, name, v, first, 500, D);
    assert_index_valid(db, name);
    double r = recall(db, name, v + (size_t)N * D, NQ, D, 10, 64);
    if (r < 0.95)
        fail_msg("%s recall@10 at ef=64 is %.3f, below 0.95", name, r);
    free(v);
}

static void test_recall_generated_l2(void **state)
{
    check_generated_recall(((struct tu_fixture *)*state)->db, QV_METRIC_L2);
}

static void test_recall_generated_ip_and_cosine(void **state)
{
    check_generated_recall(((struct tu_fixture *)*state)->db, QV_METRIC_COSINE);
    check_generated_recall(((struct tu_fixture *)*state)->db, QV_METRIC_IP);
}

/* Read the first n rows of a .bvecs file as floats; NULL if absent. */
static float *read_bvecs(const char *path, size_t n, size_t dim)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *v = malloc(n * dim * sizeof *v);
    unsigned char row[784];
    for (size_t i = 0; i < n; i++) {
        int32_t d;
        if (fread(&d, 4, 1, f) != 1 || d != (int32_t)dim ||
            fread(row, 1, dim, f) != dim) {
            free(v);
            fclose(f);
            return NULL;
        }
        for (size_t j = 0; j < dim; j++)
            v[i * dim + j] = row[j];
    }
    fclose(f);
    return v;
}

/* Real data when the shared folder is there: 4,000 Fashion-MNIST images. */
static void test_recall_fashion_mnist_subset(void **state)
{
    enum { N = 4000, NQ = 100, D = 784 };
    const char *top = getenv("QUIVER_TOP");
    char base[4096], query[4096];
    snprintf(base, sizeof base, "%s%sbase.bvecs", top ? top : ".", FMNIST);
    snprintf(query, sizeof query, "%s%squery.bvecs", top ? top : ".", FMNIST);
    float *v = read_bvecs(base, N, D), *q = read_bvecs(query, NQ, D);
    if (!v || !q) {
        free(v);
        free(q);
        printf("# SKIP Fashion-MNIST not found at %s; the generated sets "
               "cover the same path\n", base);
        skip();
    }
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "fmnist", D, QV_METRIC_L2, 16, 100);
    for (size_t first = 0; first < N; first += 1000)
        upsert_rows(db, "fmnist", v, first, 1000, D);
    assert_index_valid(db, "fmnist");
    double r = recall(db, "fmnist", q, NQ, D, 10, 64);
    if (r < 0.97)
        fail_msg("Fashion-MNIST recall@10 at ef=64 is %.3f, below 0.97", r);
    free(v);
    free(q);
}

/* The graph is read back, not rebuilt: same answers, same invariants. */
static void test_index_survives_reopen(void **state)
{
    enum { N = 1500, D = 16, NQ = 20 };
    struct tu_fixture *f = *state;
    float *v = clustered(21, N + NQ, D);
    create(f->db, "p", D, QV_METRIC_L2, 8, 60);
    upsert_rows(f->db, "p", v, 0, N, D);
    qv_hits *before[NQ];
    for (int i = 0; i < NQ; i++)
        assert_ok(f->db, qv_search(f->db, "p", v + (N + i) * D, D,
                                   &(qv_search_options){.k = 10, .ef = 20},
                                   &before[i]));
    qv_close(f->db);
    assert_ok(NULL, qv_open(f->dir, NULL, &f->db));
    assert_index_valid(f->db, "p");
    for (int i = 0; i < NQ; i++) {
        qv_hits *after;
        assert_ok(f->db, qv_search(f->db, "p", v + (N + i) * D, D,
                                   &(qv_search_options){.k = 10, .ef = 20},
                                   &after));
        assert_int_equal(after->count, before[i]->count);
        for (size_t j = 0; j < after->count; j++)
            assert_string_equal(after->hits[j].id, before[i]->hits[j].id);
        qv_free(after);
        qv_free(before[i]);
    }
    free(v);
}

/* 10% deleted: none comes back, recall holds, the graph stays valid, and
 * later inserts reuse the space. */
static void test_deletes_are_never_returned(void **state)
{
    enum { N = 2000, D = 16, NQ = 50 };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    float *v = clustered(31, N + NQ, D);
    create(db, "del", D, QV_METRIC_L2, 12, 80);
    upsert_rows(db, "del", v, 0, N, D);
    char id[16];
    for (int i = 0; i < N; i += 10) {
        snprintf(id, sizeof id, "%d", i);
        assert_ok(db, qv_delete(db, "del", id));
    }
    assert_index_valid(db, "del");
    for (int qi = 0; qi < NQ; qi++) {
        qv_hits *hits;
        assert_ok(db, qv_search(db, "del", v + (N + qi) * D, D,
                                &(qv_search_options){.k = 50, .ef = 100},
                                &hits));
        assert_int_equal(hits->count, 50);
        for (size_t j = 0; j < hits->count; j++)
            assert_int_not_equal(atoi(hits->hits[j].id) % 10, 0);
        qv_free(hits);
    }
    /* searching for a deleted vector itself does not find it */
    qv_hits *hits;
    assert_ok(db, qv_search(db, "del", v + 20 * D, D,
                            &(qv_search_options){.k = 1}, &hits));
    assert_string_not_equal(hits->hits[0].id, "20");
    qv_free(hits);
    double r = recall(db, "del", v + (size_t)N * D, NQ, D, 10, 64);
    if (r < 0.95)
        fail_msg("recall after deletes is %.3f, below 0.95", r);
    upsert_rows(db, "del", v, 0, 10, D);  /* re-adds "0": a reused slot */
    assert_index_valid(db, "del");
    assert_ok(db, qv_search(db, "del", v, D, &(qv_search_options){.k = 1},
                            &hits));
    assert_string_equal(hits->hits[0].id, "0");
    qv_free(hits);
    free(v);
}

/* Search vector value (one of the copies' values) for k; expect count
 * hits, the first zeros of them at distance 0, none of a deleted id
 * (below deleted_below). */
static void expect_copies(qv_db *db, const float *value, uint32_t k,
                          uint32_t ef, size_t count, size_t zeros,
                          int deleted_below)
{
    qv_hits *hits;
    assert_ok(db, qv_search(db, "copies", value, 4,
                            &(qv_search_options){.k = k, .ef = ef}, &hits));
    assert_int_equal(hits->count, count);
    for (size_t i = 0; i < hits->count; i++) {
        if ((i < zeros) != (hits->hits[i].distance == 0.0f))
            fail_msg("k=%u ef=%u: hit %zu at distance %g", k, ef, i,
                     (double)hits->hits[i].distance);
        assert_true(atoi(hits->hits[i].id) >= deleted_below);
    }
    qv_free(hits);
}

/* Many exact copies of a few vectors: a search finds k of them whenever
 * k exist, before and after deletes of copies, and the graph stays whole
 * (every document reachable: a search with k = all returns all). */
static void test_search_among_copies_returns_k_hits(void **state)
{
    enum { N = 1200, COMMON = 1000, D = 4 };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    float *v = malloc(N * D * sizeof *v);
    /* rows 0..999: [0, 0, 0, 1]; then 50 copies each of four others */
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < D; j++)
            v[i * D + j] = i < COMMON ? j == D - 1
                                      : (float)((i - COMMON) / 50 + 2) * (j + 1);
    create(db, "copies", D, QV_METRIC_L2, 8, 40);
    for (size_t first = 0; first < N; first += 300)
        upsert_rows(db, "copies", v, first, 300, D);
    assert_index_valid(db, "copies");
    const float *common = v, *rare = v + COMMON * D;
    expect_copies(db, common, 10, 64, 10, 10, 0);
    expect_copies(db, common, 300, 300, 300, 300, 0);
    expect_copies(db, rare, 50, 16, 50, 50, 0);
    expect_copies(db, rare, 60, 64, 60, 50, 0);
    expect_copies(db, common, N, N, N, COMMON, 0);
    /* delete 900 of the common copies and 40 of the first rare group */
    char id[16];
    for (int i = 0; i < 900; i++) {
        snprintf(id, sizeof id, "%d", i);
        assert_ok(db, qv_delete(db, "copies", id));
    }
    for (int i = COMMON; i < COMMON + 40; i++) {
        snprintf(id, sizeof id, "%d", i);
        assert_ok(db, qv_delete(db, "copies", id));
    }
    assert_index_valid(db, "copies");
    expect_copies(db, common, 100, 64, 100, 100, 900);
    expect_copies(db, common, 150, 150, 150, 100, 900);
    expect_copies(db, rare, 20, 64, 20, 10, 0);
    expect_copies(db, common, N, N, N - 940, 100, 900);
    free(v);
}

/* A document's new vector moves it in the index. */
static void test_replaced_vector_moves_the_document(void **state)
{
    enum { N = 500, D = 8 };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    float *v = clustered(41, N, D);
    create(db, "mv", D, QV_METRIC_L2, 8, 40);
    upsert_rows(db, "mv", v, 0, N, D);
    float far[D];
    for (int i = 0; i < D; i++)
        far[i] = 50.0f;
    qv_doc doc = {"7", far, D, NULL};
    assert_ok(db, qv_upsert(db, "mv", &doc, 1));
    qv_hits *hits;
    assert_ok(db, qv_search(db, "mv", far, D, &(qv_search_options){.k = 1},
                            &hits));
    assert_string_equal(hits->hits[0].id, "7");
    assert_true(hits->hits[0].distance == 0.0f);
    qv_free(hits);
    assert_ok(db, qv_search(db, "mv", v + 7 * D, D,
                            &(qv_search_options){.k = 1}, &hits));
    assert_string_not_equal(hits->hits[0].id, "7");
    qv_free(hits);
    /* the same upsert again (unchanged vector) leaves the index alone */
    assert_ok(db, qv_upsert(db, "mv", &doc, 1));
    assert_index_valid(db, "mv");
    free(v);
}

/* A new id given twice in one batch with the same vector is indexed once
 * (the crash test found it missing from the graph). */
static void test_repeated_id_in_a_batch_is_indexed(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    float v[4] = {1, 2, 3, 4}, w[4] = {4, 3, 2, 1};
    create(db, "rep", 4, QV_METRIC_L2, 8, 40);
    qv_doc docs[3] = {{"x", v, 4, NULL}, {"y", w, 4, NULL}, {"x", v, 4, NULL}};
    assert_ok(db, qv_upsert(db, "rep", docs, 3));
    assert_index_valid(db, "rep");
    qv_hits *hits;
    assert_ok(db, qv_search(db, "rep", v, 4, &(qv_search_options){.k = 1},
                            &hits));
    assert_string_equal(hits->hits[0].id, "x");
    qv_free(hits);
}

static void test_batch_search_matches_single_searches(void **state)
{
    enum { N = 1000, D = 16, NQ = 40 };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    float *v = clustered(51, N + NQ, D);
    create(db, "batch", D, QV_METRIC_COSINE, 8, 60);
    upsert_rows(db, "batch", v, 0, N, D);
    qv_search_options opt = {.k = 7, .ef = 32, .threads = 3};
    qv_batch_hits *b;
    assert_ok(db, qv_search_batch(db, "batch", v + (size_t)N * D, NQ, D, &opt,
                                  &b));
    assert_int_equal(b->count, NQ);
    for (int i = 0; i < NQ; i++) {
        qv_hits *one;
        assert_ok(db, qv_search(db, "batch", v + (N + i) * D, D, &opt, &one));
        assert_int_equal(one->count, b->results[i].count);
        for (size_t j = 0; j < one->count; j++) {
            assert_string_equal(one->hits[j].id, b->results[i].hits[j].id);
            assert_true(one->hits[j].distance ==
                        b->results[i].hits[j].distance);
        }
        qv_free(one);
    }
    qv_free(b);
    opt.exact = 1;
    assert_ok(db, qv_search_batch(db, "batch", v, 3, D, &opt, &b));
    assert_string_equal(b->results[2].hits[0].id, "2");
    qv_free(b);
    float bad[2 * D];
    memcpy(bad, v, sizeof bad);
    bad[D + 3] = NAN;
    assert_status(db, qv_search_batch(db, "batch", bad, 2, D, &opt, &b),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "query 1"));
    assert_status(db, qv_search_batch(db, "batch", bad, 0, D, &opt, &b),
                  QV_ERR_INVALID);
    free(v);
}

static void test_bad_index_parameters(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    qv_collection_config cfg = {.dim = 4, .M = 1};
    assert_status(db, qv_create_collection(db, "x", &cfg), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "M must be"));
    cfg.M = QV_M_MAX + 1;
    assert_status(db, qv_create_collection(db, "x", &cfg), QV_ERR_INVALID);
    cfg.M = 0;
    cfg.ef_construction = QV_EF_MAX + 1;
    assert_status(db, qv_create_collection(db, "x", &cfg), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "ef_construction"));
    cfg.ef_construction = 0;
    assert_ok(db, qv_create_collection(db, "x", &cfg));
    qv_collection_info info;
    assert_ok(db, qv_describe_collection(db, "x", &info));
    assert_int_equal(info.M, 16);                 /* the defaults */
    assert_int_equal(info.ef_construction, 200);
    float q[4] = {1, 2, 3, 4};
    qv_hits *hits = NULL;
    assert_status(db, qv_search(db, "x", q, 4,
                                &(qv_search_options){.k = 1,
                                                     .ef = QV_EF_MAX + 1},
                                &hits), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "ef must be"));
    assert_null(hits);
}

/* Another process adds documents: this process's graph notices and
 * reloads, so its searches find them. */
static void test_other_process_writes_are_searchable(void **state)
{
    enum { N = 600, D = 8 };
    struct tu_fixture *f = *state;
    float *v = clustered(61, 2 * N, D);
    create(f->db, "mp", D, QV_METRIC_L2, 8, 40);
    upsert_rows(f->db, "mp", v, 0, N, D);
    qv_hits *hits;
    assert_ok(f->db, qv_search(f->db, "mp", v, D,
                               &(qv_search_options){.k = 1}, &hits));
    qv_free(hits);  /* the graph is now in this process's memory */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        qv_db *db;
        int ok = qv_open(f->dir, NULL, &db) == QV_OK;
        for (size_t first = N; ok && first < 2 * N; first += 100) {
            qv_doc docs[100];
            char ids[100][16];
            for (int i = 0; i < 100; i++) {
                snprintf(ids[i], sizeof ids[i], "%zu", first + i);
                docs[i] = (qv_doc){ids[i], v + (first + i) * D, D, NULL};
            }
            ok = qv_upsert(db, "mp", docs, 100) == QV_OK;
        }
        ok = ok && qv_delete(db, "mp", "0") == QV_OK;
        qv_close(db);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = N; i < 2 * N; i += 50) {
        assert_ok(f->db, qv_search(f->db, "mp", v + i * D, D,
                                   &(qv_search_options){.k = 1}, &hits));
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        assert_string_equal(hits->hits[0].id, id);
        qv_free(hits);
    }
    assert_ok(f->db, qv_search(f->db, "mp", v, D,
                               &(qv_search_options){.k = 1}, &hits));
    assert_string_not_equal(hits->hits[0].id, "0");
    qv_free(hits);
    assert_index_valid(f->db, "mp");
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, tu_teardown)
        cmocka_unit_test(test_graph_invariants_through_inserts_and_removals),
        cmocka_unit_test(test_parallel_inserts_keep_invariants),
        cmocka_unit_test(test_reachable_after_each_single_change),
        cmocka_unit_test(test_churn_keeps_every_invariant_locally),
        cmocka_unit_test(test_local_repair_adopts_a_cut_off_group),
        cmocka_unit_test(test_loaded_graph_equals_the_written_one),
        cmocka_unit_test(test_duplicates_cost_what_distinct_vectors_cost),
        T(test_recall_generated_l2),
        T(test_recall_generated_ip_and_cosine),
        T(test_recall_fashion_mnist_subset),
        T(test_index_survives_reopen),
        T(test_deletes_are_never_returned),
        T(test_search_among_copies_returns_k_hits),
        T(test_replaced_vector_moves_the_document),
        T(test_repeated_id_in_a_batch_is_indexed),
        T(test_batch_search_matches_single_searches),
        T(test_bad_index_parameters),
        T(test_other_process_writes_are_searchable),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
