/* shoal-tracker option table and the checks beyond single values. */
#include "tracker_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/wire.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static const char usage_text[] =
    "shoal-tracker [--config FILE] [--listen ADDR:PORT] [--cluster-secret-file FILE] [options]";

#define OPT(name, type, member, min, max, def, help)                                               \
    {                                                                                              \
        name, type, offsetof(struct tracker_config, member), min, max, def, help, NULL, NULL       \
    }

const struct config_option tracker_options[] = {
    {"config", CONFIG_STRING, 0, 0, 0, NULL,
     "JSON config file whose keys are the options below; flags override it", NULL, NULL},
    OPT("listen", CONFIG_ADDR, listen, 0, 0, "127.0.0.1:5090",
        "address the tracker API listens on; loopback unless given (agents on other hosts need "
        "e.g. 0.0.0.0:5090)"),
    OPT("cluster-secret-file", CONFIG_STRING, cluster_secret_file, 0, 0, NULL,
        "file holding the secret shared with the agents (one trailing newline dropped); "
        "required unless --insecure-no-secret"),
    OPT("insecure-no-secret", CONFIG_BOOL, insecure_no_secret, 0, 0, "false",
        "run without a cluster secret: anyone who reaches the tracker can announce, take leases "
        "and report peers (for tests; logged as a warning at start and every minute)"),
    OPT("log-level", CONFIG_LEVEL, log_level, 0, 0, "info", "debug, info, warn or error"),
    OPT("interval", CONFIG_DURATION, interval_ms, 100, 5 * MIN, "1s",
        "how often agents in a swarm announce"),
    OPT("peer-timeout", CONFIG_DURATION, peer_timeout_ms, SEC, HOUR, "10s",
        "a peer that has not announced for this long leaves its swarms and loses its leases"),
    OPT("lease-pieces", CONFIG_INT, lease_pieces, 1, ANNOUNCE_LEASE_MAX, "8",
        "consecutive pieces in one upstream lease"),
    OPT("lease-timeout", CONFIG_DURATION, lease_timeout_ms, SEC, HOUR, "30s",
        "a lease ends this long after it was granted or its holder last reported a hash for it"),
    OPT("max-peers", CONFIG_INT, max_peers, 1, ANNOUNCE_PEERS_MAX, "30",
        "peers in one announce reply"),
    OPT("piece-length", CONFIG_SIZE, piece_length, 0, WIRE_PIECE_LENGTH_MAX, "0",
        "force this piece length (a power of two from 256KiB to 256MiB) for new swarms; 0 = "
        "the size rule of docs/protocol.md (\"Pieces\")"),
    OPT("hash-algo", CONFIG_STRING, hash_algo_name, 0, 0, "xxh3-128",
        "piece hash: xxh3-128 or sha256"),
    OPT("swarm-keep", CONFIG_DURATION, swarm_keep_ms, SEC, 7 * 24 * HOUR, "1h",
        "how long a swarm's piece hashes are kept after its last peer left"),
    OPT("bad-peer-time", CONFIG_DURATION, bad_peer_time_ms, 0, (int64_t)TRACKER_MAX_BAD_PEER_MS,
        "5m",
        "a peer address an agent reported for sending a piece that failed its hash is left out "
        "of every peer list of that swarm for this long; 0 = reports are only counted and logged"),
    OPT("max-connections", CONFIG_INT, max_connections, 1, 100000, "4096",
        "agent connections served at once"),
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

static int read_secret(struct tracker_config *cfg, char *err, size_t errlen)
{
    char *data = NULL;
    size_t n = 0;
    int rc =
        config_read_secret("cluster-secret-file", cfg->cluster_secret_file, &data, &n, err, errlen);
    if (rc < 0)
        return rc;
    free(cfg->secret);
    cfg->secret = data;
    cfg->secret_len = n;
    return 0;
}

int tracker_config_load(struct tracker_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    rc = config_load(tracker_options, cfg, "shoal-tracker", usage_text, argc, argv, err, errlen);
    if (rc != CONFIG_RUN)
        return rc;

    if (cfg->piece_length != 0 && !wire_piece_length_valid(cfg->piece_length)) {
        snprintf(err, errlen,
                 "config: \"piece-length\": %llu is not 0 or a power of two from 256KiB to 256MiB",
                 (unsigned long long)cfg->piece_length);
        return SHOAL_ECONFIG;
    }
    if (wire_hash_algo_parse(cfg->hash_algo_name, &cfg->hash_algo) < 0) {
        char q[CONFIG_QUOTE_MAX + 8];
        snprintf(err, errlen,
                 "config: \"hash-algo\": unknown algorithm \"%s\" (expected "
                 "xxh3-128 or sha256)",
                 config_quote(cfg->hash_algo_name ? cfg->hash_algo_name : "", q, sizeof(q)));
        return SHOAL_ECONFIG;
    }
    if (cfg->cluster_secret_file != NULL && cfg->insecure_no_secret) {
        snprintf(err, errlen,
                 "config: \"cluster-secret-file\" and \"insecure-no-secret\" are mutually "
                 "exclusive");
        return SHOAL_ECONFIG;
    }
    if (cfg->cluster_secret_file == NULL && !cfg->insecure_no_secret) {
        snprintf(err, errlen,
                 "config: \"cluster-secret-file\" is required: without a cluster secret anyone "
                 "who reaches the tracker can join every swarm; give --cluster-secret-file FILE, "
                 "or --insecure-no-secret to run open (tests only)");
        return SHOAL_ECONFIG;
    }
    if (cfg->cluster_secret_file != NULL) {
        rc = read_secret(cfg, err, errlen);
        if (rc < 0)
            return rc;
    }
    return CONFIG_RUN;
}

void tracker_config_dispose(struct tracker_config *cfg)
{
    config_dispose(tracker_options, cfg);
    if (cfg->secret != NULL) {
        /* Not a strong guarantee, but the secret need not linger in freed
         * memory either. */
        memset(cfg->secret, 0, cfg->secret_len);
        free(cfg->secret);
    }
    cfg->secret = NULL;
    cfg->secret_len = 0;
}

void tracker_config_swarms(const struct tracker_config *cfg, struct tracker_swarms_config *out)
{
    memset(out, 0, sizeof(*out));
    out->interval_ms = (uint64_t)cfg->interval_ms;
    out->peer_timeout_ms = (uint64_t)cfg->peer_timeout_ms;
    out->lease_timeout_ms = (uint64_t)cfg->lease_timeout_ms;
    out->keep_ms = (uint64_t)cfg->swarm_keep_ms;
    out->lease_pieces = (unsigned)cfg->lease_pieces;
    out->max_peers = (unsigned)cfg->max_peers;
    out->piece_length = cfg->piece_length;
    out->hash_algo = cfg->hash_algo;
    out->bad_peer_ms = (uint64_t)cfg->bad_peer_time_ms;
    out->bad_peer_off = cfg->bad_peer_time_ms == 0;
}
