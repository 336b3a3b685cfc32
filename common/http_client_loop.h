/* The lower half of the HTTP client: curl's multi handle driven by a libuv
 * loop. curl says which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to time out (CURLMOPT_TIMERFUNCTION); a uv_poll per socket and one
 * uv_timer call back into curl_multi_socket_action, after which the owner is
 * told through on_progress, so it can collect finished transfers. This part
 * knows nothing of requests; http_client.c (the requests, curl's easy
 * callbacks and the public API) sits on top of it and is never called from
 * here except through the two function pointers it handed over.
 *
 * Private to common/: nothing outside http_client*.c may include it.
 */
#ifndef SHOAL_HTTP_CLIENT_LOOP_H
#define SHOAL_HTTP_CLIENT_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

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

struct http_client_loop {
    uv_loop_t *loop;
    CURLM *multi;       /* NULL once http_client_loop_close ran */
    uv_timer_t timer;   /* curl's timeout */
    struct qlink socks; /* open polls (struct http_client_sock) */
    unsigned handles;   /* uv handles not yet closed: the timer and the polls */
    int in_curl;        /* > 0 while curl may be running the owner's callbacks */
    bool closing;
    /* Called after every curl_multi_socket_action, from a poll or the
     * timer callback; the owner drains curl_multi_info_read there. */
    void (*on_progress)(void *arg);
    /* Called once, when the last handle has closed after
     * http_client_loop_close; the struct may be freed from there. */
    void (*on_closed)(void *arg);
    void *arg;
};

/* Creates the multi handle, wires its socket and timer callbacks to the
 * loop and initialises the timer. The struct is embedded by the owner; the
 * callbacks and arg are borrowed. 0 or SHOAL_EINTERNAL (nothing to undo). */
int http_client_loop_init(struct http_client_loop *l, uv_loop_t *loop,
                          void (*on_progress)(void *arg), void (*on_closed)(void *arg), void *arg);

/* Cleans the multi handle up (every easy handle must be out of it), closes
 * the polls and the timer; on_closed runs from the last close callback. Must
 * not be called from inside a curl callback. */
void http_client_loop_close(struct http_client_loop *l);

#endif
