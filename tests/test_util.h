/* test_util.h - helpers shared by the test programs. */
#ifndef QV_TEST_UTIL_H
#define QV_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

#include "db/quiver.h"

/* A fresh empty directory under $TMPDIR; free with tu_rmdir(). */
char *tu_mkdtemp(void);
/* Remove dir and everything under it (links not followed), then free
 * the string. */
void tu_rmdir(char *dir);

/* Deterministic pseudo-random numbers (xorshift), per seed. */
uint64_t tu_rand(uint64_t *state);
/* A uniform float in [-1, 1). */
float tu_randf(uint64_t *state);
void tu_rand_vector(uint64_t *state, float *v, size_t dim);

/*
 * Start build/.../quiverd on dir, listening on a free loopback port, with
 * extra arguments (NULL-terminated list, may be NULL). Waits for its
 * "listening on" line. Returns the port; *pid is the server's.
 */
int tu_start_server(const char *dir, const char *const *extra, pid_t *pid);
/* SIGTERM the server and wait for it; returns its exit status. */
int tu_stop_server(pid_t pid);

/*
 * Start Debian's nats-server with JetStream on a free loopback port, its
 * store and log in dir; url gets "nats://127.0.0.1:PORT". Returns its pid
 * once it listens (fails the test if it does not within 10 s).
 */
pid_t tu_start_nats(const char *dir, char *url, size_t urllen);
/* Stop it (SIGTERM) and wait for it. */
void tu_stop_nats(pid_t pid);
/*
 * The same for one server of a NATS cluster: named name (its store and
 * log in dir carry the name), on client port port (0: any), with routes
 * (comma-separated nats:// URLs of every member's cluster port, its own
 * cluster_port among them; NULL: no cluster).
 */
pid_t tu_start_nats_server(const char *dir, const char *name, int port,
                           int cluster_port, const char *routes, char *url,
                           size_t urllen);
/* A loopback TCP port that was free a moment ago. */
int tu_free_port(void);

/* True when the suite runs against remote handles (QUIVER_TEST_REMOTE),
 * over TLS when QUIVER_TEST_TLS is set too. */
int tu_remote(void);

/*
 * Write a test PKI into dir: ca.pem (a CA), server.pem and server.key (a
 * certificate it signed for 127.0.0.1 and localhost), expired.pem and
 * expired.key (the same, expired an hour ago), other-ca.pem (a CA that
 * signed nothing here). EC P-256 keys, made afresh each call.
 */
void tu_make_certs(const char *dir);
/*
 * Open dir embedded, or, under QUIVER_TEST_REMOTE, through a quiverd
 * serving dir (started on first use, stopped by tu_stop_servers).
 */
qv_status tu_open(const char *dir, const qv_open_options *opts, qv_db **db);
/* Stop the servers tu_open started: 0 when all exited cleanly; the log of
 * one that did not (a sanitizer's report, say) goes to stderr. */
int tu_stop_servers(void);

/*
 * The fixture of the API tests: a database in a fresh directory, opened
 * with tu_open (remote under QUIVER_TEST_REMOTE).
 */
struct tu_fixture {
    char *dir;
    qv_db *db;
};

/* cmocka setup: a struct tu_fixture in *state, opened with opts. */
int tu_setup(void **state, const qv_open_options *opts);
/* cmocka teardown: qv_check must pass (the message goes to stderr), then
 * the handle, any servers and the directory go. */
int tu_teardown(void **state);

/* Assert a call's status, printing the handle's message when it differs. */
#define assert_status(db, call, expected)                                  \
    do {                                                                   \
        qv_status st_ = (call);                                            \
        if (st_ != (expected))                                             \
            fail_msg("%s returned %s (%s), expected %s", #call,            \
                     qv_status_name(st_), qv_errmsg(db),                   \
                     qv_status_name(expected));                            \
    } while (0)

#define assert_ok(db, call) assert_status(db, call, QV_OK)

#endif
