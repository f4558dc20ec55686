/*
 * journeyctl.c -- the journeyd command-line tool: look up journeys, print
 * counters, the funnel, the satisfaction table and the metrics snapshot, dump
 * state, check a configuration, generate events (gen_cli.c).
 * Parses arguments and dispatches; the work is in the core library.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "config.h"
#include "funnel.h"
#include "gen_cli.h"
#include "journey.h"
#include "satisfaction.h"
#include "snapshot.h"
#include "store.h"
#include "text.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: journeyctl [-c FILE] journey CUSTOMER [--json]\n"
            "                                print a customer's journey (phase, times, history)\n"
            "       journeyctl [-c FILE] stats [--json]\n"
            "                                per-partition offsets and event counters\n"
            "       journeyctl [-c FILE] funnel [--segment S] [--top N] [--window W | --json]\n"
            "                                the funnel per phase: reached, active, moved on, dropped,\n"
            "                                drop-off rate, drop-off touchpoints, time in phase; with\n"
            "                                --window (metrics.windows: 1h, 1d, ...) what happened in it\n"
            "       journeyctl [-c FILE] satisfaction [--touchpoint] [--segment] [--window W] [--phase P]\n"
            "                                NPS, CSAT and CES per phase and window (W as named in\n"
            "                                metrics --json: 1h, 1d, ..., all) in touchpoint and journey\n"
            "                                scope, and their gap; also a line per touchpoint / segment\n"
            "       journeyctl [-c FILE] metrics --json\n"
            "                                the full metrics snapshot (schemas/metrics.schema.json)\n"
            "       journeyctl [-c FILE] dump\n"
            "                                every journey as one JSON line, sorted by customer\n"
            "       journeyctl check-config FILE\n"
            "                                validate a configuration (file:line: reason on error)\n"
            "       journeyctl gen [OPTIONS]  generate realistic journeys (journeyctl gen --help)\n"
            "-c FILE defaults to $JOURNEYD_CONFIG, else config/journeyd.yaml\n");
}

typedef struct cli {
    config_t *cfg;
    store_t *st;
    int json;
    const char *segment;    /* funnel --segment */
    int top;                /* funnel --top */
    sat_text_opts_t sat;    /* satisfaction --touchpoint, --segment */
    const char *window;     /* satisfaction and funnel --window */
    const char *phase;      /* satisfaction --phase */
} cli_t;

