/* HTTP/1.1 server on a libuv loop; see shoal/http_server.h for the contract.
 *
 * Each connection is a raw non-blocking socket watched by its own uv_poll_t,
 * so a response can mix memory segments (sent with sendmsg) and file ranges
 * (sent with sendfile). All socket I/O of a connection happens in one
 * dispatcher, conn_process(), reached from the poll, timer and idle
 * callbacks. The http_response_* calls only queue output and schedule the
 * dispatcher for the next loop turn, so no user callback (on_close, on_drain)
 * ever runs inside them.
 *
 * A connection object is freed only from the close callback of its last uv
 * handle; on_close of a request that was still in flight when the connection
 * died runs from there too, which is always a later loop turn.
 *
 * The read side treats end-of-file as a disconnect: a client that half-closes
 * after sending its request loses the response. HTTP clients do not do that,
 * and noticing a vanished client early lets the handler stop upstream work.
 */
#define _GNU_SOURCE
#include "shoal/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>

#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "http"

#define DEFAULT_MAX_HEADER (16 * 1024)
#define DEFAULT_HEADER_TIMEOUT_MS 10000
#define DEFAULT_IDLE_TIMEOUT_MS 60000
#define DEFAULT_WRITE_TIMEOUT_MS 120000
#define DEFAULT_MAX_CONNECTIONS 1024

#define RBUF_SIZE (16 * 1024)   /* per-connection input buffer (pipelined bytes) */
#define SEG_MIN_CAP 4096        /* small writes coalesce into segments this big */
#define SMALL_BODY 16384        /* bodies up to this share the header allocation */
#define FLUSH_IOV_MAX 64        /* memory segments per sendmsg */
#define FLUSH_BUDGET (4u << 20) /* bytes per dispatcher pass, fairness between peers */
#define SENDFILE_CHUNK (1u << 30)
#define LINGER_MS 2000 /* how long a closing connection drains input */
#define LINGER_MAX_BYTES (1u << 20)
#define ACCEPT_RETRY_MS 100 /* pause after accept fails for lack of fds */
#define ERROR_BODY_MAX 4096
#define LISTEN_BACKLOG 511

/* XX(name, text) */
#define CONN_STATE_MAP(XX)                                                                         \
    XX(HEAD, "head")       /* waiting for or reading a request head */                             \
    XX(IDLE, "idle")       /* keep-alive, no byte of the next request yet */                       \
    XX(HANDLER, "handler") /* request dispatched, response not ended */                            \
    XX(FLUSH, "flush")     /* response (or server error answer) ended, queue draining */           \
    XX(LINGER, "linger")   /* write side shut, discarding input until EOF */                       \
    XX(CLOSED, "closed")   /* socket closed, handles closing */

enum conn_state {
#define XX(name, text) CONN_##name,
    CONN_STATE_MAP(XX)
#undef XX
};

static const char *const state_names[] = {
#define XX(name, text) text,
    CONN_STATE_MAP(XX)
#undef XX
};

/* What the single per-connection timer currently measures. */
enum conn_timer { TIMER_NONE, TIMER_HEADER, TIMER_IDLE, TIMER_WRITE, TIMER_LINGER };

/* Where the header accumulation stands, to glue split parser callbacks. */
enum head_pos { HP_NONE, HP_URL, HP_FIELD, HP_VALUE };

/* One queued piece of output: owned memory, or a range of a dup'd file. */
struct seg {
    struct seg *next;
    int fd;       /* -1 for memory */
    uint64_t off; /* memory: bytes already sent; file: next file offset */
    uint64_t len; /* memory: bytes used in data; file: bytes left */
    size_t cap;   /* memory capacity */
    dev_t dev;    /* file identity, to extend a segment instead of dup'ing */
    ino_t ino;
    char data[];
};

/* Offsets into the arena of a header's NUL-terminated name and value. */
struct hdr_ref {
    size_t name;
    size_t value;
};

struct conn {
    struct http_server *srv;
    struct conn *prev, *next;
    int fd;
    uint64_t id;
    enum conn_state state;
    enum conn_timer timer_kind;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_idle_t defer; /* runs the dispatcher on the next loop turn */
    int poll_events;
    int handles_open;
    bool counted;        /* counts toward max_connections (not a 503 reject) */
    bool blocked;        /* last send hit EAGAIN: wait for UV_WRITABLE */
    bool parse_deferred; /* pipelined bytes wait for the next loop turn */
    bool read_off;       /* stop reading (discard budget spent) */
    char peer[INET6_ADDRSTRLEN + 8];

    /* Input and the request head being parsed. */
    char *rbuf;
    size_t rpos, rlen;
    http_parser parser;
    size_t head_fed; /* bytes of the current head given to the parser */
    int head_err;    /* SHOAL_ETOOBIG or -ENOMEM from a parser callback */
    bool head_ready; /* parser paused on a complete head */
    bool keep_alive;
    enum head_pos hpos;
    char *arena; /* URL and headers, NUL-terminated, referenced by offset */
    size_t alen, acap;
    size_t url_len;
    struct hdr_ref *hrefs;
    size_t nhdr, hcap;
    uint64_t discarded;

    /* The request in flight; embedded, valid until its on_close has run. */
    struct http_request req;
    struct http_header *hdrs;
    size_t hdrs_cap;
    bool req_active; /* dispatched and on_close not yet run */
    http_req_cb close_cb;
    void *close_arg;
    http_req_cb drain_cb;
    void *drain_arg;
    size_t drain_low;

    /* The response. */
    bool resp_started, resp_ended, close_after;
    int64_t resp_cl; /* declared Content-Length, or -1 */
    uint64_t resp_body;
    struct seg *out_head, *out_tail;
    uint64_t pending;
};

