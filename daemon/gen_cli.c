/*
 * gen_cli.c -- `journeyctl gen`: parses the options, runs the simulator
 * (gen.c) and writes its events to a file (NDJSON or a MessagePack stream)
 * or to a Kafka topic (librdkafka producer, keyed by customer), plus the
 * ground truth (aggregate, per journey, per survey answer). Owns the output
 * files and the producer.
 */
#include "gen_cli.h"

#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "decode.h"
#include "gen.h"

static void usage(FILE *out) {
    fprintf(out,
        "usage: journeyctl gen [options] (--out FILE | --topic TOPIC)\n"
        "  --seed N              random seed (default 1); same seed, same output\n"
        "  --customers N         customers to simulate (default 10000)\n"
        "  --events N            stop after N messages (default: when every journey ended)\n"
        "  --start TIME          ISO-8601 start of the simulated period (default 2026-01-05T00:00:00Z)\n"
        "  --period DUR          customers arrive over this period (default 1d)\n"
        "  --encoding json|msgpack   (default json)\n"
        "  --epoch-ms            timestamps as epoch milliseconds instead of ISO-8601\n"
        "  --out FILE            write NDJSON / a MessagePack stream to FILE ('-' = stdout)\n"
        "  --topic TOPIC         produce to Kafka, keyed by customer id\n"
        "  --brokers LIST        bootstrap servers (default 127.0.0.1:19092)\n"
        "  -X key=value          any librdkafka producer property\n"
        "  --truth FILE          write the aggregate ground truth (JSON)\n"
        "  --journeys FILE       write every journey's ground truth (NDJSON)\n"
        "  --answers FILE        write every survey answer's ground truth (NDJSON), one line\n"
        "                        per answer counted in the truth's satisfaction (no duplicate\n"
        "                        re-sends, no invalid events), keys in this order:\n"
        "                        {\"ts\":<event time ms>,\"metric\":\"nps|csat|ces\",\"score\":<int>,\n"
        "                         \"phase\":\"<phase counted under>\",\"scope\":\"touchpoint|journey\",\n"
        "                         \"touchpoint\":\"<name>|unknown\",\"segment\":\"<name>|none\",\n"
        "                         \"customer\":\"<userId, else anonymousId>\",\"message_id\":\"<id>\",\n"
        "                         \"key\":\"<Kafka message key>\"}\n"
        "  --drop S,I,P          drop-off probability in search, information, purchase\n"
        "                        (default 0.35,0.30,0.20)\n"
        "  --touchpoints N       mean touchpoints before and including the purchase (default 12)\n"
        "  --survey-rate P       survey answer after a touchpoint (default 0.08)\n"
        "  --journey-survey-rate P   journey-scope answer at the end (default 0.3)\n"
        "  --dup-rate P          duplicated messageIds (default 0)\n"
        "  --ooo-rate P          out-of-order delivery, within --max-lateness (default 0)\n"
        "  --max-lateness DUR    out-of-order bound (default 4m)\n"
        "  --anon-rate P         anonymous customers identified later (default 0)\n"
        "  --anon-key user|anon  Kafka key of anonymous events (default user: same partition)\n"
        "  --invalid-rate P      invalid events, for the dead-letter topic (default 0)\n"
        "  --return-rate P       completed customers who come back for another journey,\n"
        "                        29+ days later (default 0.1)\n"
        "  --rate N              open loop: N messages/s, each stamped with its scheduled send\n"
        "                        time (ignores --ooo-rate); reports falling behind, exit code 3\n"
        "  --heartbeats N        at the end, N heartbeat events to every partition (file: N;\n"
        "                        default 1, 0 = none)\n"
        "  --heartbeat-advance DUR   heartbeat time = last event time + DUR (default 29d: past\n"
        "                        the default timeouts and lateness, so every journey can close)\n");
}

