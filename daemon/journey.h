/*
 * journey.h -- one customer's journey: the state kept per customer in Redis
 * (SPEC §4), how an event changes it, how two journeys merge, and its
 * serialised form. Pure: no I/O. See journey.c for the state machine.
 */
#ifndef JD_JOURNEY_H
#define JD_JOURNEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "event.h"

#define JOURNEY_NO_TIME INT64_MAX   /* "never": phase not reached, no event */
#define JOURNEY_BLOB_VERSION 5

/* One entry of the touchpoint history. */
typedef struct jd_touch {
    int64_t ts;                     /* event time, ms */
    uint64_t mid;                   /* hash of messageId: order tie-break */
    int8_t phase;                   /* phase the event was classified into, -1 none */
    char tp[JD_NAME_MAX + 1];       /* touchpoint */
} jd_touch_t;

typedef struct jd_satisfaction {
    int8_t metric;                  /* ev_metric_t, EV_METRIC_NONE = none yet */
    int8_t score;
    int8_t scope;                   /* ev_scope_t */
    int8_t phase;                   /* phase the answer was attributed to */
    int8_t explicit_phase;          /* phase came from properties.phase */
    int64_t ts;
    uint64_t mid;
    char tp[JD_NAME_MAX + 1];
} jd_satisfaction_t;

/* A journey is open until its phase's timeout passes without an event; then
 * it has dropped off in that phase, or completed in the last one (SPEC §5). */
typedef enum { JOURNEY_OPEN = 0, JOURNEY_DROPPED, JOURNEY_COMPLETED } journey_status_t;

typedef struct journey {
    char customer[JD_ID_MAX + 1];   /* canonical customer id (journey key) */
    uint32_t number;                /* 1 for the customer's first journey */
    int8_t phase;                   /* highest phase reached, -1: none yet */
    int64_t start_ts;               /* earliest event time */
    int64_t last_ts;                /* latest event time */
    int64_t phase_ts[CFG_MAX_PHASES];  /* entry time per phase, JOURNEY_NO_TIME if not reached */
    char last_tp[JD_NAME_MAX + 1];  /* touchpoint of the latest touch event */
    int64_t last_tp_ts;
    uint64_t last_tp_mid;
    uint64_t events;                /* distinct events applied */
    char segment[JD_NAME_MAX + 1];  /* segment of the latest event carrying one */
    int64_t segment_ts;
    uint64_t segment_mid;
    jd_satisfaction_t sat;          /* latest satisfaction answer */
    uint32_t merged;                /* other ids (anonymous, aliases) linked to this journey */
    uint32_t linked;                /* ... and to this customer, over all its journeys */
    uint32_t pending;               /* links sent to other partitions not answered yet (stitch.h):
                                       the journey does not time out meanwhile */
    uint8_t status;                 /* journey_status_t */
    int64_t prev_end;               /* deadline of the customer's previous journey, INT64_MIN: none */
    char mseg[JD_NAME_MAX + 1];     /* segment counted under in the metrics, "" = not counted yet */
    int64_t stored_deadline;        /* deadline it was stored open with (version 3), -1: none;
                                       see journey_settle() */

    jd_touch_t *hist;               /* sorted by (ts, mid), oldest first; owned */
    uint32_t n_hist, cap_hist;      /* cap_hist <= history_max */
    uint64_t *dedup;                /* ring of messageId hashes; owned */
    uint32_t n_dedup, dedup_pos, cap_dedup;

    /* Read by journey_unpack_head(): hist and dedup are not parsed; tail
     * (owned) holds their serialised bytes, written back as they are until
     * journey_load_tail() parses them. NULL for a journey read whole. */
    char *tail;
    uint32_t tail_len;
} journey_t;

typedef enum {
    JOURNEY_APPLIED = 0,
    JOURNEY_DUPLICATE,              /* messageId already seen in this journey */
} journey_result_t;

/* 64-bit hash of a messageId (FNV-1a, then a finaliser). Stable on disk. */
uint64_t journey_mid_hash(const char *mid, size_t len);

/* Initialise an empty journey for `customer`. */
void journey_init(journey_t *j, const char *customer);
/* Release what j owns; j may be re-initialised afterwards. */
void journey_reset(journey_t *j);

/*
 * Apply one event. phase/tp come from classify (phase -1 = unclassified,
 * tp NULL = no touchpoint: identify/alias). The result does not depend on the
 * order in which a journey's events are applied (see journey.c).
 */
journey_result_t journey_apply(journey_t *j, const config_t *cfg, const event_t *ev,
                               uint64_t mid, int phase, const char *tp);

/* Whether messageId hash mid was already applied (or recorded late). */
bool journey_seen(const journey_t *j, uint64_t mid);

/* When the journey times out: last event time + its phase's timeout
 * (INT64_MAX if it has no event yet). Fixed once it is closed. */
int64_t journey_deadline(const journey_t *j, const config_t *cfg);

/* Close: dropped off in its phase, or completed in the last one. */
void journey_close(journey_t *j, const config_t *cfg);

/* A journey stored open is closed once its partition's closed-through mark
 * (every timer at or before it has fired: batch.c) reaches the deadline it
 * was stored with, even though the blob still says open: closing a journey
 * nobody touched writes nothing. Apply to every journey read from Redis with
 * its partition's mark; 1 if it closed here. */
int journey_settle(journey_t *j, const config_t *cfg, int64_t closed_through);

/* The customer's next journey begins: number + 1, everything but the
 * customer, the dedup ring and the previous journey's deadline reset. */
void journey_restart(journey_t *j, const config_t *cfg);

/* A late event for a closed journey: remembered (dedup, history), nothing
 * else changes. */
journey_result_t journey_apply_late(journey_t *j, const config_t *cfg, uint64_t mid, int64_t ts,
                                    int phase, const char *tp);

/* Merge src into dst (identity stitching); src is left unchanged. The ids
 * src had absorbed carry over; counting the new link is the caller's job. */
void journey_merge(journey_t *dst, const journey_t *src, const config_t *cfg);

/* Serialise to MessagePack into a malloc'ed buffer (*out, *outlen; caller frees). 0 / -1. */
int journey_pack(const journey_t *j, char **out, size_t *outlen);
/* Parse a blob made by journey_pack. 0, or -1 with errbuf. j must be initialised. */
int journey_unpack(journey_t *j, const char *buf, size_t len, const config_t *cfg,
                   char *errbuf, size_t errlen);
/* The same, but the history and dedup ring are kept as bytes (j->tail): for
 * a journey read only to be closed, which never looks at them. */
int journey_unpack_head(journey_t *j, const char *buf, size_t len, const config_t *cfg,
                        char *errbuf, size_t errlen);
/* Parse j->tail, if any, into the history and dedup ring: before anything
 * but closing and packing touches a journey read by journey_unpack_head(). */
int journey_load_tail(journey_t *j, const config_t *cfg);

/* Print as one JSON object (phase names from cfg). */
void journey_print_json(const journey_t *j, const config_t *cfg, FILE *out);
/* Print in a readable form for people. */
void journey_print_text(const journey_t *j, const config_t *cfg, FILE *out);

#endif
