/*
 * shard.h -- one input topic-partition this daemon owns: its name, the
 * offset committed in Redis, and the counters of the batch in progress.
 */
#ifndef JD_SHARD_H
#define JD_SHARD_H

#include <stdint.h>

#include "decode.h"
#include "funnel.h"
#include "satisfaction.h"

#define SHARD_NAME_MAX 272  /* topic (<= 249) + ':' + partition */

/* Dead-letter reasons beyond the decoder's: properties.phase is no
 * configured phase; the timestamp is more than input.max_future after the
 * message's own. */
#define DL_UNKNOWN_PHASE DECODE__COUNT
#define DL_FUTURE_TIME (DECODE__COUNT + 1)
#define DL__COUNT (DECODE__COUNT + 2)

/* Counters kept per shard in Redis (hash <prefix>:{shard}:s), committed with
 * the journeys, so they are exactly-once too. */
typedef enum {
    STAT_CONSUMED = 0,   /* messages consumed */
    STAT_APPLIED,        /* events applied to a journey */
    STAT_DUPLICATE,      /* dropped as duplicate messageId */
    STAT_UNCLASSIFIED,   /* applied, matched no rule */
    STAT_HEARTBEAT,      /* heartbeat events */
    STAT_LINKED,         /* identify/alias links made */
    STAT_MERGED,         /* anonymous journeys merged into a customer's */
    STAT_CONFLICT,       /* links refused: id already linked to another customer */
    STAT_LINK_CAPPED,    /* links refused: the customer has journey.max_linked_ids already */
    STAT_LATE,           /* events older than the watermark (SPEC §5) */
    STAT_DEADLETTER,     /* events sent to the dead-letter topic */
    STAT_DL_REASON,      /* first of DL_REASONS per-reason counters */
    STAT__COUNT = STAT_DL_REASON + DL__COUNT
} stat_t;

typedef struct shard {
    char name[SHARD_NAME_MAX];  /* "<topic>:<partition>" */
    const char *topic;          /* points into name (NUL at the ':' is not used) */
    char topic_buf[256];
    int32_t partition;
    int64_t committed;          /* next offset per Redis; -1: nothing committed */
    int64_t next;               /* next offset to accept from Kafka; -1: any */
    int in_batch;               /* in the open batch (messages or a tick): its index there + 1, else 0 */
    int64_t batch_last;         /* last offset in the open batch, -1 none */
    int64_t stats[STAT__COUNT]; /* deltas of the open batch */
    int resync;                 /* must re-read its offset and seek before consuming */
    int paused;                 /* paused in the consumer while it waits for the resync */

    /* event time (SPEC §5): the watermark is clock - journey.allowed_lateness */
    int64_t clock;              /* highest event time seen (events, heartbeats, idle advance) */
    int64_t batch_clock;        /* clock at the end of the open batch */
    int64_t next_due;           /* no timer in Redis is due before this (a lower bound) */
    int timers_more;            /* due timers were left for the next batch */
    int64_t closed_through;     /* every timer at or before it has fired and its journey
                                   is closed or re-armed (as of the last commit prepared);
                                   a journey stored open with a deadline at or before it
                                   is closed (journey_settle()) */
    int64_t closing_through;    /* the mark the open batch's commit stores */
    int64_t wall_mark;          /* wall clock (ms) up to which event time is accounted for */
    funnel_delta_t fd;          /* funnel counter deltas of the open batch */
    funnel_reg_t reg;           /* segment / touchpoint names its counters use */
    funnel_delta_t totals;      /* its funnel counters as committed, and the open batch's */
    sat_part_t sat;             /* its satisfaction counts as committed, and the open batch's */
    sat_strs_t sat_names, sat_vals;  /* the counts the open batch's commit writes (a checkpoint) */
    sat_strs_t sat_gone;        /* buckets expired since the last checkpoint, deleted by the next */
    int sat_checkpoint;         /* the open batch's commit is a checkpoint */
    size_t sat_log_bytes;       /* answer log in Redis (as of the last commit prepared) */
    int64_t sat_expired;        /* watermark of the last expiry of old buckets */
    int64_t funnel_expired;     /* the same for the funnel's windowed counters, INT64_MIN: none yet */
} shard_t;

/* Release what the shard owns (the struct itself is the caller's). */
void shard_release(shard_t *sh);

/* Counter name as stored in Redis ("applied", "deadletter.syntax", ...). */
const char *shard_stat_name(int stat);

#endif
