/* Sending a file range on a peer socket with sendfile(2): see peer_sendfile.h. */
#define _GNU_SOURCE
#include "peer/peer_sendfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/sendfile.h>
#include <unistd.h>

/* Bytes per sendfile call: the socket takes what fits anyway; this only
 * bounds one call's time on the loop thread. */
#define SENDFILE_CALL_MAX (4u << 20)

static struct peer_sendfile *of_poll(uv_poll_t *p)
{
    return (struct peer_sendfile *)((char *)p - offsetof(struct peer_sendfile, poll));
}

void peer_sendfile_init(struct peer_sendfile *f, uv_loop_t *loop, void (*done)(void *ctx, int rc),
                        void *ctx)
{
    f->loop = loop;
    f->poll_init = false;
    f->polling = false;
    f->pfd = -1;
    f->sock = -1;
    f->fd = -1;
    f->off = 0;
    f->left = 0;
    f->done = done;
    f->ctx = ctx;
    f->closed = NULL;
}

/* Sends until the range is out (1), the socket is full (0) or an error. The
 * process ignores SIGPIPE (sendfile has no MSG_NOSIGNAL): a vanished peer is
 * an EPIPE here. */
static int push(struct peer_sendfile *f)
{
    while (f->left > 0) {
        off_t off = (off_t)f->off;
        size_t want = f->left > SENDFILE_CALL_MAX ? SENDFILE_CALL_MAX : (size_t)f->left;
        ssize_t n = sendfile(f->sock, f->fd, &off, want);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* the file is shorter than the range */
        f->off += (uint64_t)n;
        f->left -= (uint64_t)n;
    }
    return 1;
}

static void finish(struct peer_sendfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->left = 0;
    if (f->polling) {
        uv_poll_stop(&f->poll);
        f->polling = false;
    }
}

static void on_writable(uv_poll_t *p, int status, int events)
{
    struct peer_sendfile *f = of_poll(p);
    int rc;

    (void)events;
    if (f->fd < 0) {
        finish(f);
        return;
    }
    rc = status < 0 ? status : push(f);
    if (rc == 0)
        return; /* full again: keep waiting */
    finish(f);
    f->done(f->ctx, rc < 0 ? rc : 0);
}

static int wait_writable(struct peer_sendfile *f)
{
    int rc;

    if (!f->poll_init) {
        f->pfd = fcntl(f->sock, F_DUPFD_CLOEXEC, 0);
        if (f->pfd < 0)
            return -errno;
        rc = uv_poll_init(f->loop, &f->poll, f->pfd);
        if (rc < 0) {
            close(f->pfd);
            f->pfd = -1;
            return rc;
        }
        f->poll_init = true;
    }
    if (!f->polling) {
        rc = uv_poll_start(&f->poll, UV_WRITABLE, on_writable);
        if (rc < 0)
            return rc;
        f->polling = true;
    }
    return 0;
}

int peer_sendfile_start(struct peer_sendfile *f, int sock, int fd, uint64_t off, uint64_t len)
{
    int rc;

    if (f->fd >= 0) {
        close(fd);
        return -EBUSY;
    }
    f->sock = sock;
    f->fd = fd;
    f->off = off;
    f->left = len;
    rc = push(f);
    if (rc == 0)
        rc = wait_writable(f);
    else if (rc == 1) {
        finish(f);
        return 1;
    }
    if (rc < 0) {
        finish(f);
        return rc;
    }
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    struct peer_sendfile *f = of_poll((uv_poll_t *)h);

    close(f->pfd);
    f->pfd = -1;
    f->poll_init = false;
    if (f->closed)
        f->closed(h);
}

bool peer_sendfile_close(struct peer_sendfile *f, uv_close_cb cb, void *cb_data)
{
    finish(f);
    if (!f->poll_init)
        return false;
    f->closed = cb;
    f->poll.data = cb_data;
    uv_close((uv_handle_t *)&f->poll, on_poll_closed);
    return true;
}
