/*
 * env.h - the LMDB environment of one database directory.
 *
 * One st_env per directory per process: LMDB forbids opening the same
 * environment twice in one process (closing the second would drop the
 * first's file locks), so st_env_open() hands out a shared, reference-
 * counted environment when the directory is already open.
 *
 * The map grows by itself: a write that fills it is aborted, the map is
 * doubled and the write is run again, so callers never see MDB_MAP_FULL.
 * Growing needs every transaction of this process to be finished, so each
 * transaction holds a shared lock that growth takes exclusively.
 */
#ifndef QV_STORAGE_ENV_H
#define QV_STORAGE_ENV_H

#include <lmdb.h>
#include <stdint.h>

typedef struct st_env st_env;

/* What the layer above keeps per environment (st_env_user). */
enum st_user { ST_USER_INDEXES, ST_USER_TABLES, ST_USER_COUNT };

/* Named sub-databases. The key layout is in keys.h. */
enum st_db {
    ST_DB_META,      /* database-wide settings and counters */
    ST_DB_CATALOG,   /* collection name -> collection record */
    ST_DB_IDS,       /* (collection, external id) -> internal id */
    ST_DB_DOCS,      /* (collection, internal id) -> external id, payload */
    ST_DB_VECTORS,   /* (collection, internal id) -> float32[dim] */
    ST_DB_FREEIDS,   /* (collection, internal id) -> "" : ids to reuse */
    ST_DB_GRAPH,     /* (collection, internal id) -> HNSW node record */
    ST_DB_PINDEX,    /* (collection, field) -> payload index record */
    ST_DB_PENTRIES,  /* (collection, index, value, internal id) -> "" */
    ST_DB_CODES,     /* (collection, internal id) -> the vector's code */
    ST_DB_CODECS,    /* collection -> trained codec parameters */
    ST_DB_TABLES,    /* embedding table name -> table record */
    ST_DB_TCHUNKS,   /* (table, slab, chunk) -> rows of an embedding table */
    ST_DB_COUNT
};

#define ST_OPEN_NOSYNC 0x1u

/*
 * Storage's own codes. Every int a storage call returns is 0, one of
 * these, an LMDB code (MDB_KEYEXIST -30799 up to MDB_LAST_ERRCODE) or an
 * errno value (positive): the ranges never overlap, and st_strerror names
 * any of them. The layers above keep their own codes out of these ranges.
 */
enum st_error {
    ST_ABORT = -1,          /* a write function aborts its transaction on
                               purpose */
    ST_ERR_MODE = -2,       /* open in this process with the other sync
                               mode */
    ST_ERR_IN_USE = -3,     /* compaction: another process has it open */
    ST_ERR_MISSING = -4,    /* lock.mdb without data.mdb */
    ST_ERR_TRUNCATED = -5,  /* data.mdb shorter than its meta page says */
};

/* What rc (0, an st_error, an LMDB code or an errno value) means. */
const char *st_strerror(int rc);

/*
 * Open (creating if needed) the environment in directory path. Returns 0
 * or an LMDB/errno code; ST_ERR_MODE when the directory is already open in
 * this process with another sync mode.
 */
int st_env_open(const char *path, unsigned flags, uint64_t map_size,
                st_env **out);
void st_env_close(st_env *env);

MDB_dbi st_dbi(const st_env *env, enum st_db db);

/* The LMDB environment itself (for its file descriptor and map). */
MDB_env *st_mdb(st_env *env);

/*
 * Where LMDB mapped the data file: base + a data file offset is that
 * byte of the file. Call inside a transaction (st_write's function, or
 * between st_read_begin and st_read_end): the map moves only while no
 * transaction of this process is open (growth, compaction), so the base
 * holds until the transaction ends. NULL if it cannot be found.
 */
const char *st_map_base(st_env *env);

/* Changes whenever data.mdb is replaced by another file (compaction);
 * stable while a transaction is open. Offsets into the file are only
 * meaningful for the epoch they were read at. */
uint64_t st_file_epoch(st_env *env);

/* LMDB's page size: a value larger than half of it lies in overflow
 * pages of its own (st_fixed_offset). */
uint32_t st_page_bytes(const st_env *env);

/* The data file offset of p, a value LMDB returned in an open read
 * snapshot of env (an address in its memory map); UINT64_MAX if p is not
 * in the map (a write transaction's own copy of a page). */
uint64_t st_map_offset(st_env *env, const void *p);

/*
 * st_map_offset of p if the value lies in overflow pages of its own (a
 * value larger than about half a page), which stay where they are until
 * the value itself is replaced or deleted; UINT64_MAX for a value inside
 * a leaf page, which every later write to that page copies elsewhere
 * (copy-on-write), so that its offset holds for this snapshot only.
 */
uint64_t st_fixed_offset(st_env *env, const void *p);

/*
 * The layer above's per-environment state: made by create() on first use,
 * shared by every handle on the environment, released with destroy() when
 * the environment closes. NULL if create() failed.
 */
void *st_env_user(st_env *env, enum st_user slot, void *(*create)(void),
                  void (*destroy)(void *));

/*
 * Run fn(txn, ctx) in a write transaction and commit it. fn returns 0 to
 * commit, ST_ABORT to abort (its ctx says why) or an LMDB/errno code.
 * fn may be run more than once (after the map grew), so it must only
 * change the database through txn and ctx fields it resets itself.
 * Returns 0, ST_ABORT, or an LMDB/errno code.
 */
typedef int (*st_write_fn)(MDB_txn *txn, void *ctx);
int st_write(st_env *env, st_write_fn fn, void *ctx);

/*
 * A read-only snapshot. Hold it as briefly as possible; end it with
 * st_read_end() on the same env. Values read through it stay valid until
 * then.
 */
int st_read_begin(st_env *env, MDB_txn **out);
void st_read_end(st_env *env, MDB_txn *txn);

/*
 * Write a compacted copy of the environment into directory dir (which
 * must exist and hold no database), while reads and writes go on.
 */
int st_backup(st_env *env, const char *dir);

/*
 * Give the space of deleted records back to the file system: a compacted
 * copy replaces data.mdb. Needs the database to itself: ST_ERR_IN_USE when
 * another process has it open (or that cannot be told); this process's
 * transactions wait. A process that opens the directory in the instant
 * between that check and the swap is not seen.
 */
int st_compact(st_env *env);

struct st_figures {
    uint64_t file_bytes;   /* size of data.mdb */
    uint64_t used_bytes;   /* pages in use up to the last one */
    uint64_t map_bytes;
    uint32_t page_bytes;
    uint64_t last_txn;
    int readers;           /* reader slots in use */
};
void st_figures(st_env *env, struct st_figures *out);

/* The environment's directory. */
const char *st_path(st_env *env);

/* Current map size, for tests and stats. */
uint64_t st_map_size(st_env *env);

/* Delete every key of db that starts with prefix. Returns 0 or an LMDB code. */
int st_delete_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix,
                     size_t prefix_len);

#endif
