/*
 * test_journey.c -- the journey state machine: phase progression, history,
 * dedup, order independence, merge, serialisation.
 */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "journey.h"
#include "text.h"

static config_t cfg;

static void setup(void) {
    memset(&cfg, 0, sizeof(cfg));
    const char *names[] = {"search", "information", "purchase", "loyalty"};
    cfg.n_phases = 4;
    for (int i = 0; i < 4; i++) snprintf(cfg.phases[i].name, sizeof(cfg.phases[i].name), "%s", names[i]);
    cfg.history_max = 50;
    cfg.dedup_max = 128;
}

TestSuite(journey, .init = setup);

typedef struct tev {
    const char *mid;
    int64_t ts;
    int phase;
    const char *tp;     /* NULL: identify-like */
    const char *segment;
    int metric, score;
    int explicit_phase;
} tev_t;

static journey_result_t apply(journey_t *j, const tev_t *t) {
    event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.ts_ms = t->ts;
    ev.message_id = t->mid;
    ev.segment = t->segment;
    ev.metric = (ev_metric_t)t->metric;
    ev.score = t->score;
    ev.phase = t->explicit_phase ? cfg.phases[t->phase].name : NULL;
    return journey_apply(j, &cfg, &ev, journey_mid_hash(t->mid, strlen(t->mid)), t->phase, t->tp);
}

static const tev_t EVENTS[] = {
    {"m1", 1000, 0, "search_engine", "consumer", 0, 0, 0},
    {"m2", 2000, 0, "ads", NULL, 0, 0, 0},
    {"m3", 5000, 1, "company_site", NULL, 0, 0, 0},
    {"m4", 7000, -1, "newsletter", NULL, 0, 0, 0},
    {"m5", 9000, 0, "social_media", "smb", 0, 0, 0},
    {"m6", 12000, 2, "checkout", NULL, 0, 0, 0},
    {"m7", 13000, -1, "checkout", NULL, EV_METRIC_NPS, 6, 0},
};
#define N_EVENTS (sizeof(EVENTS) / sizeof(EVENTS[0]))

static void pack(const journey_t *j, char **buf, size_t *len) {
    cr_assert_eq(journey_pack(j, buf, len), 0);
}

Test(journey, phases_times_and_last_touchpoint) {
    journey_t j;
    journey_init(&j, "u1");
    for (size_t i = 0; i < N_EVENTS; i++) cr_assert_eq(apply(&j, &EVENTS[i]), JOURNEY_APPLIED);
    cr_assert_str_eq(j.customer, "u1");
    cr_assert_eq(j.phase, 2);
    cr_assert_eq(j.events, 7);
    cr_assert_eq(j.start_ts, 1000);
    cr_assert_eq(j.last_ts, 13000);
    cr_assert_eq(j.phase_ts[0], 1000);
    cr_assert_eq(j.phase_ts[1], 5000);
    cr_assert_eq(j.phase_ts[2], 12000);
    cr_assert_eq(j.phase_ts[3], JOURNEY_NO_TIME);
    cr_assert_str_eq(j.last_tp, "checkout");
    cr_assert_str_eq(j.segment, "smb");          /* latest event carrying one */
    cr_assert_eq(j.n_hist, 7);
    cr_assert_str_eq(j.hist[4].tp, "social_media"); /* earlier phase kept in history */
    cr_assert_eq(j.hist[4].phase, 0);
    cr_assert_eq(j.sat.metric, EV_METRIC_NPS);
    cr_assert_eq(j.sat.score, 6);
    cr_assert_eq(j.sat.phase, 2);                 /* journey's phase after the event */
    cr_assert_str_eq(j.sat.tp, "checkout");
    journey_reset(&j);
}

Test(journey, jumping_ahead_reaches_every_earlier_phase) {
    journey_t j;
    journey_init(&j, "u1");
    tev_t t = {"x", 4242, 3, "delivery", NULL, 0, 0, 0};
    apply(&j, &t);
    cr_assert_eq(j.phase, 3);
    for (int k = 0; k < 4; k++) cr_assert_eq(j.phase_ts[k], 4242);
    journey_reset(&j);
}

Test(journey, unclassified_only_changes_no_phase) {
    journey_t j;
    journey_init(&j, "u1");
    tev_t t = {"x", 10, -1, "unknown", NULL, 0, 0, 0};
    apply(&j, &t);
    cr_assert_eq(j.phase, -1);
    cr_assert_eq(j.events, 1);
    cr_assert_eq(j.last_ts, 10);
    cr_assert_eq(j.n_hist, 1);
    journey_reset(&j);
}

