/*
 * shell.c - the quiver shell's commands (docs/CLI.md).
 *
 * Every command prints either text (tables for people) or, with --json,
 * exactly one JSON object on one line; cli/command.c splits the line and
 * prints the answers.
 */
#include "cli/shell.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/json.h"

static const shell_arg *positional_arg(const shell_cmd *cmd, int i)
{
    for (int j = 1; j < cmd->n; j++) {
        if (!cmd->args[j].key && --i == 0)
            return &cmd->args[j];
    }
    return NULL;
}

/* A vector literal: a JSON array of numbers. */
static int vector_arg(shell *sh, const shell_arg *a, float **out,
                      uint32_t *dim)
{
    if (!a || !json_is_array(a->json) || json_array_size(a->json) == 0)
        return shell_fail(sh, "INVALID", "expected a vector literal like "
                          "[0.1, 0.2], not '%s'", a ? a->text : "");
    size_t n = json_array_size(a->json);
    float *v = qv_malloc(n * sizeof *v);
    if (!v)
        return shell_fail(sh, "NOMEM", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(a->json, i);
        if (!json_is_number(x)) {
            qv_mem_free(v);
            return shell_fail(sh, "INVALID", "vector element %zu is not a "
                              "number", i);
        }
        v[i] = (float)json_number_value(x);
    }
    *out = v;
    *dim = (uint32_t)n;
    return 0;
}

/* NULL when memory ran out (never a shorter vector). */
static json_t *vector_json(const float *v, uint32_t dim)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; i < dim; i++)
        json_array_append_new(arr, shell_float_json(v[i]));
    if (json_array_size(arr) != dim) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

/* arr when it holds n values, else NULL (an append ran out of memory,
 * and a list with one missing must not be printed). */
static json_t *complete(json_t *arr, size_t n)
{
    if (json_array_size(arr) == n)
        return arr;
    json_decref(arr);
    return NULL;
}

/* A payload's JSON text as a value (null when none). */
static json_t *payload_json(const char *payload)
{
    return payload ? json_loads(payload, 0, NULL) : json_null();
}

/* ---- commands ---- */

static int cmd_create(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"dim", "metric", "codec", "M",
                                       "ef_construction", "train_min",
                                       "shards", "replicas", NULL};
    qv_collection_config cfg = {.metric = QV_METRIC_L2};
    /* 0 is the API's "not given", so shards=0 and replicas=0 written
     * out are refused like M=1: leave them out instead */
    if (shell_check_options(sh, cmd, 1, opts) ||
        shell_u32_option(sh, cmd, "dim", 1, QV_DIM_MAX, &cfg.dim) ||
        shell_u32_option(sh, cmd, "M", 2, QV_M_MAX, &cfg.M) ||
        shell_u32_option(sh, cmd, "ef_construction", 1, QV_EF_MAX,
                         &cfg.ef_construction) ||
        shell_u32_option(sh, cmd, "train_min", 1, QV_TRAIN_MIN_MOST,
                         &cfg.train_min) ||
        shell_u32_option(sh, cmd, "shards", 1, QV_SHARDS_MAX, &cfg.shards) ||
        shell_u32_option(sh, cmd, "replicas", 1, QV_REPLICAS_MAX,
                         &cfg.replicas))
        return 1;
    if (!shell_option(cmd, "dim"))
        return shell_fail(sh, "INVALID", "create needs dim=N");
    const shell_arg *m = shell_option(cmd, "metric");
    if (m && qv_metric_parse(m->text, &cfg.metric) != QV_OK)
        return shell_fail(sh, "INVALID", "unknown metric '%s'; use l2, ip or "
                          "cosine", m->text);
    const shell_arg *codec = shell_option(cmd, "codec");
    cfg.codec = codec ? codec->text : NULL;
    qv_status st = qv_create_collection(sh->db, shell_positional(cmd, 1), &cfg);
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

