/* One Redis connection on the loop. See redis_link.h.
 *
 * hiredis's asynchronous context does the protocol; this file gives it a
 * uv_poll_t for its socket (hiredis's event hooks), keeps the commands in
 * flight in send order (Redis answers in order) so a watchdog can tell when
 * the oldest has waited too long, and runs the connection's life: resolve,
 * connect, AUTH, SELECT, SCRIPT LOAD, up, down, back-off, again.
 */
#include "redis_link.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "redis"
#define WATCH_EVERY_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define DEFAULT_TIMEOUT_MS 2000

/* XX(name, text) */
#define LINK_STATE_MAP(XX)                                                                         \
    XX(DOWN, "down")                                                                               \
    XX(RESOLVING, "resolving")                                                                     \
    XX(CONNECTING, "connecting")                                                                   \
    XX(UP, "up")                                                                                   \
    XX(CLOSED, "closed")

enum link_state {
#define XX(name, text) LINK_##name,
    LINK_STATE_MAP(XX)
#undef XX
};

static const char *state_name(enum link_state s)
{
    static const char *const names[] = {
#define XX(name, text) text,
        LINK_STATE_MAP(XX)
#undef XX
    };
    return names[s];
}

/* A command in flight: hiredis's privdata. */
struct cmd {
    struct redis_link *l;
    struct cmd *prev, *next;
    uint64_t sent_ms;
    redis_link_cb cb; /* NULL for the link's own commands */
    void *arg;
    void (*own)(struct redis_link *l, redisReply *reply); /* the link's own commands */
    bool eval;
};

/* hiredis's event hooks on a uv_poll_t; freed when its handle closes. */
struct poll_ev {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    int events;
};

struct redis_link {
    uv_loop_t *loop;
    struct redis_link_config cfg;
    char *password;
    enum link_state state;
    redisAsyncContext *ac;
    uv_timer_t timer;
    bool timer_closed;
    uv_getaddrinfo_t gai;
    bool resolving;
    uint64_t backoff_ms;
    uint64_t retry_at;
    char sha[41];
    struct cmd *head, *tail; /* in flight, oldest first */
    struct redis_link_stats st;
    char last_error[160];
};

static void go_down(struct redis_link *l, const char *why);
static void maybe_free(struct redis_link *l);

static void set_state(struct redis_link *l, enum link_state s)
{
    if (l->state == s)
        return;
    LOG(DEBUG, COMP, "host=%s port=%d state=%s->%s", l->cfg.target.host, l->cfg.target.port,
        state_name(l->state), state_name(s));
    l->state = s;
}

/* ---- the event hooks ------------------------------------------------------------ */

static void ev_cb(uv_poll_t *h, int status, int events)
{
    struct poll_ev *p = h->data;
    /* An error on the socket: let hiredis find it by reading and writing. */
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE;
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void ev_update(struct poll_ev *p)
{
    if (p->events)
        uv_poll_start(&p->poll, p->events, ev_cb);
    else
        uv_poll_stop(&p->poll);
}

static void ev_add_read(void *privdata)
{
    struct poll_ev *p = privdata;
    p->events |= UV_READABLE;
    ev_update(p);
}

static void ev_del_read(void *privdata)
{
    struct poll_ev *p = privdata;
    p->events &= ~UV_READABLE;
    ev_update(p);
}

static void ev_add_write(void *privdata)
{
    struct poll_ev *p = privdata;
    p->events |= UV_WRITABLE;
    ev_update(p);
}

static void ev_del_write(void *privdata)
{
    struct poll_ev *p = privdata;
    p->events &= ~UV_WRITABLE;
    ev_update(p);
}

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *privdata)
{
    struct poll_ev *p = privdata;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, ev_closed);
}

