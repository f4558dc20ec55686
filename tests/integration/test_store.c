/*
 * test_store.c -- the Redis store against a real redis-server
 * (JD_REDIS_PORT, default 16379; JD_REDIS_SOCKET for the Unix socket test):
 * atomic commit of journeys, counters and offset; fencing; AUTH with an ACL
 * user; secrets kept out of error messages.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static config_t cfg;
static char prefix[64];

static int redis_port(void) {
    const char *p = getenv("JD_REDIS_PORT");
    return p ? (int)strtol(p, NULL, 10) : 16379;
}

static void setup(void) {
    static int n;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(prefix, sizeof(prefix), "test%d_%d", (int)getpid(), n++);
    cfg.redis_host = "127.0.0.1";
    cfg.redis_port = redis_port();
    cfg.redis_unix_socket = "";
    cfg.redis_user = "";
    cfg.redis_password = "";
    cfg.redis_prefix = prefix;
    cfg.redis_connect_timeout_ms = 2000;
    cfg.redis_command_timeout_ms = 5000;
}

/* Remove what the test wrote. */
static void teardown(void) {
    redisContext *c = redisConnect("127.0.0.1", redis_port());
    if (!c || c->err) return;
    redisReply *r = redisCommand(c, "KEYS %s:*", prefix);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        freeReplyObject(redisCommand(c, "UNLINK %b", r->element[i]->str, r->element[i]->len));
    if (r) freeReplyObject(r);
    redisFree(c);
}

TestSuite(store, .init = setup, .fini = teardown);

/* A raw connection for checking what is really in Redis. */
static redisReply *raw(const char *fmt, const char *arg) {
    redisContext *c = redisConnect("127.0.0.1", redis_port());
    cr_assert(c && !c->err);
    redisReply *r = redisCommand(c, fmt, arg);
    redisFree(c);
    return r;
}

static store_t *open_store(void) {
    char err[256];
    store_t *st = store_open(&cfg, err, sizeof(err));
    cr_assert(st, "%s", err);
    return st;
}

static store_status_t commit(store_t *st, int64_t expected, int64_t next, const char *id,
                             const char *val, int64_t delta) {
    char err[256];
    const char *names[1] = {"applied"};
    int64_t deltas[1] = {delta};
    const char *ids[1] = {id};
    const char *vals[1] = {val};
    size_t lens[1] = {val ? strlen(val) : 0};
    store_commit_req_t q = {
        .shard = "events:3", .expected_offset = expected, .new_offset = next, .expected_ioffset = -1, .new_ioffset = -1,
        .n_stats = 1, .stat_names = names, .stat_deltas = deltas,
        .n_keys = 1, .ids = ids, .vals = vals, .val_lens = lens,
    };
    store_status_t s = store_commit(st, &q, 1, err, sizeof(err));
    cr_assert_eq(s, STORE_OK, "%s", err);
    return q.status;
}

Test(store, commit_writes_journeys_counters_and_offset_together) {
    store_t *st = open_store();
    char err[256], key[256];
    int64_t off, ioff;
    cr_assert_eq(store_shard_open(st, "events:3", &off, &ioff, NULL, NULL, err, sizeof(err)), STORE_OK);
    cr_assert_eq(off, -1);
    cr_assert_eq(commit(st, -1, 100, "cust-1", "blob-1", 7), STORE_OK);
    cr_assert_eq(commit(st, 100, 250, "cust-2", "blob-2", 3), STORE_OK);
    cr_assert_eq(store_shard_open(st, "events:3", &off, &ioff, NULL, NULL, err, sizeof(err)), STORE_OK);
    cr_assert_eq(off, 250);

    const char *ids[3] = {"cust-1", "cust-2", "cust-3"};
    store_blob_t out[3];
    store_load_req_t q = {.shard = "events:3", .n = 3, .ids = ids, .out = out};
    cr_assert_eq(store_load(st, &q, 1, err, sizeof(err)), STORE_OK);
    cr_assert_eq(out[0].len, 6);
    cr_assert(!memcmp(out[0].data, "blob-1", 6));
    cr_assert(!memcmp(out[1].data, "blob-2", 6));
    cr_assert_null(out[2].data);
    free(out[0].data);
    free(out[1].data);

    store_key(prefix, "events:3", "s", NULL, key, sizeof(key));
    redisReply *r = raw("HGET %s applied", key);
    cr_assert_str_eq(r->str, "10");
    freeReplyObject(r);
    char want[256];
    snprintf(want, sizeof(want), "%s:{events:3}:j:cust-1", prefix);
    store_key(prefix, "events:3", "j", "cust-1", key, sizeof(key));
    cr_assert_str_eq(key, want);
    r = raw("GET %s", key);
    cr_assert_str_eq(r->str, "blob-1");
    freeReplyObject(r);
    store_close(st);
}

