/*
 * quiverd.c - `quiverd --db DIR [--listen ADDR:PORT] [--threads N]
 * [--token-file F] [--max-frame BYTES] [--max-connections N]
 * [--idle-timeout S] [--read-timeout S] [--auth-timeout S]
 * [--max-unauthenticated N] [--backup-dir DIR] [--tls-cert F --tls-key F]
 * [--cluster NATS-URLS --node NAME [--stream NAME] [--stream-replicas N]
 * [--nats-token-file F] [--nats-ca F]] [--vectors-in-memory]`
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "wire/server/server.h"
#include "common/token.h"

static const char usage[] =
    "usage: quiverd --db DIR [--listen ADDR:PORT] [--threads N]\n"
    "               [--token-file FILE] [--max-frame BYTES]\n"
    "               [--max-connections N] [--idle-timeout SECONDS]\n"
    "               [--read-timeout SECONDS] [--auth-timeout SECONDS]\n"
    "               [--max-unauthenticated N] [--backup-dir DIR]\n"
    "               [--tls-cert PEM --tls-key PEM]\n"
    "               [--cluster NATS-URLS --node NAME [--stream NAME]\n"
    "                [--stream-replicas N] [--nats-token-file FILE]\n"
    "                [--nats-ca PEM] [--advertise HOST:PORT]]\n"
    "               [--vectors-in-memory]\n"
    "default listen address 127.0.0.1:7411; other than loopback addresses\n"
    "need --token-file, whose first line every client must present;\n"
    "backup requests write only into new entries of --backup-dir;\n"
    "with --tls-cert and --tls-key clients connect with qvs://HOST:PORT;\n"
    "with --cluster the node's writes go through the NATS JetStream write\n"
    "log (docs/CLUSTER.md); --advertise is the address the other nodes\n"
    "reach this one at (needed when --listen is 0.0.0.0 or [::]);\n"
    "--vectors-in-memory copies every graph's\n"
    "vectors into memory at open, for the fastest searches\n";

/* The token: the file's first line; at least 8 characters. */
static char *read_token(const char *path)
{
    char err[512];
    char *token = token_read_file(path, err, sizeof err);
    if (!token) {
        fprintf(stderr, "quiverd: %s\n", err);
    } else if (strlen(token) < 8) {
        fprintf(stderr, "quiverd: %s: the token must be at least 8 "
                "characters on the first line\n", path);
        qv_mem_free(token);
        token = NULL;
    }
    return token;
}

/* The backup directory: an existing directory, kept as an absolute path
 * (the server may be asked long after a relative one meant something). */
static char *backup_dir(const char *arg)
{
    char *path = realpath(arg, NULL);
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "quiverd: --backup-dir %s: not an existing "
                "directory\n", arg);
        free(path);
        return NULL;
    }
    return path;
}

static int positive(const char *arg, const char *name, long *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (*end || v <= 0) {
        fprintf(stderr, "quiverd: %s wants a positive number, not '%s'\n",
                name, arg);
        return -1;
    }
    *out = v;
    return 0;
}

