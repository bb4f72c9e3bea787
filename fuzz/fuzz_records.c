/*
 * fuzz_records.c - libFuzzer target: the records Quiver reads back from
 * its database file (catalog, graph nodes, codec parameters, table
 * records and chunks, payload index records and entries, documents,
 * vectors, codes, ids, counters, the database format). A damaged record
 * must give a clear status (QV_ERR_CORRUPT, ...), never a crash, a hang
 * or a leak.
 *
 * A template database is built once: collections without a codec (with
 * payload indexes and deleted documents) and with f16, sq8, pq, bin and
 * prune codes, and embedding tables of every method, each updated. Its
 * file is kept in memory and written afresh before every input, which
 * then changes one record with LMDB directly:
 *
 *   byte 0     which record (of the template's, sampled: every record of
 *              the small sub-databases, the first, the last and every
 *              16th of each collection's or table's range in the others)
 *   byte 1     how, mod 4: 0 the value becomes the rest of the input;
 *              1 the same, with the record's checksum made valid again
 *              (catalog, graph, codec and table records carry one: this
 *              reaches the code behind it, as a bug writing a bad record
 *              would); 2 the record is deleted; 3 the record moves to the
 *              key the rest of the input gives
 *   bytes 2..  the new value or key
 *
 * The database is then opened, listed, checked and its stats read; the
 * collection or table the record belongs to (all of them for a database-
 * wide record or a moved one) is read (describe, get, searches exact,
 * approximate and filtered, count, scan; a table described and looked
 * up), written (new documents taking the free ids, a document's new
 * vector, a delete; a table update) and read again; the database is
 * checked again and closed. Every status must be one of qv_status.
 *
 * FUZZ_RECORDS_SEEDS=DIR makes the target write its seed corpus instead:
 * one input per record, its value unchanged and resealed (fuzz/corpus/
 * records holds them as NNN-subdb; make fuzz-seeds rewrites them after a
 * change to the template or a record's layout). The corpus's other
 * inputs, regressions, name their record by its number too: the template
 * is built the same way every time, and changing it moves them.
 */
#include <fcntl.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "db/engine/store/txn.h"
#include "fuzz/fuzz_util.h"
#include "storage/keys.h"
#include "db/quiver.h"
#include "db/engine/tables/table.h"

#define MAX_RECORDS 256
#define SAMPLE 16

/* The sub-databases (storage/env.c); the first five hold few records. */
static const char *const subdbs[] = {
    "meta", "catalog", "pindexes", "codecs", "tables", "ids", "docs",
    "vectors", "freeids", "graph", "pentries", "codes", "tchunks",
};
#define SMALL_SUBDBS 5

struct record {
    int subdb;
    int coll, table;          /* whose record it is (index), or -1 */
    size_t key_len;
    unsigned char key[511];   /* LMDB's longest key */
};

static struct record records[MAX_RECORDS];
static size_t nrecords;
static char template_dir[4096], work_dir[4096];
static unsigned char *template_data;
static size_t template_len;

static const struct collection {
    const char *name, *codec;
    uint32_t dim, train_min, docs;
    qv_metric metric;
} collections[] = {
    {"plain", NULL, 4, 0, 40, QV_METRIC_L2},
    {"f16", "f16", 4, 0, 12, QV_METRIC_IP},
    {"sq8", "sq8", 8, 16, 24, QV_METRIC_IP},
    {"pq", "pq:2", 4, 256, 260, QV_METRIC_COSINE},
    {"bin", "bin", 16, 8, 12, QV_METRIC_L2},
    {"prune", "prune:3", 8, 0, 12, QV_METRIC_L2},
};
#define NCOLL (sizeof collections / sizeof *collections)

static const char *const methods[] = {
    "full", "hash:2", "qr:2", "robe:2", "adapt:2", "int8", "int16",
    "alpt:8", "prune:0.5", "tt:2",
};
#define NTABLES (sizeof methods / sizeof *methods)
#define TABLE_ROWS 64
#define TABLE_DIM 8

static void die(const char *what)
{
    fprintf(stderr, "fuzz_records: %s: %s\n", what, qv_errmsg(NULL));
    abort();
}

static void fill_vector(float *v, uint32_t dim, uint32_t i)
{
    for (uint32_t j = 0; j < dim; j++)
        v[j] = (float)((i * 7 + j * 13) % 17) - 8.0f + 0.5f * (float)j;
}

