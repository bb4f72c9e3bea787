/*
 * test_table.c - embedding tables through the API (embedded, and remote
 * under QUIVER_TEST_REMOTE): per method, a lookup after an update against
 * a float reference within the method's bound; training on a planted
 * task converges; persistence across reopen; hashing collisions;
 * duplicate ids accumulating; loading trained rows; describe's figures;
 * bad input refused without a change. And tt's gradient against finite
 * differences, on the table itself (ann/embed.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ann/embed.h"
#include "tests/test_util.h"

#define DIM 8

static const char *const all_methods[] = {
    "full", "hash:4", "qr:4", "robe:4", "adapt:4", "int8", "int16", "alpt:8",
    "alpt:16", "prune:0.5", "tt:4"};
#define NMETHODS (sizeof all_methods / sizeof *all_methods)

/* Methods that take any 64-bit id (and hash it). */
static int takes_any_id(const char *method)
{
    return !strncmp(method, "hash", 4) || !strncmp(method, "qr", 2) ||
           !strncmp(method, "robe", 4) || !strncmp(method, "adapt", 5);
}

/* Methods whose ids share parameters: held to learning well above
 * chance on the planted task's small table. */
static int shares_parameters(const char *method)
{
    return takes_any_id(method) || !strncmp(method, "tt", 2);
}

static int setup(void **state)
{
    qv_open_options oo = {.flags = QV_OPEN_NOSYNC};
    return tu_setup(state, &oo);
}

static void create(qv_db *db, const char *name, const char *method,
                   uint64_t rows, qv_optimizer opt, float lr)
{
    qv_table_config cfg = {.rows = rows, .dim = DIM, .method = method,
                           .optimizer = opt, .learning_rate = lr,
                           .init = 0.1f, .seed = 7};
    assert_ok(db, qv_table_create(db, name, &cfg));
}

static float max_abs(const float *v, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

/* Rows addressed by id, SGD: after = before - lr g within the method's
 * bound (quantization steps; prune keeps the largest of the result). */
static void test_lookup_after_update_matches_reference(void **state)
{
    struct tu_fixture *f = *state;
    static const char *const methods[] = {"full", "int8", "int16", "alpt:8",
                                          "alpt:16", "prune:0.5"};
    uint64_t ids[10];
    float before[10 * DIM], after[10 * DIM], g[10 * DIM], want[10 * DIM];
    uint64_t rng = 3;
    for (int i = 0; i < 10; i++)
        ids[i] = (uint64_t)(i * 7);
    for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
        char name[16];
        snprintf(name, sizeof name, "t%zu", m);
        float lr = 0.5f;
        create(f->db, name, methods[m], 100, QV_OPTIMIZER_SGD, lr);
        assert_ok(f->db, qv_table_lookup(f->db, name, ids, 10, DIM, before));
        tu_rand_vector(&rng, g, 10 * DIM);
        for (int i = 0; i < 10 * DIM; i++) {
            g[i] *= 0.05f;
            want[i] = before[i] - lr * g[i];
        }
        assert_ok(f->db, qv_table_update(f->db, name, ids, 10, DIM, g));
        assert_ok(f->db, qv_table_lookup(f->db, name, ids, 10, DIM, after));
        for (int r = 0; r < 10; r++) {
            const float *w = want + r * DIM, *a = after + r * DIM;
            float big = max_abs(w, DIM) > max_abs(a, DIM) ? max_abs(w, DIM)
                                                          : max_abs(a, DIM);
            float bound = 1e-6f;
            /* int: one step of max |w| / qmax (stochastic rounding);
             * alpt: of its learned scale, which starts at 8 init / qmax */
            if (!strcmp(methods[m], "int8"))
                bound = 2.5f * big / 127;
            else if (!strcmp(methods[m], "int16"))
                bound = 2.5f * big / 32767;
            else if (!strcmp(methods[m], "alpt:8"))
                bound = 3.0f * (big > 0.8f ? big : 0.8f) / 127;
            else if (!strcmp(methods[m], "alpt:16"))
                bound = 3.0f * (big > 0.8f ? big : 0.8f) / 32767;
            for (int d = 0; d < DIM; d++) {
                float expect = w[d];
                if (!strcmp(methods[m], "prune:0.5")) {
                    /* kept: the 4 largest magnitudes of the result */
                    int larger = 0;
                    for (int e = 0; e < DIM; e++)
                        larger += fabsf(w[e]) > fabsf(w[d]) ||
                                  (fabsf(w[e]) == fabsf(w[d]) && e < d);
                    expect = larger < DIM / 2 ? w[d] : 0;
                }
                if (fabsf(a[d] - expect) > bound)
                    fail_msg("%s: row %d element %d is %g, expected %g "
                             "(bound %g)", methods[m], r, d, a[d], expect,
                             bound);
            }
        }
    }
}