static int cli_config(cli_t *c, const char *path) {
    char err[1024];
    if (!(c->cfg = config_load(path, err, sizeof(err)))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int cli_store(cli_t *c) {
    char err[1024];
    if (!(c->st = store_open(c->cfg, err, sizeof(err)))) {
        fprintf(stderr, "journeyctl: %s\n", err);
        return -1;
    }
    return 0;
}

static void cli_close(cli_t *c) {
    store_close(c->st);
    if (c->cfg) config_free(c->cfg);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static void ignore_field(const char *field, int64_t value, void *opaque) {
    (void)field, (void)value, (void)opaque;
}

/* A shard's closed-through mark (journey_settle()); INT64_MIN if unreadable. */
static int64_t shard_mark(cli_t *c, const char *shard) {
    char err[512];
    int64_t clock, mark;
    if (store_shard_state(c->st, shard, &clock, &mark, ignore_field, NULL, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "journeyctl: %s\n", err);
        return INT64_MIN;
    }
    return mark;
}

/* Look `id` up in every shard, following a redirect once per hop. */
static int find_journey(cli_t *c, const char *id, journey_t *j) {
    char err[512], **shards, cur[JD_ID_MAX + 1];
    size_t n;
    int found = 0;
    if (store_shards(c->st, &shards, &n, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "journeyctl: %s\n", err);
        return -1;
    }
    for (size_t s = 0; s < n && !found; s++) {
        snprintf(cur, sizeof(cur), "%s", id);
        for (int hop = 0; hop < STORE_REDIRECT_HOPS_MAX; hop++) {
            const char *ids[1] = {cur};
            store_blob_t v = {NULL, 0};
            store_load_req_t q = {.shard = shards[s], .n = 1, .ids = ids, .out = &v};
            if (store_load(c->st, &q, 1, err, sizeof(err)) != STORE_OK) {
                fprintf(stderr, "journeyctl: %s\n", err);
                break;
            }
            if (!v.data) break;
            if ((unsigned char)v.data[0] == STORE_REDIRECT) {
                snprintf(cur, sizeof(cur), "%.*s", (int)(v.len - 1), v.data + 1);
                free(v.data);
                continue;
            }
            journey_init(j, cur);
            found = journey_unpack(j, v.data, v.len, c->cfg, err, sizeof(err)) == 0 ? 1 : -1;
            if (found < 0) fprintf(stderr, "journeyctl: %s\n", err);
            else journey_settle(j, c->cfg, shard_mark(c, shards[s]));
            free(v.data);
            break;
        }
    }
    free_names(shards, n);
    return found;
}

static int cmd_journey(cli_t *c, const char *id) {
    journey_t j;
    memset(&j, 0, sizeof(j));
    int r = find_journey(c, id, &j);
    if (r == 0) fprintf(stderr, "journeyctl: no journey for customer '%s'\n", id);
    if (r <= 0) return 1;
    if (c->json) journey_print_json(&j, c->cfg, stdout);
    else journey_print_text(&j, c->cfg, stdout);
    journey_reset(&j);
    return 0;
}

/* ---- dump ---------------------------------------------------------------- */

typedef struct lines {
    char **v;
    size_t n, cap;
    cli_t *cli;
    char **shards;              /* the closed-through marks read so far */
    int64_t *marks;
    size_t n_shards;
} lines_t;

static int64_t cached_mark(lines_t *l, const char *shard) {
    for (size_t i = 0; i < l->n_shards; i++)
        if (!strcmp(l->shards[i], shard)) return l->marks[i];
    if (!(l->shards = realloc(l->shards, (l->n_shards + 1) * sizeof(*l->shards))) ||
        !(l->marks = realloc(l->marks, (l->n_shards + 1) * sizeof(*l->marks))) ||
        !(l->shards[l->n_shards] = strdup(shard)))
        abort();
    return l->marks[l->n_shards++] = shard_mark(l->cli, shard);
}

static void dump_one(const char *shard, const char *id, const char *val, size_t len, void *opaque) {
    lines_t *l = opaque;
    char *buf = NULL, err[256];
    size_t blen = 0;
    FILE *m = open_memstream(&buf, &blen);
    if (!m) abort();
    fputs("{\"shard\":", m);
    text_json_str(m, shard);
    fputs(",\"id\":", m);
    text_json_str(m, id);
    if (len && (unsigned char)val[0] == STORE_REDIRECT) {
        char target[JD_ID_MAX + 1];
        snprintf(target, sizeof(target), "%.*s", (int)(len - 1), val + 1);
        fputs(",\"redirect\":", m);
        text_json_str(m, target);
        fputs("}\n", m);
    } else {
        journey_t j;
        journey_init(&j, id);
        if (journey_unpack(&j, val, len, l->cli->cfg, err, sizeof(err)) == 0) {
            journey_settle(&j, l->cli->cfg, cached_mark(l, shard));
            fputs(",\"journey\":", m);
            journey_print_json(&j, l->cli->cfg, m); /* ends with "}\n" */
            fseek(m, -1, SEEK_CUR);
            fputs("}\n", m);
        } else {
            fputs(",\"error\":", m);
            text_json_str(m, err);
            fputs("}\n", m);
        }
        journey_reset(&j);
    }
    fclose(m);
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        if (!(l->v = realloc(l->v, l->cap * sizeof(*l->v)))) abort();
    }
    l->v[l->n++] = buf;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_dump(cli_t *c) {
    char err[512];
    lines_t l = {.cli = c};
    store_status_t s = store_scan(c->st, dump_one, &l, err, sizeof(err));
    if (s != STORE_OK) fprintf(stderr, "journeyctl: %s\n", err);
    qsort(l.v, l.n, sizeof(*l.v), cmp_str);
    for (size_t i = 0; i < l.n; i++) {
        /* SCAN may return a key twice: print each once. */
        if (!i || strcmp(l.v[i], l.v[i - 1])) fputs(l.v[i], stdout);
    }
    for (size_t i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v);
    free_names(l.shards, l.n_shards);
    free(l.marks);
    return s == STORE_OK ? 0 : 1;
}

/* ---- stats --------------------------------------------------------------- */

#define MAX_COUNTERS 64

typedef struct counters {
    char name[MAX_COUNTERS][48];
    long long val[MAX_COUNTERS];
    int n;
} counters_t;

static void count_add(const char *name, long long v, void *opaque) {
    counters_t *t = opaque;
    if (!strncmp(name, FUNNEL_PREFIX, strlen(FUNNEL_PREFIX))) return; /* journeyctl funnel */
    if (!strncmp(name, "in|", 3) || !strncmp(name, "ck|", 3)) return; /* marks of other shards' records */
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->name[i], name)) {
            t->val[i] += v;
            return;
        }
    if (t->n == MAX_COUNTERS) return;
    snprintf(t->name[t->n], sizeof(t->name[0]), "%s", name);
    t->val[t->n++] = v;
}

static void print_counters(const counters_t *t, int json) {
    for (int i = 0; i < t->n; i++) {
        if (json) fprintf(stdout, "%s\"%s\":%lld", i ? "," : "", t->name[i], t->val[i]);
        else fprintf(stdout, "  %-32s %lld\n", t->name[i], t->val[i]);
    }
}

static int cmd_stats(cli_t *c) {
    char err[512], **shards;
    size_t n;
    counters_t total = {.n = 0};
    if (store_shards(c->st, &shards, &n, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "journeyctl: %s\n", err);
        return 1;
    }
    qsort(shards, n, sizeof(*shards), cmp_str);
    if (c->json) fputs("{\"partitions\":[", stdout);
    for (size_t s = 0; s < n; s++) {
        counters_t t = {.n = 0};
        int64_t off = -1;
        if (store_shard_stats(c->st, shards[s], &off, count_add, &t, err, sizeof(err)) != STORE_OK) {
            fprintf(stderr, "journeyctl: %s\n", err);
            free_names(shards, n);
            return 1;
        }
        for (int i = 0; i < t.n; i++)
            if (strcmp(t.name[i], "clock") && strcmp(t.name[i], "closed_through") && strcmp(t.name[i], "iclock") &&
                strcmp(t.name[i], "out_seq"))
                count_add(t.name[i], t.val[i], &total); /* (not counters: positions) */
        if (c->json) {
            fprintf(stdout, "%s{\"partition\":", s ? "," : "");
            text_json_str(stdout, shards[s]);
            fprintf(stdout, ",\"offset\":%lld,\"counters\":{", (long long)off);
            print_counters(&t, 1);
            fputs("}}", stdout);
        } else {
            fprintf(stdout, "%s  next offset %lld\n", shards[s], (long long)off);
        }
    }
    if (c->json) {
        fputs("],\"total\":{", stdout);
        print_counters(&total, 1);
        fputs("}}\n", stdout);
    } else {
        fputs("total:\n", stdout);
        print_counters(&total, 0);
    }
    free_names(shards, n);
    return 0;
}

/* ---- funnel and metrics ------------------------------------------------------ */

static int64_t wall_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* funnel: the top segments (or one); metrics: the full snapshot. */
static int read_snapshot(cli_t *c, snapshot_t *s) {
    char err[512];
    if (snapshot_read(s, c->st, c->cfg, NULL, err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "journeyctl: %s\n", err);
    return -1;
}

static int cmd_funnel(cli_t *c, int full) {
    snapshot_t s;
    if (read_snapshot(c, &s) < 0) return 1;
    funnel_print_opts_t o = {.segment = c->segment, .top_segments = c->top, .top_touchpoints = 10,
                             .now_ms = wall_ms(), .window = -1};
    if (c->window) {
        char wn[32];
        for (int w = 0; w < c->cfg->n_funnel_windows && o.window < 0; w++) {
            funnel_window_name(c->cfg, w, wn, sizeof(wn));
            if (!strcmp(wn, c->window)) o.window = w;
        }
        if (o.window < 0) {
            fprintf(stderr, "journeyctl funnel: unknown window '%s' (metrics.windows:", c->window);
            for (int w = 0; w < c->cfg->n_funnel_windows; w++) {
                funnel_window_name(c->cfg, w, wn, sizeof(wn));
                fprintf(stderr, " %s", wn);
            }
            fputs(")\n", stderr);
            snapshot_free(&s);
            return 2;
        }
    }
    if (full) snapshot_print_json(&s, o.now_ms, NULL, NULL, stdout);
    else if (c->json) funnel_print_json(&s.snap, c->cfg, &o, stdout);
    else funnel_print_text(&s.snap, c->cfg, &o, stdout);
    snapshot_free(&s);
    return 0;
}

/* ---- satisfaction ---------------------------------------------------------- */

/* --window and --phase by name, checked against the configuration before
 * anything is read; 0, or -1 (said why). */
static int sat_args(cli_t *c) {
    sat_windows_t w;
    char wn[32];
    c->sat.window = SAT_EVERY_WINDOW;
    c->sat.phase = -1;
    sat_windows_init(&w, c->cfg->sat_windows_ms, c->cfg->n_sat_windows, c->cfg->sat_buckets);
    if (c->window && sat_window_find(&w, c->window, &c->sat.window) < 0) {
        fprintf(stderr, "journeyctl satisfaction: unknown window '%s' (windows:", c->window);
        for (int i = 0; i <= w.n; i++) {
            sat_window_name(&w, i < w.n ? i : -1, wn, sizeof(wn));
            fprintf(stderr, " %s", wn);
        }
        fputs(")\n", stderr);
        return -1;
    }
    for (int k = 0; c->phase && k < c->cfg->n_phases; k++)
        if (!strcmp(c->cfg->phases[k].name, c->phase)) c->sat.phase = k;
    if (c->phase && c->sat.phase < 0) {
        fprintf(stderr, "journeyctl satisfaction: unknown phase '%s' (phases:", c->phase);
        for (int k = 0; k < c->cfg->n_phases; k++) fprintf(stderr, " %s", c->cfg->phases[k].name);
        fputs(")\n", stderr);
        return -1;
    }
    return 0;
}

/* The satisfaction table (sat_print_text()) of every partition's counts. */
static int cmd_satisfaction(cli_t *c) {
    snapshot_t s;
    if (read_snapshot(c, &s) < 0) return 1;
    sat_print_text(s.sat, s.sat_wm, s.n_sat, &s.satw, s.phases, c->cfg->n_phases, c->cfg->sat_min_n, &c->sat,
                   stdout);
    snapshot_free(&s);
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

static int check_config(const char *path) {
    char err[1024];
    config_t *cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    config_dump(cfg, stdout);
    config_free(cfg);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = getenv("JOURNEYD_CONFIG");
    int i = 1;
    if (!path) path = "config/journeyd.yaml";
    if (i + 1 < argc && !strcmp(argv[i], "-c")) {
        path = argv[i + 1];
        i += 2;
    }
    if (i >= argc || !strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
        usage(i >= argc ? stderr : stdout);
        return i >= argc ? 2 : 0;
    }
    const char *cmd = argv[i++];
    if (!strcmp(cmd, "gen")) return gen_cli_main(argc - i + 1, argv + i - 1);
    if (!strcmp(cmd, "check-config")) {
        if (i + 1 != argc) {
            usage(stderr);
            return 2;
        }
        return check_config(argv[i]);
    }
    cli_t c = {.top = 5};
    const char *arg = NULL;
    int funnel = !strcmp(cmd, "funnel"), sat = !strcmp(cmd, "satisfaction");
    for (; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--json")) c.json = 1;
        else if (sat && !strcmp(argv[i], "--touchpoint")) c.sat.touchpoints = 1;
        else if (sat && !strcmp(argv[i], "--segment")) c.sat.segments = 1;
        else if (sat && !strcmp(argv[i], "--window") && i + 1 < argc) c.window = argv[++i];
        else if (sat && !strcmp(argv[i], "--phase") && i + 1 < argc) c.phase = argv[++i];
        else if (funnel && !strcmp(argv[i], "--segment") && i + 1 < argc) c.segment = argv[++i];
        else if (funnel && !strcmp(argv[i], "--window") && i + 1 < argc) c.window = argv[++i];
        else if (funnel && !strcmp(argv[i], "--top") && i + 1 < argc &&
                 (c.top = (int)strtol(argv[++i], &end, 10)) >= 0 && end && !*end && argv[i][0]) continue;
        else if (!arg && argv[i][0] != '-') arg = argv[i];
        else {
            fprintf(stderr, "journeyctl: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    int known = !strcmp(cmd, "journey") || !strcmp(cmd, "stats") || !strcmp(cmd, "dump") || funnel || sat ||
                !strcmp(cmd, "metrics");
    if (!known || (!strcmp(cmd, "journey") != (arg != NULL)) || (!strcmp(cmd, "metrics") && !c.json) ||
        (sat && c.json) || (funnel && c.json && c.window)) {
        fprintf(stderr, known ? "journeyctl %s: wrong arguments\n" : "journeyctl: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    int rc = 1;
    if (cli_config(&c, path) == 0 && sat && sat_args(&c) < 0) {
        usage(stderr);
        rc = 2;
    } else if (c.cfg && cli_store(&c) == 0) {
        if (!strcmp(cmd, "journey")) rc = cmd_journey(&c, arg);
        else if (!strcmp(cmd, "stats")) rc = cmd_stats(&c);
        else if (funnel) rc = cmd_funnel(&c, 0);
        else if (sat) rc = cmd_satisfaction(&c);
        else if (!strcmp(cmd, "metrics")) rc = cmd_funnel(&c, 1);
        else rc = cmd_dump(&c);
    }
    cli_close(&c);
    return rc;
}
