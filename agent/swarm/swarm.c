/* Peer-to-peer downloads. See swarm.h and docs/protocol.md. */
#include "swarm/swarm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "swarm/swarm_internal.h"

/* --- life cycle of a download --- */

void swarm_dl_maybe_free(struct swarm_dl *dl);
static void kick_hasher(struct swarm_dl *dl);
static void announce(struct swarm_dl *dl);
static void lease_next(struct swarm_dl *dl);

void swarm_dl_end(struct swarm_dl *dl, int rc)
{
    if (dl->ended)
        return;
    dl->ended = true;
    if (rc < 0) {
        dl->s->stats.fallbacks++;
        LOG(WARN, COMP,
            "digest=%s giving up on the swarm err=%s hashed=%" PRIu64 "; falling back to upstream",
            dl->d.str, shoal_errname(rc), dl->hashed);
    }
    dl->ops.on_end(dl->arg, rc);
}

static void timer_closed(uv_handle_t *h)
{
    struct swarm_dl *dl = h->data;
    dl->timer_closed = true;
    swarm_dl_maybe_free(dl);
}

static void dl_unlink(struct swarm_dl *dl)
{
    struct swarm_dl **pp = &dl->s->dls;
    while (*pp && *pp != dl)
        pp = &(*pp)->next;
    if (*pp)
        *pp = dl->next;
}

static void swarm_maybe_free(struct swarm *s)
{
    if (!s->closing || s->dls || s->listener)
        return;
    if (s->secret)
        OPENSSL_cleanse(s->secret, s->cfg.secret_len);
    free(s->secret);
    free(s);
}

void swarm_dl_maybe_free(struct swarm_dl *dl)
{
    if (dl->state != DL_DONE || dl->areq || dl->lreq || dl->hashing || dl->peers ||
        !dl->timer_closed)
        return;
    struct swarm *s = dl->s;
    dl_unlink(dl);
    dl->s->stats.swarms_active--;
    if (dl->fd >= 0)
        close(dl->fd);
    if (dl->seed_fd >= 0)
        close(dl->seed_fd);
    piece_picker_destroy(dl->pp);
    upstream_def_dispose(&dl->def);
    free(dl->repo);
    free(dl->hashes);
    free(dl->have);
    free(dl->hbuf);
    free(dl->pend);
    free(dl->failed);
    free(dl->lease);
    free(dl->lbuf);
    free(dl);
    swarm_maybe_free(s);
}

/* Stops everything and frees the download once its handles are closed. */
static void dl_close(struct swarm_dl *dl)
{
    if (dl->state == DL_DONE)
        return;
    dl->state = DL_DONE;
    if (dl->areq)
        http_client_cancel(dl->areq);
    if (dl->lreq)
        upstream_req_cancel(dl->lreq);
    for (struct dl_peer *p = dl->peers; p; p = p->next)
        peer_conn_close(p->c, 0);
    if (!uv_is_closing((uv_handle_t *)&dl->timer))
        uv_close((uv_handle_t *)&dl->timer, timer_closed);
}

/* --- pieces --- */

void swarm_cancel_cb(void *peer, uint32_t index, void *arg)
{
    struct dl_peer *p = peer;
    if (p->c && p->ready)
        peer_conn_cancel(p->c, index);
}

int swarm_write_piece(struct swarm_dl *dl, uint32_t index, const uint8_t *data, size_t len)
{
    uint64_t off = wire_piece_offset(dl->plen, index);
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(dl->fd, data + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == ENOSPC ? SHOAL_ENOSPACE : -errno;
        }
        done += (size_t)n;
    }
    return 0;
}

/* We hold index, verified and on disk. */
void swarm_piece_done(struct swarm_dl *dl, uint32_t index)
{
    if (wire_bit_get(dl->have, index))
        return;
    wire_bit_set(dl->have, index);
    dl->nhave++;
    if (dl->nhave == dl->npieces)
        LOG(INFO, COMP, "digest=%s all pieces held; whole-blob hash at %" PRIu64 " of %" PRIu64,
            dl->d.str, dl->hashed, dl->size);
    dl->last_progress = now_ms(dl->s);
    piece_picker_mark_have(dl->pp, index, swarm_cancel_cb, dl);
    for (struct dl_peer *p = dl->peers; p; p = p->next)
        if (p->ready)
            peer_conn_send_have(p->c, index);
    kick_hasher(dl);
}

