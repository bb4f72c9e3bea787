#include "ann/codec.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>

#include "common/alloc.h"
#include "ann/distance.h"

#define PQ_CENTROIDS 256
#define PQ_ITERATIONS 12
/* k-means sees at most this many points per centroid (FAISS warns below
 * 39 and samples above 256); more only slows training */
#define PQ_POINTS_PER_CENTROID 100
/* sq8 clips each dimension's range to these quantiles of the sample, so
 * one outlier does not waste the 256 levels on empty space */
#define SQ8_CLIP 0.001
#define SQ8_SAMPLE 10000

struct codec {
    codec_spec spec;
    uint32_t dim;
    int dot;
    size_t code_bytes;
    /* trained parameters, one array (also the stored blob):
     *   sq8: lo[dim] then step[dim]
     *   pq:  centroids[M][256][dsub]
     *   bin: mean[dim] */
    float *params;
    size_t nparams;
    uint32_t dsub;   /* pq: dimensions per sub-space */
    /* pq, derived from params for building query tables: centroids
     * transposed per sub-space ([M][dsub][256]) and their squared norms
     * ([M][256]) */
    float *pq_t, *pq_norms;
};

/* ---- specs ---- */

static const char *const kind_names[] = {"none", "f16", "sq8", "pq", "bin",
                                         "prune"};

int codec_parse(const char *text, uint32_t dim, codec_spec *out, char *err,
                size_t errlen)
{
    const char *colon = strchr(text, ':');
    size_t name_len = colon ? (size_t)(colon - text) : strlen(text);
    int kind = -1;
    for (int i = 0; i < (int)(sizeof kind_names / sizeof *kind_names); i++) {
        if (strlen(kind_names[i]) == name_len &&
            !strncmp(text, kind_names[i], name_len))
            kind = i;
    }
    if (kind < 0) {
        snprintf(err, errlen, "unknown codec '%s' (none, f16, sq8, pq:M, bin, "
                 "prune:K)", text);
        return -1;
    }
    int takes_param = kind == CODEC_PQ || kind == CODEC_PRUNE;
    if (takes_param != (colon != NULL)) {
        snprintf(err, errlen, takes_param ? "codec %s needs a parameter "
                 "(%s:N)" : "codec %s takes no parameter", kind_names[kind],
                 kind_names[kind]);
        return -1;
    }
    unsigned long param = 0;
    if (colon) {
        char *end;
        if (colon[1] < '0' || colon[1] > '9') {
            snprintf(err, errlen, "codec %s: '%s' is not a number",
                     kind_names[kind], colon + 1);
            return -1;
        }
        param = strtoul(colon + 1, &end, 10);
        if (*end || param == 0 || param > dim) {
            snprintf(err, errlen, "codec %s: the parameter must be a whole "
                     "number from 1 to the dimension %u", kind_names[kind],
                     dim);
            return -1;
        }
        if (kind == CODEC_PQ && dim % param) {
            snprintf(err, errlen, "codec pq:%lu: the dimension %u is not a "
                     "multiple of %lu", param, dim, param);
            return -1;
        }
    }
    out->kind = (enum codec_kind)kind;
    out->param = (uint32_t)param;
    return 0;
}

void codec_format(const codec_spec *spec, char *buf)
{
    if (spec->kind == CODEC_PQ || spec->kind == CODEC_PRUNE)
        snprintf(buf, CODEC_SPEC_MAX, "%s:%u", kind_names[spec->kind],
                 spec->param);
    else
        snprintf(buf, CODEC_SPEC_MAX, "%s", kind_names[spec->kind]);
}

uint32_t codec_train_min(const codec_spec *spec)
{
    switch (spec->kind) {
    case CODEC_SQ8:
    case CODEC_BIN:
        return 1000;
    case CODEC_PQ:
        return 10000;   /* 39 points for each of 256 centroids, as FAISS */
    default:
        return 0;
    }
}

uint32_t codec_train_least(const codec_spec *spec)
{
    return spec->kind == CODEC_PQ ? PQ_CENTROIDS : 1;
}

size_t codec_spec_code_bytes(const codec_spec *spec, uint32_t dim)
{
    switch (spec->kind) {
    case CODEC_F16:
        return (size_t)dim * 2;
    case CODEC_SQ8:
        return dim;
    case CODEC_PQ:
        return spec->param;
    case CODEC_BIN:
        return (dim + 7u) / 8;
    case CODEC_PRUNE:
        return (size_t)spec->param * (sizeof(uint16_t) + sizeof(float));
    default:
        return (size_t)dim * sizeof(float);
    }
}

static size_t params_count(const codec_spec *spec, uint32_t dim)
{
    switch (spec->kind) {
    case CODEC_SQ8:
        return 2 * (size_t)dim;
    case CODEC_PQ:
        return (size_t)PQ_CENTROIDS * dim;
    case CODEC_BIN:
        return dim;
    default:
        return 0;
    }
}

