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
        /* a long copy must not look like a lost node */
        node_keep_alive(router_node(rt));
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
 * COORDINATE_MS, a few steps per collection per round:
 * - a replica on a node that has left the cluster (its member record
 *   lapsed: the grace period) is placed on a live node that does not hold
 *   the shard, the smallest share first, provided a replica that has
 *   caught up remains to copy from;
 * - a replica on a node being drained, and, once no move is under way, a
 *   replica of the node with the largest share when another has two
 *   fewer (a node that joined), moves: a new replica is added on the
 *   other node first, and replaces the old one only once it has caught
 *   up, so that a shard never has fewer replicas that have caught up
 *   than it had (a move whose node lapses is given up);
 * - a new replica counts as caught up once its node's record shows it
 *   applied the change that placed it.
 * Every change is made in the placement bucket first, by compare-and-set
 * (of two racing changes one wins), then logged; a change stored but not
 * yet logged (its coordinator died in between) is logged by the next
 * round.
 */
#define COORDINATE_MS 2000
#define STEPS_PER_ROUND 4

struct coordinator {
    router *rt;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock;      /* with wake: the pause between rounds */
    pthread_cond_t wake;
};

/* What a round knows of the cluster. */
struct cluster_view {
    char **live;
    int nlive;
    char **draining;
    int ndraining;
};

/* Log the change of shard s's placement to m's version: its replicas,
 * and the node joining it when one is. */
