/*
 * router.c - requests on sharded collections (router.h).
 *
 * Shards are local collections (shard_local_name) on the nodes their
 * placement names. This node reaches another through a pool of client
 * handles per node (the same protocol clients speak, with the servers'
 * token), and itself the same way for writes, so that every write of a
 * shard is sent through the log by a node that holds the shard and
 * answers with that node's outcome. Reads of a shard this node holds run
 * on the local database.
 *
 * Reads of several shards run side by side, a worker thread per shard up
 * to FANOUT_THREADS; each asks the shard's replicas in turn, this node
 * first, and moves to the next when one cannot be reached or does not
 * answer in time. Writes are never sent twice: a write whose replica
 * failed after it was sent may or may not be applied, and says so.
 */
#include "wire/server/router.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/alloc.h"
#include "common/json.h"
#include "wire/quiver.pb-c.h"

#define PEER_IDLE_MAX 8        /* idle handles kept per node */
#define PEER_TIMEOUT_MS 10000  /* a peer's connect and answer */
#define FANOUT_THREADS 16
#define PEERS_MAX 256
#define MAPS_CACHED 64
#define MAP_FRESH_MS 1000      /* a placement read is used this long */

struct peer {
    char name[SHARD_NODE_MAX];
    qv_db *idle[PEER_IDLE_MAX];
    int nidle;
};

/* A placement read from the bucket, and when. */
struct cached_map {
    shard_map map;
    long long read_ms;
};

struct router {
    cluster_node *node;
    qv_db *db;
    char *token;
    char *ca_file;
    pthread_mutex_t lock;      /* peers */
    struct peer peers[PEERS_MAX];
    int npeers;
    pthread_mutex_t maps_lock;
    struct cached_map maps[MAPS_CACHED];
    int nmaps;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

router *router_new(cluster_node *node, qv_db *db, const char *token,
                   const char *ca_file)
{
    router *rt = qv_calloc(1, sizeof *rt);
    if (!rt)
        return NULL;
    rt->node = node;
    rt->db = db;
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->maps_lock, NULL);
    rt->token = token ? qv_strndup(token, strlen(token)) : NULL;
    rt->ca_file = ca_file ? qv_strndup(ca_file, strlen(ca_file)) : NULL;
    if ((token && !rt->token) || (ca_file && !rt->ca_file)) {
        router_free(rt);
        return NULL;
    }
    return rt;
}

void router_free(router *rt)
{
    if (!rt)
        return;
    for (int i = 0; i < rt->npeers; i++)
        for (int j = 0; j < rt->peers[i].nidle; j++)
            qv_close(rt->peers[i].idle[j]);
    for (int i = 0; i < rt->nmaps; i++)
        shard_map_release(&rt->maps[i].map);
    pthread_mutex_destroy(&rt->lock);
    pthread_mutex_destroy(&rt->maps_lock);
    qv_mem_free(rt->token);
    qv_mem_free(rt->ca_file);
    qv_mem_free(rt);
}

/* ---- handles to nodes ---- */

