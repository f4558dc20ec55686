/*
 * store.h -- journeyd's Redis state: per-shard journeys, consumed offsets and
 * counters, committed together atomically (SPEC §8). The only module that
 * talks to Redis. Key layout: schemas/redis.md.
 *
 * A shard is one input topic-partition, named "<topic>:<partition>"; all its
 * keys share the hash tag {<topic>:<partition>}, so they live in one slot.
 * Today one transaction commits every shard of a batch, which needs one Redis
 * server; on a Redis Cluster the same commit would be grouped per node.
 */
#ifndef JD_STORE_H
#define JD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* First byte of a value that is a redirect (identity link) instead of a
 * journey: MessagePack never uses 0xc1, so the two cannot be confused. */
#define STORE_REDIRECT 0xc1
/* Redirect chains (a customer who had absorbed ids, linked to another) are
 * followed to their end; one this long can only be a cycle. */
#define STORE_REDIRECT_HOPS_MAX 1000

typedef struct store store_t;

typedef enum {
    STORE_OK = 0,
    STORE_RETRY,      /* connection or server trouble: back off, reconnect, retry */
    STORE_FENCED,     /* stored offset is not the one expected: someone else owns the shard */
    STORE_FATAL,      /* needs a person: auth refused, a key of the wrong type, ... */
} store_status_t;

typedef struct store_blob {
    char *data;       /* owned by the caller after store_load (free()); NULL = missing */
    size_t len;
} store_blob_t;

typedef struct store_load_req {
    const char *shard;
    size_t n;
    const char *const *ids;   /* customer ids, NUL-terminated */
    store_blob_t *out;        /* n entries, filled */
} store_load_req_t;

/* A change to one journey's timer: its score is the journey's deadline (ms).
 * STORE_TIMER_LT only ever moves a timer earlier (ZADD LT), so a timer may
 * fire early, never late; STORE_TIMER_SET re-arms one that fired early. */
typedef enum { STORE_TIMER_LT = 0, STORE_TIMER_SET, STORE_TIMER_DEL } store_timer_op_t;

typedef struct store_timer {
    const char *id;
    int64_t at;               /* deadline, ms (not used by STORE_TIMER_DEL) */
    uint8_t op;               /* store_timer_op_t */
} store_timer_t;

typedef struct store_commit_req {
    const char *shard;
    int64_t expected_offset;  /* offset stored now, -1 if none */
    int64_t new_offset;       /* next offset to consume after this commit */
    int64_t expected_ioffset; /* the same of the shard's internal partition (stitch.h), -1 if none */
    int64_t new_ioffset;      /* -1: none to store */
    size_t n_fields;          /* more integer fields of the counters hash (out_seq, in|<source>) */
    const char *const *field_names;
    const int64_t *field_values;
    size_t out_trim;          /* records at the front of the outbox (list <prefix>:{shard}:x) that are
                                 delivered: removed (LTRIM) */
    size_t n_out;             /* records to append to the outbox */
    const char *const *out;
    const size_t *out_lens;
    size_t n_stats;
    const char *const *stat_names;
    const int64_t *stat_deltas;
    size_t n_metrics;         /* funnel counters' new values (same hash as the counters) */
    const char *const *metric_names;
    const int64_t *metric_values;
    size_t n_metrics_gone;    /* funnel counters to delete (windowed buckets expired) */
    const char *const *metrics_gone;
    int64_t clock;            /* the shard's event-time clock after this commit */
    int64_t closed_through;   /* its closed-through mark after this commit (batch.c) */
    int closed_moved;         /* the mark moved: remove every timer at or before it */
    size_t n_keys;
    const char *const *ids;   /* customer ids whose value changes */
    const char *const *vals;  /* new values (journey blobs or redirects); NULL = delete */
    const size_t *val_lens;
    size_t n_timers;
    const struct store_timer *timers; /* timer changes (zset <prefix>:{shard}:t) */
    size_t n_sat;             /* satisfaction fields that changed (hash <prefix>:{shard}:q) */
    const char *const *sat_names;
    const char *const *sat_values;
    size_t n_sat_gone;        /* satisfaction fields to delete */
    const char *const *sat_gone;
    const char *sat_log;      /* answer log records to append (string <prefix>:{shard}:ql) */
    size_t sat_log_len;
    int sat_log_reset;        /* a checkpoint: the answer log starts again, with the header
                                 "#<new_offset>" (a record of its own) */
    store_status_t status;    /* out: result for this shard */
} store_commit_req_t;

