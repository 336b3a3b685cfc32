"""Agents downloading through the peer-to-peer swarm with a real
shoal-tracker: one upstream copy for six agents, agents or the tracker
killed with SIGKILL mid-transfer, a seed that sends corrupted pieces, a peer
without the cluster secret, and clients streaming (or asking for a Range)
while pieces arrive out of order.

Every process runs on 127.0.0.1 on ports picked by binding port 0 and is
stopped by PID, even when a test fails. Bodies are hashed as they stream,
never stored.
"""

import hashlib
import http.client
import os
import threading
import time

import pytest

import swarmpeer
from conftest import free_port, http_request, metric, tail, wait_for
from test_tracker import Tracker

SECRET = b"swarm-system-test-secret"


# ----------------------------------------------------------------- helpers --

@pytest.fixture
def tracker_factory(tmp_path):
    """make(extra_args) -> started shoal-tracker with SECRET; stopped by PID."""
    started = []

    def make(extra_args=None):
        t = Tracker(str(tmp_path / ("tracker%d" % len(started))), secret=SECRET,
                    extra_args=extra_args)
        started.append(t)
        return t.start()
    yield make
    for t in started:
        t.stop()


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "cluster-secret"
    p.write_bytes(SECRET + b"\n")  # the trailing newline is not part of it
    return str(p)


def swarm_agents(agent_factory, upstream, tracker, secret_file, n, extra=None):
    """n agents in the tracker's swarm, each with its own data dir and ports."""
    out = []
    for _ in range(n):
        a = agent_factory(upstream, extra_args=[
            "--tracker", "http://127.0.0.1:%d" % tracker.port,
            "--peer-listen", "127.0.0.1:%d" % free_port(),
            "--cluster-secret-file", secret_file] + list(extra or []))
        a.peer_port = int(a.extra_args[a.extra_args.index("--peer-listen") + 1].rsplit(":", 1)[1])
        out.append(a)
    return out


def fetch(port, path, out, barrier=None, chunk=1 << 20, delay=0.0, headers=None):
    """GETs path, hashing the body as it streams. Fills out with status,
    headers, digest, bytes, error."""
    h = hashlib.sha256()
    n = 0
    out["bytes"] = 0
    try:
        if barrier is not None:
            barrier.wait(timeout=30)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        out["status"] = r.status
        out["headers"] = {k.lower(): v for k, v in r.getheaders()}
        while True:
            b = r.read(chunk)
            if not b:
                break
            h.update(b)
            n += len(b)
            out["bytes"] = n
            if delay:
                time.sleep(delay)
        c.close()
        out["digest"] = "sha256:" + h.hexdigest()
    except Exception as e:  # reported by the test
        out["error"] = repr(e)
    out["bytes"] = n


def pull_all(agents, path, **kw):
    """Starts one streaming GET per agent at once; returns (threads, results)."""
    results = [{} for _ in agents]
    barrier = threading.Barrier(len(agents))
    threads = [threading.Thread(target=fetch, args=(a.port, path, results[i], barrier), kwargs=kw,
                                daemon=True)
               for i, a in enumerate(agents)]
    for t in threads:
        t.start()
    return threads, results


def join_all(threads, timeout=90):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def safe_metrics(a):
    try:
        return a.metrics()
    except (OSError, AssertionError):
        return {}


def agent_report(agents, names=("shoal_upstream_bytes_total", "shoal_peer_rx_bytes_total",
                                "shoal_peer_tx_bytes_total", "shoal_pieces_verified_total",
                                "shoal_pieces_rejected_total", "shoal_swarm_fallbacks_total")):
    lines = []
    for a in agents:
        if not a.alive():
            lines.append("%s: dead" % a.host)
            continue
        m = safe_metrics(a)
        lines.append("%s: %s" % (a.host, " ".join("%s=%d" % (n[6:], metric(m, n)) for n in names)))
    return "\n".join(lines)