/* A planted task: label = [<U_u, I_i> > 0] for hidden U, I. A model
 * p = sigmoid(<e_u, e_i>) trained with logloss through lookups and
 * updates learns it, for every method. */
static double auc(const float *score, const int *label, size_t n)
{
    double pos = 0, neg = 0, wins = 0;
    for (size_t i = 0; i < n; i++) {
        if (!label[i])
            continue;
        pos++;
        for (size_t j = 0; j < n; j++) {
            if (label[j])
                continue;
            wins += score[i] > score[j] ? 1 : score[i] == score[j] ? 0.5 : 0;
        }
    }
    for (size_t j = 0; j < n; j++)
        neg += !label[j];
    return wins / (pos * neg);
}

static void test_planted_task_converges(void **state)
{
    struct tu_fixture *f = *state;
    enum { USERS = 60, ITEMS = 60, TRAIN = 3000, TEST = 600, B = 100 };
    float U[USERS][4], I[ITEMS][4];
    uint64_t rng = 11;
    for (int i = 0; i < USERS; i++)
        tu_rand_vector(&rng, U[i], 4);
    for (int i = 0; i < ITEMS; i++)
        tu_rand_vector(&rng, I[i], 4);
    static uint64_t pairs[TRAIN + TEST][2];
    static int label[TRAIN + TEST];
    for (int s = 0; s < TRAIN + TEST; s++) {
        int u = (int)(tu_rand(&rng) % USERS), i = (int)(tu_rand(&rng) % ITEMS);
        float dot = 0;
        for (int d = 0; d < 4; d++)
            dot += U[u][d] * I[i][d];
        pairs[s][0] = (uint64_t)u;
        pairs[s][1] = (uint64_t)(USERS + i);
        label[s] = dot > 0;
    }
    for (size_t m = 0; m < NMETHODS; m++) {
        char name[16];
        snprintf(name, sizeof name, "p%zu", m);
        qv_table_config cfg = {.rows = USERS + ITEMS, .dim = DIM,
                               .method = all_methods[m],
                               .optimizer = QV_OPTIMIZER_ADAGRAD,
                               .learning_rate = 0.2f, .init = 0.1f,
                               .seed = 5};
        if (!strncmp(all_methods[m], "qr", 2) ||
            !strncmp(all_methods[m], "hash", 4))
            cfg.method = all_methods[m][0] == 'q' ? "qr:1.5" : "hash:1.5";
        if (!strcmp(all_methods[m], "robe:4"))
            cfg.method = "robe:2";
        /* adapt's sketch and id map have a floor of about 1 KiB, which
         * on this 120-row table is most of a ratio-2 budget */
        if (!strcmp(all_methods[m], "adapt:4"))
            cfg.method = "adapt:1.25";
        assert_ok(f->db, qv_table_create(f->db, name, &cfg));
        uint64_t ids[2 * B];
        float e[2 * B * DIM], g[2 * B * DIM];
        for (int epoch = 0; epoch < 8; epoch++) {
            for (int b = 0; b < TRAIN; b += B) {
                for (int s = 0; s < B; s++) {
                    ids[2 * s] = pairs[b + s][0];
                    ids[2 * s + 1] = pairs[b + s][1];
                }
                assert_ok(f->db, qv_table_lookup(f->db, name, ids, 2 * B, DIM,
                                                 e));
                for (int s = 0; s < B; s++) {
                    float *eu = e + 2 * s * DIM, *ei = eu + DIM, dot = 0;
                    for (int d = 0; d < DIM; d++)
                        dot += eu[d] * ei[d];
                    float p = 1.0f / (1.0f + expf(-dot)), err = p - label[b + s];
                    for (int d = 0; d < DIM; d++) {
                        g[2 * s * DIM + d] = err * ei[d];
                        g[(2 * s + 1) * DIM + d] = err * eu[d];
                    }
                }
                assert_ok(f->db, qv_table_update(f->db, name, ids, 2 * B, DIM,
                                                 g));
            }
        }
        static float score[TEST];
        for (int s = 0; s < TEST; s++) {
            float eu[DIM], ei[DIM], dot = 0;
            assert_ok(f->db, qv_table_lookup(f->db, name, &pairs[TRAIN + s][0],
                                             1, DIM, eu));
            assert_ok(f->db, qv_table_lookup(f->db, name, &pairs[TRAIN + s][1],
                                             1, DIM, ei));
            for (int d = 0; d < DIM; d++)
                dot += eu[d] * ei[d];
            score[s] = dot;
        }
        double a = auc(score, label + TRAIN, TEST);
        printf("# %s: test AUC %.3f\n", cfg.method, a);
        /* rows of their own learn the task (0.99 for full); shared rows
         * merge unrelated features of this small table (120 into 60), so
         * they are held only to learning well above chance */
        double least = shares_parameters(cfg.method) ? 0.6 : 0.85;
        if (a < least)
            fail_msg("%s: test AUC %.3f, below %.2f", cfg.method, a, least);
    }
}

