#include "wire/server/dispatch.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "common/alloc.h"
#include "wire/proto/inspect.h"
#include "wire/proto/ops.h"
#include "wire/quiver.pb-c.h"
#include "wire/server/placement.h"
#include "wire/server/router.h"
#include "wire/server/table_router.h"

typedef Quiver__V1__Request Request;
typedef Quiver__V1__Response Response;

/* What a response points to and must be freed once it is packed. */
struct reply {
    Response resp;
    void *api_result;         /* from qv_get / qv_search / ... : qv_free */
    router_result *routed;    /* a search or scan across shards */
    void *scratch[4];         /* arrays built for the response: qv_mem_free */
    char text[640];           /* a message formatted for the response */
    union {
        Quiver__V1__CollectionInfo info;
        Quiver__V1__CollectionList list;
        Quiver__V1__Document doc;
        Quiver__V1__Hits hits;
        Quiver__V1__HitsBatch batch;
        Quiver__V1__Page page;
        Quiver__V1__TableInfo table;
        Quiver__V1__Floats floats;
        Quiver__V1__TableList tables;
        Quiver__V1__IndexList indexes;
    } u;
};

static void *reply_alloc(struct reply *r, size_t size)
{
    for (size_t i = 0; i < sizeof r->scratch / sizeof *r->scratch; i++) {
        if (!r->scratch[i])
            return r->scratch[i] = qv_calloc(1, size);
    }
    return NULL;
}

static void set_status(struct reply *r, qv_db *db, qv_status st)
{
    r->resp.status = (Quiver__V1__Status)st;
    if (st != QV_OK)
        r->resp.message = (char *)qv_errmsg(db);
}

static qv_status refuse(struct reply *r, qv_status st, const char *message)
{
    r->resp.status = (Quiver__V1__Status)st;
    r->resp.message = (char *)message;
    return st;
}

static qv_status nomem(struct reply *r)
{
    r->resp.status = QUIVER__V1__STATUS__NOMEM;
    r->resp.message = "out of memory building the response";
    return QV_ERR_NOMEM;
}

static void info_to_wire(const qv_collection_info *in,
                         Quiver__V1__CollectionInfo *out)
{
    quiver__v1__collection_info__init(out);
    out->name = (char *)in->name;
    out->dim = in->dim;
    out->metric = (Quiver__V1__Metric)in->metric;
    out->count = in->count;
    out->m = in->M;
    out->ef_construction = in->ef_construction;
    out->disk_bytes = in->disk_bytes;
    out->memory_bytes = in->memory_bytes;
    out->codec = (char *)in->codec;
    out->codec_trained = in->codec_trained != 0;
    out->train_min = in->train_min;
    out->code_bytes = in->code_bytes;
    out->shards = in->shards;
    out->replicas = in->replicas;
}

static qv_collection_config config_from_wire(
    const Quiver__V1__CollectionConfig *c)
{
    qv_collection_config cfg = {0};
    if (c) {
        cfg.dim = c->dim;
        cfg.metric = (qv_metric)c->metric;
        cfg.M = c->m;
        cfg.ef_construction = c->ef_construction;
        cfg.codec = c->codec[0] ? c->codec : NULL;
        cfg.train_min = c->train_min;
        cfg.shards = c->shards;
        cfg.replicas = c->replicas;
    }
    return cfg;
}

static qv_status do_create(qv_db *db, const Quiver__V1__CreateCollection *m)
{
    qv_collection_config cfg = config_from_wire(m->config);
    return qv_create_collection(db, m->name, &cfg);
}

/* Whether req is a create (of a collection or a table) that names the
 * nodes of its shards: only a cluster node writes placement, into its
 * log, whose entries dispatch_apply runs; dispatch_frame refuses it from
 * a client, on a cluster node or not. */
static int sets_placement(const Request *req)
{
    if (req->op_case == QUIVER__V1__REQUEST__OP_TABLE_CREATE)
        return req->table_create->config &&
               (req->table_create->config->n_placement > 0 ||
                req->table_create->config->shard_serial != 0);
    return req->op_case == QUIVER__V1__REQUEST__OP_CREATE_COLLECTION &&
           req->create_collection->config &&
           (req->create_collection->config->n_placement > 0 ||
            req->create_collection->config->shard_serial != 0 ||
            req->create_collection->config->placement_version != 0);
}

static qv_status do_describe(qv_db *db, const char *name, struct reply *r)
{
    qv_collection_info *info = qv_malloc(sizeof *info);
    if (!info)
        return nomem(r);
    r->api_result = info;
    qv_status st = qv_describe_collection(db, name, info);
    if (st == QV_OK) {
        info_to_wire(info, &r->u.info);
        r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_INFO;
        r->resp.info = &r->u.info;
    }
    return st;
}

/* The shards' own collections are not the user's: a list shows the
 * sharded collections (from the router) in their place. */
static int listed(const qv_collection_info *info)
{
    return strncmp(info->name, SHARD_PREFIX, strlen(SHARD_PREFIX)) != 0;
}

static qv_status do_list(qv_db *db, dispatch_session *s, uint64_t after,
                         struct reply *r)
{
    qv_collection_info *list = NULL, *sharded = NULL;
    size_t n = 0, ns = 0;
    qv_status st = qv_list_collections(db, &list, &n);
    if (st != QV_OK)
        return st;
    r->api_result = list;
    if (s->router) {
        st = router_list(s->router, after, &sharded, &ns, r->text,
                         sizeof r->text);
        if (st != QV_OK)
            return refuse(r, st, r->text);
        r->scratch[0] = sharded;
    }
    Quiver__V1__CollectionInfo *infos =
        reply_alloc(r, (n + ns + 1) * sizeof *infos);
    Quiver__V1__CollectionInfo **ptrs =
        reply_alloc(r, (n + ns + 1) * sizeof *ptrs);
    if (!infos || !ptrs)
        return nomem(r);
    size_t k = 0;
    for (size_t i = 0; i < n + ns; i++) {
        const qv_collection_info *in = i < n ? &list[i] : &sharded[i - n];
        if (!listed(in))
            continue;
        info_to_wire(in, &infos[k]);
        ptrs[k] = &infos[k];
        k++;
    }
    quiver__v1__collection_list__init(&r->u.list);
    r->u.list.n_collections = k;
    r->u.list.collections = ptrs;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_LIST;
    r->resp.list = &r->u.list;
    return QV_OK;
}

/* A document of the wire as the API takes it (a vector too long for the
 * API's dim is given as dimension 0: refused). */
static qv_doc doc_of(const Quiver__V1__Document *d)
{
    qv_doc doc = {d->id, d->vector, (uint32_t)d->n_vector,
                  d->has_payload ? d->payload : NULL};
    if (d->n_vector > UINT32_MAX)
        doc.dim = 0;
    return doc;
}

static qv_status do_upsert(qv_db *db, const Quiver__V1__Upsert *m,
                           struct reply *r)
{
    qv_doc *docs = reply_alloc(r, (m->n_documents + 1) * sizeof *docs);
    if (!docs)
        return nomem(r);
    for (size_t i = 0; i < m->n_documents; i++)
        docs[i] = doc_of(m->documents[i]);
    return qv_upsert(db, m->collection, docs, m->n_documents);
}

static void doc_to_wire(const qv_record *r, Quiver__V1__Document *d);

static qv_status do_get(qv_db *db, const Quiver__V1__Get *m, struct reply *r)
{
    qv_record *rec = NULL;
    qv_status st = qv_get(db, m->collection, m->id, &rec);
    if (st != QV_OK)
        return st;
    r->api_result = rec;
    doc_to_wire(rec, &r->u.doc);
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_DOCUMENT;
    r->resp.document = &r->u.doc;
    return QV_OK;
}

static qv_search_options options_from_wire(const Quiver__V1__SearchOptions *o)
{
    qv_search_options opt = {0};
    if (o) {
        opt.k = o->k;
        opt.ef = o->ef;
        opt.exact = o->exact;
        opt.threads = o->threads;
        opt.with_payload = o->with_payload;
        opt.filter = o->has_filter ? o->filter : NULL;
        opt.explain = o->explain;
        opt.rerank = o->rerank;
        opt.no_rerank = o->no_rerank;
        opt.partial = o->partial;
    }
    return opt;
}

/* Wire form of one qv_hits into out, with hit storage from the reply. */
static int hits_to_wire(struct reply *r, const qv_hits *in,
                        Quiver__V1__Hits *out, Quiver__V1__Hit *slots,
                        Quiver__V1__Hit **ptrs)
{
    quiver__v1__hits__init(out);
    for (size_t i = 0; i < in->count; i++) {
        quiver__v1__hit__init(&slots[i]);
        slots[i].id = (char *)in->hits[i].id;
        slots[i].distance = in->hits[i].distance;
        slots[i].has_payload = in->hits[i].payload != NULL;
        if (in->hits[i].payload)
            slots[i].payload = (char *)in->hits[i].payload;
        ptrs[i] = &slots[i];
    }
    out->n_hits = in->count;
    out->hits = ptrs;
    out->n_missing_shards = in->missing_count;
    out->missing_shards = (uint32_t *)in->missing;
    (void)r;
    return 0;
}

