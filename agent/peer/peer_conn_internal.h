/* Private to the peer_conn module's files; not a public interface (that is
 * peer_conn.h):
 *   peer_conn.c      connection lifetime, handshake, frame dispatch, timers,
 *                    outgoing connections and the owner's calls;
 *   peer_listener.c  accepting incoming connections and the lookup hand-off;
 *   peer_serve.c     answering the peer's REQUESTs (piece reads and sends).
 */
#ifndef SHOAL_PEER_CONN_INTERNAL_H
#define SHOAL_PEER_CONN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "peer/peer_conn.h"
#include "shoal/buf.h"
#include "shoal/wire.h"

#define PEER_CONN_READ_CHUNK 65536
#define PEER_CONN_ADDR_MAX 64
/* Largest frame we encode ourselves apart from PIECE data and BITFIELD. */
#define PEER_CONN_SMALL_FRAME_MAX 512

/* XX(name, log name) */
#define PEER_CONN_STATE_MAP(XX)                                                                    \
    XX(CONNECTING, "connecting")                                                                   \
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
};

struct inflight; /* peer_conn.c */
struct answer;   /* peer_serve.c */

struct peer_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* handshake, idle, keepalive and request deadlines */
    uv_connect_t creq;
    uv_fs_t fs;
    uv_loop_t *loop;
    enum peer_conn_state state;
    uint64_t id; /* for logs */
    bool initiator;
    bool owned; /* ops are ours to call; on_close will fire */
    bool reading;
    bool fs_busy;       /* a piece read is in the thread pool */
    bool piece_writing; /* a PIECE write is queued in libuv */
    int handles;        /* handles not yet closed */
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

    struct inflight *inflight; /* set.max_inflight slots */
    unsigned ninflight;
    uint8_t *cancelled; /* bitset: cancelled by us, a late PIECE may still come */
    uint8_t *peer_req;  /* bitset: requested by the peer, not answered yet */

    struct answer *aq_head, **aq_tail;
    struct answer *cur; /* being read from disk */
    uint8_t *cur_buf;
    uint32_t cur_done;
    /* A sent piece's buffer, kept for the next answer while answers are
     * queued (a fresh multi-MiB buffer per piece costs page faults). */
    uint8_t *spare;
    size_t spare_len;

    struct peer_listener *listener; /* until the lookup took the connection */
    struct peer_conn *lprev, *lnext;

    char addr[PEER_CONN_ADDR_MAX];
    uint8_t rbuf[PEER_CONN_READ_CHUNK];
};

/* ---- peer_conn.c ---- */

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
void peer_conn_on_handle_closed(uv_handle_t *h);
int peer_conn_start_reading(struct peer_conn *c);
/* Queues the frame in b (taken: b is empty afterwards) followed by piece
 * (taken, may be NULL) of piece_len bytes. */
int peer_conn_send_buf(struct peer_conn *c, struct buf *b, uint8_t *piece, size_t piece_len);

/* ---- peer_listener.c ---- */

/* An incoming connection's HELLO named digest: ask the listener's owner. */
int peer_conn_adopt(struct peer_conn *c, const char *digest);
/* c's last handle closed while the listener still held it. */
void peer_conn_listener_forget(struct peer_conn *c);

/* ---- peer_serve.c ---- */

/* Starts reading the next queued answer unless one is being read or sent. */
void peer_conn_pump(struct peer_conn *c);
/* The peer cancelled its REQUEST for index. */
void peer_conn_on_cancel_frame(struct peer_conn *c, uint32_t index);
/* True if the peer's request for index is still outstanding or its answer
 * has not started going out. */
bool peer_conn_answer_pending(const struct peer_conn *c, uint32_t index);
void peer_conn_answers_free(struct peer_conn *c);

/* Shared by peer_conn.c (lifetime, writing, timers) and peer_recv.c (reading
 * and dispatching frames). */
const char *peer_conn_state_name(enum peer_conn_state s);
void peer_conn_set_state(struct peer_conn *c, enum peer_conn_state s);
/* The error a peer's ERROR frame code stands for. */
int peer_conn_reason_for(unsigned code);
int peer_conn_send_hello(struct peer_conn *c);
int peer_conn_send_auth(struct peer_conn *c);
/* (Re)arms the connection's timer for its next deadline. */
void peer_conn_arm(struct peer_conn *c);
/* The inflight slot of our request for index, or -1. */
int peer_conn_inflight_find(const struct peer_conn *c, uint32_t index);
void peer_conn_inflight_remove(struct peer_conn *c, unsigned i);

#endif
