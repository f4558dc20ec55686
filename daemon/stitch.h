/*
 * stitch.h -- identity stitching across partitions (SPEC §4): where a
 * journey key lives, and the records partitions send each other through the
 * internal topic. Pure: no I/O.
 *
 * Every id has a home: the partition of the first input topic that the
 * producers' partitioner (input.partitioner) maps it to; its journey, or its
 * redirect to the customer it was linked to, is kept by that partition's
 * shard and changed only by that shard's owner. An item whose id lives
 * elsewhere is forwarded there as a record of the internal topic (the way
 * Kafka Streams repartitions), partition = the id's home, key = the id:
 *
 *   FWD_EVENT    a touch event for id (arrived elsewhere, or id's redirect
 *                points to a customer homed elsewhere);
 *   FWD_LINK     an identify/alias event for the customer id, linking
 *                `other`: applied there as an event, a place under
 *                journey.max_linked_ids reserved, the customer's journey
 *                made to wait (pending: no timeout) for the answer, then
 *                FWD_CLAIM. If `other` lives where the event arrived, its
 *                open journey is held there (pending) until the claim comes;
 *   FWD_CLAIM    to other's home: the shared-device rule (an id linked to
 *                another customer stays there, chains followed, FWD_F_FOLLOW);
 *                else other becomes a redirect to cust, its open journey
 *                leaves that shard's funnel and goes to cust as FWD_HANDOFF
 *                (jnum: the customer's journey the link was made in);
 *   FWD_HANDOFF  the answer: the anonymous journey (blob; none if it had
 *                none open), merged into cust's journey if that is still
 *                journey jnum and open, else counted and closed on its own
 *                (as it would have been without the link);
 *   FWD_RELEASE  the answer to a link refused or there already: the
 *                reservation is given back;
 *   FWD_CLOCK    a shard's announcement of its own input's clock, to every
 *                other partition, after the records it sent: a shard's
 *                watermark never passes the lowest clock announced, nor
 *                its own input's (records do not move it), so a record on
 *                its way from a partition behind, and the next event of a
 *                partition behind, find their journey open however far
 *                apart the partitions run. (Only the journeys wait:
 *                windowed counters are read and expired at the shard's
 *                own watermark.)
 *
 * Exactly-once: records are not produced while a batch is applied. They
 * are part of the source shard's commit (its outbox, schemas/redis.md),
 * produced once it has committed, and produced again from the outbox after
 * a restart; each carries its source shard and a sequence number, and a
 * shard applies a record only if its number is above the highest it has
 * applied from that source (kept with its offsets). So what a source sends
 * is what it committed, and what a destination applies is applied once.
 * Record format: schemas/internal.md.
 */
#ifndef JD_STITCH_H
#define JD_STITCH_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define FWD_SRC_MAX 272 /* a shard name: topic (<= 249) + ':' + partition */
#define FWD_VERSION 1

typedef enum { FWD_EVENT = 1, FWD_LINK, FWD_CLAIM, FWD_HANDOFF, FWD_RELEASE, FWD_CLOCK } fwd_kind_t;
#define FWD_CLOCK_ID "*" /* the id of a FWD_CLOCK record, which goes to every partition */

/* fwd_t.follow */
#define FWD_F_FOLLOW 1  /* CLAIM: id is on the chain from the id to link, not that id */
#define FWD_F_HELD 2    /* LINK, CLAIM: the id to link is held open in its home until the claim */
#define FWD_F_REFUSED 4 /* CLAIM: the customer refused the link (its cap): only let the id go */

typedef struct fwd {
    uint8_t kind;                 /* fwd_kind_t */
    uint8_t follow;               /* FWD_F_* flags */
    char src[FWD_SRC_MAX];        /* the shard that sent it */
    int64_t seq;                  /* its number there, from 1 */
    char id[JD_ID_MAX + 1];       /* addressed to (the Kafka key; its home is the partition) */
    char cust[JD_ID_MAX + 1];     /* CLAIM, HANDOFF, RELEASE: the customer */
    uint32_t jnum;                /* CLAIM, HANDOFF, RELEASE: the customer's journey number at the link */
    /* EVENT, LINK: the event, classified by the shard it arrived at */
    int64_t ts;
    uint64_t mid;
    int8_t phase, metric, score, scope;
    uint8_t explicit_phase, explicit_tp;
    char other[JD_ID_MAX + 1];    /* LINK: the id to link */
    char tp[JD_NAME_MAX + 1];
    char segment[JD_NAME_MAX + 1];
    const char *blob;             /* HANDOFF: the journey (journey_pack()); decoded: points into the input */
    size_t blob_len;
} fwd_t;

/* The home partition of id among n, by partitioner (cfg_partitioner_t, not
 * CFG_PART_NONE): what librdkafka's partitioner of that name, or Java's
 * default (murmur2), gives for the key. */
int32_t stitch_home(int partitioner, const char *id, int32_t n);

/* Serialise f (MessagePack, schemas/internal.md) into *out (malloc'ed). */
int fwd_encode(const fwd_t *f, char **out, size_t *len);
/* Parse a record; f->blob points into buf. -1 with a reason if it is not one. */
int fwd_decode(const char *buf, size_t len, fwd_t *f, char *errbuf, size_t errlen);

const char *fwd_kind_name(int kind);

#endif