/* The response of a search: hits (kept by the caller until sent). */
static qv_status reply_hits(struct reply *r, const qv_hits *hits)
{
    Quiver__V1__Hit *slots = reply_alloc(r, (hits->count + 1) * sizeof *slots);
    Quiver__V1__Hit **ptrs = reply_alloc(r, (hits->count + 1) * sizeof *ptrs);
    if (!slots || !ptrs)
        return nomem(r);
    hits_to_wire(r, hits, &r->u.hits, slots, ptrs);
    if (hits->explain)
        r->u.hits.explain = (char *)hits->explain;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_HITS;
    r->resp.hits = &r->u.hits;
    return QV_OK;
}

static qv_status do_search(qv_db *db, const Quiver__V1__Search *m,
                           struct reply *r)
{
    qv_search_options opt = options_from_wire(m->options);
    qv_hits *hits = NULL;
    uint32_t dim = m->n_query > UINT32_MAX ? 0 : (uint32_t)m->n_query;
    qv_status st = qv_search(db, m->collection, m->query, dim, &opt, &hits);
    if (st != QV_OK)
        return st;
    r->api_result = hits;
    return reply_hits(r, hits);
}

static qv_status reply_batch(struct reply *r, const qv_batch_hits *b);

/* Whether a batch's queries are a whole number of vectors: else INVALID
 * in r. */
static int batch_shape_ok(const Quiver__V1__SearchBatch *m, struct reply *r)
{
    if (m->dim != 0 && m->n_queries % m->dim == 0)
        return 1;
    r->resp.status = QUIVER__V1__STATUS__INVALID;
    r->resp.message = "queries must hold a whole number of vectors of "
                      "dimension dim (dim > 0)";
    return 0;
}

static qv_status do_search_batch(qv_db *db, const Quiver__V1__SearchBatch *m,
                                 struct reply *r)
{
    if (!batch_shape_ok(m, r))
        return QV_ERR_INVALID;
    if (0 || m->n_queries % m->dim != 0) {
        r->resp.status = QUIVER__V1__STATUS__INVALID;
        r->resp.message = "queries must hold a whole number of vectors of "
                          "dimension dim (dim > 0)";
        return QV_ERR_INVALID;
    }
    qv_search_options opt = options_from_wire(m->options);
    qv_batch_hits *b = NULL;
    qv_status st = qv_search_batch(db, m->collection, m->queries,
                                   m->n_queries / m->dim, m->dim, &opt, &b);
    if (st != QV_OK)
        return st;
    r->api_result = b;
    return reply_batch(r, b);
}

/* The response of a batch search: b (kept by the caller until sent). */
static qv_status reply_batch(struct reply *r, const qv_batch_hits *b)
{
    size_t total = 0;
    for (size_t i = 0; i < b->count; i++)
        total += b->results[i].count;
    Quiver__V1__Hits *lists = reply_alloc(r, b->count * sizeof *lists);
    Quiver__V1__Hits **lptrs = reply_alloc(r, b->count * sizeof *lptrs);
    Quiver__V1__Hit *slots = reply_alloc(r, (total + 1) * sizeof *slots);
    Quiver__V1__Hit **ptrs = reply_alloc(r, (total + 1) * sizeof *ptrs);
    if (!lists || !lptrs || !slots || !ptrs)
        return nomem(r);
    for (size_t i = 0, at = 0; i < b->count; i++) {
        hits_to_wire(r, &b->results[i], &lists[i], slots + at, ptrs + at);
        lptrs[i] = &lists[i];
        at += b->results[i].count;
    }
    quiver__v1__hits_batch__init(&r->u.batch);
    r->u.batch.n_results = b->count;
    r->u.batch.results = lptrs;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_BATCH;
    r->resp.batch = &r->u.batch;
    return QV_OK;
}

static void doc_to_wire(const qv_record *r, Quiver__V1__Document *d)
{
    quiver__v1__document__init(d);
    d->id = r->id;
    d->n_vector = r->dim;
    d->vector = r->vector;
    d->has_payload = r->payload != NULL;
    if (r->payload)
        d->payload = r->payload;
}

static qv_status reply_page(struct reply *r, const qv_page *page);

static qv_status do_scan(qv_db *db, const Quiver__V1__Scan *m,
                         struct reply *r)
{
    qv_page *page = NULL;
    qv_status st = qv_scan_where(db, m->collection,
                                 m->has_filter ? m->filter : NULL,
                                 m->has_after ? m->after : NULL, m->limit,
                                 &page);
    if (st != QV_OK)
        return st;
    r->api_result = page;
    return reply_page(r, page);
}

/* The response of a scan: page (kept by the caller until sent). */
static qv_status reply_page(struct reply *r, const qv_page *page)
{
    Quiver__V1__Document *docs = reply_alloc(r, (page->count + 1) *
                                                    sizeof *docs);
    Quiver__V1__Document **ptrs = reply_alloc(r, (page->count + 1) *
                                                     sizeof *ptrs);
    if (!docs || !ptrs)
        return nomem(r);
    for (size_t i = 0; i < page->count; i++) {
        doc_to_wire(&page->records[i], &docs[i]);
        ptrs[i] = &docs[i];
    }
    quiver__v1__page__init(&r->u.page);
    r->u.page.n_documents = page->count;
    r->u.page.documents = ptrs;
    r->u.page.more = page->next != NULL;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_PAGE;
    r->resp.page = &r->u.page;
    return QV_OK;
}

static qv_status do_count(qv_db *db, const Quiver__V1__Count *m,
                          struct reply *r)
{
    uint64_t n = 0;
    qv_status st = qv_count(db, m->collection,
                            m->has_filter ? m->filter : NULL, &n);
    if (st == QV_OK) {
        r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_COUNT;
        r->resp.count = n;
    }
    return st;
}

static qv_status do_check(qv_db *db, struct reply *r)
{
    char *report = NULL;
    qv_status st = qv_check(db, &report);
    if (report) {
        r->api_result = report;
        r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_REPORT;
        r->resp.report = report;
    }
    return st;
}

/* ---- embedding tables ---- */

/* Floats a table reply may carry: a lookup answer must fit a frame. */
#define TABLE_REPLY_FLOATS ((size_t)(48u << 20) / sizeof(float))

static qv_status table_fail(struct reply *r, const char *message)
{
    r->resp.status = QUIVER__V1__STATUS__INVALID;
    r->resp.message = (char *)message;
    return QV_ERR_INVALID;
}

static qv_status do_table_create(qv_db *db, const Quiver__V1__TableCreate *m)
{
    qv_table_config cfg = {0};
    if (m->config) {
        cfg.rows = m->config->rows;
        cfg.dim = m->config->dim;
        cfg.method = m->config->method[0] ? m->config->method : NULL;
        cfg.optimizer = (qv_optimizer)m->config->optimizer;
        cfg.learning_rate = m->config->learning_rate;
        cfg.init = m->config->init;
        cfg.seed = m->config->seed;
        cfg.shards = m->config->shards;
        cfg.replicas = m->config->replicas;
    }
    return qv_table_create(db, m->name, &cfg);
}

static void table_info_to_wire(const qv_table_info *info,
                               Quiver__V1__TableInfo *w)
{
    quiver__v1__table_info__init(w);
    w->name = (char *)info->name;
    w->method = (char *)info->method;
    w->rows = info->rows;
    w->dim = info->dim;
    w->optimizer = (uint32_t)info->optimizer;
    w->learning_rate = info->learning_rate;
    w->param_bytes = info->param_bytes;
    w->optimizer_bytes = info->optimizer_bytes;
    w->ratio = info->ratio;
    w->updates = info->updates;
    w->shards = info->shards;
    w->replicas = info->replicas;
}

static qv_status do_table_describe(qv_db *db, const char *name,
                                   struct reply *r)
{
    qv_table_info *info = reply_alloc(r, sizeof *info);
    if (!info)
        return nomem(r);
    qv_status st = qv_table_describe(db, name, info);
    if (st != QV_OK)
        return st;
    table_info_to_wire(info, &r->u.table);
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_TABLE_INFO;
    r->resp.table_info = &r->u.table;
    return QV_OK;
}

/* The tables of a list: a cluster node's shards' own tables are not
 * the user's; the sharded tables (from the router) are in their place. */
static qv_status do_list_tables(qv_db *db, dispatch_session *s,
                                uint64_t after, struct reply *r)
{
    qv_table_info *list = NULL, *sharded = NULL;
    size_t n = 0, ns = 0;
    qv_status st = qv_list_tables(db, &list, &n);
    if (st != QV_OK)
        return st;
    r->api_result = list;
    if (s->router) {
        st = table_router_list(s->router, after, &sharded, &ns, r->text,
                               sizeof r->text);
        if (st != QV_OK)
            return refuse(r, st, r->text);
        r->scratch[0] = sharded;
    }
    Quiver__V1__TableInfo *infos = reply_alloc(r, (n + ns + 1) *
                                                      sizeof *infos);
    Quiver__V1__TableInfo **ptrs = reply_alloc(r, (n + ns + 1) *
                                                      sizeof *ptrs);
    if (!infos || !ptrs)
        return nomem(r);
    size_t k = 0;
    for (size_t i = 0; i < n + ns; i++) {
        const qv_table_info *in = i < n ? &list[i] : &sharded[i - n];
        if (s->router &&
            strncmp(in->name, SHARD_PREFIX, strlen(SHARD_PREFIX)) == 0)
            continue;
        table_info_to_wire(in, &infos[k]);
        ptrs[k] = &infos[k];
        k++;
    }
    quiver__v1__table_list__init(&r->u.tables);
    r->u.tables.n_tables = k;
    r->u.tables.tables = ptrs;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_TABLE_LIST;
    r->resp.table_list = &r->u.tables;
    return QV_OK;
}

