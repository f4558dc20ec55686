/*
 * config.c -- loads and validates journeyd's YAML configuration.
 *
 * libyaml parses the file into a small tree of nodes that remember their
 * line; the tree is then checked against the table of keys below (name,
 * type, default, bounds, description), the kafka.* passthrough, the phases,
 * the classification rules and the alert rules (alert.h); checks across keys
 * (allowed_lateness against the phase timeouts, satisfaction windows against
 * buckets_per_window, the phases and windows alert rules name) run once the
 * whole file is loaded. Every error is reported as
 * "file:line: reason" and nothing starts until the whole file is valid.
 * Missing keys take their defaults; the in-code defaults describe the same
 * model as the shipped config/journeyd.yaml (a unit test holds them equal).
 *
 * Owns: the returned config_t and every string in it (config_free()).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "log.h"
#include "text.h"

/* ---- the document tree ----------------------------------------------------- */

typedef enum { N_SCALAR, N_MAP, N_SEQ } ntype_t;

typedef struct node {
    ntype_t type;
    int line;
    char *value;            /* N_SCALAR */
    int quoted;             /* scalar was quoted: never a number */
    struct node **kids;     /* N_MAP: key, value, key, value...; N_SEQ: items */
    int n, cap;
} node_t;

#define MAX_NODES 100000    /* a configuration file is small; refuse monsters */

typedef struct loader {
    const char *path;
    char *err;
    size_t errlen;
    int nodes;
} loader_t;

static int fail(loader_t *L, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(loader_t *L, int line, const char *fmt, ...) {
    va_list ap;
    int n = snprintf(L->err, L->errlen, "%s:%d: ", L->path, line);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < L->errlen) vsnprintf(L->err + n, L->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void node_free(node_t *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) node_free(n->kids[i]);
    free(n->kids);
    free(n->value);
    free(n);
}

static node_t *node_new(loader_t *L, ntype_t t, int line) {
    if (++L->nodes > MAX_NODES) return NULL;
    node_t *n = calloc(1, sizeof(*n));
    if (n) {
        n->type = t;
        n->line = line;
    }
    return n;
}

static int node_add(node_t *parent, node_t *kid) {
    if (parent->n == parent->cap) {
        int ncap = parent->cap ? parent->cap * 2 : 8;
        node_t **k = realloc(parent->kids, (size_t)ncap * sizeof(*k));
        if (!k) return -1;
        parent->kids = k;
        parent->cap = ncap;
    }
    parent->kids[parent->n++] = kid;
    return 0;
}

static node_t *parse_node(loader_t *L, yaml_parser_t *p, yaml_event_t *ev);

/* Parse the children of a mapping or sequence until its end event. */
static int parse_children(loader_t *L, yaml_parser_t *p, node_t *n, yaml_event_type_t end) {
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev))
            return fail(L, (int)p->problem_mark.line + 1, "YAML syntax error: %s", p->problem);
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        node_t *kid = parse_node(L, p, &ev);
        yaml_event_delete(&ev);
        if (!kid) return -1;
        if (node_add(n, kid) < 0) {
            node_free(kid);
            return fail(L, n->line, "out of memory");
        }
    }
}

static node_t *parse_node(loader_t *L, yaml_parser_t *p, yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1;
    node_t *n = NULL;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (!(n = node_new(L, N_SCALAR, line))) break;
        n->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (!n->value) break;
        return n;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        int map = ev->type == YAML_MAPPING_START_EVENT;
        if (!(n = node_new(L, map ? N_MAP : N_SEQ, line))) break;
        if (parse_children(L, p, n, map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT) < 0) {
            node_free(n);
            return NULL;
        }
        return n;
    }
    case YAML_ALIAS_EVENT:
        fail(L, line, "YAML aliases are not supported");
        return NULL;
    default:
        fail(L, line, "unexpected YAML event");
        return NULL;
    }
    node_free(n);
    fail(L, line, "out of memory or too many YAML nodes (limit %d)", MAX_NODES);
    return NULL;
}

/* Parse the whole file into one tree (an empty file is an empty map). */
static node_t *parse_file(loader_t *L, FILE *f) {
    yaml_parser_t p;
    yaml_event_t ev;
    node_t *root = NULL;
    if (!yaml_parser_initialize(&p)) {
        fail(L, 0, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_file(&p, f);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            fail(L, (int)p.problem_mark.line + 1, "YAML syntax error: %s", p.problem);
            node_free(root);
            root = NULL;
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_SCALAR_EVENT || t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
            if (root) {
                fail(L, (int)ev.start_mark.line + 1, "only one YAML document is allowed");
                yaml_event_delete(&ev);
                node_free(root);
                root = NULL;
                break;
            }
            root = parse_node(L, &p, &ev);
            if (!root) {
                yaml_event_delete(&ev);
                break;
            }
        }
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT) {
            if (!root) root = node_new(L, N_MAP, 1);
            break;
        }
    }
    yaml_parser_delete(&p);
    return root;
}

/* ---- the key table ------------------------------------------------------------ */

/* T_LIST: input.topics (set_topics()). T_DURLIST: a list of strictly
 * increasing durations stored as int64_t ms at off, their number as an int at
 * n_off, at most max_n of them; the entry `all` (the unbounded duration, always
 * implied) is accepted and skipped. */
typedef enum { T_STR, T_INT, T_DUR, T_ENUM, T_LIST, T_DURLIST } ktype_t;

typedef struct key {
    const char *name;       /* dotted: section.key */
    ktype_t type;
    size_t off;             /* offset in config_t */
    const char *def;        /* default, as it would be written in the file (T_DURLIST: "a, b") */
    int64_t min, max;       /* T_INT, T_DUR, T_DURLIST (ms, each item) bounds; T_STR max length */
    const char *const *choices; /* T_ENUM: value i stored as int i */
    int secret;
    size_t n_off;           /* T_DURLIST: offset of the int count */
    int max_n;              /* T_DURLIST: most items */
} key_t_;

static const char *const ENCODINGS[] = {"auto", "json", "msgpack", NULL};
static const char *const LEVELS[] = {"debug", "info", "warn", "error", NULL};
static const char *const FORMATS[] = {"json", "msgpack", NULL}; /* by cfg_format_t */
/* by cfg_partitioner_t; for a non-empty key each *_random one is the plain one */
static const char *const PARTITIONERS[] = {"none", "consistent_random", "consistent", "murmur2_random", "murmur2",
                                           "fnv1a_random", "fnv1a", NULL};