static int cmd_collections(shell *sh, const shell_cmd *cmd)
{
    qv_collection_info *list = NULL;
    size_t n = 0;
    if (shell_check_options(sh, cmd, 0, NULL))
        return 1;
    qv_status st = qv_list_collections(sh->db, &list, &n);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I, s:i, s:s}", "name",
                                             list[i].name, "count",
                                             (json_int_t)list[i].count, "dim",
                                             (int)list[i].dim, "metric",
                                             qv_metric_name(list[i].metric)));
    if (!sh->json) {
        printf("%-24s %12s %6s  %s\n", "name", "count", "dim", "metric");
        for (size_t i = 0; i < n; i++)
            printf("%-24s %12llu %6u  %s\n", list[i].name,
                   (unsigned long long)list[i].count, list[i].dim,
                   qv_metric_name(list[i].metric));
        printf("(%zu collection%s)\n", n, n == 1 ? "" : "s");
    }
    shell_emit(sh, json_pack("{s:o}", "collections", complete(arr, n)));
    qv_free(list);
    return 0;
}

static const char *const index_types[] = {"keyword", "int", "float"};

static const char *index_type_name(qv_index_type t)
{
    return (unsigned)t < 3 ? index_types[t] : "unknown";
}

/* The collection's payload indexes as [{"field","type"}...], NULL when
 * out of memory. */
static json_t *indexes_json(const qv_index_info *list, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s}", "field",
                                             list[i].field, "type",
                                             index_type_name(list[i].type)));
    return complete(arr, n);
}

/* Node name's lag_entries in a cluster status's "nodes", or NULL when
 * it is not live. */
static json_t *node_lag(json_t *status, const char *name)
{
    json_t *nodes = json_object_get(status, "nodes");
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *n = json_array_get(nodes, i);
        const char *node = json_string_value(json_object_get(n, "node"));
        if (node && strcmp(node, name) == 0)
            return json_object_get(n, "lag_entries");
    }
    return NULL;
}

/* A sharded collection's placement as the cluster status gives it, each
 * replica with its node's lag: [[{"node", "lag_entries"}, ...] per
 * shard], or NULL (the status could not be read: describe goes on
 * without it). */
static json_t *placement_json(shell *sh, const char *name)
{
    char *text = NULL;
    if (qv_cluster_status(sh->db, &text) != QV_OK)
        return NULL;
    json_t *status = json_loads(text, 0, NULL), *out = NULL;
    qv_free(text);
    json_t *sharded = json_object_get(status, "sharded");
    for (size_t i = 0; !out && i < json_array_size(sharded); i++) {
        json_t *m = json_array_get(sharded, i);
        const char *mname = json_string_value(json_object_get(m, "name"));
        if (!mname || strcmp(mname, name) != 0)
            continue;
        json_t *placement = json_object_get(m, "placement");
        out = json_array();
        for (size_t s = 0; out && s < json_array_size(placement); s++) {
            json_t *hosts = json_array_get(placement, s), *shard = json_array();
            for (size_t r = 0; shard && r < json_array_size(hosts); r++) {
                const char *node = json_string_value(json_array_get(hosts, r));
                json_t *lag = node ? node_lag(status, node) : NULL;
                json_array_append_new(shard, json_pack(
                    "{s:s, s:O}", "node", node ? node : "?", "lag_entries",
                    lag ? lag : json_null()));
            }
            json_array_append_new(out, shard);
        }
    }
    json_decref(status);
    return out;
}

static int cmd_describe(shell *sh, const shell_cmd *cmd)
{
    qv_collection_info c;
    qv_index_info *ix = NULL;
    size_t nix = 0;
    if (shell_check_options(sh, cmd, 1, NULL))
        return 1;
    qv_status st = qv_describe_collection(sh->db, shell_positional(cmd, 1), &c);
    if (st == QV_OK)
        st = qv_list_indexes(sh->db, shell_positional(cmd, 1), &ix, &nix);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_t *o = json_pack("{s:s, s:I, s:i, s:s, s:s, s:b, s:i, s:i, s:i, "
                          "s:i, s:I, s:I}",
                          "name", c.name, "count", (json_int_t)c.count, "dim",
                          (int)c.dim, "metric", qv_metric_name(c.metric),
                          "codec", c.codec, "codec_trained", c.codec_trained,
                          "train_min", (int)c.train_min, "code_bytes",
                          (int)c.code_bytes, "M", (int)c.M, "ef_construction",
                          (int)c.ef_construction, "disk_bytes",
                          (json_int_t)c.disk_bytes, "memory_bytes",
                          (json_int_t)c.memory_bytes);
    /* a sharded collection's (on a cluster node); ordinary ones have none;
     * a node not live has lag null */
    if (o && c.shards &&
        (json_object_set_new(o, "shards", json_integer(c.shards)) ||
         json_object_set_new(o, "replicas", json_integer(c.replicas)))) {
        json_decref(o);   /* shell_emit says the output was lost */
        o = NULL;
    }
    json_t *placement = o && c.shards ? placement_json(sh, c.name) : NULL;
    if (placement && json_object_set_new(o, "placement", placement)) {
        json_decref(o);
        o = NULL;
    }
    json_t *indexes = indexes_json(ix, nix);
    if (sh->json) {
        if (o && (!indexes || json_object_set_new(o, "indexes", indexes))) {
            json_decref(o);   /* shell_emit says the output was lost */
            o = NULL;
        }
        shell_emit(sh, o);
    } else {
        shell_emit_fields(sh, o);
        json_decref(indexes);
        printf("%-16s %s", "indexes", nix ? "" : "none");
        for (size_t i = 0; i < nix; i++)
            printf("%s%s (%s)", i ? ", " : "", ix[i].field,
                   index_type_name(ix[i].type));
        printf("\n");
    }
    qv_free(ix);
    return 0;
}

