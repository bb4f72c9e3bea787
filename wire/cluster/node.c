/*
 * node.c - one node of a cluster (node.h): the applier thread that makes
 * the log's entries on the local database in the log's order, and the
 * write path that appends an entry and waits for its local outcome.
 *
 * The database's position "applied/STREAM" is the sequence of the last
 * entry applied. One reader applies every shard in the stream's order, so
 * every entry up to it was applied; after a crash the node resumes at the
 * next one. The position is stored in the very transaction of the entry's
 * write (qv_position_with_next_write), or alone when the entry wrote
 * nothing (it was refused: every node refuses it alike).
 *
 * Batches: the entries the applier finds already received (up to
 * MERGE_MAX_ENTRIES and MERGE_MAX_BYTES) are offered to the server's
 * merge, which makes them as one write when they can be (upserts into
 * one collection) and all succeed, with the last one's position in that
 * write's transaction; otherwise they are applied one by one. Either way
 * every entry's outcome is what applying it alone gives.
 *
 * Membership: every node keeps a key of its name in the bucket
 * quiver_STREAM_nodes (JetStream KV), rewritten every BEAT_MS, which
 * vanishes when it is not rewritten for MEMBER_TTL_MS: its address, its
 * database's id, how far it applied. A name held by a live node with
 * another database is refused.
 */
#include "wire/cluster/node.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <jansson.h>
#include <stdlib.h>
#include <time.h>
#include <xxhash.h>

#include "common/alloc.h"
#include "common/json.h"
#include "wire/cluster/shards.h"

#define READ_POLL_MS 200        /* how often the applier checks for stop */
#define APPLY_WAIT_MS 30000     /* a write's wait for its local apply */
#define POSITION_PREFIX "applied/"
#define NODE_ID "node_id"        /* position: the database's random id */
#define BEAT_MS 2000
#define MEMBER_TTL_MS 15000
#define COORDINATOR_TTL_MS 10000
#define MERGE_MAX_ENTRIES 64
#define MERGE_MAX_BYTES (8u << 20)   /* of requests in one merged write */

/* A write waiting for the applier to reach its entry. */
struct waiter {
    char id[96];
    int done;
    uint64_t seq;
    node_outcome *out;
    struct waiter *next;
};

