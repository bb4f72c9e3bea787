/*
 * json.h - jansson under the library's allocator.
 *
 * jansson has one pair of allocation functions per process. qv_json_adopt
 * (called by every qv_open) points them at common/alloc.c's counting and
 * injection, so that tests can make jansson's allocations fail too, and
 * so that a parse can tell that it ran short of memory: jansson 2.14 does
 * not report that as such (a parse that ran out of memory fails with an
 * empty or misleading message, or, worse, succeeds with a byte of a long
 * token dropped: a string or number silently changed; upstream issue
 * #362). Every parse of the library goes through qv_json_load, which
 * throws such a result away and answers ENOMEM.
 */
#ifndef QV_COMMON_JSON_H
#define QV_COMMON_JSON_H

#include <jansson.h>
#include <stddef.h>

/*
 * Route jansson's allocations through the library's allocator: once per
 * process, and only while jansson has its default functions (an
 * application that installed its own keeps them; then injection does not
 * reach jansson). Harmless to the rest of the process: the functions are
 * malloc and free unless a test arms injection.
 */
void qv_json_adopt(void);

/*
 * Parse len bytes of JSON text (json_loadb with flags). Returns 0 with
 * *out the value (json_decref it); ENOMEM when memory ran out during the
 * parse, whatever jansson answered; EINVAL when the text is not JSON, err
 * saying where and why. *out is NULL on failure. err may be NULL.
 *
 * An injected failure during a parse is recorded but not handed to
 * jansson, whose lexer does not survive one (it asserts, or reads past
 * its buffer); the parse then answers ENOMEM as if it had been.
 */
int qv_json_load(const char *text, size_t len, size_t flags,
                 json_error_t *err, json_t **out);

/* Free what jansson returned (json_dumps text) with jansson's free
 * function, whichever is installed. NULL is a no-op. */
void qv_json_free(void *ptr);

#endif
