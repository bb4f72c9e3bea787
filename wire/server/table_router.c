/*
 * table_router.c - requests on sharded embedding tables (table_router.h).
 *
 * A shard is a local table of the sharded table's whole config (rows,
 * method, seed): a row's initial value is the one the unsharded table
 * would give it, and ids address rows as they would there. The cost is
 * memory: every shard of a dense method (full, int8, ...) holds all rows,
 * so S shards take S times one table's parameters, spread over the nodes
 * (docs/EMBEDDINGS.md "Sharded tables").
 *
 * Shards are reached through router.c (router_read_shard,
 * router_write_shard, router_read_all) like a sharded collection's;
 * this file only splits and reassembles table requests.
 */
#include "wire/server/table_router.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "wire/quiver.pb-c.h"

#define LOOKUP_THREADS 16

/* ---- create and drop ---- */

/* A write entry of this node's own about table name, through the log. */
static void table_log(router *rt, const char *name,
                      const Quiver__V1__Request *req, node_outcome *out,
                      uint64_t *token)
{
    size_t len = quiver__v1__request__get_packed_size(req);
    uint8_t *bytes = qv_malloc(len ? len : 1);
    char key[24], subject[40];
    if (!bytes) {
        *out = (node_outcome){QV_ERR_NOMEM, "out of memory", 0, 0, 0};
        return;
    }
    quiver__v1__request__pack(req, bytes);
    /* the table's subject, as the server's writes of it use */
    shard_table_key(name, key);
    snprintf(subject, sizeof subject, "%s.s0", key);
    node_write(router_node(rt), subject, bytes, len, out, token);
    qv_mem_free(bytes);
}

/* Refused unless name is free for a sharded table: no plain table has
 * it and config is one a table can have. */
static qv_status create_check(router *rt, const char *name,
                              const qv_table_config *config, char *msg,
                              size_t msglen)
{
    qv_db *db = router_db(rt);
    qv_table_info info;
    qv_status st = qv_table_describe(db, name, &info);
    if (st == QV_OK) {
        snprintf(msg, msglen, "table '%s' already exists", name);
        return QV_ERR_EXISTS;
    }
    if (st != QV_ERR_NOT_FOUND) {   /* INVALID names it */
        snprintf(msg, msglen, "%s", qv_errmsg(db));
        return st;
    }
    if (qv_table_config_check(db, config) != QV_OK) {
        snprintf(msg, msglen, "%s", qv_errmsg(db));
        return QV_ERR_INVALID;
    }
    return QV_OK;
}

/* The placement of a new sharded table on the live nodes. */
static qv_status place(router *rt, const char *name,
                       const qv_table_config *config, shard_map *map,
                       char *msg, size_t msglen)
{
    uint32_t replicas = config->replicas ? config->replicas : 1;
    char **nodes = NULL;
    int n = 0;
    if (node_live(router_node(rt), &nodes, &n, msg, msglen) != 0)
        return QV_ERR_CONNECTION;
    qv_status st = QV_OK;
    if (n < 0 || (uint32_t)n < replicas) {
        snprintf(msg, msglen, "replicas=%u needs %u live nodes; the cluster "
                 "has %d", replicas, replicas, n);
        st = QV_ERR_INVALID;
    } else if (shard_place(name, config->shards, replicas, nodes, n, map, msg,
                           msglen) != 0) {
        st = QV_ERR_INVALID;
    }
    clog_kv_keys_free(nodes, n);
    map->table = 1;
    return st;
}

/* Log the create with its placement; *out is its outcome. */
static void log_create(router *rt, const char *name,
                       const qv_table_config *config, const shard_map *map,
                       node_outcome *out, uint64_t *token)
{
    size_t nhosts = (size_t)map->shards * map->replicas;
    char **hosts = qv_calloc(nhosts, sizeof *hosts);
    *out = (node_outcome){QV_ERR_NOMEM, "out of memory", 0, 0, 0};
    if (!hosts)
        return;
    for (size_t i = 0; i < nhosts; i++)
        hosts[i] = (char *)map->hosts[i];
    Quiver__V1__TableConfig cfg = QUIVER__V1__TABLE_CONFIG__INIT;
    cfg.rows = config->rows;
    cfg.dim = config->dim;
    cfg.method = (char *)(config->method ? config->method : "");
    cfg.optimizer = (uint32_t)config->optimizer;
    cfg.learning_rate = config->learning_rate;
    cfg.init = config->init;
    cfg.seed = config->seed;
    cfg.shards = map->shards;
    cfg.replicas = map->replicas;
    cfg.n_placement = nhosts;
    cfg.placement = hosts;
    cfg.shard_serial = map->serial;
    Quiver__V1__TableCreate create = QUIVER__V1__TABLE_CREATE__INIT;
    create.name = (char *)name;
    create.config = &cfg;
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_CREATE;
    req.table_create = &create;
    table_log(rt, name, &req, out, token);
    qv_mem_free(hosts);
}