struct http_server {
    uv_loop_t *loop;
    struct http_server_config cfg;
    http_handler_fn handler;
    void *ctx;
    int lfd;
    int port;
    uv_poll_t lpoll;
    uv_timer_t accept_timer;
    int handles_open;
    struct conn *conns;
    unsigned nconns; /* counted (non-rejected) open connections */
    uint64_t next_conn_id;
    uint64_t next_req_id;
    bool destroying;
    void (*destroy_cb)(void *arg);
    void *destroy_arg;
    time_t date_sec;
    char date_line[64]; /* "Date: ...\r\n" for date_sec */
};

static void conn_process(struct conn *c);
static void conn_close(struct conn *c, const char *why);

static struct conn *conn_of(const struct http_request *req)
{
    return (struct conn *)((char *)req - offsetof(struct conn, req));
}

static void set_state(struct conn *c, enum conn_state st)
{
    LOG(DEBUG, COMP, "conn=%" PRIu64 " state=%s->%s", c->id, state_names[c->state],
        state_names[st]);
    c->state = st;
}

static void on_timer(uv_timer_t *t);

static void set_timer(struct conn *c, enum conn_timer kind, uint64_t ms)
{
    c->timer_kind = kind;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void stop_timer(struct conn *c)
{
    c->timer_kind = TIMER_NONE;
    uv_timer_stop(&c->timer);
}

static void on_defer(uv_idle_t *h)
{
    struct conn *c = h->data;

    uv_idle_stop(h);
    c->parse_deferred = false;
    conn_process(c);
}

/* Runs the dispatcher on the next loop turn. */
static void schedule(struct conn *c)
{
    if (c->state != CONN_CLOSED && !uv_is_active((uv_handle_t *)&c->defer))
        uv_idle_start(&c->defer, on_defer);
}

/* --- Output queue -------------------------------------------------------- */

static uint64_t seg_left(const struct seg *s)
{
    return s->fd < 0 ? s->len - s->off : s->len;
}

static struct seg *seg_new(size_t cap)
{
    struct seg *s;

    if (cap > SIZE_MAX - sizeof(*s))
        return NULL;
    s = malloc(sizeof(*s) + cap);
    if (s == NULL)
        return NULL;
    s->next = NULL;
    s->fd = -1;
    s->off = 0;
    s->len = 0;
    s->cap = cap;
    s->dev = 0;
    s->ino = 0;
    return s;
}

static void seg_free(struct seg *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static void out_push(struct conn *c, struct seg *s)
{
    if (c->out_tail != NULL)
        c->out_tail->next = s;
    else
        c->out_head = s;
    c->out_tail = s;
    c->pending += seg_left(s);
}

static void out_free(struct conn *c)
{
    struct seg *s = c->out_head;

    while (s != NULL) {
        struct seg *next = s->next;
        seg_free(s);
        s = next;
    }
    c->out_head = c->out_tail = NULL;
    c->pending = 0;
}

/* Appends to the tail memory segment when it has room, so headers and small
 * bodies leave in one send with a single copy each. */
static int out_copy(struct conn *c, const void *data, size_t len)
{
    struct seg *t = c->out_tail;
    struct seg *s;

    if (len == 0)
        return 0;
    if (t != NULL && t->fd < 0 && t->cap - t->len >= len) {
        memcpy(t->data + t->len, data, len);
        t->len += len;
        c->pending += len;
        return 0;
    }
    s = seg_new(len < SEG_MIN_CAP ? SEG_MIN_CAP : len);
    if (s == NULL)
        return -ENOMEM;
    memcpy(s->data, data, len);
    s->len = len;
    out_push(c, s);
    return 0;
}

/* Drops n sent bytes from the head of the queue. */
static void consume(struct conn *c, uint64_t n)
{
    while (n > 0 && c->out_head != NULL) {
        struct seg *s = c->out_head;
        uint64_t left = seg_left(s);
        uint64_t take = n < left ? n : left;

        s->off += take;
        if (s->fd >= 0)
            s->len -= take;
        n -= take;
        c->pending -= take;
        if (seg_left(s) == 0) {
            c->out_head = s->next;
            if (c->out_head == NULL)
                c->out_tail = NULL;
            seg_free(s);
        }
    }
}

/* Sends queued output until the socket is full, the queue is empty or this
 * pass's budget is spent. 0, or a negative errno when the connection is dead
 * (EPIPE, ECONNRESET) or a file range cannot be read. */
static int flush(struct conn *c)
{
    uint64_t sent = 0;

    while (c->out_head != NULL) {
        struct seg *s = c->out_head;
        ssize_t n;

        if (s->fd < 0) {
            struct iovec iov[FLUSH_IOV_MAX];
            struct msghdr mh;
            int cnt = 0;

            for (struct seg *t = s; t != NULL && t->fd < 0 && cnt < FLUSH_IOV_MAX; t = t->next) {
                iov[cnt].iov_base = t->data + t->off;
                iov[cnt].iov_len = (size_t)(t->len - t->off);
                cnt++;
            }
            memset(&mh, 0, sizeof(mh));
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)cnt;
            /* MSG_NOSIGNAL: a vanished peer must be an EPIPE, not a signal. */
            n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        } else {
            /* sendfile has no MSG_NOSIGNAL; the program ignores SIGPIPE. */
            off_t off = (off_t)s->off;
            size_t want = s->len > SENDFILE_CHUNK ? SENDFILE_CHUNK : (size_t)s->len;

            n = sendfile(c->fd, s->fd, &off, want);
            if (n == 0)
                return -EIO; /* the file is shorter than the queued range */
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->blocked = true;
                break;
            }
            return -errno;
        }
        consume(c, (uint64_t)n);
        sent += (uint64_t)n;
        if (sent >= FLUSH_BUDGET) {
            schedule(c);
            break;
        }
    }
    if (sent > 0) {
        if (c->pending > 0)
            set_timer(c, TIMER_WRITE, c->srv->cfg.write_timeout_ms);
        else if (c->timer_kind == TIMER_WRITE)
            stop_timer(c);
    }
    return 0;
}

