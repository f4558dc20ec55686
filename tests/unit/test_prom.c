/*
 * test_prom.c -- the Prometheus text format builder (prom.c): a family of
 * each type byte for byte, escaping, names and labels refused, families
 * that clash, sticky errors, the size cap, number formatting, and the
 * histogram's buckets.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

#define L(...) ((const char *[]){__VA_ARGS__, NULL})

static char page_buf[1 << 20];

/* The page as a C string; fails the test if the page has an error. */
static const char *page(const prom_t *p) {
    const char *t;
    size_t n;
    char err[256];
    cr_assert_eq(prom_text(p, &t, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_lt(n, sizeof(page_buf));
    memcpy(page_buf, t, n);
    page_buf[n] = '\0';
    return page_buf;
}

/* The page's error (the page must have one). */
static const char *error_of(const prom_t *p) {
    static char err[256];
    const char *t;
    size_t n;
    cr_assert_eq(prom_text(p, &t, &n, err, sizeof(err)), -1);
    return err;
}

Test(prom, counter_family_exact) {
    prom_t *p = prom_new(4096);
    cr_assert_eq(prom_family(p, "journeyd_events_total", PROM_COUNTER, "Events by outcome."), 0);
    cr_assert_eq(prom_sample(p, L("outcome", "applied"), 1234), 0);
    cr_assert_eq(prom_sample(p, L("outcome", "dead_lettered"), 5), 0);
    cr_assert_str_eq(page(p), "# HELP journeyd_events_total Events by outcome.\n"
                              "# TYPE journeyd_events_total counter\n"
                              "journeyd_events_total{outcome=\"applied\"} 1234\n"
                              "journeyd_events_total{outcome=\"dead_lettered\"} 5\n");
    prom_free(p);
}

Test(prom, gauge_family_exact) {
    prom_t *p = prom_new(4096);
    cr_assert_eq(prom_family(p, "journeyd:phase_active", PROM_GAUGE, "Open journeys per phase."), 0);
    cr_assert_eq(prom_sample(p, NULL, 7), 0);
    cr_assert_eq(prom_sample(p, L("phase", "search", "segment", "smb"), 0.25), 0);
    cr_assert_eq(prom_sample(p, L("phase", "purchase", "segment", ""), -3), 0);
    cr_assert_str_eq(page(p), "# HELP journeyd:phase_active Open journeys per phase.\n"
                              "# TYPE journeyd:phase_active gauge\n"
                              "journeyd:phase_active 7\n"
                              "journeyd:phase_active{phase=\"search\",segment=\"smb\"} 0.25\n"
                              "journeyd:phase_active{phase=\"purchase\",segment=\"\"} -3\n");
    prom_free(p);
}

Test(prom, histogram_family_exact) {
    prom_t *p = prom_new(4096);
    prom_hist_t h;
    char err[128];
    const double le[] = {0.25, 0.5, 1, 2};
    cr_assert_eq(prom_hist_init(&h, le, 4, err, sizeof(err)), 0);
    const double v[] = {0.25, 0.5, 0.5, 0.75, 4};
    for (size_t i = 0; i < 5; i++) prom_hist_observe(&h, v[i]);
    prom_hist_observe(&h, NAN); /* ignored */
    cr_assert_eq(prom_family(p, "journeyd_batch_seconds", PROM_HISTOGRAM, "Batch latency."), 0);
    cr_assert_eq(prom_histogram(p, NULL, &h), 0);
    cr_assert_eq(prom_histogram(p, L("stage", "flush"), &h), 0);
    cr_assert_str_eq(page(p), "# HELP journeyd_batch_seconds Batch latency.\n"
                              "# TYPE journeyd_batch_seconds histogram\n"
                              "journeyd_batch_seconds_bucket{le=\"0.25\"} 1\n"
                              "journeyd_batch_seconds_bucket{le=\"0.5\"} 3\n"
                              "journeyd_batch_seconds_bucket{le=\"1\"} 4\n"
                              "journeyd_batch_seconds_bucket{le=\"2\"} 4\n"
                              "journeyd_batch_seconds_bucket{le=\"+Inf\"} 5\n"
                              "journeyd_batch_seconds_sum 6\n"
                              "journeyd_batch_seconds_count 5\n"
                              "journeyd_batch_seconds_bucket{stage=\"flush\",le=\"0.25\"} 1\n"
                              "journeyd_batch_seconds_bucket{stage=\"flush\",le=\"0.5\"} 3\n"
                              "journeyd_batch_seconds_bucket{stage=\"flush\",le=\"1\"} 4\n"
                              "journeyd_batch_seconds_bucket{stage=\"flush\",le=\"2\"} 4\n"
                              "journeyd_batch_seconds_bucket{stage=\"flush\",le=\"+Inf\"} 5\n"
                              "journeyd_batch_seconds_sum{stage=\"flush\"} 6\n"
                              "journeyd_batch_seconds_count{stage=\"flush\"} 5\n");
    prom_free(p);
}

Test(prom, histogram_buckets_accumulate) {
    prom_hist_t h;
    char err[128];
    const double le[] = {0.001, 0.01, 0.1};
    cr_assert_eq(prom_hist_init(&h, le, 3, err, sizeof(err)), 0);
    const double v[] = {0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 0.2, 30, -1};
    for (size_t i = 0; i < 9; i++) prom_hist_observe(&h, v[i]);
    /* not cumulative inside: le is inclusive, -1 below every bound */
    cr_assert_eq(h.in[0], 3);
    cr_assert_eq(h.in[1], 2);
    cr_assert_eq(h.in[2], 2);
    cr_assert_eq(h.in[3], 2);
    cr_assert_eq(h.count, 9);
    prom_t *p = prom_new(4096);
    prom_family(p, "x_seconds", PROM_HISTOGRAM, "x");
    prom_histogram(p, NULL, &h);
    cr_assert_str_eq(page(p), "# HELP x_seconds x\n"
                              "# TYPE x_seconds histogram\n"
                              "x_seconds_bucket{le=\"0.001\"} 3\n"
                              "x_seconds_bucket{le=\"0.01\"} 5\n"
                              "x_seconds_bucket{le=\"0.1\"} 7\n"
                              "x_seconds_bucket{le=\"+Inf\"} 9\n"
                              "x_seconds_sum 29.3626\n"
                              "x_seconds_count 9\n");
    prom_free(p);
}

Test(prom, histogram_bounds_refused) {
    prom_hist_t h;
    char err[128];
    double many[PROM_HIST_BUCKETS_MAX + 1];
    for (int i = 0; i <= PROM_HIST_BUCKETS_MAX; i++) many[i] = i + 1;
    cr_assert_eq(prom_hist_init(&h, many, 0, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "histogram: 0 bounds, want 1 to 32");
    cr_assert_eq(prom_hist_init(&h, many, PROM_HIST_BUCKETS_MAX + 1, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "histogram: 33 bounds, want 1 to 32");
    cr_assert_eq(prom_hist_init(&h, many, PROM_HIST_BUCKETS_MAX, err, sizeof(err)), 0);
    cr_assert_eq(prom_hist_init(&h, (const double[]){1, 1}, 2, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "histogram: bound 2 is not finite and above the one before");
    cr_assert_eq(prom_hist_init(&h, (const double[]){2, 1}, 2, err, sizeof(err)), -1);
    cr_assert_eq(prom_hist_init(&h, (const double[]){NAN}, 1, err, sizeof(err)), -1);
    cr_assert_eq(prom_hist_init(&h, (const double[]){1, INFINITY}, 2, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "histogram: bound 2 is not finite and above the one before");
}

Test(prom, escaping) {
    prom_t *p = prom_new(4096);
    cr_assert_eq(prom_family(p, "g", PROM_GAUGE, "back\\slash, new\nline, \"quotes\" stay, é"), 0);
    cr_assert_eq(prom_sample(p, L("v", "a\\b\nc\"d\"", "w", "ünï"), 1), 0);
    cr_assert_str_eq(page(p), "# HELP g back\\\\slash, new\\nline, \"quotes\" stay, é\n"
                              "# TYPE g gauge\n"
                              "g{v=\"a\\\\b\\nc\\\"d\\\"\",w=\"ünï\"} 1\n");
    prom_free(p);
}

Test(prom, numbers) {
    const struct {
        double v;
        const char *s;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {1, "1"},
        {-1, "-1"},
        {1e6, "1000000"},
        {123456789012345, "123456789012345"},
        {9007199254740991.0, "9007199254740991"},
        {9007199254740992.0, "9007199254740992"},
        {1e20, "1e+20"},
        {1.5, "1.5"},
        {-2.5, "-2.5"},
        {0.1, "0.1"},
        {1e-5, "1e-05"},
        {123456.789, "123456.789"},
        {1.0 / 3, "0.3333333333333333"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1e15 + 0.5, "1000000000000000.5"},
        {NAN, "NaN"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
    };
    prom_t *p = prom_new(4096);
    char want[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        prom_reset(p);
        prom_family(p, "n", PROM_GAUGE, "h");
        prom_sample(p, NULL, cases[i].v);
        snprintf(want, sizeof(want), "# HELP n h\n# TYPE n gauge\nn %s\n", cases[i].s);
        cr_assert_str_eq(page(p), want, "case %zu", i);
    }
    prom_free(p);
}

/* One call that must fail with exactly err. */
#define REFUSED(setup, call, err)                                                                            \
    do {                                                                                                     \
        prom_t *p_ = prom_new(4096);                                                                         \
        prom_t *p = p_;                                                                                      \
        setup;                                                                                               \
        cr_assert_eq(call, -1, "%s", #call);                                                                 \
        cr_assert_str_eq(error_of(p_), err);                                                                 \
        prom_free(p_);                                                                                       \
    } while (0)

Test(prom, bad_names_refused) {
    char longname[PROM_NAME_MAX + 1];
    memset(longname, 'a', sizeof(longname));
    longname[PROM_NAME_MAX] = '\0';
    REFUSED((void)0, prom_family(p, "1abc", PROM_GAUGE, "h"), "prom: bad metric name \"1abc\"");
    REFUSED((void)0, prom_family(p, "a-b", PROM_GAUGE, "h"), "prom: bad metric name \"a-b\"");
    REFUSED((void)0, prom_family(p, "", PROM_GAUGE, "h"), "prom: bad metric name \"\"");
    REFUSED((void)0, prom_family(p, longname, PROM_GAUGE, "h"),
            "prom: bad metric name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"");
    REFUSED((void)0, prom_family(p, "events", PROM_COUNTER, "h"),
            "prom: counter events: the name must end in _total");
    REFUSED((void)0, prom_family(p, "g", PROM_GAUGE, NULL), "prom: g: help missing");
    REFUSED((void)0, prom_family(p, "g", PROM_GAUGE, "\xff"), "prom: g: help is not UTF-8");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, L("a:b", "x"), 1),
            "prom: g: bad label name \"a:b\"");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, L("9a", "x"), 1),
            "prom: g: bad label name \"9a\"");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, L("__name__", "x"), 1),
            "prom: g: bad label name \"__name__\"");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, L("a", "x", "a", "y"), 1),
            "prom: g: label a given twice");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, ((const char *[]){"a", NULL}), 1),
            "prom: g: label a: no value");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, L("a", "\xc3\x28"), 1),
            "prom: g: label a: value is not UTF-8");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, L("a", "\xed\xa0\x80"), 1),
            "prom: g: label a: value is not UTF-8"); /* a surrogate */
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_sample(p, L("a", "\xc0\xaf"), 1),
            "prom: g: label a: value is not UTF-8"); /* overlong */
}

