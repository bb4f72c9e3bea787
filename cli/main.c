/*
 * main.c - the quiver program.
 *
 *   quiver [--db DIR|URI | --connect HOST:PORT] [--token-file F]
 *          [--tls] [--tls-ca F] [--json] [--bail]
 *          [-c COMMAND]... [SUBCOMMAND ARGS...]
 *   quiver bench flat|ann|filter|embed|server ...
 *
 * With -c or a subcommand it runs those; else, on a terminal, an
 * interactive shell with line editing, history and completion; else one
 * command per line of standard input.
 */
#include <editline/readline.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "cli/cli.h"
#include "cli/shell.h"
#include "common/token.h"

#define MAX_C 64

static const char usage[] =
    "usage: quiver [--db DIR|URI | --connect HOST:PORT] [--token-file FILE]\n"
    "              [--tls] [--tls-ca FILE] [--json] [--bail]\n"
    "              [-c COMMAND]... [SUBCOMMAND ARGS...]\n"
    "       quiver bench flat|ann|filter|embed|server ...\n"
    "       quiver -V|--version | -h|--help\n"
    "The database defaults to $QUIVER_DB, else ./data; a URI is\n"
    "qv://HOST[:PORT] (port 7411 by default), or qvs://HOST[:PORT] for TLS\n"
    "(--connect with --tls or --tls-ca); --tls-ca names the CAs to trust\n"
    "instead of the system's.\n"
    "With no command and a terminal,\n"
    "an interactive shell; otherwise one command per line of stdin.\n"
    "--bail: stop at the first command that fails (-c and stdin).\n"
    "Commands: type help, or see docs/CLI.md.\n";

struct options {
    const char *db, *connect, *token_file, *tls_ca;
    const char *commands[MAX_C];
    int ncommands, json, tls;
    int bail;       /* stop at the first command that fails */
    char *joined;   /* a subcommand's words as one line */
};

/* A subcommand's arguments as one command line; words with spaces that
 * are not JSON become JSON strings. */
static char *join_words(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++)
        len += 2 * strlen(argv[i]) + 4;
    char *line = qv_malloc(len), *p = line;
    if (!line)
        return NULL;
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        int quote = strpbrk(w, " \t") && !strchr("[{\"", w[0]) &&
                    !strchr(w, '=');
        p += sprintf(p, i ? " " : "");
        if (quote) {
            *p++ = '"';
            for (; *w; w++) {
                if (*w == '"' || *w == '\\')
                    *p++ = '\\';
                *p++ = *w;
            }
            *p++ = '"';
        } else {
            p += sprintf(p, "%s", w);
        }
    }
    *p = '\0';
    return line;
}

/* A bad option: its message and the usage on stderr; returns -1. */
static int usage_error(const char *message, const char *what)
{
    fprintf(stderr, "quiver: %s '%s'\n%s", message, what, usage);
    return -1;
}

/* The option getopt_long refused, for the message: -X for a short
 * option, else the word it stopped on. */
static int refused_option(char **argv, int c)
{
    char word[3] = {'-', (char)optopt, '\0'};
    int is_short = optopt > 0 && optopt < 128;
    const char *what = is_short ? word : argv[optind - 1];
    return usage_error(c == ':' ? "a value is missing after"
                                : "unknown option", what);
}

/* QUIVER_DB, a path or URI, when neither --db nor --connect is given;
 * NULL when it is unset or empty. */
static const char *database_from_environment(void)
{
    const char *db = getenv("QUIVER_DB");
    return db && *db ? db : NULL;
}

