/* The Redis backend of tracker_state. See state_redis.h and
 * state_redis.lua (the keys and the rules). This file turns the state's
 * operations into EVALSHA calls on the redis_link and the script's replies
 * back into tracker_announce_reply and tracker_swarm_info; the decisions
 * are the script's, so that they are atomic in Redis.
 */
#include "state_redis.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "jobs_json.h"
#include "redis_link.h"
#include "shoal/agent_info.h"
#include "shoal/cluster_seal.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "shoal/wire.h"

#define COMP "state"
#define EXPIRE_BATCH "5000"

/* state_redis_lua.c, generated from state_redis.lua. */
extern const char tracker_state_redis_lua[];

/* Which replica runs one of the others' jobs. */
struct owner {
    uint64_t job;
    char rid[33];
};

struct rstate {
    uv_loop_t *loop;
    struct redis_link *link;
    struct tracker_swarms_config cfg; /* resolved: no zero fields */
    size_t hash_len;
    char prefix[TRACKER_REDIS_PREFIX_MAX + 1];
    bool caller_clock;
    uint64_t rng;
    struct tracker_stats st;
    bool expiring; /* an expiry pass is in flight */
    /* The cluster side (see below). */
    struct tracker_agents *agents;
    struct tracker_jobs *own;  /* jobs this replica runs */
    struct tracker_jobs *peer; /* the other replicas' jobs, as they wrote them */
    char rid[33];              /* this replica's id, random */
    char *secret;              /* the cluster secret: seals job credentials in Redis */
    size_t secret_len;
    uint64_t keep_ms;      /* a finished job's key lives this long */
    uint64_t owner_ttl_ms; /* a replica silent this long is gone */
    uint64_t last_now;
    uint64_t id_next, id_end; /* job ids reserved for this replica */
    bool id_asking;
    uint64_t agents_since; /* Redis time of the last inventory read */
    uint64_t jobs_since;   /* the last job version read */
    bool agents_syncing, jobs_syncing;
    uint64_t *dirty; /* own jobs to write */
    size_t ndirty, dirty_cap;
    struct owner *owners; /* who runs each of the others' jobs */
    size_t nowners, owners_cap;
    bool checking; /* an alive_check is out */
};

static void cluster_expire(struct rstate *s, uint64_t now_ms);

/* xorshift64*: tie-breaks and table ids. */
static uint64_t rnd(struct rstate *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- reading the script's replies ----------------------------------------------- */

static bool is_int(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER;
}

static bool is_str(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING;
}

/* An integer element, or a string of digits (table ids travel as strings). */
static bool num(const redisReply *r, uint64_t *out)
{
    if (is_int(r) && r->integer >= 0) {
        *out = (uint64_t)r->integer;
        return true;
    }
    if (is_str(r) && r->len > 0 && r->len < 21) {
        char buf[24], *end;
        memcpy(buf, r->str, r->len);
        buf[r->len] = '\0';
        unsigned long long v = strtoull(buf, &end, 10);
        if (*end == '\0') {
            *out = v;
            return true;
        }
    }
    return false;
}

/* A reply the script should never give: the link's Redis is not running
 * our script, or something between is broken. */
static int bad_reply(struct tracker_announce_reply *out, const redisReply *r, const char *what)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        LOG(ERROR, COMP, "msg=\"Redis script failed\" op=%s error=\"%.200s\"", what, r->str);
    else
        LOG(ERROR, COMP, "msg=\"unexpected Redis reply\" op=%s", what);
    if (out)
        snprintf(out->error, sizeof(out->error), "state: unexpected reply from Redis");
    return SHOAL_EINTERNAL;
}

/* ---- announce ---------------------------------------------------------------- */

struct ann_op {
    struct rstate *s;
    struct tracker_announce_reply *out;
    tracker_state_announce_cb cb;
    void *arg;
    uint32_t nbad;
    struct announce_hash *list; /* the reply's hashes */
    uint8_t *confirmed;         /* the reply's confirmed flags, by piece */
};

