/* Output side of the HTTP server: see http_output.h. */
#define _GNU_SOURCE
#include "http_output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shoal/error.h"

#define SEG_MIN_CAP 4096 /* small writes coalesce into segments this big */
#define FLUSH_IOV_MAX 64 /* memory segments per sendmsg */
#define SENDFILE_CHUNK (1u << 30)
#define TLS_CHUNK (16u << 10) /* plaintext per encryption: one TLS record */

/* One queued piece of output: owned memory, or a range of a dup'd file. */
struct http_output_seg {
    struct http_output_seg *next;
    int fd;       /* -1 for memory */
    uint64_t off; /* memory: bytes already sent; file: next file offset */
    uint64_t len; /* memory: bytes used in data; file: bytes left */
    size_t cap;   /* memory capacity */
    dev_t dev;    /* file identity, to extend a segment instead of dup'ing */
    ino_t ino;
    char data[];
};

/* --- Queue --------------------------------------------------------------- */

static uint64_t seg_left(const struct http_output_seg *s)
{
    return s->fd < 0 ? s->len - s->off : s->len;
}

static struct http_output_seg *seg_new(size_t cap)
{
    struct http_output_seg *s;

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

static void seg_free(struct http_output_seg *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static void push(struct http_output *o, struct http_output_seg *s)
{
    if (o->tail != NULL)
        o->tail->next = s;
    else
        o->head = s;
    o->tail = s;
    o->pending += seg_left(s);
}

void http_output_dispose(struct http_output *o)
{
    struct http_output_seg *s = o->head;

    while (s != NULL) {
        struct http_output_seg *next = s->next;
        seg_free(s);
        s = next;
    }
    o->head = o->tail = NULL;
    o->pending = 0;
}

bool http_output_empty(const struct http_output *o)
{
    return o->head == NULL;
}

int http_output_copy(struct http_output *o, const void *data, size_t len)
{
    struct http_output_seg *t = o->tail;
    struct http_output_seg *s;

    if (len == 0)
        return 0;
    if (t != NULL && t->fd < 0 && t->cap - t->len >= len) {
        memcpy(t->data + t->len, data, len);
        t->len += len;
        o->pending += len;
        return 0;
    }
    s = seg_new(len < SEG_MIN_CAP ? SEG_MIN_CAP : len);
    if (s == NULL)
        return -ENOMEM;
    memcpy(s->data, data, len);
    s->len = len;
    push(o, s);
    return 0;
}

int http_output_file(struct http_output *o, int fd, uint64_t off, uint64_t len)
{
    struct http_output_seg *s;
    struct stat st;
    int rc;

    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EINVAL;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* A download served while it grows queues many adjacent ranges of one
     * file: extend the tail instead of holding one dup'd fd per range. */
    s = o->tail;
    if (s != NULL && s->fd >= 0 && s->dev == st.st_dev && s->ino == st.st_ino &&
        s->off + s->len == off) {
        s->len += len;
        o->pending += len;
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
    push(o, s);
    return 0;
}

/* Drops n sent bytes from the head of the queue. */
static void consume(struct http_output *o, uint64_t n)
{
    while (n > 0 && o->head != NULL) {
        struct http_output_seg *s = o->head;
        uint64_t left = seg_left(s);
        uint64_t take = n < left ? n : left;

        s->off += take;
        if (s->fd >= 0)
            s->len -= take;
        n -= take;
        o->pending -= take;
        if (seg_left(s) == 0) {
            o->head = s->next;
            if (o->head == NULL)
                o->tail = NULL;
            seg_free(s);
        }
    }
}

int http_output_flush(struct http_output *o, int fd, uint64_t budget, uint64_t *sent)
{
    *sent = 0;
    while (o->head != NULL && *sent < budget) {
        struct http_output_seg *s = o->head;
        ssize_t n;

        if (s->fd < 0) {
            struct iovec iov[FLUSH_IOV_MAX];
            struct msghdr mh;
            int cnt = 0;

            for (struct http_output_seg *t = s; t != NULL && t->fd < 0 && cnt < FLUSH_IOV_MAX;
                 t = t->next) {
                iov[cnt].iov_base = t->data + t->off;
                iov[cnt].iov_len = (size_t)(t->len - t->off);
                cnt++;
            }
            memset(&mh, 0, sizeof(mh));
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)cnt;
            /* MSG_NOSIGNAL: a vanished peer must be an EPIPE, not a signal. */
            n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        } else {
            /* sendfile has no MSG_NOSIGNAL; the program ignores SIGPIPE. */
            off_t off = (off_t)s->off;
            size_t want = s->len > SENDFILE_CHUNK ? SENDFILE_CHUNK : (size_t)s->len;

            n = sendfile(fd, s->fd, &off, want);
            if (n == 0)
                return -EIO; /* the file is shorter than the queued range */
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                o->blocked = true;
                break;
            }
            return -errno;
        }
        consume(o, (uint64_t)n);
        *sent += (uint64_t)n;
    }
    return 0;
}

/* Sends what t has queued. 0 when all of it left, 1 when the socket is
 * full, or a negative errno. */
static int send_tls_out(struct http_output *o, struct tls_conn *t, int fd)
{
    while (tls_conn_out_len(t) > 0) {
        ssize_t n = send(fd, tls_conn_out_data(t), tls_conn_out_len(t), MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                o->blocked = true;
                return 1;
            }
            return -errno;
        }
        tls_conn_out_consume(t, (size_t)n);
    }
    return 0;
}

