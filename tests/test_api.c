/*
 * End-to-end tests of the public API on an embedded database: collections,
 * documents, exact search, persistence, and every kind of bad input
 * (each must be refused with its status and change nothing).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "db/core/handle.h"
#include "tests/test_util.h"

static int setup(void **state)
{
    return tu_setup(state, NULL);
}

static void create(qv_db *db, const char *name, uint32_t dim, qv_metric m)
{
    qv_collection_config cfg = {.dim = dim, .metric = m};
    assert_ok(db, qv_create_collection(db, name, &cfg));
}

static uint64_t count_of(qv_db *db, const char *name)
{
    qv_collection_info info;
    assert_ok(db, qv_describe_collection(db, name, &info));
    return info.count;
}

static void upsert_one(qv_db *db, const char *coll, const char *id,
                       const float *v, uint32_t dim, const char *payload)
{
    qv_doc doc = {id, v, dim, payload};
    assert_ok(db, qv_upsert(db, coll, &doc, 1));
}

/*
 * The structs of quiver.h keep their size from version to version
 * ("Structs grow"): new fields take reserved words. A change here breaks
 * every program built against an earlier header.
 */
#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(qv_open_options) == 112, "qv_open_options grew");
_Static_assert(sizeof(qv_collection_config) == 96,
               "qv_collection_config grew");
_Static_assert(sizeof(qv_search_options) == 112, "qv_search_options grew");
_Static_assert(sizeof(qv_table_config) == 112, "qv_table_config grew");
_Static_assert(sizeof(qv_collection_info) == 216, "qv_collection_info grew");
_Static_assert(sizeof(qv_table_info) == 216, "qv_table_info grew");
_Static_assert(sizeof(qv_index_info) == 328, "qv_index_info grew");
/* shards and replicas took the first reserved word of each, partial
 * qv_search_options'; nothing else moved */
_Static_assert(offsetof(qv_collection_config, train_min) == 24 &&
               offsetof(qv_collection_config, shards) == 32 &&
               offsetof(qv_collection_config, replicas) == 36 &&
               offsetof(qv_collection_config, reserved) == 40,
               "qv_collection_config's fields moved");
_Static_assert(offsetof(qv_collection_info, code_bytes) == 144 &&
               offsetof(qv_collection_info, shards) == 152 &&
               offsetof(qv_collection_info, replicas) == 156 &&
               offsetof(qv_collection_info, reserved) == 160,
               "qv_collection_info's fields moved");
_Static_assert(offsetof(qv_search_options, no_rerank) == 40 &&
               offsetof(qv_search_options, partial) == 48 &&
               offsetof(qv_search_options, reserved) == 56,
               "qv_search_options' fields moved");
/* qv_hits grew at its end only (quiver.h, "Structs grow") */
_Static_assert(offsetof(qv_hits, explain) == 16 &&
               offsetof(qv_hits, missing_count) == 24 &&
               sizeof(qv_hits) == 40, "qv_hits' fields moved");
_Static_assert(offsetof(qv_table_config, seed) == 40 &&
               offsetof(qv_table_config, shards) == 48 &&
               offsetof(qv_table_config, replicas) == 52 &&
               offsetof(qv_table_config, reserved) == 56,
               "qv_table_config's fields moved");
_Static_assert(offsetof(qv_table_info, updates) == 144 &&
               offsetof(qv_table_info, shards) == 152 &&
               offsetof(qv_table_info, replicas) == 156 &&
               offsetof(qv_table_info, reserved) == 160,
               "qv_table_info's fields moved");
#endif

/* ---- collections ---- */

static void test_collections_lifecycle(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    qv_collection_info *list;
    size_t n;
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 0);
    assert_null(list);

    create(db, "beta", 4, QV_METRIC_IP);
    create(db, "alpha", 8, QV_METRIC_COSINE);
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "alpha");
    assert_int_equal(list[0].dim, 8);
    assert_int_equal(list[0].metric, QV_METRIC_COSINE);
    assert_string_equal(list[1].name, "beta");
    qv_free(list);

    assert_ok(db, qv_drop_collection(db, "alpha"));
    assert_status(db, qv_describe_collection(db, "alpha", &(qv_collection_info){0}),
                  QV_ERR_NOT_FOUND);
    assert_non_null(strstr(qv_errmsg(db), "alpha"));
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 1);
    qv_free(list);
}

static void test_duplicate_and_unknown_collections(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    qv_collection_config cfg = {.dim = 3, .metric = QV_METRIC_L2};
    create(db, "c", 3, QV_METRIC_L2);
    cfg.dim = 5;
    assert_status(db, qv_create_collection(db, "c", &cfg), QV_ERR_EXISTS);
    assert_non_null(strstr(qv_errmsg(db), "already exists"));
    qv_collection_info info;
    assert_ok(db, qv_describe_collection(db, "c", &info));
    assert_int_equal(info.dim, 3);  /* unchanged */

    float v[3] = {1, 2, 3};
    qv_doc doc = {"x", v, 3, NULL};
    assert_status(db, qv_upsert(db, "nope", &doc, 1), QV_ERR_NOT_FOUND);
    assert_status(db, qv_drop_collection(db, "nope"), QV_ERR_NOT_FOUND);
    assert_status(db, qv_delete(db, "nope", "x"), QV_ERR_NOT_FOUND);
    qv_hits *hits = NULL;
    assert_status(db, qv_search(db, "nope", v, 3, &(qv_search_options){.k = 1},
                                &hits), QV_ERR_NOT_FOUND);
    assert_null(hits);
}

static void test_invalid_collection_config(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    static const char *const bad_names[] = {
        "", "-lead", ".dot", "has space", "semi;colon", "slash/x", "ünï",
        "x2345678901234567890123456789012345678901234567890123456789012345"};
    qv_collection_config cfg = {.dim = 3, .metric = QV_METRIC_L2};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
        assert_status(db, qv_create_collection(db, bad_names[i], &cfg),
                      QV_ERR_INVALID);
    assert_status(db, qv_create_collection(db, NULL, &cfg), QV_ERR_INVALID);
    assert_status(db, qv_create_collection(db, "ok", NULL), QV_ERR_INVALID);
    cfg.dim = 0;
    assert_status(db, qv_create_collection(db, "ok", &cfg), QV_ERR_INVALID);
    cfg.dim = QV_DIM_MAX + 1;
    assert_status(db, qv_create_collection(db, "ok", &cfg), QV_ERR_INVALID);
    cfg.dim = 3;
    cfg.metric = (qv_metric)7;
    assert_status(db, qv_create_collection(db, "ok", &cfg), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "metric"));

    /* longest allowed name works; nothing else was created */
    char name[QV_NAME_MAX + 1];
    memset(name, 'n', QV_NAME_MAX);
    name[QV_NAME_MAX] = '\0';
    create(db, name, 3, QV_METRIC_L2);
    qv_collection_info *list;
    size_t n;
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 1);
    qv_free(list);
}

/* qv_collection_config_check runs qv_create_collection's checks on a
 * config, with the same statuses and messages, and creates nothing; a
 * remote handle answers it without the server, a read-only one too. */
static void test_collection_config_check(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    assert_ok(db, qv_collection_config_check(db, &(qv_collection_config){
                                                 .dim = 8, .codec = "pq:4",
                                                 .train_min = 300}));
    assert_ok(db, qv_collection_config_check(db, &(qv_collection_config){
                                                 .dim = 3}));
    /* each bad config: the status and message of create, then of check */
    qv_collection_config bad[] = {
        {.dim = 0},
        {.dim = QV_DIM_MAX + 1},
        {.dim = 8, .metric = (qv_metric)9},
        {.dim = 8, .M = 1},
        {.dim = 8, .ef_construction = QV_EF_MAX + 1},
        {.dim = 8, .codec = "pq:5"},
        {.dim = 8, .codec = "zip"},
        {.dim = 8, .train_min = 10},
        {.dim = 8, .codec = "pq:4", .train_min = 255},
        {.dim = 8, .codec = "sq8", .train_min = QV_TRAIN_MIN_MOST + 1},
        {.dim = 8, .reserved = {[2] = 1}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char created[512];
        assert_status(db, qv_create_collection(db, "bad", &bad[i]),
                      QV_ERR_INVALID);
        snprintf(created, sizeof created, "%s", qv_errmsg(db));
        assert_true(created[0] != '\0');
        assert_status(db, qv_collection_config_check(db, &bad[i]),
                      QV_ERR_INVALID);
        assert_string_equal(qv_errmsg(db), created);
    }
    assert_status(db, qv_collection_config_check(db, &bad[0]),
                  QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "dimension must be 1 to 16384, not 0");
    assert_status(db, qv_collection_config_check(db, &bad[5]),
                  QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "codec pq:5: the dimension 8 is not a "
                        "multiple of 5");
    assert_status(db, qv_collection_config_check(db, NULL), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "collection config is NULL");
    assert_status(NULL, qv_collection_config_check(NULL, &bad[0]),
                  QV_ERR_INVALID);
    /* a good check clears the last message; nothing was created */
    assert_ok(db, qv_collection_config_check(db, &(qv_collection_config){
                                                 .dim = 8}));
    assert_string_equal(qv_errmsg(db), "");
    qv_collection_info *list = (qv_collection_info *)&list;
    size_t n = 1;
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 0);
    assert_null(list);
}

/* A sharded table's shards and replicas, as a collection's: ranges
 * checked at the front door on both transports, and a cluster node
 * needed to make one. */
static void test_table_shards_need_a_cluster_node(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    qv_table_config cfg = {.rows = 10, .dim = 4, .shards = QV_SHARDS_MAX,
                           .replicas = QV_REPLICAS_MAX};
    assert_status(db, qv_table_create(db, "sharded", &cfg),
                  QV_ERR_UNSUPPORTED);
    assert_string_equal(qv_errmsg(db), "shards and replicas need a cluster "
                        "node (quiverd --cluster); this database is a single "
                        "node");
    assert_ok(db, qv_table_config_check(db, &cfg));
    cfg.shards = 300;
    assert_status(db, qv_table_create(db, "sharded", &cfg), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "shards must be 0 to 256, not 300");
    assert_status(db, qv_table_config_check(db, &cfg), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "shards must be 0 to 256, not 300");
    cfg.shards = 2;
    cfg.replicas = 17;
    assert_status(db, qv_table_create(db, "sharded", &cfg), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "replicas must be 0 to 16, not 17");
    cfg.shards = 0;
    cfg.replicas = 2;
    assert_status(db, qv_table_config_check(db, &cfg), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "replicas need shards: replicas is 2 "
                        "but shards is 0 (an ordinary table has no "
                        "replicas)");
    /* a bad method is named before the cluster is asked for */
    cfg = (qv_table_config){.rows = 10, .dim = 4, .method = "hash:0",
                            .shards = 2};
    assert_status(db, qv_table_create(db, "sharded", &cfg), QV_ERR_INVALID);
    cfg.reserved[0] = 1;
    cfg.method = NULL;
    assert_status(db, qv_table_config_check(db, &cfg), QV_ERR_INVALID);
    qv_table_info info;
    assert_status(db, qv_table_describe(db, "sharded", &info),
                  QV_ERR_NOT_FOUND);
}

/* shards and replicas: their ranges are the front door's, on both
 * transports; a sharded collection needs a cluster node, which neither
 * an embedded handle nor the test's quiverd (no --cluster) is. */
