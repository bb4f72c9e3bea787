/*
 * Fault injection over one workload that touches every module: out of
 * memory at the N-th allocation, and a data file whose N-th write or sync
 * fails with EIO, each once and from then on; and a disk that fills up.
 *
 * For each fault: no crash, no leak (LeakSanitizer at exit), every call
 * answers OK or the fault's own status (NOMEM, IO) with a message, reads
 * agree with the writes acknowledged so far (filtered searches, counts and
 * scans are compared with a model of them), the handle writes again once
 * the fault is lifted (or, after LMDB gave up on the environment, says
 * that it must be reopened), and afterwards the database opens, passes
 * qv_check and holds exactly the acknowledged writes: every document is
 * compared with the model, vector and payload, the deleted ones must be
 * gone, the payload indexes and collections must be there or not, every
 * table row must equal a replay of the acknowledged updates.
 *
 * Allocations counted and failed: the library's wrappers (common/alloc.c)
 * and jansson's, which qv_open routes through them (common/json.c; inside
 * a parse a failure is recorded rather than handed to jansson, whose
 * lexer does not survive one, and the parse answers NOMEM). What the
 * wrappers do not see: LMDB's, roaring's, OpenSSL's and libc's own
 * allocations. Writes failed: pwrite, writev, fdatasync and fsync of the
 * database's data.mdb, interposed in this program (LMDB calls them
 * through the dynamic linker; the real ones come from dlsym RTLD_NEXT).
 *
 * Every N from 1 to one past the last write or sync is tried; for the
 * allocations every N up to the filter phase, then every STRIDE-th (see
 * run_nomem). QUIVER_FAULT_AT=N tries fault N alone, and
 * QUIVER_FAULT_VERBOSE=1 prints every failed call.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "tests/test_util.h"

#define DIM 16
#define N 120
/* The documents of "c" with a payload: a sixth of them (every payload
 * read by a filter costs about a dozen allocations in jansson, and the
 * filters read them many times). */
#define TAGGED(i) ((i) % 6 == 0)
#define NCOLL 3                    /* "c", "f" (f16), "s" (sq8) */

static const char *const coll_names[NCOLL] = {"c", "f", "s"};
static float vecs[N][DIM], moved[3][DIM], after_vec[DIM];
static char ids[N][16], payloads[N][128];
static const char moved_payload[] = "{\"moved\":true}";
static const uint64_t tids[4] = {1, 2, 3, 1u << 20};
#define T_IDS 4    /* table "t" updates and looks up tids[0..4) */
#define TT_IDS 3   /* table "tt" tids[0..3) */
#define MAX_UPDATES 2

/* ---- what was acknowledged ---- */

struct model_doc {
    int exists;
    const float *vec;
    const char *payload;
};

struct model {
    int coll[NCOLL];                    /* created */
    struct model_doc docs[NCOLL][N + 1];   /* [N]: "after", in "c" */
    int index_n, index_tag;
    int table_t, table_tt;
    unsigned t_updates, tt_updates;   /* bit u: update u acknowledged */
};

/* Rows of the tables after each subset of the updates (bit u: update u),
 * from a fault-free replay. */
static float t_rows[1 << MAX_UPDATES][T_IDS * DIM];
static float tt_rows[1 << MAX_UPDATES][TT_IDS * DIM];

static void model_upsert(struct model_doc *docs, const qv_doc *batch,
                         const int *index, size_t n)
{
    for (size_t i = 0; i < n; i++)
        docs[index[i]] = (struct model_doc){1, batch[i].vector,
                                            batch[i].payload};
}

/* The payload fields of a tagged document; 0 for any other payload. */
static int payload_fields(const char *p, int *tag, int *n)
{
    return p && sscanf(p, "{\"tag\":\"t%d\",\"n\":%d", tag, n) == 2;
}

static int match_tag1(const char *p)
{
    int t, n;
    return payload_fields(p, &t, &n) && t == 1;
}

static int match_n_below_40(const char *p)
{
    int t, n;
    return payload_fields(p, &t, &n) && n < 40;
}

static int match_tag2(const char *p)
{
    int t, n;
    return payload_fields(p, &t, &n) && t == 2;
}

