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
#define DL_INTERNAL (DECODE__COUNT + 2)   /* a message of the internal topic that is no record of ours */
#define DL__COUNT (DECODE__COUNT + 3)

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
    STAT_FORWARDED,      /* records sent to other partitions through the internal topic (stitch.h) */
    STAT_RECEIVED,       /* records of the internal topic applied */
    STAT_RECEIVED_AGAIN, /* records of the internal topic already applied (sent again after a restart) */
    STAT_HANDOFF_CLOSED, /* anonymous journeys handed off after the customer's journey had closed */
    STAT_DL_REASON,      /* first of DL_REASONS per-reason counters */
    STAT__COUNT = STAT_DL_REASON + DL__COUNT
} stat_t;

/* What a shard has applied of another shard's records (stitch.h). */
typedef struct shard_mark {
    char *src;                  /* owned */
    int64_t seq;                /* highest applied */
    int64_t clock;              /* the source's clock as it last announced it (FWD_CLOCK), INT64_MIN: never */
    int dirty;                  /* changed by the open batch */
} shard_mark_t;

/* Records the open batch sends (its outbox, stitch.h): each one is
 * "<partition, 4 bytes big-endian><key length, 2 bytes><key><record>". */
typedef struct shard_out {
    char **v;
    size_t *lens;
    size_t n, cap;
} shard_out_t;

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
    int64_t clock;              /* highest event time of its input applied (events, heartbeats, idle
                                   advance; not the internal topic's records) */
    int64_t batch_clock;        /* clock at the end of the open batch */
    int64_t next_due;           /* no timer in Redis is due before this (a lower bound) */
    int timers_more;            /* due timers were left for the next batch */
    int64_t due_through;        /* the open batch fetched every due timer up to here
                                   (store_due_req_t.through), INT64_MIN: none */
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

    /* identity stitching (stitch.h) */
    int home;                   /* a partition of the first input topic: ids live here */
    int64_t icommitted;         /* the internal partition's next offset per Redis; -1: none */
    int64_t inext;              /* next offset of it to accept from Kafka; -1: any */
    int64_t ibatch_last;        /* its last offset in the open batch, -1 none */
    int64_t out_seq;            /* number of the last record sent */
    shard_out_t out;            /* the open batch's records */
    shard_out_t sent;           /* the outbox read from Redis, to be produced again */
    size_t out_trim;            /* records at the front of the outbox that are delivered: the
                                   next commit removes them (forward.h) */
    uint32_t loads;             /* times its state was read from Redis (a commit sent before the
                                   last read has its records in the outbox read back) */
    shard_mark_t *marks;        /* per source shard */
    int n_marks, cap_marks;
    int64_t low;                /* the lowest clock the other home partitions announced, 0 until all
                                   have: the shard's watermark trails min(clock, low) (stitch.h) */
    int64_t announced;          /* the clock this shard last announced, INT64_MIN: not yet */
    int64_t iclock;             /* highest event time of its own input read, the open batch's too
                                   (announced; stored as iclock) */
    char **fnames;              /* the open batch's commit: out_seq and changed marks (owned) */
    int64_t *fvals;
    size_t n_f, cap_f;
} shard_t;

/* Release what the shard owns (the struct itself is the caller's). */
void shard_release(shard_t *sh);

/* The mark of records applied from src (0 if none) and setting it (its
 * index); the clock src announced. */
int64_t shard_mark_get(const shard_t *sh, const char *src);
int shard_mark_set(shard_t *sh, const char *src, int64_t seq, int dirty);
void shard_mark_clock(shard_t *sh, int i, int64_t clock, int dirty);
/* sh->low from the marks, given how many other partitions must announce. */
void shard_low_update(shard_t *sh, int others);
void shard_marks_free(shard_t *sh);
/* The counters-hash fields of the open batch's commit: out_seq and the
 * marks that changed (each then counts as committed); freed by
 * shard_fields_free(). */
void shard_fields_build(shard_t *sh);
void shard_fields_free(shard_t *sh);

/* Append one outbox record (the shard_out_t format) for partition p, key id. */
void shard_out_add(shard_out_t *o, int32_t p, const char *id, const char *rec, size_t len);
/* Take the outbox record at rec apart; -1 if it is not one. */
int shard_out_parse(const char *rec, size_t len, int32_t *p, const char **key, size_t *keylen, const char **val,
                    size_t *vlen);
void shard_out_free(shard_out_t *o);

/* Counter name as stored in Redis ("applied", "deadletter.syntax", ...). */
const char *shard_stat_name(int stat);

#endif
