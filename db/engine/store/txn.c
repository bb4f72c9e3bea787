#include "db/engine/store/txn.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/alloc.h"
#include "db/core/error.h"
#include "db/engine/store/pindex.h"
#include "storage/keys.h"

/*
 * LMDB reports a short write as EIO. Tell a full disk, or a data file at
 * the process's file size limit, from a failing one: NULL when neither.
 */
static const char *why_full(eng_db *db)
{
    struct st_figures f;
    struct statvfs vfs;
    struct rlimit lim;
    const char *path = st_path(db->env);
    st_figures(db->env, &f);
    if (path && statvfs(path, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < (64u << 20))
        return "the disk is full";
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        f.file_bytes + (1u << 20) >= (uint64_t)lim.rlim_cur)
        return "the data file reached this process's file size limit";
    return NULL;
}

/* eng_status, with tail after the message (not for a full disk, whose
 * message says what was stored). */
static qv_status status_of(eng_db *db, int rc, const char *doing,
                           const char *tail)
{
    const void *owner = db ? &db->base : NULL;
    qv_status st;
    /* a write that fails at its first byte passes EFBIG or ENOSPC through;
     * one cut short comes back from LMDB as EIO */
    const char *full = db && (rc == EIO || rc == EFBIG || rc == ENOSPC ||
                              rc == EDQUOT)
                           ? why_full(db) : NULL;
    if (full)
        return qv_fail(owner, QV_ERR_FULL, "%s: %s (nothing of this write "
                       "was stored)", doing, full);
    if (rc == MDB_PANIC)   /* LMDB refuses every transaction from now on */
        return qv_fail(owner, QV_ERR_IO, "%s: an earlier write of the "
                       "database file failed where LMDB cannot go on (%s); "
                       "close every handle on it and open it again", doing,
                       mdb_strerror(rc));
    switch (rc) {
    case 0:
        return QV_OK;
    case ENOMEM:
        st = QV_ERR_NOMEM;
        break;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case MDB_MAP_FULL:
        st = QV_ERR_FULL;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_BAD_VALSIZE:
        st = QV_ERR_CORRUPT;
        break;
    case EACCES:
    case EROFS:
        st = QV_ERR_IO;
        break;
    default:
        st = rc > 0 ? QV_ERR_IO : QV_ERR_INTERNAL;
        break;
    }
    return qv_fail(owner, st, "%s: %s%s", doing, st_strerror(rc), tail);
}

qv_status eng_status(eng_db *db, int rc, const char *doing)
{
    return status_of(db, rc, doing, "");
}

/* ---- log positions (qv_position_*) ---- */

#define POSITION_KEY_MAX (sizeof META_POSITION_PREFIX + QV_NAME_MAX)

/* The position the next write transaction of this thread on db stores. */
struct staged_position {
    const eng_db *db;     /* NULL: nothing staged */
    char key[POSITION_KEY_MAX];
    uint64_t value;
};

static _Thread_local struct staged_position staged;

static MDB_val position_key(char *key, const char *name)
{
    int n = snprintf(key, POSITION_KEY_MAX, "%s%s", META_POSITION_PREFIX,
                     name);
    return (MDB_val){(size_t)n, key};
}

/* A write's own function, then the position staged for it. */
struct positioned_write {
    st_write_fn fn;
    void *ctx;
    eng_db *db;
    struct staged_position pos;
};

static int store_position(eng_db *db, MDB_txn *txn, const char *key,
                          uint64_t value)
{
    MDB_val k = {strlen(key), (void *)key}, v = {sizeof value, &value};
    return mdb_put(txn, st_dbi(db->env, ST_DB_META), &k, &v, 0);
}

static int positioned_txn(MDB_txn *txn, void *arg)
{
    struct positioned_write *w = arg;
    int rc = w->fn(txn, w->ctx);
    return rc ? rc : store_position(w->db, txn, w->pos.key, w->pos.value);
}

qv_status eng_position_get(qv_db *base, const char *name, uint64_t *value)
{
    eng_db *db = (eng_db *)base;
    char key[POSITION_KEY_MAX];
    MDB_val k = position_key(key, name), v;
    MDB_txn *txn;
    qv_status st = eng_read_begin(db, &txn, "reading a position");
    if (st != QV_OK)
        return st;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_META), &k, &v);
    uint64_t found = 0;
    if (rc == 0)
        rc = meta_u64_decode(&v, &found);
    st_read_end(db->env, txn);
    if (rc == MDB_CORRUPTED)
        return qv_fail(base, QV_ERR_CORRUPT, "position '%s' is %zu bytes, "
                       "not 8", name, v.mv_size);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return eng_status(db, rc, "reading a position");
    *value = found;
    return QV_OK;
}

