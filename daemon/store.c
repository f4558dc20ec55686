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
 * ZADD to re-arm one that fired early, ZREM),
 * the counter and funnel deltas (HINCRBY), the event-time clock (HSET) and,
 * last, the new offset. EXEC
 * applies all of it or, if a watched offset changed in between, nothing.
 * (A transaction does not roll back a failed command: hence the check.)
 */
#include "store.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"

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

store_status_t store_shard_open(store_t *st, const char *shard, int64_t *offset,
                                char *errbuf, size_t errlen) {
    char key[512], set[256];
    redisReply *r;
    store_status_t s;
    snprintf(set, sizeof(set), "%s:shards", st->cfg->redis_prefix);
    if (store_key(st->cfg->redis_prefix, shard, "o", NULL, key, sizeof(key)) < 0) {
        snprintf(errbuf, errlen, "shard name too long: %s", shard);
        return STORE_FATAL;
    }
    redisAppendCommand(st->c, "SADD %s %s", set, shard);
    redisAppendCommand(st->c, "GET %s", key);
    st->round_trips++;
    st->commands += 2;
    for (int i = 0; i < 2; i++) {
        if (redisGetReply(st->c, (void **)&r) != REDIS_OK) r = NULL;
        if ((s = reply_error(st, r, i ? "GET offset" : "SADD shards", errbuf, errlen)) != STORE_OK)
            return s;
        if (i == 1) {
            char *end = NULL;
            *offset = -1;
            if (r->type == REDIS_REPLY_STRING) *offset = strtoll(r->str, &end, 10);
            if (r->type == REDIS_REPLY_STRING && (!end || *end)) {
                snprintf(errbuf, errlen, "redis %s: not an offset", key);
                freeReplyObject(r);
                return STORE_FATAL;
            }
        }
        freeReplyObject(r);
    }
    return STORE_OK;
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

store_status_t store_shard_state(store_t *st, const char *shard, int64_t *clock,
                                 void (*fn)(const char *field, void *opaque), void *opaque,
                                 char *errbuf, size_t errlen) {
    char key[512];
    redisReply *r[2];
    store_status_t s;
    if (store_key(st->cfg->redis_prefix, shard, "s", NULL, key, sizeof(key)) < 0) {
        snprintf(errbuf, errlen, "shard name too long: %s", shard);
        return STORE_FATAL;
    }
    redisAppendCommand(st->c, "HGET %s clock", key);
    redisAppendCommand(st->c, "HKEYS %s", key);
    st->round_trips++;
    st->commands += 2;
    if ((s = read_replies(st, 2, r, errbuf, errlen)) != STORE_OK) return s;
    if (r[0]->type == REDIS_REPLY_ERROR || r[1]->type == REDIS_REPLY_ERROR) {
        snprintf(errbuf, errlen, "redis %s: %s", key, (r[0]->type == REDIS_REPLY_ERROR ? r[0] : r[1])->str);
        s = STORE_FATAL;
    } else {
        *clock = r[0]->type == REDIS_REPLY_STRING ? strtoll(r[0]->str, NULL, 10) : 0;
        for (size_t i = 0; r[1]->type == REDIS_REPLY_ARRAY && i < r[1]->elements; i++)
            fn(r[1]->element[i]->str, opaque);
    }
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return s;
}

store_status_t store_due(store_t *st, store_due_req_t *reqs, size_t nreq, char *errbuf, size_t errlen) {
    char key[512], until[24], after[26], limit[24];
    if (!nreq) return STORE_OK;
    for (size_t q = 0; q < nreq; q++) {
        store_key(st->cfg->redis_prefix, reqs[q].shard, "t", NULL, key, sizeof(key));
        snprintf(until, sizeof(until), "%lld", (long long)reqs[q].until);
        snprintf(after, sizeof(after), "(%lld", (long long)reqs[q].until);
        snprintf(limit, sizeof(limit), "%zu", reqs[q].limit);
        redisAppendCommandArgv(st->c, 7, (const char *[]){"ZRANGEBYSCORE", key, "-inf", until, "LIMIT", "0", limit}, NULL);
        redisAppendCommandArgv(st->c, 8, (const char *[]){"ZRANGEBYSCORE", key, after, "+inf", "WITHSCORES", "LIMIT", "0", "1"}, NULL);
        reqs[q].ids = NULL;
        reqs[q].n = 0;
    }
    st->round_trips++;
    st->commands += 2 * nreq;
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
        reqs[q].ids = calloc(a->elements + 1, sizeof(char *));
        if (!reqs[q].ids) abort();
        for (size_t i = 0; i < a->elements; i++)
            if (!(reqs[q].ids[reqs[q].n++] = strndup(a->element[i]->str, a->element[i]->len))) abort();
        reqs[q].next = b->elements == 2 ? strtoll(b->element[1]->str, NULL, 10) : INT64_MAX;
    }
    for (size_t i = 0; i < 2 * nreq; i++) freeReplyObject(r[i]);
    if (s != STORE_OK) store_due_free(reqs, nreq);
    free(r);
    return s;
}

