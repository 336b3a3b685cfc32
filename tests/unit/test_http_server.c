/* Loop tests of common/http_server.c.
 *
 * Each test owns a uv loop with the server on 127.0.0.1:0; the client side
 * runs on a helper thread with plain blocking sockets and reports back with a
 * uv_async_t. Client checks are recorded (cmocka asserts must stay on the main
 * thread) and asserted after the thread is joined. A 30 s guard timer turns a
 * hang into a failure; no test sleeps.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/http_server.h"

#define GUARD_MS 30000

struct fx;
typedef void (*fx_handler)(struct fx *f, struct http_request *req);
typedef void (*fx_client)(struct fx *f);

struct fx {
    uv_loop_t loop;
    struct http_server *srv;
    int port;
    uv_async_t done;
    uv_timer_t guard;
    uv_prepare_t turns; /* counts loop iterations */
    uint64_t turn;
    uint64_t close_turn, handler_turn;
    pthread_t thr;
    struct cl *kept; /* a client socket left open for the main thread to close */
    fx_client client;
    fx_handler handler;
    int expect_closes;
    bool client_done, stopping, async_closed, destroyed, timed_out;
    char cerr[256]; /* first failed client check */

    /* Server-side records. */
    int handler_calls;
    int close_calls;
    bool close_in_api;
    bool drain_in_api;
    char log[256];
    char method[16], path[64], query[64], host[32], empty_hdr[8], peer[64], qval[16];
    int http_minor;
    bool has_body, is_head;
    uint64_t ids[4];
    char peers[4][64];
    unsigned conns_seen;
    int rc1, rc2;
    /* Streaming. */
    uint64_t total, sent, chunk;
    size_t low_water, max_pending;
    int drain_calls;
    int file_fd;
};

static int g_in_api; /* > 0 while a test is inside an http_response_* call */
static int g_error_body_calls;
static int g_error_body_status;

#define API(x)                                                                                     \
    do {                                                                                           \
        g_in_api++;                                                                                \
        x;                                                                                         \
        g_in_api--;                                                                                \
    } while (0)

static uint8_t pat(uint64_t i)
{
    return (uint8_t)(i ^ (i >> 8) ^ (i >> 16) ^ 0x5a);
}

struct cl;
static void cl_close(struct cl *c);

/* --- Harness --------------------------------------------------------------- */

static void on_destroyed(void *arg)
{
    struct fx *f = arg;

    f->destroyed = true;
}

static void maybe_stop(struct fx *f)
{
    if (!f->stopping && (f->timed_out || (f->client_done && f->close_calls >= f->expect_closes))) {
        f->stopping = true;
        http_server_destroy(f->srv, on_destroyed, f);
        uv_close((uv_handle_t *)&f->guard, NULL);
        uv_close((uv_handle_t *)&f->turns, NULL);
    }
    /* The async stays open until the client thread has sent it. */
    if (f->stopping && f->client_done && !f->async_closed) {
        f->async_closed = true;
        uv_close((uv_handle_t *)&f->done, NULL);
    }
}

static void on_async(uv_async_t *h)
{
    struct fx *f = h->data;

    f->client_done = true;
    maybe_stop(f);
}

static void on_guard(uv_timer_t *t)
{
    struct fx *f = t->data;

    f->timed_out = true;
    maybe_stop(f);
}

static void count_close(struct http_request *req, void *arg)
{
    struct fx *f = arg;
    size_t n = strlen(f->log);

    if (g_in_api > 0)
        f->close_in_api = true;
    f->close_calls++;
    f->close_turn = f->turn;
    snprintf(f->log + n, sizeof(f->log) - n, "c%s ", req->path);
    maybe_stop(f);
}

static void on_request(struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    size_t n = strlen(f->log);

    f->handler_calls++;
    f->handler_turn = f->turn;
    snprintf(f->log + n, sizeof(f->log) - n, "h%s ", req->path);
    http_request_on_close(req, count_close, f);
    f->handler(f, req);
}

static void on_turn(uv_prepare_t *h)
{
    struct fx *f = h->data;

    f->turn++;
}

static void *client_main(void *arg)
{
    struct fx *f = arg;

    f->client(f);
    uv_async_send(&f->done);
    return NULL;
}

static struct http_server_config base_cfg(void)
{
    struct http_server_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = "127.0.0.1:0";
    return cfg;
}

static void fx_run(struct fx *f, const struct http_server_config *cfg)
{
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(http_server_create(&f->loop, cfg, on_request, f, &f->srv), 0);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->done, on_async), 0);
    f->done.data = f;
    assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
    f->guard.data = f;
    assert_int_equal(uv_timer_start(&f->guard, on_guard, GUARD_MS, 0), 0);
    assert_int_equal(uv_prepare_init(&f->loop, &f->turns), 0);
    f->turns.data = f;
    assert_int_equal(uv_prepare_start(&f->turns, on_turn), 0);
    assert_int_equal(pthread_create(&f->thr, NULL, client_main, f), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(pthread_join(f->thr, NULL), 0);
    if (f->kept != NULL) {
        cl_close(f->kept);
        free(f->kept);
    }
    assert_true(f->destroyed);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->cerr[0] != '\0')
        fail_msg("client check failed: %s", f->cerr);
    assert_false(f->timed_out);
    /* Every dispatched request got exactly one on_close, never inside an
     * http_response_* call. */
    assert_int_equal(f->close_calls, f->handler_calls);
    assert_false(f->close_in_api);
}

