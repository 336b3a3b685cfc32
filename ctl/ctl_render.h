/* Text for shoalctl's progress output: pure functions of their inputs, so
 * they are unit-tested without a terminal. */
#ifndef SHOAL_CTL_RENDER_H
#define SHOAL_CTL_RENDER_H

#include <stddef.h>
#include <stdint.h>

/* One agent's progress as shown to the operator. Strings are borrowed. */
struct ctl_progress {
    const char *name;  /* the agent, e.g. "127.0.0.1:5080" */
    const char *state; /* "starting", "running", "done", "failed" */
    uint64_t bytes_done;
    uint64_t bytes_total;
    uint64_t blobs_done;
    uint64_t blobs_total;
    uint64_t blobs_cached;
    double rate;         /* bytes per second, < 0 when unknown */
    uint64_t elapsed_ms; /* since the job started */
    const char *error;   /* failed: why; else NULL */
};

/* "0 B", "512 B", "1.5 KiB", "12.3 MiB", "1.02 GiB" into out. */
void ctl_render_bytes(uint64_t n, char *out, size_t outlen);

/* "850ms", "12.3s", "4m05s", "1h02m". */
void ctl_render_duration(uint64_t ms, char *out, size_t outlen);

/* Percent done, 0..100: 100 when the job is done, 0 while the total is
 * unknown, never 100 before every byte is there. */
int ctl_render_percent(const struct ctl_progress *p);

/* One terminal line (no newline) of at most width columns:
 *   NAME [#########.........]  45%  12.3 MiB / 27.0 MiB  5.1 MiB/s  running
 * name_width pads the names into a column; the bar shrinks to fit width. */
void ctl_render_bar(const struct ctl_progress *p, size_t name_width, size_t width, char *out,
                    size_t outlen);

/* One plain line (no newline) for logs and pipes:
 *   NAME: running 40% (12.3 MiB of 30.0 MiB, 2/7 blobs)
 *   NAME: done 100% (30.0 MiB of 30.0 MiB, 7/7 blobs, 1 cached) in 2.5s
 *   NAME: failed: <error> */
void ctl_render_plain(const struct ctl_progress *p, char *out, size_t outlen);

#endif