qv_status table_router_create(router *rt, const char *name,
                              const qv_table_config *config, uint64_t *token,
                              char *msg, size_t msglen)
{
    shard_map map = {0};
    node_outcome out;
    char err[200];
    qv_status st = create_check(rt, name, config, msg, msglen);
    if (st == QV_OK)
        st = place(rt, name, config, &map, msg, msglen);
    if (st != QV_OK)
        goto done;
    router_forget_table(rt, name);
    int rc = shard_map_create(node_placements(router_node(rt)), &map, msg,
                              msglen);
    if (rc != 0) {
        if (rc > 0)
            snprintf(msg, msglen, "table '%s' already exists", name);
        st = rc > 0 ? QV_ERR_EXISTS : QV_ERR_CONNECTION;
        goto done;
    }
    log_create(rt, name, config, &map, &out, token);
    /* a create the log refused leaves no placement; one of unknown
     * outcome keeps it, since the create may still be applied */
    if (out.status != QV_OK && out.status != QV_ERR_CONNECTION &&
        out.status != QV_ERR_TIMEOUT)
        shard_table_map_delete(node_placements(router_node(rt)), name, err,
                               sizeof err);
    st = out.status;
    if (st != QV_OK)
        snprintf(msg, msglen, "%s", out.message);
done:
    shard_map_release(&map);
    return st;
}

qv_status table_router_drop(router *rt, const shard_map *map, uint64_t *token,
                            char *msg, size_t msglen)
{
    /* one entry drops every shard of the table on every node: the name
     * is the shards' common prefix */
    char prefix[QV_NAME_MAX + 1];
    shard_name_prefix(map->name, prefix);
    Quiver__V1__TableDrop drop = QUIVER__V1__TABLE_DROP__INIT;
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    drop.name = prefix;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_DROP;
    req.table_drop = &drop;
    node_outcome out;
    router_forget_table(rt, map->name);
    table_log(rt, map->name, &req, &out, token);
    if (out.status != QV_OK) {
        snprintf(msg, msglen, "%s", out.message);
        return out.status;
    }
    int rc = shard_table_map_delete(node_placements(router_node(rt)),
                                    map->name, msg, msglen);
    router_forget_table(rt, map->name);
    return rc == 0 ? QV_OK : QV_ERR_CONNECTION;
}

/* ---- describe and list ---- */

static qv_status describe_fn(qv_db *h, const char *local, void *arg,
                             void *result)
{
    (void)arg;
    return qv_table_describe(h, local, result);
}

qv_status table_router_describe(router *rt, const shard_map *map,
                                uint64_t after, qv_table_info *info,
                                char *msg, size_t msglen)
{
    qv_table_info *each = qv_calloc(map->shards, sizeof *each);
    void **results = qv_calloc(map->shards, sizeof *results);
    qv_status st = QV_ERR_NOMEM;
    snprintf(msg, msglen, "out of memory");
    if (each && results) {
        for (uint32_t s = 0; s < map->shards; s++)
            results[s] = &each[s];
        st = router_read_all(rt, map, after, describe_fn, NULL, results, msg,
                             msglen);
    }
    if (st == QV_OK) {
        *info = each[0];
        snprintf(info->name, sizeof info->name, "%s", map->name);
        info->param_bytes = info->optimizer_bytes = info->updates = 0;
        for (uint32_t s = 0; s < map->shards; s++) {
            info->param_bytes += each[s].param_bytes;
            info->optimizer_bytes += each[s].optimizer_bytes;
            info->updates += each[s].updates;
        }
        /* the whole table's rows against all the shards' parameters */
        info->ratio = info->param_bytes
                          ? (double)info->rows * info->dim * sizeof(float) /
                                (double)info->param_bytes
                          : 0;
        info->shards = map->shards;
        info->replicas = map->replicas;
    }
    qv_mem_free(each);
    qv_mem_free(results);
    return st;
}

