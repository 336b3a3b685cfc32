/* Peer connections: the handshake, frame sequence, timeouts and piece I/O of
 * one blob's connection to one peer, on a libuv loop. See peer_conn.h.
 *
 * This file holds the connection's state machine: reading and dispatching
 * frames, writing, timers and the owner's calls. Answers to the peer's
 * REQUESTs are read and sent by the serving side below it (peer_serve.c),
 * which reaches back only through serve_io. Incoming connections are accepted
 * above it, in peer_listener.c, which this file reaches only through the
 * connection's struct peer_conn_adopter. */
#define _GNU_SOURCE
#include "peer/peer_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/oci.h"
#include "shoal/tls.h"
#include "peer/peer_conn_internal.h"
#include "peer/peer_serve.h"

#define COMP "peer"

#define DEFAULT_HANDSHAKE_MS 10000
#define DEFAULT_IDLE_MS 60000
#define DEFAULT_REQUEST_MS 30000
#define DEFAULT_MAX_INFLIGHT 4
#define MAX_INFLIGHT_CAP 64

struct inflight {
    uint32_t index;
    uint64_t deadline;
};

struct wreq {
    uv_write_t req;
    struct peer_conn *c;
    struct wreq *next; /* in c->held */
    char *frame;       /* a whole frame, or a PIECE header */
    size_t frame_len;
    uint8_t *piece; /* PIECE data, or NULL */
    size_t piece_len;
    /* A PIECE header whose data follows from this file (-1: none). */
    int file_fd;
    uint64_t file_off;
    uint32_t file_len;
};

/* Log ids only; atomic because several loops may run in threads. */
static atomic_uint_fast64_t next_conn_id = 1;

static void on_timer(uv_timer_t *t);
static void arm(struct peer_conn *c);
static const struct peer_serve_io serve_io;
static void file_done(void *ctx, int rc);

/* ---- Small helpers ---------------------------------------------------- */

static const char *state_name(enum peer_conn_state s)
{
    switch (s) {
#define XX(name, str)                                                                              \
    case PEER_CONN_##name:                                                                         \
        return str;
        PEER_CONN_STATE_MAP(XX)
#undef XX
    }
    return "unknown";
}

static void set_state(struct peer_conn *c, enum peer_conn_state s)
{
    LOG(DEBUG, COMP, "conn=%" PRIu64 " addr=%s state=%s next=%s", c->id, c->addr,
        state_name(c->state), state_name(s));
    c->state = s;
}

void peer_conn_settings_dispose(struct peer_conn_settings *s)
{
    if (s->secret) {
        OPENSSL_cleanse(s->secret, s->secret_len);
        free(s->secret);
    }
    memset(s, 0, sizeof(*s));
}

int peer_conn_settings_copy(struct peer_conn_settings *dst, const struct peer_conn_settings *src)
{
    *dst = *src;
    dst->secret = NULL;
    if (src->secret_len) {
        dst->secret = malloc(src->secret_len);
        if (dst->secret == NULL)
            return -ENOMEM;
        memcpy(dst->secret, src->secret, src->secret_len);
    }
    return 0;
}

int peer_conn_settings_from_config(struct peer_conn_settings *dst,
                                   const struct peer_conn_config *cfg)
{
    struct peer_conn_settings tmp;

    memset(dst, 0, sizeof(*dst));
    if (cfg == NULL || (cfg->secret_len && cfg->secret == NULL) ||
        cfg->max_inflight > MAX_INFLIGHT_CAP)
        return -EINVAL;
    tmp.secret = (uint8_t *)cfg->secret; /* copied right below, never written */
    tmp.secret_len = cfg->secret_len;
    memcpy(tmp.my_id, cfg->my_id, WIRE_ID_LEN);
    tmp.handshake_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : DEFAULT_HANDSHAKE_MS;
    tmp.idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEFAULT_IDLE_MS;
    tmp.request_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : DEFAULT_REQUEST_MS;
    tmp.max_inflight = cfg->max_inflight ? cfg->max_inflight : DEFAULT_MAX_INFLIGHT;
    tmp.tls = cfg->tls;
    return peer_conn_settings_copy(dst, &tmp);
}

/* "HOST:PORT" or "[V6]:PORT", numeric only. */
int peer_conn_parse_addr(const char *str, bool listen, struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *hs, *he, *ps;
    bool v6 = false;
    unsigned long port;
    char *end;
    size_t hlen;

    memset(ss, 0, sizeof(*ss));
    if (str == NULL)
        return -EINVAL;
    if (str[0] == '[') {
        hs = str + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':')
            return -EINVAL;
        ps = he + 2;
        v6 = true;
    } else {
        hs = str;
        he = strrchr(str, ':');
        if (he == NULL || memchr(str, ':', (size_t)(he - str)) != NULL)
            return -EINVAL;
        ps = he + 1;
    }
    if (ps[0] < '0' || ps[0] > '9')
        return -EINVAL;
    errno = 0;
    port = strtoul(ps, &end, 10);
    if (errno != 0 || *end != '\0' || port > 65535 || (port == 0 && !listen))
        return -EINVAL;
    hlen = (size_t)(he - hs);
    if (hlen >= sizeof(host) || (hlen == 0 && (v6 || !listen)))
        return -EINVAL;
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -EINVAL;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (hlen == 0)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -EINVAL;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
    }
    return 0;
}

int peer_conn_blob_check(const struct peer_conn_blob *b)
{
    struct oci_digest d;
    uint32_t plen;
    size_t dlen;

    if (b == NULL || b->digest == NULL || b->ops == NULL || b->piece_length == 0 || b->size == 0)
        return -EINVAL;
    dlen = strnlen(b->digest, WIRE_DIGEST_MAX + 1);
    if (dlen < WIRE_DIGEST_MIN || dlen > WIRE_DIGEST_MAX || oci_digest_parse(b->digest, dlen, &d))
        return -EINVAL;
    if (wire_piece_length_for(b->size, b->piece_length, &plen) < 0 ||
        b->npieces != wire_piece_count(b->size, plen))
        return -EINVAL;
    return 0;
}

