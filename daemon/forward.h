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

/* Records are produced in groups, each for an owner (a shard): the
 * records forward_send() queues between forward_begin() and forward_end()
 * belong to the group. */
void forward_begin(forward_t *fw, void *owner);
void forward_end(forward_t *fw);
/* Queue one record for partition p of the internal topic: 0, or -1 if
 * librdkafka refused it (counted as a failed delivery of its group). */
int forward_send(forward_t *fw, int32_t p, const char *key, size_t keylen, const char *val, size_t len);
/* Serve the broker's answers, then call done() for each group at the front
 * whose records are all answered, in the order the groups were produced,
 * with its size and how many of them failed; how many groups. A group
 * waits for every group produced before it, so for one owner the groups
 * done are always the oldest ones. Never blocks. */
size_t forward_delivered(forward_t *fw, void (*done)(void *owner, size_t n, size_t failed, void *opaque),
                         void *opaque);
/* The owner's groups are never reported (its outbox was read back, or it is
 * gone). fw may be NULL. */
void forward_forget(forward_t *fw, const void *owner);

void forward_counters(const forward_t *fw, uint64_t *delivered, uint64_t *failed);

#endif
