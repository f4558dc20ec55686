/*
 * batch.c -- turns a batch of consumed messages into one atomic Redis
 * commit per shard.
 *
 * batch_add() (pass 1, per message): decode, validate, classify; a bad event
 * goes to the dead-letter producer at once; a good one becomes a compact
 * item (ids, time, touchpoint, ...); the message itself is not kept.
 *
 * Pass 2, while the previous batch's commit is in flight on the commit
 * connection:
 *   1. batch_prepare(): every journey id the items name gets a table entry;
 *      entries the previous batch left in memory need nothing (they hold
 *      exactly what its commit writes), the rest is fetched on the load
 *      connection with one pipelined MGET per shard, in the same round trip
 *      as the timers due by the batch's end (their journeys are candidates
 *      to close); candidates not in memory and redirects (an anonymous id
 *      linked to a customer) are loaded in further rounds; then the items
 *      are applied in offset order per shard (touch events through
 *      funnel_event() and journey_apply(); identify/alias link the other id
 *      to the customer, merging its journey and leaving a redirect in its
 *      key; with stitching across partitions, items whose id lives in
 *      another partition, and the steps of a link between two partitions,
 *      become records of the shard's outbox instead, and the records other
 *      shards sent are applied like events: stitch.h), every journey in
 *      memory that is due is closed, the
 *      batch's dead-letter deliveries are confirmed and the commit is
 *      packed, with only the timers that change. A shard moves its
 *      closed-through mark to the deadline up to which its due timers were
 *      all fetched (the watermark they were fetched for, unless
 *      batch_max_events cut them short); a journey closed under the mark
 *      is not written at all (read back, journey_settle() closes it: see
 *      schemas/redis.md), and one out of memory is closed, or its early
 *      timer set again, from its close record, without being read;
 *   2. batch_wait(): the previous commit's result, and the outbox records
 *      it holds produced to the internal topic, without waiting for them:
 *      the records delivered so far (forward_delivered()) are trimmed off
 *      the front of their outbox by the shard's next commit; if any shard
 *      failed, a delivery failed, or a shard
 *      was fenced, the prepared batch was built on a state that may not
 *      hold: it and everything in memory are dropped, and the shards re-read
 *      their offsets from Redis (resync);
 *   3. batch_send(): the commit goes out (store.c: a checked MULTI/EXEC
 *      writing per shard the changed journeys and redirects, the counters
 *      and the new offset); it is pending until the next batch_wait(). Only
 *      the entries this batch touched, and any still dirty, stay in memory.
 * So Redis runs batch N's commit while journeyd loads, applies and packs
 * batch N+1. batch_commit() does all of it synchronously (rebalance,
 * shutdown). Whenever memory may not match Redis (a failure, a resync, a
 * revoke, a reload) it is forgotten, and if a commit was in flight then, the
 * next batch waits for it before loading anything (b->stale).
 *
 * Owns: the items, the table of journeys (each entry owns its journey_t),
 * the load of one round, the prepared and the pending commit, the scratch
 * buffers. Memory is bounded by processing.batch_max_events.
 */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "closes.h"
#include "decode.h"
#include "journey.h"
#include "log.h"
#include "stitch.h"
#include "text.h"

/* Redirect chains are followed to their end and shortened when read
 * (canonical()); a longer one is a cycle, and its events are refused. */
#define MAX_REDIRECT_HOPS STORE_REDIRECT_HOPS_MAX

/* ITEM_CLOCK: an event forwarded to its home (stitch.h) that still moves
 * this partition's clock (only input items move it: item_t.internal);
 * ITEM_CLAIM, _HANDOFF, _RELEASE: records of the internal topic (stitch.h). */
typedef enum {
    ITEM_TOUCH = 0, ITEM_LINK, ITEM_HEARTBEAT, ITEM_CLOCK, ITEM_CLAIM, ITEM_HANDOFF, ITEM_RELEASE,
    ITEM_ANNOUNCE,             /* FWD_CLOCK: jnum is the source's mark, ts its clock */
    ITEM_LINK_OUT              /* identify/alias for a customer elsewhere of an id here: the id is
                                  held open, then the link goes to the customer */
} item_kind_t;

typedef struct item {
    shard_t *sh;
    uint8_t kind;
    int8_t phase;              /* classification, -1 none */
    uint8_t explicit_phase;    /* properties.phase was given */
    uint8_t explicit_tp;       /* properties.touchpoint was given */
    int8_t metric, score, scope;
    int64_t ts;
    uint64_t mid;
    uint8_t follow;            /* link, claim: FWD_F_* */
    uint8_t internal;          /* a record of the internal topic, not the shard's own input: it
                                  does not move the shard's clock (watermark()) */
    uint32_t jnum;             /* claim, handoff, release: the customer's journey at the link, 0: any */
    journey_t *handoff;        /* handoff: the journey handed over; owned */
    char key[JD_ID_MAX + 1];   /* journey key: userId, else anonymousId; a record's id */
    char other[JD_ID_MAX + 1]; /* link: anonymousId (identify) / previousId (alias);
                                  claim: the customer; handoff: the id it was linked from */
    char tp[JD_NAME_MAX + 1];  /* "" for identify/alias */
    char segment[JD_NAME_MAX + 1];
} item_t;

typedef enum { ENT_UNKNOWN = 0, ENT_ABSENT, ENT_JOURNEY, ENT_REDIRECT } ent_state_t;

typedef struct entry {
    shard_t *sh;               /* NULL = empty slot */
    uint32_t epoch;            /* batch that last touched it */
    uint64_t hash;             /* ent_hash(sh, id) */
    uint8_t state;
    uint8_t dirty;
    uint8_t cand;              /* loaded because its timer looked due */
    uint8_t head;              /* only a candidate: read without its history
                                  (journey_unpack_head) */
    uint8_t closed;            /* closed by this batch's sweep: written only if
                                  the shard's closed-through mark does not cover it */
    int64_t timer;             /* the journey's timer as committed: exact if this
                                  daemon wrote it, else (read from Redis) at or
                                  before this deadline; -1: it has none */
    int64_t deadline;          /* the journey's deadline now, -1: none (deadline_of()) */
    int64_t due_at;            /* a candidate: its timer, as fetched */
    char id[JD_ID_MAX + 1];
    char target[JD_ID_MAX + 1];/* ENT_REDIRECT */
    journey_t *j;              /* ENT_JOURNEY; owned */
} entry_t;

/* One pipelined load: the entries asked for, grouped per shard. */
typedef struct loadset {
    entry_t **ents;
    const char **ids;
    store_blob_t *vals;
    store_load_req_t *reqs;
    size_t n, nreq;
} loadset_t;

/* A due timer of a journey not in memory that its close record answers
 * (closes.h): it closes the journey, or (rearm) says that the timer fired
 * early and the journey is still open, to be timed again at its deadline. */
typedef struct rec_close {
    shard_t *sh;
    char *id;                  /* owned */
    uint64_t hash;
    int64_t due_at;            /* its timer, as fetched */
    int64_t deadline;          /* rearm: the journey's deadline, from the record */
    uint8_t rearm;             /* 1: re-arm; 2: re-armed through its entry instead */
    funnel_close_t fc;
} rec_close_t;

/* A commit prepared (values packed) or sent but not yet acknowledged. */
typedef struct pending {
    store_commit_req_t *reqs;  /* reqs[i].shard is shards[i]->name */
    shard_t **shards;
    int n;
    const char **ids;          /* prepared only: what the reqs point to */
    const char **vals;         /* owned */
    size_t *lens;
    size_t n_vals;
    store_timer_t *timers;     /* prepared only */
    shard_out_t *outs;         /* sent only: each shard's records, produced once it has committed */
    uint32_t *loads;           /* sent only: each shard's loads when it was sent */
} pending_t;

struct batch {
    const config_t *cfg;       /* borrowed */
    item_t *items;
    int n_items, cap_items;
    int n_msgs;                /* messages taken, good or bad */
    shard_t **shards;          /* shards with messages in this batch */
    int n_shards, cap_shards;
    loadset_t ls;              /* the load of one round */
    pending_t prep;            /* the open batch's commit, packed, not sent */
    pending_t pend;            /* the previous batch's commit, sent, reply not read */
    uint32_t epoch;            /* number of the open batch */
    int stale;                 /* memory was cleared while a commit was in flight:
                                  wait for it before loading anything */
    entry_t *tab;              /* open addressing, cap_tab a power of two; holds */
    size_t n_tab, cap_tab;     /* the open batch's entries and the previous one's */
    size_t *used;              /* indices of the occupied slots, n_tab of them */
    entry_t *tab2;             /* the other buffer, for table_keep_current() */
    size_t *used2;
    char *arena;               /* decode scratch */
    size_t arena_cap;
    sat_windows_t satw;        /* satisfaction windows (cfg) */
    closes_t *closes;          /* what closing each open journey committed counts */
    rec_close_t *rcs;          /* the open batch's closes by record */
    size_t n_rcs, cap_rcs;
    uint64_t closed_by_record; /* since batch_new(), committed or not (a log figure) */
    int32_t n_parts;           /* partitions of the first input topic; 0: no stitching */
    forward_t *fw;             /* the internal topic's producer; borrowed */
};

batch_t *batch_new(const config_t *cfg) {
    batch_t *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->cfg = cfg;
    b->cap_items = cfg->batch_max_events;
    b->items = malloc((size_t)b->cap_items * sizeof(*b->items));
    b->arena_cap = cfg->limits.max_message_bytes + 64;
    b->arena = malloc(b->arena_cap);
    /* a batch names at most two ids per item, plus redirect targets, and the
     * previous batch's entries are kept: room for both at half load */
    b->cap_tab = 1024;
    while (b->cap_tab < 8 * (size_t)cfg->batch_max_events) b->cap_tab *= 2;
    b->tab = calloc(b->cap_tab, sizeof(*b->tab));
    b->used = malloc(b->cap_tab * sizeof(*b->used));
    b->tab2 = calloc(b->cap_tab, sizeof(*b->tab2));
    b->used2 = malloc(b->cap_tab * sizeof(*b->used2));
    b->closes = closes_new((size_t)cfg->close_records);
    sat_windows_init(&b->satw, cfg->sat_windows_ms, cfg->n_sat_windows, cfg->sat_buckets); /* checked by config.c */
    if (!b->items || !b->arena || !b->tab || !b->used || !b->tab2 || !b->used2 || !b->closes) {
        batch_free(b);
        return NULL;
    }
    return b;
}

static void entry_drop(entry_t *e) {
    if (e->j) {
        journey_reset(e->j);
        free(e->j);
        e->j = NULL;
    }
    e->sh = NULL;
}

