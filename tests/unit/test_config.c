/*
 * test_config.c -- configuration loading: the shipped default file, the
 * in-code defaults, every refusal with its exact "file:line: reason", the
 * kafka passthrough, secret redaction, the satisfaction windows, the output
 * and http keys and the alert rules.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];
static char err[1024];

static const char *write_tmp(const char *text) {
    snprintf(path, sizeof(path), "/tmp/jd-test-config-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static char *dump(const config_t *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    config_dump(c, m);
    fclose(m);
    return buf;
}

Test(config, shipped_file_equals_the_defaults) {
    config_t *a = config_load(JD_SOURCE_DIR "/config/journeyd.yaml", err, sizeof(err));
    cr_assert(a, "%s", err);
    config_t *b = config_load(write_tmp(""), err, sizeof(err));
    cr_assert(b, "%s", err);
    char *da = dump(a), *db = dump(b);
    cr_assert_str_eq(strchr(da, '\n'), strchr(db, '\n')); /* all but the header line */
    cr_assert_eq(a->n_topics, 1);
    cr_assert_str_eq(a->topics[0], "journeyd.events");
    cr_assert_str_eq(a->group_id, "journeyd");
    cr_assert_str_eq(a->deadletter_topic, "journeyd.deadletter");
    cr_assert_eq(a->redis_port, 16379);
    cr_assert_eq(a->history_max, 50);
    cr_assert_eq(a->allowed_lateness_ms, 300000);
    cr_assert_eq(a->batch_max_ms, 50);
    cr_assert_eq(a->limits.max_message_bytes, 65536);
    cr_assert_eq(a->n_phases, 4);
    cr_assert_str_eq(a->phases[3].name, "loyalty");
    cr_assert_eq(a->phases[0].timeout_ms, 1800000);
    cr_assert_eq(a->phases[3].timeout_ms, 28LL * 86400000);
    cr_assert_eq(a->n_rules, 24);
    cr_assert_eq(a->n_kafka, 1);
    cr_assert_str_eq(a->kafka[0].key, "bootstrap.servers");
    cr_assert_eq(a->n_sat_windows, 4);
    cr_assert_eq(a->sat_windows_ms[3], 2592000000LL);
    cr_assert_eq(a->sat_buckets, 12);
    cr_assert_eq(a->sat_min_n, 30);
    cr_assert_eq(a->n_alerts, 0);
    cr_assert_str_eq(a->metrics_topic, "journeyd.metrics");
    cr_assert_eq(a->http_port, 9464);
    free(da);
    free(db);
    config_free(a);
    config_free(b);
}

typedef struct bad { const char *yaml; const char *msg; } bad_t;

