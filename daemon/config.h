/*
 * config.h -- journeyd configuration: the table of keys, the loaded values,
 * and the YAML loader that validates everything before anything starts.
 *
 * Errors are reported as "file:line: reason". Secrets (redis.password and any
 * kafka.* key whose name contains "password", "secret" or ends in ".key" /
 * "sasl.jaas.config" / "sasl.oauthbearer.config") are never printed:
 * config_dump() shows them as "***".
 */
#ifndef JD_CONFIG_H
#define JD_CONFIG_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "alert.h"
#include "decode.h"

#define CFG_MAX_PHASES 16
#define CFG_MAX_TOPICS 16
#define CFG_MAX_RULES 512
#define CFG_MAX_KAFKA 128
#define CFG_MAX_SAT_WINDOWS 8   /* finite satisfaction windows (the `all` window is implied) */
#define CFG_MAX_FUNNEL_WINDOWS 8 /* finite funnel windows (likewise) */
#define CFG_MAX_ALERTS 256

typedef struct cfg_phase {
    char name[64];              /* [a-z0-9_]+, unique */
    int64_t timeout_ms;         /* inactivity timeout in this phase (SPEC §5) */
} cfg_phase_t;

/* One classification rule: all given match fields must match (AND);
 * a NULL field matches anything. First matching rule wins. */
typedef struct cfg_rule {
    int line;                   /* line of the rule in the file, for logs */
    int has_type;               /* match.type given */
    int type;                   /* ev_type_t */
    char *event;                /* match.event: exact event name */
    char *channel;              /* match.channel: exact context.channel */
    char *path_prefix;          /* match.path_prefix: prefix of context.page.path */
    char *name;                 /* match.name: exact page/screen name */
    char *touchpoint_in;        /* match.touchpoint: exact properties.touchpoint */
    int phase;                  /* index into phases[], or -1: no phase change */
    char *touchpoint;           /* touchpoint name to assign, or NULL */
} cfg_rule_t;

typedef struct cfg_kv {
    char *key;                  /* librdkafka property name (without "kafka.") */
    char *value;
    int line;
} cfg_kv_t;

typedef enum { CFG_FORMAT_JSON, CFG_FORMAT_MSGPACK } cfg_format_t;
/* input.partitioner: how producers map a key to a partition (stitch.h);
 * CFG_PART_NONE: each partition is an identity space of its own. */
typedef enum {
    CFG_PART_NONE = 0, CFG_PART_CONSISTENT_RANDOM, CFG_PART_CONSISTENT, CFG_PART_MURMUR2_RANDOM,
    CFG_PART_MURMUR2, CFG_PART_FNV1A_RANDOM, CFG_PART_FNV1A
} cfg_partitioner_t;

typedef struct config {
    char *path;                 /* file it was loaded from */

    /* kafka.*: passed through to librdkafka (consumer and producer) */
    cfg_kv_t kafka[CFG_MAX_KAFKA];
    int n_kafka;

    /* input */
    char *topics[CFG_MAX_TOPICS];
    int n_topics;
    char *group_id;
    decode_encoding_t encoding;
    decode_limits_t limits;
    int partitioner;            /* cfg_partitioner_t: the home partition of a journey key */
    char *internal_topic;       /* forwarded events and identity hand-offs (stitch.h) */

    /* dead-letter */
    char *deadletter_topic;

    /* output: the metric and alert topics (SPEC §7) */
    char *metrics_topic;
    char *alerts_topic;
    int publish_interval_ms;    /* metric snapshots published this often */
    int output_format;          /* cfg_format_t of the metric documents */

    /* http: health, readiness, Prometheus metrics */
    char *http_bind;            /* address to listen on */
    int http_port;              /* 0: no HTTP server */

    /* redis */
    char *redis_host;
    int redis_port;
    char *redis_unix_socket;    /* "" = use host/port */
    char *redis_user;           /* "" = default user */
    char *redis_password;       /* "" = no AUTH; secret */
    int redis_db;
    char *redis_prefix;         /* key prefix, default "jd" */
    int redis_connect_timeout_ms;
    int redis_command_timeout_ms;

    /* journey */
    int history_max;            /* touchpoint history entries kept (default 50) */
    int dedup_max;              /* messageIds remembered per journey (default 128) */
    int max_linked_ids;         /* other ids one customer may absorb (identify/alias) */
    int max_future_ms;          /* an event this much later than its Kafka message's time is refused */
    int64_t allowed_lateness_ms;/* default 5 min */

    /* processing */
    int batch_max_events;       /* events per batch (one Redis commit per partition) */
    int batch_max_ms;           /* max time a batch stays open */
    int cache_journeys;         /* reserved: accepted, not used yet (config/journeyd.yaml) */
    int close_records;          /* open journeys whose close is kept in memory (closes.h) */
    int shutdown_timeout_ms;    /* bound on graceful shutdown */
    int retry_backoff_max_ms;   /* max backoff while Redis/Kafka are down */
    int idle_advance_ms;        /* a caught-up partition idle this long advances by wall clock */

    /* metrics */
    int segments_max;           /* segments with their own counters per partition; more: "other" */
    int touchpoints_max;        /* drop-off touchpoints per partition; more: "other" */
    /* the funnel's outcomes over finite windows of event time (funnel.h),
     * each a multiple of funnel_buckets ms, increasing */
    int64_t funnel_windows_ms[CFG_MAX_FUNNEL_WINDOWS];
    int n_funnel_windows;
    int funnel_buckets;                            /* buckets per window */

    /* satisfaction: rolling NPS/CSAT/CES (SPEC §6). Every window is a
     * multiple of sat_buckets ms; the all-time window is always reported and
     * is not listed here. */
    int64_t sat_windows_ms[CFG_MAX_SAT_WINDOWS];  /* finite windows, increasing */
    int n_sat_windows;
    int sat_buckets;                               /* buckets per window */
    int sat_min_n;              /* fewer answers: the score is reported as insufficient */
    int sat_log_max;            /* answer log bytes of a partition before its counts are
                                   rewritten (satisfaction.h; 0: at every commit) */

    /* log */
    int log_level;              /* log_level_t */

    /* phases and classification */
    cfg_phase_t phases[CFG_MAX_PHASES];
    int n_phases;
    cfg_rule_t *rules;
    int n_rules;

    /* alert rules (alert.h), in file order, names unique; none by default */
    alert_rule_t *alerts;
    int n_alerts;
} config_t;

/*
 * Load and validate `path`. Returns a new config (caller owns; config_free())
 * or NULL with "file:line: reason" in errbuf.
 */
config_t *config_load(const char *path, char *errbuf, size_t errlen);
void config_free(config_t *cfg);

/* Index of phase `name`, or -1. */
int config_phase_index(const config_t *cfg, const char *name);

/* Print the effective configuration as YAML, secrets as "***". */
void config_dump(const config_t *cfg, FILE *out);

/* Parse a duration ("500ms", "30s", "5m", "2h", "7d", "2w", or plain ms). 0 / -1. */
int config_parse_duration(const char *s, int64_t *ms);

/* A librdkafka configuration for an idempotent producer: the kafka.*
 * passthrough, enable.idempotence, then the NULL-terminated key, value pairs
 * of extra (linger.ms...). Caller owns it; NULL with "kafka.<key>: reason"
 * (a secret's value never shown). */
rd_kafka_conf_t *config_producer_conf(const config_t *cfg, const char *const *extra, char *errbuf,
                                      size_t errlen);

/* Whether a kafka.* property name holds a secret. */
bool config_is_secret(const char *kafka_key);

#endif
