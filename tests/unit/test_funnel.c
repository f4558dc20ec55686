/*
 * test_funnel.c -- the life of journeys in event time and the funnel counters
 * it drives (funnel.c): watermark, timeouts, heartbeats, idle advance, late
 * events, re-entry, completion, merge, caps, time-in-phase buckets, and the
 * snapshot read back from several partitions. Exact values throughout.
 *
 * A "partition" here is what batch.c keeps per shard: a clock (highest event
 * time; heartbeats and idle ticks move it too), the counter deltas and the
 * name registry; the sweep is what batch.c runs over the journeys in memory.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "funnel.h"

#define MIN 60000LL
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

static config_t cfg;

static void setup(void) {
    memset(&cfg, 0, sizeof(cfg));
    const char *names[] = {"search", "information", "purchase", "loyalty"};
    const int64_t timeouts[] = {30 * MIN, 3 * DAY, 2 * HOUR, 28 * DAY};
    cfg.n_phases = 4;
    for (int i = 0; i < 4; i++) {
        snprintf(cfg.phases[i].name, sizeof(cfg.phases[i].name), "%s", names[i]);
        cfg.phases[i].timeout_ms = timeouts[i];
    }
    cfg.history_max = 50;
    cfg.dedup_max = 128;
    cfg.allowed_lateness_ms = 5 * MIN;
    cfg.segments_max = 2;
    cfg.touchpoints_max = 3;
}

TestSuite(funnel, .init = setup);

/* One partition: its journeys, the open batch's deltas, its totals, and
 * the stored counters hash (what the commit's HSET writes). */
#define HASH_MAX 1024
typedef struct part {
    int64_t clock;
    funnel_delta_t d, totals;
    funnel_reg_t r;
    char *hash_f[HASH_MAX];
    int64_t hash_v[HASH_MAX];
    int n_hash;
    journey_t j[4];
    int n_j;
    int late;
} part_t;

static void part_init(part_t *p, int n) {
    memset(p, 0, sizeof(*p));
    p->n_j = n;
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        journey_init(&p->j[i], id);
    }
}

static void part_free(part_t *p) {
    for (int i = 0; i < p->n_j; i++) journey_reset(&p->j[i]);
    funnel_delta_free(&p->d);
    funnel_delta_free(&p->totals);
    funnel_reg_free(&p->r);
    for (int i = 0; i < p->n_hash; i++) free(p->hash_f[i]);
}

static int64_t wm(const part_t *p) { return p->clock - cfg.allowed_lateness_ms; }

/* What batch.c does for one event of customer i. */
static funnel_result_t ev(part_t *p, int i, const char *mid, int64_t ts, int phase, const char *tp,
                          const char *segment) {
    event_t e;
    int late;
    memset(&e, 0, sizeof(e));
    e.ts_ms = ts;
    e.message_id = mid;
    e.segment = segment;
    int64_t w = wm(p);
    if (ts > p->clock) p->clock = ts;
    funnel_result_t r = funnel_event(&p->d, &p->r, &cfg, &p->j[i], w, wm(p), &e,
                                     journey_mid_hash(mid, strlen(mid)), phase, tp, &late);
    p->late += late;
    return r;
}

/* The sweep at the end of a batch; returns how many closed. */
static int sweep(part_t *p) {
    int n = 0;
    for (int i = 0; i < p->n_j; i++) n += funnel_expire(&p->d, &p->r, &cfg, &p->j[i], wm(p));
    return n;
}

static void heartbeat(part_t *p, int64_t ts) {
    if (ts > p->clock) p->clock = ts;
}

/* An idle, caught-up partition: the daemon's tick adds the wall time passed. */
static void idle(part_t *p, int64_t ms) { p->clock += ms; }

/* What batch.c does at a commit: render the batch's deltas onto the
 * totals, write the changed totals into the hash (HSET), clear the deltas. */
static void commit(part_t *p) {
    if (cfg.n_funnel_windows) funnel_delta_expire(&p->d, &p->totals, &p->r, &cfg, p->clock, wm(p));
    funnel_delta_render(&p->d, &p->totals, &p->r, &cfg, p->clock, wm(p));
    for (size_t i = 0; i < p->d.n_gone; i++) /* HDEL */
        for (int k = 0; k < p->n_hash; k++)
            if (!strcmp(p->hash_f[k], p->d.gone[i])) {
                free(p->hash_f[k]);
                p->hash_f[k] = p->hash_f[--p->n_hash];
                p->hash_v[k] = p->hash_v[p->n_hash];
                break;
            }
    for (size_t i = 0; i < p->d.n_names; i++) {
        int k = 0;
        while (k < p->n_hash && strcmp(p->hash_f[k], p->d.names[i])) k++;
        if (k == p->n_hash) {
            cr_assert_lt(p->n_hash, HASH_MAX);
            p->hash_f[p->n_hash++] = strdup(p->d.names[i]);
        }
        p->hash_v[k] = p->d.totals[i];
    }
    funnel_delta_clear(&p->d);
}

