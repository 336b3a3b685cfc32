/* curl's multi handle on the libuv loop; see http_client_loop.h. */
#include "http_client_loop.h"

#include <stdlib.h>

#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "http_client"

/* One socket curl asked us to watch. */
struct http_client_sock {
    uv_poll_t poll;
    struct http_client_loop *l;
    curl_socket_t fd;
    struct qlink link; /* in l->socks while the poll is open and not closing */
};

static void handle_closed(struct http_client_loop *l)
{
    if (--l->handles > 0 || !l->closing)
        return;
    l->on_closed(l->arg);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct http_client_sock *sk = h->data;
    struct http_client_loop *l = sk->l;

    free(sk);
    handle_closed(l);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void close_sock(struct http_client_sock *sk)
{
    uv_poll_stop(&sk->poll);
    qremove(&sk->link);
    uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

static void drive(struct http_client_loop *l, curl_socket_t s, int ev)
{
    int running = 0;

    l->in_curl++;
    CURLMcode mc = curl_multi_socket_action(l->multi, s, ev, &running);
    l->in_curl--;
    if (mc != CURLM_OK)
        LOG(WARN, COMP, "socket_action=%s", curl_multi_strerror(mc));
    l->on_progress(l->arg);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct http_client_sock *sk = h->data;
    int ev = 0;

    if (status < 0) {
        ev = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            ev |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            ev |= CURL_CSELECT_OUT;
    }
    drive(sk->l, sk->fd, ev);
}

/* CURLMOPT_SOCKETFUNCTION. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_client_loop *l = userp;
    struct http_client_sock *sk = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* Stop now: curl closes s right after this returns and the fd number
         * may come back for a new connection before the close completes. */
        if (sk)
            close_sock(sk);
        return 0;
    }
    if (!sk) {
        sk = calloc(1, sizeof(*sk));
        if (!sk)
            return -1;
        if (uv_poll_init_socket(l->loop, &sk->poll, s) != 0) {
            free(sk);
            return -1;
        }
        sk->l = l;
        sk->fd = s;
        sk->poll.data = sk;
        l->handles++;
        qpush(&l->socks, &sk->link);
        curl_multi_assign(l->multi, s, sk);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    if (events)
        uv_poll_start(&sk->poll, events, on_poll);
    else
        uv_poll_stop(&sk->poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct http_client_loop *l = t->data;

    drive(l, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION. Only arms the uv timer: calling curl from here
 * would recurse into it. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client_loop *l = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&l->timer);
    else
        uv_timer_start(&l->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

int http_client_loop_init(struct http_client_loop *l, uv_loop_t *loop,
                          void (*on_progress)(void *arg), void (*on_closed)(void *arg), void *arg)
{
    l->loop = loop;
    l->on_progress = on_progress;
    l->on_closed = on_closed;
    l->arg = arg;
    l->in_curl = 0;
    l->closing = false;
    qinit(&l->socks);
    l->multi = curl_multi_init();
    if (!l->multi)
        return SHOAL_EINTERNAL;
    if (curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L) != CURLM_OK) {
        curl_multi_cleanup(l->multi);
        l->multi = NULL;
        return SHOAL_EINTERNAL;
    }
    /* Cannot fail on a live loop, so nothing above needs undoing through a
     * close callback. */
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->handles = 1;
    return 0;
}

void http_client_loop_close(struct http_client_loop *l)
{
    l->closing = true;
    /* May report CURL_POLL_REMOVE for cached connections; on_socket closes
     * those polls. */
    curl_multi_cleanup(l->multi);
    l->multi = NULL;
    while (!qempty(&l->socks))
        close_sock(CONTAINER_OF(l->socks.next, struct http_client_sock, link));
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}
