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

#include "common/alloc.h"
#include "wire/quiver.pb-c.h"

#define PEER_IDLE_MAX 8        /* idle handles kept per node */
#define PEER_TIMEOUT_MS 10000  /* a peer's connect and answer */
#define FANOUT_THREADS 16
#define PEERS_MAX 256

struct peer {
    char name[SHARD_NODE_MAX];
    qv_db *idle[PEER_IDLE_MAX];
    int nidle;
};

struct router {
    cluster_node *node;
    qv_db *db;
    char *token;
    char *ca_file;
    pthread_mutex_t lock;      /* peers */
    struct peer peers[PEERS_MAX];
    int npeers;
};

router *router_new(cluster_node *node, qv_db *db, const char *token,
                   const char *ca_file)
{
    router *rt = qv_calloc(1, sizeof *rt);
    if (!rt)
        return NULL;
    rt->node = node;
    rt->db = db;
    rt->token = token ? qv_strndup(token, strlen(token)) : NULL;
    rt->ca_file = ca_file ? qv_strndup(ca_file, strlen(ca_file)) : NULL;
    if ((token && !rt->token) || (ca_file && !rt->ca_file)) {
        router_free(rt);
        return NULL;
    }
    pthread_mutex_init(&rt->lock, NULL);
    return rt;
}

