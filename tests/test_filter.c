/* The filter language: what matches, and how a malformed filter is told. */
#include <stdlib.h>
#include <string.h>

#include "db/core/filter.h"
#include "tests/test_util.h"

static int matches(const char *filter, const char *payload)
{
    json_t *f, *p = payload ? json_loads(payload, 0, NULL) : NULL;
    if (filter_parse(NULL, filter, &f) != QV_OK)
        fail_msg("filter %s refused: %s", filter, qv_errmsg(NULL));
    int m = filter_match(f, p);
    json_decref(f);
    json_decref(p);
    return m;
}

static void test_operators(void **state)
{
    const char *doc = "{\"label\":3,\"price\":42.5,\"name\":\"Zoë\","
                      "\"tags\":{\"red\":true},\"none\":null}";
    struct { const char *filter; int expect; } cases[] = {
        {"{}", 1},
        {"{\"label\":3}", 1}, {"{\"label\":3.0}", 1}, {"{\"label\":4}", 0},
        {"{\"label\":\"3\"}", 0}, {"{\"name\":\"Zoë\"}", 1},
        {"{\"label\":3,\"name\":\"x\"}", 0},
        {"{\"label\":{\"$in\":[1,2,3]}}", 1}, {"{\"label\":{\"$nin\":[3]}}", 0},
        {"{\"price\":{\"$gte\":42.5,\"$lt\":50}}", 1},
        {"{\"price\":{\"$gt\":42.5}}", 0}, {"{\"price\":{\"$lte\":42.5}}", 1},
        {"{\"name\":{\"$gt\":\"Z\"}}", 1}, {"{\"name\":{\"$lt\":5}}", 0},
        {"{\"tags.red\":true}", 1}, {"{\"tags.blue\":{\"$exists\":true}}", 0},
        {"{\"missing\":{\"$exists\":false}}", 1},
        {"{\"missing\":{\"$ne\":1}}", 1}, {"{\"missing\":1}", 0},
        {"{\"missing\":{\"$gte\":0}}", 0}, {"{\"none\":null}", 1},
        {"{\"$and\":[{\"label\":3},{\"price\":{\"$lt\":100}}]}", 1},
        {"{\"$or\":[{\"label\":9},{\"name\":\"Zoë\"}]}", 1},
        {"{\"$or\":[{\"label\":9},{\"name\":\"x\"}]}", 0},
        {"{\"$not\":{\"label\":3}}", 0},
        {"{\"label\":{\"$ne\":3}}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (matches(cases[i].filter, doc) != cases[i].expect)
            fail_msg("%s on the document: expected %d", cases[i].filter,
                     cases[i].expect);
    }
    /* no payload at all: only "absent" filters match */
    assert_int_equal(matches("{\"a\":{\"$exists\":false}}", NULL), 1);
    assert_int_equal(matches("{\"a\":1}", NULL), 0);
}

static void test_malformed_filters_are_named(void **state)
{
    struct { const char *filter, *msg; } cases[] = {
        {"[1]", "expected an object"},
        {"{\"price\":{\"$foo\":1}}", "unknown operator '$foo' at 'price'"},
        {"{\"$xor\":[]}", "unknown operator '$xor'"},
        {"{\"$and\":[]}", "$and needs a non-empty array"},
        {"{\"$or\":{}}", "$or needs a non-empty array"},
        {"{\"label\":{\"$in\":3}}", "$in at 'label' needs an array"},
        {"{\"label\":{\"$in\":[[1]]}}", "non-scalar at 0"},
        {"{\"price\":{\"$gte\":true}}", "$gte at 'price' needs a number or a "
                                         "string"},
        {"{\"a\":{\"$exists\":1}}", "$exists at 'a' needs true or false"},
        {"{\"a\":[1,2]}", "'a' must be compared with a scalar"},
        {"{\"a\":{}}", "'a' has an empty operator object"},
        {"{\"\":1}", "empty field name"},
        {"{\"a\":1", "not valid JSON"},
        {"{\"a\":1,\"a\":2}", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *f = NULL;
        qv_status st = filter_parse(NULL, cases[i].filter, &f);
        if (st != QV_ERR_INVALID || !strstr(qv_errmsg(NULL), cases[i].msg))
            fail_msg("%s: got %s '%s', expected '%s'", cases[i].filter,
                     qv_status_name(st), qv_errmsg(NULL), cases[i].msg);
        assert_null(f);
    }
    /* a filter past QV_FILTER_MAX is refused before it is parsed */
    size_t n = QV_FILTER_MAX + 1;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "{\"a\":1}", 7);
    big[n] = '\0';
    json_t *f = NULL;
    assert_int_equal(filter_parse(NULL, big, &f), QV_ERR_INVALID);
    assert_non_null(strstr(qv_errmsg(NULL), "the limit is 1048576"));
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_malformed_filters_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
