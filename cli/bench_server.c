/*
 * bench_server.c - `quiver bench server`: load on a running quiverd.
 *
 * Each client thread has its own connection and speaks raw frames, so
 * that it can keep `pipeline` requests in flight: it writes that many in
 * one call, then reads their responses. A request's latency runs from the
 * write of its group to the arrival of its response. Prints one JSON
 * object: qps, p50_ms, p99_ms, errors.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "wire/proto/frame.h"
#include "wire/proto/stream.h"
#include "wire/quiver.pb-c.h"

enum bench_op { OP_SEARCH, OP_GET, OP_UPSERT, OP_DELETE, OP_MIXED };

struct server_args {
    const char *connect, *collection, *query, *token, *tls_ca;
    int tls;
    SSL_CTX *tls_ctx;
    unsigned clients, pipeline, k, ef, dim;
    long n;
    double seconds;
    enum bench_op op;
    int json;
};

struct client {
    const struct server_args *a;
    pthread_t tid;
    stream s;
    uint64_t seed;
    const float *queries;   /* nq * dim, or NULL for random */
    long nq;
    double deadline;
    long requests, errors;
    float *latencies_ms;    /* one per request, up to cap */
    float *at_s;            /* when each one ended, from the start */
    size_t nlat, cap;
    double start;
    enum bench_op kinds[4096];  /* of the requests in flight */
    char err[256];
};

static const char server_usage[] =
    "usage: quiver bench server --connect HOST:PORT [--clients 16]\n"
    "       [--seconds 10] [--op search|get|upsert|mixed] [--pipeline 1]\n"
    "       [--collection bench_server] [--n 10000] [--dim 32]\n"
    "       [--query FILE] [--k 10] [--ef 64] [--token T] [--json]\n"
    "       [--tls] [--tls-ca FILE]\n";

static int parse_server_args(int argc, char **argv, struct server_args *a)
{
    enum { O_CLIENTS = 256, O_SECONDS, O_OP, O_PIPE, O_COLL, O_N, O_DIM,
           O_QUERY, O_K, O_EF, O_TOKEN, O_JSON, O_CONNECT, O_TLS,
           O_TLS_CA };
    static const struct option opts[] = {
        {"connect", required_argument, 0, O_CONNECT},
        {"clients", required_argument, 0, O_CLIENTS},
        {"seconds", required_argument, 0, O_SECONDS},
        {"op", required_argument, 0, O_OP},
        {"pipeline", required_argument, 0, O_PIPE},
        {"collection", required_argument, 0, O_COLL},
        {"n", required_argument, 0, O_N},
        {"dim", required_argument, 0, O_DIM},
        {"query", required_argument, 0, O_QUERY},
        {"k", required_argument, 0, O_K},
        {"ef", required_argument, 0, O_EF},
        {"token", required_argument, 0, O_TOKEN},
        {"json", no_argument, 0, O_JSON},
        {"tls", no_argument, 0, O_TLS},
        {"tls-ca", required_argument, 0, O_TLS_CA},
        {0, 0, 0, 0}};
    *a = (struct server_args){.collection = "bench_server", .clients = 16,
                              .pipeline = 1, .k = 10, .ef = 64, .dim = 32,
                              .n = 10000, .seconds = 10, .op = OP_SEARCH};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_CONNECT: a->connect = optarg; break;
        case O_CLIENTS: a->clients = (unsigned)atoi(optarg); break;
        case O_SECONDS: a->seconds = atof(optarg); break;
        case O_PIPE: a->pipeline = (unsigned)atoi(optarg); break;
        case O_COLL: a->collection = optarg; break;
        case O_N: a->n = atol(optarg); break;
        case O_DIM: a->dim = (unsigned)atoi(optarg); break;
        case O_QUERY: a->query = optarg; break;
        case O_K: a->k = (unsigned)atoi(optarg); break;
        case O_EF: a->ef = (unsigned)atoi(optarg); break;
        case O_TOKEN: a->token = optarg; break;
        case O_JSON: a->json = 1; break;
        case O_TLS: a->tls = 1; break;
        case O_TLS_CA: a->tls_ca = optarg; a->tls = 1; break;
        case O_OP:
            if (strcmp(optarg, "search") == 0) a->op = OP_SEARCH;
            else if (strcmp(optarg, "get") == 0) a->op = OP_GET;
            else if (strcmp(optarg, "upsert") == 0) a->op = OP_UPSERT;
            else if (strcmp(optarg, "mixed") == 0) a->op = OP_MIXED;
            else {
                fprintf(stderr, "quiver bench server: unknown op '%s'\n",
                        optarg);
                return -1;
            }
            break;
        default:
            fputs(server_usage, stderr);
            return -1;
        }
    }
    if (!a->connect || optind != argc || a->clients == 0 ||
        a->clients > 1024 || a->pipeline == 0 || a->pipeline > 4096 ||
        a->seconds <= 0 || a->n <= 0 || a->dim == 0 || a->k == 0) {
        fputs(server_usage, stderr);
        return -1;
    }
    return 0;
}

