/*
 * ops.h - what each operation of the protocol does to a database, in one
 * place: the cluster sends writes through its log (wire/server), a client
 * that changes node asks reads again (wire/remote).
 */
#ifndef QV_WIRE_PROTO_OPS_H
#define QV_WIRE_PROTO_OPS_H

#include "wire/quiver.pb-c.h"

enum op_kind {
    OP_READS,    /* reads the database only: safe to ask again */
    OP_WRITES,   /* changes the database's data: a cluster logs it */
    OP_LOCAL     /* the server's own business (authenticate, backup,
                    compact, check... a cluster node does it alone) */
};

enum op_kind op_kind_of(Quiver__V1__Request__OpCase op);

#endif
