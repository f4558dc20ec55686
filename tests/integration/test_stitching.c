/*
 * test_stitching.c -- the rules of identity stitching across partitions
 * (stitch.h), played between two shards of the batch against the real
 * redis-server: each shard's records are read from its outbox in Redis and
 * handed to the shard of their partition, as the internal topic would.
 *
 * Ids are chosen by their home partition (CRC-32, as librdkafka's default
 * partitioner): a0, a1, ... live in t:0 (A), b0, b1, ... in t:1 (B).
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "journey.h"
#include "stitch.h"

static char prefix[64], cfg_path[128];
static config_t *cfg;
static store_t *st, *st_load;
static deadletter_t *dl;
static char dlq[80]; /* the dead-letter topic, once a test has created it */
static batch_t *b;
static shard_t sh[2];
static int64_t ioff[2];       /* next offset of each internal partition */
static size_t delivered[2];   /* outbox records of each shard handed on */
static int64_t fake_seq;      /* records "from elsewhere" the test sends */
static redisContext *rc;
static rd_kafka_t *rk;         /* only to name the messages' topic */
static rd_kafka_topic_t *rkt;
static char ida[4][16], idb[8][16];

/* Create (create = 1) or delete a one-partition topic on the local broker
 * (the dead letters of these tests). */