def check_body(res, size, digest, who):
    assert res.get("error") is None, "%s: %s after %d bytes" % (who, res["error"], res["bytes"])
    assert res.get("status") == 200, "%s: status %s" % (who, res.get("status"))
    assert res["bytes"] == size, "%s: %d bytes of %d" % (who, res["bytes"], size)
    assert res["digest"] == digest, "%s: body digest %s, want %s" % (who, res["digest"], digest)


def logs_tail(agents, n=30):
    return "\n".join("---- %s\n%s" % (a.host, tail(a.stderr_path, n)) for a in agents)


def wait_under_way(agents, min_upstream):
    """Waits until the swarm is trading: some upstream bytes and some peer
    bytes have flowed. Returns (upstream bytes, peer rx bytes) summed."""
    def going():
        ms = [safe_metrics(a) for a in agents]
        up = sum(metric(m, "shoal_upstream_bytes_total") for m in ms)
        rx = sum(metric(m, "shoal_peer_rx_bytes_total") for m in ms)
        return (up, rx) if up >= min_upstream and rx > 0 else None
    return wait_for(going, 30, "the swarm to be under way", interval=0.02)


# ------------------------------------------------------------------- tests --

SIZE_BIG = 256 << 20
PL_DEFAULT = 1 << 20  # the tracker's piece length for blobs up to 2 GiB (protocol.md)


@pytest.mark.slow
def test_six_agents_one_upstream_copy(registry, agent_factory, tracker_factory, secret_file,
                                      build):
    d, desc = build.blob(SIZE_BIG)
    registry.push_blob(d, "test/b256", desc["digest"])
    tracker = tracker_factory()
    agents = swarm_agents(agent_factory, registry.host, tracker, secret_file, 6)
    path = "/v2/test/b256/blobs/" + desc["digest"]

    t0 = time.monotonic()
    threads, results = pull_all(agents, path)
    assert join_all(threads, 120), "a client hung:\n" + agent_report(agents)
    took = time.monotonic() - t0
    for i, res in enumerate(results):
        check_body(res, SIZE_BIG, desc["digest"], "client of agent %d" % i)

    ms = [a.metrics() for a in agents]
    report = "took %.1fs\n%s" % (took, agent_report(agents))
    up = sum(metric(m, "shoal_upstream_bytes_total") for m in ms)
    rx = sum(metric(m, "shoal_peer_rx_bytes_total") for m in ms)
    tx = sum(metric(m, "shoal_peer_tx_bytes_total") for m in ms)
    assert SIZE_BIG <= up <= 1.02 * SIZE_BIG, "upstream bytes %d for a %d-byte blob\n%s" % (
        up, SIZE_BIG, report)
    # Every agent holds the whole blob: what did not come from upstream came
    # from peers.
    assert rx >= 6 * SIZE_BIG - up, "peer rx %d\n%s" % (rx, report)
    assert tx > 0, report
    npieces = SIZE_BIG // PL_DEFAULT
    for i, m in enumerate(ms):
        assert metric(m, "shoal_pieces_verified_total") == npieces, "agent %d\n%s" % (i, report)
        assert metric(m, "shoal_pieces_rejected_total") == 0, "agent %d\n%s" % (i, report)
        assert metric(m, "shoal_swarm_fallbacks_total") == 0, "agent %d\n%s" % (i, report)
        assert metric(m, "shoal_swarms_active") == 1, "agent %d seeds\n%s" % (i, report)
    sw = tracker.swarms()[desc["digest"]]
    assert sw["pieces"] == npieces and sw["hashed"] == npieces, sw
    # An agent tells the tracker it completed on its next announce, which
    # may come a moment after its client got the last byte.
    wait_for(lambda: tracker.swarms()[desc["digest"]]["seeds"] == 6, 5,
             "every agent announced as a seed: %s" % tracker.swarms()[desc["digest"]])


