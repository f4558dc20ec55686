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

/* Append s to buf (a '|' in it written '/' if name), then sep if not NUL;
 * -1 if it does not fit (with its NUL). Keys are built once per answer and
 * fields once per change: no printf, which cost more than all the rest. */
static int put(char *buf, size_t cap, size_t *len, const char *s, int name, char sep) {
    for (; *s; s++) {
        if (*len + 2 >= cap) return -1;
        buf[(*len)++] = name && *s == '|' ? '/' : *s;
    }
    if (sep) buf[(*len)++] = sep;
    buf[*len] = '\0';
    return 0;
}

int sat_key(char *buf, size_t cap, const char *phase, int journey_scope, const char *dim, const char *name,
            ev_metric_t m) {
    size_t len = 0;
    if (!cap || put(buf, cap, &len, phase, 1, '|') < 0 ||
        put(buf, cap, &len, journey_scope ? "journey" : "touchpoint", 0, '|') < 0 ||
        put(buf, cap, &len, dim, 0, '|') < 0 || put(buf, cap, &len, name, 1, '|') < 0 ||
        put(buf, cap, &len, sat_metric_name(m), 0, 0) < 0)
        return -1;
    return (int)len;
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

/* Count the answer, marking its series changed. */
static void part_count(sat_part_t *p, const sat_windows_t *w, const char *key, ev_metric_t m, int64_t ts,
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

/* "<ts> <score> <key>\0" appended to the log. */
static void log_record(sat_part_t *p, const char *key, int64_t ts, int score) {
    size_t klen = strlen(key), need = p->log_len + klen + 48;
    if (need > p->log_cap) {
        p->log_cap = p->log_cap * 2 > need ? p->log_cap * 2 : need + 4096;
        if (!(p->log = realloc(p->log, p->log_cap))) abort();
    }
    char *q = p->log + p->log_len;
    q += text_dec(q, ts);
    *q++ = ' ';
    q += text_dec(q, score);
    *q++ = ' ';
    memcpy(q, key, klen + 1);
    p->log_len = (size_t)(q + klen + 1 - p->log);
}

void sat_part_add(sat_part_t *p, const sat_windows_t *w, const char *key, ev_metric_t m, int64_t ts,
                  int score) {
    part_count(p, w, key, m, ts, score);
    log_record(p, key, ts, score);
}

void sat_part_log_clear(sat_part_t *p) { p->log_len = 0; }

long sat_part_replay(sat_part_t *p, const sat_windows_t *w, const char *log, size_t len) {
    long n = 0;
    const char *q = log, *end = log + len;
    while (q < end) {
        const char *nul = memchr(q, '\0', (size_t)(end - q));
        if (!nul) return -1;
        if (*q == '#') { /* a checkpoint's header */
            q = nul + 1;
            continue;
        }
        char *e1, *e2;
        long long ts = strtoll(q, &e1, 10);
        if (e1 == q || *e1 != ' ') return -1;
        long score = strtol(e1 + 1, &e2, 10);
        if (e2 == e1 + 1 || *e2 != ' ' || nul - (e2 + 1) >= SAT_KEY_MAX) return -1;
        const char *key = e2 + 1, *mname = strrchr(key, '|');
        ev_metric_t m = mname ? metric_of(mname + 1) : EV_METRIC_NONE;
        if (m == EV_METRIC_NONE || !sat_score_ok(m, (int)score)) return -1;
        learn_name(p, key);
        part_count(p, w, key, m, ts, (int)score);
        n++;
        q = nul + 1;
    }
    return n;
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

/* Append a copy of s[0..len) (its pointer comes with strs_seal()). */
static void strs_add(sat_strs_t *a, const char *s, size_t len) {
    if (a->len + len + 1 > a->cap) {
        a->cap = a->cap * 2 > a->len + len + 1 ? a->cap * 2 : a->len + len + 1024;
        if (!(a->buf = realloc(a->buf, a->cap))) abort();
    }
    if (a->n == a->cap_off) {
        a->cap_off = a->cap_off ? 2 * a->cap_off : 64;
        if (!(a->off = realloc(a->off, a->cap_off * sizeof(*a->off)))) abort();
    }
    a->off[a->n++] = a->len;
    memcpy(a->buf + a->len, s, len);
    a->len += len;
    a->buf[a->len++] = '\0';
}

/* v[i] points at string i (the buffer has stopped moving). */
static void strs_seal(sat_strs_t *a) {
    free(a->v);
    if (!(a->v = malloc((a->n + 1) * sizeof(*a->v)))) abort();
    for (size_t i = 0; i < a->n; i++) a->v[i] = a->buf + a->off[i];
}

static void add_counts(sat_strs_t *a, ev_metric_t m, const sat_counts_t *c) {
    char buf[SAT_MAX_SCORES * 21 + 1];
    size_t len = 0;
    int nv = sat_max_score(m) - sat_min_score(m) + 1;
    for (int i = 0; i < nv; i++) {
        if (i) buf[len++] = ',';
        len += text_dec(buf + len, c->n[i]);
    }
    strs_add(a, buf, len);
}

static void add_field(sat_strs_t *a, const char *key, const sat_windows_t *w, int window, int64_t no) {
    char buf[SAT_KEY_MAX + 48];
    size_t len = strlen(key);
    memcpy(buf, key, len); /* keys are shorter than SAT_KEY_MAX */
    if (window < 0) {
        memcpy(buf + len, "|all", 4);
        len += 4;
    } else {
        buf[len++] = '|';
        len += text_dec(buf + len, w->res_ms[window]);
        buf[len++] = '|';
        len += text_dec(buf + len, no);
    }
    strs_add(a, buf, len);
}

void sat_part_render(sat_part_t *p, const sat_windows_t *w, sat_strs_t *names, sat_strs_t *vals) {
    for (size_t i = 0; i < p->n_changed; i++) {
        sat_part_entry_t *e = &p->v[p->changed[i]];
        sat_series_t *s = &e->s;
        e->changed = 0;
        if (s->total_dirty) {
            add_field(names, e->key, w, -1, 0);
            add_counts(vals, s->metric, &s->total);
            s->total_dirty = 0;
        }
        for (int k = 0; k < w->n; k++)
            for (int b = 0; b < s->win[k].n; b++) {
                if (!s->win[k].dirty[b]) continue;
                add_field(names, e->key, w, k, s->win[k].no[b]);
                add_counts(vals, s->metric, &s->win[k].c[b]);
                s->win[k].dirty[b] = 0;
            }
    }
    p->n_changed = 0;
    strs_seal(names);
    strs_seal(vals);
}

typedef struct gone_ctx {
    const char *key;
    const sat_windows_t *w;
    sat_strs_t *names;
} gone_ctx_t;

static void gone_field(int window, int64_t no, void *opaque) {
    gone_ctx_t *g = opaque;
    add_field(g->names, g->key, g->w, window, no);
}

void sat_part_expire(sat_part_t *p, const sat_windows_t *w, int64_t wm, sat_strs_t *names) {
    for (size_t i = 0; i < p->n; i++) {
        gone_ctx_t g = {p->v[i].key, w, names};
        sat_series_expire(&p->v[i].s, w, wm, gone_field, &g);
    }
    strs_seal(names);
}

size_t sat_part_bytes(const sat_part_t *p) {
    size_t b = p->cap * sizeof(*p->v) + p->cap_slots * sizeof(*p->slots) + p->log_cap;
    for (size_t i = 0; i < p->n; i++) {
        b += strlen(p->v[i].key) + 1;
        for (int k = 0; k < SAT_MAX_WINDOWS; k++)
            b += (size_t)p->v[i].s.win[k].cap * (sizeof(int64_t) + sizeof(sat_counts_t) + 1);
    }
    return b;
}

size_t sat_part_buckets(const sat_part_t *p) {
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        for (int k = 0; k < SAT_MAX_WINDOWS; k++) n += (size_t)p->v[i].s.win[k].n;
    return n;
}

void sat_part_free(sat_part_t *p) {
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].key);
        sat_series_free(&p->v[i].s);
    }
    free(p->v);
    free(p->slots);
    free(p->changed);
    free(p->log);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < p->names[k].n; i++) free(p->names[k].v[i]);
        free(p->names[k].v);
    }
    memset(p, 0, sizeof(*p));
}

