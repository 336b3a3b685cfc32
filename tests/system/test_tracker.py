"""shoal-tracker as a process: announces from several fake agents signed with
the cluster secret, leases, hash propagation, authentication failures,
request validation, metrics, the swarm list, expiry through the real timer,
configuration errors and the generated configuration reference.

Every tracker runs on 127.0.0.1 on a port picked by binding port 0 and is
stopped by PID, even when a test fails.
"""

import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (REPO_ROOT, bin_dir, free_port, http_request, metric, parse_metrics,
                      stop_process, tail, wait_for)

SECRET = b"tracker-test-secret"
PL = 1 << 20  # the default piece length for blobs up to 2 GiB
DIGEST_A = "sha256:" + "a1" * 32
DIGEST_B = "sha256:" + "b2" * 32


def tracker_bin():
    return os.path.join(bin_dir(), "shoal-tracker")


class Tracker:
    """One shoal-tracker process with its secret file and log."""

    def __init__(self, workdir, secret=SECRET, extra_args=None):
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.admin_port = free_port()
        self.secret = secret
        self.log = os.path.join(workdir, "tracker.log")
        self.args = [tracker_bin(), "--listen", "127.0.0.1:%d" % self.port,
                     "--admin-listen", "127.0.0.1:%d" % self.admin_port,
                     "--log-level", "debug"]
        if secret is not None:
            path = os.path.join(workdir, "secret")
            with open(path, "wb") as f:
                f.write(secret + b"\n")  # the trailing newline is not part of it
            self.args += ["--cluster-secret-file", path]
        else:
            self.args += ["--insecure-no-secret"]  # the tracker refuses to run open otherwise
        self.args += extra_args or []
        self.proc = None

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("shoal-tracker exited: %s" % tail(self.log))
            try:
                return self.healthy()
            except OSError:
                return False
        wait_for(up, 15, "shoal-tracker on port %d" % self.port)
        return self

    def healthy(self):
        return http_request(self.port, "GET", "/_shoal/health", timeout=2)[0] == 200

    def stop(self):
        return stop_process(self.proc)

    # -- requests --

    def sign(self, method, path, body=b"", ts=None, secret=None):
        ts = int(time.time()) if ts is None else ts
        key = self.secret if secret is None else secret
        msg = ("%d\n%s\n%s\n" % (ts, method, path)).encode() + body
        return "%d:%s" % (ts, hmac.new(key or b"", msg, hashlib.sha256).hexdigest())

    def post(self, doc, headers=None, sign=True, raw=None, conn=None):
        body = raw if raw is not None else json.dumps(doc).encode()
        h = {"Content-Type": "application/json"}
        if sign:
            h["X-Shoal-Auth"] = self.sign("POST", "/v1/announce", body)
        h.update(headers or {})
        if conn is not None:
            conn.request("POST", "/v1/announce", body=body, headers=h)
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        st, _, data = http_request(self.port, "POST", "/v1/announce", headers=h, body=body)
        return st, json.loads(data)

    def swarms(self):
        st, _, data = http_request(self.port, "GET", "/v1/swarms",
                                   headers={"X-Shoal-Auth": self.sign("GET", "/v1/swarms")})
        assert st == 200, data
        return {s["digest"]: s for s in json.loads(data)["swarms"]}

    def metrics(self):
        st, hdrs, data = http_request(self.admin_port, "GET", "/metrics")
        assert st == 200
        assert hdrs["content-type"].startswith("text/plain")
        return parse_metrics(data.decode())


@pytest.fixture(params=["memory", "redis"])
def state_args(request, redis_factory):
    """Every tracker test runs against both state backends: in memory, and
    in a redis-server of its own (the replicas' shared state)."""
    if request.param == "memory":
        return []
    return ["--state", redis_factory().url]


@pytest.fixture
def tracker_factory(tmp_path, state_args):
    started = []

    def make(default_spread=False, **kw):
        # Whole runs of lease-pieces: these tests are about the lease
        # mechanics; test_small_blob_leases_spread keeps the default spread.
        spread = [] if default_spread else ["--lease-spread", "1"]
        kw["extra_args"] = spread + list(kw.get("extra_args") or []) + state_args
        t = Tracker(str(tmp_path / ("tracker%d" % len(started))), **kw)
        started.append(t)
        return t.start()
    yield make
    for t in started:
        t.stop()


