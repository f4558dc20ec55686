/*
 * funnel.c -- funnel and drop-off counters (see funnel.h for the names).
 *
 * Writing: every counter is changed by a delta at one of three moments of a
 * journey's life (funnel_moved, funnel_closed, funnel_removed), so the sum
 * over all partitions is exact whatever the batching, and a replay after a
 * crash, which re-applies the same events to the same committed state, adds
 * the same deltas. `active` is the only counter that goes down.
 *
 * Windowed outcomes are the same deltas, also added to the time bucket of
 * each window the outcome's event time falls in (win_add()); an open
 * journey's buckets follow its entry times (retime()), so whatever takes
 * them back later finds them where they are. A bucket no window holds at
 * the partition's watermark is dead: deltas to it are dropped at render and
 * its total is deleted by funnel_delta_expire(). Since the watermark only
 * moves forward, a bucket once dead stays dead, and the live buckets hold
 * exactly the sum of every delta made to them, whatever the batching.
 *
 * Reading: the counters of all partitions are summed per (segment, phase);
 * windowed ones per partition at its own watermark (funnel_snap_add());
 * derived values (dropoff_rate, conversion, quantiles) are computed from the
 * sums, never stored. Segments beyond the requested top N, by journeys
 * reached in the first phase, are folded into "other".
 */
#include "funnel.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

/* ---- names and deltas ---------------------------------------------------------- */

static char *dup_str(const char *s) {
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

static int names_find(const funnel_names_t *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name)) return i;
    return -1;
}

static void names_add(funnel_names_t *s, const char *name) {
    if (s->n == s->cap) {
        int ncap = s->cap ? 2 * s->cap : 8;
        char **v = realloc(s->v, (size_t)ncap * sizeof(*v));
        if (!v) abort();
        s->v = v;
        s->cap = ncap;
    }
    s->v[s->n++] = dup_str(name);
}

static void names_free(funnel_names_t *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

void funnel_reg_free(funnel_reg_t *r) {
    names_free(&r->segments);
    names_free(&r->touchpoints);
}

/* Split "f|<phase>|<seg>|<kind>[|<x>]" in place; 0 or -1. */
static int split_field(char *f, char **phase, char **seg, char **kind, char **x) {
    if (strncmp(f, FUNNEL_PREFIX, 2)) return -1;
    *phase = f + 2;
    *seg = strchr(*phase, '|');
    if (!*seg) return -1;
    *(*seg)++ = '\0';
    *kind = strchr(*seg, '|');
    if (!*kind) return -1;
    *(*kind)++ = '\0';
    *x = strchr(*kind, '|');
    if (*x) *(*x)++ = '\0';
    return 0;
}

/* A counter in memory: phase, kind, segment, touchpoint or bucket, packed
 * in 64 bits. Segment and touchpoint are registry indices, or the reserved
 * NONE / OTHER. Registry names are as in the fields ('|' written as '/'), so
 * every key has one field and every field one key. */
enum { K_REACHED = 0, K_ACTIVE, K_PROGRESSED, K_DROPPED, K_COMPLETED, K_DROP, K_TIP, K__COUNT };
static const char *const KIND_NAMES[] = {"reached", "active", "progressed", "dropped", "completed",
                                         "drop", "tip"};
/* A windowed outcome's kind: K_WIN + window * FUNNEL_OUTCOMES + outcome,
 * its x the low 32 bits of the bucket number (win_bucket() gets the rest
 * back from the partition's clock: every live bucket is within 2^32 of it). */
#define K_WIN K__COUNT
static const int OUTCOME_KIND[FUNNEL_OUTCOMES] = {K_REACHED, K_PROGRESSED, K_DROPPED, K_COMPLETED};
#define IX_NONE 0xffffu
#define IX_OTHER 0xfffeu
#define TP_OTHER 0xffffffffu

static uint64_t key_of(int phase, int kind, unsigned seg, unsigned x) {
    return (uint64_t)phase << 56 | (uint64_t)kind << 48 | (uint64_t)seg << 32 | x;
}

static void delta_add(funnel_delta_t *d, uint64_t key, int64_t delta);

/* ---- windows ---------------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return a % b < 0 ? q - 1 : q;
}

static int64_t win_res(const config_t *cfg, int w) {
    return cfg->funnel_windows_ms[w] / cfg->funnel_buckets;
}

/* The first bucket window w holds at watermark wm (it holds k of them). */
static int64_t win_first(const config_t *cfg, int w, int64_t wm) {
    return floor_div(wm, win_res(cfg, w)) - cfg->funnel_buckets + 1;
}

/* Whether window w holds bucket b at watermark wm. */
static int win_holds(const config_t *cfg, int w, int64_t b, int64_t wm) {
    int64_t first = win_first(cfg, w, wm);
    return b >= first && b < first + cfg->funnel_buckets;
}

/* The bucket number whose low 32 bits are x, the nearest to the clock's. */
static int64_t win_bucket(const config_t *cfg, int w, uint32_t x, int64_t clock) {
    int64_t top = floor_div(clock, win_res(cfg, w));
    return top - (int32_t)((uint32_t)top - x);
}

/* Count delta outcomes o of phase p at event time ts, in every window. */
static void win_add(funnel_delta_t *d, const config_t *cfg, int p, unsigned seg, int o, int64_t ts,
                    int64_t delta) {
    if (ts == JOURNEY_NO_TIME) return;
    for (int w = 0; w < cfg->n_funnel_windows; w++)
        delta_add(d, key_of(p, K_WIN + w * FUNNEL_OUTCOMES + o, seg, (uint32_t)floor_div(ts, win_res(cfg, w))),
                  delta);
}

void funnel_window_name(const config_t *cfg, int w, char *buf, size_t cap) {
    if (w < 0 || w >= cfg->n_funnel_windows) snprintf(buf, cap, "all");
    else text_duration_unit(cfg->funnel_windows_ms[w], buf, cap);
}

static int outcome_of(const char *kind) {
    for (int o = 0; o < FUNNEL_OUTCOMES; o++)
        if (!strcmp(KIND_NAMES[OUTCOME_KIND[o]], kind)) return o;
    return -1;
}

/* "<res_ms>|<bucket>" of outcome `kind`: its window, outcome and bucket; 0,
 * or -1 if it is not one, or of a window no longer configured. */
static int win_parse(const config_t *cfg, const char *kind, const char *x, int *w, int *o, int64_t *bucket) {
    char *end;
    if ((*o = outcome_of(kind)) < 0) return -1;
    long long res = strtoll(x, &end, 10);
    if (end == x || *end != '|') return -1;
    const char *b = end + 1;
    long long no = strtoll(b, &end, 10);
    if (end == b || *end) return -1;
    for (*w = 0; *w < cfg->n_funnel_windows; (*w)++)
        if (win_res(cfg, *w) == res) {
            *bucket = no;
            return 0;
        }
    return -1;
}

void funnel_learn(funnel_reg_t *r, funnel_delta_t *totals, const config_t *cfg, const char *field,
                  int64_t value) {
    char buf[512], *phase, *seg, *kind, *x;
    snprintf(buf, sizeof(buf), "%s", field);
    if (split_field(buf, &phase, &seg, &kind, &x) < 0) return;
    if (strcmp(seg, FUNNEL_OTHER) && strcmp(seg, FUNNEL_NONE) && names_find(&r->segments, seg) < 0)
        names_add(&r->segments, seg);
    if (x && !strcmp(kind, "drop") && strcmp(x, FUNNEL_OTHER) && names_find(&r->touchpoints, x) < 0)
        names_add(&r->touchpoints, x);
    int p = 0, k = 0;
    while (p < cfg->n_phases && strcmp(cfg->phases[p].name, phase)) p++;
    while (k < K__COUNT && strcmp(KIND_NAMES[k], kind)) k++;
    unsigned s = !strcmp(seg, FUNNEL_NONE) ? IX_NONE : !strcmp(seg, FUNNEL_OTHER) ? IX_OTHER
                                                      : (unsigned)names_find(&r->segments, seg);
    int w, o;
    int64_t bucket;
    if (p < cfg->n_phases && x && win_parse(cfg, kind, x, &w, &o, &bucket) == 0) {
        delta_add(totals, key_of(p, K_WIN + w * FUNNEL_OUTCOMES + o, s, (uint32_t)bucket), value);
        return;
    }
    if (p == cfg->n_phases || k == K__COUNT || (k >= K_DROP) != (x != NULL)) return;
    unsigned ix = 0;
    if (k == K_DROP) {
        ix = !strcmp(x, FUNNEL_OTHER) ? TP_OTHER : (unsigned)names_find(&r->touchpoints, x);
    } else if (k == K_TIP) {
        char *end;
        long v = strtol(x, &end, 10);
        if (*end || v < 0 || v >= FUNNEL_TIP_BUCKETS) return;
        ix = (unsigned)v;
    }
    delta_add(totals, key_of(p, k, s, ix), value);
}

static uint64_t key_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    return k ^ (k >> 33);
}

