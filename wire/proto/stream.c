#include "wire/proto/stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* What an OpenSSL call's failure means for the caller. */
static int tls_outcome(SSL *ssl, int rc)
{
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return STREAM_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return STREAM_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return STREAM_FAILED;
    }
}

ssize_t stream_read(stream *s, void *buf, size_t len)
{
    if (s->ssl) {
        size_t got = 0;
        ERR_clear_error();
        int rc = SSL_read_ex(s->ssl, buf, len, &got);
        return rc == 1 ? (ssize_t)got : tls_outcome(s->ssl, rc);
    }
    ssize_t n = recv(s->fd, buf, len, MSG_DONTWAIT);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
               ? STREAM_WANT_READ : STREAM_FAILED;
}

ssize_t stream_write(stream *s, const void *buf, size_t len)
{
    if (s->ssl) {
        size_t put = 0;
        ERR_clear_error();
        int rc = SSL_write_ex(s->ssl, buf, len, &put);
        return rc == 1 ? (ssize_t)put : tls_outcome(s->ssl, rc);
    }
    ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
               ? STREAM_WANT_WRITE : STREAM_FAILED;
}

int stream_buffered(const stream *s)
{
    return s->ssl ? SSL_pending(s->ssl) : 0;
}

int stream_handshake(stream *s)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1)
        return 1;
    int outcome = tls_outcome(s->ssl, rc);
    return outcome == 0 ? STREAM_FAILED : outcome;
}

const char *stream_tls_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "%s", errno ? strerror(errno)
                                       : "the peer closed the connection");
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

void stream_thread_done(void)
{
    OPENSSL_thread_stop();
}

void stream_end_tls(stream *s)
{
    if (!s->ssl)
        return;
    ERR_clear_error();
    if (SSL_is_init_finished(s->ssl))  /* never after a failed handshake */
        SSL_shutdown(s->ssl);
    SSL_free(s->ssl);
    s->ssl = NULL;
}

static SSL_CTX *context(const SSL_METHOD *method, char *err, size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        snprintf(err, err_len, "cannot make a TLS context: %s",
                 ERR_error_string(ERR_get_error(), NULL));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* no retries inside SSL_read: the caller polls with its deadline */
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    return ctx;
}

/* Fail with what OpenSSL said about file, freeing ctx. */
static SSL_CTX *context_failed(SSL_CTX *ctx, const char *what,
                               const char *file, char *err, size_t err_len)
{
    char why[256];
    ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
    snprintf(err, err_len, "%s %s: %s", what, file, why);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *stream_server_context(const char *cert_file, const char *key_file,
                               char *err, size_t err_len)
{
    ERR_clear_error();
    SSL_CTX *ctx = context(TLS_server_method(), err, err_len);
    if (!ctx)
        return NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return context_failed(ctx, "TLS certificate", cert_file, err,
                              err_len);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) !=
            X509_R_KEY_VALUES_MISMATCH)
            return context_failed(ctx, "TLS key", key_file, err, err_len);
        snprintf(err, err_len, "TLS key %s does not match the certificate "
                 "%s", key_file, cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *stream_client_context(const char *ca_file, char *err,
                               size_t err_len)
{
    ERR_clear_error();
    SSL_CTX *ctx = context(TLS_client_method(), err, err_len);
    if (!ctx)
        return NULL;
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1)
        return context_failed(ctx, "TLS CA file", ca_file ? ca_file
                              : "(the system's)", err, err_len);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static int wrap(stream *s, SSL_CTX *ctx)
{
    s->ssl = SSL_new(ctx);
    if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1) {
        SSL_free(s->ssl);
        s->ssl = NULL;
        return -1;
    }
    return 0;
}

int stream_tls_accept(stream *s, SSL_CTX *ctx)
{
    if (wrap(s, ctx) != 0)
        return -1;
    SSL_set_accept_state(s->ssl);
    return 0;
}

/* The certificate must name host: as an IP address when it is one. */
static int expect_name(SSL *ssl, const char *host)
{
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 ||
                inet_pton(AF_INET6, host, addr) == 1;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
                   ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, host) != 1)
        return -1;
    return SSL_set1_host(ssl, host) == 1 ? 0 : -1;
}

int stream_tls_connect(stream *s, SSL_CTX *ctx, const char *host)
{
    if (wrap(s, ctx) != 0)
        return -1;
    SSL_set_connect_state(s->ssl);
    if (expect_name(s->ssl, host) != 0) {
        SSL_free(s->ssl);
        s->ssl = NULL;
        return -1;
    }
    return 0;
}
