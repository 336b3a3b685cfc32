/* Tracker HTTP handlers: authentication, the announce decoded and its
 * reply encoded by common/announce.c (one clear message per bad field), the
 * calls into tracker_state, and the JSON and Prometheus answers.
 */
#include "api_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "shoal/agent_info.h"
#include "shoal/announce.h"
#include "shoal/cluster_auth.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/metrics.h"
#include "shoal/version.h"
#include "shoal/wire.h"
#include "job_runner.h"

#define COMP "tracker"
#define METRICS_MAX (1u << 20)
#define LIST_MAX (64u << 20)  /* 10000 swarms need about 2 MiB */
#define REPLY_MAX (16u << 20) /* 65536 sha256 hashes and 200 peers need about 5 MiB */

int tracker_api_create(const struct tracker_api_config *cfg, struct tracker_api **out)
{
    struct tracker_api *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (a == NULL)
        return -ENOMEM;
    a->cfg = *cfg;
    buf_init(&a->reply_body, REPLY_MAX);
    if (a->cfg.secret == NULL) {
        a->cfg.secret = "";
        a->cfg.secret_len = 0;
    }
    if (a->cfg.hash_algo == 0)
        a->cfg.hash_algo = WIRE_HASH_SHA256;
    if (cluster_auth_replay_create(0, &a->replay) < 0) {
        free(a);
        return -ENOMEM;
    }
    *out = a;
    return 0;
}

void tracker_api_destroy(struct tracker_api *a)
{
    if (a) {
        cluster_auth_replay_destroy(a->replay);
        buf_dispose(&a->reply_body);
    }
    free(a);
}

/* --- Answers ------------------------------------------------------------------- */

const char *tracker_api_error_body(int status, const char *message, struct buf *out)
{
    json_t *doc = json_pack("{s:s}", "error", message);
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

    (void)status;
    if (s != NULL)
        buf_printf(out, "%s\n", s);
    free(s);
    json_decref(doc);
    return s != NULL ? "application/json" : NULL;
}

/* --- Announce ---------------------------------------------------------------------- */

/* The core's reply in the protocol's terms (shoal/announce.h). */
static void wire_reply(const struct tracker_announce_reply *out, struct announce_reply *w)
{
    memset(w, 0, sizeof(*w));
    w->interval_ms = out->interval_ms;
    w->piece_length = out->piece_length;
    w->pieces = out->pieces;
    w->hash_algo = out->hash_algo;
    w->hash_len = out->hash_len;
    w->hashes = out->hashes;
    w->hashed = out->hashed;
    w->confirmed = out->confirmed;
    w->has_seq = out->has_seq;
    w->table = out->table;
    w->hashes_seq = out->hashes_seq;
    w->nhashed = out->nhashed;
    w->hash_list = out->hash_list;
    w->nhash_list = out->nhash_list;
    w->peers = out->peers;
    w->npeers = out->npeers;
    w->has_lease = out->has_lease;
    w->lease = out->lease;
    w->nlease = out->nlease;
    w->lease_expires_ms = out->lease_expires_ms;
}

/* Sends the reply; 200, or 503 when it cannot be built. The body buffer is
 * the api's, reused from reply to reply (the response copies it). */
static int answer_reply(struct tracker_api *a, struct http_request *req,
                        const struct tracker_announce_reply *out)
{
    struct announce_reply w;
    int status = 200;

    buf_reset(&a->reply_body);
    wire_reply(out, &w);
    if (announce_reply_encode(&w, &a->reply_body) < 0)
        status = api_answer_error(a, req, 503, "out of memory");
    else
        api_send(a, req, 200, "application/json", a->reply_body.data, a->reply_body.len);
    /* A rare large reply (a whole table) does not stay allocated. */
    if (a->reply_body.cap > (64u << 10))
        buf_dispose(&a->reply_body);
    return status;
}

/* An announce's context (api_internal.h). With a deferred state the
 * request's connection may close first (req then NULL); the context lives
 * until the state's answer and the request's on_close have both come. */

static void log_request(struct tracker_api *a, struct http_request *req, int status,
                        const char *note);