struct cluster_node {
    qv_db *db;
    clog *log;
    clog_kv *members;
    clog_kv *placements;
    clog_kv *coordination;
    char listen[64];
    uint64_t db_id;
    long long last_beat_ms;      /* applier thread only */
    node_apply_fn apply;
    node_merge_fn merge;         /* NULL: every entry alone */
    _Atomic(void *) ctx;         /* the server's, for apply */
    char position[sizeof POSITION_PREFIX + 32];
    char name[64];
    uint64_t boot;               /* random, so ids differ across restarts */
    atomic_ullong next_id;
    pthread_t applier;
    int applier_started;
    atomic_int stop;
    pthread_mutex_t lock;
    pthread_cond_t applied_cv;   /* broadcast after every entry */
    uint64_t applied;            /* under lock */
    int64_t applied_time_ns;     /* the log's time of that entry, under lock */
    struct waiter *waiters;      /* under lock */
    char failure[512];           /* the applier's last error, under lock */
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* The position is seq once the write staged with it is made: stored
 * alone when that write stored nothing (it was refused). */
static void settle_position(cluster_node *n, uint64_t seq)
{
    uint64_t pos = 0;
    if (qv_position_get(n->db, n->position, &pos) != QV_OK || pos != seq)
        qv_position_put(n->db, n->position, seq);
}

static void note_failure(cluster_node *n, const char *err);
static void beat(cluster_node *n, int force);

/* Make entry e on the database and store its position with it: 0, or
 * -1 when the node stops while the entry still cannot be applied (then
 * nothing of it is recorded, and it is applied again after a restart). */
static int apply_entry(cluster_node *n, const clog_entry *e,
                       node_outcome *out)
{
    node_entry entry = {n->db, n->name, n->position, e->seq, e->data,
                        e->len, atomic_load(&n->ctx)};
    qv_position_with_next_write(n->db, n->position, e->seq);
    n->apply(&entry, out);
    /* an entry that cannot be applied yet holds the node up: nothing
     * after it may be applied first */
    while (out->again && !atomic_load(&n->stop)) {
        note_failure(n, out->message);
        struct timespec pause = {1, 0};
        nanosleep(&pause, NULL);
        beat(n, 0);
        *out = (node_outcome){QV_OK, "", 0, 0, 0};
        qv_position_with_next_write(n->db, n->position, e->seq);
        n->apply(&entry, out);
    }
    if (out->again)
        return -1;
    if (!out->skipped)   /* a skipped entry leaves the position to the
                            next write: applying it again skips it again */
        settle_position(n, e->seq);
    return 0;
}

/* Hand the outcome to the write waiting for entry id, if any. */
static void finish(cluster_node *n, const clog_entry *e,
                   const node_outcome *out)
{
    pthread_mutex_lock(&n->lock);
    n->applied = e->seq;
    n->applied_time_ns = e->time_ns;
    for (struct waiter *w = n->waiters; w; w = w->next) {
        if (!w->done && strcmp(w->id, e->id) == 0) {
            *w->out = *out;
            w->seq = e->seq;
            w->done = 1;
        }
    }
    pthread_cond_broadcast(&n->applied_cv);
    pthread_mutex_unlock(&n->lock);
}

static void note_failure(cluster_node *n, const char *err)
{
    pthread_mutex_lock(&n->lock);
    snprintf(n->failure, sizeof n->failure, "%s", err);
    pthread_mutex_unlock(&n->lock);
    fprintf(stderr, "quiverd: cluster: %s\n", err);
}

/* This node's member record, as JSON text (free() it); NULL: no memory. */
static char *member_json(cluster_node *n)
{
    pthread_mutex_lock(&n->lock);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "node", n->name,
                          "listen", n->listen, "db_id", "",
                          "applied", (json_int_t)n->applied,
                          "applied_time_ms",
                          (json_int_t)(n->applied_time_ns / 1000000),
                          "seen_ms", (json_int_t)now_ms());
    pthread_mutex_unlock(&n->lock);
    char id[24];
    snprintf(id, sizeof id, "%016llx", (unsigned long long)n->db_id);
    if (o)
        json_object_set_new(o, "db_id", json_string(id));
    char *dumped = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char *text = dumped ? strdup(dumped) : NULL;
    qv_json_free(dumped);
    return text;
}

/* Rewrite this node's member record when BEAT_MS passed. */
static void beat(cluster_node *n, int force)
{
    long long now = now_ms();
    if (!force && now - n->last_beat_ms < BEAT_MS)
        return;
    n->last_beat_ms = now;
    char err[512], *text = member_json(n);
    if (text && clog_kv_put(n->members, n->name, text, err, sizeof err) != 0)
        note_failure(n, err);
    free(text);
}

/* Entries read from the log, in order, to apply together. */
struct run {
    clog_entry e[MERGE_MAX_ENTRIES];
    size_t n, bytes;
};

/* Add e to run, or drop it when it was applied before a restart. */
static void run_add(cluster_node *n, struct run *run, clog_entry *e)
{
    if (e->seq <= node_applied(n)) {
        clog_entry_release(e);
        return;
    }
    run->e[run->n++] = *e;
    run->bytes += e->len;
}

/* The next entry, waiting for it, then those already received: 0, 1 when
 * none came, -1 on an error (with the entries read before it in run). */
static int read_run(cluster_node *n, clog_reader *r, struct run *run,
                    char *err, size_t errlen)
{
    clog_entry e;
    int rc = clog_next(r, READ_POLL_MS, &e, err, errlen);
    if (rc != 0)
        return rc;
    run_add(n, run, &e);
    while (run->n < MERGE_MAX_ENTRIES && run->bytes < MERGE_MAX_BYTES &&
           clog_buffered(r) > 0) {
        rc = clog_next(r, READ_POLL_MS, &e, err, errlen);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        run_add(n, run, &e);
    }
    return 0;
}

/* The entries of run as one write, when the server's merge can: 1. */
static int apply_merged(cluster_node *n, const struct run *run)
{
    const void *data[MERGE_MAX_ENTRIES];
    size_t lens[MERGE_MAX_ENTRIES];
    for (size_t i = 0; i < run->n; i++) {
        data[i] = run->e[i].data;
        lens[i] = run->e[i].len;
    }
    uint64_t last = run->e[run->n - 1].seq;
    qv_position_with_next_write(n->db, n->position, last);
    if (!n->merge(n->db, data, lens, run->n))
        return 0;   /* nothing written; apply_entry stages anew */
    settle_position(n, last);
    node_outcome ok = {QV_OK, "", 0, 0, 0};
    for (size_t i = 0; i < run->n; i++)
        finish(n, &run->e[i], &ok);
    return 1;
}

