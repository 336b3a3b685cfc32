"""TLS 1.3 on the tracker API and the peer wire (docs/protocol.md, "TLS"):
a tracker and three agents in psk mode and in mtls mode (a cluster CA and
certificates made here with the openssl command), each blob arriving with
the right digest through peers that speak only TLS; a plaintext peer, a
peer with another secret and a certificate from another CA refused with a
reason in the logs; an agent whose mode does not match the tracker's told
why, and still serving its client from upstream; configuration mistakes
refused at start-up.

The tracker's API is reached from Python with the standard ssl module
(mtls) or with `openssl s_client` and a PSK derived here with HKDF from the
cluster secret (psk): the derivation in protocol.md, checked by a second
implementation. Every process runs on 127.0.0.1 on ports picked by binding
port 0 and is stopped by PID, even when a test fails.
"""

import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import subprocess
import threading

import pytest

import swarmpeer
from conftest import free_port, http_request, metric, need_tool, tail, wait_for
from test_tracker import Tracker

SECRET = b"tls-system-test-secret"
SIZE = 64 << 20


# ----------------------------------------------------------------- helpers --

def hkdf_sha256(ikm, info, length):
    """RFC 5869 with an empty salt."""
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def psk_of(secret):
    """(identity, key) as protocol.md derives them from the cluster secret."""
    key = hkdf_sha256(secret, b"shoal tls psk v1", 32)
    kid = hkdf_sha256(secret, b"shoal tls psk id v1", 8)
    return "shoal-psk-v1:" + kid.hex(), key


def shoalctl(args, env=None, timeout=30):
    from conftest import bin_dir
    e = dict(os.environ)
    for k in ("SHOAL_TRACKER", "SHOAL_CLUSTER_SECRET_FILE", "SHOAL_TLS_MODE", "SHOAL_TLS_CA",
              "SHOAL_TLS_CERT", "SHOAL_TLS_KEY"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([os.path.join(bin_dir(), "shoalctl")] + args, capture_output=True,
                          text=True, timeout=timeout, env=e)


def sign(method, path, body=b""):
    return swarmpeer.sign(SECRET, method, path, body)


def s_client_request(port, secret, method, path, body=b""):
    """One signed request to a psk tracker through `openssl s_client`:
    (status, body bytes). A failed handshake gives (None, stderr)."""
    ident, key = psk_of(secret)
    req = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Shoal-Auth: %s\r\nContent-Length: %d\r\n"
           "Connection: close\r\n\r\n" % (method, path, sign(method, path, body), len(body))
           ).encode() + body
    r = subprocess.run([need_tool("openssl"), "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-tls1_3", "-psk_identity", ident, "-psk", key.hex(), "-quiet"],
                       input=req, capture_output=True, timeout=20)
    out = r.stdout
    if not out.startswith(b"HTTP/1.1 "):
        return None, r.stderr.decode("utf-8", "replace")
    head, _, data = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), data