SIZE_MID = 128 << 20
RATE_MID = 40 << 20  # ~3 s for one upstream copy through the proxy
FAST_FAILURE = ["--lease-timeout", "3s", "--peer-timeout", "3s", "--lease-pieces", "2"]


def test_two_agents_killed_mid_transfer(registry, proxy_factory, agent_factory, tracker_factory,
                                        secret_file, build):
    d, desc = build.blob(SIZE_MID)
    registry.push_blob(d, "swarm/kill", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE_MID)
    tracker = tracker_factory(FAST_FAILURE)
    agents = swarm_agents(agent_factory, proxy.host, tracker, secret_file, 6,
                          ["--swarm-stall-timeout", "5s"])
    path = "/v2/swarm/kill/blobs/" + desc["digest"]

    threads, results = pull_all(agents, path)
    up, rx = wait_under_way(agents, 16 << 20)
    victims, survivors = agents[:2], agents[2:]
    for a in victims:
        a.crashed_ok = True
        a.kill9()
    assert up < SIZE_MID, "the upstream copy was complete before the kill: too late (%d)" % up

    assert join_all(threads, 90), "a client hung:\n%s\n%s" % (agent_report(survivors),
                                                             logs_tail(survivors))
    for i, res in enumerate(results[2:], 2):
        check_body(res, SIZE_MID, desc["digest"], "client of agent %d" % i)
    for i, res in enumerate(results[:2]):
        assert res.get("digest") != desc["digest"], \
            "client of killed agent %d finished before the kill: too late" % i
    m = tracker.metrics()
    assert metric(m, "shoal_tracker_peers_expired_total") >= 2, \
        "the killed agents never expired from the swarm: %r" % m


def test_tracker_killed_mid_transfer(registry, proxy_factory, agent_factory, tracker_factory,
                                     secret_file, build):
    d, desc = build.blob(SIZE_MID)
    registry.push_blob(d, "swarm/notracker", desc["digest"])
    proxy = proxy_factory(registry.port, rate=RATE_MID)
    tracker = tracker_factory(FAST_FAILURE)
    agents = swarm_agents(agent_factory, proxy.host, tracker, secret_file, 6,
                          ["--swarm-stall-timeout", "5s"])
    path = "/v2/swarm/notracker/blobs/" + desc["digest"]

    threads, results = pull_all(agents, path)
    up, rx = wait_under_way(agents, 16 << 20)
    tracker.proc.kill()
    tracker.proc.wait(timeout=10)
    assert up < SIZE_MID, "the upstream copy was complete before the kill: too late (%d)" % up
    # The throttle only made the transfer last long enough to kill the
    # tracker in its middle; whatever falls back to upstream may go fast.
    proxy.rate = None

    assert join_all(threads, 90), "a client hung:\n%s\n%s" % (agent_report(agents),
                                                             logs_tail(agents))
    for i, res in enumerate(results):
        check_body(res, SIZE_MID, desc["digest"], "client of agent %d" % i)
    assert all(a.alive() for a in agents)
    total_up = sum(metric(a.metrics(), "shoal_upstream_bytes_total") for a in agents)
    print("tracker killed: upstream bytes over the agents = %.2f x the blob" %
          (total_up / SIZE_MID))


SIZE_SMALL = 32 << 20
PL_SMALL = 1 << 20


