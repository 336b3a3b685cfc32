/* RLIMIT_NOFILE at start (shoal/nofile.h). */
#include "shoal/nofile.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>

#include "shoal/error.h"
#include "shoal/log.h"

/* The most descriptors a process may have, whatever its limit says. */
static rlim_t nr_open(void)
{
    unsigned long long v = 0;
    FILE *f = fopen("/proc/sys/fs/nr_open", "r");

    if (f != NULL) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v > 0 ? (rlim_t)v : (rlim_t)1 << 20;
}

static uint64_t as_u64(rlim_t v)
{
    return v == RLIM_INFINITY ? UINT64_MAX : (uint64_t)v;
}

int nofile_raise(struct nofile_limit *out)
{
    struct rlimit rl;
    rlim_t want;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        out->before = out->after = out->hard = 0;
        return -errno;
    }
    out->before = out->after = as_u64(rl.rlim_cur);
    out->hard = as_u64(rl.rlim_max);
    want = rl.rlim_max == RLIM_INFINITY ? nr_open() : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
        return 0;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    out->after = as_u64(want);
    return 0;
}

int nofile_setup(const char *comp, uint64_t connections)
{
    struct nofile_limit nl;
    int rc = nofile_raise(&nl);

    if (rc < 0)
        LOG(WARN, comp, "msg=\"cannot raise the open-file limit\" soft=%llu hard=%llu err=%s",
            (unsigned long long)nl.after, (unsigned long long)nl.hard, shoal_errname(rc));
    else
        LOG(INFO, comp, "msg=nofile soft=%llu hard=%llu was=%llu", (unsigned long long)nl.after,
            (unsigned long long)nl.hard, (unsigned long long)nl.before);
    /* Every client connection is a socket, and a blob download or a cached
     * blob being sent holds a file besides. */
    if (nl.after != UINT64_MAX && connections > nl.after / 2)
        LOG(WARN, comp,
            "msg=\"open-file limit is low for max-connections\" nofile=%llu max_connections=%llu "
            "hint=\"raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower max-connections\"",
            (unsigned long long)nl.after, (unsigned long long)connections);
    return rc;
}