static struct fx *fx_new(fx_handler h, fx_client c)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->handler = h;
    f->client = c;
    f->file_fd = -1;
    return f;
}

/* --- Client side (helper thread) -------------------------------------------- */

#define CK(f, cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if ((f)->cerr[0] == '\0')                                                              \
                snprintf((f)->cerr, sizeof((f)->cerr), "line %d: %s", __LINE__, #cond);            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

struct cl {
    int fd;
    size_t len;
    char buf[65536];
};

struct resp {
    int status;
    char head[16384];
    char *body;
    size_t body_len;
};

static int cl_open(struct cl *c, int port)
{
    struct sockaddr_in sin;
    struct timeval tv = {.tv_sec = 20, .tv_usec = 0};

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    /* A guard against a broken server hanging the test, not a delay. */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return connect(c->fd, (struct sockaddr *)&sin, sizeof(sin));
}

static void cl_close(struct cl *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int cl_send(struct cl *c, const void *p, size_t n)
{
    const char *s = p;

    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cl_sends(struct cl *c, const char *s)
{
    return cl_send(c, s, strlen(s));
}

static ssize_t cl_fill(struct cl *c)
{
    ssize_t n;

    if (c->len == sizeof(c->buf))
        return -1;
    do {
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static void cl_drop(struct cl *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads n bytes into dst (NULL: discard). Returns bytes read before EOF. */
static size_t cl_read(struct cl *c, char *dst, size_t n)
{
    size_t got = 0;

    while (got < n) {
        size_t take;

        if (c->len == 0 && cl_fill(c) <= 0)
            break;
        take = c->len < n - got ? c->len : n - got;
        if (dst != NULL)
            memcpy(dst + got, c->buf, take);
        cl_drop(c, take);
        got += take;
    }
    return got;
}

/* True when the server closed the connection (EOF or reset) with nothing
 * left to read. */
static bool cl_eof(struct cl *c)
{
    if (c->len > 0)
        return false;
    return cl_fill(c) == 0 || errno == ECONNRESET;
}

static const char *resp_hdr(const struct resp *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = strstr(r->head, "\r\n");

    while (p != NULL && p[2] != '\r') {
        const char *line = p + 2;
        const char *eol = strstr(line, "\r\n");

        if (eol == NULL)
            return NULL;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            size_t vlen;

            while (*v == ' ')
                v++;
            vlen = (size_t)(eol - v);
            if (vlen >= outlen)
                return NULL;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return out;
        }
        p = eol;
    }
    return NULL;
}

/* Reads one response head; the body too unless head_only or body_max is
 * exceeded. Returns 0 or -1. */
static int cl_response(struct cl *c, struct resp *r, bool head_only)
{
    char *end;
    size_t hl;
    char cl[32];
    char *e;

    memset(r, 0, sizeof(*r));
    for (;;) {
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL)
            break;
        if (cl_fill(c) <= 0)
            return -1;
    }
    hl = (size_t)(end - c->buf) + 4;
    if (hl >= sizeof(r->head))
        return -1;
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    cl_drop(c, hl);
    if (strncmp(r->head, "HTTP/1.1 ", 9) != 0)
        return -1;
    r->status = (int)strtol(r->head + 9, &e, 10);
    if (e != r->head + 12)
        return -1;
    if (head_only)
        return 0;
    if (resp_hdr(r, "Content-Length", cl, sizeof(cl)) != NULL) {
        size_t want = strtoull(cl, NULL, 10);

        r->body = malloc(want + 1);
        if (r->body == NULL)
            return -1;
        r->body_len = cl_read(c, r->body, want);
        r->body[r->body_len] = '\0';
        return r->body_len == want ? 0 : -1;
    }
    r->body = malloc(1 << 20);
    if (r->body == NULL)
        return -1;
    r->body_len = cl_read(c, r->body, (1 << 20) - 1);
    r->body[r->body_len] = '\0';
    return 0;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

static bool has_close(const struct resp *r)
{
    char v[32];

    return resp_hdr(r, "Connection", v, sizeof(v)) != NULL && strcasecmp(v, "close") == 0;
}

/* One request, one response, on a fresh connection; the response is
 * expected to end the connection. */
static void oneshot(struct fx *f, const char *request, int status, struct resp *r)
{
    struct cl *c = calloc(1, sizeof(*c));

    CK(f, c != NULL);
    if (cl_open(c, f->port) < 0 || cl_sends(c, request) < 0 || cl_response(c, r, false) < 0) {
        CK(f, !"request failed");
    }
    CK(f, r->status == status);
    CK(f, has_close(r));
    CK(f, cl_eof(c));
    cl_close(c);
    free(c);
}

/* --- Handlers ---------------------------------------------------------------- */

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "(null)");
}

static void h_body_is_path(struct fx *f, struct http_request *req)
{
    int rc;

    if (f->handler_calls <= 4) {
        f->ids[f->handler_calls - 1] = req->id;
        copy(f->peers[f->handler_calls - 1], sizeof(f->peers[0]), req->peer);
    }
    f->conns_seen = http_server_connections(f->srv);
    API(rc = http_response_simple(req, 200, "text/plain", req->path, strlen(req->path), NULL));
    assert_int_equal(rc, 0);
}

/* --- Tests ------------------------------------------------------------------- */

static void h_simple(struct fx *f, struct http_request *req)
{
    static const struct http_header extra[] = {{"X-Test", "1"}, {NULL, NULL}};
    char v[16];
    int rc;

    copy(f->method, sizeof(f->method), req->method);
    copy(f->path, sizeof(f->path), req->path);
    copy(f->query, sizeof(f->query), req->query);
    copy(f->host, sizeof(f->host), http_request_header(req, "host"));
    copy(f->empty_hdr, sizeof(f->empty_hdr), http_request_header(req, "X-Empty"));
    copy(f->peer, sizeof(f->peer), req->peer);
    copy(f->qval, sizeof(f->qval), http_request_query(req, "y", v, sizeof(v)));
    f->http_minor = req->http_minor;
    f->is_head = req->is_head;
    f->has_body = req->has_body;
    API(rc = http_response_simple(req, 200, "text/plain", "hello", 5, extra));
    assert_int_equal(rc, 0);
}

static void c_simple(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[64];

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /a/b?x=1&y=%41 HTTP/1.1\r\nHost: example\r\nX-Empty:\r\n"
                       "X-Other: z\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200);
    CK(f, r.body_len == 5 && memcmp(r.body, "hello", 5) == 0);
    CK(f, resp_hdr(&r, "X-Test", v, sizeof(v)) && strcmp(v, "1") == 0);
    CK(f, resp_hdr(&r, "Content-Type", v, sizeof(v)) && strcmp(v, "text/plain") == 0);
    CK(f, resp_hdr(&r, "Date", v, sizeof(v)) && strstr(v, " GMT") != NULL);
    CK(f, resp_hdr(&r, "Connection", v, sizeof(v)) == NULL);
    resp_free(&r);
    cl_close(&c);
}

static void test_simple_get(void **state)
{
    struct fx *f = fx_new(h_simple, c_simple);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_string_equal(f->method, "GET");
    assert_string_equal(f->path, "/a/b");
    assert_string_equal(f->query, "x=1&y=%41");
    assert_string_equal(f->host, "example");
    assert_string_equal(f->empty_hdr, "");
    assert_string_equal(f->qval, "A");
    assert_int_equal(strncmp(f->peer, "127.0.0.1:", 10), 0);
    assert_int_equal(f->http_minor, 1);
    assert_false(f->is_head);
    assert_false(f->has_body);
    free(f);
}

static void h_head(struct fx *f, struct http_request *req)
{
    static const struct http_header hdrs[] = {{"Content-Length", "5"}, {NULL, NULL}};
    int rc;

    if (req->is_head)
        f->is_head = true;
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    API(rc = http_response_write(req, "hello", 5));
    assert_int_equal(rc, 0);
    if (req->is_head)
        assert_int_equal(http_response_pending(req) > 0, 1); /* headers only */
    API(http_response_end(req));
}

static void c_head(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[16];

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "HEAD /x HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    CK(f, resp_hdr(&r, "Content-Length", v, sizeof(v)) && strcmp(v, "5") == 0);
    CK(f, !has_close(&r));
    /* Had the body leaked, this response would not start where expected. */
    CK(f, cl_sends(&c, "GET /x HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && r.body_len == 5 && memcmp(r.body, "hello", 5) == 0);
    resp_free(&r);
    cl_close(&c);
}

static void test_head(void **state)
{
    struct fx *f = fx_new(h_head, c_head);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 2);
    assert_true(f->is_head);
    free(f);
}

static void c_keepalive(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    for (int i = 1; i <= 2; i++) {
        char req[64];
        char want[8];

        snprintf(req, sizeof(req), "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
        snprintf(want, sizeof(want), "/%d", i);
        CK(f, cl_sends(&c, req) == 0);
        CK(f, cl_response(&c, &r, false) == 0);
        CK(f, r.status == 200 && strcmp(r.body, want) == 0);
        CK(f, !has_close(&r));
        resp_free(&r);
    }
    /* HTTP/1.0 keeps the connection only when asked to. */
    CK(f, cl_sends(&c, "GET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/3") == 0 && !has_close(&r));
    resp_free(&r);
    CK(f, cl_sends(&c, "GET /4 HTTP/1.0\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/4") == 0 && has_close(&r));
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_keepalive(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_keepalive);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 4);
    assert_string_equal(f->peers[0], f->peers[1]);
    assert_string_equal(f->peers[0], f->peers[3]);
    assert_true(f->ids[1] > f->ids[0]);
    assert_int_equal(f->conns_seen, 1);
    free(f);
}

static void answer_later(struct http_request *req, void *arg)
{
    struct fx *f = arg;

    h_body_is_path(f, req);
}

static void h_pipelined(struct fx *f, struct http_request *req)
{
    /* The first answer waits for a later loop turn: the second request must
     * not be dispatched before the first is closed, and not from inside the
     * pass that closed it. */
    if (strcmp(req->path, "/1") == 0) {
        API(http_response_on_drain(req, 0, answer_later, f));
    } else {
        if (f->handler_turn <= f->close_turn)
            f->rc1 = -1;
        h_body_is_path(f, req);
    }
}

static void c_pipelined(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f,
       cl_sends(&c, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/1") == 0);
    resp_free(&r);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/2") == 0);
    resp_free(&r);
    cl_close(&c);
}

static void test_pipelined(void **state)
{
    struct fx *f = fx_new(h_pipelined, c_pipelined);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_string_equal(f->log, "h/1 c/1 h/2 c/2 ");
    assert_int_equal(f->rc1, 0);
    free(f);
}

static const char *json_error_body(int status, const char *message, struct buf *out)
{
    g_error_body_calls++;
    g_error_body_status = status;
    buf_printf(out, "{\"errors\":[{\"code\":\"E%d\",\"message\":\"%s\"}]}", status, message);
    return "application/json";
}

/* A request whose head is exactly n bytes. */
static char *head_of_size(size_t n)
{
    const char *pre = "GET / HTTP/1.1\r\nX-Pad: ";
    size_t fixed = strlen(pre) + 4;
    char *s = malloc(n + 1);

    if (s == NULL || n < fixed)
        return NULL;
    memcpy(s, pre, strlen(pre));
    memset(s + strlen(pre), 'p', n - fixed);
    memcpy(s + n - 4, "\r\n\r\n", 4);
    s[n] = '\0';
    return s;
}

static void c_too_big(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[64];
    char *req = head_of_size(1024);

    /* Exactly at the cap passes. */
    CK(f, req != NULL);
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, req) == 0);
    free(req);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200);
    resp_free(&r);
    cl_close(&c);

    /* One byte over gets 431, through the error_body hook. */
    req = head_of_size(1025);
    CK(f, req != NULL);
    oneshot(f, req, 431, &r);
    free(req);
    CK(f, resp_hdr(&r, "Content-Type", v, sizeof(v)) && strcmp(v, "application/json") == 0);
    CK(f, r.body != NULL && strstr(r.body, "\"E431\"") != NULL);
    resp_free(&r);

    /* Far over, sent as a stream the server stops reading. */
    req = head_of_size(200000);
    CK(f, req != NULL);
    oneshot(f, req, 431, &r);
    free(req);
    resp_free(&r);
}

static void test_header_too_large(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_too_big);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_header_bytes = 1024;
    cfg.error_body = json_error_body;
    g_error_body_calls = 0;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(g_error_body_calls, 2);
    assert_int_equal(g_error_body_status, 431);
    free(f);
}

static void c_header_timeout(struct fx *f)
{
    struct cl c;
    struct resp r;

    /* A head that never completes. */
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET / HTTP/1.1\r\nHost:") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 408 && has_close(&r));
    CK(f, r.body != NULL && strstr(r.body, "timeout") != NULL); /* text/plain default */
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);

    /* Nothing at all after connecting. */
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 408 && has_close(&r));
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_header_timeout(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_header_timeout);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.header_timeout_ms = 100;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 0);
    free(f);
}

