/*
 * main.c - the quiver program.
 *
 *   quiver [--db DIR|URI | --connect HOST:PORT] [--token-file F]
 *          [--tls] [--tls-ca F] [--json]
 *          [-c COMMAND]... [SUBCOMMAND ARGS...]
 *   quiver bench flat|ann|filter|embed|server ...
 *
 * With -c or a subcommand it runs those; else, on a terminal, an
 * interactive shell with line editing, history and completion; else one
 * command per line of standard input.
 */
#include <editline/readline.h>
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
    "              [--tls] [--tls-ca FILE] [--json] [-c COMMAND]...\n"
    "              [SUBCOMMAND ARGS...]\n"
    "       quiver bench flat|ann|filter|embed|server ...\n"
    "       quiver --version | --help\n"
    "The database defaults to ./data; a URI is qv://HOST:PORT, or\n"
    "qvs://HOST:PORT for TLS (--connect with --tls or --tls-ca); --tls-ca\n"
    "names the CAs to trust instead of the system's.\n"
    "With no command and a terminal,\n"
    "an interactive shell; otherwise one command per line of stdin.\n"
    "Commands: type help, or see docs/CLI.md.\n";

struct options {
    const char *db, *connect, *token_file, *tls_ca;
    const char *commands[MAX_C];
    int ncommands, json, tls;
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

/* Parse the options; returns the index of the first word after them, or
 * -1 (message printed) / -2 (done: --help, --version). */
static int parse_options(int argc, char **argv, struct options *o)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        int has_next = i + 1 < argc;
        if (!strcmp(a, "--db") && has_next)
            o->db = argv[++i];
        else if (!strcmp(a, "--connect") && has_next)
            o->connect = argv[++i];
        else if (!strcmp(a, "--token-file") && has_next)
            o->token_file = argv[++i];
        else if (!strcmp(a, "--tls-ca") && has_next)
            o->tls_ca = argv[++i], o->tls = 1;
        else if (!strcmp(a, "--tls"))
            o->tls = 1;
        else if (!strcmp(a, "-c") && has_next && o->ncommands < MAX_C)
            o->commands[o->ncommands++] = argv[++i];
        else if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--version")) {
            printf("quiver %s\n", qv_version());
            return -2;
        } else if (!strcmp(a, "--help")) {
            fputs(usage, stdout);
            return -2;
        } else {
            fprintf(stderr, "quiver: unknown or incomplete option '%s'\n%s",
                    a, usage);
            return -1;
        }
    }
    if (o->db && o->connect) {
        fprintf(stderr, "quiver: give --db or --connect, not both\n");
        return -1;
    }
    return i;
}

/* Whether db is a cluster node's database (remote handles: never). */
static int is_replica(qv_db *db)
{
    uint64_t mark = 0;
    return qv_position_get(db, QV_POSITION_CLUSTER, &mark) == QV_OK &&
           mark != 0;
}

/* A cluster node's database takes writes only through the node's log:
 * the shell opens it read-only, to look, and says so. */
static qv_db *reopen_read_only(qv_db *db, const char *uri,
                               qv_open_options *oo)
{
    qv_close(db);
    db = NULL;
    fprintf(stderr, "quiver: %s is a cluster node's database: opened "
            "read-only (write through a node: --db qv://HOST:PORT)\n", uri);
    oo->flags |= QV_OPEN_READONLY;
    if (qv_open(uri, oo, &db) != QV_OK)
        fprintf(stderr, "quiver: %s\n", qv_errmsg(NULL));
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
        fprintf(stderr, "quiver: %s\n", err);
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
    if (qv_open(uri, &oo, &db) != QV_OK)
        fprintf(stderr, "quiver: %s\n", qv_errmsg(NULL));
    else if (!o->connect && is_replica(db))
        db = reopen_read_only(db, uri, &oo);
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

static int run_stdin(shell *sh)
{
    char *line = NULL;
    size_t cap = 0;
    int failed = 0;
    while (getline(&line, &cap, stdin) >= 0) {
        sh->line++;
        int rc = shell_run_line(sh, line);
        if (rc < 0)
            break;
        failed |= rc;
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
            if (rc < 0)
                break;
            failed |= rc;
        }
    } else if (isatty(STDIN_FILENO)) {
        failed = interactive(&sh, o.connect ? o.connect
                                            : o.db ? o.db : "./data");
    } else {
        failed = run_stdin(&sh);
    }
    qv_close(db);
    return failed ? 1 : 0;
}