/* --- Response headers ---------------------------------------------------- */

/* Bounded string builder over a memory segment sized beforehand. */
struct sb {
    struct seg *s;
    bool overflow;
};

static void sb_put(struct sb *b, const char *p, size_t n)
{
    if (n > b->s->cap - b->s->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->s->data + b->s->len, p, n);
    b->s->len += n;
}

static void sb_str(struct sb *b, const char *p)
{
    sb_put(b, p, strlen(p));
}

static void sb_header(struct sb *b, const char *name, const char *value)
{
    sb_str(b, name);
    sb_put(b, ": ", 2);
    sb_str(b, value);
    sb_put(b, "\r\n", 2);
}

static const char *date_line(struct http_server *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (now == s->date_sec && s->date_line[0] != '\0')
        return s->date_line;
    /* Built by hand: strftime's %a and %b follow the locale, HTTP does not. */
    if (gmtime_r(&now, &tm) == NULL)
        return "";
    snprintf(s->date_line, sizeof(s->date_line), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    s->date_sec = now;
    return s->date_line;
}

static bool has_crlf(const char *p)
{
    return strpbrk(p, "\r\n") != NULL;
}

static bool bad_name(const char *p)
{
    return p[0] == '\0' || strpbrk(p, "\r\n: \t") != NULL;
}

/* Parses a Content-Length value: digits only. */
static int parse_cl(const char *v, int64_t *out)
{
    char *end;
    unsigned long long n;

    if (v[0] < '0' || v[0] > '9')
        return SHOAL_EPARSE;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n > INT64_MAX)
        return SHOAL_EPARSE;
    *out = (int64_t)n;
    return 0;
}

/* Queues the status line and headers (two NULL-terminated lists, either may
 * be NULL). A small body (body_hint bytes, or the Content-Length when the hint
 * is UINT64_MAX) gets room in the same segment. */
static int start(struct conn *c, int status, const struct http_header *a,
                 const struct http_header *b, uint64_t body_hint)
{
    const struct http_header *lists[2] = {a, b};
    bool has_date = false, has_te = false, want_close = false, framed;
    int64_t cl = -1;
    size_t need = 128; /* status line, Connection, final CRLF */
    struct seg *s;
    struct sb sb;
    char line[64];

    if (c->state == CONN_CLOSED)
        return SHOAL_ECANCELED;
    if (!c->req_active || c->resp_started)
        return -EINVAL;
    if (status < 200 || status > 999)
        return -EINVAL;
    for (int i = 0; i < 2; i++) {
        for (const struct http_header *h = lists[i]; h != NULL && h->name != NULL; h++) {
            if (h->value == NULL)
                return -EINVAL;
            /* CR/LF would let a value smuggle headers or a second response. */
            if (bad_name(h->name) || has_crlf(h->value))
                return SHOAL_EPARSE;
            need += strlen(h->name) + strlen(h->value) + 4;
            if (strcasecmp(h->name, "Content-Length") == 0) {
                if (parse_cl(h->value, &cl) < 0)
                    return SHOAL_EPARSE;
            } else if (strcasecmp(h->name, "Date") == 0) {
                has_date = true;
            } else if (strcasecmp(h->name, "Transfer-Encoding") == 0) {
                has_te = true;
            } else if (strcasecmp(h->name, "Connection") == 0) {
                want_close = want_close || strcasestr(h->value, "close") != NULL;
            }
        }
    }
    need += strlen(date_line(c->srv));

    /* Without a length the body ends only when the connection does. */
    framed = cl >= 0 || (has_te && c->req.http_minor >= 1) || status == 204 || status == 304 ||
             c->req.is_head;
    if (!framed || want_close || c->srv->destroying)
        c->close_after = true;
    if (body_hint == UINT64_MAX)
        body_hint = cl >= 0 ? (uint64_t)cl : 0;
    if (!c->req.is_head && body_hint <= SMALL_BODY)
        need += (size_t)body_hint;

    s = seg_new(need);
    if (s == NULL)
        return -ENOMEM;
    sb.s = s;
    sb.overflow = false;
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    sb_str(&sb, line);
    if (!has_date)
        sb_str(&sb, date_line(c->srv));
    for (int i = 0; i < 2; i++) {
        for (const struct http_header *h = lists[i]; h != NULL && h->name != NULL; h++) {
            /* The server owns the Connection header: it alone knows whether
             * it will close. */
            if (strcasecmp(h->name, "Connection") != 0)
                sb_header(&sb, h->name, h->value);
        }
    }
    if (c->close_after)
        sb_str(&sb, "Connection: close\r\n");
    else if (c->req.http_minor == 0)
        sb_str(&sb, "Connection: keep-alive\r\n");
    sb_put(&sb, "\r\n", 2);
    if (sb.overflow) {
        free(s);
        return SHOAL_EINTERNAL;
    }
    c->resp_started = true;
    c->resp_cl = cl;
    c->resp_body = 0;
    out_push(c, s);
    schedule(c);
    return 0;
}

/* Queues one of the server's own answers (400, 408, 431, 503) and makes the
 * connection close after it. No request is in flight when this is called. */