static void test_survives_reopen(void **state)
{
    struct tu_fixture *f = *state;
    uint64_t ids[5] = {1, 2, 3, 4, 1u << 20};
    float g[5 * DIM], before[5 * DIM], after[5 * DIM];
    uint64_t rng = 4;
    tu_rand_vector(&rng, g, 5 * DIM);
    for (size_t m = 0; m < NMETHODS; m++) {
        char name[16];
        snprintf(name, sizeof name, "r%zu", m);
        create(f->db, name, all_methods[m], 1000, QV_OPTIMIZER_ADAGRAD, 0.1f);
        size_t n = takes_any_id(all_methods[m]) ? 5 : 4;
        for (int k = 0; k < 3; k++)
            assert_ok(f->db, qv_table_update(f->db, name, ids, n, DIM, g));
        assert_ok(f->db, qv_table_lookup(f->db, name, ids, n, DIM, before));
    }
    qv_close(f->db);
    assert_int_equal(tu_stop_servers(), 0);
    assert_int_equal(tu_open(f->dir, NULL, &f->db), QV_OK);
    for (size_t m = 0; m < NMETHODS; m++) {
        char name[16];
        snprintf(name, sizeof name, "r%zu", m);
        size_t n = takes_any_id(all_methods[m]) ? 5 : 4;
        assert_ok(f->db, qv_table_lookup(f->db, name, ids, n, DIM, after));
        /* the last table's rows were read before the close */
        qv_table_info info;
        assert_ok(f->db, qv_table_describe(f->db, name, &info));
        assert_int_equal(info.updates, 3);
        if (m == NMETHODS - 1)
            assert_memory_equal(before, after, n * DIM * sizeof(float));
    }
}

/* Hashing: ids beyond the budget share rows, and a shared row moves for
 * every id that uses it. */
static void test_hash_collisions(void **state)
{
    struct tu_fixture *f = *state;
    create(f->db, "h", "hash:100", 1000, QV_OPTIMIZER_SGD, 1.0f);
    uint64_t ids[200];
    static float rows[200 * DIM];
    for (int i = 0; i < 200; i++)
        ids[i] = (uint64_t)i * 1000003u;
    assert_ok(f->db, qv_table_lookup(f->db, "h", ids, 200, DIM, rows));
    int distinct = 0;
    for (int i = 0; i < 200; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = !memcmp(rows + i * DIM, rows + j * DIM, DIM * 4);
        distinct += !seen;
    }
    assert_true(distinct <= 10);   /* 1000 / 100 shared rows */
    int partner = -1;
    for (int j = 1; j < 200 && partner < 0; j++)
        if (!memcmp(rows, rows + j * DIM, DIM * 4))
            partner = j;
    assert_true(partner > 0);
    float g[DIM] = {1, 1, 1, 1, 1, 1, 1, 1}, a[DIM], b[DIM];
    assert_ok(f->db, qv_table_update(f->db, "h", ids, 1, DIM, g));
    assert_ok(f->db, qv_table_lookup(f->db, "h", &ids[0], 1, DIM, a));
    assert_ok(f->db, qv_table_lookup(f->db, "h", &ids[partner], 1, DIM, b));
    assert_memory_equal(a, b, sizeof a);
    assert_true(fabsf(a[0] - (rows[0] - 1.0f)) < 1e-5f);
}

