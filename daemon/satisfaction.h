/*
 * satisfaction.h -- the arithmetic of rolling satisfaction (SPEC §6, issue
 * #5): NPS, CSAT and CES over windows of event time, from time buckets of raw
 * counts, and a partition's series as stored in Redis. Pure: no I/O.
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

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
    uint8_t *dirty;            /* changed since the last sat_part_render(); owned */
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
    uint8_t total_dirty;
    sat_buckets_t win[SAT_MAX_WINDOWS];
} sat_series_t;

void sat_series_init(sat_series_t *s, ev_metric_t m);
void sat_series_free(sat_series_t *s);
/* Count delta answers of `score` at event time ts (delta < 0 takes back). */
void sat_series_add(sat_series_t *s, const sat_windows_t *w, int64_t ts, int score, int64_t delta);
/* Add counts c to window `window`'s bucket no (window -1: the total); not
 * marked changed (reading stored counts back). */
void sat_series_put(sat_series_t *s, int window, int64_t no, const sat_counts_t *c);
/* Add every count of src into dst (same metric and windows): merging partitions. */
void sat_series_merge(sat_series_t *dst, const sat_series_t *src, const sat_windows_t *w);
/* The counts of window i (-1: all) as of watermark wm. */
void sat_series_window(const sat_series_t *s, const sat_windows_t *w, int i, int64_t wm,
                       sat_counts_t *out);
/* Drop the buckets no window can hold any more at watermark wm, telling
 * gone() (if not NULL) each one; how many. */
int sat_series_expire(sat_series_t *s, const sat_windows_t *w, int64_t wm,
                      void (*gone)(int window, int64_t no, void *opaque), void *opaque);

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

/*
 * One partition's satisfaction: a series per key
 *     <phase>|<scope>|<breakdown>|<name>|<metric>
 * (scope touchpoint or journey; breakdown all (name all), touchpoint or
 * segment; a '|' in a name is written '/'), stored in Redis as one hash
 * field per series and bucket (schemas/redis.md):
 *     <key>|all                  the `all` window
 *     <key>|<res_ms>|<bucket>    a finite window's bucket (res_ms names the window)
 * each holding the answers per score value, "n0,n1,..." from the lowest
 * score. The part remembers what changed since it was last rendered, so a
 * commit writes only those fields.
 */
#define SAT_KEY_MAX 256

const char *sat_metric_name(ev_metric_t m);
/* The series key into buf; its length, or -1 if it does not fit. */
int sat_key(char *buf, size_t cap, const char *phase, int journey_scope, const char *breakdown,
            const char *name, ev_metric_t m);

typedef struct sat_part_entry {
    char *key;                 /* owned */
    sat_series_t s;
    uint8_t changed;           /* listed in changed[] */
} sat_part_entry_t;

/* Names a breakdown has seen (touchpoints or segments), capped. */
typedef struct sat_names {
    char **v;
    int n, cap;
} sat_names_t;

typedef struct sat_part {
    sat_names_t names[2];      /* touchpoints, segments its series use */
    char *log;                 /* answers counted since sat_part_log_clear(), as log records; owned */
    size_t log_len, log_cap;
    sat_part_entry_t *v;
    size_t n, cap;
    uint32_t *slots;           /* open addressing: index + 1, 0 = empty */
    size_t cap_slots;
    uint32_t *changed;         /* entries with changed counts */
    size_t n_changed, cap_changed;
} sat_part_t;

/* A growing list of strings, back to back in one buffer; v[0..n) point at
 * them after each call that adds some. */
typedef struct sat_strs {
    char *buf;
    size_t len, cap;
    size_t *off;               /* where each starts */
    size_t n, cap_off;
    char **v;
} sat_strs_t;
void sat_strs_free(sat_strs_t *a);

/* name as counted under breakdown touchpoint (segment 0) or segment (1):
 * itself if already seen or fewer than max are, else "other". */
const char *sat_part_capped(sat_part_t *p, int segment, const char *name, int max);

/* The series of key (created empty if new). */
sat_series_t *sat_part_series(sat_part_t *p, const char *key, ev_metric_t m);
/* Count one answer, and append it to the part's log. */
void sat_part_add(sat_part_t *p, const sat_windows_t *w, const char *key, ev_metric_t m, int64_t ts,
                  int score);

