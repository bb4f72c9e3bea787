#include "wire/proto/inspect.h"

#include <stdio.h>
#include <string.h>

#include "common/utf8.h"

/* Deeper than any message of quiver.proto nests: such bytes are left to
 * the unpacker, which refuses them. */
#define DEPTH_MAX 16
/* Fields whose occurrences are counted for the path's [i]. */
#define COUNTED_FIELDS 64

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_BYTES = 2, WIRE_FIXED32 = 5 };

struct walk {
    char path[256];
    char *why;
    size_t why_size;
};

/* Read a varint at *p (below end) into *v; 0, or -1 when malformed. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* Check one string's bytes; 1 and w->why when they are not acceptable. */
static int check_text(struct walk *w, const uint8_t *s, size_t n)
{
    const uint8_t *nul = memchr(s, 0, n);
    size_t bad;
    if (nul) {
        snprintf(w->why, w->why_size, "%s holds a NUL byte at offset %zu",
                 w->path, (size_t)(nul - s));
        return 1;
    }
    if (!utf8_valid((const char *)s, n, &bad)) {
        snprintf(w->why, w->why_size, "%s is not valid UTF-8 (byte 0x%02x "
                 "at offset %zu)", w->path, s[bad], bad);
        return 1;
    }
    return 0;
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *d,
                        const uint8_t *p, const uint8_t *end, int depth);

/* A length-delimited field's bytes: a string to check, a message to walk
 * into, or anything else to skip. */
static int walk_field(struct walk *w, const ProtobufCFieldDescriptor *f,
                      unsigned occurrence, const uint8_t *p, size_t n,
                      int depth)
{
    if (!f || (f->type != PROTOBUF_C_TYPE_STRING &&
               f->type != PROTOBUF_C_TYPE_MESSAGE))
        return 0;
    size_t at = strlen(w->path);
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        snprintf(w->path + at, sizeof w->path - at, "%s%s[%u]",
                 at ? "." : "", f->name, occurrence);
    else
        snprintf(w->path + at, sizeof w->path - at, "%s%s", at ? "." : "",
                 f->name);
    int found = f->type == PROTOBUF_C_TYPE_STRING
                    ? check_text(w, p, n)
                    : walk_message(w, f->descriptor, p, p + n, depth + 1);
    w->path[at] = '\0';
    return found;
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *d,
                        const uint8_t *p, const uint8_t *end, int depth)
{
    unsigned seen[COUNTED_FIELDS] = {0};
    if (depth > DEPTH_MAX)
        return 0;
    while (p < end) {
        uint64_t tag, v;
        if (read_varint(&p, end, &tag) != 0)
            return 0;
        switch (tag & 7) {
        case WIRE_VARINT:
            if (read_varint(&p, end, &v) != 0)
                return 0;
            break;
        case WIRE_FIXED64:
        case WIRE_FIXED32: {
            size_t n = (tag & 7) == WIRE_FIXED64 ? 8 : 4;
            if ((size_t)(end - p) < n)
                return 0;
            p += n;
            break;
        }
        case WIRE_BYTES: {
            if (read_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                return 0;
            const ProtobufCFieldDescriptor *f =
                tag >> 3 > UINT32_MAX ? NULL
                : protobuf_c_message_descriptor_get_field(d,
                                                          (unsigned)(tag >> 3));
            size_t i = f ? (size_t)(f - d->fields) : COUNTED_FIELDS;
            unsigned occurrence = i < COUNTED_FIELDS ? seen[i]++ : 0;
            if (walk_field(w, f, occurrence, p, (size_t)v, depth))
                return 1;
            p += v;
            break;
        }
        default:
            return 0;  /* groups and unknown wire types: not a message */
        }
    }
    return 0;
}

int inspect_strings(const ProtobufCMessageDescriptor *desc,
                    const uint8_t *buf, size_t len, char *why,
                    size_t why_size)
{
    struct walk w = {.why = why, .why_size = why_size};
    return walk_message(&w, desc, buf, buf + len, 0);
}