static void apply_run(cluster_node *n, struct run *run)
{
    if (run->n > 1 && n->merge && apply_merged(n, run))
        return;
    for (size_t i = 0; i < run->n; i++) {
        node_outcome out = {0};
        if (apply_entry(n, &run->e[i], &out) != 0)
            return;   /* stopping: neither it nor the rest is applied */
        finish(n, &run->e[i], &out);
    }
}

static void *applier_main(void *arg)
{
    cluster_node *n = arg;
    clog_reader *r = NULL;
    char err[512];
    while (!atomic_load(&n->stop)) {
        beat(n, 0);
        if (!r && clog_read_from(n->log, node_applied(n) + 1, &r, err,
                                 sizeof err) != 0) {
            note_failure(n, err);
            struct timespec pause = {0, READ_POLL_MS * 1000000L};
            nanosleep(&pause, NULL);   /* NATS is away: try again */
            continue;
        }
        struct run run = {.n = 0};
        int rc = read_run(n, r, &run, err, sizeof err);
        apply_run(n, &run);
        for (size_t i = 0; i < run.n; i++)
            clog_entry_release(&run.e[i]);
        if (rc < 0) {
            note_failure(n, err);
            clog_reader_close(r);   /* read again from the position */
            r = NULL;
        }
    }
    clog_reader_close(r);
    return NULL;
}

/* Whether db holds any collection or table. */
static int holds_data(qv_db *db, int *holds)
{
    qv_collection_info *cols = NULL;
    qv_table_info *tables = NULL;
    size_t nc = 0, nt = 0;
    int rc = qv_list_collections(db, &cols, &nc) == QV_OK &&
                     qv_list_tables(db, &tables, &nt) == QV_OK
                 ? 0 : -1;
    qv_free(cols);
    qv_free(tables);
    *holds = nc + nt > 0;
    return rc;
}

/*
 * db must be a replica of this stream (its mark, position "cluster", is
 * the stream name's hash), or new: then it becomes one. A database that
 * served alone, or another stream, is refused: its data is not the log's.
 */
static int claim_database(qv_db *db, const char *stream, uint64_t *id,
                          char *err, size_t errlen)
{
    uint64_t mark = 0, want = node_stream_mark(stream);
    int holds = 0;
    if (qv_position_get(db, NODE_MARK, &mark) != QV_OK ||
        holds_data(db, &holds) != 0) {
        snprintf(err, errlen, "reading the database: %s", qv_errmsg(db));
        return -1;
    }
    if (mark == want)
        return qv_position_get(db, NODE_ID, id) == QV_OK ? 0 : -1;
    if (mark != 0) {
        snprintf(err, errlen, "the database is a replica of another write "
                 "log than stream '%s'", stream);
        return -1;
    }
    if (holds) {
        snprintf(err, errlen, "the database holds collections or tables "
                 "written without a cluster; a node starts from an empty "
                 "database (import the data through the cluster instead)");
        return -1;
    }
    if (getrandom(id, sizeof *id, 0) != sizeof *id ||
        qv_position_put(db, NODE_ID, *id | 1) != QV_OK ||
        qv_position_put(db, NODE_MARK, want) != QV_OK) {
        snprintf(err, errlen, "marking the database: %s", qv_errmsg(db));
        return -1;
    }
    *id |= 1;
    return 0;
}

uint64_t node_stream_mark(const char *stream)
{
    uint64_t h = XXH64(stream, strlen(stream), 0);
    return h ? h : 1;   /* 0 is "no mark" */
}

/* The db_id in a member record's JSON text; 0 when it has none. */
static uint64_t member_db_id(const char *text)
{
    json_t *o = json_loads(text, 0, NULL);
    const char *id = json_string_value(json_object_get(o, "db_id"));
    uint64_t v = id ? strtoull(id, NULL, 16) : 0;
    json_decref(o);
    return v;
}

/* Take this node's name in the members' bucket: refused while a live
 * node with another database holds it. */
