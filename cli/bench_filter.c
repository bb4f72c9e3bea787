/*
 * bench_filter.c - `quiver bench filter`: filtered search on a texmex base
 * whose documents carry {"label": class, "b100": row % 100,
 * "b1000": row % 1000} (classes from --labels, one byte per row), with int
 * indexes on the three fields. For each selectivity (label in 5 classes,
 * label = c, b100 = v, b1000 = v; the value varies with the query) it
 * prints recall@k against exact filtered search, the fewest hits any query
 * got, and QPS, beside the QPS of unfiltered search in the same run.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "cli/bench.h"
#include "cli/cli.h"

struct filter_args {
    const char *base, *query, *labels, *db;
    long nbase, nq;
    unsigned k, ef;
    int json;
    int only; /* -1: every case; else the one case to run */
};

static const char filter_usage[] =
    "usage: quiver bench filter --base FILE --query FILE --labels FILE\n"
    "       [--nbase N] [--nq 500] [--k 10] [--ef 64] [--db DIR] [--json]\n"
    "       [--case 50%|10%|1%|0.1%]\n";

static const char *const case_names[] = {"label in 5 classes", "label = c",
                                         "b100 = v", "b1000 = v"};
static const double case_selectivity[] = {0.5, 0.1, 0.01, 0.001};
static const char *const case_options[] = {"50%", "10%", "1%", "0.1%"};

/* The case a --case value names, or -1. */
static int case_index(const char *text)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(text, case_options[i]) == 0)
            return i;
    return -1;
}

static int parse_filter_args(int argc, char **argv, struct filter_args *a)
{
    enum { O_LABELS = 256, O_EF, O_CASE };
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'}, {"query", required_argument, 0, 'q'},
        {"labels", required_argument, 0, O_LABELS},
        {"nbase", required_argument, 0, 'n'}, {"nq", required_argument, 0, 'Q'},
        {"k", required_argument, 0, 'k'},    {"ef", required_argument, 0, O_EF},
        {"db", required_argument, 0, 'd'},   {"json", no_argument, 0, 'j'},
        {"case", required_argument, 0, O_CASE},
        {0, 0, 0, 0}};
    *a = (struct filter_args){.nq = 500, .k = 10, .ef = 64, .only = -1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': a->base = optarg; break;
        case 'q': a->query = optarg; break;
        case O_LABELS: a->labels = optarg; break;
        case 'n': a->nbase = atol(optarg); break;
        case 'Q': a->nq = atol(optarg); break;
        case 'k': a->k = (unsigned)atoi(optarg); break;
        case O_EF: a->ef = (unsigned)atoi(optarg); break;
        case 'd': a->db = optarg; break;
        case 'j': a->json = 1; break;
        case O_CASE:
            a->only = case_index(optarg);
            if (a->only < 0) {
                fprintf(stderr, "quiver bench filter: --case %s: expected "
                                "50%%, 10%%, 1%% or 0.1%%\n", optarg);
                return -1;
            }
            break;
        default:
            fputs(filter_usage, stderr);
            return -1;
        }
    }
    if (!a->base || !a->query || !a->labels || optind != argc || a->k == 0 ||
        a->nq <= 0) {
        fputs(filter_usage, stderr);
        return -1;
    }
    return 0;
}

