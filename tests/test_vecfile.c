/* The texmex reader: formats, row counts, and malformed files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/test_util.h"
#include "cli/vecfile.h"

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* Write rows of dim elements of elem bytes; row bad_row gets bad_dim. */
static void write_file(const char *path, int rows, int dim, int elem,
                       int bad_row, int bad_dim, int truncate_bytes)
{
    FILE *f = fopen(path, "wb");
    for (int r = 0; r < rows; r++) {
        int32_t d = r == bad_row ? bad_dim : dim;
        fwrite(&d, 4, 1, f);
        for (int i = 0; i < d; i++) {
            if (elem == 1) {
                unsigned char b = (unsigned char)(r + i);
                fwrite(&b, 1, 1, f);
            } else {
                float x = (float)(r * 1000 + i);
                fwrite(&x, 4, 1, f);
            }
        }
    }
    long size = ftell(f);
    fclose(f);
    if (truncate_bytes)
        assert_int_equal(truncate(path, size - truncate_bytes), 0);
}

static void test_reads_fvecs_and_bvecs(void **state)
{
    char *dir = tu_mkdtemp(), *fv = path_in(dir, "a.fvecs"),
         *bv = path_in(dir, "a.bvecs"), err[256];
    write_file(fv, 10, 5, 4, -1, 0, 0);
    write_file(bv, 7, 3, 1, -1, 0, 0);
    vecfile *vf;
    float row[5];
    assert_int_equal(vecfile_open(fv, &vf, err, sizeof err), 0);
    assert_int_equal(vecfile_dim(vf), 5);
    assert_int_equal(vecfile_rows(vf), 10);
    for (int r = 0; r < 10; r++) {
        assert_int_equal(vecfile_read_floats(vf, row, err, sizeof err), 1);
        assert_true(row[4] == (float)(r * 1000 + 4));
    }
    assert_int_equal(vecfile_read_floats(vf, row, err, sizeof err), 0);
    vecfile_close(vf);
    assert_int_equal(vecfile_open(bv, &vf, err, sizeof err), 0);
    assert_int_equal(vecfile_rows(vf), 7);
    assert_int_equal(vecfile_read_floats(vf, row, err, sizeof err), 1);
    assert_int_equal(vecfile_read_floats(vf, row, err, sizeof err), 1);
    assert_true(row[2] == 3.0f);
    int32_t ints[3];
    assert_int_equal(vecfile_read_ints(vf, ints, err, sizeof err), -1);
    vecfile_close(vf);
    unlink(fv);
    unlink(bv);
    free(fv);
    free(bv);
    tu_rmdir(dir);
}

static void test_malformed_files_name_the_row(void **state)
{
    char *dir = tu_mkdtemp(), *p = path_in(dir, "bad.fvecs"), err[256];
    vecfile *vf;
    float row[8];

    write_file(p, 10, 8, 4, 5, 7, 0);  /* row 5 has dimension 7 */
    assert_int_equal(vecfile_open(p, &vf, err, sizeof err), 0);
    int rc;
    while ((rc = vecfile_read_floats(vf, row, err, sizeof err)) == 1)
        ;
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "row 5: dimension 7, expected 8"));
    vecfile_close(vf);

    write_file(p, 3, 8, 4, -1, 0, 5);  /* last row cut short */
    assert_int_equal(vecfile_open(p, &vf, err, sizeof err), 0);
    while ((rc = vecfile_read_floats(vf, row, err, sizeof err)) == 1)
        ;
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "row 2: truncated"));
    vecfile_close(vf);

    write_file(p, 0, 8, 4, -1, 0, 0);  /* empty */
    assert_int_equal(vecfile_open(p, &vf, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    write_file(p, 2, 8, 4, 0, -3, 0);  /* negative dimension */
    assert_int_equal(vecfile_open(p, &vf, err, sizeof err), -1);
    assert_non_null(strstr(err, "dimension -3"));

    assert_int_equal(vecfile_open("/nonexistent.fvecs", &vf, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(vecfile_open("x.txt", &vf, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown format"));
    unlink(p);
    free(p);
    tu_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_fvecs_and_bvecs),
        cmocka_unit_test(test_malformed_files_name_the_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
