/* `shoalctl prewarm --tracker`. See ctl_job.h. */
#define _GNU_SOURCE /* explicit_bzero */
#include "ctl_job.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ctl_render.h"
#include "shoal/cluster_seal.h"

#define POLL_MS 500

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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

static json_t *credentials(const struct ctl_job_args *a)
{
    if (a->authorization)
        return json_pack("{s:s}", "authorization", a->authorization);
    if (a->username && a->password)
        return json_pack("{s:s,s:s}", "username", a->username, "password", a->password);
    return NULL;
}

char *ctl_job_body(const struct ctl_job_args *a, const struct ctl_http *h)
{
    json_t *plats = json_array();
    for (size_t i = 0; plats && i < a->nplatforms; i++)
        json_array_append_new(plats, json_string(a->platforms[i]));
    json_t *doc = json_pack("{s:s,s:s?,s:o,s:i}", "ref", a->ref, "selector", a->selector,
                            "platforms", plats, "max_concurrent", (int)a->max_concurrent);
    if (!doc)
        return NULL;
    if (!layer_filter_empty(&a->layers))
        json_object_set_new(doc, "layers", layer_filter_to_json(&a->layers));
    if (a->timeout_ms > 0)
        json_object_set_new(doc, "timeout", json_integer(a->timeout_ms));
    json_t *creds = credentials(a);
    if (creds) {
        char *text = json_dumps(creds, JSON_COMPACT);
        json_decref(creds);
        if (!text) {
            json_decref(doc);
            return NULL;
        }
        if (h->secret) {
            /* Sealed: the credentials cross the network encrypted. */
            struct buf sealed;
            buf_init(&sealed, 4 * CLUSTER_SEAL_PLAIN_MAX);
            if (cluster_seal(h->secret, h->secret_len, text, strlen(text), &sealed) == 0)
                json_object_set_new(doc, "sealed_credentials", json_string(sealed.data));
            buf_dispose(&sealed);
        } else {
            json_object_set_new(doc, "credentials", json_loads(text, 0, NULL));
        }
        explicit_bzero(text, strlen(text));
        free(text);
    }
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return out;
}

int ctl_job_create(struct ctl_http *h, const struct ctl_job_args *a, json_t **job)
{
    char url[CTL_URL_MAX + 16], why[600];
    struct ctl_response resp;
    *job = NULL;
    char *body = ctl_job_body(a, h);
    if (!body) {
        fprintf(stderr, "shoalctl: out of memory\n");
        return 1;
    }
    snprintf(url, sizeof(url), "%s/v1/jobs", a->common.tracker_url);
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    struct ctl_request req = {.method = "POST",
                              .url = url,
                              .body = body,
                              .body_len = strlen(body),
                              .headers = headers,
                              .sign = true,
                              .timeout_s = 30};
    ctl_http_do(h, &req, &resp);
    explicit_bzero(body, strlen(body));
    free(body);
    if (resp.rc == 0 && (resp.status == 201 || resp.status == 200))
        *job = json_loadb(resp.body.data, resp.body.len, JSON_PRESERVE_ORDER, NULL);
    if (!*job) {
        ctl_response_error(&resp, why, sizeof(why));
        fprintf(stderr, "shoalctl: the tracker refused the job: %s%s\n", why,
                ctl_common_hint(&a->common, &resp));
    }
    ctl_response_dispose(&resp);
    return *job ? 0 : 1;
}

int ctl_job_follow(struct ctl_http *h, const struct ctl_common *c, uint64_t id, int64_t timeout_ms,
                   void (*draw)(json_t *job, void *arg), void *arg, json_t **job)
{
    char path[64];
    uint64_t start = mono_ms();
    int errors = 0;
    snprintf(path, sizeof(path), "/v1/jobs/%" PRIu64, id);
    *job = NULL;
    for (;;) {
        json_t *doc = NULL;
        if (ctl_tracker_get(h, c, path, &doc) != 0) {
            /* A tracker restarting, say: a few misses are not the end. */
            if (++errors >= 10)
                return 1;
        } else {
            errors = 0;
            json_decref(*job);
            *job = doc;
            if (draw)
                draw(doc, arg);
            if (strcmp(s(doc, "state"), "PENDING") != 0)
                return 0;
        }
        if (timeout_ms > 0 && mono_ms() - start > (uint64_t)timeout_ms) {
            fprintf(stderr,
                    "shoalctl: gave up following job %" PRIu64 " after %" PRId64
                    " ms (it goes on on the tracker)\n",
                    id, timeout_ms);
            return 1;
        }
        usleep(POLL_MS * 1000);
    }
}

/* --- drawing --- */

struct view {
    bool tty;
    size_t drawn;
    json_t *printed; /* agent -> "state/bucket" last printed (plain) */
};

