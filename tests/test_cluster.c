/*
 * test_cluster.c - quiverd nodes of one cluster (docs/CLUSTER.md): a
 * nats-server with JetStream and two quiverd nodes, all started by the
 * test on loopback ports and stopped by it. A write made through one node
 * is applied by both, refusals alike, and a node that was stopped catches
 * up from its own position. test_clients_of_three_nodes runs three nodes
 * on three clustered nats-servers, with clients on each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "tests/test_util.h"

#define MAX_NODES 5

struct cluster {
    char *dir;
    pid_t nats;
    char url[128];
    int port[MAX_NODES];
    pid_t node_pid[MAX_NODES];
    char *scratch[2];   /* more directories a test made */
    /* a NATS cluster of three instead of one server (cluster_start3) */
    pid_t nats3[3];
    int nats_port[3], route_port[3];
    char routes[256];
    char *node_dir[MAX_NODES];
    qv_db *h[MAX_NODES];
    /* a thread searching (searcher_start), stopped by the teardown when
     * the test failed first */
    struct searcher *searcher;
    pthread_t searcher_thread;
    qv_db *ref;         /* an embedded database a test compares with */
};

static void searcher_stop(struct cluster *c);

/* The writer thread running, if any (writer_start; tests run one at a
 * time): the teardown stops it when the test failed first, before it
 * closes the handle the writer uses. */
struct writer;
static struct writer *running_writer;
static pthread_t running_thread;
static void writer_stop(struct writer *w, pthread_t t);

/* Start node i (again: on the port it had, as a restarted server
 * would). */
static void start_node(struct cluster *c, int i)
{
    char name[16], listen[32];
    snprintf(name, sizeof name, "n%d", i + 1);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", c->port[i]);
    const char *extra[] = {"--listen", listen, "--cluster", c->url, "--node",
                           name, "--stream", "test", "--stream-replicas",
                           c->nats3[0] ? "3" : "1", NULL};
    int port = tu_start_server(c->node_dir[i], extra, &c->node_pid[i]);
    char uri[64];
    c->port[i] = port;
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d", port);
    assert_ok(NULL, qv_open(uri, NULL, &c->h[i]));
}

static void stop_node(struct cluster *c, int i)
{
    qv_close(c->h[i]);
    c->h[i] = NULL;
    int status = tu_stop_server(c->node_pid[i]);
    c->node_pid[i] = 0;
    if (status != 0) {   /* what the node said, for the report */
        char path[4200], line[1024];
        snprintf(path, sizeof path, "%s/quiverd.log", c->node_dir[i]);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            fprintf(stderr, "n%d: %s", i + 1, line);
        if (f)
            fclose(f);
    }
    assert_int_equal(status, 0);
}

/* Only what cannot fail: a test that fails while it starts the
 * processes (cluster_start) still has its teardown run. */
static int cluster_setup(void **state)
{
    struct cluster *c = calloc(1, sizeof *c);
    assert_non_null(c);
    *state = c;
    return 0;
}

/* A nats-server and nodes nodes, each in a directory of its own. */
static struct cluster *cluster_start_n(void **state, int nodes)
{
    struct cluster *c = *state;
    c->dir = tu_mkdtemp();
    for (int i = 0; i < nodes; i++)
        c->node_dir[i] = tu_mkdtemp();
    c->nats = tu_start_nats(c->dir, c->url, sizeof c->url);
    for (int i = 0; i < nodes; i++)
        start_node(c, i);
    return c;
}

static struct cluster *cluster_start(void **state)
{
    return cluster_start_n(state, 2);
}

static void start_nats3_server(struct cluster *c, int i)
{
    char name[8], url[64];
    snprintf(name, sizeof name, "s%d", i);
    c->nats3[i] = tu_start_nats_server(c->dir, name, c->nats_port[i],
                                       c->route_port[i], c->routes, url,
                                       sizeof url);
}

/* Three clustered nats-servers (the stream at replicas 3) and as many
 * quiverd nodes as asked, each knowing all three servers. */
static struct cluster *cluster_start3(void **state, int nodes)
{
    struct cluster *c = *state;
    c->dir = tu_mkdtemp();
    for (int i = 0; i < nodes; i++)
        c->node_dir[i] = tu_mkdtemp();
    size_t n = 0, u = 0;
    for (int i = 0; i < 3; i++) {
        c->nats_port[i] = tu_free_port();
        c->route_port[i] = tu_free_port();
        n += (size_t)snprintf(c->routes + n, sizeof c->routes - n,
                              "%snats://127.0.0.1:%d", i ? "," : "",
                              c->route_port[i]);
        u += (size_t)snprintf(c->url + u, sizeof c->url - u,
                              "%snats://127.0.0.1:%d", i ? "," : "",
                              c->nats_port[i]);
    }
    for (int i = 0; i < 3; i++)
        start_nats3_server(c, i);
    for (int i = 0; i < nodes; i++)
        start_node(c, i);
    return c;
}

static int cluster_teardown(void **state)
{
    struct cluster *c = *state;
    searcher_stop(c);
    if (running_writer)
        writer_stop(running_writer, running_thread);
    qv_close(c->ref);
    for (int i = 0; i < MAX_NODES; i++) {
        qv_close(c->h[i]);
        if (c->node_pid[i] > 0)
            tu_stop_server(c->node_pid[i]);
        if (c->node_dir[i])
            tu_rmdir(c->node_dir[i]);
    }
    for (int i = 0; i < 2; i++)
        if (c->scratch[i])
            tu_rmdir(c->scratch[i]);
    if (c->nats > 0)
        tu_stop_nats(c->nats);
    for (int i = 0; i < 3; i++)
        if (c->nats3[i] > 0)
            tu_stop_nats(c->nats3[i]);
    if (c->dir)
        tu_rmdir(c->dir);
    free(c);
    return 0;
}

static void upsert_range(qv_db *db, int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[16], payload[32];
        float v[4] = {(float)i, (float)(i % 7), 1, -1};
        snprintf(id, sizeof id, "d%03d", i);
        snprintf(payload, sizeof payload, "{\"n\":%d}", i);
        qv_doc doc = {id, v, 4, payload};
        assert_ok(db, qv_upsert(db, "docs", &doc, 1));
    }
}

static uint64_t count(qv_db *db)
{
    uint64_t n = 0;
    assert_ok(db, qv_count(db, "docs", NULL, &n));
    return n;
}

/* The nearest id to a query, on one node. */
static void nearest(qv_db *db, char *id, size_t len)
{
    float q[4] = {10.2f, 3, 1, -1};
    qv_search_options opt = {.k = 1};
    qv_hits *hits = NULL;
    assert_ok(db, qv_search(db, "docs", q, 4, &opt, &hits));
    assert_int_equal(hits->count, 1);
    snprintf(id, len, "%s", hits->hits[0].id);
    qv_free(hits);
}

/* Writes through node 1 are applied by node 2, refusals included. */
static void test_writes_reach_every_node(void **state)
{
    struct cluster *c = cluster_start(state);
    qv_collection_config cfg = {.dim = 4, .metric = QV_METRIC_L2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    upsert_range(c->h[0], 0, 40);
    assert_ok(c->h[0], qv_delete(c->h[0], "docs", "d005"));
    uint64_t deleted = 0;
    assert_ok(c->h[0], qv_delete_where(c->h[0], "docs", "{\"n\":{\"$gte\":30}}",
                                       &deleted));
    assert_int_equal(deleted, 10);
    /* refused on every node alike, and the answer says so */
    assert_status(c->h[0], qv_delete(c->h[0], "docs", "nope"),
                  QV_ERR_NOT_FOUND);
    assert_string_equal(qv_errmsg(c->h[0]), "document 'nope' not found "
                                            "in collection 'docs'");
    assert_status(c->h[0], qv_create_collection(c->h[0], "docs", &cfg),
                  QV_ERR_EXISTS);
    uint64_t token = 0;
    assert_ok(c->h[0], qv_write_token(c->h[0], &token));
    assert_true(token >= 45);

    assert_ok(c->h[1], qv_read_after(c->h[1], token));
    assert_int_equal(count(c->h[1]), 29);
    assert_int_equal(count(c->h[0]), 29);
    qv_record *r = NULL;
    assert_ok(c->h[1], qv_get(c->h[1], "docs", "d012", &r));
    assert_string_equal(r->payload, "{\"n\":12}");
    qv_free(r);
    assert_status(c->h[1], qv_get(c->h[1], "docs", "d005", &r),
                  QV_ERR_NOT_FOUND);
    char a[16], b[16];
    nearest(c->h[0], a, sizeof a);
    nearest(c->h[1], b, sizeof b);
    assert_string_equal(a, "d010");
    assert_string_equal(b, a);
    /* a write through node 2 is read through node 1 after its token */
    upsert_range(c->h[1], 40, 45);
    assert_ok(c->h[1], qv_write_token(c->h[1], &token));
    assert_ok(c->h[0], qv_read_after(c->h[0], token));
    assert_int_equal(count(c->h[0]), 34);
    char *report = NULL;
    for (int i = 0; i < 2; i++) {
        assert_ok(c->h[i], qv_check(c->h[i], &report));
        qv_free(report);
    }
    /* both nodes are members; the log's last entry is the last write */
    char *text = NULL;
    assert_ok(c->h[1], qv_cluster_status(c->h[1], &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    assert_non_null(st);
    assert_string_equal(json_string_value(json_object_get(st, "node")), "n2");
    json_t *stream = json_object_get(st, "stream");
    assert_string_equal(json_string_value(json_object_get(stream, "name")),
                        "test");
    assert_int_equal(json_integer_value(json_object_get(stream, "last_seq")),
                     token);
    json_t *nodes = json_object_get(st, "nodes");
    assert_int_equal(json_array_size(nodes), 2);
    int seen = 0;
    for (size_t i = 0; i < 2; i++) {
        const char *name = json_string_value(
            json_object_get(json_array_get(nodes, i), "node"));
        seen |= !strcmp(name, "n1") ? 1 : !strcmp(name, "n2") ? 2 : 0;
    }
    assert_int_equal(seen, 3);
    json_decref(st);
}

/*
 * Embedding tables trained through both nodes come out bit-identical on
 * both: quantized methods round stochastically, seeded from the table's
 * seed, its step and the row, all the same on every node.
 */
static void test_tables_are_bit_identical(void **state)
{
    struct cluster *c = cluster_start(state);
    enum { IDS = 64, DIM = 8 };
    static const char *const methods[] = {"full", "int8", "alpt:8",
                                          "hash:16", "tt:2"};
    uint64_t ids[IDS];
    float grads[IDS * DIM], rows[2][IDS * DIM];
    uint64_t rng = 3;
    for (int i = 0; i < IDS; i++)
        ids[i] = tu_rand(&rng) % 1000;
    for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
        char name[16];
        snprintf(name, sizeof name, "t%zu", m);
        qv_table_config cfg = {.rows = 1000, .dim = DIM,
                               .method = methods[m], .seed = 7};
        assert_ok(c->h[0], qv_table_create(c->h[0], name, &cfg));
        for (int step = 0; step < 6; step++) {
            for (int k = 0; k < IDS * DIM; k++)
                grads[k] = tu_randf(&rng) - 0.5f;
            qv_db *via = c->h[step % 2];   /* both nodes take updates */
            assert_ok(via, qv_table_update(via, name, ids, IDS, DIM, grads));
            uint64_t token = 0;
            assert_ok(via, qv_write_token(via, &token));
            assert_ok(c->h[(step + 1) % 2],
                      qv_read_after(c->h[(step + 1) % 2], token));
        }
        for (int i = 0; i < 2; i++)
            assert_ok(c->h[i], qv_table_lookup(c->h[i], name, ids, IDS, DIM,
                                               rows[i]));
        assert_memory_equal(rows[0], rows[1], sizeof rows[0]);
    }
}

/* A write larger than the log takes in one entry (NATS's max_payload, 1
 * MiB here) is refused before anything is appended. */
static void test_write_too_large_for_the_log(void **state)
{
    struct cluster *c = cluster_start(state);
    enum { N = 400, DIM = 784 };   /* 1.25 MB of floats */
    qv_collection_config cfg = {.dim = DIM, .metric = QV_METRIC_L2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "big", &cfg));
    static float v[N][DIM];
    static char ids[N][16];
    static qv_doc docs[N];
    for (int i = 0; i < N; i++) {
        v[i][0] = (float)i;
        snprintf(ids[i], sizeof ids[i], "b%d", i);
        docs[i] = (qv_doc){ids[i], v[i], DIM, NULL};
    }
    uint64_t before = 0, after = 0;
    assert_ok(c->h[0], qv_write_token(c->h[0], &before));
    assert_status(c->h[0], qv_upsert(c->h[0], "big", docs, N),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(c->h[0]), "more than the cluster's "
                                               "write log takes in one entry"));
    assert_ok(c->h[0], qv_write_token(c->h[0], &after));
    assert_int_equal(after, before);   /* nothing was appended */
    assert_ok(c->h[0], qv_upsert(c->h[0], "big", docs, N / 4));
    uint64_t n = 0;
    assert_ok(c->h[0], qv_count(c->h[0], "big", NULL, &n));
    assert_int_equal(n, N / 4);
}

/* Document id of collection is the same on both nodes, or absent on
 * both. */