void router_free(router *rt)
{
    if (!rt)
        return;
    for (int i = 0; i < rt->npeers; i++)
        for (int j = 0; j < rt->peers[i].nidle; j++)
            qv_close(rt->peers[i].idle[j]);
    pthread_mutex_destroy(&rt->lock);
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
static qv_db *peer_take(router *rt, const char *name, char *msg,
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
static void peer_give(router *rt, const char *name, qv_db *h, int broken)
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
static int unreachable(qv_status st)
{
    return st == QV_ERR_CONNECTION || st == QV_ERR_TIMEOUT ||
           st == QV_ERR_BUSY || st == QV_ERR_UNAUTHENTICATED;
}

/* ---- one shard ---- */

/* A call on a shard's local collection, on h; result is the call's. */
typedef qv_status (*shard_fn)(qv_db *h, const char *local, void *arg,
                              void *result);

/* Replica order: this node first when it holds the shard, then the
 * placement's order. */
static void replica_order(const router *rt, const shard_map *m, uint32_t s,
                          const char **order)
{
    const char *self = node_name(rt->node);
    uint32_t k = 0;
    if (shard_map_holds(m, s, self))
        order[k++] = self;
    for (uint32_t r = 0; r < m->replicas; r++)
        if (strcmp(shard_host(m, s, r), self) != 0)
            order[k++] = shard_host(m, s, r);
}

/* fn on one replica of shard s, moving on while replicas are unreachable;
 * msg says why when none answered. */
static qv_status read_shard(router *rt, const shard_map *m, uint32_t s,
                            uint64_t after, shard_fn fn, void *arg,
                            void *result, char *msg, size_t msglen)
{
    const char *order[QV_REPLICAS_MAX];
    char local[QV_NAME_MAX + 1], why[QV_REPLICAS_MAX][240];
    replica_order(rt, m, s, order);
    shard_local_name(m->name, s, local);
    for (uint32_t r = 0; r < m->replicas; r++) {
        qv_status st;
        if (strcmp(order[r], node_name(rt->node)) == 0) {
            node_outcome wait;
            if (after && node_wait_applied(rt->node, after, &wait) != QV_OK) {
                snprintf(why[r], sizeof why[r], "node %s: %.150s", order[r],
                         wait.message);
                continue;
            }
            st = fn(rt->db, local, arg, result);
            if (st != QV_OK)
                snprintf(msg, msglen, "%s", qv_errmsg(rt->db));
            return st;
        }
        qv_db *h = peer_take(rt, order[r], why[r], sizeof why[r]);
        if (!h)
            continue;
        qv_read_after(h, after);
        st = fn(h, local, arg, result);
        int moved_on = unreachable(st);
        if (moved_on)
            snprintf(why[r], sizeof why[r], "node %s: %s", order[r],
                     qv_errmsg(h));
        else if (st != QV_OK)
            snprintf(msg, msglen, "%s", qv_errmsg(h));
        peer_give(rt, order[r], h, moved_on);
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
    char local[QV_NAME_MAX + 1], why[QV_REPLICAS_MAX][240];
    replica_order(rt, m, s, order);
    shard_local_name(m->name, s, local);
    for (uint32_t r = 0; r < m->replicas; r++) {
        qv_db *h = peer_take(rt, order[r], why[r], sizeof why[r]);
        if (!h)
            continue;
        qv_status st = fn(h, local, arg, result);
        uint64_t t = 0;
        if (st != QV_OK)
            snprintf(msg, msglen, "shard %u of '%s' (node %s): %s", s,
                     m->name, order[r], qv_errmsg(h));
        else if (qv_write_token(h, &t) == QV_OK && t > *token)
            *token = t;
        peer_give(rt, order[r], h, unreachable(st));
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

/* fn on every shard (a replica each); the first failure in msg. */
static qv_status read_all(router *rt, const shard_map *m, uint64_t after,
                          shard_fn fn, void *arg, void **results, char *msg,
                          size_t msglen)
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
    st = QV_OK;
    for (uint32_t s = 0; s < m->shards && st == QV_OK; s++) {
        st = f.status[s];
        if (st != QV_OK)
            snprintf(msg, msglen, "%s", f.msg[s]);
    }
done:
    qv_mem_free(f.status);
    qv_mem_free(f.msg);
    return st;
}

/* ---- placement ---- */

int router_lookup(router *rt, const char *name, shard_map *map, char *msg,
                  size_t msglen)
{
    int found = 0;
    if (strncmp(name, SHARD_PREFIX, strlen(SHARD_PREFIX)) == 0)
        return 0;   /* a shard itself, addressed by a node */
    if (shard_map_get(node_placements(rt->node), name, map, &found, msg,
                      msglen) != 0)
        return -1;
    return found;
}

/* A write entry of this node's own through the log: the Request's
 * bytes on the subject of the collection. */
static void log_request(router *rt, const char *name,
                        const Quiver__V1__Request *req, node_outcome *out,
                        uint64_t *token)
{
    size_t len = quiver__v1__request__get_packed_size(req);
    uint8_t *bytes = qv_malloc(len ? len : 1);
    char subject[40];
    if (!bytes) {
        *out = (node_outcome){QV_ERR_NOMEM, "out of memory", 0, 0};
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
    node_outcome out = {QV_ERR_NOMEM, "out of memory", 0, 0};
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
        cfg.placement = hosts;
        create.name = (char *)name;
        create.config = &cfg;
        req.op_case = QUIVER__V1__REQUEST__OP_CREATE_COLLECTION;
        req.create_collection = &create;
        log_request(rt, name, &req, &out, token);
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
    char local[QV_NAME_MAX + 1], prefix[QV_NAME_MAX + 1];
    shard_local_name(map->name, 0, local);
    shard_name_split(local, prefix);
    Quiver__V1__DropCollection drop = QUIVER__V1__DROP_COLLECTION__INIT;
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    drop.name = prefix;
    req.op_case = QUIVER__V1__REQUEST__OP_DROP_COLLECTION;
    req.drop_collection = &drop;
    node_outcome out;
    log_request(rt, map->name, &req, &out, token);
    if (out.status != QV_OK) {
        snprintf(msg, msglen, "%s", out.message);
        return out.status;
    }
    if (shard_map_delete(node_placements(rt->node), map->name, msg,
                         msglen) != 0)
        return QV_ERR_CONNECTION;
    return QV_OK;
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
    char **names = NULL;
    int count = 0;
    *infos = NULL;
    *n = 0;
    if (shard_map_names(node_placements(rt->node), &names, &count, msg,
                        msglen) != 0)
        return QV_ERR_CONNECTION;
    qv_collection_info *out = qv_calloc((size_t)count + 1, sizeof *out);
    qv_status st = out ? QV_OK : QV_ERR_NOMEM;
    size_t k = 0;
    for (int i = 0; i < count && st == QV_OK; i++) {
        shard_map map;
        int found = 0;
        if (!names[i][0])
            continue;   /* dropped meanwhile */
        if (shard_map_get(node_placements(rt->node), names[i], &map, &found,
                          msg, msglen) != 0) {
            st = QV_ERR_CONNECTION;
            break;
        }
        if (!found)
            continue;
        st = router_describe(rt, &map, after, &out[k], msg, msglen);
        shard_map_release(&map);
        if (st == QV_OK)
            k++;
    }
    clog_kv_keys_free(names, count);
    if (st != QV_OK) {
        qv_mem_free(out);
        return st;
    }
    *infos = out;
    *n = k;
    return QV_OK;
}

/* ---- search ---- */

struct router_hits {
    qv_hits merged;
    qv_hits **parts;     /* per shard, qv_free */
    uint32_t nparts;
};

struct search_args {
    const float *query;
    uint32_t dim;
    const qv_search_options *options;
};

static qv_status search_fn(qv_db *h, const char *local, void *arg,
                           void *result)
{
    struct search_args *a = arg;
    return qv_search(h, local, a->query, a->dim, a->options, result);
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

qv_status router_search(router *rt, const shard_map *map, const float *query,
                        uint32_t dim, const qv_search_options *options,
                        uint64_t after, router_hits **out, char *msg,
                        size_t msglen)
{
    *out = NULL;
    if (options->explain) {
        snprintf(msg, msglen, "explain of a search across shards is not "
                 "supported yet; explain a shard's search on its node");
        return QV_ERR_UNSUPPORTED;
    }
    router_hits *h = qv_calloc(1, sizeof *h);
    void **results = qv_calloc(map->shards, sizeof *results);
    struct search_args a = {query, dim, options};
    qv_status st = QV_ERR_NOMEM;
    snprintf(msg, msglen, "out of memory");
    if (h && results && (h->parts = qv_calloc(map->shards,
                                              sizeof *h->parts))) {
        h->nparts = map->shards;
        for (uint32_t s = 0; s < map->shards; s++)
            results[s] = &h->parts[s];
        st = read_all(rt, map, after, search_fn, &a, results, msg, msglen);
    }
    qv_mem_free(results);
    size_t total = 0;
    for (uint32_t s = 0; st == QV_OK && s < h->nparts; s++)
        total += h->parts[s] ? h->parts[s]->count : 0;
    if (st == QV_OK &&
        !(h->merged.hits = qv_calloc(total + 1, sizeof *h->merged.hits))) {
        snprintf(msg, msglen, "out of memory");
        st = QV_ERR_NOMEM;
    }
    if (st != QV_OK) {
        router_hits_free(h);
        return st;
    }
    for (uint32_t s = 0; s < h->nparts; s++)
        for (size_t i = 0; h->parts[s] && i < h->parts[s]->count; i++)
            h->merged.hits[h->merged.count++] = h->parts[s]->hits[i];
    qsort(h->merged.hits, h->merged.count, sizeof *h->merged.hits,
          by_distance);
    if (h->merged.count > options->k)   /* every shard checked k */
        h->merged.count = options->k;
    *out = h;
    return QV_OK;
}

const qv_hits *router_hits_of(const router_hits *h)
{
    return &h->merged;
}

void router_hits_free(router_hits *h)
{
    if (!h)
        return;
    for (uint32_t s = 0; s < h->nparts; s++)
        qv_free(h->parts[s]);
    qv_mem_free(h->parts);
    qv_mem_free(h->merged.hits);
    qv_mem_free(h);
}
