/*
 * test_codec.c - vector codecs (ann/codec.c) and collections that use
 * them: round trips within each codec's error bound, code distances
 * against brute force on the decoded vectors, training determinism,
 * stored parameters, and through the API (embedded, and remote under
 * QUIVER_TEST_REMOTE): exact scans before training, re-ranking over the
 * whole set equal to exact search for every codec and metric, codes and
 * codebooks surviving reopen, updates and deletes, io_uring and pread
 * giving the same hits, read errors reported, bad input refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ann/codec.h"
#include "ann/distance.h"
#include "storage/reader.h"
#include "tests/test_util.h"

#define DIM 32
#define N 1000

/* Clustered data: 8 centres plus noise, so that codecs have structure. */
static float *make_data(size_t n, uint32_t dim, uint64_t seed)
{
    float *v = malloc(n * dim * sizeof *v);
    float centres[8][64];
    uint64_t s = seed;
    for (int c = 0; c < 8; c++)
        for (uint32_t d = 0; d < dim; d++)
            centres[c][d] = tu_randf(&s) * 4;
    for (size_t i = 0; i < n; i++)
        for (uint32_t d = 0; d < dim; d++)
            v[i * dim + d] = centres[i % 8][d] + tu_randf(&s) * 0.5f;
    return v;
}

static codec *train(const char *text, uint32_t dim, int dot, const float *v,
                    size_t n)
{
    codec_spec spec;
    char err[128];
    assert_int_equal(codec_parse(text, dim, &spec, err, sizeof err), 0);
    codec *c = codec_train(&spec, dim, dot, v, n, 42, 2);
    assert_non_null(c);
    return c;
}

static void test_parse_refuses_bad_specs(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "zz", "pq", "pq:", "pq:0",
                                      "pq:5", "pq:x", "pq:-1", "sq8:2",
                                      "prune", "prune:0", "prune:33",
                                      "bin:1", "f16:2", "none:1", "pq:4x"};
    codec_spec spec;
    char err[128];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        if (codec_parse(bad[i], DIM, &spec, err, sizeof err) == 0)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(strlen(err) > 0);
    }
    static const char *const good[] = {"none", "f16", "sq8", "pq:8", "pq:32",
                                       "bin", "prune:1", "prune:32"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        assert_int_equal(codec_parse(good[i], DIM, &spec, err, sizeof err),
                         0);
        char text[CODEC_SPEC_MAX];
        codec_format(&spec, text);
        assert_string_equal(text, good[i]);
    }
}

/* Round trips: each codec's own error bound. */
static void test_round_trips(void **state)
{
    (void)state;
    float *v = make_data(N, DIM, 1);
    float out[DIM];
    uint8_t code[DIM * 6];
    /* f16: relative error of half precision */
    codec *c = train("f16", DIM, 0, v, N);
    for (size_t i = 0; i < N; i++) {
        codec_encode(c, v + i * DIM, code);
        codec_decode(c, code, out);
        for (int d = 0; d < DIM; d++)
            assert_true(fabsf(out[d] - v[i * DIM + d]) <=
                        fabsf(v[i * DIM + d]) * 1e-3f + 1e-6f);
    }
    codec_free(c);
    /* sq8: half a step inside the trained range, the clip outside */
    c = train("sq8", DIM, 0, v, N);
    float lo[DIM], hi[DIM];
    for (int d = 0; d < DIM; d++) {
        uint8_t zero[DIM] = {0}, full[DIM];
        memset(full, 255, sizeof full);
        codec_decode(c, zero, out);
        lo[d] = out[d];
        codec_decode(c, full, out);
        hi[d] = out[d];
    }
    for (size_t i = 0; i < N; i++) {
        codec_encode(c, v + i * DIM, code);
        codec_decode(c, code, out);
        for (int d = 0; d < DIM; d++) {
            float x = v[i * DIM + d], step = (hi[d] - lo[d]) / 255;
            float want = x < lo[d] ? lo[d] : x > hi[d] ? hi[d] : x;
            assert_true(fabsf(out[d] - want) <= step * 0.5f + 1e-4f);
        }
    }
    codec_free(c);
    /* pq: a decoded vector is the nearest centroid in each sub-space, so
     * it is no farther than any other code's decoding */
    c = train("pq:8", DIM, 0, v, N);
    double err = 0, var = 0;
    for (size_t i = 0; i < N; i++) {
        codec_encode(c, v + i * DIM, code);
        codec_decode(c, code, out);
        err += dist_l2sq(out, v + i * DIM, DIM);
        var += dist_l2sq(v + i * DIM, v + ((i + 1) % N) * DIM, DIM) / 2;
        uint8_t other[8];
        memcpy(other, code, 8);
        other[i % 8] ^= 1;
        float alt[DIM];
        codec_decode(c, other, alt);
        assert_true(dist_l2sq(out, v + i * DIM, DIM) <=
                    dist_l2sq(alt, v + i * DIM, DIM) + 1e-4f);
    }
    assert_true(err < 0.2 * var);   /* well below the data's spread */
    codec_free(c);
    /* bin: each bit is the side of the mean, and decoding keeps it */
    c = train("bin", DIM, 0, v, N);
    for (size_t i = 0; i < N; i++) {
        codec_encode(c, v + i * DIM, code);
        codec_decode(c, code, out);
        uint8_t again[DIM / 8];
        codec_encode(c, out, again);
        assert_memory_equal(code, again, DIM / 8);
    }
    codec_free(c);
    /* prune: the K largest magnitudes exactly, zeros elsewhere */
    c = train("prune:5", DIM, 0, v, N);
    for (size_t i = 0; i < N; i++) {
        const float *x = v + i * DIM;
        codec_encode(c, x, code);
        codec_decode(c, code, out);
        int kept = 0;
        for (int d = 0; d < DIM; d++) {
            if (out[d] == 0)
                continue;
            kept++;
            assert_true(out[d] == x[d]);
            int larger = 0;
            for (int e = 0; e < DIM; e++)
                larger += fabsf(x[e]) > fabsf(x[d]);
            assert_true(larger < 5);
        }
        assert_true(kept <= 5);
    }
    codec_free(c);
    free(v);
}