/* Forget every journey in memory, and every close record with them. */
static void table_clear(batch_t *b) {
    for (size_t i = 0; i < b->n_tab; i++) entry_drop(&b->tab[b->used[i]]);
    b->n_tab = 0;
    if (b->closes) closes_clear(b->closes);
}

static void rcs_clear(batch_t *b) {
    for (size_t i = 0; i < b->n_rcs; i++) free(b->rcs[i].id);
    b->n_rcs = 0;
}

void batch_free(batch_t *b) {
    if (!b) return;
    if (b->tab) table_clear(b);
    free(b->tab);
    free(b->used);
    free(b->tab2);
    free(b->used2);
    free(b->items);
    free(b->shards);
    free(b->arena);
    closes_free(b->closes);
    rcs_clear(b);
    free(b->rcs);
    free(b);
}

void batch_set_config(batch_t *b, const config_t *cfg) {
    b->cfg = cfg;
    sat_windows_init(&b->satw, cfg->sat_windows_ms, cfg->n_sat_windows, cfg->sat_buckets);
    batch_forget(b); /* kept journeys were built with the old limits */
    closes_t *c = closes_new((size_t)cfg->close_records); /* and the records with old timeouts */
    if (!c) abort();
    closes_free(b->closes);
    b->closes = c;
}

size_t batch_close_records(const batch_t *b, size_t *bytes, uint64_t *used) {
    *bytes = closes_bytes(b->closes);
    *used = b->closed_by_record;
    return closes_count(b->closes);
}

int batch_size(const batch_t *b) { return b->n_msgs; }

/* ---- pass 1 ------------------------------------------------------------ */

static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) n = cap - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- stitching across partitions (stitch.h) ------------------------------ */

void batch_set_stitching(batch_t *b, int32_t partitions, forward_t *fw) {
    b->n_parts = partitions;
    b->fw = fw;
}

static int32_t home_of(const batch_t *b, const char *id) {
    return stitch_home(b->cfg->partitioner, id, b->n_parts);
}

/* Whether id lives in sh. */
static int is_local(const batch_t *b, const shard_t *sh, const char *id) {
    return !b->n_parts || (sh->home && home_of(b, id) == sh->partition);
}

/* Send f to the home of f->id: into sh's outbox, numbered. */
static void emit(batch_t *b, shard_t *sh, fwd_t *f) {
    char *rec;
    size_t len;
    int32_t home = home_of(b, f->id);
    snprintf(f->src, sizeof(f->src), "%s", sh->name);
    f->seq = ++sh->out_seq;
    if (fwd_encode(f, &rec, &len) < 0) abort(); /* out of memory */
    shard_out_add(&sh->out, home, f->id, rec, len);
    free(rec);
    sh->stats[STAT_FORWARDED]++;
    log_debug("record forwarded", "shard=%s kind=%s id=%s home=%d seq=%lld", sh->name, fwd_kind_name(f->kind), f->id,
              (int)home, (long long)f->seq);
}

/* A record of kind addressed to id, with it's event (EVENT, LINK). */
static void fwd_of(fwd_t *f, int kind, const char *id, const item_t *it) {
    memset(f, 0, sizeof(*f));
    f->kind = (uint8_t)kind;
    copy_str(f->id, sizeof(f->id), id);
    if (kind != FWD_EVENT && kind != FWD_LINK) return;
    f->ts = it->ts;
    f->mid = it->mid;
    f->phase = it->phase;
    f->metric = it->metric;
    f->score = it->score;
    f->scope = it->scope;
    f->explicit_phase = it->explicit_phase;
    f->explicit_tp = it->explicit_tp;
    if (kind == FWD_LINK) {
        copy_str(f->other, sizeof(f->other), it->other);
        f->follow = it->follow & FWD_F_HELD;
    }
    copy_str(f->tp, sizeof(f->tp), it->tp);
    copy_str(f->segment, sizeof(f->segment), it->segment);
}

/* ---- pass 1 (cont.) --------------------------------------------------------- */

/* Put sh into the open batch (once). */
static void join_batch(batch_t *b, shard_t *sh) {
    if (b->n_shards == b->cap_shards) {
        int ncap = b->cap_shards ? 2 * b->cap_shards : 16;
        shard_t **s = realloc(b->shards, (size_t)ncap * sizeof(*s));
        if (!s) abort();
        b->shards = s;
        b->cap_shards = ncap;
    }
    b->shards[b->n_shards++] = sh;
    sh->in_batch = b->n_shards; /* its index + 1 */
    sh->batch_clock = sh->clock;
    sh->closing_through = sh->closed_through;
    sh->due_through = INT64_MIN;
}

/* The offset a shard's commit stores: after its last message, or, if the
 * batch has none of its messages (a tick), what is committed when it is sent. */
static int64_t next_offset(const shard_t *sh) {
    return sh->batch_last >= 0 ? sh->batch_last + 1 : sh->committed;
}

static void note_shard(batch_t *b, shard_t *sh, int64_t offset) {
    if (!sh->in_batch) join_batch(b, sh);
    sh->batch_last = offset;
    sh->stats[STAT_CONSUMED]++;
    b->n_msgs++;
}

static void dead_letter(shard_t *sh, const rd_kafka_message_t *m, deadletter_t *dl, int reason,
                        const char *detail) {
    const char *name = shard_stat_name(STAT_DL_REASON + reason) + strlen("deadletter.");
    log_debug("event dead-lettered", "shard=%s offset=%lld reason=%s", sh->name,
              (long long)m->offset, name);
    /* If even queueing fails, the commit's deadletter_sync() reports it. */
    deadletter_send(dl, m, name, detail);
    sh->stats[STAT_DEADLETTER]++;
    sh->stats[STAT_DL_REASON + reason]++;
}

static void fill_item(item_t *it, const event_t *ev, const classification_t *cl) {
    it->ts = ev->ts_ms;
    it->mid = ev->message_id ? journey_mid_hash(ev->message_id, strlen(ev->message_id)) : 0;
    it->phase = (int8_t)cl->phase;
    it->explicit_phase = ev->phase != NULL;
    it->explicit_tp = ev->touchpoint != NULL;
    it->metric = (int8_t)ev->metric;
    it->score = (int8_t)ev->score;
    it->scope = (int8_t)ev->scope;
    copy_str(it->key, sizeof(it->key), event_key(ev));
    copy_str(it->segment, sizeof(it->segment), ev->segment);
    if (ev->type == EV_IDENTIFY || ev->type == EV_ALIAS) {
        it->kind = ITEM_LINK;
        copy_str(it->other, sizeof(it->other),
                 ev->type == EV_IDENTIFY ? ev->anonymous_id : ev->previous_id);
        it->tp[0] = '\0';
    } else {
        it->kind = ITEM_TOUCH;
        it->other[0] = '\0';
        copy_str(it->tp, sizeof(it->tp), cl->touchpoint);
    }
}

void batch_add(batch_t *b, shard_t *sh, const rd_kafka_message_t *m, deadletter_t *dl) {
    event_t ev;
    char err[256];
    classification_t cl = {.phase = -1, .touchpoint = NULL, .rule_line = 0};
    note_shard(b, sh, m->offset);
    decode_status_t ds = decode_event(m->payload, m->len, b->cfg->encoding, &b->cfg->limits, &ev,
                                      b->arena, b->arena_cap, err, sizeof(err));
    if (ds != DECODE_OK) {
        dead_letter(sh, m, dl, (int)ds, err);
        return;
    }
    if (classify_check(b->cfg, &ev, err, sizeof(err)) < 0) {
        dead_letter(sh, m, dl, DL_UNKNOWN_PHASE, err);
        return;
    }
    /* (a heartbeat is how a producer moves event time on on purpose) */
    int64_t mts = ev.type == EV_HEARTBEAT ? -1 : rd_kafka_message_timestamp(m, NULL);
    if (mts >= 0 && ev.ts_ms > mts && ev.ts_ms - mts > b->cfg->max_future_ms) {
        char t1[40], t2[40];
        text_time(ev.ts_ms, t1, sizeof(t1));
        text_time(mts, t2, sizeof(t2));
        snprintf(err, sizeof(err), "timestamp: %s is more than input.max_future after the message's time %s", t1,
                 t2);
        dead_letter(sh, m, dl, DL_FUTURE_TIME, err);
        return;
    }
    item_t *it = &b->items[b->n_items++];
    it->sh = sh;
    it->handoff = NULL;
    it->internal = 0;
    if (ev.ts_ms > sh->batch_clock) sh->batch_clock = ev.ts_ms;
    if (ev.ts_ms > sh->iclock) sh->iclock = ev.ts_ms; /* as if committed: memory is dropped if it is not */
    if (ev.type == EV_HEARTBEAT) {
        it->kind = ITEM_HEARTBEAT;
        it->ts = ev.ts_ms;
        return;
    }
    classify_event(b->cfg, &ev, &cl);
    fill_item(it, &ev, &cl);
    if (cl.phase < 0 && it->kind == ITEM_TOUCH) sh->stats[STAT_UNCLASSIFIED]++;
    it->follow = 0;
    if (is_local(b, sh, it->key)) return;
    if (it->kind == ITEM_LINK && is_local(b, sh, it->other)) {
        it->kind = ITEM_LINK_OUT; /* the id to link is here: held open first (apply_link_out()) */
    } else { /* its journey lives in another partition: it goes there */
        fwd_t f;
        fwd_of(&f, it->kind == ITEM_LINK ? FWD_LINK : FWD_EVENT, it->key, it);
        emit(b, sh, &f);
        it->kind = ITEM_CLOCK;
    }
}

/* A record of the internal topic for sh (stitch.h): refused to the dead
 * letters if it is not one; dropped if sh has applied it already;
 * otherwise an item like an event's. */
