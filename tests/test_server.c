/*
 * quiverd against bad and hostile clients, speaking raw frames: oversized
 * length prefixes, truncated frames, random bytes, unknown messages,
 * stalled and vanished clients, too many connections, tokens; plus
 * pipelining, a clean stop on SIGTERM, and the client's view of refused,
 * dropped and silent servers. After each abuse the server must still
 * serve a well-behaved client and have lost nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wire/proto/frame.h"
#include "tests/test_util.h"
#include "wire/quiver.pb-c.h"

typedef Quiver__V1__Request Request;
typedef Quiver__V1__Response Response;

struct fixture {
    char *dir;
    pid_t pid;
    int port;
};

static int start(void **state, const char *const *extra)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    f->port = tu_start_server(f->dir, extra, &f->pid);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    static const char *const extra[] = {"--read-timeout", "1",
                                        "--max-connections", "4",
                                        "--max-frame", "1048576", NULL};
    return start(state, extra);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->pid > 0)
        assert_int_equal(tu_stop_server(f->pid), 0);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("connect to %d failed", port);
    return fd;
}

/* A handle on the server at port, through the API (token: NULL or the
 * server's). */
static qv_db *client_with(int port, const char *token)
{
    char uri[64];
    qv_db *db = NULL;
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d", port);
    assert_ok(NULL, qv_open(uri, &(qv_open_options){.token = token}, &db));
    return db;
}

static qv_db *client(int port)
{
    return client_with(port, NULL);
}

/* The server at port answers a well-behaved client through the API. */
static void assert_served(int port, const char *token)
{
    qv_db *db = client_with(port, token);
    qv_collection_info *list;
    size_t n;
    assert_ok(db, qv_list_collections(db, &list, &n));
    qv_free(list);
    qv_close(db);
}

static void send_bytes(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Read one response frame (5 s at most); NULL when the server closed. */
static Response *read_response(int fd)
{
    wbuf in = {0};
    const uint8_t *payload;
    size_t len;
    Response *resp = NULL;
    while (frame_peek(in.data, in.len, 1u << 30, &payload, &len) !=
           FRAME_READY) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 5000) != 1)
            fail_msg("no response within 5 s");
        assert_int_equal(wbuf_reserve(&in, 4096), 0);
        ssize_t n = recv(fd, in.data + in.len, 4096, 0);
        if (n <= 0)
            goto done;
        in.len += (size_t)n;
    }
    resp = quiver__v1__response__unpack(NULL, len, payload);
    assert_non_null(resp);
done:
    wbuf_release(&in);
    return resp;
}

/* True when the server closes fd within 5 s: an orderly end of stream,
 * not a reset (which may destroy a last response before it is read). */
static int closed_by_server(int fd)
{
    char buf[256];
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 5000) != 1)
            return 0;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0)
            fail_msg("the server reset the connection: %s", strerror(errno));
        if (n == 0)
            return 1;
    }
}

static void send_request(int fd, Request *req)
{
    wbuf out = {0};
    assert_int_equal(frame_append(&out, &req->base), 0);
    send_bytes(fd, out.data, out.len);
    wbuf_release(&out);
}

static void send_list(int fd, uint64_t id)
{
    Quiver__V1__ListCollections m = QUIVER__V1__LIST_COLLECTIONS__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.id = id;
    req.op_case = QUIVER__V1__REQUEST__OP_LIST_COLLECTIONS;
    req.list_collections = &m;
    send_request(fd, &req);
}

/* The server still answers a well-behaved client through the API. */
static void assert_serving(struct fixture *f)
{
    assert_served(f->port, NULL);
}

static void expect_status(Response *resp, Quiver__V1__Status status,
                          const char *message_part)
{
    assert_non_null(resp);
    if (resp->status != status || !strstr(resp->message, message_part))
        fail_msg("got status %d '%s', expected %d '%s'", resp->status,
                 resp->message, status, message_part);
    quiver__v1__response__free_unpacked(resp, NULL);
}

static void test_length_prefix_over_the_limit(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff};
    send_bytes(fd, huge, 4);
    expect_status(read_response(fd), QUIVER__V1__STATUS__PROTOCOL,
                  "exceeds the limit of 1048576");
    assert_true(closed_by_server(fd));
    close(fd);
    assert_serving(f);
}