static float brute(const float *a, const float *b, int dot)
{
    return dot ? 1.0f - dist_dot(a, b, DIM) : dist_l2sq(a, b, DIM);
}

static int popcount_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += __builtin_popcount((unsigned)(a[i] ^ b[i]));
    return bits;
}

/* Query and code distances equal brute force on the decoded vectors. */
static void test_distances_match_brute_force(void **state)
{
    (void)state;
    static const char *const names[] = {"f16", "sq8", "pq:8", "pq:32", "bin",
                                        "prune:7"};
    float *v = make_data(N, DIM, 2);
    for (size_t ci = 0; ci < sizeof names / sizeof *names; ci++) {
        for (int dot = 0; dot < 2; dot++) {
            codec *c = train(names[ci], DIM, dot, v, N);
            int bin = codec_get_spec(c)->kind == CODEC_BIN;
            void *qbuf = malloc(codec_query_bytes(c));
            uint8_t a[DIM * 6], b[DIM * 6], qcode[DIM];
            float da[DIM], db[DIM];
            for (size_t i = 0; i < 200; i++) {
                const float *q = v + ((i * 7) % N) * DIM;
                codec_query_prepare(c, q, qbuf);
                codec_encode(c, v + i * DIM, a);
                codec_encode(c, v + (N - 1 - i) * DIM, b);
                codec_decode(c, a, da);
                codec_decode(c, b, db);
                float qd = codec_query_distance(c, qbuf, a);
                float cd = codec_code_distance(c, a, b);
                if (bin) {
                    codec_encode(c, q, qcode);
                    assert_true(qd == (float)popcount_diff(qcode, a, DIM / 8));
                    assert_true(cd == (float)popcount_diff(a, b, DIM / 8));
                    continue;
                }
                float want = brute(q, da, dot), want2 = brute(da, db, dot);
                if (fabsf(qd - want) > 1e-3f * (fabsf(want) + 1))
                    fail_msg("%s dot=%d: query distance %g, brute force %g",
                             names[ci], dot, qd, want);
                if (fabsf(cd - want2) > 1e-3f * (fabsf(want2) + 1))
                    fail_msg("%s dot=%d: code distance %g, brute force %g",
                             names[ci], dot, cd, want2);
            }
            free(qbuf);
            codec_free(c);
        }
    }
    free(v);
}

/* The same sample and seed give the same parameters; the stored form
 * loads back into the same codec; damaged forms are refused. */
