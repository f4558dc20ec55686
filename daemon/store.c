/*
 * store.c -- Redis access for journeyd (hiredis, synchronous, pipelined).
 *
 * Owns one redisContext. Everything a batch needs is pipelined: store_load()
 * issues one MGET per shard and reads the replies back (one round trip);
 * store_commit() costs two round trips whatever the number of shards. The
 * _send and _recv halves let the caller work while Redis does.
 *
 * The commit is the exactly-once boundary. First, under WATCH on every
 * shard's offset key, it reads the stored offsets and the counters' types:
 * a shard whose stored offset is not the one this consumer last committed is
 * fenced (another owner since a rebalance) and left out, and one whose
 * counters key is not a hash or timers key not a sorted set is refused, so
 * nothing in the transaction can fail. Then one MULTI/EXEC writes, per
 * shard, the journeys and redirects (MSET, DEL), their timers (ZADD LT,
 * ZADD to re-arm one that fired early, ZREM), the counter deltas (HINCRBY),
 * the funnel counters' new totals and the event-time clock (HSET) and, last,
 * the new offset. EXEC
 * applies all of it or, if a watched offset changed in between, nothing.
 * (A transaction does not roll back a failed command: hence the check.)
 */
#include "store.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"
#include "text.h"

struct store {
    const config_t *cfg;       /* borrowed; outlives the store */
    redisContext *c;           /* owned */
    size_t txn_queued;         /* commands queued in the transaction in flight */
    int txn_sent;              /* a MULTI ... EXEC is in flight */
    uint64_t round_trips, commands;
};

int store_key(const char *prefix, const char *shard, const char *kind, const char *id,
              char *buf, size_t cap) {
    int n = id ? snprintf(buf, cap, "%s:{%s}:%s:%s", prefix, shard, kind, id)
               : snprintf(buf, cap, "%s:{%s}:%s", prefix, shard, kind);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static struct timeval ms_tv(int ms) {
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* Send one command and read its reply (one round trip). Caller frees. */
static redisReply *command_argv(store_t *st, int argc, const char **argv, const size_t *lens) {
    st->round_trips++;
    st->commands++;
    return redisCommandArgv(st->c, argc, argv, lens);
}

static store_status_t reply_error(store_t *st, redisReply *r, const char *what,
                                  char *errbuf, size_t errlen) {
    if (!r) {
        snprintf(errbuf, errlen, "redis %s: %s", what, st->c->errstr[0] ? st->c->errstr : "no reply");
        return STORE_RETRY;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(errbuf, errlen, "redis %s: %s", what, r->str);
        freeReplyObject(r);
        return STORE_FATAL;
    }
    return STORE_OK;
}

static store_status_t authenticate(store_t *st, char *errbuf, size_t errlen) {
    const config_t *cfg = st->cfg;
    if (!cfg->redis_password[0]) return STORE_OK;
    const char *argv[3] = {"AUTH", cfg->redis_user, cfg->redis_password};
    int argc = 3;
    if (!cfg->redis_user[0]) {
        argv[1] = cfg->redis_password;
        argc = 2;
    }
    redisReply *r = command_argv(st, argc, argv, NULL);
    /* The reply may echo nothing secret, but never log the password itself. */
    store_status_t s = reply_error(st, r, "AUTH", errbuf, errlen);
    if (s == STORE_OK) freeReplyObject(r);
    return s;
}

static store_status_t select_db(store_t *st, char *errbuf, size_t errlen) {
    if (!st->cfg->redis_db) return STORE_OK;
    redisReply *r = redisCommand(st->c, "SELECT %d", st->cfg->redis_db);
    st->round_trips++;
    store_status_t s = reply_error(st, r, "SELECT", errbuf, errlen);
    if (s == STORE_OK) freeReplyObject(r);
    return s;
}

static store_status_t connect_ctx(store_t *st, char *errbuf, size_t errlen) {
    const config_t *cfg = st->cfg;
    struct timeval ct = ms_tv(cfg->redis_connect_timeout_ms);
    if (st->c) redisFree(st->c);
    st->c = cfg->redis_unix_socket[0] ? redisConnectUnixWithTimeout(cfg->redis_unix_socket, ct)
                                      : redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, ct);
    if (!st->c || st->c->err) {
        snprintf(errbuf, errlen, "redis connect %s: %s",
                 cfg->redis_unix_socket[0] ? cfg->redis_unix_socket : cfg->redis_host,
                 st->c ? st->c->errstr : "out of memory");
        return STORE_RETRY;
    }
    redisSetTimeout(st->c, ms_tv(cfg->redis_command_timeout_ms));
    store_status_t s = authenticate(st, errbuf, errlen);
    if (s == STORE_OK) s = select_db(st, errbuf, errlen);
    st->txn_sent = 0;
    st->txn_queued = 0;
    return s;
}

store_t *store_open(const config_t *cfg, char *errbuf, size_t errlen) {
    store_t *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    st->cfg = cfg;
    if (connect_ctx(st, errbuf, errlen) != STORE_OK) {
        store_close(st);
        return NULL;
    }
    return st;
}

void store_close(store_t *st) {
    if (!st) return;
    if (st->c) redisFree(st->c);
    free(st);
}

store_status_t store_reconnect(store_t *st, char *errbuf, size_t errlen) {
    return connect_ctx(st, errbuf, errlen);
}

store_status_t store_ping(store_t *st, char *errbuf, size_t errlen) {
    const char *argv[1] = {"PING"};
    redisReply *r = command_argv(st, 1, argv, NULL);
    store_status_t s = reply_error(st, r, "PING", errbuf, errlen);
    if (s == STORE_OK) freeReplyObject(r);
    return s;
}

store_status_t store_shard_open(store_t *st, const char *shard, int64_t *offset, int64_t *ioffset,
                                void (*out_fn)(const char *rec, size_t len, void *opaque), void *opaque,
                                char *errbuf, size_t errlen) {
    char key[512], ikey[512], xkey[512], set[256];
    redisReply *r;
    store_status_t s = STORE_OK;
    snprintf(set, sizeof(set), "%s:shards", st->cfg->redis_prefix);
    if (store_key(st->cfg->redis_prefix, shard, "o", NULL, key, sizeof(key)) < 0 ||
        store_key(st->cfg->redis_prefix, shard, "oi", NULL, ikey, sizeof(ikey)) < 0 ||
        store_key(st->cfg->redis_prefix, shard, "x", NULL, xkey, sizeof(xkey)) < 0) {
        snprintf(errbuf, errlen, "shard name too long: %s", shard);
        return STORE_FATAL;
    }
    redisAppendCommand(st->c, "SADD %s %s", set, shard);
    redisAppendCommand(st->c, "MULTI");
    redisAppendCommand(st->c, "GET %s", key);
    redisAppendCommand(st->c, "GET %s", ikey);
    redisAppendCommand(st->c, "LRANGE %s 0 -1", xkey);
    redisAppendCommand(st->c, "EXEC");
    st->round_trips++;
    st->commands += 6;
    static const char *const WHAT[] = {"SADD shards", "MULTI", "GET offset", "GET offset", "LRANGE outbox",
                                       "EXEC"};
    for (int i = 0; i < 6; i++) {
        if (redisGetReply(st->c, (void **)&r) != REDIS_OK) r = NULL;
        store_status_t e = reply_error(st, r, WHAT[i], errbuf, errlen);
        if (e != STORE_OK) {
            if (e == STORE_RETRY && !r) return e; /* the connection is gone */
            s = s == STORE_OK ? e : s;
            continue;
        }
        if (i == 5 && s == STORE_OK) {
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
                snprintf(errbuf, errlen, "redis: the transaction reading %s was aborted", shard);
                s = STORE_RETRY;
            }
            for (int k = 0; s == STORE_OK && k < 2; k++) {
                const redisReply *v = r->element[k];
                int64_t *dst = k ? ioffset : offset;
                char *end = NULL;
                *dst = -1;
                if (v->type == REDIS_REPLY_STRING) *dst = strtoll(v->str, &end, 10);
                if (v->type == REDIS_REPLY_ERROR || (v->type == REDIS_REPLY_STRING && (!end || *end))) {
                    snprintf(errbuf, errlen, "redis %s: not an offset", k ? ikey : key);
                    s = STORE_FATAL;
                }
            }
            const redisReply *x = s == STORE_OK ? r->element[2] : NULL;
            if (x && x->type != REDIS_REPLY_ARRAY) {
                snprintf(errbuf, errlen, "redis %s: not a list", xkey);
                s = STORE_FATAL;
            }
            for (size_t k = 0; x && s == STORE_OK && k < x->elements; k++)
                if (out_fn && x->element[k]->type == REDIS_REPLY_STRING)
                    out_fn(x->element[k]->str, x->element[k]->len, opaque);
        }
        freeReplyObject(r);
    }
    return s;
}

