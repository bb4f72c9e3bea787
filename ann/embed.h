/*
 * embed.h - learnable embedding tables: the compression methods of the
 * seed paper (an experimental analysis of learnable embedding
 * compression), their lookups and their training updates. No I/O: a
 * table is a few slabs of fixed-size rows that the db layer keeps in
 * LMDB (in chunks) and in memory.
 *
 *   full       rows x dim float32 (the baseline)
 *   hash:R     ids hashed into ceil(rows / R) shared rows
 *   qr:R       quotient and remainder tables, a row is their element-wise
 *              product (compositional embeddings)
 *   robe:R     one shared array of rows x dim / R floats; each block of 8
 *              elements of a row found by hashing, with a hashed sign
 *   adapt:R    frequent ids (a count-min sketch counts them as updates see
 *              them) get rows of their own, the others share hashed rows
 *   int8/int16 rows quantized with a per-row scale (max |w| / qmax);
 *              updates dequantize, step, requantize with stochastic rounding
 *   alpt:8/16  quantized rows whose per-row scale is learned by gradient
 *   prune:S    rows keep their (1 - S) x dim largest-magnitude entries
 *   tt:R       TT-Rec: the table as a tensor train of three cores of rank
 *              R; a row is a product of one slice of each core
 *
 * Optimizers: sgd, and row-wise AdaGrad (one accumulator per stored row,
 * of the mean squared gradient), whose state is part of the table.
 *
 * Ids: full, int8, int16, alpt, prune and tt address rows 0 .. rows-1
 * by id; hash, qr, robe and adapt take any 64-bit id and hash it.
 */
#ifndef QV_ANN_EMBED_H
#define QV_ANN_EMBED_H

#include <stddef.h>
#include <stdint.h>

enum emb_method {
    EMB_FULL, EMB_HASH, EMB_QR, EMB_ROBE, EMB_ADAPT,
    EMB_INT8, EMB_INT16, EMB_ALPT8, EMB_ALPT16, EMB_PRUNE, EMB_TT,
};

enum emb_optimizer { EMB_SGD = 0, EMB_ADAGRAD = 1 };

typedef struct emb_spec {
    enum emb_method method;
    double param;        /* R for hash, qr, robe, adapt; S for prune;
                            the rank for tt */
    uint64_t rows;       /* feature ids the table is sized for */
    uint32_t dim;
    enum emb_optimizer optimizer;
    float lr;
    float init;          /* initial values uniform in [-init, init] */
    uint64_t seed;
} emb_spec;

#define EMB_SPEC_MAX 24      /* longest method text, with its NUL */
#define EMB_MAX_SLABS 8
#define EMB_ADAPT_PROMOTE 3  /* updates that make an id frequent */
#define EMB_TT_RANK_MAX 32

/* Parse "full", "hash:R", ... into spec->method and spec->param (left
 * alone on error), checked by emb_check_method. 0, or -1 with the reason
 * in err. */
int emb_parse_method(const char *text, emb_spec *spec, char *err,
                     size_t errlen);
/* Whether spec's method is known and its parameter in the method's range
 * (a sparsity in (0, 1), a whole rank 1 .. EMB_TT_RANK_MAX, a ratio 1 ..
 * 1e6). 0, or -1 with the reason in err. */
int emb_check_method(const emb_spec *spec, char *err, size_t errlen);
/*
 * Whether spec is a table this build makes: rows 1 .. max_bytes, dim 1 ..
 * max_dim, a known optimizer, a learning rate and init finite above 0,
 * emb_check_method, and a layout (emb_layout) of at most max_bytes of
 * parameters and state. For a new table's config and a stored one read
 * back alike. 0, or -1 with the reason in err.
 */
int emb_check_spec(const emb_spec *spec, uint64_t max_bytes,
                   uint32_t max_dim, char *err, size_t errlen);
void emb_format_method(const emb_spec *spec, char *buf);
/* Whether ids must be below rows (they address rows directly). */
int emb_ids_are_rows(const emb_spec *spec);
/* Whether a row can be stored as given (emb_set_row): each id's row is
 * its own parameters (not hashed, not a product of shared cores). */
int emb_rows_are_own(const emb_spec *spec);

typedef struct emb_slab {
    uint64_t rows;
    uint32_t row_bytes;
    int state;           /* optimizer state rather than parameters */
    uint8_t *data;       /* rows x row_bytes */
} emb_slab;

typedef struct emb_table {
    emb_spec spec;
    uint32_t nslabs;
    emb_slab slab[EMB_MAX_SLABS];
    int state_slab[EMB_MAX_SLABS];   /* AdaGrad state of a slab, or -1 */
    uint64_t step;       /* updates applied (stochastic rounding, adapt) */
    /* derived sizes */
    uint64_t qr_rem;     /* qr: rows of the remainder table */
    uint32_t prune_k;    /* prune: entries kept per row */
    /* tt: a row id is (i0, i1, i2) with i0 < n[0], ...; its dim factors
     * into d[0] x d[1] x d[2]; core k's slice for i_k is r[k] x d[k] x
     * r[k + 1] floats, r = {1, R, R, 1} (core 2 stored [j2][b]) */
    uint64_t tt_n[3];
    uint32_t tt_d[3], tt_r[4];
} emb_table;

/*
 * The table's slabs with their sizes, data NULL (emb_alloc allocates).
 * Returns 0, or -1 with the reason in err when the spec cannot be laid
 * out (a ratio the method cannot reach on these rows).
 */
int emb_layout(const emb_spec *spec, emb_table *t, char *err, size_t errlen);
/* Allocate the slabs and fill them with the initial values. -1: out of
 * memory. */
int emb_alloc_init(emb_table *t);
/* Allocate the slabs, zeroed (the db layer fills them from LMDB). */
int emb_alloc(emb_table *t);
/*
 * Whether slabs filled from storage hold what lookups and updates index
 * with: adapt's id map names own rows that exist and keeps empty entries.
 * (Other methods' rows are values, or indexes checked where they are
 * read.) 0, or -1 with the reason in err.
 */
int emb_check_data(const emb_table *t, char *err, size_t errlen);
void emb_release(emb_table *t);

/* Bytes of parameters, of optimizer state, and the ratio of a full
 * float table of rows x dim to the parameters. */
uint64_t emb_param_bytes(const emb_table *t);
uint64_t emb_state_bytes(const emb_table *t);
double emb_ratio(const emb_table *t);

/* Dense rows of ids into out (n x dim). */
void emb_lookup(const emb_table *t, const uint64_t *ids, size_t n,
                float *out);

/* A touched row: slab and row, for the db layer to write back. */
typedef struct emb_touch {
    uint32_t slab;
    uint64_t row;
} emb_touch;

/*
 * One optimizer step for a batch: grads is n x dim, the gradient of the
 * loss with respect to each looked-up row; a repeated id accumulates.
 * touched (capacity emb_touch_bound(t, n)) receives every row changed
 * (a row may be named more than once). Returns how many, or -1 when out
 * of memory (the table is unchanged then).
 */
long emb_update(emb_table *t, const uint64_t *ids, size_t n,
                const float *grads, emb_touch *touched);

/* Store the dense row w as row id through the method (only methods whose
 * rows are their own, emb_rows_are_own): a trained row compressed for
 * serving. */
void emb_set_row(emb_table *t, uint64_t id, const float *w);
size_t emb_touch_bound(const emb_table *t, size_t n);

#endif