/* Parse the options, which come before the subcommand: a word after it
 * is the command's, even when it starts with '-'. Returns the index of
 * the first word after them, or -1 (message printed) / -2 (done: --help,
 * --version). */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { O_DB = 256, O_CONNECT, O_TOKEN, O_TLS, O_TLS_CA, O_JSON,
           O_BAIL };
    static const struct option opts[] = {
        {"db", required_argument, 0, O_DB},
        {"connect", required_argument, 0, O_CONNECT},
        {"token-file", required_argument, 0, O_TOKEN},
        {"tls", no_argument, 0, O_TLS},
        {"tls-ca", required_argument, 0, O_TLS_CA},
        {"json", no_argument, 0, O_JSON},
        {"bail", no_argument, 0, O_BAIL},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    int c;
    opterr = 0;
    /* '+': stop at the first word that is not an option (the command) */
    while ((c = getopt_long(argc, argv, "+:c:hV", opts, NULL)) != -1) {
        switch (c) {
        case O_DB: o->db = optarg; break;
        case O_CONNECT: o->connect = optarg; break;
        case O_TOKEN: o->token_file = optarg; break;
        case O_TLS: o->tls = 1; break;
        case O_TLS_CA: o->tls_ca = optarg, o->tls = 1; break;
        case O_JSON: o->json = 1; break;
        case O_BAIL: o->bail = 1; break;
        case 'c':
            if (o->ncommands == MAX_C)
                return usage_error("more than 64 -c commands, at", optarg);
            o->commands[o->ncommands++] = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return -2;
        case 'V':
            printf("quiver %s\n", qv_version());
            return -2;
        default:
            return refused_option(argv, c);
        }
    }
    if (o->db && o->connect) {
        fprintf(stderr, "quiver: give --db or --connect, not both\n");
        return -1;
    }
    if (!o->db && !o->connect)
        o->db = database_from_environment();
    return optind;
}

/* Whether db is a cluster node's database (remote handles: never). */
static int is_replica(qv_db *db)
{
    uint64_t mark = 0;
    return qv_position_get(db, QV_POSITION_CLUSTER, &mark) == QV_OK &&
           mark != 0;
}

/* The database did not open: with --json one error object on stdout,
 * as every command's failure prints; else a line on stderr. */
static void open_failed(const struct options *o, const char *code,
                        const char *msg)
{
    shell sh = {.json = o->json};
    if (o->json)
        shell_fail(&sh, code, "%s", msg);
    else
        fprintf(stderr, "quiver: %s\n", msg);
}

/* A cluster node's database takes writes only through the node's log:
 * the shell opens it read-only, to look, and says so. */
static qv_db *reopen_read_only(const struct options *o, qv_db *db,
                               const char *uri, qv_open_options *oo)
{
    qv_close(db);
    db = NULL;
    fprintf(stderr, "quiver: %s is a cluster node's database: opened "
            "read-only (write through a node: --db qv://HOST:PORT)\n", uri);
    oo->flags |= QV_OPEN_READONLY;
    qv_status st = qv_open(uri, oo, &db);
    if (st != QV_OK)
        open_failed(o, qv_status_name(st), qv_errmsg(NULL));
    return db;
}

static qv_db *open_database(const struct options *o)
{
    char uri[512];
    qv_open_options oo = {0};
    char err[512];
    char *token = o->token_file ? token_read_file(o->token_file, err,
                                                  sizeof err)
                                : NULL;
    if (o->token_file && !token) {
        open_failed(o, "INVALID", err);
        return NULL;
    }
    oo.token = token;
    oo.tls_ca_file = o->tls_ca;
    if (o->connect)
        snprintf(uri, sizeof uri, "%s://%s", o->tls ? "qvs" : "qv",
                 o->connect);
    else
        snprintf(uri, sizeof uri, "%s", o->db ? o->db : "./data");
    qv_db *db = NULL;
    qv_status st = qv_open(uri, &oo, &db);
    if (st != QV_OK)
        open_failed(o, qv_status_name(st), qv_errmsg(NULL));
    else if (!o->connect && is_replica(db))
        db = reopen_read_only(o, db, uri, &oo);
    qv_mem_free(token);
    return db;
}

/* ---- interactive ---- */

static qv_db *completion_db;