static void test_random_bytes(void **state)
{
    struct fixture *f = *state;
    uint64_t rng = 99;
    for (int round = 0; round < 20; round++) {
        uint8_t junk[64];
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (uint8_t)tu_rand(&rng);
        junk[0] = 0;  /* a plausible length, so the body is parsed */
        junk[1] = 0;
        junk[2] = 0;
        junk[3] = 60;
        int fd = dial(f->port);
        send_bytes(fd, junk, sizeof junk);
        Response *resp = read_response(fd);
        if (resp) {  /* an error, or a request that happened to decode */
            assert_true(resp->status != QUIVER__V1__STATUS__OK ||
                        resp->id != 0);
            quiver__v1__response__free_unpacked(resp, NULL);
        }
        close(fd);
    }
    assert_serving(f);
}

static void test_unknown_message_gets_an_error(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    /* Request{id: 7, field 99: varint 1}: an operation this server lacks */
    uint8_t frame[] = {0, 0, 0, 5, 0x08, 0x07, 0x98, 0x06, 0x01};
    send_bytes(fd, frame, sizeof frame);
    Response *resp = read_response(fd);
    assert_non_null(resp);
    assert_int_equal(resp->id, 7);
    expect_status(resp, QUIVER__V1__STATUS__PROTOCOL, "no operation");
    send_list(fd, 8);  /* the connection goes on */
    resp = read_response(fd);
    assert_int_equal(resp->id, 8);
    expect_status(resp, QUIVER__V1__STATUS__OK, "");
    close(fd);
}

static void test_truncated_frame_then_disconnect(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    uint8_t partial[] = {0, 0, 0, 50, 0x08, 0x01, 0x32};
    send_bytes(fd, partial, sizeof partial);
    close(fd);  /* gone mid-request */
    assert_serving(f);
}

static void test_stalled_half_frame_is_dropped(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    uint8_t partial[] = {0, 0, 0, 50, 0x08};
    send_bytes(fd, partial, sizeof partial);
    assert_true(closed_by_server(fd));  /* --read-timeout 1 */
    close(fd);
    assert_serving(f);
}

static void test_more_connections_than_allowed(void **state)
{
    struct fixture *f = *state;
    int fds[4];
    for (int i = 0; i < 4; i++) {  /* the limit; each one answered */
        fds[i] = dial(f->port);
        send_list(fds[i], 1);
        expect_status(read_response(fds[i]), QUIVER__V1__STATUS__OK, "");
    }
    int extra = dial(f->port);
    send_list(extra, 1);  /* sent before the refusal is read: unread */
    expect_status(read_response(extra), QUIVER__V1__STATUS__BUSY,
                  "limit of 4 connections");
    assert_true(closed_by_server(extra));
    close(extra);
    close(fds[0]);
    /* a slot frees up once the server has seen the close */
    for (int tries = 0;; tries++) {
        int fd = dial(f->port);
        send_list(fd, 2);
        Response *resp = read_response(fd);
        int ok = resp && resp->status == QUIVER__V1__STATUS__OK;
        if (resp)
            quiver__v1__response__free_unpacked(resp, NULL);
        close(fd);
        if (ok)
            break;
        assert_true(tries < 5000);
    }
    for (int i = 1; i < 4; i++)
        close(fds[i]);
}

/* Fifty requests in one write: fifty answers, in order. */
static void test_pipelined_requests(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    wbuf out = {0};
    for (uint64_t id = 1; id <= 50; id++) {
        Quiver__V1__Get m = QUIVER__V1__GET__INIT;
        m.collection = "nope";
        m.id = "x";
        Request req = QUIVER__V1__REQUEST__INIT;
        req.id = id * 3;
        req.op_case = QUIVER__V1__REQUEST__OP_GET;
        req.get = &m;
        assert_int_equal(frame_append(&out, &req.base), 0);
    }
    send_bytes(fd, out.data, out.len);
    wbuf_release(&out);
    wbuf in = {0};
    for (uint64_t id = 1; id <= 50;) {
        const uint8_t *payload;
        size_t len;
        if (frame_peek(in.data, in.len, 1u << 20, &payload, &len) ==
            FRAME_READY) {
            Response *resp = quiver__v1__response__unpack(NULL, len, payload);
            assert_int_equal(resp->id, id * 3);
            assert_int_equal(resp->status, QUIVER__V1__STATUS__NOT_FOUND);
            quiver__v1__response__free_unpacked(resp, NULL);
            wbuf_consume(&in, FRAME_HEADER + len);
            id++;
            continue;
        }
        assert_int_equal(wbuf_reserve(&in, 4096), 0);
        ssize_t n = recv(fd, in.data + in.len, 4096, 0);
        assert_true(n > 0);
        in.len += (size_t)n;
    }
    wbuf_release(&in);
    close(fd);
}