/* Make sure the collection exists; create and fill it when it does not.
 * Sets a->dim and a->n from what is there. */
static int prepare_collection(struct server_args *a, char *err, size_t len)
{
    char uri[300];
    snprintf(uri, sizeof uri, "%s://%s", a->tls ? "qvs" : "qv", a->connect);
    qv_db *db = NULL;
    qv_open_options oo = {.token = a->token, .tls_ca_file = a->tls_ca};
    qv_collection_info info;
    int rc = -1;
    if (qv_open(uri, &oo, &db) != QV_OK) {
        snprintf(err, len, "%s", qv_errmsg(NULL));
        return -1;
    }
    qv_status st = qv_describe_collection(db, a->collection, &info);
    if (st == QV_ERR_NOT_FOUND) {
        qv_collection_config cfg = {.dim = a->dim};
        if (qv_create_collection(db, a->collection, &cfg) != QV_OK)
            goto fail;
        uint64_t seed = 42;
        float *v = qv_malloc(1000 * (size_t)a->dim * sizeof *v);
        char (*ids)[24] = qv_malloc(1000 * sizeof *ids);
        qv_doc *docs = qv_malloc(1000 * sizeof *docs);
        for (long first = 0; v && ids && docs && first < a->n; first += 1000) {
            size_t m = a->n - first < 1000 ? (size_t)(a->n - first) : 1000;
            for (size_t i = 0; i < m; i++) {
                for (unsigned j = 0; j < a->dim; j++) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    v[i * a->dim + j] = (float)(seed >> 40) / (float)(1 << 24);
                }
                snprintf(ids[i], sizeof ids[i], "%ld", first + (long)i);
                docs[i] = (qv_doc){ids[i], v + i * a->dim, a->dim, NULL};
            }
            if (qv_upsert(db, a->collection, docs, m) != QV_OK)
                break;
        }
        qv_mem_free(v);
        qv_mem_free(ids);
        qv_mem_free(docs);
        st = qv_describe_collection(db, a->collection, &info);
    }
    if (st != QV_OK)
        goto fail;
    a->dim = info.dim;
    a->n = (long)info.count;
    rc = a->n > 0 ? 0 : -1;
    if (rc != 0)
        snprintf(err, len, "collection '%s' is empty", a->collection);
    qv_close(db);
    return rc;
fail:
    snprintf(err, len, "%s", qv_errmsg(db));
    qv_close(db);
    return -1;
}

