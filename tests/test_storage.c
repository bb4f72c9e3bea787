/* The LMDB environment: sharing, sync-mode conflicts, map growth, ranges. */
#include <errno.h>
#include <sys/wait.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "storage/env.h"
#include "storage/keys.h"
#include "common/check.h"
#include "tests/test_util.h"

static void test_same_directory_shares_one_environment(void **state)
{
    char *dir = tu_mkdtemp();
    st_env *a, *b;
    assert_int_equal(st_env_open(dir, 0, 0, &a), 0);
    assert_int_equal(st_env_open(dir, 0, 0, &b), 0);
    assert_ptr_equal(a, b);
    st_env_close(a);
    /* b still works after a's close */
    MDB_txn *txn;
    assert_int_equal(st_read_begin(b, &txn), 0);
    st_read_end(b, txn);
    st_env_close(b);
    tu_rmdir(dir);
}

static void test_other_sync_mode_is_refused(void **state)
{
    char *dir = tu_mkdtemp();
    st_env *a, *b = NULL;
    assert_int_equal(st_env_open(dir, 0, 0, &a), 0);
    assert_int_equal(st_env_open(dir, ST_OPEN_NOSYNC, 0, &b), ST_ERR_MODE);
    assert_null(b);
    st_env_close(a);
    tu_rmdir(dir);
}

static void test_path_that_is_a_file_is_refused(void **state)
{
    st_env *env = NULL;
    assert_int_not_equal(st_env_open("/etc/hostname", 0, 0, &env), 0);
    assert_null(env);
}

struct fill_ctx {
    MDB_dbi dbi;
    uint32_t first, count;
    size_t value_size;
};

static int fill_txn(MDB_txn *txn, void *arg)
{
    struct fill_ctx *c = arg;
    for (uint32_t i = c->first; i < c->first + c->count; i++) {
        unsigned char k[KEY_DOC_LEN];
        key_doc(k, 1, i);
        MDB_val key = {sizeof k, k}, val = {c->value_size, NULL};
        int rc = mdb_put(txn, c->dbi, &key, &val, MDB_RESERVE);
        if (rc != 0)
            return rc;
        memset(val.mv_data, (int)(i & 0xff), c->value_size);
    }
    return 0;
}

/* A 1 MiB map takes 24 MiB of writes: the map grows and no write fails. */
static void test_map_grows_when_full(void **state)
{
    char *dir = tu_mkdtemp();
    st_env *env;
    assert_int_equal(st_env_open(dir, ST_OPEN_NOSYNC, 1 << 20, &env), 0);
    uint64_t before = st_map_size(env);
    struct fill_ctx c = {st_dbi(env, ST_DB_VECTORS), 0, 1000, 8192};
    for (int batch = 0; batch < 3; batch++, c.first += c.count)
        assert_int_equal(st_write(env, fill_txn, &c), 0);
    assert_true(st_map_size(env) > before);

    MDB_txn *txn;
    MDB_val val;
    unsigned char k[KEY_DOC_LEN];
    key_doc(k, 1, 2999);
    MDB_val key = {sizeof k, k};
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(mdb_get(txn, c.dbi, &key, &val), 0);
    assert_int_equal(val.mv_size, 8192);
    assert_int_equal(((unsigned char *)val.mv_data)[100], 2999 & 0xff);
    st_read_end(env, txn);
    st_env_close(env);
    tu_rmdir(dir);
}

static int abort_txn(MDB_txn *txn, void *arg)
{
    struct fill_ctx *c = arg;
    int rc = fill_txn(txn, c);
    return rc ? rc : ST_ABORT;
}

static void test_aborted_write_leaves_nothing(void **state)
{
    char *dir = tu_mkdtemp();
    st_env *env;
    assert_int_equal(st_env_open(dir, 0, 0, &env), 0);
    struct fill_ctx c = {st_dbi(env, ST_DB_DOCS), 0, 10, 16};
    assert_int_equal(st_write(env, abort_txn, &c), ST_ABORT);
    MDB_txn *txn;
    MDB_stat stat;
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(mdb_stat(txn, c.dbi, &stat), 0);
    assert_int_equal(stat.ms_entries, 0);
    st_read_end(env, txn);
    st_env_close(env);
    tu_rmdir(dir);
}

struct prefix_ctx {
    MDB_dbi dbi;
};

