/*
 * placement.c - placement changes (placement.h): the coordinator that
 * places the replicas of a lost node on the others, and the copy a node
 * makes of a shard newly placed on it.
 */
#include "wire/server/placement.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "wire/quiver.pb-c.h"

/* ---- a new replica's copy ---- */

#define COPY_PAGE 256

/* The collection as the source describes it: its settings. */
static qv_status create_like(router *rt, qv_db *h, const char *local)
{
    qv_collection_info info;
    qv_status st = qv_describe_collection(h, local, &info);
    if (st != QV_OK)
        return st;
    qv_collection_config cfg = {.dim = info.dim, .metric = info.metric,
                                .M = info.M,
                                .ef_construction = info.ef_construction,
                                .codec = info.codec,
                                .train_min = info.train_min};
    st = qv_create_collection(router_db(rt), local, &cfg);
    qv_index_info *indexes = NULL;
    size_t n = 0;
    if (st == QV_OK)
        st = qv_list_indexes(h, local, &indexes, &n);
    for (size_t i = 0; st == QV_OK && i < n; i++)
        st = qv_create_index(router_db(rt), local, indexes[i].field,
                             indexes[i].type);
    qv_free(indexes);
    return st;
}

/* Every document of the source's local collection, page by page. */
static qv_status copy_documents(router *rt, qv_db *h, const char *local)
{
    char *after = NULL;
    qv_status st = QV_OK;
    qv_doc *docs = qv_calloc(COPY_PAGE, sizeof *docs);
    if (!docs)
        return QV_ERR_NOMEM;
    for (;;) {
        qv_page *page = NULL;
        st = qv_scan(h, local, after, COPY_PAGE, &page);
        if (st != QV_OK)
            break;
        for (size_t i = 0; i < page->count; i++) {
            const qv_record *r = &page->records[i];
            docs[i] = (qv_doc){r->id, r->vector, r->dim, r->payload};
        }
        if (page->count > 0)
            st = qv_upsert(router_db(rt), local, docs, page->count);
        qv_mem_free(after);
        after = page->next && st == QV_OK
                    ? qv_strndup(page->next, strlen(page->next)) : NULL;
        qv_free(page);
        if (st != QV_OK || !after)
            break;
    }
    qv_mem_free(after);
    qv_mem_free(docs);
    return st;
}

qv_status placement_copy_shard(router *rt, char *const *hosts, size_t nhosts,
                            const char *local, uint64_t seq, char *msg,
                            size_t msglen)
{
    const char *self = node_name(router_node(rt));
    int at = snprintf(msg, msglen, "no node could give a copy of '%s':",
                      local);
    int missing = 0, asked = 0;
    for (size_t i = 0; i < nhosts; i++) {
        if (strcmp(hosts[i], self) == 0)
            continue;
        char why[240];
        qv_db *h = router_peer_take(rt, hosts[i], why, sizeof why);
        qv_status st = QV_ERR_CONNECTION;
        if (h) {
            /* all that was written before the placement changed */
            qv_read_after(h, seq);
            st = create_like(rt, h, local);
            if (st == QV_OK)
                st = copy_documents(rt, h, local);
            snprintf(why, sizeof why, "node %s: %s", hosts[i],
                     st == QV_OK ? "" : qv_errmsg(h)[0] ? qv_errmsg(h)
                                                        : qv_errmsg(router_db(rt)));
            router_peer_give(rt, hosts[i], h, router_unreachable(st));
        }
        if (st == QV_OK)
            return QV_OK;
        asked++;
        missing += st == QV_ERR_NOT_FOUND;
        /* start again from nothing with the next source */
        qv_drop_collection(router_db(rt), local);
        if (at > 0 && (size_t)at < msglen)
            at += snprintf(msg + at, msglen - (size_t)at, " %s;", why);
    }
    /* every source, having applied the change, lacks the shard: the
     * collection was dropped before the change was logged */
    return asked > 0 && missing == asked ? QV_ERR_NOT_FOUND
                                         : QV_ERR_CONNECTION;
}

/* ---- the coordinator ---- */