static int join_members(cluster_node *n, char *err, size_t errlen)
{
    char bucket[64], places[64], coord[64], *held = NULL;
    snprintf(bucket, sizeof bucket, "quiver_%s_nodes", clog_stream(n->log));
    snprintf(places, sizeof places, "quiver_%s_shards", clog_stream(n->log));
    snprintf(coord, sizeof coord, "quiver_%s_coord", clog_stream(n->log));
    if (clog_kv_open(n->log, bucket, MEMBER_TTL_MS, &n->members, err,
                     errlen) != 0 ||
        clog_kv_open(n->log, places, 0, &n->placements, err, errlen) != 0 ||
        clog_kv_open(n->log, coord, COORDINATOR_TTL_MS, &n->coordination,
                     err, errlen) != 0 ||
        clog_kv_get(n->members, n->name, &held, err, errlen) != 0)
        return -1;
    uint64_t other = held ? member_db_id(held) : 0;
    free(held);
    if (other && other != n->db_id) {
        snprintf(err, errlen, "node name '%s' is taken by a live node with "
                 "another database; give each node its own name", n->name);
        return -1;
    }
    beat(n, 1);
    return 0;
}

int node_start(const clog_config *cfg, const char *listen, qv_db *db,
               node_apply_fn apply, node_merge_fn merge, cluster_node **out,
               char *err, size_t errlen)
{
    *out = NULL;
    size_t len = cfg->node ? strlen(cfg->node) : 0;
    if (len == 0 || len >= 64 ||
        strspn(cfg->node, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "0123456789_-") != len) {
        snprintf(err, errlen, "a node name is 1 to 63 bytes of "
                 "[A-Za-z0-9_-]");
        return -1;
    }
    cluster_node *n = qv_calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    n->db = db;
    n->apply = apply;
    n->merge = merge;
    snprintf(n->listen, sizeof n->listen, "%s", listen);
    snprintf(n->name, sizeof n->name, "%s", cfg->node);
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->applied_cv, NULL);
    int rc = -1;
    if (getrandom(&n->boot, sizeof n->boot, 0) != sizeof n->boot) {
        snprintf(err, errlen, "getrandom failed");
        goto done;
    }
    if (clog_open(cfg, &n->log, err, errlen) != 0 ||
        claim_database(db, cfg->stream, &n->db_id, err, errlen) != 0 ||
        join_members(n, err, errlen) != 0)
        goto done;
    snprintf(n->position, sizeof n->position, POSITION_PREFIX "%s",
             cfg->stream);
    if (qv_position_get(db, n->position, &n->applied) != QV_OK) {
        snprintf(err, errlen, "reading the applied position: %s",
                 qv_errmsg(db));
        goto done;
    }
    if (pthread_create(&n->applier, NULL, applier_main, n) != 0) {
        snprintf(err, errlen, "cannot start the applier thread");
        goto done;
    }
    n->applier_started = 1;
    rc = 0;
done:
    if (rc == 0)
        *out = n;
    else
        node_stop(n);
    return rc;
}

void node_stop(cluster_node *n)
{
    if (!n)
        return;
    atomic_store(&n->stop, 1);
    if (n->applier_started)
        pthread_join(n->applier, NULL);
    char err[512];
    if (n->applier_started)   /* leave at once rather than by expiry */
        clog_kv_delete(n->members, n->name, err, sizeof err);
    clog_kv_close(n->members);
    clog_kv_close(n->placements);
    clog_kv_close(n->coordination);
    clog_close(n->log);
    pthread_cond_destroy(&n->applied_cv);
    pthread_mutex_destroy(&n->lock);
    qv_mem_free(n);
}

uint64_t node_applied(cluster_node *n)
{
    pthread_mutex_lock(&n->lock);
    uint64_t seq = n->applied;
    pthread_mutex_unlock(&n->lock);
    return seq;
}

void node_set_context(cluster_node *n, void *ctx)
{
    atomic_store(&n->ctx, ctx);
}

int node_stopping(cluster_node *n)
{
    return atomic_load(&n->stop);
}

const char *node_name(const cluster_node *n)
{
    return n->name;
}

clog_kv *node_placements(cluster_node *n)
{
    return n->placements;
}

