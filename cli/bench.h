/* bench.h - helpers shared by the benchmark programs (cli/bench*.c). */
#ifndef QV_CLI_BENCH_H
#define QV_CLI_BENCH_H

#include "db/quiver.h"
#include "cli/vecfile.h"

/* Upsert the first n rows of base as ids "0", "1", ... in batches. */
int bench_import(qv_db *db, const char *collection, vecfile *base, long n,
                 char *err, size_t errlen);
/* A comma-separated list of integers in [min, max] ("10,16,32") into
 * out (cap of them at most): how many, or -1 for a malformed list, an
 * empty one, a value out of range or more than cap. */
int bench_parse_list(const char *list, long min, long max, long *out,
                     int cap);
/* Hits whose id is among the first k ground-truth ids. */
unsigned bench_true_hits(const qv_hits *hits, const int32_t *gt, unsigned k);
/* A fresh directory under $TMPDIR (free() it), and its removal. */
char *bench_temp_dir(void);
void bench_remove_dir(const char *dir);

/* xorshift64*: a uniform double in [0, 1) from the state *s (nonzero);
 * the benchmarks' generated rows are the same in every run. */
double bench_next_unit(uint64_t *s);
/* A figure of /proc/self/status in bytes ("RssAnon", "VmHWM"), or -1. */
long bench_status_bytes(const char *field);
/* n uniform random rows in [0, 1)^dim drawn from *s (qv_mem_free them),
 * or NULL when out of memory. */
float *bench_random_rows(long n, unsigned dim, uint64_t *s);
/* The next n rows of vf (at most what it holds: *n is set to how many)
 * as floats (qv_mem_free them), or NULL with the reason in err. */
float *bench_read_rows(vecfile *vf, long *n, char *err, size_t errlen);
/*
 * Upsert n rows (row i is rows + i * dim) as ids ids[i], or first + i
 * when ids is NULL, into collection, batch rows a call. 0, or -1 with the
 * reason in err.
 */
int bench_upsert_rows(qv_db *db, const char *collection, const float *rows,
                      const long *ids, long first, long n, unsigned dim,
                      size_t batch, char *err, size_t errlen);

#endif
