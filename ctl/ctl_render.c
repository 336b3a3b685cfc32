/* Progress text for shoalctl. See ctl_render.h. */
#include "ctl_render.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void ctl_render_bytes(uint64_t n, char *out, size_t outlen)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(out, outlen, "%" PRIu64 " B", n);
        return;
    }
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    /* Three significant digits; 1023.95 would print as "1024.0". */
    if (v >= 100.0)
        snprintf(out, outlen, "%.0f %s", v, units[u]);
    else if (v >= 10.0)
        snprintf(out, outlen, "%.1f %s", v, units[u]);
    else
        snprintf(out, outlen, "%.2f %s", v, units[u]);
}

void ctl_render_duration(uint64_t ms, char *out, size_t outlen)
{
    if (ms < 1000)
        snprintf(out, outlen, "%" PRIu64 "ms", ms);
    else if (ms < 60000)
        snprintf(out, outlen, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, outlen, "%" PRIu64 "m%02" PRIu64 "s", ms / 60000, ms / 1000 % 60);
    else
        snprintf(out, outlen, "%" PRIu64 "h%02" PRIu64 "m", ms / 3600000, ms / 60000 % 60);
}

int ctl_render_percent(const struct ctl_progress *p)
{
    if (p->state && strcmp(p->state, "done") == 0)
        return 100;
    if (p->bytes_total == 0)
        return 0;
    if (p->bytes_done >= p->bytes_total)
        return 99;
    /* Integer arithmetic without overflow for totals up to 2^57. */
    uint64_t pct = p->bytes_total > (UINT64_MAX / 100) ? p->bytes_done / (p->bytes_total / 100)
                                                       : p->bytes_done * 100 / p->bytes_total;
    return pct > 99 ? 99 : (int)pct;
}

void ctl_render_bar(const struct ctl_progress *p, size_t name_width, size_t width, char *out,
                    size_t outlen)
{
    char done[32], total[32], rate[40] = "", tail[160];
    int pct = ctl_render_percent(p);
    bool failed = p->state && strcmp(p->state, "failed") == 0;

    ctl_render_bytes(p->bytes_done, done, sizeof(done));
    ctl_render_bytes(p->bytes_total, total, sizeof(total));
    if (p->rate >= 0) {
        char r[32];
        ctl_render_bytes((uint64_t)p->rate, r, sizeof(r));
        snprintf(rate, sizeof(rate), "%s/s", r);
    }
    if (failed)
        snprintf(tail, sizeof(tail), "failed");
    else
        snprintf(tail, sizeof(tail), "%3d%%  %9s / %-9s  %11s  %-8s", pct, done, total, rate,
                 p->state ? p->state : "");
    /* NAME + " [" + bar + "] " + tail: the bar takes what is left, 10..40. */
    size_t fixed = name_width + 4 + strlen(tail);
    size_t bar = width > fixed + 10 ? width - fixed : 10;
    if (bar > 40)
        bar = 40;
    char barbuf[41];
    size_t filled = (size_t)pct * bar / 100;
    for (size_t i = 0; i < bar; i++)
        barbuf[i] = i < filled ? '#' : (failed ? 'x' : '.');
    barbuf[bar] = '\0';
    int n = snprintf(out, outlen, "%-*.*s [%s] %s", (int)name_width, (int)name_width,
                     p->name ? p->name : "", barbuf, tail);
    if (failed && p->error && n > 0 && (size_t)n < outlen)
        snprintf(out + n, outlen - (size_t)n, ": %s", p->error);
    /* Never wrap: a wrapped line breaks the cursor-up redraw. */
    if (width > 0 && strlen(out) > width)
        out[width] = '\0';
}

void ctl_render_plain(const struct ctl_progress *p, char *out, size_t outlen)
{
    char done[32], total[32], took[32], cached[32] = "";
    const char *state = p->state ? p->state : "";

    if (strcmp(state, "failed") == 0) {
        snprintf(out, outlen, "%s: failed: %s", p->name ? p->name : "",
                 p->error && p->error[0] ? p->error : "unknown error");
        return;
    }
    if (strcmp(state, "done") != 0 && p->blobs_total == 0) {
        snprintf(out, outlen, "%s: %s (reading manifests)", p->name ? p->name : "", state);
        return;
    }
    ctl_render_bytes(p->bytes_done, done, sizeof(done));
    ctl_render_bytes(p->bytes_total, total, sizeof(total));
    if (p->blobs_cached)
        snprintf(cached, sizeof(cached), ", %" PRIu64 " cached", p->blobs_cached);
    int n = snprintf(out, outlen, "%s: %s %d%% (%s of %s, %" PRIu64 "/%" PRIu64 " blobs%s)",
                     p->name ? p->name : "", state, ctl_render_percent(p), done, total,
                     p->blobs_done, p->blobs_total, cached);
    if (strcmp(state, "done") == 0 && n > 0 && (size_t)n < outlen) {
        ctl_render_duration(p->elapsed_ms, took, sizeof(took));
        snprintf(out + n, outlen - (size_t)n, " in %s", took);
    }
}