/* What batch.c does when customer i absorbs the open journey of k. */
static void merge(part_t *p, int i, int k) {
    int64_t before[CFG_MAX_PHASES];
    memcpy(before, p->j[i].phase_ts, sizeof(before));
    int from = p->j[i].phase;
    funnel_removed(&p->d, &p->r, &cfg, &p->j[k]);
    journey_merge(&p->j[i], &p->j[k], &cfg);
    funnel_moved(&p->d, &p->r, &cfg, &p->j[i], from, before);
}

static int64_t get(part_t *p, const char *field) {
    commit(p);
    for (int k = 0; k < p->n_hash; k++)
        if (!strcmp(p->hash_f[k], field)) return p->hash_v[k];
    return 0;
}

/* Every non-zero stored counter, sorted, as "name=value;" */
static char *counters(part_t *p) {
    static char buf[16384];
    const char *names[HASH_MAX];
    size_t n = 0;
    commit(p);
    for (int i = 0; i < p->n_hash; i++)
        if (p->hash_v[i]) names[n++] = p->hash_f[i];
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
            const char *t = names[k];
            names[k] = names[k - 1];
            names[k - 1] = t;
        }
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s=%lld;", names[i], (long long)get(p, names[i]));
    return buf;
}

Test(funnel, dropped_exactly_when_the_watermark_passes_the_timeout) {
    part_t p;
    part_init(&p, 1);
    cr_assert_eq(ev(&p, 0, "m1", 0, 0, "search_engine", "consumer"), FUNNEL_APPLIED);
    cr_assert_eq(ev(&p, 0, "m2", 10 * MIN, 0, "ads", NULL), FUNNEL_APPLIED);
    cr_assert_str_eq(counters(&p), "f|search|consumer|active=1;f|search|consumer|reached=1;");
    cr_assert_eq(journey_deadline(&p.j[0], &cfg), 40 * MIN);
    /* deadline 40 min; the watermark trails the clock by 5 min */
    heartbeat(&p, 45 * MIN - 1);
    cr_assert_eq(sweep(&p), 0);
    cr_assert_eq(p.j[0].status, JOURNEY_OPEN); /* in progress, never dropped early */
    cr_assert_eq(get(&p, "f|search|consumer|dropped"), 0);
    heartbeat(&p, 45 * MIN);
    cr_assert_eq(sweep(&p), 1);
    cr_assert_eq(p.j[0].status, JOURNEY_DROPPED);
    cr_assert_str_eq(counters(&p), "f|search|consumer|dropped=1;f|search|consumer|drop|ads=1;"
                                   "f|search|consumer|reached=1;");
    cr_assert_eq(sweep(&p), 0); /* once */
    part_free(&p);
}

/* A journey waiting for the answer to a link it sent to another partition
 * (pending, stitch.h) does not time out, however far the watermark goes; it
 * closes at the first look once the answer is in, at its own deadline. */
Test(funnel, a_journey_waiting_for_an_answer_does_not_time_out) {
    part_t p;
    part_init(&p, 1);
    ev(&p, 0, "m1", 0, 0, "ads", NULL);
    p.j[0].pending = 1;
    p.j[0].stored_deadline = 30 * MIN; /* as written while open */
    heartbeat(&p, 10 * 24 * 60 * MIN);
    cr_assert_eq(sweep(&p), 0);
    cr_assert_eq(p.j[0].status, JOURNEY_OPEN);
    cr_assert_eq(journey_settle(&p.j[0], &cfg, 10 * 24 * 60 * MIN), 0); /* nor under the mark */
    cr_assert_eq(get(&p, "f|search|none|active"), 1);
    p.j[0].pending = 0;
    cr_assert_eq(sweep(&p), 1);
    cr_assert_eq(get(&p, "f|search|none|dropped"), 1);
    part_free(&p);
}

Test(funnel, idle_advance_closes_when_traffic_stops) {
    part_t p;
    part_init(&p, 2);
    ev(&p, 0, "a1", 1000 * MIN, 1, "reviews", "smb");
    ev(&p, 1, "b1", 1000 * MIN + 1, 0, "forum", "smb");
    for (int s = 0; s < 34 * 60; s++) idle(&p, 1000); /* 34 min of 1 s ticks */
    cr_assert_eq(sweep(&p), 0);
    idle(&p, 60000);                                   /* 35 min: search is due */
    cr_assert_eq(sweep(&p), 1);
    cr_assert_eq(p.j[1].status, JOURNEY_DROPPED);
    cr_assert_eq(p.j[0].status, JOURNEY_OPEN);          /* information: 3 days */
    idle(&p, 3 * DAY);
    cr_assert_eq(sweep(&p), 1);
    cr_assert_str_eq(counters(&p), "f|information|smb|dropped=1;f|information|smb|drop|reviews=1;"
                                   "f|information|smb|reached=1;f|search|smb|dropped=1;"
                                   "f|search|smb|drop|forum=1;f|search|smb|progressed=1;"
                                   "f|search|smb|reached=2;");
    part_free(&p);
}

