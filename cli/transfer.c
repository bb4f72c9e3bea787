/*
 * transfer.c - the shell's import and export.
 *
 * Import streams a file row by row (memory stays flat), checks each row
 * against the collection (so a bad row is named by its row or line), and
 * upserts in batches of `batch` rows, each one transaction. A bad row
 * stops the import: the rows before it are stored (the batch in progress
 * is committed first), it is named, nothing after it is read. Running the
 * import again is safe because rows are upserted by id.
 *
 * Export pages through the collection with qv_scan into FILE.tmp and
 * renames it to FILE at the end, so a failed export leaves no half file;
 * when every id is a row number ("0", "1", ...), in numeric order.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "cli/cli.h"
#include "common/json.h"
#include "cli/shell.h"
#include "cli/vecfile.h"

#define DEFAULT_BATCH 1000
#define MAX_BATCH 100000

/* ---- sources of rows ---- */

typedef struct source source;
struct source {
    /* 1: a row in vec/id/payload (payload: NULL or malloc'd compact JSON);
     * 0: end; -1: error in err. */
    int (*next)(source *s, float *vec, char *id, size_t idlen, char **payload,
                char *err, size_t errlen);
    void (*close)(source *s);
    const char *path;
    uint32_t dim;          /* 0 until known (jsonl: its first row) */
    uint64_t rows_hint;    /* for the progress bar; 0 unknown */
    uint64_t row;          /* rows read */
    vecfile *vf;
    FILE *f;
    int elem;              /* npy: 8 (f64), 4 (f32), 2 (f16), 1 (u8) */
    unsigned char *raw;
    char *line;
    size_t cap;
    uint64_t lineno;
};

static int texmex_next(source *s, float *vec, char *id, size_t idlen,
                       char **payload, char *err, size_t errlen)
{
    int rc = vecfile_read_floats(s->vf, vec, err, errlen);
    if (rc == 1) {
        snprintf(id, idlen, "%llu", (unsigned long long)s->row++);
        *payload = NULL;
    }
    return rc;
}

static void texmex_close(source *s)
{
    vecfile_close(s->vf);
}

/* IEEE half to float, for npy float16 files. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f,
             mant = h & 0x3ff;
    float f;
    if (exp == 0)
        f = ldexpf((float)mant, -24);
    else if (exp == 31)
        f = mant ? NAN : INFINITY;
    else
        f = ldexpf((float)(mant | 0x400), (int)exp - 25);
    return sign ? -f : f;
}

/* Element i of the row in s->raw as a float: a float64 beyond float
 * range is refused (it would become infinity). */
static int npy_element(source *s, uint32_t i, float *out, char *err,
                       size_t errlen)
{
    const unsigned char *raw = s->raw + (size_t)s->elem * i;
    double d;
    switch (s->elem) {
    case 8:
        memcpy(&d, raw, 8);
        if (isfinite(d) && fabs(d) > FLT_MAX) {
            snprintf(err, errlen, "%s: row %llu, element %u: %g is beyond "
                     "the range of float32", s->path,
                     (unsigned long long)s->row, i, d);
            return -1;
        }
        *out = (float)d;
        break;
    case 4:
        memcpy(out, raw, 4);
        break;
    case 2:
        *out = half_to_float((uint16_t)(raw[0] | raw[1] << 8));
        break;
    default:
        *out = raw[0];
    }
    return 0;
}

static int npy_next(source *s, float *vec, char *id, size_t idlen,
                    char **payload, char *err, size_t errlen)
{
    if (s->rows_hint && s->row == s->rows_hint)
        return 0;
    if (fread(s->raw, (size_t)s->elem, s->dim, s->f) != s->dim) {
        snprintf(err, errlen, "%s: row %llu: truncated (the file ends inside "
                 "the row)", s->path, (unsigned long long)s->row);
        return -1;
    }
    for (uint32_t i = 0; i < s->dim; i++) {
        if (npy_element(s, i, &vec[i], err, errlen) != 0)
            return -1;
    }
    snprintf(id, idlen, "%llu", (unsigned long long)s->row++);
    *payload = NULL;
    return 1;
}

static void file_close(source *s)
{
    if (s->f)
        fclose(s->f);
    qv_mem_free(s->raw);
    free(s->line);
}

