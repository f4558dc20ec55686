/*
 * daemon.c -- the journeyd main loop (like Redis's server.c: owns the
 * handles, runs the cycle, handles signals between cycles).
 *
 * Cycle: collect up to processing.batch_max_events messages or wait at most
 * processing.batch_max_time, hand them to the batch (decode, classify,
 * dead-letter), then the batch loads, applies and commits every shard
 * atomically with its offset, pipelined so that Redis runs one batch's
 * commit while the next batch is consumed (batch.c), and the committed
 * offsets are stored in the consumer so that auto-commit makes the group's
 * lag visible to Kafka tools.
 *
 * Offsets: Redis is the source of truth. On every assignment each
 * partition starts at the offset stored in Redis with its journeys (from the
 * beginning if there is none), never at the group's Kafka offset. After a
 * failed or fenced commit the shard is re-read from Redis and the consumer
 * seeks there, so an event is applied exactly once whatever fails when.
 *
 * Identity stitching across partitions (input.partitioner, stitch.h): the
 * internal topic is created co-partitioned with the first input topic and
 * consumed by the same group with the range assignor, so partition p of
 * both belongs to one shard, with two offsets in Redis committed together;
 * the shard's outbox is produced again whenever the shard is read back from
 * Redis, and an empty partition announces the wall clock when idle.
 *
 * Once a second the loop hands the HTTP server (http.c, its own thread) the
 * readiness verdict and the metrics page (health.c).
 *
 * Owns: the consumer, the dead-letter producer, the internal topic's producer, the metric publisher
 * (publish.c, a thread of its own), the HTTP server, the store, the batch, the
 * shard table and any reloaded configuration.
 */
#include "daemon.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "deadletter.h"
#include "forward.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "publish.h"
#include "shard.h"
#include "store.h"

volatile sig_atomic_t daemon_stop_requested = 0;
volatile sig_atomic_t daemon_reload_requested = 0;

#define MAX_SHARDS 4096

typedef struct ctx {
    config_t *boot_cfg;         /* borrowed: kafka, redis settings */
    config_t *live_cfg;         /* owned if != boot_cfg: rules, limits */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    store_t *st;                /* commits */
    store_t *st_load;           /* loads, so they need not queue behind a commit */
    deadletter_t *dl;
    forward_t *fw;              /* the internal topic's producer (stitching only) */
    int32_t n_parts;            /* the first input topic's partitions; 0: no stitching */
    publish_t *pub;             /* the metric topic's thread */
    http_t *http;               /* health and metrics over HTTP, NULL if http.port is 0 */
    prom_t *prom;               /* its page */
    health_t health;            /* what the page and /readyz are made of */
    int64_t next_health_ms;
    batch_t *batch;
    shard_t *shards[MAX_SHARDS];
    int n_shards;
    uint64_t consumed, batches, failures;
    int64_t us_collect, us_prepare, us_wait, us_send; /* where the loop's time goes */
    int64_t retry_at_ms;        /* next try to resync shards from Redis */
    int backoff_ms;
} ctx_t;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !daemon_stop_requested) {}
}

/* ---- shards ------------------------------------------------------------ */

/* A partition of the internal topic belongs to the shard of the same
 * partition of the first input topic (stitch.h). */
static int is_internal(const ctx_t *c, const char *topic) {
    return c->n_parts && !strcmp(topic, c->boot_cfg->internal_topic);
}

static shard_t *shard_find(ctx_t *c, const char *topic, int32_t partition) {
    if (is_internal(c, topic)) topic = c->boot_cfg->topics[0];
    for (int i = 0; i < c->n_shards; i++)
        if (c->shards[i]->partition == partition && !strcmp(c->shards[i]->topic_buf, topic))
            return c->shards[i];
    return NULL;
}

static shard_t *shard_add(ctx_t *c, const char *topic, int32_t partition, int *added) {
    shard_t *sh = shard_find(c, topic, partition);
    *added = !sh;
    if (sh) return sh;
    if (is_internal(c, topic)) topic = c->boot_cfg->topics[0];
    if (c->n_shards == MAX_SHARDS || !(sh = calloc(1, sizeof(*sh)))) return NULL;
    snprintf(sh->topic_buf, sizeof(sh->topic_buf), "%s", topic);
    sh->topic = sh->topic_buf;
    snprintf(sh->name, sizeof(sh->name), "%s:%d", topic, (int)partition);
    sh->partition = partition;
    sh->committed = sh->next = -1;
    sh->batch_last = -1;
    sh->icommitted = sh->inext = sh->ibatch_last = -1;
    sh->home = c->n_parts && !strcmp(topic, c->boot_cfg->topics[0]);
    sh->next_due = INT64_MIN;
    c->shards[c->n_shards++] = sh;
    return sh;
}

