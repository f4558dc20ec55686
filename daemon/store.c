/*
 * store.c -- Redis access for journeyd (hiredis, synchronous, pipelined).
 *
 * Owns one redisContext. Everything a batch needs is sent as one pipeline:
 * store_load() issues one MGET per shard, store_commit() one EVALSHA of the
 * commit script per shard, and each reads all replies back, so a batch costs
 * one round trip to load and one to commit, whatever its size. The _send and
 * _recv halves let the caller overlap its own work with Redis's: commands on
 * one connection run in the order sent, so a load sent after a commit sees
 * the commit's writes.
 *
 * The commit script is the exactly-once boundary: it checks that the stored
 * offset is the one this consumer last committed (a fence against a zombie
 * owner after a rebalance) and that its arguments are well formed, and only
 * then writes the journeys, the counters and the new offset. Lua scripts are
 * atomic but do not roll back, so nothing is written before every check has
 * passed, and no write after the checks can fail.
 */
#include "store.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"

static const char COMMIT_LUA[] =
    "local cur = redis.call('GET', KEYS[1]) or ''\n"
    "if cur ~= ARGV[1] then return redis.error_reply('FENCED stored=' .. cur) end\n"
    "local ns = tonumber(ARGV[3])\n"
    "local nk = #KEYS - 2\n"
    "if ns == nil or tonumber(ARGV[2]) == nil or #ARGV ~= 3 + 2 * ns + nk then\n"
    "  return redis.error_reply('BADARGS')\n"
    "end\n"
    "for i = 0, ns - 1 do\n"
    "  if tonumber(ARGV[5 + 2 * i]) == nil then return redis.error_reply('BADARGS delta') end\n"
    "end\n"
    "local t = redis.call('TYPE', KEYS[2]).ok\n"
    "if t ~= 'hash' and t ~= 'none' then return redis.error_reply('BADTYPE stats') end\n"
    "local set, n = {}, 0\n"
    "for i = 1, nk do\n"
    "  local v = ARGV[3 + 2 * ns + i]\n"
    "  if v == '' then redis.call('DEL', KEYS[2 + i]) else\n"
    "    set[n + 1] = KEYS[2 + i]\n"
    "    set[n + 2] = v\n"
    "    n = n + 2\n"
    "    if n == 1000 then redis.call('MSET', unpack(set, 1, n)); n = 0 end\n"
    "  end\n"
    "end\n"
    "if n > 0 then redis.call('MSET', unpack(set, 1, n)) end\n"
    "for i = 0, ns - 1 do\n"
    "  if ARGV[5 + 2 * i] ~= '0' then redis.call('HINCRBY', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i]) end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[2])\n"
    "return 1\n";