@pytest.mark.parametrize("hit_and_run", [False, True], ids=["stays", "hangs-up"])
def test_corrupt_peer(registry, proxy_factory, agent_factory, tracker_factory, secret_file,
                      build, hit_and_run):
    """A seed answering with wrong bytes is caught and banned; also when it
    hangs up right after the piece, so that the connection's end arrives
    right behind the bad piece."""
    d, desc = build.blob(SIZE_SMALL)
    registry.push_blob(d, "swarm/corrupt", desc["digest"])
    proxy = proxy_factory(registry.port, rate=16 << 20)  # ~2 s for one copy
    tracker = tracker_factory(["--piece-length", "1MiB", "--lease-pieces", "2"])
    seed = swarmpeer.CorruptSeed(tracker.port, SECRET, desc["digest"], SIZE_SMALL,
                                 hit_and_run=hit_and_run).start()
    try:
        assert seed.plen == PL_SMALL and seed.npieces == SIZE_SMALL // PL_SMALL
        agents = swarm_agents(agent_factory, proxy.host, tracker, secret_file, 3)
        path = "/v2/swarm/corrupt/blobs/" + desc["digest"]
        threads, results = pull_all(agents, path)
        assert join_all(threads, 90), "a client hung:\n%s\n%s" % (agent_report(agents),
                                                                 logs_tail(agents))
        conns = seed.snapshot()
    finally:
        seed.stop()

    report = "%s\ncorrupt seed connections: %r" % (agent_report(agents), conns)
    # No client saw a wrong byte.
    for i, res in enumerate(results):
        check_body(res, SIZE_SMALL, desc["digest"], "client of agent %d" % i)

    sent = sum(c["pieces_sent"] for c in conns)
    assert sent >= 1, "no agent ever asked the corrupt seed for a piece:\n" + report
    rejected = [metric(a.metrics(), "shoal_pieces_rejected_total") for a in agents]
    # A piece that crosses the agent's CANCEL (it got the piece elsewhere
    # first) is dropped unread; every other one must be caught.
    uncancelled = sum(max(0, c["pieces_sent"] - c["cancels"]) for c in conns)
    assert sum(rejected) >= min(1, uncancelled), "corrupt pieces were not detected:\n" + report
    for a, r in zip(agents, rejected):
        if r:
            banned = [ln for ln in a.logs().splitlines()
                      if "banned" in ln and seed.addr in ln]
            assert banned, "agent %s rejected %d pieces but logged no ban of %s:\n%s" % (
                a.host, r, seed.addr, tail(a.stderr_path, 40))
        # One connection, at most 4 requests in flight on it: the ban stops the rest.
        assert r <= 4, report
    # A banned peer is not dialled again.
    by_peer = {}
    for c in sorted(conns, key=lambda c: c["start"]):
        by_peer.setdefault(c["peer_id"], []).append(c)
    for pid, cs in by_peer.items():
        for i, c in enumerate(cs):
            if c["pieces_sent"]:
                later = cs[i + 1:]
                assert not later, "agent %s reconnected to the banned seed:\n%s" % (pid, report)
    # Every piece hash the tracker holds came from an agent's upstream fetch.
    assert tracker.swarms()[desc["digest"]]["hashed"] == SIZE_SMALL // PL_SMALL