/* Timers due in one shard (zset <prefix>:{shard}:t, score = deadline). */
typedef struct store_due_req {
    const char *shard;
    int64_t after;            /* due: after < deadline <= until; INT64_MIN: from the first */
    int64_t until;
    size_t limit;             /* at most this many ids */
    char **ids;               /* out: malloc'ed, each id too (store_due_free) */
    int64_t *at;              /* out: each id's deadline (its score); malloc'ed */
    size_t n;
    int64_t through;          /* out: every timer due at or before it is in ids: `until`, or, if
                                 `limit` cut the list short, just before the last one's deadline */
    int64_t next;             /* out: the earliest deadline after `until`, INT64_MAX: none */
} store_due_req_t;

/* Connect, authenticate and select the db. */
store_t *store_open(const config_t *cfg, char *errbuf, size_t errlen);
void store_close(store_t *st);
/* Drop and re-establish the connection. */
store_status_t store_reconnect(store_t *st, char *errbuf, size_t errlen);
store_status_t store_ping(store_t *st, char *errbuf, size_t errlen);

/* Register a shard in the shard set and read, as of one moment, its stored
 * offset and its internal partition's (-1: none), and its outbox: out_fn is
 * called for each record, oldest first (stitch.h). */
store_status_t store_shard_open(store_t *st, const char *shard, int64_t *offset, int64_t *ioffset,
                                void (*out_fn)(const char *rec, size_t len, void *opaque), void *opaque,
                                char *errbuf, size_t errlen);

/* A shard's event-time clock (0 if none), its closed-through mark (INT64_MIN
 * if none) and its other stored counters (fn is called for each field and
 * value; funnel_learn()), with one HGETALL. */
store_status_t store_shard_state(store_t *st, const char *shard, int64_t *clock, int64_t *closed_through,
                                 void (*fn)(const char *field, int64_t value, void *opaque), void *opaque,
                                 char *errbuf, size_t errlen);

/* A shard's satisfaction counts (hash <prefix>:{shard}:q) and answer log
 * (string <prefix>:{shard}:ql), as of one moment (MULTI/EXEC, one round
 * trip): fn is called for each field and value (sat_part_learn()), then
 * log_fn once with the log (len 0 if there is none; sat_part_replay()).
 * If hdr is not NULL it gets the log's header: its first record if that is
 * a checkpoint's "#<offset>", else "" (a log no checkpoint has started). */
#define STORE_LOG_HEADER_MAX 24
store_status_t store_shard_sat(store_t *st, const char *shard,
                               void (*fn)(const char *field, const char *value, void *opaque),
                               void (*log_fn)(const char *log, size_t len, void *opaque), void *opaque,
                               char *hdr, size_t hdr_cap, char *errbuf, size_t errlen);
/* The answer log's header (as above) and the log from byte `from` on, as of
 * one moment: a reader that has read the counts and the log up to `from`
 * while the log had the same header adds the tail and has the counts of
 * now. A different header: a checkpoint came in between (the counts
 * changed), read it all again. */
store_status_t store_shard_sat_tail(store_t *st, const char *shard, size_t from, char *hdr, size_t hdr_cap,
                                    void (*log_fn)(const char *log, size_t len, void *opaque), void *opaque,
                                    char *errbuf, size_t errlen);
/* After a checkpoint: the previous log's header (<prefix>:{shard}:qp, the
 * log the last checkpoint ended) into prev_hdr and its bytes from `from` on,
 * then the whole log and its header into hdr, as of one moment; log_fn is
 * called twice (the previous log's tail, then the log). A reader whose log
 * had prev_hdr's header adds both and has the counts of now; otherwise more
 * than one checkpoint came in between, read it all again. */
