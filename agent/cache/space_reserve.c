/* The space reservation in stretches. See space_reserve.h for the contract. */
#define _GNU_SOURCE
#include "cache/space_reserve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cache/store.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/oci.h"

#define COMP "partial"
#define STRETCH (8u << 20)

struct space_reserve {
    uv_work_t work;
    uv_loop_t *loop;
    struct space_reserve **slot; /* the owner's pointer to us; NULL once detached */
    int fd;
    uint64_t size, off, len; /* the blob, and the stretch in the pool */
    bool restart;            /* the file was truncated: from 0 again */
    int rc;
    char digest[sizeof(((struct oci_digest *)0)->str)];
};

static void work(uv_work_t *w)
{
    struct space_reserve *r = w->data;
    r->rc = store_reserve_blocks(r->fd, r->off, r->len);
}

static void end(struct space_reserve *r)
{
    if (r->slot)
        *r->slot = NULL;
    close(r->fd);
    free(r);
}

static void after(uv_work_t *w, int status)
{
    struct space_reserve *r = w->data;
    if (status == 0 && r->rc < 0) {
        LOG(WARN, COMP,
            "digest=%s space not reserved err=%s: a disk that fills before the download ends "
            "stops it",
            r->digest, shoal_errname(r->rc));
        end(r);
        return;
    }
    r->off = r->restart ? 0 : r->off + r->len;
    r->restart = false;
    if (status != 0 || !r->slot || r->off >= r->size) {
        end(r);
        return;
    }
    r->len = r->size - r->off < STRETCH ? r->size - r->off : STRETCH;
    if (uv_queue_work(r->loop, &r->work, work, after) < 0)
        end(r);
}

int space_reserve_start(uv_loop_t *loop, int fd, uint64_t size, const char *digest,
                        struct space_reserve **slot)
{
    struct space_reserve *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (r->fd < 0) {
        int rc = -errno;
        free(r);
        return rc;
    }
    r->loop = loop;
    r->size = size;
    r->len = size < STRETCH ? size : STRETCH;
    snprintf(r->digest, sizeof(r->digest), "%s", digest);
    r->work.data = r;
    int rc = uv_queue_work(loop, &r->work, work, after);
    if (rc < 0) {
        close(r->fd);
        free(r);
        return rc;
    }
    r->slot = slot;
    *slot = r;
    return 0;
}

void space_reserve_restart(struct space_reserve *r)
{
    r->restart = true;
}

void space_reserve_detach(struct space_reserve *r)
{
    if (!r)
        return;
    *r->slot = NULL;
    r->slot = NULL;
    (void)uv_cancel((uv_req_t *)&r->work);
}