Test(journey, duplicates_are_dropped) {
    journey_t j;
    journey_init(&j, "u1");
    cr_assert_eq(apply(&j, &EVENTS[0]), JOURNEY_APPLIED);
    cr_assert_eq(apply(&j, &EVENTS[1]), JOURNEY_APPLIED);
    cr_assert_eq(apply(&j, &EVENTS[0]), JOURNEY_DUPLICATE);
    cr_assert_eq(j.events, 2);
    cr_assert_eq(j.n_hist, 2);
    journey_reset(&j);
}

Test(journey, dedup_window_is_capped) {
    journey_t j;
    cfg.dedup_max = 2;
    journey_init(&j, "u1");
    apply(&j, &EVENTS[0]);
    apply(&j, &EVENTS[1]);
    apply(&j, &EVENTS[2]);                       /* evicts m1 */
    cr_assert_eq(apply(&j, &EVENTS[2]), JOURNEY_DUPLICATE);
    cr_assert_eq(apply(&j, &EVENTS[0]), JOURNEY_APPLIED); /* forgotten: counted again */
    cr_assert_eq(j.n_dedup, 2);
    journey_reset(&j);
}

Test(journey, history_keeps_the_latest_entries) {
    journey_t j;
    cfg.history_max = 3;
    journey_init(&j, "u1");
    for (size_t i = 0; i < N_EVENTS; i++) apply(&j, &EVENTS[i]);
    cr_assert_eq(j.n_hist, 3);
    cr_assert_eq(j.hist[0].ts, 9000);
    cr_assert_eq(j.hist[1].ts, 12000);
    cr_assert_eq(j.hist[2].ts, 13000);
    tev_t late = {"late", 500, 0, "forum", NULL, 0, 0, 0};
    apply(&j, &late);                              /* older than all kept */
    cr_assert_eq(j.n_hist, 3);
    cr_assert_eq(j.hist[0].ts, 9000);
    cr_assert_eq(j.start_ts, 500);
    cr_assert_eq(j.events, 8);
    journey_reset(&j);
}

/* Every permutation order of delivery gives the byte-identical state. */
Test(journey, state_does_not_depend_on_arrival_order) {
    char *ref, *got;
    size_t reflen, gotlen;
    journey_t j;
    cfg.history_max = 4;
    journey_init(&j, "u1");
    for (size_t i = 0; i < N_EVENTS; i++) apply(&j, &EVENTS[i]);
    pack(&j, &ref, &reflen);
    journey_reset(&j);
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        size_t order[N_EVENTS];
        for (size_t i = 0; i < N_EVENTS; i++) order[i] = i;
        for (size_t i = N_EVENTS - 1; i > 0; i--) {
            seed = seed * 1103515245u + 12345u;
            size_t k = (seed >> 16) % (i + 1), t = order[i];
            order[i] = order[k];
            order[k] = t;
        }
        journey_init(&j, "u1");
        for (size_t i = 0; i < N_EVENTS; i++) apply(&j, &EVENTS[order[i]]);
        /* dedup ring order differs by arrival; compare without it */
        j.n_dedup = 0;
        j.dedup_pos = 0;
        pack(&j, &got, &gotlen);
        journey_t r;
        journey_init(&r, "u1");
        for (size_t i = 0; i < N_EVENTS; i++) apply(&r, &EVENTS[i]);
        r.n_dedup = 0;
        r.dedup_pos = 0;
        free(ref);
        pack(&r, &ref, &reflen);
        cr_assert_eq(gotlen, reflen, "round %d", round);
        cr_assert(memcmp(got, ref, reflen) == 0, "round %d", round);
        free(got);
        journey_reset(&j);
        journey_reset(&r);
    }
    free(ref);
}

