/* Serving pieces (peer_serve.h): the answers to a peer's REQUESTs, queued per
 * connection and sent as PIECE frames one at a time, through the
 * connection's struct peer_serve_io: straight from the owner's file on a
 * plaintext connection, read into a buffer in the thread pool on a TLS one
 * (the bytes must pass through the cipher). */
#define _GNU_SOURCE
#include "peer/peer_serve.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/wire.h"

#define COMP "peer"

/* One answer to a peer REQUEST, waiting for its turn to be read and sent. */
struct peer_answer {
    struct peer_answer *next;
    uint32_t index;
    int fd; /* our dup() of the owner's fd */
    uint64_t off;
    uint32_t len;
    bool dropped; /* cancelled by the peer while being read */
};

static void answer_free(struct peer_answer *a)
{
    if (a->fd >= 0)
        close(a->fd);
    free(a);
}

void peer_serve_init(struct peer_serve *s, uv_loop_t *loop, const struct peer_serve_io *io,
                     void *ctx, uint64_t log_id, const char *log_digest)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->io = io;
    s->ctx = ctx;
    s->log_id = log_id;
    s->log_digest = log_digest;
    s->fs.data = s;
    s->tail = &s->head;
}

int peer_serve_set_pieces(struct peer_serve *s, uint32_t npieces)
{
    free(s->requested);
    s->requested = calloc(1, wire_bitfield_bytes(npieces));
    s->npieces = npieces;
    return s->requested ? 0 : -ENOMEM;
}

void peer_serve_dispose(struct peer_serve *s)
{
    struct peer_answer *a, *next;

    for (a = s->head; a; a = next) {
        next = a->next;
        answer_free(a);
    }
    s->head = NULL;
    s->tail = &s->head;
    if (s->cur)
        answer_free(s->cur);
    s->cur = NULL;
    free(s->cur_buf);
    s->cur_buf = NULL;
    free(s->spare);
    s->spare = NULL;
    free(s->requested);
    s->requested = NULL;
}

void peer_serve_use_files(struct peer_serve *s, bool on)
{
    s->files = on && s->io->send_file != NULL;
}

/* ---- Reading and sending ------------------------------------------------ */

static void on_fs_read(uv_fs_t *req);

static int start_read(struct peer_serve *s)
{
    struct peer_answer *a = s->cur;
    uv_buf_t ub = uv_buf_init((char *)s->cur_buf + s->cur_done, a->len - s->cur_done);
    int rc;

    rc = uv_fs_read(s->loop, &s->fs, a->fd, &ub, 1, (int64_t)(a->off + s->cur_done), on_fs_read);
    if (rc < 0)
        return rc;
    s->reading = true;
    return 0;
}

/* Starts reading the next queued answer unless one is being read or sent:
 * one piece buffer per connection at a time. */
static void pump(struct peer_serve *s)
{
    struct peer_answer *a;
    int rc;

    if (s->stopped || s->reading || s->writing || s->cur || !s->head)
        return;
    a = s->head;
    s->head = a->next;
    if (s->head == NULL)
        s->tail = &s->head;
    a->next = NULL;
    if (s->files) {
        /* Straight from the file: no buffer, nothing to read first. */
        int fd = a->fd;

        a->fd = -1;
        rc = s->io->send_file(s->ctx, a->index, fd, a->off, a->len); /* fd is taken */
        answer_free(a);
        if (rc < 0) {
            s->io->fail(s->ctx, rc);
            return;
        }
        s->writing = true;
        return;
    }
    s->cur = a;
    s->cur_done = 0;
    if (s->spare && s->spare_len >= a->len) {
        s->cur_buf = s->spare;
        s->spare = NULL;
    } else {
        s->cur_buf = malloc(a->len ? a->len : 1);
    }
    if (s->cur_buf == NULL) {
        s->io->fail(s->ctx, -ENOMEM);
        return;
    }
    rc = start_read(s);
    if (rc < 0)
        s->io->fail(s->ctx, rc);
}