static void admin_topic(const char *topic, int create) {
    char err[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", "127.0.0.1:19092", err, sizeof(err));
    rd_kafka_t *admin = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    cr_assert(admin, "%s", err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(admin);
    rd_kafka_NewTopic_t *nt = create ? rd_kafka_NewTopic_new(topic, 1, 1, err, sizeof(err)) : NULL;
    rd_kafka_DeleteTopic_t *dt = create ? NULL : rd_kafka_DeleteTopic_new(topic);
    if (create) rd_kafka_CreateTopics(admin, &nt, 1, NULL, q);
    else rd_kafka_DeleteTopics(admin, &dt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    cr_assert(ev && !rd_kafka_event_error(ev));
    rd_kafka_event_destroy(ev);
    if (nt) rd_kafka_NewTopic_destroy(nt);
    if (dt) rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(admin);
}

static int redis_port(void) {
    const char *p = getenv("JD_REDIS_PORT");
    return p ? (int)strtol(p, NULL, 10) : 16379;
}

/* The n-th id with home partition p, with letter as its prefix. */
static void pick(char *out, size_t cap, char letter, int p, int n) {
    for (int i = 0, found = 0;; i++) {
        snprintf(out, cap, "%c%d", letter, i);
        if (stitch_home(CFG_PART_CONSISTENT_RANDOM, out, 2) == p && found++ == n) return;
    }
}

static void setup(void) {
    char err[512];
    snprintf(prefix, sizeof(prefix), "stitch%d", (int)getpid());
    snprintf(cfg_path, sizeof(cfg_path), "/tmp/jd-stitching-%d.yaml", (int)getpid());
    FILE *f = fopen(cfg_path, "w");
    cr_assert(f);
    fprintf(f, "input:\n  topics: [t]\n  partitioner: consistent_random\nredis:\n  port: %d\n  prefix: %s\n"
               "journey:\n  max_linked_ids: 3\ndeadletter:\n  topic: %s.dlq\n",
            redis_port(), prefix, prefix);
    fclose(f);
    cfg = config_load(cfg_path, err, sizeof(err));
    cr_assert(cfg, "%s", err);
    st = store_open(cfg, err, sizeof(err));
    st_load = store_open(cfg, err, sizeof(err));
    cr_assert(st && st_load, "%s", err);
    dl = deadletter_open(cfg, err, sizeof(err));
    cr_assert(dl, "%s", err);
    b = batch_new(cfg);
    batch_set_stitching(b, 2, NULL);
    for (int p = 0; p < 2; p++) {
        memset(&sh[p], 0, sizeof(sh[p]));
        snprintf(sh[p].topic_buf, sizeof(sh[p].topic_buf), "t");
        sh[p].topic = sh[p].topic_buf;
        snprintf(sh[p].name, sizeof(sh[p].name), "t:%d", p);
        sh[p].partition = p;
        sh[p].committed = sh[p].next = sh[p].batch_last = -1;
        sh[p].icommitted = sh[p].inext = sh[p].ibatch_last = -1;
        sh[p].next_due = sh[p].closed_through = sh[p].closing_through = sh[p].funnel_expired = INT64_MIN;
        sh[p].sat_expired = -cfg->allowed_lateness_ms;
        sh[p].home = 1;
        ioff[p] = 0;
        delivered[p] = 0;
    }
    fake_seq = 0;
    for (int i = 0; i < 4; i++) pick(ida[i], sizeof(ida[i]), 'a', 0, i);
    for (int i = 0; i < 8; i++) pick(idb[i], sizeof(idb[i]), 'b', 1, i);
    rc = redisConnect("127.0.0.1", redis_port());
    cr_assert(rc && !rc->err);
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "log_level", "0", err, sizeof(err));
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    cr_assert(rk, "%s", err);
    rkt = rd_kafka_topic_new(rk, "t.internal", NULL);
}

static void teardown(void) {
    if (dlq[0]) admin_topic(dlq, 0);
    dlq[0] = '\0';
    redisReply *r = redisCommand(rc, "KEYS %s:*", prefix);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        freeReplyObject(redisCommand(rc, "UNLINK %b", r->element[i]->str, r->element[i]->len));
    if (r) freeReplyObject(r);
    redisFree(rc);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    batch_free(b);
    for (int p = 0; p < 2; p++) shard_release(&sh[p]);
    deadletter_close(dl, 1000);
    store_close(st);
    store_close(st_load);
    config_free(cfg);
    unlink(cfg_path);
}

TestSuite(stitching, .init = setup, .fini = teardown);

static void commit(void) {
    char err[512];
    cr_assert_eq(batch_commit(b, st, st_load, dl, err, sizeof(err)), STORE_OK, "%s", err);
}

/* A message of internal partition p holding rec, taken by the batch. */
static void take(int p, const char *rec, size_t len) {
    rd_kafka_message_t m;
    memset(&m, 0, sizeof(m));
    m.rkt = rkt;
    m.payload = (void *)rec;
    m.len = len;
    m.partition = p;
    m.offset = ioff[p]++;
    batch_add_internal(b, &sh[p], &m, dl);
}

/* Send f to its home as if from a shard elsewhere ("elsewhere:0"), into
 * the open batch. */
static void queue_fwd(fwd_t *f) {
    char *rec;
    size_t len;
    snprintf(f->src, sizeof(f->src), "elsewhere:0");
    f->seq = ++fake_seq;
    cr_assert_eq(fwd_encode(f, &rec, &len), 0);
    take(stitch_home(CFG_PART_CONSISTENT_RANDOM, f->id, 2), rec, len);
    free(rec);
}

/* A touch event (or, with other, an identify) of id at ts in phase ph,
 * into the open batch. */
static void queue_event(const char *id, int64_t ts, int ph, const char *tp, const char *other) {
    fwd_t f;
    memset(&f, 0, sizeof(f));
    f.kind = other ? FWD_LINK : FWD_EVENT;
    snprintf(f.id, sizeof(f.id), "%s", id);
    if (other) snprintf(f.other, sizeof(f.other), "%s", other);
    f.ts = ts;
    f.mid = (uint64_t)ts * 7919 + (uint64_t)strlen(id);
    f.phase = (int8_t)ph;
    f.metric = EV_METRIC_NONE;
    snprintf(f.tp, sizeof(f.tp), "%s", tp);
    queue_fwd(&f);
}

/* The same, committed at once. */
static void event(const char *id, int64_t ts, int ph, const char *tp, const char *other) {
    queue_event(id, ts, ph, tp, other);
    commit();
}

/* Hand every record the shards have sent to its partition, one commit per
 * round, until none is left; how many, not counting the shards'
 * announcements of their clocks. */
static int pump(void) {
    int total = 0;
    for (int round = 0; round < 20; round++) {
        int n = 0, left = 0;
        for (int p = 0; p < 2; p++) {
            redisReply *r = redisCommand(rc, "LRANGE %s:{t:%d}:x 0 -1", prefix, p);
            cr_assert(r && r->type == REDIS_REPLY_ARRAY);
            for (size_t i = delivered[p]; i < r->elements; i++) {
                int32_t part;
                const char *key, *val;
                size_t kl, vl;
                cr_assert_eq(shard_out_parse(r->element[i]->str, r->element[i]->len, &part, &key, &kl, &val, &vl), 0);
                char id[JD_ID_MAX + 1];
                snprintf(id, sizeof(id), "%.*s", (int)kl, key);
                fwd_t f;
                char err[128];
                cr_assert_eq(fwd_decode(val, vl, &f, err, sizeof(err)), 0, "%s", err);
                if (f.kind != FWD_CLOCK) /* keyed by its id, sent to its home */
                    cr_assert_eq(part, stitch_home(CFG_PART_CONSISTENT_RANDOM, id, 2));
                take(part, val, vl);
                n += f.kind != FWD_CLOCK;
                left++;
            }
            delivered[p] = r->elements;
            freeReplyObject(r);
        }
        if (!left) return total;
        total += n;
        commit();
    }
    cr_assert_fail("records keep coming");
    return total;
}

/* Both partitions' inputs move to t, and each learns the other's clock. */
static void tick_both(int64_t t) {
    for (int p = 0; p < 2; p++) batch_tick(b, &sh[p], t);
    commit();
    pump();
}

/* The value stored for id: a journey (unpacked into j) or a redirect
 * (its target in target); 0 if absent. */
static int stored(const char *id, journey_t *j, char *target) {
    int p = stitch_home(CFG_PART_CONSISTENT_RANDOM, id, 2);
    redisReply *r = redisCommand(rc, "GET %s:{t:%d}:j:%s", prefix, p, id);
    cr_assert(r);
    int kind = 0;
    if (r->type == REDIS_REPLY_STRING && (unsigned char)r->str[0] == STORE_REDIRECT) {
        snprintf(target, JD_ID_MAX + 1, "%.*s", (int)r->len - 1, r->str + 1);
        kind = 2;
    } else if (r->type == REDIS_REPLY_STRING) {
        char err[128];
        journey_init(j, id);
        cr_assert_eq(journey_unpack(j, r->str, r->len, cfg, err, sizeof(err)), 0, "%s", err);
        kind = 1;
    }
    freeReplyObject(r);
    return kind;
}

static journey_t *journey_of(const char *id) {
    static journey_t j;
    char t[JD_ID_MAX + 1];
    journey_reset(&j);
    cr_assert_eq(stored(id, &j, t), 1, "%s has no journey", id);
    return &j;
}

static void assert_redirect(const char *id, const char *to) {
    journey_t j;
    char t[JD_ID_MAX + 1];
    cr_assert_eq(stored(id, &j, t), 2, "%s is no redirect", id);
    cr_assert_str_eq(t, to, "%s -> %s, not %s", id, t, to);
}

/* A counter of the shards' counters hashes, summed over both. */
static int64_t counter(const char *field) {
    int64_t n = 0;
    for (int p = 0; p < 2; p++) {
        redisReply *r = redisCommand(rc, "HGET %s:{t:%d}:s %s", prefix, p, field);
        if (r && r->type == REDIS_REPLY_STRING) n += strtoll(r->str, NULL, 10);
        freeReplyObject(r);
    }
    return n;
}

static int64_t counter_of(int p, const char *field) {
    redisReply *r = redisCommand(rc, "HGET %s:{t:%d}:s %s", prefix, p, field);
    int64_t n = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

#define T0 1767225600000LL /* 2026-01-01 */

/* An anonymous journey in A, its customer identified in B: the journey
 * moves to B whole, the funnel counts one journey, and a's later events
 * follow it. */
Test(stitching, the_anonymous_journey_moves_to_its_customer) {
    const char *a = ida[0], *u = idb[0];
    event(a, T0 + 1000, 0, "ads", NULL);
    event(a, T0 + 2000, 1, "reviews", NULL);
    event(u, T0 + 3000, 1, "", a); /* identify u, anonymousId a: in B */
    cr_assert_eq(journey_of(u)->linked, 1); /* reserved */
    cr_assert_eq(journey_of(u)->pending, 1); /* and waiting for the answer: no timeout */
    cr_assert_eq(pump(), 2);                /* the claim to A, the hand-off back */
    cr_assert_eq(journey_of(u)->pending, 0);
    assert_redirect(a, u);
    journey_t *j = journey_of(u);
    cr_assert_eq(j->events, 3);
    cr_assert_eq(j->phase, 1);
    cr_assert_eq(j->phase_ts[0], T0 + 1000);
    cr_assert_eq(j->phase_ts[1], T0 + 2000);
    cr_assert_eq(j->merged, 1);
    cr_assert_eq(j->linked, 1);
    cr_assert_eq(counter_of(0, "linked"), 1);
    cr_assert_eq(counter_of(1, "merged"), 1);
    cr_assert_eq(counter("f|search|none|reached"), 1);
    cr_assert_eq(counter("f|search|none|progressed"), 1);
    cr_assert_eq(counter("f|search|none|active"), 0);
    cr_assert_eq(counter("f|information|none|reached"), 1);
    cr_assert_eq(counter("f|information|none|active"), 1);
    /* a's next event, arriving in A, is forwarded to u */
    event(a, T0 + 4000, 2, "checkout", NULL);
    cr_assert_eq(pump(), 1);
    j = journey_of(u);
    cr_assert_eq(j->events, 4);
    cr_assert_eq(j->phase, 2);
    cr_assert_eq(counter("f|purchase|none|active"), 1);
    cr_assert_eq(counter("f|information|none|active"), 0);
    cr_assert_eq(counter("forwarded"), counter("received") - 4); /* the test's own 4 */
    cr_assert_eq(counter("received_again"), 0);
}

/* A shared device: a, linked to u, later identified as v, stays u's; v's
 * reservation is given back. */
Test(stitching, a_shared_device_is_not_merged_into_a_second_customer) {
    const char *a = ida[0], *u = idb[0], *v = idb[1];
    event(a, T0 + 1000, 0, "ads", NULL);
    event(u, T0 + 2000, 0, "", a);
    pump();
    event(v, T0 + 3000, 0, "", a);
    cr_assert_eq(journey_of(v)->linked, 1);
    cr_assert_eq(pump(), 3); /* the claim; a is u's: on to u's home (B), which refuses; the release */
    assert_redirect(a, u);
    journey_t *j = journey_of(v);
    cr_assert_eq(j->linked, 0);
    cr_assert_eq(j->merged, 0);
    cr_assert_eq(j->events, 1);
    cr_assert_eq(journey_of(u)->events, 2);
    cr_assert_eq(counter_of(1, "link_conflict"), 1); /* decided where the chain ends */
    cr_assert_eq(counter("linked"), 1);
}

/* Alias chains across partitions: u (B) aliased to w (A) takes a with it;
 * a's events follow a -> u -> w over both partitions; identifying a as w
 * again costs nothing; the cap counts what w has absorbed. */
Test(stitching, chains_of_aliases_and_the_cap) {
    const char *a = ida[0], *w = ida[1], *u = idb[0];
    event(a, T0 + 1000, 0, "ads", NULL);
    event(u, T0 + 2000, 1, "", a);
    pump();
    event(w, T0 + 3000, 1, "", u); /* alias u -> w (previousId u) */
    cr_assert_eq(pump(), 2);
    assert_redirect(u, w);
    assert_redirect(a, u);
    journey_t *j = journey_of(w);
    cr_assert_eq(j->events, 3);
    cr_assert_eq(j->merged, 2);
    cr_assert_eq(j->linked, 2);
    event(a, T0 + 4000, 2, "checkout", NULL); /* A -> B -> A */
    cr_assert_eq(pump(), 2);
    j = journey_of(w);
    cr_assert_eq(j->events, 4);
    cr_assert_eq(j->phase, 2);
    event(w, T0 + 5000, 2, "", a); /* again: a is w's already, through u */
    cr_assert_eq(pump(), 2);      /* the claim following the chain to B, the release */
    j = journey_of(w);
    cr_assert_eq(j->linked, 2);
    cr_assert_eq(j->merged, 2);
    cr_assert_eq(j->events, 5);
    cr_assert_eq(counter("link_conflict"), 0);
    /* the cap is 3: one more id, then a refusal */
    event(w, T0 + 6000, 2, "", idb[2]);
    pump();
    assert_redirect(idb[2], w);
    event(w, T0 + 7000, 2, "", idb[3]);
    cr_assert_eq(pump(), 0);
    cr_assert_eq(journey_of(w)->linked, 3);
    cr_assert_eq(counter_of(0, "link_capped"), 1);
    journey_t k;
    char t[JD_ID_MAX + 1];
    cr_assert_eq(stored(idb[3], &k, t), 0); /* not linked: nothing written for it */
    /* the funnel counted one journey all along */
    cr_assert_eq(counter("f|search|none|reached"), 1);
    cr_assert_eq(counter("f|purchase|none|active"), 1);
    cr_assert_eq(counter("f|search|none|active") + counter("f|information|none|active"), 0);
}

/* A record sent again (its source restarted) is applied once. */
Test(stitching, a_record_sent_again_is_applied_once) {
    fwd_t f;
    char *rec;
    size_t len;
    memset(&f, 0, sizeof(f));
    f.kind = FWD_EVENT;
    snprintf(f.id, sizeof(f.id), "%s", idb[0]);
    snprintf(f.src, sizeof(f.src), "elsewhere:1");
    f.seq = 5;
    f.ts = T0;
    f.mid = 99;
    snprintf(f.tp, sizeof(f.tp), "ads");
    cr_assert_eq(fwd_encode(&f, &rec, &len), 0);
    take(1, rec, len);
    take(1, rec, len);
    commit();
    take(1, rec, len);
    commit();
    free(rec);
    cr_assert_eq(journey_of(idb[0])->events, 1);
    cr_assert_eq(counter_of(1, "received"), 1);
    cr_assert_eq(counter_of(1, "received_again"), 2);
    cr_assert_eq(counter_of(1, "in|elsewhere:1"), 5);
    cr_assert_eq(counter_of(1, "applied"), 1);
}

/* The hand-off finds the customer's journey of the link gone: a later
 * event of the customer came after its deadline and started its next
 * journey. The anonymous journey is counted and closed on its own, once;
 * the waiting journey does not time out meanwhile, and its next one takes
 * the answer. */
Test(stitching, a_late_hand_off_closes_on_its_own) {
    const char *a = ida[0], *u = idb[0];
    event(a, T0 + 1000, 0, "ads", NULL);
    event(u, T0 + 2000, 0, "", a);
    batch_tick(b, &sh[1], T0 + 2LL * 3600000); /* past u's deadline (search: 30m) and the lateness */
    commit();
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 0); /* u waits for the answer */
    event(u, T0 + 3LL * 3600000, 0, "ads", NULL); /* after the deadline: u's next journey */
    cr_assert_eq(journey_of(u)->number, 2);
    cr_assert_eq(journey_of(u)->pending, 1);
    cr_assert_eq(pump(), 2);
    assert_redirect(a, u);
    cr_assert_eq(counter_of(1, "handoff_closed"), 1);
    journey_t *j = journey_of(u);
    cr_assert_eq(j->events, 1);
    cr_assert_eq(j->pending, 0);
    cr_assert_eq(counter("f|search|none|reached"), 3); /* u's two journeys and a's, each once */
    cr_assert_eq(counter("f|search|none|dropped"), 2);
    cr_assert_eq(counter("f|search|none|active"), 1);
}

/* A partition's watermark waits for what the other partitions announced
 * of their own input (here moved by ticks: the test's events arrive as
 * records): B's clock runs 10h on, but A is at its start, so nothing of B
 * times out until A has moved on. */
Test(stitching, the_watermark_waits_for_the_slowest_partition) {
    event(idb[0], T0 + 1000, 0, "ads", NULL); /* B: a search journey, 30m */
    event(ida[0], T0 + 1000, 0, "ads", NULL);
    pump();                                   /* the announcements */
    event(idb[1], T0 + 10LL * 3600000, 0, "ads", NULL); /* B's clock: 10h on */
    batch_tick(b, &sh[1], T0 + 10LL * 3600000);
    commit();
    pump();
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 0);
    cr_assert_eq(counter_of(1, "f|search|none|active"), 2);
    batch_tick(b, &sh[0], T0 + 5LL * 3600000); /* A's input moves to 5h */
    commit();
    pump();
    batch_tick(b, &sh[1], T0 + 10LL * 3600000);
    commit();
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 1); /* idb[0]'s, due at 30m */
    cr_assert_eq(counter_of(1, "f|search|none|active"), 1);
}