/* A growable argv for one pipelined command; keys are formatted into `text`. */
typedef struct argvbuf {
    const char **argv;
    size_t *lens;
    size_t argc;
    char *text;
    size_t used, cap;
} argvbuf_t;

static int argv_init(argvbuf_t *a, size_t argc_max, size_t text_cap) {
    memset(a, 0, sizeof(*a));
    a->argv = malloc(argc_max * sizeof(*a->argv));
    a->lens = malloc(argc_max * sizeof(*a->lens));
    a->text = malloc(text_cap);
    a->cap = text_cap;
    return a->argv && a->lens && a->text ? 0 : -1;
}

static void argv_free(argvbuf_t *a) {
    free(a->argv);
    free(a->lens);
    free(a->text);
}

static void argv_add(argvbuf_t *a, const char *s, size_t len) {
    a->argv[a->argc] = s;
    a->lens[a->argc++] = len;
}

/* Format a key into the text area and add it; text_cap was sized for it. */
static void argv_add_key(argvbuf_t *a, const char *prefix, const char *shard,
                         const char *kind, const char *id) {
    char *p = a->text + a->used;
    int n = store_key(prefix, shard, kind, id, p, a->cap - a->used);
    if (n < 0) abort(); /* sized by key_text_cap(): cannot happen */
    a->used += (size_t)n + 1;
    argv_add(a, p, (size_t)n);
}

static size_t key_text_cap(const char *prefix, const char *shard, size_t n,
                           const char *const *ids) {
    size_t per = strlen(prefix) + strlen(shard) + 16;
    size_t cap = 2 * per + 64;
    for (size_t i = 0; i < n; i++) cap += per + strlen(ids[i]);
    return cap;
}

static store_status_t read_replies(store_t *st, size_t n, redisReply **replies,
                                   char *errbuf, size_t errlen) {
    store_status_t s = STORE_OK;
    for (size_t i = 0; i < n; i++) {
        if (redisGetReply(st->c, (void **)&replies[i]) != REDIS_OK) {
            for (size_t k = 0; k < i; k++) freeReplyObject(replies[k]);
            snprintf(errbuf, errlen, "redis: %s", st->c->errstr);
            return STORE_RETRY;
        }
    }
    return s;
}

static store_status_t load_one(const store_load_req_t *q, redisReply *r, char *errbuf,
                               size_t errlen) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != q->n) {
        snprintf(errbuf, errlen, "redis MGET %s: %s", q->shard,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return STORE_RETRY;
    }
    for (size_t i = 0; i < q->n; i++) {
        redisReply *e = r->element[i];
        q->out[i].data = NULL;
        q->out[i].len = 0;
        if (e->type != REDIS_REPLY_STRING) continue;
        q->out[i].data = malloc(e->len ? e->len : 1);
        if (!q->out[i].data) abort();
        memcpy(q->out[i].data, e->str, e->len);
        q->out[i].len = e->len;
    }
    return STORE_OK;
}

/* Send what is queued in hiredis's output buffer without waiting for replies. */
static store_status_t flush_out(store_t *st, char *errbuf, size_t errlen) {
    int done = 0;
    while (!done) {
        if (redisBufferWrite(st->c, &done) == REDIS_ERR) {
            snprintf(errbuf, errlen, "redis: %s", st->c->errstr);
            return STORE_RETRY;
        }
    }
    return STORE_OK;
}

