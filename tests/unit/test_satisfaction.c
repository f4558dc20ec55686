/*
 * test_satisfaction.c -- NPS, CSAT and CES arithmetic, margins of error,
 * insufficient N, rolling windows (sliding, late answers, expiry) and the
 * merge of partitions, with exact values.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "satisfaction.h"

#define MIN 60000LL
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

static void add_all(sat_series_t *s, const sat_windows_t *w, int64_t ts, const int *scores, int n) {
    for (int i = 0; i < n; i++) sat_series_add(s, w, ts, scores[i], 1);
}

static sat_result_t all_of(const sat_series_t *s, const sat_windows_t *w, int64_t min_n) {
    sat_counts_t c;
    sat_result_t r;
    sat_series_window(s, w, -1, 0, &c);
    sat_compute(s->metric, &c, min_n, &r);
    return r;
}

Test(satisfaction, scores_valid_per_metric) {
    cr_assert(sat_score_ok(EV_METRIC_NPS, 0) && sat_score_ok(EV_METRIC_NPS, 10));
    cr_assert(!sat_score_ok(EV_METRIC_NPS, 11) && !sat_score_ok(EV_METRIC_NPS, -1));
    cr_assert(sat_score_ok(EV_METRIC_CSAT, 1) && sat_score_ok(EV_METRIC_CSAT, 5));
    cr_assert(!sat_score_ok(EV_METRIC_CSAT, 0) && !sat_score_ok(EV_METRIC_CSAT, 6));
    cr_assert(sat_score_ok(EV_METRIC_CES, 7) && !sat_score_ok(EV_METRIC_CES, 8));
    cr_assert(!sat_score_ok(EV_METRIC_NONE, 3));
}

Test(satisfaction, nps_with_margin_of_error) {
    sat_windows_t w;
    sat_series_t s;
    cr_assert_eq(sat_windows_init(&w, NULL, 0, 1), 0);
    sat_series_init(&s, EV_METRIC_NPS);
    const int scores[] = {10, 9, 9, 8, 7, 6, 0, 3, 5, 2};
    add_all(&s, &w, 0, scores, 10);
    sat_series_add(&s, &w, 0, 11, 1); /* not a score: ignored */
    sat_result_t r = all_of(&s, &w, 10);
    cr_assert_eq(r.n, 10);
    cr_assert(r.sufficient);
    cr_assert_eq(r.promoters, 3);
    cr_assert_eq(r.passives, 2);
    cr_assert_eq(r.detractors, 5);
    cr_assert_float_eq(r.score, -20.0, 1e-9);
    /* p = 0.3, d = 0.5: 1.96 * 100 * sqrt((0.8 - 0.04) / 10) */
    cr_assert_float_eq(r.moe, 54.03347110819367, 1e-9);
    cr_assert_float_eq(r.mean, 5.9, 1e-12);
    sat_series_free(&s);
}

Test(satisfaction, csat_and_ces) {
    sat_windows_t w;
    sat_series_t cs, ce;
    sat_windows_init(&w, NULL, 0, 1);
    sat_series_init(&cs, EV_METRIC_CSAT);
    sat_series_init(&ce, EV_METRIC_CES);
    const int csat[] = {5, 5, 4, 3, 1};
    const int ces[] = {7, 6, 5, 2};
    add_all(&cs, &w, 0, csat, 5);
    add_all(&ce, &w, 0, ces, 4);
    sat_result_t r = all_of(&cs, &w, 1);
    cr_assert_eq(r.n, 5);
    cr_assert_eq(r.satisfied, 3);
    cr_assert_float_eq(r.score, 60.0, 1e-9);
    cr_assert_float_eq(r.mean, 3.6, 1e-12);
    cr_assert_float_eq(r.moe, 42.94144850840503, 1e-9); /* 196 * sqrt(0.24 / 5) */
    r = all_of(&ce, &w, 1);
    cr_assert_eq(r.n, 4);
    cr_assert_eq(r.high, 3);
    cr_assert_float_eq(r.high_pct, 75.0, 1e-9);
    cr_assert_float_eq(r.score, 5.0, 1e-12);
    /* sample variance 14 / 3: 1.96 * sqrt(14 / 3) / 2 */
    cr_assert_float_eq(r.moe, 2.117041961479901, 1e-9);
    sat_series_free(&cs);
    sat_series_free(&ce);
}

