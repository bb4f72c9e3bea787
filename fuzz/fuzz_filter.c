/*
 * fuzz_filter.c - libFuzzer target: the filter language (db/filter.c,
 * docs/FILTERS.md) and the plans built on it (payload index lookups,
 * filtered graph walks, exact scans of the matches).
 *
 * The input is one filter's text. It runs against two collections
 * holding the same 300 documents, "plain" without payload indexes and
 * "indexed" with an index of every type (some on fields whose values the
 * index cannot hold), through count, scan, search and batch search. Past
 * not crashing, the answers must agree: a refused filter is refused by
 * every call with QV_ERR_INVALID; an accepted one matches the same
 * documents in both collections (indexes never change results), count
 * equals what scan finds, and a search returns min(k, matches) hits, all
 * of them matches, whether the plan scans or walks the graph (k = 2 walks
 * when more than 128 documents match). Run with -dict=fuzz/filter.dict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "db/quiver.h"

#define DOCS 300
#define DIM 2
#define ALL_K 1000   /* more than DOCS: a search for every match */

static qv_db *db;
static const char *const colls[] = {"plain", "indexed"};

/* A payload with every kind of value the language compares: ints,
 * fractions, numbers an int index cannot hold, strings (one longer than a
 * keyword index keeps), booleans, null, nested objects, arrays, and
 * documents without the field or without any payload. */
static void payload_of(int i, char *buf, size_t len)
{
    static const char *const words[] = {"red", "blue", "", "Red", "zo\u00eb",
                                        "7"};
    /* beyond 2^53 filters compare integers as rounded doubles; beyond
     * 2^63 an int index holds no key */
    static const char *const edges[] = {
        "9223372036854775807", "-9223372036854775808", "9007199254740993",
        "9.21e18", "1e19", "\"7\"", "-0.0", "4611686018427387904",
    };
    char n[48], x[48], s[512];
    if (i % 11 == 0)
        snprintf(n, sizeof n, "%d.5", i % 9 - 4);
    else if (i % 13 == 0)
        snprintf(n, sizeof n, "%s", edges[i / 13 % 8]);
    else
        snprintf(n, sizeof n, "%d", i % 9 - 4);
    snprintf(x, sizeof x, i % 17 == 0 ? "-0.0" : "%g", (i % 23) * 0.25 - 2);
    if (i % 29 == 0) {
        memset(s, 'k', 420);
        s[0] = '"';
        s[419] = '"';
        s[420] = '\0';
    } else {
        snprintf(s, sizeof s, "\"%s\"", words[i % 6]);
    }
    if (i % 31 == 0)
        buf[0] = '\0';  /* no payload */
    else if (i % 37 == 0)
        snprintf(buf, len, "{}");
    else
        snprintf(buf, len, "{\"n\":%s,\"x\":%s,\"s\":%s,\"a\":%s,\"t\":%s,"
                 "\"l\":[%d,\"%d\"]}", n, x, s,
                 i % 3 == 0 ? "\"flat\"" : i % 3 == 1 ? "{\"b\":1}"
                                                      : "{\"b\":{\"c\":2}}",
                 i % 4 == 0 ? "true" : i % 4 == 1 ? "false" : "null", i % 5,
                 i % 5);
}

static void open_db(void)
{
    qv_open_options o = {.flags = QV_OPEN_NOSYNC, .threads = 1};
    if (qv_open(fuzz_scratch_dir(), &o, &db) != QV_OK)
        abort();
    static char ids[DOCS][8], payloads[DOCS][600];
    static float v[DOCS][DIM];
    qv_doc docs[DOCS];
    for (int i = 0; i < DOCS; i++) {
        snprintf(ids[i], sizeof ids[i], "%03d", i);
        payload_of(i, payloads[i], sizeof payloads[i]);
        v[i][0] = (float)(i % 17);
        v[i][1] = (float)(i / 17);
        docs[i] = (qv_doc){ids[i], v[i], DIM,
                           payloads[i][0] ? payloads[i] : NULL};
    }
    for (int c = 0; c < 2; c++) {
        qv_collection_config cfg = {.dim = DIM, .M = 4,
                                    .ef_construction = 32};
        if (qv_create_collection(db, colls[c], &cfg) != QV_OK ||
            qv_upsert(db, colls[c], docs, DOCS) != QV_OK)
            abort();
    }
    static const struct { const char *field; qv_index_type type; } ix[] = {
        {"n", QV_INDEX_INT}, {"x", QV_INDEX_FLOAT}, {"s", QV_INDEX_KEYWORD},
        {"a.b", QV_INDEX_INT}, {"t", QV_INDEX_KEYWORD}, {"l", QV_INDEX_FLOAT},
        {"a.b.c", QV_INDEX_FLOAT},
    };
    for (size_t i = 0; i < sizeof ix / sizeof *ix; i++) {
        if (qv_create_index(db, "indexed", ix[i].field, ix[i].type) != QV_OK)
            abort();
    }
}

