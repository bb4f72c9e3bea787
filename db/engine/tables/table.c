/*
 * table.c - embedding tables for the embedded transport.
 *
 * A table is a record (sub-db tables: its method, sizes, optimizer, step
 * and generation) and its slabs of fixed-size rows (ann/embed.h), kept in
 * LMDB in chunks of about 4 KiB (sub-db tchunks, key [table][slab]
 * [chunk]). For lookups at memory speed each process holds the slabs in
 * memory, loaded at first use and again when another process's update
 * shows a newer generation. An update changes the memory copy inside its
 * write transaction (lookups in this process wait for that, on the
 * table's lock), writes the chunks of every row it touched and bumps the
 * generation. The lock is released before the commit, since holding it
 * while a full map grows could deadlock with a lookup's snapshot; so a
 * lookup in the same process may see an update an instant before it
 * commits, and an update that then fails leaves the copy marked stale, to
 * be loaded again from LMDB.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "ann/embed.h"
#include "db/engine/store/txn.h"
#include "db/core/error.h"
#include "storage/keys.h"
#include "db/engine/tables/table.h"

#define CHUNK_BYTES 4096

/* ---- records ---- */

static void rec_to_spec(const tbl_rec *r, emb_spec *s)
{
    *s = (emb_spec){(enum emb_method)r->method, r->param, r->rows, r->dim,
                    (enum emb_optimizer)r->optimizer, r->lr, r->init,
                    r->seed};
}

static qv_status table_get(eng_db *db, MDB_txn *txn, const char *name,
                           tbl_rec *rec)
{
    MDB_val key = {strlen(name), (void *)name}, val;
    int rc = mdb_get(txn, st_dbi(db->env, ST_DB_TABLES), &key, &val);
    if (rc == MDB_NOTFOUND)
        return qv_fail(&db->base, QV_ERR_NOT_FOUND, "table '%s' does not "
                       "exist", name);
    if (rc != 0)
        return eng_status(db, rc, "reading a table");
    enum rec_fault fault = tbl_rec_decode(&val, rec);
    if (fault == REC_SIZE)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "table record of '%s' is "
                       "%zu bytes, expected %zu", name, val.mv_size,
                       sizeof *rec);
    if (fault != REC_OK)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "table record of '%s' "
                       "fails its checksum", name);
    /* what create accepts, before any size in it is used */
    emb_spec spec;
    char why[160];
    rec_to_spec(rec, &spec);
    if (emb_check_spec(&spec, QV_TABLE_BYTES_MAX, QV_TABLE_DIM_MAX, why,
                       sizeof why) != 0)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "table record of '%s': %s",
                       name, why);
    return QV_OK;
}

static int table_put(eng_db *db, MDB_txn *txn, const char *name,
                     const tbl_rec *rec)
{
    tbl_rec sealed = tbl_rec_seal(rec);
    MDB_val key = {strlen(name), (void *)name}, val = {sizeof sealed, &sealed};
    return mdb_put(txn, st_dbi(db->env, ST_DB_TABLES), &key, &val, 0);
}

static uint64_t chunk_rows(const emb_slab *s)
{
    uint64_t n = CHUNK_BYTES / s->row_bytes;
    return n ? n : 1;
}

static void chunk_key(unsigned char *k, uint32_t table, uint32_t slab,
                      uint64_t chunk)
{
    key_put_u32(k, table);
    k[4] = (unsigned char)slab;
    key_put_u32(k + 5, (uint32_t)(chunk >> 32));
    key_put_u32(k + 9, (uint32_t)chunk);
}

/* Write chunk c of slab s from memory. */
static int put_chunk(eng_db *db, MDB_txn *txn, uint32_t table,
                     const emb_table *t, uint32_t s, uint64_t c)
{
    const emb_slab *sl = &t->slab[s];
    uint64_t per = chunk_rows(sl), first = c * per;
    uint64_t n = sl->rows - first < per ? sl->rows - first : per;
    unsigned char k[CHUNK_KEY_LEN];
    chunk_key(k, table, s, c);
    MDB_val key = {sizeof k, k};
    MDB_val val = {n * sl->row_bytes, sl->data + first * sl->row_bytes};
    return mdb_put(txn, st_dbi(db->env, ST_DB_TCHUNKS), &key, &val, 0);
}

/* Fill the slabs of t from LMDB; every chunk must be there, and what
 * lookups index with valid (emb_check_data). */
