/*
 * decode.c -- turns the bytes of one Kafka message into an event_t
 * (SPEC §3), from JSON or MessagePack. Pure; no I/O, no allocation: every
 * string goes into the caller's arena.
 *
 * Both encodings share one schema walk: a parser reads a key, schema_child()
 * says what that key is at this position (a field we keep, an object we
 * descend into, or something to skip), and the value is read accordingly.
 * Then validate() checks what the SPEC requires of the event as a whole.
 *
 * Hostile input: the whole message is bounded by max_message_bytes; every
 * string (kept or skipped, keys included) by max_string_bytes, ids by
 * max_id_bytes, names by JD_NAME_MAX; nesting by max_depth; properties by
 * max_properties. A MessagePack length or count is checked against the bytes
 * actually left before it is used (a count n needs at least n bytes, a map
 * 2n), so a 10-byte input cannot make the decoder walk or reserve a gigabyte.
 */
#include "decode.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const REASONS[DECODE__COUNT] = {
    "ok", "oversize", "syntax", "not_object", "depth", "type", "missing", "bad_event_type",
    "id_too_long", "string_too_long", "too_many_properties", "bad_timestamp", "bad_metric",
    "bad_score", "bad_scope", "duplicate_key",
};

const char *decode_reason(decode_status_t st) {
    return st >= 0 && st < DECODE__COUNT ? REASONS[st] : "unknown";
}

/* ---- the schema ---------------------------------------------------------- */

typedef enum {
    /* leaves */
    F_MESSAGE_ID = 0, F_TYPE, F_EVENT, F_USER_ID, F_ANON_ID, F_PREV_ID, F_TIMESTAMP, F_NAME,
    F_CHANNEL, F_PAGE_PATH, F_CTX_SEGMENT, F_TOUCHPOINT, F_PHASE, F_METRIC, F_SCORE, F_SCOPE,
    F_PROP_SEGMENT, F_TRAITS_SEGMENT,
    F__LEAVES,
    /* containers */
    C_ROOT = F__LEAVES, C_CONTEXT, C_PAGE, C_CTX_TRAITS, C_PROPERTIES, C_TRAITS,
    C__COUNT,
    X_SKIP = C__COUNT, /* anything else */
} pos_t;

typedef struct child { pos_t parent; const char *key; size_t len; pos_t pos; } child_t;

#define K(s) s, sizeof(s) - 1

static const child_t SCHEMA[] = {
    {C_ROOT, K("messageId"), F_MESSAGE_ID}, {C_ROOT, K("type"), F_TYPE}, {C_ROOT, K("event"), F_EVENT},
    {C_ROOT, K("userId"), F_USER_ID}, {C_ROOT, K("anonymousId"), F_ANON_ID},
    {C_ROOT, K("previousId"), F_PREV_ID}, {C_ROOT, K("timestamp"), F_TIMESTAMP},
    {C_ROOT, K("name"), F_NAME}, {C_ROOT, K("context"), C_CONTEXT},
    {C_ROOT, K("properties"), C_PROPERTIES}, {C_ROOT, K("traits"), C_TRAITS},
    {C_CONTEXT, K("channel"), F_CHANNEL}, {C_CONTEXT, K("page"), C_PAGE},
    {C_CONTEXT, K("traits"), C_CTX_TRAITS}, {C_PAGE, K("path"), F_PAGE_PATH},
    {C_CTX_TRAITS, K("segment"), F_CTX_SEGMENT}, {C_TRAITS, K("segment"), F_TRAITS_SEGMENT},
    {C_PROPERTIES, K("touchpoint"), F_TOUCHPOINT}, {C_PROPERTIES, K("phase"), F_PHASE},
    {C_PROPERTIES, K("metric"), F_METRIC}, {C_PROPERTIES, K("score"), F_SCORE},
    {C_PROPERTIES, K("scope"), F_SCOPE}, {C_PROPERTIES, K("segment"), F_PROP_SEGMENT},
};

static const char *const FIELD_NAMES[F__LEAVES] = {
    "messageId", "type", "event", "userId", "anonymousId", "previousId", "timestamp", "name",
    "context.channel", "context.page.path", "context.traits.segment", "properties.touchpoint",
    "properties.phase", "properties.metric", "properties.score", "properties.scope",
    "properties.segment", "traits.segment",
};

