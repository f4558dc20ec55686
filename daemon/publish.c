/*
 * publish.c -- the metric topic's publisher thread (see publish.h).
 *
 * The thread owns its Redis connection, its idempotent producer and the
 * table of entries it has published: per entry key, a hash of the content
 * last confirmed delivered and of the content in flight. A tick reads the
 * snapshot, and for each entry whose content hash is neither produces a
 * message; the delivery report records the hash (success) or counts the
 * failure and clears the in-flight hash, so the next tick sends the entry
 * again: after librdkafka's own retries, nothing changed is ever left
 * unpublished for longer than a tick after the broker is back. Entries
 * present before and missing now get a tombstone (a message without value).
 *
 * The main loop only sets the leader flag and reads the counters, under
 * the mutex; nothing else is shared.
 *
 * Each tick also renders the snapshot's journey metrics as Prometheus
 * gauges (the funnel per phase and segment, satisfaction per phase, window,
 * scope and metric) for the HTTP /metrics page (publish_prom()).
 *
 * Owns: the thread, its store_t, its producer, the entry table, the gauges.
 */
#include "publish.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "jsonmp.h"
#include "log.h"
#include "prom.h"
#include "snapshot.h"
#include "store.h"
#include "text.h"

#define TOMBSTONE 1u          /* hash of "no value" (a content hash is never 0 or 1) */
#define MAX_ENTRIES 1000000   /* a snapshot is bounded by the caps; refuse more */
#define PUBLISH_PROM_MAX (16u << 20) /* bytes of journey gauges */

typedef struct entry {
    char *key;                /* owned */
    uint64_t acked;           /* hash of the content delivered last, 0: none */
    uint64_t inflight;        /* hash of the content produced and not yet reported, 0: none */
    uint64_t seen;            /* tick that last saw it */
} entry_t;

typedef struct dr {           /* a message's opaque: which entry, with which content */
    uint32_t idx;
    uint64_t hash;
    char *outbox;             /* an alert message: its outbox field, owned (NULL: a metric) */
} dr_t;

struct publish {
    const config_t *cfg;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, leader;         /* under mu */
    publish_stats_t stats;    /* under mu */
    store_t *st;
    rd_kafka_t *rk;
    rd_kafka_topic_t *topic;
    rd_kafka_topic_t *atopic; /* the alert topic */
    alert_state_t *ast;       /* per alert rule (cfg->alerts), as saved in Redis */
    int alerts_loaded;        /* ast and the outbox read back since this daemon became leader */
    entry_t *v;
    uint32_t n, cap;
    uint32_t *slots;          /* open addressing: index + 1 */
    uint32_t cap_slots;
    uint64_t tick;
    char computed_at[40], complete_to[48];
    snapshot_cache_t cache;   /* partitions' satisfaction counts as last read */
    prom_t *prom;             /* the journey gauges of the last snapshot */
    char *prom_text;          /* and their text, under mu */
    size_t prom_len;
};

static uint64_t hash_of(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h > TOMBSTONE ? h : h + 2;
}

static uint32_t slot_of(const publish_t *p, const char *key) {
    uint32_t k = (uint32_t)hash_of(key, strlen(key)) & (p->cap_slots - 1);
    while (p->slots[k] && strcmp(p->v[p->slots[k] - 1].key, key)) k = (k + 1) & (p->cap_slots - 1);
    return k;
}

/* The entry of key, created if new; NULL beyond MAX_ENTRIES. */
static entry_t *entry_get(publish_t *p, const char *key) {
    if (p->cap_slots) {
        uint32_t k = slot_of(p, key);
        if (p->slots[k]) return &p->v[p->slots[k] - 1];
    }
    if (p->n >= MAX_ENTRIES) return NULL;
    if (2 * (p->n + 1) > p->cap_slots) {
        uint32_t ncap = p->cap_slots ? 2 * p->cap_slots : 256;
        free(p->slots);
        if (!(p->slots = calloc(ncap, sizeof(*p->slots)))) abort();
        p->cap_slots = ncap;
        for (uint32_t i = 0; i < p->n; i++) p->slots[slot_of(p, p->v[i].key)] = i + 1;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 128;
        if (!(p->v = realloc(p->v, p->cap * sizeof(*p->v)))) abort();
    }
    entry_t *e = &p->v[p->n];
    memset(e, 0, sizeof(*e));
    if (!(e->key = strdup(key))) abort();
    p->slots[slot_of(p, key)] = ++p->n;
    return e;
}

