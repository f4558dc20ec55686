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

#include <math.h>
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
        if (!nos || !c) abort();
        b->no = nos;
        b->c = c;
        b->cap = ncap;
    }
    memmove(&b->no[pos + 1], &b->no[pos], (size_t)(b->n - pos) * sizeof(*b->no));
    memmove(&b->c[pos + 1], &b->c[pos], (size_t)(b->n - pos) * sizeof(*b->c));
    b->no[pos] = no;
    memset(&b->c[pos], 0, sizeof(b->c[pos]));
    b->n++;
    return &b->c[pos];
}

void sat_series_add(sat_series_t *s, const sat_windows_t *w, int64_t ts, int score, int64_t delta) {
    if (!sat_score_ok(s->metric, score)) return;
    int ix = score - sat_min_score(s->metric);
    s->total.n[ix] += delta;
    for (int i = 0; i < w->n; i++) bucket_get(&s->win[i], bucket_of(ts, w->res_ms[i]))->n[ix] += delta;
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

int sat_series_expire(sat_series_t *s, const sat_windows_t *w, int64_t wm) {
    int dropped = 0;
    for (int i = 0; i < w->n; i++) {
        sat_buckets_t *b = &s->win[i];
        int64_t lo = first_bucket(w, i, wm);
        int k = 0;
        while (k < b->n && b->no[k] < lo) k++;
        if (!k) continue;
        memmove(b->no, b->no + k, (size_t)(b->n - k) * sizeof(*b->no));
        memmove(b->c, b->c + k, (size_t)(b->n - k) * sizeof(*b->c));
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