static pos_t schema_child(pos_t parent, const char *key, size_t len) {
    if (parent == X_SKIP) return X_SKIP;
    for (size_t i = 0; i < sizeof(SCHEMA) / sizeof(SCHEMA[0]); i++)
        if (SCHEMA[i].parent == parent && SCHEMA[i].len == len && !memcmp(SCHEMA[i].key, key, len))
            return SCHEMA[i].pos;
    return X_SKIP;
}

/* ---- decoding state ---------------------------------------------------------- */

typedef struct dec {
    const decode_limits_t *lim;
    event_t *ev;
    char *arena;
    size_t acap, aused;
    char *err;
    size_t errlen;
    decode_status_t st;
    uint32_t depth;
    uint32_t seen;                     /* bit per leaf field */
    const char *str[F__LEAVES];        /* string values, in the arena */
    int has_num[F__LEAVES];
    double num[F__LEAVES];             /* numeric values (timestamp, score) */
    int num_is_int[F__LEAVES];
} dec_t;

static int derr(dec_t *d, decode_status_t st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int derr(dec_t *d, decode_status_t st, const char *fmt, ...) {
    if (d->st != DECODE_OK) return -1; /* keep the first error */
    va_list ap;
    d->st = st;
    va_start(ap, fmt);
    vsnprintf(d->err, d->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The byte limit for a string at position pos. */
static size_t limit_for(const dec_t *d, pos_t pos, decode_status_t *st) {
    switch (pos) {
    case F_MESSAGE_ID: case F_USER_ID: case F_ANON_ID: case F_PREV_ID:
        *st = DECODE_E_ID_TOO_LONG;
        return d->lim->max_id_bytes;
    case F_CHANNEL: case F_CTX_SEGMENT: case F_TOUCHPOINT: case F_PHASE: case F_PROP_SEGMENT:
    case F_TRAITS_SEGMENT:
        *st = DECODE_E_STRING_TOO_LONG;
        return JD_NAME_MAX;
    default:
        *st = DECODE_E_STRING_TOO_LONG;
        return d->lim->max_string_bytes;
    }
}

static int check_len(dec_t *d, pos_t pos, size_t len) {
    decode_status_t st;
    size_t max = limit_for(d, pos, &st);
    if (len <= max) return 0;
    return derr(d, st, "%s: %zu bytes, limit %zu", pos < F__LEAVES ? FIELD_NAMES[pos] : "string",
                len, max);
}

/* Record that leaf pos was given; a second time is an error. */
static int mark_seen(dec_t *d, pos_t pos) {
    if (d->seen & (1u << pos)) return derr(d, DECODE_E_DUPLICATE_KEY, "%s: given twice", FIELD_NAMES[pos]);
    d->seen |= 1u << pos;
    return 0;
}

/* Reserve len+1 bytes of arena for a string value. */
static char *arena_take(dec_t *d, size_t len) {
    if (d->aused + len + 1 > d->acap) {
        derr(d, DECODE_E_OVERSIZE, "decoded strings exceed the arena (%zu bytes)", d->acap);
        return NULL;
    }
    char *p = d->arena + d->aused;
    d->aused += len + 1;
    return p;
}

static int type_error(dec_t *d, pos_t pos, const char *want) {
    return derr(d, DECODE_E_TYPE, "%s: expected %s", FIELD_NAMES[pos], want);
}

/* A number arrived at leaf pos. */
static int leaf_number(dec_t *d, pos_t pos, double v, int is_int) {
    if (pos >= F__LEAVES) return 0;
    if (mark_seen(d, pos) < 0) return -1;
    if (pos != F_TIMESTAMP && pos != F_SCORE) return type_error(d, pos, "a string");
    d->has_num[pos] = 1;
    d->num[pos] = v;
    d->num_is_int[pos] = is_int;
    return 0;
}

/* null at leaf pos: the field is absent. */
static int leaf_null(dec_t *d, pos_t pos) {
    if (pos >= F__LEAVES) return 0;
    return mark_seen(d, pos);
}

static int leaf_other(dec_t *d, pos_t pos, const char *what) {
    if (pos >= F__LEAVES && pos != X_SKIP)
        return derr(d, DECODE_E_TYPE, "%s: expected an object, got %s",
                    pos == C_CONTEXT ? "context" : pos == C_PAGE ? "context.page"
                    : pos == C_PROPERTIES ? "properties" : "traits", what);
    if (pos >= F__LEAVES) return 0;
    return type_error(d, pos, pos == F_TIMESTAMP ? "a string or an integer"
                              : pos == F_SCORE ? "a number" : "a string");
}

static int enter(dec_t *d) {
    if (++d->depth > d->lim->max_depth)
        return derr(d, DECODE_E_DEPTH, "nesting deeper than %u", d->lim->max_depth);
    return 0;
}

static int count_property(dec_t *d, pos_t parent) {
    if (parent != C_PROPERTIES) return 0;
    if (++d->ev->n_properties > d->lim->max_properties)
        return derr(d, DECODE_E_TOO_MANY_PROPERTIES, "properties: more than %u keys",
                    d->lim->max_properties);
    return 0;
}

/* ---- JSON ------------------------------------------------------------------------ */

typedef struct jcur { const unsigned char *p, *end; } jcur_t;

static void ws(jcur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int syntax(dec_t *d, const jcur_t *c, const unsigned char *start, const char *what) {
    return derr(d, DECODE_E_SYNTAX, "JSON: %s at byte %td", what, c->p - start);
}

static int hex4(const unsigned char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char h = p[i];
        unsigned x = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                   : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 16;
        if (x == 16) return -1;
        *v = *v << 4 | x;
    }
    return 0;
}

static size_t put_utf8(unsigned cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One \u escape (p at 'u'), surrogate pairs joined; returns bytes consumed or -1. */
static int json_uescape(const unsigned char *p, const unsigned char *end, unsigned *cp) {
    if (end - p < 5 || hex4(p + 1, cp) < 0) return -1;
    if (*cp >= 0xdc00 && *cp <= 0xdfff) return -1;
    if (*cp < 0xd800 || *cp > 0xdbff) return 5;
    unsigned lo;
    if (end - p < 11 || p[5] != '\\' || p[6] != 'u' || hex4(p + 7, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
        return -1;
    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    return 11;
}

/*
 * Read a string (c->p just after the opening quote). Unescaped bytes go to
 * out, as many as fit in cap (NULL: only validate and measure); *len gets the
 * whole unescaped length.
 */
static int json_string(dec_t *d, jcur_t *c, const unsigned char *start, char *out, size_t cap,
                       size_t *len) {
    size_t n = 0;
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == '"') {
            c->p++;
            *len = n;
            return 0;
        }
        if (ch < 0x20) return syntax(d, c, start, "control character in string");
        if (ch != '\\') {
            const unsigned char *q = c->p;
            while (q < c->end && *q != '"' && *q != '\\' && *q >= 0x20) q++;
            if (out && n + (size_t)(q - c->p) <= cap) memcpy(out + n, c->p, (size_t)(q - c->p));
            n += (size_t)(q - c->p);
            c->p = q;
            continue;
        }
        if (c->end - c->p < 2) break;
        char buf[4];
        size_t k = 1;
        switch (c->p[1]) {
        case '"': buf[0] = '"'; break;
        case '\\': buf[0] = '\\'; break;
        case '/': buf[0] = '/'; break;
        case 'b': buf[0] = '\b'; break;
        case 'f': buf[0] = '\f'; break;
        case 'n': buf[0] = '\n'; break;
        case 'r': buf[0] = '\r'; break;
        case 't': buf[0] = '\t'; break;
        case 'u': {
            unsigned cp;
            int used = json_uescape(c->p + 1, c->end, &cp);
            if (used < 0) return syntax(d, c, start, "bad \\u escape");
            k = put_utf8(cp, buf);
            if (out && n + k <= cap) memcpy(out + n, buf, k);
            n += k;
            c->p += 1 + used;
            continue;
        }
        default: return syntax(d, c, start, "bad escape");
        }
        if (out && n < cap) out[n] = buf[0];
        n++;
        c->p += 2;
    }
    return syntax(d, c, start, "unterminated string");
}

/* A number token; *is_int when it has no fraction or exponent. */
static int json_number(dec_t *d, jcur_t *c, const unsigned char *start, double *v, int *is_int) {
    const unsigned char *s = c->p;
    char buf[64];
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return syntax(d, c, start, "bad number");
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
        return syntax(d, c, start, "leading zero");
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    *is_int = 1;
    if (c->p < c->end && *c->p == '.') {
        *is_int = 0;
        c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return syntax(d, c, start, "bad number");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        *is_int = 0;
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return syntax(d, c, start, "bad number");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    }
    size_t n = (size_t)(c->p - s);
    if (n >= sizeof(buf)) return syntax(d, c, start, "number too long");
    memcpy(buf, s, n);
    buf[n] = '\0';
    *v = strtod(buf, NULL);
    return 0;
}

static int json_literal(dec_t *d, jcur_t *c, const unsigned char *start, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n)) return syntax(d, c, start, "bad literal");
    c->p += n;
    return 0;
}

static int json_value(dec_t *d, jcur_t *c, const unsigned char *start, pos_t pos);

/* A string value at pos: kept in the arena if pos is a leaf, else measured. */
static int json_string_value(dec_t *d, jcur_t *c, const unsigned char *start, pos_t pos) {
    size_t len;
    c->p++;
    if (pos == F_SCORE) return type_error(d, pos, "a number");
    if (pos < F__LEAVES) {
        if (mark_seen(d, pos) < 0) return -1;
        size_t room = (size_t)(c->end - c->p);
        char *out = arena_take(d, room);
        if (!out || json_string(d, c, start, out, room, &len) < 0 || check_len(d, pos, len) < 0) return -1;
        out[len] = '\0';
        d->aused = (size_t)(out - d->arena) + len + 1; /* give back the unused reservation */
        d->str[pos] = out;
        return 0;
    }
    if (json_string(d, c, start, NULL, 0, &len) < 0) return -1;
    if (pos != X_SKIP) return leaf_other(d, pos, "a string");
    return check_len(d, X_SKIP, len);
}

static int json_object(dec_t *d, jcur_t *c, const unsigned char *start, pos_t pos) {
    char key[256];
    if (enter(d) < 0) return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        size_t klen;
        ws(c);
        if (c->p >= c->end || *c->p != '"') return syntax(d, c, start, "expected a key");
        c->p++;
        if (json_string(d, c, start, key, sizeof(key), &klen) < 0 || check_len(d, X_SKIP, klen) < 0)
            return -1;
        pos_t child = klen <= sizeof(key) ? schema_child(pos, key, klen) : X_SKIP;
        if (count_property(d, pos) < 0) return -1;
        ws(c);
        if (c->p >= c->end || *c->p != ':') return syntax(d, c, start, "expected ':'");
        c->p++;
        ws(c);
        if (json_value(d, c, start, child) < 0) return -1;
        ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            d->depth--;
            return 0;
        }
        return syntax(d, c, start, "expected ',' or '}'");
    }
}

