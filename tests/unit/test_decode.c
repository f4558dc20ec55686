/*
 * test_decode.c -- the event decoder: every field in both encodings, every
 * error path, hostile MessagePack, and the sample events of
 * tests/data/events/ (the same samples schemas/event.schema.json is checked
 * against by tests/unit/schema_check.py).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

static decode_limits_t lim = {
    .max_message_bytes = 65536, .max_id_bytes = 128, .max_string_bytes = 1024,
    .max_properties = 64, .max_depth = 16,
};
static event_t ev;
static char arena[70000];
static char err[256];

static decode_status_t dec(const char *json) {
    return decode_event(json, strlen(json), DECODE_AUTO, &lim, &ev, arena, sizeof(arena), err, sizeof(err));
}

static decode_status_t decn(const void *buf, size_t len) {
    return decode_event(buf, len, DECODE_AUTO, &lim, &ev, arena, sizeof(arena), err, sizeof(err));
}

#define FULL_JSON                                                                              \
    "{\"messageId\":\"m-1\",\"type\":\"track\",\"event\":\"Survey Answered\",\"userId\":\"u-1\","  \
    "\"anonymousId\":\"a-1\",\"timestamp\":\"2026-01-05T10:00:00.250+01:00\",\"name\":\"Home\","   \
    "\"context\":{\"channel\":\"web\",\"page\":{\"path\":\"/products/x\",\"title\":\"T\"},"        \
    "\"traits\":{\"segment\":\"ctx-seg\"},\"ip\":[1,2,{\"a\":null}]},"                             \
    "\"properties\":{\"touchpoint\":\"checkout\",\"phase\":\"purchase\",\"metric\":\"nps\","       \
    "\"score\":9,\"scope\":\"journey\",\"segment\":\"prop-seg\",\"sku\":\"s\",\"price\":1.5e2},"   \
    "\"traits\":{\"segment\":\"trait-seg\"},\"extra\":true}"

static void check_full(void) {
    cr_assert_eq(ev.type, EV_TRACK);
    cr_assert_str_eq(ev.message_id, "m-1");
    cr_assert_str_eq(ev.event, "Survey Answered");
    cr_assert_str_eq(ev.user_id, "u-1");
    cr_assert_str_eq(ev.anonymous_id, "a-1");
    cr_assert_null(ev.previous_id);
    cr_assert_eq(ev.ts_ms, 1767603600250LL);
    cr_assert_str_eq(ev.name, "Home");
    cr_assert_str_eq(ev.channel, "web");
    cr_assert_str_eq(ev.page_path, "/products/x");
    cr_assert_str_eq(ev.touchpoint, "checkout");
    cr_assert_str_eq(ev.phase, "purchase");
    cr_assert_eq(ev.metric, EV_METRIC_NPS);
    cr_assert_eq(ev.score, 9);
    cr_assert_eq(ev.scope, EV_SCOPE_JOURNEY);
    cr_assert_str_eq(ev.segment, "prop-seg"); /* properties.segment wins */
    cr_assert_eq(ev.n_properties, 8);
    cr_assert_str_eq(event_key(&ev), "u-1");
}

Test(decode, json_every_field) {
    cr_assert_eq(dec(FULL_JSON), DECODE_OK, "%s", err);
    check_full();
}

static void mp_str(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void mp_kv(msgpack_packer *pk, const char *k, const char *v) {
    mp_str(pk, k);
    mp_str(pk, v);
}

Test(decode, msgpack_every_field) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 11);
    mp_kv(&pk, "messageId", "m-1");
    mp_kv(&pk, "type", "track");
    mp_kv(&pk, "event", "Survey Answered");
    mp_kv(&pk, "userId", "u-1");
    mp_kv(&pk, "anonymousId", "a-1");
    mp_str(&pk, "timestamp");
    msgpack_pack_int64(&pk, 1767603600250LL);
    mp_kv(&pk, "name", "Home");
    mp_str(&pk, "context");
    msgpack_pack_map(&pk, 3);
    mp_kv(&pk, "channel", "web");
    mp_str(&pk, "page");
    msgpack_pack_map(&pk, 1);
    mp_kv(&pk, "path", "/products/x");
    mp_str(&pk, "ip");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    mp_str(&pk, "properties");
    msgpack_pack_map(&pk, 8);
    mp_kv(&pk, "touchpoint", "checkout");
    mp_kv(&pk, "phase", "purchase");
    mp_kv(&pk, "metric", "nps");
    mp_str(&pk, "score");
    msgpack_pack_double(&pk, 9.0);
    mp_kv(&pk, "scope", "journey");
    mp_kv(&pk, "segment", "prop-seg");
    mp_kv(&pk, "sku", "s");
    mp_str(&pk, "price");
    msgpack_pack_float(&pk, 150.0f);
    mp_str(&pk, "traits");
    msgpack_pack_map(&pk, 1);
    mp_kv(&pk, "segment", "trait-seg");
    mp_str(&pk, "extra");
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "\x00\x01", 2);
    cr_assert_eq(decn(sb.data, sb.size), DECODE_OK, "%s", err);
    check_full();
    msgpack_sbuffer_destroy(&sb);
}

