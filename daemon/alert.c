/*
 * alert.c -- alert rules (issue #6): the evaluation with its hysteresis, the
 * id of an episode, the message as a JSON document shaped like an
 * Alertmanager webhook payload (schemas/alert.schema.json), and the state's
 * string form. Pure logic over plain structs: the daemon passes the metric's
 * value and the time in, sends the messages and keeps the states in Redis.
 * Owns nothing but what alert_rule_free() releases.
 *
 * STATES. A rule watches one series (a metric of one phase over one window,
 * overall or for one segment or touchpoint) and has one alert_state_t. At an
 * evaluation the series has
 *
 *     DATA    have_data, a finite value and n >= min_n;
 *     HOLDS   DATA and value <op> threshold;
 *     CLEAR   DATA and value strictly beyond resolve, away from the firing
 *             side: value < resolve for > and >=, value > resolve for < and <=.
 *
 *   NORMAL    Nothing to report, or nothing known.
 *               HOLDS                            -> PENDING, since = now, and
 *                                                   on to FIRING at once if for_ms is 0
 *   PENDING   The condition holds since `since`, not yet for for_ms.
 *               HOLDS and now - since >= for_ms  -> FIRING, starts = now: `firing` sent
 *               HOLDS                            -> PENDING
 *               otherwise (no DATA included)     -> NORMAL, nothing sent
 *   FIRING    The episode that fired at `starts` is on.
 *               CLEAR                            -> NORMAL: `resolved` sent
 *               no DATA and no_data is resolve   -> NORMAL: `resolved` sent, without a value
 *               otherwise                        -> FIRING, nothing sent
 *
 * RESOLVED is not a state: it is the FIRING -> NORMAL transition, the one
 * that sends the resolved message.
 *
 * INVARIANTS
 *   - Messages come in pairs, one `firing` when FIRING is entered and one
 *     `resolved` when it is left; no other transition sends anything. Both
 *     carry alert_id(rule, starts), so either, re-sent after a restart (the
 *     state restored by alert_state_decode()), is the same message again and
 *     a consumer deduplicates by (id, status).
 *   - No flapping: between the two messages of an episode the value has gone
 *     from the firing side of threshold to strictly beyond resolve, which is
 *     never on the firing side (alert_resolve_ok(); config.c refuses such a
 *     rule). A value that stays between resolve and threshold sends nothing,
 *     whatever the state.
 *   - NORMAL: since = starts = 0. PENDING: starts = 0. FIRING: since <= starts.
 *     alert_state_decode() refuses any other state.
 *   - value and n are those of the last evaluation with DATA; they take no
 *     part in the transitions.
 */
#include "alert.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

const char *const alert_metric_names[] = {"dropoff_rate", "conversion", "reached", "active", "progressed",
                                          "dropped", "completed", "nps", "csat", "ces", NULL};
const char *const alert_op_names[] = {">", ">=", "<", "<=", NULL};
const char *const alert_nodata_names[] = {"keep", "resolve", NULL};

static const char *const BY_NAMES[] = {"", "segment", "touchpoint"};
static const char *const BUILTIN_LABELS[] = {"alertname", "metric", "phase", "window", "severity",
                                             "segment", "touchpoint", "scope", NULL};

void alert_rule_free(alert_rule_t *r) {
    for (int i = 0; i < r->n_labels; i++) {
        free(r->labels[i].name);
        free(r->labels[i].value);
    }
    r->n_labels = 0;
    free(r->summary);
    r->summary = NULL;
}

/* Whether op fires above the threshold (> and >=) rather than below it. */
static int fires_above(alert_op_t op) { return op == ALERT_GT || op == ALERT_GE; }

int alert_resolve_ok(alert_op_t op, double threshold, double resolve) {
    return fires_above(op) ? resolve <= threshold : resolve >= threshold;
}

int alert_metric_is_sat(alert_metric_t m) { return m == ALERT_NPS || m == ALERT_CSAT || m == ALERT_CES; }