#define OFF(f) offsetof(config_t, f)
#define LIM(f) (offsetof(config_t, limits) + offsetof(decode_limits_t, f))
static const key_t_ KEYS[] = {
    {"input.topics", T_LIST, OFF(topics), "journeyd.events", 1, 249, NULL, 0, 0, 0},
    {"input.group_id", T_STR, OFF(group_id), "journeyd", 1, 255, NULL, 0, 0, 0},
    {"input.encoding", T_ENUM, OFF(encoding), "auto", 0, 0, ENCODINGS, 0, 0, 0},
    {"input.max_message_bytes", T_INT, LIM(max_message_bytes), "65536", 64, 16777216, NULL, 0, 0, 0},
    {"input.max_id_bytes", T_INT, LIM(max_id_bytes), "128", 1, JD_ID_MAX, NULL, 0, 0, 0},
    {"input.max_string_bytes", T_INT, LIM(max_string_bytes), "1024", 64, 1048576, NULL, 0, 0, 0},
    {"input.max_properties", T_INT, LIM(max_properties), "64", 0, 4096, NULL, 0, 0, 0},
    {"input.max_depth", T_INT, LIM(max_depth), "16", 2, 64, NULL, 0, 0, 0},
    {"input.partitioner", T_ENUM, OFF(partitioner), "none", 0, 0, PARTITIONERS, 0, 0, 0},
    {"input.internal_topic", T_STR, OFF(internal_topic), "", 0, 249, NULL, 0, 0, 0},
    {"input.max_future", T_DUR, OFF(max_future_ms), "1h", 1000, 7LL * 86400000, NULL, 0, 0, 0},
    {"deadletter.topic", T_STR, OFF(deadletter_topic), "journeyd.deadletter", 1, 249, NULL, 0, 0, 0},
    {"output.metrics_topic", T_STR, OFF(metrics_topic), "journeyd.metrics", 1, 249, NULL, 0, 0, 0},
    {"output.alerts_topic", T_STR, OFF(alerts_topic), "journeyd.alerts", 1, 249, NULL, 0, 0, 0},
    {"output.publish_interval", T_DUR, OFF(publish_interval_ms), "1s", 10, 3600000, NULL, 0, 0, 0},
    {"output.format", T_ENUM, OFF(output_format), "json", 0, 0, FORMATS, 0, 0, 0},
    {"http.bind", T_STR, OFF(http_bind), "127.0.0.1", 1, 255, NULL, 0, 0, 0},
    {"http.port", T_INT, OFF(http_port), "9464", 0, 65535, NULL, 0, 0, 0},
    {"redis.host", T_STR, OFF(redis_host), "127.0.0.1", 1, 255, NULL, 0, 0, 0},
    {"redis.port", T_INT, OFF(redis_port), "16379", 1, 65535, NULL, 0, 0, 0},
    {"redis.unix_socket", T_STR, OFF(redis_unix_socket), "", 0, 107, NULL, 0, 0, 0},
    {"redis.user", T_STR, OFF(redis_user), "", 0, 255, NULL, 0, 0, 0},
    {"redis.password", T_STR, OFF(redis_password), "", 0, 4096, NULL, 1, 0, 0},
    {"redis.db", T_INT, OFF(redis_db), "0", 0, 15, NULL, 0, 0, 0},
    {"redis.prefix", T_STR, OFF(redis_prefix), "jd", 1, 64, NULL, 0, 0, 0},
    {"redis.connect_timeout", T_DUR, OFF(redis_connect_timeout_ms), "2s", 10, 600000, NULL, 0, 0, 0},
    {"redis.command_timeout", T_DUR, OFF(redis_command_timeout_ms), "5s", 10, 600000, NULL, 0, 0, 0},
    {"journey.history_max", T_INT, OFF(history_max), "50", 1, 1000, NULL, 0, 0, 0},
    {"journey.dedup_max", T_INT, OFF(dedup_max), "128", 0, 4096, NULL, 0, 0, 0},
    {"journey.max_linked_ids", T_INT, OFF(max_linked_ids), "20", 1, 100000, NULL, 0, 0, 0},
    {"journey.allowed_lateness", T_DUR, OFF(allowed_lateness_ms), "5m", 0, 7LL * 86400000, NULL, 0, 0, 0},
    {"processing.batch_max_events", T_INT, OFF(batch_max_events), "5000", 1, 100000, NULL, 0, 0, 0},
    {"processing.batch_max_time", T_DUR, OFF(batch_max_ms), "50ms", 1, 10000, NULL, 0, 0, 0},
    {"processing.cache_journeys", T_INT, OFF(cache_journeys), "200000", 0, 100000000, NULL, 0, 0, 0},
    {"processing.close_records", T_INT, OFF(close_records), "1000000", 0, 100000000, NULL, 0, 0, 0},
    {"processing.shutdown_timeout", T_DUR, OFF(shutdown_timeout_ms), "10s", 100, 600000, NULL, 0, 0, 0},
    {"processing.retry_backoff_max", T_DUR, OFF(retry_backoff_max_ms), "5s", 10, 600000, NULL, 0, 0, 0},
    {"processing.idle_advance", T_DUR, OFF(idle_advance_ms), "1s", 10, 3600000, NULL, 0, 0, 0},
    {"metrics.segments_max", T_INT, OFF(segments_max), "20", 1, 1000, NULL, 0, 0, 0},
    {"metrics.touchpoints_max", T_INT, OFF(touchpoints_max), "50", 1, 1000, NULL, 0, 0, 0},
    {"metrics.windows", T_DURLIST, OFF(funnel_windows_ms), "1h, 24h", 60000, 365LL * 86400000, NULL, 0,
     OFF(n_funnel_windows), CFG_MAX_FUNNEL_WINDOWS},
    {"metrics.buckets_per_window", T_INT, OFF(funnel_buckets), "12", 1, 1000, NULL, 0, 0, 0},
    {"satisfaction.windows", T_DURLIST, OFF(sat_windows_ms), "1h, 24h, 7d, 30d", 60000, 365LL * 86400000,
     NULL, 0, OFF(n_sat_windows), CFG_MAX_SAT_WINDOWS},
    {"satisfaction.buckets_per_window", T_INT, OFF(sat_buckets), "12", 1, 1000, NULL, 0, 0, 0},
    {"satisfaction.min_n", T_INT, OFF(sat_min_n), "30", 1, 1000000, NULL, 0, 0, 0},
    {"satisfaction.log_max_bytes", T_INT, OFF(sat_log_max), "262144", 0, 67108864, NULL, 0, 0, 0},
    {"log.level", T_ENUM, OFF(log_level), "info", 0, 0, LEVELS, 0, 0, 0},
};
#define N_KEYS (sizeof(KEYS) / sizeof(KEYS[0]))

static const char *const SECTIONS[] = {"kafka", "input", "deadletter", "output", "http", "redis", "journey",
                                       "processing", "metrics", "satisfaction", "log", "phases", "rules",
                                       "alerts", NULL};

/* The index of s in names (NULL-terminated), or -1. */
static int choice_index(const char *const *names, const char *s) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

/* names (NULL-terminated) as "a, b, c" into buf. */
static void join_names(const char *const *names, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && used < cap; i++) {
        int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* Parse a duration: "500ms", "30s", "5m", "2h", "7d", "2w" or plain ms. */
static int parse_duration(const char *s, int64_t *ms) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0) return -1;
    static const struct { const char *unit; int64_t mult; } U[] = {
        {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
        {"d", 86400000}, {"w", 7 * 86400000LL},
    };
    for (size_t i = 0; i < sizeof(U) / sizeof(U[0]); i++) {
        if (strcmp(end, U[i].unit)) continue;
        if (v > INT64_MAX / U[i].mult) return -1;
        *ms = v * U[i].mult;
        return 0;
    }
    return -1;
}

static int parse_int(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || errno) return -1;
    *v = x;
    return 0;
}

static int not_a_duration(loader_t *L, const key_t_ *k, const char *text, int line) {
    return fail(L, line, "%s: '%s' is not a duration (e.g. 500ms, 30s, 5m, 2h, 7d, 2w)", k->name, text);
}

/* The value of k, `text` as written, is outside k's bounds. */
static int out_of_range(loader_t *L, const key_t_ *k, const char *text, int line) {
    char a[32], b[32];
    if (k->type == T_DUR || k->type == T_DURLIST) {
        text_duration_unit(k->min, a, sizeof(a));
        text_duration_unit(k->max, b, sizeof(b));
    } else {
        snprintf(a, sizeof(a), "%lld", (long long)k->min);
        snprintf(b, sizeof(b), "%lld", (long long)k->max);
    }
    return fail(L, line, "%s: %s is out of range %s..%s", k->name, text, a, b);
}

