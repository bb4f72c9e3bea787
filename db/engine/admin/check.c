/*
 * check.c - qv_check for the embedded transport: every invariant that ties
 * a collection's records together, read from one snapshot.
 *
 *   ids      each external id maps to a distinct internal id below next_iid,
 *            whose document names the same external id and whose vector
 *            has the collection's size and only finite values;
 *   docs, vectors, graph: every record belongs to a mapped id;
 *   freeids  no free id is in use;
 *   counts   ids, documents, vectors and graph nodes all equal the count,
 *            and codes too with a trained codec (no graph and no codes
 *            before it is trained);
 *   records  catalog and graph records pass their checksums;
 *   graph    loaded afresh, it passes hnsw_check (degrees, neighbours,
 *            entry point, every node reachable);
 *   payload indexes: every document has the entries its payload calls
 *            for, and every entry belongs to such a document.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "ann/codec.h"
#include "db/engine/store/txn.h"
#include "db/core/error.h"
#include "db/engine/graphs/graph.h"
#include "storage/keys.h"
#include "db/engine/store/pindex.h"
#include "db/engine/tables/table.h"

#define MAX_LISTED 50

struct report {
    char *text;
    size_t len, cap;
    unsigned problems;
};

static void add_line(struct report *r, const char *fmt, va_list ap)
{
    char line[512];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n < 0)
        return;
    size_t need = r->len + (size_t)n + 2;
    if (need > r->cap) {
        size_t cap = need * 2;
        char *p = qv_realloc(r->text, cap);
        if (!p)
            return;
        r->text = p;
        r->cap = cap;
    }
    memcpy(r->text + r->len, line, (size_t)n);
    r->len += (size_t)n;
    r->text[r->len++] = '\n';
    r->text[r->len] = '\0';
}

static void problem(struct report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct report *r, const char *fmt, ...)
{
    va_list ap;
    if (++r->problems > MAX_LISTED)
        return;
    va_start(ap, fmt);
    add_line(r, fmt, ap);
    va_end(ap);
}

static void note(struct report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(struct report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_line(r, fmt, ap);
    va_end(ap);
}

struct coll_check {
    eng_db *db;
    MDB_txn *txn;
    const char *name;
    const coll_rec *rec;
    struct report *r;
    uint8_t *mapped;      /* per internal id: 1 when an id maps to it */
    uint64_t ids, docs, vectors, nodes, codes;
};

/* The internal id of a [coll][iid] key, or UINT32_MAX if malformed. */
static uint32_t key_iid(const MDB_val *key)
{
    uint32_t iid;
    return doc_key_decode(key, NULL, &iid) == 0 ? iid : UINT32_MAX;
}

static void check_vector(struct coll_check *c, const char *id, uint32_t iid,
                         const MDB_val *vec)
{
    if (vector_record_check(c->db, vec, c->rec->dim, iid) != QV_OK) {
        problem(c->r, "collection '%s': document '%s': %s", c->name, id,
                qv_error_message(&c->db->base));
        return;
    }
    const float *v = vec->mv_data;
    for (uint32_t i = 0; i < c->rec->dim; i++) {
        if (!isfinite(v[i])) {
            problem(c->r, "collection '%s': document '%s' has a non-finite "
                    "value at vector[%u]", c->name, id, i);
            return;
        }
    }
    /* a vector stored before the metric's bound was enforced: its
     * distances may be infinite or NaN, so searches misplace it */
    char why[160];
    if (vector_outside_rule(v, c->rec->dim, (qv_metric)c->rec->metric,
                            coll_f16_codes(c->rec), why, sizeof why))
        problem(c->r, "collection '%s': document '%s' is outside what the "
                "collection accepts (quiver.h, \"Which vectors\"): %s; "
                "replace or delete it", c->name, id, why);
}

