/*
 * utf8.h - checking text that came from outside: UTF-8 well-formedness,
 * and a printable form of any bytes for messages.
 */
#ifndef QV_COMMON_UTF8_H
#define QV_COMMON_UTF8_H

#include <stddef.h>

/*
 * Whether the n bytes at s are well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF). On failure *bad_at (when
 * not NULL) is the offset of the first byte of the offending sequence.
 */
int utf8_valid(const char *s, size_t n, size_t *bad_at);

/*
 * Copy the NUL-terminated text in into out (size > 0), writing every byte
 * that is a control character or not part of well-formed UTF-8 as \xNN,
 * so that the result is printable UTF-8 whatever the input held.
 * Truncates at a whole character or escape.
 */
void utf8_printable(const char *in, char *out, size_t size);

#endif
