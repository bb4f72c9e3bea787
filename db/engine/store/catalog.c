/*
 * catalog.c - collections: the catalog maps a collection's name to its
 * record; the META sub-database holds the next collection id and the
 * database's format, checked at open.
 */
#include <string.h>

#include "common/alloc.h"
#include "ann/codec.h"
#include "ann/hnsw.h"
#include "db/engine/store/txn.h"
#include "db/core/error.h"
#include "storage/keys.h"


/*
 * The record of the collection named name (len bytes), decoded from val
 * and checked: its size and format, its checksum, then every field a
 * reader sizes or indexes anything with (coll_rec_decode reads it; a
 * format 3 record, before codecs, reads as codec none).
 */
qv_status catalog_decode(eng_db *db, const char *name, size_t len,
                         const MDB_val *val, coll_rec *rec)
{
    switch (coll_rec_decode(val, rec)) {
    case REC_OK:
        break;
    case REC_FORMAT:
        return qv_fail(&db->base, QV_ERR_CORRUPT,
                       "collection '%.*s' is stored in format %u; this build "
                       "reads format %u (export it with the build that wrote "
                       "it, import it here)", (int)len, name, rec->format,
                       COLL_FORMAT);
    case REC_CHECKSUM:
        return qv_fail(&db->base, QV_ERR_CORRUPT, "catalog record of '%.*s' "
                       "fails its checksum", (int)len, name);
    default:
        return qv_fail(&db->base, QV_ERR_CORRUPT,
                       "catalog record of '%.*s' is %zu bytes, expected %zu",
                       (int)len, name, val->mv_size,
                       rec->format == 3 ? COLL_FORMAT3_SIZE : sizeof *rec);
    }
    codec_spec spec = {(enum codec_kind)rec->codec, rec->codec_param};
    char why[128];
    char text[CODEC_SPEC_MAX];
    if (rec->codec > CODEC_PRUNE)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "catalog record of '%.*s' "
                       "names an unknown codec %u", (int)len, name,
                       rec->codec);
    codec_format(&spec, text);
    if (rec->dim > 0 && rec->dim <= QV_DIM_MAX &&
        codec_parse(text, rec->dim, &spec, why, sizeof why) != 0)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "catalog record of '%.*s': "
                       "%s", (int)len, name, why);
    if (rec->dim == 0 ||
        rec->dim > QV_DIM_MAX || !qv_metric_name((qv_metric)rec->metric) ||
        rec->M < 2 || rec->M > QV_M_MAX || rec->ef_construction == 0 ||
        rec->ef_construction > QV_EF_MAX || rec->max_level > HNSW_MAX_LEVEL ||
        rec->count > rec->next_iid)
        return qv_fail(&db->base, QV_ERR_CORRUPT,
                       "catalog record of '%.*s' is invalid (format %u, dim "
                       "%u, metric %u, M %u, ef_construction %u)", (int)len,
                       name, rec->format, rec->dim, rec->metric, rec->M,
                       rec->ef_construction);
    return QV_OK;
}

qv_status catalog_get(eng_db *db, MDB_txn *txn, const char *name,
                      coll_rec *rec)
{
    MDB_val key = catalog_key(name), val;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_CATALOG), &key, &val);
    if (rc == MDB_NOTFOUND)
        return qv_fail(&db->base, QV_ERR_NOT_FOUND,
                       "collection '%s' does not exist", name);
    if (rc != 0)
        return eng_status(db, rc, "reading the catalog");
    return catalog_decode(db, name, strlen(name), &val, rec);
}

int catalog_put(eng_db *db, MDB_txn *txn, const char *name,
                const coll_rec *rec)
{
    coll_rec sealed = coll_rec_seal(rec);
    MDB_val key = catalog_key(name), val = {sizeof sealed, &sealed};
    return mdb_put(txn, st_dbi(db->env, ST_DB_CATALOG), &key, &val, 0);
}

static void count_one(void *ctx, const MDB_val *key, const MDB_val *val)
{
    (void)key;
    (void)val;
    ++*(uint64_t *)ctx;
}

int catalog_count_free(eng_db *db, MDB_txn *txn, uint32_t coll,
                       uint64_t *free_ids)
{
    *free_ids = 0;
    return eng_walk_range(db, txn, ST_DB_FREEIDS, coll, count_one, free_ids);
}

qv_status catalog_check_ids(eng_db *db, MDB_txn *txn, const coll_rec *rec)
{
    uint64_t free_ids;
    int rc = catalog_count_free(db, txn, rec->id, &free_ids);
    if (rc != 0)
        return eng_status(db, rc, "counting free ids");
    if (rec->count + free_ids != rec->next_iid)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "the next internal id %u "
                       "is not the %llu documents plus %llu free ids",
                       rec->next_iid, (unsigned long long)rec->count,
                       (unsigned long long)free_ids);
    return QV_OK;
}

/* Store the format in a database that is still empty (nothing was ever
 * created in it: META holds no counter), unless another process did. */
static int write_format(MDB_txn *txn, void *ctx)
{
    MDB_dbi meta = *(MDB_dbi *)ctx;
    MDB_stat ms;
    int rc = mdb_stat(txn, meta, &ms);
    if (rc != 0 || ms.ms_entries != 0)
        return rc;
    uint32_t format = QV_FORMAT;
    MDB_val key = {strlen(META_FORMAT), META_FORMAT};
    MDB_val val = {sizeof format, &format};
    return mdb_put(txn, meta, &key, &val, 0);
}

qv_status catalog_check_format(eng_db *db)
{
    MDB_dbi meta = st_dbi(db->env, ST_DB_META);
    MDB_txn *txn;
    int rc = st_read_begin(db->env, &txn);
    if (rc != 0)
        return eng_status(NULL, rc, "reading the database's format");
    MDB_val key = {strlen(META_FORMAT), META_FORMAT}, val;
    MDB_stat ms = {0};
    uint32_t format = 1;  /* format 1 predates the key */
    rc = mdb_get(txn, meta, &key, &val);
    int format_absent = rc == MDB_NOTFOUND;
    if (rc == 0 && meta_u32_decode(&val, &format) != 0)
        rc = MDB_CORRUPTED;
    else if (rc == MDB_NOTFOUND)
        rc = mdb_stat(txn, meta, &ms);
    st_read_end(db->env, txn);
    const char *path = st_path(db->env);
    if (rc == MDB_CORRUPTED || format == 0)
        return qv_fail(NULL, QV_ERR_CORRUPT, "%s: the database's format "
                       "record is malformed (%zu bytes)", path,
                       rc == MDB_CORRUPTED ? val.mv_size : sizeof format);
    if (rc != 0)
        return eng_status(NULL, rc, "reading the database's format");
    if (format > QV_FORMAT)
        return qv_fail(NULL, QV_ERR_UNSUPPORTED, "%s: database format %u is "
                       "newer than this version of Quiver reads (%u); open "
                       "it with a newer version", path, format, QV_FORMAT);
    /* a new database records its format; an older one is not written to
     * by opening it, nor is anything by a read-only open */
    if (ms.ms_entries == 0 && format_absent && !(db->base.flags & QV_OPEN_READONLY))
        return eng_status(NULL, st_write(db->env, write_format, &meta),
                          "recording the database's format");
    return QV_OK;
}
