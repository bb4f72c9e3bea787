/*
 * Fault injection: out of memory at the N-th allocation (once, and from
 * then on) over a workload that touches every module, and a disk that
 * fills up. For each fault: no crash, no leak (LeakSanitizer at exit), a
 * clean status from every call, and afterwards the database opens and
 * passes qv_check with every acknowledged write in it.
 *
 * The allocations counted and failed are the library's wrappers' and
 * jansson's, which qv_open routes through them (common/json.c; inside a
 * parse a failure is recorded rather than handed to jansson, whose lexer
 * does not survive one, and the parse answers NOMEM). What the wrappers
 * do not see: LMDB's, roaring's and libc's own allocations.
 *
 * Every N up to DENSE is tried, then every STRIDE-th (the payloads'
 * parses repeat the same allocations per document).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "test_util.h"

#define DIM 16
#define N 120

static float vecs[N][DIM];
static char ids[N][16];

/* A call under injection may succeed or run out of memory; NOT_FOUND
 * only when an earlier step failed (the collection or documents it needs
 * were never made). */
static int acceptable(qv_status st, int failed_before)
{
    return st == QV_OK || st == QV_ERR_NOMEM ||
           (st == QV_ERR_NOT_FOUND && failed_before);
}

#define STEP(call)                                                        \
    do {                                                                  \
        qv_status st_ = (call);                                           \
        if (!acceptable(st_, failed))                                     \
            fail_msg("%s at fault %lu: %s (%s)", #call, n,                \
                     qv_status_name(st_), qv_errmsg(db));                 \
        ok += st_ == QV_OK;                                               \
        failed |= st_ != QV_OK;                                           \
    } while (0)

/* Every module: catalog, documents and payloads, index build (2 threads),
 * graph search, exact and batch search, scan, delete with graph repair,
 * replaced vectors, describe, stats, check. Returns the calls that
 * succeeded. */