static int match_doomed(const char *p)
{
    int t, n;
    return payload_fields(p, &t, &n) && t == 2 && n >= 60;
}

static size_t model_matches(const struct model *m, int (*match)(const char *))
{
    size_t count = 0;
    for (int i = 0; i <= N; i++)
        count += m->docs[0][i].exists && match(m->docs[0][i].payload);
    return count;
}

static uint64_t model_count(const struct model *m, int coll)
{
    uint64_t count = 0;
    for (int i = 0; i <= N; i++)
        count += m->docs[coll][i].exists;
    return count;
}

/* ---- one run of the workload under a fault ---- */

struct run {
    qv_db *db;
    qv_status fault;        /* the status a failed call answers */
    unsigned long n;        /* the fault's number, for messages */
    void (*lift)(void);     /* no more faults */
    int failed;             /* a call failed */
    unsigned long filters_at;   /* qv_alloc_calls() when filters() began */
    struct model m;
};

/* A call answers OK, or the fault's status with a message, or NOT_FOUND
 * after an earlier failure (the collection or index it needs was never
 * made). Returns 1 for OK. */
static int step_ok(struct run *r, qv_status st, const char *call)
{
    if (st != QV_OK && st != r->fault &&
        !(st == QV_ERR_NOT_FOUND && r->failed))
        fail_msg("%s at fault %lu: %s (%s)", call, r->n, qv_status_name(st),
                 qv_errmsg(r->db));
    if (st != QV_OK && getenv("QUIVER_FAULT_VERBOSE"))
        fprintf(stderr, "# fault %lu: %s: %s (%s)\n", r->n, call,
                qv_status_name(st), qv_errmsg(r->db));
    if (st == r->fault && !*qv_errmsg(r->db))
        fail_msg("%s at fault %lu: %s without a message", call, r->n,
                 qv_status_name(st));
    /* a failed write says that nothing of it was stored; after LMDB gave
     * up on the environment, every call says to open it again */
    if (st == QV_ERR_IO &&
        !strstr(qv_errmsg(r->db), "nothing of this write was stored") &&
        !strstr(qv_errmsg(r->db), "open it again"))
        fail_msg("%s at fault %lu: IO says neither what was stored nor "
                 "what to do: %s", call, r->n, qv_errmsg(r->db));
    r->failed |= st != QV_OK;
    return st == QV_OK;
}

#define STEP(r, call) step_ok((r), (call), #call)

/* A filter's search, count and scan agree with the acknowledged writes:
 * as many as match (k at most for the search), and only those. */
static void filter_reads(struct run *r, const char *filter,
                         int (*match)(const char *), int explain)
{
    size_t want = model_matches(&r->m, match);
    qv_search_options opt = {.k = 5, .with_payload = 1, .filter = filter,
                             .explain = explain};
    qv_hits *hits = NULL;
    if (STEP(r, qv_search(r->db, "c", vecs[1], DIM, &opt, &hits))) {
        if (hits->count != (want < 5 ? want : 5))
            fail_msg("search %s at fault %lu: %zu hits of %zu matches",
                     filter, r->n, hits->count, want);
        for (size_t i = 0; i < hits->count; i++)
            if (!match(hits->hits[i].payload))
                fail_msg("search %s at fault %lu: hit %s does not match",
                         filter, r->n, hits->hits[i].id);
        if (explain && !hits->explain)
            fail_msg("search at fault %lu: no explain", r->n);
    }
    qv_free(hits);
    uint64_t count;
    if (STEP(r, qv_count(r->db, "c", filter, &count)) && count != want)
        fail_msg("count %s at fault %lu: %llu, acknowledged %zu", filter,
                 r->n, (unsigned long long)count, want);
    qv_page *page = NULL;
    if (STEP(r, qv_scan_where(r->db, "c", filter, NULL, 100, &page))) {
        if (page->count != want)
            fail_msg("scan %s at fault %lu: %zu of %zu", filter, r->n,
                     page->count, want);
        for (size_t i = 0; i < page->count; i++)
            if (!match(page->records[i].payload))
                fail_msg("scan %s at fault %lu: %s does not match", filter,
                         r->n, page->records[i].id);
    }
    qv_free(page);
}