static qv_status load_slabs(eng_db *db, MDB_txn *txn, uint32_t table,
                            emb_table *t)
{
    char err[160];
    MDB_dbi dbi = st_dbi(db->env, ST_DB_TCHUNKS);
    for (uint32_t s = 0; s < t->nslabs; s++) {
        emb_slab *sl = &t->slab[s];
        uint64_t per = chunk_rows(sl), chunks = (sl->rows + per - 1) / per;
        for (uint64_t c = 0; c < chunks; c++) {
            unsigned char k[CHUNK_KEY_LEN];
            chunk_key(k, table, s, c);
            MDB_val key = {sizeof k, k}, val;
            uint64_t first = c * per;
            uint64_t n = sl->rows - first < per ? sl->rows - first : per;
            int rc = mdb_get(txn, dbi, &key, &val);
            if (rc == 0 && val.mv_size != n * sl->row_bytes)
                rc = MDB_CORRUPTED;
            if (rc == MDB_NOTFOUND || rc == MDB_CORRUPTED)
                return qv_fail(&db->base, QV_ERR_CORRUPT, "table chunk %llu "
                               "of slab %u is missing or malformed",
                               (unsigned long long)c, s);
            if (rc != 0)
                return eng_status(db, rc, "loading a table");
            memcpy(sl->data + first * sl->row_bytes, val.mv_data,
                   val.mv_size);
        }
    }
    if (emb_check_data(t, err, sizeof err) != 0)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "table chunks: %s", err);
    return QV_OK;
}

/* ---- tables in memory ---- */

typedef struct live_table {
    uint32_t id;
    emb_table t;
    uint64_t generation;
    atomic_int stale;
    pthread_rwlock_t lock;   /* lookups shared, updates exclusive */
    struct live_table *next;
} live_table;

typedef struct table_registry {
    pthread_mutex_t lock;
    live_table *tables;
} table_registry;

static void live_free(live_table *lt)
{
    emb_release(&lt->t);
    pthread_rwlock_destroy(&lt->lock);
    qv_mem_free(lt);
}

static void *registry_create(void)
{
    table_registry *r = qv_calloc(1, sizeof *r);
    if (r)
        pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void registry_free(void *arg)
{
    table_registry *r = arg;
    for (live_table *lt = r->tables, *next; lt; lt = next) {
        next = lt->next;
        live_free(lt);
    }
    pthread_mutex_destroy(&r->lock);
    qv_mem_free(r);
}

static table_registry *registry(eng_db *db)
{
    return st_env_user(db->env, ST_USER_TABLES, registry_create,
                       registry_free);
}

/* Make lt current for rec (loading when needed); r->lock held. */
static qv_status refresh(eng_db *db, MDB_txn *txn, const tbl_rec *rec,
                         live_table *lt)
{
    if (!lt->stale && lt->generation == rec->generation && lt->t.nslabs)
        return QV_OK;
    emb_spec spec;
    emb_table fresh;
    char err[160];
    rec_to_spec(rec, &spec);
    if (emb_layout(&spec, &fresh, err, sizeof err) != 0)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "table record: %s", err);
    if (emb_alloc(&fresh) != 0)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory loading a "
                       "table");
    qv_status st = load_slabs(db, txn, rec->id, &fresh);
    if (st != QV_OK) {
        emb_release(&fresh);
        return st;
    }
    fresh.step = rec->step;
    emb_release(&lt->t);
    lt->t = fresh;
    lt->generation = rec->generation;
    lt->stale = 0;
    return QV_OK;
}

/*
 * The table of rec in memory, current for txn, locked shared (or
 * exclusive); unlock with pthread_rwlock_unlock(&lt->lock).
 */
static qv_status acquire(eng_db *db, MDB_txn *txn, const tbl_rec *rec,
                         int exclusive, live_table **out)
{
    table_registry *r = registry(db);
    if (!r)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&r->lock);
    live_table *lt = r->tables;
    while (lt && lt->id != rec->id)
        lt = lt->next;
    if (!lt && (lt = qv_calloc(1, sizeof *lt))) {
        lt->id = rec->id;
        pthread_rwlock_init(&lt->lock, NULL);
        lt->next = r->tables;
        r->tables = lt;
    }
    qv_status st = lt ? QV_OK : qv_fail(&db->base, QV_ERR_NOMEM,
                                        "out of memory");
    if (st == QV_OK) {
        pthread_rwlock_wrlock(&lt->lock);
        st = refresh(db, txn, rec, lt);
        pthread_rwlock_unlock(&lt->lock);
    }
    pthread_mutex_unlock(&r->lock);
    if (st != QV_OK)
        return st;
    if (exclusive)
        pthread_rwlock_wrlock(&lt->lock);
    else
        pthread_rwlock_rdlock(&lt->lock);
    *out = lt;
    return QV_OK;
}