static struct peer *peer_find(router *rt, const char *name)
{
    for (int i = 0; i < rt->npeers; i++)
        if (strcmp(rt->peers[i].name, name) == 0)
            return &rt->peers[i];
    if (rt->npeers == PEERS_MAX)
        return NULL;
    struct peer *p = &rt->peers[rt->npeers++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->nidle = 0;
    return p;
}

/* A handle to node name: an idle one, or a new connection. NULL with msg
 * when the node is not live or cannot be reached. */
qv_db *router_peer_take(router *rt, const char *name, char *msg,
                        size_t msglen)
{
    qv_db *h = NULL;
    pthread_mutex_lock(&rt->lock);
    struct peer *p = peer_find(rt, name);
    if (p && p->nidle > 0)
        h = p->idle[--p->nidle];
    pthread_mutex_unlock(&rt->lock);
    if (h)
        return h;
    char listen[64], err[400], uri[96];
    int rc = node_listen_of(rt->node, name, listen, sizeof listen, err,
                            sizeof err);
    if (rc != 0) {
        snprintf(msg, msglen, "node %s: %.150s", name,
                 rc > 0 ? "not live" : err);
        return NULL;
    }
    snprintf(uri, sizeof uri, "%s://%s", rt->ca_file ? "qvs" : "qv", listen);
    qv_open_options o = {.token = rt->token, .timeout_ms = PEER_TIMEOUT_MS,
                         .tls_ca_file = rt->ca_file};
    if (qv_open(uri, &o, &h) != QV_OK) {
        snprintf(msg, msglen, "node %s: %s", name, qv_errmsg(NULL));
        return NULL;
    }
    return h;
}

/* Give h back; a handle whose call failed on its connection is closed. */
void router_peer_give(router *rt, const char *name, qv_db *h, int broken)
{
    pthread_mutex_lock(&rt->lock);
    struct peer *p = broken ? NULL : peer_find(rt, name);
    if (p && p->nidle < PEER_IDLE_MAX) {
        p->idle[p->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&rt->lock);
    qv_close(h);
}

/* Whether a status says the node was not reached or did not answer (the
 * request may or may not have been made there). */
int router_unreachable(qv_status st)
{
    return st == QV_ERR_CONNECTION || st == QV_ERR_TIMEOUT ||
           st == QV_ERR_BUSY || st == QV_ERR_UNAUTHENTICATED;
}

/* ---- one shard ---- */

/* text into msg, with the shard's local collection name local given as
 * the collection's name: a shard's refusal reads as one database's. */
static void as_collection(char *msg, size_t msglen, const char *text,
                          const char *local, const char *name)
{
    const char *at = strstr(text, local);
    if (!at) {
        snprintf(msg, msglen, "%s", text);
        return;
    }
    snprintf(msg, msglen, "%.*s%s%s", (int)(at - text), text, name,
             at + strlen(local));
}

/* A call on a shard's local collection, on h; result is the call's. */
typedef qv_status (*shard_fn)(qv_db *h, const char *local, void *arg,
                              void *result);

/* Whether replica r of shard s has caught up, as far as this node
 * knows: placed at creation or marked so by the coordinator, or this
 * node itself once it applied the entry that placed it. */
static int caught_up(const router *rt, const shard_map *m, uint32_t s,
                     uint32_t r)
{
    uint64_t since = m->since[(size_t)s * m->replicas + r];
    return since == 0 ||
           (since != SHARD_UNLOGGED &&
            strcmp(shard_host(m, s, r), node_name(rt->node)) == 0 &&
            node_applied(rt->node) >= since);
}

/* Replica order: the replicas that have caught up first, this node
 * before the others, then the placement's order; replicas still being
 * copied last, with the entry each must have applied before it answers
 * (SHARD_UNLOGGED: it cannot answer yet). */
static void replica_order(const router *rt, const shard_map *m, uint32_t s,
                          const char **order, uint64_t *wait_for)
{
    const char *self = node_name(rt->node);
    uint32_t k = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (uint32_t r = 0; r < m->replicas; r++) {
            int mine = strcmp(shard_host(m, s, r), self) == 0;
            int ready = caught_up(rt, m, s, r);
            if ((pass == 0 && mine && ready) ||
                (pass == 1 && !mine && ready) || (pass == 2 && !ready)) {
                /* 0: ready; else the entry to wait for */
                wait_for[k] = ready ? 0 : m->since[(size_t)s * m->replicas
                                                   + r];
                order[k++] = shard_host(m, s, r);
            }
        }
    }
}

/* fn on one replica of shard s, moving on while replicas are unreachable;
 * msg says why when none answered. */
static qv_status read_shard(router *rt, const shard_map *m, uint32_t s,
                            uint64_t after, shard_fn fn, void *arg,
                            void *result, char *msg, size_t msglen)
{
    const char *order[QV_REPLICAS_MAX];
    uint64_t wait_for[QV_REPLICAS_MAX];
    char local[QV_NAME_MAX + 1], why[QV_REPLICAS_MAX][240];
    replica_order(rt, m, s, order, wait_for);
    shard_local_name(m, s, local);
    for (uint32_t r = 0; r < m->replicas; r++) {
        qv_status st;
        int mine = strcmp(order[r], node_name(rt->node)) == 0;
        if (wait_for[r] == SHARD_UNLOGGED || (mine && wait_for[r])) {
            snprintf(why[r], sizeof why[r], "node %s: still copying the "
                     "shard", order[r]);
            continue;
        }
        if (mine) {
            node_outcome wait;
            if (after && node_wait_applied(rt->node, after, &wait) != QV_OK) {
                snprintf(why[r], sizeof why[r], "node %s: %.150s", order[r],
                         wait.message);
                continue;
            }
            st = fn(rt->db, local, arg, result);
            if (st != QV_OK)
                as_collection(msg, msglen, qv_errmsg(rt->db), local,
                              m->name);
            return st;
        }
        qv_db *h = router_peer_take(rt, order[r], why[r], sizeof why[r]);
        if (!h)
            continue;
        /* a replica being copied answers once its copy is made */
        qv_read_after(h, after > wait_for[r] ? after : wait_for[r]);
        st = fn(h, local, arg, result);
        int moved_on = router_unreachable(st);
        if (moved_on)
            snprintf(why[r], sizeof why[r], "node %s: %s", order[r],
                     qv_errmsg(h));
        else if (st != QV_OK)
            as_collection(msg, msglen, qv_errmsg(h), local, m->name);
        router_peer_give(rt, order[r], h, moved_on);
        if (!moved_on)
            return st;
    }
    int at = snprintf(msg, msglen, "shard %u of '%s' has no replica that "
                      "answered:", s, m->name);
    for (uint32_t r = 0; r < m->replicas && at > 0 && (size_t)at < msglen;
         r++)
        at += snprintf(msg + at, msglen - (size_t)at, "%s %s",
                       r ? ";" : "", why[r]);
    return QV_ERR_CONNECTION;
}

/*
 * fn on the first replica of shard s that can be reached: this node
 * first (through its own listener, so that the write goes through the
 * log as any node's does). A write that failed once sent is not sent
 * again. *token grows to the write's token.
 */
static qv_status write_shard(router *rt, const shard_map *m, uint32_t s,
                             shard_fn fn, void *arg, void *result,
                             uint64_t *token, char *msg, size_t msglen)
{
    const char *order[QV_REPLICAS_MAX];
    uint64_t wait_for[QV_REPLICAS_MAX];
    char local[QV_NAME_MAX + 1], why[QV_REPLICAS_MAX][240];
    replica_order(rt, m, s, order, wait_for);
    shard_local_name(m, s, local);
    for (uint32_t r = 0; r < m->replicas; r++) {
        if (wait_for[r] == SHARD_UNLOGGED) {
            snprintf(why[r], sizeof why[r], "node %s: not yet placed",
                     order[r]);
            continue;
        }
        qv_db *h = router_peer_take(rt, order[r], why[r], sizeof why[r]);
        if (!h)
            continue;
        /* the node applies it once it has read the log as far as this
         * one: a shard made before (which this node saw) is made there */
        qv_read_after(h, node_applied(rt->node));
        qv_status st = fn(h, local, arg, result);
        uint64_t t = 0;
        if (router_unreachable(st))
            snprintf(msg, msglen, "shard %u of '%s' (node %s): %s", s,
                     m->name, order[r], qv_errmsg(h));
        else if (st != QV_OK)
            as_collection(msg, msglen, qv_errmsg(h), local, m->name);
        else if (qv_write_token(h, &t) == QV_OK && t > *token)
            *token = t;
        router_peer_give(rt, order[r], h, router_unreachable(st));
        return st;
    }
    int at = snprintf(msg, msglen, "shard %u of '%s' has no replica that "
                      "can be reached, nothing was written to it:", s,
                      m->name);
    for (uint32_t r = 0; r < m->replicas && at > 0 && (size_t)at < msglen;
         r++)
        at += snprintf(msg + at, msglen - (size_t)at, "%s %s",
                       r ? ";" : "", why[r]);
    return QV_ERR_CONNECTION;
}

/* ---- every shard, side by side ---- */

struct fanout {
    router *rt;
    const shard_map *m;
    uint64_t after;
    shard_fn fn;
    void *arg;
    void **results;         /* per shard */
    qv_status *status;      /* per shard */
    char (*msg)[640];       /* per shard */
    atomic_uint next;
};

static void *fanout_worker(void *arg)
{
    struct fanout *f = arg;
    uint32_t s;
    while ((s = atomic_fetch_add(&f->next, 1)) < f->m->shards)
        f->status[s] = read_shard(f->rt, f->m, s, f->after, f->fn, f->arg,
                                  f->results[s], f->msg[s],
                                  sizeof f->msg[s]);
    return NULL;
}

/*
 * The outcome of every shard's read: the first failure, in shard order.
 * With missing (partial results), a shard that no replica answered for
 * is marked there instead of failing, unless no shard answered at all:
 * an empty answer would then read as an empty collection.
 */
static qv_status shards_outcome(const struct fanout *f, uint8_t *missing,
                                char *msg, size_t msglen)
{
    uint32_t answered = 0, first_missing = UINT32_MAX;
    for (uint32_t s = 0; s < f->m->shards; s++) {
        qv_status st = f->status[s];
        if (st == QV_OK) {
            answered++;
        } else if (missing && router_unreachable(st)) {
            missing[s] = 1;
            if (first_missing == UINT32_MAX)
                first_missing = s;
        } else {
            snprintf(msg, msglen, "%s", f->msg[s]);
            return st;
        }
    }
    if (answered > 0 || first_missing == UINT32_MAX)
        return QV_OK;
    snprintf(msg, msglen, "%s", f->msg[first_missing]);
    return f->status[first_missing];
}

/* fn on every shard (a replica each); the first failure in msg. With
 * missing (one per shard, 0), shards no replica answered for are
 * marked 1 there and are no failure (shards_outcome). */
static qv_status read_every_shard(router *rt, const shard_map *m,
                                  uint64_t after, shard_fn fn, void *arg,
                                  void **results, uint8_t *missing,
                                  char *msg, size_t msglen)
{
    struct fanout f = {rt, m, after, fn, arg, results, NULL, NULL, 0};
    f.status = qv_calloc(m->shards, sizeof *f.status);
    f.msg = qv_calloc(m->shards, sizeof *f.msg);
    pthread_t tids[FANOUT_THREADS];
    int started = 0;
    qv_status st = QV_ERR_NOMEM;
    if (!f.status || !f.msg) {
        snprintf(msg, msglen, "out of memory");
        goto done;
    }
    uint32_t want = m->shards < FANOUT_THREADS ? m->shards : FANOUT_THREADS;
    for (uint32_t i = 1; i < want; i++)
        if (pthread_create(&tids[started], NULL, fanout_worker, &f) == 0)
            started++;
    fanout_worker(&f);   /* this thread is a worker too */
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    st = shards_outcome(&f, missing, msg, msglen);
done:
    qv_mem_free(f.status);
    qv_mem_free(f.msg);
    return st;
}

/* fn on every shard (a replica each); the first failure in msg. */
static qv_status read_all(router *rt, const shard_map *m, uint64_t after,
                          shard_fn fn, void *arg, void **results, char *msg,
                          size_t msglen)
{
    return read_every_shard(rt, m, after, fn, arg, results, NULL, msg,
                            msglen);
}

/* ---- placement ---- */

/*
 * Placements are cached for MAP_FRESH_MS: a search or a get would
 * otherwise pay a round trip to NATS for a record that changes only at
 * create and drop, and when the coordinator places a lost node's
 * replicas again. This node forgets its copy when it creates or drops
 * the collection itself; other changes reach it within MAP_FRESH_MS. A
 * copy that is older names a lost node (which cannot be reached, so the
 * next replica is asked), or shards of a dropped collection (which fail
 * NOT_FOUND, and the request is asked again: docs/CLUSTER.md).
 */
static int cached_lookup(router *rt, const char *name, int table,
                         shard_map *map)
{
    int found = 0;
    long long now = now_ms();
    pthread_mutex_lock(&rt->maps_lock);
    for (int i = 0; i < rt->nmaps && !found; i++) {
        struct cached_map *c = &rt->maps[i];
        if (strcmp(c->map.name, name) == 0 && c->map.table == table &&
            now - c->read_ms < MAP_FRESH_MS)
            found = shard_map_copy(&c->map, map) == 0;
    }
    pthread_mutex_unlock(&rt->maps_lock);
    return found;
}

/* Forget name's placement (a table's when table is 1); keep map's (when
 * not NULL, of the same kind) in its place. */
static void cache_map_of(router *rt, const char *name, int table,
                         const shard_map *map)
{
    pthread_mutex_lock(&rt->maps_lock);
    for (int i = 0; i < rt->nmaps; i++) {
        if (strcmp(rt->maps[i].map.name, name) == 0 &&
            rt->maps[i].map.table == table) {
            shard_map_release(&rt->maps[i].map);
            rt->maps[i] = rt->maps[--rt->nmaps];
            break;
        }
    }
    /* full: the oldest entry gives way */
    if (map && rt->nmaps == MAPS_CACHED) {
        int oldest = 0;
        for (int i = 1; i < rt->nmaps; i++)
            if (rt->maps[i].read_ms < rt->maps[oldest].read_ms)
                oldest = i;
        shard_map_release(&rt->maps[oldest].map);
        rt->maps[oldest] = rt->maps[--rt->nmaps];
    }
    if (map && shard_map_copy(map, &rt->maps[rt->nmaps].map) == 0)
        rt->maps[rt->nmaps++].read_ms = now_ms();
    pthread_mutex_unlock(&rt->maps_lock);
}

/* A collection's placement: cache_map_of for collections. */
static void cache_map(router *rt, const char *name, const shard_map *map)
{
    cache_map_of(rt, name, 0, map);
}

int router_lookup(router *rt, const char *name, int fresh, shard_map *map,
                  char *msg, size_t msglen)
{
    int found = 0;
    if (strncmp(name, SHARD_PREFIX, strlen(SHARD_PREFIX)) == 0)
        return 0;   /* a shard itself, addressed by a node */
    if (!fresh && cached_lookup(rt, name, 0, map))
        return 1;
    if (shard_map_get(node_placements(rt->node), name, map, &found, msg,
                      msglen) != 0)
        return -1;
    if (found)
        cache_map(rt, name, map);
    return found;
}

/* A write entry of this node's own through the log: the Request's
 * bytes on the subject of the collection. */
void router_log(router *rt, const char *name,
                const Quiver__V1__Request *req, node_outcome *out,
                uint64_t *token)
{
    size_t len = quiver__v1__request__get_packed_size(req);
    uint8_t *bytes = qv_malloc(len ? len : 1);
    char subject[40];
    if (!bytes) {
        *out = (node_outcome){QV_ERR_NOMEM, "out of memory", 0, 0, 0};
        return;
    }
    quiver__v1__request__pack(req, bytes);
    /* the collection's subject, as the server's writes of it use */
    char key[24];
    shard_map_key(name, key);
    snprintf(subject, sizeof subject, "%s.s0", key);
    node_write(rt->node, subject, bytes, len, out, token);
    qv_mem_free(bytes);
}

static qv_status live_nodes(router *rt, char ***names, int *n, char *msg,
                            size_t msglen)
{
    if (node_live(rt->node, names, n, msg, msglen) != 0)
        return QV_ERR_CONNECTION;
    return QV_OK;
}

qv_status router_create(router *rt, const char *name,
                        const qv_collection_config *config, uint64_t *token,
                        char *msg, size_t msglen)
{
    uint64_t count = 0;
    qv_status st = qv_count(rt->db, name, NULL, &count);
    if (st != QV_ERR_NOT_FOUND) {   /* INVALID names it; OK: it exists */
        if (st == QV_OK)
            snprintf(msg, msglen, "collection '%s' already exists", name);
        else
            snprintf(msg, msglen, "%s", qv_errmsg(rt->db));
        return st == QV_OK ? QV_ERR_EXISTS : st;
    }
    if (qv_collection_config_check(rt->db, config) != QV_OK) {
        snprintf(msg, msglen, "%s", qv_errmsg(rt->db));
        return QV_ERR_INVALID;
    }
    uint32_t replicas = config->replicas ? config->replicas : 1;
    char **nodes = NULL;
    int n = 0;
    shard_map map = {0};
    if ((st = live_nodes(rt, &nodes, &n, msg, msglen)) != QV_OK)
        return st;
    if (n < 0 || (uint32_t)n < replicas) {
        snprintf(msg, msglen, "replicas=%u needs %u live nodes; the cluster "
                 "has %d", replicas, replicas, n);
        clog_kv_keys_free(nodes, n);
        return QV_ERR_INVALID;
    }
    int rc = shard_place(name, config->shards, replicas, nodes, n, &map, msg,
                         msglen);
    clog_kv_keys_free(nodes, n);
    if (rc != 0)
        return QV_ERR_INVALID;
    cache_map(rt, name, NULL);
    rc = shard_map_create(node_placements(rt->node), &map, msg, msglen);
    if (rc != 0) {
        if (rc > 0)
            snprintf(msg, msglen, "collection '%s' already exists", name);
        shard_map_release(&map);
        return rc > 0 ? QV_ERR_EXISTS : QV_ERR_CONNECTION;
    }
    Quiver__V1__CollectionConfig cfg = QUIVER__V1__COLLECTION_CONFIG__INIT;
    Quiver__V1__CreateCollection create =
        QUIVER__V1__CREATE_COLLECTION__INIT;
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    char **hosts = qv_calloc((size_t)map.shards * map.replicas,
                             sizeof *hosts);
    node_outcome out = {QV_ERR_NOMEM, "out of memory", 0, 0, 0};
    if (hosts) {
        for (size_t i = 0; i < (size_t)map.shards * map.replicas; i++)
            hosts[i] = map.hosts[i];
        cfg.dim = config->dim;
        cfg.metric = (Quiver__V1__Metric)config->metric;
        cfg.m = config->M;
        cfg.ef_construction = config->ef_construction;
        cfg.codec = (char *)(config->codec ? config->codec : "");
        cfg.train_min = config->train_min;
        cfg.shards = map.shards;
        cfg.replicas = map.replicas;
        cfg.n_placement = (size_t)map.shards * map.replicas;
        cfg.shard_serial = map.serial;
        cfg.placement = hosts;
        create.name = (char *)name;
        create.config = &cfg;
        req.op_case = QUIVER__V1__REQUEST__OP_CREATE_COLLECTION;
        req.create_collection = &create;
        router_log(rt, name, &req, &out, token);
    }
    qv_mem_free(hosts);
    char err[200];
    /* a create the log refused leaves no placement; one of unknown
     * outcome keeps it, since the create may still be applied */
    if (out.status != QV_OK && out.status != QV_ERR_CONNECTION &&
        out.status != QV_ERR_TIMEOUT)
        shard_map_delete(node_placements(rt->node), name, err, sizeof err);
    shard_map_release(&map);
    if (out.status != QV_OK)
        snprintf(msg, msglen, "%s", out.message);
    return out.status;
}

qv_status router_drop(router *rt, const shard_map *map, uint64_t *token,
                      char *msg, size_t msglen)
{
    /* one entry drops every shard of the collection on every node: the
     * name is the shards' common prefix */
    char prefix[QV_NAME_MAX + 1];
    shard_name_prefix(map->name, prefix);
    Quiver__V1__DropCollection drop = QUIVER__V1__DROP_COLLECTION__INIT;
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    drop.name = prefix;
    req.op_case = QUIVER__V1__REQUEST__OP_DROP_COLLECTION;
    req.drop_collection = &drop;
    node_outcome out;
    cache_map(rt, map->name, NULL);
    router_log(rt, map->name, &req, &out, token);
    if (out.status != QV_OK) {
        snprintf(msg, msglen, "%s", out.message);
        return out.status;
    }
    int rc = shard_map_delete(node_placements(rt->node), map->name, msg,
                              msglen);
    cache_map(rt, map->name, NULL);
    return rc == 0 ? QV_OK : QV_ERR_CONNECTION;
}

/* ---- writes ---- */

struct upsert_part {
    const qv_doc **docs;
    size_t n;
};

static qv_status upsert_fn(qv_db *h, const char *local, void *arg,
                           void *result)
{
    (void)result;
    struct upsert_part *p = arg;
    qv_doc *docs = qv_malloc((p->n ? p->n : 1) * sizeof *docs);
    if (!docs)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < p->n; i++)
        docs[i] = *p->docs[i];
    qv_status st = qv_upsert(h, local, docs, p->n);
    qv_mem_free(docs);
    return st;
}