/* Collection "c": documents, searches, deletes, replaced vectors. */
static void documents(struct run *r)
{
    qv_db *db = r->db;
    qv_doc docs[N];
    int index[N];
    for (int i = 0; i < N; i++) {
        docs[i] = (qv_doc){ids[i], vecs[i], DIM,
                           TAGGED(i) ? payloads[i] : NULL};
        index[i] = i;
    }
    if (STEP(r, qv_create_collection(db, "c", &(qv_collection_config){
                                                  .dim = DIM, .M = 8,
                                                  .ef_construction = 32})))
        r->m.coll[0] = 1;
    if (STEP(r, qv_upsert(db, "c", docs, N)))
        model_upsert(r->m.docs[0], docs, index, N);
    qv_hits *hits = NULL;
    qv_search_options opt = {.k = 5, .with_payload = 1};
    STEP(r, qv_search(db, "c", vecs[3], DIM, &opt, &hits));
    qv_free(hits);
    hits = NULL;
    opt.exact = 1;
    STEP(r, qv_search(db, "c", vecs[4], DIM, &opt, &hits));
    qv_free(hits);
    qv_batch_hits *b = NULL;
    opt.exact = 0;
    opt.threads = 2;
    STEP(r, qv_search_batch(db, "c", vecs[0], 8, DIM, &opt, &b));
    qv_free(b);
    qv_page *page = NULL;
    STEP(r, qv_scan(db, "c", NULL, 50, &page));
    qv_free(page);
    qv_record *rec = NULL;
    STEP(r, qv_get(db, "c", ids[7], &rec));
    qv_free(rec);
    for (int i = 0; i < 5; i++) {
        if (STEP(r, qv_delete(db, "c", ids[i * 11])))
            r->m.docs[0][i * 11].exists = 0;
    }
    qv_doc again[3];
    int again_index[3];
    for (int i = 0; i < 3; i++) {
        again[i] = (qv_doc){ids[i + 50], moved[i], DIM, moved_payload};
        again_index[i] = i + 50;
    }
    if (STEP(r, qv_upsert(db, "c", again, 3)))
        model_upsert(r->m.docs[0], again, again_index, 3);
}

/* Filters on "c" with and without payload indexes, delete-where. Each
 * filter reads every payload again: the same few parses per document. */
static void filters(struct run *r)
{
    qv_db *db = r->db;
    filter_reads(r, "{\"tag\":\"t1\"}", match_tag1, 0);
    if (STEP(r, qv_create_index(db, "c", "n", QV_INDEX_INT)))
        r->m.index_n = 1;
    filter_reads(r, "{\"n\":{\"$lt\":40}}", match_n_below_40, 1);
    if (STEP(r, qv_create_index(db, "c", "tag", QV_INDEX_KEYWORD)))
        r->m.index_tag = 1;
    uint64_t deleted;
    size_t doomed = model_matches(&r->m, match_doomed);
    if (STEP(r, qv_delete_where(db, "c", "{\"tag\":\"t2\",\"n\":{\"$gte\":60}}",
                                &deleted))) {
        if (deleted != doomed)
            fail_msg("delete-where at fault %lu: %llu deleted, %zu "
                     "acknowledged matches", r->n,
                     (unsigned long long)deleted, doomed);
        for (int i = 0; i < N; i++)
            if (r->m.docs[0][i].exists &&
                match_doomed(r->m.docs[0][i].payload))
                r->m.docs[0][i].exists = 0;
    }
    filter_reads(r, "{\"tag\":\"t2\"}", match_tag2, 0);
    if (STEP(r, qv_drop_index(db, "c", "tag")))
        r->m.index_tag = 0;
}

