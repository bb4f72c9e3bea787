#include "storage/env.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/alloc.h"

#define DEFAULT_MAP_SIZE (256ull << 20)
/* Growth doubles the map, but by no more than this at a time. */
#define MAX_MAP_STEP (16ull << 30)
#define MAX_DBS 32

static const char *const db_names[ST_DB_COUNT] = {
    [ST_DB_META] = "meta",       [ST_DB_CATALOG] = "catalog",
    [ST_DB_IDS] = "ids",         [ST_DB_DOCS] = "docs",
    [ST_DB_VECTORS] = "vectors", [ST_DB_FREEIDS] = "freeids",
    [ST_DB_GRAPH] = "graph",       [ST_DB_PINDEX] = "pindexes",
    [ST_DB_PENTRIES] = "pentries", [ST_DB_CODES] = "codes",
    [ST_DB_CODECS] = "codecs",   [ST_DB_TABLES] = "tables",
    [ST_DB_TCHUNKS] = "tchunks",
};

struct st_env {
    MDB_env *mdb;
    MDB_dbi dbi[ST_DB_COUNT];
    unsigned flags;
    /* Every transaction holds it shared; map growth holds it exclusive. */
    pthread_rwlock_t map_lock;
    /* where LMDB mapped the data file (st_map_offset); NULL until found,
     * and again whenever the map moves (growth, compaction) */
    _Atomic(char *) map_base;
    uint32_t page_bytes;   /* LMDB's page size (st_fixed_offset) */
    /* bumped whenever data.mdb is replaced (compaction), under the map
     * lock held exclusive: offsets into the old file mean nothing */
    atomic_uint_fast64_t file_epoch;
    /* what the layer above keeps per environment, see st_env_user; its own
     * lock, not registry_lock: a slot is first asked for inside LMDB
     * transactions, and registry_lock is held around mdb_env_open, so
     * sharing it would order the two locks both ways */
    pthread_mutex_t user_lock;
    void *user[ST_USER_COUNT];
    void (*user_free[ST_USER_COUNT])(void *);
    /* Registry of open environments, guarded by registry_lock. An entry
     * inherited through fork() belongs to the parent (LMDB environments
     * must not be used across fork), hence the pid. */
    pid_t pid;
    dev_t dev;
    ino_t ino;
    int refs;
    st_env *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static st_env *registry;

static int open_dbis(st_env *env)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(env->mdb, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    for (int i = 0; i < ST_DB_COUNT && rc == 0; i++)
        rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &env->dbi[i]);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static int init_lock(st_env *env)
{
    pthread_rwlockattr_t attr;
    int rc = pthread_rwlockattr_init(&attr);
    if (rc != 0)
        return rc;
    /* Growth must not starve behind a stream of searches. */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    rc = pthread_rwlock_init(&env->map_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return rc;
}

/*
 * Refuse a data file that is shorter than its own meta page says (reading
 * its missing pages through the map would kill the process with SIGBUS),
 * and a lock file without its data file (LMDB would quietly start an empty
 * database in its place).
 */
static int check_files(const char *path, int after_open, MDB_env *mdb)
{
    char file[4200];
    struct stat st;
    snprintf(file, sizeof file, "%s/data.mdb", path);
    int have_data = stat(file, &st) == 0;
    if (!after_open) {
        char lock[4200];
        struct stat lst;
        snprintf(lock, sizeof lock, "%s/lock.mdb", path);
        return !have_data && stat(lock, &lst) == 0 ? ST_ERR_MISSING : 0;
    }
    MDB_envinfo info;
    MDB_stat ms;
    if (!have_data || mdb_env_info(mdb, &info) || mdb_env_stat(mdb, &ms))
        return 0;
    uint64_t need = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
    return (uint64_t)st.st_size < need ? ST_ERR_TRUNCATED : 0;
}

/* Open the LMDB environment of env at path (again, after a compaction). */
static int mdb_open_env(st_env *env, const char *path, uint64_t map_size)
{
    unsigned mdb_flags = MDB_NOTLS | MDB_NORDAHEAD;
    if (env->flags & ST_OPEN_NOSYNC)
        mdb_flags |= MDB_NOSYNC;
    int rc = mdb_env_create(&env->mdb);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env->mdb, MAX_DBS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env->mdb, map_size);
    if (rc == 0)
        rc = mdb_env_open(env->mdb, path, mdb_flags, 0644);
    if (rc == 0)  /* before any page is read through the map */
        rc = check_files(path, 1, env->mdb);
    if (rc == 0)
        rc = open_dbis(env);
    MDB_stat ms;
    if (rc == 0 && (rc = mdb_env_stat(env->mdb, &ms)) == 0)
        env->page_bytes = ms.ms_psize;
    if (rc != 0 && env->mdb) {
        mdb_env_close(env->mdb);
        env->mdb = NULL;
    }
    return rc;
}

static int env_create(const char *path, unsigned flags, uint64_t map_size,
                      st_env **out)
{
    st_env *env = qv_calloc(1, sizeof *env);
    if (!env)
        return ENOMEM;
    int rc = init_lock(env);
    if (rc != 0) {
        qv_mem_free(env);
        return rc;
    }
    pthread_mutex_init(&env->user_lock, NULL);
    env->flags = flags;
    rc = check_files(path, 0, NULL);
    if (rc == 0)
        rc = mdb_open_env(env, path, map_size ? map_size : DEFAULT_MAP_SIZE);
    if (rc != 0) {
        pthread_rwlock_destroy(&env->map_lock);
        pthread_mutex_destroy(&env->user_lock);
        qv_mem_free(env);
        return rc;
    }
    *out = env;
    return 0;
}

int st_env_open(const char *path, unsigned flags, uint64_t map_size,
                st_env **out)
{
    struct stat st;
    int rc = 0;

    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return errno;
    if (stat(path, &st) != 0)
        return errno;
    if (!S_ISDIR(st.st_mode))
        return ENOTDIR;

    pthread_mutex_lock(&registry_lock);
    st_env *env = registry;
    while (env && !(env->dev == st.st_dev && env->ino == st.st_ino &&
                    env->pid == getpid()))
        env = env->next;
    if (env) {
        if (env->flags != flags) {
            rc = ST_ERR_MODE;
        } else {
            env->refs++;
            *out = env;
        }
        goto done;
    }
    rc = env_create(path, flags, map_size, &env);
    if (rc == 0) {
        env->pid = getpid();
        env->dev = st.st_dev;
        env->ino = st.st_ino;
        env->refs = 1;
        env->next = registry;
        registry = env;
        *out = env;
    }
done:
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

void st_env_close(st_env *env)
{
    if (!env)
        return;
    pthread_mutex_lock(&registry_lock);
    int last = --env->refs == 0;
    if (last) {
        st_env **link = &registry;
        while (*link != env)
            link = &(*link)->next;
        *link = env->next;
    }
    pthread_mutex_unlock(&registry_lock);
    if (!last)
        return;
    for (int i = 0; i < ST_USER_COUNT; i++)
        if (env->user_free[i])
            env->user_free[i](env->user[i]);
    mdb_env_close(env->mdb);
    pthread_rwlock_destroy(&env->map_lock);
    pthread_mutex_destroy(&env->user_lock);
    qv_mem_free(env);
}

void *st_env_user(st_env *env, enum st_user slot, void *(*create)(void),
                  void (*destroy)(void *))
{
    pthread_mutex_lock(&env->user_lock);
    if (!env->user[slot]) {
        env->user[slot] = create();
        if (env->user[slot])
            env->user_free[slot] = destroy;
    }
    void *user = env->user[slot];
    pthread_mutex_unlock(&env->user_lock);
    return user;
}

MDB_dbi st_dbi(const st_env *env, enum st_db db)
{
    return env->dbi[db];
}

MDB_env *st_mdb(st_env *env) { return env->mdb; }

/*
 * LMDB does not say where it mapped the file (mdb_env_info's me_mapaddr
 * is only the MDB_FIXEDMAP address), so find it from a page: every page
 * begins with its own page number, and a leaf page of the main database
 * holds the key that a cursor returns. Called with the map lock held
 * shared (inside a transaction), so the map cannot move meanwhile; a
 * fresh read-only transaction is used, so the page is a mapped one and
 * not a write transaction's copy.
 */
static char *find_map_base(st_env *env)
{
    MDB_stat stat;
    MDB_txn *txn;
    MDB_dbi main_db;
    MDB_cursor *cur;
    MDB_val key, val;
    char *base = NULL;
    if (mdb_env_stat(env->mdb, &stat) != 0 ||
        mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, &txn) != 0)
        return NULL;
    if (mdb_dbi_open(txn, NULL, 0, &main_db) == 0 &&
        mdb_cursor_open(txn, main_db, &cur) == 0) {
        if (mdb_cursor_get(cur, &key, &val, MDB_FIRST) == 0) {
            uintptr_t page = (uintptr_t)key.mv_data &
                             ~(uintptr_t)(stat.ms_psize - 1);
            uint64_t pgno;
            memcpy(&pgno, (const void *)page, sizeof pgno);
            base = (char *)page - pgno * stat.ms_psize;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return base;
}

const char *st_map_base(st_env *env)
{
    char *base = atomic_load(&env->map_base);
    if (!base) {
        base = find_map_base(env);
        atomic_store(&env->map_base, base);
    }
    return base;
}

uint64_t st_file_epoch(st_env *env)
{
    return atomic_load(&env->file_epoch);
}

uint32_t st_page_bytes(const st_env *env) { return env->page_bytes; }

uint64_t st_map_offset(st_env *env, const void *p)
{
    const char *base = st_map_base(env);
    const char *at = p;
    uint64_t size = st_map_size(env);
    if (!base || at < base || (uint64_t)(at - base) >= size)
        return UINT64_MAX;   /* not in the map: a write's own copy */
    return (uint64_t)(at - base);
}

/* LMDB's page header (MDB_page up to mp_ptrs, 16 bytes on 64-bit
 * systems): a value LMDB keeps in overflow pages starts right after it. */
#define LMDB_PAGE_HEADER 16

uint64_t st_fixed_offset(st_env *env, const void *p)
{
    uint64_t off = st_map_offset(env, p);
    /* A value in a leaf page lies above the page's header, the node
     * header and its key, so never right after the header. */
    if (off == UINT64_MAX || off % env->page_bytes != LMDB_PAGE_HEADER)
        return UINT64_MAX;
    return off;
}

const char *st_path(st_env *env)
{
    const char *path = NULL;
    return mdb_env_get_path(env->mdb, &path) == 0 ? path : NULL;
}

uint64_t st_map_size(st_env *env)
{
    MDB_envinfo info;
    mdb_env_info(env->mdb, &info);
    return info.me_mapsize;
}

/*
 * Grow the map after a write found it full at seen_size. Another thread
 * may have grown it meanwhile; then there is nothing to do.
 */
static int grow_map(st_env *env, uint64_t seen_size)
{
    int rc = 0;
    pthread_rwlock_wrlock(&env->map_lock);
    uint64_t size = st_map_size(env);
    if (size == seen_size) {
        uint64_t step = size < MAX_MAP_STEP ? size : MAX_MAP_STEP;
        rc = mdb_env_set_mapsize(env->mdb, size + step);
        atomic_store(&env->map_base, NULL);
    }
    pthread_rwlock_unlock(&env->map_lock);
    return rc;
}

/* Another process grew the map: adopt its size. */
static int adopt_map_size(st_env *env)
{
    pthread_rwlock_wrlock(&env->map_lock);
    int rc = mdb_env_set_mapsize(env->mdb, 0);
    atomic_store(&env->map_base, NULL);
    pthread_rwlock_unlock(&env->map_lock);
    return rc;
}

/* Begin a transaction with the map lock held shared; on error it is not. */
static int txn_begin_locked(st_env *env, unsigned flags, MDB_txn **txn)
{
    for (;;) {
        pthread_rwlock_rdlock(&env->map_lock);
        int rc = mdb_txn_begin(env->mdb, NULL, flags, txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&env->map_lock);
        if (rc != MDB_MAP_RESIZED)
            return rc;
        rc = adopt_map_size(env);
        if (rc != 0)
            return rc;
    }
}

int st_write(st_env *env, st_write_fn fn, void *ctx)
{
    for (;;) {
        MDB_txn *txn;
        int rc = txn_begin_locked(env, 0, &txn);
        if (rc != 0)
            return rc;
        uint64_t size = st_map_size(env);
        rc = fn(txn, ctx);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&env->map_lock);
        if (rc != MDB_MAP_FULL)
            return rc;
        rc = grow_map(env, size);
        if (rc != 0)
            return rc;
    }
}

int st_read_begin(st_env *env, MDB_txn **out)
{
    return txn_begin_locked(env, MDB_RDONLY, out);
}

void st_read_end(st_env *env, MDB_txn *txn)
{
    if (!txn)
        return;
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&env->map_lock);
}

int st_backup(st_env *env, const char *dir)
{
    /* shared: the map must not be resized under the copy's own snapshot */
    pthread_rwlock_rdlock(&env->map_lock);
    int rc = mdb_env_copy2(env->mdb, dir, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&env->map_lock);
    return rc;
}

void st_figures(st_env *env, struct st_figures *out)
{
    MDB_envinfo info;
    MDB_stat mst;
    const char *path = NULL;
    struct stat fst;
    char file[4200];
    memset(out, 0, sizeof *out);
    mdb_env_info(env->mdb, &info);
    mdb_env_stat(env->mdb, &mst);
    out->map_bytes = info.me_mapsize;
    out->page_bytes = mst.ms_psize;
    out->used_bytes = (uint64_t)(info.me_last_pgno + 1) * mst.ms_psize;
    out->last_txn = info.me_last_txnid;
    out->readers = (int)info.me_numreaders;
    if (mdb_env_get_path(env->mdb, &path) == 0) {
        snprintf(file, sizeof file, "%s/data.mdb", path);
        if (stat(file, &fst) == 0)
            out->file_bytes = (uint64_t)fst.st_size;
    }
}

/*
 * Does another process have the environment open? Every process that has
 * it open holds an fcntl lock on lock.mdb. The probe reads /proc/locks
 * (Linux): opening lock.mdb to test a lock would, on close, drop this
 * process's own LMDB locks (POSIX drops all of them when any descriptor of
 * the file closes). 1 yes, 0 no, -1 cannot tell.
 */
static int other_process_has_it(const char *path)
{
    char lockfile[4200], line[256];
    struct stat st;
    snprintf(lockfile, sizeof lockfile, "%s/lock.mdb", path);
    FILE *f = fopen("/proc/locks", "r");
    if (!f || stat(lockfile, &st) != 0) {
        if (f)
            fclose(f);
        return -1;
    }
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        long pid;
        unsigned maj, min;
        unsigned long long ino;
        char kind[16], rw[16];
        if (sscanf(line, "%*d: %15s %*s %15s %ld %x:%x:%llu", kind, rw, &pid,
                   &maj, &min, &ino) != 6 &&
            sscanf(line, "%*d: -> %15s %*s %15s %ld %x:%x:%llu", kind, rw,
                   &pid, &maj, &min, &ino) != 6)
            continue;
        found = ino == (unsigned long long)st.st_ino &&
                maj == major(st.st_dev) && min == minor(st.st_dev) &&
                pid != (long)getpid();
    }
    fclose(f);
    return found;
}

