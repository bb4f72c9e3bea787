/*
 * server.h - quiverd: the database served over TCP (docs/PROTOCOL.md).
 */
#ifndef QV_WIRE_SERVER_SERVER_H
#define QV_WIRE_SERVER_SERVER_H

#include <stddef.h>

typedef struct server_config {
    const char *db_path;
    const char *listen;          /* "ADDR:PORT", "[v6]:PORT"; port 0 picks
                                    a free one */
    const char *token;           /* required of every client; NULL: none,
                                    then only loopback addresses may be used */
    unsigned threads;            /* index-build threads; 0 = one per CPU */
    size_t max_frame;            /* bytes of one frame */
    unsigned max_connections;
    unsigned max_inflight;       /* requests answered per read before the
                                    responses are written */
    int idle_timeout_ms;         /* no request for this long: close */
    int read_timeout_ms;         /* a frame not complete this long after
                                    its first byte: close */
    int auth_timeout_ms;         /* with a token: not authenticated this
                                    long after connecting: close */
    unsigned max_unauthenticated;  /* with a token: connections that have
                                      not authenticated yet */
    const char *backup_dir;      /* where clients' backups go (absolute),
                                    or NULL: backup requests are refused */
    const char *tls_cert;        /* PEM certificate chain and its key: */
    const char *tls_key;         /* TLS only; NULL: clear TCP */
    int vectors_in_memory;       /* QV_OPEN_VECTORS_IN_MEMORY */
    /* a cluster node (docs/CLUSTER.md) when cluster.servers is set */
    struct {
        const char *servers;     /* NATS URLs, comma-separated */
        const char *node;        /* this node's name */
        const char *advertise;   /* "HOST:PORT" the other nodes reach
                                    this one at; NULL: the address it
                                    listens on */
        const char *stream;      /* the write log's stream */
        int replicas;            /* the stream's, when this node creates it */
        const char *token;       /* NATS token, or NULL */
        const char *ca_file;     /* CAs for tls:// NATS URLs, or NULL */
    } cluster;
} server_config;

#define SERVER_DEFAULTS                                                   \
    {.listen = "127.0.0.1:7411", .max_frame = 64u << 20,                  \
     .max_connections = 256, .max_inflight = 64,                          \
     .idle_timeout_ms = 300000, .read_timeout_ms = 10000,                 \
     .auth_timeout_ms = 5000, .max_unauthenticated = 32,                  \
     .cluster = {.stream = "quiver", .replicas = 1}}

/*
 * Serve until SIGTERM or SIGINT, then stop accepting, finish the requests
 * already received, close the database. Prints "listening on ADDR:PORT"
 * on stdout once ready. Returns the process exit status.
 */
int server_run(const server_config *cfg);

#endif