/* Writes acknowledged before SIGTERM are there after a restart. */
static void test_sigterm_stops_cleanly_and_keeps_data(void **state)
{
    struct fixture *f = *state;
    qv_db *db = client(f->port);
    assert_ok(db, qv_create_collection(db, "keep",
                                       &(qv_collection_config){.dim = 2}));
    float v[2] = {1, 2};
    qv_doc doc = {"a", v, 2, "{\"k\":1}"};
    assert_ok(db, qv_upsert(db, "keep", &doc, 1));
    assert_int_equal(tu_stop_server(f->pid), 0);
    /* the handle notices the server is gone */
    qv_record *r = NULL;
    assert_status(db, qv_get(db, "keep", "a", &r), QV_ERR_CONNECTION);
    f->port = tu_start_server(f->dir, NULL, &f->pid);
    qv_close(db);
    db = client(f->port);
    assert_ok(db, qv_get(db, "keep", "a", &r));
    assert_string_equal(r->payload, "{\"k\":1}");
    qv_free(r);
    qv_close(db);
}

static void test_client_sees_refused_and_silent_servers(void **state)
{
    qv_db *db = NULL;
    /* nothing listens on a port we just released */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d", ntohs(sa.sin_port));
    assert_status(NULL, qv_open(uri, NULL, &db), QV_ERR_CONNECTION);
    assert_null(db);
    assert_non_null(strstr(qv_errmsg(NULL), "cannot connect"));
    /* a listener that never answers: the call times out */
    assert_int_equal(listen(fd, 4), 0);
    qv_open_options oo = {.timeout_ms = 300};
    assert_ok(NULL, qv_open(uri, &oo, &db));
    qv_collection_info *list = NULL;
    size_t n;
    assert_status(db, qv_list_collections(db, &list, &n), QV_ERR_TIMEOUT);
    qv_close(db);
    close(fd);
    static const char *const bad[] = {"qv://", "qv://h:", "qv://:80",
                                      "qv://h:port", "qv://h:80/x",
                                      "qv://[::1]:x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_status(NULL, qv_open(bad[i], NULL, &db), QV_ERR_INVALID);
}

/* qv://HOST without a port means quiverd's default port, 7411: the
 * handle tries 127.0.0.1:7411 (which may or may not answer here). */
static void test_uri_port_defaults_to_7411(void **state)
{
    static const char *const uris[] = {"qv://127.0.0.1", "qv://[::1]"};
    for (size_t i = 0; i < sizeof uris / sizeof *uris; i++) {
        qv_db *db = NULL;
        qv_open_options oo = {.timeout_ms = 300};
        qv_status st = qv_open(uris[i], &oo, &db);
        if (st == QV_OK)
            qv_close(db);
        else
            assert_non_null(strstr(qv_errmsg(NULL), ":7411"));
        assert_int_not_equal(st, QV_ERR_INVALID);
    }
}

static void write_token(const char *dir, const char *token, char *path,
                        size_t len)
{
    snprintf(path, len, "%s/token", dir);
    FILE *t = fopen(path, "w");
    fprintf(t, "%s\n", token);
    fclose(t);
}

static void test_token_is_required(void **state)
{
    char *dir = tu_mkdtemp(), path[4200];
    write_token(dir, "s3cret-token", path, sizeof path);
    const char *const extra[] = {"--token-file", path, NULL};
    pid_t pid;
    int port = tu_start_server(dir, extra, &pid);
    char uri[64];
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d", port);
    qv_db *db = NULL;
    qv_open_options oo = {.token = "wrong-token!"};
    assert_status(NULL, qv_open(uri, &oo, &db), QV_ERR_UNAUTHENTICATED);
    int fd = dial(port);  /* no token at all */
    send_list(fd, 1);
    expect_status(read_response(fd), QUIVER__V1__STATUS__UNAUTHENTICATED,
                  "authenticate first");
    assert_true(closed_by_server(fd));
    close(fd);
    assert_served(port, "s3cret-token");
    assert_int_equal(tu_stop_server(pid), 0);
    unlink(path);
    tu_rmdir(dir);
}

/*
 * Connections that have not authenticated hold no slot for long and have
 * a cap of their own: silent ones are told and closed after
 * --auth-timeout, and past --max-unauthenticated a new one is refused
 * BUSY, while clients with the token still get in.
 */
static void test_unauthenticated_connections_are_bounded(void **state)
{
    char *dir = tu_mkdtemp(), path[4200];
    write_token(dir, "s3cret-token", path, sizeof path);
    const char *const extra[] = {"--token-file", path, "--auth-timeout", "1",
                                 "--max-unauthenticated", "2", NULL};
    pid_t pid;
    int port = tu_start_server(dir, extra, &pid);
    int silent[2] = {dial(port), dial(port)};
    int third = -1;  /* refused once the server has counted both */
    for (int tries = 0; third < 0; tries++) {
        int fd = dial(port);
        Response *resp = read_response(fd);
        int busy = resp && resp->status == QUIVER__V1__STATUS__BUSY;
        if (busy) {
            assert_int_equal(resp->id, 0);
            assert_non_null(strstr(resp->message, "waiting to authenticate"));
            assert_true(closed_by_server(fd));
            third = fd;
        } else {
            close(fd);  /* a silent one timed out first: not counted */
        }
        if (resp)
            quiver__v1__response__free_unpacked(resp, NULL);
        assert_true(tries < 50);
    }
    close(third);
    for (int i = 0; i < 2; i++) {
        expect_status(read_response(silent[i]),
                      QUIVER__V1__STATUS__UNAUTHENTICATED,
                      "authenticate within 1 s");
        assert_true(closed_by_server(silent[i]));
        close(silent[i]);
    }
    assert_served(port, "s3cret-token");
    assert_int_equal(tu_stop_server(pid), 0);
    unlink(path);
    tu_rmdir(dir);
}

/* quiverd refuses to serve beyond loopback without a token. */
static void test_non_loopback_needs_a_token(void **state)
{
    char *dir = tu_mkdtemp();
    const char *build = getenv("QUIVER_BUILD");
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "%s/quiverd --db %s --listen 0.0.0.0:0 "
             "2>%s/err.log", build ? build : "build/asan", dir, dir);
    int status = system(cmd);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    char log[4200], text[512] = "";
    snprintf(log, sizeof log, "%s/err.log", dir);
    FILE *fl = fopen(log, "r");
    size_t got = fread(text, 1, sizeof text - 1, fl);
    text[got] = '\0';
    fclose(fl);
    assert_non_null(strstr(text, "needs --token-file"));
    tu_rmdir(dir);
}