Test(journey, merge_equals_applying_everything_to_one_journey) {
    journey_t anon, user, all;
    journey_init(&anon, "a1");
    journey_init(&user, "u1");
    journey_init(&all, "u1");
    for (size_t i = 0; i < N_EVENTS; i++) {
        apply(i % 2 ? &user : &anon, &EVENTS[i]);
        apply(&all, &EVENTS[i]);
    }
    journey_merge(&user, &anon, &cfg);
    cr_assert_eq(user.merged, 0); /* links are counted by the caller (batch.c) */
    cr_assert_eq(user.events, all.events);
    cr_assert_eq(user.phase, all.phase);
    cr_assert_eq(user.start_ts, all.start_ts);
    cr_assert_eq(user.last_ts, all.last_ts);
    for (int k = 0; k < 4; k++) cr_assert_eq(user.phase_ts[k], all.phase_ts[k]);
    cr_assert_str_eq(user.last_tp, all.last_tp);
    cr_assert_str_eq(user.segment, all.segment);
    cr_assert_eq(user.n_hist, all.n_hist);
    for (uint32_t i = 0; i < all.n_hist; i++) {
        cr_assert_eq(user.hist[i].ts, all.hist[i].ts);
        cr_assert_str_eq(user.hist[i].tp, all.hist[i].tp);
    }
    /* a duplicate of an anonymous event is still recognised after the merge */
    cr_assert_eq(apply(&user, &EVENTS[0]), JOURNEY_DUPLICATE);
    journey_reset(&anon);
    journey_reset(&user);
    journey_reset(&all);
}

Test(journey, pack_unpack_round_trip) {
    journey_t a, b;
    char *buf, *buf2, err[128];
    size_t len, len2;
    journey_init(&a, "customer-ü");
    for (size_t i = 0; i < N_EVENTS; i++) apply(&a, &EVENTS[i]);
    pack(&a, &buf, &len);
    journey_init(&b, "");
    cr_assert_eq(journey_unpack(&b, buf, len, &cfg, err, sizeof(err)), 0, "%s", err);
    pack(&b, &buf2, &len2);
    cr_assert_eq(len, len2);
    cr_assert(memcmp(buf, buf2, len) == 0);
    cr_assert_str_eq(b.customer, "customer-ü");
    cr_assert_eq(b.events, 7);
    cr_assert_eq(b.n_dedup, 7);
    cr_assert_eq(apply(&b, &EVENTS[3]), JOURNEY_DUPLICATE);
    free(buf);
    free(buf2);
    journey_reset(&a);
    journey_reset(&b);
}

/* The hand-written blob is canonical MessagePack as msgpack-c writes it:
 * msgpack-c reads it whole and packs it back to the same bytes. Covers every
 * integer width, negative and positive, and a str8 string. */