typedef struct out {
    FILE *f;
    rd_kafka_t *rk;
    char *topic;
    int msgpack;
    uint64_t failed, delivered;
    double rate;           /* open loop: messages per second, 0 = as fast as possible */
    double t0;             /* schedule start (monotonic seconds) */
    uint64_t sent, behind; /* messages sent; of those, sent > 100 ms late */
    double last_report;
    int64_t max_ts;
} out_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Open loop: wait for message i's scheduled time; note when we are late,
 * since a run that falls behind does not measure what it claims. */
static void pace(out_t *o, int64_t ts) {
    if (ts > o->max_ts) o->max_ts = ts;
    if (o->rate <= 0) return;
    double due = o->t0 + (double)o->sent++ / o->rate, now = now_s();
    if (due > now) {
        struct timespec d = {(time_t)(due - now), (long)((due - now - (double)(time_t)(due - now)) * 1e9)};
        nanosleep(&d, NULL);
    } else if (now - due > 0.1) {
        o->behind++;
        if (now - o->last_report > 1.0) {
            fprintf(stderr, "journeyctl gen: falling behind: message %llu is %.0f ms late\n",
                    (unsigned long long)o->sent, (now - due) * 1000);
            o->last_report = now;
        }
    }
}

static int emit_file(const char *key, size_t keylen, const void *val, size_t len, int64_t ts, void *opaque) {
    out_t *o = opaque;
    (void)key, (void)keylen;
    pace(o, ts);
    if (fwrite(val, 1, len, o->f) != len) return -1;
    if (!o->msgpack && fputc('\n', o->f) == EOF) return -1;
    return 0;
}

static int emit_kafka(const char *key, size_t keylen, const void *val, size_t len, int64_t ts, void *opaque) {
    out_t *o = opaque;
    pace(o, ts);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            o->rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_END);
        if (!err) break;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "journeyctl gen: produce: %s\n", rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(o->rk, 50);
    }
    rd_kafka_poll(o->rk, 0);
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    out_t *o = opaque;
    (void)rk;
    if (m->err) {
        if (!o->failed) fprintf(stderr, "journeyctl gen: delivery failed: %s\n", rd_kafka_err2str(m->err));
        o->failed++;
    } else {
        o->delivered++;
    }
}

static int open_kafka(out_t *o, const char *brokers, char **props, int nprops) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *defaults[][2] = {
        {"bootstrap.servers", brokers}, {"linger.ms", "20"}, {"batch.num.messages", "10000"},
        {"queue.buffering.max.messages", "1000000"}, {"queue.buffering.max.kbytes", "1048576"},
        {"compression.codec", "lz4"}, {"enable.idempotence", "true"},
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, sizeof(err))) goto fail;
    for (int i = 0; i < nprops; i++) {
        char *eq = strchr(props[i], '=');
        if (!eq) {
            snprintf(err, sizeof(err), "-X %s: expected key=value", props[i]);
            goto fail;
        }
        *eq = '\0';
        if (rd_kafka_conf_set(conf, props[i], eq + 1, err, sizeof(err))) goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, o);
    if (!(o->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) goto fail;
    return 0;
fail:
    fprintf(stderr, "journeyctl gen: kafka: %s\n", err);
    if (!o->rk) rd_kafka_conf_destroy(conf);
    return -1;
}

static int parse_prob(const char *s, double *p) {
    char *end;
    errno = 0;
    *p = strtod(s, &end);
    return end == s || *end || errno || *p < 0 || *p > 1 ? -1 : 0;
}

static int parse_u64(const char *s, uint64_t *v) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-') return -1;
    *v = x;
    return 0;
}

static int parse_drop(const char *s, gen_opts_t *o) {
    char buf[128], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", s);
    char *tok = strtok_r(buf, ",", &save);
    for (int i = 0; i < GEN_PHASES - 1; i++, tok = strtok_r(NULL, ",", &save))
        if (!tok || parse_prob(tok, &o->drop[i]) < 0) return -1;
    return tok ? -1 : 0;
}

