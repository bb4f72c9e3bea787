/*
 * server.c - quiverd's accept loop and connections.
 *
 * One thread per connection, up to max_connections: the database handle is
 * thread-safe, searches on different connections run in parallel, and LMDB
 * serialises the writes. A connection reads whatever the socket holds,
 * answers every complete frame in it (up to max_inflight), and writes all
 * the responses with one call, so pipelined clients cost few syscalls.
 */
#include "wire/server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "wire/server/dispatch.h"
#include "wire/server/placement.h"
#include "wire/server/router.h"
#include "wire/proto/frame.h"
#include "db/quiver.h"
#include "wire/proto/stream.h"

#define READ_CHUNK (64u << 10)
#define POLL_SLICE_MS 200

static atomic_int stopping;
static int stop_pipe[2] = {-1, -1};

struct server {
    const server_config *cfg;
    qv_db *db;
    pthread_mutex_t lock;
    pthread_cond_t idle;     /* signalled when a connection ends */
    unsigned open;           /* connections */
    unsigned unauthenticated;  /* of those, not authenticated yet */
    unsigned refusing;       /* refusals being delivered */
    unsigned long next_conn;
    SSL_CTX *tls;            /* NULL: clear TCP */
    cluster_node *cluster;   /* NULL: not a cluster node */
    router *router;          /* a cluster node's sharded collections */
    coordinator *coordinator;  /* its placement changes */
};

struct conn {
    struct server *srv;
    stream s;
    unsigned long number;
    char peer[64];
    long long opened_ms;     /* when it was accepted */
    long long frame_ms;      /* when the first byte of the frame that is
                                partly in the buffer arrived */
    long long read_ms;       /* when the last bytes arrived */
    int awaiting_auth;       /* counted in srv->unauthenticated */
};

/* Refusals delivered at once; past this a refused socket is just closed. */
#define REFUSAL_HANDSHAKE_MS 1000
/* The first byte of a TLS connection: a handshake record. A frame in clear
 * starts with its length's high byte, 0 for any frame under 16 MiB. */
#define TLS_HANDSHAKE_RECORD 0x16

#define REFUSING_MAX 16
/* Why a connection that did not authenticate in time ends: the one reason
 * that is told to the client (compared by address). */
static const char auth_expired[] = "not authenticated in time";
/* How long a closing connection's unread bytes are drained. */
#define DRAIN_MS 1000
#define DRAIN_BYTES (256u << 10)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stopping, 1);
    if (stop_pipe[1] >= 0) {
        ssize_t rc = write(stop_pipe[1], "x", 1);
        (void)rc;
    }
}

static void peer_name(const struct sockaddr_storage *sa, char *out,
                      size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, len, sa->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host,
             port);
}

/* Wait until fd is ready for events, up to ms; 1 ready, 0 timeout or
 * stopping (when watch_stop), -1 error. */
