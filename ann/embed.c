#include "ann/embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simde/x86/avx2.h>
#include <simde/x86/fma.h>

#include "common/alloc.h"

#define ROBE_BLOCK 8       /* consecutive elements found by one hash: one
                              256-bit load in emb_lookup */
#define ROBE_ROW 16        /* floats per stored row of the shared array */
#define ADAGRAD_EPS 1e-8f
#define MAP_EMPTY UINT64_MAX

static const char *const method_names[] = {
    [EMB_FULL] = "full",   [EMB_HASH] = "hash",   [EMB_QR] = "qr",
    [EMB_ROBE] = "robe",   [EMB_ADAPT] = "adapt", [EMB_INT8] = "int8",
    [EMB_INT16] = "int16", [EMB_ALPT8] = "alpt",  [EMB_ALPT16] = "alpt",
    [EMB_PRUNE] = "prune", [EMB_TT] = "tt",
};

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash2(uint64_t seed, uint64_t a, uint64_t b)
{
    return mix64(mix64(seed ^ a) + b);
}

/* h mapped onto [0, n) by a multiply (Lemire): no division. */
static inline uint64_t reduce(uint64_t h, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)h * n) >> 64);
}

/* ---- methods ---- */

static int takes_ratio(enum emb_method m)
{
    return m == EMB_HASH || m == EMB_QR || m == EMB_ROBE || m == EMB_ADAPT;
}

int emb_ids_are_rows(const emb_spec *spec)
{
    return !takes_ratio(spec->method);
}

int emb_rows_are_own(const emb_spec *spec)
{
    return emb_ids_are_rows(spec) && spec->method != EMB_TT;
}

int emb_check_method(const emb_spec *spec, char *err, size_t errlen)
{
    double v = spec->param;
    const char *name = (unsigned)spec->method <= EMB_TT
                           ? method_names[spec->method] : NULL;
    if (!name) {
        snprintf(err, errlen, "unknown method %u", (unsigned)spec->method);
        return -1;
    }
    if (spec->method == EMB_PRUNE && !(v > 0 && v < 1)) {
        snprintf(err, errlen, "method prune: the sparsity must be above 0 "
                 "and below 1, not %g", v);
        return -1;
    }
    if (spec->method == EMB_TT &&
        !(v >= 1 && v <= EMB_TT_RANK_MAX && v == floor(v))) {
        snprintf(err, errlen, "method tt: the rank must be a whole number "
                 "from 1 to %d, not %g", EMB_TT_RANK_MAX, v);
        return -1;
    }
    if (takes_ratio(spec->method) && !(v >= 1 && v <= 1e6)) {
        snprintf(err, errlen, "method %s: the compression ratio must be 1 "
                 "to 1000000, not %g", name, v);
        return -1;
    }
    return 0;
}

int emb_parse_method(const char *text, emb_spec *spec, char *err,
                     size_t errlen)
{
    static const struct { const char *name; enum emb_method m; } plain[] = {
        {"full", EMB_FULL}, {"int8", EMB_INT8}, {"int16", EMB_INT16},
        {"alpt:8", EMB_ALPT8}, {"alpt:16", EMB_ALPT16}};
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        if (!strcmp(text, plain[i].name)) {
            spec->method = plain[i].m;
            spec->param = 1;
            return 0;
        }
    }
    static const struct { const char *name; enum emb_method m; } param[] = {
        {"hash:", EMB_HASH}, {"qr:", EMB_QR}, {"robe:", EMB_ROBE},
        {"adapt:", EMB_ADAPT}, {"prune:", EMB_PRUNE}, {"tt:", EMB_TT}};
    for (size_t i = 0; i < sizeof param / sizeof *param; i++) {
        size_t len = strlen(param[i].name);
        if (strncmp(text, param[i].name, len) != 0)
            continue;
        char *end;
        const char *num = text + len;
        double v = (*num >= '0' && *num <= '9') ? strtod(num, &end) : NAN;
        if (isnan(v) || *end) {
            snprintf(err, errlen, "method %.*s: '%s' is not a number",
                     (int)len - 1, text, num);
            return -1;
        }
        emb_spec parsed = *spec;
        parsed.method = param[i].m;
        parsed.param = v;
        if (emb_check_method(&parsed, err, errlen) != 0)
            return -1;
        *spec = parsed;
        return 0;
    }
    snprintf(err, errlen, "unknown method '%s' (full, hash:R, qr:R, robe:R, "
             "adapt:R, int8, int16, alpt:8, alpt:16, prune:S, tt:RANK)", text);
    return -1;
}

int emb_check_spec(const emb_spec *spec, uint64_t max_bytes,
                   uint32_t max_dim, char *err, size_t errlen)
{
    emb_table t;
    if (spec->rows == 0 || spec->rows > max_bytes) {
        snprintf(err, errlen, "rows must be 1 to %llu, not %llu",
                 (unsigned long long)max_bytes,
                 (unsigned long long)spec->rows);
        return -1;
    }
    if (spec->dim == 0 || spec->dim > max_dim) {
        snprintf(err, errlen, "dimension must be 1 to %u, not %u", max_dim,
                 spec->dim);
        return -1;
    }
    if (spec->optimizer != EMB_SGD && spec->optimizer != EMB_ADAGRAD) {
        snprintf(err, errlen, "unknown optimizer %d; use sgd or adagrad",
                 (int)spec->optimizer);
        return -1;
    }
    if (!(spec->lr > 0) || !isfinite(spec->lr)) {
        snprintf(err, errlen, "the learning rate must be a finite number "
                 "above 0");
        return -1;
    }
    if (!(spec->init > 0) || !isfinite(spec->init)) {
        snprintf(err, errlen, "init must be a finite number above 0");
        return -1;
    }
    if (emb_check_method(spec, err, errlen) != 0 ||
        emb_layout(spec, &t, err, errlen) != 0)
        return -1;
    uint64_t bytes = emb_param_bytes(&t) + emb_state_bytes(&t);
    if (bytes > max_bytes) {
        snprintf(err, errlen, "the table would hold %llu bytes; the limit "
                 "is %llu", (unsigned long long)bytes,
                 (unsigned long long)max_bytes);
        return -1;
    }
    return 0;
}

