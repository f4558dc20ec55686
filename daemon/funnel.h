/*
 * funnel.h -- the funnel and drop-off metrics of SPEC §6: what a journey
 * contributes to the per-phase counters as it moves on, closes or is merged
 * away, and how the counters of every partition are read back into one
 * snapshot (schemas/metrics.schema.json). Pure: no I/O.
 *
 * Counters are plain integers named
 *     f|<phase>|<segment>|reached|active|progressed|dropped|completed
 *     f|<phase>|<segment>|drop|<touchpoint>      dropped journeys by last touchpoint
 *     f|<phase>|<segment>|tip|<bucket>           time in phase before moving on
 *     f|<phase>|<segment>|<outcome>|<res_ms>|<n> outcomes in time bucket n of a window
 * kept per partition in Redis and summed when read, so partitions merge
 * exactly. A '|' in a segment or touchpoint name is written as '/'.
 *
 * Windows (metrics.windows): the outcomes reached, progressed, dropped and
 * completed are also counted by the event time they happened at, in
 * buckets of res_ms = window / metrics.buckets_per_window numbered
 * floor(ts / res_ms), as satisfaction counts its answers: a journey reached
 * phase k at phase_ts[k], progressed from it at phase_ts[k + 1], dropped or
 * completed at its deadline. An open journey's counts follow its phase_ts
 * (an earlier event arriving late moves them), so taking them back is
 * exact. A window at watermark wm holds bucket floor(wm / res_ms) and the
 * k - 1 before it; a bucket before those is dead: deltas to it are
 * dropped and its field deleted (funnel_delta_expire()).
 */
#ifndef JD_FUNNEL_H
#define JD_FUNNEL_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "journey.h"

#define FUNNEL_PREFIX "f|"
#define FUNNEL_NONE "none"    /* segment of journeys that carry none */
#define FUNNEL_OTHER "other"  /* segments / touchpoints beyond the caps */
#define FUNNEL_TIP_BUCKETS 128
#define FUNNEL_OUTCOMES 4     /* windowed: reached, progressed, dropped, completed */
enum { FUNNEL_W_REACHED = 0, FUNNEL_W_PROGRESSED, FUNNEL_W_DROPPED, FUNNEL_W_COMPLETED };

/* A small set of names (segments or touchpoints) with a cap. */
typedef struct funnel_names {
    char **v;
    int n, cap;
} funnel_names_t;

/* Counters keyed by numbers (phase, kind, segment and touchpoint index in
 * the registry): the deltas of one batch of one partition, or the
 * partition's stored values (its totals). funnel_delta_render() names the
 * deltas for the commit, which writes the new totals. */
typedef struct funnel_delta {
    uint64_t *keys;
    int64_t *vals;
    uint32_t *slots;      /* open addressing: index + 1, 0 = empty */
    size_t n, cap;        /* cap: slots, a power of two */
    char **knames;        /* the totals: each key's field name once rendered (NULL: not yet); owned */
    char **names;         /* after funnel_delta_render(): field names (the totals' knames), */
    int64_t *totals;      /* and each one's new total */
    size_t n_names;
    char **gone;          /* after funnel_delta_expire(): fields to delete, owned */
    size_t n_gone;
} funnel_delta_t;

/* The names a partition's counters use, to keep their number capped. */
typedef struct funnel_reg {
    funnel_names_t segments, touchpoints;
} funnel_reg_t;

void funnel_delta_free(funnel_delta_t *d);
void funnel_delta_clear(funnel_delta_t *d);

void funnel_reg_free(funnel_reg_t *r);
/* Loading a partition: learn the names an existing counter field uses, and
 * its value into the partition's totals (fields other than f|... and of
 * phases no longer configured are left alone). */
void funnel_learn(funnel_reg_t *r, funnel_delta_t *totals, const config_t *cfg, const char *field,
                  int64_t value);
/* Add d to the totals and name every counter that changed: d->names and
 * d->totals[0..n_names) (the names are the totals', valid until they next
 * change), with the registry d was built with; deltas to
 * buckets dead at watermark wm are dropped. clock: the partition's (every
 * bucket counted is at or before it). */
void funnel_delta_render(funnel_delta_t *d, funnel_delta_t *totals, const funnel_reg_t *r,
                         const config_t *cfg, int64_t clock, int64_t wm);
/* Remove the buckets dead at wm from the totals, naming their fields in
 * d->gone (appended); how many. */
size_t funnel_delta_expire(funnel_delta_t *d, funnel_delta_t *totals, const funnel_reg_t *r,
                           const config_t *cfg, int64_t clock, int64_t wm);

/* Finite funnel window w's name in the snapshot ("1h", "1d"; w < 0: "all"). */
void funnel_window_name(const config_t *cfg, int w, char *buf, size_t cap);

/* Time-in-phase histogram: bucket of a duration and the upper edge (ms) of a
 * bucket. Four buckets per doubling of seconds: the edge is at most 25 % high. */
int funnel_tip_bucket(int64_t ms);
int64_t funnel_tip_upper_ms(int bucket);

