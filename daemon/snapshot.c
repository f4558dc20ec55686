/*
 * snapshot.c -- the metrics snapshot of every partition, read from Redis
 * (see snapshot.h). Each partition's counters hash gives its clock, its
 * late events and its funnel counters, summed into one funnel_snap_t; its
 * satisfaction hash is read into a sat_part_t of its own, because every
 * partition's windows are taken at that partition's watermark before the
 * partitions are summed (satisfaction.h).
 *
 * The publisher reads a snapshot every second: with a snapshot_cache_t, a
 * partition whose offset has not moved since the last read keeps its
 * satisfaction counts (the largest part by far) from then, and only its
 * small counters hash is read again (for its clock, hence its windows); one
 * whose answer log has not been restarted by a checkpoint since (the same
 * header) gets only the log's new records, added to what it held. Only after
 * a checkpoint are its counts read whole again.
 *
 * Owns: the snapshot's counts (snapshot_free()), but for parts borrowed
 * from a cache.
 */
#include "snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

static void snap_field(const char *name, long long v, void *opaque) {
    snapshot_t *s = opaque;
    if (!strcmp(name, "clock")) {
        int64_t wm = v - s->cfg->allowed_lateness_ms;
        if (wm < s->snap.watermark) s->snap.watermark = wm;
        s->clock = v;
    } else if (!strcmp(name, "late")) {
        s->snap.late += v;
    } else { /* (after the clock: store_shard_stats() hands it first) */
        funnel_snap_add(&s->snap, s->cfg, name, v, s->clock - s->cfg->allowed_lateness_ms);
    }
}

static void snap_sat(const char *field, const char *value, void *opaque) {
    snapshot_t *s = opaque;
    if (sat_part_learn(&s->sat[s->n_sat - 1], &s->satw, field, value) < 0)
        log_warn("unreadable satisfaction field ignored", "field=\"%s\"", field);
}

static void snap_sat_log(const char *log, size_t len, void *opaque) {
    snapshot_t *s = opaque;
    s->log_len = len;
    if (sat_part_replay(&s->sat[s->n_sat - 1], &s->satw, log, len) < 0)
        log_warn("unreadable satisfaction log record: the rest of the log is ignored", "records_bytes=%zu", len);
}

void snapshot_cache_free(snapshot_cache_t *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->names[i]);
        sat_part_free(&c->parts[i]);
    }
    free(c->names);
    free(c->offsets);
    free(c->hdr);
    free(c->log_len);
    free(c->expired);
    free(c->parts);
    memset(c, 0, sizeof(*c));
}

/* The cache's entry for shard (created empty, offset -2: never read). */
static size_t cache_slot(snapshot_cache_t *c, const char *shard) {
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], shard)) return i;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        if (!(c->names = realloc(c->names, c->cap * sizeof(*c->names))) ||
            !(c->offsets = realloc(c->offsets, c->cap * sizeof(*c->offsets))) ||
            !(c->hdr = realloc(c->hdr, c->cap * sizeof(*c->hdr))) ||
            !(c->log_len = realloc(c->log_len, c->cap * sizeof(*c->log_len))) ||
            !(c->expired = realloc(c->expired, c->cap * sizeof(*c->expired))) ||
            !(c->parts = realloc(c->parts, c->cap * sizeof(*c->parts))))
            abort();
    }
    if (!(c->names[c->n] = strdup(shard))) abort();
    c->offsets[c->n] = -2;
    c->hdr[c->n][0] = '\0';
    c->log_len[c->n] = 0;
    c->expired[c->n] = 0;
    memset(&c->parts[c->n], 0, sizeof(c->parts[c->n]));
    return c->n++;
}

/* The tail of a cached partition's log, added to its part if the log's
 * header is still the one it was read with. */
typedef struct tail {
    const snapshot_t *s;
    snapshot_cache_t *c;
    size_t k;
    const char *hdr;          /* the header now (filled before the tail is handed over) */
    int same, bad;
    size_t len;
} tail_t;

