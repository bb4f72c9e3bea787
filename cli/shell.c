/*
 * shell.c - the quiver shell: one command per line, plain-text results.
 *
 * Vector literals and payloads are JSON, parsed with jansson; everything
 * else is whitespace-separated words and key=value options.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cli.h"

#define LINE_MAX_BYTES (8u << 20)
#define MAX_WORDS 8

/* A command line split into leading words and the rest. */
struct cmdline {
    char *words[MAX_WORDS];
    int nwords;
    const char *rest;   /* text after the words taken */
};

/* Take up to max whitespace-separated words from line (modified in place). */
static void take_words(char *line, int max, struct cmdline *cl)
{
    char *p = line;
    cl->nwords = 0;
    while (cl->nwords < max) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '[' || *p == '{')
            break;
        cl->words[cl->nwords++] = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (*p)
            *p++ = '\0';
    }
    while (isspace((unsigned char)*p))
        p++;
    cl->rest = p;
}

static int fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

static int api_fail(qv_db *db, qv_status st)
{
    fprintf(stderr, "error: %s: %s\n", qv_status_name(st), qv_errmsg(db));
    return 1;
}

/*
 * Parse a JSON array of numbers at *text into a new float array; advance
 * *text past it. Returns 0 or 1 after printing why.
 */
static int parse_vector(const char **text, float **out, uint32_t *dim)
{
    json_error_t jerr;
    json_t *arr = json_loads(*text, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY,
                             &jerr);
    if (!arr || !json_is_array(arr) || json_array_size(arr) == 0) {
        json_decref(arr);
        return fail("expected a vector literal like [0.1, 0.2], at '%.40s'",
                    *text);
    }
    size_t n = json_array_size(arr);
    float *v = qv_malloc(n * sizeof *v);
    int rc = v ? 0 : fail("%s", "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *x = json_array_get(arr, i);
        if (!json_is_number(x)) {
            char idx[32];
            snprintf(idx, sizeof idx, "%zu", i);
            rc = fail("vector element %s is not a number", idx);
        } else {
            v[i] = (float)json_number_value(x);
        }
    }
    *text += jerr.position;
    json_decref(arr);
    if (rc != 0) {
        qv_mem_free(v);
        return rc;
    }
    *out = v;
    *dim = (uint32_t)n;
    return 0;
}

