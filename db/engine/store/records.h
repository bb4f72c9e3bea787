/*
 * records.h - every record Quiver stores, keys and values, in one place,
 * with the one decoder of each kind. docs/FORMAT.md gives the same byte
 * by byte, with the format's versions and the upgrade policy.
 *
 * Keys are big-endian (storage/keys.h: a cursor visits ids in numeric
 * order, and one collection's keys are one contiguous range); values are
 * in the machine's byte order, structs stored raw have the layout their
 * static assertions below pin (an LMDB file is not portable across byte
 * orders anyway). A decoder checks a value's size before it reads a byte
 * of it, and answers 0 or MDB_CORRUPTED (or a rec_fault), so that the
 * caller words the message.
 *
 *   sub-db    key                                   value
 *   meta      counter name ("next_collection_id",   u32 (meta_u32_decode)
 *             "next_table_id", "next_index_id"),
 *             "format"
 *   catalog   collection name                       coll_rec (coll_rec_decode)
 *   ids       [coll u32][external id 1..255]        internal id u32
 *                                                   (ids_value_decode)
 *   docs      [coll u32][iid u32] (doc_key_decode)  [id len u8][id][payload]
 *                                                   (doc_record_split)
 *   vectors   [coll u32][iid u32]                   float32[dim]
 *                                                   (vector_record_fault)
 *   freeids   [coll u32][iid u32]                   empty
 *   graph     [coll u32][iid u32]                   sealed HNSW node record
 *                                                   (sealed_record_open, then
 *                                                   hnsw_record_load)
 *   pindexes  [coll u32][field]                     pindex_rec
 *                                                   (pindex_rec_decode)
 *   pentries  [coll u32][index u32][tag u8][value]  empty
 *             [iid u32] (pentry_key_decode)
 *   codes     [coll u32][iid u32]                   the codec's code (its
 *                                                   size: codec_spec_code_bytes)
 *   codecs    [coll u32]                            sealed codec record
 *                                                   (codec_record_decode)
 *   tables    table name                            tbl_rec (tbl_rec_decode)
 *   tchunks   [table u32][slab u8][chunk u64]       rows of a slab
 */
#ifndef QV_DB_ENGINE_STORE_RECORDS_H
#define QV_DB_ENGINE_STORE_RECORDS_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/keys.h"

/*
 * The database format this build writes and reads (meta "format"; a
 * database without the key is format 1, which predates it). A newer one
 * is refused at open; docs/FORMAT.md has what each version changed.
 */
#define QV_FORMAT 1

/* ---- meta ---- */

#define META_FORMAT "format"
#define META_NEXT_COLLECTION "next_collection_id"
#define META_NEXT_TABLE "next_table_id"
#define META_NEXT_INDEX "next_index_id"

/* A log position (qv_position_put): meta key POSITION_PREFIX + its name,
 * value one u64. */
#define META_POSITION_PREFIX "position/"

/* A meta value: one u32. 0, or MDB_CORRUPTED when it is not 4 bytes. */
int meta_u32_decode(const MDB_val *val, uint32_t *out);
/* A position's value: one u64. 0, or MDB_CORRUPTED when not 8 bytes. */
int meta_u64_decode(const MDB_val *val, uint64_t *out);

/* What is wrong with a record, for the caller's message. */
enum rec_fault {
    REC_OK,
    REC_SIZE,       /* not the size its kind (and format) has */
    REC_FORMAT,     /* a record format this build does not read */
    REC_CHECKSUM,   /* fails its checksum */
    REC_ALIGN,      /* a vector misaligned in its page */
};

/* XXH32 of Quiver's own records (catalog, table, graph node, codec),
 * where LMDB cannot tell a flipped byte. */
uint32_t record_checksum(const void *data, size_t len);

/* ---- catalog: a collection's record, stored as this struct ---- */

#define COLL_FORMAT 4

