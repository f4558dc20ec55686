/*
 * satisfaction.c -- rolling NPS, CSAT and CES from bucketed counts (see
 * satisfaction.h for the windows and the formulas).
 *
 * Each finite window keeps its buckets sorted by number, sparse: only buckets
 * that hold an answer exist. Answers mostly arrive in event-time order, so
 * adding is an append or a hit on the last bucket; a late answer is inserted
 * in place. A bucket older than its window at the watermark can never be
 * counted again and is dropped by sat_series_expire(); the `all` total keeps
 * everything.
 */
#include "satisfaction.h"

#include "text.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sat_min_score(ev_metric_t m) { return m == EV_METRIC_NPS ? 0 : 1; }

int sat_max_score(ev_metric_t m) {
    return m == EV_METRIC_NPS ? 10 : m == EV_METRIC_CSAT ? 5 : m == EV_METRIC_CES ? 7 : -1;
}

int sat_score_ok(ev_metric_t m, int score) {
    return m != EV_METRIC_NONE && score >= sat_min_score(m) && score <= sat_max_score(m);
}

void sat_counts_add(sat_counts_t *to, const sat_counts_t *from) {
    for (int i = 0; i < SAT_MAX_SCORES; i++) to->n[i] += from->n[i];
}

int sat_windows_init(sat_windows_t *w, const int64_t *len_ms, int n, int k) {
    memset(w, 0, sizeof(*w));
    if (n < 0 || n > SAT_MAX_WINDOWS || k < 1) return -1;
    for (int i = 0; i < n; i++) {
        if (len_ms[i] <= 0 || len_ms[i] % k) return -1;
        w->len_ms[i] = len_ms[i];
        w->res_ms[i] = len_ms[i] / k;
    }
    w->n = n;
    w->buckets = k;
    return 0;
}

void sat_series_init(sat_series_t *s, ev_metric_t m) {
    memset(s, 0, sizeof(*s));
    s->metric = m;
}

void sat_series_free(sat_series_t *s) {
    for (int i = 0; i < SAT_MAX_WINDOWS; i++) {
        free(s->win[i].no);
        free(s->win[i].c);
        free(s->win[i].dirty);
    }
    sat_series_init(s, s->metric);
}

/* floor(ts / res) for negative times too. */
static int64_t bucket_of(int64_t ts, int64_t res) {
    int64_t q = ts / res;
    return q - (ts % res < 0);
}

/* The counts of bucket `no`, created (zero) in order if absent. */
static sat_counts_t *bucket_get(sat_buckets_t *b, int64_t no) {
    int pos = b->n;
    while (pos > 0 && b->no[pos - 1] > no) pos--;
    if (pos > 0 && b->no[pos - 1] == no) return &b->c[pos - 1];
    if (b->n == b->cap) {
        int ncap = b->cap ? 2 * b->cap : 8;
        int64_t *nos = realloc(b->no, (size_t)ncap * sizeof(*nos));
        sat_counts_t *c = nos ? realloc(b->c, (size_t)ncap * sizeof(*c)) : NULL;
        uint8_t *d = c ? realloc(b->dirty, (size_t)ncap) : NULL;
        if (!nos || !c || !d) abort();
        b->no = nos;
        b->c = c;
        b->dirty = d;
        b->cap = ncap;
    }
    memmove(&b->no[pos + 1], &b->no[pos], (size_t)(b->n - pos) * sizeof(*b->no));
    memmove(&b->c[pos + 1], &b->c[pos], (size_t)(b->n - pos) * sizeof(*b->c));
    memmove(&b->dirty[pos + 1], &b->dirty[pos], (size_t)(b->n - pos));
    b->no[pos] = no;
    memset(&b->c[pos], 0, sizeof(b->c[pos]));
    b->dirty[pos] = 0;
    b->n++;
    return &b->c[pos];
}

