/*
 * forward.c -- the internal topic's producer and its creation (forward.h).
 *
 * Records are produced only after the commit that holds them in the
 * source shard's outbox (batch.c), in groups: one per shard and commit (or
 * per outbox read back). Nothing waits for them: forward_delivered() hands
 * back, in the order they were produced, the groups whose every record has
 * been acknowledged, and their shard's next commit trims that many records
 * off the front of its outbox. A record whose delivery failed stays in the
 * outbox and is produced again when the shard is read back. The producer is
 * idempotent with no message timeout, so per partition records arrive in
 * the order they were produced and none is skipped: a destination's mark
 * (stitch.h) can tell a record sent again from a new one.
 */
#include "forward.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Records produced together for one owner; freed once all are answered
 * and every group before it is too. */
typedef struct group {
    void *owner;           /* NULL: forgotten (the owner read its outbox back or is gone) */
    size_t n;              /* records in it */
    size_t left;           /* not yet answered by the broker */
    size_t failed;
    struct group *next;
} group_t;

struct forward {
    rd_kafka_t *rk;        /* owned */
    char *topic;           /* owned copy */
    group_t *head, *tail;  /* in the order produced; owned */
    group_t *open;         /* the group forward_send() adds to, NULL: none */
    uint64_t delivered, failed;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    forward_t *fw = opaque;
    group_t *g = m->_private;
    if (m->err) {
        fw->failed++;
        log_error("internal record delivery failed", "topic=%s partition=%d error=\"%s\"", fw->topic,
                  (int)m->partition, rd_kafka_err2str(m->err));
    } else {
        fw->delivered++;
    }
    if (!g) return;
    g->left--;
    g->failed += m->err != 0;
}

forward_t *forward_open(const config_t *cfg, char *errbuf, size_t errlen) {
    forward_t *fw = calloc(1, sizeof(*fw));
    rd_kafka_conf_t *conf = NULL;
    char err[512];
    if (!fw || !(fw->topic = strdup(cfg->internal_topic))) goto fail;
    /* (records wait in the outbox: a broker that is away delays them, never drops them) */
    if (!(conf = config_producer_conf(cfg, (const char *const[]){"linger.ms", "1", "message.timeout.ms", "0", NULL},
                                      errbuf, errlen)))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, fw);
    fw->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!fw->rk) {
        snprintf(errbuf, errlen, "internal topic producer: %s", err);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    return fw;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    if (fw) free(fw->topic);
    free(fw);
    return NULL;
}

