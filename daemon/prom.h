/*
 * prom.h -- the Prometheus text exposition format (version 0.0.4), built
 * into one bounded buffer, and a fixed-bucket histogram to feed it.
 *
 * A page is a sequence of families, each emitted once with all its samples
 * together, as the format requires:
 *
 *   prom_family(p, "journeyd_events_total", PROM_COUNTER, "Events by outcome.");
 *   prom_sample(p, (const char *[]){"outcome", "applied", NULL}, 1234);
 *   prom_sample(p, (const char *[]){"outcome", "dead_lettered", NULL}, 5);
 *   prom_family(p, "journeyd_batch_seconds", PROM_HISTOGRAM, "Batch latency.");
 *   prom_histogram(p, NULL, &batch_hist);
 *   prom_text(p, &text, &len, errbuf, sizeof(errbuf));
 *
 * Samples take their name from the current family (a histogram's get
 * _bucket, _sum and _count), so a sample cannot stray into another family.
 * Labels are NULL-terminated name, value pairs (NULL: no labels). Names are
 * checked ([a-zA-Z_:][a-zA-Z0-9_:]* for metrics; labels without ':', not
 * starting with "__", "le" reserved for histograms, each once per sample),
 * a counter's name must end in "_total", a family whose name or sample
 * names clash with an earlier family's is refused; help and label values
 * must be UTF-8 and are escaped. Not checked: two samples of a family with
 * the same labels.
 *
 * Errors are sticky: the first one (a bad name, a full buffer...) makes
 * that call and every later one return -1, and prom_text() reports it.
 * Pure: no I/O, no locking (one thread builds a page).
 */
#ifndef JD_PROM_H
#define JD_PROM_H

#include <stddef.h>
#include <stdint.h>

#define PROM_FAMILIES_MAX 256   /* families on one page */
#define PROM_NAME_MAX 128       /* bytes of a metric name, NUL included */
#define PROM_HIST_BUCKETS_MAX 32 /* finite upper bounds of a histogram */

typedef enum { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM } prom_type_t;

typedef struct prom prom_t;

/* A latency (or any) histogram with fixed upper bounds. A plain struct the
 * caller owns and may copy; no allocation. */
typedef struct prom_hist {
    size_t n;                               /* finite upper bounds */
    double le[PROM_HIST_BUCKETS_MAX];       /* strictly ascending, finite */
    uint64_t in[PROM_HIST_BUCKETS_MAX + 1]; /* observations per bucket, not cumulative;
                                             * in[i]: le[i-1] < v <= le[i]; in[n]: v > le[n-1] */
    uint64_t count;
    double sum;
} prom_hist_t;

/* An empty page whose text may grow to max_bytes. Caller owns it (prom_free()).
 * NULL: out of memory. */
prom_t *prom_new(size_t max_bytes);
void prom_free(prom_t *p);
/* Start a new page: text, families and error cleared, the buffer kept. */
void prom_reset(prom_t *p);

/* Begin a family: its # HELP and # TYPE lines. 0, or -1 (see above). */
int prom_family(prom_t *p, const char *name, prom_type_t type, const char *help);
/* A sample of the current counter or gauge family. A counter's value must be
 * >= 0. 0 or -1. */
int prom_sample(prom_t *p, const char *const *labels, double value);
/* The cumulative _bucket lines (le="+Inf" last), _sum and _count of h under
 * labels, in the current histogram family. 0 or -1. */
int prom_histogram(prom_t *p, const char *const *labels, const prom_hist_t *h);

/* The page so far: *text (owned by p, valid until the next call on p; not
 * NUL-terminated) and *len, and 0; or -1 and the first error in errbuf. */
int prom_text(const prom_t *p, const char **text, size_t *len, char *errbuf, size_t errlen);

/* An empty histogram with the n upper bounds le (1..PROM_HIST_BUCKETS_MAX,
 * strictly ascending, finite). 0, or -1 and errbuf. */
int prom_hist_init(prom_hist_t *h, const double *le, size_t n, char *errbuf, size_t errlen);
/* Count v (e.g. seconds) into its bucket; NaN is ignored. */
void prom_hist_observe(prom_hist_t *h, double v);

#endif