static void forget(eng_db *db, uint32_t id)
{
    table_registry *r = registry(db);
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    for (live_table **p = &r->tables; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            live_table *lt = *p;
            *p = lt->next;
            live_free(lt);
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

/* ---- create, drop, describe ---- */

struct create_ctx {
    eng_db *db;
    const char *name;
    const qv_table_config *cfg;
    qv_status status;
};

static int create_txn(MDB_txn *txn, void *arg)
{
    struct create_ctx *c = arg;
    MDB_val key = {strlen(c->name), (void *)c->name}, val;
    int rc = mdb_get(txn, st_dbi(c->db->env, ST_DB_TABLES), &key, &val);
    if (rc == 0) {
        c->status = qv_fail(&c->db->base, QV_ERR_EXISTS, "table '%s' already "
                            "exists", c->name);
        return ST_ABORT;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    tbl_rec rec = {.format = TABLE_FORMAT, .dim = c->cfg->dim,
                   .rows = c->cfg->rows, .optimizer = c->cfg->optimizer,
                   .lr = c->cfg->learning_rate, .init = c->cfg->init,
                   .seed = c->cfg->seed};
    emb_spec spec;
    rec_to_spec(&rec, &spec);
    char err[160];
    emb_table t;
    if (emb_parse_method(c->cfg->method, &spec, err, sizeof err) != 0 ||
        emb_layout(&spec, &t, err, sizeof err) != 0) {
        c->status = qv_fail(&c->db->base, QV_ERR_INVALID, "%s", err);
        return ST_ABORT;
    }
    rec.method = spec.method;
    rec.param = spec.param;
    if (emb_alloc_init(&t) != 0) {
        c->status = qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory for "
                            "the table");
        return ST_ABORT;
    }
    rc = eng_next_id(c->db, txn, META_NEXT_TABLE, &rec.id);
    for (uint32_t s = 0; s < t.nslabs && rc == 0; s++) {
        uint64_t per = chunk_rows(&t.slab[s]);
        for (uint64_t ch = 0; ch * per < t.slab[s].rows && rc == 0; ch++)
            rc = put_chunk(c->db, txn, rec.id, &t, s, ch);
    }
    emb_release(&t);
    if (rc == 0)
        rc = table_put(c->db, txn, c->name, &rec);
    return rc;
}

qv_status table_create(qv_db *base, const char *name,
                       const qv_table_config *config)
{
    eng_db *db = (eng_db *)base;
    struct create_ctx c = {db, name, config, QV_OK};
    if (config->shards)
        return qv_fail(base, QV_ERR_UNSUPPORTED, "shards and replicas need a "
                       "cluster node (quiverd --cluster); this database is a "
                       "single node");
    return eng_write(db, create_txn, &c, &c.status, "creating a table");
}

struct drop_ctx {
    eng_db *db;
    const char *name;
    uint32_t id;
    qv_status status;
};

static int drop_txn(MDB_txn *txn, void *arg)
{
    struct drop_ctx *c = arg;
    tbl_rec rec;
    c->status = table_get(c->db, txn, c->name, &rec);
    if (c->status != QV_OK)
        return ST_ABORT;
    c->id = rec.id;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, rec.id);
    int rc = st_delete_prefix(txn, st_dbi(c->db->env, ST_DB_TCHUNKS), prefix,
                              sizeof prefix);
    MDB_val key = {strlen(c->name), (void *)c->name};
    if (rc == 0)
        rc = mdb_del(txn, st_dbi(c->db->env, ST_DB_TABLES), &key, NULL);
    return rc;
}

qv_status table_drop(qv_db *base, const char *name)
{
    eng_db *db = (eng_db *)base;
    struct drop_ctx c = {db, name, 0, QV_OK};
    qv_status st = eng_write(db, drop_txn, &c, &c.status, "dropping a table");
    if (st == QV_OK)
        forget(db, c.id);
    return st;
}

/* info of the table name, from its record. */
static qv_status fill_info(eng_db *db, const char *name, const tbl_rec *rec,
                           qv_table_info *info)
{
    emb_spec spec;
    emb_table t;
    char err[160];
    rec_to_spec(rec, &spec);
    if (emb_layout(&spec, &t, err, sizeof err) != 0)
        return qv_fail(&db->base, QV_ERR_CORRUPT, "table record: %s", err);
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", name);
    emb_format_method(&spec, info->method);
    info->rows = rec->rows;
    info->dim = rec->dim;
    info->optimizer = (qv_optimizer)rec->optimizer;
    info->learning_rate = rec->lr;
    info->param_bytes = emb_param_bytes(&t);
    info->optimizer_bytes = emb_state_bytes(&t);
    info->ratio = emb_ratio(&t);
    info->updates = rec->step;
    return QV_OK;
}

qv_status table_describe(qv_db *base, const char *name, qv_table_info *info)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    tbl_rec rec;
    qv_status st = eng_read_begin(db, &txn, "describing a table");
    if (st != QV_OK)
        return st;
    st = table_get(db, txn, name, &rec);
    st_read_end(db->env, txn);
    return st == QV_OK ? fill_info(db, name, &rec, info) : st;
}