static void c_idle_timeout(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /i HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && !has_close(&r));
    resp_free(&r);
    /* Kept alive, then closed by the idle timer. */
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_idle_timeout(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_idle_timeout);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.idle_timeout_ms = 100;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    free(f);
}

static void c_conn_cap(struct fx *f)
{
    struct cl a, b;
    struct resp r;
    char v[64];

    CK(f, cl_open(&a, f->port) == 0);
    CK(f, cl_sends(&a, "GET /a1 HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&a, &r, false) == 0);
    CK(f, r.status == 200 && !has_close(&r));
    resp_free(&r);

    CK(f, cl_open(&b, f->port) == 0);
    CK(f, cl_sends(&b, "GET /b HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&b, &r, false) == 0);
    CK(f, r.status == 503 && has_close(&r));
    CK(f, resp_hdr(&r, "Content-Type", v, sizeof(v)) && strcmp(v, "text/plain") == 0);
    resp_free(&r);
    CK(f, cl_eof(&b));
    cl_close(&b);

    /* The first connection still works. */
    CK(f, cl_sends(&a, "GET /a2 HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&a, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/a2") == 0);
    resp_free(&r);
    cl_close(&a);
}

static void test_connection_cap(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_conn_cap);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_connections = 1;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 2);
    assert_string_equal(f->log, "h/a1 c/a1 h/a2 c/a2 ");
    assert_int_equal(f->conns_seen, 1);
    free(f);
}

static void c_malformed(struct fx *f)
{
    struct resp r;

    oneshot(f, "G\x01T / HTTP/1.1\r\n\r\n", 400, &r);
    resp_free(&r);
    oneshot(f, "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, &r);
    resp_free(&r);
    oneshot(f, "GET / HTTP/2.0\r\n\r\n", 400, &r);
    resp_free(&r);
}

static void test_malformed(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_malformed);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 0);
    free(f);
}

static void h_body(struct fx *f, struct http_request *req)
{
    int rc;

    f->has_body = req->has_body;
    copy(f->method, sizeof(f->method), req->method);
    API(rc = http_response_simple(req, 201, NULL, "ok", 2, NULL));
    assert_int_equal(rc, 0);
}

static void c_body(struct fx *f)
{
    struct resp r;

    oneshot(f,
            "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            "GET /next HTTP/1.1\r\n\r\n",
            201, &r);
    CK(f, r.body != NULL && strcmp(r.body, "ok") == 0);
    resp_free(&r);
    oneshot(f, "PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 201, &r);
    resp_free(&r);
}

static void test_request_body(void **state)
{
    struct fx *f = fx_new(h_body, c_body);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 2);
    assert_true(f->has_body);
    assert_string_equal(f->method, "PUT");
    free(f);
}

/* --- Request bodies (max_body_bytes > 0) ---------------------------------------- */

#define BODY_MAX 100000

/* Answers "<method> <path> <body_len>:<first 16 body bytes>", and records
 * whether the body was NUL-terminated and matched the pattern. */
static void h_echo_body(struct fx *f, struct http_request *req)
{
    char out[128];
    int n, rc;

    if (req->body != NULL) {
        if (req->body[req->body_len] != '\0')
            f->rc1 = -1;
        for (size_t i = 16; i < req->body_len; i++) {
            if ((uint8_t)req->body[i] != (uint8_t)('a' + i % 26))
                f->rc2 = -1;
        }
    } else if (req->body_len != 0) {
        f->rc1 = -2;
    }
    n = snprintf(out, sizeof(out), "%s %s %zu:%.16s", req->method, req->path, req->body_len,
                 req->body != NULL ? req->body : "");
    API(rc = http_response_simple(req, 200, "text/plain", out, (size_t)n, NULL));
    assert_int_equal(rc, 0);
}

/* A POST head plus a body of len bytes: "0123456789abcdef" then a pattern. */
static char *post_of(const char *path, size_t len, const char *extra)
{
    char head[2048];
    int hl = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nContent-Length: %zu\r\n%s\r\n", path,
                      len, extra);
    char *s;

    if (hl < 0 || (size_t)hl >= sizeof(head))
        return NULL;
    s = malloc((size_t)hl + len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, head, (size_t)hl);
    for (size_t i = 0; i < len; i++)
        s[hl + i] = i < 16 ? "0123456789abcdef"[i] : (char)('a' + i % 26);
    s[hl + len] = '\0';
    return s;
}

