/*
 * classify.c -- assigns a phase and a touchpoint to an event with the
 * configured rules (SPEC §2). Pure; owns nothing.
 *
 * Rules are tried in file order and the first whose given match fields all
 * equal the event's wins; the cheap checks (type, then exact strings) come
 * before the prefix test.
 */
#include "classify.h"

#include <string.h>

static int eq(const char *want, const char *have) { return !want || (have && !strcmp(want, have)); }

static int prefix(const char *want, const char *have) {
    return !want || (have && !strncmp(want, have, strlen(want)));
}

static int matches(const cfg_rule_t *r, const event_t *ev) {
    return (!r->has_type || r->type == (int)ev->type) && eq(r->event, ev->event) &&
           eq(r->channel, ev->channel) && eq(r->name, ev->name) &&
           eq(r->touchpoint_in, ev->touchpoint) && prefix(r->path_prefix, ev->page_path);
}

void classify_event(const config_t *cfg, const event_t *ev, classification_t *out) {
    const cfg_rule_t *rule = NULL;
    for (int i = 0; i < cfg->n_rules && !rule; i++)
        if (matches(&cfg->rules[i], ev)) rule = &cfg->rules[i];
    out->rule_line = rule ? rule->line : 0;
    out->phase = ev->phase ? config_phase_index(cfg, ev->phase) : rule ? rule->phase : -1;
    if (ev->touchpoint) out->touchpoint = ev->touchpoint;
    else if (rule && rule->touchpoint) out->touchpoint = rule->touchpoint;
    else if (ev->channel) out->touchpoint = ev->channel;
    else out->touchpoint = "unknown";
}

int classify_check(const config_t *cfg, const event_t *ev, char *errbuf, size_t errlen) {
    if (!ev->phase || config_phase_index(cfg, ev->phase) >= 0) return 0;
    snprintf(errbuf, errlen, "properties.phase: '%s' is not a configured phase", ev->phase);
    return -1;
}