static void test_duplicate_ids_accumulate(void **state)
{
    struct tu_fixture *f = *state;
    create(f->db, "d", "full", 10, QV_OPTIMIZER_SGD, 0.5f);
    uint64_t ids[3] = {5, 5, 5};
    float before[DIM], after[DIM], g[3 * DIM];
    for (int i = 0; i < 3 * DIM; i++)
        g[i] = (float)(i % DIM) * 0.01f * (float)(1 + i / DIM);
    assert_ok(f->db, qv_table_lookup(f->db, "d", ids, 1, DIM, before));
    assert_ok(f->db, qv_table_update(f->db, "d", ids, 3, DIM, g));
    assert_ok(f->db, qv_table_lookup(f->db, "d", ids, 1, DIM, after));
    for (int d = 0; d < DIM; d++) {
        float sum = g[d] + g[DIM + d] + g[2 * DIM + d];
        assert_true(fabsf(after[d] - (before[d] - 0.5f * sum)) < 1e-6f);
    }
}

/* Trained float rows loaded into int8 come back within a step; describe
 * reports the sizes and the ratio. */
static void test_load_and_describe(void **state)
{
    struct tu_fixture *f = *state;
    create(f->db, "q", "int8", 50, QV_OPTIMIZER_ADAGRAD, 0.1f);
    static float rows[50 * DIM], back[50 * DIM];
    uint64_t rng = 8, ids[50];
    tu_rand_vector(&rng, rows, 50 * DIM);
    for (int i = 0; i < 50; i++)
        ids[i] = (uint64_t)i;
    assert_ok(f->db, qv_table_load(f->db, "q", 0, 50, DIM, rows));
    assert_ok(f->db, qv_table_lookup(f->db, "q", ids, 50, DIM, back));
    for (int i = 0; i < 50; i++) {
        float step = max_abs(rows + i * DIM, DIM) / 127;
        for (int d = 0; d < DIM; d++)
            assert_true(fabsf(back[i * DIM + d] - rows[i * DIM + d]) <=
                        step * 1.001f);
    }
    qv_table_info info;
    assert_ok(f->db, qv_table_describe(f->db, "q", &info));
    assert_string_equal(info.method, "int8");
    assert_int_equal(info.param_bytes, 50 * (4 + DIM));
    assert_int_equal(info.optimizer_bytes, 50 * 4);
    assert_true(fabs(info.ratio - 32.0 / 12.0) < 1e-9);
    create(f->db, "h4", "hash:4", 1000, QV_OPTIMIZER_SGD, 0.1f);
    assert_ok(f->db, qv_table_describe(f->db, "h4", &info));
    assert_true(fabs(info.ratio - 4.0) < 1e-9);
    assert_int_equal(info.optimizer_bytes, 0);
    assert_status(f->db, qv_table_load(f->db, "h4", 0, 1, DIM, rows),
                  QV_ERR_UNSUPPORTED);
    /* tt: ids are rows, but a row is a product of shared cores */
    create(f->db, "t4", "tt:4", 1000, QV_OPTIMIZER_SGD, 0.1f);
    assert_ok(f->db, qv_table_describe(f->db, "t4", &info));
    assert_string_equal(info.method, "tt:4");
    /* 1000 rows as 10 x 10 x 10, dim 8 as 2 x 2 x 2, ranks 1, 4, 4, 1 */
    assert_int_equal(info.param_bytes, 4 * (10 * 8 + 10 * 32 + 10 * 8));
    assert_status(f->db, qv_table_load(f->db, "t4", 0, 1, DIM, rows),
                  QV_ERR_UNSUPPORTED);
    uint64_t beyond = 1000;
    float one[DIM];
    assert_status(f->db, qv_table_lookup(f->db, "t4", &beyond, 1, DIM, one),
                  QV_ERR_INVALID);
}

