"""The four ways wrong bytes reached clients (issue 10, item 0), each
against a real agent: an upstream that serves a corrupted blob once, a
partial blob with a flipped byte after kill -9 and restart, an upstream that
answers 503 with an HTML body once, and a member of the cluster serving
pieces forged to the same XXH3-128.

For each: no Range answer (issued while the download runs and after) carries
a wrong byte, no full GET completes with a wrong digest, nothing wrong stays
cached, the pull succeeds (on the first attempt where the design allows,
else on the client's own retry, with no restart or manual step), and the
culprit is banned and reported where there is one.

Every process runs on 127.0.0.1 on ports picked by binding port 0 and is
stopped by PID. Blobs live in memory in the test's registry
(faultyregistry.py) and are checked byte for byte (faultcheck.py).
"""

import os
import threading
import time

import pytest

import faultcheck
import swarmpeer
from conftest import metric, tail, wait_for
from faultcheck import RangeProbe, assert_nothing_wrong_cached, assert_ranges_clean, full_ok
from faultyregistry import blob_bytes, faulty_registry  # noqa: F401
from test_swarm import SECRET, secret_file, swarm_agents, tracker_factory  # noqa: F401

MIB = 1 << 20
SIZE = 32 * MIB
PIECE = MIB


def blob(reg, repo, size=SIZE, seed=None):
    data = blob_bytes(size, seed or repo)
    return data, reg.add_blob(repo, data), "/v2/%s/blobs/" % repo


def describe(tries):
    return ["status=%s bytes=%d complete=%s wrong=%d err=%s" % (
        r["status"], r["bytes"], r["complete"], r["wrong"], r["error"]) for r in tries]


def assert_no_wrong_full_get(tries, digest):
    for r in tries:
        if r["status"] == 200 and r["complete"]:
            assert r["digest"] == digest, "a full GET completed with a wrong digest: %r" % r


def pull_with_probe(agent, path, data, digest, attempts=3, delay_probe=0.0):
    """A client pull (with retries) while a RangeProbe runs against the same
    agent; returns (tries, probe) once the probe has also asked after."""
    probe = RangeProbe(agent.port, path, data).start()
    if delay_probe:
        time.sleep(delay_probe)
    tries = faultcheck.pull(agent.port, path, data, digest, attempts=attempts)
    probe.stop()
    return tries, probe


# ------------------------------------------------- (a) a corrupted upstream --

def test_upstream_serves_a_corrupted_blob_once(faulty_registry, agent_factory):
    """The first GET from upstream has one byte flipped. The agent's
    whole-blob check fails, it drops the content and refetches straight
    from upstream; the client that was streaming is cut (it was handed
    bytes of the bad copy) and its retry gets the blob; Range requests wait
    for the verified copy."""
    reg = faulty_registry
    data, digest, base = blob(reg, "wrong/corrupt")
    path = base + digest
    reg.rate = 16 * MIB  # ~2 s a copy: the probe runs during the download
    bad = reg.inject("corrupt", path=digest, offset=5 * MIB + 4321, times=1)
    a = agent_factory(reg.host)

    tries, probe = pull_with_probe(a, path, data, digest)
    report = "%s\n%s" % (describe(tries), tail(a.stderr_path, 30))
    assert bad.fired == 1, report
    assert full_ok(tries[-1], data, digest), report
    assert len(tries) <= 2, "the pull needed more than the client's one retry:\n" + report
    assert_no_wrong_full_get(tries, digest)
    assert_ranges_clean(probe)
    assert probe.summary()["during"] >= 1, probe.summary()
    assert_nothing_wrong_cached(a, path, data, digest)
    m = a.metrics()
    assert metric(m, "shoal_digest_mismatches_total") == 1, report
    # The bad copy and one good one, no more.
    served = reg.bytes_served(digest)
    assert SIZE < served <= 2 * SIZE + MIB, served
    print("corrupted upstream: upstream bytes %.2f x the blob, %d Range requests (%d during)"
          % (served / SIZE, probe.summary()["requests"], probe.summary()["during"]))


def banned_lines(agent):
    return [ln for ln in agent.logs().splitlines() if "peer banned" in ln]


