/* `shoalctl agents|swarms|jobs|status`. See ctl_cluster.h. */
#include "ctl_cluster.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl_render.h"
#include "shoal/error.h"

#define WATCH_MS 1000

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shoalctl %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shoalctl %s --help'.\n", cmd);
    return 2;
}

void ctl_common_defaults(struct ctl_common *c)
{
    memset(c, 0, sizeof(*c));
    c->tracker = getenv("SHOAL_TRACKER");
    c->secret_file = getenv("SHOAL_CLUSTER_SECRET_FILE");
    if (c->secret_file && !c->secret_file[0])
        c->secret_file = NULL;
    c->tls_mode = getenv("SHOAL_TLS_MODE");
    c->tls_ca = getenv("SHOAL_TLS_CA");
    c->tls_cert = getenv("SHOAL_TLS_CERT");
    c->tls_key = getenv("SHOAL_TLS_KEY");
}

bool ctl_common_tls_opt(struct ctl_common *c, int opt, const char *arg)
{
    switch (opt) {
    case CTL_OPT_TLS_MODE:
        c->tls_mode = arg;
        return true;
    case CTL_OPT_TLS_CA:
        c->tls_ca = arg;
        return true;
    case CTL_OPT_TLS_CERT:
        c->tls_cert = arg;
        return true;
    case CTL_OPT_TLS_KEY:
        c->tls_key = arg;
        return true;
    default:
        return false;
    }
}

int ctl_common_tls(const struct ctl_common *c, struct ctl_http *h, const char *cmd)
{
    struct tls_settings s = {
        .ca_file = c->tls_ca, .cert_file = c->tls_cert, .key_file = c->tls_key};
    char err[400];

    if (tls_options_check(c->tls_mode && c->tls_mode[0] ? c->tls_mode : NULL, h->secret_len > 0,
                          c->tls_ca, c->tls_cert, c->tls_key, &s.mode, err, sizeof(err)) < 0 ||
        (s.mode != TLS_MODE_OFF &&
         ctl_http_cluster_tls(h, c->tracker_url, &s, err, sizeof(err)) < 0)) {
        /* The daemons' "config: " prefix means nothing on a command line. */
        fprintf(stderr, "shoalctl %s: %s\n", cmd, strncmp(err, "config: ", 8) ? err : err + 8);
        return 2;
    }
    return 0;
}

int ctl_common_output(struct ctl_common *c, const char *cmd, const char *value)
{
    if (strcmp(value, "json") == 0)
        c->json = true;
    else if (strcmp(value, "text") == 0 || strcmp(value, "table") == 0)
        c->json = false;
    else
        return usage_error(cmd, "-o takes json or text, not \"%s\"", value);
    return 0;
}

int ctl_common_tracker(struct ctl_common *c, const char *cmd)
{
    if (!c->tracker || !c->tracker[0])
        return usage_error(cmd, "--tracker URL is required (or set SHOAL_TRACKER)");
    if (ctl_base_url(c->tracker, true, c->tracker_url, sizeof(c->tracker_url)) < 0)
        return usage_error(cmd, "invalid --tracker \"%s\" (expected http://HOST:PORT)", c->tracker);
    return 0;
}

void ctl_print_json(json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        printf("%s\n", s);
        free(s);
    }
    fflush(stdout);
}

const char *ctl_common_hint(const struct ctl_common *c, const struct ctl_response *resp)
{
    bool tls = c->tls_mode && c->tls_mode[0] && strcmp(c->tls_mode, "off") != 0;

    if (resp->status == 401)
        return " (is --cluster-secret-file the cluster's secret?)";
    if (resp->rc == SHOAL_ETLS)
        return " (does --tls-mode match the tracker's, with the cluster's secret for psk or a "
               "certificate from the cluster CA for mtls?)";
    /* Without --tls-mode an https:// tracker is an ordinary https server to
     * libcurl, and the cluster's TLS fails as a plain connection error. */
    if (resp->rc < 0 && resp->rc != SHOAL_EUNAVAILABLE && !tls &&
        strncasecmp(c->tracker_url, "https://", 8) == 0)
        return " (a tracker in tls-mode psk or mtls needs --tls-mode, or $SHOAL_TLS_MODE)";
    return "";
}