static void test_shards_need_a_cluster_node(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    qv_collection_config cfg = {.dim = 4, .shards = 4};
    assert_status(db, qv_create_collection(db, "sharded", &cfg),
                  QV_ERR_UNSUPPORTED);
    assert_string_equal(qv_errmsg(db), "shards and replicas need a cluster "
                        "node (quiverd --cluster); this database is a single "
                        "node");
    cfg.replicas = QV_REPLICAS_MAX;
    cfg.shards = QV_SHARDS_MAX;
    assert_status(db, qv_create_collection(db, "sharded", &cfg),
                  QV_ERR_UNSUPPORTED);
    /* the config itself is good: check passes it, on any handle */
    assert_ok(db, qv_collection_config_check(db, &cfg));

    cfg.shards = 300;
    cfg.replicas = 0;
    assert_status(db, qv_create_collection(db, "sharded", &cfg),
                  QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "shards must be 0 to 256, not 300");
    assert_status(db, qv_collection_config_check(db, &cfg), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "shards must be 0 to 256, not 300");
    cfg.shards = 2;
    cfg.replicas = 17;
    assert_status(db, qv_create_collection(db, "sharded", &cfg),
                  QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "replicas must be 0 to 16, not 17");
    cfg.shards = 0;
    cfg.replicas = 2;
    assert_status(db, qv_create_collection(db, "sharded", &cfg),
                  QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "replicas need shards: replicas is 2 "
                        "but shards is 0 (an ordinary collection has no "
                        "replicas)");
    assert_status(db, qv_collection_config_check(db, &cfg), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "replicas need shards: replicas is 2 "
                        "but shards is 0 (an ordinary collection has no "
                        "replicas)");
    /* a range check comes before the cluster's: INVALID, not UNSUPPORTED,
     * and a bad codec is named before shards */
    cfg = (qv_collection_config){.dim = 8, .codec = "pq:5", .shards = 2};
    assert_status(db, qv_create_collection(db, "sharded", &cfg),
                  QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "codec pq:5: the dimension 8 is not a "
                        "multiple of 5");

    /* nothing was created */
    qv_collection_info *list = (qv_collection_info *)&list;
    size_t n = 1;
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 0);
    assert_null(list);

    /* an ordinary collection has neither, in describe and in list */
    create(db, "plain", 4, QV_METRIC_L2);
    qv_collection_info info;
    memset(&info, 0xff, sizeof info);
    assert_ok(db, qv_describe_collection(db, "plain", &info));
    assert_int_equal(info.shards, 0);
    assert_int_equal(info.replicas, 0);
    for (int i = 0; i < QV_RESERVED - 1; i++)
        assert_int_equal(info.reserved[i], 0);
    assert_ok(db, qv_list_collections(db, &list, &n));
    assert_int_equal(n, 1);
    assert_int_equal(list[0].shards, 0);
    assert_int_equal(list[0].replicas, 0);
    qv_free(list);
}

/* ---- documents ---- */

static void test_upsert_get_replace_delete(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "docs", 3, QV_METRIC_L2);
    float v1[3] = {1, 2, 3}, v2[3] = {-1, 0.5f, 1e-3f};
    upsert_one(db, "docs", "a", v1, 3, "{ \"color\" : \"red\", \"n\": [1, 2] }");

    qv_record *r;
    assert_ok(db, qv_get(db, "docs", "a", &r));
    assert_string_equal(r->id, "a");
    assert_int_equal(r->dim, 3);
    assert_memory_equal(r->vector, v1, sizeof v1);
    assert_string_equal(r->payload, "{\"color\":\"red\",\"n\":[1,2]}");
    qv_free(r);

    upsert_one(db, "docs", "a", v2, 3, NULL);        /* upsert replaces */
    assert_int_equal(count_of(db, "docs"), 1);
    assert_ok(db, qv_get(db, "docs", "a", &r));
    assert_memory_equal(r->vector, v2, sizeof v2);
    assert_null(r->payload);
    qv_free(r);

    assert_ok(db, qv_delete(db, "docs", "a"));
    assert_int_equal(count_of(db, "docs"), 0);
    r = NULL;
    assert_status(db, qv_get(db, "docs", "a", &r), QV_ERR_NOT_FOUND);
    assert_null(r);
    assert_status(db, qv_delete(db, "docs", "a"), QV_ERR_NOT_FOUND);
    assert_non_null(strstr(qv_errmsg(db), "'a'"));
}

static void test_batch_upsert_with_repeated_id(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "b", 2, QV_METRIC_L2);
    float v[4][2] = {{0, 0}, {1, 1}, {2, 2}, {3, 3}};
    qv_doc docs[] = {{"p", v[0], 2, NULL}, {"q", v[1], 2, NULL},
                     {"p", v[2], 2, "{\"last\":true}"}, {"r", v[3], 2, NULL}};
    assert_ok(db, qv_upsert(db, "b", docs, 4));
    assert_int_equal(count_of(db, "b"), 3);
    qv_record *r;
    assert_ok(db, qv_get(db, "b", "p", &r));
    assert_true(r->vector[0] == 2.0f);  /* the later one wins */
    assert_string_equal(r->payload, "{\"last\":true}");
    qv_free(r);
}

static void test_unicode_and_longest_ids(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "ids", 1, QV_METRIC_L2);
    char longest[QV_ID_MAX + 1];
    memset(longest, 'z', QV_ID_MAX);
    longest[QV_ID_MAX] = '\0';
    float v = 1;
    upsert_one(db, "ids", longest, &v, 1, NULL);
    upsert_one(db, "ids", "näïve-文字", &v, 1, NULL);
    qv_record *r;
    assert_ok(db, qv_get(db, "ids", longest, &r));
    assert_string_equal(r->id, longest);
    qv_free(r);
    assert_ok(db, qv_get(db, "ids", "näïve-文字", &r));
    assert_string_equal(r->id, "näïve-文字");
    qv_free(r);
}

/*
 * Text from outside is UTF-8 or refused (proto3 clients could not read it
 * back), and a message that quotes it escapes what is not printable.
 */
static void test_text_is_utf8_and_messages_printable(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "u", 2, QV_METRIC_L2);
    float v[2] = {1, 2};
    const char *bad[] = {"\xff\xfe\x80", "a\xc0\xafz" /* overlong '/' */,
                         "\xed\xa0\x80" /* a surrogate */,
                         "\xf4\x90\x80\x80" /* past U+10FFFF */, "ok\xe6\x96"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qv_doc doc = {bad[i], v, 2, NULL};
        assert_status(db, qv_upsert(db, "u", &doc, 1), QV_ERR_INVALID);
        if (!strstr(qv_errmsg(db), "not valid UTF-8"))
            fail_msg("case %zu: '%s'", i, qv_errmsg(db));
    }
    assert_int_equal(count_of(db, "u"), 0);
    assert_status(db, qv_create_index(db, "u", "f\xff", QV_INDEX_KEYWORD),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "not valid UTF-8"));
    qv_record *r;
    assert_status(db, qv_get(db, "u", "x\x1b[2J\x7fy", &r), QV_ERR_NOT_FOUND);
    assert_non_null(strstr(qv_errmsg(db), "'x\\x1b[2J\\x7fy'"));
    assert_null(strchr(qv_errmsg(db), '\x1b'));
    upsert_one(db, "u", "näïve-文字", v, 2, NULL);  /* UTF-8 stays as it is */
    assert_status(db, qv_delete(db, "u", "näïve-文字?"), QV_ERR_NOT_FOUND);
    assert_non_null(strstr(qv_errmsg(db), "'näïve-文字?'"));
}

/*
 * Every malformed document is refused with its status, the message names
 * the bad document of the batch, and the collection is unchanged.
 */
static void test_bad_documents_change_nothing(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "bad", 4, QV_METRIC_L2);
    float good[4] = {1, 2, 3, 4};
    upsert_one(db, "bad", "keep", good, 4, "{\"v\":1}");

    char too_long[QV_ID_MAX + 2];
    memset(too_long, 'x', QV_ID_MAX + 1);
    too_long[QV_ID_MAX + 1] = '\0';
    char *huge = malloc(QV_PAYLOAD_MAX + 16);
    memset(huge, ' ', QV_PAYLOAD_MAX + 15);
    huge[0] = '{';
    huge[QV_PAYLOAD_MAX + 13] = '}';
    huge[QV_PAYLOAD_MAX + 14] = '\0';

    float nan_v[4] = {1, NAN, 3, 4}, inf_v[4] = {1, 2, -INFINITY, 4};
    float five[5] = {1, 2, 3, 4, 5};
    struct { qv_doc doc; qv_status expect; const char *msg; } cases[] = {
        {{"new", good, 3, NULL}, QV_ERR_DIMENSION, "dimension 3"},
        {{"new", five, 5, NULL}, QV_ERR_DIMENSION, "dimension 5"},
        {{"new", nan_v, 4, NULL}, QV_ERR_INVALID, "vector[1] is NaN"},
        {{"new", inf_v, 4, NULL}, QV_ERR_INVALID, "vector[2] is infinite"},
        {{"", good, 4, NULL}, QV_ERR_INVALID, "id is empty"},
        {{NULL, good, 4, NULL}, QV_ERR_INVALID, "id is NULL"},
        {{too_long, good, 4, NULL}, QV_ERR_INVALID, "limit is 255"},
        {{"new", NULL, 4, NULL}, QV_ERR_INVALID, "vector is NULL"},
        {{"new", good, 4, "[1, 2]"}, QV_ERR_INVALID, "must be a JSON object"},
        {{"new", good, 4, "42"}, QV_ERR_INVALID, "must be a JSON object"},
        {{"new", good, 4, "{\"a\": }"}, QV_ERR_INVALID, "not valid JSON"},
        {{"new", good, 4, "{} {}"}, QV_ERR_INVALID, "not valid JSON"},
        {{"new", good, 4, "{\"a\":1,\"a\":2}"}, QV_ERR_INVALID, "duplicate"},
        {{"new", good, 4, huge}, QV_ERR_INVALID, "limit"},
        /* a bad replacement of an existing document leaves it as it was */
        {{"keep", nan_v, 4, NULL}, QV_ERR_INVALID, "NaN"},
        {{"keep", good, 4, "nope"}, QV_ERR_INVALID, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* the bad one sits at index 2 of a batch of good ones */
        float other[4] = {0, 0, 0, 1};
        qv_doc batch[4] = {{"g0", other, 4, NULL}, {"g1", other, 4, NULL},
                           cases[i].doc, {"g3", other, 4, NULL}};
        qv_status st = qv_upsert(db, "bad", batch, 4);
        if (st != cases[i].expect || !strstr(qv_errmsg(db), cases[i].msg) ||
            !strstr(qv_errmsg(db), "document 2"))
            fail_msg("case %zu: got %s '%s', expected %s '%s'", i,
                     qv_status_name(st), qv_errmsg(db),
                     qv_status_name(cases[i].expect), cases[i].msg);
        assert_int_equal(count_of(db, "bad"), 1);
    }
    qv_record *r;
    assert_ok(db, qv_get(db, "bad", "keep", &r));
    assert_memory_equal(r->vector, good, sizeof good);
    assert_string_equal(r->payload, "{\"v\":1}");
    qv_free(r);
    assert_status(db, qv_get(db, "bad", "g0", &r), QV_ERR_NOT_FOUND);
    assert_status(db, qv_upsert(db, "bad", NULL, 1), QV_ERR_INVALID);
    assert_status(db, qv_upsert(db, "bad", &(qv_doc){"x", good, 4, NULL}, 0),
                  QV_ERR_INVALID);
    free(huge);
}

static void test_cosine_refuses_zero_vectors(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "cos", 3, QV_METRIC_COSINE);
    float zero[3] = {0, 0, 0}, one[3] = {0, 1, 0};
    qv_doc doc = {"z", zero, 3, NULL};
    assert_status(db, qv_upsert(db, "cos", &doc, 1), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "zeros"));
    upsert_one(db, "cos", "o", one, 3, NULL);
    qv_hits *hits = NULL;
    assert_status(db, qv_search(db, "cos", zero, 3, &(qv_search_options){.k = 1},
                                &hits), QV_ERR_INVALID);
    assert_int_equal(count_of(db, "cos"), 1);
}

/* ---- magnitudes (quiver.h, "Which vectors") ---- */

static double ref_distance(qv_metric m, const float *a, const float *b,
                           size_t d);

/* Index of id among ids[0..n), or -1. */
static int index_of(const char *const *ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return (int)i;
    return -1;
}

/* One search's hits: all n documents, each once, nearest first, at
 * finite distances equal to the double-precision reference. */