static const char *skip_space(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* Parse "key=N" into *out when w starts with key=; 1 if it did, -1 on a
 * bad number (message printed), 0 if w is another option. */
static int option_u32(const char *w, const char *key, uint32_t max,
                      uint32_t *out)
{
    size_t n = strlen(key);
    if (strncmp(w, key, n) != 0 || w[n] != '=')
        return 0;
    char *end;
    long v = strtol(w + n + 1, &end, 10);
    if (end == w + n + 1 || *end || v < 0 || v > (long)max) {
        fprintf(stderr, "error: bad %s '%s'\n", key, w + n + 1);
        return -1;
    }
    *out = (uint32_t)v;
    return 1;
}

static int cmd_create(qv_db *db, struct cmdline *cl)
{
    qv_collection_config cfg = {.metric = QV_METRIC_L2};
    if (cl->nwords < 3)
        return fail("%s", "usage: create NAME dim=N [metric=l2|ip|cosine] "
                    "[M=16] [ef_construction=200]");
    for (int i = 2; i < cl->nwords; i++) {
        char *w = cl->words[i];
        int r;
        if ((r = option_u32(w, "M", QV_M_MAX, &cfg.M)) ||
            (r = option_u32(w, "ef_construction", QV_EF_MAX,
                            &cfg.ef_construction))) {
            if (r < 0)
                return 1;
        } else if (strncmp(w, "dim=", 4) == 0) {
            char *end;
            long d = strtol(w + 4, &end, 10);
            if (*end || d <= 0 || d > QV_DIM_MAX)
                return fail("bad dimension '%s'", w + 4);
            cfg.dim = (uint32_t)d;
        } else if (strncmp(w, "metric=", 7) == 0) {
            if (qv_metric_parse(w + 7, &cfg.metric) != QV_OK)
                return fail("unknown metric '%s'; use l2, ip or cosine",
                            w + 7);
        } else {
            return fail("unknown option '%s'", w);
        }
    }
    if (cfg.dim == 0)
        return fail("%s", "create needs dim=N");
    qv_status st = qv_create_collection(db, cl->words[1], &cfg);
    if (st != QV_OK)
        return api_fail(db, st);
    puts("ok");
    return 0;
}

static void print_info(const qv_collection_info *c)
{
    printf("%-24s dim=%-6u metric=%-6s count=%-10llu M=%u "
           "ef_construction=%u\n", c->name, c->dim, qv_metric_name(c->metric),
           (unsigned long long)c->count, c->M, c->ef_construction);
}

static int cmd_collections(qv_db *db)
{
    qv_collection_info *list;
    size_t n;
    qv_status st = qv_list_collections(db, &list, &n);
    if (st != QV_OK)
        return api_fail(db, st);
    for (size_t i = 0; i < n; i++)
        print_info(&list[i]);
    if (n == 0)
        puts("(no collections)");
    qv_free(list);
    return 0;
}

static int cmd_describe(qv_db *db, struct cmdline *cl)
{
    qv_collection_info info;
    if (cl->nwords != 2)
        return fail("%s", "usage: describe NAME");
    qv_status st = qv_describe_collection(db, cl->words[1], &info);
    if (st != QV_OK)
        return api_fail(db, st);
    print_info(&info);
    return 0;
}

static int cmd_drop(qv_db *db, struct cmdline *cl)
{
    if (cl->nwords != 2)
        return fail("%s", "usage: drop NAME");
    qv_status st = qv_drop_collection(db, cl->words[1]);
    if (st != QV_OK)
        return api_fail(db, st);
    puts("ok");
    return 0;
}

static int cmd_upsert(qv_db *db, struct cmdline *cl)
{
    const char *p = cl->rest;
    float *vec = NULL;
    uint32_t dim;
    if (cl->nwords != 3 || *p != '[')
        return fail("%s", "usage: upsert NAME ID [v1, v2, ...] [{payload}]");
    if (parse_vector(&p, &vec, &dim) != 0)
        return 1;
    p = skip_space(p);
    qv_doc doc = {cl->words[2], vec, dim, *p ? p : NULL};
    qv_status st = qv_upsert(db, cl->words[1], &doc, 1);
    qv_mem_free(vec);
    if (st != QV_OK)
        return api_fail(db, st);
    puts("ok");
    return 0;
}

static int cmd_get(qv_db *db, struct cmdline *cl)
{
    qv_record *r;
    if (cl->nwords != 3)
        return fail("%s", "usage: get NAME ID");
    qv_status st = qv_get(db, cl->words[1], cl->words[2], &r);
    if (st != QV_OK)
        return api_fail(db, st);
    printf("id: %s\nvector: [", r->id);
    for (uint32_t i = 0; i < r->dim; i++)
        printf(i ? ", %.9g" : "%.9g", (double)r->vector[i]);
    printf("]\npayload: %s\n", r->payload ? r->payload : "(none)");
    qv_free(r);
    return 0;
}

static int cmd_delete(qv_db *db, struct cmdline *cl)
{
    if (cl->nwords != 3)
        return fail("%s", "usage: delete NAME ID");
    qv_status st = qv_delete(db, cl->words[1], cl->words[2]);
    if (st != QV_OK)
        return api_fail(db, st);
    puts("ok");
    return 0;
}

/* Parse the options after a search vector: k=N ef=N exact=true|false. */
static int parse_search_options(const char *text, qv_search_options *opt)
{
    char buf[256];
    *opt = (qv_search_options){.k = 10};
    for (const char *p = skip_space(text); *p; p = skip_space(p)) {
        size_t n = strcspn(p, " \t\r\n");
        if (n >= sizeof buf)
            return fail("search option too long at '%.40s'", p);
        memcpy(buf, p, n);
        buf[n] = '\0';
        p += n;
        int r;
        if (strcmp(buf, "exact=true") == 0 || strcmp(buf, "exact=false") == 0) {
            opt->exact = buf[6] == 't';
        } else if ((r = option_u32(buf, "k", QV_K_MAX + 1u, &opt->k)) ||
                   (r = option_u32(buf, "ef", QV_EF_MAX + 1u, &opt->ef))) {
            if (r < 0)
                return 1;
        } else {
            return fail("unknown search option '%s'; expected k=N, ef=N or "
                        "exact=true", buf);
        }
    }
    return 0;
}

static int cmd_search(qv_db *db, struct cmdline *cl)
{
    const char *p = cl->rest;
    float *vec = NULL;
    uint32_t dim;
    qv_search_options opt;
    qv_hits *hits;
    if (cl->nwords != 2 || *p != '[')
        return fail("%s", "usage: search NAME [v1, v2, ...] [k=10] [ef=64] "
                    "[exact=true]");
    if (parse_vector(&p, &vec, &dim) != 0)
        return 1;
    if (parse_search_options(p, &opt) != 0) {
        qv_mem_free(vec);
        return 1;
    }
    qv_status st = qv_search(db, cl->words[1], vec, dim, &opt, &hits);
    qv_mem_free(vec);
    if (st != QV_OK)
        return api_fail(db, st);
    for (size_t i = 0; i < hits->count; i++)
        printf("%zu\t%s\t%.6g\n", i + 1, hits->hits[i].id,
               (double)hits->hits[i].distance);
    if (hits->count == 0)
        puts("(no hits)");
    qv_free(hits);
    return 0;
}

static const char help_text[] =
    "commands:\n"
    "  create NAME dim=N [metric=l2|ip|cosine] [M=16] [ef_construction=200]\n"
    "  collections\n"
    "  describe NAME\n"
    "  drop NAME\n"
    "  upsert NAME ID [v1, v2, ...] [{json payload}]\n"
    "  get NAME ID\n"
    "  delete NAME ID\n"
    "  search NAME [v1, v2, ...] [k=10] [ef=64] [exact=true]\n"
    "  help\n"
    "  quit\n";

/* Run one line; returns 0 on success, 1 on failure, -1 to quit. */
static int run_line(qv_db *db, char *line)
{
    struct cmdline cl;
    take_words(line, MAX_WORDS, &cl);
    if (cl.nwords == 0)
        return *cl.rest ? fail("expected a command at '%.40s'", cl.rest) : 0;
    const char *cmd = cl.words[0];
    if (cmd[0] == '#')
        return 0;
    if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "exit") == 0)
        return -1;
    if (strcmp(cmd, "help") == 0) {
        fputs(help_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "create") == 0)
        return cmd_create(db, &cl);
    if (strcmp(cmd, "collections") == 0)
        return cmd_collections(db);
    if (strcmp(cmd, "describe") == 0)
        return cmd_describe(db, &cl);
    if (strcmp(cmd, "drop") == 0)
        return cmd_drop(db, &cl);
    if (strcmp(cmd, "upsert") == 0)
        return cmd_upsert(db, &cl);
    if (strcmp(cmd, "get") == 0)
        return cmd_get(db, &cl);
    if (strcmp(cmd, "delete") == 0)
        return cmd_delete(db, &cl);
    if (strcmp(cmd, "search") == 0)
        return cmd_search(db, &cl);
    return fail("unknown command '%s'; type help", cmd);
}

int shell_run(qv_db *db, FILE *in, int interactive)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int failed = 0;
    unsigned long lineno = 0;
    for (;;) {
        if (interactive) {
            fputs("quiver> ", stdout);
            fflush(stdout);
        }
        if ((len = getline(&line, &cap, in)) < 0)
            break;
        lineno++;
        if ((size_t)len > LINE_MAX_BYTES) {
            fprintf(stderr, "error: line %lu is longer than %u bytes\n",
                    lineno, LINE_MAX_BYTES);
            failed = 1;
            continue;
        }
        int rc = run_line(db, line);
        fflush(stdout);
        if (rc < 0)
            break;
        failed |= rc;
    }
    free(line);
    return failed;
}
