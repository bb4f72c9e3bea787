/*
 * bench_flat.c - `quiver bench flat`: import a texmex base through the
 * public API into a fresh database, then time exact search one query at a
 * time on one thread and measure recall@k against the ground truth.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "cli.h"
#include "vecfile.h"

#define IMPORT_BATCH 1000

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

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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

/* Upsert the first n rows of base (ids "0", "1", ...) in batches. */
static int import_base(qv_db *db, vecfile *base, long n, char *err,
                       size_t errlen)
{
    uint32_t dim = vecfile_dim(base);
    float *vecs = qv_malloc((size_t)IMPORT_BATCH * dim * sizeof(float));
    char (*ids)[24] = qv_malloc(IMPORT_BATCH * sizeof *ids);
    qv_doc *docs = qv_malloc(IMPORT_BATCH * sizeof *docs);
    int rc = -1;
    if (!vecs || !ids || !docs) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    for (long row = 0; row < n;) {
        size_t m = 0;
        for (; m < IMPORT_BATCH && row < n; m++, row++) {
            int r = vecfile_read_floats(base, vecs + m * dim, err, errlen);
            if (r != 1) {
                if (r == 0)
                    snprintf(err, errlen, "base ends at row %ld", row);
                goto cleanup;
            }
            snprintf(ids[m], sizeof ids[m], "%ld", row);
            docs[m] = (qv_doc){ids[m], vecs + m * dim, dim, NULL};
        }
        if (qv_upsert(db, "bench", docs, m) != QV_OK) {
            snprintf(err, errlen, "upsert: %s", qv_errmsg(db));
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    qv_mem_free(vecs);
    qv_mem_free(ids);
    qv_mem_free(docs);
    return rc;
}

/* Hits whose id is among the first k ground-truth ids. */
static unsigned count_true_hits(const qv_hits *hits, const int32_t *gt,
                                unsigned k)
{
    unsigned found = 0;
    for (size_t i = 0; i < hits->count; i++) {
        long id = atol(hits->hits[i].id);
        for (unsigned j = 0; j < k; j++)
            found += gt[j] == id;
    }
    return found;
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
    qv_search_options opt = {.k = a->k};
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
            found += count_true_hits(hits, truth, a->k);
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
        puts(s);
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

/* A fresh directory for the bench database, under $TMPDIR. */
static char *make_temp_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/quiver-bench-XXXXXX", tmp ? tmp : "/tmp");
    return mkdtemp(path) ? strdup(path) : NULL;
}

static void remove_db_dir(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
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
    if (!a.db && !(tmpdir = make_temp_dir())) {
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
    if (import_base(db, base, res.n, err, sizeof err) != 0)
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
        remove_db_dir(tmpdir);
        free(tmpdir);
    }
    vecfile_close(base);
    vecfile_close(queries);
    vecfile_close(gt);
    return rc;
}

int bench_main(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "flat") == 0)
        return bench_flat(argc, argv);
    fprintf(stderr, "usage: quiver bench flat ...\n"
                    "quiver bench: unknown benchmark '%s'\n",
            argc >= 1 ? argv[0] : "");
    return 2;
}