static int ev_attach(struct redis_link *l, redisAsyncContext *ac)
{
    struct poll_ev *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int rc = uv_poll_init(l->loop, &p->poll, ac->c.fd);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- commands in flight -------------------------------------------------------- */

static void cmd_unlink(struct cmd *c)
{
    struct redis_link *l = c->l;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct cmd *c = privdata;
    struct redis_link *l = c->l;
    redisReply *reply = r;
    cmd_unlink(c);
    l->st.in_flight--;
    if (!reply)
        l->st.failures++;
    if (c->own) {
        c->own(l, reply);
    } else {
        int rc = reply ? 0 : l->state == LINK_CLOSED ? SHOAL_ECANCELED : SHOAL_EUNAVAILABLE;
        if (reply && c->eval && reply->type == REDIS_REPLY_ERROR &&
            strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* Someone flushed the script cache: load it again. */
            rc = SHOAL_EUNAVAILABLE;
            reply = NULL;
            if (l->ac == ac) {
                l->ac = NULL;
                redisAsyncFree(ac); /* deferred by hiredis until this callback returns */
                go_down(l, "the script was flushed from Redis");
            }
        }
        c->cb(c->arg, rc, reply);
    }
    free(c);
    if (l->state == LINK_CLOSED)
        maybe_free(l);
}

static int send_cmd(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                    struct cmd *c)
{
    c->l = l;
    c->sent_ms = uv_now(l->loop);
    if (redisAsyncCommandArgv(l->ac, on_reply, c, argc, argv, lens) != REDIS_OK)
        return SHOAL_EUNAVAILABLE;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->st.in_flight++;
    l->st.commands++;
    return 0;
}

static int send_own(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                    void (*own)(struct redis_link *l, redisReply *reply))
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->own = own;
    int rc = send_cmd(l, argc, argv, lens, c);
    if (rc < 0)
        free(c);
    return rc;
}

int redis_link_command(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                       redis_link_cb cb, void *arg)
{
    if (l->state != LINK_UP || !l->ac)
        return SHOAL_EUNAVAILABLE;
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cb = cb;
    c->arg = arg;
    int rc = send_cmd(l, argc, argv, lens, c);
    if (rc < 0)
        free(c);
    return rc;
}

int redis_link_eval(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                    redis_link_cb cb, void *arg)
{
    const char *av[64];
    size_t al[64];
    if (argc + 3 > 64)
        return -EINVAL;
    if (l->state != LINK_UP || !l->ac)
        return SHOAL_EUNAVAILABLE;
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = l->sha;
    al[1] = strlen(l->sha);
    av[2] = "0";
    al[2] = 1;
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cb = cb;
    c->arg = arg;
    c->eval = true;
    int rc = send_cmd(l, argc + 3, av, al, c);
    if (rc < 0)
        free(c);
    return rc;
}

/* ---- the connection's life ----------------------------------------------------- */

static void go_down(struct redis_link *l, const char *why)
{
    if (l->state == LINK_CLOSED)
        return;
    bool was_up = l->state == LINK_UP;
    /* Say it once per outage, and again when the reason changes. */
    if (was_up || strcmp(why, l->last_error) != 0)
        LOG(WARN, COMP, "msg=\"Redis unavailable\" host=%s port=%d reason=\"%s\"",
            l->cfg.target.host, l->cfg.target.port, why);
    snprintf(l->last_error, sizeof(l->last_error), "%s", why);
    set_state(l, LINK_DOWN);
    l->retry_at = uv_now(l->loop) + l->backoff_ms;
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
    if (was_up) {
        l->st.reconnects++;
        if (l->cfg.on_state)
            l->cfg.on_state(l->cfg.arg, false);
    }
}

/* Drops the connection from outside hiredis's callbacks: the commands in
 * flight fail at once. */
static void kill_ac(struct redis_link *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    if (ac)
        redisAsyncFree(ac);
    go_down(l, why);
}

