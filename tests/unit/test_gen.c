/*
 * test_gen.c -- the journey generator: determinism, its distributions over a
 * large seeded run (within tolerances), and the ground truth counted back,
 * exactly, from the messages it wrote (decoded with the real decoder); the
 * per-answer truth file against the aggregate truth and the messages.
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
    cr_assert_eq(gen_run(o, to_mem, s, jf, NULL, t), 0);
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

/* ---- the per-answer truth (--answers) --------------------------------------- */

typedef struct answer {
    long long ts, score;
    char metric[8], phase[16], scope[16], tp[48], segment[32], customer[64], mid[64], key[64];
} answer_t;

static const char *expect(const char *p, const char *lit) {
    size_t n = strlen(lit);
    return p && !strncmp(p, lit, n) ? p + n : NULL;
}

/* A JSON string's body up to its closing quote (the generator writes no escapes). */
static const char *get_str(const char *p, char *out, size_t size) {
    const char *q = p ? strchr(p, '"') : NULL;
    if (!q || (size_t)(q - p) >= size) return NULL;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return q;
}

static const char *get_int(const char *p, long long *v) {
    char *end;
    if (!p) return NULL;
    *v = strtoll(p, &end, 10);
    return end == p ? NULL : end;
}

/* One line, its keys in the documented order, no spaces: 0, or -1. */
static int parse_answer(const char *line, answer_t *a) {
    const char *p = expect(line, "{\"ts\":");
    p = get_int(p, &a->ts);
    p = get_str(expect(p, ",\"metric\":\""), a->metric, sizeof(a->metric));
    p = get_int(expect(p, "\",\"score\":"), &a->score);
    p = get_str(expect(p, ",\"phase\":\""), a->phase, sizeof(a->phase));
    p = get_str(expect(p, "\",\"scope\":\""), a->scope, sizeof(a->scope));
    p = get_str(expect(p, "\",\"touchpoint\":\""), a->tp, sizeof(a->tp));
    p = get_str(expect(p, "\",\"segment\":\""), a->segment, sizeof(a->segment));
    p = get_str(expect(p, "\",\"customer\":\""), a->customer, sizeof(a->customer));
    p = get_str(expect(p, "\",\"message_id\":\""), a->mid, sizeof(a->mid));
    p = get_str(expect(p, "\",\"key\":\""), a->key, sizeof(a->key));
    p = expect(p, "\"}");
    return p && !*p ? 0 : -1;
}

static int index_of(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return i;
    return -1;
}

static int by_mid(const void *a, const void *b) {
    return strcmp(((const answer_t *)a)->mid, ((const answer_t *)b)->mid);
}

/* Read the answers file: one answer_t per line, each parsed or the test fails. */
static answer_t *read_answers(char *buf, size_t *count) {
    size_t n = 0, cap = 1024;
    answer_t *v = malloc(cap * sizeof(*v));
    cr_assert(v);
    for (char *p = buf; p && *p; n++) {
        char *nl = strchr(p, '\n');
        cr_assert(nl, "unterminated line: %s", p);
        *nl = '\0';
        if (n == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof(*v));
            cr_assert(v);
        }
        cr_assert_eq(parse_answer(p, &v[n]), 0, "bad line: %s", p);
        p = nl + 1;
    }
    *count = n;
    return v;
}

/* Every survey message journeyd would accept (decoded, first copy of its
 * messageId) is one answer line, with the same time, metric, score, scope,
 * touchpoint, segment and journey key. */