@pytest.mark.slow
def test_upstream_corrupts_a_leased_piece_once(faulty_registry, agent_factory, tracker_factory,
                                               secret_file):
    """The swarm path: one agent's upstream lease gets a piece with a byte
    flipped, hashes it and reports that hash to the tracker. Every agent
    that took the piece fails its whole-blob check and refetches from
    upstream; their clients retry once at most; a fresh agent joining later
    pulls on its first attempt, and no honest agent is banned."""
    reg = faulty_registry
    data, digest, base = blob(reg, "wrong/lease")
    path = base + digest
    reg.rate = 24 * MIB
    bad = reg.inject("corrupt", path=digest, offset=5 * PIECE + 777, times=1)
    tracker = tracker_factory(["--piece-length", "1MiB", "--lease-pieces", "2"])
    agents = swarm_agents(agent_factory, reg.host, tracker, secret_file, 3,
                          ["--swarm-stall-timeout", "5s"])
    probes = [RangeProbe(a.port, path, data, seed=i, workers=2).start()
              for i, a in enumerate(agents)]
    results = [None] * len(agents)

    def run(i):
        results[i] = faultcheck.pull(agents[i].port, path, data, digest)
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for p in probes:
        p.stop()
    report = "\n".join("agent %d: %s" % (i, describe(r or [])) for i, r in enumerate(results))
    report += "\n" + "\n".join(tail(a.stderr_path, 15) for a in agents)
    assert bad.fired == 1, report
    for i, tries in enumerate(results):
        assert tries and full_ok(tries[-1], data, digest), report
        assert len(tries) <= 2, report
        assert_no_wrong_full_get(tries, digest)
    for p in probes:
        assert_ranges_clean(p)
    for a in agents:
        assert_nothing_wrong_cached(a, path, data, digest)

    # Fresh agents join the swarm one after the other: the blob's table at
    # the tracker must not hold them back, or turn them against honest peers.
    took = []
    fresh = []
    for n in range(2):
        f, = swarm_agents(agent_factory, reg.host, tracker, secret_file, 1,
                          ["--swarm-stall-timeout", "5s"])
        fresh.append(f)
        t0 = time.monotonic()
        tries, probe = pull_with_probe(f, path, data, digest)
        took.append(time.monotonic() - t0)
        report = "fresh %d: %s took %.1fs\n%s" % (n, describe(tries), took[-1],
                                                 tail(f.stderr_path, 30))
        assert len(tries) == 1 and full_ok(tries[0], data, digest), report
        assert_ranges_clean(probe)
        assert_nothing_wrong_cached(f, path, data, digest)
    for a in agents + fresh:
        assert not banned_lines(a), "an honest agent was banned:\n%s\n%s" % (
            "\n".join(banned_lines(a)), report)
    # Nobody vouched for the hash of the corrupted copy.
    doc = {"digest": digest, "size": SIZE, "agent": "probe-confirmed", "addr": "127.0.0.1:9",
           "event": "started", "have": 0, "want_lease": False}
    st, r = swarmpeer.announce(tracker.port, SECRET, doc)
    assert st == 200, r
    confirmed = bytes.fromhex(r.get("confirmed", ""))
    assert not (len(confirmed) > 0 and confirmed[0] & (0x80 >> 5)), \
        "the hash of the corrupted piece was confirmed: %s" % r.get("confirmed")
    print("corrupted lease: upstream bytes %.2f x the blob; fresh agents took %s s"
          % (reg.bytes_served(digest) / SIZE, " and ".join("%.1f" % t for t in took)))


