/* Repository prefixes of upstreams (upstream_prefix.h). */
#include "upstream/upstream_prefix.h"

#include <stdio.h>
#include <string.h>

#include "shoal/error.h"

int upstream_prefix_repo(const char *prefix, const char *repo, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s", prefix ? prefix : "", repo);

    return n < 0 || (size_t)n >= outlen ? SHOAL_ETOOBIG : 0;
}

int upstream_prefix_path(const char *prefix, const char *repo, const char *path, char *out,
                         size_t outlen)
{
    size_t rl = strlen(repo);
    int n;

    if (prefix && prefix[0] && rl > 0 && strncmp(path, "/v2/", 4) == 0 &&
        strncmp(path + 4, repo, rl) == 0 && path[4 + rl] == '/')
        n = snprintf(out, outlen, "/v2/%s%s", prefix, path + 4);
    else
        n = snprintf(out, outlen, "%s", path);
    return n < 0 || (size_t)n >= outlen ? SHOAL_ETOOBIG : 0;
}

bool upstream_prefix_unpath(const char *prefix, const char *repo, const char *in, char *out,
                            size_t outlen)
{
    char want[512];
    const char *at;
    int n;

    n = snprintf(want, sizeof(want), "/v2/%s%s/", prefix ? prefix : "", repo);
    at = n > 0 && (size_t)n < sizeof(want) && prefix && prefix[0] ? strstr(in, want) : NULL;
    if (!at) {
        n = snprintf(out, outlen, "%s", in);
        if (n < 0 || (size_t)n >= outlen)
            out[0] = '\0';
        return false;
    }
    n = snprintf(out, outlen, "%.*s/v2/%s/%s", (int)(at - in), in, repo, at + strlen(want));
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen)
            out[0] = '\0';
        return false;
    }
    return true;
}