static void alert_delivered(publish_t *p, const rd_kafka_message_t *m, dr_t *d);

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    publish_t *p = opaque;
    dr_t *d = m->_private;
    if (d->outbox) {
        alert_delivered(p, m, d);
        return;
    }
    entry_t *e = &p->v[d->idx];
    if (e->inflight == d->hash) e->inflight = 0;
    pthread_mutex_lock(&p->mu);
    if (m->err) {
        p->stats.failed++;
        log_warn("metric delivery failed", "key=\"%s\" error=\"%s\"", e->key, rd_kafka_err2str(m->err));
    } else {
        p->stats.delivered++;
        e->acked = d->hash;
    }
    pthread_mutex_unlock(&p->mu);
    free(d);
}

/* Produce value (NULL: tombstone) for e, whose content hash is h. */
static void produce(publish_t *p, entry_t *e, uint64_t h, const char *value, size_t len) {
    dr_t *d = calloc(1, sizeof(*d));
    if (!d) abort();
    d->idx = (uint32_t)(e - p->v);
    d->hash = h;
    if (rd_kafka_produce(p->topic, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)value, value ? len : 0,
                         e->key, strlen(e->key), d) != 0) {
        /* queue full or similar: the entry stays changed and goes out next tick */
        log_warn("metric not queued", "key=\"%s\" error=\"%s\"", e->key, rd_kafka_err2str(rd_kafka_last_error()));
        free(d);
        return;
    }
    e->inflight = h;
    pthread_mutex_lock(&p->mu);
    p->stats.produced++;
    pthread_mutex_unlock(&p->mu);
}

/* One entry of the snapshot being printed: publish it if it changed. */
static void on_entry(const char *kind, const char *segment, const char *key, const char *json, size_t len,
                     void *opaque) {
    publish_t *p = opaque;
    entry_t *e = entry_get(p, key);
    if (!e) return;
    e->seen = p->tick;
    uint64_t h = hash_of(json, len);
    if (h == e->acked || h == e->inflight) return;
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    if (!m) abort();
    fprintf(m, "{\"schema\":\"journeyd.metric\",\"version\":1,\"computed_at\":\"%s\",\"complete_to\":%s,\"kind\":",
            p->computed_at, p->complete_to);
    text_json_str(m, kind);
    fputs(",\"key\":", m);
    text_json_str(m, key);
    if (segment) {
        fputs(",\"segment\":", m);
        text_json_str(m, segment);
    }
    fputs(",\"entry\":", m);
    fwrite(json, 1, len, m);
    fputs("}", m);
    fclose(m);
    if (p->cfg->output_format == CFG_FORMAT_MSGPACK) {
        msgpack_sbuffer sb;
        char err[128];
        msgpack_sbuffer_init(&sb);
        if (jsonmp_pack(buf, n, &sb, err, sizeof(err)) == 0) produce(p, e, h, sb.data, sb.size);
        else log_error("metric message not encoded", "key=\"%s\" error=\"%s\"", key, err); /* a bug */
        msgpack_sbuffer_destroy(&sb);
    } else {
        produce(p, e, h, buf, n);
    }
    free(buf);
}

/* ---- the journey metrics as Prometheus gauges ---------------------------- */