/* The element type of a .npy header's 'descr' into s->elem, or a
 * message naming it. */
static int npy_dtype(source *s, const char *header, char *err,
                     size_t errlen)
{
    static const struct {
        const char *descr;
        int elem;
    } types[] = {{"<f8", 8}, {"<f4", 4}, {"<f2", 2}, {"|u1", 1}, {"<u1", 1}};
    char descr[16] = "";
    const char *field = strstr(header, "'descr':");
    if (field)
        sscanf(field, "'descr': '%15[^']'", descr);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        if (strcmp(descr, types[i].descr) == 0) {
            s->elem = types[i].elem;
            return 0;
        }
    }
    snprintf(err, errlen, "%s: dtype '%s' is not supported; use float64, "
             "float32, float16 or uint8, little-endian", s->path, descr);
    return -1;
}

/* Parse a .npy header: a 2-D little-endian float64 (made float32),
 * float32, float16 or uint8 array in C order. */
static int npy_open(source *s, char *err, size_t errlen)
{
    unsigned char magic[10];
    if (fread(magic, 1, 10, s->f) != 10 || memcmp(magic, "\x93NUMPY", 6)) {
        snprintf(err, errlen, "%s: not a .npy file", s->path);
        return -1;
    }
    size_t hlen = magic[8] | (size_t)magic[9] << 8;
    if (magic[6] >= 2) {  /* version 2 and 3: a 4-byte header length */
        unsigned char more[2];
        if (fread(more, 1, 2, s->f) != 2) {
            snprintf(err, errlen, "%s: truncated header", s->path);
            return -1;
        }
        hlen |= (size_t)more[0] << 16 | (size_t)more[1] << 24;
    }
    char header[4096];
    if (hlen >= sizeof header || fread(header, 1, hlen, s->f) != hlen) {
        snprintf(err, errlen, "%s: header of %zu bytes is truncated or too "
                 "long", s->path, hlen);
        return -1;
    }
    header[hlen] = '\0';
    if (npy_dtype(s, header, err, errlen) != 0)
        return -1;
    if (strstr(header, "'fortran_order': True")) {
        snprintf(err, errlen, "%s: Fortran order is not supported; save the "
                 "array in C order", s->path);
        return -1;
    }
    const char *shape = strstr(header, "'shape':");
    unsigned long long rows, cols;
    if (!shape || sscanf(shape, "'shape': (%llu, %llu)", &rows, &cols) != 2 ||
        cols == 0 || cols > QV_DIM_MAX) {
        char text[64] = "(missing";
        if (shape)
            sscanf(shape, "'shape': %63[^)]", text);
        snprintf(err, errlen, "%s: shape must be (rows, dim) with dim 1 to "
                 "%d, not %s)", s->path, QV_DIM_MAX, text);
        return -1;
    }
    s->dim = (uint32_t)cols;
    s->rows_hint = rows;
    s->raw = qv_malloc((size_t)s->elem * s->dim);
    if (!s->raw) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->next = npy_next;
    return 0;
}

/* One JSONL line into a row. */
static int jsonl_row(source *s, json_t *o, float *vec, char *id, size_t idlen,
                     char **payload, char *err, size_t errlen)
{
    json_t *jid = json_object_get(o, "id"), *v = json_object_get(o, "vector"),
           *pl = json_object_get(o, "payload");
    unsigned long long line = (unsigned long long)s->lineno;
    if (!json_is_string(jid) || json_string_length(jid) == 0 ||
        json_string_length(jid) >= idlen) {
        snprintf(err, errlen, "line %llu: \"id\" must be a string of 1 to %d "
                 "bytes", line, QV_ID_MAX);
        return -1;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        snprintf(err, errlen, "line %llu: \"vector\" must be an array of "
                 "numbers", line);
        return -1;
    }
    if (s->dim == 0)
        s->dim = (uint32_t)json_array_size(v);
    if (json_array_size(v) != s->dim) {
        snprintf(err, errlen, "line %llu: vector has dimension %zu, expected "
                 "%u", line, json_array_size(v), s->dim);
        return -1;
    }
    for (size_t i = 0; i < s->dim; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_number(x)) {
            snprintf(err, errlen, "line %llu: vector[%zu] is not a number",
                     line, i);
            return -1;
        }
        vec[i] = (float)json_number_value(x);
    }
    if (pl && !json_is_null(pl) && !json_is_object(pl)) {
        snprintf(err, errlen, "line %llu: \"payload\" must be a JSON object",
                 line);
        return -1;
    }
    memcpy(id, json_string_value(jid), json_string_length(jid) + 1);
    *payload = json_is_object(pl) ? json_dumps(pl, JSON_COMPACT |
                                                       JSON_PRESERVE_ORDER)
                                  : NULL;
    if (json_is_object(pl) && !*payload) {   /* not imported without it */
        snprintf(err, errlen, "line %llu: out of memory for the payload",
                 line);
        return -1;
    }
    return 1;
}