void batch_add_internal(batch_t *b, shard_t *sh, const rd_kafka_message_t *m, deadletter_t *dl) {
    fwd_t f;
    char err[256];
    if (!sh->in_batch) join_batch(b, sh);
    sh->ibatch_last = m->offset;
    b->n_msgs++;
    if (fwd_decode(m->payload, m->len, &f, err, sizeof(err)) < 0) {
        dead_letter(sh, m, dl, DL_INTERNAL, err);
        return;
    }
    if (f.kind != FWD_CLOCK && !is_local(b, sh, f.id)) {
        snprintf(err, sizeof(err),
                 "internal record for %s, whose home is partition %d, not %d: do all daemons have the same "
                 "input.partitioner?", f.id, (int)home_of(b, f.id), (int)sh->partition);
        dead_letter(sh, m, dl, DL_INTERNAL, err);
        return;
    }
    if (f.seq <= shard_mark_get(sh, f.src)) { /* sent again after a restart of its source */
        sh->stats[STAT_RECEIVED_AGAIN]++;
        return;
    }
    journey_t *j = NULL;
    if (f.kind == FWD_HANDOFF && f.blob) { /* (none: the id had no open journey) */
        if (!(j = malloc(sizeof(*j)))) abort();
        journey_init(j, f.cust);
        if (journey_unpack(j, f.blob, f.blob_len, b->cfg, err, sizeof(err)) < 0) {
            journey_reset(j);
            free(j);
            dead_letter(sh, m, dl, DL_INTERNAL, err);
            return;
        }
    }
    int mark = shard_mark_set(sh, f.src, f.seq, 1);
    sh->stats[STAT_RECEIVED] += f.kind != FWD_CLOCK; /* (announcements are not counted) */
    item_t *it = &b->items[b->n_items++];
    memset(it, 0, sizeof(*it));
    it->sh = sh;
    it->handoff = j;
    it->internal = 1;
    if (f.kind == FWD_CLOCK) { /* takes effect after the source's records before it */
        it->kind = ITEM_ANNOUNCE;
        it->jnum = (uint32_t)mark;
        it->ts = f.ts;
        return;
    }
    static const uint8_t kinds[] = {[FWD_EVENT] = ITEM_TOUCH, [FWD_LINK] = ITEM_LINK, [FWD_CLAIM] = ITEM_CLAIM,
                                    [FWD_HANDOFF] = ITEM_HANDOFF, [FWD_RELEASE] = ITEM_RELEASE};
    it->kind = kinds[f.kind];
    it->follow = f.follow;
    it->jnum = f.jnum;
    copy_str(it->key, sizeof(it->key), f.id);
    copy_str(it->other, sizeof(it->other), f.kind == FWD_LINK ? f.other : f.kind == FWD_CLAIM ? f.cust : f.other);
    if (f.kind != FWD_EVENT && f.kind != FWD_LINK) return;
    it->ts = f.ts;
    it->mid = f.mid;
    it->phase = f.phase;
    it->metric = f.metric;
    it->score = f.score;
    it->scope = f.scope;
    it->explicit_phase = f.explicit_phase;
    it->explicit_tp = f.explicit_tp;
    copy_str(it->tp, sizeof(it->tp), f.tp);
    copy_str(it->segment, sizeof(it->segment), f.segment);
}

void batch_tick(batch_t *b, shard_t *sh, int64_t clock) {
    /* nothing stored, nothing to time out; but a home partition that is
     * empty still tells the others how far it is (stitch.h) */
    if (sh->committed < 0 && sh->icommitted < 0 && !(b->n_parts && sh->home)) return;
    if (!sh->in_batch) join_batch(b, sh);
    if (clock > sh->clock) sh->clock = clock;
    if (clock > sh->batch_clock) sh->batch_clock = clock;
    if (clock > sh->iclock) sh->iclock = clock;
}

int batch_open(const batch_t *b) { return b->n_shards > 0; }

/* ---- the journey table -------------------------------------------------- */

static uint64_t ent_hash(const shard_t *sh, const char *id) {
    return journey_mid_hash(id, strlen(id)) ^ ((uint64_t)(uintptr_t)sh * 0x9e3779b97f4a7c15ULL);
}

/* Rarely needed (long redirect chains): double the table. */
static void table_grow(batch_t *b) {
    size_t ncap = b->cap_tab * 2;
    entry_t *old = b->tab;
    b->tab = calloc(ncap, sizeof(*b->tab));
    size_t *used = malloc(ncap * sizeof(*used));
    if (!b->tab || !used) abort();
    for (size_t i = 0; i < b->n_tab; i++) {
        entry_t *e = &old[b->used[i]];
        size_t k = e->hash & (ncap - 1);
        while (b->tab[k].sh) k = (k + 1) & (ncap - 1);
        b->tab[k] = *e;  /* moves the journey's owned arrays */
        used[i] = k;
    }
    free(old);
    free(b->used);
    b->used = used;
    b->cap_tab = ncap;
    free(b->tab2);
    free(b->used2);
    b->tab2 = calloc(ncap, sizeof(*b->tab2));
    b->used2 = malloc(ncap * sizeof(*b->used2));
    if (!b->tab2 || !b->used2) abort();
}

/* Find or add the entry for (sh, id); added entries are ENT_UNKNOWN. */
static entry_t *table_get(batch_t *b, shard_t *sh, const char *id) {
    if ((b->n_tab + 1) * 2 > b->cap_tab) table_grow(b);
    uint64_t h = ent_hash(sh, id);
    size_t k = h & (b->cap_tab - 1);
    while (b->tab[k].sh) {
        if (b->tab[k].hash == h && b->tab[k].sh == sh && !strcmp(b->tab[k].id, id)) {
            b->tab[k].epoch = b->epoch;
            return &b->tab[k];
        }
        k = (k + 1) & (b->cap_tab - 1);
    }
    entry_t *e = &b->tab[k];
    memset(e, 0, sizeof(*e));
    e->timer = e->deadline = -1;
    e->sh = sh;
    e->hash = h;
    e->epoch = b->epoch;
    copy_str(e->id, sizeof(e->id), id);
    e->state = ENT_UNKNOWN;
    b->used[b->n_tab++] = k;
    return e;
}

/* ---- load ---------------------------------------------------------------- */

/* A journey's deadline, -1: none (no event yet, closed, or waiting for
 * the answer to a link it sent: it has no timer until then). */
static int64_t deadline_or_none(const batch_t *b, const journey_t *j) {
    int64_t d = j->status == JOURNEY_OPEN && !j->pending ? journey_deadline(j, b->cfg) : -1;
    return d == INT64_MAX ? -1 : d;
}

/* Value loaded from Redis for e: absent, a redirect, or a journey blob. */
static int entry_set_value(batch_t *b, entry_t *e, const store_blob_t *v) {
    char err[128];
    e->timer = e->deadline = -1;
    if (!v->data) {
        e->state = ENT_ABSENT;
        return 0;
    }
    if ((unsigned char)v->data[0] == STORE_REDIRECT) {
        size_t n = v->len - 1 < JD_ID_MAX ? v->len - 1 : JD_ID_MAX;
        memcpy(e->target, v->data + 1, n);
        e->target[n] = '\0';
        e->state = ENT_REDIRECT;
        return 1;
    }
    if (!e->j && !(e->j = malloc(sizeof(*e->j)))) abort();
    journey_init(e->j, e->id);
    int rc = e->head ? journey_unpack_head(e->j, v->data, v->len, b->cfg, err, sizeof(err))
                     : journey_unpack(e->j, v->data, v->len, b->cfg, err, sizeof(err));
    if (rc < 0) {
        /* Never silently replace a journey we cannot read: stop this shard. */
        log_error("unreadable journey in redis", "shard=%s customer=%s error=\"%s\"", e->sh->name,
                  e->id, err);
        return -1;
    }
    e->state = ENT_JOURNEY;
    journey_settle(e->j, b->cfg, e->sh->closed_through);
    /* Every open journey written since timers exist (mseg set) has one at or
     * before its deadline; one from before (version 1) has none yet. */
    e->deadline = deadline_or_none(b, e->j);
    if (e->j->status == JOURNEY_OPEN && e->j->mseg[0]) e->timer = e->deadline;
    return 0;
}

/* The entries of the open batch's shards that `want` selects, grouped by
 * shard in the batch's order (one pass, a counting sort): shard s has
 * (*out)[start[s] .. start[s + 1]). start has n_shards + 1 slots. Returns
 * how many; *out is malloc'ed (NULL if none). */
static size_t group_by_shard(const batch_t *b, int (*want)(const entry_t *), entry_t ***out,
                             size_t *start) {
    size_t n = 0;
    memset(start, 0, ((size_t)b->n_shards + 1) * sizeof(*start));
    for (size_t i = 0; i < b->n_tab; i++) {
        const entry_t *e = &b->tab[b->used[i]];
        if (e->sh->in_batch && want(e)) {
            start[e->sh->in_batch]++; /* counted at index + 1 */
            n++;
        }
    }
    *out = NULL;
    if (!n) return 0;
    for (int s = 0; s < b->n_shards; s++) start[s + 1] += start[s];
    size_t *fill = malloc(((size_t)b->n_shards + 1) * sizeof(*fill));
    entry_t **g = malloc(n * sizeof(*g));
    if (!fill || !g) abort();
    memcpy(fill, start, ((size_t)b->n_shards + 1) * sizeof(*fill));
    for (size_t i = 0; i < b->n_tab; i++) {
        entry_t *e = &b->tab[b->used[i]];
        if (e->sh->in_batch && want(e)) g[fill[e->sh->in_batch - 1]++] = e;
    }
    free(fill);
    *out = g;
    return n;
}

static int is_unknown(const entry_t *e) { return e->state == ENT_UNKNOWN; }

/* Gather every ENT_UNKNOWN entry into b->ls, grouped by shard, for one
 * pipelined load. Returns how many. No table insertion may happen until
 * load_apply(): ls.ents points into the table. */
static size_t load_prepare(batch_t *b) {
    loadset_t *ls = &b->ls;
    size_t *start = malloc(((size_t)b->n_shards + 1) * sizeof(*start));
    if (!start) abort();
    memset(ls, 0, sizeof(*ls));
    size_t n = group_by_shard(b, is_unknown, &ls->ents, start);
    if (!n) {
        free(start);
        return 0;
    }
    ls->n = n;
    ls->ids = malloc(n * sizeof(*ls->ids));
    ls->vals = calloc(n, sizeof(*ls->vals));
    ls->reqs = calloc((size_t)b->n_shards, sizeof(*ls->reqs));
    ls->nreq = (size_t)b->n_shards;
    if (!ls->ids || !ls->vals || !ls->reqs) abort();
    for (size_t i = 0; i < n; i++) ls->ids[i] = ls->ents[i]->id;
    for (int s = 0; s < b->n_shards; s++) {
        ls->reqs[s].shard = b->shards[s]->name;
        ls->reqs[s].ids = &ls->ids[start[s]];
        ls->reqs[s].out = &ls->vals[start[s]];
        ls->reqs[s].n = start[s + 1] - start[s];
    }
    free(start);
    return n;
}

static void load_free(batch_t *b) {
    loadset_t *ls = &b->ls;
    for (size_t i = 0; ls->vals && i < ls->n; i++) free(ls->vals[i].data);
    free(ls->ents);
    free(ls->ids);
    free(ls->vals);
    free(ls->reqs);
    memset(ls, 0, sizeof(*ls));
}

/* Take the loaded values into the entries; redirect targets become
 * ENT_UNKNOWN entries for the next round (*redirects counts them). */