def test_corrupt_peer_dialing_in_stays_banned(registry, proxy_factory, agent_factory,
                                             tracker_factory, secret_file, build):
    """The corrupt seed also dials the agents, again and again, from new
    source ports with the same peer id: "the sender is banned for ban-time"
    must hold for a sender that connects in, not only for one we dialled."""
    d, desc = build.blob(SIZE_SMALL)
    registry.push_blob(d, "swarm/corruptin", desc["digest"])
    proxy = proxy_factory(registry.port, rate=8 << 20)  # ~4 s for one copy
    tracker = tracker_factory(["--piece-length", "1MiB", "--lease-pieces", "2"])
    # The lowest peer id: of an agent's connection to the seed and the
    # seed's to the agent, both keep the one the seed dialled (one
    # connection per pair, docs/protocol.md), so the dialled-in ones are
    # the ones asked for pieces.
    seed = swarmpeer.CorruptSeed(tracker.port, SECRET, desc["digest"], SIZE_SMALL,
                                 my_id=bytes(16)).start()
    try:
        agents = swarm_agents(agent_factory, proxy.host, tracker, secret_file, 2)
        path = "/v2/swarm/corruptin/blobs/" + desc["digest"]
        threads, results = pull_all(agents, path)
        # Dial in, again and again, while the agents are still downloading.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and all(t.is_alive() for t in threads):
            for a in agents:
                try:
                    seed.dial(a.peer_port)
                except OSError:
                    pass
            time.sleep(0.1)
        assert join_all(threads, 90), "a client hung:\n%s\n%s" % (agent_report(agents),
                                                                 logs_tail(agents))
        conns = seed.snapshot()
    finally:
        seed.stop()
    for i, res in enumerate(results):
        check_body(res, SIZE_SMALL, desc["digest"], "client of agent %d" % i)
    report = agent_report(agents)
    assert sum(c["pieces_sent"] for c in conns if c["initiator"]) >= 1, \
        "no agent asked the dialling seed for a piece: test not meaningful\n" + report
    # Once an agent got a bad piece from the seed (and closed that
    # connection), no later connection of the seed to that agent may be
    # asked for pieces.
    violations = []
    for pid in {c["peer_id"] for c in conns if c["peer_id"]}:
        cs = sorted((c for c in conns if c["peer_id"] == pid), key=lambda c: c["start"])
        bad_ends = [c["end"] for c in cs if c["pieces_sent"] and c["end"]]
        if not bad_ends:
            continue
        banned_at = min(bad_ends)
        later = [c for c in cs if c["start"] > banned_at and c["requests"]]
        if later:
            violations.append("agent id %s: %d connections after the ban were sent %d REQUESTs"
                              % (pid, len(later), sum(c["requests"] for c in later)))
    bans = "\n".join(ln[ln.find("piece="):] for a in agents for ln in a.logs().splitlines()
                     if "peer banned" in ln)
    assert not violations, ("a banned peer that connects in is still asked for pieces:\n%s\n"
                            "%s\n%s" % ("\n".join(violations), report, bans))
    for a in agents:
        # At most one outgoing and one incoming connection were open when the
        # first bad piece arrived, each with up to 4 requests in flight.
        assert metric(a.metrics(), "shoal_pieces_rejected_total") <= 8, report