/* ---- hand-built messages: protobuf-c cannot pack a string holding a
 * NUL byte or bytes that are not UTF-8, which is what these send ---- */

struct raw {
    uint8_t b[1024];
    size_t n;
};

static void raw_varint(struct raw *r, uint64_t v)
{
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        r->b[r->n++] = c | (v ? 0x80 : 0);
    } while (v);
}

static void raw_field(struct raw *r, unsigned field, const void *p, size_t n)
{
    raw_varint(r, (uint64_t)field << 3 | 2);
    raw_varint(r, n);
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

/* A document {id, vector [1, 2]} with an id of n bytes. */
static void raw_document(struct raw *docs, const char *id, size_t n)
{
    struct raw d = {0};
    float v[2] = {1, 2};
    raw_field(&d, 1, id, n);
    raw_field(&d, 2, v, sizeof v);
    raw_field(docs, 2, d.b, d.n);
}

/* Send Request{id, op: m} as one frame. */
static void send_raw(int fd, uint64_t id, unsigned op, const struct raw *m)
{
    struct raw req = {0};
    raw_varint(&req, 1 << 3);
    raw_varint(&req, id);
    raw_field(&req, op, m->b, m->n);
    uint8_t head[4] = {(uint8_t)(req.n >> 24), (uint8_t)(req.n >> 16),
                       (uint8_t)(req.n >> 8), (uint8_t)req.n};
    send_bytes(fd, head, 4);
    send_bytes(fd, req.b, req.n);
}

static void expect_reply(int fd, uint64_t id, Quiver__V1__Status status,
                         const char *message_part)
{
    Response *resp = read_response(fd);
    assert_non_null(resp);
    assert_int_equal(resp->id, id);
    expect_status(resp, status, message_part);
}

/*
 * A NUL byte or bytes that are not UTF-8 in any string field are refused
 * with INVALID naming the field; before, "a\0x" was stored as "a" and
 * "rt\0zzz" read collection rt.
 */
static void test_strings_with_nul_or_bad_utf8(void **state)
{
    struct fixture *f = *state;
    qv_db *db = client(f->port);
    assert_ok(db, qv_create_collection(db, "rt",
                                       &(qv_collection_config){.dim = 2}));
    int fd = dial(f->port);
    struct raw up = {0};
    raw_field(&up, 1, "rt", 2);
    raw_document(&up, "a\0x", 3);
    send_raw(fd, 11, 7, &up);
    expect_reply(fd, 11, QUIVER__V1__STATUS__INVALID,
                 "upsert.documents[0].id holds a NUL byte at offset 1");
    up = (struct raw){0};
    raw_field(&up, 1, "rt", 2);
    raw_document(&up, "fine", 4);
    raw_document(&up, "\xff\xfe\x80", 3);
    send_raw(fd, 12, 7, &up);
    expect_reply(fd, 12, QUIVER__V1__STATUS__INVALID,
                 "upsert.documents[1].id is not valid UTF-8 (byte 0xff");
    struct raw get = {0};
    raw_field(&get, 1, "rt\0zzz", 6);
    raw_field(&get, 2, "fine", 4);
    send_raw(fd, 13, 8, &get);
    expect_reply(fd, 13, QUIVER__V1__STATUS__INVALID,
                 "get.collection holds a NUL byte at offset 2");
    struct raw scan = {0};  /* a string field nested in options */
    raw_field(&scan, 1, "rt", 2);
    raw_field(&scan, 5, "{\"a\":\"\xc3\"}", 9);
    send_raw(fd, 14, 12, &scan);
    expect_reply(fd, 14, QUIVER__V1__STATUS__INVALID, "scan.filter is not");
    send_list(fd, 15);  /* the connection goes on */
    expect_reply(fd, 15, QUIVER__V1__STATUS__OK, "");
    close(fd);
    qv_collection_info info;  /* and nothing was written */
    assert_ok(db, qv_describe_collection(db, "rt", &info));
    assert_int_equal(info.count, 0);
    qv_close(db);
}

/* An empty frame decodes as a request with id 0, which answers nothing:
 * PROTOCOL with id 0, and the connection is closed, as id 0 says. */
static void test_empty_frame_closes(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    uint8_t empty[4] = {0, 0, 0, 0};
    send_bytes(fd, empty, sizeof empty);
    expect_reply(fd, 0, QUIVER__V1__STATUS__PROTOCOL, "id 0 is reserved");
    assert_true(closed_by_server(fd));
    close(fd);
    assert_serving(f);
}

/*
 * A frame's bytes trickled in one at a time do not keep it open: the read
 * timeout (1 s here) runs from the frame's first byte. Before, each byte
 * restarted it. A byte goes every 200 ms while the server has not closed.
 */
static void test_trickled_frame_times_out(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    uint8_t head[4] = {0, 0, 0x03, 0xe8};  /* 1,000 bytes to come */
    send_bytes(fd, head, sizeof head);
    int sent = 0, closed = 0;
    while (!closed && sent < 25) {  /* 5 s of trickling at most */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) == 1) {
            closed = 1;
            break;
        }
        uint8_t b = 0x08;
        closed = send(fd, &b, 1, MSG_NOSIGNAL) != 1;
        sent++;
    }
    assert_true(closed);
    assert_true(sent < 15);  /* closed near 1 s, long before 5 */
    close(fd);
    assert_serving(f);
}

