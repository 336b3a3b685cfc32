/* shoal-agent option table and the checks that span several options. */
#define _GNU_SOURCE /* explicit_bzero */
#include "config/agent_config.h"

#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/oci.h"

#define MIB (1024LL * 1024)
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

/* Password files are small; anything bigger is a configuration mistake. */
#define PASSWORD_FILE_MAX 4096

#define DOCKER_HUB_HOST "docker.io"
#define DOCKER_HUB_URL "https://registry-1.docker.io"

static const char usage_text[] =
    "shoal-agent [--config FILE] [--listen ADDR:PORT] [--data-dir DIR] [--upstream URL] [options]\n"
    "       shoal-agent configure|unconfigure containerd|crio|podman [options] (runtime wiring: "
    "shoal-agent configure --help)";

static int upstreams_parse(void *field, json_t *value, char *err, size_t errlen);
static void upstreams_free(void *field);

#define OPT(name, type, member, min, max, def, help)                                               \
    {                                                                                              \
        name, type, offsetof(struct agent_config, member), min, max, def, help, NULL, NULL         \
    }

const struct config_option agent_options[] = {
    {"config", CONFIG_STRING, 0, 0, 0, NULL,
     "JSON config file whose keys are the options below; flags override it", NULL, NULL},
    OPT("listen", CONFIG_ADDR, listen, 0, 0, "127.0.0.1:5080",
        "address the registry mirror listens on"),
    OPT("admin-listen", CONFIG_STRING, admin_listen, 0, 0, "127.0.0.1:5082",
        "address of the admin listener: /metrics, /healthz (liveness) and /readyz (readiness); "
        "\"off\" or \"\" turns it off"),
    OPT("data-dir", CONFIG_STRING, data_dir, 0, 0, "/var/lib/shoal",
        "directory for cached blobs, manifests and state"),
    OPT("upstream", CONFIG_URL, upstream, 0, 0, DOCKER_HUB_URL,
        "default upstream registry, used when a request names no registry"),
    OPT("log-level", CONFIG_LEVEL, log_level, 0, 0, "info", "debug, info, warn or error"),
    OPT("cache-max-bytes", CONFIG_SIZE, cache_max_bytes, MIB, INT64_MAX, "20GiB",
        "disk space the blob cache may use"),
    OPT("cache-high-watermark", CONFIG_INT, cache_high_pct, 1, 100, "90",
        "percent of cache-max-bytes at which eviction starts"),
    OPT("cache-low-watermark", CONFIG_INT, cache_low_pct, 0, 99, "80",
        "percent of cache-max-bytes eviction frees down to"),
    OPT("cache-group", CONFIG_STRING, cache_group, 0, 0, NULL,
        "group (name or number) that may read the cache: files 0640 and directories 0750 owned "
        "by it; without it only the agent's user can (0600 and 0700)"),
    OPT("tag-cache-ttl", CONFIG_DURATION, tag_cache_ttl_ms, 0, HOUR, "0",
        "how long a tag-to-digest answer is reused without asking upstream (0 = always ask)"),
    OPT("tag-stale-max", CONFIG_DURATION, tag_stale_max_ms, 0, 365 * 24 * HOUR, "168h",
        "how old the last upstream answer for a tag may be and still be served while upstream "
        "is unreachable, answers 5xx or 429 (0 = never serve a stale tag)"),
    OPT("repo-check-ttl", CONFIG_DURATION, repo_check_ttl_ms, 0, 24 * HOUR, "5m",
        "how long an upstream access check for a repository is reused"),
    OPT("repo-check-ahead", CONFIG_INT, repo_check_ahead, 0, 1000, "64",
        "blobs of an image manifest served to a client whose access check (an upstream HEAD) "
        "starts at once, before the client asks for them (0 = each when it is asked for)"),
    OPT("blob-prefetch-max", CONFIG_SIZE, blob_prefetch_max, 0, 64 * MIB, "0",
        "blobs of an image manifest served to a client, up to this size, are downloaded into the "
        "cache once their access check (repo-check-ahead) confirms them, before the client asks "
        "(0 = none; a manifest fetched only to be inspected brings them too)"),
    OPT("upstream-retries", CONFIG_INT, upstream_retries, 0, 10, "3",
        "retries of a failed upstream request"),
    OPT("upstream-retry-max", CONFIG_DURATION, upstream_retry_max_ms, 0, 5 * MIN, "10s",
        "longest backoff between upstream retries"),
    OPT("upstream-timeout", CONFIG_DURATION, upstream_timeout_ms, SEC, HOUR, "60s",
        "abort an upstream transfer that makes no progress for this long"),
    OPT("upstream-allow-unlisted", CONFIG_BOOL, upstream_allow_unlisted, 0, 0, "false",
        "reach registries not listed in upstreams (a client names them) over https; they never "
        "get a cached blob that came from another registry"),
    OPT("max-header-bytes", CONFIG_SIZE, max_header_bytes, 1024, MIB, "16KiB",
        "largest request line plus headers accepted"),
    OPT("header-timeout", CONFIG_DURATION, header_timeout_ms, 100, 10 * MIN, "10s",
        "time a client has to send a complete request head"),
    OPT("idle-timeout", CONFIG_DURATION, idle_timeout_ms, 100, HOUR, "60s",
        "close keep-alive connections idle for this long"),
    OPT("max-connections", CONFIG_INT, max_connections, 1, 100000, "1024",
        "client connections served at once"),
    OPT("tracker", CONFIG_URLS, tracker, 0, 0, NULL,
        "shoal-tracker URL, or the URLs of its replicas separated by commas (a JSON array in "
        "the config file); set it to fetch blobs through the peer-to-peer swarm"),
    OPT("tracker-optional", CONFIG_BOOL, tracker_optional, 0, 0, "false",
        "report ready on /readyz even when the tracker has not answered the registration "
        "lately (without it, readiness needs a registration accepted within 3 "
        "register-intervals)"),
    OPT("peer-listen", CONFIG_ADDR, peer_listen, 0, 0, "127.0.0.1:5081",
        "address the peer wire protocol listens on; loopback unless given (peers on other hosts "
        "need the node's address, or 0.0.0.0:5081 with --advertise)"),
    OPT("advertise", CONFIG_ADDR, advertise, 0, 0, NULL,
        "address peers should dial (required with a wildcard peer-listen)"),
    OPT("cluster-secret-file", CONFIG_STRING, cluster_secret_file, 0, 0, NULL,
        "file holding the secret shared with the tracker and the other agents (one trailing "
        "newline dropped); required with --tracker unless --insecure-no-secret"),
    OPT("insecure-no-secret", CONFIG_BOOL, insecure_no_secret, 0, 0, "false",
        "join the swarm without a cluster secret: the tracker and every peer accept anyone "
        "(for tests; logged as a warning at start and every minute)"),
    OPT("swarm-stall-timeout", CONFIG_DURATION, swarm_stall_timeout_ms, SEC, HOUR, "20s",
        "fall back to upstream when a swarm download makes no progress for this long"),
    OPT("seed-time", CONFIG_DURATION, seed_time_ms, 0, 24 * HOUR, "10m",
        "keep serving a completed blob to peers this long"),
    OPT("swarm-max-peers", CONFIG_INT, swarm_max_peers, 1, 200, "16",
        "peer connections per blob this agent dials (up to twice as many may dial it); a blob "
        "of fewer pieces dials no more peers than it has pieces, and at least 4; one connection "
        "per peer agent, whichever side dialed (docs/protocol.md); fewer costs less CPU per byte "
        "and lengthens the swarm's tail (docs/operations.md)"),
    OPT("swarm-reader-window", CONFIG_INT, swarm_reader_window, 0, 4096, "16",
        "while a client reads a blob as it downloads, this many pieces after the held prefix are "
        "fetched first, in order, rarest-first elsewhere; prewarm fills have no reader and stay "
        "rarest-first (0: rarest-first always; docs/benchmarks.md, \"Readers first\")"),
    OPT("swarm-min-size", CONFIG_SIZE, swarm_min_size, 0, INT64_MAX, "0",
        "blobs smaller than this are fetched from upstream by every agent itself, not through the "
        "swarm (0: every non-empty blob goes through the swarm, one upstream copy per cluster; "
        "docs/benchmarks.md)"),
    OPT("ban-time", CONFIG_DURATION, ban_time_ms, SEC, 24 * HOUR, "5m",
        "how long a peer that sent a bad piece is ignored"),
    OPT("ingress-rate", CONFIG_SIZE, ingress_rate, 0, INT64_MAX, "0",
        "bytes per second this agent receives from upstream and peers together (0 = no limit)"),
    OPT("egress-rate", CONFIG_SIZE, egress_rate, 0, INT64_MAX, "0",
        "bytes per second this agent sends to peers (0 = no limit)"),
    OPT("tls-mode", CONFIG_STRING, tls_mode_name, 0, 0, "off",
        "TLS 1.3 on the peer port and to the tracker: off, psk (a key derived from the cluster "
        "secret) or mtls (certificates from the cluster CA: tls-ca, tls-cert, tls-key); the "
        "tracker and every agent use the same mode, and the tracker URL is then https://"),
    OPT("tls-ca", CONFIG_STRING, tls_ca, 0, 0, NULL,
        "mtls: PEM file with the cluster CA, the only CA peers' and the tracker's certificates "
        "are checked against"),
    OPT("tls-cert", CONFIG_STRING, tls_cert, 0, 0, NULL,
        "mtls: PEM certificate (chain) of this agent, issued by the cluster CA for both TLS "
        "roles (no extendedKeyUsage, or serverAuth and clientAuth)"),
    OPT("tls-key", CONFIG_STRING, tls_key, 0, 0, NULL, "mtls: PEM private key of tls-cert"),
    OPT("tls-ciphersuites", CONFIG_STRING, tls_ciphersuites, 0, 0, TLS_CIPHERSUITES_DEFAULT,
        "TLS 1.3 cipher suites, most preferred first (psk allows the SHA-256 ones only)"),
    OPT("node-name", CONFIG_STRING, node_name, 0, 0, NULL,
        "this node's name in the tracker's inventory and in job results (default: the host "
        "name); [A-Za-z0-9][A-Za-z0-9._-]*, at most 63 characters"),
    OPT("labels", CONFIG_STRING, labels_text, 0, 0, NULL,
        "labels job selectors match, \"key=value,key=value\" (e.g. \"zone=eu-1,pool=gpu\")"),
    OPT("mirror-url", CONFIG_URL, mirror_url, 0, 0, NULL,
        "URL the tracker uses for this agent's prewarm API (default: http:// and the listen "
        "address; its host is the advertise host, or the host name, when listen has none)"),
    OPT("register-interval", CONFIG_DURATION, register_interval_ms, SEC, 10 * MIN, "10s",
        "how often the agent heartbeats its registration to the tracker"),
    OPT("docker-config", CONFIG_STRING, docker_config, 0, 0, NULL,
        "docker config.json or mounted .dockerconfigjson to take registry credentials from "
        "(\"auths\": auth, username/password, identitytoken), for upstreams whose entry in "
        "upstreams has none; reloaded on change and on SIGHUP"),
    OPT("pull-secrets-dir", CONFIG_STRING, pull_secrets_dir, 0, 0, NULL,
        "directory of mounted pull secrets (dockerconfigjson files, directly in it or one "
        "level down), read after docker-config; reloaded on change and on SIGHUP"),
    OPT("credentials-check-interval", CONFIG_DURATION, credentials_check_interval_ms, 0, HOUR,
        "60s",
        "how often docker-config, pull-secrets-dir and password files are read again besides "
        "on change events (0 = only on events and SIGHUP)"),
    {"upstreams", CONFIG_CUSTOM, offsetof(struct agent_config, upstreams), 0, 0, NULL,
     "registries with their URL and credentials: [{\"host\": \"docker.io\", \"url\": "
     "\"https://registry-1.docker.io\", \"username\": ..., \"password\" or \"password-file\": "
     "..., \"ca-file\": ..., \"insecure\": false, \"token-realms\": [...], \"repo-prefix\": "
     "\"proxy-dockerhub/\"}]",
     upstreams_parse, upstreams_free},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

/* --- The upstreams array ------------------------------------------------- */

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void upstream_def_dispose(struct upstream_def *d)
{
    for (size_t i = 0; i < d->ntoken_realms; i++)
        free(d->token_realms[i]);
    free(d->token_realms);
    free(d->host);
    free(d->url);
    free(d->username);
    wipe_free(d->password);
    free(d->password_file);
    free(d->ca_file);
    free(d->repo_prefix);
    wipe_free(d->authorization);
    free(d->auth_ns);
    memset(d, 0, sizeof(*d));
}

int agent_config_repo_prefix(const char *in, char *out, size_t outlen)
{
    size_t len;

    while (*in == '/')
        in++;
    len = strlen(in);
    while (len > 0 && in[len - 1] == '/')
        len--;
    if (outlen == 0)
        return SHOAL_ETOOBIG;
    if (len == 0) {
        out[0] = '\0';
        return 0;
    }
    if (len + 1 > AGENT_REPO_PREFIX_MAX || len + 2 > outlen || !oci_name_valid(in, len))
        return SHOAL_EPARSE;
    memcpy(out, in, len);
    out[len] = '/';
    out[len + 1] = '\0';
    return 0;
}

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src && !(*dst = strdup(src)))
        return -ENOMEM;
    return 0;
}