/* Store one scalar value for key k; text is the value as written. */
static int set_value(loader_t *L, config_t *c, const key_t_ *k, const char *text, int line) {
    char *base = (char *)c;
    int64_t v = 0;
    switch (k->type) {
    case T_STR: {
        if ((int64_t)strlen(text) < k->min || (int64_t)strlen(text) > k->max)
            return fail(L, line, "%s: length must be %lld..%lld bytes", k->name, (long long)k->min,
                        (long long)k->max);
        char **dst = (char **)(base + k->off), *dup = strdup(text);
        if (!dup) return fail(L, line, "out of memory");
        free(*dst);
        *dst = dup;
        return 0;
    }
    case T_ENUM: {
        char list[128];
        int i = choice_index(k->choices, text);
        if (i >= 0) {
            *(int *)(base + k->off) = i;
            return 0;
        }
        join_names(k->choices, list, sizeof(list));
        return fail(L, line, "%s: '%s' is not one of %s", k->name, text, list);
    }
    case T_INT:
        if (parse_int(text, &v) < 0) return fail(L, line, "%s: '%s' is not an integer", k->name, text);
        break;
    case T_DUR:
        if (parse_duration(text, &v) < 0) return not_a_duration(L, k, text, line);
        break;
    case T_LIST:
    case T_DURLIST:
        return fail(L, line, "%s: expected a list", k->name);
    }
    if (v < k->min || v > k->max) return out_of_range(L, k, text, line);
    if (k->off == LIM(max_message_bytes) || k->off == LIM(max_id_bytes) ||
        k->off == LIM(max_string_bytes))
        *(size_t *)(base + k->off) = (size_t)v;
    else if (k->off == LIM(max_properties) || k->off == LIM(max_depth))
        *(uint32_t *)(base + k->off) = (uint32_t)v;
    else if (k->off == OFF(allowed_lateness_ms))
        *(int64_t *)(base + k->off) = v;
    else
        *(int *)(base + k->off) = (int)v;
    return 0;
}

/* ---- suggestions for unknown keys --------------------------------------------- */

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int row[128];
    if (lb >= 128 || la >= 128) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j];
            int best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* The closest of names (NULL-terminated, or the key table if NULL) to s. */
static const char *nearest(const char *s, const char *const *names) {
    const char *best = NULL;
    int bd = 3;
    for (size_t i = 0; names ? names[i] != NULL : i < N_KEYS; i++) {
        const char *n = names ? names[i] : KEYS[i].name;
        int d = edit_distance(s, n);
        if (d < bd) {
            bd = d;
            best = n;
        }
    }
    return best;
}

static int unknown_key(loader_t *L, int line, const char *what, const char *name,
                       const char *const *names) {
    const char *near = nearest(name, names);
    if (near) return fail(L, line, "unknown %s '%s' (did you mean '%s'?)", what, name, near);
    return fail(L, line, "unknown %s '%s'", what, name);
}

/* ---- sections ------------------------------------------------------------------ */

static int valid_topic(const char *t) {
    size_t n = strlen(t);
    if (!n || n > 249) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && t[i] != '.' && t[i] != '_' && t[i] != '-') return 0;
    return 1;
}

static int set_topics(loader_t *L, config_t *c, const node_t *v) {
    if (v->type != N_SEQ || v->n == 0) return fail(L, v->line, "input.topics: expected a non-empty list");
    if (v->n > CFG_MAX_TOPICS) return fail(L, v->line, "input.topics: at most %d topics", CFG_MAX_TOPICS);
    for (int i = 0; i < c->n_topics; i++) free(c->topics[i]);
    c->n_topics = 0;
    for (int i = 0; i < v->n; i++) {
        const node_t *t = v->kids[i];
        if (t->type != N_SCALAR || !valid_topic(t->value))
            return fail(L, t->line, "input.topics: '%s' is not a valid topic name",
                        t->type == N_SCALAR ? t->value : "(not a scalar)");
        if (!(c->topics[c->n_topics++] = strdup(t->value))) return fail(L, t->line, "out of memory");
    }
    return 0;
}

/* Append one item of T_DURLIST key k ("all" is skipped); text as written. */
static int durlist_add(loader_t *L, config_t *c, const key_t_ *k, const char *text, int line) {
    int64_t *items = (int64_t *)((char *)c + k->off);
    int *n = (int *)((char *)c + k->n_off);
    int64_t ms = 0;
    if (!strcmp(text, "all")) return 0;
    if (parse_duration(text, &ms) < 0) return not_a_duration(L, k, text, line);
    if (ms < k->min || ms > k->max) return out_of_range(L, k, text, line);
    if (*n == k->max_n) return fail(L, line, "%s: at most %d durations (besides all)", k->name, k->max_n);
    if (*n > 0 && ms <= items[*n - 1])
        return fail(L, line, "%s: %s is not longer than the duration before it (the list must be "
                    "strictly increasing)", k->name, text);
    items[*n] = ms;
    *n += 1;
    return 0;
}

/* Set T_DURLIST key k from a YAML list, replacing the default. */
static int set_durlist(loader_t *L, config_t *c, const key_t_ *k, const node_t *v) {
    int alls = 0;
    if (v->type != N_SEQ) return fail(L, v->line, "%s: expected a list", k->name);
    *(int *)((char *)c + k->n_off) = 0;
    for (int i = 0; i < v->n; i++) {
        const node_t *t = v->kids[i];
        if (t->type != N_SCALAR) return fail(L, t->line, "%s: expected a list of durations", k->name);
        if (!strcmp(t->value, "all")) alls++;
        if (alls > 1) return fail(L, t->line, "%s: all is given twice", k->name);
        if (durlist_add(L, c, k, t->value, t->line) < 0) return -1;
    }
    return 0;
}

/* Set T_DURLIST key k from its default text, "a, b, c". */
static int durlist_default(loader_t *L, config_t *c, const key_t_ *k) {
    char item[32];
    const char *p = k->def;
    *(int *)((char *)c + k->n_off) = 0;
    while (*p) {
        size_t len = strcspn(p, ",");
        snprintf(item, sizeof(item), "%.*s", (int)len, p);
        if (durlist_add(L, c, k, item, 0) < 0) return -1;
        p += len;
        p += strspn(p, ", ");
    }
    return 0;
}

static const key_t_ *find_key(const char *dotted) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(KEYS[i].name, dotted)) return &KEYS[i];
    return NULL;
}

/* A map node: refuse duplicate keys and non-scalar keys. */
static int check_map(loader_t *L, const node_t *m, const char *what) {
    if (m->type != N_MAP) return fail(L, m->line, "%s: expected a mapping", what);
    for (int i = 0; i < m->n; i += 2) {
        if (m->kids[i]->type != N_SCALAR) return fail(L, m->kids[i]->line, "%s: keys must be scalars", what);
        for (int j = 0; j < i; j += 2)
            if (!strcmp(m->kids[i]->value, m->kids[j]->value))
                return fail(L, m->kids[i]->line, "duplicate key '%s' in %s (first at line %d)",
                            m->kids[i]->value, what, m->kids[j]->line);
    }
    return 0;
}

static int load_section(loader_t *L, config_t *c, const char *sec, const node_t *m) {
    char dotted[128];
    if (check_map(L, m, sec) < 0) return -1;
    for (int i = 0; i < m->n; i += 2) {
        const node_t *k = m->kids[i], *v = m->kids[i + 1];
        snprintf(dotted, sizeof(dotted), "%s.%s", sec, k->value);
        const key_t_ *key = find_key(dotted);
        if (!key) return unknown_key(L, k->line, "key", dotted, NULL);
        if (key->type == T_LIST) {
            if (set_topics(L, c, v) < 0) return -1;
            continue;
        }
        if (key->type == T_DURLIST) {
            if (set_durlist(L, c, key, v) < 0) return -1;
            continue;
        }
        if (v->type != N_SCALAR) return fail(L, v->line, "%s: expected a single value", dotted);
        if (set_value(L, c, key, v->value, v->line) < 0) return -1;
    }
    return 0;
}

/* Keys journeyd sets itself on the consumer. */
static const char *managed_kafka_key(const char *k) {
    static const char *const M[][2] = {
        {"group.id", "input.group_id"},
        {"enable.auto.offset.store", "nothing: offsets are stored after Redis commits"},
        {"enable.auto.commit", "nothing: journeyd commits offsets itself"},
        {"enable.partition.eof", "nothing"},
        {"auto.offset.reset", "nothing: offsets come from Redis, else the partition start"},
    };
    for (size_t i = 0; i < sizeof(M) / sizeof(M[0]); i++)
        if (!strcmp(k, M[i][0])) return M[i][1];
    return NULL;
}