Test(decode, msgpack_timestamp_extension) {
    /* fixext 4, type -1: 32-bit seconds */
    const unsigned char m32[] = {0x84, 0xa9, 'm', 'e', 's', 's', 'a', 'g', 'e', 'I', 'd', 0xa1, 'x',
                                 0xa4, 't', 'y', 'p', 'e', 0xa4, 'p', 'a', 'g', 'e',
                                 0xa6, 'u', 's', 'e', 'r', 'I', 'd', 0xa1, 'u',
                                 0xa9, 't', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p',
                                 0xd6, 0xff, 0x69, 0x5b, 0x8e, 0x10};
    cr_assert_eq(decn(m32, sizeof(m32)), DECODE_OK, "%s", err);
    cr_assert_eq(ev.ts_ms, 0x695b8e10LL * 1000);
}

Test(decode, heartbeat_needs_only_a_timestamp) {
    cr_assert_eq(dec("{\"type\":\"heartbeat\",\"timestamp\":1767600000000}"), DECODE_OK, "%s", err);
    cr_assert_eq(ev.type, EV_HEARTBEAT);
    cr_assert_eq(ev.ts_ms, 1767600000000LL);
    cr_assert_null(ev.message_id);
}

Test(decode, unicode_escapes) {
    cr_assert_eq(dec("{\"messageId\":\"m\\u00fc\\ud83d\\ude00\\n\",\"type\":\"page\",\"anonymousId\":\"a\","
                     "\"timestamp\":\"2026-01-05T10:00:00Z\"}"), DECODE_OK, "%s", err);
    cr_assert_str_eq(ev.message_id, "m\xc3\xbc\xf0\x9f\x98\x80\n");
    cr_assert_str_eq(ev.anonymous_id, "a");
    cr_assert_str_eq(event_key(&ev), "a");
    cr_assert_eq(dec("{\"messageId\":\"\\ud83d\",\"type\":\"page\"}"), DECODE_E_SYNTAX);
    cr_assert_eq(dec("{\"messageId\":\"\\x41\",\"type\":\"page\"}"), DECODE_E_SYNTAX);
}