/*
 * One node at a time (node_coordinate) looks after the placements every
 * COORDINATE_MS: a replica on a node that has left the cluster (its
 * member record lapsed: the grace period) is placed on a live node that
 * does not hold the shard, the fewest replicas first, provided a replica
 * that has caught up remains to copy from; a new replica counts as caught
 * up once its node's record shows it applied the change. Every change is
 * made in the placement bucket first, by compare-and-set (of two racing
 * changes one wins), then logged; a change stored but not yet logged
 * (its coordinator died in between) is logged by the next round.
 */
#define COORDINATE_MS 2000

struct coordinator {
    router *rt;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock;      /* with wake: the pause between rounds */
    pthread_cond_t wake;
};

/* Log the change of shard s's placement to m's version. */
static qv_status log_change(router *rt, const shard_map *m, uint32_t s,
                            uint64_t *seq, char *msg, size_t msglen)
{
    Quiver__V1__CollectionConfig cfg = QUIVER__V1__COLLECTION_CONFIG__INIT;
    Quiver__V1__CreateCollection change = QUIVER__V1__CREATE_COLLECTION__INIT;
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    char *hosts[QV_REPLICAS_MAX];
    for (uint32_t r = 0; r < m->replicas; r++)
        hosts[r] = (char *)shard_host(m, s, r);
    cfg.shards = m->shards;
    cfg.replicas = m->replicas;
    cfg.n_placement = m->replicas;
    cfg.placement = hosts;
    cfg.shard_serial = m->serial;
    cfg.placement_version = m->version;
    cfg.placement_shard = s;
    change.name = (char *)m->name;
    change.config = &cfg;
    req.op_case = QUIVER__V1__REQUEST__OP_CREATE_COLLECTION;
    req.create_collection = &change;
    node_outcome out;
    router_log(rt, m->name, &req, &out, seq);
    /* the entry is in the log once it has a sequence, whether or not this
     * node applied it in time */
    if (*seq == 0)
        snprintf(msg, msglen, "%s", out.message);
    return *seq ? QV_OK : out.status;
}

static int is_live(char *const *live, int n, const char *node)
{
    for (int i = 0; i < n; i++)
        if (strcmp(live[i], node) == 0)
            return 1;
    return 0;
}

/* The live node that does not hold shard s with the fewest replicas of
 * m (ties by name), or NULL. */
static const char *new_home(const shard_map *m, uint32_t s,
                            char *const *live, int n)
{
    const char *best = NULL;
    uint32_t best_share = UINT32_MAX;
    for (int i = 0; i < n; i++) {
        if (shard_map_holds(m, s, live[i]))
            continue;
        uint32_t share = 0;
        for (size_t k = 0; k < (size_t)m->shards * m->replicas; k++)
            share += strcmp(m->hosts[k], live[i]) == 0;
        if (share < best_share ||
            (share == best_share && strcmp(live[i], best) < 0)) {
            best = live[i];
            best_share = share;
        }
    }
    return best;
}

/* Whether shard s keeps a live replica that has caught up. */
static int has_source(const shard_map *m, uint32_t s, char *const *live,
                      int n)
{
    for (uint32_t r = 0; r < m->replicas; r++)
        if (m->since[(size_t)s * m->replicas + r] == 0 &&
            is_live(live, n, shard_host(m, s, r)))
            return 1;
    return 0;
}

