/*
 * stream.h - a connection's bytes, in clear over TCP or inside TLS
 * (OpenSSL), for the server and the client alike. Sockets are
 * non-blocking: a call that cannot go on says which readiness to wait
 * for, and the caller polls with its own deadline.
 */
#ifndef QV_WIRE_PROTO_STREAM_H
#define QV_WIRE_PROTO_STREAM_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct stream {
    int fd;
    SSL *ssl;      /* NULL: clear TCP */
} stream;

/* What stream_read, stream_write and stream_handshake return besides a
 * byte count (> 0) or 0 (the peer ended the stream). */
enum {
    STREAM_WANT_READ = -1,   /* wait until fd is readable, then call again */
    STREAM_WANT_WRITE = -2,  /* wait until fd is writable, then call again */
    STREAM_FAILED = -3,      /* broken: errno or the TLS error says why */
};

ssize_t stream_read(stream *s, void *buf, size_t len);
ssize_t stream_write(stream *s, const void *buf, size_t len);

/* Bytes TLS has decrypted already: read them before polling the fd. */
int stream_buffered(const stream *s);

/* One step of the TLS handshake: 1 done, or a STREAM_* value. */
int stream_handshake(stream *s);

/* The last TLS failure of this thread, for messages ("" when none). */
const char *stream_tls_error(char *buf, size_t len);

/* Free this thread's TLS state (error queue and the like) now, before
 * the thread signals that it is done: a process that exits right after
 * must not find it still allocated. */
void stream_thread_done(void);

/* Tell the peer we are done (TLS close_notify, one attempt, no waiting),
 * free the TLS state; the fd stays open. */
void stream_end_tls(stream *s);

/*
 * A server context from a PEM certificate chain and its key, TLS 1.2 at
 * least. NULL on failure, with the reason in err.
 */
SSL_CTX *stream_server_context(const char *cert_file, const char *key_file,
                               char *err, size_t err_len);

/*
 * A client context that verifies the server's certificate against
 * ca_file (PEM), or the system's trust store when ca_file is NULL.
 */
SSL_CTX *stream_client_context(const char *ca_file, char *err,
                               size_t err_len);

/*
 * Wrap fd in TLS: as the server (accepting) or as the client, which
 * checks that the certificate names host (a DNS name or an IP address)
 * and sends it as SNI. 0, or -1 when out of memory.
 */
int stream_tls_accept(stream *s, SSL_CTX *ctx);
int stream_tls_connect(stream *s, SSL_CTX *ctx, const char *host);

#endif