static void snap_sat_tail(const char *log, size_t len, void *opaque) {
    tail_t *t = opaque;
    t->same = !strcmp(t->hdr, t->c->hdr[t->k]);
    if (!t->same) return;
    t->len = len;
    if (sat_part_replay(&t->c->parts[t->k], &t->s->satw, log, len) < 0) t->bad = 1;
}

/* After one checkpoint: the rest of the previous log, then the new log
 * whole, if the previous log is the one the part was read from. */
typedef struct catchup {
    tail_t t;
    const char *prev;         /* the previous log's header */
    int calls;
} catchup_t;

static void snap_sat_catchup(const char *log, size_t len, void *opaque) {
    catchup_t *c = opaque;
    if (c->calls++ == 0) {
        c->t.same = !strcmp(c->prev, c->t.c->hdr[c->t.k]);
        if (c->t.same && sat_part_replay(&c->t.c->parts[c->t.k], &c->t.s->satw, log, len) < 0) c->t.bad = 1;
        return;
    }
    c->t.len = len;
    if (c->t.same && !c->t.bad && sat_part_replay(&c->t.c->parts[c->t.k], &c->t.s->satw, log, len) < 0)
        c->t.bad = 1;
}

/* The cached part of shard k holds what it was read with and the log since:
 * drop the buckets no window holds at wm (as the daemon does at its
 * checkpoints), each time wm has moved on by the shortest window. */
static void cache_expire(snapshot_cache_t *c, size_t k, const sat_windows_t *w, int64_t wm) {
    if (!w->n || wm / w->len_ms[0] == c->expired[k] / w->len_ms[0]) return;
    sat_strs_t gone = {0};
    sat_part_expire(&c->parts[k], w, wm, &gone);
    sat_strs_free(&gone);
    c->expired[k] = wm;
}

/* Shard i's satisfaction counts into s->sat[i]: the cache's if the
 * partition's offset has not moved, the cache's plus the log's new records
 * if no checkpoint came since, else read whole. */
static store_status_t read_sat(snapshot_t *s, store_t *st, snapshot_cache_t *cache, const char *shard,
                               int64_t off, size_t i, char *errbuf, size_t errlen) {
    size_t k = cache ? cache_slot(cache, shard) : 0;
    if (cache && cache->offsets[k] == off) {
        s->sat[i] = cache->parts[k];
        return STORE_OK;
    }
    if (cache && cache->offsets[k] != -2) {
        char hdr[STORE_LOG_HEADER_MAX];
        tail_t t = {.s = s, .c = cache, .k = k, .hdr = hdr};
        store_status_t rc = store_shard_sat_tail(st, shard, cache->log_len[k], hdr, sizeof(hdr), snap_sat_tail, &t,
                                                 errbuf, errlen);
        if (rc != STORE_OK) return rc;
        if (!t.same && !t.bad) { /* a checkpoint since: perhaps just the one */
            char prev[STORE_LOG_HEADER_MAX];
            catchup_t c = {.t = {.s = s, .c = cache, .k = k, .hdr = hdr}, .prev = prev};
            rc = store_shard_sat_catchup(st, shard, cache->log_len[k], prev, sizeof(prev), hdr, sizeof(hdr),
                                         snap_sat_catchup, &c, errbuf, errlen);
            if (rc != STORE_OK) {
                cache->offsets[k] = -2; /* the tail may be in the part already */
                return rc;
            }
            t = c.t;
            if (t.same && !t.bad) {
                memcpy(cache->hdr[k], hdr, sizeof(hdr));
                cache->log_len[k] = 0; /* the new log, whole, below */
                cache->catchup_reads++;
            }
        } else if (t.same && !t.bad) {
            cache->tail_reads++;
        }
        if (t.bad) log_warn("unreadable satisfaction log record: the partition is read again", "shard=%s", shard);
        if (t.same && !t.bad) {
            cache->log_len[k] += t.len;
            cache->offsets[k] = off;
            cache_expire(cache, k, &s->satw, s->clock - s->cfg->allowed_lateness_ms);
            s->sat[i] = cache->parts[k];
            return STORE_OK;
        }
    }
    char hdr[STORE_LOG_HEADER_MAX] = "";
    s->log_len = 0;
    store_status_t rc = store_shard_sat(st, shard, snap_sat, snap_sat_log, s, hdr, sizeof(hdr), errbuf, errlen);
    if (!cache) return rc;
    sat_part_free(&cache->parts[k]);
    cache->parts[k] = s->sat[i];     /* the cache owns it from now on */
    cache->offsets[k] = rc == STORE_OK ? off : -2;
    memcpy(cache->hdr[k], hdr, sizeof(hdr));
    cache->log_len[k] = s->log_len;
    cache->expired[k] = s->clock - s->cfg->allowed_lateness_ms;
    cache->full_reads++;
    return rc;
}