void sat_strs_free(sat_strs_t *a) {
    free(a->buf);
    free(a->off);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

/* ---- the snapshot ---------------------------------------------------------- */

/*
 * Both printers read the same rows. sat_rows() adds every partition's series,
 * each finite window taken at that partition's own watermark, into one row
 * per (phase, window, breakdown, name) holding the counts of both scopes and
 * the three metrics, sorted by phase (configured order), window (configured
 * order, then all), breakdown (all, touchpoint, segment) and name.
 * sat_print_json() writes the rows as the snapshot's `satisfaction` member,
 * sat_print_text() as a table for people. Rows with no answer are skipped
 * by both.
 */

/* One row of the snapshot: a phase, window and breakdown name, with the
 * counts of both scopes and the three metrics. */
typedef struct row {
    int phase, window, breakdown;      /* window -1: all; breakdown 0 all, 1 touchpoint, 2 segment */
    const char *name;                  /* points into a part's key, up to its '|' */
    sat_counts_t c[2][3];              /* [journey scope][metric - 1] */
} row_t;

static const char *const BD[] = {"all", "touchpoint", "segment"};

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

static int64_t row_total(const row_t *r) {
    int64_t total = 0;
    for (int s = 0; s < 2; s++)
        for (int m = 0; m < 3; m++)
            for (int v = 0; v < SAT_MAX_SCORES; v++) total += r->c[s][m].n[v];
    return total;
}

void sat_window_name(const sat_windows_t *w, int window, char *buf, size_t cap) {
    if (window < 0 || window >= w->n) snprintf(buf, cap, "all");
    else text_duration_unit(w->len_ms[window], buf, cap);
}

int sat_window_find(const sat_windows_t *w, const char *name, int *window) {
    char wn[32];
    for (int i = -1; i < w->n; i++) {
        sat_window_name(w, i, wn, sizeof(wn));
        if (!strcmp(wn, name)) {
            *window = i;
            return 0;
        }
    }
    return -1;
}

static int phase_ix(const char *const *phases, int n_phases, const char *name) {
    for (int k = 0; k < n_phases; k++)
        if (!strcmp(phases[k], name)) return k;
    return -1;
}

/* The rows being built: a growing array, searched by its key. */
typedef struct rows {
    row_t *v;
    size_t n, cap;
} rows_t;

/* The row of (phase, window, breakdown, the name of nl bytes at name),
 * appended empty if new. */
static row_t *rows_get(rows_t *rs, int phase, int window, int bd, const char *name, size_t nl) {
    for (size_t r = 0; r < rs->n; r++) {
        const row_t *x = &rs->v[r];
        if (x->phase == phase && x->window == window && x->breakdown == bd && strlen(x->name) >= nl &&
            !strncmp(x->name, name, nl) && x->name[nl] == '|')
            return &rs->v[r];
    }
    if (rs->n == rs->cap) {
        size_t ncap = rs->cap ? 2 * rs->cap : 64;
        row_t *v = realloc(rs->v, ncap * sizeof(*v));
        if (!v) abort();
        rs->v = v;
        rs->cap = ncap;
    }
    row_t *x = &rs->v[rs->n++];
    memset(x, 0, sizeof(*x));
    x->phase = phase;
    x->window = window;
    x->breakdown = bd;
    x->name = name;
    return x;
}

/* Add one series (a part's entry) at watermark wm into its rows, every window. */
static void rows_add_entry(rows_t *rs, const sat_part_entry_t *e, int64_t wm, const sat_windows_t *w,
                           const char *const *phases, int n_phases) {
    /* <phase>|<scope>|<breakdown>|<name>|<metric> */
    const char *f[5];
    size_t len[5];
    int nf = 0;
    for (const char *q = e->key; nf < 5; nf++) {
        const char *bar = nf < 4 ? strchr(q, '|') : q + strlen(q);
        if (!bar) break;
        f[nf] = q;
        len[nf] = (size_t)(bar - q);
        q = bar + 1;
    }
    if (nf < 5) return;
    char ph[SAT_KEY_MAX];
    snprintf(ph, sizeof(ph), "%.*s", (int)len[0], f[0]);
    int k = phase_ix(phases, n_phases, ph), bd = -1;
    for (int b = 0; b < 3; b++)
        if (len[2] == strlen(BD[b]) && !strncmp(f[2], BD[b], len[2])) bd = b;
    int js = len[1] == 7 && !strncmp(f[1], "journey", 7);
    ev_metric_t m = e->s.metric;
    /* a phase no longer configured; the overall rows are the sums of the
     * touchpoint ones (every answer counts under one touchpoint, `other` and
     * `unknown` included), so they are not stored */
    if (k < 0 || bd <= 0 || m == EV_METRIC_NONE) return;
    for (int win = -1; win < w->n; win++) {
        sat_counts_t c;
        sat_series_window(&e->s, w, win, wm, &c);
        sat_counts_add(&rows_get(rs, k, win, bd, f[3], len[3])->c[js][m - 1], &c);
        if (bd == 1) sat_counts_add(&rows_get(rs, k, win, 0, "all|", 3)->c[js][m - 1], &c);
    }
}

/* Every partition's series as sorted rows (their names point into the
 * parts' keys); the caller frees the array. */
static row_t *sat_rows(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                       const char *const *phases, int n_phases, size_t *n) {
    rows_t rs = {NULL, 0, 0};
    for (size_t pi = 0; pi < n_parts; pi++)
        for (size_t i = 0; i < parts[pi].n; i++) rows_add_entry(&rs, &parts[pi].v[i], wms[pi], w, phases, n_phases);
    if (rs.n) qsort(rs.v, rs.n, sizeof(*rs.v), row_cmp);
    *n = rs.n;
    return rs.v;
}

void sat_each_row(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                  const char *const *phases, int n_phases, int64_t min_n,
                  void (*fn)(const char *phase, const char *window, const char *breakdown, const char *name,
                             const char *scope, ev_metric_t m, const sat_result_t *r, void *opaque),
                  void *opaque) {
    size_t n;
    row_t *rows = sat_rows(parts, wms, n_parts, w, phases, n_phases, &n);
    for (size_t i = 0; i < n; i++) {
        char wn[32], name[SAT_KEY_MAX];
        sat_window_name(w, rows[i].window, wn, sizeof(wn));
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(rows[i].name, "|"), rows[i].name);
        for (int sc = 0; sc < 2; sc++)
            for (int m = 0; m < 3; m++) {
                sat_result_t r;
                sat_compute((ev_metric_t)(m + 1), &rows[i].c[sc][m], min_n, &r);
                if (r.n)
                    fn(phases[rows[i].phase], wn, BD[rows[i].breakdown], name, sc ? "journey" : "touchpoint",
                       (ev_metric_t)(m + 1), &r, opaque);
            }
    }
    free(rows);
}