@pytest.fixture
def tracker(tracker_factory):
    return tracker_factory()


def announce_doc(agent, digest=DIGEST_A, size=20 * PL, **kw):
    doc = {"digest": digest, "size": size, "agent": agent,
           "addr": "127.0.0.%d:5081" % (1 + sum(map(ord, agent)) % 200), "event": "progress",
           "have": 0, "complete": False, "want_lease": False}
    doc.update(kw)
    return doc


def fake_hash(i):
    return hashlib.sha256(b"piece-%d" % i).hexdigest()


# ---------------------------------------------------------------------------------

def test_announce_leases_and_hashes(tracker):
    # A first agent creates the swarm and takes the lowest run.
    st, a = tracker.post(announce_doc("node-a", event="started", want_lease=True))
    assert st == 200, a
    assert a["interval_ms"] == 1000
    assert a["piece_length"] == PL and a["pieces"] == 20
    assert a["hash_algo"] == "sha256"  # the default: collision resistant
    assert a["hashes"] == {} and a["peers"] == []
    assert a["lease"] == {"pieces": list(range(0, 8)), "expires_ms": 30000}

    # Others get disjoint runs, and no lease once everything is leased.
    st, b = tracker.post(announce_doc("node-b", event="started", want_lease=True))
    assert st == 200 and b["lease"]["pieces"] == list(range(8, 16))
    st, c = tracker.post(announce_doc("node-c", event="started", want_lease=True))
    assert st == 200 and c["lease"]["pieces"] == list(range(16, 20))
    st, d = tracker.post(announce_doc("node-d", event="started", want_lease=True, have=3))
    assert st == 200 and "lease" not in d
    assert sorted(p["agent"] for p in d["peers"]) == ["node-a", "node-b", "node-c"]

    # Peers: never the caller, complete first, then by have.
    st, s = tracker.post(announce_doc("node-s", complete=True, have=20, event="completed"))
    assert st == 200
    st, a = tracker.post(announce_doc("node-a"))
    agents = [p["agent"] for p in a["peers"]]
    assert "node-a" not in agents and agents[0] == "node-s" and agents[1] == "node-d"
    assert a["peers"][0] == {"agent": "node-s", "addr": announce_doc("node-s")["addr"],
                             "complete": True, "have": 20}

    # The holder's hashes reach everyone; a hash for someone else's piece is ignored.
    st, r = tracker.post(announce_doc("node-b", hashes={"0": fake_hash(0)}))
    assert st == 200 and r["hashes"] == {}
    st, r = tracker.post(announce_doc("node-a", want_lease=True,
                                      hashes={"0": fake_hash(0), "1": fake_hash(1)}))
    assert st == 200
    assert r["hashes"] == {"0": fake_hash(0), "1": fake_hash(1)}
    assert r["lease"]["pieces"] == list(range(2, 8))
    st, r = tracker.post(announce_doc("node-d"))
    assert r["hashes"] == {"0": fake_hash(0), "1": fake_hash(1)}

    sw = tracker.swarms()[DIGEST_A]
    assert sw["size"] == 20 * PL and sw["pieces"] == 20 and sw["piece_length"] == PL
    assert sw["hashed"] == 2 and sw["peers"] == 5 and sw["seeds"] == 1
    assert sw["leased"] == 6 + 8 + 4

    # lease_failed gives pieces back; the next agent gets them.
    st, r = tracker.post(announce_doc("node-c", lease_failed=[16, 17, 18, 19]))
    assert st == 200
    st, r = tracker.post(announce_doc("node-d", want_lease=True))
    assert r["lease"]["pieces"] == [16, 17, 18, 19]

    # A stopped agent leaves and its lease is free again.
    st, r = tracker.post(announce_doc("node-b", event="stopped"))
    assert st == 200 and r["peers"] == [] and "lease" not in r
    st, r = tracker.post(announce_doc("node-s", want_lease=True))
    assert r["lease"]["pieces"] == list(range(8, 16))
    assert "node-b" not in [p["agent"] for p in r["peers"]]

    m = tracker.metrics()
    assert metric(m, "shoal_tracker_swarms") == 1
    assert metric(m, "shoal_tracker_peers") == 4
    assert metric(m, "shoal_tracker_announces_total") == 13
    assert metric(m, "shoal_tracker_leases_granted_total") == 5
    assert metric(m, "shoal_tracker_hashes_accepted_total") == 2
    assert metric(m, "shoal_tracker_hashes_ignored_total") == 1
    assert metric(m, "shoal_tracker_auth_failures_total") == 0
    assert "shoal_tracker_leases_expired_total" in m

    # A second swarm is independent.
    st, r = tracker.post(announce_doc("node-a", digest=DIGEST_B, size=1, want_lease=True))
    assert st == 200 and r["pieces"] == 1 and r["lease"]["pieces"] == [0] and r["peers"] == []
    assert set(tracker.swarms()) == {DIGEST_A, DIGEST_B}