Test(store, fenced_commit_writes_nothing) {
    store_t *st = open_store();
    char err[256], key[256];
    int64_t off, ioff;
    cr_assert_eq(commit(st, -1, 10, "cust-1", "v1", 1), STORE_OK);
    /* a zombie owner that still believes the offset is 5 */
    cr_assert_eq(commit(st, 5, 20, "cust-1", "stale", 100), STORE_FENCED);
    /* and one that believes nothing was committed */
    cr_assert_eq(commit(st, -1, 20, "cust-1", "stale", 100), STORE_FENCED);
    cr_assert_eq(store_shard_open(st, "events:3", &off, &ioff, NULL, NULL, err, sizeof(err)), STORE_OK);
    cr_assert_eq(off, 10);
    store_key(prefix, "events:3", "j", "cust-1", key, sizeof(key));
    redisReply *r = raw("GET %s", key);
    cr_assert_str_eq(r->str, "v1");
    freeReplyObject(r);
    store_key(prefix, "events:3", "s", NULL, key, sizeof(key));
    r = raw("HGET %s applied", key);
    cr_assert_str_eq(r->str, "1");
    freeReplyObject(r);
    store_close(st);
}

Test(store, null_value_deletes_and_redirect_survives) {
    store_t *st = open_store();
    char err[256], redirect[16] = {(char)STORE_REDIRECT, 'u', '1', 0};
    cr_assert_eq(commit(st, -1, 1, "anon-1", "journey", 1), STORE_OK);
    cr_assert_eq(commit(st, 1, 2, "anon-1", redirect, 0), STORE_OK);
    const char *ids[1] = {"anon-1"};
    store_blob_t out[1];
    store_load_req_t q = {.shard = "events:3", .n = 1, .ids = ids, .out = out};
    cr_assert_eq(store_load(st, &q, 1, err, sizeof(err)), STORE_OK);
    cr_assert_eq(out[0].len, 3);
    cr_assert(!memcmp(out[0].data, redirect, 3));
    free(out[0].data);
    cr_assert_eq(commit(st, 2, 3, "anon-1", NULL, 0), STORE_OK);
    cr_assert_eq(store_load(st, &q, 1, err, sizeof(err)), STORE_OK);
    cr_assert_null(out[0].data);
    store_close(st);
}

/* A commit costs two round trips (check, then the transaction), whatever the
 * number of shards in it. */
Test(store, several_shards_commit_in_two_round_trips) {
    store_t *st = open_store();
    char err[256];
    uint64_t rt0, rt1, cmds;
    const char *names[1] = {"applied"};
    int64_t deltas[1] = {1};
    const char *ids[1] = {"c"};
    const char *vals[1] = {"v"};
    size_t lens[1] = {1};
    store_commit_req_t q[3];
    char shard[3][16];
    for (int i = 0; i < 3; i++) {
        snprintf(shard[i], sizeof(shard[i]), "ev:%d", i);
        q[i] = (store_commit_req_t){.shard = shard[i], .expected_offset = -1, .new_offset = 5, .expected_ioffset = -1, .new_ioffset = -1,
                                    .n_stats = 1, .stat_names = names, .stat_deltas = deltas,
                                    .n_keys = 1, .ids = ids, .vals = vals, .val_lens = lens};
    }
    store_counters(st, &rt0, &cmds);
    cr_assert_eq(store_commit(st, q, 3, err, sizeof(err)), STORE_OK);
    store_counters(st, &rt1, &cmds);
    cr_assert_eq(rt1 - rt0, 2);
    for (int i = 0; i < 3; i++) cr_assert_eq(q[i].status, STORE_OK);
    store_close(st);
}