/* Import rows with their payloads, in batches of 1,000. */
static int import_with_payloads(qv_db *db, vecfile *base, FILE *labels,
                                long n, char *err, size_t errlen)
{
    uint32_t dim = vecfile_dim(base);
    float *vecs = qv_malloc(1000 * (size_t)dim * sizeof *vecs);
    char (*ids)[24] = qv_malloc(1000 * sizeof *ids);
    char (*payloads)[96] = qv_malloc(1000 * sizeof *payloads);
    qv_doc *docs = qv_malloc(1000 * sizeof *docs);
    int rc = -1;
    for (long row = 0; vecs && ids && payloads && docs && row < n;) {
        size_t m = 0;
        for (; m < 1000 && row < n; m++, row++) {
            int label = fgetc(labels);
            if (label == EOF ||
                vecfile_read_floats(base, vecs + m * dim, err, errlen) != 1) {
                if (!err[0])
                    snprintf(err, errlen, "labels end at row %ld", row);
                goto cleanup;
            }
            snprintf(ids[m], sizeof ids[m], "%ld", row);
            snprintf(payloads[m], sizeof payloads[m],
                     "{\"label\":%d,\"b100\":%ld,\"b1000\":%ld}", label,
                     row % 100, row % 1000);
            docs[m] = (qv_doc){ids[m], vecs + m * dim, dim, payloads[m]};
        }
        if (qv_upsert(db, "bench", docs, m) != QV_OK) {
            snprintf(err, errlen, "upsert: %s", qv_errmsg(db));
            goto cleanup;
        }
    }
    rc = vecs && ids && payloads && docs ? 0 : -1;
cleanup:
    qv_mem_free(vecs);
    qv_mem_free(ids);
    qv_mem_free(payloads);
    qv_mem_free(docs);
    return rc;
}

/*
 * The collection "bench" with n rows and its three indexes: imported, or
 * the one a previous run left in --db (the import and the graph's build
 * take most of a run).
 */
static int prepare_collection(qv_db *db, vecfile *base, FILE *labels,
                              long n, char *err, size_t errlen)
{
    qv_collection_info info;
    if (qv_describe_collection(db, "bench", &info) == QV_OK) {
        if (info.count == (uint64_t)n && info.dim == vecfile_dim(base))
            return 0;
        snprintf(err, errlen, "the database holds a collection bench of "
                 "%llu x %u, not %ld x %u: remove it or pick another --db",
                 (unsigned long long)info.count, info.dim, n,
                 vecfile_dim(base));
        return -1;
    }
    if (qv_create_collection(db, "bench",
                             &(qv_collection_config){
                                 .dim = vecfile_dim(base)}) != QV_OK ||
        import_with_payloads(db, base, labels, n, err, errlen) != 0 ||
        qv_create_index(db, "bench", "label", QV_INDEX_INT) != QV_OK ||
        qv_create_index(db, "bench", "b100", QV_INDEX_INT) != QV_OK ||
        qv_create_index(db, "bench", "b1000", QV_INDEX_INT) != QV_OK)
        return -1;
    return 0;
}

/* The filter of query i for a selectivity case. */
static void filter_text(int which, long i, char *out, size_t len)
{
    switch (which) {
    case 0:
        snprintf(out, len, "{\"label\":{\"$in\":[%ld,%ld,%ld,%ld,%ld]}}",
                 i % 10, (i + 1) % 10, (i + 2) % 10, (i + 3) % 10,
                 (i + 4) % 10);
        break;
    case 1:
        snprintf(out, len, "{\"label\":%ld}", i % 10);
        break;
    case 2:
        snprintf(out, len, "{\"b100\":%ld}", (i * 7) % 100);
        break;
    default:
        snprintf(out, len, "{\"b1000\":%ld}", (i * 13) % 1000);
        break;
    }
}


/* One timed pass of the queries of a case (which < 0: unfiltered) into
 * hits; returns its seconds, or -1. */
static double time_pass(qv_db *db, const struct filter_args *a,
                        const float *q, uint32_t dim, int which,
                        qv_hits **hits)
{
    char text[128];
    double t0 = cli_now();
    for (long i = 0; i < a->nq; i++) {
        if (which >= 0)
            filter_text(which, i, text, sizeof text);
        qv_search_options opt = {.k = a->k, .ef = a->ef,
                                 .filter = which >= 0 ? text : NULL};
        qv_free(hits[i]);
        hits[i] = NULL;
        if (qv_search(db, "bench", q + i * dim, dim, &opt, &hits[i]) != QV_OK)
            return -1;
    }
    return cli_now() - t0;
}

struct case_result {
    double qps, unfiltered_qps;   /* best passes */
    double first_ratio;           /* of the first passes */
    double recall;
    size_t min_hits;
    double distances, unfiltered_distances;  /* per query, from explain */
    long widened;                 /* queries whose walk came back short */
};

/* A number field of an explain object, or -1. */
static double explain_number(const char *explain, const char *field)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    const char *at = explain ? strstr(explain, key) : NULL;
    return at ? strtod(at + strlen(key), NULL) : -1;
}