static void test_bad_input(void **state)
{
    struct tu_fixture *f = *state;
    static const char *const bad[] = {"nope", "hash:0.5", "hash:x", "hash",
                                      "prune:1.5", "prune:0", "qr:500",
                                      "alpt:4", "int8:2", "tt:0", "tt:2.5",
                                      "tt:33", "tt:x", "tt:32"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qv_table_config cfg = {.rows = 1000, .dim = DIM, .method = bad[i]};
        assert_status(f->db, qv_table_create(f->db, "bad", &cfg),
                      QV_ERR_INVALID);
        assert_true(strlen(qv_errmsg(f->db)) > 0);
    }
    qv_table_config cfg = {.rows = 0, .dim = DIM};
    assert_status(f->db, qv_table_create(f->db, "bad", &cfg), QV_ERR_INVALID);
    cfg = (qv_table_config){.rows = 10, .dim = 0};
    assert_status(f->db, qv_table_create(f->db, "bad", &cfg), QV_ERR_INVALID);
    cfg = (qv_table_config){.rows = 10, .dim = DIM, .learning_rate = -1};
    assert_status(f->db, qv_table_create(f->db, "bad", &cfg), QV_ERR_INVALID);
    cfg = (qv_table_config){.rows = 10, .dim = DIM,
                            .optimizer = (qv_optimizer)7};
    assert_status(f->db, qv_table_create(f->db, "bad", &cfg), QV_ERR_INVALID);
    qv_table_info info;
    assert_status(f->db, qv_table_describe(f->db, "bad", &info),
                  QV_ERR_NOT_FOUND);
    create(f->db, "ok", "full", 10, QV_OPTIMIZER_SGD, 0.1f);
    assert_status(f->db, qv_table_create(f->db, "ok", &(qv_table_config){
                                                        .rows = 10,
                                                        .dim = DIM}),
                  QV_ERR_EXISTS);
    uint64_t ids[2] = {1, 10};
    float rows[2 * DIM], before[2 * DIM], after[2 * DIM], g[2 * DIM] = {0};
    assert_status(f->db, qv_table_lookup(f->db, "ok", ids, 2, DIM, rows),
                  QV_ERR_INVALID);   /* id 10 of 10 rows */
    assert_non_null(strstr(qv_errmsg(f->db), "beyond"));
    assert_status(f->db, qv_table_lookup(f->db, "ok", ids, 1, DIM + 1, rows),
                  QV_ERR_DIMENSION);
    assert_status(f->db, qv_table_lookup(f->db, "ok", ids, 0, DIM, rows),
                  QV_ERR_INVALID);
    ids[1] = 2;
    assert_ok(f->db, qv_table_lookup(f->db, "ok", ids, 2, DIM, before));
    g[3] = NAN;
    assert_status(f->db, qv_table_update(f->db, "ok", ids, 2, DIM, g),
                  QV_ERR_INVALID);
    g[3] = INFINITY;
    assert_status(f->db, qv_table_update(f->db, "ok", ids, 2, DIM, g),
                  QV_ERR_INVALID);
    g[3] = 3e38f;   /* finite, but the step overflows */
    create(f->db, "big", "full", 10, QV_OPTIMIZER_SGD, 1e10f);
    assert_status(f->db, qv_table_update(f->db, "big", ids, 2, DIM, g),
                  QV_ERR_INVALID);
    assert_ok(f->db, qv_table_lookup(f->db, "ok", ids, 2, DIM, after));
    assert_memory_equal(before, after, sizeof before);
    assert_ok(f->db, qv_table_describe(f->db, "big", &info));
    assert_int_equal(info.updates, 0);
    assert_ok(f->db, qv_table_drop(f->db, "big"));
    assert_status(f->db, qv_table_drop(f->db, "big"), QV_ERR_NOT_FOUND);
}

/* L = sum over a batch of <row(id_i), g_i> on a table in memory. */
static double tt_loss(const emb_table *t, const uint64_t *ids, size_t n,
                      const float *g)
{
    float row[DIM];
    double loss = 0;
    for (size_t i = 0; i < n; i++) {
        emb_lookup(t, &ids[i], 1, row);
        for (int d = 0; d < DIM; d++)
            loss += (double)row[d] * g[i * DIM + d];
    }
    return loss;
}

/* tt: one SGD step of learning rate 1 moves every core value by minus
 * the gradient of L, which central differences measure independently
 * (ids 5, 7 and 5 again share slices: the gradients accumulate). */