/* Fills out from the script's reply (see reply() in state_redis.lua). */
static int take_reply(struct ann_op *op, redisReply *r)
{
    struct tracker_announce_reply *out = op->out;
    struct rstate *s = op->s;
    uint64_t v[16];

    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !is_int(r->element[0]))
        return bad_reply(out, r, "announce");
    if (r->element[0]->integer != 0) {
        const redisReply *m = r->element[1];
        snprintf(out->error, sizeof(out->error), "%.*s", is_str(m) ? (int)m->len : 0,
                 is_str(m) ? m->str : "");
        if (r->element[0]->integer == 3)
            s->st.swarms_refused++; /* the agent's max-swarms-per-agent */
        return r->element[0]->integer >= 2 ? SHOAL_EBUSY : SHOAL_EPARSE;
    }
    if (r->elements != 23 || !is_int(r->element[19]) || !is_int(r->element[20]) ||
        !is_str(r->element[7]) || !is_str(r->element[10]) || !is_str(r->element[22]) ||
        r->element[18]->type != REDIS_REPLY_ARRAY)
        return bad_reply(out, r, "announce");
    static const int nums[] = {2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16, 17, 21};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        if (!num(r->element[nums[i]], &v[i]))
            return bad_reply(out, r, "announce");
    out->piece_length = v[0];
    out->pieces = (uint32_t)v[1];
    out->table = v[2];
    out->nhashed = (uint32_t)v[3];
    out->hashes_seq = out->has_seq ? (uint32_t)v[4] : 0; /* the log position, to a follower */
    out->new_swarm = v[5] != 0;
    out->has_lease = v[6] != 0;
    out->lease_expires_ms = v[7];
    out->hashes_accepted = (uint32_t)v[8];
    out->hashes_ignored = (uint32_t)v[9];
    out->leases_released = (uint32_t)v[10];
    out->suspect_ms = v[11];

    /* The confirmed hashes: a bitmap (bit 0 the top bit of byte 0, as on
     * the wire), as flags by piece the way the memory core gives them. */
    const redisReply *cf = r->element[22];
    if (v[14] > out->nhashed || cf->len > wire_bitfield_bytes(out->pieces))
        return bad_reply(out, r, "announce");
    out->nconfirmed = (uint32_t)v[14];
    if (v[14] > 0 && cf->len > 0) {
        op->confirmed = calloc(out->pieces ? out->pieces : 1, 1);
        if (!op->confirmed)
            return -ENOMEM;
        for (uint32_t i = 0; i < out->pieces && i / 8 < cf->len; i++)
            op->confirmed[i] = wire_bit_get((const uint8_t *)cf->str, i) ? 1 : 0;
        out->confirmed = op->confirmed;
    }

    /* The hash log slice: 4-byte index and raw hash, each. */
    const redisReply *slice = r->element[7];
    size_t he = 4 + s->hash_len;
    if (slice->len % he != 0)
        return bad_reply(out, r, "announce");
    size_t n = slice->len / he;
    if (n > 0) {
        op->list = malloc(n * sizeof(*op->list));
        if (!op->list)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *e = (const uint8_t *)slice->str + i * he;
            op->list[i].index = get_be32(e);
            memcpy(op->list[i].hash, e + 4, s->hash_len);
        }
    }
    out->hash_list = op->list;
    out->nhash_list = n;

    const redisReply *lease = r->element[10];
    if (lease->len % 4 != 0 || lease->len / 4 > ANNOUNCE_LEASE_MAX)
        return bad_reply(out, r, "announce");
    out->nlease = lease->len / 4;
    for (size_t i = 0; i < out->nlease; i++)
        out->lease[i] = get_be32((const uint8_t *)lease->str + 4 * i);

    const redisReply *peers = r->element[18];
    if (peers->elements % 4 != 0 || peers->elements / 4 > ANNOUNCE_PEERS_MAX)
        return bad_reply(out, r, "announce");
    out->npeers = 0;
    for (size_t i = 0; i + 3 < peers->elements; i += 4) {
        uint64_t have, complete;
        if (!is_str(peers->element[i]) || !is_str(peers->element[i + 1]) ||
            !num(peers->element[i + 2], &have) || !num(peers->element[i + 3], &complete))
            return bad_reply(out, r, "announce");
        struct announce_peer *p = &out->peers[out->npeers++];
        /* The script stored what the core checked: NUL-free strings. */
        p->agent = peers->element[i]->str;
        p->addr = peers->element[i + 1]->str;
        p->have = (uint32_t)have;
        p->complete = complete != 0;
    }
    s->st.announces++;
    s->st.hashes_accepted += out->hashes_accepted;
    s->st.hashes_ignored += out->hashes_ignored;
    s->st.leases_granted += v[12];
    s->st.leases_expired += v[13];
    s->st.bad_peer_reports += op->nbad;
    /* The gauges between two expiry passes (which count them anew). */
    s->st.peers += (uint64_t)r->element[19]->integer;
    s->st.swarms += (uint64_t)r->element[20]->integer;
    return 0;
}

static void announce_done(void *arg, int rc, redisReply *reply)
{
    struct ann_op *op = arg;
    if (rc == 0)
        rc = take_reply(op, reply);
    else
        snprintf(op->out->error, sizeof(op->out->error), "state: Redis unavailable");
    op->cb(op->arg, rc, op->out);
    free(op->list);
    free(op->confirmed);
    free(op);
}

static int r_announce(void *impl, const struct announce_req *req, uint64_t now_ms,
                      struct tracker_announce_reply *out, tracker_state_announce_cb cb, void *arg)
{
    struct rstate *s = impl;
    int rc;

    tracker_announce_reply_reset(out);
    out->interval_ms = s->cfg.interval_ms;
    out->hash_algo = s->cfg.hash_algo;
    out->hash_len = s->hash_len;
    out->has_seq = req->has_hashes_from;
    rc = tracker_announce_check(&s->cfg, req, out);
    if (rc < 0)
        return rc;
    if (!s->link || !redis_link_up(s->link)) {
        snprintf(out->error, sizeof(out->error), "state: Redis unavailable");
        return SHOAL_EUNAVAILABLE;
    }
    for (size_t i = 0; i < req->nbad_peers; i++)
        if (strchr(req->bad_peers[i], '\n'))
            return SHOAL_EPARSE; /* check_req refused it already */

