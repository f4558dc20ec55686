/*
 * test_decode.c -- the event decoder (daemon/decode.c): every field in both
 * encodings, every error path with its detail, the limits at and just past
 * their bounds, hostile MessagePack, deep nesting, Unicode, auto-detection,
 * and the sample events of tests/data/events/ -- the same files
 * schemas/event.schema.json is checked against by tests/unit/schema_check.py.
 * Each valid sample is decoded from JSON, then re-encoded as MessagePack
 * (also with the timestamp as the MessagePack timestamp extension), and
 * both encodings must give the same event; each invalid sample must give the
 * reason its file name starts with, in both encodings.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

/* The daemon's default limits (config.c). */
static const decode_limits_t lim = {
    .max_message_bytes = 65536, .max_id_bytes = 128, .max_string_bytes = 1024,
    .max_properties = 64, .max_depth = 16,
};
static event_t ev;
static char arena[65536 + 64];
static char err[256];

static decode_status_t dec_lim(const void *buf, size_t len, decode_encoding_t enc, const decode_limits_t *l) {
    memset(err, 'X', sizeof(err) - 1);
    err[sizeof(err) - 1] = '\0';
    decode_status_t st = decode_event(buf, len, enc, l, &ev, arena, sizeof(arena), err, sizeof(err));
    if (st == DECODE_OK) cr_assert_str_empty(err, "errbuf must be empty on success");
    return st;
}

static decode_status_t decn(const void *buf, size_t len) { return dec_lim(buf, len, DECODE_AUTO, &lim); }
static decode_status_t dec(const char *json) { return decn(json, strlen(json)); }

/* A JSON case: status and (unless NULL) the exact detail. */
#define EXPECT(json, status, detail)                                                                  \
    do {                                                                                              \
        decode_status_t st_ = dec(json);                                                              \
        cr_assert_eq(st_, status, "%s: got %s (%s)", json, decode_reason(st_), err);                  \
        const char *detail_ = (detail);                                                               \
        if (detail_) cr_assert_str_eq(err, detail_, "%s", json);                                      \
    } while (0)

/* A minimal valid track event with extra members appended. */
#define EV(extra) "{\"messageId\":\"m\",\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"timestamp\":1000" extra "}"
#define PAGE(extra) "{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1000" extra "}"

/* ---- MessagePack builders ------------------------------------------------------ */

typedef struct mp { msgpack_sbuffer sb; msgpack_packer pk; } mp_t;

static void mp_init(mp_t *m) {
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_str(mp_t *m, const char *s) {
    msgpack_pack_str(&m->pk, strlen(s));
    msgpack_pack_str_body(&m->pk, s, strlen(s));
}

static void mp_kv(mp_t *m, const char *k, const char *v) {
    mp_str(m, k);
    mp_str(m, v);
}

/* The timestamp extension (type -1) in its 32-, 64- or 96-bit form. */
static void mp_ts_ext(mp_t *m, int bits, int64_t sec, uint32_t nsec) {
    unsigned char b[12];
    size_t n = (size_t)bits / 8;
    if (bits == 32) {
        for (int i = 0; i < 4; i++) b[i] = (unsigned char)((uint64_t)sec >> (24 - 8 * i));
    } else if (bits == 64) {
        uint64_t x = (uint64_t)nsec << 34 | (uint64_t)sec;
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(x >> (56 - 8 * i));
    } else {
        for (int i = 0; i < 4; i++) b[i] = (unsigned char)(nsec >> (24 - 8 * i));
        for (int i = 0; i < 8; i++) b[4 + i] = (unsigned char)((uint64_t)sec >> (56 - 8 * i));
    }
    msgpack_pack_ext(&m->pk, n, -1);
    msgpack_pack_ext_body(&m->pk, b, n);
}

/* A MessagePack page event whose timestamp the caller packs next. */
static void mp_page_head(mp_t *m) {
    mp_init(m);
    msgpack_pack_map(&m->pk, 4);
    mp_kv(m, "messageId", "m");
    mp_kv(m, "type", "page");
    mp_kv(m, "userId", "u");
    mp_str(m, "timestamp");
}

static decode_status_t mp_dec(mp_t *m) {
    decode_status_t st = decn(m->sb.data, m->sb.size);
    msgpack_sbuffer_destroy(&m->sb);
    return st;
}

/* ---- JSON -> MessagePack, for the sample files (trusted input) ----------------- */

static void j_ws(const char **p) {
    while (**p == ' ' || **p == '\n' || **p == '\r' || **p == '\t') (*p)++;
}

static unsigned j_hex4(const char *p) {
    char h[5] = {p[0], p[1], p[2], p[3], 0};
    return (unsigned)strtoul(h, NULL, 16);
}

static size_t j_utf8(unsigned cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A JSON string (p at the quote) unescaped into out; returns its length. */
static size_t j_string(const char **p, char *out) {
    size_t n = 0;
    const char *s = *p + 1;
    while (*s != '"') {
        if (*s != '\\') { out[n++] = *s++; continue; }
        char c = s[1];
        s += 2;
        if (c != 'u') {
            out[n++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
            continue;
        }
        unsigned cp = j_hex4(s);
        s += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (j_hex4(s + 2) - 0xdc00);
            s += 6;
        }
        n += j_utf8(cp, out + n);
    }
    *p = s + 1;
    return n;
}

static void j_skip(const char **p);

/* Members of the object / elements of the array at p. */
static uint32_t j_count(const char *p) {
    char close = *p == '{' ? '}' : ']';
    uint32_t n = 0;
    p++;
    j_ws(&p);
    while (*p != close) {
        j_skip(&p); /* the key or the element */
        j_ws(&p);
        if (*p == ':') {
            p++;
            j_ws(&p);
            j_skip(&p);
            j_ws(&p);
        }
        n++;
        if (*p == ',') p++;
        j_ws(&p);
    }
    return n;
}

static void j_skip(const char **p) {
    static char scratch[65536];
    if (**p == '"') { j_string(p, scratch); return; }
    if (**p == '{' || **p == '[') {
        char close = **p == '{' ? '}' : ']';
        (*p)++;
        j_ws(p);
        while (**p != close) {
            j_skip(p);
            j_ws(p);
            if (**p == ':' || **p == ',') (*p)++;
            j_ws(p);
        }
        (*p)++;
        return;
    }
    while (**p && !strchr(",}] \n\r\t", **p)) (*p)++;
}

static void j_pack(const char **p, mp_t *m, int ts_bits, int64_t ts_ms, int top);

/* An object or array (p at its bracket); see j_pack() for ts_bits. */
static void j_pack_container(const char **p, mp_t *m, int ts_bits, int64_t ts_ms, int top) {
    int obj = **p == '{';
    uint32_t n = j_count(*p);
    if (obj) msgpack_pack_map(&m->pk, n);
    else msgpack_pack_array(&m->pk, n);
    (*p)++;
    for (uint32_t i = 0; i < n; i++) {
        j_ws(p);
        const char *k = *p;
        if (obj) {
            j_pack(p, m, 0, 0, 0);
            j_ws(p);
            (*p)++; /* ':' */
            j_ws(p);
        }
        if (obj && top && ts_bits && !strncmp(k, "\"timestamp\"", 11)) {
            j_skip(p);
            mp_ts_ext(m, ts_bits, ts_ms / 1000, (uint32_t)(ts_ms % 1000) * 1000000u + 999u);
        } else {
            j_pack(p, m, 0, 0, 0);
        }
        j_ws(p);
        if (**p == ',') (*p)++;
    }
    j_ws(p);
    (*p)++;
}

/*
 * Pack the JSON value at p. At the top level, when ts_bits is 32, 64 or 96,
 * the "timestamp" member is replaced by the timestamp extension of ts_ms.
 */
static void j_pack(const char **p, mp_t *m, int ts_bits, int64_t ts_ms, int top) {
    static char buf[65536];
    j_ws(p);
    if (**p == '"') {
        size_t n = j_string(p, buf);
        msgpack_pack_str(&m->pk, n);
        msgpack_pack_str_body(&m->pk, buf, n);
    } else if (**p == '{' || **p == '[') {
        j_pack_container(p, m, ts_bits, ts_ms, top);
    } else if (!strncmp(*p, "true", 4) || !strncmp(*p, "false", 5)) {
        if (**p == 't') msgpack_pack_true(&m->pk);
        else msgpack_pack_false(&m->pk);
        *p += **p == 't' ? 4 : 5;
    } else if (!strncmp(*p, "null", 4)) {
        msgpack_pack_nil(&m->pk);
        *p += 4;
    } else {
        char *end;
        const char *s = *p;
        long long v = strtoll(s, &end, 10);
        if (*end == '.' || *end == 'e' || *end == 'E') msgpack_pack_double(&m->pk, strtod(s, &end));
        else msgpack_pack_int64(&m->pk, v);
        *p = end;
    }
}

static void json_to_mp(const char *json, mp_t *m, int ts_bits, int64_t ts_ms) {
    mp_init(m);
    j_pack(&json, m, ts_bits, ts_ms, 1);
}

/* ---- comparing events ------------------------------------------------------------ */

static void str_eq(const char *what, const char *a, const char *b, const char *ctx) {
    if (!a || !b) cr_assert(a == b, "%s %s: %s vs %s", ctx, what, a ? a : "(null)", b ? b : "(null)");
    else cr_assert_str_eq(a, b, "%s %s", ctx, what);
}

static void event_eq(const event_t *a, const event_t *b, const char *ctx) {
    cr_assert_eq(a->type, b->type, "%s type", ctx);
    cr_assert_eq(a->ts_ms, b->ts_ms, "%s ts_ms %lld vs %lld", ctx, (long long)a->ts_ms, (long long)b->ts_ms);
    str_eq("messageId", a->message_id, b->message_id, ctx);
    str_eq("userId", a->user_id, b->user_id, ctx);
    str_eq("anonymousId", a->anonymous_id, b->anonymous_id, ctx);
    str_eq("previousId", a->previous_id, b->previous_id, ctx);
    str_eq("event", a->event, b->event, ctx);
    str_eq("channel", a->channel, b->channel, ctx);
    str_eq("page_path", a->page_path, b->page_path, ctx);
    str_eq("name", a->name, b->name, ctx);
    str_eq("touchpoint", a->touchpoint, b->touchpoint, ctx);
    str_eq("phase", a->phase, b->phase, ctx);
    str_eq("segment", a->segment, b->segment, ctx);
    cr_assert_eq(a->metric, b->metric, "%s metric", ctx);
    cr_assert_eq(a->score, b->score, "%s score", ctx);
    cr_assert_eq(a->scope, b->scope, "%s scope", ctx);
    cr_assert_eq(a->n_properties, b->n_properties, "%s n_properties", ctx);
}

/* ---- every field, both encodings -------------------------------------------------- */

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

Test(decode, msgpack_every_field) {
    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 11);
    mp_kv(&m, "messageId", "m-1");
    mp_kv(&m, "type", "track");
    mp_kv(&m, "event", "Survey Answered");
    mp_kv(&m, "userId", "u-1");
    mp_kv(&m, "anonymousId", "a-1");
    mp_str(&m, "timestamp");
    msgpack_pack_uint64(&m.pk, 1767603600250ULL);
    mp_kv(&m, "name", "Home");
    mp_str(&m, "context");
    msgpack_pack_map(&m.pk, 4);
    mp_kv(&m, "channel", "web");
    mp_str(&m, "page");
    msgpack_pack_map(&m.pk, 1);
    mp_kv(&m, "path", "/products/x");
    mp_str(&m, "traits");
    msgpack_pack_map(&m.pk, 1);
    mp_kv(&m, "segment", "ctx-seg");
    mp_str(&m, "ip");
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_nil(&m.pk);
    msgpack_pack_true(&m.pk);
    mp_str(&m, "properties");
    msgpack_pack_map(&m.pk, 8);
    mp_kv(&m, "touchpoint", "checkout");
    mp_kv(&m, "phase", "purchase");
    mp_kv(&m, "metric", "nps");
    mp_str(&m, "score");
    msgpack_pack_double(&m.pk, 9.0);
    mp_kv(&m, "scope", "journey");
    mp_kv(&m, "segment", "prop-seg");
    mp_kv(&m, "sku", "s");
    mp_str(&m, "price");
    msgpack_pack_float(&m.pk, 150.0f);
    mp_str(&m, "traits");
    msgpack_pack_map(&m.pk, 1);
    mp_kv(&m, "segment", "trait-seg");
    mp_str(&m, "extra");
    msgpack_pack_bin(&m.pk, 2);
    msgpack_pack_bin_body(&m.pk, "\x00\x01", 2);
    cr_assert_eq(mp_dec(&m), DECODE_OK, "%s", err);
    check_full();
}

Test(decode, msgpack_str_and_int_widths) {
    /* str8/str16 values, map16 at the top, every int width for the timestamp and the score */
    char big[300];
    memset(big, 'p', sizeof(big));
    big[200] = '\0';
    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 6);
    mp_kv(&m, "messageId", "m-1");
    mp_kv(&m, "type", "page");
    mp_kv(&m, "anonymousId", "a-1");
    mp_str(&m, "timestamp");
    msgpack_pack_int64(&m.pk, 1767603600250LL);
    mp_str(&m, "context");
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "page");
    msgpack_pack_map(&m.pk, 1);
    mp_kv(&m, "path", big);
    mp_str(&m, "properties");
    msgpack_pack_map(&m.pk, 2);
    mp_kv(&m, "metric", "ces");
    mp_str(&m, "score");
    msgpack_pack_int8(&m.pk, 6);
    cr_assert_eq(mp_dec(&m), DECODE_OK, "%s", err);
    cr_assert_eq(ev.ts_ms, 1767603600250LL);
    cr_assert_eq(strlen(ev.page_path), 200);
    cr_assert_eq(ev.metric, EV_METRIC_CES);
    cr_assert_eq(ev.score, 6);
    /* a map16 header for a 3-entry map is legal */
    const unsigned char m16[] = {0xde, 0x00, 0x03, 0xa4, 't', 'y', 'p', 'e', 0xa9, 'h', 'e', 'a', 'r', 't', 'b', 'e', 'a', 't',
                                 0xa9, 't', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p', 0xce, 0x00, 0x01, 0x00, 0x00,
                                 0xa1, 'x', 0xd0, 0x80};
    cr_assert_eq(decn(m16, sizeof(m16)), DECODE_OK, "%s", err);
    cr_assert_eq(ev.ts_ms, 65536);
    cr_assert_eq(ev.type, EV_HEARTBEAT);
}

