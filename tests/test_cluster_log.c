/*
 * test_cluster_log.c - the cluster's write log (wire/cluster/log.c) against
 * a nats-server with JetStream that the test starts on a free loopback
 * port, with its store in the test's directory, and stops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nats/nats.h>

#include "tests/test_util.h"
#include "wire/cluster/log.h"

struct nats_fixture {
    char *dir;
    pid_t pid;
    char url[64];
};

static int nats_setup(void **state)
{
    struct nats_fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_mkdtemp();
    f->pid = tu_start_nats(f->dir, f->url, sizeof f->url);
    *state = f;
    return 0;
}

static int nats_teardown(void **state)
{
    struct nats_fixture *f = *state;
    tu_stop_nats(f->pid);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

static clog *open_log(const char *url, const char *stream)
{
    char err[512];
    clog *l = NULL;
    clog_config cfg = {.servers = url, .stream = stream, .replicas = 1,
                       .node = "test"};
    if (clog_open(&cfg, &l, err, sizeof err) != 0)
        fail_msg("clog_open: %s", err);
    return l;
}

static uint64_t append(clog *l, const char *tail, const char *id,
                       const char *text)
{
    char subject[128], err[512];
    uint64_t seq = 0;
    assert_int_equal(clog_subject(l, tail, subject, sizeof subject), 0);
    if (clog_append(l, subject, id, text, strlen(text), &seq, err,
                    sizeof err) != 0)
        fail_msg("clog_append: %s", err);
    return seq;
}

/* The next entry must be seq on subject with text and id. */
static void expect_entry(clog_reader *r, uint64_t seq, const char *subject,
                         const char *id, const char *text)
{
    char err[512];
    clog_entry e;
    int rc = clog_next(r, 5000, &e, err, sizeof err);
    if (rc != 0)
        fail_msg("clog_next: %s", rc > 0 ? "timed out" : err);
    assert_int_equal(e.seq, seq);
    assert_string_equal(e.subject, subject);
    assert_string_equal(e.id, id);
    assert_int_equal(e.len, strlen(text));
    assert_memory_equal(e.data, text, e.len);
    clog_entry_release(&e);
}

/* Entries come back in order from any sequence on; an append repeated
 * with its id is stored once; a reopened log finds its stream. */
static void test_append_and_read(void **state)
{
    struct nats_fixture *f = *state;
    clog *l = open_log(f->url, "db1");
    assert_int_equal(append(l, "c1.s0", "n1-1", "first"), 1);
    assert_int_equal(append(l, "c2.s0", "n1-2", "second"), 2);
    assert_int_equal(append(l, "c1.s0", "n1-3", "third"), 3);
    assert_int_equal(append(l, "c2.s0", "n1-2", "second again"), 2);
    char err[512];
    uint64_t last = 0;
    assert_int_equal(clog_last_seq(l, &last, err, sizeof err), 0);
    assert_int_equal(last, 3);
    clog_close(l);

    l = open_log(f->url, "db1");
    clog_reader *r;
    assert_int_equal(clog_read_from(l, 1, &r, err, sizeof err), 0);
    expect_entry(r, 1, "quiver.db1.c1.s0", "n1-1", "first");
    expect_entry(r, 2, "quiver.db1.c2.s0", "n1-2", "second");
    expect_entry(r, 3, "quiver.db1.c1.s0", "n1-3", "third");
    clog_entry e;
    assert_int_equal(clog_next(r, 200, &e, err, sizeof err), 1);
    /* an entry appended while reading arrives too */
    assert_int_equal(append(l, "c1.s0", "n1-4", "fourth"), 4);
    expect_entry(r, 4, "quiver.db1.c1.s0", "n1-4", "fourth");
    clog_reader_close(r);

    assert_int_equal(clog_read_from(l, 3, &r, err, sizeof err), 0);
    expect_entry(r, 3, "quiver.db1.c1.s0", "n1-3", "third");
    clog_reader_close(r);
    clog_close(l);
}


/* Compare-and-set in the key-value bucket: of two creates of one key one
 * wins, and of two updates from one revision one wins; the loser is told
 * so (1), not an error, and changes nothing. */
