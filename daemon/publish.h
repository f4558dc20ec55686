/*
 * publish.h -- the metric topic (SPEC §7, issue #6): the metrics snapshot,
 * read from Redis and published entry by entry, in a thread of its own so
 * that neither a slow Redis read nor a slow or absent metric topic ever holds
 * up consumption or journey state.
 *
 * Every output.publish_interval the thread reads the snapshot of every
 * partition (snapshot.h), exactly what `journeyctl metrics --json` prints,
 * and produces one message per entry -- a phase of a funnel segment, a
 * satisfaction row (phase x window x breakdown) -- whose content changed
 * since its last delivered message, keyed by the entry's key so that a
 * compacted topic keeps the latest of each (schemas/metric.schema.json;
 * JSON, or MessagePack with output.format msgpack, jsonmp.h).
 * An entry that is gone from the snapshot gets a tombstone; after a start
 * (or a restart) every entry is published once. Only the daemon
 * that owns the first partition of the first input topic publishes
 * (publish_set_leader()), so several daemons in one group do not repeat
 * each other. The same thread evaluates the alert rules (alert.h) on each
 * snapshot and sends their messages to output.alerts_topic (publish.c).
 */
#ifndef JD_PUBLISH_H
#define JD_PUBLISH_H

#include <stdint.h>

#include "config.h"

typedef struct publish publish_t;

typedef struct publish_stats {
    uint64_t snapshots;         /* snapshots read and published */
    uint64_t snapshot_errors;   /* snapshots that could not be read (Redis) */
    uint64_t produced;          /* messages handed to the producer */
    uint64_t delivered;         /* and confirmed by the broker */
    uint64_t failed;            /* deliveries that failed after librdkafka's retries (re-sent later) */
    int64_t last_ms;            /* wall clock of the last published snapshot, 0: none */
    int64_t complete_to;        /* its event time (lowest watermark), INT64_MIN: none */
    uint64_t entries;           /* entries in it */
} publish_stats_t;

/* Start the thread (cfg is borrowed and must outlive it): NULL with errbuf
 * if its Redis connection or producer cannot be made. */
publish_t *publish_start(const config_t *cfg, char *errbuf, size_t errlen);
/* Whether this daemon publishes (it owns the leader partition). */
void publish_set_leader(publish_t *p, int leader);
void publish_get_stats(publish_t *p, publish_stats_t *out);
/* The journey metrics of the last published snapshot in the Prometheus text
 * format (families journeyd_funnel_*, journeyd_satisfaction_*), a copy
 * the caller frees; *len 0 before the first. */
char *publish_prom(publish_t *p, size_t *len);
/* Stop the thread, flush what is queued (at most timeout_ms) and free. */
void publish_stop(publish_t *p, int timeout_ms);

#endif