static void gauge_phase(prom_t *pr, const config_t *cfg, const char *seg, const funnel_phase_t *ph,
                        const char *family) {
    static const char *const STATES[] = {"reached", "active", "progressed", "dropped", "completed"};
    for (int k = 0; k < cfg->n_phases; k++) {
        const funnel_phase_t *p = &ph[k];
        const int64_t v[] = {p->reached, p->active, p->progressed, p->dropped, p->completed};
        int64_t done = p->dropped + p->progressed + p->completed;
        if (!strcmp(family, "journeyd_funnel_journeys"))
            for (int i = 0; i < 5; i++)
                prom_sample(pr, (const char *[]){"phase", cfg->phases[k].name, "segment", seg, "state", STATES[i], NULL},
                            (double)v[i]);
        else if (!strcmp(family, "journeyd_funnel_dropoff_rate") && done)
            prom_sample(pr, (const char *[]){"phase", cfg->phases[k].name, "segment", seg, NULL},
                        (double)p->dropped / (double)done);
        else if (!strcmp(family, "journeyd_funnel_conversion") && ph[0].reached)
            prom_sample(pr, (const char *[]){"phase", cfg->phases[k].name, "segment", seg, NULL},
                        (double)p->reached / (double)ph[0].reached);
        for (int w = 0; w < cfg->n_funnel_windows; w++) {
            static const char *const OUTCOMES[] = {"reached", "progressed", "dropped", "completed"};
            const int64_t *c = p->win[w];
            int64_t wdone = c[FUNNEL_W_PROGRESSED] + c[FUNNEL_W_DROPPED] + c[FUNNEL_W_COMPLETED];
            char wn[32];
            funnel_window_name(cfg, w, wn, sizeof(wn));
            if (!strcmp(family, "journeyd_funnel_window_journeys"))
                for (int o = 0; o < FUNNEL_OUTCOMES; o++)
                    prom_sample(pr, (const char *[]){"phase", cfg->phases[k].name, "segment", seg, "window", wn,
                                                     "state", OUTCOMES[o], NULL},
                                (double)c[o]);
            else if (!strcmp(family, "journeyd_funnel_window_dropoff_rate") && wdone)
                prom_sample(pr, (const char *[]){"phase", cfg->phases[k].name, "segment", seg, "window", wn, NULL},
                            (double)c[FUNNEL_W_DROPPED] / (double)wdone);
        }
    }
}

/* The phases of segment (NULL: every segment, summed) into ph; whether
 * the snapshot has that segment. */
static int sum_phases(const snapshot_t *s, const char *segment, funnel_phase_t ph[CFG_MAX_PHASES]) {
    int found = 0;
    memset(ph, 0, CFG_MAX_PHASES * sizeof(*ph));
    for (int i = 0; i < s->snap.n_segs; i++) {
        if (segment && strcmp(s->snap.segs[i].name, segment)) continue;
        found = 1;
        for (int k = 0; k < s->cfg->n_phases; k++) {
            const funnel_phase_t *p = &s->snap.segs[i].ph[k];
            ph[k].reached += p->reached, ph[k].active += p->active, ph[k].progressed += p->progressed;
            ph[k].dropped += p->dropped, ph[k].completed += p->completed;
            for (int w = 0; w < s->cfg->n_funnel_windows; w++)
                for (int o = 0; o < FUNNEL_OUTCOMES; o++) ph[k].win[w][o] += p->win[w][o];
        }
    }
    return found;
}

static void gauge_funnel(prom_t *pr, const snapshot_t *s) {
    static const char *const FAM[][2] = {
        {"journeyd_funnel_journeys", "Journeys per phase, segment and state (reached, active, progressed, dropped, completed)."},
        {"journeyd_funnel_dropoff_rate", "dropped / (dropped + progressed + completed) per phase and segment."},
        {"journeyd_funnel_conversion", "reached / reached in the first phase, per phase and segment."},
        {"journeyd_funnel_window_journeys",
         "Journeys per phase, segment and outcome (reached, progressed, dropped, completed) whose outcome's "
         "event time is in the window (metrics.windows)."},
        {"journeyd_funnel_window_dropoff_rate",
         "dropped / (dropped + progressed + completed) per phase and segment over the window."}};
    const config_t *cfg = s->cfg;
    funnel_phase_t all[CFG_MAX_PHASES];
    sum_phases(s, NULL, all);
    for (int f = 0; f < 5; f++) {
        if (f >= 3 && !cfg->n_funnel_windows) break;
        prom_family(pr, FAM[f][0], PROM_GAUGE, FAM[f][1]);
        gauge_phase(pr, cfg, "all", all, FAM[f][0]);
        for (int i = 0; i < s->snap.n_segs; i++) gauge_phase(pr, cfg, s->snap.segs[i].name, s->snap.segs[i].ph, FAM[f][0]);
    }
}

typedef struct sat_gauges {
    prom_t *pr;
    int score;                /* the score family, else the responses one */
} sat_gauges_t;