/* Takes the blob's geometry (already checked) and sizes the bitsets. */
int peer_conn_blob_set(struct peer_conn *c, const struct peer_conn_blob *b)
{
    size_t nbytes = wire_bitfield_bytes(b->npieces);

    memcpy(c->digest, b->digest, strlen(b->digest) + 1);
    c->npieces = b->npieces;
    c->piece_length = b->piece_length;
    c->size = b->size;
    c->cancelled = calloc(1, nbytes);
    if (c->cancelled == NULL)
        return -ENOMEM;
    return peer_serve_set_pieces(&c->serve, b->npieces);
}

static int wire_code_for(int reason)
{
    switch (reason) {
    case SHOAL_EPROTOCOL:
        return WIRE_ERR_PROTOCOL;
    case SHOAL_EUNAUTHORIZED:
        return WIRE_ERR_AUTH;
    case SHOAL_ENOT_FOUND:
        return WIRE_ERR_UNKNOWN_BLOB;
    case SHOAL_EBUSY:
        return WIRE_ERR_BUSY;
    case SHOAL_ECANCELED:
        return WIRE_ERR_SHUTTING_DOWN;
    default:
        return 0;
    }
}

static int reason_for(unsigned code)
{
    switch (code) {
    case WIRE_ERR_AUTH:
        return SHOAL_EUNAUTHORIZED;
    case WIRE_ERR_UNKNOWN_BLOB:
        return SHOAL_ENOT_FOUND;
    case WIRE_ERR_BUSY:
        return SHOAL_EBUSY;
    case WIRE_ERR_SHUTTING_DOWN:
        return SHOAL_EUNAVAILABLE;
    default: /* protocol, or a code this version does not know */
        return SHOAL_EPROTOCOL;
    }
}

/* ---- Lifetime ----------------------------------------------------------- */

static void wreq_free(struct wreq *w)
{
    free(w->frame);
    free(w->piece);
    if (w->file_fd >= 0)
        close(w->file_fd);
    free(w);
}

/* Frees the frames held behind a PIECE that will never finish. */
static void drop_held(struct peer_conn *c)
{
    while (c->held) {
        struct wreq *w = c->held;

        c->held = w->next;
        wreq_free(w);
    }
    c->held_tail = &c->held;
}

static void conn_free(struct peer_conn *c)
{
    drop_held(c);
    tls_conn_destroy(c->tls);
    free(c->pbuf);
    peer_serve_dispose(&c->serve);
    free(c->cancelled);
    free(c->inflight);
    wire_decoder_dispose(&c->dec);
    peer_conn_settings_dispose(&c->set);
    free(c);
}

/* The last close callback of a connection: report and free. */
static void on_handle_closed(uv_handle_t *h)
{
    struct peer_conn *c = h->data;

    if (--c->handles > 0)
        return;
    if (c->adopter)
        c->adopter->forget(c);
    if (c->owned && c->ops->on_close)
        c->ops->on_close(c, c->reason, c->arg);
    conn_free(c);
}

/* Moves c to CLOSING. Handles close now, except the TCP handle while a piece
 * read is in the thread pool (its buffer and uv_fs_t live in c, so c must
 * outlive it); serve_settled closes it then. on_close runs from the last close
 * callback, so never from inside this call. */
