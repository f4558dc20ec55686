/*
 * closes.c -- the close records of open journeys (see closes.h).
 *
 * Records live in an open-addressing table of pointers, linear probing,
 * at most half full; deletion shifts the following run back, so no
 * tombstones build up however many journeys open and close. Each record is
 * one allocation of 24 bytes plus its time-in-phase buckets (one per phase
 * left) and its id: with ids of about ten bytes, a 48-byte malloc chunk.
 * Names (segments, touchpoints) and owners are interned and referred to by
 * a 16-bit index; owners are few (a daemon's partitions) and looked up by a
 * scan.
 */
#include "closes.h"

#include <stdlib.h>
#include <string.h>

typedef struct rec {
    int64_t deadline;
    uint32_t hash;                       /* low half of the caller's hash */
    uint16_t owner, mseg, tp;            /* indices into owners, names */
    int8_t phase;
    char data[];                         /* tip[phase > 0 ? phase : 0], then the id */
} rec_t;

#define REC_TIPS(r) ((r)->phase > 0 ? (size_t)(r)->phase : 0)
#define REC_ID(r) ((r)->data + REC_TIPS(r))

struct closes {
    rec_t **slots;
    size_t cap, n, max, rec_bytes;       /* rec_bytes: the records' sizes */
    const void **owners;
    uint16_t n_owners, cap_owners;
    char **names;                        /* interned, owned */
    uint32_t n_names;
    uint32_t *name_slots;                /* index + 1, 0 = empty */
    size_t cap_names;
};

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

closes_t *closes_new(size_t max_records) {
    closes_t *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->max = max_records;
    return c;
}

void closes_clear(closes_t *c) {
    for (size_t i = 0; i < c->cap; i++) {
        free(c->slots[i]);
        c->slots[i] = NULL;
    }
    c->n = 0;
    c->rec_bytes = 0;
    c->n_owners = 0; /* no record refers to one */
}

void closes_free(closes_t *c) {
    if (!c) return;
    closes_clear(c);
    free(c->slots);
    for (uint32_t i = 0; i < c->n_names; i++) free(c->names[i]);
    free(c->names);
    free(c->name_slots);
    free(c->owners);
    free(c);
}

size_t closes_count(const closes_t *c) { return c->n; }

size_t closes_bytes(const closes_t *c) {
    size_t b = sizeof(*c) + c->cap * sizeof(*c->slots) + c->rec_bytes;
    b += c->cap_names * sizeof(*c->name_slots) + c->n_names * sizeof(*c->names);
    b += c->cap_owners * sizeof(*c->owners);
    for (uint32_t i = 0; i < c->n_names; i++) b += strlen(c->names[i]) + 1;
    return b;
}

static size_t name_slot(const closes_t *c, const char *name) {
    size_t k = name_hash(name) & (c->cap_names - 1);
    while (c->name_slots[k] && strcmp(c->names[c->name_slots[k] - 1], name)) k = (k + 1) & (c->cap_names - 1);
    return k;
}

static void grow_names(closes_t *c) {
    size_t ncap = c->cap_names ? 2 * c->cap_names : 64;
    uint32_t *old = c->name_slots;
    char **nn = realloc(c->names, (ncap / 2) * sizeof(*nn));
    if (!nn || !(c->name_slots = calloc(ncap, sizeof(*c->name_slots)))) abort();
    c->names = nn;
    c->cap_names = ncap;
    for (uint32_t i = 0; i < c->n_names; i++) c->name_slots[name_slot(c, c->names[i])] = i + 1;
    free(old);
}

/* The index of name, interned if new; UINT32_MAX if the table is full. */
static uint32_t intern(closes_t *c, const char *name) {
    if (c->cap_names) {
        size_t k = name_slot(c, name);
        if (c->name_slots[k]) return c->name_slots[k] - 1;
    }
    if (c->n_names >= CLOSES_NAMES_MAX) return UINT32_MAX;
    if (2 * ((size_t)c->n_names + 1) > c->cap_names) grow_names(c);
    if (!(c->names[c->n_names] = strdup(name))) abort();
    c->name_slots[name_slot(c, name)] = ++c->n_names;
    return c->n_names - 1;
}

/* The index of owner; CLOSES_OWNERS_MAX if it has none. */
static uint16_t owner_find(const closes_t *c, const void *owner) {
    uint16_t i = 0;
    while (i < c->n_owners && c->owners[i] != owner) i++;
    return i < c->n_owners ? i : CLOSES_OWNERS_MAX;
}

/* The index of owner, given one if new; CLOSES_OWNERS_MAX if there is no room. */
static uint16_t owner_add(closes_t *c, const void *owner) {
    uint16_t i = owner_find(c, owner);
    if (i < CLOSES_OWNERS_MAX || c->n_owners == CLOSES_OWNERS_MAX) return i;
    if (c->n_owners == c->cap_owners) {
        c->cap_owners = c->cap_owners ? (uint16_t)(c->cap_owners < 32768 ? 2 * c->cap_owners : CLOSES_OWNERS_MAX) : 16;
        if (!(c->owners = realloc(c->owners, c->cap_owners * sizeof(*c->owners)))) abort();
    }
    c->owners[c->n_owners] = owner;
    return c->n_owners++;
}

