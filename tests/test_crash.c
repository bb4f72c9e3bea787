/*
 * Crash test: kill -9 at random moments, then prove the database holds
 * exactly the acknowledged writes.
 *
 * A writer process runs a seeded random sequence of steps on collection
 * "c": upsert batches (new and existing ids, new vectors and payloads) and
 * single deletes, each one transaction, and writes the step's number to a
 * pipe once the call returned OK. The parent kills it (embedded), or kills
 * the quiverd it writes through (remote), with SIGKILL at a random moment,
 * then replays the same sequence as a model and requires the database to
 * equal the model after the acknowledged steps or after one more (the one
 * in flight, all or nothing), qv_check to pass (counts, maps, checksums,
 * graph invariants) and search to answer.
 *
 * CRASH_CYCLES (default 10) cycles each, embedded and through quiverd;
 * `make crash-test` runs 200 of each.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/test_util.h"

#define POOL 300        /* ids "k0".."k299" */
#define DIM_MAX 640     /* a third of the cycles: vectors read in place */
#define TDIM 8          /* the embedding tables' rows */
#define MAX_BATCH 25

struct model {
    int present[POOL];
    uint32_t version[POOL];   /* vector and payload derive from it */
};

/* Step s of the sequence for seed: an upsert batch or one delete. */
struct step {
    int delete_one;
    int n;
    int ids[MAX_BATCH];
};

static void make_step(uint64_t seed, uint32_t s, struct step *out)
{
    uint64_t rng = seed * 1000003u + s + 1;
    tu_rand(&rng);
    out->delete_one = tu_rand(&rng) % 4 == 0;
    out->n = out->delete_one ? 1 : 1 + (int)(tu_rand(&rng) % MAX_BATCH);
    for (int i = 0; i < out->n; i++)
        out->ids[i] = (int)(tu_rand(&rng) % POOL);
}

static void apply_step(struct model *m, const struct step *st, uint32_t s)
{
    for (int i = 0; i < st->n; i++) {
        int id = st->ids[i];
        if (st->delete_one) {
            m->present[id] = 0;
        } else {
            m->present[id] = 1;
            m->version[id] = s + 1;
        }
    }
}

/* The vectors' dimension of a cycle: 640 (each in overflow pages of its
 * own, so the graph reads them in place) for a third of the seeds. */
static uint32_t dim_of(uint64_t seed)
{
    return seed % 3 == 2 ? DIM_MAX : 8;
}

static void vector_of(int id, uint32_t version, float *v, uint32_t dim)
{
    for (uint32_t d = 0; d < dim; d++)
        v[d] = (float)((id * 31 + (int)version * 7 + (int)d * 13) % 97) / 97.0f;
}

static void must(int ok)
{
    if (!ok)
        _exit(3);
}

/* The writer: runs steps until killed (or until an error, remote). */
static void writer(const char *uri, uint64_t seed, int ack_fd)
{
    qv_db *db;
    uint32_t dim = dim_of(seed);
    if (qv_open(uri, NULL, &db) != QV_OK)
        _exit(2);
    static float vecs[MAX_BATCH][DIM_MAX];
    char ids[MAX_BATCH][16], payloads[MAX_BATCH][48];
    qv_doc docs[MAX_BATCH];
    for (uint32_t s = 0;; s++) {
        struct step st;
        make_step(seed, s, &st);
        qv_status rc;
        if (st.delete_one) {
            snprintf(ids[0], sizeof ids[0], "k%d", st.ids[0]);
            rc = qv_delete(db, "c", ids[0]);
            if (rc == QV_ERR_NOT_FOUND)
                rc = QV_OK;  /* nothing to delete: still a completed step */
        } else {
            for (int i = 0; i < st.n; i++) {
                snprintf(ids[i], sizeof ids[i], "k%d", st.ids[i]);
                snprintf(payloads[i], sizeof payloads[i], "{\"v\":%u}", s + 1);
                vector_of(st.ids[i], s + 1, vecs[i], dim);
                docs[i] = (qv_doc){ids[i], vecs[i], dim, payloads[i]};
            }
            rc = qv_upsert(db, "c", docs, (size_t)st.n);
        }
        if (rc != QV_OK)
            _exit(4);  /* the server went away */
        must(write(ack_fd, &s, sizeof s) == sizeof s);
    }
}

/* Does the database hold exactly the model's documents? */
static int matches(qv_db *db, const struct model *m, uint32_t dim)
{
    int seen[POOL] = {0};
    const char *after = NULL;
    char resume[32];
    qv_page *page = NULL;
    int ok = 1;
    do {
        qv_free(page);
        page = NULL;
        if (qv_scan(db, "c", after, 1000, &page) != QV_OK)
            return 0;
        for (size_t i = 0; i < page->count && ok; i++) {
            const qv_record *r = &page->records[i];
            int id = atoi(r->id + 1);
            float v[DIM_MAX];
            char payload[48];
            if (id < 0 || id >= POOL || !m->present[id] || seen[id]++) {
                ok = 0;
                break;
            }
            vector_of(id, m->version[id], v, dim);
            snprintf(payload, sizeof payload, "{\"v\":%u}", m->version[id]);
            ok = r->dim == dim &&
                 memcmp(v, r->vector, dim * sizeof *v) == 0 && r->payload &&
                 strcmp(r->payload, payload) == 0;
        }
        if (page->next) {
            snprintf(resume, sizeof resume, "%s", page->next);
            after = resume;
        } else {
            after = NULL;
        }
    } while (ok && after);
    qv_free(page);
    for (int id = 0; id < POOL && ok; id++)
        ok = seen[id] == m->present[id];
    return ok;
}