/* ---- timestamps -------------------------------------------------------------------- */

Test(decode, msgpack_timestamp_extension) {
    static const struct { int bits; int64_t sec; uint32_t nsec; long long ms; } ok[] = {
        {32, 1767603600, 0, 1767603600000LL},
        {64, 1767603600, 250999999u, 1767603600250LL},   /* fraction truncated */
        {96, 1767603600, 999999999u, 1767603600999LL},
        {96, 0, 0, 0},
        {96, 253402300799LL, 999000000u, 253402300799999LL},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        mp_t m;
        mp_page_head(&m);
        mp_ts_ext(&m, ok[i].bits, ok[i].sec, ok[i].nsec);
        cr_assert_eq(mp_dec(&m), DECODE_OK, "case %zu: %s", i, err);
        cr_assert_eq(ev.ts_ms, ok[i].ms, "case %zu", i);
    }
    static const struct { int bits; int64_t sec; uint32_t nsec; } bad[] = {
        {64, 1, 1000000000u}, {96, -1, 0}, {96, 253402300800LL, 0}, {96, 1, 1000000000u},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mp_t m;
        mp_page_head(&m);
        mp_ts_ext(&m, bad[i].bits, bad[i].sec, bad[i].nsec);
        cr_assert_eq(mp_dec(&m), DECODE_E_BAD_TIMESTAMP, "case %zu", i);
        cr_assert_str_eq(err, "timestamp: malformed or out-of-range timestamp extension");
    }
    mp_t m;
    mp_page_head(&m); /* a timestamp extension of a length the spec does not define */
    msgpack_pack_ext(&m.pk, 2, -1);
    msgpack_pack_ext_body(&m.pk, "\x00\x01", 2);
    cr_assert_eq(mp_dec(&m), DECODE_E_BAD_TIMESTAMP);
    mp_page_head(&m); /* another extension type */
    msgpack_pack_ext(&m.pk, 4, 5);
    msgpack_pack_ext_body(&m.pk, "\x00\x01\x02\x03", 4);
    cr_assert_eq(mp_dec(&m), DECODE_E_TYPE);
    cr_assert_str_eq(err, "timestamp: expected a string or an integer, got an extension value");
    mp_page_head(&m);
    mp_str(&m, "2026-01-05T10:00:00Z");
    cr_assert_eq(mp_dec(&m), DECODE_OK, "%s", err);
    cr_assert_eq(ev.ts_ms, 1767607200000LL);
    mp_page_head(&m);
    msgpack_pack_double(&m.pk, 1767607200000.0);
    cr_assert_eq(mp_dec(&m), DECODE_OK, "%s", err);
    cr_assert_eq(ev.ts_ms, 1767607200000LL);
    mp_page_head(&m);
    msgpack_pack_double(&m.pk, 1767607200000.5);
    cr_assert_eq(mp_dec(&m), DECODE_E_BAD_TIMESTAMP);
    mp_page_head(&m);
    msgpack_pack_uint64(&m.pk, UINT64_MAX);
    cr_assert_eq(mp_dec(&m), DECODE_E_BAD_TIMESTAMP);
    mp_page_head(&m);
    msgpack_pack_true(&m.pk);
    cr_assert_eq(mp_dec(&m), DECODE_E_TYPE);
}

