/* Distance kernels against a double-precision reference. */
#include <math.h>
#include <stdlib.h>

#include "distance.h"
#include "test_util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_match_reference),
        cmocka_unit_test(test_identical_vectors_have_zero_l2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