static int load_kafka(loader_t *L, config_t *c, const node_t *m) {
    char err[512];
    if (check_map(L, m, "kafka") < 0) return -1;
    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    int rc = 0;
    for (int i = 0; i < m->n && rc == 0; i += 2) {
        const node_t *k = m->kids[i], *v = m->kids[i + 1];
        const char *managed = managed_kafka_key(k->value);
        if (managed) rc = fail(L, k->line, "kafka.%s is set by journeyd (use %s)", k->value, managed);
        else if (v->type != N_SCALAR) rc = fail(L, v->line, "kafka.%s: expected a single value", k->value);
        else if (c->n_kafka == CFG_MAX_KAFKA) rc = fail(L, k->line, "kafka: at most %d properties", CFG_MAX_KAFKA);
        else if (rd_kafka_conf_set(scratch, k->value, v->value, err, sizeof(err)) != RD_KAFKA_CONF_OK)
            rc = config_is_secret(k->value) ? fail(L, k->line, "kafka.%s: refused by librdkafka", k->value)
                                            : fail(L, k->line, "kafka.%s: %s", k->value, err);
        else {
            cfg_kv_t *kv = &c->kafka[c->n_kafka++];
            kv->key = strdup(k->value);
            kv->value = strdup(v->value);
            kv->line = k->line;
            if (!kv->key || !kv->value) rc = fail(L, k->line, "out of memory");
        }
    }
    rd_kafka_conf_destroy(scratch);
    return rc;
}

/* ---- phases and rules ------------------------------------------------------------- */

