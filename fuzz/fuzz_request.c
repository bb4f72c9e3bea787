/*
 * fuzz_request.c - libFuzzer target: the bytes a client sends to quiverd.
 * The input is split into frames exactly as a connection does, and every
 * complete frame is decoded and run against a small embedded database
 * (collection "c", dim 4, a few documents), as the server would.
 * Backup and compact requests are decoded but not run: backup writes a
 * directory named by the input (a fuzzing run once left dozens in the
 * working tree), compact rewrites the file; the process also works in a
 * scratch directory, so a relative path lands there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire/server/dispatch.h"
#include "wire/proto/frame.h"
#include "fuzz/fuzz_util.h"
#include "db/quiver.h"
#include "wire/quiver.pb-c.h"

static qv_db *db;

static void open_db(void)
{
    const char *dir = fuzz_scratch_dir();
    if (qv_open(dir, &(qv_open_options){.flags = QV_OPEN_NOSYNC,
                                        .threads = 1}, &db) != QV_OK)
        abort();
    qv_create_collection(db, "c", &(qv_collection_config){.dim = 4, .M = 4});
    float v[4] = {1, 2, 3, 4};
    qv_doc docs[2] = {{"a", v, 4, "{\"x\":1}"}, {"b", v, 4, NULL}};
    qv_upsert(db, "c", docs, 2);
    if (chdir(dir) != 0)
        abort();
}

/* Whether a frame asks for a backup or a compaction (not run here). */
static int writes_files(const uint8_t *payload, size_t len)
{
    Quiver__V1__Request *req =
        quiver__v1__request__unpack(NULL, len, payload);
    int yes = req && (req->op_case == QUIVER__V1__REQUEST__OP_BACKUP ||
                      req->op_case == QUIVER__V1__REQUEST__OP_COMPACT);
    if (req)
        quiver__v1__request__free_unpacked(req, NULL);
    return yes;
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
        if (!writes_files(payload, len))
            dispatch_frame(db, &session, payload, len, &out);
        data += FRAME_HEADER + len;
        size -= FRAME_HEADER + len;
        out.len = 0;
    }
    wbuf_release(&out);
    return 0;
}
