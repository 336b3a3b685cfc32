"""The admin listener of agent and tracker (--admin-listen): /metrics in
the Prometheus text format (promtool check metrics passes), /healthz for
liveness and /readyz for readiness, which for an agent with a tracker
means the tracker accepted its registration lately, unless
--tracker-optional."""

import json
import socket
import subprocess

import pytest

from conftest import (agent_bin, free_port, http_request, need_tool, parse_metrics, wait_for)
from test_tracker import SECRET, Tracker

PROMTOOL = "promtool"


def ready(port):
    st, _, body = http_request(port, "GET", "/readyz", timeout=5)
    return st, json.loads(body)


def promtool_ok(text, what):
    r = subprocess.run([need_tool(PROMTOOL), "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "promtool check metrics on the %s:\n%s%s" % (what, r.stdout,
                                                                           r.stderr)


def swarm_args(tracker_port, interval="1s"):
    return ["--tracker", "http://127.0.0.1:%d" % tracker_port,
            "--peer-listen", "127.0.0.1:%d" % free_port(),
            "--register-interval", interval]


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "cluster-secret"
    p.write_bytes(SECRET + b"\n")
    return str(p)


def test_agent_admin_endpoints_and_metrics(registry, agent_factory, build):
    b = build.image(layers=1, layer_size=20000)
    registry.push(b, "admin/app")
    a = agent_factory(registry.host)
    st, hd, body = a.admin("/healthz")
    assert st == 200 and json.loads(body) == {"status": "ok"}
    st, doc = ready(a.admin_port)
    assert st == 200 and doc == {"status": "ready"}  # no tracker: nothing to wait for
    # Traffic, so that the histograms and the per-upstream counters have samples.
    st, _, _ = a.get("/v2/admin/app/manifests/" + b.tag)
    assert st == 200
    st, _, _ = a.get("/v2/admin/app/blobs/" + b.manifest["layers"][0]["digest"])
    assert st == 200
    st, _, _ = a.get("/v2/admin/app/blobs/" + b.manifest["layers"][0]["digest"])
    assert st == 200

    st, hd, body = a.admin("/metrics")
    assert st == 200 and hd["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    promtool_ok(text, "agent")
    m = parse_metrics(text)
    assert m[("shoal_build_info", (("daemon", "agent"), ("version", "0.1.0")))] == 1
    up = (("upstream", registry.host),)
    assert m[("shoal_upstream_requests_total", up)] >= 2
    assert m[("shoal_upstream_request_duration_seconds_count", up)] >= 2
    assert m[("shoal_upstream_time_to_first_byte_seconds_count", up)] >= 2
    assert m[("shoal_http_request_duration_seconds_count",
              (("kind", "blob"), ("source", "cache")))] == 1
    assert m[("shoal_http_request_duration_seconds_count",
              (("kind", "manifest"), ("source", "upstream")))] == 1
    assert m[("shoal_http_time_to_first_byte_seconds_bucket",
              (("kind", "blob"), ("le", "+Inf"), ("source", "cache")))] == 1
    # The mirror listener serves the same metrics (for scripts and
    # shoalctl bench written before the admin port).
    st, _, mirror_text = a.get("/metrics")
    assert st == 200
    names = lambda t: {ln.split()[2] for ln in t.splitlines() if ln.startswith("# TYPE")}
    assert names(mirror_text.decode()) == names(text)

    # Methods and paths.
    st, _, _ = http_request(a.admin_port, "POST", "/metrics", body=b"")
    assert st == 405
    st, _, _ = http_request(a.admin_port, "GET", "/v2/")
    assert st == 404
    st, _, body = http_request(a.admin_port, "HEAD", "/readyz")
    assert st == 200 and body == b""


def test_agent_readiness_follows_the_tracker(tmp_path, registry, agent_factory, secret_file):
    t = Tracker(str(tmp_path / "tracker"), secret=SECRET)
    port = t.port
    try:
        # The tracker is not there yet: alive, not ready, and it says why.
        a = agent_factory(registry.host, extra_args=swarm_args(port) + [
            "--cluster-secret-file", secret_file])
        st, _, _ = a.admin("/healthz")
        assert st == 200
        st, doc = ready(a.admin_port)
        assert st == 503 and doc["status"] == "not ready"
        assert any("tracker http://127.0.0.1:%d" % port in r for r in doc["reasons"]), doc
        # Unless the tracker is optional.
        opt = agent_factory(registry.host, extra_args=swarm_args(port) + [
            "--cluster-secret-file", secret_file, "--tracker-optional"])
        assert ready(opt.admin_port)[0] == 200

        t.start()
        wait_for(lambda: ready(a.admin_port)[0] == 200, 15, "ready once registered")
        assert "level=info comp=admin daemon=agent ready=true" in a.logs()
        st, doc = ready(t.admin_port)
        assert st == 200 and doc == {"status": "ready"}

        # Three missed beats (register-interval 1s) and it is not ready.
        t.stop()
        wait_for(lambda: ready(a.admin_port)[0] == 503, 15, "not ready without the tracker")
        st, doc = ready(a.admin_port)
        assert any("has not accepted a registration for" in r for r in doc["reasons"]), doc
        assert "comp=admin daemon=agent ready=false" in a.logs()
        assert ready(opt.admin_port)[0] == 200
        t.start()
        wait_for(lambda: ready(a.admin_port)[0] == 200, 15, "ready again")
    finally:
        if t.proc and t.proc.poll() is None:
            t.stop()


def test_tracker_admin_endpoints(tmp_path):
    t = Tracker(str(tmp_path / "tracker"), secret=SECRET).start()
    try:
        st, _, body = http_request(t.admin_port, "GET", "/healthz")
        assert st == 200 and json.loads(body) == {"status": "ok"}
        st, hd, body = http_request(t.admin_port, "GET", "/metrics")
        assert st == 200
        promtool_ok(body.decode(), "tracker")
        m = parse_metrics(body.decode())
        assert m[("shoal_build_info", (("daemon", "tracker"), ("version", "0.1.0")))] == 1
        assert "shoal_tracker_announces_total" in m
        # Not on the API port's /v2 or anything else.
        st, _, _ = http_request(t.admin_port, "GET", "/v1/swarms")
        assert st == 404
        # Harbor's endpoints are here only when the API port speaks TLS
        # (test_tls.py); without it they stay on the API port alone.
        for path in ("/healthy", "/health", "/oapi/v1/jobs/1", "/v1/webhooks/harbor"):
            st, _, _ = http_request(t.admin_port, "GET", path)
            assert st == 404, path
        st, _, _ = http_request(t.port, "GET", "/healthy")
        assert st == 200
    finally:
        t.stop()


def test_admin_listen_off_taken_and_invalid(tmp_path, registry, agent_factory):
    a = agent_factory(registry.host, extra_args=["--admin-listen", "off"])
    assert "admin_port=0" in a.logs()
    with pytest.raises(OSError):
        http_request(a.admin_port, "GET", "/healthz", timeout=2)

    # A taken port: the agent says which flag to change and exits.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy = s.getsockname()[1]
    try:
        r = subprocess.run([agent_bin(), "--listen", "127.0.0.1:%d" % free_port(),
                            "--admin-listen", "127.0.0.1:%d" % busy, "--data-dir",
                            str(tmp_path / "d"), "--upstream", "http://" + registry.host],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "cannot listen on admin-listen 127.0.0.1:%d" % busy in r.stderr, r.stderr
        assert "--admin-listen=off" in r.stderr
    finally:
        s.close()
    for bad in ("nowhere", "127.0.0.1:99999"):
        r = subprocess.run([agent_bin(), "--admin-listen", bad], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2 and '"admin-listen"' in r.stderr, r.stderr
