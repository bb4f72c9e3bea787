/*
 * shards.h - a sharded collection's shape (docs/CLUSTER.md "Shards"):
 * which shard holds an id, what a shard's local collection is called,
 * and the placement of shards on nodes, as kept in the cluster's
 * placement bucket.
 *
 * A collection created with shards=S replicas=R is S local collections
 * named by shard_local_name, each held by the R nodes its placement
 * names. The placement is decided once, by the node that takes the
 * create, from the live nodes; it is stored in the key-value bucket
 * quiver_STREAM_shards with a create that only one of two racing
 * creates wins, and carried in the create's log entry so that every node
 * decides from the log alone whether it holds a shard.
 */
#ifndef QV_WIRE_CLUSTER_SHARDS_H
#define QV_WIRE_CLUSTER_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "db/quiver.h"
#include "wire/cluster/log.h"

/* Local collections whose names start so are shards; clients cannot
 * create them. */
#define SHARD_PREFIX "_shard."
#define SHARD_NODE_MAX 64    /* bytes of a node name, with its NUL */

/* The shard (0 .. shards-1) of a document id: XXH64 of the id, mod. */
uint32_t shard_of_id(const char *id, uint32_t shards);

/* The shard of an embedding table's row id: XXH64 of the id's 8 bytes,
 * little-endian (the same on every host), mod. */
uint32_t shard_of_row(uint64_t id, uint32_t shards);

typedef struct shard_map {
    char name[QV_NAME_MAX + 1];
    uint64_t serial;     /* drawn at creation, never 0: in the shards'
                            names, so that a collection dropped and made
                            again has shards of other names */
    uint32_t shards, replicas;
    char (*hosts)[SHARD_NODE_MAX];   /* shards * replicas: shard after
                                        shard, its replicas' nodes */
    uint64_t *since;     /* per host: 0 for a replica that has caught up
                            (or was placed at creation); else the log
                            entry that placed it, SHARD_UNLOGGED before
                            that entry is appended */
    /* A move (docs/CLUSTER.md "Moves"): per shard, the node a new
     * replica is being made on ("" when none), the replica it replaces
     * once it has caught up, and its since as above. It takes writes
     * from the entry that placed it but is not read until it replaces. */
    char (*joining)[SHARD_NODE_MAX];
    uint32_t *replaces;
    uint64_t *joining_since;
    uint32_t unlogged;   /* shard + 1 whose last change (one that placed
                            no new replica) is stored and not yet
                            logged; 0 when none */
    uint64_t version;    /* 1 at creation, one more per change */
    uint64_t revision;   /* the bucket's revision it was read at (not
                            stored) */
    int table;           /* 1: an embedding table's (docs/EMBEDDINGS.md
                            "Sharded tables"), whose shards are local
                            tables of the same names; 0: a collection's */
} shard_map;

#define SHARD_UNLOGGED UINT64_MAX

/* "_shard.<XXH64 of the name>.<serial>.<shard>" (hex, hex, decimal), a
 * valid collection name. */
void shard_local_name(const shard_map *m, uint32_t shard,
                      char out[QV_NAME_MAX + 1]);

/* "_shard.<XXH64 of name>.", the start of the local names of every shard
 * a collection of that name has had. */
void shard_name_prefix(const char *name, char out[QV_NAME_MAX + 1]);

/* Whether a collection name is such a prefix. */
int shard_is_prefix(const char *local);

/* Node names of replica r of shard s. */
static inline const char *shard_host(const shard_map *m, uint32_t s,
                                     uint32_t r)
{
    return m->hosts[(size_t)s * m->replicas + r];
}

/* Whether node holds a replica of shard s. */
int shard_map_holds(const shard_map *m, uint32_t s, const char *node);

/* The node a replica of shard s is moving to, or NULL. */
const char *shard_joining(const shard_map *m, uint32_t s);

/* Replicas of m on node: those it holds, plus those moving to it, minus
 * those moving away from it (its share once the moves are done). */
uint32_t shard_share(const shard_map *m, const char *node);

/*
 * Place shards * replicas replicas on the n live nodes (n >= replicas):
 * replicas of a shard on distinct nodes, every node within one replica of
 * the same share, the start rotated by the name so that collections do
 * not all begin on the same node; a new serial. 0, or -1 with err.
 */
int shard_place(const char *name, uint32_t shards, uint32_t replicas,
                char *const *nodes, int n, shard_map *out, char *err,
                size_t errlen);

/* The map from the hosts of a create's log entry (shards * replicas
 * names). 0, or -1 with err. */
int shard_map_from_hosts(const char *name, uint64_t serial, uint32_t shards,
                         uint32_t replicas, char *const *hosts, size_t n,
                         shard_map *out, char *err, size_t errlen);

void shard_map_release(shard_map *m);

/* *out = a copy of m (release both). 0, or -1 when out of memory. */
int shard_map_copy(const shard_map *m, shard_map *out);

/* ---- the placement bucket ---- */

/* The bucket's key of a collection: "c" and the name's XXH64 in hex. */
void shard_map_key(const char *name, char out[24]);
/* The bucket's key of a table: "t" and the name's XXH64 in hex (a table
 * and a collection may share a name). */
void shard_table_key(const char *name, char out[24]);

/* Store m under its key (a table's or a collection's, by m->table)
 * unless one is there: 0, 1 when the collection or table has a map
 * already, -1 with err. */
int shard_map_create(clog_kv *kv, const shard_map *m, char *err,
                     size_t errlen);
/* The map of name: 0 with *found 1 and out set, or *found 0; -1. */
int shard_map_get(clog_kv *kv, const char *name, shard_map *out, int *found,
                  char *err, size_t errlen);
int shard_map_delete(clog_kv *kv, const char *name, char *err,
                     size_t errlen);
/* Store m (a changed copy of a map read from the bucket) if the bucket
 * still holds the version it was read at, with its version one more: 0,
 * 1 when another change came first (m is not stored), -1 with err. */
int shard_map_update(clog_kv *kv, shard_map *m, char *err, size_t errlen);
/* Every placement of one kind (tables 0: the collections', 1: the
 * tables'), as the bucket holds them now, each with its revision: *maps
 * (*n of them; shard_maps_release). 0, or -1 with err. The coordinator
 * walks the collections' only: sharded tables are not placed again when
 * a node is lost, nor moved (docs/CLUSTER.md). */
int shard_maps_all(clog_kv *kv, int tables, shard_map **maps, int *n,
                   char *err, size_t errlen);
void shard_maps_release(shard_map *maps, int n);

/* The nodes being drained (`cluster drain`), one record of the bucket
 * changed by compare-and-set: *nodes (*n of them; clog_kv_keys_free),
 * *revision 0 when there is no record. 0, or -1 with err. */
int shard_drains_get(clog_kv *kv, char ***nodes, int *n, uint64_t *revision,
                     char *err, size_t errlen);
/* Store the list if the record is still at revision: 0, 1 when another
 * change came first, -1 with err. */
int shard_drains_put(clog_kv *kv, char *const *nodes, int n,
                     uint64_t revision, char *err, size_t errlen);
/* Whether node is in the list. */
int shard_drains_has(char *const *nodes, int n, const char *node);

/* A sharded table's map, as shard_map_get / shard_map_delete give a
 * collection's. */
int shard_table_map_get(clog_kv *kv, const char *name, shard_map *out,
                        int *found, char *err, size_t errlen);
int shard_table_map_delete(clog_kv *kv, const char *name, char *err,
                           size_t errlen);

#endif
