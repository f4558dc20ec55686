/*
 * test_gen.c -- the journey generator: determinism, its distributions over a
 * large seeded run (within tolerances), and the ground truth counted back,
 * exactly, from the messages it wrote (decoded with the real decoder).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "gen.h"
#include "journey.h"

typedef struct sink {
    char *buf;
    size_t len;
    FILE *f;
} sink_t;

static int to_mem(const char *key, size_t keylen, const void *v, size_t len, int64_t ts, void *op) {
    (void)key, (void)keylen, (void)ts;
    sink_t *s = op;
    uint32_t n = (uint32_t)len;
    fwrite(&n, sizeof(n), 1, s->f); /* length-prefixed, so MessagePack works too */
    fwrite(v, 1, len, s->f);
    return 0;
}

static void run(const gen_opts_t *o, sink_t *s, char **journeys, gen_truth_t *t) {
    size_t jl;
    FILE *jf = journeys ? open_memstream(journeys, &jl) : NULL;
    s->f = open_memstream(&s->buf, &s->len);
    cr_assert_eq(gen_run(o, to_mem, s, jf, t), 0);
    fclose(s->f);
    if (jf) fclose(jf);
}

Test(gen, same_seed_same_bytes) {
    gen_opts_t o;
    gen_truth_t t1, t2;
    sink_t a, b, c;
    gen_defaults(&o);
    o.customers = 2000;
    o.dup_rate = o.ooo_rate = o.anon_rate = o.invalid_rate = 0.05;
    run(&o, &a, NULL, &t1);
    run(&o, &b, NULL, &t2);
    cr_assert_eq(a.len, b.len);
    cr_assert(memcmp(a.buf, b.buf, a.len) == 0);
    cr_assert_eq(t1.messages, t2.messages);
    o.seed = 2;
    run(&o, &c, NULL, &t2);
    cr_assert(c.len != a.len || memcmp(a.buf, c.buf, a.len) != 0);
    free(a.buf);
    free(b.buf);
    free(c.buf);
}

Test(gen, distributions_within_tolerance) {
    gen_opts_t o;
    gen_truth_t t;
    sink_t s;
    gen_defaults(&o);
    o.customers = 40000;
    run(&o, &s, NULL, &t);
    for (int k = 0; k < 3; k++) {
        double rate = (double)t.dropped[k] / (double)t.reached[k];
        cr_assert(rate > o.drop[k] - 0.02 && rate < o.drop[k] + 0.02, "phase %d drop %.3f", k, rate);
        cr_assert_eq(t.reached[k], t.progressed[k] + t.dropped[k]);
    }
    cr_assert_eq(t.completed[3], t.reached[3]);
    double mean = (double)t.touchpoints_before_purchase / (double)t.purchasers;
    cr_assert(mean > 11.5 && mean < 12.8, "mean touchpoints before purchase %.2f", mean);
    double sr = (double)(t.surveys - t.journey_surveys) / (double)t.touches;
    cr_assert(sr > 0.07 && sr < 0.09, "survey rate %.3f", sr);
    free(s.buf);
}

static int atoi_safe(const char *s) { return (int)strtol(s, NULL, 10); }

static int is_dup(uint64_t *set, size_t cap, uint64_t h) {
    size_t i = h & (cap - 1);
    while (set[i]) {
        if (set[i] == h) return 1;
        i = (i + 1) & (cap - 1);
    }
    set[i] = h;
    return 0;
}