int http_output_flush_tls(struct http_output *o, struct tls_conn *t, int fd, uint64_t budget,
                          uint64_t *sent)
{
    char chunk[TLS_CHUNK];

    *sent = 0;
    for (;;) {
        struct http_output_seg *s = o->head;
        const char *p;
        size_t n;
        int rc = send_tls_out(o, t, fd);

        if (rc != 0)
            return rc < 0 ? rc : 0;
        if (s == NULL || !tls_conn_established(t) || *sent >= budget)
            return 0;
        if (s->fd < 0) {
            p = s->data + s->off;
            n = s->len - s->off > TLS_CHUNK ? TLS_CHUNK : (size_t)(s->len - s->off);
        } else {
            ssize_t r =
                pread(s->fd, chunk, s->len > TLS_CHUNK ? TLS_CHUNK : (size_t)s->len, (off_t)s->off);

            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return -errno;
            if (r == 0)
                return -EIO; /* the file is shorter than the queued range */
            p = chunk;
            n = (size_t)r;
        }
        rc = tls_conn_send(t, p, n);
        if (rc < 0)
            return rc;
        consume(o, n);
        *sent += n;
    }
}

/* --- Status line and headers --------------------------------------------- */

/* Bounded string builder over a memory segment sized beforehand. */
struct sb {
    struct http_output_seg *s;
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

int http_output_head(struct http_output *o, int status, const char *date_line,
                     const struct http_header *a, const struct http_header *b,
                     const char *connection, size_t body_room)
{
    const struct http_header *lists[2] = {a, b};
    size_t need = 64; /* status line and the final CRLF */
    struct http_output_seg *s;
    struct sb sb;
    char line[64];

    if (date_line != NULL)
        need += strlen(date_line);
    if (connection != NULL)
        need += strlen(connection) + 16;
    for (int i = 0; i < 2; i++) {
        for (const struct http_header *h = lists[i]; h != NULL && h->name != NULL; h++)
            need += strlen(h->name) + strlen(h->value) + 4;
    }
    if (body_room > SIZE_MAX - need)
        return -ENOMEM;
    s = seg_new(need + body_room);
    if (s == NULL)
        return -ENOMEM;
    sb.s = s;
    sb.overflow = false;
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    sb_str(&sb, line);
    if (date_line != NULL)
        sb_str(&sb, date_line);
    for (int i = 0; i < 2; i++) {
        for (const struct http_header *h = lists[i]; h != NULL && h->name != NULL; h++) {
            /* The server owns the Connection header: it alone knows whether
             * it will close. */
            if (strcasecmp(h->name, "Connection") == 0)
                continue;
            sb_str(&sb, h->name);
            sb_put(&sb, ": ", 2);
            sb_str(&sb, h->value);
            sb_put(&sb, "\r\n", 2);
        }
    }
    if (connection != NULL) {
        sb_str(&sb, "Connection: ");
        sb_str(&sb, connection);
        sb_put(&sb, "\r\n", 2);
    }
    sb_put(&sb, "\r\n", 2);
    if (sb.overflow) {
        free(s);
        return SHOAL_EINTERNAL;
    }
    push(o, s);
    return 0;
}

const char *http_output_date_line(struct http_output_date *d)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (now == d->sec && d->line[0] != '\0')
        return d->line;
    /* Built by hand: strftime's %a and %b follow the locale, HTTP does not. */
    if (gmtime_r(&now, &tm) == NULL)
        return "";
    snprintf(d->line, sizeof(d->line), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    d->sec = now;
    return d->line;
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