static void own_script(struct redis_link *l, redisReply *r)
{
    if (!r || l->state != LINK_CONNECTING)
        return;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        char why[160];
        snprintf(why, sizeof(why), "SCRIPT LOAD failed: %.120s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (l->ac) {
            redisAsyncContext *ac = l->ac;
            l->ac = NULL;
            redisAsyncFree(ac);
        }
        go_down(l, why);
        return;
    }
    memcpy(l->sha, r->str, 40);
    l->sha[40] = '\0';
    set_state(l, LINK_UP);
    l->backoff_ms = BACKOFF_MIN_MS;
    l->last_error[0] = '\0';
    LOG(INFO, COMP, "msg=\"Redis up\" host=%s port=%d db=%d", l->cfg.target.host,
        l->cfg.target.port, l->cfg.target.db);
    if (l->cfg.on_state)
        l->cfg.on_state(l->cfg.arg, true);
}

/* AUTH and SELECT: an error reply ends this connection. */
static void own_setup(struct redis_link *l, redisReply *r)
{
    if (!r || l->state != LINK_CONNECTING || r->type != REDIS_REPLY_ERROR)
        return;
    char why[160];
    snprintf(why, sizeof(why), "%.150s", r->str);
    if (l->ac) {
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac);
    }
    go_down(l, why);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (status == REDIS_OK || l->ac != ac)
        return;
    /* hiredis frees the context after this returns. */
    char why[160];
    snprintf(why, sizeof(why), "cannot connect: %.120s", ac->errstr);
    l->ac = NULL;
    go_down(l, why);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (l->ac != ac)
        return;
    char why[160];
    snprintf(why, sizeof(why), "connection lost: %.120s",
             status == REDIS_OK ? "closed" : ac->errstr);
    l->ac = NULL;
    go_down(l, why);
}

static void connect_to(struct redis_link *l, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, l->cfg.target.port);
    char why[160];
    if (!ac || ac->err) {
        snprintf(why, sizeof(why), "cannot connect: %.120s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        go_down(l, why);
        return;
    }
    if (ev_attach(l, ac) < 0) {
        redisAsyncFree(ac);
        go_down(l, "cannot watch the socket");
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    set_state(l, LINK_CONNECTING);
    /* Queued now, sent once connected, answered in this order. */
    int rc = 0;
    if (l->password) {
        const char *av[] = {"AUTH", l->password};
        size_t al[] = {4, l->cfg.password_len};
        rc = send_own(l, 2, av, al, own_setup);
    }
    char db[16];
    snprintf(db, sizeof(db), "%d", l->cfg.target.db);
    const char *sv[] = {"SELECT", db};
    size_t sl[] = {6, strlen(db)};
    if (rc == 0)
        rc = send_own(l, 2, sv, sl, own_setup);
    const char *lv[] = {"SCRIPT", "LOAD", l->cfg.script};
    size_t ll[] = {6, 4, strlen(l->cfg.script)};
    if (rc == 0)
        rc = send_own(l, 3, lv, ll, own_script);
    if (rc < 0)
        kill_ac(l, "cannot queue the connection's setup");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct redis_link *l = req->data;
    char ip[64] = "";
    l->resolving = false;
    if (l->state == LINK_CLOSED) {
        uv_freeaddrinfo(res);
        maybe_free(l);
        return;
    }
    if (status == 0 && res) {
        if (res->ai_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
        else
            uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
    }
    uv_freeaddrinfo(res);
    if (!ip[0]) {
        char why[160];
        snprintf(why, sizeof(why), "cannot resolve %.100s: %s", l->cfg.target.host,
                 status ? uv_strerror(status) : "no address");
        go_down(l, why);
        return;
    }
    connect_to(l, ip);
}

static void start_connect(struct redis_link *l)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    set_state(l, LINK_RESOLVING);
    l->gai.data = l;
    int rc = uv_getaddrinfo(l->loop, &l->gai, on_resolved, l->cfg.target.host, NULL, &hints);
    if (rc < 0) {
        go_down(l, uv_strerror(rc));
        return;
    }
    l->resolving = true;
}

static void watch(uv_timer_t *t)
{
    struct redis_link *l = t->data;
    uint64_t now = uv_now(l->loop);
    if (l->state == LINK_DOWN && now >= l->retry_at) {
        start_connect(l);
        return;
    }
    if (l->head && now - l->head->sent_ms > l->cfg.timeout_ms) {
        char why[160];
        snprintf(why, sizeof(why), "no answer for %" PRIu64 " ms", now - l->head->sent_ms);
        kill_ac(l, why);
    }
}

/* ---- life cycle ---------------------------------------------------------------- */

int redis_link_create(uv_loop_t *loop, const struct redis_link_config *cfg, struct redis_link **out)
{
    struct redis_link *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->loop = loop;
    l->cfg = *cfg;
    if (!l->cfg.timeout_ms)
        l->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (cfg->password && cfg->password_len) {
        l->password = malloc(cfg->password_len + 1);
        if (!l->password) {
            free(l);
            return -ENOMEM;
        }
        memcpy(l->password, cfg->password, cfg->password_len);
        l->password[cfg->password_len] = '\0';
    }
    l->cfg.password = NULL;
    l->backoff_ms = BACKOFF_MIN_MS;
    l->state = LINK_DOWN;
    l->retry_at = 0;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, watch, 0, WATCH_EVERY_MS);
    *out = l;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct redis_link *l = h->data;
    l->timer_closed = true;
    maybe_free(l);
}