static int jsonl_next(source *s, float *vec, char *id, size_t idlen,
                      char **payload, char *err, size_t errlen)
{
    for (;;) {
        ssize_t len = getline(&s->line, &s->cap, s->f);
        if (len < 0)
            return 0;
        s->lineno++;
        while (len > 0 && (s->line[len - 1] == '\n' || s->line[len - 1] == '\r'))
            s->line[--len] = '\0';
        if (len == 0)
            continue;
        json_error_t jerr;
        json_t *o;
        if (qv_json_load(s->line, (size_t)len, JSON_REJECT_DUPLICATES, &jerr,
                         &o) == ENOMEM) {
            snprintf(err, errlen, "line %llu: out of memory",
                     (unsigned long long)s->lineno);
            return -1;
        }
        if (!json_is_object(o)) {
            snprintf(err, errlen, "line %llu: not a JSON object: %s",
                     (unsigned long long)s->lineno,
                     o ? "another JSON value" : jerr.text);
            json_decref(o);
            return -1;
        }
        int rc = jsonl_row(s, o, vec, id, idlen, payload, err, errlen);
        json_decref(o);
        s->row += rc == 1;
        return rc;
    }
}

static const char *file_format(const char *path, const shell_arg *fmt)
{
    if (fmt)
        return fmt->text;
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : "";
}