void emb_format_method(const emb_spec *spec, char *buf)
{
    switch (spec->method) {
    case EMB_ALPT8:
        snprintf(buf, EMB_SPEC_MAX, "alpt:8");
        break;
    case EMB_ALPT16:
        snprintf(buf, EMB_SPEC_MAX, "alpt:16");
        break;
    case EMB_HASH:
    case EMB_QR:
    case EMB_ROBE:
    case EMB_ADAPT:
    case EMB_PRUNE:
    case EMB_TT:
        snprintf(buf, EMB_SPEC_MAX, "%s:%g", method_names[spec->method],
                 spec->param);
        break;
    default:
        snprintf(buf, EMB_SPEC_MAX, "%s", method_names[spec->method]);
    }
}

/* ---- layout ---- */

static uint32_t quant_bits(enum emb_method m)
{
    return m == EMB_INT8 || m == EMB_ALPT8 ? 8 : 16;
}

static int is_quantized(enum emb_method m)
{
    return m == EMB_INT8 || m == EMB_INT16 || m == EMB_ALPT8 ||
           m == EMB_ALPT16;
}

static void add_slab(emb_table *t, uint64_t rows, uint32_t row_bytes,
                     int state)
{
    t->slab[t->nslabs++] = (emb_slab){rows, row_bytes, state, NULL};
}

static uint64_t ceil_div(double a, double b)
{
    double v = ceil(a / b);
    return v < 1 ? 1 : (uint64_t)v;
}

/* The largest factor of n that is at most n^(1/parts): dim split as
 * evenly as it goes (16 = 2 x 2 x 4; a prime dim is 1 x 1 x dim). */
static uint32_t even_factor(uint32_t n, int parts)
{
    uint32_t best = 1;
    for (uint32_t f = 1; f <= n; f++) {
        if (n % f == 0 && pow(f, parts) <= (double)n + 1e-9)
            best = f;
    }
    return best;
}

/* tt's shape: rows as n0 x n1 x n2 >= rows (each about the cube root),
 * dim as d0 x d1 x d2, ranks 1, R, R, 1. -1 with the reason in err when
 * the cores would not be smaller than the full table. */
static int tt_shape(emb_table *t, char *err, size_t errlen)
{
    const emb_spec *spec = &t->spec;
    uint64_t rows = spec->rows;
    uint64_t n0 = (uint64_t)ceil(cbrt((double)rows));
    n0 = n0 < 1 ? 1 : n0;
    uint64_t n1 = (uint64_t)ceil(sqrt((double)ceil_div((double)rows,
                                                       (double)n0)));
    n1 = n1 < 1 ? 1 : n1;
    uint64_t n2 = ceil_div((double)rows, (double)(n0 * n1));
    while ((unsigned __int128)n0 * n1 * n2 < rows)   /* every id a slice */
        n2++;
    uint32_t d0 = even_factor(spec->dim, 3);
    uint32_t d1 = even_factor(spec->dim / d0, 2);
    uint32_t R = (uint32_t)spec->param;
    t->tt_n[0] = n0, t->tt_n[1] = n1, t->tt_n[2] = n2;
    t->tt_d[0] = d0, t->tt_d[1] = d1, t->tt_d[2] = spec->dim / d0 / d1;
    t->tt_r[0] = 1, t->tt_r[1] = R, t->tt_r[2] = R, t->tt_r[3] = 1;
    double params = 0;
    for (int k = 0; k < 3; k++)
        params += (double)t->tt_n[k] * t->tt_r[k] * t->tt_d[k] *
                  t->tt_r[k + 1];
    if (params >= (double)rows * spec->dim) {
        snprintf(err, errlen, "method tt:%u on %llu rows of dim %u holds "
                 "%.0f parameters, no fewer than the full table's %llu: "
                 "take a lower rank", R, (unsigned long long)rows,
                 spec->dim, params,
                 (unsigned long long)rows * spec->dim);
        return -1;
    }
    return 0;
}

/* Floats of one slice of tt's core k. */
static uint32_t tt_slice(const emb_table *t, int k)
{
    return t->tt_r[k] * t->tt_d[k] * t->tt_r[k + 1];
}