/* A graph over codes, re-ranked from disk; and one trained at once. */
static void codecs(struct run *r)
{
    qv_db *db = r->db;
    qv_doc docs[N];
    int index[N];
    for (int i = 0; i < N; i++) {
        docs[i] = (qv_doc){ids[i], vecs[i], DIM, NULL};
        index[i] = i;
    }
    qv_search_options opt = {.k = 5, .with_payload = 1};
    qv_hits *hits = NULL;
    if (STEP(r, qv_create_collection(db, "f", &(qv_collection_config){
                                                  .dim = DIM, .codec = "f16",
                                                  .M = 8,
                                                  .ef_construction = 32})))
        r->m.coll[1] = 1;
    if (STEP(r, qv_upsert(db, "f", docs, N)))
        model_upsert(r->m.docs[1], docs, index, N);
    STEP(r, qv_search(db, "f", vecs[5], DIM, &opt, &hits));
    qv_free(hits);
    hits = NULL;
    if (STEP(r, qv_create_collection(db, "s", &(qv_collection_config){
                                                  .dim = DIM, .codec = "sq8",
                                                  .M = 8,
                                                  .ef_construction = 32})))
        r->m.coll[2] = 1;
    if (STEP(r, qv_upsert(db, "s", docs, N))) {
        model_upsert(r->m.docs[2], docs, index, N);
        STEP(r, qv_train(db, "s"));   /* training needs the documents */
    }
    STEP(r, qv_search(db, "s", vecs[6], DIM, &opt, &hits));
    qv_free(hits);
}

static const qv_table_config table_t = {.rows = 64, .dim = DIM,
                                        .method = "hash:2",
                                        .optimizer = QV_OPTIMIZER_ADAGRAD};
static const qv_table_config table_tt = {.rows = 64, .dim = DIM,
                                         .method = "tt:2",
                                         .optimizer = QV_OPTIMIZER_ADAGRAD};

/* An embedding table (hashed rows), and one whose rows are products of
 * shared cores: created, updated twice, looked up. */
static void tables(struct run *r)
{
    qv_db *db = r->db;
    float rows[T_IDS * DIM];
    if (STEP(r, qv_table_create(db, "t", &table_t)))
        r->m.table_t = 1;
    for (int u = 0; u < MAX_UPDATES; u++)
        if (STEP(r, qv_table_update(db, "t", tids, T_IDS, DIM, vecs[7 + u])))
            r->m.t_updates |= 1u << u;
    if (STEP(r, qv_table_lookup(db, "t", tids, T_IDS, DIM, rows)) &&
        memcmp(rows, t_rows[r->m.t_updates], sizeof rows))
        fail_msg("table t at fault %lu: rows differ from updates %#x", r->n,
                 r->m.t_updates);
    if (STEP(r, qv_table_create(db, "tt", &table_tt)))
        r->m.table_tt = 1;
    for (int u = 0; u < MAX_UPDATES; u++)
        if (STEP(r, qv_table_update(db, "tt", tids, TT_IDS, DIM,
                                    vecs[7 + u])))
            r->m.tt_updates |= 1u << u;
    if (STEP(r, qv_table_lookup(db, "tt", tids, TT_IDS, DIM, rows)) &&
        memcmp(rows, tt_rows[r->m.tt_updates], TT_IDS * DIM * sizeof *rows))
        fail_msg("table tt at fault %lu: rows differ from updates %#x", r->n,
                 r->m.tt_updates);
}

/* Describe, stats, check. */
static void admin(struct run *r)
{
    qv_collection_info info;
    STEP(r, qv_describe_collection(r->db, "c", &info));
    char *text = NULL;
    STEP(r, qv_stats(r->db, &text));
    qv_free(text);
    text = NULL;
    qv_status c = qv_check(r->db, &text);
    if (c != QV_OK && c != r->fault)
        fail_msg("check at fault %lu: %s: %s", r->n, qv_status_name(c),
                 text ? text : qv_errmsg(r->db));
    qv_free(text);
}

/* The fault lifted, the handle writes again; or, after LMDB gave up on
 * the environment (a failed write of its meta page), it says that the
 * database must be opened again. */
static void write_after(struct run *r)
{
    r->lift();
    qv_doc doc = {"after", after_vec, DIM, moved_payload};
    qv_status st = qv_upsert(r->db, "c", &doc, 1);
    if (st == QV_OK) {
        r->m.docs[0][N] = (struct model_doc){1, after_vec, moved_payload};
    } else if (st == QV_ERR_NOT_FOUND && !r->m.coll[0]) {
        /* no collection to write to */
    } else if (!(st == QV_ERR_IO && r->fault == QV_ERR_IO &&
                 strstr(qv_errmsg(r->db), "open it again"))) {
        fail_msg("a write after fault %lu was lifted: %s (%s)", r->n,
                 qv_status_name(st), qv_errmsg(r->db));
    }
}

