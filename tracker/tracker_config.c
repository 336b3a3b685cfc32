/* shoal-tracker option table and the checks beyond single values. */
#include "tracker_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shoal/error.h"
#include "shoal/wire.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static int push_rules_option(void *field, json_t *value, char *err, size_t errlen);
static void push_rules_option_free(void *field);

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
    OPT("admin-listen", CONFIG_STRING, admin_listen, 0, 0, "127.0.0.1:5092",
        "address of the admin listener: /metrics, /healthz (liveness) and /readyz (readiness), "
        "always plaintext; with tls-mode psk or mtls also Harbor's and registries' endpoints "
        "(their own credentials), which cannot speak the cluster's TLS; \"off\" or \"\" turns "
        "it off"),
    OPT("cluster-secret-file", CONFIG_STRING, cluster_secret_file, 0, 0, NULL,
        "file holding the secret shared with the agents (one trailing newline dropped); "
        "required unless --insecure-no-secret"),
    OPT("insecure-no-secret", CONFIG_BOOL, insecure_no_secret, 0, 0, "false",
        "run without a cluster secret: anyone who reaches the tracker can announce, take leases "
        "and report peers (for tests; logged as a warning at start and every minute)"),
    OPT("tls-mode", CONFIG_STRING, tls_mode_name, 0, 0, "off",
        "TLS 1.3 on the listen port: off, psk (a key derived from the cluster secret) or mtls "
        "(certificates from the cluster CA: tls-ca, tls-cert, tls-key); every agent uses the "
        "same mode with an https:// tracker URL"),
    OPT("tls-ca", CONFIG_STRING, tls_ca, 0, 0, NULL,
        "mtls: PEM file with the cluster CA, the only CA agents' certificates are checked "
        "against"),
    OPT("tls-cert", CONFIG_STRING, tls_cert, 0, 0, NULL,
        "mtls: PEM certificate (chain) of the tracker, issued by the cluster CA, naming the "
        "host agents put in their tracker URL"),
    OPT("tls-key", CONFIG_STRING, tls_key, 0, 0, NULL, "mtls: PEM private key of tls-cert"),
    OPT("tls-ciphersuites", CONFIG_STRING, tls_ciphersuites, 0, 0, TLS_CIPHERSUITES_DEFAULT,
        "TLS 1.3 cipher suites, most preferred first (psk allows the SHA-256 ones only)"),
    OPT("log-level", CONFIG_LEVEL, log_level, 0, 0, "info", "debug, info, warn or error"),
    OPT("state", CONFIG_STRING, state, 0, 0, "memory",
        "where swarms, piece hashes and leases live: memory (this process only), or "
        "redis://HOST[:PORT][/DB], shared by every tracker replica pointed at it "
        "(docs/operations.md)"),
    OPT("state-password-file", CONFIG_STRING, state_password_file, 0, 0, NULL,
        "file holding the Redis password (AUTH; one trailing newline dropped)"),
    OPT("state-prefix", CONFIG_STRING, state_prefix, 0, 0,
        "shoal:", "prefix of every Redis key, so several clusters can share one Redis"),
    OPT("state-timeout", CONFIG_DURATION, state_timeout_ms, 100, MIN, "2s",
        "a Redis command unanswered this long drops the connection (announces get 503 until it "
        "is back)"),
    OPT("interval", CONFIG_DURATION, interval_ms, 100, 5 * MIN, "1s",
        "how often agents in a swarm announce"),
    OPT("peer-timeout", CONFIG_DURATION, peer_timeout_ms, SEC, HOUR, "10s",
        "a peer that has not announced for this long leaves its swarms and loses its leases"),
    OPT("lease-pieces", CONFIG_INT, lease_pieces, 1, ANNOUNCE_LEASE_MAX, "8",
        "most consecutive pieces in one upstream lease"),
    OPT("lease-spread", CONFIG_INT, lease_spread, 1, TRACKER_MAX_LEASE_SPREAD, "32",
        "a lease holds at most ceil(pieces / lease-spread) of a blob's pieces (and at most "
        "lease-pieces), so a blob of fewer than lease-pieces x lease-spread pieces is fetched "
        "from upstream in half to all of this many leases, one piece each when it has fewer: "
        "its first askers each fetch a part, and a layer of a few pieces has several first holders "
        "to copy "
        "from, not one; 1 = every lease holds lease-pieces (fewer upstream requests)"),
    OPT("lease-timeout", CONFIG_DURATION, lease_timeout_ms, SEC, HOUR, "30s",
        "a lease ends this long after it was granted or its holder last reported a hash for it"),
    OPT("max-peers", CONFIG_INT, max_peers, 1, ANNOUNCE_PEERS_MAX, "30",
        "peers in one announce reply"),
    OPT("piece-length", CONFIG_SIZE, piece_length, 0, WIRE_PIECE_LENGTH_MAX, "0",
        "force this piece length (a power of two from 256KiB to 256MiB) for new swarms; 0 = "
        "the size rule of docs/protocol.md (\"Pieces\")"),
    OPT("hash-algo", CONFIG_STRING, hash_algo_name, 0, 0, "sha256",
        "piece hash: sha256, or xxh3-128 (faster, but a member of the cluster can forge "
        "pieces that pass it: docs/protocol.md)"),
    OPT("swarm-keep", CONFIG_DURATION, swarm_keep_ms, SEC, 7 * 24 * HOUR, "1h",
        "how long a swarm's piece hashes are kept after its last peer left"),
    OPT("bad-peer-time", CONFIG_DURATION, bad_peer_time_ms, 0, (int64_t)TRACKER_MAX_BAD_PEER_MS,
        "5m",
        "a peer address an agent reported for sending a piece that failed its hash is left out "
        "of every peer list of that swarm for this long; 0 = reports are only counted and logged"),
    OPT("bad-peer-reporters", CONFIG_INT, bad_peer_reporters, 1, 4, "2",
        "distinct agents that must report a peer before it is left out of peer lists: one "
        "agent's word is not enough to hide a peer from everyone"),
    OPT("max-swarms-per-agent", CONFIG_INT, max_swarms_per_agent, 1, 100000, "1000",
        "swarms one agent may start and still be in; beyond, its announces for new blobs get "
        "503 (announces for made-up digests cannot fill the swarm table)"),
    OPT("max-connections", CONFIG_INT, max_connections, 1, 100000, "4096",
        "agent connections served at once"),
    OPT("agent-timeout", CONFIG_DURATION, agent_timeout_ms, SEC, HOUR, "30s",
        "an agent that has not heartbeat for this long leaves the inventory, and its unfinished "
        "job tasks fail"),
    OPT("job-keep", CONFIG_DURATION, job_keep_ms, MIN, 7 * 24 * HOUR, "2h",
        "how long a finished job stays readable (Harbor polls for up to 30 minutes)"),
    OPT("job-timeout", CONFIG_DURATION, job_timeout_ms, SEC, 7 * 24 * HOUR, "1h",
        "a job not finished after this long fails (a job request may ask for less or more)"),
    OPT("job-contact-timeout", CONFIG_DURATION, job_contact_timeout_ms, SEC, HOUR, "30s",
        "a job task fails when its agent has not answered for this long"),
    OPT("job-poll-interval", CONFIG_DURATION, job_poll_interval_ms, 100, MIN, "1s",
        "how often the tracker asks each agent how its job is going"),
    OPT("max-jobs", CONFIG_INT, max_jobs, 1, TRACKER_JOBS_MAX, "10000",
        "jobs kept at once (the oldest finished go first)"),
    OPT("provider-auth", CONFIG_STRING, provider_auth, 0, 0, "oauth",
        "how Harbor's P2P provider calls (/oapi/v1/jobs, /registry/notifications) authenticate: "
        "none, basic (provider-token-file holds user:password), oauth (Authorization: Bearer "
        "<provider-token-file>) or custom (the header provider-auth-header holds the token)"),
    OPT("provider-token-file", CONFIG_STRING, provider_token_file, 0, 0, NULL,
        "file holding the provider token, or user:password for basic (one trailing newline "
        "dropped); without it only provider-auth none lets Harbor in"),
    OPT("provider-auth-header", CONFIG_STRING, provider_auth_header, 0, 0, "X-Shoal-Token",
        "the header Harbor's CUSTOM auth mode sends (the key of its auth_info)"),
    OPT("harbor-selector", CONFIG_STRING, harbor_selector_text, 0, 0, "",
        "the agents Harbor's preheat jobs may use (a selector, docs/protocol.md; "
        " = all)"),
    OPT("harbor-seed-selector", CONFIG_STRING, harbor_seed_selector_text, 0, 0, "seed=true",
        "the agents Harbor's all_seed_peers scope warms"),
    OPT("webhook-auth-file", CONFIG_STRING, webhook_auth_file, 0, 0, NULL,
        "file holding the exact Authorization value Harbor webhooks send (their auth header); "
        "without it webhooks are refused"),
    {"push-rules", CONFIG_CUSTOM, offsetof(struct tracker_config, push_rules), 0, 0, NULL,
     "which pushes (webhooks, registry notifications) warm which agents: [{\"registry\", "
     "\"repository\", \"tag\" (globs), \"kinds\": [\"image\", \"ormb\", \"modelpack\", "
     "\"kitops\"], \"selector\", \"platforms\", \"layers\", \"max_concurrent\"}] (config file "
     "only; docs/harbor.md)",
     push_rules_option, push_rules_option_free},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

