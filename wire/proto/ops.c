/*
 * ops.c - the kind of each operation (ops.h). Every operation of
 * quiver.proto has its line here (tests/protocol.test.sh checks).
 */
#include "wire/proto/ops.h"

enum op_kind op_kind_of(Quiver__V1__Request__OpCase op)
{
    switch (op) {
    case QUIVER__V1__REQUEST__OP_DESCRIBE_COLLECTION:
    case QUIVER__V1__REQUEST__OP_LIST_COLLECTIONS:
    case QUIVER__V1__REQUEST__OP_GET:
    case QUIVER__V1__REQUEST__OP_SEARCH:
    case QUIVER__V1__REQUEST__OP_SEARCH_BATCH:
    case QUIVER__V1__REQUEST__OP_SCAN:
    case QUIVER__V1__REQUEST__OP_COUNT:
    case QUIVER__V1__REQUEST__OP_STATS:
    case QUIVER__V1__REQUEST__OP_CHECK:
    case QUIVER__V1__REQUEST__OP_TABLE_DESCRIBE:
    case QUIVER__V1__REQUEST__OP_TABLE_LOOKUP:
    case QUIVER__V1__REQUEST__OP_LIST_TABLES:
    case QUIVER__V1__REQUEST__OP_LIST_INDEXES:
    case QUIVER__V1__REQUEST__OP_CLUSTER_STATUS:
        return OP_READS;
    case QUIVER__V1__REQUEST__OP_CREATE_COLLECTION:
    case QUIVER__V1__REQUEST__OP_DROP_COLLECTION:
    case QUIVER__V1__REQUEST__OP_UPSERT:
    case QUIVER__V1__REQUEST__OP_DELETE:
    case QUIVER__V1__REQUEST__OP_DELETE_WHERE:
    case QUIVER__V1__REQUEST__OP_CREATE_INDEX:
    case QUIVER__V1__REQUEST__OP_DROP_INDEX:
    case QUIVER__V1__REQUEST__OP_TRAIN:
    case QUIVER__V1__REQUEST__OP_TABLE_CREATE:
    case QUIVER__V1__REQUEST__OP_TABLE_DROP:
    case QUIVER__V1__REQUEST__OP_TABLE_UPDATE:
    case QUIVER__V1__REQUEST__OP_TABLE_LOAD:
        return OP_WRITES;
    case QUIVER__V1__REQUEST__OP_AUTHENTICATE:
    case QUIVER__V1__REQUEST__OP_BACKUP:
    case QUIVER__V1__REQUEST__OP_COMPACT:
    case QUIVER__V1__REQUEST__OP_CLUSTER_DRAIN:
    default:
        return OP_LOCAL;
    }
}