Test(prom, le_is_a_label_of_gauges_only) {
    prom_hist_t h;
    char err[64];
    prom_hist_init(&h, (const double[]){1}, 1, err, sizeof(err));
    REFUSED(prom_family(p, "h", PROM_HISTOGRAM, "h"), prom_histogram(p, L("le", "1"), &h),
            "prom: h: bad label name \"le\"");
    prom_t *p = prom_new(4096);
    prom_family(p, "g", PROM_GAUGE, "h");
    cr_assert_eq(prom_sample(p, L("le", "1"), 1), 0);
    cr_assert_str_eq(page(p), "# HELP g h\n# TYPE g gauge\ng{le=\"1\"} 1\n");
    prom_free(p);
}

Test(prom, samples_must_fit_their_family) {
    prom_hist_t h;
    char err[64];
    prom_hist_init(&h, (const double[]){1}, 1, err, sizeof(err));
    REFUSED((void)0, prom_sample(p, NULL, 1), "prom: a sample before any family");
    REFUSED((void)0, prom_histogram(p, NULL, &h), "prom: a sample before any family");
    REFUSED(prom_family(p, "h", PROM_HISTOGRAM, "h"), prom_sample(p, NULL, 1),
            "prom: h is a histogram: use prom_histogram()");
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_histogram(p, NULL, &h),
            "prom: g is not a histogram: use prom_sample()");
    REFUSED(prom_family(p, "c_total", PROM_COUNTER, "h"), prom_sample(p, NULL, -1),
            "prom: counter c_total: value below 0");
    REFUSED(prom_family(p, "c_total", PROM_COUNTER, "h"), prom_sample(p, NULL, NAN),
            "prom: counter c_total: value below 0");
}

