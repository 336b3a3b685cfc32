/* shoal-tracker: coordinates the agents' blob swarms (docs/protocol.md). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <uv.h>

#include "api.h"
#include "shoal/admin_server.h"
#include "job_runner.h"
#include "shoal/http_client.h"
#include "shoal/error.h"
#include "shoal/http_server.h"
#include "shoal/log.h"
#include "shoal/nofile.h"
#include "shoal/tls.h"
#include "shoal/wire.h"
#include "state.h"
#include "state_redis.h"
#include "tracker_config.h"

#define EXPIRE_EVERY_MS 1000
/* How often a tracker running without a secret says so again. */
#define INSECURE_WARN_EVERY_MS 60000

struct tracker {
    uv_loop_t loop;
    struct tracker_config cfg;
    struct tracker_state *state;
    struct tracker_api *api;
    struct http_client *hc;
    struct job_runner *runner;
    struct http_server *server;
    struct admin_server *admin; /* NULL when admin-listen is off */
    struct tls_context *tls;    /* the API listener's; NULL = plaintext */
    uv_timer_t expire;
    uv_timer_t insecure;    /* repeats the no-secret warning */
    uv_timer_t listen_wait; /* Redis state: listen once it is up, or after state-timeout */
    bool listening;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    bool stopping;
    int exit_status;
};

static void on_expire(uv_timer_t *t)
{
    struct tracker *tr = t->data;

    tracker_state_expire(tr->state, uv_now(&tr->loop));
}

static void warn_insecure(uv_timer_t *t)
{
    (void)t;
    LOG(WARN, "tracker",
        "msg=\"running WITHOUT a cluster secret (--insecure-no-secret): anyone who reaches this "
        "port can announce, take leases and report peers; use --cluster-secret-file\"");
}

