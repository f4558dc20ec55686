/*
 * stitch.c -- home partitions and the internal topic's records (stitch.h).
 *
 * A record is a MessagePack array of 20 values, in this order (all always
 * present, unused ones empty or 0):
 *   [version, kind, src, seq, id, cust, jnum, follow, ts, mid, phase,
 *    metric, score, scope, explicit_phase, explicit_tp, other, tp, segment,
 *    blob (bin)]
 * Records are written by journeyd only, but are read as untrusted input
 * like any other message: a malformed one is refused with a reason.
 */
#include "stitch.h"

#include <librdkafka/rdkafka.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

#define FWD_FIELDS 20

int32_t stitch_home(int partitioner, const char *id, int32_t n) {
    size_t len = strlen(id);
    /* librdkafka's partitioners do not look at the topic for a non-empty key */
    switch (partitioner) {
    case CFG_PART_MURMUR2_RANDOM:
    case CFG_PART_MURMUR2:
        return rd_kafka_msg_partitioner_murmur2(NULL, id, len, n, NULL, NULL);
    case CFG_PART_FNV1A_RANDOM:
    case CFG_PART_FNV1A:
        return rd_kafka_msg_partitioner_fnv1a(NULL, id, len, n, NULL, NULL);
    default:
        return rd_kafka_msg_partitioner_consistent(NULL, id, len, n, NULL, NULL);
    }
}

const char *fwd_kind_name(int kind) {
    static const char *const names[] = {"?", "event", "link", "claim", "handoff", "release", "clock"};
    return kind >= FWD_EVENT && kind <= FWD_CLOCK ? names[kind] : "?";
}

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int fwd_encode(const fwd_t *f, char **out, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, FWD_FIELDS);
    msgpack_pack_int(&pk, FWD_VERSION);
    msgpack_pack_int(&pk, f->kind);
    pack_str(&pk, f->src);
    msgpack_pack_int64(&pk, f->seq);
    pack_str(&pk, f->id);
    pack_str(&pk, f->cust);
    msgpack_pack_uint32(&pk, f->jnum);
    msgpack_pack_int(&pk, f->follow);
    msgpack_pack_int64(&pk, f->ts);
    msgpack_pack_uint64(&pk, f->mid);
    msgpack_pack_int(&pk, f->phase);
    msgpack_pack_int(&pk, f->metric);
    msgpack_pack_int(&pk, f->score);
    msgpack_pack_int(&pk, f->scope);
    msgpack_pack_int(&pk, f->explicit_phase);
    msgpack_pack_int(&pk, f->explicit_tp);
    pack_str(&pk, f->other);
    pack_str(&pk, f->tp);
    pack_str(&pk, f->segment);
    msgpack_pack_bin(&pk, f->blob ? f->blob_len : 0);
    if (f->blob && f->blob_len) msgpack_pack_bin_body(&pk, f->blob, f->blob_len);
    if (!sb.data) return -1;
    *out = sb.data; /* the buffer is the caller's */
    *len = sb.size;
    return 0;
}

static int get_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX) return -1;
        *v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
    } else {
        return -1;
    }
    return *v < lo || *v > hi ? -1 : 0;
}

static int get_str(const msgpack_object *o, char *dst, size_t cap) {
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap) return -1;
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = '\0';
    return memchr(dst, '\0', o->via.str.size) ? -1 : 0;
}

int fwd_decode(const char *buf, size_t len, fwd_t *f, char *errbuf, size_t errlen) {
    msgpack_unpacked u;
    size_t off = 0;
    int rc = -1;
    const char *why = "not a MessagePack array of " "20";
    memset(f, 0, sizeof(*f));
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
        u.data.type != MSGPACK_OBJECT_ARRAY || u.data.via.array.size != FWD_FIELDS)
        goto out;
    const msgpack_object *a = u.data.via.array.ptr;
    int64_t v[FWD_FIELDS];
    static const int64_t lo[FWD_FIELDS] = {[1] = FWD_EVENT, [3] = 1, [8] = INT64_MIN, [10] = -1, [11] = 0,
                                           [12] = -128, [13] = 0};
    static const int64_t hi[FWD_FIELDS] = {[0] = FWD_VERSION, [1] = FWD_CLOCK, [3] = INT64_MAX,
                                           [6] = UINT32_MAX, [7] = FWD_F_FOLLOW | FWD_F_HELD | FWD_F_REFUSED, [8] = INT64_MAX, [9] = INT64_MAX,
                                           [10] = CFG_MAX_PHASES - 1, [11] = 127, [12] = 127, [13] = 127,
                                           [14] = 1, [15] = 1};
    static const int ints[] = {0, 1, 3, 6, 7, 8, 10, 11, 12, 13, 14, 15};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        int k = ints[i];
        if (get_int(&a[k], k == 0 ? FWD_VERSION : lo[k], hi[k], &v[k]) < 0) {
            why = "a number out of range";
            goto out;
        }
    }
    if (a[9].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        why = "mid is not an unsigned integer";
        goto out;
    }
    if (get_str(&a[2], f->src, sizeof(f->src)) < 0 || !f->src[0] || get_str(&a[4], f->id, sizeof(f->id)) < 0 ||
        !f->id[0] || get_str(&a[5], f->cust, sizeof(f->cust)) < 0 || get_str(&a[16], f->other, sizeof(f->other)) < 0 ||
        get_str(&a[17], f->tp, sizeof(f->tp)) < 0 || get_str(&a[18], f->segment, sizeof(f->segment)) < 0) {
        why = "a string missing, too long or with a NUL";
        goto out;
    }
    if (a[19].type != MSGPACK_OBJECT_BIN) {
        why = "blob is not binary";
        goto out;
    }
    f->kind = (uint8_t)v[1];
    f->seq = v[3];
    f->jnum = (uint32_t)v[6];
    f->follow = (uint8_t)v[7];
    f->ts = v[8];
    f->mid = a[9].via.u64;
    f->phase = (int8_t)v[10];
    f->metric = (int8_t)v[11];
    f->score = (int8_t)v[12];
    f->scope = (int8_t)v[13];
    f->explicit_phase = (uint8_t)v[14];
    f->explicit_tp = (uint8_t)v[15];
    /* the bytes are in buf, where the unpacker found them */
    f->blob_len = a[19].via.bin.size;
    f->blob = f->blob_len ? a[19].via.bin.ptr : NULL;
    if (f->blob && (f->blob < buf || f->blob + f->blob_len > buf + len)) f->blob = NULL; /* cannot happen */
    if ((f->kind == FWD_CLAIM || f->kind == FWD_HANDOFF || f->kind == FWD_RELEASE) && !f->cust[0]) {
        why = "no customer";
        goto out;
    }
    if (f->kind == FWD_LINK && !f->other[0]) {
        why = "a link without the id to link";
        goto out;
    }
    rc = 0;
out:
    if (rc < 0) snprintf(errbuf, errlen, "internal record: %s", why);
    msgpack_unpacked_destroy(&u);
    return rc;
}