static int cmd_drop(shell *sh, const shell_cmd *cmd)
{
    if (shell_check_options(sh, cmd, 1, NULL))
        return 1;
    qv_status st = qv_drop_collection(sh->db, shell_positional(cmd, 1));
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

static int cmd_upsert(shell *sh, const shell_cmd *cmd)
{
    const shell_arg *vec = positional_arg(cmd, 3), *pl = positional_arg(cmd, 4);
    int npos = pl ? 4 : 3;
    float *v = NULL;
    uint32_t dim;
    if (shell_check_options(sh, cmd, npos, NULL) ||
        vector_arg(sh, vec, &v, &dim))
        return 1;
    char *payload = NULL;
    if (pl) {
        if (!pl->json || !json_is_object(pl->json)) {
            qv_mem_free(v);
            return shell_fail(sh, "INVALID", "payload must be a JSON object, "
                              "not '%s'", pl->text);
        }
        payload = json_dumps(pl->json, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!payload) {   /* not stored without it */
            qv_mem_free(v);
            return shell_fail(sh, "NOMEM", "out of memory for the payload");
        }
    }
    qv_doc doc = {shell_positional(cmd, 2), v, dim, payload};
    qv_status st = qv_upsert(sh->db, shell_positional(cmd, 1), &doc, 1);
    qv_mem_free(v);
    free(payload);
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

static int cmd_get(shell *sh, const shell_cmd *cmd)
{
    qv_record *r;
    if (shell_check_options(sh, cmd, 2, NULL))
        return 1;
    qv_status st = qv_get(sh->db, shell_positional(cmd, 1), shell_positional(cmd, 2), &r);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    if (!sh->json) {
        char num[SHELL_FLOAT_CHARS];
        printf("id       %s\nvector   [", r->id);
        for (uint32_t i = 0; i < r->dim; i++)
            printf("%s%s", i ? ", " : "", shell_float_text(r->vector[i], num));
        printf("]\npayload  %s\n", r->payload ? r->payload : "(none)");
    }
    shell_emit(sh, json_pack("{s:s, s:o, s:o}", "id", r->id, "vector",
                             vector_json(r->vector, r->dim), "payload",
                             payload_json(r->payload)));
    qv_free(r);
    return 0;
}

static int cmd_delete(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"where", NULL};
    const shell_arg *where = shell_option(cmd, "where");
    if (shell_check_options(sh, cmd, where ? 1 : 2, opts))
        return 1;
    if (!where) {
        qv_status st = qv_delete(sh->db, shell_positional(cmd, 1),
                                 shell_positional(cmd, 2));
        return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
    }
    uint64_t n = 0;
    qv_status st = qv_delete_where(sh->db, shell_positional(cmd, 1), where->text,
                                   &n);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    if (!sh->json)
        printf("deleted %llu document%s\n", (unsigned long long)n,
               shell_plural(n));
    shell_emit(sh, json_pack("{s:I}", "deleted", (json_int_t)n));
    return 0;
}

static int cmd_scan(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"where", "limit", "cursor", NULL};
    uint32_t limit = 10;
    qv_page *page;
    if (shell_check_options(sh, cmd, 1, opts) ||
        shell_u32_option(sh, cmd, "limit", 1, 10000, &limit))
        return 1;
    const shell_arg *where = shell_option(cmd, "where"),
                    *cursor = shell_option(cmd, "cursor");
    qv_status st = qv_scan_where(sh->db, shell_positional(cmd, 1),
                                 where ? where->text : NULL,
                                 cursor ? cursor->text : NULL, limit, &page);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_t *docs = json_array();
    for (size_t i = 0; i < page->count; i++) {
        const qv_record *r = &page->records[i];
        if (!sh->json)
            printf("%-24s %s\n", r->id, r->payload ? r->payload : "(none)");
        json_array_append_new(docs, json_pack("{s:s, s:o}", "id", r->id,
                                              "payload",
                                              payload_json(r->payload)));
    }
    if (!sh->json)
        printf(page->next ? "(more: cursor=\"%s\")\n" : "(end)\n",
               page->next);
    shell_emit(sh, json_pack("{s:o, s:o}", "documents",
                             complete(docs, page->count), "cursor",
                             page->next ? json_string(page->next)
                                        : json_null()));
    qv_free(page);
    return 0;
}