void sat_series_add(sat_series_t *s, const sat_windows_t *w, int64_t ts, int score, int64_t delta) {
    if (!sat_score_ok(s->metric, score)) return;
    int ix = score - sat_min_score(s->metric);
    s->total.n[ix] += delta;
    s->total_dirty = 1;
    for (int i = 0; i < w->n; i++) {
        sat_buckets_t *b = &s->win[i];
        sat_counts_t *c = bucket_get(b, bucket_of(ts, w->res_ms[i]));
        c->n[ix] += delta;
        b->dirty[c - b->c] = 1;
    }
}

void sat_series_put(sat_series_t *s, int window, int64_t no, const sat_counts_t *c) {
    sat_counts_add(window < 0 ? &s->total : bucket_get(&s->win[window], no), c);
}

void sat_series_merge(sat_series_t *dst, const sat_series_t *src, const sat_windows_t *w) {
    sat_counts_add(&dst->total, &src->total);
    for (int i = 0; i < w->n; i++)
        for (int k = 0; k < src->win[i].n; k++)
            sat_counts_add(bucket_get(&dst->win[i], src->win[i].no[k]), &src->win[i].c[k]);
}

/* Oldest bucket number window i holds at watermark wm. */
static int64_t first_bucket(const sat_windows_t *w, int i, int64_t wm) {
    return bucket_of(wm, w->res_ms[i]) - w->buckets + 1;
}

void sat_series_window(const sat_series_t *s, const sat_windows_t *w, int i, int64_t wm,
                       sat_counts_t *out) {
    memset(out, 0, sizeof(*out));
    if (i < 0) {
        *out = s->total;
        return;
    }
    int64_t lo = first_bucket(w, i, wm), hi = bucket_of(wm, w->res_ms[i]);
    const sat_buckets_t *b = &s->win[i];
    for (int k = 0; k < b->n; k++)
        if (b->no[k] >= lo && b->no[k] <= hi) sat_counts_add(out, &b->c[k]);
}

int sat_series_expire(sat_series_t *s, const sat_windows_t *w, int64_t wm,
                      void (*gone)(int window, int64_t no, void *opaque), void *opaque) {
    int dropped = 0;
    for (int i = 0; i < w->n; i++) {
        sat_buckets_t *b = &s->win[i];
        int64_t lo = first_bucket(w, i, wm);
        int k = 0;
        while (k < b->n && b->no[k] < lo) {
            if (gone) gone(i, b->no[k], opaque);
            k++;
        }
        if (!k) continue;
        memmove(b->no, b->no + k, (size_t)(b->n - k) * sizeof(*b->no));
        memmove(b->c, b->c + k, (size_t)(b->n - k) * sizeof(*b->c));
        memmove(b->dirty, b->dirty + k, (size_t)(b->n - k));
        b->n -= k;
        dropped += k;
    }
    return dropped;
}

void sat_compute(ev_metric_t m, const sat_counts_t *c, int64_t min_n, sat_result_t *r) {
    int lo = sat_min_score(m), hi = sat_max_score(m);
    double sum = 0, sum2 = 0;
    memset(r, 0, sizeof(*r));
    for (int v = lo; v <= hi; v++) {
        int64_t k = c->n[v - lo];
        r->n += k;
        sum += (double)k * v;
        sum2 += (double)k * v * v;
        if (m == EV_METRIC_NPS) {
            if (v >= 9) r->promoters += k;
            else if (v >= 7) r->passives += k;
            else r->detractors += k;
        } else if (m == EV_METRIC_CSAT && v >= 4) {
            r->satisfied += k;
        } else if (m == EV_METRIC_CES && v >= 5) {
            r->high += k;
        }
    }
    r->sufficient = r->n > 0 && r->n >= min_n;
    if (!r->sufficient) return;
    double n = (double)r->n;
    r->mean = sum / n;
    if (m == EV_METRIC_NPS) {
        double p = (double)r->promoters / n, d = (double)r->detractors / n;
        r->score = 100.0 * (p - d);
        double var = p + d - (p - d) * (p - d);
        r->moe = 1.96 * 100.0 * sqrt(var > 0 ? var / n : 0);
    } else if (m == EV_METRIC_CSAT) {
        double q = (double)r->satisfied / n;
        r->score = 100.0 * q;
        r->moe = 1.96 * 100.0 * sqrt(q * (1 - q) / n);
    } else {
        r->score = r->mean;
        r->high_pct = 100.0 * (double)r->high / n;
        double var = r->n > 1 ? (sum2 - sum * sum / n) / (n - 1) : 0;
        r->moe = r->n > 1 ? 1.96 * sqrt(var > 0 ? var : 0) / sqrt(n) : 0;
    }
}

