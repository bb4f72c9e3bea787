/*
 * test_format.c - the on-disk format (docs/FORMAT.md): a database written
 * by an earlier build (tests/fixtures, made by tools/make-fixture) opens
 * with this one, passes qv_check and reads back what was stored: payloads,
 * nearest neighbours through each collection's graph and codec, payload
 * index lookups, embedding table rows, describe's codec. Reading it
 * changes no byte of the file. And the database-wide format version
 * (meta "format"): a new database stores this build's, a newer one is
 * refused at open with nothing changed, a malformed one is CORRUPT.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "db/engine/store/records.h"
#include "tests/test_util.h"

#define FIXTURE "tests/fixtures/format1.mdb.gz"

/* The test's directory, removed by teardown even when a check failed. */
static int setup(void **state)
{
    *state = tu_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    tu_rmdir(*state);
    return 0;
}

/* Unpack the fixture into dir/data.mdb. */
static void unpack_fixture(const char *dir)
{
    const char *top = getenv("QUIVER_TOP");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/%s' > '%s/data.mdb'",
             top ? top : ".", FIXTURE, dir);
    if (system(cmd) != 0)
        fail_msg("could not unpack %s (QUIVER_TOP is the tree's top)",
                 FIXTURE);
}

/* The bytes of dir/data.mdb, malloc'd; *len its size. */
static unsigned char *read_data(const char *dir, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *p = malloc(*len ? *len : 1);
    assert_non_null(p);
    size_t got = fread(p, 1, *len, f);
    fclose(f);
    assert_int_equal(got, *len);
    return p;
}

static void assert_data_unchanged(const char *dir, const unsigned char *before,
                                  size_t len)
{
    size_t now_len;
    unsigned char *now = read_data(dir, &now_len);
    int same = now_len == len && memcmp(now, before, len) == 0;
    free(now);
    if (!same)
        fail_msg("data.mdb changed");
}

static void assert_payload(qv_db *db, const char *coll, const char *id,
                           const char *payload)
{
    qv_record *r = NULL;
    assert_ok(db, qv_get(db, coll, id, &r));
    assert_string_equal(r->id, id);
    if (payload)
        assert_string_equal(r->payload, payload);
    else
        assert_null(r->payload);
    qv_free(r);
}

/* The nearest hit of query through the graph (or the codec's): its id. */
static void assert_nearest(qv_db *db, const char *coll, const float *q,
                           uint32_t dim, const char *filter, const char *id)
{
    qv_search_options so = {.k = 3, .filter = filter};
    qv_hits *hits = NULL;
    assert_ok(db, qv_search(db, coll, q, dim, &so, &hits));
    assert_true(hits->count >= 1);
    assert_string_equal(hits->hits[0].id, id);
    qv_free(hits);
}

static void assert_count(qv_db *db, const char *coll, const char *filter,
                         uint64_t want)
{
    uint64_t n = 0;
    assert_ok(db, qv_count(db, coll, filter, &n));
    assert_int_equal(n, want);
}

static void assert_row(qv_db *db, const char *table, uint64_t id,
                       uint32_t dim, const float *want)
{
    float row[8];
    assert_ok(db, qv_table_lookup(db, table, &id, 1, dim, row));
    for (uint32_t i = 0; i < dim; i++)
        if (fabsf(row[i] - want[i]) > 1e-6f)
            fail_msg("table %s row %llu [%u] is %.9g, stored %.9g", table,
                     (unsigned long long)id, i, row[i], want[i]);
}

static void assert_describe(qv_db *db, const char *coll, uint64_t count,
                            uint32_t dim, qv_metric metric, const char *codec,
                            uint32_t train_min)
{
    qv_collection_info info;
    assert_ok(db, qv_describe_collection(db, coll, &info));
    assert_int_equal(info.count, count);
    assert_int_equal(info.dim, dim);
    assert_int_equal(info.metric, metric);
    assert_string_equal(info.codec, codec);
    assert_true(info.codec_trained);
    assert_int_equal(info.train_min, train_min);
    assert_int_equal(info.M, 8);
    assert_int_equal(info.ef_construction, 32);
}

