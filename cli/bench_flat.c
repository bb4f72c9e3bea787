/*
 * bench_flat.c - `quiver bench flat`: import a texmex base through the
 * public API into a fresh database, then time exact search one query at a
 * time on one thread and measure recall@k against the ground truth.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/vecfile.h"


struct flat_args {
    const char *base, *query, *gt, *db;
    long nbase, nq;
    qv_metric metric;
    unsigned k;
    int json;
};

static const char flat_usage[] =
    "usage: quiver bench flat --base FILE --query FILE [--gt FILE]\n"
    "       [--nbase N] [--nq N] [--metric l2|ip|cosine] [--k 10]\n"
    "       [--db DIR] [--json]\n";

static int parse_flat_args(int argc, char **argv, struct flat_args *a)
{
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'}, {"query", required_argument, 0, 'q'},
        {"gt", required_argument, 0, 'g'},   {"nbase", required_argument, 0, 'n'},
        {"nq", required_argument, 0, 'Q'},   {"metric", required_argument, 0, 'm'},
        {"k", required_argument, 0, 'k'},    {"db", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},       {0, 0, 0, 0}};
    *a = (struct flat_args){.metric = QV_METRIC_L2, .k = 10};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': a->base = optarg; break;
        case 'q': a->query = optarg; break;
        case 'g': a->gt = optarg; break;
        case 'd': a->db = optarg; break;
        case 'n': a->nbase = atol(optarg); break;
        case 'Q': a->nq = atol(optarg); break;
        case 'k': a->k = (unsigned)atoi(optarg); break;
        case 'j': a->json = 1; break;
        case 'm':
            if (qv_metric_parse(optarg, &a->metric) != QV_OK) {
                fprintf(stderr, "quiver bench flat: unknown metric '%s'\n",
                        optarg);
                return -1;
            }
            break;
        default:
            fputs(flat_usage, stderr);
            return -1;
        }
    }
    if (!a->base || !a->query || optind != argc || a->k == 0 ||
        a->nbase < 0 || a->nq < 0) {
        fputs(flat_usage, stderr);
        return -1;
    }
    return 0;
}

struct flat_result {
    double import_s, search_s;
    long n, nq;
    uint32_t dim;
    double recall;   /* < 0: not measured */
};

/* Run every query; recall only when gt is given. */
static int run_queries(qv_db *db, const struct flat_args *a, vecfile *queries,
                       vecfile *gt, struct flat_result *res, char *err,
                       size_t errlen)
{
    uint32_t dim = vecfile_dim(queries);
    float *q = qv_malloc(dim * sizeof(float));
    int32_t *truth = gt ? qv_malloc(vecfile_dim(gt) * sizeof(int32_t)) : NULL;
    qv_search_options opt = {.k = a->k, .exact = 1};
    unsigned long found = 0;
    int rc = -1;
    if (!q || (gt && !truth)) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    res->search_s = 0;
    for (res->nq = 0; res->nq < a->nq; res->nq++) {
        if (vecfile_read_floats(queries, q, err, errlen) != 1)
            break;
        qv_hits *hits = NULL;
        double t0 = cli_now();
        qv_status st = qv_search(db, "bench", q, dim, &opt, &hits);
        res->search_s += cli_now() - t0;
        if (st != QV_OK) {
            snprintf(err, errlen, "search: %s", qv_errmsg(db));
            goto cleanup;
        }
        if (gt) {
            if (vecfile_read_ints(gt, truth, err, errlen) != 1) {
                qv_free(hits);
                goto cleanup;
            }
            found += bench_true_hits(hits, truth, a->k);
        }
        qv_free(hits);
    }
    res->recall = gt ? (double)found / ((double)res->nq * a->k) : -1.0;
    rc = res->nq > 0 ? 0 : -1;
    if (rc != 0 && !err[0])
        snprintf(err, errlen, "no queries were run");
cleanup:
    qv_mem_free(q);
    qv_mem_free(truth);
    return rc;
}

static void print_flat(const struct flat_args *a, const struct flat_result *r)
{
    json_t *o = json_pack("{s:s, s:I, s:i, s:I, s:i, s:s, s:f, s:f}",
                          "bench", "flat", "n", (json_int_t)r->n, "d",
                          (int)r->dim, "nq", (json_int_t)r->nq, "k", (int)a->k,
                          "metric", qv_metric_name(a->metric), "import_s",
                          r->import_s, "qps", r->nq / r->search_s);
    json_object_set_new(o, "recall", r->recall < 0 ? json_null()
                                                   : json_real(r->recall));
    if (a->json) {
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                    JSON_REAL_PRECISION(6));
        puts(s ? s : "{\"error\":\"out of memory for the result\"}");
        free(s);
    } else {
        printf("n=%ld d=%u nq=%ld k=%u metric=%s import_s=%.3f qps=%.1f",
               r->n, r->dim, r->nq, a->k, qv_metric_name(a->metric),
               r->import_s, r->nq / r->search_s);
        if (r->recall >= 0)
            printf(" recall=%.4f", r->recall);
        putchar('\n');
    }
    json_decref(o);
}

int bench_flat(int argc, char **argv)
{
    struct flat_args a;
    struct flat_result res = {0};
    vecfile *base = NULL, *queries = NULL, *gt = NULL;
    qv_db *db = NULL;
    char *tmpdir = NULL, err[512] = "";
    int rc = 1;

    if (parse_flat_args(argc, argv, &a) != 0)
        return 2;
    if (vecfile_open(a.base, &base, err, sizeof err) != 0 ||
        vecfile_open(a.query, &queries, err, sizeof err) != 0 ||
        (a.gt && vecfile_open(a.gt, &gt, err, sizeof err) != 0))
        goto cleanup;
    res.n = a.nbase ? a.nbase : (long)vecfile_rows(base);
    res.dim = vecfile_dim(base);
    if (a.gt && res.n != (long)vecfile_rows(base)) {
        snprintf(err, sizeof err, "--gt holds neighbours in the whole base; "
                 "it cannot score a --nbase subset");
        goto cleanup;
    }
    if (vecfile_dim(queries) != res.dim) {
        snprintf(err, sizeof err, "queries have dimension %u, base %u",
                 vecfile_dim(queries), res.dim);
        goto cleanup;
    }
    if (a.nq == 0)
        a.nq = (long)vecfile_rows(queries);
    if (!a.db && !(tmpdir = bench_temp_dir())) {
        snprintf(err, sizeof err, "cannot make a temporary directory");
        goto cleanup;
    }
    qv_collection_config cfg = {.dim = res.dim, .metric = a.metric};
    if (qv_open(a.db ? a.db : tmpdir, NULL, &db) != QV_OK ||
        qv_create_collection(db, "bench", &cfg) != QV_OK) {
        snprintf(err, sizeof err, "%s", qv_errmsg(db));
        goto cleanup;
    }
    double t0 = cli_now();
    if (bench_import(db, "bench", base, res.n, err, sizeof err) != 0)
        goto cleanup;
    res.import_s = cli_now() - t0;
    if (run_queries(db, &a, queries, gt, &res, err, sizeof err) != 0)
        goto cleanup;
    print_flat(&a, &res);
    rc = 0;
cleanup:
    if (rc != 0)
        fprintf(stderr, "quiver bench flat: %s\n", err);
    qv_close(db);
    if (tmpdir) {
        bench_remove_dir(tmpdir);
        free(tmpdir);
    }
    vecfile_close(base);
    vecfile_close(queries);
    vecfile_close(gt);
    return rc;
}