static void shard_remove(ctx_t *c, const char *topic, int32_t partition) {
    if (is_internal(c, topic)) topic = c->boot_cfg->topics[0];
    for (int i = 0; i < c->n_shards; i++) {
        if (c->shards[i]->partition != partition || strcmp(c->shards[i]->topic_buf, topic)) continue;
        forward_forget(c->fw, c->shards[i]); /* (its next owner produces its outbox again) */
        shard_release(c->shards[i]);
        free(c->shards[i]);
        c->shards[i] = c->shards[--c->n_shards];
        return;
    }
}

/* Next back-off step: doubling, capped by processing.retry_backoff_max. */
static int next_backoff(ctx_t *c, const char *what, const char *err) {
    c->failures++;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 100;
    if (c->backoff_ms > c->boot_cfg->retry_backoff_max_ms) c->backoff_ms = c->boot_cfg->retry_backoff_max_ms;
    log_warn("retrying", "what=%s backoff_ms=%d error=\"%s\"", what, c->backoff_ms, err);
    return c->backoff_ms;
}

/* Back off after a failed batch: wait, reconnect, forget what is in memory. */
static void backoff(ctx_t *c, const char *what, const char *err) {
    sleep_ms(next_backoff(c, what, err));
    char e2[256];
    if (store_reconnect(c->st, e2, sizeof(e2)) != STORE_OK ||
        store_reconnect(c->st_load, e2, sizeof(e2)) != STORE_OK)
        log_warn("redis reconnect failed", "error=\"%s\"", e2);
    batch_forget(c->batch); /* whatever was in flight, memory may not match Redis */
}

/* Read the shard's offset from Redis: one try. On failure the shard stays
 * flagged for resync and resync_shards() tries again later, while the loop
 * keeps polling the consumer (a consumer that stops polling for
 * max.poll.interval.ms leaves its group). */
typedef struct learning {
    shard_t *sh;
    const config_t *cfg;
    forward_t *fw;
    size_t n_out;               /* outbox records produced again */
} learning_t;

static void learn_field(const char *field, int64_t value, void *opaque) {
    learning_t *l = opaque;
    if (!strcmp(field, "out_seq")) l->sh->out_seq = value;
    else if (!strcmp(field, "iclock")) l->sh->iclock = value;
    else if (!strncmp(field, "in|", 3)) shard_mark_set(l->sh, field + 3, value, 0);
    else if (!strncmp(field, "ck|", 3)) shard_mark_clock(l->sh, shard_mark_set(l->sh, field + 3, 0, 0), value, 0);
    else funnel_learn(&l->sh->reg, &l->sh->totals, l->cfg, field, value);
}

/* A record of the shard's outbox, produced again (stitch.h). */
static void learn_out(const char *rec, size_t len, void *opaque) {
    learning_t *l = opaque;
    int32_t p;
    const char *key, *val;
    size_t kl, vl;
    if (shard_out_parse(rec, len, &p, &key, &kl, &val, &vl) < 0) {
        log_warn("unreadable outbox record ignored", "shard=%s", l->sh->name);
        return;
    }
    forward_send(l->fw, p, key, kl, val, vl);
    l->n_out++;
}

static void learn_sat(const char *field, const char *value, void *opaque) {
    learning_t *l = opaque;
    sat_windows_t w;
    sat_windows_init(&w, l->cfg->sat_windows_ms, l->cfg->n_sat_windows, l->cfg->sat_buckets);
    if (sat_part_learn(&l->sh->sat, &w, field, value) < 0)
        log_warn("unreadable satisfaction field ignored", "shard=%s field=\"%s\"", l->sh->name, field);
}

/* The answer log on top of the counts; its records are counted as changed,
 * so the next checkpoint writes them into the counts. */
static void learn_sat_log(const char *log, size_t len, void *opaque) {
    learning_t *l = opaque;
    sat_windows_t w;
    sat_windows_init(&w, l->cfg->sat_windows_ms, l->cfg->n_sat_windows, l->cfg->sat_buckets);
    if (sat_part_replay(&l->sh->sat, &w, log, len) < 0)
        log_warn("unreadable satisfaction log record: the rest of the log is ignored", "shard=%s", l->sh->name);
    l->sh->sat_log_bytes = len;
}

