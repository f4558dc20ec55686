/*
 * deadletter.h -- the dead-letter producer: bad input events go, unchanged,
 * to the dead-letter topic with headers naming why and where they came from
 * (SPEC §3). Owns its own librdkafka producer (idempotent, acks=all).
 */
#ifndef JD_DEADLETTER_H
#define JD_DEADLETTER_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "config.h"

typedef struct deadletter deadletter_t;

deadletter_t *deadletter_open(const config_t *cfg, char *errbuf, size_t errlen);
/* Flushes (bounded by timeout_ms) and destroys. */
void deadletter_close(deadletter_t *dl, int timeout_ms);

/*
 * Queue one message: key and value copied unchanged; headers
 * jd-reason, jd-error, jd-source-topic, jd-source-partition, jd-source-offset.
 * 0, or -1 if it could not even be queued.
 */
int deadletter_send(deadletter_t *dl, const rd_kafka_message_t *src, const char *reason,
                    const char *detail);

/*
 * Wait until everything queued so far is delivered. 0 if every message sent
 * since the last call was acknowledged by the broker, -1 otherwise (those
 * must be sent again: the caller does not commit the batch).
 */
int deadletter_sync(deadletter_t *dl, int timeout_ms, char *errbuf, size_t errlen);

/* Messages delivered / failed since start. */
void deadletter_counters(const deadletter_t *dl, uint64_t *delivered, uint64_t *failed);

#endif