static void names_free_rendered(funnel_delta_t *d) {
    free(d->names); /* the names themselves are the totals' */
    free(d->totals);
    d->names = NULL;
    d->totals = NULL;
    d->n_names = 0;
}

static void gone_free(funnel_delta_t *d) {
    for (size_t i = 0; i < d->n_gone; i++) free(d->gone[i]);
    free(d->gone);
    d->gone = NULL;
    d->n_gone = 0;
}

void funnel_delta_free(funnel_delta_t *d) {
    names_free_rendered(d);
    gone_free(d);
    for (size_t i = 0; i < d->n; i++) free(d->knames[i]);
    free(d->knames);
    free(d->keys);
    free(d->vals);
    free(d->slots);
    memset(d, 0, sizeof(*d));
}

void funnel_delta_clear(funnel_delta_t *d) {
    names_free_rendered(d);
    gone_free(d);
    for (size_t i = 0; i < d->n; i++) free(d->knames[i]);
    if (d->slots && d->n) memset(d->slots, 0, d->cap * sizeof(*d->slots));
    d->n = 0;
}

static void delta_grow(funnel_delta_t *d) {
    size_t ncap = d->cap ? 2 * d->cap : 64;
    uint32_t *slots = calloc(ncap, sizeof(*slots));
    uint64_t *keys = realloc(d->keys, ncap / 2 * sizeof(*keys));
    int64_t *vals = realloc(d->vals, ncap / 2 * sizeof(*vals));
    char **knames = realloc(d->knames, ncap / 2 * sizeof(*knames));
    if (!slots || !keys || !vals || !knames) abort();
    d->keys = keys;
    d->vals = vals;
    d->knames = knames;
    for (size_t i = 0; i < d->n; i++) {
        size_t k = key_hash(keys[i]) & (ncap - 1);
        while (slots[k]) k = (k + 1) & (ncap - 1);
        slots[k] = (uint32_t)i + 1;
    }
    free(d->slots);
    d->slots = slots;
    d->cap = ncap;
}