Test(funnel, completion_in_the_last_phase_with_time_in_phase) {
    part_t p;
    part_init(&p, 1);
    ev(&p, 0, "m1", 0, 0, "search_engine", "consumer");
    ev(&p, 0, "m2", 20 * MIN, 1, "reviews", NULL);          /* 20 min in search */
    ev(&p, 0, "m3", 20 * MIN + DAY, 2, "checkout", NULL);   /* 1 day in information */
    ev(&p, 0, "m4", 21 * MIN + DAY, 3, "order_confirmation", NULL);  /* 1 min in purchase */
    heartbeat(&p, 21 * MIN + DAY + 28 * DAY + 5 * MIN);
    cr_assert_eq(sweep(&p), 1);
    cr_assert_eq(p.j[0].status, JOURNEY_COMPLETED);
    char want[1024];
    snprintf(want, sizeof(want),
             "f|information|consumer|progressed=1;f|information|consumer|reached=1;"
             "f|information|consumer|tip|%d=1;f|loyalty|consumer|completed=1;"
             "f|loyalty|consumer|reached=1;f|purchase|consumer|progressed=1;"
             "f|purchase|consumer|reached=1;f|purchase|consumer|tip|%d=1;"
             "f|search|consumer|progressed=1;f|search|consumer|reached=1;f|search|consumer|tip|%d=1;",
             funnel_tip_bucket(DAY), funnel_tip_bucket(MIN), funnel_tip_bucket(20 * MIN));
    cr_assert_str_eq(counters(&p), want);
    part_free(&p);
}

Test(funnel, an_event_after_the_timeout_starts_the_next_journey) {
    part_t p;
    part_init(&p, 1);
    ev(&p, 0, "m1", 0, 0, "search_engine", "consumer");
    /* 31 min later: the timer has not fired (watermark 26 min), the event
     * time says the first journey is over */
    cr_assert_eq(ev(&p, 0, "m2", 31 * MIN, 0, "ads", "consumer"), FUNNEL_APPLIED);
    cr_assert_eq(p.j[0].number, 2);
    cr_assert_eq(p.j[0].status, JOURNEY_OPEN);
    cr_assert_eq(p.j[0].events, 1);
    cr_assert_eq(p.j[0].prev_end, 30 * MIN);
    cr_assert_str_eq(p.j[0].last_tp, "ads");
    cr_assert_str_eq(counters(&p), "f|search|consumer|active=1;f|search|consumer|dropped=1;"
                                   "f|search|consumer|drop|search_engine=1;f|search|consumer|reached=2;");
    /* an event of the first journey, still inside the lateness: it belongs
     * to the closed journey and only goes into the history */
    cr_assert_eq(ev(&p, 0, "m0", 29 * MIN, 0, "forum", NULL), FUNNEL_LATE);
    cr_assert_eq(p.late, 0);
    cr_assert_eq(p.j[0].events, 1);
    cr_assert_eq(p.j[0].n_hist, 2);
    cr_assert_eq(ev(&p, 0, "m0", 29 * MIN, 0, "forum", NULL), FUNNEL_DUPLICATE);
    part_free(&p);
}

Test(funnel, late_events_never_reopen_a_closed_journey) {
    part_t p;
    part_init(&p, 2);
    ev(&p, 0, "m1", 0, 1, "reviews", "consumer");
    ev(&p, 1, "x1", 3 * DAY + 10 * MIN, 0, "forum", "smb"); /* moves the clock: c0 is due */
    cr_assert_eq(sweep(&p), 1);
    cr_assert_eq(p.j[0].status, JOURNEY_DROPPED);
    /* late (older than the watermark) and inside the closed journey */
    cr_assert_eq(ev(&p, 0, "m2", DAY, 2, "checkout", NULL), FUNNEL_LATE);
    cr_assert_eq(p.late, 1);
    cr_assert_eq(p.j[0].status, JOURNEY_DROPPED);
    cr_assert_eq(p.j[0].phase, 1);             /* not moved to purchase */
    cr_assert_eq(p.j[0].number, 1);
    cr_assert_eq(p.j[0].events, 1);
    cr_assert_eq(p.j[0].n_hist, 2);            /* but kept in the history */
    cr_assert_str_eq(p.j[0].hist[1].tp, "checkout");
    cr_assert_str_eq(counters(&p), "f|information|consumer|dropped=1;f|information|consumer|drop|reviews=1;"
                                   "f|information|consumer|reached=1;f|search|consumer|progressed=1;"
                                   "f|search|consumer|reached=1;f|search|smb|active=1;f|search|smb|reached=1;");
    /* late, but after the closed journey's deadline: it starts the next one */
    cr_assert_eq(ev(&p, 0, "m3", 3 * DAY + 1, 0, "ads", NULL), FUNNEL_APPLIED);
    cr_assert_eq(p.late, 2);
    cr_assert_eq(p.j[0].number, 2);
    part_free(&p);
}