void peer_conn_teardown(struct peer_conn *c, int reason, bool send_error)
{
    int code = send_error ? wire_code_for(reason) : 0;

    if (c->state == PEER_CONN_CLOSING)
        return;
    /* Best effort and synchronous: a frame queued behind a pending write
     * would be cancelled by the close anyway. */
    if (c->state != PEER_CONN_CONNECTING && !c->hold &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
        struct buf b;
        uv_buf_t ub;

        buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
        if (code && wire_encode_error(&b, (uint16_t)code, shoal_strerror(reason)) == 0) {
            if (c->tls == NULL) {
                ub = uv_buf_init(b.data, (unsigned)b.len);
                (void)uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
            } else if (tls_conn_established(c->tls)) {
                (void)tls_conn_send(c->tls, b.data, b.len);
            }
        }
        buf_dispose(&b);
        /* With TLS: the ERROR's record, then close_notify, or the alert a
         * failed handshake left. */
        if (c->tls) {
            size_t len;
            uint8_t *out;

            (void)tls_conn_close_notify(c->tls);
            out = tls_conn_out_take(c->tls, &len);
            if (out) {
                ub = uv_buf_init((char *)out, (unsigned)len);
                (void)uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
                free(out);
            }
        }
    }
    if (reason != 0)
        LOG(INFO, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=close state=%s reason=%s", c->id,
            c->addr, c->digest, state_name(c->state), shoal_errname(reason));
    else
        LOG(DEBUG, COMP, "conn=%" PRIu64 " addr=%s event=close", c->id, c->addr);
    c->reason = reason;
    set_state(c, PEER_CONN_CLOSING);
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    drop_held(c);
    c->hold = false;
    c->handles++; /* the file sender's poll handle, if it has one */
    if (!peer_sendfile_close(&c->sf, on_handle_closed, c))
        c->handles--;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (!peer_serve_stop(&c->serve))
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

int peer_conn_new(uv_loop_t *loop, struct peer_conn_settings *set, bool initiator,
                  struct peer_conn **out)
{
    struct peer_conn *c;
    int rc;

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->inflight = calloc(set->max_inflight, sizeof(*c->inflight));
    rc = c->inflight ? 0 : -ENOMEM;
    if (rc == 0 && RAND_bytes(c->my_nonce, WIRE_NONCE_LEN) != 1)
        rc = SHOAL_EINTERNAL;
    if (rc == 0 && set->tls) {
        /* An outgoing connection's ClientHello waits in its output until
         * the TCP connection is up. */
        rc = tls_conn_create(set->tls, !initiator, &c->tls);
        if (rc == 0 && (c->pbuf = malloc(PEER_CONN_READ_CHUNK)) == NULL)
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = uv_tcp_init(loop, &c->tcp);
    if (rc < 0) {
        tls_conn_destroy(c->tls);
        free(c->pbuf);
        free(c->inflight);
        free(c);
        return rc;
    }
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->creq.data = c;
    c->handles = 2;
    c->loop = loop;
    c->set = *set; /* taken */
    memset(set, 0, sizeof(*set));
    c->id = (uint64_t)atomic_fetch_add(&next_conn_id, 1);
    c->initiator = initiator;
    c->state = initiator ? PEER_CONN_CONNECTING : c->tls ? PEER_CONN_TLS : PEER_CONN_WAIT_HELLO;
    peer_serve_init(&c->serve, loop, &serve_io, c, c->id, c->digest);
    /* Plaintext pieces go from the file to the socket; TLS needs the bytes
     * in memory to encrypt them. */
    peer_serve_use_files(&c->serve, c->tls == NULL);
    peer_sendfile_init(&c->sf, loop, file_done, c);
    c->held_tail = &c->held;
    snprintf(c->addr, sizeof(c->addr), "?");
    wire_decoder_init(&c->dec, WIRE_HANDSHAKE_MAX_FRAME);
    c->hs_deadline = uv_now(loop) + c->set.handshake_ms;
    arm(c);
    *out = c;
    return 0;
}

/* ---- Writing ------------------------------------------------------------ */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = req->data;
    struct peer_conn *c = w->c;
    bool piece = w->piece != NULL;
    int fd = w->file_fd;
    uint64_t off = w->file_off;
    uint32_t len = w->file_len;
    uv_os_fd_t sock;
    int rc;

    free(w->frame);
    peer_serve_recycle(&c->serve, w->piece, w->piece_len); /* taken */
    free(w);
    if (c->state == PEER_CONN_CLOSING) {
        if (fd >= 0)
            close(fd);
        return;
    }
    if (status < 0) {
        if (fd >= 0)
            close(fd);
        peer_conn_teardown(c, status, false);
        return;
    }
    if (fd >= 0) {
        /* The header is out, everything before it too: now the data. */
        rc = uv_fileno((uv_handle_t *)&c->tcp, &sock);
        if (rc < 0) {
            close(fd);
            peer_conn_teardown(c, rc, false);
            return;
        }
        rc = peer_sendfile_start(&c->sf, sock, fd, off, len); /* fd is taken */
        if (rc == 1)
            file_done(c, 0);
        else if (rc < 0)
            file_done(c, rc);
        return;
    }
    if (piece)
        peer_serve_sent(&c->serve);
}

/* Hands w to libuv. */
static int submit(struct peer_conn *c, struct wreq *w)
{
    uv_buf_t bufs[2];
    int rc;

    bufs[0] = uv_buf_init(w->frame, (unsigned)w->frame_len);
    bufs[1] = uv_buf_init((char *)w->piece, (unsigned)w->piece_len);
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, w->piece && !c->tls ? 2 : 1, on_write);
    if (rc < 0)
        return rc;
    c->last_tx = uv_now(c->loop);
    return 0;
}

/* The data of the PIECE sent from the file has left (rc 0), or could not:
 * the frames held behind it follow, then the next answer. */
static void file_done(void *ctx, int rc)
{
    struct peer_conn *c = ctx;

    if (c->state == PEER_CONN_CLOSING)
        return;
    if (rc < 0) {
        LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=sendfile-failed rc=%s", c->id,
            c->addr, c->digest, shoal_errname(rc));
        peer_conn_teardown(c, rc, false);
        return;
    }
    c->hold = false;
    c->last_tx = uv_now(c->loop);
    while (c->held) {
        struct wreq *w = c->held;

        c->held = w->next;
        if (c->held == NULL)
            c->held_tail = &c->held;
        w->next = NULL;
        rc = submit(c, w);
        if (rc < 0) {
            wreq_free(w);
            peer_conn_teardown(c, rc, false);
            return;
        }
    }
    peer_serve_sent(&c->serve);
}

/* Queues the frame in b (taken: b is empty afterwards) followed by piece
 * (taken, may be NULL) of piece_len bytes. With TLS both are encrypted
 * into one buffer, behind any record the connection still had queued (its
 * handshake's last flight), so the stream keeps the records' order; piece
 * stays with the write all the same, for peer_serve to reuse once it left. */
static int send_buf(struct peer_conn *c, struct buf *b, uint8_t *piece, size_t piece_len)
{
    struct wreq *w;
    size_t flen;
    int rc = 0;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        buf_dispose(b);
        free(piece);
        return -ENOMEM;
    }
    w->c = c;
    w->req.data = w;
    w->file_fd = -1;
    w->frame = buf_steal(b, &flen);
    w->piece = piece;
    w->piece_len = piece_len;
    if (c->tls) {
        if (w->frame && flen)
            rc = tls_conn_send(c->tls, w->frame, flen);
        if (rc == 0 && piece)
            rc = tls_conn_send(c->tls, piece, piece_len);
        free(w->frame);
        w->frame = (char *)tls_conn_out_take(c->tls, &flen);
        if (rc == 0 && w->frame == NULL)
            rc = -EINVAL;
        if (rc < 0) {
            free(w->frame);
            free(w->piece);
            free(w);
            return rc;
        }
    }
    w->frame_len = flen;
    if (c->hold) {
        /* Behind a PIECE whose data is still going out from its file. */
        *c->held_tail = w;
        c->held_tail = &w->next;
        return 0;
    }
    rc = submit(c, w);
    if (rc < 0)
        wreq_free(w);
    return rc;
}