static int json_array(dec_t *d, jcur_t *c, const unsigned char *start, pos_t pos) {
    if (pos != X_SKIP && leaf_other(d, pos, "an array") < 0) return -1;
    if (enter(d) < 0) return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        ws(c);
        if (json_value(d, c, start, X_SKIP) < 0) return -1;
        ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            d->depth--;
            return 0;
        }
        return syntax(d, c, start, "expected ',' or ']'");
    }
}

static int json_value(dec_t *d, jcur_t *c, const unsigned char *start, pos_t pos) {
    if (c->p >= c->end) return syntax(d, c, start, "unexpected end");
    switch (*c->p) {
    case '{':
        if (pos < F__LEAVES) return leaf_other(d, pos, "an object");
        return json_object(d, c, start, pos);
    case '[': return json_array(d, c, start, pos);
    case '"': return json_string_value(d, c, start, pos);
    case 't':
        if (json_literal(d, c, start, "true") < 0) return -1;
        return pos == X_SKIP ? 0 : leaf_other(d, pos, "a boolean");
    case 'f':
        if (json_literal(d, c, start, "false") < 0) return -1;
        return pos == X_SKIP ? 0 : leaf_other(d, pos, "a boolean");
    case 'n':
        if (json_literal(d, c, start, "null") < 0) return -1;
        return leaf_null(d, pos);
    default: {
        double v = 0;
        int is_int = 0;
        if (json_number(d, c, start, &v, &is_int) < 0) return -1;
        if (pos == X_SKIP) return 0;
        if (pos >= F__LEAVES) return leaf_other(d, pos, "a number");
        return leaf_number(d, pos, v, is_int);
    }
    }
}