static codec *codec_alloc(const codec_spec *spec, uint32_t dim, int dot)
{
    codec *c = qv_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->spec = *spec;
    c->dim = dim;
    c->dot = dot;
    c->code_bytes = codec_spec_code_bytes(spec, dim);
    c->dsub = spec->kind == CODEC_PQ ? dim / spec->param : 0;
    c->nparams = params_count(spec, dim);
    if (c->nparams && !(c->params = qv_calloc(c->nparams, sizeof(float)))) {
        qv_mem_free(c);
        return NULL;
    }
    return c;
}

void codec_free(codec *c)
{
    if (!c)
        return;
    qv_mem_free(c->pq_t);
    qv_mem_free(c->pq_norms);
    qv_mem_free(c->params);
    qv_mem_free(c);
}

size_t codec_code_bytes(const codec *c) { return c->code_bytes; }
const codec_spec *codec_get_spec(const codec *c) { return &c->spec; }

size_t codec_memory_bytes(const codec *c)
{
    size_t derived = c->pq_t ? (c->nparams + (size_t)c->spec.param *
                                                 PQ_CENTROIDS) * sizeof(float)
                             : 0;
    return sizeof *c + c->nparams * sizeof(float) + derived;
}

/* pq: the transposed centroids and norms query tables are built from.
 * -1 when out of memory. */
static int pq_derive(codec *c)
{
    uint32_t M = c->spec.param, ds = c->dsub, K = PQ_CENTROIDS;
    c->pq_t = qv_malloc((size_t)M * ds * K * sizeof *c->pq_t);
    c->pq_norms = qv_malloc((size_t)M * K * sizeof *c->pq_norms);
    if (!c->pq_t || !c->pq_norms)
        return -1;
    for (uint32_t m = 0; m < M; m++) {
        for (uint32_t k = 0; k < K; k++) {
            const float *ck = c->params + ((size_t)m * K + k) * ds;
            float norm = 0;
            for (uint32_t j = 0; j < ds; j++) {
                c->pq_t[((size_t)m * ds + j) * K + k] = ck[j];
                norm += ck[j] * ck[j];
            }
            c->pq_norms[(size_t)m * K + k] = norm;
        }
    }
    return 0;
}

/* ---- training ---- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The k-th smallest of v[0..n) (v is reordered): Wirth's selection. */
static float select_kth(float *v, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
    while (lo < hi) {
        float pivot = v[kk];
        ptrdiff_t i = lo, j = hi;
        do {
            while (v[i] < pivot)
                i++;
            while (pivot < v[j])
                j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        } while (i <= j);
        if (j < kk)
            lo = i;
        if (kk < i)
            hi = j;
    }
    return v[kk];
}

static int train_sq8(codec *c, const float *sample, size_t n)
{
    size_t m = n < SQ8_SAMPLE ? n : SQ8_SAMPLE;
    float *col = qv_malloc(m * sizeof *col);
    if (!col)
        return -1;
    float *lo = c->params, *step = c->params + c->dim;
    size_t klo = (size_t)(SQ8_CLIP * (double)(m - 1));
    size_t khi = m - 1 - klo;
    for (uint32_t d = 0; d < c->dim; d++) {
        /* an even spread of the sample: row i * n / m */
        for (size_t i = 0; i < m; i++)
            col[i] = sample[(i * n / m) * c->dim + d];
        float low = select_kth(col, m, klo);
        float high = select_kth(col, m, khi);
        lo[d] = low;
        step[d] = (high - low) / 255.0f;
    }
    qv_mem_free(col);
    return 0;
}

static int train_bin(codec *c, const float *sample, size_t n)
{
    double *sum = qv_calloc(c->dim, sizeof *sum);
    if (!sum)
        return -1;
    for (size_t i = 0; i < n; i++)
        for (uint32_t d = 0; d < c->dim; d++)
            sum[d] += sample[i * c->dim + d];
    for (uint32_t d = 0; d < c->dim; d++)
        c->params[d] = (float)(sum[d] / (double)n);
    qv_mem_free(sum);
    return 0;
}

/* k-means of one pq sub-space. */
typedef struct kmeans_job {
    const codec *c;
    const float *sample;
    size_t n;          /* points used */
    size_t stride;     /* sample rows between used points */
    uint32_t m;        /* the sub-space */
    uint64_t seed;
    int failed;
} kmeans_job;

/* Index of the centroid nearest x (dsub floats) among cent[256][dsub],
 * given their squared norms: argmin of |c|^2 - 2 x.c. */
static uint32_t nearest_centroid(const float *x, const float *cent_t,
                                 const float *norms, uint32_t dsub,
                                 float *acc)
{
    memcpy(acc, norms, PQ_CENTROIDS * sizeof *acc);
    for (uint32_t j = 0; j < dsub; j++) {
        float xj = -2.0f * x[j];
        const float *row = cent_t + (size_t)j * PQ_CENTROIDS;
        for (uint32_t k = 0; k < PQ_CENTROIDS; k++)
            acc[k] += xj * row[k];
    }
    uint32_t best = 0;
    for (uint32_t k = 1; k < PQ_CENTROIDS; k++)
        if (acc[k] < acc[best])
            best = k;
    return best;
}

