/*
 * prom.c -- the Prometheus text format 0.0.4 page builder and the fixed-
 * bucket histogram (see prom.h).
 *
 * Owns the page buffer (grown by doubling, never past max) and the names
 * of the families begun on the page, which are checked against each new
 * family. Numbers: NaN, +Inf, -Inf as the format spells them; integers
 * below 2^53 as plain digits; anything else in the shortest "%g" form that
 * reads back to the same double (numbers in the "C" locale, which journeyd
 * never changes).
 */
#include "prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#define PROM_CHUNK 4096

typedef struct fam {
    char name[PROM_NAME_MAX];
    prom_type_t type;
} fam_t;

struct prom {
    char *buf; /* the page, not NUL-terminated */
    size_t len, cap, max;
    fam_t fam[PROM_FAMILIES_MAX]; /* families begun; the last is the current one */
    size_t nfam;
    int failed;
    char err[256]; /* the first error */
};

static const char *const HIST_SUFFIX[] = {"_bucket", "_sum", "_count"};

static int fail(prom_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(prom_t *p, const char *fmt, ...) {
    if (!p->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, sizeof(p->err), fmt, ap);
        va_end(ap);
        p->failed = 1;
    }
    return -1;
}

/* ---- the buffer ------------------------------------------------------------------ */

static int put(prom_t *p, const char *s, size_t n) {
    if (p->failed) return -1;
    if (n > p->max - p->len) return fail(p, "prom: page exceeds %zu bytes", p->max);
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : PROM_CHUNK < p->max ? PROM_CHUNK : p->max;
        while (cap < p->len + n) cap = cap > p->max / 2 ? p->max : cap * 2;
        char *b = realloc(p->buf, cap);
        if (!b) return fail(p, "prom: out of memory for a %zu-byte page", cap);
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    return 0;
}

static int put_str(prom_t *p, const char *s) { return put(p, s, strlen(s)); }

/* s with backslash and newline escaped, and double quote too if quoted. */
static int put_escaped(prom_t *p, const char *s, int quoted) {
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : *s == '"' && quoted ? "\\\"" : NULL;
        if (!esc) continue;
        put(p, run, (size_t)(s - run));
        put_str(p, esc);
        run = s + 1;
    }
    return put(p, run, (size_t)(s - run));
}

/* ---- checks ---------------------------------------------------------------------- */

static int utf8_ok(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!n) return 0;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80; /* no overlong forms, */
        unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf; /* surrogates, > U+10FFFF */
        for (size_t i = 1; i < n; i++) {
            if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf)) return 0;
        }
        s += n;
    }
    return 1;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]*, without ':' unless colon. */
