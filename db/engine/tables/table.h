/*
 * table.h - embedding tables of the embedded transport (table.c).
 */
#ifndef QV_DB_ENGINE_TABLES_TABLE_H
#define QV_DB_ENGINE_TABLES_TABLE_H

#include "db/engine/store/txn.h"

/* A table's record, tbl_rec, is in db/engine/store/records.h. */

qv_status table_create(qv_db *db, const char *name,
                       const qv_table_config *config);
qv_status table_drop(qv_db *db, const char *name);
qv_status table_describe(qv_db *db, const char *name, qv_table_info *info);
/* Every table described, in name order, from one snapshot. */
qv_status table_list(qv_db *db, qv_table_info **out, size_t *count);
qv_status table_lookup(qv_db *db, const char *name, const uint64_t *ids,
                       size_t n, uint32_t dim, float *out);
qv_status table_update(qv_db *db, const char *name, const uint64_t *ids,
                       size_t n, uint32_t dim, const float *grads);
qv_status table_load(qv_db *db, const char *name, uint64_t first, size_t n,
                     uint32_t dim, const float *rows);
/*
 * qv_check of every table: its record and checksum, every chunk there
 * with its size. report() gets each problem; *tables counts them.
 * Returns 0 or an LMDB code (ENOMEM).
 */
int table_verify(eng_db *db, MDB_txn *txn, void (*report)(void *ctx,
                                                          const char *name,
                                                          const char *what),
                 void *ctx, unsigned *tables);


#endif
