/*
 * fuzz_remote.c - libFuzzer target: a hostile server. The input is what
 * a server answers; the client (wire/remote.c, through the public API)
 * must turn anything into a status and well-formed results, never a
 * crash, a hang or a leak.
 *
 * A server thread in the process listens on a loopback port. The input:
 *
 *   byte 0       bit 0: the client opens with a token (so it
 *                authenticates first, and again after each reconnect)
 *   then records [call:1][length:2, little-endian][bytes: length]
 *
 * The client makes the call each record names (of every kind the API
 * has: create, get, search, batch search, scan, list, describe, count,
 * check, stats, every table call, ...; byte mod their number), with
 * valid arguments. For each request frame it reads, the server answers
 * with the bytes of the next record (normally one response frame, but
 * anything: a truncated frame, several frames, a length over the
 * client's limit), then closes the connection unless those bytes end on
 * a frame boundary (else the client would wait out its timeout). The
 * client reconnects by itself at its next call.
 *
 * Past not crashing: every status must be one of qv_status, and results
 * must keep the header's promises (a search returns at most k hits, a
 * batch one result per query, a scan page at most limit records).
 *
 * FUZZ_REMOTE_SEEDS=DIR makes the target write its seed corpus instead:
 * one input per call, answered as a server would (fuzz/corpus/remote).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire/proto/frame.h"
#include "db/core/handle.h"
#include "db/quiver.h"
#include "wire/quiver.pb-c.h"

#define DIM 4
#define RESPONSE_MAX (1u << 30)   /* the client's limit (wire/remote.c) */

static int listener = -1;
static char uri[64];

/* The input's records, shared with the server thread. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static const unsigned char *in_p;
static size_t in_left;
static int serving;   /* a connection is open on the server's side */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_remote: %s\n", what);
    abort();
}

/* ---- the server ---- */

/* The next record's bytes (NULL when there is none); lock held. */
static const unsigned char *next_record(size_t *len)
{
    if (in_left < 3)
        return NULL;
    size_t n = (size_t)in_p[1] | (size_t)in_p[2] << 8;
    if (n > in_left - 3)
        n = in_left - 3;
    const unsigned char *bytes = in_p + 3;
    in_p += 3 + n;
    in_left -= 3 + n;
    *len = n;
    return bytes;
}

/* Whether bytes are whole frames, so that the client waits for nothing
 * more (a frame over its limit it refuses at once). */
static int whole_frames(const unsigned char *p, size_t len)
{
    while (len > 0) {
        const uint8_t *payload;
        size_t n;
        enum frame_result r = frame_peek(p, len, RESPONSE_MAX, &payload, &n);
        if (r == FRAME_TOO_LARGE)
            return 1;
        if (r == FRAME_MORE)
            return 0;
        p += FRAME_HEADER + n;
        len -= FRAME_HEADER + n;
    }
    return 1;
}

static int read_full(int fd, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Answer each request frame on fd with the next record, until the client
 * goes or the records do. */
static void serve(int fd)
{
    for (;;) {
        unsigned char head[FRAME_HEADER], body[4096];
        if (read_full(fd, head, sizeof head) != 0)
            return;
        size_t n = (size_t)head[0] << 24 | (size_t)head[1] << 16 |
                   (size_t)head[2] << 8 | head[3];
        while (n > 0) {   /* the request itself is not needed */
            size_t part = n < sizeof body ? n : sizeof body;
            if (read_full(fd, body, part) != 0)
                return;
            n -= part;
        }
        size_t len = 0;
        pthread_mutex_lock(&lock);
        const unsigned char *bytes = next_record(&len);
        pthread_mutex_unlock(&lock);
        if (!bytes || len == 0 ||
            send(fd, bytes, len, MSG_NOSIGNAL) != (ssize_t)len ||
            !whole_frames(bytes, len))
            return;
    }
}

static void *server_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&lock);
        serving = 1;
        pthread_mutex_unlock(&lock);
        serve(fd);
        close(fd);
        pthread_mutex_lock(&lock);
        serving = 0;
        pthread_cond_broadcast(&idle_cond);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void start_server(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) ||
        listen(listener, 16) ||
        getsockname(listener, (struct sockaddr *)&a, &alen))
        die("cannot listen on the loopback");
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%u", ntohs(a.sin_port));
    pthread_t t;
    if (pthread_create(&t, NULL, server_main, NULL) != 0)
        die("cannot start the server thread");
    pthread_detach(t);
}

