/*
 * quiverd with TLS (--tls-cert, --tls-key) and the client's qvs:// URIs:
 * a verified connection works and carries the token; a certificate from
 * an untrusted CA, an expired one, a clear-text client against a TLS
 * port and a TLS client against a clear port each fail cleanly with a
 * message that says why, and the server goes on serving.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test_util.h"

struct fixture {
    char *dir;
    char path[4][4200];   /* ca, other CA, token file, scratch */
};

static const char *in_dir(struct fixture *f, int slot, const char *name)
{
    snprintf(f->path[slot], sizeof f->path[slot], "%s/%s", f->dir, name);
    return f->path[slot];
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    tu_make_certs(f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

/* quiverd on f->dir with the certificate prefix ("server", "expired"). */
static int serve(struct fixture *f, const char *cert, const char *token_file,
                 pid_t *pid)
{
    char pem[4200], key[4200];
    snprintf(pem, sizeof pem, "%s/%s.pem", f->dir, cert);
    snprintf(key, sizeof key, "%s/%s.key", f->dir, cert);
    const char *extra[] = {"--tls-cert", pem, "--tls-key", key,
                           token_file ? "--token-file" : NULL, token_file,
                           NULL};
    return tu_start_server(f->dir, extra, pid);
}

static qv_status open_tls(const char *host, int port, const char *ca,
                          const char *token, qv_db **db)
{
    char uri[128];
    snprintf(uri, sizeof uri, "qvs://%s:%d", host, port);
    qv_open_options oo = {.tls_ca_file = ca, .token = token,
                          .timeout_ms = 5000};
    return qv_open(uri, &oo, db);
}

static void expect_open_fails(qv_status got, qv_status want, const char *part)
{
    if (got != want || !strstr(qv_errmsg(NULL), part))
        fail_msg("got %s '%s', expected %s '%s'", qv_status_name(got),
                 qv_errmsg(NULL), qv_status_name(want), part);
}

/* Verified TLS with a token: every call works as over clear TCP. */
static void test_verified_connection_with_token(void **state)
{
    struct fixture *f = *state;
    const char *token = in_dir(f, 2, "token");
    FILE *t = fopen(token, "w");
    fputs("tls-token-123\n", t);
    fclose(t);
    pid_t pid;
    int port = serve(f, "server", token, &pid);
    const char *ca = in_dir(f, 0, "ca.pem");
    qv_db *db;
    expect_open_fails(open_tls("127.0.0.1", port, ca, "wrong-token!", &db),
                      QV_ERR_UNAUTHENTICATED, "wrong token");
    assert_ok(NULL, open_tls("127.0.0.1", port, ca, "tls-token-123", &db));
    assert_ok(db, qv_create_collection(db, "c",
                                       &(qv_collection_config){.dim = 3}));
    float v[3] = {1, 2, 3};
    qv_doc doc = {"a", v, 3, "{\"x\":1}"};
    assert_ok(db, qv_upsert(db, "c", &doc, 1));
    qv_hits *hits;
    assert_ok(db, qv_search(db, "c", v, 3,
                            &(qv_search_options){.k = 1, .with_payload = 1},
                            &hits));
    assert_int_equal(hits->count, 1);
    assert_string_equal(hits->hits[0].payload, "{\"x\":1}");
    qv_free(hits);
    qv_close(db);
    /* the certificate names localhost too */
    assert_ok(NULL, open_tls("localhost", port, ca, "tls-token-123", &db));
    qv_record *r;
    assert_ok(db, qv_get(db, "c", "a", &r));
    qv_free(r);
    qv_close(db);
    assert_int_equal(tu_stop_server(pid), 0);
}

/* A certificate from a CA the client does not trust, an expired one:
 * the handshake fails and says which; the server goes on. */
static void test_untrusted_and_expired_certificates(void **state)
{
    struct fixture *f = *state;
    pid_t pid, old_pid;
    int port = serve(f, "server", NULL, &pid);
    qv_db *db;
    expect_open_fails(open_tls("127.0.0.1", port, in_dir(f, 1, "other-ca.pem"),
                               NULL, &db),
                      QV_ERR_CONNECTION, "unable to get local issuer");
    assert_null(db);
    expect_open_fails(open_tls("127.0.0.1", port, in_dir(f, 3, "no-such.pem"),
                               NULL, &db),
                      QV_ERR_INVALID, "no-such.pem");
    assert_ok(NULL, open_tls("127.0.0.1", port, in_dir(f, 0, "ca.pem"), NULL,
                             &db));
    qv_close(db);
    assert_int_equal(tu_stop_server(pid), 0);
    port = serve(f, "expired", NULL, &old_pid);
    expect_open_fails(open_tls("127.0.0.1", port, in_dir(f, 0, "ca.pem"),
                               NULL, &db),
                      QV_ERR_CONNECTION, "certificate has expired");
    assert_int_equal(tu_stop_server(old_pid), 0);
}

/* A clear-text client on a TLS port is told to use TLS; a TLS client on a
 * clear port fails its handshake; neither hangs. */
static void test_clear_and_tls_mismatched(void **state)
{
    struct fixture *f = *state;
    pid_t pid;
    int port = serve(f, "server", NULL, &pid);
    char uri[64];
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d", port);
    qv_db *db;
    assert_ok(NULL, qv_open(uri, NULL, &db));
    qv_collection_info *list;
    size_t n;
    assert_status(db, qv_list_collections(db, &list, &n), QV_ERR_PROTOCOL);
    assert_non_null(strstr(qv_errmsg(db), "this server speaks TLS"));
    qv_close(db);
    assert_int_equal(tu_stop_server(pid), 0);
    char *clear_dir = tu_mkdtemp();
    int clear_port = tu_start_server(clear_dir, NULL, &pid);
    expect_open_fails(open_tls("127.0.0.1", clear_port,
                               in_dir(f, 0, "ca.pem"), NULL, &db),
                      QV_ERR_CONNECTION, "TLS handshake with 127.0.0.1");
    assert_int_equal(tu_stop_server(pid), 0);
    tu_rmdir(clear_dir);
}

/* quiverd will not start with a key that is not the certificate's, nor
 * with one of the two options alone. */
static void test_bad_server_options(void **state)
{
    struct fixture *f = *state;
    const char *build = getenv("QUIVER_BUILD");
    char cmd[9000], text[1024] = "";
    const char *log = in_dir(f, 3, "err.log");
    snprintf(cmd, sizeof cmd, "%s/quiverd --db %s/db --tls-cert %s/server.pem "
             "--tls-key %s/expired.key 2>%s; echo $? >>%s",
             build ? build : "build/asan", f->dir, f->dir, f->dir, log, log);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/quiverd --db %s/db --tls-cert %s/server.pem "
             "2>>%s; echo $? >>%s", build ? build : "build/asan", f->dir,
             f->dir, log, log);
    assert_int_equal(system(cmd), 0);
    FILE *fl = fopen(log, "r");
    size_t got = fread(text, 1, sizeof text - 1, fl);
    text[got] = '\0';
    fclose(fl);
    if (!strstr(text, "does not match the certificate") ||
        !strstr(text, "--tls-cert and --tls-key go together") ||
        strstr(text, "\n0\n"))
        fail_msg("quiverd said: %s", text);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_verified_connection_with_token),
        T(test_untrusted_and_expired_certificates),
        T(test_clear_and_tls_mismatched),
        T(test_bad_server_options),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
