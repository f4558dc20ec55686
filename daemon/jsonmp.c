/*
 * jsonmp.c -- JSON to MessagePack (see jsonmp.h), by recursive descent.
 * A map or array header needs its element count first, so a container's
 * elements are packed into a buffer of their own and copied after the
 * header. Depth is capped (JSONMP_DEPTH_MAX).
 */
#include "jsonmp.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
} rd_t;

static int fail(rd_t *r, const char *what) {
    snprintf(r->err, r->errlen, "json at byte %zu: %s", r->pos, what);
    return -1;
}

static void skip_ws(rd_t *r) {
    while (r->pos < r->len && strchr(" \t\r\n", r->s[r->pos]) && r->s[r->pos]) r->pos++;
}

static int value(rd_t *r, msgpack_packer *pk, int depth);

static int hex4(rd_t *r, unsigned *u) {
    if (r->pos + 4 > r->len) return fail(r, "short \\u escape");
    *u = 0;
    for (int i = 0; i < 4; i++) {
        char c = r->s[r->pos++];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) return fail(r, "bad \\u escape");
        *u = *u * 16 + (unsigned)v;
    }
    return 0;
}

static size_t utf8(unsigned cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f)), 3;
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One escape after the backslash, decoded into o; its length, or 0. */
static size_t escape(rd_t *r, char *o) {
    static const char IN[] = "\"\\/bfnrt", OUT[] = "\"\\/\b\f\n\r\t";
    if (r->pos >= r->len) return fail(r, "short escape"), 0;
    char c = r->s[r->pos++];
    const char *k = c ? strchr(IN, c) : NULL;
    if (k) return o[0] = OUT[k - IN], 1;
    unsigned u, lo;
    if (c != 'u' || hex4(r, &u) < 0) return c != 'u' ? (fail(r, "bad escape"), 0) : 0;
    if (u >= 0xd800 && u < 0xdc00) { /* a surrogate pair */
        if (r->pos + 2 > r->len || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u') return fail(r, "lone surrogate"), 0;
        r->pos += 2;
        if (hex4(r, &lo) < 0) return 0;
        if (lo < 0xdc00 || lo > 0xdfff) return fail(r, "bad surrogate pair"), 0;
        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
    } else if (u >= 0xdc00 && u < 0xe000) {
        return fail(r, "lone surrogate"), 0;
    }
    return utf8(u, o);
}

static int string(rd_t *r, msgpack_packer *pk) {
    size_t cap = 64, n = 0;
    r->pos++;
    char *buf = malloc(cap);
    int rc = -1;
    if (!buf) abort();
    for (;;) {
        if (r->pos >= r->len) {
            fail(r, "unterminated string");
            break;
        }
        char c = r->s[r->pos];
        if (c == '"') {
            r->pos++;
            msgpack_pack_str_with_body(pk, buf, n);
            rc = 0;
            break;
        }
        if ((unsigned char)c < 0x20) {
            fail(r, "control character in a string");
            break;
        }
        if (n + 4 > cap && !(buf = realloc(buf, cap *= 2))) abort();
        r->pos++;
        if (c != '\\') {
            buf[n++] = c;
            continue;
        }
        size_t k = escape(r, buf + n);
        if (!k) break;
        n += k;
    }
    free(buf);
    return rc;
}

static int number(rd_t *r, msgpack_packer *pk) {
    size_t start = r->pos;
    int frac = 0;
    while (r->pos < r->len && r->s[r->pos] && strchr("+-0123456789.eE", r->s[r->pos])) {
        frac |= r->s[r->pos] == '.' || r->s[r->pos] == 'e' || r->s[r->pos] == 'E';
        r->pos++;
    }
    char num[64], *end;
    size_t n = r->pos - start;
    if (!n || n >= sizeof(num)) return fail(r, "bad number");
    memcpy(num, r->s + start, n);
    num[n] = '\0';
    errno = 0;
    if (!frac) {
        long long v = strtoll(num, &end, 10);
        if (*end || errno) return fail(r, "bad integer");
        return msgpack_pack_int64(pk, v);
    }
    double d = strtod(num, &end);
    if (*end) return fail(r, "bad number");
    return msgpack_pack_double(pk, d);
}

static int literal(rd_t *r, msgpack_packer *pk) {
    static const char *const W[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(W[i]);
        if (r->len - r->pos >= n && !memcmp(r->s + r->pos, W[i], n)) {
            r->pos += n;
            return i == 0 ? msgpack_pack_true(pk) : i == 1 ? msgpack_pack_false(pk) : msgpack_pack_nil(pk);
        }
    }
    return fail(r, "unexpected character");
}

/* An object (map) or array: elements into a buffer of their own, then the header. */
static int container(rd_t *r, msgpack_packer *pk, int depth) {
    int map = r->s[r->pos++] == '{';
    char close = map ? '}' : ']';
    msgpack_sbuffer sb;
    msgpack_packer ipk;
    size_t n = 0;
    int rc = -1;
    if (depth >= JSONMP_DEPTH_MAX) return fail(r, "too deep");
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&ipk, &sb, msgpack_sbuffer_write);
    skip_ws(r);
    if (r->pos < r->len && r->s[r->pos] == close) {
        r->pos++;
        goto done;
    }
    for (;; n++) {
        skip_ws(r);
        if (map) {
            if (r->pos >= r->len || r->s[r->pos] != '"') {
                fail(r, "a member name expected");
                goto out;
            }
            if (string(r, &ipk) < 0) goto out;
            skip_ws(r);
            if (r->pos >= r->len || r->s[r->pos] != ':') {
                fail(r, "':' expected");
                goto out;
            }
            r->pos++;
        }
        if (value(r, &ipk, depth + 1) < 0) goto out;
        skip_ws(r);
        char c = r->pos < r->len ? r->s[r->pos] : '\0';
        if (c != close && c != ',') {
            fail(r, map ? "',' or '}' expected" : "',' or ']' expected");
            goto out;
        }
        r->pos++;
        if (c == close) break;
    }
    n++;
done:
    if (map) msgpack_pack_map(pk, n);
    else msgpack_pack_array(pk, n);
    msgpack_sbuffer_write(pk->data, sb.data, sb.size);
    rc = 0;
out:
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int value(rd_t *r, msgpack_packer *pk, int depth) {
    skip_ws(r);
    if (r->pos >= r->len) return fail(r, "a value expected");
    char c = r->s[r->pos];
    if (c == '{' || c == '[') return container(r, pk, depth);
    if (c == '"') return string(r, pk);
    if (c == '-' || (c >= '0' && c <= '9')) return number(r, pk);
    return literal(r, pk);
}

int jsonmp_pack(const char *json, size_t len, msgpack_sbuffer *out, char *errbuf, size_t errlen) {
    rd_t r = {json, len, 0, errbuf, errlen};
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    if (value(&r, &pk, 0) < 0) return -1;
    skip_ws(&r);
    return r.pos == len ? 0 : fail(&r, "trailing characters");
}