static void expect_same_document(struct cluster *c, const char *collection,
                                 const char *id)
{
    qv_record *r[2] = {NULL, NULL};
    qv_status st[2];
    for (int i = 0; i < 2; i++)
        st[i] = qv_get(c->h[i], collection, id, &r[i]);
    assert_int_equal(st[0], st[1]);
    if (st[0] == QV_OK) {
        assert_int_equal(r[0]->dim, r[1]->dim);
        assert_memory_equal(r[0]->vector, r[1]->vector,
                            r[0]->dim * sizeof(float));
        assert_string_equal(r[0]->payload ? r[0]->payload : "",
                            r[1]->payload ? r[1]->payload : "");
    }
    qv_free(r[0]);
    qv_free(r[1]);
}

/* A node that was down applies what it missed, from its own position,
 * each entry once. */
static void test_stopped_node_catches_up(void **state)
{
    struct cluster *c = cluster_start(state);
    qv_collection_config cfg = {.dim = 4, .metric = QV_METRIC_L2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    upsert_range(c->h[0], 0, 10);
    uint64_t token = 0;
    assert_ok(c->h[0], qv_write_token(c->h[0], &token));
    assert_ok(c->h[1], qv_read_after(c->h[1], token));
    assert_int_equal(count(c->h[1]), 10);
    stop_node(c, 1);
    /* the node reads these back to back, and makes runs of upserts into
     * one collection as one write: a run holding a refused upsert, a
     * repeated id, and writes of another kind and collection between */
    upsert_range(c->h[0], 10, 25);
    float v[4] = {7, 7, 7, 7}, wrong[3] = {1, 2, 3};
    qv_doc again = {"d012", v, 4, "{\"again\":1}"};
    qv_doc refused = {"d099", wrong, 3, NULL};
    assert_ok(c->h[0], qv_upsert(c->h[0], "docs", &again, 1));
    assert_status(c->h[0], qv_upsert(c->h[0], "docs", &refused, 1),
                  QV_ERR_DIMENSION);
    assert_ok(c->h[0], qv_create_collection(c->h[0], "other", &cfg));
    assert_ok(c->h[0], qv_upsert(c->h[0], "other", &again, 1));
    upsert_range(c->h[0], 25, 30);
    assert_ok(c->h[0], qv_delete(c->h[0], "docs", "d003"));
    assert_ok(c->h[0], qv_write_token(c->h[0], &token));
    start_node(c, 1);
    assert_ok(c->h[1], qv_read_after(c->h[1], token));
    assert_int_equal(count(c->h[1]), 29);
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%03d", i);
        expect_same_document(c, "docs", id);
    }
    expect_same_document(c, "other", "d012");
    char *report = NULL;
    assert_ok(c->h[1], qv_check(c->h[1], &report));
    qv_free(report);
}

/* A handle given both nodes moves to the other when its node stops:
 * reads are asked again there (after the handle's own writes), a write
 * that met the failure is reported as of unknown outcome, never repeated. */
static void test_client_moves_between_nodes(void **state)
{
    struct cluster *c = cluster_start(state);
    char uri[128];
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d,127.0.0.1:%d", c->port[0],
             c->port[1]);
    qv_db *h = NULL;
    assert_ok(NULL, qv_open(uri, NULL, &h));
    qv_collection_config cfg = {.dim = 4, .metric = QV_METRIC_L2};
    assert_ok(h, qv_create_collection(h, "docs", &cfg));
    upsert_range(h, 0, 20);
    stop_node(c, 0);   /* the node h is connected to */
    assert_int_equal(count(h), 20);   /* asked again of node 2 */
    upsert_range(h, 20, 25);
    assert_int_equal(count(h), 25);
    qv_close(h);
    start_node(c, 0);
    assert_status(NULL, qv_open("qv://127.0.0.1:1,127.0.0.1:x", NULL, &h),
                  QV_ERR_INVALID);
}

/* kill -9 of node i, and its handle closed. */
static void kill_node(struct cluster *c, int i)
{
    qv_close(c->h[i]);
    c->h[i] = NULL;
    kill(c->node_pid[i], SIGKILL);
    waitpid(c->node_pid[i], NULL, 0);
    c->node_pid[i] = 0;
}

/* A writer through one node: single upserts until told to stop or its
 * node fails; how many were acknowledged, announced as they come. */
struct writer {
    qv_db *db;
    pthread_mutex_t lock;
    pthread_cond_t progress;
    int acked, stop, failed_at;   /* failed_at: the write that failed */
    int go_on;                    /* keep writing past failures */
    int failures;                 /* with go_on */
    int pace_ms;                  /* a pause between writes, or 0 */
    char ids[4096][8];            /* with go_on: acknowledged ids */
    uint64_t token;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0;; i++) {
        pthread_mutex_lock(&w->lock);
        int stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        char id[16];
        float v[4] = {(float)i, 1, 2, 3};
        snprintf(id, sizeof id, "w%05d", i);
        qv_doc doc = {id, v, 4, NULL};
        qv_status st = stop ? QV_OK : qv_upsert(w->db, "docs", &doc, 1);
        if (!stop && st != QV_OK && w->go_on) {
            pthread_mutex_lock(&w->lock);
            w->failures++;
            pthread_cond_broadcast(&w->progress);
            pthread_mutex_unlock(&w->lock);
            continue;
        }
        if (stop || st != QV_OK || (w->go_on && w->acked == 4096)) {
            pthread_mutex_lock(&w->lock);
            w->failed_at = i;
            pthread_cond_broadcast(&w->progress);
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        if (w->pace_ms) {   /* spread the writes over a longer run */
            struct timespec pause = {0, w->pace_ms * 1000000L};
            nanosleep(&pause, NULL);
        }
        pthread_mutex_lock(&w->lock);
        if (w->go_on)
            memcpy(w->ids[w->acked], id + 1, 6);
        w->acked = w->go_on ? w->acked + 1 : i + 1;
        qv_write_token(w->db, &w->token);
        pthread_cond_broadcast(&w->progress);
        pthread_mutex_unlock(&w->lock);
    }
}

/* Start w's thread (w filled in but for its lock and condition). */
static pthread_t writer_start(struct writer *w)
{
    pthread_t t;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->progress, NULL);
    assert_int_equal(pthread_create(&t, NULL, writer_main, w), 0);
    running_writer = w;
    running_thread = t;
    return t;
}

/* Wait for the writer to end (it was told to stop, or its node failed). */
static void writer_join(pthread_t t)
{
    pthread_join(t, NULL);
    running_writer = NULL;
}

/* Tell the writer to stop and wait for it. */
static void writer_stop(struct writer *w, pthread_t t)
{
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_mutex_unlock(&w->lock);
    writer_join(t);
}

static void writer_release(struct writer *w)
{
    pthread_cond_destroy(&w->progress);
    pthread_mutex_destroy(&w->lock);
}

/* Every write a go_on writer had acknowledged is on node i, whose
 * database passes check. */
static void expect_writer_acked(struct cluster *c, int i,
                                const struct writer *w)
{
    assert_ok(c->h[i], qv_read_after(c->h[i], w->token));
    for (int k = 0; k < w->acked; k++) {
        char id[16];
        qv_record *r = NULL;
        snprintf(id, sizeof id, "w%.6s", w->ids[k]);
        assert_ok(c->h[i], qv_get(c->h[i], "docs", id, &r));
        qv_free(r);
    }
    char *report = NULL;
    assert_ok(c->h[i], qv_check(c->h[i], &report));
    qv_free(report);
}

