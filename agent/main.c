/* shoal-agent: the node-local, read-only OCI registry mirror. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "config/agent_config.h"
#include "fetch/blob_fetch.h"
#include "api/mirror.h"
#include "api/prewarm.h"
#include "api/status.h"
#include "shoal/admin_server.h"
#include "shoal/error.h"
#include "shoal/http_client.h"
#include "shoal/http_server.h"
#include "shoal/log.h"
#include "shoal/nofile.h"
#include "shoal/ratelimit.h"
#include "cache/blob_verify.h"
#include "shoal/tls.h"
#include "cache/store.h"
#include "setup/runtime_wiring.h"
#include "shoal/version.h"
#include "swarm/registration.h"
#include "swarm/swarm.h"
#include "upstream/job_creds.h"
#include "upstream/node_creds.h"
#include "upstream/upstream.h"

/* How often an agent running its swarm without a secret says so again. */
#define INSECURE_WARN_EVERY_MS 60000

struct agent {
    uv_loop_t loop;
    struct agent_config cfg;
    struct store *store;
    struct blob_verify *verify;
    struct http_client *hc;
    struct upstream *up;
    struct node_creds *creds; /* docker-config, pull-secrets-dir, password files */
    struct blob_fetcher *fetcher;
    struct swarm *swarm;
    struct ratelimit ingress;
    struct ratelimit egress;
    struct mirror *mirror;
    struct http_server *server;
    struct admin_server *admin; /* NULL when admin-listen is off */
    struct prewarm *prewarm;
    struct job_creds *job_creds;
    struct registration *reg;
    struct tls_context *tls; /* the peer port's and the tracker client's; NULL = off */
    struct status_deps status;
    char mirror_url[AGENT_URL_MAX + 1];
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_signal_t sighup;  /* reloads the credentials */
    uv_timer_t insecure; /* repeats the no-secret warning; open when insecure_open */
    bool insecure_open;
    bool stopping;
};

static void warn_insecure(uv_timer_t *t)
{
    (void)t;
    LOG(WARN, "agent",
        "msg=\"swarm WITHOUT a cluster secret (--insecure-no-secret): the tracker and every "
        "peer accept anyone, and anyone can fetch cached blobs from this peer port; use "
        "--cluster-secret-file\"");
}

/* Whether a listen address is only reachable from this host. */
static bool loopback_addr(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]:", 6) == 0 ||
           strncmp(addr, "localhost:", 10) == 0;
}

/* Downloads (partials are kept for the next start), then upstream and curl. */
static void stop_backends(struct agent *a)
{
    if (a->verify) {
        blob_verify_destroy(a->verify);
        a->verify = NULL;
    }
    if (a->fetcher) {
        blob_fetcher_destroy(a->fetcher);
        a->fetcher = NULL;
    }
    if (a->swarm) {
        swarm_destroy(a->swarm);
        a->swarm = NULL;
    }
    if (a->up) {
        upstream_destroy(a->up);
        a->up = NULL;
    }
    node_creds_destroy(a->creds);
    a->creds = NULL;
    if (a->hc) {
        http_client_destroy(a->hc, NULL, NULL);
        a->hc = NULL;
    }
}

