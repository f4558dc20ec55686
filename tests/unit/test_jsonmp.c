/*
 * test_jsonmp.c -- JSON to MessagePack: exact bytes for each kind of value,
 * escapes and surrogate pairs, a metric-message-shaped document read back
 * with msgpack-c, and every refusal.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "jsonmp.h"

static void packs_to(const char *json, const char *want, size_t want_len) {
    msgpack_sbuffer sb;
    char err[128];
    msgpack_sbuffer_init(&sb);
    cr_assert_eq(jsonmp_pack(json, strlen(json), &sb, err, sizeof(err)), 0, "%s: %s", json, err);
    cr_assert_eq(sb.size, want_len, "%s: %zu bytes", json, sb.size);
    cr_assert_eq(memcmp(sb.data, want, want_len), 0, "%s", json);
    msgpack_sbuffer_destroy(&sb);
}

#define PACKS(json, bytes) packs_to(json, bytes, sizeof(bytes) - 1)

Test(jsonmp, scalars) {
    PACKS("0", "\x00");
    PACKS("-1", "\xff");
    PACKS("300", "\xcd\x01\x2c");
    PACKS("1767607200000", "\xcf\x00\x00\x01\x9b\x8d\x99\x69\x00");
    PACKS("0.5", "\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00");
    PACKS("1e2", "\xcb\x40\x59\x00\x00\x00\x00\x00\x00");
    PACKS("true", "\xc3");
    PACKS("false", "\xc2");
    PACKS(" null ", "\xc0");
    PACKS("\"ab\"", "\xa2" "ab");
}

Test(jsonmp, escapes_become_utf8) {
    PACKS("\"a\\\"b\\\\c\\/\\n\\t\"", "\xa8" "a\"b\\c/\n\t");
    PACKS("\"\\u00e9\"", "\xa2\xc3\xa9");
    PACKS("\"\\ud83d\\ude00\"", "\xa4\xf0\x9f\x98\x80");
    PACKS("\"\xc3\xa9\"", "\xa2\xc3\xa9"); /* UTF-8 as it is */
}

Test(jsonmp, containers) {
    PACKS("[]", "\x90");
    PACKS("{}", "\x80");
    PACKS("[1, [2], {\"k\": null}]", "\x93\x01\x91\x02\x81\xa1k\xc0");
    PACKS("{\"a\":1,\"b\":[true,false]}", "\x82\xa1" "a" "\x01\xa1" "b" "\x92\xc3\xc2");
}

Test(jsonmp, a_metric_message_reads_back) {
    const char *doc = "{\"schema\":\"journeyd.metric\",\"version\":1,\"complete_to\":null,\"kind\":\"funnel\","
                      "\"entry\":{\"phase\":\"search\",\"reached\":19000,\"dropoff_rate\":0.351292}}";
    msgpack_sbuffer sb;
    char err[128];
    msgpack_sbuffer_init(&sb);
    cr_assert_eq(jsonmp_pack(doc, strlen(doc), &sb, err, sizeof(err)), 0, "%s", err);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_object o = u.data;
    cr_assert_eq(o.type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(o.via.map.size, 5);
    msgpack_object entry = o.via.map.ptr[4].val;
    cr_assert_eq(entry.type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(entry.via.map.ptr[1].val.via.u64, 19000);
    cr_assert_float_eq(entry.via.map.ptr[2].val.via.f64, 0.351292, 1e-12);
    cr_assert_eq(o.via.map.ptr[2].val.type, MSGPACK_OBJECT_NIL);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void refused(const char *json, const char *want) {
    msgpack_sbuffer sb;
    char err[128];
    msgpack_sbuffer_init(&sb);
    cr_assert_eq(jsonmp_pack(json, strlen(json), &sb, err, sizeof(err)), -1, "%s", json);
    cr_assert_str_eq(err, want, "%s", json);
    msgpack_sbuffer_destroy(&sb);
}

Test(jsonmp, refusals) {
    refused("", "json at byte 0: a value expected");
    refused("[1,", "json at byte 3: a value expected");
    refused("[1 2]", "json at byte 3: ',' or ']' expected");
    refused("{1:2}", "json at byte 1: a member name expected");
    refused("{\"a\" 2}", "json at byte 5: ':' expected");
    refused("\"abc", "json at byte 4: unterminated string");
    refused("\"\\x\"", "json at byte 3: bad escape");
    refused("\"\\ud83d\"", "json at byte 7: lone surrogate");
    refused("nul", "json at byte 0: unexpected character");
    refused("1 2", "json at byte 2: trailing characters");
    refused("99999999999999999999", "json at byte 20: bad integer");
    char deep[80];
    memset(deep, '[', 40);
    deep[40] = '\0';
    refused(deep, "json at byte 33: too deep");
}