static int push_rules_option(void *field, json_t *value, char *err, size_t errlen)
{
    int rc = push_rules_parse(value, field, err, errlen);
    return rc == SHOAL_EPARSE ? SHOAL_ECONFIG : rc;
}

static void push_rules_option_free(void *field)
{
    push_rules_dispose(field);
}

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
    rc = config_optional_addr("admin-listen", &cfg->admin_listen, err, errlen);
    if (rc < 0)
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
    rc = tls_options_check(cfg->tls_mode_name, cfg->secret_len > 0, cfg->tls_ca, cfg->tls_cert,
                           cfg->tls_key, &cfg->tls_mode, err, errlen);
    if (rc < 0)
        return rc;
    if (strcmp(cfg->state, "memory") != 0 && strncmp(cfg->state, "redis://", 8) != 0) {
        snprintf(err, errlen,
                 "config: \"state\": \"%.100s\" is not memory or redis://HOST[:PORT][/DB]",
                 cfg->state);
        return SHOAL_ECONFIG;
    }
    if (cfg->state_password_file) {
        if (strcmp(cfg->state, "memory") == 0) {
            snprintf(err, errlen, "config: \"state-password-file\": only with a redis:// state");
            return SHOAL_ECONFIG;
        }
        rc = config_read_secret("state-password-file", cfg->state_password_file,
                                &cfg->state_password, &cfg->state_password_len, err, errlen);
        if (rc < 0)
            return rc;
    }
    static const char *const modes[] = {"none", "basic", "oauth", "custom"};
    size_t m;
    for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        if (strcasecmp(cfg->provider_auth, modes[m]) == 0)
            break;
    }
    if (m == sizeof(modes) / sizeof(modes[0])) {
        snprintf(err, errlen,
                 "config: \"provider-auth\": \"%.40s\" is not none, basic, oauth or custom",
                 cfg->provider_auth);
        return SHOAL_ECONFIG;
    }
    cfg->provider_mode = (enum harbor_auth_mode)m;
    if (cfg->provider_token_file) {
        rc = config_read_secret("provider-token-file", cfg->provider_token_file,
                                &cfg->provider_token, &cfg->provider_token_len, err, errlen);
        if (rc < 0)
            return rc;
        if (cfg->provider_mode == HARBOR_AUTH_BASIC &&
            !memchr(cfg->provider_token, ':', cfg->provider_token_len)) {
            snprintf(err, errlen,
                     "config: \"provider-token-file\": basic needs user:password in the file");
            return SHOAL_ECONFIG;
        }
    }
    if (cfg->provider_mode == HARBOR_AUTH_CUSTOM &&
        (!cfg->provider_auth_header[0] || strchr(cfg->provider_auth_header, ':') ||
         strchr(cfg->provider_auth_header, ' '))) {
        snprintf(err, errlen, "config: \"provider-auth-header\": not a header name");
        return SHOAL_ECONFIG;
    }
    if (cfg->webhook_auth_file) {
        rc = config_read_secret("webhook-auth-file", cfg->webhook_auth_file, &cfg->webhook_auth,
                                &cfg->webhook_auth_len, err, errlen);
        if (rc < 0)
            return rc;
    }
    char why[300];
    if (tracker_selector_parse(cfg->harbor_selector_text, &cfg->harbor_selector, why, sizeof(why)) <
        0) {
        snprintf(err, errlen, "config: \"harbor-selector\": %s", why);
        return SHOAL_ECONFIG;
    }
    if (tracker_selector_parse(cfg->harbor_seed_selector_text, &cfg->harbor_seed_selector, why,
                               sizeof(why)) < 0) {
        snprintf(err, errlen, "config: \"harbor-seed-selector\": %s", why);
        return SHOAL_ECONFIG;
    }
    return CONFIG_RUN;
}

