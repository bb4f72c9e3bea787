/*
 * bench_churn.c - `quiver bench churn`: the graph's quality after heavy
 * replacement. n uniform random rows are imported (the first-insert
 * rate), then --rounds times a --fraction of the documents, chosen at
 * random each round, take new random vectors through batched upserts (the
 * replacement rate). The final vectors are then imported afresh into a
 * second collection, and for each ef recall@k of both collections is
 * measured against exact neighbours computed here, beside the share of
 * the churned collection's hits that the fresh one also returns. One JSON
 * line per ef; `check` says whether qv_check passed after the churn.
 *
 * The case is the default: 20,000 32-d rows, three full rounds,
 * ef 32. A graph that repairs itself well keeps the churned recall within
 * 0.01 of the fresh build's.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "cli/bench.h"
#include "cli/cli.h"

#define MAX_EFS 16
#define MAX_K 100

struct churn_args {
    long n, nq;
    unsigned dim, M, ef_construction, threads, rounds, k;
    long efs[MAX_EFS];
    int nefs, nosync;
    double fraction;
    size_t batch;
};

/* What the churn measured before the searches. */
struct churn_run {
    double insert_rate, replace_rate;
    long replaced;
    int check_ok;
};

static const char churn_usage[] =
    "usage: quiver bench churn [--n 20000] [--dim 32] [--rounds 3]\n"
    "       [--fraction 1.0] [--batch 1000] [--nq 1000] [--k 10]\n"
    "       [--ef 32] [--M 16] [--ef-construction 200] [--threads 2]\n"
    "       [--nosync] [--json]\n";

static int parse_churn_args(int argc, char **argv, struct churn_args *a)
{
    enum { O_N = 256, O_DIM, O_ROUNDS, O_FRACTION, O_BATCH, O_NQ, O_K, O_EF,
           O_M, O_EFC, O_THREADS, O_NOSYNC, O_JSON };
    static const struct option opts[] = {
        {"n", required_argument, 0, O_N},
        {"dim", required_argument, 0, O_DIM},
        {"rounds", required_argument, 0, O_ROUNDS},
        {"fraction", required_argument, 0, O_FRACTION},
        {"batch", required_argument, 0, O_BATCH},
        {"nq", required_argument, 0, O_NQ},
        {"k", required_argument, 0, O_K},
        {"ef", required_argument, 0, O_EF},
        {"M", required_argument, 0, O_M},
        {"ef-construction", required_argument, 0, O_EFC},
        {"threads", required_argument, 0, O_THREADS},
        {"nosync", no_argument, 0, O_NOSYNC},
        {"json", no_argument, 0, O_JSON},
        {0, 0, 0, 0}};
    *a = (struct churn_args){.n = 20000, .nq = 1000, .dim = 32, .M = 16,
                             .ef_construction = 200, .threads = 2,
                             .rounds = 3, .k = 10, .efs = {32}, .nefs = 1,
                             .fraction = 1.0, .batch = 1000};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_N: a->n = atol(optarg); break;
        case O_DIM: a->dim = (unsigned)atoi(optarg); break;
        case O_ROUNDS: a->rounds = (unsigned)atoi(optarg); break;
        case O_FRACTION: a->fraction = atof(optarg); break;
        case O_BATCH: a->batch = (size_t)atol(optarg); break;
        case O_NQ: a->nq = atol(optarg); break;
        case O_K: a->k = (unsigned)atoi(optarg); break;
        case O_M: a->M = (unsigned)atoi(optarg); break;
        case O_EFC: a->ef_construction = (unsigned)atoi(optarg); break;
        case O_THREADS: a->threads = (unsigned)atoi(optarg); break;
        case O_NOSYNC: a->nosync = 1; break;
        case O_JSON: break;   /* JSON is the only output */
        case O_EF:
            if ((a->nefs = bench_parse_list(optarg, 1, QV_EF_MAX, a->efs,
                                            MAX_EFS)) < 0) {
                fprintf(stderr, "quiver bench churn: bad --ef list '%s'\n",
                        optarg);
                return -1;
            }
            break;
        default:
            fputs(churn_usage, stderr);
            return -1;
        }
    }
    if (optind != argc || a->n < 1 || a->nq < 1 || a->dim < 1 ||
        a->k < 1 || a->k > MAX_K || a->threads < 1 || a->batch < 1 ||
        !(a->fraction > 0 && a->fraction <= 1)) {
        fputs(churn_usage, stderr);
        return -1;
    }
    return 0;
}

