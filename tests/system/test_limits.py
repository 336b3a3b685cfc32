"""Descriptor limits: the agent raises its open-file soft limit to the hard
limit at start and says what it got; 1,100 client sockets under a soft limit
of 1,024 do not stop it from serving a cached blob once they close, whether
it could raise the limit (hard 8,192) or not (hard 1,024: accepts fail with
EMFILE and are retried)."""

import hashlib
import os
import re
import resource
import socket

import pytest

from conftest import need_tool, wait_for

SOCKETS = 1100


def limited(agent, soft, hard):
    """Makes the agent start under prlimit --nofile=soft:hard."""
    prlimit = need_tool("prlimit")
    orig = agent.argv
    agent.argv = lambda: [prlimit, "--nofile=%d:%d" % (soft, hard), "--"] + orig()
    return agent


def open_fds(agent):
    """Descriptors the agent process holds (prlimit execs it in place)."""
    return len(os.listdir("/proc/%d/fd" % agent.proc.pid))


def open_sockets(port, n):
    """n connected sockets to the agent (each sends half a request, as a slow
    client would). Refused connections count too: they are what EMFILE on the
    agent's side looks like once its backlog is full."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /v2/ HTTP/1.1\r\n")
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


@pytest.mark.parametrize("hard", [8192, 1024])
def test_1100_sockets_under_soft_1024(hard, registry, agent_factory, build):
    own_soft, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if own_hard != resource.RLIM_INFINITY and own_hard < SOCKETS + 200:
        pytest.fail("the test itself needs %d descriptors (hard limit %d)"
                    % (SOCKETS + 200, own_hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(own_soft, SOCKETS + 200), own_hard))
    repo = "limits/fd"
    bdir, blob = build.blob(256 * 1024)
    registry.push_blob(bdir, repo, blob["digest"])
    a = limited(agent_factory(registry.host, start=False,
                              extra_args=["--max-connections", "5000"]), 1024, hard)
    a.start()
    path = "/v2/%s/blobs/%s" % (repo, blob["digest"])
    st, _, body = a.get(path)
    assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == blob["digest"]

    m = re.search(r"msg=nofile soft=(\d+) hard=(\d+) was=(\d+)", a.logs())
    assert m, a.logs()[-2000:]
    assert (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (hard, hard, 1024)
    if hard == 1024:
        assert "open-file limit is low for max-connections" in a.logs()

    socks = open_sockets(a.port, SOCKETS)
    try:
        if hard > SOCKETS:
            # Every one of them is held open by the agent, which still answers.
            assert len(socks) == SOCKETS
            wait_for(lambda: open_fds(a) > SOCKETS, 15,
                     "the agent holding %d connections" % SOCKETS)
            st, _, body = a.get(path, timeout=30)
            assert st == 200 and len(body) == blob["size"]
    finally:
        for s in socks:
            s.close()
    # Once they are gone, a cached blob is served as before.
    def served():
        try:
            st, _, body = a.get(path, timeout=5)
        except OSError:
            return False
        return st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == blob["digest"]
    wait_for(served, 30, "the cached blob served after the sockets closed")
    assert a.alive()
    if hard == 1024:
        assert "EMFILE" in a.logs() or "Too many open files" in a.logs(), a.logs()[-2000:]
