/* `shoalctl prewarm`. See ctl_prewarm.h.
 *
 * Everything runs on one libuv loop with the common http_client: one POST
 * per agent, then a poll of each agent's job every CTL_PREWARM_POLL_MS, so a
 * slow or dead agent never holds up the others. */
#define _GNU_SOURCE /* explicit_bzero */
#include "ctl_prewarm.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "ctl_job.h"
#include "ctl_render.h"
#include "shoal/cluster_auth.h"
#include "shoal/cluster_seal.h"
#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/http_client.h"
#include "shoal/image_ref.h"
#include "shoal/manifest.h"

#define DEFAULT_TIMEOUT "30m"
/* Consecutive failed polls (about 5 s) before an agent counts as lost. */
#define MAX_POLL_ERRORS 20
#define URL_MAX 512

/* XX(name, text) */
#define AGENT_STATE_MAP(XX)                                                                        \
    XX(STARTING, "starting")                                                                       \
    XX(RUNNING, "running")                                                                         \
    XX(DONE, "done")                                                                               \
    XX(FAILED, "failed")

enum agent_state {
#define XX(name, text) AG_##name,
    AGENT_STATE_MAP(XX)
#undef XX
};

static const char *agent_state_name(enum agent_state s)
{
    switch (s) {
#define XX(name, text)                                                                             \
    case AG_##name:                                                                                \
        return text;
        AGENT_STATE_MAP(XX)
#undef XX
    }
    return "unknown";
}

struct run;

struct agent {
    struct run *run;
    char url[URL_MAX]; /* base URL, no trailing slash */
    const char *name;  /* url without the scheme, for display */
    char id[40];       /* job id on that agent */
    enum agent_state state;
    uint64_t bytes_done, bytes_total;
    uint64_t blobs_done, blobs_total, blobs_cached;
    uint64_t job_ms; /* the agent's own duration_ms */
    char error[1024];
    struct http_client_req *post;
    struct http_client_req *poll;
    int poll_errors;
    uint64_t start_ms; /* when the job was accepted */
    /* plain output: what was printed last */
    enum agent_state printed_state;
    int printed_bucket;
    bool printed;
};

struct run {
    uv_loop_t loop;
    struct http_client *hc;
    uv_timer_t tick;
    uv_timer_t deadline;
    struct agent *agents;
    size_t n;
    const char *ref;
    char *body;         /* the POST body, JSON */
    const char *secret; /* sign the POST with it (an agent behind the network), or NULL */
    size_t secret_len;
    int64_t timeout_ms;
    uint64_t start_ms;
    uint64_t end_ms;
    bool tty;
    bool json;    /* -o json: no progress, one JSON document at the end */
    size_t drawn; /* lines drawn last time (tty) */
    size_t name_width;
    bool finished;
};

static const char *errstr(int rc)
{
    /* http_client's codes name the far side "upstream"; here it is an agent. */
    if (rc == SHOAL_EUNAVAILABLE)
        return "connection failed (is the agent running and the address right?)";
    if (rc == SHOAL_ETIMEOUT)
        return "timed out";
    return shoal_strerror(rc);
}

static void agent_fail(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void agent_fail(struct agent *a, const char *fmt, ...)
{
    if (a->state == AG_DONE || a->state == AG_FAILED)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->error, sizeof(a->error), fmt, ap);
    va_end(ap);
    a->state = AG_FAILED;
    /* Their on_done still runs (and clears the pointer). */
    if (a->post)
        http_client_cancel(a->post);
    if (a->poll)
        http_client_cancel(a->poll);
}

/* --- output --- */

static size_t term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 100;
}

