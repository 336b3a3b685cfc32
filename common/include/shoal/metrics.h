/* Prometheus text exposition helpers. Metric values live in the owning
 * module's structs; these functions only format them (and, for histograms,
 * count observations into buckets). */
#ifndef SHOAL_METRICS_H
#define SHOAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "shoal/buf.h"

/* Appends "# HELP", "# TYPE" and one sample line. type is "counter" or
 * "gauge". labels is NULL or a label set without braces ("code=\"200\"").
 * Returns what buf_printf returns. */
int metrics_write(struct buf *out, const char *name, const char *type, const char *help,
                  const char *labels, uint64_t value);

/* Appends only a sample line (for further label sets of a metric already
 * introduced with metrics_write or metrics_write_header). */
int metrics_write_sample(struct buf *out, const char *name, const char *labels, uint64_t value);

/* Appends only "# HELP" and "# TYPE" (type "counter", "gauge" or
 * "histogram"), for a metric whose samples follow. */
int metrics_write_header(struct buf *out, const char *name, const char *type, const char *help);

/* Writes `name="value"` into out (outlen bytes, NUL-terminated), escaping
 * backslash, double quote and newline as the text format requires; other
 * control bytes become '?'. Returns 0, or SHOAL_ETOOBIG when it does not
 * fit (out then holds `name=""`, if even that fits). */
int metrics_label(char *out, size_t outlen, const char *name, const char *value);

/* Appends shoal_build_info{daemon="...",version="..."} 1, the gauge that
 * tells which release a scrape target runs. */
int metrics_write_build_info(struct buf *out, const char *daemon, const char *version);

/* Most buckets a histogram may have (the +Inf bucket not counted). */
#define METRICS_BUCKETS_MAX 24

/* A cumulative-on-output histogram of non-negative observations in
 * seconds. bounds (borrowed, static) are the upper bounds in increasing
 * order; counts[i] holds the observations in (bounds[i-1], bounds[i]], and
 * counts[nbounds] those above the last bound. */
struct metrics_histogram {
    const double *bounds;
    size_t nbounds;
    uint64_t counts[METRICS_BUCKETS_MAX + 1];
    uint64_t count;
    double sum;
};

/* Request latencies from a millisecond to five minutes (blob downloads run
 * for minutes): 5 ms ... 300 s. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;

/* Zeroes h with these bounds (at most METRICS_BUCKETS_MAX, increasing). */
void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds);

/* Counts one observation of ms milliseconds. */
void metrics_histogram_observe_ms(struct metrics_histogram *h, uint64_t ms);

/* Appends the samples of h: name_bucket{labels,le="..."} for every bound
 * and +Inf (cumulative), name_sum and name_count. labels is NULL or a label
 * set without braces. Introduce the metric with metrics_write_header(...,
 * "histogram", ...) first. Returns what buf_printf returns. */
int metrics_write_histogram(struct buf *out, const char *name, const char *labels,
                            const struct metrics_histogram *h);

#endif
