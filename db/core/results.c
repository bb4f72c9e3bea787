/*
 * results.c - the objects the API hands out, built the same way by every
 * transport: each is one allocation released with qv_free().
 */
#include <string.h>

#include "common/alloc.h"
#include "db/core/handle.h"

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

/* Bytes of one record's out-of-struct data, each part 16-byte aligned. */
static size_t record_bytes(const record_src *r, uint32_t dim)
{
    size_t vec = ((size_t)dim * sizeof(float) + 15) & ~(size_t)15;
    size_t text = r->id_len + 1 + (r->payload ? r->payload_len + 1 : 0);
    return vec + ((text + 15) & ~(size_t)15);
}

qv_page *page_new(const record_src *src, size_t n, uint32_t dim, int more)
{
    size_t head = (sizeof(qv_page) + n * sizeof(qv_record) + 15) &
                  ~(size_t)15;
    size_t total = head;
    for (size_t i = 0; i < n; i++)
        total += record_bytes(&src[i], dim);
    qv_page *page = qv_malloc(total);
    if (!page)
        return NULL;
    page->count = n;
    page->records = (qv_record *)(page + 1);
    page->next = NULL;
    char *p = (char *)page + head;
    for (size_t i = 0; i < n; i++) {
        qv_record *r = &page->records[i];
        size_t vec = ((size_t)dim * sizeof(float) + 15) & ~(size_t)15;
        r->vector = (float *)p;
        memcpy(r->vector, src[i].vector, (size_t)dim * sizeof(float));
        r->dim = dim;
        r->id = p + vec;
        memcpy(r->id, src[i].id, src[i].id_len);
        r->id[src[i].id_len] = '\0';
        r->payload = NULL;
        if (src[i].payload) {
            r->payload = r->id + src[i].id_len + 1;
            memcpy(r->payload, src[i].payload, src[i].payload_len);
            r->payload[src[i].payload_len] = '\0';
        }
        p += record_bytes(&src[i], dim);
    }
    if (more && n > 0)
        page->next = page->records[n - 1].id;
    return page;
}