    uint64_t plen = wire_piece_length_choose(req->size, s->cfg.piece_length);
    uint64_t pieces = req->size / plen + (req->size % plen != 0);
    size_t he = 4 + s->hash_len;
    uint8_t *hashes = malloc(req->nhashes * he + 1);
    uint8_t *failed = malloc(req->nlease_failed * 4 + 1);
    size_t badlen = 0;
    for (size_t i = 0; i < req->nbad_peers; i++)
        badlen += strlen(req->bad_peers[i]) + 1;
    char *bad = malloc(badlen + 1);
    struct ann_op *op = calloc(1, sizeof(*op));
    if (!hashes || !failed || !bad || !op) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < req->nhashes; i++) {
        put_be32(hashes + i * he, req->hashes[i].index);
        memcpy(hashes + i * he + 4, req->hashes[i].hash, s->hash_len);
    }
    for (size_t i = 0; i < req->nlease_failed; i++)
        put_be32(failed + 4 * i, (uint32_t)req->lease_failed[i]);
    size_t bl = 0;
    for (size_t i = 0; i < req->nbad_peers; i++)
        bl += (size_t)snprintf(bad + bl, badlen + 1 - bl, "%s\n", req->bad_peers[i]);

    char now[24] = "", size[24], have[24], from[24], table[24], nplen[24], npieces[24], hlen[24],
         lp[24], lt[24], pt[24], keep[24], bpm[24], msw[24], msp[24], mp[24], slice[24], ntable[24],
         rank[24], quorum[24], mpa[24], seen[24] = "", spread[24];
    /* The agent's key as the memory core keys reporters and creators. */
    uint8_t akey[8];
    uint64_t key = tracker_agent_key(req->agent);
    for (int i = 0; i < 8; i++)
        akey[i] = (uint8_t)(key >> (56 - 8 * i));
    if (s->caller_clock)
        snprintf(now, sizeof(now), "%" PRIu64, now_ms);
    snprintf(size, sizeof(size), "%" PRIu64, req->size);
    snprintf(have, sizeof(have), "%" PRIu64, req->have);
    snprintf(from, sizeof(from), "%" PRIu64, req->hashes_from);
    snprintf(table, sizeof(table), "%" PRIu64, req->table);
    snprintf(nplen, sizeof(nplen), "%" PRIu64, plen);
    snprintf(npieces, sizeof(npieces), "%" PRIu64, pieces);
    snprintf(hlen, sizeof(hlen), "%zu", s->hash_len);
    snprintf(lp, sizeof(lp), "%u", s->cfg.lease_pieces);
    snprintf(spread, sizeof(spread), "%u", s->cfg.lease_spread);
    snprintf(lt, sizeof(lt), "%" PRIu64, s->cfg.lease_timeout_ms);
    snprintf(pt, sizeof(pt), "%" PRIu64, s->cfg.peer_timeout_ms);
    snprintf(keep, sizeof(keep), "%" PRIu64, s->cfg.keep_ms);
    snprintf(bpm, sizeof(bpm), "%" PRIu64, s->cfg.bad_peer_ms);
    snprintf(msw, sizeof(msw), "%zu", s->cfg.max_swarms);
    snprintf(msp, sizeof(msp), "%zu", s->cfg.max_swarm_peers);
    snprintf(mp, sizeof(mp), "%u", s->cfg.max_peers);
    snprintf(slice, sizeof(slice), "%u", ANNOUNCE_HASHES_PER_REPLY);
    snprintf(ntable, sizeof(ntable), "%" PRIu64, tracker_table_id(rnd(s)));
    snprintf(rank, sizeof(rank), "%" PRIu64, rnd(s) >> 44); /* 20 random bits */
    snprintf(quorum, sizeof(quorum), "%u", s->cfg.bad_peer_reporters);
    snprintf(mpa, sizeof(mpa), "%zu", s->cfg.max_swarms_per_agent);
    if (req->has_confirmed_seen)
        snprintf(seen, sizeof(seen), "%" PRIu64, req->confirmed_seen);
    const char *av[] = {
        "announce",
        s->prefix,
        now,
        req->digest,
        size,
        req->agent,
        req->addr,
        req->event == ANNOUNCE_EVENT_STOPPED ? "1" : "0",
        have,
        req->complete ? "1" : "0",
        req->want_lease ? "1" : "0",
        (const char *)hashes,
        (const char *)failed,
        bad,
        req->has_hashes_from ? "1" : "0",
        from,
        table,
        nplen,
        npieces,
        hlen,
        lp,
        lt,
        pt,
        keep,
        bpm,
        s->cfg.bad_peer_off ? "1" : "0",
        msw,
        msp,
        mp,
        slice,
        ntable,
        rank,
        (const char *)akey,
        req->event == ANNOUNCE_EVENT_COMPLETED ? "1" : "0",
        quorum,
        mpa,
        seen,
        spread,
    };
    size_t n = sizeof(av) / sizeof(av[0]);
    size_t lens[sizeof(av) / sizeof(av[0])];
    /* The binary arguments have their lengths; the rest are C strings. */
    for (size_t i = 0; i < n; i++)
        lens[i] = i == 11   ? req->nhashes * he
                  : i == 12 ? req->nlease_failed * 4
                  : i == 13 ? bl
                  : i == 32 ? sizeof(akey)
                            : strlen(av[i]);
    op->s = s;
    op->out = out;
    op->cb = cb;
    op->arg = arg;
    op->nbad = (uint32_t)req->nbad_peers;
    rc = redis_link_eval(s->link, (int)n, av, lens, announce_done, op);
    if (rc == 0) {
        op = NULL;
        rc = TRACKER_STATE_PENDING;
    } else {
        snprintf(out->error, sizeof(out->error), "state: Redis unavailable");
    }
out:
    free(hashes);
    free(failed);
    free(bad);
    free(op);
    return rc;
}

/* ---- expiry ------------------------------------------------------------------- */

static void expire_done(void *arg, int rc, redisReply *r)
{
    struct rstate *s = arg;
    uint64_t v[5];
    s->expiring = false;
    if (rc < 0)
        return;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        bad_reply(NULL, r, "expire");
        return;
    }
    for (int i = 0; i < 5; i++)
        if (!num(r->element[i], &v[i])) {
            bad_reply(NULL, r, "expire");
            return;
        }
    s->st.peers_expired += v[0];
    s->st.leases_expired += v[1];
    s->st.swarms = v[3];
    s->st.peers = v[4];
}

static void r_expire(void *impl, uint64_t now_ms)
{
    struct rstate *s = impl;
    cluster_expire(s, now_ms);
    if (s->expiring || !s->link || !redis_link_up(s->link))
        return;
    char now[24] = "", pt[24], lt[24], keep[24];
    if (s->caller_clock)
        snprintf(now, sizeof(now), "%" PRIu64, now_ms);
    snprintf(pt, sizeof(pt), "%" PRIu64, s->cfg.peer_timeout_ms);
    snprintf(lt, sizeof(lt), "%" PRIu64, s->cfg.lease_timeout_ms);
    snprintf(keep, sizeof(keep), "%" PRIu64, s->cfg.keep_ms);
    const char *av[] = {"expire", s->prefix, now, pt, lt, keep, EXPIRE_BATCH};
    if (redis_link_eval(s->link, 7, av, NULL, expire_done, s) == 0)
        s->expiring = true;
}

