/*
 * fuzz_shell.c - libFuzzer target: one shell command line, parsed and run
 * against a small database (collection "c", dim 4). Commands that read or
 * write files named by the input (import, export, backup, compact, table
 * import and table export) are parsed but not run; fuzz_import covers the
 * file formats. The process works in a scratch directory besides.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz_util.h"
#include "cli/shell.h"

static shell sh;

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const skipped[] = {"import", "export", "backup",
                                          "compact", NULL};
    if (!sh.db) {
        const char *dir = fuzz_scratch_dir();
        if (qv_open(dir, &(qv_open_options){.flags = QV_OPEN_NOSYNC,
                                            .threads = 1},
                    &sh.db) != QV_OK)
            abort();
        sh.json = 1;
        if (!freopen("/dev/null", "w", stdout))
            abort();
        shell_run_line(&sh, "create c dim=4 M=4");
        shell_run_line(&sh, "upsert c a [1, 2, 3, 4] {\"k\": 1}");
        if (chdir(dir) != 0)
            abort();
    }
    char *line = malloc(size + 1);
    memcpy(line, data, size);
    line[size] = '\0';
    shell_cmd cmd = {0};
    char err[256];
    int run = shell_parse(line, &cmd, err, sizeof err) == 0 && cmd.n > 0;
    for (int i = 0; run && skipped[i]; i++)
        run = strcmp(cmd.args[0].text, skipped[i]) != 0 &&
              !(cmd.n > 1 && !strcmp(cmd.args[0].text, "table") &&
                !strcmp(cmd.args[1].text, skipped[i]));
    shell_cmd_free(&cmd);
    if (run)
        shell_run_line(&sh, line);
    free(line);
    return 0;
}
