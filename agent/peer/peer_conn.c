/* Peer connections: the handshake, frame sequence, timeouts and piece I/O of
 * one blob's connection to one peer, on a libuv loop. See peer_conn.h.
 * Frames are read and dispatched in peer_recv.c, incoming connections are
 * accepted in peer_listener.c, and answers to the
 * peer's REQUESTs are read and sent in peer_serve.c. */
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
#include "peer/peer_conn_internal.h"

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
    char *frame;    /* a whole frame, or a PIECE header */
    uint8_t *piece; /* PIECE data, or NULL */
    size_t piece_len;
};

/* Log ids only; atomic because several loops may run in threads. */
static atomic_uint_fast64_t next_conn_id = 1;

static void on_timer(uv_timer_t *t);

/* ---- Small helpers ---------------------------------------------------- */

const char *peer_conn_state_name(enum peer_conn_state s)
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

void peer_conn_set_state(struct peer_conn *c, enum peer_conn_state s)
{
    LOG(DEBUG, COMP, "conn=%" PRIu64 " addr=%s state=%s next=%s", c->id, c->addr,
        peer_conn_state_name(c->state), peer_conn_state_name(s));
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
    c->cancelled = calloc(2, nbytes);
    if (c->cancelled == NULL)
        return -ENOMEM;
    c->peer_req = c->cancelled + nbytes;
    return 0;
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

int peer_conn_reason_for(unsigned code)
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

static void conn_free(struct peer_conn *c)
{
    peer_conn_answers_free(c);
    free(c->cancelled);
    free(c->inflight);
    wire_decoder_dispose(&c->dec);
    peer_conn_settings_dispose(&c->set);
    free(c);
}

/* The last close callback of a connection: report and free. */
void peer_conn_on_handle_closed(uv_handle_t *h)
{
    struct peer_conn *c = h->data;

    if (--c->handles > 0)
        return;
    if (c->listener)
        peer_conn_listener_forget(c);
    if (c->owned && c->ops->on_close)
        c->ops->on_close(c, c->reason, c->arg);
    conn_free(c);
}

/* Moves c to CLOSING. Handles close now, except the TCP handle while a piece
 * read is in the thread pool (its buffer and uv_fs_t live in c, so c must
 * outlive it); on_fs_read closes it then. on_close runs from the last close
 * callback, so never from inside this call. */
void peer_conn_teardown(struct peer_conn *c, int reason, bool send_error)
{
    int code = send_error ? wire_code_for(reason) : 0;

    if (c->state == PEER_CONN_CLOSING)
        return;
    if (code && c->state != PEER_CONN_CONNECTING) {
        struct buf b;
        uv_buf_t ub;

        /* Best effort and synchronous: a frame queued behind a pending write
         * would be cancelled by the close anyway. */
        buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0 &&
            wire_encode_error(&b, (uint16_t)code, shoal_strerror(reason)) == 0) {
            ub = uv_buf_init(b.data, (unsigned)b.len);
            (void)uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
        }
        buf_dispose(&b);
    }
    if (reason != 0)
        LOG(INFO, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=close state=%s reason=%s", c->id,
            c->addr, c->digest, peer_conn_state_name(c->state), shoal_errname(reason));
    else
        LOG(DEBUG, COMP, "conn=%" PRIu64 " addr=%s event=close", c->id, c->addr);
    c->reason = reason;
    peer_conn_set_state(c, PEER_CONN_CLOSING);
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    uv_close((uv_handle_t *)&c->timer, peer_conn_on_handle_closed);
    if (!c->fs_busy)
        uv_close((uv_handle_t *)&c->tcp, peer_conn_on_handle_closed);
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
    if (c->inflight == NULL) {
        free(c);
        return -ENOMEM;
    }
    if (RAND_bytes(c->my_nonce, WIRE_NONCE_LEN) != 1) {
        free(c->inflight);
        free(c);
        return SHOAL_EINTERNAL;
    }
    rc = uv_tcp_init(loop, &c->tcp);
    if (rc < 0) {
        free(c->inflight);
        free(c);
        return rc;
    }
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->creq.data = c;
    c->fs.data = c;
    c->handles = 2;
    c->loop = loop;
    c->set = *set; /* taken */
    memset(set, 0, sizeof(*set));
    c->id = (uint64_t)atomic_fetch_add(&next_conn_id, 1);
    c->initiator = initiator;
    c->state = initiator ? PEER_CONN_CONNECTING : PEER_CONN_WAIT_HELLO;
    c->aq_tail = &c->aq_head;
    snprintf(c->addr, sizeof(c->addr), "?");
    wire_decoder_init(&c->dec, WIRE_HANDSHAKE_MAX_FRAME);
    c->hs_deadline = uv_now(loop) + c->set.handshake_ms;
    peer_conn_arm(c);
    *out = c;
    return 0;
}

