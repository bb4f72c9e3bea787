#include "tests/test_util.h"

#include <ftw.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/inotify.h>
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

/* The "nats://..." of the ports file nats-server writes into dir once it
 * listens: 1 when found. */
static int read_nats_url(const char *dir, pid_t pid, char *url, size_t len)
{
    char path[4200], text[512] = "";
    snprintf(path, sizeof path, "%s/nats-server_%d.ports", dir, (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *at = strstr(text, "nats://");
    const char *end = at ? strchr(at, '"') : NULL;
    if (!end || (size_t)(end - at) >= len)
        return 0;
    memcpy(url, at, (size_t)(end - at));
    url[end - at] = '\0';
    return 1;
}

pid_t tu_start_nats(const char *dir, char *url, size_t urllen)
{
    return tu_start_nats_server(dir, "nats", 0, 0, NULL, url, urllen);
}

pid_t tu_start_nats_server(const char *dir, const char *name, int port,
                           int cluster_port, const char *routes, char *url,
                           size_t urllen)
{
    char store[4200], log[4200], port_arg[16], c[64];
    snprintf(store, sizeof store, "%s/%s-store", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    snprintf(port_arg, sizeof port_arg, "%d", port ? port : -1);
    snprintf(c, sizeof c, "nats://127.0.0.1:%d", cluster_port);
    const char *argv[24] = {"nats-server", "-js", "-sd", store, "-a",
                            "127.0.0.1", "-p", port_arg, "--ports_file_dir",
                            dir,
                            "-l", log, "-n", name};
    int argc = 14;
    if (routes) {
        argv[argc++] = "--cluster_name";
        argv[argc++] = "quiver-test";
        argv[argc++] = "-cluster";
        argv[argc++] = c;
        argv[argc++] = "-routes";
        argv[argc++] = routes;
    }
    argv[argc] = NULL;
    /* watch dir before the server can write its ports file there */
    int watch = inotify_init1(IN_CLOEXEC);
    if (watch < 0 || inotify_add_watch(watch, dir, IN_CLOSE_WRITE |
                                                   IN_MOVED_TO) < 0)
        fail_msg("inotify on %s failed", dir);
    pid_t pid = fork();
    if (pid == 0) {
        execvp("nats-server", (char *const *)argv);
        _exit(127);
    }
    int found = 0, status;
    for (int waited = 0; !found && waited < 10000; waited += 100) {
        found = read_nats_url(dir, pid, url, urllen);
        if (!found && waitpid(pid, &status, WNOHANG) == pid)
            fail_msg("nats-server exited (status %d); see %s", status, log);
        struct pollfd p = {watch, POLLIN, 0};
        char events[4096];
        if (!found && poll(&p, 1, 100) > 0 &&
            read(watch, events, sizeof events) < 0)
            break;
    }
    close(watch);
    if (!found) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("nats-server did not listen within 10 s; see %s", log);
    }
    return pid;
}

void tu_stop_nats(pid_t pid)
{
    int status;
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
}

int tu_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fail_msg("no free loopback port");
    close(fd);
    return ntohs(a.sin_port);
}

int tu_remote(void)
{
    return getenv("QUIVER_TEST_REMOTE") != NULL;
}

static void add_extension(X509 *cert, X509 *issuer, int nid,
                          const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext || !X509_add_ext(cert, ext, -1))
        fail_msg("cannot add certificate extension %d", nid);
    X509_EXTENSION_free(ext);
}

