/*
 * remote.c - the remote transport: the public API over one TCP connection
 * to quiverd, in clear (qv://) or inside TLS (qvs://). db.c has already checked every argument it can, exactly as
 * for an embedded handle; the server checks the rest and its status and
 * message come back unchanged.
 */
#include <errno.h>
#include <openssl/x509.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "db/core/error.h"
#include "wire/proto/frame.h"
#include "wire/proto/ops.h"
#include "db/core/handle.h"
#include "wire/proto/stream.h"
#include "wire/quiver.pb-c.h"

#define DEFAULT_TIMEOUT_MS 30000
#define RESPONSE_MAX (1u << 30)

typedef Quiver__V1__Request Request;
typedef Quiver__V1__Response Response;

_Static_assert((int)QUIVER__V1__STATUS__IN_USE == (int)QV_STATUS_LAST,
               "the protocol's statuses are qv_status, number for number");

#define ENDPOINTS_MAX 16   /* nodes a qv:// URI may name */

struct endpoint {
    char host[256], port[16];
};

typedef struct remote_db {
    qv_db base;
    char host[256], port[16];   /* the endpoint in use */
    struct endpoint ends[ENDPOINTS_MAX];
    int nends, cur;             /* cur: ends[cur] is host:port */
    char *token;
    int timeout_ms;
    SSL_CTX *tls;           /* qvs://: verifies the server; NULL for qv:// */
    pthread_mutex_t lock;   /* one call at a time on the connection */
    stream s;               /* s.fd -1 when not connected */
    uint64_t next_id;
    uint64_t read_after;    /* a cluster's write token: every request
                               waits until its node applied that write */
    wbuf out, in;
} remote_db;

/* ---- connection ---- */

static void disconnect(remote_db *db)
{
    stream_end_tls(&db->s);
    if (db->s.fd >= 0)
        close(db->s.fd);
    db->s.fd = -1;
    db->in.len = 0;
}

static qv_status connect_error(remote_db *db, const char *what, int err)
{
    return qv_fail(&db->base, err == ETIMEDOUT ? QV_ERR_TIMEOUT
                                               : QV_ERR_CONNECTION,
                   "%s %s:%s: %s", what, db->host, db->port, strerror(err));
}

/* Connect to one address with the handle's timeout. */
static int connect_addr(remote_db *db, const struct addrinfo *ai, int *err)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    struct pollfd p = {fd, POLLOUT, 0};
    int rc = poll(&p, 1, db->timeout_ms);
    socklen_t len = sizeof *err;
    if (rc == 0)
        *err = ETIMEDOUT;
    else if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) != 0)
        *err = errno;
    if (rc <= 0 || *err != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static qv_status call_locked(remote_db *db, Request *req, Response **resp);

/* Wait up to the handle's timeout for what a stream call asked for. */
static int wait_stream(remote_db *db, ssize_t want)
{
    struct pollfd p = {db->s.fd, want == STREAM_WANT_WRITE ? POLLOUT : POLLIN,
                       0};
    int rc;
    do
        rc = poll(&p, 1, db->timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        errno = ETIMEDOUT;
    return rc;
}

/* Why the TLS handshake failed, the certificate's verdict first. */
static qv_status handshake_failed(remote_db *db)
{
    char why[256];
    long verdict = db->s.ssl ? SSL_get_verify_result(db->s.ssl) : X509_V_OK;
    if (verdict != X509_V_OK)
        snprintf(why, sizeof why, "the server's certificate: %s",
                 X509_verify_cert_error_string(verdict));
    else
        stream_tls_error(why, sizeof why);
    disconnect(db);
    return qv_fail(&db->base, QV_ERR_CONNECTION, "TLS handshake with %s:%s "
                   "failed (%s); is it a quiverd with --tls-cert?", db->host,
                   db->port, why);
}

/* TLS over the new connection: the server's certificate must be signed
 * by a trusted CA and name the host of the URI. */
static qv_status start_tls(remote_db *db)
{
    if (stream_tls_connect(&db->s, db->tls, db->host) != 0) {
        disconnect(db);
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for TLS");
    }
    for (;;) {
        int rc = stream_handshake(&db->s);
        if (rc == 1)
            return QV_OK;
        if (rc == STREAM_FAILED)
            return handshake_failed(db);
        int ready = wait_stream(db, rc);
        if (ready <= 0) {
            int err = errno;
            disconnect(db);
            return connect_error(db, "TLS handshake with", err);
        }
    }
}

static qv_status authenticate(remote_db *db)
{
    Request req = QUIVER__V1__REQUEST__INIT;
    Quiver__V1__Authenticate auth = QUIVER__V1__AUTHENTICATE__INIT;
    auth.token = db->token;
    req.op_case = QUIVER__V1__REQUEST__OP_AUTHENTICATE;
    req.authenticate = &auth;
    Response *resp = NULL;
    qv_status st = call_locked(db, &req, &resp);
    quiver__v1__response__free_unpacked(resp, &qv_protobuf_allocator);
    return st;
}

/* Connect to host:port, the endpoint in use. */
static qv_status connect_endpoint(remote_db *db)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(db->host, db->port, &hints, &res);
    if (rc != 0)
        return qv_fail(&db->base, QV_ERR_CONNECTION, "cannot resolve %s: %s",
                       db->host, gai_strerror(rc));
    int err = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && db->s.fd < 0; ai = ai->ai_next)
        db->s.fd = connect_addr(db, ai, &err);
    freeaddrinfo(res);
    if (db->s.fd < 0)
        return connect_error(db, "cannot connect to", err);
    if (db->tls) {
        qv_status st = start_tls(db);
        if (st != QV_OK)
            return st;
    }
    if (db->token) {  /* only now: inside TLS when there is TLS */
        qv_status st = authenticate(db);
        if (st != QV_OK)
            disconnect(db);
        return st;
    }
    return QV_OK;
}