static qv_status reply_indexes(struct reply *r, const qv_index_info *list,
                               size_t n);

static qv_status do_list_indexes(qv_db *db, const char *collection,
                                 struct reply *r)
{
    qv_index_info *list = NULL;
    size_t n = 0;
    qv_status st = qv_list_indexes(db, collection, &list, &n);
    if (st != QV_OK)
        return st;
    r->api_result = list;
    return reply_indexes(r, list, n);
}

/* The response of a list of payload indexes (kept until sent). */
static qv_status reply_indexes(struct reply *r, const qv_index_info *list,
                               size_t n)
{
    Quiver__V1__IndexInfo *infos = reply_alloc(r, (n + 1) * sizeof *infos);
    Quiver__V1__IndexInfo **ptrs = reply_alloc(r, (n + 1) * sizeof *ptrs);
    if (!infos || !ptrs)
        return nomem(r);
    for (size_t i = 0; i < n; i++) {
        quiver__v1__index_info__init(&infos[i]);
        infos[i].field = (char *)list[i].field;
        infos[i].type = (Quiver__V1__IndexType)list[i].type;
        ptrs[i] = &infos[i];
    }
    quiver__v1__index_list__init(&r->u.indexes);
    r->u.indexes.n_indexes = n;
    r->u.indexes.indexes = ptrs;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_INDEX_LIST;
    r->resp.index_list = &r->u.indexes;
    return QV_OK;
}

static qv_status do_table_lookup(qv_db *db, const Quiver__V1__TableLookup *m,
                                 struct reply *r)
{
    if (m->n_ids && (size_t)m->dim > TABLE_REPLY_FLOATS / m->n_ids)
        return table_fail(r, "the rows asked for would not fit in one "
                          "response frame; ask for fewer ids at a time");
    float *out = reply_alloc(r, (m->n_ids ? m->n_ids : 1) *
                                    (m->dim ? m->dim : 1) * sizeof *out);
    if (!out)
        return nomem(r);
    qv_status st = qv_table_lookup(db, m->name, m->ids, m->n_ids, m->dim,
                                   out);
    if (st != QV_OK)
        return st;
    Quiver__V1__Floats *w = &r->u.floats;
    quiver__v1__floats__init(w);
    w->values = out;
    w->n_values = m->n_ids * m->dim;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_ROWS;
    r->resp.rows = w;
    return QV_OK;
}

static qv_status do_table_update(qv_db *db, const Quiver__V1__TableUpdate *m,
                                 struct reply *r)
{
    if (m->n_grads != m->n_ids * (size_t)m->dim)
        return table_fail(r, "the gradients do not match the ids: they must "
                          "hold ids x dim floats");
    return qv_table_update(db, m->name, m->ids, m->n_ids, m->dim, m->grads);
}

static qv_status do_table_load(qv_db *db, const Quiver__V1__TableLoad *m,
                               struct reply *r)
{
    if (m->dim == 0 || m->n_rows % m->dim)
        return table_fail(r, "the rows must hold a whole number of rows of "
                          "dim floats");
    return qv_table_load(db, m->name, m->first, m->n_rows / m->dim, m->dim,
                         m->rows);
}

static qv_status do_stats(qv_db *db, struct reply *r)
{
    char *json = NULL;
    qv_status st = qv_stats(db, &json);
    if (st != QV_OK)
        return st;
    r->api_result = json;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_STATS_JSON;
    r->resp.stats_json = json;
    return QV_OK;
}

/* A name of a new backup: 1 to QV_NAME_MAX letters, digits, '_', '-'
 * or '.', not starting with '.' (so never "." or ".." nor hidden). */
static int backup_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > QV_NAME_MAX || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.')
            return 0;
    }
    return 1;
}

/*
 * A backup asked for over the network goes only into a new entry of the
 * directory the operator named with --backup-dir: the client names the
 * entry, never a path, so it cannot make the server write anywhere else.
 * Creating the entry here (mkdir fails on anything that exists, a link
 * too) makes two requests for one name race safely.
 */
static qv_status do_backup(qv_db *db, const dispatch_session *s,
                           const char *name, struct reply *r)
{
    char path[4096];
    if (!s->backup_dir)
        return refuse(r, QV_ERR_UNSUPPORTED, "this server takes no backups "
                      "over the network; its operator can allow them with "
                      "quiverd --backup-dir DIR");
    if (!backup_name_ok(name))
        return refuse(r, QV_ERR_INVALID, "a backup is named by 1 to 64 "
                      "letters, digits, '_', '-' or '.', not starting with "
                      "'.'; it becomes a new directory in the server's "
                      "backup directory");
    snprintf(path, sizeof path, "%s/%s", s->backup_dir, name);
    if (mkdir(path, 0700) != 0) {
        if (errno == EEXIST) {
            snprintf(r->text, sizeof r->text, "backup %s already exists; "
                     "name a new one", name);
            return refuse(r, QV_ERR_EXISTS, r->text);
        }
        snprintf(r->text, sizeof r->text, "backup %s: cannot create its "
                 "directory: %s", name, strerror(errno));
        return refuse(r, QV_ERR_IO, r->text);
    }
    qv_status st = qv_backup(db, path);
    if (st != QV_OK) {  /* leave nothing behind: the name stays free */
        char file[4200];
        snprintf(file, sizeof file, "%s/data.mdb", path);
        unlink(file);
        rmdir(path);
    }
    return st;
}

/* Constant-time comparison, so the token cannot be guessed by timing. */
static int token_matches(const char *expected, const char *given)
{
    size_t n = strlen(expected), m = strlen(given);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)expected[i] ^ (unsigned char)(i < m ? given[i] : 0);
    return diff == 0;
}

static void do_authenticate(dispatch_session *s,
                            const Quiver__V1__Authenticate *m, struct reply *r)
{
    if (!s->token || token_matches(s->token, m->token)) {
        s->authenticated = 1;
        return;
    }
    r->resp.status = QUIVER__V1__STATUS__UNAUTHENTICATED;
    r->resp.message = "wrong token";
    s->close_after = 1;
}

/* ---- cluster nodes ---- */

/* The collection a request on one collection names; NULL for others. */
static const char *request_collection(const Request *req)
{
    switch (req->op_case) {
    case QUIVER__V1__REQUEST__OP_DROP_COLLECTION:
        return req->drop_collection->name;
    case QUIVER__V1__REQUEST__OP_DESCRIBE_COLLECTION:
        return req->describe_collection->name;
    case QUIVER__V1__REQUEST__OP_UPSERT: return req->upsert->collection;
    case QUIVER__V1__REQUEST__OP_GET: return req->get->collection;
    case QUIVER__V1__REQUEST__OP_DELETE: return req->delete_->collection;
    case QUIVER__V1__REQUEST__OP_SEARCH: return req->search->collection;
    case QUIVER__V1__REQUEST__OP_SEARCH_BATCH:
        return req->search_batch->collection;
    case QUIVER__V1__REQUEST__OP_SCAN: return req->scan->collection;
    case QUIVER__V1__REQUEST__OP_COUNT: return req->count->collection;
    case QUIVER__V1__REQUEST__OP_DELETE_WHERE:
        return req->delete_where->collection;
    case QUIVER__V1__REQUEST__OP_CREATE_INDEX:
        return req->create_index->collection;
    case QUIVER__V1__REQUEST__OP_DROP_INDEX:
        return req->drop_index->collection;
    case QUIVER__V1__REQUEST__OP_LIST_INDEXES:
        return req->list_indexes->collection;
    case QUIVER__V1__REQUEST__OP_TRAIN: return req->train->collection;
    default: return NULL;
    }
}

/* The collection or table a write (op_kind_of: OP_WRITES) is about;
 * *table set for a table. */
static const char *write_target(const Request *req, int *table)
{
    *table = 0;
    if (req->op_case == QUIVER__V1__REQUEST__OP_CREATE_COLLECTION)
        return req->create_collection->name;
    const char *name = request_collection(req);
    if (name)
        return name;
    *table = 1;
    switch (req->op_case) {
    case QUIVER__V1__REQUEST__OP_TABLE_CREATE: return req->table_create->name;
    case QUIVER__V1__REQUEST__OP_TABLE_DROP: return req->table_drop->name;
    case QUIVER__V1__REQUEST__OP_TABLE_UPDATE: return req->table_update->name;
    case QUIVER__V1__REQUEST__OP_TABLE_LOAD: return req->table_load->name;
    default: return NULL;   /* a write op_kind_of knows and this does not */
    }
}

/* The write log's subject tail of a collection's or table's shard: "c" or
 * "t", the name's XXH64 in hex (names may hold '.', a separator in NATS
 * subjects), then the shard, ".s0" while a collection has one shard. */
static void shard_of(const char *name, int table, char *out, size_t len)
{
    snprintf(out, len, "%c%016llx.s0", table ? 't' : 'c',
             (unsigned long long)XXH64(name, strlen(name), 0));
}