static int shard_load_offset(ctx_t *c, shard_t *sh) {
    char err[256];
    learning_t l = {sh, c->live_cfg, c->fw, 0};
    funnel_reg_free(&sh->reg);
    funnel_delta_free(&sh->totals);
    sat_part_free(&sh->sat);
    sat_strs_free(&sh->sat_gone);
    shard_marks_free(sh);
    sh->out_seq = 0;
    sh->out_trim = 0;
    sh->loads++;
    sh->low = 0;
    sh->iclock = 0;
    sh->announced = INT64_MIN; /* announce at the first commit */
    /* the outbox is produced again, as one group (forward.h) in place of
     * any still in flight: its records may not all have been delivered; the
     * destinations' marks drop those that were */
    forward_forget(c->fw, sh);
    if (c->fw) forward_begin(c->fw, sh);
    int ok = store_shard_open(c->st, sh->name, &sh->committed, &sh->icommitted, c->fw ? learn_out : NULL, &l, err,
                              sizeof(err)) == STORE_OK;
    if (c->fw) forward_end(c->fw);
    if (ok && store_shard_state(c->st, sh->name, &sh->clock, &sh->closed_through, learn_field, &l, err,
                                sizeof(err)) == STORE_OK &&
        store_shard_sat(c->st, sh->name, learn_sat, learn_sat_log, &l, NULL, 0, err, sizeof(err)) == STORE_OK) {
        shard_low_update(sh, c->n_parts - 1);
        if (l.n_out) log_info("outbox produced again", "shard=%s records=%zu", sh->name, l.n_out);
        sh->sat_expired = sh->clock - c->live_cfg->allowed_lateness_ms;
        sh->funnel_expired = INT64_MIN; /* expire at the first commit: windows may have changed */
        c->backoff_ms = 0;
        sh->next_due = INT64_MIN; /* ask Redis for due timers on the next batch */
        sh->timers_more = 0;
        sh->wall_mark = now_ms(); /* time the daemon was away does not count as idle */
        sh->next = sh->committed;
        sh->inext = sh->icommitted;
        sh->resync = 0;
        return 0;
    }
    sh->resync = 1;
    c->retry_at_ms = now_ms() + next_backoff(c, "shard offset", err);
    if (store_reconnect(c->st, err, sizeof(err)) != STORE_OK)
        log_warn("redis reconnect failed", "error=\"%s\"", err);
    return -1;
}

static void pause_shard(ctx_t *c, shard_t *sh, int pause) {
    if (sh->paused == pause) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, sh->topic, sh->partition);
    if (sh->home) rd_kafka_topic_partition_list_add(l, c->boot_cfg->internal_topic, sh->partition);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, l) : rd_kafka_resume_partitions(c->rk, l);
    if (err) log_warn(pause ? "pause failed" : "resume failed", "shard=%s error=\"%s\"", sh->name, rd_kafka_err2str(err));
    else sh->paused = pause;
    rd_kafka_topic_partition_list_destroy(l);
}

static int64_t start_offset(const shard_t *sh) {
    return sh->committed >= 0 ? sh->committed : RD_KAFKA_OFFSET_BEGINNING;
}

static int64_t istart_offset(const shard_t *sh) {
    return sh->icommitted >= 0 ? sh->icommitted : RD_KAFKA_OFFSET_BEGINNING;
}

/* ---- the batch ------------------------------------------------------------ */

