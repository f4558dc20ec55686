/*
 * test_config.c -- configuration loading: the shipped default file, the
 * in-code defaults, every refusal with its exact "file:line: reason", the
 * kafka passthrough, secret redaction and the satisfaction windows.
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
    cr_assert(strstr(d, "\nmetrics:\n  segments_max: 20\n  touchpoints_max: 50\n"
                        "satisfaction:\n  windows: [1h, 1d, 1w, 30d]\n  buckets_per_window: 12\n  min_n: 30\n"
                        "log:\n"), "%s", d);
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
