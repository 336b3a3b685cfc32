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

#include <hiredis/hiredis.h>

#include "redis_link.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/wire.h"

#define COMP "state"
#define EXPIRE_BATCH "5000"

/* state_redis_lua.c, generated from state_redis.lua. */
extern const char tracker_state_redis_lua[];

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
    /* The agent inventory and the jobs, in this process for now. */
    struct tracker_state *local;
};

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
        return r->element[0]->integer == 2 ? SHOAL_EBUSY : SHOAL_EPARSE;
    }
    if (r->elements != 21 || !is_int(r->element[19]) || !is_int(r->element[20]) ||
        !is_str(r->element[7]) || !is_str(r->element[10]) ||
        r->element[18]->type != REDIS_REPLY_ARRAY)
        return bad_reply(out, r, "announce");
    static const int nums[] = {2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16, 17};
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
        bl += (size_t)sprintf(bad + bl, "%s\n", req->bad_peers[i]);

    char now[24] = "", size[24], have[24], from[24], table[24], nplen[24], npieces[24], hlen[24],
         lp[24], lt[24], pt[24], keep[24], bpm[24], msw[24], msp[24], mp[24], slice[24], ntable[24],
         rank[24];
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
    };
    size_t n = sizeof(av) / sizeof(av[0]);
    size_t lens[sizeof(av) / sizeof(av[0])];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(av[i]);
    lens[11] = req->nhashes * he;
    lens[12] = req->nlease_failed * 4;
    lens[13] = bl;
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
    tracker_state_expire(s->local, now_ms);
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
    tracker_state_destroy(s->local);
    free(s);
}

/* ---- the cluster side: the local inventory and jobs ------------------------------ */

static int r_agent_heartbeat(void *impl, const struct agent_info *info, const char *remote,
                             uint64_t now_ms)
{
    struct rstate *s = impl;
    return tracker_state_agent_heartbeat(s->local, info, remote, now_ms);
}

static int r_agents_list(void *impl, int (*visit)(const struct tracker_agent *a, void *arg),
                         void *arg)
{
    struct rstate *s = impl;
    return tracker_state_agents_list(s->local, visit, arg);
}

static size_t r_agents_count(void *impl)
{
    struct rstate *s = impl;
    return tracker_state_agents_count(s->local);
}

static uint64_t r_agent_timeout_ms(void *impl)
{
    struct rstate *s = impl;
    return tracker_state_agent_timeout_ms(s->local);
}

static int r_job_add(void *impl, const struct tracker_job_spec *spec, const char *credentials,
                     uint64_t now_ms, uint64_t wall_ms, uint64_t *id)
{
    struct rstate *s = impl;
    return tracker_state_job_add(s->local, spec, credentials, now_ms, wall_ms, id);
}

static const struct tracker_job *r_job_get(void *impl, uint64_t id)
{
    struct rstate *s = impl;
    return tracker_state_job_get(s->local, id);
}

static int r_jobs_list(void *impl, int (*visit)(const struct tracker_job *j, void *arg), void *arg)
{
    struct rstate *s = impl;
    return tracker_state_jobs_list(s->local, visit, arg);
}

static size_t r_jobs_start_due(void *impl, uint64_t now_ms, struct tracker_task_ref *out,
                               size_t max)
{
    struct rstate *s = impl;
    return tracker_state_jobs_start_due(s->local, now_ms, out, max);
}

static size_t r_jobs_running(void *impl, struct tracker_task_ref *out, size_t max)
{
    struct rstate *s = impl;
    return tracker_state_jobs_running(s->local, out, max);
}

static void r_job_event(void *impl, const struct tracker_task_event *ev, uint64_t now_ms)
{
    struct rstate *s = impl;
    tracker_state_job_event(s->local, ev, now_ms);
}

static uint64_t r_job_find_recent(void *impl, const struct tracker_job_spec *spec,
                                  uint64_t within_ms, uint64_t now_ms)
{
    struct rstate *s = impl;
    return tracker_state_job_find_recent(s->local, spec, within_ms, now_ms);
}

static void r_jobs_stats(void *impl, struct tracker_jobs_stats *out)
{
    struct rstate *s = impl;
    tracker_state_jobs_stats(s->local, out);
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
    rc = tracker_state_memory_create(cfg, cl, &s->local);
    if (rc < 0)
        goto fail;
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
    if (s)
        tracker_state_destroy(s->local);
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