static void on_fs_read(uv_fs_t *req)
{
    struct peer_serve *s = req->data;
    struct peer_answer *a = s->cur;
    ssize_t n = req->result;
    uint8_t *data;
    int rc;

    uv_fs_req_cleanup(req);
    s->reading = false;
    if (s->stopped) {
        s->io->settled(s->ctx);
        return;
    }
    if (n > 0 && (size_t)n < (size_t)(a->len - s->cur_done) && !a->dropped) {
        s->cur_done += (uint32_t)n;
        rc = start_read(s);
        if (rc < 0)
            s->io->fail(s->ctx, rc);
        return;
    }
    s->cur = NULL;
    data = s->cur_buf;
    s->cur_buf = NULL;
    if (a->dropped) {
        free(data);
        answer_free(a);
        pump(s);
        return;
    }
    if (n <= 0) {
        rc = n < 0 ? (int)n : -EIO;
        LOG(WARN, COMP, "conn=%" PRIu64 " digest=%s piece=%" PRIu32 " event=read-failed rc=%s",
            s->log_id, s->log_digest, a->index, shoal_errname(rc));
        free(data);
        answer_free(a);
        s->io->fail(s->ctx, rc);
        return;
    }
    rc = s->io->send_piece(s->ctx, a->index, data, a->len); /* data is taken */
    answer_free(a);
    if (rc < 0) {
        s->io->fail(s->ctx, rc);
        return;
    }
    s->writing = true;
}

void peer_serve_recycle(struct peer_serve *s, uint8_t *piece, size_t len)
{
    if (piece && !s->stopped && s->head && !s->spare) {
        s->spare = piece;
        s->spare_len = len;
        return;
    }
    free(piece);
    if (!s->head) { /* idle: hold no piece-sized memory */
        free(s->spare);
        s->spare = NULL;
    }
}

void peer_serve_sent(struct peer_serve *s)
{
    s->writing = false;
    pump(s);
}

bool peer_serve_stop(struct peer_serve *s)
{
    s->stopped = true;
    return s->reading;
}

/* ---- The peer's REQUESTs and CANCELs -------------------------------------- */

/* True if the peer's request for index is still outstanding or its answer
 * has not started going out. */
static bool answer_pending(const struct peer_serve *s, uint32_t index)
{
    const struct peer_answer *a;

    if (wire_bit_get(s->requested, index))
        return true;
    if (s->cur && s->cur->index == index && !s->cur->dropped)
        return true;
    for (a = s->head; a; a = a->next)
        if (a->index == index)
            return true;
    return false;
}

/* Requests asked for and not yet sent: not answered, queued, or being read. */
static unsigned outstanding(const struct peer_serve *s)
{
    unsigned n = wire_bitfield_count(s->requested, s->npieces) + (s->cur ? 1 : 0);
    for (const struct peer_answer *a = s->head; a; a = a->next)
        n++;
    return n;
}

int peer_serve_on_request(struct peer_serve *s, uint32_t index)
{
    if (answer_pending(s, index))
        return SHOAL_EPROTOCOL;
    if (outstanding(s) >= PEER_SERVE_OUTSTANDING_MAX) {
        LOG(WARN, COMP, "conn=%" PRIu64 " digest=%s event=too-many-requests max=%d", s->log_id,
            s->log_digest, PEER_SERVE_OUTSTANDING_MAX);
        return SHOAL_EPROTOCOL;
    }
    wire_bit_set(s->requested, index);
    return 0;
}

bool peer_serve_on_cancel(struct peer_serve *s, uint32_t index)
{
    struct peer_answer **pp, *a;
    bool outstanding = false;

    if (wire_bit_get(s->requested, index)) {
        wire_bit_clear(s->requested, index);
        outstanding = true;
    }
    for (pp = &s->head; (a = *pp) != NULL;) {
        if (a->index == index) {
            *pp = a->next;
            answer_free(a);
            outstanding = true;
            continue;
        }
        pp = &a->next;
    }
    s->tail = &s->head;
    while (*s->tail)
        s->tail = &(*s->tail)->next;
    if (s->cur && s->cur->index == index && !s->cur->dropped) {
        s->cur->dropped = true;
        outstanding = true;
    }
    return outstanding;
}

int peer_serve_answer(struct peer_serve *s, uint32_t index, int fd, uint64_t off, uint32_t len)
{
    struct peer_answer *a;

    if (!wire_bit_get(s->requested, index))
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
    wire_bit_clear(s->requested, index);
    *s->tail = a;
    s->tail = &a->next;
    pump(s);
    return 0;
}