/* How many fields of partition p's hash `suffix` end with end. */
static int fields_ending(int p, const char *suffix, const char *end) {
    redisReply *r = redisCommand(rc, "HKEYS %s:{t:%d}:%s", prefix, p, suffix);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    int n = 0;
    size_t el = strlen(end);
    for (size_t i = 0; i < r->elements; i++)
        n += r->element[i]->len >= el && !memcmp(r->element[i]->str + r->element[i]->len - el, end, el);
    freeReplyObject(r);
    return n;
}

/* While B's journeys wait for A (held watermark), B's windowed counters
 * follow B's own watermark, the one its windows are read at: the 1h
 * windows' buckets of T0 are deleted once B is 10h on (in the funnel and
 * in satisfaction's memory), the 24h windows' kept, and the journey stays open. */
Test(stitching, windowed_counters_follow_the_partitions_own_watermark) {
    const int64_t h = 3600000;
    char b1h[64], b24h[64];
    snprintf(b1h, sizeof(b1h), "|%lld|%lld", 300000LL, (long long)((T0 + 1000) / 300000));
    snprintf(b24h, sizeof(b24h), "|%lld|%lld", 7200000LL, (long long)((T0 + 1000) / 7200000));
    fwd_t f;
    memset(&f, 0, sizeof(f));
    f.kind = FWD_EVENT;
    snprintf(f.id, sizeof(f.id), "%s", idb[0]);
    f.ts = T0 + 1000;
    f.mid = 42;
    f.phase = 0;
    f.metric = EV_METRIC_NPS; /* a touch with an answer: B, search, ads */
    f.score = 9;
    snprintf(f.tp, sizeof(f.tp), "ads");
    queue_fwd(&f);
    commit();
    event(ida[0], T0 + 1000, 0, "ads", NULL);
    pump(); /* the announcements: A is at T0 */
    cr_assert_eq(fields_ending(1, "s", b1h), 1);
    cr_assert_eq(sat_part_buckets(&sh[1].sat), 2 * 4); /* by touchpoint and by segment, 4 windows */
    event(idb[1], T0 + 10 * h, 0, "ads", NULL);
    batch_tick(b, &sh[1], T0 + 10 * h);
    commit();
    pump();
    cr_assert_eq(counter_of(1, "f|search|none|active"), 2); /* idb[0]'s journey waits for A */
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 0);
    cr_assert_eq(fields_ending(1, "s", b1h), 0);
    cr_assert_eq(fields_ending(1, "s", b24h), 1);
    cr_assert_eq(sat_part_buckets(&sh[1].sat), 2 * 3); /* (the log holds them until a checkpoint) */
}

