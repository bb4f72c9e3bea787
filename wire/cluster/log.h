/*
 * log.h - the cluster's write log: one NATS JetStream stream per database
 * (docs/CLUSTER.md). Entries are appended by any node and read back by
 * every node, in the stream's order, from any sequence on.
 *
 * The stream is the source of truth; JetStream replicates it (its own Raft)
 * and answers an append only once the entry is stored by a quorum of the
 * stream's replicas. A node keeps its own position in its database
 * (qv_position_*), so it reads with an ordered consumer that starts where
 * the database says, keeps no state in NATS and needs no acknowledgements.
 *
 * Every function returns 0, or -1 with a sentence in err (errlen bytes).
 */
#ifndef QV_WIRE_CLUSTER_LOG_H
#define QV_WIRE_CLUSTER_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct clog clog;
typedef struct clog_reader clog_reader;

typedef struct clog_config {
    const char *servers;   /* "nats://h1:4222,nats://h2:4222" */
    const char *token;     /* NATS token, or NULL */
    const char *ca_file;   /* PEM of CAs for tls:// servers, or NULL */
    const char *stream;    /* stream name: [A-Za-z0-9_-], 1..32 bytes */
    int replicas;          /* the stream's replicas when it is created */
    const char *node;      /* this node's name, for NATS's client list */
} clog_config;

/* Connect, then find the stream or create it. A stream of that name that
 * is not a Quiver log is refused. */
int clog_open(const clog_config *cfg, clog **out, char *err, size_t errlen);
void clog_close(clog *l);

/* The subjects of the stream are "quiver.STREAM." + a tail ([A-Za-z0-9_-]
 * tokens separated by '.'). The full subject of tail, in out. */
int clog_subject(const clog *l, const char *tail, char *out, size_t outlen);

/*
 * Append data as one entry on subject (from clog_subject). id names the
 * entry for JetStream's de-duplication: an append repeated with the same
 * id within the stream's window (two minutes) is stored once and answers
 * the first one's sequence. *seq is the entry's sequence (from 1).
 */
int clog_append(clog *l, const char *subject, const char *id,
                const void *data, size_t len, uint64_t *seq, char *err,
                size_t errlen);

/* The largest entry the NATS servers take (their max_payload, 1 MiB by
 * default), less room for the entry's headers. */
size_t clog_max_entry(clog *l);

/* The last sequence of the stream, 0 when it holds nothing. */
int clog_last_seq(clog *l, uint64_t *seq, char *err, size_t errlen);

/* Read every entry from sequence first on, in order. */
int clog_read_from(clog *l, uint64_t first, clog_reader **out, char *err,
                   size_t errlen);
void clog_reader_close(clog_reader *r);

typedef struct clog_entry {
    uint64_t seq;
    int64_t time_ns;       /* when the log stored it (Unix time) */
    const char *subject;
    const char *id;        /* the append's id, or "" */
    const void *data;
    size_t len;
    void *msg;             /* the NATS message behind it */
} clog_entry;

/*
 * The next entry into *e (release it with clog_entry_release): 0, 1 when
 * none came within timeout_ms, -1 on an error.
 */
int clog_next(clog_reader *r, int timeout_ms, clog_entry *e, char *err,
              size_t errlen);
void clog_entry_release(clog_entry *e);
/* How many entries r has received and not yet given out (0 on an error):
 * as many clog_next calls that do not wait. */
int clog_buffered(clog_reader *r);

/* The stream's replicas (as configured) and its name. */
int clog_replicas(const clog *l);
const char *clog_stream(const clog *l);

/* ---- a key-value bucket beside the log (JetStream KV) ---- */

typedef struct clog_kv clog_kv;

/* Find or create bucket ([A-Za-z0-9_-]), with the stream's replicas;
 * entries not rewritten within ttl_ms vanish. */
int clog_kv_open(clog *l, const char *bucket, int64_t ttl_ms, clog_kv **out,
                 char *err, size_t errlen);
void clog_kv_close(clog_kv *kv);
int clog_kv_put(clog_kv *kv, const char *key, const char *value, char *err,
                size_t errlen);
/* Put key only if the bucket holds none (a compare-and-set on the key's
 * revision 0, so of two racing creates one wins): 0, 1 when the key
 * exists, -1 on an error. */
int clog_kv_create(clog_kv *kv, const char *key, const char *value,
                   char *err, size_t errlen);
/* *value: the key's value (free() it), NULL when there is none. */
int clog_kv_get(clog_kv *kv, const char *key, char **value, char *err,
                size_t errlen);
/* The same, with the value's revision (0 with no value). */
int clog_kv_get_rev(clog_kv *kv, const char *key, char **value,
                    uint64_t *revision, char *err, size_t errlen);
/* Put key only if its value is still the one of revision (a
 * compare-and-set: of two updates from one revision, one wins): 0, 1
 * when the key has changed since, -1 on an error. */
int clog_kv_update(clog_kv *kv, const char *key, const char *value,
                   uint64_t revision, char *err, size_t errlen);
int clog_kv_delete(clog_kv *kv, const char *key, char *err, size_t errlen);
/* *keys: the bucket's keys (*n of them); release with clog_kv_keys_free. */
int clog_kv_keys(clog_kv *kv, char ***keys, int *n, char *err,
                 size_t errlen);
void clog_kv_keys_free(char **keys, int n);

#endif