/* Hashes the next stretch of the verified prefix, in the thread pool. The
 * stretch is mapped rather than read so SHA-256 reads the page cache in
 * place (one pass over the bytes instead of a copy and a pass); pread into
 * hbuf is the fallback where mapping fails. */
static void hash_work(uv_work_t *w)
{
    struct swarm_dl *dl = w->data;
    uint64_t done = 0;
    dl->hrc = 0;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t start = dl->hashed - dl->hashed % (uint64_t)(pg > 0 ? pg : 4096);
    size_t lead = (size_t)(dl->hashed - start);
    void *m = mmap(NULL, lead + dl->hlen, PROT_READ, MAP_SHARED, dl->fd, (off_t)start);
    if (m != MAP_FAILED) {
        hash_update(dl->hash, (const char *)m + lead, (size_t)dl->hlen);
        munmap(m, lead + dl->hlen);
        return;
    }
    if (!dl->hbuf && !(dl->hbuf = malloc(PREFIX_CHUNK))) {
        dl->hrc = -ENOMEM;
        return;
    }
    while (done < dl->hlen) {
        ssize_t n =
            pread(dl->fd, dl->hbuf + done, (size_t)(dl->hlen - done), (off_t)(dl->hashed + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            dl->hrc = n < 0 ? -errno : SHOAL_EINTERNAL;
            return;
        }
        done += (uint64_t)n;
    }
    hash_update(dl->hash, dl->hbuf, (size_t)dl->hlen);
}

static void hash_after(uv_work_t *w, int status)
{
    struct swarm_dl *dl = w->data;
    dl->hashing = false;
    if (dl->state == DL_DONE || status < 0 || dl->hrc < 0) {
        if (dl->state != DL_DONE)
            swarm_dl_end(dl, dl->hrc < 0 ? dl->hrc : SHOAL_EINTERNAL);
        swarm_dl_maybe_free(dl);
        return;
    }
    dl->hashed += dl->hlen;
    if (!dl->ended)
        dl->ops.on_prefix(dl->arg, dl->hashed);
    if (dl->hashed == dl->size) {
        swarm_dl_end(dl, 0);
        return;
    }
    kick_hasher(dl);
}

static void kick_hasher(struct swarm_dl *dl)
{
    if (dl->hashing || dl->ended || dl->state != DL_RUNNING || !dl->table)
        return;
    uint32_t i = (uint32_t)(dl->hashed / dl->plen);
    while (i < dl->npieces && wire_bit_get(dl->have, i))
        i++;
    uint64_t end = i >= dl->npieces ? dl->size : wire_piece_offset(dl->plen, i);
    if (end <= dl->hashed)
        return;
    dl->hlen = end - dl->hashed < PREFIX_CHUNK ? end - dl->hashed : PREFIX_CHUNK;
    dl->hashing = true;
    dl->hwork.data = dl;
    if (uv_queue_work(dl->s->loop, &dl->hwork, hash_work, hash_after) < 0) {
        dl->hashing = false;
        swarm_dl_end(dl, SHOAL_EINTERNAL);
    }
}

/* --- the upstream lease --- */

static int push_u32(uint32_t **arr, size_t *n, uint32_t v)
{
    uint32_t *a = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (!a)
        return -ENOMEM;
    a[(*n)++] = v;
    *arr = a;
    return 0;
}

static void report_hash(struct swarm_dl *dl, uint32_t index, const uint8_t *raw, size_t len)
{
    struct tracker_client_hash *p = realloc(dl->pend, (dl->npend + 1) * sizeof(*p));
    if (!p)
        return;
    dl->pend = p;
    p[dl->npend].index = index;
    wire_hash_to_hex(raw, len, p[dl->npend].hex);
    dl->npend++;
    /* Peers wait for this hash: tell the tracker soon. */
    if (dl->next_announce > dl->last_announce + ANNOUNCE_MIN_GAP_MS)
        dl->next_announce = dl->last_announce + ANNOUNCE_MIN_GAP_MS;
}

/* A whole leased piece is in lbuf (or already on disk). */
static void lease_piece_done(struct swarm_dl *dl, uint32_t index, const uint8_t *data, size_t len)
{
    uint8_t raw[WIRE_HASH_MAX];
    size_t rawlen = 0;
    if (wire_piece_hash(dl->algo, data, len, raw, &rawlen) < 0)
        return;
    memcpy(dl->hashes[index], raw, rawlen);
    piece_picker_set_hash_known(dl->pp, index);
    report_hash(dl, index, raw, rawlen);
    if (!wire_bit_get(dl->have, index)) {
        int rc = swarm_write_piece(dl, index, data, len);
        if (rc < 0) {
            swarm_dl_end(dl, rc);
            return;
        }
        dl->s->stats.pieces_verified++;
        swarm_piece_done(dl, index);
    }
}

static int lease_on_response(void *arg, const struct http_client_response *resp)
{
    struct swarm_dl *dl = arg;
    uint64_t want = wire_piece_offset(dl->plen, dl->lease[dl->lpos]);
    if (resp->status == 206) {
        char cr[128];
        uint64_t start = UINT64_MAX;
        if (http_client_response_header(resp, "Content-Range", cr, sizeof(cr)))
            (void)sscanf(cr, "bytes %" SCNu64 "-", &start);
        return start == want ? 0 : 1;
    }
    /* A 200 is the whole blob: usable only when the run starts at 0. */
    if (resp->status == 200)
        return want == 0 ? 0 : 1;
    return 0;
}

static size_t lease_on_data(void *arg, const char *data, size_t len)
{
    struct swarm_dl *dl = arg;
    size_t total = len;
    if (!ratelimit_try(dl->s->cfg.ingress, len, now_ms(dl->s))) {
        dl->lease_rate_paused = true; /* the tick resumes it */
        return HTTP_CLIENT_PAUSE;
    }
    while (len > 0 && dl->lpos < dl->nlease && dl->lease[dl->lpos] < dl->lrun_end) {
        uint32_t index = dl->lease[dl->lpos];
        size_t psize = wire_piece_size(dl->size, dl->plen, index);
        size_t n = psize - dl->lfill < len ? psize - dl->lfill : len;
        memcpy(dl->lbuf + dl->lfill, data, n);
        dl->lfill += n;
        data += n;
        len -= n;
        if (dl->lfill == psize) {
            dl->lfill = 0;
            dl->lpos++;
            lease_piece_done(dl, index, dl->lbuf, psize);
            if (dl->ended || dl->state != DL_RUNNING)
                return 0;
        }
    }
    /* Bytes past the run (a 200 for the whole blob) are not needed. */
    return len == 0 ? total : (dl->lpos < dl->nlease ? total : 0);
}

static void lease_on_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct swarm_dl *dl = arg;
    dl->lreq = NULL;
    dl->lfill = 0;
    if (dl->state != DL_RUNNING) {
        swarm_dl_maybe_free(dl);
        return;
    }
    int status = resp ? (int)resp->status : 0;
    bool run_done = dl->lpos >= dl->nlease || dl->lease[dl->lpos] >= dl->lrun_end;
    if (!run_done && (rc < 0 || (status != 200 && status != 206))) {
        LOG(WARN, COMP, "digest=%s lease fetch failed err=%s status=%d; giving back %zu pieces",
            dl->d.str, rc ? shoal_errname(rc) : "none", status, dl->nlease - dl->lpos);
        for (; dl->lpos < dl->nlease; dl->lpos++) {
            push_u32(&dl->failed, &dl->nfailed, dl->lease[dl->lpos]);
            piece_picker_set_excluded(dl->pp, dl->lease[dl->lpos], false);
        }
    }
    lease_next(dl);
}