static void wipe_free(char *s, size_t n)
{
    if (s) {
        memset(s, 0, n);
        free(s);
    }
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
    wipe_free(cfg->provider_token, cfg->provider_token_len);
    cfg->provider_token = NULL;
    wipe_free(cfg->webhook_auth, cfg->webhook_auth_len);
    cfg->webhook_auth = NULL;
    wipe_free(cfg->state_password, cfg->state_password_len);
    cfg->state_password = NULL;
}

void tracker_config_cluster(const struct tracker_config *cfg, struct tracker_cluster_config *out)
{
    memset(out, 0, sizeof(*out));
    out->agent_timeout_ms = (uint64_t)cfg->agent_timeout_ms;
    out->jobs.keep_ms = (uint64_t)cfg->job_keep_ms;
    out->jobs.default_timeout_ms = (uint64_t)cfg->job_timeout_ms;
    out->jobs.contact_timeout_ms = (uint64_t)cfg->job_contact_timeout_ms;
    out->jobs.max_jobs = (size_t)cfg->max_jobs;
}

void tracker_config_swarms(const struct tracker_config *cfg, struct tracker_swarms_config *out)
{
    memset(out, 0, sizeof(*out));
    out->interval_ms = (uint64_t)cfg->interval_ms;
    out->peer_timeout_ms = (uint64_t)cfg->peer_timeout_ms;
    out->lease_timeout_ms = (uint64_t)cfg->lease_timeout_ms;
    out->keep_ms = (uint64_t)cfg->swarm_keep_ms;
    out->lease_pieces = (unsigned)cfg->lease_pieces;
    out->lease_spread = (unsigned)cfg->lease_spread;
    out->max_peers = (unsigned)cfg->max_peers;
    out->piece_length = cfg->piece_length;
    out->hash_algo = cfg->hash_algo;
    out->bad_peer_ms = (uint64_t)cfg->bad_peer_time_ms;
    out->bad_peer_off = cfg->bad_peer_time_ms == 0;
    out->bad_peer_reporters = (unsigned)cfg->bad_peer_reporters;
    out->max_swarms_per_agent = (size_t)cfg->max_swarms_per_agent;
}
