/*
 * test_stitch.c -- home partitions (the producers' partitioners) and the
 * internal topic's records: round trip, and refusal of what is not one.
 */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "stitch.h"

/* librdkafka's default partitioner is CRC-32 (IEEE) of the key modulo the
 * partitions: the values Python's zlib.crc32 gives. */
Test(stitch, consistent_is_crc32) {
    cr_assert_eq(stitch_home(CFG_PART_CONSISTENT_RANDOM, "anon-1", 6), 2);
    cr_assert_eq(stitch_home(CFG_PART_CONSISTENT, "anon-1", 12), 2);
    cr_assert_eq(stitch_home(CFG_PART_CONSISTENT_RANDOM, "u-1", 6), 0);
    cr_assert_eq(stitch_home(CFG_PART_CONSISTENT_RANDOM, "customer-42", 12), 5);
}

/* Java's default partitioner: (murmur2(key) & 0x7fffffff) % n, with
 * Kafka's own test vectors for murmur2 (UtilsTest). */
Test(stitch, murmur2_is_javas) {
    static const struct { const char *key; int64_t hash; } v[] = {
        {"21", -973932308}, {"foobar", -790332482}, {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829}, {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        for (int32_t n = 1; n <= 13; n += 4)
            cr_assert_eq(stitch_home(CFG_PART_MURMUR2_RANDOM, v[i].key, n), (int32_t)((v[i].hash & 0x7fffffff) % n),
                         "%s over %d", v[i].key, n);
}

static fwd_t sample(void) {
    fwd_t f;
    memset(&f, 0, sizeof(f));
    f.kind = FWD_HANDOFF;
    snprintf(f.src, sizeof(f.src), "events:7");
    f.seq = 123456789012LL;
    snprintf(f.id, sizeof(f.id), "u-1");
    snprintf(f.cust, sizeof(f.cust), "u-1");
    snprintf(f.other, sizeof(f.other), "anon-1");
    f.jnum = 3;
    f.ts = -5;
    f.mid = UINT64_MAX;
    f.phase = 2;
    f.metric = 1;
    f.score = 10;
    f.scope = 1;
    f.explicit_phase = 1;
    snprintf(f.tp, sizeof(f.tp), "store");
    snprintf(f.segment, sizeof(f.segment), "smb");
    f.blob = "\x93\x01\x02\x03";
    f.blob_len = 4;
    return f;
}

Test(stitch, record_round_trip) {
    fwd_t f = sample(), g;
    char *buf, err[128];
    size_t len;
    cr_assert_eq(fwd_encode(&f, &buf, &len), 0);
    cr_assert_eq(fwd_decode(buf, len, &g, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(g.kind, FWD_HANDOFF);
    cr_assert_str_eq(g.src, "events:7");
    cr_assert_eq(g.seq, 123456789012LL);
    cr_assert_str_eq(g.id, "u-1");
    cr_assert_str_eq(g.cust, "u-1");
    cr_assert_str_eq(g.other, "anon-1");
    cr_assert_eq(g.jnum, 3);
    cr_assert_eq(g.ts, -5);
    cr_assert_eq(g.mid, UINT64_MAX);
    cr_assert_eq(g.phase, 2);
    cr_assert_eq(g.metric, 1);
    cr_assert_eq(g.score, 10);
    cr_assert_eq(g.scope, 1);
    cr_assert_eq(g.explicit_phase, 1);
    cr_assert_eq(g.explicit_tp, 0);
    cr_assert_str_eq(g.tp, "store");
    cr_assert_str_eq(g.segment, "smb");
    cr_assert_eq(g.blob_len, 4);
    cr_assert(g.blob >= buf && g.blob + 4 <= buf + len); /* points into the record */
    cr_assert(!memcmp(g.blob, "\x93\x01\x02\x03", 4));
    free(buf);
}

/* Re-encode f with field k replaced by what pack() writes. */
static void encode_with(const fwd_t *f, int k, void (*pack)(msgpack_packer *), char **out, size_t *len) {
    char *good;
    size_t glen, off = 0;
    cr_assert_eq(fwd_encode(f, &good, &glen), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, good, glen, &off), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, u.data.via.array.size);
    for (uint32_t i = 0; i < u.data.via.array.size; i++) {
        if ((int)i == k) pack(&pk);
        else msgpack_pack_object(&pk, u.data.via.array.ptr[i]);
    }
    msgpack_unpacked_destroy(&u);
    free(good);
    *out = sb.data;
    *len = sb.size;
}

static void p_kind9(msgpack_packer *pk) { msgpack_pack_int(pk, 9); }
static void p_version2(msgpack_packer *pk) { msgpack_pack_int(pk, 2); }
static void p_seq0(msgpack_packer *pk) { msgpack_pack_int(pk, 0); }
static void p_empty(msgpack_packer *pk) { msgpack_pack_str(pk, 0); }
static void p_nul(msgpack_packer *pk) {
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
}
static void p_phase(msgpack_packer *pk) { msgpack_pack_int(pk, CFG_MAX_PHASES); }
static void p_str_blob(msgpack_packer *pk) {
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "x", 1);
}

Test(stitch, malformed_records_are_refused_with_a_reason) {
    static const struct { int field; void (*pack)(msgpack_packer *); const char *why; } cases[] = {
        {1, p_kind9, "out of range"},     {0, p_version2, "out of range"}, {3, p_seq0, "out of range"},
        {4, p_empty, "string"},           {2, p_empty, "string"},          {5, p_nul, "NUL"},
        {10, p_phase, "out of range"},
        {19, p_str_blob, "not binary"},   {5, p_empty, "no customer"},
    };
    fwd_t f = sample(), g;
    char err[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *buf;
        size_t len;
        encode_with(&f, cases[i].field, cases[i].pack, &buf, &len);
        cr_assert_eq(fwd_decode(buf, len, &g, err, sizeof(err)), -1, "case %zu", i);
        cr_assert(strstr(err, cases[i].why), "case %zu: %s", i, err);
        cr_assert(!strncmp(err, "internal record: ", 17));
        free(buf);
    }
    cr_assert_eq(fwd_decode("\x91\x01", 2, &g, err, sizeof(err)), -1);
    cr_assert(strstr(err, "array of 20"), "%s", err);
    char *buf;
    size_t len;
    cr_assert_eq(fwd_encode(&f, &buf, &len), 0);
    cr_assert_eq(fwd_decode(buf, len - 1, &g, err, sizeof(err)), -1); /* cut short */
    cr_assert_eq(fwd_decode(buf, len + 0, &g, err, sizeof(err)), 0);
    free(buf);
    f.kind = FWD_LINK; /* a link names the id to link */
    f.other[0] = '\0';
    cr_assert_eq(fwd_encode(&f, &buf, &len), 0);
    cr_assert_eq(fwd_decode(buf, len, &g, err, sizeof(err)), -1);
    cr_assert(strstr(err, "without the id to link"), "%s", err);
    free(buf);
}
