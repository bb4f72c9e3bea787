/*
 * fuzz_import.c - libFuzzer target: the import file formats. The input is
 * written out as a .jsonl, a .npy, an .fvecs and a .bvecs file, and each
 * is imported through the shell into a collection of dim 4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz_util.h"
#include "cli/shell.h"

static shell sh;
static const char *dir;

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const exts[] = {"jsonl", "npy", "fvecs", "bvecs"};
    if (!sh.db) {
        dir = fuzz_scratch_dir();
        if (qv_open(dir, &(qv_open_options){.flags = QV_OPEN_NOSYNC,
                                            .threads = 1},
                    &sh.db) != QV_OK)
            abort();
        sh.json = 1;
        if (!freopen("/dev/null", "w", stdout))
            abort();
        shell_run_line(&sh, "create c dim=4 M=4");
    }
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        char path[128], line[256];
        snprintf(path, sizeof path, "%s/in.%s", dir, exts[i]);
        FILE *f = fopen(path, "wb");
        if (!f)
            abort();
        fwrite(data, 1, size, f);
        fclose(f);
        snprintf(line, sizeof line, "import c %s batch=7", path);
        shell_run_line(&sh, line);
        unlink(path);
    }
    return 0;
}
