/*
 * bench.c - what the benchmark programs share: import through the public
 * API, recall counting, temporary databases, the clock. They call it; it
 * calls none of them (main.c picks the program).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "cli/bench.h"
#include "cli/cli.h"

#define IMPORT_BATCH 1000

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

float *bench_read_rows(vecfile *vf, long *n, char *err, size_t errlen)
{
    uint32_t dim = vecfile_dim(vf);
    if ((uint64_t)*n > vecfile_rows(vf))
        *n = (long)vecfile_rows(vf);
    float *rows = qv_malloc((size_t)(*n ? *n : 1) * dim * sizeof *rows);
    if (!rows)
        snprintf(err, errlen, "out of memory");
    for (long i = 0; rows && i < *n; i++) {
        int r = vecfile_read_floats(vf, rows + (size_t)i * dim, err, errlen);
        if (r != 1) {
            if (r == 0)
                snprintf(err, errlen, "the file ends at row %ld", i);
            qv_mem_free(rows);
            rows = NULL;
        }
    }
    return rows;
}

/* Upsert the first n rows of base (ids "0", "1", ...) in batches. */
int bench_import(qv_db *db, const char *collection, vecfile *base, long n,
                 char *err, size_t errlen)
{
    uint32_t dim = vecfile_dim(base);
    float *vecs = qv_malloc((size_t)IMPORT_BATCH * dim * sizeof(float));
    char (*ids)[24] = qv_malloc(IMPORT_BATCH * sizeof *ids);
    qv_doc *docs = qv_malloc(IMPORT_BATCH * sizeof *docs);
    int rc = -1;
    if (!vecs || !ids || !docs) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    for (long row = 0; row < n;) {
        size_t m = 0;
        for (; m < IMPORT_BATCH && row < n; m++, row++) {
            int r = vecfile_read_floats(base, vecs + m * dim, err, errlen);
            if (r != 1) {
                if (r == 0)
                    snprintf(err, errlen, "base ends at row %ld", row);
                goto cleanup;
            }
            snprintf(ids[m], sizeof ids[m], "%ld", row);
            docs[m] = (qv_doc){ids[m], vecs + m * dim, dim, NULL};
        }
        if (qv_upsert(db, collection, docs, m) != QV_OK) {
            snprintf(err, errlen, "upsert: %s", qv_errmsg(db));
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    qv_mem_free(vecs);
    qv_mem_free(ids);
    qv_mem_free(docs);
    return rc;
}

/* Hits whose id is among the first k ground-truth ids. */
unsigned bench_true_hits(const qv_hits *hits, const int32_t *gt,
                                unsigned k)
{
    unsigned found = 0;
    for (size_t i = 0; i < hits->count; i++) {
        long id = atol(hits->hits[i].id);
        for (unsigned j = 0; j < k; j++)
            found += gt[j] == id;
    }
    return found;
}

/* A fresh directory for the bench database, under $TMPDIR. */
char *bench_temp_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/quiver-bench-XXXXXX", tmp ? tmp : "/tmp");
    return mkdtemp(path) ? strdup(path) : NULL;
}

void bench_remove_dir(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

double bench_next_unit(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

float *bench_random_rows(long n, unsigned dim, uint64_t *s)
{
    float *rows = qv_malloc((size_t)n * dim * sizeof *rows);
    for (size_t i = 0; rows && i < (size_t)n * dim; i++)
        rows[i] = (float)bench_next_unit(s);
    return rows;
}

int bench_upsert_rows(qv_db *db, const char *collection, const float *rows,
                      const long *ids, long first, long n, unsigned dim,
                      size_t batch, char *err, size_t errlen)
{
    qv_doc *docs = qv_malloc(batch * sizeof *docs);
    char (*names)[24] = qv_malloc(batch * sizeof *names);
    int rc = -1;
    if (!docs || !names) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    for (long at = 0; at < n;) {
        size_t m = 0;
        for (; m < batch && at < n; m++, at++) {
            snprintf(names[m], sizeof names[m], "%ld", ids ? ids[at]
                                                           : first + at);
            docs[m] = (qv_doc){names[m], rows + (size_t)at * dim, dim, NULL};
        }
        if (qv_upsert(db, collection, docs, m) != QV_OK) {
            snprintf(err, errlen, "upsert: %s", qv_errmsg(db));
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    qv_mem_free(docs);
    qv_mem_free(names);
    return rc;
}

int bench_parse_list(const char *list, long min, long max, long *out,
                     int cap)
{
    char *copy = strdup(list), *save = NULL;
    int n = copy ? 0 : -1;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok && n >= 0;
         tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < min || v > max || n == cap)
            n = -1;
        else
            out[n++] = v;
    }
    free(copy);
    return n > 0 ? n : -1;
}

/* A figure of /proc/self/status in bytes ("RssAnon", "VmHWM"), or -1. */
long bench_status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t len = strlen(field);
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, field, len) && line[len] == ':' &&
            sscanf(line + len + 1, "%ld kB", &kb) == 1)
            break;
    }
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}