static int workload(const char *dir, unsigned long n)
{
    qv_db *db = NULL;
    int ok = 0, failed = 0;
    qv_open_options oo = {.flags = QV_OPEN_NOSYNC, .threads = 2};
    qv_status st = qv_open(dir, &oo, &db);
    if (st != QV_OK) {
        assert_int_equal(st, QV_ERR_NOMEM);
        return 0;
    }
    qv_doc docs[N];
    for (int i = 0; i < N; i++)
        docs[i] = (qv_doc){ids[i], vecs[i], DIM,
                           i % 3 ? "{\"tag\":\"t\",\"n\":[1,2]}" : NULL};
    STEP(qv_create_collection(db, "c", &(qv_collection_config){.dim = DIM,
                                                               .M = 8,
                                                               .ef_construction = 32}));
    STEP(qv_upsert(db, "c", docs, N));
    qv_hits *hits = NULL;
    qv_search_options opt = {.k = 5, .with_payload = 1};
    STEP(qv_search(db, "c", vecs[3], DIM, &opt, &hits));
    qv_free(hits);
    hits = NULL;
    opt.exact = 1;
    STEP(qv_search(db, "c", vecs[4], DIM, &opt, &hits));
    qv_free(hits);
    qv_batch_hits *b = NULL;
    opt.exact = 0;
    opt.threads = 2;
    STEP(qv_search_batch(db, "c", vecs[0], 8, DIM, &opt, &b));
    qv_free(b);
    qv_page *page = NULL;
    STEP(qv_scan(db, "c", NULL, 50, &page));
    qv_free(page);
    qv_record *r = NULL;
    STEP(qv_get(db, "c", ids[7], &r));
    qv_free(r);
    for (int i = 0; i < 5; i++) {
        qv_status d = qv_delete(db, "c", ids[i * 11]);
        if (!acceptable(d, 1))
            fail_msg("delete at fault %lu: %s", n, qv_status_name(d));
    }
    float moved[3][DIM];
    qv_doc again[3];
    for (int i = 0; i < 3; i++) {
        for (int d = 0; d < DIM; d++)
            moved[i][d] = vecs[i + 50][d] + 1.0f;
        again[i] = (qv_doc){ids[i + 50], moved[i], DIM, "{\"moved\":true}"};
    }
    STEP(qv_upsert(db, "c", again, 3));
    /* a graph over codes, re-ranked from disk; and one trained at once */
    STEP(qv_create_collection(db, "f", &(qv_collection_config){
                                           .dim = DIM, .codec = "f16",
                                           .M = 8, .ef_construction = 32}));
    STEP(qv_upsert(db, "f", docs, N));
    opt.threads = 0;
    hits = NULL;
    STEP(qv_search(db, "f", vecs[5], DIM, &opt, &hits));
    qv_free(hits);
    hits = NULL;
    STEP(qv_create_collection(db, "s", &(qv_collection_config){
                                           .dim = DIM, .codec = "sq8",
                                           .M = 8, .ef_construction = 32}));
    int ok_before = ok;
    STEP(qv_upsert(db, "s", docs, N));
    if (ok > ok_before)   /* training needs the documents */
        STEP(qv_train(db, "s"));
    STEP(qv_search(db, "s", vecs[6], DIM, &opt, &hits));
    qv_free(hits);
    hits = NULL;
    /* an embedding table: create, an update, a lookup */
    STEP(qv_table_create(db, "t", &(qv_table_config){
                                      .rows = 64, .dim = DIM,
                                      .method = "hash:2",
                                      .optimizer = QV_OPTIMIZER_ADAGRAD}));
    uint64_t tids[4] = {1, 2, 3, 1u << 20};
    float rows[4 * DIM];
    STEP(qv_table_update(db, "t", tids, 4, DIM, vecs[7]));
    STEP(qv_table_lookup(db, "t", tids, 4, DIM, rows));
    /* and one whose rows are products of shared cores */
    STEP(qv_table_create(db, "tt", &(qv_table_config){
                                       .rows = 64, .dim = DIM,
                                       .method = "tt:2",
                                       .optimizer = QV_OPTIMIZER_ADAGRAD}));
    STEP(qv_table_update(db, "tt", tids, 3, DIM, vecs[7]));
    STEP(qv_table_lookup(db, "tt", tids, 3, DIM, rows));
    qv_collection_info info;
    STEP(qv_describe_collection(db, "c", &info));
    char *text = NULL;
    STEP(qv_stats(db, &text));
    qv_free(text);
    text = NULL;
    qv_status c = qv_check(db, &text);
    if (!acceptable(c, 0))
        fail_msg("check at fault %lu: %s: %s", n, qv_status_name(c),
                 text ? text : qv_errmsg(db));
    qv_free(text);
    qv_close(db);
    return ok;
}

/* Without faults: the database opens and passes qv_check. */
static void assert_sound(const char *dir, unsigned long n)
{
    qv_db *db;
    char *report = NULL;
    assert_ok(NULL, qv_open(dir, &(qv_open_options){.flags = QV_OPEN_NOSYNC},
                            &db));
    if (qv_check(db, &report) != QV_OK)
        fail_msg("after fault %lu: %s", n, report);
    qv_free(report);
    qv_close(db);
}

#define DENSE 1000
#define STRIDE 5

static void run_faults(int persistent)
{
    qv_alloc_fail_at(0, 0);
    uint64_t rng = 17;
    for (int i = 0; i < N; i++) {
        tu_rand_vector(&rng, vecs[i], DIM);
        snprintf(ids[i], sizeof ids[i], "id%d", i);
    }
    /* how many allocations does the workload make? */
    char *dir = tu_mkdtemp();
    unsigned long before = qv_alloc_calls();
    workload(dir, 0);
    unsigned long total = qv_alloc_calls() - before;
    tu_rmdir(dir);
    unsigned long tried = 0;
    for (unsigned long n = 1; n <= total + 1; n += n < DENSE ? 1 : STRIDE) {
        dir = tu_mkdtemp();
        qv_alloc_fail_at(n, persistent);
        workload(dir, n);
        qv_alloc_fail_at(0, 0);
        assert_sound(dir, n);
        tu_rmdir(dir);
        tried++;
    }
    printf("# %s faults: %lu of the workload's %lu allocations made to "
           "fail (every N to %d, then every %d-th)\n",
           persistent ? "persistent" : "transient", tried, total, DENSE,
           STRIDE);
}

static void test_transient_out_of_memory(void **state)
{
    run_faults(0);
}

static void test_persistent_out_of_memory(void **state)
{
    run_faults(1);
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
        cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
