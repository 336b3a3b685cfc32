/* Token-bucket rate limiter; see shoal/ratelimit.h. */
#include "shoal/ratelimit.h"

#include <stddef.h>

static uint64_t burst_for(uint64_t rate, uint64_t burst)
{
    if (burst == 0)
        burst = rate ? rate : 1;
    return burst > RATELIMIT_MAX_BURST ? RATELIMIT_MAX_BURST : burst;
}

/* The token count (thousandths of a byte) the bucket holds at now_ms, without
 * changing it. A rate of r bytes/s earns exactly r thousandths of a byte per
 * millisecond, so the refill is elapsed * r, computed only when it cannot
 * pass the cap (and so cannot overflow). */
static uint64_t tokens_at(const struct ratelimit *rl, uint64_t now_ms)
{
    uint64_t cap = rl->burst * 1000, room, elapsed;

    if (!rl->started || now_ms <= rl->last_ms)
        return rl->tokens;
    elapsed = now_ms - rl->last_ms;
    room = cap - rl->tokens;
    if (elapsed > room / rl->rate)
        return cap;
    return rl->tokens + elapsed * rl->rate;
}

/* Brings the bucket up to now_ms. Going backwards leaves last_ms where it
 * is, so the time up to it is not earned twice when the clock catches up. */
static void refill(struct ratelimit *rl, uint64_t now_ms)
{
    rl->tokens = tokens_at(rl, now_ms);
    if (!rl->started || now_ms > rl->last_ms)
        rl->last_ms = now_ms;
    rl->started = true;
}

void ratelimit_init(struct ratelimit *rl, uint64_t rate_bytes_per_s, uint64_t burst_bytes)
{
    rl->rate = rate_bytes_per_s;
    rl->burst = burst_for(rate_bytes_per_s, burst_bytes);
    rl->tokens = rl->burst * 1000;
    rl->last_ms = 0;
    rl->started = false;
}

void ratelimit_set_rate(struct ratelimit *rl, uint64_t rate_bytes_per_s, uint64_t burst_bytes,
                        uint64_t now_ms)
{
    bool was_unlimited = rl->rate == 0;

    if (!was_unlimited)
        refill(rl, now_ms);
    else if (!rl->started || now_ms > rl->last_ms) {
        rl->last_ms = now_ms;
        rl->started = true;
    }
    rl->rate = rate_bytes_per_s;
    rl->burst = burst_for(rate_bytes_per_s, burst_bytes);
    if (was_unlimited || rl->tokens > rl->burst * 1000)
        rl->tokens = rl->burst * 1000;
}

uint64_t ratelimit_take(struct ratelimit *rl, uint64_t want, uint64_t now_ms)
{
    uint64_t n;

    if (rl->rate == 0)
        return want;
    refill(rl, now_ms);
    n = rl->tokens / 1000;
    if (n > want)
        n = want;
    rl->tokens -= n * 1000;
    return n;
}

uint64_t ratelimit_wait_ms(const struct ratelimit *rl, uint64_t want, uint64_t now_ms)
{
    uint64_t have, need;

    if (rl->rate == 0)
        return 0;
    if (want > rl->burst)
        want = rl->burst;
    need = want * 1000;
    have = tokens_at(rl, now_ms);
    if (have >= need)
        return 0;
    /* Round up: after that many milliseconds the bucket holds at least
     * need. need - have < 2^64 and rate >= 1, so this cannot overflow. */
    return (need - have - 1) / rl->rate + 1;
}

uint64_t ratelimit_available(const struct ratelimit *rl, uint64_t now_ms)
{
    if (rl->rate == 0)
        return UINT64_MAX;
    return tokens_at(rl, now_ms) / 1000;
}

uint64_t ratelimit_rate(const struct ratelimit *rl)
{
    return rl->rate;
}

uint64_t ratelimit_burst(const struct ratelimit *rl)
{
    return rl->burst;
}

bool ratelimit_try(struct ratelimit *rl, uint64_t n, uint64_t now_ms)
{
    if (!rl || ratelimit_rate(rl) == 0)
        return true;
    uint64_t burst = ratelimit_burst(rl);
    if (n > burst)
        n = burst;
    if (ratelimit_available(rl, now_ms) < n)
        return false;
    ratelimit_take(rl, n, now_ms);
    return true;
}