/* The parameter slabs, then (AdaGrad) one state slab per learnt slab. */
int emb_layout(const emb_spec *spec, emb_table *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->spec = *spec;
    uint32_t d = spec->dim, f32row = d * 4;
    double R = spec->param;
    int learnt[EMB_MAX_SLABS] = {0};
    switch (spec->method) {
    case EMB_FULL:
        add_slab(t, spec->rows, f32row, 0);
        learnt[0] = 1;
        break;
    case EMB_HASH:
        add_slab(t, ceil_div((double)spec->rows, R), f32row, 0);
        learnt[0] = 1;
        break;
    case EMB_QR: {
        /* rows of both tables within the budget B = rows / R: the
         * remainder table takes the larger root of m^2 - B m + rows */
        double B = (double)spec->rows / R, disc = B * B - 4.0 * spec->rows;
        if (disc < 0) {
            snprintf(err, errlen, "method qr cannot reach ratio %g on %llu "
                     "rows (at most %.1f)", R,
                     (unsigned long long)spec->rows,
                     sqrt((double)spec->rows) / 2);
            return -1;
        }
        uint64_t rem = (uint64_t)ceil((B + sqrt(disc)) / 2);
        rem = rem < 1 ? 1 : rem > spec->rows ? spec->rows : rem;
        t->qr_rem = rem;
        add_slab(t, ceil_div((double)spec->rows, (double)rem), f32row, 0);
        add_slab(t, rem, f32row, 0);
        learnt[0] = learnt[1] = 1;
        break;
    }
    case EMB_ROBE: {
        uint64_t floats = ceil_div((double)spec->rows * d, R);
        add_slab(t, ceil_div((double)floats, ROBE_ROW), ROBE_ROW * 4, 0);
        learnt[0] = 1;
        break;
    }
    case EMB_ADAPT: {
        /* the budget of rows x dim x 4 / R bytes holds a quarter of the
         * rows as own rows, their map (16 bytes an entry, at most half
         * full) and sketch (two rows of 4-byte counters), and shared rows
         * in what is left */
        double bytes = (double)spec->rows * f32row / R;
        uint64_t owned = (uint64_t)(bytes / f32row / 4);
        owned = owned ? owned : 1;
        uint64_t width = owned > 64 ? owned : 64, cap = 16;
        while (cap < 2 * owned)
            cap *= 2;
        double left = bytes - (double)owned * f32row - 16.0 * cap -
                      8.0 * width;
        uint64_t shared = left > f32row ? (uint64_t)(left / f32row) : 1;
        add_slab(t, owned ? owned : 1, f32row, 0);  /* own rows */
        add_slab(t, shared, f32row, 0);             /* hashed rows */
        add_slab(t, 2 * width, 4, 0);               /* count-min sketch */
        add_slab(t, cap, 16, 0);                    /* id -> own row */
        learnt[0] = learnt[1] = 1;
        break;
    }
    case EMB_INT8:
    case EMB_INT16:
    case EMB_ALPT8:
    case EMB_ALPT16:
        add_slab(t, spec->rows, 4 + d * quant_bits(spec->method) / 8, 0);
        learnt[0] = 1;
        break;
    case EMB_PRUNE: {
        double keep = round((1.0 - R) * d);
        t->prune_k = keep < 1 ? 1 : (uint32_t)keep;
        add_slab(t, spec->rows, t->prune_k * 6, 0);
        learnt[0] = 1;
        break;
    }
    case EMB_TT:
        if (tt_shape(t, err, errlen) != 0)
            return -1;
        for (int k = 0; k < 3; k++) {
            add_slab(t, t->tt_n[k], tt_slice(t, k) * 4, 0);
            learnt[k] = 1;
        }
        break;
    }
    uint32_t n = t->nslabs;
    for (uint32_t i = 0; i < EMB_MAX_SLABS; i++)
        t->state_slab[i] = -1;
    for (uint32_t i = 0; i < n && spec->optimizer == EMB_ADAGRAD; i++) {
        if (learnt[i]) {
            t->state_slab[i] = (int)t->nslabs;
            add_slab(t, t->slab[i].rows, 4, 1);
        }
    }
    return 0;
}

int emb_alloc(emb_table *t)
{
    for (uint32_t i = 0; i < t->nslabs; i++) {
        size_t bytes = (size_t)t->slab[i].rows * t->slab[i].row_bytes;
        t->slab[i].data = qv_calloc(bytes ? bytes : 1, 1);
        if (!t->slab[i].data) {
            emb_release(t);
            return -1;
        }
    }
    return 0;
}

void emb_release(emb_table *t)
{
    for (uint32_t i = 0; i < t->nslabs; i++) {
        qv_mem_free(t->slab[i].data);
        t->slab[i].data = NULL;
    }
}

uint64_t emb_param_bytes(const emb_table *t)
{
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < t->nslabs; i++)
        if (!t->slab[i].state)
            bytes += t->slab[i].rows * t->slab[i].row_bytes;
    return bytes;
}

uint64_t emb_state_bytes(const emb_table *t)
{
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < t->nslabs; i++)
        if (t->slab[i].state)
            bytes += t->slab[i].rows * t->slab[i].row_bytes;
    return bytes;
}

double emb_ratio(const emb_table *t)
{
    return (double)t->spec.rows * t->spec.dim * 4 /
           (double)emb_param_bytes(t);
}

/* ---- rows ---- */

static float *f32_row(const emb_table *t, uint32_t slab, uint64_t row)
{
    return (float *)(void *)(t->slab[slab].data +
                             row * t->slab[slab].row_bytes);
}

static int state_of(const emb_table *t, uint32_t s)
{
    return t->state_slab[s];
}

/* quantized row: [scale f32][values int8 or int16] */
static float qscale(const uint8_t *row)
{
    float s;
    memcpy(&s, row, 4);
    return s;
}

static void dequantize(const emb_table *t, const uint8_t *row, float *out)
{
    float s = qscale(row);
    uint32_t d = t->spec.dim;
    simde__m256 scale = simde_mm256_set1_ps(s);
    uint32_t i = 0;
    if (quant_bits(t->spec.method) == 8) {
        for (; i + 8 <= d; i += 8) {
            simde__m256i q = simde_mm256_cvtepi8_epi32(
                simde_mm_loadl_epi64((const simde__m128i *)(row + 4 + i)));
            simde_mm256_storeu_ps(out + i, simde_mm256_mul_ps(
                scale, simde_mm256_cvtepi32_ps(q)));
        }
        for (; i < d; i++)
            out[i] = s * (float)(int8_t)row[4 + i];
    } else {
        for (; i + 8 <= d; i += 8) {
            simde__m256i q = simde_mm256_cvtepi16_epi32(simde_mm_loadu_si128(
                (const simde__m128i *)(row + 4 + 2 * i)));
            simde_mm256_storeu_ps(out + i, simde_mm256_mul_ps(
                scale, simde_mm256_cvtepi32_ps(q)));
        }
        for (; i < d; i++) {
            int16_t q;
            memcpy(&q, row + 4 + 2 * i, 2);
            out[i] = s * q;
        }
    }
}