static int kmeans_subspace(kmeans_job *job)
{
    const codec *c = job->c;
    uint32_t dsub = c->dsub, K = PQ_CENTROIDS;
    size_t n = job->n;
    float *x = qv_malloc(n * dsub * sizeof *x);
    float *cent_t = qv_malloc((size_t)K * dsub * sizeof *cent_t);
    float *sums = qv_malloc((size_t)K * dsub * sizeof *sums);
    float *norms = qv_malloc(K * sizeof *norms), *acc = qv_malloc(K * 4);
    uint32_t *count = qv_malloc(K * sizeof *count);
    uint32_t *assign = qv_malloc(n * sizeof *assign);
    int rc = -1;
    if (!x || !cent_t || !sums || !norms || !acc || !count || !assign)
        goto out;
    for (size_t i = 0; i < n; i++)
        memcpy(x + i * dsub, job->sample + i * job->stride * c->dim +
               (size_t)job->m * dsub, dsub * sizeof *x);
    float *cent = c->params + (size_t)job->m * K * dsub;
    /* initial centroids: K distinct sample points, drawn with the seed */
    uint64_t rng = job->seed ^ (0x5851f42d4c957f2dull * (job->m + 1));
    for (uint32_t k = 0; k < K; k++)
        assign[k] = k;
    for (uint32_t k = 0; k < K; k++) {
        size_t r = k + splitmix64(&rng) % (n - k);
        uint32_t t = assign[k];
        assign[k] = r < K ? assign[r] : (uint32_t)r;
        if (r < K)
            assign[r] = t;
        memcpy(cent + (size_t)k * dsub, x + (size_t)assign[k] * dsub,
               dsub * sizeof *x);
    }
    for (int it = 0; it < PQ_ITERATIONS; it++) {
        for (uint32_t k = 0; k < K; k++) {
            norms[k] = dist_dot(cent + (size_t)k * dsub, cent + (size_t)k * dsub,
                                dsub);
            for (uint32_t j = 0; j < dsub; j++)
                cent_t[(size_t)j * K + k] = cent[(size_t)k * dsub + j];
        }
        memset(sums, 0, (size_t)K * dsub * sizeof *sums);
        memset(count, 0, K * sizeof *count);
        for (size_t i = 0; i < n; i++) {
            uint32_t k = nearest_centroid(x + i * dsub, cent_t, norms, dsub,
                                          acc);
            count[k]++;
            for (uint32_t j = 0; j < dsub; j++)
                sums[(size_t)k * dsub + j] += x[i * dsub + j];
        }
        uint32_t biggest = 0;
        for (uint32_t k = 1; k < K; k++)
            if (count[k] > count[biggest])
                biggest = k;
        for (uint32_t k = 0; k < K; k++) {
            float *ck = cent + (size_t)k * dsub;
            if (count[k] == 0) {
                /* an empty cluster splits the biggest: a copy of its
                 * centroid, nudged apart (as FAISS does) */
                const float *cb = sums + (size_t)biggest * dsub;
                for (uint32_t j = 0; j < dsub; j++) {
                    float v = cb[j] / (float)count[biggest];
                    float nudge = (splitmix64(&rng) & 1) ? 1.0f / 1024
                                                         : -1.0f / 1024;
                    ck[j] = v * (1.0f + nudge) + nudge;
                }
                continue;
            }
            for (uint32_t j = 0; j < dsub; j++)
                ck[j] = sums[(size_t)k * dsub + j] / (float)count[k];
        }
    }
    rc = 0;
out:
    qv_mem_free(x);
    qv_mem_free(cent_t);
    qv_mem_free(sums);
    qv_mem_free(norms);
    qv_mem_free(acc);
    qv_mem_free(count);
    qv_mem_free(assign);
    return rc;
}

typedef struct pq_pool {
    kmeans_job *jobs;
    uint32_t njobs;
    pthread_mutex_t lock;
    uint32_t next;
} pq_pool;

static void *pq_worker(void *arg)
{
    pq_pool *pool = arg;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        uint32_t m = pool->next++;
        pthread_mutex_unlock(&pool->lock);
        if (m >= pool->njobs)
            return NULL;
        pool->jobs[m].failed = kmeans_subspace(&pool->jobs[m]) != 0;
    }
}

static int train_pq(codec *c, const float *sample, size_t n, uint64_t seed,
                    unsigned threads)
{
    size_t want = (size_t)PQ_CENTROIDS * PQ_POINTS_PER_CENTROID;
    size_t stride = n > want ? n / want : 1;
    size_t used = n / stride;
    uint32_t M = c->spec.param;
    kmeans_job *jobs = qv_calloc(M, sizeof *jobs);
    if (!jobs)
        return -1;
    for (uint32_t m = 0; m < M; m++)
        jobs[m] = (kmeans_job){c, sample, used, stride, m, seed, 0};
    pq_pool pool = {jobs, M, PTHREAD_MUTEX_INITIALIZER, 0};
    pthread_t tid[64];
    unsigned started = 0;
    if (threads > 64)
        threads = 64;
    for (unsigned t = 1; t < threads; t++) {
        if (pthread_create(&tid[started], NULL, pq_worker, &pool) == 0)
            started++;
    }
    pq_worker(&pool);
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    int rc = 0;
    for (uint32_t m = 0; m < M; m++)
        rc |= jobs[m].failed ? -1 : 0;
    qv_mem_free(jobs);
    return rc;
}

