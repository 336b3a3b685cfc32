/* A real redis-server for unit tests of the Redis state backend: started on
 * 127.0.0.1 with a port the kernel handed out, no persistence, stopped by
 * PID. When redis-server is not installed, redis_server_start fails the
 * test under CI=true (where `make deps` installed it) and skips it
 * otherwise, as the system tests do. */
#ifndef SHOAL_SUPPORT_REDIS_SERVER_H
#define SHOAL_SUPPORT_REDIS_SERVER_H

#include <sys/types.h>

struct redis_server {
    pid_t pid;
    int port;
    char url[64]; /* redis://127.0.0.1:<port>/0 */
};

/* Starts it and waits until it accepts connections (asserts). extra: more
 * "--name value" arguments, NULL-terminated, or NULL. */
void redis_server_start(struct redis_server *r, const char *const *extra);

/* SIGKILL (hard: connections reset) or SIGTERM, then waits. Idempotent. */
void redis_server_kill(struct redis_server *r);
void redis_server_stop(struct redis_server *r);

/* Starts it again on the same port (after kill or stop). */
void redis_server_restart(struct redis_server *r, const char *const *extra);

#endif /* SHOAL_SUPPORT_REDIS_SERVER_H */