qv_status router_upsert(router *rt, const shard_map *map, const qv_doc *docs,
                        size_t n, uint64_t *token, char *msg, size_t msglen)
{
    for (size_t i = 0; i < n; i++) {
        if (!docs[i].id) {
            snprintf(msg, msglen, "document %zu: id is NULL", i);
            return QV_ERR_INVALID;
        }
    }
    const qv_doc **order = qv_malloc((n ? n : 1) * sizeof *order);
    uint32_t *shard_of = qv_malloc((n ? n : 1) * sizeof *shard_of);
    qv_status st = QV_OK;
    size_t written = 0;
    if (!order || !shard_of) {
        snprintf(msg, msglen, "out of memory");
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        shard_of[i] = shard_of_id(docs[i].id, map->shards);
    /* shard after shard, the documents of each in the order given (a
     * later one of an id wins, as in one upsert) */
    for (uint32_t s = 0; s < map->shards && st == QV_OK; s++) {
        struct upsert_part part = {order, 0};
        for (size_t i = 0; i < n; i++)
            if (shard_of[i] == s)
                order[part.n++] = &docs[i];
        if (part.n == 0)
            continue;
        st = write_shard(rt, map, s, upsert_fn, &part, NULL, token, msg,
                         msglen);
        if (st == QV_OK)
            written += part.n;
    }
    if (st != QV_OK && written > 0) {
        size_t at = strlen(msg);
        snprintf(msg + at, msglen - at, " (the %zu documents of the shards "
                 "before it were written)", written);
    }
done:
    qv_mem_free(order);
    qv_mem_free(shard_of);
    return st;
}

static qv_status delete_fn(qv_db *h, const char *local, void *arg,
                           void *result)
{
    (void)result;
    return qv_delete(h, local, arg);
}

qv_status router_delete(router *rt, const shard_map *map, const char *id,
                        uint64_t *token, char *msg, size_t msglen)
{
    if (!id) {
        snprintf(msg, msglen, "id is NULL");
        return QV_ERR_INVALID;
    }
    return write_shard(rt, map, shard_of_id(id, map->shards), delete_fn,
                       (void *)id, NULL, token, msg, msglen);
}

/* ---- reads ---- */

static qv_status get_fn(qv_db *h, const char *local, void *arg,
                        void *result)
{
    return qv_get(h, local, arg, result);
}

qv_status router_get(router *rt, const shard_map *map, const char *id,
                     uint64_t after, qv_record **rec, char *msg,
                     size_t msglen)
{
    if (!id) {
        snprintf(msg, msglen, "id is NULL");
        return QV_ERR_INVALID;
    }
    return read_shard(rt, map, shard_of_id(id, map->shards), after, get_fn,
                      (void *)id, rec, msg, msglen);
}

static qv_status count_fn(qv_db *h, const char *local, void *arg,
                          void *result)
{
    return qv_count(h, local, arg, result);
}

qv_status router_count(router *rt, const shard_map *map, const char *filter,
                       uint64_t after, uint64_t *count, char *msg,
                       size_t msglen)
{
    uint64_t *counts = qv_calloc(map->shards, sizeof *counts);
    void **results = qv_calloc(map->shards, sizeof *results);
    qv_status st = QV_ERR_NOMEM;
    snprintf(msg, msglen, "out of memory");
    if (counts && results) {
        for (uint32_t s = 0; s < map->shards; s++)
            results[s] = &counts[s];
        st = read_all(rt, map, after, count_fn, (void *)filter, results, msg,
                      msglen);
    }
    if (st == QV_OK) {
        *count = 0;
        for (uint32_t s = 0; s < map->shards; s++)
            *count += counts[s];
    }
    qv_mem_free(counts);
    qv_mem_free(results);
    return st;
}

static qv_status describe_fn(qv_db *h, const char *local, void *arg,
                             void *result)
{
    (void)arg;
    return qv_describe_collection(h, local, result);
}

qv_status router_describe(router *rt, const shard_map *map, uint64_t after,
                          qv_collection_info *info, char *msg,
                          size_t msglen)
{
    qv_collection_info *each = qv_calloc(map->shards, sizeof *each);
    void **results = qv_calloc(map->shards, sizeof *results);
    qv_status st = QV_ERR_NOMEM;
    snprintf(msg, msglen, "out of memory");
    if (each && results) {
        for (uint32_t s = 0; s < map->shards; s++)
            results[s] = &each[s];
        st = read_all(rt, map, after, describe_fn, NULL, results, msg,
                      msglen);
    }
    if (st == QV_OK) {
        *info = each[0];
        snprintf(info->name, sizeof info->name, "%s", map->name);
        info->count = info->disk_bytes = info->memory_bytes = 0;
        for (uint32_t s = 0; s < map->shards; s++) {
            info->count += each[s].count;
            info->disk_bytes += each[s].disk_bytes;
            info->memory_bytes += each[s].memory_bytes;
            info->codec_trained = info->codec_trained && each[s].codec_trained;
        }
        info->shards = map->shards;
        info->replicas = map->replicas;
    }
    qv_mem_free(each);
    qv_mem_free(results);
    return st;
}

qv_status router_list(router *rt, uint64_t after, qv_collection_info **infos,
                      size_t *n, char *msg, size_t msglen)
{
    shard_map *maps = NULL;
    int count = 0;
    *infos = NULL;
    *n = 0;
    if (shard_maps_all(node_placements(rt->node), 0, &maps, &count, msg,
                       msglen) != 0)
        return QV_ERR_CONNECTION;
    qv_collection_info *out = qv_calloc((size_t)count + 1, sizeof *out);
    qv_status st = out ? QV_OK : QV_ERR_NOMEM;
    for (int i = 0; i < count && st == QV_OK; i++)
        st = router_describe(rt, &maps[i], after, &out[i], msg, msglen);
    shard_maps_release(maps, count);
    if (st != QV_OK) {
        qv_mem_free(out);
        return st;
    }
    *infos = out;
    *n = (size_t)count;
    return QV_OK;
}

/* ---- results gathered from every shard ---- */

struct router_result {
    qv_hits hits;            /* router_search */
    qv_page page;            /* router_scan */
    qv_batch_hits batch;     /* router_search_batch */
    char *explain;           /* with explain: every shard's, as JSON */
    void **parts;            /* per shard, the shard's result: qv_free;
                                NULL for a missing shard */
    uint32_t nparts;
    uint32_t *missing;       /* with partial: the shards no replica
                                answered for, ascending */
    size_t nmissing;
};

/* A result with room for a part per shard, and the array read_all fills
 * (results[s] = &parts[s]); NULL when out of memory. */
static router_result *result_new(const shard_map *m, void ***results)
{
    router_result *rr = qv_calloc(1, sizeof *rr);
    *results = qv_calloc(m->shards, sizeof **results);
    if (rr && *results && (rr->parts = qv_calloc(m->shards,
                                                 sizeof *rr->parts))) {
        rr->nparts = m->shards;
        for (uint32_t s = 0; s < m->shards; s++)
            (*results)[s] = &rr->parts[s];
        return rr;
    }
    router_result_free(rr);
    qv_mem_free(*results);
    *results = NULL;
    return NULL;
}

const qv_hits *router_result_hits(const router_result *rr)
{
    return &rr->hits;
}

const qv_page *router_result_page(const router_result *rr)
{
    return &rr->page;
}

const qv_batch_hits *router_result_batch(const router_result *rr)
{
    return &rr->batch;
}

void router_result_free(router_result *rr)
{
    if (!rr)
        return;
    for (uint32_t s = 0; s < rr->nparts; s++)
        qv_free(rr->parts[s]);
    qv_mem_free(rr->parts);
    qv_mem_free(rr->hits.hits);
    qv_mem_free(rr->page.records);
    for (size_t q = 0; rr->batch.results && q < rr->batch.count; q++)
        qv_mem_free(rr->batch.results[q].hits);
    qv_mem_free(rr->batch.results);
    qv_mem_free(rr->explain);
    qv_mem_free(rr->missing);
    qv_mem_free(rr);
}

/* ---- search ---- */

struct search_args {
    const float *queries;
    size_t nq;               /* 0: one query, qv_search */
    uint32_t dim;
    const qv_search_options *options;
};

static qv_status search_fn(qv_db *h, const char *local, void *arg,
                           void *result)
{
    struct search_args *a = arg;
    if (a->nq == 0)
        return qv_search(h, local, a->queries, a->dim, a->options, result);
    return qv_search_batch(h, local, a->queries, a->nq, a->dim, a->options,
                           result);
}

/* Nearest first; equal distances by id, so that the merge is the same
 * whichever replicas answered. */
static int by_distance(const void *a, const void *b)
{
    const qv_hit *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* The k nearest of the shards' lists into out (hits from the parts),
 * naming rr's missing shards; a missing shard's list is NULL. */
static int merge_hits(const router_result *rr, const qv_hits *const *lists,
                      uint32_t k, qv_hits *out)
{
    size_t total = 0;
    for (uint32_t s = 0; s < rr->nparts; s++)
        total += lists[s] ? lists[s]->count : 0;
    out->hits = qv_calloc(total + 1, sizeof *out->hits);
    if (!out->hits)
        return -1;
    out->count = 0;
    for (uint32_t s = 0; s < rr->nparts; s++)
        for (size_t i = 0; lists[s] && i < lists[s]->count; i++)
            out->hits[out->count++] = lists[s]->hits[i];
    qsort(out->hits, out->count, sizeof *out->hits, by_distance);
    if (out->count > k)   /* every shard gave its k nearest */
        out->count = k;
    out->missing_count = rr->nmissing;
    out->missing = rr->missing;
    return 0;
}

/* Every shard's explain as {"shards": [{"shard": s, ...its own...}]};
 * a missing shard's is {"shard": s, "missing": true}. */
static int merge_explains(router_result *rr)
{
    json_t *shards = json_array();
    for (uint32_t s = 0; shards && s < rr->nparts; s++) {
        const qv_hits *h = rr->parts[s];
        json_t *one = h && h->explain ? json_loads(h->explain, 0, NULL)
                                      : NULL;
        if (!one)
            one = h ? json_object() : json_pack("{s:b}", "missing", 1);
        json_object_set_new(one, "shard", json_integer(s));
        json_array_append_new(shards, one);
    }
    json_t *o = shards ? json_pack("{s:o}", "shards", shards) : NULL;
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    rr->explain = text ? qv_strndup(text, strlen(text)) : NULL;
    qv_json_free(text);
    return rr->explain ? 0 : -1;
}

/* rr->missing: the shards marked in missing (one flag per shard). */
static int list_missing(router_result *rr, const uint8_t *missing)
{
    for (uint32_t s = 0; s < rr->nparts; s++)
        rr->nmissing += missing[s];
    if (rr->nmissing == 0)
        return 0;
    rr->missing = qv_calloc(rr->nmissing, sizeof *rr->missing);
    if (!rr->missing)
        return -1;
    for (uint32_t s = 0, at = 0; s < rr->nparts; s++)
        if (missing[s])
            rr->missing[at++] = s;
    return 0;
}

/* Every shard's search into a result; with options->partial, shards no
 * replica answered for are listed in its missing instead of failing. */
static qv_status search_all(router *rt, const shard_map *map,
                            struct search_args *a, uint64_t after,
                            router_result **out, char *msg, size_t msglen)
{
    void **results = NULL;
    router_result *rr = result_new(map, &results);
    uint8_t *missing = a->options->partial
                           ? qv_calloc(map->shards, sizeof *missing)
                           : NULL;
    qv_status st = QV_ERR_NOMEM;
    *out = NULL;
    snprintf(msg, msglen, "out of memory");
    if (rr && (missing || !a->options->partial))
        st = read_every_shard(rt, map, after, search_fn, a, results, missing,
                              msg, msglen);
    if (st == QV_OK && missing && list_missing(rr, missing) != 0) {
        snprintf(msg, msglen, "out of memory");
        st = QV_ERR_NOMEM;
    }
    qv_mem_free(results);
    qv_mem_free(missing);
    if (st != QV_OK) {
        router_result_free(rr);
        return st;
    }
    *out = rr;
    return QV_OK;
}

qv_status router_search(router *rt, const shard_map *map, const float *query,
                        uint32_t dim, const qv_search_options *options,
                        uint64_t after, router_result **out, char *msg,
                        size_t msglen)
{
    struct search_args a = {query, 0, dim, options};
    router_result *rr;
    qv_status st = search_all(rt, map, &a, after, &rr, msg, msglen);
    if (st != QV_OK)
        return st;
    if (merge_hits(rr, (const qv_hits *const *)rr->parts, options->k,
                   &rr->hits) != 0 ||
        (options->explain && merge_explains(rr) != 0)) {
        router_result_free(rr);
        snprintf(msg, msglen, "out of memory");
        return QV_ERR_NOMEM;
    }
    rr->hits.explain = rr->explain;
    *out = rr;
    return QV_OK;
}

qv_status router_search_batch(router *rt, const shard_map *map,
                              const float *queries, size_t nq, uint32_t dim,
                              const qv_search_options *options,
                              uint64_t after, router_result **out, char *msg,
                              size_t msglen)
{
    struct search_args a = {queries, nq, dim, options};
    router_result *rr;
    qv_status st = search_all(rt, map, &a, after, &rr, msg, msglen);
    if (st != QV_OK)
        return st;
    const qv_hits **lists = qv_calloc(rr->nparts, sizeof *lists);
    rr->batch.results = qv_calloc(nq, sizeof *rr->batch.results);
    int rc = lists && rr->batch.results ? 0 : -1;
    for (size_t q = 0; rc == 0 && q < nq; q++) {
        for (uint32_t s = 0; s < rr->nparts; s++) {
            const qv_batch_hits *part = rr->parts[s];
            lists[s] = part ? &part->results[q] : NULL;
        }
        rc = merge_hits(rr, lists, options->k, &rr->batch.results[q]);
        if (rc == 0)
            rr->batch.count = q + 1;
    }
    qv_mem_free(lists);
    if (rc != 0) {
        router_result_free(rr);
        snprintf(msg, msglen, "out of memory");
        return QV_ERR_NOMEM;
    }
    *out = rr;
    return QV_OK;
}

/* ---- scan ---- */

struct scan_args {
    const char *filter, *after;
    uint32_t limit;
};

static qv_status scan_fn(qv_db *h, const char *local, void *arg,
                         void *result)
{
    struct scan_args *a = arg;
    return qv_scan_where(h, local, a->filter, a->after, a->limit, result);
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const qv_record *)a)->id, ((const qv_record *)b)->id);
}