static float qmax(const emb_table *t)
{
    return quant_bits(t->spec.method) == 8 ? 127.0f : 32767.0f;
}

/* Quantize w with step s, rounding stochastically from rng. */
static void quantize(const emb_table *t, const float *w, float s,
                     uint64_t rng, uint8_t *row)
{
    memcpy(row, &s, 4);
    float top = qmax(t);
    for (uint32_t i = 0; i < t->spec.dim; i++) {
        float x = s > 0 ? w[i] / s : 0;
        float lo = floorf(x);
        float u = (float)(mix64(rng + i) >> 40) / 16777216.0f;
        float q = lo + (u < x - lo ? 1.0f : 0.0f);
        q = q > top ? top : q < -top ? -top : q;
        if (quant_bits(t->spec.method) == 8) {
            row[4 + i] = (uint8_t)(int8_t)q;
        } else {
            int16_t v = (int16_t)q;
            memcpy(row + 4 + 2 * i, &v, 2);
        }
    }
}

/* prune row: [K indexes u16][K values f32] */
static void prune_decode(const emb_table *t, const uint8_t *row, float *out)
{
    uint32_t K = t->prune_k, d = t->spec.dim, i = 0;
    /* zeroed 8 floats a store: a call to memset cost more than the row
     * at dim 16 */
    for (; i + 8 <= d; i += 8)
        simde_mm256_storeu_ps(out + i, simde_mm256_setzero_ps());
    for (; i < d; i++)
        out[i] = 0;
    for (i = 0; i < K; i++) {   /* the indexes are distinct (encode) */
        uint16_t idx;
        float v;
        memcpy(&idx, row + 2 * i, 2);
        memcpy(&v, row + 2 * K + 4 * i, 4);
        if (idx < d)
            out[idx] = v;
    }
}

/* Keep the K largest magnitudes of w (ties: the lower index). */
static void prune_encode(const emb_table *t, const float *w, uint8_t *row)
{
    uint32_t K = t->prune_k, d = t->spec.dim, n = 0;
    for (uint32_t i = 0; i < d && n < K; i++) {
        uint32_t larger = 0;
        for (uint32_t j = 0; j < d && larger < K; j++)
            larger += fabsf(w[j]) > fabsf(w[i]) ||
                      (fabsf(w[j]) == fabsf(w[i]) && j < i);
        if (larger < K) {
            uint16_t idx = (uint16_t)i;
            memcpy(row + 2 * n, &idx, 2);
            memcpy(row + 2 * K + 4 * n, &w[i], 4);
            n++;
        }
    }
}

/* adapt: the own row of id, or -1 */
static int64_t adapt_find(const emb_table *t, uint64_t id)
{
    const emb_slab *map = &t->slab[3];
    uint64_t mask = map->rows - 1;
    for (uint64_t i = mix64(id ^ t->spec.seed) & mask;; i = (i + 1) & mask) {
        uint64_t key, slot;
        memcpy(&key, map->data + i * 16, 8);
        if (key == MAP_EMPTY)
            return -1;
        if (key == id) {
            memcpy(&slot, map->data + i * 16 + 8, 8);
            return (int64_t)slot;
        }
    }
}

static uint64_t hashed_row(const emb_table *t, uint64_t id, uint64_t rows)
{
    return reduce(mix64(id ^ t->spec.seed), rows);
}

/* qr: the id's quotient and remainder rows */
static void qr_rows(const emb_table *t, uint64_t id, uint64_t *q,
                    uint64_t *r)
{
    uint64_t x = id < t->spec.rows ? id : hashed_row(t, id, t->spec.rows);
    *q = x / t->qr_rem;
    *r = x % t->qr_rem;
}

/* robe: the hash of block b of a row whose id hashes to base (one full
 * mix per id, a multiply per block) */
