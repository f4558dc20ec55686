/*
 * test_closes.c -- the close records (closes.c): exact round trips, the
 * table under many inserts and deletes (against a plain array), owners,
 * the record cap and the names cap.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closes.h"

static funnel_close_t fc_of(int phase, const char *mseg, const char *tp) {
    funnel_close_t fc;
    memset(&fc, 0, sizeof(fc));
    fc.phase = (int8_t)phase;
    for (int k = 0; k < CFG_MAX_PHASES - 1; k++) fc.tip[k] = (uint8_t)(k < phase ? 10 + k : FUNNEL_TIP_SKIPPED);
    fc.mseg = mseg;
    fc.last_tp = tp;
    return fc;
}

static uint64_t h(const void *owner, const char *id) {
    uint64_t x = (uint64_t)(uintptr_t)owner * 0x9e3779b97f4a7c15ULL;
    for (; *id; id++) x = (x ^ (unsigned char)*id) * 1099511628211ULL;
    return x;
}

Test(closes, put_get_del_exact) {
    closes_t *c = closes_new(10);
    int owner;
    funnel_close_t in = fc_of(2, "smb", "checkout"), out;
    int64_t d = 0;
    cr_assert_eq(closes_get(c, &owner, "c1", h(&owner, "c1"), &d, &out), 0);
    cr_assert_eq(closes_put(c, &owner, "c1", h(&owner, "c1"), 123456789012LL, &in), 1);
    cr_assert_eq(closes_count(c), 1);
    cr_assert_eq(closes_get(c, &owner, "c1", h(&owner, "c1"), &d, &out), 1);
    cr_assert_eq(d, 123456789012LL);
    cr_assert_eq(out.phase, 2);
    cr_assert_eq(out.tip[0], 10);
    cr_assert_eq(out.tip[1], 11);
    cr_assert_eq(out.tip[2], FUNNEL_TIP_SKIPPED);
    cr_assert_str_eq(out.mseg, "smb");
    cr_assert_str_eq(out.last_tp, "checkout");
    /* replaced in place */
    funnel_close_t in2 = fc_of(3, "smb", "store");
    cr_assert_eq(closes_put(c, &owner, "c1", h(&owner, "c1"), 5, &in2), 1);
    cr_assert_eq(closes_count(c), 1);
    cr_assert_eq(closes_get(c, &owner, "c1", h(&owner, "c1"), &d, &out), 1);
    cr_assert_eq((int)d, 5);
    cr_assert_eq(out.phase, 3);
    cr_assert_str_eq(out.last_tp, "store");
    closes_del(c, &owner, "c1", h(&owner, "c1"));
    cr_assert_eq(closes_count(c), 0);
    cr_assert_eq(closes_get(c, &owner, "c1", h(&owner, "c1"), &d, &out), 0);
    closes_del(c, &owner, "c1", h(&owner, "c1")); /* absent: nothing */
    closes_free(c);
}

Test(closes, owners_keep_apart_and_colliding_hashes_are_told_apart) {
    closes_t *c = closes_new(10);
    int a, b;
    funnel_close_t x = fc_of(0, "a", "x"), y = fc_of(1, "b", "y"), out;
    int64_t d;
    cr_assert_eq(closes_put(c, &a, "same", 42, 1, &x), 1);
    cr_assert_eq(closes_put(c, &b, "same", 42, 2, &y), 1);   /* same hash, other owner */
    cr_assert_eq(closes_put(c, &a, "other", 42, 3, &y), 1);  /* same hash, other id */
    cr_assert_eq(closes_count(c), 3);
    cr_assert_eq(closes_get(c, &a, "same", 42, &d, &out), 1);
    cr_assert_eq((int)d, 1);
    cr_assert_eq(closes_get(c, &b, "same", 42, &d, &out), 1);
    cr_assert_eq((int)d, 2);
    closes_del(c, &a, "same", 42);
    cr_assert_eq(closes_get(c, &a, "other", 42, &d, &out), 1); /* moved back, still found */
    cr_assert_eq((int)d, 3);
    cr_assert_eq(closes_get(c, &b, "same", 42, &d, &out), 1);
    cr_assert_eq(closes_get(c, &a, "same", 42, &d, &out), 0);
    closes_free(c);
}

