/* test_util.h - helpers shared by the test programs. */
#ifndef QV_TEST_UTIL_H
#define QV_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quiver.h"

/* A fresh empty directory under $TMPDIR; free with tu_rmdir(). */
char *tu_mkdtemp(void);
/* Remove dir and the files directly inside it, then free the string. */
void tu_rmdir(char *dir);

/* Deterministic pseudo-random numbers (xorshift), per seed. */
uint64_t tu_rand(uint64_t *state);
/* A uniform float in [-1, 1). */
float tu_randf(uint64_t *state);
void tu_rand_vector(uint64_t *state, float *v, size_t dim);

/* Assert a call's status, printing the handle's message when it differs. */
#define assert_status(db, call, expected)                                  \
    do {                                                                   \
        qv_status st_ = (call);                                            \
        if (st_ != (expected))                                             \
            fail_msg("%s returned %s (%s), expected %s", #call,            \
                     qv_status_name(st_), qv_errmsg(db),                   \
                     qv_status_name(expected));                            \
    } while (0)

#define assert_ok(db, call) assert_status(db, call, QV_OK)

#endif