/* Connected, to the endpoint in use or else to the next that answers (a
 * URI may name several nodes of a cluster). */
/*
 * Whether the server has closed the connection while it was idle (it
 * restarted, or timed the connection out). Every request was answered,
 * so anything readable now is the server's end: EOF, a reset, or a last
 * message before it closed. Caught before a request is sent, so that a
 * write is not lost on a connection that was already gone.
 */
static int closed_while_idle(remote_db *db)
{
    struct pollfd p = {.fd = db->s.fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) > 0;
}

static qv_status ensure_connected(remote_db *db)
{
    if (db->s.fd >= 0 && closed_while_idle(db))
        disconnect(db);
    if (db->s.fd >= 0)
        return QV_OK;
    qv_status st = QV_ERR_CONNECTION;
    for (int tried = 0; tried < db->nends && st != QV_OK; tried++) {
        const struct endpoint *e = &db->ends[(db->cur + tried) % db->nends];
        memcpy(db->host, e->host, sizeof db->host);
        memcpy(db->port, e->port, sizeof db->port);
        st = connect_endpoint(db);
        if (st == QV_OK)
            db->cur = (db->cur + tried) % db->nends;
    }
    if (st != QV_OK && db->nends > 1) {
        char msg[QV_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", qv_error_message(&db->base));
        qv_fail(&db->base, st, "none of the %d nodes answered; the last: %s",
                db->nends, msg);
    }
    return st;
}

/* ---- one request, one response ---- */

static qv_status io_failure(remote_db *db, const char *what, int err)
{
    disconnect(db);
    return connect_error(db, what, err);
}

static qv_status send_frame(remote_db *db)
{
    const uint8_t *p = db->out.data;
    size_t left = db->out.len;
    while (left > 0) {
        ssize_t n = stream_write(&db->s, p, left);
        if (n > 0) {
            p += n;
            left -= (size_t)n;
            continue;
        }
        if (n != STREAM_WANT_READ && n != STREAM_WANT_WRITE)
            return io_failure(db, "sending to", n == 0 ? ECONNRESET : errno);
        if (wait_stream(db, n) <= 0)
            return io_failure(db, "sending to", errno);
    }
    return QV_OK;
}

/* Read until one whole response frame is buffered; *len is its size. */
static qv_status receive_frame(remote_db *db, const uint8_t **payload,
                               size_t *len)
{
    for (;;) {
        enum frame_result r = frame_peek(db->in.data, db->in.len,
                                         RESPONSE_MAX, payload, len);
        if (r == FRAME_READY)
            return QV_OK;
        if (r == FRAME_TOO_LARGE) {
            disconnect(db);
            return qv_fail(&db->base, QV_ERR_PROTOCOL, "response frame from "
                           "%s:%s is over %u bytes", db->host, db->port,
                           RESPONSE_MAX);
        }
        if (wbuf_reserve(&db->in, 64u << 10) != 0)
            return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
        ssize_t n = stream_read(&db->s, db->in.data + db->in.len, 64u << 10);
        if (n > 0) {
            db->in.len += (size_t)n;
            continue;
        }
        if (n == 0)
            return io_failure(db, "connection closed by", ECONNRESET);
        if (n == STREAM_FAILED)
            return io_failure(db, "reading from", errno ? errno : EPROTO);
        int rc = wait_stream(db, n);
        if (rc == 0)
            return io_failure(db, "no answer from", ETIMEDOUT);
        if (rc < 0)
            return io_failure(db, "waiting for", errno);
    }
}

/* Send req, wait for its response; a non-OK status becomes the call's. */
static qv_status call_locked(remote_db *db, Request *req, Response **resp)
{
    req->id = ++db->next_id;
    req->after = db->read_after;
    db->out.len = 0;
    if (frame_append(&db->out, &req->base) != 0)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for a request");
    qv_status st = send_frame(db);
    const uint8_t *payload;
    size_t len;
    if (st == QV_OK)
        st = receive_frame(db, &payload, &len);
    if (st != QV_OK)
        return st;
    protobuf_alloc_failed(1);
    *resp = quiver__v1__response__unpack(&qv_protobuf_allocator, len, payload);
    wbuf_consume(&db->in, FRAME_HEADER + len);
    if (!*resp && protobuf_alloc_failed(1))
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory decoding the "
                       "response");
    if (!*resp) {
        disconnect(db);
        return qv_fail(&db->base, QV_ERR_PROTOCOL, "malformed response from "
                       "%s:%s", db->host, db->port);
    }
    Response *r = *resp;
    if (r->id != req->id && r->id != 0) {
        disconnect(db);
        return qv_fail(&db->base, QV_ERR_PROTOCOL, "response %llu answers no "
                       "request (expected %llu)", (unsigned long long)r->id,
                       (unsigned long long)req->id);
    }
    if (r->write_token > db->read_after)   /* read what this handle wrote */
        db->read_after = r->write_token;
    if ((unsigned)r->status > QV_STATUS_LAST) {  /* not one of qv_status */
        disconnect(db);
        return qv_fail(&db->base, QV_ERR_PROTOCOL, "%s:%s answered with "
                       "status %u, which this client does not know: %s",
                       db->host, db->port, (unsigned)r->status, r->message);
    }
    if (r->status != QUIVER__V1__STATUS__OK) {
        if (r->id == 0)  /* the server closes after such an answer */
            disconnect(db);
        return qv_fail(&db->base, (qv_status)r->status, "%s", r->message);
    }
    return QV_OK;
}