static store_status_t load_apply(batch_t *b, int *redirects, char *errbuf, size_t errlen) {
    loadset_t *ls = &b->ls;
    store_status_t rc = STORE_OK;
    *redirects = 0;
    for (size_t i = 0; rc == STORE_OK && i < ls->n; i++) {
        int r = entry_set_value(b, ls->ents[i], &ls->vals[i]);
        if (r < 0) {
            snprintf(errbuf, errlen, "unreadable journey %s in shard %s", ls->ents[i]->id, ls->ents[i]->sh->name);
            rc = STORE_FATAL;
        }
        *redirects += r > 0;
    }
    size_t n = ls->n;
    load_free(b);
    while ((b->n_tab + n + 1) * 2 > b->cap_tab) table_grow(b);
    for (size_t i = 0, n0 = b->n_tab; rc == STORE_OK && *redirects && i < n0; i++) {
        entry_t *e = &b->tab[b->used[i]];
        if (e->state == ENT_REDIRECT && is_local(b, e->sh, e->target)) table_get(b, e->sh, e->target);
    }
    return rc;
}

/* One synchronous round: fetch every ENT_UNKNOWN entry. */
static store_status_t load_round(batch_t *b, store_t *st, int *redirects, char *errbuf,
                                 size_t errlen) {
    *redirects = 0;
    if (!load_prepare(b)) return STORE_OK;
    store_status_t rc = store_load(st, b->ls.reqs, b->ls.nreq, errbuf, errlen);
    if (rc != STORE_OK) {
        load_free(b);
        return rc;
    }
    return load_apply(b, redirects, errbuf, errlen);
}


/* Every id the items name gets a table entry (ENT_UNKNOWN until loaded);
 * redirects kept from the previous batch bring their targets along. */
static void add_item_ids(batch_t *b) {
    for (int i = 0; i < b->n_items; i++) {
        item_t *it = &b->items[i];
        if (it->kind == ITEM_HEARTBEAT || it->kind == ITEM_CLOCK || it->kind == ITEM_ANNOUNCE) continue;
        if (it->kind != ITEM_LINK_OUT) table_get(b, it->sh, it->key);
        if ((it->kind == ITEM_LINK || it->kind == ITEM_LINK_OUT) && is_local(b, it->sh, it->other))
            table_get(b, it->sh, it->other);
    }
    for (int hop = 0; hop < MAX_REDIRECT_HOPS; hop++) {
        size_t n0 = b->n_tab;
        for (size_t i = 0; i < n0; i++) {
            entry_t *e = &b->tab[b->used[i]];
            if (e->epoch == b->epoch && e->state == ENT_REDIRECT && is_local(b, e->sh, e->target))
                table_get(b, e->sh, e->target);
        }
        if (b->n_tab == n0) break;
    }
}

/* The shard's watermark at its clock: clock - the allowed lateness; with
 * stitching, never past what every other partition has announced (low):
 * a record on its way from a partition behind must not find its journey
 * closed (stitch.h). The clock is that of the shard's own input: records
 * from partitions ahead do not move it, or a partition behind the others
 * would see its own next events as late and close their journeys early. */
static int64_t watermark(const batch_t *b, const shard_t *sh, int64_t clock) {
    if (b->n_parts && sh->home && sh->low < clock) clock = sh->low;
    return clock - b->cfg->allowed_lateness_ms;
}

static entry_t *table_find(batch_t *b, shard_t *sh, const char *id);

/* Due timer i of due request q, if its journey is not in memory and has a
 * close record: if the batch closes it (the mark moves past its deadline),
 * it is closed from the record after the items (close_by_records()); if the
 * mark does not reach its deadline (the timer fired early: events came
 * after it was set), its timer is set again at the deadline, due or not:
 * when more timers are due than a batch fetches, a later batch's mark
 * covers it. Either way it is not read. Only a deadline among the ties of
 * the last timer fetched (the mark stops just before them) makes it a
 * candidate, read and closed like one, so that every timer this batch
 * fetched leaves the range it fetched. The ids are taken over. */
static int by_record(batch_t *b, shard_t *sh, store_due_req_t *q, size_t i) {
    int64_t deadline;
    funnel_close_t fc;
    uint64_t hash = ent_hash(sh, q->ids[i]);
    if (table_find(b, sh, q->ids[i]) || !closes_get(b->closes, sh, q->ids[i], hash, &deadline, &fc) ||
        (deadline > q->through && deadline <= q->at[q->n - 1]))
        return 0;
    if (b->n_rcs == b->cap_rcs) {
        b->cap_rcs = b->cap_rcs ? 2 * b->cap_rcs : 256;
        if (!(b->rcs = realloc(b->rcs, b->cap_rcs * sizeof(*b->rcs)))) abort();
    }
    b->rcs[b->n_rcs++] = (rec_close_t){.sh = sh, .id = q->ids[i], .hash = hash, .due_at = q->at[i],
                                       .deadline = deadline, .rearm = deadline > q->through, .fc = fc};
    q->ids[i] = NULL;
    return 1;
}

/* The first round, one round trip: the journeys the items name, and, in
 * each shard whose earliest timer may be due, the timers due by the end of
 * the batch, whose journeys join the table as candidates (loaded by the next
 * rounds unless already in memory). A commit may be in flight meanwhile:
 * what it changes is in the table already (the entries it touched are kept),
 * so a stale answer only adds candidates, which are checked against the
 * journey itself; the timers its mark removes are not asked for. */
static store_status_t load_first(batch_t *b, store_t *st, int *more, char *errbuf, size_t errlen) {
    store_due_req_t *due = calloc((size_t)b->n_shards + 1, sizeof(*due));
    shard_t **shs = calloc((size_t)b->n_shards + 1, sizeof(*shs));
    size_t n = 0;
    if (!due || !shs) abort();
    for (int i = 0; i < b->n_shards; i++) {
        shard_t *sh = b->shards[i];
        int64_t wm = watermark(b, sh, sh->batch_clock);
        if (wm < sh->next_due && !sh->timers_more) continue;
        /* (the timers up to the last mark are gone, or going with the
         * commit in flight: asked for again, they would all be read) */
        due[n] = (store_due_req_t){.shard = sh->name, .after = sh->closed_through, .until = wm,
                                   .limit = (size_t)b->cfg->batch_max_events};
        shs[n++] = sh;
    }
    load_prepare(b);
    store_status_t rc = store_due_load(st, due, n, b->ls.reqs, b->ls.nreq, errbuf, errlen);
    if (rc == STORE_OK) rc = load_apply(b, more, errbuf, errlen);
    else load_free(b);
    for (size_t q = 0; rc == STORE_OK && q < n; q++) {
        shs[q]->next_due = due[q].next;
        shs[q]->timers_more = due[q].n == due[q].limit;
        /* every timer up to `through` (`until`, unless some were left for
         * the next batch) is a candidate of this batch, which closes or
         * re-arms each: the mark its commit stores */
        shs[q]->due_through = due[q].through;
        if (due[q].through > shs[q]->closing_through) shs[q]->closing_through = due[q].through;
        for (size_t i = 0; i < due[q].n; i++) {
            if (by_record(b, shs[q], &due[q], i)) continue;
            size_t n0 = b->n_tab;
            entry_t *e = table_get(b, shs[q], due[q].ids[i]);
            e->cand = 1;
            e->due_at = due[q].at[i];
            e->head = b->n_tab > n0; /* nothing else in this batch names it */
            *more += e->state == ENT_UNKNOWN;
        }
    }
    store_due_free(due, n);
    free(due);
    free(shs);
    return rc;
}

/* Rounds after the first: only when candidates or redirects were met. */
static store_status_t load_more(batch_t *b, store_t *st, int more, char *errbuf, size_t errlen) {
    for (int round = 0; more && round <= MAX_REDIRECT_HOPS; round++) {
        store_status_t rc = load_round(b, st, &more, errbuf, errlen);
        if (rc != STORE_OK) return rc;
    }
    return STORE_OK; /* longer chains stay ENT_UNKNOWN: canonical() refuses them */
}

/* ---- apply ---------------------------------------------------------------- */

static entry_t *table_find(batch_t *b, shard_t *sh, const char *id) {
    if (!b->cap_tab) return NULL;
    uint64_t h = ent_hash(sh, id);
    size_t k = h & (b->cap_tab - 1);
    while (b->tab[k].sh) {
        if (b->tab[k].hash == h && b->tab[k].sh == sh && !strcmp(b->tab[k].id, id)) return &b->tab[k];
        k = (k + 1) & (b->cap_tab - 1);
    }
    return NULL;
}

/* Follow redirects to the entry that holds (or will hold) the journey, or
 * to the last one in this shard of a chain that goes on in another (a
 * redirect whose target lives elsewhere, stitch.h); the redirects passed
 * on the way are pointed at it (written with the commit), so a chain is
 * walked once. NULL if the chain does not end in what was loaded (longer
 * than MAX_REDIRECT_HOPS: a cycle). */
static entry_t *canonical(batch_t *b, shard_t *sh, const char *id) {
    entry_t *e = table_find(b, sh, id), *first = e;
    int hops = 0;
    for (; e && e->state == ENT_REDIRECT && hops < MAX_REDIRECT_HOPS && is_local(b, sh, e->target); hops++)
        e = table_find(b, sh, e->target);
    if (!e || (e->state == ENT_REDIRECT && is_local(b, sh, e->target)) || (hops && e->state == ENT_UNKNOWN)) {
        log_error("identity chain too long or a cycle: the event is not applied", "shard=%s id=%s", sh->name, id);
        return NULL;
    }
    for (entry_t *r = first; r != e;) { /* shorten the chain: each redirect on it points at e */
        entry_t *next = table_find(b, sh, r->target);
        if (strcmp(r->target, e->id)) {
            copy_str(r->target, sizeof(r->target), e->id);
            r->dirty = 1;
        }
        r = next;
    }
    return e;
}

/* e's journey, whole: created if absent; one read without its history
 * (a candidate kept from the previous batch) gets it parsed now. */
static journey_t *entry_journey(const batch_t *b, entry_t *e) {
    if (e->state != ENT_JOURNEY) {
        if (!e->j && !(e->j = malloc(sizeof(*e->j)))) abort();
        journey_init(e->j, e->id);
        e->state = ENT_JOURNEY;
    }
    /* the tail was checked when it was read: only memory could fail here */
    if (journey_load_tail(e->j, b->cfg) < 0) abort();
    return e->j;
}

/* ---- event time, timeouts and the funnel (SPEC §5, §6) --------------------
 * Per shard, the clock is the highest event time of its input (events,
 * heartbeats, idle advance; not the internal topic's records); the
 * watermark trails it by the allowed lateness. A journey is due when the
 * watermark reaches its deadline (last event + its phase's timeout): it is
 * closed the moment anything looks at it -- an event for it, or the sweep at
 * the end of the batch over every journey in memory, which includes those
 * whose timers Redis says are due (load_first). So when a journey closes depends on event
 * time alone, never on batch boundaries. An event at or after its journey's
 * deadline closes it at once and starts the customer's next journey; an
 * event that belongs to an already closed journey is late: remembered in the
 * history, nothing else. */

