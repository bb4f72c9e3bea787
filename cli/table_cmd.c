/*
 * table_cmd.c - the shell's `table` command: embedding tables
 * (docs/EMBEDDINGS.md).
 *
 *   table create NAME rows=N dim=D [method=full] [optimizer=sgd|adagrad]
 *                [lr=0.01] [init=0.01] [seed=0] [shards=S [replicas=R]]
 *   table lookup NAME ids=[1, 2, ...]
 *   table update NAME ids=[1, 2] grads=[[...], [...]]
 *   table describe NAME
 *   table import NAME FILE [first=0]      (fvecs or npy rows, trained)
 *   table export NAME FILE                (fvecs: rows 0 .. rows-1)
 *   table drop NAME
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "cli/shell.h"

#define TABLE_IO_BATCH 4096   /* rows per import or export call */

static const char *table_name(const shell_cmd *cmd)
{
    return shell_positional(cmd, 2);
}

/* A number option within [min, max]; absent leaves *out. */
static int float_option(shell *sh, const shell_cmd *cmd, const char *key,
                        double min, double max, float *out)
{
    const shell_arg *a = shell_option(cmd, key);
    if (!a)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(a->text, &end);
    if (end == a->text || *end || errno || !(v >= min && v <= max))
        return shell_fail(sh, "INVALID", "%s must be a number from %g to %g, "
                          "not '%s'", key, min, max, a->text);
    *out = (float)v;
    return 0;
}

static int u64_option(shell *sh, const shell_cmd *cmd, const char *key,
                      uint64_t min, uint64_t *out)
{
    const shell_arg *a = shell_option(cmd, key);
    if (!a)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(a->text, &end, 10);
    if (end == a->text || *end || errno || a->text[0] == '-' || v < min)
        return shell_fail(sh, "INVALID", "%s must be a whole number of at "
                          "least %llu, not '%s'", key,
                          (unsigned long long)min, a->text);
    *out = v;
    return 0;
}

static int table_create_cmd(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"rows", "dim", "method", "optimizer",
                                       "lr", "init", "seed", "shards",
                                       "replicas", NULL};
    qv_table_config cfg = {0};
    /* shards=0 and replicas=0 written out are refused, as create's are:
     * leave them out for an ordinary table */
    if (shell_check_options(sh, cmd, 2, opts) ||
        u64_option(sh, cmd, "rows", 1, &cfg.rows) ||
        shell_u32_option(sh, cmd, "dim", 1, QV_TABLE_DIM_MAX, &cfg.dim) ||
        shell_u32_option(sh, cmd, "shards", 1, QV_SHARDS_MAX, &cfg.shards) ||
        shell_u32_option(sh, cmd, "replicas", 1, QV_REPLICAS_MAX,
                         &cfg.replicas) ||
        float_option(sh, cmd, "lr", 1e-12, 1e6, &cfg.learning_rate) ||
        float_option(sh, cmd, "init", 1e-12, 1e6, &cfg.init) ||
        u64_option(sh, cmd, "seed", 0, &cfg.seed))
        return 1;
    if (!shell_option(cmd, "rows") || !shell_option(cmd, "dim"))
        return shell_fail(sh, "INVALID", "table create needs rows=N and "
                          "dim=D");
    const shell_arg *m = shell_option(cmd, "method");
    cfg.method = m ? m->text : NULL;
    const shell_arg *o = shell_option(cmd, "optimizer");
    if (o && strcmp(o->text, "sgd") && strcmp(o->text, "adagrad"))
        return shell_fail(sh, "INVALID", "unknown optimizer '%s'; use sgd or "
                          "adagrad", o->text);
    cfg.optimizer = o && !strcmp(o->text, "adagrad") ? QV_OPTIMIZER_ADAGRAD
                                                     : QV_OPTIMIZER_SGD;
    qv_status st = qv_table_create(sh->db, table_name(cmd), &cfg);
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