/* Fetches the next run of consecutive leased pieces with one Range request. */
static void lease_next(struct swarm_dl *dl)
{
    /* Pieces we already hold (a resumed prefix) only need their hash. */
    while (dl->lpos < dl->nlease && wire_bit_get(dl->have, dl->lease[dl->lpos])) {
        uint32_t index = dl->lease[dl->lpos];
        size_t psize = wire_piece_size(dl->size, dl->plen, index);
        ssize_t n = pread(dl->fd, dl->lbuf, psize, (off_t)wire_piece_offset(dl->plen, index));
        dl->lpos++;
        if (n == (ssize_t)psize)
            lease_piece_done(dl, index, dl->lbuf, psize);
    }
    if (dl->lpos >= dl->nlease) {
        free(dl->lease);
        dl->lease = NULL;
        dl->nlease = dl->lpos = 0;
        dl->next_announce = now_ms(dl->s); /* report hashes, ask for more */
        return;
    }
    uint32_t first = dl->lease[dl->lpos];
    uint32_t last = first;
    for (size_t i = dl->lpos + 1;
         i < dl->nlease && dl->lease[i] == last + 1 && !wire_bit_get(dl->have, dl->lease[i]); i++)
        last++;
    dl->lrun_end = last + 1;
    uint64_t from = wire_piece_offset(dl->plen, first);
    uint64_t to = wire_piece_offset(dl->plen, last) + wire_piece_size(dl->size, dl->plen, last);
    char path[OCI_NAME_MAX + 200];
    char range[80];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", dl->repo, dl->d.str);
    snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, from, to - 1);
    const char *headers[] = {range, NULL};
    struct upstream_req_opts o = {
        .def = &dl->def,
        .repo = dl->repo,
        .method = "GET",
        .path = path,
        .headers = headers,
        .on_response = lease_on_response,
        .on_data = lease_on_data,
        .on_done = lease_on_done,
        .arg = dl,
    };
    LOG(INFO, COMP, "digest=%s lease pieces=%" PRIu32 "-%" PRIu32 " bytes=%" PRIu64 "-%" PRIu64,
        dl->d.str, first, last, from, to - 1);
    dl->lfill = 0;
    if (upstream_request(dl->s->up, &o, &dl->lreq) < 0) {
        dl->lreq = NULL;
        for (; dl->lpos < dl->nlease; dl->lpos++)
            push_u32(&dl->failed, &dl->nfailed, dl->lease[dl->lpos]);
        free(dl->lease);
        dl->lease = NULL;
        dl->nlease = dl->lpos = 0;
    }
}