qv_status table_router_list(router *rt, uint64_t after, qv_table_info **infos,
                            size_t *n, char *msg, size_t msglen)
{
    shard_map *maps = NULL;
    int count = 0;
    *infos = NULL;
    *n = 0;
    if (shard_maps_all(node_placements(router_node(rt)), 1, &maps, &count,
                       msg, msglen) != 0)
        return QV_ERR_CONNECTION;
    qv_table_info *out = qv_calloc((size_t)count + 1, sizeof *out);
    qv_status st = out ? QV_OK : QV_ERR_NOMEM;
    for (int i = 0; i < count && st == QV_OK; i++)
        st = table_router_describe(rt, &maps[i], after, &out[i], msg,
                                   msglen);
    shard_maps_release(maps, count);
    if (st != QV_OK) {
        qv_mem_free(out);
        return st;
    }
    *infos = out;
    *n = (size_t)count;
    return QV_OK;
}

/* ---- ids split by shard ---- */

/* The ids of one shard, in the caller's order, and where their rows go. */
struct part {
    uint32_t shard;
    const uint64_t *ids;
    float *rows;             /* n x dim: looked up, or the gradients */
    size_t n;
    size_t first;            /* index of its first id in the sorted ids */
    qv_status status;
    char msg[640];
};

/* ids grouped by shard, stably: sorted[k] = ids[from[k]], and the parts
 * (one per shard with ids, in shard order) point into sorted. */
struct split {
    uint64_t *sorted;
    size_t *from;
    struct part *parts;
    uint32_t nparts;
};

static void split_release(struct split *sp)
{
    qv_mem_free(sp->sorted);
    qv_mem_free(sp->from);
    qv_mem_free(sp->parts);
}

/* 0, or -1 when out of memory (sp released). */
static int split_ids(const shard_map *map, const uint64_t *ids, size_t n,
                     struct split *sp)
{
    size_t *count = qv_calloc((size_t)map->shards + 1, sizeof *count);
    uint32_t *shard = qv_malloc((n ? n : 1) * sizeof *shard);
    memset(sp, 0, sizeof *sp);
    sp->sorted = qv_malloc((n ? n : 1) * sizeof *sp->sorted);
    sp->from = qv_malloc((n ? n : 1) * sizeof *sp->from);
    sp->parts = qv_calloc(map->shards, sizeof *sp->parts);
    int rc = -1;
    if (!count || !shard || !sp->sorted || !sp->from || !sp->parts)
        goto done;
    for (size_t i = 0; i < n; i++) {
        shard[i] = shard_of_row(ids[i], map->shards);
        count[shard[i] + 1]++;
    }
    for (uint32_t s = 0; s < map->shards; s++) {
        if (count[s + 1] > 0)
            sp->parts[sp->nparts++] = (struct part){
                .shard = s, .ids = sp->sorted + count[s], .n = count[s + 1],
                .first = count[s]};
        count[s + 1] += count[s];   /* now: where shard s+1's ids start */
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = count[shard[i]]++;
        sp->sorted[k] = ids[i];
        sp->from[k] = i;
    }
    rc = 0;
done:
    qv_mem_free(count);
    qv_mem_free(shard);
    if (rc != 0)
        split_release(sp);
    return rc;
}

/* ---- lookup ---- */

struct lookup {
    router *rt;
    const shard_map *map;
    uint32_t dim;
    uint64_t after;
    struct split *sp;
    atomic_uint next;
};

static qv_status lookup_fn(qv_db *h, const char *local, void *arg,
                           void *result)
{
    const struct lookup *l = arg;
    struct part *p = result;
    return qv_table_lookup(h, local, p->ids, p->n, l->dim, p->rows);
}

static void *lookup_worker(void *arg)
{
    struct lookup *l = arg;
    uint32_t i;
    while ((i = atomic_fetch_add(&l->next, 1)) < l->sp->nparts) {
        struct part *p = &l->sp->parts[i];
        p->status = router_read_shard(l->rt, l->map, p->shard, l->after,
                                      lookup_fn, l, p, p->msg,
                                      sizeof p->msg);
    }
    return NULL;
}

/* lookup_worker on every part, up to LOOKUP_THREADS side by side (this
 * thread one of them). */
static void lookup_parts(struct lookup *l)
{
    pthread_t tids[LOOKUP_THREADS];
    int started = 0;
    uint32_t want = l->sp->nparts < LOOKUP_THREADS ? l->sp->nparts
                                                   : LOOKUP_THREADS;
    for (uint32_t i = 1; i < want; i++)
        if (pthread_create(&tids[started], NULL, lookup_worker, l) == 0)
            started++;
    lookup_worker(l);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
}