static int ident_char(char c, int first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

int alert_label_check(const char *name, char *errbuf, size_t errlen) {
    size_t n = strlen(name);
    int ok = n > 0 && n <= ALERT_LABEL_MAX;
    for (size_t i = 0; ok && i < n; i++) ok = ident_char(name[i], i == 0);
    if (!ok) {
        snprintf(errbuf, errlen, "label '%s': the name must be 1..%d characters matching [a-zA-Z_][a-zA-Z0-9_]*",
                 name, ALERT_LABEL_MAX);
        return -1;
    }
    for (int i = 0; BUILTIN_LABELS[i]; i++)
        if (!strcmp(name, BUILTIN_LABELS[i])) {
            snprintf(errbuf, errlen, "label '%s' is set by journeyd", name);
            return -1;
        }
    return 0;
}

void alert_format_number(double v, char *buf, size_t cap) {
    for (int prec = 15; prec < 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
    snprintf(buf, cap, "%.17g", v);
}

/* ---- summary templates ------------------------------------------------------------ */

typedef enum { P_RULE, P_METRIC, P_OP, P_PHASE, P_WINDOW, P_SEGMENT, P_TOUCHPOINT, P_VALUE,
               P_THRESHOLD, P_RESOLVE, P_N } placeholder_t;
static const char *const PLACEHOLDERS[] = {"rule", "metric", "op", "phase", "window", "segment",
                                           "touchpoint", "value", "threshold", "resolve", "n", NULL};

/* At p, a '{': the placeholder "{name}" starts, its length in *len; -1 if
 * "{name}" names no placeholder (*len set too); -2 if p starts no "{name}"
 * at all (a '{' kept as it is; *len untouched). */
static int placeholder(const char *p, size_t *len) {
    size_t k = 1;
    while ((p[k] >= 'a' && p[k] <= 'z') || p[k] == '_') k++;
    if (k == 1 || p[k] != '}') return -2;
    *len = k + 1;
    for (int i = 0; PLACEHOLDERS[i]; i++)
        if (strlen(PLACEHOLDERS[i]) == k - 1 && !strncmp(p + 1, PLACEHOLDERS[i], k - 1)) return i;
    return -1;
}

int alert_summary_check(const char *tmpl, char *errbuf, size_t errlen) {
    size_t len = 0;
    if (strlen(tmpl) > ALERT_SUMMARY_MAX) {
        snprintf(errbuf, errlen, "summary: longer than %d bytes", ALERT_SUMMARY_MAX);
        return -1;
    }
    for (const char *p = strchr(tmpl, '{'); p; p = strchr(p + 1, '{')) {
        if (placeholder(p, &len) != -1) continue;
        snprintf(errbuf, errlen, "summary: unknown placeholder '%.*s' (known: {rule}, {metric}, {op}, "
                 "{phase}, {window}, {segment}, {touchpoint}, {value}, {threshold}, {resolve}, {n})",
                 (int)len, p);
        return -1;
    }
    return 0;
}

/* The text placeholder p stands for in message m; numbers go to tmp (>= 32 bytes). */
static const char *placeholder_text(const alert_msg_t *m, placeholder_t p, char *tmp, size_t cap) {
    const alert_rule_t *r = m->rule;
    switch (p) {
    case P_RULE: return r->name;
    case P_METRIC: return alert_metric_names[r->metric];
    case P_OP: return alert_op_names[r->op];
    case P_PHASE: return r->phase_name;
    case P_WINDOW: return r->window;
    case P_SEGMENT: return r->by == ALERT_BY_SEGMENT ? r->by_name : "";
    case P_TOUCHPOINT: return r->by == ALERT_BY_TOUCHPOINT ? r->by_name : "";
    case P_VALUE:
        if (!m->have_value) return "no data";
        alert_format_number(m->value, tmp, cap);
        return tmp;
    case P_THRESHOLD: alert_format_number(r->threshold, tmp, cap); return tmp;
    case P_RESOLVE: alert_format_number(r->resolve, tmp, cap); return tmp;
    case P_N: text_dec(tmp, m->n); return tmp;
    }
    return "";
}

/* m's summary into buf (cut at cap - 1 bytes; never cut when cap is at
 * least 16 times ALERT_SUMMARY_MAX: no placeholder grows 16-fold). */
static void render_summary(const alert_msg_t *m, char *buf, size_t cap) {
    const char *t = m->rule->summary ? m->rule->summary : ALERT_DEFAULT_SUMMARY;
    char tmp[32];
    size_t used = 0;
    while (*t && used + 1 < cap) {
        size_t len = 1;
        int p = *t == '{' ? placeholder(t, &len) : -2;
        const char *s = p >= 0 ? placeholder_text(m, (placeholder_t)p, tmp, sizeof(tmp)) : t;
        size_t n = p >= 0 ? strlen(s) : len;
        if (n > cap - 1 - used) n = cap - 1 - used;
        memcpy(buf + used, s, n);
        used += n;
        t += len;
    }
    buf[used] = '\0';
}

/* ---- evaluation ------------------------------------------------------------------- */

static int holds(const alert_rule_t *r, double v) {
    switch (r->op) {
    case ALERT_GT: return v > r->threshold;
    case ALERT_GE: return v >= r->threshold;
    case ALERT_LT: return v < r->threshold;
    case ALERT_LE: return v <= r->threshold;
    }
    return 0;
}

static int clear(const alert_rule_t *r, double v) { return fires_above(r->op) ? v < r->resolve : v > r->resolve; }

static void to_normal(alert_state_t *s) {
    s->status = ALERT_NORMAL;
    s->since_ms = 0;
    s->starts_ms = 0;
}

/* The message of the transition into (firing) or out of FIRING, s still
 * holding the episode's start. */
static void message(const alert_rule_t *r, const alert_state_t *s, int firing, int data, double value,
                    int64_t n, int64_t now_ms, alert_msg_t *out) {
    memset(out, 0, sizeof(*out));
    out->rule = r;
    out->firing = firing;
    out->have_value = data;
    out->value = data ? value : 0;
    out->n = n;
    out->starts_ms = s->starts_ms;
    out->ends_ms = firing ? 0 : now_ms;
    alert_id(r, s->starts_ms, out->id);
}

int alert_eval(const alert_rule_t *r, alert_state_t *s, int have_data, double value, int64_t n,
               int64_t now_ms, alert_msg_t *out) {
    if (!have_data) n = 0;
    int data = have_data && isfinite(value) && n >= r->min_n;
    if (data) {
        s->value = value;
        s->n = n;
    }
    if (s->status == ALERT_FIRING) {
        int ends = data ? clear(r, value) : r->no_data == ALERT_NODATA_RESOLVE;
        if (!ends) return 0;
        message(r, s, 0, data, value, n, now_ms, out);
        to_normal(s);
        return 1;
    }
    if (!data || !holds(r, value)) {
        to_normal(s);
        return 0;
    }
    if (s->status == ALERT_NORMAL) {
        s->status = ALERT_PENDING;
        s->since_ms = now_ms;
    }
    if (now_ms - s->since_ms < r->for_ms) return 0;
    s->status = ALERT_FIRING;
    s->starts_ms = now_ms;
    message(r, s, 1, 1, value, n, now_ms, out);
    return 1;
}

static uint64_t fnv1a(uint64_t h, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void alert_id(const alert_rule_t *r, int64_t starts_ms, char out[ALERT_ID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    char dec[24];
    size_t n = text_dec(dec, starts_ms);
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv1a(h, r->name, strlen(r->name) + 1); /* the NULs keep the fields apart */
    h = fnv1a(h, BY_NAMES[r->by], strlen(BY_NAMES[r->by]) + 1);
    h = fnv1a(h, r->by_name, strlen(r->by_name) + 1);
    h = fnv1a(h, dec, n);
    for (int i = ALERT_ID_LEN - 1; i >= 0; i--) {
        out[i] = hex[h & 15];
        h >>= 4;
    }
    out[ALERT_ID_LEN] = '\0';
}

/* ---- the message as JSON ---------------------------------------------------------- */

static void json_pair(FILE *out, const char *sep, const char *key, const char *value) {
    fputs(sep, out);
    text_json_str(out, key);
    fputc(':', out);
    text_json_str(out, value);
}

static void json_labels(const alert_rule_t *r, FILE *out) {
    json_pair(out, "{", "alertname", r->name);
    json_pair(out, ",", "metric", alert_metric_names[r->metric]);
    json_pair(out, ",", "phase", r->phase_name);
    json_pair(out, ",", "window", r->window);
    json_pair(out, ",", "severity", r->severity);
    if (r->by != ALERT_BY_NONE) json_pair(out, ",", BY_NAMES[r->by], r->by_name);
    if (r->journey_scope) json_pair(out, ",", "scope", "journey"); /* (touchpoint: no label, as before) */
    for (int i = 0; i < r->n_labels; i++) json_pair(out, ",", r->labels[i].name, r->labels[i].value);
    fputc('}', out);
}

static void json_annotations(const alert_msg_t *m, FILE *out) {
    char summary[16 * ALERT_SUMMARY_MAX], num[32];
    render_summary(m, summary, sizeof(summary));
    json_pair(out, "{", "summary", summary);
    if (m->have_value) alert_format_number(m->value, num, sizeof(num));
    json_pair(out, ",", "value", m->have_value ? num : "no data");
    alert_format_number(m->rule->threshold, num, sizeof(num));
    json_pair(out, ",", "threshold", num);
    fputc('}', out);
}

/* The fields journeyd adds to the Alertmanager ones. */
static void json_journeyd(const alert_msg_t *m, FILE *out) {
    char num[32];
    fprintf(out, ",\"id\":\"%s\"", m->id);
    json_pair(out, ",", "rule", m->rule->name);
    if (m->have_value) alert_format_number(m->value, num, sizeof(num));
    fprintf(out, ",\"value\":%s", m->have_value ? num : "null");
    alert_format_number(m->rule->threshold, num, sizeof(num));
    fprintf(out, ",\"threshold\":%s", num);
    alert_format_number(m->rule->resolve, num, sizeof(num));
    fprintf(out, ",\"resolve_threshold\":%s,\"n\":%lld}", num, (long long)m->n);
}

void alert_msg_json(const alert_msg_t *m, FILE *out) {
    const char *status = m->firing ? "firing" : "resolved";
    char starts[32], ends[32];
    text_time(m->starts_ms, starts, sizeof(starts));
    if (m->firing) snprintf(ends, sizeof(ends), "0001-01-01T00:00:00Z");
    else text_time(m->ends_ms, ends, sizeof(ends));
    fputs("{\"version\":\"4\"", out);
    json_pair(out, ",", "groupKey", m->rule->name);
    fprintf(out, ",\"truncatedAlerts\":0,\"status\":\"%s\",\"receiver\":\"journeyd\"", status);
    json_pair(out, ",\"groupLabels\":{", "alertname", m->rule->name);
    fputs("},\"commonLabels\":", out);
    json_labels(m->rule, out);
    fputs(",\"commonAnnotations\":", out);
    json_annotations(m, out);
    fprintf(out, ",\"externalURL\":\"\",\"alerts\":[{\"status\":\"%s\",\"labels\":", status);
    json_labels(m->rule, out);
    fputs(",\"annotations\":", out);
    json_annotations(m, out);
    fprintf(out, ",\"startsAt\":\"%s\",\"endsAt\":\"%s\",\"generatorURL\":\"\",\"fingerprint\":\"%s\"}]",
            starts, ends, m->id);
    json_journeyd(m, out);
}

/* ---- the state as a string -------------------------------------------------------- */

static const char STATUS_CHARS[] = "NPF"; /* by alert_status_t */

int alert_state_encode(const alert_state_t *s, char *buf, size_t cap) {
    char v[32];
    alert_format_number(s->value, v, sizeof(v));
    int n = snprintf(buf, cap, "1:%c:%lld:%lld:%s:%lld", STATUS_CHARS[s->status], (long long)s->since_ms,
                     (long long)s->starts_ms, v, (long long)s->n);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* A decimal of digits only at *p, ended by sep; *p moves past sep. */
static int next_int(const char **p, char sep, int64_t *v) {
    char *end;
    if (**p < '0' || **p > '9') return -1;
    errno = 0;
    long long x = strtoll(*p, &end, 10);
    if (errno || *end != sep) return -1;
    *v = x;
    *p = end + 1;
    return 0;
}

/* A finite number at *p, ended by sep; *p moves past sep. */
static int next_num(const char **p, char sep, double *v) {
    char *end;
    if (**p != '-' && (**p < '0' || **p > '9')) return -1;
    double x = strtod(*p, &end);
    if (*end != sep || !isfinite(x)) return -1;
    *v = x;
    *p = end + 1;
    return 0;
}

int alert_state_decode(const char *text, alert_state_t *s) {
    alert_state_t t;
    memset(&t, 0, sizeof(t));
    if (strncmp(text, "1:", 2) || !text[2] || !strchr(STATUS_CHARS, text[2]) || text[3] != ':') return -1;
    t.status = (alert_status_t)(strchr(STATUS_CHARS, text[2]) - STATUS_CHARS);
    const char *p = text + 4;
    if (next_int(&p, ':', &t.since_ms) < 0 || next_int(&p, ':', &t.starts_ms) < 0 ||
        next_num(&p, ':', &t.value) < 0 || next_int(&p, '\0', &t.n) < 0)
        return -1;
    int ok = t.status == ALERT_NORMAL    ? t.since_ms == 0 && t.starts_ms == 0
             : t.status == ALERT_PENDING ? t.starts_ms == 0
                                         : t.since_ms <= t.starts_ms;
    if (!ok) return -1;
    *s = t;
    return 0;
}