/* ---- listing ------------------------------------------------------------------ */

struct list_op {
    int (*visit)(const struct tracker_swarm_info *info, void *arg);
    void *arg;
    tracker_state_done_cb done;
    void *done_arg;
};

static void list_done(void *arg, int rc, redisReply *r)
{
    struct list_op *op = arg;
    if (rc == 0 && (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 8 != 0))
        rc = bad_reply(NULL, r, "list");
    for (size_t i = 0; rc == 0 && i < r->elements; i += 8) {
        uint64_t v[7];
        for (int k = 0; k < 7 && rc == 0; k++)
            if (!num(r->element[i + 1 + k], &v[k]))
                rc = bad_reply(NULL, r, "list");
        if (rc < 0 || !is_str(r->element[i]))
            break;
        struct tracker_swarm_info info = {
            .digest = r->element[i]->str,
            .size = v[0],
            .piece_length = v[1],
            .pieces = (uint32_t)v[2],
            .hashed = (uint32_t)v[3],
            .leased = (uint32_t)v[4],
            .peers = (uint32_t)v[5],
            .seeds = (uint32_t)v[6],
        };
        rc = op->visit(&info, op->arg);
    }
    op->done(op->done_arg, rc);
    free(op);
}

static int r_list(void *impl, uint64_t now_ms,
                  int (*visit)(const struct tracker_swarm_info *info, void *arg), void *arg,
                  tracker_state_done_cb done, void *done_arg)
{
    struct rstate *s = impl;
    char now[24] = "";
    if (!s->link)
        return SHOAL_EUNAVAILABLE;
    if (s->caller_clock)
        snprintf(now, sizeof(now), "%" PRIu64, now_ms);
    struct list_op *op = calloc(1, sizeof(*op));
    if (!op)
        return -ENOMEM;
    op->visit = visit;
    op->arg = arg;
    op->done = done;
    op->done_arg = done_arg;
    const char *av[] = {"list", s->prefix, now};
    int rc = redis_link_eval(s->link, 3, av, NULL, list_done, op);
    if (rc < 0) {
        free(op);
        return rc;
    }
    return TRACKER_STATE_PENDING;
}

static void r_stats(void *impl, struct tracker_stats *out)
{
    struct rstate *s = impl;
    struct redis_link_stats ls = {0};
    *out = s->st;
    if (s->link)
        redis_link_stats(s->link, &ls);
    out->state_up = s->link && redis_link_up(s->link) ? 1 : 0;
    out->state_outages = ls.reconnects;
}

static void r_close(void *impl)
{
    struct rstate *s = impl;
    redis_link_close(s->link);
    s->link = NULL;
}

static void r_destroy(void *impl)
{
    struct rstate *s = impl;
    redis_link_close(s->link); /* when not closed before: frees on the next loop run */
    tracker_agents_destroy(s->agents);
    tracker_jobs_destroy(s->own);
    tracker_jobs_destroy(s->peer);
    free(s->dirty);
    free(s->owners);
    if (s->secret) {
        memset(s->secret, 0, s->secret_len);
        free(s->secret);
    }
    free(s);
}

/* ---- the cluster side ---------------------------------------------------------------
 *
 * The agent inventory and the jobs are read and changed synchronously, in
 * this process's own tables (agents.c, jobs.c), and shared through Redis:
 * every heartbeat is written there at once, every change to a job this
 * replica runs at the next expiry pass (or at once for a new job), and
 * every second the replica reads what the others wrote since. A job is run
 * by the replica it was created on (its owner); the others keep a copy to
 * answer for it. When an owner stops renewing its liveness key, another
 * replica takes its unfinished jobs over (job_claim). Job ids come from a
 * counter in Redis, reserved in blocks. */

#define ID_BLOCK 64
#define JOBS_BATCH "500"

static uint64_t wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool link_up(const struct rstate *s)
{
    return s->link && redis_link_up(s->link);
}

static void dirty(struct rstate *s, uint64_t id)
{
    for (size_t i = 0; i < s->ndirty; i++)
        if (s->dirty[i] == id)
            return;
    if (s->ndirty == s->dirty_cap) {
        size_t cap = s->dirty_cap ? s->dirty_cap * 2 : 16;
        uint64_t *v = realloc(s->dirty, cap * sizeof(*v));
        if (!v)
            return; /* written at its next change */
        s->dirty = v;
        s->dirty_cap = cap;
    }
    s->dirty[s->ndirty++] = id;
}

static void ignore_reply(void *arg, int rc, redisReply *r)
{
    struct rstate *s = arg;
    if (rc == 0 && r && r->type == REDIS_REPLY_ERROR)
        bad_reply(NULL, r, "cluster");
    (void)s;
}

/* A job this replica runs, written for the others. */
struct put_op {
    struct rstate *s;
    uint64_t id;
};

static void job_put_done(void *arg, int rc, redisReply *r)
{
    struct put_op *op = arg;
    struct rstate *s = op->s;
    if (rc == 0 && is_int(r) && r->integer == 0) {
        /* Another replica took it over (we were thought gone): it is
         * theirs to run now, ours to show. */
        struct tracker_job *j = tracker_jobs_take(s->own, op->id);
        LOG(WARN, COMP, "msg=\"job taken over by another tracker replica\" job=%" PRIu64, op->id);
        if (j)
            tracker_jobs_put(s->peer, j);
    } else if (rc == 0 && r && r->type == REDIS_REPLY_ERROR) {
        bad_reply(NULL, r, "job_put");
        dirty(s, op->id);
    } else if (rc < 0) {
        dirty(s, op->id); /* again once Redis is back */
    }
    free(op);
}

