/* Peer connections, the receiving side: frames decoded from the socket,
 * the handshake checks (HELLO, AUTH), and every later frame dispatched to the
 * connection's callbacks. Lifetime, writing and timers are in peer_conn.c. */
#define _GNU_SOURCE
#include "peer/peer_conn.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <openssl/crypto.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "peer/peer_conn_internal.h"

#define COMP "peer"

/* ---- Receiving ------------------------------------------------------------ */

static void become_ready(struct peer_conn *c)
{
    uint64_t now = uv_now(c->loop);

    peer_conn_set_state(c, PEER_CONN_READY);
    wire_decoder_set_max(&c->dec, c->piece_length + WIRE_FRAME_SLACK);
    c->last_rx = c->last_tx = now;
    peer_conn_arm(c);
    LOG(INFO, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=ready initiator=%d", c->id, c->addr,
        c->digest, c->initiator);
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
        rc = peer_conn_adopt(c, h.digest.str);
        if (rc < 0 || c->state == PEER_CONN_CLOSING)
            return rc;
        rc = peer_conn_send_hello(c);
        if (rc < 0)
            return rc;
    }
    rc = peer_conn_send_auth(c);
    if (rc < 0)
        return rc;
    peer_conn_set_state(c, PEER_CONN_WAIT_AUTH);
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
    peer_conn_teardown(c, peer_conn_reason_for(code), false);
}

static int on_piece_frame(struct peer_conn *c, const struct wire_frame *f)
{
    const uint8_t *data;
    uint32_t index;
    size_t len;
    int slot;

    if (wire_parse_piece(f, c->npieces, c->piece_length, c->size, &index, &data, &len) < 0)
        return SHOAL_EPROTOCOL;
    slot = peer_conn_inflight_find(c, index);
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
    peer_conn_inflight_remove(c, (unsigned)slot);
    /* Reuse the payload buffer for the next piece while more are coming. */
    wire_decoder_set_keep(&c->dec, c->ninflight ? SIZE_MAX : 0);
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
        if (wire_parse_index(f, c->npieces, &index) < 0 || peer_conn_answer_pending(c, index))
            return SHOAL_EPROTOCOL;
        wire_bit_set(c->peer_req, index);
        if (c->ops->on_request)
            c->ops->on_request(c, index, c->arg);
        return 0;
    case WIRE_PIECE:
        return on_piece_frame(c, f);
    case WIRE_CANCEL:
        if (wire_parse_index(f, c->npieces, &index) < 0)
            return SHOAL_EPROTOCOL;
        peer_conn_on_cancel_frame(c, index);
        return 0;
    case WIRE_KEEPALIVE:
        return wire_parse_keepalive(f) < 0 ? SHOAL_EPROTOCOL : 0;
    default: /* HELLO or AUTH again, or an unknown type */
        return SHOAL_EPROTOCOL;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct peer_conn *c = h->data;

    (void)suggested;
    *b = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct peer_conn *c = s->data;
    const uint8_t *p = (const uint8_t *)b->base;
    size_t left, used;
    struct wire_frame f;
    int rc;

    if (c->state == PEER_CONN_CLOSING)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            rc = c->state == PEER_CONN_READY ? 0 : -ECONNRESET;
        else
            rc = (int)nread;
        peer_conn_teardown(c, rc, false);
        return;
    }
    c->last_rx = uv_now(c->loop);
    left = (size_t)nread;
    while (left > 0 && c->state != PEER_CONN_CLOSING) {
        rc = wire_decode(&c->dec, p, left, &used, &f);
        if (rc < 0) {
            LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s event=bad-frame rc=%s", c->id, c->addr,
                shoal_errname(rc));
            peer_conn_teardown(c, rc == -ENOMEM ? rc : SHOAL_EPROTOCOL, true);
            return;
        }
        p += used;
        left -= used;
        if (rc == 1) {
            rc = dispatch(c, &f);
            if (rc < 0) {
                if (rc == SHOAL_EPROTOCOL)
                    LOG(WARN, COMP, "conn=%" PRIu64 " addr=%s state=%s event=bad-frame type=%s",
                        c->id, c->addr, peer_conn_state_name(c->state), wire_type_name(f.type));
                peer_conn_teardown(c, rc, true);
                return;
            }
        }
    }
}

int peer_conn_start_reading(struct peer_conn *c)
{
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);

    if (rc == 0)
        c->reading = true;
    return rc;
}