static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (!n || n > JD_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

static const node_t *map_get(const node_t *m, const char *key) {
    for (int i = 0; i < m->n; i += 2)
        if (!strcmp(m->kids[i]->value, key)) return m->kids[i + 1];
    return NULL;
}

/* Every key of m must be in allowed (NULL-terminated). */
static int only_keys(loader_t *L, const node_t *m, const char *what, const char *const *allowed) {
    for (int i = 0; i < m->n; i += 2) {
        int ok = 0;
        for (int j = 0; allowed[j] && !ok; j++) ok = !strcmp(m->kids[i]->value, allowed[j]);
        if (!ok) {
            const char *k = m->kids[i]->value, *near = nearest(k, allowed);
            if (near) return fail(L, m->kids[i]->line, "unknown key '%s.%s' (did you mean '%s'?)", what, k, near);
            return fail(L, m->kids[i]->line, "unknown key '%s.%s'", what, k);
        }
    }
    return 0;
}

static int scalar(loader_t *L, const node_t *v, const char *what, const char **out) {
    if (!v) return 0;
    if (v->type != N_SCALAR) return fail(L, v->line, "%s: expected a single value", what);
    *out = v->value;
    return 0;
}

static int load_phases(loader_t *L, config_t *c, const node_t *seq) {
    static const char *const allowed[] = {"name", "timeout", NULL};
    if (seq->type != N_SEQ) return fail(L, seq->line, "phases: expected a list");
    if (seq->n < 2 || seq->n > CFG_MAX_PHASES)
        return fail(L, seq->line, "phases: between 2 and %d phases are needed, got %d", CFG_MAX_PHASES, seq->n);
    c->n_phases = 0;
    for (int i = 0; i < seq->n; i++) {
        const node_t *p = seq->kids[i];
        const char *name = NULL, *timeout = NULL;
        if (check_map(L, p, "phases[]") < 0 || only_keys(L, p, "phases[]", allowed) < 0 ||
            scalar(L, map_get(p, "name"), "phases[].name", &name) < 0 ||
            scalar(L, map_get(p, "timeout"), "phases[].timeout", &timeout) < 0)
            return -1;
        if (!name || !valid_name(name))
            return fail(L, p->line, "phases[%d]: name must be 1..%d characters of a-z, 0-9, _", i, JD_NAME_MAX);
        if (config_phase_index(c, name) >= 0) return fail(L, p->line, "duplicate phase '%s'", name);
        cfg_phase_t *ph = &c->phases[c->n_phases];
        if (!timeout) return fail(L, p->line, "phase '%s': timeout is required", name);
        if (parse_duration(timeout, &ph->timeout_ms) < 0 || ph->timeout_ms <= 0)
            return fail(L, map_get(p, "timeout")->line, "phase '%s': timeout '%s' is not a positive duration",
                        name, timeout);
        snprintf(ph->name, sizeof(ph->name), "%s", name);
        c->n_phases++;
    }
    return 0;
}

static const char *const TYPES[] = {"track", "page", "screen", "identify", "alias", "heartbeat", NULL};

static int rule_match(loader_t *L, cfg_rule_t *r, const node_t *m) {
    static const char *const allowed[] = {"type", "event", "channel", "path_prefix", "name",
                                          "touchpoint", NULL};
    const char *v[6] = {NULL};
    char **dst[6] = {NULL, &r->event, &r->channel, &r->path_prefix, &r->name, &r->touchpoint_in};
    if (check_map(L, m, "rules[].match") < 0 || only_keys(L, m, "rules[].match", allowed) < 0) return -1;
    if (m->n == 0) return fail(L, m->line, "rule: match needs at least one field");
    for (int i = 0; i < 6; i++) {
        char what[64];
        snprintf(what, sizeof(what), "rules[].match.%s", allowed[i]);
        if (scalar(L, map_get(m, allowed[i]), what, &v[i]) < 0) return -1;
        if (v[i] && strlen(v[i]) > 255) return fail(L, m->line, "%s: longer than 255 bytes", what);
        if (i && v[i] && !(*dst[i] = strdup(v[i]))) return fail(L, m->line, "out of memory");
    }
    if (v[0]) {
        r->has_type = 1;
        r->type = -1;
        for (int t = 0; TYPES[t]; t++)
            if (!strcmp(v[0], TYPES[t])) r->type = t;
        if (r->type < 0)
            return fail(L, map_get(m, "type")->line,
                        "rule: match.type '%s' is not one of track, page, screen, identify, alias, heartbeat", v[0]);
    }
    return 0;
}

static int load_rule(loader_t *L, config_t *c, const node_t *n, cfg_rule_t *r) {
    static const char *const allowed[] = {"match", "phase", "touchpoint", NULL};
    const char *phase = NULL, *tp = NULL;
    memset(r, 0, sizeof(*r));
    r->line = n->line;
    r->phase = -1;
    if (check_map(L, n, "rules[]") < 0 || only_keys(L, n, "rules[]", allowed) < 0) return -1;
    const node_t *m = map_get(n, "match");
    if (!m) return fail(L, n->line, "rule: 'match' is required");
    if (rule_match(L, r, m) < 0 || scalar(L, map_get(n, "phase"), "rules[].phase", &phase) < 0 ||
        scalar(L, map_get(n, "touchpoint"), "rules[].touchpoint", &tp) < 0)
        return -1;
    if (!phase && !tp) return fail(L, n->line, "rule: needs a phase, a touchpoint or both");
    if (phase && (r->phase = config_phase_index(c, phase)) < 0)
        return fail(L, map_get(n, "phase")->line, "rule: unknown phase '%s'", phase);
    if (tp && !valid_name(tp))
        return fail(L, map_get(n, "touchpoint")->line,
                    "rule: touchpoint '%s' must be 1..%d characters of a-z, 0-9, _", tp, JD_NAME_MAX);
    if (tp && !(r->touchpoint = strdup(tp))) return fail(L, n->line, "out of memory");
    return 0;
}

static void rules_free(config_t *c) {
    for (int i = 0; i < c->n_rules; i++) {
        cfg_rule_t *r = &c->rules[i];
        free(r->event);
        free(r->channel);
        free(r->path_prefix);
        free(r->name);
        free(r->touchpoint_in);
        free(r->touchpoint);
    }
    free(c->rules);
    c->rules = NULL;
    c->n_rules = 0;
}

static int load_rules(loader_t *L, config_t *c, const node_t *seq) {
    if (seq->type != N_SEQ) return fail(L, seq->line, "rules: expected a list");
    if (seq->n > CFG_MAX_RULES) return fail(L, seq->line, "rules: at most %d rules", CFG_MAX_RULES);
    rules_free(c);
    c->rules = calloc((size_t)seq->n + 1, sizeof(*c->rules));
    if (!c->rules) return fail(L, seq->line, "out of memory");
    for (int i = 0; i < seq->n; i++) {
        int rc = load_rule(L, c, seq->kids[i], &c->rules[i]);
        c->n_rules++; /* so that rules_free() releases a half-loaded rule too */
        if (rc < 0) return -1;
    }
    return 0;
}

/* ---- alert rules ------------------------------------------------------------------ */

/* The keys of an alert rule, and what load_alert() gathers of them. */
enum { A_NAME, A_METRIC, A_PHASE, A_WINDOW, A_SEGMENT, A_TOUCHPOINT, A_SCOPE, A_OP, A_THRESHOLD,
       A_RESOLVE, A_FOR, A_MIN_N, A_NO_DATA, A_SEVERITY, A_LABELS, A_SUMMARY, A_N };
static const char *const ALERT_KEYS[] = {"name", "metric", "phase", "window", "segment", "touchpoint",
                                         "scope", "op", "threshold", "resolve", "for", "min_n", "no_data",
                                         "severity", "labels", "summary", NULL};
#define ALERT_FOR_MAX (365 * 86400000LL)
#define ALERT_MIN_N_MAX 1000000000LL

typedef struct alert_src {
    const char *v[A_N];         /* scalar values as written, NULL if absent (and for labels) */
    int line[A_N];              /* the line of each key given */
    const node_t *labels;       /* the labels mapping, or NULL */
} alert_src_t;

static int alert_fail(loader_t *L, int line, const alert_rule_t *r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int alert_fail(loader_t *L, int line, const alert_rule_t *r, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fail(L, line, "alert '%s': %s", r->name, msg);
}

static int alert_source(loader_t *L, const node_t *n, alert_src_t *a) {
    memset(a, 0, sizeof(*a));
    if (check_map(L, n, "alerts[]") < 0 || only_keys(L, n, "alerts[]", ALERT_KEYS) < 0) return -1;
    for (int i = 0; i < n->n; i += 2) {
        int k = choice_index(ALERT_KEYS, n->kids[i]->value);
        const node_t *v = n->kids[i + 1];
        a->line[k] = n->kids[i]->line;
        if (k == A_LABELS) a->labels = v;
        else if (v->type != N_SCALAR)
            return fail(L, v->line, "alerts[].%s: expected a single value", ALERT_KEYS[k]);
        else a->v[k] = v->value;
    }
    return 0;
}

static int alert_name(loader_t *L, const config_t *c, const alert_src_t *a, alert_rule_t *r) {
    const char *name = a->v[A_NAME];
    if (!name) return fail(L, r->line, "alert: 'name' is required");
    size_t n = strlen(name);
    int ok = n > 0 && n <= ALERT_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
             name[i] == '-';
    if (!ok)
        return fail(L, a->line[A_NAME], "alert '%s': the name must be 1..%d characters of a-z, 0-9, _, -",
                    name, ALERT_NAME_MAX);
    snprintf(r->name, sizeof(r->name), "%s", name);
    for (int i = 0; i < c->n_alerts; i++)
        if (!strcmp(c->alerts[i].name, name))
            return alert_fail(L, a->line[A_NAME], r, "duplicate name (first at line %d)", c->alerts[i].line);
    return 0;
}

/* The window as the snapshot names it: `all` (the default) or one of the
 * satisfaction windows (satisfaction metrics) or of the funnel windows
 * (metrics.windows: the funnel's outcomes, not `active`, which is a count
 * now), however it is spelt ("24h" is "1d"). */
static int alert_window(loader_t *L, const config_t *c, const alert_src_t *a, alert_rule_t *r) {
    const char *w = a->v[A_WINDOW];
    char list[CFG_MAX_SAT_WINDOWS * 24 + 8], name[24];
    size_t used = 0;
    int64_t ms = -1;
    int sat = alert_metric_is_sat(r->metric);
    const int64_t *wins = sat ? c->sat_windows_ms : c->funnel_windows_ms;
    int n = sat ? c->n_sat_windows : c->n_funnel_windows;
    snprintf(r->window, sizeof(r->window), "all");
    r->window_ix = -1;
    if (!w || !strcmp(w, "all")) return 0;
    if (r->metric == ALERT_ACTIVE)
        return alert_fail(L, a->line[A_WINDOW], r, "window: active is the journeys in the phase now (window all only)");
    if (parse_duration(w, &ms) < 0) ms = -1;
    for (int i = 0; i < n; i++) {
        text_duration_unit(wins[i], name, sizeof(name));
        if (wins[i] == ms) {
            snprintf(r->window, sizeof(r->window), "%s", name);
            r->window_ix = i;
            return 0;
        }
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s, ", name);
    }
    snprintf(list + used, sizeof(list) - used, "all");
    return alert_fail(L, a->line[A_WINDOW], r, "window '%s' is not one of the %s windows (%s)", w,
                      sat ? "satisfaction" : "funnel (metrics.windows)", list);
}

/* Overall, or one segment or one touchpoint (satisfaction metrics only). */
static int alert_breakdown(loader_t *L, const alert_src_t *a, alert_rule_t *r) {
    const char *seg = a->v[A_SEGMENT], *tp = a->v[A_TOUCHPOINT];
    int sl = a->line[A_SEGMENT], tl = a->line[A_TOUCHPOINT];
    if (seg && tp) return alert_fail(L, sl > tl ? sl : tl, r, "give a segment or a touchpoint, not both");
    if (!seg && !tp) return 0;
    int line = seg ? sl : tl;
    if (tp && !alert_metric_is_sat(r->metric))
        return alert_fail(L, line, r, "touchpoint is only for nps, csat and ces (%s is not counted per "
                          "touchpoint)", alert_metric_names[r->metric]);
    const char *name = seg ? seg : tp;
    if (!name[0] || strlen(name) > JD_NAME_MAX)
        return alert_fail(L, line, r, "%s: the name must be 1..%d bytes", seg ? "segment" : "touchpoint",
                          JD_NAME_MAX);
    r->by = seg ? ALERT_BY_SEGMENT : ALERT_BY_TOUCHPOINT;
    snprintf(r->by_name, sizeof(r->by_name), "%s", name);
    return 0;
}

/* Which answers a satisfaction rule watches: touchpoint (the default) or
 * journey scope (SPEC §6). */
static int alert_scope(loader_t *L, const alert_src_t *a, alert_rule_t *r) {
    const char *s = a->v[A_SCOPE];
    if (!s) return 0;
    if (!alert_metric_is_sat(r->metric))
        return alert_fail(L, a->line[A_SCOPE], r, "scope is only for nps, csat and ces");
    if (strcmp(s, "touchpoint") && strcmp(s, "journey"))
        return alert_fail(L, a->line[A_SCOPE], r, "scope '%s' is not one of touchpoint, journey", s);
    r->journey_scope = !strcmp(s, "journey");
    return 0;
}

/* What the rule watches: metric, phase, window and breakdown. */
static int alert_series(loader_t *L, const config_t *c, const alert_src_t *a, alert_rule_t *r) {
    const char *metric = a->v[A_METRIC], *phase = a->v[A_PHASE];
    char list[160];
    if (!metric) return alert_fail(L, r->line, r, "'metric' is required");
    int m = choice_index(alert_metric_names, metric);
    if (m < 0) {
        join_names(alert_metric_names, list, sizeof(list));
        return alert_fail(L, a->line[A_METRIC], r, "metric '%s' is not one of %s", metric, list);
    }
    r->metric = (alert_metric_t)m;
    if (!phase) return alert_fail(L, r->line, r, "'phase' is required");
    r->phase = config_phase_index(c, phase);
    if (r->phase < 0) return alert_fail(L, a->line[A_PHASE], r, "unknown phase '%s'", phase);
    snprintf(r->phase_name, sizeof(r->phase_name), "%s", phase);
    if (alert_window(L, c, a, r) < 0 || alert_scope(L, a, r) < 0) return -1;
    return alert_breakdown(L, a, r);
}

static int parse_number(const char *s, double *v) {
    char *end;
    double x = strtod(s, &end);
    if (end == s || *end || !isfinite(x)) return -1;
    *v = x;
    return 0;
}

/* How long, how many samples, and what no data does. */
static int alert_timing(loader_t *L, const alert_src_t *a, alert_rule_t *r) {
    const char *f = a->v[A_FOR], *n = a->v[A_MIN_N], *nd = a->v[A_NO_DATA];
    r->min_n = 1;
    if (f && (parse_duration(f, &r->for_ms) < 0 || r->for_ms > ALERT_FOR_MAX))
        return alert_fail(L, a->line[A_FOR], r, "for '%s' is not a duration of 0..365d (e.g. 30s, 5m, 2h)", f);
    if (n && (parse_int(n, &r->min_n) < 0 || r->min_n < 1 || r->min_n > ALERT_MIN_N_MAX))
        return alert_fail(L, a->line[A_MIN_N], r, "min_n '%s' is not an integer of 1..%lld", n, ALERT_MIN_N_MAX);
    int k = nd ? choice_index(alert_nodata_names, nd) : ALERT_NODATA_KEEP;
    if (k < 0) return alert_fail(L, a->line[A_NO_DATA], r, "no_data '%s' is not one of keep, resolve", nd);
    r->no_data = (alert_nodata_t)k;
    return 0;
}

/* When it fires and when it resolves. */
static int alert_condition(loader_t *L, const alert_src_t *a, alert_rule_t *r) {
    const char *op = a->v[A_OP], *th = a->v[A_THRESHOLD], *res = a->v[A_RESOLVE];
    if (!op) return alert_fail(L, r->line, r, "'op' is required");
    int o = choice_index(alert_op_names, op);
    if (o < 0)
        return alert_fail(L, a->line[A_OP], r, "op '%s' is not one of >, >=, <, <= (quote it: op: \">\")", op);
    r->op = (alert_op_t)o;
    if (!th) return alert_fail(L, r->line, r, "'threshold' is required");
    if (parse_number(th, &r->threshold) < 0)
        return alert_fail(L, a->line[A_THRESHOLD], r, "threshold '%s' is not a number", th);
    r->resolve = r->threshold;
    if (res && parse_number(res, &r->resolve) < 0)
        return alert_fail(L, a->line[A_RESOLVE], r, "resolve '%s' is not a number", res);
    if (!alert_resolve_ok(r->op, r->threshold, r->resolve))
        return alert_fail(L, a->line[A_RESOLVE], r, "resolve %s is on the firing side of %s %s", res, op, th);
    return alert_timing(L, a, r);
}

static int alert_labels(loader_t *L, const alert_src_t *a, alert_rule_t *r) {
    const node_t *m = a->labels;
    char why[512];
    if (check_map(L, m, "alerts[].labels") < 0) return -1;
    if (m->n / 2 > ALERT_MAX_LABELS) return alert_fail(L, a->line[A_LABELS], r, "at most %d labels", ALERT_MAX_LABELS);
    for (int i = 0; i < m->n; i += 2) {
        const node_t *k = m->kids[i], *v = m->kids[i + 1];
        if (alert_label_check(k->value, why, sizeof(why)) < 0) return alert_fail(L, k->line, r, "%s", why);
        if (v->type != N_SCALAR || strlen(v->value) > ALERT_LABEL_MAX)
            return alert_fail(L, k->line, r, "label '%s': the value must be a string of at most %d bytes",
                              k->value, ALERT_LABEL_MAX);
        alert_label_t *lb = &r->labels[r->n_labels++];
        lb->name = strdup(k->value);
        lb->value = strdup(v->value);
        if (!lb->name || !lb->value) return fail(L, k->line, "out of memory");
    }
    return 0;
}

/* Severity, labels and summary: what the messages carry besides the numbers. */
static int alert_extras(loader_t *L, const alert_src_t *a, alert_rule_t *r) {
    const char *sev = a->v[A_SEVERITY], *sum = a->v[A_SUMMARY];
    char why[512];
    if (sev && (!sev[0] || strlen(sev) > ALERT_NAME_MAX))
        return alert_fail(L, a->line[A_SEVERITY], r, "severity must be 1..%d bytes", ALERT_NAME_MAX);
    snprintf(r->severity, sizeof(r->severity), "%s", sev ? sev : "warning");
    if (a->labels && alert_labels(L, a, r) < 0) return -1;
    if (!sum) return 0;
    if (alert_summary_check(sum, why, sizeof(why)) < 0) return alert_fail(L, a->line[A_SUMMARY], r, "%s", why);
    r->summary = strdup(sum);
    return r->summary ? 0 : fail(L, a->line[A_SUMMARY], "out of memory");
}

static int load_alert(loader_t *L, config_t *c, const node_t *n, alert_rule_t *r) {
    alert_src_t a;
    memset(r, 0, sizeof(*r));
    r->line = n->line;
    if (alert_source(L, n, &a) < 0 || alert_name(L, c, &a, r) < 0 || alert_series(L, c, &a, r) < 0 ||
        alert_condition(L, &a, r) < 0 || alert_extras(L, &a, r) < 0)
        return -1;
    return 0;
}

static void alerts_free(config_t *c) {
    for (int i = 0; i < c->n_alerts; i++) alert_rule_free(&c->alerts[i]);
    free(c->alerts);
    c->alerts = NULL;
    c->n_alerts = 0;
}

/* The alerts section: a list of rules, or nothing at all ("alerts:" alone). */
static int load_alerts(loader_t *L, config_t *c, const node_t *seq) {
    if (seq->type == N_SCALAR && !seq->quoted && !seq->value[0]) return 0;
    if (seq->type != N_SEQ) return fail(L, seq->line, "alerts: expected a list");
    if (seq->n > CFG_MAX_ALERTS) return fail(L, seq->line, "alerts: at most %d rules", CFG_MAX_ALERTS);
    c->alerts = calloc((size_t)seq->n + 1, sizeof(*c->alerts));
    if (!c->alerts) return fail(L, seq->line, "out of memory");
    for (int i = 0; i < seq->n; i++) {
        int rc = load_alert(L, c, seq->kids[i], &c->alerts[i]);
        c->n_alerts++; /* so that alerts_free() releases a half-loaded rule too */
        if (rc < 0) return -1;
    }
    return 0;
}

/* ---- defaults --------------------------------------------------------------------- */

static const cfg_phase_t DEFAULT_PHASES[] = {
    {"search", 30 * 60000LL},
    {"information", 3 * 86400000LL},
    {"purchase", 2 * 3600000LL},
    {"loyalty", 28 * 86400000LL},
};

/* The default classification; config/journeyd.yaml ships the same rules. */
static const struct {
    const char *type, *event, *channel, *path_prefix, *name, *phase, *touchpoint;
} DEFAULT_RULES[] = {
    {"track", "Search Result Clicked", NULL, NULL, NULL, "search", "search_engine"},
    {"track", "Ad Clicked", NULL, NULL, NULL, "search", "ads"},
    {"track", "Social Post Clicked", "social", NULL, NULL, "search", "social_media"},
    {"page", NULL, NULL, "/community", NULL, "search", "forum"},
    {"page", NULL, NULL, "/products", NULL, "information", "company_site"},
    {"track", "Comparison Viewed", NULL, NULL, NULL, "information", "comparison_portal"},
    {"page", NULL, NULL, "/reviews", NULL, "information", "reviews"},
    {"track", "Advice Call Completed", "phone", NULL, NULL, "information", "phone_advice"},
    {"track", "Demo Attended", "store", NULL, NULL, "information", "store_demo"},
    {"screen", NULL, "app", NULL, "Product Detail", "information", "app_product"},
    {"track", "Product Added", NULL, NULL, NULL, "purchase", "cart"},
    {"page", NULL, NULL, "/checkout", NULL, "purchase", "checkout"},
    {"track", "Checkout Started", NULL, NULL, NULL, "purchase", "checkout"},
    {"track", "Order Completed", "web", NULL, NULL, "purchase", "web_shop"},
    {"track", "Order Completed", "app", NULL, NULL, "purchase", "app_shop"},
    {"track", "Order Completed", "phone", NULL, NULL, "purchase", "phone_order"},
    {"track", "Order Completed", "store", NULL, NULL, "purchase", "store"},
    {"track", "Order Confirmation Opened", "email", NULL, NULL, "loyalty", "order_confirmation"},
    {"track", "Order Delivered", NULL, NULL, NULL, "loyalty", "delivery"},
    {"track", "Chat Started", "chat", NULL, NULL, "loyalty", "support_chat"},
    {"track", "Bot Conversation", "chat", NULL, NULL, "loyalty", "service_bot"},
    {"screen", NULL, "app", NULL, "Service", "loyalty", "service_app"},
    {"track", "Support Call Completed", "phone", NULL, NULL, "loyalty", "phone_support"},
    {"track", "Email Opened", "email", NULL, NULL, NULL, "newsletter"},
};
#define N_DEFAULT_RULES (sizeof(DEFAULT_RULES) / sizeof(DEFAULT_RULES[0]))

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int set_defaults(loader_t *L, config_t *c) {
    for (size_t i = 0; i < N_KEYS; i++) {
        if (KEYS[i].type == T_LIST) {
            if (!(c->topics[0] = strdup(KEYS[i].def))) return fail(L, 0, "out of memory");
            c->n_topics = 1;
        } else if (KEYS[i].type == T_DURLIST) {
            if (durlist_default(L, c, &KEYS[i]) < 0) return -1;
        } else if (set_value(L, c, &KEYS[i], KEYS[i].def, 0) < 0) {
            return -1;
        }
    }
    memcpy(c->phases, DEFAULT_PHASES, sizeof(DEFAULT_PHASES));
    c->n_phases = (int)(sizeof(DEFAULT_PHASES) / sizeof(DEFAULT_PHASES[0]));
    if (!(c->rules = calloc(N_DEFAULT_RULES, sizeof(*c->rules)))) return fail(L, 0, "out of memory");
    for (size_t i = 0; i < N_DEFAULT_RULES; i++) {
        cfg_rule_t *r = &c->rules[c->n_rules++];
        r->has_type = 1;
        for (int t = 0; TYPES[t]; t++)
            if (!strcmp(DEFAULT_RULES[i].type, TYPES[t])) r->type = t;
        r->event = dup_or_null(DEFAULT_RULES[i].event);
        r->channel = dup_or_null(DEFAULT_RULES[i].channel);
        r->path_prefix = dup_or_null(DEFAULT_RULES[i].path_prefix);
        r->name = dup_or_null(DEFAULT_RULES[i].name);
        r->touchpoint = dup_or_null(DEFAULT_RULES[i].touchpoint);
        r->phase = DEFAULT_RULES[i].phase ? config_phase_index(c, DEFAULT_RULES[i].phase) : -1;
    }
    return 0;
}

/* ---- loading ------------------------------------------------------------------------ */

static int is_section(const char *s) {
    for (int i = 0; SECTIONS[i]; i++)
        if (!strcmp(s, SECTIONS[i])) return 1;
    return 0;
}

/* The line of journey.allowed_lateness if it is given, else of the phases. */
static int lateness_line(const node_t *root, int phases_line) {
    const node_t *j = map_get(root, "journey");
    const node_t *v = j && j->type == N_MAP ? map_get(j, "allowed_lateness") : NULL;
    return v ? v->line : phases_line;
}

/* The line and the text as written of finite window i of section sec
 * (satisfaction or metrics): its list item if the windows are given, else
 * the section's buckets_per_window. */
static int window_where(const node_t *root, const char *sec, int64_t ms, int i, char *text, size_t cap) {
    const node_t *s = map_get(root, sec);
    const node_t *w = s && s->type == N_MAP ? map_get(s, "windows") : NULL;
    const node_t *b = s && s->type == N_MAP ? map_get(s, "buckets_per_window") : NULL;
    int finite = 0;
    text_duration_unit(ms, text, cap);
    for (int j = 0; w && w->type == N_SEQ && j < w->n; j++) {
        if (!strcmp(w->kids[j]->value, "all")) continue;
        if (finite++ != i) continue;
        snprintf(text, cap, "%s", w->kids[j]->value);
        return w->kids[j]->line;
    }
    return b ? b->line : 0;
}

/* Every finite window of sec splits into k buckets of whole ms. */
static int check_buckets(loader_t *L, const node_t *root, const char *sec, const int64_t *ms, int n, int k) {
    char text[64];
    for (int i = 0; i < n; i++) {
        if (ms[i] % k == 0) continue;
        int line = window_where(root, sec, ms[i], i, text, sizeof(text));
        return fail(L, line, "%s.windows: %s is not a multiple of %d ms buckets", sec, text, k);
    }
    return 0;
}

static int load_root(loader_t *L, config_t *c, const node_t *root) {
    if (check_map(L, root, "the configuration") < 0) return -1;
    const node_t *rules = map_get(root, "rules");
    int phases_line = 0;
    for (int i = 0; i < root->n; i += 2) {
        if (!strcmp(root->kids[i]->value, "phases")) phases_line = root->kids[i]->line;
        const char *sec = root->kids[i]->value;
        const node_t *v = root->kids[i + 1];
        int rc;
        if (v->type == N_SCALAR && !v->quoted && !v->value[0] && is_section(sec)) continue; /* "section:" alone */
        if (!strcmp(sec, "kafka")) rc = load_kafka(L, c, v);
        else if (!strcmp(sec, "phases")) rc = load_phases(L, c, v);
        else if (!strcmp(sec, "rules") || !strcmp(sec, "alerts")) rc = 0; /* after the phases, below */
        else if (is_section(sec)) rc = load_section(L, c, sec, v);
        else rc = unknown_key(L, root->kids[i]->line, "section", sec, SECTIONS);
        if (rc < 0) return -1;
    }
    if (phases_line && !rules)
        return fail(L, phases_line, "phases are given, so rules must be given too (the default rules name the default phases)");
    if (rules && load_rules(L, c, rules) < 0) return -1;
    if (map_get(root, "alerts") && load_alerts(L, c, map_get(root, "alerts")) < 0) return -1;
    /* An event inside the lateness must never belong to a journey that has
     * already timed out, or the outcome would depend on arrival order. */
    for (int k = 0; k < c->n_phases; k++)
        if (c->allowed_lateness_ms >= c->phases[k].timeout_ms)
            return fail(L, lateness_line(root, phases_line), "journey.allowed_lateness must be shorter than "
                        "every phase timeout (phase '%s')", c->phases[k].name);
    if (check_buckets(L, root, "satisfaction", c->sat_windows_ms, c->n_sat_windows, c->sat_buckets) < 0) return -1;
    return check_buckets(L, root, "metrics", c->funnel_windows_ms, c->n_funnel_windows, c->funnel_buckets);
}

static int has_kafka_key(const config_t *c, const char *k) {
    for (int i = 0; i < c->n_kafka; i++)
        if (!strcmp(c->kafka[i].key, k)) return 1;
    return 0;
}

config_t *config_load(const char *path, char *errbuf, size_t errlen) {
    loader_t L = {.path = path, .err = errbuf, .errlen = errlen, .nodes = 0};
    node_t *root = NULL;
    config_t *c = calloc(1, sizeof(*c));
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(&L, 0, "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (!c || !(c->path = strdup(path)) || set_defaults(&L, c) < 0) goto fail;
    if (!(root = parse_file(&L, f))) goto fail;
    if (load_root(&L, c, root) < 0) goto fail;
    if (!has_kafka_key(c, "bootstrap.servers") && c->n_kafka < CFG_MAX_KAFKA) {
        c->kafka[c->n_kafka].key = strdup("bootstrap.servers");
        c->kafka[c->n_kafka].value = strdup("127.0.0.1:19092");
        c->n_kafka++;
    }
    if (!c->internal_topic[0]) { /* <group_id>.internal, as Kafka Streams names its topics by application */
        char name[300];
        int n = snprintf(name, sizeof(name), "%s.internal", c->group_id);
        if (n < 0 || n > 249) {
            fail(&L, 0, "input.internal_topic: %s.internal is longer than 249 characters: set input.internal_topic",
                 c->group_id);
            goto fail;
        }
        free(c->internal_topic);
        if (!(c->internal_topic = strdup(name))) goto fail;
    }
    node_free(root);
    fclose(f);
    return c;
fail:
    node_free(root);
    if (f) fclose(f);
    config_free(c);
    return NULL;
}

void config_free(config_t *c) {
    if (!c) return;
    for (size_t i = 0; i < N_KEYS; i++)
        if (KEYS[i].type == T_STR) free(*(char **)((char *)c + KEYS[i].off));
    for (int i = 0; i < c->n_topics; i++) free(c->topics[i]);
    for (int i = 0; i < c->n_kafka; i++) {
        free(c->kafka[i].key);
        free(c->kafka[i].value);
    }
    rules_free(c);
    alerts_free(c);
    free(c->path);
    free(c);
}

int config_phase_index(const config_t *c, const char *name) {
    for (int i = 0; i < c->n_phases; i++)
        if (!strcmp(c->phases[i].name, name)) return i;
    return -1;
}

int config_parse_duration(const char *s, int64_t *ms) { return parse_duration(s, ms); }

static int producer_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errbuf, size_t errlen) {
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK) return 0;
    snprintf(errbuf, errlen, "kafka.%s: %s", k, config_is_secret(k) ? "invalid value" : err);
    return -1;
}

rd_kafka_conf_t *config_producer_conf(const config_t *cfg, const char *const *extra, char *errbuf,
                                      size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 0; i < cfg->n_kafka; i++)
        if (producer_set(conf, cfg->kafka[i].key, cfg->kafka[i].value, errbuf, errlen) < 0) goto fail;
    if (producer_set(conf, "enable.idempotence", "true", errbuf, errlen) < 0) goto fail;
    for (; extra && extra[0]; extra += 2)
        if (producer_set(conf, extra[0], extra[1], errbuf, errlen) < 0) goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

bool config_is_secret(const char *k) {
    return strstr(k, "password") || strstr(k, "secret") || strstr(k, "sasl.jaas") ||
           !strcmp(k, "ssl.key.pem") || !strcmp(k, "sasl.oauthbearer.config");
}

/* ---- dump ------------------------------------------------------------------------------ */

static void dump_str(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f) fprintf(out, "\\x%02x", ch); /* YAML's escape */
        else fputc(ch, out);
    }
    fputc('"', out);
}