/* A write through the log: the answer is its outcome on this node. */
static void log_write(dispatch_session *s, const Request *req,
                      const char *target, int table, const uint8_t *payload,
                      size_t len, struct reply *r)
{
    char shard[32];
    node_outcome out;
    uint64_t seq = 0;
    shard_of(target, table, shard, sizeof shard);
    node_write(s->cluster, shard, payload, len, &out, &seq);
    r->resp.status = (Quiver__V1__Status)out.status;
    snprintf(r->text, sizeof r->text, "%s", out.message);
    r->resp.message = r->text;
    r->resp.write_token = seq;
    if (out.status == QV_OK &&
        req->op_case == QUIVER__V1__REQUEST__OP_DELETE_WHERE) {
        r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_COUNT;
        r->resp.count = out.count;
    }
}

/* A cluster node answers a request that carries a write token only once
 * it applied that write: 0 to go on, -1 when the wait timed out. */
static int await_token(dispatch_session *s, const Request *req,
                       struct reply *r)
{
    node_outcome out;
    if (!s->cluster || req->after == 0 ||
        node_wait_applied(s->cluster, req->after, &out) == QV_OK)
        return 0;
    snprintf(r->text, sizeof r->text, "%s", out.message);
    refuse(r, out.status, r->text);
    return -1;
}

static qv_status do_cluster_status(dispatch_session *s, struct reply *r)
{
    node_outcome fail;
    char *json = NULL;
    if (!s->cluster)
        return refuse(r, QV_ERR_UNSUPPORTED, "this server is not a cluster "
                      "node (quiverd --cluster)");
    qv_status st = node_status(s->cluster, &json, &fail);
    if (st != QV_OK) {
        snprintf(r->text, sizeof r->text, "%s", fail.message);
        return refuse(r, st, r->text);
    }
    r->scratch[0] = json;   /* freed with the reply's scratch */
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_CLUSTER_JSON;
    r->resp.cluster_json = json;
    return QV_OK;
}

static qv_status do_cluster_drain(dispatch_session *s,
                                  const Quiver__V1__ClusterDrain *m,
                                  struct reply *r)
{
    if (!s->cluster || !s->router)
        return refuse(r, QV_ERR_UNSUPPORTED, "this server is not a cluster "
                      "node (quiverd --cluster)");
    qv_status st = placement_drain(s->router, m->node, m->cancel, r->text,
                                   sizeof r->text);
    return st == QV_OK ? QV_OK : refuse(r, st, r->text);
}

/* ---- sharded collections on a cluster node (router.h) ---- */

static int is_shard_name(const char *name)
{
    return strncmp(name, SHARD_PREFIX, strlen(SHARD_PREFIX)) == 0;
}

/* Whether db holds a collection of that name. */
static int holds_collection(qv_db *db, const char *name)
{
    uint64_t n;
    return qv_count(db, name, NULL, &n) != QV_ERR_NOT_FOUND;
}

/* Whether db holds a table of that name. */
static int holds_table(qv_db *db, const char *name)
{
    qv_table_info info;
    return qv_table_describe(db, name, &info) != QV_ERR_NOT_FOUND;
}

/*
 * A request naming a shard's own collection or table (table 1), as nodes
 * send each other: 0 to run it here. A write waits until this node has
 * read the log as far as its sender (a shard the sender saw made is made
 * here too), then is refused NOT_FOUND (1, in r) when this node does not
 * hold the shard, so that nothing is logged that its waiting writer could
 * not see applied.
 */
static int refuse_unheld_shard(qv_db *db, dispatch_session *s,
                               const Request *req, const char *name,
                               int table, struct reply *r)
{
    if (op_kind_of(req->op_case) != OP_WRITES)
        return 0;
    if (await_token(s, req, r) != 0)
        return 1;
    if (table ? holds_table(db, name) : holds_collection(db, name))
        return 0;
    snprintf(r->text, sizeof r->text, "this node holds no %s '%s'",
             table ? "table" : "collection", name);
    refuse(r, QV_ERR_NOT_FOUND, r->text);
    return 1;
}

static qv_status routed_search(dispatch_session *s, const shard_map *map,
                               const Quiver__V1__Search *m, uint64_t after,
                               struct reply *r)
{
    qv_search_options opt = options_from_wire(m->options);
    uint32_t dim = m->n_query > UINT32_MAX ? 0 : (uint32_t)m->n_query;
    qv_status st = router_search(s->router, map, m->query, dim, &opt, after,
                                 &r->routed, r->text, sizeof r->text);
    return st == QV_OK ? reply_hits(r, router_result_hits(r->routed)) : st;
}

static qv_status routed_search_batch(dispatch_session *s,
                                     const shard_map *map,
                                     const Quiver__V1__SearchBatch *m,
                                     uint64_t after, struct reply *r)
{
    if (!batch_shape_ok(m, r))
        return QV_ERR_INVALID;
    qv_search_options opt = options_from_wire(m->options);
    qv_status st = router_search_batch(s->router, map, m->queries,
                                       m->n_queries / m->dim, m->dim, &opt,
                                       after, &r->routed, r->text,
                                       sizeof r->text);
    return st == QV_OK ? reply_batch(r, router_result_batch(r->routed)) : st;
}

static qv_status routed_scan(dispatch_session *s, const shard_map *map,
                             const Quiver__V1__Scan *m, uint64_t after,
                             struct reply *r)
{
    qv_status st = router_scan(s->router, map,
                               m->has_filter ? m->filter : NULL,
                               m->has_after ? m->after : NULL, m->limit,
                               after, &r->routed, r->text, sizeof r->text);
    return st == QV_OK ? reply_page(r, router_result_page(r->routed)) : st;
}

static qv_status routed_list_indexes(dispatch_session *s,
                                     const shard_map *map, uint64_t after,
                                     struct reply *r)
{
    qv_index_info *list = NULL;
    size_t n = 0;
    qv_status st = router_list_indexes(s->router, map, after, &list, &n,
                                       r->text, sizeof r->text);
    if (st != QV_OK)
        return st;
    r->api_result = list;
    return reply_indexes(r, list, n);
}

static qv_status routed_get(dispatch_session *s, const shard_map *map,
                            const Quiver__V1__Get *m, uint64_t after,
                            struct reply *r)
{
    qv_record *rec = NULL;
    qv_status st = router_get(s->router, map, m->id, after, &rec, r->text,
                              sizeof r->text);
    if (st != QV_OK)
        return st;
    r->api_result = rec;
    doc_to_wire(rec, &r->u.doc);
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_DOCUMENT;
    r->resp.document = &r->u.doc;
    return QV_OK;
}

static qv_status routed_describe(dispatch_session *s, const shard_map *map,
                                 uint64_t after, struct reply *r)
{
    qv_collection_info *info = reply_alloc(r, sizeof *info);
    if (!info)
        return nomem(r);
    qv_status st = router_describe(s->router, map, after, info, r->text,
                                   sizeof r->text);
    if (st == QV_OK) {
        info_to_wire(info, &r->u.info);
        r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_INFO;
        r->resp.info = &r->u.info;
    }
    return st;
}

static qv_status routed_upsert(dispatch_session *s, const shard_map *map,
                               const Quiver__V1__Upsert *m, uint64_t *token,
                               struct reply *r)
{
    qv_doc *docs = reply_alloc(r, (m->n_documents + 1) * sizeof *docs);
    if (!docs)
        return nomem(r);
    for (size_t i = 0; i < m->n_documents; i++)
        docs[i] = doc_of(m->documents[i]);
    return router_upsert(s->router, map, docs, m->n_documents, token, r->text,
                         sizeof r->text);
}

/* A count as the response, when st is QV_OK. */
static void reply_count(struct reply *r, qv_status st, uint64_t count)
{
    if (st != QV_OK)
        return;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_COUNT;
    r->resp.count = count;
}

/* A request on sharded collection map->name, answered through the
 * router as one database would answer it. */
static void run_routed(dispatch_session *s, const Request *req,
                       const shard_map *map, struct reply *r)
{
    uint64_t token = 0, after = req->after, count = 0;
    qv_status st;
    switch (req->op_case) {
    case QUIVER__V1__REQUEST__OP_DROP_COLLECTION:
        st = router_drop(s->router, map, &token, r->text, sizeof r->text);
        break;
    case QUIVER__V1__REQUEST__OP_DESCRIBE_COLLECTION:
        st = routed_describe(s, map, after, r);
        break;
    case QUIVER__V1__REQUEST__OP_UPSERT:
        st = routed_upsert(s, map, req->upsert, &token, r);
        break;
    case QUIVER__V1__REQUEST__OP_DELETE:
        st = router_delete(s->router, map, req->delete_->id, &token, r->text,
                           sizeof r->text);
        break;
    case QUIVER__V1__REQUEST__OP_GET:
        st = routed_get(s, map, req->get, after, r);
        break;
    case QUIVER__V1__REQUEST__OP_SEARCH:
        st = routed_search(s, map, req->search, after, r);
        break;
    case QUIVER__V1__REQUEST__OP_COUNT:
        st = router_count(s->router, map,
                          req->count->has_filter ? req->count->filter : NULL,
                          after, &count, r->text, sizeof r->text);
        reply_count(r, st, count);
        break;
    case QUIVER__V1__REQUEST__OP_SEARCH_BATCH:
        st = routed_search_batch(s, map, req->search_batch, after, r);
        break;
    case QUIVER__V1__REQUEST__OP_SCAN:
        st = routed_scan(s, map, req->scan, after, r);
        break;
    case QUIVER__V1__REQUEST__OP_DELETE_WHERE:
        st = router_delete_where(s->router, map, req->delete_where->filter,
                                 &count, &token, r->text, sizeof r->text);
        reply_count(r, st, count);
        break;
    case QUIVER__V1__REQUEST__OP_CREATE_INDEX:
        st = router_index(s->router, map, req->create_index->field,
                          (qv_index_type)req->create_index->type, 0, &token,
                          r->text, sizeof r->text);
        break;
    case QUIVER__V1__REQUEST__OP_DROP_INDEX:
        st = router_index(s->router, map, req->drop_index->field,
                          QV_INDEX_KEYWORD, 1, &token, r->text,
                          sizeof r->text);
        break;
    case QUIVER__V1__REQUEST__OP_TRAIN:
        st = router_train(s->router, map, &token, r->text, sizeof r->text);
        break;
    case QUIVER__V1__REQUEST__OP_LIST_INDEXES:
        st = routed_list_indexes(s, map, after, r);
        break;
    default:
        snprintf(r->text, sizeof r->text, "'%s' is a sharded collection: "
                 "this request is not supported across shards yet "
                 "(docs/CLUSTER.md \"Shards\")", map->name);
        st = QV_ERR_UNSUPPORTED;
        break;
    }
    r->resp.write_token = token;
    if (st != QV_OK && r->resp.status == QUIVER__V1__STATUS__OK)
        refuse(r, st, r->text);
}