static void progress_of(const struct agent *a, uint64_t now, struct ctl_progress *p)
{
    memset(p, 0, sizeof(*p));
    p->name = a->name;
    p->state = agent_state_name(a->state);
    p->bytes_done = a->bytes_done;
    p->bytes_total = a->bytes_total;
    p->blobs_done = a->blobs_done;
    p->blobs_total = a->blobs_total;
    p->blobs_cached = a->blobs_cached;
    p->elapsed_ms = a->job_ms;
    p->error = a->error[0] ? a->error : NULL;
    p->rate = -1;
    /* The average since the job started, by the agent's clock once it is
     * over (a finished job's rate must not decay while others run). */
    if (a->state == AG_DONE && a->job_ms > 0)
        p->rate = (double)a->bytes_done * 1000.0 / (double)a->job_ms;
    else if (a->start_ms && now > a->start_ms && a->state == AG_RUNNING)
        p->rate = (double)a->bytes_done * 1000.0 / (double)(now - a->start_ms);
}

static void draw_tty(struct run *r)
{
    uint64_t now = uv_now(&r->loop);
    size_t width = term_width() - 1;
    char line[2048];
    if (r->drawn)
        printf("\x1b[%zuA", r->drawn);
    for (size_t i = 0; i < r->n; i++) {
        struct ctl_progress p;
        progress_of(&r->agents[i], now, &p);
        ctl_render_bar(&p, r->name_width, width, line, sizeof(line));
        printf("\r\x1b[2K%s\n", line);
    }
    r->drawn = r->n;
    fflush(stdout);
}

/* Plain output: a line when an agent's state changes or its progress
 * crosses another tenth. */
static void draw_plain(struct run *r)
{
    uint64_t now = uv_now(&r->loop);
    char line[2048];
    for (size_t i = 0; i < r->n; i++) {
        struct agent *a = &r->agents[i];
        struct ctl_progress p;
        progress_of(a, now, &p);
        int bucket = ctl_render_percent(&p) / 10;
        if (a->state == AG_STARTING)
            continue;
        if (a->printed && a->printed_state == a->state && a->printed_bucket == bucket)
            continue;
        a->printed = true;
        a->printed_state = a->state;
        a->printed_bucket = bucket;
        ctl_render_plain(&p, line, sizeof(line));
        printf("%s\n", line);
    }
    fflush(stdout);
}

static void draw(struct run *r)
{
    if (r->json)
        return;
    if (r->tty)
        draw_tty(r);
    else
        draw_plain(r);
}

/* --- the end --- */

static void on_closed(uv_handle_t *h) {}

static void check_finished(struct run *r)
{
    if (r->finished)
        return;
    for (size_t i = 0; i < r->n; i++) {
        if (r->agents[i].state != AG_DONE && r->agents[i].state != AG_FAILED)
            return;
    }
    r->finished = true;
    r->end_ms = uv_now(&r->loop);
    draw(r);
    uv_timer_stop(&r->tick);
    uv_timer_stop(&r->deadline);
    uv_close((uv_handle_t *)&r->tick, on_closed);
    uv_close((uv_handle_t *)&r->deadline, on_closed);
    /* Cancels what is still in flight (polls of agents that timed out). */
    http_client_destroy(r->hc, NULL, NULL);
    r->hc = NULL;
}

/* --- polling --- */

/* Copies a job answer into a; moves it to DONE or FAILED when the job ended. */
static void apply_job(struct agent *a, json_t *job)
{
    const char *st = json_string_value(json_object_get(job, "state"));
    const char *id = json_string_value(json_object_get(job, "id"));
    if (!st || !id) {
        agent_fail(a, "the agent's answer is not a prewarm job");
        return;
    }
    if (!a->id[0])
        snprintf(a->id, sizeof(a->id), "%s", id);
    a->bytes_done = (uint64_t)json_integer_value(json_object_get(job, "bytes_done"));
    a->bytes_total = (uint64_t)json_integer_value(json_object_get(job, "bytes_total"));
    a->blobs_done = (uint64_t)json_integer_value(json_object_get(job, "blobs_done"));
    a->blobs_total = (uint64_t)json_integer_value(json_object_get(job, "blobs_total"));
    a->blobs_cached = (uint64_t)json_integer_value(json_object_get(job, "blobs_cached"));
    a->job_ms = (uint64_t)json_integer_value(json_object_get(job, "duration_ms"));
    if (strcmp(st, "done") == 0) {
        /* Done means every blob is cached; a mismatch here is an agent bug. */
        if (a->bytes_done != a->bytes_total || a->blobs_done != a->blobs_total) {
            agent_fail(a, "job %s reported done with %" PRIu64 "/%" PRIu64 " bytes", a->id,
                       a->bytes_done, a->bytes_total);
            return;
        }
        a->state = AG_DONE;
    } else if (strcmp(st, "failed") == 0) {
        const char *err = json_string_value(json_object_get(job, "error"));
        agent_fail(a, "%s", err ? err : "the job failed (no reason given)");
    } else {
        a->state = AG_RUNNING;
    }
}