/* Copy compacted into dir/.compact, then swap it in for data.mdb. */
static int compact_locked(st_env *env, const char *path)
{
    char tmp[4200], from[4300], to[4300];
    snprintf(tmp, sizeof tmp, "%s/.compact", path);
    snprintf(from, sizeof from, "%s/data.mdb", tmp);
    snprintf(to, sizeof to, "%s/data.mdb", path);
    unlink(from);
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return errno;
    int rc = mdb_env_copy2(env->mdb, tmp, MDB_CP_COMPACT);
    if (rc != 0) {
        unlink(from);
        rmdir(tmp);
        return rc;
    }
    uint64_t map = st_map_size(env);
    mdb_env_close(env->mdb);
    env->mdb = NULL;
    atomic_store(&env->map_base, NULL);
    atomic_fetch_add(&env->file_epoch, 1);
    rc = rename(from, to) == 0 ? 0 : errno;
    rmdir(tmp);
    /* reopen whichever file is there now; the dbi handles come back in
     * the same order, so they keep their numbers */
    int rc2 = mdb_open_env(env, path, map);
    return rc ? rc : rc2;
}

int st_compact(st_env *env)
{
    const char *p = NULL;
    char path[4096];
    mdb_env_get_path(env->mdb, &p);
    snprintf(path, sizeof path, "%s", p ? p : ".");
    pthread_rwlock_wrlock(&env->map_lock);  /* no transaction of ours */
    int others = other_process_has_it(path);
    int rc = others != 0 ? ST_ERR_IN_USE : compact_locked(env, path);
    pthread_rwlock_unlock(&env->map_lock);
    return rc;
}

int st_delete_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix,
                     size_t prefix_len)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    MDB_val key = {prefix_len, (void *)prefix}, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (rc == 0 && key.mv_size >= prefix_len &&
           memcmp(key.mv_data, prefix, prefix_len) == 0) {
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0)
            /* after a delete, NEXT lands on the key that followed */
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

const char *st_strerror(int rc)
{
    switch (rc) {
    case 0: return "success";
    case ST_ABORT: return "transaction aborted";
    case ST_ERR_MODE: return "open in this process with the other sync mode";
    case ST_ERR_IN_USE: return "another process has the database open";
    case ST_ERR_MISSING: return "data.mdb is missing beside lock.mdb";
    case ST_ERR_TRUNCATED: return "data.mdb is shorter than its last page";
    default: return mdb_strerror(rc);  /* LMDB's codes, and errno's */
    }
}
