/*
 * results.c - the objects the API hands out, built the same way by every
 * transport: each is one allocation released with qv_free().
 */
#include <string.h>

#include "alloc.h"
#include "internal.h"

qv_record *record_new(const char *id, size_t id_len, const float *vector,
                      uint32_t dim, const char *payload, size_t payload_len)
{
    size_t head = (sizeof(qv_record) + 15) & ~(size_t)15;
    size_t vec_bytes = (size_t)dim * sizeof(float);
    qv_record *r = qv_malloc(head + vec_bytes + id_len + 1 +
                             (payload ? payload_len + 1 : 0));
    if (!r)
        return NULL;
    char *base = (char *)r;
    r->vector = (float *)(base + head);
    memcpy(r->vector, vector, vec_bytes);
    r->dim = dim;
    r->id = base + head + vec_bytes;
    memcpy(r->id, id, id_len);
    r->id[id_len] = '\0';
    r->payload = NULL;
    if (payload) {
        r->payload = r->id + id_len + 1;
        memcpy(r->payload, payload, payload_len);
        r->payload[payload_len] = '\0';
    }
    return r;
}