/* --- the tracker --- */

static int take_table(struct swarm_dl *dl, const struct tracker_client_reply *r)
{
    if (wire_hash_algo_parse(r->hash_algo, &dl->algo) < 0 || r->piece_length == 0 ||
        r->pieces != wire_piece_count(dl->size, r->piece_length)) {
        LOG(WARN, COMP, "digest=%s tracker piece table does not fit size=%" PRIu64, dl->d.str,
            dl->size);
        return SHOAL_EPROTOCOL;
    }
    dl->plen = r->piece_length;
    dl->npieces = r->pieces;
    dl->hashes = calloc(dl->npieces ? dl->npieces : 1, sizeof(*dl->hashes));
    dl->have = calloc(wire_bitfield_bytes(dl->npieces) + 1, 1);
    dl->lbuf = malloc(dl->plen);
    dl->pp = piece_picker_create(dl->npieces);
    if (!dl->hashes || !dl->have || !dl->lbuf || !dl->pp)
        return -ENOMEM;
    /* Whole pieces of a resumed prefix are ours already. */
    for (uint32_t i = 0; i < dl->npieces; i++) {
        uint64_t end = wire_piece_offset(dl->plen, i) + wire_piece_size(dl->size, dl->plen, i);
        if (end > dl->hashed)
            break;
        wire_bit_set(dl->have, i);
        dl->nhave++;
        piece_picker_mark_have(dl->pp, i, NULL, NULL);
    }
    dl->table = true;
    return 0;
}