class Pki:
    """A cluster CA and certificates made with the openssl command."""

    def __init__(self, workdir, name="shoal test cluster CA"):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.openssl = need_tool("openssl")
        self.ca = os.path.join(workdir, "ca.pem")
        self.ca_key = os.path.join(workdir, "ca.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                  "-subj", "/CN=" + name)

    def _run(self, *args):
        r = subprocess.run((self.openssl,) + args, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "openssl %s: %s" % (" ".join(args), r.stderr)

    def issue(self, cn, eku="serverAuth,clientAuth"):
        """-> (cert path, key path) for cn, with IP:127.0.0.1 as its name."""
        cert = os.path.join(self.dir, cn + ".pem")
        key = os.path.join(self.dir, cn + ".key")
        csr = os.path.join(self.dir, cn + ".csr")
        ext = os.path.join(self.dir, cn + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=%s\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n" % eku)
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        self._run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key


class TlsTracker(Tracker):
    """A shoal-tracker whose API listener (api_port) speaks TLS; health and
    metrics come from its plaintext admin listener (admin_port)."""

    def __init__(self, workdir, tls_args, secret=SECRET):
        super().__init__(workdir, secret=secret, extra_args=list(tls_args))
        self.api_port = self.port

    def healthy(self):
        return http_request(self.admin_port, "GET", "/healthz", timeout=2)[0] == 200

    def url(self):
        return "https://127.0.0.1:%d" % self.api_port


@pytest.fixture
def trackers(tmp_path):
    started = []

    def make(tls_args, secret=SECRET):
        t = TlsTracker(str(tmp_path / ("tracker%d" % len(started))), tls_args, secret)
        started.append(t)
        return t.start()
    yield make
    for t in started:
        t.stop()


def write_secret(tmp_path, secret=SECRET, name="cluster-secret"):
    p = tmp_path / name
    p.write_bytes(secret + b"\n")
    return str(p)


def tls_agents(agent_factory, upstream, tracker_url, n, args_for):
    """n agents with the tracker at tracker_url; args_for(i) gives each its
    TLS (and secret) flags."""
    out = []
    for i in range(n):
        pp = free_port()
        a = agent_factory(upstream, extra_args=[
            "--tracker", tracker_url, "--peer-listen", "127.0.0.1:%d" % pp,
            "--node-name", "agent-%d" % i] + list(args_for(i)))
        a.peer_port = pp
        out.append(a)
    return out


def fetch(port, path, out):
    """GETs path, hashing the body as it streams."""
    h = hashlib.sha256()
    n = 0
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("GET", path)
        r = c.getresponse()
        out["status"] = r.status
        while True:
            b = r.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        c.close()
        out["digest"] = "sha256:" + h.hexdigest()
    except Exception as e:  # reported by the test
        out["error"] = repr(e)
    out["bytes"] = n


def pull_all(agents, path):
    results = [{} for _ in agents]
    threads = [threading.Thread(target=fetch, args=(a.port, path, results[i]), daemon=True)
               for i, a in enumerate(agents)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a client hung"
    return results


def check(res, desc, who):
    assert res.get("error") is None, "%s: %s" % (who, res["error"])
    assert res.get("status") == 200, "%s: status %s" % (who, res.get("status"))
    assert res["bytes"] == SIZE and res["digest"] == desc["digest"], (who, res)


def report(agents):
    names = ("shoal_upstream_bytes_total", "shoal_peer_rx_bytes_total",
             "shoal_peer_tx_bytes_total", "shoal_swarm_fallbacks_total")
    return "\n".join("%s: %s" % (a.host, " ".join("%s=%d" % (n[6:], a.metric(n)) for n in names))
                     for a in agents)


def swarm_pull(registry, build, agents, repo):
    """Pushes a SIZE blob, pulls it through every agent at once and checks
    that the swarm, not only upstream, delivered it."""
    d, desc = build.blob(SIZE)
    registry.push_blob(d, repo, desc["digest"])
    results = pull_all(agents, "/v2/%s/blobs/%s" % (repo, desc["digest"]))
    for i, res in enumerate(results):
        check(res, desc, "client of agent %d" % i)
    up = sum(a.metric("shoal_upstream_bytes_total") for a in agents)
    rx = sum(a.metric("shoal_peer_rx_bytes_total") for a in agents)
    assert up <= 1.02 * SIZE, "upstream bytes %d\n%s" % (up, report(agents))
    assert rx >= len(agents) * SIZE - up, "peer bytes %d\n%s" % (rx, report(agents))
    for a in agents:
        assert a.metric("shoal_swarm_fallbacks_total") == 0, report(agents)
    return desc


def ready_lines(agent):
    return [ln for ln in agent.logs().splitlines() if "event=ready" in ln and "comp=peer" in ln]


# ------------------------------------------------------------------- tests --

def test_psk_swarm(registry, agent_factory, trackers, build, tmp_path):
    secret_file = write_secret(tmp_path)
    tracker = trackers(["--tls-mode", "psk"])
    agents = tls_agents(agent_factory, registry.host, tracker.url(), 3,
                        lambda i: ["--cluster-secret-file", secret_file, "--tls-mode", "psk"])
    desc = swarm_pull(registry, build, agents, "tls/psk")
    ident, _ = psk_of(SECRET)

    # Every peer connection ran inside TLS with the cluster's PSK.
    for a in agents:
        lines = ready_lines(a)
        assert lines, "no peer connection on %s:\n%s" % (a.host, tail(a.stderr_path))
        assert all("tls_peer=%s cipher=TLS_AES_128_GCM_SHA256" % ident in ln for ln in lines), \
            lines[:3]
    # The agents used the tracker's API over TLS: announces, registrations.
    m = tracker.metrics()
    assert metric(m, "shoal_tracker_announces_total") > 0
    assert metric(m, "shoal_tracker_agents") == 3, m
    # A second PSK implementation (openssl s_client, the key derived above)
    # reads the API: the derivation is the documented one.
    def seeded():
        st, body = s_client_request(tracker.api_port, SECRET, "GET", "/v1/swarms")
        assert st == 200, (st, body)
        sw = {s["digest"]: s for s in json.loads(body)["swarms"]}
        return sw.get(desc["digest"], {}).get("seeds") == 3
    wait_for(seeded, 10, "three seeds in the tracker's swarm list")
    # shoalctl speaks it too (flags, or the environment).
    r = shoalctl(["swarms", "--tracker", tracker.url(), "-s", secret_file, "--tls-mode", "psk",
                  "-o", "json"])
    assert r.returncode == 0, r.stderr
    assert [sw["seeds"] for sw in json.loads(r.stdout)["swarms"]] == [3], r.stdout
    r = shoalctl(["agents", "-o", "json"], env={"SHOAL_TRACKER": tracker.url(),
                                                 "SHOAL_CLUSTER_SECRET_FILE": secret_file,
                                                 "SHOAL_TLS_MODE": "psk"})
    assert r.returncode == 0, r.stderr
    assert sorted(a["name"] for a in json.loads(r.stdout)["agents"]) == [
        "agent-0", "agent-1", "agent-2"], r.stdout
    # Without the mode it cannot talk to the TLS port, and says so.
    r = shoalctl(["swarms", "--tracker", tracker.url(), "-s", secret_file])
    assert r.returncode != 0
    r = shoalctl(["swarms", "--tracker", "http://127.0.0.1:%d" % tracker.api_port, "-s",
                  secret_file])
    assert r.returncode != 0 and "requires TLS 1.3" in r.stderr, r.stderr
    r = shoalctl(["swarms", "--tracker", "http://127.0.0.1:%d" % tracker.api_port, "-s",
                  secret_file, "--tls-mode", "psk"])
    assert r.returncode == 2 and "must be https://" in r.stderr, r.stderr
    # Another secret's PSK gets no answer at all.
    st, err = s_client_request(tracker.api_port, b"another secret", "GET", "/v1/swarms")
    assert st is None, "a wrong PSK got an answer"
    wait_for(lambda: "another cluster secret" in open(tracker.log).read(), 5,
             "the tracker to log the wrong PSK")

    # Plain http to the API port: a plaintext answer that says what to do.
    st, _, body = http_request(tracker.api_port, "GET", "/_shoal/health")
    assert st == 400 and b"requires TLS 1.3 (tls-mode psk)" in body, (st, body)
    # The plaintext admin listener serves health, metrics and, with TLS on the
    # API port, Harbor's and registries' endpoints (their own credentials),
    # never the cluster API.
    st, _, body = http_request(tracker.admin_port, "GET", "/v1/swarms",
                               headers={"X-Shoal-Auth": sign("GET", "/v1/swarms")})
    assert st == 404 and b"no such endpoint" in body, (st, body)
    st, _, body = http_request(tracker.admin_port, "GET", "/healthy")
    assert st == 200 and body == b'"OK"', (st, body)
    st, _, body = http_request(tracker.admin_port, "POST", "/v1/webhooks/harbor",
                               headers={"Content-Type": "application/json"}, body=b"{}")
    assert st == 401 and b"webhook-auth-file" in body, (st, body)  # routed, then refused

    # A plaintext peer with the right secret is refused, and told why.
    a = agents[0]
    r = swarmpeer.try_handshake(a.peer_port, desc["digest"], SECRET)
    assert swarmpeer.frame_types(r) == ["error"], r["frames"]
    assert swarmpeer.error_codes(r) == [swarmpeer.ERR_AUTH]
    assert b"requires TLS 1.3 (tls-mode psk)" in r["frames"][0][1]
    assert r["closed"]
    assert "a plaintext peer on a TLS port" in a.logs()
    # A TLS peer with another secret fails the handshake.
    ident2, key2 = psk_of(b"not the cluster secret")
    rr = subprocess.run([need_tool("openssl"), "s_client", "-connect",
                         "127.0.0.1:%d" % a.peer_port, "-tls1_3", "-psk_identity", ident2,
                         "-psk", key2.hex(), "-quiet"], input=b"", capture_output=True,
                        timeout=20)
    assert rr.returncode != 0 or rr.stdout == b"", rr
    wait_for(lambda: "it holds another cluster secret" in a.logs(), 5,
             "the agent to log the wrong PSK")
    st, _, _ = http_request(a.port, "GET", "/_shoal/health")
    assert st == 200


def mtls_context(pki, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(pki.ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_psk_replicas_on_redis(registry, agent_factory, trackers, redis_factory, build,
                              tmp_path):
    """Tracker replicas behind TLS: agents list both https:// URLs, and the
    TLS origin covers each of them."""
    secret_file = write_secret(tmp_path)
    redis = redis_factory()
    reps = [trackers(["--tls-mode", "psk", "--state", redis.url]) for _ in range(2)]
    urls = ",".join(t.url() for t in reps)
    agents = tls_agents(agent_factory, registry.host, urls, 3,
                        lambda i: ["--cluster-secret-file", secret_file, "--tls-mode", "psk"])
    swarm_pull(registry, build, agents, "tls/replicas")
    served = [metric(t.metrics(), "shoal_tracker_announces_total") for t in reps]
    assert sum(served) > 0, served
    # One replica gone: the agents' next requests go to the other, over TLS.
    busy = max(range(2), key=lambda i: served[i])
    reps[busy].stop()
    other = reps[1 - busy]
    before = metric(other.metrics(), "shoal_tracker_announces_total")
    wait_for(lambda: metric(other.metrics(), "shoal_tracker_agents") == 3, 20,
             "every agent registered with the remaining replica")
    wait_for(lambda: metric(other.metrics(), "shoal_tracker_announces_total") > before, 20,
             "announces reaching the remaining replica")
    for a in agents:
        assert "tls=failed" not in a.logs(), tail(a.stderr_path)


def test_mtls_swarm(registry, agent_factory, trackers, build, tmp_path):
    pki = Pki(str(tmp_path / "pki"))
    other = Pki(str(tmp_path / "other-pki"), name="another CA")
    t_cert, t_key = pki.issue("tracker", eku="serverAuth")
    certs = [pki.issue("agent-%d" % i) for i in range(3)]
    x_cert, x_key = other.issue("intruder")
    secret_file = write_secret(tmp_path)
    tracker = trackers(["--tls-mode", "mtls", "--tls-ca", pki.ca, "--tls-cert", t_cert,
                        "--tls-key", t_key])
    agents = tls_agents(agent_factory, registry.host, tracker.url(), 3,
                        lambda i: ["--cluster-secret-file", secret_file, "--tls-mode", "mtls",
                                   "--tls-ca", pki.ca, "--tls-cert", certs[i][0],
                                   "--tls-key", certs[i][1]])
    desc = swarm_pull(registry, build, agents, "tls/mtls")
    for i, a in enumerate(agents):
        lines = ready_lines(a)
        assert lines and all("tls_peer=cn=agent-" in ln for ln in lines), lines[:3]
        assert not any("tls_peer=cn=agent-%d " % i in ln for ln in lines), "talked to itself"

    # The API with an agent's certificate (Python's ssl checks the tracker's
    # certificate against the cluster CA and its name, 127.0.0.1).
    ctx = mtls_context(pki, *certs[0])

    def seeded():
        c = http.client.HTTPSConnection("127.0.0.1", tracker.api_port, context=ctx, timeout=10)
        c.request("GET", "/v1/swarms", headers={"X-Shoal-Auth": sign("GET", "/v1/swarms")})
        r = c.getresponse()
        body = r.read()
        c.close()
        assert r.status == 200, body
        sw = {s["digest"]: s for s in json.loads(body)["swarms"]}
        return sw.get(desc["digest"], {}).get("seeds") == 3
    wait_for(seeded, 10, "three seeds in the tracker's swarm list")
    assert metric(tracker.metrics(), "shoal_tracker_agents") == 3
    r = shoalctl(["agents", "--tracker", tracker.url(), "-s", secret_file, "--tls-mode", "mtls",
                  "--tls-ca", pki.ca, "--tls-cert", certs[1][0], "--tls-key", certs[1][1],
                  "-o", "json"])
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["agents"]) == 3, r.stdout

    # A certificate from another CA: refused by the tracker and by a peer.
    bad = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bad.load_verify_locations(pki.ca)
    bad.load_cert_chain(x_cert, x_key)
    for port, who in ((tracker.api_port, "tracker"), (agents[0].peer_port, "agent")):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                with bad.wrap_socket(s, server_hostname="127.0.0.1") as ts:
                    # TLS 1.3: the server checks the client's certificate
                    # after the client's side of the handshake ended.
                    ts.sendall(b"x")
                    if ts.recv(1) == b"":
                        raise ConnectionResetError("%s closed the connection" % who)
    wait_for(lambda: "peer certificate 'intruder'" in agents[0].logs(), 5,
             "the agent to log the foreign certificate")
    wait_for(lambda: "tls=failed" in open(tracker.log).read(), 5,
             "the tracker to log the foreign certificate")
    # And a client without any certificate.
    nocert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    nocert.load_verify_locations(pki.ca)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        with socket.create_connection(("127.0.0.1", tracker.api_port), timeout=10) as s:
            with nocert.wrap_socket(s, server_hostname="127.0.0.1") as ts:
                ts.sendall(b"GET /_shoal/health HTTP/1.1\r\n\r\n")
                if ts.recv(1) == b"":
                    raise ConnectionResetError("closed")


def test_mismatched_agents_fall_back_to_upstream(registry, agent_factory, trackers, build,
                                                 tmp_path):
    secret_file = write_secret(tmp_path)
    other_file = write_secret(tmp_path, b"not the cluster secret", "other-secret")
    tracker = trackers(["--tls-mode", "psk"])
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "tls/mismatch", desc["digest"])
    path = "/v2/tls/mismatch/blobs/" + desc["digest"]
    # tls-mode off, pointed at the TLS port over plain http.
    plain, = tls_agents(agent_factory, registry.host, "http://127.0.0.1:%d" % tracker.api_port, 1,
                        lambda i: ["--cluster-secret-file", secret_file])
    # psk, but with another secret.
    wrong, = tls_agents(agent_factory, registry.host, tracker.url(), 1,
                        lambda i: ["--cluster-secret-file", other_file, "--tls-mode", "psk"])
    for a in (plain, wrong):
        res = {}
        fetch(a.port, path, res)
        check(res, desc, a.host)
        assert a.metric("shoal_peer_rx_bytes_total") == 0
    wait_for(lambda: "requires TLS 1.3 (tls-mode psk)" in plain.logs(), 15,
             "the plaintext agent to log the tracker's answer")
    wait_for(lambda: "tls=failed" in wrong.logs() and "same tls-mode" in wrong.logs(), 15,
             "the agent with another secret to log its failed handshake")
    log = open(tracker.log).read()
    assert "plaintext client on a TLS port" in log
    assert "it holds another cluster secret" in log
    assert metric(tracker.metrics(), "shoal_tracker_agents") == 0


def run_agent(args, timeout=20):
    from conftest import agent_bin
    return subprocess.run([agent_bin()] + args, capture_output=True, text=True, timeout=timeout)


def run_tracker(args, timeout=20):
    from test_tracker import tracker_bin
    return subprocess.run([tracker_bin(), "--listen", "127.0.0.1:0"] + args, capture_output=True,
                          text=True, timeout=timeout)


def test_config_errors(tmp_path):
    secret_file = write_secret(tmp_path)
    pki = Pki(str(tmp_path / "pki"))
    cert, key = pki.issue("agent-0")
    t_cert, t_key = pki.issue("tracker", eku="serverAuth")
    _, other_key = pki.issue("agent-1")
    base = ["--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
            "--peer-listen", "127.0.0.1:0", "--cluster-secret-file", secret_file]
    cases = [
        (base + ["--tracker", "http://127.0.0.1:1", "--tls-mode", "psk"],
         'config: "tracker": tls-mode psk needs an https:// tracker URL'),
        (base + ["--tracker", "https://127.0.0.1:1", "--tls-mode", "tls"],
         'config: "tls-mode": "tls" is not off, psk or mtls'),
        (base + ["--tracker", "https://127.0.0.1:1", "--tls-mode", "mtls", "--tls-ca", pki.ca,
                 "--tls-cert", cert],
         'config: "tls-key": required with tls-mode mtls'),
        (base + ["--tracker", "https://127.0.0.1:1", "--tls-mode", "mtls", "--tls-ca", pki.ca,
                 "--tls-cert", cert, "--tls-key", other_key],
         "does not match the certificate"),
        (base + ["--tracker", "https://127.0.0.1:1", "--tls-mode", "mtls", "--tls-ca", pki.ca,
                 "--tls-cert", t_cert, "--tls-key", t_key],
         "does not allow both TLS roles"),
        (base + ["--tracker", "https://127.0.0.1:1", "--tls-ca", pki.ca],
         'config: "tls-ca": only used with tls-mode mtls'),
        (base + ["--tracker", "https://127.0.0.1:1", "--tls-mode", "psk",
                 "--tls-ciphersuites", "TLS_AES_256_GCM_SHA384"],
         "cannot be used with tls-mode psk"),
    ]
    for args, want in cases:
        r = run_agent(args)
        assert r.returncode == 2 and want in r.stderr, (args, r.returncode, r.stderr)
    # psk without a secret: refused for want of the secret (main's rule), and
    # with --insecure-no-secret by the psk check itself.
    for extra in ([], ["--insecure-no-secret"]):
        r = run_agent(["--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                       "--tracker", "https://127.0.0.1:1", "--peer-listen", "127.0.0.1:0",
                       "--tls-mode", "psk"] + extra)
        assert r.returncode == 2 and "cluster-secret-file" in r.stderr, r.stderr
        r = run_tracker(["--tls-mode", "psk"] + extra)
        assert r.returncode == 2 and "cluster-secret-file" in r.stderr, r.stderr
    r = run_agent(["--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                   "--tracker", "https://127.0.0.1:1", "--peer-listen", "127.0.0.1:0",
                   "--tls-mode", "psk", "--insecure-no-secret"])
    assert r.returncode == 2 and "set cluster-secret-file" in r.stderr, r.stderr
    r = run_tracker(["--tls-mode", "psk", "--insecure-no-secret"])
    assert r.returncode == 2 and "set cluster-secret-file" in r.stderr, r.stderr
    r = run_tracker(["--cluster-secret-file", secret_file, "--tls-mode", "mtls", "--tls-ca",
                     pki.ca, "--tls-cert", t_cert, "--tls-key", "/nonexistent.key"])
    assert r.returncode == 2 and "tls-key /nonexistent.key" in r.stderr, r.stderr


# ---------------------------------------------------- refusals, one by one --

SMALL = 1 << 20


def readiness(agent):
    st, _, body = http_request(agent.admin_port, "GET", "/readyz", timeout=5)
    return st, json.loads(body)


def small_blob(registry, build, repo):
    d, desc = build.blob(SMALL)
    registry.push_blob(d, repo, desc["digest"])
    return desc, "/v2/%s/blobs/%s" % (repo, desc["digest"])


def check_small(agent, path, desc):
    res = {}
    fetch(agent.port, path, res)
    assert res.get("error") is None and res.get("status") == 200, (agent.host, res)
    assert res["bytes"] == SMALL and res["digest"] == desc["digest"], (agent.host, res)


def test_plaintext_agent_refused(registry, agent_factory, trackers, build, tmp_path):
    """An agent in tls-mode off meets a psk tracker and a psk peer: both
    refuse it with an answer it can read, and its clients are still served
    from upstream."""
    secret_file = write_secret(tmp_path)
    tracker = trackers(["--tls-mode", "psk"])
    member, = tls_agents(agent_factory, registry.host, tracker.url(), 1,
                         lambda i: ["--cluster-secret-file", secret_file, "--tls-mode", "psk"])
    plain, = tls_agents(agent_factory, registry.host, "http://127.0.0.1:%d" % tracker.api_port, 1,
                        lambda i: ["--cluster-secret-file", secret_file])
    desc, path = small_blob(registry, build, "tls/plain")

    # The tracker: a plaintext 400 naming the mode, in the agent's log and in
    # the reason its /readyz gives.
    wait_for(lambda: "requires TLS 1.3 (tls-mode psk)" in plain.logs(), 15,
             "the plaintext agent to log the tracker's answer")
    st, doc = readiness(plain)
    assert st == 503, doc
    assert any("tracker answered 400" in r and "requires TLS 1.3 (tls-mode psk)" in r
               for r in doc["reasons"]), doc
    assert "plaintext client on a TLS port" in open(tracker.log).read()
    wait_for(lambda: readiness(member)[0] == 200, 15, "the psk agent registered")

    # A TLS peer: the plaintext HELLO gets an ERROR frame saying what the port
    # wants, then a close; the peer logs why.
    r = swarmpeer.try_handshake(member.peer_port, desc["digest"], SECRET)
    assert swarmpeer.frame_types(r) == ["error"], r["frames"]
    assert swarmpeer.error_codes(r) == [swarmpeer.ERR_AUTH]
    assert b"this peer requires TLS 1.3 (tls-mode psk)" in r["frames"][0][1], r["frames"]
    assert r["closed"]
    wait_for(lambda: "a plaintext peer on a TLS port" in member.logs(), 5,
             "the psk agent to log the plaintext peer")

    # The refused agent still serves its client, from upstream.
    check_small(plain, path, desc)
    assert plain.metric("shoal_peer_rx_bytes_total") == 0
    names = [a["name"] for a in json.loads(
        s_client_request(tracker.api_port, SECRET, "GET", "/v1/agents")[1])["agents"]]
    assert names == ["agent-0"], names  # the plaintext agent never registered


def test_wrong_psk_refused(registry, agent_factory, trackers, build, tmp_path):
    """psk with another cluster secret: the tracker and a peer fail the
    handshake, each side logs which secret it holds (by key id), the agent
    says why it is not ready, and its clients are served from upstream."""
    secret_file = write_secret(tmp_path)
    other_file = write_secret(tmp_path, b"not the cluster secret", "other-secret")
    tracker = trackers(["--tls-mode", "psk"])
    member, = tls_agents(agent_factory, registry.host, tracker.url(), 1,
                         lambda i: ["--cluster-secret-file", secret_file, "--tls-mode", "psk"])
    wrong, = tls_agents(agent_factory, registry.host, tracker.url(), 1,
                        lambda i: ["--cluster-secret-file", other_file, "--tls-mode", "psk",
                                   "--node-name", "wrong-secret"])
    desc, path = small_blob(registry, build, "tls/wrongpsk")
    ours, _ = psk_of(SECRET)
    theirs, _ = psk_of(b"not the cluster secret")

    wait_for(lambda: "tls=failed" in wrong.logs() and "same tls-mode" in wrong.logs(), 15,
             "the agent with another secret to log its failed handshake")
    st, doc = readiness(wrong)
    assert st == 503 and any("TLS handshake or record failed" in r for r in doc["reasons"]), doc
    wait_for(lambda: "it holds another cluster secret" in open(tracker.log).read(), 5,
             "the tracker to log the wrong PSK")
    log = open(tracker.log).read()
    assert "'%s'" % theirs in log and "'%s'" % ours in log, "key ids not logged"

    # A TLS client with another secret's PSK at the member's peer port.
    ident2, key2 = psk_of(b"not the cluster secret")
    rr = subprocess.run([need_tool("openssl"), "s_client", "-connect",
                         "127.0.0.1:%d" % member.peer_port, "-tls1_3", "-psk_identity", ident2,
                         "-psk", key2.hex(), "-quiet"], input=b"", capture_output=True,
                        timeout=20)
    assert rr.returncode != 0 or rr.stdout == b"", rr
    wait_for(lambda: "it holds another cluster secret" in member.logs(), 5,
             "the agent to log the wrong PSK")
    # With another secret's PSK the tracker gives no answer at all.
    st, _ = s_client_request(tracker.api_port, b"not the cluster secret", "GET", "/v1/agents")
    assert st is None, "a wrong PSK got an answer"

    check_small(wrong, path, desc)
    assert wrong.metric("shoal_peer_rx_bytes_total") == 0
    wait_for(lambda: readiness(member)[0] == 200, 15, "the psk agent registered")
    st, body = s_client_request(tracker.api_port, SECRET, "GET", "/v1/agents")
    assert st == 200, body
    assert [a["name"] for a in json.loads(body)["agents"]] == ["agent-0"], body


def s_client_msgs(port, args, data=b""):
    """openssl s_client -msg against port: (returncode, stdout, stderr) as
    text; -msg lists every handshake message either side sent. With data it
    waits for the server to close (an HTTP request with Connection: close)."""
    r = subprocess.run([need_tool("openssl"), "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-tls1_3", "-msg"] + (["-ign_eof"] if data else []) + list(args),
                       input=data, capture_output=True, timeout=30)
    return (r.returncode, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"))


def test_fresh_keys_and_no_tickets(registry, agent_factory, trackers, build, tmp_path):
    """Every handshake makes fresh ECDHE keys, with the PSK too (a key share
    in the ServerHello, psk_dhe_ke), and no side issues a session ticket, so
    a leaked secret or key does not open recorded traffic and nothing is
    resumed."""
    secret_file = write_secret(tmp_path)
    tracker = trackers(["--tls-mode", "psk"])
    member, = tls_agents(agent_factory, registry.host, tracker.url(), 1,
                         lambda i: ["--cluster-secret-file", secret_file, "--tls-mode", "psk"])
    ident, key = psk_of(SECRET)
    req = ("GET /_shoal/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").encode()
    for port, data, who in ((tracker.api_port, req, "tracker"),
                            (member.peer_port, b"", "peer port")):
        rc, out, err = s_client_msgs(port, ["-psk_identity", ident, "-psk", key.hex()], data)
        assert "ServerHello" in out, (who, out[-2000:], err[-2000:])
        assert "Server Temp Key: X25519" in out or "Peer Temp Key: X25519" in out \
            or "Server Temp Key: ECDH" in out, (who, "no ECDHE key share", out[-3000:])
        assert "NewSessionTicket" not in out, (who, "a session ticket was issued")
        # (s_client calls any external-PSK handshake "Reused": that is the PSK,
        # not a resumed session; the ECDHE key above makes the keys fresh.)
        if who == "tracker":
            assert "HTTP/1.1 200" in out, out[-1500:]

    # mtls, through Python's ssl: a full handshake and no ticket to resume.
    pki = Pki(str(tmp_path / "pki"))
    t_cert, t_key = pki.issue("tracker", eku="serverAuth")
    c_cert, c_key = pki.issue("client")
    mt = trackers(["--tls-mode", "mtls", "--tls-ca", pki.ca, "--tls-cert", t_cert,
                   "--tls-key", t_key])
    ctx = mtls_context(pki, c_cert, c_key)
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", mt.api_port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as ts:
                ts.sendall(req)
                data = b""
                while True:
                    b = ts.recv(65536)
                    if not b:
                        break
                    data += b
                assert data.startswith(b"HTTP/1.1 200"), data[:200]
                assert ts.version() == "TLSv1.3"
                assert not ts.session_reused
                assert ts.session is not None and not ts.session.has_ticket, "a ticket was issued"