/* Sends the records the TLS connection queued on its own (handshake
 * messages). */
static int flush_tls_out(struct peer_conn *c)
{
    struct buf none;

    if (tls_conn_out_len(c->tls) == 0)
        return 0;
    buf_init(&none, 0);
    return send_buf(c, &none, NULL, 0);
}

static int send_index_frame(struct peer_conn *c, int (*enc)(struct buf *, uint32_t), uint32_t index)
{
    struct buf b;
    int rc;

    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = enc(&b, index);
    if (rc < 0) {
        buf_dispose(&b);
        return rc;
    }
    return send_buf(c, &b, NULL, 0);
}

static int send_hello(struct peer_conn *c)
{
    struct buf b;
    int rc;

    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_hello(&b, c->digest, c->set.my_id, c->my_nonce);
    if (rc < 0) {
        buf_dispose(&b);
        return rc;
    }
    return send_buf(c, &b, NULL, 0);
}

static int send_auth(struct peer_conn *c)
{
    uint8_t mac[WIRE_MAC_LEN];
    struct buf b;
    int rc;

    rc = wire_auth_mac(c->set.secret, c->set.secret_len, c->peer_nonce, c->my_nonce, c->set.my_id,
                       c->digest, mac);
    if (rc < 0)
        return rc;
    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_auth(&b, mac);
    if (rc < 0) {
        buf_dispose(&b);
        return rc;
    }
    return send_buf(c, &b, NULL, 0);
}

static int send_keepalive(struct peer_conn *c)
{
    struct buf b;
    int rc;

    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_keepalive(&b);
    if (rc < 0) {
        buf_dispose(&b);
        return rc;
    }
    return send_buf(c, &b, NULL, 0);
}

/* ---- The serving side's hooks (struct peer_serve_io) ------------------- */

static int serve_send_piece(void *ctx, uint32_t index, uint8_t *data, uint32_t len)
{
    struct peer_conn *c = ctx;
    struct buf b;
    int rc;

    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_piece_header(&b, index, len);
    if (rc < 0) {
        buf_dispose(&b);
        free(data);
        return rc;
    }
    return send_buf(c, &b, data, len);
}

static void serve_fail(void *ctx, int rc)
{
    peer_conn_teardown(ctx, rc, false);
}

/* The piece read that kept the TCP handle open during teardown has ended. */
/* The PIECE header now, its data from fd once the header is out (on_write);
 * frames sent meanwhile are held until the data has left (file_done). */
static int serve_send_file(void *ctx, uint32_t index, int fd, uint64_t off, uint32_t len)
{
    struct peer_conn *c = ctx;
    struct wreq *w;
    struct buf b;
    size_t flen;
    int rc;

    if (c->hold || c->tls) {
        close(fd);
        return -EINVAL;
    }
    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_piece_header(&b, index, len);
    w = rc == 0 ? calloc(1, sizeof(*w)) : NULL;
    if (w == NULL) {
        buf_dispose(&b);
        close(fd);
        return rc < 0 ? rc : -ENOMEM;
    }
    w->c = c;
    w->req.data = w;
    w->frame = buf_steal(&b, &flen);
    w->frame_len = flen;
    w->file_fd = fd;
    w->file_off = off;
    w->file_len = len;
    rc = submit(c, w);
    if (rc < 0) {
        wreq_free(w);
        return rc;
    }
    c->hold = true;
    return 0;
}