/* A partition behind the others takes neither their announcements nor
 * the records they send for its own clock: B's input is at T0, A's at 10h,
 * and an event of 10h comes to B from A; B's journey of T0 stays open, and
 * B's own next event for it, a minute later, is applied to it, not late. */
Test(stitching, a_partition_behind_keeps_its_own_clock) {
    const char *u = idb[0];
    batch_tick(b, &sh[1], T0);
    event(u, T0 + 1000, 0, "ads", NULL);      /* B: a search journey, due at 30m */
    batch_tick(b, &sh[0], T0 + 10LL * 3600000); /* A's input: 10h on */
    commit();
    pump();                                   /* A's announcement reaches B */
    event(idb[1], T0 + 10LL * 3600000, 0, "ads", NULL); /* an event from A, 10h on */
    pump();
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 0);
    cr_assert_eq(counter_of(1, "f|search|none|active"), 2);
    event(u, T0 + 61000, 0, "search_engine", NULL);
    cr_assert_eq(journey_of(u)->events, 2);
    cr_assert_eq(journey_of(u)->number, 1);
    cr_assert_eq(counter_of(1, "late"), 0);
    batch_tick(b, &sh[1], T0 + 10LL * 3600000); /* B's own input moves on: now it is due */
    commit();
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 1);
    cr_assert_eq(counter_of(1, "f|search|none|active"), 1);
}