Test(prom, families_once_and_apart) {
    REFUSED(prom_family(p, "g", PROM_GAUGE, "h"), prom_family(p, "g", PROM_GAUGE, "h"),
            "prom: family g clashes with an earlier family");
    REFUSED(prom_family(p, "x", PROM_HISTOGRAM, "h"), prom_family(p, "x_sum", PROM_GAUGE, "h"),
            "prom: family x_sum clashes with an earlier family");
    REFUSED(prom_family(p, "x_count", PROM_GAUGE, "h"), prom_family(p, "x", PROM_HISTOGRAM, "h"),
            "prom: family x clashes with an earlier family");
    REFUSED(prom_family(p, "x_bucket", PROM_GAUGE, "h"), prom_family(p, "x_bucket", PROM_HISTOGRAM, "h"),
            "prom: family x_bucket clashes with an earlier family");
    /* near names that do not clash */
    prom_t *p = prom_new(4096);
    cr_assert_eq(prom_family(p, "x", PROM_HISTOGRAM, "h"), 0);
    cr_assert_eq(prom_family(p, "x_summary", PROM_GAUGE, "h"), 0);
    cr_assert_eq(prom_family(p, "x_bucket_seconds", PROM_HISTOGRAM, "h"), 0);
    cr_assert_eq(prom_family(p, "x_total", PROM_COUNTER, "h"), 0);
    prom_free(p);
    /* the families cap */
    p = prom_new(1 << 20);
    char name[32];
    for (int i = 0; i < PROM_FAMILIES_MAX; i++) {
        snprintf(name, sizeof(name), "g%d", i);
        cr_assert_eq(prom_family(p, name, PROM_GAUGE, "h"), 0);
    }
    cr_assert_eq(prom_family(p, "one_more", PROM_GAUGE, "h"), -1);
    cr_assert_str_eq(error_of(p), "prom: more than 256 families");
    prom_free(p);
}

