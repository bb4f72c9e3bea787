#include "common/json.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/* A qv_json_load is running in this thread, and an allocation in it
 * failed (or injection would have failed it). */
static _Thread_local int parsing;
static _Thread_local int parse_short;

static void *jansson_malloc(size_t size)
{
    int fail = qv_alloc_injected();
    if (fail && parsing) {
        parse_short = 1;   /* see qv_json_load: recorded, not handed on */
        fail = 0;
    }
    void *p = fail ? NULL : malloc(size ? size : 1);
    if (!p && parsing)
        parse_short = 1;
    return p;
}

static void adopt(void)
{
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    if (m == malloc && f == free)   /* jansson's defaults: nobody else's */
        json_set_alloc_funcs(jansson_malloc, free);
}

void qv_json_adopt(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, adopt);
}

int qv_json_load(const char *text, size_t len, size_t flags,
                 json_error_t *err, json_t **out)
{
    json_error_t local;
    json_error_t *e = err ? err : &local;
    memset(e, 0, sizeof *e);
    parsing = 1;
    parse_short = 0;
    *out = json_loadb(text, len, flags, e);
    parsing = 0;
    int rc = 0;
    if (parse_short || json_error_code(e) == json_error_out_of_memory)
        rc = ENOMEM;
    else if (!*out)
        rc = EINVAL;
    if (rc != 0) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

void qv_json_free(void *ptr)
{
    json_free_t f;
    json_get_alloc_funcs(NULL, &f);
    if (ptr)
        f(ptr);
}
