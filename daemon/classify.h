/*
 * classify.h -- map an event to a phase and a touchpoint with the config's
 * rules (SPEC §2). Pure, no I/O.
 */
#ifndef JD_CLASSIFY_H
#define JD_CLASSIFY_H

#include "config.h"
#include "event.h"

typedef struct classification {
    int phase;              /* phase index, or -1: unclassified (no phase change) */
    const char *touchpoint; /* never NULL; points into the event or the config */
    int rule_line;          /* line of the matching rule, 0 if none matched */
} classification_t;

/*
 * Classify `ev`:
 *  - phase: properties.phase if it names a configured phase (an unknown
 *    properties.phase is a validation error caught by classify_check()),
 *    else the first matching rule's phase, else -1.
 *  - touchpoint: properties.touchpoint, else the matching rule's touchpoint,
 *    else context.channel, else "unknown".
 */
void classify_event(const config_t *cfg, const event_t *ev, classification_t *out);

/* 0 if ev is acceptable for this config, else -1 with a reason in errbuf
 * (currently: properties.phase names no configured phase). */
int classify_check(const config_t *cfg, const event_t *ev, char *errbuf, size_t errlen);

#endif