static void check_every_hit(const char *what, const qv_hits *h, qv_metric m,
                            const float *q, const float *vecs,
                            const char *const *ids, size_t n, uint32_t dim)
{
    if (h->count != n)
        fail_msg("%s: %zu hits of %zu documents", what, h->count, n);
    int seen[64] = {0};
    for (size_t i = 0; i < n; i++) {
        int j = index_of(ids, n, h->hits[i].id);
        assert_true(j >= 0 && !seen[j]);
        seen[j] = 1;
        double want = ref_distance(m, q, vecs + (size_t)j * dim, dim);
        float got = h->hits[i].distance;
        if (!isfinite(got) || fabs(got - want) > 1e-5 * (fabs(want) + 1))
            fail_msg("%s: %s at %g, expected %g", what, h->hits[i].id, got,
                     want);
        if (i > 0)
            assert_true(h->hits[i - 1].distance <= got);
    }
}

/*
 * Every search path answers q with all n documents of collection name
 * (each with payload {"g":1}): the graph walk, the exact scan, a filtered
 * search and a batch of two.
 */
static void check_every_path(qv_db *db, const char *name, qv_metric m,
                             const float *q, const float *vecs,
                             const char *const *ids, size_t n, uint32_t dim)
{
    qv_search_options opts[] = {
        {.k = (uint32_t)n},
        {.k = (uint32_t)n, .exact = 1},
        {.k = (uint32_t)n, .filter = "{\"g\":1}"},
        {.k = (uint32_t)n, .filter = "{\"g\":1}", .exact = 1},
    };
    static const char *const paths[] = {"graph", "exact", "filtered",
                                        "filtered exact"};
    char what[96];
    for (size_t o = 0; o < sizeof opts / sizeof *opts; o++) {
        qv_hits *h;
        assert_ok(db, qv_search(db, name, q, dim, &opts[o], &h));
        snprintf(what, sizeof what, "%s, %s search", name, paths[o]);
        check_every_hit(what, h, m, q, vecs, ids, n, dim);
        qv_free(h);
    }
    float *two = malloc(2 * dim * sizeof *two);
    memcpy(two, q, dim * sizeof *two);
    memcpy(two + dim, q, dim * sizeof *two);
    qv_batch_hits *b;
    assert_ok(db, qv_search_batch(db, name, two, 2, dim, &opts[0], &b));
    assert_int_equal(b->count, 2);
    for (size_t i = 0; i < 2; i++) {
        snprintf(what, sizeof what, "%s, batch search %zu", name, i);
        check_every_hit(what, &b->results[i], m, q, vecs, ids, n, dim);
    }
    qv_free(b);
    free(two);
}

/*
 * Cosine takes every finite vector that is not all zeros: components near
 * FLT_MAX, tiny and subnormal ones. Every path finds each document at the
 * distance of its direction, and only a true zero vector is refused.
 */
static void test_cosine_takes_any_magnitude(void **state)
{
    enum { D = 4, NDIR = 6, NSCALE = 6, N = NDIR * NSCALE };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "cm", D, QV_METRIC_COSINE);
    static const float dirs[NDIR][D] = {{1, 1, 0, 0}, {1, 0, 1, 0},
                                        {0, 1, 1, 0}, {0, 0, 0, 1},
                                        {1, 2, 3, 4}, {-1, 0, 0, 1}};
    /* 8e37 x 4 is near FLT_MAX; 0x1p-149 is the smallest subnormal */
    static const float scales[NSCALE] = {8e37f, 1e30f, 1.0f, 1e-30f,
                                         1e-40f, 0x1p-149f};
    static float vecs[N][D];
    static char idbuf[N][32];
    const char *ids[N];
    qv_doc docs[N];
    for (int j = 0; j < NDIR; j++) {
        for (int k = 0; k < NSCALE; k++) {
            int i = j * NSCALE + k;
            for (int d = 0; d < D; d++)
                vecs[i][d] = dirs[j][d] * scales[k];
            snprintf(idbuf[i], sizeof idbuf[i], "d%ds%d", j, k);
            ids[i] = idbuf[i];
            docs[i] = (qv_doc){ids[i], vecs[i], D, "{\"g\":1}"};
        }
    }
    assert_ok(db, qv_upsert(db, "cm", docs, N));
    for (int i = 0; i < N; i += 5)
        check_every_path(db, "cm", QV_METRIC_COSINE, vecs[i], &vecs[0][0],
                         ids, N, D);
    /* the same direction at any scale is at distance 0 */
    qv_hits *h;
    float q[D] = {0, 0, 0, 0x1p-149f};
    assert_ok(db, qv_search(db, "cm", q, D,
                            &(qv_search_options){.k = NSCALE, .exact = 1},
                            &h));
    for (size_t i = 0; i < h->count; i++) {
        assert_true(strncmp(h->hits[i].id, "d3s", 3) == 0);
        assert_true(fabsf(h->hits[i].distance) < 1e-6f);
    }
    qv_free(h);
    float zero[D] = {0};
    qv_doc z = {"z", zero, D, NULL};
    assert_status(db, qv_upsert(db, "cm", &z, 1), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "all zeros"));
    assert_status(db, qv_search(db, "cm", zero, D,
                                &(qv_search_options){.k = 1}, &h),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "all zeros"));
    assert_int_equal(count_of(db, "cm"), N);
}

/*
 * l2 and ip take vectors whose squared norm is at most QV_SQNORM_MAX, and
 * every distance between them is finite: each path finds every document.
 * Beyond the limit documents and queries are refused, the message naming
 * the norm, the limit and the metric, and nothing is stored.
 */
static void check_magnitude_limit(qv_db *db, qv_metric m)
{
    enum { D = 40, N = 7 };
    const char *name = qv_metric_name(m);
    create(db, name, D, m);
    /* components of 1.6e17: a squared norm just below 1e36 */
    float c = (float)(sqrt(QV_SQNORM_MAX / D) * 0.999999);
    static float vecs[N][D];
    static const char *const ids[N] = {"pos", "neg", "mix", "axis", "axis-",
                                       "ones", "tiny"};
    for (int d = 0; d < D; d++) {
        vecs[0][d] = c;
        vecs[1][d] = -c;
        vecs[2][d] = d % 2 ? c : -c;
        vecs[3][d] = d ? 0 : 1e18f;   /* 1e18f is 9.99999984e17 */
        vecs[4][d] = d ? 0 : -1e18f;
        vecs[5][d] = 1;
        vecs[6][d] = 1e-30f;
    }
    qv_doc docs[N];
    for (int i = 0; i < N; i++) {
        double sq = 0;
        for (int d = 0; d < D; d++)
            sq += (double)vecs[i][d] * vecs[i][d];
        assert_true(sq <= QV_SQNORM_MAX);
        docs[i] = (qv_doc){ids[i], vecs[i], D, "{\"g\":1}"};
    }
    assert_ok(db, qv_upsert(db, name, docs, N));
    for (int i = 0; i < N; i++)
        check_every_path(db, name, m, vecs[i], &vecs[0][0], ids, N, D);
    float zero[D] = {0};
    check_every_path(db, name, m, zero, &vecs[0][0], ids, N, D);

    /* beyond: 1.001e18 on an axis (1.002e36), 2e40 spread over two */
    float over[D] = {0}, huge[D] = {0};
    over[5] = 1.001e18f;
    huge[0] = huge[1] = 1e20f;
    qv_doc bad[2] = {{"ok", vecs[5], D, NULL}, {"over", over, D, NULL}};
    char expect[128];
    snprintf(expect, sizeof expect, "document 1: vector's squared norm "
             "1.002e+36 exceeds 1e+36, the limit for metric %s", name);
    assert_status(db, qv_upsert(db, name, bad, 2), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), expect);
    bad[1].vector = huge;
    assert_status(db, qv_upsert(db, name, bad, 2), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "squared norm 2e+40 exceeds"));
    assert_int_equal(count_of(db, name), N);
    qv_hits *h = NULL;
    qv_search_options opt = {.k = 1};
    assert_status(db, qv_search(db, name, over, D, &opt, &h), QV_ERR_INVALID);
    snprintf(expect, sizeof expect, "query vector's squared norm 1.002e+36 "
             "exceeds 1e+36, the limit for metric %s", name);
    assert_string_equal(qv_errmsg(db), expect);
    assert_null(h);
    float pair[2 * D];
    memcpy(pair, vecs[5], sizeof vecs[5]);
    memcpy(pair + D, huge, sizeof huge);
    qv_batch_hits *b = NULL;
    assert_status(db, qv_search_batch(db, name, pair, 2, D, &opt, &b),
                  QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "query 1: vector's squared norm"));
    assert_null(b);
}

static void test_l2_magnitude_limit(void **state)
{
    check_magnitude_limit(((struct tu_fixture *)*state)->db, QV_METRIC_L2);
}

static void test_ip_magnitude_limit(void **state)
{
    check_magnitude_limit(((struct tu_fixture *)*state)->db, QV_METRIC_IP);
}

/* ---- search ---- */

static void test_bad_search_arguments(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "s", 2, QV_METRIC_L2);
    float q[2] = {0, 0}, nan_q[2] = {NAN, 0}, q3[3] = {0, 0, 0};
    upsert_one(db, "s", "a", q, 2, NULL);
    qv_hits *hits = NULL;
    qv_search_options opt = {.k = 0};
    assert_status(db, qv_search(db, "s", q, 2, &opt, &hits), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "k must be"));
    opt.k = QV_K_MAX + 1;
    assert_status(db, qv_search(db, "s", q, 2, &opt, &hits), QV_ERR_INVALID);
    opt.k = 1;
    assert_status(db, qv_search(db, "s", q3, 3, &opt, &hits), QV_ERR_DIMENSION);
    assert_status(db, qv_search(db, "s", nan_q, 2, &opt, &hits), QV_ERR_INVALID);
    assert_status(db, qv_search(db, "s", NULL, 2, &opt, &hits), QV_ERR_INVALID);
    assert_status(db, qv_search(db, "s", q, 2, NULL, &hits), QV_ERR_INVALID);
    assert_null(hits);
    opt.k = QV_K_MAX;  /* the maximum is allowed; only one document */
    assert_ok(db, qv_search(db, "s", q, 2, &opt, &hits));
    assert_int_equal(hits->count, 1);
    qv_free(hits);
}

static double ref_distance(qv_metric m, const float *a, const float *b,
                           size_t d)
{
    double dot = 0, na = 0, nb = 0, l2 = 0;
    for (size_t i = 0; i < d; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
        l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    }
    if (m == QV_METRIC_L2)
        return l2;
    if (m == QV_METRIC_IP)
        return 1 - dot;
    return 1 - dot / sqrt(na * nb);
}

struct ranked {
    double dist;
    char id[16];
};

static int by_ranked(const void *pa, const void *pb)
{
    const struct ranked *a = pa, *b = pb;
    if (a->dist != b->dist)
        return a->dist < b->dist ? -1 : 1;
    return strcmp(a->id, b->id);
}

/*
 * Exact search equals a brute-force ranking in double precision, for each
 * metric, including after deletes and with k above the count.
 */
static void check_exact_search(qv_db *db, qv_metric m)
{
    enum { N = 400, D = 37, Q = 20, K = 15 };
    const char *name = qv_metric_name(m);
    create(db, name, D, m);
    uint64_t rng = 1234 + (uint64_t)m;
    static float vecs[N][D];
    static char ids[N][16];
    static qv_doc docs[N];
    int alive[N];
    for (int i = 0; i < N; i++) {
        tu_rand_vector(&rng, vecs[i], D);
        snprintf(ids[i], sizeof ids[i], "doc%d", i);
        docs[i] = (qv_doc){ids[i], vecs[i], D, NULL};
        alive[i] = 1;
    }
    assert_ok(db, qv_upsert(db, name, docs, N));
    for (int i = 0; i < N; i += 7) {
        assert_ok(db, qv_delete(db, name, ids[i]));
        alive[i] = 0;
    }
    for (int qi = 0; qi < Q; qi++) {
        float q[D];
        tu_rand_vector(&rng, q, D);
        struct ranked ref[N];
        int n = 0;
        for (int i = 0; i < N; i++) {
            if (!alive[i])
                continue;
            ref[n].dist = ref_distance(m, q, vecs[i], D);
            memcpy(ref[n].id, ids[i], sizeof ref[n].id);
            n++;
        }
        qsort(ref, (size_t)n, sizeof *ref, by_ranked);
        qv_hits *hits;
        assert_ok(db, qv_search(db, name, q, D,
                                &(qv_search_options){.k = K, .exact = 1},
                                &hits));
        assert_int_equal(hits->count, K);
        for (int i = 0; i < K; i++) {
            assert_string_equal(hits->hits[i].id, ref[i].id);
            assert_true(fabs(hits->hits[i].distance - ref[i].dist) < 1e-4);
        }
        qv_free(hits);
    }
    float q[D] = {0};
    q[0] = 1;
    qv_hits *hits;
    assert_ok(db, qv_search(db, name, q, D,
                            &(qv_search_options){.k = 1000, .exact = 1},
                            &hits));
    assert_int_equal(hits->count, count_of(db, name));
    for (size_t i = 1; i < hits->count; i++)
        assert_true(hits->hits[i - 1].distance <= hits->hits[i].distance);
    qv_free(hits);
}

