/*
 * deadletter.c -- produces refused input events to the dead-letter topic.
 *
 * Owns a librdkafka producer. Delivery is confirmed before the batch that
 * refused the events is committed to Redis (deadletter_sync() is called by
 * the batch before its commit), so a bad event is never lost: if the
 * daemon dies in between, the batch is consumed again and the event is
 * dead-lettered again (at-least-once on this topic; consumers can
 * deduplicate on the source topic/partition/offset headers).
 */
#include "deadletter.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct deadletter {
    rd_kafka_t *rk;        /* owned */
    char *topic;           /* owned copy */
    uint64_t queued;       /* since the last sync */
    uint64_t failed_since_sync;
    uint64_t delivered, failed;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    deadletter_t *dl = opaque;
    if (m->err) {
        dl->failed++;
        dl->failed_since_sync++;
        log_error("dead-letter delivery failed", "topic=%s error=\"%s\"", dl->topic,
                  rd_kafka_err2str(m->err));
    } else {
        dl->delivered++;
    }
}

deadletter_t *deadletter_open(const config_t *cfg, char *errbuf, size_t errlen) {
    deadletter_t *dl = calloc(1, sizeof(*dl));
    rd_kafka_conf_t *conf = NULL;
    char err[512];
    if (!dl || !(dl->topic = strdup(cfg->deadletter_topic))) goto fail;
    if (!(conf = config_producer_conf(cfg, (const char *const[]){"linger.ms", "5", NULL}, errbuf, errlen)))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, dl);
    dl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!dl->rk) {
        snprintf(errbuf, errlen, "dead-letter producer: %s", err);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    return dl;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    if (dl) free(dl->topic);
    free(dl);
    return NULL;
}

void deadletter_close(deadletter_t *dl, int timeout_ms) {
    if (!dl) return;
    if (rd_kafka_flush(dl->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn("dead-letter flush timed out", "pending=%d", rd_kafka_outq_len(dl->rk));
    rd_kafka_destroy(dl->rk);
    free(dl->topic);
    free(dl);
}

int deadletter_send(deadletter_t *dl, const rd_kafka_message_t *src, const char *reason,
                    const char *detail) {
    char part[16], off[24];
    const char *stopic = rd_kafka_topic_name(src->rkt);
    snprintf(part, sizeof(part), "%" PRId32, src->partition);
    snprintf(off, sizeof(off), "%" PRId64, src->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    rd_kafka_header_add(h, "jd-reason", -1, reason, -1);
    rd_kafka_header_add(h, "jd-error", -1, detail, -1);
    rd_kafka_header_add(h, "jd-source-topic", -1, stopic, -1);
    rd_kafka_header_add(h, "jd-source-partition", -1, part, -1);
    rd_kafka_header_add(h, "jd-source-offset", -1, off, -1);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            dl->rk, RD_KAFKA_V_TOPIC(dl->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(src->key, src->key_len), RD_KAFKA_V_VALUE(src->payload, src->len),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!err) break; /* h is owned by the message now */
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(dl->rk, 10);
            continue;
        }
        rd_kafka_headers_destroy(h);
        log_error("dead-letter produce failed", "error=\"%s\"", rd_kafka_err2str(err));
        return -1;
    }
    dl->queued++;
    rd_kafka_poll(dl->rk, 0);
    return 0;
}

int deadletter_sync(deadletter_t *dl, int timeout_ms, char *errbuf, size_t errlen) {
    if (!dl->queued) return 0;
    rd_kafka_resp_err_t err = rd_kafka_flush(dl->rk, timeout_ms);
    int rc = 0;
    if (err || dl->failed_since_sync) {
        snprintf(errbuf, errlen, "dead-letter: %s, %" PRIu64 " failed deliveries",
                 err ? rd_kafka_err2str(err) : "flushed", dl->failed_since_sync);
        rc = -1;
    }
    dl->queued = 0;
    dl->failed_since_sync = 0;
    return rc;
}

void deadletter_counters(const deadletter_t *dl, uint64_t *delivered, uint64_t *failed) {
    *delivered = dl->delivered;
    *failed = dl->failed;
}
