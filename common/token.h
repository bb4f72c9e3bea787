/* token.h - reading a server token from a file (quiverd and quiver). */
#ifndef QV_COMMON_TOKEN_H
#define QV_COMMON_TOKEN_H

#include <stddef.h>

/*
 * The first line of path without its line end, as a new string
 * (qv_mem_free), or NULL with the reason in err.
 */
char *token_read_file(const char *path, char *err, size_t errlen);

#endif
