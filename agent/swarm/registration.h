/* The agent's entry in the tracker's inventory (docs/protocol.md, "POST
 * /v1/agents"): registers at start and heartbeats every interval with what
 * the agent is (node name, mirror URL, peer address, labels, version) and
 * how full its cache is, signed with the cluster secret like announces
 * (tracker_client_auth_header). The tracker forgets an agent that stops
 * heartbeating; a tracker that restarted learns it again at the next beat.
 * A failed beat is logged once per change of outcome and retried at the
 * next interval. With several tracker replicas a beat goes where the
 * tracker client's rules send it (tracker_client.h): the preferred replica,
 * the next one when that fails.
 */
#ifndef SHOAL_REGISTRATION_H
#define SHOAL_REGISTRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cache/store.h"
#include "shoal/agent_info.h"
#include "shoal/http_client.h"

struct registration;

struct registration_config {
    const char *tracker_urls; /* "http://tracker:5090[,URL...]" (copied) */
    const void *secret;       /* cluster secret (copied), may be empty */
    size_t secret_len;
    /* The fixed part of every beat: name, mirror_url, peer_addr, version,
     * labels (copied). The cache figures are filled in at each beat. */
    const struct agent_info *info;
    uint64_t interval_ms;
    struct store *store; /* borrowed; the cache figures */
    uint64_t cache_max_bytes;
    /* Prewarm jobs in progress, from the layer above (may be NULL). */
    size_t (*prewarm_running)(void *arg);
    void *prewarm_arg;
};

/* What /_shoal/status shows. */
struct registration_status {
    bool registered;      /* the last beat was accepted */
    uint64_t beats;       /* beats sent */
    uint64_t failures;    /* beats that failed */
    uint64_t last_ok_ms;  /* loop time of the last accepted beat, 0 if none */
    char last_error[256]; /* why the last beat failed, "" after a success */
};

/* Creates the module and sends the first beat on the next loop turn. loop
 * and hc are borrowed and must outlive it. 0, SHOAL_ECONFIG (info or the
 * URL list invalid) or -ENOMEM. */
int registration_create(uv_loop_t *loop, struct http_client *hc,
                        const struct registration_config *cfg, struct registration **out);

/* Stops beating and cancels a beat in flight; the module is freed once its
 * timer has closed (run the loop). Destroy before the http client. NULL-safe. */
void registration_destroy(struct registration *r);

const struct registration_status *registration_status(const struct registration *r);

#endif