/* ids=[...]: a JSON array of whole numbers >= 0. */
static int ids_option(shell *sh, const shell_cmd *cmd, uint64_t **ids,
                      size_t *n)
{
    const shell_arg *a = shell_option(cmd, "ids");
    if (!a || !json_is_array(a->json) || json_array_size(a->json) == 0)
        return shell_fail(sh, "INVALID", "expected ids=[1, 2, ...]");
    *n = json_array_size(a->json);
    *ids = qv_malloc(*n * sizeof **ids);
    if (!*ids)
        return shell_fail(sh, "NOMEM", "out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *x = json_array_get(a->json, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            qv_mem_free(*ids);
            *ids = NULL;
            return shell_fail(sh, "INVALID", "id %zu is not a whole number of "
                              "at least 0", i);
        }
        (*ids)[i] = (uint64_t)json_integer_value(x);
    }
    return 0;
}

static int table_lookup_cmd(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"ids", NULL};
    qv_table_info info;
    uint64_t *ids = NULL;
    size_t n;
    if (shell_check_options(sh, cmd, 2, opts) ||
        ids_option(sh, cmd, &ids, &n))
        return 1;
    qv_status st = qv_table_describe(sh->db, table_name(cmd), &info);
    float *rows = st == QV_OK ? qv_malloc(n * info.dim * sizeof *rows) : NULL;
    if (st == QV_OK && !rows)
        st = QV_ERR_NOMEM;
    if (st == QV_OK)
        st = qv_table_lookup(sh->db, table_name(cmd), ids, n, info.dim, rows);
    if (st != QV_OK) {
        qv_mem_free(ids);
        qv_mem_free(rows);
        return shell_api_fail(sh, st);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array();
        const float *values = rows + i * info.dim;
        for (uint32_t d = 0; d < info.dim; d++)
            json_array_append_new(row, shell_float_json(values[d]));
        if (json_array_size(row) != info.dim) {   /* out of memory */
            json_decref(row);
            row = NULL;
        }
        json_array_append_new(arr, json_incref(row));
        if (!sh->json) {
            char *text = json_dumps(row, JSON_COMPACT | JSON_REAL_PRECISION(9));
            printf("%llu %s\n", (unsigned long long)ids[i],
                   text ? text : "(out of memory)");
            free(text);
        }
        json_decref(row);
    }
    if (json_array_size(arr) != n) {
        json_decref(arr);
        arr = NULL;
    }
    shell_emit(sh, json_pack("{s:o}", "rows", arr));
    qv_mem_free(ids);
    qv_mem_free(rows);
    return 0;
}

static int table_update_cmd(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"ids", "grads", NULL};
    uint64_t *ids = NULL;
    size_t n;
    if (shell_check_options(sh, cmd, 2, opts) ||
        ids_option(sh, cmd, &ids, &n))
        return 1;
    const shell_arg *g = shell_option(cmd, "grads");
    if (!g || !json_is_array(g->json) || json_array_size(g->json) != n) {
        qv_mem_free(ids);
        return shell_fail(sh, "INVALID", "grads= must be a list of %zu "
                          "gradients, one per id", n);
    }
    size_t dim = json_array_size(json_array_get(g->json, 0));
    float *grads = dim ? qv_malloc(n * dim * sizeof *grads) : NULL;
    int rc = grads ? 0 : shell_fail(sh, "INVALID", "the gradients must be "
                                    "lists of numbers");
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *row = json_array_get(g->json, i);
        if (!json_is_array(row) || json_array_size(row) != dim) {
            rc = shell_fail(sh, "INVALID", "gradient %zu has %zu values, the "
                            "first has %zu", i, json_array_size(row), dim);
            break;
        }
        for (size_t d = 0; d < dim && rc == 0; d++) {
            json_t *x = json_array_get(row, d);
            if (!json_is_number(x))
                rc = shell_fail(sh, "INVALID", "gradient %zu, value %zu is not "
                                "a number", i, d);
            else
                grads[i * dim + d] = (float)json_number_value(x);
        }
    }
    if (rc == 0) {
        qv_status st = qv_table_update(sh->db, table_name(cmd), ids, n,
                                       (uint32_t)dim, grads);
        rc = st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
    }
    qv_mem_free(ids);
    qv_mem_free(grads);
    return rc;
}

static const char *optimizer_name(qv_optimizer o)
{
    return o == QV_OPTIMIZER_ADAGRAD ? "adagrad" : "sgd";
}