/* "CODE: message" of an OCI error body, else the start of the body. */
static void error_text(const char *body, size_t len, char *out, size_t outlen)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *e = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code || msg)
        snprintf(out, outlen, "%s%s%s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
    else
        snprintf(out, outlen, "%.*s", (int)(len > 200 ? 200 : len), body);
    json_decref(root);
    /* One line, whatever the agent sent. */
    for (char *c = out; *c; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
}

static void on_poll_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct agent *a = arg;
    struct run *r = a->run;
    a->poll = NULL;
    if (a->state != AG_RUNNING)
        return;
    long status = resp ? resp->status : 0;
    if (rc == 0 && status == 200) {
        json_t *job = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
        a->poll_errors = 0;
        apply_job(a, job);
        json_decref(job);
    } else if (rc == 0 && status == 404) {
        agent_fail(a, "job %s is unknown to the agent (restarted, or the job was forgotten)",
                   a->id);
    } else if (++a->poll_errors >= MAX_POLL_ERRORS) {
        if (rc < 0)
            agent_fail(a, "lost contact with the agent: %s", errstr(rc));
        else
            agent_fail(a, "polling job %s: HTTP %ld", a->id, status);
    }
    if (a->state != AG_RUNNING) {
        draw(r);
        check_finished(r);
    }
}

static void poll_agent(struct agent *a)
{
    char url[URL_MAX + 64];
    snprintf(url, sizeof(url), "%s/_shoal/prewarm/%s", a->url, a->id);
    struct http_client_opts o = {
        .method = "GET",
        .url = url,
        .connect_timeout_ms = 2000,
        .low_speed_time_s = 10,
        .max_body = 64 * 1024,
        .on_done = on_poll_done,
        .arg = a,
    };
    int rc = http_client_request(a->run->hc, &o, &a->poll);
    if (rc < 0) {
        a->poll = NULL;
        agent_fail(a, "cannot poll the agent: %s", errstr(rc));
    }
}

static void on_tick(uv_timer_t *t)
{
    struct run *r = t->data;
    for (size_t i = 0; i < r->n; i++) {
        struct agent *a = &r->agents[i];
        if (a->state == AG_RUNNING && !a->poll)
            poll_agent(a);
    }
    draw(r);
    check_finished(r);
}

static void on_deadline(uv_timer_t *t)
{
    struct run *r = t->data;
    char took[32];
    ctl_render_duration((uint64_t)r->timeout_ms, took, sizeof(took));
    for (size_t i = 0; i < r->n; i++) {
        struct agent *a = &r->agents[i];
        struct ctl_progress p;
        progress_of(a, uv_now(&r->loop), &p);
        if (a->state == AG_STARTING)
            agent_fail(a, "timed out after %s waiting for the agent to accept the job", took);
        else
            agent_fail(a, "timed out after %s (job %s still running at %d%%)", took, a->id,
                       ctl_render_percent(&p));
    }
    check_finished(r);
}

/* --- starting --- */

static void on_post_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct agent *a = arg;
    struct run *r = a->run;
    char msg[600];
    a->post = NULL;
    if (a->state != AG_STARTING)
        return;
    long status = resp ? resp->status : 0;
    const char *body = resp && resp->body.data ? resp->body.data : "";
    size_t len = resp ? resp->body.len : 0;
    if (rc < 0) {
        agent_fail(a, "cannot reach the agent: %s", errstr(rc));
    } else if (status != 202 && status != 200) {
        error_text(body, len, msg, sizeof(msg));
        agent_fail(a, "the agent refused the job: HTTP %ld %s", status, msg);
    } else {
        json_t *job = json_loadb(body, len, 0, NULL);
        a->start_ms = uv_now(&r->loop);
        a->state = AG_RUNNING;
        apply_job(a, job);
        json_decref(job);
    }
    draw(r);
    check_finished(r);
}