/* Answers from what the state did with the announce; returns the status. */
static int announce_answer(struct tracker_api *a, struct http_request *req,
                           const struct announce_req *r, int rc, struct tracker_announce_reply *out)
{
    if (rc == SHOAL_EPARSE) {
        a->bad_requests++;
        return api_answer_error(a, req, 400, out->error);
    }
    if (rc == SHOAL_EBUSY)
        return api_answer_error(a, req, 503, out->error);
    if (rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ECANCELED) {
        a->state_unavailable++;
        return api_answer_error(a, req, 503, "state: the tracker's state store is unavailable");
    }
    if (rc < 0)
        return api_answer_error(a, req, 503, shoal_strerror(rc));
    if (out->new_swarm)
        LOG(INFO, COMP,
            "msg=\"new swarm\" digest=%s size=%" PRIu64 " piece_length=%" PRIu64 " pieces=%" PRIu32
            " agent=%s",
            r->digest, r->size, out->piece_length, out->pieces, r->agent);
    if (out->hashes_ignored > 0)
        LOG(INFO, COMP,
            "msg=\"hashes ignored, pieces not leased to the agent\" agent=%s "
            "digest=%s ignored=%" PRIu32 " accepted=%" PRIu32,
            r->agent, r->digest, out->hashes_ignored, out->hashes_accepted);
    /* One line per report, so an operator can tell one agent's grudge from a
     * peer many agents complain about. The core checked the addresses, so
     * they are plain HOST:PORT text. */
    for (size_t i = 0; i < r->nbad_peers; i++)
        LOG(WARN, COMP,
            "msg=\"bad peer reported\" agent=%s bad_peer=%s digest=%s suspect_ms=%" PRIu64,
            r->agent, r->bad_peers[i], r->digest, out->suspect_ms);
    return answer_reply(a, req, out);
}

static void announce_ctx_free(struct announce_ctx *c)
{
    announce_req_doc_dispose(&c->d);
    if (c != &c->a->scratch)
        free(c);
}

static void announce_closed(struct http_request *req, void *arg)
{
    struct announce_ctx *c = arg;
    (void)req;
    c->req = NULL;
    if (!c->pending)
        announce_ctx_free(c);
}

static void announce_done(void *arg, int rc, struct tracker_announce_reply *out)
{
    struct announce_ctx *c = arg;
    c->pending = false;
    if (c->req == NULL) {
        /* The agent went away meanwhile; what the state did stands. */
        announce_ctx_free(c);
        return;
    }
    int status = announce_answer(c->a, c->req, &c->d.req, rc, out);
    log_request(c->a, c->req, status, c->note);
    /* on_close follows the response and frees c. */
}

/* Returns the status sent, or 0 while the state works on it. */
static int announce(struct tracker_api *a, struct http_request *req, char *note, size_t notelen)
{
    struct announce_ctx *c = a->cfg.state->ops->deferred ? malloc(sizeof(*c)) : &a->scratch;
    const struct announce_req *r;
    char err[ANNOUNCE_ERROR_MAX];
    int status;
    int rc;

    if (c == NULL)
        return api_answer_error(a, req, 503, "out of memory");
    c->a = a;
    c->req = req;
    c->pending = false;
    c->note[0] = '\0';
    r = &c->d.req;
    rc = announce_req_decode(req->body, req->body_len, a->cfg.hash_algo, &c->d, err, sizeof(err));
    if (rc < 0) {
        if (rc == SHOAL_EPARSE)
            a->bad_requests++;
        status = api_answer_error(a, req, rc == SHOAL_EPARSE ? 400 : 503, err);
        announce_ctx_free(c);
        return status;
    }
    snprintf(c->note, sizeof(c->note), " agent=%s digest=%.80s event=%s", r->agent, r->digest,
             announce_event_name(r->event));
    rc = tracker_state_announce(a->cfg.state, r, uv_now(a->cfg.loop), &c->out, announce_done, c);
    if (rc == TRACKER_STATE_PENDING) {
        c->pending = true;
        http_request_on_close(req, announce_closed, c);
        return 0;
    }
    snprintf(note, notelen, "%s", c->note);
    status = announce_answer(a, req, r, rc, &c->out);
    announce_ctx_free(c);
    return status;
}

/* --- Other endpoints ---------------------------------------------------------------- */

static int visit_swarm(const struct tracker_swarm_info *info, void *arg)
{
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "digest", info->digest, "size",
                          (json_int_t)info->size, "piece_length", (json_int_t)info->piece_length,
                          "pieces", (json_int_t)info->pieces, "hashed", (json_int_t)info->hashed,
                          "peers", (json_int_t)info->peers, "seeds", (json_int_t)info->seeds,
                          "leased", (json_int_t)info->leased);

    return json_array_append_new(arg, o) < 0 ? -ENOMEM : 0;
}

struct list_ctx {
    struct tracker_api *a;
    struct http_request *req; /* NULL once its connection closed */
    json_t *arr;
    bool pending;
};

static void list_ctx_free(struct list_ctx *c)
{
    json_decref(c->arr);
    free(c);
}

static int list_answer(struct list_ctx *c, int rc)
{
    if (rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ECANCELED) {
        c->a->state_unavailable++;
        return api_answer_error(c->a, c->req, 503,
                                "state: the tracker's state store is unavailable");
    }
    if (rc < 0)
        return api_answer_error(c->a, c->req, 503, "out of memory");
    json_t *arr = c->arr;
    c->arr = NULL;
    return api_answer_json(c->a, c->req, 200, json_pack("{s:o}", "swarms", arr));
}