Test(decode, iso_timestamps) {
    static const struct { const char *ts; long long ms; } ok[] = {
        {"2026-01-05T10:00:00Z", 1767607200000LL},
        {"2026-01-05T10:00:00.5Z", 1767607200500LL},
        {"2026-01-05T10:00:00.123456-02:30", 1767607200123LL + 9000000LL},
        {"2024-02-29T00:00:00Z", 1709164800000LL},
        {"1970-01-01T00:00:00Z", 0},
    };
    char buf[256];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":\"%s\"}", ok[i].ts);
        cr_assert_eq(dec(buf), DECODE_OK, "%s: %s", ok[i].ts, err);
        cr_assert_eq(ev.ts_ms, ok[i].ms, "%s", ok[i].ts);
    }
    const char *bad[] = {"2026-01-05T10:00:00", "yesterday", "2026-02-29T00:00:00Z",
                         "2026-13-01T00:00:00Z", "2026-01-05T10:00:00+1:00", "2026-01-05T10:00:00Zjunk"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":\"%s\"}", bad[i]);
        cr_assert_eq(dec(buf), DECODE_E_BAD_TIMESTAMP, "%s", bad[i]);
    }
    cr_assert_eq(dec("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1.5}"), DECODE_E_BAD_TIMESTAMP);
    cr_assert_eq(dec("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":-1}"), DECODE_E_BAD_TIMESTAMP);
    cr_assert_eq(dec("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":true}"), DECODE_E_TYPE);
    cr_assert_str_eq(err, "timestamp: expected a string or an integer");
}

#define EV(extra) "{\"messageId\":\"m\",\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"timestamp\":1000" extra "}"

typedef struct bad { const char *json; decode_status_t st; const char *msg; } bad_t;

Test(decode, every_error_path_json) {
    static const bad_t cases[] = {
        {"", DECODE_E_SYNTAX, "message: empty"},
        {"{\"messageId\":\"m\",", DECODE_E_SYNTAX, NULL},
        {"{\"a\":1}x", DECODE_E_SYNTAX, "JSON: trailing bytes after the object at byte 7"},
        {"{\"a\":01}", DECODE_E_SYNTAX, NULL},
        {"{\"a\":\"x\ny\"}", DECODE_E_SYNTAX, NULL},
        {"{\"a\":tru}", DECODE_E_SYNTAX, NULL},
        {"[1,2]", DECODE_E_NOT_OBJECT, NULL},
        {"{\"a\":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}", DECODE_E_DEPTH, "nesting deeper than 16"},
        {"{\"messageId\":5,\"type\":\"page\"}", DECODE_E_TYPE, "messageId: expected a string"},
        {"{\"context\":\"web\"}", DECODE_E_TYPE, "context: expected an object, got a string"},
        {"{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"timestamp\":1}", DECODE_E_MISSING, "messageId: required"},
        {"{\"messageId\":\"m\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "type: required"},
        {"{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\"}", DECODE_E_MISSING, "timestamp: required"},
        {"{\"messageId\":\"m\",\"type\":\"page\",\"timestamp\":1}", DECODE_E_MISSING, "userId or anonymousId: required"},
        {"{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"\",\"timestamp\":1}", DECODE_E_MISSING, "userId or anonymousId: required"},
        {"{\"messageId\":\"m\",\"type\":\"track\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "event: required for track"},
        {"{\"messageId\":\"m\",\"type\":\"identify\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "identify: needs both userId and anonymousId"},
        {"{\"messageId\":\"m\",\"type\":\"alias\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "alias: needs userId and previousId"},
        {"{\"messageId\":\"m\",\"type\":\"click\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_BAD_EVENT_TYPE, NULL},
        {EV(",\"properties\":{\"metric\":\"nps\",\"score\":11}"), DECODE_E_BAD_SCORE, "properties.score: 11 out of range 0..10 for nps (integers only)"},
        {EV(",\"properties\":{\"metric\":\"nps\",\"score\":9.5}"), DECODE_E_BAD_SCORE, NULL},
        {EV(",\"properties\":{\"metric\":\"csat\",\"score\":0}"), DECODE_E_BAD_SCORE, NULL},
        {EV(",\"properties\":{\"metric\":\"ces\",\"score\":8}"), DECODE_E_BAD_SCORE, NULL},
        {EV(",\"properties\":{\"metric\":\"ces\"}"), DECODE_E_BAD_SCORE, "properties.score: required for ces"},
        {EV(",\"properties\":{\"score\":5}"), DECODE_E_MISSING, "properties.metric: required with properties.score"},
        {EV(",\"properties\":{\"score\":\"5\"}"), DECODE_E_TYPE, "properties.score: expected a number"},
        {EV(",\"properties\":{\"metric\":\"mood\",\"score\":5}"), DECODE_E_BAD_METRIC, NULL},
        {EV(",\"properties\":{\"scope\":\"session\"}"), DECODE_E_BAD_SCOPE, NULL},
        {"{\"messageId\":\"m\",\"messageId\":\"n\"}", DECODE_E_DUPLICATE_KEY, "messageId: given twice"},
        {EV(",\"properties\":{\"touchpoint\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"),
         DECODE_E_STRING_TOO_LONG, "properties.touchpoint: 64 bytes, limit 63"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        decode_status_t st = dec(cases[i].json);
        cr_assert_eq(st, cases[i].st, "case %zu (%s): got %s: %s", i, cases[i].json, decode_reason(st), err);
        if (cases[i].msg) cr_assert_str_eq(err, cases[i].msg, "case %zu", i);
    }
}

Test(decode, limits) {
    char big[2000];
    memset(big, 'x', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    char buf[4096];
    snprintf(buf, sizeof(buf), "{\"messageId\":\"%.*s\"}", 129, big);
    cr_assert_eq(dec(buf), DECODE_E_ID_TOO_LONG);
    cr_assert_str_eq(err, "messageId: 129 bytes, limit 128");
    snprintf(buf, sizeof(buf), "{\"junk\":\"%.*s\"}", 1025, big);
    cr_assert_eq(dec(buf), DECODE_E_STRING_TOO_LONG);
    snprintf(buf, sizeof(buf), "{\"%.*s\":1}", 1025, big);
    cr_assert_eq(dec(buf), DECODE_E_STRING_TOO_LONG);
    decode_limits_t small = lim;
    small.max_message_bytes = 64;
    cr_assert_eq(decode_event(FULL_JSON, strlen(FULL_JSON), DECODE_AUTO, &small, &ev, arena, sizeof(arena), err, sizeof(err)),
                 DECODE_E_OVERSIZE);
    small = lim;
    small.max_properties = 7;
    cr_assert_eq(decode_event(FULL_JSON, strlen(FULL_JSON), DECODE_AUTO, &small, &ev, arena, sizeof(arena), err, sizeof(err)),
                 DECODE_E_TOO_MANY_PROPERTIES);
    cr_assert_str_eq(err, "properties: more than 7 keys");
}

/* Declared lengths far beyond the bytes present are refused, never followed. */
Test(decode, hostile_msgpack) {
    static const struct { const char *bytes; size_t len; } cases[] = {
        {"\xdd\x40\x00\x00\x00\x01\x02\x03\x04\x05", 10},   /* array32 of 1 Gi elements */
        {"\xdf\x40\x00\x00\x00\xa1x\x01\x02\x03", 10},       /* map32 of 1 Gi pairs */
        {"\x81\xa4type\xdb\x40\x00\x00\x00tr", 12},          /* str32 of 1 GiB */
        {"\x81\xa1x\xc6\xff\xff\xff\xff\x00", 9},            /* bin32 of 4 GiB */
        {"\x81\xa1x\xc9\x7f\xff\xff\xff\x01", 9},            /* ext32 */
        {"\x81\xa1x\xdc\xff\xff", 6},                        /* array16 of 65535 */
        {"\x81", 1},
        {"\xc1", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        decode_status_t st = decn(cases[i].bytes, cases[i].len);
        cr_assert_eq(st, DECODE_E_SYNTAX, "case %zu: %s", i, decode_reason(st));
    }
    cr_assert_eq(decn("\x93\x01\x02\x03", 4), DECODE_E_NOT_OBJECT);
    cr_assert_eq(decn("\x81\x01\x02", 3), DECODE_E_SYNTAX); /* non-string key */
    cr_assert_str_eq(err, "MessagePack: map keys must be strings");
}

Test(decode, forced_encoding) {
    const char *j = EV("");
    cr_assert_eq(decode_event(j, strlen(j), DECODE_MSGPACK, &lim, &ev, arena, sizeof(arena), err, sizeof(err)),
                 DECODE_E_NOT_OBJECT); /* '{' is a MessagePack positive fixint */
    cr_assert_eq(decode_event(j, strlen(j), DECODE_JSON, &lim, &ev, arena, sizeof(arena), err, sizeof(err)), DECODE_OK);
    cr_assert_eq(decode_event("\x80", 1, DECODE_JSON, &lim, &ev, arena, sizeof(arena), err, sizeof(err)), DECODE_E_SYNTAX);
}

Test(decode, null_means_absent) {
    cr_assert_eq(dec("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":null,\"anonymousId\":\"a\","
                     "\"timestamp\":1,\"context\":null,\"properties\":{\"touchpoint\":null}}"), DECODE_OK, "%s", err);
    cr_assert_null(ev.user_id);
    cr_assert_null(ev.touchpoint);
    cr_assert_str_eq(event_key(&ev), "a");
}

Test(decode, reasons_are_stable) {
    cr_assert_str_eq(decode_reason(DECODE_E_SYNTAX), "syntax");
    cr_assert_str_eq(decode_reason(DECODE_E_BAD_SCORE), "bad_score");
    cr_assert_str_eq(decode_reason(DECODE_E_DUPLICATE_KEY), "duplicate_key");
    cr_assert_str_eq(decode_reason(DECODE__COUNT), "unknown");
}

/* The sample events that schemas/event.schema.json is also checked against. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    char *buf = malloc(65536);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

Test(decode, sample_events) {
    const char *dirs[2] = {JD_SOURCE_DIR "/tests/data/events/valid", JD_SOURCE_DIR "/tests/data/events/invalid"};
    int seen[2] = {0, 0};
    for (int v = 0; v < 2; v++) {
        DIR *d = opendir(dirs[v]);
        cr_assert(d, "%s", dirs[v]);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[1024];
            size_t len;
            snprintf(path, sizeof(path), "%s/%s", dirs[v], e->d_name);
            char *buf = slurp(path, &len);
            decode_status_t st = decn(buf, len);
            if (v == 0) {
                cr_assert_eq(st, DECODE_OK, "%s: %s", e->d_name, err);
            } else {
                /* invalid/<reason>__<what>.json */
                char reason[64];
                snprintf(reason, sizeof(reason), "%.*s", (int)(strstr(e->d_name, "__") - e->d_name), e->d_name);
                cr_assert_str_eq(decode_reason(st), reason, "%s: %s", e->d_name, err);
            }
            free(buf);
            seen[v]++;
        }
        closedir(d);
    }
    cr_assert_geq(seen[0], 10);
    cr_assert_geq(seen[1], 10);
}