static void test_exact_search_l2(void **state)
{
    check_exact_search(((struct tu_fixture *)*state)->db, QV_METRIC_L2);
}

static void test_exact_search_ip(void **state)
{
    check_exact_search(((struct tu_fixture *)*state)->db, QV_METRIC_IP);
}

static void test_exact_search_cosine(void **state)
{
    check_exact_search(((struct tu_fixture *)*state)->db, QV_METRIC_COSINE);
}

/* Equal distances come back in id order, also at the k boundary. */
static void test_ties_are_broken_by_id(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "ties", 2, QV_METRIC_L2);
    float same[2] = {1, 1}, far[2] = {9, 9};
    const char *ids[] = {"m", "b", "zz", "a", "c", "z"};
    for (size_t i = 0; i < 6; i++)
        upsert_one(db, "ties", ids[i], same, 2, NULL);
    upsert_one(db, "ties", "0far", far, 2, NULL);
    qv_hits *hits;
    assert_ok(db, qv_search(db, "ties", same, 2,
                            &(qv_search_options){.k = 3, .exact = 1}, &hits));
    assert_int_equal(hits->count, 3);
    assert_string_equal(hits->hits[0].id, "a");
    assert_string_equal(hits->hits[1].id, "b");
    assert_string_equal(hits->hits[2].id, "c");
    qv_free(hits);
}

/* partial asks a sharded collection on a cluster node for the shards
 * that answered; anywhere else it is accepted and changes nothing: the
 * same hits, no missing shard. */
static void test_partial_search_of_one_database(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "whole", 2, QV_METRIC_L2);
    const char *ids[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        upsert_one(db, "whole", ids[i], (float[2]){(float)i, 0}, 2, NULL);
    float q[4] = {2.2f, 0, 0.1f, 0};
    qv_hits *hits = NULL;
    qv_search_options opt = {.k = 3, .exact = 1, .partial = 1};
    assert_ok(db, qv_search(db, "whole", q, 2, &opt, &hits));
    assert_int_equal(hits->count, 3);
    assert_string_equal(hits->hits[0].id, "c");
    assert_string_equal(hits->hits[1].id, "d");
    assert_string_equal(hits->hits[2].id, "b");
    assert_int_equal(hits->missing_count, 0);
    assert_null(hits->missing);
    qv_free(hits);
    qv_batch_hits *batch = NULL;
    assert_ok(db, qv_search_batch(db, "whole", q, 2, 2, &opt, &batch));
    assert_int_equal(batch->count, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(batch->results[i].count, 3);
        assert_int_equal(batch->results[i].missing_count, 0);
        assert_null(batch->results[i].missing);
    }
    assert_string_equal(batch->results[1].hits[0].id, "a");
    qv_free(batch);
}

static void test_empty_collection_search(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "empty", 2, QV_METRIC_L2);
    float q[2] = {0, 0};
    qv_hits *hits;
    assert_ok(db, qv_search(db, "empty", q, 2, &(qv_search_options){.k = 5},
                            &hits));
    assert_int_equal(hits->count, 0);
    qv_free(hits);
}

static long data_file_size(const char *dir)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Inserting and deleting the same number of documents over and over does
 * not grow the file: the space of deleted documents is reused. */
static void test_space_of_deleted_documents_is_reused(void **state)
{
    struct tu_fixture *f = *state;
    qv_db *db = f->db;
    create(db, "reuse", 64, QV_METRIC_L2);
    uint64_t rng = 5;
    float v[64];
    char id[32];
    long after_first = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 100; i++) {
            tu_rand_vector(&rng, v, 64);
            snprintf(id, sizeof id, "r%d-%d", round, i);
            upsert_one(db, "reuse", id, v, 64, NULL);
        }
        if (round == 0)
            after_first = data_file_size(f->dir);
        for (int i = 0; i < 100; i++) {
            snprintf(id, sizeof id, "r%d-%d", round, i);
            assert_ok(db, qv_delete(db, "reuse", id));
        }
    }
    assert_int_equal(count_of(db, "reuse"), 0);
    assert_true(after_first > 0);
    assert_true(data_file_size(f->dir) <= 2 * after_first);
    upsert_one(db, "reuse", "last", v, 64, NULL);
    qv_hits *hits;
    assert_ok(db, qv_search(db, "reuse", v, 64, &(qv_search_options){.k = 3},
                            &hits));
    assert_int_equal(hits->count, 1);
    assert_string_equal(hits->hits[0].id, "last");
    qv_free(hits);
}

/* ---- handles, persistence, concurrency ---- */

static void test_reopen_finds_everything(void **state)
{
    struct tu_fixture *f = *state;
    create(f->db, "p", 3, QV_METRIC_IP);
    float v[3] = {0.25f, -1, 3};
    upsert_one(f->db, "p", "kept", v, 3, "{\"k\":\"v\"}");
    upsert_one(f->db, "p", "gone", v, 3, NULL);
    assert_ok(f->db, qv_delete(f->db, "p", "gone"));
    qv_close(f->db);
    assert_ok(NULL, tu_open(f->dir, NULL, &f->db));
    qv_collection_info info;
    assert_ok(f->db, qv_describe_collection(f->db, "p", &info));
    assert_int_equal(info.count, 1);
    assert_int_equal(info.metric, QV_METRIC_IP);
    qv_record *r;
    assert_ok(f->db, qv_get(f->db, "p", "kept", &r));
    assert_memory_equal(r->vector, v, sizeof v);
    assert_string_equal(r->payload, "{\"k\":\"v\"}");
    qv_free(r);
    assert_status(f->db, qv_get(f->db, "p", "gone", &r), QV_ERR_NOT_FOUND);
}

static void test_readonly_handle_refuses_writes(void **state)
{
    struct tu_fixture *f = *state;
    create(f->db, "ro", 1, QV_METRIC_L2);
    qv_db *ro;
    qv_open_options opts = {.flags = QV_OPEN_READONLY};
    assert_ok(NULL, tu_open(f->dir, &opts, &ro));
    float v = 1;
    qv_doc doc = {"a", &v, 1, NULL};
    assert_status(ro, qv_upsert(ro, "ro", &doc, 1), QV_ERR_READONLY);
    assert_status(ro, qv_delete(ro, "ro", "a"), QV_ERR_READONLY);
    assert_status(ro, qv_drop_collection(ro, "ro"), QV_ERR_READONLY);
    qv_collection_config cfg = {.dim = 1};
    assert_status(ro, qv_create_collection(ro, "x", &cfg), QV_ERR_READONLY);
    assert_ok(ro, qv_collection_config_check(ro, &cfg));  /* writes nothing */
    assert_int_equal(count_of(ro, "ro"), 0);  /* reads work */
    qv_close(ro);
}

static void test_open_errors(void **state)
{
    if (tu_remote())
        skip();  /* about opening directories; remote opens: test_server */
    qv_db *db = (qv_db *)1;
    assert_status(NULL, qv_open("", NULL, &db), QV_ERR_INVALID);
    assert_status(NULL, qv_open("/nonexistent-parent/x/y", NULL, &db),
                  QV_ERR_IO);
    assert_status(NULL, qv_open("/etc/hostname", NULL, &db), QV_ERR_IO);
    qv_open_options bad = {.flags = 0x100};
    assert_status(NULL, qv_open("/tmp", &bad, &db), QV_ERR_INVALID);
    assert_status(NULL, qv_open("/tmp", NULL, NULL), QV_ERR_INVALID);
    qv_close(NULL);  /* harmless */
    qv_free(NULL);
    assert_status(NULL, qv_upsert(NULL, "c", NULL, 0), QV_ERR_INVALID);
}

static void test_status_names_and_messages(void **state)
{
    assert_string_equal(qv_version(), QV_VERSION);
    for (int s = QV_OK; s <= QV_STATUS_LAST; s++) {
        assert_true(strlen(qv_strerror((qv_status)s)) > 0);
        assert_string_not_equal(qv_status_name((qv_status)s), "UNKNOWN");
    }
    assert_string_equal(qv_status_name(QV_ERR_DIMENSION), "DIMENSION");
    assert_string_equal(qv_strerror((qv_status)99), "unknown status");
    assert_string_equal(qv_status_name((qv_status)99), "UNKNOWN");
    qv_metric m = QV_METRIC_L2;
    assert_int_equal(qv_metric_parse("cosine", &m), QV_OK);
    assert_int_equal(m, QV_METRIC_COSINE);
    assert_int_equal(qv_metric_parse("manhattan", &m), QV_ERR_INVALID);
    assert_int_equal(qv_metric_parse(NULL, &m), QV_ERR_INVALID);
    assert_int_equal(qv_metric_parse("ip", NULL), QV_ERR_INVALID);
    assert_int_equal(m, QV_METRIC_COSINE);
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "m", 1, QV_METRIC_L2);
    assert_string_equal(qv_errmsg(db), "");
}

/* A small map grows through the API while documents stream in. */
/* Batches that outgrow the map many times over; after each, every
 * vector of the batch is found first by a graph search (the graph in
 * memory follows the map wherever it moved). */
static void map_growth(uint32_t dim)
{
    char *dir = tu_mkdtemp();
    qv_db *db;
    qv_open_options opts = {.flags = QV_OPEN_NOSYNC, .map_size = 1 << 20};
    assert_ok(NULL, qv_open(dir, &opts, &db));
    create(db, "big", dim, QV_METRIC_L2);
    uint64_t rng = 9;
    static float v[500][784];
    char ids[500][16];
    qv_doc docs[500];
    for (int batch = 0; batch < 8; batch++) {
        for (int i = 0; i < 500; i++) {
            tu_rand_vector(&rng, v[i], dim);
            snprintf(ids[i], sizeof ids[i], "%d", batch * 500 + i);
            docs[i] = (qv_doc){ids[i], v[i], dim, NULL};
        }
        assert_ok(db, qv_upsert(db, "big", docs, 500));
        for (int i = 0; i < 500; i += 50) {
            qv_hits *hits;
            assert_ok(db, qv_search(db, "big", v[i], dim,
                                    &(qv_search_options){.k = 1}, &hits));
            assert_int_equal(hits->count, 1);
            assert_string_equal(hits->hits[0].id, ids[i]);
            qv_free(hits);
        }
    }
    assert_int_equal(count_of(db, "big"), 4000);
    qv_close(db);
    tu_rmdir(dir);
}

static void test_map_growth_through_api(void **state)
{
    if (tu_remote())
        skip();  /* a client cannot choose the server's map size */
    map_growth(256);
    map_growth(784);   /* vectors read in place in the map */
}

/*
 * Out of memory at every allocation of an upsert and a search: each call
 * fails cleanly with QV_ERR_NOMEM or succeeds, nothing leaks (ASan), and
 * the database stays consistent.
 */