static void list_closed(struct http_request *req, void *arg)
{
    struct list_ctx *c = arg;
    (void)req;
    c->req = NULL;
    if (!c->pending)
        list_ctx_free(c);
}

static void list_done(void *arg, int rc)
{
    struct list_ctx *c = arg;
    c->pending = false;
    if (c->req == NULL) {
        list_ctx_free(c);
        return;
    }
    log_request(c->a, c->req, list_answer(c, rc), "");
}

/* Returns the status sent, or 0 while the state works on it. */
static int list_swarms(struct tracker_api *a, struct http_request *req)
{
    struct list_ctx *c = calloc(1, sizeof(*c));
    int status, rc;

    if (c == NULL || (c->arr = json_array()) == NULL) {
        free(c);
        return api_answer_error(a, req, 503, "out of memory");
    }
    c->a = a;
    c->req = req;
    rc = tracker_state_list(a->cfg.state, uv_now(a->cfg.loop), visit_swarm, c->arr, list_done, c);
    if (rc == TRACKER_STATE_PENDING) {
        c->pending = true;
        http_request_on_close(req, list_closed, c);
        return 0;
    }
    status = list_answer(c, rc);
    list_ctx_free(c);
    return status;
}

int tracker_api_metrics(struct tracker_api *a, struct buf *out)
{
    struct tracker_stats st;
    int rc = 0;

    tracker_state_stats(a->cfg.state, &st);
    rc = metrics_write_build_info(out, "tracker", SHOAL_VERSION);
#define M(name, type, help, v)                                                                     \
    if (rc == 0)                                                                                   \
    rc = metrics_write(out, name, type, help, NULL, v)
    M("shoal_tracker_announces_total", "counter", "Announces processed.", st.announces);
    M("shoal_tracker_swarms", "gauge", "Swarms known (with peers or kept piece hashes).",
      st.swarms);
    M("shoal_tracker_peers", "gauge", "Peers over all swarms.", st.peers);
    M("shoal_tracker_leases_granted_total", "counter", "Upstream leases granted.",
      st.leases_granted);
    M("shoal_tracker_leases_expired_total", "counter",
      "Leases ended by their own timeout or their holder's.", st.leases_expired);
    M("shoal_tracker_auth_failures_total", "counter", "Requests refused with 401.",
      a->auth_failures);
    M("shoal_tracker_hashes_accepted_total", "counter", "Piece hashes taken from lease holders.",
      st.hashes_accepted);
    M("shoal_tracker_hashes_ignored_total", "counter",
      "Piece hashes ignored (piece not leased to the reporter).", st.hashes_ignored);
    M("shoal_tracker_peers_expired_total", "counter", "Peers dropped for not announcing.",
      st.peers_expired);
    M("shoal_tracker_bad_requests_total", "counter", "Requests refused with 400.", a->bad_requests);
    M("shoal_tracker_state_up", "gauge",
      "1 while the state store answers (always with memory state; Redis otherwise).", st.state_up);
    M("shoal_tracker_state_outages_total", "counter", "Times the Redis state became unreachable.",
      st.state_outages);
    M("shoal_tracker_state_unavailable_total", "counter",
      "Requests answered 503 because the state store was unreachable.", a->state_unavailable);
    M("shoal_tracker_bad_peer_reports_total", "counter",
      "Peer addresses reported by agents for sending a piece that failed its hash.",
      st.bad_peer_reports);
    M("shoal_tracker_swarms_refused_total", "counter",
      "New swarms refused because their agent reached max-swarms-per-agent.", st.swarms_refused);
    struct tracker_jobs_stats js;
    tracker_state_jobs_stats(a->cfg.state, &js);
    M("shoal_tracker_agents", "gauge", "Agents in the inventory.",
      tracker_state_agents_count(a->cfg.state));
    M("shoal_tracker_jobs_created_total", "counter", "Preheat jobs created.", js.created);
    M("shoal_tracker_jobs_succeeded_total", "counter", "Preheat jobs that ended SUCCESS.",
      js.succeeded);
    M("shoal_tracker_jobs_failed_total", "counter", "Preheat jobs that ended FAILURE.", js.failed);
    M("shoal_tracker_jobs_pending", "gauge", "Preheat jobs in progress.", js.pending);
    M("shoal_tracker_job_tasks_running", "gauge", "Agents starting or running a job's prewarm.",
      js.tasks_running);
    if (a->cfg.runner) {
        const struct job_runner_stats *rs = job_runner_stats(a->cfg.runner);
        M("shoal_tracker_pushes_total", "counter",
          "Pushed manifests reported by webhooks and registry notifications.", rs->pushes);
        M("shoal_tracker_pushes_warmed_total", "counter", "Pushes a push rule turned into a job.",
          rs->pushes_matched);
        M("shoal_tracker_agent_requests_total", "counter",
          "Prewarm starts and polls sent to agents.", rs->start_requests + rs->poll_requests);
        M("shoal_tracker_agent_request_errors_total", "counter",
          "Prewarm starts and polls that got no usable answer.", rs->request_errors);
    }
#undef M
    return rc;
}