static void progress_of(json_t *t, struct ctl_progress *p)
{
    memset(p, 0, sizeof(*p));
    const char *st = s(t, "state");
    p->name = s(t, "agent");
    p->state = strcmp(st, "succeeded") == 0 ? "done" : st;
    p->bytes_done = u(t, "bytes_done");
    p->bytes_total = u(t, "bytes_total");
    p->blobs_done = u(t, "blobs_done");
    p->blobs_total = u(t, "blobs_total");
    p->blobs_cached = u(t, "blobs_cached");
    p->elapsed_ms = u(t, "duration_ms");
    p->error = json_string_value(json_object_get(t, "error"));
    p->rate = p->elapsed_ms ? (double)p->bytes_done * 1000.0 / (double)p->elapsed_ms : -1;
}

static size_t term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 100;
}

static void draw(json_t *job, void *arg)
{
    struct view *v = arg;
    json_t *tasks = json_object_get(job, "tasks");
    char line[2048];
    size_t name_width = 0;
    for (size_t i = 0; i < json_array_size(tasks); i++) {
        size_t n = strlen(s(json_array_get(tasks, i), "agent"));
        if (n > name_width)
            name_width = n;
    }
    if (name_width > 32)
        name_width = 32;
    if (v->tty) {
        size_t width = term_width() - 1;
        if (v->drawn)
            printf("\x1b[%zuA", v->drawn);
        for (size_t i = 0; i < json_array_size(tasks); i++) {
            struct ctl_progress p;
            progress_of(json_array_get(tasks, i), &p);
            ctl_render_bar(&p, name_width, width, line, sizeof(line));
            printf("\r\x1b[2K%s\n", line);
        }
        v->drawn = json_array_size(tasks);
        fflush(stdout);
        return;
    }
    for (size_t i = 0; i < json_array_size(tasks); i++) {
        struct ctl_progress p;
        char key[64];
        progress_of(json_array_get(tasks, i), &p);
        if (strcmp(p.state, "queued") == 0 || strcmp(p.state, "starting") == 0)
            continue;
        snprintf(key, sizeof(key), "%s/%d", p.state, ctl_render_percent(&p) / 10);
        const char *was = json_string_value(json_object_get(v->printed, p.name));
        if (was && strcmp(was, key) == 0)
            continue;
        json_object_set_new(v->printed, p.name, json_string(key));
        ctl_render_plain(&p, line, sizeof(line));
        printf("%s\n", line);
    }
    fflush(stdout);
}

int ctl_job_prewarm(const struct ctl_job_args *a)
{
    struct ctl_http h;
    char err[300];
    json_t *job = NULL, *last = NULL;
    int st;

    if (ctl_http_init(&h, a->common.secret_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl prewarm: %s\n", err);
        return 2;
    }
    if (ctl_common_tls(&a->common, &h, "prewarm")) {
        ctl_http_dispose(&h);
        return 2;
    }
    st = ctl_job_create(&h, a, &job);
    if (st) {
        ctl_http_dispose(&h);
        return st;
    }
    uint64_t id = u(job, "id");
    struct view v = {.tty = !a->common.json && isatty(STDOUT_FILENO) == 1,
                     .printed = json_object()};
    if (!a->common.json && !v.tty)
        printf("job %" PRIu64 " %s on %" PRIu64 " agent%s (selector %s)\n", id, s(job, "ref"),
               u(json_object_get(job, "agents"), "total"),
               u(json_object_get(job, "agents"), "total") == 1 ? "" : "s", s(job, "selector"));
    json_decref(job);
    st = ctl_job_follow(&h, &a->common, id, 0, a->common.json ? NULL : draw, &v, &last);
    ctl_http_dispose(&h);
    json_decref(v.printed);
    if (st) {
        json_decref(last);
        return st;
    }
    if (a->common.json) {
        ctl_print_json(last);
    } else {
        json_t *tasks = json_object_get(last, "tasks");
        for (size_t i = 0; i < json_array_size(tasks); i++) {
            json_t *t = json_array_get(tasks, i);
            if (strcmp(s(t, "state"), "failed") == 0)
                fprintf(stderr, "shoalctl: agent %s: %s\n", s(t, "agent"), s(t, "error"));
        }
        char took[32];
        json_t *ag = json_object_get(last, "agents");
        ctl_render_duration(u(last, "duration_ms"), took, sizeof(took));
        if (strcmp(s(last, "state"), "SUCCESS") == 0)
            printf("prewarm %s: job %" PRIu64 " SUCCESS, %" PRIu64 " of %" PRIu64
                   " agents done in %s\n",
                   s(last, "ref"), id, u(ag, "succeeded"), u(ag, "total"), took);
        else
            printf("prewarm %s: job %" PRIu64 " FAILURE, %" PRIu64 " of %" PRIu64
                   " agents failed after %s%s%s\n",
                   s(last, "ref"), id, u(ag, "failed"), u(ag, "total"), took,
                   u(ag, "total") ? "" : ": ", u(ag, "total") ? "" : s(last, "error"));
        fflush(stdout);
    }
    st = strcmp(s(last, "state"), "SUCCESS") == 0 ? 0 : 1;
    json_decref(last);
    return st;
}
