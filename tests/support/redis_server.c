/* A redis-server child process for unit tests (support/redis_server.h). */
#include "support/redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "support/port.h"

#define REDIS_BIN "/usr/bin/redis-server"

/* Every server started and not stopped yet, by PID: a failing test jumps
 * out of its function before its own cleanup, so the process stops them at
 * exit. */
#define LIVE_MAX 16
static pid_t live[LIVE_MAX];

static void stop_live(void)
{
    for (int i = 0; i < LIVE_MAX; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

static void track(pid_t pid)
{
    static bool registered;
    if (!registered) {
        atexit(stop_live);
        registered = true;
    }
    for (int i = 0; i < LIVE_MAX; i++)
        if (live[i] <= 0) {
            live[i] = pid;
            return;
        }
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < LIVE_MAX; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static int accepts(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void spawn(struct redis_server *r, const char *const *extra)
{
    char port[16];
    const char *argv[48] = {REDIS_BIN, "--bind",     "127.0.0.1",    "--port", port,
                            "--save",  "",           "--appendonly", "no",     "--daemonize",
                            "no",      "--loglevel", "warning"};
    size_t n = 13;

    snprintf(port, sizeof(port), "%d", r->port);
    for (; extra && *extra && n < 46; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid > 0)
        track(r->pid);
    if (r->pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(REDIS_BIN, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        int status;
        if (accepts(r->port))
            return;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            untrack(r->pid);
            r->pid = 0;
            fail_msg("redis-server exited at start (status %d)", status);
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("redis-server did not listen on port %d", r->port);
}

void redis_server_start(struct redis_server *r, const char *const *extra)
{
    memset(r, 0, sizeof(*r));
    if (access(REDIS_BIN, X_OK) != 0) {
        const char *ci = getenv("CI");
        if (ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0))
            fail_msg("%s is missing; `make deps` installs it (Debian redis-server)", REDIS_BIN);
        skip();
    }
    r->port = port_closed();
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
    spawn(r, extra);
}

static void end(struct redis_server *r, int sig)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, sig);
    waitpid(r->pid, NULL, 0);
    untrack(r->pid);
    r->pid = 0;
}

void redis_server_kill(struct redis_server *r)
{
    end(r, SIGKILL);
}

void redis_server_stop(struct redis_server *r)
{
    end(r, SIGTERM);
}

void redis_server_restart(struct redis_server *r, const char *const *extra)
{
    end(r, SIGTERM);
    spawn(r, extra);
}