store_status_t store_shard_sat_catchup(store_t *st, const char *shard, size_t from, char *prev_hdr, size_t prev_cap,
                                       char *hdr, size_t hdr_cap,
                                       void (*log_fn)(const char *log, size_t len, void *opaque), void *opaque,
                                       char *errbuf, size_t errlen);

/* The alert rules' state (hash <prefix>:alerts, schemas/redis.md): fn is
 * called for each field and value, with one HGETALL. */
store_status_t store_alerts_load(store_t *st, void (*fn)(const char *field, const char *value, void *opaque),
                                 void *opaque, char *errbuf, size_t errlen);
/* Set fields[i] to values[i] (NULL: delete the field) in <prefix>:alerts,
 * together (MULTI/EXEC). */
store_status_t store_alerts_save(store_t *st, size_t n, const char *const *fields, const char *const *values,
                                 char *errbuf, size_t errlen);

/* The due timers of several shards and the values of ids of several shards,
 * in one round trip (the loads as store_load()). On success the due ids are
 * the caller's to release with store_due_free(). */
store_status_t store_due_load(store_t *st, store_due_req_t *due, size_t ndue, store_load_req_t *reqs,
                              size_t nreq, char *errbuf, size_t errlen);
void store_due_free(store_due_req_t *reqs, size_t nreq);

/* Load the values of ids of several shards in one round trip. */
store_status_t store_load(store_t *st, store_load_req_t *reqs, size_t nreq,
                          char *errbuf, size_t errlen);

/* The two halves of store_load(): queue and send the loads; read the replies.
 * Replies come back in the order commands were sent. */
store_status_t store_load_send(store_t *st, store_load_req_t *reqs, size_t nreq,
                               char *errbuf, size_t errlen);
store_status_t store_load_recv(store_t *st, store_load_req_t *reqs, size_t nreq,
                               char *errbuf, size_t errlen);

/* The two halves of store_commit(). reqs must stay valid until the recv;
 * everything they point to may be freed after the send. */
store_status_t store_commit_send(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                 char *errbuf, size_t errlen);
store_status_t store_commit_recv(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                 char *errbuf, size_t errlen);

/* Commit several shards: a checked WATCH round trip, then one MULTI/EXEC.
 * Returns STORE_OK if every shard's status is STORE_OK or STORE_FENCED. */
store_status_t store_commit(store_t *st, store_commit_req_t *reqs, size_t nreq,
                            char *errbuf, size_t errlen);

/* The shards that have ever been opened (set <prefix>:shards); *names is
 * malloc'ed, each name too (caller frees). */
store_status_t store_shards(store_t *st, char ***names, size_t *n, char *errbuf, size_t errlen);

/* Read a shard's counters (hash <prefix>:{shard}:s) and offset. Calls
 * fn(name, value, opaque) for each counter, "clock" (if there is one)
 * first; *offset = -1 if none. */
store_status_t store_shard_stats(store_t *st, const char *shard, int64_t *offset,
                                 void (*fn)(const char *, long long, void *), void *opaque,
                                 char *errbuf, size_t errlen);

/* Call fn for every journey or redirect value stored (SCAN, so it is safe on
 * a live server but may see a value twice if it changes meanwhile). */
typedef void (*store_scan_fn)(const char *shard, const char *id, const char *val, size_t len,
                              void *opaque);
store_status_t store_scan(store_t *st, store_scan_fn fn, void *opaque, char *errbuf, size_t errlen);

/* Round trips and commands sent since store_open (for the benchmark). */
void store_counters(const store_t *st, uint64_t *round_trips, uint64_t *commands);

/* Build a key "<prefix>:{<shard>}:<kind>[:<id>]" into buf; returns length or -1. */
int store_key(const char *prefix, const char *shard, const char *kind, const char *id,
              char *buf, size_t cap);

#endif
