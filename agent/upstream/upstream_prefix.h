/* The repository prefix of an upstream (upstreams[].repo-prefix): a Harbor
 * proxy-cache project or an Artifactory remote keeps Docker Hub's
 * library/alpine as proxy-dockerhub/library/alpine. Requests to such an
 * upstream name the prefixed repository (paths of manifests, blobs, tags
 * and referrers, and with them token scopes); clients keep seeing their
 * own name, so what comes back that names the repository (a tags list's
 * "name", its Link header) loses the prefix again.
 *
 * Pure functions of their arguments; a prefix here is NULL or "" (none) or
 * normalised: a valid repository name followed by one '/' (agent_config
 * makes sure, agent_config_repo_prefix).
 */
#ifndef SHOAL_UPSTREAM_PREFIX_H
#define SHOAL_UPSTREAM_PREFIX_H

#include <stdbool.h>
#include <stddef.h>

/* The upstream's name for repo: prefix + repo. 0 or SHOAL_ETOOBIG. */
int upstream_prefix_repo(const char *prefix, const char *repo, char *out, size_t outlen);

/* The upstream's path for a request path: "/v2/<repo>/..." becomes
 * "/v2/<prefix><repo>/..."; any other path ("/v2/") is copied as is.
 * 0 or SHOAL_ETOOBIG. */
int upstream_prefix_path(const char *prefix, const char *repo, const char *path, char *out,
                         size_t outlen);

/* The client's path for an upstream path or URL reference (a Link header
 * of a tags list: </v2/<prefix><repo>/tags/list?n=..>; rel="next"): the
 * first "/v2/<prefix><repo>/" becomes "/v2/<repo>/". Returns true when it
 * rewrote something (out holds the result), false when there was nothing
 * to rewrite or it does not fit (out is then a copy of in when it fits,
 * else ""). */
bool upstream_prefix_unpath(const char *prefix, const char *repo, const char *in, char *out,
                            size_t outlen);

#endif
