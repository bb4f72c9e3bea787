/*
 * bench_cluster.c - `quiver bench cluster`: acknowledged writes and reads
 * on a database behind a URI (a cluster node, or a single quiverd for the
 * comparison; tools/bench-cluster arranges both).
 *
 *   quiver bench cluster --connect URI [--base FILE | --dim D] [--n N]
 *                        [--batch B] [--searches Q] [--shards S
 *                        [--replicas R]] [--collection NAME]
 *   quiver bench cluster --connect URI --catch-up TOKEN [--collection NAME]
 *   quiver bench cluster --connect URI --readers C [--base FILE | --dim D]
 *                        [--n N] [--searches Q] [--query FILE]
 *                        [--collection NAME]
 *
 * The first creates the collection (with --shards, a sharded collection
 * of S shards with R replicas each, default 1: cluster nodes only; by
 * default not sharded) and imports N rows into it in batches of B (one
 * upsert call each: one acknowledged write), then times Q single searches
 * and Q gets, and prints one JSON object: rows_per_s, batch_p50_ms,
 * batch_p99_ms, search_qps, get_qps, write_token. The second times how long the node behind URI
 * takes to have applied the write of TOKEN (a node that was down while it
 * was written): catch_up_s. The third reads what an import wrote with C
 * clients side by side, client i on the i-th address of URI (round robin:
 * "qv://h1:p,h2:p,h3:p" spreads them over three nodes), each Q searches
 * and then Q gets: search_qps and get_qps of all clients together. With
 * --query, each client then measures recall@10 of its node's searches
 * (default ef) against exact search on that node, over the first Q rows
 * of FILE: "recall", one per client, in their order. Readers read the
 * collection as the import made it (sharded or not).
 *
 * The collection is "bench_cluster" unless --collection names another:
 * for the readers, a shard's own collection on a node that holds it
 * ("_shard.<hash>.<s>", docs/CLUSTER.md), to time one shard's work
 * alone. Such a collection holds only some of the rows, so with
 * --collection a get that finds nothing counts as answered, and the
 * readers' line says how many found their document: gets_found.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "common/alloc.h"

#define COLLECTION "bench_cluster"
#define MAX_READERS 64

struct cluster_args {
    const char *connect, *base, *query, *collection;
    unsigned dim;
    long n, batch, searches, readers;
    unsigned long long catch_up;
    uint32_t shards, replicas;
    int named;                  /* --collection given */
};

static int parse_args(int argc, char **argv, struct cluster_args *a)
{
    enum { O_CONNECT = 256, O_BASE, O_DIM, O_N, O_BATCH, O_SEARCHES,
           O_CATCH_UP, O_READERS, O_QUERY, O_SHARDS, O_REPLICAS,
           O_COLLECTION };
    static const struct option opts[] = {
        {"connect", required_argument, 0, O_CONNECT},
        {"base", required_argument, 0, O_BASE},
        {"dim", required_argument, 0, O_DIM},
        {"n", required_argument, 0, O_N},
        {"batch", required_argument, 0, O_BATCH},
        {"searches", required_argument, 0, O_SEARCHES},
        {"catch-up", required_argument, 0, O_CATCH_UP},
        {"readers", required_argument, 0, O_READERS},
        {"query", required_argument, 0, O_QUERY},
        {"shards", required_argument, 0, O_SHARDS},
        {"replicas", required_argument, 0, O_REPLICAS},
        {"collection", required_argument, 0, O_COLLECTION},
        {0, 0, 0, 0}};
    *a = (struct cluster_args){.dim = 784, .n = 20000, .batch = 1000,
                               .searches = 1000, .collection = COLLECTION};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_CONNECT: a->connect = optarg; break;
        case O_BASE: a->base = optarg; break;
        case O_DIM: a->dim = (unsigned)atoi(optarg); break;
        case O_N: a->n = atol(optarg); break;
        case O_BATCH: a->batch = atol(optarg); break;
        case O_SEARCHES: a->searches = atol(optarg); break;
        case O_CATCH_UP: a->catch_up = strtoull(optarg, NULL, 10); break;
        case O_READERS: a->readers = atol(optarg); break;
        case O_QUERY: a->query = optarg; break;
        case O_SHARDS: a->shards = (uint32_t)atoi(optarg); break;
        case O_REPLICAS: a->replicas = (uint32_t)atoi(optarg); break;
        case O_COLLECTION: a->collection = optarg; a->named = 1; break;
        default: return -1;
        }
    }
    /* shards are the import's: the other modes read what it made */
    int imports = a->readers == 0 && a->catch_up == 0;
    return a->connect && optind == argc && a->dim > 0 && a->n > 0 &&
                   a->batch > 0 && a->searches > 0 && a->readers >= 0 &&
                   a->readers <= MAX_READERS && a->collection[0] &&
                   (imports || (a->shards == 0 && a->replicas == 0)) &&
                   (a->shards > 0 || a->replicas == 0)
               ? 0 : -1;
}