Test(funnel, out_of_order_within_the_lateness_counts_as_in_order) {
    part_t a, b;
    part_init(&a, 1);
    part_init(&b, 1);
    ev(&a, 0, "m1", 0, 0, "search_engine", "consumer");
    ev(&a, 0, "m2", 2 * MIN, 1, "reviews", NULL);
    ev(&a, 0, "m3", 3 * MIN, 2, "cart", NULL);
    ev(&b, 0, "m3", 3 * MIN, 2, "cart", NULL);
    ev(&b, 0, "m1", 0, 0, "search_engine", "consumer");
    ev(&b, 0, "m2", 2 * MIN, 1, "reviews", NULL);
    cr_assert_eq(a.late + b.late, 0);
    heartbeat(&a, DAY);
    heartbeat(&b, DAY);
    cr_assert_eq(sweep(&a), 1);
    cr_assert_eq(sweep(&b), 1);
    char want[1024];
    snprintf(want, sizeof(want),
             "f|information|consumer|progressed=1;f|information|consumer|reached=1;"
             "f|information|consumer|tip|%d=1;f|purchase|consumer|dropped=1;"
             "f|purchase|consumer|drop|cart=1;f|purchase|consumer|reached=1;"
             "f|search|consumer|progressed=1;f|search|consumer|reached=1;"
             "f|search|consumer|tip|%d=1;", funnel_tip_bucket(MIN), funnel_tip_bucket(2 * MIN));
    cr_assert_str_eq(counters(&a), want);
    char *ca = strdup(counters(&a));
    cr_assert_str_eq(counters(&b), ca);
    free(ca);
    part_free(&a);
    part_free(&b);
}

Test(funnel, a_merged_journey_is_taken_back) {
    part_t p;
    part_init(&p, 2);
    ev(&p, 0, "a1", 0, 0, "ads", "smb");               /* anonymous */
    ev(&p, 0, "a2", MIN, 1, "reviews", "smb");
    ev(&p, 1, "u1", 2 * MIN, -1, NULL, NULL);          /* the identify, on the customer */
    merge(&p, 1, 0);
    cr_assert_str_eq(counters(&p), "f|information|smb|active=1;f|information|smb|reached=1;"
                                   "f|search|smb|progressed=1;f|search|smb|reached=1;");
    part_free(&p);
}

Test(funnel, a_journey_never_counted_is_counted_whole) {
    part_t p;
    part_init(&p, 2);
    /* as read from a version 1 blob: phase reached before the funnel existed */
    ev(&p, 0, "m1", 0, 1, "reviews", "smb");
    ev(&p, 1, "x1", 0, 1, "reviews", "smb");
    funnel_delta_clear(&p.d);
    p.j[0].mseg[0] = p.j[1].mseg[0] = '\0';
    ev(&p, 0, "m2", MIN, 2, "cart", NULL);   /* moves on */
    heartbeat(&p, 3 * DAY + 10 * MIN);       /* c1 closes without another event */
    cr_assert_eq(sweep(&p), 2);
    char want[1024];
    snprintf(want, sizeof(want),
             "f|information|smb|dropped=1;f|information|smb|drop|reviews=1;f|information|smb|progressed=1;"
             "f|information|smb|reached=2;f|information|smb|tip|%d=1;f|purchase|smb|dropped=1;"
             "f|purchase|smb|drop|cart=1;f|purchase|smb|reached=1;f|search|smb|progressed=2;"
             "f|search|smb|reached=2;", funnel_tip_bucket(MIN));
    cr_assert_str_eq(counters(&p), want);
    part_free(&p);
}

Test(funnel, segments_and_touchpoints_are_capped) {
    part_t p;
    part_init(&p, 4);
    ev(&p, 0, "m0", 0, 0, "t0", "a");
    ev(&p, 1, "m1", 0, 0, "t1", "b");
    ev(&p, 2, "m2", 0, 0, "t2", "c");       /* third segment: "other" */
    ev(&p, 3, "m3", 0, 0, "t3", NULL);      /* no segment: "none" */
    heartbeat(&p, HOUR);
    cr_assert_eq(sweep(&p), 4);
    cr_assert_str_eq(counters(&p), "f|search|a|dropped=1;f|search|a|drop|t0=1;f|search|a|reached=1;"
                                   "f|search|b|dropped=1;f|search|b|drop|t1=1;f|search|b|reached=1;"
                                   "f|search|none|dropped=1;f|search|none|drop|other=1;f|search|none|reached=1;"
                                   "f|search|other|dropped=1;f|search|other|drop|t2=1;f|search|other|reached=1;");
    /* a restarted daemon learns the names and totals back from the stored
     * fields (the stats and clock in the same hash are left alone), and goes
     * on writing the same fields */
    funnel_reg_free(&p.r);
    funnel_delta_free(&p.totals);
    memset(&p.r, 0, sizeof(p.r));
    funnel_learn(&p.r, &p.totals, &cfg, "clock", 12345);
    funnel_learn(&p.r, &p.totals, &cfg, "applied", 4);
    funnel_learn(&p.r, &p.totals, &cfg, "f|nosuchphase|a|reached", 9);
    for (int i = p.n_hash - 1; i >= 0; i--) funnel_learn(&p.r, &p.totals, &cfg, p.hash_f[i], p.hash_v[i]);
    cr_assert_eq(p.r.segments.n, 2);
    cr_assert_eq(p.r.touchpoints.n, 3);
    cr_assert_eq(p.totals.n, 12);
    journey_reset(&p.j[0]);
    journey_init(&p.j[0], "c0");
    ev(&p, 0, "m4", 2 * HOUR, 0, "t1", "b");
    heartbeat(&p, 4 * HOUR);
    cr_assert_eq(sweep(&p), 1);
    cr_assert_str_eq(counters(&p), "f|search|a|dropped=1;f|search|a|drop|t0=1;f|search|a|reached=1;"
                                   "f|search|b|dropped=2;f|search|b|drop|t1=2;f|search|b|reached=2;"
                                   "f|search|none|dropped=1;f|search|none|drop|other=1;f|search|none|reached=1;"
                                   "f|search|other|dropped=1;f|search|other|drop|t2=1;f|search|other|reached=1;");
    part_free(&p);
}