/* ---- a partition's series ---------------------------------------------- */

const char *sat_metric_name(ev_metric_t m) {
    return m == EV_METRIC_NPS ? "nps" : m == EV_METRIC_CSAT ? "csat" : m == EV_METRIC_CES ? "ces" : "none";
}

static ev_metric_t metric_of(const char *name) {
    for (int m = EV_METRIC_NPS; m <= EV_METRIC_CES; m++)
        if (!strcmp(name, sat_metric_name((ev_metric_t)m))) return (ev_metric_t)m;
    return EV_METRIC_NONE;
}

static void put_name(char *buf, size_t cap, size_t *len, const char *s) {
    for (; *s && *len + 1 < cap; s++) buf[(*len)++] = *s == '|' ? '/' : *s;
    buf[*len] = '\0';
}

int sat_key(char *buf, size_t cap, const char *phase, int journey_scope, const char *dim, const char *name,
            ev_metric_t m) {
    size_t len = 0;
    put_name(buf, cap, &len, phase);
    int n = snprintf(buf + len, cap - len, "|%s|%s|", journey_scope ? "journey" : "touchpoint", dim);
    if (n < 0 || (size_t)n >= cap - len) return -1;
    len += (size_t)n;
    put_name(buf, cap, &len, name);
    n = snprintf(buf + len, cap - len, "|%s", sat_metric_name(m));
    return n < 0 || (size_t)n >= cap - len ? -1 : (int)(len + (size_t)n);
}

static uint64_t key_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t slot_of(const sat_part_t *p, const char *key) {
    size_t k = key_hash(key) & (p->cap_slots - 1);
    while (p->slots[k] && strcmp(p->v[p->slots[k] - 1].key, key)) k = (k + 1) & (p->cap_slots - 1);
    return k;
}

static int names_has(const sat_names_t *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name)) return 1;
    return 0;
}

static void names_add(sat_names_t *s, const char *name) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        if (!(s->v = realloc(s->v, (size_t)s->cap * sizeof(*s->v)))) abort();
    }
    if (!(s->v[s->n++] = strdup(name))) abort();
}

const char *sat_part_capped(sat_part_t *p, int segment, const char *name, int max) {
    sat_names_t *s = &p->names[segment ? 1 : 0];
    if (!strcmp(name, "other") || names_has(s, name)) return name;
    if (s->n >= max) return "other";
    names_add(s, name);
    return name;
}

/* A stored key's breakdown name, remembered so the cap keeps counting it. */
static void learn_name(sat_part_t *p, const char *key) {
    char parts[5][SAT_KEY_MAX];
    int n = 0;
    size_t len = 0;
    for (const char *q = key;; q++) {
        if (*q == '|' || !*q) {
            parts[n][len] = '\0';
            if (++n == 5 || !*q) break;
            len = 0;
        } else if (len + 1 < SAT_KEY_MAX) {
            parts[n][len++] = *q;
        }
    }
    if (n < 4 || !strcmp(parts[3], "other")) return;
    int seg = !strcmp(parts[2], "segment");
    if ((seg || !strcmp(parts[2], "touchpoint")) && !names_has(&p->names[seg], parts[3]))
        names_add(&p->names[seg], parts[3]);
}

