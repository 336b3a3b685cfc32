/* TCP ports on 127.0.0.1 for unit tests: never fixed numbers, always what
 * the kernel hands out for port 0. Helpers assert (cmocka) on failure. */
#ifndef SHOAL_SUPPORT_PORT_H
#define SHOAL_SUPPORT_PORT_H

#include <uv.h>

/* Initialises tcp on loop, binds it to 127.0.0.1:0, listens (backlog 64)
 * with on_conn and returns the port. tcp->data is left to the caller. */
int port_listen(uv_loop_t *loop, uv_tcp_t *tcp, uv_connection_cb on_conn);

/* The local port a bound handle got. */
int port_of(const uv_tcp_t *tcp);

/* A port that was free a moment ago and has nothing listening: bound, read
 * back and closed again (plain sockets; the loop is not involved). */
int port_closed(void);

/* A port where connections are refused for as long as *fd stays open: a
 * socket bound to 127.0.0.1:0 that never listens, so no other process can
 * take the port meanwhile. The caller closes *fd. */
int port_refusing(int *fd);

#endif /* SHOAL_SUPPORT_PORT_H */