static int put_three_collections(MDB_txn *txn, void *arg)
{
    struct prefix_ctx *c = arg;
    for (uint32_t coll = 1; coll <= 3; coll++) {
        for (uint32_t i = 0; i < 500; i++) {
            unsigned char k[KEY_DOC_LEN];
            key_doc(k, coll, i);
            MDB_val key = {sizeof k, k}, val = {1, "x"};
            int rc = mdb_put(txn, c->dbi, &key, &val, 0);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int delete_collection_two(MDB_txn *txn, void *arg)
{
    struct prefix_ctx *c = arg;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, 2);
    return st_delete_prefix(txn, c->dbi, prefix, sizeof prefix);
}

static void test_delete_prefix_removes_exactly_one_range(void **state)
{
    char *dir = tu_mkdtemp();
    st_env *env;
    assert_int_equal(st_env_open(dir, ST_OPEN_NOSYNC, 0, &env), 0);
    struct prefix_ctx c = {st_dbi(env, ST_DB_DOCS)};
    assert_int_equal(st_write(env, put_three_collections, &c), 0);
    assert_int_equal(st_write(env, delete_collection_two, &c), 0);
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val key, val;
    unsigned counts[4] = {0};
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, c.dbi, &cur), 0);
    while (mdb_cursor_get(cur, &key, &val, MDB_NEXT) == 0)
        counts[key_get_u32(key.mv_data)]++;
    mdb_cursor_close(cur);
    st_read_end(env, txn);
    assert_int_equal(counts[1], 500);
    assert_int_equal(counts[2], 0);
    assert_int_equal(counts[3], 500);
    st_env_close(env);
    tu_rmdir(dir);
}

/* A value in overflow pages of its own has a fixed offset, which reads
 * back the value; one inside a leaf page has none (the page moves with
 * the next write to it). */
static void test_fixed_offsets_only_for_overflow_values(void **state)
{
    char *dir = tu_mkdtemp();
    st_env *env;
    assert_int_equal(st_env_open(dir, 0, 0, &env), 0);
    struct fill_ctx big = {st_dbi(env, ST_DB_VECTORS), 0, 3, 3136};
    struct fill_ctx small = {st_dbi(env, ST_DB_VECTORS), 3, 3, 128};
    assert_int_equal(st_write(env, fill_txn, &big), 0);
    assert_int_equal(st_write(env, fill_txn, &small), 0);
    MDB_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    int fd;
    assert_int_equal(mdb_env_get_fd(st_mdb(env), &fd), 0);
    for (uint32_t i = 0; i < 6; i++) {
        unsigned char k[KEY_DOC_LEN], buf[3136];
        key_doc(k, 1, i);
        MDB_val key = {sizeof k, k}, val;
        assert_int_equal(mdb_get(txn, big.dbi, &key, &val), 0);
        uint64_t off = st_fixed_offset(env, val.mv_data);
        assert_true(st_map_offset(env, val.mv_data) != UINT64_MAX);
        if (val.mv_size == 128) {
            assert_true(off == UINT64_MAX);
            continue;
        }
        assert_true(off != UINT64_MAX);
        assert_int_equal(pread(fd, buf, val.mv_size, (off_t)off),
                         (ssize_t)val.mv_size);
        assert_memory_equal(buf, val.mv_data, val.mv_size);
    }
    st_read_end(env, txn);
    st_env_close(env);
    tu_rmdir(dir);
}

/* Storage's codes, LMDB's and errno's never overlap, and each has a
 * name. */
static void test_storage_codes_are_named(void **state)
{
    (void)state;
    int codes[] = {ST_ABORT, ST_ERR_MODE, ST_ERR_IN_USE, ST_ERR_MISSING,
                   ST_ERR_TRUNCATED};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        assert_true(codes[i] < 0 && codes[i] > MDB_KEYEXIST);
        assert_true(strlen(st_strerror(codes[i])) > 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
    assert_string_equal(st_strerror(MDB_MAP_FULL), mdb_strerror(MDB_MAP_FULL));
    assert_string_equal(st_strerror(ENOSPC), strerror(ENOSPC));
}

/* QV_ASSERT is on in the test builds: a broken invariant aborts and
 * names its condition, file and line on stderr. */
static void test_assertions_name_the_broken_invariant(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        int refs = 0;
        QV_ASSERT(refs > 0);
        _exit(0);
    }
    close(fds[1]);
    char text[512] = "";
    size_t got = 0;
    ssize_t n;
    while (got + 1 < sizeof text &&
           (n = read(fds[0], text + got, sizeof text - 1 - got)) > 0)
        got += (size_t)n;
    text[got] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    assert_non_null(strstr(text, "tests/test_storage.c:"));
    assert_non_null(strstr(text, "refs > 0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assertions_name_the_broken_invariant),
        cmocka_unit_test(test_storage_codes_are_named),
        cmocka_unit_test(test_same_directory_shares_one_environment),
        cmocka_unit_test(test_other_sync_mode_is_refused),
        cmocka_unit_test(test_path_that_is_a_file_is_refused),
        cmocka_unit_test(test_map_grows_when_full),
        cmocka_unit_test(test_aborted_write_leaves_nothing),
        cmocka_unit_test(test_delete_prefix_removes_exactly_one_range),
        cmocka_unit_test(test_fixed_offsets_only_for_overflow_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