static void workload(struct run *r, const char *dir, unsigned flags)
{
    qv_open_options oo = {.flags = flags, .threads = 2};
    qv_status st = qv_open(dir, &oo, &r->db);
    if (st != QV_OK) {
        if (st != r->fault)
            fail_msg("open at fault %lu: %s (%s)", r->n, qv_status_name(st),
                     qv_errmsg(NULL));
        r->lift();
        return;
    }
    documents(r);
    codecs(r);
    tables(r);
    r->filters_at = qv_alloc_calls();
    filters(r);
    admin(r);
    write_after(r);
    /* closing must not need memory: every allocation fails meanwhile */
    if (r->fault == QV_ERR_NOMEM)
        qv_alloc_fail_at(1, 1);
    qv_close(r->db);
    r->db = NULL;
    if (r->fault == QV_ERR_NOMEM)
        qv_alloc_fail_at(0, 0);
}

/* ---- afterwards, without faults ---- */

static void verify_doc(qv_db *db, int coll, const char *id,
                       const struct model_doc *d, unsigned long n)
{
    qv_record *rec = NULL;
    qv_status st = qv_get(db, coll_names[coll], id, &rec);
    if (!d->exists) {
        if (st != QV_ERR_NOT_FOUND)
            fail_msg("after fault %lu: %s/%s is there (%s) but was not "
                     "acknowledged", n, coll_names[coll], id,
                     qv_status_name(st));
        qv_free(rec);
        return;
    }
    if (st != QV_OK)
        fail_msg("after fault %lu: acknowledged %s/%s: %s", n,
                 coll_names[coll], id, qv_status_name(st));
    if (memcmp(rec->vector, d->vec, sizeof(float) * DIM) != 0)
        fail_msg("after fault %lu: %s/%s has another vector", n,
                 coll_names[coll], id);
    if ((rec->payload == NULL) != (d->payload == NULL) ||
        (d->payload && strcmp(rec->payload, d->payload) != 0))
        fail_msg("after fault %lu: %s/%s has payload %s, acknowledged %s",
                 n, coll_names[coll], id, rec->payload ? rec->payload : "none",
                 d->payload ? d->payload : "none");
    qv_free(rec);
}

static void verify_table(qv_db *db, const char *name, int created,
                         size_t nids, const float *want, unsigned long n)
{
    float rows[T_IDS * DIM];
    qv_status st = qv_table_lookup(db, name, tids, nids, DIM, rows);
    if (st != (created ? QV_OK : QV_ERR_NOT_FOUND))
        fail_msg("after fault %lu: table %s: %s", n, name,
                 qv_status_name(st));
    if (created && memcmp(rows, want, nids * DIM * sizeof *rows) != 0)
        fail_msg("after fault %lu: table %s differs from its acknowledged "
                 "updates", n, name);
}

/* The database opens, passes qv_check and holds exactly the acknowledged
 * writes. */
static void verify(const char *dir, const struct model *m, unsigned long n)
{
    qv_db *db;
    char *report = NULL;
    assert_ok(NULL, qv_open(dir, &(qv_open_options){.flags = QV_OPEN_NOSYNC},
                            &db));
    if (qv_check(db, &report) != QV_OK)
        fail_msg("after fault %lu: %s", n, report);
    qv_free(report);
    for (int c = 0; c < NCOLL; c++) {
        qv_collection_info info;
        qv_status st = qv_describe_collection(db, coll_names[c], &info);
        if (st != (m->coll[c] ? QV_OK : QV_ERR_NOT_FOUND))
            fail_msg("after fault %lu: collection %s: %s", n, coll_names[c],
                     qv_status_name(st));
        if (st == QV_OK && info.count != model_count(m, c))
            fail_msg("after fault %lu: %s holds %llu documents, acknowledged "
                     "%llu", n, coll_names[c],
                     (unsigned long long)info.count,
                     (unsigned long long)model_count(m, c));
        for (int i = 0; m->coll[c] && i < N; i++)
            verify_doc(db, c, ids[i], &m->docs[c][i], n);
    }
    if (m->coll[0]) {
        verify_doc(db, 0, "after", &m->docs[0][N], n);
        /* dropping an index finds it only where it was acknowledged */
        if (qv_drop_index(db, "c", "n") !=
            (m->index_n ? QV_OK : QV_ERR_NOT_FOUND))
            fail_msg("after fault %lu: index on n %s", n,
                     m->index_n ? "missing" : "not acknowledged");
        if (qv_drop_index(db, "c", "tag") !=
            (m->index_tag ? QV_OK : QV_ERR_NOT_FOUND))
            fail_msg("after fault %lu: index on tag %s", n,
                     m->index_tag ? "missing" : "not acknowledged");
    }
    verify_table(db, "t", m->table_t, T_IDS, t_rows[m->t_updates], n);
    verify_table(db, "tt", m->table_tt, TT_IDS, tt_rows[m->tt_updates], n);
    qv_close(db);
}

