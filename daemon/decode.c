/*
 * decode.c -- turns the bytes of one Kafka message into an event_t
 * (SPEC §3), from JSON or MessagePack. Pure; no I/O, no allocation: every
 * string goes into the caller's arena. The input contract (fields, limits,
 * the MessagePack mapping, which rule gives which reason) is written down in
 * schemas/event.schema.json and schemas/README.md, "Input events".
 *
 * Both encodings share one schema walk: a parser reads a key, schema_child()
 * says what that key is at this position (a field we keep, an object we
 * descend into, or something to skip), and the value is read accordingly.
 * Then validate() checks what the SPEC requires of the event as a whole.
 * One pass over the bytes; a kept string is copied once into the arena (its
 * escapes resolved on the way), a skipped one is only scanned.
 *
 * JSON (RFC 8259) is parsed strictly: the whole text must be UTF-8 (no
 * overlong forms, no surrogates), control characters must be escaped, a \u
 * escape must be well formed and surrogates paired, numbers follow the
 * grammar, nothing may follow the object. MessagePack is read through a
 * bounds-checked cursor (msgpack_unpack() would allocate from declared
 * counts): every str/bin/ext length and array/map count is checked against
 * the bytes actually left before it is used (a count n needs at least n
 * bytes, a map 2n), so a 10-byte input cannot make the decoder walk or
 * reserve a gigabyte.
 *
 * Hostile input: the whole message is bounded by max_message_bytes; every
 * string (kept or skipped, keys included) by max_string_bytes, ids by
 * max_id_bytes, names by JD_NAME_MAX; nesting by max_depth (and never more
 * than DECODE_DEPTH_HARD_MAX, which bounds the recursion); properties by
 * max_properties. The first error wins: it sets the status and the detail.
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
    return (int)st >= 0 && st < DECODE__COUNT ? REASONS[st] : "unknown";
}

/* ---- the schema ---------------------------------------------------------- */

typedef enum {
    /* leaves */
    F_MESSAGE_ID = 0, F_TYPE, F_EVENT, F_USER_ID, F_ANON_ID, F_PREV_ID, F_TIMESTAMP, F_NAME,
    F_CHANNEL, F_PAGE_PATH, F_CTX_SEGMENT, F_TOUCHPOINT, F_PHASE, F_METRIC, F_SCORE, F_SCOPE,
    F_PROP_SEGMENT, F_TRAITS_SEGMENT,
    F__LEAVES,
    /* containers (objects / maps we descend into) */
    C_ROOT = F__LEAVES, C_CONTEXT, C_PAGE, C_CTX_TRAITS, C_PROPERTIES, C_TRAITS,
    C__COUNT,
    X_SKIP = C__COUNT, /* anything else: read, bounded, thrown away */
} pos_t;

/* The dotted name of every position, for error details. */
static const char *const POS_NAMES[C__COUNT] = {
    "messageId", "type", "event", "userId", "anonymousId", "previousId", "timestamp", "name",
    "context.channel", "context.page.path", "context.traits.segment", "properties.touchpoint",
    "properties.phase", "properties.metric", "properties.score", "properties.scope",
    "properties.segment", "traits.segment",
    "event", "context", "context.page", "context.traits", "properties", "traits",
};

/* Key lookup: a switch on the length, then a compare of known size (which
 * the compiler inlines); this runs for every key of every event. */
#define IS(lit) (len == sizeof(lit) - 1 && !memcmp(k, lit, sizeof(lit) - 1))

static pos_t root_child(const char *k, size_t len) {
    switch (len) {
    case 4: return IS("type") ? F_TYPE : IS("name") ? F_NAME : X_SKIP;
    case 5: return IS("event") ? F_EVENT : X_SKIP;
    case 6: return IS("userId") ? F_USER_ID : IS("traits") ? C_TRAITS : X_SKIP;
    case 7: return IS("context") ? C_CONTEXT : X_SKIP;
    case 9: return IS("messageId") ? F_MESSAGE_ID : IS("timestamp") ? F_TIMESTAMP : X_SKIP;
    case 10: return IS("properties") ? C_PROPERTIES : IS("previousId") ? F_PREV_ID : X_SKIP;
    case 11: return IS("anonymousId") ? F_ANON_ID : X_SKIP;
    default: return X_SKIP;
    }
}

static pos_t properties_child(const char *k, size_t len) {
    switch (len) {
    case 5: return IS("phase") ? F_PHASE : IS("score") ? F_SCORE : IS("scope") ? F_SCOPE : X_SKIP;
    case 6: return IS("metric") ? F_METRIC : X_SKIP;
    case 7: return IS("segment") ? F_PROP_SEGMENT : X_SKIP;
    case 10: return IS("touchpoint") ? F_TOUCHPOINT : X_SKIP;
    default: return X_SKIP;
    }
}

/* What key k (len bytes, not NUL-terminated) is inside container parent. */
static pos_t schema_child(pos_t parent, const char *k, size_t len) {
    switch (parent) {
    case C_ROOT: return root_child(k, len);
    case C_PROPERTIES: return properties_child(k, len);
    case C_CONTEXT:
        return IS("channel") ? F_CHANNEL : IS("page") ? C_PAGE : IS("traits") ? C_CTX_TRAITS : X_SKIP;
    case C_PAGE: return IS("path") ? F_PAGE_PATH : X_SKIP;
    case C_CTX_TRAITS: return IS("segment") ? F_CTX_SEGMENT : X_SKIP;
    case C_TRAITS: return IS("segment") ? F_TRAITS_SEGMENT : X_SKIP;
    default: return X_SKIP;
    }
}