static void c_body_read(struct fx *f)
{
    struct cl *c = calloc(1, sizeof(*c));
    struct resp r;
    char want[64];
    char *req;
    size_t hl;

    CK(f, c != NULL && cl_open(c, f->port) == 0);
    /* A small body, then a pipelined body request and a GET in one send:
     * all on one kept-alive connection, answered in order. */
    CK(f, cl_sends(c, "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello") == 0);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && !has_close(&r) && strcmp(r.body, "POST /a 5:hello") == 0);
    resp_free(&r);
    CK(f, cl_sends(c, "PUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                      "GET /c HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "PUT /b 3:xyz") == 0);
    resp_free(&r);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "GET /c 0:") == 0);
    resp_free(&r);

    /* A body of exactly the limit, larger than the input buffer, arriving
     * in pieces after its head. */
    req = post_of("/big", BODY_MAX, "");
    CK(f, req != NULL);
    hl = (size_t)(strstr(req, "\r\n\r\n") - req) + 4;
    if (cl_send(c, req, hl) < 0 || cl_send(c, req + hl, 7) < 0 ||
        cl_send(c, req + hl + 7, BODY_MAX - 7) < 0) {
        free(req);
        CK(f, !"send failed");
    }
    free(req);
    CK(f, cl_response(c, &r, false) == 0);
    snprintf(want, sizeof(want), "POST /big %d:0123456789abcdef", BODY_MAX);
    CK(f, r.status == 200 && strcmp(r.body, want) == 0);
    resp_free(&r);

    /* Expect: 100-continue gets the interim answer before the body is sent. */
    CK(f,
       cl_sends(c, "POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n") == 0);
    CK(f, cl_response(c, &r, true) == 0);
    CK(f, r.status == 100);
    CK(f, cl_sends(c, "body") == 0);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "POST /e 4:body") == 0);
    resp_free(&r);
    cl_close(c);
    free(c);

    /* One byte over the limit: 413 through the error_body hook, then close. */
    req = post_of("/over", BODY_MAX + 1, "");
    CK(f, req != NULL);
    oneshot(f, req, 413, &r);
    free(req);
    CK(f, r.body != NULL && strstr(r.body, "\"E413\"") != NULL);
    resp_free(&r);
    /* A huge announced length is refused before anything is read. */
    oneshot(f, "POST /huge HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nabc", 413, &r);
    resp_free(&r);
    /* Chunked bodies are not read. */
    oneshot(f, "POST /ch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            411, &r);
    CK(f, r.body != NULL && strstr(r.body, "\"E411\"") != NULL);
    resp_free(&r);
}