Test(funnel, pipes_in_names_do_not_break_fields) {
    part_t p;
    part_init(&p, 1);
    ev(&p, 0, "m0", 0, 0, "web|shop", "b2b|eu");
    heartbeat(&p, HOUR);
    sweep(&p);
    cr_assert_str_eq(counters(&p), "f|search|b2b/eu|dropped=1;f|search|b2b/eu|drop|web/shop=1;"
                                   "f|search|b2b/eu|reached=1;");
    part_free(&p);
}

Test(funnel, time_in_phase_buckets) {
    cr_assert_eq(funnel_tip_bucket(0), 8);
    cr_assert_eq(funnel_tip_upper_ms(8), 1000);
    cr_assert_eq(funnel_tip_bucket(999), 8);
    cr_assert_eq(funnel_tip_bucket(1000), 9);
    cr_assert_eq(funnel_tip_bucket(-5), 8);
    cr_assert_eq(funnel_tip_bucket(INT64_MAX), FUNNEL_TIP_BUCKETS - 1);
    /* every duration lies below its bucket's upper edge, at most 25 % + 1 s above it */
    int prev = 0;
    for (int64_t s = 0; s < 40LL * 86400; s += 1 + s / 7) {
        int b = funnel_tip_bucket(s * 1000);
        cr_assert_geq(b, prev);
        prev = b;
        int64_t up = funnel_tip_upper_ms(b);
        cr_assert_gt(up, s * 1000, "s=%lld b=%d up=%lld", (long long)s, b, (long long)up);
        cr_assert_leq(up, s * 1000 * 5 / 4 + 1000, "s=%lld b=%d up=%lld", (long long)s, b, (long long)up);
        if (b > 8) cr_assert_leq(funnel_tip_upper_ms(b - 1), s * 1000);
    }
}

static char *snapshot_json(funnel_snap_t *s, const char *segment, int top) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    funnel_print_opts_t o = {.segment = segment, .top_segments = top, .top_touchpoints = 2, .now_ms = 0};
    funnel_print_json(s, &cfg, &o, m);
    fclose(m);
    return buf;
}