codec *codec_train(const codec_spec *spec, uint32_t dim, int dot,
                   const float *sample, size_t n, uint64_t seed,
                   unsigned threads)
{
    codec *c = codec_alloc(spec, dim, dot);
    if (!c)
        return NULL;
    int rc = 0;
    if (spec->kind == CODEC_SQ8)
        rc = n ? train_sq8(c, sample, n) : -1;
    else if (spec->kind == CODEC_BIN)
        rc = n ? train_bin(c, sample, n) : -1;
    else if (spec->kind == CODEC_PQ)
        rc = n >= PQ_CENTROIDS ? train_pq(c, sample, n, seed, threads) : -1;
    if (rc == 0 && spec->kind == CODEC_PQ)
        rc = pq_derive(c);
    if (rc != 0) {
        codec_free(c);
        return NULL;
    }
    return c;
}

/* ---- f16 ---- */

static void f16_encode(const float *v, uint32_t dim, uint8_t *code)
{
    uint32_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        simde__m128i h = simde_mm256_cvtps_ph(simde_mm256_loadu_ps(v + i),
                                              SIMDE_MM_FROUND_TO_NEAREST_INT);
        simde_mm_storeu_si128((simde__m128i *)(code + 2 * i), h);
    }
    if (i < dim) {
        float tail[8] = {0};
        uint8_t out[16];
        memcpy(tail, v + i, (dim - i) * sizeof *tail);
        simde__m128i h = simde_mm256_cvtps_ph(simde_mm256_loadu_ps(tail),
                                              SIMDE_MM_FROUND_TO_NEAREST_INT);
        simde_mm_storeu_si128((simde__m128i *)out, h);
        memcpy(code + 2 * i, out, 2 * (dim - i));
    }
}

/* Eight halves at code + 2i as floats; past dim reads as zero. */
static inline simde__m256 f16_load8(const uint8_t *code, uint32_t i,
                                    uint32_t dim)
{
    if (i + 8 <= dim)
        return simde_mm256_cvtph_ps(
            simde_mm_loadu_si128((const simde__m128i *)(code + 2 * i)));
    uint8_t tail[16] = {0};
    memcpy(tail, code + 2 * i, 2 * (dim - i));
    return simde_mm256_cvtph_ps(simde_mm_loadu_si128((simde__m128i *)tail));
}

static void f16_decode(const uint8_t *code, uint32_t dim, float *out)
{
    for (uint32_t i = 0; i < dim; i += 8) {
        float tmp[8];
        simde_mm256_storeu_ps(tmp, f16_load8(code, i, dim));
        memcpy(out + i, tmp, (dim - i < 8 ? dim - i : 8) * sizeof *tmp);
    }
}

static float sum256(simde__m256 v)
{
    float t[8];
    simde_mm256_storeu_ps(t, v);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

/* Squared L2 (dot = 0) or inner product of floats q and halves code. */
static float f16_query(const float *q, const uint8_t *code, uint32_t dim,
                       int dot)
{
    simde__m256 acc = simde_mm256_setzero_ps();
    for (uint32_t i = 0; i < dim; i += 8) {
        simde__m256 c = f16_load8(code, i, dim), x;
        if (i + 8 <= dim) {
            x = simde_mm256_loadu_ps(q + i);
        } else {
            float tail[8] = {0};
            memcpy(tail, q + i, (dim - i) * sizeof *tail);
            x = simde_mm256_loadu_ps(tail);
        }
        if (dot) {
            acc = simde_mm256_fmadd_ps(x, c, acc);
        } else {
            simde__m256 d = simde_mm256_sub_ps(x, c);
            acc = simde_mm256_fmadd_ps(d, d, acc);
        }
    }
    return sum256(acc);
}

static float f16_codes(const uint8_t *a, const uint8_t *b, uint32_t dim,
                       int dot)
{
    simde__m256 acc = simde_mm256_setzero_ps();
    for (uint32_t i = 0; i < dim; i += 8) {
        simde__m256 x = f16_load8(a, i, dim), y = f16_load8(b, i, dim);
        if (dot) {
            acc = simde_mm256_fmadd_ps(x, y, acc);
        } else {
            simde__m256 d = simde_mm256_sub_ps(x, y);
            acc = simde_mm256_fmadd_ps(d, d, acc);
        }
    }
    return sum256(acc);
}

/* ---- sq8 ---- */

static void sq8_encode(const codec *c, const float *v, uint8_t *code)
{
    const float *lo = c->params, *step = c->params + c->dim;
    for (uint32_t d = 0; d < c->dim; d++) {
        float x = step[d] > 0 ? (v[d] - lo[d]) / step[d] : 0.0f;
        x = x < 0 ? 0 : x > 255 ? 255 : x;
        code[d] = (uint8_t)lrintf(x);
    }
}

static void sq8_decode(const codec *c, const uint8_t *code, float *out)
{
    const float *lo = c->params, *step = c->params + c->dim;
    for (uint32_t d = 0; d < c->dim; d++)
        out[d] = lo[d] + step[d] * code[d];
}

/*
 * sum over d of (a[d] - code[d] * b[d])^2, or with dot of a[d] * code[d]:
 * the prepared query a and the steps b turn both metrics into this.
 */
#if defined(__AVX512F__)
/*
 * This SIMDe release lacks the 512-bit byte-to-int widening, so where the
 * compiler targets AVX-512 the native intrinsics do it: 16 dimensions a
 * step instead of 8, which halves the cost of the kernel that a graph
 * walk over sq8 codes spends most of its time in.
 */
#include <immintrin.h>

static inline __m512 sq8_load16(const uint8_t *code)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
        _mm_loadu_si128((const __m128i *)(const void *)code)));
}