def test_small_blob_leases_spread(tracker_factory):
    """By default a blob of fewer than 256 pieces is fetched in short
    leases: five agents asking for a 5-piece blob get one piece each, a
    sixth none; a 100-piece blob goes out in runs of 4."""
    tracker = tracker_factory(default_spread=True)
    for i in range(6):
        st, r = tracker.post(announce_doc("node-%d" % i, digest=DIGEST_B, size=5 * PL,
                                          want_lease=True))
        assert st == 200, r
        if i < 5:
            assert r["lease"]["pieces"] == [i]
        else:
            assert "lease" not in r
    st, r = tracker.post(announce_doc("node-a", size=100 * PL, want_lease=True))
    assert st == 200 and r["lease"]["pieces"] == [0, 1, 2, 3]
    st, r = tracker.post(announce_doc("node-b", size=100 * PL, want_lease=True))
    assert st == 200 and r["lease"]["pieces"] == [4, 5, 6, 7]
    assert tracker.swarms()[DIGEST_B]["leased"] == 5


def test_hash_log_sends_each_hash_once(tracker):
    """An agent that says where it is in the swarm's hash log gets only the
    hashes past it: replies do not grow with the blob."""
    st, a = tracker.post(announce_doc("node-a", want_lease=True, hashes_from=0, table=0))
    assert st == 200, a
    table = a["table"]
    assert 1 <= table < 2 ** 53 and a["hashes_seq"] == 0 and a["hashed"] == 0
    assert a["lease"]["pieces"] == list(range(8))
    hashes = {str(i): fake_hash(i) for i in (3, 0, 5)}
    st, a = tracker.post(announce_doc("node-a", hashes=hashes, hashes_from=0, table=table))
    assert st == 200 and a["hashes"] == hashes and a["hashes_seq"] == 3 and a["hashed"] == 3
    # Caught up: nothing; one behind: the last one; another table: all.
    st, b = tracker.post(announce_doc("node-b", hashes_from=3, table=table))
    assert st == 200 and b["hashes"] == {} and b["hashes_seq"] == 3
    st, b = tracker.post(announce_doc("node-b", hashes_from=2, table=table))
    assert b["hashes"] == {"5": fake_hash(5)}
    st, b = tracker.post(announce_doc("node-b", hashes_from=3, table=table + 1))
    assert b["hashes"] == hashes and b["table"] == table
    # An agent that does not keep hashes still gets them all, and no log fields.
    st, c = tracker.post(announce_doc("node-c"))
    assert c["hashes"] == hashes and "table" not in c and "hashes_seq" not in c
    st, r = tracker.post(announce_doc("node-c", hashes_from=1))
    assert st == 400 and r["error"].startswith("table:"), r


