/*
 * text.h -- output helpers shared by the CLI and the daemon: JSON string
 * escaping and ISO-8601 time formatting.
 */
#ifndef JD_TEXT_H
#define JD_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Write s as a JSON string literal (quotes included; quote, backslash and
 * control bytes escaped; valid UTF-8 written as it is; a byte that is not
 * part of valid UTF-8 -- ids are opaque bytes -- escaped as \u00XX, so the
 * output is always valid JSON). */
void text_json_str(FILE *out, const char *s);

/* Format epoch milliseconds as "2026-01-05T10:00:00.123Z" into buf (>= 32 bytes). */
void text_time(int64_t ms, char *buf, size_t cap);

/* Format a duration in ms as "1h02m03s" / "850ms" into buf (>= 32 bytes). */
void text_duration(int64_t ms, char *buf, size_t cap);

/* A duration in ms in its largest whole unit, as configs write it and the
 * snapshot names windows: "1w", "30d", "90m", "1500ms" (0: "0ms"). */
void text_duration_unit(int64_t ms, char *buf, size_t cap);

/* The decimal of v into buf (>= 21 bytes, NUL-terminated); its length.
 * Without printf: for the hot paths that write many numbers. */
size_t text_dec(char *buf, int64_t v);

#endif