/* A certificate for key, valid from now + from_s to now + until_s, signed
 * by issuer (NULL: by itself); a CA's, or a server's for 127.0.0.1. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
                       EVP_PKEY *issuer_key, int is_ca, long from_s,
                       long until_s)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), until_s);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    add_extension(x, issuer ? issuer : x, NID_basic_constraints,
                  is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (is_ca)
        add_extension(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    else
        add_extension(x, issuer, NID_subject_alt_name,
                      "IP:127.0.0.1,DNS:localhost");
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
        fail_msg("cannot sign a test certificate");
    return x;
}

static void write_pem(const char *dir, const char *file, X509 *cert,
                      EVP_PKEY *key)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    if (!f || (cert && !PEM_write_X509(f, cert)) ||
        (key && !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)))
        fail_msg("cannot write %s", path);
    fclose(f);
}

void tu_make_certs(const char *dir)
{
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *other_key = EVP_EC_gen("P-256");
    EVP_PKEY *key = EVP_EC_gen("P-256"), *old_key = EVP_EC_gen("P-256");
    if (!ca_key || !other_key || !key || !old_key)
        fail_msg("cannot make test keys");
    X509 *ca = make_cert(ca_key, "quiver test CA", NULL, NULL, 1, -3600,
                         86400);
    X509 *other = make_cert(other_key, "another CA", NULL, NULL, 1, -3600,
                            86400);
    X509 *server = make_cert(key, "127.0.0.1", ca, ca_key, 0, -3600, 86400);
    X509 *expired = make_cert(old_key, "127.0.0.1", ca, ca_key, 0, -7200,
                              -3600);
    write_pem(dir, "ca.pem", ca, NULL);
    write_pem(dir, "other-ca.pem", other, NULL);
    write_pem(dir, "server.pem", server, NULL);
    write_pem(dir, "server.key", NULL, key);
    write_pem(dir, "expired.pem", expired, NULL);
    write_pem(dir, "expired.key", NULL, old_key);
    X509_free(ca);
    X509_free(other);
    X509_free(server);
    X509_free(expired);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_key);
    EVP_PKEY_free(key);
    EVP_PKEY_free(old_key);
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
    int tls = getenv("QUIVER_TEST_TLS") != NULL;
    int i = 0;
    while (i < nservers && strcmp(servers[i].dir, dir) != 0)
        i++;
    if (i == nservers) {
        if (nservers == MAX_SERVERS)
            fail_msg("too many test servers");
        snprintf(servers[i].dir, sizeof servers[i].dir, "%s", dir);
        /* backups asked for by name land beside the database; the
         * certificates of a TLS run there too */
        char cert[4200], key[4200];
        snprintf(cert, sizeof cert, "%s/server.pem", dir);
        snprintf(key, sizeof key, "%s/server.key", dir);
        const char *extra[] = {"--backup-dir", dir, "--tls-cert", cert,
                               "--tls-key", key, NULL};
        if (tls)
            tu_make_certs(dir);
        else
            extra[2] = NULL;
        servers[i].port = tu_start_server(dir, extra, &servers[i].pid);
        nservers++;
    }
    char uri[64], ca[4200];
    snprintf(uri, sizeof uri, "%s://127.0.0.1:%d", tls ? "qvs" : "qv",
             servers[i].port);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    qv_open_options with_ca = opts ? *opts : (qv_open_options){0};
    with_ca.tls_ca_file = ca;
    return qv_open(uri, tls ? &with_ca : opts, db);
}

/* Copy the log quiverd wrote in dir to stderr, where the test's report
 * keeps it after dir is removed. */
static void print_server_log(const char *dir)
{
    char path[4200], buf[4096];
    snprintf(path, sizeof path, "%s/quiverd.log", dir);
    FILE *log = fopen(path, "r");
    if (!log)
        return;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, log)) > 0)
        fwrite(buf, 1, n, stderr);
    fclose(log);
}

int tu_stop_servers(void)
{
    int rc = 0;
    for (int i = 0; i < nservers; i++) {
        int status = tu_stop_server(servers[i].pid);
        if (status != 0) {
            fprintf(stderr, "quiverd on %s exited with %d; its log:\n",
                    servers[i].dir, status);
            print_server_log(servers[i].dir);
            rc = -1;
        }
    }
    nservers = 0;
    return rc;
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
    int stopped = tu_stop_servers();
    tu_rmdir(f->dir);
    free(f);
    return st == QV_OK && stopped == 0 ? 0 : -1;
}

/* QUIVER_TEST_ONLY=PATTERN runs only the tests whose names match it
 * (cmocka's filter, '*' and '?'), for a developer re-running one test. */
__attribute__((constructor)) static void tu_filter_from_env(void)
{
    const char *only = getenv("QUIVER_TEST_ONLY");
    if (only && *only)
        cmocka_set_test_filter(only);
}