sat_series_t *sat_part_series(sat_part_t *p, const char *key, ev_metric_t m) {
    if (p->cap_slots) {
        size_t k = slot_of(p, key);
        if (p->slots[k]) return &p->v[p->slots[k] - 1].s;
    }
    if (2 * (p->n + 1) > p->cap_slots) {
        size_t ncap = p->cap_slots ? 2 * p->cap_slots : 64;
        free(p->slots);
        if (!(p->slots = calloc(ncap, sizeof(*p->slots)))) abort();
        p->cap_slots = ncap;
        for (size_t i = 0; i < p->n; i++) p->slots[slot_of(p, p->v[i].key)] = (uint32_t)i + 1;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 32;
        if (!(p->v = realloc(p->v, p->cap * sizeof(*p->v)))) abort();
    }
    sat_part_entry_t *e = &p->v[p->n];
    if (!(e->key = strdup(key))) abort();
    sat_series_init(&e->s, m);
    e->changed = 0;
    p->slots[slot_of(p, key)] = (uint32_t)++p->n;
    return &e->s;
}

void sat_part_add(sat_part_t *p, const sat_windows_t *w, const char *key, ev_metric_t m, int64_t ts,
                  int score) {
    sat_series_t *s = sat_part_series(p, key, m);
    sat_part_entry_t *e = (sat_part_entry_t *)((char *)s - offsetof(sat_part_entry_t, s));
    sat_series_add(s, w, ts, score, 1);
    if (e->changed) return;
    e->changed = 1;
    if (p->n_changed == p->cap_changed) {
        p->cap_changed = p->cap_changed ? 2 * p->cap_changed : 64;
        if (!(p->changed = realloc(p->changed, p->cap_changed * sizeof(*p->changed)))) abort();
    }
    p->changed[p->n_changed++] = (uint32_t)(e - p->v);
}

int sat_part_learn(sat_part_t *p, const sat_windows_t *w, const char *field, const char *value) {
    char key[SAT_KEY_MAX];
    const char *bar = strrchr(field, '|');
    if (!bar) return -1;
    int window = -1;
    int64_t no = 0;
    size_t klen;
    if (!strcmp(bar + 1, "all")) {
        klen = (size_t)(bar - field);
    } else {
        const char *bar2 = bar;
        while (bar2 > field && bar2[-1] != '|') bar2--;
        if (bar2 == field) return -1;
        char *end;
        long long res = strtoll(bar2, &end, 10);
        if (end != bar) return -1;
        no = strtoll(bar + 1, &end, 10);
        if (*end || end == bar + 1) return -1;
        for (int i = 0; i < w->n; i++)
            if (w->res_ms[i] == res) window = i;
        if (window < 0) return 0; /* a resolution no longer configured */
        klen = (size_t)(bar2 - 1 - field);
    }
    if (klen >= sizeof(key)) return -1;
    memcpy(key, field, klen);
    key[klen] = '\0';
    const char *mname = strrchr(key, '|');
    ev_metric_t m = mname ? metric_of(mname + 1) : EV_METRIC_NONE;
    if (m == EV_METRIC_NONE) return -1;
    sat_counts_t c;
    memset(&c, 0, sizeof(c));
    const char *q = value;
    int nv = sat_max_score(m) - sat_min_score(m) + 1;
    for (int i = 0; i < nv; i++) {
        char *end;
        long long v = strtoll(q, &end, 10);
        if (end == q || v < 0 || (i < nv - 1 ? *end != ',' : *end != '\0')) return -1;
        c.n[i] = v;
        q = end + 1;
    }
    learn_name(p, key);
    sat_series_put(sat_part_series(p, key, m), window, no, &c);
    return 1;
}