static void visit_id(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct coll_check *c = ctx;
    char id[QV_ID_MAX + 1];
    size_t len = key->mv_size - KEY_COLL_LEN;
    snprintf(id, sizeof id, "%.*s", (int)(len < QV_ID_MAX ? len : QV_ID_MAX),
             (const char *)key->mv_data + KEY_COLL_LEN);
    uint32_t iid;
    c->ids++;
    if (len == 0 || len > QV_ID_MAX || ids_value_decode(val, &iid) != 0) {
        problem(c->r, "collection '%s': id map entry '%s' is malformed",
                c->name, id);
        return;
    }
    if (iid >= c->rec->next_iid) {
        problem(c->r, "collection '%s': id '%s' maps to internal %u, beyond "
                "the next id %u", c->name, id, iid, c->rec->next_iid);
        return;
    }
    if (c->mapped[iid]++)
        problem(c->r, "collection '%s': internal id %u is mapped twice (again "
                "by '%s')", c->name, iid, id);
    unsigned char k[KEY_DOC_LEN];
    key_doc(k, c->rec->id, iid);
    MDB_val dkey = {sizeof k, k}, doc, vec;
    if (mdb_get(c->txn, st_dbi(c->db->env, ST_DB_DOCS), &dkey, &doc) != 0) {
        problem(c->r, "collection '%s': id '%s' (internal %u) has no "
                "document", c->name, id, iid);
    } else {
        MDB_val named;
        if (doc_record_split(&doc, &named, NULL) != 0 ||
            named.mv_size != len ||
            memcmp(named.mv_data, (const char *)key->mv_data + KEY_COLL_LEN,
                   len))
            problem(c->r, "collection '%s': the document at internal %u does "
                    "not name id '%s'", c->name, iid, id);
    }
    if (mdb_get(c->txn, st_dbi(c->db->env, ST_DB_VECTORS), &dkey, &vec) != 0)
        problem(c->r, "collection '%s': id '%s' (internal %u) has no vector",
                c->name, id, iid);
    else
        check_vector(c, id, iid, &vec);
}

/* docs, vectors and graph records must belong to a mapped id. */
static void visit_owned(struct coll_check *c, const MDB_val *key,
                        const char *what, uint64_t *count)
{
    uint32_t iid = key_iid(key);
    ++*count;
    if (iid == UINT32_MAX || iid >= c->rec->next_iid || !c->mapped[iid])
        problem(c->r, "collection '%s': %s record at internal %u belongs to "
                "no id", c->name, what, iid);
}

static void visit_doc(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct coll_check *c = ctx;
    (void)val;
    visit_owned(c, key, "document", &c->docs);
}

static void visit_vector(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct coll_check *c = ctx;
    (void)val;
    visit_owned(c, key, "vector", &c->vectors);
}

static void visit_node(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct coll_check *c = ctx;
    size_t body;
    if (val->mv_size <= sizeof(uint32_t))
        problem(c->r, "collection '%s': graph record at internal %u is "
                "truncated", c->name, key_iid(key));
    else if (sealed_record_open(val, &body) != 0)
        problem(c->r, "collection '%s': graph record at internal %u fails"
                " its checksum", c->name, key_iid(key));
    visit_owned(c, key, "graph", &c->nodes);
}

static void visit_code(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct coll_check *c = ctx;
    codec_spec spec = {(enum codec_kind)c->rec->codec, c->rec->codec_param};
    size_t want = codec_spec_code_bytes(&spec, c->rec->dim);
    if (val->mv_size != want)
        problem(c->r, "collection '%s': code at internal %u is %zu bytes, "
                "not %zu", c->name, key_iid(key), val->mv_size, want);
    visit_owned(c, key, "code", &c->codes);
}

static void visit_free(void *ctx, const MDB_val *key, const MDB_val *val)
{
    struct coll_check *c = ctx;
    uint32_t iid = key_iid(key);
    (void)val;
    if (iid == UINT32_MAX || iid >= c->rec->next_iid)
        problem(c->r, "collection '%s': free id %u is beyond the next id %u",
                c->name, iid, c->rec->next_iid);
    else if (c->mapped[iid])
        problem(c->r, "collection '%s': internal id %u is both free and in "
                "use", c->name, iid);
}

static void check_counts(struct coll_check *c)
{
    /* no graph and no codes before a codec is trained; codes only with
     * a codec */
    uint64_t count = c->rec->count;
    uint64_t graph = coll_has_graph(c->rec) ? count : 0;
    uint64_t codes = c->rec->codec && c->rec->codec_trained ? count : 0;
    const struct { const char *what; uint64_t n, want; } parts[] = {
        {"ids", c->ids, count}, {"documents", c->docs, count},
        {"vectors", c->vectors, count}, {"graph nodes", c->nodes, graph},
        {"codes", c->codes, codes}};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        if (parts[i].n != parts[i].want)
            problem(c->r, "collection '%s': %llu %s where %llu belong (%llu "
                    "documents)", c->name, (unsigned long long)parts[i].n,
                    parts[i].what, (unsigned long long)parts[i].want,
                    (unsigned long long)count);
    }
}

