/*
 * event.h -- the decoded form of one input event (SPEC §3).
 *
 * decode.c fills an event_t from the raw bytes of a Kafka message value.
 * Every string field points into the caller-supplied arena (NUL-terminated,
 * JSON escapes already resolved); the event owns nothing and is valid as long
 * as the arena is. A field that was absent is NULL (strings) or has its
 * has_* flag cleared.
 */
#ifndef JD_EVENT_H
#define JD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hard upper bounds; the configurable limits (config.h) must not exceed them. */
#define JD_ID_MAX 128   /* messageId, userId, anonymousId, previousId (bytes) */
#define JD_NAME_MAX 63  /* touchpoint, phase, segment, channel names (bytes) */

typedef enum {
    EV_TRACK = 0,
    EV_PAGE,
    EV_SCREEN,
    EV_IDENTIFY,
    EV_ALIAS,
    EV_HEARTBEAT,
} ev_type_t;

typedef enum {
    EV_METRIC_NONE = 0,
    EV_METRIC_NPS,
    EV_METRIC_CSAT,
    EV_METRIC_CES,
} ev_metric_t;

typedef enum {
    EV_SCOPE_TOUCHPOINT = 0,
    EV_SCOPE_JOURNEY,
} ev_scope_t;

typedef struct event {
    ev_type_t type;
    int64_t ts_ms;              /* event time, epoch milliseconds (UTC) */

    const char *message_id;     /* required, <= JD_ID_MAX bytes */
    const char *user_id;        /* userId, or NULL */
    const char *anonymous_id;   /* anonymousId, or NULL */
    const char *previous_id;    /* previousId (alias), or NULL */
    const char *event;          /* event name (required for track), or NULL */
    const char *channel;        /* context.channel, or NULL */
    const char *page_path;      /* context.page.path, or NULL */
    const char *name;           /* name (page/screen), or NULL */

    /* properties.* recognised keys */
    const char *touchpoint;     /* properties.touchpoint, or NULL */
    const char *phase;          /* properties.phase, or NULL */
    const char *segment;        /* properties.segment, else traits.segment,
                                   else context.traits.segment, or NULL */
    ev_metric_t metric;         /* properties.metric */
    int score;                  /* properties.score, valid iff metric != NONE */
    ev_scope_t scope;           /* properties.scope, default touchpoint */
    uint32_t n_properties;      /* number of keys in properties */
} event_t;

/* The journey key: userId when present, else anonymousId (SPEC §4). */
static inline const char *event_key(const event_t *ev) {
    return ev->user_id ? ev->user_id : ev->anonymous_id;
}

#endif