void store_due_free(store_due_req_t *reqs, size_t nreq) {
    for (size_t q = 0; q < nreq; q++) {
        for (size_t i = 0; i < reqs[q].n; i++) free(reqs[q].ids[i]);
        free(reqs[q].ids);
        reqs[q].ids = NULL;
        reqs[q].n = 0;
    }
}

/* The check before the transaction: WATCH every offset key, then read the
 * offsets and the counters' types. A shard whose stored offset is not the
 * expected one is fenced (someone else owns or owned it) and left out; one
 * whose counters key is not a hash would make a write fail, so nothing of it
 * is written either. */
static store_status_t commit_check(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                   char *errbuf, size_t errlen) {
    argvbuf_t a;
    char key[512];
    size_t cap = 64;
    for (size_t q = 0; q < nreq; q++) cap += strlen(reqs[q].shard) + strlen(st->cfg->redis_prefix) + 16;
    if (argv_init(&a, nreq + 1, cap) < 0) abort();
    argv_add(&a, "WATCH", 5);
    for (size_t q = 0; q < nreq; q++) argv_add_key(&a, st->cfg->redis_prefix, reqs[q].shard, "o", NULL);
    redisAppendCommandArgv(st->c, (int)a.argc, a.argv, a.lens);
    for (size_t q = 0; q < nreq; q++) {
        redisAppendCommandArgv(st->c, 2, (const char *[]){"GET", a.argv[q + 1]}, (size_t[]){3, a.lens[q + 1]});
        store_key(st->cfg->redis_prefix, reqs[q].shard, "s", NULL, key, sizeof(key));
        redisAppendCommand(st->c, "TYPE %s", key);
        store_key(st->cfg->redis_prefix, reqs[q].shard, "t", NULL, key, sizeof(key));
        redisAppendCommand(st->c, "TYPE %s", key);
    }
    argv_free(&a);
    st->commands += 1 + 3 * nreq;
    st->round_trips++;
    redisReply *r;
    store_status_t s = STORE_OK;
    for (size_t i = 0; i < 1 + 3 * nreq; i++) {
        if (redisGetReply(st->c, (void **)&r) != REDIS_OK) {
            snprintf(errbuf, errlen, "redis: %s", st->c->errstr);
            return STORE_RETRY;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(errbuf, errlen, "redis commit check: %s", r->str);
            s = STORE_RETRY;
        } else if (i > 0 && i % 3 == 1) {          /* GET offset */
            store_commit_req_t *q = &reqs[(i - 1) / 3];
            long long cur = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
            q->status = cur == q->expected_offset ? STORE_OK : STORE_FENCED;
            if (q->status == STORE_FENCED)
                log_warn("shard fenced: stored offset differs from ours", "shard=%s expected=%lld stored=%lld",
                         q->shard, (long long)q->expected_offset, cur);
        } else if (i > 0) {                         /* TYPE counters, TYPE timers */
            store_commit_req_t *q = &reqs[(i - 1) / 3];
            const char *want = i % 3 == 2 ? "hash" : "zset";
            if (strcmp(r->str, want) && strcmp(r->str, "none") && q->status == STORE_OK) {
                snprintf(errbuf, errlen, "redis: %s of %s are a %s, not a %s", i % 3 == 2 ? "counters" : "timers",
                         q->shard, r->str, want);
                q->status = STORE_FATAL;
            }
        }
        freeReplyObject(r);
    }
    return s;
}

