/* The peer listener: accepts incoming connections, keeps them until their
 * HELLO names a blob, then hands them to the owner's lookup. Part of the
 * peer_conn module (see peer_conn.h), on top of peer_conn.c: a connection it
 * accepts reaches it only through the adopter hooks it is given. */
#define _GNU_SOURCE
#include "peer/peer_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "peer/peer_conn_internal.h"

#define COMP "peer"

#define LISTEN_BACKLOG 128
/* Accepted connections that have not sent their HELLO yet; beyond this an
 * incoming connection is refused with ERROR busy. */
#define PENDING_MAX 256

struct peer_listener {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    struct peer_conn_settings set;
    int (*lookup)(struct peer_conn *c, const char *digest, struct peer_conn_blob *out, void *arg);
    void *lookup_arg;
    struct peer_conn *pending; /* accepted, not owned yet */
    unsigned npending;
    int port;
    bool destroying, closed;
    void (*destroy_cb)(void *arg);
    void *destroy_arg;
};

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        uv_ip6_name(sin6, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        uv_ip4_name(sin, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
    } else {
        snprintf(out, outlen, "?");
    }
}

static void listener_unlink(struct peer_conn *c)
{
    struct peer_listener *l = c->listener;

    if (l == NULL)
        return;
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        l->pending = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    c->lprev = c->lnext = NULL;
    c->listener = NULL;
    c->adopter = NULL;
    l->npending--;
}

static void listener_maybe_done(struct peer_listener *l)
{
    void (*cb)(void *);
    void *arg;

    if (!l->destroying || !l->closed || l->npending > 0)
        return;
    cb = l->destroy_cb;
    arg = l->destroy_arg;
    peer_conn_settings_dispose(&l->set);
    free(l);
    if (cb)
        cb(arg);
}

/* c's last handle closed while the listener still held it. */
static void forget(struct peer_conn *c)
{
    struct peer_listener *l = c->listener;

    listener_unlink(c);
    listener_maybe_done(l);
}

/* An incoming connection's HELLO named digest: ask the listener's owner. On 0
 * the connection is owned; on error the caller closes it with the reason
 * (which picks the ERROR code sent). The lookup may close c itself. */
static int adopt(struct peer_conn *c, const char *digest)
{
    struct peer_listener *l = c->listener;
    struct peer_conn_blob blob;
    int rc;

    memset(&blob, 0, sizeof(blob));
    rc = l->lookup(c, digest, &blob, l->lookup_arg);
    /* The owner believes it took c, so it must hear on_close even if c was
     * closed meanwhile or what it returned is unusable. */
    if (rc == 0 && blob.ops) {
        c->ops = blob.ops;
        c->arg = blob.arg;
        c->owned = true;
    }
    if (c->state == PEER_CONN_CLOSING)
        return 0;
    if (rc < 0) {
        LOG(INFO, COMP, "conn=%" PRIu64 " addr=%s digest=%s event=refused rc=%s", c->id, c->addr,
            digest, shoal_errname(rc));
        return rc == SHOAL_EBUSY ? SHOAL_EBUSY : SHOAL_ENOT_FOUND;
    }
    listener_unlink(c);
    if (peer_conn_blob_check(&blob) < 0 || strcmp(blob.digest, digest) != 0) {
        LOG(ERROR, COMP, "conn=%" PRIu64 " digest=%s event=bad-lookup-blob", c->id, digest);
        return -EINVAL;
    }
    return peer_conn_blob_set(c, &blob);
}

static const struct peer_conn_adopter adopter = {
    .adopt = adopt,
    .forget = forget,
};

static void on_listener_closed(uv_handle_t *h)
{
    struct peer_listener *l = h->data;

    l->closed = true;
    listener_maybe_done(l);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_incoming(uv_stream_t *server, int status)
{
    struct peer_listener *l = server->data;
    struct sockaddr_storage ss;
    struct peer_conn_settings set;
    struct peer_conn *c;
    int rc, sl = sizeof(ss);

    if (status < 0) {
        LOG(WARN, COMP, "event=accept-failed rc=%s", shoal_errname(status));
        return;
    }
    rc = peer_conn_settings_copy(&set, &l->set);
    if (rc == 0)
        rc = peer_conn_new(l->loop, &set, false, &c);
    peer_conn_settings_dispose(&set);
    if (rc < 0) {
        /* The connection must still leave the backlog, or libuv stops
         * accepting. */
        uv_tcp_t *tmp = malloc(sizeof(*tmp));

        LOG(WARN, COMP, "event=accept-failed rc=%s", shoal_errname(rc));
        if (tmp == NULL || uv_tcp_init(l->loop, tmp) < 0) {
            free(tmp);
            return;
        }
        (void)uv_accept(server, (uv_stream_t *)tmp);
        uv_close((uv_handle_t *)tmp, free_handle);
        return;
    }
    c->listener = l;
    c->adopter = &adopter;
    c->lnext = l->pending;
    if (l->pending)
        l->pending->lprev = c;
    l->pending = c;
    l->npending++;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc == 0 && uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0)
        format_addr(&ss, c->addr, sizeof(c->addr));
    if (rc == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        rc = peer_conn_start_reading(c);
    }
    if (rc < 0) {
        peer_conn_teardown(c, rc, false);
        return;
    }
    LOG(DEBUG, COMP, "conn=%" PRIu64 " addr=%s event=accept", c->id, c->addr);
    if (l->npending > PENDING_MAX)
        peer_conn_teardown(c, SHOAL_EBUSY, true);
}

int peer_listener_create(uv_loop_t *loop, const struct peer_conn_config *cfg,
                         const char *listen_addr,
                         int (*lookup)(struct peer_conn *c, const char *digest,
                                       struct peer_conn_blob *out, void *arg),
                         void *lookup_arg, struct peer_listener **out)
{
    struct sockaddr_storage ss;
    struct peer_listener *l = NULL;
    int rc, sl = sizeof(ss);

    if (lookup == NULL)
        return -EINVAL;
    rc = peer_conn_parse_addr(listen_addr, true, &ss);
    if (rc < 0)
        return rc;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    rc = peer_conn_settings_from_config(&l->set, cfg);
    if (rc < 0) {
        peer_conn_settings_dispose(&l->set);
        free(l);
        return rc;
    }
    rc = uv_tcp_init(loop, &l->tcp);
    if (rc < 0) {
        peer_conn_settings_dispose(&l->set);
        free(l);
        return rc;
    }
    l->tcp.data = l;
    l->loop = loop;
    l->lookup = lookup;
    l->lookup_arg = lookup_arg;
    rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_incoming);
    if (rc == 0)
        rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &sl);
    if (rc < 0) {
        /* Freed from the close callback with no destroy callback to run. */
        l->destroying = true;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return rc;
    }
    l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    LOG(INFO, COMP, "event=listen addr=%s port=%d", listen_addr, l->port);
    *out = l;
    return 0;
}

int peer_listener_port(const struct peer_listener *l)
{
    return l->port;
}

void peer_listener_destroy(struct peer_listener *l, void (*cb)(void *arg), void *arg)
{
    struct peer_conn *c;

    if (l->destroying)
        return;
    l->destroying = true;
    l->destroy_cb = cb;
    l->destroy_arg = arg;
    for (c = l->pending; c; c = c->lnext)
        peer_conn_teardown(c, SHOAL_ECANCELED, true);
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}
