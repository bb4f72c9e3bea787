#include "common/utf8.h"

#include <stdio.h>
#include <string.h>

/* Length of the well-formed sequence at s (at most n bytes), or 0. */
static size_t sequence_length(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;  /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;  /* overlong */
        else if (c == 0xed)
            hi = 0x9f;  /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;  /* overlong */
        else if (c == 0xf4)
            hi = 0x8f;  /* past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return len;
}

int utf8_valid(const char *s, size_t n, size_t *bad_at)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = sequence_length(u + i, n - i);
        if (len == 0) {
            if (bad_at)
                *bad_at = i;
            return 0;
        }
        i += len;
    }
    return 1;
}

void utf8_printable(const char *in, char *out, size_t size)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = sequence_length(u + i, n - i);
        int escape = len == 0 || (len == 1 && (u[i] < 0x20 || u[i] == 0x7f));
        size_t need = escape ? 4 : len;
        if (o + need >= size)
            break;
        if (escape) {
            snprintf(out + o, 5, "\\x%02x", u[i]);
            len = 1;
        } else {
            memcpy(out + o, u + i, len);
        }
        o += need;
        i += len;
    }
    out[o] = '\0';
}