/* Decimal of v >= 0 into buf (NUL-terminated, at most 20 digits); length. */
static size_t fmt_i64(char *buf, int64_t v) {
    char tmp[24];
    size_t n = 0;
    uint64_t u = (uint64_t)v;
    do tmp[n++] = (char)('0' + u % 10); while ((u /= 10));
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/* The timers of a shard's commit, returns commands queued: ZADD LT for open
 * journeys (a timer may fire early, never late: when it does, the journey
 * is looked at and its timer re-armed with a plain ZADD), ZREM the others. */
static size_t append_timers(store_t *st, const store_commit_req_t *q) {
    size_t n[3] = {0, 0, 0}, queued = 0; /* 0: ZADD LT, 1: ZADD, 2: ZREM */
    if (!q->deadlines || !q->n_keys) return 0;
    for (size_t i = 0; i < q->n_keys; i++)
        n[q->deadlines[i] < 0 ? 2 : q->rearm && q->rearm[i] ? 1 : 0]++;
    argvbuf_t a;
    char *scores = malloc((n[0] + n[1]) * 24 + 1);
    if (!scores || argv_init(&a, 3 + 2 * q->n_keys, key_text_cap(st->cfg->redis_prefix, q->shard, 0, NULL)) < 0)
        abort();
    for (int op = 0; op < 3; op++) {
        if (!n[op]) continue;
        a.argc = 0;
        a.used = 0;
        argv_add(&a, op == 2 ? "ZREM" : "ZADD", 4);
        argv_add_key(&a, st->cfg->redis_prefix, q->shard, "t", NULL);
        if (op == 0) argv_add(&a, "LT", 2);
        char *sp = scores;
        for (size_t i = 0; i < q->n_keys; i++) {
            if ((q->deadlines[i] < 0 ? 2 : q->rearm && q->rearm[i] ? 1 : 0) != op) continue;
            if (op < 2) {
                size_t len = fmt_i64(sp, q->deadlines[i]);
                argv_add(&a, sp, len);
                sp += len + 1;
            }
            argv_add(&a, q->ids[i], strlen(q->ids[i]));
        }
        redisAppendCommandArgv(st->c, (int)a.argc, a.argv, a.lens);
        queued++;
    }
    argv_free(&a);
    free(scores);
    return queued;
}

/* Queue the writes of one checked shard inside the transaction. */
static size_t append_shard_writes(store_t *st, const store_commit_req_t *q) {
    argvbuf_t a;
    size_t queued = 0, n_set = 0, n_del = 0;
    for (size_t i = 0; i < q->n_keys; i++) q->vals[i] ? n_set++ : n_del++;
    if (argv_init(&a, 1 + 2 * q->n_keys + 2, key_text_cap(st->cfg->redis_prefix, q->shard, q->n_keys, q->ids)) < 0)
        abort();
    if (n_set) {
        argv_add(&a, "MSET", 4);
        for (size_t i = 0; i < q->n_keys; i++) {
            if (!q->vals[i]) continue;
            argv_add_key(&a, st->cfg->redis_prefix, q->shard, "j", q->ids[i]);
            argv_add(&a, q->vals[i], q->val_lens[i]);
        }
        redisAppendCommandArgv(st->c, (int)a.argc, a.argv, a.lens);
        queued++;
    }
    if (n_del) {
        a.argc = 0;
        argv_add(&a, "DEL", 3);
        for (size_t i = 0; i < q->n_keys; i++)
            if (!q->vals[i]) argv_add_key(&a, st->cfg->redis_prefix, q->shard, "j", q->ids[i]);
        redisAppendCommandArgv(st->c, (int)a.argc, a.argv, a.lens);
        queued++;
    }
    argv_free(&a);
    queued += append_timers(st, q);
    char skey[512], okey[512];
    store_key(st->cfg->redis_prefix, q->shard, "s", NULL, skey, sizeof(skey));
    store_key(st->cfg->redis_prefix, q->shard, "o", NULL, okey, sizeof(okey));
    for (size_t i = 0; i < q->n_stats; i++) {
        if (!q->stat_deltas[i]) continue;
        redisAppendCommand(st->c, "HINCRBY %s %s %lld", skey, q->stat_names[i], (long long)q->stat_deltas[i]);
        queued++;
    }
    for (size_t i = 0; i < q->n_metrics; i++) {
        if (!q->metric_deltas[i]) continue;
        redisAppendCommand(st->c, "HINCRBY %s %s %lld", skey, q->metric_names[i], (long long)q->metric_deltas[i]);
        queued++;
    }
    redisAppendCommand(st->c, "HSET %s clock %lld", skey, (long long)q->clock);
    redisAppendCommand(st->c, "SET %s %lld", okey, (long long)q->new_offset);
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
    store_status_t s = store_shard_open(st, shard, offset, errbuf, errlen);
    if (s != STORE_OK) return s;
    store_key(st->cfg->redis_prefix, shard, "s", NULL, key, sizeof(key));
    redisReply *r = redisCommand(st->c, "HGETALL %s", key);
    st->round_trips++;
    if ((s = reply_error(st, r, "HGETALL", errbuf, errlen)) != STORE_OK) return s;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        fn(r->element[i]->str, strtoll(r->element[i + 1]->str, NULL, 10), opaque);
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