static void close_if_due(batch_t *b, entry_t *e) {
    if (e->state == ENT_JOURNEY &&
        funnel_expire(&e->sh->fd, &e->sh->reg, b->cfg, e->j, watermark(b, e->sh, e->sh->clock))) {
        e->closed = 1;
        e->deadline = -1;
    }
}

/* The phase of j at event time ts: the last it had entered by then (the
 * first if none), so that it does not depend on arrival order. */
static int phase_at(const journey_t *j, int64_t ts) {
    int k = j->phase;
    while (k > 0 && j->phase_ts[k] > ts) k--;
    return k < 0 ? 0 : k;
}

/* The touchpoint of j's latest classified touch before the answer `mid` at
 * ts (from its history), "unknown" if none. */
static const char *touchpoint_at(const journey_t *j, int64_t ts, uint64_t mid) {
    for (uint32_t i = j->n_hist; i-- > 0;) {
        const jd_touch_t *t = &j->hist[i];
        if (t->ts <= ts && t->mid != mid && t->phase >= 0 && t->tp[0]) return t->tp;
    }
    return "unknown";
}

/* A survey answer (SPEC §6): counted under its phase (properties.phase, else
 * the journey's at the answer's time), in the series of its scope by
 * touchpoint (properties.touchpoint, else the journey's last one before) and
 * by segment (the journey's), each name capped. */
static void count_answer(batch_t *b, const journey_t *j, const item_t *it) {
    shard_t *sh = it->sh;
    const config_t *cfg = b->cfg;
    ev_metric_t m = (ev_metric_t)it->metric;
    int ph = it->explicit_phase && it->phase >= 0 ? it->phase : phase_at(j, it->ts);
    int js = it->scope == EV_SCOPE_JOURNEY;
    const char *tp = it->explicit_tp ? it->tp : touchpoint_at(j, it->ts, it->mid);
    const char *seg = j->segment[0] ? j->segment : FUNNEL_NONE;
    /* (the overall series is the sum of the touchpoint ones: not kept) */
    const char *names[2][2] = {{"touchpoint", sat_part_capped(&sh->sat, 0, tp, cfg->touchpoints_max)},
                               {"segment", sat_part_capped(&sh->sat, 1, seg, cfg->segments_max)}};
    for (int d = 0; d < 2; d++) {
        char key[SAT_KEY_MAX];
        if (sat_key(key, sizeof(key), cfg->phases[ph].name, js, names[d][0], names[d][1], m) < 0) continue;
        sat_part_add(&sh->sat, &b->satw, key, m, it->ts, it->score);
    }
}

/* wm: the shard's watermark before the item */
static funnel_result_t apply_event(batch_t *b, entry_t *e, const item_t *it, int64_t wm) {
    shard_t *sh = it->sh;
    int late;
    event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.ts_ms = it->ts;
    ev.segment = it->segment[0] ? it->segment : NULL;
    ev.phase = it->explicit_phase ? "" : NULL;
    ev.metric = (ev_metric_t)it->metric;
    ev.score = it->score;
    ev.scope = (ev_scope_t)it->scope;
    funnel_result_t r = funnel_event(&sh->fd, &sh->reg, b->cfg, entry_journey(b, e), wm,
                                     watermark(b, sh, sh->clock), &ev, it->mid, it->phase,
                                     it->kind == ITEM_TOUCH ? it->tp : NULL, &late);
    sh->stats[STAT_LATE] += late;
    if (r != FUNNEL_DUPLICATE) e->dirty = 1;
    if (r != FUNNEL_DUPLICATE && it->metric != EV_METRIC_NONE) count_answer(b, e->j, it);
    e->deadline = deadline_or_none(b, e->j);
    return r;
}

/* Too many ids for one customer: the id keeps its own journey. */
static int link_capped(batch_t *b, shard_t *sh, const entry_t *cust, const char *id) {
    if (cust->j->linked < (uint32_t)b->cfg->max_linked_ids) return 0;
    sh->stats[STAT_LINK_CAPPED]++;
    log_info("identity link refused: the customer has journey.max_linked_ids", "shard=%s id=%s customer=%s",
             sh->name, id, cust->id);
    return 1;
}

/* Link id, which lives in another partition (or, follow: the end of id's
 * chain does), to the customer: its place under the cap is reserved now,
 * and id's home decides (FWD_CLAIM; stitch.h). */
static void link_remote(batch_t *b, entry_t *cust, shard_t *sh, const char *id, int follow) {
    if (link_capped(b, sh, cust, id)) {
        if (follow & FWD_F_HELD) { /* the id was held open for this: let it go */
            fwd_t f;
            fwd_of(&f, FWD_CLAIM, id, NULL);
            copy_str(f.cust, sizeof(f.cust), cust->id);
            f.follow = FWD_F_HELD | FWD_F_REFUSED;
            emit(b, sh, &f);
        }
        return;
    }
    cust->j->linked++;
    cust->j->merged++;
    cust->j->pending++; /* until the answer: FWD_HANDOFF or FWD_RELEASE */
    cust->deadline = deadline_or_none(b, cust->j);
    cust->dirty = 1;
    fwd_t f;
    fwd_of(&f, FWD_CLAIM, id, NULL);
    copy_str(f.cust, sizeof(f.cust), cust->id);
    f.jnum = cust->j->number;
    f.follow = (uint8_t)follow;
    emit(b, sh, &f);
}

/* identify/alias: make `other` a redirect to the customer, merging its
 * journey if that is still open (a closed one stays counted as it was). */
static void apply_link(batch_t *b, entry_t *cust, const item_t *it) {
    shard_t *sh = it->sh;
    if (!is_local(b, sh, it->other)) {
        link_remote(b, cust, sh, it->other, it->follow & FWD_F_HELD);
        return;
    }
    entry_t *raw = table_find(b, sh, it->other);
    if (!raw || raw == cust) return;
    if (raw->state == ENT_REDIRECT) {
        entry_t *t = canonical(b, sh, it->other);
        if (t && t->state == ENT_REDIRECT) { /* linked to a customer elsewhere: perhaps this one */
            if (strcmp(t->target, cust->id)) link_remote(b, cust, sh, t->target, 1);
        } else if (t && t != cust) {
            /* Shared device: the id already belongs to another customer. */
            sh->stats[STAT_CONFLICT]++;
            log_info("identity link refused", "shard=%s id=%s linked_to=%s customer=%s", sh->name,
                     it->other, raw->target, cust->id);
        }
        return;
    }
    if (link_capped(b, sh, cust, it->other)) return;
    if (raw->state == ENT_JOURNEY) {
        entry_journey(b, raw);
        close_if_due(b, raw);
        if (raw->j->status == JOURNEY_OPEN) {
            int from = cust->j->phase;
            int64_t before[CFG_MAX_PHASES];
            memcpy(before, cust->j->phase_ts, sizeof(before));
            funnel_removed(&sh->fd, &sh->reg, b->cfg, raw->j);
            journey_merge(cust->j, raw->j, b->cfg);
            funnel_moved(&sh->fd, &sh->reg, b->cfg, cust->j, from, before);
            cust->deadline = deadline_or_none(b, cust->j);
            sh->stats[STAT_MERGED]++;
        }
        journey_reset(raw->j);
        free(raw->j);
        raw->j = NULL;
    }
    raw->state = ENT_REDIRECT;
    copy_str(raw->target, sizeof(raw->target), cust->id);
    raw->dirty = 1;
    cust->j->merged++; /* counted per link, so arrival order does not matter */
    cust->j->linked++;
    cust->dirty = 1;
    sh->stats[STAT_LINKED]++;
}

/* The reservation of a link that was refused, or was there already, is
 * given back to the customer (FWD_RELEASE). */
static void release(batch_t *b, shard_t *sh, const char *cust, uint32_t jnum) {
    fwd_t f;
    fwd_of(&f, FWD_RELEASE, cust, NULL);
    copy_str(f.cust, sizeof(f.cust), cust);
    f.jnum = jnum;
    emit(b, sh, &f);
}

/* FWD_CLAIM in the home of it->key: link it to the customer it->other
 * (stitch.h). An id linked already is followed along its chain, wherever
 * that leads; if it ends at another customer, the link is refused (a
 * shared device). Otherwise the id becomes a redirect, and its open journey
 * leaves this shard's funnel and is handed to the customer. */
static void apply_claim(batch_t *b, const item_t *it) {
    shard_t *sh = it->sh;
    entry_t *raw = table_find(b, sh, it->key);
    if (!raw) return; /* cannot happen: add_item_ids() added it */
    int held = (it->follow & FWD_F_HELD) && raw->state == ENT_JOURNEY;
    if (held) { /* held open for this claim, however late it is: the journey of the link */
        journey_t *j = entry_journey(b, raw);
        if (j->pending) j->pending--;
        raw->deadline = deadline_or_none(b, j);
        raw->dirty = 1;
    }
    if (it->follow & FWD_F_REFUSED) {
        close_if_due(b, raw);
        return;
    }
    if (raw->state == ENT_REDIRECT || (it->follow & FWD_F_FOLLOW)) {
        entry_t *t = canonical(b, sh, it->key);
        if (t && t->state == ENT_REDIRECT && strcmp(t->target, it->other)) {
            fwd_t f; /* the chain goes on elsewhere */
            fwd_of(&f, FWD_CLAIM, t->target, NULL);
            copy_str(f.cust, sizeof(f.cust), it->other);
            f.jnum = it->jnum;
            f.follow = FWD_F_FOLLOW;
            emit(b, sh, &f);
            return;
        }
        if (t && t->state != ENT_REDIRECT && strcmp(t->id, it->other)) {
            sh->stats[STAT_CONFLICT]++; /* shared device: the id belongs to another customer */
            log_info("identity link refused: the id belongs to another customer", "shard=%s id=%s owner=%s customer=%s",
                     sh->name, it->key, t->id, it->other);
        }
        release(b, sh, it->other, it->jnum);
        return;
    }
    /* the answer: the journey if it is open (a closed one stays counted as
     * it was), else nothing to merge */
    fwd_t f;
    char *blob = NULL;
    fwd_of(&f, FWD_HANDOFF, it->other, NULL);
    copy_str(f.cust, sizeof(f.cust), it->other);
    copy_str(f.other, sizeof(f.other), it->key);
    f.jnum = it->jnum;
    if (raw->state == ENT_JOURNEY) {
        entry_journey(b, raw);
        if (!held) close_if_due(b, raw);
        if (raw->j->status == JOURNEY_OPEN) {
            raw->j->pending = 0; /* holds stay here: the id is a redirect from now on */
            if (journey_pack(raw->j, &blob, &f.blob_len) < 0) abort(); /* out of memory */
            f.blob = blob;
            funnel_removed(&sh->fd, &sh->reg, b->cfg, raw->j);
        }
    }
    emit(b, sh, &f);
    free(blob);
    if (raw->state == ENT_JOURNEY) {
        journey_reset(raw->j);
        free(raw->j);
        raw->j = NULL;
    }
    raw->state = ENT_REDIRECT;
    raw->deadline = -1;
    copy_str(raw->target, sizeof(raw->target), it->other);
    raw->dirty = 1;
    sh->stats[STAT_LINKED]++;
}