/* Everything tools/make-fixture stored, read back. */
static void assert_fixture_content(qv_db *db)
{
    char *report = NULL;
    qv_status st = qv_check(db, &report);
    if (st != QV_OK)
        fail_msg("check: %s: %s", qv_status_name(st),
                 report ? report : qv_errmsg(db));
    qv_free(report);

    assert_describe(db, "plain", 7, 4, QV_METRIC_L2, "none", 0);
    assert_describe(db, "cosq", 23, 8, QV_METRIC_COSINE, "sq8", 16);
    assert_describe(db, "pqc", 260, 4, QV_METRIC_L2, "pq:2", 256);

    assert_payload(db, "plain", "a",
                   "{\"tag\":\"red\",\"n\":1,\"score\":0.5,\"note\":\"first\"}");
    assert_payload(db, "plain", "b", "{\"tag\":\"blue\",\"n\":22,\"score\":1.5}");
    assert_payload(db, "plain", "c", "{\"tag\":\"red\",\"n\":3,\"score\":2.5,"
                                     "\"deep\":{\"x\":[1,2]}}");
    assert_payload(db, "plain", "f", NULL);
    assert_payload(db, "plain", "g h", "{\"tag\":\"red\",\"n\":7}");
    assert_payload(db, "cosq", "d05", "{\"row\":5}");
    qv_record *r = NULL;
    assert_status(db, qv_get(db, "plain", "i", &r), QV_ERR_NOT_FOUND);
    assert_status(db, qv_get(db, "cosq", "d03", &r), QV_ERR_NOT_FOUND);

    /* the payload indexes: keyword, int, float */
    assert_count(db, "plain", "{\"tag\": \"red\"}", 3);
    assert_count(db, "plain", "{\"n\": 22}", 1);
    assert_count(db, "plain", "{\"score\": 2.5}", 1);
    assert_count(db, "plain", "{\"tag\": \"gone\"}", 0);

    const float qa[4] = {0.9f, 0.1f, 0, 0};
    assert_nearest(db, "plain", qa, 4, NULL, "a");
    const float qb[4] = {0, 1, 0, 0.2f};
    assert_nearest(db, "plain", qb, 4, NULL, "b");
    const float qgh[4] = {0, 0.9f, 0, 0};
    assert_nearest(db, "plain", qgh, 4, "{\"tag\": \"red\"}", "g h");
    const float q5[8] = {-0.75f, 0, 0.75f, -1.25f, -0.5f, 1.25f, 1, -1};
    assert_nearest(db, "cosq", q5, 8, NULL, "d05");
    /* rows 12, 56, 100, ... of pqc share this vector: the nearest is one
     * of them, at distance 0 */
    const float q100[4] = {1.5f, 1.25f, -0.75f, 0};
    qv_search_options so = {.k = 1};
    qv_hits *hits = NULL;
    assert_ok(db, qv_search(db, "pqc", q100, 4, &so, &hits));
    assert_int_equal(hits->count, 1);
    assert_true(atoi(hits->hits[0].id + 1) % 44 == 12);
    assert_true(hits->hits[0].distance == 0);
    qv_free(hits);

    const float full1[4] = {-0.425817251f, -0.00696151285f, -0.0620132349f,
                            -0.0600829609f};
    const float full3[4] = {-0.0722589046f, -0.407188535f, -0.553175151f,
                            -0.00924793538f};
    assert_row(db, "full", 1, 4, full1);
    assert_row(db, "full", 3, 4, full3);
    const float hashed5[4] = {-0.116705194f, -0.0807050094f, -0.166940942f,
                              -0.0484293811f};
    const float hashed_big[4] = {0.0647123903f, 0.0793798119f, 0.0260405894f,
                                 -0.104777262f};
    assert_row(db, "hashed", 5, 4, hashed5);
    assert_row(db, "hashed", 1000000, 4, hashed_big);
    const float tt13[8] = {0.0109728631f, 0.0282883756f, -0.00545470137f,
                           -0.00583116245f, 0.0175727382f, 0.016004147f,
                           -0.0327069461f, 0.0784332976f};
    const float tt0[8] = {0.00541813811f, 0.0186497271f, -0.0013153078f,
                          -0.0152644524f, -0.0086262282f, -0.031952057f,
                          0.00138372241f, 0.0339683443f};
    assert_row(db, "tt", 13, 8, tt13);
    assert_row(db, "tt", 0, 8, tt0);
    qv_table_info ti;
    assert_ok(db, qv_table_describe(db, "tt", &ti));
    assert_string_equal(ti.method, "tt:2");
    assert_int_equal(ti.updates, 2);
}

/* Opened read-only and then for writing, the fixture reads back whole,
 * and neither open nor any read writes a byte. */
static void test_fixture_of_format_1_opens(void **state)
{
    const char *dir = *state;
    unpack_fixture(dir);
    size_t len;
    unsigned char *before = read_data(dir, &len);
    qv_open_options ro = {.flags = QV_OPEN_READONLY};
    const qv_open_options *modes[] = {&ro, NULL};
    for (size_t i = 0; i < 2; i++) {
        qv_db *db = NULL;
        assert_ok(NULL, qv_open(dir, modes[i], &db));
        assert_fixture_content(db);
        qv_close(db);
        assert_data_unchanged(dir, before, len);
    }
    free(before);
}