static qv_status log_change(router *rt, const shard_map *m, uint32_t s,
                            uint64_t *seq, char *msg, size_t msglen)
{
    Quiver__V1__CollectionConfig cfg = QUIVER__V1__COLLECTION_CONFIG__INIT;
    Quiver__V1__CreateCollection change = QUIVER__V1__CREATE_COLLECTION__INIT;
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    char *hosts[QV_REPLICAS_MAX + 1];
    size_t n = 0;
    for (uint32_t r = 0; r < m->replicas; r++)
        hosts[n++] = (char *)shard_host(m, s, r);
    if (shard_joining(m, s))
        hosts[n++] = m->joining[s];
    cfg.shards = m->shards;
    cfg.replicas = m->replicas;
    cfg.n_placement = n;
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

static int is_live(const struct cluster_view *v, const char *node)
{
    return shard_drains_has(v->live, v->nlive, node);
}

/* A node that may take replicas: live and not being drained. */
static int may_take(const struct cluster_view *v, const char *node)
{
    return is_live(v, node) &&
           !shard_drains_has(v->draining, v->ndraining, node);
}

/* The node that may take a replica of shard s (holding none of it, and
 * not joining it) with the smallest share of m (ties by name), or NULL. */
static const char *new_home(const shard_map *m, uint32_t s,
                            const struct cluster_view *v)
{
    const char *best = NULL;
    uint32_t best_share = UINT32_MAX;
    for (int i = 0; i < v->nlive; i++) {
        const char *node = v->live[i];
        const char *joining = shard_joining(m, s);
        if (!may_take(v, node) || shard_map_holds(m, s, node) ||
            (joining && strcmp(joining, node) == 0))
            continue;
        uint32_t share = shard_share(m, node);
        if (share < best_share ||
            (share == best_share && strcmp(node, best) < 0)) {
            best = node;
            best_share = share;
        }
    }
    return best;
}

/* Whether shard s keeps a live replica that has caught up. */
static int has_source(const shard_map *m, uint32_t s,
                      const struct cluster_view *v)
{
    for (uint32_t r = 0; r < m->replicas; r++)
        if (m->since[(size_t)s * m->replicas + r] == 0 &&
            is_live(v, shard_host(m, s, r)))
            return 1;
    return 0;
}

/* Whether the last change of shard s is stored and not logged: it placed
 * a replica whose since is still SHARD_UNLOGGED, or m->unlogged says
 * so. */
static int change_unlogged(const shard_map *m, uint32_t s)
{
    if (m->unlogged == s + 1)
        return 1;
    for (uint32_t r = 0; r < m->replicas; r++)
        if (m->since[(size_t)s * m->replicas + r] == SHARD_UNLOGGED)
            return 1;
    return shard_joining(m, s) && m->joining_since[s] == SHARD_UNLOGGED;
}

/* Note in m that the change of shard s was logged as entry seq. */
static void mark_logged(shard_map *m, uint32_t s, uint64_t seq)
{
    if (m->unlogged == s + 1)
        m->unlogged = 0;
    for (uint32_t r = 0; r < m->replicas; r++)
        if (m->since[(size_t)s * m->replicas + r] == SHARD_UNLOGGED)
            m->since[(size_t)s * m->replicas + r] = seq;
    if (shard_joining(m, s) && m->joining_since[s] == SHARD_UNLOGGED)
        m->joining_since[s] = seq;
}

/*
 * Store m, changed for shard s (a replica it places has since
 * SHARD_UNLOGGED; a change that places none sets m->unlogged), by
 * compare-and-set; log the change; note in the bucket that it was
 * logged. 1 when stored (if it could not be logged, the next round logs
 * it), 0 when another change came first.
 */
static int store_and_log(router *rt, shard_map *m, uint32_t s, char *err,
                         size_t errlen)
{
    clog_kv *kv = node_placements(router_node(rt));
    if (shard_map_update(kv, m, err, errlen) != 0)
        return 0;
    uint64_t seq = 0;
    if (log_change(rt, m, s, &seq, err, errlen) != QV_OK)
        return 1;
    shard_map stored;
    int found = 0;
    if (shard_map_get(kv, m->name, &stored, &found, err, errlen) == 0 &&
        found) {
        if (stored.version == m->version) {   /* nothing changed since */
            mark_logged(&stored, s, seq);
            shard_map_update(kv, &stored, err, errlen);
        }
        shard_map_release(&stored);
    }
    return 1;
}

/* Log a change stored but not logged (its coordinator stopped between
 * the two): 1 when there was one. */
static int log_stored_change(router *rt, shard_map *m, char *err,
                             size_t errlen)
{
    for (uint32_t s = 0; s < m->shards; s++) {
        if (!change_unlogged(m, s))
            continue;
        uint64_t seq = 0;
        if (log_change(rt, m, s, &seq, err, errlen) == QV_OK) {
            mark_logged(m, s, seq);
            shard_map_update(node_placements(router_node(rt)), m, err,
                             errlen);
        }
        return 1;
    }
    return 0;
}

/* Whether node has applied entry since (it holds its copy). */
static int has_applied(router *rt, const char *node, uint64_t since,
                       char *err, size_t errlen)
{
    uint64_t applied = 0;
    return node_applied_of(router_node(rt), node, &applied, err, errlen) ==
               0 &&
           applied >= since;
}

/* Mark a replica that has caught up as such: 1 when one was. */
static int mark_caught_up(router *rt, shard_map *m, char *err,
                          size_t errlen)
{
    clog_kv *kv = node_placements(router_node(rt));
    for (uint32_t s = 0; s < m->shards; s++) {
        for (uint32_t r = 0; r < m->replicas; r++) {
            uint64_t *since = &m->since[(size_t)s * m->replicas + r];
            if (*since != 0 &&
                has_applied(rt, shard_host(m, s, r), *since, err, errlen)) {
                *since = 0;
                return shard_map_update(kv, m, err, errlen) == 0;
            }
        }
        if (shard_joining(m, s) && m->joining_since[s] != 0 &&
            has_applied(rt, m->joining[s], m->joining_since[s], err,
                        errlen)) {
            m->joining_since[s] = 0;
            return shard_map_update(kv, m, err, errlen) == 0;
        }
    }
    return 0;
}

/* Finish a move: the new replica, caught up, replaces the old one (whose
 * node drops its copy when it applies the change); a move whose new node
 * lapsed is given up. 1 when one was. */
static int end_move(router *rt, shard_map *m, const struct cluster_view *v,
                    char *err, size_t errlen)
{
    for (uint32_t s = 0; s < m->shards; s++) {
        if (!shard_joining(m, s))
            continue;
        int lapsed = !is_live(v, m->joining[s]);
        if (!lapsed && m->joining_since[s] != 0)
            continue;   /* still copying */
        if (!lapsed) {
            size_t i = (size_t)s * m->replicas + m->replaces[s];
            snprintf(m->hosts[i], SHARD_NODE_MAX, "%s", m->joining[s]);
            m->since[i] = 0;
        }
        m->joining[s][0] = '\0';
        m->unlogged = s + 1;
        store_and_log(rt, m, s, err, errlen);
        return 1;
    }
    return 0;
}

/* Place again a replica on a node that has left: 1 when one was. A
 * replica that a move replaces is left to the move. */
static int replace_lost(router *rt, shard_map *m,
                        const struct cluster_view *v, char *err,
                        size_t errlen)
{
    for (uint32_t s = 0; s < m->shards; s++) {
        for (uint32_t r = 0; r < m->replicas; r++) {
            if (is_live(v, shard_host(m, s, r)) || !has_source(m, s, v) ||
                (shard_joining(m, s) && m->replaces[s] == r))
                continue;
            const char *home = new_home(m, s, v);
            if (!home)
                continue;   /* every node that may take it holds it */
            size_t i = (size_t)s * m->replicas + r;
            snprintf(m->hosts[i], SHARD_NODE_MAX, "%s", home);
            m->since[i] = SHARD_UNLOGGED;
            return store_and_log(rt, m, s, err, errlen);
        }
    }
    return 0;
}

/* Begin moving replica r of shard s to node home. */
static int begin_move(router *rt, shard_map *m, uint32_t s, uint32_t r,
                      const char *home, char *err, size_t errlen)
{
    snprintf(m->joining[s], SHARD_NODE_MAX, "%s", home);
    m->replaces[s] = r;
    m->joining_since[s] = SHARD_UNLOGGED;
    return store_and_log(rt, m, s, err, errlen);
}

/* Move a replica away from a node being drained: 1 when a move began. */
static int drain_step(router *rt, shard_map *m,
                      const struct cluster_view *v, char *err,
                      size_t errlen)
{
    for (uint32_t s = 0; s < m->shards; s++) {
        if (shard_joining(m, s) || !has_source(m, s, v))
            continue;
        for (uint32_t r = 0; r < m->replicas; r++) {
            if (!shard_drains_has(v->draining, v->ndraining,
                                  shard_host(m, s, r)))
                continue;
            const char *home = new_home(m, s, v);
            if (home)
                return begin_move(rt, m, s, r, home, err, errlen);
        }
    }
    return 0;
}

/* Whether m is settled: no move, no copy, nothing unlogged. */
static int settled(const shard_map *m)
{
    if (m->unlogged)
        return 0;
    for (uint32_t s = 0; s < m->shards; s++) {
        if (shard_joining(m, s))
            return 0;
        for (uint32_t r = 0; r < m->replicas; r++)
            if (m->since[(size_t)s * m->replicas + r] != 0)
                return 0;
    }
    return 1;
}

/* On a settled map, move one replica from the node with the largest
 * share to the one with the smallest when they differ by two or more (a
 * node that joined): 1 when a move began. */
static int balance_step(router *rt, shard_map *m,
                        const struct cluster_view *v, char *err,
                        size_t errlen)
{
    const char *most = NULL, *least = NULL;
    uint32_t most_share = 0, least_share = UINT32_MAX;
    if (!settled(m))
        return 0;
    for (int i = 0; i < v->nlive; i++) {
        if (!may_take(v, v->live[i]))
            continue;
        uint32_t share = shard_share(m, v->live[i]);
        if (!most || share > most_share) {
            most = v->live[i];
            most_share = share;
        }
        if (!least || share < least_share) {
            least = v->live[i];
            least_share = share;
        }
    }
    if (!most || most_share < least_share + 2)
        return 0;
    for (uint32_t s = 0; s < m->shards; s++) {
        if (shard_map_holds(m, s, least))
            continue;
        for (uint32_t r = 0; r < m->replicas; r++)
            if (strcmp(shard_host(m, s, r), most) == 0)
                return begin_move(rt, m, s, r, least, err, errlen);
    }
    return 0;
}

/* The next step for m: 1 when one was made. */
static int step_map(router *rt, shard_map *m, const struct cluster_view *v,
                    char *err, size_t errlen)
{
    return log_stored_change(rt, m, err, errlen) ||
           mark_caught_up(rt, m, err, errlen) ||
           end_move(rt, m, v, err, errlen) ||
           replace_lost(rt, m, v, err, errlen) ||
           drain_step(rt, m, v, err, errlen) ||
           balance_step(rt, m, v, err, errlen);
}

/* Up to STEPS_PER_ROUND steps for the collection name, each on its
 * placement as the bucket holds it then. */
static void look_after(coordinator *co, const char *name,
                       const struct cluster_view *v, char *err,
                       size_t errlen)
{
    clog_kv *kv = node_placements(router_node(co->rt));
    for (int step = 0; step < STEPS_PER_ROUND && !atomic_load(&co->stop);
         step++) {
        shard_map m;
        int found = 0;
        if (shard_map_get(kv, name, &m, &found, err, errlen) != 0 || !found)
            return;
        int made = step_map(co->rt, &m, v, err, errlen);
        shard_map_release(&m);
        if (!made)
            return;
    }
}

/* Forget the drains of nodes that have left holding no replica (drained
 * and stopped): a node of that name that joins again takes replicas. */
static void forget_drained(coordinator *co, struct cluster_view *v,
                           char *err, size_t errlen)
{
    clog_kv *kv = node_placements(router_node(co->rt));
    int kept = 0, changed = 0, nmaps = 0, nnow = 0;
    uint64_t revision = 0;
    char **now = NULL;
    shard_map *maps = NULL;
    if (shard_maps_all(kv, 0, &maps, &nmaps, err, errlen) != 0)
        return;
    if (shard_drains_get(kv, &now, &nnow, &revision, err, errlen) != 0) {
        shard_maps_release(maps, nmaps);
        return;
    }
    for (int i = 0; i < nnow; i++) {
        int holds = is_live(v, now[i]);
        for (int k = 0; !holds && k < nmaps; k++)
            holds = shard_share(&maps[k], now[i]) > 0 || !settled(&maps[k]);
        if (holds) {
            char *keep = now[i];
            now[i] = now[kept];
            now[kept++] = keep;
        } else {
            changed = 1;
        }
    }
    if (changed)
        shard_drains_put(kv, now, kept, revision, err, errlen);
    clog_kv_keys_free(now, nnow);
    shard_maps_release(maps, nmaps);
}

static void coordinate_once(coordinator *co)
{
    router *rt = co->rt;
    clog_kv *kv = node_placements(router_node(rt));
    char err[512];
    shard_map *maps = NULL;
    int nmaps = 0;
    uint64_t revision = 0;
    struct cluster_view v = {0};
    if (node_coordinate(router_node(rt), err, sizeof err) != 0 ||
        node_live(router_node(rt), &v.live, &v.nlive, err, sizeof err) != 0)
        return;
    if (shard_drains_get(kv, &v.draining, &v.ndraining, &revision, err,
                         sizeof err) == 0 &&
        shard_maps_all(kv, 0, &maps, &nmaps, err, sizeof err) == 0) {
        for (int i = 0; i < nmaps && !atomic_load(&co->stop); i++)
            look_after(co, maps[i].name, &v, err, sizeof err);
        shard_maps_release(maps, nmaps);
        if (v.ndraining > 0)
            forget_drained(co, &v, err, sizeof err);
    }
    clog_kv_keys_free(v.draining, v.ndraining);
    clog_kv_keys_free(v.live, v.nlive);
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

/* ---- drains ---- */

#define DRAIN_TRIES 8   /* compare-and-set rounds lost to other drains */

/* Whether node is known: live, or named by a placement. */
static int known_node(const struct cluster_view *v, const shard_map *maps,
                      int nmaps, const char *node)
{
    if (is_live(v, node))
        return 1;
    for (int k = 0; k < nmaps; k++)
        if (shard_share(&maps[k], node) > 0)
            return 1;
    return 0;
}

/* Whether every shard node holds would find a new home with node drained
 * as well: QV_OK, or QV_ERR_INVALID with msg naming a shard that would
 * not. */
static qv_status drain_leaves_enough(const struct cluster_view *v,
                                     const shard_map *maps, int nmaps,
                                     const char *node, char *msg,
                                     size_t msglen)
{
    for (int k = 0; k < nmaps; k++) {
        const shard_map *m = &maps[k];
        for (uint32_t s = 0; s < m->shards; s++) {
            const char *joining = shard_joining(m, s);
            if (!shard_map_holds(m, s, node) &&
                !(joining && strcmp(joining, node) == 0))
                continue;
            if (new_home(m, s, v))
                continue;
            snprintf(msg, msglen, "draining node '%s' would leave shard %u "
                     "of '%s' with fewer than %u replicas: every other live "
                     "node not being drained holds it already", node, s,
                     m->name, m->replicas);
            return QV_ERR_INVALID;
        }
    }
    return QV_OK;
}

/* Whether node holds a replica of a sharded table, whose shards do not
 * move yet: QV_OK when none, else QV_ERR_INVALID with msg naming it. */
static qv_status holds_no_table(clog_kv *kv, const char *node, char *msg,
                                size_t msglen)
{
    shard_map *tables = NULL;
    int n = 0;
    qv_status st = QV_OK;
    if (shard_maps_all(kv, 1, &tables, &n, msg, msglen) != 0)
        return QV_ERR_CONNECTION;
    for (int i = 0; st == QV_OK && i < n; i++) {
        if (shard_share(&tables[i], node) == 0)
            continue;
        st = QV_ERR_INVALID;
        snprintf(msg, msglen, "node '%s' holds replicas of the sharded table "
                 "'%s', and a table's shards cannot move yet "
                 "(docs/CLUSTER.md)", node, tables[i].name);
    }
    shard_maps_release(tables, n);
    return st;
}

/* One attempt at adding node to the drains, or taking it off: 0 done,
 * 1 when another change came first, else -1 with *st and msg. */
static int drain_once(router *rt, const char *node, int cancel,
                      qv_status *st, char *msg, size_t msglen)
{
    clog_kv *kv = node_placements(router_node(rt));
    struct cluster_view v = {0};
    shard_map *maps = NULL;
    int nmaps = 0, rc = -1;
    uint64_t revision = 0;
    *st = QV_ERR_CONNECTION;
    if (node_live(router_node(rt), &v.live, &v.nlive, msg, msglen) != 0 ||
        shard_drains_get(kv, &v.draining, &v.ndraining, &revision, msg,
                         msglen) != 0 ||
        shard_maps_all(kv, 0, &maps, &nmaps, msg, msglen) != 0)
        goto done;
    int listed = shard_drains_has(v.draining, v.ndraining, node);
    *st = QV_OK;
    rc = 0;
    if (listed != cancel)
        goto done;   /* already as asked */
    if (cancel) {
        for (int i = 0; i < v.ndraining; i++) {
            if (strcmp(v.draining[i], node) != 0)
                continue;
            char *gone = v.draining[i];
            v.draining[i] = v.draining[v.ndraining - 1];
            v.draining[v.ndraining - 1] = gone;
            break;
        }
        rc = shard_drains_put(kv, v.draining, v.ndraining - 1, revision, msg,
                              msglen);
        goto done;
    }
    if (!known_node(&v, maps, nmaps, node)) {
        *st = QV_ERR_NOT_FOUND;
        snprintf(msg, msglen, "no node '%s' in the cluster", node);
        rc = -1;
        goto done;
    }
    char **more = realloc(v.draining, ((size_t)v.ndraining + 2) *
                                          sizeof *more);
    if (more)
        v.draining = more;
    if (!more || !(v.draining[v.ndraining] = strdup(node))) {
        *st = QV_ERR_NOMEM;
        snprintf(msg, msglen, "out of memory");
        rc = -1;
        goto done;
    }
    v.ndraining++;
    *st = holds_no_table(kv, node, msg, msglen);
    if (*st == QV_OK)
        *st = drain_leaves_enough(&v, maps, nmaps, node, msg, msglen);
    rc = *st == QV_OK ? shard_drains_put(kv, v.draining, v.ndraining,
                                         revision, msg, msglen)
                      : -1;
done:
    if (rc < 0 && *st == QV_OK)
        *st = QV_ERR_CONNECTION;
    shard_maps_release(maps, nmaps);
    clog_kv_keys_free(v.draining, v.ndraining);
    clog_kv_keys_free(v.live, v.nlive);
    return rc;
}

qv_status placement_drain(router *rt, const char *node, int cancel,
                          char *msg, size_t msglen)
{
    if (!node || !node[0] || strlen(node) >= SHARD_NODE_MAX) {
        snprintf(msg, msglen, "a node name of 1 to %d bytes",
                 SHARD_NODE_MAX - 1);
        return QV_ERR_INVALID;
    }
    for (int tries = 0; tries < DRAIN_TRIES; tries++) {
        qv_status st;
        int rc = drain_once(rt, node, cancel, &st, msg, msglen);
        if (rc <= 0)
            return rc == 0 ? QV_OK : st;
    }
    snprintf(msg, msglen, "the list of nodes being drained changed %d "
             "times while this drain was checked; try again", DRAIN_TRIES);
    return QV_ERR_BUSY;
}