Test(decode, iso_timestamps) {
    static const struct { const char *ts; long long ms; } ok[] = {
        {"2026-01-05T10:00:00Z", 1767607200000LL},
        {"2026-01-05T10:00:00.5Z", 1767607200500LL},
        {"2026-01-05T10:00:00.123+01:00", 1767603600123LL},
        {"2026-01-05T10:00:00.123456789-02:30", 1767607200123LL + 9000000LL},
        {"2026-01-05t10:00:00z", 1767607200000LL},
        {"2026-01-05 10:00:00+00:00", 1767607200000LL},
        {"2024-02-29T00:00:00Z", 1709164800000LL},
        {"2000-02-29T23:59:60Z", 951868800000LL},  /* leap second: the next second */
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T01:00:00+01:00", 0},
        {"9999-12-31T23:59:59.999Z", 253402300799999LL},
    };
    char buf[256];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":\"%s\"}", ok[i].ts);
        cr_assert_eq(dec(buf), DECODE_OK, "%s: %s", ok[i].ts, err);
        cr_assert_eq(ev.ts_ms, ok[i].ms, "%s: %lld", ok[i].ts, (long long)ev.ts_ms);
        int64_t ms = -1;
        cr_assert_eq(decode_parse_time(ok[i].ts, &ms), 0, "%s", ok[i].ts);
        cr_assert_eq(ms, ok[i].ms);
    }
    const char *bad[] = {"2026-01-05T10:00:00", "yesterday", "2026-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
                         "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z", "2026-01-05T24:00:00Z",
                         "2026-01-05T10:60:00Z", "2026-01-05T10:00:61Z", "2026-01-05T10:00:00+1:00",
                         "2026-01-05T10:00:00+0100", "2026-01-05T10:00:00+24:00", "2026-01-05T10:00:00Zjunk",
                         "2026-01-05T10:00:00.Z", "2026-01-05X10:00:00Z", "2026-1-05T10:00:00Z", "",
                         "1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00", "10000-01-01T00:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":\"%s\"}", bad[i]);
        cr_assert_eq(dec(buf), DECODE_E_BAD_TIMESTAMP, "%s: %s", bad[i], decode_reason(dec(buf)));
    }
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":\"2026-01-05T10:00:00\"}",
           DECODE_E_BAD_TIMESTAMP, "timestamp: '2026-01-05T10:00:00' is not ISO-8601 with a zone");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":\"1969-12-31T23:59:59Z\"}",
           DECODE_E_BAD_TIMESTAMP, "timestamp: '1969-12-31T23:59:59Z' is outside 1970..9999");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1767600000000}", DECODE_OK, NULL);
    cr_assert_eq(ev.ts_ms, 1767600000000LL);
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1767600000000.0}", DECODE_OK, NULL);
    cr_assert_eq(ev.ts_ms, 1767600000000LL);
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":0}", DECODE_OK, NULL);
    cr_assert_eq(ev.ts_ms, 0);
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1.5}",
           DECODE_E_BAD_TIMESTAMP, "timestamp: 1.5 is not integer epoch milliseconds in 1970..9999");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":-1}", DECODE_E_BAD_TIMESTAMP, NULL);
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":253402300800000}", DECODE_E_BAD_TIMESTAMP, NULL);
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1e400}", DECODE_E_BAD_TIMESTAMP, NULL);
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":true}",
           DECODE_E_TYPE, "timestamp: expected a string or an integer, got a boolean");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":{}}",
           DECODE_E_TYPE, "timestamp: expected a string or an integer, got an object");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":null}",
           DECODE_E_MISSING, "timestamp: required");
}

/* ---- Unicode ------------------------------------------------------------------------- */

Test(decode, unicode_escapes) {
    EXPECT("{\"messageId\":\"m\\u00fc\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\",\"type\":\"page\",\"anonymousId\":\"a\","
           "\"timestamp\":\"2026-01-05T10:00:00Z\"}", DECODE_OK, NULL);
    cr_assert_str_eq(ev.message_id, "m\xc3\xbc\xf0\x9f\x98\x80\n\t\"\\/\b\f\r");
    cr_assert_str_eq(event_key(&ev), "a");
    /* upper-case hex, a three-byte character, escaped key names */
    EXPECT("{\"message\\u0049d\":\"\\u20AC\",\"\\u0074ype\":\"page\",\"userId\":\"u\",\"timestamp\":1}", DECODE_OK, NULL);
    cr_assert_str_eq(ev.message_id, "\xe2\x82\xac");
    /* raw UTF-8 is kept as it is */
    EXPECT(PAGE(",\"context\":{\"channel\":\"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac\"}"), DECODE_OK, NULL);
    cr_assert_str_eq(ev.channel, "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac");
    /* \u0000 cannot go into a C string; in a skipped value it is fine */
    EXPECT(PAGE(",\"name\":\"a\\u0000b\""), DECODE_E_SYNTAX, "name: \\u0000 in string");
    EXPECT(PAGE(",\"other\":\"a\\u0000b\""), DECODE_OK, NULL);
}

Test(decode, bad_escapes_and_utf8) {
    static const char *const bad[] = {
        PAGE(",\"name\":\"\\ud83d\""),           /* lone high surrogate */
        PAGE(",\"name\":\"\\ude00x\""),          /* lone low surrogate */
        PAGE(",\"name\":\"\\ud83d\\u0041\""),    /* high surrogate + non-surrogate */
        PAGE(",\"name\":\"\\ud83d\\n\""),
        PAGE(",\"name\":\"\\u12G4\""),
        PAGE(",\"name\":\"\\u12\""),
        PAGE(",\"name\":\"\\x41\""),
        PAGE(",\"name\":\"\\'\""),
        PAGE(",\"name\":\"a\x01" "b\""),         /* raw control characters */
        PAGE(",\"name\":\"a\tb\""),
        PAGE(",\"other\":\"a\nb\""),
        PAGE(",\"name\":\"\x80\""),              /* lone continuation byte */
        PAGE(",\"name\":\"\xc0\xaf\""),          /* overlong '/' */
        PAGE(",\"name\":\"\xe0\x80\xaf\""),      /* overlong, three bytes */
        PAGE(",\"name\":\"\xed\xa0\x80\""),      /* encoded surrogate */
        PAGE(",\"name\":\"\xf4\x90\x80\x80\""),  /* above U+10FFFF */
        PAGE(",\"name\":\"\xf5\x80\x80\x80\""),
        PAGE(",\"name\":\"\xc3\""),              /* sequence cut by the quote */
        PAGE(",\"other\":\"\xff\""),             /* skipped values are checked too */
        PAGE(",\"\xfe\":1"),                     /* and keys */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        decode_status_t st = dec(bad[i]);
        cr_assert_eq(st, DECODE_E_SYNTAX, "case %zu: %s", i, decode_reason(st));
        cr_assert(!strncmp(err, "JSON: ", 6), "case %zu: %s", i, err);
    }
    EXPECT(PAGE(",\"name\":\"\\ud83d\""), DECODE_E_SYNTAX, "JSON: bad escape at byte 69");
    EXPECT(PAGE(",\"name\":\"\xc0\xaf\""), DECODE_E_SYNTAX, "JSON: invalid UTF-8 at byte 69");
    EXPECT(PAGE(",\"name\":\"a\tb\""), DECODE_E_SYNTAX, "JSON: control character in string at byte 70");
    /* MessagePack: kept strings must be UTF-8 without NUL; skipped ones are not inspected */
    mp_t m;
    mp_page_head(&m);
    msgpack_pack_uint32(&m.pk, 1);
    cr_assert_eq(mp_dec(&m), DECODE_OK, "%s", err);
    const unsigned char nul[] = {0x83, 0xa4, 't', 'y', 'p', 'e', 0xa9, 'h', 'e', 'a', 'r', 't', 'b', 'e', 'a', 't',
                                 0xa9, 't', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p', 0x01,
                                 0xa9, 'm', 'e', 's', 's', 'a', 'g', 'e', 'I', 'd', 0xa3, 'a', 0x00, 'b'};
    cr_assert_eq(decn(nul, sizeof(nul)), DECODE_E_SYNTAX);
    cr_assert_str_eq(err, "messageId: NUL byte in string");
    unsigned char u8[sizeof(nul)];
    memcpy(u8, nul, sizeof(nul));
    u8[sizeof(u8) - 2] = 0xc3; /* "a\xc3b": a cut sequence */
    cr_assert_eq(decn(u8, sizeof(u8)), DECODE_E_SYNTAX);
    cr_assert_str_eq(err, "messageId: invalid UTF-8 at byte 1");
    u8[sizeof(u8) - 2] = 0xc3, u8[sizeof(u8) - 1] = 0xa9; /* "a\xc3\xa9": fine */
    cr_assert_eq(decn(u8, sizeof(u8)), DECODE_OK, "%s", err);
    cr_assert_str_eq(ev.message_id, "a\xc3\xa9");
    memcpy(u8, nul, sizeof(nul));
    u8[28] = 'x'; /* "xessageId": the NUL string is now a skipped value */
    cr_assert_eq(decn(u8, sizeof(u8)), DECODE_OK, "%s", err);
    cr_assert_null(ev.message_id);
}

/* ---- JSON grammar --------------------------------------------------------------------- */