/* A plain create of a name a sharded collection has is refused here,
 * since the shards' local collections have other names: 1 when it was. */
static int sharded_exists(dispatch_session *s, const char *name,
                          struct reply *r)
{
    shard_map map;
    int rc = router_lookup(s->router, name, 0, &map, r->text,
                           sizeof r->text);
    if (rc > 0) {
        shard_map_release(&map);
        snprintf(r->text, sizeof r->text, "collection '%s' already exists",
                 name);
        refuse(r, QV_ERR_EXISTS, r->text);
    } else if (rc < 0) {
        refuse(r, QV_ERR_CONNECTION, r->text);
    }
    return rc != 0;
}

/* Free what the reply holds and start it afresh (same request id). */
static void reply_reset(struct reply *r)
{
    uint64_t id = r->resp.id;
    qv_free(r->api_result);
    router_result_free(r->routed);
    for (size_t i = 0; i < sizeof r->scratch / sizeof *r->scratch; i++)
        qv_mem_free(r->scratch[i]);
    *r = (struct reply){.resp = QUIVER__V1__RESPONSE__INIT};
    r->resp.id = id;
}

static void run_table_routed(dispatch_session *s, const Request *req,
                             const shard_map *map, struct reply *r);

/* How requests reach the shards of a collection or of a table. */
struct shard_kind {
    int table;   /* for refuse_unheld_shard */
    int (*holds)(qv_db *db, const char *name);
    int (*lookup)(router *rt, const char *name, int fresh, shard_map *map,
                  char *msg, size_t msglen);
    void (*run)(dispatch_session *s, const Request *req,
                const shard_map *map, struct reply *r);
};

static const struct shard_kind collection_shards = {
    0, holds_collection, router_lookup, run_routed};
static const struct shard_kind table_shards = {
    1, holds_table, router_table_lookup, run_table_routed};

/*
 * A routed request that met NOT_FOUND may have used a placement read
 * before the collection or table was dropped (and perhaps made again),
 * or before a shard moved away from a node that has dropped its copy
 * since: those shards are not where it looked, so nothing was made of
 * the request. Asked again with the placement as it is now, or on the
 * plain path (0) when the name is not sharded any more. 1 when r holds
 * the answer.
 */
static int rerun_if_replaced(dispatch_session *s, const struct shard_kind *k,
                             const Request *req, const shard_map *used,
                             struct reply *r)
{
    shard_map now;
    char err[400];
    int rc = k->lookup(s->router, used->name, 1, &now, err, sizeof err);
    if (rc < 0 || (rc > 0 && now.serial == used->serial &&
                   now.version == used->version)) {
        if (rc > 0)
            shard_map_release(&now);
        return 1;   /* the answer stands */
    }
    reply_reset(r);
    if (rc == 0)
        return 0;
    k->run(s, req, &now, r);
    shard_map_release(&now);
    return 1;
}

/*
 * A request on name, a collection or table of kind k: one naming a
 * shard's own (nodes send those to each other) runs here unless it is a
 * write of a shard this node does not hold; one on a sharded name is
 * routed to its shards. 1 when r holds the answer, 0 to run it on this
 * node as it is.
 */
static int route_to_shards(qv_db *db, dispatch_session *s,
                           const struct shard_kind *k, const Request *req,
                           const char *name, struct reply *r)
{
    if (is_shard_name(name))
        return refuse_unheld_shard(db, s, req, name, k->table, r);
    if (k->holds(db, name))
        return 0;
    shard_map map;
    int rc = k->lookup(s->router, name, 0, &map, r->text, sizeof r->text);
    if (rc < 0)
        refuse(r, QV_ERR_CONNECTION, r->text);
    if (rc <= 0)
        return rc < 0;
    k->run(s, req, &map, r);
    if (r->resp.status == QUIVER__V1__STATUS__NOT_FOUND)
        rc = rerun_if_replaced(s, k, req, &map, r);
    shard_map_release(&map);
    return rc;
}

/*
 * A cluster node's requests that are about shards: creates with shards,
 * requests on sharded collections, and requests that name a shard's own
 * collection (nodes send those to each other; a node refuses those of a
 * shard it does not hold, so that nothing is logged for it). 1 when the
 * request was answered here.
 */
static int run_sharded(qv_db *db, dispatch_session *s, const Request *req,
                       struct reply *r)
{
    if (req->op_case == QUIVER__V1__REQUEST__OP_CREATE_COLLECTION) {
        const Quiver__V1__CreateCollection *m = req->create_collection;
        if (is_shard_name(m->name)) {
            refuse(r, QV_ERR_INVALID, "collection names starting with '"
                   SHARD_PREFIX "' are the cluster's shards");
            return 1;
        }
        if (!m->config || m->config->shards == 0)
            return sharded_exists(s, m->name, r);
        qv_collection_config cfg = config_from_wire(m->config);
        uint64_t token = 0;
        qv_status st = router_create(s->router, m->name, &cfg, &token,
                                     r->text, sizeof r->text);
        r->resp.write_token = token;
        if (st != QV_OK)
            refuse(r, st, r->text);
        return 1;
    }
    const char *name = request_collection(req);
    return name ? route_to_shards(db, s, &collection_shards, req, name, r)
                : 0;
}

/* ---- sharded embedding tables on a cluster node (table_router.h) ---- */

/* The table a request on one table names; NULL for others. */
static const char *request_table(const Request *req)
{
    switch (req->op_case) {
    case QUIVER__V1__REQUEST__OP_TABLE_CREATE: return req->table_create->name;
    case QUIVER__V1__REQUEST__OP_TABLE_DROP: return req->table_drop->name;
    case QUIVER__V1__REQUEST__OP_TABLE_DESCRIBE:
        return req->table_describe->name;
    case QUIVER__V1__REQUEST__OP_TABLE_LOOKUP: return req->table_lookup->name;
    case QUIVER__V1__REQUEST__OP_TABLE_UPDATE: return req->table_update->name;
    case QUIVER__V1__REQUEST__OP_TABLE_LOAD: return req->table_load->name;
    default: return NULL;
    }
}

static qv_status routed_table_describe(dispatch_session *s,
                                       const shard_map *map, uint64_t after,
                                       struct reply *r)
{
    qv_table_info *info = reply_alloc(r, sizeof *info);
    if (!info)
        return nomem(r);
    qv_status st = table_router_describe(s->router, map, after, info,
                                         r->text, sizeof r->text);
    if (st == QV_OK) {
        table_info_to_wire(info, &r->u.table);
        r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_TABLE_INFO;
        r->resp.table_info = &r->u.table;
    }
    return st;
}

/* A batch of n ids refused as qv_table_lookup refuses it (checked once
 * before the split, so that the refusal names no shard): 1 when it was. */
static int batch_refused(size_t n, struct reply *r)
{
    if (n > 0 && n <= QV_TABLE_BATCH_MAX)
        return 0;
    snprintf(r->text, sizeof r->text, "a batch holds 1 to %d ids, not %zu",
             QV_TABLE_BATCH_MAX, n);
    table_fail(r, r->text);
    return 1;
}

/* As do_table_lookup, the rows gathered from the shards. */
static qv_status routed_table_lookup(dispatch_session *s, const shard_map *map,
                                     const Quiver__V1__TableLookup *m,
                                     uint64_t after, struct reply *r)
{
    if (m->n_ids && (size_t)m->dim > TABLE_REPLY_FLOATS / m->n_ids)
        return table_fail(r, "the rows asked for would not fit in one "
                          "response frame; ask for fewer ids at a time");
    if (batch_refused(m->n_ids, r))
        return QV_ERR_INVALID;
    float *out = reply_alloc(r, m->n_ids * (m->dim ? m->dim : 1) *
                                    sizeof *out);
    if (!out)
        return nomem(r);
    qv_status st = table_router_lookup(s->router, map, m->ids, m->n_ids,
                                       m->dim, after, out, r->text,
                                       sizeof r->text);
    if (st != QV_OK)
        return st;
    Quiver__V1__Floats *w = &r->u.floats;
    quiver__v1__floats__init(w);
    w->values = out;
    w->n_values = m->n_ids * m->dim;
    r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_ROWS;
    r->resp.rows = w;
    return QV_OK;
}