static void gauge_sat_row(const char *phase, const char *window, const char *breakdown, const char *name,
                          const char *scope, ev_metric_t m, const sat_result_t *r, void *opaque) {
    const sat_gauges_t *g = opaque;
    (void)name;
    if (strcmp(breakdown, "all")) return;
    const char *labels[] = {"phase", phase, "window", window, "scope", scope, "metric", sat_metric_name(m), NULL};
    if (!g->score) prom_sample(g->pr, labels, (double)r->n);
    else if (r->sufficient) prom_sample(g->pr, labels, r->score);
}

static void gauge_sat(prom_t *pr, const snapshot_t *s) {
    sat_gauges_t g = {pr, 0};
    prom_family(pr, "journeyd_satisfaction_responses", PROM_GAUGE,
                "Survey answers per phase, window, scope and metric (nps, csat, ces).");
    sat_each_row(s->sat, s->sat_wm, s->n_sat, &s->satw, s->phases, s->cfg->n_phases, s->cfg->sat_min_n,
                 gauge_sat_row, &g);
    g.score = 1;
    prom_family(pr, "journeyd_satisfaction_score", PROM_GAUGE,
                "NPS (-100..100), CSAT (% satisfied) or CES (mean) per phase, window and scope, "
                "when it has at least satisfaction.min_n answers.");
    sat_each_row(s->sat, s->sat_wm, s->n_sat, &s->satw, s->phases, s->cfg->n_phases, s->cfg->sat_min_n,
                 gauge_sat_row, &g);
}

/* Each alert rule's state as of the last evaluation (0 normal, 1 pending, 2 firing). */
static void gauge_alerts(publish_t *p) {
    if (!p->cfg->n_alerts) return;
    prom_family(p->prom, "journeyd_alert_state", PROM_GAUGE,
                "Alert rule state: 0 normal, 1 pending, 2 firing (as of the last evaluation).");
    for (int i = 0; i < p->cfg->n_alerts; i++)
        prom_sample(p->prom,
                    (const char *[]){"rule", p->cfg->alerts[i].name, "severity", p->cfg->alerts[i].severity, NULL},
                    (double)p->ast[i].status);
}

/* The gauges of snapshot s, kept for publish_prom(). */
static void render_gauges(publish_t *p, const snapshot_t *s) {
    const char *text;
    size_t len;
    char err[256];
    prom_reset(p->prom);
    gauge_funnel(p->prom, s);
    gauge_sat(p->prom, s);
    gauge_alerts(p);
    if (prom_text(p->prom, &text, &len, err, sizeof(err)) < 0) {
        log_warn("journey gauges not rendered", "error=\"%s\"", err);
        return;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) abort();
    memcpy(copy, text, len);
    pthread_mutex_lock(&p->mu);
    free(p->prom_text);
    p->prom_text = copy;
    p->prom_len = len;
    pthread_mutex_unlock(&p->mu);
}

char *publish_prom(publish_t *p, size_t *len) {
    pthread_mutex_lock(&p->mu);
    char *copy = malloc(p->prom_len + 1);
    if (!copy) abort();
    if (p->prom_len) memcpy(copy, p->prom_text, p->prom_len);
    *len = p->prom_len;
    pthread_mutex_unlock(&p->mu);
    return copy;
}

/* ---- alert rules (alert.h) -------------------------------------------------
 * Evaluated on each snapshot at its event time (complete_to), by the leader
 * only. A rule's state is saved in the hash <prefix>:alerts (field: the
 * rule's name) whenever it changes; a message is first saved there too, in
 * the same transaction, as an outbox field "<rule>|out|<id>|<status>", and
 * that field is deleted once the broker has the message. A daemon that
 * becomes leader reads the states back and sends every message left in the
 * outbox again: a message is never lost, and a re-sent one carries its id. */

typedef struct sat_pick {
    const alert_rule_t *r;
    int found;
    double value;
    int64_t n;
} sat_pick_t;

