/* Prometheus text exposition helpers. Metric values live in the owning
 * module's structs; these functions only format them. */
#ifndef SHOAL_METRICS_H
#define SHOAL_METRICS_H

#include <stdint.h>

#include "shoal/buf.h"

/* Appends "# HELP", "# TYPE" and one sample line. type is "counter" or
 * "gauge". labels is NULL or a label set without braces ("code=\"200\"").
 * Returns what buf_printf returns. */
int metrics_write(struct buf *out, const char *name, const char *type, const char *help,
                  const char *labels, uint64_t value);

/* Appends only a sample line (for further label sets of a metric already
 * introduced with metrics_write). */
int metrics_write_sample(struct buf *out, const char *name, const char *labels, uint64_t value);

#endif
