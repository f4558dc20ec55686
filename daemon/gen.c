/*
 * gen.c -- simulates customers travelling the four phases of the default
 * model and produces their events, with the ground truth of what each
 * customer did. Pure: events go to a callback, truth to FILEs the caller
 * owns (one line per journey, one line per survey answer; see gen.h).
 *
 * Customers arrive over the simulated period (exponential gaps). Each starts
 * in `search`; in every phase it draws a number of touchpoints (1 + Poisson),
 * then moves on or drops off with the phase's probability; `loyalty` ends in
 * completion. Touchpoints are drawn from the channels of each phase, with the
 * event shapes the default config classifies (config/journeyd.yaml). Survey
 * answers follow touchpoints at a rate, with per-phase score distributions.
 * Active customers sit in a min-heap by next event time, so memory holds
 * only the customers in flight, never the event stream.
 *
 * Dirt: duplicates (the same bytes again, up to 30 s later), out-of-order
 * delivery (up to max_lateness late), anonymous customers identified in the
 * information phase, invalid events of six kinds. Delivery order comes from
 * a second heap keyed by delivery time.
 *
 * Deterministic: one xoshiro256** stream seeded by splitmix64(seed); the only
 * floating point is in drawing, identical under IEEE 754 everywhere.
 */
#include "gen.h"

#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

const char *const GEN_INVALID_KINDS[6] = {"bad_json", "missing_message_id", "nps_out_of_range",
                                          "unknown_type", "bad_timestamp", "long_message_id"};
const char *const GEN_PHASE_NAMES[GEN_PHASES] = {"search", "information", "purchase", "loyalty"};

void gen_defaults(gen_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->seed = 1;
    o->customers = 10000;
    o->start_ms = 1767571200000LL; /* 2026-01-05T00:00:00Z */
    o->period_ms = 86400000LL;
    o->drop[0] = 0.35;
    o->drop[1] = 0.30;
    o->drop[2] = 0.20;
    o->mean_touchpoints[0] = 3.0;
    o->mean_touchpoints[1] = 5.5;
    o->mean_touchpoints[2] = 2.5; /* + the order itself: ~12 before the purchase */
    o->mean_touchpoints[3] = 3.0;
    o->survey_rate = 0.08;
    o->journey_survey_rate = 0.3;
    o->max_lateness_ms = 4 * 60000;
    o->anon_key_user = 1;
    o->return_rate = 0.1;
}

/* ---- randomness ------------------------------------------------------------ */