static void answer_error(struct conn *c, int status, const char *message)
{
    struct http_server *s = c->srv;
    const char *ctype = NULL;
    struct buf body;
    struct seg *seg;
    struct sb sb;
    char line[96];

    buf_init(&body, ERROR_BODY_MAX);
    if (s->cfg.error_body != NULL) {
        ctype = s->cfg.error_body(status, message, &body);
        if (ctype != NULL && has_crlf(ctype))
            ctype = NULL;
    }
    if (ctype == NULL) {
        buf_reset(&body);
        if (buf_printf(&body, "%s\n", message) < 0)
            buf_reset(&body);
        ctype = "text/plain";
    }

    c->close_after = true;
    stop_timer(c);
    set_state(c, CONN_FLUSH);
    seg = seg_new(256 + strlen(ctype) + body.len);
    if (seg == NULL) {
        buf_dispose(&body);
        conn_close(c, "out of memory");
        return;
    }
    sb.s = seg;
    sb.overflow = false;
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    sb_str(&sb, line);
    sb_str(&sb, date_line(s));
    sb_header(&sb, "Content-Type", ctype);
    snprintf(line, sizeof(line), "%zu", body.len);
    sb_header(&sb, "Content-Length", line);
    sb_str(&sb, "Connection: close\r\n\r\n");
    if (body.len > 0)
        sb_put(&sb, body.data, body.len);
    buf_dispose(&body);
    if (sb.overflow) {
        free(seg);
        conn_close(c, "error answer overflow");
        return;
    }
    out_push(c, seg);
    schedule(c);
}

/* --- Request parsing ----------------------------------------------------- */

static int arena_add(struct conn *c, const char *at, size_t len)
{
    /* Input bytes fed per head are capped at max_header_bytes + 1, so this
     * limit (room for the NUL terminators) is only a second line of defence. */
    size_t limit = 2 * c->srv->cfg.max_header_bytes + 64;

    if (len > limit - c->alen) {
        c->head_err = SHOAL_ETOOBIG;
        return -1;
    }
    if (c->alen + len + 1 > c->acap) {
        size_t ncap = c->acap ? c->acap * 2 : 1024;
        char *p;

        while (ncap < c->alen + len + 1)
            ncap *= 2;
        if (ncap > limit + 1)
            ncap = limit + 1;
        p = realloc(c->arena, ncap);
        if (p == NULL) {
            c->head_err = -ENOMEM;
            return -1;
        }
        c->arena = p;
        c->acap = ncap;
    }
    memcpy(c->arena + c->alen, at, len);
    c->alen += len;
    return 0;
}

static int terminate(struct conn *c)
{
    return arena_add(c, "", 1);
}

static int on_msg_begin(http_parser *p)
{
    struct conn *c = p->data;

    c->alen = 0;
    c->url_len = 0;
    c->nhdr = 0;
    c->hpos = HP_NONE;
    c->req.start_ms = uv_now(c->srv->loop);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    c->hpos = HP_URL;
    c->url_len += len;
    return arena_add(c, at, len);
}

static int on_hfield(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (c->hpos != HP_FIELD) {
        if (terminate(c) < 0)
            return -1;
        if (c->nhdr == c->hcap) {
            size_t ncap = c->hcap ? c->hcap * 2 : 16;
            struct hdr_ref *n = realloc(c->hrefs, ncap * sizeof(*n));

            if (n == NULL) {
                c->head_err = -ENOMEM;
                return -1;
            }
            c->hrefs = n;
            c->hcap = ncap;
        }
        c->hrefs[c->nhdr].name = c->alen;
        c->hrefs[c->nhdr].value = 0;
        c->nhdr++;
        c->hpos = HP_FIELD;
    }
    return arena_add(c, at, len);
}

static int on_hvalue(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (c->hpos != HP_VALUE) {
        if (c->hpos != HP_FIELD || terminate(c) < 0)
            return -1;
        c->hrefs[c->nhdr - 1].value = c->alen;
        c->hpos = HP_VALUE;
    }
    return arena_add(c, at, len);
}

static int on_headers_done(http_parser *p)
{
    struct conn *c = p->data;

    if (c->hpos == HP_FIELD || c->hpos == HP_NONE)
        return -1; /* a field without value cannot reach here; no URL neither */
    if (terminate(c) < 0)
        return -1;
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->req.has_body =
        (p->flags & F_CHUNKED) != 0 || (p->content_length > 0 && p->content_length != ULLONG_MAX);
    if (c->req.has_body) {
        /* The body is never read: stop here, answer, then close. */
        c->head_ready = true;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_msg_done(http_parser *p)
{
    struct conn *c = p->data;

    if (!c->head_ready) {
        c->head_ready = true;
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_msg_begin,
    .on_url = on_url,
    .on_header_field = on_hfield,
    .on_header_value = on_hvalue,
    .on_headers_complete = on_headers_done,
    .on_message_complete = on_msg_done,
};

/* Hands a complete head to the handler. */
static void dispatch(struct conn *c)
{
    struct http_server *s = c->srv;
    struct http_request *r = &c->req;
    char *q;

    if (c->nhdr > c->hdrs_cap) {
        struct http_header *n = realloc(c->hdrs, c->nhdr * sizeof(*n));

        if (n == NULL) {
            conn_close(c, "out of memory");
            return;
        }
        c->hdrs = n;
        c->hdrs_cap = c->nhdr;
    }
    for (size_t i = 0; i < c->nhdr; i++) {
        c->hdrs[i].name = c->arena + c->hrefs[i].name;
        c->hdrs[i].value = c->arena + c->hrefs[i].value;
    }
    /* The URL is the first string in the arena. */
    q = memchr(c->arena, '?', c->url_len);
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
    } else {
        r->query = NULL;
    }
    r->path = c->arena;
    r->method = http_method_str((enum http_method)c->parser.method);
    r->http_minor = c->parser.http_minor;
    r->is_head = c->parser.method == HTTP_HEAD;
    r->nheaders = c->nhdr;
    r->headers = c->nhdr > 0 ? c->hdrs : NULL;
    r->peer = c->peer;
    r->id = ++s->next_req_id;
    r->user = NULL;

    c->req_active = true;
    c->head_ready = false;
    c->head_fed = 0;
    c->close_cb = NULL;
    c->drain_cb = NULL;
    c->resp_started = false;
    c->resp_ended = false;
    c->resp_cl = -1;
    c->resp_body = 0;
    c->close_after = !c->keep_alive || r->has_body || s->destroying;
    stop_timer(c);
    set_state(c, CONN_HANDLER);
    LOG(DEBUG, COMP, "conn=%" PRIu64 " req=%" PRIu64 " method=%s path=%s", c->id, r->id, r->method,
        r->path);
    s->handler(r, s->ctx);
}

/* Feeds buffered input to the parser; dispatches a complete head. */
static void parse(struct conn *c)
{
    size_t max = c->srv->cfg.max_header_bytes;
    size_t avail = c->rlen - c->rpos;
    size_t room = max + 1 - c->head_fed;
    enum http_errno err;
    size_t n;

    if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
        http_parser_pause(&c->parser, 0);
    /* Feeding at most max + 1 head bytes makes the cap exact and bounds the
     * arena, whatever the parser's own compile-time limit is. */
    n = http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->rpos,
                            avail < room ? avail : room);
    c->rpos += n;
    c->head_fed += n;
    err = HTTP_PARSER_ERRNO(&c->parser);
    if (c->head_err == -ENOMEM) {
        conn_close(c, "out of memory");
        return;
    }
    if (c->head_err == SHOAL_ETOOBIG || c->head_fed > max || err == HPE_HEADER_OVERFLOW) {
        LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=max_header_bytes max=%zu", c->id, c->peer,
            max);
        answer_error(c, 431, "request header too large");
        return;
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
        LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s malformed=%s", c->id, c->peer,
            http_errno_name(err));
        answer_error(c, 400, "malformed request");
        return;
    }
    if (!c->head_ready)
        return;
    if (c->parser.http_major != 1) {
        answer_error(c, 400, "unsupported HTTP version");
        return;
    }
    dispatch(c);
}