/* ---- the client's calls ---- */

static qv_status known(qv_status st)
{
    if ((unsigned)st > QV_STATUS_LAST) {
        fprintf(stderr, "status %d is not a qv_status\n", (int)st);
        abort();
    }
    return st;
}

static const float vec[2 * DIM] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint64_t table_ids[2] = {1, 7};

static void call_create(qv_db *db)
{
    known(qv_create_collection(db, "c", &(qv_collection_config){.dim = DIM,
                                                                .codec =
                                                                    "sq8"}));
}

static void call_drop(qv_db *db) { known(qv_drop_collection(db, "c")); }

static void call_describe(qv_db *db)
{
    qv_collection_info info;
    known(qv_describe_collection(db, "c", &info));
}

static void call_list(qv_db *db)
{
    qv_collection_info *list = NULL;
    size_t n = 0;
    if (known(qv_list_collections(db, &list, &n)) == QV_OK)
        qv_free(list);
}

static void call_upsert(qv_db *db)
{
    qv_doc docs[2] = {{"a", vec, DIM, "{\"x\":1}"}, {"b", vec + DIM, DIM,
                                                      NULL}};
    known(qv_upsert(db, "c", docs, 2));
}

static void call_get(qv_db *db)
{
    qv_record *r = NULL;
    if (known(qv_get(db, "c", "a", &r)) == QV_OK) {
        if (!r->id || (r->dim && !r->vector))
            die("get returned a malformed record");
        qv_free(r);
    }
}

static void call_delete(qv_db *db) { known(qv_delete(db, "c", "a")); }

static void check_hits(const qv_hits *h, uint32_t k)
{
    if (h->count > k)
        die("a search returned more than k hits");
    for (size_t i = 0; i < h->count; i++) {
        if (!h->hits[i].id)
            die("a hit has no id");
    }
}

static void call_search(qv_db *db)
{
    qv_search_options o = {.k = 3, .with_payload = 1, .explain = 1,
                           .filter = "{\"x\":1}"};
    qv_hits *hits = NULL;
    if (known(qv_search(db, "c", vec, DIM, &o, &hits)) == QV_OK) {
        check_hits(hits, o.k);
        qv_free(hits);
    }
}

static void call_search_batch(qv_db *db)
{
    qv_search_options o = {.k = 2, .with_payload = 1};
    qv_batch_hits *b = NULL;
    if (known(qv_search_batch(db, "c", vec, 2, DIM, &o, &b)) == QV_OK) {
        if (b->count != 2)
            die("a batch search returned a result per query it was not "
                "asked");
        for (size_t i = 0; i < b->count; i++)
            check_hits(&b->results[i], o.k);
        qv_free(b);
    }
}

static void check_page(const qv_page *p, uint32_t limit)
{
    if (p->count > limit)
        die("a scan returned more than limit records");
    for (size_t i = 0; i < p->count; i++) {
        if (!p->records[i].id)
            die("a scanned record has no id");
    }
}

static void call_scan(qv_db *db)
{
    qv_page *p = NULL;
    if (known(qv_scan(db, "c", "a", 3, &p)) == QV_OK) {
        check_page(p, 3);
        qv_free(p);
    }
}

static void call_scan_where(qv_db *db)
{
    qv_page *p = NULL;
    if (known(qv_scan_where(db, "c", "{\"x\":1}", NULL, 2, &p)) == QV_OK) {
        check_page(p, 2);
        qv_free(p);
    }
}

static void call_backup(qv_db *db) { known(qv_backup(db, "/nonexistent")); }

