"""shoalctl against a tracker whose API speaks TLS 1.3 (docs/protocol.md,
"TLS"): --tls-mode psk with the cluster secret file, and mtls with a
certificate from the cluster CA (an operator's, client-only), by flags and
by the SHOAL_TLS_* environment; a whole cluster prewarm through it; and
every way of getting it wrong refused with a reason. Processes run on
127.0.0.1 on ports picked here and are stopped by PID."""

import json
import os
import subprocess

import ocibuild
from conftest import bin_dir, free_port, http_request, wait_for
from test_tls import SECRET, Pki, TlsTracker, write_secret

import pytest


def shoalctl(*args, env=None, timeout=180):
    e = dict(os.environ)
    for k in ("SHOAL_TRACKER", "SHOAL_CLUSTER_SECRET_FILE", "SHOAL_TLS_MODE", "SHOAL_TLS_CA",
              "SHOAL_TLS_CERT", "SHOAL_TLS_KEY"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([os.path.join(bin_dir(), "shoalctl")] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=e)


@pytest.fixture
def tls_tracker(tmp_path):
    started = []

    def make(tls_args):
        t = TlsTracker(str(tmp_path / ("tracker%d" % len(started))),
                       list(tls_args) + ["--job-poll-interval", "200ms"])
        started.append(t)
        return t.start()
    yield make
    for t in started:
        t.stop()


def start_agents(agent_factory, registry, tracker, n, tls_args):
    agents = []
    for i in range(n):
        agents.append(agent_factory(registry.host, extra_args=[
            "--tracker", tracker.url(), "--peer-listen", "127.0.0.1:%d" % free_port(),
            "--node-name", "node-%d" % i, "--register-interval", "1s"] + list(tls_args)))
    for a in agents:
        wait_for(lambda: http_request(a.admin_port, "GET", "/readyz", timeout=5)[0] == 200, 20,
                 "%s registered with the TLS tracker" % a.host)
    return agents


def cached(agent):
    d = os.path.join(agent.data_dir, "blobs", "sha256")
    return {"sha256:" + n for n in os.listdir(d)} if os.path.isdir(d) else set()


def prewarm_through(ctl_args, registry, agents, tmp_path, repo):
    """Pushes an image and warms every agent with shoalctl prewarm --tracker:
    the job is created, followed and reported over the tracker's TLS."""
    b = ocibuild.build_multilayer(str(tmp_path / repo.replace("/", "-")), tag="v1")
    registry.push(b, repo)
    ref = "%s/%s:v1" % (registry.host, repo)
    r = shoalctl("prewarm", "-o", "json", *ctl_args, ref)
    assert r.returncode == 0, r.stdout + r.stderr
    job = json.loads(r.stdout)
    assert job["state"] == "SUCCESS" and job["agents"]["succeeded"] == len(agents), job
    for a in agents:
        assert set(b.blob_digests()) <= cached(a), a.host
    r = shoalctl("jobs", *ctl_args)
    assert r.returncode == 0 and "SUCCESS" in r.stdout and ref in r.stdout, r.stdout + r.stderr
    r = shoalctl("jobs", str(job["id"]), "-o", "json", *ctl_args)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == job["id"], r.stderr
    return job


def test_shoalctl_psk(registry, agent_factory, tls_tracker, tmp_path):
    secret_file = write_secret(tmp_path)
    tracker = tls_tracker(["--tls-mode", "psk"])
    agents = start_agents(agent_factory, registry, tracker, 2,
                          ["--cluster-secret-file", secret_file, "--tls-mode", "psk"])
    ctl = ["--tracker", tracker.url(), "-s", secret_file, "--tls-mode", "psk"]

    r = shoalctl("agents", "-o", "json", *ctl)
    assert r.returncode == 0, r.stderr
    assert sorted(a["name"] for a in json.loads(r.stdout)["agents"]) == ["node-0", "node-1"]
    r = shoalctl("agents", *ctl)
    assert r.returncode == 0 and "node-0" in r.stdout and "node-1" in r.stdout, r.stdout
    # The same from the environment.
    r = shoalctl("swarms", "-o", "json", env={
        "SHOAL_TRACKER": tracker.url(), "SHOAL_CLUSTER_SECRET_FILE": secret_file,
        "SHOAL_TLS_MODE": "psk"})
    assert r.returncode == 0 and "swarms" in json.loads(r.stdout), r.stderr
    prewarm_through(ctl, registry, agents, tmp_path, "tls/psk-app")

    # Every way of getting it wrong ends with a reason, never a hang.
    plain_url = "http://127.0.0.1:%d" % tracker.api_port
    r = shoalctl("agents", "--tracker", plain_url, "-s", secret_file)
    assert r.returncode == 1 and "requires TLS 1.3 (tls-mode psk)" in r.stderr, r.stderr
    r = shoalctl("agents", "--tracker", tracker.url(), "-s", secret_file)
    assert r.returncode == 1 and "TLS" in r.stderr and "--tls-mode" in r.stderr, r.stderr
    r = shoalctl("agents", "--tracker", plain_url, "-s", secret_file, "--tls-mode", "psk")
    assert r.returncode == 2 and "must be https://" in r.stderr, r.stderr
    r = shoalctl("agents", "--tracker", tracker.url(), "--tls-mode", "psk")
    assert r.returncode == 2 and "cluster-secret-file" in r.stderr, r.stderr
    r = shoalctl("agents", "--tracker", tracker.url(), "-s", secret_file, "--tls-mode", "tls")
    assert r.returncode == 2 and "is not off, psk or mtls" in r.stderr, r.stderr
    other = write_secret(tmp_path, b"not the cluster secret", "other-secret")
    r = shoalctl("agents", "--tracker", tracker.url(), "-s", other, "--tls-mode", "psk")
    assert r.returncode == 1 and "TLS handshake" in r.stderr, r.stderr
    assert "cluster secret" in r.stderr, r.stderr
    wait_for(lambda: "it holds another cluster secret" in open(tracker.log).read(), 5,
             "the tracker to log the wrong PSK")


def test_shoalctl_mtls(registry, agent_factory, tls_tracker, tmp_path):
    pki = Pki(str(tmp_path / "pki"))
    other = Pki(str(tmp_path / "other-pki"), name="another CA")
    t_cert, t_key = pki.issue("tracker", eku="serverAuth")
    a_certs = [pki.issue("node-%d" % i) for i in range(2)]
    op_cert, op_key = pki.issue("operator", eku="clientAuth")
    x_cert, x_key = other.issue("intruder", eku="clientAuth")
    secret_file = write_secret(tmp_path)
    tracker = tls_tracker(["--tls-mode", "mtls", "--tls-ca", pki.ca, "--tls-cert", t_cert,
                           "--tls-key", t_key])
    agents = []
    for i in range(2):
        agents += start_agents(agent_factory, registry, tracker, 1, [
            "--cluster-secret-file", secret_file, "--tls-mode", "mtls", "--tls-ca", pki.ca,
            "--tls-cert", a_certs[i][0], "--tls-key", a_certs[i][1], "--node-name",
            "node-%d" % i])
    ctl = ["--tracker", tracker.url(), "-s", secret_file, "--tls-mode", "mtls", "--tls-ca",
           pki.ca, "--tls-cert", op_cert, "--tls-key", op_key]

    r = shoalctl("agents", "-o", "json", *ctl)
    assert r.returncode == 0, r.stderr
    assert sorted(a["name"] for a in json.loads(r.stdout)["agents"]) == ["node-0", "node-1"]
    wait_for(lambda: "tls_peer=cn=operator" in open(tracker.log).read()
             or "cn=operator" in open(tracker.log).read(), 5,
             "the tracker to log the operator's certificate")
    r = shoalctl("swarms", "-o", "json", env={
        "SHOAL_TRACKER": tracker.url(), "SHOAL_CLUSTER_SECRET_FILE": secret_file,
        "SHOAL_TLS_MODE": "mtls", "SHOAL_TLS_CA": pki.ca, "SHOAL_TLS_CERT": op_cert,
        "SHOAL_TLS_KEY": op_key})
    assert r.returncode == 0 and "swarms" in json.loads(r.stdout), r.stderr
    prewarm_through(ctl, registry, agents, tmp_path, "tls/mtls-app")

    base = ["--tracker", tracker.url(), "-s", secret_file, "--tls-mode", "mtls"]
    r = shoalctl("agents", *base, "--tls-ca", pki.ca, "--tls-cert", op_cert)
    assert r.returncode == 2 and "tls-key" in r.stderr and "required" in r.stderr, r.stderr
    r = shoalctl("agents", *base, "--tls-ca", pki.ca, "--tls-cert", op_cert,
                 "--tls-key", a_certs[0][1])
    assert r.returncode == 2 and "does not match the certificate" in r.stderr, r.stderr
    # A certificate from another CA: refused by the tracker, and said.
    r = shoalctl("agents", *base, "--tls-ca", other.ca, "--tls-cert", x_cert, "--tls-key", x_key)
    assert r.returncode == 1 and "TLS handshake" in r.stderr, r.stderr
    r = shoalctl("agents", *base, "--tls-ca", pki.ca, "--tls-cert", t_cert, "--tls-key", t_key)
    assert r.returncode == 2 and "does not allow a TLS client" in r.stderr, r.stderr
    # psk against an mtls tracker.
    r = shoalctl("agents", "--tracker", tracker.url(), "-s", secret_file, "--tls-mode", "psk")
    assert r.returncode == 1 and "TLS handshake" in r.stderr, r.stderr
    assert SECRET  # the agents' secret signs requests in both modes