/* ---- the snapshot as JSON ---- */

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

static void print_row_json(FILE *out, const row_t *r, const sat_windows_t *w, const char *const *phases,
                           int64_t min_n) {
    char wn[32], name[SAT_KEY_MAX];
    sat_window_name(w, r->window, wn, sizeof(wn));
    fputs("{\"phase\":", out);
    text_json_str(out, phases[r->phase]);
    snprintf(name, sizeof(name), "%.*s", (int)strcspn(r->name, "|"), r->name);
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

/* A row, also handed to entry. */
static void print_row_entry(FILE *out, const row_t *r, const sat_windows_t *w, const char *const *phases,
                            int64_t min_n,
                            void (*entry)(const char *, const char *, const char *, const char *, size_t, void *),
                            void *opaque) {
    char *buf = NULL, key[SAT_KEY_MAX + 96], wn[32];
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) abort();
    print_row_json(m, r, w, phases, min_n);
    fclose(m);
    sat_window_name(w, r->window, wn, sizeof(wn));
    snprintf(key, sizeof(key), "satisfaction|%s|%s|%s|%.*s", phases[r->phase], wn, BD[r->breakdown],
             (int)strcspn(r->name, "|"), r->name);
    entry("satisfaction", NULL, key, buf, len, opaque);
    fwrite(buf, 1, len, out);
    free(buf);
}