static qv_status check_collection(eng_db *db, MDB_txn *txn, const char *name,
                                  struct report *r, uint64_t *docs)
{
    coll_rec rec;
    qv_status st = catalog_get(db, txn, name, &rec);
    if (st != QV_OK) {
        problem(r, "collection '%s': %s", name,
                qv_error_message(&db->base));
        return QV_OK;
    }
    struct coll_check c = {db, txn, name, &rec, r, NULL, 0, 0, 0, 0, 0};
    uint64_t free_ids;
    int rc = catalog_count_free(db, txn, rec.id, &free_ids);
    if (rc != 0)
        return eng_status(db, rc, "checking");
    if (rec.count + free_ids != rec.next_iid) {
        problem(r, "collection '%s': the next internal id %u is not the %llu "
                "documents plus %llu free ids", name, rec.next_iid,
                (unsigned long long)rec.count,
                (unsigned long long)free_ids);
        if (rec.next_iid > rec.count + free_ids)
            return QV_OK;   /* nothing is sized by a next id that large */
    }
    c.mapped = qv_calloc(rec.next_iid ? rec.next_iid : 1, 1);
    if (!c.mapped)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory checking '%s'",
                       name);
    rc = eng_walk_range(db, txn, ST_DB_IDS, rec.id, visit_id, &c);
    if (rc == 0)
        rc = eng_walk_range(db, txn, ST_DB_DOCS, rec.id, visit_doc, &c);
    if (rc == 0)
        rc = eng_walk_range(db, txn, ST_DB_VECTORS, rec.id, visit_vector, &c);
    if (rc == 0)
        rc = eng_walk_range(db, txn, ST_DB_GRAPH, rec.id, visit_node, &c);
    if (rc == 0)
        rc = eng_walk_range(db, txn, ST_DB_CODES, rec.id, visit_code, &c);
    if (rc == 0)
        rc = eng_walk_range(db, txn, ST_DB_FREEIDS, rec.id, visit_free, &c);
    qv_mem_free(c.mapped);
    if (rc != 0)
        return eng_status(db, rc, "checking");
    check_counts(&c);
    char err[256] = "";
    st = graph_check_snapshot(db, txn, &rec, err, sizeof err);
    if (st == QV_ERR_NOMEM)  /* the check could not run: not a finding */
        return qv_fail(&db->base, st, "checking '%s': %s", name, err);
    if (st != QV_OK)
        problem(r, "collection '%s': index: %s", name, err);
    unsigned bad;
    if (pindex_verify(db, txn, rec.id, &bad, err, sizeof err) != 0)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory checking the "
                       "payload indexes of '%s'", name);
    if (bad)
        problem(r, "collection '%s': %u payload index problems; the first: "
                "%s", name, bad, err);
    *docs += rec.count;
    return QV_OK;
}

static void table_problem(void *ctx, const char *name, const char *what)
{
    problem(ctx, "table '%s': %s", name, what);
}

/* Every collection named in the catalog, its record damaged or not (a
 * damaged one is a problem, where listing would fail). */
static qv_status check_collections(eng_db *db, MDB_txn *txn,
                                   struct report *r, size_t *n,
                                   uint64_t *docs)
{
    MDB_cursor *cur;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_CATALOG), &cur);
    if (rc != 0)
        return eng_status(db, rc, "checking the catalog");
    qv_status st = QV_OK;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
         rc == 0 && st == QV_OK;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), ++*n) {
        char name[QV_NAME_MAX + 1];
        if (key.mv_size > QV_NAME_MAX) {
            problem(r, "catalog entry %zu: a name of %zu bytes", *n,
                    key.mv_size);
            continue;
        }
        memcpy(name, key.mv_data, key.mv_size);
        name[key.mv_size] = '\0';
        st = check_collection(db, txn, name, r, docs);
    }
    mdb_cursor_close(cur);
    if (st == QV_OK && rc != MDB_NOTFOUND)
        st = eng_status(db, rc, "checking the catalog");
    return st;
}

qv_status check_database(qv_db *base, char **report)
{
    eng_db *db = (eng_db *)base;
    size_t n = 0;
    struct report r = {0};
    uint64_t docs = 0;
    MDB_txn *txn = NULL;
    qv_status st = eng_read_begin(db, &txn, "checking");
    if (st != QV_OK)
        return st;
    st = check_collections(db, txn, &r, &n, &docs);
    unsigned tables = 0;
    if (st == QV_OK) {
        int rc = table_verify(db, txn, table_problem, &r, &tables);
        if (rc != 0)
            st = eng_status(db, rc, "checking tables");
    }
    st_read_end(db->env, txn);
    if (st != QV_OK) {
        qv_mem_free(r.text);
        return st;
    }
    if (r.problems > MAX_LISTED)
        note(&r, "... and %u more problems", r.problems - MAX_LISTED);
    note(&r, "%s: %zu collections, %llu documents, %u embedding tables "
         "checked, %u problems", r.problems ? "FAILED" : "ok", n,
         (unsigned long long)docs, tables, r.problems);
    if (!r.text)
        return qv_fail(base, QV_ERR_NOMEM, "out of memory for the report");
    *report = r.text;
    if (r.problems)
        return qv_fail(base, QV_ERR_CORRUPT, "%u problems; the first: %.*s",
                       r.problems, (int)strcspn(r.text, "\n"), r.text);
    return QV_OK;
}