Test(prom, errors_stick_until_reset) {
    prom_t *p = prom_new(4096);
    cr_assert_eq(prom_family(p, "bad-name", PROM_GAUGE, "h"), -1);
    cr_assert_eq(prom_family(p, "good", PROM_GAUGE, "h"), -1);
    cr_assert_eq(prom_sample(p, NULL, 1), -1);
    cr_assert_str_eq(error_of(p), "prom: bad metric name \"bad-name\"");
    prom_reset(p);
    cr_assert_eq(prom_family(p, "good", PROM_GAUGE, "h"), 0);
    cr_assert_eq(prom_sample(p, NULL, 1), 0);
    cr_assert_str_eq(page(p), "# HELP good h\n# TYPE good gauge\ngood 1\n");
    /* a reset page forgets its families too */
    prom_reset(p);
    cr_assert_eq(prom_family(p, "good", PROM_GAUGE, "h"), 0);
    prom_free(p);
}

Test(prom, size_cap) {
    prom_t *p = prom_new(41);
    cr_assert_eq(prom_family(p, "g", PROM_GAUGE, "h"), 0); /* 26 bytes */
    cr_assert_eq(prom_sample(p, L("a", "12345"), 1), 0);    /* 15 more: 41 */
    cr_assert_eq(prom_sample(p, NULL, 1), -1);              /* 4 more: 45 */
    cr_assert_str_eq(error_of(p), "prom: page exceeds 41 bytes");
    prom_free(p);
    /* growing past the first chunk keeps every byte */
    p = prom_new(1 << 20);
    prom_family(p, "g", PROM_GAUGE, "h");
    char id[16];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "%d", i);
        cr_assert_eq(prom_sample(p, L("i", id), i), 0);
    }
    const char *t = page(p);
    cr_assert(strstr(t, "g{i=\"0\"} 0\ng{i=\"1\"} 1\n"));
    cr_assert(strstr(t, "g{i=\"9998\"} 9998\ng{i=\"9999\"} 9999\n"));
    cr_assert_eq(strlen(t), 26 + 10 * 11 + 90 * 13 + 900 * 15 + 9000 * 17);
    prom_free(p);
}