static inline uint64_t robe_block(uint64_t base, uint32_t b)
{
    uint64_t h = (base + b * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

/* robe: where element j of id lies in the shared array, and its sign */
static uint64_t robe_at(const emb_table *t, uint64_t id, uint32_t j,
                        float *sign)
{
    uint64_t total = t->slab[0].rows * ROBE_ROW;
    uint64_t h = robe_block(mix64(t->spec.seed ^ id), j / ROBE_BLOCK);
    *sign = (h & 1) ? -1.0f : 1.0f;
    return (reduce(h, total) + j % ROBE_BLOCK) % total;
}

/* The dot product of two runs of n floats (n up to a tt rank). */
static float dot_n(const float *a, const float *b, uint32_t n)
{
    simde__m256 acc = simde_mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = simde_mm256_fmadd_ps(simde_mm256_loadu_ps(a + i),
                                   simde_mm256_loadu_ps(b + i), acc);
    float lane[8], sum = 0;
    simde_mm256_storeu_ps(lane, acc);
    for (int k = 0; k < 8; k++)
        sum += lane[k];
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* tt: the slices of the three cores that make row id. */
static void tt_slices(const emb_table *t, uint64_t id, uint64_t at[3])
{
    at[0] = id % t->tt_n[0];
    at[1] = id / t->tt_n[0] % t->tt_n[1];
    at[2] = id / t->tt_n[0] / t->tt_n[1];
}

/* tt: sum over a of core 0's [j0][a] x core 1's [a][j1][b], for every b
 * below R: the partial product that the elements (j0, j1, *) share. */
static void tt_partial(const emb_table *t, const float *c0,
                       const float *restrict c1,
                       uint32_t j0, uint32_t j1, float *restrict part)
{
    uint32_t R = t->tt_r[1], d1 = t->tt_d[1];
    memset(part, 0, R * sizeof *part);
    for (uint32_t a = 0; a < R; a++) {
        float x = c0[j0 * R + a];
        const float *c1r = c1 + (a * d1 + j1) * R;
        for (uint32_t b = 0; b < R; b++)
            part[b] += x * c1r[b];
    }
}

/* tt: row id = the contraction of its three slices, element
 * (j0 d1 + j1) d2 + j2 = sum over a, b of c0[j0][a] c1[a][j1][b]
 * c2[b][j2]. Core 2's slice is stored as [j2][b], so that the last sum
 * runs over contiguous floats. */
static void tt_lookup(const emb_table *t, uint64_t id, float *out)
{
    uint64_t at[3];
    tt_slices(t, id, at);
    const float *c0 = f32_row(t, 0, at[0]), *c1 = f32_row(t, 1, at[1]),
                *c2 = f32_row(t, 2, at[2]);
    uint32_t R = t->tt_r[1], d1 = t->tt_d[1], d2 = t->tt_d[2];
    float part[EMB_TT_RANK_MAX];
    for (uint32_t j0 = 0; j0 < t->tt_d[0]; j0++) {
        for (uint32_t j1 = 0; j1 < d1; j1++) {
            tt_partial(t, c0, c1, j0, j1, part);
            float *o = out + (j0 * d1 + j1) * d2;
            for (uint32_t j2 = 0; j2 < d2; j2++)
                o[j2] = dot_n(part, c2 + j2 * R, R);
        }
    }
}

static void lookup_one(const emb_table *t, uint64_t id, float *out)
{
    uint32_t d = t->spec.dim;
    switch (t->spec.method) {
    case EMB_FULL:
        memcpy(out, f32_row(t, 0, id), d * 4);
        break;
    case EMB_HASH:
        memcpy(out, f32_row(t, 0, hashed_row(t, id, t->slab[0].rows)), d * 4);
        break;
    case EMB_QR: {
        uint64_t q, r;
        qr_rows(t, id, &q, &r);
        const float *a = f32_row(t, 0, q), *b = f32_row(t, 1, r);
        for (uint32_t i = 0; i < d; i++)
            out[i] = a[i] * b[i];
        break;
    }
    case EMB_ROBE: {
        /* one hash and one division a block of ROBE_BLOCK elements */
        const float *arr = f32_row(t, 0, 0);
        uint64_t total = t->slab[0].rows * ROBE_ROW;
        uint64_t base = mix64(t->spec.seed ^ id);
        for (uint32_t b = 0; b * ROBE_BLOCK < d; b++) {
            uint64_t h = robe_block(base, b), at = reduce(h, total);
            float sign = (h & 1) ? -1.0f : 1.0f;
            uint32_t end = (b + 1) * ROBE_BLOCK < d ? (b + 1) * ROBE_BLOCK : d;
            uint32_t j = b * ROBE_BLOCK;
            if (end - j == ROBE_BLOCK && at + ROBE_BLOCK <= total) {
                /* the common case, a whole block and no wrap: one load */
                simde_mm256_storeu_ps(out + j, simde_mm256_mul_ps(
                    simde_mm256_set1_ps(sign),
                    simde_mm256_loadu_ps(arr + at)));
                continue;
            }
            for (; j < end; j++) {
                out[j] = sign * arr[at];
                at = at + 1 == total ? 0 : at + 1;
            }
        }
        break;
    }
    case EMB_ADAPT: {
        int64_t own = adapt_find(t, id);
        const float *src = own >= 0 ? f32_row(t, 0, (uint64_t)own)
                                    : f32_row(t, 1, hashed_row(
                                                        t, id,
                                                        t->slab[1].rows));
        memcpy(out, src, d * 4);
        break;
    }
    case EMB_INT8:
    case EMB_INT16:
    case EMB_ALPT8:
    case EMB_ALPT16:
        dequantize(t, t->slab[0].data + id * t->slab[0].row_bytes, out);
        break;
    case EMB_PRUNE:
        prune_decode(t, t->slab[0].data + id * t->slab[0].row_bytes, out);
        break;
    case EMB_TT:
        tt_lookup(t, id, out);
        break;
    }
}

void emb_lookup(const emb_table *t, const uint64_t *ids, size_t n,
                float *out)
{
    for (size_t i = 0; i < n; i++)
        lookup_one(t, ids[i], out + i * t->spec.dim);
}

/* ---- initial values ---- */

static float init_value(const emb_table *t, uint32_t slab, uint64_t i)
{
    uint64_t h = hash2(t->spec.seed, slab, i);
    float u = (float)(h >> 40) / 16777216.0f * 2.0f - 1.0f;
    return u * t->spec.init;
}

/*
 * The first scale of a quantized row: int8 and int16 take max |w| / qmax
 * as every update does; alpt starts with a range of 8 x init, room for
 * the rows to grow while its scale learns (from 2 x init the learned
 * scale lagged: test AUC 0.7899 on MovieLens against 0.7939 from 8 x).
 */
static float initial_scale(const emb_table *t, const float *w)
{
    enum emb_method m = t->spec.method;
    if (m == EMB_ALPT8 || m == EMB_ALPT16)
        return 8.0f * t->spec.init / qmax(t);
    float big = 0;
    for (uint32_t i = 0; i < t->spec.dim; i++)
        big = fabsf(w[i]) > big ? fabsf(w[i]) : big;
    return big > 0 ? big / qmax(t) : t->spec.init / qmax(t);
}

/* Floats of the widest parameter row of any slab. */
static uint32_t widest_row(const emb_table *t)
{
    uint32_t width = t->spec.dim;
    for (uint32_t s = 0; s < t->nslabs; s++)
        if (t->slab[s].row_bytes / 4 > width)
            width = t->slab[s].row_bytes / 4;
    return width;
}

/*
 * tt's cores start uniform in [-h, h] with h chosen so that a row's
 * elements, each a sum of R^2 products of three core values, have the
 * variance init^2 / 3 of the other methods' uniform [-init, init]:
 * R^2 (h^2 / 3)^3 = init^2 / 3.
 */
static float tt_init_scale(const emb_table *t)
{
    double R = t->tt_r[1], init = t->spec.init;
    return (float)(sqrt(3.0) * pow(init * init / (3.0 * R * R), 1.0 / 6));
}

int emb_alloc_init(emb_table *t)
{
    if (emb_alloc(t) != 0)
        return -1;
    uint32_t d = t->spec.dim;
    float *w = qv_malloc(widest_row(t) * sizeof *w);
    if (!w) {
        emb_release(t);
        return -1;
    }
    enum emb_method m = t->spec.method;
    /* tt's cores scale the common [-init, init] to their own range */
    float rescale = m == EMB_TT ? tt_init_scale(t) / t->spec.init : 1.0f;
    for (uint32_t s = 0; s < t->nslabs; s++) {
        emb_slab *sl = &t->slab[s];
        if (sl->state)
            continue;   /* AdaGrad starts at zero */
        uint32_t width = m == EMB_ROBE || m == EMB_TT ? sl->row_bytes / 4 : d;
        if (m == EMB_ADAPT && s >= 2) {
            if (s == 3)  /* an empty map */
                memset(sl->data, 0xff, sl->rows * sl->row_bytes);
            continue;
        }
        for (uint64_t r = 0; r < sl->rows; r++) {
            for (uint32_t j = 0; j < width; j++)
                w[j] = init_value(t, s, r * width + j) * rescale;
            if (m == EMB_QR && s == 1)   /* products near the first */
                for (uint32_t j = 0; j < d; j++)
                    w[j] = 1.0f + w[j];
            uint8_t *row = sl->data + r * sl->row_bytes;
            if (is_quantized(m))
                quantize(t, w, initial_scale(t, w), hash2(t->spec.seed, r, 7),
                         row);
            else if (m == EMB_PRUNE)
                prune_encode(t, w, row);
            else
                memcpy(row, w, width * 4);
        }
    }
    qv_mem_free(w);
    return 0;
}

/* ---- updates ---- */

/* Gradients gathered per stored row before the step. */
typedef struct acc_entry {
    uint32_t slab;
    uint64_t row;
    float *g;          /* the row's gradient (dim, or ROBE_ROW floats) */
} acc_entry;

typedef struct acc_map {
    acc_entry *e;
    uint32_t *slots;   /* open addressing over e: index + 1, 0 empty */
    size_t cap, n, mask, width;
    float *pool;
} acc_map;

static int acc_init(acc_map *a, size_t bound, size_t width)
{
    size_t cap = 16;
    while (cap < 2 * bound)
        cap *= 2;
    a->e = qv_malloc(bound * sizeof *a->e);
    a->slots = qv_calloc(cap, sizeof *a->slots);
    a->pool = qv_malloc(bound * width * sizeof *a->pool);  /* zeroed as
                                                              used */
    a->cap = bound;
    a->mask = cap - 1;
    a->n = 0;
    a->width = width;
    return a->e && a->slots && a->pool ? 0 : -1;
}

static void acc_free(acc_map *a)
{
    qv_mem_free(a->e);
    qv_mem_free(a->slots);
    qv_mem_free(a->pool);
}

/* The gradient of (slab, row), zero when first seen. */
static float *acc_get(acc_map *a, uint32_t slab, uint64_t row)
{
    size_t i = mix64(row * 16 + slab) & a->mask;
    for (;; i = (i + 1) & a->mask) {
        uint32_t s = a->slots[i];
        if (!s)
            break;
        acc_entry *e = &a->e[s - 1];
        if (e->slab == slab && e->row == row)
            return e->g;
    }
    acc_entry *e = &a->e[a->n];
    *e = (acc_entry){slab, row, a->pool + a->n * a->width};
    memset(e->g, 0, a->width * sizeof *e->g);
    a->slots[i] = (uint32_t)++a->n;
    return e->g;
}

size_t emb_touch_bound(const emb_table *t, size_t n)
{
    size_t per = 1;
    if (t->spec.method == EMB_QR)
        per = 2;
    else if (t->spec.method == EMB_ROBE)
        per = 2 * ((t->spec.dim + ROBE_BLOCK - 1) / ROBE_BLOCK);
    else if (t->spec.method == EMB_ADAPT)
        per = 5;   /* a row, the sketch's two counters, a map entry */
    else if (t->spec.method == EMB_TT)
        per = 3;   /* a slice of each core */
    return n * per * 2 + 1;
}

/* adapt: count id in the sketch; give it a row of its own when it has
 * been seen often enough and rows remain. Touches what it changes. */
static void adapt_count(emb_table *t, uint64_t id, emb_touch *touched,
                        size_t *nt, uint64_t *used)
{
    emb_slab *cms = &t->slab[2];
    uint64_t width = cms->rows / 2, est = UINT64_MAX;
    for (int k = 0; k < 2; k++) {
        uint64_t row = (uint64_t)k * width + hash2(t->spec.seed, id, 11 + k) %
                                                 width;
        uint32_t c;
        memcpy(&c, cms->data + row * 4, 4);
        if (c < UINT32_MAX)
            c++;
        memcpy(cms->data + row * 4, &c, 4);
        touched[(*nt)++] = (emb_touch){2, row};
        est = c < est ? c : est;
    }
    if (est < EMB_ADAPT_PROMOTE || *used >= t->slab[0].rows ||
        adapt_find(t, id) >= 0)
        return;
    /* a row of its own, starting from the shared row it had */
    uint64_t own = (*used)++;
    memcpy(f32_row(t, 0, own),
           f32_row(t, 1, hashed_row(t, id, t->slab[1].rows)),
           t->spec.dim * 4);
    touched[(*nt)++] = (emb_touch){0, own};
    emb_slab *map = &t->slab[3];
    uint64_t mask = map->rows - 1, i = mix64(id ^ t->spec.seed) & mask;
    for (;; i = (i + 1) & mask) {
        uint64_t key;
        memcpy(&key, map->data + i * 16, 8);
        if (key == MAP_EMPTY)
            break;
    }
    memcpy(map->data + i * 16, &id, 8);
    memcpy(map->data + i * 16 + 8, &own, 8);
    touched[(*nt)++] = (emb_touch){3, i};
}

static uint64_t adapt_used(const emb_table *t)
{
    const emb_slab *map = &t->slab[3];
    uint64_t used = 0;
    for (uint64_t i = 0; i < map->rows; i++) {
        uint64_t key;
        memcpy(&key, map->data + i * 16, 8);
        used += key != MAP_EMPTY;
    }
    return used;
}

int emb_check_data(const emb_table *t, char *err, size_t errlen)
{
    if (t->spec.method != EMB_ADAPT)
        return 0;
    /* the id map: each entry's own row within the own rows, and no more
     * entries than own rows, so that some stay empty (a lookup of an id
     * not in the map walks to an empty one) */
    const emb_slab *map = &t->slab[3];
    uint64_t used = adapt_used(t);
    if (used > t->slab[0].rows || used >= map->rows) {
        snprintf(err, errlen, "the id map holds %llu entries for %llu own "
                 "rows", (unsigned long long)used,
                 (unsigned long long)t->slab[0].rows);
        return -1;
    }
    for (uint64_t i = 0; i < map->rows; i++) {
        uint64_t key, own;
        memcpy(&key, map->data + i * 16, 8);
        memcpy(&own, map->data + i * 16 + 8, 8);
        if (key != MAP_EMPTY && own >= t->slab[0].rows) {
            snprintf(err, errlen, "the id map's entry %llu names own row "
                     "%llu of %llu", (unsigned long long)i,
                     (unsigned long long)own,
                     (unsigned long long)t->slab[0].rows);
            return -1;
        }
    }
    return 0;
}

/*
 * tt: the gradient g of row id, spread over its three slices. With
 * part[b] the shared partial product of (j0, j1) and
 * back[b] = sum over j2 of g[j0, j1, j2] c2[b][j2]:
 *   d c2[j2][b]     += part[b] g[j0, j1, j2]   (core 2 as [j2][b])
 *   d c1[a][j1][b]  += c0[j0][a] back[b]
 *   d c0[j0][a]     += sum over b of c1[a][j1][b] back[b]
 */
static void tt_scatter(const emb_table *t, acc_map *a, uint64_t id,
                       const float *g)
{
    uint64_t at[3];
    tt_slices(t, id, at);
    const float *c0 = f32_row(t, 0, at[0]), *c1 = f32_row(t, 1, at[1]),
                *c2 = f32_row(t, 2, at[2]);
    float *g0 = acc_get(a, 0, at[0]), *g1 = acc_get(a, 1, at[1]),
          *g2 = acc_get(a, 2, at[2]);
    uint32_t R = t->tt_r[1], d1 = t->tt_d[1], d2 = t->tt_d[2];
    float part[EMB_TT_RANK_MAX], back[EMB_TT_RANK_MAX];
    for (uint32_t j0 = 0; j0 < t->tt_d[0]; j0++) {
        for (uint32_t j1 = 0; j1 < d1; j1++) {
            tt_partial(t, c0, c1, j0, j1, part);
            const float *gj = g + (j0 * d1 + j1) * d2;
            memset(back, 0, R * sizeof *back);
            for (uint32_t j2 = 0; j2 < d2; j2++) {
                float *g2r = g2 + j2 * R;
                const float *c2r = c2 + j2 * R;
                for (uint32_t b = 0; b < R; b++) {
                    g2r[b] += part[b] * gj[j2];
                    back[b] += gj[j2] * c2r[b];
                }
            }
            for (uint32_t x = 0; x < R; x++) {
                const float *c1r = c1 + (x * d1 + j1) * R;
                float *g1r = g1 + (x * d1 + j1) * R, sum = 0;
                for (uint32_t b = 0; b < R; b++) {
                    g1r[b] += c0[j0 * R + x] * back[b];
                    sum += c1r[b] * back[b];
                }
                g0[j0 * R + x] += sum;
            }
        }
    }
}

/* Spread the gradient g of id's row over the stored rows. */
static void scatter(const emb_table *t, acc_map *a, uint64_t id,
                    const float *g)
{
    uint32_t d = t->spec.dim;
    switch (t->spec.method) {
    case EMB_HASH: {
        float *acc = acc_get(a, 0, hashed_row(t, id, t->slab[0].rows));
        for (uint32_t i = 0; i < d; i++)
            acc[i] += g[i];
        break;
    }
    case EMB_QR: {
        uint64_t q, r;
        qr_rows(t, id, &q, &r);
        const float *wq = f32_row(t, 0, q), *wr = f32_row(t, 1, r);
        float *aq = acc_get(a, 0, q), *ar = acc_get(a, 1, r);
        for (uint32_t i = 0; i < d; i++) {
            aq[i] += g[i] * wr[i];
            ar[i] += g[i] * wq[i];
        }
        break;
    }
    case EMB_ROBE:
        for (uint32_t j = 0; j < d; j++) {
            float sign;
            uint64_t at = robe_at(t, id, j, &sign);
            acc_get(a, 0, at / ROBE_ROW)[at % ROBE_ROW] += sign * g[j];
        }
        break;
    case EMB_TT:
        tt_scatter(t, a, id, g);
        break;
    case EMB_ADAPT: {
        int64_t own = adapt_find(t, id);
        float *acc = own >= 0 ? acc_get(a, 0, (uint64_t)own)
                              : acc_get(a, 1, hashed_row(t, id,
                                                          t->slab[1].rows));
        for (uint32_t i = 0; i < d; i++)
            acc[i] += g[i];
        break;
    }
    default: {  /* rows addressed by id */
        float *acc = acc_get(a, 0, id);
        for (uint32_t i = 0; i < d; i++)
            acc[i] += g[i];
    }
    }
}

/* The step for gradient g of n floats: SGD, or row-wise AdaGrad with
 * accumulator *state (NULL for SGD). Writes the step into step. */
static void step_of(const emb_table *t, const float *g, uint32_t n,
                    float *state, float *step)
{
    float lr = t->spec.lr;
    if (state) {
        float sq = 0;
        for (uint32_t i = 0; i < n; i++)
            sq += g[i] * g[i];
        *state += sq / (float)n;
        lr /= sqrtf(*state) + ADAGRAD_EPS;
    }
    for (uint32_t i = 0; i < n; i++)
        step[i] = lr * g[i];
}

/* Apply one gathered row's gradient. */
static void apply(emb_table *t, const acc_entry *e, float *w, float *step)
{
    int st = state_of(t, e->slab);
    float *state = st >= 0 ? f32_row(t, (uint32_t)st, e->row) : NULL;
    emb_slab *sl = &t->slab[e->slab];
    uint8_t *row = sl->data + e->row * sl->row_bytes;
    uint32_t d = t->spec.dim;
    enum emb_method m = t->spec.method;
    /* the row's floats: a row of the table, or robe's and tt's own */
    uint32_t n = m == EMB_ROBE || m == EMB_TT ? sl->row_bytes / 4 : d;
    step_of(t, e->g, n, state, step);
    if (is_quantized(m)) {
        dequantize(t, row, w);
        float s = qscale(row), top = qmax(t);
        float big = 0;
        for (uint32_t i = 0; i < d; i++) {
            w[i] -= step[i];
            big = fabsf(w[i]) > big ? fabsf(w[i]) : big;
        }
        if ((m == EMB_ALPT8 || m == EMB_ALPT16) && s > 0) {
            /* the learned scale (ALPT, after LSQ): the row that comes back
             * is s R(w / s), whose derivative in s is R(v) - v inside the
             * range and +-qmax where it clips; the loss gradient g stands
             * for the next one. */
            float gs = 0, mass = 0;
            for (uint32_t i = 0; i < d; i++) {
                float v = w[i] / s;
                float dv = v > top ? top : v < -top ? -top : rintf(v) - v;
                gs += e->g[i] * dv;
                mass += fabsf(e->g[i]) * top;
            }
            /* the step is taken on log s and normalised by the most the
             * gradient could say (all of it against a clip): a relative
             * step of at most the learning rate, whatever the scale of
             * the row or of the loss */
            float f = mass > 0 ? expf(-t->spec.lr * gs / mass) : 1.0f;
            s *= f < 0.5f ? 0.5f : f > 2.0f ? 2.0f : f;
        }
        if (m == EMB_INT8 || m == EMB_INT16)
            s = big > 0 ? big / top : s;
        quantize(t, w, s, hash2(t->spec.seed, t->step, e->row), row);
        return;
    }
    if (m == EMB_PRUNE) {
        prune_decode(t, row, w);
        for (uint32_t i = 0; i < d; i++)
            w[i] -= step[i];
        prune_encode(t, w, row);
        return;
    }
    float *p = (float *)(void *)row;
    for (uint32_t i = 0; i < n; i++)
        p[i] -= step[i];
}

long emb_update(emb_table *t, const uint64_t *ids, size_t n,
                const float *grads, emb_touch *touched)
{
    uint32_t d = t->spec.dim;
    size_t width = widest_row(t);
    size_t bound = emb_touch_bound(t, n);
    acc_map a = {0};
    float *w = qv_malloc(2 * width * sizeof *w);
    if (!w || acc_init(&a, bound, width) != 0) {
        qv_mem_free(w);
        acc_free(&a);
        return -1;
    }
    size_t nt = 0;
    if (t->spec.method == EMB_ADAPT) {
        uint64_t used = adapt_used(t);
        for (size_t i = 0; i < n; i++)
            adapt_count(t, ids[i], touched, &nt, &used);
    }
    for (size_t i = 0; i < n; i++)
        scatter(t, &a, ids[i], grads + i * d);
    t->step++;
    for (size_t i = 0; i < a.n; i++) {
        apply(t, &a.e[i], w, w + width);
        touched[nt++] = (emb_touch){a.e[i].slab, a.e[i].row};
        int st = state_of(t, a.e[i].slab);
        if (st >= 0)
            touched[nt++] = (emb_touch){(uint32_t)st, a.e[i].row};
    }
    qv_mem_free(w);
    acc_free(&a);
    return (long)nt;
}

void emb_set_row(emb_table *t, uint64_t id, const float *w)
{
    emb_slab *sl = &t->slab[0];
    uint8_t *row = sl->data + id * sl->row_bytes;
    enum emb_method m = t->spec.method;
    if (is_quantized(m)) {
        float big = 0;
        for (uint32_t i = 0; i < t->spec.dim; i++)
            big = fabsf(w[i]) > big ? fabsf(w[i]) : big;
        quantize(t, w, big > 0 ? big / qmax(t) : t->spec.init / qmax(t),
                 hash2(t->spec.seed, id, 13), row);
    } else if (m == EMB_PRUNE) {
        prune_encode(t, w, row);
    } else {
        memcpy(row, w, t->spec.dim * sizeof *w);
    }
}