static void call_create_index(qv_db *db)
{
    known(qv_create_index(db, "c", "x", QV_INDEX_INT));
}

static void call_drop_index(qv_db *db)
{
    known(qv_drop_index(db, "c", "x"));
}

static void call_count(qv_db *db)
{
    uint64_t n;
    known(qv_count(db, "c", "{\"x\":{\"$gt\":0}}", &n));
}

static void call_delete_where(qv_db *db)
{
    uint64_t n;
    known(qv_delete_where(db, "c", "{\"x\":1}", &n));
}

static void call_check(qv_db *db)
{
    char *report = NULL;
    known(qv_check(db, &report));
    qv_free(report);
}

static void call_compact(qv_db *db) { known(qv_compact(db)); }
static void call_train(qv_db *db) { known(qv_train(db, "c")); }

static void call_stats(qv_db *db)
{
    char *json = NULL;
    if (known(qv_stats(db, &json)) == QV_OK)
        qv_free(json);
}

static void call_table_create(qv_db *db)
{
    known(qv_table_create(db, "t", &(qv_table_config){.rows = 16,
                                                      .dim = DIM}));
}

static void call_table_drop(qv_db *db) { known(qv_table_drop(db, "t")); }

static void call_table_describe(qv_db *db)
{
    qv_table_info info;
    known(qv_table_describe(db, "t", &info));
}

static void call_table_lookup(qv_db *db)
{
    float out[2 * DIM];
    known(qv_table_lookup(db, "t", table_ids, 2, DIM, out));
}

static void call_table_update(qv_db *db)
{
    known(qv_table_update(db, "t", table_ids, 2, DIM, vec));
}

static void call_table_load(qv_db *db)
{
    known(qv_table_load(db, "t", 3, 2, DIM, vec));
}

static void call_list_tables(qv_db *db)
{
    qv_table_info *list = NULL;
    size_t n;
    if (known(qv_list_tables(db, &list, &n)) == QV_OK)
        qv_free(list);
}

static void call_list_indexes(qv_db *db)
{
    qv_index_info *list = NULL;
    size_t n;
    if (known(qv_list_indexes(db, "c", &list, &n)) == QV_OK)
        qv_free(list);
}

static void (*const calls[])(qv_db *) = {
    call_create, call_drop, call_describe, call_list, call_upsert, call_get,
    call_delete, call_search, call_search_batch, call_scan, call_scan_where,
    call_backup, call_create_index, call_drop_index, call_count,
    call_delete_where, call_check, call_compact, call_train, call_stats,
    call_table_create, call_table_drop, call_table_describe,
    call_table_lookup, call_table_update, call_table_load,
    call_list_tables, call_list_indexes,
};
#define NCALLS (sizeof calls / sizeof *calls)

/* ---- seeds: each call answered as a server would ---- */

static void save_seed(const char *dir, const char *name, int token,
                      unsigned call, Quiver__V1__Response *resp)
{
    wbuf out = {0};
    if (frame_append(&out, &resp->base) != 0 || out.len > 0xffff)
        die("a seed response");
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    unsigned char head[3] = {(unsigned char)call, (unsigned char)out.len,
                             (unsigned char)(out.len >> 8)};
    unsigned char flags = (unsigned char)token;
    if (!f || fwrite(&flags, 1, 1, f) != 1)
        die("writing a seed");
    if (token) {   /* the authentication's answer first */
        Quiver__V1__Response ok = QUIVER__V1__RESPONSE__INIT;
        wbuf auth = {0};
        ok.id = 1;
        frame_append(&auth, &ok.base);
        unsigned char ah[3] = {0, (unsigned char)auth.len, 0};
        fwrite(ah, 1, 3, f);
        fwrite(auth.data, 1, auth.len, f);
        wbuf_release(&auth);
    }
    if (fwrite(head, 1, 3, f) != 3 ||
        fwrite(out.data, 1, out.len, f) != out.len)
        die("writing a seed");
    fclose(f);
    wbuf_release(&out);
}

