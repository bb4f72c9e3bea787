#include "common/token.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

char *token_read_file(const char *path, char *err, size_t errlen)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    char *token = qv_strndup(buf, strlen(buf));
    if (!token)
        snprintf(err, errlen, "out of memory");
    return token;
}