/*
 * Connect if needed and make one call; the caller frees *resp. With
 * several nodes, a read whose node failed is asked of the next node; a
 * write whose node failed is not repeated (it may have been applied), and
 * the message says so.
 */
static qv_status call(remote_db *db, Request *req, Response **resp)
{
    *resp = NULL;
    qv_status st = ensure_connected(db);
    if (st == QV_OK)
        st = call_locked(db, req, resp);
    int broke = (st == QV_ERR_CONNECTION || st == QV_ERR_TIMEOUT) &&
                db->nends > 1;
    if (broke && op_kind_of(req->op_case) == OP_READS) {
        disconnect(db);
        quiver__v1__response__free_unpacked(*resp, &qv_protobuf_allocator);
        *resp = NULL;
        db->cur = (db->cur + 1) % db->nends;
        st = ensure_connected(db);
        if (st == QV_OK)
            st = call_locked(db, req, resp);
    } else if (broke) {
        char msg[QV_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", qv_error_message(&db->base));
        disconnect(db);
        db->cur = (db->cur + 1) % db->nends;
        qv_fail(&db->base, st, "%s; the write may or may not have been "
                "applied (it is not repeated on another node)", msg);
    }
    return st;
}

/* ---- operations ---- */

#define LOCKED_CALL(db, req, resp, body)                                  \
    do {                                                                  \
        pthread_mutex_lock(&(db)->lock);                                  \
        qv_status st_ = call((db), (req), &(resp));                       \
        if (st_ == QV_OK) {                                               \
            body                                                          \
        }                                                                 \
        quiver__v1__response__free_unpacked((resp), &qv_protobuf_allocator); \
        pthread_mutex_unlock(&(db)->lock);                                \
        return st_;                                                       \
    } while (0)

static qv_status wrong_result(remote_db *db)
{
    disconnect(db);
    return qv_fail(&db->base, QV_ERR_PROTOCOL, "the server's answer does not "
                   "fit the request");
}

static qv_status remote_create(qv_db *base, const char *name,
                               const qv_collection_config *config)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__CollectionConfig cfg = QUIVER__V1__COLLECTION_CONFIG__INIT;
    cfg.dim = config->dim;
    cfg.metric = (Quiver__V1__Metric)config->metric;
    cfg.m = config->M;
    cfg.ef_construction = config->ef_construction;
    cfg.codec = (char *)(config->codec ? config->codec : "");
    cfg.train_min = config->train_min;
    cfg.shards = config->shards;      /* for a cluster node to act on */
    cfg.replicas = config->replicas;
    Quiver__V1__CreateCollection m = QUIVER__V1__CREATE_COLLECTION__INIT;
    m.name = (char *)name;
    m.config = &cfg;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_CREATE_COLLECTION;
    req.create_collection = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status remote_drop(qv_db *base, const char *name)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__DropCollection m = QUIVER__V1__DROP_COLLECTION__INIT;
    m.name = (char *)name;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_DROP_COLLECTION;
    req.drop_collection = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static void info_from_wire(const Quiver__V1__CollectionInfo *in,
                           qv_collection_info *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", in->name);
    out->dim = in->dim;
    out->metric = (qv_metric)in->metric;
    out->count = in->count;
    out->M = in->m;
    out->ef_construction = in->ef_construction;
    out->disk_bytes = in->disk_bytes;
    out->memory_bytes = in->memory_bytes;
    snprintf(out->codec, sizeof out->codec, "%s",
             in->codec[0] ? in->codec : "none");
    out->codec_trained = in->codec_trained;
    out->train_min = in->train_min;
    out->code_bytes = in->code_bytes;
    out->shards = in->shards;
    out->replicas = in->replicas;
}

static qv_status remote_describe(qv_db *base, const char *name,
                                 qv_collection_info *info)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__DescribeCollection m = QUIVER__V1__DESCRIBE_COLLECTION__INIT;
    m.name = (char *)name;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_DESCRIBE_COLLECTION;
    req.describe_collection = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, {
        if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_INFO)
            st_ = wrong_result(db);
        else
            info_from_wire(resp->info, info);
    });
}

static qv_status list_from_wire(remote_db *db, const Response *resp,
                                qv_collection_info **out, size_t *count)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_LIST)
        return wrong_result(db);
    size_t n = resp->list->n_collections;
    qv_collection_info *list = n ? qv_calloc(n, sizeof *list) : NULL;
    if (n && !list)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        info_from_wire(resp->list->collections[i], &list[i]);
    *out = list;
    *count = n;
    return QV_OK;
}

static qv_status remote_list(qv_db *base, qv_collection_info **out,
                             size_t *count)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__ListCollections m = QUIVER__V1__LIST_COLLECTIONS__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_LIST_COLLECTIONS;
    req.list_collections = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, { st_ = list_from_wire(db, resp, out, count); });
}

