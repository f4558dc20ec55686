/*
 * shard.c -- names of the per-shard counters stored in Redis; the shard's
 * owned parts.
 */
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void shard_release(shard_t *sh) {
    funnel_delta_free(&sh->fd);
    funnel_delta_free(&sh->totals);
    funnel_reg_free(&sh->reg);
    sat_part_free(&sh->sat);
    sat_strs_free(&sh->sat_names);
    sat_strs_free(&sh->sat_vals);
    sat_strs_free(&sh->sat_gone);
    shard_out_free(&sh->out);
    shard_out_free(&sh->sent);
    shard_marks_free(sh);
    shard_fields_free(sh);
}

static void field_add(shard_t *sh, char *name, int64_t v) {
    if (!name) abort();
    if (sh->n_f == sh->cap_f) {
        sh->cap_f = sh->cap_f ? 2 * sh->cap_f : 16;
        if (!(sh->fnames = realloc(sh->fnames, sh->cap_f * sizeof(*sh->fnames))) ||
            !(sh->fvals = realloc(sh->fvals, sh->cap_f * sizeof(*sh->fvals))))
            abort();
    }
    sh->fnames[sh->n_f] = name;
    sh->fvals[sh->n_f++] = v;
}

void shard_fields_build(shard_t *sh) {
    shard_fields_free(sh);
    field_add(sh, strdup("out_seq"), sh->out_seq);
    field_add(sh, strdup("iclock"), sh->iclock);
    for (int i = 0; i < sh->n_marks; i++) {
        if (!sh->marks[i].dirty) continue;
        size_t n = strlen(sh->marks[i].src) + 4;
        char *name = malloc(n);
        if (name) snprintf(name, n, "in|%s", sh->marks[i].src);
        field_add(sh, name, sh->marks[i].seq);
        if (sh->marks[i].clock != INT64_MIN) {
            if ((name = malloc(n))) snprintf(name, n, "ck|%s", sh->marks[i].src);
            field_add(sh, name, sh->marks[i].clock);
        }
        sh->marks[i].dirty = 0;
    }
}

void shard_fields_free(shard_t *sh) {
    for (size_t i = 0; i < sh->n_f; i++) free(sh->fnames[i]);
    free(sh->fnames);
    free(sh->fvals);
    sh->fnames = NULL;
    sh->fvals = NULL;
    sh->n_f = sh->cap_f = 0;
}

int64_t shard_mark_get(const shard_t *sh, const char *src) {
    for (int i = 0; i < sh->n_marks; i++)
        if (!strcmp(sh->marks[i].src, src)) return sh->marks[i].seq;
    return 0;
}

int shard_mark_set(shard_t *sh, const char *src, int64_t seq, int dirty) {
    for (int i = 0; i < sh->n_marks; i++)
        if (!strcmp(sh->marks[i].src, src)) {
            if (seq > sh->marks[i].seq) sh->marks[i].seq = seq;
            sh->marks[i].dirty |= dirty;
            return i;
        }
    if (sh->n_marks == sh->cap_marks) {
        sh->cap_marks = sh->cap_marks ? 2 * sh->cap_marks : 16;
        if (!(sh->marks = realloc(sh->marks, (size_t)sh->cap_marks * sizeof(*sh->marks)))) abort();
    }
    if (!(sh->marks[sh->n_marks].src = strdup(src))) abort();
    sh->marks[sh->n_marks].seq = seq;
    sh->marks[sh->n_marks].clock = INT64_MIN;
    sh->marks[sh->n_marks].dirty = dirty;
    return sh->n_marks++;
}

void shard_mark_clock(shard_t *sh, int i, int64_t clock, int dirty) {
    if (clock <= sh->marks[i].clock) return;
    sh->marks[i].clock = clock;
    sh->marks[i].dirty |= dirty;
}

void shard_low_update(shard_t *sh, int others) {
    int64_t low = INT64_MAX;
    int n = 0;
    for (int i = 0; i < sh->n_marks; i++) {
        if (sh->marks[i].clock == INT64_MIN) continue;
        n++;
        if (sh->marks[i].clock < low) low = sh->marks[i].clock;
    }
    if (n < others) low = 0; /* a partition not heard from yet may still send anything */
    if (low > sh->low) sh->low = low;
}

void shard_marks_free(shard_t *sh) {
    for (int i = 0; i < sh->n_marks; i++) free(sh->marks[i].src);
    free(sh->marks);
    sh->marks = NULL;
    sh->n_marks = sh->cap_marks = 0;
}

void shard_out_add(shard_out_t *o, int32_t p, const char *id, const char *rec, size_t len) {
    size_t kl = strlen(id);
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 16;
        if (!(o->v = realloc(o->v, o->cap * sizeof(*o->v))) || !(o->lens = realloc(o->lens, o->cap * sizeof(*o->lens))))
            abort();
    }
    unsigned char *b = malloc(6 + kl + len);
    if (!b) abort();
    uint32_t up = (uint32_t)p;
    b[0] = (unsigned char)(up >> 24), b[1] = (unsigned char)(up >> 16), b[2] = (unsigned char)(up >> 8);
    b[3] = (unsigned char)up;
    b[4] = (unsigned char)(kl >> 8), b[5] = (unsigned char)kl;
    memcpy(b + 6, id, kl);
    memcpy(b + 6 + kl, rec, len);
    o->v[o->n] = (char *)b;
    o->lens[o->n++] = 6 + kl + len;
}

int shard_out_parse(const char *rec, size_t len, int32_t *p, const char **key, size_t *keylen, const char **val,
                    size_t *vlen) {
    const unsigned char *b = (const unsigned char *)rec;
    if (len < 6) return -1;
    *p = (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
    *keylen = (size_t)b[4] << 8 | b[5];
    if (*p < 0 || 6 + *keylen > len) return -1;
    *key = rec + 6;
    *val = rec + 6 + *keylen;
    *vlen = len - 6 - *keylen;
    return 0;
}

void shard_out_free(shard_out_t *o) {
    for (size_t i = 0; i < o->n; i++) free(o->v[i]);
    free(o->v);
    free(o->lens);
    memset(o, 0, sizeof(*o));
}

const char *shard_stat_name(int stat) {
    static const char *const base[] = {
        "consumed", "applied", "duplicate", "unclassified", "heartbeat",
        "linked", "merged", "link_conflict", "link_capped", "late", "deadletter",
        "forwarded", "received", "received_again", "handoff_closed",
    };
    static char reasons[DL__COUNT][48];
    if (stat < STAT_DL_REASON) return base[stat];
    int r = stat - STAT_DL_REASON;
    if (!reasons[r][0])
        snprintf(reasons[r], sizeof(reasons[r]), "deadletter.%s",
                 r == DL_UNKNOWN_PHASE ? "unknown_phase"
                 : r == DL_FUTURE_TIME ? "future_timestamp"
                 : r == DL_INTERNAL    ? "internal"
                                       : decode_reason((decode_status_t)r));
    return reasons[r];
}