qv_status router_scan(router *rt, const shard_map *map, const char *filter,
                      const char *after, uint32_t limit, uint64_t after_token,
                      router_result **out, char *msg, size_t msglen)
{
    struct scan_args a = {filter, after, limit};
    void **results = NULL;
    router_result *rr = result_new(map, &results);
    qv_status st = QV_ERR_NOMEM;
    *out = NULL;
    snprintf(msg, msglen, "out of memory");
    if (rr)
        st = read_all(rt, map, after_token, scan_fn, &a, results, msg,
                      msglen);
    qv_mem_free(results);
    size_t total = 0;
    int more = 0;
    for (uint32_t s = 0; st == QV_OK && s < rr->nparts; s++) {
        const qv_page *p = rr->parts[s];
        total += p->count;
        more |= p->next != NULL;
    }
    if (st == QV_OK &&
        !(rr->page.records = qv_calloc(total + 1, sizeof *rr->page.records)))
        st = QV_ERR_NOMEM;
    if (st != QV_OK) {
        router_result_free(rr);
        return st;
    }
    /* every shard's first matches after the cursor, in one id order: the
     * first limit of them are the page; the last one is the next cursor */
    for (uint32_t s = 0; s < rr->nparts; s++) {
        const qv_page *p = rr->parts[s];
        for (size_t i = 0; i < p->count; i++)
            rr->page.records[rr->page.count++] = p->records[i];
    }
    qsort(rr->page.records, rr->page.count, sizeof *rr->page.records, by_id);
    if (rr->page.count > limit) {
        rr->page.count = limit;
        more = 1;
    }
    rr->page.next = more && rr->page.count
                        ? rr->page.records[rr->page.count - 1].id : NULL;
    *out = rr;
    return QV_OK;
}

