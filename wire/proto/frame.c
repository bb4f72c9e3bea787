#include "wire/proto/frame.h"

#include <string.h>

#include "common/alloc.h"

/* Set when an allocation of protobuf-c's failed in this thread, so that a
 * NULL from unpack can be told apart: out of memory or malformed. */
static _Thread_local int pb_alloc_failed;

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    void *p = qv_malloc(size);
    pb_alloc_failed |= p == NULL;
    return p;
}

int protobuf_alloc_failed(int reset)
{
    int failed = pb_alloc_failed;
    if (reset)
        pb_alloc_failed = 0;
    return failed;
}

static void pb_free(void *data, void *ptr)
{
    (void)data;
    qv_mem_free(ptr);
}

ProtobufCAllocator qv_protobuf_allocator = {pb_alloc, pb_free, NULL};

int wbuf_reserve(wbuf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    uint8_t *p = qv_realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void wbuf_release(wbuf *b)
{
    qv_mem_free(b->data);
    *b = (wbuf){0};
}

void wbuf_consume(wbuf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int frame_append(wbuf *b, const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    if (size > UINT32_MAX || wbuf_reserve(b, FRAME_HEADER + size) != 0)
        return -1;
    uint8_t *p = b->data + b->len;
    p[0] = (uint8_t)(size >> 24);
    p[1] = (uint8_t)(size >> 16);
    p[2] = (uint8_t)(size >> 8);
    p[3] = (uint8_t)size;
    protobuf_c_message_pack(msg, p + FRAME_HEADER);
    b->len += FRAME_HEADER + size;
    return 0;
}

enum frame_result frame_peek(const uint8_t *buf, size_t len, size_t max,
                             const uint8_t **payload, size_t *payload_len)
{
    if (len < FRAME_HEADER)
        return FRAME_MORE;
    size_t size = (size_t)buf[0] << 24 | (size_t)buf[1] << 16 |
                  (size_t)buf[2] << 8 | buf[3];
    if (size > max)
        return FRAME_TOO_LARGE;
    if (len - FRAME_HEADER < size)
        return FRAME_MORE;
    *payload = buf + FRAME_HEADER;
    *payload_len = size;
    return FRAME_READY;
}
