/*
 * log.c - the cluster's write log on NATS JetStream (log.h), through the
 * C client of Debian's libnats-dev.
 */
#include "wire/cluster/log.h"

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"

/* What a stream that Quiver made says of itself; another is refused. */
#define LOG_DESCRIPTION "quiver write log, format 1"
#define SUBJECT_ROOT "quiver."
#define STREAM_MAX 32
#define CONNECT_TIMEOUT_MS 5000
#define APPEND_WAIT_MS 10000
#define STREAM_WAIT_MS 30000
#define STREAM_RETRY_MS 250

struct clog {
    natsConnection *nc;
    jsCtx *js;
    int replicas;
    char stream[STREAM_MAX + 1];
    char all[STREAM_MAX + sizeof SUBJECT_ROOT + 2];   /* quiver.STREAM.> */
};

struct clog_reader {
    natsSubscription *sub;
};

/* err = "doing: NATS's text for s (its last error, when it has one)". */
static int nats_fail(natsStatus s, jsErrCode jerr, const char *doing,
                     char *err, size_t errlen)
{
    natsStatus last_s;
    const char *last = nats_GetLastError(&last_s);
    if (last_s != s)   /* the thread's last error is another, older one */
        last = NULL;
    if (jerr != 0)
        snprintf(err, errlen, "%s: %s (JetStream error %d)", doing,
                 last && *last ? last : natsStatus_GetText(s), (int)jerr);
    else
        snprintf(err, errlen, "%s: %s", doing,
                 last && *last ? last : natsStatus_GetText(s));
    return -1;
}

static int valid_token(const char *t, size_t max)
{
    size_t n = strlen(t);
    return n >= 1 && n <= max &&
           strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_-") == n;
}

#define SERVERS_MAX 16

/* Split "url1,url2" into copy (servers' bytes) and urls: how many, or -1
 * when there are more than SERVERS_MAX or one is empty. */
static int split_servers(const char *servers, char *copy, const char **urls)
{
    int n = 0;
    strcpy(copy, servers);
    for (char *p = copy, *next; p; p = next) {
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        if (!*p || n == SERVERS_MAX)
            return -1;
        urls[n++] = p;
    }
    return n;
}

static natsStatus connect_to(const clog_config *cfg, natsConnection **nc)
{
    natsOptions *o = NULL;
    const char *urls[SERVERS_MAX];
    char *copy = qv_malloc(strlen(cfg->servers) + 1);
    int n = copy ? split_servers(cfg->servers, copy, urls) : -1;
    natsStatus s = n > 0 ? natsOptions_Create(&o) : NATS_INVALID_ARG;
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, urls, n);
    if (s == NATS_OK && cfg->token)
        s = natsOptions_SetToken(o, cfg->token);
    if (s == NATS_OK && cfg->ca_file) {
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCATrustedCertificates(o, cfg->ca_file);
    }
    if (s == NATS_OK && cfg->node)
        s = natsOptions_SetName(o, cfg->node);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
    if (s == NATS_OK)   /* a node outlives restarts of its NATS servers */
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    qv_mem_free(copy);
    return s;
}

/* The stream as found: refused unless it is a Quiver log of this name. */
static int check_stream(const clog *l, const jsStreamInfo *si, char *err,
                        size_t errlen)
{
    const jsStreamConfig *c = si->Config;
    if (!c->Description || strcmp(c->Description, LOG_DESCRIPTION) != 0 ||
        c->SubjectsLen != 1 || strcmp(c->Subjects[0], l->all) != 0) {
        snprintf(err, errlen, "NATS stream '%s' exists but is not a Quiver "
                 "write log (its description is '%s'); choose another "
                 "stream name", l->stream,
                 c->Description ? c->Description : "");
        return -1;
    }
    return 0;
}

static int create_stream(clog *l, int replicas, char *err, size_t errlen)
{
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[1] = {l->all};
    sc.Name = l->stream;
    sc.Description = LOG_DESCRIPTION;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = replicas;
    sc.Retention = js_LimitsPolicy;   /* kept whole: docs/CLUSTER.md */
    sc.Duplicates = (int64_t)120 * 1000 * 1000 * 1000;   /* 2 min, in ns */
    sc.DenyDelete = true;
    sc.DenyPurge = true;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, l->js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    return s == NATS_OK ? 0 : nats_fail(s, jerr, "creating the stream", err,
                                        errlen);
}

