/*
 * alert.h -- alert rules over the journey metrics (issue #6, SPEC §7): the
 * rule as configured, its state, the evaluation that turns the metric's value
 * into `firing` and `resolved` messages, the message as JSON (an Alertmanager
 * webhook payload, schemas/alert.schema.json) and the state as a short
 * string to keep in Redis across restarts.
 *
 * Pure: no clock (times are passed in), no Kafka, no Redis; the only output
 * is the FILE * alert_msg_json() is given. The states and their transitions
 * are described at the top of alert.c.
 */
#ifndef JD_ALERT_H
#define JD_ALERT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"

#define ALERT_NAME_MAX 64       /* rule names and severities (bytes) */
#define ALERT_MAX_LABELS 16     /* free labels per rule */
#define ALERT_LABEL_MAX 255     /* bytes of a free label's name or value */
#define ALERT_SUMMARY_MAX 512   /* bytes of a summary template */
#define ALERT_ID_LEN 16         /* hex digits of an alert id */
#define ALERT_STATE_MAX 96      /* alert_state_encode() never needs more (with the NUL) */

/* The metric a rule watches: the funnel's (SPEC §6) then satisfaction's. */
typedef enum {
    ALERT_DROPOFF_RATE,
    ALERT_CONVERSION,
    ALERT_REACHED,
    ALERT_ACTIVE,
    ALERT_PROGRESSED,
    ALERT_DROPPED,
    ALERT_COMPLETED,
    ALERT_NPS,
    ALERT_CSAT,
    ALERT_CES,
} alert_metric_t;

typedef enum { ALERT_GT, ALERT_GE, ALERT_LT, ALERT_LE } alert_op_t;
typedef enum { ALERT_BY_NONE, ALERT_BY_SEGMENT, ALERT_BY_TOUCHPOINT } alert_by_t;
typedef enum { ALERT_NODATA_KEEP, ALERT_NODATA_RESOLVE } alert_nodata_t;

/* Names as written in the config and the messages, indexed by the enums
 * above, NULL-terminated. */
extern const char *const alert_metric_names[];
extern const char *const alert_op_names[];     /* ">", ">=", "<", "<=" */
extern const char *const alert_nodata_names[]; /* "keep", "resolve" */

typedef struct alert_label {
    char *name;                 /* [a-zA-Z_][a-zA-Z0-9_]*, not a built-in label */
    char *value;
} alert_label_t;

/* One rule, as config.c loads it. The rule owns its labels' strings and its
 * summary (alert_rule_free()). */
typedef struct alert_rule {
    int line;                           /* of the rule in the config file */
    char name[ALERT_NAME_MAX + 1];      /* unique, [a-z0-9_-] */
    alert_metric_t metric;
    int phase;                          /* index into the configured phases */
    char phase_name[JD_NAME_MAX + 1];
    char window[32];                    /* as the snapshot names it: "1h", "1d", "1w", "30d", "all" */
    int window_ix;                      /* index into the metric's finite windows (satisfaction's
                                           or the funnel's), -1: all */
    int journey_scope;                  /* satisfaction: the journey-scope answers (scope: journey),
                                           else the touchpoint-scope ones */
    alert_by_t by;                      /* the series: overall, one segment or one touchpoint */
    char by_name[JD_NAME_MAX + 1];      /* the segment or touchpoint, "" for ALERT_BY_NONE */
    alert_op_t op;
    double threshold;                   /* fires when value <op> threshold holds ... */
    double resolve;                     /* ... resolves when value is strictly beyond this
                                           (never on the firing side of threshold) */
    int64_t for_ms;                     /* how long it must hold before firing */
    int64_t min_n;                      /* fewer samples: no data */
    alert_nodata_t no_data;
    char severity[ALERT_NAME_MAX + 1];
    alert_label_t labels[ALERT_MAX_LABELS];
    int n_labels;
    char *summary;                      /* template, or NULL for ALERT_DEFAULT_SUMMARY */
} alert_rule_t;

/* The summary of a rule without one. Placeholders: {rule} {metric} {phase}
 * {window} {segment} {touchpoint} {op} {value} {threshold} {resolve} {n}. */
#define ALERT_DEFAULT_SUMMARY "{metric} of {phase} over {window}: {value} (threshold {op} {threshold})"

/* Release what the rule owns (not the rule itself); it is then empty. */
void alert_rule_free(alert_rule_t *r);

/* Whether resolve is not on the firing side of threshold for op. */
int alert_resolve_ok(alert_op_t op, double threshold, double resolve);

/* Whether metric m is a satisfaction score (the only ones with touchpoints). */
int alert_metric_is_sat(alert_metric_t m);

/* A free label's name: 0, or -1 with the reason in errbuf. */
int alert_label_check(const char *name, char *errbuf, size_t errlen);

/* A summary template: 0, or -1 with the reason (length, unknown placeholder). */
int alert_summary_check(const char *tmpl, char *errbuf, size_t errlen);

/* v as the shortest of %.15g, %.16g, %.17g that reads back as v (buf >= 32 bytes). */
void alert_format_number(double v, char *buf, size_t cap);

/* ---- state and evaluation ------------------------------------------------------ */

typedef enum { ALERT_NORMAL = 0, ALERT_PENDING, ALERT_FIRING } alert_status_t;

/* The state of one rule (its series). A zeroed state is NORMAL. */
typedef struct alert_state {
    alert_status_t status;
    int64_t since_ms;           /* PENDING, FIRING: when the condition started holding; else 0 */
    int64_t starts_ms;          /* FIRING: when it fired (startsAt, part of the id); else 0 */
    double value;               /* the last value evaluated with data ... */
    int64_t n;                  /* ... and its sample size (0: none yet) */
} alert_state_t;

/* A firing or resolved message. */
typedef struct alert_msg {
    const alert_rule_t *rule;   /* borrowed from the caller of alert_eval() */
    int firing;                 /* 1: firing, 0: resolved */
    int have_value;             /* 0: resolved for lack of data, value says nothing */
    double value;
    int64_t n;                  /* the sample size of the evaluation (< min_n without data) */
    int64_t starts_ms;          /* startsAt */
    int64_t ends_ms;            /* endsAt; 0 while firing */
    char id[ALERT_ID_LEN + 1];  /* the episode's id: the same on its firing and resolved message */
} alert_msg_t;

/*
 * Evaluate rule r at now_ms with the metric's current value, computed from n
 * samples (have_data 0: the series has no value at all). Updates *s; returns
 * 1 with *out filled if a firing or resolved message must be sent, else 0.
 */
int alert_eval(const alert_rule_t *r, alert_state_t *s, int have_data, double value, int64_t n,
               int64_t now_ms, alert_msg_t *out);

/* The id of r's episode that started firing at starts_ms: 16 hex digits of
 * a 64-bit FNV-1a of (rule name, breakdown, starts_ms), so a message re-sent
 * after a restart carries the same id. */
void alert_id(const alert_rule_t *r, int64_t starts_ms, char out[ALERT_ID_LEN + 1]);

/* Write m as one JSON document (schemas/alert.schema.json), no newline. */
void alert_msg_json(const alert_msg_t *m, FILE *out);

/* The state as a short string ("1:F:<since>:<starts>:<value>:<n>") into buf:
 * 0, or -1 if cap is too small (ALERT_STATE_MAX always is enough). */
int alert_state_encode(const alert_state_t *s, char *buf, size_t cap);
/* Back from alert_state_encode()'s string: 0, or -1 (and *s untouched) if it
 * is malformed or breaks the state's invariants. */
int alert_state_decode(const char *text, alert_state_t *s);

#endif