static void test_allocation_failures_are_clean(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "oom", 4, QV_METRIC_COSINE);
    float v[4] = {1, 2, 3, 4};
    qv_doc docs[2] = {{"a", v, 4, "{\"x\":[1,2,3]}"}, {"b", v, 4, NULL}};
    int saw_nomem = 0;
    /* past the last allocation of the upsert (44 since the graph keeps
     * reverse lists), so the last rounds succeed */
    for (unsigned long n = 1; n < 60; n++) {
        qv_alloc_fail_at(n, 1);
        qv_status up = qv_upsert(db, "oom", docs, 2);
        qv_hits *hits = NULL;
        qv_status se = qv_search(db, "oom", v, 4, &(qv_search_options){.k = 2},
                                 &hits);
        qv_alloc_fail_at(0, 0);
        assert_true(up == QV_OK || up == QV_ERR_NOMEM);
        assert_true(se == QV_OK || se == QV_ERR_NOMEM);
        saw_nomem |= up == QV_ERR_NOMEM || se == QV_ERR_NOMEM;
        qv_free(hits);
        uint64_t c = count_of(db, "oom");
        assert_true(c == 0 || c == 2);
    }
    assert_true(saw_nomem);
    assert_int_equal(count_of(db, "oom"), 2);
}

/*
 * Readers search and get while a writer adds documents in batches of 10
 * and replaces earlier ones with a second vector. Every vector either
 * version can have is known beforehand, so a reader checks that each hit
 * and each document it reads existed in some committed state: its id was
 * written, its distance is that of one of the id's versions, its payload
 * names the same version, and a search sees whole batches.
 */
#define CONC_DOCS 500
#define CONC_DIM_MAX 640

/* [version][doc]; conc_dim of CONC_DIM_MAX used. 640-d vectors lie in
 * LMDB's overflow pages, which the graph reads in place (ARCHITECTURE,
 * "Vectors in place"): there the writer also deletes whole batches and
 * writes them again, so freed pages are reused under the readers. */
static float conc_vec[2][CONC_DOCS][CONC_DIM_MAX];
static uint32_t conc_dim;

static float conc_distance(const float *q, const float *v)
{
    double d = 0;
    for (uint32_t i = 0; i < conc_dim; i++)
        d += (double)(q[i] - v[i]) * (q[i] - v[i]);
    return (float)d;
}

struct reader_arg {
    qv_db *db;
    int failures;
    char why[160];
};

static void reader_fail(struct reader_arg *a, const char *why, long n)
{
    if (!a->failures++)
        snprintf(a->why, sizeof a->why, "%s (%ld)", why, n);
}

/* The version (0 or 1) of document n whose payload is text, or -1. */
static int conc_version(long n, const char *text)
{
    char want[48];
    for (int v = 0; v < 2; v++) {
        snprintf(want, sizeof want, "{\"n\":%ld,\"v\":%d,\"b\":%ld}", n, v,
                 n / 10);
        if (text && strcmp(text, want) == 0)
            return v;
    }
    return -1;
}

static void check_hit(struct reader_arg *a, const float *q, const qv_hit *h)
{
    char *end;
    long n = strtol(h->id, &end, 10);
    if (*end || n < 0 || n >= CONC_DOCS) {
        reader_fail(a, "a hit that was never written", n);
        return;
    }
    int v = conc_version(n, h->payload);
    if (v < 0)
        reader_fail(a, "a payload that was never written", n);
    else if (fabsf(h->distance - conc_distance(q, conc_vec[v][n])) >
             1e-3f * (1 + h->distance))
        reader_fail(a, "a distance of neither version", n);
}

static void *search_loop(void *p)
{
    struct reader_arg *a = p;
    static const float q[CONC_DIM_MAX] = {1};
    for (int i = 0; i < 300; i++) {
        qv_hits *hits;
        qv_search_options o = {.k = 5, .with_payload = 1, .exact = i % 3 == 0};
        if (qv_search(a->db, "conc", q, conc_dim, &o, &hits) != QV_OK) {
            reader_fail(a, qv_errmsg(a->db), i);
            continue;
        }
        /* a consistent snapshot: documents come in batches of 10 */
        if (hits->count != 5 && hits->count % 10 != 0)
            reader_fail(a, "hits of a partial batch", (long)hits->count);
        for (size_t h = 0; h < hits->count; h++) {
            check_hit(a, q, &hits->hits[h]);
            if (h && hits->hits[h].distance < hits->hits[h - 1].distance)
                reader_fail(a, "hits out of order", (long)h);
        }
        qv_free(hits);
        qv_record *r = NULL;
        char id[16];
        long n = (i * 37) % CONC_DOCS;
        snprintf(id, sizeof id, "%ld", n);
        qv_status st = qv_get(a->db, "conc", id, &r);
        if (st == QV_OK) {
            int v = conc_version(n, r->payload);
            if (v < 0 || memcmp(r->vector, conc_vec[v][n],
                                conc_dim * sizeof(float)) != 0)
                reader_fail(a, "a document read back unlike either version",
                            n);
        } else if (st != QV_ERR_NOT_FOUND) {
            reader_fail(a, qv_errmsg(a->db), n);
        }
        qv_free(r);
    }
    return NULL;
}

/* Upsert documents first..first+9 at version v, in one transaction. */
static void conc_write(qv_db *db, int first, int v)
{
    char ids[10][16], payloads[10][48];
    qv_doc docs[10];
    for (int i = 0; i < 10; i++) {
        int n = first + i;
        snprintf(ids[i], sizeof ids[i], "%d", n);
        snprintf(payloads[i], sizeof payloads[i],
                 "{\"n\":%d,\"v\":%d,\"b\":%d}", n, v, n / 10);
        docs[i] = (qv_doc){ids[i], conc_vec[v][n], conc_dim, payloads[i]};
    }
    assert_ok(db, qv_upsert(db, "conc", docs, 10));
}

/* Delete batch b (documents 10b..10b+9) in one transaction. */
static void conc_delete(qv_db *db, int b)
{
    char filter[32];
    uint64_t deleted;
    snprintf(filter, sizeof filter, "{\"b\":%d}", b);
    assert_ok(db, qv_delete_where(db, "conc", filter, &deleted));
    assert_int_equal(deleted, 10);
}

/* The k nearest ids and distances to the first vectors, as text. */
static void conc_answers(qv_db *db, char *out, size_t len)
{
    size_t at = 0;
    for (int i = 0; i < 20 && at < len; i++) {
        qv_hits *hits;
        qv_search_options o = {.k = 10};
        assert_ok(db, qv_search(db, "conc", conc_vec[1][i], conc_dim, &o,
                                &hits));
        for (size_t h = 0; h < hits->count && at < len; h++)
            at += (size_t)snprintf(out + at, len - at, "%s:%.6g ",
                                   hits->hits[h].id,
                                   (double)hits->hits[h].distance);
        qv_free(hits);
    }
}

static void concurrent_searches_during_writes(qv_db *db, uint32_t dim,
                                              int deletes)
{
    conc_dim = dim;
    create(db, "conc", dim, QV_METRIC_L2);
    uint64_t rng = 77;
    for (int v = 0; v < 2; v++)
        for (int n = 0; n < CONC_DOCS; n++)
            tu_rand_vector(&rng, conc_vec[v][n], dim);
    pthread_t readers[3];
    struct reader_arg args[3];
    for (int t = 0; t < 3; t++) {
        args[t] = (struct reader_arg){db, 0, ""};
        pthread_create(&readers[t], NULL, search_loop, &args[t]);
    }
    for (int b = 0; b < CONC_DOCS / 10; b++) {
        conc_write(db, b * 10, 0);
        if (b % 2 == 1)  /* replace the batch before with version 1 */
            conc_write(db, (b - 1) * 10, 1);
        if (deletes && b % 4 == 3) {
            /* and delete the batch before that, then write it again: its
             * ids and pages are reused */
            conc_delete(db, b - 2);
            conc_write(db, (b - 2) * 10, (b / 4) % 2);
        }
    }
    for (int t = 0; t < 3; t++) {
        pthread_join(readers[t], NULL);
        if (args[t].failures)
            fail_msg("reader %d: %d failures, the first: %s", t,
                     args[t].failures, args[t].why);
    }
    assert_int_equal(count_of(db, "conc"), CONC_DOCS);
    char *report = NULL;
    assert_ok(db, qv_check(db, &report));
    qv_free(report);
}

static void test_concurrent_searches_during_writes(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    concurrent_searches_during_writes(db, 8, 0);
}

/* The same with vectors read in place in the map, deletes among the
 * writes, and a reopen that answers every search as before. */
static void test_concurrent_searches_in_place(void **state)
{
    struct tu_fixture *f = *state;
    concurrent_searches_during_writes(f->db, 640, 1);
    static char before[20000], after[20000];
    conc_answers(f->db, before, sizeof before);
    qv_close(f->db);
    assert_ok(NULL, tu_open(f->dir, NULL, &f->db));
    conc_answers(f->db, after, sizeof after);
    assert_string_equal(before, after);
}

/* Every document of a 640-d collection (read in place) is its own nearest
 * hit, with the vector vecs[version[i]][i]. */
#define INPLACE_DOCS 60
#define INPLACE_DIM 640
static void inplace_check(qv_db *db, float (*vecs)[INPLACE_DOCS][INPLACE_DIM],
                          const int *version)
{
    for (int i = 0; i < INPLACE_DOCS; i++) {
        qv_hits *hits;
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        assert_ok(db, qv_search(db, "ip", vecs[version[i]][i], INPLACE_DIM,
                                &(qv_search_options){.k = 1}, &hits));
        assert_int_equal(hits->count, 1);
        assert_string_equal(hits->hits[0].id, id);
        assert_true(hits->hits[0].distance == 0.0f);
        qv_free(hits);
    }
}

/*
 * QV_OPEN_VECTORS_IN_MEMORY: the graph holds its own copies of the
 * vectors (its memory counts them), and answers as the in-place one does.
 */
static void test_vectors_in_memory(void **state)
{
    struct tu_fixture *f = *state;
    if (tu_remote())
        skip();   /* the server's choice: quiverd --vectors-in-memory */
    static float vecs[1][INPLACE_DOCS][INPLACE_DIM];
    int version[INPLACE_DOCS] = {0};
    uint64_t rng = 9;
    for (int i = 0; i < INPLACE_DOCS; i++)
        tu_rand_vector(&rng, vecs[0][i], INPLACE_DIM);
    create(f->db, "ip", INPLACE_DIM, QV_METRIC_L2);
    char ids[INPLACE_DOCS][16];
    qv_doc docs[INPLACE_DOCS];
    for (int i = 0; i < INPLACE_DOCS; i++) {
        snprintf(ids[i], sizeof ids[i], "%d", i);
        docs[i] = (qv_doc){ids[i], vecs[0][i], INPLACE_DIM, NULL};
    }
    assert_ok(f->db, qv_upsert(f->db, "ip", docs, INPLACE_DOCS));
    uint64_t vector_bytes = (uint64_t)INPLACE_DOCS * INPLACE_DIM * 4;
    uint64_t memory[2];
    for (int copies = 0; copies < 2; copies++) {
        qv_close(f->db);
        qv_open_options oo = {.flags = copies ? QV_OPEN_VECTORS_IN_MEMORY
                                              : 0};
        assert_ok(NULL, qv_open(f->dir, &oo, &f->db));
        inplace_check(f->db, vecs, version);
        qv_collection_info info;
        assert_ok(f->db, qv_describe_collection(f->db, "ip", &info));
        memory[copies] = info.memory_bytes;
    }
    assert_true(memory[1] >= memory[0] + vector_bytes);
}

/*
 * Vectors read in place: writes that fail at every allocation (the graph
 * goes stale and reloads, its copies with it) and a compaction (every
 * page moves: the graph reloads) leave every search right.
 */