/* sq8_kernel's sum over dimensions i..i+15, added to acc. */
static inline __m512 sq8_step16(const float *a, const float *b,
                                const uint8_t *code, uint32_t i, int dot,
                                __m512 acc)
{
    __m512 c = sq8_load16(code + i), x = _mm512_loadu_ps(a + i);
    if (dot)
        return _mm512_fmadd_ps(x, c, acc);
    __m512 r = _mm512_fnmadd_ps(c, _mm512_loadu_ps(b + i), x);
    return _mm512_fmadd_ps(r, r, acc);
}
#endif

static float sq8_kernel(const float *a, const float *b, const uint8_t *code,
                        uint32_t dim, int dot)
{
    uint32_t i = 0;
    float sum = 0;
#if defined(__AVX512F__)
    /* four sums, so that each step's FMA need not wait for the last */
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (; i + 64 <= dim; i += 64) {
        for (int j = 0; j < 4; j++)
            acc[j] = sq8_step16(a, b, code, i + 16 * (uint32_t)j, dot, acc[j]);
    }
    for (; i + 16 <= dim; i += 16)
        acc[0] = sq8_step16(a, b, code, i, dot, acc[0]);
    sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]),
                                             _mm512_add_ps(acc[2], acc[3])));
#endif
    simde__m256 acc8 = simde_mm256_setzero_ps();
    for (; i + 8 <= dim; i += 8) {
        simde__m256 c = simde_mm256_cvtepi32_ps(simde_mm256_cvtepu8_epi32(
            simde_mm_loadl_epi64((const simde__m128i *)(code + i))));
        simde__m256 x = simde_mm256_loadu_ps(a + i);
        if (dot) {
            acc8 = simde_mm256_fmadd_ps(x, c, acc8);
        } else {
            simde__m256 r = simde_mm256_fnmadd_ps(
                c, simde_mm256_loadu_ps(b + i), x);
            acc8 = simde_mm256_fmadd_ps(r, r, acc8);
        }
    }
    sum += sum256(acc8);
    for (; i < dim; i++) {
        if (dot) {
            sum += a[i] * code[i];
        } else {
            float r = a[i] - code[i] * b[i];
            sum += r * r;
        }
    }
    return sum;
}

/* sum over d of ((x[d] - y[d]) * step[d])^2: two codes' squared L2. */
static float sq8_l2_codes(const uint8_t *x, const uint8_t *y,
                          const float *step, uint32_t dim)
{
    uint32_t i = 0;
    float sum = 0;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= dim; i += 16) {
        __m512 r = _mm512_mul_ps(_mm512_sub_ps(sq8_load16(x + i),
                                               sq8_load16(y + i)),
                                 _mm512_loadu_ps(step + i));
        acc = _mm512_fmadd_ps(r, r, acc);
    }
    sum = _mm512_reduce_add_ps(acc);
#endif
    for (; i < dim; i++) {
        float r = ((float)x[i] - (float)y[i]) * step[i];
        sum += r * r;
    }
    return sum;
}

/* ---- pq ---- */

static const float *pq_centroid(const codec *c, uint32_t m, uint32_t k)
{
    return c->params + ((size_t)m * PQ_CENTROIDS + k) * c->dsub;
}

static void pq_encode(const codec *c, const float *v, uint8_t *code)
{
    for (uint32_t m = 0; m < c->spec.param; m++) {
        const float *x = v + (size_t)m * c->dsub;
        uint32_t best = 0;
        float bestd = INFINITY;
        for (uint32_t k = 0; k < PQ_CENTROIDS; k++) {
            float d = dist_l2sq(x, pq_centroid(c, m, k), c->dsub);
            if (d < bestd) {
                bestd = d;
                best = k;
            }
        }
        code[m] = (uint8_t)best;
    }
}

