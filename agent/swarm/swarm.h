/* Peer-to-peer downloads (docs/protocol.md): one `struct swarm` per agent
 * holds the tracker client and the peer listener; one `struct swarm_dl` per
 * blob being downloaded or seeded.
 *
 * A swarm_dl writes verified pieces into the caller's partial file: pieces
 * of its upstream lease fetched with Range requests (their hashes reported
 * to the tracker), the others from peers, each checked against the
 * tracker's piece hash (never the sender's). The contiguous verified prefix
 * is fed, in order, to the caller's whole-blob hash and reported through
 * on_prefix. When every byte is hashed, on_end(0) fires and the caller checks
 * the digest and commits; when the swarm cannot go on (tracker unreachable
 * at the start, no progress for stall-timeout), on_end(rc < 0) fires and the
 * caller falls back to upstream from the last reported prefix.
 */
#ifndef SHOAL_SWARM_H
#define SHOAL_SWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/agent_config.h"
#include "shoal/hash.h"
#include "shoal/http_client.h"
#include "shoal/oci.h"
#include "shoal/ratelimit.h"
#include "upstream/upstream.h"

struct swarm;
struct swarm_dl;

struct swarm_config {
    const char *tracker_url;
    const void *secret; /* cluster secret (copied), may be empty */
    size_t secret_len;
    const char *peer_listen; /* "0.0.0.0:5081" */
    const char *advertise;   /* the address peers dial; NULL = peer_listen's */
    uint64_t stall_timeout_ms;
    uint64_t seed_time_ms; /* keep serving a completed blob this long */
    unsigned max_peers;    /* connections per blob */
    uint64_t ban_time_ms;
    uint64_t min_size;         /* smaller blobs are not worth a swarm */
    struct ratelimit *ingress; /* upstream and peer bytes in; borrowed, NULL = unlimited */
    struct ratelimit *egress;  /* piece bytes out to peers; borrowed, NULL = unlimited */
};

struct swarm_stats {
    uint64_t peer_rx_bytes;
    uint64_t peer_tx_bytes;
    uint64_t pieces_verified;
    uint64_t pieces_rejected;
    uint64_t swarms_active;
    uint64_t fallbacks;
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
    /* The verified prefix [0, hashed) is on disk and fed to the hash. */
    void (*on_prefix)(void *arg, uint64_t hashed);
    /* Exactly once: 0 when every byte is hashed, else the reason to fall back. */
    void (*on_end)(void *arg, int rc);
};

/* Starts a swarm download of d (size bytes) into fd, feeding hash, whose
 * state must cover exactly [0, start) (a resumed prefix). fd, hash, ops/arg
 * are borrowed until on_end; def and repo are copied. */
int swarm_dl_start(struct swarm *s, const struct oci_digest *d, uint64_t size, uint64_t start,
                   int fd, struct hash_ctx *hash, const struct upstream_def *def, const char *repo,
                   const struct swarm_dl_ops *ops, void *arg, struct swarm_dl **out);

/* The caller is done with the download (after on_end, or to abandon it).
 * seed_fd >= 0 (duplicated here) keeps the blob served to peers for
 * seed-time; -1 leaves the swarm. No callback fires after this. */
void swarm_dl_finish(struct swarm_dl *dl, int seed_fd);

#endif