static void serve_settled(void *ctx)
{
    struct peer_conn *c = ctx;

    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static const struct peer_serve_io serve_io = {
    .send_piece = serve_send_piece,
    .send_file = serve_send_file,
    .fail = serve_fail,
    .settled = serve_settled,
};

/* ---- Timers ------------------------------------------------------------- */

static uint64_t keepalive_ms(const struct peer_conn *c)
{
    uint64_t ka = c->set.idle_ms / 3;

    return ka ? ka : 1;
}

/* Re-arms the one timer for the earliest deadline. Deadlines that move later
 * (idle, keepalive) are not re-armed on every frame: the timer wakes up at
 * the old one, sees nothing due and re-arms. */
static void arm(struct peer_conn *c)
{
    uint64_t now = uv_now(c->loop), next;
    unsigned i;

    if (c->state == PEER_CONN_CLOSING)
        return;
    if (c->state != PEER_CONN_READY) {
        next = c->hs_deadline;
    } else {
        next = c->last_rx + c->set.idle_ms;
        if (c->last_tx + keepalive_ms(c) < next)
            next = c->last_tx + keepalive_ms(c);
        for (i = 0; i < c->ninflight; i++)
            if (c->inflight[i].deadline < next)
                next = c->inflight[i].deadline;
    }
    uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
}

static int inflight_find(const struct peer_conn *c, uint32_t index)
{
    unsigned i;

    for (i = 0; i < c->ninflight; i++)
        if (c->inflight[i].index == index)
            return (int)i;
    return -1;
}

/* While requests are in flight the decoder keeps its payload buffer from one
 * PIECE to the next; with none left it lets it go (at once when between
 * frames, else when the frame being received is done with). */
static void inflight_remove(struct peer_conn *c, unsigned i)
{
    c->inflight[i] = c->inflight[--c->ninflight];
    if (c->ninflight == 0)
        wire_decoder_set_keep(&c->dec, WIRE_DECODER_KEEP);
}

/* Drops our request in slot i and tells the peer; a PIECE already on its
 * way is discarded when it arrives (the cancelled bit). */
static int cancel_slot(struct peer_conn *c, unsigned i)
{
    uint32_t index = c->inflight[i].index;

    inflight_remove(c, i);
    wire_bit_set(c->cancelled, index);
    return send_index_frame(c, wire_encode_cancel, index);
}

static void on_timer(uv_timer_t *t)
{
    struct peer_conn *c = t->data;
    uint64_t now = uv_now(c->loop);
    uint32_t index;
    unsigned i;
    int rc;

    if (c->state == PEER_CONN_CLOSING)
        return;
    if (c->state != PEER_CONN_READY) {
        if (now >= c->hs_deadline) {
            peer_conn_teardown(c, SHOAL_ETIMEOUT, false);
            return;
        }
        arm(c);
        return;
    }
    if (now >= c->last_rx + c->set.idle_ms) {
        peer_conn_teardown(c, SHOAL_ETIMEOUT, false);
        return;
    }
    /* The callback may request or cancel, which reshuffles the slots, so
     * the scan starts over after each one. */
    for (i = 0; i < c->ninflight;) {
        if (c->inflight[i].deadline > now) {
            i++;
            continue;
        }
        index = c->inflight[i].index;
        LOG(INFO, COMP,
            "conn=%" PRIu64 " addr=%s digest=%s piece=%" PRIu32 " event=request-timeout", c->id,
            c->addr, c->digest, index);
        rc = cancel_slot(c, i);
        if (rc < 0) {
            peer_conn_teardown(c, rc, false);
            return;
        }
        if (c->ops->on_request_timeout)
            c->ops->on_request_timeout(c, index, c->arg);
        if (c->state == PEER_CONN_CLOSING)
            return;
        i = 0;
    }
    if (now >= c->last_tx + keepalive_ms(c)) {
        rc = send_keepalive(c);
        if (rc < 0) {
            peer_conn_teardown(c, rc, false);
            return;
        }
    }
    arm(c);
}

/* ---- Receiving ------------------------------------------------------------ */

static void become_ready(struct peer_conn *c)
{
    uint64_t now = uv_now(c->loop);

    set_state(c, PEER_CONN_READY);
    wire_decoder_set_max(&c->dec, c->piece_length + WIRE_FRAME_SLACK);
    c->last_rx = c->last_tx = now;
    arm(c);
    if (c->tls)
        LOG(INFO, COMP,
            "conn=%" PRIu64 " addr=%s digest=%s event=ready initiator=%d tls_peer=%s cipher=%s",
            c->id, c->addr, c->digest, c->initiator, tls_conn_peer(c->tls),
            tls_conn_cipher(c->tls));
    else
        LOG(INFO, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=ready initiator=%d", c->id,
            c->addr, c->digest, c->initiator);
    if (c->ops->on_ready)
        c->ops->on_ready(c, c->arg);
}

static int on_hello(struct peer_conn *c, const struct wire_frame *f)
{
    struct wire_hello h;
    int rc;

    if (wire_parse_hello(f, &h) < 0)
        return SHOAL_EPROTOCOL;
    memcpy(c->peer_id, h.peer_id, WIRE_ID_LEN);
    memcpy(c->peer_nonce, h.nonce, WIRE_NONCE_LEN);
    if (c->initiator) {
        if (strcmp(h.digest.str, c->digest) != 0) {
            LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=digest-mismatch", c->id,
                c->addr, c->digest);
            return SHOAL_EPROTOCOL;
        }
    } else {
        /* Only the listener makes incoming connections, and it sets the
         * adopter; without one, nobody serves the digest. */
        rc = c->adopter ? c->adopter->adopt(c, h.digest.str) : SHOAL_ENOT_FOUND;
        if (rc < 0 || c->state == PEER_CONN_CLOSING)
            return rc;
        rc = send_hello(c);
        if (rc < 0)
            return rc;
    }
    rc = send_auth(c);
    if (rc < 0)
        return rc;
    set_state(c, PEER_CONN_WAIT_AUTH);
    return 0;
}

static int on_auth(struct peer_conn *c, const struct wire_frame *f)
{
    const uint8_t *mac;
    int rc;

    if (wire_parse_auth(f, &mac) < 0)
        return SHOAL_EPROTOCOL;
    rc = wire_auth_verify(c->set.secret, c->set.secret_len, c->my_nonce, c->peer_nonce, c->peer_id,
                          c->digest, mac);
    if (rc == SHOAL_EPROTOCOL) {
        LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=auth-failed", c->id, c->addr,
            c->digest);
        return SHOAL_EUNAUTHORIZED;
    }
    if (rc < 0)
        return rc;
    become_ready(c);
    return 0;
}

static void on_error_frame(struct peer_conn *c, const struct wire_frame *f)
{
    char msg[WIRE_ERROR_MSG_MAX + 1];
    uint16_t code;

    if (wire_parse_error(f, &code, msg) < 0) {
        peer_conn_teardown(c, SHOAL_EPROTOCOL, true);
        return;
    }
    LOG(INFO, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=peer-error code=%s msg=\"%s\"", c->id,
        c->addr, c->digest, wire_error_name(code), msg);
    peer_conn_teardown(c, reason_for(code), false);
}

static int on_piece_frame(struct peer_conn *c, const struct wire_frame *f)
{
    const uint8_t *data;
    uint32_t index;
    size_t len;
    int slot;

    if (wire_parse_piece(f, c->npieces, c->piece_length, c->size, &index, &data, &len) < 0)
        return SHOAL_EPROTOCOL;
    slot = inflight_find(c, index);
    if (slot < 0) {
        if (wire_bit_get(c->cancelled, index)) {
            /* It crossed our CANCEL. */
            wire_bit_clear(c->cancelled, index);
            return 0;
        }
        LOG(WARN, COMP,
            "conn=%" PRIu64 " addr=%s digest=%s piece=%" PRIu32 " event=unsolicited-piece", c->id,
            c->addr, c->digest, index);
        return SHOAL_EPROTOCOL;
    }
    inflight_remove(c, (unsigned)slot);
    if (c->ops->on_piece)
        c->ops->on_piece(c, index, data, len, c->arg);
    return 0;
}