static void pq_decode(const codec *c, const uint8_t *code, float *out)
{
    for (uint32_t m = 0; m < c->spec.param; m++)
        memcpy(out + (size_t)m * c->dsub, pq_centroid(c, m, code[m]),
               c->dsub * sizeof *out);
}

static float pq_lookup(const float *lut, const uint8_t *code, uint32_t M)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    uint32_t m = 0;
    for (; m + 4 <= M; m += 4) {
        s0 += lut[(size_t)m * PQ_CENTROIDS + code[m]];
        s1 += lut[(size_t)(m + 1) * PQ_CENTROIDS + code[m + 1]];
        s2 += lut[(size_t)(m + 2) * PQ_CENTROIDS + code[m + 2]];
        s3 += lut[(size_t)(m + 3) * PQ_CENTROIDS + code[m + 3]];
    }
    for (; m < M; m++)
        s0 += lut[(size_t)m * PQ_CENTROIDS + code[m]];
    return (s0 + s1) + (s2 + s3);
}

/* ---- bin ---- */

static void bin_encode(const codec *c, const float *v, uint8_t *code)
{
    memset(code, 0, c->code_bytes);
    for (uint32_t d = 0; d < c->dim; d++)
        if (v[d] > c->params[d])
            code[d >> 3] |= (uint8_t)(1u << (d & 7));
}

static void bin_decode(const codec *c, const uint8_t *code, float *out)
{
    for (uint32_t d = 0; d < c->dim; d++) {
        float mean = c->params[d];
        float delta = fabsf(mean) * 1e-3f + 1.0f;
        out[d] = code[d >> 3] >> (d & 7) & 1 ? mean + delta : mean - delta;
    }
}

static float hamming(const uint8_t *a, const uint8_t *b, size_t bytes)
{
    uint64_t bits = 0;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        bits += (uint64_t)__builtin_popcountll(x ^ y);
    }
    for (; i < bytes; i++)
        bits += (uint64_t)__builtin_popcount((unsigned)(a[i] ^ b[i]));
    return (float)bits;
}

/* ---- prune: K (index u16, value f32) pairs, sorted by index ---- */

static uint16_t *prune_idx(uint8_t *code) { return (uint16_t *)code; }

static void prune_get(const codec *c, const uint8_t *code, uint32_t i,
                      uint16_t *idx, float *val)
{
    uint32_t K = c->spec.param;
    memcpy(idx, code + (size_t)i * 2, 2);
    memcpy(val, code + (size_t)K * 2 + (size_t)i * 4, 4);
}

static void prune_set(const codec *c, uint8_t *code, uint32_t i, uint16_t idx,
                      float val)
{
    uint32_t K = c->spec.param;
    memcpy(code + (size_t)i * 2, &idx, 2);
    memcpy(code + (size_t)K * 2 + (size_t)i * 4, &val, 4);
}

/* Whether entry (ia, va) ranks below (ib, vb): smaller magnitude, or equal
 * magnitude and a higher index (so ties keep the lower index). */
static int prune_below(uint16_t ia, float va, uint16_t ib, float vb)
{
    float ma = fabsf(va), mb = fabsf(vb);
    return ma < mb || (ma == mb && ia > ib);
}

static void prune_sift(const codec *c, uint8_t *code, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        uint16_t im, il, ir;
        float vm, vl, vr;
        prune_get(c, code, m, &im, &vm);
        if (l < n) {
            prune_get(c, code, l, &il, &vl);
            if (prune_below(il, vl, im, vm)) {
                m = l;
                im = il;
                vm = vl;
            }
        }
        if (r < n) {
            prune_get(c, code, r, &ir, &vr);
            if (prune_below(ir, vr, im, vm))
                m = r;
        }
        if (m == i)
            return;
        uint16_t ii, jj;
        float vi, vj;
        prune_get(c, code, i, &ii, &vi);
        prune_get(c, code, m, &jj, &vj);
        prune_set(c, code, i, jj, vj);
        prune_set(c, code, m, ii, vi);
        i = m;
    }
}

static int by_u16(const void *a, const void *b)
{
    uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return (x > y) - (x < y);
}

/* The K largest magnitudes, found with a min-heap kept in the code
 * itself, then ordered by index. */
static void prune_encode(const codec *c, const float *v, uint8_t *code)
{
    uint32_t K = c->spec.param;
    for (uint32_t d = 0; d < K; d++)
        prune_set(c, code, d, (uint16_t)d, v[d]);
    for (uint32_t i = K / 2; i-- > 0;)
        prune_sift(c, code, K, i);
    for (uint32_t d = K; d < c->dim; d++) {
        uint16_t i0;
        float v0;
        prune_get(c, code, 0, &i0, &v0);
        if (prune_below(i0, v0, (uint16_t)d, v[d])) {
            prune_set(c, code, 0, (uint16_t)d, v[d]);
            prune_sift(c, code, K, 0);
        }
    }
    /* order by index: sort the indexes, then read the values again */
    qsort(prune_idx(code), K, sizeof(uint16_t), by_u16);
    for (uint32_t i = 0; i < K; i++) {
        uint16_t idx;
        memcpy(&idx, code + (size_t)i * 2, 2);
        prune_set(c, code, i, idx, v[idx]);
    }
}

