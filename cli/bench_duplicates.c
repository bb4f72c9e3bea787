/*
 * bench_duplicates.c - `quiver bench duplicates`: the import rate of
 * generated vectors that are distinct, all equal, or drawn from a few
 * distinct values, through the public API into fresh databases. Exact
 * copies tie at every distance, which once made inserts quadratic; this
 * bench shows each case beside distinct vectors of the same size.
 *
 * Each pass imports every case once, in turn (so that the cases share the
 * machine's noise), and each case reports its best pass. After each import
 * a search for the first row's vector counts the hits at distance 0 and
 * qv_check verifies the database. --write DIR also writes each case's rows
 * as texmex .fvecs, for peers (tools/bench-duplicates-vs-hnswlib).
 */
#include <getopt.h>
#include <limits.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "cli/bench.h"
#include "cli/cli.h"

#define MAX_CASES 8
#define BATCH 1000

struct dup_args {
    long n;
    unsigned dim, M, ef_construction, threads, passes;
    long values[MAX_CASES];   /* 0: distinct vectors; V: V distinct values */
    int ncases, json;
    const char *write_dir;
};

/* What one case measured over the passes. */
struct dup_case {
    double best_s;
    size_t hits_at_0;
    int check_ok;
};

static const char dup_usage[] =
    "usage: quiver bench duplicates [--n 20000] [--dim 4] [--values 0,1,10]\n"
    "       [--passes 3] [--threads 2] [--M 16] [--ef-construction 200]\n"
    "       [--write DIR] [--json]\n";

static int parse_dup_args(int argc, char **argv, struct dup_args *a)
{
    enum { O_N = 256, O_DIM, O_VALUES, O_PASSES, O_THREADS, O_M, O_EFC,
           O_WRITE, O_JSON };
    static const struct option opts[] = {
        {"n", required_argument, 0, O_N},
        {"dim", required_argument, 0, O_DIM},
        {"values", required_argument, 0, O_VALUES},
        {"passes", required_argument, 0, O_PASSES},
        {"threads", required_argument, 0, O_THREADS},
        {"M", required_argument, 0, O_M},
        {"ef-construction", required_argument, 0, O_EFC},
        {"write", required_argument, 0, O_WRITE},
        {"json", no_argument, 0, O_JSON},
        {0, 0, 0, 0}};
    *a = (struct dup_args){.n = 20000, .dim = 4, .M = 16,
                           .ef_construction = 200, .threads = 2,
                           .passes = 3, .values = {0, 1, 10}, .ncases = 3};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_N: a->n = atol(optarg); break;
        case O_DIM: a->dim = (unsigned)atoi(optarg); break;
        case O_PASSES: a->passes = (unsigned)atoi(optarg); break;
        case O_THREADS: a->threads = (unsigned)atoi(optarg); break;
        case O_M: a->M = (unsigned)atoi(optarg); break;
        case O_EFC: a->ef_construction = (unsigned)atoi(optarg); break;
        case O_WRITE: a->write_dir = optarg; break;
        case O_JSON: a->json = 1; break;
        case O_VALUES:
            if ((a->ncases = bench_parse_list(optarg, 0, LONG_MAX, a->values,
                                              MAX_CASES)) < 0) {
                fprintf(stderr, "quiver bench duplicates: bad --values "
                        "list '%s'\n", optarg);
                return -1;
            }
            break;
        default:
            fputs(dup_usage, stderr);
            return -1;
        }
    }
    if (optind != argc || a->n < 1 || a->dim < 1 || a->passes < 1 ||
        a->threads < 1) {
        fputs(dup_usage, stderr);
        return -1;
    }
    return 0;
}

/*
 * The rows of a case: values 0, uniform random vectors in [0, 1)^dim;
 * values 1, every row [0, ..., 0, 1] (the vector); values V, each
 * row one of V random vectors, chosen at random.
 */
static float *make_rows(long n, unsigned dim, long values)
{
    float *rows = qv_malloc((size_t)n * dim * sizeof *rows);
    float *pool = values > 1 ? qv_malloc((size_t)values * dim * sizeof *pool)
                             : NULL;
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)values;
    if (!rows || (values > 1 && !pool)) {
        qv_mem_free(rows);
        rows = NULL;
        goto cleanup;
    }
    for (long i = 0; values > 1 && i < values * (long)dim; i++)
        pool[i] = (float)bench_next_unit(&seed);
    for (long i = 0; i < n; i++) {
        float *row = rows + (size_t)i * dim;
        if (values == 1) {
            for (unsigned j = 0; j < dim; j++)
                row[j] = j + 1 == dim;
        } else if (values > 1) {
            long pick = (long)(bench_next_unit(&seed) * (double)values);
            memcpy(row, pool + (size_t)pick * dim, dim * sizeof *row);
        } else {
            for (unsigned j = 0; j < dim; j++)
                row[j] = (float)bench_next_unit(&seed);
        }
    }
cleanup:
    qv_mem_free(pool);
    return rows;
}

static void case_name(long values, char *buf, size_t len)
{
    if (values == 0)
        snprintf(buf, len, "distinct");
    else
        snprintf(buf, len, "values-%ld", values);
}

/* DIR/NAME.fvecs: the rows as texmex float vectors. */
static int write_fvecs(const char *dir, const char *name, const float *rows,
                       long n, unsigned dim)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.fvecs", dir, name);
    FILE *f = fopen(path, "wb");
    int32_t d = (int32_t)dim;
    int rc = f ? 0 : -1;
    for (long i = 0; i < n && rc == 0; i++) {
        if (fwrite(&d, sizeof d, 1, f) != 1 ||
            fwrite(rows + (size_t)i * dim, sizeof *rows, dim, f) != dim)
            rc = -1;
    }
    if (f && fclose(f) != 0)
        rc = -1;
    return rc;
}