static void dump_key(const config_t *c, const key_t_ *k, FILE *out) {
    const char *base = (const char *)c;
    char buf[32];
    fprintf(out, "  %s: ", strchr(k->name, '.') + 1);
    switch (k->type) {
    case T_STR:
        if (k->secret && **(char *const *)(base + k->off)) fputs("\"***\"", out);
        else dump_str(out, *(char *const *)(base + k->off));
        break;
    case T_ENUM: fputs(k->choices[*(const int *)(base + k->off)], out); break;
    case T_LIST:
        fputc('[', out);
        for (int i = 0; i < c->n_topics; i++) {
            if (i) fputs(", ", out);
            dump_str(out, c->topics[i]);
        }
        fputc(']', out);
        break;
    case T_DURLIST:
        fputc('[', out);
        for (int i = 0; i < *(const int *)(base + k->n_off); i++) {
            text_duration_unit(((const int64_t *)(base + k->off))[i], buf, sizeof(buf));
            fprintf(out, "%s%s", i ? ", " : "", buf);
        }
        fputc(']', out);
        break;
    case T_DUR:
        text_duration_unit(k->off == OFF(allowed_lateness_ms) ? *(const int64_t *)(base + k->off)
                                                           : *(const int *)(base + k->off),
                        buf, sizeof(buf));
        fputs(buf, out);
        break;
    case T_INT:
        if (k->off >= OFF(limits) && k->off < OFF(limits) + sizeof(decode_limits_t))
            fprintf(out, "%llu", k->off <= LIM(max_string_bytes)
                                     ? (unsigned long long)*(const size_t *)(base + k->off)
                                     : (unsigned long long)*(const uint32_t *)(base + k->off));
        else
            fprintf(out, "%d", *(const int *)(base + k->off));
        break;
    }
    fputc('\n', out);
}