int upstream_def_copy(struct upstream_def *dst, const struct upstream_def *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->insecure = src->insecure;
    dst->unlisted = src->unlisted;
    if (dup_opt(&dst->host, src->host) < 0 || dup_opt(&dst->url, src->url) < 0 ||
        dup_opt(&dst->username, src->username) < 0 || dup_opt(&dst->password, src->password) < 0 ||
        dup_opt(&dst->password_file, src->password_file) < 0 ||
        dup_opt(&dst->ca_file, src->ca_file) < 0 ||
        dup_opt(&dst->repo_prefix, src->repo_prefix) < 0 ||
        dup_opt(&dst->authorization, src->authorization) < 0 ||
        dup_opt(&dst->auth_ns, src->auth_ns) < 0)
        goto fail;
    if (src->ntoken_realms > 0) {
        dst->token_realms = calloc(src->ntoken_realms, sizeof(char *));
        if (!dst->token_realms)
            goto fail;
        for (; dst->ntoken_realms < src->ntoken_realms; dst->ntoken_realms++)
            if (dup_opt(&dst->token_realms[dst->ntoken_realms],
                        src->token_realms[dst->ntoken_realms]) < 0)
                goto fail;
    }
    return 0;
fail:
    upstream_def_dispose(dst);
    return -ENOMEM;
}

