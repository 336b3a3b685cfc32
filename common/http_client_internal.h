/* Internals of the HTTP client shared by http_client.c (requests, curl's
 * easy callbacks, the public API) and http_client_loop.c (curl's sockets and
 * timer driven by the libuv loop). */
#ifndef SHOAL_HTTP_CLIENT_INTERNAL_H
#define SHOAL_HTTP_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

#include "shoal/http_client.h"

/* Minimal intrusive circular list, as libuv's QUEUE. */
struct qlink {
    struct qlink *prev, *next;
};

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

static inline void qinit(struct qlink *h)
{
    h->prev = h->next = h;
}

static inline bool qempty(const struct qlink *h)
{
    return h->next == h;
}

static inline void qpush(struct qlink *h, struct qlink *l)
{
    l->prev = h->prev;
    l->next = h;
    h->prev->next = l;
    h->prev = l;
}

/* Unlinks l and marks it unlinked (next == NULL) so membership is testable. */
static inline void qremove(struct qlink *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

/* Moves every element of from to the empty list to; from ends up empty. */
static inline void qmove(struct qlink *from, struct qlink *to)
{
    if (qempty(from)) {
        qinit(to);
        return;
    }
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    qinit(from);
}

/* XX(name): QUEUED = created, not yet in the multi handle (added from the
 * idle callback); RUNNING = in the multi handle; COMPLETING = outcome decided
 * (cancel, destroy), on_done queued; DONE = on_done running or ran. */
#define REQ_STATE_MAP(XX) XX(QUEUED) XX(RUNNING) XX(COMPLETING) XX(DONE)

enum req_state {
#define XX(name) REQ_##name,
    REQ_STATE_MAP(XX)
#undef XX
};

struct sock {
    uv_poll_t poll;
    struct http_client *c;
    curl_socket_t fd;
    struct qlink link; /* in c->socks while the poll is open and not closing */
};

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    uv_idle_t idle;
    struct qlink reqs;    /* every request not yet DONE */
    struct qlink pending; /* requests with deferred work */
    struct qlink socks;   /* open polls */
    unsigned handles;     /* uv handles not yet closed */
    int in_curl;          /* > 0 while curl may be running our callbacks */
    bool destroying;
    bool torn_down;
    void (*destroy_cb)(void *arg);
    void *destroy_arg;
};

struct http_client_req {
    struct http_client *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url; /* for log lines */
    bool head;
    bool follow;
    int (*on_response)(void *arg, const struct http_client_response *resp);
    size_t (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, int rc, const struct http_client_response *resp);
    void *arg;
    struct http_client_response resp;

    enum req_state state;
    bool in_multi;
    bool paused;      /* on_data returned HTTP_CLIENT_PAUSE, not yet unpaused */
    bool want_resume; /* http_client_resume() asked, idle callback not yet run */
    bool responded;   /* on_response ran (or would have, when NULL) */
    int finish_rc;    /* for COMPLETING */
    int abort_rc;     /* why one of our callbacks failed the transfer */
    long line_status; /* parsed from the last status line, fallback for getinfo */
    struct qlink all;
    struct qlink pend;
    char errbuf[CURL_ERROR_SIZE];
};

/* Finishes requests curl reports done, and the client's teardown once the
 * last one is gone. */
void http_client_check_done(struct http_client *c);
/* A uv handle of the client closed: frees the client with the last one. */
void http_client_handle_closed(struct http_client *c);
void http_client_close_sock(struct sock *sk);
/* CURLMOPT_SOCKETFUNCTION and CURLMOPT_TIMERFUNCTION (http_client_loop.c). */
int http_client_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
int http_client_on_curl_timer(CURLM *multi, long timeout_ms, void *userp);

#endif