/* --- Connection I/O ------------------------------------------------------ */

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches the events the connection needs now and arms the write timer. */
static void update_io(struct conn *c)
{
    int ev = 0;
    int rc;

    if (c->state == CONN_CLOSED)
        return;
    if (!c->read_off &&
        (c->close_after || c->state == CONN_LINGER || c->rlen - c->rpos < RBUF_SIZE))
        ev |= UV_READABLE;
    if (c->out_head != NULL && c->blocked)
        ev |= UV_WRITABLE;
    if (ev != c->poll_events) {
        rc = ev != 0 ? uv_poll_start(&c->poll, ev, on_poll) : uv_poll_stop(&c->poll);
        if (rc < 0) {
            conn_close(c, "poll failed");
            return;
        }
        c->poll_events = ev;
    }
    if (c->state == CONN_HANDLER || c->state == CONN_FLUSH) {
        if (c->pending > 0 && c->timer_kind != TIMER_WRITE)
            set_timer(c, TIMER_WRITE, c->srv->cfg.write_timeout_ms);
        else if (c->pending == 0 && c->timer_kind == TIMER_WRITE)
            stop_timer(c);
    }
}

/* Reads what the socket has. Input of a connection that will not parse
 * another request is discarded (and bounded). */
static void do_read(struct conn *c)
{
    char scratch[16384];

    for (;;) {
        bool discard = c->close_after || c->state == CONN_LINGER;
        char *p;
        size_t room;
        ssize_t n;

        if (discard) {
            p = scratch;
            room = sizeof(scratch);
        } else {
            if (c->rpos > 0) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                c->rlen -= c->rpos;
                c->rpos = 0;
            }
            p = c->rbuf + c->rlen;
            room = RBUF_SIZE - c->rlen;
            if (room == 0)
                return;
        }
        n = recv(c->fd, p, room, 0);
        if (n > 0) {
            if (discard) {
                c->discarded += (uint64_t)n;
                if (c->discarded > LINGER_MAX_BYTES) {
                    if (c->state == CONN_LINGER) {
                        conn_close(c, "linger limit");
                        return;
                    }
                    c->read_off = true;
                    return;
                }
                continue;
            }
            c->rlen += (size_t)n;
            if (c->state == CONN_IDLE) {
                set_state(c, CONN_HEAD);
                set_timer(c, TIMER_HEADER, c->srv->cfg.header_timeout_ms);
            }
            if ((size_t)n < room)
                return;
            continue;
        }
        if (n == 0) {
            conn_close(c, "peer closed");
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        conn_close(c, "read error");
        return;
    }
}

/* The response is fully handed to the kernel: runs on_close, then waits for
 * the next request or closes. */
static void finish(struct conn *c)
{
    if (c->req_active) {
        http_req_cb cb = c->close_cb;

        c->req_active = false;
        c->close_cb = NULL;
        c->drain_cb = NULL;
        if (cb != NULL)
            cb(&c->req, c->close_arg);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->close_after || c->srv->destroying) {
        /* Shut the write side and drain input for a while, so the peer reads
         * our answer instead of a reset caused by its unread request bytes. */
        shutdown(c->fd, SHUT_WR);
        set_state(c, CONN_LINGER);
        set_timer(c, TIMER_LINGER, LINGER_MS);
        return;
    }
    c->resp_started = false;
    c->resp_ended = false;
    if (c->rpos < c->rlen) {
        /* Pipelined bytes: parse them on the next turn, not recursively. */
        set_state(c, CONN_HEAD);
        set_timer(c, TIMER_HEADER, c->srv->cfg.header_timeout_ms);
        c->parse_deferred = true;
        schedule(c);
    } else {
        set_state(c, CONN_IDLE);
        set_timer(c, TIMER_IDLE, c->srv->cfg.idle_timeout_ms);
    }
}

/* The dispatcher. Re-checks after every callback whether the connection is
 * closing; nothing here frees the connection. */
