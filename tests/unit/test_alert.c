/*
 * test_alert.c -- alert rules: normal -> pending -> firing -> resolved with
 * for, hysteresis and no flapping, min_n and no data (keep and resolve),
 * every comparison, the episode id through a simulated restart (the state
 * encoded and decoded), the state's string form and its refusals, and the
 * JSON message byte for byte (tests/data/alerts/, which schema_check.py
 * validates against schemas/alert.schema.json).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"

#define T0 1767607200000LL /* 2026-01-05T10:00:00.000Z */
#define MIN 60000LL

static alert_rule_t rule(alert_op_t op, double threshold, double resolve, int64_t for_ms) {
    alert_rule_t r;
    memset(&r, 0, sizeof(r));
    snprintf(r.name, sizeof(r.name), "purchase-dropoff");
    r.metric = ALERT_DROPOFF_RATE;
    r.phase = 2;
    snprintf(r.phase_name, sizeof(r.phase_name), "purchase");
    snprintf(r.window, sizeof(r.window), "1d");
    r.op = op;
    r.threshold = threshold;
    r.resolve = resolve;
    r.for_ms = for_ms;
    r.min_n = 1;
    snprintf(r.severity, sizeof(r.severity), "critical");
    return r;
}

/* Evaluate values[i] (n = 100 each) at T0 + i minutes. Into sent: per step
 * F (firing sent), R (resolved sent) or '-'; into states: per step the state
 * after it, N, P or F. */
static void run(const alert_rule_t *r, alert_state_t *s, const double *values, int count, char *sent,
                char *states) {
    for (int i = 0; i < count; i++) {
        alert_msg_t m;
        int rc = alert_eval(r, s, 1, values[i], 100, T0 + i * MIN, &m);
        sent[i] = rc ? (m.firing ? 'F' : 'R') : '-';
        states[i] = "NPF"[s->status];
    }
    sent[count] = states[count] = '\0';
}

#define RUN(r, s, ...)                                                                             \
    do {                                                                                           \
        static const double v_[] = {__VA_ARGS__};                                                  \
        run(r, s, v_, (int)(sizeof(v_) / sizeof(v_[0])), sent, states);                            \
    } while (0)

Test(alert, jump_then_recover_fires_once_and_resolves_once) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.25, 2 * MIN);
    alert_state_t s = {0};
    char sent[32], states[32];
    RUN(&r, &s, 0.10, 0.35, 0.40, 0.45, 0.32, 0.28, 0.26, 0.20, 0.10);
    cr_assert_str_eq(sent, "---F---R-");
    cr_assert_str_eq(states, "NPPFFFFNN");
}

Test(alert, firing_and_resolved_messages_carry_the_episode) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.25, 2 * MIN);
    alert_state_t s = {0};
    alert_msg_t m;
    cr_assert_eq(alert_eval(&r, &s, 1, 0.35, 120, T0, &m), 0);
    cr_assert_eq(s.status, ALERT_PENDING);
    cr_assert_eq(s.since_ms, T0);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.36, 130, T0 + MIN, &m), 0);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.375, 140, T0 + 2 * MIN, &m), 1);
    cr_assert_eq(m.rule, &r);
    cr_assert_eq(m.firing, 1);
    cr_assert_eq(m.have_value, 1);
    cr_assert_eq(m.value, 0.375);
    cr_assert_eq(m.n, 140);
    cr_assert_eq(m.starts_ms, T0 + 2 * MIN);
    cr_assert_eq(m.ends_ms, 0);
    cr_assert_str_eq(m.id, "754aa5769053e2ae");
    cr_assert_eq(s.status, ALERT_FIRING);
    cr_assert_eq(s.since_ms, T0);
    cr_assert_eq(s.starts_ms, T0 + 2 * MIN);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.2, 150, T0 + 9 * MIN, &m), 1);
    cr_assert_eq(m.firing, 0);
    cr_assert_eq(m.value, 0.2);
    cr_assert_eq(m.n, 150);
    cr_assert_eq(m.starts_ms, T0 + 2 * MIN);
    cr_assert_eq(m.ends_ms, T0 + 9 * MIN);
    cr_assert_str_eq(m.id, "754aa5769053e2ae");
    cr_assert_eq(s.status, ALERT_NORMAL);
    cr_assert_eq(s.since_ms, 0);
    cr_assert_eq(s.starts_ms, 0);
    cr_assert_eq(s.value, 0.2);
    cr_assert_eq(s.n, 150);
}

