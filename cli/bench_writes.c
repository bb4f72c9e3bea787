/*
 * bench_writes.c - `quiver bench writes`: the latency of single writes
 * (one document a transaction) as the collection grows. For each size n
 * in --n, a fresh database gets n uniform random rows, then is reopened
 * once with durable commits and once with QV_OPEN_NOSYNC, and each time
 * --writes single inserts (new ids), updates (an existing id takes a new
 * vector) and deletes are timed one by one, after a first write timed
 * apart (it builds the graph's write side after the load). One JSON line
 * per size and mode: mean, median and 99th percentile per kind, in
 * milliseconds.
 *
 * A write whose cost does not grow with the collection shows the same
 * figures at every n; the sizes are chosen apart (60,000 and 240,000 by
 * default) so that growth in n stands out from the machine's noise.
 *
 * --db DIR times the writes on a database built before (collection
 * bench, ids "0".."n-1", as `quiver bench ann --db` makes it) instead of
 * a fresh one: large sets are built once. The writes stay in it (each
 * run leaves two more documents than it found), so time each run on a
 * copy. --vectors FILE (.fvecs or .bvecs) takes the written vectors from
 * FILE, row after row, instead of uniform random ones: writes like the
 * data they go into. --vectors-in-memory opens with
 * QV_OPEN_VECTORS_IN_MEMORY (the graph copies its vectors at open).
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
#include "cli/vecfile.h"

#define MAX_SIZES 8
#define IMPORT_BATCH 1000

struct writes_args {
    long sizes[MAX_SIZES];
    int nsizes, json, check, in_memory;
    unsigned dim, M, ef_construction, threads;
    long writes;
    const char *db, *vectors;
    float *rows;       /* --vectors: nrows rows of dim, used in turn */
    long nrows, next_row;
};

/* The latencies of one kind of write, in seconds. */
struct latencies {
    double *s;
    long n;
};

static const char writes_usage[] =
    "usage: quiver bench writes [--n 60000,240000] [--dim 32] [--writes 200]\n"
    "       [--M 16] [--ef-construction 200] [--threads 2] [--check]\n"
    "       [--json] [--db DIR] [--vectors FILE] [--vectors-in-memory]\n";

static int parse_writes_args(int argc, char **argv, struct writes_args *a)
{
    enum { O_N = 256, O_DIM, O_WRITES, O_M, O_EFC, O_THREADS, O_CHECK,
           O_JSON, O_DB, O_VECTORS, O_IN_MEMORY };
    static const struct option opts[] = {
        {"n", required_argument, 0, O_N},
        {"dim", required_argument, 0, O_DIM},
        {"writes", required_argument, 0, O_WRITES},
        {"M", required_argument, 0, O_M},
        {"ef-construction", required_argument, 0, O_EFC},
        {"threads", required_argument, 0, O_THREADS},
        {"check", no_argument, 0, O_CHECK},
        {"json", no_argument, 0, O_JSON},
        {"db", required_argument, 0, O_DB},
        {"vectors", required_argument, 0, O_VECTORS},
        {"vectors-in-memory", no_argument, 0, O_IN_MEMORY},
        {0, 0, 0, 0}};
    *a = (struct writes_args){.sizes = {60000, 240000}, .nsizes = 2,
                              .dim = 32, .M = 16, .ef_construction = 200,
                              .threads = 2, .writes = 200};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DIM: a->dim = (unsigned)atoi(optarg); break;
        case O_WRITES: a->writes = atol(optarg); break;
        case O_M: a->M = (unsigned)atoi(optarg); break;
        case O_EFC: a->ef_construction = (unsigned)atoi(optarg); break;
        case O_THREADS: a->threads = (unsigned)atoi(optarg); break;
        case O_CHECK: a->check = 1; break;
        case O_JSON: a->json = 1; break;
        case O_DB: a->db = optarg; break;
        case O_VECTORS: a->vectors = optarg; break;
        case O_IN_MEMORY: a->in_memory = 1; break;
        case O_N:
            if ((a->nsizes = bench_parse_list(optarg, 1, LONG_MAX, a->sizes,
                                              MAX_SIZES)) < 0) {
                fprintf(stderr, "quiver bench writes: bad --n list '%s'\n",
                        optarg);
                return -1;
            }
            break;
        default:
            fputs(writes_usage, stderr);
            return -1;
        }
    }
    if (optind != argc || a->dim < 1 || a->writes < 1 || a->threads < 1) {
        fputs(writes_usage, stderr);
        return -1;
    }
    return 0;
}