void eng_position_unstage(const eng_db *db)
{
    if (staged.db == db)
        staged.db = NULL;
}

static int put_position_txn(MDB_txn *txn, void *arg)
{
    struct positioned_write *w = arg;
    return store_position(w->db, txn, w->pos.key, w->pos.value);
}

qv_status eng_position_put(qv_db *base, const char *name, uint64_t value,
                           int stage)
{
    eng_db *db = (eng_db *)base;
    struct positioned_write w = {.db = db, .pos = {db, "", value}};
    position_key(w.pos.key, name);
    staged.db = NULL;
    if (stage) {
        staged = w.pos;
        return QV_OK;
    }
    qv_status never_aborts = QV_OK;
    return eng_write(db, put_position_txn, &w, &never_aborts,
                     "storing a position");
}

/* An embedded handle reads its own database: always up to date. */
qv_status eng_write_token(qv_db *base, uint64_t *token)
{
    (void)base;
    *token = 0;
    return QV_OK;
}

qv_status eng_read_after(qv_db *base, uint64_t token)
{
    (void)base, (void)token;
    return QV_OK;
}

qv_status eng_cluster_status(qv_db *base, char **json)
{
    (void)json;
    return qv_fail(base, QV_ERR_UNSUPPORTED, "an embedded handle is not a "
                   "cluster node; ask a quiverd started with --cluster");
}

qv_status eng_cluster_drain(qv_db *base, const char *node, int cancel)
{
    (void)node, (void)cancel;
    return eng_cluster_status(base, NULL);
}

qv_status eng_write(eng_db *db, st_write_fn fn, void *ctx,
                    const qv_status *fn_status, const char *doing)
{
    struct positioned_write w = {fn, ctx, db, staged};
    if (staged.db == db) {   /* this transaction spends the stage */
        staged.db = NULL;
        fn = positioned_txn;
        ctx = &w;
    }
    int rc = st_write(db->env, fn, ctx);
    if (rc == ST_ABORT)
        return *fn_status;
    return status_of(db, rc, doing, " (nothing of this write was stored)");
}

qv_status eng_read_begin(eng_db *db, MDB_txn **txn, const char *doing)
{
    return eng_status(db, st_read_begin(db->env, txn), doing);
}

qv_status coll_check_dim(eng_db *db, const char *name, const coll_rec *rec,
                         const char *what, uint32_t dim)
{
    if (dim == rec->dim)
        return QV_OK;
    return qv_fail(&db->base, QV_ERR_DIMENSION,
                   "%svector has dimension %u; collection '%s' has %u", what,
                   dim, name, rec->dim);
}

unsigned eng_threads(const eng_db *db)
{
    return db->threads;
}

unsigned eng_default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

qv_status vector_record_check(eng_db *db, const MDB_val *val, uint32_t dim,
                              uint32_t iid)
{
    switch (vector_record_fault(val, dim)) {
    case REC_OK:
        return QV_OK;
    case REC_ALIGN:
        return qv_fail(&db->base, QV_ERR_CORRUPT, "the vector record of "
                       "internal id %u lies misaligned in its page, beside "
                       "a record of a size Quiver never writes", iid);
    default:
        return qv_fail(&db->base, QV_ERR_CORRUPT, "the vector record of "
                       "internal id %u is %zu bytes, expected %zu", iid,
                       val->mv_size, (size_t)dim * sizeof(float));
    }
}

int ids_entry_iid(const MDB_val *val, const coll_rec *rec, uint32_t *iid)
{
    if (ids_value_decode(val, iid) != 0)
        return MDB_CORRUPTED;
    return *iid < rec->next_iid ? 0 : MDB_CORRUPTED;
}

int eng_walk_range(eng_db *db, MDB_txn *txn, enum st_db which, uint32_t coll,
                   void (*fn)(void *ctx, const MDB_val *key,
                              const MDB_val *val),
                   void *ctx)
{
    MDB_cursor *cur;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, coll);
    int rc = mdb_cursor_open(txn, st_dbi(db->env, which), &cur);
    if (rc != 0)
        return rc;
    MDB_val key = {sizeof prefix, prefix}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size < KEY_COLL_LEN || memcmp(key.mv_data, prefix,
                                                 sizeof prefix))
            break;
        fn(ctx, &key, &val);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int eng_next_id(eng_db *db, MDB_txn *txn, const char *name, uint32_t *id)
{
    MDB_dbi meta = st_dbi(db->env, ST_DB_META);
    MDB_val key = {strlen(name), (void *)name}, val;
    uint32_t next = 1;
    int rc = mdb_get(txn, meta, &key, &val);
    if (rc == 0)
        rc = meta_u32_decode(&val, &next);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    *id = next++;
    val = (MDB_val){sizeof next, &next};
    return mdb_put(txn, meta, &key, &val, 0);
}
