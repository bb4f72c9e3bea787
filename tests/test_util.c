#include "test_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_mkdtemp(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/quiver-test-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(path))
        fail_msg("mkdtemp failed");
    return strdup(path);
}

static int remove_entry(const char *path, const struct stat *st, int type,
                        struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0;
}

/* Everything under dir, depth first, links removed and never followed. */
void tu_rmdir(char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

uint64_t tu_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

float tu_randf(uint64_t *s)
{
    return (float)((double)(tu_rand(s) >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

void tu_rand_vector(uint64_t *s, float *v, size_t dim)
{
    for (size_t i = 0; i < dim; i++)
        v[i] = tu_randf(s);
}

int tu_start_server(const char *dir, const char *const *extra, pid_t *pid)
{
    const char *build = getenv("QUIVER_BUILD");
    char bin[4096], log[4200];
    snprintf(bin, sizeof bin, "%s/quiverd", build ? build : "build/asan");
    snprintf(log, sizeof log, "%s/quiverd.log", dir);
    int fds[2];
    if (pipe(fds) != 0)
        fail_msg("pipe failed");
    const char *argv[32] = {bin, "--db", dir, "--listen", "127.0.0.1:0"};
    int argc = 5;
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    *pid = fork();
    if (*pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        FILE *err = fopen(log, "a");
        if (err)
            dup2(fileno(err), STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char line[128] = "";
    size_t n = 0;
    /* read the first line: the server is ready once it is written */
    while (n + 1 < sizeof line && read(fds[0], line + n, 1) == 1 &&
           line[n] != '\n')
        n++;
    line[n] = '\0';
    close(fds[0]);
    int port = 0;
    if (sscanf(line, "listening on 127.0.0.1:%d", &port) != 1)
        fail_msg("quiverd did not start (see %s): '%s'", log, line);
    return port;
}

int tu_stop_server(pid_t pid)
{
    int status = -1;
    kill(pid, SIGTERM);
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int tu_remote(void)
{
    return getenv("QUIVER_TEST_REMOTE") != NULL;
}

#define MAX_SERVERS 16
static struct {
    char dir[4096];
    pid_t pid;
    int port;
} servers[MAX_SERVERS];
static int nservers;

qv_status tu_open(const char *dir, const qv_open_options *opts, qv_db **db)
{
    if (!tu_remote())
        return qv_open(dir, opts, db);
    int i = 0;
    while (i < nservers && strcmp(servers[i].dir, dir) != 0)
        i++;
    if (i == nservers) {
        if (nservers == MAX_SERVERS)
            fail_msg("too many test servers");
        snprintf(servers[i].dir, sizeof servers[i].dir, "%s", dir);
        /* backups asked for by name land beside the database */
        const char *const extra[] = {"--backup-dir", dir, NULL};
        servers[i].port = tu_start_server(dir, extra, &servers[i].pid);
        nservers++;
    }
    char uri[64];
    snprintf(uri, sizeof uri, "qv://127.0.0.1:%d", servers[i].port);
    return qv_open(uri, opts, db);
}

void tu_stop_servers(void)
{
    for (int i = 0; i < nservers; i++) {
        int status = tu_stop_server(servers[i].pid);
        if (status != 0)
            fail_msg("quiverd on %s exited with %d", servers[i].dir, status);
    }
    nservers = 0;
}

int tu_setup(void **state, const qv_open_options *opts)
{
    struct tu_fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->dir = tu_mkdtemp();
    if (tu_open(f->dir, opts, &f->db) != QV_OK) {
        tu_rmdir(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int tu_teardown(void **state)
{
    struct tu_fixture *f = *state;
    char *report = NULL;
    qv_status st = qv_check(f->db, &report);
    if (st != QV_OK)
        fprintf(stderr, "qv_check after the test: %s\n",
                report ? report : qv_errmsg(f->db));
    qv_free(report);
    qv_close(f->db);
    tu_stop_servers();
    tu_rmdir(f->dir);
    free(f);
    return st == QV_OK ? 0 : -1;
}