static void announce_done(void *arg, int rc, const struct tracker_client_reply *r)
{
    struct swarm_dl *dl = arg;
    dl->areq = NULL;
    if (dl->state == DL_DONE) {
        swarm_dl_maybe_free(dl);
        return;
    }
    uint64_t now = now_ms(dl->s);
    if (rc < 0) {
        LOG(WARN, COMP, "digest=%s announce failed err=%s", dl->d.str, shoal_errname(rc));
        dl->next_announce = now + (dl->interval_ms ? dl->interval_ms : 1000);
        if (!dl->table && dl->state == DL_RUNNING)
            swarm_dl_end(dl, SHOAL_EUNAVAILABLE); /* no tracker, no swarm: go upstream */
        return;
    }
    /* What was reported is now the tracker's. */
    if (dl->npend_sent) {
        memmove(dl->pend, dl->pend + dl->npend_sent,
                (dl->npend - dl->npend_sent) * sizeof(*dl->pend));
        dl->npend -= dl->npend_sent;
    }
    if (dl->nbad_sent) {
        memmove(dl->bad, dl->bad + dl->nbad_sent, (dl->nbad - dl->nbad_sent) * sizeof(dl->bad[0]));
        dl->nbad -= dl->nbad_sent;
    }
    if (dl->nfailed_sent) {
        memmove(dl->failed, dl->failed + dl->nfailed_sent,
                (dl->nfailed - dl->nfailed_sent) * sizeof(*dl->failed));
        dl->nfailed -= dl->nfailed_sent;
    }
    dl->interval_ms = r->interval_ms;
    dl->next_announce = now + r->interval_ms;
    if (!dl->table) {
        int trc = take_table(dl, r);
        if (trc < 0) {
            swarm_dl_end(dl, trc);
            return;
        }
    }
    if (dl->state != DL_RUNNING)
        return;
    for (uint32_t i = 0; i < dl->npieces; i++) {
        if (!r->hashes[i][0] || piece_picker_hash_known(dl->pp, i))
            continue;
        if (wire_hash_from_hex(dl->algo, r->hashes[i], strlen(r->hashes[i]), dl->hashes[i]) == 0)
            piece_picker_set_hash_known(dl->pp, i);
    }
    if (r->nlease && !dl->lease && !dl->lreq) {
        dl->lease = malloc(r->nlease * sizeof(*dl->lease));
        if (dl->lease) {
            memcpy(dl->lease, r->lease, r->nlease * sizeof(*dl->lease));
            dl->nlease = r->nlease;
            dl->lpos = 0;
            for (size_t i = 0; i < dl->nlease; i++)
                piece_picker_set_excluded(dl->pp, dl->lease[i], true);
            lease_next(dl);
        }
    }
    /* Peers with pieces first; then the rest, which will have some soon
     * (their HAVEs reach us at once instead of on a later announce). */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < r->npeers; i++)
            if ((r->peers[i].complete || r->peers[i].have > 0) == (pass == 0))
                swarm_connect_peer(dl, r->peers[i].addr);
    swarm_try_request_all(dl);
    kick_hasher(dl);
}

static void announce(struct swarm_dl *dl)
{
    struct swarm *s = dl->s;
    bool complete = dl->state == DL_SEEDING;
    struct tracker_client_report a = {
        .digest = dl->d.str,
        .size = dl->size,
        .event = complete
                     ? (dl->announced_complete ? TRACKER_CLIENT_PROGRESS : TRACKER_CLIENT_COMPLETED)
                 : dl->last_announce == 0 ? TRACKER_CLIENT_STARTED
                                          : TRACKER_CLIENT_PROGRESS,
        .have = complete ? dl->npieces : dl->nhave,
        .complete = complete,
        .want_lease = !complete && !dl->lease && !dl->lreq,
        .hashes = dl->pend,
        .nhashes = dl->npend,
        .lease_failed = dl->failed,
        .nlease_failed = dl->nfailed,
    };
    const char *bad[sizeof(dl->bad) / sizeof(dl->bad[0])];
    for (size_t i = 0; i < dl->nbad; i++)
        bad[i] = dl->bad[i];
    a.bad_peers = bad;
    a.nbad_peers = dl->nbad;
    dl->npend_sent = dl->npend;
    dl->nfailed_sent = dl->nfailed;
    dl->nbad_sent = dl->nbad;
    dl->last_announce = now_ms(s);
    if (complete)
        dl->announced_complete = true;
    if (tracker_client_announce(s->tc, &a, announce_done, dl, &dl->areq) < 0) {
        dl->areq = NULL;
        dl->next_announce = dl->last_announce + 1000;
    }
}

/* No progress for stall-timeout (peers gone, the tracker down, leases lost
 * with it): fetch every missing piece from upstream ourselves, as if leased,
 * keeping all the swarm already delivered. If that stalls too, give up and
 * let blob_fetch download plainly from the verified prefix. */