/*
 * The answer log: between two rewrites of its counts (a checkpoint), a
 * partition commits the answers it counted as log records appended to a
 * string in Redis (schemas/redis.md), one per answer and series,
 *     <ts> <score> <key>\0
 * and whoever reads the partition adds the log to the stored counts
 * (sat_part_replay()), so stored counts + log = the counts, exactly, at
 * every commit. A checkpoint writes every field changed since the last one
 * and starts the log again with a header record "#<offset>\0" (store.c),
 * which readers skip and the publisher compares to tell a checkpoint from
 * more records: the Redis work per answer is an append, not a field per
 * window and series.
 */
/* Count every record of log[0..len) (not logged again; the series are marked
 * changed, to be written at the next checkpoint): how many, or -1 at the
 * first malformed record (those before it are counted). */
long sat_part_replay(sat_part_t *p, const sat_windows_t *w, const char *log, size_t len);
/* Forget the records of the log (they have been committed). */
void sat_part_log_clear(sat_part_t *p);
/* A stored field and its value, added to the part (reading a partition back,
 * or several to merge them): 1, 0 if it belongs to a window no longer
 * configured, -1 if it is malformed. */
int sat_part_learn(sat_part_t *p, const sat_windows_t *w, const char *field, const char *value);
/* The fields changed since the last render, with their new values; appended. */
void sat_part_render(sat_part_t *p, const sat_windows_t *w, sat_strs_t *names, sat_strs_t *vals);
/* Drop the buckets no window holds at watermark wm; their fields appended to names. */
void sat_part_expire(sat_part_t *p, const sat_windows_t *w, int64_t wm, sat_strs_t *names);
/* Memory the part holds (allocations' sizes), and its live window buckets. */
size_t sat_part_bytes(const sat_part_t *p);
size_t sat_part_buckets(const sat_part_t *p);
void sat_part_free(sat_part_t *p);

/* The satisfaction part of the metrics snapshot (schemas/metrics.schema.json)
 * from every partition's counts, each partition's windows taken at its own
 * watermark wms[i] (each partition drops the buckets its own watermark has
 * left behind) and summed: one entry per phase, window and breakdown name
 * that has an answer, with both scopes' NPS, CSAT and CES and the
 * journey-minus-touchpoint gap. */
void sat_print_json(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                    const char *const *phases, int n_phases, int64_t min_n, FILE *out);
/* The same, each row also handed to entry (if not NULL), with kind
 * "satisfaction", no segment and the key
 * satisfaction|<phase>|<window>|<breakdown>|<name>. */
void sat_print_json_each(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                         const char *const *phases, int n_phases, int64_t min_n,
                         void (*entry)(const char *kind, const char *segment, const char *key,
                                       const char *json, size_t len, void *opaque),
                         void *opaque, FILE *out);

/* Every row of the same snapshot: each breakdown ("all", "touchpoint",
 * "segment") and name, scope and metric with an answer, handed to fn with
 * its result (the Prometheus gauges, alert rules). */
void sat_each_row(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                  const char *const *phases, int n_phases, int64_t min_n,
                  void (*fn)(const char *phase, const char *window, const char *breakdown, const char *name,
                             const char *scope, ev_metric_t m, const sat_result_t *r, void *opaque),
                  void *opaque);

/* A window's name in the snapshot ("1h", "1d", "1w", "30d"; window -1: "all")
 * into buf (>= 32 bytes). */
void sat_window_name(const sat_windows_t *w, int window, char *buf, size_t cap);
/* The window of that name (-1: all) into *window; 0, or -1 if none is. */
int sat_window_find(const sat_windows_t *w, const char *name, int *window);

#define SAT_EVERY_WINDOW (-2)

typedef struct sat_text_opts {
    int touchpoints, segments;    /* also a line per touchpoint / segment */
    int window;                   /* only this window (-1: all), or SAT_EVERY_WINDOW */
    int phase;                    /* only this phase (index into phases), or -1: every one */
} sat_text_opts_t;

/* The same snapshot as a table for people: the lowest partition watermark,
 * then a block per phase (configured order) and window (configured order,
 * then all): per metric a line for the overall row and, if asked, for each
 * touchpoint and segment with answers to it, with N and score ± margin of
 * error in the touchpoint and the journey scope ("n<MIN" when insufficient)
 * and the gap journey - touchpoint when both are sufficient. Lines fit in
 * 120 columns (names are cut to fit). */
void sat_print_text(const sat_part_t *parts, const int64_t *wms, size_t n_parts, const sat_windows_t *w,
                    const char *const *phases, int n_phases, int64_t min_n, const sat_text_opts_t *o,
                    FILE *out);

#endif