void forward_close(forward_t *fw, int timeout_ms) {
    if (!fw) return;
    if (rd_kafka_flush(fw->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn("internal topic flush timed out: the outbox keeps the records", "pending=%d",
                 rd_kafka_outq_len(fw->rk));
    rd_kafka_destroy(fw->rk); /* (answers every record still queued) */
    for (group_t *g = fw->head, *next; g; g = next) {
        next = g->next;
        free(g);
    }
    free(fw->topic);
    free(fw);
}

/* Partition count of topic: >0, 0 if it does not exist, -1 on error. */
static int partitions_of(forward_t *fw, const char *topic, char *errbuf, size_t errlen) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(fw->rk, topic, NULL);
    if (!rkt) {
        snprintf(errbuf, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    rd_kafka_resp_err_t err = rd_kafka_metadata(fw->rk, 0, rkt, &md, 5000);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        snprintf(errbuf, errlen, "metadata of %s: %s", topic, rd_kafka_err2str(err));
        return -1;
    }
    int n = 0;
    if (md->topic_cnt == 1 && !md->topics[0].err) n = md->topics[0].partition_cnt;
    else if (md->topic_cnt == 1 && md->topics[0].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
             md->topics[0].err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {
        snprintf(errbuf, errlen, "metadata of %s: %s", topic, rd_kafka_err2str(md->topics[0].err));
        n = -1;
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

static int create_topic(forward_t *fw, const char *topic, int32_t partitions, char *errbuf, size_t errlen) {
    char err[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, -1, err, sizeof(err));
    if (!nt) {
        snprintf(errbuf, errlen, "internal topic %s: %s", topic, err);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(fw->rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(fw->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(o, 10000, err, sizeof(err));
    rd_kafka_CreateTopics(fw->rk, &nt, 1, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    int rc = -1;
    if (!ev) {
        snprintf(errbuf, errlen, "internal topic %s: creation timed out", topic);
    } else if (rd_kafka_event_error(ev)) {
        snprintf(errbuf, errlen, "internal topic %s: %s", topic, rd_kafka_event_error_string(ev));
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t e = n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
        if (!e || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) rc = 0;
        else snprintf(errbuf, errlen, "internal topic %s: %s", topic, rd_kafka_err2str(e));
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    return rc;
}

int forward_prepare(forward_t *fw, const config_t *cfg, int32_t *partitions, char *errbuf, size_t errlen) {
    int n = partitions_of(fw, cfg->topics[0], errbuf, errlen);
    if (n <= 0) {
        if (!n) snprintf(errbuf, errlen, "input topic %s does not exist yet", cfg->topics[0]);
        return 1;
    }
    for (int tries = 0; tries < 20; tries++) {
        int m = partitions_of(fw, cfg->internal_topic, errbuf, errlen);
        if (m < 0) return 1;
        if (m == n) {
            *partitions = n;
            return 0;
        }
        if (m > 0) {
            snprintf(errbuf, errlen,
                     "internal topic %s has %d partitions, input topic %s has %d: they must be equal "
                     "(input.internal_topic)",
                     cfg->internal_topic, m, cfg->topics[0], n);
            return -1;
        }
        if (!tries) {
            if (create_topic(fw, cfg->internal_topic, n, errbuf, errlen) < 0) return -1;
            log_info("internal topic created", "topic=%s partitions=%d", cfg->internal_topic, n);
        }
        struct timespec ts = {0, 250000000L}; /* until its metadata shows it */
        nanosleep(&ts, NULL);
    }
    snprintf(errbuf, errlen, "internal topic %s: created, but its metadata does not show it", cfg->internal_topic);
    return 1;
}

void forward_begin(forward_t *fw, void *owner) {
    group_t *g = calloc(1, sizeof(*g));
    if (!g) abort();
    g->owner = owner;
    if (fw->tail) fw->tail->next = g;
    else fw->head = g;
    fw->tail = g;
    fw->open = g;
}

void forward_end(forward_t *fw) {
    fw->open = NULL;
    rd_kafka_poll(fw->rk, 0);
}

int forward_send(forward_t *fw, int32_t p, const char *key, size_t keylen, const char *val, size_t len) {
    group_t *g = fw->open;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            fw->rk, RD_KAFKA_V_TOPIC(fw->topic), RD_KAFKA_V_PARTITION(p), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_OPAQUE(g), RD_KAFKA_V_END);
        if (!err) break;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(fw->rk, 10);
            continue;
        }
        log_error("internal record produce failed", "error=\"%s\"", rd_kafka_err2str(err));
        fw->failed++;
        if (g) {
            g->n++;
            g->failed++;
        }
        return -1;
    }
    if (g) {
        g->n++;
        g->left++;
    }
    return 0;
}

void forward_forget(forward_t *fw, const void *owner) {
    if (!fw) return;
    for (group_t *g = fw->head; g; g = g->next)
        if (g->owner == owner) g->owner = NULL;
}

size_t forward_delivered(forward_t *fw, void (*done)(void *owner, size_t n, size_t failed, void *opaque),
                         void *opaque) {
    size_t groups = 0;
    rd_kafka_poll(fw->rk, 0);
    while (fw->head && !fw->head->left && fw->head != fw->open) {
        group_t *g = fw->head;
        if (!(fw->head = g->next)) fw->tail = NULL;
        if (g->owner && g->n) {
            done(g->owner, g->n, g->failed, opaque);
            groups++;
        }
        free(g);
    }
    return groups;
}

void forward_counters(const forward_t *fw, uint64_t *delivered, uint64_t *failed) {
    *delivered = fw ? fw->delivered : 0;
    *failed = fw ? fw->failed : 0;
}