Test(decode, json_grammar) {
    static const char *const ok[] = {
        " \t\r\n{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1} \n",
        "{ \"messageId\" : \"m\" , \"type\" : \"page\" , \"userId\" : \"u\" , \"timestamp\" : 1 }",
        "\xef\xbb\xbf{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1}",
        PAGE(",\"n\":[-0, 0.5, -1.25e-3, 1E+9, 2e0, 123456789012345678901234567890, [], {}, [{}], \"\"]"),
        PAGE(",\"b\":[true,false,null]"),
        PAGE(",\"o\":{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}}}"),
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(dec(ok[i]), DECODE_OK, "case %zu: %s", i, err);
    static const char *const bad[] = {
        "{", "{\"messageId\":\"m\",", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{,}", "{\"a\"}",
        "{a:1}", "{'a':1}", "{\"a\":01}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}",
        "{\"a\":+1}", "{\"a\":0x10}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":tru}", "{\"a\":nul}",
        "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":\"x}", "{\"a\":1}x", "{\"a\":1}{}",
        "{\"a\":1} // c", "   ", "hello", "{\"a\":\"\\", "\xef\xbb\xbf",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        decode_status_t st = dec(bad[i]);
        cr_assert_eq(st, DECODE_E_SYNTAX, "case %zu (%s): %s: %s", i, bad[i], decode_reason(st), err);
    }
    EXPECT("{\"a\":1}x", DECODE_E_SYNTAX, "JSON: trailing bytes after the value at byte 7");
    EXPECT("{\"a\":1,}", DECODE_E_SYNTAX, "JSON: expected a key at byte 7");
    EXPECT("{\"a\":01}", DECODE_E_SYNTAX, "JSON: leading zero at byte 5");
    cr_assert_eq(decn("{\"a\":1}\x00", 8), DECODE_E_SYNTAX);
}

Test(decode, not_an_object) {
    static const char *const cases[] = {"[1,2]", "[{\"messageId\":\"m\"}]", "\"event\"", "42", "-1",
                                        "true", "null", " [ ] "};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        EXPECT(cases[i], DECODE_E_NOT_OBJECT, "JSON: the event must be an object");
    EXPECT("[1,2] x", DECODE_E_SYNTAX, NULL);
    EXPECT("[1,2", DECODE_E_SYNTAX, NULL);
    cr_assert_eq(decn("\x93\x01\x02\x03", 4), DECODE_E_NOT_OBJECT);
    cr_assert_str_eq(err, "MessagePack: the event must be a map");
    cr_assert_eq(decn("\xa3" "abc", 4), DECODE_E_NOT_OBJECT);
    cr_assert_eq(decn("\xc0", 1), DECODE_E_NOT_OBJECT);
    cr_assert_eq(decn("\x05", 1), DECODE_E_NOT_OBJECT);
}

/* ---- auto-detection ---------------------------------------------------------------------- */

Test(decode, auto_detection) {
    const char *j = EV("");
    /* JSON whatever the leading whitespace */
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_AUTO, &lim), DECODE_OK, "%s", err);
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_JSON, &lim), DECODE_OK, "%s", err);
    /* forced MessagePack: '{' is the positive fixint 0x7b */
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_MSGPACK, &lim), DECODE_E_NOT_OBJECT);
    /* MessagePack maps by their first byte: fixmap, map16, map32 */
    const unsigned char fix[] = {0x82, 0xa4, 't', 'y', 'p', 'e', 0xa9, 'h', 'e', 'a', 'r', 't', 'b', 'e', 'a', 't',
                                 0xa9, 't', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p', 0x07};
    unsigned char m16[sizeof(fix) + 2], m32[sizeof(fix) + 4];
    m16[0] = 0xde, m16[1] = 0, m16[2] = 2;
    memcpy(m16 + 3, fix + 1, sizeof(fix) - 1);
    m32[0] = 0xdf, m32[1] = 0, m32[2] = 0, m32[3] = 0, m32[4] = 2;
    memcpy(m32 + 5, fix + 1, sizeof(fix) - 1);
    cr_assert_eq(decn(fix, sizeof(fix)), DECODE_OK, "%s", err);
    cr_assert_eq(ev.ts_ms, 7);
    cr_assert_eq(decn(m16, sizeof(m16)), DECODE_OK, "%s", err);
    cr_assert_eq(decn(m32, sizeof(m32)), DECODE_OK, "%s", err);
    cr_assert_eq(ev.type, EV_HEARTBEAT);
    cr_assert_eq(dec_lim(fix, sizeof(fix), DECODE_MSGPACK, &lim), DECODE_OK, "%s", err);
    /* forced JSON on MessagePack bytes */
    cr_assert_eq(dec_lim(fix, sizeof(fix), DECODE_JSON, &lim), DECODE_E_SYNTAX);
    /* empty and NULL */
    cr_assert_eq(decn("", 0), DECODE_E_SYNTAX);
    cr_assert_str_eq(err, "message: empty");
    cr_assert_eq(decn(NULL, 0), DECODE_E_SYNTAX);
}

/* ---- fields: rules, types, nulls, duplicates ------------------------------------------- */

Test(decode, required_fields_and_types) {
    EXPECT("{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"timestamp\":1}", DECODE_E_MISSING, "messageId: required");
    EXPECT("{\"messageId\":\"\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "messageId: required");
    EXPECT("{\"messageId\":null,\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "messageId: required");
    EXPECT("{\"messageId\":\"m\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "type: required");
    EXPECT("{\"messageId\":\"m\",\"type\":\"\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "type: required");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\"}", DECODE_E_MISSING, "timestamp: required");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"timestamp\":1}", DECODE_E_MISSING, "userId or anonymousId: required");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"\",\"anonymousId\":null,\"timestamp\":1}",
           DECODE_E_MISSING, "userId or anonymousId: required");
    EXPECT("{\"messageId\":\"m\",\"type\":\"track\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_MISSING, "event: required for track");
    EXPECT("{\"messageId\":\"m\",\"type\":\"track\",\"event\":\"\",\"userId\":\"u\",\"timestamp\":1}",
           DECODE_E_MISSING, "event: required for track");
    EXPECT("{\"messageId\":\"m\",\"type\":\"identify\",\"userId\":\"u\",\"timestamp\":1}",
           DECODE_E_MISSING, "identify: needs both userId and anonymousId");
    EXPECT("{\"messageId\":\"m\",\"type\":\"identify\",\"anonymousId\":\"a\",\"timestamp\":1}",
           DECODE_E_MISSING, "identify: needs both userId and anonymousId");
    EXPECT("{\"messageId\":\"m\",\"type\":\"alias\",\"userId\":\"u\",\"timestamp\":1}",
           DECODE_E_MISSING, "alias: needs userId and previousId");
    EXPECT("{\"messageId\":\"m\",\"type\":\"alias\",\"anonymousId\":\"a\",\"previousId\":\"p\",\"timestamp\":1}",
           DECODE_E_MISSING, "alias: needs userId and previousId");
    EXPECT("{\"messageId\":\"m\",\"type\":\"click\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_BAD_EVENT_TYPE,
           "type: 'click' is not track, page, screen, identify, alias or heartbeat");
    EXPECT("{\"messageId\":\"m\",\"type\":\"Track\",\"userId\":\"u\",\"timestamp\":1}", DECODE_E_BAD_EVENT_TYPE, NULL);
    /* every type, and what each one yields */
    static const struct { const char *json; ev_type_t t; } types[] = {
        {EV(""), EV_TRACK}, {PAGE(""), EV_PAGE},
        {"{\"messageId\":\"m\",\"type\":\"screen\",\"anonymousId\":\"a\",\"timestamp\":1}", EV_SCREEN},
        {"{\"messageId\":\"m\",\"type\":\"identify\",\"userId\":\"u\",\"anonymousId\":\"a\",\"timestamp\":1}", EV_IDENTIFY},
        {"{\"messageId\":\"m\",\"type\":\"alias\",\"userId\":\"u\",\"previousId\":\"p\",\"timestamp\":1}", EV_ALIAS},
        {"{\"type\":\"heartbeat\",\"timestamp\":1}", EV_HEARTBEAT},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        EXPECT(types[i].json, DECODE_OK, NULL);
        cr_assert_eq(ev.type, types[i].t, "case %zu", i);
    }
    cr_assert_str_eq(ev.message_id ? ev.message_id : "(none)", "(none)");
    EXPECT("{\"messageId\":\"m\",\"type\":\"alias\",\"userId\":\"u\",\"previousId\":\"p\",\"timestamp\":1}", DECODE_OK, NULL);
    cr_assert_str_eq(ev.previous_id, "p");
    cr_assert_str_eq(event_key(&ev), "u");
}

Test(decode, heartbeat_needs_only_a_timestamp) {
    EXPECT("{\"type\":\"heartbeat\",\"timestamp\":1767600000000}", DECODE_OK, NULL);
    cr_assert_eq(ev.type, EV_HEARTBEAT);
    cr_assert_eq(ev.ts_ms, 1767600000000LL);
    cr_assert_null(ev.message_id);
    cr_assert_null(event_key(&ev));
    EXPECT("{\"type\":\"heartbeat\",\"messageId\":\"hb-1\",\"timestamp\":\"2026-01-05T10:00:00Z\"}", DECODE_OK, NULL);
    cr_assert_str_eq(ev.message_id, "hb-1");
    EXPECT("{\"type\":\"heartbeat\",\"messageId\":\"hb-1\"}", DECODE_E_MISSING, "timestamp: required");
    EXPECT("{\"type\":\"heartbeat\",\"timestamp\":1,\"messageId\":7}", DECODE_E_TYPE, NULL);
    /* whatever it carries is still checked */
    EXPECT("{\"type\":\"heartbeat\",\"timestamp\":1,\"properties\":{\"metric\":\"nps\",\"score\":12}}",
           DECODE_E_BAD_SCORE, NULL);
}

Test(decode, wrong_types) {
    static const struct { const char *json; const char *detail; } cases[] = {
        {PAGE(",\"messageId\":5"), NULL}, /* (duplicate: messageId given twice) */
        {"{\"messageId\":5,\"type\":\"page\"}", "messageId: expected a string, got a number"},
        {"{\"messageId\":true}", "messageId: expected a string, got a boolean"},
        {"{\"messageId\":[\"m\"]}", "messageId: expected a string, got an array"},
        {"{\"messageId\":{\"id\":\"m\"}}", "messageId: expected a string, got an object"},
        {"{\"type\":1}", "type: expected a string, got a number"},
        {"{\"userId\":42}", "userId: expected a string, got a number"},
        {"{\"event\":{}}", "event: expected a string, got an object"},
        {"{\"name\":false}", "name: expected a string, got a boolean"},
        {"{\"context\":\"web\"}", "context: expected an object, got a string"},
        {"{\"context\":[]}", "context: expected an object, got an array"},
        {"{\"context\":{\"channel\":1}}", "context.channel: expected a string, got a number"},
        {"{\"context\":{\"page\":\"/x\"}}", "context.page: expected an object, got a string"},
        {"{\"context\":{\"page\":{\"path\":[\"/x\"]}}}", "context.page.path: expected a string, got an array"},
        {"{\"context\":{\"traits\":1}}", "context.traits: expected an object, got a number"},
        {"{\"context\":{\"traits\":{\"segment\":true}}}", "context.traits.segment: expected a string, got a boolean"},
        {"{\"properties\":[]}", "properties: expected an object, got an array"},
        {"{\"properties\":{\"touchpoint\":1}}", "properties.touchpoint: expected a string, got a number"},
        {"{\"properties\":{\"phase\":{}}}", "properties.phase: expected a string, got an object"},
        {"{\"properties\":{\"metric\":1}}", "properties.metric: expected a string, got a number"},
        {"{\"properties\":{\"score\":\"9\"}}", "properties.score: expected a number, got a string"},
        {"{\"properties\":{\"score\":true}}", "properties.score: expected a number, got a boolean"},
        {"{\"properties\":{\"scope\":1}}", "properties.scope: expected a string, got a number"},
        {"{\"properties\":{\"segment\":[]}}", "properties.segment: expected a string, got an array"},
        {"{\"traits\":\"vip\"}", "traits: expected an object, got a string"},
        {"{\"traits\":{\"segment\":2}}", "traits.segment: expected a string, got a number"},
        {"{\"previousId\":1}", "previousId: expected a string, got a number"},
        {"{\"anonymousId\":{}}", "anonymousId: expected a string, got an object"},
    };
    cr_assert_eq(dec(cases[0].json), DECODE_E_DUPLICATE_KEY);
    for (size_t i = 1; i < sizeof(cases) / sizeof(cases[0]); i++)
        EXPECT(cases[i].json, DECODE_E_TYPE, cases[i].detail);
    /* MessagePack: bin where a string belongs, a string where a map belongs */
    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "messageId");
    msgpack_pack_bin(&m.pk, 1);
    msgpack_pack_bin_body(&m.pk, "m", 1);
    cr_assert_eq(mp_dec(&m), DECODE_E_TYPE);
    cr_assert_str_eq(err, "messageId: expected a string, got binary data");
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_kv(&m, "properties", "x");
    cr_assert_eq(mp_dec(&m), DECODE_E_TYPE);
    cr_assert_str_eq(err, "properties: expected an object, got a string");
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "context");
    msgpack_pack_array(&m.pk, 0);
    cr_assert_eq(mp_dec(&m), DECODE_E_TYPE);
    cr_assert_str_eq(err, "context: expected an object, got an array");
}

