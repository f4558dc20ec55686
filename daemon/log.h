/*
 * log.h -- structured logging: one line per record on stderr,
 *   ts=2026-11-24T22:00:00.123Z level=info msg="..." key=value ...
 */
#ifndef JD_LOG_H
#define JD_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

void log_set_level(log_level_t lvl);
int log_level_parse(const char *s); /* -1 if unknown */
const char *log_level_name(log_level_t lvl);

/* fmt holds the key=value pairs after msg, e.g.
 *   log_msg(LOG_INFO, "partition assigned", "topic=%s partition=%d", t, p);
 * Values containing spaces must be quoted by the caller with log_quote(). */
void log_msg(log_level_t lvl, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(m, ...) log_msg(LOG_DEBUG, m, __VA_ARGS__)
#define log_info(m, ...) log_msg(LOG_INFO, m, __VA_ARGS__)
#define log_warn(m, ...) log_msg(LOG_WARN, m, __VA_ARGS__)
#define log_error(m, ...) log_msg(LOG_ERROR, m, __VA_ARGS__)

#endif
