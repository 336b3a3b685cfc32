/* shoal-tracker configuration: the option table and the struct it fills. */
#ifndef SHOAL_TRACKER_CONFIG_H
#define SHOAL_TRACKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "push_rules.h"
#include "shoal/config.h"
#include "shoal/tls.h"
#include "state.h"
#include "swarm.h"

struct tracker_config {
    char *listen;
    char *admin_listen; /* metrics, health, readiness; NULL = off */
    char *cluster_secret_file;
    bool insecure_no_secret;
    char *state;               /* "memory" or redis://HOST[:PORT][/DB] */
    char *state_password_file; /* Redis AUTH password */
    char *state_prefix;
    int64_t state_timeout_ms;
    int log_level;
    int64_t interval_ms;
    int64_t peer_timeout_ms;
    int64_t lease_pieces;
    int64_t lease_spread;
    int64_t lease_timeout_ms;
    int64_t max_peers;
    uint64_t piece_length;
    char *hash_algo_name;
    int64_t swarm_keep_ms;
    int64_t bad_peer_time_ms;
    int64_t bad_peer_reporters;
    int64_t max_swarms_per_agent;
    int64_t max_connections;
    /* cluster: inventory and jobs */
    int64_t agent_timeout_ms;
    int64_t job_keep_ms;
    int64_t job_timeout_ms;
    int64_t job_contact_timeout_ms;
    int64_t job_poll_interval_ms;
    int64_t max_jobs;
    /* Harbor and registries */
    char *provider_auth;
    char *provider_token_file;
    char *provider_auth_header;
    char *harbor_selector_text;
    char *harbor_seed_selector_text;
    char *webhook_auth_file;
    struct push_rules push_rules;
    /* TLS on the API listener (docs/protocol.md, "TLS"); the admin listener
     * stays plaintext */
    char *tls_mode_name;
    char *tls_ca;
    char *tls_cert;
    char *tls_key;
    char *tls_ciphersuites;

    /* Derived by tracker_config_load. */
    enum tls_mode tls_mode;
    enum wire_hash_algo hash_algo;
    char *secret; /* the file's contents less one trailing newline; "" without a file */
    size_t secret_len;
    char *state_password; /* state-password-file's contents; NULL without */
    size_t state_password_len;
    enum harbor_auth_mode provider_mode;
    char *provider_token; /* provider-token-file's contents; NULL without */
    size_t provider_token_len;
    char *webhook_auth; /* webhook-auth-file's contents; NULL without */
    size_t webhook_auth_len;
    struct tracker_selector harbor_selector;
    struct tracker_selector harbor_seed_selector;
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

/* The inventory's and the jobs' settings. */
void tracker_config_cluster(const struct tracker_config *cfg, struct tracker_cluster_config *out);

#endif
