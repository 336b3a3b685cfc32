/* GET /_shoal/status. See status.h. */
#include "api/status.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/prewarm.h"
#include "swarm/registration.h"
#include "swarm/swarm.h"

static json_t *upstreams_json(const struct agent_config *cfg)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < cfg->upstreams.n; i++) {
        const struct upstream_def *d = &cfg->upstreams.defs[i];
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:s,s:b,s:s?}", "host", d->host, "url", d->url,
                                        "auth", d->username ? "basic" : "anonymous", "insecure",
                                        d->insecure, "repo_prefix", d->repo_prefix));
    }
    return arr;
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
        "{s:s,s:s,s:s,s:o,s:s?,s:o,s:{s:I,s:I,s:I,s:I},s:{s:b,s:I,s:I,s:I,s:I,s:I},s:{s:I},s:o}",
        "node", cfg->node_name, "version", d->version, "mirror_url", d->mirror_url, "labels",
        labels, "tracker", cfg->tracker, "registration", registration_json(d), "cache", "bytes",
        (json_int_t)used, "max_bytes", (json_int_t)cfg->cache_max_bytes, "free_bytes",
        (json_int_t)(used < cfg->cache_max_bytes ? cfg->cache_max_bytes - used : 0), "blobs",
        (json_int_t)store_blob_count(d->store), "swarm", "enabled", d->swarm != NULL, "active",
        (json_int_t)ss->swarms_active, "peer_rx_bytes", (json_int_t)ss->peer_rx_bytes,
        "peer_tx_bytes", (json_int_t)ss->peer_tx_bytes, "pieces_verified",
        (json_int_t)ss->pieces_verified, "fallbacks", (json_int_t)ss->fallbacks, "prewarm",
        "running", (json_int_t)(d->prewarm ? prewarm_running(d->prewarm) : 0), "upstreams",
        upstreams_json(cfg));
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!s)
        return 503;
    buf_printf(out, "%s\n", s);
    free(s);
    return 200;
}