static void random_pause(uint64_t *rng)
{
    struct timespec ts = {0, (long)(tu_rand(rng) % 3000000)};
    nanosleep(&ts, NULL);  /* a random moment inside the next steps */
}

/* One cycle; returns the acknowledged steps. */
static uint32_t one_cycle(uint64_t seed, int remote, uint64_t *rng,
                          int *trained)
{
    char *dir = tu_mkdtemp(), uri[64];
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    /* every other cycle with a codec, trained at 256 documents: the kill
     * may land before, during or after the training */
    uint32_t dim = dim_of(seed);
    qv_collection_config cfg = {.dim = dim, .M = 8};
    if (seed % 2 && dim != DIM_MAX) {
        cfg.codec = "sq8";
        cfg.train_min = 64;
    }
    assert_ok(db, qv_create_collection(db, "c", &cfg));
    /* the payloads' field is indexed: qv_check verifies its entries */
    assert_ok(db, qv_create_index(db, "c", "v", QV_INDEX_INT));
    qv_close(db);
    pid_t server = 0;
    snprintf(uri, sizeof uri, "%s", dir);
    if (remote)
        snprintf(uri, sizeof uri, "qv://127.0.0.1:%d",
                 tu_start_server(dir, NULL, &server));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        writer(uri, seed, fds[1]);
    }
    close(fds[1]);
    uint32_t want = 1 + (uint32_t)(tu_rand(rng) % 40), s, acked = 0;
    int any = 0;
    while (!any || acked + 1 < want) {
        if (read(fds[0], &s, sizeof s) != sizeof s)
            fail_msg("writer died early");
        acked = s;
        any = 1;
    }
    random_pause(rng);
    kill(remote ? server : pid, SIGKILL);
    waitpid(remote ? server : pid, NULL, 0);
    if (remote)
        waitpid(pid, NULL, 0);  /* the client stops on its own */
    while (read(fds[0], &s, sizeof s) == sizeof s)
        acked = s;  /* acknowledged before the kill */
    close(fds[0]);

    struct model m = {0};
    struct step st;
    for (uint32_t i = 0; i <= acked; i++) {
        make_step(seed, i, &st);
        apply_step(&m, &st, i);
    }
    assert_ok(NULL, qv_open(dir, NULL, &db));
    if (!matches(db, &m, dim)) {
        make_step(seed, acked + 1, &st);  /* the step in flight */
        apply_step(&m, &st, acked + 1);
        if (!matches(db, &m, dim))
            fail_msg("seed %llu: the database is neither the state after "
                     "step %u nor after step %u", (unsigned long long)seed,
                     acked, acked + 1);
    }
    char *report = NULL;
    if (qv_check(db, &report) != QV_OK)
        fail_msg("seed %llu: %s", (unsigned long long)seed, report);
    qv_free(report);
    static const float q[DIM_MAX];
    qv_hits *hits;
    assert_ok(db, qv_search(db, "c", q, dim, &(qv_search_options){.k = 5},
                            &hits));
    qv_free(hits);
    qv_collection_info info;
    assert_ok(db, qv_describe_collection(db, "c", &info));
    *trained += strcmp(info.codec, "none") && info.codec_trained;
    qv_close(db);
    tu_rmdir(dir);
    return acked + 1;
}

static int cycles(void)
{
    const char *env = getenv("CRASH_CYCLES");
    int n = env ? atoi(env) : 10;
    return n > 0 ? n : 10;
}

static void run_cycles(int remote)
{
    uint64_t rng = remote ? 777 : 555;
    unsigned long steps = 0;
    int n = cycles(), trained = 0;
    for (int i = 0; i < n; i++)
        steps += one_cycle(1000 + (uint64_t)i + (remote ? 50000u : 0u),
                           remote, &rng, &trained);
    int in_place = 0;
    for (int i = 0; i < n; i++)
        in_place += dim_of(1000 + (uint64_t)i + (remote ? 50000u : 0u)) ==
                    DIM_MAX;
    printf("# %d kill cycles %s (%d of %d-d vectors read in place), %lu "
           "acknowledged steps verified; %d ended with a trained codec\n", n,
           remote ? "of quiverd" : "of an embedded writer", in_place,
           DIM_MAX, steps, trained);
}

static void test_kill_embedded_writer(void **state)
{
    run_cycles(0);
}

static void test_kill_quiverd(void **state)
{
    run_cycles(1);
}

/* ---- embedding tables: an update is whole or absent after kill -9 ---- */

#define TROWS 64
#define TBATCH 16

