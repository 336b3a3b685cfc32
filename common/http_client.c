/* HTTP client: libcurl's multi interface driven by a libuv loop. The
 * requests, curl's easy callbacks and the public API live here, over
 * http_client_loop.c, which wires curl's sockets and timer to the loop and
 * tells this file through a callback when transfers may have finished.
 *
 * Shape follows curl's docs/examples/multi-uv.c (socket callback -> uv_poll_t,
 * timer callback -> uv_timer_t) with its known traps fixed:
 *
 * - curl is never called from inside curl's timer callback; the uv timer's
 *   callback calls curl_multi_socket_action() later.
 * - curl_multi_info_read() is drained after every call that can finish a
 *   transfer (socket action from a poll or the timer, unpausing).
 * - A poll error is reported to curl as CURL_CSELECT_ERR.
 * - CURL_POLL_REMOVE stops the poll right away (curl closes the socket next
 *   and the fd number may be reused at once) and tolerates a NULL socketp.
 * - Easy handles leave the multi handle only outside curl's callbacks: from
 *   the info-read loop or from the deferred-work idle callback.
 *
 * Everything that must not run inside the caller's stack (on_done after a
 * cancel, unpausing, adding a handle from inside a curl callback, tearing the
 * client down) is queued on c->pending and run by one uv_idle_t on the next
 * loop turn.
 */
#include "shoal/http_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/tls.h"
#include "shoal/url_origin.h"

#include "http_client_loop.h"

#define COMP "http_client"

#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_LOW_SPEED_TIME_S 60L
#define DEFAULT_MAX_BODY ((size_t)4 << 20)
#define MAX_HEADER_BLOCK ((size_t)64 << 10)
#define RECV_BUFFER_SIZE (256L << 10)
#define MAX_REDIRS 5L

/* XX(name): QUEUED = created, not yet in the multi handle (added from the
 * idle callback); RUNNING = in the multi handle; COMPLETING = outcome decided
 * (cancel, destroy), on_done queued; DONE = on_done running or ran. */
#define REQ_STATE_MAP(XX) XX(QUEUED) XX(RUNNING) XX(COMPLETING) XX(DONE)

enum req_state {
#define XX(name) REQ_##name,
    REQ_STATE_MAP(XX)
#undef XX
};

struct http_client {
    struct http_client_loop cl; /* the multi handle, its sockets and timer */
    uv_idle_t idle;
    struct qlink reqs;    /* every request not yet DONE */
    struct qlink pending; /* requests with deferred work */
    unsigned parts_open;  /* the idle handle and cl, until each has closed */
    bool destroying;
    bool torn_down;
    void (*destroy_cb)(void *arg);
    void *destroy_arg;
    /* http_client_set_cluster_tls: requests under tls_origin use tls. */
    char *tls_origin;
    struct tls_context *tls;
};

struct http_client_req {
    struct http_client *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url; /* for log lines */
    bool head;
    bool follow;
    bool https_only; /* the URL is https: redirects may only go to https */
    int (*on_response)(void *arg, const struct http_client_response *resp);
    size_t (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, int rc, const struct http_client_response *resp);
    void *arg;
    struct http_client_response resp;
    int upload_fd; /* PUT/PATCH from a file: read with pread */
    uint64_t upload_off;
    uint64_t upload_len;

    enum req_state state;
    bool in_multi;
    bool paused;      /* on_data returned HTTP_CLIENT_PAUSE, not yet unpaused */
    bool want_resume; /* http_client_resume() asked, idle callback not yet run */
    bool responded;   /* on_response ran (or would have, when NULL) */
    bool cluster_tls; /* under the cluster TLS origin */
    int finish_rc;    /* for COMPLETING */
    int abort_rc;     /* why one of our callbacks failed the transfer */
    long line_status; /* parsed from the last status line, fallback for getinfo */
    struct qlink all;
    struct qlink pend;
    char errbuf[CURL_ERROR_SIZE];
};

static const char *state_name(enum req_state s)
{
    switch (s) {
#define XX(name)                                                                                   \
    case REQ_##name:                                                                               \
        return #name;
        REQ_STATE_MAP(XX)
#undef XX
    }
    return "?";
}