static int decode_json(dec_t *d, const unsigned char *buf, size_t len) {
    jcur_t c = {buf, buf + len};
    ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return derr(d, c.p < c.end && (*c.p == '[' || *c.p == '"' || (*c.p >= '0' && *c.p <= '9'))
                           ? DECODE_E_NOT_OBJECT : DECODE_E_SYNTAX,
                    "JSON: the event must be an object");
    if (json_object(d, &c, buf, C_ROOT) < 0) return -1;
    ws(&c);
    if (c.p != c.end) return syntax(d, &c, buf, "trailing bytes after the object");
    return 0;
}

/* ---- MessagePack ---------------------------------------------------------------- */

typedef struct mcur { const unsigned char *p, *end; } mcur_t;

static int truncated(dec_t *d) { return derr(d, DECODE_E_SYNTAX, "MessagePack: truncated or declared length exceeds the message"); }

static int need(dec_t *d, const mcur_t *c, uint64_t n) {
    return (uint64_t)(c->end - c->p) < n ? truncated(d) : 0;
}

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Read an n-byte big-endian length after the type byte. */
static int mp_len(dec_t *d, mcur_t *c, int n, uint64_t *len) {
    if (need(d, c, (uint64_t)n) < 0) return -1;
    *len = be(c->p, n);
    c->p += n;
    return 0;
}

