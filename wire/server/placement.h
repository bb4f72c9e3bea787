/*
 * placement.h - changes of a sharded collection's placement on a cluster
 * node (docs/CLUSTER.md "Shards"): the coordinator, and the copy a node
 * makes of a shard placed on it.
 */
#ifndef QV_WIRE_SERVER_PLACEMENT_H
#define QV_WIRE_SERVER_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "db/quiver.h"
#include "wire/server/router.h"

/*
 * The coordinator's thread on this node: every 2 s it takes or keeps the
 * coordinator's key, and while it holds it, places the replicas of lost
 * nodes on others. NULL when the thread cannot start.
 */
typedef struct coordinator coordinator;
coordinator *coordinator_start(router *rt);
/* Stop the thread (after its round) and free it. NULL is a no-op. */
void coordinator_stop(coordinator *co);

/*
 * Drain node (cancel 0): the coordinator moves its replicas to other
 * nodes, each new replica replacing the old once it has caught up; or
 * stop draining it (cancel 1). A node already as asked is QV_OK. The
 * list of nodes being drained is changed by compare-and-set, so of two
 * racing drains that together would leave a shard short, one fails.
 * Returns QV_ERR_INVALID when a shard of node would find no other node
 * to take it (msg names it), QV_ERR_NOT_FOUND for a node that is neither
 * live nor holds a replica, QV_ERR_CONNECTION when the bucket cannot be
 * reached.
 */
qv_status placement_drain(router *rt, const char *node, int cancel,
                          char *msg, size_t msglen);

/*
 * Make this node's copy of a shard's local collection from another node
 * of hosts (its placement: the nodes that hold it, this one among them),
 * once that node has applied entry seq (the change that placed the
 * shard here): the collection as it describes it, its payload indexes,
 * then its documents page by page. A write made after seq may be in the
 * copy as well; applying it again leaves the same documents. On failure
 * nothing of the copy is left: QV_ERR_NOT_FOUND when every node asked
 * lacks the collection (dropped before the change was logged), else
 * QV_ERR_CONNECTION.
 */
qv_status placement_copy_shard(router *rt, char *const *hosts, size_t nhosts,
                               const char *local, uint64_t seq, char *msg,
                               size_t msglen);

#endif