store_status_t store_load_send(store_t *st, store_load_req_t *reqs, size_t nreq,
                               char *errbuf, size_t errlen) {
    for (size_t q = 0; q < nreq; q++) {
        if (!reqs[q].n) continue;
        argvbuf_t a;
        if (argv_init(&a, reqs[q].n + 1,
                      key_text_cap(st->cfg->redis_prefix, reqs[q].shard, reqs[q].n, reqs[q].ids)) < 0)
            abort();
        argv_add(&a, "MGET", 4);
        for (size_t i = 0; i < reqs[q].n; i++)
            argv_add_key(&a, st->cfg->redis_prefix, reqs[q].shard, "j", reqs[q].ids[i]);
        redisAppendCommandArgv(st->c, (int)a.argc, a.argv, a.lens);
        argv_free(&a);
        st->commands++;
    }
    return flush_out(st, errbuf, errlen);
}

store_status_t store_load_recv(store_t *st, store_load_req_t *reqs, size_t nreq,
                               char *errbuf, size_t errlen) {
    store_status_t s = STORE_OK;
    size_t sent = 0;
    for (size_t q = 0; q < nreq; q++) sent += reqs[q].n > 0;
    if (!sent) return STORE_OK;
    redisReply **replies = calloc(sent, sizeof(*replies));
    if (!replies) abort();
    st->round_trips++;
    if ((s = read_replies(st, sent, replies, errbuf, errlen)) != STORE_OK) goto out;
    for (size_t q = 0, k = 0; q < nreq; q++) {
        if (!reqs[q].n) continue;
        if (s == STORE_OK) s = load_one(&reqs[q], replies[k], errbuf, errlen);
        freeReplyObject(replies[k++]);
    }
out:
    free(replies);
    return s;
}

store_status_t store_load(store_t *st, store_load_req_t *reqs, size_t nreq,
                          char *errbuf, size_t errlen) {
    store_status_t s = store_load_send(st, reqs, nreq, errbuf, errlen);
    return s == STORE_OK ? store_load_recv(st, reqs, nreq, errbuf, errlen) : s;
}

store_status_t store_shard_state(store_t *st, const char *shard, int64_t *clock, int64_t *closed_through,
                                 void (*fn)(const char *field, int64_t value, void *opaque), void *opaque,
                                 char *errbuf, size_t errlen) {
    char key[512];
    redisReply *r;
    store_status_t s;
    if (store_key(st->cfg->redis_prefix, shard, "s", NULL, key, sizeof(key)) < 0) {
        snprintf(errbuf, errlen, "shard name too long: %s", shard);
        return STORE_FATAL;
    }
    redisAppendCommand(st->c, "HGETALL %s", key);
    st->round_trips++;
    st->commands++;
    s = read_replies(st, 1, &r, errbuf, errlen);
    if (s != STORE_OK) return s;
    *clock = 0;
    *closed_through = INT64_MIN;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(errbuf, errlen, "redis %s: %s", key, r->str);
        s = STORE_FATAL;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        int64_t v = strtoll(r->element[i + 1]->str, NULL, 10);
        if (!strcmp(r->element[i]->str, "clock")) *clock = v;
        else if (!strcmp(r->element[i]->str, "closed_through")) *closed_through = v;
        else fn(r->element[i]->str, v, opaque);
    }
    freeReplyObject(r);
    return s;
}

/* After MULTI and n commands: send EXEC and read EXEC's replies into
 * r[0..n) (the caller frees them; r NULL: they are freed here), one round
 * trip: the commands see one state of Redis, with no commit between them,
 * and write all or nothing. An error reply to a command is STORE_FATAL. */
static store_status_t read_atomic(store_t *st, size_t n, redisReply **r, const char *what, char *errbuf,
                                  size_t errlen) {
    redisReply **rep = malloc((n + 2) * sizeof(*rep));
    if (!rep) abort();
    redisAppendCommand(st->c, "EXEC");
    st->round_trips++;
    st->commands += n + 2;
    store_status_t s = read_replies(st, n + 2, rep, errbuf, errlen);
    if (s != STORE_OK) {
        free(rep);
        return s;
    }
    redisReply *x = rep[n + 1];
    if (x->type != REDIS_REPLY_ARRAY || x->elements != n) {
        snprintf(errbuf, errlen, "redis %s: %s", what, x->type == REDIS_REPLY_ERROR ? x->str : "transaction refused");
        s = STORE_RETRY;
    }
    for (size_t i = 0; s == STORE_OK && i < n; i++)
        if (x->element[i]->type == REDIS_REPLY_ERROR) {
            snprintf(errbuf, errlen, "redis %s: %s", what, x->element[i]->str);
            s = STORE_FATAL;
        }
    for (size_t i = 0; r && s == STORE_OK && i < n; i++) {
        r[i] = x->element[i];
        x->element[i] = NULL; /* the caller's now */
    }
    for (size_t i = 0; i < n + 2; i++) freeReplyObject(rep[i]);
    free(rep);
    return s;
}

/* The key of one of shard's structures (store_key()); STORE_FATAL, said
 * why, if the name does not fit. */
static store_status_t shard_key(const store_t *st, const char *shard, const char *kind, char *buf, size_t cap,
                                char *errbuf, size_t errlen) {
    if (store_key(st->cfg->redis_prefix, shard, kind, NULL, buf, cap) >= 0) return STORE_OK;
    snprintf(errbuf, errlen, "shard name too long: %s", shard);
    return STORE_FATAL;
}

/* A log read (a string, or nil: none) handed to log_fn. */
static void hand_log(void (*log_fn)(const char *, size_t, void *), const redisReply *r, void *opaque) {
    int str = r->type == REDIS_REPLY_STRING;
    log_fn(str ? r->str : "", str ? r->len : 0, opaque);
}

static void log_header(const redisReply *r, char *hdr, size_t cap) {
    size_t n = 0;
    if (r->type == REDIS_REPLY_STRING && r->len && r->str[0] == '#')
        while (n < r->len && r->str[n] && n + 1 < cap) n++;
    memcpy(hdr, r->type == REDIS_REPLY_STRING ? r->str : "", n);
    hdr[n] = '\0';
}