static void write_seeds(const char *dir)
{
    static const char *const names[NCALLS] = {
        "create", "drop", "describe", "list", "upsert", "get", "delete",
        "search", "search_batch", "scan", "scan_where", "backup",
        "create_index", "drop_index", "count", "delete_where", "check",
        "compact", "train", "stats", "table_create", "table_drop",
        "table_describe", "table_lookup", "table_update", "table_load",
        "list_tables", "list_indexes",
    };
    float v[2 * DIM] = {1, 2, 3, 4, 5, 6, 7, 8};
    Quiver__V1__CollectionInfo info = QUIVER__V1__COLLECTION_INFO__INIT;
    Quiver__V1__CollectionInfo *infos[1] = {&info};
    info.name = "c";
    info.dim = DIM;
    info.count = 2;
    info.codec = "sq8";
    Quiver__V1__CollectionList list = QUIVER__V1__COLLECTION_LIST__INIT;
    list.n_collections = 1;
    list.collections = infos;
    Quiver__V1__Document doc = QUIVER__V1__DOCUMENT__INIT;
    Quiver__V1__Document *docs[2] = {&doc, &doc};
    doc.id = "a";
    doc.n_vector = DIM;
    doc.vector = v;
    doc.payload = "{\"x\":1}";
    doc.has_payload = 1;
    Quiver__V1__Hit hit = QUIVER__V1__HIT__INIT;
    Quiver__V1__Hit *hitp[2] = {&hit, &hit};
    hit.id = "a";
    hit.distance = 0.5f;
    hit.payload = "{\"x\":1}";
    hit.has_payload = 1;
    Quiver__V1__Hits hits = QUIVER__V1__HITS__INIT;
    hits.n_hits = 2;
    hits.hits = hitp;
    hits.explain = "{\"plan\":\"graph walk\"}";
    Quiver__V1__Hits *hitsp[2] = {&hits, &hits};
    Quiver__V1__HitsBatch batch = QUIVER__V1__HITS_BATCH__INIT;
    batch.n_results = 2;
    batch.results = hitsp;
    Quiver__V1__Page page = QUIVER__V1__PAGE__INIT;
    page.n_documents = 2;
    page.documents = docs;
    page.more = 1;
    Quiver__V1__TableInfo tinfo = QUIVER__V1__TABLE_INFO__INIT;
    tinfo.name = "t";
    tinfo.method = "full";
    tinfo.rows = 16;
    tinfo.dim = DIM;
    Quiver__V1__TableInfo *tinfos[2] = {&tinfo, &tinfo};
    Quiver__V1__TableList tlist = QUIVER__V1__TABLE_LIST__INIT;
    tlist.n_tables = 2;
    tlist.tables = tinfos;
    Quiver__V1__IndexInfo ix = QUIVER__V1__INDEX_INFO__INIT;
    Quiver__V1__IndexInfo *ixs[2] = {&ix, &ix};
    ix.field = "a.b";
    ix.type = QUIVER__V1__INDEX_TYPE__INT;
    Quiver__V1__IndexList ilist = QUIVER__V1__INDEX_LIST__INIT;
    ilist.n_indexes = 2;
    ilist.indexes = ixs;
    Quiver__V1__Floats rows = QUIVER__V1__FLOATS__INIT;
    rows.n_values = 2 * DIM;
    rows.values = v;
    for (unsigned c = 0; c < NCALLS; c++) {
        Quiver__V1__Response r = QUIVER__V1__RESPONSE__INIT;
        r.id = 1;
        const char *n = names[c];
        if (!strcmp(n, "describe")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_INFO;
            r.info = &info;
        } else if (!strcmp(n, "list")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_LIST;
            r.list = &list;
        } else if (!strcmp(n, "get")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_DOCUMENT;
            r.document = &doc;
        } else if (!strcmp(n, "search")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_HITS;
            r.hits = &hits;
        } else if (!strcmp(n, "search_batch")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_BATCH;
            r.batch = &batch;
        } else if (!strncmp(n, "scan", 4)) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_PAGE;
            r.page = &page;
        } else if (!strcmp(n, "count") || !strcmp(n, "delete_where")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_COUNT;
            r.count = 2;
        } else if (!strcmp(n, "check")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_REPORT;
            r.report = "ok: 1 collections, 2 documents, 0 embedding tables "
                       "checked, 0 problems\n";
        } else if (!strcmp(n, "stats")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_STATS_JSON;
            r.stats_json = "{\"collections\":1}";
        } else if (!strcmp(n, "table_describe")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_TABLE_INFO;
            r.table_info = &tinfo;
        } else if (!strcmp(n, "list_tables")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_TABLE_LIST;
            r.table_list = &tlist;
        } else if (!strcmp(n, "list_indexes")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_INDEX_LIST;
            r.index_list = &ilist;
        } else if (!strcmp(n, "table_lookup")) {
            r.result_case = QUIVER__V1__RESPONSE__RESULT_ROWS;
            r.rows = &rows;
        }
        save_seed(dir, n, 0, c, &r);
        if (!strcmp(n, "get") || !strcmp(n, "search")) {
            char name[64];
            r.id = 2;   /* after the authentication's */
            snprintf(name, sizeof name, "%s_token", n);
            save_seed(dir, name, 1, c, &r);
        }
    }
    Quiver__V1__Response err = QUIVER__V1__RESPONSE__INIT;
    err.id = 1;
    err.status = QUIVER__V1__STATUS__NOT_FOUND;
    err.message = "collection 'c' does not exist";
    save_seed(dir, "error", 0, 2, &err);
    /* answers that break the header's promises: 4 hits for k = 3, 3
     * for k = 2 in a batch, 3 records for limit 2 */
    Quiver__V1__Hit *four[4] = {&hit, &hit, &hit, &hit};
    Quiver__V1__Response more = QUIVER__V1__RESPONSE__INIT;
    more.id = 1;
    hits.n_hits = 4;
    hits.hits = four;
    more.result_case = QUIVER__V1__RESPONSE__RESULT_HITS;
    more.hits = &hits;
    save_seed(dir, "search_over_k", 0, 7, &more);
    hits.n_hits = 3;
    more.result_case = QUIVER__V1__RESPONSE__RESULT_BATCH;
    more.batch = &batch;
    save_seed(dir, "search_batch_over_k", 0, 8, &more);
    Quiver__V1__Document *three[3] = {&doc, &doc, &doc};
    page.n_documents = 3;
    page.documents = three;
    more.result_case = QUIVER__V1__RESPONSE__RESULT_PAGE;
    more.page = &page;
    save_seed(dir, "scan_where_over_limit", 0, 10, &more);
}