Test(satisfaction, below_min_n_is_insufficient_not_a_number) {
    sat_windows_t w;
    sat_series_t s;
    sat_windows_init(&w, NULL, 0, 1);
    sat_series_init(&s, EV_METRIC_NPS);
    sat_result_t r = all_of(&s, &w, 0);
    cr_assert_eq(r.n, 0);
    cr_assert(!r.sufficient); /* no answer is never a score */
    const int scores[] = {10, 10, 0};
    add_all(&s, &w, 0, scores, 3);
    r = all_of(&s, &w, 30);
    cr_assert(!r.sufficient);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.promoters, 2); /* the counts are still reported */
    cr_assert_eq(r.detractors, 1);
    cr_assert_float_eq(r.score, 0.0, 0);
    cr_assert_float_eq(r.moe, 0.0, 0);
    r = all_of(&s, &w, 3);
    cr_assert(r.sufficient);
    cr_assert_float_eq(r.score, 100.0 / 3, 1e-9);
    sat_series_free(&s);
}

Test(satisfaction, windows_slide_by_bucket) {
    sat_windows_t w;
    sat_series_t s;
    const int64_t lens[] = {HOUR};
    cr_assert_eq(sat_windows_init(&w, lens, 1, 4), 0); /* 15-minute buckets */
    cr_assert_eq(w.res_ms[0], 15 * MIN);
    sat_series_init(&s, EV_METRIC_CSAT);
    sat_series_add(&s, &w, 0, 5, 1);          /* bucket 0 */
    sat_series_add(&s, &w, 20 * MIN, 4, 1);   /* bucket 1 */
    sat_series_add(&s, &w, 50 * MIN, 1, 1);   /* bucket 3 */
    sat_series_add(&s, &w, 70 * MIN, 2, 1);   /* bucket 4 */
    sat_counts_t c;
    sat_series_window(&s, &w, 0, 60 * MIN - 1, &c);  /* buckets 0..3 */
    cr_assert_eq(c.n[4] + c.n[3] + c.n[0] + c.n[1], 3);
    cr_assert_eq(c.n[1], 0);
    sat_series_window(&s, &w, 0, 60 * MIN, &c);      /* buckets 1..4 */
    cr_assert_eq(c.n[4], 0);
    cr_assert_eq(c.n[3], 1);
    cr_assert_eq(c.n[0], 1);
    cr_assert_eq(c.n[1], 1);
    sat_series_window(&s, &w, 0, 75 * MIN, &c);      /* buckets 2..5 */
    sat_result_t r;
    sat_compute(EV_METRIC_CSAT, &c, 1, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.satisfied, 0);
    /* a late answer lands in its own (old) bucket */
    sat_series_add(&s, &w, 10 * MIN, 3, 1);
    sat_series_window(&s, &w, 0, 59 * MIN, &c);
    sat_compute(EV_METRIC_CSAT, &c, 1, &r);
    cr_assert_eq(r.n, 4);
    cr_assert_float_eq(r.mean, 13.0 / 4, 1e-12);
    /* expiry drops exactly what no window holds any more; `all` keeps it */
    cr_assert_eq(sat_series_expire(&s, &w, 75 * MIN, NULL, NULL), 2); /* buckets 0 and 1 */
    cr_assert_eq(s.win[0].n, 2);
    sat_series_window(&s, &w, 0, 75 * MIN, &c);
    sat_compute(EV_METRIC_CSAT, &c, 1, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(all_of(&s, &w, 1).n, 5);
    cr_assert_eq(sat_series_expire(&s, &w, 75 * MIN, NULL, NULL), 0);
    sat_series_free(&s);
}

Test(satisfaction, partitions_merge_exactly) {
    sat_windows_t w;
    const int64_t lens[] = {HOUR, DAY, 7 * DAY, 30 * DAY};
    cr_assert_eq(sat_windows_init(&w, lens, 4, 60), 0);
    sat_series_t a, b, m;
    sat_series_init(&a, EV_METRIC_NPS);
    sat_series_init(&b, EV_METRIC_NPS);
    sat_series_init(&m, EV_METRIC_NPS);
    for (int i = 0; i < 200; i++) sat_series_add(&a, &w, i * 7 * MIN, i % 11, 1);
    for (int i = 0; i < 150; i++) sat_series_add(&b, &w, i * 13 * MIN + 5000, (i * 3) % 11, 1);
    sat_series_add(&b, &w, 0, 10, -1); /* taken back (a merged journey's answer) */
    sat_series_merge(&m, &a, &w);
    sat_series_merge(&m, &b, &w);
    int64_t wm = 30 * HOUR;
    for (int i = -1; i < 4; i++) {
        sat_counts_t ca, cb, cm;
        sat_series_window(&a, &w, i, wm, &ca);
        sat_series_window(&b, &w, i, wm, &cb);
        sat_series_window(&m, &w, i, wm, &cm);
        sat_counts_add(&ca, &cb);
        cr_assert(memcmp(&ca, &cm, sizeof(ca)) == 0, "window %d", i);
    }
    sat_counts_t c;
    sat_series_window(&m, &w, 0, wm, &c); /* 1 h in 1-minute buckets 1741..1800: [29:01, 30:01) */
    sat_result_t r;
    sat_compute(EV_METRIC_NPS, &c, 1, &r);
    /* a: its last answer is at 199 * 7 = 1393 min: none; b: 13 i min + 5 s
     * in [1741, 1801) min for i = 134..138 */
    cr_assert_eq(r.n, 5);
    sat_series_window(&m, &w, -1, wm, &c);
    sat_compute(EV_METRIC_NPS, &c, 1, &r);
    cr_assert_eq(r.n, 349);
    sat_series_free(&a);
    sat_series_free(&b);
    sat_series_free(&m);
}

Test(satisfaction, window_config_and_negative_times) {
    sat_windows_t w;
    const int64_t bad[] = {HOUR + 1};
    cr_assert_eq(sat_windows_init(&w, bad, 1, 60), -1);
    const int64_t neg[] = {0};
    cr_assert_eq(sat_windows_init(&w, neg, 1, 1), -1);
    const int64_t lens[] = {4000};
    cr_assert_eq(sat_windows_init(&w, lens, 1, 4), 0);
    sat_series_t s;
    sat_series_init(&s, EV_METRIC_CES);
    sat_series_add(&s, &w, -1, 7, 1);    /* bucket -1 */
    sat_series_add(&s, &w, -1000, 6, 1); /* bucket -1 */
    sat_series_add(&s, &w, -1001, 5, 1); /* bucket -2 */
    cr_assert_eq(s.win[0].n, 2);
    cr_assert_eq(s.win[0].no[0], -2);
    cr_assert_eq(s.win[0].no[1], -1);
    sat_counts_t c;
    sat_series_window(&s, &w, 0, 1999, &c); /* buckets -2..1 */
    cr_assert_eq(c.n[6] + c.n[5] + c.n[4], 3);
    sat_series_window(&s, &w, 0, 2000, &c); /* buckets -1..2 */
    cr_assert_eq(c.n[6] + c.n[5] + c.n[4], 2);
    sat_series_free(&s);
}

/* ---- a partition's series as stored ---- */

static const char *find_val(const sat_strs_t *names, const sat_strs_t *vals, const char *field) {
    for (size_t i = 0; i < names->n; i++)
        if (!strcmp(names->v[i], field)) return vals->v[i];
    return NULL;
}

Test(satisfaction, keys_name_scope_breakdown_and_metric) {
    char k[SAT_KEY_MAX];
    cr_assert_eq(sat_key(k, sizeof(k), "purchase", 1, "touchpoint", "check|out", EV_METRIC_CSAT), 42);
    cr_assert_str_eq(k, "purchase|journey|touchpoint|check/out|csat");
    cr_assert_eq(sat_key(k, 10, "purchase", 0, "all", "all", EV_METRIC_NPS), -1);
}

Test(satisfaction, part_renders_what_changed_and_reads_back) {
    sat_windows_t w;
    int64_t lens[] = {HOUR};
    cr_assert_eq(sat_windows_init(&w, lens, 1, 4), 0); /* 15 min buckets */
    sat_part_t p = {0}, q = {0};
    sat_strs_t names = {0}, vals = {0};
    const char *key = "search|touchpoint|all|all|ces";
    sat_part_add(&p, &w, key, EV_METRIC_CES, 0, 7);
    sat_part_add(&p, &w, key, EV_METRIC_CES, 1, 1);
    sat_part_add(&p, &w, key, EV_METRIC_CES, 20 * MIN, 5);
    sat_part_render(&p, &w, &names, &vals);
    cr_assert_eq(names.n, 3);
    cr_assert_str_eq(find_val(&names, &vals, "search|touchpoint|all|all|ces|all"), "1,0,0,0,1,0,1");
    cr_assert_str_eq(find_val(&names, &vals, "search|touchpoint|all|all|ces|900000|0"), "1,0,0,0,0,0,1");
    cr_assert_str_eq(find_val(&names, &vals, "search|touchpoint|all|all|ces|900000|1"), "0,0,0,0,1,0,0");
    /* nothing changed: nothing rendered */
    sat_strs_t n2 = {0}, v2 = {0};
    sat_part_render(&p, &w, &n2, &v2);
    cr_assert_eq(n2.n, 0);
    /* one more answer: only its fields */
    sat_part_add(&p, &w, key, EV_METRIC_CES, 25 * MIN, 2);
    sat_part_render(&p, &w, &n2, &v2);
    cr_assert_eq(n2.n, 2);
    cr_assert_str_eq(find_val(&n2, &v2, "search|touchpoint|all|all|ces|900000|1"), "0,1,0,0,1,0,0");
    /* read back (two partitions' fields merge by adding) */
    for (size_t i = 0; i < names.n; i++) cr_assert_eq(sat_part_learn(&q, &w, names.v[i], vals.v[i]), 1);
    cr_assert_eq(sat_part_learn(&q, &w, "search|touchpoint|all|all|ces|900000|1", "0,1,0,0,0,0,0"), 1);
    sat_counts_t c;
    sat_series_window(sat_part_series(&q, key, EV_METRIC_CES), &w, 0, 30 * MIN, &c);
    /* the first render's three answers, and the other partition's score 2 */
    cr_assert_eq(c.n[0] + c.n[1] + c.n[4] + c.n[6], 4);
    cr_assert_eq(c.n[1], 1);
    sat_series_window(sat_part_series(&q, key, EV_METRIC_CES), &w, -1, 0, &c);
    cr_assert_eq(c.n[6], 1);
    cr_assert_eq(c.n[4], 1);
    /* malformed, and a window no longer configured */
    cr_assert_eq(sat_part_learn(&q, &w, "search|touchpoint|all|all|ces|60000|3", "0,0,0,0,0,0,1"), 0);
    cr_assert_eq(sat_part_learn(&q, &w, "search|touchpoint|all|all|ces|all", "1,2"), -1);
    cr_assert_eq(sat_part_learn(&q, &w, "search|touchpoint|all|all|xyz|all", "1"), -1);
    cr_assert_eq(sat_part_learn(&q, &w, "nothing", "1"), -1);
    /* expiry names the buckets it drops */
    sat_strs_t gone = {0};
    sat_part_expire(&p, &w, 75 * MIN, &gone); /* window holds buckets 2..5 */
    cr_assert_eq(gone.n, 2);
    cr_assert_str_eq(gone.v[0], "search|touchpoint|all|all|ces|900000|0");
    cr_assert_str_eq(gone.v[1], "search|touchpoint|all|all|ces|900000|1");
    cr_assert_gt(sat_part_bytes(&p), 0);
    sat_strs_free(&names);
    sat_strs_free(&vals);
    sat_strs_free(&n2);
    sat_strs_free(&v2);
    sat_strs_free(&gone);
    sat_part_free(&p);
    sat_part_free(&q);
}

/* ---- the table (journeyctl satisfaction) ---- */

#define T0 1767607200000LL /* 2026-01-05T10:00:00Z */

static void answer(sat_part_t *p, const sat_windows_t *w, int journey, const char *bd, const char *name,
                   ev_metric_t m, int64_t ts, int score) {
    char k[SAT_KEY_MAX];
    cr_assert_gt(sat_key(k, sizeof(k), "search", journey, bd, name, m), 0);
    sat_part_add(p, w, k, m, ts, score);
}

/* search: NPS 10, 9, 0 (touchpoint scope, at cart, segment smb) and 10, 10,
 * 9, 7 (journey scope, at web); CSAT 5 (at web, 2 hours ago: outside the 1h
 * window), 4 (at cart); CES 7, 6, 5, 2 and 4, 4, 4 (at web). purchase: none.
 * The overall rows are the sums of the touchpoint ones (a stored overall
 * series, as the second NPS 0 here, is not read). */
static void table_part(sat_part_t *p, const sat_windows_t *w) {
    const int nps_t[] = {10, 9, 0}, nps_j[] = {10, 10, 9, 7}, ces_t[] = {7, 6, 5, 2};
    for (int i = 0; i < 3; i++) {
        answer(p, w, 0, "touchpoint", "cart", EV_METRIC_NPS, T0 - 10 * MIN, nps_t[i]);
        answer(p, w, 0, "segment", "smb", EV_METRIC_NPS, T0 - 10 * MIN, nps_t[i]);
    }
    answer(p, w, 0, "all", "all", EV_METRIC_NPS, T0 - 10 * MIN, 0);
    for (int i = 0; i < 4; i++) answer(p, w, 1, "touchpoint", "web", EV_METRIC_NPS, T0 - 5 * MIN, nps_j[i]);
    answer(p, w, 0, "touchpoint", "web", EV_METRIC_CSAT, T0 - 2 * HOUR, 5);
    answer(p, w, 0, "touchpoint", "cart", EV_METRIC_CSAT, T0 - MIN, 4);
    for (int i = 0; i < 4; i++) answer(p, w, 0, "touchpoint", "web", EV_METRIC_CES, T0 - 20 * MIN, ces_t[i]);
    for (int i = 0; i < 3; i++) answer(p, w, 1, "touchpoint", "web", EV_METRIC_CES, T0 - 20 * MIN, 4);
}

static char *table_text(const sat_part_t *p, const int64_t *wm, size_t n_parts, const sat_windows_t *w,
                        const sat_text_opts_t *o) {
    static const char *const phases[] = {"search", "purchase"};
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert_not_null(out);
    sat_print_text(p, wm, n_parts, w, phases, 2, 3, o, out);
    fclose(out);
    return buf;
}

Test(satisfaction, table_per_phase_and_window) {
    sat_windows_t w;
    const int64_t lens[] = {HOUR};
    cr_assert_eq(sat_windows_init(&w, lens, 1, 4), 0);
    sat_part_t p = {0};
    table_part(&p, &w);
    int64_t wm = T0;
    sat_text_opts_t o = {.touchpoints = 1, .segments = 1, .window = SAT_EVERY_WINDOW, .phase = -1};
    char *got = table_text(&p, &wm, 1, &w, &o);
    /* NPS: touchpoint scope 2 promoters, 1 detractor of 3: +33.3 ± 196
     * sqrt((1 - 1/9) / 3) = 106.7; journey scope 3 of 4: +75.0 ± 42.4; gap
     * +41.7. CSAT: 2 answers (1 in the last hour) < min_n 3. CES: 5.00 ±
     * 2.12, 4.00 ± 0.00, gap -1.00. */
    const char *want =
        "complete to 2026-01-05T10:00:00.000Z (lowest partition watermark)\n"
        "NPS: % promoters − % detractors; CSAT: % satisfied (4-5); CES: mean effort (1-7); ± 95 % margin of "
        "error\n"
        "gap: journey scope − touchpoint scope; n<3: fewer answers than satisfaction.min_n, no score\n"
        "\n"
        "search — 1h window (4 buckets of 15m)\n"
        "  metric  name             n  touchpoint scope  n  journey scope       gap\n"
        "  NPS     all              3   +33.3 ± 106.7    4   +75.0 ± 42.4     +41.7\n"
        "          touchpoint cart  3   +33.3 ± 106.7    0       -                -\n"
        "          touchpoint web   0       -            4   +75.0 ± 42.4         -\n"
        "          segment smb      3   +33.3 ± 106.7    0       -                -\n"
        "  CSAT    all              1     n<3            0       -                -\n"
        "          touchpoint cart  1     n<3            0       -                -\n"
        "  CES     all              4    5.00 ± 2.12     3    4.00 ± 0.00     -1.00\n"
        "          touchpoint web   4    5.00 ± 2.12     3    4.00 ± 0.00     -1.00\n"
        "\n"
        "search — all time\n"
        "  metric  name             n  touchpoint scope  n  journey scope       gap\n"
        "  NPS     all              3   +33.3 ± 106.7    4   +75.0 ± 42.4     +41.7\n"
        "          touchpoint cart  3   +33.3 ± 106.7    0       -                -\n"
        "          touchpoint web   0       -            4   +75.0 ± 42.4         -\n"
        "          segment smb      3   +33.3 ± 106.7    0       -                -\n"
        "  CSAT    all              2     n<3            0       -                -\n"
        "          touchpoint cart  1     n<3            0       -                -\n"
        "          touchpoint web   1     n<3            0       -                -\n"
        "  CES     all              4    5.00 ± 2.12     3    4.00 ± 0.00     -1.00\n"
        "          touchpoint web   4    5.00 ± 2.12     3    4.00 ± 0.00     -1.00\n"
        "\n"
        "purchase — 1h window (4 buckets of 15m): no answers\n"
        "\n"
        "purchase — all time: no answers\n";
    cr_assert_str_eq(got, want, "got:\n%s", got);
    free(got);
    /* one window of one phase, overall rows only */
    sat_text_opts_t one = {.window = -1, .phase = 0};
    got = table_text(&p, &wm, 1, &w, &one);
    const char *block = strstr(got, "\n\nsearch");
    cr_assert_not_null(block);
    cr_assert_str_eq(block,
                     "\n\nsearch — all time\n"
                     "  metric  name  n  touchpoint scope  n  journey scope       gap\n"
                     "  NPS     all   3   +33.3 ± 106.7    4   +75.0 ± 42.4     +41.7\n"
                     "  CSAT    all   2     n<3            0       -                -\n"
                     "  CES     all   4    5.00 ± 2.12     3    4.00 ± 0.00     -1.00\n",
                     "got:\n%s", got);
    free(got);
    sat_part_free(&p);
}

/* Display columns of UTF-8 text. */
static int cols_of(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

Test(satisfaction, table_sums_partitions_and_fits_120_columns) {
    sat_windows_t w;
    const int64_t lens[] = {HOUR};
    cr_assert_eq(sat_windows_init(&w, lens, 1, 4), 0);
    sat_part_t p[3];
    memset(p, 0, sizeof(p));
    table_part(&p[0], &w);
    table_part(&p[1], &w);
    char name[200];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    name[0] = '\x1b'; /* a control byte is not sent to the terminal */
    answer(&p[1], &w, 1, "touchpoint", name, EV_METRIC_CES, T0, 7);
    /* the second partition is 2 hours behind: its 1h window holds only the
     * CSAT 5 of T0 - 2h; the third has never seen an event */
    int64_t wm[3] = {T0, T0 - 2 * HOUR, INT64_MIN};
    sat_text_opts_t o = {.touchpoints = 1, .window = SAT_EVERY_WINDOW, .phase = -1};
    char *got = table_text(p, wm, 3, &w, &o);
    const char *head = "complete to 2026-01-05T08:00:00.000Z (lowest partition watermark)\n";
    cr_assert(!strncmp(got, head, strlen(head)), "got:\n%s", got);
    /* the 1h window: the first partition's answers, and the second's CSAT 5
     * of two hours ago; all time: both partitions' */
    cr_assert_not_null(strstr(got, "  3   +33.3 ± 106.7    4   +75.0 ± 42.4     +41.7\n"), "got:\n%s", got);
    cr_assert_not_null(strstr(got, "  2     n<3            0       -                -\n"), "got:\n%s", got);
    cr_assert_not_null(strstr(got, "  6   +33.3 ± 75.4     8   +75.0 ± 30.0     +41.7\n"), "got:\n%s", got);
    cr_assert_not_null(strstr(got, "  4  100.0% ± 0.0      0       -                -\n"), "got:\n%s", got);
    cr_assert_not_null(strstr(got, "  8    5.00 ± 1.39     6    4.00 ± 0.00     -1.00\n"), "got:\n%s", got);
    /* the long name, cut to fit, in the all-time block only */
    const char *cut = strstr(got, "          touchpoint ?xxxxxxxx");
    cr_assert_not_null(cut, "got:\n%s", got);
    cr_assert_null(strstr(cut + 12, "touchpoint ?x"));
    cr_assert_not_null(strstr(cut, "x…  0       -            1     n<3                -\n"), "got:\n%s", got);
    cr_assert_null(strchr(got, '\x1b'));
    cr_assert_null(strstr(got, "segment"));
    int lines = 0;
    for (const char *q = got; *q; lines++) {
        const char *nl = strchr(q, '\n');
        cr_assert_not_null(nl);
        cr_assert_leq(cols_of(q, (size_t)(nl - q)), 120, "line %d: %.*s", lines, (int)(nl - q), q);
        if (q == cut) cr_assert_eq(cols_of(q, (size_t)(nl - q)), 120, "a cut name fills the line");
        q = nl + 1;
    }
    cr_assert_eq(lines, 30, "%d lines, got:\n%s", lines, got);
    free(got);
    for (int i = 0; i < 3; i++) sat_part_free(&p[i]);
}

/* ---- the answer log ---- */

static char *json_of(const sat_part_t *p, const int64_t *wm, size_t n, const sat_windows_t *w) {
    static const char *const phases[] = {"search", "purchase"};
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert_not_null(out);
    sat_print_json(p, wm, n, w, phases, 2, 3, out);
    fclose(out);
    return buf;
}

/* Replays a field list + log into a fresh part, as a reader does. */
static void read_back(sat_part_t *q, const sat_windows_t *w, const sat_strs_t *names, const sat_strs_t *vals,
                      const char *log, size_t len, long records) {
    for (size_t i = 0; i < names->n; i++) cr_assert_eq(sat_part_learn(q, w, names->v[i], vals->v[i]), 1);
    cr_assert_eq(sat_part_replay(q, w, log, len), records);
}

Test(satisfaction, log_records_are_time_score_key) {
    sat_windows_t w;
    const int64_t lens[] = {HOUR};
    cr_assert_eq(sat_windows_init(&w, lens, 1, 4), 0);
    sat_part_t p = {0};
    answer(&p, &w, 0, "touchpoint", "cart", EV_METRIC_NPS, 1000, 9);
    answer(&p, &w, 1, "segment", "smb", EV_METRIC_CES, -5, 2);
    const char want[] = "1000 9 search|touchpoint|touchpoint|cart|nps\0-5 2 search|journey|segment|smb|ces";
    cr_assert_eq(p.log_len, sizeof(want));
    cr_assert_eq(memcmp(p.log, want, sizeof(want)), 0);
    sat_part_log_clear(&p);
    cr_assert_eq(p.log_len, 0);
    sat_part_free(&p);
}

Test(satisfaction, counts_plus_log_equal_the_counts) {
    sat_windows_t w;
    const int64_t lens[] = {HOUR, 24 * HOUR};
    cr_assert_eq(sat_windows_init(&w, lens, 2, 4), 0);
    sat_part_t p = {0}, q = {0};
    sat_strs_t names = {0}, vals = {0};
    table_part(&p, &w); /* the first half: checkpointed */
    sat_part_render(&p, &w, &names, &vals);
    sat_part_log_clear(&p);
    table_part(&p, &w); /* the second: only in the log */
    answer(&p, &w, 0, "touchpoint", "phone", EV_METRIC_CSAT, T0 - 3 * HOUR, 1);
    int64_t wm = T0;
    read_back(&q, &w, &names, &vals, p.log, p.log_len, 21); /* table_part()'s 20 and one */
    char *a = json_of(&p, &wm, 1, &w), *b = json_of(&q, &wm, 1, &w);
    cr_assert_str_eq(b, a);
    cr_assert(strstr(a, "\"name\":\"phone\""));
    /* the replayed series are changed: the next checkpoint writes them */
    sat_strs_t n2 = {0}, v2 = {0};
    sat_part_render(&q, &w, &n2, &v2);
    cr_assert_gt(n2.n, 0);
    sat_part_t r = {0};
    read_back(&r, &w, &n2, &v2, "", 0, 0);
    char *c = json_of(&r, &wm, 1, &w);
    cr_assert_str_eq(c, a);
    free(a);
    free(b);
    free(c);
    sat_strs_free(&names);
    sat_strs_free(&vals);
    sat_strs_free(&n2);
    sat_strs_free(&v2);
    sat_part_free(&p);
    sat_part_free(&q);
    sat_part_free(&r);
}

Test(satisfaction, malformed_log_records_stop_the_replay) {
    sat_windows_t w;
    const int64_t lens[] = {HOUR};
    cr_assert_eq(sat_windows_init(&w, lens, 1, 4), 0);
    sat_part_t q = {0};
    static const char good[] = "5 9 search|touchpoint|all|all|nps";
    cr_assert_eq(sat_part_replay(&q, &w, good, sizeof(good)), 1);
    static const char score_out_of_range[] = "5 11 search|touchpoint|all|all|nps";
    cr_assert_eq(sat_part_replay(&q, &w, score_out_of_range, sizeof(score_out_of_range)), -1);
    static const char no_metric[] = "5 3 search|touchpoint|all|all|xyz";
    cr_assert_eq(sat_part_replay(&q, &w, no_metric, sizeof(no_metric)), -1);
    static const char cut[] = "5 3 search|touchpoint|all|all|nps\0" "6 4 sea";
    cr_assert_eq(sat_part_replay(&q, &w, cut, sizeof(cut) - 1), -1); /* the last record has no NUL */
    static const char no_time[] = "x 3 search|touchpoint|all|all|nps";
    cr_assert_eq(sat_part_replay(&q, &w, no_time, sizeof(no_time)), -1);
    sat_counts_t c;
    sat_series_window(sat_part_series(&q, "search|touchpoint|all|all|nps", EV_METRIC_NPS), &w, -1, 0, &c);
    cr_assert_eq(c.n[9], 1); /* the good record */
    cr_assert_eq(c.n[3], 1); /* the record before the cut one */
    sat_part_free(&q);
}