/* The next written vector: the next row of --vectors, or random. */
static void next_row(struct writes_args *a, uint64_t *seed, float *row)
{
    if (a->rows) {
        memcpy(row, a->rows + (size_t)(a->next_row++ % a->nrows) * a->dim,
               a->dim * sizeof *row);
        return;
    }
    for (unsigned j = 0; j < a->dim; j++)
        row[j] = (float)bench_next_unit(seed);
}

/* Read every row of --vectors (its dimension becomes --dim). */
static int load_vectors(struct writes_args *a, char *err, size_t errlen)
{
    vecfile *vf = NULL;
    if (vecfile_open(a->vectors, &vf, err, errlen) != 0)
        return -1;
    a->dim = vecfile_dim(vf);
    a->nrows = (long)vecfile_rows(vf);
    if (a->nrows < 1)
        snprintf(err, errlen, "%s: no rows", a->vectors);
    else
        a->rows = bench_read_rows(vf, &a->nrows, err, errlen);
    vecfile_close(vf);
    return a->rows ? 0 : -1;
}

static int by_value(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

/* Mean, median and 99th percentile in ms (sorts l). */
static json_t *summary(struct latencies *l)
{
    double sum = 0;
    qsort(l->s, (size_t)l->n, sizeof *l->s, by_value);
    for (long i = 0; i < l->n; i++)
        sum += l->s[i];
    long p99 = (long)((double)l->n * 0.99);
    p99 = p99 < l->n ? p99 : l->n - 1;
    return json_pack("{s:f, s:f, s:f}", "mean_ms", 1e3 * sum / (double)l->n,
                     "p50_ms", 1e3 * l->s[l->n / 2], "p99_ms",
                     1e3 * l->s[p99]);
}

/*
 * writes single inserts of new ids from *next_id, then as many updates of
 * ids below n, then as many deletes of ids below n (each id once, spread
 * over the collection by a stride prime to n; *deleted_from is where this
 * mode's deletes start in that order). Each write is timed alone.
 */
static int time_writes(qv_db *db, struct writes_args *a, long n,
                       long *next_id, long *deleted_from, uint64_t *seed,
                       struct latencies lat[3], char *err, size_t errlen)
{
    float *row = qv_malloc(a->dim * sizeof *row);
    char name[24];
    int rc = -1;
    if (!row) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    for (int kind = 0; kind < 3; kind++) {
        for (long i = 0; i < a->writes; i++) {
            next_row(a, seed, row);
            long id = kind == 0 ? (*next_id)++
                    : kind == 1 ? (long)(bench_next_unit(seed) * (double)n)
                                : (*deleted_from + i) * 7919 % n;
            snprintf(name, sizeof name, "%ld", id);
            qv_doc doc = {name, row, a->dim, NULL};
            double t0 = cli_now();
            qv_status st = kind < 2 ? qv_upsert(db, "bench", &doc, 1)
                                    : qv_delete(db, "bench", name);
            lat[kind].s[lat[kind].n++] = cli_now() - t0;
            if (st != QV_OK) {
                snprintf(err, errlen, "%s: %s", kind < 2 ? "upsert"
                         : "delete", qv_errmsg(db));
                goto cleanup;
            }
        }
    }
    *deleted_from += a->writes;
    rc = 0;
cleanup:
    qv_mem_free(row);
    return rc;
}

/* One insert of a new id (*next_id), the first write after the open. */
static int first_write(qv_db *db, struct writes_args *a, long *next_id,
                       uint64_t *seed, char *err, size_t errlen)
{
    float *row = qv_malloc(a->dim * sizeof *row);
    if (row)
        next_row(a, seed, row);
    char name[24];
    snprintf(name, sizeof name, "%ld", (*next_id)++);
    qv_doc doc = {name, row, a->dim, NULL};
    qv_status st = row ? qv_upsert(db, "bench", &doc, 1) : QV_ERR_NOMEM;
    qv_mem_free(row);
    if (st != QV_OK)
        snprintf(err, errlen, "upsert: %s", qv_errmsg(db));
    return st == QV_OK ? 0 : -1;
}

static void print_mode(const struct writes_args *a, long n, int nosync,
                       double import_s, double open_s, double first_s,
                       int check_ok, struct latencies lat[3])
{
    static const char *const kinds[3] = {"insert", "update", "delete"};
    json_t *o = json_pack("{s:s, s:I, s:i, s:i, s:i, s:s, s:I, s:f, s:f}",
                          "bench", "writes", "n", (json_int_t)n, "d",
                          (int)a->dim, "M", (int)a->M, "ef_construction",
                          (int)a->ef_construction, "sync",
                          nosync ? "nosync" : "durable", "writes",
                          (json_int_t)a->writes, "import_s", import_s,
                          "open_s", open_s);
    if (o)
        json_object_set_new(o, "first_write_ms", json_real(1e3 * first_s));
    for (int k = 0; o && k < 3; k++)
        json_object_set_new(o, kinds[k], summary(&lat[k]));
    if (o && a->check)
        json_object_set_new(o, "check", json_boolean(check_ok));
    /* memory after the writes: anonymous, file-backed (LMDB's map) and
     * the peak of the process so far (earlier sizes and modes included) */
    if (o) {
        json_object_set_new(o, "rss_anon_bytes",
                            json_integer(bench_status_bytes("RssAnon")));
        json_object_set_new(o, "rss_file_bytes",
                            json_integer(bench_status_bytes("RssFile")));
        json_object_set_new(o, "max_rss_bytes",
                            json_integer(bench_status_bytes("VmHWM")));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                JSON_REAL_PRECISION(5));
    puts(s ? s : "{}");
    fflush(stdout);
    free(s);
    json_decref(o);
}

/* Reopen dir (durable or not), time the writes, print them. */
static int run_mode(struct writes_args *a, const char *dir, long n,
                    int nosync, double import_s, long *next_id,
                    long *deleted_from, uint64_t *seed, char *err,
                    size_t errlen)
{
    qv_open_options oo = {.threads = a->threads,
                          .flags = (nosync ? QV_OPEN_NOSYNC : 0) |
                                   (a->in_memory ? QV_OPEN_VECTORS_IN_MEMORY
                                                 : 0)};
    struct latencies lat[3] = {{0}};
    qv_db *db = NULL;
    char *report = NULL;
    int rc = -1, check_ok = 0;
    for (int k = 0; k < 3; k++) {
        if (!(lat[k].s = qv_malloc((size_t)a->writes * sizeof *lat[k].s))) {
            snprintf(err, errlen, "out of memory");
            goto cleanup;
        }
    }
    double t0 = cli_now();
    qv_hits *hits = NULL;
    qv_search_options so = {.k = 1};
    if (qv_open(dir, &oo, &db) != QV_OK) {
        snprintf(err, errlen, "%s", qv_errmsg(db));
        goto cleanup;
    }
    /* the graph loads on first use: a search, timed with the open */
    float *q = bench_random_rows(1, a->dim, seed);
    qv_status st = q ? qv_search(db, "bench", q, a->dim, &so, &hits)
                     : QV_ERR_NOMEM;
    qv_mem_free(q);
    qv_free(hits);
    if (st != QV_OK) {
        snprintf(err, errlen, "search: %s", qv_errmsg(db));
        goto cleanup;
    }
    double open_s = cli_now() - t0;
    /* the first write after a load builds the graph's write side (its
     * reverse lists and labels, O(n) once): timed apart */
    t0 = cli_now();
    if (first_write(db, a, next_id, seed, err, errlen) != 0)
        goto cleanup;
    double first_s = cli_now() - t0;
    if (time_writes(db, a, n, next_id, deleted_from, seed, lat, err,
                    errlen) != 0)
        goto cleanup;
    if (a->check)
        check_ok = qv_check(db, &report) == QV_OK;
    print_mode(a, n, nosync, import_s, open_s, first_s, check_ok, lat);
    rc = 0;
cleanup:
    for (int k = 0; k < 3; k++)
        qv_mem_free(lat[k].s);
    qv_free(report);
    qv_close(db);
    return rc;
}

/* A fresh database of n rows, then both modes' writes. */
static int run_size(struct writes_args *a, long n, char *err,
                    size_t errlen)
{
    char *dir = bench_temp_dir();
    qv_db *db = NULL;
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    float *rows = bench_random_rows(n, a->dim, &seed);
    qv_open_options oo = {.threads = a->threads, .flags = QV_OPEN_NOSYNC};
    qv_collection_config cfg = {.dim = a->dim, .metric = QV_METRIC_L2,
                                .M = a->M,
                                .ef_construction = a->ef_construction};
    long next_id = n, deleted_from = 0;
    int rc = -1;
    if (!dir || !rows) {
        snprintf(err, errlen, "%s", dir ? "out of memory for the rows"
                                        : "cannot make a temporary directory");
        goto cleanup;
    }
    if (qv_open(dir, &oo, &db) != QV_OK ||
        qv_create_collection(db, "bench", &cfg) != QV_OK) {
        snprintf(err, errlen, "%s", qv_errmsg(db));
        goto cleanup;
    }
    double t0 = cli_now();
    if (bench_upsert_rows(db, "bench", rows, NULL, 0, n, a->dim,
                          IMPORT_BATCH, err, errlen) != 0)
        goto cleanup;
    double import_s = cli_now() - t0;
    qv_close(db);
    db = NULL;
    for (int nosync = 0; nosync < 2; nosync++) {
        if (run_mode(a, dir, n, nosync, import_s, &next_id, &deleted_from,
                     &seed, err, errlen) != 0)
            goto cleanup;
    }
    rc = 0;
cleanup:
    qv_close(db);
    qv_mem_free(rows);
    if (dir) {
        bench_remove_dir(dir);
        free(dir);
    }
    return rc;
}

/* --db: both modes' writes on the database there, as it is. */
static int run_db(struct writes_args *a, char *err, size_t errlen)
{
    qv_db *db = NULL;
    qv_open_options oo = {.threads = a->threads, .flags = QV_OPEN_NOSYNC};
    qv_collection_info info;
    if (qv_open(a->db, &oo, &db) != QV_OK ||
        qv_describe_collection(db, "bench", &info) != QV_OK) {
        snprintf(err, errlen, "%s: %s", a->db, qv_errmsg(db));
        qv_close(db);
        return -1;
    }
    qv_close(db);
    if (!a->vectors)
        a->dim = info.dim;
    if (info.dim != a->dim) {
        snprintf(err, errlen, "%s holds %u-d vectors, the writes are %u-d",
                 a->db, info.dim, a->dim);
        return -1;
    }
    a->M = info.M;
    a->ef_construction = info.ef_construction;
    long n = (long)info.count;
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    long next_id = n, deleted_from = 0;
    for (int nosync = 0; nosync < 2; nosync++) {
        if (run_mode(a, a->db, n, nosync, 0, &next_id, &deleted_from, &seed,
                     err, errlen) != 0)
            return -1;
    }
    return 0;
}

int bench_writes(int argc, char **argv)
{
    struct writes_args a;
    char err[512] = "";
    int rc = 0;
    if (parse_writes_args(argc, argv, &a) != 0)
        return 2;
    if (a.vectors && load_vectors(&a, err, sizeof err) != 0) {
        rc = 1;
    } else if (a.db) {
        rc = run_db(&a, err, sizeof err) != 0;
    } else {
        for (int i = 0; i < a.nsizes && !rc; i++)
            rc = run_size(&a, a.sizes[i], err, sizeof err) != 0;
    }
    if (rc)
        fprintf(stderr, "quiver bench writes: %s\n", err);
    qv_mem_free(a.rows);
    return rc;
}