/* ---- the target ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *seeds = getenv("FUZZ_REMOTE_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    start_server();
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1)
        return 0;
    pthread_mutex_lock(&lock);
    in_p = data + 1;
    in_left = size - 1;
    pthread_mutex_unlock(&lock);
    qv_db *db = NULL;
    qv_open_options o = {.token = data[0] & 1 ? "secret" : NULL,
                         .timeout_ms = 2000};
    if (known(qv_open(uri, &o, &db)) == QV_OK) {
        for (;;) {
            pthread_mutex_lock(&lock);
            const unsigned char *at = in_p;
            unsigned call = in_left >= 3 ? in_p[0] % NCALLS : NCALLS;
            pthread_mutex_unlock(&lock);
            if (call == NCALLS)
                break;
            calls[call](db);
            pthread_mutex_lock(&lock);
            if (in_p == at) {   /* no request reached the server: skip */
                size_t len;
                next_record(&len);
            }
            pthread_mutex_unlock(&lock);
        }
        qv_close(db);
    }
    /* the server must be done with this input before it goes */
    pthread_mutex_lock(&lock);
    while (serving)
        pthread_cond_wait(&idle_cond, &lock);
    in_p = NULL;
    in_left = 0;
    pthread_mutex_unlock(&lock);
    return 0;
}