static void on_idle(uv_idle_t *h);

/* CURLOPT_READFUNCTION of an upload from a file. */
static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct http_client_req *r = arg;
    size_t want = size * n;
    if (r->upload_off >= r->upload_len)
        return 0;
    if (want > r->upload_len - r->upload_off)
        want = (size_t)(r->upload_len - r->upload_off);
    ssize_t got = pread(r->upload_fd, buf, want, (off_t)r->upload_off);
    if (got <= 0)
        return CURL_READFUNC_ABORT; /* the file shrank or failed: the upload cannot be right */
    r->upload_off += (uint64_t)got;
    return (size_t)got;
}

/* ---- global init ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- headers ---- */

/* Finds name in a raw "Name: value\r\n" block; value trimmed of blanks. */
static bool find_header(const struct buf *h, const char *name, const char **val, size_t *vlen)
{
    if (!h->data || !name)
        return false;
    size_t nlen = strlen(name);
    const char *p = h->data;
    const char *end = h->data + h->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if (!eol)
            eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && (size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0) {
            const char *v = colon + 1;
            const char *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *val = v;
            *vlen = (size_t)(e - v);
            return true;
        }
        p = next;
    }
    return false;
}

const char *http_client_response_header(const struct http_client_response *resp, const char *name,
                                        char *out, size_t outlen)
{
    const char *v;
    size_t vlen;

    if (!resp || !out || outlen == 0 || !find_header(&resp->headers, name, &v, &vlen))
        return NULL;
    if (vlen >= outlen)
        return NULL;
    memcpy(out, v, vlen);
    out[vlen] = '\0';
    return out;
}

/* Content-Length of the block, UINT64_MAX when absent, malformed or moot
 * (chunked). */
static uint64_t content_length(const struct http_client_response *resp)
{
    char tmp[32];
    const char *v;
    size_t vlen;

    if (find_header(&resp->headers, "Transfer-Encoding", &v, &vlen))
        return UINT64_MAX;
    if (!http_client_response_header(resp, "Content-Length", tmp, sizeof(tmp)) || !tmp[0])
        return UINT64_MAX;
    for (const char *p = tmp; *p; p++)
        if (*p < '0' || *p > '9')
            return UINT64_MAX;
    errno = 0;
    unsigned long long n = strtoull(tmp, NULL, 10);
    if (errno != 0)
        return UINT64_MAX;
    return (uint64_t)n;
}

/* ---- request life cycle ---- */

static void set_state(struct http_client_req *r, enum req_state s)
{
    LOG(DEBUG, COMP, "url=%s state=%s->%s", r->url ? r->url : "-", state_name(r->state),
        state_name(s));
    r->state = s;
}

static void free_req(struct http_client_req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    buf_dispose(&r->resp.headers);
    buf_dispose(&r->resp.body);
    free(r->url);
    free(r);
}

static void enqueue(struct http_client_req *r)
{
    struct http_client *c = r->c;

    if (!r->pend.next)
        qpush(&c->pending, &r->pend);
    uv_idle_start(&c->idle, on_idle);
}

/* Decides the outcome now and runs on_done from the idle callback, so it
 * never fires inside the caller (cancel, destroy, a curl callback). */
static void complete_later(struct http_client_req *r, int rc)
{
    set_state(r, REQ_COMPLETING);
    r->finish_rc = rc;
    enqueue(r);
}

static void remove_easy(struct http_client_req *r)
{
    if (!r->in_multi)
        return;
    CURLMcode mc = curl_multi_remove_handle(r->c->cl.multi, r->easy);
    if (mc != CURLM_OK)
        LOG(WARN, COMP, "url=%s remove_handle=%s", r->url, curl_multi_strerror(mc));
    r->in_multi = false;
}

/* Points resp.url at the URL the current response came from. */
static void effective_url(struct http_client_req *r)
{
    char *u = NULL;

    if (curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &u) == CURLE_OK && u != NULL)
        r->resp.url = u;
    else
        r->resp.url = r->url;
}

/* Runs on_response once the final response is known. Returns non-zero when
 * the transfer must stop (r->abort_rc says why). */
