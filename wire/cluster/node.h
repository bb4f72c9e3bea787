/*
 * node.h - a quiverd that is one node of a cluster (docs/CLUSTER.md): its
 * writes go through the write log and come back, in the log's order, to
 * an applier that makes them on the local database, as on every node.
 */
#ifndef QV_WIRE_CLUSTER_NODE_H
#define QV_WIRE_CLUSTER_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "db/quiver.h"
#include "wire/cluster/log.h"

typedef struct cluster_node cluster_node;

/* The position that marks a database as a replica of a stream: the
 * stream name's node_stream_mark; 0 (absent) for a database that is none. */
#define NODE_MARK QV_POSITION_CLUSTER
uint64_t node_stream_mark(const char *stream);

/* What applying one entry gave: the same on every node that holds what
 * the entry is about. */
typedef struct node_outcome {
    qv_status status;
    char message[512];
    uint64_t count;      /* delete where: the documents deleted */
    int skipped;         /* the entry is about a shard this node does not
                            hold: nothing written, no position stored */
    int again;           /* the entry could not be applied yet (a shard's
                            copy could not be fetched): apply it again */
} node_outcome;

/* Where the applier stands: the entry being applied. */
typedef struct node_entry {
    qv_db *db;
    const char *node;        /* this node's name */
    const char *position;    /* the position that records how far it got */
    uint64_t seq;            /* the entry's sequence, staged as position
                                for the entry's next write */
    const void *data;        /* a protocol Request's bytes */
    size_t len;
    void *ctx;               /* the server's, given to node_start */
} node_entry;

/* Apply one entry to e->db. Given by the server, which knows the
 * protocol; the node only orders and records. An apply of several
 * writes stages e->seq - 1 for all but its last, so that a crash between
 * them applies the entry again (which must then be harmless). */
typedef void (*node_apply_fn)(const node_entry *e, node_outcome *out);
/*
 * Apply n entries as one write when they can be (the server knows which),
 * each with the outcome OK: 1. 0 when they cannot, or that write failed:
 * nothing of them was written, and the node applies them one by one.
 */
typedef int (*node_merge_fn)(qv_db *db, const void *const *entries,
                             const size_t *lens, size_t n);

/*
 * Join the log described by cfg (cfg->node names this node, listen is the
 * address clients reach it at) and start applying it to db from the
 * position db holds. 0, or -1 with err.
 */
int node_start(const clog_config *cfg, const char *listen, qv_db *db,
               node_apply_fn apply, node_merge_fn merge, cluster_node **out,
               char *err, size_t errlen);
/* The server's context for apply (node_entry.ctx), set once after
 * node_start and before anything needs it. */
void node_set_context(cluster_node *n, void *ctx);
/* Stop applying and leave (what was applied stays). */
void node_stop(cluster_node *n);

/*
 * Append entry (len bytes) on the subject of shard (a subject tail, see
 * clog_subject), wait until this node applied it, and give its outcome
 * and its sequence (the write token). A write whose append failed, or
 * that was not applied here in time, fails with a status saying whether
 * it may still be applied.
 */
void node_write(cluster_node *n, const char *shard, const void *entry,
                size_t len, node_outcome *out, uint64_t *seq);

/* Wait until this node applied sequence seq (bounded): QV_OK, or
 * QV_ERR_TIMEOUT with the reason in out. */
qv_status node_wait_applied(cluster_node *n, uint64_t seq,
                            node_outcome *out);

/*
 * The cluster as this node sees it, as JSON text (qv_mem_free it): the stream
 * (name, last_seq, replicas), and each live node's record (node, listen,
 * db_id, applied, lag_entries, lag_seconds, seen_seconds_ago), and this
 * node's last error reading the log. QV_OK, or a status with out set.
 */
qv_status node_status(cluster_node *n, char **json, node_outcome *fail);

/* The last sequence this node applied. */
uint64_t node_applied(cluster_node *n);

/* This node's name. */
const char *node_name(const cluster_node *n);

/* The bucket of the placements of sharded collections (shards.h). */
clog_kv *node_placements(cluster_node *n);

/* The names of the live nodes (*names, *count; release with
 * clog_kv_keys_free). 0, or -1 with err. */
int node_live(cluster_node *n, char ***names, int *count, char *err,
              size_t errlen);

/* The address clients reach live node name at, in listen: 0, 1 when no
 * live node has that name, -1 with err. */
int node_listen_of(cluster_node *n, const char *name, char *listen,
                   size_t len, char *err, size_t errlen);
/* How far live node name had applied the log at its last record: 0 with
 * *applied, 1 when no live node has that name, -1 with err. */
int node_applied_of(cluster_node *n, const char *name, uint64_t *applied,
                    char *err, size_t errlen);
/* Take or keep the coordinator's key (it lapses 10 s after its holder
 * last kept it): 0 when this node is the coordinator, 1 when another
 * is, -1 with err. */
int node_coordinate(cluster_node *n, char *err, size_t errlen);
/* The coordinator's name in name ("" for none). */
int node_coordinator(cluster_node *n, char *name, size_t len, char *err,
                     size_t errlen);
/* Whether this node has been asked to stop. */
int node_stopping(cluster_node *n);

/* Rewrite this node's member record if it is due: for work inside an
 * apply that outlasts the record's lapse (the copy of a shard), which
 * runs on the applier's thread, the only one that calls it. */
void node_keep_alive(cluster_node *n);

#endif