Test(funnel, partitions_merge_into_one_snapshot) {
    funnel_snap_t s;
    memset(&s, 0, sizeof(s));
    s.watermark = 60000;
    s.shards = 2;
    /* partition 1 */
    funnel_snap_add(&s, &cfg, "f|search|a|reached", 3, 0);
    funnel_snap_add(&s, &cfg, "f|search|a|progressed", 1, 0);
    funnel_snap_add(&s, &cfg, "f|search|a|dropped", 2, 0);
    funnel_snap_add(&s, &cfg, "f|search|a|drop|ads", 2, 0);
    funnel_snap_add(&s, &cfg, "f|search|a|tip|8", 1, 0);
    funnel_snap_add(&s, &cfg, "f|information|a|reached", 1, 0);
    funnel_snap_add(&s, &cfg, "f|information|a|active", 1, 0);
    funnel_snap_add(&s, &cfg, "consumed", 99, 0);        /* not a funnel field */
    funnel_snap_add(&s, &cfg, "f|gone|a|reached", 7, 0); /* a phase no longer configured */
    /* partition 2 */
    funnel_snap_add(&s, &cfg, "f|search|a|reached", 1, 0);
    funnel_snap_add(&s, &cfg, "f|search|a|dropped", 1, 0);
    funnel_snap_add(&s, &cfg, "f|search|a|drop|forum", 1, 0);
    funnel_snap_add(&s, &cfg, "f|search|b|reached", 1, 0);
    funnel_snap_add(&s, &cfg, "f|search|b|dropped", 1, 0);
    funnel_snap_add(&s, &cfg, "f|search|b|drop|forum", 1, 0);
    char *j = snapshot_json(&s, NULL, 1);
    const char *phase_rest =
        "{\"phase\":\"purchase\",\"reached\":0,\"active\":0,\"progressed\":0,\"dropped\":0,\"completed\":0,"
        "\"dropoff_rate\":null,\"conversion\":0.000000,\"dropoff_points\":[],"
        "\"time_in_phase\":{\"n\":0,\"median_s\":null,\"p90_s\":null},\"windows\":{}},"
        "{\"phase\":\"loyalty\",\"reached\":0,\"active\":0,\"progressed\":0,\"dropped\":0,\"completed\":0,"
        "\"dropoff_rate\":null,\"conversion\":0.000000,\"dropoff_points\":[],"
        "\"time_in_phase\":{\"n\":0,\"median_s\":null,\"p90_s\":null},\"windows\":{}}]}";
    char want[8192];
    snprintf(want, sizeof(want),
             "{\"schema\":\"journeyd.metrics\",\"version\":1,\"computed_at\":\"1970-01-01T00:00:00.000Z\","
             "\"complete_to\":\"1970-01-01T00:01:00.000Z\",\"partitions\":2,\"late_events\":0,"
             "\"phases\":[\"search\",\"information\",\"purchase\",\"loyalty\"],\"funnel_windows\":[],\"funnel\":["
             /* all */
             "{\"segment\":\"all\",\"phases\":["
             "{\"phase\":\"search\",\"reached\":5,\"active\":0,\"progressed\":1,\"dropped\":4,\"completed\":0,"
             "\"dropoff_rate\":0.800000,\"conversion\":1.000000,\"dropoff_points\":["
             "{\"touchpoint\":\"ads\",\"dropped\":2},{\"touchpoint\":\"forum\",\"dropped\":2}],"
             "\"time_in_phase\":{\"n\":1,\"median_s\":1,\"p90_s\":1},\"windows\":{}},"
             "{\"phase\":\"information\",\"reached\":1,\"active\":1,\"progressed\":0,\"dropped\":0,\"completed\":0,"
             "\"dropoff_rate\":null,\"conversion\":0.200000,\"dropoff_points\":[],"
             "\"time_in_phase\":{\"n\":0,\"median_s\":null,\"p90_s\":null},\"windows\":{}},%s,"
             /* top 1: a */
             "{\"segment\":\"a\",\"phases\":["
             "{\"phase\":\"search\",\"reached\":4,\"active\":0,\"progressed\":1,\"dropped\":3,\"completed\":0,"
             "\"dropoff_rate\":0.750000,\"conversion\":1.000000,\"dropoff_points\":["
             "{\"touchpoint\":\"ads\",\"dropped\":2},{\"touchpoint\":\"forum\",\"dropped\":1}],"
             "\"time_in_phase\":{\"n\":1,\"median_s\":1,\"p90_s\":1},\"windows\":{}},"
             "{\"phase\":\"information\",\"reached\":1,\"active\":1,\"progressed\":0,\"dropped\":0,\"completed\":0,"
             "\"dropoff_rate\":null,\"conversion\":0.250000,\"dropoff_points\":[],"
             "\"time_in_phase\":{\"n\":0,\"median_s\":null,\"p90_s\":null},\"windows\":{}},%s,"
             /* the rest: other */
             "{\"segment\":\"other\",\"phases\":["
             "{\"phase\":\"search\",\"reached\":1,\"active\":0,\"progressed\":0,\"dropped\":1,\"completed\":0,"
             "\"dropoff_rate\":1.000000,\"conversion\":1.000000,\"dropoff_points\":["
             "{\"touchpoint\":\"forum\",\"dropped\":1}],"
             "\"time_in_phase\":{\"n\":0,\"median_s\":null,\"p90_s\":null},\"windows\":{}},"
             "{\"phase\":\"information\",\"reached\":0,\"active\":0,\"progressed\":0,\"dropped\":0,\"completed\":0,"
             "\"dropoff_rate\":null,\"conversion\":0.000000,\"dropoff_points\":[],"
             "\"time_in_phase\":{\"n\":0,\"median_s\":null,\"p90_s\":null},\"windows\":{}},%s]}\n",
             phase_rest, phase_rest, phase_rest);
    /* the per-segment closing "]}" of phase_rest is followed by "," or "]}" */
    cr_assert_str_eq(j, want);
    free(j);
    /* one segment only */
    j = snapshot_json(&s, "b", 5);
    cr_assert(strstr(j, "\"funnel\":[{\"segment\":\"b\",\"phases\":[{\"phase\":\"search\",\"reached\":1,"));
    cr_assert_null(strstr(j, "\"segment\":\"all\""));
    free(j);
    funnel_snap_free(&s);
}

/* batch.c closes a journey it does not hold from what funnel_close_of() took
 * while it was open: the counters must be exactly those of closing it. */
Test(funnel, a_close_taken_while_open_counts_the_same) {
    part_t a, b;
    part_init(&a, 2);
    part_init(&b, 2);
    part_t *ps[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        part_t *p = ps[k];
        ev(p, 0, "m1", 0, 0, "search_engine", "consumer");
        ev(p, 0, "m2", 20 * MIN, 2, "checkout", NULL);          /* information skipped */
        ev(p, 0, "m3", 30 * MIN, 3, "order_confirmation", NULL); /* completes */
        ev(p, 1, "n1", 0, 0, "forum", "smb");
        ev(p, 1, "n2", 5 * MIN, 1, "", NULL);                   /* no touchpoint name */
        counters(p);
    }
    funnel_close_t fc[2];
    for (int i = 0; i < 2; i++) funnel_close_of(&b.j[i], &cfg, &fc[i]);
    cr_assert_eq(fc[0].phase, 3);
    cr_assert_eq(fc[0].tip[0], funnel_tip_bucket(20 * MIN));
    cr_assert_eq(fc[0].tip[1], FUNNEL_TIP_SKIPPED);
    cr_assert_eq(fc[0].tip[2], funnel_tip_bucket(10 * MIN));
    cr_assert_str_eq(fc[1].last_tp, "unknown");
    heartbeat(&a, 100 * DAY);
    cr_assert_eq(sweep(&a), 2);
    for (int i = 0; i < 2; i++) funnel_count_close(&b.d, &b.r, &cfg, &fc[i]);
    char want[4096];
    snprintf(want, sizeof(want), "%s", counters(&a));
    cr_assert_str_eq(counters(&b), want);
    cr_assert(strstr(want, "f|loyalty|consumer|completed=1;") != NULL);
    cr_assert(strstr(want, "f|information|smb|drop|unknown=1;") != NULL);
    part_free(&a);
    part_free(&b);
}

