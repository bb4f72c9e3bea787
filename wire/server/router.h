/*
 * router.h - a cluster node's requests on sharded collections
 * (docs/CLUSTER.md "Shards"): a write goes to a node holding the shard of
 * each id, which sends it through the write log; a read goes to one live
 * replica of each shard it needs, this node's own first, and the answers
 * are merged.
 *
 * Every call answers as the API would on one database (the same statuses
 * and results), with its message in msg (msglen bytes) on failure.
 * `after` is the request's write token: every replica asked answers only
 * once it has applied that far.
 */
#ifndef QV_WIRE_SERVER_ROUTER_H
#define QV_WIRE_SERVER_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "db/quiver.h"
#include "wire/cluster/node.h"
#include "wire/cluster/shards.h"
#include "wire/quiver.pb-c.h"

typedef struct router router;

/* token: the servers' token (every node has the same), or NULL; ca_file:
 * with TLS, the CAs of the nodes' certificates (qvs://), else NULL. */
router *router_new(cluster_node *node, qv_db *db, const char *token,
                   const char *ca_file);
void router_free(router *rt);

/*
 * Whether name is a sharded collection: 1 with its placement in *map
 * (shard_map_release it), 0 when it is not one, -1 with msg when the
 * placement could not be read. A placement read less than a second ago
 * may be given again unless fresh is 1: one that has changed since
 * (the collection dropped and made again) names shards that no longer
 * exist, so a request that used it fails NOT_FOUND and nothing else; ask
 * again with fresh 1 then.
 */
int router_lookup(router *rt, const char *name, int fresh, shard_map *map,
                  char *msg, size_t msglen);

/* Create a sharded collection (config->shards > 0), placed on the live
 * nodes; *token is the create's write token. */
qv_status router_create(router *rt, const char *name,
                        const qv_collection_config *config, uint64_t *token,
                        char *msg, size_t msglen);
qv_status router_drop(router *rt, const shard_map *map, uint64_t *token,
                      char *msg, size_t msglen);

qv_status router_upsert(router *rt, const shard_map *map, const qv_doc *docs,
                        size_t n, uint64_t *token, char *msg, size_t msglen);
qv_status router_delete(router *rt, const shard_map *map, const char *id,
                        uint64_t *token, char *msg, size_t msglen);

/* *rec: release with qv_free. */
qv_status router_get(router *rt, const shard_map *map, const char *id,
                     uint64_t after, qv_record **rec, char *msg,
                     size_t msglen);
qv_status router_count(router *rt, const shard_map *map, const char *filter,
                       uint64_t after, uint64_t *count, char *msg,
                       size_t msglen);
/* info of the whole collection: shard 0's settings, sums of counts and
 * sizes over the shards (one replica of each). */
qv_status router_describe(router *rt, const shard_map *map, uint64_t after,
                          qv_collection_info *info, char *msg,
                          size_t msglen);

/* What a search, a batch search or a scan gathered from every shard
 * (release with router_result_free). */
typedef struct router_result router_result;
const qv_hits *router_result_hits(const router_result *rr);
const qv_page *router_result_page(const router_result *rr);
const qv_batch_hits *router_result_batch(const router_result *rr);
void router_result_free(router_result *rr);

/* The k nearest of all shards; with options->explain, hits.explain is
 * {"shards": [each shard's explain with its "shard"]}. With
 * options->partial, a shard no replica answered for (a failure
 * router_unreachable names) is listed in hits.missing instead of failing
 * the search, unless no shard answered; other failures still fail it.
 * A batch names the same missing shards in each of its results. */
qv_status router_search(router *rt, const shard_map *map, const float *query,
                        uint32_t dim, const qv_search_options *options,
                        uint64_t after, router_result **out, char *msg,
                        size_t msglen);
qv_status router_search_batch(router *rt, const shard_map *map,
                              const float *queries, size_t nq, uint32_t dim,
                              const qv_search_options *options,
                              uint64_t after, router_result **out, char *msg,
                              size_t msglen);
/* A page of the matches after the cursor in id order across shards: each
 * shard gives its first limit, the first limit of all of them are the
 * page (next: the last id, when more follow). */
qv_status router_scan(router *rt, const shard_map *map, const char *filter,
                      const char *after, uint32_t limit, uint64_t after_token,
                      router_result **out, char *msg, size_t msglen);

/* Writes made on every shard (side by side, each through a node holding
 * it); a refusal says how many shards made it. */
qv_status router_delete_where(router *rt, const shard_map *map,
                              const char *filter, uint64_t *deleted,
                              uint64_t *token, char *msg, size_t msglen);
qv_status router_index(router *rt, const shard_map *map, const char *field,
                       qv_index_type type, int drop, uint64_t *token,
                       char *msg, size_t msglen);
qv_status router_train(router *rt, const shard_map *map, uint64_t *token,
                       char *msg, size_t msglen);
/* Shard 0's payload indexes (every shard has the same): *list to
 * qv_free. */
qv_status router_list_indexes(router *rt, const shard_map *map,
                              uint64_t after, qv_index_info **list, size_t *n,
                              char *msg, size_t msglen);

/* Every sharded collection's info, as router_describe gives it
 * (*infos: qv_mem_free it). */
qv_status router_list(router *rt, uint64_t after, qv_collection_info **infos,
                      size_t *n, char *msg, size_t msglen);

/* ---- for placement.c: reaching nodes and the log ---- */

/* A handle to live node name, from the pool or newly connected; NULL with
 * msg when it cannot be reached. Give it back with router_peer_give
 * (broken: its call failed on its connection, so it is closed). */
qv_db *router_peer_take(router *rt, const char *name, char *msg,
                        size_t msglen);
void router_peer_give(router *rt, const char *name, qv_db *h, int broken);
/* Whether st says a node was not reached or did not answer. */
int router_unreachable(qv_status st);
/* Log req (a write about collection name) through this node and wait
 * for its outcome here; *seq is its entry (0 when it was not appended). */
void router_log(router *rt, const char *name, const Quiver__V1__Request *req,
                node_outcome *out, uint64_t *seq);
cluster_node *router_node(router *rt);
qv_db *router_db(router *rt);

/* ---- for table_router.c: sharded embedding tables ---- */

/* router_lookup for a sharded table's placement (map->table 1). */
int router_table_lookup(router *rt, const char *name, int fresh,
                        shard_map *map, char *msg, size_t msglen);
/* Forget the cached placement of table name (created or dropped). */
void router_forget_table(router *rt, const char *name);

/* A call on a shard's local collection or table, on h (a node's handle,
 * or this node's database for a read of a shard it holds); result is
 * the call's. */
typedef qv_status (*router_shard_fn)(qv_db *h, const char *local, void *arg,
                                     void *result);
/* fn on one replica of shard s, this node's first, moving on while
 * replicas cannot be reached; msg says why when none answered. */
qv_status router_read_shard(router *rt, const shard_map *m, uint32_t s,
                            uint64_t after, router_shard_fn fn, void *arg,
                            void *result, char *msg, size_t msglen);
/* fn (a write) through the first replica of shard s that can be
 * reached, never sent twice; *token grows to the write's token. */
qv_status router_write_shard(router *rt, const shard_map *m, uint32_t s,
                             router_shard_fn fn, void *arg, void *result,
                             uint64_t *token, char *msg, size_t msglen);
/* fn on a replica of every shard, side by side: results[s] is shard s's
 * result; the first failure in msg. */
qv_status router_read_all(router *rt, const shard_map *m, uint64_t after,
                          router_shard_fn fn, void *arg, void **results,
                          char *msg, size_t msglen);

#endif