/*
 * A journey's contribution, counted under its segment (j->mseg: its latest
 * segment, capped; "none" if it has none):
 *  - funnel_moved(): j was applied an event or merged, and was in phase
 *    `from` before (-1: not yet counted) with entry times before[] (NULL if
 *    from < 0): reached and progressed for the phases passed, active moves,
 *    windowed counts follow entry times that moved; if its segment changed,
 *    its counts move to the new one;
 *  - funnel_closed(): j has just been closed (j->status): active ends,
 *    dropped (by last touchpoint) or completed, time in each phase passed
 *    (not in phases it skipped: entered by the same event as the next);
 *  - funnel_removed(): an open journey merged into another: everything it
 *    counted is taken back.
 */
void funnel_moved(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, journey_t *j, int from,
                  const int64_t *before);

/* What closing a counted journey counts, taken from it while it is open
 * (funnel_close_of(); the names point into j): funnel_count_close() counts
 * the same as funnel_closed() would for j closed. Kept by closes.c for
 * journeys not in memory. */
#define FUNNEL_TIP_SKIPPED 0xff
typedef struct funnel_close {
    int8_t phase;                        /* -1: nothing is counted */
    uint8_t tip[CFG_MAX_PHASES - 1];     /* time-in-phase bucket of each phase left, or
                                            FUNNEL_TIP_SKIPPED (entered with the next) */
    const char *mseg, *last_tp;
    int64_t at;                          /* when it closes: its deadline */
} funnel_close_t;
void funnel_close_of(const journey_t *j, const config_t *cfg, funnel_close_t *c);
void funnel_count_close(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, const funnel_close_t *c);
void funnel_closed(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, const journey_t *j);
void funnel_removed(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, const journey_t *j);

/*
 * The life of a journey in event time (SPEC §5), for one partition whose
 * watermark is `wm` (its clock - allowed_lateness):
 *  - funnel_expire(): close j if the watermark has reached its deadline;
 *    1 if it closed now;
 *  - funnel_event(): one event of j's customer; wm is the watermark before
 *    the event moved the clock (an event older than it is late: *late = 1),
 *    wm_now after. A due journey is closed first; an event at or after the
 *    deadline closes the journey and starts the customer's next one; an
 *    event that belongs to an already closed journey only goes into its
 *    history (FUNNEL_LATE); otherwise it is applied, and the funnel follows
 *    the phase.
 */
typedef enum { FUNNEL_APPLIED = 0, FUNNEL_DUPLICATE, FUNNEL_LATE } funnel_result_t;

int funnel_expire(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, journey_t *j, int64_t wm);
funnel_result_t funnel_event(funnel_delta_t *d, funnel_reg_t *r, const config_t *cfg, journey_t *j,
                             int64_t wm, int64_t wm_now, const event_t *ev, uint64_t mid, int phase,
                             const char *tp, int *late);

/* ---- reading --------------------------------------------------------------- */

typedef struct funnel_count {
    char name[JD_NAME_MAX + 1];
    int64_t n;
} funnel_count_t;

typedef struct funnel_phase {
    int64_t reached, active, progressed, dropped, completed;
    int64_t win[CFG_MAX_FUNNEL_WINDOWS][FUNNEL_OUTCOMES]; /* per finite window: reached, progressed,
                                                             dropped, completed */
    funnel_count_t *drops;        /* by touchpoint; owned */
    int n_drops, cap_drops;
    int64_t tip[FUNNEL_TIP_BUCKETS];
} funnel_phase_t;

typedef struct funnel_seg {
    char name[JD_NAME_MAX + 1];
    funnel_phase_t ph[CFG_MAX_PHASES];
} funnel_seg_t;

typedef struct funnel_snap {
    funnel_seg_t *segs;           /* owned */
    int n_segs, cap_segs;
    int64_t watermark;            /* lowest partition watermark, INT64_MAX: none */
    int64_t late, shards;
} funnel_snap_t;

/* Add one stored counter of a partition whose watermark is wm (any field;
 * others than f|... are ignored); a windowed counter only if its window
 * holds its bucket at wm. */
void funnel_snap_add(funnel_snap_t *s, const config_t *cfg, const char *field, int64_t value, int64_t wm);
void funnel_snap_free(funnel_snap_t *s);

/* One entry of the snapshot as it is printed: kind "funnel" (segment set:
 * one phase of a segment) or "satisfaction" (segment NULL: one row), its key
 * (unique within the snapshot) and its JSON object. */
typedef void (*funnel_entry_fn)(const char *kind, const char *segment, const char *key, const char *json,
                                size_t len, void *opaque);

typedef struct funnel_print_opts {
    const char *segment;          /* NULL: all, with the top segments */
    int top_segments;             /* segments listed besides "all" (rest folded into "other") */
    int top_touchpoints;          /* drop-off points listed per phase */
    int64_t now_ms;               /* computed_at */
    int window;                   /* funnel_print_text(): a finite window's counts (-1: since the start) */
    /* if set: prints more members of the document (",\"name\":value...") */
    void (*more)(FILE *out, void *opaque);
    void *more_opaque;
    funnel_entry_fn entry;        /* if set: told each segment's phases */
    void *entry_opaque;
} funnel_print_opts_t;

/* The snapshot document (schemas/metrics.schema.json), one line. */
void funnel_print_json(const funnel_snap_t *s, const config_t *cfg, const funnel_print_opts_t *o,
                       FILE *out);
/* The funnel as a table with bars, for people. */
void funnel_print_text(const funnel_snap_t *s, const config_t *cfg, const funnel_print_opts_t *o,
                       FILE *out);

#endif