static qv_status remote_upsert(qv_db *base, const char *collection,
                               const qv_doc *docs, size_t n)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Document *wd = qv_calloc(n, sizeof *wd);
    Quiver__V1__Document **ptrs = qv_calloc(n, sizeof *ptrs);
    if (!wd || !ptrs) {
        qv_mem_free(wd);
        qv_mem_free(ptrs);
        return qv_fail(base, QV_ERR_NOMEM, "out of memory for %zu documents",
                       n);
    }
    for (size_t i = 0; i < n; i++) {
        quiver__v1__document__init(&wd[i]);
        wd[i].id = (char *)docs[i].id;
        wd[i].n_vector = docs[i].dim;
        wd[i].vector = (float *)docs[i].vector;
        wd[i].has_payload = docs[i].payload != NULL;
        if (docs[i].payload)
            wd[i].payload = (char *)docs[i].payload;
        ptrs[i] = &wd[i];
    }
    Quiver__V1__Upsert m = QUIVER__V1__UPSERT__INIT;
    m.collection = (char *)collection;
    m.n_documents = n;
    m.documents = ptrs;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_UPSERT;
    req.upsert = &m;
    Response *resp;
    pthread_mutex_lock(&db->lock);
    qv_status st = call(db, &req, &resp);
    quiver__v1__response__free_unpacked(resp, &qv_protobuf_allocator);
    pthread_mutex_unlock(&db->lock);
    qv_mem_free(wd);
    qv_mem_free(ptrs);
    return st;
}

/* Whether a document from the server has a vector a collection could
 * hold (every collection has a dimension of 1 .. QV_DIM_MAX). */
static int vector_fits(const Quiver__V1__Document *d)
{
    return d->n_vector >= 1 && d->n_vector <= QV_DIM_MAX;
}

static qv_status record_from_wire(remote_db *db, const Response *resp,
                                  qv_record **out)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_DOCUMENT ||
        !vector_fits(resp->document))
        return wrong_result(db);
    const Quiver__V1__Document *d = resp->document;
    const char *payload = d->has_payload ? d->payload : NULL;
    *out = record_new(d->id, strlen(d->id), d->vector, (uint32_t)d->n_vector,
                      payload, payload ? strlen(payload) : 0);
    return *out ? QV_OK : qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
}

static qv_status remote_get(qv_db *base, const char *collection,
                            const char *id, qv_record **out)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Get m = QUIVER__V1__GET__INIT;
    m.collection = (char *)collection;
    m.id = (char *)id;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_GET;
    req.get = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, { st_ = record_from_wire(db, resp, out); });
}

static qv_status remote_delete(qv_db *base, const char *collection,
                               const char *id)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Delete m = QUIVER__V1__DELETE__INIT;
    m.collection = (char *)collection;
    m.id = (char *)id;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_DELETE;
    req.delete_ = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static Quiver__V1__SearchOptions options_to_wire(const qv_search_options *o)
{
    Quiver__V1__SearchOptions w = QUIVER__V1__SEARCH_OPTIONS__INIT;
    w.k = o->k;
    w.ef = o->ef;
    w.exact = o->exact != 0;
    w.threads = o->threads;
    w.with_payload = o->with_payload != 0;
    w.has_filter = o->filter != NULL;
    w.explain = o->explain != 0;
    w.rerank = o->rerank;
    w.no_rerank = o->no_rerank != 0;
    w.partial = o->partial != 0;
    if (o->filter)
        w.filter = (char *)o->filter;
    return w;
}

/* Bytes of the hits' ids and payloads, NULs included. */
static size_t hits_text(const Quiver__V1__Hits *h)
{
    size_t bytes = 0;
    for (size_t i = 0; i < h->n_hits; i++) {
        bytes += strlen(h->hits[i]->id) + 1;
        if (h->hits[i]->has_payload)
            bytes += strlen(h->hits[i]->payload) + 1;
    }
    return bytes;
}

static char *copy_text(char **text, const char *s)
{
    size_t len = strlen(s);
    char *at = memcpy(*text, s, len + 1);
    *text += len + 1;
    return at;
}

/* Whether h's missing shards are as the header promises: only when
 * partial was asked, ascending, each a shard number. */
static int missing_ok(const Quiver__V1__Hits *h, int partial)
{
    if (h->n_missing_shards > 0 && !partial)
        return 0;
    for (size_t i = 0; i < h->n_missing_shards; i++)
        if (h->missing_shards[i] >= QV_SHARDS_MAX ||
            (i > 0 && h->missing_shards[i] <= h->missing_shards[i - 1]))
            return 0;
    return 1;
}

/* out from h: hits into slots, missing shards at *shards, text at
 * *text (both cursors move past what was used). */
static void fill_hits(qv_hits *out, qv_hit *slots, const Quiver__V1__Hits *h,
                      uint32_t **shards, char **text)
{
    out->count = h->n_hits;
    out->hits = slots;
    out->explain = NULL;
    for (size_t i = 0; i < h->n_hits; i++) {
        slots[i].id = copy_text(text, h->hits[i]->id);
        slots[i].distance = h->hits[i]->distance;
        slots[i].payload = h->hits[i]->has_payload
                               ? copy_text(text, h->hits[i]->payload) : NULL;
    }
    out->missing_count = h->n_missing_shards;
    out->missing = h->n_missing_shards ? *shards : NULL;
    for (size_t i = 0; i < h->n_missing_shards; i++)
        *(*shards)++ = h->missing_shards[i];
}

