/* TCP ports for unit tests (support/port.h). */
#include "support/port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

int port_listen(uv_loop_t *loop, uv_tcp_t *tcp, uv_connection_cb on_conn)
{
    struct sockaddr_in sa;

    assert_int_equal(uv_tcp_init(loop, tcp), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)tcp, 64, on_conn), 0);
    return port_of(tcp);
}

int port_of(const uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    assert_int_equal(uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
}

/* A socket bound to 127.0.0.1:0; returns the fd and sets *port. */
static int bound_socket(int *port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (const struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

int port_closed(void)
{
    int port;
    int fd = bound_socket(&port);

    assert_int_equal(close(fd), 0);
    return port;
}

int port_refusing(int *fd)
{
    int port;

    *fd = bound_socket(&port);
    return port;
}