store_status_t store_shard_sat(store_t *st, const char *shard,
                               void (*fn)(const char *field, const char *value, void *opaque),
                               void (*log_fn)(const char *log, size_t len, void *opaque), void *opaque,
                               char *hdr, size_t hdr_cap, char *errbuf, size_t errlen) {
    char key[512], lkey[512];
    redisReply *r[2];
    if (shard_key(st, shard, "q", key, sizeof(key), errbuf, errlen) != STORE_OK ||
        shard_key(st, shard, "ql", lkey, sizeof(lkey), errbuf, errlen) != STORE_OK)
        return STORE_FATAL;
    redisAppendCommand(st->c, "MULTI");
    redisAppendCommand(st->c, "HGETALL %s", key);
    redisAppendCommand(st->c, "GET %s", lkey);
    store_status_t s = read_atomic(st, 2, r, key, errbuf, errlen);
    if (s != STORE_OK) return s;
    for (size_t i = 0; r[0]->type == REDIS_REPLY_ARRAY && i + 1 < r[0]->elements; i += 2)
        fn(r[0]->element[i]->str, r[0]->element[i + 1]->str, opaque);
    hand_log(log_fn, r[1], opaque);
    if (hdr) log_header(r[1], hdr, hdr_cap);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return s;
}

store_status_t store_shard_sat_catchup(store_t *st, const char *shard, size_t from, char *prev_hdr, size_t prev_cap,
                                       char *hdr, size_t hdr_cap,
                                       void (*log_fn)(const char *log, size_t len, void *opaque), void *opaque,
                                       char *errbuf, size_t errlen) {
    char lkey[512], pkey[512];
    redisReply *r[3];
    if (shard_key(st, shard, "ql", lkey, sizeof(lkey), errbuf, errlen) != STORE_OK ||
        shard_key(st, shard, "qp", pkey, sizeof(pkey), errbuf, errlen) != STORE_OK)
        return STORE_FATAL;
    redisAppendCommand(st->c, "MULTI");
    redisAppendCommand(st->c, "GETRANGE %s 0 %d", pkey, STORE_LOG_HEADER_MAX - 1);
    redisAppendCommand(st->c, "GETRANGE %s %lld -1", pkey, (long long)from);
    redisAppendCommand(st->c, "GET %s", lkey);
    store_status_t s = read_atomic(st, 3, r, lkey, errbuf, errlen);
    if (s != STORE_OK) return s;
    log_header(r[0], prev_hdr, prev_cap);
    log_header(r[2], hdr, hdr_cap);
    hand_log(log_fn, r[1], opaque);
    hand_log(log_fn, r[2], opaque);
    for (int k = 0; k < 3; k++) freeReplyObject(r[k]);
    return STORE_OK;
}

store_status_t store_shard_sat_tail(store_t *st, const char *shard, size_t from, char *hdr, size_t hdr_cap,
                                    void (*log_fn)(const char *log, size_t len, void *opaque), void *opaque,
                                    char *errbuf, size_t errlen) {
    char lkey[512];
    redisReply *r[2];
    if (shard_key(st, shard, "ql", lkey, sizeof(lkey), errbuf, errlen) != STORE_OK) return STORE_FATAL;
    redisAppendCommand(st->c, "MULTI");
    redisAppendCommand(st->c, "GETRANGE %s 0 %d", lkey, STORE_LOG_HEADER_MAX - 1);
    redisAppendCommand(st->c, "GETRANGE %s %lld -1", lkey, (long long)from);
    store_status_t s = read_atomic(st, 2, r, lkey, errbuf, errlen);
    if (s != STORE_OK) return s;
    log_header(r[0], hdr, hdr_cap);
    hand_log(log_fn, r[1], opaque); /* GETRANGE past the end: "" */
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return STORE_OK;
}

store_status_t store_alerts_load(store_t *st, void (*fn)(const char *field, const char *value, void *opaque),
                                 void *opaque, char *errbuf, size_t errlen) {
    redisReply *r;
    redisAppendCommand(st->c, "HGETALL %s:alerts", st->cfg->redis_prefix);
    st->round_trips++;
    st->commands++;
    store_status_t s = read_replies(st, 1, &r, errbuf, errlen);
    if (s != STORE_OK) return s;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(errbuf, errlen, "redis %s:alerts: %s", st->cfg->redis_prefix, r->str);
        s = STORE_FATAL;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        fn(r->element[i]->str, r->element[i + 1]->str, opaque);
    freeReplyObject(r);
    return s;
}

store_status_t store_alerts_save(store_t *st, size_t n, const char *const *fields, const char *const *values,
                                 char *errbuf, size_t errlen) {
    redisAppendCommand(st->c, "MULTI");
    for (size_t i = 0; i < n; i++) {
        if (values[i]) redisAppendCommand(st->c, "HSET %s:alerts %s %s", st->cfg->redis_prefix, fields[i], values[i]);
        else redisAppendCommand(st->c, "HDEL %s:alerts %s", st->cfg->redis_prefix, fields[i]);
    }
    return read_atomic(st, n, NULL, "alerts", errbuf, errlen);
}

static void due_send(store_t *st, store_due_req_t *reqs, size_t nreq) {
    char key[512], from[26], until[24], after[26], limit[24];
    for (size_t q = 0; q < nreq; q++) {
        store_key(st->cfg->redis_prefix, reqs[q].shard, "t", NULL, key, sizeof(key));
        if (reqs[q].after == INT64_MIN) snprintf(from, sizeof(from), "-inf");
        else snprintf(from, sizeof(from), "(%lld", (long long)reqs[q].after);
        snprintf(until, sizeof(until), "%lld", (long long)reqs[q].until);
        snprintf(after, sizeof(after), "(%lld", (long long)reqs[q].until);
        snprintf(limit, sizeof(limit), "%zu", reqs[q].limit);
        redisAppendCommandArgv(st->c, 8,
                               (const char *[]){"ZRANGEBYSCORE", key, from, until, "WITHSCORES", "LIMIT", "0", limit},
                               NULL);
        redisAppendCommandArgv(st->c, 8, (const char *[]){"ZRANGEBYSCORE", key, after, "+inf", "WITHSCORES", "LIMIT", "0", "1"}, NULL);
        reqs[q].ids = NULL;
        reqs[q].at = NULL;
        reqs[q].n = 0;
    }
    st->commands += 2 * nreq;
}

