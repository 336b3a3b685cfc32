"""Limits before and after authentication on the peer port: strangers that
never prove the cluster secret take no place in a swarm, and an
authenticated peer cannot queue answers without bound.

Every process runs on 127.0.0.1 on ports picked by binding port 0 and is
stopped by PID.
"""

import os
import socket
import struct
import time

import swarmpeer
from conftest import http_request, metric, wait_for
from test_swarm import (SECRET, PL_DEFAULT, check_body, fetch, secret_file,  # noqa: F401
                        swarm_agents, tracker_factory)


def seeding_agent(registry, agent_factory, tracker_factory, secret_file, build, repo, size,
                  extra=None):
    d, desc = build.blob(size)
    registry.push_blob(d, repo, desc["digest"])
    tracker = tracker_factory()
    a, = swarm_agents(agent_factory, registry.host, tracker, secret_file, 1, extra)
    res = {}
    fetch(a.port, "/v2/%s/blobs/%s" % (repo, desc["digest"]), res)
    check_body(res, size, desc["digest"], "client")
    assert a.metric("shoal_swarms_active") == 1  # it seeds the blob now
    return a, desc


def test_hello_only_connections_do_not_crowd_out_a_real_peer(registry, agent_factory,
                                                             tracker_factory, secret_file, build):
    """40 connections that send HELLO and nothing more (they cannot prove the
    secret) while the agent allows 4 peers per blob (8 incoming): a real peer
    still gets through."""
    size = 8 << 20
    a, desc = seeding_agent(registry, agent_factory, tracker_factory, secret_file, build,
                            "limits/hello", size, ["--swarm-max-peers", "4"])
    strangers = []
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", a.peer_port), timeout=5)
            s.sendall(swarmpeer.frame(swarmpeer.HELLO, swarmpeer.hello_payload(
                desc["digest"], os.urandom(16), os.urandom(16))))
            strangers.append(s)
        # Each stranger got the agent's HELLO and AUTH: it is parked in its
        # handshake, as an attacker would keep it.
        for s in strangers:
            t, _ = swarmpeer.read_frame(s)
            assert t == swarmpeer.HELLO
        r = swarmpeer.try_handshake(a.peer_port, desc["digest"], SECRET)
        types = swarmpeer.frame_types(r)
        assert types == ["hello", "auth", "bitfield"], types
        assert r["agent_auth_ok"] is True
        bits = [p for t, p in r["frames"] if t == swarmpeer.BITFIELD][0]
        assert bits == swarmpeer.full_bitfield(-(-size // PL_DEFAULT))
    finally:
        for s in strangers:
            s.close()
    st, _, _ = http_request(a.port, "GET", "/_shoal/health")
    assert st == 200


def test_request_flood_closes_the_peer(registry, agent_factory, tracker_factory, secret_file,
                                       build):
    """An authenticated peer that asks for every piece at once (more than
    the 64 a peer may have outstanding) is closed as a protocol violation:
    the answers queued for one peer, each holding a descriptor, are bounded."""
    size = 100 << 20
    a, desc = seeding_agent(registry, agent_factory, tracker_factory, secret_file, build,
                            "limits/flood", size)
    digest = desc["digest"]
    my_id, my_nonce = os.urandom(16), os.urandom(16)
    s = socket.create_connection(("127.0.0.1", a.peer_port), timeout=10)
    try:
        s.sendall(swarmpeer.frame(swarmpeer.HELLO, swarmpeer.hello_payload(digest, my_id,
                                                                           my_nonce)))
        t, p = swarmpeer.read_frame(s)
        assert t == swarmpeer.HELLO
        _, pid, pnonce = swarmpeer.parse_hello(p)
        s.sendall(swarmpeer.frame(swarmpeer.AUTH, swarmpeer.auth_mac(SECRET, pnonce, my_nonce,
                                                                     my_id, digest)))
        npieces = -(-size // PL_DEFAULT)
        s.sendall(b"".join(swarmpeer.frame(swarmpeer.REQUEST, struct.pack(">I", i))
                           for i in range(npieces)))
        # Read until the agent closes; it sends pieces it had started, then
        # an ERROR protocol.
        errors, pieces = [], 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                t, p = swarmpeer.read_frame(s)
            except (EOFError, ConnectionResetError):
                break
            if t == swarmpeer.PIECE:
                pieces += 1
            elif t == swarmpeer.ERROR:
                errors.append(struct.unpack(">H", p[:2])[0])
        else:
            raise AssertionError("the agent kept the flooding peer")
    finally:
        s.close()
    assert pieces <= 64, "%d pieces answered" % pieces
    assert "event=too-many-requests" in a.logs()
    wait_for(lambda: "event=close" in a.logs(), 5, "the connection closed")
    # The agent serves on.
    st, _, _ = http_request(a.port, "GET", "/_shoal/health")
    assert st == 200
    assert metric(a.metrics(), "shoal_swarms_active") == 1
