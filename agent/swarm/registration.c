/* Registration and heartbeats with the tracker. See registration.h. */
#include "swarm/registration.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "swarm/tracker_client.h"

#define COMP "registration"
#define REPLY_MAX (64 * 1024)

struct registration {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct tracker_client *tc;
    struct agent_info info;
    uint64_t interval_ms;
    struct store *store;
    uint64_t cache_max;
    size_t (*prewarm_running)(void *arg);
    void *prewarm_arg;
    struct tracker_call *req;
    struct registration_status st;
    bool closing;
    bool timer_closed;
};

static void schedule(struct registration *r, uint64_t ms);

/* Frees r once the timer has closed and no beat is in flight. */
static void maybe_free(struct registration *r)
{
    if (!r->timer_closed || r->req)
        return;
    tracker_client_destroy(r->tc);
    free(r);
}

static void timer_closed(uv_handle_t *h)
{
    struct registration *r = h->data;
    r->timer_closed = true;
    maybe_free(r);
}

/* Bytes the cache may still take under its limit. */
static uint64_t cache_free(struct registration *r, uint64_t used)
{
    uint64_t free_b = used < r->cache_max ? r->cache_max - used : 0;
    return free_b;
}

static void beat_done(void *arg, int rc, const struct http_client_response *resp, const char *url)
{
    struct registration *r = arg;
    char err[sizeof(r->st.last_error)] = "";
    r->req = NULL;
    if (r->closing) {
        maybe_free(r);
        return;
    }
    if (rc < 0) {
        snprintf(err, sizeof(err), "tracker unreachable: %s", shoal_strerror(rc));
    } else if (resp->status != 200) {
        /* The tracker's {"error":"..."}, cut to one line. */
        snprintf(err, sizeof(err), "tracker answered %ld: %.200s", resp->status,
                 resp->body.data ? resp->body.data : "");
        for (char *c = err; *c; c++) {
            if (*c == '\n' || *c == '\r')
                *c = ' ';
        }
    }
    if (err[0]) {
        r->st.failures++;
        if (r->st.registered || strcmp(err, r->st.last_error) != 0)
            LOG(WARN, COMP, "msg=\"heartbeat failed\" name=%s error=\"%s\"", r->info.name, err);
        r->st.registered = false;
        snprintf(r->st.last_error, sizeof(r->st.last_error), "%s", err);
    } else {
        if (!r->st.registered)
            LOG(INFO, COMP, "msg=registered name=%s tracker=%s mirror_url=%s", r->info.name, url,
                r->info.mirror_url);
        r->st.registered = true;
        r->st.last_ok_ms = uv_now(r->loop);
        r->st.last_error[0] = '\0';
    }
    schedule(r, r->interval_ms);
}

static void beat(uv_timer_t *t)
{
    struct registration *r = t->data;
    struct buf body;
    int rc;

    if (r->closing || r->req)
        return;
    r->info.cache_bytes = store_bytes(r->store);
    r->info.cache_max_bytes = r->cache_max;
    r->info.cache_free_bytes = cache_free(r, r->info.cache_bytes);
    r->info.blobs = store_blob_count(r->store);
    r->info.prewarm_running = r->prewarm_running ? r->prewarm_running(r->prewarm_arg) : 0;
    buf_init(&body, AGENT_INFO_BODY_MAX);
    rc = agent_info_encode(&r->info, &body);
    if (rc == 0)
        rc = tracker_client_post(r->tc, AGENT_INFO_PATH, body.data, body.len, REPLY_MAX, beat_done,
                                 r, &r->req);
    buf_dispose(&body);
    r->st.beats++;
    if (rc < 0) {
        r->req = NULL;
        r->st.failures++;
        r->st.registered = false;
        snprintf(r->st.last_error, sizeof(r->st.last_error), "cannot send: %s", shoal_strerror(rc));
        schedule(r, r->interval_ms);
    }
}

static void schedule(struct registration *r, uint64_t ms)
{
    if (!r->closing)
        uv_timer_start(&r->timer, beat, ms, 0);
}

int registration_create(uv_loop_t *loop, struct http_client *hc,
                        const struct registration_config *cfg, struct registration **out)
{
    *out = NULL;
    if (!cfg->info || !agent_name_valid(cfg->info->name) || !cfg->info->mirror_url[0] ||
        !cfg->tracker_urls || cfg->interval_ms == 0)
        return SHOAL_ECONFIG;
    struct registration *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    /* Its own client: the node name picks its preferred replica. */
    struct tracker_client_config tcc = {
        .urls = cfg->tracker_urls,
        .secret = cfg->secret,
        .secret_len = cfg->secret_len,
        .agent = cfg->info->name,
        .addr = cfg->info->peer_addr,
    };
    int rc = tracker_client_create(loop, hc, &tcc, &r->tc);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->loop = loop;
    r->info = *cfg->info;
    r->interval_ms = cfg->interval_ms;
    r->store = cfg->store;
    r->cache_max = cfg->cache_max_bytes;
    r->prewarm_running = cfg->prewarm_running;
    r->prewarm_arg = cfg->prewarm_arg;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    schedule(r, 0);
    *out = r;
    return 0;
}

void registration_destroy(struct registration *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    if (r->req)
        tracker_client_cancel(r->req); /* beat_done sees closing and returns */
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, timer_closed);
}

const struct registration_status *registration_status(const struct registration *r)
{
    return &r->st;
}