static void stop(struct tracker *tr, const char *why)
{
    if (tr->stopping)
        return;
    tr->stopping = true;
    LOG(INFO, "tracker", "msg=stopping reason=%s", why);
    admin_server_destroy(tr->admin);
    tr->admin = NULL;
    if (tr->server != NULL) {
        http_server_destroy(tr->server, NULL, NULL);
        tr->server = NULL;
    }
    /* The runner's requests are on the client: it goes first. */
    if (tr->runner != NULL) {
        job_runner_destroy(tr->runner);
        tr->runner = NULL;
    }
    if (tr->hc != NULL) {
        http_client_destroy(tr->hc, NULL, NULL);
        tr->hc = NULL;
    }
    /* Announces waiting on Redis end (503) and its connection closes. */
    tracker_state_close(tr->state);
    uv_close((uv_handle_t *)&tr->expire, NULL);
    uv_close((uv_handle_t *)&tr->insecure, NULL);
    uv_close((uv_handle_t *)&tr->listen_wait, NULL);
    uv_close((uv_handle_t *)&tr->sigint, NULL);
    uv_close((uv_handle_t *)&tr->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    stop(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static uint64_t seed(void)
{
    uint64_t s = 0;

    /* The shuffle only spreads load; a clock seed is good enough if the
     * kernel has no randomness to give. */
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
        s = uv_hrtime();
    return s;
}

static int admin_metrics(void *arg, struct buf *out)
{
    struct tracker *tr = arg;

    return tracker_api_metrics(tr->api, out);
}

/* Ready once the API listens, until the tracker stops, and, with Redis
 * state, while Redis answers (a replica that cannot reach it answers 503:
 * a load balancer had better send agents to one that can). */
static bool admin_ready(void *arg, struct buf *why)
{
    struct tracker *tr = arg;

    if (tr->stopping || tr->server == NULL) {
        buf_printf(why, "the API listener is not open");
        return false;
    }
    if (strcmp(tr->state->ops->name, "memory") != 0 && !tracker_state_redis_up(tr->state)) {
        buf_printf(why, "the Redis state store is unreachable");
        return false;
    }
    return true;
}

/* With TLS on the API port, Harbor and registries cannot reach their
 * endpoints there (they hold neither the cluster secret nor a certificate
 * from the cluster CA), so the plaintext admin listener serves those too,
 * each behind its own credentials (docs/harbor.md); never the cluster
 * API. Without TLS they stay on the API port only. */
static bool admin_route(void *arg, struct http_request *req)
{
    struct tracker *tr = arg;

    if (tr->tls == NULL || !tracker_api_harbor_path(req->path))
        return false;
    tracker_api_handle(req, tr->api);
    return true;
}

/* Opens the API. With Redis state it waits for the first connection (or
 * state-timeout, then it answers 503 until Redis is there), so a tracker
 * that just started does not turn its first announces away. */
static int start_listening(struct tracker *tr)
{
    const struct tracker_config *cfg = &tr->cfg;
    int rc;

    if (tr->listening || tr->stopping)
        return 0;
    tr->listening = true;
    uv_timer_stop(&tr->listen_wait);
    struct http_server_config hc = {
        .listen = cfg->listen,
        .max_connections = (unsigned)cfg->max_connections,
        .error_body = tracker_api_error_body,
        .max_body_bytes = TRACKER_API_MAX_BODY,
        .tls = tr->tls,
    };
    rc = http_server_create(&tr->loop, &hc, tracker_api_handle, tr->api, &tr->server);
    if (rc < 0) {
        fprintf(stderr, "shoal-tracker: cannot listen on %s: %s\n", cfg->listen,
                shoal_strerror(rc));
        return rc;
    }
    uv_timer_start(&tr->expire, on_expire, EXPIRE_EVERY_MS, EXPIRE_EVERY_MS);
    LOG(INFO, "tracker",
        "msg=ready listen=%s port=%d tls=%s admin_port=%d state=%s state_up=%d secret=%s "
        "interval_ms=%" PRId64 " peer_timeout_ms=%" PRId64 " lease_pieces=%" PRId64
        " lease_spread=%" PRId64 " lease_timeout_ms=%" PRId64 " hash_algo=%s bad_peer_ms=%" PRId64,
        cfg->listen, http_server_port(tr->server), tr->tls ? tls_context_describe(tr->tls) : "off",
        tr->admin ? admin_server_port(tr->admin) : 0, tr->state->ops->name,
        strcmp(tr->state->ops->name, "memory") == 0 || tracker_state_redis_up(tr->state),
        cfg->secret_len > 0 ? "file" : "NONE", cfg->interval_ms, cfg->peer_timeout_ms,
        cfg->lease_pieces, cfg->lease_spread, cfg->lease_timeout_ms,
        wire_hash_algo_name(cfg->hash_algo), cfg->bad_peer_time_ms);
    return 0;
}

static void listen_now(struct tracker *tr)
{
    if (start_listening(tr) < 0) {
        tr->exit_status = 1;
        stop(tr, "listen-failed");
    }
}

static void on_listen_wait(uv_timer_t *t)
{
    LOG(WARN, "tracker",
        "msg=\"Redis state not reachable yet; listening anyway (503 until it is)\"");
    listen_now(t->data);
}

static void on_state(void *arg, bool up)
{
    struct tracker *tr = arg;
    if (up && !tr->listening)
        listen_now(tr);
}

static int start(struct tracker *tr)
{
    const struct tracker_config *cfg = &tr->cfg;
    struct tracker_swarms_config sc;
    struct tracker_cluster_config cc;
    int rc;

    tracker_config_swarms(cfg, &sc);
    tracker_config_cluster(cfg, &cc);
    sc.seed = seed();
    if (strcmp(cfg->state, "memory") == 0) {
        rc = tracker_state_memory_create(&sc, &cc, &tr->state);
    } else {
        struct tracker_state_redis_config rcfg = {
            .url = cfg->state,
            .password = cfg->state_password,
            .password_len = cfg->state_password_len,
            .prefix = cfg->state_prefix,
            .timeout_ms = (uint64_t)cfg->state_timeout_ms,
            .secret = cfg->secret,
            .secret_len = cfg->secret_len,
            .on_state = on_state,
            .arg = tr,
        };
        char err[256] = "";
        rc = tracker_state_redis_create(&tr->loop, &rcfg, &sc, &cc, &tr->state, err, sizeof(err));
        if (rc < 0)
            fprintf(stderr, "shoal-tracker: config: \"state\": %s\n", err);
    }
    if (rc < 0)
        return rc;
    rc = http_client_create(&tr->loop, &tr->hc);
    if (rc < 0)
        return rc;
    struct job_runner_config rcfg = {
        .loop = &tr->loop,
        .hc = tr->hc,
        .state = tr->state,
        .secret = cfg->secret ? cfg->secret : "",
        .secret_len = cfg->secret_len,
        .poll_ms = (uint64_t)cfg->job_poll_interval_ms,
        .rules = &cfg->push_rules,
    };
    rc = job_runner_create(&rcfg, &tr->runner);
    if (rc < 0)
        return rc;
    struct tracker_api_config ac = {
        .loop = &tr->loop,
        .state = tr->state,
        .secret = cfg->secret,
        .secret_len = cfg->secret_len,
        .hash_algo = cfg->hash_algo,
        .runner = tr->runner,
        .harbor =
            {
                .provider_mode = cfg->provider_mode,
                .provider_token = cfg->provider_token,
                .provider_token_len = cfg->provider_token_len,
                .provider_header = cfg->provider_auth_header,
                .webhook_auth = cfg->webhook_auth,
                .webhook_auth_len = cfg->webhook_auth_len,
                .scopes = {.base = cfg->harbor_selector, .seed = cfg->harbor_seed_selector},
            },
    };
    rc = tracker_api_create(&ac, &tr->api);
    if (rc < 0)
        return rc;
    if (cfg->admin_listen) {
        struct admin_server_config adm = {
            .listen = cfg->admin_listen,
            .daemon = "tracker",
            .metrics = admin_metrics,
            .ready = admin_ready,
            .route = admin_route,
            /* Bodies only for Harbor's POSTs, which come here with TLS on. */
            .max_body_bytes = tr->tls ? TRACKER_API_MAX_BODY : 0,
            .arg = tr,
        };
        rc = admin_server_create(&tr->loop, &adm, &tr->admin);
        if (rc < 0) {
            fprintf(stderr,
                    "shoal-tracker: cannot listen on admin-listen %s: %s (give another "
                    "--admin-listen, or --admin-listen=off)\n",
                    cfg->admin_listen, shoal_strerror(rc));
            return rc;
        }
    }
    if (cfg->insecure_no_secret) {
        warn_insecure(&tr->insecure);
        uv_timer_start(&tr->insecure, warn_insecure, INSECURE_WARN_EVERY_MS,
                       INSECURE_WARN_EVERY_MS);
    }
    if (strcmp(tr->state->ops->name, "memory") == 0) {
        rc = start_listening(tr);
        if (rc < 0)
            return rc;
    } else {
        uv_timer_start(&tr->listen_wait, on_listen_wait, (uint64_t)cfg->state_timeout_ms, 0);
    }
    LOG(INFO, "tracker",
        "msg=\"cluster ready\" agent_timeout_ms=%" PRId64 " job_timeout_ms=%" PRId64
        " provider_auth=%s provider_token=%s webhooks=%s push_rules=%zu",
        cfg->agent_timeout_ms, cfg->job_timeout_ms, cfg->provider_auth,
        cfg->provider_token ? "file" : "none", cfg->webhook_auth ? "on" : "off", cfg->push_rules.n);
    return 0;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    static struct tracker tr;
    char err[512];
    int status = 0;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    /* For docs/configuration.md, which a test keeps in step with the table. */
    if (argc == 2 && strcmp(argv[1], "--print-config-markdown") == 0) {
        config_print_markdown(tracker_options, stdout);
        return 0;
    }
    rc = tracker_config_load(&tr.cfg, argc, argv, err, sizeof(err));
    if (rc == CONFIG_EXIT_HELP) {
        tracker_config_dispose(&tr.cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "shoal-tracker: %s\n", err);
        tracker_config_dispose(&tr.cfg);
        return 2;
    }
    log_threshold = (enum log_level)tr.cfg.log_level;
    nofile_setup("tracker", (uint64_t)tr.cfg.max_connections);
    if (tr.cfg.tls_mode != TLS_MODE_OFF) {
        struct tls_settings ts = {
            .mode = tr.cfg.tls_mode,
            .secret = tr.cfg.secret,
            .secret_len = tr.cfg.secret_len,
            .ca_file = tr.cfg.tls_ca,
            .cert_file = tr.cfg.tls_cert,
            .key_file = tr.cfg.tls_key,
            .ciphersuites = tr.cfg.tls_ciphersuites,
            .server_only = true,
        };
        if (tls_context_create(&ts, &tr.tls, err, sizeof(err)) < 0) {
            fprintf(stderr, "shoal-tracker: config: %s\n", err);
            tracker_config_dispose(&tr.cfg);
            return 2;
        }
    }
    uv_loop_init(&tr.loop);
    uv_timer_init(&tr.loop, &tr.expire);
    uv_timer_init(&tr.loop, &tr.insecure);
    uv_timer_init(&tr.loop, &tr.listen_wait);
    tr.listen_wait.data = &tr;
    uv_signal_init(&tr.loop, &tr.sigint);
    uv_signal_init(&tr.loop, &tr.sigterm);
    tr.expire.data = &tr;
    tr.sigint.data = &tr;
    tr.sigterm.data = &tr;
    uv_signal_start(&tr.sigint, on_signal, SIGINT);
    uv_signal_start(&tr.sigterm, on_signal, SIGTERM);

    if (start(&tr) < 0) {
        status = 1;
        stop(&tr, "start-failed");
    }
    uv_run(&tr.loop, UV_RUN_DEFAULT);
    if (tr.exit_status)
        status = tr.exit_status;
    uv_walk(&tr.loop, walk_close, NULL);
    uv_run(&tr.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&tr.loop) != 0)
        LOG(WARN, "tracker", "msg=\"loop not closed cleanly\"");
    tracker_api_destroy(tr.api);
    tracker_state_destroy(tr.state);
    tls_context_destroy(tr.tls);
    tracker_config_dispose(&tr.cfg);
    LOG(INFO, "tracker", "msg=stopped status=%d", status);
    return status;
}