/* The next step for m, at most one per round: 1 when one was made. */
static int step_map(router *rt, shard_map *m, char *const *live, int n,
                    char *err, size_t errlen)
{
    clog_kv *kv = node_placements(router_node(rt));
    for (uint32_t s = 0; s < m->shards; s++) {
        for (uint32_t r = 0; r < m->replicas; r++) {
            uint64_t *since = &m->since[(size_t)s * m->replicas + r];
            uint64_t applied = 0, seq = 0;
            if (*since == SHARD_UNLOGGED) {   /* stored, not yet logged */
                if (log_change(rt, m, s, &seq, err, errlen) != QV_OK)
                    return 0;
                *since = seq;
                return shard_map_update(kv, m, err, errlen) == 0;
            }
            if (*since != 0 &&
                node_applied_of(router_node(rt), shard_host(m, s, r), &applied,
                                err, errlen) == 0 &&
                applied >= *since) {   /* its copy is made */
                *since = 0;
                return shard_map_update(kv, m, err, errlen) == 0;
            }
        }
    }
    for (uint32_t s = 0; s < m->shards; s++) {
        for (uint32_t r = 0; r < m->replicas; r++) {
            if (is_live(live, n, shard_host(m, s, r)) ||
                !has_source(m, s, live, n))
                continue;
            const char *home = new_home(m, s, live, n);
            if (!home)
                continue;   /* every live node holds it already */
            size_t i = (size_t)s * m->replicas + r;
            snprintf(m->hosts[i], SHARD_NODE_MAX, "%s", home);
            m->since[i] = SHARD_UNLOGGED;
            if (shard_map_update(kv, m, err, errlen) != 0)
                return 0;   /* another change came first */
            uint64_t seq = 0;
            if (log_change(rt, m, s, &seq, err, errlen) != QV_OK)
                return 1;   /* the next round logs it */
            /* version as logged: the bucket holds m->version now */
            m->revision = 0;
            shard_map found;
            int ok = 0;
            if (shard_map_get(kv, m->name, &found, &ok, err, errlen) == 0 &&
                ok) {
                if (found.version == m->version) {
                    found.since[i] = seq;
                    shard_map_update(kv, &found, err, errlen);
                }
                shard_map_release(&found);
            }
            return 1;
        }
    }
    return 0;
}

static void coordinate_once(coordinator *co)
{
    router *rt = co->rt;
    char err[512], **live = NULL, **names = NULL;
    int nlive = 0, nnames = 0;
    if (node_coordinate(router_node(rt), err, sizeof err) != 0 ||
        node_live(router_node(rt), &live, &nlive, err, sizeof err) != 0)
        return;
    if (shard_map_names(node_placements(router_node(rt)), &names, &nnames, err,
                        sizeof err) == 0) {
        for (int i = 0; i < nnames && !atomic_load(&co->stop); i++) {
            shard_map m;
            int found = 0;
            if (!names[i][0] ||
                shard_map_get(node_placements(router_node(rt)), names[i], &m,
                              &found, err, sizeof err) != 0 || !found)
                continue;
            step_map(rt, &m, live, nlive, err, sizeof err);
            shard_map_release(&m);
        }
        clog_kv_keys_free(names, nnames);
    }
    clog_kv_keys_free(live, nlive);
}

static void *coordinator_main(void *arg)
{
    coordinator *co = arg;
    pthread_mutex_lock(&co->lock);
    while (!atomic_load(&co->stop)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += COORDINATE_MS / 1000;
        pthread_cond_timedwait(&co->wake, &co->lock, &until);
        if (atomic_load(&co->stop))
            break;
        pthread_mutex_unlock(&co->lock);
        coordinate_once(co);
        pthread_mutex_lock(&co->lock);
    }
    pthread_mutex_unlock(&co->lock);
    return NULL;
}

coordinator *coordinator_start(router *rt)
{
    coordinator *co = qv_calloc(1, sizeof *co);
    if (!co)
        return NULL;
    co->rt = rt;
    pthread_mutex_init(&co->lock, NULL);
    pthread_cond_init(&co->wake, NULL);
    if (pthread_create(&co->thread, NULL, coordinator_main, co) != 0) {
        pthread_mutex_destroy(&co->lock);
        pthread_cond_destroy(&co->wake);
        qv_mem_free(co);
        return NULL;
    }
    return co;
}

void coordinator_stop(coordinator *co)
{
    if (!co)
        return;
    pthread_mutex_lock(&co->lock);
    atomic_store(&co->stop, 1);
    pthread_cond_broadcast(&co->wake);
    pthread_mutex_unlock(&co->lock);
    pthread_join(co->thread, NULL);
    pthread_mutex_destroy(&co->lock);
    pthread_cond_destroy(&co->wake);
    qv_mem_free(co);
}