typedef enum { MP_NIL, MP_BOOL, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT } mptype_t;

typedef struct mpval {
    mptype_t t;
    int64_t i;       /* MP_INT (also uint64 up to INT64_MAX) */
    int big;         /* unsigned beyond INT64_MAX */
    double f;
    uint64_t len;    /* str/bin/ext length, array/map count */
    int8_t ext;
    const unsigned char *data;
} mpval_t;

static int mp_fixed(dec_t *d, mcur_t *c, unsigned char b, mpval_t *v) {
    static const int8_t sizes[] = {1, 2, 4, 8};
    if (b >= 0xcc && b <= 0xcf) {           /* uint 8..64 */
        int n = sizes[b - 0xcc];
        if (need(d, c, (uint64_t)n) < 0) return -1;
        uint64_t u = be(c->p, n);
        c->p += n;
        v->t = MP_INT;
        v->big = u > INT64_MAX;
        v->i = (int64_t)u;
        return 0;
    }
    if (b >= 0xd0 && b <= 0xd3) {           /* int 8..64 */
        int n = sizes[b - 0xd0];
        if (need(d, c, (uint64_t)n) < 0) return -1;
        uint64_t u = be(c->p, n);
        c->p += n;
        int shift = 64 - 8 * n;
        v->t = MP_INT;
        v->i = shift ? (int64_t)(u << shift) >> shift : (int64_t)u;
        return 0;
    }
    if (b == 0xca || b == 0xcb) {           /* float 32/64 */
        int n = b == 0xca ? 4 : 8;
        if (need(d, c, (uint64_t)n) < 0) return -1;
        uint64_t u = be(c->p, n);
        c->p += n;
        v->t = MP_FLOAT;
        if (n == 4) {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, 4);
            v->f = f;
        } else {
            memcpy(&v->f, &u, 8);
        }
        return 0;
    }
    return derr(d, DECODE_E_SYNTAX, "MessagePack: unknown type byte 0x%02x", b);
}

/* Read one value header; str/bin/ext data are checked present and skipped,
 * array/map counts checked against the bytes left (>= 1 byte per element). */
static int mp_head(dec_t *d, mcur_t *c, mpval_t *v) {
    memset(v, 0, sizeof(*v));
    if (need(d, c, 1) < 0) return -1;
    unsigned char b = *c->p++;
    uint64_t n = 0;
    if (b <= 0x7f) { v->t = MP_INT; v->i = b; return 0; }
    if (b >= 0xe0) { v->t = MP_INT; v->i = (int8_t)b; return 0; }
    if (b >= 0x80 && b <= 0x8f) { v->t = MP_MAP; n = b & 0x0f; }
    else if (b >= 0x90 && b <= 0x9f) { v->t = MP_ARRAY; n = b & 0x0f; }
    else if (b >= 0xa0 && b <= 0xbf) { v->t = MP_STR; n = b & 0x1f; }
    else switch (b) {
    case 0xc0: v->t = MP_NIL; return 0;
    case 0xc2: case 0xc3: v->t = MP_BOOL; return 0;
    case 0xd9: case 0xda: case 0xdb:
        v->t = MP_STR;
        if (mp_len(d, c, 1 << (b - 0xd9), &n) < 0) return -1;
        break;
    case 0xc4: case 0xc5: case 0xc6:
        v->t = MP_BIN;
        if (mp_len(d, c, 1 << (b - 0xc4), &n) < 0) return -1;
        break;
    case 0xdc: case 0xdd:
        v->t = MP_ARRAY;
        if (mp_len(d, c, b == 0xdc ? 2 : 4, &n) < 0) return -1;
        break;
    case 0xde: case 0xdf:
        v->t = MP_MAP;
        if (mp_len(d, c, b == 0xde ? 2 : 4, &n) < 0) return -1;
        break;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        v->t = MP_EXT;
        n = 1u << (b - 0xd4);
        break;
    case 0xc7: case 0xc8: case 0xc9:
        v->t = MP_EXT;
        if (mp_len(d, c, 1 << (b - 0xc7), &n) < 0) return -1;
        break;
    default: return mp_fixed(d, c, b, v);
    }
    v->len = n;
    if (v->t == MP_EXT) {
        if (need(d, c, n + 1) < 0) return -1;
        v->ext = (int8_t)*c->p++;
    }
    if (v->t == MP_STR || v->t == MP_BIN || v->t == MP_EXT) {
        if (need(d, c, n) < 0) return -1;
        v->data = c->p;
        c->p += n;
    } else if (v->t == MP_ARRAY || v->t == MP_MAP) {
        if (need(d, c, v->t == MP_MAP ? 2 * n : n) < 0) return -1;
    }
    return 0;
}

