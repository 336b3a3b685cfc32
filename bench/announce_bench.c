/* shoal-announce-bench: a load generator for shoal-tracker's announce API
 * (docs/protocol.md, "POST /v1/announce"), signed with the cluster secret
 * like a real agent's (common/cluster_auth.c).
 *
 * It plays `--peers` agents in `--swarms` swarms (peer i is in swarm
 * i % swarms), each announcing every `--interval` at a phase of its own,
 * over `--connections` kept-alive HTTP/1.1 connections (peer i uses
 * connection i % connections; one request at a time per connection, as an
 * agent's HTTP client does). The peers behave as agents do: the first
 * announce says started and asks for a lease, the hashes of a granted lease
 * (SHA-256 long, the tracker's default) go out on the next announce with a
 * new lease request, the reply's hash log position, table id and how many
 * confirmed flags it holds come back in the next request, a peer that holds
 * every piece says completed once and then announces as a seed. Each
 * request is signed with a fresh nonce, as agents sign (the tracker checks
 * it against its replay table).
 *
 * Open loop (default): announces are due at their time whether or not the
 * tracker kept up; latency is measured from the time an announce was due,
 * so a tracker falling behind shows in the latency instead of slowing the
 * load down (no coordinated omission). Closed loop (--closed): every
 * connection sends its next announce as soon as the previous reply is in:
 * the tracker's throughput.
 *
 * Replies are read with a small scanner for the fields the peers follow;
 * --check N decodes every Nth reply fully with common/announce.c and
 * counts the failures. Output: a human summary on stderr and one JSON
 * object on stdout (announces, per-second rate, latency percentiles,
 * errors, statuses, mean request and reply body bytes).
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>
#include <uv.h>

#include "shoal/announce.h"
#include "shoal/cluster_auth.h"
#include "shoal/config.h"
#include "shoal/hash.h"

#define PIECES 64            /* per swarm: 64 MiB blobs of 1 MiB pieces */
#define HASH_HEX 64          /* SHA-256, the tracker's default piece hash */
#define PIECE_LEN (1u << 20) /* the tracker's default for such blobs */
#define BODY_MAX 4096        /* one request body */
#define RBUF_MAX (1u << 20)  /* one reply */
#define HIST_BUCKETS 4096

struct peer {
    uint32_t id;
    uint32_t swarm;
    bool started;
    bool complete;
    bool said_completed; /* the completed event went out */
    uint32_t have;
    uint64_t table;
    uint32_t hashes_seq;
    uint32_t confirmed_seen; /* confirmed flags held, for table */
    uint32_t lease[ANNOUNCE_LEASE_MAX];
    uint32_t nlease; /* pieces leased: reported with the next announce */
    uint64_t due_ns; /* when its pending announce was due */
};

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct bench *b;
    int idx;
    bool connected, busy, closed;
    char head[512];
    char body[BODY_MAX];
    uv_buf_t bufs[2];
    char *rbuf;
    size_t rlen;
    uint32_t *queue; /* peers waiting, a ring */
    size_t qhead, qlen, qcap;
    uint32_t cur;        /* the peer whose reply is awaited */
    uint32_t next_owned; /* closed loop: next of its own peers */
};

struct hist {
    uint64_t n[HIST_BUCKETS];
    uint64_t count;
    double max_us;
};

struct bench {
    uv_loop_t *loop;
    char host[64];
    int port;
    char *secret;
    size_t secret_len;
    uint32_t npeers, nswarms, nconns;
    uint64_t interval_ns;
    uint64_t duration_ns, warmup_ns;
    bool closed_loop;
    unsigned check_every;
    struct peer *peers;
    struct conn *conns;
    char (*digests)[72];
    uint64_t t0;
    uint32_t cursor; /* open loop: next peer by phase */
    uint64_t cycle;  /* open loop: how many rounds of peers were due */
    uv_timer_t tick;
    bool stopping;
    /* results (after the warm-up) */
    struct hist lat;
    uint64_t sent, ok, http_err[6], net_err, check_fail, checked, queued_max;
    uint64_t measured_from_ns, measured_to_ns;
    uint64_t hashes_rx, leases_rx, peers_rx, confirmed_rx;
    uint64_t req_bytes, reply_bytes; /* bodies, measured announces */
};

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* ---- latency histogram: 1 us resolution below 1 ms, then ~1% buckets ---- */

