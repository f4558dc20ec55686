/*
 * satisfaction.h -- the arithmetic of rolling satisfaction (SPEC §6, issue
 * #5): NPS, CSAT and CES over windows of event time, from time buckets of raw
 * counts. Pure: no I/O. Not yet wired into the pipeline (see README).
 *
 * A series holds the answers of one (phase, metric, scope, breakdown) as the
 * number of answers per score value: in total (the `all` window), and per
 * finite window in buckets of that window's resolution (window /
 * buckets_per_window). Counts are integers, so partitions merge by adding
 * them, and a window slides by dropping the buckets that left it, exactly.
 *
 * A window of length W at resolution r = W / k covers the current bucket (the
 * one holding the watermark) and the k - 1 before it: between W - r and W of
 * event time, never more. Buckets are numbered floor(ts / r).
 */
#ifndef JD_SATISFACTION_H
#define JD_SATISFACTION_H

#include <stdint.h>

#include "event.h"

#define SAT_MAX_SCORES 11      /* NPS 0..10 */
#define SAT_MAX_WINDOWS 8

/* Valid scores: NPS integer 0..10, CSAT 1..5, CES 1..7 (decode.c refuses the rest). */
int sat_min_score(ev_metric_t m);
int sat_max_score(ev_metric_t m);
int sat_score_ok(ev_metric_t m, int score);

/* Answers per score value: n[score - sat_min_score(m)]. */
typedef struct sat_counts {
    int64_t n[SAT_MAX_SCORES];
} sat_counts_t;

void sat_counts_add(sat_counts_t *to, const sat_counts_t *from);

/* The buckets of one finite window, sparse, by increasing bucket number. */
typedef struct sat_buckets {
    int64_t *no;               /* bucket numbers; owned */
    sat_counts_t *c;           /* their counts; owned */
    int n, cap;
} sat_buckets_t;

typedef struct sat_windows {
    int n;                     /* finite windows */
    int64_t len_ms[SAT_MAX_WINDOWS];
    int64_t res_ms[SAT_MAX_WINDOWS];  /* len_ms / buckets_per_window */
    int buckets;               /* buckets_per_window (k above) */
} sat_windows_t;

/* Windows of the given lengths (ms, > 0), each in k buckets; 0, or -1 if a
 * length is not a multiple of k ms or there are too many. */
int sat_windows_init(sat_windows_t *w, const int64_t *len_ms, int n, int k);

typedef struct sat_series {
    ev_metric_t metric;
    sat_counts_t total;        /* the `all` window */
    sat_buckets_t win[SAT_MAX_WINDOWS];
} sat_series_t;

void sat_series_init(sat_series_t *s, ev_metric_t m);
void sat_series_free(sat_series_t *s);
/* Count delta answers of `score` at event time ts (delta < 0 takes back). */
void sat_series_add(sat_series_t *s, const sat_windows_t *w, int64_t ts, int score, int64_t delta);
/* Add every count of src into dst (same metric and windows): merging partitions. */
void sat_series_merge(sat_series_t *dst, const sat_series_t *src, const sat_windows_t *w);
/* The counts of window i (-1: all) as of watermark wm. */
void sat_series_window(const sat_series_t *s, const sat_windows_t *w, int i, int64_t wm,
                       sat_counts_t *out);
/* Drop the buckets no window can hold any more at watermark wm; how many. */
int sat_series_expire(sat_series_t *s, const sat_windows_t *w, int64_t wm);

/* The score of a window, with its 95 % margin of error (normal approximation):
 *  - NPS: % promoters (9-10) - % detractors (0-6), -100..100;
 *    moe = 1.96 * 100 * sqrt((p + d - (p - d)^2) / n);
 *  - CSAT: % satisfied (4-5); moe = 1.96 * 100 * sqrt(q (1 - q) / n); and the mean;
 *  - CES: the mean score, moe = 1.96 * s / sqrt(n) (s the sample standard
 *    deviation, n >= 2); and the % of 5-7.
 * Below min_n answers the result is insufficient: counts only, no score. */
typedef struct sat_result {
    int64_t n;
    int sufficient;
    double score, moe;
    double mean;                            /* CSAT, CES */
    int64_t promoters, passives, detractors; /* NPS */
    int64_t satisfied;                      /* CSAT: 4-5 */
    int64_t high;                           /* CES: 5-7 */
    double high_pct;                        /* CES */
} sat_result_t;

void sat_compute(ev_metric_t m, const sat_counts_t *c, int64_t min_n, sat_result_t *r);

#endif