Test(decode, null_means_absent) {
    EXPECT("{\"messageId\":\"m\",\"type\":\"track\",\"event\":\"E\",\"userId\":null,\"anonymousId\":\"a\","
           "\"previousId\":null,\"name\":null,\"timestamp\":1,\"context\":{\"channel\":null,\"page\":{\"path\":null},"
           "\"traits\":null},\"properties\":{\"touchpoint\":null,\"phase\":null,\"metric\":null,\"score\":null,"
           "\"scope\":null,\"segment\":null},\"traits\":{\"segment\":null}}", DECODE_OK, NULL);
    event_t want = {.type = EV_TRACK, .ts_ms = 1, .message_id = "m", .anonymous_id = "a", .event = "E",
                    .n_properties = 6};
    event_eq(&ev, &want, "nulls");
    cr_assert_str_eq(event_key(&ev), "a");
    EXPECT(PAGE(",\"context\":null,\"properties\":null,\"traits\":null"), DECODE_OK, NULL);
    cr_assert_eq(ev.n_properties, 0);
}

Test(decode, empty_optional_strings_are_absent) {
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"\",\"anonymousId\":\"a\",\"name\":\"\",\"timestamp\":1,"
           "\"context\":{\"channel\":\"\",\"page\":{\"path\":\"\"}},\"properties\":{\"touchpoint\":\"\",\"phase\":\"\","
           "\"segment\":\"\"},\"traits\":{\"segment\":\"t\"}}", DECODE_OK, NULL);
    cr_assert_null(ev.user_id);
    cr_assert_str_eq(event_key(&ev), "a");
    cr_assert_null(ev.name);
    cr_assert_null(ev.channel);
    cr_assert_null(ev.page_path);
    cr_assert_null(ev.touchpoint);
    cr_assert_null(ev.phase);
    cr_assert_str_eq(ev.segment, "t"); /* an empty properties.segment does not hide traits.segment */
}

Test(decode, segment_precedence) {
    EXPECT(PAGE(",\"context\":{\"traits\":{\"segment\":\"c\"}},\"traits\":{\"segment\":\"t\"},"
                "\"properties\":{\"segment\":\"p\"}"), DECODE_OK, NULL);
    cr_assert_str_eq(ev.segment, "p");
    EXPECT(PAGE(",\"context\":{\"traits\":{\"segment\":\"c\"}},\"traits\":{\"segment\":\"t\"}"), DECODE_OK, NULL);
    cr_assert_str_eq(ev.segment, "t");
    EXPECT(PAGE(",\"context\":{\"traits\":{\"segment\":\"c\"}}"), DECODE_OK, NULL);
    cr_assert_str_eq(ev.segment, "c");
    EXPECT(PAGE(""), DECODE_OK, NULL);
    cr_assert_null(ev.segment);
}

Test(decode, duplicate_keys) {
    EXPECT("{\"messageId\":\"m\",\"messageId\":\"n\"}", DECODE_E_DUPLICATE_KEY, "messageId: given twice");
    EXPECT(PAGE(",\"timestamp\":2"), DECODE_E_DUPLICATE_KEY, "timestamp: given twice");
    EXPECT(PAGE(",\"context\":{\"channel\":\"web\"},\"context\":{\"page\":{}}"), DECODE_E_DUPLICATE_KEY,
           "context: given twice");
    EXPECT(PAGE(",\"context\":null,\"context\":{}"), DECODE_E_DUPLICATE_KEY, "context: given twice");
    EXPECT(PAGE(",\"properties\":{\"score\":1,\"metric\":\"nps\",\"score\":2}"), DECODE_E_DUPLICATE_KEY,
           "properties.score: given twice");
    EXPECT(PAGE(",\"userId\":null"), DECODE_E_DUPLICATE_KEY, "userId: given twice");
    EXPECT(PAGE(",\"context\":{\"page\":{\"path\":\"/a\",\"path\":\"/b\"}}"), DECODE_E_DUPLICATE_KEY,
           "context.page.path: given twice");
    EXPECT(PAGE(",\"us\\u0065rId\":\"v\""), DECODE_E_DUPLICATE_KEY, "userId: given twice");
    /* the same name at different places, and unknown keys twice, are fine */
    EXPECT(PAGE(",\"traits\":{\"segment\":\"a\"},\"context\":{\"traits\":{\"segment\":\"b\"}},"
                "\"properties\":{\"segment\":\"c\",\"x\":1,\"x\":2},\"x\":1,\"x\":2"), DECODE_OK, NULL);
    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_kv(&m, "type", "page");
    mp_kv(&m, "type", "track");
    cr_assert_eq(mp_dec(&m), DECODE_E_DUPLICATE_KEY);
    cr_assert_str_eq(err, "type: given twice");
}

/* ---- survey answers --------------------------------------------------------------------- */

Test(decode, scores) {
    static const struct { const char *metric; int lo, hi; ev_metric_t m; } M[] = {
        {"nps", 0, 10, EV_METRIC_NPS}, {"csat", 1, 5, EV_METRIC_CSAT}, {"ces", 1, 7, EV_METRIC_CES},
    };
    char buf[512], want[256];
    for (size_t i = 0; i < 3; i++) {
        for (int s = M[i].lo - 2; s <= M[i].hi + 2; s++) {
            snprintf(buf, sizeof(buf), EV(",\"properties\":{\"metric\":\"%s\",\"score\":%d}"), M[i].metric, s);
            if (s >= M[i].lo && s <= M[i].hi) {
                EXPECT(buf, DECODE_OK, NULL);
                cr_assert_eq(ev.metric, M[i].m);
                cr_assert_eq(ev.score, s);
                cr_assert_eq(ev.scope, EV_SCOPE_TOUCHPOINT);
            } else {
                snprintf(want, sizeof(want), "properties.score: %d out of range %d..%d for %s", s, M[i].lo,
                         M[i].hi, M[i].metric);
                EXPECT(buf, DECODE_E_BAD_SCORE, want);
            }
        }
    }
    EXPECT(EV(",\"properties\":{\"metric\":\"nps\",\"score\":11}"), DECODE_E_BAD_SCORE,
           "properties.score: 11 out of range 0..10 for nps");
    EXPECT(EV(",\"properties\":{\"metric\":\"nps\",\"score\":9.0}"), DECODE_OK, NULL);
    cr_assert_eq(ev.score, 9);
    EXPECT(EV(",\"properties\":{\"score\":9e0,\"metric\":\"nps\"}"), DECODE_OK, NULL);
    cr_assert_eq(ev.score, 9);
    EXPECT(EV(",\"properties\":{\"metric\":\"nps\",\"score\":0.7e1}"), DECODE_OK, NULL);
    cr_assert_eq(ev.score, 7);
    EXPECT(EV(",\"properties\":{\"metric\":\"nps\",\"score\":-0}"), DECODE_OK, NULL);
    cr_assert_eq(ev.score, 0);
    EXPECT(EV(",\"properties\":{\"metric\":\"nps\",\"score\":9.5}"), DECODE_E_BAD_SCORE,
           "properties.score: 9.5 is not an integer (nps takes 0..10)");
    EXPECT(EV(",\"properties\":{\"metric\":\"csat\",\"score\":1e400}"), DECODE_E_BAD_SCORE, NULL);
    EXPECT(EV(",\"properties\":{\"metric\":\"ces\"}"), DECODE_E_BAD_SCORE, "properties.score: required for ces");
    EXPECT(EV(",\"properties\":{\"metric\":\"ces\",\"score\":null}"), DECODE_E_BAD_SCORE, "properties.score: required for ces");
    EXPECT(EV(",\"properties\":{\"score\":5}"), DECODE_E_MISSING, "properties.metric: required with properties.score");
    EXPECT(EV(",\"properties\":{\"metric\":null,\"score\":5}"), DECODE_E_MISSING, NULL);
    EXPECT(EV(",\"properties\":{\"metric\":\"mood\",\"score\":5}"), DECODE_E_BAD_METRIC,
           "properties.metric: 'mood' is not nps, csat or ces");
    EXPECT(EV(",\"properties\":{\"metric\":\"NPS\",\"score\":5}"), DECODE_E_BAD_METRIC, NULL);
    EXPECT(EV(",\"properties\":{\"metric\":\"\",\"score\":5}"), DECODE_E_BAD_METRIC, NULL);
    EXPECT(EV(",\"properties\":{\"metric\":\"csat\",\"score\":4,\"scope\":\"journey\"}"), DECODE_OK, NULL);
    cr_assert_eq(ev.scope, EV_SCOPE_JOURNEY);
    EXPECT(EV(",\"properties\":{\"scope\":\"touchpoint\"}"), DECODE_OK, NULL);
    cr_assert_eq(ev.scope, EV_SCOPE_TOUCHPOINT);
    cr_assert_eq(ev.metric, EV_METRIC_NONE);
    EXPECT(EV(",\"properties\":{\"scope\":\"session\"}"), DECODE_E_BAD_SCOPE,
           "properties.scope: 'session' is not touchpoint or journey");
    EXPECT(EV(",\"properties\":{\"scope\":\"\"}"), DECODE_E_BAD_SCOPE, NULL);
    /* MessagePack numbers of every family */
    mp_t m;
    for (int kind = 0; kind < 4; kind++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 6);
        mp_kv(&m, "messageId", "m");
        mp_kv(&m, "type", "track");
        mp_kv(&m, "event", "E");
        mp_kv(&m, "userId", "u");
        mp_str(&m, "timestamp");
        msgpack_pack_uint16(&m.pk, 1000);
        mp_str(&m, "properties");
        msgpack_pack_map(&m.pk, 2);
        mp_kv(&m, "metric", "csat");
        mp_str(&m, "score");
        if (kind == 0) msgpack_pack_uint8(&m.pk, 5);
        if (kind == 1) msgpack_pack_int32(&m.pk, 5);
        if (kind == 2) msgpack_pack_float(&m.pk, 5.0f);
        if (kind == 3) msgpack_pack_float(&m.pk, 4.5f);
        cr_assert_eq(mp_dec(&m), kind == 3 ? DECODE_E_BAD_SCORE : DECODE_OK, "kind %d: %s", kind, err);
        if (kind < 3) cr_assert_eq(ev.score, 5);
    }
}

