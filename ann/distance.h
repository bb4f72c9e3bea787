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

#endif