/* An untimed pass with explain: mean distances computed per query, and
 * how many queries widened (into *widened when not NULL). */
static int explain_pass(qv_db *db, const struct filter_args *a,
                        const float *q, uint32_t dim, int which,
                        double *distances, long *widened)
{
    char text[128];
    double sum = 0;
    long wide = 0;
    for (long i = 0; i < a->nq; i++) {
        if (which >= 0)
            filter_text(which, i, text, sizeof text);
        qv_search_options opt = {.k = a->k, .ef = a->ef, .explain = 1,
                                 .filter = which >= 0 ? text : NULL};
        qv_hits *h = NULL;
        if (qv_search(db, "bench", q + i * dim, dim, &opt, &h) != QV_OK)
            return -1;
        sum += explain_number(h->explain, "distances");
        wide += explain_number(h->explain, "widenings") > 0;
        qv_free(h);
    }
    *distances = sum / (double)a->nq;
    if (widened)
        *widened = wide;
    return 0;
}

/* Passes per case, filtered and unfiltered alternately: the machines are
 * shared, and a ratio of passes run side by side moves least. */
enum { PASSES = 3 };

/*
 * Time one case: recall against exact filtered search, QPS of its best
 * pass beside the best unfiltered pass run in between. The first filtered
 * pass pays for computing each filter's matches (index lookups, the bit
 * set a walk reads); later ones find them in the per-snapshot cache.
 */
static int run_case(qv_db *db, const struct filter_args *a, const float *q,
                    uint32_t dim, int which, struct case_result *r,
                    char *err, size_t errlen)
{
    char text[128];
    unsigned long found = 0, total = 0;
    qv_hits **truth = qv_calloc((size_t)a->nq, sizeof *truth);
    qv_hits **hits = qv_calloc((size_t)a->nq, sizeof *hits);
    int rc = truth && hits ? 0 : -1;
    /* the exact answers first: their scans must not sit between the timed
     * searches, whose caches they would empty */
    for (long i = 0; rc == 0 && i < a->nq; i++) {
        filter_text(which, i, text, sizeof text);
        qv_search_options opt = {.k = a->k, .exact = 1, .filter = text};
        if (qv_search(db, "bench", q + i * dim, dim, &opt, &truth[i]) != QV_OK)
            rc = -1;
    }
    /* an untimed query first: opening a --db of an earlier run loads the
     * graph on the first search */
    if (rc == 0 && time_pass(db, &(struct filter_args){.nq = 1, .k = a->k,
                                                      .ef = a->ef},
                             q, dim, -1, hits) < 0)
        rc = -1;
    double best = 0, best_plain = 0;
    for (int pass = 0; pass < PASSES && rc == 0; pass++) {
        double plain = time_pass(db, a, q, dim, -1, hits);
        double t = plain < 0 ? -1 : time_pass(db, a, q, dim, which, hits);
        if (t < 0) {
            rc = -1;
            break;
        }
        if (pass == 0)
            r->first_ratio = plain / t;
        best = pass == 0 || t < best ? t : best;
        best_plain = pass == 0 || plain < best_plain ? plain : best_plain;
    }
    if (rc == 0 &&
        (explain_pass(db, a, q, dim, which, &r->distances, &r->widened) != 0 ||
         explain_pass(db, a, q, dim, -1, &r->unfiltered_distances, NULL) != 0))
        rc = -1;
    r->min_hits = SIZE_MAX;
    for (long i = 0; rc == 0 && i < a->nq; i++) {
        for (size_t h = 0; h < hits[i]->count; h++)
            for (size_t t = 0; t < truth[i]->count; t++)
                found += strcmp(hits[i]->hits[h].id,
                                truth[i]->hits[t].id) == 0;
        total += truth[i]->count;
        if (hits[i]->count < r->min_hits)
            r->min_hits = hits[i]->count;
    }
    for (long i = 0; truth && hits && i < a->nq; i++) {
        qv_free(truth[i]);
        qv_free(hits[i]);
    }
    qv_mem_free(truth);
    qv_mem_free(hits);
    if (rc != 0) {
        snprintf(err, errlen, "search: %s", qv_errmsg(db));
        return -1;
    }
    r->qps = a->nq / best;
    r->unfiltered_qps = a->nq / best_plain;
    r->recall = total ? (double)found / (double)total : 1.0;
    return 0;
}