/* Handles one frame. Returns 0 (the connection may have been closed by a
 * callback or an ERROR frame) or the reason to close it with. */
static int dispatch(struct peer_conn *c, const struct wire_frame *f)
{
    uint32_t index;

    if (f->type == WIRE_ERROR) {
        on_error_frame(c, f);
        return 0;
    }
    switch (c->state) {
    case PEER_CONN_WAIT_HELLO:
        return f->type == WIRE_HELLO ? on_hello(c, f) : SHOAL_EPROTOCOL;
    case PEER_CONN_WAIT_AUTH:
        return f->type == WIRE_AUTH ? on_auth(c, f) : SHOAL_EPROTOCOL;
    case PEER_CONN_READY:
        break;
    default:
        return SHOAL_EPROTOCOL;
    }
    switch (f->type) {
    case WIRE_BITFIELD:
        if (c->bitfield_recv || wire_parse_bitfield(f, c->npieces) < 0)
            return SHOAL_EPROTOCOL;
        c->bitfield_recv = true;
        if (c->ops->on_bitfield)
            c->ops->on_bitfield(c, f->payload, c->arg);
        return 0;
    case WIRE_HAVE:
        if (wire_parse_index(f, c->npieces, &index) < 0)
            return SHOAL_EPROTOCOL;
        if (c->ops->on_have)
            c->ops->on_have(c, index, c->arg);
        return 0;
    case WIRE_REQUEST:
        if (wire_parse_index(f, c->npieces, &index) < 0 ||
            peer_serve_on_request(&c->serve, index) < 0)
            return SHOAL_EPROTOCOL;
        if (c->ops->on_request)
            c->ops->on_request(c, index, c->arg);
        return 0;
    case WIRE_PIECE:
        return on_piece_frame(c, f);
    case WIRE_CANCEL:
        if (wire_parse_index(f, c->npieces, &index) < 0)
            return SHOAL_EPROTOCOL;
        if (peer_serve_on_cancel(&c->serve, index) && c->ops->on_cancel)
            c->ops->on_cancel(c, index, c->arg);
        return 0;
    case WIRE_KEEPALIVE:
        return wire_parse_keepalive(f) < 0 ? SHOAL_EPROTOCOL : 0;
    default: /* HELLO or AUTH again, or an unknown type */
        return SHOAL_EPROTOCOL;
    }
}

/* The rest of a payload at least this large is read from a plaintext
 * socket straight into the decoder's buffer (a PIECE's data: no copy
 * through rbuf); smaller ones and every header go through rbuf. Each read
 * takes at most rbuf's size either way: one read of a whole piece holds the
 * socket for the length of its copy, and the sender's packets queue behind
 * it (measured slower, bench/tls-bench). */
#define PEER_CONN_DIRECT_MIN 4096

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct peer_conn *c = h->data;
    uint8_t *at = NULL;
    size_t room = c->tls || !c->rx_any ? 0 : wire_decoder_room(&c->dec, &at);

    (void)suggested;
    if (room >= PEER_CONN_DIRECT_MIN)
        *b = uv_buf_init((char *)at, room > sizeof(c->rbuf) ? sizeof(c->rbuf) : (unsigned)room);
    else
        *b = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

/* A frame is in: dispatches it and lets the decoder drop its payload. 0, or
 * -1 when the connection is being torn down. */
static int frame_in(struct peer_conn *c, const struct wire_frame *f, int rc)
{
    if (rc < 0) {
        LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s event=bad-frame rc=%s", c->id, c->addr,
            shoal_errname(rc));
        peer_conn_teardown(c, rc == -ENOMEM ? rc : SHOAL_EPROTOCOL, true);
        return -1;
    }
    if (rc == 0)
        return 0;
    rc = dispatch(c, f);
    if (rc < 0) {
        if (rc == SHOAL_EPROTOCOL)
            LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s state=%s event=bad-frame type=%s", c->id,
                c->addr, state_name(c->state), wire_type_name(f->type));
        peer_conn_teardown(c, rc, true);
        return -1;
    }
    wire_decoder_release(&c->dec);
    return 0;
}

/* Decodes and dispatches the plaintext frames in p; stops when the
 * connection starts closing. */
static void decode(struct peer_conn *c, const uint8_t *p, size_t left)
{
    size_t used;
    struct wire_frame f;

    while (left > 0 && c->state != PEER_CONN_CLOSING) {
        int rc = wire_decode(&c->dec, p, left, &used, &f);

        p += used;
        left -= used;
        if (frame_in(c, &f, rc) < 0)
            return;
    }
}

/* Sends a plaintext ERROR frame the other side can read whatever it
 * expected (best effort, as in peer_conn_teardown). */
static void send_plain_error(struct peer_conn *c, uint16_t code, const char *msg)
{
    struct buf b;
    uv_buf_t ub;

    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    if (wire_encode_error(&b, code, msg) == 0) {
        ub = uv_buf_init(b.data, (unsigned)b.len);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
    }
    buf_dispose(&b);
}

/* The first bytes show a peer in the other mode: a plaintext HELLO (or
 * ERROR) where a TLS record belongs, or a ClientHello on a plaintext
 * connection. Each side says so in its log, the plaintext side through an
 * ERROR frame it can read, and the connection closes. */