def test_upstream_corrupts_a_confirmed_piece_during_a_self_lease(faulty_registry, agent_factory,
                                                                 tracker_factory, secret_file):
    """Piece hashes confirmed by two agents; both then die. A third agent
    finds no live peer, stalls and leases every piece to itself from
    upstream, which corrupts one of them once. A piece whose hash the
    tracker confirmed is final for Range readers, but only if its bytes
    match that hash: the corrupted one must not reach a Range answer."""
    reg = faulty_registry
    data, digest, base = blob(reg, "wrong/selflease")
    path = base + digest
    tracker = tracker_factory(["--piece-length", "1MiB", "--peer-timeout", "30s"])
    first = swarm_agents(agent_factory, reg.host, tracker, secret_file, 2)
    for a in first:
        res = faultcheck.get_checked(a.port, path, data)
        assert full_ok(res, data, digest), res
    wait_for(lambda: tracker.swarms()[digest]["seeds"] == 2, 10, "both agents seeding")
    for a in first:
        a.crashed_ok = True
        a.kill9()
    reg.rate = 12 * MIB
    victim = 5
    bad = reg.inject("corrupt", path=digest, offset=victim * PIECE + 99, times=1)
    c, = swarm_agents(agent_factory, reg.host, tracker, secret_file, 1,
                      ["--swarm-stall-timeout", "1s"])
    # Range requests on the corrupted piece itself, again and again, besides
    # the random ones.
    pinned = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            pinned.append(faultcheck.get_checked(
                c.port, path, data, rng="bytes=%d-%d" % (victim * PIECE, victim * PIECE + 4095)))
            time.sleep(0.02)
    hs = [threading.Thread(target=hammer, daemon=True) for _ in range(2)]
    for t in hs:
        t.start()
    tries, probe = pull_with_probe(c, path, data, digest)
    stop.set()
    for t in hs:
        t.join(timeout=60)
    report = "%s\n%s" % (describe(tries), tail(c.stderr_path, 30))
    assert bad.fired == 1, report
    wrong = [r for r in pinned if r["wrong"]]
    assert not wrong, "Range answers carried the corrupted piece: %r\n%s" % (wrong[:3], report)
    assert_ranges_clean(probe)
    assert len(tries) <= 2 and full_ok(tries[-1], data, digest), report
    assert_no_wrong_full_get(tries, digest)
    assert_nothing_wrong_cached(c, path, data, digest)
    print("self-lease with a corrupted confirmed piece: %d pinned Range requests, %d complete"
          % (len(pinned), sum(1 for r in pinned if r["complete"])))


# ------------------------------------- (b) a flipped byte in a kept partial --

def piece_record(path):
    """The pieces a partial's record (<hex>.pieces) names as held: (piece
    length, [indexes]). Format: agent/cache/partial.c, "the piece record"."""
    with open(path, "rb") as f:
        rec = f.read()
    assert rec[:8] == b"SHOALPB1", rec[:8]
    geo = int.from_bytes(rec[16:24], "little")
    plen, n = geo & 0xFFFFFFFF, geo >> 32
    bits = rec[32:32 + (n + 7) // 8]
    return plen, [i for i in range(n) if bits[i // 8] & (0x80 >> (i % 8))]


def flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5A]))


