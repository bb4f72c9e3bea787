/*
 * frame.h - length-prefixed frames: a 4-byte big-endian length, then that
 * many bytes of one serialized protobuf message.
 */
#ifndef QV_WIRE_PROTO_FRAME_H
#define QV_WIRE_PROTO_FRAME_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER 4
#define FRAME_MAX_DEFAULT (64u << 20)

/* The allocator protobuf-c uses for decoding: the library's, so tests can
 * make it fail. */
extern ProtobufCAllocator qv_protobuf_allocator;
/* Whether it failed in this thread since the last reset (and reset). */
int protobuf_alloc_failed(int reset);

/* A growable byte buffer. */
typedef struct wbuf {
    uint8_t *data;
    size_t len, cap;
} wbuf;

int wbuf_reserve(wbuf *b, size_t extra);
void wbuf_release(wbuf *b);
/* Drop the first n bytes. */
void wbuf_consume(wbuf *b, size_t n);

/* Append msg as one frame. Returns 0, or -1 when out of memory. */
int frame_append(wbuf *b, const ProtobufCMessage *msg);

enum frame_result { FRAME_MORE = 0, FRAME_READY = 1, FRAME_TOO_LARGE = -1 };

/*
 * Look at the start of buf: FRAME_READY with the payload's place and size
 * when a whole frame is there, FRAME_MORE when more bytes are needed,
 * FRAME_TOO_LARGE when the length prefix exceeds max.
 */
enum frame_result frame_peek(const uint8_t *buf, size_t len, size_t max,
                             const uint8_t **payload, size_t *payload_len);

#endif
