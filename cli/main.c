/*
 * main.c - the quiver program: `quiver [--db DIR]` opens the shell on a
 * database; `quiver bench KIND ...` runs a benchmark.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: quiver [--db DIR]          shell on the database in DIR "
    "(default ./data)\n"
    "       quiver bench flat|ann|server ...   benchmarks (docs/CLI.md)\n"
    "       quiver --version | --help\n";

int main(int argc, char **argv)
{
    const char *dir = "./data";
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("quiver %s\n", QV_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            break;
        }
    }
    if (i < argc && strcmp(argv[i], "bench") == 0)
        return bench_main(argc - i - 1, argv + i + 1);
    if (i < argc) {
        fprintf(stderr, "quiver: unknown argument '%s'\n%s", argv[i], usage);
        return 2;
    }
    qv_db *db;
    if (qv_open(dir, NULL, &db) != QV_OK) {
        fprintf(stderr, "quiver: %s\n", qv_errmsg(NULL));
        return 1;
    }
    int interactive = isatty(STDIN_FILENO);
    if (interactive)
        printf("quiver %s on %s; type help\n", QV_VERSION, dir);
    int rc = shell_run(db, stdin, interactive);
    qv_close(db);
    return rc;
}