static store_status_t due_recv(store_t *st, store_due_req_t *reqs, size_t nreq, char *errbuf, size_t errlen) {
    if (!nreq) return STORE_OK;
    redisReply **r = calloc(2 * nreq, sizeof(*r));
    if (!r) abort();
    store_status_t s = read_replies(st, 2 * nreq, r, errbuf, errlen);
    if (s != STORE_OK) { /* read_replies freed what it read */
        free(r);
        return s;
    }
    for (size_t q = 0; s == STORE_OK && q < nreq; q++) {
        redisReply *a = r[2 * q], *b = r[2 * q + 1];
        if (a->type != REDIS_REPLY_ARRAY || b->type != REDIS_REPLY_ARRAY) {
            snprintf(errbuf, errlen, "redis ZRANGEBYSCORE %s: %s", reqs[q].shard,
                     a->type == REDIS_REPLY_ERROR ? a->str : b->type == REDIS_REPLY_ERROR ? b->str : "unexpected reply");
            s = STORE_FATAL;
            break;
        }
        reqs[q].ids = calloc(a->elements / 2 + 1, sizeof(char *));
        reqs[q].at = calloc(a->elements / 2 + 1, sizeof(int64_t));
        if (!reqs[q].ids || !reqs[q].at) abort();
        for (size_t i = 0; i + 1 < a->elements; i += 2) { /* id, score */
            reqs[q].at[reqs[q].n] = strtoll(a->element[i + 1]->str, NULL, 10);
            reqs[q].ids[reqs[q].n] = strndup(a->element[i]->str, a->element[i]->len);
            if (!reqs[q].ids[reqs[q].n++]) abort();
        }
        /* sorted by deadline: short of the limit, they are all there; else
         * all of those before the last one's (its ties may be cut off) */
        reqs[q].through = reqs[q].n < reqs[q].limit ? reqs[q].until
                        : reqs[q].n ? reqs[q].at[reqs[q].n - 1] - 1 : INT64_MIN;
        reqs[q].next = b->elements == 2 ? strtoll(b->element[1]->str, NULL, 10) : INT64_MAX;
    }
    for (size_t i = 0; i < 2 * nreq; i++) freeReplyObject(r[i]);
    if (s != STORE_OK) store_due_free(reqs, nreq);
    free(r);
    return s;
}

store_status_t store_due_load(store_t *st, store_due_req_t *due, size_t ndue, store_load_req_t *reqs,
                              size_t nreq, char *errbuf, size_t errlen) {
    size_t loads = 0;
    for (size_t q = 0; q < nreq; q++) loads += reqs[q].n > 0;
    due_send(st, due, ndue);
    store_status_t s = store_load_send(st, reqs, nreq, errbuf, errlen); /* sends both */
    if (s == STORE_OK) s = due_recv(st, due, ndue, errbuf, errlen);
    if (s == STORE_OK) {
        s = store_load_recv(st, reqs, nreq, errbuf, errlen);
        if (s != STORE_OK) store_due_free(due, ndue);
        else if (ndue && !loads) st->round_trips++; /* store_load_recv() counted it otherwise */
    }
    /* On an error, replies may be left unread: the caller's back-off
     * reconnects before the connection is used again. */
    return s;
}

void store_due_free(store_due_req_t *reqs, size_t nreq) {
    for (size_t q = 0; q < nreq; q++) {
        for (size_t i = 0; i < reqs[q].n; i++) free(reqs[q].ids[i]);
        free(reqs[q].ids);
        free(reqs[q].at);
        reqs[q].ids = NULL;
        reqs[q].at = NULL;
        reqs[q].n = 0;
    }
}

/* The check before the transaction: WATCH every offset key, then read the
 * offsets and the counters' types. A shard whose stored offset is not the
 * expected one is fenced (someone else owns or owned it) and left out; one
 * whose counters key is not a hash would make a write fail, so nothing of it
 * is written either. */
#define PER_SHARD 7 /* replies per shard: its offset, its internal offset, then the types of its s, t, q, ql
                      and x keys */
static store_status_t commit_check(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                   char *errbuf, size_t errlen) {
    argvbuf_t a;
    char key[512];
    size_t cap = 64;
    for (size_t q = 0; q < nreq; q++) cap += strlen(reqs[q].shard) + strlen(st->cfg->redis_prefix) + 16;
    if (argv_init(&a, 2 * nreq + 1, 2 * cap) < 0) abort();
    argv_add(&a, "WATCH", 5);
    for (size_t q = 0; q < nreq; q++) {
        argv_add_key(&a, st->cfg->redis_prefix, reqs[q].shard, "o", NULL);
        argv_add_key(&a, st->cfg->redis_prefix, reqs[q].shard, "oi", NULL);
    }
    redisAppendCommandArgv(st->c, (int)a.argc, a.argv, a.lens);
    for (size_t q = 0; q < nreq; q++) {
        redisAppendCommandArgv(st->c, 2, (const char *[]){"GET", a.argv[2 * q + 1]}, (size_t[]){3, a.lens[2 * q + 1]});
        redisAppendCommandArgv(st->c, 2, (const char *[]){"GET", a.argv[2 * q + 2]}, (size_t[]){3, a.lens[2 * q + 2]});
        store_key(st->cfg->redis_prefix, reqs[q].shard, "s", NULL, key, sizeof(key));
        redisAppendCommand(st->c, "TYPE %s", key);
        store_key(st->cfg->redis_prefix, reqs[q].shard, "t", NULL, key, sizeof(key));
        redisAppendCommand(st->c, "TYPE %s", key);
        store_key(st->cfg->redis_prefix, reqs[q].shard, "q", NULL, key, sizeof(key));
        redisAppendCommand(st->c, "TYPE %s", key);
        store_key(st->cfg->redis_prefix, reqs[q].shard, "ql", NULL, key, sizeof(key));
        redisAppendCommand(st->c, "TYPE %s", key);
        store_key(st->cfg->redis_prefix, reqs[q].shard, "x", NULL, key, sizeof(key));
        redisAppendCommand(st->c, "TYPE %s", key);
    }
    argv_free(&a);
    st->commands += 1 + PER_SHARD * nreq;
    st->round_trips++;
    redisReply *r;
    store_status_t s = STORE_OK;
    static const char *const WHAT[] = {"counters", "timers", "satisfaction counts", "answer log", "outbox"};
    static const char *const WANT[] = {"hash", "zset", "hash", "string", "list"};
    for (size_t i = 0; i < 1 + PER_SHARD * nreq; i++) {
        if (redisGetReply(st->c, (void **)&r) != REDIS_OK) {
            snprintf(errbuf, errlen, "redis: %s", st->c->errstr);
            return STORE_RETRY;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(errbuf, errlen, "redis commit check: %s", r->str);
            s = STORE_RETRY;
        } else if (i > 0 && (i - 1) % PER_SHARD < 2) {  /* GET offset, GET internal offset */
            store_commit_req_t *q = &reqs[(i - 1) / PER_SHARD];
            int internal = (i - 1) % PER_SHARD == 1;
            long long cur = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
            long long want = internal ? q->expected_ioffset : q->expected_offset;
            if (cur != want && q->status == STORE_OK) {
                q->status = STORE_FENCED;
                log_warn("shard fenced: stored offset differs from ours", "shard=%s offset=%s expected=%lld stored=%lld",
                         q->shard, internal ? "internal" : "input", want, cur);
            } else if (!internal) {
                q->status = STORE_OK;
            }
        } else if (i > 0) {                         /* TYPE counters, timers, satisfaction, log, outbox */
            store_commit_req_t *q = &reqs[(i - 1) / PER_SHARD];
            int k = (int)((i - 1) % PER_SHARD) - 2;
            if (strcmp(r->str, WANT[k]) && strcmp(r->str, "none") && q->status == STORE_OK) {
                snprintf(errbuf, errlen, "redis: %s of %s are a %s, not a %s", WHAT[k], q->shard, r->str,
                         WANT[k]);
                q->status = STORE_FATAL;
            }
        }
        freeReplyObject(r);
    }
    return s;
}

