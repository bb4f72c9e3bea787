#include "common/check.h"

#include <stdio.h>
#include <stdlib.h>

void qv_assert_failed(const char *cond, const char *file, int line,
                      const char *func)
{
    fprintf(stderr, "quiver: internal invariant broken at %s:%d (%s): %s\n",
            file, line, func, cond);
    abort();
}