static void build_collection(qv_db *db, const struct collection *c)
{
    qv_collection_config cfg = {.dim = c->dim, .metric = c->metric, .M = 4,
                                .ef_construction = 16, .codec = c->codec,
                                .train_min = c->train_min};
    if (qv_create_collection(db, c->name, &cfg) != QV_OK)
        die(c->name);
    for (uint32_t i = 0; i < c->docs; i++) {
        char id[16], payload[64];
        float v[16];
        snprintf(id, sizeof id, "%u", i);
        snprintf(payload, sizeof payload, "{\"n\":%u,\"s\":\"w%u\"}", i % 5,
                 i % 3);
        fill_vector(v, c->dim, i);
        qv_doc doc = {id, v, c->dim, i % 7 == 6 ? NULL : payload};
        if (qv_upsert(db, c->name, &doc, 1) != QV_OK)
            die(c->name);
    }
}

static void build_template(void)
{
    qv_db *db;
    qv_open_options o = {.flags = QV_OPEN_NOSYNC, .threads = 1};
    if (qv_open(template_dir, &o, &db) != QV_OK)
        die("opening the template");
    for (size_t i = 0; i < NCOLL; i++)
        build_collection(db, &collections[i]);
    if (qv_create_index(db, "plain", "n", QV_INDEX_INT) != QV_OK ||
        qv_create_index(db, "plain", "s", QV_INDEX_KEYWORD) != QV_OK ||
        qv_delete(db, "plain", "3") != QV_OK ||
        qv_delete(db, "plain", "17") != QV_OK)
        die("indexes and deletes");
    uint64_t ids[6] = {0, 5, 5, 9, 63, 12};
    float grads[6 * TABLE_DIM];
    for (size_t i = 0; i < 6 * TABLE_DIM; i++)
        grads[i] = (float)(i % 5) * 0.25f - 0.5f;
    for (size_t t = 0; t < NTABLES; t++) {
        qv_table_config cfg = {.rows = TABLE_ROWS, .dim = TABLE_DIM,
                               .method = methods[t], .seed = t,
                               .optimizer = t % 2 ? QV_OPTIMIZER_ADAGRAD
                                                  : QV_OPTIMIZER_SGD};
        char name[16];
        snprintf(name, sizeof name, "t%zu", t);
        if (qv_table_create(db, name, &cfg) != QV_OK)
            die(methods[t]);
        for (int u = 0; u < 4; u++) {   /* adapt promotes after 3 */
            if (qv_table_update(db, name, ids, 6, TABLE_DIM, grads) != QV_OK)
                die(methods[t]);
        }
    }
    qv_close(db);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0)
        abort();
    long n = ftell(f);
    unsigned char *data = malloc((size_t)n);
    rewind(f);
    if (n <= 0 || !data || fread(data, 1, (size_t)n, f) != (size_t)n)
        abort();
    fclose(f);
    *len = (size_t)n;
    return data;
}

static MDB_env *raw_open(const char *dir)
{
    MDB_env *env;
    if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 32) != 0 ||
        mdb_env_open(env, dir, MDB_NOSYNC, 0644) != 0)
        abort();
    return env;
}

/* The index of the collection or table a record belongs to, by the id
 * its key starts with or the name it is; -1 for a database-wide one. */
static void note_owner(struct record *r)
{
    const char *name = subdbs[r->subdb];
    int id = r->key_len >= 4 ? (int)key_get_u32(r->key) : 0;
    r->coll = r->table = -1;
    if (!strcmp(name, "catalog")) {
        for (size_t i = 0; i < NCOLL; i++) {
            if (r->key_len == strlen(collections[i].name) &&
                !memcmp(r->key, collections[i].name, r->key_len))
                r->coll = (int)i;
        }
    } else if (!strcmp(name, "tables")) {
        if (r->key_len > 1 && r->key[0] == 't')
            r->table = r->key[1] - '0';
    } else if (!strcmp(name, "tchunks")) {
        r->table = id - 1;   /* tables take ids from 1 in creation order */
    } else if (strcmp(name, "meta") != 0) {
        r->coll = id - 1;    /* and so do collections */
    }
    if (r->coll >= (int)NCOLL || r->table >= (int)NTABLES)
        r->coll = r->table = -1;
}

static void note_record(int subdb, const MDB_val *key)
{
    if (nrecords == MAX_RECORDS || key->mv_size > sizeof records[0].key)
        return;
    struct record *r = &records[nrecords++];
    r->subdb = subdb;
    r->key_len = key->mv_size;
    memcpy(r->key, key->mv_data, key->mv_size);
    note_owner(r);
}

/* Whether two keys start with the same collection or table id. */
static int same_range(const MDB_val *a, const MDB_val *b)
{
    return a->mv_size >= 4 && b->mv_size >= 4 &&
           memcmp(a->mv_data, b->mv_data, 4) == 0;
}

/* The records the target picks: every one of the small sub-databases;
 * the first, the last and every SAMPLE-th of each range of the others. */