static void test_training_is_deterministic_and_stored(void **state)
{
    (void)state;
    float *v = make_data(N, DIM, 3);
    static const char *const names[] = {"sq8", "pq:8", "bin"};
    for (size_t ci = 0; ci < 3; ci++) {
        codec *a = train(names[ci], DIM, 0, v, N);
        codec *b = train(names[ci], DIM, 0, v, N);
        size_t len = codec_blob_size(a);
        assert_int_equal(len, codec_blob_size(b));
        char *x = malloc(len), *y = malloc(len);
        codec_blob_write(a, x);
        codec_blob_write(b, y);
        assert_memory_equal(x, y, len);
        int malformed;
        codec *c = codec_blob_load(codec_get_spec(a), DIM, 0, x, len,
                                   &malformed);
        assert_non_null(c);
        uint8_t ca[DIM], cc[DIM];
        for (size_t i = 0; i < N; i++) {
            codec_encode(a, v + i * DIM, ca);
            codec_encode(c, v + i * DIM, cc);
            assert_memory_equal(ca, cc, codec_code_bytes(a));
        }
        assert_null(codec_blob_load(codec_get_spec(a), DIM, 0, x, len - 4,
                                    &malformed));
        assert_true(malformed);
        float nan = NAN;
        memcpy(x, &nan, sizeof nan);
        assert_null(codec_blob_load(codec_get_spec(a), DIM, 0, x, len,
                                    &malformed));
        assert_true(malformed);
        codec_free(a);
        codec_free(b);
        codec_free(c);
        free(x);
        free(y);
    }
    free(v);
}

/* ---- magnitudes (quiver.h, "Which vectors") ---- */

/*
 * Data at the l2/ip limit: n rows of make_data scaled so that the largest
 * squared norm is just below QV_SQNORM_MAX, then the worst case for the
 * codecs' ranges, dim rows of +-1e18 on one axis each.
 */
static float *make_extreme(size_t n, uint32_t dim, uint64_t seed)
{
    float *v = make_data(n + dim, dim, seed);
    double most = 0;
    for (size_t i = 0; i < n; i++) {
        double sq = 0;
        for (uint32_t d = 0; d < dim; d++)
            sq += (double)v[i * dim + d] * v[i * dim + d];
        most = sq > most ? sq : most;
    }
    float scale = (float)sqrt(QV_SQNORM_MAX * 0.9999 / most);
    for (size_t i = 0; i < n * dim; i++)
        v[i] *= scale;
    for (size_t i = n; i < n + dim; i++) {
        memset(v + i * dim, 0, dim * sizeof *v);
        v[i * dim + (i - n)] = i % 2 ? -1e18f : 1e18f;
    }
    return v;
}

/* Trained on data at the limit, every codec has finite parameters, and
 * every query and code distance among such vectors is finite. */
static void test_codecs_train_on_extreme_values(void **state)
{
    (void)state;
    static const char *const names[] = {"sq8", "pq:8", "pq:32", "bin",
                                        "prune:7"};
    size_t n = 600, all = n + DIM;
    float *v = make_extreme(n, DIM, 11);
    for (size_t ci = 0; ci < sizeof names / sizeof *names; ci++) {
        for (int dot = 0; dot < 2; dot++) {
            codec *c = train(names[ci], DIM, dot, v, all);
            size_t len = codec_blob_size(c);
            float *params = malloc(len + 1);
            codec_blob_write(c, params);
            for (size_t i = 0; i < len / sizeof *params; i++)
                if (!isfinite(params[i]))
                    fail_msg("%s dot=%d: parameter %zu is %g", names[ci],
                             dot, i, params[i]);
            free(params);
            void *qbuf = malloc(codec_query_bytes(c));
            uint8_t a[DIM * 6], b[DIM * 6];
            float q[DIM];
            for (size_t i = 0; i < all; i += 3) {
                /* queries at the limit too: a vector and its opposite */
                for (uint32_t d = 0; d < DIM; d++)
                    q[d] = -v[((i * 7) % all) * DIM + d];
                codec_query_prepare(c, i % 2 ? q : v + i * DIM, qbuf);
                codec_encode(c, v + i * DIM, a);
                codec_encode(c, v + (all - 1 - i) * DIM, b);
                float qd = codec_query_distance(c, qbuf, a);
                float cd = codec_code_distance(c, a, b);
                if (!isfinite(qd) || !isfinite(cd))
                    fail_msg("%s dot=%d: vector %zu: query distance %g, "
                             "code distance %g", names[ci], dot, i, qd, cd);
            }
            free(qbuf);
            codec_free(c);
        }
    }
    free(v);
}

/* f16 codes of halves at their largest, 65504, are finite; so are their
 * distances to queries at the l2/ip limit. */
