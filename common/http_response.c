/* Response side of the HTTP server: the per-connection output queue of
 * memory segments and file ranges, flushed with sendmsg and sendfile; the
 * status line and headers; the server's own error answers; and the
 * http_response_* calls. Those calls only queue output and schedule the
 * dispatcher (http_server.c) for the next loop turn, so no user callback
 * (on_close, on_drain) ever runs inside them.
 */
#define _GNU_SOURCE
#include "shoal/http_server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#include "shoal/error.h"
#include "shoal/log.h"

#include "http_server_internal.h"

#define COMP "http"

#define SEG_MIN_CAP 4096        /* small writes coalesce into segments this big */
#define SMALL_BODY 16384        /* bodies up to this share the header allocation */
#define FLUSH_IOV_MAX 64        /* memory segments per sendmsg */
#define FLUSH_BUDGET (4u << 20) /* bytes per dispatcher pass, fairness between peers */
#define SENDFILE_CHUNK (1u << 30)
#define ERROR_BODY_MAX 4096

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

void http_response_queue_free(struct conn *c)
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
int http_response_flush(struct conn *c)
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
            http_server_conn_schedule(c);
            break;
        }
    }
    if (sent > 0) {
        if (c->pending > 0)
            http_server_conn_set_timer(c, TIMER_WRITE, c->srv->cfg.write_timeout_ms);
        else if (c->timer_kind == TIMER_WRITE)
            http_server_conn_stop_timer(c);
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
    http_server_conn_schedule(c);
    return 0;
}

/* Queues one of the server's own answers (400, 408, 431, 503) and makes the
 * connection close after it. No request is in flight when this is called. */
void http_response_answer_error(struct conn *c, int status, const char *message)
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
    http_server_conn_stop_timer(c);
    http_server_conn_set_state(c, CONN_FLUSH);
    seg = seg_new(256 + strlen(ctype) + body.len);
    if (seg == NULL) {
        buf_dispose(&body);
        http_server_conn_close(c, "out of memory");
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
        http_server_conn_close(c, "error answer overflow");
        return;
    }
    out_push(c, seg);
    http_server_conn_schedule(c);
}

int http_response_continue(struct conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    int rc = out_copy(c, line, sizeof(line) - 1);

    if (rc == 0)
        http_server_conn_schedule(c);
    return rc;
}

/* --- Responses ----------------------------------------------------------- */

int http_response_start(struct http_request *req, int status, const struct http_header *headers)
{
    return start(http_server_conn_of(req), status, headers, NULL, UINT64_MAX);
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
    struct conn *c = http_server_conn_of(req);
    int rc = writable(c);

    if (rc < 0)
        return rc;
    c->resp_body += len;
    if (req->is_head || len == 0)
        return 0;
    rc = out_copy(c, data, len);
    if (rc < 0)
        return rc;
    http_server_conn_schedule(c);
    return 0;
}

int http_response_sendfile(struct http_request *req, int fd, uint64_t off, uint64_t len)
{
    struct conn *c = http_server_conn_of(req);
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
        http_server_conn_schedule(c);
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
    http_server_conn_schedule(c);
    return 0;
}

void http_response_end(struct http_request *req)
{
    struct conn *c = http_server_conn_of(req);
    static const struct http_header empty[] = {{"Content-Length", "0"}, {NULL, NULL}};

    if (c->state == CONN_CLOSED || !c->req_active || c->resp_ended)
        return;
    if (!c->resp_started && start(c, 500, empty, NULL, 0) < 0) {
        http_server_conn_close(c, "response without start");
        return;
    }
    c->resp_ended = true;
    if (c->resp_cl >= 0 && !req->is_head && c->resp_body != (uint64_t)c->resp_cl) {
        /* The framing is off: only closing tells the client where it ends. */
        LOG(WARN, COMP, "conn=%" PRIu64 " req=%" PRIu64 " content_length=%" PRId64 " sent=%" PRIu64,
            c->id, req->id, c->resp_cl, c->resp_body);
        c->close_after = true;
    }
    http_server_conn_set_state(c, CONN_FLUSH);
    http_server_conn_schedule(c);
}

void http_response_abort(struct http_request *req)
{
    struct conn *c = http_server_conn_of(req);

    if (c->state == CONN_CLOSED || !c->req_active)
        return;
    /* on_close runs from the handles' close callbacks, a later loop turn. */
    http_server_conn_close(c, "aborted");
}

size_t http_response_pending(const struct http_request *req)
{
    return (size_t)http_server_conn_of(req)->pending;
}

void http_response_on_drain(struct http_request *req, size_t low_water, http_req_cb cb, void *arg)
{
    struct conn *c = http_server_conn_of(req);

    c->drain_cb = cb;
    c->drain_arg = arg;
    c->drain_low = low_water;
    http_server_conn_schedule(c);
}

int http_response_simple(struct http_request *req, int status, const char *content_type,
                         const void *body, size_t len, const struct http_header *extra)
{
    struct conn *c = http_server_conn_of(req);
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