def test_flipped_byte_in_partial_after_kill9(faulty_registry, agent_factory):
    """kill -9 halfway through an upstream download; one byte flips inside
    a piece the piece record names as held; the restarted agent re-checks
    the recorded pieces, drops that one, resumes from it, and neither the
    full GET nor any Range answer carries the flipped byte."""
    reg = faulty_registry
    data, digest, base = blob(reg, "wrong/flip")
    path = base + digest
    reg.rate = 8 * MIB  # ~4 s a copy
    a = agent_factory(reg.host)
    partial = os.path.join(a.data_dir, "partial", "sha256", digest[7:])
    first = {}
    t = threading.Thread(target=lambda: first.update(faultcheck.get_checked(a.port, path, data)),
                         daemon=True)
    t.start()

    def held():
        try:
            return len(piece_record(partial + ".pieces")[1]) >= 12
        except (OSError, AssertionError, IndexError):
            return False
    wait_for(held, 30, "a piece record naming 12 pieces", interval=0.02)
    a.crashed_ok = True
    a.kill9()
    t.join(timeout=30)
    assert first.get("wrong") == 0, first
    plen, pieces = piece_record(partial + ".pieces")
    assert plen == PIECE and len(pieces) < SIZE // PIECE, (plen, pieces)
    victim = pieces[len(pieces) // 2]
    flip(partial, victim * plen + 1234)

    reg.rate = 16 * MIB
    t_restart = time.monotonic()
    a.crashed_ok = False
    a.start()
    tries, probe = pull_with_probe(a, path, data, digest)
    report = "%s\n%s" % (describe(tries), tail(a.stderr_path, 30))
    assert len(tries) == 1 and full_ok(tries[0], data, digest), report
    assert_ranges_clean(probe)
    assert_nothing_wrong_cached(a, path, data, digest)
    assert "1 of %d recorded pieces failed their check" % len(pieces) in a.logs(), report
    # It resumed from the piece that failed, not from zero and not past it.
    ranged = [r["range"] for r in reg.requests("GET", digest) if r["time"] >= t_restart
              and r["range"]]
    assert "bytes=%d-" % (victim * plen) in ranged, (victim, ranged)
    assert a.metric("shoal_digest_mismatches_total") == 0, report


# ------------------------------------------- (c) a 503 with an HTML body --

def test_html_503_once_without_retries(faulty_registry, agent_factory):
    """--upstream-retries 0: the blob GET's 503 (an HTML page) reaches the
    download. Its body is never blob content: the client gets a clear 503
    before any body byte, and its retry gets the blob."""
    reg = faulty_registry
    data, digest, base = blob(reg, "wrong/html0")
    path = base + digest
    reg.rate = 16 * MIB
    fault = reg.inject("status", method="GET", path=digest, status=503, times=1)
    a = agent_factory(reg.host, extra_args=["--upstream-retries", "0"])
    tries, probe = pull_with_probe(a, path, data, digest)
    report = "%s\n%s" % (describe(tries), tail(a.stderr_path, 30))
    assert fault.fired == 1, report
    assert len(tries) == 2 and full_ok(tries[1], data, digest), report
    assert tries[0]["status"] == 503 and tries[0]["bytes"] < 1024, report
    assert b"<html" not in data  # (the check below is meaningful)
    assert_no_wrong_full_get(tries, digest)
    assert_ranges_clean(probe)
    assert_nothing_wrong_cached(a, path, data, digest)
    assert a.metric("shoal_digest_mismatches_total") == 0, report
    assert reg.bytes_served(digest) <= SIZE + MIB


def test_html_503_once_with_default_retries(faulty_registry, agent_factory):
    """The default retries: the agent retries the 503 itself and the first
    pull succeeds."""
    reg = faulty_registry
    data, digest, base = blob(reg, "wrong/html3")
    path = base + digest
    reg.rate = 16 * MIB
    fault = reg.inject("status", method="GET", path=digest, status=503, times=1,
                       headers={"Retry-After": "0"})
    a = agent_factory(reg.host)
    tries, probe = pull_with_probe(a, path, data, digest)
    report = "%s\n%s" % (describe(tries), tail(a.stderr_path, 30))
    assert fault.fired == 1, report
    assert len(tries) == 1 and full_ok(tries[0], data, digest), report
    assert_ranges_clean(probe)
    assert_nothing_wrong_cached(a, path, data, digest)
    assert a.metric("shoal_digest_mismatches_total") == 0, report


# ------------------------------------------ (d) a member forging pieces --

def tracker_hands_out(tracker, digest, size, addr):
    """Whether the tracker's peer list for digest holds addr (asked as a
    fresh, made-up agent that leaves at once)."""
    doc = {"digest": digest, "size": size, "agent": "probe-%d" % time.monotonic_ns(),
           "addr": "127.0.0.1:9", "event": "started", "have": 0, "want_lease": False}
    st, r = swarmpeer.announce(tracker.port, SECRET, doc)
    assert st == 200, r
    doc["event"] = "stopped"
    swarmpeer.announce(tracker.port, SECRET, doc)
    return any(p["addr"] == addr for p in r.get("peers", []))


def forger_setup(reg, agent_factory, tracker_factory, secret_file, repo, algo, tracker_args=()):
    """A blob, a tracker with the given piece hash, agent A that fetched it
    from upstream (the lease holder: every piece hash is its word) and agent
    B that then took it from A through the swarm (its `completed` confirms
    A's hashes), and a forging seed. Returns (data, digest, path, tracker,
    seed, [A, B])."""
    data, digest, base = blob(reg, repo)
    path = base + digest
    tracker = tracker_factory(["--piece-length", "1MiB", "--hash-algo", algo] + list(tracker_args))
    first = swarm_agents(agent_factory, reg.host, tracker, secret_file, 2)
    for a in first:
        res = faultcheck.get_checked(a.port, path, data)
        assert full_ok(res, data, digest), res
    sw = tracker.swarms()[digest]
    assert sw["hashed"] == SIZE // PIECE, sw
    wait_for(lambda: tracker.swarms()[digest]["seeds"] == 2, 10, "both agents seeding")
    seed = swarmpeer.ForgingSeed(tracker.port, SECRET, digest, data).start()
    return data, digest, path, tracker, seed, first


def test_forging_member_is_banned_under_sha256(faulty_registry, agent_factory, tracker_factory,
                                               secret_file):
    """SHA-256 piece hashes (the default): a member serving pieces forged to
    the same XXH3-128 fails the piece check at the first piece, is banned
    (address and id) and reported, and no longer handed out by the tracker.
    Range requests during the swarm download get confirmed, verified pieces
    only; the pull succeeds on its first attempt."""
    reg = faulty_registry
    # One agent downloads here, so one report must be enough to hide the
    # forger (the default quorum of two is tested in test_tracker.py).
    data, digest, path, tracker, seed, first = forger_setup(
        reg, agent_factory, tracker_factory, secret_file, "wrong/forge256", "sha256",
        ["--bad-peer-reporters", "1"])
    try:
        assert tracker_hands_out(tracker, digest, SIZE, seed.addr)
        # Slow enough for Range requests to land while pieces arrive.
        c, = swarm_agents(agent_factory, reg.host, tracker, secret_file, 1,
                          ["--ingress-rate", "12MiB"])
        tries, probe = pull_with_probe(c, path, data, digest)
        conns = seed.snapshot()
    finally:
        seed.stop()
    report = "%s\nforger: %r\n%s" % (describe(tries), conns, tail(c.stderr_path, 30))
    assert seed.forged >= 1, "the agent never asked the forger: not meaningful\n" + report
    assert not any(x.get("error", "") and "collide" in x["error"] for x in conns), conns
    assert len(tries) == 1 and full_ok(tries[0], data, digest), report
    assert_ranges_clean(probe)
    s = probe.summary()
    assert_nothing_wrong_cached(c, path, data, digest)
    bans = [ln for ln in banned_lines(c) if seed.addr in ln]
    assert bans, "the forger was not banned:\n" + report
    assert metric(c.metrics(), "shoal_pieces_rejected_total") >= 1
    assert metric(tracker.metrics(), "shoal_tracker_bad_peer_reports_total") >= 1
    assert not tracker_hands_out(tracker, digest, SIZE, seed.addr), \
        "the tracker still hands out the reported forger"
    for a in first:
        assert not banned_lines(a), banned_lines(a)
    print("forger under sha256: %d pieces forged, %d Range requests (%d complete, %d during)"
          % (seed.forged, s["requests"], s["complete_206"], s["during"]))


def test_forging_member_under_xxh3(faulty_registry, agent_factory, tracker_factory, secret_file):
    """XXH3-128 piece hashes (the documented unsafe option): forged pieces
    pass the piece check; the whole-blob check catches them, the content is
    dropped and fetched again from upstream; no Range answer carries a
    forged byte (Range readers wait for the whole-blob check), no full GET
    completes with a wrong digest, and the pull succeeds at the latest on
    the client's retry."""
    reg = faulty_registry
    data, digest, path, tracker, seed, first = forger_setup(
        reg, agent_factory, tracker_factory, secret_file, "wrong/forgexx", "xxh3-128")
    try:
        c, = swarm_agents(agent_factory, reg.host, tracker, secret_file, 1,
                          ["--ingress-rate", "12MiB"])
        tries, probe = pull_with_probe(c, path, data, digest)
        conns = seed.snapshot()
    finally:
        seed.stop()
    report = "%s\nforger: %r\n%s" % (describe(tries), conns, tail(c.stderr_path, 30))
    assert seed.forged >= 1, "the agent never asked the forger: not meaningful\n" + report
    assert len(tries) <= 2 and full_ok(tries[-1], data, digest), report
    assert_no_wrong_full_get(tries, digest)
    assert_ranges_clean(probe)
    assert_nothing_wrong_cached(c, path, data, digest)
    m = c.metrics()
    assert metric(m, "shoal_digest_mismatches_total") == 1, report
    # Nothing in the piece check could tell: no ban, no rejected piece.
    assert metric(m, "shoal_pieces_rejected_total") == 0, report
    wrong = sum(t["wrong"] for t in tries)
    print("forger under xxh3-128: %d pieces forged, %d forged bytes reached a full GET that "
          "was then cut, %d tries" % (seed.forged, wrong, len(tries)))
