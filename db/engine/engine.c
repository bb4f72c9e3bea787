/*
 * engine.c - the embedded transport: the table of operations of an
 * in-process handle, and opening and closing one. Above every part of the
 * engine, which it names in the table; the parts below it never call it.
 */
#include "db/core/handle.h"
#include "db/engine/store/txn.h"
#include "db/engine/store/pindex.h"
#include "db/engine/tables/table.h"

#include "common/alloc.h"
#include "db/core/error.h"

static void eng_close(qv_db *base)
{
    eng_db *db = (eng_db *)base;
    eng_position_unstage(db);
    st_env_close(db->env);
    qv_mem_free(db);
}

static const qv_db_ops eng_ops = {
    .close = eng_close,
    .create_collection = catalog_create,
    .drop_collection = catalog_drop,
    .describe_collection = catalog_describe,
    .list_collections = catalog_list,
    .upsert = document_upsert,
    .get = document_get,
    .delete_doc = document_delete,
    .search = search_knn,
    .search_batch = search_batch,
    .scan = admin_scan,
    .backup = admin_backup,
    .compact = admin_compact,
    .train = admin_train,
    .table_create = table_create,
    .table_drop = table_drop,
    .table_describe = table_describe,
    .list_tables = table_list,
    .table_lookup = table_lookup,
    .table_update = table_update,
    .table_load = table_load,
    .check = check_database,
    .count = search_count,
    .delete_where = document_delete_where,
    .create_index = pindex_create,
    .drop_index = pindex_drop,
    .list_indexes = pindex_list,
    .stats = admin_stats,
    .set_threads = admin_set_threads,
    .position_get = eng_position_get,
    .position_put = eng_position_put,
    .write_token = eng_write_token,
    .read_after = eng_read_after,
    .cluster_status = eng_cluster_status,
    .cluster_drain = eng_cluster_drain,
};

qv_status eng_open(const char *path, const qv_open_options *opts,
                        qv_db **out)
{
    eng_db *db = qv_calloc(1, sizeof *db);
    if (!db)
        return qv_fail(NULL, QV_ERR_NOMEM, "out of memory opening %s", path);
    db->base.ops = &eng_ops;
    db->base.flags = opts ? opts->flags : 0;
    db->threads = opts && opts->threads ? opts->threads
                                        : eng_default_threads();
    unsigned env_flags = (db->base.flags & QV_OPEN_NOSYNC) ? ST_OPEN_NOSYNC : 0;
    int rc = st_env_open(path, env_flags, opts ? opts->map_size : 0, &db->env);
    if (rc != 0) {
        qv_status st;
        if (rc == ST_ERR_MODE)
            st = qv_fail(NULL, QV_ERR_INVALID,
                         "%s is already open in this process with the other "
                         "sync mode (QV_OPEN_NOSYNC)", path);
        else if (rc == ST_ERR_MISSING)
            st = qv_fail(NULL, QV_ERR_CORRUPT, "%s: data.mdb is missing but "
                         "lock.mdb is there; refusing to start an empty "
                         "database in its place (restore data.mdb, or remove "
                         "lock.mdb to start afresh)", path);
        else if (rc == ST_ERR_TRUNCATED)
            st = qv_fail(NULL, QV_ERR_CORRUPT, "%s: data.mdb is shorter than "
                         "its last page; the file was truncated", path);
        else
            st = eng_status(NULL, rc, path);
        qv_mem_free(db);
        return st;
    }
    qv_status st = catalog_check_format(db);
    if (st != QV_OK) {
        st_env_close(db->env);
        qv_mem_free(db);
        return st;
    }
    *out = &db->base;
    return QV_OK;
}