static void list_records(void)
{
    MDB_env *env = raw_open(template_dir);
    MDB_txn *txn;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
        abort();
    for (int s = 0; s < (int)(sizeof subdbs / sizeof *subdbs); s++) {
        MDB_dbi dbi;
        MDB_cursor *cur;
        MDB_val keys[4096], val;
        size_t n = 0;
        if (mdb_dbi_open(txn, subdbs[s], 0, &dbi) != 0 ||
            mdb_cursor_open(txn, dbi, &cur) != 0)
            continue;
        for (int rc = mdb_cursor_get(cur, &keys[0], &val, MDB_FIRST);
             rc == 0 && n < 4096;
             rc = mdb_cursor_get(cur, &keys[n], &val, MDB_NEXT))
            n++;
        mdb_cursor_close(cur);
        for (size_t i = 0, in_range = 0; i < n; i++) {
            int first = i == 0 || !same_range(&keys[i - 1], &keys[i]);
            int last = i + 1 == n || !same_range(&keys[i], &keys[i + 1]);
            in_range = first ? 0 : in_range + 1;
            if (s < SMALL_SUBDBS || first || last || in_range % SAMPLE == 0)
                note_record(s, &keys[i]);
        }
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* Make the checksum of a catalog, table, graph or codec record valid. */
static void reseal(int subdb, unsigned char *v, size_t len)
{
    const char *name = subdbs[subdb];
    size_t at = SIZE_MAX;
    if (!strcmp(name, "catalog"))
        at = offsetof(coll_rec, checksum);
    else if (!strcmp(name, "tables"))
        at = offsetof(tbl_rec, checksum);
    uint32_t sum;
    if (at != SIZE_MAX && len >= at + sizeof sum) {
        memset(v + at, 0, sizeof sum);
        sum = record_checksum(v, len);
        memcpy(v + at, &sum, sizeof sum);
    } else if ((!strcmp(name, "graph") || !strcmp(name, "codecs")) &&
               len > sizeof sum) {
        sum = record_checksum(v, len - sizeof sum);
        memcpy(v + len - sizeof sum, &sum, sizeof sum);
    }
}

/* Change one record as the input says; NULL if the input names no
 * change, else the record changed. */
static const struct record *tamper(const unsigned char *data, size_t size)
{
    if (size < 2 || nrecords == 0)
        return NULL;
    const struct record *r = &records[data[0] % nrecords];
    int mode = data[1] % 4;
    const unsigned char *bytes = data + 2;
    size_t len = size - 2;
    if (mode == 3 && (len == 0 || len > sizeof r->key))
        return NULL;
    MDB_env *env = raw_open(work_dir);
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val key = {r->key_len, (void *)r->key}, val;
    if (mdb_txn_begin(env, NULL, 0, &txn) != 0 ||
        mdb_dbi_open(txn, subdbs[r->subdb], 0, &dbi) != 0 ||
        mdb_get(txn, dbi, &key, &val) != 0)
        abort();
    unsigned char *copy = NULL;
    int rc;
    if (mode == 0 || mode == 1) {
        copy = malloc(len ? len : 1);
        memcpy(copy, bytes, len);
        if (mode == 1)
            reseal(r->subdb, copy, len);
        MDB_val nv = {len, copy};
        rc = mdb_put(txn, dbi, &key, &nv, 0);
    } else {
        copy = malloc(val.mv_size ? val.mv_size : 1);
        memcpy(copy, val.mv_data, val.mv_size);
        MDB_val moved = {val.mv_size, copy}, nk = {len, (void *)bytes};
        rc = mdb_del(txn, dbi, &key, NULL);
        if (rc == 0 && mode == 3)
            rc = mdb_put(txn, dbi, &nk, &moved, 0);
    }
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    free(copy);
    mdb_env_close(env);
    return rc == 0 ? r : NULL;
}

static void restore_template(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", work_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, template_data, template_len) !=
                      (ssize_t)template_len)
        abort();
    close(fd);
}

/* Every call's status must be one the header lists. */
static qv_status known(qv_status st)
{
    if ((unsigned)st > QV_STATUS_LAST) {
        fprintf(stderr, "status %d is not a qv_status\n", (int)st);
        abort();
    }
    return st;
}

static void read_collection(qv_db *db, const struct collection *c)
{
    qv_collection_info info;
    qv_record *rec = NULL;
    qv_hits *hits = NULL;
    qv_page *page = NULL;
    uint64_t n;
    float q[16];
    fill_vector(q, c->dim, 5);
    known(qv_describe_collection(db, c->name, &info));
    if (known(qv_get(db, c->name, "7", &rec)) == QV_OK)
        qv_free(rec);
    static const qv_search_options opts[] = {
        {.k = 3, .ef = 8, .with_payload = 1},
        {.k = 2, .exact = 1},
        {.k = 3, .filter = "{\"n\":{\"$gte\":2}}", .explain = 1},
        {.k = 2, .filter = "{\"s\":\"w1\"}", .exact = 1},
        {.k = 4, .rerank = 4, .no_rerank = 1},
    };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        if (known(qv_search(db, c->name, q, c->dim, &opts[i], &hits)) ==
            QV_OK)
            qv_free(hits);
    }
    known(qv_count(db, c->name, "{\"n\":{\"$in\":[1,4]}}", &n));
    if (known(qv_scan_where(db, c->name, "{\"s\":{\"$ne\":\"w0\"}}", NULL, 5,
                            &page)) == QV_OK)
        qv_free(page);
}