static void dump_rule(const config_t *c, const cfg_rule_t *r, FILE *out) {
    const char *names[] = {"event", "channel", "path_prefix", "name", "touchpoint"};
    const char *vals[] = {r->event, r->channel, r->path_prefix, r->name, r->touchpoint_in};
    fputs("  - match: {", out);
    int first = 1;
    if (r->has_type) {
        fprintf(out, "type: %s", TYPES[r->type]);
        first = 0;
    }
    for (int i = 0; i < 5; i++) {
        if (!vals[i]) continue;
        fprintf(out, "%s%s: ", first ? "" : ", ", names[i]);
        dump_str(out, vals[i]);
        first = 0;
    }
    fputs("}", out);
    if (r->phase >= 0) fprintf(out, "\n    phase: %s", c->phases[r->phase].name);
    if (r->touchpoint) fprintf(out, "\n    touchpoint: %s", r->touchpoint);
    fputc('\n', out);
}

static void dump_alert(const alert_rule_t *r, FILE *out) {
    char buf[32];
    fputs("  - name: ", out);
    dump_str(out, r->name); /* "-" alone would be YAML syntax */
    fprintf(out, "\n    metric: %s\n    phase: %s\n    window: %s\n", alert_metric_names[r->metric],
            r->phase_name, r->window);
    if (r->by != ALERT_BY_NONE) {
        fputs(r->by == ALERT_BY_SEGMENT ? "    segment: " : "    touchpoint: ", out);
        dump_str(out, r->by_name);
        fputc('\n', out);
    }
    if (alert_metric_is_sat(r->metric)) fprintf(out, "    scope: %s\n", r->journey_scope ? "journey" : "touchpoint");
    alert_format_number(r->threshold, buf, sizeof(buf));
    fprintf(out, "    op: \"%s\"\n    threshold: %s\n", alert_op_names[r->op], buf);
    alert_format_number(r->resolve, buf, sizeof(buf));
    fprintf(out, "    resolve: %s\n", buf);
    text_duration_unit(r->for_ms, buf, sizeof(buf));
    fprintf(out, "    for: %s\n    min_n: %lld\n    no_data: %s\n    severity: ", buf, (long long)r->min_n,
            alert_nodata_names[r->no_data]);
    dump_str(out, r->severity);
    fputs("\n    labels: {", out);
    for (int i = 0; i < r->n_labels; i++) {
        fprintf(out, "%s%s: ", i ? ", " : "", r->labels[i].name);
        dump_str(out, r->labels[i].value);
    }
    fputs("}\n", out);
    if (!r->summary) return;
    fputs("    summary: ", out);
    dump_str(out, r->summary);
    fputc('\n', out);
}