Test(journey, blob_is_what_msgpack_c_writes) {
    journey_t a, b;
    char *buf, *buf2, err[128];
    size_t len, len2;
    journey_init(&a, "a-customer-id-longer-than-thirty-one-bytes");
    for (size_t i = 0; i < N_EVENTS; i++) apply(&a, &EVENTS[i]);
    a.number = 70000;             /* uint32 */
    a.merged = 300;               /* uint16 */
    a.prev_end = -5000000000LL;   /* int64 */
    a.segment_ts = -200;          /* int16 */
    a.last_tp_mid = UINT64_MAX;   /* uint64 */
    a.events = 200;               /* uint8 */
    a.status = JOURNEY_DROPPED;
    snprintf(a.mseg, sizeof(a.mseg), "enterprise");
    a.stored_deadline = 4000000000LL; /* uint64 form of a positive int */
    a.linked = 70001;             /* uint32 */
    a.pending = 70002;            /* uint32 */
    pack(&a, &buf, &len);

    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, len);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(msgpack_pack_object(&pk, u.data), 0);
    cr_assert_eq(sb.size, len);
    cr_assert(memcmp(sb.data, buf, len) == 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);

    journey_init(&b, "");
    cr_assert_eq(journey_unpack(&b, buf, len, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(b.number, 70000);
    cr_assert_eq(b.merged, 300);
    cr_assert_eq(b.prev_end, -5000000000LL);
    cr_assert_eq(b.segment_ts, -200);
    cr_assert_eq(b.last_tp_mid, UINT64_MAX);
    cr_assert_eq(b.events, 200);
    cr_assert_eq(b.status, JOURNEY_DROPPED);
    cr_assert_str_eq(b.mseg, "enterprise");
    cr_assert_eq(b.stored_deadline, 4000000000LL);
    cr_assert_eq(b.linked, 70001);
    cr_assert_eq(b.pending, 70002);
    cr_assert_str_eq(b.customer, "a-customer-id-longer-than-thirty-one-bytes");
    pack(&b, &buf2, &len2);
    cr_assert_eq(len2, len);
    cr_assert(memcmp(buf2, buf, len) == 0);
    /* every prefix is refused, never read past its end */
    for (size_t cut = 0; cut < len; cut++) {
        journey_t c;
        journey_init(&c, "");
        cr_assert_eq(journey_unpack(&c, buf, cut, &cfg, err, sizeof(err)), -1, "prefix %zu", cut);
        journey_reset(&c);
    }
    free(buf);
    free(buf2);
    journey_reset(&a);
    journey_reset(&b);
}

/* A version 3 blob (23 elements, no `linked`) is read with linked = merged,
 * a version 4 one (no `pending`) with pending = 0; the customer's count of
 * linked ids and of links waiting for an answer outlive its journeys and
 * add up in a merge. */
Test(journey, linked_ids_are_the_customers) {
    journey_t a, b;
    char *buf, err[128];
    size_t len;
    journey_init(&a, "c");
    apply(&a, &EVENTS[0]);
    a.merged = 3;
    a.linked = 5;
    a.pending = 1;
    pack(&a, &buf, &len);
    cr_assert_eq((unsigned char)buf[0], 0xdc); /* array 16 */
    cr_assert_eq((unsigned char)buf[2], 25);
    cr_assert_eq((unsigned char)buf[3], 5);
    cr_assert_eq((unsigned char)buf[len - 2], 5); /* linked, a positive fixint */
    cr_assert_eq((unsigned char)buf[len - 1], 1); /* pending */
    journey_init(&b, "");
    cr_assert_eq(journey_unpack(&b, buf, len, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(b.pending, 1);
    journey_reset(&b);
    /* the same blob as version 4: array of 24, version 4, without the last element */
    buf[2] = 24;
    buf[3] = 4;
    journey_init(&b, "");
    cr_assert_eq(journey_unpack(&b, buf, len - 1, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(b.linked, 5);
    cr_assert_eq(b.pending, 0);
    journey_reset(&b);
    /* as version 3: array of 23, version 3, without the last two */
    buf[2] = 23;
    buf[3] = 3;
    journey_init(&b, "");
    cr_assert_eq(journey_unpack(&b, buf, len - 2, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(b.merged, 3);
    cr_assert_eq(b.linked, 3);
    cr_assert_eq(b.pending, 0);
    journey_reset(&b);
    free(buf);
    /* the next journey keeps the customer's count, not the journey's */
    journey_restart(&a, &cfg);
    cr_assert_eq(a.number, 2);
    cr_assert_eq(a.merged, 0);
    cr_assert_eq(a.linked, 5);
    cr_assert_eq(a.pending, 1);
    journey_init(&b, "d");
    apply(&b, &EVENTS[1]);
    b.merged = b.linked = 2;
    b.pending = 1;
    journey_merge(&a, &b, &cfg);
    cr_assert_eq(a.merged, 2);
    cr_assert_eq(a.linked, 7);
    cr_assert_eq(a.pending, 2);
    journey_reset(&a);
    journey_reset(&b);
}

/* A journey read for closing only keeps its history as bytes: closing and
 * writing it gives exactly the bytes a whole read would, and its history can
 * be parsed later. */
Test(journey, head_only_read_writes_the_same_bytes) {
    journey_t a, whole, head;
    char *buf, *w1, *w2, *w3, err[128];
    size_t len, l1, l2, l3;
    journey_init(&a, "u1");
    for (size_t i = 0; i < N_EVENTS; i++) apply(&a, &EVENTS[i]);
    pack(&a, &buf, &len);
    journey_init(&whole, "");
    journey_init(&head, "");
    cr_assert_eq(journey_unpack(&whole, buf, len, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(journey_unpack_head(&head, buf, len, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(head.n_hist, 0);
    cr_assert_eq(head.n_dedup, 0);
    cr_assert_not_null(head.tail);
    cr_assert_eq(head.phase, 2);
    cr_assert_str_eq(head.last_tp, "checkout");
    journey_close(&whole, &cfg);
    journey_close(&head, &cfg);
    pack(&whole, &w1, &l1);
    pack(&head, &w2, &l2);
    cr_assert_eq(l1, l2);
    cr_assert(memcmp(w1, w2, l1) == 0);
    cr_assert_eq(journey_load_tail(&head, &cfg), 0);
    cr_assert_null(head.tail);
    cr_assert_eq(head.n_hist, whole.n_hist);
    cr_assert_eq(head.n_dedup, 7);
    cr_assert_eq(head.status, JOURNEY_DROPPED); /* what changed after the read stays */
    pack(&head, &w3, &l3);
    cr_assert_eq(l3, l1);
    cr_assert(memcmp(w3, w1, l1) == 0);
    cr_assert_eq(journey_load_tail(&head, &cfg), 0); /* nothing left to parse */
    for (size_t cut = 0; cut < len; cut++) {
        journey_t c;
        journey_init(&c, "");
        cr_assert_eq(journey_unpack_head(&c, buf, cut, &cfg, err, sizeof(err)), -1, "prefix %zu", cut);
        journey_reset(&c);
    }
    free(buf);
    free(w1);
    free(w2);
    free(w3);
    journey_reset(&a);
    journey_reset(&whole);
    journey_reset(&head);
}

Test(journey, unpack_refuses_garbage) {
    journey_t j;
    char err[128];
    journey_init(&j, "");
    cr_assert_eq(journey_unpack(&j, "\x93\x01\x02\x03", 4, &cfg, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "journey blob: not a 19-, 22-, 23-, 24- or 25-element array");
    journey_reset(&j);
    journey_init(&j, "");
    cr_assert_eq(journey_unpack(&j, "\xc1", 1, &cfg, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "journey blob: not one MessagePack value");
    journey_reset(&j);
}

Test(journey, satisfaction_explicit_phase_wins) {
    journey_t j;
    journey_init(&j, "u1");
    apply(&j, &EVENTS[5]);                         /* purchase */
    tev_t s = {"s1", 20000, 1, "reviews", NULL, EV_METRIC_CSAT, 4, 1};
    apply(&j, &s);
    cr_assert_eq(j.sat.phase, 1);
    cr_assert_eq(j.sat.metric, EV_METRIC_CSAT);
    cr_assert_str_eq(j.sat.tp, "reviews");
    cr_assert_eq(j.phase, 2);                      /* an earlier explicit phase does not move back */
    journey_reset(&j);
}

Test(journey, print_json_exact) {
    journey_t j;
    char *buf = NULL;
    size_t len = 0;
    journey_init(&j, "u\"1");
    apply(&j, &EVENTS[0]);
    apply(&j, &EVENTS[2]);
    FILE *m = open_memstream(&buf, &len);
    journey_print_json(&j, &cfg, m);
    fclose(m);
    cr_assert_str_eq(buf,
        "{\"customer\":\"u\\\"1\",\"journey\":1,\"status\":\"in_progress\",\"phase\":\"information\","
        "\"start\":\"1970-01-01T00:00:01.000Z\",\"last_event\":\"1970-01-01T00:00:05.000Z\","
        "\"last_touchpoint\":\"company_site\",\"events\":2,\"segment\":\"consumer\","
        "\"phase_entered\":{\"search\":\"1970-01-01T00:00:01.000Z\",\"information\":\"1970-01-01T00:00:05.000Z\"},"
        "\"satisfaction\":null,\"merged_ids\":0,\"linked_ids\":0,\"history\":["
        "{\"time\":\"1970-01-01T00:00:01.000Z\",\"phase\":\"search\",\"touchpoint\":\"search_engine\"},"
        "{\"time\":\"1970-01-01T00:00:05.000Z\",\"phase\":\"information\",\"touchpoint\":\"company_site\"}]}\n");
    free(buf);
    journey_reset(&j);
}

Test(journey, json_output_is_valid_for_any_bytes) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    text_json_str(m, "a\"b\\c\n\x01 \xc3\xbc \xf0\x9f\x98\x80 \xff\xc3(");
    fclose(m);
    cr_assert_str_eq(buf, "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xbc \xf0\x9f\x98\x80 \\u00ff\\u00c3(\"");
    free(buf);
}

Test(journey, settle_closes_what_the_mark_has_passed) {
    journey_t j;
    journey_init(&j, "c");
    for (size_t i = 0; i < N_EVENTS; i++) apply(&j, &EVENTS[i]);
    cr_assert_eq(journey_settle(&j, &cfg, INT64_MAX), 0); /* version 2: no stored deadline */
    cr_assert_eq(j.status, JOURNEY_OPEN);
    j.stored_deadline = 50000;
    cr_assert_eq(journey_settle(&j, &cfg, 49999), 0);
    cr_assert_eq(j.status, JOURNEY_OPEN);
    cr_assert_eq(journey_settle(&j, &cfg, 50000), 1);
    cr_assert_eq(j.status, JOURNEY_DROPPED); /* in purchase, not the last phase */
    cr_assert_eq(journey_settle(&j, &cfg, 60000), 0); /* closed already */
    journey_t k;
    journey_init(&k, "d");
    tev_t loyal = {"m9", 20000, 3, "loyalty_app", NULL, 0, 0, 0};
    apply(&k, &loyal);
    k.stored_deadline = 30000;
    cr_assert_eq(journey_settle(&k, &cfg, 30001), 1);
    cr_assert_eq(k.status, JOURNEY_COMPLETED);
    journey_reset(&j);
    journey_reset(&k);
}