void sat_print_json(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                    const char *const *phases, int n_phases, int64_t min_n, FILE *out) {
    sat_print_json_each(parts, wms, n_parts, w, phases, n_phases, min_n, NULL, NULL, out);
}

void sat_print_json_each(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                         const char *const *phases, int n_phases, int64_t min_n,
                         void (*entry)(const char *kind, const char *segment, const char *key,
                                       const char *json, size_t len, void *opaque),
                         void *opaque, FILE *out) {
    size_t n;
    row_t *rows = sat_rows(parts, wms, n_parts, w, phases, n_phases, &n);
    fprintf(out, "{\"min_n\":%lld,\"windows\":[", (long long)min_n);
    for (int i = 0; i < w->n; i++) {
        char wn[32];
        text_duration_unit(w->len_ms[i], wn, sizeof(wn));
        fprintf(out, "{\"window\":\"%s\",\"length_ms\":%lld,\"bucket_ms\":%lld},", wn, (long long)w->len_ms[i],
                (long long)w->res_ms[i]);
    }
    fputs("{\"window\":\"all\",\"length_ms\":null,\"bucket_ms\":null}],\"series\":[", out);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (!row_total(&rows[i])) continue; /* nothing in this window */
        if (!first) fputc(',', out);
        first = 0;
        if (entry) print_row_entry(out, &rows[i], w, phases, min_n, entry, opaque);
        else print_row_json(out, &rows[i], w, phases, min_n);
    }
    fputs("]}", out);
    free(rows);
}