/* ---- writes to every shard ---- */

struct shard_write {
    router *rt;
    const shard_map *m;
    shard_fn fn;
    void *arg;
    uint64_t *counts;        /* per shard, or NULL */
    uint64_t *tokens;        /* per shard */
    qv_status *status;
    char (*msg)[640];
    atomic_uint next;
};

static void *write_worker(void *arg)
{
    struct shard_write *w = arg;
    uint32_t s;
    while ((s = atomic_fetch_add(&w->next, 1)) < w->m->shards)
        w->status[s] = write_shard(w->rt, w->m, s, w->fn, w->arg,
                                   w->counts ? &w->counts[s] : NULL,
                                   &w->tokens[s], w->msg[s],
                                   sizeof w->msg[s]);
    return NULL;
}

/*
 * fn on every shard, side by side, as writes (write_shard); the counts
 * summed into *count when counted. Every shard is asked even when one
 * refuses; the first refusal is the answer, saying how many shards made
 * the write (a refusal that depends only on the request is the same on
 * every shard).
 */
static qv_status write_all(router *rt, const shard_map *m, shard_fn fn,
                           void *arg, uint64_t *count, uint64_t *token,
                           char *msg, size_t msglen)
{
    struct shard_write w = {rt, m, fn, arg, NULL, NULL, NULL, NULL, 0};
    w.counts = qv_calloc(m->shards, sizeof *w.counts);
    w.tokens = qv_calloc(m->shards, sizeof *w.tokens);
    w.status = qv_calloc(m->shards, sizeof *w.status);
    w.msg = qv_calloc(m->shards, sizeof *w.msg);
    qv_status st = QV_ERR_NOMEM;
    snprintf(msg, msglen, "out of memory");
    if (w.counts && w.tokens && w.status && w.msg) {
        pthread_t tids[FANOUT_THREADS];
        int started = 0;
        uint32_t want = m->shards < FANOUT_THREADS ? m->shards
                                                   : FANOUT_THREADS;
        for (uint32_t i = 1; i < want; i++)
            if (pthread_create(&tids[started], NULL, write_worker, &w) == 0)
                started++;
        write_worker(&w);
        for (int i = 0; i < started; i++)
            pthread_join(tids[i], NULL);
        st = QV_OK;
        uint32_t made = 0;
        for (uint32_t s = 0; s < m->shards; s++) {
            made += w.status[s] == QV_OK;
            if (w.tokens[s] > *token)
                *token = w.tokens[s];
            if (count)
                *count += w.counts[s];
            if (st == QV_OK && w.status[s] != QV_OK) {
                st = w.status[s];
                snprintf(msg, msglen, "%s", w.msg[s]);
            }
        }
        if (st != QV_OK && made > 0) {
            size_t at = strlen(msg);
            snprintf(msg + at, msglen - at, " (%u of the %u shards made "
                     "it)", made, m->shards);
        }
    }
    qv_mem_free(w.counts);
    qv_mem_free(w.tokens);
    qv_mem_free(w.status);
    qv_mem_free(w.msg);
    return st;
}