static float l2sq(const float *a, const float *b, unsigned dim)
{
    float s = 0;
    for (unsigned i = 0; i < dim; i++)
        s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}

/* The exact k nearest rows of q (ids into out, nearest first). */
static void exact_knn(const float *rows, long n, unsigned dim, const float *q,
                      unsigned k, long *out)
{
    float best[MAX_K];
    unsigned have = 0;
    for (long i = 0; i < n; i++) {
        float d = l2sq(rows + (size_t)i * dim, q, dim);
        if (have == k && d >= best[k - 1])
            continue;
        unsigned at = have < k ? have++ : k - 1;
        for (; at > 0 && best[at - 1] > d; at--) {
            best[at] = best[at - 1];
            out[at] = out[at - 1];
        }
        best[at] = d;
        out[at] = i;
    }
}

/* A random permutation of [0, n) (Fisher-Yates) into perm. */
static void shuffle(long *perm, long n, uint64_t *seed)
{
    for (long i = 0; i < n; i++)
        perm[i] = i;
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(bench_next_unit(seed) * (double)(i + 1));
        long t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/*
 * rounds times: a fraction of the ids (a new random choice each round)
 * take new vectors, written into rows as they are upserted.
 */
static int churn(qv_db *db, const struct churn_args *a, float *rows,
                 uint64_t *seed, struct churn_run *run, char *err,
                 size_t errlen)
{
    long m = (long)(a->fraction * (double)a->n);
    long *perm = qv_malloc((size_t)a->n * sizeof *perm);
    float *fresh = NULL;
    int rc = -1;
    double secs = 0;
    if (!perm) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    m = m > 0 ? m : 1;
    for (unsigned r = 0; r < a->rounds; r++) {
        shuffle(perm, a->n, seed);
        qv_mem_free(fresh);
        if (!(fresh = bench_random_rows(m, a->dim, seed))) {
            snprintf(err, errlen, "out of memory");
            goto cleanup;
        }
        double t0 = cli_now();
        if (bench_upsert_rows(db, "churned", fresh, perm, 0, m, a->dim,
                              a->batch, err, errlen) != 0)
            goto cleanup;
        secs += cli_now() - t0;
        for (long i = 0; i < m; i++)
            memcpy(rows + (size_t)perm[i] * a->dim,
                   fresh + (size_t)i * a->dim, a->dim * sizeof *rows);
    }
    run->replaced = m * (long)a->rounds;
    run->replace_rate = secs > 0 ? (double)run->replaced / secs : 0;
    rc = 0;
cleanup:
    qv_mem_free(perm);
    qv_mem_free(fresh);
    return rc;
}

/* How many of a search's hits are among truth's k ids. */
static unsigned hits_among(const qv_hits *hits, const long *truth, unsigned k)
{
    unsigned found = 0;
    for (size_t i = 0; i < hits->count; i++) {
        long id = atol(hits->hits[i].id);
        for (unsigned j = 0; j < k; j++)
            found += truth[j] == id;
    }
    return found;
}

/* How many hits two searches share. */
static unsigned hits_shared(const qv_hits *a, const qv_hits *b)
{
    unsigned shared = 0;
    for (size_t i = 0; i < a->count; i++) {
        for (size_t j = 0; j < b->count; j++)
            shared += strcmp(a->hits[i].id, b->hits[j].id) == 0;
    }
    return shared;
}

static void print_ef(const struct churn_args *a, const struct churn_run *run,
                     unsigned ef, double recall, double recall_fresh,
                     double shared)
{
    json_t *o = json_pack(
        "{s:s, s:I, s:i, s:i, s:i, s:i, s:f, s:s, s:I, s:i, s:I, s:f, s:f, "
        "s:f, "
        "s:f, s:f, s:f, s:f, s:b}",
        "bench", "churn", "n", (json_int_t)a->n, "d", (int)a->dim, "M",
        (int)a->M, "ef_construction", (int)a->ef_construction, "rounds",
        (int)a->rounds, "fraction", a->fraction, "sync",
        a->nosync ? "nosync" : "durable", "batch",
        (json_int_t)a->batch, "k", (int)a->k, "nq", (json_int_t)a->nq,
        "ef", (double)ef, "insert_rows_per_s", run->insert_rate,
        "replace_rows_per_s", run->replace_rate, "replace_vs_insert",
        run->insert_rate > 0 ? run->replace_rate / run->insert_rate : 0.0,
        "recall", recall, "recall_fresh", recall_fresh, "shared_with_fresh",
        shared, "check", run->check_ok);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                JSON_REAL_PRECISION(5));
    puts(s ? s : "{}");
    fflush(stdout);
    free(s);
    json_decref(o);
}