Test(alert, a_value_hovering_between_resolve_and_threshold_sends_nothing) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.25, 0);
    alert_state_t s = {0};
    char sent[32], states[32];
    /* normal: at or under the threshold never fires */
    RUN(&r, &s, 0.26, 0.29, 0.30, 0.25, 0.30, 0.27);
    cr_assert_str_eq(sent, "------");
    cr_assert_str_eq(states, "NNNNNN");
    /* firing: at or over the resolve threshold never resolves */
    RUN(&r, &s, 0.31, 0.29, 0.30, 0.26, 0.31, 0.25, 0.30, 0.25, 0.2499, 0.29, 0.30, 0.301);
    cr_assert_str_eq(sent, "F-------R--F");
    cr_assert_str_eq(states, "FFFFFFFFNNNF");
}

Test(alert, pending_that_stops_holding_goes_back_to_normal_silently) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.25, 5 * MIN);
    alert_state_t s = {0};
    char sent[32], states[32];
    /* 0.29 at minute 2 ends the first pending; the second one starts at minute 3 */
    RUN(&r, &s, 0.35, 0.36, 0.29, 0.35, 0.35, 0.35, 0.35, 0.35, 0.35);
    cr_assert_str_eq(sent, "--------F");
    cr_assert_str_eq(states, "PPNPPPPPF");
    /* a value in the hysteresis band also ends a pending one (only firing ones stay) */
    alert_state_t p = {0};
    RUN(&r, &p, 0.35, 0.27, 0.35);
    cr_assert_str_eq(sent, "---");
    cr_assert_str_eq(states, "PNP");
}

Test(alert, for_zero_fires_at_the_first_evaluation_that_holds) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.30, 0);
    alert_state_t s = {0};
    char sent[32], states[32];
    RUN(&r, &s, 0.1, 0.5, 0.3, 0.29);
    cr_assert_str_eq(sent, "-F-R");
    cr_assert_str_eq(states, "NFFN");
}

