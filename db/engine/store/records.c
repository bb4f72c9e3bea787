/*
 * records.c - the decoders of records.h, one per record kind: each checks
 * a value's size before it reads a byte of it.
 */
#include "db/engine/store/records.h"

#include <string.h>
#include <xxhash.h>

uint32_t record_checksum(const void *data, size_t len)
{
    return XXH32(data, len, 0x51564552u);  /* "QVER" */
}

int meta_u32_decode(const MDB_val *val, uint32_t *out)
{
    if (val->mv_size != sizeof *out)
        return MDB_CORRUPTED;
    memcpy(out, val->mv_data, sizeof *out);
    return 0;
}

int meta_u64_decode(const MDB_val *val, uint64_t *out)
{
    if (val->mv_size != sizeof *out)
        return MDB_CORRUPTED;
    memcpy(out, val->mv_data, sizeof *out);
    return 0;
}

enum rec_fault coll_rec_decode(const MDB_val *val, coll_rec *rec)
{
    memset(rec, 0, sizeof *rec);
    if (val->mv_size < sizeof rec->format)
        return REC_SIZE;
    memcpy(&rec->format, val->mv_data, sizeof rec->format);
    size_t want = rec->format == 3 ? COLL_FORMAT3_SIZE : sizeof *rec;
    if (val->mv_size != want)
        return REC_SIZE;
    memcpy(rec, val->mv_data, want);
    if (rec->format != COLL_FORMAT && rec->format != 3)
        return REC_FORMAT;
    uint32_t stored = rec->checksum;
    rec->checksum = 0;
    if (record_checksum(rec, want) != stored)
        return REC_CHECKSUM;
    rec->format = COLL_FORMAT;  /* a format 3 record is written back as 4 */
    return REC_OK;
}

coll_rec coll_rec_seal(const coll_rec *rec)
{
    coll_rec sealed = *rec;
    sealed.checksum = 0;
    sealed.checksum = record_checksum(&sealed, sizeof sealed);
    return sealed;
}

int ids_value_decode(const MDB_val *val, uint32_t *iid)
{
    if (val->mv_size != sizeof *iid)
        return MDB_CORRUPTED;
    memcpy(iid, val->mv_data, sizeof *iid);
    return 0;
}

int doc_key_decode(const MDB_val *key, uint32_t *coll, uint32_t *iid)
{
    if (key->mv_size != KEY_DOC_LEN)
        return MDB_CORRUPTED;
    const unsigned char *p = key->mv_data;
    if (coll)
        *coll = key_get_u32(p);
    *iid = key_get_u32(p + KEY_COLL_LEN);
    return 0;
}

int doc_record_split(const MDB_val *val, MDB_val *id, MDB_val *payload)
{
    const unsigned char *p = val->mv_data;
    if (val->mv_size < 1 || val->mv_size < 1u + p[0])
        return MDB_CORRUPTED;
    *id = (MDB_val){p[0], (void *)(p + 1)};
    if (payload) {
        payload->mv_size = val->mv_size - 1 - p[0];
        payload->mv_data = payload->mv_size ? (void *)(p + 1 + p[0]) : NULL;
    }
    return 0;
}

enum rec_fault vector_record_fault(const MDB_val *val, uint32_t dim)
{
    if (val->mv_size != (size_t)dim * sizeof(float))
        return REC_SIZE;
    if ((uintptr_t)val->mv_data % _Alignof(float) != 0)
        return REC_ALIGN;
    return REC_OK;
}

int sealed_record_open(const MDB_val *val, size_t *body)
{
    uint32_t sum;
    if (val->mv_size <= sizeof sum)
        return MDB_CORRUPTED;
    *body = val->mv_size - sizeof sum;
    memcpy(&sum, (const char *)val->mv_data + *body, sizeof sum);
    return sum == record_checksum(val->mv_data, *body) ? 0 : MDB_CORRUPTED;
}

void sealed_record_seal(void *p, size_t body)
{
    uint32_t sum = record_checksum(p, body);
    memcpy((char *)p + body, &sum, sizeof sum);
}

int codec_record_decode(const MDB_val *val, codec_rec_head *head,
                        const unsigned char **params, size_t *len)
{
    size_t body;
    if (val->mv_size < sizeof *head + sizeof(uint32_t) ||
        sealed_record_open(val, &body) != 0)
        return MDB_CORRUPTED;
    const unsigned char *p = val->mv_data;
    memcpy(head, p, sizeof *head);
    *params = p + sizeof *head;
    *len = body - sizeof *head;
    return 0;
}

int pindex_rec_decode(const MDB_val *val, pindex_rec *rec)
{
    if (val->mv_size != sizeof *rec)
        return MDB_CORRUPTED;
    memcpy(rec, val->mv_data, sizeof *rec);
    return 0;
}

int pentry_key_decode(const MDB_val *key, unsigned *tag,
                      const unsigned char **value, size_t *value_len,
                      uint32_t *iid)
{
    if (key->mv_size < PENTRY_KEY_MIN)
        return MDB_CORRUPTED;
    const unsigned char *k = key->mv_data;
    *tag = k[PENTRY_PREFIX_LEN];
    *value = k + PENTRY_PREFIX_LEN + 1;
    *value_len = key->mv_size - PENTRY_KEY_MIN;
    *iid = key_get_u32(k + key->mv_size - sizeof *iid);
    return 0;
}

enum rec_fault tbl_rec_decode(const MDB_val *val, tbl_rec *rec)
{
    if (val->mv_size != sizeof *rec)
        return REC_SIZE;
    memcpy(rec, val->mv_data, sizeof *rec);
    uint32_t stored = rec->checksum;
    rec->checksum = 0;
    if (rec->format != TABLE_FORMAT)
        return REC_FORMAT;
    return record_checksum(rec, sizeof *rec) == stored ? REC_OK
                                                       : REC_CHECKSUM;
}

tbl_rec tbl_rec_seal(const tbl_rec *rec)
{
    tbl_rec sealed = *rec;
    sealed.checksum = 0;
    sealed.checksum = record_checksum(&sealed, sizeof sealed);
    return sealed;
}