/* 2 n search journeys of ids homed in B, ids[i] at T0 + 1s + i ms, in two
 * commits (a batch holds 5000 events). */
#define ID_LEN 16
static void search_journeys(char (*ids)[ID_LEN], int n) {
    for (int i = 0, k = 0; k < 2 * n; i++) {
        snprintf(ids[k], ID_LEN, "z%d", i);
        k += stitch_home(CFG_PART_CONSISTENT_RANDOM, ids[k], 2) == 1;
    }
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < n; i++) queue_event(ids[k * n + i], T0 + 1000 + k * n + i, 0, "ads", NULL);
        commit();
    }
}

/* More journeys due than a batch fetches (processing.batch_max_events,
 * 5000): the mark moves to just before the last deadline fetched, so the
 * due journeys that have left memory are closed by their close records
 * (not read again), but the last one fetched (its deadline's ties may have
 * been left out: it is read), and the rest in the next batch. 6000
 * journeys (in two batches: a batch holds 5000 events), all out of memory
 * and due at once. */
Test(stitching, more_due_journeys_than_a_batch_fetches) {
    enum { N = 3000 };
    static char ids[2 * N][ID_LEN];
    tick_both(T0);
    search_journeys(ids, N);
    cr_assert_eq(counter_of(1, "f|search|none|active"), 2 * N);
    tick_both(T0 + 2LL * 3600000); /* the announcements: B's watermark may pass 30m now */
    size_t bytes;
    uint64_t by_record0, by_record;
    batch_close_records(b, &bytes, &by_record0);
    batch_tick(b, &sh[1], T0 + 2LL * 3600000);
    commit(); /* the first 5000 due */
    batch_close_records(b, &bytes, &by_record);
    cr_assert_eq(by_record - by_record0, 4999);
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 5000);
    batch_tick(b, &sh[1], T0 + 2LL * 3600000);
    commit(); /* the rest */
    batch_close_records(b, &bytes, &by_record);
    cr_assert_eq(by_record - by_record0, 2 * N - 1);
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 2 * N);
    cr_assert_eq(counter_of(1, "f|search|none|active"), 0);
    redisReply *r = redisCommand(rc, "ZCARD %s:{t:1}:t", prefix);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    cr_assert_eq(r->integer, 0); /* every timer fired and went */
    freeReplyObject(r);
}