static qv_status delete_where_fn(qv_db *h, const char *local, void *arg,
                                 void *result)
{
    uint64_t n = 0;
    qv_status st = qv_delete_where(h, local, arg, &n);
    *(uint64_t *)result = n;
    return st;
}

qv_status router_delete_where(router *rt, const shard_map *map,
                              const char *filter, uint64_t *deleted,
                              uint64_t *token, char *msg, size_t msglen)
{
    *deleted = 0;
    return write_all(rt, map, delete_where_fn, (void *)filter, deleted,
                     token, msg, msglen);
}

struct index_args {
    const char *field;
    qv_index_type type;
    int drop;
};

static qv_status index_fn(qv_db *h, const char *local, void *arg,
                          void *result)
{
    struct index_args *a = arg;
    (void)result;
    return a->drop ? qv_drop_index(h, local, a->field)
                   : qv_create_index(h, local, a->field, a->type);
}

qv_status router_index(router *rt, const shard_map *map, const char *field,
                       qv_index_type type, int drop, uint64_t *token,
                       char *msg, size_t msglen)
{
    struct index_args a = {field, type, drop};
    return write_all(rt, map, index_fn, &a, NULL, token, msg, msglen);
}

static qv_status train_fn(qv_db *h, const char *local, void *arg,
                          void *result)
{
    (void)arg;
    (void)result;
    return qv_train(h, local);
}