static void test_f16_at_its_largest(void **state)
{
    (void)state;
    float v[DIM], q[DIM], out[DIM];
    uint8_t code[2 * DIM], code2[2 * DIM];
    for (int d = 0; d < DIM; d++) {
        v[d] = d % 2 ? QV_F16_MAX : -QV_F16_MAX;
        q[d] = d % 3 ? 1.7e17f : -1.7e17f;
    }
    for (int dot = 0; dot < 2; dot++) {
        codec *c = train("f16", DIM, dot, v, 1);
        codec_encode(c, v, code);
        codec_decode(c, code, out);
        assert_memory_equal(out, v, sizeof v);
        for (int d = 0; d < DIM; d++)
            out[d] = -v[d];
        codec_encode(c, out, code2);
        void *qbuf = malloc(codec_query_bytes(c));
        codec_query_prepare(c, q, qbuf);
        assert_true(isfinite(codec_query_distance(c, qbuf, code)));
        assert_true(isfinite(codec_code_distance(c, code, code2)));
        free(qbuf);
        codec_free(c);
    }
}

/* ---- through the API ---- */

static int setup(void **state)
{
    return tu_setup(state, NULL);
}

static void put(qv_db *db, const char *coll, const float *v, size_t from,
                size_t to, uint32_t dim)
{
    for (size_t i = from; i < to; i += 100) {
        qv_doc docs[100];
        char ids[100][16];
        size_t n = to - i < 100 ? to - i : 100;
        for (size_t j = 0; j < n; j++) {
            snprintf(ids[j], sizeof ids[j], "%zu", i + j);
            docs[j] = (qv_doc){ids[j], v + (i + j) * dim, dim, NULL};
        }
        assert_ok(db, qv_upsert(db, coll, docs, n));
    }
}

static void assert_same_hits_in(const char *what, const qv_hits *a,
                               const qv_hits *b)
{
    assert_int_equal(a->count, b->count);
    for (size_t i = 0; i < a->count; i++) {
        if (strcmp(a->hits[i].id, b->hits[i].id) != 0 ||
            fabsf(a->hits[i].distance - b->hits[i].distance) >
                1e-4f * (fabsf(b->hits[i].distance) + 1))
            fail_msg("%s: hit %zu: %s at %g, expected %s at %g", what, i,
                     a->hits[i].id, a->hits[i].distance, b->hits[i].id,
                     b->hits[i].distance);
    }
}

#define assert_same_hits(a, b) assert_same_hits_in(__func__, a, b)

static qv_hits *search(qv_db *db, const char *coll, const float *q,
                       uint32_t dim, const qv_search_options *opt)
{
    qv_hits *h = NULL;
    assert_ok(db, qv_search(db, coll, q, dim, opt, &h));
    return h;
}

/* Below train_min searches are exact scans; at it the codec is trained
 * and the graph built. */
static void test_exact_until_trained(void **state)
{
    struct tu_fixture *f = *state;
    qv_collection_config cfg = {.dim = DIM, .codec = "sq8",
                                .train_min = 300};
    assert_ok(f->db, qv_create_collection(f->db, "c", &cfg));
    float *v = make_data(400, DIM, 4);
    put(f->db, "c", v, 0, 200, DIM);
    qv_collection_info info;
    assert_ok(f->db, qv_describe_collection(f->db, "c", &info));
    assert_false(info.codec_trained);
    assert_string_equal(info.codec, "sq8");
    assert_int_equal(info.code_bytes, DIM);
    qv_search_options opt = {.k = 10, .explain = 1};
    qv_search_options exact = {.k = 10, .exact = 1};
    qv_hits *h = search(f->db, "c", v + 5 * DIM, DIM, &opt);
    qv_hits *e = search(f->db, "c", v + 5 * DIM, DIM, &exact);
    assert_same_hits(h, e);
    assert_non_null(strstr(h->explain, "not trained"));
    qv_free(h);
    qv_free(e);
    put(f->db, "c", v, 200, 400, DIM);
    assert_ok(f->db, qv_describe_collection(f->db, "c", &info));
    assert_true(info.codec_trained);
    h = search(f->db, "c", v + 5 * DIM, DIM, &opt);
    assert_non_null(strstr(h->explain, "graph walk"));
    assert_string_equal(h->hits[0].id, "5");
    assert_true(h->hits[0].distance == 0.0f);  /* re-ranked: exact */
    qv_free(h);
    free(v);
}