static int respond(struct http_client_req *r)
{
    long code = 0;

    r->responded = true;
    if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code == 0)
        code = r->line_status;
    r->resp.status = code;
    r->resp.content_length = content_length(&r->resp);
    effective_url(r);
    if (r->on_response && r->on_response(r->arg, &r->resp) != 0) {
        r->abort_rc = SHOAL_ECANCELED;
        return -1;
    }
    /* Refuse a buffered body that announces itself as too big before
     * downloading any of it. */
    if (!r->on_data && !r->head && code != 204 && code != 304 &&
        r->resp.content_length != UINT64_MAX && r->resp.content_length > r->resp.body.max) {
        r->abort_rc = SHOAL_ETOOBIG;
        return -1;
    }
    return 0;
}

static int map_result(struct http_client_req *r, CURLcode cc)
{
    if (r->abort_rc)
        return r->abort_rc;
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return SHOAL_EUNAVAILABLE;
    case CURLE_OPERATION_TIMEDOUT:
        return SHOAL_ETIMEOUT;
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_WRITE_ERROR:
        return SHOAL_ECANCELED;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        /* Only the cluster's own TLS says so: for upstream registries a TLS
         * failure stays an upstream failure, as their callers expect. */
        return r->cluster_tls ? SHOAL_ETLS : SHOAL_EUPSTREAM;
    default:
        return SHOAL_EUPSTREAM;
    }
}

/* Calls on_done and frees r. r must be out of the multi handle. */
static void finish(struct http_client_req *r, int rc, CURLcode cc)
{
    /* Bodiless answers (HEAD, 204, a 404 without body) may end without a
     * body write; on_response still runs exactly once, before on_done. */
    if (rc == 0 && !r->responded && respond(r) != 0)
        rc = r->abort_rc;
    if (r->resp.url == NULL)
        r->resp.url = r->url;
    if (rc == SHOAL_EUPSTREAM && cc == CURLE_UNSUPPORTED_PROTOCOL && r->https_only)
        LOG(WARN, COMP, "url=%s msg=\"redirect away from https refused\" err=\"%s\"", r->url,
            r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    else if (rc == SHOAL_ETLS)
        LOG(WARN, COMP,
            "url=%s tls=failed err=\"%s\" hint=\"both sides need the same tls-mode, and the same "
            "cluster secret (psk) or cluster CA (mtls)\"",
            r->url, r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    else if (rc == SHOAL_EUPSTREAM)
        LOG(WARN, COMP, "url=%s status=%ld curl_rc=%d err=\"%s\" rc=%s", r->url, r->resp.status,
            (int)cc, r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc), shoal_errname(rc));
    else if (rc != 0)
        LOG(DEBUG, COMP, "url=%s status=%ld curl_rc=%d err=\"%s\" rc=%s", r->url, r->resp.status,
            (int)cc, r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc), shoal_errname(rc));
    set_state(r, REQ_DONE);
    qremove(&r->all);
    if (r->pend.next)
        qremove(&r->pend);
    if (r->on_done)
        r->on_done(r->arg, rc, &r->resp);
    free_req(r);
}