int node_coordinate(cluster_node *n, char *err, size_t errlen)
{
    char *holder = NULL;
    uint64_t rev = 0;
    int rc = clog_kv_get_rev(n->coordination, "coordinator", &holder, &rev,
                             err, errlen);
    if (rc == 0 && !holder)   /* nobody: try to take it */
        rc = clog_kv_create(n->coordination, "coordinator", n->name, err,
                            errlen);
    else if (rc == 0)         /* ours: keep it, unless it changed hands */
        rc = strcmp(holder, n->name) == 0
                 ? clog_kv_update(n->coordination, "coordinator", n->name,
                                  rev, err, errlen)
                 : 1;
    free(holder);
    return rc;
}

int node_coordinator(cluster_node *n, char *name, size_t len, char *err,
                     size_t errlen)
{
    char *holder = NULL;
    if (clog_kv_get(n->coordination, "coordinator", &holder, err,
                    errlen) != 0)
        return -1;
    snprintf(name, len, "%s", holder ? holder : "");
    free(holder);
    return 0;
}

void node_keep_alive(cluster_node *n)
{
    beat(n, 0);
}

int node_live(cluster_node *n, char ***names, int *count, char *err,
              size_t errlen)
{
    return clog_kv_keys(n->members, names, count, err, errlen);
}

/* Live node name's member record, parsed: 0, 1 when there is none. */
static int member_of(cluster_node *n, const char *name, json_t **o,
                     char *err, size_t errlen)
{
    char *text = NULL;
    *o = NULL;
    if (clog_kv_get(n->members, name, &text, err, errlen) != 0)
        return -1;
    if (!text)
        return 1;
    *o = json_loads(text, 0, NULL);
    free(text);
    return *o ? 0 : 1;
}

int node_listen_of(cluster_node *n, const char *name, char *listen,
                   size_t len, char *err, size_t errlen)
{
    json_t *o;
    int rc = member_of(n, name, &o, err, errlen);
    if (rc != 0)
        return rc;
    const char *at = json_string_value(json_object_get(o, "listen"));
    rc = at && strlen(at) < len ? 0 : 1;
    if (rc == 0)
        snprintf(listen, len, "%s", at);
    json_decref(o);
    return rc;
}

int node_applied_of(cluster_node *n, const char *name, uint64_t *applied,
                    char *err, size_t errlen)
{
    json_t *o;
    int rc = member_of(n, name, &o, err, errlen);
    if (rc != 0)
        return rc;
    *applied = (uint64_t)json_integer_value(json_object_get(o, "applied"));
    json_decref(o);
    return 0;
}

static void unlink_waiter(cluster_node *n, struct waiter *w)
{
    for (struct waiter **p = &n->waiters; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return;
        }
    }
}

/* Wait (lock held) until w is done or the deadline passes: 0 or -1. */
static int wait_done(cluster_node *n, struct waiter *w)
{
    struct timespec until;
    deadline_in(&until, APPLY_WAIT_MS);
    int rc = 0;
    while (!w->done && rc == 0)
        rc = pthread_cond_timedwait(&n->applied_cv, &n->lock, &until);
    return w->done ? 0 : -1;
}

void node_write(cluster_node *n, const char *shard, const void *entry,
                size_t len, node_outcome *out, uint64_t *seq)
{
    char subject[256], err[400];
    struct waiter w = {.out = out};
    *seq = 0;
    snprintf(w.id, sizeof w.id, "%s-%016llx-%llu", n->name,
             (unsigned long long)n->boot,
             (unsigned long long)atomic_fetch_add(&n->next_id, 1));
    size_t max = clog_max_entry(n->log);
    if (len > max) {
        *out = (node_outcome){QV_ERR_INVALID, "", 0, 0, 0};
        snprintf(out->message, sizeof out->message, "the write is %zu bytes, "
                 "more than the cluster's write log takes in one entry (%zu "
                 "bytes: the NATS servers' max_payload less 1 KiB); send "
                 "smaller batches, or raise max_payload in the NATS "
                 "servers' configuration (docs/CLUSTER.md)", len, max);
        return;
    }
    if (clog_subject(n->log, shard, subject, sizeof subject) != 0) {
        *out = (node_outcome){QV_ERR_INTERNAL, "", 0, 0, 0};
        snprintf(out->message, sizeof out->message, "bad shard '%s'", shard);
        return;
    }
    /* registered before the append: the applier may be quicker than us */
    pthread_mutex_lock(&n->lock);
    w.next = n->waiters;
    n->waiters = &w;
    pthread_mutex_unlock(&n->lock);
    int appended = clog_append(n->log, subject, w.id, entry, len, seq, err,
                               sizeof err) == 0;
    pthread_mutex_lock(&n->lock);
    int applied = appended && wait_done(n, &w) == 0;
    unlink_waiter(n, &w);
    pthread_mutex_unlock(&n->lock);
    if (!appended) {
        *out = (node_outcome){QV_ERR_CONNECTION, "", 0, 0, 0};
        snprintf(out->message, sizeof out->message, "the cluster's write "
                 "log did not confirm the write, which may or may not be "
                 "applied later: %s", err);
    } else if (!applied) {
        *out = (node_outcome){QV_ERR_TIMEOUT, "", 0, 0, 0};
        snprintf(out->message, sizeof out->message, "the write is entry %llu "
                 "of the log and will be applied, but this node did not "
                 "apply it within %d s", (unsigned long long)*seq,
                 APPLY_WAIT_MS / 1000);
    }
}