/* With every candidate re-ranked, each codec and metric gives exactly
 * the exact search's hits. */
static void test_full_rerank_equals_exact(void **state)
{
    struct tu_fixture *f = *state;
    static const char *const codecs[] = {"f16", "sq8", "pq:8", "bin",
                                         "prune:6"};
    static const qv_metric metrics[] = {QV_METRIC_L2, QV_METRIC_IP,
                                        QV_METRIC_COSINE};
    float *v = make_data(300, DIM, 5);
    for (size_t ci = 0; ci < 5; ci++) {
        for (size_t mi = 0; mi < 3; mi++) {
            char name[32];
            snprintf(name, sizeof name, "c%zu_%zu", ci, mi);
            qv_collection_config cfg = {.dim = DIM, .metric = metrics[mi],
                                        .codec = codecs[ci], .M = 8,
                                        .ef_construction = 64};
            if (ci == 1 || ci == 2 || ci == 3)
                cfg.train_min = 256;
            assert_ok(f->db, qv_create_collection(f->db, name, &cfg));
            put(f->db, name, v, 0, 300, DIM);
            qv_search_options all = {.k = 10, .ef = 300, .rerank = 300};
            qv_search_options exact = {.k = 10, .exact = 1};
            for (int q = 0; q < 5; q++) {
                float query[DIM];
                uint64_t s = (uint64_t)q + 99;
                tu_rand_vector(&s, query, DIM);
                qv_hits *h = search(f->db, name, query, DIM, &all);
                qv_hits *e = search(f->db, name, query, DIM, &exact);
                assert_same_hits_in(name, h, e);
                qv_free(h);
                qv_free(e);
            }
        }
    }
    free(v);
}

/* Codes, codebook and graph come back after reopen: the same hits, also
 * with code distances only (rerank=0), where the codebook matters. */
static void test_survives_reopen(void **state)
{
    struct tu_fixture *f = *state;
    qv_collection_config cfg = {.dim = DIM, .codec = "pq:8",
                                .train_min = 256};
    assert_ok(f->db, qv_create_collection(f->db, "p", &cfg));
    float *v = make_data(600, DIM, 6);
    put(f->db, "p", v, 0, 600, DIM);
    qv_search_options codes = {.k = 10, .no_rerank = 1};
    qv_search_options rr = {.k = 10, .rerank = 50};
    qv_hits *before[2] = {search(f->db, "p", v + 3 * DIM, DIM, &codes),
                          search(f->db, "p", v + 3 * DIM, DIM, &rr)};
    qv_close(f->db);
    assert_int_equal(tu_stop_servers(), 0);
    assert_int_equal(tu_open(f->dir, NULL, &f->db), QV_OK);
    qv_hits *after[2] = {search(f->db, "p", v + 3 * DIM, DIM, &codes),
                         search(f->db, "p", v + 3 * DIM, DIM, &rr)};
    for (int i = 0; i < 2; i++) {
        assert_same_hits(after[i], before[i]);
        qv_free(before[i]);
        qv_free(after[i]);
    }
    free(v);
}

/* Updates move a document, deletes remove it, re-training keeps every
 * document findable; the index stays valid (teardown checks). */
static void test_updates_deletes_and_retraining(void **state)
{
    struct tu_fixture *f = *state;
    qv_collection_config cfg = {.dim = DIM, .codec = "sq8",
                                .train_min = 256};
    assert_ok(f->db, qv_create_collection(f->db, "u", &cfg));
    float *v = make_data(500, DIM, 7);
    put(f->db, "u", v, 0, 500, DIM);
    qv_search_options opt = {.k = 5, .ef = 100};
    /* document 10 takes document 400's vector */
    qv_doc moved = {"10", v + 400 * DIM, DIM, NULL};
    assert_ok(f->db, qv_upsert(f->db, "u", &moved, 1));
    qv_hits *h = search(f->db, "u", v + 400 * DIM, DIM, &opt);
    int seen10 = 0;
    for (size_t i = 0; i < h->count; i++)
        seen10 |= !strcmp(h->hits[i].id, "10") && h->hits[i].distance == 0;
    assert_true(seen10);
    qv_free(h);
    assert_ok(f->db, qv_delete(f->db, "u", "400"));
    h = search(f->db, "u", v + 400 * DIM, DIM, &opt);
    for (size_t i = 0; i < h->count; i++)
        assert_string_not_equal(h->hits[i].id, "400");
    assert_string_equal(h->hits[0].id, "10");
    qv_free(h);
    assert_ok(f->db, qv_train(f->db, "u"));
    for (size_t i = 0; i < 500; i += 37) {
        if (i == 10 || i == 400)
            continue;
        h = search(f->db, "u", v + i * DIM, DIM, &opt);
        char id[16];
        snprintf(id, sizeof id, "%zu", i);
        assert_string_equal(h->hits[0].id, id);
        assert_true(h->hits[0].distance == 0.0f);
        qv_free(h);
    }
    free(v);
}

