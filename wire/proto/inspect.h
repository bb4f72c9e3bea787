/*
 * inspect.h - what protobuf-c does not check in a received message: that
 * every string field is UTF-8 without a NUL byte.
 *
 * protobuf-c hands string fields over as C strings, so a NUL inside one
 * silently cuts it short ("a\0x" and "a\0y" both become "a"), and it
 * accepts bytes that are not UTF-8, which proto3 clients then cannot
 * decode when they read the text back. The raw bytes of the message are
 * walked with its descriptor instead, before anything uses the fields.
 */
#ifndef QV_WIRE_PROTO_INSPECT_H
#define QV_WIRE_PROTO_INSPECT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Check every string field, at any depth, of the serialized message of
 * type desc in buf. Returns 0 when all are well-formed (or the bytes are
 * not a message at all: unpacking reports that); else 1 and a message
 * naming the field's path, e.g. "upsert.documents[2].id holds a NUL byte
 * at offset 1".
 */
int inspect_strings(const ProtobufCMessageDescriptor *desc,
                    const uint8_t *buf, size_t len, char *why,
                    size_t why_size);

#endif