qv_status table_router_lookup(router *rt, const shard_map *map,
                              const uint64_t *ids, size_t n, uint32_t dim,
                              uint64_t after, float *out, char *msg,
                              size_t msglen)
{
    struct split sp;
    float *rows = NULL;
    qv_status st = QV_ERR_NOMEM;
    snprintf(msg, msglen, "out of memory");
    if (split_ids(map, ids, n, &sp) != 0)
        return st;
    rows = qv_malloc((n ? n : 1) * (size_t)dim * sizeof *rows);
    if (!rows)
        goto done;
    for (uint32_t i = 0; i < sp.nparts; i++)
        sp.parts[i].rows = rows + sp.parts[i].first * dim;
    struct lookup l = {rt, map, dim, after, &sp, 0};
    lookup_parts(&l);
    st = QV_OK;
    for (uint32_t i = 0; i < sp.nparts && st == QV_OK; i++) {
        st = sp.parts[i].status;
        if (st != QV_OK)
            snprintf(msg, msglen, "%s", sp.parts[i].msg);
    }
    /* back in the caller's order */
    for (size_t k = 0; st == QV_OK && k < n; k++)
        memcpy(out + sp.from[k] * dim, rows + k * dim, dim * sizeof *rows);
done:
    qv_mem_free(rows);
    split_release(&sp);
    return st;
}

/* ---- writes ---- */

struct update_args {
    uint32_t dim;
    const struct part *part;
};

static qv_status update_fn(qv_db *h, const char *local, void *arg,
                           void *result)
{
    (void)result;
    const struct update_args *a = arg;
    return qv_table_update(h, local, a->part->ids, a->part->n, a->dim,
                           a->part->rows);
}

qv_status table_router_update(router *rt, const shard_map *map,
                              const uint64_t *ids, size_t n, uint32_t dim,
                              const float *grads, uint64_t *token, char *msg,
                              size_t msglen)
{
    struct split sp;
    float *sorted = NULL;
    size_t updated = 0;
    qv_status st = QV_ERR_NOMEM;
    snprintf(msg, msglen, "out of memory");
    if (split_ids(map, ids, n, &sp) != 0)
        return st;
    sorted = qv_malloc((n ? n : 1) * (size_t)dim * sizeof *sorted);
    if (!sorted)
        goto done;
    for (size_t k = 0; k < n; k++)
        memcpy(sorted + k * dim, grads + sp.from[k] * dim,
               dim * sizeof *sorted);
    st = QV_OK;
    /* shard after shard, as router_upsert writes a collection's */
    for (uint32_t i = 0; i < sp.nparts && st == QV_OK; i++) {
        struct part *p = &sp.parts[i];
        p->rows = sorted + p->first * dim;
        struct update_args a = {dim, p};
        st = router_write_shard(rt, map, p->shard, update_fn, &a, NULL,
                                token, msg, msglen);
        if (st == QV_OK)
            updated += p->n;
    }
    if (st != QV_OK && updated > 0) {
        size_t at = strlen(msg);
        snprintf(msg + at, msglen - at, " (the %zu ids of the shards before "
                 "it were updated)", updated);
    }
done:
    qv_mem_free(sorted);
    split_release(&sp);
    return st;
}

struct load_args {
    uint64_t first;
    size_t n;
    uint32_t dim;
    const float *rows;
};

static qv_status load_fn(qv_db *h, const char *local, void *arg,
                         void *result)
{
    (void)result;
    const struct load_args *a = arg;
    return qv_table_load(h, local, a->first, a->n, a->dim, a->rows);
}

/*
 * A load names a range of rows, and hashing scatters a range over every
 * shard, one row here and one there: loads of each shard's own rows
 * would be a log entry per row. So every shard loads the whole range, in
 * S entries of the load's size; a shard's copies of other shards' rows
 * are never read (lookups of those ids go to their own shard).
 */
qv_status table_router_load(router *rt, const shard_map *map, uint64_t first,
                            size_t n, uint32_t dim, const float *rows,
                            uint64_t *token, char *msg, size_t msglen)
{
    struct load_args a = {first, n, dim, rows};
    qv_status st = QV_OK;
    uint32_t s;
    for (s = 0; s < map->shards && st == QV_OK; s++)
        st = router_write_shard(rt, map, s, load_fn, &a, NULL, token, msg,
                                msglen);
    if (st != QV_OK && s > 1) {
        size_t at = strlen(msg);
        snprintf(msg + at, msglen - at, " (%u of the %u shards were "
                 "loaded)", s - 1, map->shards);
    }
    return st;
}
