/*
 * journey.c -- the per-customer journey state machine (SPEC §4).
 *
 * A journey is a summary of the events applied to it. Its states are the
 * phase indices of the configured model:
 *
 *     (none) -1 --event of phase k--> k --event of phase m > k--> m ...
 *
 * The phase only moves forward: an event of an earlier phase is recorded in
 * the history but leaves the phase alone, and reaching phase k counts as
 * having reached every phase before it (phase_ts[0..k] are all set).
 *
 * Invariants, kept by journey_apply() and journey_merge():
 *   - phase == max(phase of every applied event), -1 if none was classified;
 *   - phase_ts[k] == min(ts of applied events whose phase >= k);
 *   - start_ts / last_ts == min / max event time of all applied events;
 *   - last_tp, segment and sat come from the latest event (by (ts, mid))
 *     that carries one;
 *   - hist holds the cap_hist latest touch events by (ts, mid), sorted;
 *   - events counts distinct messageIds; dedup remembers the latest
 *     dedup_max of them (a ring) to drop duplicates.
 * Every field is a min, a max, a count or a top-N over (ts, mid), so the
 * state after a set of events does not depend on the order in which they
 * were applied: events that arrive out of order within the allowed lateness
 * leave exactly the state that in-order delivery would have left (SPEC §4),
 * and merging two journeys is the same operation over their summaries.
 *
 * The journey owns its hist and dedup arrays; both are bounded by the
 * config (journey.history_max, journey.dedup_max).
 */
#include "journey.h"

#include "text.h"

#include <stdlib.h>
#include <string.h>

