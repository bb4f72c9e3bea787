/*
 * dispatch.h - the server side of the protocol: one request frame in, one
 * response frame out, through the public API on a database handle.
 *
 * Everything the server does with bytes from the network goes through
 * dispatch_frame, which is also the fuzz target's entry point.
 */
#ifndef QV_WIRE_SERVER_DISPATCH_H
#define QV_WIRE_SERVER_DISPATCH_H

#include "db/quiver.h"
#include "wire/cluster/node.h"
#include "wire/proto/frame.h"

/* Per-connection protocol state. */
typedef struct dispatch_session {
    const char *token;   /* the server's token, or NULL for none */
    const char *backup_dir;  /* where backups may be written (an absolute
                                path), or NULL: backup is refused */
    cluster_node *cluster;   /* a cluster node: writes go through its log;
                                NULL: they are made here */
    struct router *router;   /* a cluster node's sharded collections */
    int authenticated;
    int close_after;     /* set when the connection must be closed after the
                            response is sent */
} dispatch_session;

/*
 * Decode the request in payload, run it on db, append the response frame
 * to out. Never fails on bad bytes: those get a PROTOCOL response (and
 * close_after). Returns 0, or -1 when out of memory for the response.
 */
int dispatch_frame(qv_db *db, dispatch_session *session,
                   const uint8_t *payload, size_t len, wbuf *out);

/*
 * Make the write that entry (a Request's bytes, as appended to the write
 * log) asks for on entry->db, as an authenticated client of a server
 * without a cluster would; its outcome in out. The cluster node's
 * applier. Entries about shards: a sharded create makes the shards its
 * placement gives this node, a drop of a shards' prefix drops them, and
 * a write of a shard this node does not hold is skipped.
 */
void dispatch_apply(const node_entry *entry, node_outcome *out);
/* The node's merge (node_merge_fn): a run of upserts into one collection
 * as one write, 1 when made; 0 for any other run, or when it failed. */
int dispatch_merge(qv_db *db, const void *const *entries, const size_t *lens,
                   size_t n);

/* Append a response with no request behind it (id 0), e.g. for a frame
 * over the size limit. */
int dispatch_error(wbuf *out, qv_status status, const char *message);

#endif