static void prune_decode(const codec *c, const uint8_t *code, float *out)
{
    memset(out, 0, c->dim * sizeof *out);
    for (uint32_t i = 0; i < c->spec.param; i++) {
        uint16_t idx;
        float val;
        prune_get(c, code, i, &idx, &val);
        out[idx] = val;
    }
}

/* The indexes of a code read from storage: each within the dimension
 * (prune_decode and prune_query index vectors with them). */
static int prune_check(const codec *c, const uint8_t *code)
{
    for (uint32_t i = 0; i < c->spec.param; i++) {
        uint16_t idx;
        float val;
        prune_get(c, code, i, &idx, &val);
        if (idx >= c->dim)
            return -1;
    }
    return 0;
}

/* q is dense (with |q|^2 at q[dim]); the code sparse. */
static float prune_query(const codec *c, const float *q, const uint8_t *code)
{
    float sum = 0;
    for (uint32_t i = 0; i < c->spec.param; i++) {
        uint16_t idx;
        float val;
        prune_get(c, code, i, &idx, &val);
        sum += c->dot ? q[idx] * val : val * val - 2 * q[idx] * val;
    }
    return c->dot ? 1.0f - sum : q[c->dim] + sum;
}

static float prune_codes(const codec *c, const uint8_t *a, const uint8_t *b)
{
    uint32_t K = c->spec.param, i = 0, j = 0;
    float sum = 0;
    while (i < K || j < K) {
        uint16_t ia = UINT16_MAX, ib = UINT16_MAX;
        float va = 0, vb = 0;
        if (i < K)
            prune_get(c, a, i, &ia, &va);
        if (j < K)
            prune_get(c, b, j, &ib, &vb);
        if (i < K && (j >= K || ia < ib)) {
            sum += c->dot ? 0 : va * va;
            i++;
        } else if (j < K && (i >= K || ib < ia)) {
            sum += c->dot ? 0 : vb * vb;
            j++;
        } else {
            sum += c->dot ? va * vb : (va - vb) * (va - vb);
            i++;
            j++;
        }
    }
    return c->dot ? 1.0f - sum : sum;
}

/* ---- the codec interface ---- */

void codec_encode(const codec *c, const float *v, uint8_t *code)
{
    switch (c->spec.kind) {
    case CODEC_F16:
        f16_encode(v, c->dim, code);
        break;
    case CODEC_SQ8:
        sq8_encode(c, v, code);
        break;
    case CODEC_PQ:
        pq_encode(c, v, code);
        break;
    case CODEC_BIN:
        bin_encode(c, v, code);
        break;
    case CODEC_PRUNE:
        prune_encode(c, v, code);
        break;
    default:
        memcpy(code, v, c->dim * sizeof *v);
    }
}

void codec_decode(const codec *c, const uint8_t *code, float *out)
{
    switch (c->spec.kind) {
    case CODEC_F16:
        f16_decode(code, c->dim, out);
        break;
    case CODEC_SQ8:
        sq8_decode(c, code, out);
        break;
    case CODEC_PQ:
        pq_decode(c, code, out);
        break;
    case CODEC_BIN:
        bin_decode(c, code, out);
        break;
    case CODEC_PRUNE:
        prune_decode(c, code, out);
        break;
    default:
        memcpy(out, code, c->dim * sizeof *out);
    }
}

size_t codec_query_bytes(const codec *c)
{
    switch (c->spec.kind) {
    case CODEC_PQ:
        return (size_t)c->spec.param * PQ_CENTROIDS * sizeof(float);
    case CODEC_BIN:
        return c->code_bytes;
    default:
        return ((size_t)c->dim + 1) * sizeof(float);
    }
}

void codec_query_prepare(const codec *c, const float *q, void *qbuf)
{
    float *out = qbuf;
    switch (c->spec.kind) {
    case CODEC_SQ8: {
        /* l2: q - lo, compared with code * step; dot: q * step, plus the
         * constant q . lo at out[dim] */
        const float *lo = c->params, *step = c->params + c->dim;
        out[c->dim] = 0;
        for (uint32_t d = 0; d < c->dim; d++) {
            if (c->dot) {
                out[d] = q[d] * step[d];
                out[c->dim] += q[d] * lo[d];
            } else {
                out[d] = q[d] - lo[d];
            }
        }
        break;
    }
    case CODEC_PQ:
        /* per sub-space, all 256 centroids at once over the transposed
         * table: l2 = |c|^2 - 2 q.c + |q|^2, dot = q.c */
        for (uint32_t m = 0; m < c->spec.param; m++) {
            const float *x = q + (size_t)m * c->dsub;
            float *lut = out + (size_t)m * PQ_CENTROIDS, qn = 0;
            const float *ct = c->pq_t + (size_t)m * c->dsub * PQ_CENTROIDS;
            memset(lut, 0, PQ_CENTROIDS * sizeof *lut);
            for (uint32_t j = 0; j < c->dsub; j++) {
                float xj = x[j];
                qn += xj * xj;
                for (uint32_t k = 0; k < PQ_CENTROIDS; k++)
                    lut[k] += xj * ct[(size_t)j * PQ_CENTROIDS + k];
            }
            if (c->dot)
                continue;
            const float *norms = c->pq_norms + (size_t)m * PQ_CENTROIDS;
            for (uint32_t k = 0; k < PQ_CENTROIDS; k++)
                lut[k] = norms[k] - 2.0f * lut[k] + qn;
        }
        break;
    case CODEC_BIN:
        bin_encode(c, q, qbuf);
        break;
    default:
        memcpy(out, q, c->dim * sizeof *q);
        out[c->dim] = dist_dot(q, q, c->dim);
    }
}

