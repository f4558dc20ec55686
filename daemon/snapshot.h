/*
 * snapshot.h -- the metrics snapshot (schemas/metrics.schema.json) read from
 * Redis: every partition's funnel counters and satisfaction counts, summed
 * (funnel.c, satisfaction.c). journeyctl prints it; the output thread
 * (output.c) publishes it entry by entry and renders it for Prometheus.
 */
#ifndef JD_SNAPSHOT_H
#define JD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "funnel.h"
#include "satisfaction.h"
#include "store.h"

/* Partitions' satisfaction counts as last read, by shard, with the offset
 * they were read at and how much of the answer log they hold: counts and
 * log change only in a commit that moves the offset, so a partition whose
 * offset has not moved is not read again (its windows are still taken at
 * its new watermark), and one whose log has the same header (no checkpoint
 * since) only has the log's new records read and added; after one
 * checkpoint, the rest of the previous log and the new one. Owns the parts. */
typedef struct snapshot_cache {
    char **names;
    int64_t *offsets;             /* -2: not read (or unreadable): read it all */
    char (*hdr)[STORE_LOG_HEADER_MAX]; /* the log's header when read */
    size_t *log_len;              /* bytes of the log the part holds */
    int64_t *expired;             /* watermark the part's old buckets were last dropped at */
    sat_part_t *parts;
    size_t n, cap;
    uint64_t full_reads, tail_reads, catchup_reads; /* how partitions were read (logged) */
} snapshot_cache_t;

void snapshot_cache_free(snapshot_cache_t *c);

typedef struct snapshot {
    funnel_snap_t snap;
    const config_t *cfg;          /* borrowed */
    sat_part_t *sat;              /* every partition's satisfaction counts; owned, but the
                                     parts themselves belong to the cache if one was used */
    int cached;
    int64_t *sat_wm;              /* and its watermark; owned */
    size_t n_sat;
    int64_t clock;                /* while reading: the partition being read's clock */
    size_t log_len;               /* and the length of its answer log */
    sat_windows_t satw;
    const char *phases[CFG_MAX_PHASES];
} snapshot_t;

/* Read every partition of the shard set; 0, or -1 with errbuf (nothing to
 * free then). An unreadable satisfaction field is logged and skipped. With
 * a cache (NULL: none), satisfaction counts come from it where the
 * partition's offset has not moved; the snapshot then borrows them (valid
 * until the next read with the same cache). */
int snapshot_read(snapshot_t *s, store_t *st, const config_t *cfg, snapshot_cache_t *cache, char *errbuf,
                  size_t errlen);
void snapshot_free(snapshot_t *s);

/* The full document (as `journeyctl metrics --json`), one line. With entry
 * set, each funnel phase of a segment and each satisfaction row is also
 * handed to it (funnel_entry_fn) as it is printed. */
void snapshot_print_json(const snapshot_t *s, int64_t now_ms, funnel_entry_fn entry, void *opaque, FILE *out);

#endif