static void test_body_read(void **state)
{
    struct fx *f = fx_new(h_echo_body, c_body_read);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_body_bytes = BODY_MAX;
    cfg.error_body = json_error_body;
    g_error_body_calls = 0;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 5);
    assert_string_equal(f->log, "h/a c/a h/b c/b h/c c/c h/big c/big h/e c/e ");
    assert_int_equal(f->rc1, 0); /* bodies NUL-terminated */
    assert_int_equal(f->rc2, 0); /* and intact */
    assert_int_equal(g_error_body_calls, 3);
    free(f);
}

/* With bodies on, the head cap still counts head bytes only, exactly. */
static void c_body_head_cap(struct fx *f)
{
    struct cl c;
    struct resp r;
    char extra[1100];
    char *req;
    size_t pad;

    /* "POST /h HTTP/1.1\r\n" + "Content-Length: 600\r\n" + "X-Pad: ...\r\n" + "\r\n" */
    pad = 1024 - (18 + 21 + 7 + 2 + 2);
    memcpy(extra, "X-Pad: ", 7);
    memset(extra + 7, 'p', pad);
    memcpy(extra + 7 + pad, "\r\n", 3);
    req = post_of("/h", 600, extra);
    CK(f, req != NULL);
    CK(f, strstr(req, "\r\n\r\n") - req + 4 == 1024);
    CK(f, cl_open(&c, f->port) == 0);
    if (cl_sends(&c, req) < 0) {
        free(req);
        CK(f, !"send failed");
    }
    free(req);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "POST /h 600:0123456789abcdef") == 0);
    resp_free(&r);
    cl_close(&c);

    /* One more head byte: 431, whatever the body. */
    memcpy(extra + 7 + pad, "q\r\n", 4);
    req = post_of("/h2", 600, extra);
    CK(f, req != NULL);
    oneshot(f, req, 431, &r);
    free(req);
    resp_free(&r);
}

