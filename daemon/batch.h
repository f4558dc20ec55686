/*
 * batch.h -- one batch of consumed messages, from decode to the atomic
 * commit in Redis: decode → classify → journey → store.
 */
#ifndef JD_BATCH_H
#define JD_BATCH_H

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "deadletter.h"
#include "forward.h"
#include "shard.h"
#include "store.h"

typedef struct batch batch_t;

batch_t *batch_new(const config_t *cfg);
void batch_free(batch_t *b);
/* Use cfg (a reloaded configuration) from the next batch on (forgets what
 * is kept in memory). */
void batch_set_config(batch_t *b, const config_t *cfg);

/* Number of messages (good or bad) in the open batch. */
int batch_size(const batch_t *b);
/* Whether the open batch has anything to commit (messages or ticks). */
int batch_open(const batch_t *b);

/* An idle, caught-up shard's event time advances to `clock` (SPEC §5): the
 * open batch commits the new clock and closes what it makes due, without
 * consuming anything. Only between cycles. */
void batch_tick(batch_t *b, shard_t *sh, int64_t clock);

/*
 * Add one consumed message of shard sh: decode and classify it, send it to
 * the dead-letter topic if it is bad. The message is not kept (the caller
 * destroys it). Messages must come in offset order per shard.
 */
void batch_add(batch_t *b, shard_t *sh, const rd_kafka_message_t *m, deadletter_t *dl);
/* The same for a message of the internal topic (stitch.h) whose partition
 * is sh's. */
void batch_add_internal(batch_t *b, shard_t *sh, const rd_kafka_message_t *m, deadletter_t *dl);

/* Stitch identities across the first input topic's `partitions` (stitch.h),
 * sending records through fw (borrowed). 0: each partition on its own. */
void batch_set_stitching(batch_t *b, int32_t partitions, forward_t *fw);

/*
 * The pipelined cycle (see batch.c), with the previous batch's commit in
 * flight on the commit connection:
 *  - batch_prepare(): load (on the load connection) what the previous batch
 *    did not leave in memory, apply, confirm dead letters, pack the commit;
 *  - batch_wait(): read the previous commit's result: shards that committed
 *    have sh->committed advanced; if anything failed or was fenced, the
 *    prepared batch and everything kept in memory are dropped and the shards
 *    flagged sh->resync;
 *  - batch_send(): send the prepared commit; it is pending until the next
 *    batch_wait(). The batch is empty again.
 * On any failure the open batch is dropped and its shards flagged resync.
 */
store_status_t batch_prepare(batch_t *b, store_t *st, store_t *st_load, deadletter_t *dl,
                             char *errbuf, size_t errlen);
store_status_t batch_wait(batch_t *b, store_t *st, char *errbuf, size_t errlen);
store_status_t batch_send(batch_t *b, store_t *st, char *errbuf, size_t errlen);
/* Whether a commit is in flight. */
int batch_pending(const batch_t *b);

/* All of it, synchronously: nothing is pending afterwards. */
store_status_t batch_commit(batch_t *b, store_t *st, store_t *st_load, deadletter_t *dl,
                            char *errbuf, size_t errlen);

/* Forget the journeys kept from the last batch (after a resync, a revoke or
 * a reload, when memory may no longer match Redis). Only between batches. */
void batch_forget(batch_t *b);

/* Close records held (closes.h), their memory in *bytes, and how many
 * journeys were closed from one since batch_new() in *used. */
size_t batch_close_records(const batch_t *b, size_t *bytes, uint64_t *used);

#endif
