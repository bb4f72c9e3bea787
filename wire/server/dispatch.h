/*
 * dispatch.h - the server side of the protocol: one request frame in, one
 * response frame out, through the public API on a database handle.
 *
 * Everything the server does with bytes from the network goes through
 * dispatch_frame, which is also the fuzz target's entry point.
 */
#ifndef QV_WIRE_SERVER_DISPATCH_H
#define QV_WIRE_SERVER_DISPATCH_H

#include "wire/proto/frame.h"
#include "db/quiver.h"

/* Per-connection protocol state. */
typedef struct dispatch_session {
    const char *token;   /* the server's token, or NULL for none */
    const char *backup_dir;  /* where backups may be written (an absolute
                                path), or NULL: backup is refused */
    int authenticated;
    int close_after;     /* set when the connection must be closed after the
                            response is sent */
} dispatch_session;

/*
 * Decode the request in payload, run it on db, append the response frame
 * to out. Never fails on bad bytes: those get a PROTOCOL response (and
 * close_after). Returns 0, or -1 when out of memory for the response.
 */
int dispatch_frame(qv_db *db, dispatch_session *session,
                   const uint8_t *payload, size_t len, wbuf *out);

/* Append a response with no request behind it (id 0), e.g. for a frame
 * over the size limit. */
int dispatch_error(wbuf *out, qv_status status, const char *message);

#endif