Test(config, refusals_name_file_line_and_reason) {
    static const bad_t cases[] = {
        {"input:\n  topic: [x]\n", "2: unknown key 'input.topic' (did you mean 'input.topics'?)"},
        {"kafak:\n  a: b\n", "1: unknown section 'kafak' (did you mean 'kafka'?)"},
        {"zzz: 1\n", "1: unknown section 'zzz'"},
        {"redis:\n  port: abc\n", "2: redis.port: 'abc' is not an integer"},
        {"redis:\n  port: 70000\n", "2: redis.port: 70000 is out of range 1..65535"},
        {"journey:\n  allowed_lateness: 5 minutes\n",
         "2: journey.allowed_lateness: '5 minutes' is not a duration (e.g. 500ms, 30s, 5m, 2h, 7d, 2w)"},
        {"processing:\n  batch_max_time: 1h\n", "2: processing.batch_max_time: 1h is out of range 1ms..10s"},
        {"redis:\n  port: 1\n  port: 2\n", "3: duplicate key 'port' in redis (first at line 2)"},
        {"input:\n  topics: [a\n", NULL},
        {"log:\n  level: loud\n", "2: log.level: 'loud' is not one of debug, info, warn, error"},
        {"input:\n  topics: [\"bad topic\"]\n", "2: input.topics: 'bad topic' is not a valid topic name"},
        {"input:\n  topics: []\n", "2: input.topics: expected a non-empty list"},
        {"kafka:\n  no.such.property: 1\n", "2: kafka.no.such.property: No such configuration property: \"no.such.property\""},
        {"kafka:\n  group.id: x\n", "2: kafka.group.id is set by journeyd (use input.group_id)"},
        {"phases:\n  - {name: a, timeout: 1m}\n  - {name: b, timeout: 1m}\n",
         "1: phases are given, so rules must be given too (the default rules name the default phases)"},
        {"phases:\n  - {name: a, timeout: 1m}\n  - {name: a, timeout: 1m}\nrules: []\n", "3: duplicate phase 'a'"},
        {"phases:\n  - {name: a, timeout: 1m}\nrules: []\n", "2: phases: between 2 and 16 phases are needed, got 1"},
        {"phases:\n  - {name: A, timeout: 1m}\n  - {name: b, timeout: 1m}\nrules: []\n",
         "2: phases[0]: name must be 1..63 characters of a-z, 0-9, _"},
        {"phases:\n  - {name: a}\n  - {name: b, timeout: 1m}\nrules: []\n", "2: phase 'a': timeout is required"},
        {"rules:\n  - match: {event: x}\n    phase: checkout\n", "3: rule: unknown phase 'checkout'"},
        {"rules:\n  - match: {evnt: x}\n    phase: search\n", "2: unknown key 'rules[].match.evnt' (did you mean 'event'?)"},
        {"rules:\n  - match: {type: click}\n    phase: search\n",
         "2: rule: match.type 'click' is not one of track, page, screen, identify, alias, heartbeat"},
        {"rules:\n  - match: {event: x}\n", "2: rule: needs a phase, a touchpoint or both"},
        {"rules:\n  - phase: search\n", "2: rule: 'match' is required"},
        {"rules:\n  - match: {}\n    phase: search\n", "2: rule: match needs at least one field"},
        {"redis: [1, 2]\n", "1: redis: expected a mapping"},
        {"journey:\n  allowed_lateness: 1h\n",
         "2: journey.allowed_lateness must be shorter than every phase timeout (phase 'search')"},
        {"phases:\n  - {name: a, timeout: 1m}\n  - {name: b, timeout: 1h}\nrules:\n  - match: {event: x}\n    phase: a\n",
         "1: journey.allowed_lateness must be shorter than every phase timeout (phase 'a')"},
        {"metrics:\n  segments_max: 0\n", "2: metrics.segments_max: 0 is out of range 1..1000"},
        {"processing:\n  idle_advance: 2h\n", "2: processing.idle_advance: 2h is out of range 10ms..1h"},
        {"- a\n- b\n", "1: the configuration: expected a mapping"},
        {"satisfaction:\n  window: [1h]\n", "2: unknown key 'satisfaction.window' (did you mean 'satisfaction.windows'?)"},
        {"satisfaction:\n  windows: 1h\n", "2: satisfaction.windows: expected a list"},
        {"satisfaction:\n  windows: [[1h]]\n", "2: satisfaction.windows: expected a list of durations"},
        {"satisfaction:\n  windows: [1h, 5 minutes]\n",
         "2: satisfaction.windows: '5 minutes' is not a duration (e.g. 500ms, 30s, 5m, 2h, 7d, 2w)"},
        {"satisfaction:\n  windows:\n    - 1h\n    - 1d\n    - 2h\n",
         "5: satisfaction.windows: 2h is not longer than the duration before it (the list must be strictly increasing)"},
        {"satisfaction:\n  windows: [1h, 60m]\n",
         "2: satisfaction.windows: 60m is not longer than the duration before it (the list must be strictly increasing)"},
        {"satisfaction:\n  windows: [1m, 2m, 3m, 4m, 5m, 6m, 7m, 8m, 9m]\n",
         "2: satisfaction.windows: at most 8 durations (besides all)"},
        {"satisfaction:\n  windows: [all, 1h, all]\n", "2: satisfaction.windows: all is given twice"},
        {"satisfaction:\n  windows: [30s]\n", "2: satisfaction.windows: 30s is out of range 1m..365d"},
        {"satisfaction:\n  windows: [1h, 366d]\n", "2: satisfaction.windows: 366d is out of range 1m..365d"},
        {"satisfaction:\n  buckets_per_window: 0\n", "2: satisfaction.buckets_per_window: 0 is out of range 1..1000"},
        {"metrics:\n  windows: [1h, 30m]\n",
         "2: metrics.windows: 30m is not longer than the duration before it (the list must be strictly increasing)"},
        {"metrics:\n  windows: [30s]\n", "2: metrics.windows: 30s is out of range 1m..365d"},
        {"metrics:\n  buckets_per_window: 1001\n", "2: metrics.buckets_per_window: 1001 is out of range 1..1000"},
        {"metrics:\n  windows:\n    - 70m\n    - 2h\n  buckets_per_window: 7\n",
         "4: metrics.windows: 2h is not a multiple of 7 ms buckets"},
        {"metrics:\n  buckets_per_window: 7\n", "2: metrics.windows: 1h is not a multiple of 7 ms buckets"},
        {"satisfaction:\n  buckets_per_window: 1001\n",
         "2: satisfaction.buckets_per_window: 1001 is out of range 1..1000"},
        {"satisfaction:\n  min_n: 0\n", "2: satisfaction.min_n: 0 is out of range 1..1000000"},
        {"satisfaction:\n  min_n: many\n", "2: satisfaction.min_n: 'many' is not an integer"},
        /* every window must be a whole number of ms buckets, whatever the key order */
        {"satisfaction:\n  windows:\n    - 13m\n    - 7d\n  buckets_per_window: 13\n",
         "4: satisfaction.windows: 7d is not a multiple of 13 ms buckets"},
        {"satisfaction:\n  buckets_per_window: 13\n  windows:\n    - all\n    - 13m\n    - 7d\n",
         "6: satisfaction.windows: 7d is not a multiple of 13 ms buckets"},
        {"satisfaction:\n  windows: [90001]\n", "2: satisfaction.windows: 90001 is not a multiple of 12 ms buckets"},
        /* the default windows: the line of buckets_per_window */
        {"satisfaction:\n  min_n: 5\n  buckets_per_window: 7\n",
         "3: satisfaction.windows: 1h is not a multiple of 7 ms buckets"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t *c = config_load(write_tmp(cases[i].yaml), err, sizeof(err));
        cr_assert_null(c, "case %zu accepted", i);
        char want[512];
        if (!cases[i].msg) {
            cr_assert(strstr(err, "YAML syntax error"), "case %zu: %s", i, err);
            continue;
        }
        snprintf(want, sizeof(want), "%s:%s", path, cases[i].msg);
        cr_assert_str_eq(err, want, "case %zu: got [%s] want [%s]", i, err, want);
    }
}

Test(config, missing_file) {
    cr_assert_null(config_load("/nonexistent/journeyd.yaml", err, sizeof(err)));
    cr_assert_str_eq(err, "/nonexistent/journeyd.yaml:0: cannot open: No such file or directory");
}

Test(config, values_and_durations) {
    config_t *c = config_load(write_tmp(
        "kafka:\n  bootstrap.servers: \"k:1\"\n  linger.ms: 5\n"
        "input:\n  topics: [a, b.c]\n  encoding: msgpack\n  max_properties: 3\n"
        "redis:\n  unix_socket: /tmp/r.sock\n  command_timeout: 500ms\n"
        "journey:\n  allowed_lateness: 2h\n"
        "phases:\n  - {name: browse, timeout: 3h}\n  - {name: buy, timeout: 2w}\n"
        "rules:\n  - match: {type: page, path_prefix: /cart}\n    phase: buy\n    touchpoint: cart\n"), err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_eq(c->n_topics, 2);
    cr_assert_str_eq(c->topics[1], "b.c");
    cr_assert_eq(c->encoding, DECODE_MSGPACK);
    cr_assert_eq(c->limits.max_properties, 3);
    cr_assert_str_eq(c->redis_unix_socket, "/tmp/r.sock");
    cr_assert_eq(c->redis_command_timeout_ms, 500);
    cr_assert_eq(c->allowed_lateness_ms, 7200000);
    cr_assert_eq(c->phases[0].timeout_ms, 10800000);
    cr_assert_eq(c->phases[1].timeout_ms, 14LL * 86400000);
    cr_assert_eq(c->n_rules, 1);
    cr_assert_eq(c->rules[0].phase, 1);
    cr_assert_eq(c->rules[0].line, 17);
    cr_assert_str_eq(c->rules[0].path_prefix, "/cart");
    cr_assert_eq(c->n_kafka, 2);
    cr_assert_str_eq(c->kafka[0].value, "k:1");
    cr_assert_str_eq(c->kafka[1].key, "linger.ms");
    config_free(c);
}

Test(config, secrets_never_printed) {
    config_t *c = config_load(write_tmp(
        "kafka:\n  sasl.password: hunter2-kafka\n  sasl.username: jd\n"
        "redis:\n  user: jd\n  password: hunter2-redis\n"), err, sizeof(err));
    cr_assert(c, "%s", err);
    char *d = dump(c);
    cr_assert_null(strstr(d, "hunter2"), "%s", d);
    cr_assert(strstr(d, "  sasl.password: \"***\"\n"));
    cr_assert(strstr(d, "  password: \"***\"\n"));
    cr_assert(strstr(d, "  sasl.username: \"jd\"\n"));
    free(d);
    config_free(c);
    cr_assert(config_is_secret("ssl.key.password"));
    cr_assert(config_is_secret("sasl.oauthbearer.client.secret"));
    cr_assert(!config_is_secret("ssl.key.location"));
}

Test(config, durations) {
    int64_t ms;
    cr_assert_eq(config_parse_duration("250", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(config_parse_duration("3d", &ms), 0);
    cr_assert_eq(ms, 3 * 86400000LL);
    cr_assert_eq(config_parse_duration("5 m", &ms), -1);
    cr_assert_eq(config_parse_duration("-5m", &ms), -1);
    cr_assert_eq(config_parse_duration("5y", &ms), -1);
}

Test(config, satisfaction_defaults) {
    config_t *c = config_load(write_tmp("satisfaction:\n"), err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_eq(c->n_sat_windows, 4);
    cr_assert_eq(c->sat_windows_ms[0], 3600000);
    cr_assert_eq(c->sat_windows_ms[1], 86400000);
    cr_assert_eq(c->sat_windows_ms[2], 604800000);
    cr_assert_eq(c->sat_windows_ms[3], 2592000000LL);
    cr_assert_eq(c->sat_buckets, 12);
    cr_assert_eq(c->sat_min_n, 30);
    char *d = dump(c);
    cr_assert_eq(c->n_funnel_windows, 2);
    cr_assert_eq(c->funnel_windows_ms[0], 3600000);
    cr_assert_eq(c->funnel_windows_ms[1], 86400000);
    cr_assert_eq(c->funnel_buckets, 12);
    cr_assert(strstr(d, "\nmetrics:\n  segments_max: 20\n  touchpoints_max: 50\n  windows: [1h, 1d]\n"
                        "  buckets_per_window: 12\n"
                        "satisfaction:\n  windows: [1h, 1d, 1w, 30d]\n  buckets_per_window: 12\n  min_n: 30\n"
                        "  log_max_bytes: 262144\nlog:\n"), "%s", d);
    free(d);
    config_free(c);
}

Test(config, satisfaction_windows_with_all) {
    config_t *c = config_load(write_tmp(
        "satisfaction:\n  windows: [5m, all, 90m, 2w]\n  min_n: 100\n  buckets_per_window: 5\n"), err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_eq(c->n_sat_windows, 3);
    cr_assert_eq(c->sat_windows_ms[0], 300000);
    cr_assert_eq(c->sat_windows_ms[1], 5400000);
    cr_assert_eq(c->sat_windows_ms[2], 1209600000);
    cr_assert_eq(c->sat_buckets, 5);
    cr_assert_eq(c->sat_min_n, 100);
    config_free(c);

    /* 8 finite windows and all, at the bounds */
    c = config_load(write_tmp("satisfaction:\n  windows:\n    - all\n    - 1m\n    - 2m\n    - 3m\n"
                              "    - 4m\n    - 5m\n    - 6m\n    - 7m\n    - 365d\n  buckets_per_window: 1000\n"),
                    err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_eq(c->n_sat_windows, 8);
    cr_assert_eq(c->sat_windows_ms[0], 60000);
    cr_assert_eq(c->sat_windows_ms[7], 365LL * 86400000);
    cr_assert_eq(c->sat_buckets, 1000);
    config_free(c);
}

Test(config, satisfaction_no_finite_window) {
    static const char *const texts[] = {"satisfaction:\n  windows: []\n  buckets_per_window: 7\n",
                                        "satisfaction:\n  windows: [all]\n"};
    for (size_t i = 0; i < 2; i++) {
        config_t *c = config_load(write_tmp(texts[i]), err, sizeof(err));
        cr_assert(c, "case %zu: %s", i, err);
        cr_assert_eq(c->n_sat_windows, 0, "case %zu", i);
        char *d = dump(c);
        cr_assert(strstr(d, "\n  windows: []\n"), "%s", d);
        free(d);
        config_free(c);
    }
}

/* What check-config prints loads back to the same configuration. */
Test(config, satisfaction_dump_round_trips) {
    config_t *a = config_load(write_tmp(
        "satisfaction:\n  windows: [all, 90s, 36h, 2w, 365d]\n  buckets_per_window: 9\n  min_n: 1000000\n"),
        err, sizeof(err));
    cr_assert(a, "%s", err);
    char *da = dump(a);
    cr_assert(strstr(da, "\nsatisfaction:\n  windows: [90s, 36h, 2w, 365d]\n  buckets_per_window: 9\n"
                         "  min_n: 1000000\n"), "%s", da);
    config_t *b = config_load(write_tmp(da), err, sizeof(err));
    cr_assert(b, "%s", err);
    char *db = dump(b);
    cr_assert_str_eq(da, db);
    cr_assert_eq(b->n_sat_windows, 4);
    cr_assert_eq(b->sat_windows_ms[0], 90000);
    cr_assert_eq(b->sat_windows_ms[1], 129600000);
    cr_assert_eq(b->sat_windows_ms[2], 1209600000);
    cr_assert_eq(b->sat_windows_ms[3], 31536000000LL);
    free(da);
    free(db);
    config_free(a);
    config_free(b);
}

/* ---- output, http and alert rules (#6) ---------------------------------------------- */

Test(config, output_and_http) {
    config_t *c = config_load(write_tmp(""), err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_str_eq(c->metrics_topic, "journeyd.metrics");
    cr_assert_str_eq(c->alerts_topic, "journeyd.alerts");
    cr_assert_eq(c->publish_interval_ms, 1000);
    cr_assert_eq(c->output_format, CFG_FORMAT_JSON);
    cr_assert_str_eq(c->http_bind, "127.0.0.1");
    cr_assert_eq(c->http_port, 9464);
    cr_assert_eq(c->n_alerts, 0);
    cr_assert_null(c->alerts);
    config_free(c);
    c = config_load(write_tmp("output:\n  metrics_topic: m\n  alerts_topic: a.b\n  publish_interval: 250ms\n"
                              "  format: msgpack\nhttp:\n  bind: \"::1\"\n  port: 0\nalerts:\n"),
                    err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_str_eq(c->metrics_topic, "m");
    cr_assert_str_eq(c->alerts_topic, "a.b");
    cr_assert_eq(c->publish_interval_ms, 250);
    cr_assert_eq(c->output_format, CFG_FORMAT_MSGPACK);
    cr_assert_str_eq(c->http_bind, "::1");
    cr_assert_eq(c->http_port, 0);
    cr_assert_eq(c->n_alerts, 0);
    char *d = dump(c);
    cr_assert(strstr(d, "\noutput:\n  metrics_topic: \"m\"\n  alerts_topic: \"a.b\"\n  publish_interval: 250ms\n"
                        "  format: msgpack\nhttp:\n  bind: \"::1\"\n  port: 0\nredis:\n"), "%s", d);
    cr_assert(strstr(d, "\nalerts: []\n"), "%s", d);
    free(d);
    config_free(c);
}

static const char ALERTS_YAML[] =
    "alerts:\n"
    "  - name: purchase-dropoff\n"
    "    metric: dropoff_rate\n"
    "    phase: purchase\n"
    "    op: \">\"\n"
    "    threshold: 0.3\n"
    "    resolve: 0.25\n"
    "    for: 10m\n"
    "    min_n: 200\n"
    "    severity: critical\n"
    "    labels: {team: checkout, Tier_2: \"gold\"}\n"
    "    summary: \"{value} of purchases are abandoned (n={n})\"\n"
    "  - name: smb_nps\n"
    "    metric: nps\n"
    "    phase: loyalty\n"
    "    window: 168h\n"
    "    segment: smb\n"
    "    op: \"<=\"\n"
    "    threshold: -10\n"
    "    no_data: resolve\n"
    "  - {name: app-csat, metric: csat, phase: loyalty, window: 30d, touchpoint: service_app, op: \"<\",\n"
    "     threshold: 70, resolve: 75.5, scope: journey}\n";

Test(config, alert_rules_load) {
    config_t *c = config_load(write_tmp(ALERTS_YAML), err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_eq(c->n_alerts, 3);
    const alert_rule_t *a = &c->alerts[0], *b = &c->alerts[1], *t = &c->alerts[2];
    cr_assert_eq(a->line, 2);
    cr_assert_str_eq(a->name, "purchase-dropoff");
    cr_assert_eq(a->metric, ALERT_DROPOFF_RATE);
    cr_assert_eq(a->phase, 2);
    cr_assert_str_eq(a->phase_name, "purchase");
    cr_assert_str_eq(a->window, "all");
    cr_assert_eq(a->by, ALERT_BY_NONE);
    cr_assert_str_eq(a->by_name, "");
    cr_assert_eq(a->op, ALERT_GT);
    cr_assert_eq(a->threshold, 0.3);
    cr_assert_eq(a->resolve, 0.25);
    cr_assert_eq(a->for_ms, 600000);
    cr_assert_eq(a->min_n, 200);
    cr_assert_eq(a->no_data, ALERT_NODATA_KEEP);
    cr_assert_str_eq(a->severity, "critical");
    cr_assert_eq(a->n_labels, 2);
    cr_assert_str_eq(a->labels[0].name, "team");
    cr_assert_str_eq(a->labels[0].value, "checkout");
    cr_assert_str_eq(a->labels[1].name, "Tier_2");
    cr_assert_str_eq(a->labels[1].value, "gold");
    cr_assert_str_eq(a->summary, "{value} of purchases are abandoned (n={n})");

    cr_assert_eq(b->line, 13);
    cr_assert_eq(b->metric, ALERT_NPS);
    cr_assert_eq(b->phase, 3);
    cr_assert_str_eq(b->window, "1w"); /* 168h, as the snapshot names it */
    cr_assert_eq(b->by, ALERT_BY_SEGMENT);
    cr_assert_str_eq(b->by_name, "smb");
    cr_assert_eq(b->op, ALERT_LE);
    cr_assert_eq(b->threshold, -10);
    cr_assert_eq(b->resolve, -10); /* the threshold */
    cr_assert_eq(b->for_ms, 0);
    cr_assert_eq(b->min_n, 1);
    cr_assert_eq(b->no_data, ALERT_NODATA_RESOLVE);
    cr_assert_str_eq(b->severity, "warning");
    cr_assert_eq(b->n_labels, 0);
    cr_assert_null(b->summary);

    cr_assert_eq(t->line, 21);
    cr_assert_str_eq(t->name, "app-csat");
    cr_assert_eq(t->metric, ALERT_CSAT);
    cr_assert_str_eq(t->window, "30d");
    cr_assert_eq(t->by, ALERT_BY_TOUCHPOINT);
    cr_assert_str_eq(t->by_name, "service_app");
    cr_assert_eq(t->op, ALERT_LT);
    cr_assert_eq(t->threshold, 70);
    cr_assert_eq(t->resolve, 75.5);
    cr_assert_eq(t->journey_scope, 1);
    cr_assert_eq(b->journey_scope, 0);
    config_free(c);
}

/* What check-config prints loads back to the same rules. */
Test(config, alert_rules_dump_round_trips) {
    config_t *a = config_load(write_tmp(ALERTS_YAML), err, sizeof(err));
    cr_assert(a, "%s", err);
    char *da = dump(a);
    cr_assert(strstr(da, "\nalerts:\n"
                         "  - name: \"purchase-dropoff\"\n    metric: dropoff_rate\n    phase: purchase\n"
                         "    window: all\n    op: \">\"\n    threshold: 0.3\n    resolve: 0.25\n    for: 10m\n"
                         "    min_n: 200\n    no_data: keep\n    severity: \"critical\"\n"
                         "    labels: {team: \"checkout\", Tier_2: \"gold\"}\n"
                         "    summary: \"{value} of purchases are abandoned (n={n})\"\n"
                         "  - name: \"smb_nps\"\n    metric: nps\n    phase: loyalty\n    window: 1w\n"
                         "    segment: \"smb\"\n    scope: touchpoint\n    op: \"<=\"\n    threshold: -10\n    resolve: -10\n"
                         "    for: 0ms\n    min_n: 1\n    no_data: resolve\n    severity: \"warning\"\n"
                         "    labels: {}\n"
                         "  - name: \"app-csat\"\n"), "%s", da);
    config_t *b = config_load(write_tmp(da), err, sizeof(err));
    cr_assert(b, "%s", err);
    char *db = dump(b);
    cr_assert_str_eq(da, db);
    free(da);
    free(db);
    config_free(a);
    config_free(b);
}

/* A window is checked against the configured ones, wherever they are given. */
Test(config, alert_window_of_the_configured_windows) {
    config_t *c = config_load(write_tmp("alerts:\n  - {name: a, metric: nps, phase: search, window: 5400000,"
                                        " op: \"<\", threshold: 0}\nsatisfaction:\n  windows: [90m, 2w]\n"),
                              err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_str_eq(c->alerts[0].window, "90m");
    config_free(c);
}

/* n rules r0, r1, ... as a config file; caller frees. */
static char *many_alerts(int n) {
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    cr_assert(m);
    fputs("alerts:\n", m);
    for (int i = 0; i < n; i++)
        fprintf(m, "  - {name: r%d, metric: active, phase: search, op: \">\", threshold: 1}\n", i);
    fclose(m);
    return text;
}

Test(config, alert_rules_at_most_256) {
    char *text = many_alerts(256), want[128];
    config_t *c = config_load(write_tmp(text), err, sizeof(err));
    cr_assert(c, "%s", err);
    cr_assert_eq(c->n_alerts, 256);
    cr_assert_str_eq(c->alerts[255].name, "r255");
    config_free(c);
    free(text);
    text = many_alerts(257);
    cr_assert_null(config_load(write_tmp(text), err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:2: alerts: at most 256 rules", path);
    cr_assert_str_eq(err, want);
    free(text);
}

#define RULE "alerts:\n  - name: a\n    metric: nps\n    phase: loyalty\n    op: \"<\"\n    threshold: 20\n"

Test(config, alert_refusals_name_file_line_and_reason) {
    static const bad_t cases[] = {
        {"alerts: {a: b}\n", "1: alerts: expected a list"},
        {"alerts:\n  - [a]\n", "2: alerts[]: expected a mapping"},
        {RULE "    treshold: 2\n", "7: unknown key 'alerts[].treshold' (did you mean 'threshold'?)"},
        {RULE "    labels: x\n", "7: alerts[].labels: expected a mapping"},
        {RULE "    severity: [a]\n", "7: alerts[].severity: expected a single value"},
        {"alerts:\n  - metric: nps\n", "2: alert: 'name' is required"},
        {"alerts:\n  - name: Bad Name\n", "2: alert 'Bad Name': the name must be 1..64 characters of a-z, 0-9, _, -"},
        {"alerts:\n  - name: a\n    phase: loyalty\n", "2: alert 'a': 'metric' is required"},
        {"alerts:\n  - name: a\n    metric: mood\n",
         "3: alert 'a': metric 'mood' is not one of dropoff_rate, conversion, reached, active, progressed, "
         "dropped, completed, nps, csat, ces"},
        {"alerts:\n  - name: a\n    metric: nps\n", "2: alert 'a': 'phase' is required"},
        {"alerts:\n  - name: a\n    metric: nps\n    phase: checkout\n", "4: alert 'a': unknown phase 'checkout'"},
        {RULE "    window: 2h\n",
         "7: alert 'a': window '2h' is not one of the satisfaction windows (1h, 1d, 1w, 30d, all)"},
        {RULE "    window: recent\n",
         "7: alert 'a': window 'recent' is not one of the satisfaction windows (1h, 1d, 1w, 30d, all)"},
        /* the windows are those of the file, also when they come after the rule */
        {"alerts:\n  - {name: a, metric: nps, phase: loyalty, window: 1h, op: \"<\", threshold: 1}\n"
         "satisfaction:\n  windows: [90m]\n",
         "2: alert 'a': window '1h' is not one of the satisfaction windows (90m, all)"},
        {RULE "    segment: smb\n    touchpoint: chat\n", "8: alert 'a': give a segment or a touchpoint, not both"},
        {RULE "    touchpoint: chat\n    segment: smb\n", "8: alert 'a': give a segment or a touchpoint, not both"},
        {"alerts:\n  - {name: a, metric: dropoff_rate, phase: loyalty, window: 1w}\n",
         "2: alert 'a': window '1w' is not one of the funnel (metrics.windows) windows (1h, 1d, all)"},
        {"alerts:\n  - {name: a, metric: dropoff_rate, phase: loyalty, window: 2h}\n"
         "metrics:\n  windows: [30m, 2h]\n",
         "2: alert 'a': 'op' is required"}, /* the funnel windows of the file: 2h is one */
        {"alerts:\n  - {name: a, metric: active, phase: loyalty, window: 1h}\n",
         "2: alert 'a': window: active is the journeys in the phase now (window all only)"},
        {"alerts:\n  - {name: a, metric: dropoff_rate, phase: loyalty, touchpoint: chat}\n",
         "2: alert 'a': touchpoint is only for nps, csat and ces (dropoff_rate is not counted per touchpoint)"},
        {"alerts:\n  - {name: a, metric: dropoff_rate, phase: loyalty, scope: journey}\n",
         "2: alert 'a': scope is only for nps, csat and ces"},
        {"alerts:\n  - {name: a, metric: nps, phase: loyalty, scope: visit}\n",
         "2: alert 'a': scope 'visit' is not one of touchpoint, journey"},
        {"alerts:\n  - {name: a, metric: nps, phase: loyalty, segment: \"\"}\n",
         "2: alert 'a': segment: the name must be 1..63 bytes"},
        {"alerts:\n  - {name: a, metric: nps, phase: loyalty}\n", "2: alert 'a': 'op' is required"},
        {"alerts:\n  - name: a\n    metric: nps\n    phase: loyalty\n    op: =\n",
         "5: alert 'a': op '=' is not one of >, >=, <, <= (quote it: op: \">\")"},
        /* a bare > starts a folded block scalar in YAML, here an empty one */
        {"alerts:\n  - name: a\n    metric: nps\n    phase: loyalty\n    op: >\n    threshold: 1\n",
         "5: alert 'a': op '' is not one of >, >=, <, <= (quote it: op: \">\")"},
        {"alerts:\n  - {name: a, metric: nps, phase: loyalty, op: \"<\"}\n", "2: alert 'a': 'threshold' is required"},
        {"alerts:\n  - name: a\n    metric: nps\n    phase: loyalty\n    op: \"<\"\n    threshold: high\n",
         "6: alert 'a': threshold 'high' is not a number"},
        {"alerts:\n  - {name: a, metric: nps, phase: loyalty, op: \"<\", threshold: nan}\n",
         "2: alert 'a': threshold 'nan' is not a number"},
        {"alerts:\n  - {name: a, metric: nps, phase: loyalty, op: \"<\", threshold: 1e999}\n",
         "2: alert 'a': threshold '1e999' is not a number"},
        {RULE "    resolve: 20%\n", "7: alert 'a': resolve '20%' is not a number"},
        {RULE "    resolve: 15\n", "7: alert 'a': resolve 15 is on the firing side of < 20"},
        {"alerts:\n  - name: a\n    metric: dropoff_rate\n    phase: loyalty\n    op: \">\"\n    threshold: 0.30\n"
         "    resolve: 0.35\n",
         "7: alert 'a': resolve 0.35 is on the firing side of > 0.30"},
        {RULE "    for: soon\n", "7: alert 'a': for 'soon' is not a duration of 0..365d (e.g. 30s, 5m, 2h)"},
        {RULE "    for: 366d\n", "7: alert 'a': for '366d' is not a duration of 0..365d (e.g. 30s, 5m, 2h)"},
        {RULE "    min_n: 0\n", "7: alert 'a': min_n '0' is not an integer of 1..1000000000"},
        {RULE "    min_n: lots\n", "7: alert 'a': min_n 'lots' is not an integer of 1..1000000000"},
        {RULE "    no_data: drop\n", "7: alert 'a': no_data 'drop' is not one of keep, resolve"},
        {RULE "    severity: \"\"\n", "7: alert 'a': severity must be 1..64 bytes"},
        {RULE "    labels:\n      team: x\n      team-x: y\n",
         "9: alert 'a': label 'team-x': the name must be 1..255 characters matching [a-zA-Z_][a-zA-Z0-9_]*"},
        {RULE "    labels: {2fa: y}\n",
         "7: alert 'a': label '2fa': the name must be 1..255 characters matching [a-zA-Z_][a-zA-Z0-9_]*"},
        {RULE "    labels: {severity: page}\n", "7: alert 'a': label 'severity' is set by journeyd"},
        {RULE "    labels: {alertname: b}\n", "7: alert 'a': label 'alertname' is set by journeyd"},
        {RULE "    labels: {team: [a, b]}\n",
         "7: alert 'a': label 'team': the value must be a string of at most 255 bytes"},
        {RULE "    labels: {team: a, team: b}\n", "7: duplicate key 'team' in alerts[].labels (first at line 7)"},
        {RULE "    labels: {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1, j: 1, k: 1, l: 1, m: 1, n: 1,"
              " o: 1, p: 1, q: 1}\n",
         "7: alert 'a': at most 16 labels"},
        {RULE "    summary: \"{vaule} is low\"\n",
         "7: alert 'a': summary: unknown placeholder '{vaule}' (known: {rule}, {metric}, {op}, {phase}, {window}, "
         "{segment}, {touchpoint}, {value}, {threshold}, {resolve}, {n})"},
        {RULE "  - {name: b, metric: csat, phase: search, op: \"<\", threshold: 1}\n"
              "  - {name: a, metric: ces, phase: search, op: \">\", threshold: 1}\n",
         "8: alert 'a': duplicate name (first at line 2)"},
        {"output:\n  format: xml\n", "2: output.format: 'xml' is not one of json, msgpack"},
        {"output:\n  publish_interval: 5ms\n", "2: output.publish_interval: 5ms is out of range 10ms..1h"},
        {"output:\n  metrics_topic: \"\"\n", "2: output.metrics_topic: length must be 1..249 bytes"},
        {"http:\n  port: 70000\n", "2: http.port: 70000 is out of range 0..65535"},
        {"http:\n  bnd: 0.0.0.0\n", "2: unknown key 'http.bnd' (did you mean 'http.bind'?)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t *c = config_load(write_tmp(cases[i].yaml), err, sizeof(err));
        cr_assert_null(c, "case %zu accepted", i);
        char want[512];
        snprintf(want, sizeof(want), "%s:%s", path, cases[i].msg);
        cr_assert_str_eq(err, want, "case %zu: got [%s] want [%s]", i, err, want);
    }
}