/* The MessagePack timestamp extension (type -1) in milliseconds. */
static int mp_timestamp(const mpval_t *v, double *ms) {
    if (v->ext != -1) return -1;
    if (v->len == 4) { *ms = (double)be(v->data, 4) * 1000.0; return 0; }
    if (v->len == 8) {
        uint64_t x = be(v->data, 8);
        *ms = (double)(x & 0x3ffffffffULL) * 1000.0 + (double)(x >> 34) / 1e6;
        return 0;
    }
    if (v->len == 12) {
        int64_t s = (int64_t)be(v->data + 4, 8);
        *ms = (double)s * 1000.0 + (double)be(v->data, 4) / 1e6;
        return 0;
    }
    return -1;
}

static int mp_value(dec_t *d, mcur_t *c, pos_t pos);

static int mp_map(dec_t *d, mcur_t *c, uint64_t n, pos_t pos) {
    if (enter(d) < 0) return -1;
    for (uint64_t i = 0; i < n; i++) {
        mpval_t k;
        if (mp_head(d, c, &k) < 0) return -1;
        if (k.t != MP_STR) return derr(d, DECODE_E_SYNTAX, "MessagePack: map keys must be strings");
        if (check_len(d, X_SKIP, k.len) < 0 || count_property(d, pos) < 0) return -1;
        if (mp_value(d, c, schema_child(pos, (const char *)k.data, k.len)) < 0) return -1;
    }
    d->depth--;
    return 0;
}

static int mp_string_value(dec_t *d, const mpval_t *v, pos_t pos) {
    if (pos == X_SKIP) return check_len(d, X_SKIP, v->len);
    if (pos >= F__LEAVES) return leaf_other(d, pos, "a string");
    if (pos == F_SCORE) return type_error(d, pos, "a number");
    if (mark_seen(d, pos) < 0 || check_len(d, pos, v->len) < 0) return -1;
    char *out = arena_take(d, v->len);
    if (!out) return -1;
    memcpy(out, v->data, v->len);
    out[v->len] = '\0';
    if (strlen(out) != v->len) return derr(d, DECODE_E_SYNTAX, "%s: NUL byte in string", FIELD_NAMES[pos]);
    d->str[pos] = out;
    return 0;
}

static int mp_value(dec_t *d, mcur_t *c, pos_t pos) {
    mpval_t v;
    if (mp_head(d, c, &v) < 0) return -1;
    switch (v.t) {
    case MP_NIL: return leaf_null(d, pos);
    case MP_STR: return mp_string_value(d, &v, pos);
    case MP_INT:
        if (pos >= F__LEAVES) return pos == X_SKIP ? 0 : leaf_other(d, pos, "a number");
        return leaf_number(d, pos, v.big ? 1e19 : (double)v.i, 1);
    case MP_FLOAT:
        if (pos >= F__LEAVES) return pos == X_SKIP ? 0 : leaf_other(d, pos, "a number");
        return leaf_number(d, pos, v.f, 0);
    case MP_EXT: {
        double ms;
        if (pos == F_TIMESTAMP && mp_timestamp(&v, &ms) == 0) return leaf_number(d, pos, floor(ms), 1);
        return pos == X_SKIP ? 0 : leaf_other(d, pos, "an extension value");
    }
    case MP_MAP:
        if (pos < F__LEAVES) return leaf_other(d, pos, "a map");
        return mp_map(d, c, v.len, pos);
    case MP_ARRAY:
        if (pos != X_SKIP && leaf_other(d, pos, "an array") < 0) return -1;
        if (enter(d) < 0) return -1;
        for (uint64_t i = 0; i < v.len; i++)
            if (mp_value(d, c, X_SKIP) < 0) return -1;
        d->depth--;
        return 0;
    default:
        return pos == X_SKIP ? 0 : leaf_other(d, pos, v.t == MP_BOOL ? "a boolean" : "binary data");
    }
}

