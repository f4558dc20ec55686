/*
 * closes.h -- what closing each open journey will count, kept in memory so
 * that a journey whose timer fires is closed without being read from Redis.
 *
 * One record per open journey written by this daemon (owner = its shard):
 * the deadline it was stored with and its funnel_close_t (phase, time-in-
 * phase buckets, segment, last touchpoint; the two names interned once for
 * all records). It is a cache: a journey without a record is read from
 * Redis when it closes, so records can be refused (the cap, too many
 * distinct names) or forgotten (closes_clear()) at any time. batch.c keeps
 * it equal to what it commits. Pure: no I/O.
 *
 * Memory: a record is 24 bytes plus a byte per phase it has left and its id,
 * in one allocation, and a table slot (8 bytes, at most half full);
 * closes_bytes() says how much is held (allocator overhead not counted).
 */
#ifndef JD_CLOSES_H
#define JD_CLOSES_H

#include <stddef.h>
#include <stdint.h>

#include "funnel.h"

#define CLOSES_NAMES_MAX 65535  /* distinct segment / touchpoint names interned */
#define CLOSES_OWNERS_MAX 65535 /* distinct owners (partitions) */

typedef struct closes closes_t;

/* An empty set holding at most max_records records (0: none). NULL: out of memory. */
closes_t *closes_new(size_t max_records);
void closes_free(closes_t *c);
/* Forget every record (the interned names stay). */
void closes_clear(closes_t *c);
size_t closes_count(const closes_t *c);
size_t closes_bytes(const closes_t *c);

/* Record (or replace) id's close. hash identifies (owner, id) (any 64-bit
 * hash of both). 1 if a record is kept, 0 if not (the cap, or the names
 * table is full): then id has no record. */
int closes_put(closes_t *c, const void *owner, const char *id, uint64_t hash, int64_t deadline,
               const funnel_close_t *fc);
/* 1 and the record (fc's names point into c, valid until closes_free()) if
 * id has one, else 0. */
int closes_get(const closes_t *c, const void *owner, const char *id, uint64_t hash, int64_t *deadline,
               funnel_close_t *fc);
/* Drop id's record, if any. */
void closes_del(closes_t *c, const void *owner, const char *id, uint64_t hash);

#endif
