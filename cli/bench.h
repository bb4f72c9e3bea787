/* bench.h - helpers shared by the benchmark programs (cli/bench*.c). */
#ifndef QV_CLI_BENCH_H
#define QV_CLI_BENCH_H

#include "db/quiver.h"
#include "cli/vecfile.h"

/* Upsert the first n rows of base as ids "0", "1", ... in batches. */
int bench_import(qv_db *db, const char *collection, vecfile *base, long n,
                 char *err, size_t errlen);
/* Hits whose id is among the first k ground-truth ids. */
unsigned bench_true_hits(const qv_hits *hits, const int32_t *gt, unsigned k);
/* A fresh directory under $TMPDIR (free() it), and its removal. */
char *bench_temp_dir(void);
void bench_remove_dir(const char *dir);

#endif
