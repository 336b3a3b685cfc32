/* The process's limit on open file descriptors (RLIMIT_NOFILE): raised at
 * start from the soft limit (1,024 by default on Linux, which a busy agent
 * or tracker reaches: client sockets, blob files, peer connections) to the
 * hard limit the administrator allows.
 */
#ifndef SHOAL_NOFILE_H
#define SHOAL_NOFILE_H

#include <stdint.h>

/* What nofile_raise found and got; UINT64_MAX stands for "unlimited". */
struct nofile_limit {
    uint64_t before; /* the soft limit at start */
    uint64_t after;  /* the soft limit now */
    uint64_t hard;   /* the hard limit */
};

/* Raises the soft limit to the hard limit (to the kernel's nr_open when the
 * hard limit is unlimited) and fills *out. 0, or a negative errno when the
 * limits cannot be read or set (*out then holds what is in force). */
int nofile_raise(struct nofile_limit *out);

/* nofile_raise, then one log line under component comp stating what was
 * got ("nofile soft=... hard=... was=..."), and a warning when the limit
 * leaves less than two descriptors per connection of `connections` (the
 * daemon's max-connections). Returns what nofile_raise returned. */
int nofile_setup(const char *comp, uint64_t connections);

#endif