static int table_describe_cmd(shell *sh, const shell_cmd *cmd)
{
    qv_table_info t;
    if (shell_check_options(sh, cmd, 2, NULL))
        return 1;
    qv_status st = qv_table_describe(sh->db, table_name(cmd), &t);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:s, s:f, s:I, s:I, s:f, s:I}",
                          "name", t.name, "method", t.method, "rows",
                          (json_int_t)t.rows, "dim", (int)t.dim, "optimizer",
                          optimizer_name(t.optimizer),
                          "learning_rate", (double)t.learning_rate,
                          "param_bytes", (json_int_t)t.param_bytes,
                          "optimizer_bytes", (json_int_t)t.optimizer_bytes,
                          "ratio", t.ratio, "updates", (json_int_t)t.updates);
    if (o && t.shards) {   /* a sharded table's shape */
        json_object_set_new(o, "shards", json_integer(t.shards));
        json_object_set_new(o, "replicas", json_integer(t.replicas));
    }
    shell_emit_fields(sh, o);
    return 0;
}

static int table_import_cmd(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"first", NULL};
    uint64_t first = 0;
    if (shell_check_options(sh, cmd, 3, opts) ||
        u64_option(sh, cmd, "first", 0, &first))
        return 1;
    char err[256];
    shell_rows *file = NULL;
    if (shell_rows_open(shell_positional(cmd, 3), &file, err, sizeof err) != 0)
        return shell_fail(sh, "INVALID", "%s", err);
    uint32_t dim = shell_rows_dim(file);
    uint64_t total = shell_rows_count(file), done = 0;
    float *rows = qv_malloc((size_t)TABLE_IO_BATCH * dim * sizeof *rows);
    int rc = rows ? 0 : shell_fail(sh, "NOMEM", "out of memory");
    while (rc == 0 && done < total) {
        size_t n = total - done < TABLE_IO_BATCH ? (size_t)(total - done)
                                                 : TABLE_IO_BATCH;
        for (size_t i = 0; i < n && rc == 0; i++) {
            int got = shell_rows_read(file, rows + i * dim, err, sizeof err);
            if (got == 0)
                rc = shell_fail(sh, "INVALID", "row %llu: the file ends "
                                "early", (unsigned long long)(done + i));
            else if (got < 0)
                rc = shell_fail(sh, "INVALID", "%s", err);
        }
        qv_status st = rc ? QV_OK : qv_table_load(sh->db, table_name(cmd),
                                                  first + done, n, dim, rows);
        if (rc == 0 && st != QV_OK)
            rc = shell_api_fail(sh, st);
        done += n;
    }
    if (rc == 0) {
        if (!sh->json)
            printf("loaded %llu row%s\n", (unsigned long long)total,
                   shell_plural(total));
        shell_emit(sh, json_pack("{s:I}", "loaded", (json_int_t)total));
    }
    qv_mem_free(rows);
    shell_rows_close(file);
    return rc;
}

/* fvecs rows 0 .. rows-1, written to FILE.tmp and renamed at the end. */
static int table_export_cmd(shell *sh, const shell_cmd *cmd)
{
    qv_table_info t;
    if (shell_check_options(sh, cmd, 3, NULL))
        return 1;
    qv_status st = qv_table_describe(sh->db, table_name(cmd), &t);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    const char *path = shell_positional(cmd, 3);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return shell_fail(sh, "IO", "cannot write %s: %s", tmp,
                          strerror(errno));
    float *rows = qv_malloc((size_t)TABLE_IO_BATCH * t.dim * sizeof *rows);
    uint64_t *ids = qv_malloc(TABLE_IO_BATCH * sizeof *ids);
    int rc = rows && ids ? 0 : shell_fail(sh, "NOMEM", "out of memory");
    for (uint64_t done = 0; rc == 0 && done < t.rows;) {
        size_t n = t.rows - done < TABLE_IO_BATCH ? (size_t)(t.rows - done)
                                                  : TABLE_IO_BATCH;
        for (size_t i = 0; i < n; i++)
            ids[i] = done + i;
        st = qv_table_lookup(sh->db, table_name(cmd), ids, n, t.dim, rows);
        if (st != QV_OK) {
            rc = shell_api_fail(sh, st);
            break;
        }
        int32_t d = (int32_t)t.dim;
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (fwrite(&d, 4, 1, f) != 1 ||
                fwrite(rows + i * t.dim, 4, t.dim, f) != t.dim)
                rc = shell_fail(sh, "IO", "writing %s: %s", tmp,
                                strerror(errno));
        }
        done += n;
    }
    if (fclose(f) != 0 && rc == 0)
        rc = shell_fail(sh, "IO", "writing %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = shell_fail(sh, "IO", "renaming %s: %s", tmp, strerror(errno));
    if (rc != 0)
        unlink(tmp);
    else {
        if (!sh->json)
            printf("exported %llu row%s to %s\n", (unsigned long long)t.rows,
                   shell_plural(t.rows), path);
        shell_emit(sh, json_pack("{s:I, s:s}", "exported",
                                 (json_int_t)t.rows, "file", path));
    }
    qv_mem_free(rows);
    qv_mem_free(ids);
    return rc;
}