static void on_server_closed(void *arg)
{
    stop_backends(arg);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;
    if (a->stopping)
        return;
    a->stopping = true;
    LOG(INFO, "agent", "msg=stopping signal=%s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_signal_stop(&a->sigint);
    uv_signal_stop(&a->sigterm);
    uv_signal_stop(&a->sighup);
    /* Probes fail from here on: the orchestrator sees the agent go. */
    admin_server_destroy(a->admin);
    a->admin = NULL;
    /* The registration beats over the http client too. */
    if (a->reg) {
        registration_destroy(a->reg);
        a->reg = NULL;
        a->status.reg = NULL;
    }
    /* Prewarm jobs are requests on the http client: cancel them before it. */
    if (a->prewarm) {
        mirror_set_prewarm(a->mirror, NULL);
        prewarm_destroy(a->prewarm);
        a->prewarm = NULL;
        a->status.prewarm = NULL;
    }
    /* Order matters: clients first, as they hold blob readers. Their on_close
     * callbacks (which detach the readers) run only as the connections'
     * handles close, so the downloads are stopped once the server is gone,
     * not right after asking it to go. */
    if (a->server) {
        http_server_destroy(a->server, on_server_closed, a);
        a->server = NULL;
    } else {
        stop_backends(a);
    }
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    if (a->insecure_open) {
        uv_close((uv_handle_t *)&a->insecure, NULL);
        a->insecure_open = false;
    }
}

/* --- credentials --- */

/* The node's credentials or a password file changed: take the passwords
 * anew and drop what was fetched with the old credentials. Downloads in
 * flight keep going with what they hold. */
static void credentials_changed(struct agent *a, const char *why)
{
    char err[512];
    int rc = agent_config_reload_passwords(&a->cfg, err, sizeof(err));

    if (rc < 0)
        LOG(WARN, "agent",
            "msg=\"password files not reloaded; the previous passwords stay\" "
            "why=%s error=\"%s\"",
            why, err);
    else if (rc == 1)
        LOG(INFO, "agent", "msg=\"upstream passwords reloaded\" why=%s", why);
    if (a->up)
        upstream_forget_shared_credentials(a->up);
}

static void on_credentials_change(void *arg)
{
    credentials_changed(arg, "file-change");
}

static void on_sighup(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;
    (void)signum;

    if (a->stopping || !a->creds)
        return;
    LOG(INFO, "agent", "msg=\"SIGHUP: reloading credentials (other settings need a restart)\"");
    if (node_creds_reload(a->creds, "SIGHUP") == 1)
        credentials_changed(a, "SIGHUP");
}

static int start_credentials(struct agent *a)
{
    const struct agent_config *cfg = &a->cfg;
    const char *files[64];
    size_t n = 0;
    char err[600];

    for (size_t i = 0; i < cfg->upstreams.n && n < 63; i++)
        if (cfg->upstreams.defs[i].password_file)
            files[n++] = cfg->upstreams.defs[i].password_file;
    files[n] = NULL;
    struct node_creds_config nc = {
        .docker_config = cfg->docker_config,
        .secrets_dir = cfg->pull_secrets_dir,
        .watch_files = files,
        .check_interval_ms = (uint64_t)cfg->credentials_check_interval_ms,
        .on_change = on_credentials_change,
        .arg = a,
    };
    int rc = node_creds_create(&a->loop, &nc, &a->creds, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "shoal-agent: cannot read registry credentials: %s\n", err);
        return rc;
    }
    upstream_set_node_creds(a->up, a->creds);
    return 0;
}

static size_t prewarm_running_cb(void *arg)
{
    struct agent *a = arg;
    return a->prewarm ? prewarm_running(a->prewarm) : 0;
}

/* The agent's entry in the tracker's inventory. */
static int start_registration(struct agent *a)
{
    const struct agent_config *cfg = &a->cfg;
    struct agent_info info;
    memset(&info, 0, sizeof(info));
    snprintf(info.name, sizeof(info.name), "%s", cfg->node_name);
    snprintf(info.mirror_url, sizeof(info.mirror_url), "%s", a->mirror_url);
    snprintf(info.peer_addr, sizeof(info.peer_addr), "%s",
             cfg->advertise ? cfg->advertise : cfg->peer_listen);
    snprintf(info.version, sizeof(info.version), "%s", SHOAL_VERSION);
    info.nlabels = cfg->nlabels;
    memcpy(info.labels, cfg->labels, sizeof(info.labels));
    struct registration_config rc_ = {
        .tracker_urls = cfg->tracker,
        .secret = cfg->secret ? cfg->secret : "",
        .secret_len = cfg->secret_len,
        .info = &info,
        .interval_ms = (uint64_t)cfg->register_interval_ms,
        .store = a->store,
        .cache_max_bytes = cfg->cache_max_bytes,
        .prewarm_running = prewarm_running_cb,
        .prewarm_arg = a,
    };
    int rc = registration_create(&a->loop, a->hc, &rc_, &a->reg);
    if (rc < 0) {
        fprintf(stderr, "shoal-agent: cannot register with the tracker: %s\n", shoal_strerror(rc));
        return rc;
    }
    a->status.reg = a->reg;
    return 0;
}

/* --- the admin listener's hooks --- */

static int admin_metrics(void *arg, struct buf *out)
{
    struct agent *a = arg;

    return mirror_metrics(a->mirror, out);
}

/* How long the tracker may go without accepting a registration beat before
 * the agent stops calling itself ready: a few missed beats, not one. */
static uint64_t tracker_grace_ms(const struct agent_config *cfg)
{
    return 3 * (uint64_t)cfg->register_interval_ms;
}

