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
 * The pipelined cycle (see batch.c): batch_load_send() queues the loads of
 * the open batch behind the pending commit; batch_wait() reads the pending
 * commit's result (shards that committed have sh->committed advanced; failed
 * or fenced ones, and every shard of the open batch if anything failed, get
 * sh->resync); batch_finish() reads the loads, applies, confirms dead letters
 * and sends the commit, which is pending until the next batch_wait(). On
 * any failure the open batch is dropped and its shards flagged for resync.
 */
store_status_t batch_load_send(batch_t *b, store_t *st, char *errbuf, size_t errlen);
store_status_t batch_wait(batch_t *b, store_t *st, char *errbuf, size_t errlen);
store_status_t batch_finish(batch_t *b, store_t *st, deadletter_t *dl, char *errbuf, size_t errlen);
/* Whether a commit is in flight. */
int batch_pending(const batch_t *b);

/* All of it, synchronously: nothing is pending afterwards. */
store_status_t batch_commit(batch_t *b, store_t *st, deadletter_t *dl, char *errbuf,
                            size_t errlen);

#endif