typedef struct coll_rec {
    uint32_t format;     /* COLL_FORMAT */
    uint32_t id;         /* key prefix of its documents */
    uint32_t dim;
    uint32_t metric;     /* qv_metric */
    uint64_t count;      /* live documents */
    uint32_t next_iid;   /* lowest internal id never used */
    uint32_t M;          /* HNSW parameters */
    uint32_t ef_construction;
    uint32_t entry;      /* HNSW entry point; UINT32_MAX when empty */
    int32_t max_level;   /* HNSW top level; -1 when empty */
    uint32_t checksum;   /* XXH32 of the record with this field 0 */
    uint64_t generation; /* bumped by every committed write */
    /* format 4: */
    uint32_t codec;      /* enum codec_kind (ann/codec.h); 0 = none */
    uint32_t codec_param;
    uint32_t codec_trained;  /* 1 once its trained parameters are stored
                                and the graph holds codes */
    uint32_t train_min;  /* documents at which the codec is trained */
} coll_rec;

_Static_assert(sizeof(coll_rec) == 72, "coll_rec is stored raw");
_Static_assert(offsetof(coll_rec, count) == 16 &&
               offsetof(coll_rec, next_iid) == 24 &&
               offsetof(coll_rec, max_level) == 40 &&
               offsetof(coll_rec, checksum) == 44 &&
               offsetof(coll_rec, generation) == 48 &&
               offsetof(coll_rec, codec) == 56 &&
               offsetof(coll_rec, train_min) == 68,
               "coll_rec is stored raw");

/* Format 3 records end before the codec fields: they read as codec none. */
#define COLL_FORMAT3_SIZE offsetof(coll_rec, codec)

/*
 * The catalog value val: its size for its format (3 or 4), then its
 * checksum. A format 3 record reads as format 4 with codec none (written
 * back as 4). REC_SIZE, REC_FORMAT (rec->format says which) or
 * REC_CHECKSUM; the fields' meaning is the caller's to check.
 */
enum rec_fault coll_rec_decode(const MDB_val *val, coll_rec *rec);
/* rec sealed with its checksum, as stored. */
coll_rec coll_rec_seal(const coll_rec *rec);

/* ---- ids, docs, vectors, freeids, graph, codes ---- */

/* The internal id an ids value holds. 0, or MDB_CORRUPTED if not 4 bytes. */
int ids_value_decode(const MDB_val *val, uint32_t *iid);

/* A [coll][internal id] key (docs, vectors, freeids, graph, codes). 0, or
 * MDB_CORRUPTED when it is not 8 bytes; coll may be NULL. */
int doc_key_decode(const MDB_val *key, uint32_t *coll, uint32_t *iid);

/*
 * A document record (sub-database docs): one byte, the id's length n,
 * then the n bytes of the id, then the payload's JSON text to the end
 * (none when empty). The one decoder of that layout: id and payload
 * (payload mv_data NULL when there is none; payload may be NULL) point
 * into val. 0, or MDB_CORRUPTED when val is empty or shorter than its
 * first byte says, checked before anything past val's size is read.
 */
int doc_record_split(const MDB_val *val, MDB_val *id, MDB_val *payload);

/*
 * A vector record read in a snapshot, before its floats are read in
 * place: dim floats (REC_SIZE) at a 4-byte aligned address (REC_ALIGN).
 * LMDB aligns a value to 2 bytes only; every record of the vectors
 * sub-database has a size that keeps the next ones in its page aligned,
 * so a misaligned one lies beside a record Quiver never wrote.
 */
enum rec_fault vector_record_fault(const MDB_val *val, uint32_t dim);

/*
 * A sealed record (graph node, codec): a body, then the XXH32 of the body
 * (u32). 0 with *body its length when val is longer than the checksum
 * and the checksum holds; MDB_CORRUPTED otherwise. sealed_record_seal
 * writes the checksum after the body of len bytes at p.
 */
int sealed_record_open(const MDB_val *val, size_t *body);
void sealed_record_seal(void *p, size_t body);

/* ---- codecs: a collection's trained codec ---- */