/* Ready: started (store open, configuration and credentials loaded,
 * listeners bound), not stopping, and the tracker accepted a registration
 * beat lately, unless tracker-optional or there is no tracker. */
static bool admin_ready(void *arg, struct buf *why)
{
    struct agent *a = arg;
    const struct agent_config *cfg = &a->cfg;
    bool ready = true;

    if (a->stopping || !a->store || !a->server) {
        buf_printf(why, "not serving: starting or stopping\n");
        ready = false;
    }
    if (cfg->tracker && !cfg->tracker_optional) {
        const struct registration_status *st = a->reg ? registration_status(a->reg) : NULL;
        uint64_t now = uv_now(&a->loop), grace = tracker_grace_ms(cfg);
        if (!st || st->last_ok_ms == 0) {
            buf_printf(why, "tracker %s has not accepted a registration yet%s%.200s\n",
                       cfg->tracker, st && st->last_error[0] ? ": " : "", st ? st->last_error : "");
            ready = false;
        } else if (now - st->last_ok_ms > grace) {
            buf_printf(why,
                       "tracker %s has not accepted a registration for %llu s%s%.200s "
                       "(tracker-optional makes readiness ignore it)\n",
                       cfg->tracker, (unsigned long long)((now - st->last_ok_ms) / 1000),
                       st->last_error[0] ? ": " : "", st->last_error);
            ready = false;
        }
    }
    return ready;
}

static int start_admin(struct agent *a)
{
    const struct agent_config *cfg = &a->cfg;
    struct admin_server_config adm = {
        .listen = cfg->admin_listen,
        .daemon = "agent",
        .metrics = admin_metrics,
        .ready = admin_ready,
        .arg = a,
    };
    int rc = admin_server_create(&a->loop, &adm, &a->admin);
    if (rc < 0)
        fprintf(stderr,
                "shoal-agent: cannot listen on admin-listen %s: %s (give another "
                "--admin-listen, or --admin-listen=off)\n",
                cfg->admin_listen, shoal_strerror(rc));
    return rc;
}

static uint64_t rate_burst(uint64_t rate)
{
    uint64_t min = 16u << 20;
    return rate / 2 > min ? rate / 2 : min;
}