static int name_ok(const char *s, int colon) {
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
                 (i > 0 && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return s[0] != '\0';
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* Whether the sample name s belongs to family f. */
static int owns(const fam_t *f, const char *s) {
    size_t n = strlen(f->name);
    if (f->type != PROM_HISTOGRAM) return !strcmp(f->name, s);
    if (strncmp(s, f->name, n)) return 0;
    for (size_t k = 0; k < 3; k++)
        if (!strcmp(s + n, HIST_SUFFIX[k])) return 1;
    return 0;
}

/* Whether a family (name, type) clashes with one already on the page: the
 * same name, or a sample name both would own. */
static int clashes(const prom_t *p, const char *name, prom_type_t type) {
    char s[PROM_NAME_MAX + 8];
    size_t ns = type == PROM_HISTOGRAM ? 3 : 1;
    for (size_t f = 0; f < p->nfam; f++) {
        if (!strcmp(p->fam[f].name, name)) return 1;
        for (size_t k = 0; k < ns; k++) {
            snprintf(s, sizeof(s), "%s%s", name, type == PROM_HISTOGRAM ? HIST_SUFFIX[k] : "");
            if (owns(&p->fam[f], s)) return 1;
        }
    }
    return 0;
}

/* Check the NULL-terminated name, value pairs; "le" is refused in histograms. */
static int check_labels(prom_t *p, const char *const *labels, int hist) {
    for (size_t i = 0; labels && labels[i]; i += 2) {
        const char *name = labels[i], *value = labels[i + 1];
        if (!name_ok(name, 0) || !strncmp(name, "__", 2) || (hist && !strcmp(name, "le")))
            return fail(p, "prom: %s: bad label name \"%.64s\"", p->fam[p->nfam - 1].name, name);
        if (!value || !utf8_ok(value))
            return fail(p, "prom: %s: label %s: %s", p->fam[p->nfam - 1].name, name,
                        value ? "value is not UTF-8" : "no value");
        for (size_t j = 0; j < i; j += 2)
            if (!strcmp(labels[j], name))
                return fail(p, "prom: %s: label %s given twice", p->fam[p->nfam - 1].name, name);
    }
    return 0;
}

/* The current family, if it is a histogram (hist) or a counter or gauge (!hist). */
static const fam_t *current(prom_t *p, int hist) {
    if (p->failed) return NULL;
    if (!p->nfam) {
        fail(p, "prom: a sample before any family");
        return NULL;
    }
    const fam_t *f = &p->fam[p->nfam - 1];
    if ((f->type == PROM_HISTOGRAM) != hist) {
        fail(p, "prom: %s is %s histogram: use %s", f->name, hist ? "not a" : "a",
             hist ? "prom_sample()" : "prom_histogram()");
        return NULL;
    }
    return f;
}

/* ---- numbers and lines ----------------------------------------------------------- */

/* v as the format spells it into buf (>= 32 bytes); NUL-terminated. */
static void fmt_double(char *buf, double v) {
    if (isnan(v)) {
        memcpy(buf, "NaN", 4);
    } else if (isinf(v)) {
        memcpy(buf, v > 0 ? "+Inf" : "-Inf", 5);
    } else if (fabs(v) < 9007199254740992.0 && v == (double)(int64_t)v) {
        text_dec(buf, (int64_t)v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, 32, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
    }
}

/* name+suffix{labels,le="le"} value, labels already checked. */
static int put_line(prom_t *p, const char *name, const char *suffix, const char *const *labels,
                    const char *le, double value) {
    char num[32];
    put_str(p, name);
    put_str(p, suffix);
    if ((labels && labels[0]) || le) {
        put_str(p, "{");
        for (size_t i = 0; labels && labels[i]; i += 2) {
            put_str(p, i ? "," : "");
            put_str(p, labels[i]);
            put_str(p, "=\"");
            put_escaped(p, labels[i + 1], 1);
            put_str(p, "\"");
        }
        if (le) {
            put_str(p, labels && labels[0] ? ",le=\"" : "le=\"");
            put_str(p, le);
            put_str(p, "\"");
        }
        put_str(p, "}");
    }
    fmt_double(num, value);
    put_str(p, " ");
    put_str(p, num);
    return put_str(p, "\n");
}

/* ---- the page -------------------------------------------------------------------- */

prom_t *prom_new(size_t max_bytes) {
    prom_t *p = calloc(1, sizeof(*p));
    if (p) p->max = max_bytes;
    return p;
}

void prom_free(prom_t *p) {
    if (!p) return;
    free(p->buf);
    free(p);
}

void prom_reset(prom_t *p) {
    p->len = 0;
    p->nfam = 0;
    p->failed = 0;
    p->err[0] = '\0';
}

int prom_family(prom_t *p, const char *name, prom_type_t type, const char *help) {
    static const char *const TYPES[] = {"counter", "gauge", "histogram"};
    if (p->failed) return -1;
    if (!name_ok(name, 1) || strlen(name) >= PROM_NAME_MAX)
        return fail(p, "prom: bad metric name \"%.64s\"", name);
    if (type == PROM_COUNTER && !ends_with(name, "_total"))
        return fail(p, "prom: counter %s: the name must end in _total", name);
    if (!help || !utf8_ok(help)) return fail(p, "prom: %s: help %s", name, help ? "is not UTF-8" : "missing");
    if (p->nfam == PROM_FAMILIES_MAX) return fail(p, "prom: more than %d families", PROM_FAMILIES_MAX);
    if (clashes(p, name, type)) return fail(p, "prom: family %s clashes with an earlier family", name);
    fam_t *f = &p->fam[p->nfam++];
    memcpy(f->name, name, strlen(name) + 1);
    f->type = type;
    put_str(p, "# HELP ");
    put_str(p, name);
    put_str(p, " ");
    put_escaped(p, help, 0);
    put_str(p, "\n# TYPE ");
    put_str(p, name);
    put_str(p, " ");
    put_str(p, TYPES[type]);
    return put_str(p, "\n");
}

int prom_sample(prom_t *p, const char *const *labels, double value) {
    const fam_t *f = current(p, 0);
    if (!f || check_labels(p, labels, 0)) return -1;
    if (f->type == PROM_COUNTER && !(value >= 0)) return fail(p, "prom: counter %s: value below 0", f->name);
    return put_line(p, f->name, "", labels, NULL, value);
}

int prom_histogram(prom_t *p, const char *const *labels, const prom_hist_t *h) {
    const fam_t *f = current(p, 1);
    if (!f || check_labels(p, labels, 1)) return -1;
    uint64_t cum = 0;
    char le[32];
    for (size_t i = 0; i <= h->n; i++) {
        cum += h->in[i];
        if (i < h->n) fmt_double(le, h->le[i]);
        put_line(p, f->name, "_bucket", labels, i < h->n ? le : "+Inf", (double)cum);
    }
    put_line(p, f->name, "_sum", labels, NULL, h->sum);
    return put_line(p, f->name, "_count", labels, NULL, (double)h->count);
}

int prom_text(const prom_t *p, const char **text, size_t *len, char *errbuf, size_t errlen) {
    if (p->failed) {
        snprintf(errbuf, errlen, "%s", p->err);
        return -1;
    }
    *text = p->buf ? p->buf : "";
    *len = p->len;
    return 0;
}

/* ---- the histogram --------------------------------------------------------------- */

int prom_hist_init(prom_hist_t *h, const double *le, size_t n, char *errbuf, size_t errlen) {
    memset(h, 0, sizeof(*h));
    if (n < 1 || n > PROM_HIST_BUCKETS_MAX) {
        snprintf(errbuf, errlen, "histogram: %zu bounds, want 1 to %d", n, PROM_HIST_BUCKETS_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(le[i]) || (i > 0 && !(le[i] > le[i - 1]))) {
            snprintf(errbuf, errlen, "histogram: bound %zu is not finite and above the one before", i + 1);
            return -1;
        }
        h->le[i] = le[i];
    }
    h->n = n;
    return 0;
}

void prom_hist_observe(prom_hist_t *h, double v) {
    if (isnan(v)) return;
    size_t i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->in[i]++;
    h->count++;
    h->sum += v;
}