static void job_write(struct rstate *s, const struct tracker_job *j, uint64_t now_ms)
{
    json_t *o = tracker_job_to_json(j, now_ms, wall_now());
    struct buf sealed;
    char *text = NULL;
    char id[24], ttl[24];
    buf_init(&sealed, 64 * 1024);
    if (o && j->credentials &&
        (cluster_seal(s->secret, s->secret_len, j->credentials, strlen(j->credentials), &sealed) <
             0 ||
         json_object_set_new(o, "credentials_sealed", json_string(sealed.data)) < 0)) {
        json_decref(o);
        o = NULL;
    }
    if (o)
        text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    buf_dispose(&sealed);
    struct put_op *op = text ? calloc(1, sizeof(*op)) : NULL;
    if (!op) {
        free(text);
        dirty(s, j->id);
        return;
    }
    op->s = s;
    op->id = j->id;
    snprintf(id, sizeof(id), "%" PRIu64, j->id);
    snprintf(ttl, sizeof(ttl), "%" PRIu64, j->state == TRACKER_JOB_PENDING ? 0 : s->keep_ms);
    const char *av[] = {"job_put", s->prefix, "", id, s->rid, text, ttl};
    if (redis_link_eval(s->link, 7, av, NULL, job_put_done, op) < 0) {
        free(op);
        dirty(s, j->id);
    }
    /* The text may hold sealed credentials: hiredis copied it. */
    memset(text, 0, strlen(text));
    free(text);
}

static void flush(struct rstate *s, uint64_t now_ms)
{
    if (!link_up(s))
        return;
    size_t n = s->ndirty;
    s->ndirty = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tracker_job *j = tracker_jobs_get(s->own, s->dirty[i]);
        if (j)
            job_write(s, j, now_ms);
    }
}

static void ids_done(void *arg, int rc, redisReply *r)
{
    struct rstate *s = arg;
    s->id_asking = false;
    if (rc == 0 && is_int(r) && r->integer >= ID_BLOCK) {
        s->id_next = (uint64_t)r->integer - ID_BLOCK + 1;
        s->id_end = (uint64_t)r->integer + 1;
    } else if (rc == 0) {
        bad_reply(NULL, r, "ids");
    }
}

static void want_ids(struct rstate *s)
{
    char n[16];
    if (s->id_asking || s->id_end - s->id_next > ID_BLOCK / 4 || !link_up(s))
        return;
    snprintf(n, sizeof(n), "%d", ID_BLOCK);
    const char *av[] = {"ids", s->prefix, "", n};
    if (redis_link_eval(s->link, 4, av, NULL, ids_done, s) == 0)
        s->id_asking = true;
}

/* Heartbeats the others took, into the local inventory. */
static void agents_done(void *arg, int rc, redisReply *r)
{
    struct rstate *s = arg;
    uint64_t redis_now, seen;
    s->agents_syncing = false;
    if (rc < 0)
        return;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || (r->elements - 1) % 3 != 0 ||
        !num(r->element[0], &redis_now)) {
        bad_reply(NULL, r, "agents_since");
        return;
    }
    uint64_t now_ms = s->last_now;
    for (size_t i = 1; i + 2 < r->elements; i += 3) {
        const redisReply *name = r->element[i], *val = r->element[i + 1];
        struct agent_info info;
        char err[160];
        if (!is_str(name) || !is_str(val) || !num(r->element[i + 2], &seen))
            continue;
        const char *nl = memchr(val->str, '\n', val->len);
        if (!nl || nl - val->str > TRACKER_REMOTE_MAX + 32)
            continue;
        char remote[TRACKER_REMOTE_MAX + 33];
        memcpy(remote, val->str, (size_t)(nl - val->str));
        remote[nl - val->str] = '\0';
        if (agent_info_decode(nl + 1, val->len - (size_t)(nl + 1 - val->str), &info, err,
                              sizeof(err)) < 0 ||
            strcmp(info.name, name->str) != 0)
            continue;
        /* Its heartbeat's time in our clock; ours may be newer already. */
        uint64_t age = redis_now > seen ? redis_now - seen : 0;
        uint64_t at = now_ms > age ? now_ms - age : 1;
        const struct tracker_agent *have = tracker_agents_find(s->agents, info.name);
        if (have && have->last_seen_ms >= at)
            continue;
        tracker_agents_heartbeat(s->agents, &info, remote, at);
    }
    /* Overlap the next look a little: a write may land in the same ms. */
    s->agents_since = redis_now > 2000 ? redis_now - 2000 : 0;
}

static void sync_agents(struct rstate *s)
{
    char since[24], timeout[24];
    if (s->agents_syncing || !link_up(s))
        return;
    snprintf(since, sizeof(since), "%" PRIu64, s->agents_since);
    snprintf(timeout, sizeof(timeout), "%" PRIu64, tracker_agents_timeout_ms(s->agents));
    const char *av[] = {"agents_since", s->prefix, "", since, timeout};
    if (redis_link_eval(s->link, 5, av, NULL, agents_done, s) == 0)
        s->agents_syncing = true;
}

struct claim_op {
    struct rstate *s;
    uint64_t id;
};

static void claim_done(void *arg, int rc, redisReply *r)
{
    struct claim_op *op = arg;
    struct rstate *s = op->s;
    if (rc == 0 && is_int(r) && r->integer == 1) {
        struct tracker_job *j = tracker_jobs_take(s->peer, op->id);
        if (j) {
            tracker_job_adopt(j, s->last_now);
            LOG(WARN, COMP,
                "msg=\"job taken over from a tracker replica that is gone\" job=%" PRIu64, op->id);
            if (tracker_jobs_put(s->own, j) == 0)
                dirty(s, op->id);
        }
    }
    free(op);
}

static void claim(struct rstate *s, uint64_t id, const char *owner)
{
    char sid[24];
    struct claim_op *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->s = s;
    op->id = id;
    snprintf(sid, sizeof(sid), "%" PRIu64, id);
    const char *av[] = {"job_claim", s->prefix, "", sid, owner, s->rid};
    if (redis_link_eval(s->link, 6, av, NULL, claim_done, op) < 0)
        free(op);
}