Test(decode, properties_count) {
    EXPECT(EV(",\"properties\":{\"a\":1,\"b\":[1,2,3],\"c\":{\"d\":1,\"e\":2},\"touchpoint\":\"t\"}"), DECODE_OK, NULL);
    cr_assert_eq(ev.n_properties, 4); /* top-level keys of properties only */
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", EV(",\"properties\":{"));
    n -= 1; /* drop the closing brace of EV */
    for (int i = 0; i < 64; i++) n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    snprintf(buf + n, sizeof(buf) - n, "}}");
    EXPECT(buf, DECODE_OK, NULL);
    cr_assert_eq(ev.n_properties, 64);
    snprintf(buf + n, sizeof(buf) - n, ",\"k64\":64}}");
    EXPECT(buf, DECODE_E_TOO_MANY_PROPERTIES, "properties: more than 64 keys");
    decode_limits_t none = lim;
    none.max_properties = 0;
    const char *j = EV(",\"properties\":{}");
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_AUTO, &none), DECODE_OK, "%s", err);
    j = EV(",\"properties\":{\"a\":1}");
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_AUTO, &none), DECODE_E_TOO_MANY_PROPERTIES);
}

/* ---- limits ------------------------------------------------------------------------------ */

/* A page event with field `key` (a JSON fragment, e.g. "\"userId\"") set to n times 'x'. */
static decode_status_t with_string(const char *member_fmt, size_t n, const decode_limits_t *l) {
    static char big[70000], buf[80000];
    memset(big, 'x', n);
    big[n] = '\0';
    int len = snprintf(buf, sizeof(buf), member_fmt, big);
    return dec_lim(buf, (size_t)len, DECODE_AUTO, l);
}

Test(decode, id_limits) {
    static const char *const ids[] = {
        "{\"messageId\":\"%s\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1}",
        "{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"%s\",\"timestamp\":1}",
        "{\"messageId\":\"m\",\"type\":\"page\",\"anonymousId\":\"%s\",\"timestamp\":1}",
        "{\"messageId\":\"m\",\"type\":\"alias\",\"userId\":\"u\",\"previousId\":\"%s\",\"timestamp\":1}",
    };
    static const char *const names[] = {"messageId", "userId", "anonymousId", "previousId"};
    char want[128];
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(with_string(ids[i], 128, &lim), DECODE_OK, "%s: %s", names[i], err);
        cr_assert_eq(with_string(ids[i], 129, &lim), DECODE_E_ID_TOO_LONG, "%s", names[i]);
        snprintf(want, sizeof(want), "%s: 129 bytes, limit 128", names[i]);
        cr_assert_str_eq(err, want);
        decode_limits_t small = lim;
        small.max_id_bytes = 16;
        cr_assert_eq(with_string(ids[i], 16, &small), DECODE_OK, "%s: %s", names[i], err);
        cr_assert_eq(with_string(ids[i], 17, &small), DECODE_E_ID_TOO_LONG, "%s", names[i]);
        small.max_id_bytes = 1000; /* never above JD_ID_MAX */
        cr_assert_eq(with_string(ids[i], 129, &small), DECODE_E_ID_TOO_LONG, "%s", names[i]);
    }
    /* the limit is on the decoded bytes: 64 escapes of 2 bytes each */
    char buf[1024];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1,\"messageId\":\"");
    for (int i = 0; i < 64; i++) n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\u00e9");
    snprintf(buf + n, sizeof(buf) - n, "\"}");
    EXPECT(buf, DECODE_OK, NULL);
    cr_assert_eq(strlen(ev.message_id), 128);
    snprintf(buf + n, sizeof(buf) - n, "x\"}");
    EXPECT(buf, DECODE_E_ID_TOO_LONG, "messageId: 129 bytes, limit 128");
}

Test(decode, name_and_string_limits) {
    static const struct { const char *fmt; const char *field; size_t max; } f[] = {
        {PAGE(",\"context\":{\"channel\":\"%s\"}"), "context.channel", 63},
        {PAGE(",\"context\":{\"traits\":{\"segment\":\"%s\"}}"), "context.traits.segment", 63},
        {PAGE(",\"traits\":{\"segment\":\"%s\"}"), "traits.segment", 63},
        {PAGE(",\"properties\":{\"touchpoint\":\"%s\"}"), "properties.touchpoint", 63},
        {PAGE(",\"properties\":{\"phase\":\"%s\"}"), "properties.phase", 63},
        {PAGE(",\"properties\":{\"segment\":\"%s\"}"), "properties.segment", 63},
        {"{\"messageId\":\"m\",\"type\":\"track\",\"event\":\"%s\",\"userId\":\"u\",\"timestamp\":1}", "event", 1024},
        {PAGE(",\"name\":\"%s\""), "name", 1024},
        {PAGE(",\"context\":{\"page\":{\"path\":\"%s\"}}"), "context.page.path", 1024},
        {PAGE(",\"properties\":{\"metric\":\"%s\"}"), "properties.metric", 1024},
        {PAGE(",\"other\":\"%s\""), "string", 1024},
        {PAGE(",\"other\":[\"%s\"]"), "string", 1024},
        {PAGE(",\"%s\":1"), "string", 1024},
        {PAGE(",\"properties\":{\"%s\":null}"), "string", 1024},
    };
    char want[128];
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        decode_status_t st = with_string(f[i].fmt, f[i].max, &lim);
        cr_assert(st == DECODE_OK || st == DECODE_E_BAD_METRIC, "%s at its limit: %s", f[i].field, err);
        cr_assert_eq(with_string(f[i].fmt, f[i].max + 1, &lim), DECODE_E_STRING_TOO_LONG, "%s", f[i].field);
        snprintf(want, sizeof(want), "%s: %zu bytes, limit %zu", f[i].field, f[i].max + 1, f[i].max);
        cr_assert_str_eq(err, want);
    }
    /* names are capped at JD_NAME_MAX even when max_string_bytes is lower or higher */
    decode_limits_t l = lim;
    l.max_string_bytes = 4096;
    cr_assert_eq(with_string(f[0].fmt, 64, &l), DECODE_E_STRING_TOO_LONG);
    cr_assert_eq(with_string(f[6].fmt, 4096, &l), DECODE_OK, "%s", err);
    cr_assert_eq(strlen(ev.event), 4096);
    /* an escaped skipped string is measured decoded: 600 escapes = 600 bytes */
    char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", PAGE(",\"other\":\""));
    n -= 1;
    for (int i = 0; i < 600; i++) n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\u0041");
    snprintf(buf + n, sizeof(buf) - n, "\"}");
    EXPECT(buf, DECODE_OK, NULL);
}