static void test_in_place_failed_writes_and_compaction(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    static float vecs[2][INPLACE_DOCS][INPLACE_DIM];
    int version[INPLACE_DOCS] = {0};
    uint64_t rng = 5;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < INPLACE_DOCS; i++)
            tu_rand_vector(&rng, vecs[v][i], INPLACE_DIM);
    create(db, "ip", INPLACE_DIM, QV_METRIC_L2);
    char ids[INPLACE_DOCS][16];
    qv_doc docs[INPLACE_DOCS];
    for (int i = 0; i < INPLACE_DOCS; i++) {
        snprintf(ids[i], sizeof ids[i], "%d", i);
        docs[i] = (qv_doc){ids[i], vecs[0][i], INPLACE_DIM, NULL};
    }
    assert_ok(db, qv_upsert(db, "ip", docs, INPLACE_DOCS));
    inplace_check(db, vecs, version);
    /* replace documents 0..9 with an allocation failing at each point */
    for (unsigned long n = 1; n < 60; n++) {
        int v = (int)(n % 2);
        for (int i = 0; i < 10; i++)
            docs[i].vector = vecs[v][i];
        qv_alloc_fail_at(n, 1);
        qv_status st = qv_upsert(db, "ip", docs, 10);
        qv_alloc_fail_at(0, 0);
        assert_true(st == QV_OK || st == QV_ERR_NOMEM);
        if (st == QV_OK)
            for (int i = 0; i < 10; i++)
                version[i] = v;
        inplace_check(db, vecs, version);
    }
    assert_ok(db, qv_delete(db, "ip", "3"));
    docs[3].vector = vecs[version[3]][3];
    assert_ok(db, qv_upsert(db, "ip", &docs[3], 1));
    if (!tu_remote()) {
        assert_ok(db, qv_compact(db));
        inplace_check(db, vecs, version);
    }
    char *report = NULL;
    assert_ok(db, qv_check(db, &report));
    qv_free(report);
}

/* Paging through a collection in id order, from one page to the next. */
static void test_scan_pages_in_id_order(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "scan", 2, QV_METRIC_L2);
    char id[16];
    for (int i = 0; i < 25; i++) {
        float v[2] = {(float)i, 0};
        snprintf(id, sizeof id, "id%02d", i);
        upsert_one(db, "scan", id, v, 2, i % 2 ? "{\"odd\":true}" : NULL);
    }
    assert_ok(db, qv_delete(db, "scan", "id07"));
    const char *after = NULL;
    char last[16] = "";
    int seen = 0, pages = 0;
    qv_page *page = NULL;
    do {
        char resume[16];
        if (after) {
            snprintf(resume, sizeof resume, "%s", after);
            after = resume;
        }
        qv_free(page);
        assert_ok(db, qv_scan(db, "scan", after, 10, &page));
        for (size_t i = 0; i < page->count; i++) {
            const qv_record *r = &page->records[i];
            assert_true(strcmp(r->id, last) > 0);
            assert_string_not_equal(r->id, "id07");
            int n = atoi(r->id + 2);
            assert_true(r->vector[0] == (float)n);
            if (n % 2)
                assert_string_equal(r->payload, "{\"odd\":true}");
            else
                assert_null(r->payload);
            snprintf(last, sizeof last, "%s", r->id);
            seen++;
        }
        after = page->next;
        pages++;
    } while (after);
    qv_free(page);
    assert_int_equal(seen, 24);
    assert_int_equal(pages, 3);
    assert_status(db, qv_scan(db, "scan", NULL, 0, &page), QV_ERR_INVALID);
    assert_status(db, qv_scan(db, "scan", "", 5, &page), QV_ERR_INVALID);
    assert_status(db, qv_scan(db, "nope", NULL, 5, &page), QV_ERR_NOT_FOUND);
    assert_ok(db, qv_scan(db, "scan", "zzz", 5, &page));
    assert_int_equal(page->count, 0);
    assert_null(page->next);
    qv_free(page);
}

static void test_search_with_payloads(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "pl", 2, QV_METRIC_L2);
    float a[2] = {0, 0}, b[2] = {1, 0};
    upsert_one(db, "pl", "a", a, 2, "{\"name\":\"first\"}");
    upsert_one(db, "pl", "b", b, 2, NULL);
    for (int exact = 0; exact < 2; exact++) {
        qv_hits *hits;
        assert_ok(db, qv_search(db, "pl", a, 2,
                                &(qv_search_options){.k = 2, .exact = exact,
                                                     .with_payload = 1},
                                &hits));
        assert_int_equal(hits->count, 2);
        assert_string_equal(hits->hits[0].payload, "{\"name\":\"first\"}");
        assert_null(hits->hits[1].payload);
        qv_free(hits);
        assert_ok(db, qv_search(db, "pl", a, 2,
                                &(qv_search_options){.k = 1, .exact = exact},
                                &hits));
        assert_null(hits->hits[0].payload);  /* not asked for */
        qv_free(hits);
    }
}

/* A backup is a database of its own with everything in it. */
static void test_backup_and_stats(void **state)
{
    struct tu_fixture *f = *state;
    create(f->db, "bk", 3, QV_METRIC_IP);
    float v[3] = {1, 2, 3};
    upsert_one(f->db, "bk", "x", v, 3, "{\"b\":1}");
    qv_collection_info info;
    assert_ok(f->db, qv_describe_collection(f->db, "bk", &info));
    assert_true(info.disk_bytes >= 3 * sizeof(float));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/backup", f->dir);
    /* a server takes the name of a new entry of its --backup-dir (here
     * the database's own directory), never a path */
    const char *target = tu_remote() ? "backup" : dir;
    assert_ok(f->db, qv_backup(f->db, target));
    assert_status(f->db, qv_backup(f->db, target), QV_ERR_EXISTS);
    if (tu_remote())
        assert_status(f->db, qv_backup(f->db, dir), QV_ERR_INVALID);
    qv_db *copy;
    assert_ok(NULL, qv_open(dir, NULL, &copy));
    qv_record *r;
    assert_ok(copy, qv_get(copy, "bk", "x", &r));
    assert_string_equal(r->payload, "{\"b\":1}");
    qv_free(r);
    qv_hits *hits;
    assert_ok(copy, qv_search(copy, "bk", v, 3, &(qv_search_options){.k = 1},
                              &hits));
    assert_string_equal(hits->hits[0].id, "x");
    qv_free(hits);
    qv_close(copy);
    char *json = NULL;
    assert_ok(f->db, qv_stats(f->db, &json));
    assert_non_null(strstr(json, "\"collections\":1"));
    assert_non_null(strstr(json, "\"documents\":1"));
    qv_free(json);
    char path[4300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
    qv_status st = qv_set_threads(f->db, 2);
    assert_true(tu_remote() ? st == QV_ERR_UNSUPPORTED : st == QV_OK);
    assert_status(f->db, qv_set_threads(f->db, 5000), QV_ERR_INVALID);
}

/*
 * Filtered search against a brute force computed here: at 50%, 10%, 1%
 * and 0.1% of the documents matching, every hit matches, k come back
 * whenever k match, and the hits are (nearly) the true nearest matches.
 */
static void test_filtered_search_is_never_short(void **state)
{
    enum { N = 2000, D = 8 };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "f", D, QV_METRIC_L2);
    static float v[N][D];
    static char ids[N][16], payloads[N][96];
    static qv_doc docs[N];
    uint64_t rng = 99;
    for (int i = 0; i < N; i++) {
        tu_rand_vector(&rng, v[i], D);
        snprintf(ids[i], sizeof ids[i], "%d", i);
        snprintf(payloads[i], sizeof payloads[i],
                 "{\"label\":%d,\"b100\":%d,\"b1000\":%d}", i % 10,
                 i % 100, i % 1000);
        docs[i] = (qv_doc){ids[i], v[i], D, payloads[i]};
    }
    assert_ok(db, qv_upsert(db, "f", docs, N));
    struct { const char *filter; int mod, lo, hi; } cases[] = {
        {"{\"label\":{\"$in\":[0,1,2,3,4]}}", 10, 0, 4},
        {"{\"label\":3}", 10, 3, 3},
        {"{\"b100\":7}", 100, 7, 7},
        {"{\"b1000\":5}", 1000, 5, 5},
        {"{\"b1000\":{\"$gte\":995}}", 1000, 995, 999},
    };
    unsigned long found = 0, total = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint64_t count;
        int expect = 0;
        for (int i = 0; i < N; i++) {
            int m = i % cases[c].mod;
            expect += m >= cases[c].lo && m <= cases[c].hi;
        }
        assert_ok(db, qv_count(db, "f", cases[c].filter, &count));
        assert_int_equal(count, expect);
        for (int qi = 0; qi < 10; qi++) {
            float q[D];
            tu_rand_vector(&rng, q, D);
            qv_hits *hits;
            qv_search_options opt = {.k = 10, .filter = cases[c].filter};
            assert_ok(db, qv_search(db, "f", q, D, &opt, &hits));
            size_t want = expect < 10 ? (size_t)expect : 10;
            assert_int_equal(hits->count, want);
            /* brute force over the matching documents */
            double best[10];
            size_t nb = 0;
            for (int i = 0; i < N; i++) {
                int m = i % cases[c].mod;
                if (m < cases[c].lo || m > cases[c].hi)
                    continue;
                double d = 0;
                for (int j = 0; j < D; j++)
                    d += ((double)q[j] - v[i][j]) * ((double)q[j] - v[i][j]);
                size_t at = nb < 10 ? nb++ : 10;
                if (at == 10 && d >= best[9])
                    continue;
                if (at == 10)
                    at = 9;
                while (at > 0 && best[at - 1] > d) {
                    best[at] = best[at - 1];
                    at--;
                }
                best[at] = d;
            }
            for (size_t h = 0; h < hits->count; h++) {
                int i = atoi(hits->hits[h].id);
                int m = i % cases[c].mod;
                assert_true(m >= cases[c].lo && m <= cases[c].hi);
                found += hits->hits[h].distance <= best[want - 1] + 1e-4;
            }
            total += want;
            qv_free(hits);
        }
    }
    if ((double)found / (double)total < 0.95)
        fail_msg("filtered recall %.3f below 0.95", (double)found / total);
    qv_count(db, "f", NULL, &(uint64_t){0});
    uint64_t all;
    assert_ok(db, qv_count(db, "f", NULL, &all));
    assert_int_equal(all, N);
    qv_hits *hits = NULL;
    float q[D] = {0};
    assert_status(db, qv_search(db, "f", q, D,
                                &(qv_search_options){.k = 3,
                                                     .filter = "{\"a\":{\"$x\":1}}"},
                                &hits), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(db), "unknown operator '$x' at 'a'"));
    assert_status(db, qv_count(db, "f", "[]", &all), QV_ERR_INVALID);
    /* a batch is never short either */
    qv_batch_hits *b;
    assert_ok(db, qv_search_batch(db, "f", v[0], 5, D,
                                  &(qv_search_options){.k = 5, .threads = 2,
                                                       .filter = "{\"b100\":3}"},
                                  &b));
    for (size_t i = 0; i < b->count; i++) {
        assert_int_equal(b->results[i].count, 5);
        for (size_t h = 0; h < 5; h++)
            assert_int_equal(atoi(b->results[i].hits[h].id) % 100, 3);
    }
    qv_free(b);
}

/* A payload with every kind of value an index may or may not hold. */
static void random_payload(uint64_t *rng, char *out, size_t len)
{
    static const char *const labels[] = {"3", "3.0", "3.5", "\"3\"", "7",
                                         "-2", "1e3", "null"};
    static const char *const names[] = {"\"red\"", "\"blue\"", "\"Zoë\"",
                                        "\"\"", "5", "\"red shoes\""};
    unsigned r = (unsigned)tu_rand(rng);
    char name[600];
    if (r % 17 == 0) {  /* longer than an index keyword */
        memset(name, 'z', 520);
        name[0] = '"';
        name[519] = '"';
        name[520] = '\0';
    } else {
        snprintf(name, sizeof name, "%s", names[r % 6]);
    }
    snprintf(out, len, "{\"label\":%s,\"price\":%d.%d,\"name\":%s%s}",
             labels[(r >> 4) % 8], (int)((r >> 8) % 100), (int)((r >> 16) % 10),
             name, (r >> 20) % 3 ? ",\"a\":{\"b\":4}" : "");
}