static void test_body_head_cap(void **state)
{
    struct fx *f = fx_new(h_echo_body, c_body_head_cap);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_header_bytes = 1024;
    cfg.max_body_bytes = 1000;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->rc1, 0);
    assert_int_equal(f->rc2, 0);
    free(f);
}

/* A body that never completes gets 408 from the header timer. */
static void c_body_timeout(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "POST /t HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 408 && has_close(&r));
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_body_timeout(void **state)
{
    struct fx *f = fx_new(h_echo_body, c_body_timeout);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.header_timeout_ms = 100;
    cfg.max_body_bytes = 1000;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 0);
    free(f);
}

#define FILE_SIZE (1 << 20)
#define RANGE_OFF 1000
#define RANGE_LEN 300000

static void h_sendfile(struct fx *f, struct http_request *req)
{
    static const struct http_header hdrs[] = {{"Content-Length", "300006"}, {NULL, NULL}};
    int fd = dup(f->file_fd);
    int rc;

    assert_true(fd >= 0);
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    API(rc = http_response_write(req, "<<<", 3));
    assert_int_equal(rc, 0);
    /* Two adjacent ranges (the server may merge them). */
    API(rc = http_response_sendfile(req, fd, RANGE_OFF, 100000));
    assert_int_equal(rc, 0);
    API(rc = http_response_sendfile(req, fd, RANGE_OFF + 100000, RANGE_LEN - 100000));
    assert_int_equal(rc, 0);
    close(fd); /* the server holds its own copy */
    API(rc = http_response_write(req, ">>>", 3));
    assert_int_equal(rc, 0);
    API(http_response_end(req));
}