/* ---- the inputs, and the tables' rows replayed without faults ---- */

static void no_lift(void)
{
}

static void make_inputs(void)
{
    uint64_t rng = 17;
    for (int i = 0; i < N; i++) {
        tu_rand_vector(&rng, vecs[i], DIM);
        snprintf(ids[i], sizeof ids[i], "id%d", i);
        /* every other one with a string and a number long enough that
         * jansson's lexer grows its buffer for them */
        snprintf(payloads[i], sizeof payloads[i],
                 "{\"tag\":\"t%d\",\"n\":%d%s}", i / 6 % 3, i,
                 i % 12 ? "" : ",\"big\":12345678901234567,\"note\":"
                               "\"a note longer than thirty-two bytes\"");
    }
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < DIM; d++)
            moved[i][d] = vecs[i + 50][d] + 1.0f;
    tu_rand_vector(&rng, after_vec, DIM);
    for (unsigned mask = 0; mask < 1u << MAX_UPDATES; mask++) {
        char *dir = tu_mkdtemp();
        qv_db *db;
        assert_ok(NULL, qv_open(dir, &(qv_open_options){
                                         .flags = QV_OPEN_NOSYNC}, &db));
        assert_ok(db, qv_table_create(db, "t", &table_t));
        assert_ok(db, qv_table_create(db, "tt", &table_tt));
        for (int u = 0; u < MAX_UPDATES; u++) {
            if (!(mask & 1u << u))
                continue;
            assert_ok(db, qv_table_update(db, "t", tids, T_IDS, DIM,
                                          vecs[7 + u]));
            assert_ok(db, qv_table_update(db, "tt", tids, TT_IDS, DIM,
                                          vecs[7 + u]));
        }
        assert_ok(db, qv_table_lookup(db, "t", tids, T_IDS, DIM,
                                      t_rows[mask]));
        assert_ok(db, qv_table_lookup(db, "tt", tids, TT_IDS, DIM,
                                      tt_rows[mask]));
        qv_close(db);
        tu_rmdir(dir);
    }
}

/* QUIVER_FAULT_AT=N: try only fault N (to look at one failure). */
static unsigned long only_fault(void)
{
    const char *env = getenv("QUIVER_FAULT_AT");
    return env ? strtoul(env, NULL, 10) : 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) +
           (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- out of memory ---- */

static void lift_nomem(void)
{
    qv_alloc_fail_at(0, 0);
}

/* Every N through the allocations before filters() (each a site of its
 * own: opening, the catalog, upserts, the graph, codecs, tables), then
 * every STRIDE-th: filters and the check that follows repeat the same
 * parse per payload and per call, and a stride that is no multiple of a
 * parse's allocations lands on each of them in turn. The persistent runs
 * are offset by half a stride. QUIVER_FAULT_STRIDE=1 tries every N. */
#define STRIDE 5

static void run_nomem(int persistent)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lift_nomem();
    make_inputs();
    const char *env = getenv("QUIVER_FAULT_STRIDE");
    unsigned long stride = env && atoi(env) > 0 ? (unsigned long)atoi(env)
                                                : STRIDE;
    /* how many allocations does the workload make, and where do the
     * filters begin? */
    char *dir = tu_mkdtemp();
    struct run r = {.fault = QV_ERR_NOMEM, .lift = no_lift};
    unsigned long before = qv_alloc_calls();
    workload(&r, dir, QV_OPEN_NOSYNC);
    unsigned long total = qv_alloc_calls() - before;
    unsigned long dense = r.filters_at - before;
    verify(dir, &r.m, 0);
    tu_rmdir(dir);
    unsigned long tried = 0, only = only_fault();
    for (unsigned long n = only ? only : 1; n <= (only ? only : total + 1);
         n += n < dense ? 1 : stride) {
        unsigned long at = n >= dense && persistent && !only
                               ? n + stride / 2 : n;
        dir = tu_mkdtemp();
        r = (struct run){.fault = QV_ERR_NOMEM, .n = at, .lift = lift_nomem};
        qv_alloc_fail_at(at, persistent);
        workload(&r, dir, QV_OPEN_NOSYNC);
        lift_nomem();
        verify(dir, &r.m, at);
        tu_rmdir(dir);
        tried++;
    }
    printf("# %s out of memory: %lu runs over the workload's %lu "
           "allocations (every N to %lu, then every %lu-th), %.1f s\n",
           persistent ? "persistent" : "transient", tried, total, dense,
           stride, seconds_since(&t0));
}