qv_status router_train(router *rt, const shard_map *map, uint64_t *token,
                       char *msg, size_t msglen)
{
    return write_all(rt, map, train_fn, NULL, NULL, token, msg, msglen);
}

static qv_status list_indexes_fn(qv_db *h, const char *local, void *arg,
                                 void *result)
{
    (void)arg;
    struct { qv_index_info *list; size_t n; } *out = result;
    return qv_list_indexes(h, local, &out->list, &out->n);
}

qv_status router_list_indexes(router *rt, const shard_map *map,
                              uint64_t after, qv_index_info **list, size_t *n,
                              char *msg, size_t msglen)
{
    /* every shard has the same indexes (made on all of them): shard 0's */
    struct { qv_index_info *list; size_t n; } out = {NULL, 0};
    qv_status st = read_shard(rt, map, 0, after, list_indexes_fn, NULL, &out,
                              msg, msglen);
    if (st == QV_OK) {
        *list = out.list;
        *n = out.n;
    }
    return st;
}

cluster_node *router_node(router *rt)
{
    return rt->node;
}

qv_db *router_db(router *rt)
{
    return rt->db;
}

/* ---- for table_router.c: sharded tables ---- */

int router_table_lookup(router *rt, const char *name, int fresh,
                        shard_map *map, char *msg, size_t msglen)
{
    int found = 0;
    if (strncmp(name, SHARD_PREFIX, strlen(SHARD_PREFIX)) == 0)
        return 0;   /* a shard itself, addressed by a node */
    if (!fresh && cached_lookup(rt, name, 1, map))
        return 1;
    if (shard_table_map_get(node_placements(rt->node), name, map, &found,
                            msg, msglen) != 0)
        return -1;
    if (found)
        cache_map_of(rt, name, 1, map);
    return found;
}

void router_forget_table(router *rt, const char *name)
{
    cache_map_of(rt, name, 1, NULL);
}

qv_status router_read_shard(router *rt, const shard_map *m, uint32_t s,
                            uint64_t after, router_shard_fn fn, void *arg,
                            void *result, char *msg, size_t msglen)
{
    return read_shard(rt, m, s, after, fn, arg, result, msg, msglen);
}

qv_status router_write_shard(router *rt, const shard_map *m, uint32_t s,
                             router_shard_fn fn, void *arg, void *result,
                             uint64_t *token, char *msg, size_t msglen)
{
    return write_shard(rt, m, s, fn, arg, result, token, msg, msglen);
}

qv_status router_read_all(router *rt, const shard_map *m, uint64_t after,
                          router_shard_fn fn, void *arg, void **results,
                          char *msg, size_t msglen)
{
    return read_all(rt, m, after, fn, arg, results, msg, msglen);
}
