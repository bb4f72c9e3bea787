/*
 * distance.h - distance kernels over float32 vectors.
 *
 * Written once with SIMDe's AVX-512/AVX2 intrinsics: compiled with
 * -march=native they are the native instructions, and on a CPU without
 * them (or on Arm) SIMDe maps them onto what the CPU has, so one source
 * serves every target.
 */
#ifndef QV_ANN_DISTANCE_H
#define QV_ANN_DISTANCE_H

#include <stddef.h>

/* Squared Euclidean distance. */
float dist_l2sq(const float *a, const float *b, size_t dim);
/* Inner product. */
float dist_dot(const float *a, const float *b, size_t dim);

/*
 * Squared Euclidean norm, summed in double: exact enough, and finite for
 * every finite float vector (at most 16,384 x FLT_MAX^2 = 2e81), so it can
 * judge vectors whose float norm would overflow or underflow.
 */
double dist_sqnorm(const float *v, size_t dim);

/*
 * v / |v| into out (which may be v), right for every finite vector that
 * is not all zeros: components near FLT_MAX and subnormal ones alike.
 * Returns -1, writing nothing, when v is all zeros.
 */
int dist_normalize(const float *v, size_t dim, float *out);

/*
 * Cosine distance 1 - q.v / |v| of a unit-length q and any finite v that
 * is not all zeros; in [0, 2] up to rounding.
 */
float dist_cosine(const float *unit_q, const float *v, size_t dim);

#endif
