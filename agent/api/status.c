/* GET /_shoal/status. See status.h. */
#include "api/status.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/prewarm.h"
#include "swarm/registration.h"
#include "swarm/swarm.h"
#include "upstream/node_creds.h"

/* How requests to an upstream authenticate: its own entry's credentials
 * win over the node's files (as in upstream_auth.c); "node:" names the
 * kind found in the node's files, and *source the file. */
static const char *auth_kind(const struct upstream_def *d, const struct node_creds *nc,
                             const char **source)
{
    struct node_cred c;
    *source = NULL;
    if (d->username)
        return "basic";
    if (nc && node_creds_find(nc, d->url, &c)) {
        *source = c.source;
        return c.identity_token && !c.username ? "node:identitytoken" : "node:basic";
    }
    return "anonymous";
}

static json_t *upstreams_json(const struct agent_config *cfg, const struct node_creds *nc)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < cfg->upstreams.n; i++) {
        const struct upstream_def *d = &cfg->upstreams.defs[i];
        const char *source;
        const char *auth = auth_kind(d, nc, &source);
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s?,s:b,s:s?}", "host", d->host, "url",
                                             d->url, "auth", auth, "auth_file", source, "insecure",
                                             d->insecure, "repo_prefix", d->repo_prefix));
    }
    return arr;
}

/* The node's credential files: counts and whether the last reload took. */
static json_t *node_creds_json(const struct node_creds *nc)
{
    if (!nc)
        return json_null();
    const struct node_creds_stats *st = node_creds_stats(nc);
    return json_pack("{s:I,s:I,s:I,s:I,s:b}", "registries", (json_int_t)st->entries, "files",
                     (json_int_t)st->files, "reloads", (json_int_t)st->reloads, "reload_errors",
                     (json_int_t)st->reload_errors, "last_reload_ok", st->last_ok);
}

static json_t *registration_json(const struct status_deps *d)
{
    if (!d->reg)
        return json_null();
    const struct registration_status *st = registration_status(d->reg);
    uint64_t now = uv_now(d->loop);
    return json_pack("{s:b,s:I,s:I,s:o,s:s?}", "registered", st->registered, "beats",
                     (json_int_t)st->beats, "failures", (json_int_t)st->failures, "last_ok_ms_ago",
                     st->last_ok_ms ? json_integer((json_int_t)(now - st->last_ok_ms))
                                    : json_null(),
                     "last_error", st->last_error[0] ? st->last_error : NULL);
}

int status_http(const struct status_deps *d, struct buf *out)
{
    const struct agent_config *cfg = d->cfg;
    json_t *labels = json_object();
    for (size_t i = 0; labels && i < cfg->nlabels; i++)
        json_object_set_new(labels, cfg->labels[i].key, json_string(cfg->labels[i].value));
    static const struct swarm_stats none;
    const struct swarm_stats *ss = d->swarm ? swarm_stats(d->swarm) : &none;
    uint64_t used = store_bytes(d->store);
    json_t *doc = json_pack(
        "{s:s,s:s,s:s,s:o,s:s?,s:o,s:{s:I,s:I,s:I,s:I},s:{s:b,s:I,s:I,s:I,s:I,s:I},s:{s:I},s:o,s:"
        "o}",
        "node", cfg->node_name, "version", d->version, "mirror_url", d->mirror_url, "labels",
        labels, "tracker", cfg->tracker, "registration", registration_json(d), "cache", "bytes",
        (json_int_t)used, "max_bytes", (json_int_t)cfg->cache_max_bytes, "free_bytes",
        (json_int_t)(used < cfg->cache_max_bytes ? cfg->cache_max_bytes - used : 0), "blobs",
        (json_int_t)store_blob_count(d->store), "swarm", "enabled", d->swarm != NULL, "active",
        (json_int_t)ss->swarms_active, "peer_rx_bytes", (json_int_t)ss->peer_rx_bytes,
        "peer_tx_bytes", (json_int_t)ss->peer_tx_bytes, "pieces_verified",
        (json_int_t)ss->pieces_verified, "fallbacks", (json_int_t)ss->fallbacks, "prewarm",
        "running", (json_int_t)(d->prewarm ? prewarm_running(d->prewarm) : 0), "upstreams",
        upstreams_json(cfg, d->creds), "node_credentials", node_creds_json(d->creds));
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!s)
        return 503;
    buf_printf(out, "%s\n", s);
    free(s);
    return 200;
}