qv_status node_wait_applied(cluster_node *n, uint64_t seq, node_outcome *out)
{
    struct timespec until;
    deadline_in(&until, APPLY_WAIT_MS);
    pthread_mutex_lock(&n->lock);
    int rc = 0;
    while (n->applied < seq && rc == 0)
        rc = pthread_cond_timedwait(&n->applied_cv, &n->lock, &until);
    uint64_t applied = n->applied;
    pthread_mutex_unlock(&n->lock);
    if (applied >= seq)
        return QV_OK;
    *out = (node_outcome){QV_ERR_TIMEOUT, "", 0, 0, 0};
    snprintf(out->message, sizeof out->message, "this node has applied the "
             "log up to entry %llu, not yet %llu; ask again or ask another "
             "node", (unsigned long long)applied, (unsigned long long)seq);
    return QV_ERR_TIMEOUT;
}

/* ---- status ---- */

/* One member's record, with its lag behind the log's last entry. */
static json_t *member_status(clog_kv *members, const char *name,
                             uint64_t last, long long now)
{
    char err[512], *text = NULL;
    if (clog_kv_get(members, name, &text, err, sizeof err) != 0 || !text)
        return NULL;   /* it left meanwhile */
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    json_int_t applied = json_integer_value(json_object_get(o, "applied"));
    json_int_t at = json_integer_value(json_object_get(o, "applied_time_ms"));
    json_int_t seen = json_integer_value(json_object_get(o, "seen_ms"));
    uint64_t behind = last > (uint64_t)applied ? last - (uint64_t)applied : 0;
    json_object_set_new(o, "lag_entries", json_integer((json_int_t)behind));
    /* at most: the oldest entry it lacks came after the one it applied */
    json_object_set_new(o, "lag_seconds",
                        json_real(behind && at ? (double)(now - at) / 1000
                                               : 0.0));
    json_object_set_new(o, "seen_seconds_ago",
                        json_real((double)(now - seen) / 1000));
    json_object_del(o, "seen_ms");
    return o;
}

/* Shard s's replicas (an array of node names) in hosts; those still
 * being copied are appended to copying. */
static json_t *shard_status(const shard_map *m, uint32_t s, json_t *copying)
{
    json_t *hosts = json_array();
    for (uint32_t r = 0; hosts && r < m->replicas; r++) {
        json_array_append_new(hosts, json_string(shard_host(m, s, r)));
        if (m->since[(size_t)s * m->replicas + r] != 0)
            json_array_append_new(copying,
                                  json_string(shard_host(m, s, r)));
    }
    return hosts;
}

/* The moves under way: [{shard, from, to, caught_up}]. */
static json_t *moves_status(const shard_map *m)
{
    json_t *moves = json_array();
    for (uint32_t s = 0; moves && s < m->shards; s++)
        if (shard_joining(m, s))
            json_array_append_new(
                moves, json_pack("{s:I, s:s, s:s, s:b}", "shard",
                                 (json_int_t)s, "from",
                                 shard_host(m, s, m->replaces[s]), "to",
                                 m->joining[s], "caught_up",
                                 m->joining_since[s] == 0));
    return moves;
}

/* The placement of every sharded collection (tables 0) or table (1):
 * [{name, serial, version, shards, replicas, placement: [[node, ...] per
 * shard], copying: [node, ...], moving: [...]}]; NULL on an error (in
 * err). */