static qv_status hits_from_wire(remote_db *db, const Response *resp,
                                const qv_search_options *options,
                                qv_hits **out)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_HITS ||
        resp->hits->n_hits > options->k ||   /* the header: at most k */
        !missing_ok(resp->hits, options->partial))
        return wrong_result(db);
    const Quiver__V1__Hits *h = resp->hits;
    size_t explain = h->explain[0] ? strlen(h->explain) + 1 : 0;
    qv_hits *hits = qv_malloc(sizeof *hits + h->n_hits * sizeof(qv_hit) +
                              h->n_missing_shards * sizeof(uint32_t) +
                              hits_text(h) + explain);
    if (!hits)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for hits");
    uint32_t *shards = (uint32_t *)((qv_hit *)(hits + 1) + h->n_hits);
    char *text = (char *)(shards + h->n_missing_shards);
    fill_hits(hits, (qv_hit *)(hits + 1), h, &shards, &text);
    if (explain)
        hits->explain = copy_text(&text, h->explain);
    *out = hits;
    return QV_OK;
}

static qv_status remote_search(qv_db *base, const char *collection,
                               const float *query, uint32_t dim,
                               const qv_search_options *options, qv_hits **out)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__SearchOptions opt = options_to_wire(options);
    Quiver__V1__Search m = QUIVER__V1__SEARCH__INIT;
    m.collection = (char *)collection;
    m.n_query = dim;
    m.query = (float *)query;
    m.options = &opt;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_SEARCH;
    req.search = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp,
                { st_ = hits_from_wire(db, resp, options, out); });
}

static qv_status batch_from_wire(remote_db *db, const Response *resp,
                                 size_t nq, const qv_search_options *options,
                                 qv_batch_hits **out)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_BATCH ||
        resp->batch->n_results != nq)
        return wrong_result(db);
    const Quiver__V1__HitsBatch *b = resp->batch;
    size_t total = 0, missing = 0, text = 0;
    for (size_t i = 0; i < nq; i++) {
        if (b->results[i]->n_hits > options->k ||
            !missing_ok(b->results[i], options->partial))
            return wrong_result(db);
        total += b->results[i]->n_hits;
        missing += b->results[i]->n_missing_shards;
        text += hits_text(b->results[i]);
    }
    qv_batch_hits *res = qv_malloc(sizeof *res + nq * sizeof(qv_hits) +
                                   total * sizeof(qv_hit) +
                                   missing * sizeof(uint32_t) + text);
    if (!res)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for hits");
    res->count = nq;
    res->results = (qv_hits *)(res + 1);
    qv_hit *slots = (qv_hit *)(res->results + nq);
    uint32_t *shards = (uint32_t *)(slots + total);
    char *p = (char *)(shards + missing);
    for (size_t i = 0; i < nq; i++) {
        fill_hits(&res->results[i], slots, b->results[i], &shards, &p);
        slots += b->results[i]->n_hits;
    }
    *out = res;
    return QV_OK;
}

static qv_status remote_search_batch(qv_db *base, const char *collection,
                                     const float *queries, size_t nq,
                                     uint32_t dim,
                                     const qv_search_options *options,
                                     qv_batch_hits **out)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__SearchOptions opt = options_to_wire(options);
    Quiver__V1__SearchBatch m = QUIVER__V1__SEARCH_BATCH__INIT;
    m.collection = (char *)collection;
    m.dim = dim;
    m.n_queries = nq * dim;
    m.queries = (float *)queries;
    m.options = &opt;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_SEARCH_BATCH;
    req.search_batch = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp,
                { st_ = batch_from_wire(db, resp, nq, options, out); });
}

static qv_status page_from_wire(remote_db *db, const Response *resp,
                                uint32_t limit, qv_page **out)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_PAGE ||
        resp->page->n_documents > limit)
        return wrong_result(db);
    const Quiver__V1__Page *p = resp->page;
    record_src *src = qv_calloc(p->n_documents + 1, sizeof *src);
    if (!src)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for a page");
    uint32_t dim = p->n_documents ? (uint32_t)p->documents[0]->n_vector : 0;
    qv_status st = QV_OK;
    for (size_t i = 0; i < p->n_documents && st == QV_OK; i++) {
        const Quiver__V1__Document *d = p->documents[i];
        if (d->n_vector != dim || !vector_fits(d))
            st = wrong_result(db);
        src[i] = (record_src){d->id, strlen(d->id), d->vector,
                              d->has_payload ? d->payload : NULL,
                              d->has_payload ? strlen(d->payload) : 0};
    }
    if (st == QV_OK && !(*out = page_new(src, p->n_documents, dim, p->more)))
        st = qv_fail(&db->base, QV_ERR_NOMEM, "out of memory for a page");
    qv_mem_free(src);
    return st;
}

static qv_status remote_scan(qv_db *base, const char *collection,
                             const char *filter, const char *after,
                             uint32_t limit, qv_page **out)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Scan m = QUIVER__V1__SCAN__INIT;
    m.collection = (char *)collection;
    m.has_filter = filter != NULL;
    if (filter)
        m.filter = (char *)filter;
    m.has_after = after != NULL;
    if (after)
        m.after = (char *)after;
    m.limit = limit;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_SCAN;
    req.scan = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp,
                { st_ = page_from_wire(db, resp, limit, out); });
}