def test_keepalive_and_expect_continue(tracker):
    """Announces reuse one connection; a large signed body with Expect:
    100-continue (what curl sends) is answered without a stall."""
    conn = http.client.HTTPConnection("127.0.0.1", tracker.port, timeout=10)
    try:
        for i in range(3):
            st, r = tracker.post(announce_doc("node-k", want_lease=True), conn=conn)
            assert st == 200 and r["lease"]["pieces"] == list(range(8))
    finally:
        conn.close()
    hashes = {str(i): fake_hash(i) for i in range(8)}
    body = json.dumps(announce_doc("node-k", hashes=hashes, pad="x" * 4000)).encode()
    head = ("POST /v1/announce HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nExpect: 100-continue\r\nX-Shoal-Auth: %s\r\n\r\n"
            % (len(body), tracker.sign("POST", "/v1/announce", body))).encode()
    import socket
    s = socket.create_connection(("127.0.0.1", tracker.port), timeout=10)
    try:
        s.sendall(head)
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        s.sendall(body)
        data = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        hdr, _, rest = data.partition(b"\r\n\r\n")
        n = int([ln.split(b":")[1] for ln in hdr.split(b"\r\n")
                 if ln.lower().startswith(b"content-length:")][0])
        while len(rest) < n:
            rest += s.recv(65536)
    finally:
        s.close()
    assert hdr.startswith(b"HTTP/1.1 200 "), hdr
    assert json.loads(rest[:n])["hashes"] == hashes


def test_auth_failures(tracker):
    doc = announce_doc("node-x")
    body = json.dumps(doc).encode()
    cases = [
        ("missing", None),
        ("wrong secret", tracker.sign("POST", "/v1/announce", body, secret=b"other")),
        # Well past the 300 s: time(2) in the tracker reads the kernel's coarse
        # clock, up to a tick behind Python's, so "301 s ago" by Python's clock
        # could still be 300 s ago by the tracker's just after a second turns
        # (the exact boundary is test_cluster_auth's, with a fixed clock).
        ("stale", tracker.sign("POST", "/v1/announce", body, ts=int(time.time()) - 400)),
        ("future", tracker.sign("POST", "/v1/announce", body, ts=int(time.time()) + 400)),
        ("other path", tracker.sign("POST", "/v1/swarms", body)),
        ("other body", tracker.sign("POST", "/v1/announce", body + b" ")),
        ("no secret", tracker.sign("POST", "/v1/announce", body, secret=b"")),
        ("garbage", "hello"),
    ]
    for what, value in cases:
        h = {} if value is None else {"X-Shoal-Auth": value}
        st, r = tracker.post(doc, sign=False, headers=h)
        assert st == 401, what
        assert isinstance(r["error"], str) and r["error"], what
    st, r = tracker.post(doc, sign=False)
    assert "missing" in r["error"]
    st, r = tracker.post(doc, sign=False, headers={
        "X-Shoal-Auth": tracker.sign("POST", "/v1/announce", body, ts=int(time.time()) - 400)})
    assert "300 s" in r["error"]
    # Nothing was recorded.
    st, hdrs, data = http_request(tracker.port, "GET", "/v1/swarms")
    assert st == 401 and hdrs["content-type"] == "application/json"
    assert tracker.swarms() == {}
    # A good one passes; skew within 300 s is fine.
    st, r = tracker.post(doc, sign=False, headers={
        "X-Shoal-Auth": tracker.sign("POST", "/v1/announce", body, ts=int(time.time()) - 200)})
    assert st == 200, r
    m = tracker.metrics()
    assert metric(m, "shoal_tracker_auth_failures_total") == len(cases) + 3
    # Health and metrics need no MAC (as on the agent).
    st, _, data = http_request(tracker.port, "GET", "/_shoal/health")
    assert st == 200 and json.loads(data) == {"status": "ok"}
    with open(tracker.log) as f:
        assert "auth failed" in f.read()