static void maybe_free(struct redis_link *l)
{
    if (l->state != LINK_CLOSED || !l->timer_closed || l->resolving || l->head)
        return;
    if (l->password) {
        OPENSSL_cleanse(l->password, l->cfg.password_len);
        free(l->password);
    }
    free(l);
}

void redis_link_close(struct redis_link *l)
{
    if (!l || l->state == LINK_CLOSED)
        return;
    l->state = LINK_CLOSED;
    if (l->resolving)
        uv_cancel((uv_req_t *)&l->gai);
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    if (ac)
        redisAsyncFree(ac); /* fails the commands in flight: SHOAL_ECANCELED */
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, timer_closed);
}

bool redis_link_up(const struct redis_link *l)
{
    return l->state == LINK_UP;
}

void redis_link_stats(const struct redis_link *l, struct redis_link_stats *out)
{
    *out = l->st;
}

/* ---- the URL ------------------------------------------------------------------- */

int redis_link_parse_url(const char *url, struct redis_link_target *out, char *err, size_t errlen)
{
    const char *p, *host, *end;
    size_t hostlen;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url || strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "expected redis://HOST[:PORT][/DB]");
        return SHOAL_ECONFIG;
    }
    p = url + 8;
    if (*p == '[') {
        host = p + 1;
        end = strchr(host, ']');
        if (!end) {
            snprintf(err, errlen, "unclosed [ in the host");
            return SHOAL_ECONFIG;
        }
        hostlen = (size_t)(end - host);
        p = end + 1;
    } else {
        host = p;
        hostlen = strcspn(p, ":/");
        p += hostlen;
    }
    if (hostlen == 0 || hostlen > REDIS_LINK_HOST_MAX || memchr(host, '@', hostlen)) {
        snprintf(err, errlen, "expected a host (no user or password: use the password file)");
        return SHOAL_ECONFIG;
    }
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    if (*p == ':') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || v < 1 || v > 65535 || (*e && *e != '/')) {
            snprintf(err, errlen, "the port must be 1 to 65535");
            return SHOAL_ECONFIG;
        }
        out->port = (int)v;
        p = e;
    }
    if (*p == '/' && p[1]) {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || *e || v < 0 || v > 1000000) {
            snprintf(err, errlen, "the database must be a number");
            return SHOAL_ECONFIG;
        }
        out->db = (int)v;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "unexpected \"%.40s\" after the host", p);
        return SHOAL_ECONFIG;
    }
    return 0;
}