static qv_status routed_table_update(dispatch_session *s, const shard_map *map,
                                     const Quiver__V1__TableUpdate *m,
                                     uint64_t *token, struct reply *r)
{
    if (m->n_grads != m->n_ids * (size_t)m->dim)
        return table_fail(r, "the gradients do not match the ids: they must "
                          "hold ids x dim floats");
    if (batch_refused(m->n_ids, r))
        return QV_ERR_INVALID;
    return table_router_update(s->router, map, m->ids, m->n_ids, m->dim,
                               m->grads, token, r->text, sizeof r->text);
}

static qv_status routed_table_load(dispatch_session *s, const shard_map *map,
                                   const Quiver__V1__TableLoad *m,
                                   uint64_t *token, struct reply *r)
{
    if (m->dim == 0 || m->n_rows % m->dim)
        return table_fail(r, "the rows must hold a whole number of rows of "
                          "dim floats");
    return table_router_load(s->router, map, m->first, m->n_rows / m->dim,
                             m->dim, m->rows, token, r->text,
                             sizeof r->text);
}

/* A request on sharded table map->name, answered through the table
 * router as one database would answer it. */
static void run_table_routed(dispatch_session *s, const Request *req,
                             const shard_map *map, struct reply *r)
{
    uint64_t token = 0, after = req->after;
    qv_status st;
    switch (req->op_case) {
    case QUIVER__V1__REQUEST__OP_TABLE_DROP:
        st = table_router_drop(s->router, map, &token, r->text,
                               sizeof r->text);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_DESCRIBE:
        st = routed_table_describe(s, map, after, r);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_LOOKUP:
        st = routed_table_lookup(s, map, req->table_lookup, after, r);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_UPDATE:
        st = routed_table_update(s, map, req->table_update, &token, r);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_LOAD:
        st = routed_table_load(s, map, req->table_load, &token, r);
        break;
    default:   /* a create: run_sharded_table answers it */
        snprintf(r->text, sizeof r->text, "table '%s' already exists",
                 map->name);
        st = QV_ERR_EXISTS;
        break;
    }
    r->resp.write_token = token;
    if (st != QV_OK && r->resp.status == QUIVER__V1__STATUS__OK)
        refuse(r, st, r->text);
}

/* A create of a table on a cluster node: sharded through the table
 * router; a plain one (0: not answered here) unless a sharded table has
 * the name, since the shards' local tables have other names. */
static int run_table_create(dispatch_session *s,
                            const Quiver__V1__TableCreate *m,
                            struct reply *r)
{
    shard_map map;
    if (is_shard_name(m->name)) {
        refuse(r, QV_ERR_INVALID, "table names starting with '"
               SHARD_PREFIX "' are the cluster's shards");
        return 1;
    }
    if (!m->config || m->config->shards == 0) {
        /* read afresh: a cached placement may be of a table dropped
         * through another node, and creates are rare */
        int rc = router_table_lookup(s->router, m->name, 1, &map, r->text,
                                     sizeof r->text);
        if (rc > 0) {
            shard_map_release(&map);
            snprintf(r->text, sizeof r->text, "table '%s' already exists",
                     m->name);
            refuse(r, QV_ERR_EXISTS, r->text);
        } else if (rc < 0) {
            refuse(r, QV_ERR_CONNECTION, r->text);
        }
        return rc != 0;
    }
    qv_table_config cfg = {
        .rows = m->config->rows, .dim = m->config->dim,
        .method = m->config->method[0] ? m->config->method : NULL,
        .optimizer = (qv_optimizer)m->config->optimizer,
        .learning_rate = m->config->learning_rate,
        .init = m->config->init, .seed = m->config->seed,
        .shards = m->config->shards, .replicas = m->config->replicas};
    uint64_t token = 0;
    qv_status st = table_router_create(s->router, m->name, &cfg, &token,
                                       r->text, sizeof r->text);
    r->resp.write_token = token;
    if (st != QV_OK)
        refuse(r, st, r->text);
    return 1;
}

/*
 * A cluster node's table requests that are about shards, as run_sharded
 * does for collections: creates, requests on sharded tables, and
 * requests naming a shard's own table (a node refuses writes of a shard
 * it does not hold). 1 when the request was answered here.
 */
static int run_sharded_table(qv_db *db, dispatch_session *s,
                             const Request *req, struct reply *r)
{
    if (req->op_case == QUIVER__V1__REQUEST__OP_TABLE_CREATE)
        return run_table_create(s, req->table_create, r);
    const char *name = request_table(req);
    return name ? route_to_shards(db, s, &table_shards, req, name, r) : 0;
}

static void run_request(qv_db *db, dispatch_session *s, const Request *req,
                        const uint8_t *payload, size_t len, struct reply *r)
{
    qv_status st = QV_OK;
    if (req->op_case == QUIVER__V1__REQUEST__OP_AUTHENTICATE) {
        do_authenticate(s, req->authenticate, r);
        return;
    }
    if (s->token && !s->authenticated) {
        r->resp.status = QUIVER__V1__STATUS__UNAUTHENTICATED;
        r->resp.message = "authenticate first: this server requires a token";
        s->close_after = 1;
        return;
    }
    if (s->router && (run_sharded(db, s, req, r) ||
                      run_sharded_table(db, s, req, r)))
        return;
    int table;
    const char *target = s->cluster && op_kind_of(req->op_case) == OP_WRITES
                             ? write_target(req, &table) : NULL;
    if (target) {
        log_write(s, req, target, table, payload, len, r);
        return;
    }
    if (await_token(s, req, r) != 0)
        return;
    switch (req->op_case) {
    case QUIVER__V1__REQUEST__OP_CREATE_COLLECTION:
        st = do_create(db, req->create_collection);
        break;
    case QUIVER__V1__REQUEST__OP_DROP_COLLECTION:
        st = qv_drop_collection(db, req->drop_collection->name);
        break;
    case QUIVER__V1__REQUEST__OP_DESCRIBE_COLLECTION:
        st = do_describe(db, req->describe_collection->name, r);
        break;
    case QUIVER__V1__REQUEST__OP_LIST_COLLECTIONS:
        st = do_list(db, s, req->after, r);
        break;
    case QUIVER__V1__REQUEST__OP_UPSERT:
        st = do_upsert(db, req->upsert, r);
        break;
    case QUIVER__V1__REQUEST__OP_GET:
        st = do_get(db, req->get, r);
        break;
    case QUIVER__V1__REQUEST__OP_DELETE:
        st = qv_delete(db, req->delete_->collection, req->delete_->id);
        break;
    case QUIVER__V1__REQUEST__OP_SEARCH:
        st = do_search(db, req->search, r);
        break;
    case QUIVER__V1__REQUEST__OP_SEARCH_BATCH:
        st = do_search_batch(db, req->search_batch, r);
        break;
    case QUIVER__V1__REQUEST__OP_SCAN:
        st = do_scan(db, req->scan, r);
        break;
    case QUIVER__V1__REQUEST__OP_BACKUP:
        st = do_backup(db, s, req->backup->dir, r);
        break;
    case QUIVER__V1__REQUEST__OP_DELETE_WHERE: {
        uint64_t n = 0;
        st = qv_delete_where(db, req->delete_where->collection,
                             req->delete_where->filter, &n);
        if (st == QV_OK) {
            r->resp.result_case = QUIVER__V1__RESPONSE__RESULT_COUNT;
            r->resp.count = n;
        }
        break;
    }
    case QUIVER__V1__REQUEST__OP_CREATE_INDEX:
        st = qv_create_index(db, req->create_index->collection,
                             req->create_index->field,
                             (qv_index_type)req->create_index->type);
        break;
    case QUIVER__V1__REQUEST__OP_COUNT:
        st = do_count(db, req->count, r);
        break;
    case QUIVER__V1__REQUEST__OP_CHECK:
        st = do_check(db, r);
        break;
    case QUIVER__V1__REQUEST__OP_COMPACT:
        st = qv_compact(db);
        break;
    case QUIVER__V1__REQUEST__OP_DROP_INDEX:
        st = qv_drop_index(db, req->drop_index->collection,
                           req->drop_index->field);
        break;
    case QUIVER__V1__REQUEST__OP_TRAIN:
        st = qv_train(db, req->train->collection);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_CREATE:
        st = do_table_create(db, req->table_create);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_DROP:
        st = qv_table_drop(db, req->table_drop->name);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_DESCRIBE:
        st = do_table_describe(db, req->table_describe->name, r);
        break;
    case QUIVER__V1__REQUEST__OP_LIST_TABLES:
        st = do_list_tables(db, s, req->after, r);
        break;
    case QUIVER__V1__REQUEST__OP_LIST_INDEXES:
        st = do_list_indexes(db, req->list_indexes->collection, r);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_LOOKUP:
        st = do_table_lookup(db, req->table_lookup, r);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_UPDATE:
        st = do_table_update(db, req->table_update, r);
        break;
    case QUIVER__V1__REQUEST__OP_TABLE_LOAD:
        st = do_table_load(db, req->table_load, r);
        break;
    case QUIVER__V1__REQUEST__OP_STATS:
        st = do_stats(db, r);
        break;
    case QUIVER__V1__REQUEST__OP_CLUSTER_STATUS:
        st = do_cluster_status(s, r);
        break;
    case QUIVER__V1__REQUEST__OP_CLUSTER_DRAIN:
        st = do_cluster_drain(s, req->cluster_drain, r);
        break;
    default:
        r->resp.status = QUIVER__V1__STATUS__PROTOCOL;
        r->resp.message = "request carries no operation this server knows";
        return;
    }
    if (r->resp.status == QUIVER__V1__STATUS__OK)
        set_status(r, db, st);
}

