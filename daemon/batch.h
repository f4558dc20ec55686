/*
 * batch.h -- one batch of consumed messages, from decode to the atomic
 * commit in Redis: decode → classify → journey → store.
 */
#ifndef JD_BATCH_H
#define JD_BATCH_H

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "deadletter.h"
#include "shard.h"
#include "store.h"

typedef struct batch batch_t;

batch_t *batch_new(const config_t *cfg);
void batch_free(batch_t *b);
/* Use cfg (a reloaded configuration) from the next batch on. */
void batch_set_config(batch_t *b, const config_t *cfg);

/* Number of messages (good or bad) in the open batch. */
int batch_size(const batch_t *b);

/*
 * Add one consumed message of shard sh: decode and classify it, send it to
 * the dead-letter topic if it is bad. The message is not kept (the caller
 * destroys it). Messages must come in offset order per shard.
 */
void batch_add(batch_t *b, shard_t *sh, const rd_kafka_message_t *m, deadletter_t *dl);

/*
 * Load the journeys the batch touches, apply its events, confirm the
 * dead-letter deliveries and commit every shard of the batch atomically with
 * its new offset. Shards whose commit succeeded have sh->committed advanced;
 * fenced shards get sh->resync set. On STORE_RETRY nothing can be assumed
 * about shards without an advanced offset: the caller resyncs them.
 * The batch is empty afterwards, whatever the result.
 */
store_status_t batch_commit(batch_t *b, store_t *st, deadletter_t *dl, char *errbuf,
                            size_t errlen);

#endif
