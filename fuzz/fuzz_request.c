/*
 * fuzz_request.c - libFuzzer target: the bytes a client sends to quiverd.
 * The input is split into frames exactly as a connection does, and every
 * complete frame is decoded and run against a small embedded database
 * (collection "c", dim 4, a few documents), as the server would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "frame.h"
#include "quiver.h"

static qv_db *db;

static void open_db(void)
{
    char dir[] = "/tmp/quiver-fuzz-XXXXXX";
    if (!mkdtemp(dir) || qv_open(dir, &(qv_open_options){.flags =
                                                              QV_OPEN_NOSYNC,
                                                          .threads = 1},
                                 &db) != QV_OK)
        abort();
    qv_create_collection(db, "c", &(qv_collection_config){.dim = 4, .M = 4});
    float v[4] = {1, 2, 3, 4};
    qv_doc docs[2] = {{"a", v, 4, "{\"x\":1}"}, {"b", v, 4, NULL}};
    qv_upsert(db, "c", docs, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db)
        open_db();
    dispatch_session session = {0};
    wbuf out = {0};
    while (size > 0 && !session.close_after) {
        const uint8_t *payload;
        size_t len;
        enum frame_result r = frame_peek(data, size, 1u << 20, &payload, &len);
        if (r == FRAME_MORE)
            break;
        if (r == FRAME_TOO_LARGE) {
            dispatch_error(&out, QV_ERR_PROTOCOL, "too large");
            break;
        }
        dispatch_frame(db, &session, payload, len, &out);
        data += FRAME_HEADER + len;
        size -= FRAME_HEADER + len;
        out.len = 0;
    }
    wbuf_release(&out);
    return 0;
}