Test(alert, every_op) {
    static const struct {
        alert_op_t op;
        double threshold, resolve, v[4];
        const char *sent;
    } cases[] = {
        {ALERT_GT, 10, 8, {10, 10.5, 8, 7.9}, "-F-R"},
        {ALERT_GE, 10, 8, {9.99, 10, 8, 7.99}, "-F-R"},
        {ALERT_LT, 10, 12, {10, 9.5, 12, 12.1}, "-F-R"},
        {ALERT_LE, 10, 12, {10.01, 10, 12, 12.5}, "-F-R"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        alert_rule_t r = rule(cases[i].op, cases[i].threshold, cases[i].resolve, 0);
        alert_state_t s = {0};
        char sent[8], states[8];
        run(&r, &s, cases[i].v, 4, sent, states);
        cr_assert_str_eq(sent, cases[i].sent, "op %s", alert_op_names[cases[i].op]);
    }
}

Test(alert, resolve_is_never_on_the_firing_side) {
    cr_assert(alert_resolve_ok(ALERT_GT, 0.30, 0.25));
    cr_assert(alert_resolve_ok(ALERT_GT, 0.30, 0.30));
    cr_assert(!alert_resolve_ok(ALERT_GT, 0.30, 0.35));
    cr_assert(!alert_resolve_ok(ALERT_GE, 0.30, 0.31));
    cr_assert(alert_resolve_ok(ALERT_LT, 20, 25));
    cr_assert(!alert_resolve_ok(ALERT_LT, 20, 15));
    cr_assert(!alert_resolve_ok(ALERT_LE, 20, 19.9));
    cr_assert(alert_resolve_ok(ALERT_LE, 20, 20));
}

Test(alert, no_data_keep) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.25, 0);
    alert_state_t s = {0};
    alert_msg_t m;
    r.min_n = 100;
    cr_assert_eq(alert_eval(&r, &s, 1, 0.9, 99, T0, &m), 0); /* too few samples: nothing known */
    cr_assert_eq(s.status, ALERT_NORMAL);
    cr_assert_eq(s.n, 0);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.4, 100, T0 + MIN, &m), 1);
    cr_assert_eq(m.firing, 1);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.1, 50, T0 + 2 * MIN, &m), 0);
    cr_assert_eq(alert_eval(&r, &s, 0, 0, 0, T0 + 3 * MIN, &m), 0);
    cr_assert_eq(alert_eval(&r, &s, 1, NAN, 500, T0 + 4 * MIN, &m), 0);
    cr_assert_eq(s.status, ALERT_FIRING);
    cr_assert_eq(s.value, 0.4); /* the last value with data */
    cr_assert_eq(s.n, 100);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.1, 100, T0 + 5 * MIN, &m), 1);
    cr_assert_eq(m.firing, 0);
    cr_assert_eq(m.starts_ms, T0 + MIN);
    cr_assert_eq(m.ends_ms, T0 + 5 * MIN);

    /* a pending alert without data goes back to normal, with either setting */
    for (int nd = 0; nd < 2; nd++) {
        alert_state_t p = {0};
        r.for_ms = 10 * MIN;
        r.no_data = (alert_nodata_t)nd;
        cr_assert_eq(alert_eval(&r, &p, 1, 0.4, 100, T0, &m), 0);
        cr_assert_eq(p.status, ALERT_PENDING);
        cr_assert_eq(alert_eval(&r, &p, 1, 0.4, 10, T0 + MIN, &m), 0);
        cr_assert_eq(p.status, ALERT_NORMAL);
        cr_assert_eq(p.since_ms, 0);
    }
}

Test(alert, no_data_resolve) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.25, 0);
    alert_state_t s = {0};
    alert_msg_t m;
    r.min_n = 100;
    r.no_data = ALERT_NODATA_RESOLVE;
    cr_assert_eq(alert_eval(&r, &s, 1, 0.4, 100, T0, &m), 1);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.4, 99, T0 + MIN, &m), 1);
    cr_assert_eq(m.firing, 0);
    cr_assert_eq(m.have_value, 0);
    cr_assert_eq(m.value, 0);
    cr_assert_eq(m.n, 99);
    cr_assert_eq(m.starts_ms, T0);
    cr_assert_eq(m.ends_ms, T0 + MIN);
    cr_assert_eq(s.status, ALERT_NORMAL);
    /* no series at all: n is 0 whatever is passed */
    cr_assert_eq(alert_eval(&r, &s, 1, 0.4, 100, T0 + 2 * MIN, &m), 1);
    cr_assert_eq(alert_eval(&r, &s, 0, 0.4, 7, T0 + 3 * MIN, &m), 1);
    cr_assert_eq(m.have_value, 0);
    cr_assert_eq(m.n, 0);
    /* nothing further while there is no data */
    cr_assert_eq(alert_eval(&r, &s, 0, 0, 0, T0 + 4 * MIN, &m), 0);
}

/* A restart between firing and resolving: the state goes through its
 * string, and the resolved message (and a re-sent firing one) carry the id
 * of the firing message. */