/* Add delta to key's value (a new key starts at 0); the key's index. */
static size_t delta_add_ix(funnel_delta_t *d, uint64_t key, int64_t delta) {
    if ((d->n + 1) * 2 > d->cap) delta_grow(d);
    size_t k = key_hash(key) & (d->cap - 1);
    while (d->slots[k]) {
        size_t i = d->slots[k] - 1;
        if (d->keys[i] == key) {
            d->vals[i] += delta;
            return i;
        }
        k = (k + 1) & (d->cap - 1);
    }
    d->keys[d->n] = key;
    d->vals[d->n] = delta;
    d->knames[d->n] = NULL;
    d->slots[k] = (uint32_t)++d->n;
    return d->n - 1;
}

static void delta_add(funnel_delta_t *d, uint64_t key, int64_t delta) {
    delta_add_ix(d, key, delta);
}

static void put_str(char **p, const char *s) {
    while (*s) *(*p)++ = *s++;
}

static void put_u64(char **p, uint64_t v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *(*p)++ = tmp[--n];
}

static void put_i64(char **p, int64_t v) {
    if (v < 0) *(*p)++ = '-';
    put_u64(p, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

static const char *ix_name(const funnel_names_t *s, unsigned ix) {
    return ix == IX_NONE ? FUNNEL_NONE : ix == IX_OTHER ? FUNNEL_OTHER : s->v[ix];
}

/* The field name of key k (the clock gives a bucket's number back). */
static char *key_name(uint64_t k, const funnel_reg_t *r, const config_t *cfg, int64_t clock) {
    int phase = (int)(k >> 56), kind = (int)(k >> 48 & 0xff);
    unsigned seg = (unsigned)(k >> 32 & 0xffff), x = (unsigned)(k & 0xffffffffu);
    /* "f|" phase "|" segment "|" kind ["|" touchpoint or bucket | "|" res "|" bucket]:
     * names <= JD_NAME_MAX */
    char buf[3 * (JD_NAME_MAX + 1) + 64], *p = buf;
    put_str(&p, FUNNEL_PREFIX);
    put_str(&p, cfg->phases[phase].name);
    *p++ = '|';
    put_str(&p, ix_name(&r->segments, seg));
    *p++ = '|';
    if (kind >= K_WIN) {
        int w = (kind - K_WIN) / FUNNEL_OUTCOMES;
        put_str(&p, KIND_NAMES[OUTCOME_KIND[(kind - K_WIN) % FUNNEL_OUTCOMES]]);
        *p++ = '|';
        put_i64(&p, win_res(cfg, w));
        *p++ = '|';
        put_i64(&p, win_bucket(cfg, w, x, clock));
    } else {
        put_str(&p, KIND_NAMES[kind]);
        if (kind == K_DROP) {
            *p++ = '|';
            put_str(&p, x == TP_OTHER ? FUNNEL_OTHER : r->touchpoints.v[x]);
        } else if (kind == K_TIP) {
            *p++ = '|';
            put_u64(&p, x);
        }
    }
    *p = '\0';
    return dup_str(buf);
}

/* Whether key k is a windowed bucket that no window holds at wm any more. */
static int key_dead(uint64_t k, const config_t *cfg, int64_t clock, int64_t wm) {
    int kind = (int)(k >> 48 & 0xff);
    if (kind < K_WIN) return 0;
    int w = (kind - K_WIN) / FUNNEL_OUTCOMES;
    return w >= cfg->n_funnel_windows || win_bucket(cfg, w, (uint32_t)k, clock) < win_first(cfg, w, wm);
}

void funnel_delta_render(funnel_delta_t *d, funnel_delta_t *totals, const funnel_reg_t *r,
                         const config_t *cfg, int64_t clock, int64_t wm) {
    names_free_rendered(d);
    if (!d->n) return;
    d->names = malloc(d->n * sizeof(*d->names));
    d->totals = malloc(d->n * sizeof(*d->totals));
    if (!d->names || !d->totals) abort();
    for (size_t i = 0; i < d->n; i++) {
        uint64_t k = d->keys[i];
        if (!d->vals[i]) continue; /* moved and back within the batch */
        if (key_dead(k, cfg, clock, wm)) continue; /* no window holds it */
        size_t t = delta_add_ix(totals, k, d->vals[i]);
        if (!totals->knames[t]) totals->knames[t] = key_name(k, r, cfg, clock); /* once per counter */
        d->totals[d->n_names] = totals->vals[t];
        d->names[d->n_names++] = totals->knames[t];
    }
}

size_t funnel_delta_expire(funnel_delta_t *d, funnel_delta_t *totals, const funnel_reg_t *r,
                           const config_t *cfg, int64_t clock, int64_t wm) {
    size_t n = 0, dead = 0;
    for (size_t i = 0; i < totals->n; i++) dead += key_dead(totals->keys[i], cfg, clock, wm);
    if (!dead) return 0;
    char **gone = realloc(d->gone, (d->n_gone + dead) * sizeof(*gone));
    if (!gone) abort();
    d->gone = gone;
    for (size_t i = 0; i < totals->n; i++) {
        if (key_dead(totals->keys[i], cfg, clock, wm)) {
            d->gone[d->n_gone++] = totals->knames[i] ? totals->knames[i] : key_name(totals->keys[i], r, cfg, clock);
            continue;
        }
        totals->keys[n] = totals->keys[i];
        totals->knames[n] = totals->knames[i];
        totals->vals[n++] = totals->vals[i];
    }
    /* the table without them: its slots rebuilt */
    totals->n = n;
    memset(totals->slots, 0, totals->cap * sizeof(*totals->slots));
    for (size_t i = 0; i < n; i++) {
        size_t k = key_hash(totals->keys[i]) & (totals->cap - 1);
        while (totals->slots[k]) k = (k + 1) & (totals->cap - 1);
        totals->slots[k] = (uint32_t)i + 1;
    }
    return dead;
}

/* ---- time in phase ---------------------------------------------------------------- */

/* x = seconds + 4 >= 4, so every bucket has its two bits after the top one:
 * bucket 4 * msb + frac holds x in [(4 + frac) << (msb - 2), next bucket's). */
int funnel_tip_bucket(int64_t ms) {
    uint64_t x = (uint64_t)(ms < 0 ? 0 : ms / 1000) + 4;
    int msb = 63 - __builtin_clzll(x);
    int b = 4 * msb + (int)((x >> (msb - 2)) & 3);
    return b < FUNNEL_TIP_BUCKETS ? b : FUNNEL_TIP_BUCKETS - 1;
}

int64_t funnel_tip_upper_ms(int bucket) {
    int nb = bucket + 1, msb = nb / 4, frac = nb % 4;
    if (msb < 2) return 1000;
    uint64_t lo = (uint64_t)(4 + frac) << (msb - 2); /* next bucket's lowest x */
    return (int64_t)(lo - 4) * 1000;
}

/* ---- writing ------------------------------------------------------------------------ */

/* Registry index of a segment (seg) or touchpoint name: known, or added if
 * there is room, else OTHER ("other", and "none" for segments, are reserved). */
/* A name as fields hold it: '|' written as '/', at most JD_NAME_MAX bytes. */
static void field_name(char *dst, const char *name) {
    size_t i = 0;
    for (; name[i] && i < JD_NAME_MAX; i++) dst[i] = name[i] == '|' ? '/' : name[i];
    dst[i] = '\0';
}

static unsigned name_ix(funnel_names_t *s, const char *raw, int max, int seg) {
    char name[JD_NAME_MAX + 1];
    field_name(name, raw);
    if (seg && !strcmp(name, FUNNEL_NONE)) return IX_NONE;
    unsigned other = seg ? IX_OTHER : TP_OTHER;
    if (!strcmp(name, FUNNEL_OTHER)) return other;
    int i = names_find(s, name);
    if (i >= 0) return (unsigned)i;
    if (s->n >= max) return other;
    names_add(s, name);
    return (unsigned)(s->n - 1);
}

static unsigned seg_ix(funnel_reg_t *r, const config_t *cfg, const char *seg) {
    return name_ix(&r->segments, seg, cfg->segments_max, 1);
}

/* Take back what an open journey in phase p, with entry times ts[],
 * counts under segment seg. */
static void take_back(funnel_delta_t *d, const config_t *cfg, unsigned seg, int p, const int64_t *ts) {
    for (int k = 0; k <= p; k++) {
        delta_add(d, key_of(k, K_REACHED, seg, 0), -1);
        win_add(d, cfg, k, seg, FUNNEL_W_REACHED, ts[k], -1);
    }
    for (int k = 0; k < p; k++) {
        delta_add(d, key_of(k, K_PROGRESSED, seg, 0), -1);
        win_add(d, cfg, k, seg, FUNNEL_W_PROGRESSED, ts[k + 1], -1);
    }
    delta_add(d, key_of(p, K_ACTIVE, seg, 0), -1);
}

/* The windowed counts of phases 0..from (counted at entry times before[])
 * follow the entry times that moved (earlier: an earlier event, or a merge). */
static void retime(funnel_delta_t *d, const config_t *cfg, unsigned seg, const journey_t *j, int from,
                   const int64_t *before) {
    if (!cfg->n_funnel_windows) return;
    for (int k = 0; k <= from; k++) {
        if (before[k] == j->phase_ts[k]) continue;
        win_add(d, cfg, k, seg, FUNNEL_W_REACHED, before[k], -1);
        win_add(d, cfg, k, seg, FUNNEL_W_REACHED, j->phase_ts[k], 1);
        if (!k) continue;
        win_add(d, cfg, k - 1, seg, FUNNEL_W_PROGRESSED, before[k], -1);
        win_add(d, cfg, k - 1, seg, FUNNEL_W_PROGRESSED, j->phase_ts[k], 1);
    }
}

/* Whether an entry time of phases 0..from moved. */
static int moved_times(const journey_t *j, int from, const int64_t *before) {
    for (int k = 0; k <= from; k++)
        if (before[k] != j->phase_ts[k]) return 1;
    return 0;
}

void funnel_moved(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, journey_t *j, int from,
                  const int64_t *before) {
    if (j->phase < 0) return;
    if (!j->mseg[0]) from = -1; /* never counted (a version 1 journey): count it whole now */
    /* The segment is the journey's (its latest event carrying one), so it
     * does not depend on arrival order; if it changed, the journey's counts
     * move with it. */
    const char *seg_now = j->segment[0] ? j->segment : FUNNEL_NONE;
    if (j->phase <= from && !strcmp(seg_now, j->mseg)) { /* the usual event: nothing moves ... */
        if (cfg->n_funnel_windows && moved_times(j, from, before)) /* ... but perhaps an entry time */
            retime(d, cfg, seg_ix(r, cfg, j->mseg), j, from, before);
        return;
    }
    char want[JD_NAME_MAX + 1];
    field_name(want, seg_now);
    unsigned seg;
    if (from < 0 || strcmp(want, j->mseg)) {
        seg = seg_ix(r, cfg, want);
        const char *name = ix_name(&r->segments, seg);
        if (from >= 0 && strcmp(name, j->mseg)) {
            take_back(d, cfg, seg_ix(r, cfg, j->mseg), from, before);
            from = -1;
        }
        if (from < 0) snprintf(j->mseg, sizeof(j->mseg), "%s", name);
    }
    seg = seg_ix(r, cfg, j->mseg);
    if (from >= 0) retime(d, cfg, seg, j, from, before);
    if (j->phase <= from) return;
    for (int k = from + 1; k <= j->phase; k++) {
        delta_add(d, key_of(k, K_REACHED, seg, 0), 1);
        win_add(d, cfg, k, seg, FUNNEL_W_REACHED, j->phase_ts[k], 1);
    }
    for (int k = from < 0 ? 0 : from; k < j->phase; k++) {
        delta_add(d, key_of(k, K_PROGRESSED, seg, 0), 1);
        win_add(d, cfg, k, seg, FUNNEL_W_PROGRESSED, j->phase_ts[k + 1], 1);
    }
    if (from >= 0) delta_add(d, key_of(from, K_ACTIVE, seg, 0), -1);
    delta_add(d, key_of(j->phase, K_ACTIVE, seg, 0), 1);
}

void funnel_close_of(const journey_t *j, const config_t *cfg, funnel_close_t *c) {
    c->at = journey_deadline(j, cfg);
    c->phase = j->phase;
    c->mseg = j->mseg;
    c->last_tp = j->last_tp[0] ? j->last_tp : "unknown";
    for (int k = 0; k < CFG_MAX_PHASES - 1; k++)
        c->tip[k] = k >= j->phase || j->phase_ts[k + 1] == j->phase_ts[k]
                        ? FUNNEL_TIP_SKIPPED /* entered with the next, or not left */
                        : (uint8_t)funnel_tip_bucket(j->phase_ts[k + 1] - j->phase_ts[k]);
}

void funnel_count_close(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, const funnel_close_t *c) {
    if (c->phase < 0) return; /* never counted: only unclassified events */
    int p = c->phase;
    unsigned seg = seg_ix(r, cfg, c->mseg);
    delta_add(d, key_of(p, K_ACTIVE, seg, 0), -1);
    if (p == cfg->n_phases - 1) { /* journey_close(): completed */
        delta_add(d, key_of(p, K_COMPLETED, seg, 0), 1);
        win_add(d, cfg, p, seg, FUNNEL_W_COMPLETED, c->at, 1);
    } else {
        unsigned tp = name_ix(&r->touchpoints, c->last_tp, cfg->touchpoints_max, 0);
        delta_add(d, key_of(p, K_DROPPED, seg, 0), 1);
        delta_add(d, key_of(p, K_DROP, seg, tp), 1);
        win_add(d, cfg, p, seg, FUNNEL_W_DROPPED, c->at, 1);
    }
    for (int k = 0; k < p; k++)
        if (c->tip[k] != FUNNEL_TIP_SKIPPED) delta_add(d, key_of(k, K_TIP, seg, c->tip[k]), 1);
}

void funnel_closed(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, const journey_t *j) {
    funnel_close_t c;
    funnel_close_of(j, cfg, &c);
    funnel_count_close(d, r, cfg, &c);
}

void funnel_removed(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, const journey_t *j) {
    if (j->phase < 0 || j->status != JOURNEY_OPEN || !j->mseg[0]) return;
    take_back(d, cfg, seg_ix(r, cfg, j->mseg), j->phase, j->phase_ts);
}

/* ---- the life of a journey ------------------------------------------------------ */

static void close_now(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, journey_t *j) {
    if (j->phase >= 0 && !j->mseg[0]) funnel_moved(d, r, cfg, j, -1, NULL); /* a version 1 journey */
    journey_close(j, cfg);
    funnel_closed(d, r, cfg, j);
}

int funnel_expire(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, journey_t *j, int64_t wm) {
    if (j->status != JOURNEY_OPEN || j->pending || journey_deadline(j, cfg) > wm) return 0;
    close_now(d, r, cfg, j);
    return 1;
}

funnel_result_t funnel_event(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, journey_t *j,
                             int64_t wm, int64_t wm_now, const event_t *ev, uint64_t mid, int phase,
                             const char *tp, int *late) {
    int64_t ts = ev->ts_ms;
    *late = 0;
    funnel_expire(d, r, cfg, j, wm_now);
    if (journey_seen(j, mid)) return FUNNEL_DUPLICATE;
    *late = ts < wm;
    if (j->status == JOURNEY_OPEN && ts >= journey_deadline(j, cfg)) close_now(d, r, cfg, j);
    if ((j->status != JOURNEY_OPEN && ts < journey_deadline(j, cfg)) ||
        (j->status == JOURNEY_OPEN && ts < j->prev_end)) {
        journey_apply_late(j, cfg, mid, ts, phase, tp);
        return FUNNEL_LATE;
    }
    if (j->status != JOURNEY_OPEN) journey_restart(j, cfg);
    int from = j->phase;
    int64_t before[CFG_MAX_PHASES];
    memcpy(before, j->phase_ts, sizeof(before));
    journey_apply(j, cfg, ev, mid, phase, tp);
    funnel_moved(d, r, cfg, j, from, before);
    return FUNNEL_APPLIED;
}

/* ---- reading ------------------------------------------------------------------------ */

static funnel_seg_t *snap_seg(funnel_snap_t *s, const char *name) {
    for (int i = 0; i < s->n_segs; i++)
        if (!strcmp(s->segs[i].name, name)) return &s->segs[i];
    if (s->n_segs == s->cap_segs) {
        int ncap = s->cap_segs ? 2 * s->cap_segs : 8;
        funnel_seg_t *v = realloc(s->segs, (size_t)ncap * sizeof(*v));
        if (!v) abort();
        s->segs = v;
        s->cap_segs = ncap;
    }
    funnel_seg_t *g = &s->segs[s->n_segs++];
    memset(g, 0, sizeof(*g));
    snprintf(g->name, sizeof(g->name), "%s", name);
    return g;
}

static void count_add(funnel_phase_t *p, const char *name, int64_t n) {
    for (int i = 0; i < p->n_drops; i++)
        if (!strcmp(p->drops[i].name, name)) {
            p->drops[i].n += n;
            return;
        }
    if (p->n_drops == p->cap_drops) {
        int ncap = p->cap_drops ? 2 * p->cap_drops : 8;
        funnel_count_t *v = realloc(p->drops, (size_t)ncap * sizeof(*v));
        if (!v) abort();
        p->drops = v;
        p->cap_drops = ncap;
    }
    snprintf(p->drops[p->n_drops].name, sizeof(p->drops[0].name), "%s", name);
    p->drops[p->n_drops++].n = n;
}

static void phase_add(funnel_phase_t *dst, const funnel_phase_t *src) {
    dst->reached += src->reached;
    dst->active += src->active;
    dst->progressed += src->progressed;
    dst->dropped += src->dropped;
    dst->completed += src->completed;
    for (int w = 0; w < CFG_MAX_FUNNEL_WINDOWS; w++)
        for (int o = 0; o < FUNNEL_OUTCOMES; o++) dst->win[w][o] += src->win[w][o];
    for (int i = 0; i < src->n_drops; i++) count_add(dst, src->drops[i].name, src->drops[i].n);
    for (int b = 0; b < FUNNEL_TIP_BUCKETS; b++) dst->tip[b] += src->tip[b];
}

void funnel_snap_add(funnel_snap_t *s, const config_t *cfg, const char *name, int64_t value, int64_t wm) {
    char buf[512], *phase, *seg, *kind, *x;
    snprintf(buf, sizeof(buf), "%s", name);
    if (split_field(buf, &phase, &seg, &kind, &x) < 0) return;
    int k = config_phase_index(cfg, phase);
    if (k < 0) return; /* a phase no longer configured */
    int w, o;
    int64_t bucket;
    if (x && win_parse(cfg, kind, x, &w, &o, &bucket) == 0) {
        if (win_holds(cfg, w, bucket, wm)) snap_seg(s, seg)->ph[k].win[w][o] += value;
        return;
    }
    if (x && outcome_of(kind) >= 0) return; /* a window no longer configured */
    funnel_phase_t *p = &snap_seg(s, seg)->ph[k];
    if (!strcmp(kind, "reached")) p->reached += value;
    else if (!strcmp(kind, "active")) p->active += value;
    else if (!strcmp(kind, "progressed")) p->progressed += value;
    else if (!strcmp(kind, "dropped")) p->dropped += value;
    else if (!strcmp(kind, "completed")) p->completed += value;
    else if (!strcmp(kind, "drop") && x) count_add(p, x, value);
    else if (!strcmp(kind, "tip") && x) {
        char *end;
        long b = strtol(x, &end, 10);
        if (end != x && !*end && b >= 0 && b < FUNNEL_TIP_BUCKETS) p->tip[b] += value;
    }
}

static void seg_free(funnel_seg_t *g) {
    for (int k = 0; k < CFG_MAX_PHASES; k++) free(g->ph[k].drops);
}

void funnel_snap_free(funnel_snap_t *s) {
    for (int i = 0; i < s->n_segs; i++) seg_free(&s->segs[i]);
    free(s->segs);
    memset(s, 0, sizeof(*s));
}

static int by_count_desc(const void *a, const void *b) {
    const funnel_count_t *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    return strcmp(x->name, y->name);
}

static int by_reached_desc(const void *a, const void *b) {
    const funnel_seg_t *x = a, *y = b;
    if (x->ph[0].reached != y->ph[0].reached) return x->ph[0].reached < y->ph[0].reached ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* The view printed: "all" first, then the top segments and "other"
 * (folding the rest), or just the one segment asked for. Caller frees. */
typedef struct view {
    funnel_seg_t *segs;
    int n;
} view_t;

static void view_build(const funnel_snap_t *s, const funnel_print_opts_t *o, view_t *v) {
    v->segs = calloc((size_t)s->n_segs + 2, sizeof(*v->segs));
    if (!v->segs) abort();
    v->n = 0;
    funnel_seg_t *all = &v->segs[v->n++];
    snprintf(all->name, sizeof(all->name), "all");
    funnel_seg_t *sorted = malloc(((size_t)s->n_segs + 1) * sizeof(*sorted));
    if (!sorted) abort();
    if (s->n_segs) memcpy(sorted, s->segs, (size_t)s->n_segs * sizeof(*sorted));
    qsort(sorted, (size_t)s->n_segs, sizeof(*sorted), by_reached_desc);
    funnel_seg_t other;
    memset(&other, 0, sizeof(other));
    snprintf(other.name, sizeof(other.name), FUNNEL_OTHER);
    int listed = 0, folded = 0;
    for (int i = 0; i < s->n_segs; i++) {
        const funnel_seg_t *g = &sorted[i];
        for (int k = 0; k < CFG_MAX_PHASES; k++) phase_add(&all->ph[k], &g->ph[k]);
        if (o->segment) {
            if (!strcmp(g->name, o->segment)) {
                funnel_seg_t *d = &v->segs[v->n++];
                snprintf(d->name, sizeof(d->name), "%s", g->name);
                for (int k = 0; k < CFG_MAX_PHASES; k++) phase_add(&d->ph[k], &g->ph[k]);
            }
        } else if (strcmp(g->name, FUNNEL_OTHER) && listed < o->top_segments) {
            funnel_seg_t *d = &v->segs[v->n++];
            snprintf(d->name, sizeof(d->name), "%s", g->name);
            for (int k = 0; k < CFG_MAX_PHASES; k++) phase_add(&d->ph[k], &g->ph[k]);
            listed++;
        } else if (o->top_segments > 0) { /* --top 0: "all" alone */
            for (int k = 0; k < CFG_MAX_PHASES; k++) phase_add(&other.ph[k], &g->ph[k]);
            folded++;
        }
    }
    if (folded) v->segs[v->n++] = other; /* moves its drops */
    else seg_free(&other);
    if (o->segment) { /* just the segment (empty if unknown), without "all" */
        seg_free(all);
        memmove(&v->segs[0], &v->segs[1], (size_t)(v->n - 1) * sizeof(*v->segs));
        v->n--;
        if (!v->n) {
            memset(&v->segs[0], 0, sizeof(v->segs[0]));
            snprintf(v->segs[0].name, sizeof(v->segs[0].name), "%s", o->segment);
            v->n = 1;
        }
    }
    for (int i = 0; i < v->n; i++)
        for (int k = 0; k < CFG_MAX_PHASES; k++)
            if (v->segs[i].ph[k].n_drops)
                qsort(v->segs[i].ph[k].drops, (size_t)v->segs[i].ph[k].n_drops, sizeof(funnel_count_t),
                      by_count_desc);
    free(sorted);
}

static void view_free(view_t *v) {
    for (int i = 0; i < v->n; i++) seg_free(&v->segs[i]);
    free(v->segs);
}

/* Upper edge (s) of the bucket where the q-quantile falls; -1 if empty. */
static double tip_quantile(const funnel_phase_t *p, double q) {
    int64_t n = 0, acc = 0;
    for (int b = 0; b < FUNNEL_TIP_BUCKETS; b++) n += p->tip[b];
    if (n <= 0) return -1;
    for (int b = 0; b < FUNNEL_TIP_BUCKETS; b++) {
        acc += p->tip[b];
        if ((double)acc >= q * (double)n) return (double)funnel_tip_upper_ms(b) / 1000.0;
    }
    return -1;
}

static int64_t tip_n(const funnel_phase_t *p) {
    int64_t n = 0;
    for (int b = 0; b < FUNNEL_TIP_BUCKETS; b++) n += p->tip[b];
    return n;
}

static void json_ratio(FILE *out, const char *key, int64_t num, int64_t den) {
    fprintf(out, ",\"%s\":", key);
    if (den > 0) fprintf(out, "%.6f", (double)num / (double)den);
    else fputs("null", out);
}

static void json_phase(FILE *out, const config_t *cfg, const funnel_seg_t *g, int k,
                       const funnel_print_opts_t *o) {
    const funnel_phase_t *p = &g->ph[k];
    fputs("{\"phase\":", out);
    text_json_str(out, cfg->phases[k].name);
    fprintf(out, ",\"reached\":%lld,\"active\":%lld,\"progressed\":%lld,\"dropped\":%lld,\"completed\":%lld",
            (long long)p->reached, (long long)p->active, (long long)p->progressed, (long long)p->dropped,
            (long long)p->completed);
    json_ratio(out, "dropoff_rate", p->dropped, p->dropped + p->progressed + p->completed);
    json_ratio(out, "conversion", p->reached, g->ph[0].reached);
    fputs(",\"dropoff_points\":[", out);
    for (int i = 0; i < p->n_drops && i < o->top_touchpoints; i++) {
        fputs(i ? ",{\"touchpoint\":" : "{\"touchpoint\":", out);
        text_json_str(out, p->drops[i].name);
        fprintf(out, ",\"dropped\":%lld}", (long long)p->drops[i].n);
    }
    int64_t n = tip_n(p);
    fprintf(out, "],\"time_in_phase\":{\"n\":%lld,\"median_s\":", (long long)n);
    if (n) fprintf(out, "%.0f,\"p90_s\":%.0f}", tip_quantile(p, 0.5), tip_quantile(p, 0.9));
    else fputs("null,\"p90_s\":null}", out);
    fputs(",\"windows\":{", out);
    for (int w = 0; w < cfg->n_funnel_windows; w++) {
        const int64_t *c = p->win[w];
        char name[32];
        funnel_window_name(cfg, w, name, sizeof(name));
        fprintf(out, "%s\"%s\":{\"reached\":%lld,\"progressed\":%lld,\"dropped\":%lld,\"completed\":%lld", w ? "," : "",
                name, (long long)c[FUNNEL_W_REACHED], (long long)c[FUNNEL_W_PROGRESSED],
                (long long)c[FUNNEL_W_DROPPED], (long long)c[FUNNEL_W_COMPLETED]);
        json_ratio(out, "dropoff_rate", c[FUNNEL_W_DROPPED],
                   c[FUNNEL_W_DROPPED] + c[FUNNEL_W_PROGRESSED] + c[FUNNEL_W_COMPLETED]);
        json_ratio(out, "conversion", c[FUNNEL_W_REACHED], g->ph[0].win[w][FUNNEL_W_REACHED]);
        fputc('}', out);
    }
    fputs("}}", out);
}

/* A segment's phase, also handed to o->entry (keyed funnel|<segment>|<phase>). */
static void json_phase_entry(FILE *out, const config_t *cfg, const funnel_seg_t *g, int k,
                             const funnel_print_opts_t *o) {
    char *buf = NULL, key[2 * JD_NAME_MAX + 96];
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) abort();
    json_phase(m, cfg, g, k, o);
    fclose(m);
    snprintf(key, sizeof(key), "funnel|%s|%s", g->name, cfg->phases[k].name);
    o->entry("funnel", g->name, key, buf, len, o->entry_opaque);
    fwrite(buf, 1, len, out);
    free(buf);
}

void funnel_print_json(const funnel_snap_t *s, const config_t *cfg, const funnel_print_opts_t *o,
                       FILE *out) {
    char t[40];
    view_t v;
    view_build(s, o, &v);
    text_time(o->now_ms, t, sizeof(t));
    fprintf(out, "{\"schema\":\"journeyd.metrics\",\"version\":1,\"computed_at\":\"%s\",\"complete_to\":", t);
    if (s->watermark != INT64_MAX && s->watermark > INT64_MIN) {
        text_time(s->watermark, t, sizeof(t));
        fprintf(out, "\"%s\"", t);
    } else {
        fputs("null", out);
    }
    fprintf(out, ",\"partitions\":%lld,\"late_events\":%lld,\"phases\":[", (long long)s->shards,
            (long long)s->late);
    for (int k = 0; k < cfg->n_phases; k++) {
        if (k) fputc(',', out);
        text_json_str(out, cfg->phases[k].name);
    }
    fputs("],\"funnel_windows\":[", out);
    for (int w = 0; w < cfg->n_funnel_windows; w++) {
        char name[32];
        funnel_window_name(cfg, w, name, sizeof(name));
        fprintf(out, "%s{\"window\":\"%s\",\"length_ms\":%lld,\"bucket_ms\":%lld}", w ? "," : "", name,
                (long long)cfg->funnel_windows_ms[w], (long long)win_res(cfg, w));
    }
    fputs("],\"funnel\":[", out);
    for (int i = 0; i < v.n; i++) {
        fputs(i ? ",{\"segment\":" : "{\"segment\":", out);
        text_json_str(out, v.segs[i].name);
        fputs(",\"phases\":[", out);
        for (int k = 0; k < cfg->n_phases; k++) {
            if (k) fputc(',', out);
            if (o->entry) json_phase_entry(out, cfg, &v.segs[i], k, o);
            else json_phase(out, cfg, &v.segs[i], k, o);
        }
        fputs("]}", out);
    }
    fputc(']', out);
    if (o->more) o->more(out, o->more_opaque);
    fputs("}\n", out);
    view_free(&v);
}

static void text_bar(FILE *out, int64_t n, int64_t max, int width) {
    int w = max > 0 ? (int)((double)n / (double)max * width + 0.5) : 0;
    for (int i = 0; i < width; i++) fputs(i < w ? "#" : ".", out);
}

void funnel_print_text(const funnel_snap_t *s, const config_t *cfg, const funnel_print_opts_t *o,
                       FILE *out) {
    view_t v;
    char t[40], d1[32], d2[32];
    view_build(s, o, &v);
    if (s->watermark != INT64_MAX && s->watermark > INT64_MIN) {
        text_time(s->watermark, t, sizeof(t));
        fprintf(out, "complete to %s (lowest partition watermark), %lld late events\n", t, (long long)s->late);
    }
    int w = o->window >= 0 && o->window < cfg->n_funnel_windows ? o->window : -1;
    if (w >= 0) {
        funnel_window_name(cfg, w, d1, sizeof(d1));
        text_duration(win_res(cfg, w), d2, sizeof(d2));
        fprintf(out, "window %s (%d buckets of %s): what happened in it by event time; active is now\n", d1,
                cfg->funnel_buckets, d2);
    }
    for (int i = 0; i < v.n; i++) {
        funnel_seg_t *g = &v.segs[i];
        if (w >= 0) /* the window's counts in place of the totals */
            for (int k = 0; k < cfg->n_phases; k++) {
                funnel_phase_t *p = &g->ph[k];
                p->reached = p->win[w][FUNNEL_W_REACHED], p->progressed = p->win[w][FUNNEL_W_PROGRESSED];
                p->dropped = p->win[w][FUNNEL_W_DROPPED], p->completed = p->win[w][FUNNEL_W_COMPLETED];
                p->n_drops = 0; /* drop-off points and time in phase are counted since the start */
                memset(p->tip, 0, sizeof(p->tip));
            }
        int64_t max = g->ph[0].reached;
        fprintf(out, "\nsegment %s\n", g->name);
        fprintf(out, "  %-12s %-30s %9s %6s %8s %10s %8s %10s %8s  %s\n", "phase", "reached", "", "conv",
                "active", "progressed", "dropped", "completed", "drop%", "time in phase p50/p90");
        for (int k = 0; k < cfg->n_phases; k++) {
            const funnel_phase_t *p = &g->ph[k];
            int64_t den = p->dropped + p->progressed + p->completed;
            fprintf(out, "  %-12s ", cfg->phases[k].name);
            text_bar(out, p->reached, max, 30);
            fprintf(out, " %9lld %5.1f%% %8lld %10lld %8lld %10lld ", (long long)p->reached,
                    max ? 100.0 * (double)p->reached / (double)max : 0.0, (long long)p->active,
                    (long long)p->progressed, (long long)p->dropped, (long long)p->completed);
            if (den) fprintf(out, "%7.1f%%", 100.0 * (double)p->dropped / (double)den);
            else fprintf(out, "%8s", "-");
            if (tip_n(p)) {
                text_duration((int64_t)(tip_quantile(p, 0.5) * 1000), d1, sizeof(d1));
                text_duration((int64_t)(tip_quantile(p, 0.9) * 1000), d2, sizeof(d2));
                fprintf(out, "  %s / %s", d1, d2);
            }
            fputc('\n', out);
            if (p->n_drops) {
                fputs("               drop-off after:", out);
                for (int j = 0; j < p->n_drops && j < o->top_touchpoints; j++)
                    fprintf(out, " %s %lld%s", p->drops[j].name, (long long)p->drops[j].n,
                            j + 1 < p->n_drops && j + 1 < o->top_touchpoints ? "," : "");
                fputc('\n', out);
            }
        }
    }
    view_free(&v);
}