static int start_agent(struct agent *a)
{
    char url[URL_MAX + 32];
    char auth[CLUSTER_AUTH_MAX + 32] = "";
    const char *headers[] = {"Content-Type: application/json", NULL, NULL};
    snprintf(url, sizeof(url), "%s/_shoal/prewarm", a->url);
    if (a->run->secret) {
        char v[CLUSTER_AUTH_MAX];
        if (cluster_auth_sign_nonce(a->run->secret, a->run->secret_len, (int64_t)time(NULL), "POST",
                                    "/_shoal/prewarm", a->run->body, strlen(a->run->body), v,
                                    sizeof(v)) == 0) {
            snprintf(auth, sizeof(auth), CLUSTER_AUTH_HEADER ": %s", v);
            headers[1] = auth;
        }
    }
    struct http_client_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = a->run->body,
        .body_len = strlen(a->run->body),
        .connect_timeout_ms = 5000,
        .low_speed_time_s = 30,
        .max_body = 64 * 1024,
        .on_done = on_post_done,
        .arg = a,
    };
    int rc = http_client_request(a->run->hc, &o, &a->post);
    if (rc < 0)
        a->post = NULL;
    return rc;
}

/* --- arguments --- */

void ctl_prewarm_usage(FILE *out)
{
    fprintf(out,
            "Usage: shoalctl prewarm --tracker URL [--selector SEL] [options] REF\n"
            "       shoalctl prewarm --agent URL [--agent URL ...] [options] REF\n"
            "\n"
            "With --tracker, runs a cluster preheat job: the tracker picks the agents the\n"
            "selector names and starts the prewarm on each. With --agent, starts a prewarm\n"
            "job on every agent named. Either way it follows the agents until each has\n"
            "every blob of the image or artifact in its cache.\n"
            "\n"
            "  REF                  [registry/]repository[:tag][@sha256:...]; without a\n"
            "                       registry, docker.io (library/ for one-part names)\n"
            "  -T, --tracker URL    the tracker (default $SHOAL_TRACKER)\n"
            "  -S, --selector SEL   which agents, e.g. \"zone=eu-1,pool=gpu\", \"count=3\",\n"
            "                       \"node=gpu-1,node=gpu-2\", \"percent=50\" (default: all)\n"
            "  -c, --max-concurrent N  start at most N agents at once (default: all)\n"
            "  -a, --agent URL      an agent's address, e.g. http://10.0.0.5:5080 (repeat\n"
            "                       for several agents; http:// is assumed when missing)\n"
            "  -p, --platform P     for an index, only this platform (os/arch or\n"
            "                       os/arch/variant; repeat for several); default: all\n"
            "  -m, --layers-media-type GLOB  only layers of this media type (repeatable),\n"
            "                       e.g. 'application/vnd.cncf.model.weight.*'\n"
            "  -P, --layers-path GLOB        only layers whose file path matches (repeatable),\n"
            "                       e.g. '*.safetensors'; configs are always fetched\n"
            "  -u, --username USER  pull with these credentials, for this job only\n"
            "  -W, --password-file F  the password (one trailing newline dropped)\n"
            "  -s, --cluster-secret-file F  sign requests and seal the credentials\n"
            "                       (default $SHOAL_CLUSTER_SECRET_FILE)\n"
            "      --tls-mode MODE  off, psk or mtls: the tracker's TLS (default\n"
            "                       $SHOAL_TLS_MODE; psk needs -s)\n"
            "      --tls-ca/--tls-cert/--tls-key F  mtls: the cluster CA, a certificate\n"
            "                       it issued and its key ($SHOAL_TLS_CA, ...)\n"
            "  -o, --output FORMAT  text (default) or json (the job at its end)\n"
            "  -t, --timeout DUR    give up after DUR (e.g. 90s, 10m, 2h; default %s)\n"
            "  -h, --help           this help\n"
            "\n"
            "On a terminal, one progress bar per agent; otherwise one line per agent when\n"
            "its state changes or every 10%%, and a summary.\n"
            "Exit status: 0 every agent has every blob cached, 1 an agent failed or timed\n"
            "out, 2 usage error.\n",
            DEFAULT_TIMEOUT);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shoalctl prewarm: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shoalctl prewarm --help'.\n");
    return 2;
}