Test(alert, id_survives_a_restart) {
    alert_rule_t r = rule(ALERT_GT, 0.30, 0.25, MIN);
    alert_state_t s = {0}, back;
    alert_msg_t fired, resolved;
    char text[ALERT_STATE_MAX];
    r.by = ALERT_BY_SEGMENT;
    snprintf(r.by_name, sizeof(r.by_name), "smb");
    cr_assert_eq(alert_eval(&r, &s, 1, 0.35, 200, T0, &fired), 0);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.35, 200, T0 + 2 * MIN, &fired), 1);
    cr_assert_str_eq(fired.id, "7b9a8cf928c03861");
    cr_assert_eq(alert_state_encode(&s, text, sizeof(text)), 0);
    cr_assert_str_eq(text, "1:F:1767607200000:1767607320000:0.35:200");
    cr_assert_eq(alert_state_decode(text, &back), 0);
    cr_assert_eq(memcmp(&back, &s, sizeof(s)), 0);
    char again[ALERT_ID_LEN + 1];
    alert_id(&r, back.starts_ms, again);
    cr_assert_str_eq(again, fired.id);
    cr_assert_eq(alert_eval(&r, &back, 1, 0.31, 200, T0 + 3 * MIN, &resolved), 0); /* still firing */
    cr_assert_eq(alert_eval(&r, &back, 1, 0.1, 200, T0 + 4 * MIN, &resolved), 1);
    cr_assert_eq(resolved.firing, 0);
    cr_assert_str_eq(resolved.id, fired.id);
    cr_assert_eq(resolved.starts_ms, fired.starts_ms);

    /* the next episode, or another breakdown, has another id */
    alert_id(&r, T0 + 10 * MIN, again);
    cr_assert_str_neq(again, fired.id);
    snprintf(r.by_name, sizeof(r.by_name), "enterprise");
    alert_id(&r, fired.starts_ms, again);
    cr_assert_str_neq(again, fired.id);
    r.by = ALERT_BY_NONE;
    r.by_name[0] = '\0';
    alert_id(&r, fired.starts_ms, again);
    cr_assert_str_eq(again, "754aa5769053e2ae");
}

Test(alert, state_strings_round_trip) {
    static const alert_state_t states[] = {
        {ALERT_NORMAL, 0, 0, 0, 0},
        {ALERT_NORMAL, 0, 0, -12.5, 3},
        {ALERT_PENDING, 1767607200000, 0, 0.30000000000000004, 42},
        {ALERT_FIRING, 5, 5, 1e-300, INT64_MAX},
    };
    static const char *const texts[] = {
        "1:N:0:0:0:0",
        "1:N:0:0:-12.5:3",
        "1:P:1767607200000:0:0.30000000000000004:42",
        "1:F:5:5:1e-300:9223372036854775807",
    };
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        char text[ALERT_STATE_MAX];
        alert_state_t back;
        cr_assert_eq(alert_state_encode(&states[i], text, sizeof(text)), 0);
        cr_assert_str_eq(text, texts[i]);
        cr_assert_eq(alert_state_decode(text, &back), 0, "%s", text);
        cr_assert_eq(memcmp(&back, &states[i], sizeof(back)), 0, "%s", text);
    }
    char small[8];
    cr_assert_eq(alert_state_encode(&states[2], small, sizeof(small)), -1);
    /* the longest state fits in ALERT_STATE_MAX */
    alert_state_t big = {ALERT_FIRING, INT64_MAX, INT64_MAX, -1.2345678901234567e-300, INT64_MAX};
    char text[ALERT_STATE_MAX];
    cr_assert_eq(alert_state_encode(&big, text, sizeof(text)), 0);
}

Test(alert, malformed_state_strings_are_refused) {
    static const char *const bad[] = {
        "", "1", "1:", "1:N", "1:N:", "1:X:0:0:0:0", "2:N:0:0:0:0", "N:0:0:0:0", "1:N:0:0:0",
        "1:N:0:0:0:0:", "1:N:0:0:0:0 ", " 1:N:0:0:0:0", "1:N: 0:0:0:0", "1:N:+0:0:0:0", "1:N:0:0::0",
        "1:N:0:0:0:", "1:N:-1:0:0:0", "1:N:0:0:0:-1", "1:N:0:0:0:1.5", "1:N:0:0:0x:0",
        "1:N:0:0:0:99999999999999999999", "1:F:0:0:nan:0", "1:F:0:0:inf:0", "1:F:0:0:-inf:0",
        "1:F:0:0:1e999:0",
        /* well formed, but not a state alert_eval() can leave */
        "1:N:5:0:0:0", "1:N:0:5:0:0", "1:P:5:6:0:0", "1:F:7:6:0:0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        alert_state_t s = {ALERT_PENDING, 11, 0, 0.5, 7};
        cr_assert_eq(alert_state_decode(bad[i], &s), -1, "accepted '%s'", bad[i]);
        cr_assert(s.status == ALERT_PENDING && s.since_ms == 11 && s.value == 0.5 && s.n == 7,
                  "'%s' changed the state", bad[i]);
    }
}