/* Find the stream, or make it when there is none: 0, -1 with err, or 1
 * when JetStream could not answer (not ready yet: try again). */
static int find_or_create_stream(clog *l, int replicas, char *err,
                                 size_t errlen)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, l->js, l->stream, NULL, &jerr);
    int rc;
    if (s == NATS_OK) {
        rc = check_stream(l, si, err, errlen);   /* a final answer */
    } else if (jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND) {
        rc = create_stream(l, replicas, err, errlen) == 0 ? 0 : 1;
    } else {
        nats_fail(s, jerr, "looking up the stream", err, errlen);
        rc = 1;
    }
    jsStreamInfo_Destroy(si);
    return rc;
}

/* The stream, waiting up to STREAM_WAIT_MS for JetStream to answer: a
 * clustered JetStream elects its leader in the first seconds of a start
 * of the servers. */
static int open_stream(clog *l, int replicas, char *err, size_t errlen)
{
    int rc = 1;
    for (int waited = 0; rc == 1 && waited <= STREAM_WAIT_MS;
         waited += STREAM_RETRY_MS) {
        if (waited > 0) {
            struct timespec pause = {0, STREAM_RETRY_MS * 1000000L};
            nanosleep(&pause, NULL);
        }
        rc = find_or_create_stream(l, replicas, err, errlen);
    }
    return rc == 1 ? -1 : rc;
}

int clog_open(const clog_config *cfg, clog **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->servers || !*cfg->servers) {
        snprintf(err, errlen, "no NATS server given");
        return -1;
    }
    if (!cfg->stream || !valid_token(cfg->stream, STREAM_MAX)) {
        snprintf(err, errlen, "a stream name is 1 to %d bytes of "
                 "[A-Za-z0-9_-]", STREAM_MAX);
        return -1;
    }
    if (cfg->replicas < 1 || cfg->replicas > 5) {
        snprintf(err, errlen, "stream replicas must be 1 to 5, not %d",
                 cfg->replicas);
        return -1;
    }
    clog *l = qv_calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(l->stream, sizeof l->stream, "%s", cfg->stream);
    l->replicas = cfg->replicas;
    snprintf(l->all, sizeof l->all, SUBJECT_ROOT "%s.>", cfg->stream);
    int rc = -1;
    natsStatus s = connect_to(cfg, &l->nc);
    if (s != NATS_OK) {
        char doing[300];
        snprintf(doing, sizeof doing, "connecting to NATS at %s",
                 cfg->servers);
        nats_fail(s, 0, doing, err, errlen);
        goto done;
    }
    s = natsConnection_JetStream(&l->js, l->nc, NULL);
    if (s != NATS_OK) {
        nats_fail(s, 0, "opening JetStream", err, errlen);
        goto done;
    }
    rc = open_stream(l, cfg->replicas, err, errlen);
done:
    if (rc == 0)
        *out = l;
    else
        clog_close(l);
    return rc;
}

void clog_close(clog *l)
{
    if (!l)
        return;
    jsCtx_Destroy(l->js);
    natsConnection_Destroy(l->nc);
    qv_mem_free(l);
}