int bench_filter(int argc, char **argv)
{
    struct filter_args a;
    vecfile *base = NULL, *queries = NULL;
    FILE *labels = NULL;
    qv_db *db = NULL;
    float *q = NULL;
    char *tmpdir = NULL, err[512] = "";
    int rc = 1;
    if (parse_filter_args(argc, argv, &a) != 0)
        return 2;
    if (vecfile_open(a.base, &base, err, sizeof err) != 0 ||
        vecfile_open(a.query, &queries, err, sizeof err) != 0)
        goto cleanup;
    if (!(labels = fopen(a.labels, "rb"))) {
        snprintf(err, sizeof err, "%s: cannot open", a.labels);
        goto cleanup;
    }
    uint32_t dim = vecfile_dim(base);
    long n = a.nbase ? a.nbase : (long)vecfile_rows(base);
    q = qv_malloc((size_t)a.nq * dim * sizeof *q);
    for (long i = 0; q && i < a.nq; i++) {
        if (vecfile_read_floats(queries, q + i * dim, err, sizeof err) != 1)
            goto cleanup;
    }
    if (!a.db && !(tmpdir = bench_temp_dir()))
        goto cleanup;
    if (qv_open(a.db ? a.db : tmpdir, NULL, &db) != QV_OK ||
        prepare_collection(db, base, labels, n, err, sizeof err) != 0) {
        if (!err[0])
            snprintf(err, sizeof err, "%s", qv_errmsg(db ? db : NULL));
        goto cleanup;
    }
    for (int which = 0; which < 4; which++) {
        struct case_result r;
        if (a.only >= 0 && which != a.only)
            continue;
        if (run_case(db, &a, q, dim, which, &r, err, sizeof err) != 0)
            goto cleanup;
        /* the plan, from one more (untimed) query with explain */
        char text[128], plan[96] = "?";
        qv_hits *ex = NULL;
        filter_text(which, 0, text, sizeof text);
        qv_search_options eo = {.k = a.k, .ef = a.ef, .filter = text,
                                .explain = 1};
        if (qv_search(db, "bench", q, dim, &eo, &ex) == QV_OK && ex->explain)
            sscanf(ex->explain, "{\"plan\":\"%95[^\"]", plan);
        qv_free(ex);
        if (a.json)
            printf("{\"filter\":\"%s\",\"selectivity\":%g,\"recall\":%.4f,"
                   "\"qps\":%.1f,\"unfiltered_qps\":%.1f,\"qps_ratio\":%.3f,"
                   "\"first_pass_qps_ratio\":%.3f,"
                   "\"distances\":%.1f,\"unfiltered_distances\":%.1f,"
                   "\"widened\":%ld,"
                   "\"min_hits\":%zu,\"plan\":\"%s\",\"n\":%ld}\n",
                   case_names[which], case_selectivity[which], r.recall,
                   r.qps, r.unfiltered_qps, r.qps / r.unfiltered_qps,
                   r.first_ratio, r.distances, r.unfiltered_distances,
                   r.widened, r.min_hits, plan, n);
        else
            printf("%-20s selectivity=%-6g recall=%.4f qps=%.1f "
                   "(unfiltered %.1f, ratio %.3f) min_hits=%zu plan=%s\n",
                   case_names[which], case_selectivity[which], r.recall,
                   r.qps, r.unfiltered_qps, r.qps / r.unfiltered_qps,
                   r.min_hits, plan);
    }
    rc = 0;
cleanup:
    if (rc != 0)
        fprintf(stderr, "quiver bench filter: %s\n", err[0] ? err : "failed");
    qv_close(db);
    if (tmpdir) {
        bench_remove_dir(tmpdir);
        free(tmpdir);
    }
    if (labels)
        fclose(labels);
    qv_mem_free(q);
    vecfile_close(base);
    vecfile_close(queries);
    return rc;
}