static void owner_set(struct rstate *s, uint64_t job, const char *rid)
{
    for (size_t i = 0; i < s->nowners; i++)
        if (s->owners[i].job == job) {
            snprintf(s->owners[i].rid, sizeof(s->owners[i].rid), "%s", rid);
            return;
        }
    if (s->nowners == s->owners_cap) {
        size_t cap = s->owners_cap ? s->owners_cap * 2 : 16;
        struct owner *v = realloc(s->owners, cap * sizeof(*v));
        if (!v)
            return;
        s->owners = v;
        s->owners_cap = cap;
    }
    s->owners[s->nowners].job = job;
    snprintf(s->owners[s->nowners].rid, sizeof(s->owners[s->nowners].rid), "%s", rid);
    s->nowners++;
}

/* Jobs the others wrote (or gave up), into the copy; the unfinished jobs
 * of a replica that is gone, taken over. */
static void jobs_done(void *arg, int rc, redisReply *r)
{
    struct rstate *s = arg;
    uint64_t now_ms = s->last_now, wall = wall_now();
    s->jobs_syncing = false;
    if (rc < 0)
        return;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 5 != 0) {
        bad_reply(NULL, r, "jobs_since");
        return;
    }
    for (size_t i = 0; i + 4 < r->elements; i += 5) {
        uint64_t id, version, alive;
        const redisReply *owner = r->element[i + 2], *json = r->element[i + 3];
        if (!num(r->element[i], &id) || !num(r->element[i + 1], &version) ||
            !num(r->element[i + 4], &alive) || !is_str(owner) || !is_str(json))
            continue;
        if (version > s->jobs_since)
            s->jobs_since = version;
        if (owner->len == 0) { /* its key expired: finished and past job-keep */
            tracker_job_free(tracker_jobs_take(s->peer, id));
            continue;
        }
        if (strcmp(owner->str, s->rid) == 0 || tracker_jobs_get(s->own, id))
            continue; /* ours: this table is the truth */
        json_error_t jerr;
        json_t *o = json_loadb(json->str, json->len, 0, &jerr);
        struct tracker_job *j = NULL;
        char err[200];
        if (!o || tracker_job_from_json(o, now_ms, wall, &j, err, sizeof(err)) < 0) {
            LOG(WARN, COMP, "msg=\"unreadable job from another replica\" job=%" PRIu64, id);
            json_decref(o);
            continue;
        }
        const char *sealed = json_string_value(json_object_get(o, "credentials_sealed"));
        if (sealed && j->state == TRACKER_JOB_PENDING) {
            struct buf plain;
            buf_init(&plain, CLUSTER_SEAL_PLAIN_MAX + 1);
            if (cluster_unseal(s->secret, s->secret_len, sealed, &plain) == 0 && plain.data)
                j->credentials = strdup(plain.data);
            if (plain.data)
                memset(plain.data, 0, plain.len);
            buf_dispose(&plain);
        }
        json_decref(o);
        bool pending = j->state == TRACKER_JOB_PENDING;
        if (tracker_jobs_put(s->peer, j) < 0)
            continue;
        if (pending)
            owner_set(s, id, owner->str);
        if (pending && !alive)
            claim(s, id, owner->str);
    }
}

static void sync_jobs(struct rstate *s)
{
    char since[24];
    if (s->jobs_syncing || !link_up(s))
        return;
    snprintf(since, sizeof(since), "%" PRIu64, s->jobs_since);
    const char *av[] = {"jobs_since", s->prefix, "", since, JOBS_BATCH};
    if (redis_link_eval(s->link, 5, av, NULL, jobs_done, s) == 0)
        s->jobs_syncing = true;
}

/* Forgets the owners of jobs no longer unfinished in the copy. */
static void owners_prune(struct rstate *s)
{
    size_t w = 0;
    for (size_t i = 0; i < s->nowners; i++) {
        const struct tracker_job *j = tracker_jobs_get(s->peer, s->owners[i].job);
        if (j && j->state == TRACKER_JOB_PENDING)
            s->owners[w++] = s->owners[i];
    }
    s->nowners = w;
}

#define CHECK_MAX 32

struct check_op {
    struct rstate *s;
    size_t n;
    char rid[CHECK_MAX][33];
};

static void check_done(void *arg, int rc, redisReply *r)
{
    struct check_op *op = arg;
    struct rstate *s = op->s;
    s->checking = false;
    if (rc == 0 && r && r->type == REDIS_REPLY_ARRAY && r->elements == op->n) {
        for (size_t k = 0; k < op->n; k++) {
            if (!is_int(r->element[k]) || r->element[k]->integer != 0)
                continue;
            /* Gone: its unfinished jobs are taken over. */
            for (size_t i = 0; i < s->nowners; i++)
                if (strcmp(s->owners[i].rid, op->rid[k]) == 0)
                    claim(s, s->owners[i].job, op->rid[k]);
        }
    }
    free(op);
}

/* Are the replicas running the others' unfinished jobs still there? */
static void check_owners(struct rstate *s)
{
    owners_prune(s);
    if (s->checking || s->nowners == 0)
        return;
    struct check_op *op = calloc(1, sizeof(*op));
    const char *av[3 + CHECK_MAX];
    if (!op)
        return;
    op->s = s;
    for (size_t i = 0; i < s->nowners && op->n < CHECK_MAX; i++) {
        size_t k;
        for (k = 0; k < op->n && strcmp(op->rid[k], s->owners[i].rid) != 0; k++)
            ;
        if (k == op->n)
            memcpy(op->rid[op->n++], s->owners[i].rid, 33);
    }
    av[0] = "alive_check";
    av[1] = s->prefix;
    av[2] = "";
    for (size_t k = 0; k < op->n; k++)
        av[3 + k] = op->rid[k];
    if (redis_link_eval(s->link, (int)(3 + op->n), av, NULL, check_done, op) == 0)
        s->checking = true;
    else
        free(op);
}

