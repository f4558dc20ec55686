/*
 * decode.h -- JSON / MessagePack event decoder (SPEC §3). Pure, no I/O, no
 * allocation. The input contract -- fields, limits, MessagePack mapping and
 * which rule gives which reason -- is schemas/README.md, "Input events", and
 * schemas/event.schema.json.
 */
#ifndef JD_DECODE_H
#define JD_DECODE_H

#include "event.h"

typedef enum {
    DECODE_AUTO = 0,   /* by the first byte: whitespace, printable ASCII or a UTF-8 BOM is JSON, else MessagePack */
    DECODE_JSON,
    DECODE_MSGPACK,
} decode_encoding_t;

/* Nesting is never followed deeper than this, whatever max_depth says: it
 * bounds the decoder's recursion (and so its stack). */
#define DECODE_DEPTH_HARD_MAX 128u

/* The latest event time accepted, 9999-12-31T23:59:59.999Z; the earliest is
 * the epoch (0). */
#define DECODE_MAX_TS_MS 253402300799999LL

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
    DECODE_E_SYNTAX,           /* not valid JSON / MessagePack: grammar, truncation, a declared length
                                  past the end, bad escape, invalid UTF-8, NUL in a kept string,
                                  non-string map key, trailing bytes, empty message */
    DECODE_E_NOT_OBJECT,       /* top level is not an object / map */
    DECODE_E_DEPTH,            /* nesting deeper than max_depth */
    DECODE_E_TYPE,             /* a known field has the wrong type */
    DECODE_E_MISSING,          /* a required field is absent, null or empty; score without metric */
    DECODE_E_BAD_EVENT_TYPE,   /* type is not one of the six */
    DECODE_E_ID_TOO_LONG,      /* an id longer than max_id_bytes (an empty one is MISSING) */
    DECODE_E_STRING_TOO_LONG,  /* a string longer than max_string_bytes, or a name > JD_NAME_MAX */
    DECODE_E_TOO_MANY_PROPERTIES,
    DECODE_E_BAD_TIMESTAMP,    /* not ISO-8601 with zone nor integer epoch ms, or outside 1970..9999 */
    DECODE_E_BAD_METRIC,       /* properties.metric unknown */
    DECODE_E_BAD_SCORE,        /* score missing with a metric, not an integer, or out of range */
    DECODE_E_BAD_SCOPE,        /* properties.scope not touchpoint/journey */
    DECODE_E_DUPLICATE_KEY,    /* a recognised key (field or known object) appears twice */
    DECODE__COUNT
} decode_status_t;

const char *decode_reason(decode_status_t st);

/*
 * Decode `len` bytes at `buf` into *ev. Strings are copied, NUL-terminated and
 * unescaped, into `arena` (caller-owned, `arena_cap` bytes; len + 64 is always
 * enough; too small an arena gives DECODE_E_OVERSIZE, never an overrun); *ev
 * points into it and owns nothing. On success errbuf is "". On error returns
 * the status and writes a detail naming the field into errbuf (may be NULL;
 * e.g. "messageId: 140 bytes, limit 128"); *ev is then not to be used.
 * Reentrant: no state outside the arguments.
 */
decode_status_t decode_event(const void *buf, size_t len, decode_encoding_t enc,
                             const decode_limits_t *lim, event_t *ev,
                             char *arena, size_t arena_cap,
                             char *errbuf, size_t errlen);

/* Parse an ISO-8601 / RFC 3339 time with a zone ("2026-01-05T10:00:00.123+01:00",
 * fraction truncated to ms) into epoch milliseconds. 0 / -1. No range check:
 * decode_event() also requires 0 <= ms <= DECODE_MAX_TS_MS. */
int decode_parse_time(const char *s, int64_t *ms);

#endif