static int bool_option(shell *sh, const shell_cmd *cmd, const char *key,
                       int *out)
{
    const shell_arg *a = shell_option(cmd, key);
    if (!a)
        return 0;
    if (strcmp(a->text, "true") && strcmp(a->text, "false"))
        return shell_fail(sh, "INVALID", "%s must be true or false, not '%s'",
                          key, a->text);
    *out = strcmp(a->text, "true") == 0;
    return 0;
}

static void print_hits(const qv_hits *hits, int with_payload)
{
    printf("%4s  %-24s %12s%s\n", "rank", "id", "distance",
           with_payload ? "  payload" : "");
    for (size_t i = 0; i < hits->count; i++) {
        char num[SHELL_FLOAT_CHARS];
        printf("%4zu  %-24s %12s", i + 1, hits->hits[i].id,
               shell_float_text(hits->hits[i].distance, num));
        if (with_payload)
            printf("  %s", hits->hits[i].payload ? hits->hits[i].payload
                                                 : "(none)");
        putchar('\n');
    }
    printf("(%zu hit%s)\n", hits->count, hits->count == 1 ? "" : "s");
    if (hits->missing_count == 0)
        return;
    printf("missing shards:");
    for (size_t i = 0; i < hits->missing_count; i++)
        printf("%s %u", i ? "," : "", hits->missing[i]);
    printf(" (no replica answered: the hits are the other shards')\n");
}

/* The plan as compact JSON, its numbers at 9 digits as in JSON mode
 * (0.1562, not 0.15620000000000001); as given if it does not parse. */
static void print_explain(const char *explain)
{
    json_t *plan = json_loads(explain, 0, NULL);
    char *text = plan ? json_dumps(plan, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                             JSON_REAL_PRECISION(9))
                      : NULL;
    printf("explain: %s\n", text ? text : explain);
    free(text);
    json_decref(plan);
}

/* partial=true: the shards no replica answered for, as a JSON array. */
static json_t *missing_json(const qv_hits *hits)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < hits->missing_count; i++)
        json_array_append_new(arr, json_integer(hits->missing[i]));
    return complete(arr, hits->missing_count);
}

/* The query: the VECTOR argument, or with id=ID the vector stored for
 * document ID (read once, before the search). */
static int query_vector(shell *sh, const shell_cmd *cmd, float **out,
                        uint32_t *dim)
{
    const shell_arg *id = shell_option(cmd, "id");
    if (!id)
        return vector_arg(sh, positional_arg(cmd, 2), out, dim);
    qv_record *r;
    qv_status st = qv_get(sh->db, shell_positional(cmd, 1), id->text, &r);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    float *v = qv_malloc((size_t)r->dim * sizeof *v);
    if (v) {
        memcpy(v, r->vector, (size_t)r->dim * sizeof *v);
        *out = v;
        *dim = r->dim;
    }
    qv_free(r);
    return v ? 0 : shell_fail(sh, "NOMEM", "out of memory");
}