/* "host:port" or "http://host:port[/prefix]" -> a checked base URL. */
static int agent_url(const char *s, char *out, size_t outlen)
{
    char tmp[URL_MAX];
    if (strncmp(s, "https://", 8) == 0)
        return SHOAL_ECONFIG; /* agents serve plain http */
    int n = strstr(s, "://") ? snprintf(tmp, sizeof(tmp), "%s", s)
                             : snprintf(tmp, sizeof(tmp), "http://%s", s);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return SHOAL_EPARSE;
    if (strncmp(tmp, "http://", 7) != 0)
        return SHOAL_EPARSE;
    return config_parse_url(tmp, out, outlen);
}

static char *make_body(const struct ctl_job_args *ja, const struct ctl_http *h)
{
    /* An agent takes the same body as the tracker, less the selector. */
    struct ctl_job_args a = *ja;
    a.selector = NULL;
    char *s = ctl_job_body(&a, h);
    if (!s)
        return NULL;
    json_t *o = json_loads(s, 0, NULL);
    explicit_bzero(s, strlen(s));
    free(s);
    json_object_del(o, "selector");
    json_object_del(o, "max_concurrent");
    char *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return out;
}

static void summary_json(struct run *r, size_t ok)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < r->n; i++) {
        const struct agent *a = &r->agents[i];
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}", "agent", a->url, "state",
                           agent_state_name(a->state), "job", a->id[0] ? a->id : NULL, "bytes_done",
                           (json_int_t)a->bytes_done, "bytes_total", (json_int_t)a->bytes_total,
                           "blobs_done", (json_int_t)a->blobs_done, "blobs_total",
                           (json_int_t)a->blobs_total, "blobs_cached", (json_int_t)a->blobs_cached,
                           "duration_ms", (json_int_t)a->job_ms, "error",
                           a->error[0] ? a->error : NULL));
    }
    json_t *doc = json_pack("{s:s,s:s,s:I,s:I,s:o}", "ref", r->ref, "state",
                            ok == r->n ? "SUCCESS" : "FAILURE", "duration_ms",
                            (json_int_t)(r->end_ms - r->start_ms), "succeeded", (json_int_t)ok,
                            "agents", arr);
    char *s = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(doc);
    fflush(stdout);
}

static void summary(struct run *r)
{
    size_t ok = 0;
    char took[32];
    for (size_t i = 0; i < r->n; i++)
        ok += r->agents[i].state == AG_DONE;
    if (r->json) {
        summary_json(r, ok);
        return;
    }
    ctl_render_duration(r->end_ms - r->start_ms, took, sizeof(took));
    for (size_t i = 0; i < r->n; i++) {
        const struct agent *a = &r->agents[i];
        if (a->state != AG_DONE)
            fprintf(stderr, "shoalctl: agent %s: %s\n", a->url,
                    a->error[0] ? a->error : "did not finish");
    }
    if (ok == r->n)
        printf("prewarm %s: %zu of %zu agent%s done in %s\n", r->ref, ok, r->n,
               r->n == 1 ? "" : "s", took);
    else
        printf("prewarm %s: %zu of %zu agent%s failed after %s\n", r->ref, r->n - ok, r->n,
               r->n == 1 ? "" : "s", took);
    fflush(stdout);
}