/* Describe every table of sub-db tables, in key (name) order, into list,
 * which holds n entries: as many as the snapshot has. */
static qv_status list_into(eng_db *db, MDB_txn *txn, qv_table_info *list,
                           size_t n)
{
    MDB_cursor *cur;
    MDB_val key, val;
    size_t i = 0;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_TABLES), &cur);
    if (rc != 0)
        return eng_status(db, rc, "listing tables");
    qv_status st = QV_OK;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
         rc == 0 && st == QV_OK && i < n;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), i++) {
        char name[QV_NAME_MAX + 1];
        tbl_rec rec;
        if (key.mv_size == 0 || key.mv_size > QV_NAME_MAX) {
            st = qv_fail(&db->base, QV_ERR_CORRUPT, "table entry %zu has a "
                         "name of %zu bytes", i, key.mv_size);
            break;
        }
        memcpy(name, key.mv_data, key.mv_size);
        name[key.mv_size] = '\0';
        st = table_get(db, txn, name, &rec);
        if (st == QV_OK)
            st = fill_info(db, name, &rec, &list[i]);
    }
    mdb_cursor_close(cur);
    if (st == QV_OK && rc != 0 && rc != MDB_NOTFOUND)
        st = eng_status(db, rc, "listing tables");
    return st;
}

qv_status table_list(qv_db *base, qv_table_info **out, size_t *count)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    MDB_stat ms;
    qv_table_info *list = NULL;
    qv_status st = eng_read_begin(db, &txn, "listing tables");
    if (st != QV_OK)
        return st;
    int rc = mdb_stat(txn, st_dbi(db->env, ST_DB_TABLES), &ms);
    if (rc != 0)
        st = eng_status(db, rc, "listing tables");
    else if (ms.ms_entries > 0 &&
             !(list = qv_calloc(ms.ms_entries, sizeof *list)))
        st = qv_fail(base, QV_ERR_NOMEM, "listing tables: out of memory");
    else if (ms.ms_entries > 0)
        st = list_into(db, txn, list, ms.ms_entries);
    st_read_end(db->env, txn);
    if (st != QV_OK) {
        qv_mem_free(list);
        return st;
    }
    *out = list;
    *count = rc == 0 ? ms.ms_entries : 0;
    return QV_OK;
}

/* ---- lookup ---- */

static qv_status check_ids(eng_db *db, const tbl_rec *rec, const char *name,
                           const uint64_t *ids, size_t n, uint32_t dim)
{
    if (dim != rec->dim)
        return qv_fail(&db->base, QV_ERR_DIMENSION, "table '%s' has "
                       "dimension %u, not %u", name, rec->dim, dim);
    emb_spec spec;
    rec_to_spec(rec, &spec);
    for (size_t i = 0; i < n && emb_ids_are_rows(&spec); i++) {
        if (ids[i] >= rec->rows)
            return qv_fail(&db->base, QV_ERR_INVALID, "id %zu (%llu) is "
                           "beyond the table's %llu rows", i,
                           (unsigned long long)ids[i],
                           (unsigned long long)rec->rows);
    }
    return QV_OK;
}

qv_status table_lookup(qv_db *base, const char *name, const uint64_t *ids,
                       size_t n, uint32_t dim, float *out)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    tbl_rec rec;
    live_table *lt;
    qv_status st = eng_read_begin(db, &txn, "looking up a table");
    if (st != QV_OK)
        return st;
    st = table_get(db, txn, name, &rec);
    if (st == QV_OK)
        st = check_ids(db, &rec, name, ids, n, dim);
    if (st == QV_OK && (st = acquire(db, txn, &rec, 0, &lt)) == QV_OK) {
        emb_lookup(&lt->t, ids, n, out);
        pthread_rwlock_unlock(&lt->lock);
    }
    st_read_end(db->env, txn);
    return st;
}