static void test_tt_gradient_matches_finite_differences(void **state)
{
    (void)state;
    emb_spec spec = {.rows = 30, .dim = DIM, .optimizer = EMB_SGD,
                     .lr = 1.0f, .init = 0.5f, .seed = 3};
    char err[128];
    assert_int_equal(emb_parse_method("tt:3", &spec, err, sizeof err), 0);
    emb_table t, before;
    assert_int_equal(emb_layout(&spec, &t, err, sizeof err), 0);
    assert_int_equal(emb_alloc_init(&t), 0);
    assert_int_equal(emb_layout(&spec, &before, err, sizeof err), 0);
    assert_int_equal(emb_alloc(&before), 0);
    assert_int_equal(t.nslabs, 3);
    for (uint32_t k = 0; k < 3; k++)
        memcpy(before.slab[k].data, t.slab[k].data,
               t.slab[k].rows * t.slab[k].row_bytes);
    uint64_t ids[3] = {5, 7, 5}, rng = 9;
    float g[3 * DIM];
    tu_rand_vector(&rng, g, 3 * DIM);
    emb_touch touched[64];
    assert_true(emb_touch_bound(&t, 3) <= 64);
    assert_true(emb_update(&t, ids, 3, g, touched) > 0);
    /* every core value: the step taken against central differences on
     * the copy from before it */
    size_t checked = 0;
    for (uint32_t k = 0; k < 3; k++) {
        float *p = (float *)(void *)before.slab[k].data;
        const float *after = (const float *)(const void *)t.slab[k].data;
        size_t nf = before.slab[k].rows * before.slab[k].row_bytes / 4;
        for (size_t j = 0; j < nf; j++) {
            float keep = p[j], eps = 1e-3f;
            p[j] = keep + eps;
            double up = tt_loss(&before, ids, 3, g);
            p[j] = keep - eps;
            double down = tt_loss(&before, ids, 3, g);
            p[j] = keep;
            double numeric = (up - down) / (2 * eps);
            double analytic = (double)keep - after[j];
            checked += numeric != 0;
            if (fabs(numeric - analytic) > 1e-3 + 1e-2 * fabs(numeric))
                fail_msg("core %u value %zu: gradient %g, finite "
                         "differences %g", k, j, analytic, numeric);
        }
    }
    assert_true(checked >= 3 * 6);   /* the batch reached three slices */
    emb_release(&t);
    emb_release(&before);
}

/* qv_list_tables: every table in name order, each entry equal to what
 * qv_table_describe says of it; none after the last is dropped. */
static void test_list_tables(void **state)
{
    struct tu_fixture *f = *state;
    qv_table_info *list = (qv_table_info *)&list;   /* must be replaced */
    size_t n = 99;
    assert_ok(f->db, qv_list_tables(f->db, &list, &n));
    assert_null(list);
    assert_int_equal(n, 0);
    static const char *const names[] = {"b_int8", "a_hash", "c_tt"};
    static const char *const methods[] = {"int8", "hash:4", "tt:4"};
    for (int i = 0; i < 3; i++)
        create(f->db, names[i], methods[i], 1000, (qv_optimizer)(i == 1),
               0.05f);
    uint64_t id = 3;
    float grad[DIM] = {1};
    assert_ok(f->db, qv_table_update(f->db, "a_hash", &id, 1, DIM, grad));
    assert_ok(f->db, qv_list_tables(f->db, &list, &n));
    assert_int_equal(n, 3);
    static const char *const sorted[] = {"a_hash", "b_int8", "c_tt"};
    for (size_t i = 0; i < n; i++) {
        qv_table_info one;
        assert_string_equal(list[i].name, sorted[i]);
        assert_ok(f->db, qv_table_describe(f->db, sorted[i], &one));
        assert_memory_equal(&one, &list[i], sizeof one);
    }
    assert_int_equal(list[0].updates, 1);
    assert_int_equal(list[0].optimizer, QV_OPTIMIZER_ADAGRAD);
    qv_free(list);
    assert_status(f->db, qv_list_tables(f->db, NULL, &n), QV_ERR_INVALID);
    assert_status(f->db, qv_list_tables(f->db, &list, NULL), QV_ERR_INVALID);
    for (int i = 0; i < 3; i++)
        assert_ok(f->db, qv_table_drop(f->db, names[i]));
    assert_ok(f->db, qv_list_tables(f->db, &list, &n));
    assert_int_equal(n, 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, tu_teardown)
    const struct CMUnitTest tests[] = {
        T(test_lookup_after_update_matches_reference),
        T(test_planted_task_converges),
        T(test_survives_reopen),
        T(test_hash_collisions),
        T(test_duplicate_ids_accumulate),
        T(test_load_and_describe),
        T(test_bad_input),
        T(test_list_tables),
        T(test_tt_gradient_matches_finite_differences),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