static void use_table(qv_db *db, size_t t)
{
    uint64_t ids[4] = {0, 12, 63, 5};
    float out[4 * TABLE_DIM];
    char name[16];
    qv_table_info info;
    snprintf(name, sizeof name, "t%zu", t);
    known(qv_table_describe(db, name, &info));
    known(qv_table_lookup(db, name, ids, 4, TABLE_DIM, out));
    float grads[2 * TABLE_DIM] = {0.5f, -0.25f, 1, 0, 0, 0, 0, 0.125f};
    known(qv_table_update(db, name, ids, 2, TABLE_DIM, grads));
    known(qv_table_lookup(db, name, ids, 4, TABLE_DIM, out));
}

/* New documents (taking free ids), a new vector for the first one, a
 * delete. */
static void write_collection(qv_db *db, const struct collection *c)
{
    float v[2][16];
    fill_vector(v[0], c->dim, 99);
    fill_vector(v[1], c->dim, 98);
    qv_doc docs[2] = {{"new", v[0], c->dim, "{\"n\":2}"},
                      {"0", v[1], c->dim, NULL}};
    known(qv_upsert(db, c->name, docs, 2));
    docs[0].id = "new2";
    known(qv_upsert(db, c->name, docs, 1));
    known(qv_delete(db, c->name, "5"));
}

/*
 * Read and write what the changed record belongs to (everything for a
 * database-wide record or one moved to another key), check the whole
 * database, write, and check again.
 */
static void exercise(const struct record *r, int moved)
{
    int all = moved || (r->coll < 0 && r->table < 0);
    qv_db *db;
    qv_open_options o = {.flags = QV_OPEN_NOSYNC, .threads = 1};
    if (known(qv_open(work_dir, &o, &db)) != QV_OK)
        return;
    qv_collection_info *list = NULL;
    size_t n;
    char *text = NULL;
    if (known(qv_list_collections(db, &list, &n)) == QV_OK)
        qv_free(list);
    known(qv_check(db, &text));
    qv_free(text);
    text = NULL;
    if (known(qv_stats(db, &text)) == QV_OK)
        qv_free(text);
    for (size_t i = 0; i < NCOLL; i++) {
        if (all || r->coll == (int)i) {
            read_collection(db, &collections[i]);
            write_collection(db, &collections[i]);
            read_collection(db, &collections[i]);
        }
    }
    for (size_t t = 0; t < NTABLES; t++) {
        if (all || r->table == (int)t)
            use_table(db, t);
    }
    text = NULL;
    known(qv_check(db, &text));
    qv_free(text);
    qv_close(db);
}

/* Write one seed per record into dir: its value unchanged, resealed. */
static void write_seeds(const char *dir)
{
    MDB_env *env = raw_open(template_dir);
    MDB_txn *txn;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
        abort();
    for (size_t i = 0; i < nrecords; i++) {
        MDB_dbi dbi;
        MDB_val key = {records[i].key_len, records[i].key}, val;
        if (mdb_dbi_open(txn, subdbs[records[i].subdb], 0, &dbi) != 0 ||
            mdb_get(txn, dbi, &key, &val) != 0)
            abort();
        char path[4200];
        snprintf(path, sizeof path, "%s/%03zu-%s", dir, i,
                 subdbs[records[i].subdb]);
        FILE *f = fopen(path, "wb");
        unsigned char head[2] = {(unsigned char)i, 1};
        if (!f || fwrite(head, 1, 2, f) != 2 ||
            fwrite(val.mv_data, 1, val.mv_size, f) != val.mv_size)
            abort();
        fclose(f);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Each graph's arrays are advised to use 2 MiB pages; loading dozens
     * of small graphs an input, zeroing those dominated the run. */
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    snprintf(template_dir, sizeof template_dir, "%s", fuzz_scratch_dir());
    snprintf(work_dir, sizeof work_dir, "%s", fuzz_scratch_dir());
    build_template();
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", template_dir);
    template_data = read_file(path, &template_len);
    list_records();
    const char *seeds = getenv("FUZZ_RECORDS_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        fprintf(stderr, "fuzz_records: %zu seeds in %s\n", nrecords, seeds);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    restore_template();
    const struct record *r = tamper(data, size);
    if (r)
        exercise(r, data[1] % 4 == 3);
    return 0;
}