typedef struct cli_opts {
    gen_opts_t g;
    uint64_t heartbeats;
    int64_t hb_advance_ms;
    const char *out, *topic, *brokers, *truth, *journeys, *answers;
    char *props[64];
    int nprops;
} cli_opts_t;

enum { O_SEED = 256, O_CUST, O_EVENTS, O_START, O_PERIOD, O_ENC, O_EPOCH, O_OUT, O_TOPIC,
       O_BROKERS, O_TRUTH, O_JOURNEYS, O_DROP, O_SURVEY, O_JSURVEY, O_DUP, O_OOO, O_LATE,
       O_ANON, O_ANONKEY, O_INVALID, O_RATE, O_HB, O_HBADV, O_RETURN, O_TPS, O_ANSWERS, O_HELP };

static int parse_one(cli_opts_t *c, int opt, const char *arg) {
    gen_opts_t *g = &c->g;
    switch (opt) {
    case O_SEED: return parse_u64(arg, &g->seed);
    case O_CUST: return parse_u64(arg, &g->customers) < 0 || !g->customers ? -1 : 0;
    case O_EVENTS: return parse_u64(arg, &g->max_events);
    case O_START: return decode_parse_time(arg, &g->start_ms);
    case O_PERIOD: return config_parse_duration(arg, &g->period_ms) < 0 || g->period_ms <= 0 ? -1 : 0;
    case O_ENC:
        if (strcmp(arg, "json") && strcmp(arg, "msgpack")) return -1;
        g->msgpack = !strcmp(arg, "msgpack");
        return 0;
    case O_EPOCH: g->epoch_ms_timestamps = 1; return 0;
    case O_OUT: c->out = arg; return 0;
    case O_TOPIC: c->topic = arg; return 0;
    case O_BROKERS: c->brokers = arg; return 0;
    case 'X':
        if (c->nprops == 64) return -1;
        c->props[c->nprops++] = (char *)arg;
        return 0;
    case O_TRUTH: c->truth = arg; return 0;
    case O_JOURNEYS: c->journeys = arg; return 0;
    case O_ANSWERS: c->answers = arg; return 0;
    case O_DROP: return parse_drop(arg, g);
    case O_SURVEY: return parse_prob(arg, &g->survey_rate);
    case O_JSURVEY: return parse_prob(arg, &g->journey_survey_rate);
    case O_DUP: return parse_prob(arg, &g->dup_rate);
    case O_OOO: return parse_prob(arg, &g->ooo_rate);
    case O_LATE: return config_parse_duration(arg, &g->max_lateness_ms) < 0 || g->max_lateness_ms < 1 ? -1 : 0;
    case O_ANON: return parse_prob(arg, &g->anon_rate);
    case O_ANONKEY:
        if (strcmp(arg, "user") && strcmp(arg, "anon")) return -1;
        g->anon_key_user = !strcmp(arg, "user");
        return 0;
    case O_INVALID: return parse_prob(arg, &g->invalid_rate);
    case O_RATE: {
        char *end;
        g->rate = strtod(arg, &end);
        return end == arg || *end || !(g->rate > 0) ? -1 : 0;
    }
    case O_HB: return parse_u64(arg, &c->heartbeats);
    case O_RETURN: return parse_prob(arg, &g->return_rate);
    case O_TPS: { /* scale the per-phase means so those before the purchase add up to N */
        char *end;
        double n = strtod(arg, &end), before = 1.0; /* the order itself */
        if (end == arg || *end || n < 4 || n > 1000) return -1;
        for (int k = 0; k < 3; k++) before += g->mean_touchpoints[k];
        for (int k = 0; k < 3; k++) g->mean_touchpoints[k] *= (n - 1.0) / (before - 1.0);
        return 0;
    }
    case O_HBADV: return config_parse_duration(arg, &c->hb_advance_ms);
    default: return -1;
    }
}