/* Stage the entry's position for the next write: seq - 1 for a write
 * that is not the entry's last, so that a crash after it applies the
 * entry again. */
static void stage(const node_entry *e, int last)
{
    qv_position_with_next_write(e->db, e->position,
                                last ? e->seq : e->seq - 1);
}

/* One shard's local collection (config: its qv_collection_config). */
static qv_status make_collection(qv_db *db, const char *local,
                                 const void *config)
{
    return qv_create_collection(db, local, config);
}

/* One shard's local table (config: its qv_table_config). */
static qv_status make_table(qv_db *db, const char *local, const void *config)
{
    return qv_table_create(db, local, config);
}

/* The shards of map this node holds, each made by make: one that exists
 * was made by an earlier apply of the entry, cut short by a crash. The
 * entry's position goes with the last. */
static void make_held_shards(const node_entry *e, const shard_map *map,
                             qv_status (*make)(qv_db *, const char *,
                                               const void *),
                             const void *config, node_outcome *out)
{
    uint32_t last = UINT32_MAX;
    for (uint32_t s = 0; s < map->shards; s++)
        if (shard_map_holds(map, s, e->node))
            last = s;
    for (uint32_t s = 0; s < map->shards && out->status == QV_OK; s++) {
        char local[QV_NAME_MAX + 1];
        if (!shard_map_holds(map, s, e->node))
            continue;
        shard_local_name(map, s, local);
        stage(e, s == last);
        qv_status st = make(e->db, local, config);
        if (st != QV_OK && st != QV_ERR_EXISTS) {
            out->status = st;
            snprintf(out->message, sizeof out->message, "%s",
                     qv_errmsg(e->db));
        }
    }
}

/*
 * A sharded create (its placement given by the node that took it): on
 * every node the same checks, so the same outcome; then the shards this
 * node holds, each a local collection. A shard that exists is one made
 * by an earlier apply of this entry, cut short by a crash.
 */
static void apply_sharded_create(const node_entry *e,
                                 const Quiver__V1__CreateCollection *m,
                                 node_outcome *out)
{
    qv_collection_config cfg = config_from_wire(m->config);
    shard_map map;
    cfg.shards = cfg.replicas = 0;   /* each shard is a plain collection */
    if (shard_map_from_hosts(m->name, m->config->shard_serial,
                             m->config->shards, m->config->replicas,
                             m->config->placement, m->config->n_placement,
                             &map, out->message,
                             sizeof out->message) != 0) {
        out->status = QV_ERR_INVALID;
        return;
    }
    uint64_t n;
    qv_status st = qv_count(e->db, m->name, NULL, &n);
    if (st == QV_OK) {
        out->status = QV_ERR_EXISTS;
        snprintf(out->message, sizeof out->message, "collection '%s' "
                 "already exists", m->name);
    } else if (st != QV_ERR_NOT_FOUND ||
               qv_collection_config_check(e->db, &cfg) != QV_OK) {
        out->status = st != QV_ERR_NOT_FOUND ? st : QV_ERR_INVALID;
        snprintf(out->message, sizeof out->message, "%s", qv_errmsg(e->db));
    }
    if (out->status != QV_OK) {
        shard_map_release(&map);
        return;
    }
    make_held_shards(e, &map, make_collection, &cfg, out);
    shard_map_release(&map);
}

/* The name of one of this node's positions about shard s of the
 * collection created with serial: "place/SERIAL.S" (the version of the
 * last change applied to it), "boot/SERIAL.S" (a copy being made: the
 * entry that asked for it). */
static void shard_position(char *out, size_t len, const char *kind,
                           uint64_t serial, uint32_t s)
{
    snprintf(out, len, "%s/%016llx.%u", kind, (unsigned long long)serial, s);
}

/*
 * A change of a shard's placement (logged by the coordinator): a node
 * that no longer holds the shard drops its copy; a node that newly holds
 * it makes one from a node that has it (placement_copy_shard), holding the
 * log up until it can; others note the version. A change older than one
 * applied is ignored, so changes logged out of order are harmless. A
 * copy cut short by a crash is made again from nothing.
 */
static void apply_placement_change(const node_entry *e,
                                   const Quiver__V1__CreateCollection *m,
                                   node_outcome *out)
{
    const Quiver__V1__CollectionConfig *c = m->config;
    shard_map one = {.serial = c->shard_serial};
    char local[QV_NAME_MAX + 1], place[QV_NAME_MAX + 1], boot[QV_NAME_MAX + 1];
    uint64_t done = 0, copying = 0;
    snprintf(one.name, sizeof one.name, "%s", m->name);
    shard_local_name(&one, c->placement_shard, local);
    shard_position(place, sizeof place, "place", c->shard_serial,
                   c->placement_shard);
    shard_position(boot, sizeof boot, "boot", c->shard_serial,
                   c->placement_shard);
    qv_position_get(e->db, place, &done);
    qv_position_get(e->db, boot, &copying);
    if (done >= c->placement_version)
        return;
    int holds = 0;
    for (size_t i = 0; i < c->n_placement; i++)
        holds |= strcmp(c->placement[i], e->node) == 0;
    int held = holds_collection(e->db, local);
    /* the entry's own position is stored by the node once all is done */
    qv_position_put(e->db, e->position, e->seq - 1);
    if (!holds && held) {
        qv_drop_collection(e->db, local);
    } else if (holds && (!held || copying)) {
        if (!e->ctx) {   /* the server is still starting */
            *out = (node_outcome){QV_ERR_CONNECTION, "", 0, 0, 1};
            snprintf(out->message, sizeof out->message, "a copy of '%s' "
                     "waits for the server to start", local);
            return;
        }
        qv_position_put(e->db, boot, e->seq);
        if (held)
            qv_drop_collection(e->db, local);
        qv_status st = placement_copy_shard(e->ctx, c->placement,
                                         c->n_placement, local, e->seq,
                                         out->message, sizeof out->message);
        if (st != QV_OK && st != QV_ERR_NOT_FOUND) {
            out->status = st;
            out->again = 1;
            return;
        }
        /* NOT_FOUND: the collection was dropped; nothing to hold */
        out->message[0] = '\0';
        qv_position_put(e->db, boot, 0);
    }
    qv_position_put(e->db, place, c->placement_version);
}

/* Drop every local collection whose name starts with prefix (a sharded
 * collection's shards; router_drop). */
