/*
 * keys.h - the key layout shared by every collection.
 *
 * Collections share the sub-databases; each key starts with the
 * collection's 32-bit id in big-endian, so one collection's keys are one
 * contiguous, ordered range (scans and drops walk a range). Internal
 * document ids are 32-bit, also big-endian in keys so that a cursor visits
 * them in numeric order. Values are in the machine's byte order (an LMDB
 * file is not portable across byte orders anyway).
 *
 * Every record's key and value, with its decoder, is described in
 * db/engine/store/records.h (and docs/FORMAT.md).
 */
#ifndef QV_STORAGE_KEYS_H
#define QV_STORAGE_KEYS_H

#include <stdint.h>
#include <string.h>

#define KEY_COLL_LEN 4
#define KEY_DOC_LEN 8
#define KEY_IDS_MAX (KEY_COLL_LEN + 255)

static inline void key_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t key_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* [coll][internal id] for docs, vectors and freeids. */
static inline void key_doc(unsigned char out[KEY_DOC_LEN], uint32_t coll,
                           uint32_t iid)
{
    key_put_u32(out, coll);
    key_put_u32(out + 4, iid);
}

/* [coll][external id] for ids; returns the key length. */
static inline size_t key_ids(unsigned char out[KEY_IDS_MAX], uint32_t coll,
                             const char *ext_id, size_t ext_len)
{
    key_put_u32(out, coll);
    memcpy(out + KEY_COLL_LEN, ext_id, ext_len);
    return KEY_COLL_LEN + ext_len;
}

#endif