/* ---- the writes of a commit, in RESP ------------------------------------------
 * A commit queues tens of thousands of arguments; formatting them straight
 * into one buffer costs a fraction of hiredis's per-command formatting. */
typedef struct resp {
    char *p;
    size_t len, cap;
} resp_t;

static char *resp_room(resp_t *r, size_t n) {
    if (r->len + n > r->cap) {
        size_t ncap = r->cap ? r->cap : 4096;
        while (ncap < r->len + n) ncap *= 2;
        char *p = realloc(r->p, ncap);
        if (!p) abort();
        r->p = p;
        r->cap = ncap;
    }
    return r->p + r->len;
}

static void resp_num(resp_t *r, char tag, size_t n) {
    char *p = resp_room(r, 24);
    *p = tag;
    size_t k = 1 + text_dec(p + 1, (int64_t)n);
    p[k] = '\r';
    p[k + 1] = '\n';
    r->len += k + 2;
}

static void resp_cmd(resp_t *r, size_t argc) { resp_num(r, '*', argc); }

static void resp_arg(resp_t *r, const char *s, size_t n) {
    resp_num(r, '$', n);
    char *p = resp_room(r, n + 2);
    memcpy(p, s, n);
    p[n] = '\r';
    p[n + 1] = '\n';
    r->len += n + 2;
}

static void resp_str(resp_t *r, const char *s) { resp_arg(r, s, strlen(s)); }

static void resp_i64(resp_t *r, int64_t v) {
    char num[24];
    resp_arg(r, num, text_dec(num, v));
}

/* "<prefix>:{<shard>}:<kind>[:<id>]" as one argument. */
static void resp_key(resp_t *r, const char *prefix, const char *shard, const char *kind, const char *id) {
    size_t lp = strlen(prefix), ls = strlen(shard), lk = strlen(kind), li = id ? strlen(id) : 0;
    size_t n = lp + ls + lk + 4 + (id ? li + 1 : 0);
    resp_num(r, '$', n);
    char *p = resp_room(r, n + 2);
    memcpy(p, prefix, lp);
    p += lp;
    *p++ = ':';
    *p++ = '{';
    memcpy(p, shard, ls);
    p += ls;
    *p++ = '}';
    *p++ = ':';
    memcpy(p, kind, lk);
    p += lk;
    if (id) {
        *p++ = ':';
        memcpy(p, id, li);
        p += li;
    }
    *p++ = '\r';
    *p = '\n';
    r->len += n + 2;
}

static size_t resp_timers(resp_t *r, const char *prefix, const store_commit_req_t *q) {
    size_t n[3] = {0, 0, 0}, queued = 0;
    if (q->closed_moved) { /* first: every timer up to the mark has fired */
        resp_cmd(r, 4);
        resp_str(r, "ZREMRANGEBYSCORE");
        resp_key(r, prefix, q->shard, "t", NULL);
        resp_str(r, "-inf");
        resp_i64(r, q->closed_through);
        queued++;
    }
    for (size_t i = 0; i < q->n_timers; i++) n[q->timers[i].op]++;
    for (int op = 0; op < 3; op++) {
        if (!n[op]) continue;
        resp_cmd(r, 2 + (op == STORE_TIMER_LT) + n[op] * (op == STORE_TIMER_DEL ? 1 : 2));
        resp_str(r, op == STORE_TIMER_DEL ? "ZREM" : "ZADD");
        resp_key(r, prefix, q->shard, "t", NULL);
        if (op == STORE_TIMER_LT) resp_str(r, "LT");
        for (size_t i = 0; i < q->n_timers; i++) {
            if (q->timers[i].op != op) continue;
            if (op != STORE_TIMER_DEL) resp_i64(r, q->timers[i].at);
            resp_str(r, q->timers[i].id);
        }
        queued++;
    }
    return queued;
}

static size_t resp_hincrby(resp_t *r, const char *prefix, const char *shard, size_t n,
                           const char *const *names, const int64_t *deltas) {
    size_t queued = 0;
    for (size_t i = 0; i < n; i++) {
        if (!deltas[i]) continue;
        resp_cmd(r, 4);
        resp_arg(r, "HINCRBY", 7);
        resp_key(r, prefix, shard, "s", NULL);
        resp_str(r, names[i]);
        resp_i64(r, deltas[i]);
        queued++;
    }
    return queued;
}

/* Queue the writes of one checked shard inside the transaction: journeys
 * and redirects (MSET), deleted ones (DEL), timers, counters, the clock and,
 * last, the offset. Returns the number of commands. */