static int decode_msgpack(dec_t *d, const unsigned char *buf, size_t len) {
    mcur_t c = {buf, buf + len};
    mpval_t v;
    if (mp_head(d, &c, &v) < 0) return -1;
    if (v.t != MP_MAP) return derr(d, DECODE_E_NOT_OBJECT, "MessagePack: the event must be a map");
    if (mp_map(d, &c, v.len, C_ROOT) < 0) return -1;
    if (c.p != c.end) return derr(d, DECODE_E_SYNTAX, "MessagePack: trailing bytes after the map");
    return 0;
}

/* ---- validation -------------------------------------------------------------------- */

static int digits(const char *s, int n, int *v) {
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int dd) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + dd - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" to epoch ms. */
static int parse_iso8601(const char *s, int64_t *ms) {
    int y, mo, dd, h, mi, se, frac = 0, tzh = 0, tzm = 0;
    size_t n = strlen(s);
    if (n < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &dd) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &se))
        return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || dd < 1 || dd > mdays[mo - 1] || h > 23 || mi > 59 || se > 60) return -1;
    if (mo == 2 && dd == 29 && (y % 4 || (y % 100 == 0 && y % 400))) return -1;
    const char *p = s + 19;
    if (*p == '.') {
        int k = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, k++)
            if (k < 3) frac = frac * 10 + (*p - '0');
        if (k == 0) return -1;
        for (; k < 3; k++) frac *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') p++;
    else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        if (digits(p + 1, 2, &tzh) || p[3] != ':' || digits(p + 4, 2, &tzm) || tzh > 23 || tzm > 59) return -1;
        p += 6;
    } else {
        return -1; /* a zone is required */
    }
    if (*p) return -1;
    int64_t secs = days_from_civil(y, mo, dd) * 86400 + h * 3600 + mi * 60 + se;
    secs -= sign * (tzh * 3600 + tzm * 60);
    *ms = secs * 1000 + frac;
    return 0;
}

int decode_parse_time(const char *s, int64_t *ms) { return parse_iso8601(s, ms); }

static int set_timestamp(dec_t *d) {
    event_t *ev = d->ev;
    if (d->str[F_TIMESTAMP]) {
        if (parse_iso8601(d->str[F_TIMESTAMP], &ev->ts_ms) < 0)
            return derr(d, DECODE_E_BAD_TIMESTAMP, "timestamp: '%s' is not ISO-8601 with a zone",
                        d->str[F_TIMESTAMP]);
        return 0;
    }
    if (d->has_num[F_TIMESTAMP]) {
        double v = d->num[F_TIMESTAMP];
        if (!d->num_is_int[F_TIMESTAMP] || v < 0 || v > 253402300799999.0)
            return derr(d, DECODE_E_BAD_TIMESTAMP, "timestamp: %g is not epoch milliseconds", v);
        ev->ts_ms = (int64_t)v;
        return 0;
    }
    return derr(d, DECODE_E_MISSING, "timestamp: required");
}

static int set_type(dec_t *d) {
    static const char *const T[] = {"track", "page", "screen", "identify", "alias", "heartbeat"};
    const char *t = d->str[F_TYPE];
    if (!t) return derr(d, DECODE_E_MISSING, "type: required");
    for (int i = 0; i < 6; i++)
        if (!strcmp(t, T[i])) {
            d->ev->type = (ev_type_t)i;
            return 0;
        }
    return derr(d, DECODE_E_BAD_EVENT_TYPE, "type: '%s' is not track, page, screen, identify, alias or heartbeat", t);
}