static int cmd_search(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"k", "ef", "exact", "payload", "where",
                                       "explain", "rerank", "partial", "id",
                                       NULL};
    int positional = shell_option(cmd, "id") ? 1 : 2;
    qv_search_options opt = {.k = 10};
    uint32_t rerank = 0;
    float *v = NULL;
    uint32_t dim;
    qv_hits *hits;
    if (shell_check_options(sh, cmd, positional, opts) ||
        shell_u32_option(sh, cmd, "k", 1, QV_K_MAX, &opt.k) ||
        shell_u32_option(sh, cmd, "ef", 0, QV_EF_MAX, &opt.ef) ||
        bool_option(sh, cmd, "exact", &opt.exact) ||
        bool_option(sh, cmd, "payload", &opt.with_payload) ||
        bool_option(sh, cmd, "explain", &opt.explain) ||
        bool_option(sh, cmd, "partial", &opt.partial) ||
        shell_u32_option(sh, cmd, "rerank", 0, QV_RERANK_MAX, &rerank) ||
        query_vector(sh, cmd, &v, &dim))
        return 1;
    opt.rerank = rerank;
    opt.no_rerank = shell_option(cmd, "rerank") && rerank == 0;
    const shell_arg *where = shell_option(cmd, "where");
    opt.filter = where ? where->text : NULL;
    qv_status st = qv_search(sh->db, shell_positional(cmd, 1), v, dim, &opt, &hits);
    qv_mem_free(v);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_t *arr = json_array();
    for (size_t i = 0; i < hits->count; i++) {
        /* JSON has no inf or NaN: such a distance (only vectors stored
         * before the magnitude bound can give one) is null, the hit kept */
        const qv_hit *hit = &hits->hits[i];
        json_t *dist = isfinite(hit->distance)
                           ? shell_float_json(hit->distance) : json_null();
        json_array_append_new(
            arr, opt.with_payload
                     ? json_pack("{s:s, s:o, s:o}", "id", hit->id, "distance",
                                 dist, "payload", payload_json(hit->payload))
                     : json_pack("{s:s, s:o}", "id", hit->id, "distance",
                                 dist));
    }
    if (!sh->json) {
        print_hits(hits, opt.with_payload);
        if (hits->explain)
            print_explain(hits->explain);
    }
    json_t *o = json_pack("{s:o}", "hits", complete(arr, hits->count));
    if (hits->explain &&
        json_object_set_new(o, "explain", json_loads(hits->explain, 0, NULL))) {
        json_decref(o);
        o = NULL;
    }
    if (o && opt.partial &&
        json_object_set_new(o, "missing_shards", missing_json(hits))) {
        json_decref(o);
        o = NULL;
    }
    shell_emit(sh, o);
    qv_free(hits);
    return 0;
}

static int cmd_index(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"type", NULL};
    if (shell_check_options(sh, cmd, 2, opts))
        return 1;
    const shell_arg *t = shell_option(cmd, "type");
    int type = -1;
    for (int i = 0; t && i < 3; i++) {
        if (!strcmp(t->text, index_types[i]))
            type = i;
    }
    if (type < 0)
        return shell_fail(sh, "INVALID", "index needs type=keyword, int or "
                          "float");
    qv_status st = qv_create_index(sh->db, shell_positional(cmd, 1),
                                   shell_positional(cmd, 2), (qv_index_type)type);
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

static int cmd_unindex(shell *sh, const shell_cmd *cmd)
{
    if (shell_check_options(sh, cmd, 2, NULL))
        return 1;
    qv_status st = qv_drop_index(sh->db, shell_positional(cmd, 1),
                                 shell_positional(cmd, 2));
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

static int cmd_count(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"where", NULL};
    uint64_t n;
    if (shell_check_options(sh, cmd, 1, opts))
        return 1;
    const shell_arg *where = shell_option(cmd, "where");
    qv_status st = qv_count(sh->db, shell_positional(cmd, 1),
                            where ? where->text : NULL, &n);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    if (!sh->json)
        printf("%llu\n", (unsigned long long)n);
    shell_emit(sh, json_pack("{s:I}", "count", (json_int_t)n));
    return 0;
}