static void fail(const char *filter, const char *what)
{
    fprintf(stderr, "filter %s: %s\n", filter, what);
    abort();
}

/* The ids of every match, by scan (one page holds them all). */
static qv_status scan_matches(const char *coll, const char *filter,
                              char matched[DOCS])
{
    qv_page *page = NULL;
    qv_status st = qv_scan_where(db, coll, filter, NULL, 10000, &page);
    memset(matched, 0, DOCS);
    for (size_t i = 0; st == QV_OK && i < page->count; i++)
        matched[atoi(page->records[i].id)] = 1;
    qv_free(page);
    return st;
}

/* A search for k: min(k, matches) hits, each a match. */
static void check_search(const char *coll, const char *filter, uint32_t k,
                         const char matched[DOCS], uint64_t count)
{
    float q[DIM] = {3.5f, 8.25f};
    qv_search_options o = {.k = k, .ef = 16, .filter = filter,
                           .explain = 1};
    qv_hits *hits = NULL;
    if (qv_search(db, coll, q, DIM, &o, &hits) != QV_OK)
        fail(filter, "a search refused a filter count accepted");
    if (hits->count != (count < k ? count : k))
        fail(filter, "a search came back short or long");
    for (size_t i = 0; i < hits->count; i++) {
        if (!matched[atoi(hits->hits[i].id)])
            fail(filter, "a search hit does not match");
    }
    qv_free(hits);
}

static void check_batch(const char *coll, const char *filter, uint64_t count)
{
    float q[2 * DIM] = {0, 0, 16, 17};
    qv_search_options o = {.k = 3, .filter = filter, .threads = 1};
    qv_batch_hits *b = NULL;
    if (qv_search_batch(db, coll, q, 2, DIM, &o, &b) != QV_OK)
        fail(filter, "a batch search refused a filter count accepted");
    for (size_t i = 0; i < b->count; i++) {
        if (b->results[i].count != (count < 3 ? count : 3))
            fail(filter, "a batch search came back short or long");
    }
    qv_free(b);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!db)
        open_db();
    char *filter = malloc(size + 1);
    memcpy(filter, data, size);
    filter[size] = '\0';
    char matched[2][DOCS];
    uint64_t count[2];
    qv_status st[2];
    for (int c = 0; c < 2; c++) {
        st[c] = qv_count(db, colls[c], filter, &count[c]);
        qv_status scanned = scan_matches(colls[c], filter, matched[c]);
        if (st[c] != scanned || (st[c] != QV_OK && st[c] != QV_ERR_INVALID))
            fail(filter, "count and scan answer differently");
    }
    if (st[0] != st[1] || (st[0] == QV_OK && (count[0] != count[1] ||
                                              memcmp(matched[0], matched[1],
                                                     DOCS))))
        fail(filter, "the indexed collection answers differently");
    if (st[0] == QV_OK) {
        uint64_t n = 0;
        for (int i = 0; i < DOCS; i++)
            n += (uint64_t)matched[0][i];
        if (n != count[0])
            fail(filter, "count differs from the documents scan finds");
        for (int c = 0; c < 2; c++) {
            check_search(colls[c], filter, 2, matched[c], count[c]);
            check_search(colls[c], filter, ALL_K, matched[c], count[c]);
            check_batch(colls[c], filter, count[c]);
        }
    }
    free(filter);
    return 0;
}