static int set_survey(dec_t *d) {
    static const struct { const char *name; int lo, hi; } M[] = {{"nps", 0, 10}, {"csat", 1, 5}, {"ces", 1, 7}};
    event_t *ev = d->ev;
    const char *metric = d->str[F_METRIC];
    if (d->str[F_SCOPE]) {
        if (!strcmp(d->str[F_SCOPE], "journey")) ev->scope = EV_SCOPE_JOURNEY;
        else if (strcmp(d->str[F_SCOPE], "touchpoint"))
            return derr(d, DECODE_E_BAD_SCOPE, "properties.scope: '%s' is not touchpoint or journey", d->str[F_SCOPE]);
    }
    if (!metric) {
        if (d->has_num[F_SCORE])
            return derr(d, DECODE_E_MISSING, "properties.metric: required with properties.score");
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        if (strcmp(metric, M[i].name)) continue;
        if (!d->has_num[F_SCORE])
            return derr(d, DECODE_E_BAD_SCORE, "properties.score: required for %s", metric);
        double s = d->num[F_SCORE];
        if (s != floor(s) || s < M[i].lo || s > M[i].hi)
            return derr(d, DECODE_E_BAD_SCORE, "properties.score: %g out of range %d..%d for %s (integers only)",
                        s, M[i].lo, M[i].hi, metric);
        ev->metric = (ev_metric_t)(i + 1);
        ev->score = (int)s;
        return 0;
    }
    return derr(d, DECODE_E_BAD_METRIC, "properties.metric: '%s' is not nps, csat or ces", metric);
}

/* Empty required strings are missing. */
static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

static int validate(dec_t *d) {
    event_t *ev = d->ev;
    if (set_type(d) < 0 || set_timestamp(d) < 0) return -1;
    ev->message_id = nonempty(d->str[F_MESSAGE_ID]);
    ev->user_id = nonempty(d->str[F_USER_ID]);
    ev->anonymous_id = nonempty(d->str[F_ANON_ID]);
    ev->previous_id = nonempty(d->str[F_PREV_ID]);
    ev->event = nonempty(d->str[F_EVENT]);
    ev->channel = nonempty(d->str[F_CHANNEL]);
    ev->page_path = d->str[F_PAGE_PATH];
    ev->name = d->str[F_NAME];
    ev->touchpoint = nonempty(d->str[F_TOUCHPOINT]);
    ev->phase = nonempty(d->str[F_PHASE]);
    ev->segment = nonempty(d->str[F_PROP_SEGMENT]);
    if (!ev->segment) ev->segment = nonempty(d->str[F_TRAITS_SEGMENT]);
    if (!ev->segment) ev->segment = nonempty(d->str[F_CTX_SEGMENT]);
    if (ev->type == EV_HEARTBEAT) return 0; /* timestamp is all a heartbeat needs */
    if (!ev->message_id) return derr(d, DECODE_E_MISSING, "messageId: required");
    if (!ev->user_id && !ev->anonymous_id) return derr(d, DECODE_E_MISSING, "userId or anonymousId: required");
    if (ev->type == EV_TRACK && !ev->event) return derr(d, DECODE_E_MISSING, "event: required for track");
    if (ev->type == EV_IDENTIFY && (!ev->user_id || !ev->anonymous_id))
        return derr(d, DECODE_E_MISSING, "identify: needs both userId and anonymousId");
    if (ev->type == EV_ALIAS && (!ev->user_id || !ev->previous_id))
        return derr(d, DECODE_E_MISSING, "alias: needs userId and previousId");
    return set_survey(d);
}

decode_status_t decode_event(const void *buf, size_t len, decode_encoding_t enc,
                             const decode_limits_t *lim, event_t *ev,
                             char *arena, size_t arena_cap,
                             char *errbuf, size_t errlen) {
    dec_t d;
    memset(&d, 0, sizeof(d));
    memset(ev, 0, sizeof(*ev));
    d.lim = lim;
    d.ev = ev;
    d.arena = arena;
    d.acap = arena_cap;
    d.err = errbuf;
    d.errlen = errlen;
    if (errlen) errbuf[0] = '\0';
    if (len > lim->max_message_bytes) {
        derr(&d, DECODE_E_OVERSIZE, "message: %zu bytes, limit %zu", len, lim->max_message_bytes);
        return d.st;
    }
    if (!len || !buf) {
        derr(&d, DECODE_E_SYNTAX, "message: empty");
        return d.st;
    }
    const unsigned char *b = buf;
    size_t i = 0;
    while (enc == DECODE_AUTO && i < len && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) i++;
    int json = enc == DECODE_JSON || (enc == DECODE_AUTO && i < len && b[i] == '{');
    if ((json ? decode_json(&d, b, len) : decode_msgpack(&d, b, len)) == 0) validate(&d);
    return d.st;
}