/*
 * Small vectors share LMDB leaf pages, which every later write to the
 * page copies elsewhere: a re-rank after such writes still reads each
 * document's own vector (it used to read a stale offset: another
 * vector, or a page reused since).
 */
static void test_rerank_after_writes_beside_the_vectors(void **state)
{
    struct tu_fixture *f = *state;
    qv_collection_config cfg = {.dim = DIM, .codec = "f16", .M = 8,
                                .ef_construction = 64};
    assert_ok(f->db, qv_create_collection(f->db, "w", &cfg));
    float *v = make_data(400, DIM, 12);
    put(f->db, "w", v, 0, 100, DIM);
    /* documents inserted one by one land in the pages of the first */
    for (size_t i = 100; i < 400; i++) {
        char id[16];
        snprintf(id, sizeof id, "%zu", i);
        qv_doc doc = {id, v + i * DIM, DIM, NULL};
        assert_ok(f->db, qv_upsert(f->db, "w", &doc, 1));
    }
    qv_search_options all = {.k = 10, .ef = 400, .rerank = 400};
    qv_search_options exact = {.k = 10, .exact = 1};
    for (size_t q = 0; q < 400; q += 23) {
        qv_hits *h = search(f->db, "w", v + q * DIM, DIM, &all);
        qv_hits *e = search(f->db, "w", v + q * DIM, DIM, &exact);
        assert_same_hits(h, e);
        qv_free(h);
        qv_free(e);
    }
    free(v);
}

/* io_uring and pread read the same vectors; a failed read is an IO
 * error that changes nothing. Embedded only (the reader is in-process). */
static void test_io_paths_and_read_errors(void **state)
{
    struct tu_fixture *f = *state;
    if (tu_remote())
        skip();
    qv_collection_config cfg = {.dim = DIM, .codec = "f16"};
    assert_ok(f->db, qv_create_collection(f->db, "io", &cfg));
    float *v = make_data(300, DIM, 8);
    put(f->db, "io", v, 0, 300, DIM);
    qv_db *pr = NULL;
    qv_open_options oo = {.flags = QV_OPEN_PREAD};
    assert_int_equal(qv_open(f->dir, &oo, &pr), QV_OK);
    qv_search_options opt = {.k = 10, .rerank = 100};
    for (int q = 0; q < 20; q++) {
        qv_hits *a = search(f->db, "io", v + q * DIM, DIM, &opt);
        qv_hits *b = search(pr, "io", v + q * DIM, DIM, &opt);
        assert_same_hits(a, b);
        qv_free(a);
        qv_free(b);
    }
    qv_hits *h = NULL;
    for (int path = 0; path < 2; path++) {
        qv_db *db = path ? pr : f->db;
        st_read_inject_failures(1);
        assert_status(db, qv_search(db, "io", v, DIM, &opt, &h), QV_ERR_IO);
        assert_non_null(strstr(qv_errmsg(db), "re-ranking"));
        h = search(db, "io", v, DIM, &opt);
        assert_string_equal(h->hits[0].id, "0");
        qv_free(h);
    }
    st_read_inject_failures(0);
    qv_close(pr);
    free(v);
}

/* The n hits of a search: n of them, at finite distances, nearest
 * first. */
static void assert_finite_hits(const char *what, const qv_hits *h, size_t n)
{
    if (h->count != n)
        fail_msg("%s: %zu hits, expected %zu", what, h->count, n);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(h->hits[i].distance))
            fail_msg("%s: hit %zu (%s) at %g", what, i, h->hits[i].id,
                     h->hits[i].distance);
        if (i > 0)
            assert_true(h->hits[i - 1].distance <= h->hits[i].distance);
    }
}

/*
 * Every codec and metric with vectors at the edge of what the metric
 * accepts: l2 and ip at the squared-norm limit (f16 at its largest half),
 * cosine from near FLT_MAX down to subnormal. Training succeeds, code
 * distances (rerank=0) are finite, a full re-rank equals the exact search,
 * batches agree; beyond the limit documents are refused.
 */
