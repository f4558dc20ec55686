/*
 * health.h -- what journeyd says about itself over HTTP (issue #6): the
 * readiness verdict and the Prometheus page of the daemon's own metrics
 * (events by outcome, lag, batch and commit latency, errors, the metric
 * publisher), followed by the journey gauges of the publisher's last
 * snapshot (publish_prom()). The main loop fills a health_t and calls
 * health_render() once a second; http.c serves the result. Pure: no I/O.
 */
#ifndef JD_HEALTH_H
#define JD_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "prom.h"
#include "publish.h"
#include "shard.h"

typedef struct health_shard {
    const char *name;          /* "<topic>:<partition>" */
    int64_t lag;               /* messages behind the high watermark, -1: unknown */
} health_shard_t;

typedef struct health {
    /* readiness inputs */
    int kafka_ok;              /* the consumer has an assignment */
    int redis_ok;              /* Redis answered the last PING and the last batch */
    int resyncing;             /* partitions waiting to be re-read from Redis */
    /* the daemon's own counters, since start */
    uint64_t consumed, batches, failures;
    int64_t outcomes[STAT__COUNT]; /* per stat_t, counted as batches are sent */
    prom_hist_t batch_s, commit_s; /* batch preparation; waiting for the previous commit */
    const health_shard_t *shards;
    int n_shards;
    publish_stats_t pub;
} health_t;

/* Histograms with the page's buckets (1 ms .. 10 s). */
void health_init(health_t *h);
/* 1 if ready, else 0 and why in reason. */
int health_ready(const health_t *h, char *reason, size_t cap);
/* The page: the daemon's families (built in p, reset first), then journey
 * (the publisher's gauges, may be empty): a new buffer (the caller frees)
 * of *len bytes, or NULL with errbuf. */
char *health_render(const health_t *h, const char *journey, size_t journey_len, prom_t *p, size_t *len,
                    char *errbuf, size_t errlen);

#endif