/* Finishes the requests curl reports done. */
static void check_done(struct http_client *c)
{
    CURLMsg *msg;
    int left;

    if (!c->cl.multi)
        return;
    while ((msg = curl_multi_info_read(c->cl.multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg is invalid once the handle is removed; copy what we need. */
        CURL *easy = msg->easy_handle;
        CURLcode cc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        struct http_client_req *r = (struct http_client_req *)priv;
        if (!r)
            continue;
        remove_easy(r);
        /* A cancelled request's on_done is already queued for the idle
         * callback; it only had to leave the multi handle. */
        if (r->state != REQ_RUNNING)
            continue;
        finish(r, map_result(r, cc), cc);
    }
}

/* ---- curl callbacks ---- */

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct http_client_req *r = ud;
    size_t len = size * n;

    if (r->state != REQ_RUNNING || r->abort_rc)
        return 0;
    if (r->responded)
        return len; /* trailers of a chunked body */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or a 1xx) replaces the block. */
        buf_reset(&r->resp.headers);
        const char *sp = memchr(p, ' ', len);
        r->line_status = 0;
        if (sp && (size_t)(sp - p) + 4 <= len) {
            long code = 0;
            for (int i = 1; i <= 3; i++) {
                if (sp[i] < '0' || sp[i] > '9') {
                    code = 0;
                    break;
                }
                code = code * 10 + (sp[i] - '0');
            }
            r->line_status = code;
        }
        return len;
    }
    if ((len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n')) {
        long code = 0;
        const char *v;
        size_t vlen;
        if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code == 0)
            code = r->line_status;
        if (code >= 100 && code < 200)
            return len; /* interim; the final status line follows */
        if (r->follow && code >= 300 && code < 400 &&
            find_header(&r->resp.headers, "Location", &v, &vlen) && vlen > 0)
            return len; /* curl follows it; not the final response */
        if (respond(r) != 0 || r->state != REQ_RUNNING)
            return 0;
        return len;
    }
    int rc = buf_append(&r->resp.headers, p, len);
    if (rc != 0) {
        r->abort_rc = rc == SHOAL_ETOOBIG ? SHOAL_ETOOBIG : SHOAL_EINTERNAL;
        return 0;
    }
    return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    struct http_client_req *r = ud;
    size_t len = size * n;

    if (r->state != REQ_RUNNING || r->abort_rc)
        return CURL_WRITEFUNC_ERROR;
    if (!r->responded && (respond(r) != 0 || r->state != REQ_RUNNING))
        return CURL_WRITEFUNC_ERROR;
    if (r->on_data) {
        size_t took = r->on_data(r->arg, p, len);
        if (r->state != REQ_RUNNING)
            return CURL_WRITEFUNC_ERROR; /* cancelled from inside on_data */
        if (took == HTTP_CLIENT_PAUSE) {
            /* curl keeps these bytes and hands them over again after
             * CURLPAUSE_CONT. */
            r->paused = true;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (took != len) {
            r->abort_rc = SHOAL_ECANCELED;
            return CURL_WRITEFUNC_ERROR;
        }
        return len;
    }
    int rc = buf_append(&r->resp.body, p, len);
    if (rc != 0) {
        r->abort_rc = rc == SHOAL_ETOOBIG ? SHOAL_ETOOBIG : SHOAL_EINTERNAL;
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

/* ---- deferred work ---- */

static void unpause(struct http_client_req *r)
{
    struct http_client *c = r->c;

    r->paused = false;
    /* curl_easy_pause() hands the held bytes to on_write before returning,
     * and on_data may pause, cancel or resume again from there. */
    c->cl.in_curl++;
    CURLcode cc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
    c->cl.in_curl--;
    if (cc != CURLE_OK && r->state == REQ_RUNNING) {
        /* curl dropped the held bytes but would go on with the transfer;
         * end it here rather than deliver a body with a hole. */
        remove_easy(r);
        finish(r, r->abort_rc ? r->abort_rc : SHOAL_EUPSTREAM, cc);
    }
}

static void process(struct http_client_req *r)
{
    struct http_client *c = r->c;

    if (r->state == REQ_COMPLETING) {
        remove_easy(r);
        finish(r, r->finish_rc, CURLE_OK);
        return;
    }
    if (r->state == REQ_QUEUED) {
        CURLMcode mc = curl_multi_add_handle(c->cl.multi, r->easy);
        if (mc != CURLM_OK) {
            LOG(WARN, COMP, "url=%s add_handle=%s", r->url, curl_multi_strerror(mc));
            finish(r, SHOAL_EINTERNAL, CURLE_OK);
            return;
        }
        r->in_multi = true;
        set_state(r, REQ_RUNNING);
    }
    if (r->want_resume) {
        r->want_resume = false;
        if (r->paused && r->state == REQ_RUNNING)
            unpause(r);
    }
}

/* The idle handle or the loop part closed: the client is freed with the
 * last of the two. */
static void part_closed(struct http_client *c)
{
    if (--c->parts_open > 0)
        return;
    void (*cb)(void *) = c->destroy_cb;
    void *arg = c->destroy_arg;
    free(c->tls_origin);
    free(c);
    if (cb)
        cb(arg);
}

static void on_idle_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static void on_loop_closed(void *arg)
{
    part_closed(arg);
}

/* After every socket action of the loop part. */
static void on_progress(void *arg)
{
    check_done(arg);
}

static void teardown(struct http_client *c)
{
    c->torn_down = true;
    uv_idle_stop(&c->idle);
    http_client_loop_close(&c->cl);
    uv_close((uv_handle_t *)&c->idle, on_idle_closed);
}

static void on_idle(uv_idle_t *h)
{
    struct http_client *c = h->data;
    struct qlink batch;

    /* Work queued while this runs waits for the next turn, so a callback
     * that resumes from inside on_data cannot spin here. */
    qmove(&c->pending, &batch);
    while (!qempty(&batch)) {
        struct http_client_req *r = CONTAINER_OF(batch.next, struct http_client_req, pend);
        qremove(&r->pend);
        process(r);
    }
    check_done(c);
    if (qempty(&c->pending))
        uv_idle_stop(h);
    if (c->destroying && !c->torn_down && qempty(&c->reqs))
        teardown(c);
}

/* ---- public API ---- */

int http_client_create(uv_loop_t *loop, struct http_client **out)
{
    struct http_client *c = NULL;
    int rc = 0;

    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        rc = SHOAL_EINTERNAL;
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    qinit(&c->reqs);
    qinit(&c->pending);
    rc = http_client_loop_init(&c->cl, loop, on_progress, on_loop_closed, c);
    if (rc < 0)
        goto out;
    /* Cannot fail on a live loop, so nothing below needs undoing through
     * close callbacks. */
    uv_idle_init(loop, &c->idle);
    c->idle.data = c;
    c->parts_open = 2;
    *out = c;
    c = NULL;
out:
    free(c);
    return rc;
}

void http_client_destroy(struct http_client *c, void (*cb)(void *arg), void *arg)
{
    struct qlink *l;

    if (!c || c->destroying)
        return;
    c->destroying = true;
    c->destroy_cb = cb;
    c->destroy_arg = arg;
    for (l = c->reqs.next; l != &c->reqs; l = l->next) {
        struct http_client_req *r = CONTAINER_OF(l, struct http_client_req, all);
        if (r->state == REQ_QUEUED || r->state == REQ_RUNNING)
            complete_later(r, SHOAL_ECANCELED);
    }
    /* The teardown itself runs from the idle callback: we may be inside a
     * curl callback or the info-read loop, where the multi must live on. */
    uv_idle_start(&c->idle, on_idle);
}

/* CURLOPT_SSL_CTX_FUNCTION of a request under the cluster TLS origin. */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *arg)
{
    (void)easy;
    return tls_context_setup_curl(arg, ssl_ctx) == 0 ? CURLE_OK : CURLE_SSL_CERTPROBLEM;
}

int http_client_set_cluster_tls(struct http_client *c, const char *origin, struct tls_context *tls)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    char *copy;

    if (tls == NULL) {
        free(c->tls_origin);
        c->tls_origin = NULL;
        c->tls = NULL;
        return 0;
    }
    if (origin == NULL)
        return -EINVAL;
    /* Each origin of the list: https://, not empty. */
    for (const char *o = origin;;) {
        const char *end = strchr(o, ',');
        size_t len = end ? (size_t)(end - o) : strlen(o);
        if (len <= 8 || strncasecmp(o, "https://", 8) != 0)
            return -EINVAL;
        if (!end)
            break;
        o = end + 1;
    }
    /* CURLOPT_SSL_CTX_FUNCTION hands over an OpenSSL SSL_CTX only when
     * libcurl is built on OpenSSL (Debian's libcurl4 is). */
    if (v == NULL || v->ssl_version == NULL || strncmp(v->ssl_version, "OpenSSL/", 8) != 0) {
        LOG(ERROR, COMP, "msg=\"libcurl does not use OpenSSL: cluster TLS unavailable\" ssl=%s",
            v && v->ssl_version ? v->ssl_version : "none");
        return -ENOTSUP;
    }
    copy = strdup(origin);
    if (copy == NULL)
        return -ENOMEM;
    free(c->tls_origin);
    c->tls_origin = copy;
    c->tls = tls;
    return 0;
}