static void same_everywhere(qv_db *db, const char *filter)
{
    uint64_t a, b;
    assert_ok(db, qv_count(db, "indexed", filter, &a));
    assert_ok(db, qv_count(db, "plain", filter, &b));
    if (a != b)
        fail_msg("%s: %llu with indexes, %llu without", filter,
                 (unsigned long long)a, (unsigned long long)b);
    float q[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    qv_hits *ha, *hb;
    qv_search_options opt = {.k = 20, .exact = 1, .filter = filter};
    assert_ok(db, qv_search(db, "indexed", q, 4, &opt, &ha));
    assert_ok(db, qv_search(db, "plain", q, 4, &opt, &hb));
    assert_int_equal(ha->count, hb->count);
    for (size_t i = 0; i < ha->count; i++)
        assert_string_equal(ha->hits[i].id, hb->hits[i].id);
    qv_free(ha);
    qv_free(hb);
}

/*
 * Payload indexes never change what a filter finds: an indexed collection
 * and an identical unindexed one agree on every filter through back-fill,
 * inserts, field changes and deletes.
 */
static void test_indexes_never_change_results(void **state)
{
    enum { N = 500 };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "indexed", 4, QV_METRIC_L2);
    create(db, "plain", 4, QV_METRIC_L2);
    uint64_t rng = 31;
    static char ids[N][16], payloads[N][640];
    static float v[N][4];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            if (round > 0 && tu_rand(&rng) % 3)
                continue;  /* later rounds change a third */
            tu_rand_vector(&rng, v[i], 4);
            snprintf(ids[i], sizeof ids[i], "d%d", i);
            random_payload(&rng, payloads[i], sizeof payloads[i]);
            qv_doc doc = {ids[i], v[i], 4, payloads[i]};
            assert_ok(db, qv_upsert(db, "indexed", &doc, 1));
            assert_ok(db, qv_upsert(db, "plain", &doc, 1));
        }
        if (round == 0) {  /* back-filled from the documents there */
            assert_ok(db, qv_create_index(db, "indexed", "label",
                                          QV_INDEX_INT));
            assert_ok(db, qv_create_index(db, "indexed", "price",
                                          QV_INDEX_FLOAT));
            assert_ok(db, qv_create_index(db, "indexed", "name",
                                          QV_INDEX_KEYWORD));
            assert_ok(db, qv_create_index(db, "indexed", "a.b",
                                          QV_INDEX_INT));
        }
        for (int i = round; i < N; i += 37) {
            qv_delete(db, "indexed", ids[i]);
            qv_delete(db, "plain", ids[i]);
        }
    }
    static const char *const filters[] = {
        "{\"label\":3}", "{\"label\":3.5}", "{\"label\":\"3\"}",
        "{\"label\":null}", "{\"label\":{\"$in\":[3,7,\"3\"]}}",
        "{\"label\":{\"$gte\":2.5,\"$lt\":7}}", "{\"label\":{\"$gt\":-3}}",
        "{\"label\":{\"$lte\":1000}}", "{\"price\":{\"$gte\":10.5,\"$lt\":50}}",
        "{\"price\":{\"$gt\":\"a\"}}", "{\"name\":\"red\"}",
        "{\"name\":\"\"}", "{\"name\":5}", "{\"name\":{\"$gte\":\"r\"}}",
        "{\"name\":{\"$lt\":\"red shoes\"}}", "{\"a.b\":4}",
        "{\"a.b\":{\"$exists\":false}}", "{\"$or\":[{\"label\":7},{\"name\":\"blue\"}]}",
        "{\"$or\":[{\"label\":7},{\"price\":{\"$ne\":3}}]}",
        "{\"$and\":[{\"label\":{\"$in\":[3,7]}},{\"price\":{\"$lt\":60}}]}",
        "{\"$not\":{\"label\":3}}", "{\"name\":{\"$nin\":[\"red\"]},\"label\":7}",
    };
    for (size_t f = 0; f < sizeof filters / sizeof *filters; f++)
        same_everywhere(db, filters[f]);
    assert_status(db, qv_create_index(db, "indexed", "label", QV_INDEX_INT),
                  QV_ERR_EXISTS);
    assert_status(db, qv_create_index(db, "indexed", "", QV_INDEX_INT),
                  QV_ERR_INVALID);
    assert_status(db, qv_create_index(db, "indexed", "$x", QV_INDEX_INT),
                  QV_ERR_INVALID);
    assert_status(db, qv_create_index(db, "indexed", "x", (qv_index_type)9),
                  QV_ERR_INVALID);
    assert_status(db, qv_create_index(db, "nope", "x", QV_INDEX_INT),
                  QV_ERR_NOT_FOUND);
    /* dropped, an index leaves the results alone too; dropping twice or
     * an unindexed field is NOT_FOUND (teardown's check sees no entry
     * left behind) */
    assert_ok(db, qv_drop_index(db, "indexed", "label"));
    assert_ok(db, qv_drop_index(db, "indexed", "name"));
    for (size_t f = 0; f < sizeof filters / sizeof *filters; f++)
        same_everywhere(db, filters[f]);
    assert_status(db, qv_drop_index(db, "indexed", "label"),
                  QV_ERR_NOT_FOUND);
    assert_status(db, qv_drop_index(db, "plain", "label"), QV_ERR_NOT_FOUND);
    assert_status(db, qv_drop_index(db, "indexed", "$x"), QV_ERR_INVALID);
    assert_ok(db, qv_create_index(db, "indexed", "label", QV_INDEX_INT));
    for (size_t f = 0; f < 4; f++)
        same_everywhere(db, filters[f]);
}

/*
 * Indexes agree with filters at the edges of what they hold: integers
 * beyond 2^53, which filters compare as rounded doubles, and bounds
 * beyond an int index's int64 keys (fuzz_filter found ranges up to such
 * a bound missing every indexed document).
 */
static void test_indexes_agree_on_edges(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "indexed", 4, QV_METRIC_L2);
    create(db, "plain", 4, QV_METRIC_L2);
    assert_ok(db, qv_create_index(db, "indexed", "label", QV_INDEX_INT));
    static const char *const labels[] = {
        "9223372036854775807", "-9223372036854775808", "9007199254740993",
        "9007199254740992", "9.21e18", "9210000000000000000",
        "4611686018427387904", "-4611686018427387905", "5", "-3", "2.5",
    };
    for (size_t i = 0; i < sizeof labels / sizeof *labels; i++) {
        char id[16], payload[64];
        float v[4] = {(float)i, 0, 0, 0};
        snprintf(id, sizeof id, "e%zu", i);
        snprintf(payload, sizeof payload, "{\"label\":%s}", labels[i]);
        qv_doc doc = {id, v, 4, payload};
        assert_ok(db, qv_upsert(db, "indexed", &doc, 1));
        assert_ok(db, qv_upsert(db, "plain", &doc, 1));
    }
    static const char *const filters[] = {
        "{\"label\":{\"$gte\":-0.5,\"$lt\":89.2e18}}",
        "{\"label\":{\"$lte\":9.3e18}}", "{\"label\":{\"$gt\":9.3e18}}",
        "{\"label\":{\"$gt\":-1e19}}", "{\"label\":{\"$lt\":-9.3e18}}",
        "{\"label\":{\"$gte\":9223372036854775807}}",
        "{\"label\":{\"$gt\":9007199254740992}}",
        "{\"label\":{\"$lt\":-4611686018427387904}}",
        "{\"label\":{\"$lte\":9007199254740991.5}}",
        "{\"label\":9.21e18}", "{\"label\":9210000000000000001}",
        "{\"label\":9223372036854775806}", "{\"label\":9007199254740992}",
        "{\"label\":{\"$in\":[9007199254740993,-9.2233720368547758e18]}}",
        "{\"label\":-4611686018427387904}", "{\"label\":5.0}",
    };
    for (size_t f = 0; f < sizeof filters / sizeof *filters; f++)
        same_everywhere(db, filters[f]);
}

/* The index after the last a collection may have is LIMIT (not FULL: the
 * disk has room) and leaves the collection's indexes as they were. */
/* A staged position is stored by the next write transaction with its
 * changes, by none when that write fails, and kept across a reopen; bad
 * names are refused; remote handles say the positions are the server's. */
static void test_log_positions(void **state)
{
    struct tu_fixture *f = *state;
    uint64_t pos = 1;
    if (tu_remote()) {
        assert_status(f->db, qv_position_get(f->db, "s/0", &pos),
                      QV_ERR_UNSUPPORTED);
        assert_status(f->db, qv_position_with_next_write(f->db, "s/0", 1),
                      QV_ERR_UNSUPPORTED);
        return;
    }
    assert_ok(f->db, qv_position_get(f->db, "s/0", &pos));
    assert_int_equal(pos, 0);
    assert_status(f->db, qv_position_put(f->db, "", 1), QV_ERR_INVALID);
    assert_status(f->db, qv_position_put(f->db, "a b", 1), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(f->db), "byte 1"));
    create(f->db, "logged", 2, QV_METRIC_L2);
    float v[2] = {1, 2};
    /* a write that succeeds stores it */
    assert_ok(f->db, qv_position_with_next_write(f->db, "s/0", 7));
    upsert_one(f->db, "logged", "a", v, 2, NULL);
    assert_ok(f->db, qv_position_get(f->db, "s/0", &pos));
    assert_int_equal(pos, 7);
    /* one that fails in its transaction stores neither, and spends it */
    assert_ok(f->db, qv_position_with_next_write(f->db, "s/0", 8));
    assert_status(f->db, qv_delete(f->db, "logged", "missing"),
                  QV_ERR_NOT_FOUND);
    assert_ok(f->db, qv_position_get(f->db, "s/0", &pos));
    assert_int_equal(pos, 7);
    upsert_one(f->db, "logged", "b", v, 2, NULL);
    assert_ok(f->db, qv_position_get(f->db, "s/0", &pos));
    assert_int_equal(pos, 7);
    /* put stores at once and clears a stage */
    assert_ok(f->db, qv_position_with_next_write(f->db, "s/0", 9));
    assert_ok(f->db, qv_position_put(f->db, "s/1", 3));
    upsert_one(f->db, "logged", "c", v, 2, NULL);
    assert_ok(f->db, qv_position_get(f->db, "s/0", &pos));
    assert_int_equal(pos, 7);
    /* closing drops a stage: the next handle does not store it with its
     * first write (the stage is keyed by the handle's address, which a
     * new handle may reuse; ASan's allocator rarely does, so this fails
     * on a surviving stage only when it does) */
    assert_ok(f->db, qv_position_with_next_write(f->db, "s/1", 99));
    qv_close(f->db);
    assert_ok(NULL, tu_open(f->dir, NULL, &f->db));
    upsert_one(f->db, "logged", "d", v, 2, NULL);
    assert_ok(f->db, qv_position_get(f->db, "s/1", &pos));
    assert_int_equal(pos, 3);
    qv_open_options ro = {.flags = QV_OPEN_READONLY};
    qv_db *reader;
    assert_ok(NULL, qv_open(f->dir, &ro, &reader));
    assert_status(reader, qv_position_put(reader, "s/1", 4), QV_ERR_READONLY);
    qv_close(reader);
}

/* Only a cluster node has a cluster status. */
static void test_cluster_status_elsewhere(void **state)
{
    struct tu_fixture *f = *state;
    char *json = (char *)"untouched";
    assert_status(f->db, qv_cluster_status(f->db, &json), QV_ERR_UNSUPPORTED);
    assert_string_equal(json, "untouched");
    assert_non_null(strstr(qv_errmsg(f->db), tu_remote()
                               ? "this server is not a cluster node"
                               : "an embedded handle is not a cluster node"));
    assert_status(f->db, qv_cluster_drain(f->db, "n1", 0),
                  QV_ERR_UNSUPPORTED);
    assert_status(f->db, qv_cluster_drain(f->db, NULL, 0), QV_ERR_INVALID);
    uint64_t token = 7;
    assert_ok(f->db, qv_write_token(f->db, &token));
    assert_int_equal(token, 0);
    assert_ok(f->db, qv_read_after(f->db, 0));
}

static void test_index_limit(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "many", 2, QV_METRIC_L2);
    char field[16];
    for (int i = 0; i < QV_INDEXES_MAX; i++) {
        snprintf(field, sizeof field, "f%d", i);
        assert_ok(db, qv_create_index(db, "many", field, QV_INDEX_INT));
    }
    assert_status(db, qv_create_index(db, "many", "one_more", QV_INDEX_INT),
                  QV_ERR_LIMIT);
    assert_non_null(strstr(qv_errmsg(db), "the most indexes it can (32)"));
    assert_status(db, qv_drop_index(db, "many", "one_more"),
                  QV_ERR_NOT_FOUND);
    assert_ok(db, qv_drop_index(db, "many", "f0"));
    assert_ok(db, qv_create_index(db, "many", "one_more", QV_INDEX_INT));
}