uint64_t journey_mid_hash(const char *mid, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)mid[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void copy_name(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* (ts, mid) ordering: the later of two events, deterministic on ties. */
static int later(int64_t ts, uint64_t mid, int64_t ts2, uint64_t mid2) {
    return ts > ts2 || (ts == ts2 && mid > mid2);
}

void journey_init(journey_t *j, const char *customer) {
    memset(j, 0, sizeof(*j));
    copy_name(j->customer, sizeof(j->customer), customer);
    j->number = 1;
    j->phase = -1;
    j->start_ts = JOURNEY_NO_TIME;
    j->last_ts = INT64_MIN;
    j->last_tp_ts = INT64_MIN;
    j->segment_ts = INT64_MIN;
    j->sat.ts = INT64_MIN;
    j->prev_end = INT64_MIN;
    j->stored_deadline = -1;
    for (int k = 0; k < CFG_MAX_PHASES; k++) j->phase_ts[k] = JOURNEY_NO_TIME;
}

void journey_reset(journey_t *j) {
    free(j->hist);
    free(j->dedup);
    free(j->tail);
    memset(j, 0, sizeof(*j));
}

static int dedup_seen(const journey_t *j, uint64_t mid) {
    for (uint32_t i = 0; i < j->n_dedup; i++)
        if (j->dedup[i] == mid) return 1;
    return 0;
}

bool journey_seen(const journey_t *j, uint64_t mid) { return dedup_seen(j, mid); }

static void dedup_add(journey_t *j, const config_t *cfg, uint64_t mid) {
    uint32_t cap = (uint32_t)cfg->dedup_max;
    if (cap == 0) return;
    if (j->n_dedup < cap && j->n_dedup == j->cap_dedup) { /* grow by doubling up to the cap */
        uint32_t ncap = j->cap_dedup ? 2 * j->cap_dedup : 16;
        if (ncap > cap) ncap = cap;
        uint64_t *d = realloc(j->dedup, ncap * sizeof(*d));
        if (!d) abort();
        j->dedup = d;
        j->cap_dedup = ncap;
    }
    if (j->n_dedup < cap) {
        j->dedup[j->n_dedup++] = mid;
    } else {
        j->dedup[j->dedup_pos] = mid;
        j->dedup_pos = (j->dedup_pos + 1) % cap;
    }
}

/* Insert into the sorted, capped history; drops the oldest when full. */
static void hist_add(journey_t *j, const config_t *cfg, int64_t ts, uint64_t mid,
                     int phase, const char *tp) {
    uint32_t cap = (uint32_t)cfg->history_max;
    if (j->n_hist == cap) {
        if (!later(ts, mid, j->hist[0].ts, j->hist[0].mid)) return; /* older than all kept */
        memmove(&j->hist[0], &j->hist[1], (j->n_hist - 1) * sizeof(*j->hist));
        j->n_hist--;
    }
    if (j->n_hist == j->cap_hist) {
        uint32_t ncap = j->cap_hist ? j->cap_hist * 2 : 8;
        if (ncap > cap) ncap = cap;
        jd_touch_t *h = realloc(j->hist, ncap * sizeof(*h));
        if (!h) abort();
        j->hist = h;
        j->cap_hist = ncap;
    }
    uint32_t pos = j->n_hist;
    while (pos > 0 && later(j->hist[pos - 1].ts, j->hist[pos - 1].mid, ts, mid)) pos--;
    memmove(&j->hist[pos + 1], &j->hist[pos], (j->n_hist - pos) * sizeof(*j->hist));
    jd_touch_t *e = &j->hist[pos];
    e->ts = ts;
    e->mid = mid;
    e->phase = (int8_t)phase;
    copy_name(e->tp, sizeof(e->tp), tp);
    j->n_hist++;
}

/* The highest phase reached by event time ts: the phase "after applying" an
 * event at ts when events are taken in event-time order. */
static int phase_at(const journey_t *j, int64_t ts) {
    int k = j->phase;
    while (k >= 0 && j->phase_ts[k] > ts) k--;
    return k;
}

static void reach_phase(journey_t *j, int phase, int64_t ts) {
    if (phase < 0) return;
    if (phase > j->phase) j->phase = (int8_t)phase;
    for (int k = 0; k <= phase; k++)
        if (ts < j->phase_ts[k]) j->phase_ts[k] = ts;
    /* An earlier event arriving late can change the phase an answer
     * belongs to: keep the attribution what event-time order gives. */
    if (j->sat.metric != EV_METRIC_NONE && !j->sat.explicit_phase)
        j->sat.phase = (int8_t)phase_at(j, j->sat.ts);
}

static void touch_time(journey_t *j, int64_t ts) {
    if (ts < j->start_ts) j->start_ts = ts;
    if (ts > j->last_ts) j->last_ts = ts;
}

static void set_last_tp(journey_t *j, int64_t ts, uint64_t mid, const char *tp) {
    if (!later(ts, mid, j->last_tp_ts, j->last_tp_mid)) return;
    j->last_tp_ts = ts;
    j->last_tp_mid = mid;
    copy_name(j->last_tp, sizeof(j->last_tp), tp);
}

static void set_segment(journey_t *j, int64_t ts, uint64_t mid, const char *seg) {
    if (!later(ts, mid, j->segment_ts, j->segment_mid)) return;
    j->segment_ts = ts;
    j->segment_mid = mid;
    copy_name(j->segment, sizeof(j->segment), seg);
}

static void set_sat(journey_t *j, const jd_satisfaction_t *s) {
    if (!later(s->ts, s->mid, j->sat.ts, j->sat.mid)) return;
    j->sat = *s;
}

journey_result_t journey_apply(journey_t *j, const config_t *cfg, const event_t *ev,
                               uint64_t mid, int phase, const char *tp) {
    if (dedup_seen(j, mid)) return JOURNEY_DUPLICATE;
    dedup_add(j, cfg, mid);
    j->events++;
    touch_time(j, ev->ts_ms);
    reach_phase(j, phase, ev->ts_ms);
    if (tp) {
        set_last_tp(j, ev->ts_ms, mid, tp);
        hist_add(j, cfg, ev->ts_ms, mid, phase, tp);
    }
    if (ev->segment) set_segment(j, ev->ts_ms, mid, ev->segment);
    if (ev->metric != EV_METRIC_NONE) {
        jd_satisfaction_t s = {
            .metric = (int8_t)ev->metric, .score = (int8_t)ev->score,
            .scope = (int8_t)ev->scope, .ts = ev->ts_ms, .mid = mid,
        };
        /* Attributed to properties.phase if given, else the journey's phase
         * after applying the event (SPEC §6); phase >= 0 here means the
         * classifier already resolved properties.phase. */
        s.explicit_phase = ev->phase && phase >= 0;
        s.phase = (int8_t)(s.explicit_phase ? phase : phase_at(j, ev->ts_ms));
        copy_name(s.tp, sizeof(s.tp), tp ? tp : j->last_tp);
        set_sat(j, &s);
    }
    return JOURNEY_APPLIED;
}

int64_t journey_deadline(const journey_t *j, const config_t *cfg) {
    if (!j->events || j->last_ts == INT64_MIN) return INT64_MAX;
    int64_t t = cfg->phases[j->phase < 0 ? 0 : j->phase].timeout_ms;
    return j->last_ts > INT64_MAX - t ? INT64_MAX : j->last_ts + t;
}

void journey_close(journey_t *j, const config_t *cfg) {
    j->status = j->phase == cfg->n_phases - 1 ? JOURNEY_COMPLETED : JOURNEY_DROPPED;
}

int journey_settle(journey_t *j, const config_t *cfg, int64_t closed_through) {
    if (j->status != JOURNEY_OPEN || j->pending || j->stored_deadline < 0 || j->stored_deadline > closed_through)
        return 0;
    journey_close(j, cfg);
    return 1;
}

void journey_restart(journey_t *j, const config_t *cfg) {
    journey_t n;
    journey_init(&n, j->customer);
    n.number = j->number + 1;
    n.prev_end = journey_deadline(j, cfg);
    n.linked = j->linked;          /* the customer's, not the journey's */
    n.pending = j->pending;
    n.dedup = j->dedup;            /* messageIds are unique per customer */
    n.n_dedup = j->n_dedup;
    n.dedup_pos = j->dedup_pos;
    n.cap_dedup = j->cap_dedup;
    free(j->hist);
    *j = n;
}

journey_result_t journey_apply_late(journey_t *j, const config_t *cfg, uint64_t mid, int64_t ts,
                                    int phase, const char *tp) {
    if (dedup_seen(j, mid)) return JOURNEY_DUPLICATE;
    dedup_add(j, cfg, mid);
    if (tp) hist_add(j, cfg, ts, mid, phase, tp);
    return JOURNEY_APPLIED;
}

void journey_merge(journey_t *dst, const journey_t *src, const config_t *cfg) {
    dst->events += src->events;
    if (src->start_ts != JOURNEY_NO_TIME) touch_time(dst, src->start_ts);
    if (src->last_ts != INT64_MIN) touch_time(dst, src->last_ts);
    for (int k = 0; k <= src->phase; k++)
        reach_phase(dst, k, src->phase_ts[k]);
    if (src->last_tp_ts != INT64_MIN) set_last_tp(dst, src->last_tp_ts, src->last_tp_mid, src->last_tp);
    if (src->segment_ts != INT64_MIN) set_segment(dst, src->segment_ts, src->segment_mid, src->segment);
    if (src->sat.metric != EV_METRIC_NONE) set_sat(dst, &src->sat);
    if (dst->sat.metric != EV_METRIC_NONE && !dst->sat.explicit_phase)
        dst->sat.phase = (int8_t)phase_at(dst, dst->sat.ts);
    for (uint32_t i = 0; i < src->n_hist; i++) {
        const jd_touch_t *e = &src->hist[i];
        hist_add(dst, cfg, e->ts, e->mid, e->phase, e->tp);
    }
    for (uint32_t i = 0; i < src->n_dedup; i++)
        if (!dedup_seen(dst, src->dedup[i])) dedup_add(dst, cfg, src->dedup[i]);
    dst->merged += src->merged; /* the link itself is counted by the caller */
    dst->linked += src->linked;
    dst->pending += src->pending;
}

/* ---- serialised form ----------------------------------------------------
 * A MessagePack array (JOURNEY_BLOB_VERSION 5; version 4 lacked the last
 * field, pending, version 3 also
 * field, version 2 the last two, version 1 the last five):
 *   [1, customer, number, phase, start_ts, last_ts, [phase_ts 0..phase],
 *    last_tp, last_tp_ts, last_tp_mid, events, segment, segment_ts,
 *    segment_mid, [sat metric, score, scope, phase, explicit_phase, ts, mid, tp],
 *    merged,
 *    [hist: ts, mid, phase, tp, ts, mid, phase, tp, ...], [dedup...], dedup_pos,
 *    status, prev_end, mseg, stored_deadline, linked]
 * documented in schemas/redis.md. */

/* The blob is written and read by hand, not through msgpack-c's packer and
 * object tree: one journey is written per event touched and read per journey
 * loaded, and the generic paths cost several times more (a callback per
 * value, a zone of objects per blob). The bytes are what msgpack-c's packer
 * writes: the smallest form of every integer, str8 for strings of 32..255. */

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
} wbuf_t;

static void w_room(wbuf_t *w, size_t n) {
    if (w->len + n <= w->cap) return;
    size_t ncap = w->cap * 2 > w->len + n ? w->cap * 2 : w->len + n;
    unsigned char *p = realloc(w->p, ncap);
    if (!p) abort();
    w->p = p;
    w->cap = ncap;
}

/* tag, then the low `bytes` (1, 2, 4 or 8) bytes of v, big-endian */
static void w_be(wbuf_t *w, unsigned char tag, uint64_t v, int bytes) {
    unsigned char *o = w->p + w->len;
    uint64_t be = __builtin_bswap64(v << (8 * (8 - bytes)));
    o[0] = tag;
    memcpy(o + 1, &be, 8); /* every caller reserved 9 bytes */
    w->len += 1 + (size_t)bytes;
}

static void w_uint(wbuf_t *w, uint64_t v) {
    w_room(w, 9);
    if (v < 128) w->p[w->len++] = (unsigned char)v;
    else if (v <= UINT8_MAX) w_be(w, 0xcc, v, 1);
    else if (v <= UINT16_MAX) w_be(w, 0xcd, v, 2);
    else if (v <= UINT32_MAX) w_be(w, 0xce, v, 4);
    else w_be(w, 0xcf, v, 8);
}

static void w_int(wbuf_t *w, int64_t v) {
    if (v >= 0) {
        w_uint(w, (uint64_t)v);
        return;
    }
    w_room(w, 9);
    if (v >= -32) w->p[w->len++] = (unsigned char)(int8_t)v;
    else if (v >= INT8_MIN) w_be(w, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN) w_be(w, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN) w_be(w, 0xd2, (uint64_t)v, 4);
    else w_be(w, 0xd3, (uint64_t)v, 8);
}

static void w_array(wbuf_t *w, uint32_t n) {
    w_room(w, 9);
    if (n < 16) w->p[w->len++] = (unsigned char)(0x90 | n);
    else if (n <= UINT16_MAX) w_be(w, 0xdc, n, 2);
    else w_be(w, 0xdd, n, 4);
}

static void w_str(wbuf_t *w, const char *s) {
    size_t n = strlen(s);
    w_room(w, 9 + n);
    if (n < 32) w->p[w->len++] = (unsigned char)(0xa0 | n);
    else if (n <= UINT8_MAX) w_be(w, 0xd9, n, 1);
    else if (n <= UINT16_MAX) w_be(w, 0xda, n, 2);
    else w_be(w, 0xdb, n, 4);
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

int journey_pack(const journey_t *j, char **out, size_t *outlen) {
    /* one allocation for the usual size: header, history and dedup ring */
    wbuf_t w = {NULL, 0, 320 + (size_t)j->n_hist * 40 + (size_t)j->n_dedup * 9};
    if (!(w.p = malloc(w.cap))) return -1;
    w_array(&w, 25);
    w_uint(&w, JOURNEY_BLOB_VERSION);
    w_str(&w, j->customer);
    w_uint(&w, j->number);
    w_int(&w, j->phase);
    w_int(&w, j->start_ts);
    w_int(&w, j->last_ts);
    w_array(&w, (uint32_t)(j->phase + 1));
    for (int k = 0; k <= j->phase; k++) w_int(&w, j->phase_ts[k]);
    w_str(&w, j->last_tp);
    w_int(&w, j->last_tp_ts);
    w_uint(&w, j->last_tp_mid);
    w_uint(&w, j->events);
    w_str(&w, j->segment);
    w_int(&w, j->segment_ts);
    w_uint(&w, j->segment_mid);
    w_array(&w, 8);
    w_int(&w, j->sat.metric);
    w_int(&w, j->sat.score);
    w_int(&w, j->sat.scope);
    w_int(&w, j->sat.phase);
    w_int(&w, j->sat.explicit_phase);
    w_int(&w, j->sat.ts);
    w_uint(&w, j->sat.mid);
    w_str(&w, j->sat.tp);
    w_uint(&w, j->merged);
    if (j->tail) { /* history, dedup ring and its position, as read */
        w_room(&w, j->tail_len);
        memcpy(w.p + w.len, j->tail, j->tail_len);
        w.len += j->tail_len;
    } else {
        w_array(&w, j->n_hist * 4);
        for (uint32_t i = 0; i < j->n_hist; i++) {
            w_int(&w, j->hist[i].ts);
            w_uint(&w, j->hist[i].mid);
            w_int(&w, j->hist[i].phase);
            w_str(&w, j->hist[i].tp);
        }
        w_array(&w, j->n_dedup);
        for (uint32_t i = 0; i < j->n_dedup; i++) w_uint(&w, j->dedup[i]);
        w_uint(&w, j->dedup_pos);
    }
    w_uint(&w, j->status);
    w_int(&w, j->prev_end);
    w_str(&w, j->mseg);
    w_int(&w, j->stored_deadline);
    w_uint(&w, j->linked);
    w_uint(&w, j->pending);
    *out = (char *)w.p;   /* ownership passes to the caller */
    *outlen = w.len;
    return 0;
}

/* A bounds-checked cursor over a blob. Every reader returns -1 when the
 * bytes run out or the value there is not of the kind asked for. */
typedef struct rbuf {
    const unsigned char *p, *end;
} rbuf_t;

static int r_be(rbuf_t *r, int bytes, uint64_t *v) {
    if (r->end - r->p < bytes) return -1;
    if (bytes == 8) {
        uint64_t x;
        memcpy(&x, r->p, 8);
        *v = __builtin_bswap64(x);
    } else if (bytes == 4) {
        uint32_t x;
        memcpy(&x, r->p, 4);
        *v = __builtin_bswap32(x);
    } else {
        *v = bytes == 2 ? (uint64_t)r->p[0] << 8 | r->p[1] : r->p[0];
    }
    r->p += bytes;
    return 0;
}

/* Any integer: *neg says whether it is negative (then *v holds its bits). */
static int r_integer(rbuf_t *r, uint64_t *v, int *neg) {
    if (r->p >= r->end) return -1;
    unsigned char b = *r->p++;
    *neg = 0;
    if (b < 0x80) {
        *v = b;
        return 0;
    }
    if (b >= 0xe0) {
        *v = (uint64_t)(int64_t)(int8_t)b;
        *neg = 1;
        return 0;
    }
    static const signed char BYTES[8] = {1, 2, 4, 8, 1, 2, 4, 8}; /* 0xcc..0xd3 */
    if (b < 0xcc || b > 0xd3) return -1;
    int n = BYTES[b - 0xcc];
    if (r_be(r, n, v) < 0) return -1;
    if (b >= 0xd0) { /* signed: sign-extend */
        int shift = 64 - 8 * n;
        *v = (uint64_t)((int64_t)(*v << shift) >> shift);
        *neg = (int64_t)*v < 0;
    }
    return 0;
}

static int get_i64(rbuf_t *r, int64_t *v) {
    uint64_t x;
    int neg;
    if (r_integer(r, &x, &neg) < 0 || (!neg && x > INT64_MAX)) return -1;
    *v = (int64_t)x;
    return 0;
}

static int get_u64(rbuf_t *r, uint64_t *v) {
    int neg;
    return r_integer(r, v, &neg) < 0 || neg ? -1 : 0;
}

static int get_small(rbuf_t *r, int64_t lo, int64_t hi, int64_t *v) {
    if (get_i64(r, v) < 0 || *v < lo || *v > hi) return -1;
    return 0;
}

/* A length header: the fixed form (a tag under `mask`, the length in the
 * other bits), or a tag t8 (0: none), t16 or t16 + 1 followed by a length of
 * 1, 2 or 4 bytes. */
static int r_len(rbuf_t *r, unsigned char mask, unsigned char fix, unsigned char t8,
                 unsigned char t16, uint64_t *n) {
    if (r->p >= r->end) return -1;
    unsigned char b = *r->p++;
    if ((b & mask) == fix) {
        *n = b & (unsigned char)~mask;
        return 0;
    }
    int bytes = t8 && b == t8 ? 1 : b == t16 ? 2 : b == t16 + 1 ? 4 : 0;
    return bytes ? r_be(r, bytes, n) : -1;
}

static int get_array(rbuf_t *r, uint32_t *n) {
    uint64_t x;
    if (r_len(r, 0xf0, 0x90, 0, 0xdc, &x) < 0) return -1;
    *n = (uint32_t)x;
    return 0;
}

static int get_name(rbuf_t *r, char *dst, size_t cap) {
    uint64_t n;
    if (r_len(r, 0xe0, 0xa0, 0xd9, 0xda, &n) < 0) return -1;
    if (n >= cap || (uint64_t)(r->end - r->p) < n) return -1;
    memcpy(dst, r->p, n);
    dst[n] = '\0';
    r->p += n;
    return 0;
}

static int unpack_sat(journey_t *j, rbuf_t *r) {
    int64_t v[5];
    uint32_t n;
    if (get_array(r, &n) < 0 || n != 8) return -1;
    for (int i = 0; i < 5; i++)
        if (get_small(r, -1, 100, &v[i]) < 0) return -1;
    j->sat.metric = (int8_t)v[0];
    j->sat.score = (int8_t)v[1];
    j->sat.scope = (int8_t)v[2];
    j->sat.phase = (int8_t)v[3];
    j->sat.explicit_phase = (int8_t)v[4];
    if (get_i64(r, &j->sat.ts) < 0 || get_u64(r, &j->sat.mid) < 0) return -1;
    return get_name(r, j->sat.tp, sizeof(j->sat.tp));
}

/* The history; with store 0 it is only checked. */
static int unpack_hist(journey_t *j, rbuf_t *r, const config_t *cfg, int store) {
    uint32_t n;
    if (get_array(r, &n) < 0 || n % 4 || (uint64_t)(r->end - r->p) < n) return -1;
    uint32_t want = n / 4 < (uint32_t)cfg->history_max ? n / 4 : (uint32_t)cfg->history_max;
    if (store && want > j->cap_hist) { /* room for all at once */
        jd_touch_t *h = realloc(j->hist, want * sizeof(*h));
        if (!h) abort();
        j->hist = h;
        j->cap_hist = want;
    }
    for (uint32_t i = 0; i < n; i += 4) {
        int64_t ts, ph;
        uint64_t mid;
        char tp[JD_NAME_MAX + 1];
        if (get_i64(r, &ts) < 0 || get_u64(r, &mid) < 0 ||
            get_small(r, -1, CFG_MAX_PHASES - 1, &ph) < 0 || get_name(r, tp, sizeof(tp)) < 0)
            return -1;
        if (store) hist_add(j, cfg, ts, mid, (int)ph, tp);
    }
    return 0;
}

/* The dedup ring and its position; with store 0 they are only checked. */
static int unpack_dedup(journey_t *j, rbuf_t *r, const config_t *cfg, int store) {
    uint32_t n;
    int64_t p;
    uint64_t small[256], *ids = small;
    if (get_array(r, &n) < 0 || (uint64_t)(r->end - r->p) < n) return -1;
    if (n > 256 && !(ids = malloc(n * sizeof(*ids)))) abort();
    int rc = -1;
    for (uint32_t i = 0; i < n; i++)
        if (get_u64(r, &ids[i]) < 0) goto out;
    if (get_small(r, 0, UINT32_MAX, &p) < 0) goto out;
    /* Replay the ring oldest first so that the newest ids survive a smaller cap. */
    for (uint32_t i = 0; store && i < n; i++) dedup_add(j, cfg, ids[(p + i) % n]);
    rc = 0;
out:
    if (ids != small) free(ids);
    return rc;
}

/* The history, dedup ring and ring position: parsed, or (tail) kept as bytes. */
static int unpack_tail(journey_t *j, rbuf_t *r, const config_t *cfg, int keep) {
    const unsigned char *start = r->p;
    if (unpack_hist(j, r, cfg, !keep) < 0 || unpack_dedup(j, r, cfg, !keep) < 0) return -1;
    if (!keep) return 0;
    j->tail_len = (uint32_t)(r->p - start);
    if (!(j->tail = malloc(j->tail_len))) abort();
    memcpy(j->tail, start, j->tail_len);
    return 0;
}

int journey_load_tail(journey_t *j, const config_t *cfg) {
    if (!j->tail) return 0;
    rbuf_t r = {(const unsigned char *)j->tail, (const unsigned char *)j->tail + j->tail_len};
    char *tail = j->tail;
    j->tail = NULL;
    int rc = unpack_tail(j, &r, cfg, 0) < 0 || r.p != r.end ? -1 : 0;
    free(tail);
    return rc;
}

static int unpack_fields(journey_t *j, rbuf_t *r, uint32_t n, const config_t *cfg, int head) {
    int64_t v, version;
    uint32_t m;
    static const uint32_t FIELDS[] = {0, 19, 22, 23, 24, 25}; /* by version */
    _Static_assert(sizeof(FIELDS) / sizeof(FIELDS[0]) == JOURNEY_BLOB_VERSION + 1, "a count per blob version");
    if (get_small(r, 1, JOURNEY_BLOB_VERSION, &version) < 0 || n != FIELDS[version]) return -1;
    if (get_name(r, j->customer, sizeof(j->customer)) < 0) return -1;
    if (get_small(r, 1, UINT32_MAX, &v) < 0) return -1;
    j->number = (uint32_t)v;
    if (get_small(r, -1, cfg->n_phases - 1, &v) < 0) return -1;
    j->phase = (int8_t)v;
    if (get_i64(r, &j->start_ts) < 0 || get_i64(r, &j->last_ts) < 0) return -1;
    if (get_array(r, &m) < 0 || m != (uint32_t)(j->phase + 1)) return -1;
    for (int k = 0; k <= j->phase; k++)
        if (get_i64(r, &j->phase_ts[k]) < 0) return -1;
    if (get_name(r, j->last_tp, sizeof(j->last_tp)) < 0 || get_i64(r, &j->last_tp_ts) < 0 ||
        get_u64(r, &j->last_tp_mid) < 0 || get_u64(r, &j->events) < 0 ||
        get_name(r, j->segment, sizeof(j->segment)) < 0 || get_i64(r, &j->segment_ts) < 0 ||
        get_u64(r, &j->segment_mid) < 0 || unpack_sat(j, r) < 0 || get_small(r, 0, UINT32_MAX, &v) < 0)
        return -1;
    j->merged = (uint32_t)v;
    if (unpack_tail(j, r, cfg, head) < 0) return -1;
    if (version >= 2) {
        if (get_small(r, JOURNEY_OPEN, JOURNEY_COMPLETED, &v) < 0 || get_i64(r, &j->prev_end) < 0 ||
            get_name(r, j->mseg, sizeof(j->mseg)) < 0)
            return -1;
        j->status = (uint8_t)v;
    }
    if (version >= 3 && get_i64(r, &j->stored_deadline) < 0) return -1;
    j->linked = j->merged; /* before version 4: what this journey had */
    if (version >= 4) {
        if (get_small(r, 0, UINT32_MAX, &v) < 0) return -1;
        j->linked = (uint32_t)v;
    }
    if (version >= 5) {
        if (get_small(r, 0, UINT32_MAX, &v) < 0) return -1;
        j->pending = (uint32_t)v;
    }
    return 0;
}

static int unpack(journey_t *j, const char *buf, size_t len, const config_t *cfg, int head,
                  char *errbuf, size_t errlen) {
    rbuf_t r = {(const unsigned char *)buf, (const unsigned char *)buf + len};
    uint32_t n;
    if (get_array(&r, &n) < 0) {
        snprintf(errbuf, errlen, "journey blob: not one MessagePack value");
        return -1;
    }
    if (n != 19 && n != 22 && n != 23 && n != 24 && n != 25) {
        snprintf(errbuf, errlen, "journey blob: not a 19-, 22-, 23-, 24- or 25-element array");
        return -1;
    }
    if (unpack_fields(j, &r, n, cfg, head) < 0) {
        snprintf(errbuf, errlen, "journey blob: bad field (version %d expected)", JOURNEY_BLOB_VERSION);
        return -1;
    }
    if (r.p != r.end) {
        snprintf(errbuf, errlen, "journey blob: not one MessagePack value");
        return -1;
    }
    return 0;
}

int journey_unpack(journey_t *j, const char *buf, size_t len, const config_t *cfg,
                   char *errbuf, size_t errlen) {
    return unpack(j, buf, len, cfg, 0, errbuf, errlen);
}

int journey_unpack_head(journey_t *j, const char *buf, size_t len, const config_t *cfg,
                        char *errbuf, size_t errlen) {
    return unpack(j, buf, len, cfg, 1, errbuf, errlen);
}

/* ---- printing ---------------------------------------------------------- */

static const char *phase_name(const config_t *cfg, int phase) {
    return phase >= 0 && phase < cfg->n_phases ? cfg->phases[phase].name : "none";
}

static const char *status_name(int s) {
    return s == JOURNEY_DROPPED ? "dropped" : s == JOURNEY_COMPLETED ? "completed" : "in_progress";
}

static const char *metric_name(int m) {
    static const char *const names[] = {"none", "nps", "csat", "ces"};
    return m >= 0 && m <= EV_METRIC_CES ? names[m] : "none";
}

static void json_time(FILE *out, const char *key, int64_t ms) {
    char buf[40];
    fprintf(out, "\"%s\":", key);
    if (ms == JOURNEY_NO_TIME || ms == INT64_MIN) {
        fputs("null", out);
        return;
    }
    text_time(ms, buf, sizeof(buf));
    fprintf(out, "\"%s\"", buf);
}

static void json_sat(const journey_t *j, const config_t *cfg, FILE *out) {
    if (j->sat.metric == EV_METRIC_NONE) {
        fputs("null", out);
        return;
    }
    fprintf(out, "{\"metric\":\"%s\",\"score\":%d,\"scope\":\"%s\",\"phase\":",
            metric_name(j->sat.metric), j->sat.score,
            j->sat.scope == EV_SCOPE_JOURNEY ? "journey" : "touchpoint");
    text_json_str(out, phase_name(cfg, j->sat.phase));
    fputs(",\"touchpoint\":", out);
    text_json_str(out, j->sat.tp);
    fputc(',', out);
    json_time(out, "time", j->sat.ts);
    fputc('}', out);
}

void journey_print_json(const journey_t *j, const config_t *cfg, FILE *out) {
    fputs("{\"customer\":", out);
    text_json_str(out, j->customer);
    fprintf(out, ",\"journey\":%u,\"status\":\"%s\",\"phase\":", j->number, status_name(j->status));
    text_json_str(out, phase_name(cfg, j->phase));
    fputc(',', out);
    json_time(out, "start", j->start_ts);
    fputc(',', out);
    json_time(out, "last_event", j->last_ts);
    fputs(",\"last_touchpoint\":", out);
    text_json_str(out, j->last_tp);
    fprintf(out, ",\"events\":%llu,\"segment\":", (unsigned long long)j->events);
    text_json_str(out, j->segment);
    fputs(",\"phase_entered\":{", out);
    for (int k = 0; k <= j->phase; k++) {
        if (k) fputc(',', out);
        json_time(out, cfg->phases[k].name, j->phase_ts[k]);
    }
    fputs("},\"satisfaction\":", out);
    json_sat(j, cfg, out);
    fprintf(out, ",\"merged_ids\":%u,\"linked_ids\":%u,\"history\":[", j->merged, j->linked);
    for (uint32_t i = 0; i < j->n_hist; i++) {
        if (i) fputc(',', out);
        fputc('{', out);
        json_time(out, "time", j->hist[i].ts);
        fputs(",\"phase\":", out);
        text_json_str(out, j->hist[i].phase >= 0 ? phase_name(cfg, j->hist[i].phase) : "");
        fputs(",\"touchpoint\":", out);
        text_json_str(out, j->hist[i].tp);
        fputc('}', out);
    }
    fputs("]}\n", out);
}

void journey_print_text(const journey_t *j, const config_t *cfg, FILE *out) {
    char t1[40], t2[40], d[40];
    text_time(j->start_ts, t1, sizeof(t1));
    text_time(j->last_ts, t2, sizeof(t2));
    text_duration(j->last_ts - j->start_ts, d, sizeof(d));
    fprintf(out, "customer   %s\njourney    #%u (%s)\nphase      %s\n", j->customer, j->number,
            status_name(j->status), phase_name(cfg, j->phase));
    fprintf(out, "started    %s\nlast event %s  (%s later)\n", t1, t2, d);
    fprintf(out, "events     %llu\nsegment    %s\nlast touch %s\n",
            (unsigned long long)j->events, j->segment[0] ? j->segment : "-",
            j->last_tp[0] ? j->last_tp : "-");
    for (int k = 0; k <= j->phase; k++) {
        text_time(j->phase_ts[k], t1, sizeof(t1));
        fprintf(out, "  entered %-12s %s\n", cfg->phases[k].name, t1);
    }
    if (j->sat.metric != EV_METRIC_NONE)
        fprintf(out, "satisfaction %s %d (%s, %s, at %s)\n", metric_name(j->sat.metric),
                j->sat.score, j->sat.scope == EV_SCOPE_JOURNEY ? "journey" : "touchpoint",
                phase_name(cfg, j->sat.phase), j->sat.tp);
    fprintf(out, "history (%u, oldest first):\n", j->n_hist);
    for (uint32_t i = 0; i < j->n_hist; i++) {
        text_time(j->hist[i].ts, t1, sizeof(t1));
        fprintf(out, "  %s  %-12s %s\n", t1,
                j->hist[i].phase >= 0 ? phase_name(cfg, j->hist[i].phase) : "-", j->hist[i].tp);
    }
}