static void c_sendfile(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[16];

    CK(f, cl_open(&c, f->port) == 0);
    for (int round = 0; round < 3; round++) {
        bool head = round == 1;

        CK(f, cl_sends(&c, head ? "HEAD /f HTTP/1.1\r\n\r\n" : "GET /f HTTP/1.1\r\n\r\n") == 0);
        CK(f, cl_response(&c, &r, head) == 0);
        CK(f, r.status == 200);
        CK(f, resp_hdr(&r, "Content-Length", v, sizeof(v)) && strcmp(v, "300006") == 0);
        if (!head) {
            CK(f, r.body_len == RANGE_LEN + 6);
            CK(f, memcmp(r.body, "<<<", 3) == 0);
            CK(f, memcmp(r.body + 3 + RANGE_LEN, ">>>", 3) == 0);
            for (size_t i = 0; i < RANGE_LEN; i++)
                CK(f, (uint8_t)r.body[3 + i] == pat(RANGE_OFF + i));
        }
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_sendfile(void **state)
{
    struct fx *f = fx_new(h_sendfile, c_sendfile);
    struct http_server_config cfg = base_cfg();
    char path[] = "/tmp/shoal-test-http-XXXXXX";
    uint8_t *data = malloc(FILE_SIZE);

    (void)state;
    assert_non_null(data);
    for (size_t i = 0; i < FILE_SIZE; i++)
        data[i] = pat(i);
    f->file_fd = mkstemp(path);
    assert_true(f->file_fd >= 0);
    unlink(path);
    assert_int_equal(write(f->file_fd, data, FILE_SIZE), FILE_SIZE);
    free(data);
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 3);
    close(f->file_fd);
    free(f);
}

static void stream_more(struct http_request *req, void *arg)
{
    struct fx *f = arg;
    size_t pend = http_response_pending(req);
    uint64_t n = f->total - f->sent < f->chunk ? f->total - f->sent : f->chunk;
    char *buf;
    int rc;

    if (g_in_api > 0)
        f->drain_in_api = true;
    f->drain_calls++;
    if (pend > f->low_water)
        f->max_pending = SIZE_MAX; /* fired too early */
    buf = malloc(n);
    assert_non_null(buf);
    for (uint64_t i = 0; i < n; i++)
        buf[i] = (char)pat(f->sent + i);
    API(rc = http_response_write(req, buf, n));
    free(buf);
    if (rc == SHOAL_ECANCELED)
        return; /* the peer is gone; on_close follows */
    assert_int_equal(rc, 0);
    f->sent += n;
    if (http_response_pending(req) > f->max_pending)
        f->max_pending = http_response_pending(req);
    if (f->sent == f->total)
        API(http_response_end(req));
    else
        API(http_response_on_drain(req, f->low_water, stream_more, f));
}

static void h_stream(struct fx *f, struct http_request *req)
{
    char cl[32];
    struct http_header hdrs[] = {{"Content-Length", cl}, {NULL, NULL}};
    int rc;

    snprintf(cl, sizeof(cl), "%llu", (unsigned long long)f->total);
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    /* Registered while satisfied: must still wait for a later turn. */
    API(http_response_on_drain(req, f->low_water, stream_more, f));
}

static void c_stream(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[32];
    uint64_t got = 0;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /big HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    CK(f, resp_hdr(&r, "Content-Length", v, sizeof(v)) && strtoull(v, NULL, 10) == f->total);
    while (got < f->total) {
        if (c.len == 0)
            CK(f, cl_fill(&c) > 0);
        for (size_t i = 0; i < c.len; i++)
            CK(f, (uint8_t)c.buf[i] == pat(got + i));
        got += c.len;
        c.len = 0;
    }
    CK(f, got == f->total);
    cl_close(&c);
}

static void test_stream_backpressure(void **state)
{
    struct fx *f = fx_new(h_stream, c_stream);
    struct http_server_config cfg = base_cfg();

    (void)state;
    f->total = 64ull << 20;
    f->chunk = 256 << 10;
    f->low_water = 64 << 10;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_true(f->sent == f->total);
    assert_false(f->drain_in_api);
    assert_true(f->drain_calls >= (int)(f->total / f->chunk));
    /* Back-pressure held: never more than one chunk above the low water. */
    assert_true(f->max_pending <= f->chunk + f->low_water);
    free(f);
}

static void do_abort(struct http_request *req, void *arg)
{
    struct fx *f = arg;

    API(http_response_abort(req));
    API(f->rc1 = http_response_write(req, "x", 1));
    f->rc2 = (int)http_response_pending(req);
}

static void h_abort(struct fx *f, struct http_request *req)
{
    static const struct http_header hdrs[] = {{"Content-Length", "1000000"}, {NULL, NULL}};
    char data[1000];
    int rc;

    memset(data, 'a', sizeof(data));
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    API(rc = http_response_write(req, data, sizeof(data)));
    assert_int_equal(rc, 0);
    /* Abort once the first bytes have reached the kernel. */
    API(http_response_on_drain(req, 0, do_abort, f));
}

static void c_abort(struct fx *f)
{
    struct cl c;
    struct resp r;
    size_t got;
    char *buf = malloc(1000000);

    CK(f, buf != NULL);
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /abort HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    got = cl_read(&c, buf, 1000000);
    free(buf);
    CK(f, got == 1000); /* truncated: exactly what was sent before the abort */
    cl_close(&c);
}

static void test_abort(void **state)
{
    struct fx *f = fx_new(h_abort, c_abort);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    assert_int_equal(f->rc1, SHOAL_ECANCELED);
    assert_int_equal(f->rc2, 0);
    free(f);
}

static void c_disconnect(struct fx *f)
{
    struct cl c;
    struct resp r;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /gone HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    CK(f, cl_read(&c, NULL, 1 << 20) == 1 << 20);
    /* Reset, so the server's next write fails at once. */
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    cl_close(&c);
}

static void test_client_disconnect(void **state)
{
    struct fx *f = fx_new(h_stream, c_disconnect);
    struct http_server_config cfg = base_cfg();

    (void)state;
    f->total = 1ull << 40; /* never finished */
    f->chunk = 256 << 10;
    f->low_water = 64 << 10;
    /* The server is destroyed only after on_close ran for the dropped
     * request, so the close must come from detecting the disconnect. */
    f->expect_closes = 1;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    assert_true(f->sent < f->total);
    free(f);
}

static void c_stalled(struct fx *f)
{
    struct cl *c = calloc(1, sizeof(*c));
    int small = 4096;

    CK(f, c != NULL);
    f->kept = c;
    c->fd = -1;
    CK(f, cl_open(c, f->port) == 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    CK(f, cl_sends(c, "GET /stalled HTTP/1.1\r\n\r\n") == 0);
    /* Never reads: the socket stays open until the main thread closes it. */
}

static void test_write_timeout(void **state)
{
    struct fx *f = fx_new(h_stream, c_stalled);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.write_timeout_ms = 100;
    f->total = 1ull << 40;
    f->chunk = 256 << 10;
    f->low_water = 64 << 10;
    /* Only the write timeout can close this request: the client neither
     * reads nor closes before the server is gone. */
    f->expect_closes = 1;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    assert_true(f->sent < f->total);
    free(f);
}

static void h_destroy(struct fx *f, struct http_request *req)
{
    (void)req;
    /* No answer: the server goes away with the request in flight. */
    f->timed_out = false;
    f->stopping = true;
    http_server_destroy(f->srv, on_destroyed, f);
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_close((uv_handle_t *)&f->turns, NULL);
}

static void c_destroy(struct fx *f)
{
    struct cl c;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /d HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_destroy_in_handler(void **state)
{
    struct fx *f = fx_new(h_destroy, c_destroy);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    free(f);
}

static void h_crlf(struct fx *f, struct http_request *req)
{
    static const struct http_header bad_value[] = {{"X-Bad", "a\r\nInjected: 1"}, {NULL, NULL}};
    static const struct http_header bad_name[] = {{"X\nBad", "v"}, {NULL, NULL}};
    int rc;

    API(f->rc1 = http_response_start(req, 200, bad_value));
    API(f->rc2 = http_response_start(req, 200, bad_name));
    /* Nothing was queued: a correct answer can still follow. */
    API(rc = http_response_simple(req, 200, "text/plain", "fine", 4, NULL));
    assert_int_equal(rc, 0);
}

static void c_crlf(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /crlf HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "fine") == 0);
    CK(f, strstr(r.head, "Injected") == NULL && strstr(r.head, "X-Bad") == NULL);
    resp_free(&r);
    cl_close(&c);
}

static void test_crlf_in_header(void **state)
{
    struct fx *f = fx_new(h_crlf, c_crlf);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->rc1, SHOAL_EPARSE);
    assert_int_equal(f->rc2, SHOAL_EPARSE);
    free(f);
}