Test(decode, message_size) {
    decode_limits_t l = lim;
    const char *j = EV("");
    l.max_message_bytes = strlen(j);
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_AUTO, &l), DECODE_OK, "%s", err);
    l.max_message_bytes = strlen(j) - 1;
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_AUTO, &l), DECODE_E_OVERSIZE);
    char want[64];
    snprintf(want, sizeof(want), "message: %zu bytes, limit %zu", strlen(j), strlen(j) - 1);
    cr_assert_str_eq(err, want);
    /* the arena: len + 64 is enough, too small an arena is refused, not overrun */
    char small[8];
    cr_assert_eq(decode_event(j, strlen(j), DECODE_AUTO, &lim, &ev, small, sizeof(small), err, sizeof(err)),
                 DECODE_E_OVERSIZE);
    char *exact = malloc(strlen(FULL_JSON) + 64);
    cr_assert_eq(decode_event(FULL_JSON, strlen(FULL_JSON), DECODE_AUTO, &lim, &ev, exact, strlen(FULL_JSON) + 64,
                              err, sizeof(err)), DECODE_OK, "%s", err);
    check_full();
    free(exact);
    /* no error buffer at all is allowed */
    cr_assert_eq(decode_event("{", 1, DECODE_AUTO, &lim, &ev, arena, sizeof(arena), NULL, 0), DECODE_E_SYNTAX);
    char one[1] = {'Z'};
    cr_assert_eq(decode_event("{", 1, DECODE_AUTO, &lim, &ev, arena, sizeof(arena), one, 1), DECODE_E_SYNTAX);
    cr_assert_eq(one[0], '\0');
}

/* JSON: a page event whose member "x" is `levels` nested arrays or objects. */
static decode_status_t nested_json(int levels, int objects, const decode_limits_t *l) {
    static char buf[2100000];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", PAGE(",\"x\":"));
    n -= 1;
    for (int i = 0; i < levels; i++) {
        memcpy(buf + n, objects ? "{\"a\":" : "[", objects ? 5 : 1);
        n += objects ? 5 : 1;
    }
    buf[n++] = '1';
    for (int i = 0; i < levels; i++) buf[n++] = objects ? '}' : ']';
    buf[n++] = '}';
    return dec_lim(buf, n, DECODE_AUTO, l);
}

/* MessagePack: a page event whose member "x" is `levels` nested arrays or maps. */
static decode_status_t nested_mp(int levels, int maps, const decode_limits_t *l) {
    mp_t m;
    mp_page_head(&m);
    msgpack_pack_uint32(&m.pk, 1);
    m.sb.data[0] = (char)0x85; /* five members */
    mp_str(&m, "x");
    for (int i = 0; i < levels; i++) {
        if (maps) {
            msgpack_pack_map(&m.pk, 1);
            mp_str(&m, "a");
        } else {
            msgpack_pack_array(&m.pk, 1);
        }
    }
    msgpack_pack_nil(&m.pk);
    decode_status_t st = dec_lim(m.sb.data, m.sb.size, DECODE_AUTO, l);
    msgpack_sbuffer_destroy(&m.sb);
    return st;
}

Test(decode, depth) {
    for (int objects = 0; objects < 2; objects++) {
        /* the top-level object is level 1: 15 more levels are allowed, 16 are not */
        cr_assert_eq(nested_json(15, objects, &lim), DECODE_OK, "%s", err);
        cr_assert_eq(nested_json(16, objects, &lim), DECODE_E_DEPTH);
        cr_assert_str_eq(err, "nesting deeper than 16");
        cr_assert_eq(nested_mp(15, objects, &lim), DECODE_OK, "%s", err);
        cr_assert_eq(nested_mp(16, objects, &lim), DECODE_E_DEPTH);
        cr_assert_str_eq(err, "nesting deeper than 16");
        /* 200000 levels: refused at the limit, no stack overflow */
        decode_limits_t big = lim;
        big.max_message_bytes = 4000000;
        cr_assert_eq(nested_json(200000, objects, &big), DECODE_E_DEPTH);
        cr_assert_eq(nested_mp(200000, objects, &big), DECODE_E_DEPTH);
    }
    /* max_depth beyond the hard maximum is capped, so the recursion stays bounded */
    decode_limits_t deep = lim;
    deep.max_depth = 1000000;
    deep.max_message_bytes = 4000000;
    cr_assert_eq(nested_json((int)DECODE_DEPTH_HARD_MAX - 1, 0, &deep), DECODE_OK, "%s", err);
    cr_assert_eq(nested_json((int)DECODE_DEPTH_HARD_MAX, 0, &deep), DECODE_E_DEPTH);
    cr_assert_eq(nested_json(200000, 1, &deep), DECODE_E_DEPTH);
    /* the recognised containers count too */
    decode_limits_t two = lim;
    two.max_depth = 2;
    const char *j = PAGE(",\"context\":{\"channel\":\"web\"}");
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_AUTO, &two), DECODE_OK, "%s", err);
    j = PAGE(",\"context\":{\"page\":{\"path\":\"/\"}}");
    cr_assert_eq(dec_lim(j, strlen(j), DECODE_AUTO, &two), DECODE_E_DEPTH);
}

/* ---- hostile MessagePack ----------------------------------------------------------------- */

/* Declared lengths and counts far beyond the bytes present are refused before
 * they are used: nothing is walked, reserved or copied for them. */