static void cluster_tick(struct rstate *s, uint64_t now_ms)
{
    char ttl[24];
    s->last_now = now_ms;
    if (!link_up(s))
        return;
    snprintf(ttl, sizeof(ttl), "%" PRIu64, s->owner_ttl_ms);
    const char *av[] = {"alive", s->prefix, "", s->rid, ttl};
    redis_link_eval(s->link, 5, av, NULL, ignore_reply, s);
    flush(s, now_ms);
    want_ids(s);
    sync_agents(s);
    sync_jobs(s);
    check_owners(s);
}

static void agent_gone(const struct tracker_agent *a, void *arg)
{
    struct rstate *s = arg;
    tracker_jobs_agent_gone(s->own, a->info.name, tracker_agents_timeout_ms(s->agents),
                            s->last_now);
}

static int mark_pending(const struct tracker_job *j, void *arg)
{
    struct rstate *s = arg;
    if (j->state == TRACKER_JOB_PENDING)
        dirty(s, j->id);
    return 0;
}

/* The expiry pass's cluster part: local expiry, then the sync. */
static void cluster_expire(struct rstate *s, uint64_t now_ms)
{
    s->last_now = now_ms;
    /* Every unfinished job of ours may change here (timeouts, agents gone). */
    tracker_jobs_list(s->own, mark_pending, s);
    tracker_agents_expire(s->agents, now_ms, agent_gone, s);
    tracker_jobs_expire(s->own, now_ms);
    tracker_jobs_expire(s->peer, now_ms);
    cluster_tick(s, now_ms);
}

static int r_agent_heartbeat(void *impl, const struct agent_info *info, const char *remote,
                             uint64_t now_ms)
{
    struct rstate *s = impl;
    int rc = tracker_agents_heartbeat(s->agents, info, remote, now_ms);
    if (rc < 0 || !link_up(s))
        return rc;
    /* The others learn of it within their next second. */
    struct buf v;
    buf_init(&v, 2 * AGENT_INFO_BODY_MAX);
    if (buf_printf(&v, "%s\n", remote ? remote : "") == 0 && agent_info_encode(info, &v) == 0) {
        const char *av[] = {"agent_put", s->prefix, "", info->name, v.data};
        size_t lens[] = {9, strlen(s->prefix), 0, strlen(info->name), v.len};
        redis_link_eval(s->link, 5, av, lens, ignore_reply, s);
    }
    buf_dispose(&v);
    return rc;
}

struct agents_visit {
    int (*visit)(const struct tracker_agent *a, void *arg);
    void *arg;
};

static int r_agents_list(void *impl, int (*visit)(const struct tracker_agent *a, void *arg),
                         void *arg)
{
    struct rstate *s = impl;
    for (size_t i = 0; i < tracker_agents_count(s->agents); i++) {
        int rc = visit(tracker_agents_at(s->agents, i), arg);
        if (rc)
            return rc;
    }
    return 0;
}

static size_t r_agents_count(void *impl)
{
    struct rstate *s = impl;
    return tracker_agents_count(s->agents);
}

static uint64_t r_agent_timeout_ms(void *impl)
{
    struct rstate *s = impl;
    return tracker_agents_timeout_ms(s->agents);
}

static int r_job_add(void *impl, const struct tracker_job_spec *spec, const char *credentials,
                     uint64_t now_ms, uint64_t wall_ms, uint64_t *id)
{
    struct rstate *s = impl;
    /* Ids are the cluster's: only from a block Redis gave this replica. */
    if (s->id_next >= s->id_end) {
        want_ids(s);
        return SHOAL_EUNAVAILABLE;
    }
    tracker_jobs_set_next_id(s->own, s->id_next);
    int rc = tracker_jobs_add(s->own, spec, credentials, s->agents, now_ms, wall_ms, id);
    if (rc < 0)
        return rc;
    s->id_next = *id + 1;
    s->last_now = now_ms;
    dirty(s, *id);
    flush(s, now_ms);
    want_ids(s);
    return 0;
}

static const struct tracker_job *r_job_get(void *impl, uint64_t id)
{
    struct rstate *s = impl;
    const struct tracker_job *j = tracker_jobs_get(s->own, id);
    return j ? j : tracker_jobs_get(s->peer, id);
}

/* Both tables, newest first. */
struct collect {
    const struct tracker_job **v;
    size_t n, cap;
};