static int agent_start(struct agent *a)
{
    const struct agent_config *cfg = &a->cfg;
    int rc;

    struct store_config sc = {
        .dir = cfg->data_dir,
        .max_bytes = cfg->cache_max_bytes,
        .high_pct = (unsigned)cfg->cache_high_pct,
        .low_pct = (unsigned)cfg->cache_low_pct,
        .group_read = cfg->cache_group != NULL,
        .gid = cfg->cache_gid,
    };
    /* The store sets the modes of what it makes; the umask covers the
     * files made beside it (the piece records of partial downloads) and
     * anything added later. */
    umask(cfg->cache_group ? 027 : 077);
    rc = store_open(&sc, &a->store);
    if (rc < 0) {
        fprintf(stderr, "shoal-agent: cannot open data dir %s: %s\n", cfg->data_dir,
                shoal_strerror(rc));
        return rc;
    }
    rc = blob_verify_create(&a->loop, a->store, &a->verify);
    if (rc < 0)
        return rc;
    rc = http_client_create(&a->loop, &a->hc);
    if (rc < 0)
        return rc;
    if (a->tls && cfg->tracker) {
        rc = http_client_set_cluster_tls(a->hc, cfg->tracker, a->tls);
        if (rc < 0) {
            fprintf(stderr, "shoal-agent: cannot use TLS to the tracker %s: %s\n", cfg->tracker,
                    shoal_strerror(rc));
            return rc;
        }
    }
    struct upstream_opts uo = {
        .max_retries = (int)cfg->upstream_retries,
        .retry_base_ms = 200,
        .retry_max_ms = cfg->upstream_retry_max_ms,
        .low_speed_time_s = (long)((cfg->upstream_timeout_ms + 999) / 1000),
    };
    rc = upstream_create(&a->loop, a->hc, &uo, &a->up);
    if (rc < 0)
        return rc;
    rc = start_credentials(a);
    if (rc < 0)
        return rc;
    /* Token buckets; the burst holds a few pieces so whole-piece requests fit. */
    ratelimit_init(&a->ingress, cfg->ingress_rate, rate_burst(cfg->ingress_rate));
    ratelimit_init(&a->egress, cfg->egress_rate, rate_burst(cfg->egress_rate));
    if (cfg->tracker) {
        struct swarm_config swc = {
            .tracker_urls = cfg->tracker,
            .secret = cfg->secret ? cfg->secret : "",
            .secret_len = cfg->secret_len,
            .peer_listen = cfg->peer_listen,
            .advertise = cfg->advertise,
            .stall_timeout_ms = (uint64_t)cfg->swarm_stall_timeout_ms,
            .seed_time_ms = (uint64_t)cfg->seed_time_ms,
            .max_peers = (unsigned)cfg->swarm_max_peers,
            .reader_window = (unsigned)cfg->swarm_reader_window,
            .ban_time_ms = (uint64_t)cfg->ban_time_ms,
            .min_size = cfg->swarm_min_size,
            .ingress = &a->ingress,
            .egress = &a->egress,
            .tls = a->tls,
        };
        rc = swarm_create(&a->loop, a->hc, a->up, &swc, &a->swarm);
        if (rc < 0) {
            fprintf(stderr, "shoal-agent: cannot start the swarm (peer-listen %s): %s\n",
                    cfg->peer_listen, shoal_strerror(rc));
            return rc;
        }
        if (cfg->insecure_no_secret) {
            uv_timer_init(&a->loop, &a->insecure);
            a->insecure_open = true;
            warn_insecure(&a->insecure);
            uv_timer_start(&a->insecure, warn_insecure, INSECURE_WARN_EVERY_MS,
                           INSECURE_WARN_EVERY_MS);
        }
        if (!cfg->advertise && loopback_addr(cfg->peer_listen))
            LOG(WARN, "agent",
                "msg=\"peer-listen %s is loopback: agents on other hosts cannot reach this "
                "one; give the node's address (or 0.0.0.0:PORT with --advertise)\"",
                cfg->peer_listen);
    }
    rc = blob_fetcher_create(&a->loop, a->store, a->up, a->swarm, &a->fetcher);
    if (rc < 0)
        return rc;
    blob_fetcher_set_ingress(a->fetcher, &a->ingress);
    rc = job_creds_create(&a->job_creds);
    if (rc < 0)
        return rc;
    a->status = (struct status_deps){
        .loop = &a->loop,
        .cfg = cfg,
        .version = SHOAL_VERSION,
        .mirror_url = a->mirror_url,
        .store = a->store,
        .swarm = a->swarm,
        .creds = a->creds,
    };
    struct mirror_deps md = {
        .loop = &a->loop,
        .cfg = cfg,
        .store = a->store,
        .verify = a->verify,
        .up = a->up,
        .fetcher = a->fetcher,
        .swarm = a->swarm,
        .job_creds = a->job_creds,
        .creds = a->creds,
        .status = &a->status,
    };
    rc = mirror_create(&md, &a->mirror);
    if (rc < 0)
        return rc;
    struct http_server_config hc = {
        .listen = cfg->listen,
        .max_header_bytes = (size_t)cfg->max_header_bytes,
        .header_timeout_ms = (uint64_t)cfg->header_timeout_ms,
        .idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms,
        .max_connections = (unsigned)cfg->max_connections,
        .error_body = mirror_error_body,
        /* Only POST /_shoal/prewarm has a body, a small JSON object. */
        .max_body_bytes = 64 * 1024,
    };
    rc = http_server_create(&a->loop, &hc, mirror_handle, a->mirror, &a->server);
    if (rc < 0) {
        fprintf(stderr, "shoal-agent: cannot listen on %s: %s\n", cfg->listen, shoal_strerror(rc));
        return rc;
    }
    /* Prewarm fetches through this very server, so it needs the bound port. */
    struct prewarm_deps pd = {
        .loop = &a->loop,
        .store = a->store,
        .hc = a->hc,
        .fetcher = a->fetcher,
        .listen = cfg->listen,
        .port = http_server_port(a->server),
        .creds = a->job_creds,
        .up = a->up,
        .secret = cfg->secret,
        .secret_len = cfg->secret_len,
    };
    rc = prewarm_create(&pd, &a->prewarm);
    if (rc < 0)
        return rc;
    mirror_set_prewarm(a->mirror, a->prewarm);
    a->status.prewarm = a->prewarm;
    rc = agent_config_mirror_url(cfg, http_server_port(a->server), a->mirror_url,
                                 sizeof(a->mirror_url));
    if (rc < 0) {
        fprintf(stderr, "shoal-agent: cannot build the mirror URL from listen %s\n", cfg->listen);
        return rc;
    }
    if (cfg->tracker) {
        rc = start_registration(a);
        if (rc < 0)
            return rc;
    }
    if (cfg->admin_listen) {
        rc = start_admin(a);
        if (rc < 0)
            return rc;
    }
    uv_signal_init(&a->loop, &a->sigint);
    uv_signal_init(&a->loop, &a->sigterm);
    uv_signal_init(&a->loop, &a->sighup);
    a->sigint.data = a;
    a->sigterm.data = a;
    a->sighup.data = a;
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);
    uv_signal_start(&a->sighup, on_sighup, SIGHUP);
    LOG(INFO, "agent",
        "msg=ready listen=%s port=%d admin_port=%d data_dir=%s upstream=%s cache_max=%llu node=%s "
        "mirror_url=%s tls=%s",
        cfg->listen, http_server_port(a->server), a->admin ? admin_server_port(a->admin) : 0,
        cfg->data_dir, cfg->upstream, (unsigned long long)cfg->cache_max_bytes, cfg->node_name,
        a->mirror_url, a->tls ? tls_context_describe(a->tls) : "off");
    return 0;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    static struct agent a;
    char err[512];
    int status = 0;

    signal(SIGPIPE, SIG_IGN);
    /* Piece and chunk buffers (256 KiB to 16 MiB) come and go all the time.
     * Served from mmap, each would be a fresh, zero-filled mapping faulted
     * in page by page; kept in the heap, freed buffers are reused as they
     * are. The heap keeps up to the trim threshold of free memory. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    /* shoal-agent configure|unconfigure RUNTIME: a one-shot command that
     * edits runtime config files, not the daemon; it reads no daemon config. */
    if (runtime_wiring_is_command(argc, argv))
        return runtime_wiring_main(argc, argv);
    /* For docs/configuration.md, which a test keeps in step with the table. */
    if (argc == 2 && strcmp(argv[1], "--print-config-markdown") == 0) {
        config_print_markdown(agent_options, stdout);
        return 0;
    }
    int rc = agent_config_load(&a.cfg, argc, argv, err, sizeof(err));
    if (rc == CONFIG_EXIT_HELP) {
        agent_config_dispose(&a.cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "shoal-agent: %s\n", err);
        agent_config_dispose(&a.cfg);
        return 2;
    }
    log_threshold = (enum log_level)a.cfg.log_level;
    nofile_setup("agent", (uint64_t)a.cfg.max_connections);
    /* Certificates and keys are read now, so a bad one is a configuration
     * error like any other. */
    if (a.cfg.tls_mode != TLS_MODE_OFF) {
        struct tls_settings ts = {
            .mode = a.cfg.tls_mode,
            .secret = a.cfg.secret,
            .secret_len = a.cfg.secret_len,
            .ca_file = a.cfg.tls_ca,
            .cert_file = a.cfg.tls_cert,
            .key_file = a.cfg.tls_key,
            .ciphersuites = a.cfg.tls_ciphersuites,
        };
        if (tls_context_create(&ts, &a.tls, err, sizeof(err)) < 0) {
            fprintf(stderr, "shoal-agent: config: %s\n", err);
            agent_config_dispose(&a.cfg);
            return 2;
        }
    }
    uv_loop_init(&a.loop);

    if (agent_start(&a) < 0) {
        status = 1;
        /* Tear down whatever started, through the same path as a signal. */
        a.sigint.data = &a;
        uv_signal_init(&a.loop, &a.sigint);
        uv_signal_init(&a.loop, &a.sigterm);
        uv_signal_init(&a.loop, &a.sighup);
        on_signal(&a.sigint, SIGTERM);
    }
    uv_run(&a.loop, UV_RUN_DEFAULT);
    mirror_destroy(a.mirror);
    job_creds_destroy(a.job_creds);
    if (a.store)
        store_close(a.store);
    uv_walk(&a.loop, walk_close, NULL);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a.loop) != 0)
        LOG(WARN, "agent", "msg=\"loop not closed cleanly\"");
    tls_context_destroy(a.tls);
    agent_config_dispose(&a.cfg);
    LOG(INFO, "agent", "msg=stopped status=%d", status);
    return status;
}