Test(alert, numbers_read_back_exactly) {
    static const double v[] = {0.3, 0.1 + 0.2, 1200, -10, 75.5, 1e21, 2.0 / 3};
    static const char *const want[] = {"0.3", "0.30000000000000004", "1200", "-10", "75.5", "1e+21",
                                       "0.6666666666666666"};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char buf[32];
        alert_format_number(v[i], buf, sizeof(buf));
        cr_assert_str_eq(buf, want[i]);
        cr_assert_eq(strtod(buf, NULL), v[i]);
    }
}

Test(alert, label_names_and_summaries) {
    char why[512];
    cr_assert_eq(alert_label_check("team", why, sizeof(why)), 0);
    cr_assert_eq(alert_label_check("_Tier2", why, sizeof(why)), 0);
    cr_assert_eq(alert_label_check("2fa", why, sizeof(why)), -1);
    cr_assert_str_eq(why, "label '2fa': the name must be 1..255 characters matching [a-zA-Z_][a-zA-Z0-9_]*");
    cr_assert_eq(alert_label_check("", why, sizeof(why)), -1);
    cr_assert_eq(alert_label_check("window", why, sizeof(why)), -1);
    cr_assert_str_eq(why, "label 'window' is set by journeyd");
    cr_assert_eq(alert_summary_check("{value} > {threshold} {x (literal braces) {}", why, sizeof(why)), 0);
    cr_assert_eq(alert_summary_check("{n} {Rule}", why, sizeof(why)), 0); /* {Rule} is no placeholder */
    cr_assert_eq(alert_summary_check("{segmnt}", why, sizeof(why)), -1);
    char *big = malloc(ALERT_SUMMARY_MAX + 2);
    memset(big, 'x', ALERT_SUMMARY_MAX + 1);
    big[ALERT_SUMMARY_MAX + 1] = '\0';
    cr_assert_eq(alert_summary_check(big, why, sizeof(why)), -1);
    cr_assert_str_eq(why, "summary: longer than 512 bytes");
    big[ALERT_SUMMARY_MAX] = '\0';
    cr_assert_eq(alert_summary_check(big, why, sizeof(why)), 0);
    free(big);
}

/* ---- the JSON document ------------------------------------------------------------- */

static char *json_of(const alert_msg_t *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    alert_msg_json(m, f);
    fclose(f);
    return buf;
}

/* The sample tests/data/alerts/<name>, without its final newline; caller frees. */
static char *sample(const char *name) {
    char p[512], *buf = NULL;
    size_t cap = 0;
    snprintf(p, sizeof(p), "%s/tests/data/alerts/%s", JD_SOURCE_DIR, name);
    FILE *f = fopen(p, "r");
    cr_assert(f, "%s", p);
    ssize_t n = getline(&buf, &cap, f);
    fclose(f);
    cr_assert(n > 1 && buf[n - 1] == '\n', "%s", p);
    buf[n - 1] = '\0';
    return buf;
}

static void assert_json(const alert_msg_t *m, const char *name) {
    char *got = json_of(m), *want = sample(name);
    cr_assert_str_eq(got, want, "%s:\n got %s\nwant %s", name, got, want);
    free(got);
    free(want);
}