/* A timeout in seconds, into milliseconds that fit an int. */
static int seconds(const char *arg, const char *name, int *ms)
{
    long v;
    if (positive(arg, name, &v))
        return -1;
    if (v > INT_MAX / 1000) {
        fprintf(stderr, "quiverd: %s is at most %d seconds, not %ld\n",
                name, INT_MAX / 1000, v);
        return -1;
    }
    *ms = (int)(v * 1000);
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_DB = 256, O_LISTEN, O_THREADS, O_TOKEN, O_FRAME, O_CONNS,
           O_IDLE, O_READ, O_AUTH, O_UNAUTH, O_BACKUP, O_CERT, O_KEY,
           O_CLUSTER, O_NODE, O_STREAM, O_REPLICAS, O_NATS_TOKEN, O_NATS_CA,
           O_IN_MEMORY, O_ADVERTISE };
    static const struct option opts[] = {
        {"db", required_argument, 0, O_DB},
        {"listen", required_argument, 0, O_LISTEN},
        {"threads", required_argument, 0, O_THREADS},
        {"token-file", required_argument, 0, O_TOKEN},
        {"max-frame", required_argument, 0, O_FRAME},
        {"max-connections", required_argument, 0, O_CONNS},
        {"idle-timeout", required_argument, 0, O_IDLE},
        {"read-timeout", required_argument, 0, O_READ},
        {"auth-timeout", required_argument, 0, O_AUTH},
        {"max-unauthenticated", required_argument, 0, O_UNAUTH},
        {"backup-dir", required_argument, 0, O_BACKUP},
        {"tls-cert", required_argument, 0, O_CERT},
        {"tls-key", required_argument, 0, O_KEY},
        {"cluster", required_argument, 0, O_CLUSTER},
        {"node", required_argument, 0, O_NODE},
        {"stream", required_argument, 0, O_STREAM},
        {"stream-replicas", required_argument, 0, O_REPLICAS},
        {"nats-token-file", required_argument, 0, O_NATS_TOKEN},
        {"nats-ca", required_argument, 0, O_NATS_CA},
        {"advertise", required_argument, 0, O_ADVERTISE},
        {"vectors-in-memory", no_argument, 0, O_IN_MEMORY},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    server_config cfg = SERVER_DEFAULTS;
    char *token = NULL, *backups = NULL, *nats_token = NULL;
    long v;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DB: cfg.db_path = optarg; break;
        case O_LISTEN: cfg.listen = optarg; break;
        case O_TOKEN:
            qv_mem_free(token);
            if (!(token = read_token(optarg)))
                return 2;
            break;
        case O_THREADS:
            if (positive(optarg, "--threads", &v)) return 2;
            cfg.threads = (unsigned)v;
            break;
        case O_FRAME:
            if (positive(optarg, "--max-frame", &v)) return 2;
            cfg.max_frame = (size_t)v;
            break;
        case O_CONNS:
            if (positive(optarg, "--max-connections", &v)) return 2;
            cfg.max_connections = (unsigned)v;
            break;
        case O_IDLE:
            if (seconds(optarg, "--idle-timeout", &cfg.idle_timeout_ms))
                return 2;
            break;
        case O_READ:
            if (seconds(optarg, "--read-timeout", &cfg.read_timeout_ms))
                return 2;
            break;
        case O_AUTH:
            if (seconds(optarg, "--auth-timeout", &cfg.auth_timeout_ms))
                return 2;
            break;
        case O_UNAUTH:
            if (positive(optarg, "--max-unauthenticated", &v)) return 2;
            cfg.max_unauthenticated = (unsigned)v;
            break;
        case O_BACKUP:
            free(backups);
            if (!(backups = backup_dir(optarg)))
                return 2;
            break;
        case O_CERT: cfg.tls_cert = optarg; break;
        case O_KEY: cfg.tls_key = optarg; break;
        case O_CLUSTER: cfg.cluster.servers = optarg; break;
        case O_NODE: cfg.cluster.node = optarg; break;
        case O_STREAM: cfg.cluster.stream = optarg; break;
        case O_REPLICAS:
            if (positive(optarg, "--stream-replicas", &v)) return 2;
            cfg.cluster.replicas = v > 5 ? 6 : (int)v;  /* 6: refused */
            break;
        case O_NATS_TOKEN:
            qv_mem_free(nats_token);
            if (!(nats_token = read_token(optarg)))
                return 2;
            break;
        case O_NATS_CA: cfg.cluster.ca_file = optarg; break;
        case O_ADVERTISE: cfg.cluster.advertise = optarg; break;
        case O_IN_MEMORY: cfg.vectors_in_memory = 1; break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!cfg.db_path || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (!cfg.tls_cert != !cfg.tls_key) {
        fprintf(stderr, "quiverd: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (!cfg.cluster.servers != !cfg.cluster.node) {
        fprintf(stderr, "quiverd: --cluster and --node go together\n");
        return 2;
    }
    if (cfg.cluster.advertise && !cfg.cluster.servers) {
        fprintf(stderr, "quiverd: --advertise is for cluster nodes "
                "(--cluster)\n");
        return 2;
    }
    cfg.token = token;
    cfg.backup_dir = backups;
    cfg.cluster.token = nats_token;
    int rc = server_run(&cfg);
    qv_mem_free(nats_token);
    qv_mem_free(token);
    free(backups);
    return rc;
}