/* identify/alias of a customer homed elsewhere, linking an id of this
 * shard: if the id has an open journey, it is held open (it does not time
 * out) until the customer's claim for it comes back, however far this
 * partition runs ahead meanwhile; then the link goes to the customer. */
static void apply_link_out(batch_t *b, item_t *it) {
    shard_t *sh = it->sh;
    entry_t *raw = table_find(b, sh, it->other);
    if (raw && raw->state == ENT_JOURNEY) {
        journey_t *j = entry_journey(b, raw);
        close_if_due(b, raw);
        if (j->status == JOURNEY_OPEN) {
            j->pending++;
            raw->deadline = deadline_or_none(b, j);
            raw->dirty = 1;
            it->follow |= FWD_F_HELD;
        }
    }
    log_debug("link sent to the customer's home", "shard=%s id=%s customer=%s held=%d", sh->name, it->other, it->key,
              !!(it->follow & FWD_F_HELD));
    fwd_t f;
    fwd_of(&f, FWD_LINK, it->key, it);
    emit(b, sh, &f);
}

/* Pass a record on along a chain that goes on elsewhere: to `to`, for
 * whatever journey of it is open (jnum 0). */
static void pass_on(batch_t *b, const item_t *it, int kind, const char *to) {
    fwd_t f;
    char *blob = NULL;
    fwd_of(&f, kind, to, NULL);
    copy_str(f.cust, sizeof(f.cust), to);
    copy_str(f.other, sizeof(f.other), it->other);
    if (kind == FWD_HANDOFF && it->handoff) {
        if (journey_pack(it->handoff, &blob, &f.blob_len) < 0) abort();
        f.blob = blob;
    }
    emit(b, it->sh, &f);
    free(blob);
}

/* The answer to a link has come: the customer's journey may time out again. */
static void answered(batch_t *b, entry_t *e) {
    if (!e || e->state != ENT_JOURNEY) return;
    journey_t *j = entry_journey(b, e);
    if (j->pending) j->pending--;
    e->deadline = deadline_or_none(b, j);
    e->dirty = 1;
    close_if_due(b, e);
}

/* FWD_HANDOFF in the customer's home, the answer to a link: the
 * anonymous journey, if it was open, joins the customer's journey of the
 * link if that is still open; if that one has closed after all (a later
 * event of the customer came after its deadline), the anonymous journey is
 * counted and closed on its own, as it would have been without the link. */
static void apply_handoff(batch_t *b, item_t *it) {
    shard_t *sh = it->sh;
    entry_t *e = canonical(b, sh, it->key);
    journey_t *hj = it->handoff;
    if (e && e->state == ENT_REDIRECT) {
        pass_on(b, it, FWD_HANDOFF, e->target);
        return;
    }
    if (!hj) {
        answered(b, e);
        return;
    }
    /* (a journey waiting for this answer has not timed out: it may be
     * past its deadline, and closes once the anonymous one has joined it) */
    if (e && e->state == ENT_JOURNEY) entry_journey(b, e);
    if (e && e->state == ENT_JOURNEY && e->j->status == JOURNEY_OPEN && (!it->jnum || e->j->number == it->jnum)) {
        int from = e->j->phase;
        int64_t before[CFG_MAX_PHASES];
        memcpy(before, e->j->phase_ts, sizeof(before));
        journey_merge(e->j, hj, b->cfg);
        funnel_moved(&sh->fd, &sh->reg, b->cfg, e->j, from, before);
        sh->stats[STAT_MERGED]++;
        answered(b, e);
        return;
    }
    answered(b, e);
    funnel_moved(&sh->fd, &sh->reg, b->cfg, hj, -1, NULL);
    journey_close(hj, b->cfg);
    funnel_closed(&sh->fd, &sh->reg, b->cfg, hj);
    sh->stats[STAT_HANDOFF_CLOSED]++;
    log_info("anonymous journey handed off after the customer's journey closed: counted on its own",
             "shard=%s id=%s customer=%s", sh->name, it->other, it->key);
}

/* FWD_RELEASE in the customer's home: give the reservation back. */
static void apply_release(batch_t *b, const item_t *it) {
    entry_t *e = canonical(b, it->sh, it->key);
    if (e && e->state == ENT_REDIRECT) {
        pass_on(b, it, FWD_RELEASE, e->target);
        return;
    }
    if (!e || e->state != ENT_JOURNEY) return;
    journey_t *j = entry_journey(b, e);
    if (j->linked) j->linked--;
    if (j->merged && (!it->jnum || j->number == it->jnum)) j->merged--;
    answered(b, e);
}

/* The due journeys left to their close records (by_record()) are closed
 * from them, unless something in this batch read the journey after all (a
 * redirect's target): then it is a candidate like any other. */
static void close_by_records(batch_t *b) {
    for (size_t i = 0; i < b->n_rcs; i++) {
        rec_close_t *r = &b->rcs[i];
        entry_t *e = table_find(b, r->sh, r->id);
        if (e && e->state != ENT_UNKNOWN) { /* read after all: closed or timed as a candidate */
            e->cand = 1;
            e->due_at = r->due_at;
            if (r->rearm) r->rearm = 2; /* (its entry sets the timer) */
            continue;
        }
        if (r->rearm) continue; /* (its commit sets the timer: build_shard_req()) */
        funnel_count_close(&r->sh->fd, &r->sh->reg, b->cfg, &r->fc);
        closes_del(b->closes, r->sh, r->id, r->hash);
        b->closed_by_record++;
    }
}

/* After the items: close every journey in memory that the watermark has
 * passed (by the deadline each entry keeps: most are not due, and their
 * journeys need not be looked at). */
static void sweep(batch_t *b) {
    for (size_t i = 0; i < b->n_tab; i++) {
        entry_t *e = &b->tab[b->used[i]];
        if (e->state == ENT_JOURNEY && e->deadline >= 0 && e->sh->in_batch &&
            e->deadline <= watermark(b, e->sh, e->sh->clock))
            close_if_due(b, e);
    }
}

static void apply_all(batch_t *b) {
    for (int i = 0; i < b->n_items; i++) {
        item_t *it = &b->items[i];
        int64_t wm = watermark(b, it->sh, it->sh->clock);
        if (!it->internal && it->ts > it->sh->clock) it->sh->clock = it->ts;
        if (it->kind == ITEM_HEARTBEAT || it->kind == ITEM_CLOCK) {
            it->sh->stats[STAT_HEARTBEAT] += it->kind == ITEM_HEARTBEAT;
            continue;
        }
        if (it->kind == ITEM_ANNOUNCE) {
            shard_mark_clock(it->sh, (int)it->jnum, it->ts, 1);
            shard_low_update(it->sh, b->n_parts - 1);
            continue;
        }
        if (it->kind == ITEM_CLAIM) {
            apply_claim(b, it);
            continue;
        }
        if (it->kind == ITEM_LINK_OUT) {
            apply_link_out(b, it);
            continue;
        }
        if (it->kind == ITEM_HANDOFF) {
            apply_handoff(b, it);
            continue;
        }
        if (it->kind == ITEM_RELEASE) {
            apply_release(b, it);
            continue;
        }
        entry_t *e = canonical(b, it->sh, it->key);
        if (!e) continue; /* cannot happen: every key was added by add_item_ids() */
        if (e->state == ENT_REDIRECT) { /* the customer lives elsewhere */
            fwd_t f;
            fwd_of(&f, it->kind == ITEM_LINK ? FWD_LINK : FWD_EVENT, e->target, it);
            emit(b, it->sh, &f);
            continue;
        }
        funnel_result_t r = apply_event(b, e, it, wm);
        it->sh->stats[r == FUNNEL_DUPLICATE ? STAT_DUPLICATE : STAT_APPLIED]++;
        if (r == FUNNEL_APPLIED && it->kind == ITEM_LINK) {
            apply_link(b, e, it);
        } else if (it->kind == ITEM_LINK && (it->follow & FWD_F_HELD)) { /* no link: let the id go */
            fwd_t f;
            fwd_of(&f, FWD_CLAIM, it->other, NULL);
            copy_str(f.cust, sizeof(f.cust), e->id);
            f.follow = FWD_F_HELD | FWD_F_REFUSED;
            emit(b, it->sh, &f);
        }
    }
    close_by_records(b);
    sweep(b);
}

/* ---- commit --------------------------------------------------------------- */

/* The value written for a dirty entry: a journey blob, a redirect, or
 * nothing (NULL: deleted). */
static int entry_value(const entry_t *e, char **val, size_t *len) {
    if (e->state == ENT_JOURNEY) return journey_pack(e->j, val, len);
    if (e->state != ENT_REDIRECT) {
        *val = NULL;
        *len = 0;
        return 0;
    }
    size_t n = strlen(e->target);
    char *v = malloc(n + 1);
    if (!v) return -1;
    v[0] = (char)STORE_REDIRECT;
    memcpy(v + 1, e->target, n);
    *val = v;
    *len = n + 1;
    return 0;
}

typedef struct commit_buf {
    store_commit_req_t *reqs;
    const char **ids;
    const char **vals;
    size_t *lens;
    store_timer_t *timers;
    size_t n_timers;
    const char *stat_names[STAT__COUNT];
} commit_buf_t;

/* The change to e's timer this commit makes, given the timer as committed
 * (e->timer: at or before that deadline) and the journey's deadline now
 * (`now`, -1: none). Timers only move earlier (ZADD LT), so the usual event,
 * which pushes the deadline later, changes nothing; a timer that fired before
 * the deadline (a candidate still open) is re-armed; a stale one (its journey
 * closed, merged away or gone) is removed, unless the commit's closed-through
 * mark removes it anyway (a candidate's timer is at or before the mark when
 * every due timer up to it was fetched: due_through). 0: no change. */