/* Decode every message written and count: the truth must match exactly. */
static void truth_matches(int msgpack) {
    gen_opts_t o;
    gen_truth_t t;
    sink_t s;
    char *journeys = NULL, arena[70000], err[256];
    gen_defaults(&o);
    o.customers = 5000;
    o.msgpack = msgpack;
    o.dup_rate = 0.03;
    o.ooo_rate = 0.05;
    o.anon_rate = 0.2;
    o.invalid_rate = 0.02;
    run(&o, &s, &journeys, &t);
    decode_limits_t lim = {65536, 128, 1024, 64, 16};
    size_t cap = 1 << 20;
    uint64_t *seen = calloc(cap, sizeof(*seen));
    uint64_t msgs = 0, invalid = 0, dups = 0, valid = 0, identifies = 0, surveys = 0;
    uint64_t n[3][2] = {{0}}, sum[3][2] = {{0}}, promoters = 0, detractors = 0, satisfied = 0, high = 0;
    for (size_t off = 0; off < s.len; msgs++) {
        uint32_t len;
        memcpy(&len, s.buf + off, sizeof(len));
        event_t ev;
        decode_status_t st = decode_event(s.buf + off + 4, len, DECODE_AUTO, &lim, &ev, arena, sizeof(arena), err, sizeof(err));
        off += 4 + len;
        if (st != DECODE_OK) {
            invalid++;
            continue;
        }
        if (is_dup(seen, cap, journey_mid_hash(ev.message_id, strlen(ev.message_id)))) {
            dups++;
            continue;
        }
        valid++;
        identifies += ev.type == EV_IDENTIFY;
        surveys += ev.metric != EV_METRIC_NONE;
        if (ev.metric != EV_METRIC_NONE) {
            int m = ev.metric - 1, sc = ev.scope == EV_SCOPE_JOURNEY;
            n[m][sc]++;
            sum[m][sc] += (uint64_t)ev.score;
            promoters += m == 0 && ev.score >= 9;
            detractors += m == 0 && ev.score <= 6;
            satisfied += m == 1 && ev.score >= 4;
            high += m == 2 && ev.score >= 5;
        }
    }
    cr_assert_eq(msgs, t.messages);
    cr_assert_eq(invalid, t.invalid);
    cr_assert_eq(dups, t.duplicates);
    cr_assert_eq(valid, t.valid);
    cr_assert_eq(identifies, t.identifies);
    cr_assert_eq(surveys, t.surveys);
    /* satisfaction truth, summed over phases, equals what was written */
    uint64_t tp = 0, td = 0, ts = 0, th = 0;
    for (int m = 0; m < 3; m++)
        for (int sc = 0; sc < 2; sc++) {
            uint64_t tn = 0, tsum = 0;
            for (int k = 0; k < GEN_PHASES; k++) {
                tn += t.sat[m][k][sc].n;
                tsum += t.sat[m][k][sc].sum;
                tp += t.sat[m][k][sc].promoters;
                td += t.sat[m][k][sc].detractors;
                ts += t.sat[m][k][sc].satisfied;
                th += t.sat[m][k][sc].high;
            }
            cr_assert_eq(tn, n[m][sc], "metric %d scope %d", m, sc);
            cr_assert_eq(tsum, sum[m][sc], "metric %d scope %d", m, sc);
        }
    cr_assert_eq(tp, promoters);
    cr_assert_eq(td, detractors);
    cr_assert_eq(ts, satisfied);
    cr_assert_eq(th, high);
    /* drop-off points add up to the drop-offs of each phase */
    for (int k = 0; k < GEN_PHASES; k++) {
        uint64_t d = 0;
        for (int i = 0; i < GEN_MAX_TOUCHPOINTS && t.dropoff[k][i].tp; i++) d += t.dropoff[k][i].n;
        cr_assert_eq(d, t.dropped[k], "phase %d", k);
    }
    uint64_t events = 0, lines = 0;
    for (char *p = journeys; (p = strstr(p, "\"events\":")); p++, lines++) events += strtoull(p + 9, NULL, 10);
    cr_assert_eq(lines, t.journeys);
    cr_assert_eq(events, t.valid);
    free(seen);
    free(journeys);
    free(s.buf);
}

Test(gen, truth_counted_back_json) { truth_matches(0); }
Test(gen, truth_counted_back_msgpack) { truth_matches(1); }

/* Returning customers: numbered journeys, each starting more than the loyalty
 * timeout after the previous one ended, each counted once. */
Test(gen, returning_customers) {
    gen_opts_t o;
    gen_truth_t t;
    sink_t s;
    char *journeys = NULL;
    gen_defaults(&o);
    o.customers = 3000;
    o.return_rate = 0.5;
    run(&o, &s, &journeys, &t);
    uint64_t lines = 0, second = 0, completed = 0;
    for (char *p = journeys; p && *p; lines++) {
        char *nl = strchr(p, '\n');
        *nl = '\0';
        int no = atoi_safe(strstr(p, "\"journey\":") + 10);
        second += no == 2;
        completed += strstr(p, "\"outcome\":\"completed\"") != NULL;
        p = nl + 1;
    }
    cr_assert_eq(lines, t.journeys);
    cr_assert_eq(completed, t.completed[GEN_PHASES - 1]);
    cr_assert(t.journeys > o.customers + 300, "%llu journeys", (unsigned long long)t.journeys);
    cr_assert(second > 200, "%llu second journeys", (unsigned long long)second);
    free(journeys);
    free(s.buf);
}