/* Upsert rows as ids "0".."n-1" in batches; returns seconds or < 0. */
static double import_rows(qv_db *db, const float *rows, long n, unsigned dim,
                          char *err, size_t errlen)
{
    double t0 = cli_now();
    if (bench_upsert_rows(db, "bench", rows, NULL, 0, n, dim, BATCH, err,
                          errlen) != 0)
        return -1;
    return cli_now() - t0;
}

/* The hits at distance 0 of a search for the first row (k = 10), and
 * whether qv_check passes. */
static int inspect(qv_db *db, const float *rows, unsigned dim,
                   struct dup_case *out, char *err, size_t errlen)
{
    qv_hits *hits = NULL;
    char *report = NULL;
    qv_search_options opt = {.k = 10};
    int rc = -1;
    if (qv_search(db, "bench", rows, dim, &opt, &hits) != QV_OK) {
        snprintf(err, errlen, "search: %s", qv_errmsg(db));
        goto cleanup;
    }
    out->hits_at_0 = 0;
    for (size_t i = 0; i < hits->count; i++)
        out->hits_at_0 += hits->hits[i].distance == 0.0f;
    out->check_ok = qv_check(db, &report) == QV_OK;
    rc = 0;
cleanup:
    qv_free(hits);
    qv_free(report);
    return rc;
}

/* One import of a case into a fresh database; keeps the best time. */
static int run_case(const struct dup_args *a, const float *rows,
                    struct dup_case *c, char *err, size_t errlen)
{
    char *dir = bench_temp_dir();
    qv_db *db = NULL;
    qv_open_options oo = {.threads = a->threads};
    qv_collection_config cfg = {.dim = a->dim, .metric = QV_METRIC_L2,
                                .M = a->M,
                                .ef_construction = a->ef_construction};
    int rc = -1;
    if (!dir) {
        snprintf(err, errlen, "cannot make a temporary directory");
        goto cleanup;
    }
    if (qv_open(dir, &oo, &db) != QV_OK ||
        qv_create_collection(db, "bench", &cfg) != QV_OK) {
        snprintf(err, errlen, "%s", qv_errmsg(db));
        goto cleanup;
    }
    double secs = import_rows(db, rows, a->n, a->dim, err, errlen);
    if (secs < 0 || inspect(db, rows, a->dim, c, err, errlen) != 0)
        goto cleanup;
    if (c->best_s == 0 || secs < c->best_s)
        c->best_s = secs;
    rc = 0;
cleanup:
    qv_close(db);
    if (dir) {
        bench_remove_dir(dir);
        free(dir);
    }
    return rc;
}

static void print_case(const struct dup_args *a, long values,
                       const struct dup_case *c, double distinct_rate)
{
    char name[32];
    double rate = (double)a->n / c->best_s;
    case_name(values, name, sizeof name);
    if (!a->json) {
        printf("%-10s n=%ld d=%u rows_per_s=%.0f seconds=%.3f "
               "hits_at_0=%zu check=%s\n", name, a->n, a->dim, rate,
               c->best_s, c->hits_at_0, c->check_ok ? "ok" : "FAILED");
        return;
    }
    json_t *o = json_pack("{s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:f, "
                          "s:f, s:I, s:b}",
                          "case", name, "values", (json_int_t)values,
                          "n", (json_int_t)a->n, "d", (int)a->dim,
                          "M", (int)a->M, "ef_construction",
                          (int)a->ef_construction, "threads",
                          (int)a->threads, "passes", (int)a->passes,
                          "seconds", c->best_s, "rows_per_s", rate,
                          "hits_at_0", (json_int_t)c->hits_at_0,
                          "check", c->check_ok);
    if (o && distinct_rate > 0)
        json_object_set_new(o, "vs_distinct", json_real(rate / distinct_rate));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                JSON_REAL_PRECISION(6));
    puts(s ? s : "{}");
    fflush(stdout);
    free(s);
    json_decref(o);
}

int bench_duplicates(int argc, char **argv)
{
    struct dup_args a;
    struct dup_case cases[MAX_CASES] = {0};
    float *rows[MAX_CASES] = {0};
    char err[512] = "", name[32];
    int rc = 1;

    if (parse_dup_args(argc, argv, &a) != 0)
        return 2;
    for (int i = 0; i < a.ncases; i++) {
        rows[i] = make_rows(a.n, a.dim, a.values[i]);
        if (!rows[i]) {
            snprintf(err, sizeof err, "out of memory for the rows");
            goto cleanup;
        }
        case_name(a.values[i], name, sizeof name);
        if (a.write_dir &&
            write_fvecs(a.write_dir, name, rows[i], a.n, a.dim) != 0) {
            snprintf(err, sizeof err, "cannot write %s/%s.fvecs",
                     a.write_dir, name);
            goto cleanup;
        }
    }
    /* pass by pass, every case in turn: the machine is shared and noisy,
     * and cases run side by side meet the same noise */
    for (unsigned p = 0; p < a.passes; p++) {
        for (int i = 0; i < a.ncases; i++) {
            if (run_case(&a, rows[i], &cases[i], err, sizeof err) != 0)
                goto cleanup;
        }
    }
    double distinct_rate = 0;
    for (int i = 0; i < a.ncases; i++) {
        if (a.values[i] == 0)
            distinct_rate = (double)a.n / cases[i].best_s;
    }
    for (int i = 0; i < a.ncases; i++)
        print_case(&a, a.values[i], &cases[i], distinct_rate);
    rc = 0;
cleanup:
    if (rc != 0)
        fprintf(stderr, "quiver bench duplicates: %s\n", err);
    for (int i = 0; i < a.ncases; i++)
        qv_mem_free(rows[i]);
    return rc;
}