static char *counts_str(ev_metric_t m, const sat_counts_t *c) {
    char buf[SAT_MAX_SCORES * 21 + 1];
    size_t len = 0;
    int nv = sat_max_score(m) - sat_min_score(m) + 1;
    for (int i = 0; i < nv; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%lld", i ? "," : "", (long long)c->n[i]);
    char *s = strdup(buf);
    if (!s) abort();
    return s;
}

static void strs_push(sat_strs_t *a, char *s) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        if (!(a->v = realloc(a->v, a->cap * sizeof(*a->v)))) abort();
    }
    a->v[a->n++] = s;
}

static char *field_name(const char *key, const sat_windows_t *w, int window, int64_t no) {
    char buf[SAT_KEY_MAX + 48];
    if (window < 0) snprintf(buf, sizeof(buf), "%s|all", key);
    else snprintf(buf, sizeof(buf), "%s|%lld|%lld", key, (long long)w->res_ms[window], (long long)no);
    char *s = strdup(buf);
    if (!s) abort();
    return s;
}

void sat_part_render(sat_part_t *p, const sat_windows_t *w, sat_strs_t *names, sat_strs_t *vals) {
    for (size_t i = 0; i < p->n_changed; i++) {
        sat_part_entry_t *e = &p->v[p->changed[i]];
        sat_series_t *s = &e->s;
        e->changed = 0;
        if (s->total_dirty) {
            strs_push(names, field_name(e->key, w, -1, 0));
            strs_push(vals, counts_str(s->metric, &s->total));
            s->total_dirty = 0;
        }
        for (int k = 0; k < w->n; k++)
            for (int b = 0; b < s->win[k].n; b++) {
                if (!s->win[k].dirty[b]) continue;
                strs_push(names, field_name(e->key, w, k, s->win[k].no[b]));
                strs_push(vals, counts_str(s->metric, &s->win[k].c[b]));
                s->win[k].dirty[b] = 0;
            }
    }
    p->n_changed = 0;
}

typedef struct gone_ctx {
    const char *key;
    const sat_windows_t *w;
    sat_strs_t *names;
} gone_ctx_t;

static void gone_field(int window, int64_t no, void *opaque) {
    gone_ctx_t *g = opaque;
    strs_push(g->names, field_name(g->key, g->w, window, no));
}

void sat_part_expire(sat_part_t *p, const sat_windows_t *w, int64_t wm, sat_strs_t *names) {
    for (size_t i = 0; i < p->n; i++) {
        gone_ctx_t g = {p->v[i].key, w, names};
        sat_series_expire(&p->v[i].s, w, wm, gone_field, &g);
    }
}

size_t sat_part_bytes(const sat_part_t *p) {
    size_t b = p->cap * sizeof(*p->v) + p->cap_slots * sizeof(*p->slots);
    for (size_t i = 0; i < p->n; i++) {
        b += strlen(p->v[i].key) + 1;
        for (int k = 0; k < SAT_MAX_WINDOWS; k++)
            b += (size_t)p->v[i].s.win[k].cap * (sizeof(int64_t) + sizeof(sat_counts_t) + 1);
    }
    return b;
}

void sat_part_free(sat_part_t *p) {
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].key);
        sat_series_free(&p->v[i].s);
    }
    free(p->v);
    free(p->slots);
    free(p->changed);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < p->names[k].n; i++) free(p->names[k].v[i]);
        free(p->names[k].v);
    }
    memset(p, 0, sizeof(*p));
}