Test(store, acl_user_and_password) {
    char err[256];
    redisReply *r = raw("ACL SETUSER jdtest on >s3cret-pw ~* +@all", "");
    freeReplyObject(r);
    cfg.redis_user = "jdtest";
    cfg.redis_password = "s3cret-pw";
    store_t *st = open_store();
    cr_assert_eq(store_ping(st, err, sizeof(err)), STORE_OK);
    store_close(st);
    cfg.redis_password = "wrong-pw";
    cr_assert_null(store_open(&cfg, err, sizeof(err)));
    cr_assert(strstr(err, "AUTH"), "%s", err);
    cr_assert_null(strstr(err, "wrong-pw"), "%s", err);
    r = raw("ACL DELUSER %s", "jdtest");
    freeReplyObject(r);
}

Test(store, unix_socket) {
    const char *sock = getenv("JD_REDIS_SOCKET");
    char err[256];
    if (!sock) cr_skip_test("JD_REDIS_SOCKET not set");
    cfg.redis_unix_socket = (char *)sock;
    store_t *st = open_store();
    cr_assert_eq(store_ping(st, err, sizeof(err)), STORE_OK);
    store_close(st);
}

/* ---- the answer log: appended between checkpoints, restarted with a header ---- */

typedef struct got {
    char log[256];
    size_t len;
    int fields;
} got_t;

static void got_field(const char *f, const char *v, void *o) {
    (void)f, (void)v;
    ((got_t *)o)->fields++;
}

static void got_log(const char *log, size_t len, void *o) {
    got_t *g = o;
    cr_assert_lt(len, sizeof(g->log));
    memcpy(g->log, log, len);
    g->len = len;
}

typedef struct caught {
    char log[2][64];
    size_t len[2];
    int n;
} caught_t;

static void caught(const char *log, size_t len, void *o) {
    caught_t *c = o;
    cr_assert_lt(c->n, 2);
    cr_assert_lt(len, sizeof(c->log[0]));
    memcpy(c->log[c->n], log, len);
    c->len[c->n++] = len;
}

static void commit_sat(store_t *st, int64_t expected, int64_t next, const char *log, int checkpoint) {
    char err[256];
    const char *names[1] = {"p|touchpoint|all|all|csat|all"}, *vals[1] = {"0,0,0,1,1"};
    store_commit_req_t q = {.shard = "events:3", .expected_offset = expected, .new_offset = next, .expected_ioffset = -1, .new_ioffset = -1,
                            .sat_log = checkpoint ? NULL : log, .sat_log_len = checkpoint ? 0 : strlen(log) + 1,
                            .sat_log_reset = checkpoint, .n_sat = checkpoint, .sat_names = names, .sat_values = vals};
    cr_assert_eq(store_commit(st, &q, 1, err, sizeof(err)), STORE_OK, "%s", err);
    cr_assert_eq(q.status, STORE_OK);
}