int clog_subject(const clog *l, const char *tail, char *out, size_t outlen)
{
    /* every token of tail [A-Za-z0-9_-]: no wildcard, no empty token */
    const char *p = tail;
    for (;;) {
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
        if (n == 0 || (p[n] != '.' && p[n] != '\0'))
            return -1;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    int n = snprintf(out, outlen, SUBJECT_ROOT "%s.%s", l->stream, tail);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

int clog_append(clog *l, const char *subject, const char *id,
                const void *data, size_t len, uint64_t *seq, char *err,
                size_t errlen)
{
    if (len > (size_t)INT32_MAX) {
        snprintf(err, errlen, "an entry of %zu bytes is too large", len);
        return -1;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.ExpectStream = l->stream;
    po.MaxWait = APPEND_WAIT_MS;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&ack, l->js, subject, data, (int)len, &po,
                              &jerr);
    if (s == NATS_OK)
        *seq = ack->Sequence;
    jsPubAck_Destroy(ack);
    return s == NATS_OK ? 0 : nats_fail(s, jerr, "appending to the log", err,
                                        errlen);
}

size_t clog_max_entry(clog *l)
{
    int64_t max = natsConnection_GetMaxPayload(l->nc);
    return max > 1024 ? (size_t)max - 1024 : 0;   /* headers: the id */
}

int clog_last_seq(clog *l, uint64_t *seq, char *err, size_t errlen)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, l->js, l->stream, NULL, &jerr);
    if (s == NATS_OK)
        *seq = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return s == NATS_OK ? 0 : nats_fail(s, jerr, "reading the stream's state",
                                        err, errlen);
}

int clog_read_from(clog *l, uint64_t first, clog_reader **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    clog_reader *r = qv_calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = l->stream;
    so.Ordered = true;   /* in order, no gaps, no acknowledgements */
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = first ? first : 1;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&r->sub, l->js, l->all, NULL, &so, &jerr);
    if (s != NATS_OK) {
        qv_mem_free(r);
        return nats_fail(s, jerr, "reading the log", err, errlen);
    }
    *out = r;
    return 0;
}

void clog_reader_close(clog_reader *r)
{
    if (!r)
        return;
    natsSubscription_Unsubscribe(r->sub);
    natsSubscription_Destroy(r->sub);
    qv_mem_free(r);
}

int clog_next(clog_reader *r, int timeout_ms, clog_entry *e, char *err,
              size_t errlen)
{
    natsMsg *msg = NULL;
    natsStatus s = natsSubscription_NextMsg(&msg, r->sub, timeout_ms);
    if (s == NATS_TIMEOUT)
        return 1;
    if (s != NATS_OK)
        return nats_fail(s, 0, "reading the log", err, errlen);
    jsMsgMetaData *meta = NULL;
    s = natsMsg_GetMetaData(&meta, msg);
    if (s != NATS_OK) {
        natsMsg_Destroy(msg);
        return nats_fail(s, 0, "reading an entry's sequence", err, errlen);
    }
    const char *id = "";
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK)
        id = "";
    *e = (clog_entry){meta->Sequence.Stream, meta->Timestamp,
                      natsMsg_GetSubject(msg), id,
                      natsMsg_GetData(msg),
                      (size_t)natsMsg_GetDataLength(msg), msg};
    jsMsgMetaData_Destroy(meta);
    return 0;
}

void clog_entry_release(clog_entry *e)
{
    natsMsg_Destroy(e->msg);
    e->msg = NULL;
}

int clog_buffered(clog_reader *r)
{
    int msgs = 0, bytes = 0;
    if (natsSubscription_GetPending(r->sub, &msgs, &bytes) != NATS_OK)
        return 0;
    return msgs;
}

int clog_replicas(const clog *l)
{
    return l->replicas;
}

const char *clog_stream(const clog *l)
{
    return l->stream;
}

/* ---- key-value bucket ---- */

struct clog_kv {
    kvStore *kv;
};

int clog_kv_open(clog *l, const char *bucket, int64_t ttl_ms, clog_kv **out,
                 char *err, size_t errlen)
{
    *out = NULL;
    clog_kv *kv = qv_calloc(1, sizeof *kv);
    if (!kv) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = bucket;
    kc.Description = LOG_DESCRIPTION;
    kc.History = 1;
    kc.TTL = ttl_ms * 1000000;   /* ns */
    kc.StorageType = js_FileStorage;
    kc.Replicas = l->replicas;
    natsStatus s = js_KeyValue(&kv->kv, l->js, bucket);
    if (s == NATS_NOT_FOUND)
        s = js_CreateKeyValue(&kv->kv, l->js, &kc);
    if (s != NATS_OK) {
        qv_mem_free(kv);
        return nats_fail(s, 0, "opening the key-value bucket", err, errlen);
    }
    *out = kv;
    return 0;
}