/* ---- windows ------------------------------------------------------------------ */

static void windows(int64_t len, int k) {
    cfg.n_funnel_windows = 1;
    cfg.funnel_windows_ms[0] = len;
    cfg.funnel_buckets = k;
}

/* The windowed counters only (fields with a bucket: five '|'). */
static char *windowed(part_t *p) {
    static char buf[16384];
    const char *all = counters(p), *s = all;
    buf[0] = '\0';
    while (*s) {
        const char *end = strchr(s, ';');
        int bars = 0;
        for (const char *c = s; c < end; c++) bars += *c == '|';
        if (bars == 5) snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%.*s", (int)(end - s + 1), s);
        s = end + 1;
    }
    return buf;
}

Test(funnel, windowed_outcomes_are_counted_at_their_event_time) {
    windows(HOUR, 4); /* 15 min buckets */
    part_t p;
    part_init(&p, 1);
    ev(&p, 0, "m1", 0, 0, "search_engine", "consumer");
    ev(&p, 0, "m2", 20 * MIN, 2, "cart", NULL); /* reaches information and purchase */
    cr_assert_str_eq(windowed(&p), "f|information|consumer|progressed|900000|1=1;"
                                   "f|information|consumer|reached|900000|1=1;"
                                   "f|purchase|consumer|reached|900000|1=1;"
                                   "f|search|consumer|progressed|900000|1=1;"
                                   "f|search|consumer|reached|900000|0=1;");
    /* dropped at its deadline, 2h20m: bucket 9; at watermark 2h20m the
     * window holds buckets 6..9, so the others are deleted */
    heartbeat(&p, 145 * MIN);
    cr_assert_eq(sweep(&p), 1);
    cr_assert_str_eq(windowed(&p), "f|purchase|consumer|dropped|900000|9=1;");
    cr_assert_eq(get(&p, "f|purchase|consumer|dropped"), 1); /* the all-time counters stay */
    cr_assert_eq(get(&p, "f|search|consumer|reached"), 1);
    part_free(&p);
}

Test(funnel, windowed_counts_do_not_depend_on_arrival_order) {
    windows(HOUR, 60); /* 1 min buckets */
    part_t a, b;
    part_init(&a, 1);
    part_init(&b, 1);
    ev(&a, 0, "m1", 10 * MIN, 0, "ads", "smb");
    ev(&a, 0, "m2", 12 * MIN, 1, "reviews", NULL);
    ev(&a, 0, "m3", 14 * MIN, 2, "cart", NULL);
    ev(&b, 0, "m3", 14 * MIN, 2, "cart", NULL);       /* reaches every phase at 14 min ... */
    ev(&b, 0, "m2", 12 * MIN, 1, "reviews", NULL);    /* ... then search and information earlier */
    ev(&b, 0, "m1", 10 * MIN, 0, "ads", "smb");
    const char *want = "f|information|smb|progressed|60000|14=1;f|information|smb|reached|60000|12=1;"
                       "f|purchase|smb|reached|60000|14=1;f|search|smb|progressed|60000|12=1;"
                       "f|search|smb|reached|60000|10=1;";
    cr_assert_str_eq(windowed(&a), want);
    cr_assert_str_eq(windowed(&b), want);
    char *ca = strdup(counters(&a));
    cr_assert_str_eq(counters(&b), ca);
    free(ca);
    part_free(&a);
    part_free(&b);
}

/* A segment change and a merge take back what was counted, at the times it
 * was counted at, so they end as if every event had gone to one journey. */
Test(funnel, windowed_counts_move_with_segment_and_merge) {
    windows(HOUR, 60);
    part_t a, b;
    part_init(&a, 2);
    part_init(&b, 1);
    ev(&a, 0, "m1", 12 * MIN, 0, "ads", "smb");
    ev(&a, 0, "m2", 14 * MIN, 1, "reviews", "smb");
    cr_assert_str_eq(windowed(&a), "f|information|smb|reached|60000|14=1;f|search|smb|progressed|60000|14=1;"
                                   "f|search|smb|reached|60000|12=1;");
    ev(&a, 0, "m3", 15 * MIN, 1, "reviews", "consumer"); /* the latest segment: counts move */
    ev(&a, 0, "m4", 11 * MIN, 0, "forum", NULL);          /* earlier: search entered at 11 */
    cr_assert_str_eq(windowed(&a), "f|information|consumer|reached|60000|14=1;"
                                   "f|search|consumer|progressed|60000|14=1;"
                                   "f|search|consumer|reached|60000|11=1;");
    ev(&a, 1, "u1", 13 * MIN, 1, "login", "consumer");   /* the customer, then the link */
    ev(&a, 1, "u2", 16 * MIN, 2, "cart", NULL);
    merge(&a, 1, 0);
    const char *in_order[] = {"m4", "m1", "u1", "m2", "m3", "u2"};
    const int64_t ts[] = {11 * MIN, 12 * MIN, 13 * MIN, 14 * MIN, 15 * MIN, 16 * MIN};
    const int ph[] = {0, 0, 1, 1, 1, 2};
    const char *seg[] = {NULL, "smb", "consumer", "smb", "consumer", NULL};
    for (int i = 0; i < 6; i++) ev(&b, 0, in_order[i], ts[i], ph[i], "tp", seg[i]);
    const char *want = "f|information|consumer|progressed|60000|16=1;f|information|consumer|reached|60000|13=1;"
                       "f|purchase|consumer|reached|60000|16=1;f|search|consumer|progressed|60000|13=1;"
                       "f|search|consumer|reached|60000|11=1;";
    cr_assert_str_eq(windowed(&a), want);
    cr_assert_str_eq(windowed(&b), want);
    part_free(&a);
    part_free(&b);
}