static int timer_change(const entry_t *e, int64_t now, store_timer_t *t) {
    int had = e->cand || e->timer >= 0;
    int64_t mark = e->sh->closing_through;
    if (e->state == ENT_UNKNOWN) return 0; /* never loaded (a chain too long): not touched */
    if (now < 0) {
        if (!had || (e->cand ? e->due_at <= e->sh->due_through : e->timer <= mark)) return 0;
        *t = (store_timer_t){.id = e->id, .at = 0, .op = STORE_TIMER_DEL};
    } else if (e->cand || (e->timer >= 0 && e->timer <= mark)) {
        /* fired early; or written by the commit that was in flight when the
         * due timers were read, so perhaps not seen, and about to go with
         * the mark's ZREMRANGEBYSCORE: re-armed (after it) */
        *t = (store_timer_t){.id = e->id, .at = now, .op = STORE_TIMER_SET};
    } else if (e->timer < 0 || now < e->timer) {
        *t = (store_timer_t){.id = e->id, .at = now, .op = STORE_TIMER_LT};
    } else {
        return 0;
    }
    return 1;
}

/* The batch's answers go to the answer log, or, once the log would pass
 * satisfaction.log_max_bytes, a checkpoint writes every count changed since
 * the last one, deletes the buckets expired since, and empties the log
 * (satisfaction.h). Either way the commit holds exactly the new answers. */
static void sat_commit(batch_t *b, shard_t *sh, store_commit_req_t *q) {
    size_t add = sh->sat.log_len;
    sh->sat_checkpoint = add && sh->sat_log_bytes + add > (size_t)b->cfg->sat_log_max;
    /* the answers go to the log either way: at a checkpoint to the log that
     * ends (kept as the previous log for readers one checkpoint behind) */
    q->sat_log = sh->sat.log;
    q->sat_log_len = add;
    if (!sh->sat_checkpoint) {
        sh->sat_log_bytes += add; /* as if committed: memory is dropped if it is not */
        return;
    }
    sat_part_render(&sh->sat, &b->satw, &sh->sat_names, &sh->sat_vals);
    q->n_sat = sh->sat_names.n;
    q->sat_names = (const char *const *)sh->sat_names.v;
    q->sat_values = (const char *const *)sh->sat_vals.v;
    q->n_sat_gone = sh->sat_gone.n;
    q->sat_gone = (const char *const *)sh->sat_gone.v;
    q->sat_log_reset = 1; /* readers tell a checkpoint by the log's header */
    sh->sat_log_bytes = 0;
}

/* A home shard whose own input's clock has moved on tells every other
 * partition, after the records it sends in this batch: a destination that
 * has applied the announcement has applied them, and its watermark may
 * pass them (watermark()). The input's clock as batch_add() saw it (the
 * batch's end), which its records of this batch come before. At most once a
 * second of event time. */
#define ANNOUNCE_EVERY_MS 1000
static void announce(batch_t *b, shard_t *sh) {
    if (!sh->home || b->n_parts < 2 ||
        (sh->announced != INT64_MIN && sh->iclock < sh->announced + ANNOUNCE_EVERY_MS))
        return;
    fwd_t f;
    fwd_of(&f, FWD_CLOCK, FWD_CLOCK_ID, NULL);
    f.ts = sh->iclock;
    for (int32_t p = 0; p < b->n_parts; p++) {
        if (p == sh->partition) continue;
        char *rec;
        size_t len;
        snprintf(f.src, sizeof(f.src), "%s", sh->name);
        f.seq = ++sh->out_seq;
        if (fwd_encode(&f, &rec, &len) < 0) abort();
        shard_out_add(&sh->out, p, f.id, rec, len);
        free(rec);
    }
    sh->announced = sh->iclock; /* as if committed: memory is dropped if it is not */
}

static void build_shard_req(batch_t *b, shard_t *sh, entry_t **ents, size_t n_ents,
                            store_commit_req_t *q, size_t *k, commit_buf_t *cb) {
    q->shard = sh->name;
    q->expected_offset = sh->committed;
    q->new_offset = next_offset(sh);
    q->n_stats = STAT__COUNT;
    q->stat_names = cb->stat_names;
    q->stat_deltas = sh->stats;
    /* funnel: the counters that changed, and, each time the watermark has
     * moved on by the shortest window's bucket, the buckets no window holds
     * any more (deleted, which bounds the hash). Windows are read at the
     * shard's own watermark (snapshot.c), so they expire at it, not at the
     * one held for the partitions behind (watermark()): while a backlog is
     * read with stitching, that one can lag a day, and the windows' buckets
     * of that day would be kept, written and read for nothing (measured:
     * satisfaction 32 MB instead of 15 MB). A record from a partition
     * behind that counts into a bucket already dead is what a window at
     * this watermark does not hold: dropped (funnel), or kept until the
     * next expiry (satisfaction) and ignored by readers. */
    int64_t wm = sh->clock - b->cfg->allowed_lateness_ms;
    if (b->cfg->n_funnel_windows) {
        int64_t res = b->cfg->funnel_windows_ms[0] / b->cfg->funnel_buckets;
        if (sh->funnel_expired == INT64_MIN || wm / res != sh->funnel_expired / res) {
            funnel_delta_expire(&sh->fd, &sh->totals, &sh->reg, b->cfg, sh->clock, wm);
            sh->funnel_expired = wm;
        }
    }
    funnel_delta_render(&sh->fd, &sh->totals, &sh->reg, b->cfg, sh->clock, wm);
    q->n_metrics = sh->fd.n_names;
    q->metric_names = (const char *const *)sh->fd.names;
    q->metric_values = sh->fd.totals;
    q->n_metrics_gone = sh->fd.n_gone;
    q->metrics_gone = (const char *const *)sh->fd.gone;
    q->clock = sh->clock;
    q->closed_through = sh->closing_through;
    q->closed_moved = sh->closing_through > sh->closed_through;
    /* satisfaction: what changed, and, each time the watermark has moved on
     * by the shortest window, the buckets no window holds any more (reading
     * ignores them anyway; deleting them bounds the hash) */
    if (b->satw.n && wm / b->satw.len_ms[0] != sh->sat_expired / b->satw.len_ms[0]) {
        sat_part_expire(&sh->sat, &b->satw, wm, &sh->sat_gone);
        sh->sat_expired = wm;
    }
    sat_commit(b, sh, q);
    sh->closed_through = sh->closing_through; /* as if committed: memory is dropped if it is not */
    q->expected_ioffset = q->new_ioffset = -1; /* filled in when it is sent */
    if (b->n_parts) { /* the records it sends, and the marks of those it applied */
        announce(b, sh);
        shard_fields_build(sh);
        q->n_fields = sh->n_f;
        q->field_names = (const char *const *)sh->fnames;
        q->field_values = sh->fvals;
        q->n_out = sh->out.n;
        q->out = (const char *const *)sh->out.v;
        q->out_lens = sh->out.lens;
    }
    q->ids = &cb->ids[*k];
    q->vals = &cb->vals[*k];
    q->val_lens = &cb->lens[*k];
    q->timers = &cb->timers[cb->n_timers];
    for (size_t i = 0; i < n_ents; i++) {
        entry_t *e = ents[i];
        int64_t now = e->state == ENT_JOURNEY ? e->deadline : -1;
        store_timer_t *t = &cb->timers[cb->n_timers];
        /* e->timer becomes what it is once this commits (memory is dropped
         * if it does not); unchanged if untouched */
        if (timer_change(e, now, t)) {
            cb->n_timers++;
            q->n_timers++;
            if (t->op != STORE_TIMER_DEL && t->at < sh->next_due) sh->next_due = t->at;
            e->timer = t->op == STORE_TIMER_DEL ? -1 : t->at;
        } else if (now < 0) {
            e->timer = -1; /* none, or the mark's ZREMRANGEBYSCORE removes it */
        }
        if (e->state == ENT_JOURNEY && now >= 0 && e->j->stored_deadline != now) {
            e->j->stored_deadline = now; /* a new deadline, or one from another config */
            e->dirty = 1;
        } else if (e->closed && !e->dirty) {
            /* closed by the sweep and nothing else: the mark covers it, but
             * for a journey stored without its deadline (version 2) */
            int64_t d = e->j->stored_deadline;
            if (d >= 0 && d <= sh->closed_through) continue;
            e->dirty = 1;
        }
        if (!e->dirty) continue;
        char *v;
        if (entry_value(e, &v, &cb->lens[*k]) < 0) abort();
        cb->ids[*k] = e->id;
        cb->vals[*k] = v;
        (*k)++;
        q->n_keys++;
    }
    for (size_t i = 0; i < b->n_rcs; i++) { /* timers that fired early, of journeys not read */
        const rec_close_t *r = &b->rcs[i];
        if (r->sh != sh || r->rearm != 1) continue;
        cb->timers[cb->n_timers++] = (store_timer_t){.id = r->id, .at = r->deadline, .op = STORE_TIMER_SET};
        q->n_timers++;
        if (r->deadline < sh->next_due) sh->next_due = r->deadline;
    }
}

/* Pack the commit of every shard of the open batch into b->prep; offsets
 * are filled in when it is sent (after the previous commit is known). */
static int in_commit(const entry_t *e) { return e->dirty || e->cand || e->closed; }

static void commit_prepare(batch_t *b) {
    static const char *stat_names[STAT__COUNT];
    commit_buf_t cb;
    size_t k = 0;
    entry_t **ents;
    size_t *start = malloc(((size_t)b->n_shards + 1) * sizeof(*start));
    if (!start) abort();
    size_t n = group_by_shard(b, in_commit, &ents, start);
    for (int s = 0; s < STAT__COUNT; s++) stat_names[s] = shard_stat_name(s);
    cb.reqs = calloc((size_t)b->n_shards, sizeof(*cb.reqs));
    cb.ids = malloc((n + 1) * sizeof(*cb.ids));
    cb.vals = malloc((n + 1) * sizeof(*cb.vals));
    cb.lens = malloc((n + 1) * sizeof(*cb.lens));
    cb.timers = malloc((n + b->n_rcs + 1) * sizeof(*cb.timers));
    cb.n_timers = 0;
    shard_t **shards = malloc((size_t)b->n_shards * sizeof(*shards));
    if (!cb.reqs || !cb.ids || !cb.vals || !cb.lens || !cb.timers || !shards) abort();
    memcpy(cb.stat_names, stat_names, sizeof(stat_names));
    for (int s = 0; s < b->n_shards; s++) {
        build_shard_req(b, b->shards[s], ents + start[s], start[s + 1] - start[s], &cb.reqs[s], &k, &cb);
        cb.reqs[s].stat_names = stat_names; /* cb is on the stack */
        shards[s] = b->shards[s];
    }
    b->prep = (pending_t){.reqs = cb.reqs, .shards = shards, .n = b->n_shards,
                          .ids = cb.ids, .vals = cb.vals, .lens = cb.lens, .n_vals = k,
                          .timers = cb.timers};
    free(ents);
    free(start);
}

static void pending_free(pending_t *p) {
    for (int s = 0; p->outs && s < p->n; s++) shard_out_free(&p->outs[s]);
    free(p->outs);
    free(p->loads);
    for (size_t i = 0; i < p->n_vals; i++) free((void *)p->vals[i]);
    free(p->ids);
    free(p->vals);
    free(p->lens);
    free(p->timers);
    free(p->reqs);
    free(p->shards);
    memset(p, 0, sizeof(*p));
}