static int wait_fd(int fd, short events, int ms, int watch_stop)
{
    for (int waited = 0; waited < ms; waited += POLL_SLICE_MS) {
        if (watch_stop && atomic_load(&stopping))
            return 0;
        struct pollfd p = {fd, events, 0};
        int slice = ms - waited < POLL_SLICE_MS ? ms - waited : POLL_SLICE_MS;
        int rc = poll(&p, 1, slice);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
    return 0;
}

/* Wait for what a stream call asked for; 1 ready, else as wait_fd. */
static int wait_stream(stream *s, ssize_t want, int ms, int watch_stop)
{
    return wait_fd(s->fd, want == STREAM_WANT_WRITE ? POLLOUT : POLLIN, ms,
                   watch_stop);
}

/* Write all of buf, waiting at most timeout_ms for each step. */
static int write_all(stream *s, const uint8_t *buf, size_t len,
                     int timeout_ms)
{
    while (len > 0) {
        ssize_t n = stream_write(s, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n == STREAM_WANT_READ || n == STREAM_WANT_WRITE) {
            if (wait_stream(s, n, timeout_ms, 0) != 1)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/*
 * Close after a last response: closing a socket whose peer's bytes are
 * still unread makes the kernel send a reset, which may destroy the
 * response before the client reads it. So: end our direction, read and
 * drop what the client still sends until it closes too (bounded in time
 * and bytes), then close.
 */
static void close_gently(stream *s)
{
    char sink[4096];
    size_t drained = 0;
    long long until = now_ms() + DRAIN_MS;
    int fd = s->fd;
    stream_end_tls(s);
    shutdown(fd, SHUT_WR);
    while (drained < DRAIN_BYTES) {
        long long left = until - now_ms();
        if (left <= 0 || wait_fd(fd, POLLIN, (int)left, 0) != 1)
            break;
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            break;
        if (n > 0)
            drained += (size_t)n;
    }
    close(fd);
}

/* An answer to no request (id 0), the last the connection sends. */
static void send_last(stream *s, qv_status status, const char *message)
{
    wbuf out = {0};
    if (dispatch_error(&out, status, message) == 0)
        write_all(s, out.data, out.len, 1000);
    wbuf_release(&out);
}

/* The last answer, then a gentle close. */
static void send_farewell(stream *s, qv_status status, const char *message)
{
    send_last(s, status, message);
    close_gently(s);
}

/*
 * The TLS handshake of a new connection, done by until (monotonic ms).
 * A client that speaks the protocol in clear is told, in clear, to use
 * TLS (and *answered set). Returns NULL, or why the connection ends.
 */
static const char *handshake(struct server *srv, stream *s, long long until,
                             int *answered)
{
    unsigned char first;
    long long left = until - now_ms();
    if (left <= 0 || wait_fd(s->fd, POLLIN, (int)left, 1) != 1)
        return atomic_load(&stopping) ? "server stopping"
                                      : "no TLS handshake in time";
    ssize_t n = recv(s->fd, &first, 1, MSG_PEEK);
    if (n <= 0)
        return "client closed";
    if (first != TLS_HANDSHAKE_RECORD) {
        send_last(s, QV_ERR_PROTOCOL, "this server speaks TLS: connect with "
                  "qvs://HOST:PORT");
        *answered = 1;
        return "a client without TLS";
    }
    if (stream_tls_accept(s, srv->tls) != 0)
        return "out of memory";
    for (;;) {
        int rc = stream_handshake(s);
        if (rc == 1)
            return NULL;
        left = until - now_ms();
        if (rc == STREAM_FAILED)
            return "TLS handshake failed";
        if (left <= 0 || wait_stream(s, rc, (int)left, 1) != 1)
            return atomic_load(&stopping) ? "server stopping"
                                          : "no TLS handshake in time";
    }
}

/* The connection no longer counts as waiting to authenticate. */
static void stop_awaiting_auth(struct conn *c)
{
    if (!c->awaiting_auth)
        return;
    pthread_mutex_lock(&c->srv->lock);
    c->srv->unauthenticated--;
    pthread_mutex_unlock(&c->srv->lock);
    c->awaiting_auth = 0;
}

/*
 * Answer the complete frames in in, up to max_inflight, into out.
 * Returns how many; sets *why when the connection must close.
 */
static unsigned answer_frames(struct conn *c, dispatch_session *sess,
                              wbuf *in, wbuf *out, const char **why)
{
    const server_config *cfg = c->srv->cfg;
    unsigned handled = 0;
    while (handled < cfg->max_inflight && !*why) {
        const uint8_t *payload;
        size_t len;
        enum frame_result r = frame_peek(in->data, in->len, cfg->max_frame,
                                         &payload, &len);
        if (r == FRAME_MORE)
            break;
        if (r == FRAME_TOO_LARGE) {
            char msg[128];
            snprintf(msg, sizeof msg, "frame length exceeds the limit of %zu "
                     "bytes", cfg->max_frame);
            dispatch_error(out, QV_ERR_PROTOCOL, msg);
            *why = "frame over the size limit";
            break;
        }
        if (dispatch_frame(c->srv->db, sess, payload, len, out) != 0) {
            *why = "out of memory";
            break;
        }
        wbuf_consume(in, FRAME_HEADER + len);
        /* what follows arrived with the last read at the latest */
        c->frame_ms = c->read_ms;
        handled++;
        if (sess->authenticated)
            stop_awaiting_auth(c);
        if (sess->close_after)
            *why = sess->authenticated || !sess->token
                       ? "protocol error" : "not authenticated";
    }
    return handled;
}

/*
 * How long the next wait for bytes may last (ms, 0 when the time is up)
 * and what closes the connection when it runs out: the idle timeout
 * between frames, the read timeout from a frame's first byte (however
 * slowly the rest trickles in), and the authentication deadline from the
 * connection's start.
 */
static long long wait_budget(const struct conn *c, const wbuf *in,
                             const char **expiry)
{
    const server_config *cfg = c->srv->cfg;
    long long now = now_ms(), until;
    if (in->len > 0) {
        until = c->frame_ms + cfg->read_timeout_ms;
        *expiry = "read timeout inside a frame";
    } else {
        until = now + cfg->idle_timeout_ms;
        *expiry = "idle timeout";
    }
    if (c->awaiting_auth && c->opened_ms + cfg->auth_timeout_ms < until) {
        until = c->opened_ms + cfg->auth_timeout_ms;
        *expiry = auth_expired;
    }
    return until > now ? until - now : 0;
}

/* Read what the socket has into in; returns NULL or why to close. A read
 * is tried first and the connection waited on only when it has nothing:
 * a busy client's next request is usually there already. */
static const char *read_some(struct conn *c, wbuf *in)
{
    if (wbuf_reserve(in, READ_CHUNK) != 0)
        return "out of memory";
    ssize_t n = stream_read(&c->s, in->data + in->len, READ_CHUNK);
    if (n == STREAM_WANT_READ || n == STREAM_WANT_WRITE) {
        const char *expiry;
        long long budget = wait_budget(c, in, &expiry);
        int ready = budget == 0 ? 0
                    : wait_stream(&c->s, n, budget > INT_MAX ? INT_MAX
                                                             : (int)budget,
                                  in->len == 0);
        if (ready == 0)
            return atomic_load(&stopping) ? "server stopping" : expiry;
        if (ready < 0)
            return "poll failure";
        return NULL;  /* read on the next round */
    }
    if (n == 0)
        return in->len > 0 ? "client closed inside a frame" : "client closed";
    if (n < 0)
        return "read error";
    c->read_ms = now_ms();
    if (in->len == 0)
        c->frame_ms = c->read_ms;
    in->len += (size_t)n;
    return NULL;
}

/* Close a connection that ended for why: a client that is told why (a
 * last response was sent) gets the gentle close. */
static void end_connection(struct conn *c, const char *why, int answered)
{
    char msg[96];
    if (why == auth_expired) {
        snprintf(msg, sizeof msg, "authenticate within %d s of connecting",
                 c->srv->cfg->auth_timeout_ms / 1000);
        send_farewell(&c->s, QV_ERR_UNAUTHENTICATED, msg);
    } else if (answered) {
        close_gently(&c->s);
    } else {
        stream_end_tls(&c->s);
        close(c->s.fd);
    }
    fprintf(stderr, "quiverd: connection %lu from %s closed: %s\n", c->number,
            c->peer, why);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct server *srv = c->srv;
    dispatch_session sess = {.token = srv->cfg->token,
                             .backup_dir = srv->cfg->backup_dir,
                             .cluster = srv->cluster,
                             .router = srv->router};
    wbuf in = {0}, out = {0};
    const char *why = NULL;
    int answered = 0;  /* the last thing sent told the client why */
    if (srv->tls) {
        const server_config *cfg = srv->cfg;
        int ms = cfg->token && cfg->auth_timeout_ms < cfg->read_timeout_ms
                     ? cfg->auth_timeout_ms : cfg->read_timeout_ms;
        why = handshake(srv, &c->s, c->opened_ms + ms, &answered);
    }
    while (!why) {
        unsigned handled = answer_frames(c, &sess, &in, &out, &why);
        if (out.len > 0) {
            if (write_all(&c->s, out.data, out.len,
                          srv->cfg->read_timeout_ms))
                why = "write failed";
            else
                answered = why != NULL;
            out.len = 0;
        }
        if (why || handled == srv->cfg->max_inflight)
            continue;  /* more frames may be waiting in the buffer */
        if (atomic_load(&stopping) && in.len == 0)
            why = "server stopping";
        else
            why = read_some(c, &in);
    }
    /* before the client can see the end: a client told to go that
     * connects again must find the slot free */
    stop_awaiting_auth(c);
    end_connection(c, why, answered);
    wbuf_release(&in);
    wbuf_release(&out);
    stream_thread_done();
    pthread_mutex_lock(&srv->lock);
    srv->open--;
    pthread_cond_signal(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    qv_mem_free(c);
    return NULL;
}

struct refusal {
    struct server *srv;
    stream s;
    char message[128];
};

static void *refusal_main(void *arg)
{
    struct refusal *r = arg;
    struct server *srv = r->srv;
    int answered = 0;
    const char *why = srv->tls ? handshake(srv, &r->s, now_ms() +
                                           REFUSAL_HANDSHAKE_MS, &answered)
                               : NULL;
    if (!why)
        send_farewell(&r->s, QV_ERR_BUSY, r->message);
    else if (answered)
        close_gently(&r->s);
    else {
        stream_end_tls(&r->s);
        close(r->s.fd);
    }
    qv_mem_free(r);
    stream_thread_done();
    pthread_mutex_lock(&srv->lock);
    srv->refusing--;
    pthread_cond_signal(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/*
 * Refuse a connection with a BUSY response, delivered by a thread of its
 * own (the gentle close may take a moment, and the accept loop must not
 * wait); when REFUSING_MAX refusals are under way already, just close.
 */
static void refuse_busy(struct server *srv, int fd, const char *peer,
                        const char *message)
{
    fprintf(stderr, "quiverd: refused %s: %s\n", peer, message);
    pthread_mutex_lock(&srv->lock);
    int room = srv->refusing < REFUSING_MAX;
    if (room)
        srv->refusing++;
    pthread_mutex_unlock(&srv->lock);
    struct refusal *r = room ? qv_calloc(1, sizeof *r) : NULL;
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (r) {
        *r = (struct refusal){.srv = srv, .s = {.fd = fd}};
        snprintf(r->message, sizeof r->message, "%s", message);
    }
    if (!r || pthread_create(&tid, &attr, refusal_main, r) != 0) {
        close(fd);
        qv_mem_free(r);
        if (room) {
            pthread_mutex_lock(&srv->lock);
            srv->refusing--;
            pthread_mutex_unlock(&srv->lock);
        }
    }
    pthread_attr_destroy(&attr);
}

/* Under the lock: why a new connection cannot be served now, or NULL
 * (and then it is counted). */
static const char *admit(struct server *srv, char *msg, size_t len)
{
    const server_config *cfg = srv->cfg;
    if (srv->open >= cfg->max_connections) {
        snprintf(msg, len, "the server has its limit of %u connections; "
                 "retry later", cfg->max_connections);
        return msg;
    }
    if (cfg->token && srv->unauthenticated >= cfg->max_unauthenticated) {
        snprintf(msg, len, "the server has its limit of %u connections "
                 "waiting to authenticate; retry later",
                 cfg->max_unauthenticated);
        return msg;
    }
    srv->open++;
    if (cfg->token)
        srv->unauthenticated++;
    return NULL;
}

static void accept_one(struct server *srv, int lfd)
{
    struct sockaddr_storage sa;
    socklen_t slen = sizeof sa;
    int fd = accept(lfd, (struct sockaddr *)&sa, &slen);
    if (fd < 0)
        return;
    char peer[64], msg[128];
    peer_name(&sa, peer, sizeof peer);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    pthread_mutex_lock(&srv->lock);
    const char *refusal = admit(srv, msg, sizeof msg);
    unsigned long number = ++srv->next_conn;
    unsigned open_now = srv->open;
    pthread_mutex_unlock(&srv->lock);
    if (refusal) {
        refuse_busy(srv, fd, peer, refusal);
        return;
    }
    struct conn *c = qv_calloc(1, sizeof *c);
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (c) {
        *c = (struct conn){.srv = srv, .s = {.fd = fd}, .number = number,
                           .opened_ms = now_ms(),
                           .awaiting_auth = srv->cfg->token != NULL};
        snprintf(c->peer, sizeof c->peer, "%s", peer);
    }
    if (!c || pthread_create(&tid, &attr, conn_main, c) != 0) {
        fprintf(stderr, "quiverd: cannot serve %s: out of resources\n", peer);
        close(fd);
        qv_mem_free(c);
        pthread_mutex_lock(&srv->lock);
        srv->open--;
        if (srv->cfg->token)
            srv->unauthenticated--;
        pthread_mutex_unlock(&srv->lock);
    } else {
        fprintf(stderr, "quiverd: connection %lu from %s opened (%u open)\n",
                number, peer, open_now);
    }
    pthread_attr_destroy(&attr);
}

/* Split "host:port" / "[v6]:port". */
static int split_address(const char *addr, char *host, size_t hlen,
                         char *port, size_t plen)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1])
        return -1;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hlen || strlen(colon + 1) >= plen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, plen, "%s", colon + 1);
    return 0;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >>
                24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

/* Bind and listen on cfg->listen; returns the socket or -1 (message
 * printed). */
static int open_listener(const server_config *cfg)
{
    char host[256], port[16];
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *res = NULL;
    if (split_address(cfg->listen, host, sizeof host, port, sizeof port)) {
        fprintf(stderr, "quiverd: --listen wants ADDR:PORT, not '%s'\n",
                cfg->listen);
        return -1;
    }
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "quiverd: %s: %s\n", cfg->listen, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    if (!is_loopback(res->ai_addr) && !cfg->token) {
        fprintf(stderr, "quiverd: %s is not a loopback address; serving it "
                "needs --token-file\n", cfg->listen);
        goto done;
    }
    if (!is_loopback(res->ai_addr) && !cfg->tls_cert)
        fprintf(stderr, "quiverd: warning: serving %s without TLS: the "
                "token and all data cross the network in clear; see "
                "--tls-cert and --tls-key\n", cfg->listen);
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
        listen(fd, 128) != 0) {
        fprintf(stderr, "quiverd: cannot listen on %s: %s\n", cfg->listen,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
done:
    freeaddrinfo(res);
    return fd;
}

static void print_listening(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char name[64] = "?";
    if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        peer_name(&sa, name, sizeof name);
    printf("listening on %s\n", name);
    fflush(stdout);
    fprintf(stderr, "quiverd: listening on %s\n", name);
}

static void install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Whether host is the unspecified address, which binds every interface
 * but reaches none from another machine. */
static int is_unspecified(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
           strcmp(host, "") == 0;
}

/* The address the other nodes reach this one at, in out: --advertise,
 * else the address lfd listens on, which must then not be the
 * unspecified one. 0, or -1 with a message printed. */
static int advertised_address(const server_config *cfg, int lfd, char *out,
                              size_t len)
{
    char host[256], port[16];
    const char *at = cfg->cluster.advertise;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    if (!at) {
        if (getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0) {
            fprintf(stderr, "quiverd: cluster: the listening address: %s\n",
                    strerror(errno));
            return -1;
        }
        peer_name(&sa, out, len);
        at = out;
    }
    char *end = NULL;
    long p = split_address(at, host, sizeof host, port, sizeof port) == 0
                 ? strtol(port, &end, 10) : 0;
    if (!end || *end || p < 1 || p > 65535 || strlen(at) >= len) {
        fprintf(stderr, "quiverd: --advertise wants HOST:PORT (a port of 1 "
                "to 65535, at most %zu bytes in all), not '%s'\n", len - 1,
                at);
        return -1;
    }
    if (is_unspecified(host)) {
        fprintf(stderr, "quiverd: cluster: the other nodes cannot reach "
                "this one at %s; give the address they reach it at with "
                "--advertise HOST:PORT\n", at);
        return -1;
    }
    if (at != out)
        snprintf(out, len, "%s", at);
    return 0;
}

/* With cfg->cluster.servers: become a node of that cluster, reached at
 * its advertised address. 0 or -1. */
static int join_cluster(struct server *srv, int lfd)
{
    const server_config *cfg = srv->cfg;
    uint64_t mark = 0;
    if (!cfg->cluster.servers) {
        if (qv_position_get(srv->db, NODE_MARK, &mark) != QV_OK) {
            fprintf(stderr, "quiverd: %s\n", qv_errmsg(srv->db));
            return -1;
        }
        if (mark != 0)
            fprintf(stderr, "quiverd: %s is a cluster node's replica of a "
                    "write log; start quiverd with --cluster (its data "
                    "comes from the log, and writes made alone would "
                    "part it from the other nodes)\n", cfg->db_path);
        return mark != 0 ? -1 : 0;
    }
    clog_config lc = {cfg->cluster.servers, cfg->cluster.token,
                      cfg->cluster.ca_file, cfg->cluster.stream,
                      cfg->cluster.replicas, cfg->cluster.node};
    char err[512], listen[64];   /* as a member record holds it */
    if (advertised_address(cfg, lfd, listen, sizeof listen) != 0)
        return -1;
    if (node_start(&lc, listen, srv->db, dispatch_apply, dispatch_merge,
                   &srv->cluster, err, sizeof err) != 0) {
        fprintf(stderr, "quiverd: cluster: %s\n", err);
        return -1;
    }
    /* nodes reach each other as clients do, with the same token; with
     * TLS, trusting the CA chain of this node's own certificate */
    srv->router = router_new(srv->cluster, srv->db, cfg->token,
                             cfg->tls_cert);
    if (!srv->router) {
        fprintf(stderr, "quiverd: cluster: out of memory\n");
        return -1;
    }
    node_set_context(srv->cluster, srv->router);
    srv->coordinator = coordinator_start(srv->router);
    if (!srv->coordinator) {
        fprintf(stderr, "quiverd: cluster: cannot start the coordinator\n");
        return -1;
    }
    return 0;
}

int server_run(const server_config *cfg)
{
    struct server srv = {.cfg = cfg};
    char err[512];
    int rc = 1;
    int lfd = open_listener(cfg);
    if (lfd < 0)
        return 2;
    if (cfg->tls_cert &&
        !(srv.tls = stream_server_context(cfg->tls_cert, cfg->tls_key, err,
                                          sizeof err))) {
        fprintf(stderr, "quiverd: %s\n", err);
        rc = 2;
        goto done;
    }
    qv_open_options oo = {.threads = cfg->threads,
                          .flags = cfg->vectors_in_memory
                                       ? QV_OPEN_VECTORS_IN_MEMORY : 0};
    if (qv_open(cfg->db_path, &oo, &srv.db) != QV_OK) {
        fprintf(stderr, "quiverd: %s\n", qv_errmsg(NULL));
        goto done;
    }
    if (join_cluster(&srv, lfd) != 0)
        goto done;
    if (pipe(stop_pipe) != 0) {
        fprintf(stderr, "quiverd: pipe: %s\n", strerror(errno));
        goto done;
    }
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.idle, NULL);
    install_signals();
    print_listening(lfd);
    while (!atomic_load(&stopping)) {
        struct pollfd p[2] = {{lfd, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
        if (poll(p, 2, -1) > 0 && (p[0].revents & POLLIN))
            accept_one(&srv, lfd);
    }
    close(lfd);
    lfd = -1;
    pthread_mutex_lock(&srv.lock);
    fprintf(stderr, "quiverd: stopping: finishing %u connections\n", srv.open);
    while (srv.open > 0 || srv.refusing > 0)
        pthread_cond_wait(&srv.idle, &srv.lock);
    pthread_mutex_unlock(&srv.lock);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    pthread_mutex_destroy(&srv.lock);
    pthread_cond_destroy(&srv.idle);
    rc = 0;
done:
    coordinator_stop(srv.coordinator);
    router_free(srv.router);
    node_stop(srv.cluster);
    qv_close(srv.db);
    SSL_CTX_free(srv.tls);
    if (lfd >= 0)
        close(lfd);
    if (rc == 0)
        fprintf(stderr, "quiverd: stopped\n");
    return rc;
}