int ctl_tracker_get(struct ctl_http *h, const struct ctl_common *c, const char *path, json_t **doc)
{
    char url[CTL_URL_MAX + 256], why[600];
    struct ctl_response resp;
    snprintf(url, sizeof(url), "%s%s", c->tracker_url, path);
    struct ctl_request req = {.url = url, .sign = true, .timeout_s = 20};
    ctl_http_do(h, &req, &resp);
    *doc = NULL;
    if (resp.rc == 0 && resp.status == 200)
        *doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, JSON_PRESERVE_ORDER,
                          NULL);
    if (!*doc) {
        ctl_response_error(&resp, why, sizeof(why));
        fprintf(stderr, "shoalctl: %s: %s%s\n", url, why, ctl_common_hint(c, &resp));
        ctl_response_dispose(&resp);
        return 1;
    }
    ctl_response_dispose(&resp);
    return 0;
}

static uint64_t u(json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

static const char *s(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* Parses the shared options of a tracker command; returns -1 to go on, or
 * the exit status. extra handles command options (return -1 if unknown). */
static int parse_common(int argc, char **argv, const char *cmd, struct ctl_common *c,
                        void (*usage)(FILE *), bool *watch)
{
    static const struct option longopts[] = {
        {"tracker", required_argument, NULL, 't'},
        {"cluster-secret-file", required_argument, NULL, 's'},
        {"output", required_argument, NULL, 'o'},
        {"watch", no_argument, NULL, 'w'},
        {"tls-mode", required_argument, NULL, CTL_OPT_TLS_MODE},
        {"tls-ca", required_argument, NULL, CTL_OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, CTL_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, CTL_OPT_TLS_KEY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    ctl_common_defaults(c);
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":t:s:o:wh", longopts, NULL)) != -1) {
        switch (ch) {
        case 't':
            c->tracker = optarg;
            break;
        case 's':
            c->secret_file = optarg;
            break;
        case 'o':
            if (ctl_common_output(c, cmd, optarg))
                return 2;
            break;
        case 'w':
            if (!watch)
                return usage_error(cmd, "unknown option --watch");
            *watch = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default:
            if (ctl_common_tls_opt(c, ch, optarg))
                break;
            return usage_error(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    return -1;
}

static void common_help(FILE *out)
{
    fprintf(out, "  -t, --tracker URL            the tracker, e.g. http://tracker:5090 (default:\n"
                 "                               $SHOAL_TRACKER)\n"
                 "  -s, --cluster-secret-file F  sign requests with the cluster secret (default:\n"
                 "                               $SHOAL_CLUSTER_SECRET_FILE)\n"
                 "      --tls-mode MODE          off, psk or mtls: the tracker's TLS (default:\n"
                 "                               $SHOAL_TLS_MODE; psk needs -s)\n"
                 "      --tls-ca/--tls-cert/--tls-key F  mtls: the cluster CA, a certificate it\n"
                 "                               issued and its key ($SHOAL_TLS_CA, ...)\n"
                 "  -o, --output FORMAT          text (default) or json\n"
                 "  -h, --help                   this help\n");
}

/* --- agents --- */

void ctl_agents_usage(FILE *out)
{
    fprintf(out, "Usage: shoalctl agents --tracker URL [-o json]\n\n"
                 "The agents registered with the tracker: name, address, labels, cache use,\n"
                 "prewarm jobs running and when each last heartbeat.\n\n");
    common_help(out);
}

int ctl_agents_main(int argc, char **argv)
{
    struct ctl_common c;
    struct ctl_http h;
    char err[300];
    json_t *doc = NULL;
    int st = parse_common(argc, argv, "agents", &c, ctl_agents_usage, NULL);
    if (st >= 0)
        return st;
    if (optind < argc)
        return usage_error("agents", "unexpected argument \"%s\"", argv[optind]);
    if ((st = ctl_common_tracker(&c, "agents")) != 0)
        return st;
    if (ctl_http_init(&h, c.secret_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl agents: %s\n", err);
        return 2;
    }
    if (ctl_common_tls(&c, &h, "agents")) {
        ctl_http_dispose(&h);
        return 2;
    }
    st = ctl_tracker_get(&h, &c, "/v1/agents", &doc);
    ctl_http_dispose(&h);
    if (st)
        return st;
    if (c.json) {
        ctl_print_json(doc);
        json_decref(doc);
        return 0;
    }
    json_t *arr = json_object_get(doc, "agents");
    printf("%-20s %-28s %-24s %10s %10s %4s %6s\n", "NAME", "MIRROR", "LABELS", "CACHE", "FREE",
           "JOBS", "SEEN");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *a = json_array_get(arr, i);
        char labels[256] = "", used[32], free_b[32], seen[32];
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(a, "labels"), k, v)
        {
            snprintf(labels + strlen(labels), sizeof(labels) - strlen(labels), "%s%s=%s",
                     labels[0] ? "," : "", k, json_string_value(v));
        }
        ctl_render_bytes(u(a, "cache_bytes"), used, sizeof(used));
        ctl_render_bytes(u(a, "cache_free_bytes"), free_b, sizeof(free_b));
        ctl_render_duration(u(a, "last_seen_ms_ago"), seen, sizeof(seen));
        const char *m = s(a, "mirror_url");
        if (strncmp(m, "http://", 7) == 0)
            m += 7;
        printf("%-20s %-28s %-24s %10s %10s %4" PRIu64 " %6s\n", s(a, "name"), m,
               labels[0] ? labels : "-", used, free_b, u(a, "prewarm_running"), seen);
    }
    printf("%zu agent%s\n", json_array_size(arr), json_array_size(arr) == 1 ? "" : "s");
    json_decref(doc);
    return 0;
}

/* --- swarms --- */

void ctl_swarms_usage(FILE *out)
{
    fprintf(out, "Usage: shoalctl swarms --tracker URL [-o json]\n\n"
                 "The blob swarms the tracker coordinates: size, pieces hashed, peers, seeds\n"
                 "and pieces under an upstream lease.\n\n");
    common_help(out);
}

int ctl_swarms_main(int argc, char **argv)
{
    struct ctl_common c;
    struct ctl_http h;
    char err[300];
    json_t *doc = NULL;
    int st = parse_common(argc, argv, "swarms", &c, ctl_swarms_usage, NULL);
    if (st >= 0)
        return st;
    if (optind < argc)
        return usage_error("swarms", "unexpected argument \"%s\"", argv[optind]);
    if ((st = ctl_common_tracker(&c, "swarms")) != 0)
        return st;
    if (ctl_http_init(&h, c.secret_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl swarms: %s\n", err);
        return 2;
    }
    if (ctl_common_tls(&c, &h, "swarms")) {
        ctl_http_dispose(&h);
        return 2;
    }
    st = ctl_tracker_get(&h, &c, "/v1/swarms", &doc);
    ctl_http_dispose(&h);
    if (st)
        return st;
    if (c.json) {
        ctl_print_json(doc);
        json_decref(doc);
        return 0;
    }
    json_t *arr = json_object_get(doc, "swarms");
    printf("%-24s %10s %13s %6s %6s %7s\n", "DIGEST", "SIZE", "HASHED", "PEERS", "SEEDS", "LEASED");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *w = json_array_get(arr, i);
        char size[32], hashed[40];
        ctl_render_bytes(u(w, "size"), size, sizeof(size));
        snprintf(hashed, sizeof(hashed), "%" PRIu64 "/%" PRIu64, u(w, "hashed"), u(w, "pieces"));
        printf("%-24.24s %10s %13s %6" PRIu64 " %6" PRIu64 " %7" PRIu64 "\n", s(w, "digest"), size,
               hashed, u(w, "peers"), u(w, "seeds"), u(w, "leased"));
    }
    printf("%zu swarm%s\n", json_array_size(arr), json_array_size(arr) == 1 ? "" : "s");
    json_decref(doc);
    return 0;
}

/* --- jobs --- */

void ctl_jobs_usage(FILE *out)
{
    fprintf(out, "Usage: shoalctl jobs --tracker URL [ID] [--watch] [-o json]\n\n"
                 "Without ID, the tracker's preheat jobs, newest first. With ID, that job and\n"
                 "every agent's part of it. --watch redraws every second until the job (or,\n"
                 "without ID, every job) has finished.\n\n"
                 "  -w, --watch                  follow until finished\n");
    common_help(out);
}

static void agents_summary(json_t *job, char *out, size_t outlen)
{
    json_t *a = json_object_get(job, "agents");
    if (!u(a, "failed"))
        snprintf(out, outlen, "%" PRIu64 "/%" PRIu64 " ok", u(a, "succeeded"), u(a, "total"));
    else
        snprintf(out, outlen, "%" PRIu64 "/%" PRIu64 " ok, %" PRIu64 " failed", u(a, "succeeded"),
                 u(a, "total"), u(a, "failed"));
}

void ctl_job_print(json_t *job, FILE *out)
{
    char total[32], took[32], agents[96];
    ctl_render_bytes(u(job, "bytes_total"), total, sizeof(total));
    ctl_render_duration(u(job, "duration_ms"), took, sizeof(took));
    agents_summary(job, agents, sizeof(agents));
    fprintf(out, "job %" PRIu64 " %s %s (%s, selector %s, source %s) %s\n", u(job, "id"),
            s(job, "state"), s(job, "ref"), agents, s(job, "selector"), s(job, "source"), took);
    if (json_string_value(json_object_get(job, "digest")))
        fprintf(out, "  digest %s\n", s(job, "digest"));
    json_t *tasks = json_object_get(job, "tasks");
    for (size_t i = 0; i < json_array_size(tasks); i++) {
        json_t *t = json_array_get(tasks, i);
        struct ctl_progress p = {
            .name = s(t, "agent"),
            .state = strcmp(s(t, "state"), "succeeded") == 0 ? "done" : s(t, "state"),
            .bytes_done = u(t, "bytes_done"),
            .bytes_total = u(t, "bytes_total"),
            .blobs_done = u(t, "blobs_done"),
            .blobs_total = u(t, "blobs_total"),
            .blobs_cached = u(t, "blobs_cached"),
            .elapsed_ms = u(t, "duration_ms"),
            .error = json_string_value(json_object_get(t, "error")),
            .rate = -1,
        };
        char line[2048];
        ctl_render_plain(&p, line, sizeof(line));
        fprintf(out, "  %s\n", line);
    }
    if (json_string_value(json_object_get(job, "error")))
        fprintf(out, "  error: %s\n", s(job, "error"));
}

static void print_list(json_t *doc)
{
    json_t *arr = json_object_get(doc, "jobs");
    printf("%-6s %-8s %-50s %-18s %-10s %8s\n", "ID", "STATE", "REF", "AGENTS", "SOURCE", "TIME");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *j = json_array_get(arr, i);
        char agents[96], took[32];
        agents_summary(j, agents, sizeof(agents));
        ctl_render_duration(u(j, "duration_ms"), took, sizeof(took));
        printf("%-6" PRIu64 " %-8s %-50.50s %-18s %-10s %8s\n", u(j, "id"), s(j, "state"),
               s(j, "ref"), agents, s(j, "source"), took);
    }
}

static bool any_pending(json_t *doc, bool one)
{
    if (one)
        return strcmp(s(doc, "state"), "PENDING") == 0;
    json_t *arr = json_object_get(doc, "jobs");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        if (strcmp(s(json_array_get(arr, i), "state"), "PENDING") == 0)
            return true;
    }
    return false;
}

int ctl_jobs_main(int argc, char **argv)
{
    struct ctl_common c;
    struct ctl_http h;
    char err[300], path[64];
    bool watch = false;
    json_t *doc = NULL;
    int st = parse_common(argc, argv, "jobs", &c, ctl_jobs_usage, &watch);
    if (st >= 0)
        return st;
    const char *id = optind < argc ? argv[optind] : NULL;
    if (argc - optind > 1)
        return usage_error("jobs", "one job ID at a time");
    if (id) {
        char *end;
        strtoull(id, &end, 10);
        if (!id[0] || *end || id[0] == '-')
            return usage_error("jobs", "a job ID is a number, not \"%s\"", id);
    }
    if ((st = ctl_common_tracker(&c, "jobs")) != 0)
        return st;
    snprintf(path, sizeof(path), id ? "/v1/jobs/%s" : "/v1/jobs", id ? id : "");
    if (ctl_http_init(&h, c.secret_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl jobs: %s\n", err);
        return 2;
    }
    if (ctl_common_tls(&c, &h, "jobs")) {
        ctl_http_dispose(&h);
        return 2;
    }
    bool tty = !c.json && isatty(STDOUT_FILENO) == 1;
    for (;;) {
        st = ctl_tracker_get(&h, &c, path, &doc);
        if (st)
            break;
        bool pending = any_pending(doc, id != NULL);
        if (!c.json) {
            if (tty && watch)
                printf("\x1b[H\x1b[2J");
            if (id)
                ctl_job_print(doc, stdout);
            else
                print_list(doc);
            fflush(stdout);
        } else if (!watch || !pending) {
            ctl_print_json(doc);
        }
        if (!watch || !pending)
            break;
        json_decref(doc);
        doc = NULL;
        usleep(WATCH_MS * 1000);
    }
    ctl_http_dispose(&h);
    /* A finished job's outcome is the exit status. */
    if (st == 0 && id && strcmp(s(doc, "state"), "FAILURE") == 0)
        st = 1;
    json_decref(doc);
    return st;
}

/* --- status --- */

void ctl_status_usage(FILE *out)
{
    fprintf(out, "Usage: shoalctl status --agent URL [-o json]\n\n"
                 "One agent's view of itself: node name, labels, its registration with the\n"
                 "tracker, cache, swarms, prewarm jobs and configured upstreams.\n\n"
                 "  -a, --agent URL   the agent, e.g. http://10.0.0.5:5080 (default\n"
                 "                    http://127.0.0.1:5080)\n"
                 "  -o, --output FMT  text (default) or json\n"
                 "  -h, --help        this help\n");
}

int ctl_status_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"agent", required_argument, NULL, 'a'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl_common c;
    const char *agent = "http://127.0.0.1:5080";
    char base[CTL_URL_MAX], url[CTL_URL_MAX + 32], err[600];
    int ch;
    ctl_common_defaults(&c);
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":a:o:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'a':
            agent = optarg;
            break;
        case 'o':
            if (ctl_common_output(&c, "status", optarg))
                return 2;
            break;
        case 'h':
            ctl_status_usage(stdout);
            return 0;
        case ':':
            return usage_error("status", "%s needs a value", argv[optind - 1]);
        default:
            return usage_error("status", "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("status", "unexpected argument \"%s\"", argv[optind]);
    if (ctl_base_url(agent, false, base, sizeof(base)) < 0)
        return usage_error("status", "invalid --agent \"%s\" (expected http://HOST:PORT)", agent);
    struct ctl_http h;
    if (ctl_http_init(&h, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl status: %s\n", err);
        return 2;
    }
    snprintf(url, sizeof(url), "%s/_shoal/status", base);
    struct ctl_request req = {.url = url, .timeout_s = 10};
    struct ctl_response resp;
    ctl_http_do(&h, &req, &resp);
    json_t *doc = resp.rc == 0 && resp.status == 200
                      ? json_loadb(resp.body.data, resp.body.len, JSON_PRESERVE_ORDER, NULL)
                      : NULL;
    if (!doc) {
        ctl_response_error(&resp, err, sizeof(err));
        fprintf(stderr, "shoalctl status: %s: %s\n", url, err);
    }
    ctl_response_dispose(&resp);
    ctl_http_dispose(&h);
    if (!doc)
        return 1;
    if (c.json) {
        ctl_print_json(doc);
        json_decref(doc);
        return 0;
    }
    json_t *cache = json_object_get(doc, "cache");
    json_t *swarm = json_object_get(doc, "swarm");
    json_t *reg = json_object_get(doc, "registration");
    char used[32], max[32], rx[32], tx[32], labels[512] = "";
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(doc, "labels"), k, v)
    {
        snprintf(labels + strlen(labels), sizeof(labels) - strlen(labels), "%s%s=%s",
                 labels[0] ? "," : "", k, json_string_value(v));
    }
    ctl_render_bytes(u(cache, "bytes"), used, sizeof(used));
    ctl_render_bytes(u(cache, "max_bytes"), max, sizeof(max));
    ctl_render_bytes(u(swarm, "peer_rx_bytes"), rx, sizeof(rx));
    ctl_render_bytes(u(swarm, "peer_tx_bytes"), tx, sizeof(tx));
    printf("node      %s (shoal %s)\n", s(doc, "node"), s(doc, "version"));
    printf("mirror    %s\n", s(doc, "mirror_url"));
    printf("labels    %s\n", labels[0] ? labels : "-");
    if (json_string_value(json_object_get(doc, "tracker")))
        printf("tracker   %s (%s%s%s)\n", s(doc, "tracker"),
               json_is_true(json_object_get(reg, "registered")) ? "registered" : "not registered",
               json_string_value(json_object_get(reg, "last_error")) ? ": " : "",
               s(reg, "last_error"));
    else
        printf("tracker   none (no peer-to-peer)\n");
    printf("cache     %s of %s, %" PRIu64 " blobs\n", used, max, u(cache, "blobs"));
    printf("swarms    %" PRIu64 " active, %s from peers, %s to peers, %" PRIu64
           " fallbacks to upstream\n",
           u(swarm, "active"), rx, tx, u(swarm, "fallbacks"));
    printf("prewarm   %" PRIu64 " running\n", u(json_object_get(doc, "prewarm"), "running"));
    json_t *ups = json_object_get(doc, "upstreams");
    for (size_t i = 0; i < json_array_size(ups); i++) {
        json_t *up = json_array_get(ups, i);
        const char *file = json_string_value(json_object_get(up, "auth_file"));
        printf("%s %s -> %s (%s%s%s%s)\n", i ? "         " : "upstream ", s(up, "host"),
               s(up, "url"), s(up, "auth"), file ? " from " : "", file ? file : "",
               json_is_true(json_object_get(up, "insecure")) ? ", insecure" : "");
    }
    json_t *nc = json_object_get(doc, "node_credentials");
    if (json_is_object(nc))
        printf("creds     %" PRIu64 " registries from %" PRIu64 " files, %" PRIu64
               " reloads, %" PRIu64 " failed%s\n",
               u(nc, "registries"), u(nc, "files"), u(nc, "reloads"), u(nc, "reload_errors"),
               json_is_true(json_object_get(nc, "last_reload_ok")) ? ""
                                                                   : " (the last one: using "
                                                                     "the previous credentials)");
    json_decref(doc);
    return 0;
}