Test(alert, json_firing_and_resolved) {
    alert_rule_t r = rule(ALERT_GT, 0.3, 0.25, 2 * MIN);
    alert_state_t s = {0};
    alert_msg_t m;
    r.by = ALERT_BY_SEGMENT;
    snprintf(r.by_name, sizeof(r.by_name), "smb");
    r.min_n = 100;
    r.labels[0] = (alert_label_t){"team", "checkout \"EU\""};
    r.labels[1] = (alert_label_t){"owner", "Jos\xc3\xa9\t\x01"};
    r.n_labels = 2;
    r.summary = "{rule}: {value} of {phase} journeys in {segment}{touchpoint} dropped off over {window} "
                "(n={n}, {op} {threshold}, resolves under {resolve}) {} {Value}";
    cr_assert_eq(alert_eval(&r, &s, 1, 0.35, 200, T0, &m), 0);
    cr_assert_eq(alert_eval(&r, &s, 1, 0.4125, 240, T0 + 2 * MIN, &m), 1);
    assert_json(&m, "firing.json");
    cr_assert_eq(alert_eval(&r, &s, 1, 0.2, 260, T0 + 30 * MIN + 1, &m), 1);
    assert_json(&m, "resolved.json");
}

Test(alert, json_resolved_without_data_and_the_default_summary) {
    alert_rule_t r = rule(ALERT_LT, 20, 25, 0);
    alert_state_t s = {0};
    alert_msg_t m;
    snprintf(r.name, sizeof(r.name), "app-nps");
    r.metric = ALERT_NPS;
    r.phase = 3;
    snprintf(r.phase_name, sizeof(r.phase_name), "loyalty");
    snprintf(r.window, sizeof(r.window), "1w");
    r.by = ALERT_BY_TOUCHPOINT;
    snprintf(r.by_name, sizeof(r.by_name), "service_app");
    snprintf(r.severity, sizeof(r.severity), "warning");
    r.min_n = 30;
    r.no_data = ALERT_NODATA_RESOLVE;
    cr_assert_eq(alert_eval(&r, &s, 1, -12.5, 40, T0, &m), 1);
    assert_json(&m, "firing_default_summary.json");
    cr_assert_eq(alert_eval(&r, &s, 1, 3, 29, T0 + 60 * MIN, &m), 1);
    assert_json(&m, "resolved_no_data.json");
}

/* A rule on journey-scope answers says so in its labels (a touchpoint-scope
 * one, the default, carries no scope label, as before); "scope" is not a
 * free label. */
Test(alert, journey_scope_is_a_label) {
    char why[256], *buf = NULL;
    size_t len = 0;
    alert_rule_t r = rule(ALERT_LT, 20, 25, 0);
    alert_state_t s = {0};
    alert_msg_t m;
    snprintf(r.name, sizeof(r.name), "journey-nps");
    r.metric = ALERT_NPS;
    snprintf(r.phase_name, sizeof(r.phase_name), "loyalty");
    snprintf(r.window, sizeof(r.window), "1w");
    snprintf(r.severity, sizeof(r.severity), "warning");
    r.journey_scope = 1;
    cr_assert_eq(alert_eval(&r, &s, 1, -12.5, 40, T0, &m), 1);
    FILE *f = open_memstream(&buf, &len);
    alert_msg_json(&m, f);
    fclose(f);
    const char *want = "{\"alertname\":\"journey-nps\",\"metric\":\"nps\",\"phase\":\"loyalty\","
                       "\"window\":\"1w\",\"severity\":\"warning\",\"scope\":\"journey\"}";
    const char *common = strstr(buf, "\"commonLabels\":"), *labels = strstr(buf, "\"labels\":");
    cr_assert(common && labels, "%s", buf);
    cr_assert(!strncmp(common + strlen("\"commonLabels\":"), want, strlen(want)), "%s", buf);
    cr_assert(!strncmp(labels + strlen("\"labels\":"), want, strlen(want)), "%s", buf);
    free(buf);
    cr_assert_eq(alert_label_check("scope", why, sizeof(why)), -1);
    cr_assert_str_eq(why, "label 'scope' is set by journeyd");
}