/* Wait until the writer acknowledged n more writes, or stopped. */
static void await_more(struct writer *w, int n)
{
    pthread_mutex_lock(&w->lock);
    int until = w->acked + n;
    while (w->acked < until && w->failed_at < 0)
        pthread_cond_wait(&w->progress, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/* Every acknowledged write w%05d below acked is on node i. */
static void expect_acked(struct cluster *c, int i, int acked, uint64_t token)
{
    assert_ok(c->h[i], qv_read_after(c->h[i], token));
    for (int k = 0; k < acked; k++) {
        char id[16];
        qv_record *r = NULL;
        snprintf(id, sizeof id, "w%05d", k);
        assert_ok(c->h[i], qv_get(c->h[i], "docs", id, &r));
        assert_true(r->vector[0] == (float)k);
        qv_free(r);
    }
}

/*
 * kill -9 of a node while writes go through another (CLUSTER_KILL_CYCLES
 * times, 1 by default; make cluster-crash-test runs 50), then of the node
 * the writes go through: no acknowledged write is lost, both nodes end
 * with the same documents, and check passes on both.
 */
static void test_kill_nodes_mid_write(void **state)
{
    struct cluster *c = cluster_start(state);
    qv_collection_config cfg = {.dim = 4, .metric = QV_METRIC_L2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    struct writer w = {.db = c->h[0], .failed_at = -1};
    pthread_t t = writer_start(&w);
    const char *env = getenv("CLUSTER_KILL_CYCLES");
    int cycles = env ? atoi(env) : 1;
    for (int k = 0; k < cycles; k++) {
        await_more(&w, 10);
        kill_node(c, 1);                 /* a node that only applies */
        await_more(&w, 20);
        start_node(c, 1);
    }
    kill(c->node_pid[1], SIGSTOP);       /* frozen: the writes go on */
    await_more(&w, 20);
    kill(c->node_pid[1], SIGCONT);
    await_more(&w, 20);
    /* the writer's own node: its write in flight fails (or lands) */
    qv_db *writer_db = c->h[0];
    c->h[0] = NULL;
    kill(c->node_pid[0], SIGKILL);
    waitpid(c->node_pid[0], NULL, 0);
    c->node_pid[0] = 0;
    writer_join(t);
    qv_close(writer_db);
    assert_true(w.acked >= 30 * cycles + 20);
    print_message("# %d kill -9 cycles of the applying node, %d writes "
                  "acknowledged\n", cycles, w.acked);
    expect_acked(c, 1, w.acked, w.token);
    start_node(c, 0);
    expect_acked(c, 0, w.acked, w.token);
    uint64_t n0 = 0, n1 = 0, last = 0;
    /* both nodes applied the whole log: the same documents */
    char *text = NULL;
    assert_ok(c->h[0], qv_cluster_status(c->h[0], &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    last = (uint64_t)json_integer_value(
        json_object_get(json_object_get(st, "stream"), "last_seq"));
    json_decref(st);
    for (int i = 0; i < 2; i++)
        assert_ok(c->h[i], qv_read_after(c->h[i], last));
    assert_ok(c->h[0], qv_count(c->h[0], "docs", NULL, &n0));
    assert_ok(c->h[1], qv_count(c->h[1], "docs", NULL, &n1));
    assert_int_equal(n0, n1);
    assert_true(n0 == (uint64_t)w.acked || n0 == (uint64_t)w.acked + 1);
    char *report = NULL;
    for (int i = 0; i < 2; i++) {
        assert_ok(c->h[i], qv_check(c->h[i], &report));
        qv_free(report);
    }
    writer_release(&w);
}

/* The whole cluster stopped and started again (the nats-server on its
 * store, each node on its database): everything written is there, and
 * writes go on. */
static void test_whole_cluster_restarts(void **state)
{
    struct cluster *c = cluster_start(state);
    qv_collection_config cfg = {.dim = 4, .metric = QV_METRIC_L2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    upsert_range(c->h[0], 0, 30);
    for (int i = 0; i < 2; i++)
        stop_node(c, i);
    tu_stop_nats(c->nats);
    c->nats = tu_start_nats(c->dir, c->url, sizeof c->url);
    for (int i = 0; i < 2; i++)
        start_node(c, i);
    upsert_range(c->h[1], 30, 40);
    uint64_t token = 0;
    assert_ok(c->h[1], qv_write_token(c->h[1], &token));
    assert_ok(c->h[0], qv_read_after(c->h[0], token));
    assert_int_equal(count(c->h[0]), 40);
    assert_int_equal(count(c->h[1]), 40);
}

/* Wait until the writer has had n more failures. */
static void await_failures(struct writer *w, int n)
{
    pthread_mutex_lock(&w->lock);
    int until = w->failures + n;
    while (w->failures < until && w->failed_at < 0)
        pthread_cond_wait(&w->progress, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/*
 * The write log's servers fail: with one of three nats-servers killed
 * writes go on (the stream keeps its quorum); with two, writes fail with
 * CONNECTION and nothing acknowledged is lost; when they come back,
 * writes go on and both nodes hold every acknowledged write.
 */
static void test_nats_servers_fail(void **state)
{
    struct cluster *c = cluster_start3(state, 2);
    qv_collection_config cfg = {.dim = 4, .metric = QV_METRIC_L2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    struct writer w = {.db = c->h[0], .failed_at = -1, .go_on = 1};
    pthread_t t = writer_start(&w);
    await_more(&w, 20);
    kill(c->nats3[2], SIGKILL);
    waitpid(c->nats3[2], NULL, 0);
    c->nats3[2] = 0;
    await_more(&w, 30);               /* quorum of two: writes go on */
    kill(c->nats3[1], SIGKILL);
    waitpid(c->nats3[1], NULL, 0);
    c->nats3[1] = 0;
    await_failures(&w, 1);            /* no quorum: refused, said so */
    start_nats3_server(c, 1);
    start_nats3_server(c, 2);
    await_more(&w, 20);               /* back */
    writer_stop(&w, t);
    assert_true(w.failures >= 1);
    for (int i = 0; i < 2; i++)
        expect_writer_acked(c, i, &w);
    print_message("# %d writes acknowledged, %d refused while the log had "
                  "no quorum\n", w.acked, w.failures);
    writer_release(&w);
}

/* quiverd on dir with extra must refuse to start, saying expected. */
static void expect_refusal(const char *dir, const char *const *extra,
                           const char *expected)
{
    const char *build = getenv("QUIVER_BUILD");
    char bin[4096], log[4200], text[2048] = "";
    snprintf(bin, sizeof bin, "%s/quiverd", build ? build : "build/asan");
    snprintf(log, sizeof log, "%s/refusal.log", dir);
    const char *argv[16] = {bin, "--db", dir, "--listen", "127.0.0.1:0"};
    int argc = 5;
    for (int i = 0; extra[i] && argc < 15; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = fopen(log, "w");
        if (f)
            dup2(fileno(f), STDERR_FILENO);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    unlink(log);
    if (!strstr(text, expected))
        fail_msg("quiverd said '%s', not '%s'", text, expected);
}

/* A node starts only on an empty database or its own replica; a replica
 * is not served alone, nor as a node of another stream. */
static void test_databases_are_kept_apart(void **state)
{
    struct cluster *c = cluster_start(state);
    char *alone = c->scratch[0] = tu_mkdtemp();
    qv_db *db = NULL;
    qv_collection_config cfg = {.dim = 2, .metric = QV_METRIC_L2};
    assert_ok(NULL, qv_open(alone, NULL, &db));
    assert_ok(db, qv_create_collection(db, "mine", &cfg));
    qv_close(db);
    const char *join[] = {"--cluster", c->url, "--node", "n3", "--stream",
                          "test", NULL};
    expect_refusal(alone, join, "holds collections or tables written "
                                "without a cluster");
    tu_rmdir(alone);
    c->scratch[0] = NULL;

    stop_node(c, 1);
    /* the shell opens a node's database read-only, and says so */
    const char *build = getenv("QUIVER_BUILD");
    char cmd[8400], out[2048] = "";
    snprintf(cmd, sizeof cmd, "'%s/quiver' --db '%s' -c 'create x dim=2' "
             "2>&1", build ? build : "build/asan", c->node_dir[1]);
    FILE *shell = popen(cmd, "r");
    assert_non_null(shell);
    size_t got = fread(out, 1, sizeof out - 1, shell);
    out[got] = '\0';
    assert_int_not_equal(pclose(shell), 0);
    assert_non_null(strstr(out, "is a cluster node's database: opened "
                                "read-only"));
    assert_non_null(strstr(out, "READONLY"));
    const char *none[] = {NULL};
    expect_refusal(c->node_dir[1], none, "is a cluster node's replica of a "
                                         "write log");
    const char *other[] = {"--cluster", c->url, "--node", "n2", "--stream",
                           "other", NULL};
    expect_refusal(c->node_dir[1], other, "a replica of another write log "
                                          "than stream 'other'");
    start_node(c, 1);
    /* a live node's name is not taken by a node of another database */
    char *twin = c->scratch[1] = tu_mkdtemp();
    const char *same_name[] = {"--cluster", c->url, "--node", "n1",
                               "--stream", "test", NULL};
    expect_refusal(twin, same_name, "node name 'n1' is taken by a live node "
                                    "with another database");
    tu_rmdir(twin);
    c->scratch[1] = NULL;
}

/*
 * A mixed workload from several clients of three nodes. Each client
 * writes ids of its own through a handle that names every node, its own
 * first, and remembers what was acknowledged; a write that met a failed
 * node is of unknown outcome and only has to agree across the nodes.
 */
#define CLIENTS 3
#define ROUNDS 120

enum outcome { UNWRITTEN, PRESENT, DELETED, UNKNOWN };

struct client {
    char uri[192];
    int n;                        /* ids "c<n>-<k>" */
    enum outcome state[ROUNDS];
    int rounds;                   /* ids written so far */
    char why[256];                /* the first check that failed */
};

struct workload {
    pthread_mutex_t lock;
    pthread_cond_t progress;
    int acked, done;              /* over all clients */
};

static struct workload load = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void client_id(char *id, size_t len, int n, int k)
{
    snprintf(id, len, "c%d-%03d", n, k);
}

static void announce(int acked, int done)
{
    pthread_mutex_lock(&load.lock);
    load.acked += acked;
    load.done += done;
    pthread_cond_broadcast(&load.progress);
    pthread_mutex_unlock(&load.lock);
}

/* Wait until the clients acknowledged n writes in all, or all stopped. */
static void await_acked(int n)
{
    pthread_mutex_lock(&load.lock);
    while (load.acked < n && load.done < CLIENTS)
        pthread_cond_wait(&load.progress, &load.lock);
    pthread_mutex_unlock(&load.lock);
}

/* What a write's status means: acknowledged, unknown (its node failed
 * while it was in flight), or a failure of the test. */
static int judge_write(struct client *cl, qv_db *db, qv_status st,
                       enum outcome *state, enum outcome ok)
{
    if (st == QV_OK) {
        *state = ok;
        announce(1, 0);
        return 0;
    }
    if (st == QV_ERR_CONNECTION) {
        *state = UNKNOWN;
        return 0;
    }
    snprintf(cl->why, sizeof cl->why, "a write answered %s: %s",
             qv_strerror(st), qv_errmsg(db));
    return -1;
}

/* Its own latest write is what the handle reads, on whichever node. */
static int read_own_write(struct client *cl, qv_db *db, int k)
{
    char id[16];
    client_id(id, sizeof id, cl->n, k);
    qv_record *r = NULL;
    qv_status st = qv_get(db, "docs", id, &r);
    int ok = st == QV_OK && r->vector[0] == (float)k &&
             r->vector[1] == (float)cl->n;
    if (!ok)
        snprintf(cl->why, sizeof cl->why, "its own write %s read back as "
                 "%s: %s", id, qv_strerror(st), qv_errmsg(db));
    qv_free(r);
    return ok ? 0 : -1;
}

static int client_round(struct client *cl, qv_db *db, int k)
{
    char id[16], payload[32];
    float v[4] = {(float)k, (float)cl->n, 1, -1};
    client_id(id, sizeof id, cl->n, k);
    snprintf(payload, sizeof payload, "{\"k\":%d}", k);
    qv_doc doc = {id, v, 4, payload};
    if (judge_write(cl, db, qv_upsert(db, "docs", &doc, 1), &cl->state[k],
                    PRESENT) != 0)
        return -1;
    if (cl->state[k] == PRESENT && read_own_write(cl, db, k) != 0)
        return -1;
    if (k % 4 == 3) {   /* delete one written two rounds ago */
        client_id(id, sizeof id, cl->n, k - 2);
        qv_status st = qv_delete(db, "docs", id);
        if (st == QV_ERR_NOT_FOUND && cl->state[k - 2] == UNKNOWN)
            st = QV_OK;   /* that write was not applied after all */
        if (judge_write(cl, db, st, &cl->state[k - 2], DELETED) != 0)
            return -1;
    }
    if (k % 8 == 5) {   /* reads are asked again on another node */
        qv_search_options opt = {.k = 3};
        qv_hits *hits = NULL;
        qv_status st = qv_search(db, "docs", v, 4, &opt, &hits);
        qv_free(hits);
        if (st != QV_OK) {
            snprintf(cl->why, sizeof cl->why, "a search answered %s: %s",
                     qv_strerror(st), qv_errmsg(db));
            return -1;
        }
    }
    return 0;
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    qv_db *db = NULL;
    if (qv_open(cl->uri, NULL, &db) != QV_OK) {
        snprintf(cl->why, sizeof cl->why, "open %s: %s", cl->uri,
                 qv_errmsg(NULL));
    } else {
        while (cl->rounds < ROUNDS && client_round(cl, db, cl->rounds) == 0)
            cl->rounds++;
    }
    qv_close(db);
    announce(0, 1);
    return NULL;
}

/* Node i holds what client cl was acknowledged, and the same as node 0
 * for each of its writes of unknown outcome. */
static void expect_client_writes(struct cluster *c, int i,
                                 const struct client *cl)
{
    for (int k = 0; k < cl->rounds; k++) {
        char id[16];
        client_id(id, sizeof id, cl->n, k);
        qv_record *r = NULL;
        qv_status st = qv_get(c->h[i], "docs", id, &r);
        qv_free(r);
        if (cl->state[k] == UNKNOWN) {
            qv_status first = qv_get(c->h[0], "docs", id, &r);
            qv_free(r);
            assert_int_equal(st, first);
        } else {
            assert_int_equal(st, cl->state[k] == PRESENT ? QV_OK
                                                         : QV_ERR_NOT_FOUND);
        }
    }
}

/* The log's last sequence, as node i sees it. */
static uint64_t last_seq(struct cluster *c, int i)
{
    char *text = NULL;
    assert_ok(c->h[i], qv_cluster_status(c->h[i], &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    assert_non_null(st);
    uint64_t last = (uint64_t)json_integer_value(
        json_object_get(json_object_get(st, "stream"), "last_seq"));
    json_decref(st);
    return last;
}

/*
 * Three nats-servers (replicas 3) and three nodes, a client on each node
 * writing, deleting, reading its own writes and searching, while one node
 * is killed with -9 and started again and another is frozen (SIGSTOP) and
 * thawed. Afterwards every acknowledged write is on every node, the nodes
 * agree on every id written, and check passes on each.
 */
static void test_clients_of_three_nodes(void **state)
{
    struct cluster *c = cluster_start3(state, 3);
    qv_collection_config cfg = {.dim = 4, .metric = QV_METRIC_L2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    struct client cl[CLIENTS];
    pthread_t t[CLIENTS];
    load.acked = load.done = 0;
    for (int n = 0; n < CLIENTS; n++) {
        memset(&cl[n], 0, sizeof cl[n]);
        cl[n].n = n;
        size_t len = (size_t)snprintf(cl[n].uri, sizeof cl[n].uri, "qv://");
        for (int j = 0; j < 3; j++)   /* its own node first */
            len += (size_t)snprintf(cl[n].uri + len, sizeof cl[n].uri - len,
                                    "%s127.0.0.1:%d", j ? "," : "",
                                    c->port[(n + j) % 3]);
        assert_int_equal(pthread_create(&t[n], NULL, client_main, &cl[n]), 0);
    }
    await_acked(60);
    kill_node(c, 2);
    await_acked(120);
    start_node(c, 2);
    await_acked(180);
    kill(c->node_pid[1], SIGSTOP);
    await_acked(220);
    kill(c->node_pid[1], SIGCONT);
    for (int n = 0; n < CLIENTS; n++) {
        pthread_join(t[n], NULL);
        if (cl[n].why[0])
            fail_msg("client %d: %s", n, cl[n].why);
        assert_int_equal(cl[n].rounds, ROUNDS);
    }
    print_message("# %d writes acknowledged by 3 nodes\n", load.acked);
    uint64_t last = last_seq(c, 0), n0 = 0;
    for (int i = 0; i < 3; i++) {
        assert_ok(c->h[i], qv_read_after(c->h[i], last));
        for (int n = 0; n < CLIENTS; n++)
            expect_client_writes(c, i, &cl[n]);
        uint64_t ni = 0;
        assert_ok(c->h[i], qv_count(c->h[i], "docs", NULL, &ni));
        if (i == 0)
            n0 = ni;
        assert_int_equal(ni, n0);
        char *report = NULL;
        assert_ok(c->h[i], qv_check(c->h[i], &report));
        qv_free(report);
    }
}


/* ---- sharded collections ---- */

enum { SH_DIM = 8, SH_SHARDS = 4, SH_REPLICAS = 2, SH_DOCS = 300 };

static void sharded_vector(int i, float *v)
{
    uint32_t x = 2654435761u * (uint32_t)(i + 1);
    for (int d = 0; d < SH_DIM; d++) {
        x = x * 1664525u + 1013904223u;
        v[d] = (float)(x >> 8) / (float)(1u << 24) - 0.5f;
    }
}

static void sharded_id(int i, char *id, size_t len)
{
    snprintf(id, len, "s%04d", i);
}

/* Upsert documents [from, to) through db, in batches of 50. */
static void sharded_upsert(qv_db *db, int from, int to)
{
    for (int at = from; at < to; at += 50) {
        qv_doc docs[50];
        char ids[50][16], payloads[50][24];
        float v[50][SH_DIM];
        int n = to - at < 50 ? to - at : 50;
        for (int j = 0; j < n; j++) {
            sharded_id(at + j, ids[j], sizeof ids[j]);
            snprintf(payloads[j], sizeof payloads[j], "{\"n\":%d}", at + j);
            sharded_vector(at + j, v[j]);
            docs[j] = (qv_doc){ids[j], v[j], SH_DIM, payloads[j]};
        }
        assert_ok(db, qv_upsert(db, "big", docs, (size_t)n));
    }
}

/* The local collection of shard s of collection name, as the nodes name
 * it: with the serial of its placement, from db's cluster status. */
static void shard_name(qv_db *db, const char *name, uint32_t s, char *out,
                       size_t len)
{
    char *text = NULL;
    assert_ok(db, qv_cluster_status(db, &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    json_t *sharded = json_object_get(st, "sharded");
    const char *serial = NULL;
    for (size_t i = 0; i < json_array_size(sharded); i++) {
        json_t *m = json_array_get(sharded, i);
        if (strcmp(json_string_value(json_object_get(m, "name")), name) == 0)
            serial = json_string_value(json_object_get(m, "serial"));
    }
    assert_non_null(serial);
    assert_int_equal(strlen(serial), 16);
    snprintf(out, len, "_shard.%016llx.%s.%u",
             (unsigned long long)XXH64(name, strlen(name), 0), serial, s);
    json_decref(st);
}

/* Every handle reads after the newest write token of any of them. */
static void sync_tokens(struct cluster *c, int nodes)
{
    uint64_t max = 0, t;
    for (int i = 0; i < nodes; i++)
        if (c->h[i] && qv_write_token(c->h[i], &t) == QV_OK && t > max)
            max = t;
    for (int i = 0; i < nodes; i++)
        if (c->h[i])
            assert_ok(c->h[i], qv_read_after(c->h[i], max));
}

/* The k nearest live documents by brute force (l2, ties by id). */
struct scored {
    float d;
    int i;
};

static int by_d(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    return x->d != y->d ? (x->d < y->d ? -1 : 1) : x->i - y->i;
}

/* The live documents of [0, n) into all, nearest first to query q;
 * how many. */
static int brute_force(const int *live, int n, int q, struct scored *all)
{
    float query[SH_DIM], v[SH_DIM];
    int m = 0;
    sharded_vector(1000 + q, query);
    for (int i = 0; i < n; i++) {
        if (!live[i])
            continue;
        sharded_vector(i, v);
        float d = 0;
        for (int k = 0; k < SH_DIM; k++)
            d += (v[k] - query[k]) * (v[k] - query[k]);
        all[m++] = (struct scored){d, i};
    }
    qsort(all, (size_t)m, sizeof *all, by_d);
    return m;
}

/* hits are the first 10 of all (m of them), in order. */
static void expect_nearest(const qv_hits *hits, const struct scored *all,
                           int m)
{
    assert_int_equal(hits->count, m < 10 ? m : 10);
    for (size_t j = 0; j < hits->count; j++) {
        char id[16];
        sharded_id(all[j].i, id, sizeof id);
        assert_string_equal(hits->hits[j].id, id);
        assert_float_equal(hits->hits[j].distance, all[j].d, 1e-4);
    }
}

static void expect_exact(qv_db *db, const int *live, int n, int q)
{
    float query[SH_DIM];
    struct scored *all = calloc((size_t)n, sizeof *all);
    assert_non_null(all);
    int m = brute_force(live, n, q, all);
    sharded_vector(1000 + q, query);
    qv_search_options opt = {.k = 10, .exact = 1};
    qv_hits *hits = NULL;
    assert_ok(db, qv_search(db, "big", query, SH_DIM, &opt, &hits));
    expect_nearest(hits, all, m);
    qv_free(hits);
    /* the graph walk of every shard finds them too on so few documents */
    opt.exact = 0;
    opt.ef = 64;
    assert_ok(db, qv_search(db, "big", query, SH_DIM, &opt, &hits));
    int found = 0;
    for (size_t j = 0; j < hits->count; j++) {
        char id[16];
        for (size_t t = 0; t < 10 && t < (size_t)m; t++) {
            sharded_id(all[t].i, id, sizeof id);
            found += strcmp(hits->hits[j].id, id) == 0;
        }
    }
    assert_true(found >= 9);
    qv_free(hits);
    free(all);
}

/* Every shard of collection name is on exactly replicas of the nodes
 * (but lost, which is not asked), with the same documents on each, all
 * shards together holding want. */
static void expect_replicas_agree(struct cluster *c, int nodes, int lost,
                                  const char *name, uint32_t shards,
                                  int replicas, uint64_t want)
{
    uint64_t total = 0;
    int ask = lost == 0 ? 1 : 0;
    for (uint32_t s = 0; s < shards; s++) {
        char local[80];
        int holders = 0;
        uint64_t first = 0;
        shard_name(c->h[ask], name, s, local, sizeof local);
        for (int i = 0; i < nodes; i++) {
            uint64_t n = 0;
            if (i == lost || !c->h[i])
                continue;
            qv_status st = qv_count(c->h[i], local, NULL, &n);
            if (st == QV_ERR_NOT_FOUND)
                continue;
            assert_ok(c->h[i], st);
            if (holders++ == 0)
                first = n;
            if (n != first)
                print_message("# shard %u: node n%d holds %llu documents, "
                              "another %llu\n", s, i + 1,
                              (unsigned long long)n,
                              (unsigned long long)first);
            assert_int_equal(n, first);
        }
        assert_int_equal(holders, replicas);
        total += first;
    }
    assert_int_equal(total, want);
}

static void expect_placed(struct cluster *c, int nodes, uint64_t want)
{
    expect_replicas_agree(c, nodes, -1, "big", SH_SHARDS, SH_REPLICAS, want);
}

/* cluster status gives the placement: every shard on distinct nodes. */
static void expect_placement(qv_db *db)
{
    char *text = NULL;
    assert_ok(db, qv_cluster_status(db, &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    json_t *sharded = json_object_get(st, "sharded");
    assert_int_equal(json_array_size(sharded), 1);
    json_t *big = json_array_get(sharded, 0);
    assert_string_equal(json_string_value(json_object_get(big, "name")),
                        "big");
    assert_int_equal(json_integer_value(json_object_get(big, "shards")),
                     SH_SHARDS);
    json_t *placement = json_object_get(big, "placement");
    assert_int_equal(json_array_size(placement), SH_SHARDS);
    int share[3] = {0, 0, 0};
    for (size_t s = 0; s < SH_SHARDS; s++) {
        json_t *hosts = json_array_get(placement, s);
        assert_int_equal(json_array_size(hosts), SH_REPLICAS);
        assert_string_not_equal(json_string_value(json_array_get(hosts, 0)),
                                json_string_value(json_array_get(hosts, 1)));
        for (size_t r = 0; r < SH_REPLICAS; r++) {
            const char *node = json_string_value(json_array_get(hosts, r));
            assert_true(node[0] == 'n' && node[1] >= '1' && node[1] <= '3');
            share[node[1] - '1']++;
        }
    }
    /* 8 replicas on 3 nodes: 3, 3 and 2 */
    for (int i = 0; i < 3; i++)
        assert_true(share[i] == 2 || share[i] == 3);
    json_decref(st);
}

static uint64_t big_count(qv_db *db)
{
    uint64_t n = 0;
    assert_ok(db, qv_count(db, "big", NULL, &n));
    return n;
}

/* Every live id, in id order, through pages of a scan across shards. */
static void expect_scan(qv_db *db, const int *live, const char *filter)
{
    char after[16] = "";
    int want = 0, pages = 0;
    for (;;) {
        qv_page *page = NULL;
        assert_ok(db, qv_scan_where(db, "big", filter, after[0] ? after
                                                               : NULL,
                                    37, &page));
        pages++;
        for (size_t j = 0; j < page->count; j++) {
            char id[16];
            while (want < SH_DOCS && !live[want])
                want++;
            assert_true(want < SH_DOCS);
            sharded_id(want++, id, sizeof id);
            assert_string_equal(page->records[j].id, id);
            assert_int_equal(page->records[j].dim, SH_DIM);
        }
        int last = page->next == NULL;
        if (!last)
            snprintf(after, sizeof after, "%s", page->next);
        qv_free(page);
        if (last)
            break;
    }
    while (want < SH_DOCS && !live[want])
        want++;
    assert_int_equal(want, SH_DOCS);
    assert_true(pages > 1);
}

/* The requests that each shard answers for its part: payload indexes,
 * filtered counts, scans, delete where, batches, explain, train. */
static void expect_across_shards(struct cluster *c, int *live)
{
    qv_db *db = c->h[0];
    assert_ok(db, qv_create_index(db, "big", "n", QV_INDEX_INT));
    qv_index_info *indexes = NULL;
    size_t n = 0;
    sync_tokens(c, 3);
    assert_ok(c->h[1], qv_list_indexes(c->h[1], "big", &indexes, &n));
    assert_int_equal(n, 1);
    assert_string_equal(indexes[0].field, "n");
    qv_free(indexes);
    uint64_t below = 0, want = 0;
    for (int i = 0; i < 100; i++)
        want += live[i];
    assert_ok(c->h[2], qv_count(c->h[2], "big", "{\"n\":{\"$lt\":100}}",
                                &below));
    assert_int_equal(below, want);
    expect_scan(c->h[1], live, NULL);
    uint64_t deleted = 0;
    assert_ok(db, qv_delete_where(db, "big", "{\"n\":{\"$gte\":290}}",
                                  &deleted));
    assert_int_equal(deleted, 10);
    for (int i = 290; i < SH_DOCS; i++)
        live[i] = 0;
    sync_tokens(c, 3);
    expect_scan(c->h[2], live, "{\"n\":{\"$gte\":0}}");
    float queries[3 * SH_DIM];
    for (int q = 0; q < 3; q++)
        sharded_vector(1000 + q, queries + q * SH_DIM);
    qv_search_options opt = {.k = 10, .exact = 1};
    qv_batch_hits *batch = NULL;
    assert_ok(c->h[2], qv_search_batch(c->h[2], "big", queries, 3, SH_DIM,
                                       &opt, &batch));
    assert_int_equal(batch->count, 3);
    for (int q = 0; q < 3; q++) {
        qv_hits *one = NULL;
        assert_ok(c->h[1], qv_search(c->h[1], "big", queries + q * SH_DIM,
                                     SH_DIM, &opt, &one));
        assert_int_equal(batch->results[q].count, one->count);
        for (size_t j = 0; j < one->count; j++)
            assert_string_equal(batch->results[q].hits[j].id,
                                one->hits[j].id);
        qv_free(one);
    }
    qv_free(batch);
    qv_hits *hits = NULL;
    opt.explain = 1;
    assert_ok(db, qv_search(db, "big", queries, SH_DIM, &opt, &hits));
    json_t *ex = json_loads(hits->explain, 0, NULL);
    qv_free(hits);
    assert_int_equal(json_array_size(json_object_get(ex, "shards")),
                     SH_SHARDS);
    assert_non_null(json_object_get(json_array_get(json_object_get(ex,
                                                                   "shards"),
                                                   3), "plan"));
    json_decref(ex);
    /* no codec to train: each shard refuses alike */
    assert_status(db, qv_train(db, "big"), QV_ERR_INVALID);
    assert_ok(db, qv_drop_index(db, "big", "n"));
    sync_tokens(c, 3);
    assert_ok(c->h[2], qv_list_indexes(c->h[2], "big", &indexes, &n));
    assert_int_equal(n, 0);
    qv_free(indexes);
}

/*
 * A collection of 4 shards with 2 replicas on 3 nodes: writes through any
 * node land on the shards' replicas only, reads through any node see all
 * shards, exact search equals brute force over every document, and with
 * a node killed every shard is still served by its other replica.
 */
static void test_sharded_collection(void **state)
{
    struct cluster *c = cluster_start_n(state, 3);
    qv_collection_config cfg = {.dim = SH_DIM, .shards = SH_SHARDS,
                                .replicas = SH_REPLICAS};
    /* refusals first: nothing of them is left behind */
    cfg.replicas = 4;
    assert_status(c->h[0], qv_create_collection(c->h[0], "big", &cfg),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(c->h[0]), "replicas=4 needs 4 live "
                                               "nodes; the cluster has 3"));
    cfg.replicas = SH_REPLICAS;
    cfg.codec = "pq:3";
    assert_status(c->h[0], qv_create_collection(c->h[0], "big", &cfg),
                  QV_ERR_INVALID);
    cfg.codec = NULL;
    qv_collection_config plain = {.dim = 4};
    assert_status(c->h[0], qv_create_collection(c->h[0], "_shard.x", &plain),
                  QV_ERR_INVALID);
    assert_ok(c->h[1], qv_create_collection(c->h[1], "big", &cfg));
    assert_status(c->h[2], qv_create_collection(c->h[2], "big", &cfg),
                  QV_ERR_EXISTS);
    assert_status(c->h[0], qv_create_collection(c->h[0], "big", &plain),
                  QV_ERR_EXISTS);
    sync_tokens(c, 3);
    qv_collection_info info;
    for (int i = 0; i < 3; i++) {
        assert_ok(c->h[i], qv_describe_collection(c->h[i], "big", &info));
        assert_int_equal(info.shards, SH_SHARDS);
        assert_int_equal(info.replicas, SH_REPLICAS);
        assert_int_equal(info.dim, SH_DIM);
        assert_int_equal(info.count, 0);
    }

    sharded_upsert(c->h[0], 0, 200);
    sharded_upsert(c->h[2], 200, SH_DOCS);
    int live[SH_DOCS];
    for (int i = 0; i < SH_DOCS; i++)
        live[i] = 1;
    for (int i = 0; i < 20; i++) {
        char id[16];
        sharded_id(i * 7, id, sizeof id);
        assert_ok(c->h[1], qv_delete(c->h[1], "big", id));
        live[i * 7] = 0;
    }
    assert_status(c->h[1], qv_delete(c->h[1], "big", "s0000"),
                  QV_ERR_NOT_FOUND);
    assert_string_equal(qv_errmsg(c->h[1]), "document 's0000' not found "
                                            "in collection 'big'");
    sync_tokens(c, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(big_count(c->h[i]), SH_DOCS - 20);
        for (int q = 0; q < 5; q++)
            expect_exact(c->h[i], live, SH_DOCS, q);
    }
    expect_placed(c, 3, SH_DOCS - 20);
    qv_record *rec = NULL;
    assert_ok(c->h[2], qv_get(c->h[2], "big", "s0123", &rec));
    assert_string_equal(rec->payload, "{\"n\":123}");
    qv_free(rec);
    assert_status(c->h[2], qv_get(c->h[2], "big", "s0007", &rec),
                  QV_ERR_NOT_FOUND);
    assert_string_equal(qv_errmsg(c->h[2]), "document 's0007' not found "
                                            "in collection 'big'");
    expect_across_shards(c, live);
    size_t n = 0;
    expect_placement(c->h[2]);
    qv_collection_info *list = NULL;
    assert_ok(c->h[0], qv_list_collections(c->h[0], &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "big");
    assert_int_equal(list[0].count, SH_DOCS - 30);
    qv_free(list);

    /* a node lost: its shards are served by their other replicas */
    kill_node(c, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(big_count(c->h[i]), SH_DOCS - 30);
        expect_exact(c->h[i], live, SH_DOCS, 7);
    }
    int more[SH_DOCS + 40];
    memcpy(more, live, sizeof live);
    for (int i = SH_DOCS; i < SH_DOCS + 40; i++)
        more[i] = 1;
    sharded_upsert(c->h[0], SH_DOCS, SH_DOCS + 40);
    sync_tokens(c, 2);
    assert_int_equal(big_count(c->h[1]), SH_DOCS + 10);
    expect_exact(c->h[1], more, SH_DOCS + 40, 8);

    /* back again, it catches up on its shards */
    start_node(c, 2);
    sync_tokens(c, 3);
    assert_int_equal(big_count(c->h[2]), SH_DOCS + 10);
    expect_placed(c, 3, SH_DOCS + 10);
    char *report = NULL;
    for (int i = 0; i < 3; i++) {
        assert_ok(c->h[i], qv_check(c->h[i], &report));
        qv_free(report);
    }

    /* dropped on every node, and made again with another shape */
    char dropped[80];
    shard_name(c->h[1], "big", 0, dropped, sizeof dropped);
    assert_ok(c->h[1], qv_drop_collection(c->h[1], "big"));
    sync_tokens(c, 3);
    for (int i = 0; i < 3; i++) {
        char local[80];
        snprintf(local, sizeof local, "%s", dropped);
        assert_status(c->h[i], qv_count(c->h[i], local, NULL, &n),
                      QV_ERR_NOT_FOUND);
        assert_status(c->h[i], qv_describe_collection(c->h[i], "big", &info),
                      QV_ERR_NOT_FOUND);
    }
    cfg.shards = 2;
    cfg.replicas = 3;
    assert_ok(c->h[2], qv_create_collection(c->h[2], "big", &cfg));
    sharded_upsert(c->h[2], 0, 10);
    sync_tokens(c, 3);
    assert_int_equal(big_count(c->h[0]), 10);
}

/*
 * Single writes into a sharded collection through one node while another
 * node is killed with -9 and started again: every acknowledged write is
 * read back through every node, and each shard's replicas end with the
 * same documents (writes of unknown outcome may be on both or neither).
 */
static void test_sharded_writes_survive_a_kill(void **state)
{
    struct cluster *c = cluster_start_n(state, 3);
    qv_collection_config cfg = {.dim = 4, .shards = 3, .replicas = 2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    struct writer w = {.db = c->h[0], .failed_at = -1, .go_on = 1};
    pthread_t t = writer_start(&w);
    await_more(&w, 30);
    kill_node(c, 1);
    await_more(&w, 30);   /* its shards' other replicas take the writes */
    start_node(c, 1);
    await_more(&w, 30);
    writer_stop(&w, t);
    for (int i = 0; i < 3; i++)
        expect_writer_acked(c, i, &w);
    /* the replicas of each shard agree, unknown outcomes included */
    qv_collection_info *all = NULL;
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        assert_ok(c->h[i], qv_list_collections(c->h[i], &all, &n));
        assert_int_equal(n, 1);   /* the shards are not listed */
        qv_free(all);
    }
    uint64_t total = 0;
    assert_ok(c->h[2], qv_count(c->h[2], "docs", NULL, &total));
    assert_true(total >= (uint64_t)w.acked);
    expect_replicas_agree(c, 3, -1, "docs", 3, 2, total);
    print_message("# %d sharded writes acknowledged, %d of unknown outcome "
                  "while a node was killed\n", w.acked, w.failures);
    writer_release(&w);
}

/* held[s]: whether node holds a replica of shard s of collection name,
 * as db's cluster status places it; how many shards it holds. */
static int shards_held(qv_db *db, const char *name, const char *node,
                       int *held)
{
    char *text = NULL;
    int n = 0;
    assert_ok(db, qv_cluster_status(db, &text));
    json_t *st = json_loads(text, 0, NULL), *placement = NULL;
    qv_free(text);
    json_t *sharded = json_object_get(st, "sharded");
    for (size_t i = 0; i < json_array_size(sharded); i++) {
        json_t *m = json_array_get(sharded, i);
        if (strcmp(json_string_value(json_object_get(m, "name")), name) == 0)
            placement = json_object_get(m, "placement");
    }
    assert_int_equal(json_array_size(placement), SH_SHARDS);
    for (size_t s = 0; s < SH_SHARDS; s++) {
        json_t *hosts = json_array_get(placement, s);
        held[s] = 0;
        for (size_t r = 0; r < json_array_size(hosts); r++)
            held[s] |= strcmp(json_string_value(json_array_get(hosts, r)),
                              node) == 0;
        n += held[s];
    }
    json_decref(st);
    return n;
}

static uint32_t shard_of(const char *id)
{
    return (uint32_t)(XXH64(id, strlen(id), 0) % SH_SHARDS);
}

/* hits name exactly the shards held lists as missing, and are those of
 * an exact search over the documents of the other shards (live). */
static void expect_partial_hits(const qv_hits *hits, const int *live,
                                const int *held, int q)
{
    size_t missing = 0;
    for (uint32_t s = 0; s < SH_SHARDS; s++) {
        if (!held[s])
            continue;
        assert_true(missing < hits->missing_count);
        assert_int_equal(hits->missing[missing++], s);
    }
    assert_int_equal(hits->missing_count, missing);
    for (size_t j = 0; j < hits->count; j++)
        assert_false(held[shard_of(hits->hits[j].id)]);
    struct scored all[SH_DOCS];
    expect_nearest(hits, all, brute_force(live, SH_DOCS, q, all));
}

/* The shell's search with partial=true through node i, in --json mode
 * or not: the output names the shards held as missing. */
static void expect_shell_names_missing(struct cluster *c, int i,
                                       const int *held, int json)
{
    float query[SH_DIM];
    char vec[256] = "", want[64] = "", cmd[1024], out[8192] = "";
    int at = 0, w = snprintf(want, sizeof want, json ? "\"missing_shards\":["
                                                    : "missing shards:");
    sharded_vector(1000, query);
    for (int d = 0; d < SH_DIM; d++)
        at += snprintf(vec + at, sizeof vec - (size_t)at, "%s%.9g",
                       d ? ", " : "", (double)query[d]);
    for (uint32_t s = 0, n = 0; s < SH_SHARDS; s++)
        if (held[s])
            w += snprintf(want + w, sizeof want - (size_t)w, json ? "%s%u"
                          : "%s %u", n++ ? "," : "", s);
    const char *build = getenv("QUIVER_BUILD");
    snprintf(cmd, sizeof cmd, "'%s/quiver' --connect 127.0.0.1:%d %s -c "
             "'search big [%s] exact=true partial=true' 2>&1",
             build ? build : "build/asan", c->port[i], json ? "--json" : "",
             vec);
    FILE *shell = popen(cmd, "r");
    assert_non_null(shell);
    size_t got = fread(out, 1, sizeof out - 1, shell);
    out[got] = '\0';
    assert_int_equal(pclose(shell), 0);
    if (!strstr(out, want))
        fail_msg("'%s' not in the shell's output: %s", want, out);
}

/*
 * A sharded collection of 4 shards with one replica each on 3 nodes,
 * and one node killed: a search fails CONNECTION naming the first shard
 * it held; with partial the answer comes from the other shards, naming
 * the killed node's shards as missing, and its hits are those of an
 * exact search over the other shards' documents (single, batch, shell);
 * a shard's refusal still fails it, and explain marks the missing shards.
 */
static void test_partial_search_without_a_node(void **state)
{
    struct cluster *c = cluster_start_n(state, 3);
    qv_collection_config cfg = {.dim = SH_DIM, .shards = SH_SHARDS,
                                .replicas = 1};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "big", &cfg));
    sharded_upsert(c->h[0], 0, SH_DOCS);
    sync_tokens(c, 3);
    int held[SH_SHARDS], live[SH_DOCS];
    /* 4 shards on 3 nodes: n3 holds one or two */
    assert_true(shards_held(c->h[0], "big", "n3", held) >= 1);
    for (int i = 0; i < SH_DOCS; i++) {
        char id[16];
        sharded_id(i, id, sizeof id);
        live[i] = !held[shard_of(id)];
    }
    kill_node(c, 2);
    float queries[3 * SH_DIM];
    for (int q = 0; q < 3; q++)
        sharded_vector(1000 + q, queries + q * SH_DIM);
    qv_search_options opt = {.k = 10, .exact = 1};
    qv_hits *hits = NULL;
    assert_status(c->h[0], qv_search(c->h[0], "big", queries, SH_DIM, &opt,
                                     &hits), QV_ERR_CONNECTION);
    assert_null(hits);
    uint32_t first = 0;
    while (!held[first])
        first++;
    char why[64];
    snprintf(why, sizeof why, "shard %u of 'big' has no replica that "
             "answered", first);
    assert_non_null(strstr(qv_errmsg(c->h[0]), why));
    opt.partial = 1;
    for (int q = 0; q < 3; q++) {
        qv_db *db = c->h[q % 2];
        assert_ok(db, qv_search(db, "big", queries + q * SH_DIM, SH_DIM,
                                &opt, &hits));
        expect_partial_hits(hits, live, held, q);
        qv_free(hits);
    }
    qv_batch_hits *batch = NULL;
    assert_ok(c->h[1], qv_search_batch(c->h[1], "big", queries, 3, SH_DIM,
                                       &opt, &batch));
    assert_int_equal(batch->count, 3);
    for (int q = 0; q < 3; q++)
        expect_partial_hits(&batch->results[q], live, held, q);
    qv_free(batch);
    /* a shard's refusal is no missing shard: it fails the search */
    assert_status(c->h[0], qv_search(c->h[0], "big", queries, SH_DIM - 1,
                                     &opt, &hits), QV_ERR_DIMENSION);
    /* explain: the answering shards' plans, the others marked missing */
    opt.explain = 1;
    assert_ok(c->h[0], qv_search(c->h[0], "big", queries, SH_DIM, &opt,
                                 &hits));
    json_t *ex = json_loads(hits->explain, 0, NULL);
    qv_free(hits);
    json_t *shards = json_object_get(ex, "shards");
    assert_int_equal(json_array_size(shards), SH_SHARDS);
    for (size_t s = 0; s < SH_SHARDS; s++) {
        json_t *one = json_array_get(shards, s);
        assert_int_equal(json_is_true(json_object_get(one, "missing")),
                         held[s]);
        assert_int_equal(json_object_get(one, "plan") != NULL, !held[s]);
    }
    json_decref(ex);
    expect_shell_names_missing(c, 0, held, 0);
    expect_shell_names_missing(c, 1, held, 1);
}

/* Whether the placements node i gives hold no replica on node dead and
 * no replica being copied, with a live coordinator. */
static int replaced(struct cluster *c, int i, const char *dead)
{
    char *text = NULL;
    assert_ok(c->h[i], qv_cluster_status(c->h[i], &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    const char *coord = json_string_value(json_object_get(st,
                                                          "coordinator"));
    int done = coord && coord[0] && strcmp(coord, dead) != 0;
    json_t *sharded = json_object_get(st, "sharded");
    for (size_t k = 0; done && k < json_array_size(sharded); k++) {
        json_t *m = json_array_get(sharded, k);
        done = json_array_size(json_object_get(m, "copying")) == 0;
        json_t *placement = json_object_get(m, "placement");
        for (size_t s = 0; done && s < json_array_size(placement); s++) {
            json_t *hosts = json_array_get(placement, s);
            for (size_t r = 0; r < json_array_size(hosts); r++)
                done &= strcmp(json_string_value(json_array_get(hosts, r)),
                               dead) != 0;
        }
    }
    json_decref(st);
    return done;
}

/* The coordinator's node index, from node i's status. */
static int coordinator_of(struct cluster *c, int i)
{
    char *text = NULL;
    int at = -1;
    for (int tries = 0; at < 0 && tries < 100; tries++) {
        assert_ok(c->h[i], qv_cluster_status(c->h[i], &text));
        json_t *st = json_loads(text, 0, NULL);
        qv_free(text);
        const char *coord = json_string_value(json_object_get(st,
                                                              "coordinator"));
        if (coord && coord[0] == 'n')
            at = coord[1] - '1';
        json_decref(st);
        if (at < 0) {   /* the first round has not come yet */
            struct timespec pause = {0, 100 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    assert_true(at >= 0 && at < MAX_NODES);
    return at;
}

/*
 * The coordinator's node is killed while single writes go on into a
 * sharded collection (4 shards x 2 replicas on 4 nodes): another node
 * takes over as coordinator, and once the lost node's record lapses its
 * replicas are placed on the other nodes and copied from the surviving
 * replicas. Afterwards no replica is on the lost node, every
 * acknowledged write is read through every live node, each shard's
 * replicas hold the same documents, check is clean.
 */
static void test_lost_node_is_replaced(void **state)
{
    struct cluster *c = cluster_start_n(state, 4);
    qv_collection_config cfg = {.dim = 4, .shards = 4, .replicas = 2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    int lost = coordinator_of(c, 0);
    int via = (lost + 1) % 4;
    char dead[8];
    snprintf(dead, sizeof dead, "n%c", (char)('1' + lost));
    struct writer w = {.db = c->h[via], .failed_at = -1, .go_on = 1,
                       .pace_ms = 10};
    pthread_t t = writer_start(&w);
    await_more(&w, 50);
    kill_node(c, lost);
    /* the grace period (15 s) passes, then the copies are made */
    int tries = 0;
    while (!replaced(c, via, dead) && tries++ < 600) {
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
    }
    assert_true(replaced(c, via, dead));
    await_more(&w, 20);
    writer_stop(&w, t);
    uint64_t total = 0;
    for (int i = 0; i < 4; i++) {
        if (i == lost)
            continue;
        expect_writer_acked(c, i, &w);
        assert_ok(c->h[i], qv_count(c->h[i], "docs", NULL, &total));
    }
    assert_true(total >= (uint64_t)w.acked);
    expect_replicas_agree(c, 4, lost, "docs", 4, 2, total);
    print_message("# %d writes acknowledged, %d of unknown outcome; %s's "
                  "replicas placed again\n", w.acked, w.failures, dead);
    writer_release(&w);
}

/* From node i's status: each node's share of collection name's replicas
 * (share[k] for node n<k+1>); 1 when no move, copy or drain is under
 * way. */
static int shares_settled(struct cluster *c, int i, const char *name,
                          int share[MAX_NODES])
{
    char *text = NULL;
    assert_ok(c->h[i], qv_cluster_status(c->h[i], &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    assert_non_null(st);
    memset(share, 0, MAX_NODES * sizeof *share);
    json_t *sharded = json_object_get(st, "sharded");
    int settled = 1;
    for (size_t k = 0; k < json_array_size(sharded); k++) {
        json_t *m = json_array_get(sharded, k);
        settled &= json_array_size(json_object_get(m, "copying")) == 0 &&
                   json_array_size(json_object_get(m, "moving")) == 0;
        if (strcmp(json_string_value(json_object_get(m, "name")), name))
            continue;
        json_t *placement = json_object_get(m, "placement");
        for (size_t s = 0; s < json_array_size(placement); s++) {
            json_t *hosts = json_array_get(placement, s);
            for (size_t r = 0; r < json_array_size(hosts); r++) {
                const char *host = json_string_value(json_array_get(hosts,
                                                                    r));
                int at = host[1] - '1';
                assert_true(at >= 0 && at < MAX_NODES);
                share[at]++;
            }
        }
    }
    json_decref(st);
    return settled;
}

/* Wait until node i sees "docs" settled with node n<k+1>'s share
 * want[k] (-1: any; -2: any, and within one of the others' given -2). */
static void await_shares(struct cluster *c, int i, const int *want)
{
    int share[MAX_NODES], ok = 0;
    for (int tries = 0; !ok && tries < 600; tries++) {
        int most = 0, least = INT32_MAX;
        ok = shares_settled(c, i, "docs", share);
        for (int k = 0; k < MAX_NODES; k++) {
            ok &= want[k] < 0 || share[k] == want[k];
            if (want[k] == -2) {
                most = share[k] > most ? share[k] : most;
                least = share[k] < least ? share[k] : least;
            }
        }
        ok &= least == INT32_MAX || most - least <= 1;
        if (!ok) {   /* a coordinator's round is 2 s */
            struct timespec pause = {0, 200 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    for (int k = 0; k < MAX_NODES; k++)
        print_message("# n%d holds %d replicas\n", k + 1, share[k]);
    assert_true(ok);
}

/* Searches through one node until told to stop. */
struct searcher {
    qv_db *db;
    int with_table;   /* and a lookup of table "emb" (4 floats a row) */
    atomic_int stop;
    int done, failed;
    char why[256];
};

static void *searcher_main(void *arg);

/* Start searching through node i. */
static void searcher_start(struct cluster *c, struct searcher *s, int i)
{
    s->db = c->h[i];
    assert_int_equal(pthread_create(&c->searcher_thread, NULL, searcher_main,
                                    s), 0);
    c->searcher = s;
}

static void searcher_stop(struct cluster *c)
{
    if (!c->searcher)
        return;
    atomic_store(&c->searcher->stop, 1);
    pthread_join(c->searcher_thread, NULL);
    c->searcher = NULL;
}

static void *searcher_main(void *arg)
{
    struct searcher *s = arg;
    float query[4] = {1, 1, 2, 3}, rows[8 * 4];
    uint64_t ids[8] = {0, 7, 99, 123, 256, 311, 402, 499};
    qv_search_options opt = {.k = 5};
    for (int i = 0; !atomic_load(&s->stop); i++) {
        qv_hits *hits = NULL;
        query[0] = (float)(i % 100);
        qv_status st = qv_search(s->db, "docs", query, 4, &opt, &hits);
        qv_free(hits);
        if (st == QV_OK && s->with_table)
            st = qv_table_lookup(s->db, "emb", ids, 8, 4, rows);
        if (st == QV_OK)
            s->done++;
        else if (s->failed++ == 0)
            snprintf(s->why, sizeof s->why, "%s", qv_errmsg(s->db));
    }
    return NULL;
}

/* The shell's describe of "docs" through node i gives its placement:
 * shards lists of replicas, each on a live node with its lag. */
static void expect_shell_placement(struct cluster *c, int i, size_t shards,
                                   size_t replicas)
{
    char cmd[1024], out[16384] = "";
    const char *build = getenv("QUIVER_BUILD");
    snprintf(cmd, sizeof cmd, "'%s/quiver' --connect 127.0.0.1:%d --json -c "
             "'describe docs' 2>&1", build ? build : "build/asan",
             c->port[i]);
    FILE *shell = popen(cmd, "r");
    assert_non_null(shell);
    size_t got = fread(out, 1, sizeof out - 1, shell);
    out[got] = '\0';
    assert_int_equal(pclose(shell), 0);
    json_t *o = json_loads(out, 0, NULL);
    if (!o)
        fail_msg("describe said: %s", out);
    json_t *placement = json_object_get(o, "placement");
    assert_int_equal(json_array_size(placement), shards);
    for (size_t s = 0; s < shards; s++) {
        json_t *shard = json_array_get(placement, s);
        assert_int_equal(json_array_size(shard), replicas);
        for (size_t r = 0; r < replicas; r++) {
            json_t *one = json_array_get(shard, r);
            assert_non_null(json_string_value(json_object_get(one, "node")));
            assert_true(json_is_integer(json_object_get(one, "lag_entries")));
        }
    }
    json_decref(o);
}

struct drain_call {
    qv_db *db;
    const char *node;
    qv_status st;
};

static void *drain_main(void *arg)
{
    struct drain_call *d = arg;
    d->st = qv_cluster_drain(d->db, d->node, 0);
    return NULL;
}

/*
 * A sharded collection (8 shards x 2 replicas) on three nodes while
 * single writes and searches go on: two drains race that together would
 * leave shards with one replica (one wins, the other is refused); a
 * fourth node joins and receives replicas until every node holds 4; a
 * node is drained (its replicas move away, each new replica taking over
 * once caught up) and stopped. No search fails meanwhile, no
 * acknowledged write is lost, and each shard ends on exactly two nodes
 * with the same documents.
 */
static void test_nodes_join_and_drain(void **state)
{
    struct cluster *c = cluster_start_n(state, 3);
    qv_collection_config cfg = {.dim = 4, .shards = 8, .replicas = 2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    assert_status(c->h[0], qv_cluster_drain(c->h[0], "n9", 0),
                  QV_ERR_NOT_FOUND);
    assert_status(c->h[0], qv_cluster_drain(c->h[0], "", 0), QV_ERR_INVALID);

    struct drain_call race[2] = {{c->h[0], "n1", QV_OK},
                                 {c->h[1], "n2", QV_OK}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, drain_main, &race[i]),
                         0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    int won = race[0].st == QV_OK ? 0 : 1;
    assert_int_equal(race[won].st, QV_OK);
    assert_int_equal(race[1 - won].st, QV_ERR_INVALID);
    assert_ok(c->h[0], qv_cluster_drain(c->h[0], race[won].node, 1));
    int any[MAX_NODES] = {-1, -1, -1, -1, -1};
    await_shares(c, 0, any);   /* a move the drain began has ended */

    struct writer w = {.db = c->h[2], .failed_at = -1, .go_on = 1,
                       .pace_ms = 10};
    struct searcher look = {0};
    pthread_t wt = writer_start(&w);
    searcher_start(c, &look, 0);
    await_more(&w, 30);

    c->node_dir[3] = tu_mkdtemp();
    start_node(c, 3);   /* n4 joins: 16 replicas over 4 nodes */
    int joined[MAX_NODES] = {4, 4, 4, 4, 0};
    await_shares(c, 0, joined);
    await_more(&w, 20);

    assert_ok(c->h[0], qv_cluster_drain(c->h[0], "n2", 0));
    int drained[MAX_NODES] = {-1, 0, -1, -1, 0};
    await_shares(c, 0, drained);
    stop_node(c, 1);
    await_more(&w, 20);

    searcher_stop(c);
    writer_stop(&w, wt);
    print_message("# %d searches during the moves, %d failed%s%s\n",
                  look.done, look.failed, look.failed ? ": " : "", look.why);
    assert_int_equal(look.failed, 0);
    assert_true(look.done > 0);
    uint64_t total = 0;
    for (int i = 0; i < 4; i++) {
        if (i == 1)
            continue;
        expect_writer_acked(c, i, &w);
        assert_ok(c->h[i], qv_count(c->h[i], "docs", NULL, &total));
    }
    assert_true(total >= (uint64_t)w.acked);
    expect_replicas_agree(c, 4, 1, "docs", 8, 2, total);
    expect_shell_placement(c, 0, 8, 2);
    print_message("# %d writes acknowledged, %d of unknown outcome\n",
                  w.acked, w.failures);
    writer_release(&w);
}

/* ---- sharded embedding tables ---- */

enum { ST_ROWS = 400, ST_DIM = 4, ST_SHARDS = 4, ST_REPLICAS = 2,
       ST_IDS = 300, ST_STEPS = 6 };

/* The shard of a table row, as the nodes place it: XXH64 of the id's 8
 * bytes, little-endian, mod shards. */
static uint32_t row_shard(uint64_t id)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(id >> (8 * i));
    return (uint32_t)(XXH64(le, sizeof le, 0) % ST_SHARDS);
}

/* ST_IDS ids below ST_ROWS in a random order, some repeated. */
static void table_ids(uint64_t *rng, uint64_t *ids)
{
    for (int i = 0; i < ST_IDS; i++)
        ids[i] = i % 5 == 4 ? ids[tu_rand(rng) % (uint64_t)i]
                            : tu_rand(rng) % ST_ROWS;
}

/* The rows of ids in a sharded hash table, as its shards' references
 * give them: ref tables "NAME.s" (one per shard, the same config). */
static void shard_refs_lookup(qv_db *ref, const char *name,
                              const uint64_t *ids, float *out)
{
    for (int i = 0; i < ST_IDS; i++) {
        char shard_ref[32];
        snprintf(shard_ref, sizeof shard_ref, "%s.%u", name,
                 row_shard(ids[i]));
        assert_ok(ref, qv_table_lookup(ref, shard_ref, &ids[i], 1, ST_DIM,
                                       out + (size_t)i * ST_DIM));
    }
}

/* The update of ids made on the shards' references: each shard's ids
 * and gradients, in the order given, when it has any (as the node
 * splits it). 1 for each shard the update touched. */
static void shard_refs_update(qv_db *ref, const char *name,
                              const uint64_t *ids, const float *grads,
                              int *touched)
{
    uint64_t part[ST_IDS];
    float pgrads[ST_IDS * ST_DIM];
    for (uint32_t s = 0; s < ST_SHARDS; s++) {
        size_t n = 0;
        for (int i = 0; i < ST_IDS; i++) {
            if (row_shard(ids[i]) != s)
                continue;
            memcpy(pgrads + n * ST_DIM, grads + (size_t)i * ST_DIM,
                   ST_DIM * sizeof *grads);
            part[n++] = ids[i];
        }
        touched[s] = n > 0;
        char shard_ref[32];
        snprintf(shard_ref, sizeof shard_ref, "%s.%u", name, s);
        if (n)
            assert_ok(ref, qv_table_update(ref, shard_ref, part, n, ST_DIM,
                                           pgrads));
    }
}

/* Lookups of ids through every node equal want. */
static void expect_rows(struct cluster *c, const char *name,
                        const uint64_t *ids, const float *want)
{
    float rows[ST_IDS * ST_DIM];
    for (int i = 0; i < 3; i++) {
        assert_ok(c->h[i], qv_table_lookup(c->h[i], name, ids, ST_IDS,
                                           ST_DIM, rows));
        assert_memory_equal(rows, want, sizeof rows);
    }
}

/* The refusals of sharded tables; nothing of them is left behind. */
static void expect_table_refusals(struct cluster *c)
{
    qv_table_config cfg = {.rows = ST_ROWS, .dim = ST_DIM, .seed = 11,
                           .shards = ST_SHARDS, .replicas = ST_REPLICAS};
    assert_status(c->ref, qv_table_create(c->ref, "emb", &cfg),
                  QV_ERR_UNSUPPORTED);
    assert_non_null(strstr(qv_errmsg(c->ref), "need a cluster node"));
    cfg.shards = QV_SHARDS_MAX + 1;
    assert_status(c->h[0], qv_table_create(c->h[0], "emb", &cfg),
                  QV_ERR_INVALID);
    cfg.shards = 0;
    assert_status(c->h[0], qv_table_create(c->h[0], "emb", &cfg),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(c->h[0]), "replicas need shards"));
    cfg.shards = ST_SHARDS;
    cfg.replicas = 4;
    assert_status(c->h[0], qv_table_create(c->h[0], "emb", &cfg),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(c->h[0]), "replicas=4 needs 4 live "
                                               "nodes; the cluster has 3"));
    cfg.replicas = ST_REPLICAS;
    cfg.method = "hash:0";
    assert_status(c->h[0], qv_table_create(c->h[0], "emb", &cfg),
                  QV_ERR_INVALID);
    cfg.method = NULL;
    assert_status(c->h[0], qv_table_create(c->h[0], "_shard.x", &cfg),
                  QV_ERR_INVALID);
    qv_table_info info;
    assert_status(c->h[0], qv_table_describe(c->h[0], "emb", &info),
                  QV_ERR_NOT_FOUND);
}

/* Describe through every node: the shape, and the sums over shards. */
static void expect_table_info(struct cluster *c, const char *name,
                              const qv_table_info *one, uint64_t updates)
{
    qv_table_info info;
    for (int i = 0; i < 3; i++) {
        assert_ok(c->h[i], qv_table_describe(c->h[i], name, &info));
        assert_string_equal(info.name, name);
        assert_string_equal(info.method, one->method);
        assert_int_equal(info.rows, ST_ROWS);
        assert_int_equal(info.dim, ST_DIM);
        assert_int_equal(info.shards, ST_SHARDS);
        assert_int_equal(info.replicas, ST_REPLICAS);
        assert_int_equal(info.param_bytes, ST_SHARDS * one->param_bytes);
        assert_int_equal(info.optimizer_bytes,
                         ST_SHARDS * one->optimizer_bytes);
        assert_int_equal(info.updates, updates);
    }
}

/* The tables h lists: each sharded one once, no shard's own table. */
static void expect_table_list(qv_db *h, const char *const *want, size_t n)
{
    qv_table_info *list = NULL;
    size_t count = 0;
    assert_ok(h, qv_list_tables(h, &list, &count));
    assert_int_equal(count, n);
    for (size_t k = 0; k < n; k++) {
        size_t found = 0;
        for (size_t i = 0; i < count; i++)
            found += strcmp(list[i].name, want[k]) == 0;
        assert_int_equal(found, 1);
    }
    qv_free(list);
}

/*
 * A table of 4 shards x 2 replicas on three nodes. full: every shard is
 * a table of the whole config, so lookups and updates through any node
 * equal one embedded table's. hash: ids of different shards no longer
 * share rows, so each shard equals an embedded table of the same config
 * that saw only that shard's ids (its own steps too).
 */
static void test_sharded_table(void **state)
{
    struct cluster *c = cluster_start_n(state, 3);
    c->scratch[0] = tu_mkdtemp();
    assert_ok(NULL, qv_open(c->scratch[0], NULL, &c->ref));
    expect_table_refusals(c);
    qv_table_config cfg = {.rows = ST_ROWS, .dim = ST_DIM, .seed = 11,
                           .shards = ST_SHARDS, .replicas = ST_REPLICAS};
    qv_table_config hcfg = cfg;
    hcfg.method = "hash:8";
    assert_ok(c->h[1], qv_table_create(c->h[1], "emb", &cfg));
    assert_ok(c->h[2], qv_table_create(c->h[2], "hemb", &hcfg));
    assert_status(c->h[2], qv_table_create(c->h[2], "emb", &cfg),
                  QV_ERR_EXISTS);
    qv_table_config plain = {.rows = ST_ROWS, .dim = ST_DIM, .seed = 11};
    assert_status(c->h[0], qv_table_create(c->h[0], "emb", &plain),
                  QV_ERR_EXISTS);
    /* the references: one table, and a hash table per shard */
    qv_table_config hplain = plain;
    hplain.method = "hash:8";
    assert_ok(c->ref, qv_table_create(c->ref, "emb", &plain));
    for (int s = 0; s < ST_SHARDS; s++) {
        char name[24];
        snprintf(name, sizeof name, "hemb.%d", s);
        assert_ok(c->ref, qv_table_create(c->ref, name, &hplain));
    }
    sync_tokens(c, 3);
    qv_table_info one, hone;
    assert_ok(c->ref, qv_table_describe(c->ref, "emb", &one));
    assert_ok(c->ref, qv_table_describe(c->ref, "hemb.0", &hone));
    expect_table_info(c, "emb", &one, 0);
    expect_table_info(c, "hemb", &hone, 0);
    /* cluster status gives the tables' placements apart */
    char *text = NULL;
    assert_ok(c->h[0], qv_cluster_status(c->h[0], &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    json_t *tables = json_object_get(st, "sharded_tables");
    assert_int_equal(json_array_size(tables), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *placement = json_object_get(json_array_get(tables, i),
                                            "placement");
        assert_int_equal(json_array_size(placement), ST_SHARDS);
        for (size_t k = 0; k < ST_SHARDS; k++)
            assert_int_equal(json_array_size(json_array_get(placement, k)),
                             ST_REPLICAS);
    }
    assert_int_equal(json_array_size(json_object_get(st, "sharded")), 0);
    json_decref(st);
    static const char *const both[] = {"emb", "hemb"};
    expect_table_list(c->h[0], both, 2);

    uint64_t rng = 5, ids[ST_IDS];
    float want[ST_IDS * ST_DIM], grads[ST_IDS * ST_DIM];
    uint64_t updates = 0;
    table_ids(&rng, ids);
    assert_ok(c->ref, qv_table_lookup(c->ref, "emb", ids, ST_IDS, ST_DIM,
                                      want));
    expect_rows(c, "emb", ids, want);
    shard_refs_lookup(c->ref, "hemb", ids, want);
    expect_rows(c, "hemb", ids, want);
    for (int step = 0; step < ST_STEPS; step++) {
        qv_db *via = c->h[step % 3];
        int touched[ST_SHARDS];
        table_ids(&rng, ids);
        for (int k = 0; k < ST_IDS * ST_DIM; k++)
            grads[k] = tu_randf(&rng) - 0.5f;
        assert_ok(via, qv_table_update(via, "emb", ids, ST_IDS, ST_DIM,
                                       grads));
        assert_ok(via, qv_table_update(via, "hemb", ids, ST_IDS, ST_DIM,
                                       grads));
        assert_ok(c->ref, qv_table_update(c->ref, "emb", ids, ST_IDS, ST_DIM,
                                          grads));
        shard_refs_update(c->ref, "hemb", ids, grads, touched);
        for (int s = 0; s < ST_SHARDS; s++)
            updates += (uint64_t)touched[s];
    }
    sync_tokens(c, 3);
    table_ids(&rng, ids);
    assert_ok(c->ref, qv_table_lookup(c->ref, "emb", ids, ST_IDS, ST_DIM,
                                      want));
    expect_rows(c, "emb", ids, want);
    shard_refs_lookup(c->ref, "hemb", ids, want);
    expect_rows(c, "hemb", ids, want);
    expect_table_info(c, "emb", &one, updates);
    expect_table_info(c, "hemb", &hone, updates);

    /* trained rows loaded: each reaches its shard */
    for (int k = 0; k < 40 * ST_DIM; k++)
        grads[k] = tu_randf(&rng);
    assert_ok(c->h[2], qv_table_load(c->h[2], "emb", 100, 40, ST_DIM, grads));
    assert_ok(c->ref, qv_table_load(c->ref, "emb", 100, 40, ST_DIM, grads));
    assert_status(c->h[2], qv_table_load(c->h[2], "hemb", 0, 1, ST_DIM,
                                         grads), QV_ERR_UNSUPPORTED);
    sync_tokens(c, 3);
    assert_ok(c->ref, qv_table_lookup(c->ref, "emb", ids, ST_IDS, ST_DIM,
                                      want));
    expect_rows(c, "emb", ids, want);
    uint64_t beyond = ST_ROWS;
    assert_status(c->h[0], qv_table_lookup(c->h[0], "emb", &beyond, 1,
                                           ST_DIM, want), QV_ERR_INVALID);
    assert_null(strstr(qv_errmsg(c->h[0]), "_shard."));
    assert_status(c->h[0], qv_table_lookup(c->h[0], "emb", ids, ST_IDS,
                                           ST_DIM + 1, want),
                  QV_ERR_DIMENSION);

    /* dropped on every node, and the name free again */
    assert_ok(c->h[0], qv_table_drop(c->h[0], "emb"));
    sync_tokens(c, 3);
    qv_table_info info;
    for (int i = 0; i < 3; i++)
        assert_status(c->h[i], qv_table_describe(c->h[i], "emb", &info),
                      QV_ERR_NOT_FOUND);
    static const char *const hash_only[] = {"hemb"};
    expect_table_list(c->h[1], hash_only, 1);
    assert_ok(c->h[2], qv_table_create(c->h[2], "emb", &plain));
    assert_ok(c->h[1], qv_table_drop(c->h[1], "hemb"));
    sync_tokens(c, 3);
    static const char *const plain_only[] = {"emb"};
    for (int i = 0; i < 3; i++)
        expect_table_list(c->h[i], plain_only, 1);
    char *report = NULL;
    for (int i = 0; i < 3; i++) {
        assert_ok(c->h[i], qv_check(c->h[i], &report));
        qv_free(report);
    }
}

/*
 * A node reached at the address it advertises (--advertise), not the one
 * it listens on; a node listening on 0.0.0.0 must advertise one, and a
 * bad --advertise is refused.
 */
static void test_advertised_address(void **state)
{
    struct cluster *c = cluster_start_n(state, 1);
    char *dir = c->scratch[0] = tu_mkdtemp();
    char token[4200];
    snprintf(token, sizeof token, "%s/token", dir);
    FILE *f = fopen(token, "w");
    assert_non_null(f);
    fputs("a-token-of-the-test\n", f);
    fclose(f);
    const char *everywhere[] = {"--listen", "0.0.0.0:0", "--token-file",
                                token, "--cluster", c->url, "--node", "n9",
                                "--stream", "test", NULL};
    expect_refusal(dir, everywhere, "the other nodes cannot reach this one "
                                    "at 0.0.0.0:");
    const char *bad[] = {"--cluster", c->url, "--node", "n9", "--stream",
                         "test", "--advertise", "localhost", NULL};
    expect_refusal(dir, bad, "--advertise wants HOST:PORT");
    const char *alone[] = {"--advertise", "localhost:7411", NULL};
    expect_refusal(dir, alone, "--advertise is for cluster nodes");

    int port = tu_free_port();
    char listen[32], advertise[32], uri[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(advertise, sizeof advertise, "localhost:%d", port);
    c->node_dir[1] = tu_mkdtemp();
    const char *extra[] = {"--listen", listen, "--advertise", advertise,
                           "--cluster", c->url, "--node", "n2", "--stream",
                           "test", NULL};
    c->port[1] = tu_start_server(c->node_dir[1], extra, &c->node_pid[1]);
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d", port);
    assert_ok(NULL, qv_open(uri, NULL, &c->h[1]));

    char *text = NULL;
    assert_ok(c->h[0], qv_cluster_status(c->h[0], &text));
    json_t *st = json_loads(text, 0, NULL);
    qv_free(text);
    json_t *nodes = json_object_get(st, "nodes");
    int seen = 0;
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *n = json_array_get(nodes, i);
        if (strcmp(json_string_value(json_object_get(n, "node")), "n2") == 0)
            seen = strcmp(json_string_value(json_object_get(n, "listen")),
                          advertise) == 0;
    }
    json_decref(st);
    assert_true(seen);
    /* n1 reaches n2's shard at localhost:PORT */
    qv_collection_config cfg = {.dim = 4, .shards = 2, .replicas = 1};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    upsert_range(c->h[0], 0, 20);
    uint64_t n = 0;
    assert_ok(c->h[0], qv_count(c->h[0], "docs", NULL, &n));
    assert_int_equal(n, 20);
    tu_rmdir(dir);
    c->scratch[0] = NULL;
}

/* ---- shards under faults (make cluster-scenario-test) ---- */

enum { SC_DOCS = 2000, SC_QUERIES = 40, SC_ROWS = 500, SC_TABLE_DIM = 4 };

static void scenario_vector(int i, float v[4])
{
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull + 7;
    for (int d = 0; d < 4; d++) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        v[d] = (float)((x >> 40) % 1000) / 10.0f;
    }
}

/* SC_DOCS documents "b%05d" through db, in batches. */
static void scenario_load(qv_db *db)
{
    for (int from = 0; from < SC_DOCS; from += 100) {
        char ids[100][8];
        float v[100][4];
        qv_doc docs[100];
        for (int j = 0; j < 100; j++) {
            snprintf(ids[j], sizeof ids[j], "b%05d", from + j);
            scenario_vector(from + j, v[j]);
            docs[j] = (qv_doc){ids[j], v[j], 4, NULL};
        }
        assert_ok(db, qv_upsert(db, "docs", docs, 100));
    }
}

/* The reference's "docs": every document the cluster holds, read by a
 * scan through db; how many. */
static uint64_t scenario_reference(struct cluster *c, qv_db *db)
{
    qv_collection_config cfg = {.dim = 4};
    qv_status st = qv_drop_collection(c->ref, "docs");
    assert_true(st == QV_OK || st == QV_ERR_NOT_FOUND);
    assert_ok(c->ref, qv_create_collection(c->ref, "docs", &cfg));
    char after[64] = "";
    uint64_t n = 0;
    for (;;) {
        qv_page *page = NULL;
        assert_ok(db, qv_scan(db, "docs", after[0] ? after : NULL, 500,
                              &page));
        qv_doc docs[500];
        for (size_t i = 0; i < page->count; i++) {
            const qv_record *r = &page->records[i];
            docs[i] = (qv_doc){r->id, r->vector, r->dim, r->payload};
        }
        if (page->count > 0)
            assert_ok(c->ref, qv_upsert(c->ref, "docs", docs, page->count));
        n += page->count;
        int more = page->next != NULL;
        if (more)
            snprintf(after, sizeof after, "%s", page->next);
        qv_free(page);
        if (!more)
            break;
    }
    return n;
}

/* recall@10 of hits against the exact answer */
static double recall_of(const qv_hits *hits, const qv_hits *exact)
{
    size_t found = 0;
    for (size_t i = 0; i < hits->count; i++)
        for (size_t j = 0; j < exact->count; j++)
            found += strcmp(hits->hits[i].id, exact->hits[j].id) == 0;
    return exact->count ? (double)found / (double)exact->count : 1;
}

/* Exact searches through db equal the reference's; HNSW recall@10 at
 * ef 16 across shards within 0.01 of the reference's (one database). */
static void scenario_searches(struct cluster *c, qv_db *db)
{
    double recall = 0, ref_recall = 0;
    for (int q = 0; q < SC_QUERIES; q++) {
        float query[4];
        scenario_vector(100000 + q, query);
        qv_search_options exact = {.k = 10, .exact = 1};
        qv_search_options walk = {.k = 10, .ef = 16};
        qv_hits *got = NULL, *want = NULL, *hnsw = NULL, *ref_hnsw = NULL;
        assert_ok(db, qv_search(db, "docs", query, 4, &exact, &got));
        assert_ok(c->ref, qv_search(c->ref, "docs", query, 4, &exact, &want));
        assert_int_equal(got->count, want->count);
        for (size_t i = 0; i < got->count; i++) {
            assert_string_equal(got->hits[i].id, want->hits[i].id);
            assert_float_equal(got->hits[i].distance, want->hits[i].distance,
                               1e-4);
        }
        assert_ok(db, qv_search(db, "docs", query, 4, &walk, &hnsw));
        assert_ok(c->ref, qv_search(c->ref, "docs", query, 4, &walk,
                                    &ref_hnsw));
        recall += recall_of(hnsw, want);
        ref_recall += recall_of(ref_hnsw, want);
        qv_free(got);
        qv_free(want);
        qv_free(hnsw);
        qv_free(ref_hnsw);
    }
    recall /= SC_QUERIES;
    ref_recall /= SC_QUERIES;
    print_message("# recall@10 at ef 16: %.4f across shards, %.4f on one "
                  "database\n", recall, ref_recall);
    assert_true(recall >= ref_recall - 0.01);
}

/* One update of table "emb" through db and the reference alike, then
 * every row looked up through every live node equals the reference's. */
static void scenario_table(struct cluster *c, qv_db *db, int step)
{
    enum { N = 50 };
    uint64_t ids[N];
    float grads[N * SC_TABLE_DIM];
    for (int i = 0; i < N; i++) {
        ids[i] = (uint64_t)((i * 37 + step * 11) % SC_ROWS);
        for (int d = 0; d < SC_TABLE_DIM; d++)
            grads[i * SC_TABLE_DIM + d] = (float)((i + d + step) % 5) - 2;
    }
    assert_ok(db, qv_table_update(db, "emb", ids, N, SC_TABLE_DIM, grads));
    assert_ok(c->ref, qv_table_update(c->ref, "emb", ids, N, SC_TABLE_DIM,
                                      grads));
    static uint64_t all[SC_ROWS];
    static float want[SC_ROWS * SC_TABLE_DIM], got[SC_ROWS * SC_TABLE_DIM];
    for (int i = 0; i < SC_ROWS; i++)
        all[i] = (uint64_t)i;
    assert_ok(c->ref, qv_table_lookup(c->ref, "emb", all, SC_ROWS,
                                      SC_TABLE_DIM, want));
    uint64_t token = 0;
    assert_ok(db, qv_write_token(db, &token));
    for (int i = 0; i < MAX_NODES; i++) {
        if (!c->h[i])
            continue;
        assert_ok(c->h[i], qv_read_after(c->h[i], token));
        assert_ok(c->h[i], qv_table_lookup(c->h[i], "emb", all, SC_ROWS,
                                           SC_TABLE_DIM, got));
        assert_memory_equal(got, want, sizeof want);
    }
}

/* After a step: with the writer stopped, every acknowledged write on
 * every live node, each shard's replicas equal, exact searches equal the
 * reference's, recall within 0.01, the table as the reference. */
static void scenario_check(struct cluster *c, struct writer *w, int via,
                           int stopped, int step)
{
    /* every node as far as the log goes: the writes, and the placement
     * changes logged after them */
    uint64_t last = last_seq(c, via);
    for (int i = 0; i < MAX_NODES; i++)
        if (c->h[i])
            assert_ok(c->h[i], qv_read_after(c->h[i], last));
    for (int i = 0; i < MAX_NODES; i++)
        if (c->h[i] && w->acked > 0)
            expect_writer_acked(c, i, w);
    uint64_t total = scenario_reference(c, c->h[via]);
    expect_replicas_agree(c, MAX_NODES, stopped, "docs", 8, 2, total);
    scenario_searches(c, c->h[via]);
    scenario_table(c, c->h[(via + 1) % MAX_NODES] ? c->h[(via + 1) %
                                                          MAX_NODES]
                                                  : c->h[via], step);
    print_message("# step %d: %llu documents, %d writes acknowledged, %d of "
                  "unknown outcome\n", step, (unsigned long long)total,
                  w->acked, w->failures);
}

/* A new writer through node i (its ids overwrite the last one's). */
static pthread_t scenario_write(struct cluster *c, struct writer *w, int i)
{
    *w = (struct writer){.db = c->h[i], .failed_at = -1, .go_on = 1,
                         .pace_ms = 20};
    return writer_start(w);
}

static void scenario_wait(struct writer *w, pthread_t t)
{
    writer_stop(w, t);
    writer_release(w);
}

struct create_call {
    qv_db *db;
    qv_status st;
};

static void *create_main(void *arg)
{
    struct create_call *cc = arg;
    qv_collection_config cfg = {.dim = 4, .shards = 4, .replicas = 2};
    cc->st = qv_create_collection(cc->db, "race", &cfg);
    return NULL;
}

/* Wait until node i's status has no copy or move under way, no replica
 * on node gone ("" for any), and a coordinator that is not gone. */
static void await_placed(struct cluster *c, int i, const char *gone)
{
    int tries = 0;
    while (!replaced(c, i, gone) && tries++ < 900) {
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
    }
    assert_true(replaced(c, i, gone));
}

/*
 * The issue's scenario (make cluster-scenario-test; CLUSTER_SCENARIO=1):
 * three clustered nats-servers and four nodes, a collection of 8 shards
 * x 2 replicas and a table of 4 shards x 2, single writes and reads
 * (searches, table lookups) going on through other nodes: two creates
 * of one sharded collection racing (one wins); kill -9 of a node (reads
 * never fail; its replicas placed again after the grace period; it is
 * restarted); a fifth node added (replicas move to it; reads never
 * fail); that node drained and stopped; the coordinator's node killed
 * (another takes over, its replicas placed again; restarted). After each
 * step: no acknowledged write lost, each shard's replicas equal, exact
 * searches equal to one database holding the same documents, HNSW
 * recall within 0.01 of that database's, the table equal to a reference
 * table given the same updates.
 */
static void test_shards_under_faults(void **state)
{
    if (!getenv("CLUSTER_SCENARIO"))
        skip();   /* minutes long: make cluster-scenario-test */
    struct cluster *c = cluster_start3(state, 4);
    c->scratch[0] = tu_mkdtemp();
    assert_ok(NULL, qv_open(c->scratch[0], NULL, &c->ref));
    qv_collection_config cfg = {.dim = 4, .shards = 8, .replicas = 2};
    assert_ok(c->h[0], qv_create_collection(c->h[0], "docs", &cfg));
    qv_table_config tcfg = {.rows = SC_ROWS, .dim = SC_TABLE_DIM, .seed = 3,
                            .shards = 4, .replicas = 2};
    assert_ok(c->h[1], qv_table_create(c->h[1], "emb", &tcfg));
    tcfg.shards = tcfg.replicas = 0;
    assert_ok(c->ref, qv_table_create(c->ref, "emb", &tcfg));
    scenario_load(c->h[2]);

    /* two placements of one name racing: one wins */
    struct create_call race[2] = {{c->h[0], QV_OK}, {c->h[3], QV_OK}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, create_main, &race[i]),
                         0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_true((race[0].st == QV_OK) != (race[1].st == QV_OK));
    assert_true(race[0].st == QV_ERR_EXISTS || race[1].st == QV_ERR_EXISTS);
    assert_ok(c->h[0], qv_drop_collection(c->h[0], "race"));

    struct searcher reader = {.with_table = 1};
    searcher_start(c, &reader, 0);
    struct writer w;
    pthread_t wt = scenario_write(c, &w, 1);
    await_more(&w, 20);
    scenario_wait(&w, wt);
    scenario_check(c, &w, 0, -1, 1);

    /* kill -9 of a node that is not the coordinator */
    int coord = coordinator_of(c, 0);
    int lost = coord == 3 ? 2 : 3;
    char name[16];
    snprintf(name, sizeof name, "n%d", lost + 1);
    wt = scenario_write(c, &w, 1);
    await_more(&w, 20);
    kill_node(c, lost);
    await_more(&w, 20);
    await_placed(c, 0, name);
    scenario_wait(&w, wt);
    start_node(c, lost);   /* it comes back: replicas move to it again */
    int balanced[MAX_NODES] = {-2, -2, -2, -2, 0};
    await_shares(c, 0, balanced);
    scenario_check(c, &w, 0, -1, 2);

    /* a fifth node joins: 16 replicas over 5 nodes */
    c->node_dir[4] = tu_mkdtemp();
    wt = scenario_write(c, &w, 1);
    start_node(c, 4);
    int joined[MAX_NODES] = {-1, -1, -1, -1, 3};
    await_shares(c, 0, joined);
    scenario_wait(&w, wt);
    scenario_check(c, &w, 0, -1, 3);

    /* drained (it holds no table replica: tables do not move) and
     * stopped */
    wt = scenario_write(c, &w, 1);
    assert_ok(c->h[1], qv_cluster_drain(c->h[1], "n5", 0));
    int drained[MAX_NODES] = {-1, -1, -1, -1, 0};
    await_shares(c, 0, drained);
    scenario_wait(&w, wt);
    stop_node(c, 4);
    scenario_check(c, &w, 0, 4, 4);

    /* the coordinator's node killed: another takes over */
    coord = coordinator_of(c, 0);
    int via = coord == 0 ? 1 : 0;
    snprintf(name, sizeof name, "n%d", coord + 1);
    searcher_stop(c);
    print_message("# %d reads during steps 1-4, %d failed%s%s\n",
                  reader.done, reader.failed, reader.failed ? ": " : "",
                  reader.why);
    assert_int_equal(reader.failed, 0);
    reader = (struct searcher){.with_table = 1};
    searcher_start(c, &reader, via);
    wt = scenario_write(c, &w, (via + 1) % 4 == coord ? (via + 2) % 4
                                                       : (via + 1) % 4);
    await_more(&w, 20);
    kill_node(c, coord);
    await_placed(c, via, name);
    scenario_wait(&w, wt);
    start_node(c, coord);
    await_shares(c, via, balanced);
    searcher_stop(c);
    scenario_check(c, &w, via, 4, 5);
    print_message("# %d reads during step 5, %d failed%s%s\n", reader.done,
                  reader.failed, reader.failed ? ": " : "", reader.why);
    assert_int_equal(reader.failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_reach_every_node,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_stopped_node_catches_up,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_tables_are_bit_identical,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_write_too_large_for_the_log,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_databases_are_kept_apart,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_client_moves_between_nodes,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_kill_nodes_mid_write,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_nats_servers_fail,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_whole_cluster_restarts,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_clients_of_three_nodes,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_sharded_collection,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_sharded_writes_survive_a_kill,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_partial_search_without_a_node,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_lost_node_is_replaced,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_nodes_join_and_drain,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_advertised_address,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_shards_under_faults,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_sharded_table,
                                        cluster_setup, cluster_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