/* The same with a timer that fired early among those fetched: u's timer
 * (at 30m) comes first, its deadline (50m) is past the last deadline the
 * first batch fetches, so the mark does not cover it: it is set again at
 * 50m from u's close record, not read, and closed by the record in the
 * next batch. */
Test(stitching, an_early_timer_beyond_the_fetched_ones_is_set_again) {
    enum { N = 3000 };
    static char ids[2 * N][ID_LEN];
    const int64_t M = 60000;
    const char *u = idb[0];
    tick_both(T0);
    event(u, T0 + 500, 0, "ads", NULL);   /* timer at 30m */
    event(u, T0 + 20 * M, 0, "ads", NULL); /* deadline at 50m, the timer stays */
    search_journeys(ids, N); /* deadlines from 30m + 1s: u leaves memory */
    tick_both(T0 + 2 * 60 * M);
    size_t bytes;
    uint64_t by0, by1;
    batch_close_records(b, &bytes, &by0);
    batch_tick(b, &sh[1], T0 + 2 * 60 * M);
    commit(); /* u and the first 4999 */
    batch_close_records(b, &bytes, &by1);
    cr_assert_eq(by1 - by0, 4998); /* the last one fetched is read */
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 4999);
    redisReply *r = redisCommand(rc, "ZSCORE %s:{t:1}:t %s", prefix, u);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_assert_eq(strtoll(r->str, NULL, 10), T0 + 50 * M);
    freeReplyObject(r);
    batch_tick(b, &sh[1], T0 + 2 * 60 * M);
    commit(); /* the rest, and u */
    batch_close_records(b, &bytes, &by1);
    cr_assert_eq(by1 - by0, 2 * N);
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 2 * N + 1);
    cr_assert_eq(counter_of(1, "f|search|none|active"), 0);
    r = redisCommand(rc, "ZCARD %s:{t:1}:t", prefix);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    cr_assert_eq(journey_of(u)->events, 2);
}