static qv_status remote_backup(qv_db *base, const char *dir)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Backup m = QUIVER__V1__BACKUP__INIT;
    m.dir = (char *)dir;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_BACKUP;
    req.backup = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status remote_create_index(qv_db *base, const char *collection,
                                     const char *field, qv_index_type type)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__CreateIndex m = QUIVER__V1__CREATE_INDEX__INIT;
    m.collection = (char *)collection;
    m.field = (char *)field;
    m.type = (Quiver__V1__IndexType)type;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_CREATE_INDEX;
    req.create_index = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status count_from_wire(remote_db *db, const Response *resp,
                                 uint64_t *count)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_COUNT)
        return wrong_result(db);
    *count = resp->count;
    return QV_OK;
}

static qv_status remote_delete_where(qv_db *base, const char *collection,
                                     const char *filter, uint64_t *deleted)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__DeleteWhere m = QUIVER__V1__DELETE_WHERE__INIT;
    m.collection = (char *)collection;
    m.filter = (char *)filter;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_DELETE_WHERE;
    req.delete_where = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, { st_ = count_from_wire(db, resp, deleted); });
}

static qv_status remote_count(qv_db *base, const char *collection,
                              const char *filter, uint64_t *count)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Count m = QUIVER__V1__COUNT__INIT;
    m.collection = (char *)collection;
    m.has_filter = filter != NULL;
    if (filter)
        m.filter = (char *)filter;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_COUNT;
    req.count = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, { st_ = count_from_wire(db, resp, count); });
}

/* The report comes with OK and with CORRUPT alike. */
static qv_status remote_check(qv_db *base, char **report)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Check m = QUIVER__V1__CHECK__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_CHECK;
    req.check = &m;
    Response *resp = NULL;
    pthread_mutex_lock(&db->lock);
    qv_status st = call(db, &req, &resp);
    if ((st == QV_OK || st == QV_ERR_CORRUPT) && resp &&
        resp->result_case == QUIVER__V1__RESPONSE__RESULT_REPORT) {
        *report = qv_strndup(resp->report, strlen(resp->report));
        if (!*report)
            st = qv_fail(base, QV_ERR_NOMEM, "out of memory");
    }
    quiver__v1__response__free_unpacked(resp, &qv_protobuf_allocator);
    pthread_mutex_unlock(&db->lock);
    return st;
}

static qv_status remote_compact(qv_db *base)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Compact m = QUIVER__V1__COMPACT__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_COMPACT;
    req.compact = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status remote_drop_index(qv_db *base, const char *collection,
                                   const char *field)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__DropIndex m = QUIVER__V1__DROP_INDEX__INIT;
    m.collection = (char *)collection;
    m.field = (char *)field;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_DROP_INDEX;
    req.drop_index = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status remote_train(qv_db *base, const char *collection)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Train m = QUIVER__V1__TRAIN__INIT;
    m.collection = (char *)collection;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TRAIN;
    req.train = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

/* ---- embedding tables ---- */

static qv_status remote_table_create(qv_db *base, const char *name,
                                     const qv_table_config *config)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__TableConfig cfg = QUIVER__V1__TABLE_CONFIG__INIT;
    cfg.rows = config->rows;
    cfg.dim = config->dim;
    cfg.method = (char *)(config->method ? config->method : "");
    cfg.optimizer = (uint32_t)config->optimizer;
    cfg.learning_rate = config->learning_rate;
    cfg.init = config->init;
    cfg.seed = config->seed;
    cfg.shards = config->shards;
    cfg.replicas = config->replicas;
    Quiver__V1__TableCreate m = QUIVER__V1__TABLE_CREATE__INIT;
    m.name = (char *)name;
    m.config = &cfg;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_CREATE;
    req.table_create = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status remote_table_drop(qv_db *base, const char *name)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__TableDrop m = QUIVER__V1__TABLE_DROP__INIT;
    m.name = (char *)name;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_DROP;
    req.table_drop = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static void table_info_from_wire(const Quiver__V1__TableInfo *in,
                                 qv_table_info *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", in->name);
    snprintf(out->method, sizeof out->method, "%s", in->method);
    out->rows = in->rows;
    out->dim = in->dim;
    out->optimizer = (qv_optimizer)in->optimizer;
    out->learning_rate = in->learning_rate;
    out->param_bytes = in->param_bytes;
    out->optimizer_bytes = in->optimizer_bytes;
    out->ratio = in->ratio;
    out->updates = in->updates;
    out->shards = in->shards;
    out->replicas = in->replicas;
}

static qv_status remote_table_describe(qv_db *base, const char *name,
                                       qv_table_info *info)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__TableDescribe m = QUIVER__V1__TABLE_DESCRIBE__INIT;
    m.name = (char *)name;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_DESCRIBE;
    req.table_describe = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, {
        if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_TABLE_INFO)
            st_ = wrong_result(db);
        else
            table_info_from_wire(resp->table_info, info);
    });
}

static qv_status table_list_from_wire(remote_db *db, const Response *resp,
                                      qv_table_info **out, size_t *count)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_TABLE_LIST)
        return wrong_result(db);
    size_t n = resp->table_list->n_tables;
    qv_table_info *list = n ? qv_calloc(n, sizeof *list) : NULL;
    if (n && !list)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        table_info_from_wire(resp->table_list->tables[i], &list[i]);
    *out = list;
    *count = n;
    return QV_OK;
}