static json_t *placements_status(cluster_node *n, int tables, char *err,
                                 size_t errlen)
{
    shard_map *maps = NULL;
    int count = 0;
    if (shard_maps_all(n->placements, tables, &maps, &count, err, errlen) != 0)
        return NULL;
    json_t *out = json_array();
    for (int i = 0; out && i < count; i++) {
        const shard_map *m = &maps[i];
        json_t *shards = json_array(), *copying = json_array();
        for (uint32_t s = 0; shards && copying && s < m->shards; s++)
            json_array_append_new(shards, shard_status(m, s, copying));
        char serial[24];
        snprintf(serial, sizeof serial, "%016llx",
                 (unsigned long long)m->serial);
        json_array_append_new(out, json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, "
                                             "s:o, s:o}", "name", m->name,
                                             "serial", serial, "version",
                                             (json_int_t)m->version, "shards",
                                             (json_int_t)m->shards, "replicas",
                                             (json_int_t)m->replicas,
                                             "placement", shards,
                                             "copying", copying, "moving",
                                             moves_status(m)));
    }
    shard_maps_release(maps, count);
    return out;
}

/* The nodes being drained: an array of names; NULL on an error. */
static json_t *drains_status(cluster_node *n, char *err, size_t errlen)
{
    char **nodes = NULL;
    int count = 0;
    uint64_t revision;
    if (shard_drains_get(n->placements, &nodes, &count, &revision, err,
                         errlen) != 0)
        return NULL;
    json_t *out = json_array();
    for (int i = 0; out && i < count; i++)
        json_array_append_new(out, json_string(nodes[i]));
    clog_kv_keys_free(nodes, count);
    return out;
}

qv_status node_status(cluster_node *n, char **json, node_outcome *fail)
{
    char err[512], **keys = NULL;
    int nkeys = 0;
    uint64_t last = 0;
    *json = NULL;
    if (clog_last_seq(n->log, &last, err, sizeof err) != 0 ||
        clog_kv_keys(n->members, &keys, &nkeys, err, sizeof err) != 0) {
        *fail = (node_outcome){QV_ERR_CONNECTION, "", 0, 0, 0};
        snprintf(fail->message, sizeof fail->message, "%s", err);
        return QV_ERR_CONNECTION;
    }
    long long now = now_ms();
    json_t *nodes = json_array();
    for (int i = 0; nodes && i < nkeys; i++) {
        json_t *m = member_status(n->members, keys[i], last, now);
        if (m)
            json_array_append_new(nodes, m);
    }
    clog_kv_keys_free(keys, nkeys);
    pthread_mutex_lock(&n->lock);
    char failure[sizeof n->failure];
    memcpy(failure, n->failure, sizeof failure);
    pthread_mutex_unlock(&n->lock);
    json_t *placed = placements_status(n, 0, err, sizeof err);
    json_t *tables = placed ? placements_status(n, 1, err, sizeof err)
                            : NULL;
    json_t *draining = tables ? drains_status(n, err, sizeof err) : NULL;
    if (!draining) {
        json_decref(placed);
        json_decref(tables);
        json_decref(nodes);
        *fail = (node_outcome){QV_ERR_CONNECTION, "", 0, 0, 0};
        snprintf(fail->message, sizeof fail->message, "%s", err);
        return QV_ERR_CONNECTION;
    }
    char coordinator[SHARD_NODE_MAX] = "";
    node_coordinator(n, coordinator, sizeof coordinator, err, sizeof err);
    json_t *o = json_pack("{s:s, s:{s:s, s:I, s:i}, s:o, s:o, s:o, s:o, "
                          "s:s, s:s}", "node", n->name, "stream", "name",
                          clog_stream(n->log), "last_seq", (json_int_t)last,
                          "replicas", clog_replicas(n->log), "nodes", nodes,
                          "sharded", placed, "sharded_tables", tables,
                          "draining", draining, "coordinator", coordinator,
                          "last_error", failure);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    *json = text ? qv_strndup(text, strlen(text)) : NULL;
    qv_json_free(text);
    if (*json)
        return QV_OK;
    *fail = (node_outcome){QV_ERR_NOMEM, "out of memory", 0, 0, 0};
    return QV_ERR_NOMEM;
}