/*
 * sq8 codes whose ranges a few far rows on the axes stretch coarsely (a
 * case that once trapped graph walks, seen while the magnitude bound was
 * built): every search for k = all documents still returns all of them.
 */
static void test_unfiltered_walk_is_never_short(void **state)
{
    struct tu_fixture *f = *state;
    size_t all = 332;
    float *v = make_extreme(300, DIM, 5);   /* 300 clustered, 32 on axes */
    qv_collection_config cfg = {.dim = DIM, .codec = "sq8", .M = 8,
                                .ef_construction = 64, .train_min = 256};
    assert_ok(f->db, qv_create_collection(f->db, "trap", &cfg));
    put(f->db, "trap", v, 0, all, DIM);
    qv_search_options opts[] = {{.k = (uint32_t)all, .ef = 400},
                                {.k = (uint32_t)all, .ef = 400,
                                 .no_rerank = 1},
                                {.k = 50}};
    for (size_t o = 0; o < sizeof opts / sizeof *opts; o++) {
        for (size_t qi = 0; qi < all; qi += 7) {
            float q[DIM];   /* rows, and rows mirrored through the origin */
            for (uint32_t d = 0; d < DIM; d++)
                q[d] = (qi / 7) % 2 ? -v[qi * DIM + d] : v[qi * DIM + d];
            qv_hits *h = search(f->db, "trap", q, DIM, &opts[o]);
            if (h->count != opts[o].k)
                fail_msg("options %zu, query %zu: %zu hits of %u", o, qi,
                         h->count, opts[o].k);
            qv_free(h);
        }
    }
    free(v);
}

static void test_codecs_at_the_magnitude_limit(void **state)
{
    struct tu_fixture *f = *state;
    static const char *const codecs[] = {"f16", "sq8", "pq:8", "bin",
                                         "prune:6"};
    static const qv_metric metrics[] = {QV_METRIC_L2, QV_METRIC_IP,
                                        QV_METRIC_COSINE};
    /* make_data's components are at most about 4.5 */
    static const float cosine_scales[] = {7e37f, 1e30f, 1.0f, 1e-30f,
                                          1e-40f};
    size_t all = 332;
    for (size_t ci = 0; ci < 5; ci++) {
        for (size_t mi = 0; mi < 3; mi++) {
            int f16 = ci == 0, cosine = metrics[mi] == QV_METRIC_COSINE;
            char name[32];
            snprintf(name, sizeof name, "x%zu_%zu", ci, mi);
            uint64_t seed = 20 + ci * 3 + mi;
            /* (make_extreme's rows on the axes are left out: far from the
             * clusters, they make sq8's range so coarse that its graph
             * traps walks, at any scale) */
            float *v = cosine ? make_data(all, DIM, seed)
                              : make_extreme(all, DIM, seed);
            float most = 0;
            for (size_t i = 0; i < all * DIM; i++)
                most = fmaxf(most, fabsf(v[i]));
            for (size_t i = 0; i < all * DIM; i++) {
                if (cosine)   /* row by row, from near FLT_MAX down */
                    v[i] *= cosine_scales[(i / DIM) % 5];
                else if (f16)  /* the largest half, 65504, at most */
                    v[i] = fmaxf(fminf(v[i] * (QV_F16_MAX / most),
                                       QV_F16_MAX), -QV_F16_MAX);
            }
            qv_collection_config cfg = {.dim = DIM, .metric = metrics[mi],
                                        .codec = codecs[ci], .M = 8,
                                        .ef_construction = 64};
            if (ci >= 1 && ci <= 3)   /* the codecs that are trained */
                cfg.train_min = 256;
            assert_ok(f->db, qv_create_collection(f->db, name, &cfg));
            put(f->db, name, v, 0, all, DIM);
            qv_collection_info info;
            assert_ok(f->db, qv_describe_collection(f->db, name, &info));
            assert_true(info.codec_trained);
            qv_search_options full = {.k = 10, .ef = 400, .rerank = 400};
            qv_search_options exact = {.k = 10, .exact = 1};
            qv_search_options codes = {.k = 10, .no_rerank = 1};
            float q[3 * DIM];
            for (uint32_t d = 0; d < DIM; d++) {
                q[d] = v[7 * DIM + d];
                q[DIM + d] = -v[303 * DIM + d];
                q[2 * DIM + d] = -v[100 * DIM + d];
            }
            for (int qi = 0; qi < 3; qi++) {
                qv_hits *h = search(f->db, name, q + qi * DIM, DIM, &full);
                qv_hits *e = search(f->db, name, q + qi * DIM, DIM, &exact);
                qv_hits *c = search(f->db, name, q + qi * DIM, DIM, &codes);
                assert_finite_hits(name, e, 10);
                assert_same_hits_in(name, h, e);
                assert_finite_hits(name, c, 10);
                qv_free(h);
                qv_free(e);
                qv_free(c);
            }
            qv_batch_hits *b = NULL;
            assert_ok(f->db, qv_search_batch(f->db, name, q, 3, DIM, &codes,
                                             &b));
            for (int qi = 0; qi < 3; qi++)
                assert_finite_hits(name, &b->results[qi], 10);
            qv_free(b);
            if (!cosine) {
                float over[DIM] = {0};
                over[1] = f16 ? 65520.0f : 1.01e18f;
                qv_doc doc = {"over", over, DIM, NULL};
                assert_status(f->db, qv_upsert(f->db, name, &doc, 1),
                              QV_ERR_INVALID);
                assert_non_null(strstr(qv_errmsg(f->db),
                                       f16 ? "vector[1] is 65520, beyond "
                                             "65504"
                                           : "exceeds 1e+36"));
            }
            free(v);
        }
    }
}