/* The due timers are asked for after the shard's closed-through mark: the
 * ones before it go with the commit that moved it, which may still be in
 * flight while the next batch loads (simulated here by setting one of
 * them again); asked for, each would be read, its journey closed already. */
Test(stitching, timers_before_the_mark_are_not_asked_for) {
    const char *u = idb[0];
    const int64_t M = 60000;
    tick_both(T0);
    event(u, T0 + 1000, 0, "ads", NULL);        /* due at 30m */
    event(idb[2], T0 + 8 * M, 0, "ads", NULL);  /* due at 38m */
    event(idb[1], T0 + 2000, 0, "ads", NULL);   /* the others leave memory */
    tick_both(T0 + 40 * M);
    batch_tick(b, &sh[1], T0 + 40 * M);
    commit(); /* u and idb[1] closed by their records, the mark at 35m */
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 2);
    tick_both(T0 + 44 * M); /* B's watermark may pass 39m now */
    freeReplyObject(redisCommand(rc, "ZADD %s:{t:1}:t %lld %s", prefix, (long long)(T0 + 1000 + 30 * M), u));
    uint64_t rt, before, after;
    store_counters(st_load, &rt, &before);
    batch_tick(b, &sh[1], T0 + 44 * M);
    commit(); /* idb[2] due, closed by its record */
    store_counters(st_load, &rt, &after);
    cr_assert_eq(after - before, 2); /* the due timers (two ZRANGEBYSCORE), no MGET */
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 3);
}

