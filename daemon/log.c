/*
 * log.c -- structured logging: one record per line on stderr,
 *   ts=2026-11-24T22:00:00.123Z level=info msg="partition assigned" shard=events:3
 * Each record is formatted into one buffer and written with one write(2), so
 * lines from librdkafka's threads never interleave. Owns only the level.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile log_level_t min_level = LOG_INFO;

static const char *const NAMES[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level_t lvl) { min_level = lvl; }

const char *log_level_name(log_level_t lvl) {
    return lvl >= LOG_DEBUG && lvl <= LOG_ERROR ? NAMES[lvl] : "info";
}

int log_level_parse(const char *s) {
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++)
        if (!strcmp(s, NAMES[i])) return i;
    return -1;
}

/* Append msg as a quoted value, escaping quotes, backslashes and newlines. */
static size_t put_quoted(char *buf, size_t pos, size_t cap, const char *s) {
    if (pos < cap) buf[pos++] = '"';
    for (; *s && pos + 2 < cap; s++) {
        if (*s == '"' || *s == '\\') buf[pos++] = '\\';
        buf[pos++] = *s == '\n' ? ' ' : *s;
    }
    if (pos < cap) buf[pos++] = '"';
    return pos;
}

void log_msg(log_level_t lvl, const char *msg, const char *fmt, ...) {
    char buf[4096];
    struct timespec ts;
    struct tm tm;
    if (lvl < min_level) return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, sizeof(buf), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_level_name(lvl));
    size_t pos = put_quoted(buf, (size_t)n, sizeof(buf) - 2, msg);
    if (fmt && *fmt) {
        va_list ap;
        buf[pos++] = ' ';
        va_start(ap, fmt);
        int m = vsnprintf(buf + pos, sizeof(buf) - 2 - pos, fmt, ap);
        va_end(ap);
        if (m > 0) pos += (size_t)m < sizeof(buf) - 2 - pos ? (size_t)m : sizeof(buf) - 3 - pos;
    }
    buf[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, pos);
    (void)w;
}