static size_t append_shard_writes(store_t *st, const store_commit_req_t *q) {
    const char *pre = st->cfg->redis_prefix;
    resp_t r = {NULL, 0, 0};
    size_t queued = 0, n_set = 0, n_del = 0;
    for (size_t i = 0; i < q->n_keys; i++) q->vals[i] ? n_set++ : n_del++;
    if (n_set) {
        resp_cmd(&r, 1 + 2 * n_set);
        resp_str(&r, "MSET");
        for (size_t i = 0; i < q->n_keys; i++) {
            if (!q->vals[i]) continue;
            resp_key(&r, pre, q->shard, "j", q->ids[i]);
            resp_arg(&r, q->vals[i], q->val_lens[i]);
        }
        queued++;
    }
    if (n_del) {
        resp_cmd(&r, 1 + n_del);
        resp_str(&r, "DEL");
        for (size_t i = 0; i < q->n_keys; i++)
            if (!q->vals[i]) resp_key(&r, pre, q->shard, "j", q->ids[i]);
        queued++;
    }
    queued += resp_timers(&r, pre, q);
    queued += resp_hincrby(&r, pre, q->shard, q->n_stats, q->stat_names, q->stat_deltas);
    /* the clock, the closed-through mark and the funnel's new totals: one HSET */
    resp_cmd(&r, 6 + 2 * q->n_metrics + 2 * q->n_fields);
    resp_str(&r, "HSET");
    resp_key(&r, pre, q->shard, "s", NULL);
    resp_str(&r, "clock");
    resp_i64(&r, q->clock);
    resp_str(&r, "closed_through");
    resp_i64(&r, q->closed_through);
    for (size_t i = 0; i < q->n_metrics; i++) {
        resp_str(&r, q->metric_names[i]);
        resp_i64(&r, q->metric_values[i]);
    }
    for (size_t i = 0; i < q->n_fields; i++) { /* the outbox's numbering, the sources' applied marks */
        resp_str(&r, q->field_names[i]);
        resp_i64(&r, q->field_values[i]);
    }
    if (q->out_trim) { /* the records at the front of the outbox that are delivered */
        resp_cmd(&r, 4);
        resp_str(&r, "LTRIM");
        resp_key(&r, pre, q->shard, "x", NULL);
        resp_i64(&r, (int64_t)q->out_trim);
        resp_i64(&r, -1);
        queued++;
    }
    if (q->n_out) { /* the records this batch sends, produced once it has committed */
        resp_cmd(&r, 2 + q->n_out);
        resp_str(&r, "RPUSH");
        resp_key(&r, pre, q->shard, "x", NULL);
        for (size_t i = 0; i < q->n_out; i++) resp_arg(&r, q->out[i], q->out_lens[i]);
        queued++;
    }
    if (q->new_ioffset >= 0) {
        resp_cmd(&r, 3);
        resp_str(&r, "SET");
        resp_key(&r, pre, q->shard, "oi", NULL);
        resp_i64(&r, q->new_ioffset);
        queued++;
    }
    if (q->n_metrics_gone) {
        resp_cmd(&r, 2 + q->n_metrics_gone);
        resp_str(&r, "HDEL");
        resp_key(&r, pre, q->shard, "s", NULL);
        for (size_t i = 0; i < q->n_metrics_gone; i++) resp_str(&r, q->metrics_gone[i]);
        queued++;
    }
    if (q->n_sat) { /* satisfaction counts that changed: their new values */
        resp_cmd(&r, 2 + 2 * q->n_sat);
        resp_str(&r, "HSET");
        resp_key(&r, pre, q->shard, "q", NULL);
        for (size_t i = 0; i < q->n_sat; i++) {
            resp_str(&r, q->sat_names[i]);
            resp_str(&r, q->sat_values[i]);
        }
        queued++;
    }
    if (q->n_sat_gone) { /* buckets no window holds any more */
        resp_cmd(&r, 2 + q->n_sat_gone);
        resp_str(&r, "HDEL");
        resp_key(&r, pre, q->shard, "q", NULL);
        for (size_t i = 0; i < q->n_sat_gone; i++) resp_str(&r, q->sat_gone[i]);
        queued++;
    }
    if (q->sat_log_len || q->sat_log_reset) { /* the batch's answers (at a checkpoint perhaps none:
                                                * the key must exist to be renamed) */
        resp_cmd(&r, 3);
        resp_str(&r, "APPEND");
        resp_key(&r, pre, q->shard, "ql", NULL);
        resp_arg(&r, q->sat_log ? q->sat_log : "", q->sat_log_len);
        queued++;
    }
    if (q->sat_log_reset) {
        /* a checkpoint: the counts above include the log, this batch's
         * answers too. The log becomes the previous log (:qp), where a
         * reader one checkpoint behind finds the records it has not read
         * (their sum with what it had is the new counts), and starts again
         * with the checkpoint's header, "#<new offset>" */
        char hdr[STORE_LOG_HEADER_MAX];
        hdr[0] = '#';
        size_t n = 1 + text_dec(hdr + 1, q->new_offset) + 1; /* and its NUL */
        resp_cmd(&r, 3);
        resp_str(&r, "RENAME");
        resp_key(&r, pre, q->shard, "ql", NULL);
        resp_key(&r, pre, q->shard, "qp", NULL);
        resp_cmd(&r, 3);
        resp_str(&r, "SET");
        resp_key(&r, pre, q->shard, "ql", NULL);
        resp_arg(&r, hdr, n);
        queued += 2;
    }
    resp_cmd(&r, 3);
    resp_str(&r, "SET");
    resp_key(&r, pre, q->shard, "o", NULL);
    resp_i64(&r, q->new_offset);
    if (redisAppendFormattedCommand(st->c, r.p, r.len) != REDIS_OK) abort(); /* out of memory */
    free(r.p);
    return queued + 2;
}

store_status_t store_commit_send(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                 char *errbuf, size_t errlen) {
    if (!nreq) return STORE_OK;
    store_status_t s = commit_check(st, reqs, nreq, errbuf, errlen);
    if (s != STORE_OK) return s;
    size_t ok = 0;
    for (size_t q = 0; q < nreq; q++) ok += reqs[q].status == STORE_OK;
    if (!ok) {
        redisAppendCommand(st->c, "UNWATCH");
        st->txn_sent = 0;
        st->txn_queued = 1; /* one reply to skip */
        st->commands++;
        return flush_out(st, errbuf, errlen);
    }
    redisAppendCommand(st->c, "MULTI");
    st->txn_queued = 0;
    for (size_t q = 0; q < nreq; q++)
        if (reqs[q].status == STORE_OK) st->txn_queued += append_shard_writes(st, &reqs[q]);
    redisAppendCommand(st->c, "EXEC");
    st->txn_sent = 1;
    st->commands += st->txn_queued + 2;
    return flush_out(st, errbuf, errlen);
}

