/* HTTP client: curl's sockets and timer on the libuv loop. curl says which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to time out
 * (CURLMOPT_TIMERFUNCTION); a uv_poll per socket and one uv_timer call back
 * into curl_multi_socket_action, and finished transfers are collected. */
#include <stdlib.h>

#include "http_client_internal.h"
#include "shoal/log.h"

#define COMP "http_client"

void http_client_handle_closed(struct http_client *c)
{
    if (--c->handles > 0 || !c->torn_down)
        return;
    void (*cb)(void *) = c->destroy_cb;
    void *arg = c->destroy_arg;
    free(c);
    if (cb)
        cb(arg);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock *sk = h->data;
    struct http_client *c = sk->c;

    free(sk);
    http_client_handle_closed(c);
}

void http_client_close_sock(struct sock *sk)
{
    uv_poll_stop(&sk->poll);
    qremove(&sk->link);
    uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

static void drive(struct http_client *c, curl_socket_t s, int ev)
{
    int running = 0;

    c->in_curl++;
    CURLMcode mc = curl_multi_socket_action(c->multi, s, ev, &running);
    c->in_curl--;
    if (mc != CURLM_OK)
        LOG(WARN, COMP, "socket_action=%s", curl_multi_strerror(mc));
    http_client_check_done(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *sk = h->data;
    int ev = 0;

    if (status < 0) {
        ev = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            ev |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            ev |= CURL_CSELECT_OUT;
    }
    drive(sk->c, sk->fd, ev);
}

int http_client_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct sock *sk = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* Stop now: curl closes s right after this returns and the fd number
         * may come back for a new connection before the close completes. */
        if (sk)
            http_client_close_sock(sk);
        return 0;
    }
    if (!sk) {
        sk = calloc(1, sizeof(*sk));
        if (!sk)
            return -1;
        if (uv_poll_init_socket(c->loop, &sk->poll, s) != 0) {
            free(sk);
            return -1;
        }
        sk->c = c;
        sk->fd = s;
        sk->poll.data = sk;
        c->handles++;
        qpush(&c->socks, &sk->link);
        curl_multi_assign(c->multi, s, sk);
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
    struct http_client *c = t->data;

    drive(c, CURL_SOCKET_TIMEOUT, 0);
}

/* Only arms the uv timer: calling curl from here would recurse into it. */
int http_client_on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}
