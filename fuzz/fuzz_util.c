#include "fuzz/fuzz_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#define SCRATCH_MAX 4

static char scratch[SCRATCH_MAX][4096];
static int nscratch;

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* atexit: every scratch directory, depth first, symbolic links unfollowed. */
static void remove_scratch(void)
{
    for (int i = 0; i < nscratch; i++)
        nftw(scratch[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    nscratch = 0;
}

const char *fuzz_scratch_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    if (nscratch == SCRATCH_MAX)
        abort();
    char *dir = scratch[nscratch];
    snprintf(dir, sizeof scratch[0], "%s/quiver-fuzz-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    if (nscratch++ == 0)
        atexit(remove_scratch);
    return dir;
}
