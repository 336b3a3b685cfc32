/* Prometheus text exposition format helpers. */
#include "shoal/metrics.h"

#include <inttypes.h>

int metrics_write(struct buf *out, const char *name, const char *type, const char *help,
                  const char *labels, uint64_t value)
{
    int rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);

    if (rc < 0)
        return rc;
    return metrics_write_sample(out, name, labels, value);
}

int metrics_write_sample(struct buf *out, const char *name, const char *labels, uint64_t value)
{
    if (labels && labels[0])
        return buf_printf(out, "%s{%s} %" PRIu64 "\n", name, labels, value);
    return buf_printf(out, "%s %" PRIu64 "\n", name, value);
}