static bool self_lease(struct swarm_dl *dl)
{
    if (dl->self_leased || dl->lreq)
        return false;
    uint32_t *l = malloc((dl->npieces ? dl->npieces : 1) * sizeof(*l));
    size_t n = 0;
    if (!l)
        return false;
    for (uint32_t i = 0; i < dl->npieces; i++)
        if (!wire_bit_get(dl->have, i))
            l[n++] = i;
    if (n == 0) {
        free(l);
        return false;
    }
    free(dl->lease);
    dl->lease = l;
    dl->nlease = n;
    dl->lpos = 0;
    for (size_t i = 0; i < n; i++)
        piece_picker_set_excluded(dl->pp, l[i], true);
    dl->self_leased = true;
    dl->last_progress = now_ms(dl->s);
    dl->s->stats.fallbacks++;
    LOG(WARN, COMP,
        "digest=%s no progress for %" PRIu64 " ms: fetching the %zu missing pieces "
        "from upstream",
        dl->d.str, dl->s->cfg.stall_timeout_ms, n);
    lease_next(dl);
    return true;
}

static void tick(uv_timer_t *t)
{
    struct swarm_dl *dl = t->data;
    uint64_t now = now_ms(dl->s);
    if (dl->state == DL_DONE)
        return;
    if (dl->state == DL_SEEDING && now >= dl->seed_until) {
        dl_close(dl);
        return;
    }
    if (dl->state == DL_RUNNING && !dl->ended && dl->table &&
        now - dl->last_progress > dl->s->cfg.stall_timeout_ms) {
        if (!self_lease(dl))
            swarm_dl_end(dl, SHOAL_ETIMEOUT);
        return;
    }
    if (dl->lease_rate_paused && dl->lreq) {
        dl->lease_rate_paused = false;
        upstream_req_resume(dl->lreq);
    }
    swarm_serve_deferred(dl);
    if (dl->state == DL_RUNNING && (dl->s->cfg.ingress && ratelimit_rate(dl->s->cfg.ingress)))
        swarm_try_request_all(dl);
    if (!dl->areq && now >= dl->next_announce)
        announce(dl);
}

/* --- public --- */

int swarm_dl_start(struct swarm *s, const struct oci_digest *d, uint64_t size, uint64_t start,
                   int fd, struct hash_ctx *hash, const struct upstream_def *def, const char *repo,
                   const struct swarm_dl_ops *ops, void *arg, struct swarm_dl **out)
{
    if (s->closing)
        return SHOAL_ECANCELED;
    struct swarm_dl *dl = calloc(1, sizeof(*dl));
    if (!dl)
        return -ENOMEM;
    dl->s = s;
    dl->d = *d;
    dl->size = size;
    dl->hashed = start;
    dl->hash = hash;
    dl->ops = *ops;
    dl->arg = arg;
    dl->seed_fd = -1;
    dl->fd = dup(fd);
    dl->repo = strdup(repo);
    dl->timer_closed = true;
    if (dl->fd < 0 || !dl->repo || upstream_def_copy(&dl->def, def) < 0) {
        if (dl->fd >= 0)
            close(dl->fd);
        free(dl->repo);
        upstream_def_dispose(&dl->def);
        free(dl);
        return -ENOMEM;
    }
    uv_timer_init(s->loop, &dl->timer);
    dl->timer.data = dl;
    dl->timer_closed = false;
    dl->last_progress = now_ms(s);
    dl->next_announce = 0;
    dl->next = s->dls;
    s->dls = dl;
    s->stats.swarms_active++;
    /* The first announce goes out on the first tick, never from here. */
    uv_timer_start(&dl->timer, tick, 0, TICK_MS);
    LOG(INFO, COMP, "digest=%s swarm start size=%" PRIu64 " from=%" PRIu64, d->str, size, start);
    *out = dl;
    return 0;
}

void swarm_dl_finish(struct swarm_dl *dl, int seed_fd)
{
    dl->ended = true; /* no callbacks after this */
    if (dl->lreq)
        upstream_req_cancel(dl->lreq);
    if (seed_fd >= 0 && dl->table && dl->state == DL_RUNNING && !dl->s->closing &&
        (dl->seed_fd = dup(seed_fd)) >= 0) {
        dl->state = DL_SEEDING;
        for (uint32_t i = 0; i < dl->npieces; i++)
            if (!wire_bit_get(dl->have, i)) {
                wire_bit_set(dl->have, i);
                for (struct dl_peer *p = dl->peers; p; p = p->next)
                    if (p->ready)
                        peer_conn_send_have(p->c, i);
            }
        dl->nhave = dl->npieces;
        dl->seed_until = now_ms(dl->s) + dl->s->cfg.seed_time_ms;
        dl->next_announce = now_ms(dl->s);
        LOG(INFO, COMP, "digest=%s complete; seeding for %" PRIu64 " ms", dl->d.str,
            dl->s->cfg.seed_time_ms);
        return;
    }
    dl_close(dl);
    swarm_dl_maybe_free(dl);
}

