/* shoal-agent configuration: the option table and the struct it fills. */
#ifndef SHOAL_AGENT_CONFIG_H
#define SHOAL_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shoal/agent_info.h"
#include "shoal/config.h"
#include "shoal/tls.h"

/* One upstream registry. Strings owned by the struct. */
struct upstream_def {
    char *host;          /* the name clients use: "docker.io", "127.0.0.1:5000" */
    char *url;           /* base URL without trailing slash: "https://registry-1.docker.io" */
    char *username;      /* Basic credentials (also sent to a Bearer token realm), or NULL */
    char *password;      /* password, or NULL */
    char *password_file; /* file holding the password (trailing newline dropped), or NULL */
    char *ca_file;       /* PEM CA bundle for TLS, or NULL for the system store */
    bool insecure;       /* skip TLS verification: tests only */
    /* Where the upstream keeps the repositories clients name: a Harbor
     * proxy-cache project or an Artifactory remote, "proxy-dockerhub/"
     * (normalised: one trailing '/'), or NULL. upstream/upstream_prefix.h. */
    char *repo_prefix;
    /* Set only on a prewarm job's copy (agent/upstream/job_creds.h), never
     * by the configuration: */
    char *authorization; /* an Authorization value sent as is ("Bearer <token>"), or NULL */
    char *auth_ns;       /* the credential namespace its tokens are cached under, or NULL */
    /* Token realms (base URLs) that may receive the Basic credentials besides
     * those the default rule allows (upstream_auth_realm_trust): the
     * operator's word for a token service on another origin. */
    char **token_realms;
    size_t ntoken_realms;
    /* Set on the entries agent_config_upstream makes up for hosts nobody
     * configured (upstream-allow-unlisted): whoever names such a host may
     * control it, so its word that a repository holds a digest is not
     * enough to serve bytes that came from elsewhere. */
    bool unlisted;
};

/* Longest repo-prefix, its trailing '/' included. */
#define AGENT_REPO_PREFIX_MAX 128

/* Normalises a repo-prefix into out: leading and trailing slashes dropped,
 * one '/' appended; "" stays "" (no prefix). 0, or SHOAL_EPARSE when the
 * rest is not a repository name (OCI grammar) or is longer than
 * AGENT_REPO_PREFIX_MAX allows. */
int agent_config_repo_prefix(const char *in, char *out, size_t outlen);

/* Deep copy of src into dst (strings duplicated). 0 or -ENOMEM (dst then
 * holds nothing). */
int upstream_def_copy(struct upstream_def *dst, const struct upstream_def *src);
/* Frees the strings of d (wiping the secrets first) and zeroes it. */
void upstream_def_dispose(struct upstream_def *d);

struct upstream_list {
    struct upstream_def *defs;
    size_t n;
};

struct agent_config {
    char *listen;
    char *admin_listen; /* metrics, health, readiness; NULL = off */
    char *data_dir;
    char *upstream; /* default upstream URL */
    int log_level;
    uint64_t cache_max_bytes;
    int64_t cache_high_pct;
    int64_t cache_low_pct;
    char *cache_group; /* who may read the cache besides the agent, or NULL */
    gid_t cache_gid;   /* derived from cache_group */
    int64_t tag_cache_ttl_ms;
    int64_t tag_stale_max_ms;
    int64_t repo_check_ttl_ms;
    int64_t repo_check_ahead;
    int64_t blob_prefetch_max;
    int64_t upstream_retries;
    int64_t upstream_retry_max_ms;
    int64_t upstream_timeout_ms;
    bool upstream_allow_unlisted;
    uint64_t max_header_bytes;
    int64_t header_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t max_connections;
    struct upstream_list upstreams;
    /* node credentials (upstream/node_creds.h) */
    char *docker_config;
    char *pull_secrets_dir;
    int64_t credentials_check_interval_ms;
    /* swarm */
    char *tracker;         /* tracker URL; NULL = no peer-to-peer */
    bool tracker_optional; /* readiness does not wait for the tracker */
    char *peer_listen;
    char *advertise;
    char *cluster_secret_file;
    bool insecure_no_secret; /* run the swarm without a secret (tests) */
    char *secret;            /* the file's contents less one trailing newline */
    size_t secret_len;
    int64_t swarm_stall_timeout_ms;
    int64_t seed_time_ms;
    int64_t swarm_max_peers;
    int64_t swarm_reader_window;
    int64_t ban_time_ms;
    uint64_t swarm_min_size;
    uint64_t ingress_rate; /* bytes per second, 0 = unlimited */
    uint64_t egress_rate;
    /* TLS on the peer port and to the tracker (docs/protocol.md, "TLS") */
    char *tls_mode_name;
    char *tls_ca;
    char *tls_cert;
    char *tls_key;
    char *tls_ciphersuites;
    enum tls_mode tls_mode; /* parsed from tls_mode_name */
    /* cluster inventory */
    char *node_name; /* defaults to the host name */
    char *labels_text;
    char *mirror_url; /* NULL = derived, see agent_config_mirror_url */
    int64_t register_interval_ms;
    struct agent_label labels[AGENT_LABELS_MAX]; /* parsed from labels_text */
    size_t nlabels;
};

/* The agent's option table (ends with a NULL name). */
extern const struct config_option agent_options[];

/* Loads the agent configuration from defaults, --config and argv, then
 * checks cross-field rules (watermarks, upstream URLs, password files).
 * Returns what config_load returns; on error err holds a message naming the
 * key. Call agent_config_dispose afterwards in every case. */
int agent_config_load(struct agent_config *cfg, int argc, char **argv, char *err, size_t errlen);

void agent_config_dispose(struct agent_config *cfg);

/* Reads the password-file of every upstream that has one again (SIGHUP, or
 * a change seen by the credential watcher). All or nothing: on error no
 * password changes and err names the file. 1 when a password changed, 0
 * when none did, SHOAL_ECONFIG or -ENOMEM. */
int agent_config_reload_passwords(struct agent_config *cfg, char *err, size_t errlen);

/* The URL the tracker uses to reach this agent's mirror and prewarm API:
 * mirror-url when set; else the listen address with port (the bound one,
 * when listen asked for port 0), its host replaced by the advertise host
 * (or this host's name) when listen has a wildcard host. 0 or SHOAL_ETOOBIG. */
int agent_config_mirror_url(const struct agent_config *cfg, int bound_port, char *out,
                            size_t outlen);

/* Finds the upstream a client named by host (NULL host = the default
 * upstream). Looks in the configured list first; "docker.io" maps to
 * https://registry-1.docker.io; other hosts are reached over https when
 * upstream-allow-unlisted is on, with `unlisted` set. The result is borrowed from cfg or from
 * `scratch`, which the caller provides and which lives as long as the result.
 * Returns NULL when the host is not allowed. */
const struct upstream_def *agent_config_upstream(const struct agent_config *cfg, const char *host,
                                                 struct upstream_def *scratch, char *scratch_url,
                                                 size_t urllen);

#endif