void snapshot_free(snapshot_t *s) {
    funnel_snap_free(&s->snap);
    for (size_t i = 0; !s->cached && i < s->n_sat; i++) sat_part_free(&s->sat[i]);
    free(s->sat);
    free(s->sat_wm);
    memset(s, 0, sizeof(*s));
}

int snapshot_read(snapshot_t *s, store_t *st, const config_t *cfg, snapshot_cache_t *cache, char *errbuf,
                  size_t errlen) {
    char **shards = NULL;
    size_t n = 0;
    int rc = -1;
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->cached = cache != NULL;
    s->snap.watermark = INT64_MAX;
    for (int k = 0; k < cfg->n_phases; k++) s->phases[k] = cfg->phases[k].name;
    sat_windows_init(&s->satw, cfg->sat_windows_ms, cfg->n_sat_windows, cfg->sat_buckets);
    if (store_shards(st, &shards, &n, errbuf, errlen) != STORE_OK) goto out;
    if (!(s->sat = calloc(n + 1, sizeof(*s->sat))) || !(s->sat_wm = calloc(n + 1, sizeof(*s->sat_wm)))) abort();
    for (size_t i = 0; i < n; i++) {
        int64_t off;
        s->clock = INT64_MIN + cfg->allowed_lateness_ms; /* none yet: no finite window holds anything */
        s->n_sat = i + 1;
        if (store_shard_stats(st, shards[i], &off, snap_field, s, errbuf, errlen) != STORE_OK ||
            read_sat(s, st, cache, shards[i], off, i, errbuf, errlen) != STORE_OK)
            goto out;
        s->sat_wm[i] = s->clock - cfg->allowed_lateness_ms;
        s->snap.shards++;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) free(shards[i]);
    free(shards);
    if (rc < 0) snapshot_free(s);
    return rc;
}

typedef struct sat_more {
    const snapshot_t *s;
    funnel_entry_fn entry;
    void *opaque;
} sat_more_t;

static void print_sat(FILE *out, void *opaque) {
    const sat_more_t *m = opaque;
    const snapshot_t *s = m->s;
    fputs(",\"satisfaction\":", out);
    sat_print_json_each(s->sat, s->sat_wm, s->n_sat, &s->satw, s->phases, s->cfg->n_phases, s->cfg->sat_min_n,
                        m->entry, m->opaque, out);
}

void snapshot_print_json(const snapshot_t *s, int64_t now_ms, funnel_entry_fn entry, void *opaque, FILE *out) {
    sat_more_t m = {s, entry, opaque};
    funnel_print_opts_t o = {.top_segments = 1000000, .top_touchpoints = 1000000, .now_ms = now_ms,
                             .more = print_sat, .more_opaque = &m, .entry = entry, .entry_opaque = opaque};
    funnel_print_json(&s->snap, s->cfg, &o, out);
}