/* Many inserts and deletes, with hashes that crowd a few home slots, checked
 * against a plain array after every step of a deterministic sequence. */
Test(closes, matches_a_plain_array_under_churn) {
    enum { N = 3000 };
    closes_t *c = closes_new(N);
    static int64_t want[N]; /* -1: absent */
    int owner;
    char id[32];
    funnel_close_t fc = fc_of(1, "s", "t"), out;
    for (int i = 0; i < N; i++) want[i] = -1;
    uint64_t x = 88172645463325252ULL;
    for (int step = 0; step < 60000; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int i = (int)(x % N);
        uint64_t hash = (uint64_t)(i % 37) * 1024; /* few homes, long runs */
        snprintf(id, sizeof(id), "id-%d", i);
        if (x & 0x100) {
            cr_assert_eq(closes_put(c, &owner, id, hash, step, &fc), 1);
            want[i] = step;
        } else {
            closes_del(c, &owner, id, hash);
            want[i] = -1;
        }
        if (step % 997 == 0 || step > 59000) {
            size_t n = 0;
            for (int k = 0; k < N; k++) {
                int64_t d;
                snprintf(id, sizeof(id), "id-%d", k);
                int got = closes_get(c, &owner, id, (uint64_t)(k % 37) * 1024, &d, &out);
                cr_assert_eq(got, want[k] >= 0, "step %d id %d", step, k);
                if (got) cr_assert_eq(d, want[k]);
                n += want[k] >= 0;
            }
            cr_assert_eq(closes_count(c), n);
        }
    }
    cr_assert_gt(closes_bytes(c), closes_count(c) * (24 + 6)); /* header and "id-NNNN" at least */
    closes_clear(c);
    cr_assert_eq(closes_count(c), 0);
    snprintf(id, sizeof(id), "id-%d", 1);
    int64_t d;
    cr_assert_eq(closes_get(c, &owner, id, 1024, &d, &out), 0);
    closes_free(c);
}

Test(closes, the_cap_refuses_new_records_only) {
    closes_t *c = closes_new(2);
    int o;
    funnel_close_t fc = fc_of(0, "s", "t"), out;
    int64_t d;
    cr_assert_eq(closes_put(c, &o, "a", 1, 1, &fc), 1);
    cr_assert_eq(closes_put(c, &o, "b", 2, 2, &fc), 1);
    cr_assert_eq(closes_put(c, &o, "c", 3, 3, &fc), 0);
    cr_assert_eq(closes_get(c, &o, "c", 3, &d, &out), 0);
    cr_assert_eq(closes_put(c, &o, "a", 1, 9, &fc), 1); /* an update is no new record */
    cr_assert_eq(closes_get(c, &o, "a", 1, &d, &out), 1);
    cr_assert_eq((int)d, 9);
    closes_free(c);
    c = closes_new(0); /* disabled */
    cr_assert_eq(closes_put(c, &o, "a", 1, 1, &fc), 0);
    cr_assert_eq(closes_count(c), 0);
    closes_free(c);
}

Test(closes, too_many_names_drops_the_record) {
    closes_t *c = closes_new(CLOSES_NAMES_MAX + 10);
    int o;
    char tp[32];
    int64_t d;
    funnel_close_t out;
    /* "s" plus CLOSES_NAMES_MAX - 1 touchpoints fill the names table */
    for (int i = 0; i < CLOSES_NAMES_MAX - 1; i++) {
        snprintf(tp, sizeof(tp), "tp%d", i);
        funnel_close_t fc = fc_of(0, "s", tp);
        cr_assert_eq(closes_put(c, &o, tp, (uint64_t)i, 1, &fc), 1, "%d", i);
    }
    funnel_close_t known = fc_of(0, "s", "tp7");
    cr_assert_eq(closes_put(c, &o, "x", 999999, 1, &known), 1);
    funnel_close_t fresh = fc_of(0, "s", "never-seen");
    cr_assert_eq(closes_put(c, &o, "x", 999999, 2, &fresh), 0);
    cr_assert_eq(closes_get(c, &o, "x", 999999, &d, &out), 0); /* the old record is gone too */
    cr_assert_eq(closes_get(c, &o, "tp7", 7, &d, &out), 1);
    cr_assert_str_eq(out.last_tp, "tp7");
    closes_free(c);
}