/* The rows to write: the first n of base, or n generated ones. */
static float *load_rows(struct cluster_args *a, char *err, size_t errlen)
{
    uint64_t seed = 7;
    if (!a->base)
        return bench_random_rows(a->n, a->dim, &seed);
    vecfile *vf = NULL;
    if (vecfile_open(a->base, &vf, err, errlen) != 0)
        return NULL;
    a->dim = vecfile_dim(vf);
    float *rows = bench_read_rows(vf, &a->n, err, errlen);
    vecfile_close(vf);
    return rows;
}

static int by_value(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Import in batches; each batch's latency in ms into lat. */
static int import(qv_db *db, const struct cluster_args *a, const float *rows,
                  double *lat, double *secs, char *err, size_t errlen)
{
    qv_collection_config cfg = {.dim = a->dim, .metric = QV_METRIC_L2,
                                .shards = a->shards,
                                .replicas = a->replicas};
    if (qv_create_collection(db, a->collection, &cfg) != QV_OK) {
        snprintf(err, errlen, "create: %s", qv_errmsg(db));
        return -1;
    }
    double t0 = cli_now();
    long nb = 0;
    for (long first = 0; first < a->n; first += a->batch, nb++) {
        long k = a->n - first < a->batch ? a->n - first : a->batch;
        double t = cli_now();
        if (bench_upsert_rows(db, a->collection, rows + (size_t)first * a->dim,
                              NULL, first, k, a->dim, (size_t)k, err,
                              errlen) != 0)
            return -1;
        lat[nb] = (cli_now() - t) * 1000;
    }
    *secs = cli_now() - t0;
    qsort(lat, (size_t)nb, sizeof *lat, by_value);
    return 0;
}

/* Single searches (query: row i % n) or gets; calls per second. With
 * found (readers of a --collection), a get that finds nothing counts as
 * answered, and *found counts those that did. */
static double reads_per_s(qv_db *db, const struct cluster_args *a,
                          const float *rows, int gets, long *found)
{
    qv_search_options opt = {.k = 10};
    double t0 = cli_now();
    for (long i = 0; i < a->searches; i++) {
        long row = (i * 7919) % a->n;
        qv_status st;
        if (gets) {
            char id[24];
            qv_record *r = NULL;
            snprintf(id, sizeof id, "%ld", row);
            st = qv_get(db, a->collection, id, &r);
            qv_free(r);
            if (found && st == QV_OK)
                (*found)++;
            else if (found && st == QV_ERR_NOT_FOUND)
                st = QV_OK;
        } else {
            qv_hits *h = NULL;
            st = qv_search(db, a->collection, rows + (size_t)row * a->dim,
                           a->dim, &opt, &h);
            qv_free(h);
        }
        if (st != QV_OK)
            return -1;
    }
    return (double)a->searches / (cli_now() - t0);
}

static int run_import(qv_db *db, struct cluster_args *a)
{
    char err[512] = "";
    float *rows = load_rows(a, err, sizeof err);
    long nb = (a->n + a->batch - 1) / a->batch;
    double *lat = qv_calloc((size_t)nb, sizeof *lat);
    double secs = 0, sq = -1, gq = -1;
    uint64_t token = 0;
    int rc = 1;
    if (!rows || !lat) {
        fprintf(stderr, "quiver bench cluster: %s\n", err[0] ? err
                                                            : "out of memory");
        goto done;
    }
    if (import(db, a, rows, lat, &secs, err, sizeof err) != 0) {
        fprintf(stderr, "quiver bench cluster: %s\n", err);
        goto done;
    }
    sq = reads_per_s(db, a, rows, 0, NULL);
    gq = reads_per_s(db, a, rows, 1, NULL);
    qv_write_token(db, &token);
    if (sq < 0 || gq < 0) {
        fprintf(stderr, "quiver bench cluster: read: %s\n", qv_errmsg(db));
        goto done;
    }
    printf("{\"bench\":\"cluster\",\"connect\":\"%s\",\"n\":%ld,\"dim\":%u,"
           "\"batch\":%ld,\"shards\":%u,\"replicas\":%u,"
           "\"rows_per_s\":%.1f,\"batch_p50_ms\":%.2f,"
           "\"batch_p99_ms\":%.2f,\"search_qps\":%.1f,\"get_qps\":%.1f,"
           "\"write_token\":%llu}\n", a->connect, a->n, a->dim, a->batch,
           a->shards, a->shards && !a->replicas ? 1 : a->replicas,
           (double)a->n / secs, lat[nb / 2], lat[(nb * 99) / 100], sq, gq,
           (unsigned long long)token);
    rc = 0;
done:
    qv_mem_free(rows);
    qv_mem_free(lat);
    return rc;
}

/* How long the node takes to have applied a->catch_up. */
static int run_catch_up(qv_db *db, const struct cluster_args *a)
{
    uint64_t count = 0;
    double t0 = cli_now();
    qv_read_after(db, a->catch_up);
    qv_status st;
    while ((st = qv_count(db, a->collection, NULL, &count)) ==
           QV_ERR_TIMEOUT)
        ;   /* the node answers TIMEOUT every 30 s while it is behind */
    if (st != QV_OK) {
        fprintf(stderr, "quiver bench cluster: %s\n", qv_errmsg(db));
        return 1;
    }
    printf("{\"bench\":\"cluster\",\"connect\":\"%s\",\"catch_up_token\":"
           "%llu,\"catch_up_s\":%.3f,\"count\":%llu}\n", a->connect,
           a->catch_up, cli_now() - t0, (unsigned long long)count);
    return 0;
}

/* One client of --readers: its own handle on one node. */
struct reader {
    char uri[256];
    const struct cluster_args *a;
    const float *rows;
    const float *queries;       /* nq rows of --query, or NULL */
    long nq;
    pthread_barrier_t *phase;   /* open, searches, gets: all together */
    double recall;              /* with queries */
    long gets_found;            /* with --collection */
    int failed;
    char err[512];
};

/* uri = the scheme of list and its i-th address, round robin. */
static int reader_uri(const char *list, long i, char *uri, size_t len)
{
    const char *hosts = strstr(list, "://");
    if (!hosts)
        return -1;
    hosts += 3;
    long m = 1;
    for (const char *p = hosts; *p; p++)
        m += *p == ',';
    const char *at = hosts;
    for (long k = i % m; k > 0; k--)
        at = strchr(at, ',') + 1;
    size_t hlen = strcspn(at, ",");
    int n = snprintf(uri, len, "%.*s%.*s", (int)(hosts - list), list,
                     (int)hlen, at);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* Of the exact top 10 of each query, the share the index finds. */
static int recall_at_10(qv_db *db, const struct reader *r, double *recall)
{
    qv_search_options approx = {.k = 10}, exact = {.k = 10, .exact = 1};
    size_t found = 0, wanted = 0;
    for (long i = 0; i < r->nq; i++) {
        const float *q = r->queries + (size_t)i * r->a->dim;
        qv_hits *got = NULL, *truth = NULL;
        qv_status st = qv_search(db, r->a->collection, q, r->a->dim,
                                 &approx, &got);
        if (st == QV_OK)
            st = qv_search(db, r->a->collection, q, r->a->dim, &exact,
                           &truth);
        for (size_t j = 0; st == QV_OK && j < truth->count; j++)
            for (size_t h = 0; h < got->count; h++)
                found += strcmp(truth->hits[j].id, got->hits[h].id) == 0;
        wanted += st == QV_OK ? truth->count : 0;
        qv_free(got);
        qv_free(truth);
        if (st != QV_OK)
            return -1;
    }
    *recall = wanted ? (double)found / (double)wanted : 0;
    return 0;
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    qv_db *db = NULL;
    if (qv_open(r->uri, NULL, &db) != QV_OK) {
        snprintf(r->err, sizeof r->err, "%s: %s", r->uri, qv_errmsg(NULL));
        r->failed = 1;
    }
    for (int gets = 0; gets < 2; gets++) {
        pthread_barrier_wait(r->phase);
        if (!r->failed &&
            reads_per_s(db, r->a, r->rows, gets,
                        r->a->named ? &r->gets_found : NULL) < 0) {
            snprintf(r->err, sizeof r->err, "%s: %s", r->uri,
                     qv_errmsg(db));
            r->failed = 1;
        }
    }
    pthread_barrier_wait(r->phase);
    if (!r->failed && r->queries && recall_at_10(db, r, &r->recall) != 0) {
        snprintf(r->err, sizeof r->err, "%s: %s", r->uri, qv_errmsg(db));
        r->failed = 1;
    }
    qv_close(db);
    return NULL;
}

/* a->readers clients side by side: the calls per second of them all,
 * searches in qps[0], gets in qps[1]. */
static int read_together(struct reader *rd, long c, pthread_barrier_t *phase,
                         double qps[2])
{
    pthread_t tids[MAX_READERS];
    long started = 0;
    while (started < c &&
           pthread_create(&tids[started], NULL, reader_main, &rd[started]) == 0)
        started++;
    if (started < c) {   /* the barrier waits for c: never reached */
        fprintf(stderr, "quiver bench cluster: cannot start a thread\n");
        exit(1);
    }
    pthread_barrier_wait(phase);   /* all open */
    for (int k = 0; k < 2; k++) {
        double t0 = cli_now();
        pthread_barrier_wait(phase);
        qps[k] = (double)(c * rd[0].a->searches) / (cli_now() - t0);
    }
    int failed = 0;
    for (long i = 0; i < c; i++) {
        pthread_join(tids[i], NULL);
        if (rd[i].failed && !failed++)
            fprintf(stderr, "quiver bench cluster: %s\n", rd[i].err);
    }
    return failed ? -1 : 0;
}

/* The first a->searches rows of a->query (fewer if it has fewer). */
static float *load_queries(const struct cluster_args *a, long *nq, char *err,
                           size_t errlen)
{
    vecfile *vf = NULL;
    *nq = 0;
    if (vecfile_open(a->query, &vf, err, errlen) != 0)
        return NULL;
    float *rows = NULL;
    if (vecfile_dim(vf) != a->dim) {
        snprintf(err, errlen, "--query has dimension %u, the rows %u",
                 vecfile_dim(vf), a->dim);
    } else {
        *nq = a->searches;
        rows = bench_read_rows(vf, nq, err, errlen);
    }
    vecfile_close(vf);
    return rows;
}

static void print_readers(const struct cluster_args *a, const struct reader *rd,
                          const double qps[2])
{
    printf("{\"bench\":\"cluster\",\"connect\":\"%s\",\"readers\":%ld,"
           "\"searches_each\":%ld,\"search_qps\":%.1f,\"get_qps\":%.1f",
           a->connect, a->readers, a->searches, qps[0], qps[1]);
    if (a->named) {
        long found = 0;
        for (long i = 0; i < a->readers; i++)
            found += rd[i].gets_found;
        printf(",\"collection\":\"%s\",\"gets_found\":%ld", a->collection,
               found);
    }
    if (a->query) {
        printf(",\"recall\":[");
        for (long i = 0; i < a->readers; i++)
            printf("%s%.4f", i ? "," : "", rd[i].recall);
        printf("]");
    }
    printf("}\n");
}

static int run_readers(struct cluster_args *a)
{
    char err[512] = "";
    float *rows = load_rows(a, err, sizeof err);
    long nq = 0;
    float *queries = rows && a->query ? load_queries(a, &nq, err, sizeof err)
                                      : NULL;
    struct reader *rd = qv_calloc((size_t)a->readers, sizeof *rd);
    pthread_barrier_t phase;
    double qps[2] = {0, 0};
    int rc = 1;
    if (!rows || !rd || (a->query && !queries)) {
        fprintf(stderr, "quiver bench cluster: %s\n", err[0] ? err
                                                            : "out of memory");
        goto done;
    }
    for (long i = 0; i < a->readers; i++) {
        rd[i] = (struct reader){.a = a, .rows = rows, .queries = queries,
                                .nq = nq, .phase = &phase};
        if (reader_uri(a->connect, i, rd[i].uri, sizeof rd[i].uri) != 0) {
            fprintf(stderr, "quiver bench cluster: cannot read addresses "
                    "from '%s'\n", a->connect);
            goto done;
        }
    }
    pthread_barrier_init(&phase, NULL, (unsigned)a->readers + 1);
    rc = read_together(rd, a->readers, &phase, qps) != 0;
    pthread_barrier_destroy(&phase);
    if (rc == 0)
        print_readers(a, rd, qps);
done:
    qv_mem_free(rows);
    qv_mem_free(queries);
    qv_mem_free(rd);
    return rc;
}

int bench_cluster(int argc, char **argv)
{
    struct cluster_args a;
    if (parse_args(argc, argv, &a) != 0) {
        fprintf(stderr, "usage: quiver bench cluster --connect URI [--base "
                "FILE | --dim D] [--n N] [--batch B] [--searches Q] "
                "[--shards S [--replicas R]] [--collection NAME]\n"
                "       quiver bench cluster --connect URI --catch-up "
                "TOKEN [--collection NAME]\n"
                "       quiver bench cluster --connect URI --readers C "
                "[--base FILE | --dim D] [--n N] [--searches Q] "
                "[--query FILE] [--collection NAME]\n");
        return 2;
    }
    if (a.readers > 0)
        return run_readers(&a);
    qv_db *db = NULL;
    qv_open_options oo = {.timeout_ms = 600000};
    if (qv_open(a.connect, &oo, &db) != QV_OK) {
        fprintf(stderr, "quiver bench cluster: %s\n", qv_errmsg(NULL));
        return 1;
    }
    int rc = a.catch_up ? run_catch_up(db, &a) : run_import(db, &a);
    qv_close(db);
    return rc;
}