Test(decode, hostile_msgpack) {
    static const struct { const char *bytes; size_t len; const char *detail; } cases[] = {
        {"\xdd\x40\x00\x00\x00\x01\x02\x03\x04\x05", 10,    /* array32 of 1 Gi elements */
         "MessagePack: truncated, or a declared length of 1073741824 exceeds the 5 bytes left"},
        {"\xdf\x40\x00\x00\x00\xa1x\x01\x02\x03", 10,        /* map32 of 1 Gi pairs: 2 Gi bytes needed */
         "MessagePack: truncated, or a declared length of 2147483648 exceeds the 5 bytes left"},
        {"\xdf\xff\xff\xff\xff\xa1x\x01\x02\x03", 10, NULL}, /* map32 of 4 Gi pairs */
        {"\x81\xa4type\xdb\x40\x00\x00\x00tr", 13,           /* str32 of 1 GiB */
         "MessagePack: truncated, or a declared length of 1073741824 exceeds the 2 bytes left"},
        {"\x81\xa1x\xc6\xff\xff\xff\xff\x00", 9, NULL},      /* bin32 of 4 GiB */
        {"\x81\xa1x\xc9\x7f\xff\xff\xff\x01", 9, NULL},      /* ext32 of 2 GiB */
        {"\x81\xa1x\xc9\x00\x00\x00\x01", 8, NULL},          /* ext32 without its type byte */
        {"\x81\xa1x\xdc\xff\xff", 6, NULL},                  /* array16 of 65535 */
        {"\x81\xa1x\xde\xff\xff\x01", 7, NULL},              /* map16 of 65535 */
        {"\x81\xa1x\xd9\x05" "abc", 8, NULL},                /* str8 cut short */
        {"\x81\xa1x\xd9", 4, NULL},                          /* str8 without its length */
        {"\x81\xa1x\xcb\x00\x00", 6, NULL},                  /* float64 cut short */
        {"\x81\xa1x\xd7\xff\x00", 6, NULL},                  /* fixext8 cut short */
        {"\x81\xa1x", 3, NULL},                              /* key without a value */
        {"\x82\xa1x\x01", 4, NULL},                          /* map one pair short */
        {"\x81", 1, NULL},
        {"\xdf", 1, NULL},
        {"\xc1", 1, "MessagePack: unknown type byte 0xc1"},   /* the never-used byte */
        {"\x81\xa1x\xc1", 4, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        decode_status_t st = decn(cases[i].bytes, cases[i].len);
        cr_assert_eq(st, DECODE_E_SYNTAX, "case %zu: %s", i, decode_reason(st));
        if (cases[i].detail) cr_assert_str_eq(err, cases[i].detail, "case %zu", i);
    }
    cr_assert_eq(decn("\x81\x01\x02", 3), DECODE_E_SYNTAX); /* non-string key */
    cr_assert_str_eq(err, "MessagePack: map keys must be strings");
    cr_assert_eq(decn("\x80\x00", 2), DECODE_E_SYNTAX);
    cr_assert_str_eq(err, "MessagePack: 1 trailing bytes after the map");
    /* a key longer than max_string_bytes */
    static unsigned char longkey[2000];
    longkey[0] = 0x81, longkey[1] = 0xd9, longkey[2] = 0xff; /* str8 of 255 */
    memset(longkey + 3, 'k', 255);
    longkey[258] = 0x01;
    decode_limits_t l = lim;
    l.max_string_bytes = 200;
    cr_assert_eq(dec_lim(longkey, 259, DECODE_AUTO, &l), DECODE_E_STRING_TOO_LONG);
    cr_assert_str_eq(err, "string: 255 bytes, limit 200");
    /* many small elements that are all present are fine (and bounded by the message size) */
    static unsigned char many[70000];
    size_t n = 0;
    const unsigned char head[] = {0x84, 0xa4, 't', 'y', 'p', 'e', 0xa9, 'h', 'e', 'a', 'r', 't', 'b', 'e', 'a', 't',
                                  0xa9, 't', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p', 0x01, 0xa1, 'x', 0xdd,
                                  0x00, 0x00, 0xea, 0x60, /* array32 of 60000 */
                                  0xa1, 'y'};
    memcpy(many, head, sizeof(head) - 2);
    n = sizeof(head) - 2;
    for (int i = 0; i < 60000; i++) many[n++] = (unsigned char)(i & 0x7f);
    many[n++] = 0xa1, many[n++] = 'y', many[n++] = 0xc0;
    cr_assert_eq(decn(many, n), DECODE_OK, "%s", err);
    cr_assert_eq(decn(many, n - 1), DECODE_E_SYNTAX);
}

/* ---- the sample events ---------------------------------------------------------------------- */

typedef struct expect {
    const char *file;
    ev_type_t type;
    long long ts;
    const char *mid, *uid, *aid, *pid, *event, *channel, *path, *name, *tp, *phase, *seg;
    ev_metric_t metric;
    int score;
    ev_scope_t scope;
    uint32_t nprops;
} expect_t;

/* What every valid sample decodes to (times worked out independently). */
static const expect_t VALID[] = {
    {"alias.json", EV_ALIAS, 1767607560000LL, "m-113", "u-4", NULL, "legacy-77", NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0},
    {"chat_started.json", EV_TRACK, 1767690720000LL, "m-106", "u-2", NULL, NULL, "Chat Started", "chat", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0},
    {"checkout_started.json", EV_TRACK, 1767607200000LL, "m-103", "u-1", NULL, NULL, "Checkout Started", "web", "/checkout", NULL, NULL, NULL, NULL, 0, 0, 0, 3},
    {"email_clicked_lowercase_t_space.json", EV_TRACK, 1767722460000LL, "m-118", "u-2", NULL, NULL, "Email Link Clicked", "email", NULL, NULL, "newsletter", NULL, NULL, 0, 0, 0, 2},
    {"email_opened.json", EV_TRACK, 1767693600000LL, "m-107", "u-2", NULL, NULL, "Order Confirmation Opened", "email", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0},
    {"heartbeat.json", EV_HEARTBEAT, 1767607800000LL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0},
    {"heartbeat_epoch_ms.json", EV_HEARTBEAT, 1767607800000LL, "hb-p3-0001", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0},
    {"identify.json", EV_IDENTIFY, 1767607500000LL, "m-112", "u-4", "a-7f3", NULL, NULL, NULL, NULL, NULL, NULL, NULL, "student", 0, 0, 0, 0},
    {"order_completed_store.json", EV_TRACK, 1767627000000LL, "m-104", "u-1", NULL, NULL, "Order Completed", "store", NULL, NULL, NULL, NULL, "smb", 0, 0, 0, 2},
    {"order_completed_web_ist.json", EV_TRACK, 1767609000000LL, "m-115", "u-5", "a-001", NULL, "Order Completed", "web", "/checkout/thank-you", NULL, NULL, "purchase", NULL, 0, 0, 0, 4},
    {"page_view.json", EV_PAGE, 1767607200000LL, "m-100", NULL, "a-7f3", NULL, NULL, "web", "/products/sku-42", "Running shoes", NULL, NULL, NULL, 0, 0, 0, 1},
    {"page_view_nulls.json", EV_PAGE, 1767607205000LL, "m-117", NULL, "a-9c1", NULL, NULL, "web", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0},
    {"phone_call.json", EV_TRACK, 1767604320000LL, "m-105", "u-2", NULL, NULL, "Advice Call Completed", "phone", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 1},
    {"product_viewed.json", EV_TRACK, 1767603750042LL, "m-114", NULL, "a-7f3", NULL, "Product Viewed", "web",
     "/p/laufschuh-\xe2\x80\x9etrail\xe2\x80\x9c", NULL, "product_page", NULL, NULL, 0, 0, 0, 7},
    {"products_searched.json", EV_TRACK, 1767607201500LL, "m-101", "u-1", NULL, NULL, "Products Searched", "app", NULL, NULL, NULL, NULL, "consumer", 0, 0, 0, 1},
    {"screen_app.json", EV_SCREEN, 1767694080123LL, "m-111", "u-3", NULL, NULL, NULL, "app", NULL, "Product Detail", NULL, NULL, NULL, 0, 0, 0, 0},
    {"search_result_clicked.json", EV_TRACK, 1767607200000LL, "m-102", "u-1", NULL, NULL, "Search Result Clicked", "web", NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0},
    {"survey_ces.json", EV_TRACK, 1767694020000LL, "m-110", "u-3", NULL, NULL, "Survey Answered", NULL, NULL, NULL, NULL, NULL, NULL, EV_METRIC_CES, 7, EV_SCOPE_TOUCHPOINT, 2},
    {"survey_csat_journey.json", EV_TRACK, 1767693960000LL, "m-109", "u-2", NULL, NULL, "Survey Answered", NULL, NULL, NULL, NULL, "loyalty", "enterprise", EV_METRIC_CSAT, 2, EV_SCOPE_JOURNEY, 5},
    {"survey_nps_journey.json", EV_TRACK, 1767700800000LL, "m-116", "u-5", NULL, NULL, "Survey Answered", "email", NULL, NULL, NULL, NULL, "consumer", EV_METRIC_NPS, 3, EV_SCOPE_JOURNEY, 4},
    {"survey_nps_touchpoint.json", EV_TRACK, 1767693900000LL, "m-108", "u-2", NULL, NULL, "Survey Answered", NULL, NULL, NULL, "support_chat", NULL, NULL, EV_METRIC_NPS, 9, EV_SCOPE_TOUCHPOINT, 3},
};
#define N_VALID (sizeof(VALID) / sizeof(VALID[0]))

static event_t expected_event(const expect_t *x) {
    event_t e = {.type = x->type, .ts_ms = x->ts, .message_id = x->mid, .user_id = x->uid,
                 .anonymous_id = x->aid, .previous_id = x->pid, .event = x->event, .channel = x->channel,
                 .page_path = x->path, .name = x->name, .touchpoint = x->tp, .phase = x->phase,
                 .segment = x->seg, .metric = x->metric, .score = x->score, .scope = x->scope,
                 .n_properties = x->nprops};
    return e;
}

static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    char *buf = malloc(70001);
    *len = fread(buf, 1, 70000, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

#define SAMPLES JD_SOURCE_DIR "/tests/data/events"

/* Every valid sample: the exact event from JSON; the same event from its
 * MessagePack re-encoding, and with the timestamp as each extension form. */
Test(decode, valid_samples_both_encodings) {
    DIR *d = opendir(SAMPLES "/valid");
    cr_assert(d);
    struct dirent *e;
    size_t seen = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".json")) continue;
        const expect_t *x = NULL;
        for (size_t i = 0; i < N_VALID; i++)
            if (!strcmp(VALID[i].file, e->d_name)) x = &VALID[i];
        cr_assert(x, "%s: no expected values in VALID[]", e->d_name);
        event_t want = expected_event(x);
        size_t len;
        char *json = slurp(SAMPLES "/valid", e->d_name, &len);
        cr_assert_eq(decn(json, len), DECODE_OK, "%s: %s", e->d_name, err);
        event_eq(&ev, &want, e->d_name);
        for (int bits = 0; bits <= 96; bits += 32) {
            char ctx[300];
            snprintf(ctx, sizeof(ctx), "%s as MessagePack (timestamp ext %d)", e->d_name, bits);
            mp_t m;
            json_to_mp(json, &m, bits, x->ts);
            cr_assert_eq(mp_dec(&m), DECODE_OK, "%s: %s", ctx, err);
            event_t w = want;
            if (bits == 32) w.ts_ms -= w.ts_ms % 1000; /* whole seconds only */
            event_eq(&ev, &w, ctx);
        }
        free(json);
        seen++;
    }
    closedir(d);
    cr_assert_eq(seen, N_VALID, "every entry of VALID[] has its file");
}

/* Every invalid sample: the reason its name starts with, from JSON and (when
 * it is JSON at all) from its MessagePack re-encoding. */
Test(decode, invalid_samples_both_encodings) {
    DIR *d = opendir(SAMPLES "/invalid");
    cr_assert(d);
    struct dirent *e;
    int seen = 0, reasons_seen[DECODE__COUNT] = {0};
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".json")) continue;
        const char *sep = strstr(e->d_name, "__");
        cr_assert(sep, "%s: name must be <reason>__<what>.json", e->d_name);
        char reason[64];
        snprintf(reason, sizeof(reason), "%.*s", (int)(sep - e->d_name), e->d_name);
        size_t len;
        char *json = slurp(SAMPLES "/invalid", e->d_name, &len);
        decode_status_t st = decn(json, len);
        cr_assert_str_eq(decode_reason(st), reason, "%s: %s", e->d_name, err);
        cr_assert_neq(err[0], '\0', "%s: the detail is empty", e->d_name);
        reasons_seen[st]++;
        if (st != DECODE_E_SYNTAX) {
            mp_t m;
            json_to_mp(json, &m, 0, 0);
            st = mp_dec(&m);
            cr_assert_str_eq(decode_reason(st), reason, "%s as MessagePack: %s", e->d_name, err);
        }
        free(json);
        seen++;
    }
    closedir(d);
    cr_assert_geq(seen, 30);
    for (int r = DECODE_E_SYNTAX; r < DECODE__COUNT; r++)
        cr_assert_gt(reasons_seen[r], 0, "no invalid sample for %s", decode_reason((decode_status_t)r));
}

/* ---- reasons -------------------------------------------------------------------------------- */

Test(decode, reasons_are_stable) {
    static const char *const names[DECODE__COUNT] = {
        "ok", "oversize", "syntax", "not_object", "depth", "type", "missing", "bad_event_type",
        "id_too_long", "string_too_long", "too_many_properties", "bad_timestamp", "bad_metric",
        "bad_score", "bad_scope", "duplicate_key",
    };
    for (int i = 0; i < DECODE__COUNT; i++)
        cr_assert_str_eq(decode_reason((decode_status_t)i), names[i]);
    cr_assert_str_eq(decode_reason(DECODE__COUNT), "unknown");
    cr_assert_str_eq(decode_reason((decode_status_t)-1), "unknown");
}

/* The first error wins; a message that does not parse sets no field. */
Test(decode, first_error_wins) {
    EXPECT("{\"messageId\":5,\"type\":\"nope\"}", DECODE_E_TYPE, "messageId: expected a string, got a number");
    EXPECT("{\"messageId\":\"m\",\"type\":\"page\",\"userId\":\"u\",\"timestamp\":1,\"x\":[}", DECODE_E_SYNTAX, NULL);
    cr_assert_null(ev.message_id);
    cr_assert_eq(ev.ts_ms, 0);
}