struct store {
    const config_t *cfg;       /* borrowed; outlives the store */
    redisContext *c;           /* owned */
    char sha[41];              /* SHA1 of COMMIT_LUA */
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

static store_status_t select_and_load(store_t *st, char *errbuf, size_t errlen) {
    redisReply *r;
    store_status_t s;
    if (st->cfg->redis_db) {
        r = redisCommand(st->c, "SELECT %d", st->cfg->redis_db);
        st->round_trips++;
        if ((s = reply_error(st, r, "SELECT", errbuf, errlen)) != STORE_OK) return s;
        freeReplyObject(r);
    }
    r = redisCommand(st->c, "SCRIPT LOAD %s", COMMIT_LUA);
    st->round_trips++;
    if ((s = reply_error(st, r, "SCRIPT LOAD", errbuf, errlen)) != STORE_OK) return s;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(errbuf, errlen, "redis SCRIPT LOAD: unexpected reply");
        freeReplyObject(r);
        return STORE_FATAL;
    }
    memcpy(st->sha, r->str, 40);
    st->sha[40] = '\0';
    freeReplyObject(r);
    return STORE_OK;
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
    if (s == STORE_OK) s = select_and_load(st, errbuf, errlen);
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

static void append_commit(store_t *st, const store_commit_req_t *q) {
    char num[3][24];
    size_t argc = 3 + 3 + 2 * q->n_stats + 2 * q->n_keys + 2;
    argvbuf_t a;
    if (argv_init(&a, argc, key_text_cap(st->cfg->redis_prefix, q->shard, q->n_keys, q->ids) +
                                32 * q->n_stats) < 0)
        abort();
    argv_add(&a, "EVALSHA", 7);
    argv_add(&a, st->sha, 40);
    snprintf(num[0], sizeof(num[0]), "%zu", q->n_keys + 2);
    argv_add(&a, num[0], strlen(num[0]));
    argv_add_key(&a, st->cfg->redis_prefix, q->shard, "o", NULL);
    argv_add_key(&a, st->cfg->redis_prefix, q->shard, "s", NULL);
    for (size_t i = 0; i < q->n_keys; i++)
        argv_add_key(&a, st->cfg->redis_prefix, q->shard, "j", q->ids[i]);
    if (q->expected_offset >= 0) snprintf(num[1], sizeof(num[1]), "%lld", (long long)q->expected_offset);
    else num[1][0] = '\0';
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)q->new_offset);
    argv_add(&a, num[1], strlen(num[1]));
    argv_add(&a, num[2], strlen(num[2]));
    char *nst = a.text + a.used;
    int len = snprintf(nst, a.cap - a.used, "%zu", q->n_stats);
    a.used += (size_t)len + 1;
    argv_add(&a, nst, (size_t)len);
    for (size_t i = 0; i < q->n_stats; i++) {
        char *d = a.text + a.used;
        int dl = snprintf(d, 24, "%lld", (long long)q->stat_deltas[i]);
        a.used += (size_t)dl + 1;
        argv_add(&a, q->stat_names[i], strlen(q->stat_names[i]));
        argv_add(&a, d, (size_t)dl);
    }
    for (size_t i = 0; i < q->n_keys; i++)
        argv_add(&a, q->vals[i] ? q->vals[i] : "", q->vals[i] ? q->val_lens[i] : 0);
    redisAppendCommandArgv(st->c, (int)a.argc, a.argv, a.lens);
    argv_free(&a);
}

static store_status_t commit_status(store_commit_req_t *q, redisReply *r, char *errbuf,
                                    size_t errlen) {
    if (r->type == REDIS_REPLY_INTEGER) return q->status = STORE_OK;
    if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "FENCED", 6)) {
        log_warn("shard fenced: stored offset differs from ours", "shard=%s expected=%lld detail=\"%s\"",
                 q->shard, (long long)q->expected_offset, r->str);
        return q->status = STORE_FENCED;
    }
    snprintf(errbuf, errlen, "redis commit %s: %s", q->shard,
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    /* NOSCRIPT after a server restart: reconnecting reloads the script. */
    return q->status = STORE_RETRY;
}

store_status_t store_commit_send(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                 char *errbuf, size_t errlen) {
    for (size_t q = 0; q < nreq; q++) append_commit(st, &reqs[q]);
    st->commands += nreq;
    return flush_out(st, errbuf, errlen);
}

store_status_t store_commit_recv(store_t *st, store_commit_req_t *reqs, size_t nreq,
                                 char *errbuf, size_t errlen) {
    store_status_t s = STORE_OK;
    if (!nreq) return STORE_OK;
    redisReply **replies = calloc(nreq, sizeof(*replies));
    if (!replies) abort();
    st->round_trips++;
    if ((s = read_replies(st, nreq, replies, errbuf, errlen)) != STORE_OK) goto out;
    for (size_t q = 0; q < nreq; q++) {
        store_status_t qs = commit_status(&reqs[q], replies[q], errbuf, errlen);
        if (qs == STORE_RETRY) s = STORE_RETRY;
        freeReplyObject(replies[q]);
    }
out:
    free(replies);
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
