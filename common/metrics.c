/* Prometheus text exposition format helpers. */
#include "shoal/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shoal/error.h"

const double metrics_latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                         2.5,   5,    10,    30,   60,  120,  300};
const size_t metrics_latency_nbounds =
    sizeof(metrics_latency_bounds) / sizeof(metrics_latency_bounds[0]);

int metrics_write_header(struct buf *out, const char *name, const char *type, const char *help)
{
    return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_write(struct buf *out, const char *name, const char *type, const char *help,
                  const char *labels, uint64_t value)
{
    int rc = metrics_write_header(out, name, type, help);

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

int metrics_label(char *out, size_t outlen, const char *name, const char *value)
{
    size_t n = 0;
    size_t nl = strlen(name);

    if (outlen < nl + 4) {
        if (outlen)
            out[0] = '\0';
        return SHOAL_ETOOBIG;
    }
    memcpy(out, name, nl);
    n = nl;
    out[n++] = '=';
    out[n++] = '"';
    for (const char *p = value; *p; p++) {
        char esc[2];
        size_t el = 1;
        unsigned char c = (unsigned char)*p;
        if (c == '\\' || c == '"') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c == '\n') {
            esc[0] = '\\';
            esc[1] = 'n';
            el = 2;
        } else {
            esc[0] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
        /* Room for this, the closing quote and the NUL. */
        if (n + el + 2 > outlen) {
            out[nl + 2] = '"';
            out[nl + 3] = '\0';
            return SHOAL_ETOOBIG;
        }
        memcpy(out + n, esc, el);
        n += el;
    }
    out[n++] = '"';
    out[n] = '\0';
    return 0;
}

int metrics_write_build_info(struct buf *out, const char *daemon, const char *version)
{
    char d[96], v[96], labels[200];

    metrics_label(d, sizeof(d), "daemon", daemon);
    metrics_label(v, sizeof(v), "version", version);
    snprintf(labels, sizeof(labels), "%s,%s", d, v);
    return metrics_write(out, "shoal_build_info", "gauge",
                         "Always 1; the labels say which daemon and release this is.", labels, 1);
}

void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->nbounds = nbounds > METRICS_BUCKETS_MAX ? METRICS_BUCKETS_MAX : nbounds;
}

void metrics_histogram_observe_ms(struct metrics_histogram *h, uint64_t ms)
{
    double s = (double)ms / 1000.0;
    size_t i = 0;

    while (i < h->nbounds && s > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += s;
}

int metrics_write_histogram(struct buf *out, const char *name, const char *labels,
                            const struct metrics_histogram *h)
{
    const char *sep = labels && labels[0] ? "," : "";
    const char *ls = labels ? labels : "";
    uint64_t cum = 0;
    int rc = 0;

    for (size_t i = 0; i <= h->nbounds && rc == 0; i++) {
        cum += h->counts[i];
        if (i < h->nbounds)
            rc = buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, ls, sep,
                            h->bounds[i], cum);
        else
            rc = buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, ls, sep, cum);
    }
    if (rc == 0)
        rc = buf_printf(out, "%s_sum%s%s%s %.6f\n", name, ls[0] ? "{" : "", ls, ls[0] ? "}" : "",
                        h->sum);
    if (rc == 0)
        rc = buf_printf(out, "%s_count%s%s%s %" PRIu64 "\n", name, ls[0] ? "{" : "", ls,
                        ls[0] ? "}" : "", h->count);
    return rc;
}
