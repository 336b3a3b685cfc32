/* Token-bucket rate limiter, as pure functions of a now_ms argument.
 *
 * The bucket holds up to `burst` bytes and refills at `rate` bytes per
 * second. Tokens are counted in thousandths of a byte, so a refill of
 * elapsed_ms * rate is exact: no rounding drift however the calls are spaced,
 * and a rate of a few bytes per second still refills in small steps. Every
 * product is checked so that no rate, burst or time can overflow.
 *
 * Time only moves forward: a now_ms smaller than the last one seen is treated
 * as that last one (nothing refills, nothing is lost), so timestamps that
 * jitter back and forth never earn the same milliseconds twice. Feed it a
 * monotonic clock (uv_now()): after a real step backwards the bucket would
 * not refill until the clock has caught up.
 */
#ifndef SHOAL_RATELIMIT_H
#define SHOAL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Largest burst: beyond it the token count in thousandths of a byte would
 * overflow 64 bits. Larger bursts are clamped to it. */
#define RATELIMIT_MAX_BURST (UINT64_MAX / 1000)

/* Embedded in its owner; nothing to dispose. Fields are private. */
struct ratelimit {
    uint64_t rate;    /* bytes per second; 0 = unlimited */
    uint64_t burst;   /* bucket size in bytes */
    uint64_t tokens;  /* thousandths of a byte, <= burst * 1000 */
    uint64_t last_ms; /* time of the last refill */
    bool started;     /* false until the first call that takes a now_ms */
};

/* Sets up a limiter of rate_bytes_per_s (0 = unlimited) with a bucket of
 * burst_bytes (0 = one second's worth, at least 1 byte), starting full. */
void ratelimit_init(struct ratelimit *rl, uint64_t rate_bytes_per_s, uint64_t burst_bytes);

/* Changes the rate and burst (same meaning as in ratelimit_init()) at now_ms.
 * Tokens earned at the old rate up to now_ms are kept, clamped to the new
 * burst; leaving unlimited mode starts with a full bucket. */
void ratelimit_set_rate(struct ratelimit *rl, uint64_t rate_bytes_per_s, uint64_t burst_bytes,
                        uint64_t now_ms);

/* Takes up to want bytes at now_ms and returns how many may be sent now
 * (0..want): all of them when unlimited, else at most the whole bytes in the
 * bucket. */
uint64_t ratelimit_take(struct ratelimit *rl, uint64_t want, uint64_t now_ms);

/* Milliseconds from now_ms until min(want, burst) bytes are in the bucket
 * (0 if they already are, or when unlimited); a ratelimit_take() of want at
 * now_ms + that delay returns at least min(want, burst) (when now_ms is not
 * behind the last time seen). Changes nothing. */
uint64_t ratelimit_wait_ms(const struct ratelimit *rl, uint64_t want, uint64_t now_ms);

/* Whole bytes in the bucket at now_ms (UINT64_MAX when unlimited). Changes
 * nothing. */
uint64_t ratelimit_available(const struct ratelimit *rl, uint64_t now_ms);

/* The configured rate in bytes per second (0 = unlimited) and burst. */
/* All or nothing: takes n bytes (at most the burst) if that many are
 * available now and returns true; otherwise takes nothing. An unlimited
 * bucket (rate 0, or rl NULL) always says yes. */
bool ratelimit_try(struct ratelimit *rl, uint64_t n, uint64_t now_ms);

uint64_t ratelimit_rate(const struct ratelimit *rl);
uint64_t ratelimit_burst(const struct ratelimit *rl);

#endif