/* An entry leaves memory: what closing its journey will count is kept
 * instead (its record shadowed while it was in memory is replaced), if it is
 * open and counted (a version 1 journey is counted whole at its close). Its
 * journey is as committed (or in flight). */
static void keep_close(batch_t *b, const entry_t *e) {
    const journey_t *j = e->j;
    if (e->state == ENT_UNKNOWN) return; /* never read: its record, if any, holds */
    if (e->state == ENT_JOURNEY && j->status == JOURNEY_OPEN && !j->pending && j->stored_deadline >= 0 &&
        (j->mseg[0] || j->phase < 0)) {
        funnel_close_t fc;
        funnel_close_of(j, b->cfg, &fc);
        if (closes_put(b->closes, e->sh, e->id, e->hash, j->stored_deadline, &fc)) return;
    }
    closes_del(b->closes, e->sh, e->id, e->hash);
}

/* After a commit is sent, keep only the entries the batch touched: they
 * hold exactly what that commit writes, so the next batch need not load
 * them. The rest is dropped, which bounds the table; the close of each
 * open journey dropped is kept (keep_close()). */
static void table_keep_current(batch_t *b) {
    size_t n = 0, mask = b->cap_tab - 1;
    for (size_t i = 0; i < b->n_tab; i++) {
        entry_t *e = &b->tab[b->used[i]];
        /* dirty ones too: their commit is in flight, Redis may not have them yet */
        if ((e->epoch != b->epoch && !e->dirty) || e->state == ENT_UNKNOWN) {
            keep_close(b, e);
            entry_drop(e);
            continue;
        }
        size_t k = e->hash & mask;
        while (b->tab2[k].sh) k = (k + 1) & mask;
        b->tab2[k] = *e;           /* moves the journey */
        b->tab2[k].dirty = 0;
        b->tab2[k].cand = 0;
        b->tab2[k].head = 0;
        b->tab2[k].closed = 0;
        b->used2[n++] = k;
        e->sh = NULL;
        e->j = NULL;
    }
    entry_t *t = b->tab;
    size_t *u = b->used;
    b->tab = b->tab2;
    b->used = b->used2;
    b->tab2 = t;
    b->used2 = u;
    b->n_tab = n;
}

static void batch_clear(batch_t *b) {
    rcs_clear(b);
    for (int i = 0; i < b->n_items; i++)
        if (b->items[i].handoff) {
            journey_reset(b->items[i].handoff);
            free(b->items[i].handoff);
            b->items[i].handoff = NULL;
        }
    for (int s = 0; s < b->n_shards; s++) {
        shard_t *sh = b->shards[s];
        sh->batch_last = -1;
        sh->ibatch_last = -1;
        shard_out_free(&sh->out);
        shard_fields_free(sh);
        sh->in_batch = 0;
        memset(sh->stats, 0, sizeof(sh->stats));
        funnel_delta_clear(&sh->fd);
        sat_strs_free(&sh->sat_names);
        sat_strs_free(&sh->sat_vals);
        if (sh->sat_checkpoint) sat_strs_free(&sh->sat_gone);
        sh->sat_checkpoint = 0;
        sat_part_log_clear(&sh->sat);
    }
    b->n_shards = 0;
    b->n_items = 0;
    b->n_msgs = 0;
}

/* Drop the open batch and everything kept: its shards are consumed again
 * from Redis's offsets, and nothing in memory is trusted. */
static void drop_open(batch_t *b) {
    for (int s = 0; s < b->n_shards; s++) b->shards[s]->resync = 1;
    load_free(b);
    pending_free(&b->prep);
    batch_clear(b);
    table_clear(b);
    b->stale = b->pend.n > 0;
}

void batch_forget(batch_t *b) {
    table_clear(b);
    b->stale = b->pend.n > 0;
}

int batch_pending(const batch_t *b) { return b->pend.n > 0; }

store_status_t batch_prepare(batch_t *b, store_t *st, store_t *st_load, deadletter_t *dl,
                             char *errbuf, size_t errlen) {
    store_status_t rc;
    int more = 0;
    if (!b->n_shards) return STORE_OK;
    if (b->stale && (rc = batch_wait(b, st, errbuf, errlen)) != STORE_OK) return rc;
    b->stale = 0;
    b->epoch++;
    add_item_ids(b);
    rc = load_first(b, st_load, &more, errbuf, errlen);
    if (rc == STORE_OK) rc = load_more(b, st_load, more, errbuf, errlen);
    if (rc != STORE_OK) goto fail;
    apply_all(b);
    if (deadletter_sync(dl, b->cfg->shutdown_timeout_ms, errbuf, errlen) < 0) {
        rc = STORE_RETRY;
        goto fail;
    }
    commit_prepare(b);
    return STORE_OK;
fail:
    drop_open(b);
    return rc;
}

/* Produce a committed shard's records, as one group (forward.h). */
static void produce_outbox(batch_t *b, shard_t *sh, const shard_out_t *o) {
    forward_begin(b->fw, sh);
    for (size_t i = 0; i < o->n; i++) {
        int32_t part;
        const char *key, *val;
        size_t kl, vl;
        if (shard_out_parse(o->v[i], o->lens[i], &part, &key, &kl, &val, &vl) < 0) abort(); /* ours */
        forward_send(b->fw, part, key, kl, val, vl); /* a failure is reported with its group */
    }
    forward_end(b->fw);
}

/* A group of sh's records is answered: delivered, the next commit trims
 * them off its outbox; else the shard is read back and its outbox
 * produced again. */
static void on_group(void *owner, size_t n, size_t failed, void *opaque) {
    shard_t *sh = owner;
    if (failed) {
        sh->resync = 1;
        *(int *)opaque = 1;
    } else {
        sh->out_trim += n;
    }
}

store_status_t batch_wait(batch_t *b, store_t *st, char *errbuf, size_t errlen) {
    pending_t *p = &b->pend;
    if (!p->n) return STORE_OK;
    store_status_t rc = store_commit_recv(st, p->reqs, (size_t)p->n, errbuf, errlen);
    for (int s = 0; s < p->n; s++) {
        shard_t *sh = p->shards[s];
        if (rc != STORE_RETRY && p->reqs[s].status == STORE_OK) {
            sh->committed = p->reqs[s].new_offset;
            if (p->reqs[s].new_ioffset >= 0) sh->icommitted = p->reqs[s].new_ioffset;
            /* (a shard read back since has produced its whole outbox) */
            if (b->fw && p->outs[s].n && p->loads[s] == sh->loads) produce_outbox(b, sh, &p->outs[s]);
        } else {
            sh->resync = 1;
        }
    }
    int failed = 0;
    if (b->fw && forward_delivered(b->fw, on_group, &failed) && failed && rc == STORE_OK) {
        snprintf(errbuf, errlen, "internal topic: records not delivered (they stay in the outbox)");
        rc = STORE_RETRY;
    }
    if (rc == STORE_OK)
        for (int s = 0; s < p->n; s++) rc = p->reqs[s].status == STORE_FENCED ? STORE_FENCED : rc;
    pending_free(p);
    /* The prepared batch was built on top of this commit: only valid if it held. */
    if (rc != STORE_OK) drop_open(b);
    return rc;
}

store_status_t batch_send(batch_t *b, store_t *st, char *errbuf, size_t errlen) {
    pending_t *p = &b->prep;
    if (!p->n) return STORE_OK;
    for (int s = 0; s < p->n; s++) {
        shard_t *sh = p->shards[s];
        p->reqs[s].expected_offset = sh->committed;
        p->reqs[s].new_offset = next_offset(sh);
        p->reqs[s].expected_ioffset = sh->icommitted;
        p->reqs[s].new_ioffset = sh->ibatch_last >= 0 ? sh->ibatch_last + 1 : -1;
        p->reqs[s].out_trim = sh->out_trim;
    }
    store_status_t rc = store_commit_send(st, p->reqs, (size_t)p->n, errbuf, errlen);
    if (rc != STORE_OK) { /* never sent whole: nothing to wait for */
        drop_open(b);
        return rc;
    }
    for (size_t i = 0; i < p->n_vals; i++) free((void *)p->vals[i]);
    free(p->ids);
    free(p->vals);
    free(p->lens);
    free(p->timers);
    b->pend = (pending_t){.reqs = p->reqs, .shards = p->shards, .n = p->n};
    if (b->n_parts) { /* the records go out once the commit holds them */
        if (!(b->pend.outs = calloc((size_t)p->n, sizeof(*b->pend.outs))) ||
            !(b->pend.loads = calloc((size_t)p->n, sizeof(*b->pend.loads))))
            abort();
        for (int s = 0; s < p->n; s++) {
            b->pend.outs[s] = p->shards[s]->out;
            b->pend.loads[s] = p->shards[s]->loads;
            memset(&p->shards[s]->out, 0, sizeof(p->shards[s]->out));
            p->shards[s]->out_trim = 0; /* (lost if the commit fails: the outbox is read back then) */
        }
    }
    for (int s = 0; s < p->n; s++) { /* nothing pending may point into the batch */
        b->pend.reqs[s].ids = NULL;
        b->pend.reqs[s].vals = NULL;
        b->pend.reqs[s].val_lens = NULL;
        b->pend.reqs[s].stat_deltas = NULL;
        b->pend.reqs[s].stat_names = NULL;
        b->pend.reqs[s].timers = NULL;
        b->pend.reqs[s].metric_names = NULL;
        b->pend.reqs[s].metric_values = NULL;
        b->pend.reqs[s].sat_names = b->pend.reqs[s].sat_values = b->pend.reqs[s].sat_gone = NULL;
        b->pend.reqs[s].sat_log = NULL;
        b->pend.reqs[s].field_names = NULL;
        b->pend.reqs[s].field_values = NULL;
        b->pend.reqs[s].out = NULL;
        b->pend.reqs[s].out_lens = NULL;
    }
    memset(p, 0, sizeof(*p));
    table_keep_current(b);
    batch_clear(b);
    return STORE_OK;
}

store_status_t batch_commit(batch_t *b, store_t *st, store_t *st_load, deadletter_t *dl,
                            char *errbuf, size_t errlen) {
    store_status_t rc = batch_prepare(b, st, st_load, dl, errbuf, errlen);
    store_status_t rc2 = batch_wait(b, st, errbuf, errlen);
    if (rc == STORE_OK) rc = rc2;
    if (rc == STORE_OK) rc = batch_send(b, st, errbuf, errlen);
    rc2 = batch_wait(b, st, errbuf, errlen);
    return rc != STORE_OK ? rc : rc2;
}
