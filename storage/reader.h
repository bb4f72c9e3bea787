/*
 * reader.h - batched reads of full vectors from the data file.
 *
 * A collection with a codec keeps codes in memory and re-ranks its best
 * candidates with their full vectors, which stay on disk in LMDB's data
 * file. LMDB puts a value larger than half a page in overflow pages of
 * its own, starting at a page boundary plus a 16-byte header, so a
 * vector of up to 4,080 bytes is one read within one page (and a larger
 * one is contiguous). st_read_batch issues all of a shortlist's reads at
 * once through io_uring, one submission and one wait, instead of
 * faulting the pages in one at a time through the memory map; where
 * io_uring is unavailable (an old kernel, a seccomp policy) it falls back
 * to pread, says so once on stderr, and st_io_name tells which.
 *
 * The offsets must come from a read snapshot that is still open, which
 * keeps LMDB from reusing those pages while the reads run.
 */
#ifndef QV_STORAGE_READER_H
#define QV_STORAGE_READER_H

#include <stddef.h>
#include <stdint.h>

#include "storage/env.h"

typedef struct st_read {
    uint64_t offset;   /* in the data file */
    size_t len;
    void *buf;
} st_read;

/*
 * Read every request from env's data file: through io_uring when
 * use_uring and the kernel offers it, else with pread. Returns 0, or an
 * errno value (EIO also for a read past the end of the file).
 */
int st_read_batch(st_env *env, st_read *reqs, size_t n, int use_uring);

/* "io_uring" once io_uring has served a batch in this process, "pread"
 * when it is unavailable, "unused" before the first batch. */
const char *st_io_name(void);

/* Tests: make the next n reads fail with EIO, on either path. */
void st_read_inject_failures(int n);

#endif