static int metrics(struct tracker_api *a, struct http_request *req)
{
    struct buf out;

    buf_init(&out, METRICS_MAX);
    tracker_api_metrics(a, &out);
    http_response_simple(req, 200, "text/plain; version=0.0.4", out.data ? out.data : "", out.len,
                         NULL);
    buf_dispose(&out);
    return 200;
}

/* --- Routing ------------------------------------------------------------------------ */

/* One line per request. Agents announce every second and heartbeat every
 * few: keep those lines out of the info log unless something went wrong. */
static void log_request(struct tracker_api *a, struct http_request *req, int status,
                        const char *note)
{
    const char *path = req->path;
    bool quiet = status == 200 && strcmp(req->method, "POST") == 0 &&
                 (strcmp(path, "/v1/announce") == 0 || strcmp(path, AGENT_INFO_PATH) == 0);

    if (quiet)
        LOG(DEBUG, "http",
            "id=%" PRIu64 " method=%s path=%.200s status=%d duration_ms=%" PRIu64 " peer=%s%s",
            req->id, req->method, path, status, uv_now(a->cfg.loop) - req->start_ms, req->peer,
            note);
    else
        LOG(INFO, "http",
            "id=%" PRIu64 " method=%s path=%.200s status=%d duration_ms=%" PRIu64 " peer=%s%s",
            req->id, req->method, path, status, uv_now(a->cfg.loop) - req->start_ms, req->peer,
            note);
}

static bool is_get(const struct http_request *req)
{
    return strcmp(req->method, "GET") == 0 || req->is_head;
}

void tracker_api_handle(struct http_request *req, void *ctx)
{
    struct tracker_api *a = ctx;
    const char *path = req->path;
    bool is_announce = strcmp(path, "/v1/announce") == 0;
    bool is_agents = strcmp(path, AGENT_INFO_PATH) == 0;
    bool is_jobs = strcmp(path, "/v1/jobs") == 0;
    bool is_job = strncmp(path, "/v1/jobs/", 9) == 0;
    bool is_post = strcmp(req->method, "POST") == 0;
    char note[300] = "";
    int status;

    if ((status = api_harbor_handle(a, req, note, sizeof(note))) != 0) {
        /* one of Harbor's or a registry's endpoints: answered */
    } else if (strcmp(path, "/_shoal/health") == 0 && is_get(req)) {
        static const char ok[] = "{\"status\":\"ok\"}\n";

        http_response_simple(req, 200, "application/json", ok, sizeof(ok) - 1, NULL);
        status = 200;
    } else if (strcmp(path, "/metrics") == 0 && is_get(req)) {
        status = metrics(a, req);
    } else if (is_announce && strcmp(req->method, "POST") == 0) {
        if (api_authorized(a, req, &status))
            status = announce(a, req, note, sizeof(note));
    } else if (strcmp(path, "/v1/swarms") == 0 && is_get(req)) {
        if (api_authorized(a, req, &status))
            status = list_swarms(a, req);
    } else if (is_agents && is_post) {
        if (api_authorized(a, req, &status))
            status = api_agents_heartbeat(a, req, note, sizeof(note));
    } else if (is_agents && is_get(req)) {
        if (api_authorized(a, req, &status))
            status = api_agents_list(a, req);
    } else if (is_jobs && is_post) {
        if (api_authorized(a, req, &status))
            status = api_jobs_create(a, req, note, sizeof(note));
    } else if (is_jobs && is_get(req)) {
        if (api_authorized(a, req, &status))
            status = api_jobs_list(a, req);
    } else if (is_job && is_get(req)) {
        if (api_authorized(a, req, &status))
            status = api_jobs_get(a, req, path + 9);
    } else if (is_announce || is_agents || is_jobs || is_job || strcmp(path, "/v1/swarms") == 0 ||
               strcmp(path, "/_shoal/health") == 0 || strcmp(path, "/metrics") == 0) {
        status = api_answer_error(a, req, 405, "method not allowed");
    } else {
        status = api_answer_error(a, req, 404, "no such endpoint");
    }
    if (status != 0)
        log_request(a, req, status, note);
}
