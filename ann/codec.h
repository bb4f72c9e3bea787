/*
 * codec.h - compact codes of float vectors, for traversal in memory.
 *
 * A collection with a codec keeps one code per vector in memory and its
 * full vectors on disk. The graph is walked over codes; the best
 * candidates are then re-ranked with the full vectors (db/search.c).
 *
 *   none     float32, no codec (the graph holds the vectors themselves)
 *   f16      half precision, 2 bytes a dimension
 *   sq8      one byte a dimension over a trained per-dimension range
 *   pq:M     product quantization: M sub-spaces of 256 centroids
 *   bin      one bit a dimension: the sign after subtracting the mean
 *   prune:K  the K components of largest magnitude (index, value)
 *
 * Distances follow the collection's metric: squared L2, or 1 - dot for ip
 * and cosine (cosine vectors are encoded unit length). bin is Hamming
 * distance for every metric. A query is prepared once (pq builds its
 * lookup table then) and compared with many codes.
 *
 * A codec is immutable once trained, so any number of threads may use it.
 * No I/O: the db layer stores codec_blob_write's bytes.
 */
#ifndef QV_ANN_CODEC_H
#define QV_ANN_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum codec_kind {
    CODEC_NONE = 0,
    CODEC_F16 = 1,
    CODEC_SQ8 = 2,
    CODEC_PQ = 3,
    CODEC_BIN = 4,
    CODEC_PRUNE = 5,
};

typedef struct codec_spec {
    enum codec_kind kind;
    uint32_t param;   /* pq: sub-spaces M; prune: components K; else 0 */
} codec_spec;

#define CODEC_SPEC_MAX 24   /* longest text of a spec, with its NUL */

/*
 * Parse "none", "f16", "sq8", "pq:M", "bin" or "prune:K" for vectors of
 * dim. Returns 0, or -1 with the reason in err.
 */
int codec_parse(const char *text, uint32_t dim, codec_spec *out, char *err,
                size_t errlen);
/* The spec's text ("pq:98"); buf holds CODEC_SPEC_MAX bytes. */
void codec_format(const codec_spec *spec, char *buf);

/* Vectors a collection needs before its codec is trained (0: none). */
uint32_t codec_train_min(const codec_spec *spec);
/* The fewest vectors codec_train can learn from: pq's 256 centroids need
 * as many points; sq8 and bin one. */
uint32_t codec_train_least(const codec_spec *spec);
/* Bytes of one code. */
size_t codec_spec_code_bytes(const codec_spec *spec, uint32_t dim);

typedef struct codec codec;

/*
 * Train a codec on n sample vectors (n >= codec_train_min; unit length
 * for cosine). dot: the metric compares by inner product. The same
 * sample and seed give the same codec. threads > 1 trains pq's
 * sub-spaces in parallel. NULL when out of memory.
 */
codec *codec_train(const codec_spec *spec, uint32_t dim, int dot,
                   const float *sample, size_t n, uint64_t seed,
                   unsigned threads);
void codec_free(codec *c);

size_t codec_code_bytes(const codec *c);
const codec_spec *codec_get_spec(const codec *c);
void codec_encode(const codec *c, const float *v, uint8_t *code);
/* The vector a code stands for (bin: the mean plus or minus one). */
void codec_decode(const codec *c, const uint8_t *code, float *out);

/* A prepared query: codec_query_bytes of working memory. */
size_t codec_query_bytes(const codec *c);
void codec_query_prepare(const codec *c, const float *q, void *qbuf);
float codec_query_distance(const codec *c, const void *qbuf,
                           const uint8_t *code);
/* Distance between two codes (for the graph's neighbour selection). */
float codec_code_distance(const codec *c, const uint8_t *a, const uint8_t *b);
/* Whether a code read from storage is one the codec's functions may use:
 * prune's indexes within the dimension (every byte is a valid code of the
 * others). 0, or -1. */
int codec_check_code(const codec *c, const uint8_t *code);

/* The trained parameters as bytes, and back (NULL if malformed or out of
 * memory; *malformed tells which). */
size_t codec_blob_size(const codec *c);
void codec_blob_write(const codec *c, void *buf);
codec *codec_blob_load(const codec_spec *spec, uint32_t dim, int dot,
                       const void *blob, size_t len, int *malformed);

/* Bytes the codec's parameters hold in memory. */
size_t codec_memory_bytes(const codec *c);

#endif