static void pick_sat_row(const char *phase, const char *window, const char *breakdown, const char *name,
                         const char *scope, ev_metric_t m, const sat_result_t *res, void *opaque) {
    sat_pick_t *k = opaque;
    const alert_rule_t *r = k->r;
    static const char *const BY[] = {"all", "segment", "touchpoint"};
    ev_metric_t want = r->metric == ALERT_NPS ? EV_METRIC_NPS : r->metric == ALERT_CSAT ? EV_METRIC_CSAT : EV_METRIC_CES;
    if (m != want || strcmp(scope, r->journey_scope ? "journey" : "touchpoint") || strcmp(phase, r->phase_name) ||
        strcmp(window, r->window) ||
        strcmp(breakdown, BY[r->by]) || strcmp(name, r->by == ALERT_BY_NONE ? "all" : r->by_name))
        return;
    k->found = res->sufficient;
    k->value = res->score;
    k->n = res->n;
}

/* The funnel value of r (since the start, or over its window): 1, or 0
 * without data. */
static int funnel_value(const snapshot_t *s, const alert_rule_t *r, double *v, int64_t *n) {
    funnel_phase_t ph[CFG_MAX_PHASES];
    int found = sum_phases(s, r->by == ALERT_BY_SEGMENT ? r->by_name : NULL, ph);
    const funnel_phase_t *p = &ph[r->phase];
    int64_t reached = p->reached, first = ph[0].reached, progressed = p->progressed, dropped = p->dropped,
            completed = p->completed;
    if (r->window_ix >= 0) { /* config.c: a funnel window, and not `active` */
        const int64_t *c = p->win[r->window_ix];
        reached = c[FUNNEL_W_REACHED], first = ph[0].win[r->window_ix][FUNNEL_W_REACHED];
        progressed = c[FUNNEL_W_PROGRESSED], dropped = c[FUNNEL_W_DROPPED], completed = c[FUNNEL_W_COMPLETED];
    }
    const int64_t counts[] = {reached, p->active, progressed, dropped, completed};
    int64_t done = dropped + progressed + completed;
    if (r->metric == ALERT_DROPOFF_RATE) *n = done, *v = done ? (double)dropped / (double)done : 0;
    else if (r->metric == ALERT_CONVERSION) *n = first, *v = *n ? (double)reached / (double)*n : 0;
    else *n = counts[r->metric - ALERT_REACHED], *v = (double)*n;
    return found && *n > 0;
}

static int rule_value(const snapshot_t *s, const alert_rule_t *r, double *v, int64_t *n) {
    if (!alert_metric_is_sat(r->metric)) return funnel_value(s, r, v, n);
    sat_pick_t k = {r, 0, 0, 0};
    sat_each_row(s->sat, s->sat_wm, s->n_sat, &s->satw, s->phases, s->cfg->n_phases, s->cfg->sat_min_n,
                 pick_sat_row, &k);
    *v = k.value;
    *n = k.n;
    return k.found;
}

static void alert_produce(publish_t *p, const char *rule, const char *outbox, const char *json) {
    dr_t *d = calloc(1, sizeof(*d));
    if (!d || !(d->outbox = strdup(outbox))) abort();
    if (rd_kafka_produce(p->atopic, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)json, strlen(json), rule,
                         strlen(rule), d) != 0) {
        log_warn("alert not queued: sent again when this daemon next becomes leader", "rule=%s error=\"%s\"",
                 rule, rd_kafka_err2str(rd_kafka_last_error()));
        free(d->outbox);
        free(d);
    }
}

static void alert_delivered(publish_t *p, const rd_kafka_message_t *m, dr_t *d) {
    char err[256];
    if (m->err) {
        log_warn("alert delivery failed: sent again when this daemon next becomes leader", "field=\"%s\" error=\"%s\"",
                 d->outbox, rd_kafka_err2str(m->err));
        p->alerts_loaded = 0; /* read the outbox again at the next tick */
    } else if (store_alerts_save(p->st, 1, (const char *const[]){d->outbox}, (const char *const[]){NULL}, err,
                                 sizeof(err)) != STORE_OK) {
        log_warn("alert outbox not cleared (the message may be sent again, with its id)", "error=\"%s\"", err);
    }
    free(d->outbox);
    free(d);
}