static void apply_shards_drop(const node_entry *e, const char *prefix,
                              node_outcome *out)
{
    qv_collection_info *list = NULL;
    size_t n = 0, last = SIZE_MAX;
    if (qv_list_collections(e->db, &list, &n) != QV_OK) {
        out->status = QV_ERR_IO;
        snprintf(out->message, sizeof out->message, "%s", qv_errmsg(e->db));
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (strncmp(list[i].name, prefix, strlen(prefix)) == 0)
            last = i;
    for (size_t i = 0; i < n && out->status == QV_OK; i++) {
        if (strncmp(list[i].name, prefix, strlen(prefix)) != 0)
            continue;
        stage(e, i == last);
        qv_status st = qv_drop_collection(e->db, list[i].name);
        if (st != QV_OK && st != QV_ERR_NOT_FOUND) {
            out->status = st;
            snprintf(out->message, sizeof out->message, "%s",
                     qv_errmsg(e->db));
        }
    }
    qv_free(list);
}

/* The config of a sharded table's create, as each shard's local table
 * is made: the whole table's config, not sharded. */
static qv_table_config shard_table_config(const Quiver__V1__TableConfig *c)
{
    qv_table_config cfg = {
        .rows = c->rows, .dim = c->dim,
        .method = c->method[0] ? c->method : NULL,
        .optimizer = (qv_optimizer)c->optimizer,
        .learning_rate = c->learning_rate, .init = c->init, .seed = c->seed};
    return cfg;
}

/*
 * A sharded table's create (its placement given by the node that took
 * it), as apply_sharded_create makes a collection's: on every node the
 * same checks, so the same outcome; then the shards this node holds,
 * each a local table of the whole config. A shard that exists is one
 * made by an earlier apply of this entry, cut short by a crash.
 */
static void apply_sharded_table_create(const node_entry *e,
                                       const Quiver__V1__TableCreate *m,
                                       node_outcome *out)
{
    qv_table_config cfg = shard_table_config(m->config);
    shard_map map;
    if (shard_map_from_hosts(m->name, m->config->shard_serial,
                             m->config->shards, m->config->replicas,
                             m->config->placement, m->config->n_placement,
                             &map, out->message,
                             sizeof out->message) != 0) {
        out->status = QV_ERR_INVALID;
        return;
    }
    map.table = 1;
    qv_table_info info;
    qv_status st = qv_table_describe(e->db, m->name, &info);
    if (st == QV_OK) {
        out->status = QV_ERR_EXISTS;
        snprintf(out->message, sizeof out->message, "table '%s' already "
                 "exists", m->name);
    } else if (st != QV_ERR_NOT_FOUND ||
               qv_table_config_check(e->db, &cfg) != QV_OK) {
        out->status = st != QV_ERR_NOT_FOUND ? st : QV_ERR_INVALID;
        snprintf(out->message, sizeof out->message, "%s", qv_errmsg(e->db));
    }
    make_held_shards(e, &map, make_table, &cfg, out);
    shard_map_release(&map);
}

/* Drop every local table whose name starts with prefix (a sharded
 * table's shards; table_router_drop). */
static void apply_table_shards_drop(const node_entry *e, const char *prefix,
                                    node_outcome *out)
{
    qv_table_info *list = NULL;
    size_t n = 0, last = SIZE_MAX, plen = strlen(prefix);
    if (qv_list_tables(e->db, &list, &n) != QV_OK) {
        out->status = QV_ERR_IO;
        snprintf(out->message, sizeof out->message, "%s", qv_errmsg(e->db));
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (strncmp(list[i].name, prefix, plen) == 0)
            last = i;
    for (size_t i = 0; i < n && out->status == QV_OK; i++) {
        if (strncmp(list[i].name, prefix, plen) != 0)
            continue;
        stage(e, i == last);
        qv_status st = qv_table_drop(e->db, list[i].name);
        if (st != QV_OK && st != QV_ERR_NOT_FOUND) {
            out->status = st;
            snprintf(out->message, sizeof out->message, "%s",
                     qv_errmsg(e->db));
        }
    }
    qv_free(list);
}

/* The table entries about shards that apply differs for (target: the
 * table a write names, a shard's): 1 when out holds the outcome. */
static int apply_table_shard_entry(const node_entry *e, const Request *req,
                                   const char *target, node_outcome *out)
{
    if (req->op_case == QUIVER__V1__REQUEST__OP_TABLE_DROP &&
        shard_is_prefix(target)) {
        apply_table_shards_drop(e, target, out);
        return 1;
    }
    if (holds_table(e->db, target))
        return 0;
    /* another node's shard: nothing to write here */
    *out = (node_outcome){QV_ERR_NOT_FOUND, "", 0, 1, 0};
    snprintf(out->message, sizeof out->message, "this node holds no "
             "table '%s'", target);
    return 1;
}

/* The entries about shards that apply differs for: 1 when out holds
 * the outcome. */
static int apply_shard_entry(const node_entry *e, const Request *req,
                             node_outcome *out)
{
    if (req->op_case == QUIVER__V1__REQUEST__OP_CREATE_COLLECTION &&
        req->create_collection->config &&
        req->create_collection->config->shards > 0) {
        if (req->create_collection->config->placement_version > 0)
            apply_placement_change(e, req->create_collection, out);
        else
            apply_sharded_create(e, req->create_collection, out);
        return 1;
    }
    if (req->op_case == QUIVER__V1__REQUEST__OP_TABLE_CREATE &&
        req->table_create->config && req->table_create->config->shards > 0) {
        apply_sharded_table_create(e, req->table_create, out);
        return 1;
    }
    int table;
    const char *target = op_kind_of(req->op_case) == OP_WRITES
                             ? write_target(req, &table) : NULL;
    if (!target || !is_shard_name(target))
        return 0;
    if (table)
        return apply_table_shard_entry(e, req, target, out);
    if (req->op_case == QUIVER__V1__REQUEST__OP_DROP_COLLECTION &&
        shard_is_prefix(target)) {
        apply_shards_drop(e, target, out);
        return 1;
    }
    if (holds_collection(e->db, target))
        return 0;
    /* another node's shard: nothing to write here */
    *out = (node_outcome){QV_ERR_NOT_FOUND, "", 0, 1, 0};
    snprintf(out->message, sizeof out->message, "this node holds no "
             "collection '%s'", target);
    return 1;
}

void dispatch_apply(const node_entry *e, node_outcome *out)
{
    *out = (node_outcome){QV_OK, "", 0, 0, 0};
    Request *req = quiver__v1__request__unpack(&qv_protobuf_allocator, e->len,
                                               e->data);
    if (!req) {   /* every node refuses it alike: nothing is written */
        out->status = QV_ERR_PROTOCOL;
        snprintf(out->message, sizeof out->message, "log entry of %zu bytes "
                 "is not a Request", e->len);
        return;
    }
    if (apply_shard_entry(e, req, out)) {
        quiver__v1__request__free_unpacked(req, &qv_protobuf_allocator);
        return;
    }
    dispatch_session local = {.authenticated = 1};
    struct reply r = {.resp = QUIVER__V1__RESPONSE__INIT};
    run_request(e->db, &local, req, e->data, e->len, &r);
    out->status = (qv_status)r.resp.status;
    snprintf(out->message, sizeof out->message, "%s",
             r.resp.message ? r.resp.message : "");
    if (r.resp.result_case == QUIVER__V1__RESPONSE__RESULT_COUNT)
        out->count = r.resp.count;
    qv_free(r.api_result);
    router_result_free(r.routed);
    for (size_t i = 0; i < sizeof r.scratch / sizeof *r.scratch; i++)
        qv_mem_free(r.scratch[i]);
    quiver__v1__request__free_unpacked(req, &qv_protobuf_allocator);
}

/* Whether the n requests are upserts of documents into one collection
 * (the condition for dispatch_merge), and how many documents in all. */
static int upserts_into_one(Request *const *req, size_t n, size_t *ndocs)
{
    *ndocs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!req[i] || req[i]->op_case != QUIVER__V1__REQUEST__OP_UPSERT ||
            req[i]->upsert->n_documents == 0 ||
            strcmp(req[i]->upsert->collection,
                   req[0]->upsert->collection) != 0)
            return 0;
        *ndocs += req[i]->upsert->n_documents;
    }
    return 1;
}

/*
 * Upserts into one collection applied one after another leave what one
 * upsert of all their documents in the same order leaves (a later
 * document of an id wins, quiver.h), so a run of them is one write; any
 * failure of it is left to the entries applied alone, which each get
 * their own outcome.
 */
int dispatch_merge(qv_db *db, const void *const *entries, const size_t *lens,
                   size_t n)
{
    Request **req = qv_calloc(n, sizeof *req);
    qv_doc *docs = NULL;
    size_t ndocs = 0;
    int merged = 0;
    if (!req)
        return 0;
    for (size_t i = 0; i < n; i++)
        req[i] = quiver__v1__request__unpack(&qv_protobuf_allocator, lens[i],
                                             entries[i]);
    if (upserts_into_one(req, n, &ndocs) &&
        (docs = qv_calloc(ndocs, sizeof *docs))) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < req[i]->upsert->n_documents; j++)
                docs[k++] = doc_of(req[i]->upsert->documents[j]);
        merged = qv_upsert(db, req[0]->upsert->collection, docs, ndocs) ==
                 QV_OK;
    }
    qv_mem_free(docs);
    for (size_t i = 0; i < n; i++)
        if (req[i])
            quiver__v1__request__free_unpacked(req[i], &qv_protobuf_allocator);
    qv_mem_free(req);
    return merged;
}

int dispatch_error(wbuf *out, qv_status status, const char *message)
{
    Response resp = QUIVER__V1__RESPONSE__INIT;
    resp.status = (Quiver__V1__Status)status;
    resp.message = (char *)message;
    return frame_append(out, &resp.base);
}

int dispatch_frame(qv_db *db, dispatch_session *session,
                   const uint8_t *payload, size_t len, wbuf *out)
{
    protobuf_alloc_failed(1);
    Request *req = quiver__v1__request__unpack(&qv_protobuf_allocator, len,
                                               payload);
    if (!req && protobuf_alloc_failed(1))
        return dispatch_error(out, QV_ERR_NOMEM, "out of memory decoding the "
                              "request");
    if (!req) {
        session->close_after = 1;
        return dispatch_error(out, QV_ERR_PROTOCOL,
                              "frame is not a valid Request message");
    }
    struct reply r = {.resp = QUIVER__V1__RESPONSE__INIT};
    r.resp.id = req->id;
    if (req->id == 0) {
        /* id 0 is the answer to no request, and means closing */
        session->close_after = 1;
        refuse(&r, QV_ERR_PROTOCOL, "request id 0 is reserved (an empty "
               "frame has id 0); ids start at 1");
    } else if (inspect_strings(&quiver__v1__request__descriptor, payload,
                               len, r.text, sizeof r.text)) {
        refuse(&r, QV_ERR_INVALID, r.text);
    } else if (sets_placement(req)) {
        refuse(&r, QV_ERR_INVALID, "placement is set by the cluster, not by "
               "a client");
    } else {
        run_request(db, session, req, payload, len, &r);
    }
    int rc = frame_append(out, &r.resp.base);
    qv_free(r.api_result);
    router_result_free(r.routed);
    for (size_t i = 0; i < sizeof r.scratch / sizeof *r.scratch; i++)
        qv_mem_free(r.scratch[i]);
    quiver__v1__request__free_unpacked(req, &qv_protobuf_allocator);
    return rc;
}
