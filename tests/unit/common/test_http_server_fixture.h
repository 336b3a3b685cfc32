/* Shared harness for the loop tests of common/http_server.c
 * (test_http_server.c and test_http_server_responses.c).
 *
 * Each test owns a uv loop with the server on 127.0.0.1:0; the client side
 * runs on a helper thread with plain blocking sockets and reports back with a
 * uv_async_t. Client checks are recorded (cmocka asserts must stay on the main
 * thread) and asserted after the thread is joined. A 30 s guard timer turns a
 * hang into a failure; no test sleeps.
 *
 * Test-only header of static helpers: include it once, after defining
 * _GNU_SOURCE (memmem, SOCK_CLOEXEC).
 */
#ifndef SHOAL_TEST_HTTP_SERVER_FIXTURE_H
#define SHOAL_TEST_HTTP_SERVER_FIXTURE_H

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
#include "support/http_head.h"

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

#define API(x)                                                                                     \
    do {                                                                                           \
        g_in_api++;                                                                                \
        x;                                                                                         \
        g_in_api--;                                                                                \
    } while (0)

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

/* The value of header name in the response head (support/http_head.h). */
static const char *resp_hdr(const struct resp *r, const char *name, char *out, size_t outlen)
{
    return http_head_header(r->head, name, out, outlen);
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

#endif /* SHOAL_TEST_HTTP_SERVER_FIXTURE_H */