static void alert_loaded(const char *field, const char *value, void *opaque) {
    publish_t *p = opaque;
    const char *bar = strchr(field, '|');
    size_t len = bar ? (size_t)(bar - field) : strlen(field);
    for (int i = 0; i < p->cfg->n_alerts; i++) {
        const alert_rule_t *r = &p->cfg->alerts[i];
        if (strlen(r->name) != len || strncmp(r->name, field, len)) continue;
        if (bar) alert_produce(p, r->name, field, value); /* left in the outbox */
        else if (alert_state_decode(value, &p->ast[i]) < 0)
            log_warn("unreadable alert state ignored", "rule=%s state=\"%s\"", r->name, value);
    }
}

static void alerts_eval(publish_t *p, const snapshot_t *s) {
    char err[256];
    if (!p->cfg->n_alerts || s->snap.watermark == INT64_MAX || s->snap.watermark == INT64_MIN) return;
    if (!p->alerts_loaded) {
        memset(p->ast, 0, (size_t)p->cfg->n_alerts * sizeof(*p->ast));
        if (store_alerts_load(p->st, alert_loaded, p, err, sizeof(err)) != STORE_OK) {
            log_warn("alert states not read", "error=\"%s\"", err);
            return;
        }
        p->alerts_loaded = 1;
    }
    for (int i = 0; i < p->cfg->n_alerts; i++) {
        const alert_rule_t *r = &p->cfg->alerts[i];
        double v;
        int64_t n;
        int have = rule_value(s, r, &v, &n);
        alert_state_t was = p->ast[i];
        alert_msg_t msg;
        char before[ALERT_STATE_MAX], after[ALERT_STATE_MAX], outbox[ALERT_NAME_MAX + 48], *json = NULL;
        size_t jlen = 0;
        int send = alert_eval(r, &p->ast[i], have, v, n, s->snap.watermark, &msg);
        alert_state_encode(&was, before, sizeof(before));
        alert_state_encode(&p->ast[i], after, sizeof(after));
        if (!send && !strcmp(before, after)) continue;
        const char *fields[2] = {r->name, outbox}, *values[2] = {after, NULL};
        if (send) {
            FILE *m = open_memstream(&json, &jlen);
            if (!m) abort();
            alert_msg_json(&msg, m);
            fclose(m);
            snprintf(outbox, sizeof(outbox), "%s|out|%s|%s", r->name, msg.id, msg.firing ? "firing" : "resolved");
            values[1] = json;
        }
        if (store_alerts_save(p->st, send ? 2 : 1, fields, values, err, sizeof(err)) != STORE_OK) {
            log_warn("alert state not saved: evaluated again at the next tick", "rule=%s error=\"%s\"", r->name, err);
            p->ast[i] = was;
        } else if (send) {
            log_info(msg.firing ? "alert firing" : "alert resolved", "rule=%s id=%s", r->name, msg.id);
            alert_produce(p, r->name, outbox, json);
        }
        free(json);
    }
}

static int64_t wall_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void publish_tick(publish_t *p) {
    snapshot_t s;
    char err[512];
    int64_t now = wall_ms(); /* computed_at: the read starts now, so it holds every commit before */
    if (snapshot_read(&s, p->st, p->cfg, &p->cache, err, sizeof(err)) < 0) {
        log_warn("metric snapshot not read", "error=\"%s\"", err);
        pthread_mutex_lock(&p->mu);
        p->stats.snapshot_errors++;
        pthread_mutex_unlock(&p->mu);
        char e2[256];
        store_reconnect(p->st, e2, sizeof(e2));
        return;
    }
    int64_t t_read = wall_ms();
    p->tick++;
    text_time(now, p->computed_at, sizeof(p->computed_at));
    if (s.snap.watermark != INT64_MAX && s.snap.watermark > INT64_MIN) {
        char t[40];
        text_time(s.snap.watermark, t, sizeof(t));
        snprintf(p->complete_to, sizeof(p->complete_to), "\"%s\"", t);
    } else {
        snprintf(p->complete_to, sizeof(p->complete_to), "null");
    }
    FILE *sink = fopen("/dev/null", "w");
    if (!sink) abort();
    snapshot_print_json(&s, now, on_entry, p, sink);
    fclose(sink);
    uint64_t live = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        entry_t *e = &p->v[i];
        if (e->seen == p->tick) live++;
        else if (e->acked != TOMBSTONE && e->inflight != TOMBSTONE) produce(p, e, TOMBSTONE, NULL, 0);
    }
    pthread_mutex_lock(&p->mu);
    p->stats.snapshots++;
    p->stats.last_ms = now;
    p->stats.complete_to = s.snap.watermark != INT64_MAX ? s.snap.watermark : INT64_MIN;
    p->stats.entries = live;
    pthread_mutex_unlock(&p->mu);
    int64_t t_print = wall_ms();
    alerts_eval(p, &s);
    render_gauges(p, &s);
    snapshot_free(&s);
    log_debug("metric snapshot published",
              "read_ms=%lld print_ms=%lld eval_ms=%lld entries=%llu sat_full_reads=%llu sat_tail_reads=%llu "
              "sat_catchup_reads=%llu",
              (long long)(t_read - now), (long long)(t_print - t_read), (long long)(wall_ms() - t_print),
              (unsigned long long)live, (unsigned long long)p->cache.full_reads,
              (unsigned long long)p->cache.tail_reads, (unsigned long long)p->cache.catchup_reads);
}

