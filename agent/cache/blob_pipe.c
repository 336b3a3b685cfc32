/* The data path of one blob download. See blob_pipe.h. */
#include "cache/blob_pipe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal/error.h"

#define CHUNK_SIZE (1024 * 1024)
/* Chunks that may wait for the writer or the hasher before the producer is
 * asked to pause: bounds the memory of one download to ~8 MiB. */
#define MAX_CHUNKS 8

struct blob_chunk {
    struct blob_chunk *next;
    uint64_t off;
    size_t len;
    char data[];
};

void blob_pipe_init(struct blob_pipe *p, uv_loop_t *loop, int fd, struct hash_ctx *hash,
                    uint64_t start, blob_pipe_progress_fn on_progress, void *arg)
{
    memset(p, 0, sizeof(*p));
    p->loop = loop;
    p->fd = fd;
    p->hash = hash;
    p->received = p->written = p->hashed = start;
    p->on_progress = on_progress;
    p->arg = arg;
}

/* Chunks are recycled: a fresh 1 MiB allocation is an mmap whose pages the
 * kernel must fault in and zero, which costs as much as the copy itself. */
static struct blob_chunk *chunk_get(struct blob_pipe *p)
{
    struct blob_chunk *c = p->spare;
    if (c)
        p->spare = c->next;
    else
        c = malloc(sizeof(*c) + CHUNK_SIZE);
    if (c) {
        c->next = NULL;
        c->len = 0;
        c->off = p->received;
    }
    return c;
}

static void kick(struct blob_pipe *p);

static void append(struct blob_pipe *p, struct blob_chunk *c)
{
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    if (!p->wnext)
        p->wnext = c;
    if (!p->hnext)
        p->hnext = c;
    p->nchunks++;
}

/* Recycles chunks that are both on disk and hashed. */
static void pop_done(struct blob_pipe *p)
{
    while (p->head && p->head != p->wnext && p->head != p->hnext) {
        struct blob_chunk *c = p->head;
        p->head = c->next;
        if (!p->head)
            p->tail = NULL;
        p->nchunks--;
        c->next = p->spare;
        p->spare = c;
    }
}

static void write_work(uv_work_t *w)
{
    struct blob_pipe *p = w->data;
    struct blob_chunk *c = p->wnext;
    size_t done = 0;
    while (done < c->len) {
        ssize_t n = pwrite(p->fd, c->data + done, c->len - done, (off_t)(c->off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            p->io_rc = (errno == ENOSPC || errno == EDQUOT) ? SHOAL_ENOSPACE : -errno;
            return;
        }
        done += (size_t)n;
    }
}

static void write_after(uv_work_t *w, int status)
{
    struct blob_pipe *p = w->data;
    p->writing = false;
    if (status == UV_ECANCELED && !p->io_rc)
        p->io_rc = SHOAL_ECANCELED;
    if (!p->io_rc) {
        p->written = p->wnext->off + p->wnext->len;
        p->wnext = p->wnext->next;
    }
    pop_done(p);
    kick(p);
    p->on_progress(p, p->arg);
}

static void hash_work(uv_work_t *w)
{
    struct blob_pipe *p = w->data;
    hash_update(p->hash, p->hnext->data, p->hnext->len);
}

static void hash_after(uv_work_t *w, int status)
{
    struct blob_pipe *p = w->data;
    p->hashing = false;
    if (status == UV_ECANCELED) {
        if (!p->io_rc)
            p->io_rc = SHOAL_ECANCELED;
    } else {
        p->hashed = p->hnext->off + p->hnext->len;
        p->hnext = p->hnext->next;
    }
    pop_done(p);
    kick(p);
    p->on_progress(p, p->arg);
}

static void kick(struct blob_pipe *p)
{
    /* After a write error nothing is written; the hasher stops too, since
     * the download is lost anyway. */
    if (p->io_rc)
        return;
    if (!p->writing && p->wnext) {
        p->writing = true;
        p->wwork.data = p;
        int rc = uv_queue_work(p->loop, &p->wwork, write_work, write_after);
        if (rc < 0) {
            p->writing = false;
            p->io_rc = rc;
        }
    }
    if (!p->hashing && p->hnext && !p->io_rc) {
        p->hashing = true;
        p->hwork.data = p;
        int rc = uv_queue_work(p->loop, &p->hwork, hash_work, hash_after);
        if (rc < 0) {
            p->hashing = false;
            p->io_rc = rc;
        }
    }
}

int blob_pipe_push(struct blob_pipe *p, const char *data, size_t len)
{
    while (len > 0) {
        if (!p->fill && !(p->fill = chunk_get(p)))
            return -ENOMEM;
        size_t room = CHUNK_SIZE - p->fill->len;
        size_t n = len < room ? len : room;
        memcpy(p->fill->data + p->fill->len, data, n);
        p->fill->len += n;
        p->received += n;
        data += n;
        len -= n;
        if (p->fill->len == CHUNK_SIZE) {
            append(p, p->fill);
            p->fill = NULL;
        }
    }
    kick(p);
    return 0;
}

void blob_pipe_flush(struct blob_pipe *p)
{
    if (p->fill && p->fill->len > 0) {
        append(p, p->fill);
        p->fill = NULL;
    }
    kick(p);
}

bool blob_pipe_full(const struct blob_pipe *p)
{
    return p->nchunks >= MAX_CHUNKS;
}

bool blob_pipe_busy(const struct blob_pipe *p)
{
    return p->writing || p->hashing;
}

bool blob_pipe_drained(const struct blob_pipe *p)
{
    if (blob_pipe_busy(p))
        return false;
    if (p->io_rc)
        return true;
    return !p->wnext && !p->hnext && (!p->fill || p->fill->len == 0);
}

void blob_pipe_restart(struct blob_pipe *p, uint64_t off)
{
    p->received = p->written = p->hashed = off;
    if (p->fill)
        p->fill->off = off;
}

static const struct blob_chunk *find_chunk(const struct blob_pipe *p, uint64_t off)
{
    for (const struct blob_chunk *c = p->head; c; c = c->next)
        if (off >= c->off && off < c->off + c->len)
            return c;
    if (p->fill && off >= p->fill->off && off < p->fill->off + p->fill->len)
        return p->fill;
    return NULL;
}

int blob_pipe_segment(const struct blob_pipe *p, int rfd, uint64_t off, uint64_t end,
                      struct blob_segment *seg)
{
    if (off >= end || off >= p->received)
        return SHOAL_ENOT_FOUND;
    if (off < p->written) {
        uint64_t stop = end < p->written ? end : p->written;
        *seg = (struct blob_segment){.fd = rfd, .off = off, .len = (size_t)(stop - off)};
        return 0;
    }
    const struct blob_chunk *c = find_chunk(p, off);
    if (!c)
        return SHOAL_ENOT_FOUND;
    uint64_t stop = c->off + c->len < end ? c->off + c->len : end;
    *seg = (struct blob_segment){
        .fd = -1, .data = c->data + (off - c->off), .len = (size_t)(stop - off)};
    return 0;
}

void blob_pipe_dispose(struct blob_pipe *p)
{
    struct blob_chunk *lists[] = {p->head, p->spare};
    for (size_t i = 0; i < 2; i++) {
        struct blob_chunk *c = lists[i];
        while (c) {
            struct blob_chunk *next = c->next;
            free(c);
            c = next;
        }
    }
    free(p->fill);
    p->head = p->tail = p->wnext = p->hnext = p->fill = p->spare = NULL;
    p->nchunks = 0;
}