def test_peer_without_secret_refused(registry, agent_factory, tracker_factory, secret_file,
                                     build):
    size = 8 << 20
    d, desc = build.blob(size)
    registry.push_blob(d, "swarm/auth", desc["digest"])
    tracker = tracker_factory()
    a, = swarm_agents(agent_factory, registry.host, tracker, secret_file, 1)
    res = {}
    fetch(a.port, "/v2/swarm/auth/blobs/" + desc["digest"], res)
    check_body(res, size, desc["digest"], "client")
    # The agent now seeds the blob for --seed-time (10 min by default).
    assert a.metric("shoal_swarms_active") == 1

    for what, secret in (("wrong secret", b"not-the-secret"), ("no secret", b"")):
        r = swarmpeer.try_handshake(a.peer_port, desc["digest"], secret)
        types = swarmpeer.frame_types(r)
        assert "bitfield" not in types and "have" not in types, (what, types)
        assert types[:2] == ["hello", "auth"], (what, types)
        assert r["closed"], "%s: connection left open after %s" % (what, types)
        assert swarmpeer.error_codes(r) in ([], [swarmpeer.ERR_AUTH]), (what, types, r["frames"])
    assert "event=auth-failed" in a.logs()

    # A blob the agent does not have is refused before any AUTH.
    other = "sha256:" + "ab" * 32
    r = swarmpeer.try_handshake(a.peer_port, other, SECRET)
    types = swarmpeer.frame_types(r)
    assert "bitfield" not in types and "auth" not in types, types
    assert r["closed"] and swarmpeer.error_codes(r) in ([], [swarmpeer.ERR_UNKNOWN_BLOB]), types

    # The right secret gets through: the check above is meaningful.
    r = swarmpeer.try_handshake(a.peer_port, desc["digest"], SECRET)
    types = swarmpeer.frame_types(r)
    assert types == ["hello", "auth", "bitfield"], types
    assert r["agent_auth_ok"] is True, "the agent's AUTH does not match protocol.md"
    bits = [p for t, p in r["frames"] if t == swarmpeer.BITFIELD][0]
    assert bits == swarmpeer.full_bitfield(-(-size // PL_DEFAULT)), bits.hex()
    st, _, _ = http_request(a.port, "GET", "/_shoal/health")
    assert st == 200


SIZE_OOO = 48 << 20


def test_stream_while_pieces_arrive_out_of_order(registry, proxy_factory, agent_factory,
                                                 tracker_factory, secret_file, build):
    d, desc = build.blob(SIZE_OOO)
    registry.push_blob(d, "swarm/ooo", desc["digest"])
    blob_file = os.path.join(d, "blobs", "sha256", desc["digest"][7:])
    assert os.path.getsize(blob_file) == SIZE_OOO
    proxy = proxy_factory(registry.port, rate=24 << 20)  # ~2 s for one copy
    tracker = tracker_factory(["--piece-length", "1MiB", "--lease-pieces", "2"])
    agents = swarm_agents(agent_factory, proxy.host, tracker, secret_file, 3)
    path = "/v2/swarm/ooo/blobs/" + desc["digest"]

    # The slow reader starts with the others: its agent's file fills in
    # lease and peer order while the response can only go out in order.
    results = [{} for _ in agents]
    barrier = threading.Barrier(3)
    threads = [threading.Thread(target=fetch, args=(agents[0].port, path, results[0], barrier),
                                kwargs={"chunk": 256 << 10, "delay": 0.005}, daemon=True)]
    threads += [threading.Thread(target=fetch, args=(a.port, path, results[i], barrier),
                                 daemon=True)
                for i, a in enumerate(agents) if i > 0]
    for t in threads:
        t.start()
    # (bytes the slow client holds, pieces agent 0 has verified) over time.
    npieces = SIZE_OOO // PL_SMALL
    samples = []
    while threads[0].is_alive():
        got = results[0].get("bytes", 0)
        samples.append((got, metric(safe_metrics(agents[0]), "shoal_pieces_verified_total")))
        time.sleep(0.02)
    assert join_all(threads, 90), "a client hung:\n%s\n%s" % (agent_report(agents),
                                                             logs_tail(agents))
    for i, res in enumerate(results):
        check_body(res, SIZE_OOO, desc["digest"], "client of agent %d" % i)

    report = agent_report(agents)
    # The body streamed while the agent was still collecting pieces.
    assert any(0 < got < SIZE_OOO and v < npieces for got, v in samples), \
        "no sample of a partial body while pieces were missing: %r" % samples[::10]
    m0 = agents[0].metrics()
    assert metric(m0, "shoal_peer_rx_bytes_total") > 0, "agent 0 got nothing from peers\n" + report
    leases = [ln for a in agents for ln in a.logs().splitlines() if "lease pieces=" in ln]
    assert len(leases) >= 3, "leases were not spread: %r" % leases

    # A cold agent asked for the second half: exactly that slice comes back.
    cold, = swarm_agents(agent_factory, proxy.host, tracker, secret_file, 1)
    start = SIZE_OOO // 2 + 12345  # mid-piece
    with open(blob_file, "rb") as f:
        f.seek(start)
        want = hashlib.sha256(f.read()).hexdigest()
    res = {}
    fetch(cold.port, path, res, headers={"Range": "bytes=%d-" % start})
    assert res.get("error") is None, res
    assert res["status"] == 206, res
    assert res["headers"]["content-range"] == "bytes %d-%d/%d" % (start, SIZE_OOO - 1, SIZE_OOO)
    assert res["bytes"] == SIZE_OOO - start
    assert res["digest"] == "sha256:" + want, "the Range body differs from the blob's slice"