int ctl_prewarm_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"agent", required_argument, NULL, 'a'},
        {"platform", required_argument, NULL, 'p'},
        {"timeout", required_argument, NULL, 't'},
        {"tracker", required_argument, NULL, 'T'},
        {"selector", required_argument, NULL, 'S'},
        {"max-concurrent", required_argument, NULL, 'c'},
        {"layers-media-type", required_argument, NULL, 'm'},
        {"layers-path", required_argument, NULL, 'P'},
        {"username", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, 'W'},
        {"cluster-secret-file", required_argument, NULL, 's'},
        {"tls-mode", required_argument, NULL, CTL_OPT_TLS_MODE},
        {"tls-ca", required_argument, NULL, CTL_OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, CTL_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, CTL_OPT_TLS_KEY},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char **agents = NULL;
    char **platforms = NULL;
    size_t na = 0, np = 0;
    const char *timeout = DEFAULT_TIMEOUT;
    const char *password_file = NULL;
    char *password = NULL;
    size_t password_len = 0;
    struct ctl_job_args ja;
    struct ctl_http h;
    bool h_ready = false;
    struct run r;
    int status = 2;
    int c;

    memset(&r, 0, sizeof(r));
    memset(&ja, 0, sizeof(ja));
    memset(&h, 0, sizeof(h));
    ctl_common_defaults(&ja.common);
    agents = calloc((size_t)argc + 1, sizeof(*agents));
    platforms = calloc((size_t)argc + 1, sizeof(*platforms));
    if (!agents || !platforms) {
        fprintf(stderr, "shoalctl: out of memory\n");
        goto out;
    }
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":a:p:t:T:S:c:m:P:u:W:s:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'a':
            agents[na++] = optarg;
            break;
        case 'T':
            ja.common.tracker = optarg;
            break;
        case 'S':
            ja.selector = optarg;
            break;
        case 'c': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (!optarg[0] || *end || v > 100000) {
                status = usage_error("invalid --max-concurrent \"%s\"", optarg);
                goto out;
            }
            ja.max_concurrent = (uint32_t)v;
            break;
        }
        case 'm':
        case 'P':
            if (layer_filter_add(&ja.layers, c == 'm', optarg) < 0) {
                status = usage_error("invalid or too many layer patterns (\"%s\")", optarg);
                goto out;
            }
            break;
        case 'u':
            ja.username = optarg;
            break;
        case 'W':
            password_file = optarg;
            break;
        case 's':
            ja.common.secret_file = optarg;
            break;
        case 'o':
            if (ctl_common_output(&ja.common, "prewarm", optarg)) {
                status = 2;
                goto out;
            }
            break;
        case 'p':
            platforms[np++] = optarg;
            break;
        case 't':
            timeout = optarg;
            break;
        case 'h':
            ctl_prewarm_usage(stdout);
            status = 0;
            goto out;
        case ':':
            status = usage_error("%s needs a value", argv[optind - 1]);
            goto out;
        default:
            if (ctl_common_tls_opt(&ja.common, c, optarg))
                break;
            status = usage_error("unknown option %s", argv[optind - 1]);
            goto out;
        }
    }
    if (optind >= argc) {
        status = usage_error("a reference to prewarm is required");
        goto out;
    }
    if (argc - optind > 1) {
        status = usage_error("one reference at a time (got \"%s\" and \"%s\")", argv[optind],
                             argv[optind + 1]);
        goto out;
    }
    r.ref = argv[optind];
    if (na == 0 && !ja.common.tracker) {
        status = usage_error("--tracker URL or at least one --agent URL is required");
        goto out;
    }
    if (na > 0 && ja.common.tracker && getenv("SHOAL_TRACKER") != ja.common.tracker) {
        status = usage_error("give --tracker or --agent, not both");
        goto out;
    }
    if (!ja.username != !password_file) {
        status = usage_error("--username and --password-file go together");
        goto out;
    }
    if (password_file) {
        char perr[300];
        if (config_read_secret("password-file", password_file, &password, &password_len, perr,
                               sizeof(perr)) < 0) {
            status = usage_error("%s", perr);
            goto out;
        }
        ja.password = password;
    }
    if (na > CTL_PREWARM_MAX_AGENTS) {
        status = usage_error("at most %d agents", CTL_PREWARM_MAX_AGENTS);
        goto out;
    }
    struct image_ref pref;
    char err[256];
    if (image_ref_parse(r.ref, &pref, err, sizeof(err)) < 0) {
        status = usage_error("invalid reference \"%s\": %s", r.ref, err);
        goto out;
    }
    if (np > MANIFEST_PLATFORM_FILTERS_MAX) {
        status = usage_error("at most %d platforms", MANIFEST_PLATFORM_FILTERS_MAX);
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        if (!manifest_platform_valid(platforms[i])) {
            status = usage_error("invalid platform \"%s\" (expected os/arch or os/arch/variant, "
                                 "e.g. linux/amd64)",
                                 platforms[i]);
            goto out;
        }
    }
    if (config_parse_duration(timeout, &r.timeout_ms) < 0 || r.timeout_ms <= 0) {
        status = usage_error("invalid --timeout \"%s\" (e.g. 90s, 10m, 2h)", timeout);
        goto out;
    }
    ja.ref = r.ref;
    ja.platforms = (const char *const *)platforms;
    ja.nplatforms = np;
    if (na == 0) {
        /* The cluster way: the tracker picks the agents. */
        if ((status = ctl_common_tracker(&ja.common, "prewarm")) != 0)
            goto out;
        ja.timeout_ms = r.timeout_ms;
        status = ctl_job_prewarm(&ja);
        goto out;
    }
    {
        char herr[300];
        if (ctl_http_init(&h, ja.common.secret_file, herr, sizeof(herr)) < 0) {
            status = usage_error("%s", herr);
            goto out;
        }
        h_ready = true;
        r.secret = h.secret;
        r.secret_len = h.secret_len;
    }
    r.agents = calloc(na, sizeof(*r.agents));
    if (!r.agents) {
        fprintf(stderr, "shoalctl: out of memory\n");
        goto out;
    }
    r.n = na;
    for (size_t i = 0; i < na; i++) {
        struct agent *a = &r.agents[i];
        a->run = &r;
        int rc = agent_url(agents[i], a->url, sizeof(a->url));
        if (rc < 0) {
            status = usage_error("invalid --agent \"%s\"%s", agents[i],
                                 rc == SHOAL_ECONFIG ? " (agents serve plain http://)"
                                                     : " (expected http://HOST:PORT)");
            goto out;
        }
        a->name = a->url + 7;
        size_t nl = strlen(a->name);
        if (nl > r.name_width)
            r.name_width = nl;
    }
    if (r.name_width > 40)
        r.name_width = 40;
    r.body = make_body(&ja, &h);
    if (!r.body) {
        fprintf(stderr, "shoalctl: out of memory\n");
        goto out;
    }
    r.json = ja.common.json;
    r.tty = !r.json && isatty(STDOUT_FILENO) == 1;

    status = 1;
    if (uv_loop_init(&r.loop) < 0 || http_client_create(&r.loop, &r.hc) < 0) {
        fprintf(stderr, "shoalctl: cannot set up the event loop\n");
        goto out;
    }
    r.start_ms = uv_now(&r.loop);
    uv_timer_init(&r.loop, &r.tick);
    uv_timer_init(&r.loop, &r.deadline);
    r.tick.data = &r;
    r.deadline.data = &r;
    for (size_t i = 0; i < r.n; i++) {
        int rc = start_agent(&r.agents[i]);
        if (rc < 0)
            agent_fail(&r.agents[i], "cannot start the request: %s", errstr(rc));
    }
    uv_timer_start(&r.tick, on_tick, CTL_PREWARM_POLL_MS, CTL_PREWARM_POLL_MS);
    uv_timer_start(&r.deadline, on_deadline, (uint64_t)r.timeout_ms, 0);
    if (r.tty)
        draw(&r);
    check_finished(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r.loop) != 0)
        fprintf(stderr, "shoalctl: warning: event loop not closed cleanly\n");
    summary(&r);
    status = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.agents[i].state != AG_DONE)
            status = 1;
    }

out:
    if (r.body)
        explicit_bzero(r.body, strlen(r.body));
    free(r.body);
    if (password) {
        explicit_bzero(password, password_len);
        free(password);
    }
    if (h_ready)
        ctl_http_dispose(&h);
    free(r.agents);
    free(agents);
    free(platforms);
    return status;
}