static int cmd_backup(shell *sh, const shell_cmd *cmd)
{
    if (shell_check_options(sh, cmd, 1, NULL))
        return 1;
    qv_status st = qv_backup(sh->db, shell_positional(cmd, 1));
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    if (!sh->json)
        printf("backup written to %s\n", shell_positional(cmd, 1));
    shell_emit(sh, json_pack("{s:b, s:s}", "ok", 1, "dir",
                             shell_positional(cmd, 1)));
    return 0;
}

static int cmd_train(shell *sh, const shell_cmd *cmd)
{
    if (shell_check_options(sh, cmd, 1, NULL))
        return 1;
    qv_status st = qv_train(sh->db, shell_positional(cmd, 1));
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

static int cmd_compact(shell *sh, const shell_cmd *cmd)
{
    if (shell_check_options(sh, cmd, 0, NULL))
        return 1;
    char *before = NULL, *after = NULL;
    qv_status st = qv_stats(sh->db, &before);
    if (st == QV_OK)
        st = qv_compact(sh->db);
    if (st == QV_OK)
        st = qv_stats(sh->db, &after);
    long long b = -1, a = -1;
    const char *key = "\"file_bytes\":";
    if (before && strstr(before, key))
        b = atoll(strstr(before, key) + strlen(key));
    if (after && strstr(after, key))
        a = atoll(strstr(after, key) + strlen(key));
    qv_free(before);
    qv_free(after);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    if (!sh->json)
        printf("database file: %lld -> %lld bytes\n", b, a);
    shell_emit(sh, json_pack("{s:b, s:I, s:I}", "ok", 1, "file_bytes_before",
                             (json_int_t)b, "file_bytes_after",
                             (json_int_t)a));
    return 0;
}

static int cmd_check(shell *sh, const shell_cmd *cmd)
{
    char *report = NULL;
    if (shell_check_options(sh, cmd, 0, NULL))
        return 1;
    qv_status st = qv_check(sh->db, &report);
    if (!report)
        return shell_api_fail(sh, st);
    json_t *lines = json_array();
    size_t n = 0;
    for (char *line = strtok(report, "\n"); line; line = strtok(NULL, "\n")) {
        if (!sh->json)
            puts(line);
        json_array_append_new(lines, json_string(line));
        n++;
    }
    qv_free(report);
    shell_emit(sh, json_pack("{s:b, s:o}", "ok", st == QV_OK, "report",
                             complete(lines, n)));
    return st == QV_OK ? 0 : 1;
}

static int cmd_stats(shell *sh, const shell_cmd *cmd)
{
    char *text = NULL;
    if (shell_check_options(sh, cmd, 0, NULL))
        return 1;
    qv_status st = qv_stats(sh->db, &text);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    qv_free(text);
    if (!o)
        return shell_fail(sh, "INTERNAL", "stats are not a JSON object: %s",
                          err.text[0] ? err.text : "out of memory?");
    shell_emit_fields(sh, o);
    return 0;
}

/* cluster drain NODE / cluster undrain NODE. */
static int cluster_drain(shell *sh, const shell_cmd *cmd, int cancel)
{
    const char *node = shell_positional(cmd, 2);
    if (shell_check_options(sh, cmd, 2, NULL))
        return 1;
    qv_status st = qv_cluster_drain(sh->db, node, cancel);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    shell_emit_fields(sh, json_pack("{s:s, s:b}", "node", node, "draining",
                                    !cancel));
    return 0;
}

/* cluster status: the cluster as the connected node sees it; cluster
 * drain / undrain NODE. */
static int cmd_cluster(shell *sh, const shell_cmd *cmd)
{
    const char *what = shell_positional(cmd, 1);  /* NULL: none given */
    if (what && (strcmp(what, "drain") == 0 || strcmp(what, "undrain") == 0))
        return cluster_drain(sh, cmd, strcmp(what, "undrain") == 0);
    if (shell_check_options(sh, cmd, 1, NULL))
        return 1;
    if (strcmp(what, "status") != 0)
        return shell_fail(sh, "INVALID", "cluster: unknown subcommand '%s' "
                          "(cluster status, cluster drain NODE, cluster "
                          "undrain NODE)", what);
    char *text = NULL;
    qv_status st = qv_cluster_status(sh->db, &text);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    qv_free(text);
    if (!o)
        return shell_fail(sh, "INTERNAL", "cluster status is not a JSON "
                          "object: %s", err.text[0] ? err.text : "out of "
                          "memory?");
    shell_emit_fields(sh, o);
    return 0;
}

struct command {
    const char *name;
    int (*run)(shell *sh, const shell_cmd *cmd);
    const char *usage;
    const char *help;
};

static int cmd_help(shell *sh, const shell_cmd *cmd);

static const struct command commands[] = {
    {"create", cmd_create,
     "create NAME dim=N [metric=l2|ip|cosine] "
     "[codec=none|f16|sq8|pq:M|bin|prune:K] [train_min=N] [M=16] "
     "[ef_construction=200] [shards=S [replicas=R]]",
     "Create a collection and its HNSW index. shards= and replicas= make a "
     "sharded collection, on a cluster node only (docs/CLUSTER.md)."},
    {"collections", cmd_collections, "collections",
     "List the collections: name, count, dim, metric."},
    {"describe", cmd_describe, "describe NAME",
     "One collection: count, dim, metric, codec, M, ef_construction, bytes "
     "on disk and in memory, shards and replicas when sharded, and its "
     "payload indexes with their types."},
    {"drop", cmd_drop, "drop NAME", "Remove a collection and its documents."},
    {"upsert", cmd_upsert, "upsert NAME ID VECTOR [{json payload}]",
     "Insert or replace one document; VECTOR, required, is a JSON array "
     "of numbers: [0.1, 0.2, ...]. Quote an id with spaces as a JSON "
     "string: \"my id\"."},
    {"get", cmd_get, "get NAME ID", "Show one document."},
    {"delete", cmd_delete, "delete NAME ID | delete NAME where={json filter}",
     "Delete one document, or every document matching the filter (one "
     "transaction)."},
    {"scan", cmd_scan, "scan NAME [where={json filter}] [limit=10] "
     "[cursor=ID]",
     "Page through documents (matching the filter) in id order; pass the "
     "cursor printed for the next page."},
    {"search", cmd_search,
     "search NAME VECTOR|id=ID [k=10] [ef=64] [exact=true] [payload=true] "
     "[where={json filter}] [explain=true] [rerank=R] [partial=true]",
     "Nearest documents to VECTOR, a JSON array of numbers ([0.1, 0.2, "
     "...]), or with id=ID to the vector stored for document ID (itself "
     "among the hits, at distance 0), through the index (exact=true: brute "
     "force); "
     "payload=true shows each hit's payload; where= keeps the documents "
     "whose payload matches (docs/FILTERS.md), k of them whenever k match. "
     "With a codec, rerank= candidates are re-scored with full vectors "
     "(default 4k; rerank=0: code distances). On a sharded collection, "
     "partial=true answers from the shards that answered and names the "
     "missing ones."},
    {"table", cmd_table,
     "table create|lookup|update|describe|import|export|drop NAME ...",
     "Embedding tables (docs/EMBEDDINGS.md), one subcommand each: create "
     "(shards=: a cluster node's sharded table), lookup rows by id, update "
     "(one optimizer step, one gradient per id), describe, import trained "
     "rows (fvecs, bvecs, npy) from row first on, export rows 0 .. rows-1 "
     "as fvecs, drop."},
    {"tables", cmd_tables, "tables",
     "List the embedding tables: name, method, rows, dim, optimizer, "
     "compression ratio."},
    {"train", cmd_train, "train NAME",
     "Train the collection's codec again on a sample of its vectors and "
     "re-encode them all (docs/CODECS.md)."},
    {"index", cmd_index, "index NAME FIELD type=keyword|int|float",
     "Index a payload field (a dotted path) so that filters on it need "
     "not read every payload; filled from the documents already there."},
    {"unindex", cmd_unindex, "unindex NAME FIELD",
     "Drop the payload index on FIELD; filters on it read payloads again."},
    {"count", cmd_count, "count NAME [where={json filter}]",
     "The documents of a collection, or those matching the filter."},
    {"import", cmd_import,
     "import NAME FILE [format=fvecs|bvecs|npy|jsonl] [batch=1000] "
     "[threads=T]",
     "Stream a file into a collection in batches (ids of fvecs, bvecs and "
     "npy rows are their row numbers). A bad row stops the import; batches "
     "already committed stay, and running it again is safe."},
    {"export", cmd_export, "export NAME FILE [format=jsonl|fvecs]",
     "Write every document in id order (fvecs: vectors only); numeric "
     "order when every id is a row number (0, 1, ... 10), as fvecs, bvecs "
     "and npy imports name rows."},
    {"backup", cmd_backup, "backup DIR",
     "Write a consistent, compacted copy of the database into DIR while it "
     "stays in use."},
    {"compact", cmd_compact, "compact", "Give back the space of deleted "
     "documents: the file is rewritten compacted. Needs the database to "
     "itself (no other process)."},
    {"stats", cmd_stats, "stats", "Database-wide figures."},
    {"cluster", cmd_cluster, "cluster status | cluster drain NODE | "
     "cluster undrain NODE", "The cluster as the connected node sees it: "
     "the write log's last entry, each live node and how far behind it is, "
     "the placement of sharded collections and the moves under way; drain "
     "moves a node's replicas to others before it is stopped, undrain "
     "stops that (quiverd --cluster only)."},
    {"check", cmd_check, "check", "Verify every invariant of the database "
     "(id maps, documents, vectors, checksums, each index's graph); the "
     "exit status is 0 only when all holds."},
    {"help", cmd_help, "help [COMMAND]", "List the commands, or explain one."},
    {"quit", NULL, "quit", "Leave the shell (also: exit, end of input)."},
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

const char *const shell_command_names[] = {
    "create", "collections", "describe", "drop", "upsert", "get", "delete",
    "scan",
    "search", "count", "index", "import", "export", "backup", "compact",
    "train", "table", "tables", "unindex",
    "stats", "cluster",
    "check",
    "help",
    "quit", NULL};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return strcmp(name, "exit") == 0 ? find_command("quit") : NULL;
}

/* The usage of each table subcommand, each on a line when print. */
static json_t *table_usages_json(int print)
{
    json_t *arr = json_array();
    const char *usage;
    size_t n = 0;
    for (; (usage = table_usage(n)) != NULL; n++) {
        if (print)
            printf("  %s\n", usage);
        json_array_append_new(arr, json_string(usage));
    }
    return complete(arr, n);
}

/* help COMMAND; for table, each subcommand's usage too. */
static int help_command(shell *sh, const struct command *c)
{
    if (!sh->json)
        printf("usage: %s\n%s\n", c->usage, c->help);
    json_t *o = json_pack("{s:s, s:s, s:s}", "command", c->name, "usage",
                          c->usage, "help", c->help);
    if (o && c->run == cmd_table &&
        json_object_set_new(o, "subcommands", table_usages_json(!sh->json))) {
        json_decref(o);
        o = NULL;
    }
    shell_emit(sh, o);
    return 0;
}

static int cmd_help(shell *sh, const shell_cmd *cmd)
{
    if (cmd->n > 2)
        return shell_fail(sh, "INVALID", "usage: help [COMMAND]");
    if (cmd->n == 2) {
        const struct command *c = find_command(cmd->args[1].text);
        if (!c)
            return shell_fail(sh, "INVALID", "no command '%s'; type help",
                              cmd->args[1].text);
        return help_command(sh, c);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (!sh->json)
            printf("  %s\n", commands[i].usage);
        json_array_append_new(arr, json_string(commands[i].usage));
    }
    if (!sh->json)
        puts("help COMMAND explains one.");
    shell_emit(sh, json_pack("{s:o}", "commands", complete(arr, NCOMMANDS)));
    return 0;
}

int shell_run_line(shell *sh, const char *line)
{
    shell_cmd cmd = {0};
    char err[256];
    int rc;
    if (shell_parse(line, &cmd, err, sizeof err) != 0) {
        shell_cmd_free(&cmd);
        return shell_fail(sh, "INVALID", "%s", err);
    }
    if (cmd.n == 0)
        return 0;
    const struct command *c = find_command(cmd.args[0].text);
    if (cmd.args[0].key || cmd.args[0].json || !c)
        rc = shell_fail(sh, "INVALID", "unknown command '%s'; type help",
                        cmd.args[0].text);
    else if (!c->run)
        rc = -1;
    else {
        sh->output_lost = 0;
        rc = c->run(sh, &cmd);
        rc = rc == 0 && sh->output_lost ? 1 : rc;
    }
    shell_cmd_free(&cmd);
    fflush(stdout);
    return rc;
}