int swarm_create(uv_loop_t *loop, struct http_client *hc, struct upstream *up,
                 const struct swarm_config *cfg, struct swarm **out)
{
    struct swarm *s = calloc(1, sizeof(*s));
    int rc;
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->hc = hc;
    s->up = up;
    s->cfg = *cfg;
    s->secret = malloc(cfg->secret_len + 1);
    if (!s->secret) {
        rc = -ENOMEM;
        goto fail;
    }
    if (cfg->secret_len)
        memcpy(s->secret, cfg->secret, cfg->secret_len);
    s->cfg.secret = s->secret;
    if (RAND_bytes((unsigned char *)&s->rng, sizeof(s->rng)) != 1 || s->rng == 0)
        s->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)uv_hrtime();
    s->pcfg.secret = s->secret;
    s->pcfg.secret_len = cfg->secret_len;
    /* Two whole-piece requests per peer keep every link busy with several
     * peers, and a request never queues long behind others at a busy peer
     * (what delays the last pieces most). */
    s->pcfg.max_inflight = SWARM_MAX_INFLIGHT;
    rc = peer_conn_make_id(s->pcfg.my_id);
    if (rc < 0)
        goto fail;
    rc = peer_listener_create(loop, &s->pcfg, cfg->peer_listen, swarm_lookup, s, &s->listener);
    if (rc < 0) {
        LOG(ERROR, COMP, "cannot listen for peers on %s: %s", cfg->peer_listen, shoal_strerror(rc));
        goto fail;
    }
    snprintf(s->advertise, sizeof(s->advertise), "%s",
             cfg->advertise && cfg->advertise[0] ? cfg->advertise : cfg->peer_listen);
    char agent_id[2 * WIRE_ID_LEN + 1];
    wire_hash_to_hex(s->pcfg.my_id, WIRE_ID_LEN, agent_id);
    struct tracker_client_config tcc = {
        .url = cfg->tracker_url,
        .secret = s->secret,
        .secret_len = cfg->secret_len,
        .agent = agent_id,
        .addr = s->advertise,
    };
    rc = tracker_client_create(hc, &tcc, &s->tc);
    if (rc < 0)
        goto fail;
    LOG(INFO, COMP, "msg=ready tracker=%s peer_listen=%s port=%d advertise=%s agent=%s",
        cfg->tracker_url, cfg->peer_listen, peer_listener_port(s->listener), s->advertise,
        agent_id);
    *out = s;
    return 0;
fail:
    if (s->listener)
        peer_listener_destroy(s->listener, NULL, NULL);
    free(s->secret);
    free(s);
    return rc;
}

static void listener_closed(void *arg)
{
    struct swarm *s = arg;
    s->listener = NULL;
    swarm_maybe_free(s);
}

void swarm_destroy(struct swarm *s)
{
    if (!s)
        return;
    s->closing = true;
    tracker_client_destroy(s->tc);
    s->tc = NULL;
    /* Downloads and the listener close asynchronously; the last one to go
     * frees the swarm (swarm_maybe_free). */
    struct swarm_dl *dl = s->dls;
    while (dl) {
        struct swarm_dl *next = dl->next;
        dl->ended = true;
        dl_close(dl);
        swarm_dl_maybe_free(dl);
        dl = next;
    }
    if (s->listener)
        peer_listener_destroy(s->listener, listener_closed, s);
    else
        swarm_maybe_free(s);
}

const struct swarm_stats *swarm_stats(const struct swarm *s)
{
    return &s->stats;
}

bool swarm_wants(const struct swarm *s, uint64_t size)
{
    return !s->closing && size > 0 && size >= s->cfg.min_size;
}

int swarm_peer_port(const struct swarm *s)
{
    return peer_listener_port(s->listener);
}