/* For each ef: recall of both collections against truth (nq x k ids). */
static int measure(qv_db *db, const struct churn_args *a,
                   const struct churn_run *run, const float *queries,
                   const long *truth, char *err, size_t errlen)
{
    for (int e = 0; e < a->nefs; e++) {
        qv_search_options so = {.k = a->k, .ef = a->efs[e]};
        unsigned long found = 0, found_fresh = 0, shared = 0;
        for (long i = 0; i < a->nq; i++) {
            const float *q = queries + (size_t)i * a->dim;
            qv_hits *h = NULL, *f = NULL;
            if (qv_search(db, "churned", q, a->dim, &so, &h) != QV_OK ||
                qv_search(db, "fresh", q, a->dim, &so, &f) != QV_OK) {
                snprintf(err, errlen, "search: %s", qv_errmsg(db));
                qv_free(h);
                return -1;
            }
            found += hits_among(h, truth + (size_t)i * a->k, a->k);
            found_fresh += hits_among(f, truth + (size_t)i * a->k, a->k);
            shared += hits_shared(h, f);
            qv_free(h);
            qv_free(f);
        }
        double total = (double)a->nq * a->k;
        print_ef(a, run, a->efs[e], (double)found / total,
                 (double)found_fresh / total, (double)shared / total);
    }
    return 0;
}

/* Import, churn, check, import the final rows afresh. */
static int build(qv_db *db, const struct churn_args *a, float *rows,
                 uint64_t *seed, struct churn_run *run, char *err,
                 size_t errlen)
{
    qv_collection_config cfg = {.dim = a->dim, .metric = QV_METRIC_L2,
                                .M = a->M,
                                .ef_construction = a->ef_construction};
    char *report = NULL;
    if (qv_create_collection(db, "churned", &cfg) != QV_OK ||
        qv_create_collection(db, "fresh", &cfg) != QV_OK) {
        snprintf(err, errlen, "%s", qv_errmsg(db));
        return -1;
    }
    double t0 = cli_now();
    if (bench_upsert_rows(db, "churned", rows, NULL, 0, a->n, a->dim,
                          a->batch, err, errlen) != 0)
        return -1;
    run->insert_rate = (double)a->n / (cli_now() - t0);
    if (churn(db, a, rows, seed, run, err, errlen) != 0)
        return -1;
    run->check_ok = qv_check(db, &report) == QV_OK;
    qv_free(report);
    return bench_upsert_rows(db, "fresh", rows, NULL, 0, a->n, a->dim,
                             a->batch, err, errlen);
}

int bench_churn(int argc, char **argv)
{
    struct churn_args a;
    struct churn_run run = {0};
    char err[512] = "", *dir = NULL;
    float *rows = NULL, *queries = NULL;
    long *truth = NULL;
    qv_db *db = NULL;
    int rc = 1;
    uint64_t seed = 0x9E3779B97F4A7C15ull;

    if (parse_churn_args(argc, argv, &a) != 0)
        return 2;
    qv_open_options oo = {.threads = a.threads,
                          .flags = a.nosync ? QV_OPEN_NOSYNC : 0};
    rows = bench_random_rows(a.n, a.dim, &seed);
    queries = bench_random_rows(a.nq, a.dim, &seed);
    truth = qv_malloc((size_t)a.nq * a.k * sizeof *truth);
    if (!rows || !queries || !truth || !(dir = bench_temp_dir())) {
        snprintf(err, sizeof err, "out of memory or no temporary directory");
        goto cleanup;
    }
    if (qv_open(dir, &oo, &db) != QV_OK) {
        snprintf(err, sizeof err, "%s", qv_errmsg(db));
        goto cleanup;
    }
    if (build(db, &a, rows, &seed, &run, err, sizeof err) != 0)
        goto cleanup;
    for (long i = 0; i < a.nq; i++)
        exact_knn(rows, a.n, a.dim, queries + (size_t)i * a.dim, a.k,
                  truth + (size_t)i * a.k);
    if (measure(db, &a, &run, queries, truth, err, sizeof err) != 0)
        goto cleanup;
    rc = 0;
cleanup:
    if (rc != 0)
        fprintf(stderr, "quiver bench churn: %s\n", err);
    qv_close(db);
    if (dir) {
        bench_remove_dir(dir);
        free(dir);
    }
    qv_mem_free(rows);
    qv_mem_free(queries);
    qv_mem_free(truth);
    return rc;
}
