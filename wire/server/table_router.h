/*
 * table_router.h - a cluster node's requests on sharded embedding tables
 * (docs/EMBEDDINGS.md "Sharded tables"): a table created with shards=S
 * replicas=R is S local tables named as a sharded collection's shards
 * (shard_local_name, in the tables' namespace), each of the table's whole
 * config, placed on nodes like a collection's shards; the row of an id
 * is kept by shard shard_of_row(id).
 *
 * Every call answers as the API would on one database (the same
 * statuses and results), with its message in msg (msglen bytes) on
 * failure. `after` is the request's write token: every replica asked
 * answers only once it has applied that far. Writes go to a node holding
 * each shard, which sends them through the write log (router.h).
 */
#ifndef QV_WIRE_SERVER_TABLE_ROUTER_H
#define QV_WIRE_SERVER_TABLE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "db/quiver.h"
#include "wire/cluster/shards.h"
#include "wire/server/router.h"

/* Create a sharded table (config->shards > 0), placed on the live nodes;
 * *token is the create's write token. */
qv_status table_router_create(router *rt, const char *name,
                              const qv_table_config *config, uint64_t *token,
                              char *msg, size_t msglen);
/* Drop every shard on every node (one log entry), then the placement. */
qv_status table_router_drop(router *rt, const shard_map *map, uint64_t *token,
                            char *msg, size_t msglen);

/* info of the whole table: shard 0's settings, the sums of param_bytes,
 * optimizer_bytes and updates over one replica of each shard. */
qv_status table_router_describe(router *rt, const shard_map *map,
                                uint64_t after, qv_table_info *info,
                                char *msg, size_t msglen);
/* Every sharded table's info (*infos: qv_mem_free it). */
qv_status table_router_list(router *rt, uint64_t after, qv_table_info **infos,
                            size_t *n, char *msg, size_t msglen);

/* The rows of ids into out (n x dim, in the order of ids): the ids of
 * each shard asked of one of its replicas, the shards side by side. */
qv_status table_router_lookup(router *rt, const shard_map *map,
                              const uint64_t *ids, size_t n, uint32_t dim,
                              uint64_t after, float *out, char *msg,
                              size_t msglen);
/* One update per shard that ids touch, each with its ids' gradients in
 * the order given (a repeated id stays in one shard's update, so it
 * accumulates as on one table); a refused part says how many ids of the
 * shards before it were updated. */
qv_status table_router_update(router *rt, const shard_map *map,
                              const uint64_t *ids, size_t n, uint32_t dim,
                              const float *grads, uint64_t *token, char *msg,
                              size_t msglen);
/* Rows first .. first+n-1 loaded into every shard: each row reaches its
 * own shard; the others' copies of it are never read (see the .c). */
qv_status table_router_load(router *rt, const shard_map *map, uint64_t first,
                            size_t n, uint32_t dim, const float *rows,
                            uint64_t *token, char *msg, size_t msglen);

#endif