/* True when url is under one of the cluster TLS origins. */
static bool under_origin(const struct http_client *c, const char *url)
{
    for (const char *o = c->tls_origin; o != NULL;) {
        const char *end = strchr(o, ',');
        size_t n = end ? (size_t)(end - o) : strlen(o);

        if (strncasecmp(url, o, n) == 0 && (url[n] == '\0' || url[n] == '/' || url[n] == '?'))
            return true;
        o = end ? end + 1 : NULL;
    }
    return false;
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (curl_easy_setopt(r->easy, (opt), (val)) != CURLE_OK) {                                 \
            LOG(WARN, COMP, "url=%s setopt=%s failed", opts->url, #opt);                           \
            rc = SHOAL_EINTERNAL;                                                                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

int http_client_request(struct http_client *c, const struct http_client_opts *opts,
                        struct http_client_req **out)
{
    struct http_client_req *r = NULL;
    struct url_origin origin;
    int rc = 0;
    bool head = false;
    bool post = false;

    if (!c || !opts || !opts->url)
        return -EINVAL;
    if (c->destroying)
        return SHOAL_ECANCELED;
    bool put = false, del = false, from_file = false;
    if (opts->method && strcmp(opts->method, "HEAD") == 0)
        head = true;
    else if (opts->method && strcmp(opts->method, "POST") == 0)
        post = true;
    else if (opts->method &&
             (strcmp(opts->method, "PUT") == 0 || strcmp(opts->method, "PATCH") == 0))
        put = true;
    else if (opts->method && strcmp(opts->method, "DELETE") == 0)
        del = true;
    else if (opts->method && strcmp(opts->method, "GET") != 0)
        return -EINVAL;
    if (opts->body && !post && !put)
        return -EINVAL;
    from_file = put && opts->upload_fd >= 0 && opts->upload_len > 0;
    if (from_file && opts->body)
        return -EINVAL;

    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->c = c;
    r->head = head;
    r->follow = opts->follow_redirects;
    r->on_response = opts->on_response;
    r->on_data = opts->on_data;
    r->on_done = opts->on_done;
    r->arg = opts->arg;
    r->state = REQ_QUEUED;
    buf_init(&r->resp.headers, MAX_HEADER_BLOCK);
    buf_init(&r->resp.body, opts->max_body ? opts->max_body : DEFAULT_MAX_BODY);
    r->resp.content_length = UINT64_MAX;
    r->url = strdup(opts->url);
    r->easy = curl_easy_init();
    if (!r->url || !r->easy) {
        rc = -ENOMEM;
        goto out;
    }
    /* No "Expect: 100-continue" round trip before a POST body. */
    if (post || put) {
        r->hdrs = curl_slist_append(r->hdrs, "Expect:");
        if (!r->hdrs) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (const char *const *h = opts->headers; h && *h; h++) {
        struct curl_slist *nl = curl_slist_append(r->hdrs, *h);
        if (!nl) {
            rc = -ENOMEM;
            goto out;
        }
        r->hdrs = nl;
    }

    SETOPT(CURLOPT_URL, opts->url);
    SETOPT(CURLOPT_PRIVATE, (void *)r);
    SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    /* A request that starts over TLS stays on TLS: no redirect to plain
     * http, where the bytes (and a token meant for the realm) travel in
     * clear text and anyone on the path could answer. */
    r->https_only = url_origin_parse(opts->url, &origin) == 0 && origin.https;
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, r->https_only ? "https" : "http,https");
    SETOPT(CURLOPT_USERAGENT, "shoal");
    SETOPT(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, (void *)r);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, (void *)r);
    SETOPT(CURLOPT_BUFFERSIZE, RECV_BUFFER_SIZE);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_TCP_KEEPIDLE, 60L);
    SETOPT(CURLOPT_TCP_KEEPINTVL, 30L);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS,
           opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS);
    if (opts->timeout_ms > 0)
        SETOPT(CURLOPT_TIMEOUT_MS, opts->timeout_ms);
    SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1024L);
    SETOPT(CURLOPT_LOW_SPEED_TIME,
           opts->low_speed_time_s > 0 ? opts->low_speed_time_s : DEFAULT_LOW_SPEED_TIME_S);
    if (head)
        SETOPT(CURLOPT_NOBODY, 1L);
    if (post || (put && !from_file)) {
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)opts->body_len);
        SETOPT(CURLOPT_COPYPOSTFIELDS, opts->body ? (const char *)opts->body : "");
        if (put)
            SETOPT(CURLOPT_CUSTOMREQUEST, opts->method);
    }
    if (from_file) {
        r->upload_fd = opts->upload_fd;
        r->upload_len = opts->upload_len;
        SETOPT(CURLOPT_UPLOAD, 1L);
        SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)opts->upload_len);
        SETOPT(CURLOPT_READFUNCTION, on_read);
        SETOPT(CURLOPT_READDATA, (void *)r);
        if (strcmp(opts->method, "PUT") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, opts->method);
    }
    if (del)
        SETOPT(CURLOPT_CUSTOMREQUEST, "DELETE");
    if (opts->follow_redirects) {
        /* No CURLOPT_UNRESTRICTED_AUTH: curl then drops userpwd and custom
         * Authorization headers when a redirect changes host, port or
         * scheme. */
        SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
        SETOPT(CURLOPT_MAXREDIRS, MAX_REDIRS);
    }
    if (r->hdrs)
        SETOPT(CURLOPT_HTTPHEADER, r->hdrs);
    if (opts->userpwd) {
        SETOPT(CURLOPT_USERPWD, opts->userpwd);
        SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    }
    if (opts->ca_file)
        SETOPT(CURLOPT_CAINFO, opts->ca_file);
    if (opts->insecure) {
        SETOPT(CURLOPT_SSL_VERIFYPEER, 0L);
        SETOPT(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (under_origin(c, opts->url)) {
        r->cluster_tls = true;
        SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
        SETOPT(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        SETOPT(CURLOPT_SSL_CTX_DATA, (void *)c->tls);
        /* The server sends no tickets; nothing to resume. */
        SETOPT(CURLOPT_SSL_SESSIONID_CACHE, 0L);
        /* A PSK handshake has no certificate for libcurl to check; on_ssl_ctx
         * makes OpenSSL refuse one instead. With mtls libcurl checks the
         * chain (against the cluster CA only) and the host name. */
        SETOPT(CURLOPT_SSL_VERIFYPEER, tls_context_mode(c->tls) == TLS_MODE_MTLS ? 1L : 0L);
        SETOPT(CURLOPT_SSL_VERIFYHOST, tls_context_mode(c->tls) == TLS_MODE_MTLS ? 2L : 0L);
        /* A redirect would leave the origin and its TLS. */
        SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    }

    if (c->cl.in_curl > 0) {
        /* Called from inside a curl callback, where curl refuses new handles
         * (CURLM_RECURSIVE_API_CALL); add it on the next turn. */
        qpush(&c->reqs, &r->all);
        enqueue(r);
    } else {
        CURLMcode mc = curl_multi_add_handle(c->cl.multi, r->easy);
        if (mc != CURLM_OK) {
            LOG(WARN, COMP, "url=%s add_handle=%s", opts->url, curl_multi_strerror(mc));
            rc = SHOAL_EINTERNAL;
            goto out;
        }
        r->in_multi = true;
        qpush(&c->reqs, &r->all);
        set_state(r, REQ_RUNNING);
    }
    if (out)
        *out = r;
    r = NULL;
out:
    if (r)
        free_req(r);
    return rc;
}

void http_client_resume(struct http_client_req *r)
{
    if (!r || (r->state != REQ_QUEUED && r->state != REQ_RUNNING))
        return;
    /* Never unpause in the caller's stack: curl_easy_pause() re-enters
     * on_data synchronously. */
    r->want_resume = true;
    enqueue(r);
}

void http_client_cancel(struct http_client_req *r)
{
    if (!r || (r->state != REQ_QUEUED && r->state != REQ_RUNNING))
        return;
    complete_later(r, SHOAL_ECANCELED);
}