/* The slot holding (owner, id), or the empty slot where it would go. */
static size_t find(const closes_t *c, uint16_t owner, const char *id, uint32_t hash) {
    size_t k = hash & (c->cap - 1);
    for (; c->slots[k]; k = (k + 1) & (c->cap - 1)) {
        const rec_t *r = c->slots[k];
        if (r->hash == hash && r->owner == owner && !strcmp(REC_ID(r), id)) break;
    }
    return k;
}

static void grow(closes_t *c) {
    size_t ncap = c->cap ? 2 * c->cap : 1024;
    rec_t **ns = calloc(ncap, sizeof(*ns));
    if (!ns) abort();
    for (size_t i = 0; i < c->cap; i++) {
        rec_t *r = c->slots[i];
        if (!r) continue;
        size_t k = r->hash & (ncap - 1);
        while (ns[k]) k = (k + 1) & (ncap - 1);
        ns[k] = r;
    }
    free(c->slots);
    c->slots = ns;
    c->cap = ncap;
}

/* Empty slot k, then move back whatever of the run after it probed past it. */
static void remove_at(closes_t *c, size_t k) {
    size_t mask = c->cap - 1;
    c->rec_bytes -= sizeof(rec_t) + REC_TIPS(c->slots[k]) + strlen(REC_ID(c->slots[k])) + 1;
    free(c->slots[k]);
    c->slots[k] = NULL;
    c->n--;
    for (size_t j = (k + 1) & mask; c->slots[j]; j = (j + 1) & mask) {
        size_t home = c->slots[j]->hash & mask;
        /* the record at j may move to k if k lies cyclically in [home, j) */
        if (((j - home) & mask) >= ((j - k) & mask)) {
            c->slots[k] = c->slots[j];
            c->slots[j] = NULL;
            k = j;
        }
    }
}

void closes_del(closes_t *c, const void *owner, const char *id, uint64_t hash) {
    uint16_t o = owner_find(c, owner);
    if (!c->n || o == CLOSES_OWNERS_MAX) return;
    size_t k = find(c, o, id, (uint32_t)hash);
    if (c->slots[k]) remove_at(c, k);
}

int closes_put(closes_t *c, const void *owner, const char *id, uint64_t hash, int64_t deadline,
               const funnel_close_t *fc) {
    uint32_t mseg = intern(c, fc->mseg), tp = intern(c, fc->last_tp);
    uint16_t o = owner_add(c, owner);
    size_t k = c->cap && o < CLOSES_OWNERS_MAX ? find(c, o, id, (uint32_t)hash) : 0;
    rec_t *r = c->cap && o < CLOSES_OWNERS_MAX ? c->slots[k] : NULL;
    size_t tips = fc->phase > 0 ? (size_t)fc->phase : 0, len = strlen(id) + 1;
    int refused = mseg == UINT32_MAX || tp == UINT32_MAX || o == CLOSES_OWNERS_MAX;
    if (r && (refused || REC_TIPS(r) != tips)) { /* dropped, or its size changes */
        remove_at(c, k);
        r = NULL;
    }
    if (!r) {
        if (refused || c->n >= c->max) return 0;
        if (2 * (c->n + 1) > c->cap) grow(c);
        k = find(c, o, id, (uint32_t)hash);
        if (!(r = malloc(sizeof(*r) + tips + len))) abort();
        r->hash = (uint32_t)hash;
        r->owner = o;
        r->phase = fc->phase;
        memcpy(r->data + tips, id, len);
        c->slots[k] = r;
        c->n++;
        c->rec_bytes += sizeof(*r) + tips + len;
    }
    r->deadline = deadline;
    r->mseg = (uint16_t)mseg;
    r->tp = (uint16_t)tp;
    r->phase = fc->phase; /* same number of buckets as before */
    memcpy(r->data, fc->tip, tips);
    return 1;
}

int closes_get(const closes_t *c, const void *owner, const char *id, uint64_t hash, int64_t *deadline,
               funnel_close_t *fc) {
    uint16_t o = owner_find(c, owner);
    if (!c->n || o == CLOSES_OWNERS_MAX) return 0;
    const rec_t *r = c->slots[find(c, o, id, (uint32_t)hash)];
    if (!r) return 0;
    *deadline = r->deadline;
    fc->at = r->deadline;
    fc->phase = r->phase;
    memset(fc->tip, FUNNEL_TIP_SKIPPED, sizeof(fc->tip));
    memcpy(fc->tip, r->data, REC_TIPS(r));
    fc->mseg = c->names[r->mseg];
    fc->last_tp = c->names[r->tp];
    return 1;
}
