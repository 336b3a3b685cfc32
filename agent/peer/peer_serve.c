/* Serving pieces: the answers to a peer's REQUESTs, queued per connection,
 * read from the owner's file in the thread pool and sent as PIECE frames one
 * at a time. Part of the peer_conn module (see peer_conn.h). */
#define _GNU_SOURCE
#include "peer/peer_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "peer/peer_conn_internal.h"

#define COMP "peer"

/* One answer to a peer REQUEST, waiting for its turn to be read and sent. */
struct answer {
    struct answer *next;
    uint32_t index;
    int fd; /* our dup() of the owner's fd */
    uint64_t off;
    uint32_t len;
    bool dropped; /* cancelled by the peer while being read */
};

static void answer_free(struct answer *a)
{
    if (a->fd >= 0)
        close(a->fd);
    free(a);
}

/* Frees the queued answers and the one being read, as c is freed. */
void peer_conn_answers_free(struct peer_conn *c)
{
    struct answer *a, *next;

    for (a = c->aq_head; a; a = next) {
        next = a->next;
        answer_free(a);
    }
    if (c->cur)
        answer_free(c->cur);
    free(c->cur_buf);
    free(c->spare);
    c->spare = NULL;
}

/* ---- Serving pieces ----------------------------------------------------- */

static void on_fs_read(uv_fs_t *req);

static int start_read(struct peer_conn *c)
{
    struct answer *a = c->cur;
    uv_buf_t ub = uv_buf_init((char *)c->cur_buf + c->cur_done, a->len - c->cur_done);
    int rc;

    rc = uv_fs_read(c->loop, &c->fs, a->fd, &ub, 1, (int64_t)(a->off + c->cur_done), on_fs_read);
    if (rc < 0)
        return rc;
    c->fs_busy = true;
    return 0;
}

/* Starts reading the next queued answer unless one is being read or sent:
 * one piece buffer per connection at a time. */
void peer_conn_pump(struct peer_conn *c)
{
    struct answer *a;
    int rc;

    if (c->state != PEER_CONN_READY || c->fs_busy || c->piece_writing || c->cur || !c->aq_head)
        return;
    a = c->aq_head;
    c->aq_head = a->next;
    if (c->aq_head == NULL)
        c->aq_tail = &c->aq_head;
    a->next = NULL;
    c->cur = a;
    c->cur_done = 0;
    if (c->spare && c->spare_len >= a->len) {
        c->cur_buf = c->spare;
        c->spare = NULL;
    } else {
        c->cur_buf = malloc(a->len ? a->len : 1);
    }
    if (c->cur_buf == NULL) {
        peer_conn_teardown(c, -ENOMEM, false);
        return;
    }
    rc = start_read(c);
    if (rc < 0)
        peer_conn_teardown(c, rc, false);
}

static void on_fs_read(uv_fs_t *req)
{
    struct peer_conn *c = req->data;
    struct answer *a = c->cur;
    ssize_t n = req->result;
    uint8_t *data;
    struct buf b;
    int rc;

    uv_fs_req_cleanup(req);
    c->fs_busy = false;
    if (c->state == PEER_CONN_CLOSING) {
        /* peer_conn_teardown left the TCP handle open for us. */
        uv_close((uv_handle_t *)&c->tcp, peer_conn_on_handle_closed);
        return;
    }
    if (n > 0 && (size_t)n < (size_t)(a->len - c->cur_done) && !a->dropped) {
        c->cur_done += (uint32_t)n;
        rc = start_read(c);
        if (rc < 0)
            peer_conn_teardown(c, rc, false);
        return;
    }
    c->cur = NULL;
    data = c->cur_buf;
    c->cur_buf = NULL;
    if (a->dropped) {
        free(data);
        answer_free(a);
        peer_conn_pump(c);
        return;
    }
    if (n <= 0) {
        rc = n < 0 ? (int)n : -EIO;
        LOG(WARN, COMP, "conn=%" PRIu64 " digest=%s piece=%" PRIu32 " event=read-failed rc=%s",
            c->id, c->digest, a->index, shoal_errname(rc));
        free(data);
        answer_free(a);
        peer_conn_teardown(c, rc, false);
        return;
    }
    buf_init(&b, PEER_CONN_SMALL_FRAME_MAX);
    rc = wire_encode_piece_header(&b, a->index, a->len);
    if (rc == 0) {
        rc = peer_conn_send_buf(c, &b, data, a->len);
        data = NULL; /* taken by peer_conn_send_buf */
    } else {
        buf_dispose(&b);
    }
    free(data);
    answer_free(a);
    if (rc < 0) {
        peer_conn_teardown(c, rc, false);
        return;
    }
    c->piece_writing = true;
}

/* ---- Peer CANCEL and REQUEST checks ------------------------------------- */

void peer_conn_on_cancel_frame(struct peer_conn *c, uint32_t index)
{
    struct answer **pp, *a;
    bool outstanding = false;

    if (wire_bit_get(c->peer_req, index)) {
        wire_bit_clear(c->peer_req, index);
        outstanding = true;
    }
    for (pp = &c->aq_head; (a = *pp) != NULL;) {
        if (a->index == index) {
            *pp = a->next;
            answer_free(a);
            outstanding = true;
            continue;
        }
        pp = &a->next;
    }
    c->aq_tail = &c->aq_head;
    while (*c->aq_tail)
        c->aq_tail = &(*c->aq_tail)->next;
    if (c->cur && c->cur->index == index && !c->cur->dropped) {
        c->cur->dropped = true;
        outstanding = true;
    }
    if (outstanding && c->ops->on_cancel)
        c->ops->on_cancel(c, index, c->arg);
}

/* True if the peer's request for index is still outstanding or its answer
 * has not started going out: asking again for it is a protocol error. */
bool peer_conn_answer_pending(const struct peer_conn *c, uint32_t index)
{
    const struct answer *a;

    if (wire_bit_get(c->peer_req, index))
        return true;
    if (c->cur && c->cur->index == index && !c->cur->dropped)
        return true;
    for (a = c->aq_head; a; a = a->next)
        if (a->index == index)
            return true;
    return false;
}

/* ---- Queueing answers ---------------------------------------------------- */

int peer_conn_send_piece(struct peer_conn *c, uint32_t index, int fd, uint64_t off, uint32_t len)
{
    struct answer *a;

    if (c->state != PEER_CONN_READY)
        return -ENOTCONN;
    if (index >= c->npieces || len != wire_piece_size(c->size, c->piece_length, index) || fd < 0 ||
        off > (uint64_t)INT64_MAX - len)
        return -EINVAL;
    if (!wire_bit_get(c->peer_req, index))
        return SHOAL_ECANCELED;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (a->fd < 0) {
        int rc = -errno;

        free(a);
        return rc;
    }
    a->index = index;
    a->off = off;
    a->len = len;
    wire_bit_clear(c->peer_req, index);
    *c->aq_tail = a;
    c->aq_tail = &a->next;
    peer_conn_pump(c);
    return 0;
}
