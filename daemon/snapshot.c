/*
 * snapshot.c -- the metrics snapshot of every partition, read from Redis
 * (see snapshot.h). Each partition's counters hash gives its clock, its
 * late events and its funnel counters, summed into one funnel_snap_t; its
 * satisfaction hash is read into a sat_part_t of its own, because every
 * partition's windows are taken at that partition's watermark before the
 * partitions are summed (satisfaction.h).
 *
 * Owns: the snapshot's counts (snapshot_free()).
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
    } else {
        funnel_snap_add(&s->snap, s->cfg, name, v);
    }
}

static void snap_sat(const char *field, const char *value, void *opaque) {
    snapshot_t *s = opaque;
    if (sat_part_learn(&s->sat[s->n_sat - 1], &s->satw, field, value) < 0)
        log_warn("unreadable satisfaction field ignored", "field=\"%s\"", field);
}

static void snap_sat_log(const char *log, size_t len, void *opaque) {
    snapshot_t *s = opaque;
    if (sat_part_replay(&s->sat[s->n_sat - 1], &s->satw, log, len) < 0)
        log_warn("unreadable satisfaction log record: the rest of the log is ignored", "records_bytes=%zu", len);
}

void snapshot_free(snapshot_t *s) {
    funnel_snap_free(&s->snap);
    for (size_t i = 0; i < s->n_sat; i++) sat_part_free(&s->sat[i]);
    free(s->sat);
    free(s->sat_wm);
    memset(s, 0, sizeof(*s));
}

int snapshot_read(snapshot_t *s, store_t *st, const config_t *cfg, char *errbuf, size_t errlen) {
    char **shards = NULL;
    size_t n = 0;
    int rc = -1;
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
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
            store_shard_sat(st, shards[i], snap_sat, snap_sat_log, s, errbuf, errlen) != STORE_OK)
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
