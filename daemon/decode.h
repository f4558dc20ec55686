/*
 * decode.h -- JSON / MessagePack event decoder (SPEC §3). Pure, no I/O.
 */
#ifndef JD_DECODE_H
#define JD_DECODE_H

#include "event.h"

typedef enum {
    DECODE_AUTO = 0,   /* tell JSON ('{' after optional whitespace) from MessagePack (map) by the first byte */
    DECODE_JSON,
    DECODE_MSGPACK,
} decode_encoding_t;

/* Limits applied while decoding; every one is enforced before allocation. */
typedef struct decode_limits {
    size_t max_message_bytes;   /* whole value; larger -> DECODE_E_OVERSIZE */
    size_t max_id_bytes;        /* messageId, userId, anonymousId, previousId (<= JD_ID_MAX) */
    size_t max_string_bytes;    /* any other string value kept or skipped */
    uint32_t max_properties;    /* keys in properties */
    uint32_t max_depth;         /* nesting of objects/arrays anywhere */
} decode_limits_t;

/* Why an event was refused. decode_reason() gives the stable snake_case
 * name used in the dead-letter header and in counters. */
typedef enum {
    DECODE_OK = 0,
    DECODE_E_OVERSIZE,         /* message larger than max_message_bytes */
    DECODE_E_SYNTAX,           /* not valid JSON / MessagePack, trailing bytes, bad UTF-8 escape */
    DECODE_E_NOT_OBJECT,       /* top level is not an object / map */
    DECODE_E_DEPTH,            /* nesting deeper than max_depth */
    DECODE_E_TYPE,             /* a known field has the wrong type */
    DECODE_E_MISSING,          /* a required field is missing */
    DECODE_E_BAD_EVENT_TYPE,   /* type is not one of the six */
    DECODE_E_ID_TOO_LONG,      /* an id longer than max_id_bytes or empty */
    DECODE_E_STRING_TOO_LONG,  /* a string longer than max_string_bytes, or a name > JD_NAME_MAX */
    DECODE_E_TOO_MANY_PROPERTIES,
    DECODE_E_BAD_TIMESTAMP,    /* not ISO-8601 with zone nor integer epoch ms */
    DECODE_E_BAD_METRIC,       /* properties.metric unknown */
    DECODE_E_BAD_SCORE,        /* score missing, not an integer or out of range */
    DECODE_E_BAD_SCOPE,        /* properties.scope not touchpoint/journey */
    DECODE_E_DUPLICATE_KEY,    /* a recognised key appears twice */
    DECODE__COUNT
} decode_status_t;

const char *decode_reason(decode_status_t st);

/*
 * Decode `len` bytes at `buf` into *ev. Strings are copied, NUL-terminated and
 * unescaped, into `arena` (caller-owned, `arena_cap` bytes; len + 64 is always
 * enough). On error returns the status and writes a human-readable detail into
 * errbuf (e.g. "messageId: 140 bytes, limit 128").
 */
decode_status_t decode_event(const void *buf, size_t len, decode_encoding_t enc,
                             const decode_limits_t *lim, event_t *ev,
                             char *arena, size_t arena_cap,
                             char *errbuf, size_t errlen);

/* Parse an ISO-8601 time with a zone ("2026-01-05T10:00:00.123+01:00") into
 * epoch milliseconds. 0 / -1. */
int decode_parse_time(const char *s, int64_t *ms);

#endif