/* A timer that fires early (the journey's deadline moved on since it was
 * set: timers only move earlier) for a journey out of memory: its close
 * record says it is still open, so the timer is set again at the deadline
 * without the journey being read (the load connection sends only the due
 * timers' query), and it closes there, by its record. */
Test(stitching, an_early_timer_is_set_again_from_the_close_record) {
    const char *u = idb[0];
    const int64_t M = 60000;
    tick_both(T0);
    event(u, T0 + 1000, 0, "ads", NULL);       /* timer at 30m */
    event(u, T0 + 20 * M, 0, "ads", NULL);     /* deadline at 50m, the timer stays */
    event(idb[1], T0 + 20 * M, 0, "ads", NULL); /* u leaves memory */
    char key[128];
    snprintf(key, sizeof(key), "%s:{t:1}:t", prefix);
    redisReply *r = redisCommand(rc, "ZSCORE %s %s", key, u);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_assert_eq(strtoll(r->str, NULL, 10), T0 + 1000 + 30 * M);
    freeReplyObject(r);
    tick_both(T0 + 40 * M); /* B's watermark may pass 35m now */
    uint64_t rt, before, after;
    store_counters(st_load, &rt, &before);
    batch_tick(b, &sh[1], T0 + 40 * M);
    commit();
    store_counters(st_load, &rt, &after);
    cr_assert_eq(after - before, 2); /* the due timers (two ZRANGEBYSCORE), no MGET */
    r = redisCommand(rc, "ZSCORE %s %s", key, u);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_assert_eq(strtoll(r->str, NULL, 10), T0 + 20 * M + 30 * M);
    freeReplyObject(r);
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 0);
    size_t bytes;
    uint64_t by0, by1;
    batch_close_records(b, &bytes, &by0);
    tick_both(T0 + 2 * 60 * M);
    batch_tick(b, &sh[1], T0 + 2 * 60 * M);
    commit();
    batch_close_records(b, &bytes, &by1);
    cr_assert_eq(counter_of(1, "f|search|none|dropped"), 2); /* u and idb[1] */
    cr_assert_eq(by1 - by0, 2);
}

/* A record for an id whose home is another partition is refused to the
 * dead letters (daemons that disagree on input.partitioner), not applied. */
Test(stitching, a_record_for_another_home_is_refused) {
    fwd_t f;
    char *rec;
    size_t len;
    memset(&f, 0, sizeof(f));
    f.kind = FWD_EVENT;
    snprintf(f.id, sizeof(f.id), "%s", ida[0]);
    snprintf(f.src, sizeof(f.src), "elsewhere:1");
    f.seq = 1;
    f.ts = T0;
    cr_assert_eq(fwd_encode(&f, &rec, &len), 0);
    snprintf(dlq, sizeof(dlq), "%s.dlq", prefix);
    admin_topic(dlq, 1); /* deleted by teardown() */
    take(1, rec, len); /* ida[0] lives in A */
    take(1, "not a record", 12);
    free(rec);
    commit();
    cr_assert_eq(counter_of(1, "deadletter.internal"), 2);
    cr_assert_eq(counter("applied"), 0);
}