static size_t bucket_of(double us)
{
    if (us < 1000)
        return (size_t)us;
    size_t b = 1000 + (size_t)(log(us / 1000.0) / log(1.01));
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

static double bucket_us(size_t b)
{
    return b < 1000 ? (double)b + 0.5 : 1000.0 * pow(1.01, (double)(b - 1000) + 0.5);
}

static void hist_add(struct hist *h, double us)
{
    h->n[bucket_of(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

static double hist_pct(const struct hist *h, double p)
{
    uint64_t want = (uint64_t)ceil(p * (double)h->count), seen = 0;
    for (size_t b = 0; b < HIST_BUCKETS; b++) {
        seen += h->n[b];
        if (seen >= want && want > 0)
            return bucket_us(b);
    }
    return h->max_us;
}

/* ---- requests ------------------------------------------------------------- */

static void fake_hash(uint32_t swarm, uint32_t piece, char out[HASH_HEX + 1])
{
    /* Deterministic per piece, so replicas of the same piece agree. */
    uint64_t x = ((uint64_t)swarm << 32 | piece) * 0x9e3779b97f4a7c15ULL;
    uint64_t y = x ^ (x >> 29) ^ 0xbf58476d1ce4e5b9ULL;
    snprintf(out, HASH_HEX + 1, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, x, y, ~x,
             x ^ y);
}

static size_t build_body(struct bench *b, struct peer *p, char *out, size_t cap)
{
    const char *event = !p->started                         ? "started"
                        : p->complete && !p->said_completed ? "completed"
                                                            : "progress";
    if (p->complete && p->started)
        p->said_completed = true;
    size_t n = (size_t)snprintf(
        out, cap,
        "{\"digest\":\"%s\",\"size\":%u,\"agent\":\"bench-%06u\",\"addr\":\"10.%u.%u.%u:5081\","
        "\"event\":\"%s\",\"have\":%u,\"complete\":%s,\"want_lease\":%s,\"hashes_from\":%u,"
        "\"table\":%" PRIu64 ",\"confirmed_seen\":%u,\"hashes\":{",
        b->digests[p->swarm], PIECES * PIECE_LEN, p->id, 1 + (p->id >> 16) % 250,
        (p->id >> 8) & 0xff, p->id & 0xff, event, p->have, p->complete ? "true" : "false",
        p->complete ? "false" : "true", p->hashes_seq, p->table, p->confirmed_seen);
    for (uint32_t i = 0; i < p->nlease && n + HASH_HEX + 32 < cap; i++) {
        char hex[HASH_HEX + 1];
        fake_hash(p->swarm, p->lease[i], hex);
        n += (size_t)snprintf(out + n, cap - n, "%s\"%u\":\"%s\"", i ? "," : "", p->lease[i], hex);
    }
    n += (size_t)snprintf(out + n, cap - n, "},\"lease_failed\":[]}");
    return n;
}

static void on_write(uv_write_t *w, int status);
static void conn_send(struct conn *c);

static void send_peer(struct conn *c, uint32_t pi)
{
    struct bench *b = c->b;
    struct peer *p = &b->peers[pi];
    char auth[CLUSTER_AUTH_MAX];
    size_t blen = build_body(b, p, c->body, sizeof(c->body));
    uint64_t t = now_ns();
    if (t >= b->measured_from_ns && t <= b->measured_to_ns)
        b->req_bytes += blen;
    cluster_auth_sign_nonce(b->secret, b->secret_len, (int64_t)time(NULL), "POST", ANNOUNCE_PATH,
                            c->body, blen, auth, sizeof(auth));
    int hlen =
        snprintf(c->head, sizeof(c->head),
                 "POST " ANNOUNCE_PATH " HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n" CLUSTER_AUTH_HEADER
                 ": %s\r\n\r\n",
                 b->host, b->port, blen, auth);
    c->bufs[0] = uv_buf_init(c->head, (unsigned)hlen);
    c->bufs[1] = uv_buf_init(c->body, (unsigned)blen);
    c->busy = true;
    c->cur = pi;
    b->sent++;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, c->bufs, 2, on_write) < 0) {
        b->net_err++;
        c->busy = false;
    }
}

/* ---- replies: the few fields a peer follows ------------------------------------ */

static bool field_u64(const char *body, size_t len, const char *key, uint64_t *out)
{
    char pat[40];
    int n = snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = memmem(body, len, pat, (size_t)n);
    if (!p)
        return false;
    *out = strtoull(p + n, NULL, 10);
    return true;
}

/* The popcount of the reply's "confirmed" hex bitfield; 0 when left out. */
static uint32_t confirmed_count(const char *body, size_t len)
{
    const char *c = memmem(body, len, "\"confirmed\":\"", 13);
    uint32_t n = 0;
    if (!c)
        return 0;
    for (c += 13; c < body + len && *c != '"'; c++) {
        int v = *c >= 'a' ? *c - 'a' + 10 : *c - '0';
        n += (uint32_t)__builtin_popcount((unsigned)v & 15u);
    }
    return n;
}

static void take_reply(struct bench *b, struct peer *p, const char *body, size_t len)
{
    uint64_t v;
    p->started = true;
    if (field_u64(body, len, "table", &v)) {
        if (v != p->table)
            p->confirmed_seen = 0;
        p->table = v;
    }
    uint32_t conf = confirmed_count(body, len);
    if (conf) {
        p->confirmed_seen = conf;
        b->confirmed_rx++;
    }
    if (field_u64(body, len, "hashes_seq", &v))
        p->hashes_seq = (uint32_t)v;
    /* The hashes it reported are the tracker's now: it holds those pieces;
     * and peers send it a few more between two announces. */
    p->have += p->nlease + 4;
    if (p->have >= PIECES) {
        p->have = PIECES;
        p->complete = true;
    }
    p->nlease = 0;
    const char *l = memmem(body, len, "\"lease\":{\"pieces\":[", 19);
    if (l) {
        const char *e = body + len;
        l += 19;
        while (l < e && *l != ']' && p->nlease < ANNOUNCE_LEASE_MAX) {
            p->lease[p->nlease++] = (uint32_t)strtoul(l, (char **)&l, 10);
            if (l < e && *l == ',')
                l++;
        }
        b->leases_rx++;
    }
    /* Rough counters of what replies carried. */
    const char *h = memmem(body, len, "\"hashes\":{\"", 11);
    if (h)
        b->hashes_rx++;
    if (memmem(body, len, "\"peers\":[{", 10))
        b->peers_rx++;
}

static void next_for(struct conn *c);

static void handle_reply(struct conn *c, int status, const char *body, size_t len)
{
    struct bench *b = c->b;
    struct peer *p = &b->peers[c->cur];
    uint64_t t = now_ns();
    c->busy = false;
    if (t >= b->measured_from_ns && t <= b->measured_to_ns) {
        hist_add(&b->lat, (double)(t - p->due_ns) / 1000.0);
        if (status == 200) {
            b->ok++;
            b->reply_bytes += len;
        } else
            b->http_err[status / 100 <= 5 ? status / 100 : 0]++;
    }
    if (status == 200) {
        take_reply(b, p, body, len);
        if (b->check_every && (b->ok % b->check_every) == 0) {
            struct announce_reply_doc d;
            char err[ANNOUNCE_ERROR_MAX];
            b->checked++;
            if (announce_reply_decode(body, len, &d, err, sizeof(err)) < 0) {
                b->check_fail++;
                if (b->check_fail < 5)
                    fprintf(stderr, "announce-bench: bad reply: %s\n", err);
            }
            announce_reply_doc_dispose(&d);
        }
    } else if (status != 503) {
        static int shown;
        if (shown++ < 5)
            fprintf(stderr, "announce-bench: status %d: %.*s\n", status,
                    (int)(len > 300 ? 300 : len), body);
    }
    next_for(c);
}

/* Parses whole replies out of rbuf; returns false on a protocol error. */
static bool parse_replies(struct conn *c)
{
    for (;;) {
        char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (!end)
            return c->rlen < 16384;
        size_t hlen = (size_t)(end - c->rbuf) + 4;
        int status = 0;
        if (sscanf(c->rbuf, "HTTP/1.%*d %d", &status) != 1)
            return false;
        const char *cl = NULL;
        for (char *s = c->rbuf; s < end; s++)
            if ((*s == 'C' || *s == 'c') && strncasecmp(s, "Content-Length:", 15) == 0) {
                cl = s + 15;
                break;
            }
        if (!cl)
            return false;
        size_t blen = strtoul(cl, NULL, 10);
        if (c->rlen < hlen + blen)
            return hlen + blen <= RBUF_MAX;
        handle_reply(c, status, c->rbuf + hlen, blen);
        memmove(c->rbuf, c->rbuf + hlen + blen, c->rlen - hlen - blen);
        c->rlen -= hlen + blen;
    }
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
    struct conn *c = h->data;
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(RBUF_MAX - c->rlen));
}

static void conn_closed(uv_handle_t *h)
{
    (void)h;
}

static void conn_fail(struct conn *c, const char *why)
{
    struct bench *b = c->b;
    if (c->closed)
        return;
    b->net_err++;
    if (!b->stopping)
        fprintf(stderr, "announce-bench: connection %d: %s\n", c->idx, why);
    c->closed = true;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (n < 0) {
        conn_fail(c, uv_strerror((int)n));
        return;
    }
    c->rlen += (size_t)n;
    if (!parse_replies(c))
        conn_fail(c, "malformed reply");
}

static void on_write(uv_write_t *w, int status)
{
    struct conn *c = w->handle->data;
    if (status < 0)
        conn_fail(c, uv_strerror(status));
}

/* ---- scheduling ----------------------------------------------------------------- */

static void next_for(struct conn *c)
{
    struct bench *b = c->b;
    if (c->busy || !c->connected || c->closed || b->stopping)
        return;
    if (b->closed_loop) {
        /* Its own peers, round robin, each due now. */
        uint32_t pi = c->next_owned;
        c->next_owned += b->nconns;
        if (c->next_owned >= b->npeers)
            c->next_owned = (uint32_t)c->idx;
        b->peers[pi].due_ns = now_ns();
        send_peer(c, pi);
        return;
    }
    if (c->qlen == 0)
        return;
    uint32_t pi = c->queue[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    send_peer(c, pi);
}

static void conn_send(struct conn *c)
{
    next_for(c);
}

static void enqueue(struct bench *b, uint32_t pi, uint64_t due)
{
    struct conn *c = &b->conns[pi % b->nconns];
    if (c->closed)
        return;
    if (c->qlen == c->qcap) {
        /* The tracker is far behind: the announce is dropped, counted. */
        b->http_err[0]++;
        return;
    }
    b->peers[pi].due_ns = due;
    c->queue[(c->qhead + c->qlen) % c->qcap] = pi;
    c->qlen++;
    if (c->qlen > b->queued_max)
        b->queued_max = c->qlen;
    conn_send(c);
}

static void on_tick(uv_timer_t *t)
{
    struct bench *b = t->data;
    uint64_t now = now_ns();
    if (now - b->t0 >= b->warmup_ns + b->duration_ns) {
        b->stopping = true;
        uv_timer_stop(&b->tick);
        for (uint32_t i = 0; i < b->nconns; i++)
            if (!b->conns[i].closed) {
                b->conns[i].closed = true;
                uv_close((uv_handle_t *)&b->conns[i].tcp, conn_closed);
            }
        uv_close((uv_handle_t *)&b->tick, NULL);
        return;
    }
    if (b->closed_loop)
        return;
    /* Peer i is due at t0 + (cycle + i/npeers) * interval. */
    for (;;) {
        uint64_t due = b->t0 + b->cycle * b->interval_ns +
                       (uint64_t)((double)b->cursor / b->npeers * (double)b->interval_ns);
        if (due > now)
            break;
        enqueue(b, b->cursor, due);
        if (++b->cursor == b->npeers) {
            b->cursor = 0;
            b->cycle++;
        }
    }
}

static void on_connect(uv_connect_t *r, int status)
{
    struct conn *c = r->data;
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    conn_send(c);
}

/* ---- main --------------------------------------------------------------------------- */

/* A whole decimal number from min to max into *out; -EINVAL otherwise (the
 * caller prints the usage). */
static int parse_count(const char *v, unsigned long min, unsigned long max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n < min || n > max)
        return -EINVAL;
    *out = (uint32_t)n;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: shoal-announce-bench --tracker HOST:PORT [--secret-file F] [--peers 10000]\n"
            "       [--swarms 1000] [--interval 1s] [--connections 1000] [--duration 20s]\n"
            "       [--warmup 3s] [--closed] [--check 100]\n");
}