static void refuse_mismatch(struct peer_conn *c, const uint8_t *p, size_t n)
{
    char msg[WIRE_ERROR_MSG_MAX + 3] = "";
    char text[WIRE_ERROR_MSG_MAX + 1];

    if (c->tls && c->initiator) {
        /* Most likely a plaintext listener's ERROR about our ClientHello. */
        struct wire_decoder d;
        struct wire_frame f;
        uint16_t code;
        size_t used;

        wire_decoder_init(&d, WIRE_HANDSHAKE_MAX_FRAME);
        if (wire_decode(&d, p, n, &used, &f) == 1 && f.type == WIRE_ERROR &&
            wire_parse_error(&f, &code, text) == 0)
            snprintf(msg, sizeof(msg), ": %s", text);
        wire_decoder_dispose(&d);
        LOG(WARN, COMP,
            "conn=%" PRIu64 " addr=%s event=tls-failed reason=\"the peer answered in plaintext%s\"",
            c->id, c->addr, msg);
    } else if (c->tls) {
        LOG(WARN, COMP,
            "conn=%" PRIu64 " addr=%s event=tls-refused reason=\"a plaintext peer on a TLS port\"",
            c->id, c->addr);
        snprintf(text, sizeof(text), "this peer requires TLS 1.3 (tls-mode %s)",
                 tls_mode_name(tls_context_mode(c->set.tls)));
        send_plain_error(c, WIRE_ERR_AUTH, text);
    } else {
        LOG(WARN, COMP,
            "conn=%" PRIu64 " addr=%s event=tls-refused reason=\"the peer speaks TLS, this "
            "agent's tls-mode is off\"",
            c->id, c->addr);
        send_plain_error(c, WIRE_ERR_AUTH, "this peer does not use TLS (tls-mode off)");
    }
    peer_conn_teardown(c, SHOAL_ETLS, false);
}

/* The TLS handshake finished: the wire protocol's own handshake starts. */
static int tls_ready(struct peer_conn *c)
{
    LOG(DEBUG, COMP, "conn=%" PRIu64 " addr=%s event=tls-established tls_peer=%s cipher=%s", c->id,
        c->addr, tls_conn_peer(c->tls), tls_conn_cipher(c->tls));
    set_state(c, PEER_CONN_WAIT_HELLO);
    return c->initiator ? send_hello(c) : 0;
}

/* Ciphertext from the stream: through TLS into pbuf, then the frame
 * decoder, until all of it is taken. */
static void read_tls(struct peer_conn *c, const uint8_t *p, size_t n)
{
    for (;;) {
        size_t used = 0, got = 0;
        int rc = tls_conn_recv(c->tls, p, n, &used, c->pbuf, PEER_CONN_READ_CHUNK, &got);

        p += used;
        n -= used;
        if (rc < 0) {
            LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s event=tls-failed reason=\"%s\"", c->id,
                c->addr, tls_conn_error(c->tls));
            /* Its alert goes out from the teardown. */
            peer_conn_teardown(c, SHOAL_ETLS, false);
            return;
        }
        if (c->state == PEER_CONN_TLS && tls_conn_established(c->tls))
            rc = tls_ready(c);
        if (rc == 0)
            rc = flush_tls_out(c);
        if (rc < 0) {
            peer_conn_teardown(c, rc, false);
            return;
        }
        if (got > 0) {
            decode(c, c->pbuf, got);
            if (c->state == PEER_CONN_CLOSING)
                return;
        }
        if (tls_conn_peer_closed(c->tls)) {
            peer_conn_teardown(c, c->state == PEER_CONN_READY ? 0 : -ECONNRESET, false);
            return;
        }
        if ((n == 0 && !tls_conn_has_pending(c->tls)) || (used == 0 && got == 0))
            return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct peer_conn *c = s->data;
    const uint8_t *p = (const uint8_t *)b->base;
    int rc;

    if (c->state == PEER_CONN_CLOSING)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            rc = (int)nread;
        else if (c->tls)
            /* close_notify closes before any EOF; an EOF without it may
             * have cut the stream anywhere. */
            rc = -ECONNRESET;
        else
            rc = c->state == PEER_CONN_READY ? 0 : -ECONNRESET;
        peer_conn_teardown(c, rc, false);
        return;
    }
    if (nread == 0)
        return;
    c->last_rx = uv_now(c->loop);
    if (!c->rx_any) {
        c->rx_any = true;
        if ((c->tls != NULL) == tls_looks_plaintext(p, (size_t)nread)) {
            refuse_mismatch(c, p, (size_t)nread);
            return;
        }
    }
    if (b->base != (char *)c->rbuf) {
        /* Straight into the payload (on_alloc). */
        struct wire_frame f;
        int frc = wire_decoder_filled(&c->dec, (size_t)nread, &f);

        if (frc == -EINVAL) {
            /* on_alloc offered room the decoder did not have: ours, not
             * the peer's, so no protocol error goes to it. */
            LOG(ERROR, COMP, "conn=%" PRIu64 " addr=%s event=internal-error what=decoder-room",
                c->id, c->addr);
            peer_conn_teardown(c, SHOAL_EINTERNAL, false);
            return;
        }
        frame_in(c, &f, frc);
    } else if (c->tls) {
        read_tls(c, p, (size_t)nread);
    } else {
        decode(c, p, (size_t)nread);
    }
}

int peer_conn_start_reading(struct peer_conn *c)
{
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);

    if (rc == 0)
        c->reading = true;
    return rc;
}

/* ---- Outgoing connections ---------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    struct peer_conn *c = req->data;
    int rc = status;

    if (c->state == PEER_CONN_CLOSING)
        return;
    if (rc == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        set_state(c, c->tls ? PEER_CONN_TLS : PEER_CONN_WAIT_HELLO);
        rc = peer_conn_start_reading(c);
    }
    if (rc == 0)
        rc = c->tls ? flush_tls_out(c) : send_hello(c); /* the ClientHello, or HELLO */
    if (rc < 0)
        peer_conn_teardown(c, rc, false);
}

