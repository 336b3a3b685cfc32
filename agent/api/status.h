/* GET /_shoal/status: what this agent is and holds, for `shoalctl status`
 * (docs/protocol.md, "Agent status"): node name, version, labels, mirror
 * URL, the tracker and whether the registration is current, the cache, the
 * swarms, prewarm jobs and the configured upstreams (host, URL and whether
 * credentials are configured, in the upstream entry or in the node's
 * docker-config / pull-secrets-dir files, and which file; never the
 * credentials themselves).
 */
#ifndef SHOAL_STATUS_H
#define SHOAL_STATUS_H

#include <stdint.h>

#include <uv.h>

#include "cache/store.h"
#include "config/agent_config.h"
#include "shoal/buf.h"

struct swarm;
struct prewarm;
struct registration;
struct node_creds;

/* All borrowed; the optional ones may be NULL. */
struct status_deps {
    uv_loop_t *loop;
    const struct agent_config *cfg;
    const char *version;
    const char *mirror_url;
    struct store *store;
    struct swarm *swarm;
    struct prewarm *prewarm;
    struct registration *reg;
    const struct node_creds *creds; /* docker-config and pull-secrets-dir */
};

/* Appends the status JSON to out; returns the HTTP status (200, or 503
 * when out of memory). */
int status_http(const struct status_deps *d, struct buf *out);

#endif