static void test_kv_compare_and_set(void **state)
{
    struct nats_fixture *f = *state;
    clog *l = open_log(f->url, "db1");
    clog_kv *kv = NULL;
    char err[512], *value = NULL;
    uint64_t rev = 0, rev2 = 0;
    assert_int_equal(clog_kv_open(l, "test_cas", 0, &kv, err, sizeof err),
                     0);
    assert_int_equal(clog_kv_create(kv, "k", "first", err, sizeof err), 0);
    assert_int_equal(clog_kv_create(kv, "k", "second", err, sizeof err), 1);
    assert_int_equal(clog_kv_get_rev(kv, "k", &value, &rev, err, sizeof err),
                     0);
    assert_string_equal(value, "first");
    free(value);
    assert_true(rev > 0);
    assert_int_equal(clog_kv_update(kv, "k", "a", rev, err, sizeof err), 0);
    assert_int_equal(clog_kv_update(kv, "k", "b", rev, err, sizeof err), 1);
    assert_int_equal(clog_kv_get_rev(kv, "k", &value, &rev2, err,
                                     sizeof err), 0);
    assert_string_equal(value, "a");
    free(value);
    assert_true(rev2 > rev);
    assert_int_equal(clog_kv_get_rev(kv, "none", &value, &rev, err,
                                     sizeof err), 0);
    assert_null(value);
    assert_int_equal(rev, 0);
    clog_kv_close(kv);
    clog_close(l);
}

/* A stream of the same name that Quiver did not make is refused. */
static void test_foreign_stream_is_refused(void **state)
{
    struct nats_fixture *f = *state;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, f->url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {"orders.>"};
    sc.Name = "orders";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    jsStreamInfo *si = NULL;
    assert_int_equal(js_AddStream(&si, js, &sc, NULL, NULL), NATS_OK);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    char err[512];
    clog *l = NULL;
    clog_config cfg = {.servers = f->url, .stream = "orders", .replicas = 1};
    assert_int_equal(clog_open(&cfg, &l, err, sizeof err), -1);
    assert_null(l);
    assert_non_null(strstr(err, "'orders' exists but is not a Quiver write "
                                "log"));
}

/* Bad settings and an unreachable server are each a clear error. */
static void test_bad_settings(void **state)
{
    struct nats_fixture *f = *state;
    char err[512];
    clog *l = NULL;
    clog_config cfg = {.servers = "", .stream = "db", .replicas = 1};
    assert_int_equal(clog_open(&cfg, &l, err, sizeof err), -1);
    assert_string_equal(err, "no NATS server given");
    cfg.servers = f->url;
    cfg.stream = "a.b";
    assert_int_equal(clog_open(&cfg, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "stream name is 1 to 32 bytes"));
    cfg.stream = "db";
    cfg.replicas = 0;
    assert_int_equal(clog_open(&cfg, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "replicas must be 1 to 5, not 0"));
    cfg.replicas = 1;
    cfg.servers = "nats://127.0.0.1:1";
    assert_int_equal(clog_open(&cfg, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "connecting to NATS at nats://127.0.0.1:1"));
    assert_null(l);

    /* a list of servers: the one that answers is used */
    char list[160];
    snprintf(list, sizeof list, "nats://127.0.0.1:1,%s", f->url);
    cfg.servers = list;
    assert_int_equal(clog_open(&cfg, &l, err, sizeof err), 0);
    clog_close(l);
    cfg.servers = "nats://127.0.0.1:1,,nats://127.0.0.1:2";
    assert_int_equal(clog_open(&cfg, &l, err, sizeof err), -1);

    l = open_log(f->url, "db2");
    char subject[64];
    static const char *const bad[] = {"", ".", "a.", ".a", "a..b", "a.*",
                                      "a.>", "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(clog_subject(l, bad[i], subject, sizeof subject), -1);
    assert_int_equal(clog_subject(l, "c-1.s_0", subject, sizeof subject), 0);
    assert_string_equal(subject, "quiver.db2.c-1.s_0");
    clog_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_read, nats_setup,
                                        nats_teardown),
        cmocka_unit_test_setup_teardown(test_kv_compare_and_set, nats_setup,
                                        nats_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_stream_is_refused,
                                        nats_setup, nats_teardown),
        cmocka_unit_test_setup_teardown(test_bad_settings, nats_setup,
                                        nats_teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return failed;
}