static int source_open(source *s, const char *path, const char *format,
                       char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    if (!strcmp(format, "fvecs") || !strcmp(format, "bvecs")) {
        if (!strstr(path, format)) {
            snprintf(err, errlen, "%s: format=%s reads files named *.%s",
                     path, format, format);
            return -1;
        }
        if (vecfile_open(path, &s->vf, err, errlen) != 0)
            return -1;
        s->dim = vecfile_dim(s->vf);
        s->rows_hint = vecfile_rows(s->vf);
        s->next = texmex_next;
        s->close = texmex_close;
        return 0;
    }
    int npy = !strcmp(format, "npy");
    if (!npy && strcmp(format, "jsonl") && strcmp(format, "json")) {
        snprintf(err, errlen, "unknown format '%s'; use fvecs, bvecs, npy or "
                 "jsonl", format);
        return -1;
    }
    s->f = fopen(path, "rb");
    if (!s->f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    s->close = file_close;
    if (npy)
        return npy_open(s, err, errlen);
    s->next = jsonl_next;
    return 0;
}

/* ---- rows of a vector file, for table import ---- */

struct shell_rows {
    source src;
};

int shell_rows_open(const char *path, shell_rows **out, char *err,
                    size_t errlen)
{
    const char *format = file_format(path, NULL);
    shell_rows *r = NULL;
    int rc = -1;
    if (!strcmp(format, "jsonl") || !strcmp(format, "json")) {
        snprintf(err, errlen, "%s: a table imports fvecs, bvecs or npy "
                 "rows, not %s", path, format);
        goto cleanup;
    }
    if (!(r = qv_calloc(1, sizeof *r))) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    rc = source_open(&r->src, path, format, err, errlen);
cleanup:
    if (rc != 0) {
        shell_rows_close(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

uint32_t shell_rows_dim(const shell_rows *r)
{
    return r->src.dim;
}

uint64_t shell_rows_count(const shell_rows *r)
{
    return r->src.rows_hint;
}

int shell_rows_read(shell_rows *r, float *row, char *err, size_t errlen)
{
    char id[32], *payload = NULL;
    int rc = r->src.next(&r->src, row, id, sizeof id, &payload, err, errlen);
    free(payload);
    return rc;
}

void shell_rows_close(shell_rows *r)
{
    if (r && r->src.close)
        r->src.close(&r->src);
    qv_mem_free(r);
}

/* ---- import ---- */

struct batch {
    float *vecs;
    char (*ids)[QV_ID_MAX + 1];
    char **payloads;
    qv_doc *docs;
    uint64_t *rows;     /* row (or line) of each document, for messages */
    size_t n;
};

static void batch_clear(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->payloads[i]);
    b->n = 0;
}

/* A progress line on stderr, on a terminal without --json. */
struct progress {
    shell *sh;
    char what[QV_NAME_MAX + 16];   /* "import docs" */
    uint64_t total;                 /* rows to go through; 0 unknown */
    double t0, last;
};

static void progress_start(struct progress *p, shell *sh, const char *verb,
                           const char *name)
{
    p->sh = sh;
    snprintf(p->what, sizeof p->what, "%s %s", verb, name);
    p->total = 0;
    p->t0 = cli_now();
    p->last = 0;
}

/* rows so far, of total when known (else 0); fraction: the share of
 * the work done when total is unknown (a jsonl file's bytes read), or
 * negative when that is unknown too. At most 5 lines a second. */
static void progress_show(struct progress *p, uint64_t rows, uint64_t total,
                          double fraction, int done)
{
    double now = cli_now();
    if (!p->sh->progress || (!done && now - p->last < 0.2))
        return;
    p->last = now;
    double secs = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
    if (total)
        fraction = (double)rows / (double)total;
    fprintf(stderr, "\r%s: %llu", p->what, (unsigned long long)rows);
    if (total)
        fprintf(stderr, "/%llu", (unsigned long long)total);
    fprintf(stderr, " row%s", shell_plural(total ? total : rows));
    if (fraction >= 0)
        fprintf(stderr, " (%3.0f%%)", 100.0 * fraction);
    fprintf(stderr, "  %.0f rows/s", rows / secs);
    if (fraction > 0 && fraction < 1)
        fprintf(stderr, "  ETA %.0fs ", secs * (1 - fraction) / fraction);
    else
        fprintf(stderr, "          ");
    if (done)
        fputc('\n', stderr);
}

/* Commit the batch; on a refusal name the row the API complained of. */
static int flush_batch(shell *sh, const char *name, struct batch *b,
                       uint64_t *imported, char *err, size_t errlen)
{
    if (b->n == 0)
        return 0;
    qv_status st = qv_upsert(sh->db, name, b->docs, b->n);
    if (st != QV_OK) {
        const char *msg = qv_errmsg(sh->db);
        size_t idx;
        if (sscanf(msg, "document %zu:", &idx) == 1 && idx < b->n)
            snprintf(err, errlen, "%s: row %llu: %s", qv_status_name(st),
                     (unsigned long long)b->rows[idx], strchr(msg, ':') + 2);
        else
            snprintf(err, errlen, "%s: %s", qv_status_name(st), msg);
        batch_clear(b);
        return -1;
    }
    *imported += b->n;
    batch_clear(b);
    return 0;
}

/* Check a row against the collection before it joins a batch. */
static int check_row(const source *s, uint32_t dim, const float *vec,
                     char *err, size_t errlen)
{
    const char *unit = s->vf || s->elem ? "row" : "line";
    unsigned long long at = s->vf || s->elem ? s->row - 1 : s->lineno;
    if (s->dim != dim) {
        snprintf(err, errlen, "%s %llu: vector has dimension %u; the "
                 "collection has %u", unit, at, s->dim, dim);
        return -1;
    }
    for (uint32_t i = 0; i < dim; i++) {
        if (!isfinite(vec[i])) {
            snprintf(err, errlen, "%s %llu: vector[%u] is %s", unit, at, i,
                     isnan(vec[i]) ? "NaN" : "infinite");
            return -1;
        }
    }
    return 0;
}

static int batch_alloc(struct batch *b, size_t size, uint32_t dim)
{
    b->vecs = qv_malloc(size * dim * sizeof *b->vecs);
    b->ids = qv_malloc(size * sizeof *b->ids);
    b->payloads = qv_calloc(size, sizeof *b->payloads);
    b->docs = qv_malloc(size * sizeof *b->docs);
    b->rows = qv_malloc(size * sizeof *b->rows);
    return b->vecs && b->ids && b->payloads && b->docs && b->rows ? 0 : -1;
}

static void batch_free(struct batch *b)
{
    batch_clear(b);
    qv_mem_free(b->vecs);
    qv_mem_free(b->ids);
    qv_mem_free(b->payloads);
    qv_mem_free(b->docs);
    qv_mem_free(b->rows);
}

/* Read rows into batches until the end or an error; counts imported. */
/* The share of a file read so far, for a source that does not know
 * its rows (jsonl): its bytes; negative when unknown. */
static double source_fraction(source *s)
{
    struct stat st;
    long at = s->f ? ftell(s->f) : -1;
    if (s->rows_hint || at < 0 || fstat(fileno(s->f), &st) != 0 ||
        st.st_size <= 0)
        return -1;
    return (double)at / (double)st.st_size;
}

static int import_rows(shell *sh, const char *name, source *src, uint32_t dim,
                       size_t batch_size, uint64_t *imported, char *err,
                       size_t errlen)
{
    struct batch b = {0};
    struct progress bar;
    progress_start(&bar, sh, "import", name);
    int rc = batch_alloc(&b, batch_size, dim);
    if (rc != 0)
        snprintf(err, errlen, "out of memory for a batch of %zu", batch_size);
    while (rc == 0) {
        float *vec = b.vecs + b.n * dim;
        char *payload = NULL;
        int got = src->next(src, vec, b.ids[b.n], sizeof b.ids[b.n], &payload,
                            err, errlen);
        if (got == 1 && check_row(src, dim, vec, err, errlen) != 0) {
            free(payload);
            got = -1;
        }
        if (got < 0) {
            /* every row before the bad one is stored, then it is named */
            char bad[1024];
            snprintf(bad, sizeof bad, "%s", err);
            if (flush_batch(sh, name, &b, imported, err, errlen) == 0)
                snprintf(err, errlen, "%s", bad);
            rc = -1;
            break;
        }
        if (got == 0)
            break;
        b.payloads[b.n] = payload;
        b.rows[b.n] = src->vf || src->elem ? src->row - 1 : src->lineno;
        b.docs[b.n] = (qv_doc){b.ids[b.n], vec, dim, payload};
        if (++b.n == batch_size) {
            rc = flush_batch(sh, name, &b, imported, err, errlen);
            progress_show(&bar, *imported, src->rows_hint,
                          source_fraction(src), 0);
        }
    }
    if (rc == 0)
        rc = flush_batch(sh, name, &b, imported, err, errlen);
    progress_show(&bar, *imported, src->rows_hint, source_fraction(src), 1);
    batch_free(&b);
    return rc;
}

int cmd_import(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"format", "batch", "threads", NULL};
    uint32_t batch = DEFAULT_BATCH, threads = 0;
    if (shell_check_options(sh, cmd, 2, opts) ||
        shell_u32_option(sh, cmd, "batch", 1, MAX_BATCH, &batch) ||
        shell_u32_option(sh, cmd, "threads", 1, 1024, &threads))
        return 1;
    const char *name = cmd->args[1].text, *path = cmd->args[2].text;
    qv_collection_info info;
    qv_status st = qv_describe_collection(sh->db, name, &info);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    if (threads && (st = qv_set_threads(sh->db, threads)) != QV_OK)
        return shell_api_fail(sh, st);
    source src;
    char err[1024] = "";
    if (source_open(&src, path, file_format(path, shell_option(cmd, "format")),
                    err, sizeof err) != 0) {
        if (src.close)
            src.close(&src);
        return shell_fail(sh, "INVALID", "%s", err);
    }
    if (src.dim == 0)
        src.dim = info.dim;  /* jsonl: rows are checked against it */
    if (src.dim != info.dim) {
        src.close(&src);
        return shell_fail(sh, "DIMENSION", "%s holds vectors of dimension %u;"
                          " collection '%s' has %u", path, src.dim, name,
                          info.dim);
    }
    uint64_t imported = 0;
    double t0 = cli_now();
    int rc = import_rows(sh, name, &src, info.dim, batch, &imported, err,
                         sizeof err);
    double secs = cli_now() - t0;
    src.close(&src);
    if (rc != 0) {
        /* name the file once: the texmex reader's messages already do */
        int named = strncmp(err, path, strlen(path)) == 0;
        return shell_fail(sh, strncmp(err, "DIMENSION", 9) == 0 ? "DIMENSION"
                                                                 : "INVALID",
                          "%s%s%s (%llu row%s imported before it stay%s)",
                          named ? "" : path, named ? "" : ": ", err,
                          (unsigned long long)imported, shell_plural(imported),
                          imported == 1 ? "s" : "");
    }
    if (!sh->json)
        printf("imported %llu row%s in %.2f s (%.0f rows/s)\n",
               (unsigned long long)imported, shell_plural(imported), secs,
               imported / (secs > 0 ? secs : 1));
    shell_emit(sh, json_pack("{s:I, s:f, s:f}", "rows", (json_int_t)imported,
                             "seconds", secs, "rows_per_s",
                             imported / (secs > 0 ? secs : 1)));
    return 0;
}

/* ---- export ---- */

static int write_record(FILE *f, int jsonl, const qv_record *r)
{
    if (!jsonl) {
        int32_t d = (int32_t)r->dim;
        return fwrite(&d, 4, 1, f) == 1 &&
                       fwrite(r->vector, 4, r->dim, f) == r->dim
                   ? 0 : -1;
    }
    /* every part checked: out of memory must not export a shorter
     * vector or a record without its payload */
    json_t *vec = json_array();
    for (uint32_t i = 0; i < r->dim; i++)
        json_array_append_new(vec, shell_float_json(r->vector[i]));
    if (json_array_size(vec) != r->dim) {
        json_decref(vec);
        errno = ENOMEM;
        return -1;
    }
    json_t *o = json_pack("{s:s, s:o}", "id", r->id, "vector", vec);
    int rc = o ? 0 : -1;
    if (rc == 0 && r->payload)
        rc = json_object_set_new(o, "payload",
                                 json_loads(r->payload, 0, NULL));
    if (rc == 0)
        rc = json_dumpf(o, f, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                  JSON_REAL_PRECISION(9));
    json_decref(o);
    if (rc != 0 && !ferror(f))
        errno = ENOMEM;
    return rc == 0 && fputc('\n', f) != EOF ? 0 : -1;
}

/* A row number: decimal digits, no leading zero ("0", "7", "12"), as
 * fvecs, bvecs and npy imports name rows; its length, else 0. */
static size_t row_number_length(const char *id)
{
    size_t len = strspn(id, "0123456789");
    return len && !id[len] && (id[0] != '0' || len == 1) && len < 64 ? len
                                                                     : 0;
}

/* What an export pass does with each document: survey the ids (bit L
 * of lengths set for a row number of length L; all_rows cleared, and
 * the pass ended, at the first other id), or write those of one length
 * (0: every document). */
struct export_pass {
    int survey;
    size_t length;
    uint64_t lengths;
    int all_rows;
};

/* Let the pass see r; 1 to write it, 0 not, -1 to end the pass. */
static int pass_takes(struct export_pass *p, const qv_record *r)
{
    size_t len = row_number_length(r->id);
    if (!p->survey)
        return p->length == 0 || len == p->length;
    if (!len) {
        p->all_rows = 0;
        return -1;
    }
    p->lengths |= 1ull << len;
    return 0;
}

/* Write the page's documents the pass takes into f; counts rows. 1 when
 * the pass ends here. */
static int export_page(FILE *f, int jsonl, const qv_page *page,
                       struct export_pass *p, uint64_t *rows, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < page->count; i++) {
        int take = pass_takes(p, &page->records[i]);
        if (take < 0)
            return 1;
        if (take && write_record(f, jsonl, &page->records[i]) != 0) {
            snprintf(err, errlen, "IO: write failed: %s", strerror(errno));
            return -1;
        }
        *rows += (uint64_t)take;
    }
    return page->next == NULL;
}

/* One pass over every page of the collection, in id order; a pass that
 * writes shows its progress on bar. */
static int export_pages(shell *sh, const char *name, FILE *f, int jsonl,
                        struct export_pass *p, struct progress *bar,
                        uint64_t *rows, char *err, size_t errlen)
{
    char after[QV_ID_MAX + 1];
    int have_after = 0, rc = 0;
    while (rc == 0) {
        qv_page *page;
        qv_status st = qv_scan(sh->db, name, have_after ? after : NULL, 1000,
                               &page);
        if (st != QV_OK) {
            snprintf(err, errlen, "%s: %s", qv_status_name(st),
                     qv_errmsg(sh->db));
            return -1;
        }
        rc = export_page(f, jsonl, page, p, rows, err, errlen);
        if (!p->survey)
            progress_show(bar, *rows, bar->total, -1, 0);
        have_after = page->next != NULL;
        if (have_after)
            snprintf(after, sizeof after, "%s", page->next);
        qv_free(page);
    }
    return rc < 0 ? -1 : 0;
}

/* Every document into f. When every id is a row number (an fvecs, bvecs
 * or npy import's), in numeric order, so that such an import exported
 * again keeps its rows' order: one pass per id length, as string order
 * is numeric order among ids of one length. Else in id order. */
static int export_passes(shell *sh, const char *name, FILE *f, int jsonl,
                         struct progress *bar, uint64_t *rows, char *err,
                         size_t errlen)
{
    struct export_pass survey = {.survey = 1, .all_rows = 1};
    uint64_t none = 0;
    if (export_pages(sh, name, f, jsonl, &survey, bar, &none, err,
                     errlen) != 0)
        return -1;
    if (!survey.all_rows) {
        struct export_pass every = {0};
        return export_pages(sh, name, f, jsonl, &every, bar, rows, err,
                            errlen);
    }
    for (size_t len = 1; len < 64; len++) {
        struct export_pass one = {.length = len};
        if ((survey.lengths >> len & 1) &&
            export_pages(sh, name, f, jsonl, &one, bar, rows, err,
                         errlen) != 0)
            return -1;
    }
    return 0;
}

/* export_passes with a progress line: rows written of the count the
 * collection had when the export began. */
static int export_rows(shell *sh, const char *name, uint64_t count, FILE *f,
                       int jsonl, uint64_t *rows, char *err, size_t errlen)
{
    struct progress bar;
    progress_start(&bar, sh, "export", name);
    bar.total = count;
    int rc = export_passes(sh, name, f, jsonl, &bar, rows, err, errlen);
    progress_show(&bar, *rows, count, -1, 1);
    return rc;
}

int cmd_export(shell *sh, const shell_cmd *cmd)
{
    static const char *const opts[] = {"format", NULL};
    if (shell_check_options(sh, cmd, 2, opts))
        return 1;
    const char *name = cmd->args[1].text, *path = cmd->args[2].text;
    const char *format = file_format(path, shell_option(cmd, "format"));
    int jsonl = !strcmp(format, "jsonl") || !strcmp(format, "json");
    if (!jsonl && strcmp(format, "fvecs"))
        return shell_fail(sh, "INVALID", "unknown export format '%s'; use "
                          "jsonl or fvecs", format);
    qv_collection_info info;
    qv_status st = qv_describe_collection(sh->db, name, &info);
    if (st != QV_OK)
        return shell_api_fail(sh, st);
    char tmp[4200], err[1024] = "";
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return shell_fail(sh, "IO", "%s: %s", tmp, strerror(errno));
    uint64_t rows = 0;
    int rc = export_rows(sh, name, info.count, f, jsonl, &rows, err,
                         sizeof err);
    if (fclose(f) != 0 && rc == 0) {
        snprintf(err, sizeof err, "IO: %.900s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(err, sizeof err, "IO: %.900s: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        unlink(tmp);
        char code[16] = "IO";
        sscanf(err, "%15[A-Z_]:", code);
        return shell_fail(sh, code, "export to %s failed, nothing written: %s",
                          path, strchr(err, ':') ? strchr(err, ':') + 2 : err);
    }
    if (!sh->json)
        printf("exported %llu row%s to %s\n", (unsigned long long)rows,
               shell_plural(rows), path);
    shell_emit(sh, json_pack("{s:I, s:s}", "rows", (json_int_t)rows, "file",
                             path));
    return 0;
}