/* And it takes writes: a new document in a free id, a table update. */
static void test_fixture_takes_writes(void **state)
{
    const char *dir = *state;
    unpack_fixture(dir);
    qv_db *db = NULL;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    const float v[4] = {3, 3, 3, 3};
    qv_doc doc = {.id = "new", .vector = v, .dim = 4,
                  .payload = "{\"tag\": \"red\", \"n\": 100}"};
    assert_ok(db, qv_upsert(db, "plain", &doc, 1));
    assert_count(db, "plain", "{\"tag\": \"red\"}", 4);
    assert_nearest(db, "plain", v, 4, NULL, "new");
    uint64_t id = 2;
    const float grad[4] = {1, 1, 1, 1};
    assert_ok(db, qv_table_update(db, "full", &id, 1, 4, grad));
    char *report = NULL;
    qv_status st = qv_check(db, &report);
    if (st != QV_OK)
        fail_msg("check: %s", report ? report : qv_errmsg(db));
    qv_free(report);
    qv_close(db);
}

/* The meta "format" record of dir's database, written (value of len
 * bytes) or read (*found 0 when absent) with LMDB directly. */
static void meta_format(const char *dir, const void *value, size_t len,
                        uint32_t *read, int *found)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, value ? 0 : MDB_RDONLY, &txn),
                     0);
    int rc = mdb_dbi_open(txn, "meta", 0, &dbi);
    MDB_val key = {strlen(META_FORMAT), META_FORMAT}, val = {len,
                                                               (void *)value};
    if (rc == 0 && value)
        rc = mdb_put(txn, dbi, &key, &val, 0);
    else if (rc == 0) {
        rc = mdb_get(txn, dbi, &key, &val);
        *found = rc == 0;
        if (rc == 0 && val.mv_size == sizeof *read)
            memcpy(read, val.mv_data, sizeof *read);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc == 0 && value)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    mdb_env_close(env);
    assert_int_equal(rc, 0);
}

/* A database of a newer format is refused, read-only or not, with a
 * message naming both formats, and opening it changes nothing. */
static void test_newer_format_refused(void **state)
{
    const char *dir = *state;
    unpack_fixture(dir);
    uint32_t newer = QV_FORMAT + 1;
    meta_format(dir, &newer, sizeof newer, NULL, NULL);
    size_t len;
    unsigned char *before = read_data(dir, &len);
    char want[512];
    snprintf(want, sizeof want, "%s: database format %u is newer than this "
             "version of Quiver reads (%u); open it with a newer version",
             dir, newer, QV_FORMAT);
    qv_open_options ro = {.flags = QV_OPEN_READONLY};
    const qv_open_options *modes[] = {&ro, NULL};
    for (size_t i = 0; i < 2; i++) {
        qv_db *db = (qv_db *)1;
        assert_status(NULL, qv_open(dir, modes[i], &db), QV_ERR_UNSUPPORTED);
        assert_null(db);
        assert_string_equal(qv_errmsg(NULL), want);
        assert_data_unchanged(dir, before, len);
    }
    free(before);
}

/* A format record of the wrong size is CORRUPT, not read. */
static void test_malformed_format_refused(void **state)
{
    const char *dir = *state;
    unpack_fixture(dir);
    const unsigned char three[3] = {1, 0, 0};
    meta_format(dir, three, sizeof three, NULL, NULL);
    qv_db *db = NULL;
    assert_status(NULL, qv_open(dir, NULL, &db), QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(NULL), "format record is malformed"));
}

/* The fixture with this build's format stored opens as it did without. */
static void test_current_format_opens(void **state)
{
    const char *dir = *state;
    unpack_fixture(dir);
    uint32_t format = QV_FORMAT;
    meta_format(dir, &format, sizeof format, NULL, NULL);
    qv_db *db = NULL;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_fixture_content(db);
    qv_close(db);
}

/* A new database stores the format when first opened for writing; a
 * read-only open of an empty directory writes nothing. */
static void test_new_database_stores_format(void **state)
{
    const char *dir = *state;
    qv_db *db = NULL;
    qv_open_options ro = {.flags = QV_OPEN_READONLY};
    assert_ok(NULL, qv_open(dir, &ro, &db));
    qv_close(db);
    uint32_t format = 0;
    int found = -1;
    meta_format(dir, NULL, 0, &format, &found);
    assert_int_equal(found, 0);
    assert_ok(NULL, qv_open(dir, NULL, &db));
    qv_close(db);
    meta_format(dir, NULL, 0, &format, &found);
    assert_int_equal(found, 1);
    assert_int_equal(format, QV_FORMAT);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fixture_of_format_1_opens),
        T(test_fixture_takes_writes),
        T(test_newer_format_refused),
        T(test_malformed_format_refused),
        T(test_current_format_opens),
        T(test_new_database_stores_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
