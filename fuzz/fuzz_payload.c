/*
 * fuzz_payload.c - libFuzzer target: a document's JSON payload, through
 * the public upsert (validation, normalisation, storage) and get.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "db/quiver.h"

static qv_db *db;

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!db) {
        qv_open_options o = {.flags = QV_OPEN_NOSYNC, .threads = 1};
        if (qv_open(fuzz_scratch_dir(), &o, &db) != QV_OK)
            abort();
        qv_create_collection(db, "p", &(qv_collection_config){.dim = 2});
    }
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    float v[2] = {1, 2};
    qv_doc doc = {"doc", v, 2, text};
    if (qv_upsert(db, "p", &doc, 1) == QV_OK) {
        qv_record *r;
        if (qv_get(db, "p", "doc", &r) != QV_OK || !r->payload)
            abort();  /* an accepted payload must come back */
        qv_free(r);
    }
    free(text);
    return 0;
}