/* Command names at the start of the line, collection names after. */
static char *complete_word(const char *text, int state)
{
    static size_t index, len;
    static qv_collection_info *list;
    static size_t nlist;
    static int commands;
    if (state == 0) {
        index = 0;
        len = strlen(text);
        commands = rl_point == (int)len || strspn(rl_line_buffer, " ") ==
                                               (size_t)rl_point - len;
        qv_free(list);
        list = NULL;
        nlist = 0;
        if (!commands)
            qv_list_collections(completion_db, &list, &nlist);
    }
    if (commands) {
        while (shell_command_names[index]) {
            const char *name = shell_command_names[index++];
            if (strncmp(name, text, len) == 0)
                return strdup(name);
        }
        return NULL;
    }
    while (index < nlist) {
        const char *name = list[index++].name;
        if (strncmp(name, text, len) == 0)
            return strdup(name);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    return rl_completion_matches(text, complete_word);
}

static void history_path(char *out, size_t len)
{
    const char *explicit_path = getenv("QUIVER_HISTORY");
    const char *home = getenv("HOME");
    if (explicit_path)
        snprintf(out, len, "%s", explicit_path);
    else
        snprintf(out, len, "%s/.quiver_history", home ? home : ".");
}

static int interactive(shell *sh, const char *where)
{
    char hist[4096];
    history_path(hist, sizeof hist);
    using_history();
    stifle_history(1000);
    read_history(hist);
    completion_db = sh->db;
    rl_attempted_completion_function = complete;
    printf("quiver %s on %s; type help, quit or Ctrl-D to leave\n",
           QV_VERSION, where);
    int failed = 0;
    char *line;
    while ((line = readline("quiver> ")) != NULL) {
        if (line[strspn(line, " \t")])
            add_history(line);
        int rc = shell_run_line(sh, line);
        free(line);
        if (rc < 0)
            break;
        failed |= rc;
    }
    write_history(hist);
    return failed;
}

/* ---- scripted ---- */

/* Whether a script stops after a command that returned rc: at quit,
 * and with --bail at the first failure. */
static int script_stops(int rc, int bail)
{
    return rc < 0 || (rc > 0 && bail);
}

static int run_stdin(shell *sh, int bail)
{
    char *line = NULL;
    size_t cap = 0;
    int failed = 0;
    while (getline(&line, &cap, stdin) >= 0) {
        sh->line++;
        int rc = shell_run_line(sh, line);
        failed |= rc > 0;
        if (script_stops(rc, bail))
            break;
    }
    free(line);
    return failed;
}

/* `quiver bench KIND ...`; argv[0] is KIND. Returns the exit status. */
static int bench_main(int argc, char **argv)
{
    static const struct {
        const char *kind;
        int (*run)(int argc, char **argv);
    } benches[] = {
        {"flat", bench_flat},     {"ann", bench_ann},
        {"server", bench_server}, {"filter", bench_filter},
        {"embed", bench_embed},   {"duplicates", bench_duplicates},
        {"writes", bench_writes}, {"churn", bench_churn},
        {"cluster", bench_cluster},
    };
    for (size_t i = 0; argc >= 1 && i < sizeof benches / sizeof *benches; i++)
        if (strcmp(argv[0], benches[i].kind) == 0)
            return benches[i].run(argc, argv);
    fprintf(stderr, "usage: quiver bench "
                    "flat|ann|server|filter|embed|duplicates|writes|churn|"
                    "cluster "
                    "...\n"
                    "quiver bench: unknown benchmark '%s'\n",
            argc >= 1 ? argv[0] : "");
    return 2;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    int first = parse_options(argc, argv, &o);
    if (first < 0)
        return first == -2 ? 0 : 2;
    if (first < argc && strcmp(argv[first], "bench") == 0)
        return bench_main(argc - first - 1, argv + first + 1);
    qv_db *db = open_database(&o);
    if (!db)
        return 1;
    shell sh = {.db = db, .json = o.json,
                .progress = isatty(STDERR_FILENO) && !o.json};
    int failed = 0;
    if (first < argc) {
        char *line = join_words(argc - first, argv + first);
        failed = line ? shell_run_line(&sh, line) > 0 : 1;
        qv_mem_free(line);
    } else if (o.ncommands > 0) {
        for (int i = 0; i < o.ncommands; i++) {
            int rc = shell_run_line(&sh, o.commands[i]);
            failed |= rc > 0;
            if (script_stops(rc, o.bail))
                break;
        }
    } else if (isatty(STDIN_FILENO)) {
        failed = interactive(&sh, o.connect ? o.connect
                                            : o.db ? o.db : "./data");
    } else {
        failed = run_stdin(&sh, o.bail);
    }
    qv_close(db);
    return failed ? 1 : 0;
}