static void *publish_main(void *arg) {
    publish_t *p = arg;
    pthread_setname_np(pthread_self(), "jd-publish"); /* for top -H, perf and the benchmarks */
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + (int64_t)p->cfg->publish_interval_ms * 1000000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) {}
        if (p->stop) break;
        int leader = p->leader;
        pthread_mutex_unlock(&p->mu);
        if (!leader) p->alerts_loaded = 0; /* read the states back when leader again */
        rd_kafka_poll(p->rk, 0);
        if (leader) publish_tick(p);
        rd_kafka_poll(p->rk, 0);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void publish_free(publish_t *p) {
    if (p->topic) rd_kafka_topic_destroy(p->topic);
    if (p->atopic) rd_kafka_topic_destroy(p->atopic);
    free(p->ast);
    if (p->rk) rd_kafka_destroy(p->rk);
    store_close(p->st);
    snapshot_cache_free(&p->cache);
    prom_free(p->prom);
    free(p->prom_text);
    for (uint32_t i = 0; i < p->n; i++) free(p->v[i].key);
    free(p->v);
    free(p->slots);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

publish_t *publish_start(const config_t *cfg, char *errbuf, size_t errlen) {
    publish_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *conf = NULL;
    char err[512];
    if (!p) abort();
    p->cfg = cfg;
    if (!(p->prom = prom_new(PUBLISH_PROM_MAX))) abort();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!(p->st = store_open(cfg, errbuf, errlen))) goto fail;
    if (!(conf = config_producer_conf(cfg, (const char *const[]){"linger.ms", "20", "compression.codec", "lz4", NULL},
                                      errbuf, errlen)))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
        snprintf(errbuf, errlen, "metric producer: %s", err);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    if (!(p->topic = rd_kafka_topic_new(p->rk, cfg->metrics_topic, NULL))) {
        snprintf(errbuf, errlen, "metric topic %s: %s", cfg->metrics_topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (!(p->atopic = rd_kafka_topic_new(p->rk, cfg->alerts_topic, NULL))) {
        snprintf(errbuf, errlen, "alert topic %s: %s", cfg->alerts_topic, rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (!(p->ast = calloc((size_t)cfg->n_alerts + 1, sizeof(*p->ast)))) abort();
    if (pthread_create(&p->th, NULL, publish_main, p) != 0) {
        snprintf(errbuf, errlen, "metric publisher: cannot start its thread");
        goto fail;
    }
    return p;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    publish_free(p);
    return NULL;
}

void publish_set_leader(publish_t *p, int leader) {
    pthread_mutex_lock(&p->mu);
    if (leader != p->leader) log_info(leader ? "publishing metrics" : "no longer publishing metrics", "topic=%s",
                                      p->cfg->metrics_topic);
    p->leader = leader;
    pthread_mutex_unlock(&p->mu);
}

void publish_get_stats(publish_t *p, publish_stats_t *out) {
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    pthread_mutex_unlock(&p->mu);
}

void publish_stop(publish_t *p, int timeout_ms) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    if (rd_kafka_flush(p->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn("metric flush timed out", "pending=%d", rd_kafka_outq_len(p->rk));
    publish_free(p);
}