void sat_strs_free(sat_strs_t *a) {
    for (size_t i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

/* ---- the snapshot ---------------------------------------------------------- */

/* One row of the snapshot: a phase, window and breakdown name, with the
 * counts of both scopes and the three metrics. */
typedef struct row {
    int phase, window, breakdown;      /* window -1: all; breakdown 0 all, 1 touchpoint, 2 segment */
    const char *name;                  /* points into a part's key */
    sat_counts_t c[2][3];              /* [journey scope][metric - 1] */
} row_t;

static int row_cmp(const void *a, const void *b) {
    const row_t *x = a, *y = b;
    if (x->phase != y->phase) return x->phase - y->phase;
    int wx = x->window < 0 ? SAT_MAX_WINDOWS : x->window, wy = y->window < 0 ? SAT_MAX_WINDOWS : y->window;
    if (wx != wy) return wx - wy;
    if (x->breakdown != y->breakdown) return x->breakdown - y->breakdown;
    size_t nx = strcspn(x->name, "|"), ny = strcspn(y->name, "|");
    int c = strncmp(x->name, y->name, nx < ny ? nx : ny);
    return c ? c : (nx > ny) - (nx < ny);
}

static void window_name(char *buf, size_t cap, int64_t ms) {
    static const struct { const char *u; int64_t ms; } U[] = {
        {"w", 604800000LL}, {"d", 86400000LL}, {"h", 3600000LL}, {"m", 60000LL}, {"s", 1000LL}};
    for (size_t i = 0; i < sizeof(U) / sizeof(U[0]); i++)
        if (ms % U[i].ms == 0) {
            snprintf(buf, cap, "%lld%s", (long long)(ms / U[i].ms), U[i].u);
            return;
        }
    snprintf(buf, cap, "%lldms", (long long)ms);
}

static void print_num(FILE *out, int ok, double v) {
    if (ok) fprintf(out, "%.4f", v);
    else fputs("null", out);
}

static void print_metric(FILE *out, ev_metric_t m, const sat_counts_t *c, int64_t min_n, sat_result_t *r) {
    sat_compute(m, c, min_n, r);
    fprintf(out, "{\"n\":%lld,\"counts\":[", (long long)r->n);
    for (int v = 0; v <= sat_max_score(m) - sat_min_score(m); v++)
        fprintf(out, "%s%lld", v ? "," : "", (long long)c->n[v]);
    fprintf(out, "],\"sufficient\":%s,\"score\":", r->sufficient ? "true" : "false");
    print_num(out, r->sufficient, r->score);
    fputs(",\"moe\":", out);
    print_num(out, r->sufficient, r->moe);
    if (m == EV_METRIC_NPS)
        fprintf(out, ",\"promoters\":%lld,\"passives\":%lld,\"detractors\":%lld", (long long)r->promoters,
                (long long)r->passives, (long long)r->detractors);
    else if (m == EV_METRIC_CSAT)
        fprintf(out, ",\"satisfied\":%lld", (long long)r->satisfied);
    else
        fprintf(out, ",\"high\":%lld,\"high_pct\":", (long long)r->high), print_num(out, r->sufficient, r->high_pct);
    if (m != EV_METRIC_NPS) {
        fputs(",\"mean\":", out);
        print_num(out, r->sufficient, r->mean);
    }
    fputc('}', out);
}

static int phase_ix(const char *const *phases, int n_phases, const char *name) {
    for (int k = 0; k < n_phases; k++)
        if (!strcmp(phases[k], name)) return k;
    return -1;
}

void sat_print_json(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                    const char *const *phases, int n_phases, int64_t min_n, FILE *out) {
    row_t *rows = NULL;
    size_t n = 0, cap = 0;
    static const char *const BD[] = {"all", "touchpoint", "segment"};
    for (size_t pi = 0; pi < n_parts; pi++) {
    const sat_part_t *p = &parts[pi];
    int64_t wm = wms[pi];
    for (size_t i = 0; i < p->n; i++) {
        /* <phase>|<scope>|<breakdown>|<name>|<metric> */
        const char *key = p->v[i].key, *f[5];
        size_t len[5];
        int nf = 0;
        for (const char *q = key; nf < 5; nf++) {
            const char *bar = nf < 4 ? strchr(q, '|') : q + strlen(q);
            if (!bar) break;
            f[nf] = q;
            len[nf] = (size_t)(bar - q);
            q = bar + 1;
        }
        if (nf < 5) continue;
        char ph[SAT_KEY_MAX];
        snprintf(ph, sizeof(ph), "%.*s", (int)len[0], f[0]);
        int k = phase_ix(phases, n_phases, ph), bd = -1;
        for (int b = 0; b < 3; b++)
            if (len[2] == strlen(BD[b]) && !strncmp(f[2], BD[b], len[2])) bd = b;
        int js = len[1] == 7 && !strncmp(f[1], "journey", 7);
        ev_metric_t m = p->v[i].s.metric;
        if (k < 0 || bd < 0 || m == EV_METRIC_NONE) continue; /* a phase no longer configured */
        for (int win = -1; win < w->n; win++) {
            sat_counts_t c;
            sat_series_window(&p->v[i].s, w, win, wm, &c);
            size_t r = 0;
            while (r < n && !(rows[r].phase == k && rows[r].window == win && rows[r].breakdown == bd &&
                              strlen(rows[r].name) >= len[3] && !strncmp(rows[r].name, f[3], len[3]) &&
                              (rows[r].name[len[3]] == '|')))
                r++;
            if (r == n) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    if (!(rows = realloc(rows, cap * sizeof(*rows)))) abort();
                }
                memset(&rows[n], 0, sizeof(rows[n]));
                rows[n] = (row_t){.phase = k, .window = win, .breakdown = bd, .name = f[3]};
                n++;
            }
            sat_counts_add(&rows[r].c[js][m - 1], &c);
        }
    }
    }
    qsort(rows, n, sizeof(*rows), row_cmp);
    char wn[32];
    fprintf(out, "{\"min_n\":%lld,\"windows\":[", (long long)min_n);
    for (int i = 0; i < w->n; i++) {
        window_name(wn, sizeof(wn), w->len_ms[i]);
        fprintf(out, "{\"window\":\"%s\",\"length_ms\":%lld,\"bucket_ms\":%lld},", wn, (long long)w->len_ms[i],
                (long long)w->res_ms[i]);
    }
    fputs("{\"window\":\"all\",\"length_ms\":null,\"bucket_ms\":null}],\"series\":[", out);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        row_t *r = &rows[i];
        int64_t total = 0;
        for (int s = 0; s < 2; s++)
            for (int m = 0; m < 3; m++)
                for (int v = 0; v < SAT_MAX_SCORES; v++) total += r->c[s][m].n[v];
        if (!total) continue; /* nothing in this window */
        size_t nl = strcspn(r->name, "|");
        if (r->window < 0) snprintf(wn, sizeof(wn), "all");
        else window_name(wn, sizeof(wn), w->len_ms[r->window]);
        fprintf(out, "%s{\"phase\":", first ? "" : ",");
        first = 0;
        text_json_str(out, phases[r->phase]);
        char name[SAT_KEY_MAX];
        snprintf(name, sizeof(name), "%.*s", (int)nl, r->name);
        fprintf(out, ",\"window\":\"%s\",\"breakdown\":\"%s\",\"name\":", wn, BD[r->breakdown]);
        text_json_str(out, name);
        sat_result_t res[2][3];
        for (int s = 0; s < 2; s++) {
            fputs(s ? ",\"journey_scope\":{" : ",\"touchpoint_scope\":{", out);
            for (int m = 0; m < 3; m++) {
                fprintf(out, "%s\"%s\":", m ? "," : "", sat_metric_name((ev_metric_t)(m + 1)));
                print_metric(out, (ev_metric_t)(m + 1), &r->c[s][m], min_n, &res[s][m]);
            }
            fputc('}', out);
        }
        fputs(",\"gap\":{", out);
        for (int m = 0; m < 3; m++) {
            fprintf(out, "%s\"%s\":", m ? "," : "", sat_metric_name((ev_metric_t)(m + 1)));
            print_num(out, res[0][m].sufficient && res[1][m].sufficient, res[1][m].score - res[0][m].score);
        }
        fputs("}}", out);
    }
    fputs("]}", out);
    free(rows);
}