Test(funnel, an_outcome_no_window_holds_is_not_counted_in_one) {
    windows(HOUR, 60);
    part_t p;
    part_init(&p, 2);
    ev(&p, 0, "m1", 3 * HOUR, 0, "ads", NULL);
    ev(&p, 1, "n1", 0, 0, "ads", NULL); /* late, a new journey: 3 h before the window */
    cr_assert_eq(p.late, 1);
    cr_assert_str_eq(windowed(&p), "f|search|none|reached|60000|180=1;");
    cr_assert_eq(get(&p, "f|search|none|reached"), 2);
    part_free(&p);
}

Test(funnel, a_close_record_counts_its_windowed_outcome_the_same) {
    windows(HOUR, 60);
    part_t a, b;
    part_init(&a, 1);
    part_init(&b, 1);
    ev(&a, 0, "m1", 0, 0, "ads", "smb");
    ev(&b, 0, "m1", 0, 0, "ads", "smb");
    funnel_close_t fc;
    funnel_close_of(&b.j[0], &cfg, &fc);
    cr_assert_eq(fc.at, 30 * MIN);
    heartbeat(&a, 40 * MIN);
    heartbeat(&b, 40 * MIN);
    cr_assert_eq(sweep(&a), 1);
    funnel_count_close(&b.d, &b.r, &cfg, &fc);
    cr_assert_str_eq(windowed(&a), "f|search|smb|dropped|60000|30=1;f|search|smb|reached|60000|0=1;");
    char *ca = strdup(counters(&a));
    cr_assert_str_eq(counters(&b), ca);
    free(ca);
    part_free(&a);
    part_free(&b);
}

/* Each partition's windows at its own watermark, then summed. */
Test(funnel, windowed_counters_of_partitions_at_their_watermarks) {
    windows(HOUR, 60);
    funnel_snap_t s;
    memset(&s, 0, sizeof(s));
    s.watermark = 80 * MIN;
    s.shards = 2;
    /* partition 1, watermark at minute 100: it holds buckets 41..100 */
    funnel_snap_add(&s, &cfg, "f|purchase|a|dropped|60000|100", 2, 100 * MIN);
    funnel_snap_add(&s, &cfg, "f|purchase|a|dropped|60000|40", 5, 100 * MIN);     /* before the window */
    funnel_snap_add(&s, &cfg, "f|purchase|a|progressed|60000|101", 7, 100 * MIN); /* after the watermark */
    funnel_snap_add(&s, &cfg, "f|purchase|a|completed|900000|3", 9, 100 * MIN);   /* a window not configured */
    /* not windowed, though they end in numbers: a touchpoint and a segment
     * named by digits, a time-in-phase bucket */
    funnel_snap_add(&s, &cfg, "f|purchase|a|drop|60000", 4, 100 * MIN);
    funnel_snap_add(&s, &cfg, "f|purchase|60000|reached", 3, 100 * MIN);
    funnel_snap_add(&s, &cfg, "f|purchase|a|tip|3", 1, 100 * MIN);
    /* partition 2, watermark at minute 80: buckets 21..80 */
    funnel_snap_add(&s, &cfg, "f|purchase|a|progressed|60000|60", 6, 80 * MIN);
    funnel_snap_add(&s, &cfg, "f|purchase|a|dropped|60000|50", 1, 80 * MIN);
    funnel_snap_add(&s, &cfg, "f|purchase|a|dropped|60000|81", 8, 80 * MIN);      /* after the watermark */
    char *all = snapshot_json(&s, NULL, 2);
    cr_assert(strstr(all, "\"dropoff_points\":[{\"touchpoint\":\"60000\",\"dropped\":4}]"), "%s", all);
    cr_assert(strstr(all, "{\"segment\":\"60000\",\"phases\":["), "%s", all);
    free(all);
    char *j = snapshot_json(&s, "a", 1);
    cr_assert(strstr(j, "\"funnel_windows\":[{\"window\":\"1h\",\"length_ms\":3600000,\"bucket_ms\":60000}]"), "%s", j);
    cr_assert(strstr(j, "{\"phase\":\"purchase\",\"reached\":0,\"active\":0,\"progressed\":0,\"dropped\":0,"
                        "\"completed\":0,"), "%s", j);
    cr_assert(strstr(j, "\"windows\":{\"1h\":{\"reached\":0,\"progressed\":6,\"dropped\":3,\"completed\":0,"
                        "\"dropoff_rate\":0.333333,\"conversion\":null}}"), "%s", j);
    free(j);
    funnel_snap_free(&s);
}