static void test_query(void **state)
{
    struct http_request req;
    char buf[16];
    char tiny[4];

    (void)state;
    memset(&req, 0, sizeof(req));
    req.query = "a=1&digest=sha256%3Aab&sp=a+b%20c&empty=&flag&a=2&bad=%zz&trunc=%4&nul=%00"
                "&long=0123456789abcdef&%6Bey=k";
    assert_string_equal(http_request_query(&req, "a", buf, sizeof(buf)), "1"); /* first wins */
    assert_string_equal(http_request_query(&req, "digest", buf, sizeof(buf)), "sha256:ab");
    assert_string_equal(http_request_query(&req, "sp", buf, sizeof(buf)), "a b c");
    assert_string_equal(http_request_query(&req, "empty", buf, sizeof(buf)), "");
    assert_string_equal(http_request_query(&req, "flag", buf, sizeof(buf)), "");
    assert_string_equal(http_request_query(&req, "key", buf, sizeof(buf)), "k");
    assert_null(http_request_query(&req, "missing", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "bad", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "trunc", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "nul", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "long", buf, sizeof(buf))); /* 16 + NUL > 16 */
    assert_string_equal(http_request_query(&req, "a", tiny, sizeof(tiny)), "1");
    assert_null(http_request_query(&req, "digest", tiny, sizeof(tiny)));
    assert_null(http_request_query(&req, "", buf, sizeof(buf)));
    req.query = NULL;
    assert_null(http_request_query(&req, "a", buf, sizeof(buf)));
}

static void test_status_text(void **state)
{
    (void)state;
    assert_string_equal(http_status_text(200), "OK");
    assert_string_equal(http_status_text(206), "Partial Content");
    assert_string_equal(http_status_text(307), "Temporary Redirect");
    assert_string_equal(http_status_text(404), "Not Found");
    assert_string_equal(http_status_text(416), "Range Not Satisfiable");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(503), "Service Unavailable");
    assert_string_equal(http_status_text(799), "Unknown");
}

static void test_bad_listen(void **state)
{
    uv_loop_t loop;
    struct http_server *s = (struct http_server *)&loop;
    struct http_server_config cfg = base_cfg();
    static const char *const bad[] = {"127.0.0.1", "127.0.0.1:",      "127.0.0.1:70000", "::1:80",
                                      "[::1]80",   "host.example:80", "1.2.3.4:8x"};

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.listen = bad[i];
        assert_int_equal(http_server_create(&loop, &cfg, on_request, NULL, &s), SHOAL_ECONFIG);
        assert_null(s);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_header_timeout),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_request_body),
        cmocka_unit_test(test_body_read),
        cmocka_unit_test(test_body_head_cap),
        cmocka_unit_test(test_body_timeout),
        cmocka_unit_test(test_sendfile),
        cmocka_unit_test(test_stream_backpressure),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_client_disconnect),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_destroy_in_handler),
        cmocka_unit_test(test_crlf_in_header),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_bad_listen),
    };

    /* sendfile(2) has no MSG_NOSIGNAL; programs using the server ignore it. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