int peer_conn_make_id(uint8_t id[WIRE_ID_LEN])
{
    return RAND_bytes(id, WIRE_ID_LEN) == 1 ? 0 : SHOAL_EINTERNAL;
}

int peer_conn_connect(uv_loop_t *loop, const struct peer_conn_config *cfg, const char *addr,
                      const struct peer_conn_blob *blob, struct peer_conn **out)
{
    struct sockaddr_storage ss;
    struct peer_conn_settings set;
    struct peer_conn *c = NULL;
    int rc;

    memset(&set, 0, sizeof(set));
    rc = peer_conn_parse_addr(addr, false, &ss);
    if (rc < 0)
        goto out;
    rc = peer_conn_blob_check(blob);
    if (rc < 0)
        goto out;
    rc = peer_conn_settings_from_config(&set, cfg);
    if (rc < 0)
        goto out;
    rc = peer_conn_new(loop, &set, true, &c);
    if (rc < 0)
        goto out;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->ops = blob->ops;
    c->arg = blob->arg;
    rc = peer_conn_blob_set(c, blob);
    if (rc == 0)
        rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&ss, on_connect);
    if (rc < 0) {
        /* Not owned yet: freed from its close callbacks, silently. */
        peer_conn_teardown(c, rc, false);
        goto out;
    }
    c->owned = true;
    *out = c;
    LOG(DEBUG, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=connect", c->id, c->addr, c->digest);
out:
    peer_conn_settings_dispose(&set);
    return rc;
}

void peer_conn_close(struct peer_conn *c, int reason)
{
    peer_conn_teardown(c, reason, true);
}

/* ---- Sending -------------------------------------------------------------- */

int peer_conn_send_bitfield(struct peer_conn *c, const uint8_t *bits)
{
    size_t nbytes;
    struct buf b;
    int rc;

    if (c->state != PEER_CONN_READY)
        return -ENOTCONN;
    if (c->bitfield_sent)
        return -EALREADY;
    nbytes = wire_bitfield_bytes(c->npieces);
    if (bits == NULL || (c->npieces % 8 && (bits[nbytes - 1] & (0xffu >> (c->npieces % 8)))))
        return -EINVAL;
    buf_init(&b, nbytes + PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_bitfield(&b, bits, nbytes);
    if (rc < 0) {
        buf_dispose(&b);
        return rc;
    }
    rc = send_buf(c, &b, NULL, 0);
    if (rc == 0)
        c->bitfield_sent = true;
    return rc;
}

int peer_conn_send_have(struct peer_conn *c, uint32_t index)
{
    if (c->state != PEER_CONN_READY)
        return -ENOTCONN;
    if (index >= c->npieces)
        return -EINVAL;
    return send_index_frame(c, wire_encode_have, index);
}

int peer_conn_request(struct peer_conn *c, uint32_t index)
{
    int rc;

    if (c->state != PEER_CONN_READY)
        return -ENOTCONN;
    if (index >= c->npieces)
        return -EINVAL;
    if (inflight_find(c, index) >= 0)
        return -EALREADY;
    if (c->ninflight >= c->set.max_inflight)
        return SHOAL_EBUSY;
    rc = send_index_frame(c, wire_encode_request, index);
    if (rc < 0)
        return rc;
    c->inflight[c->ninflight].index = index;
    c->inflight[c->ninflight].deadline = uv_now(c->loop) + c->set.request_ms;
    if (c->ninflight++ == 0)
        wire_decoder_set_keep(&c->dec, SIZE_MAX);
    arm(c);
    return 0;
}

int peer_conn_cancel(struct peer_conn *c, uint32_t index)
{
    int slot;

    if (c->state != PEER_CONN_READY)
        return -ENOTCONN;
    if (index >= c->npieces)
        return -EINVAL;
    slot = inflight_find(c, index);
    if (slot < 0)
        return -ENOENT;
    return cancel_slot(c, (unsigned)slot);
}

int peer_conn_send_piece(struct peer_conn *c, uint32_t index, int fd, uint64_t off, uint32_t len)
{
    if (c->state != PEER_CONN_READY)
        return -ENOTCONN;
    if (index >= c->npieces || len != wire_piece_size(c->size, c->piece_length, index) || fd < 0 ||
        off > (uint64_t)INT64_MAX - len)
        return -EINVAL;
    return peer_serve_answer(&c->serve, index, fd, off, len);
}

/* ---- Accessors ------------------------------------------------------------ */

bool peer_conn_ready(const struct peer_conn *c)
{
    return c->state == PEER_CONN_READY;
}

unsigned peer_conn_inflight(const struct peer_conn *c)
{
    return c->ninflight;
}

bool peer_conn_is_inflight(const struct peer_conn *c, uint32_t index)
{
    return inflight_find(c, index) >= 0;
}

const char *peer_conn_addr(const struct peer_conn *c)
{
    return c->addr;
}

const uint8_t *peer_conn_id(const struct peer_conn *c)
{
    return c->peer_id;
}

const char *peer_conn_tls_peer(const struct peer_conn *c)
{
    return c->tls ? tls_conn_peer(c->tls) : "";
}

const char *peer_conn_digest(const struct peer_conn *c)
{
    return c->digest;
}

void *peer_conn_arg(const struct peer_conn *c)
{
    return c->arg;
}

void peer_conn_set_data(struct peer_conn *c, void *data)
{
    c->data = data;
}

void *peer_conn_data(const struct peer_conn *c)
{
    return c->data;
}