/* ---- update and load ---- */

static int by_touch(const void *pa, const void *pb)
{
    const emb_touch *a = pa, *b = pb;
    if (a->slab != b->slab)
        return a->slab < b->slab ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

/* Write the chunks holding the touched rows, each once. */
static int write_touched(eng_db *db, MDB_txn *txn, const tbl_rec *rec,
                         const emb_table *t, emb_touch *touched, size_t n)
{
    qsort(touched, n, sizeof *touched, by_touch);
    int rc = 0;
    uint32_t last_slab = UINT32_MAX;
    uint64_t last_chunk = UINT64_MAX;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t c = touched[i].row / chunk_rows(&t->slab[touched[i].slab]);
        if (touched[i].slab == last_slab && c == last_chunk)
            continue;
        last_slab = touched[i].slab;
        last_chunk = c;
        rc = put_chunk(db, txn, rec->id, t, last_slab, c);
    }
    return rc;
}

/* Whether every touched row holds finite values (a huge gradient could
 * overflow one). */
static int touched_finite(const emb_table *t, const emb_touch *touched,
                          size_t n)
{
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        const emb_slab *sl = &t->slab[touched[i].slab];
        if (t->spec.method == EMB_ADAPT && !sl->state && touched[i].slab >= 2)
            continue;   /* counters and the id map */
        const uint8_t *p = sl->data + touched[i].row * sl->row_bytes;
        size_t nf = sl->row_bytes / 4;
        if (t->spec.method >= EMB_INT8 && t->spec.method <= EMB_ALPT16 &&
            !sl->state)
            nf = 1;   /* the scale */
        if (t->spec.method == EMB_PRUNE && !sl->state) {
            p += 2 * t->prune_k;
            nf = t->prune_k;
        }
        for (size_t j = 0; j < nf && ok; j++) {
            float v;
            memcpy(&v, p + 4 * j, 4);
            ok = isfinite(v);
        }
    }
    return ok;
}

struct update_ctx {
    eng_db *db;
    const char *name;
    const uint64_t *ids;
    size_t n;
    uint32_t dim;
    const float *grads;      /* update */
    const float *rows;       /* load */
    uint64_t first;
    qv_status status;
    live_table *locked;      /* the table this attempt changed */
};

static qv_status apply_update(struct update_ctx *c, MDB_txn *txn,
                              tbl_rec *rec, emb_table *t)
{
    size_t bound = emb_touch_bound(t, c->n);
    emb_touch *touched = qv_malloc(bound * sizeof *touched);
    long nt = touched ? emb_update(t, c->ids, c->n, c->grads, touched) : -1;
    qv_status st = QV_OK;
    if (nt < 0)
        st = qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory for the "
                     "update");
    else if (!touched_finite(t, touched, (size_t)nt))
        st = qv_fail(&c->db->base, QV_ERR_INVALID, "the update would make "
                     "parameters non-finite (a gradient too large for the "
                     "learning rate); nothing changed");
    int rc = st == QV_OK ? write_touched(c->db, txn, rec, t, touched,
                                         (size_t)nt)
                         : 0;
    if (rc != 0)
        st = eng_status(c->db, rc, "updating a table");
    rec->step = t->step;
    qv_mem_free(touched);
    return st;
}

/* Encode rows first .. first+n-1 through the method (load). */
static qv_status apply_load(struct update_ctx *c, MDB_txn *txn, tbl_rec *rec,
                            emb_table *t)
{
    size_t d = t->spec.dim;
    emb_touch *touched = qv_malloc((c->n ? c->n : 1) * sizeof *touched);
    if (!touched)
        return qv_fail(&c->db->base, QV_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->n; i++) {
        emb_set_row(t, c->first + i, c->rows + i * d);
        touched[i] = (emb_touch){0, c->first + i};
    }
    int rc = write_touched(c->db, txn, rec, t, touched, c->n);
    qv_mem_free(touched);
    return rc ? eng_status(c->db, rc, "loading a table") : QV_OK;
}

static qv_status check_load(eng_db *db, const tbl_rec *rec, const char *name,
                            uint64_t first, size_t n, uint32_t dim);

