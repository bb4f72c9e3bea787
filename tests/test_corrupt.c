/*
 * Damaged databases: a truncated, missing or garbage data file, and flipped
 * or missing records behind Quiver's back. Each gets QV_ERR_CORRUPT (or a
 * clear message) on open or on use, and qv_check names it; never a crash.
 */
#include <fcntl.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "db/engine/store/txn.h"
#include "ann/hnsw.h"
#include "db/engine/tables/table.h"
#include "tests/test_util.h"

/* A small database: collection "c" (dim 8) of 300 documents. */
static char *make_db(void)
{
    char *dir = tu_mkdtemp();
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_ok(db, qv_create_collection(db, "c",
                                       &(qv_collection_config){.dim = 8}));
    uint64_t rng = 5;
    float v[300][8];
    char ids[300][16];
    qv_doc docs[300];
    for (int i = 0; i < 300; i++) {
        tu_rand_vector(&rng, v[i], 8);
        snprintf(ids[i], sizeof ids[i], "%d", i);
        docs[i] = (qv_doc){ids[i], v[i], 8, "{\"p\":1}"};
    }
    assert_ok(db, qv_upsert(db, "c", docs, 300));
    qv_close(db);
    return dir;
}

static char *path_of(const char *dir, const char *file)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return path;
}

/* Change records with LMDB directly, behind Quiver's back. */
typedef void (*tamper_fn)(MDB_txn *txn, MDB_dbi dbi);

static void tamper(const char *dir, const char *dbname, tamper_fn fn)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, dbname, 0, &dbi), 0);
    fn(txn, dbi);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Flip one byte in the middle of the first record's value. */
static void flip_first(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    unsigned char copy[4096];
    assert_true(val.mv_size <= sizeof copy);
    memcpy(copy, val.mv_data, val.mv_size);
    copy[val.mv_size / 2] ^= 0x10;
    MDB_val changed = {val.mv_size, copy};
    assert_int_equal(mdb_cursor_put(cur, &key, &changed, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
}

static void delete_first(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_int_equal(mdb_cursor_del(cur, 0), 0);
    mdb_cursor_close(cur);
}

/* qv_check must fail and its report contain what. */
static void expect_check_finds(const char *dir, const char *what)
{
    qv_db *db;
    char *report = NULL;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_status(db, qv_check(db, &report), QV_ERR_CORRUPT);
    assert_non_null(report);
    if (!strstr(report, what))
        fail_msg("report lacks '%s':\n%s", what, report);
    qv_free(report);
    qv_close(db);
}

static void test_flipped_catalog_record(void **state)
{
    char *dir = make_db();
    tamper(dir, "catalog", flip_first);
    qv_db *db;
    qv_collection_info info;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_status(db, qv_describe_collection(db, "c", &info), QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(db), "checksum"));
    qv_collection_info *list = NULL;
    size_t n = 0;
    assert_status(db, qv_list_collections(db, &list, &n), QV_ERR_CORRUPT);
    float q[8] = {0};
    qv_hits *hits = NULL;
    assert_status(db, qv_search(db, "c", q, 8, &(qv_search_options){.k = 1},
                                &hits), QV_ERR_CORRUPT);
    qv_close(db);
    expect_check_finds(dir, "fails its checksum");
    tu_rmdir(dir);
}

/* A catalog record as the first session wrote it (format 3: no codec
 * fields, 56 bytes, its checksum over those) */
static void to_format3(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    unsigned char rec[56];
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_true(val.mv_size > sizeof rec);
    memcpy(rec, val.mv_data, sizeof rec);
    uint32_t three = 3, zero = 0;
    memcpy(rec, &three, 4);
    memcpy(rec + 44, &zero, 4);              /* the checksum field */
    uint32_t sum = XXH32(rec, sizeof rec, 0x51564552u);
    memcpy(rec + 44, &sum, 4);
    MDB_val old = {sizeof rec, rec};
    assert_int_equal(mdb_cursor_put(cur, &key, &old, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
}

/* A database of the previous format opens, reads as codec none, and is
 * written back in the current one. */
static void test_format3_catalog_upgrades(void **state)
{
    char *dir = make_db();
    tamper(dir, "catalog", to_format3);
    qv_db *db;
    qv_collection_info info;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    qv_collection_info *list = NULL;
    size_t n = 0;
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].codec, "none");
    qv_free(list);
    char *report = NULL;
    if (qv_check(db, &report) != QV_OK)
        fail_msg("before the upgrade: %s", report);
    qv_free(report);
    assert_ok(db, qv_describe_collection(db, "c", &info));
    assert_string_equal(info.codec, "none");
    assert_int_equal(info.count, 300);
    float q[8] = {0};
    qv_hits *hits = NULL;
    assert_ok(db, qv_search(db, "c", q, 8, &(qv_search_options){.k = 3},
                            &hits));
    assert_int_equal(hits->count, 3);
    qv_free(hits);
    qv_doc doc = {"new", q, 8, NULL};
    q[0] = 1;
    assert_ok(db, qv_upsert(db, "c", &doc, 1));
    report = NULL;
    if (qv_check(db, &report) != QV_OK)
        fail_msg("%s", report);
    qv_free(report);
    qv_close(db);
    tu_rmdir(dir);
}

static void test_flipped_graph_record(void **state)
{
    char *dir = make_db();
    tamper(dir, "graph", flip_first);
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    float q[8] = {0};
    qv_hits *hits = NULL;
    assert_status(db, qv_search(db, "c", q, 8, &(qv_search_options){.k = 1},
                                &hits), QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(db), "graph record"));
    /* exact search does not need the graph */
    assert_ok(db, qv_search(db, "c", q, 8,
                            &(qv_search_options){.k = 1, .exact = 1}, &hits));
    qv_free(hits);
    qv_close(db);
    expect_check_finds(dir, "fails its checksum");
    tu_rmdir(dir);
}