typedef struct rng { uint64_t s[4]; } rng_t;

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(rng_t *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

static double uniform(rng_t *r) { return (double)(next_u64(r) >> 11) * 0x1.0p-53; }
static int chance(rng_t *r, double p) { return uniform(r) < p; }
static uint64_t below(rng_t *r, uint64_t n) { return n ? next_u64(r) % n : 0; }
static double expo(rng_t *r, double mean) { return -mean * log(1.0 - uniform(r)); }

static int poisson(rng_t *r, double mean) {
    double l = exp(-mean), p = 1.0;
    int k = 0;
    do {
        k++;
        p *= uniform(r);
    } while (p > l && k < 1000);
    return k - 1;
}

/* ---- the touchpoints of each phase ----------------------------------------- */

typedef struct tpl {
    const char *type, *event, *channel, *path, *name, *tp;
    int weight;
} tpl_t;

#define MAX_TPL 8
static const tpl_t TPL[GEN_PHASES][MAX_TPL] = {
    {{"track", "Search Result Clicked", "web", NULL, NULL, "search_engine", 5},
     {"track", "Ad Clicked", "web", NULL, NULL, "ads", 2},
     {"track", "Ad Clicked", "app", NULL, NULL, "ads", 1},
     {"track", "Social Post Clicked", "social", NULL, NULL, "social_media", 2},
     {"page", NULL, "web", "/community/", NULL, "forum", 1}},
    {{"page", NULL, "web", "/products/", NULL, "company_site", 5},
     {"track", "Comparison Viewed", "web", NULL, NULL, "comparison_portal", 2},
     {"page", NULL, "web", "/reviews/", NULL, "reviews", 3},
     {"track", "Advice Call Completed", "phone", NULL, NULL, "phone_advice", 1},
     {"track", "Demo Attended", "store", NULL, NULL, "store_demo", 1},
     {"screen", NULL, "app", NULL, "Product Detail", "app_product", 3}},
    {{"track", "Product Added", "web", NULL, NULL, "cart", 3},
     {"track", "Product Added", "app", NULL, NULL, "cart", 2},
     {"track", "Checkout Started", "web", NULL, NULL, "checkout", 2},
     {"track", "Checkout Started", "app", NULL, NULL, "checkout", 1}},
    {{"track", "Order Confirmation Opened", "email", NULL, NULL, "order_confirmation", 3},
     {"track", "Order Delivered", "web", NULL, NULL, "delivery", 3},
     {"track", "Chat Started", "chat", NULL, NULL, "support_chat", 2},
     {"track", "Bot Conversation", "chat", NULL, NULL, "service_bot", 2},
     {"screen", NULL, "app", NULL, "Service", "service_app", 2},
     {"track", "Support Call Completed", "phone", NULL, NULL, "phone_support", 1}},
};
static const tpl_t ORDERS[4] = {
    {"track", "Order Completed", "web", NULL, NULL, "web_shop", 5},
    {"track", "Order Completed", "app", NULL, NULL, "app_shop", 3},
    {"track", "Order Completed", "phone", NULL, NULL, "phone_order", 1},
    {"track", "Order Completed", "store", NULL, NULL, "store", 2},
};
static const tpl_t NEWSLETTER = {"track", "Email Opened", "email", NULL, NULL, "newsletter", 1};

/* A returning customer's next journey starts this long after the last event
 * of the previous one: more than the loyalty timeout (4w), so it is a new
 * journey whatever the configuration's default. */
#define RETURN_AFTER_MS (29 * 86400000LL)

/* Mean gap between events in each phase (ms); capped far below the timeouts. */
static const double GAP_MS[GEN_PHASES] = {45e3, 15 * 60e3, 4 * 60e3, 8 * 3600e3};
static const double GAP_CAP_MS[GEN_PHASES] = {10 * 60e3, 24 * 3600e3, 40 * 60e3, 7 * 86400e3};

static const char *const SEGMENTS[] = {"consumer", "consumer", "consumer", "smb", "smb",
                                       "enterprise", "student"};

/* Per-phase score distributions (weights for each score). Loyalty is worse
 * than purchase, as journey-wide satisfaction usually is. */
static const int NPS_W[GEN_PHASES][11] = {
    {2, 1, 1, 2, 2, 4, 6, 10, 14, 12, 8}, {2, 1, 1, 2, 3, 4, 6, 10, 14, 12, 9},
    {1, 1, 1, 1, 2, 3, 5, 9, 15, 16, 14}, {5, 4, 4, 5, 5, 7, 8, 10, 10, 7, 5}};
static const int CSAT_W[GEN_PHASES][5] = {{3, 5, 12, 30, 25}, {3, 5, 12, 30, 25},
                                          {2, 3, 8, 30, 35}, {8, 10, 18, 25, 15}};
static const int CES_W[GEN_PHASES][7] = {{4, 10, 18, 20, 20, 15, 10}, {4, 10, 18, 20, 20, 15, 10},
                                         {3, 8, 14, 20, 22, 18, 12}, {12, 16, 20, 18, 14, 10, 6}};

static int weighted(rng_t *r, const int *w, int n) {
    int total = 0;
    for (int i = 0; i < n; i++) total += w[i];
    int x = (int)below(r, (uint64_t)total);
    for (int i = 0; i < n; i++) {
        if (x < w[i]) return i;
        x -= w[i];
    }
    return n - 1;
}

static const tpl_t *pick_tpl(rng_t *r, const tpl_t *t, int n) {
    int w[MAX_TPL];
    int k = 0;
    while (k < n && t[k].tp) {
        w[k] = t[k].weight;
        k++;
    }
    return &t[weighted(r, w, k)];
}

/* ---- customers --------------------------------------------------------------- */

#define MAX_TRUTH_TPS 64

typedef struct cust {
    uint64_t n;
    int64_t next_ts;
    int phase, left, drop_here, ordered, anon, identified, seg;
    int pending_survey, pending_journey_survey;
    int touches;          /* touchpoint events so far (not surveys, not identify) */
    int journey_no;       /* 1 for the first journey, then one more per return */
    char user[32], anon_id[40];
    /* truth */
    int64_t first_ts, last_ts, phase_ts[GEN_PHASES];
    int max_phase;
    uint64_t events;
    const char *last_tp;
    const char *tps[MAX_TRUTH_TPS];
    int n_tps;
    const char *sat_metric;
    int sat_score;
    int64_t sat_ts;
} cust_t;

/* One event being built. */
typedef struct gev {
    const char *type, *event, *user, *anon, *channel, *name, *segment;
    char path[48];
    char mid[160];
    int64_t ts;
    const char *tp, *metric, *scope;
    int score;
    int sku;
    double price;
    const char *bad_ts;   /* invalid timestamp text */
    int no_mid;
} gev_t;

/* ---- serialisation ------------------------------------------------------------- */

typedef struct outbuf {
    char data[2048];
    size_t len;
} outbuf_t;

static void put(outbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(outbuf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, sizeof(b->data) - b->len, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n < sizeof(b->data) - b->len ? (size_t)n : sizeof(b->data) - b->len - 1;
}

static void json_ts(outbuf_t *b, const gev_t *e, int epoch) {
    char t[40];
    if (e->bad_ts) put(b, "\"timestamp\":\"%s\"", e->bad_ts);
    else if (epoch) put(b, "\"timestamp\":%lld", (long long)e->ts);
    else {
        text_time(e->ts, t, sizeof(t));
        put(b, "\"timestamp\":\"%s\"", t);
    }
}

static void to_json(outbuf_t *b, const gev_t *e, int epoch) {
    b->len = 0;
    put(b, "{");
    if (!e->no_mid) put(b, "\"messageId\":\"%s\",", e->mid);
    put(b, "\"type\":\"%s\",", e->type);
    if (e->event) put(b, "\"event\":\"%s\",", e->event);
    if (e->name) put(b, "\"name\":\"%s\",", e->name);
    if (e->user) put(b, "\"userId\":\"%s\",", e->user);
    if (e->anon) put(b, "\"anonymousId\":\"%s\",", e->anon);
    json_ts(b, e, epoch);
    if (e->channel || e->path[0]) {
        put(b, ",\"context\":{\"library\":{\"name\":\"journeyctl-gen\",\"version\":\"1\"}");
        if (e->channel) put(b, ",\"channel\":\"%s\"", e->channel);
        if (e->path[0]) put(b, ",\"page\":{\"path\":\"%s\",\"title\":\"Example shop\"}", e->path);
        put(b, ",\"locale\":\"de-DE\"}");
    }
    if (e->segment) put(b, ",\"traits\":{\"segment\":\"%s\"}", e->segment);
    if (e->metric) {
        put(b, ",\"properties\":{\"metric\":\"%s\",\"score\":%d,\"scope\":\"%s\"", e->metric, e->score, e->scope);
        if (e->tp) put(b, ",\"touchpoint\":\"%s\"", e->tp);
        put(b, ",\"survey\":\"post-interaction\"}");
    } else if (e->sku) {
        put(b, ",\"properties\":{\"sku\":\"sku-%d\",\"price\":%.2f,\"currency\":\"EUR\",\"quantity\":1}",
            e->sku, e->price);
    }
    put(b, "}");
}

static void mp_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void mp_kv(msgpack_packer *pk, const char *k, const char *v) {
    mp_str(pk, k);
    mp_str(pk, v);
}

static void to_msgpack(msgpack_sbuffer *sb, const gev_t *e, int epoch) {
    msgpack_packer pk;
    char t[40];
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t n = 2 + !e->no_mid + !!e->event + !!e->name + !!e->user + !!e->anon +
               !!(e->channel || e->path[0]) + !!e->segment + !!(e->metric || e->sku);
    msgpack_pack_map(&pk, n);
    if (!e->no_mid) mp_kv(&pk, "messageId", e->mid);
    mp_kv(&pk, "type", e->type);
    if (e->event) mp_kv(&pk, "event", e->event);
    if (e->name) mp_kv(&pk, "name", e->name);
    if (e->user) mp_kv(&pk, "userId", e->user);
    if (e->anon) mp_kv(&pk, "anonymousId", e->anon);
    mp_str(&pk, "timestamp");
    if (e->bad_ts) mp_str(&pk, e->bad_ts);
    else if (epoch) msgpack_pack_int64(&pk, e->ts);
    else {
        text_time(e->ts, t, sizeof(t));
        mp_str(&pk, t);
    }
    if (e->channel || e->path[0]) {
        mp_str(&pk, "context");
        msgpack_pack_map(&pk, (size_t)(!!e->channel + !!e->path[0]));
        if (e->channel) mp_kv(&pk, "channel", e->channel);
        if (e->path[0]) {
            mp_str(&pk, "page");
            msgpack_pack_map(&pk, 1);
            mp_kv(&pk, "path", e->path);
        }
    }
    if (e->segment) {
        mp_str(&pk, "traits");
        msgpack_pack_map(&pk, 1);
        mp_kv(&pk, "segment", e->segment);
    }
    if (e->metric) {
        mp_str(&pk, "properties");
        msgpack_pack_map(&pk, e->tp ? 4 : 3);
        mp_kv(&pk, "metric", e->metric);
        mp_str(&pk, "score");
        msgpack_pack_int(&pk, e->score);
        mp_kv(&pk, "scope", e->scope);
        if (e->tp) mp_kv(&pk, "touchpoint", e->tp);
    } else if (e->sku) {
        char sku[24];
        snprintf(sku, sizeof(sku), "sku-%d", e->sku);
        mp_str(&pk, "properties");
        msgpack_pack_map(&pk, 3);
        mp_kv(&pk, "sku", sku);
        mp_str(&pk, "price");
        msgpack_pack_double(&pk, e->price);
        mp_kv(&pk, "currency", "EUR");
    }
}

/* ---- the simulation ------------------------------------------------------------ */

typedef struct dmsg {
    int64_t at;           /* delivery time */
    uint64_t seq;         /* tie-break: creation order */
    int64_t ts;
    char *key, *val;      /* owned */
    size_t keylen, len;
} dmsg_t;

typedef struct sim {
    const gen_opts_t *o;
    rng_t r;
    cust_t **heap;        /* active customers by next_ts */
    size_t n, cap;
    dmsg_t *dq;           /* delivery heap */
    size_t dn, dcap;
    uint64_t created, seq, dseq, pushed;
    int64_t next_arrival;
    gen_emit_fn emit;
    void *opaque;
    FILE *journeys;       /* per-journey truth, or NULL (caller's) */
    FILE *answers;        /* per-answer truth, or NULL (caller's) */
    gen_truth_t *t;
    outbuf_t ob;
    msgpack_sbuffer sb;
    int rc;
} sim_t;

static int cust_less(const cust_t *a, const cust_t *b) {
    return a->next_ts < b->next_ts || (a->next_ts == b->next_ts && a->n < b->n);
}

static void heap_push(sim_t *s, cust_t *c) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        if (!(s->heap = realloc(s->heap, s->cap * sizeof(*s->heap)))) abort();
    }
    size_t i = s->n++;
    while (i && cust_less(c, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = c;
}

static cust_t *heap_pop(sim_t *s) {
    cust_t *top = s->heap[0], *last = s->heap[--s->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= s->n) break;
        if (l + 1 < s->n && cust_less(s->heap[l + 1], s->heap[l])) m = l + 1;
        if (!cust_less(s->heap[m], last)) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->n) s->heap[i] = last;
    return top;
}

static int dmsg_less(const dmsg_t *a, const dmsg_t *b) {
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void dq_push(sim_t *s, dmsg_t m) {
    if (s->dn == s->dcap) {
        s->dcap = s->dcap ? 2 * s->dcap : 1024;
        if (!(s->dq = realloc(s->dq, s->dcap * sizeof(*s->dq)))) abort();
    }
    size_t i = s->dn++;
    while (i && dmsg_less(&m, &s->dq[(i - 1) / 2])) {
        s->dq[i] = s->dq[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->dq[i] = m;
}

static dmsg_t dq_pop(sim_t *s) {
    dmsg_t top = s->dq[0], last = s->dq[--s->dn];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= s->dn) break;
        if (l + 1 < s->dn && dmsg_less(&s->dq[l + 1], &s->dq[l])) m = l + 1;
        if (!dmsg_less(&s->dq[m], &last)) break;
        s->dq[i] = s->dq[m];
        i = m;
    }
    if (s->dn) s->dq[i] = last;
    return top;
}

static void deliver(sim_t *s, const char *key, size_t keylen, const void *val, size_t len, int64_t ts) {
    if (!s->rc) s->rc = s->emit(key, keylen, val, len, ts, s->opaque);
    s->t->messages++;
}

/* Deliver everything due by `now` (INT64_MAX: everything). */
static void flush_due(sim_t *s, int64_t now) {
    while (s->dn && s->dq[0].at <= now) {
        dmsg_t m = dq_pop(s);
        deliver(s, m.key, m.keylen, m.val, m.len, m.ts);
        free(m.key);
        free(m.val);
    }
}

static void delay(sim_t *s, const char *key, const void *val, size_t len, int64_t ts, int64_t at) {
    dmsg_t m = {.at = at, .seq = s->dseq++, .ts = ts, .keylen = strlen(key), .len = len};
    m.key = strdup(key);
    m.val = malloc(len);
    if (!m.key || !m.val) abort();
    memcpy(m.val, val, len);
    dq_push(s, m);
}

/* Serialise e and hand it to delivery, with the configured dirt. */
static void send_event(sim_t *s, const gev_t *e, const char *key, int dirt) {
    const void *val;
    size_t len;
    if (s->o->msgpack) {
        to_msgpack(&s->sb, e, s->o->epoch_ms_timestamps);
        val = s->sb.data;
        len = s->sb.size;
    } else {
        to_json(&s->ob, e, s->o->epoch_ms_timestamps);
        val = s->ob.data;
        len = s->ob.len;
    }
    s->pushed++;
    int64_t at = e->ts;
    if (dirt && s->o->rate <= 0 && chance(&s->r, s->o->ooo_rate)) {
        at += 1 + (int64_t)below(&s->r, (uint64_t)s->o->max_lateness_ms);
        s->t->out_of_order++;
    }
    if (at == e->ts && (!s->dn || s->dq[0].at > at)) deliver(s, key, strlen(key), val, len, e->ts);
    else delay(s, key, val, len, e->ts, at);
    if (dirt && chance(&s->r, s->o->dup_rate)) {
        delay(s, key, val, len, e->ts, at + 1 + (int64_t)below(&s->r, 30000));
        s->t->duplicates++;
        s->pushed++;
    }
}

static void base_event(sim_t *s, cust_t *c, gev_t *e, const char *type) {
    memset(e, 0, sizeof(*e));
    e->type = type;
    /* open loop: the event time is the time the message is scheduled to go */
    e->ts = s->o->rate > 0 ? s->o->rate_t0_ms + (int64_t)((double)s->pushed * 1000.0 / s->o->rate)
                           : c->next_ts;
    snprintf(e->mid, sizeof(e->mid), "m-%llu-%llu", (unsigned long long)s->o->seed,
             (unsigned long long)s->seq++);
    int known = !c->anon || c->identified;
    e->user = known ? c->user : NULL;
    e->anon = known ? NULL : c->anon_id;
    e->segment = SEGMENTS[c->seg];
}

static const char *event_key(const sim_t *s, const cust_t *c) {
    return !c->anon || c->identified || s->o->anon_key_user ? c->user : c->anon_id;
}

/* Record a valid event in the customer's truth. */
static void truth_event(cust_t *c, int64_t ts, int phase, const char *tp) {
    c->events++;
    if (!c->first_ts || ts < c->first_ts) c->first_ts = ts;
    if (ts > c->last_ts) c->last_ts = ts;
    if (phase > c->max_phase) {
        for (int k = c->max_phase < 0 ? 0 : c->max_phase + 1; k <= phase && k < GEN_PHASES; k++) c->phase_ts[k] = ts;
        c->max_phase = phase;
    }
    if (tp) {
        c->last_tp = tp;
        if (c->n_tps < MAX_TRUTH_TPS) c->tps[c->n_tps++] = tp;
    }
}

static void send_touch(sim_t *s, cust_t *c, const tpl_t *t, int phase) {
    gev_t e;
    base_event(s, c, &e, t->type);
    e.event = t->event;
    e.channel = t->channel;
    e.name = t->name;
    if (t->path) snprintf(e.path, sizeof(e.path), "%s%s-%d", t->path,
                          t->path[1] == 'c' ? "topic" : "sku", (int)below(&s->r, 500));
    if (!strcmp(t->type, "track") && phase >= 2 && phase < 3) {
        e.sku = 1 + (int)below(&s->r, 500);
        e.price = 5.0 + (double)below(&s->r, 50000) / 100.0;
    }
    send_event(s, &e, event_key(s, c), 1);
    truth_event(c, e.ts, phase, t->tp);
    c->touches++;
    s->t->touches++;
}

/* One survey answer's truth line (format in gen.h). The segment is the one
 * base_event() put on every event of the customer; a journey's segment is
 * its latest event's, so this one. No random numbers are drawn here. */
static void write_answer(sim_t *s, const gev_t *e, int ph, const char *key) {
    if (!s->answers) return;
    fprintf(s->answers, "{\"ts\":%lld,\"metric\":\"%s\",\"score\":%d,\"phase\":\"%s\",\"scope\":\"%s\","
            "\"touchpoint\":\"%s\",\"segment\":\"%s\",\"customer\":\"%s\",\"message_id\":\"%s\","
            "\"key\":\"%s\"}\n",
            (long long)e->ts, e->metric, e->score, GEN_PHASE_NAMES[ph], e->scope, e->tp ? e->tp : "unknown",
            e->segment ? e->segment : "none", e->user ? e->user : e->anon, e->mid, key);
}

static void send_survey(sim_t *s, cust_t *c, int journey_scope) {
    static const char *const METRICS[] = {"nps", "csat", "ces"};
    gev_t e;
    int m = (int)below(&s->r, 3), ph = c->max_phase < 0 ? 0 : c->max_phase;
    base_event(s, c, &e, "track");
    e.event = "Survey Answered";
    e.metric = METRICS[m];
    e.scope = journey_scope ? "journey" : "touchpoint";
    e.tp = c->last_tp;
    e.score = m == 0 ? weighted(&s->r, NPS_W[ph], 11)
            : m == 1 ? 1 + weighted(&s->r, CSAT_W[ph], 5) : 1 + weighted(&s->r, CES_W[ph], 7);
    send_event(s, &e, event_key(s, c), 1);
    write_answer(s, &e, ph, event_key(s, c));
    s->t->journey_surveys += journey_scope;
    /* journeyd's touchpoint for an unclassified event: properties.touchpoint */
    truth_event(c, e.ts, -1, e.tp ? e.tp : "unknown");
    c->sat_metric = e.metric;
    c->sat_score = e.score;
    c->sat_ts = e.ts;
    s->t->surveys++;
    gen_sat_t *g = &s->t->sat[m][ph][journey_scope];
    g->n++;
    g->sum += (uint64_t)e.score;
    g->promoters += m == 0 && e.score >= 9;
    g->passives += m == 0 && (e.score == 7 || e.score == 8);
    g->detractors += m == 0 && e.score <= 6;
    g->satisfied += m == 1 && e.score >= 4;
    g->high += m == 2 && e.score >= 5;
}

static void send_identify(sim_t *s, cust_t *c) {
    gev_t e;
    base_event(s, c, &e, "identify");
    e.user = c->user;
    e.anon = c->anon_id;
    send_event(s, &e, s->o->anon_key_user ? c->user : c->anon_id, 1);
    c->identified = 1;
    truth_event(c, e.ts, -1, NULL);
    s->t->identifies++;
}

static void send_invalid(sim_t *s, int64_t ts) {
    cust_t fake;
    gev_t e;
    int kind = (int)below(&s->r, 6);
    char longid[160];
    memset(&fake, 0, sizeof(fake));
    snprintf(fake.user, sizeof(fake.user), "u-%llu-x%llu", (unsigned long long)s->o->seed,
             (unsigned long long)below(&s->r, s->o->customers));
    fake.next_ts = ts;
    base_event(s, &fake, &e, "track");
    e.event = "Product Viewed";
    e.channel = "web";
    if (kind == 1) e.no_mid = 1;
    if (kind == 2) {
        e.event = "Survey Answered";
        e.metric = "nps";
        e.score = 11;
        e.scope = "touchpoint";
    }
    if (kind == 3) e.type = "click";
    if (kind == 4) e.bad_ts = "yesterday";
    if (kind == 5) {
        memset(longid, 'x', 140);
        longid[140] = '\0';
        memcpy(e.mid, longid, 141);
    }
    if (kind == 0) {
        const char *bad = s->o->msgpack ? "\x85\xa9messageId\xda\x01" : "{\"messageId\":\"m-broken\",\"type\":\"track\",";
        s->pushed++;
        deliver(s, fake.user, strlen(fake.user), bad, strlen(bad), ts);
    } else {
        send_event(s, &e, fake.user, 0);
    }
    s->t->invalid++;
    s->t->invalid_by_kind[kind]++;
}

static void enter_phase(sim_t *s, cust_t *c, int k) {
    c->phase = k;
    c->left = 1 + poisson(&s->r, s->o->mean_touchpoints[k] - 1.0);
    c->drop_here = k < GEN_PHASES - 1 && chance(&s->r, s->o->drop[k]);
    c->ordered = 0;
}

static cust_t *new_customer(sim_t *s) {
    cust_t *c = calloc(1, sizeof(*c));
    if (!c) abort();
    c->n = s->created++;
    c->next_ts = s->next_arrival;
    c->seg = (int)below(&s->r, sizeof(SEGMENTS) / sizeof(SEGMENTS[0]));
    c->anon = chance(&s->r, s->o->anon_rate);
    c->max_phase = -1;
    c->journey_no = 1;
    snprintf(c->user, sizeof(c->user), "u-%llu-%llu", (unsigned long long)s->o->seed, (unsigned long long)c->n);
    snprintf(c->anon_id, sizeof(c->anon_id), "anon-%llu-%016llx", (unsigned long long)s->o->seed,
             (unsigned long long)next_u64(&s->r));
    enter_phase(s, c, 0);
    s->next_arrival += 1 + (int64_t)expo(&s->r, (double)s->o->period_ms / (double)s->o->customers);
    return c;
}

/* Emit the customer's next event; 0 when its journey has ended instead. */
static int step(sim_t *s, cust_t *c) {
    for (;;) {
        if (c->pending_survey) {
            c->pending_survey = 0;
            send_survey(s, c, 0);
            return 1;
        }
        if (c->anon && !c->identified && c->phase >= 1) {
            send_identify(s, c);
            return 1;
        }
        if (c->left > 0) {
            int p = c->phase;
            const tpl_t *t = chance(&s->r, 0.03) ? &NEWSLETTER : pick_tpl(&s->r, TPL[p], MAX_TPL);
            c->left--;
            send_touch(s, c, t, t == &NEWSLETTER ? -1 : p);
            c->pending_survey = chance(&s->r, s->o->survey_rate);
            return 1;
        }
        if (c->phase == 2 && !c->drop_here && !c->ordered) {
            c->ordered = 1;
            s->t->touchpoints_before_purchase += (uint64_t)c->touches + 1;
            s->t->purchasers++;
            send_touch(s, c, pick_tpl(&s->r, ORDERS, 4), 2);
            c->pending_survey = chance(&s->r, s->o->survey_rate);
            return 1;
        }
        if (c->drop_here || c->phase == GEN_PHASES - 1) {
            if (!c->pending_journey_survey && chance(&s->r, s->o->journey_survey_rate)) {
                c->pending_journey_survey = 1;
                send_survey(s, c, 1);
                return 1;
            }
            return 0;
        }
        enter_phase(s, c, c->phase + 1);
    }
}

static void write_journey(sim_t *s, const cust_t *c, const char *outcome) {
    FILE *f = s->journeys;
    char t[40];
    if (!f) return;
    fprintf(f, "{\"customer\":\"%s\",\"segment\":\"%s\",\"journey\":%d,\"phase\":\"%s\",\"outcome\":\"%s\","
            "\"first_ts\":%lld,\"last_ts\":%lld,\"last_touchpoint\":\"%s\",\"events\":%llu,\"merged\":%d,",
            c->anon && !c->identified ? c->anon_id : c->user, SEGMENTS[c->seg], c->journey_no,
            c->max_phase >= 0 ? GEN_PHASE_NAMES[c->max_phase] : "none", outcome,
            (long long)c->first_ts, (long long)c->last_ts, c->last_tp ? c->last_tp : "",
            (unsigned long long)c->events, c->anon && c->identified);
    fputs("\"phase_entered\":{", f);
    for (int k = 0; k <= c->max_phase; k++) {
        text_time(c->phase_ts[k], t, sizeof(t));
        fprintf(f, "%s\"%s\":\"%s\"", k ? "," : "", GEN_PHASE_NAMES[k], t);
    }
    fputs("},\"touchpoints\":[", f);
    for (int i = 0; i < c->n_tps; i++) fprintf(f, "%s\"%s\"", i ? "," : "", c->tps[i]);
    fputs("],\"satisfaction\":", f);
    if (c->sat_metric) fprintf(f, "{\"metric\":\"%s\",\"score\":%d,\"time\":%lld}", c->sat_metric,
                               c->sat_score, (long long)c->sat_ts);
    else fputs("null", f);
    fputs("}\n", f);
}

static void count_dropoff(gen_truth_t *t, int phase, const char *tp) {
    for (int i = 0; i < GEN_MAX_TOUCHPOINTS; i++) {
        if (!t->dropoff[phase][i].tp) t->dropoff[phase][i].tp = tp;
        if (!strcmp(t->dropoff[phase][i].tp, tp)) {
            t->dropoff[phase][i].n++;
            return;
        }
    }
}

/* Count the journey that just ended (or is cut off) in the truth. */
static void record_journey(sim_t *s, cust_t *c, int in_progress) {
    gen_truth_t *t = s->t;
    if (c->events) {
        t->journeys++;
        for (int k = 0; k <= c->max_phase; k++) t->reached[k]++;
        for (int k = 0; k < c->max_phase; k++) t->progressed[k]++;
        if (!in_progress && c->max_phase >= 0) {
            if (c->max_phase == GEN_PHASES - 1) t->completed[c->max_phase]++;
            else {
                t->dropped[c->max_phase]++;
                count_dropoff(t, c->max_phase, c->last_tp ? c->last_tp : "unknown");
            }
        }
        write_journey(s, c, in_progress ? "in_progress" : c->max_phase == GEN_PHASES - 1 ? "completed" : "dropped");
    }
}

static void end_journey(sim_t *s, cust_t *c, int in_progress) {
    record_journey(s, c, in_progress);
    free(c);
}

/* A customer who completed comes back for another journey, after the last
 * phase's timeout has surely closed the first one. */
static void start_again(sim_t *s, cust_t *c) {
    int64_t last = c->last_ts;
    record_journey(s, c, 0);
    c->journey_no++;
    c->first_ts = c->last_ts = 0;
    c->max_phase = -1;
    c->events = 0;
    c->last_tp = NULL;
    c->n_tps = c->touches = 0;
    c->sat_metric = NULL;
    c->pending_survey = c->pending_journey_survey = 0;
    memset(c->phase_ts, 0, sizeof(c->phase_ts));
    enter_phase(s, c, 0);
    c->next_ts = last + RETURN_AFTER_MS + (int64_t)expo(&s->r, 7 * 86400e3);
    heap_push(s, c);
}

int gen_run(const gen_opts_t *o, gen_emit_fn emit, void *opaque, FILE *journeys, FILE *answers,
            gen_truth_t *truth) {
    sim_t s;
    memset(&s, 0, sizeof(s));
    memset(truth, 0, sizeof(*truth));
    s.o = o;
    s.emit = emit;
    s.opaque = opaque;
    s.journeys = journeys;
    s.answers = answers;
    s.t = truth;
    uint64_t x = o->seed;
    for (int i = 0; i < 4; i++) s.r.s[i] = splitmix(&x);
    msgpack_sbuffer_init(&s.sb);
    s.next_arrival = o->start_ms;
    while (!s.rc && (!o->max_events || s.pushed < o->max_events)) {
        int arrive = s.created < o->customers && (!s.n || s.next_arrival <= s.heap[0]->next_ts);
        if (!arrive && !s.n) break;
        cust_t *c = arrive ? new_customer(&s) : heap_pop(&s);
        flush_due(&s, c->next_ts);
        if (chance(&s.r, o->invalid_rate)) send_invalid(&s, c->next_ts);
        if (!step(&s, c)) {
            if (c->max_phase == GEN_PHASES - 1 && chance(&s.r, o->return_rate)) start_again(&s, c);
            else end_journey(&s, c, 0);
            continue;
        }
        /* gaps follow the phase journeyd sees (the highest classified one so
         * far): an identify opens the next phase here but not there */
        int gp = c->max_phase < 0 ? 0 : c->max_phase;
        int64_t gap = (int64_t)fmin(expo(&s.r, GAP_MS[gp]), GAP_CAP_MS[gp]);
        c->next_ts += 1 + gap;
        heap_push(&s, c);
    }
    flush_due(&s, INT64_MAX);
    while (s.n) end_journey(&s, heap_pop(&s), 1);
    truth->valid = truth->messages - truth->duplicates - truth->invalid;
    free(s.heap);
    free(s.dq);
    msgpack_sbuffer_destroy(&s.sb);
    return s.rc;
}

void gen_truth_print(const gen_truth_t *t, const gen_opts_t *o, FILE *out) {
    fprintf(out, "{\"seed\":%llu,\"customers\":%llu,\"messages\":%llu,\"valid\":%llu,\"duplicates\":%llu,"
            "\"out_of_order\":%llu,\"invalid\":%llu,\"identifies\":%llu,\"surveys\":%llu,\"journeys\":%llu,"
            "\"mean_touchpoints_before_purchase\":%.3f,\"invalid_by_kind\":{",
            (unsigned long long)o->seed, (unsigned long long)o->customers,
            (unsigned long long)t->messages, (unsigned long long)t->valid,
            (unsigned long long)t->duplicates, (unsigned long long)t->out_of_order,
            (unsigned long long)t->invalid, (unsigned long long)t->identifies,
            (unsigned long long)t->surveys, (unsigned long long)t->journeys,
            t->purchasers ? (double)t->touchpoints_before_purchase / (double)t->purchasers : 0.0);
    for (int i = 0; i < 6; i++)
        fprintf(out, "%s\"%s\":%llu", i ? "," : "", GEN_INVALID_KINDS[i], (unsigned long long)t->invalid_by_kind[i]);
    fputs("},\"phases\":{", out);
    for (int k = 0; k < GEN_PHASES; k++)
        fprintf(out, "%s\"%s\":{\"reached\":%llu,\"progressed\":%llu,\"dropped\":%llu,\"completed\":%llu}",
                k ? "," : "", GEN_PHASE_NAMES[k], (unsigned long long)t->reached[k],
                (unsigned long long)t->progressed[k], (unsigned long long)t->dropped[k],
                (unsigned long long)t->completed[k]);
    fputs("},\"dropoff_by_touchpoint\":{", out);
    for (int k = 0; k < GEN_PHASES; k++) {
        fprintf(out, "%s\"%s\":{", k ? "," : "", GEN_PHASE_NAMES[k]);
        for (int i = 0; i < GEN_MAX_TOUCHPOINTS && t->dropoff[k][i].tp; i++)
            fprintf(out, "%s\"%s\":%llu", i ? "," : "", t->dropoff[k][i].tp,
                    (unsigned long long)t->dropoff[k][i].n);
        fputc('}', out);
    }
    fputs("},\"satisfaction\":{", out);
    static const char *const M[] = {"nps", "csat", "ces"}, *const S[] = {"touchpoint", "journey"};
    for (int m = 0; m < 3; m++) {
        fprintf(out, "%s\"%s\":{", m ? "," : "", M[m]);
        for (int k = 0; k < GEN_PHASES; k++) {
            fprintf(out, "%s\"%s\":{", k ? "," : "", GEN_PHASE_NAMES[k]);
            for (int sc = 0; sc < 2; sc++) {
                const gen_sat_t *g = &t->sat[m][k][sc];
                fprintf(out, "%s\"%s\":{\"n\":%llu,\"sum\":%llu", sc ? "," : "", S[sc],
                        (unsigned long long)g->n, (unsigned long long)g->sum);
                if (m == 0)
                    fprintf(out, ",\"promoters\":%llu,\"passives\":%llu,\"detractors\":%llu",
                            (unsigned long long)g->promoters, (unsigned long long)g->passives,
                            (unsigned long long)g->detractors);
                if (m == 1) fprintf(out, ",\"satisfied\":%llu", (unsigned long long)g->satisfied);
                if (m == 2) fprintf(out, ",\"high\":%llu", (unsigned long long)g->high);
                fputc('}', out);
            }
            fputc('}', out);
        }
        fputc('}', out);
    }
    fprintf(out, "},\"heartbeats\":%llu}\n", (unsigned long long)t->heartbeats);
}