static int update_txn(MDB_txn *txn, void *arg)
{
    struct update_ctx *c = arg;
    tbl_rec rec;
    if (c->locked)   /* an earlier attempt was undone (map growth) */
        c->locked->stale = 1;
    c->locked = NULL;
    c->status = table_get(c->db, txn, c->name, &rec);
    if (c->status == QV_OK && c->grads)
        c->status = check_ids(c->db, &rec, c->name, c->ids, c->n, c->dim);
    if (c->status == QV_OK && c->rows)
        c->status = check_load(c->db, &rec, c->name, c->first, c->n, c->dim);
    if (c->status == QV_OK)
        c->status = acquire(c->db, txn, &rec, 1, &c->locked);
    if (c->status != QV_OK)
        return ST_ABORT;
    emb_table *t = &c->locked->t;
    c->status = c->grads ? apply_update(c, txn, &rec, t)
                         : apply_load(c, txn, &rec, t);
    int rc = ST_ABORT;
    if (c->status == QV_OK) {
        rec.generation++;
        c->locked->generation = rec.generation;
        rc = table_put(c->db, txn, c->name, &rec);
    }
    if (rc != 0)
        c->locked->stale = 1;   /* memory may be ahead: reload */
    pthread_rwlock_unlock(&c->locked->lock);
    return rc;
}

static qv_status run_update(eng_db *db, struct update_ctx *c,
                            const char *doing)
{
    qv_status st = eng_write(db, update_txn, c, &c->status, doing);
    if (c->locked && st != QV_OK)
        c->locked->stale = 1;   /* the commit failed */
    return st;
}

qv_status table_update(qv_db *base, const char *name, const uint64_t *ids,
                       size_t n, uint32_t dim, const float *grads)
{
    eng_db *db = (eng_db *)base;
    struct update_ctx c = {.db = db, .name = name, .ids = ids, .n = n,
                           .dim = dim, .grads = grads};
    return run_update(db, &c, "updating a table");
}

/* Whether rows first .. first+n-1 of dim can be loaded into rec. */
static qv_status check_load(eng_db *db, const tbl_rec *rec, const char *name,
                            uint64_t first, size_t n, uint32_t dim)
{
    emb_spec spec;
    rec_to_spec(rec, &spec);
    if (dim != rec->dim)
        return qv_fail(&db->base, QV_ERR_DIMENSION, "table '%s' has "
                       "dimension %u, not %u", name, rec->dim, dim);
    if (!emb_rows_are_own(&spec)) {
        char m[EMB_SPEC_MAX];
        emb_format_method(&spec, m);
        return qv_fail(&db->base, QV_ERR_UNSUPPORTED, "table '%s' (%s) "
                       "shares parameters between ids, so it cannot take "
                       "trained rows; train it in place, or load into full, "
                       "int8, int16, alpt or prune", name, m);
    }
    if (first > rec->rows || n > rec->rows - first)
        return qv_fail(&db->base, QV_ERR_INVALID, "rows %llu to %llu are "
                       "beyond the table's %llu rows",
                       (unsigned long long)first,
                       (unsigned long long)(first + n - 1),
                       (unsigned long long)rec->rows);
    return QV_OK;
}

qv_status table_load(qv_db *base, const char *name, uint64_t first, size_t n,
                     uint32_t dim, const float *rows)
{
    eng_db *db = (eng_db *)base;
    struct update_ctx c = {.db = db, .name = name, .n = n, .dim = dim,
                           .rows = rows, .first = first};
    return run_update(db, &c, "loading a table");
}

/* ---- qv_check ---- */

int table_verify(eng_db *db, MDB_txn *txn, void (*report)(void *ctx,
                                                          const char *name,
                                                          const char *what),
                 void *ctx, unsigned *tables)
{
    MDB_cursor *cur;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_TABLES), &cur);
    if (rc != 0)
        return rc;
    *tables = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        char name[QV_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)key.mv_size,
                 (const char *)key.mv_data);
        ++*tables;
        tbl_rec rec;
        if (table_get(db, txn, name, &rec) != QV_OK) {
            report(ctx, name, qv_error_message(&db->base));
            continue;
        }
        /* every chunk present, of its size, every parameter finite */
        emb_spec spec;
        emb_table t;
        char err[160];
        rec_to_spec(&rec, &spec);
        if (emb_layout(&spec, &t, err, sizeof err) != 0) {
            report(ctx, name, err);
            continue;
        }
        if (emb_alloc(&t) != 0) {
            rc = ENOMEM;
            break;
        }
        if (load_slabs(db, txn, rec.id, &t) != QV_OK)
            report(ctx, name, qv_error_message(&db->base));
        emb_release(&t);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}