/* EXEC's reply: nil if a watched offset changed since the check (fenced). */
static store_status_t exec_result(store_commit_req_t *reqs, size_t nreq, redisReply *r,
                                  char *errbuf, size_t errlen) {
    store_status_t s = STORE_OK;
    if (r->type == REDIS_REPLY_NIL) {
        for (size_t q = 0; q < nreq; q++)
            if (reqs[q].status == STORE_OK) reqs[q].status = STORE_FENCED;
        log_warn("commit fenced: an offset changed between check and commit", "shards=%zu", nreq);
        return STORE_OK;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(errbuf, errlen, "redis EXEC: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        s = STORE_RETRY;
    }
    for (size_t i = 0; s == STORE_OK && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            /* cannot happen after the check; say so loudly if it does */
            snprintf(errbuf, errlen, "redis EXEC: %s", r->element[i]->str);
            s = STORE_FATAL;
        }
    if (s != STORE_OK)
        for (size_t q = 0; q < nreq; q++)
            if (reqs[q].status == STORE_OK) reqs[q].status = s;
    return s;
}

store_status_t store_commit_recv(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                 char *errbuf, size_t errlen) {
    store_status_t s = STORE_OK;
    size_t expect = st->txn_sent ? st->txn_queued + 2 : st->txn_queued;
    redisReply *r = NULL;
    if (!nreq) return STORE_OK;
    st->round_trips++;
    for (size_t i = 0; i < expect; i++) {
        if (redisGetReply(st->c, (void **)&r) != REDIS_OK) {
            snprintf(errbuf, errlen, "redis: %s", st->c->errstr);
            return STORE_RETRY;
        }
        if (i + 1 == expect && st->txn_sent) s = exec_result(reqs, nreq, r, errbuf, errlen);
        else if (r->type == REDIS_REPLY_ERROR) {
            snprintf(errbuf, errlen, "redis commit: %s", r->str);
            s = STORE_RETRY; /* EXEC will report EXECABORT: nothing was written */
        }
        freeReplyObject(r);
    }
    st->txn_sent = 0;
    st->txn_queued = 0;
    if (s == STORE_RETRY)
        for (size_t q = 0; q < nreq; q++)
            if (reqs[q].status == STORE_OK) reqs[q].status = STORE_RETRY;
    return s;
}

store_status_t store_commit(store_t *st, store_commit_req_t *reqs, size_t nreq,
                            char *errbuf, size_t errlen) {
    store_status_t s = store_commit_send(st, reqs, nreq, errbuf, errlen);
    return s == STORE_OK ? store_commit_recv(st, reqs, nreq, errbuf, errlen) : s;
}

void store_counters(const store_t *st, uint64_t *round_trips, uint64_t *commands) {
    *round_trips = st->round_trips;
    *commands = st->commands;
}

store_status_t store_shards(store_t *st, char ***names, size_t *n, char *errbuf, size_t errlen) {
    redisReply *r = redisCommand(st->c, "SMEMBERS %s:shards", st->cfg->redis_prefix);
    store_status_t s = reply_error(st, r, "SMEMBERS", errbuf, errlen);
    st->round_trips++;
    if (s != STORE_OK) return s;
    *n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    *names = calloc(*n + 1, sizeof(**names));
    if (!*names) abort();
    for (size_t i = 0; i < *n; i++)
        if (!((*names)[i] = strndup(r->element[i]->str, r->element[i]->len))) abort();
    freeReplyObject(r);
    return STORE_OK;
}

store_status_t store_shard_stats(store_t *st, const char *shard, int64_t *offset,
                                 void (*fn)(const char *, long long, void *), void *opaque,
                                 char *errbuf, size_t errlen) {
    char key[512];
    int64_t ioffset;
    store_status_t s = store_shard_open(st, shard, offset, &ioffset, NULL, NULL, errbuf, errlen);
    if (s != STORE_OK) return s;
    store_key(st->cfg->redis_prefix, shard, "s", NULL, key, sizeof(key));
    redisReply *r = redisCommand(st->c, "HGETALL %s", key);
    st->round_trips++;
    if ((s = reply_error(st, r, "HGETALL", errbuf, errlen)) != STORE_OK) return s;
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements & ~(size_t)1 : 0, clock = n;
    for (size_t i = 0; i < n && clock == n; i += 2)
        if (!strcmp(r->element[i]->str, "clock")) clock = i;
    if (clock < n) fn("clock", strtoll(r->element[clock + 1]->str, NULL, 10), opaque);
    for (size_t i = 0; i < n; i += 2)
        if (i != clock) fn(r->element[i]->str, strtoll(r->element[i + 1]->str, NULL, 10), opaque);
    freeReplyObject(r);
    return STORE_OK;
}

/* Split "<prefix>:{<shard>}:j:<id>" into shard and id (pointers into key). */
static int parse_journey_key(char *key, size_t plen, char **shard, char **id) {
    char *open = key + plen + 1, *close;
    if (*open != '{' || !(close = strstr(open, "}:j:"))) return -1;
    *close = '\0';
    *shard = open + 1;
    *id = close + 4;
    return 0;
}

static void scan_values(store_t *st, redisReply *keys, store_scan_fn fn, void *opaque) {
    size_t plen = strlen(st->cfg->redis_prefix);
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *r = redisCommand(st->c, "GET %b", keys->element[i]->str, keys->element[i]->len);
        st->round_trips++;
        char *shard, *id;
        if (r && r->type == REDIS_REPLY_STRING &&
            parse_journey_key(keys->element[i]->str, plen, &shard, &id) == 0)
            fn(shard, id, r->str, r->len, opaque);
        if (r) freeReplyObject(r);
    }
}

store_status_t store_scan(store_t *st, store_scan_fn fn, void *opaque, char *errbuf, size_t errlen) {
    char cursor[32] = "0", match[256];
    snprintf(match, sizeof(match), "%s:{*}:j:*", st->cfg->redis_prefix);
    do {
        redisReply *r = redisCommand(st->c, "SCAN %s MATCH %s COUNT 1000", cursor, match);
        st->round_trips++;
        store_status_t s = reply_error(st, r, "SCAN", errbuf, errlen);
        if (s != STORE_OK) return s;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            snprintf(errbuf, errlen, "redis SCAN: unexpected reply");
            return STORE_RETRY;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        scan_values(st, r->element[1], fn, opaque);
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    return STORE_OK;
}