static void test_missing_records(void **state)
{
    char *dir = make_db();
    tamper(dir, "vectors", delete_first);
    qv_db *db;
    qv_record *r = NULL;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_status(db, qv_get(db, "c", "0", &r), QV_ERR_CORRUPT);
    qv_close(db);
    expect_check_finds(dir, "has no vector");
    tamper(dir, "docs", delete_first);
    expect_check_finds(dir, "has no document");
    tu_rmdir(dir);
}

/* The first vector becomes 1e20 in every component: a vector that l2
 * collections refuse since their squared-norm bound, as a database from
 * before it may hold one. */
static void to_huge_vector(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    float huge[8];
    for (int i = 0; i < 8; i++)
        huge[i] = 1e20f;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_int_equal(val.mv_size, sizeof huge);
    MDB_val changed = {sizeof huge, huge};
    assert_int_equal(mdb_cursor_put(cur, &key, &changed, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
}

/* Such a vector is still found by every search (last, its distance
 * overflowing to inf), and qv_check names it. */
static void test_vector_beyond_the_bound(void **state)
{
    char *dir = make_db();
    tamper(dir, "vectors", to_huge_vector);
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    float q[8] = {0};
    for (int exact = 0; exact < 2; exact++) {
        qv_hits *hits = NULL;
        qv_search_options opt = {.k = 300, .ef = 400, .exact = exact};
        assert_ok(db, qv_search(db, "c", q, 8, &opt, &hits));
        assert_int_equal(hits->count, 300);
        assert_string_equal(hits->hits[299].id, "0");
        assert_true(isinf(hits->hits[299].distance));
        qv_free(hits);
    }
    qv_close(db);
    expect_check_finds(dir, "document '0' is outside what the collection "
                       "accepts");
    expect_check_finds(dir, "squared norm 8e+40 exceeds 1e+36");
    tu_rmdir(dir);
}

static void test_index_entry_missing(void **state)
{
    char *dir = make_db();
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_ok(db, qv_create_index(db, "c", "p", QV_INDEX_INT));
    qv_close(db);
    tamper(dir, "pentries", delete_first);
    expect_check_finds(dir, "payload index problems");
    tu_rmdir(dir);
}

/* A record of a size Quiver never writes, added to the vectors. */
static void add_odd_record(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_val key = {2, "c"}, val = {16, "0123456789abcdef"};
    assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
}

/*
 * LMDB aligns a value to 2 bytes only: after a record of an odd size,
 * the vectors stored next in its page lie misaligned. Searches and check
 * say CORRUPT rather than read floats at such an address (fuzz_records
 * found the exact search reading them).
 */
static void test_foreign_vector_record(void **state)
{
    char *dir = make_db();
    tamper(dir, "vectors", add_odd_record);
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    qv_doc doc = {"new", v, 8, NULL};
    assert_ok(db, qv_upsert(db, "c", &doc, 1));  /* lands after it */
    qv_hits *hits = NULL;
    assert_status(db, qv_search(db, "c", v, 8, &(qv_search_options){
                                    .k = 3, .exact = 1}, &hits),
                  QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(db), "misaligned"));
    qv_close(db);
    expect_check_finds(dir, "misaligned");
    tu_rmdir(dir);
}

/* The table record's rows, then its parameter, out of range, with a
 * valid checksum (as a bug writing it would leave it). */
static int table_damage;

static void damage_table(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    tbl_rec rec;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_int_equal(val.mv_size, sizeof rec);
    memcpy(&rec, val.mv_data, sizeof rec);
    if (table_damage == 0)
        rec.rows = 1ull << 50;
    else
        rec.param = 1e30;
    rec.checksum = 0;
    rec.checksum = XXH32(&rec, sizeof rec, 0x51564552u);
    MDB_val changed = {sizeof rec, &rec};
    assert_int_equal(mdb_cursor_put(cur, &key, &changed, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
}

/*
 * A table record whose checksum holds but whose sizes are beyond what
 * create allows is CORRUPT wherever it is read, before any allocation it
 * would size (fuzz_records found check allocating 2^60 bytes for one, and
 * a tt rank beyond the lookup's buffer).
 */
static void test_table_record_out_of_range(void **state)
{
    for (table_damage = 0; table_damage < 2; table_damage++) {
        char *dir = tu_mkdtemp();
        qv_db *db;
        assert_ok(NULL, qv_open(dir, NULL, &db));
        assert_ok(db, qv_table_create(db, "t", &(qv_table_config){
                                          .rows = 64, .dim = 8,
                                          .method = "tt:2"}));
        qv_close(db);
        tamper(dir, "tables", damage_table);
        const char *why = table_damage ? "rank must be" : "rows must be";
        qv_table_info info;
        uint64_t ids[1] = {3};
        float row[8];
        assert_ok(NULL, qv_open(dir, NULL, &db));
        assert_status(db, qv_table_describe(db, "t", &info), QV_ERR_CORRUPT);
        assert_non_null(strstr(qv_errmsg(db), why));
        assert_status(db, qv_table_lookup(db, "t", ids, 1, 8, row),
                      QV_ERR_CORRUPT);
        qv_close(db);
        expect_check_finds(dir, why);
        tu_rmdir(dir);
    }
}

/* The catalog record names a codec this build does not have, or (1) a
 * beam width beyond QV_EF_MAX, or (2) a next internal id of billions, or
 * (3) a top level above its entry point's, with a valid checksum. */
static int catalog_damage;

static void damage_catalog(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    coll_rec rec;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_int_equal(val.mv_size, sizeof rec);
    memcpy(&rec, val.mv_data, sizeof rec);
    if (catalog_damage == 0)
        rec.codec = 1u << 26;
    else if (catalog_damage == 1)
        rec.ef_construction = 1u << 28;
    else if (catalog_damage == 2)
        rec.next_iid = 3000000000u;
    else
        rec.max_level = HNSW_MAX_LEVEL;
    rec.checksum = 0;
    rec.checksum = XXH32(&rec, sizeof rec, 0x51564552u);
    MDB_val changed = {sizeof rec, &rec};
    assert_int_equal(mdb_cursor_put(cur, &key, &changed, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
}

/*
 * Listing decodes each catalog record as reading one collection does:
 * it used to copy the records unchecked (fuzz_records found it indexing
 * the codec names with one). check, which listed first, now reports the
 * collection instead of failing with it.
 */
static void test_list_checks_catalog_records(void **state)
{
    char *dir = make_db();
    catalog_damage = 0;
    tamper(dir, "catalog", damage_catalog);
    qv_db *db;
    qv_collection_info *list = NULL, info;
    size_t n = 0;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_status(db, qv_list_collections(db, &list, &n), QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(db), "unknown codec"));
    assert_status(db, qv_describe_collection(db, "c", &info),
                  QV_ERR_CORRUPT);
    qv_close(db);
    expect_check_finds(dir, "collection 'c': catalog record of 'c' names an "
                       "unknown codec");
    tu_rmdir(dir);
}

/* A beam width from a damaged record sized the insert's candidate arrays
 * (fuzz_records: a 6 GB allocation); the record is CORRUPT now. */
static void test_catalog_ef_out_of_range(void **state)
{
    char *dir = make_db();
    catalog_damage = 1;
    tamper(dir, "catalog", damage_catalog);
    qv_db *db;
    qv_collection_info info;
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    qv_doc doc = {"new", v, 8, NULL};
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_status(db, qv_describe_collection(db, "c", &info),
                  QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(db), "ef_construction 268435456"));
    assert_status(db, qv_upsert(db, "c", &doc, 1), QV_ERR_CORRUPT);
    qv_close(db);
    expect_check_finds(dir, "ef_construction 268435456");
    tu_rmdir(dir);
}

/* Every internal id below the next one is a document's or free: a next
 * id of billions sized the graph's arrays (fuzz_records) before anything
 * read it against the documents. */
static void test_catalog_next_id_out_of_range(void **state)
{
    char *dir = make_db();
    catalog_damage = 2;
    tamper(dir, "catalog", damage_catalog);
    qv_db *db;
    float q[8] = {0};
    qv_hits *hits = NULL;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_status(db, qv_search(db, "c", q, 8, &(qv_search_options){.k = 3},
                                &hits), QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(db), "next internal id 3000000000"));
    qv_close(db);
    expect_check_finds(dir, "the next internal id 3000000000 is not the 300 "
                       "documents plus 0 free ids");
    tu_rmdir(dir);
}

/* A graph record whose first level-1 neighbour becomes a node of level
 * 0, resealed. Records: [level][3 bytes][count][ids] per level, XXH32. */
static void link_to_lower_level(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    unsigned char upper_key[8], rec[4096];
    size_t len = 0;
    uint32_t level0 = UINT32_MAX;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    for (int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const unsigned char *k = key.mv_data, *v = val.mv_data;
        if (v[0] == 0 && level0 == UINT32_MAX)
            level0 = (uint32_t)k[4] << 24 | k[5] << 16 | k[6] << 8 | k[7];
        if (v[0] >= 1 && len == 0) {
            assert_true(val.mv_size <= sizeof rec);
            memcpy(upper_key, k, sizeof upper_key);
            memcpy(rec, v, val.mv_size);
            len = val.mv_size;
        }
    }
    mdb_cursor_close(cur);
    assert_true(len > 0 && level0 != UINT32_MAX);
    uint32_t n0, n1;
    memcpy(&n0, rec + 4, 4);
    size_t at = 4 + 4 * (1 + (size_t)n0);   /* level 1's list */
    memcpy(&n1, rec + at, 4);
    assert_true(n1 >= 1);
    memcpy(rec + at + 4, &level0, 4);
    uint32_t sum = XXH32(rec, len - 4, 0x51564552u);
    memcpy(rec + len - 4, &sum, 4);
    MDB_val k8 = {sizeof upper_key, upper_key}, changed = {len, rec};
    assert_int_equal(mdb_put(txn, dbi, &k8, &changed, 0), 0);
}

/*
 * Each graph record is checked alone as it loads; a search trusts their
 * links to name nodes of the levels it walks, and the entry point to be
 * of the top level. A resealed catalog record with a top level above the
 * entry point's (found by fuzz_records: a read past the entry's lists)
 * and a node linking to a lower one at level 1 are CORRUPT, not walked.
 */
static void test_graph_links_checked_at_load(void **state)
{
    for (int variant = 0; variant < 2; variant++) {
        char *dir = make_db();
        catalog_damage = 3;
        tamper(dir, variant ? "graph" : "catalog",
               variant ? link_to_lower_level : damage_catalog);
        qv_db *db;
        float q[8] = {0};
        qv_hits *hits = NULL;
        assert_ok(NULL, qv_open(dir, NULL, &db));
        assert_status(db, qv_search(db, "c", q, 8,
                                    &(qv_search_options){.k = 3}, &hits),
                      QV_ERR_CORRUPT);
        assert_non_null(strstr(qv_errmsg(db), variant ? "not a node of that "
                                                        "level"
                                                      : "entry point"));
        qv_close(db);
        expect_check_finds(dir, "index:");
        tu_rmdir(dir);
    }
}

/* adapt's id map (slab 3): (0) an entry names an own row beyond the own
 * rows; (1) every entry is taken. The chunks carry no checksum: a flipped
 * bit on disk is enough. */
static int map_damage;

static void damage_adapt_map(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    unsigned char map[4096];
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    while (rc == 0 && ((const unsigned char *)key.mv_data)[4] != 3)
        rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
    assert_int_equal(rc, 0);
    assert_true(val.mv_size <= sizeof map && val.mv_size % 16 == 0);
    memcpy(map, val.mv_data, val.mv_size);
    for (size_t i = 0; i < val.mv_size / 16; i++) {
        uint64_t k, own = 1ull << 40;
        memcpy(&k, map + 16 * i, 8);
        if (map_damage == 0 && k != UINT64_MAX)
            memcpy(map + 16 * i + 8, &own, 8);
        if (map_damage == 1 && k == UINT64_MAX) {
            k = 1000 + i;   /* ids nobody looks up */
            memcpy(map + 16 * i, &k, 8);
        }
    }
    MDB_val changed = {val.mv_size, map};
    assert_int_equal(mdb_cursor_put(cur, &key, &changed, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
}

/*
 * adapt looks ids up in its id map: an entry naming an own row beyond
 * the table read far out of it, and a map without an empty entry made a
 * lookup of an id not in it loop for ever (fuzz_records reaches both
 * with one damaged chunk). Loading the table checks the map: CORRUPT.
 */
static void test_adapt_map_checked_at_load(void **state)
{
    for (map_damage = 0; map_damage < 2; map_damage++) {
        char *dir = tu_mkdtemp();
        qv_db *db;
        uint64_t ids[6] = {0, 5, 5, 9, 63, 12};
        float grads[6 * 8] = {0.5f, -0.25f, 1};
        assert_ok(NULL, qv_open(dir, NULL, &db));
        assert_ok(db, qv_table_create(db, "t", &(qv_table_config){
                                          .rows = 64, .dim = 8,
                                          .method = "adapt:2"}));
        for (int u = 0; u < 4; u++)   /* promotes ids to own rows */
            assert_ok(db, qv_table_update(db, "t", ids, 6, 8, grads));
        qv_close(db);
        tamper(dir, "tchunks", damage_adapt_map);
        float rows[2 * 8];
        uint64_t look[2] = {5, 777};
        assert_ok(NULL, qv_open(dir, NULL, &db));
        assert_status(db, qv_table_lookup(db, "t", look, 2, 8, rows),
                      QV_ERR_CORRUPT);
        assert_non_null(strstr(qv_errmsg(db), "id map"));
        qv_close(db);
        expect_check_finds(dir, "id map");
        tu_rmdir(dir);
    }
}

/* The first code's first index (prune: K u16 indexes, then K floats)
 * beyond any dimension. Codes carry no checksum. */
static void prune_index_beyond(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    unsigned char code[64];
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    assert_true(val.mv_size <= sizeof code);
    memcpy(code, val.mv_data, val.mv_size);
    code[0] = code[1] = 0xff;
    MDB_val changed = {val.mv_size, code};
    assert_int_equal(mdb_cursor_put(cur, &key, &changed, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
}

/* A prune code's index picks the query's element a search multiplies:
 * one beyond the dimension read outside it (found with an input written
 * for fuzz_records). The graph's load checks every code: CORRUPT. */
static void test_prune_code_checked_at_load(void **state)
{
    char *dir = tu_mkdtemp();
    qv_db *db;
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    qv_doc docs[2] = {{"a", v, 8, NULL}, {"b", v, 8, NULL}};
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_ok(db, qv_create_collection(db, "p", &(qv_collection_config){
                                           .dim = 8, .codec = "prune:3"}));
    assert_ok(db, qv_upsert(db, "p", docs, 2));
    qv_close(db);
    tamper(dir, "codes", prune_index_beyond);
    qv_hits *hits = NULL;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_status(db, qv_search(db, "p", v, 8, &(qv_search_options){.k = 1},
                                &hits), QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(db), "code of graph node"));
    qv_close(db);
    expect_check_finds(dir, "code of graph node");
    tu_rmdir(dir);
}

/* (0) The ids map's first entry (document "0") names internal id
 * 0xffffff00; (1) the first free id moves to 0xffffff00. */
static int iid_damage;

static void iid_beyond(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    uint32_t far = 0xffffff00u;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
    if (iid_damage == 0) {
        MDB_val changed = {sizeof far, &far};
        assert_int_equal(mdb_cursor_put(cur, &key, &changed, MDB_CURRENT), 0);
    } else {
        unsigned char moved[8];
        memcpy(moved, key.mv_data, 4);
        memset(moved + 4, 0xff, 3);
        moved[7] = 0;
        MDB_val k = {sizeof moved, moved}, empty = {0, NULL};
        assert_int_equal(mdb_cursor_del(cur, 0), 0);
        assert_int_equal(mdb_put(txn, dbi, &k, &empty, 0), 0);
    }
    mdb_cursor_close(cur);
}

/*
 * An internal id read from the ids map or the free ids sizes nothing,
 * but the graph's insert writes at it: one from the next id on wrote
 * outside the graph (confirmed with inputs written for fuzz_records).
 * Such ids are CORRUPT where they are read.
 */
static void test_internal_ids_checked(void **state)
{
    for (iid_damage = 0; iid_damage < 2; iid_damage++) {
        char *dir = make_db();
        qv_db *db;
        assert_ok(NULL, qv_open(dir, NULL, &db));
        assert_ok(db, qv_delete(db, "c", "7"));
        qv_close(db);
        tamper(dir, iid_damage ? "freeids" : "ids", iid_beyond);
        float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        qv_doc doc = {"0", v, 8, NULL};
        assert_ok(NULL, qv_open(dir, NULL, &db));
        if (iid_damage == 0) {
            qv_record *r = NULL;
            assert_status(db, qv_get(db, "c", "0", &r), QV_ERR_CORRUPT);
        } else {
            doc.id = "new";   /* takes the lowest free id */
        }
        assert_status(db, qv_upsert(db, "c", &doc, 1), QV_ERR_CORRUPT);
        qv_close(db);
        tu_rmdir(dir);
    }
}

static void test_truncated_data_file(void **state)
{
    char *dir = make_db();
    struct stat st;
    assert_int_equal(stat(path_of(dir, "data.mdb"), &st), 0);
    assert_int_equal(truncate(path_of(dir, "data.mdb"), st.st_size / 2), 0);
    qv_db *db = NULL;
    assert_status(NULL, qv_open(dir, NULL, &db), QV_ERR_CORRUPT);
    assert_null(db);
    assert_non_null(strstr(qv_errmsg(NULL), "truncated"));
    tu_rmdir(dir);
}

static void test_missing_data_file(void **state)
{
    char *dir = make_db();
    assert_int_equal(unlink(path_of(dir, "data.mdb")), 0);
    qv_db *db = NULL;
    assert_status(NULL, qv_open(dir, NULL, &db), QV_ERR_CORRUPT);
    assert_non_null(strstr(qv_errmsg(NULL), "data.mdb is missing"));
    assert_false(access(path_of(dir, "data.mdb"), F_OK) == 0);  /* untouched */
    tu_rmdir(dir);
}

static void test_garbage_data_file(void **state)
{
    char *dir = tu_mkdtemp();
    int fd = open(path_of(dir, "data.mdb"), O_CREAT | O_WRONLY, 0644);
    uint64_t rng = 11;
    for (int i = 0; i < 64; i++) {
        uint64_t x = tu_rand(&rng);
        assert_int_equal(write(fd, &x, sizeof x), sizeof x);
    }
    close(fd);
    qv_db *db = NULL;
    qv_status st = qv_open(dir, NULL, &db);
    assert_true(st == QV_ERR_CORRUPT);
    assert_null(db);
    tu_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flipped_catalog_record),
        cmocka_unit_test(test_format3_catalog_upgrades),
        cmocka_unit_test(test_flipped_graph_record),
        cmocka_unit_test(test_missing_records),
        cmocka_unit_test(test_vector_beyond_the_bound),
        cmocka_unit_test(test_index_entry_missing),
        cmocka_unit_test(test_foreign_vector_record),
        cmocka_unit_test(test_table_record_out_of_range),
        cmocka_unit_test(test_list_checks_catalog_records),
        cmocka_unit_test(test_catalog_ef_out_of_range),
        cmocka_unit_test(test_catalog_next_id_out_of_range),
        cmocka_unit_test(test_graph_links_checked_at_load),
        cmocka_unit_test(test_adapt_map_checked_at_load),
        cmocka_unit_test(test_prune_code_checked_at_load),
        cmocka_unit_test(test_internal_ids_checked),
        cmocka_unit_test(test_truncated_data_file),
        cmocka_unit_test(test_missing_data_file),
        cmocka_unit_test(test_garbage_data_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
