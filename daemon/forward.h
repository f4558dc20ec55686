/*
 * forward.h -- the internal topic (stitch.h): making sure it exists,
 * co-partitioned with the first input topic, and producing the records
 * shards send each other.
 */
#ifndef JD_FORWARD_H
#define JD_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct forward forward_t;

/* A producer for cfg->internal_topic (idempotent, so records reach each
 * partition once and in order, and never time out). */
forward_t *forward_open(const config_t *cfg, char *errbuf, size_t errlen);
void forward_close(forward_t *fw, int timeout_ms);

/* The first input topic's partition count, once the topic exists, and the
 * internal topic created with as many partitions if it does not exist.
 * 0 and *partitions set; 1: the input topic is not there yet (try again);
 * -1: it cannot work (the internal topic has another partition count, or
 * cannot be created), with a reason. */
int forward_prepare(forward_t *fw, const config_t *cfg, int32_t *partitions, char *errbuf, size_t errlen);

/* Queue one record for partition p of the internal topic. */
int forward_send(forward_t *fw, int32_t p, const char *key, size_t keylen, const char *val, size_t len);
/* Wait until everything queued is delivered: 0, or -1 with a reason if
 * anything failed or the wait timed out. */
int forward_sync(forward_t *fw, int timeout_ms, char *errbuf, size_t errlen);

void forward_counters(const forward_t *fw, uint64_t *delivered, uint64_t *failed);

#endif