void config_dump(const config_t *c, FILE *out) {
    char buf[32];
    const char *section = "";
    fprintf(out, "# effective configuration of %s (secrets shown as ***)\nkafka:\n", c->path);
    for (int i = 0; i < c->n_kafka; i++) {
        fprintf(out, "  %s: ", c->kafka[i].key);
        dump_str(out, config_is_secret(c->kafka[i].key) ? "***" : c->kafka[i].value);
        fputc('\n', out);
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t sl = (size_t)(strchr(KEYS[i].name, '.') - KEYS[i].name);
        if (strncmp(section, KEYS[i].name, sl + 1)) {
            fprintf(out, "%.*s:\n", (int)sl, KEYS[i].name);
            section = KEYS[i].name;
        }
        dump_key(c, &KEYS[i], out);
    }
    fputs("phases:\n", out);
    for (int i = 0; i < c->n_phases; i++) {
        text_duration_unit(c->phases[i].timeout_ms, buf, sizeof(buf));
        fprintf(out, "  - name: %s\n    timeout: %s\n", c->phases[i].name, buf);
    }
    fputs("rules:\n", out);
    for (int i = 0; i < c->n_rules; i++) dump_rule(c, &c->rules[i], out);
    fputs(c->n_alerts ? "alerts:\n" : "alerts: []\n", out);
    for (int i = 0; i < c->n_alerts; i++) dump_alert(&c->alerts[i], out);
}