/* Store committed offsets in the consumer; auto-commit sends them to Kafka. */
static void store_kafka_offsets(ctx_t *c) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2 * c->n_shards);
    for (int i = 0; i < c->n_shards; i++) {
        if (c->shards[i]->committed >= 0)
            rd_kafka_topic_partition_list_add(l, c->shards[i]->topic, c->shards[i]->partition)->offset =
                c->shards[i]->committed;
        if (c->shards[i]->home && c->shards[i]->icommitted >= 0)
            rd_kafka_topic_partition_list_add(l, c->boot_cfg->internal_topic, c->shards[i]->partition)->offset =
                c->shards[i]->icommitted;
    }
    if (l->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
        if (err) log_debug("offsets store", "error=\"%s\"", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void after_failure(ctx_t *c, store_status_t rc, const char *what, const char *err) {
    if (rc == STORE_FATAL) log_error("batch failed", "error=\"%s\"", err);
    if (rc == STORE_FENCED) return; /* the fenced shards resync; nothing else is wrong */
    backoff(c, what, err);
}

/* Everything consumed so far, committed synchronously: nothing stays in
 * flight (rebalance, shutdown). */
static void flush_batch(ctx_t *c) {
    char err[512];
    if (!batch_open(c->batch) && !batch_pending(c->batch)) return;
    store_status_t rc = batch_commit(c->batch, c->st, c->st_load, c->dl, err, sizeof(err));
    c->batches++;
    store_kafka_offsets(c);
    if (rc == STORE_OK) c->backoff_ms = 0;
    else after_failure(c, rc, "batch commit", err);
}

/* One pipelined cycle: while Redis runs the previous batch's commit, this
 * batch is loaded (on the other connection), applied and packed; then the
 * previous commit's result is read and this batch's commit sent. */
static void cycle(ctx_t *c) {
    char err[512];
    store_status_t rc = STORE_OK, rc2;
    int64_t t0 = now_us(), t1, t2;
    int work = batch_open(c->batch) || batch_pending(c->batch);
    int pending = batch_pending(c->batch);
    if (batch_open(c->batch)) {
        rc = batch_prepare(c->batch, c->st, c->st_load, c->dl, err, sizeof(err));
        c->batches++;
        prom_hist_observe(&c->health.batch_s, (double)(now_us() - t0) / 1e6);
        for (int i = 0; rc == STORE_OK && i < c->n_shards; i++) /* only the batch's shards have any */
            for (int k = 0; k < STAT__COUNT; k++) c->health.outcomes[k] += c->shards[i]->stats[k];
    }
    t1 = now_us();
    rc2 = batch_wait(c->batch, c->st, err, sizeof(err));
    store_kafka_offsets(c);
    t2 = now_us();
    if (pending) prom_hist_observe(&c->health.commit_s, (double)(t2 - t1) / 1e6);
    if (rc == STORE_OK) rc = rc2;
    if (rc == STORE_OK) rc = batch_send(c->batch, c->st, err, sizeof(err));
    c->us_prepare += t1 - t0;
    c->us_wait += t2 - t1;
    c->us_send += now_us() - t2;
    if (rc != STORE_OK) after_failure(c, rc, "batch", err);
    else if (work) c->backoff_ms = 0;
}

/* Seek every shard flagged for resync to its offset in Redis. Until that
 * works the shard is paused (its messages would be dropped anyway); the
 * retries follow the back-off without blocking the loop. */
static void resync_shards(ctx_t *c) {
    for (int i = 0; i < c->n_shards; i++) {
        shard_t *sh = c->shards[i];
        if (!sh->resync) continue;
        batch_forget(c->batch);
        pause_shard(c, sh, 1);
        if (now_ms() < c->retry_at_ms || shard_load_offset(c, sh) < 0) continue;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(l, sh->topic, sh->partition)->offset = start_offset(sh);
        if (sh->home)
            rd_kafka_topic_partition_list_add(l, c->boot_cfg->internal_topic, sh->partition)->offset =
                istart_offset(sh);
        rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 5000);
        if (e) {
            log_warn("seek failed", "shard=%s error=\"%s\"", sh->name, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            sh->resync = 1;
        } else {
            pause_shard(c, sh, 0);
            log_info("shard resynced from redis", "shard=%s offset=%lld", sh->name,
                     (long long)sh->committed);
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* ---- rebalance -------------------------------------------------------------- */

/* The daemon that owns the first partition of the first input topic
 * publishes the metrics (publish.h). */
static void elect(ctx_t *c) {
    if (c->pub) publish_set_leader(c->pub, shard_find(c, c->boot_cfg->topics[0], 0) != NULL);
}

static void on_assign(ctx_t *c, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int incremental) {
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        int added, internal = is_internal(c, p->topic);
        shard_t *sh = shard_add(c, p->topic, p->partition, &added);
        if (!sh) continue;
        if (added && shard_load_offset(c, sh) < 0) {
            /* Redis is away: start nowhere in particular; nothing of this
             * shard is taken until resync_shards() has sought to Redis's offset */
            p->offset = RD_KAFKA_OFFSET_END;
            continue;
        }
        if (sh->resync) {
            p->offset = RD_KAFKA_OFFSET_END;
            continue;
        }
        p->offset = internal ? istart_offset(sh) : start_offset(sh);
        log_info("partition assigned", "shard=%s topic=%s offset=%lld", sh->name, p->topic, (long long)p->offset);
    }
    rd_kafka_error_t *e = incremental ? rd_kafka_incremental_assign(rk, parts) : NULL;
    if (!incremental) {
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
        if (err) log_error("assign failed", "error=\"%s\"", rd_kafka_err2str(err));
    }
    if (e) {
        log_error("incremental assign failed", "error=\"%s\"", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    elect(c);
}

static void on_revoke(ctx_t *c, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int incremental) {
    flush_batch(c); /* nothing of a revoked shard may stay in memory */
    batch_forget(c->batch);
    for (int i = 0; i < parts->cnt; i++) {
        log_info("partition revoked", "topic=%s partition=%d", parts->elems[i].topic,
                 (int)parts->elems[i].partition);
        shard_remove(c, parts->elems[i].topic, parts->elems[i].partition);
    }
    if (incremental) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e) rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
    elect(c);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    ctx_t *c = opaque;
    int incremental = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(c, rk, parts, incremental);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(c, rk, parts, incremental);
    } else {
        log_error("rebalance error", "error=\"%s\"", rd_kafka_err2str(err));
        on_revoke(c, rk, parts, incremental);
    }
}

/* ---- set-up ----------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK) return 0;
    /* librdkafka's message may quote the value: never for a secret */
    log_error("kafka configuration refused", "key=%s error=\"%s\"", k,
              config_is_secret(k) ? "invalid value" : err);
    return -1;
}

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    log_msg(level <= 3 ? LOG_ERROR : level <= 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG,
            "librdkafka", "facility=%s detail=\"%s\"", fac, buf);
}

static int consumer_open(ctx_t *c) {
    const config_t *cfg = c->boot_cfg;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Our defaults, before the user's kafka.*: librdkafka's 1 MiB per
     * partition and fetch starves the loop (measured: 4.3 s instead of
     * 2.6 s for 1,000,000 events on 12 partitions); a 32 MiB local queue
     * keeps the prefetch, and so the memory, bounded. */
    if (conf_set(conf, "max.partition.fetch.bytes", "8388608") < 0 ||
        conf_set(conf, "queued.max.messages.kbytes", "32768") < 0)
        goto fail;
    for (int i = 0; i < cfg->n_kafka; i++)
        if (conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].value) < 0) goto fail;
    /* partition p of the internal topic must go with partition p of the
     * first input topic (stitch.h): range keeps equal partitions together */
    if (c->n_parts && conf_set(conf, "partition.assignment.strategy", "range") < 0) goto fail;
    if (conf_set(conf, "group.id", cfg->group_id) < 0 ||
        conf_set(conf, "enable.auto.offset.store", "false") < 0 ||
        conf_set(conf, "enable.auto.commit", "true") < 0 ||
        conf_set(conf, "enable.partition.eof", "false") < 0 ||
        conf_set(conf, "auto.offset.reset", "earliest") < 0)
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!c->rk) {
        log_error("kafka consumer", "error=\"%s\"", err);
        goto fail;
    }
    conf = NULL; /* owned by rk */
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(cfg->n_topics + 1);
    for (int i = 0; i < cfg->n_topics; i++)
        rd_kafka_topic_partition_list_add(topics, cfg->topics[i], RD_KAFKA_PARTITION_UA);
    if (c->n_parts) rd_kafka_topic_partition_list_add(topics, cfg->internal_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        log_error("kafka subscribe", "error=\"%s\"", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    return -1;
}

/* ---- reload ------------------------------------------------------------------ */

static int same_phases(const config_t *a, const config_t *b) {
    if (a->n_phases != b->n_phases) return 0;
    for (int i = 0; i < a->n_phases; i++)
        if (strcmp(a->phases[i].name, b->phases[i].name) || a->phases[i].timeout_ms != b->phases[i].timeout_ms)
            return 0; /* stored timers were set with the old timeouts */
    return 1;
}

/* The satisfaction counts and the funnel counters in memory are bucketed
 * by their windows. */
static int same_windows(const config_t *a, const config_t *b) {
    if (a->n_sat_windows != b->n_sat_windows || a->sat_buckets != b->sat_buckets ||
        a->n_funnel_windows != b->n_funnel_windows || a->funnel_buckets != b->funnel_buckets)
        return 0;
    for (int i = 0; i < a->n_sat_windows; i++)
        if (a->sat_windows_ms[i] != b->sat_windows_ms[i]) return 0;
    for (int i = 0; i < a->n_funnel_windows; i++)
        if (a->funnel_windows_ms[i] != b->funnel_windows_ms[i]) return 0;
    return 1;
}

/* SIGHUP: swap in the new rules only if the whole new file validates. */
static void reload(ctx_t *c) {
    char err[512];
    config_t *n = config_load(c->boot_cfg->path, err, sizeof(err));
    if (!n) {
        log_error("reload refused, keeping the running configuration", "error=\"%s\"", err);
        return;
    }
    if (!same_phases(n, c->boot_cfg) || n->limits.max_message_bytes > c->boot_cfg->limits.max_message_bytes ||
        n->batch_max_events > c->boot_cfg->batch_max_events || !same_windows(n, c->boot_cfg)) {
        log_error("reload refused, keeping the running configuration",
                  "error=\"phases or their timeouts, satisfaction or funnel windows, input.max_message_bytes or "
                  "processing.batch_max_events changed: restart required\"");
        config_free(n);
        return;
    }
    batch_set_config(c->batch, n);
    if (c->live_cfg != c->boot_cfg) config_free(c->live_cfg);
    c->live_cfg = n;
    log_info("configuration reloaded", "path=%s rules=%d", n->path, n->n_rules);
}

/* ---- the loop ------------------------------------------------------------------ */

static void take_message(ctx_t *c, rd_kafka_message_t *m, int64_t now) {
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
        return;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    shard_t *sh = shard_find(c, topic, m->partition);
    if (sh && is_internal(c, topic)) {
        if (sh->resync || (sh->inext >= 0 && m->offset < sh->inext)) return;
        sh->inext = m->offset + 1;
        batch_add_internal(c->batch, sh, m, c->dl);
        return;
    }
    /* Not ours (any more), waiting for a seek, or already committed: skip. */
    if (!sh || sh->resync || (sh->next >= 0 && m->offset < sh->next)) return;
    sh->next = m->offset + 1;
    sh->wall_mark = now;
    c->consumed++;
    batch_add(c->batch, sh, m, c->dl);
}

/* Whether some shard has due timers left over: the next batch should not
 * wait for messages. */
static int timers_pending(const ctx_t *c) {
    for (int i = 0; i < c->n_shards; i++)
        if (c->shards[i]->timers_more) return 1;
    return 0;
}

/* Collect one batch: until it is full or batch_max_time has passed (with
 * due timers left over, only what is there already). */
static void collect(ctx_t *c) {
    enum { CHUNK = 1024 };
    rd_kafka_message_t *msgs[CHUNK];
    const config_t *cfg = c->live_cfg;
    int64_t deadline = now_ms() + (timers_pending(c) ? 0 : cfg->batch_max_ms);
    for (int first = 1; !daemon_stop_requested; first = 0) {
        int room = cfg->batch_max_events - batch_size(c->batch);
        int64_t left = deadline - now_ms();
        if (room <= 0 || (left <= 0 && !first)) break;
        ssize_t n = rd_kafka_consume_batch_queue(c->q, left > 0 ? (int)left : 0, msgs,
                                                 room < CHUNK ? (size_t)room : CHUNK);
        if (n <= 0 && left <= 0) break;
        int64_t now = n > 0 ? now_ms() : 0;
        for (ssize_t i = 0; i < n; i++) {
            take_message(c, msgs[i], now);
            rd_kafka_message_destroy(msgs[i]);
        }
    }
}

/* Whether the consumer has read everything the partition holds (by the
 * high watermark of the last fetch; no broker round trip). */
static int caught_up(ctx_t *c, const shard_t *sh) {
    int64_t lo, hi;
    if (sh->next < 0 || rd_kafka_get_watermark_offsets(c->rk, sh->topic, sh->partition, &lo, &hi))
        return 0;
    return hi >= 0 && sh->next >= hi;
}

/* Event time of idle partitions (SPEC §5): a shard that is caught up and has
 * seen no message for processing.idle_advance advances its clock by the
 * wall-clock time that passed, so timeouts fire when traffic stops. During a
 * backlog, wall clock says nothing about event time: it does not count. A
 * shard whose due timers did not all fit in the last batch gets a batch too. */
static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A home partition with nothing in it, stored or to read: with stitching
 * it announces the wall clock, so the others need not wait for it. */
static int empty_home(ctx_t *c, const shard_t *sh) {
    int64_t lo, hi;
    return c->n_parts && sh->home && sh->committed < 0 && sh->icommitted < 0 && sh->clock < wall_ms() - 1000 &&
           !rd_kafka_get_watermark_offsets(c->rk, sh->topic, sh->partition, &lo, &hi) && hi >= 0 && lo == hi;
}

static void idle_ticks(ctx_t *c) {
    int64_t now = now_ms();
    for (int i = 0; i < c->n_shards; i++) {
        shard_t *sh = c->shards[i];
        if (!sh->resync && !sh->paused && now - sh->wall_mark >= c->live_cfg->idle_advance_ms && empty_home(c, sh)) {
            batch_tick(c->batch, sh, wall_ms());
            sh->wall_mark = now;
            continue;
        }
        if (sh->resync || sh->paused || (sh->committed < 0 && sh->icommitted < 0)) continue;
        if (now - sh->wall_mark >= c->live_cfg->idle_advance_ms) {
            if (caught_up(c, sh)) batch_tick(c->batch, sh, sh->clock + (now - sh->wall_mark));
            sh->wall_mark = now;
        } else if (sh->timers_more) {
            batch_tick(c->batch, sh, sh->clock);
        }
    }
}

static void log_progress(ctx_t *c, int64_t *last_ms, uint64_t *last_consumed) {
    int64_t t = now_ms();
    if (t - *last_ms < 10000) return;
    uint64_t rt, cmds, rt2, cmds2, dl_ok, dl_fail;
    store_counters(c->st, &rt, &cmds);
    store_counters(c->st_load, &rt2, &cmds2);
    rt += rt2;
    deadletter_counters(c->dl, &dl_ok, &dl_fail);
    size_t rec_bytes;
    uint64_t rec_used;
    size_t recs = batch_close_records(c->batch, &rec_bytes, &rec_used);
    log_info("progress", "consumed=%llu rate=%.0f/s batches=%llu shards=%d redis_round_trips=%llu "
             "deadlettered=%llu failures=%llu close_records=%zu close_records_bytes=%zu "
             "closed_by_record=%llu",
             (unsigned long long)c->consumed,
             (double)(c->consumed - *last_consumed) * 1000.0 / (double)(t - *last_ms),
             (unsigned long long)c->batches, c->n_shards, (unsigned long long)rt,
             (unsigned long long)dl_ok, (unsigned long long)c->failures, recs, rec_bytes,
             (unsigned long long)rec_used);
    *last_ms = t;
    *last_consumed = c->consumed;
}

/* ---- health and metrics over HTTP (health.h), once a second ----------------- */

static void health_refresh(ctx_t *c) {
    health_t *h = &c->health;
    health_shard_t sh[MAX_SHARDS];
    char err[256], reason[HTTP_REASON_MAX];
    int64_t now = now_ms();
    if (!c->http || now < c->next_health_ms) return;
    c->next_health_ms = now + 1000;
    h->kafka_ok = c->n_shards > 0;
    h->redis_ok = c->backoff_ms == 0 && store_ping(c->st_load, err, sizeof(err)) == STORE_OK;
    if (!h->redis_ok) store_reconnect(c->st_load, err, sizeof(err));
    h->resyncing = 0;
    for (int i = 0; i < c->n_shards; i++) {
        int64_t lo, hi;
        h->resyncing += c->shards[i]->resync;
        sh[i].name = c->shards[i]->name;
        sh[i].lag = c->shards[i]->next >= 0 && !rd_kafka_get_watermark_offsets(c->rk, c->shards[i]->topic,
                                                                              c->shards[i]->partition, &lo, &hi) &&
                    hi >= 0 ? hi - c->shards[i]->next : -1;
    }
    h->shards = sh;
    h->n_shards = c->n_shards;
    h->consumed = c->consumed;
    h->batches = c->batches;
    h->failures = c->failures;
    publish_get_stats(c->pub, &h->pub);
    size_t jlen, len;
    char *journey = publish_prom(c->pub, &jlen);
    char *page = health_render(h, journey, jlen, c->prom, &len, err, sizeof(err));
    if (!page || http_set_metrics(c->http, page, len, err, sizeof(err)) < 0)
        log_warn("metrics page not rendered", "error=\"%s\"", err);
    free(page);
    free(journey);
    int ready = health_ready(h, reason, sizeof(reason));
    http_set_ready(c->http, ready, reason);
    h->shards = NULL;
}

static void shutdown_all(ctx_t *c) {
    /* Bounded: if anything below hangs, SIGALRM ends the process; state is
     * committed atomically, so the next start resumes where Redis says. */
    alarm((unsigned)(c->boot_cfg->shutdown_timeout_ms + 999) / 1000 + 1);
    log_info("shutting down", "consumed=%llu", (unsigned long long)c->consumed);
    /* before the revoke of closing the consumer forgets them */
    size_t rec_bytes = 0;
    uint64_t rec_used = 0;
    size_t recs = c->batch ? batch_close_records(c->batch, &rec_bytes, &rec_used) : 0;
    size_t sat_series = 0, sat_buckets = 0, sat_bytes = 0;
    for (int i = 0; i < c->n_shards; i++) {
        sat_series += c->shards[i]->sat.n;
        sat_buckets += sat_part_buckets(&c->shards[i]->sat);
        sat_bytes += sat_part_bytes(&c->shards[i]->sat);
    }
    if (c->rk) {
        if (c->st && c->batch) flush_batch(c);
        rd_kafka_commit(c->rk, NULL, 0);
        rd_kafka_consumer_close(c->rk);
        if (c->q) rd_kafka_queue_destroy(c->q);
        rd_kafka_destroy(c->rk);
    }
    http_stop(c->http);
    prom_free(c->prom);
    deadletter_close(c->dl, c->boot_cfg->shutdown_timeout_ms / 2);
    forward_close(c->fw, c->boot_cfg->shutdown_timeout_ms / 4);
    publish_stop(c->pub, c->boot_cfg->shutdown_timeout_ms / 4);
    uint64_t rt = 0, cmds = 0, rt2 = 0, cmds2 = 0;
    if (c->st) store_counters(c->st, &rt, &cmds);
    if (c->st_load) store_counters(c->st_load, &rt2, &cmds2);
    rt += rt2;
    cmds += cmds2;
    batch_free(c->batch);
    store_close(c->st);
    store_close(c->st_load);
    for (int i = 0; i < c->n_shards; i++) {
        shard_release(c->shards[i]);
        free(c->shards[i]);
    }
    if (c->live_cfg != c->boot_cfg) config_free(c->live_cfg);
    log_info("stopped", "consumed=%llu batches=%llu redis_round_trips=%llu redis_commands=%llu "
             "close_records=%zu close_records_bytes=%zu closed_by_record=%llu "
             "satisfaction_series=%zu satisfaction_buckets=%zu satisfaction_bytes=%zu "
             "ms_collect=%lld ms_prepare=%lld ms_wait=%lld ms_send=%lld",
             (unsigned long long)c->consumed, (unsigned long long)c->batches,
             (unsigned long long)rt, (unsigned long long)cmds, recs, rec_bytes,
             (unsigned long long)rec_used, sat_series, sat_buckets, sat_bytes, (long long)c->us_collect / 1000,
             (long long)c->us_prepare / 1000, (long long)c->us_wait / 1000, (long long)c->us_send / 1000);
}

int daemon_run(config_t *cfg) {
    static ctx_t c; /* static: large, and the rebalance callback points at it */
    char err[512];
    memset(&c, 0, sizeof(c));
    c.boot_cfg = c.live_cfg = cfg;
    int rc = 1;
    for (;;) {
        if (!c.st) c.st = store_open(cfg, err, sizeof(err));
        if (c.st && !c.st_load) c.st_load = store_open(cfg, err, sizeof(err));
        if (c.st && c.st_load) break;
        log_error("redis unavailable", "error=\"%s\"", err);
        if (daemon_stop_requested) goto out;
        sleep_ms(cfg->retry_backoff_max_ms);
    }
    if (!(c.dl = deadletter_open(cfg, err, sizeof(err)))) {
        log_error("dead-letter producer", "error=\"%s\"", err);
        goto out;
    }
    health_init(&c.health);
    if (cfg->http_port && !(c.http = http_start(cfg->http_bind, cfg->http_port, err, sizeof(err)))) {
        log_error("http server", "error=\"%s\"", err);
        goto out;
    }
    if (c.http && !(c.prom = prom_new(HTTP_METRICS_MAX))) abort();
    if (!(c.pub = publish_start(cfg, err, sizeof(err)))) {
        log_error("metric publisher", "error=\"%s\"", err);
        goto out;
    }
    if (cfg->partitioner != CFG_PART_NONE) {
        if (!(c.fw = forward_open(cfg, err, sizeof(err)))) {
            log_error("internal topic producer", "error=\"%s\"", err);
            goto out;
        }
        for (int r; (r = forward_prepare(c.fw, cfg, &c.n_parts, err, sizeof(err)));) {
            if (r < 0) {
                log_error("identity stitching across partitions cannot start", "error=\"%s\"", err);
                goto out;
            }
            log_warn("waiting for the input topic", "error=\"%s\"", err);
            if (daemon_stop_requested) goto out;
            sleep_ms(cfg->retry_backoff_max_ms);
        }
        log_info("identity stitching across partitions", "input_topic=%s partitions=%d internal_topic=%s",
                 cfg->topics[0], (int)c.n_parts, cfg->internal_topic);
    }
    if (!(c.batch = batch_new(cfg)) || consumer_open(&c) < 0) goto out;
    batch_set_stitching(c.batch, c.n_parts, c.fw);
    log_info("started", "topics=%d group=%s", cfg->n_topics, cfg->group_id);
    int64_t last_ms = now_ms();
    uint64_t last_consumed = 0;
    while (!daemon_stop_requested) {
        if (daemon_reload_requested) {
            daemon_reload_requested = 0;
            reload(&c);
        }
        resync_shards(&c);
        int64_t t0 = now_us();
        collect(&c);
        idle_ticks(&c);
        c.us_collect += now_us() - t0;
        cycle(&c);
        health_refresh(&c);
        log_progress(&c, &last_ms, &last_consumed);
    }
    rc = 0;
out:
    shutdown_all(&c);
    return rc;
}