float codec_query_distance(const codec *c, const void *qbuf,
                           const uint8_t *code)
{
    const float *q = qbuf;
    switch (c->spec.kind) {
    case CODEC_F16: {
        float s = f16_query(q, code, c->dim, c->dot);
        return c->dot ? 1.0f - s : s;
    }
    case CODEC_SQ8:
        if (c->dot)
            return 1.0f - (q[c->dim] + sq8_kernel(q, NULL, code, c->dim, 1));
        return sq8_kernel(q, c->params + c->dim, code, c->dim, 0);
    case CODEC_PQ: {
        float s = pq_lookup(q, code, c->spec.param);
        return c->dot ? 1.0f - s : s;
    }
    case CODEC_BIN:
        return hamming(qbuf, code, c->code_bytes);
    case CODEC_PRUNE:
        return prune_query(c, q, code);
    default: {
        const float *v = (const float *)(const void *)code;
        return c->dot ? 1.0f - dist_dot(q, v, c->dim)
                      : dist_l2sq(q, v, c->dim);
    }
    }
}

static float sq8_codes(const codec *c, const uint8_t *a, const uint8_t *b)
{
    const float *lo = c->params, *step = c->params + c->dim;
    if (!c->dot)
        return sq8_l2_codes(a, b, step, c->dim);
    float sum = 0;
    for (uint32_t d = 0; d < c->dim; d++) {
        if (c->dot) {
            sum += (lo[d] + a[d] * step[d]) * (lo[d] + b[d] * step[d]);
        } else {
            float r = ((float)a[d] - (float)b[d]) * step[d];
            sum += r * r;
        }
    }
    return c->dot ? 1.0f - sum : sum;
}

static float pq_codes(const codec *c, const uint8_t *a, const uint8_t *b)
{
    float sum = 0;
    for (uint32_t m = 0; m < c->spec.param; m++) {
        const float *x = pq_centroid(c, m, a[m]), *y = pq_centroid(c, m, b[m]);
        sum += c->dot ? dist_dot(x, y, c->dsub) : dist_l2sq(x, y, c->dsub);
    }
    return c->dot ? 1.0f - sum : sum;
}

int codec_check_code(const codec *c, const uint8_t *code)
{
    return c->spec.kind == CODEC_PRUNE ? prune_check(c, code) : 0;
}

float codec_code_distance(const codec *c, const uint8_t *a, const uint8_t *b)
{
    switch (c->spec.kind) {
    case CODEC_F16: {
        float s = f16_codes(a, b, c->dim, c->dot);
        return c->dot ? 1.0f - s : s;
    }
    case CODEC_SQ8:
        return sq8_codes(c, a, b);
    case CODEC_PQ:
        return pq_codes(c, a, b);
    case CODEC_BIN:
        return hamming(a, b, c->code_bytes);
    case CODEC_PRUNE:
        return prune_codes(c, a, b);
    default: {
        const float *x = (const float *)(const void *)a;
        const float *y = (const float *)(const void *)b;
        return c->dot ? 1.0f - dist_dot(x, y, c->dim)
                      : dist_l2sq(x, y, c->dim);
    }
    }
}

/* ---- stored form ---- */

size_t codec_blob_size(const codec *c) { return c->nparams * sizeof(float); }

void codec_blob_write(const codec *c, void *buf)
{
    if (c->nparams)
        memcpy(buf, c->params, c->nparams * sizeof(float));
}

codec *codec_blob_load(const codec_spec *spec, uint32_t dim, int dot,
                       const void *blob, size_t len, int *malformed)
{
    *malformed = len != params_count(spec, dim) * sizeof(float);
    if (*malformed)
        return NULL;
    codec *c = codec_alloc(spec, dim, dot);
    if (!c)
        return NULL;
    if (len)
        memcpy(c->params, blob, len);
    for (size_t i = 0; i < c->nparams; i++) {
        if (!isfinite(c->params[i])) {
            *malformed = 1;
            codec_free(c);
            return NULL;
        }
    }
    if (spec->kind == CODEC_PQ && pq_derive(c) != 0) {
        codec_free(c);
        return NULL;
    }
    return c;
}
