/* Private to the peer_conn module's files; not a public interface (that is
 * peer_conn.h). Each file calls only the ones below it:
 *   peer_listener.c  accepting incoming connections and the lookup hand-off;
 *                    it gives each connection it accepts a struct
 *                    peer_conn_adopter, through which the connection reaches
 *                    it;
 *   peer_conn.c      connection lifetime, reading, the handshake, frame
 *                    dispatch, writing, timers, outgoing connections and the
 *                    owner's calls;
 *   peer_serve.c     answering the peer's REQUESTs (piece reads and sends),
 *                    reaching the connection through struct peer_serve_io;
 *   peer_sendfile.c  a PIECE's data from the file to the socket with
 *                    sendfile(2), reaching the connection through its done
 *                    callback.
 */
#ifndef SHOAL_PEER_CONN_INTERNAL_H
#define SHOAL_PEER_CONN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "peer/peer_conn.h"
#include "peer/peer_sendfile.h"
#include "peer/peer_serve.h"
#include "shoal/buf.h"
#include "shoal/wire.h"

#define PEER_CONN_READ_CHUNK 65536
#define PEER_CONN_ADDR_MAX 64
/* Largest frame we encode ourselves apart from PIECE data and BITFIELD. */
#define PEER_CONN_SMALL_FRAME_MAX 512

/* XX(name, log name) */
#define PEER_CONN_STATE_MAP(XX)                                                                    \
    XX(CONNECTING, "connecting")                                                                   \
    XX(TLS, "tls-handshake")                                                                       \
    XX(WAIT_HELLO, "wait-hello")                                                                   \
    XX(WAIT_AUTH, "wait-auth")                                                                     \
    XX(READY, "ready")                                                                             \
    XX(CLOSING, "closing")

enum peer_conn_state {
#define XX(name, str) PEER_CONN_##name,
    PEER_CONN_STATE_MAP(XX)
#undef XX
};

/* The connection settings, with defaults applied and the secret owned. */
struct peer_conn_settings {
    uint8_t *secret;
    size_t secret_len;
    uint8_t my_id[WIRE_ID_LEN];
    uint64_t handshake_ms;
    uint64_t idle_ms;
    uint64_t request_ms;
    unsigned max_inflight;
    struct tls_context *tls; /* borrowed, NULL = plaintext */
};

struct inflight; /* peer_conn.c */
struct wreq;     /* peer_conn.c */

/* How an incoming connection reaches the listener that accepted it, until the
 * listener hands it to its owner. Set by the listener with the connection's
 * listener field; both are cleared by the listener once it lets go. */
struct peer_conn_adopter {
    /* The HELLO named digest: find the owner. 0 when c is now owned (or was
     * closed meanwhile); otherwise the reason to close c with. */
    int (*adopt)(struct peer_conn *c, const char *digest);
    /* c's last handle closed while the listener still held it. */
    void (*forget)(struct peer_conn *c);
};

struct peer_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* handshake, idle, keepalive and request deadlines */
    uv_connect_t creq;
    uv_loop_t *loop;
    enum peer_conn_state state;
    uint64_t id; /* for logs */
    bool initiator;
    bool owned; /* ops are ours to call; on_close will fire */
    bool reading;
    int handles; /* handles not yet closed */
    int reason;
    struct peer_conn_settings set;

    char digest[WIRE_DIGEST_MAX + 1];
    uint32_t npieces;
    uint32_t piece_length;
    uint64_t size;
    const struct peer_conn_ops *ops;
    void *arg;
    void *data;

    uint8_t my_nonce[WIRE_NONCE_LEN];
    uint8_t peer_id[WIRE_ID_LEN];
    uint8_t peer_nonce[WIRE_NONCE_LEN];
    uint64_t hs_deadline;
    uint64_t last_rx, last_tx;
    struct wire_decoder dec;
    bool bitfield_sent, bitfield_recv;
    bool rx_any; /* a byte arrived: the first ones were checked (TLS or not) */

    /* TLS (NULL without): the connection's state machine, and the buffer
     * records are decrypted into before the frame decoder takes them. */
    struct tls_conn *tls;
    uint8_t *pbuf;

    struct inflight *inflight; /* set.max_inflight slots */
    unsigned ninflight;
    uint8_t *cancelled; /* bitset: cancelled by us, a late PIECE may still come */

    struct peer_serve serve; /* answers to the peer's REQUESTs */

    /* A PIECE's data going out from the file (plaintext): from its header's
     * write until the last byte, frames queued meanwhile wait in held, in
     * order, so none lands inside the piece. */
    struct peer_sendfile sf;
    bool hold;
    struct wreq *held, **held_tail;

    /* An incoming connection not yet owned: the listener's hooks and its
     * bookkeeping (peer_listener.c's). */
    const struct peer_conn_adopter *adopter;
    struct peer_listener *listener;
    struct peer_conn *lprev, *lnext;

    char addr[PEER_CONN_ADDR_MAX];
    uint8_t rbuf[PEER_CONN_READ_CHUNK];
};

/* ---- peer_conn.c, for the listener ---- */

void peer_conn_settings_dispose(struct peer_conn_settings *s);
int peer_conn_settings_copy(struct peer_conn_settings *dst, const struct peer_conn_settings *src);
/* Applies the defaults to cfg and copies its secret. */
int peer_conn_settings_from_config(struct peer_conn_settings *dst,
                                   const struct peer_conn_config *cfg);
/* "HOST:PORT" or "[V6]:PORT", numeric only; an empty IPv4 host and port 0
 * only when listen. */
int peer_conn_parse_addr(const char *str, bool listen, struct sockaddr_storage *ss);
int peer_conn_blob_check(const struct peer_conn_blob *b);
/* Takes the blob's geometry (already checked) and sizes the bitsets. */
int peer_conn_blob_set(struct peer_conn *c, const struct peer_conn_blob *b);
/* A new connection on loop, taking *set (left zeroed). */
int peer_conn_new(uv_loop_t *loop, struct peer_conn_settings *set, bool initiator,
                  struct peer_conn **out);
/* Moves c to CLOSING, sending ERROR first if send_error and the reason maps
 * to a wire code; on_close runs later from the last close callback. */
void peer_conn_teardown(struct peer_conn *c, int reason, bool send_error);
/* Starts reading frames from c's socket. 0 or a libuv error. */
int peer_conn_start_reading(struct peer_conn *c);

#endif
