/* Peer-to-peer downloads, the libuv shell (docs/protocol.md): one `struct
 * swarm` per agent holds the tracker client, the peer listener, the ban list
 * and the counters; one `struct swarm_dl` per blob being downloaded or
 * seeded runs a pure swarm core (swarm_core.h) and carries out what it
 * decides: announces, peer connections, piece requests and answers, upstream
 * lease fetches.
 *
 * A swarm_dl writes verified pieces into the owner's partial blob: pieces of
 * its upstream lease fetched with Range requests (their hashes reported to
 * the tracker), the others from peers, each checked against the tracker's
 * piece hash (never the sender's). The partial blob hashes the contiguous
 * prefix and releases it to clients. When the swarm cannot go on (tracker
 * unreachable at the start, no progress for stall-timeout), on_end(rc < 0)
 * fires and the owner falls back to upstream.
 */
#ifndef SHOAL_SWARM_H
#define SHOAL_SWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cache/partial.h"
#include "config/agent_config.h"
#include "shoal/http_client.h"
#include "shoal/oci.h"
#include "shoal/ratelimit.h"
#include "swarm/swarm_core.h"
#include "upstream/upstream.h"

struct swarm;
struct swarm_dl;

struct swarm_config {
    const char *tracker_urls; /* "URL,URL,...": the tracker's replicas (tracker_client.h) */
    const void *secret;       /* cluster secret (copied), may be empty */
    size_t secret_len;
    const char *peer_listen; /* "0.0.0.0:5081" */
    const char *advertise;   /* the address peers dial; NULL = peer_listen's */
    uint64_t stall_timeout_ms;
    uint64_t seed_time_ms;  /* keep serving a completed blob this long */
    unsigned max_peers;     /* connections per blob */
    unsigned reader_window; /* see swarm_core_config */
    uint64_t ban_time_ms;
    uint64_t min_size;         /* smaller blobs are not worth a swarm */
    struct ratelimit *ingress; /* upstream and peer bytes in; borrowed, NULL = unlimited */
    struct ratelimit *egress;  /* piece bytes out to peers; borrowed, NULL = unlimited */
    struct tls_context *tls;   /* TLS on the peer wire; borrowed, NULL = plaintext */
};

int swarm_create(uv_loop_t *loop, struct http_client *hc, struct upstream *up,
                 const struct swarm_config *cfg, struct swarm **out);
/* Stops every download and seed and closes the listener; frees the swarm
 * once all handles are closed (run the loop). */
void swarm_destroy(struct swarm *s);
const struct swarm_stats *swarm_stats(const struct swarm *s);
/* True if a blob of this size should go through the swarm. */
bool swarm_wants(const struct swarm *s, uint64_t size);
/* The bound peer port. */
int swarm_peer_port(const struct swarm *s);

struct swarm_dl_ops {
    /* At most once: the swarm cannot deliver (rc < 0); fetch the rest from
     * upstream. Call swarm_dl_finish from here or later. */
    void (*on_end)(void *arg, int rc);
};

/* Starts a swarm download into pb, a partial blob that is ready (its resume
 * check done) and not streaming. pb, ops and arg are borrowed until
 * swarm_dl_finish; def and repo are copied. */
int swarm_dl_start(struct swarm *s, struct partial_blob *pb, const struct upstream_def *def,
                   const char *repo, const struct swarm_dl_ops *ops, void *arg,
                   struct swarm_dl **out);

/* The owner is done with the download (after on_end, or to abandon it, or
 * because the partial blob completed). seed: the blob is committed; keep
 * serving it to peers for seed-time from the partial's descriptor (which
 * the swarm duplicated at the start). No callback fires after this, and pb
 * is not touched again. */
void swarm_dl_finish(struct swarm_dl *dl, bool seed);

#endif
