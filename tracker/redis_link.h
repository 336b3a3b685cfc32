/* One connection to Redis on the tracker's loop (hiredis's asynchronous
 * API, driven by a uv_poll_t), for the Redis state backend (state_redis.c).
 *
 * The link resolves the host without blocking the loop, connects, sends
 * AUTH (with a password) and SELECT, loads the backend's Lua script (SCRIPT
 * LOAD) and is then up: commands are pipelined on the one connection and
 * answered in order. Whatever goes wrong (refused, reset, an AUTH error, no
 * answer within timeout_ms to the oldest command in flight, the script
 * flushed from Redis) takes the link down: every command in flight fails
 * with SHOAL_EUNAVAILABLE, and it reconnects after a back-off growing from
 * 100 ms to 2 s. While it is down, commands are refused at once
 * (SHOAL_EUNAVAILABLE), so the tracker answers 503 instead of queueing.
 *
 * Callbacks never run from inside the call that started the command, except
 * redis_link_close, which fails the commands in flight (SHOAL_ECANCELED)
 * before it returns.
 */
#ifndef SHOAL_TRACKER_REDIS_LINK_H
#define SHOAL_TRACKER_REDIS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct redisReply;
struct redis_link;

#define REDIS_LINK_HOST_MAX 255

/* Where Redis is: redis://HOST[:PORT][/DB]. */
struct redis_link_target {
    char host[REDIS_LINK_HOST_MAX + 1];
    int port; /* default 6379 */
    int db;   /* default 0 */
};

/* Parses "redis://HOST[:PORT][/DB]" ([V6] hosts in brackets). 0, or
 * SHOAL_ECONFIG with err saying what is wrong. */
int redis_link_parse_url(const char *url, struct redis_link_target *out, char *err, size_t errlen);

struct redis_link_config {
    struct redis_link_target target;
    const char *password; /* AUTH with it; NULL or "" = none (copied) */
    size_t password_len;
    uint64_t timeout_ms; /* the oldest command in flight waits at most this; default 2 s */
    const char *script;  /* Lua source loaded on every connect (borrowed, must outlive) */
    /* The link went up (true) or down (false); may be NULL. */
    void (*on_state)(void *arg, bool up);
    void *arg;
};

/* Starts connecting (the first attempt on the next loop turn). 0 or
 * -ENOMEM. */
int redis_link_create(uv_loop_t *loop, const struct redis_link_config *cfg,
                      struct redis_link **out);

/* Fails what is in flight with SHOAL_ECANCELED, stops reconnecting and
 * frees the link once its handles are closed (run the loop). NULL-safe. */
void redis_link_close(struct redis_link *l);

bool redis_link_up(const struct redis_link *l);

/* rc 0 with Redis's reply (borrowed for the call; it may be an error
 * reply), or SHOAL_EUNAVAILABLE / SHOAL_ECANCELED with reply NULL. */
typedef void (*redis_link_cb)(void *arg, int rc, struct redisReply *reply);

/* Sends one command (argv copied). 0, or SHOAL_EUNAVAILABLE (the link is
 * down) / -ENOMEM: then cb never runs. */
int redis_link_command(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                       redis_link_cb cb, void *arg);

/* EVALSHA of the loaded script with no KEYS and these ARGV. Same returns.
 * A reply saying the script is gone (NOSCRIPT) takes the link down, so it
 * loads it again. */
int redis_link_eval(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                    redis_link_cb cb, void *arg);

struct redis_link_stats {
    uint64_t commands;   /* sent */
    uint64_t failures;   /* commands that ended without a reply */
    uint64_t reconnects; /* times the link went down */
    uint64_t in_flight;
};
void redis_link_stats(const struct redis_link *l, struct redis_link_stats *out);

#endif
