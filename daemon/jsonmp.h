/*
 * jsonmp.h -- JSON documents as MessagePack (output.format: msgpack): the
 * same document, a JSON object becoming a map, an array an array, a string
 * a str (escapes decoded), an integer an int, any other number a float 64,
 * true/false/null themselves. For the documents journeyd writes itself (the
 * metric messages); strict all the same: anything that is not one JSON
 * value is refused. Pure: no I/O.
 */
#ifndef JD_JSONMP_H
#define JD_JSONMP_H

#include <msgpack.h>
#include <stddef.h>

#define JSONMP_DEPTH_MAX 32

/* Append the MessagePack form of json[0..len) to out: 0, or -1 with the
 * reason and byte offset in errbuf (out then holds a partial value). */
int jsonmp_pack(const char *json, size_t len, msgpack_sbuffer *out, char *errbuf, size_t errlen);

#endif