static const char *const table_methods[] = {
    "full", "int8", "hash:2", "adapt:2", "alpt:8", "prune:0.5", "qr:2",
    "robe:2", "int16", "alpt:16", "tt:2"};

static void create_table(const char *dir, const char *method)
{
    qv_db *db;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_ok(db, qv_table_create(db, "t", &(qv_table_config){
                                             .rows = TROWS, .dim = TDIM,
                                             .method = method,
                                             .optimizer = QV_OPTIMIZER_ADAGRAD,
                                             .learning_rate = 0.1f,
                                             .init = 0.1f, .seed = 3}));
    qv_close(db);
}

/* Update s of a cycle: ids (with repeats) and gradients from the seed. */
static void table_step(uint64_t seed, uint32_t s, uint64_t *ids, float *g)
{
    uint64_t rng = seed * 7919 + s + 1;
    for (int i = 0; i < TBATCH; i++)
        ids[i] = tu_rand(&rng) % TROWS;
    tu_rand_vector(&rng, g, TBATCH * TDIM);
}

static void table_writer(const char *dir, uint64_t seed, int ack_fd)
{
    qv_db *db;
    if (qv_open(dir, NULL, &db) != QV_OK)
        _exit(2);
    uint64_t ids[TBATCH];
    float g[TBATCH * TDIM];
    for (uint32_t s = 0;; s++) {
        table_step(seed, s, ids, g);
        if (qv_table_update(db, "t", ids, TBATCH, TDIM, g) != QV_OK)
            _exit(4);
        must(write(ack_fd, &s, sizeof s) == sizeof s);
    }
}

/* Every row of table t in dir. */
static void all_rows(const char *dir, float *rows, uint64_t *updates)
{
    qv_db *db;
    uint64_t ids[TROWS];
    for (int i = 0; i < TROWS; i++)
        ids[i] = (uint64_t)i;
    assert_ok(NULL, qv_open(dir, NULL, &db));
    assert_ok(db, qv_table_lookup(db, "t", ids, TROWS, TDIM, rows));
    qv_table_info info;
    assert_ok(db, qv_table_describe(db, "t", &info));
    *updates = info.updates;
    char *report = NULL;
    if (qv_check(db, &report) != QV_OK)
        fail_msg("%s", report);
    qv_free(report);
    qv_close(db);
}

static uint32_t table_cycle(uint64_t seed, uint64_t *rng)
{
    const char *method = table_methods[seed % (sizeof table_methods /
                                               sizeof *table_methods)];
    char *dir = tu_mkdtemp(), *model = tu_mkdtemp();
    create_table(dir, method);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        table_writer(dir, seed, fds[1]);
    }
    close(fds[1]);
    uint32_t want = 1 + (uint32_t)(tu_rand(rng) % 30), s, acked = 0;
    int any = 0;
    while (!any || acked + 1 < want) {
        if (read(fds[0], &s, sizeof s) != sizeof s)
            fail_msg("table writer died early");
        acked = s;
        any = 1;
    }
    random_pause(rng);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    while (read(fds[0], &s, sizeof s) == sizeof s)
        acked = s;
    close(fds[0]);
    /* the table holds the acknowledged updates, or one more; replayed on
     * a fresh copy, the same updates give the very same rows */
    static float got[TROWS * TDIM], want_rows[TROWS * TDIM];
    uint64_t updates, replayed;
    all_rows(dir, got, &updates);
    if (updates != acked + 1 && updates != acked + 2)
        fail_msg("seed %llu (%s): %llu updates after %u acknowledged",
                 (unsigned long long)seed, method,
                 (unsigned long long)updates, acked + 1);
    create_table(model, method);
    qv_db *db;
    assert_ok(NULL, qv_open(model, &(qv_open_options){.flags =
                                                          QV_OPEN_NOSYNC},
                            &db));
    uint64_t ids[TBATCH];
    float g[TBATCH * TDIM];
    for (uint32_t i = 0; i < updates; i++) {
        table_step(seed, i, ids, g);
        assert_ok(db, qv_table_update(db, "t", ids, TBATCH, TDIM, g));
    }
    qv_close(db);
    all_rows(model, want_rows, &replayed);
    if (memcmp(got, want_rows, sizeof got) != 0)
        fail_msg("seed %llu (%s): the rows after %llu updates differ from "
                 "their replay", (unsigned long long)seed, method,
                 (unsigned long long)updates);
    tu_rmdir(dir);
    tu_rmdir(model);
    return (uint32_t)updates;
}

static void test_kill_table_writer(void **state)
{
    uint64_t rng = 999;
    unsigned long steps = 0;
    int n = cycles() / 2 ? cycles() / 2 : 1;
    for (int i = 0; i < n; i++)
        steps += table_cycle(2000 + (uint64_t)i, &rng);
    printf("# %d kill cycles of an embedding table writer (%zu methods), "
           "%lu updates verified against their replay\n", n,
           sizeof table_methods / sizeof *table_methods, steps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_embedded_writer),
        cmocka_unit_test(test_kill_quiverd),
        cmocka_unit_test(test_kill_table_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