/* ---- the snapshot as a table ----
 *
 * A block per phase and window; in it a line per metric and row: the
 * overall row always, then touchpoints and segments (if asked) that have an
 * answer for that metric. Columns: answers and score ± margin of error for
 * the touchpoint scope, then the journey scope, then the gap. The widths are
 * measured in a first pass over the same lines, so the columns line up
 * across blocks and a line stays within TABLE_COLS (long names are cut).
 */

#define TABLE_COLS 120

/* Display columns of UTF-8 text: the bytes that start a character. */
static int text_cols(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* s padded with spaces to width columns, on the right (left-aligned) or the left. */
static void put_cell(FILE *out, const char *s, int width, int right) {
    int pad = width - text_cols(s);
    for (; right && pad > 0; pad--) fputc(' ', out);
    fputs(s, out);
    for (; !right && pad > 0; pad--) fputc(' ', out);
}

/* "all", "touchpoint NAME" or "segment NAME", control bytes shown as '?'. */
static void row_label(const row_t *r, char *buf, size_t cap) {
    if (!r->breakdown) {
        snprintf(buf, cap, "all");
        return;
    }
    int len = snprintf(buf, cap, "%s ", BD[r->breakdown]);
    size_t k = len > 0 && (size_t)len < cap ? (size_t)len : 0;
    for (const char *q = r->name; *q && *q != '|' && k + 1 < cap; q++)
        buf[k++] = (unsigned char)*q < 0x20 || *q == 0x7f ? '?' : *q;
    buf[k] = '\0';
}

/* Cut s to max columns (max >= 1), ending it with "…" if it was longer. */
static void cut_cols(char *s, size_t cap, int max) {
    if (text_cols(s) <= max) return;
    size_t k = 0; /* the start of character number max (from 1) */
    for (int c = 0; s[k]; k++) {
        c += ((unsigned char)s[k] & 0xc0) != 0x80;
        if (c == max) break;
    }
    if (k + 4 <= cap) memcpy(s + k, "\xe2\x80\xa6", 4); /* "…" and the NUL */
    else s[k] = '\0';
}

/* A signed number, never "-0.0". */
static void signed_str(char *buf, size_t cap, double v, int decimals) {
    double half = decimals == 1 ? 0.05 : 0.005;
    snprintf(buf, cap, "%+.*f", decimals, v > -half && v < half ? 0.0 : v);
}

/* A score cell: "+23.4 ± 4.1", "81.2% ± 3.9", "3.12 ± 0.15"; "n<MIN" when
 * insufficient, "-" without answers; the score right-aligned in 6 columns
 * so the ± line up. */
static void score_str(char *buf, size_t cap, ev_metric_t m, const sat_result_t *r, int64_t min_n) {
    char v[32];
    if (!r->n) snprintf(v, sizeof(v), "-");
    else if (!r->sufficient) snprintf(v, sizeof(v), "n<%lld", (long long)min_n);
    else if (m == EV_METRIC_NPS) signed_str(v, sizeof(v), r->score, 1);
    else if (m == EV_METRIC_CSAT) snprintf(v, sizeof(v), "%.1f%%", r->score);
    else snprintf(v, sizeof(v), "%.2f", r->score);
    if (r->sufficient) snprintf(buf, cap, "%6s \xc2\xb1 %.*f", v, m == EV_METRIC_CES ? 2 : 1, r->moe);
    else snprintf(buf, cap, "%6s", v);
}

/* The cells of one line: a row's metric in both scopes, and the gap. */
typedef struct line {
    char label[SAT_KEY_MAX + 16];
    char n[2][24], score[2][48], gap[24];
    int64_t answers;
} line_t;

static void line_of(line_t *l, const row_t *r, int m, int64_t min_n) {
    ev_metric_t metric = (ev_metric_t)(m + 1);
    sat_result_t res[2];
    row_label(r, l->label, sizeof(l->label));
    l->answers = 0;
    for (int s = 0; s < 2; s++) {
        sat_compute(metric, &r->c[s][m], min_n, &res[s]);
        snprintf(l->n[s], sizeof(l->n[s]), "%lld", (long long)res[s].n);
        score_str(l->score[s], sizeof(l->score[s]), metric, &res[s], min_n);
        l->answers += res[s].n;
    }
    if (res[0].sufficient && res[1].sufficient)
        signed_str(l->gap, sizeof(l->gap), res[1].score - res[0].score, metric == EV_METRIC_CES ? 2 : 1);
    else snprintf(l->gap, sizeof(l->gap), "-");
}

typedef struct table {
    FILE *out;                  /* NULL: measuring the widths */
    int64_t min_n;
    const sat_text_opts_t *o;
    int wl, wn, wc, wg;         /* widths: label, answers, score, gap */
} table_t;

static int max_i(int a, int b) { return a > b ? a : b; }

/* One line (metric is "" after a metric's first line). */
static void table_line(table_t *t, const char *metric, line_t *l) {
    if (!t->out) {
        t->wl = max_i(t->wl, text_cols(l->label));
        t->wn = max_i(t->wn, max_i(text_cols(l->n[0]), text_cols(l->n[1])));
        t->wc = max_i(t->wc, max_i(text_cols(l->score[0]), text_cols(l->score[1])));
        t->wg = max_i(t->wg, text_cols(l->gap));
        return;
    }
    cut_cols(l->label, sizeof(l->label), t->wl);
    fputs("  ", t->out);
    put_cell(t->out, metric, 6, 0);
    fputs("  ", t->out);
    put_cell(t->out, l->label, t->wl, 0);
    for (int s = 0; s < 2; s++) {
        fputs("  ", t->out);
        put_cell(t->out, l->n[s], t->wn, 1);
        fputs("  ", t->out);
        put_cell(t->out, l->score[s], t->wc, 0);
    }
    fputs("  ", t->out);
    put_cell(t->out, l->gap, t->wg, 1);
    fputc('\n', t->out);
}

/* The block of rows [a, b) (one phase and window): a heading, then for
 * each metric the overall row and the asked breakdowns with answers. */
static void table_block(table_t *t, const row_t *rows, size_t a, size_t b, const char *heading) {
    static const char *const M[] = {"NPS", "CSAT", "CES"};
    static const row_t none; /* an overall row without answers */
    const row_t *all = &none;
    int64_t total = 0;
    for (size_t i = a; i < b; i++) {
        total += row_total(&rows[i]);
        if (!rows[i].breakdown) all = &rows[i];
    }
    if (t->out && !total) fprintf(t->out, "\n%s: no answers\n", heading);
    if (!total) return;
    if (t->out) {
        fprintf(t->out, "\n%s\n  ", heading);
        put_cell(t->out, "metric", 6, 0);
        fputs("  ", t->out);
        put_cell(t->out, "name", t->wl, 0);
        for (int s = 0; s < 2; s++) {
            fputs("  ", t->out);
            put_cell(t->out, "n", t->wn, 1);
            fputs("  ", t->out);
            put_cell(t->out, s ? "journey scope" : "touchpoint scope", t->wc, 0);
        }
        fputs("  ", t->out);
        put_cell(t->out, "gap", t->wg, 1);
        fputc('\n', t->out);
    }
    for (int m = 0; m < 3; m++) {
        line_t l;
        line_of(&l, all, m, t->min_n);
        table_line(t, M[m], &l);
        for (size_t i = a; i < b; i++) {
            const row_t *r = &rows[i];
            if (!r->breakdown || !(r->breakdown == 1 ? t->o->touchpoints : t->o->segments)) continue;
            line_of(&l, r, m, t->min_n);
            if (l.answers) table_line(t, "", &l);
        }
    }
}

/* Every block asked for, in order (phase, then window: configured, then all). */
static void table_blocks(table_t *t, const row_t *rows, size_t n, const sat_windows_t *w,
                         const char *const *phases, int n_phases) {
    const sat_text_opts_t *o = t->o;
    for (int k = 0; k < n_phases; k++) {
        if (o->phase >= 0 && o->phase != k) continue;
        for (int j = 0; j <= w->n; j++) {
            int win = j < w->n ? j : -1;
            if (o->window != SAT_EVERY_WINDOW && o->window != win) continue;
            size_t a = 0, b;
            while (a < n && (rows[a].phase != k || rows[a].window != win)) a++;
            for (b = a; b < n && rows[b].phase == k && rows[b].window == win; b++) {}
            char heading[SAT_KEY_MAX + 64], wn[32], res[32];
            if (win < 0) {
                snprintf(heading, sizeof(heading), "%s \xe2\x80\x94 all time", phases[k]);
            } else {
                text_duration_unit(w->len_ms[win], wn, sizeof(wn));
                text_duration_unit(w->res_ms[win], res, sizeof(res));
                snprintf(heading, sizeof(heading), "%s \xe2\x80\x94 %s window (%d buckets of %s)", phases[k], wn,
                         w->buckets, res);
            }
            table_block(t, rows, a, b, heading);
        }
    }
}

void sat_print_text(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                    const char *const *phases, int n_phases, int64_t min_n, const sat_text_opts_t *o,
                    FILE *out) {
    size_t n;
    row_t *rows = sat_rows(parts, wms, n_parts, w, phases, n_phases, &n);
    table_t t = {.out = NULL, .min_n = min_n, .o = o, .wl = 4, .wn = 1, .wc = text_cols("touchpoint scope"),
                 .wg = 3};
    table_blocks(&t, rows, n, w, phases, n_phases); /* measure */
    int fixed = 2 + 6 + 2 + 2 * (2 + t.wn + 2 + t.wc) + 2 + t.wg;
    t.wl = t.wl < TABLE_COLS - fixed ? t.wl : max_i(TABLE_COLS - fixed, 8);
    t.out = out;
    int64_t lo = INT64_MAX;
    for (size_t i = 0; i < n_parts; i++)
        if (wms[i] > INT64_MIN && wms[i] < lo) lo = wms[i];
    if (lo != INT64_MAX) {
        char tm[40];
        text_time(lo, tm, sizeof(tm));
        fprintf(out, "complete to %s (lowest partition watermark)\n", tm);
    }
    fputs("NPS: % promoters \xe2\x88\x92 % detractors; CSAT: % satisfied (4-5); CES: mean effort (1-7); "
          "\xc2\xb1 95 % margin of error\n", out);
    fprintf(out, "gap: journey scope \xe2\x88\x92 touchpoint scope; n<%lld: fewer answers than satisfaction.min_n, "
            "no score\n", (long long)min_n);
    table_blocks(&t, rows, n, w, phases, n_phases);
    free(rows);
}
