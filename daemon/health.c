/*
 * health.c -- the readiness verdict and the daemon's own Prometheus page
 * (see health.h).
 *
 * Ready means: the consumer has partitions, none of them waits to be re-read
 * from Redis, and Redis answered (the last batch and the last PING). Every
 * family is a journeyd_* name; the outcome counters are the per-partition
 * event counters (shard.h) this process has sent commits for, so a batch
 * replayed after a failed commit counts again here (the exactly-once
 * numbers are `journeyctl stats`).
 */
#include "health.h"

#include <stdlib.h>
#include <string.h>

static const double LATENCY_LE[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void health_init(health_t *h) {
    char err[64];
    memset(h, 0, sizeof(*h));
    size_t n = sizeof(LATENCY_LE) / sizeof(LATENCY_LE[0]);
    prom_hist_init(&h->batch_s, LATENCY_LE, n, err, sizeof(err)); /* constant bounds: cannot fail */
    prom_hist_init(&h->commit_s, LATENCY_LE, n, err, sizeof(err));
}

int health_ready(const health_t *h, char *reason, size_t cap) {
    const char *why = !h->kafka_ok ? "no partition assigned"
                      : !h->redis_ok ? "redis unavailable"
                      : h->resyncing ? "partitions being re-read from redis" : NULL;
    if (why) snprintf(reason, cap, "%s", why);
    return why == NULL;
}

static void counter(prom_t *p, const char *name, const char *help, uint64_t v) {
    prom_family(p, name, PROM_COUNTER, help);
    prom_sample(p, NULL, (double)v);
}

static void gauge(prom_t *p, const char *name, const char *help, double v) {
    prom_family(p, name, PROM_GAUGE, help);
    prom_sample(p, NULL, v);
}

static void daemon_families(const health_t *h, prom_t *p) {
    char reason[64];
    gauge(p, "journeyd_ready", "1 when ready (/readyz).", health_ready(h, reason, sizeof(reason)));
    counter(p, "journeyd_messages_consumed_total", "Messages taken from the input topics.", h->consumed);
    prom_family(p, "journeyd_events_total", PROM_COUNTER,
                "Events by outcome (applied, duplicate, late, deadletter, ...), as their batches were committed.");
    for (int i = 0; i < STAT__COUNT; i++)
        if (i != STAT_CONSUMED && strncmp(shard_stat_name(i), "deadletter.", 11))
            prom_sample(p, (const char *[]){"outcome", shard_stat_name(i), NULL}, (double)h->outcomes[i]);
    prom_family(p, "journeyd_deadlettered_total", PROM_COUNTER, "Events sent to the dead-letter topic, by reason.");
    for (int i = STAT_DL_REASON; i < STAT__COUNT; i++)
        prom_sample(p, (const char *[]){"reason", shard_stat_name(i) + 11, NULL}, (double)h->outcomes[i]);
    counter(p, "journeyd_batches_total", "Batches prepared and committed.", h->batches);
    counter(p, "journeyd_errors_total", "Failed batches (Redis or Kafka trouble) that were retried.", h->failures);
    prom_family(p, "journeyd_batch_seconds", PROM_HISTOGRAM, "Time to load, apply and pack one batch.");
    prom_histogram(p, NULL, &h->batch_s);
    prom_family(p, "journeyd_commit_wait_seconds", PROM_HISTOGRAM,
                "Time waiting for the previous batch's commit in Redis (the flush latency).");
    prom_histogram(p, NULL, &h->commit_s);
    prom_family(p, "journeyd_consumer_lag", PROM_GAUGE, "Messages behind the partition's high watermark.");
    for (int i = 0; i < h->n_shards; i++)
        if (h->shards[i].lag >= 0)
            prom_sample(p, (const char *[]){"partition", h->shards[i].name, NULL}, (double)h->shards[i].lag);
    gauge(p, "journeyd_partitions_assigned", "Input partitions this daemon owns.", h->n_shards);
    prom_family(p, "journeyd_metric_messages_total", PROM_COUNTER, "Metric topic messages, by outcome.");
    prom_sample(p, (const char *[]){"outcome", "produced", NULL}, (double)h->pub.produced);
    prom_sample(p, (const char *[]){"outcome", "delivered", NULL}, (double)h->pub.delivered);
    prom_sample(p, (const char *[]){"outcome", "failed", NULL}, (double)h->pub.failed);
    counter(p, "journeyd_metric_snapshot_errors_total", "Metric snapshots that could not be read from Redis.",
            h->pub.snapshot_errors);
    if (h->pub.last_ms)
        gauge(p, "journeyd_metric_last_published_seconds", "Wall clock of the last metric snapshot published.",
              (double)h->pub.last_ms / 1000.0);
    if (h->pub.last_ms && h->pub.complete_to != INT64_MIN)
        gauge(p, "journeyd_metric_complete_to_seconds", "Event time the last published snapshot is complete to.",
              (double)h->pub.complete_to / 1000.0);
}

char *health_render(const health_t *h, const char *journey, size_t journey_len, prom_t *p, size_t *len,
                    char *errbuf, size_t errlen) {
    const char *text;
    size_t n;
    prom_reset(p);
    daemon_families(h, p);
    if (prom_text(p, &text, &n, errbuf, errlen) < 0) return NULL;
    char *page = malloc(n + journey_len + 1);
    if (!page) abort();
    memcpy(page, text, n);
    if (journey_len) memcpy(page + n, journey, journey_len);
    *len = n + journey_len;
    return page;
}
