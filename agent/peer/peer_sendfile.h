/* Sending a range of a file on a connection's socket with sendfile(2): the
 * bytes go from the page cache to the socket with no copy through user space
 * and no piece-sized buffer.
 *
 * Private to the peer_conn module (peer_conn_internal.h lists its files).
 * The socket belongs to the connection's uv_tcp_t, which keeps it
 * non-blocking and reads from it; when the socket is full, a uv_poll_t on a
 * dup() of it waits for room (libuv lets one handle watch one descriptor,
 * and the TCP handle watches the socket's own). The connection hears back
 * only through the done callback it gave, never by a call into peer_conn.c.
 */
#ifndef SHOAL_PEER_SENDFILE_H
#define SHOAL_PEER_SENDFILE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct peer_sendfile {
    uv_loop_t *loop;
    uv_poll_t poll;
    bool poll_init; /* poll (and pfd) exist */
    bool polling;
    int pfd;  /* dup() of sock for poll, -1 until the socket is first full */
    int sock; /* the connection's socket, borrowed */
    int fd;   /* the file being sent (owned), -1 when none is */
    uint64_t off, left;
    /* The rest of a range that did not go at once has gone (rc 0), or the
     * send failed (a negative errno, -EIO for a file shorter than the
     * range). */
    void (*done)(void *ctx, int rc);
    void *ctx;
    uv_close_cb closed; /* the caller's, once poll has closed */
};

void peer_sendfile_init(struct peer_sendfile *f, uv_loop_t *loop, void (*done)(void *ctx, int rc),
                        void *ctx);

/* Sends len bytes of fd (taken: closed once sent or on failure) from off on
 * sock. 1 when all of it went now (done is not called), 0 when the rest goes
 * as the socket drains (done follows, never from inside this call), or a
 * negative errno. One range at a time. */
int peer_sendfile_start(struct peer_sendfile *f, int sock, int fd, uint64_t off, uint64_t len);

/* The connection is closing: drops the range being sent and closes the poll
 * handle. True when a handle close is pending: cb then runs with a handle
 * whose data is cb_data. done is not called. */
bool peer_sendfile_close(struct peer_sendfile *f, uv_close_cb cb, void *cb_data);

#endif
