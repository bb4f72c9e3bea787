/* Distance kernels against a double-precision reference. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ann/distance.h"
#include "tests/test_util.h"

static double ref_l2(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t i = 0; i < d; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

static double ref_dot(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t i = 0; i < d; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Every dimension from 1 to 100 and some large ones, so each tail path of
 * the kernels (32-wide, 16-wide, scalar) runs; offsets make the inputs
 * unaligned. */
static void test_kernels_match_reference(void **state)
{
    static const size_t big[] = {128, 255, 256, 784, 1000, 4099};
    uint64_t rng = 42;
    float *a = malloc(5000 * sizeof *a), *b = malloc(5000 * sizeof *b);
    tu_rand_vector(&rng, a, 5000);
    tu_rand_vector(&rng, b, 5000);
    for (size_t i = 0; i < 100 + sizeof big / sizeof *big; i++) {
        size_t d = i < 100 ? i + 1 : big[i - 100];
        for (size_t off = 0; off < 3; off++) {
            double l2 = ref_l2(a + off, b + 2 * off, d);
            double dot = ref_dot(a + off, b + 2 * off, d);
            double tol = 1e-5 * (double)d;
            assert_true(fabs(dist_l2sq(a + off, b + 2 * off, d) - l2) <= tol);
            assert_true(fabs(dist_dot(a + off, b + 2 * off, d) - dot) <= tol);
        }
    }
    free(a);
    free(b);
}

static void test_identical_vectors_have_zero_l2(void **state)
{
    uint64_t rng = 7;
    float v[784];
    tu_rand_vector(&rng, v, 784);
    assert_true(dist_l2sq(v, v, 784) == 0.0f);
}

/* Unit length from any finite vector that is not all zeros: near
 * FLT_MAX, where the float sum of squares overflows, and subnormal,
 * where it underflows to 0, the direction comes out the same. */
static void test_normalize_any_magnitude(void **state)
{
    static const float scales[] = {8e37f, 1e20f, 1.0f, 1e-20f, 1e-30f,
                                   1e-40f, 0x1p-149f};
    float dir[35], want[35], v[35], out[35];
    double norm = 0;
    for (int i = 0; i < 35; i++) {   /* 32-wide, 16-wide and scalar tail */
        dir[i] = (float)(i % 4 + 1) * (i % 3 ? 1 : -1);
        norm += (double)dir[i] * dir[i];
    }
    for (int i = 0; i < 35; i++)
        want[i] = (float)(dir[i] / sqrt(norm));
    for (size_t s = 0; s < sizeof scales / sizeof *scales; s++) {
        for (int i = 0; i < 35; i++)
            v[i] = dir[i] * scales[s];
        double sq = dist_sqnorm(v, 35);
        assert_true(isfinite(sq) && sq > 0);
        assert_int_equal(dist_normalize(v, 35, out), 0);
        for (int i = 0; i < 35; i++)
            if (fabsf(out[i] - want[i]) > 1e-6f)
                fail_msg("scale %g: [%d] is %g, expected %g",
                         (double)scales[s], i, out[i], want[i]);
        /* cosine distance to itself, from the unit query */
        assert_true(fabsf(dist_cosine(want, v, 35)) < 1e-6f);
        /* and to the opposite vector */
        for (int i = 0; i < 35; i++)
            v[i] = -v[i];
        assert_true(fabsf(dist_cosine(want, v, 35) - 2.0f) < 1e-6f);
        /* in place */
        assert_int_equal(dist_normalize(v, 35, v), 0);
        assert_true(fabsf(v[0] + want[0]) <= 1e-6f);
    }
    float zero[35] = {0};
    out[0] = 42;
    assert_int_equal(dist_normalize(zero, 35, out), -1);
    assert_true(out[0] == 42);   /* nothing written */
}

/* The double sum of squares never overflows or underflows for finite
 * floats: the largest dimension full of FLT_MAX, or one subnormal. */
static void test_sqnorm_in_double(void **state)
{
    enum { D = 16384 };
    float *v = malloc(D * sizeof *v);
    for (int i = 0; i < D; i++)
        v[i] = FLT_MAX;
    double want = (double)D * FLT_MAX * FLT_MAX;
    assert_true(fabs(dist_sqnorm(v, D) / want - 1) < 1e-12);
    memset(v, 0, D * sizeof *v);
    v[D - 1] = 0x1p-149f;
    assert_true(dist_sqnorm(v, D) == 0x1p-298);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_match_reference),
        cmocka_unit_test(test_identical_vectors_have_zero_l2),
        cmocka_unit_test(test_normalize_any_magnitude),
        cmocka_unit_test(test_sqnorm_in_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
