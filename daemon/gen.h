/*
 * gen.h -- the journey simulator behind `journeyctl gen`: deterministic,
 * realistic customer journeys through the phases of the default model, with
 * their ground truth. Pure: events go to a callback, the truth (aggregate,
 * per journey, per survey answer) to structs and FILEs the caller owns.
 */
#ifndef JD_GEN_H
#define JD_GEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GEN_PHASES 4

typedef struct gen_opts {
    uint64_t seed;
    uint64_t customers;        /* customers to simulate */
    uint64_t max_events;       /* stop after this many messages (0 = no limit) */
    int64_t start_ms;          /* simulated period start */
    int64_t period_ms;         /* customers arrive over this period */
    int msgpack;               /* encoding: 0 JSON, 1 MessagePack */
    int epoch_ms_timestamps;   /* timestamps as integers instead of ISO strings */
    double drop[GEN_PHASES - 1];   /* drop-off probability per phase (not loyalty) */
    double mean_touchpoints[GEN_PHASES]; /* mean touchpoints per phase */
    double survey_rate;        /* survey answer after a touchpoint */
    double journey_survey_rate;/* journey-scope answer at the end */
    double dup_rate, ooo_rate, anon_rate, invalid_rate;
    double return_rate;        /* completed customers who come back for another journey */
    int64_t max_lateness_ms;   /* out-of-order delay bound */
    int anon_key_user;         /* Kafka key of anonymous events: eventual userId */
    double rate;               /* open loop: message i is stamped t0 + i/rate (0: off) */
    int64_t rate_t0_ms;        /* wall-clock start of the open-loop schedule */
} gen_opts_t;

/* Defaults: see gen.c. */
void gen_defaults(gen_opts_t *o);

/* One message: key (customer id), value, event time, delivery time. */
typedef int (*gen_emit_fn)(const char *key, size_t keylen, const void *value, size_t len,
                           int64_t ts_ms, void *opaque);

#define GEN_MAX_TOUCHPOINTS 32

/* Counts of one kind of survey answer: NPS promoters 9-10, passives 7-8,
 * detractors 0-6; CSAT satisfied 4-5; CES high (5-7); raw sum of scores. */
typedef struct gen_sat {
    uint64_t n, promoters, passives, detractors, satisfied, high, sum;
} gen_sat_t;

/* Aggregate truth from the simulation (what each customer really did). */
typedef struct gen_truth {
    uint64_t messages, valid, duplicates, out_of_order, invalid, identifies, surveys;
    uint64_t touches, journey_surveys;
    uint64_t invalid_by_kind[6];
    uint64_t journeys;
    uint64_t reached[GEN_PHASES], progressed[GEN_PHASES], dropped[GEN_PHASES], completed[GEN_PHASES];
    uint64_t touchpoints_before_purchase, purchasers;
    /* dropped journeys by phase and last touchpoint (names are static strings) */
    struct { const char *tp; uint64_t n; } dropoff[GEN_PHASES][GEN_MAX_TOUCHPOINTS];
    /* survey answers by metric (nps, csat, ces), phase and scope (touchpoint, journey) */
    gen_sat_t sat[3][GEN_PHASES][2];
    uint64_t heartbeats;
} gen_truth_t;

extern const char *const GEN_INVALID_KINDS[6];
extern const char *const GEN_PHASE_NAMES[GEN_PHASES];

/*
 * Run the simulation. emit is called for every message in delivery order
 * (non-zero return stops it). If journeys is not NULL, one JSON line per
 * customer journey (the ground truth) is written there as each journey ends.
 * If answers is not NULL, one JSON line per survey answer is written there
 * as the answer is made, so in event-time order (not delivery order):
 * exactly the answers counted in truth->sat, never a duplicate re-send or an
 * invalid event. Keys in this order, no spaces:
 *
 *   {"ts":<event time, epoch ms>,"metric":"nps"|"csat"|"ces","score":<int>,
 *    "phase":"<GEN_PHASE_NAMES: the phase the answer is counted under>",
 *    "scope":"touchpoint"|"journey","touchpoint":"<the answer's touchpoint,
 *    or "unknown">","segment":"<the journey's segment then: traits.segment
 *    of the customer's events, or "none">","customer":"<the journey key:
 *    userId, or anonymousId before an anonymous customer is identified>",
 *    "message_id":"<messageId>","key":"<its Kafka message key>"}
 *
 * Writing either file draws no random numbers: the events are the same.
 * Returns 0, or the emit callback's non-zero value.
 */
int gen_run(const gen_opts_t *o, gen_emit_fn emit, void *opaque, FILE *journeys, FILE *answers,
            gen_truth_t *truth);

/* The truth as one JSON document. */
void gen_truth_print(const gen_truth_t *t, const gen_opts_t *o, FILE *out);

#endif
