/* shoal-tracker configuration: the option table and the struct it fills. */
#ifndef SHOAL_TRACKER_CONFIG_H
#define SHOAL_TRACKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/config.h"
#include "swarm.h"

struct tracker_config {
    char *listen;
    char *cluster_secret_file;
    bool insecure_no_secret;
    int log_level;
    int64_t interval_ms;
    int64_t peer_timeout_ms;
    int64_t lease_pieces;
    int64_t lease_timeout_ms;
    int64_t max_peers;
    uint64_t piece_length;
    char *hash_algo_name;
    int64_t swarm_keep_ms;
    int64_t bad_peer_time_ms;
    int64_t max_connections;

    /* Derived by tracker_config_load. */
    enum wire_hash_algo hash_algo;
    char *secret; /* the file's contents less one trailing newline; "" without a file */
    size_t secret_len;
};

/* The tracker's option table (ends with a NULL name). */
extern const struct config_option tracker_options[];

/* Loads defaults, --config and argv, then checks the rules that span or
 * refine options (piece-length a power of two, hash-algo, the secret file,
 * which is required unless insecure-no-secret).
 * Returns what config_load returns; on error err names the key. Call
 * tracker_config_dispose afterwards in every case. */
int tracker_config_load(struct tracker_config *cfg, int argc, char **argv, char *err,
                        size_t errlen);

void tracker_config_dispose(struct tracker_config *cfg);

/* The core's settings from the loaded configuration. */
void tracker_config_swarms(const struct tracker_config *cfg, struct tracker_swarms_config *out);

#endif