#undef IS

/* ---- decoding state ---------------------------------------------------------- */

typedef struct numval { int has; double v; } numval_t;

typedef struct dec {
    const decode_limits_t *lim;
    uint32_t max_depth;                /* min(lim->max_depth, DECODE_DEPTH_HARD_MAX) */
    event_t *ev;
    char *arena;                       /* caller's; strings are appended */
    size_t acap, aused;
    char *err;
    size_t errlen;
    decode_status_t st;
    uint32_t depth;
    uint32_t seen;                     /* bit per recognised key (leaf or container) */
    const char *str[F__LEAVES];        /* string values, in the arena */
    numval_t ts, score;                /* the two numeric leaves */
} dec_t;

static int derr(dec_t *d, decode_status_t st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int derr(dec_t *d, decode_status_t st, const char *fmt, ...) {
    if (d->st != DECODE_OK) return -1; /* keep the first error */
    va_list ap;
    d->st = st;
    if (d->errlen) {
        va_start(ap, fmt);
        vsnprintf(d->err, d->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The byte limit for a string at position pos, and the status past it. */
static size_t limit_for(const dec_t *d, pos_t pos, decode_status_t *st) {
    switch (pos) {
    case F_MESSAGE_ID: case F_USER_ID: case F_ANON_ID: case F_PREV_ID:
        *st = DECODE_E_ID_TOO_LONG;
        return d->lim->max_id_bytes < JD_ID_MAX ? d->lim->max_id_bytes : JD_ID_MAX;
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
    return derr(d, st, "%s: %zu bytes, limit %zu", pos < F__LEAVES ? POS_NAMES[pos] : "string",
                len, max);
}

/* Record that the recognised key pos was given; a second time is an error. */
static int mark_seen(dec_t *d, pos_t pos) {
    if (pos >= C__COUNT) return 0;
    if (d->seen & (1u << pos)) return derr(d, DECODE_E_DUPLICATE_KEY, "%s: given twice", POS_NAMES[pos]);
    d->seen |= 1u << pos;
    return 0;
}

/* Reserve len+1 bytes of arena for a string value. */
static char *arena_take(dec_t *d, size_t len) {
    if (len >= d->acap - d->aused) {
        derr(d, DECODE_E_OVERSIZE, "decoded strings exceed the arena (%zu bytes)", d->acap);
        return NULL;
    }
    char *p = d->arena + d->aused;
    d->aused += len + 1;
    return p;
}

static int type_error(dec_t *d, pos_t pos, const char *got) {
    const char *want = pos >= C_ROOT ? "an object"
                     : pos == F_TIMESTAMP ? "a string or an integer"
                     : pos == F_SCORE ? "a number" : "a string";
    return derr(d, DECODE_E_TYPE, "%s: expected %s, got %s", POS_NAMES[pos], want, got);
}

/* A value of a kind nothing recognised can hold (boolean, array, binary, ...)
 * arrived at pos: fine when skipped, a type error at a recognised key. */
static int other_value(dec_t *d, pos_t pos, const char *got) {
    if (pos >= C__COUNT) return 0;
    if (mark_seen(d, pos) < 0) return -1;
    return type_error(d, pos, got);
}

/* A number arrived at pos. */
static int number_value(dec_t *d, pos_t pos, double v) {
    if (pos >= C__COUNT) return 0;
    if (mark_seen(d, pos) < 0) return -1;
    numval_t *n = pos == F_TIMESTAMP ? &d->ts : pos == F_SCORE ? &d->score : NULL;
    if (!n) return type_error(d, pos, "a number");
    n->has = 1;
    n->v = v;
    return 0;
}

/* null at pos: the field (or the whole container) is absent. */
static int null_value(dec_t *d, pos_t pos) { return mark_seen(d, pos); }

/* An object / map begins at pos: returns the position to read its keys at. */
static int enter_object(dec_t *d, pos_t pos) {
    if (pos < C_ROOT) return other_value(d, pos, "an object");
    if (pos != C_ROOT && mark_seen(d, pos) < 0) return -1;
    if (++d->depth > d->max_depth) return derr(d, DECODE_E_DEPTH, "nesting deeper than %u", d->max_depth);
    return 0;
}

static int enter_array(dec_t *d, pos_t pos) {
    if (other_value(d, pos, "an array") < 0) return -1;
    if (++d->depth > d->max_depth) return derr(d, DECODE_E_DEPTH, "nesting deeper than %u", d->max_depth);
    return 0;
}

static int count_property(dec_t *d, pos_t parent) {
    if (parent != C_PROPERTIES) return 0;
    if (++d->ev->n_properties > d->lim->max_properties)
        return derr(d, DECODE_E_TOO_MANY_PROPERTIES, "properties: more than %u keys",
                    d->lim->max_properties);
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at p (p[0] >= 0x80), or 0
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
    size_t left = (size_t)(end - p);
    unsigned char b = p[0];
    if (b >= 0xc2 && b <= 0xdf) return left >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (b >= 0xe0 && b <= 0xef) {
        if (left < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
        if ((b == 0xe0 && p[1] < 0xa0) || (b == 0xed && p[1] > 0x9f)) return 0;
        return 3;
    }
    if (b >= 0xf0 && b <= 0xf4) {
        if (left < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        if ((b == 0xf0 && p[1] < 0x90) || (b == 0xf4 && p[1] > 0x8f)) return 0;
        return 4;
    }
    return 0;
}

/* Whether the 8 bytes at p are all ASCII and none is NUL (SWAR, exact). */
static int ascii8(const unsigned char *p) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t v;
    memcpy(&v, p, 8);
    return !((((v - ones) & ~v) | v) & high);
}

/* A kept MessagePack string: UTF-8 and no NUL byte (it becomes a C string). */
static int check_text(dec_t *d, pos_t pos, const unsigned char *s, size_t n) {
    const unsigned char *p = s, *end = s + n;
    while (end - p >= 8 && ascii8(p)) p += 8;
    while (p < end) {
        if (*p == 0) return derr(d, DECODE_E_SYNTAX, "%s: NUL byte in string", POS_NAMES[pos]);
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t k = utf8_seq(p, end);
        if (!k) return derr(d, DECODE_E_SYNTAX, "%s: invalid UTF-8 at byte %td", POS_NAMES[pos], p - s);
        p += k;
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

/* ---- JSON ------------------------------------------------------------------------ */

typedef struct jcur { const unsigned char *p, *end, *start; } jcur_t;

/* 1 for the bytes a string can hold as they are: printable ASCII but '"' and '\\'. */
#define P16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define Z16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
static const unsigned char JPLAIN[256] = {
    Z16, Z16,                                                   /* 0x00-0x1f: control */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,             /* 0x20-0x2f: '"' */
    P16, P16,                                                   /* 0x30-0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,             /* 0x50-0x5f: '\\' */
    P16, P16,                                                   /* 0x60-0x7f */
    Z16, Z16, Z16, Z16, Z16, Z16, Z16, Z16,                     /* 0x80-0xff: UTF-8 */
};

/* Whether the 8 bytes at p are all plain (SWAR: a word at a time, exact). */
static int plain8(const unsigned char *p) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t v, q, b;
    memcpy(&v, p, 8);
    q = v ^ (ones * '"');
    b = v ^ (ones * '\\');
    return !((((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v) | v) & high);
}

static void ws(jcur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int syntax(dec_t *d, const jcur_t *c, const char *what) {
    return derr(d, DECODE_E_SYNTAX, "JSON: %s at byte %td", what, c->p - c->start);
}

static int hex4(const unsigned char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char h = p[i];
        unsigned x = h >= '0' && h <= '9' ? h - '0' + 0u : h >= 'a' && h <= 'f' ? h - 'a' + 10u
                   : h >= 'A' && h <= 'F' ? h - 'A' + 10u : 16u;
        if (x == 16) return -1;
        *v = *v << 4 | x;
    }
    return 0;
}

/* One \u escape (p at the backslash), surrogate pairs joined: the bytes it
 * takes (6 or 12), or -1 if malformed or a lone surrogate. */
static int json_uescape(const unsigned char *p, const unsigned char *end, unsigned *cp) {
    if (end - p < 6 || hex4(p + 2, cp) < 0) return -1;
    if (*cp >= 0xdc00 && *cp <= 0xdfff) return -1;
    if (*cp < 0xd800 || *cp > 0xdbff) return 6;
    unsigned lo;
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
        return -1;
    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    return 12;
}

/* The length of the escape at p (p[0] == '\\'), -1 if it is not valid. */
static int json_escape_len(const unsigned char *p, const unsigned char *end) {
    if (end - p < 2) return -1;
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': return 2;
    case 'u': {
        unsigned cp;
        return json_uescape(p, end, &cp);
    }
    default: return -1;
    }
}

/* A scanned string: its raw bytes between the quotes, and whether any is an escape. */
typedef struct jstr { const unsigned char *s; size_t raw; int esc; } jstr_t;

/*
 * Scan a string (c->p at the opening quote) to just past its closing quote,
 * checking it all: no raw control character, valid escapes, valid UTF-8.
 */
static int json_scan(dec_t *d, jcur_t *c, jstr_t *out) {
    const unsigned char *p = c->p + 1, *end = c->end;
    out->s = p;
    out->esc = 0;
    for (;;) {
        while (end - p >= 8 && plain8(p)) p += 8;
        while (p < end && JPLAIN[*p]) p++;
        c->p = p;
        if (p >= end) return syntax(d, c, "unterminated string");
        if (*p == '"') break;
        int k;
        if (*p == '\\') {
            k = json_escape_len(p, end);
            if (k < 0) return syntax(d, c, "bad escape");
            out->esc = 1;
        } else if (*p < 0x20) {
            return syntax(d, c, "control character in string");
        } else {
            k = (int)utf8_seq(p, end);
            if (!k) return syntax(d, c, "invalid UTF-8");
        }
        p += k;
    }
    out->raw = (size_t)(p - out->s);
    c->p = p + 1;
    return 0;
}

/* Resolve the escapes of a scanned string into out (NULL: only measure);
 * the result is never longer than the raw bytes. Returns its length. */
static size_t json_unescape(const jstr_t *js, char *out) {
    const unsigned char *p = js->s, *end = js->s + js->raw;
    size_t n = 0;
    while (p < end) {
        const unsigned char *q = p;
        while (q < end && *q != '\\') q++;
        if (out) memcpy(out + n, p, (size_t)(q - p));
        n += (size_t)(q - p);
        if (q >= end) break;
        char buf[4];
        size_t k = 1;
        int used = 2;
        switch (q[1]) {
        case 'b': buf[0] = '\b'; break;
        case 'f': buf[0] = '\f'; break;
        case 'n': buf[0] = '\n'; break;
        case 'r': buf[0] = '\r'; break;
        case 't': buf[0] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            used = json_uescape(q, end, &cp);
            k = put_utf8(cp, buf);
            break;
        }
        default: buf[0] = (char)q[1]; break; /* '"', '\\', '/' */
        }
        if (out) memcpy(out + n, buf, k);
        n += k;
        p = q + used;
    }
    return n;
}

/* The unescaped length of a scanned string. */
static size_t json_strlen(const jstr_t *js) { return js->esc ? json_unescape(js, NULL) : js->raw; }

/* A number token at pos; *v is only computed where a number is kept
 * (timestamp, score). */
static int json_number(dec_t *d, jcur_t *c, pos_t pos, double *v) {
    int want = pos == F_TIMESTAMP || pos == F_SCORE;
    const unsigned char *s = c->p, *p = c->p, *end = c->end;
    uint64_t mant = 0;
    int digits = 0, plain = 1;
    if (p < end && *p == '-') p++;
    if (p >= end || *p < '0' || *p > '9') return syntax(d, c, "bad value");
    if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9') return syntax(d, c, "leading zero");
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) mant = mant * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        plain = 0;
        c->p = ++p;
        if (p >= end || *p < '0' || *p > '9') return syntax(d, c, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        plain = 0;
        c->p = ++p;
        if (p < end && (*p == '+' || *p == '-')) p++;
        c->p = p;
        if (p >= end || *p < '0' || *p > '9') return syntax(d, c, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    c->p = p;
    if (!want) return 0;
    if (plain && digits <= 18) {
        *v = *s == '-' ? -(double)mant : (double)mant;
        return 0;
    }
    char buf[64];
    size_t n = (size_t)(p - s);
    if (n >= sizeof(buf)) return derr(d, DECODE_E_TYPE, "%s: a number of %zu characters", POS_NAMES[pos], n);
    memcpy(buf, s, n);
    buf[n] = '\0';
    *v = strtod(buf, NULL);
    return 0;
}

static int json_literal(dec_t *d, jcur_t *c, const char *lit, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n)) return syntax(d, c, "bad value");
    c->p += n;
    return 0;
}

static int json_value(dec_t *d, jcur_t *c, pos_t pos);

/* Copy a scanned string into the arena, escapes resolved; NULL on error. */
static const char *json_keep(dec_t *d, pos_t pos, const jstr_t *js) {
    if (!js->esc) {
        if (check_len(d, pos, js->raw) < 0) return NULL;
        char *out = arena_take(d, js->raw);
        if (!out) return NULL;
        memcpy(out, js->s, js->raw);
        out[js->raw] = '\0';
        return out;
    }
    char *out = arena_take(d, js->raw);
    if (!out) return NULL;
    size_t len = json_unescape(js, out);
    d->aused = (size_t)(out - d->arena) + len + 1; /* give back what the escapes saved */
    out[len] = '\0';
    if (check_len(d, pos, len) < 0) return NULL;
    if (memchr(out, '\0', len)) {
        derr(d, DECODE_E_SYNTAX, "%s: \\u0000 in string", POS_NAMES[pos]);
        return NULL;
    }
    return out;
}

/* A string value at pos: kept in the arena if pos is a leaf, else measured. */
static int json_string_value(dec_t *d, jcur_t *c, pos_t pos) {
    jstr_t js;
    if (json_scan(d, c, &js) < 0) return -1;
    if (pos >= C__COUNT) return js.raw <= d->lim->max_string_bytes ? 0 : check_len(d, X_SKIP, json_strlen(&js));
    if (pos == F_SCORE || pos >= C_ROOT) return other_value(d, pos, "a string");
    if (mark_seen(d, pos) < 0) return -1;
    d->str[pos] = json_keep(d, pos, &js);
    return d->str[pos] ? 0 : -1;
}

/* Read a key (c->p at its quote) and what it is inside parent. */
static int json_key(dec_t *d, jcur_t *c, pos_t parent, pos_t *child) {
    jstr_t js;
    char key[256];
    if (c->p >= c->end || *c->p != '"') return syntax(d, c, "expected a key");
    if (json_scan(d, c, &js) < 0) return -1;
    if (!js.esc) {
        if (check_len(d, X_SKIP, js.raw) < 0) return -1;
        *child = schema_child(parent, (const char *)js.s, js.raw);
        return 0;
    }
    size_t len = js.raw <= sizeof(key) ? json_unescape(&js, key) : json_unescape(&js, NULL);
    if (check_len(d, X_SKIP, len) < 0) return -1;
    *child = js.raw <= sizeof(key) ? schema_child(parent, key, len) : X_SKIP;
    return 0;
}

static int json_object(dec_t *d, jcur_t *c, pos_t pos) {
    if (enter_object(d, pos) < 0) return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        pos_t child;
        if (json_key(d, c, pos, &child) < 0 || count_property(d, pos) < 0) return -1;
        ws(c);
        if (c->p >= c->end || *c->p != ':') return syntax(d, c, "expected ':'");
        c->p++;
        ws(c);
        if (json_value(d, c, child) < 0) return -1;
        ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            ws(c);
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            d->depth--;
            return 0;
        }
        return syntax(d, c, "expected ',' or '}'");
    }
}

static int json_array(dec_t *d, jcur_t *c, pos_t pos) {
    if (enter_array(d, pos) < 0) return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        ws(c);
        if (json_value(d, c, X_SKIP) < 0) return -1;
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
        return syntax(d, c, "expected ',' or ']'");
    }
}

static int json_value(dec_t *d, jcur_t *c, pos_t pos) {
    if (c->p >= c->end) return syntax(d, c, "unexpected end");
    switch (*c->p) {
    case '{': return json_object(d, c, pos);
    case '[': return json_array(d, c, pos);
    case '"': return json_string_value(d, c, pos);
    case 't': return json_literal(d, c, "true", 4) < 0 ? -1 : other_value(d, pos, "a boolean");
    case 'f': return json_literal(d, c, "false", 5) < 0 ? -1 : other_value(d, pos, "a boolean");
    case 'n': return json_literal(d, c, "null", 4) < 0 ? -1 : null_value(d, pos);
    default: {
        double v = 0;
        int want = pos == F_TIMESTAMP || pos == F_SCORE;
        if (json_number(d, c, pos, &v) < 0) return -1;
        return want ? number_value(d, pos, v) : other_value(d, pos, "a number");
    }
    }
}

static int decode_json(dec_t *d, const unsigned char *buf, size_t len) {
    jcur_t c = {buf, buf + len, buf};
    if (len >= 3 && buf[0] == 0xef && buf[1] == 0xbb && buf[2] == 0xbf) c.p += 3; /* byte order mark */
    ws(&c);
    if (c.p < c.end && *c.p == '{') {
        if (json_object(d, &c, C_ROOT) < 0) return -1;
    } else {
        /* Any other JSON text is not_object; anything else is syntax. */
        if (json_value(d, &c, X_SKIP) < 0) return -1;
        ws(&c);
        if (c.p == c.end) return derr(d, DECODE_E_NOT_OBJECT, "JSON: the event must be an object");
    }
    ws(&c);
    if (c.p != c.end) return syntax(d, &c, "trailing bytes after the value");
    return 0;
}

/* ---- MessagePack ---------------------------------------------------------------- */

typedef struct mcur { const unsigned char *p, *end; } mcur_t;

static int need(dec_t *d, const mcur_t *c, uint64_t n) {
    if ((uint64_t)(c->end - c->p) >= n) return 0;
    return derr(d, DECODE_E_SYNTAX, "MessagePack: truncated, or a declared length of %llu exceeds the "
                "%td bytes left", (unsigned long long)n, c->end - c->p);
}

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Read an n-byte big-endian integer after the type byte. */
static int mp_uint(dec_t *d, mcur_t *c, int n, uint64_t *out) {
    if (need(d, c, (uint64_t)n) < 0) return -1;
    *out = be(c->p, n);
    c->p += n;
    return 0;
}

typedef enum { MP_NIL, MP_BOOL, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT } mptype_t;

typedef struct mpval {
    mptype_t t;
    double num;                  /* MP_INT, MP_FLOAT (uint64 beyond 2^53 approximated) */
    uint64_t len;                /* str/bin/ext length, array/map count */
    int8_t ext;                  /* MP_EXT type */
    const unsigned char *data;   /* str/bin/ext bytes */
} mpval_t;

/* The fixed-size numbers (0xca..0xd3). */
static int mp_number(dec_t *d, mcur_t *c, unsigned char b, mpval_t *v) {
    static const int sizes[] = {1, 2, 4, 8};
    uint64_t u;
    if (b >= 0xcc && b <= 0xcf) {           /* uint 8..64 */
        if (mp_uint(d, c, sizes[b - 0xcc], &u) < 0) return -1;
        v->t = MP_INT;
        v->num = (double)u;
    } else if (b >= 0xd0 && b <= 0xd3) {    /* int 8..64 */
        int n = sizes[b - 0xd0], shift = 64 - 8 * n;
        if (mp_uint(d, c, n, &u) < 0) return -1;
        v->t = MP_INT;
        v->num = (double)(shift ? (int64_t)(u << shift) >> shift : (int64_t)u);
    } else if (b == 0xca) {                 /* float 32 */
        float f;
        if (mp_uint(d, c, 4, &u) < 0) return -1;
        uint32_t u32 = (uint32_t)u;
        memcpy(&f, &u32, 4);
        v->t = MP_FLOAT;
        v->num = f;
    } else if (b == 0xcb) {                 /* float 64 */
        if (mp_uint(d, c, 8, &u) < 0) return -1;
        memcpy(&v->num, &u, 8);
        v->t = MP_FLOAT;
    } else {
        return derr(d, DECODE_E_SYNTAX, "MessagePack: unknown type byte 0x%02x", b);
    }
    return 0;
}

/* The header of a variable-size value: its type and its length or count (*n). */
static int mp_sized(dec_t *d, mcur_t *c, unsigned char b, mpval_t *v, uint64_t *n) {
    if (b >= 0x80 && b <= 0x8f) { v->t = MP_MAP; *n = b & 0x0fu; return 0; }
    if (b >= 0x90 && b <= 0x9f) { v->t = MP_ARRAY; *n = b & 0x0fu; return 0; }
    if (b >= 0xa0 && b <= 0xbf) { v->t = MP_STR; *n = b & 0x1fu; return 0; }
    switch (b) {
    case 0xd9: case 0xda: case 0xdb: v->t = MP_STR; return mp_uint(d, c, 1 << (b - 0xd9), n);
    case 0xc4: case 0xc5: case 0xc6: v->t = MP_BIN; return mp_uint(d, c, 1 << (b - 0xc4), n);
    case 0xdc: case 0xdd: v->t = MP_ARRAY; return mp_uint(d, c, b == 0xdc ? 2 : 4, n);
    case 0xde: case 0xdf: v->t = MP_MAP; return mp_uint(d, c, b == 0xde ? 2 : 4, n);
    case 0xc7: case 0xc8: case 0xc9: v->t = MP_EXT; return mp_uint(d, c, 1 << (b - 0xc7), n);
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        v->t = MP_EXT;
        *n = 1u << (b - 0xd4);
        return 0;
    default: return 1; /* not a sized type */
    }
}

/* Read one value header. str/bin/ext data are checked present and stepped
 * over; an array/map count is checked against the bytes left (every element
 * takes at least one byte). */
static int mp_head(dec_t *d, mcur_t *c, mpval_t *v) {
    if (need(d, c, 1) < 0) return -1;
    unsigned char b = *c->p++;
    uint64_t n = 0;
    v->data = NULL;
    if (b <= 0x7f || b >= 0xe0) { v->t = MP_INT; v->num = (int8_t)b; return 0; }
    if (b == 0xc0) { v->t = MP_NIL; return 0; }
    if (b == 0xc2 || b == 0xc3) { v->t = MP_BOOL; return 0; }
    int r = mp_sized(d, c, b, v, &n);
    if (r < 0) return -1;
    if (r > 0) return mp_number(d, c, b, v);
    v->len = n;
    if (v->t == MP_ARRAY || v->t == MP_MAP) return need(d, c, v->t == MP_MAP ? 2 * n : n);
    if (v->t == MP_EXT) {
        if (need(d, c, n + 1) < 0) return -1;
        v->ext = (int8_t)*c->p++;
    }
    if (need(d, c, n) < 0) return -1;
    v->data = c->p;
    c->p += n;
    return 0;
}

/* The MessagePack timestamp extension (type -1, 32/64/96-bit) in epoch
 * milliseconds (fraction truncated). -1 if malformed or out of range. */
static int mp_timestamp(const mpval_t *v, double *ms) {
    int64_t sec;
    uint64_t nsec = 0;
    if (v->len == 4) {
        sec = (int64_t)be(v->data, 4);
    } else if (v->len == 8) {
        uint64_t x = be(v->data, 8);
        nsec = x >> 34;
        sec = (int64_t)(x & 0x3ffffffffULL);
    } else if (v->len == 12) {
        nsec = be(v->data, 4);
        sec = (int64_t)be(v->data + 4, 8);
    } else {
        return -1;
    }
    if (nsec > 999999999 || sec < 0 || sec > DECODE_MAX_TS_MS / 1000) return -1;
    *ms = (double)(sec * 1000 + (int64_t)(nsec / 1000000));
    return 0;
}

static int mp_value(dec_t *d, mcur_t *c, pos_t pos);

static int mp_map(dec_t *d, mcur_t *c, uint64_t n, pos_t pos) {
    if (enter_object(d, pos) < 0) return -1;
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

static int mp_array(dec_t *d, mcur_t *c, uint64_t n, pos_t pos) {
    if (enter_array(d, pos) < 0) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (mp_value(d, c, X_SKIP) < 0) return -1;
    d->depth--;
    return 0;
}

static int mp_string_value(dec_t *d, const mpval_t *v, pos_t pos) {
    if (pos >= C__COUNT) return check_len(d, X_SKIP, v->len);
    if (pos == F_SCORE || pos >= C_ROOT) return other_value(d, pos, "a string");
    if (mark_seen(d, pos) < 0 || check_len(d, pos, v->len) < 0) return -1;
    if (check_text(d, pos, v->data, v->len) < 0) return -1;
    char *out = arena_take(d, v->len);
    if (!out) return -1;
    memcpy(out, v->data, v->len);
    out[v->len] = '\0';
    d->str[pos] = out;
    return 0;
}

static int mp_ext_value(dec_t *d, const mpval_t *v, pos_t pos) {
    double ms;
    if (pos != F_TIMESTAMP || v->ext != -1) return other_value(d, pos, "an extension value");
    if (mp_timestamp(v, &ms) < 0)
        return derr(d, DECODE_E_BAD_TIMESTAMP, "timestamp: malformed or out-of-range timestamp extension");
    return number_value(d, pos, ms);
}

static int mp_value(dec_t *d, mcur_t *c, pos_t pos) {
    mpval_t v;
    if (mp_head(d, c, &v) < 0) return -1;
    switch (v.t) {
    case MP_NIL: return null_value(d, pos);
    case MP_STR: return mp_string_value(d, &v, pos);
    case MP_INT: case MP_FLOAT:
        return pos == F_TIMESTAMP || pos == F_SCORE ? number_value(d, pos, v.num)
                                                    : other_value(d, pos, "a number");
    case MP_EXT: return mp_ext_value(d, &v, pos);
    case MP_MAP: return mp_map(d, c, v.len, pos);
    case MP_ARRAY: return mp_array(d, c, v.len, pos);
    case MP_BOOL: return other_value(d, pos, "a boolean");
    default: return other_value(d, pos, "binary data");
    }
}

static int decode_msgpack(dec_t *d, const unsigned char *buf, size_t len) {
    mcur_t c = {buf, buf + len};
    mpval_t v;
    if (mp_head(d, &c, &v) < 0) return -1;
    if (v.t != MP_MAP) return derr(d, DECODE_E_NOT_OBJECT, "MessagePack: the event must be a map");
    if (mp_map(d, &c, v.len, C_ROOT) < 0) return -1;
    if (c.p != c.end) return derr(d, DECODE_E_SYNTAX, "MessagePack: %td trailing bytes after the map", c.end - c.p);
    return 0;
}

/* ---- time ---------------------------------------------------------------------- */

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

/* "[.fraction](Z|+HH:MM|-HH:MM)" at the end: milliseconds (truncated) and
 * the zone offset in seconds. */
static int parse_frac_zone(const char *p, int *frac, int *offset) {
    *frac = 0;
    *offset = 0;
    if (*p == '.') {
        int k = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, k++)
            if (k < 3) *frac = *frac * 10 + (*p - '0');
        if (k == 0) return -1;
        for (; k < 3; k++) *frac *= 10;
    }
    if (*p == 'Z' || *p == 'z') return p[1] ? -1 : 0;
    if (*p != '+' && *p != '-') return -1; /* a zone is required */
    int tzh, tzm;
    if (digits(p + 1, 2, &tzh) || p[3] != ':' || digits(p + 4, 2, &tzm) || tzh > 23 || tzm > 59 || p[6])
        return -1;
    *offset = (*p == '-' ? -1 : 1) * (tzh * 3600 + tzm * 60);
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" (RFC 3339) to epoch ms. */
int decode_parse_time(const char *s, int64_t *ms) {
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, dd, h, mi, se, frac, offset;
    if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &dd) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || dd < 1 || dd > mdays[mo - 1] || h > 23 || mi > 59 || se > 60) return -1;
    if (mo == 2 && dd == 29 && (y % 4 || (y % 100 == 0 && y % 400))) return -1;
    if (parse_frac_zone(s + 19, &frac, &offset) < 0) return -1;
    int64_t secs = days_from_civil(y, mo, dd) * 86400 + h * 3600 + mi * 60 + se - offset;
    *ms = secs * 1000 + frac;
    return 0;
}

/* ---- validation -------------------------------------------------------------------- */

/* A value quoted in an error detail: at most 48 bytes, control characters
 * shown as '?', so the detail stays one printable line (it goes into a Kafka
 * header and the log). */
typedef struct quoted { char s[52]; } quoted_t;

static quoted_t quote(const char *v) {
    quoted_t q;
    size_t i = 0;
    for (; v[i] && i < 48; i++) q.s[i] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
    if (v[i]) q.s[i++] = '.', q.s[i++] = '.', q.s[i++] = '.';
    q.s[i] = '\0';
    return q;
}

static int set_timestamp(dec_t *d) {
    event_t *ev = d->ev;
    const char *s = d->str[F_TIMESTAMP];
    if (s) {
        if (decode_parse_time(s, &ev->ts_ms) < 0)
            return derr(d, DECODE_E_BAD_TIMESTAMP, "timestamp: '%s' is not ISO-8601 with a zone", quote(s).s);
        if (ev->ts_ms < 0 || ev->ts_ms > DECODE_MAX_TS_MS)
            return derr(d, DECODE_E_BAD_TIMESTAMP, "timestamp: '%s' is outside 1970..9999", quote(s).s);
        return 0;
    }
    if (d->ts.has) {
        double v = d->ts.v;
        if (!(v >= 0 && v <= (double)DECODE_MAX_TS_MS && v == floor(v)))
            return derr(d, DECODE_E_BAD_TIMESTAMP, "timestamp: %.17g is not integer epoch milliseconds "
                        "in 1970..9999", v);
        ev->ts_ms = (int64_t)v;
        return 0;
    }
    return derr(d, DECODE_E_MISSING, "timestamp: required");
}

static int set_type(dec_t *d) {
    static const char *const T[] = {"track", "page", "screen", "identify", "alias", "heartbeat"};
    const char *t = d->str[F_TYPE];
    if (!t || !*t) return derr(d, DECODE_E_MISSING, "type: required");
    for (int i = 0; i < 6; i++)
        if (!strcmp(t, T[i])) {
            d->ev->type = (ev_type_t)i;
            return 0;
        }
    return derr(d, DECODE_E_BAD_EVENT_TYPE, "type: '%s' is not track, page, screen, identify, alias "
                "or heartbeat", quote(t).s);
}

static int set_scope(dec_t *d) {
    const char *s = d->str[F_SCOPE];
    if (!s || !strcmp(s, "touchpoint")) return 0;
    if (!strcmp(s, "journey")) {
        d->ev->scope = EV_SCOPE_JOURNEY;
        return 0;
    }
    return derr(d, DECODE_E_BAD_SCOPE, "properties.scope: '%s' is not touchpoint or journey", quote(s).s);
}

static int set_survey(dec_t *d) {
    static const struct { const char *name; int lo, hi; } M[] = {{"nps", 0, 10}, {"csat", 1, 5}, {"ces", 1, 7}};
    const char *metric = d->str[F_METRIC];
    if (set_scope(d) < 0) return -1;
    if (!metric) {
        if (d->score.has) return derr(d, DECODE_E_MISSING, "properties.metric: required with properties.score");
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        if (strcmp(metric, M[i].name)) continue;
        if (!d->score.has) return derr(d, DECODE_E_BAD_SCORE, "properties.score: required for %s", metric);
        double s = d->score.v;
        if (s != floor(s))
            return derr(d, DECODE_E_BAD_SCORE, "properties.score: %.17g is not an integer (%s takes %d..%d)",
                        s, metric, M[i].lo, M[i].hi);
        if (s < M[i].lo || s > M[i].hi)
            return derr(d, DECODE_E_BAD_SCORE, "properties.score: %.17g out of range %d..%d for %s",
                        s, M[i].lo, M[i].hi, metric);
        d->ev->metric = (ev_metric_t)(i + 1);
        d->ev->score = (int)s;
        return 0;
    }
    return derr(d, DECODE_E_BAD_METRIC, "properties.metric: '%s' is not nps, csat or ces", quote(metric).s);
}

/* Empty strings are absent (an empty required field is missing). */
static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

static void set_strings(dec_t *d) {
    event_t *ev = d->ev;
    ev->message_id = nonempty(d->str[F_MESSAGE_ID]);
    ev->user_id = nonempty(d->str[F_USER_ID]);
    ev->anonymous_id = nonempty(d->str[F_ANON_ID]);
    ev->previous_id = nonempty(d->str[F_PREV_ID]);
    ev->event = nonempty(d->str[F_EVENT]);
    ev->channel = nonempty(d->str[F_CHANNEL]);
    ev->page_path = nonempty(d->str[F_PAGE_PATH]);
    ev->name = nonempty(d->str[F_NAME]);
    ev->touchpoint = nonempty(d->str[F_TOUCHPOINT]);
    ev->phase = nonempty(d->str[F_PHASE]);
    ev->segment = nonempty(d->str[F_PROP_SEGMENT]);
    if (!ev->segment) ev->segment = nonempty(d->str[F_TRAITS_SEGMENT]);
    if (!ev->segment) ev->segment = nonempty(d->str[F_CTX_SEGMENT]);
}

static int validate(dec_t *d) {
    event_t *ev = d->ev;
    if (set_type(d) < 0 || set_timestamp(d) < 0) return -1;
    set_strings(d);
    if (ev->type != EV_HEARTBEAT) { /* a heartbeat needs only its timestamp */
        if (!ev->message_id) return derr(d, DECODE_E_MISSING, "messageId: required");
        if (!ev->user_id && !ev->anonymous_id) return derr(d, DECODE_E_MISSING, "userId or anonymousId: required");
    }
    if (ev->type == EV_TRACK && !ev->event) return derr(d, DECODE_E_MISSING, "event: required for track");
    if (ev->type == EV_IDENTIFY && (!ev->user_id || !ev->anonymous_id))
        return derr(d, DECODE_E_MISSING, "identify: needs both userId and anonymousId");
    if (ev->type == EV_ALIAS && (!ev->user_id || !ev->previous_id))
        return derr(d, DECODE_E_MISSING, "alias: needs userId and previousId");
    return set_survey(d);
}

/* AUTO: JSON text starts with whitespace, printable ASCII or a UTF-8 byte
 * order mark; a MessagePack map starts with 0x80..0x8f, 0xde or 0xdf. */
static int looks_like_json(const unsigned char *b, size_t len) {
    if (len >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf) return 1;
    return b[0] == '\t' || b[0] == '\n' || b[0] == '\r' || (b[0] >= 0x20 && b[0] < 0x7f);
}

decode_status_t decode_event(const void *buf, size_t len, decode_encoding_t enc,
                             const decode_limits_t *lim, event_t *ev,
                             char *arena, size_t arena_cap,
                             char *errbuf, size_t errlen) {
    dec_t d;
    memset(&d, 0, sizeof(d));
    memset(ev, 0, sizeof(*ev));
    d.lim = lim;
    d.max_depth = lim->max_depth < DECODE_DEPTH_HARD_MAX ? lim->max_depth : DECODE_DEPTH_HARD_MAX;
    d.ev = ev;
    d.arena = arena;
    d.acap = arena ? arena_cap : 0;
    d.err = errbuf;
    d.errlen = errbuf ? errlen : 0;
    if (d.errlen) errbuf[0] = '\0';
    const unsigned char *b = buf;
    if (len > lim->max_message_bytes) {
        derr(&d, DECODE_E_OVERSIZE, "message: %zu bytes, limit %zu", len, lim->max_message_bytes);
        return d.st;
    }
    if (!len || !buf) {
        derr(&d, DECODE_E_SYNTAX, "message: empty");
        return d.st;
    }
    int json = enc == DECODE_JSON || (enc == DECODE_AUTO && looks_like_json(b, len));
    int rc = json ? decode_json(&d, b, len) : decode_msgpack(&d, b, len);
    if (rc == 0) validate(&d);
    return d.st;
}