static size_t answers_match_messages(const sink_t *s, const answer_t *v, size_t n) {
    static const char *const M[] = {"nps", "csat", "ces"};
    decode_limits_t lim = {65536, 128, 1024, 64, 16};
    char arena[70000], err[256];
    size_t cap = 1 << 20, matched = 0;
    uint64_t *seen = calloc(cap, sizeof(*seen));
    cr_assert(seen);
    for (size_t off = 0; off < s->len;) {
        uint32_t len;
        event_t ev;
        memcpy(&len, s->buf + off, sizeof(len));
        decode_status_t st = decode_event(s->buf + off + 4, len, DECODE_AUTO, &lim, &ev, arena, sizeof(arena),
                                          err, sizeof(err));
        off += 4 + len;
        if (st != DECODE_OK || is_dup(seen, cap, journey_mid_hash(ev.message_id, strlen(ev.message_id))) ||
            ev.metric == EV_METRIC_NONE)
            continue;
        answer_t key;
        snprintf(key.mid, sizeof(key.mid), "%s", ev.message_id);
        const answer_t *a = bsearch(&key, v, n, sizeof(*v), by_mid);
        cr_assert(a, "no answer line for %s", ev.message_id);
        cr_assert_eq(a->ts, (long long)ev.ts_ms, "%s", a->mid);
        cr_assert_str_eq(a->metric, M[ev.metric - 1], "%s", a->mid);
        cr_assert_eq(a->score, (long long)ev.score, "%s", a->mid);
        cr_assert_str_eq(a->scope, ev.scope == EV_SCOPE_JOURNEY ? "journey" : "touchpoint", "%s", a->mid);
        cr_assert_str_eq(a->tp, ev.touchpoint ? ev.touchpoint : "unknown", "%s", a->mid);
        cr_assert_str_eq(a->segment, ev.segment ? ev.segment : "none", "%s", a->mid);
        cr_assert_str_eq(a->customer, event_key(&ev), "%s", a->mid);
        matched++;
    }
    free(seen);
    return matched;
}

/* --answers: one line per answer counted in truth.sat, summing to it per
 * metric, phase and scope; never a duplicate or invalid message; and
 * writing it leaves the event stream byte for byte as it was. */
Test(gen, answers_file_is_the_satisfaction_truth) {
    static const char *const M[] = {"nps", "csat", "ces"}, *const S[] = {"touchpoint", "journey"};
    gen_opts_t o;
    gen_truth_t t, t0;
    sink_t s, s0;
    char *buf = NULL;
    size_t blen, n;
    gen_defaults(&o);
    o.seed = 11;
    o.customers = 1500;
    o.dup_rate = 0.05;
    o.ooo_rate = 0.05;
    o.anon_rate = 0.3;
    o.invalid_rate = 0.03;
    o.return_rate = 0.3;
    run(&o, &s0, NULL, &t0);
    FILE *af = open_memstream(&buf, &blen);
    s.f = open_memstream(&s.buf, &s.len);
    cr_assert_eq(gen_run(&o, to_mem, &s, NULL, af, &t), 0);
    fclose(s.f);
    fclose(af);
    cr_assert_eq(s.len, s0.len);
    cr_assert(memcmp(s.buf, s0.buf, s.len) == 0, "the answers file changed the events");
    cr_assert_eq(t.messages, t0.messages);

    answer_t *v = read_answers(buf, &n);
    cr_assert_eq(n, t.surveys);
    cr_assert(n > 500 && t.journey_surveys > 100, "%zu answers", n);
    uint64_t cnt[3][GEN_PHASES][2] = {{{0}}}, sum[3][GEN_PHASES][2] = {{{0}}};
    for (size_t i = 0; i < n; i++) {
        int m = index_of(M, 3, v[i].metric), k = index_of(GEN_PHASE_NAMES, GEN_PHASES, v[i].phase),
            sc = index_of(S, 2, v[i].scope);
        cr_assert(m >= 0 && k >= 0 && sc >= 0, "%s", v[i].mid);
        cr_assert(v[i].tp[0] && v[i].segment[0] && v[i].customer[0], "%s", v[i].mid);
        cr_assert(i == 0 || v[i - 1].ts <= v[i].ts, "%s: not in event-time order", v[i].mid);
        cnt[m][k][sc]++;
        sum[m][k][sc] += (uint64_t)v[i].score;
    }
    for (int m = 0; m < 3; m++)
        for (int k = 0; k < GEN_PHASES; k++)
            for (int sc = 0; sc < 2; sc++) {
                cr_assert_eq(cnt[m][k][sc], t.sat[m][k][sc].n, "%s %s %s", M[m], GEN_PHASE_NAMES[k], S[sc]);
                cr_assert_eq(sum[m][k][sc], t.sat[m][k][sc].sum, "%s %s %s", M[m], GEN_PHASE_NAMES[k], S[sc]);
            }
    qsort(v, n, sizeof(*v), by_mid);
    for (size_t i = 1; i < n; i++) cr_assert(strcmp(v[i - 1].mid, v[i].mid) != 0, "message_id %s twice", v[i].mid);
    cr_assert_eq(answers_match_messages(&s, v, n), n);
    free(v);
    free(buf);
    free(s.buf);
    free(s0.buf);
}