static void test_transient_out_of_memory(void **state)
{
    run_nomem(0);
}

static void test_persistent_out_of_memory(void **state)
{
    run_nomem(1);
}

/* ---- write errors ---- */

/* The data file whose writes and syncs are counted, and from which one
 * on they fail. */
static struct {
    char path[PATH_MAX + 16];   /* "" when none */
    atomic_ulong calls;
    atomic_ulong fail_at;       /* 0: none */
    atomic_int persistent;
} io_fault;

static int is_data_file(int fd)
{
    char link[64], target[sizeof io_fault.path];
    if (!io_fault.path[0])
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len < 0)
        return 0;
    target[len] = '\0';
    return strcmp(target, io_fault.path) == 0;
}

/* Is this write or sync of fd to fail? Counts those of the data file. */
static int io_fails(int fd)
{
    if (!is_data_file(fd))
        return 0;
    unsigned long call = atomic_fetch_add(&io_fault.calls, 1) + 1;
    unsigned long at = atomic_load(&io_fault.fail_at);
    return at && (call == at || (call > at && atomic_load(&io_fault.persistent)));
}

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef int (*sync_fn)(int);

/* The function this program's definition of name hides (libc's, or the
 * sanitizer's wrapper of it), in real_. */
#define REAL(name, type)                                                  \
    static type real_;                                                    \
    if (!real_)                                                           \
        *(void **)&real_ = dlsym(RTLD_NEXT, name)

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    REAL("pwrite", pwrite_fn);
    if (io_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real_(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    REAL("writev", writev_fn);
    if (io_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real_(fd, iov, iovcnt);
}

int fdatasync(int fd)
{
    REAL("fdatasync", sync_fn);
    if (io_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real_(fd);
}

int fsync(int fd)
{
    REAL("fsync", sync_fn);
    if (io_fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real_(fd);
}

static void io_arm(const char *dir, unsigned long at, int persistent)
{
    char real_dir[PATH_MAX];
    if (!realpath(dir, real_dir))
        fail_msg("realpath %s", dir);
    snprintf(io_fault.path, sizeof io_fault.path, "%s/data.mdb", real_dir);
    atomic_store(&io_fault.calls, 0);
    atomic_store(&io_fault.persistent, persistent);
    atomic_store(&io_fault.fail_at, at);
}

static void lift_io(void)
{
    atomic_store(&io_fault.fail_at, 0);
}

/* A directory for the write error runs: in /dev/shm when there is one.
 * The errors are injected, so no disk is needed, and the synchronous
 * commits cost nothing there (on a disk they tripled the time). */
static char *io_mkdtemp(void)
{
    char path[] = "/dev/shm/quiver-test-XXXXXX";
    if (access("/dev/shm", W_OK) != 0 || !mkdtemp(path))
        return tu_mkdtemp();
    return strdup(path);
}

/*
 * Synchronous commits (an fdatasync of the data, then the meta page
 * through LMDB's O_DSYNC descriptor), every write or sync failing in
 * turn: a failed commit answers IO and stores nothing.
 */
static void run_io(int persistent)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lift_nomem();
    make_inputs();
    char *dir = io_mkdtemp();
    struct run r = {.fault = QV_ERR_IO, .lift = lift_io};
    io_arm(dir, 0, 0);
    workload(&r, dir, 0);
    unsigned long total = atomic_load(&io_fault.calls);
    io_fault.path[0] = '\0';
    verify(dir, &r.m, 0);
    tu_rmdir(dir);
    if (total < 20)
        fail_msg("only %lu writes and syncs of the data file seen: is the "
                 "interposition working?", total);
    unsigned long panics = 0, tried = 0;
    unsigned long only = only_fault();
    for (unsigned long n = only ? only : 1; n <= (only ? only : total + 1);
         n++) {
        dir = io_mkdtemp();
        r = (struct run){.fault = QV_ERR_IO, .n = n, .lift = lift_io};
        io_arm(dir, n, persistent);
        workload(&r, dir, 0);
        io_fault.path[0] = '\0';
        lift_io();
        verify(dir, &r.m, n);
        panics += !r.m.docs[0][N].exists && r.m.coll[0];
        tu_rmdir(dir);
        tried++;
    }
    printf("# %s write errors: %lu runs over the workload's %lu writes "
           "and syncs of data.mdb (%lu ending with the environment given "
           "up), %.1f s\n", persistent ? "persistent" : "transient",
           tried, total, panics, seconds_since(&t0));
}

static void test_transient_write_errors(void **state)
{
    run_io(0);
}

static void test_persistent_write_errors(void **state)
{
    run_io(1);
}

/*
 * The disk fills up: a child writes batches with its file size limited
 * (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk) and
 * reports each acknowledged batch; its last call must fail with
 * QV_ERR_FULL. The database then opens and holds every acknowledged batch.
 */
static void test_disk_full(void **state)
{
    qv_alloc_fail_at(0, 0);
    char *dir = tu_mkdtemp();
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_ok(db, qv_create_collection(db, "c",
                                       &(qv_collection_config){.dim = 64}));
    qv_close(db);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = {4u << 20, 4u << 20};
        setrlimit(RLIMIT_FSIZE, &lim);
        qv_db *cdb;
        if (qv_open(dir, NULL, &cdb) != QV_OK)
            _exit(10);
        static float v[200][64];
        char cids[200][24];
        qv_doc docs[200];
        for (int b = 0;; b++) {
            for (int i = 0; i < 200; i++) {
                for (int d = 0; d < 64; d++)
                    v[i][d] = (float)(b + i + d);
                snprintf(cids[i], sizeof cids[i], "%d-%d", b, i);
                docs[i] = (qv_doc){cids[i], v[i], 64, NULL};
            }
            qv_status st = qv_upsert(cdb, "c", docs, 200);
            if (st != QV_OK) {
                int named = strstr(qv_errmsg(cdb), "file size limit") != NULL;
                /* the handle goes on: a small write fits in freed pages or
                 * is refused the same way */
                qv_status again = qv_upsert(cdb, "c", docs, 1);
                qv_close(cdb);
                _exit(st == QV_ERR_FULL && named &&
                      (again == QV_OK || again == QV_ERR_FULL)
                          ? 0 : 20 + (int)st);
            }
            if (write(fds[1], &b, sizeof b) != sizeof b)
                _exit(11);
        }
    }
    close(fds[1]);
    int b, acked = -1;
    while (read(fds[0], &b, sizeof b) == sizeof b)
        acked = b;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("the writer exited with %d", WEXITSTATUS(status));
    assert_true(acked >= 1);
    assert_ok(NULL, qv_open(dir, NULL, &db));
    qv_collection_info info;
    assert_ok(db, qv_describe_collection(db, "c", &info));
    /* every acknowledged batch, plus the one-document write that may have
     * fitted after the refusal */
    assert_true(info.count == (uint64_t)(acked + 1) * 200 ||
                info.count == (uint64_t)(acked + 1) * 200 + 1);
    char *report = NULL;
    if (qv_check(db, &report) != QV_OK)
        fail_msg("%s", report);
    qv_free(report);
    qv_close(db);
    printf("# disk full after %d acknowledged batches of 200; all kept\n",
           acked + 1);
    tu_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transient_out_of_memory),
        cmocka_unit_test(test_persistent_out_of_memory),
        cmocka_unit_test(test_transient_write_errors),
        cmocka_unit_test(test_persistent_write_errors),
        cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