/* A reserved word that is not 0 is refused, on both transports alike,
 * and nothing is written (quiver.h, "Structs grow"). */
static void test_reserved_words_must_be_zero(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    qv_collection_config cc = {.dim = 2};
    cc.reserved[3] = 1;
    assert_status(db, qv_create_collection(db, "r", &cc), QV_ERR_INVALID);
    assert_string_equal(qv_errmsg(db), "qv_collection_config.reserved[3] is "
                        "not 0; zero-initialise the struct ({0} or a "
                        "designated initializer)");
    assert_status(db, qv_describe_collection(db, "r",
                                             &(qv_collection_info){0}),
                  QV_ERR_NOT_FOUND);
    create(db, "r", 2, QV_METRIC_L2);
    float q[2] = {1, 0};
    qv_hits *hits = NULL;
    qv_search_options so = {.k = 1};
    so.reserved[sizeof so.reserved / sizeof *so.reserved - 1] = 7;
    assert_status(db, qv_search(db, "r", q, 2, &so, &hits), QV_ERR_INVALID);
    assert_null(hits);
    qv_batch_hits *batch = NULL;
    assert_status(db, qv_search_batch(db, "r", q, 1, 2, &so, &batch),
                  QV_ERR_INVALID);
    qv_table_config tc = {.rows = 4, .dim = 2};
    tc.reserved[0] = 1;
    assert_status(db, qv_table_create(db, "t", &tc), QV_ERR_INVALID);
    qv_table_info *tables = NULL;
    size_t n = 1;
    assert_ok(db, qv_list_tables(db, &tables, &n));
    assert_int_equal(n, 0);
    qv_open_options oo = {.flags = QV_OPEN_NOSYNC};
    oo.reserved[1] = 1;
    qv_db *other = (qv_db *)&other;
    assert_status(NULL, qv_open("/tmp", &oo, &other), QV_ERR_INVALID);
    assert_null(other);
    assert_non_null(strstr(qv_errmsg(NULL), "qv_open_options.reserved[1]"));
}

/* A failed call leaves its out-parameters as they were (quiver.h,
 * Conventions), but for qv_open's and qv_check's, set to NULL first. */
static void test_failed_calls_leave_results_alone(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    qv_collection_info ci, ci_before;
    memset(&ci, 0xa5, sizeof ci);
    ci_before = ci;
    assert_status(db, qv_describe_collection(db, "none", &ci),
                  QV_ERR_NOT_FOUND);
    assert_memory_equal(&ci, &ci_before, sizeof ci);
    qv_table_info ti, ti_before;
    memset(&ti, 0xa5, sizeof ti);
    ti_before = ti;
    assert_status(db, qv_table_describe(db, "none", &ti), QV_ERR_NOT_FOUND);
    assert_memory_equal(&ti, &ti_before, sizeof ti);
    void *sentinel = &sentinel;
    qv_record *rec = sentinel;
    assert_status(db, qv_get(db, "none", "a", &rec), QV_ERR_NOT_FOUND);
    assert_ptr_equal(rec, sentinel);
    qv_index_info *ix = sentinel;
    size_t n = 77;
    assert_status(db, qv_list_indexes(db, "none", &ix, &n), QV_ERR_NOT_FOUND);
    assert_ptr_equal(ix, sentinel);
    assert_int_equal(n, 77);
    uint64_t count = 77;
    assert_status(db, qv_count(db, "none", NULL, &count), QV_ERR_NOT_FOUND);
    assert_int_equal(count, 77);
    float out[2] = {5, 5};
    uint64_t id = 0;
    assert_status(db, qv_table_lookup(db, "none", &id, 1, 2, out),
                  QV_ERR_NOT_FOUND);
    assert_true(out[0] == 5 && out[1] == 5);
}

/* qv_list_indexes: a collection's indexes in field order with their
 * types, following creates and drops; NOT_FOUND for no collection. */
static void test_list_indexes(void **state)
{
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "ix", 2, QV_METRIC_L2);
    qv_index_info *list = (qv_index_info *)&list;   /* must be replaced */
    size_t n = 99;
    assert_ok(db, qv_list_indexes(db, "ix", &list, &n));
    assert_null(list);
    assert_int_equal(n, 0);
    assert_ok(db, qv_create_index(db, "ix", "price", QV_INDEX_FLOAT));
    assert_ok(db, qv_create_index(db, "ix", "a.b", QV_INDEX_KEYWORD));
    assert_ok(db, qv_create_index(db, "ix", "n", QV_INDEX_INT));
    assert_ok(db, qv_list_indexes(db, "ix", &list, &n));
    assert_int_equal(n, 3);
    assert_string_equal(list[0].field, "a.b");
    assert_int_equal(list[0].type, QV_INDEX_KEYWORD);
    assert_string_equal(list[1].field, "n");
    assert_int_equal(list[1].type, QV_INDEX_INT);
    assert_string_equal(list[2].field, "price");
    assert_int_equal(list[2].type, QV_INDEX_FLOAT);
    qv_free(list);
    assert_ok(db, qv_drop_index(db, "ix", "n"));
    assert_ok(db, qv_list_indexes(db, "ix", &list, &n));
    assert_int_equal(n, 2);
    assert_string_equal(list[1].field, "price");
    qv_free(list);
    /* another collection's indexes are its own */
    create(db, "iy", 2, QV_METRIC_L2);
    assert_ok(db, qv_list_indexes(db, "iy", &list, &n));
    assert_int_equal(n, 0);
    assert_status(db, qv_list_indexes(db, "nope", &list, &n),
                  QV_ERR_NOT_FOUND);
    assert_string_equal(qv_errmsg(db), "collection 'nope' does not exist");
    assert_status(db, qv_list_indexes(db, "bad name", &list, &n),
                  QV_ERR_INVALID);
    assert_status(db, qv_list_indexes(db, "ix", NULL, &n), QV_ERR_INVALID);
    assert_status(db, qv_list_indexes(db, "ix", &list, NULL),
                  QV_ERR_INVALID);
}

/* scan where= pages through exactly the matches; delete where= removes
 * exactly them, in one transaction, indexes and graph kept exact. */
static void test_scan_and_delete_where(void **state)
{
    enum { N = 300 };
    qv_db *db = ((struct tu_fixture *)*state)->db;
    create(db, "sw", 4, QV_METRIC_L2);
    assert_ok(db, qv_create_index(db, "sw", "m", QV_INDEX_INT));
    static float v[N][4];
    static char ids[N][16], payloads[N][32];
    static qv_doc docs[N];
    uint64_t rng = 5;
    for (int i = 0; i < N; i++) {
        tu_rand_vector(&rng, v[i], 4);
        snprintf(ids[i], sizeof ids[i], "k%03d", i);
        snprintf(payloads[i], sizeof payloads[i], "{\"m\":%d}", i % 7);
        docs[i] = (qv_doc){ids[i], v[i], 4, payloads[i]};
    }
    assert_ok(db, qv_upsert(db, "sw", docs, N));
    const char *filter = "{\"m\":{\"$in\":[2,5]}}";
    char after[32] = "";
    int seen = 0, expect = 0;
    for (int i = 0; i < N; i++)
        expect += i % 7 == 2 || i % 7 == 5;
    for (;;) {
        qv_page *page;
        assert_ok(db, qv_scan_where(db, "sw", filter, after[0] ? after : NULL,
                                    16, &page));
        for (size_t i = 0; i < page->count; i++) {
            int n = atoi(page->records[i].id + 1);
            assert_true(n % 7 == 2 || n % 7 == 5);
            assert_true(strcmp(page->records[i].id, after) > 0);
            snprintf(after, sizeof after, "%s", page->records[i].id);
            seen++;
        }
        int more = page->next != NULL;
        qv_free(page);
        if (!more)
            break;
    }
    assert_int_equal(seen, expect);
    uint64_t deleted, left;
    assert_ok(db, qv_delete_where(db, "sw", filter, &deleted));
    assert_int_equal(deleted, expect);
    assert_ok(db, qv_count(db, "sw", filter, &left));
    assert_int_equal(left, 0);
    assert_ok(db, qv_count(db, "sw", NULL, &left));
    assert_int_equal(left, N - expect);
    assert_ok(db, qv_delete_where(db, "sw", filter, &deleted));
    assert_int_equal(deleted, 0);
    qv_hits *hits;
    assert_ok(db, qv_search(db, "sw", v[2], 4, &(qv_search_options){.k = 1},
                            &hits));
    assert_string_not_equal(hits->hits[0].id, "k002");  /* it was deleted */
    qv_free(hits);
    assert_status(db, qv_delete_where(db, "sw", "{\"$x\":1}", &deleted),
                  QV_ERR_INVALID);
    /* explain: the plan and its figures; absent unless asked for */
    qv_search_options ex = {.k = 3, .filter = "{\"m\":0}", .explain = 1};
    assert_ok(db, qv_search(db, "sw", v[0], 4, &ex, &hits));
    assert_non_null(hits->explain);
    assert_non_null(strstr(hits->explain, "\"plan\":\"exact scan of the "
                                          "matches\""));
    char expect_matches[64];
    uint64_t zeros;
    assert_ok(db, qv_count(db, "sw", "{\"m\":0}", &zeros));
    snprintf(expect_matches, sizeof expect_matches, "\"matches\":%llu,",
             (unsigned long long)zeros);
    assert_non_null(strstr(hits->explain, expect_matches));
    qv_free(hits);
    /* most match, and beyond 64 x k: a filtered walk */
    ex.filter = "{\"m\":{\"$nin\":[0]}}";
    ex.k = 1;
    assert_ok(db, qv_search(db, "sw", v[0], 4, &ex, &hits));
    assert_non_null(strstr(hits->explain, "\"plan\":\"filtered graph walk\""));
    qv_free(hits);
    ex.explain = 0;
    assert_ok(db, qv_search(db, "sw", v[0], 4, &ex, &hits));
    assert_null(hits->explain);
    qv_free(hits);
    assert_status(db, qv_scan_where(db, "sw", "[", NULL, 5, &(qv_page *){0}),
                  QV_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, tu_teardown)
        T(test_collections_lifecycle),
        T(test_duplicate_and_unknown_collections),
        T(test_invalid_collection_config),
        T(test_collection_config_check),
        T(test_shards_need_a_cluster_node),
        T(test_table_shards_need_a_cluster_node),
        T(test_upsert_get_replace_delete),
        T(test_batch_upsert_with_repeated_id),
        T(test_unicode_and_longest_ids),
        T(test_bad_documents_change_nothing),
        T(test_cosine_refuses_zero_vectors),
        T(test_cosine_takes_any_magnitude),
        T(test_l2_magnitude_limit),
        T(test_ip_magnitude_limit),
        T(test_bad_search_arguments),
        T(test_exact_search_l2),
        T(test_exact_search_ip),
        T(test_exact_search_cosine),
        T(test_ties_are_broken_by_id),
        T(test_partial_search_of_one_database),
        T(test_empty_collection_search),
        T(test_space_of_deleted_documents_is_reused),
        T(test_reopen_finds_everything),
        T(test_readonly_handle_refuses_writes),
        T(test_open_errors),
        T(test_status_names_and_messages),
        cmocka_unit_test(test_map_growth_through_api),
        T(test_allocation_failures_are_clean),
        T(test_concurrent_searches_during_writes),
        T(test_concurrent_searches_in_place),
        T(test_in_place_failed_writes_and_compaction),
        T(test_scan_pages_in_id_order),
        T(test_search_with_payloads),
        T(test_backup_and_stats),
        T(test_text_is_utf8_and_messages_printable),
        T(test_filtered_search_is_never_short),
        T(test_indexes_never_change_results),
        T(test_list_indexes),
        T(test_reserved_words_must_be_zero),
        T(test_failed_calls_leave_results_alone),
        T(test_indexes_agree_on_edges),
        T(test_index_limit),
        T(test_vectors_in_memory),
        T(test_log_positions),
        T(test_cluster_status_elsewhere),
        T(test_scan_and_delete_where),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
