/*
 * text.c -- JSON string escaping and time formatting for everything that
 * prints (journeyctl, logs of journeyd). Owns nothing.
 */
#include "text.h"

#include <time.h>

/* Length of the valid UTF-8 sequence at p (2..4), or 0. */
static int utf8_len(const unsigned char *p) {
    int n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return n;
}

void text_json_str(FILE *out, const char *s) {
    static const char hex[] = "0123456789abcdef";
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        int n = c >= 0x80 ? utf8_len(p) : 1;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
        } else if (c < 0x20 || c == 0x7f || n == 0) {
            fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
        } else {
            fwrite(p, 1, (size_t)n, out);
            p += n - 1;
        }
    }
    fputc('"', out);
}

void text_time(int64_t ms, char *buf, size_t cap) {
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(buf, cap, "%lld", (long long)ms);
        return;
    }
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void text_duration(int64_t ms, char *buf, size_t cap) {
    if (ms < 1000) {
        snprintf(buf, cap, "%lldms", (long long)ms);
        return;
    }
    long long s = ms / 1000, d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60;
    if (d) snprintf(buf, cap, "%lldd%02lldh%02lldm", d, h, m);
    else if (h) snprintf(buf, cap, "%lldh%02lldm%02llds", h, m, s % 60);
    else snprintf(buf, cap, "%lldm%02llds", m, s % 60);
}

size_t text_dec(char *buf, int64_t v) {
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[k++] = '-';
    while (n) buf[k++] = tmp[--n];
    buf[k] = '\0';
    return k;
}

void text_duration_unit(int64_t ms, char *buf, size_t cap) {
    static const struct { const char *unit; int64_t ms; } U[] = {
        {"w", 604800000LL}, {"d", 86400000LL}, {"h", 3600000LL}, {"m", 60000LL}, {"s", 1000LL}};
    for (size_t i = 0; i < sizeof(U) / sizeof(U[0]); i++)
        if (ms && ms % U[i].ms == 0) {
            snprintf(buf, cap, "%lld%s", (long long)(ms / U[i].ms), U[i].unit);
            return;
        }
    snprintf(buf, cap, "%lldms", (long long)ms);
}