static void conn_process(struct conn *c)
{
    int rc;

    if (c->state == CONN_CLOSED)
        return;
    if ((c->state == CONN_HEAD || c->state == CONN_IDLE) && c->rpos < c->rlen &&
        !c->parse_deferred) {
        parse(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->out_head != NULL && !c->blocked) {
        rc = flush(c);
        if (rc < 0) {
            LOG(DEBUG, COMP, "conn=%" PRIu64 " send failed err=%s", c->id, shoal_strerror(rc));
            conn_close(c, "send failed");
            return;
        }
    }
    if (c->req_active && c->drain_cb != NULL && c->pending <= c->drain_low) {
        http_req_cb cb = c->drain_cb;

        c->drain_cb = NULL;
        cb(&c->req, c->drain_arg);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->state == CONN_FLUSH && c->out_head == NULL) {
        finish(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    update_io(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn *c = h->data;

    if (status < 0) {
        conn_close(c, "poll error");
        return;
    }
    if (events & UV_WRITABLE)
        c->blocked = false;
    if (events & (UV_READABLE | UV_DISCONNECT)) {
        do_read(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    conn_process(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    enum conn_timer kind = c->timer_kind;

    c->timer_kind = TIMER_NONE;
    switch (kind) {
    case TIMER_HEADER:
        LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s header timeout", c->id, c->peer);
        answer_error(c, 408, "request header timeout");
        conn_process(c);
        break;
    case TIMER_IDLE:
        conn_close(c, "idle timeout");
        break;
    case TIMER_WRITE:
        LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=write_timeout", c->id, c->peer);
        conn_close(c, "write timeout");
        break;
    case TIMER_LINGER:
        conn_close(c, "linger done");
        break;
    case TIMER_NONE:
        break;
    }
}

static void server_maybe_free(struct http_server *s)
{
    void (*cb)(void *);
    void *arg;

    if (!s->destroying || s->handles_open > 0 || s->conns != NULL)
        return;
    cb = s->destroy_cb;
    arg = s->destroy_arg;
    LOG(DEBUG, COMP, "server closed port=%d", s->port);
    free(s);
    if (cb != NULL)
        cb(arg);
}

/* Last handle closed: runs a pending on_close and frees the connection. */
static void conn_free(struct conn *c)
{
    struct http_server *s = c->srv;

    if (c->req_active) {
        http_req_cb cb = c->close_cb;

        c->req_active = false;
        c->close_cb = NULL;
        if (cb != NULL)
            cb(&c->req, c->close_arg);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->rbuf);
    free(c->arena);
    free(c->hrefs);
    free(c->hdrs);
    free(c);
    server_maybe_free(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    if (--c->handles_open == 0)
        conn_free(c);
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->state == CONN_CLOSED)
        return;
    LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s close reason=\"%s\"", c->id, c->peer, why);
    set_state(c, CONN_CLOSED);
    /* uv_close removes the fd from the poller before the fd is closed. */
    uv_close((uv_handle_t *)&c->poll, on_conn_handle_closed);
    close(c->fd);
    c->fd = -1;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->defer, on_conn_handle_closed);
    out_free(c);
    if (c->counted) {
        c->counted = false;
        c->srv->nconns--;
    }
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
    } else {
        snprintf(out, n, "unknown");
    }
}

static void conn_new(struct http_server *s, int fd, const struct sockaddr_storage *ss)
{
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;
    int rc;

    if (c == NULL || (c->rbuf = malloc(RBUF_SIZE)) == NULL) {
        LOG(WARN, COMP, "accept dropped err=ENOMEM");
        free(c);
        close(fd);
        return;
    }
    /* Responses leave in few large writes; Nagle would only add latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = s;
    c->fd = fd;
    c->id = ++s->next_conn_id;
    c->state = CONN_HEAD;
    c->resp_cl = -1;
    format_peer(ss, c->peer, sizeof(c->peer));
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;

    uv_timer_init(s->loop, &c->timer);
    uv_idle_init(s->loop, &c->defer);
    c->timer.data = c;
    c->defer.data = c;
    c->poll.data = c;
    rc = uv_poll_init(s->loop, &c->poll, fd);
    if (rc < 0) {
        LOG(WARN, COMP, "accept dropped err=%s", uv_strerror(rc));
        c->handles_open = 2;
        c->state = CONN_CLOSED;
        close(fd);
        uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
        uv_close((uv_handle_t *)&c->defer, on_conn_handle_closed);
        return;
    }
    c->handles_open = 3;
    LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s open", c->id, c->peer);
    if (s->nconns >= s->cfg.max_connections) {
        LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=max_connections max=%u", c->id, c->peer,
            s->cfg.max_connections);
        answer_error(c, 503, "too many connections");
    } else {
        c->counted = true;
        s->nconns++;
        set_timer(c, TIMER_HEADER, s->cfg.header_timeout_ms);
    }
    conn_process(c);
}

static void on_listen(uv_poll_t *h, int status, int events);

static void on_accept_retry(uv_timer_t *t)
{
    struct http_server *s = t->data;

    if (!s->destroying)
        uv_poll_start(&s->lpoll, UV_READABLE, on_listen);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    struct http_server *s = h->data;

    (void)events;
    if (status < 0) {
        LOG(ERROR, COMP, "listen poll failed err=%s", uv_strerror(status));
        return;
    }
    while (!s->destroying) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            LOG(WARN, COMP, "accept failed err=%s", strerror(errno));
            /* The poll is level-triggered: without a pause, a lack of fds
             * would spin the loop. */
            uv_poll_stop(&s->lpoll);
            uv_timer_start(&s->accept_timer, on_accept_retry, ACCEPT_RETRY_MS, 0);
            break;
        }
        conn_new(s, fd, &ss);
    }
}

/* --- Server -------------------------------------------------------------- */

/* "HOST:PORT" or "[V6]:PORT" with a numeric host ("", "*" and "localhost"
 * accepted too); no name resolution, so startup never blocks on DNS. */
static int parse_listen(const char *str, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *hs, *he, *ps;
    bool v6 = false;
    char *end;
    long port;
    size_t hlen;

    memset(ss, 0, sizeof(*ss));
    if (str[0] == '[') {
        hs = str + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':')
            return SHOAL_ECONFIG;
        ps = he + 2;
        v6 = true;
    } else {
        hs = str;
        he = strrchr(str, ':');
        if (he == NULL || memchr(str, ':', (size_t)(he - str)) != NULL)
            return SHOAL_ECONFIG;
        ps = he + 1;
    }
    if (ps[0] < '0' || ps[0] > '9')
        return SHOAL_ECONFIG;
    errno = 0;
    port = strtol(ps, &end, 10);
    if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
        return SHOAL_ECONFIG;
    hlen = (size_t)(he - hs);
    if (hlen >= sizeof(host))
        return SHOAL_ECONFIG;
    memcpy(host, hs, hlen);
    host[hlen] = '\0';

    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return SHOAL_ECONFIG;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *sl = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (hlen == 0 || strcmp(host, "*") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (strcmp(host, "localhost") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return SHOAL_ECONFIG;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *sl = sizeof(*sin);
    }
    return 0;
}

static void on_listen_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;

    s->handles_open--;
    server_maybe_free(s);
}

int http_server_create(uv_loop_t *loop, const struct http_server_config *cfg,
                       http_handler_fn handler, void *ctx, struct http_server **out)
{
    struct http_server *s = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    int one = 1;
    int fd = -1;
    int rc;

    *out = NULL;
    if (loop == NULL || cfg == NULL || cfg->listen == NULL || handler == NULL)
        return SHOAL_ECONFIG;
    rc = parse_listen(cfg->listen, &ss, &sl);
    if (rc < 0)
        goto out;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        rc = -errno;
        goto out;
    }
    sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        rc = -errno;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->cfg.listen = NULL; /* borrowed; not needed after bind */
    if (s->cfg.max_header_bytes == 0)
        s->cfg.max_header_bytes = DEFAULT_MAX_HEADER;
    if (s->cfg.header_timeout_ms == 0)
        s->cfg.header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    if (s->cfg.idle_timeout_ms == 0)
        s->cfg.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    if (s->cfg.write_timeout_ms == 0)
        s->cfg.write_timeout_ms = DEFAULT_WRITE_TIMEOUT_MS;
    if (s->cfg.max_connections == 0)
        s->cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
    s->handler = handler;
    s->ctx = ctx;
    s->lfd = fd;
    s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    rc = uv_poll_init(loop, &s->lpoll, fd);
    if (rc < 0)
        goto out;
    fd = -1; /* owned by the server now */
    s->lpoll.data = s;
    uv_timer_init(loop, &s->accept_timer);
    s->accept_timer.data = s;
    s->handles_open = 2;
    rc = uv_poll_start(&s->lpoll, UV_READABLE, on_listen);
    if (rc < 0) {
        /* The handles exist now, so the server can only go the async way. */
        http_server_destroy(s, NULL, NULL);
        return rc;
    }
    LOG(INFO, COMP, "listening addr=%s port=%d", cfg->listen, s->port);
    *out = s;
    s = NULL;
out:
    if (fd >= 0)
        close(fd);
    free(s);
    if (rc < 0)
        LOG(ERROR, COMP, "listen failed addr=%s err=%s", cfg->listen, shoal_strerror(rc));
    return rc;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

unsigned http_server_connections(const struct http_server *s)
{
    return s->nconns;
}

void http_server_destroy(struct http_server *s, void (*cb)(void *arg), void *arg)
{
    if (s == NULL || s->destroying)
        return;
    s->destroying = true;
    s->destroy_cb = cb;
    s->destroy_arg = arg;
    uv_close((uv_handle_t *)&s->lpoll, on_listen_closed);
    close(s->lfd);
    s->lfd = -1;
    uv_close((uv_handle_t *)&s->accept_timer, on_listen_closed);
    /* Closed connections stay listed until their handles are closed;
     * conn_close skips them. */
    for (struct conn *c = s->conns; c != NULL; c = c->next)
        conn_close(c, "server shutdown");
}

/* --- Requests ------------------------------------------------------------ */

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes ('+' is a space, as in forms) into out and
 * NUL-terminates. The decoded length, or -1 for a bad escape, an encoded NUL
 * or too little room. */
static long pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];

        if (ch == '%') {
            int hi, lo;

            if (i + 2 >= n)
                return -1;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = (char)ch;
    }
    if (outlen == 0)
        return -1;
    out[o] = '\0';
    return (long)o;
}

