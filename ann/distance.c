#include "ann/distance.h"

#include <float.h>
#include <math.h>

#include <simde/x86/avx512.h>

/* Sum of the 16 lanes of a 512-bit register. */
static inline float sum512(simde__m512 v)
{
    simde__m256 lo = simde_mm512_castps512_ps256(v);
    simde__m256 hi = simde_mm256_castpd_ps(
        simde_mm512_extractf64x4_pd(simde_mm512_castps_pd(v), 1));
    simde__m256 s8 = simde_mm256_add_ps(lo, hi);
    simde__m128 s4 = simde_mm_add_ps(simde_mm256_castps256_ps128(s8),
                                     simde_mm256_extractf128_ps(s8, 1));
    s4 = simde_mm_add_ps(s4, simde_mm_movehl_ps(s4, s4));
    s4 = simde_mm_add_ss(s4, simde_mm_movehdup_ps(s4));
    return simde_mm_cvtss_f32(s4);
}

/*
 * Two independent accumulators hide the latency of the fused multiply-add;
 * more did not pay on 784-d vectors, where the loads dominate.
 */
float dist_l2sq(const float *a, const float *b, size_t dim)
{
    simde__m512 acc0 = simde_mm512_setzero_ps();
    simde__m512 acc1 = simde_mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        simde__m512 d0 = simde_mm512_sub_ps(simde_mm512_loadu_ps(a + i),
                                            simde_mm512_loadu_ps(b + i));
        simde__m512 d1 = simde_mm512_sub_ps(simde_mm512_loadu_ps(a + i + 16),
                                            simde_mm512_loadu_ps(b + i + 16));
        acc0 = simde_mm512_fmadd_ps(d0, d0, acc0);
        acc1 = simde_mm512_fmadd_ps(d1, d1, acc1);
    }
    if (i + 16 <= dim) {
        simde__m512 d0 = simde_mm512_sub_ps(simde_mm512_loadu_ps(a + i),
                                            simde_mm512_loadu_ps(b + i));
        acc0 = simde_mm512_fmadd_ps(d0, d0, acc0);
        i += 16;
    }
    float sum = sum512(simde_mm512_add_ps(acc0, acc1));
    for (; i < dim; i++) {
        float d = a[i] - b[i];
        sum += d * d;
    }
    return sum;
}

float dist_dot(const float *a, const float *b, size_t dim)
{
    simde__m512 acc0 = simde_mm512_setzero_ps();
    simde__m512 acc1 = simde_mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        acc0 = simde_mm512_fmadd_ps(simde_mm512_loadu_ps(a + i),
                                    simde_mm512_loadu_ps(b + i), acc0);
        acc1 = simde_mm512_fmadd_ps(simde_mm512_loadu_ps(a + i + 16),
                                    simde_mm512_loadu_ps(b + i + 16), acc1);
    }
    if (i + 16 <= dim) {
        acc0 = simde_mm512_fmadd_ps(simde_mm512_loadu_ps(a + i),
                                    simde_mm512_loadu_ps(b + i), acc0);
        i += 16;
    }
    float sum = sum512(simde_mm512_add_ps(acc0, acc1));
    for (; i < dim; i++)
        sum += a[i] * b[i];
    return sum;
}

double dist_sqnorm(const float *v, size_t dim)
{
    double sum = 0;
    for (size_t i = 0; i < dim; i++)
        sum += (double)v[i] * v[i];
    return sum;
}

/*
 * Float sums of squares at least this large are exact enough for a norm:
 * a square that underflows loses at most 2^-149 (gradual underflow), so
 * dim of them at most 2^-135, a relative 2^-35 of the sum.
 */
#define SQNORM_SAFE_LOW 0x1p-100f

/* Whether the float sum of squares s can be used as it is. */
static inline int sqnorm_safe(float s)
{
    return s >= SQNORM_SAFE_LOW && s <= FLT_MAX;
}

int dist_normalize(const float *v, size_t dim, float *out)
{
    float s = dist_dot(v, v, dim);
    if (sqnorm_safe(s)) {
        /* the common case: the SIMD sum, as every version has done */
        float norm = sqrtf(s);
        for (size_t i = 0; i < dim; i++)
            out[i] = v[i] / norm;
        return 0;
    }
    /* the float sum overflowed or underflowed: in double it cannot */
    double norm = sqrt(dist_sqnorm(v, dim));
    if (!(norm > 0))
        return -1;
    for (size_t i = 0; i < dim; i++)
        out[i] = (float)((double)v[i] / norm);
    return 0;
}

float dist_cosine(const float *unit_q, const float *v, size_t dim)
{
    float s = dist_dot(v, v, dim);
    /* |q.v| <= |v|, so with |v|^2 finite the float dot is finite too */
    if (sqnorm_safe(s))
        return 1.0f - dist_dot(unit_q, v, dim) / sqrtf(s);
    double dot = 0, norm = sqrt(dist_sqnorm(v, dim));
    if (!(norm > 0))
        return 1.0f;  /* no direction (never stored since zeros are
                         refused): as far as an orthogonal vector */
    for (size_t i = 0; i < dim; i++)
        dot += (double)unit_q[i] * v[i];
    return (float)(1.0 - dot / norm);
}