static int parse_args(cli_opts_t *c, int argc, char **argv) {
    static const struct option L[] = {
        {"seed", 1, NULL, O_SEED}, {"customers", 1, NULL, O_CUST}, {"events", 1, NULL, O_EVENTS},
        {"start", 1, NULL, O_START}, {"period", 1, NULL, O_PERIOD}, {"encoding", 1, NULL, O_ENC},
        {"epoch-ms", 0, NULL, O_EPOCH}, {"out", 1, NULL, O_OUT}, {"topic", 1, NULL, O_TOPIC},
        {"brokers", 1, NULL, O_BROKERS}, {"truth", 1, NULL, O_TRUTH}, {"journeys", 1, NULL, O_JOURNEYS},
        {"answers", 1, NULL, O_ANSWERS}, {"drop", 1, NULL, O_DROP}, {"survey-rate", 1, NULL, O_SURVEY},
        {"journey-survey-rate", 1, NULL, O_JSURVEY}, {"dup-rate", 1, NULL, O_DUP},
        {"ooo-rate", 1, NULL, O_OOO}, {"max-lateness", 1, NULL, O_LATE}, {"anon-rate", 1, NULL, O_ANON},
        {"anon-key", 1, NULL, O_ANONKEY}, {"invalid-rate", 1, NULL, O_INVALID},
        {"return-rate", 1, NULL, O_RETURN}, {"touchpoints", 1, NULL, O_TPS}, {"rate", 1, NULL, O_RATE}, {"heartbeats", 1, NULL, O_HB}, {"heartbeat-advance", 1, NULL, O_HBADV},
        {"help", 0, NULL, O_HELP}, {NULL, 0, NULL, 0},
    };
    int opt, idx;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "X:", L, &idx)) != -1) {
        if (opt == O_HELP) {
            usage(stdout);
            return 1;
        }
        if (opt == '?' || parse_one(c, opt, optarg) < 0) {
            if (opt != '?')
                fprintf(stderr, "journeyctl gen: bad value '%s' for %s\n", optarg ? optarg : "",
                        opt == 'X' ? "-X" : argv[optind - 1 - (optarg == argv[optind - 1])]);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !c->out == !c->topic) {
        fprintf(stderr, "journeyctl gen: give exactly one of --out FILE and --topic TOPIC\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* N heartbeats to every partition (Kafka) or N lines (file), stamped after
 * the last event, so every partition's event time moves on. */
static int send_heartbeats(const cli_opts_t *c, out_t *o, gen_truth_t *t) {
    char val[96];
    int64_t ts = o->max_ts + c->hb_advance_ms;
    int len = c->g.msgpack ? 0 : snprintf(val, sizeof(val), "{\"type\":\"heartbeat\",\"timestamp\":%lld}", (long long)ts);
    if (c->g.msgpack) { /* {"type":"heartbeat","timestamp":<int64>} */
        unsigned char *p = (unsigned char *)val;
        memcpy(p, "\x82\xa4type\xa9heartbeat\xa9timestamp\xd3", 27);
        for (int i = 0; i < 8; i++) p[27 + i] = (unsigned char)((uint64_t)ts >> (56 - 8 * i));
        len = 35;
    }
    int parts = 1;
    if (o->rk) {
        const rd_kafka_metadata_t *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(o->rk, o->topic, NULL);
        if (rd_kafka_metadata(o->rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err) {
            fprintf(stderr, "journeyctl gen: no metadata for topic %s\n", o->topic);
            rd_kafka_topic_destroy(rkt);
            return -1;
        }
        parts = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    for (int p = 0; p < parts; p++)
        for (uint64_t i = 0; i < c->heartbeats; i++, t->heartbeats++, t->messages++) {
            if (!o->rk) {
                if (emit_file(NULL, 0, val, (size_t)len, ts, o) < 0) return -1;
                continue;
            }
            rd_kafka_resp_err_t err;
            while ((err = rd_kafka_producev(o->rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_PARTITION(p),
                                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                            RD_KAFKA_V_VALUE(val, (size_t)len), RD_KAFKA_V_END)) ==
                   RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(o->rk, 50);
            if (err) return -1;
        }
    return 0;
}

static int write_truth(const cli_opts_t *c, const gen_truth_t *t) {
    if (!c->truth) return 0;
    FILE *f = fopen(c->truth, "w");
    if (!f) {
        fprintf(stderr, "journeyctl gen: %s: %s\n", c->truth, strerror(errno));
        return -1;
    }
    gen_truth_print(t, &c->g, f);
    return fclose(f) ? -1 : 0;
}

int gen_cli_main(int argc, char **argv) {
    cli_opts_t c;
    out_t o;
    gen_truth_t t;
    FILE *jf = NULL, *af = NULL;
    int rc = 1;
    memset(&c, 0, sizeof(c));
    memset(&o, 0, sizeof(o));
    gen_defaults(&c.g);
    c.brokers = "127.0.0.1:19092";
    c.heartbeats = 1;                        /* so that every timeout can fire: */
    c.hb_advance_ms = 29 * 86400000LL;       /* past loyalty's 4w and the lateness */
    int pr = parse_args(&c, argc, argv);
    if (pr) return pr == 1 ? 0 : 2;
    o.msgpack = c.g.msgpack;
    o.topic = (char *)c.topic;
    o.rate = c.g.rate;
    if (o.rate > 0) {
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        c.g.rate_t0_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
        o.t0 = now_s();
    }
    if (c.journeys && !(jf = fopen(c.journeys, "w"))) {
        fprintf(stderr, "journeyctl gen: %s: %s\n", c.journeys, strerror(errno));
        return 1;
    }
    if (c.answers) {
        af = fopen(c.answers, "w");
        if (!af) {
            fprintf(stderr, "journeyctl gen: %s: %s\n", c.answers, strerror(errno));
            goto out;
        }
    }
    if (c.out) o.f = strcmp(c.out, "-") ? fopen(c.out, "wb") : stdout;
    if (c.out && !o.f) {
        fprintf(stderr, "journeyctl gen: %s: %s\n", c.out, strerror(errno));
        goto out;
    }
    if (c.topic && open_kafka(&o, c.brokers, c.props, c.nprops) < 0) goto out;
    double t0 = now_s();
    int grc = gen_run(&c.g, c.topic ? emit_kafka : emit_file, &o, jf, af, &t);
    if (!grc && c.heartbeats && send_heartbeats(&c, &o, &t) < 0) grc = -1;
    if (o.rk) {
        while (rd_kafka_outq_len(o.rk) > 0 && !o.failed) rd_kafka_flush(o.rk, 1000);
    }
    double dt = now_s() - t0;
    fprintf(stderr, "journeyctl gen: %llu messages (%llu duplicates, %llu invalid, %llu out of order), "
            "%llu journeys in %.2fs: %.0f messages/s\n",
            (unsigned long long)t.messages, (unsigned long long)t.duplicates,
            (unsigned long long)t.invalid, (unsigned long long)t.out_of_order,
            (unsigned long long)t.journeys, dt, (double)t.messages / (dt > 0 ? dt : 1));
    if (grc || o.failed) {
        fprintf(stderr, "journeyctl gen: failed (%llu deliveries failed)\n", (unsigned long long)o.failed);
        goto out;
    }
    rc = write_truth(&c, &t) < 0 ? 1 : 0;
    if (!rc && o.behind) {
        fprintf(stderr, "journeyctl gen: %llu of %llu messages went out more than 100 ms late: "
                "this run did not hold %.0f messages/s\n", (unsigned long long)o.behind,
                (unsigned long long)o.sent, o.rate);
        rc = 3;
    }
out:
    if (o.rk) rd_kafka_destroy(o.rk);
    if (o.f && o.f != stdout && fclose(o.f)) rc = 1;
    if (o.f == stdout) fflush(stdout);
    if (jf && fclose(jf)) rc = 1;
    if (af && fclose(af)) rc = 1;
    return rc;
}