const char *http_request_query(const struct http_request *req, const char *key, char *buf,
                               size_t buflen)
{
    size_t klen;
    const char *p;

    if (req == NULL || req->query == NULL || key == NULL || buf == NULL || buflen == 0)
        return NULL;
    klen = strlen(key);
    p = req->query;
    for (;;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t nlen = eq != NULL ? (size_t)(eq - p) : plen;
        char name[256];

        if (pct_decode(p, nlen, name, sizeof(name)) == (long)klen && memcmp(name, key, klen) == 0) {
            const char *v = eq != NULL ? eq + 1 : p + plen;
            size_t vlen = eq != NULL ? plen - nlen - 1 : 0;

            return pct_decode(v, vlen, buf, buflen) < 0 ? NULL : buf;
        }
        if (amp == NULL)
            return NULL;
        p = amp + 1;
    }
}

void http_request_on_close(struct http_request *req, http_req_cb cb, void *arg)
{
    struct conn *c = conn_of(req);

    c->close_cb = cb;
    c->close_arg = arg;
}

/* --- Responses ----------------------------------------------------------- */

int http_response_start(struct http_request *req, int status, const struct http_header *headers)
{
    return start(conn_of(req), status, headers, NULL, UINT64_MAX);
}

static int writable(const struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return SHOAL_ECANCELED;
    if (!c->req_active || !c->resp_started || c->resp_ended)
        return -EINVAL;
    return 0;
}