/* A server that only loopback clients reach takes no backup request
 * unless its operator named a directory for them. */
static void test_backup_needs_a_backup_dir(void **state)
{
    struct fixture *f = *state;
    qv_db *db = client(f->port);
    assert_status(db, qv_backup(db, "b1"), QV_ERR_UNSUPPORTED);
    assert_non_null(strstr(qv_errmsg(db), "--backup-dir"));
    qv_close(db);
}

static int exists(const char *dir, const char *name)
{
    char path[4300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

/* With --backup-dir, a client names only a new entry in it: no path, no
 * '..', nothing that exists, and a failed request leaves nothing. */
static void test_backup_is_confined(void **state)
{
    char *dir = tu_mkdtemp(), *backups = tu_mkdtemp();
    const char *const extra[] = {"--backup-dir", backups, NULL};
    pid_t pid;
    int port = tu_start_server(dir, extra, &pid);
    qv_db *db = client(port);
    char outside[4200];
    snprintf(outside, sizeof outside, "%s/escaped", dir);
    const char *bad[] = {outside, "../escaped", "..", ".", ".hidden",
                         "a/b", "sp ace", "tab\tname"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_status(db, qv_backup(db, bad[i]), QV_ERR_INVALID);
        if (!strstr(qv_errmsg(db), "backup is named by"))
            fail_msg("'%s': %s", bad[i], qv_errmsg(db));
    }
    assert_false(exists(dir, "escaped"));
    assert_false(exists(backups, "../escaped"));
    assert_ok(db, qv_backup(db, "nightly-1"));
    assert_true(exists(backups, "nightly-1/data.mdb"));
    assert_status(db, qv_backup(db, "nightly-1"), QV_ERR_EXISTS);
    char link[4300];  /* an existing entry, even a link, is not followed */
    snprintf(link, sizeof link, "%s/link", backups);
    assert_int_equal(symlink(dir, link), 0);
    assert_status(db, qv_backup(db, "link"), QV_ERR_EXISTS);
    assert_false(exists(dir, "data.mdb.copy"));
    qv_db *copy;  /* the backup is a database */
    char copy_dir[4300];
    snprintf(copy_dir, sizeof copy_dir, "%s/nightly-1", backups);
    assert_ok(NULL, qv_open(copy_dir, NULL, &copy));
    qv_close(copy);
    qv_close(db);
    assert_int_equal(tu_stop_server(pid), 0);
    tu_rmdir(dir);
    tu_rmdir(backups);
}

/* A client's create may not name where shards go (placement is the
 * cluster's, in its log); shards themselves need a cluster node. Either
 * way nothing is created and the connection goes on. */
static void test_placement_is_not_a_clients(void **state)
{
    struct fixture *f = *state;
    int fd = dial(f->port);
    char *nodes[2] = {"n1", "n2"};
    Quiver__V1__CollectionConfig cfg = QUIVER__V1__COLLECTION_CONFIG__INIT;
    cfg.dim = 4;
    cfg.shards = 2;
    cfg.n_placement = 2;
    cfg.placement = nodes;
    Quiver__V1__CreateCollection m = QUIVER__V1__CREATE_COLLECTION__INIT;
    m.name = "s";
    m.config = &cfg;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.id = 1;
    req.op_case = QUIVER__V1__REQUEST__OP_CREATE_COLLECTION;
    req.create_collection = &m;
    send_request(fd, &req);
    Response *resp = read_response(fd);
    assert_non_null(resp);
    assert_int_equal(resp->id, 1);
    expect_status(resp, QUIVER__V1__STATUS__INVALID,
                  "placement is set by the cluster, not by a client");
    cfg.n_placement = 0;
    cfg.placement = NULL;
    req.id = 2;
    send_request(fd, &req);
    resp = read_response(fd);
    assert_non_null(resp);
    assert_int_equal(resp->id, 2);
    expect_status(resp, QUIVER__V1__STATUS__UNSUPPORTED,
                  "shards and replicas need a cluster node (quiverd "
                  "--cluster); this database is a single node");
    send_list(fd, 3);
    resp = read_response(fd);
    assert_non_null(resp);
    assert_int_equal(resp->id, 3);
    assert_int_equal(resp->status, QUIVER__V1__STATUS__OK);
    assert_int_equal(resp->result_case, QUIVER__V1__RESPONSE__RESULT_LIST);
    assert_int_equal(resp->list->n_collections, 0);
    quiver__v1__response__free_unpacked(resp, NULL);
    close(fd);
    assert_serving(f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_length_prefix_over_the_limit),
        T(test_random_bytes),
        T(test_unknown_message_gets_an_error),
        T(test_truncated_frame_then_disconnect),
        T(test_stalled_half_frame_is_dropped),
        T(test_more_connections_than_allowed),
        T(test_pipelined_requests),
        T(test_sigterm_stops_cleanly_and_keeps_data),
        T(test_strings_with_nul_or_bad_utf8),
        T(test_empty_frame_closes),
        T(test_trickled_frame_times_out),
        T(test_backup_needs_a_backup_dir),
        T(test_placement_is_not_a_clients),
#undef T
        cmocka_unit_test(test_backup_is_confined),
        cmocka_unit_test(test_client_sees_refused_and_silent_servers),
        cmocka_unit_test(test_uri_port_defaults_to_7411),
        cmocka_unit_test(test_token_is_required),
        cmocka_unit_test(test_unauthenticated_connections_are_bounded),
        cmocka_unit_test(test_non_loopback_needs_a_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