static qv_status remote_list_tables(qv_db *base, qv_table_info **out,
                                    size_t *count)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__ListTables m = QUIVER__V1__LIST_TABLES__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_LIST_TABLES;
    req.list_tables = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp,
                { st_ = table_list_from_wire(db, resp, out, count); });
}

static qv_status index_list_from_wire(remote_db *db, const Response *resp,
                                      qv_index_info **out, size_t *count)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_INDEX_LIST)
        return wrong_result(db);
    size_t n = resp->index_list->n_indexes;
    qv_index_info *list = n ? qv_calloc(n, sizeof *list) : NULL;
    if (n && !list)
        return qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const Quiver__V1__IndexInfo *w = resp->index_list->indexes[i];
        snprintf(list[i].field, sizeof list[i].field, "%s", w->field);
        list[i].type = (qv_index_type)w->type;
    }
    *out = list;
    *count = n;
    return QV_OK;
}

static qv_status remote_list_indexes(qv_db *base, const char *collection,
                                     qv_index_info **out, size_t *count)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__ListIndexes m = QUIVER__V1__LIST_INDEXES__INIT;
    m.collection = (char *)collection;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_LIST_INDEXES;
    req.list_indexes = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp,
                { st_ = index_list_from_wire(db, resp, out, count); });
}

static qv_status remote_table_lookup(qv_db *base, const char *name,
                                     const uint64_t *ids, size_t n,
                                     uint32_t dim, float *out)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__TableLookup m = QUIVER__V1__TABLE_LOOKUP__INIT;
    m.name = (char *)name;
    m.ids = (uint64_t *)ids;
    m.n_ids = n;
    m.dim = dim;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_LOOKUP;
    req.table_lookup = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, {
        if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_ROWS ||
            resp->rows->n_values != n * dim)
            st_ = wrong_result(db);
        else
            memcpy(out, resp->rows->values, n * dim * sizeof *out);
    });
}

static qv_status remote_table_update(qv_db *base, const char *name,
                                     const uint64_t *ids, size_t n,
                                     uint32_t dim, const float *grads)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__TableUpdate m = QUIVER__V1__TABLE_UPDATE__INIT;
    m.name = (char *)name;
    m.ids = (uint64_t *)ids;
    m.n_ids = n;
    m.dim = dim;
    m.grads = (float *)grads;
    m.n_grads = n * dim;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_UPDATE;
    req.table_update = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status remote_table_load(qv_db *base, const char *name,
                                   uint64_t first, size_t n, uint32_t dim,
                                   const float *rows)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__TableLoad m = QUIVER__V1__TABLE_LOAD__INIT;
    m.name = (char *)name;
    m.first = first;
    m.dim = dim;
    m.rows = (float *)rows;
    m.n_rows = n * dim;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_LOAD;
    req.table_load = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status stats_from_wire(remote_db *db, const Response *resp,
                                 char **json)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_STATS_JSON)
        return wrong_result(db);
    *json = qv_strndup(resp->stats_json, strlen(resp->stats_json));
    return *json ? QV_OK : qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
}

static qv_status remote_stats(qv_db *base, char **json)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__Stats m = QUIVER__V1__STATS__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_STATS;
    req.stats = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, { st_ = stats_from_wire(db, resp, json); });
}

static qv_status cluster_from_wire(remote_db *db, const Response *resp,
                                   char **json)
{
    if (resp->result_case != QUIVER__V1__RESPONSE__RESULT_CLUSTER_JSON)
        return wrong_result(db);
    *json = qv_strndup(resp->cluster_json, strlen(resp->cluster_json));
    return *json ? QV_OK : qv_fail(&db->base, QV_ERR_NOMEM, "out of memory");
}

static qv_status remote_cluster_status(qv_db *base, char **json)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__ClusterStatus m = QUIVER__V1__CLUSTER_STATUS__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_CLUSTER_STATUS;
    req.cluster_status = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, { st_ = cluster_from_wire(db, resp, json); });
}

static qv_status remote_cluster_drain(qv_db *base, const char *node,
                                     int cancel)
{
    remote_db *db = (remote_db *)base;
    Quiver__V1__ClusterDrain m = QUIVER__V1__CLUSTER_DRAIN__INIT;
    Request req = QUIVER__V1__REQUEST__INIT;
    m.node = (char *)node;
    m.cancel = cancel != 0;
    req.op_case = QUIVER__V1__REQUEST__OP_CLUSTER_DRAIN;
    req.cluster_drain = &m;
    Response *resp;
    LOCKED_CALL(db, &req, resp, ;);
}

static qv_status remote_set_threads(qv_db *base, uint32_t threads)
{
    (void)threads;
    return qv_fail(base, QV_ERR_UNSUPPORTED, "index-build threads are the "
                   "server's setting (quiverd --threads)");
}

static qv_status remote_write_token(qv_db *base, uint64_t *token)
{
    remote_db *db = (remote_db *)base;
    pthread_mutex_lock(&db->lock);
    *token = db->read_after;
    pthread_mutex_unlock(&db->lock);
    return QV_OK;
}

static qv_status remote_read_after(qv_db *base, uint64_t token)
{
    remote_db *db = (remote_db *)base;
    pthread_mutex_lock(&db->lock);
    if (token > db->read_after)
        db->read_after = token;
    pthread_mutex_unlock(&db->lock);
    return QV_OK;
}