Test(store, answer_log_tail_and_checkpoint_header) {
    store_t *st = open_store();
    char err[256], hdr[STORE_LOG_HEADER_MAX];
    got_t g = {.len = 0};
    commit_sat(st, -1, 10, "1000 5 a", 0);
    commit_sat(st, 10, 20, "2000 4 a", 0);
    /* the whole: no checkpoint yet, no header */
    cr_assert_eq(store_shard_sat(st, "events:3", got_field, got_log, &g, hdr, sizeof(hdr), err, sizeof(err)), STORE_OK);
    cr_assert_eq(g.len, 18);
    cr_assert(!memcmp(g.log, "1000 5 a\0" "2000 4 a\0", 18));
    cr_assert_str_eq(hdr, "");
    cr_assert_eq(g.fields, 0);
    /* what came after byte 9, under the same header */
    cr_assert_eq(store_shard_sat_tail(st, "events:3", 9, hdr, sizeof(hdr), got_log, &g, err, sizeof(err)), STORE_OK, "%s", err);
    cr_assert_eq(g.len, 9);
    cr_assert(!memcmp(g.log, "2000 4 a\0", 9));
    cr_assert_eq(store_shard_sat_tail(st, "events:3", 18, hdr, sizeof(hdr), got_log, &g, err, sizeof(err)), STORE_OK, "%s", err);
    cr_assert_eq(g.len, 0);
    /* a checkpoint: the counts, and the log starts again with its header */
    commit_sat(st, 20, 30, NULL, 1);
    commit_sat(st, 30, 40, "3000 3 a", 0);
    cr_assert_eq(store_shard_sat_tail(st, "events:3", 18, hdr, sizeof(hdr), got_log, &g, err, sizeof(err)), STORE_OK, "%s", err);
    cr_assert_str_eq(hdr, "#30");
    cr_assert_eq(store_shard_sat(st, "events:3", got_field, got_log, &g, hdr, sizeof(hdr), err, sizeof(err)), STORE_OK);
    cr_assert_str_eq(hdr, "#30");
    cr_assert_eq(g.len, 13);
    cr_assert(!memcmp(g.log, "#30\0" "3000 3 a\0", 13));
    cr_assert_eq(g.fields, 1);
    /* a reader that had read 9 bytes of the log before the checkpoint: the
     * rest of the previous log, then the new one */
    char prev[STORE_LOG_HEADER_MAX];
    caught_t c = {0};
    cr_assert_eq(store_shard_sat_catchup(st, "events:3", 9, prev, sizeof(prev), hdr, sizeof(hdr), caught, &c, err,
                                         sizeof(err)), STORE_OK, "%s", err);
    cr_assert_str_eq(prev, "");
    cr_assert_str_eq(hdr, "#30");
    cr_assert_eq(c.n, 2);
    cr_assert_eq(c.len[0], 9);
    cr_assert(!memcmp(c.log[0], "2000 4 a\0", 9));
    cr_assert_eq(c.len[1], 13);
    /* one more checkpoint: the previous log is the one that began at #30 */
    commit_sat(st, 40, 50, NULL, 1);
    c.n = 0;
    cr_assert_eq(store_shard_sat_catchup(st, "events:3", 4, prev, sizeof(prev), hdr, sizeof(hdr), caught, &c, err,
                                         sizeof(err)), STORE_OK, "%s", err);
    cr_assert_str_eq(prev, "#30");
    cr_assert_str_eq(hdr, "#50");
    cr_assert_eq(c.len[0], 9);
    cr_assert(!memcmp(c.log[0], "3000 3 a\0", 9));
    cr_assert_eq(c.len[1], 4);
    store_close(st);
}

/* Due timers come in deadline order with their deadlines; `through` says up
 * to where the list is whole: the watermark asked for, or, when the limit
 * cut it short, just before the last deadline returned (a tie of it may be
 * left out). */
Test(store, due_timers_in_deadline_order_and_how_far_they_are_whole) {
    char key[128], err[256];
    snprintf(key, sizeof(key), "%s:{events:3}:t", prefix);
    redisContext *c = redisConnect("127.0.0.1", redis_port());
    cr_assert(c && !c->err);
    freeReplyObject(redisCommand(c, "ZADD %s 1767225600100 a 1767225600300 b 1767225600300 c 1767225600500 d "
                                    "1767225609000 e", key));
    redisFree(c);
    store_t *st = open_store();
    store_due_req_t q = {.shard = "events:3", .after = INT64_MIN, .until = 1767225600600, .limit = 10};
    cr_assert_eq(store_due_load(st, &q, 1, NULL, 0, err, sizeof(err)), STORE_OK, "%s", err);
    cr_assert_eq(q.n, 4);
    const char *want[] = {"a", "b", "c", "d"};
    const int64_t at[] = {1767225600100, 1767225600300, 1767225600300, 1767225600500};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(q.ids[i], want[i]);
        cr_assert_eq(q.at[i], at[i]);
    }
    cr_assert_eq(q.through, 1767225600600);
    cr_assert_eq(q.next, 1767225609000);
    store_due_free(&q, 1);
    q = (store_due_req_t){.shard = "events:3", .after = INT64_MIN, .until = 1767225600600, .limit = 2};
    cr_assert_eq(store_due_load(st, &q, 1, NULL, 0, err, sizeof(err)), STORE_OK, "%s", err);
    cr_assert_eq(q.n, 2);
    cr_assert_str_eq(q.ids[1], "b");
    cr_assert_eq(q.through, 1767225600299); /* c, due with b, was left out */
    store_due_free(&q, 1);
    /* after a closed-through mark: the timers up to it are not asked for */
    q = (store_due_req_t){.shard = "events:3", .after = 1767225600300, .until = 1767225600600, .limit = 2};
    cr_assert_eq(store_due_load(st, &q, 1, NULL, 0, err, sizeof(err)), STORE_OK, "%s", err);
    cr_assert_eq(q.n, 1);
    cr_assert_str_eq(q.ids[0], "d");
    cr_assert_eq(q.through, 1767225600600);
    store_due_free(&q, 1);
    store_close(st);
}