/* The head of a codec record, then the codec's parameters
 * (codec_blob_load), then the XXH32 of both. */
typedef struct codec_rec_head {
    uint32_t kind;       /* enum codec_kind, the catalog record's codec */
    uint32_t param;      /* its codec_param */
    uint32_t dim;        /* the collection's */
} codec_rec_head;

_Static_assert(sizeof(codec_rec_head) == 12, "codec_rec_head is stored raw");

/*
 * A codec record: its head, and where its parameters are (*params, *len
 * bytes, inside val). 0, or MDB_CORRUPTED when it is too short for its
 * head and checksum or fails its checksum.
 */
int codec_record_decode(const MDB_val *val, codec_rec_head *head,
                        const unsigned char **params, size_t *len);

/* ---- pindexes and pentries: payload indexes ---- */

typedef struct pindex_rec {
    uint32_t id;        /* key prefix of its entries */
    uint32_t type;      /* qv_index_type */
} pindex_rec;

_Static_assert(sizeof(pindex_rec) == 8 && offsetof(pindex_rec, type) == 4,
               "pindex_rec is stored raw");

/* A pindexes value. 0, or MDB_CORRUPTED when it is not 8 bytes. */
int pindex_rec_decode(const MDB_val *val, pindex_rec *rec);

/* pentries: [coll u32][index u32][tag u8][value][iid u32], the value's
 * order-preserving encoding (pindex.c); tag PENTRY_VALUE or PENTRY_RESIDUAL
 * (a value the index cannot encode; docs/FILTERS.md). */
#define PENTRY_VALUE 1
#define PENTRY_RESIDUAL 2
#define PENTRY_PREFIX_LEN 8   /* [coll][index] */
#define PENTRY_KEY_MIN 13     /* [coll][index][tag][iid] */

/*
 * A pentries key: its tag, its encoded value (*value_len bytes, inside
 * key) and the internal id it lists. 0, or MDB_CORRUPTED when it is
 * shorter than PENTRY_KEY_MIN.
 */
int pentry_key_decode(const MDB_val *key, unsigned *tag,
                      const unsigned char **value, size_t *value_len,
                      uint32_t *iid);

/* ---- tables and tchunks: embedding tables ---- */

#define TABLE_FORMAT 1
#define CHUNK_KEY_LEN 13   /* [table u32][slab u8][chunk u64], big-endian */

/* A table's record in sub-db tables, stored as this struct. */
typedef struct tbl_rec {
    uint32_t format;     /* TABLE_FORMAT */
    uint32_t id;         /* key prefix of its chunks */
    uint32_t method;     /* enum emb_method */
    uint32_t dim;
    double param;        /* the method's ratio or sparsity */
    uint64_t rows;
    uint32_t optimizer;  /* enum emb_optimizer */
    float lr;
    float init;
    uint32_t checksum;   /* XXH32 of the record with this field 0 */
    uint64_t seed;
    uint64_t step;       /* optimizer steps applied */
    uint64_t generation; /* bumped by every committed update or load */
} tbl_rec;

_Static_assert(sizeof(tbl_rec) == 72, "tbl_rec is stored raw");
_Static_assert(offsetof(tbl_rec, param) == 16 &&
               offsetof(tbl_rec, rows) == 24 &&
               offsetof(tbl_rec, optimizer) == 32 &&
               offsetof(tbl_rec, lr) == 36 &&
               offsetof(tbl_rec, checksum) == 44 &&
               offsetof(tbl_rec, seed) == 48 &&
               offsetof(tbl_rec, generation) == 64,
               "tbl_rec is stored raw");

/* A tables value: its size, format and checksum. REC_SIZE, REC_FORMAT or
 * REC_CHECKSUM; the fields' meaning is the caller's to check. */
enum rec_fault tbl_rec_decode(const MDB_val *val, tbl_rec *rec);
/* rec sealed with its checksum, as stored. */
tbl_rec tbl_rec_seal(const tbl_rec *rec);

#endif