def test_no_secret_refused_without_the_flag(tmp_path):
    """Without a secret the tracker does not start unless told to run open,
    and its message names both ways out."""
    port = free_port()
    p = subprocess.run([tracker_bin(), "--listen", "127.0.0.1:%d" % port, "--admin-listen", "off"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0, p
    assert "--insecure-no-secret" in p.stderr and "--cluster-secret-file" in p.stderr, p.stderr
    with pytest.raises(OSError):
        http_request(port, "GET", "/_shoal/health", timeout=2)
    # Given both, it refuses too: the operator's intent is unclear.
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    p = subprocess.run([tracker_bin(), "--listen", "127.0.0.1:%d" % port, "--admin-listen", "off",
                        "--insecure-no-secret", "--cluster-secret-file", str(secret)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "mutually exclusive" in p.stderr, p.stderr


def test_no_secret_tracker_warns(tracker_factory):
    t = tracker_factory(secret=None)
    with open(t.log) as f:
        log = f.read()
    assert "level=warn" in log and "WITHOUT a cluster secret" in log, log[-2000:]
    assert "secret=NONE" in log


def test_no_secret_tracker(tracker_factory):
    t = tracker_factory(secret=None)
    st, r = t.post(announce_doc("node-n"))  # signed with the empty key
    assert st == 200, r
    st, r = t.post(announce_doc("node-n"), sign=False, headers={
        "X-Shoal-Auth": t.sign("POST", "/v1/announce", json.dumps(announce_doc("node-n")).encode(),
                               secret=SECRET)})
    assert st == 401


@pytest.mark.parametrize("raw,field", [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b"", "body"),
    (json.dumps({"size": 1, "agent": "a", "addr": "127.0.0.1:1"}).encode(), "digest"),
    (json.dumps(announce_doc("a", digest="sha256:xyz")).encode(), "digest"),
    (json.dumps(announce_doc("a", size="12")).encode(), "size"),
    (json.dumps(announce_doc("a", size=-1)).encode(), "size"),
    (json.dumps(announce_doc("a", size=0)).encode(), "size"),
    (json.dumps(announce_doc("a", size=(1 << 40) + 1)).encode(), "size"),
    (json.dumps(announce_doc("a b")).encode(), "agent"),
    (json.dumps(announce_doc("x" * 129)).encode(), "agent"),
    (json.dumps(announce_doc("a", addr="nohost")).encode(), "addr"),
    (json.dumps(announce_doc("a", addr="0.0.0.0:5081")).encode(), "addr"),
    (json.dumps(announce_doc("a", event="paused")).encode(), "event"),
    (json.dumps(announce_doc("a", have=21)).encode(), "have"),
    (json.dumps(announce_doc("a", complete="yes")).encode(), "complete"),
    (json.dumps(announce_doc("a", want_lease=1)).encode(), "want_lease"),
    (json.dumps(announce_doc("a", hashes=[])).encode(), "hashes"),
    (json.dumps(announce_doc("a", hashes={"01": fake_hash(1)})).encode(), "hashes"),
    (json.dumps(announce_doc("a", hashes={"1": "abc"})).encode(), "hashes[\"1\"]"),
    (json.dumps(announce_doc("a", hashes={"20": fake_hash(1)})).encode(), "hashes"),
    (json.dumps(announce_doc("a", lease_failed=[-1])).encode(), "lease_failed[0]"),
    (json.dumps(announce_doc("a", lease_failed=[20])).encode(), "lease_failed"),
    (json.dumps(announce_doc("a", bad_peers="127.0.0.9:5081")).encode(), "bad_peers"),
    (json.dumps(announce_doc("a", bad_peers=[5081])).encode(), "bad_peers"),
    (json.dumps(announce_doc("a", bad_peers=["127.0.0.9"])).encode(), "bad_peers"),
    (json.dumps(announce_doc("a", bad_peers=["0.0.0.0:5081"])).encode(), "bad_peers"),
    (json.dumps(announce_doc("a", bad_peers=["127.0.0.9:5081", "x:0"])).encode(), "bad_peers"),
    (json.dumps(announce_doc("a", bad_peers=["b\u00e4d:5081"])).encode(), "bad_peers"),
    (json.dumps(announce_doc("a", bad_peers=["127.0.%d.1:5081" % i for i in range(65)])).encode(),
     "bad_peers"),
])
def test_bad_announce(tracker, raw, field):
    st, r = tracker.post(None, raw=raw)
    assert st == 400, (raw, r)
    assert r["error"].startswith(field + ":"), r["error"]


def test_other_errors(tracker):
    st, r = tracker.post(announce_doc("node-a"))
    assert st == 200
    # The size of a known blob cannot change.
    st, r = tracker.post(announce_doc("node-b", size=20 * PL + 1))
    assert st == 400 and r["error"].startswith("size:") and "does not match" in r["error"]
    # Duplicate keys are refused rather than silently picked.
    raw = b'{"digest":"%s","digest":"%s","size":1,"agent":"a","addr":"127.0.0.1:1"}' % (
        DIGEST_A.encode(), DIGEST_B.encode())
    st, r = tracker.post(None, raw=raw)
    assert st == 400 and r["error"].startswith("body:")
    st, _, data = http_request(tracker.port, "GET", "/nope")
    assert st == 404 and "error" in json.loads(data)
    st, _, data = http_request(tracker.port, "GET", "/v1/announce")
    assert st == 405 and "error" in json.loads(data)
    # Bodies past 1 MiB are refused before they are read.
    big = json.dumps(announce_doc("node-a", pad="x" * (1 << 20))).encode()
    st, hdrs, data = http_request(tracker.port, "POST", "/v1/announce", body=big, headers={
        "X-Shoal-Auth": tracker.sign("POST", "/v1/announce", big)})
    assert st == 413 and hdrs["content-type"] == "application/json"
    assert "error" in json.loads(data)
    m = tracker.metrics()
    assert metric(m, "shoal_tracker_bad_requests_total") == 2
    assert metric(m, "shoal_tracker_announces_total") == 1


def peer_agents(reply):
    return sorted(p["agent"] for p in reply["peers"])


def test_bad_peers(tracker_factory):
    # One report is enough here: the mechanism itself (the default quorum of
    # two agents is test_bad_peers_need_two_reporters).
    tracker = tracker_factory(extra_args=["--bad-peer-reporters", "1"])
    for agent in ("node-a", "node-b", "node-c"):
        st, r = tracker.post(announce_doc(agent))
        assert st == 200, r
    assert peer_agents(r) == ["node-a", "node-b"]
    bad = announce_doc("node-b")["addr"]

    # node-a reports node-b: node-b leaves every peer list of the swarm.
    st, r = tracker.post(announce_doc("node-a", bad_peers=[bad]))
    assert st == 200, r
    assert peer_agents(r) == ["node-c"]
    st, r = tracker.post(announce_doc("node-c"))
    assert st == 200 and peer_agents(r) == ["node-a"]
    # node-b keeps announcing: it stays in the swarm and still gets peers.
    st, r = tracker.post(announce_doc("node-b"))
    assert st == 200 and peer_agents(r) == ["node-a", "node-c"]
    assert tracker.swarms()[DIGEST_A]["peers"] == 3
    # Another swarm is not affected.
    tracker.post(announce_doc("node-b", digest=DIGEST_B, size=PL))
    st, r = tracker.post(announce_doc("node-c", digest=DIGEST_B, size=PL))
    assert st == 200 and peer_agents(r) == ["node-b"]

    # An address nobody has yet is recorded: the agent announcing with it
    # later is not handed out either.
    st, r = tracker.post(announce_doc("node-c", bad_peers=["127.0.0.250:5081"]))
    assert st == 200
    st, r = tracker.post(announce_doc("node-z", addr="127.0.0.250:5081"))
    assert st == 200 and peer_agents(r) == ["node-a", "node-c"]
    st, r = tracker.post(announce_doc("node-a"))
    assert peer_agents(r) == ["node-c"]

    m = tracker.metrics()
    assert metric(m, "shoal_tracker_bad_peer_reports_total") == 2
    with open(tracker.log) as f:
        warns = [ln for ln in f if "bad peer reported" in ln]
    assert len(warns) == 2
    assert "level=warn" in warns[0]
    assert "agent=node-a bad_peer=%s digest=%s" % (bad, DIGEST_A) in warns[0]
    assert "suspect_ms=300000" in warns[0]
    assert "agent=node-c bad_peer=127.0.0.250:5081" in warns[1]

    # A refused report changes nothing and is not counted.
    st, r = tracker.post(announce_doc("node-a", bad_peers=[announce_doc("node-c")["addr"],
                                                             "nohost"]))
    assert st == 400 and r["error"].startswith("bad_peers:"), r
    st, r = tracker.post(announce_doc("node-a"))
    assert peer_agents(r) == ["node-c"]
    assert metric(tracker.metrics(), "shoal_tracker_bad_peer_reports_total") == 2


def test_bad_peer_mark_expires(tracker_factory):
    t = tracker_factory(extra_args=["--bad-peer-time", "1s", "--bad-peer-reporters", "1"])
    t.post(announce_doc("node-b"))
    st, r = t.post(announce_doc("node-a", bad_peers=[announce_doc("node-b")["addr"]]))
    assert st == 200 and r["peers"] == []
    started = time.monotonic()

    def back():
        t.post(announce_doc("node-b"))
        return peer_agents(t.post(announce_doc("node-a"))[1]) == ["node-b"]
    wait_for(back, 15, "node-b to be handed out again", interval=0.1)
    assert time.monotonic() - started >= 0.9
    assert metric(t.metrics(), "shoal_tracker_bad_peer_reports_total") == 1

    # With bad-peer-time 0 reports are only counted.
    t = tracker_factory(extra_args=["--bad-peer-time", "0", "--bad-peer-reporters", "1"])
    t.post(announce_doc("node-b"))
    st, r = t.post(announce_doc("node-a", bad_peers=[announce_doc("node-b")["addr"]]))
    assert st == 200 and peer_agents(r) == ["node-b"]
    assert metric(t.metrics(), "shoal_tracker_bad_peer_reports_total") == 1


def test_bad_peers_need_two_reporters(tracker):
    """By default one agent cannot hide a peer from everyone: it takes
    reports from two distinct agents."""
    for agent in ("node-a", "node-b", "node-c"):
        st, r = tracker.post(announce_doc(agent))
        assert st == 200, r
    bad = announce_doc("node-b")["addr"]
    st, r = tracker.post(announce_doc("node-a", bad_peers=[bad]))
    assert st == 200 and "node-b" in peer_agents(r)
    st, r = tracker.post(announce_doc("node-a", bad_peers=[bad]))
    assert st == 200 and "node-b" in peer_agents(r), "the same reporter twice hid a peer"
    st, r = tracker.post(announce_doc("node-c", bad_peers=[bad]))
    assert st == 200 and "node-b" not in peer_agents(r)
    st, r = tracker.post(announce_doc("node-a"))
    assert "node-b" not in peer_agents(r)


def test_expiry_by_timer(tracker_factory):
    t = tracker_factory(extra_args=["--peer-timeout", "2s", "--lease-timeout", "1s",
                                    "--interval", "200ms"])
    st, r = t.post(announce_doc("node-a", want_lease=True))
    assert st == 200 and r["interval_ms"] == 200
    assert r["lease"] == {"pieces": list(range(8)), "expires_ms": 1000}
    st, r = t.post(announce_doc("node-b", want_lease=True, hashes={}))
    assert r["lease"]["pieces"] == list(range(8, 16))

    # b keeps announcing; a goes silent and is dropped, with its lease.
    def a_gone():
        t.post(announce_doc("node-b"))
        # The gauge counts recorded peers: it drops once the expiry pass ran.
        return metric(t.metrics(), "shoal_tracker_peers") == 1
    wait_for(a_gone, 15, "node-a to expire", interval=0.2)
    # b announces right before c, so a busy machine cannot let b expire too.
    t.post(announce_doc("node-b"))
    st, r = t.post(announce_doc("node-c", want_lease=True))
    assert r["lease"]["pieces"] == list(range(8))
    assert [p["agent"] for p in r["peers"]] == ["node-b"]
    m = t.metrics()
    assert metric(m, "shoal_tracker_leases_expired_total") >= 2  # a's, and b's own timeout
    assert metric(m, "shoal_tracker_peers_expired_total") >= 1

    # Once every peer is gone, a swarm without hashes disappears.
    wait_for(lambda: t.swarms() == {}, 15, "the swarm to be dropped", interval=0.2)
    assert metric(t.metrics(), "shoal_tracker_swarms") == 0


def test_sha256_and_forced_piece_length(tracker_factory):
    t = tracker_factory(extra_args=["--hash-algo", "sha256", "--piece-length", "1MiB",
                                    "--lease-pieces", "2", "--max-peers", "1"])
    st, r = t.post(announce_doc("node-a", size=(5 << 20) + 1, want_lease=True))
    assert st == 200
    assert r["hash_algo"] == "sha256" and r["piece_length"] == 1 << 20 and r["pieces"] == 6
    assert r["lease"]["pieces"] == [0, 1]
    h = hashlib.sha256(b"x").hexdigest()
    # An XXH3-128-sized hash (32 hex characters) is refused by a sha256 swarm.
    st, r = t.post(announce_doc("node-a", size=(5 << 20) + 1, hashes={"0": fake_hash(0)[:32]}))
    assert st == 400 and r["error"].startswith('hashes["0"]:') and "64" in r["error"]
    st, r = t.post(announce_doc("node-a", size=(5 << 20) + 1, hashes={"0": h}))
    assert st == 200 and r["hashes"] == {"0": h}
    t.post(announce_doc("node-b", size=(5 << 20) + 1))
    st, r = t.post(announce_doc("node-c", size=(5 << 20) + 1))
    assert len(r["peers"]) == 1


def test_clean_stop(tracker_factory):
    for sig in (signal.SIGTERM, signal.SIGINT):
        t = tracker_factory()
        # An idle keep-alive connection must not hold the shutdown up.
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
        conn.request("GET", "/_shoal/health")
        assert conn.getresponse().read()
        try:
            assert stop_process(t.proc, sig=sig) == 0
        finally:
            conn.close()
        with open(t.log) as f:
            log = f.read()
        assert "msg=stopped status=0" in log
        assert "comp=http" in log and "path=/_shoal/health status=200" in log


def test_config_errors(tmp_path):
    for args, key in [(["--max-peers", "0"], "max-peers"),
                      (["--piece-length", "3MiB"], "piece-length"),
                      (["--hash-algo", "md5"], "hash-algo"),
                      (["--bad-peer-time", "25h"], "bad-peer-time"),
                      (["--listen", "nowhere"], "listen"),
                      (["--cluster-secret-file", str(tmp_path / "missing")],
                       "cluster-secret-file")]:
        p = subprocess.run([tracker_bin(), "--admin-listen", "off"] + args, capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 2, (args, p.stderr)
        assert '"%s"' % key in p.stderr, p.stderr
    p = subprocess.run([tracker_bin(), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "--lease-timeout" in p.stdout


def test_configuration_md_matches_option_table():
    out = subprocess.run([tracker_bin(), "--print-config-markdown"], check=True,
                         capture_output=True, text=True).stdout
    with open(os.path.join(REPO_ROOT, "docs", "configuration.md")) as f:
        doc = f.read()
    begin = "<!-- BEGIN tracker-options -->\n"
    end = "<!-- END tracker-options -->"
    assert begin in doc and end in doc
    section = doc[doc.index(begin) + len(begin):doc.index(end)]
    assert section == out, ("docs/configuration.md is out of date; regenerate the table with "
                            "build/bin/shoal-tracker --print-config-markdown")


def test_signed_replies_and_replays(tracker):
    """The tracker signs every reply to a signed request, bound to that
    request (X-Shoal-Reply-Auth); a request signed with a nonce (what every
    shoal component sends) is taken once: the same one again is a replay."""
    body = json.dumps(announce_doc("node-r")).encode()
    ts = int(time.time())
    field = "%d-%s" % (ts, os.urandom(8).hex())
    msg = ("%s\nPOST\n/v1/announce\n" % field).encode() + body
    auth = "%s:%s" % (field, hmac.new(tracker.secret or b"", msg, hashlib.sha256).hexdigest())
    h = {"Content-Type": "application/json", "X-Shoal-Auth": auth}
    st, hd, data = http_request(tracker.port, "POST", "/v1/announce", headers=h, body=body)
    assert st == 200, data
    sig = {k.lower(): v for k, v in hd.items()}.get("x-shoal-reply-auth")
    assert sig, "reply without X-Shoal-Reply-Auth: %r" % hd
    rts, rmac = sig.split(":")
    want = hmac.new(tracker.secret or b"", ("%s\nREPLY 200\n%s\n" % (rts, auth)).encode() + data,
                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(rmac, want), "the reply's MAC does not bind it to the request"
    # The very same request again: refused as a replay, and counted.
    st, _, data = http_request(tracker.port, "POST", "/v1/announce", headers=h, body=body)
    assert st == 401 and b"replayed" in data, (st, data)
    assert metric(tracker.metrics(), "shoal_tracker_auth_failures_total") >= 1