static qv_status remote_position_get(qv_db *base, const char *name,
                                     uint64_t *value)
{
    (void)name, (void)value;
    return qv_fail(base, QV_ERR_UNSUPPORTED, "log positions are kept by "
                   "the server's own handle, not over the protocol");
}

static qv_status remote_position_put(qv_db *base, const char *name,
                                     uint64_t value, int staged)
{
    (void)value, (void)staged;
    return remote_position_get(base, name, NULL);
}

static void remote_close(qv_db *base)
{
    remote_db *db = (remote_db *)base;
    disconnect(db);
    wbuf_release(&db->in);
    wbuf_release(&db->out);
    pthread_mutex_destroy(&db->lock);
    SSL_CTX_free(db->tls);
    qv_mem_free(db->token);
    qv_mem_free(db);
}

static const qv_db_ops remote_ops = {
    .close = remote_close,
    .create_collection = remote_create,
    .drop_collection = remote_drop,
    .describe_collection = remote_describe,
    .list_collections = remote_list,
    .upsert = remote_upsert,
    .get = remote_get,
    .delete_doc = remote_delete,
    .search = remote_search,
    .search_batch = remote_search_batch,
    .scan = remote_scan,
    .backup = remote_backup,
    .compact = remote_compact,
    .train = remote_train,
    .table_create = remote_table_create,
    .table_drop = remote_table_drop,
    .table_describe = remote_table_describe,
    .list_tables = remote_list_tables,
    .list_indexes = remote_list_indexes,
    .table_lookup = remote_table_lookup,
    .table_update = remote_table_update,
    .table_load = remote_table_load,
    .check = remote_check,
    .count = remote_count,
    .create_index = remote_create_index,
    .drop_index = remote_drop_index,
    .delete_where = remote_delete_where,
    .stats = remote_stats,
    .set_threads = remote_set_threads,
    .position_get = remote_position_get,
    .position_put = remote_position_put,
    .write_token = remote_write_token,
    .read_after = remote_read_after,
    .cluster_status = remote_cluster_status,
    .cluster_drain = remote_cluster_drain,
};

#define DEFAULT_PORT "7411"   /* quiverd's default --listen port */

/* One "HOST[:PORT]" or "[V6][:PORT]" of len bytes into e; the port is
 * 7411 when not given. */
static int parse_endpoint(const char *hp, size_t len, struct endpoint *e)
{
    const char *colon = memrchr(hp, ':', len);
    int bracketed = len > 0 && hp[len - 1] == ']';
    size_t n = colon && !bracketed ? (size_t)(colon - hp) : len;
    const char *h = hp, *port = n < len ? colon + 1 : DEFAULT_PORT;
    size_t plen = n < len ? len - n - 1 : strlen(DEFAULT_PORT);
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof e->host || plen == 0 || plen >= sizeof e->port)
        return -1;
    memcpy(e->host, h, n);
    e->host[n] = '\0';
    memcpy(e->port, port, plen);
    e->port[plen] = '\0';
    return strspn(e->port, "0123456789") == plen ? 0 : -1;
}

/* qv://HOST[:PORT][,HOST[:PORT]...] (qvs:// alike) into db->ends. */
static int parse_uri(const char *uri, remote_db *db)
{
    const char *p = strstr(uri, "://") + 3;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (db->nends == ENDPOINTS_MAX ||
            parse_endpoint(p, len, &db->ends[db->nends]) != 0)
            return -1;
        db->nends++;
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    return 0;
}

qv_status remote_open(const char *uri, const qv_open_options *opts,
                      qv_db **out)
{
    remote_db *db = qv_calloc(1, sizeof *db);
    if (!db)
        return qv_fail(NULL, QV_ERR_NOMEM, "out of memory opening %s", uri);
    db->base.ops = &remote_ops;
    db->base.flags = opts ? opts->flags : 0;
    db->s.fd = -1;
    db->timeout_ms = opts && opts->timeout_ms ? (int)opts->timeout_ms
                                              : DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&db->lock, NULL);
    qv_status st = QV_OK;
    char err[512];
    if (parse_uri(uri, db) != 0) {
        st = qv_fail(NULL, QV_ERR_INVALID, "'%s' is not qv://HOST[:PORT] or "
                     "qvs://HOST[:PORT] (or up to %d of HOST[:PORT] "
                     "separated by commas)", uri, ENDPOINTS_MAX);
    } else if (strncmp(uri, "qvs://", 6) == 0 &&
               !(db->tls = stream_client_context(opts ? opts->tls_ca_file
                                                      : NULL, err,
                                                 sizeof err))) {
        st = qv_fail(NULL, QV_ERR_INVALID, "%s", err);
    } else if (opts && opts->token &&
               !(db->token = qv_strndup(opts->token, strlen(opts->token)))) {
        st = qv_fail(NULL, QV_ERR_NOMEM, "out of memory");
    } else {
        st = ensure_connected(db);
        if (st != QV_OK) {  /* the message belongs to the handle being freed */
            char msg[QV_ERRMSG_MAX];
            snprintf(msg, sizeof msg, "%s", qv_error_message(&db->base));
            st = qv_fail(NULL, st, "%s", msg);
        }
    }
    if (st != QV_OK) {
        remote_close(&db->base);
        return st;
    }
    *out = &db->base;
    return QV_OK;
}