static int collect_job(const struct tracker_job *j, void *arg)
{
    struct collect *c = arg;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        const struct tracker_job **v = realloc(c->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = j;
    return 0;
}

static int newer_first(const void *a, const void *b)
{
    const struct tracker_job *x = *(const struct tracker_job *const *)a;
    const struct tracker_job *y = *(const struct tracker_job *const *)b;
    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static int r_jobs_list(void *impl, int (*visit)(const struct tracker_job *j, void *arg), void *arg)
{
    struct rstate *s = impl;
    struct collect c = {0};
    int rc = tracker_jobs_list(s->own, collect_job, &c);
    if (rc == 0)
        rc = tracker_jobs_list(s->peer, collect_job, &c);
    if (rc == 0) {
        qsort(c.v, c.n, sizeof(*c.v), newer_first);
        for (size_t i = 0; i < c.n && rc == 0; i++)
            rc = visit(c.v[i], arg);
    }
    free(c.v);
    return rc;
}

static size_t r_jobs_start_due(void *impl, uint64_t now_ms, struct tracker_task_ref *out,
                               size_t max)
{
    struct rstate *s = impl;
    size_t n = tracker_jobs_start_due(s->own, now_ms, out, max);
    for (size_t i = 0; i < n; i++)
        dirty(s, out[i].job);
    return n;
}

static size_t r_jobs_running(void *impl, struct tracker_task_ref *out, size_t max)
{
    struct rstate *s = impl;
    return tracker_jobs_running(s->own, out, max);
}

static void r_job_event(void *impl, const struct tracker_task_event *ev, uint64_t now_ms)
{
    struct rstate *s = impl;
    tracker_jobs_event(s->own, ev, now_ms);
    dirty(s, ev->ref.job);
}

static uint64_t r_job_find_recent(void *impl, const struct tracker_job_spec *spec,
                                  uint64_t within_ms, uint64_t now_ms)
{
    struct rstate *s = impl;
    uint64_t id = tracker_jobs_find_recent(s->own, spec, within_ms, now_ms);
    return id ? id : tracker_jobs_find_recent(s->peer, spec, within_ms, now_ms);
}

static void r_jobs_stats(void *impl, struct tracker_jobs_stats *out)
{
    struct rstate *s = impl;
    struct tracker_jobs_stats peer;
    tracker_jobs_stats(s->own, out);
    tracker_jobs_stats(s->peer, &peer);
    /* Counters are this replica's; the gauges are the cluster's. */
    out->pending += peer.pending;
    out->tasks_running += peer.tasks_running;
}

static const struct tracker_state_ops redis_ops = {
    .name = "redis",
    .deferred = true,
    .announce = r_announce,
    .expire = r_expire,
    .list = r_list,
    .stats = r_stats,
    .close = r_close,
    .destroy = r_destroy,
    .agent_heartbeat = r_agent_heartbeat,
    .agents_list = r_agents_list,
    .agents_count = r_agents_count,
    .agent_timeout_ms = r_agent_timeout_ms,
    .job_add = r_job_add,
    .job_get = r_job_get,
    .jobs_list = r_jobs_list,
    .jobs_start_due = r_jobs_start_due,
    .jobs_running = r_jobs_running,
    .job_event = r_job_event,
    .job_find_recent = r_job_find_recent,
    .jobs_stats = r_jobs_stats,
};

int tracker_state_redis_create(uv_loop_t *loop, const struct tracker_state_redis_config *rcfg,
                               const struct tracker_swarms_config *cfg,
                               const struct tracker_cluster_config *cl, struct tracker_state **out,
                               char *err, size_t errlen)
{
    struct redis_link_target target;
    struct tracker_state *st = NULL;
    struct rstate *s = NULL;
    const char *prefix = rcfg->prefix ? rcfg->prefix : "shoal:";
    int rc;

    *out = NULL;
    rc = redis_link_parse_url(rcfg->url, &target, err, errlen);
    if (rc < 0)
        return rc;
    if (prefix[0] == '\0' || strlen(prefix) > TRACKER_REDIS_PREFIX_MAX ||
        strpbrk(prefix, " \n\r\t")) {
        snprintf(err, errlen, "the key prefix must be 1 to %d characters without spaces",
                 TRACKER_REDIS_PREFIX_MAX);
        return SHOAL_ECONFIG;
    }
    st = calloc(1, sizeof(*st));
    s = calloc(1, sizeof(*s));
    if (!st || !s) {
        rc = -ENOMEM;
        goto fail;
    }
    if (tracker_swarms_config_resolve(cfg, &s->cfg) < 0) {
        snprintf(err, errlen, "swarm settings out of range");
        rc = SHOAL_ECONFIG;
        goto fail;
    }
    s->loop = loop;
    s->hash_len = wire_hash_len(s->cfg.hash_algo);
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    s->caller_clock = rcfg->caller_clock;
    s->rng = s->cfg.seed;
    static const struct tracker_cluster_config cl_defaults = {.agent_timeout_ms = 30000};
    if (!cl)
        cl = &cl_defaults;
    rc = tracker_agents_create(cl->agent_timeout_ms ? cl->agent_timeout_ms : 30000, cl->max_agents,
                               &s->agents);
    if (rc == 0)
        rc = tracker_jobs_create(&cl->jobs, &s->own);
    if (rc == 0)
        rc = tracker_jobs_create(&cl->jobs, &s->peer);
    if (rc < 0)
        goto fail;
    s->keep_ms = cl->jobs.keep_ms ? cl->jobs.keep_ms : 2 * 3600 * 1000ULL;
    s->owner_ttl_ms = rcfg->owner_ttl_ms ? rcfg->owner_ttl_ms : 5000;
    s->secret = malloc(rcfg->secret_len + 1);
    if (!s->secret) {
        rc = -ENOMEM;
        goto fail;
    }
    if (rcfg->secret_len)
        memcpy(s->secret, rcfg->secret, rcfg->secret_len);
    s->secret_len = rcfg->secret_len;
    uint8_t rid[16];
    for (int i = 0; i < 16; i++)
        rid[i] = (uint8_t)(rnd(s) >> 56);
    hash_to_hex(rid, sizeof(rid), s->rid);
    struct redis_link_config lc = {
        .target = target,
        .password = rcfg->password,
        .password_len = rcfg->password_len,
        .timeout_ms = rcfg->timeout_ms,
        .script = tracker_state_redis_lua,
        .on_state = rcfg->on_state,
        .arg = rcfg->arg,
    };
    rc = redis_link_create(loop, &lc, &s->link);
    if (rc < 0)
        goto fail;
    st->ops = &redis_ops;
    st->impl = s;
    *out = st;
    return 0;
fail:
    if (s) {
        tracker_agents_destroy(s->agents);
        tracker_jobs_destroy(s->own);
        tracker_jobs_destroy(s->peer);
        free(s->secret);
    }
    free(s);
    free(st);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    return rc;
}

bool tracker_state_redis_up(const struct tracker_state *st)
{
    if (st == NULL || st->ops != &redis_ops)
        return false;
    const struct rstate *s = st->impl;
    return s->link && redis_link_up(s->link);
}