static int table_drop_cmd(shell *sh, const shell_cmd *cmd)
{
    if (shell_check_options(sh, cmd, 2, NULL))
        return 1;
    qv_status st = qv_table_drop(sh->db, table_name(cmd));
    return st == QV_OK ? shell_ok(sh) : shell_api_fail(sh, st);
}

int cmd_tables(shell *sh, const shell_cmd *cmd)
{
    qv_table_info *list = NULL;
    size_t n = 0;
    if (shell_check_options(sh, cmd, 0, NULL))
        return 1;
    qv_status st = qv_list_tables(sh->db, &list, &n);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:I, s:i, s:s, s:I, s:f, s:I}", "name", list[i].name,
            "method", list[i].method, "rows", (json_int_t)list[i].rows, "dim",
            (int)list[i].dim, "optimizer", optimizer_name(list[i].optimizer),
            "param_bytes", (json_int_t)list[i].param_bytes, "ratio",
            list[i].ratio, "updates", (json_int_t)list[i].updates));
    if (!sh->json) {
        printf("%-24s %-10s %12s %6s %-8s %7s\n", "name", "method", "rows",
               "dim", "opt", "ratio");
        for (size_t i = 0; i < n; i++)
            printf("%-24s %-10s %12llu %6u %-8s %7.2f\n", list[i].name,
                   list[i].method, (unsigned long long)list[i].rows,
                   list[i].dim, optimizer_name(list[i].optimizer),
                   list[i].ratio);
        printf("(%zu table%s)\n", n, n == 1 ? "" : "s");
    }
    if (json_array_size(arr) != n) {
        json_decref(arr);
        arr = NULL;
    }
    shell_emit(sh, json_pack("{s:o}", "tables", arr));
    qv_free(list);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(shell *, const shell_cmd *);
    const char *usage;
} subs[] = {
    {"create", table_create_cmd,
     "table create NAME rows=N dim=D [method=full|hash:R|qr:R|robe:R|"
     "adapt:R|int8|int16|alpt:8|alpt:16|prune:S|tt:RANK] "
     "[optimizer=sgd|adagrad] [lr=0.01] [init=0.01] [seed=0] "
     "[shards=S [replicas=R]]"},
    {"lookup", table_lookup_cmd, "table lookup NAME ids=[1, 2, ...]"},
    {"update", table_update_cmd,
     "table update NAME ids=[1, 2, ...] grads=[[..], [..], ...]"},
    {"describe", table_describe_cmd, "table describe NAME"},
    {"import", table_import_cmd, "table import NAME FILE [first=0]"},
    {"export", table_export_cmd, "table export NAME FILE"},
    {"drop", table_drop_cmd, "table drop NAME"},
};

#define NSUBS (sizeof subs / sizeof *subs)

const char *table_usage(size_t i)
{
    return i < NSUBS ? subs[i].usage : NULL;
}

int cmd_table(shell *sh, const shell_cmd *cmd)
{
    const char *sub = shell_positional(cmd, 1);
    for (size_t i = 0; sub && i < NSUBS; i++)
        if (!strcmp(sub, subs[i].name))
            return subs[i].fn(sh, cmd);
    return shell_fail(sh, "INVALID", "table needs a subcommand: create, "
                      "lookup, update, describe, import, export or drop");
}