/* ---- Writing ------------------------------------------------------------ */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = req->data;
    struct peer_conn *c = w->c;
    bool piece = w->piece != NULL;

    free(w->frame);
    if (piece && c->state != PEER_CONN_CLOSING && c->aq_head && !c->spare) {
        c->spare = w->piece;
        c->spare_len = w->piece_len;
    } else {
        free(w->piece);
        if (!c->aq_head) { /* idle: hold no piece-sized memory */
            free(c->spare);
            c->spare = NULL;
        }
    }
    free(w);
    if (c->state == PEER_CONN_CLOSING)
        return;
    if (status < 0) {
        peer_conn_teardown(c, status, false);
        return;
    }
    if (piece) {
        c->piece_writing = false;
        peer_conn_pump(c);
    }
}

/* Queues the frame in b (taken: b is empty afterwards) followed by piece
 * (taken, may be NULL) of piece_len bytes. */
int peer_conn_send_buf(struct peer_conn *c, struct buf *b, uint8_t *piece, size_t piece_len)
{
    struct wreq *w;
    uv_buf_t bufs[2];
    size_t flen;
    int rc;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        buf_dispose(b);
        free(piece);
        return -ENOMEM;
    }
    w->c = c;
    w->req.data = w;
    w->frame = buf_steal(b, &flen);
    w->piece = piece;
    w->piece_len = piece_len;
    bufs[0] = uv_buf_init(w->frame, (unsigned)flen);
    bufs[1] = uv_buf_init((char *)piece, (unsigned)piece_len);
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, piece ? 2 : 1, on_write);
    if (rc < 0) {
        free(w->frame);
        free(w->piece);
        free(w);
        return rc;
    }
    c->last_tx = uv_now(c->loop);
    return 0;
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
    return peer_conn_send_buf(c, &b, NULL, 0);
}

int peer_conn_send_hello(struct peer_conn *c)
{
    struct buf b;
    int rc;

    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_hello(&b, c->digest, c->set.my_id, c->my_nonce);
    if (rc < 0) {
        buf_dispose(&b);
        return rc;
    }
    return peer_conn_send_buf(c, &b, NULL, 0);
}

int peer_conn_send_auth(struct peer_conn *c)
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
    return peer_conn_send_buf(c, &b, NULL, 0);
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
    return peer_conn_send_buf(c, &b, NULL, 0);
}

/* ---- Timers ------------------------------------------------------------- */

static uint64_t keepalive_ms(const struct peer_conn *c)
{
    uint64_t ka = c->set.idle_ms / 3;

    return ka ? ka : 1;
}

/* Re-arms the one timer for the earliest deadline. Deadlines that move later
 * (idle, keepalive) are not re-armed on every frame: the timer wakes up at
 * the old one, sees nothing due and re-arms. */
void peer_conn_arm(struct peer_conn *c)
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

int peer_conn_inflight_find(const struct peer_conn *c, uint32_t index)
{
    unsigned i;

    for (i = 0; i < c->ninflight; i++)
        if (c->inflight[i].index == index)
            return (int)i;
    return -1;
}

void peer_conn_inflight_remove(struct peer_conn *c, unsigned i)
{
    c->inflight[i] = c->inflight[--c->ninflight];
}

/* Drops our request in slot i and tells the peer; a PIECE already on its
 * way is discarded when it arrives (the cancelled bit). */
static int cancel_slot(struct peer_conn *c, unsigned i)
{
    uint32_t index = c->inflight[i].index;

    peer_conn_inflight_remove(c, i);
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
        peer_conn_arm(c);
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
    peer_conn_arm(c);
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
        peer_conn_set_state(c, PEER_CONN_WAIT_HELLO);
        rc = peer_conn_start_reading(c);
    }
    if (rc == 0)
        rc = peer_conn_send_hello(c);
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
    rc = peer_conn_send_buf(c, &b, NULL, 0);
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
    if (peer_conn_inflight_find(c, index) >= 0)
        return -EALREADY;
    if (c->ninflight >= c->set.max_inflight)
        return SHOAL_EBUSY;
    rc = send_index_frame(c, wire_encode_request, index);
    if (rc < 0)
        return rc;
    c->inflight[c->ninflight].index = index;
    c->inflight[c->ninflight].deadline = uv_now(c->loop) + c->set.request_ms;
    c->ninflight++;
    peer_conn_arm(c);
    return 0;
}

int peer_conn_cancel(struct peer_conn *c, uint32_t index)
{
    int slot;

    if (c->state != PEER_CONN_READY)
        return -ENOTCONN;
    if (index >= c->npieces)
        return -EINVAL;
    slot = peer_conn_inflight_find(c, index);
    if (slot < 0)
        return -ENOENT;
    return cancel_slot(c, (unsigned)slot);
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
    return peer_conn_inflight_find(c, index) >= 0;
}

const char *peer_conn_addr(const struct peer_conn *c)
{
    return c->addr;
}

const uint8_t *peer_conn_id(const struct peer_conn *c)
{
    return c->peer_id;
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