/* Bad options are refused with a message and create nothing. */
static void test_bad_input(void **state)
{
    struct tu_fixture *f = *state;
    static const char *const bad[] = {"pq:5", "pq:0", "sq8:1", "prune:0",
                                      "prune:33", "nope", "pq:abc"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qv_collection_config cfg = {.dim = DIM, .codec = bad[i]};
        assert_status(f->db, qv_create_collection(f->db, "bad", &cfg),
                      QV_ERR_INVALID);
        assert_true(strlen(qv_errmsg(f->db)) > 0);
    }
    qv_collection_config cfg = {.dim = DIM, .codec = "f16", .train_min = 500};
    assert_status(f->db, qv_create_collection(f->db, "bad", &cfg),
                  QV_ERR_INVALID);
    cfg = (qv_collection_config){.dim = DIM, .codec = "pq:8",
                                 .train_min = 10};
    assert_status(f->db, qv_create_collection(f->db, "bad", &cfg),
                  QV_ERR_INVALID);
    qv_collection_info info;
    assert_status(f->db, qv_describe_collection(f->db, "bad", &info),
                  QV_ERR_NOT_FOUND);
    cfg = (qv_collection_config){.dim = DIM};
    assert_ok(f->db, qv_create_collection(f->db, "plain", &cfg));
    assert_status(f->db, qv_train(f->db, "plain"), QV_ERR_INVALID);
    assert_status(f->db, qv_train(f->db, "missing"), QV_ERR_NOT_FOUND);
    cfg = (qv_collection_config){.dim = DIM, .codec = "pq:8"};
    assert_ok(f->db, qv_create_collection(f->db, "few", &cfg));
    float *v = make_data(100, DIM, 9);
    put(f->db, "few", v, 0, 100, DIM);
    free(v);
    assert_status(f->db, qv_train(f->db, "few"), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(f->db), "needs at least 256"));
    float q[DIM] = {0};
    qv_hits *h = NULL;
    qv_search_options opt = {.k = 1, .rerank = QV_RERANK_MAX + 1};
    assert_status(f->db, qv_search(f->db, "plain", q, DIM, &opt, &h),
                  QV_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_refuses_bad_specs),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_distances_match_brute_force),
        cmocka_unit_test(test_training_is_deterministic_and_stored),
        cmocka_unit_test(test_codecs_train_on_extreme_values),
        cmocka_unit_test(test_f16_at_its_largest),
        cmocka_unit_test_setup_teardown(test_exact_until_trained, setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(test_full_rerank_equals_exact, setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(test_updates_deletes_and_retraining,
                                        setup, tu_teardown),
        cmocka_unit_test_setup_teardown(
            test_rerank_after_writes_beside_the_vectors, setup, tu_teardown),
        cmocka_unit_test_setup_teardown(test_io_paths_and_read_errors, setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(test_unfiltered_walk_is_never_short,
                                        setup, tu_teardown),
        cmocka_unit_test_setup_teardown(test_codecs_at_the_magnitude_limit,
                                        setup, tu_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