static int dial(const char *hostport, char *err, size_t len)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host) {
        snprintf(err, len, "--connect wants HOST:PORT");
        return -1;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        snprintf(err, len, "cannot resolve %s", host);
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(err, len, "cannot connect to %s", hostport);
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The kind of the next request: the benchmark's, or for mixed 70%
 * search, 15% get, 10% upsert, 5% delete. */
static enum bench_op next_kind(struct client *c)
{
    if (c->a->op != OP_MIXED)
        return c->a->op;
    unsigned r = (unsigned)(next_rand(&c->seed) % 100);
    return r < 70 ? OP_SEARCH : r < 85 ? OP_GET : r < 95 ? OP_UPSERT
                                                       : OP_DELETE;
}

/* Append one request of the kind to out. */
static int append_request(struct client *c, uint64_t id, float *vec,
                          enum bench_op kind, wbuf *out)
{
    const struct server_args *a = c->a;
    char doc_id[24];
    snprintf(doc_id, sizeof doc_id, "%ld", (long)(next_rand(&c->seed) % (uint64_t)a->n));
    if (kind == OP_SEARCH || kind == OP_UPSERT) {
        if (c->queries) {
            memcpy(vec, c->queries + (next_rand(&c->seed) % (uint64_t)c->nq) *
                                         a->dim, a->dim * sizeof *vec);
        } else {
            for (unsigned j = 0; j < a->dim; j++)
                vec[j] = (float)(next_rand(&c->seed) >> 40) / (float)(1 << 24);
        }
    }
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    req.id = id;
    Quiver__V1__Get get = QUIVER__V1__GET__INIT;
    Quiver__V1__Search search = QUIVER__V1__SEARCH__INIT;
    Quiver__V1__SearchOptions opt = QUIVER__V1__SEARCH_OPTIONS__INIT;
    Quiver__V1__Upsert up = QUIVER__V1__UPSERT__INIT;
    Quiver__V1__Document doc = QUIVER__V1__DOCUMENT__INIT, *docs[1] = {&doc};
    Quiver__V1__Delete del = QUIVER__V1__DELETE__INIT;
    switch (kind) {
    case OP_DELETE:
        del.collection = (char *)a->collection;
        del.id = doc_id;
        req.op_case = QUIVER__V1__REQUEST__OP_DELETE;
        req.delete_ = &del;
        break;
    case OP_MIXED:
    case OP_GET:
        get.collection = (char *)a->collection;
        get.id = doc_id;
        req.op_case = QUIVER__V1__REQUEST__OP_GET;
        req.get = &get;
        break;
    case OP_SEARCH:
        opt.k = a->k;
        opt.ef = a->ef;
        search.collection = (char *)a->collection;
        search.n_query = a->dim;
        search.query = vec;
        search.options = &opt;
        req.op_case = QUIVER__V1__REQUEST__OP_SEARCH;
        req.search = &search;
        break;
    case OP_UPSERT:
        doc.id = doc_id;
        doc.n_vector = a->dim;
        doc.vector = vec;
        up.collection = (char *)a->collection;
        up.n_documents = 1;
        up.documents = docs;
        req.op_case = QUIVER__V1__REQUEST__OP_UPSERT;
        req.upsert = &up;
        break;
    }
    return frame_append(out, &req.base);
}

/* Wait (30 s at most) for what a stream call asked for; 0 when ready. */
static int wait_for(stream *s, ssize_t want)
{
    if (want != STREAM_WANT_READ && want != STREAM_WANT_WRITE)
        return -1;
    struct pollfd p = {s->fd, want == STREAM_WANT_WRITE ? POLLOUT : POLLIN, 0};
    return poll(&p, 1, 30000) == 1 ? 0 : -1;
}

static int write_all(stream *s, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = stream_write(s, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n == 0 || wait_for(s, n) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Read what there is (waiting for something); bytes, or -1. */
static ssize_t read_some(stream *s, uint8_t *buf, size_t len)
{
    for (;;) {
        ssize_t n = stream_read(s, buf, len);
        if (n > 0)
            return n;
        if (n == 0 || wait_for(s, n) != 0)
            return -1;
    }
}

/* A connection to the server, inside TLS with --tls; 0 or -1 and err. */
static int open_stream(const struct server_args *a, stream *s, char *err,
                       size_t len)
{
    s->fd = dial(a->connect, err, len);
    if (s->fd < 0 || !a->tls_ctx)
        return s->fd < 0 ? -1 : 0;
    char host[256];
    snprintf(host, sizeof host, "%.*s",
             (int)(strrchr(a->connect, ':') - a->connect), a->connect);
    if (stream_tls_connect(s, a->tls_ctx, host) != 0) {
        snprintf(err, len, "out of memory for TLS");
        return -1;
    }
    for (;;) {
        int rc = stream_handshake(s);
        if (rc == 1)
            return 0;
        if (wait_for(s, rc) != 0) {
            char why[256];
            snprintf(err, len, "TLS handshake with %s failed: %s",
                     a->connect, stream_tls_error(why, sizeof why));
            return -1;
        }
    }
}

/* NOT_FOUND answers a get or delete of an id a mixed run deleted: not an
 * error. */
static int is_error(const Quiver__V1__Response *r, enum bench_op kind)
{
    if (!r)
        return 1;
    if (r->status == QUIVER__V1__STATUS__NOT_FOUND)
        return !(kind == OP_GET || kind == OP_DELETE);
    return r->status != QUIVER__V1__STATUS__OK;
}

/* Read `count` responses; record latencies from t0 and count errors. */
static int read_responses(struct client *c, wbuf *in, unsigned count,
                          double t0)
{
    while (count > 0) {
        const uint8_t *payload;
        size_t len;
        if (frame_peek(in->data, in->len, 1u << 30, &payload, &len) ==
            FRAME_READY) {
            Quiver__V1__Response *r =
                quiver__v1__response__unpack(NULL, len, payload);
            enum bench_op kind = c->kinds[c->a->pipeline - count];
            if (is_error(r, kind)) {
                c->errors++;
                if (r && !c->err[0])
                    snprintf(c->err, sizeof c->err, "%s", r->message);
            }
            quiver__v1__response__free_unpacked(r, NULL);
            wbuf_consume(in, FRAME_HEADER + len);
            if (c->nlat < c->cap) {
                double now = cli_now();
                c->latencies_ms[c->nlat] = (float)((now - t0) * 1e3);
                c->at_s[c->nlat++] = (float)(now - c->start);
            }
            c->requests++;
            count--;
            continue;
        }
        if (wbuf_reserve(in, 64u << 10) != 0)
            return -1;
        ssize_t n = read_some(&c->s, in->data + in->len, 64u << 10);
        if (n <= 0)
            return -1;
        in->len += (size_t)n;
    }
    return 0;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    wbuf out = {0}, in = {0};
    float *vec = qv_malloc(c->a->dim * sizeof *vec);
    uint64_t id = 0;
    while (vec && cli_now() < c->deadline) {
        out.len = 0;
        for (unsigned i = 0; i < c->a->pipeline; i++) {
            c->kinds[i] = next_kind(c);
            append_request(c, ++id, vec, c->kinds[i], &out);
        }
        double t0 = cli_now();
        if (write_all(&c->s, out.data, out.len) != 0 ||
            read_responses(c, &in, c->a->pipeline, t0) != 0) {
            snprintf(c->err, sizeof c->err, "connection lost");
            c->errors++;
            break;
        }
    }
    qv_mem_free(vec);
    wbuf_release(&out);
    wbuf_release(&in);
    return NULL;
}

static int by_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Query vectors from a texmex file, or NULL for random ones. */
static float *load_queries(const struct server_args *a, long *nq, char *err,
                           size_t len)
{
    if (!a->query)
        return NULL;
    vecfile *vf;
    if (vecfile_open(a->query, &vf, err, len) != 0)
        return NULL;
    *nq = (long)vecfile_rows(vf);
    float *q = vecfile_dim(vf) == a->dim
                   ? qv_malloc((size_t)*nq * a->dim * sizeof *q) : NULL;
    if (!q)
        snprintf(err, len, "queries of dimension %u for a collection of %u",
                 vecfile_dim(vf), a->dim);
    for (long i = 0; q && i < *nq; i++) {
        if (vecfile_read_floats(vf, q + i * a->dim, err, len) != 1) {
            qv_mem_free(q);
            q = NULL;
        }
    }
    vecfile_close(vf);
    return q;
}

/* p99 of the requests that ended in each tenth of the run. */
static json_t *p99_by_tenth(const struct server_args *a, struct client *cs,
                            double elapsed)
{
    json_t *arr = json_array();
    for (int t = 0; t < 10; t++) {
        double lo = elapsed * t / 10, hi = elapsed * (t + 1) / 10;
        size_t n = 0;
        for (unsigned i = 0; i < a->clients; i++)
            for (size_t j = 0; j < cs[i].nlat; j++)
                n += cs[i].at_s[j] >= lo && cs[i].at_s[j] < hi;
        float *v = qv_malloc((n + 1) * sizeof *v);
        size_t k = 0;
        for (unsigned i = 0; v && i < a->clients; i++)
            for (size_t j = 0; j < cs[i].nlat; j++)
                if (cs[i].at_s[j] >= lo && cs[i].at_s[j] < hi)
                    v[k++] = cs[i].latencies_ms[j];
        if (v && n)
            qsort(v, n, sizeof *v, by_float);
        json_array_append_new(arr, json_real(v && n ? v[(size_t)(n * 0.99)]
                                                    : 0));
        qv_mem_free(v);
    }
    return arr;
}

/* The server's resident memory, from stats; -1 when unknown. */
static long long server_rss(const struct server_args *a)
{
    char uri[300], *json = NULL;
    qv_db *db = NULL;
    long long rss = -1;
    snprintf(uri, sizeof uri, "%s://%s", a->tls ? "qvs" : "qv", a->connect);
    if (qv_open(uri, &(qv_open_options){.token = a->token,
                                        .tls_ca_file = a->tls_ca},
                &db) == QV_OK &&
        qv_stats(db, &json) == QV_OK && strstr(json, "\"rss_bytes\":"))
        rss = atoll(strstr(json, "\"rss_bytes\":") + 12);
    qv_free(json);
    qv_close(db);
    return rss;
}

static void report(const struct server_args *a, struct client *cs,
                   double elapsed, long long rss_start, long long rss_end)
{
    long requests = 0, errors = 0;
    size_t nlat = 0;
    for (unsigned i = 0; i < a->clients; i++) {
        requests += cs[i].requests;
        errors += cs[i].errors;
        nlat += cs[i].nlat;
    }
    float *all = qv_malloc((nlat + 1) * sizeof *all);
    size_t at = 0;
    for (unsigned i = 0; all && i < a->clients; i++) {
        memcpy(all + at, cs[i].latencies_ms, cs[i].nlat * sizeof *all);
        at += cs[i].nlat;
    }
    if (all)
        qsort(all, nlat, sizeof *all, by_float);
    double p50 = nlat && all ? all[nlat / 2] : 0;
    double p99 = nlat && all ? all[(size_t)((double)nlat * 0.99)] : 0;
    static const char *const ops[] = {"search", "get", "upsert", "delete",
                                      "mixed"};
    json_t *o = json_pack("{s:s, s:i, s:i, s:f, s:I, s:f, s:f, s:f, s:I}",
                          "op", ops[a->op], "clients", (int)a->clients,
                          "pipeline", (int)a->pipeline, "seconds", elapsed,
                          "requests", (json_int_t)requests, "qps",
                          requests / elapsed, "p50_ms", p50, "p99_ms", p99,
                          "errors", (json_int_t)errors);
    json_object_set_new(o, "p99_ms_by_tenth", p99_by_tenth(a, cs, elapsed));
    json_object_set_new(o, "server_rss_start", json_integer(rss_start));
    json_object_set_new(o, "server_rss_end", json_integer(rss_end));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                JSON_REAL_PRECISION(6));
    if (a->json)
        puts(s ? s : "{\"error\":\"out of memory for the result\"}");
    else
        printf("op=%s clients=%u pipeline=%u qps=%.0f p50_ms=%.3f "
               "p99_ms=%.3f errors=%ld\n", ops[a->op], a->clients,
               a->pipeline, requests / elapsed, p50, p99, errors);
    for (unsigned i = 0; i < a->clients; i++) {
        if (cs[i].err[0]) {
            fprintf(stderr, "quiver bench server: client %u: %s\n", i,
                    cs[i].err);
            break;
        }
    }
    free(s);
    json_decref(o);
    qv_mem_free(all);
}

int bench_server(int argc, char **argv)
{
    struct server_args a;
    char err[512] = "";
    struct client *cs = NULL;
    float *queries = NULL;
    long nq = 0;
    int rc = 1;
    if (parse_server_args(argc, argv, &a) != 0)
        return 2;
    if (a.tls &&
        !(a.tls_ctx = stream_client_context(a.tls_ca, err, sizeof err)))
        goto cleanup;
    if (prepare_collection(&a, err, sizeof err) != 0)
        goto cleanup;
    queries = load_queries(&a, &nq, err, sizeof err);
    if (a.query && !queries)
        goto cleanup;
    cs = qv_calloc(a.clients, sizeof *cs);
    if (!cs)
        goto cleanup;
    size_t cap = (size_t)(a.seconds * 200000 / a.clients) + 1024;
    for (unsigned i = 0; i < a.clients; i++) {
        cs[i] = (struct client){.a = &a, .seed = 1234567u + i * 7919u,
                                .queries = queries, .nq = nq, .cap = cap};
        cs[i].latencies_ms = qv_malloc(cap * sizeof(float));
        cs[i].at_s = qv_malloc(cap * sizeof(float));
        cs[i].s.fd = -1;
        if (open_stream(&a, &cs[i].s, err, sizeof err) != 0 ||
            !cs[i].latencies_ms || !cs[i].at_s)
            goto cleanup;
        if (a.token) {  /* authenticate on the raw connection */
            Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
            Quiver__V1__Authenticate auth = QUIVER__V1__AUTHENTICATE__INIT;
            auth.token = (char *)a.token;
            req.op_case = QUIVER__V1__REQUEST__OP_AUTHENTICATE;
            req.authenticate = &auth;
            wbuf out = {0}, in = {0};
            frame_append(&out, &req.base);
            int bad = write_all(&cs[i].s, out.data, out.len) != 0 ||
                      read_responses(&cs[i], &in, 1, cli_now()) != 0 ||
                      cs[i].errors;
            cs[i].requests = cs[i].errors = 0;
            cs[i].nlat = 0;
            wbuf_release(&out);
            wbuf_release(&in);
            if (bad) {
                snprintf(err, sizeof err, "authentication failed");
                goto cleanup;
            }
        }
    }
    long long rss_start = server_rss(&a);
    double t0 = cli_now();
    for (unsigned i = 0; i < a.clients; i++) {
        cs[i].start = t0;
        cs[i].deadline = t0 + a.seconds;
        pthread_create(&cs[i].tid, NULL, client_main, &cs[i]);
    }
    for (unsigned i = 0; i < a.clients; i++)
        pthread_join(cs[i].tid, NULL);
    double elapsed = cli_now() - t0;
    report(&a, cs, elapsed, rss_start, server_rss(&a));
    rc = 0;
cleanup:
    if (rc != 0)
        fprintf(stderr, "quiver bench server: %s\n", err[0] ? err : "failed");
    for (unsigned i = 0; cs && i < a.clients; i++) {
        stream_end_tls(&cs[i].s);
        if (cs[i].s.fd > 0)  /* 0: never dialled (calloc) */
            close(cs[i].s.fd);
        qv_mem_free(cs[i].latencies_ms);
        qv_mem_free(cs[i].at_s);
    }
    qv_mem_free(cs);
    qv_mem_free(queries);
    SSL_CTX_free(a.tls_ctx);
    return rc;
}