int http_response_write(struct http_request *req, const void *data, size_t len)
{
    struct conn *c = conn_of(req);
    int rc = writable(c);

    if (rc < 0)
        return rc;
    c->resp_body += len;
    if (req->is_head || len == 0)
        return 0;
    rc = out_copy(c, data, len);
    if (rc < 0)
        return rc;
    schedule(c);
    return 0;
}

int http_response_sendfile(struct http_request *req, int fd, uint64_t off, uint64_t len)
{
    struct conn *c = conn_of(req);
    struct stat st;
    struct seg *s;
    int rc = writable(c);

    if (rc < 0)
        return rc;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EINVAL;
    if (req->is_head || len == 0) {
        c->resp_body += len;
        return 0;
    }
    if (fstat(fd, &st) < 0)
        return -errno;
    c->resp_body += len;
    /* A download served while it grows queues many adjacent ranges of one
     * file: extend the tail instead of holding one dup'd fd per range. */
    s = c->out_tail;
    if (s != NULL && s->fd >= 0 && s->dev == st.st_dev && s->ino == st.st_ino &&
        s->off + s->len == off) {
        s->len += len;
        c->pending += len;
        schedule(c);
        return 0;
    }
    s = seg_new(0);
    if (s == NULL)
        return -ENOMEM;
    s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (s->fd < 0) {
        rc = -errno;
        free(s);
        return rc;
    }
    s->off = off;
    s->len = len;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    out_push(c, s);
    schedule(c);
    return 0;
}

void http_response_end(struct http_request *req)
{
    struct conn *c = conn_of(req);
    static const struct http_header empty[] = {{"Content-Length", "0"}, {NULL, NULL}};

    if (c->state == CONN_CLOSED || !c->req_active || c->resp_ended)
        return;
    if (!c->resp_started && start(c, 500, empty, NULL, 0) < 0) {
        conn_close(c, "response without start");
        return;
    }
    c->resp_ended = true;
    if (c->resp_cl >= 0 && !req->is_head && c->resp_body != (uint64_t)c->resp_cl) {
        /* The framing is off: only closing tells the client where it ends. */
        LOG(WARN, COMP, "conn=%" PRIu64 " req=%" PRIu64 " content_length=%" PRId64 " sent=%" PRIu64,
            c->id, req->id, c->resp_cl, c->resp_body);
        c->close_after = true;
    }
    set_state(c, CONN_FLUSH);
    schedule(c);
}

void http_response_abort(struct http_request *req)
{
    struct conn *c = conn_of(req);

    if (c->state == CONN_CLOSED || !c->req_active)
        return;
    /* on_close runs from the handles' close callbacks, a later loop turn. */
    conn_close(c, "aborted");
}

size_t http_response_pending(const struct http_request *req)
{
    return (size_t)conn_of(req)->pending;
}

void http_response_on_drain(struct http_request *req, size_t low_water, http_req_cb cb, void *arg)
{
    struct conn *c = conn_of(req);

    c->drain_cb = cb;
    c->drain_arg = arg;
    c->drain_low = low_water;
    schedule(c);
}

int http_response_simple(struct http_request *req, int status, const char *content_type,
                         const void *body, size_t len, const struct http_header *extra)
{
    struct conn *c = conn_of(req);
    struct http_header base[3];
    char clen[24];
    int i = 0;
    int rc;

    snprintf(clen, sizeof(clen), "%zu", len);
    if (content_type != NULL)
        base[i++] = (struct http_header){"Content-Type", content_type};
    base[i++] = (struct http_header){"Content-Length", clen};
    base[i] = (struct http_header){NULL, NULL};
    rc = start(c, status, base, extra, len);
    if (rc < 0)
        return rc;
    rc = http_response_write(req, body, len);
    if (rc < 0) {
        http_response_abort(req);
        return rc;
    }
    http_response_end(req);
    return 0;
}

/* XX(code, reason) */
#define STATUS_TEXT_MAP(XX)                                                                        \
    XX(200, "OK")                                                                                  \
    XX(201, "Created")                                                                             \
    XX(202, "Accepted")                                                                            \
    XX(204, "No Content")                                                                          \
    XX(206, "Partial Content")                                                                     \
    XX(301, "Moved Permanently")                                                                   \
    XX(302, "Found")                                                                               \
    XX(303, "See Other")                                                                           \
    XX(304, "Not Modified")                                                                        \
    XX(307, "Temporary Redirect")                                                                  \
    XX(308, "Permanent Redirect")                                                                  \
    XX(400, "Bad Request")                                                                         \
    XX(401, "Unauthorized")                                                                        \
    XX(403, "Forbidden")                                                                           \
    XX(404, "Not Found")                                                                           \
    XX(405, "Method Not Allowed")                                                                  \
    XX(408, "Request Timeout")                                                                     \
    XX(409, "Conflict")                                                                            \
    XX(411, "Length Required")                                                                     \
    XX(413, "Content Too Large")                                                                   \
    XX(414, "URI Too Long")                                                                        \
    XX(416, "Range Not Satisfiable")                                                               \
    XX(429, "Too Many Requests")                                                                   \
    XX(431, "Request Header Fields Too Large")                                                     \
    XX(500, "Internal Server Error")                                                               \
    XX(501, "Not Implemented")                                                                     \
    XX(502, "Bad Gateway")                                                                         \
    XX(503, "Service Unavailable")                                                                 \
    XX(504, "Gateway Timeout")                                                                     \
    XX(505, "HTTP Version Not Supported")

const char *http_status_text(int status)
{
    switch (status) {
#define XX(code, reason)                                                                           \
    case code:                                                                                     \
        return reason;
        STATUS_TEXT_MAP(XX)
#undef XX
    default:
        return "Unknown";
    }
}