void clog_kv_close(clog_kv *kv)
{
    if (!kv)
        return;
    kvStore_Destroy(kv->kv);
    qv_mem_free(kv);
}

int clog_kv_put(clog_kv *kv, const char *key, const char *value, char *err,
                size_t errlen)
{
    uint64_t rev;
    natsStatus s = kvStore_Put(&rev, kv->kv, key, value, (int)strlen(value));
    return s == NATS_OK ? 0 : nats_fail(s, 0, "writing the key-value bucket",
                                        err, errlen);
}

/* Whether s failed a put's condition on the key's last revision:
 * JetStream's "wrong last sequence" (error 10071). */
static int condition_failed(natsStatus s)
{
    natsStatus last_s;
    const char *last = nats_GetLastError(&last_s);
    return last_s == s && last && strstr(last, "wrong last sequence");
}

int clog_kv_create(clog_kv *kv, const char *key, const char *value,
                   char *err, size_t errlen)
{
    uint64_t rev;
    natsStatus s = kvStore_CreateString(&rev, kv->kv, key, value);
    if (s == NATS_OK)
        return 0;
    if (condition_failed(s))   /* the key exists */
        return 1;
    return nats_fail(s, 0, "creating a key in the key-value bucket", err,
                     errlen);
}

int clog_kv_get(clog_kv *kv, const char *key, char **value, char *err,
                size_t errlen)
{
    uint64_t rev;
    return clog_kv_get_rev(kv, key, value, &rev, err, errlen);
}

int clog_kv_update(clog_kv *kv, const char *key, const char *value,
                   uint64_t revision, char *err, size_t errlen)
{
    uint64_t rev;
    natsStatus s = kvStore_UpdateString(&rev, kv->kv, key, value, revision);
    if (s == NATS_OK)
        return 0;
    if (condition_failed(s))   /* the key changed since */
        return 1;
    return nats_fail(s, 0, "updating a key in the key-value bucket", err,
                     errlen);
}

int clog_kv_get_rev(clog_kv *kv, const char *key, char **value,
                    uint64_t *revision, char *err, size_t errlen)
{
    *value = NULL;
    *revision = 0;
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, kv->kv, key);
    if (s == NATS_NOT_FOUND)
        return 0;
    if (s != NATS_OK)
        return nats_fail(s, 0, "reading the key-value bucket", err, errlen);
    int len = kvEntry_ValueLen(e);
    *revision = kvEntry_Revision(e);
    *value = malloc((size_t)len + 1);
    if (*value) {
        memcpy(*value, kvEntry_Value(e), (size_t)len);
        (*value)[len] = '\0';
    }
    kvEntry_Destroy(e);
    if (!*value)
        snprintf(err, errlen, "out of memory");
    return *value ? 0 : -1;
}

int clog_kv_delete(clog_kv *kv, const char *key, char *err, size_t errlen)
{
    natsStatus s = kvStore_Delete(kv->kv, key);
    return s == NATS_OK ? 0 : nats_fail(s, 0, "deleting from the key-value "
                                        "bucket", err, errlen);
}

int clog_kv_keys(clog_kv *kv, char ***keys, int *n, char *err, size_t errlen)
{
    kvKeysList list = {0};
    *keys = NULL;
    *n = 0;
    natsStatus s = kvStore_Keys(&list, kv->kv, NULL);
    if (s == NATS_NOT_FOUND)   /* an empty bucket */
        return 0;
    if (s != NATS_OK)
        return nats_fail(s, 0, "listing the key-value bucket", err, errlen);
    int rc = 0;
    *keys = calloc((size_t)list.Count + 1, sizeof **keys);
    for (int i = 0; *keys && i < list.Count; i++) {
        if (!((*keys)[i] = strdup(list.Keys[i])))
            rc = -1;
    }
    if (!*keys || rc != 0) {
        clog_kv_keys_free(*keys, list.Count);
        *keys = NULL;
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else {
        *n = list.Count;
    }
    kvKeysList_Destroy(&list);
    return rc;
}

void clog_kv_keys_free(char **keys, int n)
{
    for (int i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
}
