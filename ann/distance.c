#include "distance.h"

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