int main(int argc, char **argv)
{
    static struct bench b;
    const char *tracker = NULL, *secret_file = NULL;
    int64_t interval_ms = 1000, duration_ms = 20000, warmup_ms = 3000;
    b.npeers = 10000;
    b.nswarms = 1000;
    b.nconns = 1000;
    b.check_every = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--closed") == 0) {
            b.closed_loop = true;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--tracker") == 0)
            tracker = v;
        else if (strcmp(a, "--secret-file") == 0)
            secret_file = v;
        else if (strcmp(a, "--peers") == 0 && parse_count(v, 1, 10000000, &b.npeers) == 0)
            ;
        else if (strcmp(a, "--swarms") == 0 && parse_count(v, 1, 10000000, &b.nswarms) == 0)
            ;
        else if (strcmp(a, "--connections") == 0 && parse_count(v, 1, 4096, &b.nconns) == 0)
            ;
        else if (strcmp(a, "--check") == 0 && parse_count(v, 0, 1000000, &b.check_every) == 0)
            ;
        else if (strcmp(a, "--interval") == 0 && config_parse_duration(v, &interval_ms) == 0)
            ;
        else if (strcmp(a, "--duration") == 0 && config_parse_duration(v, &duration_ms) == 0)
            ;
        else if (strcmp(a, "--warmup") == 0 && config_parse_duration(v, &warmup_ms) == 0)
            ;
        else {
            usage();
            return 2;
        }
    }
    if (!tracker || b.npeers == 0 || b.nswarms == 0 || b.nconns == 0 || interval_ms <= 0) {
        usage();
        return 2;
    }
    if (b.nconns > b.npeers)
        b.nconns = b.npeers;
    char host[64];
    if (config_parse_addr(tracker, host, sizeof(host), &b.port) < 0 || b.port == 0) {
        fprintf(stderr, "announce-bench: bad --tracker %s\n", tracker);
        return 2;
    }
    snprintf(b.host, sizeof(b.host), "%s", strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host);
    char err[256];
    b.secret = "";
    if (secret_file && config_read_secret("secret-file", secret_file, &b.secret, &b.secret_len, err,
                                          sizeof(err)) < 0) {
        fprintf(stderr, "announce-bench: %s\n", err);
        return 2;
    }
    b.interval_ns = (uint64_t)interval_ms * 1000000;
    b.duration_ns = (uint64_t)duration_ms * 1000000;
    b.warmup_ns = (uint64_t)warmup_ms * 1000000;
    b.peers = calloc(b.npeers, sizeof(*b.peers));
    b.conns = calloc(b.nconns, sizeof(*b.conns));
    b.digests = calloc(b.nswarms, sizeof(*b.digests));
    if (!b.peers || !b.conns || !b.digests)
        return 1;
    for (uint32_t s = 0; s < b.nswarms; s++) {
        unsigned char md[32];
        char seed[32];
        snprintf(seed, sizeof(seed), "bench-swarm-%u", s);
        SHA256((const unsigned char *)seed, strlen(seed), md);
        char hex[2 * sizeof(md) + 1];
        hash_to_hex(md, sizeof(md), hex);
        snprintf(b.digests[s], sizeof(b.digests[s]), "sha256:%s", hex);
    }
    for (uint32_t i = 0; i < b.npeers; i++) {
        b.peers[i].id = i;
        b.peers[i].swarm = i % b.nswarms;
    }
    b.loop = uv_default_loop();
    struct sockaddr_in sa;
    if (uv_ip4_addr(b.host, b.port, &sa) < 0) {
        fprintf(stderr, "announce-bench: %s is not an IPv4 address\n", b.host);
        return 2;
    }
    for (uint32_t i = 0; i < b.nconns; i++) {
        struct conn *c = &b.conns[i];
        c->b = &b;
        c->idx = (int)i;
        c->next_owned = i;
        c->rbuf = malloc(RBUF_MAX);
        c->qcap = b.npeers / b.nconns + 2;
        c->queue = malloc(c->qcap * sizeof(*c->queue));
        if (!c->rbuf || !c->queue)
            return 1;
        uv_tcp_init(b.loop, &c->tcp);
        c->tcp.data = c;
        c->creq.data = c;
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa, on_connect);
    }
    b.t0 = now_ns();
    b.measured_from_ns = b.t0 + b.warmup_ns;
    b.measured_to_ns = b.t0 + b.warmup_ns + b.duration_ns;
    uv_timer_init(b.loop, &b.tick);
    b.tick.data = &b;
    uv_timer_start(&b.tick, on_tick, 1, 1);
    uv_run(b.loop, UV_RUN_DEFAULT);

    double secs = (double)b.duration_ns / 1e9;
    uint64_t errs = b.http_err[0] + b.http_err[4] + b.http_err[5] + b.net_err;
    double p50 = hist_pct(&b.lat, 0.50), p90 = hist_pct(&b.lat, 0.90), p99 = hist_pct(&b.lat, 0.99),
           p999 = hist_pct(&b.lat, 0.999);
    fprintf(stderr,
            "announce-bench: %s loop, %u peers in %u swarms over %u connections, interval %" PRId64
            " ms: %.0f announces/s answered 200 (%" PRIu64 " in %.1f s), latency p50 %.2f ms "
            "p99 %.2f ms max %.2f ms, errors %" PRIu64 " (5xx %" PRIu64 ", 4xx %" PRIu64
            ", net %" PRIu64 ", dropped %" PRIu64 "), replies checked %" PRIu64 " bad %" PRIu64
            "\n",
            b.closed_loop ? "closed" : "open", b.npeers, b.nswarms, b.nconns, interval_ms,
            (double)b.ok / secs, b.ok, secs, p50 / 1000, p99 / 1000, b.lat.max_us / 1000, errs,
            b.http_err[5], b.http_err[4], b.net_err, b.http_err[0], b.checked, b.check_fail);
    printf("{\"mode\":\"%s\",\"peers\":%u,\"swarms\":%u,\"connections\":%u,\"interval_ms\":%" PRId64
           ",\"seconds\":%.3f,\"ok\":%" PRIu64 ",\"rate\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%" PRIu64
           ",\"http_5xx\":%" PRIu64 ",\"http_4xx\":%" PRIu64 ",\"net_errors\":%" PRIu64
           ",\"dropped\":%" PRIu64 ",\"checked\":%" PRIu64 ",\"check_failures\":%" PRIu64
           ",\"replies_with_hashes\":%" PRIu64 ",\"replies_with_lease\":%" PRIu64
           ",\"replies_with_peers\":%" PRIu64 ",\"replies_with_confirmed\":%" PRIu64
           ",\"request_bytes_mean\":%.1f,\"reply_bytes_mean\":%.1f}\n",
           b.closed_loop ? "closed" : "open", b.npeers, b.nswarms, b.nconns, interval_ms, secs,
           b.ok, (double)b.ok / secs, p50 / 1000, p90 / 1000, p99 / 1000, p999 / 1000,
           b.lat.max_us / 1000, errs, b.http_err[5], b.http_err[4], b.net_err, b.http_err[0],
           b.checked, b.check_fail, b.hashes_rx, b.leases_rx, b.peers_rx, b.confirmed_rx,
           b.ok ? (double)b.req_bytes / (double)b.ok : 0.0,
           b.ok ? (double)b.reply_bytes / (double)b.ok : 0.0);
    return b.check_fail ? 1 : 0;
}