static void list_dispose(struct upstream_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        upstream_def_dispose(&l->defs[i]);
    free(l->defs);
    l->defs = NULL;
    l->n = 0;
}

static void upstreams_free(void *field)
{
    list_dispose(field);
}

/* A host an operator may list: what oci_component_is_host accepts, or a
 * plain DNS name without dots (a registry reached only through "ns="). */
static bool host_valid(const char *h)
{
    size_t i, n = strlen(h);

    if (oci_component_is_host(h, n))
        return true;
    if (n == 0 || n > 253 || h[0] == '-' || h[n - 1] == '-')
        return false;
    for (i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

static int dup_string(json_t *v, size_t idx, const char *key, char **out, char *err, size_t errlen)
{
    if (!json_is_string(v)) {
        snprintf(err, errlen, "[%zu].%s: expected a string", idx, key);
        return SHOAL_ECONFIG;
    }
    *out = strdup(json_string_value(v));
    if (!*out) {
        snprintf(err, errlen, "[%zu]: out of memory", idx);
        return -ENOMEM;
    }
    return 0;
}

/* "token-realms": an array of http(s) URLs, stored without trailing slashes. */
static int token_realms_parse(json_t *v, size_t idx, struct upstream_def *d, char *err,
                              size_t errlen)
{
    char url[2048];
    size_t i, n;

    if (!json_is_array(v)) {
        snprintf(err, errlen, "[%zu].token-realms: expected an array of URLs", idx);
        return SHOAL_ECONFIG;
    }
    n = json_array_size(v);
    if (n == 0)
        return 0;
    d->token_realms = calloc(n, sizeof(char *));
    if (!d->token_realms) {
        snprintf(err, errlen, "[%zu]: out of memory", idx);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);

        if (!json_is_string(e) || config_parse_url(json_string_value(e), url, sizeof(url)) < 0) {
            snprintf(err, errlen, "[%zu].token-realms[%zu]: expected an http:// or https:// URL",
                     idx, i);
            return SHOAL_ECONFIG;
        }
        d->token_realms[i] = strdup(url);
        if (!d->token_realms[i]) {
            snprintf(err, errlen, "[%zu]: out of memory", idx);
            return -ENOMEM;
        }
        d->ntoken_realms = i + 1;
    }
    return 0;
}

static int entry_parse(json_t *obj, size_t idx, struct upstream_def *d, char *err, size_t errlen)
{
    char q[CONFIG_QUOTE_MAX + 8];
    const char *key;
    json_t *v;
    char url[2048];
    int rc;

    if (!json_is_object(obj)) {
        snprintf(err, errlen, "[%zu]: expected an object", idx);
        return SHOAL_ECONFIG;
    }
    json_object_foreach(obj, key, v)
    {
        char **slot = NULL;

        if (strcmp(key, "host") == 0) {
            slot = &d->host;
        } else if (strcmp(key, "url") == 0) {
            slot = &d->url;
        } else if (strcmp(key, "username") == 0) {
            slot = &d->username;
        } else if (strcmp(key, "password") == 0) {
            slot = &d->password;
        } else if (strcmp(key, "password-file") == 0) {
            slot = &d->password_file;
        } else if (strcmp(key, "ca-file") == 0) {
            slot = &d->ca_file;
        } else if (strcmp(key, "repo-prefix") == 0) {
            slot = &d->repo_prefix;
        } else if (strcmp(key, "insecure") == 0) {
            if (!json_is_boolean(v)) {
                snprintf(err, errlen, "[%zu].insecure: expected true or false", idx);
                return SHOAL_ECONFIG;
            }
            d->insecure = json_is_true(v);
            continue;
        } else if (strcmp(key, "token-realms") == 0) {
            rc = token_realms_parse(v, idx, d, err, errlen);
            if (rc < 0)
                return rc;
            continue;
        } else {
            snprintf(err, errlen, "[%zu]: unknown key \"%s\"", idx,
                     config_quote(key, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        rc = dup_string(v, idx, key, slot, err, errlen);
        if (rc < 0)
            return rc;
    }

    if (!d->host) {
        snprintf(err, errlen, "[%zu]: missing \"host\"", idx);
        return SHOAL_ECONFIG;
    }
    if (!host_valid(d->host)) {
        snprintf(err, errlen, "[%zu].host: invalid host \"%s\"", idx,
                 config_quote(d->host, q, sizeof(q)));
        return SHOAL_ECONFIG;
    }
    if (!d->url) {
        snprintf(err, errlen, "[%zu]: missing \"url\"", idx);
        return SHOAL_ECONFIG;
    }
    if (config_parse_url(d->url, url, sizeof(url)) < 0) {
        snprintf(err, errlen, "[%zu].url: invalid URL \"%s\" (expected http:// or https://)", idx,
                 config_quote(d->url, q, sizeof(q)));
        return SHOAL_ECONFIG;
    }
    /* The stripped URL is never longer than the original, so it fits. */
    memcpy(d->url, url, strlen(url) + 1);
    if (d->repo_prefix) {
        char norm[AGENT_REPO_PREFIX_MAX + 2];
        if (agent_config_repo_prefix(d->repo_prefix, norm, sizeof(norm)) < 0) {
            snprintf(err, errlen,
                     "[%zu].repo-prefix: \"%s\" is not a repository path (lower-case "
                     "components separated by '/', at most %d characters; host \"%s\")",
                     idx, config_quote(d->repo_prefix, q, sizeof(q)), AGENT_REPO_PREFIX_MAX - 1,
                     d->host);
            return SHOAL_ECONFIG;
        }
        free(d->repo_prefix);
        d->repo_prefix = norm[0] ? strdup(norm) : NULL;
        if (norm[0] && !d->repo_prefix) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    if (d->password && d->password_file) {
        snprintf(err, errlen,
                 "[%zu]: \"password\" and \"password-file\" are mutually exclusive (host \"%s\")",
                 idx, d->host);
        return SHOAL_ECONFIG;
    }
    if ((d->password || d->password_file) && !d->username) {
        snprintf(err, errlen, "[%zu]: a password needs a \"username\" (host \"%s\")", idx, d->host);
        return SHOAL_ECONFIG;
    }
    for (size_t j = 0; j < d->ntoken_realms; j++) {
        if (strncmp(d->url, "https://", 8) == 0 && strncmp(d->token_realms[j], "http://", 7) == 0) {
            snprintf(err, errlen,
                     "[%zu].token-realms[%zu]: \"%.64s\" is plain http: an https upstream "
                     "sends no credentials in clear text (host \"%s\")",
                     idx, j, d->token_realms[j], d->host);
            return SHOAL_ECONFIG;
        }
    }
    if (d->username && !d->password && !d->password_file) {
        snprintf(err, errlen,
                 "[%zu]: \"username\" needs \"password\" or \"password-file\" (host \"%s\")", idx,
                 d->host);
        return SHOAL_ECONFIG;
    }
    return 0;
}

static int upstreams_parse(void *field, json_t *value, char *err, size_t errlen)
{
    struct upstream_list *list = field, fresh = {NULL, 0};
    size_t i, j;
    int rc = 0;

    if (!json_is_array(value)) {
        snprintf(err, errlen, "expected an array of objects");
        return SHOAL_ECONFIG;
    }
    if (json_array_size(value) > 0) {
        fresh.defs = calloc(json_array_size(value), sizeof(*fresh.defs));
        if (!fresh.defs) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    for (i = 0; i < json_array_size(value); i++) {
        fresh.n = i + 1;
        rc = entry_parse(json_array_get(value, i), i, &fresh.defs[i], err, errlen);
        if (rc < 0)
            goto out;
        for (j = 0; j < i; j++) {
            if (strcasecmp(fresh.defs[j].host, fresh.defs[i].host) == 0) {
                snprintf(err, errlen, "[%zu].host: duplicate host \"%s\" (also in [%zu])", i,
                         fresh.defs[i].host, j);
                rc = SHOAL_ECONFIG;
                goto out;
            }
        }
    }
    /* Replace the old list only once the new one is complete. */
    list_dispose(list);
    *list = fresh;
    fresh.defs = NULL;
    fresh.n = 0;
out:
    list_dispose(&fresh);
    return rc;
}

/* Reads a password file into d->password, minus one trailing newline. */
static int read_password_file(struct upstream_def *d, size_t idx, char *err, size_t errlen)
{
    char *data = NULL;
    size_t n;
    FILE *f;
    int rc = 0;

    f = fopen(d->password_file, "r");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "config: \"upstreams[%zu].password-file\": cannot read \"%s\": %s",
                 idx, d->password_file, shoal_strerror(rc));
        return SHOAL_ECONFIG;
    }
    data = malloc(PASSWORD_FILE_MAX + 1);
    if (!data) {
        rc = -ENOMEM;
        goto out;
    }
    n = fread(data, 1, PASSWORD_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "config: \"upstreams[%zu].password-file\": cannot read \"%s\"", idx,
                 d->password_file);
        rc = SHOAL_ECONFIG;
        goto out;
    }
    if (n > PASSWORD_FILE_MAX) {
        snprintf(err, errlen,
                 "config: \"upstreams[%zu].password-file\": \"%s\" is larger than %d bytes", idx,
                 d->password_file, PASSWORD_FILE_MAX);
        rc = SHOAL_ECONFIG;
        goto out;
    }
    if (n > 0 && data[n - 1] == '\n')
        n--;
    if (n > 0 && data[n - 1] == '\r')
        n--;
    data[n] = '\0';
    free(d->password);
    d->password = data;
    data = NULL;
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "config: out of memory");
    free(data);
    fclose(f);
    return rc;
}

int agent_config_reload_passwords(struct agent_config *cfg, char *err, size_t errlen)
{
    struct upstream_def *defs = cfg->upstreams.defs;
    size_t n = cfg->upstreams.n;
    char **fresh = calloc(n + 1, sizeof(char *));
    int rc = 0, changed = 0;

    if (!fresh) {
        snprintf(err, errlen, "config: out of memory");
        return -ENOMEM;
    }
    /* Read all first, so that a failure changes nothing. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!defs[i].password_file)
            continue;
        struct upstream_def tmp = {.password_file = defs[i].password_file};
        rc = read_password_file(&tmp, i, err, errlen);
        fresh[i] = tmp.password;
    }
    for (size_t i = 0; i < n; i++) {
        if (!fresh[i])
            continue;
        if (rc == 0 && (!defs[i].password || strcmp(defs[i].password, fresh[i]) != 0)) {
            wipe_free(defs[i].password);
            defs[i].password = fresh[i];
            changed = 1;
        } else {
            wipe_free(fresh[i]);
        }
    }
    free(fresh);
    return rc < 0 ? rc : changed;
}

static int read_secret(struct agent_config *cfg, char *err, size_t errlen)
{
    return config_read_secret("cluster-secret-file", cfg->cluster_secret_file, &cfg->secret,
                              &cfg->secret_len, err, errlen);
}

/* "cache-group": a group name from the group database, or a number. */
static int resolve_group(struct agent_config *cfg, char *err, size_t errlen)
{
    const char *g = cfg->cache_group;
    char q[CONFIG_QUOTE_MAX + 8];
    struct group gr, *found = NULL;
    char buf[4096];
    char *end;
    int rc;

    if (g[0] >= '0' && g[0] <= '9') {
        errno = 0;
        unsigned long v = strtoul(g, &end, 10);
        if (errno == 0 && *end == '\0' && v < (unsigned long)(gid_t)-1) {
            cfg->cache_gid = (gid_t)v;
            return 0;
        }
    }
    rc = getgrnam_r(g, &gr, buf, sizeof(buf), &found);
    if (rc != 0 || found == NULL) {
        snprintf(err, errlen, "config: \"cache-group\": no group \"%s\"%s%s",
                 config_quote(g, q, sizeof(q)), rc != 0 ? ": " : "", rc != 0 ? strerror(rc) : "");
        return SHOAL_ECONFIG;
    }
    cfg->cache_gid = found->gr_gid;
    return 0;
}

static bool wildcard_host(const char *addr)
{
    return strncmp(addr, "0.0.0.0:", 8) == 0 || strncmp(addr, "[::]:", 5) == 0;
}

int agent_config_load(struct agent_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    size_t i;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    rc = config_load(agent_options, cfg, "shoal-agent", usage_text, argc, argv, err, errlen);
    if (rc != CONFIG_RUN)
        return rc;

    rc = config_optional_addr("admin-listen", &cfg->admin_listen, err, errlen);
    if (rc < 0)
        return rc;
    if (cfg->cache_low_pct >= cfg->cache_high_pct) {
        snprintf(err, errlen,
                 "config: \"cache-low-watermark\" (%lld) must be below \"cache-high-watermark\" "
                 "(%lld)",
                 (long long)cfg->cache_low_pct, (long long)cfg->cache_high_pct);
        return SHOAL_ECONFIG;
    }
    if (cfg->cache_group) {
        rc = resolve_group(cfg, err, errlen);
        if (rc < 0)
            return rc;
    }
    for (i = 0; i < cfg->upstreams.n; i++) {
        struct upstream_def *d = &cfg->upstreams.defs[i];
        if (d->password_file) {
            rc = read_password_file(d, i, err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    if (cfg->cluster_secret_file && cfg->insecure_no_secret) {
        snprintf(err, errlen,
                 "config: \"cluster-secret-file\" and \"insecure-no-secret\" are mutually "
                 "exclusive");
        return SHOAL_ECONFIG;
    }
    if (cfg->tracker && !cfg->cluster_secret_file && !cfg->insecure_no_secret) {
        snprintf(err, errlen,
                 "config: \"cluster-secret-file\": required with \"tracker\": without it the "
                 "tracker and every peer accept anyone; give --cluster-secret-file FILE, or "
                 "--insecure-no-secret to run open (tests only)");
        return SHOAL_ECONFIG;
    }
    if (cfg->cluster_secret_file) {
        rc = read_secret(cfg, err, errlen);
        if (rc < 0)
            return rc;
    }
    if (!cfg->node_name) {
        char host[256];
        if (gethostname(host, sizeof(host)) < 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        /* A fully qualified name may not fit; its first label is the node. */
        if (strlen(host) > AGENT_NAME_MAX && strchr(host, '.'))
            *strchr(host, '.') = '\0';
        cfg->node_name = strdup(host);
        if (!cfg->node_name) {
            snprintf(err, errlen, "config: out of memory");
            return -ENOMEM;
        }
        if (!agent_name_valid(cfg->node_name)) {
            snprintf(err, errlen,
                     "config: \"node-name\": the host name \"%.64s\" is not a node name: set "
                     "node-name ([A-Za-z0-9][A-Za-z0-9._-]*, at most %d characters)",
                     host, AGENT_NAME_MAX);
            return SHOAL_ECONFIG;
        }
    } else if (!agent_name_valid(cfg->node_name)) {
        snprintf(err, errlen,
                 "config: \"node-name\": \"%.64s\" is not a node name "
                 "([A-Za-z0-9][A-Za-z0-9._-]*, at most %d characters)",
                 cfg->node_name, AGENT_NAME_MAX);
        return SHOAL_ECONFIG;
    }
    if (cfg->labels_text) {
        char why[256];
        if (agent_labels_parse(cfg->labels_text, cfg->labels, &cfg->nlabels, why, sizeof(why)) <
            0) {
            snprintf(err, errlen, "config: \"labels\": %s", why);
            return SHOAL_ECONFIG;
        }
    }
    rc = tls_options_check(cfg->tls_mode_name, cfg->secret_len > 0, cfg->tls_ca, cfg->tls_cert,
                           cfg->tls_key, &cfg->tls_mode, err, errlen);
    if (rc < 0)
        return rc;
    /* With replicas, every URL of the list. */
    for (const char *u = cfg->tls_mode != TLS_MODE_OFF ? cfg->tracker : NULL; u != NULL;) {
        const char *end = strchr(u, ',');
        if (strncasecmp(u, "https://", 8) != 0) {
            size_t len = end ? (size_t)(end - u) : strlen(u);
            snprintf(err, errlen,
                     "config: \"tracker\": tls-mode %s needs an https:// tracker URL (the tracker "
                     "speaks TLS too), not \"%.*s\"",
                     tls_mode_name(cfg->tls_mode), (int)(len > 200 ? 200 : len), u);
            return SHOAL_ECONFIG;
        }
        u = end ? end + 1 : NULL;
    }
    if (cfg->tracker && !cfg->advertise && wildcard_host(cfg->peer_listen)) {
        snprintf(err, errlen,
                 "config: \"advertise\": required with \"tracker\" when \"peer-listen\" (%s) "
                 "has no specific host: give the address other agents dial",
                 cfg->peer_listen);
        return SHOAL_ECONFIG;
    }
    return CONFIG_RUN;
}

void agent_config_dispose(struct agent_config *cfg)
{
    config_dispose(agent_options, cfg);
    if (cfg->secret)
        memset(cfg->secret, 0, cfg->secret_len);
    free(cfg->secret);
    cfg->secret = NULL;
}

int agent_config_mirror_url(const struct agent_config *cfg, int bound_port, char *out,
                            size_t outlen)
{
    char host[256];
    int port = 0;
    int n;

    if (cfg->mirror_url) {
        n = snprintf(out, outlen, "%s", cfg->mirror_url);
        return n < 0 || (size_t)n >= outlen ? SHOAL_ETOOBIG : 0;
    }
    if (config_parse_addr(cfg->listen, host, sizeof(host), &port) < 0)
        return SHOAL_ECONFIG;
    if (bound_port > 0)
        port = bound_port;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        char adv[256];
        int aport;
        if (cfg->advertise && config_parse_addr(cfg->advertise, adv, sizeof(adv), &aport) == 0 &&
            adv[0] && strcmp(adv, "0.0.0.0") != 0) {
            snprintf(host, sizeof(host), "%s", adv);
        } else if (gethostname(host, sizeof(host)) < 0) {
            snprintf(host, sizeof(host), "localhost");
        }
        host[sizeof(host) - 1] = '\0';
    }
    bool v6 = strchr(host, ':') != NULL;
    n = snprintf(out, outlen, "http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
    return n < 0 || (size_t)n >= outlen ? SHOAL_ETOOBIG : 0;
}

/* --- Upstream selection ---------------------------------------------------- */

static bool is_docker_hub(const char *host)
{
    return strcasecmp(host, "docker.io") == 0 || strcasecmp(host, "index.docker.io") == 0 ||
           strcasecmp(host, "registry-1.docker.io") == 0;
}

static const struct upstream_def *find_listed(const struct agent_config *cfg, const char *host,
                                              size_t len)
{
    size_t i;

    for (i = 0; i < cfg->upstreams.n; i++) {
        const char *h = cfg->upstreams.defs[i].host;
        if (strlen(h) == len && strncasecmp(h, host, len) == 0)
            return &cfg->upstreams.defs[i];
    }
    return NULL;
}

static const struct upstream_def *find_docker_hub(const struct agent_config *cfg)
{
    size_t i;
    const struct upstream_def *d = find_listed(cfg, DOCKER_HUB_HOST, strlen(DOCKER_HUB_HOST));

    if (d)
        return d;
    for (i = 0; i < cfg->upstreams.n; i++)
        if (is_docker_hub(cfg->upstreams.defs[i].host))
            return &cfg->upstreams.defs[i];
    return NULL;
}

/* The "host[:port]" part of a URL that config_parse_url accepted. */
static const char *url_host(const char *url, size_t *len)
{
    const char *p = strstr(url, "://");

    p = p ? p + 3 : url;
    *len = strcspn(p, "/?#");
    return p;
}

static const struct upstream_def *default_upstream(const struct agent_config *cfg,
                                                   struct upstream_def *scratch, char *scratch_url,
                                                   size_t urllen)
{
    const struct upstream_def *d;
    const char *h;
    size_t hlen, i;

    if (!cfg->upstream)
        return NULL;
    for (i = 0; i < cfg->upstreams.n; i++)
        if (strcmp(cfg->upstreams.defs[i].url, cfg->upstream) == 0)
            return &cfg->upstreams.defs[i];
    h = url_host(cfg->upstream, &hlen);
    d = find_listed(cfg, h, hlen);
    if (d)
        return d;
    if (hlen >= urllen)
        return NULL;
    memcpy(scratch_url, h, hlen);
    scratch_url[hlen] = '\0';
    /* Docker Hub listed as "docker.io" with its own URL (a pull-through
     * cache, say) still serves the default upstream "registry-1.docker.io". */
    if (is_docker_hub(scratch_url)) {
        d = find_docker_hub(cfg);
        if (d)
            return d;
    }
    scratch->host = scratch_url;
    scratch->url = cfg->upstream;
    return scratch;
}

const struct upstream_def *agent_config_upstream(const struct agent_config *cfg, const char *host,
                                                 struct upstream_def *scratch, char *scratch_url,
                                                 size_t urllen)
{
    const struct upstream_def *d;
    const char *dh;
    size_t hlen, dlen;
    int n;

    memset(scratch, 0, sizeof(*scratch));
    if (!host)
        return default_upstream(cfg, scratch, scratch_url, urllen);

    hlen = strlen(host);
    d = find_listed(cfg, host, hlen);
    if (d)
        return d;
    if (is_docker_hub(host)) {
        d = find_docker_hub(cfg);
        if (d)
            return d;
        /* Constant strings: the scratch never needs to own them. */
        scratch->host = (char *)DOCKER_HUB_HOST;
        scratch->url = (char *)DOCKER_HUB_URL;
        return scratch;
    }
    /* The default upstream named by its own host keeps its scheme (a plain
     * http registry stays reachable even when unlisted hosts are not). */
    if (cfg->upstream) {
        dh = url_host(cfg->upstream, &dlen);
        if (dlen == hlen && strncasecmp(dh, host, hlen) == 0)
            return default_upstream(cfg, scratch, scratch_url, urllen);
    }
    if (!cfg->upstream_allow_unlisted)
        return NULL;
    /* The host goes into a URL, so it must be a host and nothing else. */
    if (!oci_component_is_host(host, hlen))
        return NULL;
    n = snprintf(scratch_url, urllen, "https://%s", host);
    if (n < 0 || (size_t)n + 1 + hlen + 1 > urllen)
        return NULL;
    scratch->url = scratch_url;
    scratch->host = scratch_url + n + 1;
    memcpy(scratch->host, host, hlen + 1);
    scratch->unlisted = true;
    return scratch;
}
