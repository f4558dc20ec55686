/*
 * shard.c -- names of the per-shard counters stored in Redis; the shard's
 * owned parts.
 */
#include "shard.h"

#include <stdio.h>

void shard_release(shard_t *sh) {
    funnel_delta_free(&sh->fd);
    funnel_delta_free(&sh->totals);
    funnel_reg_free(&sh->reg);
    sat_part_free(&sh->sat);
    sat_strs_free(&sh->sat_names);
    sat_strs_free(&sh->sat_vals);
    sat_strs_free(&sh->sat_gone);
}

const char *shard_stat_name(int stat) {
    static const char *const base[] = {
        "consumed", "applied", "duplicate", "unclassified", "heartbeat",
        "linked", "merged", "link_conflict", "link_capped", "late", "deadletter",
    };
    static char reasons[DL__COUNT][48];
    if (stat < STAT_DL_REASON) return base[stat];
    int r = stat - STAT_DL_REASON;
    if (!reasons[r][0])
        snprintf(reasons[r], sizeof(reasons[r]), "deadletter.%s",
                 r == DL_UNKNOWN_PHASE ? "unknown_phase"
                 : r == DL_FUTURE_TIME ? "future_timestamp"
                                       : decode_reason((decode_status_t)r));
    return reasons[r];
}
