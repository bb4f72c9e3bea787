/*
 * embedded.c - Quiver in-process: open a directory, create a collection,
 * upsert, get, search, delete, then close, reopen and find it all again.
 *
 * Built as any program using an installed Quiver would be
 * (tests/install.test.sh does it against a `make install` tree):
 *
 *   cc examples/embedded.c $(pkg-config --cflags --libs quiver) \
 *      -o embedded && ./embedded /tmp/quiver-example
 *
 * The tree's build compiles it with -Idb in place of pkg-config's flags.
 */
#include <stdio.h>
#include <stdlib.h>

#include <quiver.h>

#define CHECK(db, call)                                                   \
    do {                                                                  \
        qv_status st_ = (call);                                           \
        if (st_ != QV_OK) {                                               \
            fprintf(stderr, "%s failed: %s: %s\n", #call,                 \
                    qv_strerror(st_), qv_errmsg(db));                     \
            exit(1);                                                      \
        }                                                                 \
    } while (0)

static void search_and_print(qv_db *db, const float *query)
{
    qv_search_options opt = {.k = 2};
    qv_hits *hits;
    CHECK(db, qv_search(db, "fruit", query, 3, &opt, &hits));
    for (size_t i = 0; i < hits->count; i++)
        printf("  %s at %.3f\n", hits->hits[i].id,
               (double)hits->hits[i].distance);
    qv_free(hits);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "example-db";
    qv_db *db;
    CHECK(NULL, qv_open(dir, NULL, &db));

    qv_collection_config cfg = {.dim = 3, .metric = QV_METRIC_L2};
    qv_status st = qv_create_collection(db, "fruit", &cfg);
    if (st == QV_ERR_EXISTS) {           /* a second run: start over */
        CHECK(db, qv_drop_collection(db, "fruit"));
        st = qv_create_collection(db, "fruit", &cfg);
    }
    CHECK(db, st);

    float apple[] = {1, 0, 0}, pear[] = {0.9f, 0.1f, 0}, plum[] = {0, 0, 1};
    qv_doc docs[] = {
        {"apple", apple, 3, "{\"color\": \"red\"}"},
        {"pear", pear, 3, "{\"color\": \"green\"}"},
        {"plum", plum, 3, NULL},
    };
    CHECK(db, qv_upsert(db, "fruit", docs, 3));   /* one transaction */

    qv_record *rec;
    CHECK(db, qv_get(db, "fruit", "apple", &rec));
    printf("got %s with payload %s\n", rec->id, rec->payload);
    qv_free(rec);

    float query[] = {1, 0.05f, 0};
    printf("nearest to the query:\n");
    search_and_print(db, query);

    CHECK(db, qv_delete(db, "fruit", "pear"));
    qv_close(db);

    CHECK(NULL, qv_open(dir, NULL, &db));      /* everything is on disk */
    qv_collection_info info;
    CHECK(db, qv_describe_collection(db, "fruit", &info));
    printf("after reopen: %llu documents\n", (unsigned long long)info.count);
    search_and_print(db, query);
    qv_close(db);
    return 0;
}
