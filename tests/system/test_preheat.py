"""Cluster preheat (issue 11): agents register with the tracker, the tracker
runs preheat jobs on the agents a selector picks, and Harbor and a registry
drive it unchanged.

Harbor's requests are replayed exactly as its Go code sends them
(src/pkg/p2p/preheat/provider/dragonfly.go, kraken.go, the notifier's
default and CloudEvents formats; see docs/harbor.md), and every answer is
decoded the way Harbor's structs decode it. Everything runs on 127.0.0.1:
a real docker-registry, a real shoal-tracker and real shoal-agents, each
stopped by PID.
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import time
import uuid

import pytest

import ocibuild
from conftest import Registry, bin_dir, free_port, http_request, tail, wait_for
from test_tracker import Tracker

SECRET = b"preheat-test-secret"
PROVIDER_TOKEN = "harbor-provider-token-7f3a9c"
WEBHOOK_AUTH = "Bearer webhook-secret-51d0e2"

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
WEIGHTS = "application/vnd.cncf.model.weight.v1.*"


# ------------------------------------------------------------------ helpers --

def shoalctl(*args, timeout=180, env=None):
    path = os.path.join(bin_dir(), "shoalctl")
    if not os.access(path, os.X_OK):
        pytest.fail("shoalctl not built at %s (set SHOAL_BIN_DIR)" % path)
    e = dict(os.environ)
    e.pop("SHOAL_TRACKER", None)
    e.pop("SHOAL_CLUSTER_SECRET_FILE", None)
    e.update(env or {})
    # stdout is a pipe: plain lines, no progress bars.
    return subprocess.run([path] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=e)


def harbor_decode(body):
    """Decodes a Dragonfly job answer the way Harbor's dragonflyJobResponse
    does (encoding/json: an int id, time.Time created_at/updated_at, the
    state string, result.job_states[].{error, results[].{success_tasks,
    failure_tasks, scheduler_cluster_id}}), failing where Go would."""
    d = json.loads(body)
    assert isinstance(d, dict), body
    assert type(d.get("id")) is int, "id must be a JSON integer: %r" % d.get("id")
    for k in ("created_at", "updated_at"):
        v = d.get(k)
        assert v is None or (isinstance(v, str) and RFC3339.match(v)), "%s=%r" % (k, v)
    assert d.get("state") in ("PENDING", "SUCCESS", "FAILURE"), d.get("state")
    result = d.get("result") or {}
    assert isinstance(result, dict)
    for js in result.get("job_states") or []:
        assert isinstance(js.get("error", ""), str)
        for r in js.get("results") or []:
            cid = r.get("scheduler_cluster_id", 0)
            assert type(cid) is int and cid >= 0
            for t in r.get("success_tasks") or []:
                for k in ("url", "hostname", "ip"):
                    assert isinstance(t.get(k, ""), str), t
            for t in r.get("failure_tasks") or []:
                for k in ("url", "hostname", "ip", "description"):
                    assert isinstance(t.get(k, ""), str), t
    return d


def harbor_tasks(d):
    """(success hostnames, {failure hostname: description}, joined errors)."""
    ok, bad, errors = [], {}, []
    for js in (d.get("result") or {}).get("job_states") or []:
        errors.append(js.get("error", ""))
        for r in js.get("results") or []:
            ok += [t["hostname"] for t in r.get("success_tasks") or []]
            bad.update({t["hostname"]: t["description"] for t in r.get("failure_tasks") or []})
    return sorted(ok), bad, "; ".join(errors)


class Cluster:
    """A tracker, a registry and n agents registered with it."""

    def __init__(self, tmp_path, agent_factory, registry, n=3, tracker_args=(), push_rules=None,
                 agent_args=(), upstream=None, labels=None):
        self.tmp = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.registry = registry
        self.secret_file = str(tmp_path / "cluster-secret")
        with open(self.secret_file, "wb") as f:
            f.write(SECRET + b"\n")
        token = tmp_path / "provider-token"
        token.write_text(PROVIDER_TOKEN + "\n")
        hook = tmp_path / "webhook-auth"
        hook.write_text(WEBHOOK_AUTH + "\n")
        cfg = tmp_path / "tracker.json"
        cfg.write_text(json.dumps({"push-rules": push_rules or []}))
        self.tracker = Tracker(str(tmp_path / "tracker"), secret=SECRET, extra_args=[
            "--config", str(cfg), "--provider-token-file", str(token),
            "--webhook-auth-file", str(hook), "--agent-timeout", "4s",
            "--job-contact-timeout", "3s", "--job-poll-interval", "200ms",
            "--log-level", "debug"] + list(tracker_args)).start()
        self.url = "http://127.0.0.1:%d" % self.tracker.port
        self.agents = []
        for i in range(n):
            lab = (labels or {}).get(i, "zone=z%d,pool=%s" % (i % 2, "gpu" if i == 0 else "cpu"))
            a = agent_factory(upstream or registry.host, extra_args=[
                "--tracker", self.url, "--cluster-secret-file", self.secret_file,
                "--peer-listen", "127.0.0.1:%d" % free_port(), "--node-name", "node-%d" % i,
                "--labels", lab, "--register-interval", "1s",
                "--swarm-stall-timeout", "3s"] + list(agent_args))
            self.agents.append(a)
        self.wait_registered(n)

    def stop(self):
        self.tracker.stop()

    def names(self):
        return sorted("node-%d" % i for i in range(len(self.agents)))

    def get(self, path):
        st, _, body = http_request(self.tracker.port, "GET", path,
                                   headers={"X-Shoal-Auth": self.tracker.sign("GET", path)})
        assert st == 200, "%s -> %d %s" % (path, st, body)
        return json.loads(body)

    def post_job(self, doc):
        body = json.dumps(doc).encode()
        return http_request(self.tracker.port, "POST", "/v1/jobs", body=body, headers={
            "Content-Type": "application/json",
            "X-Shoal-Auth": self.tracker.sign("POST", "/v1/jobs", body)})

    def wait_registered(self, n):
        wait_for(lambda: len(self.get("/v1/agents")["agents"]) == n, 20,
                 "%d agents registered" % n, interval=0.2)

    def wait_job(self, jid, timeout=90):
        def done():
            j = self.get("/v1/jobs/%d" % jid)
            return j if j["state"] != "PENDING" else None
        return wait_for(done, timeout, "job %d to finish" % jid, interval=0.2)

    def jobs(self):
        return self.get("/v1/jobs")["jobs"]

    def wait_new_jobs(self, count, before=0, timeout=30):
        return wait_for(lambda: self.jobs() if len(self.jobs()) >= before + count else None,
                        timeout, "%d new job(s)" % count, interval=0.2)

    def logs(self):
        out = [open(self.tracker.log, "rb").read().decode("utf-8", "replace")]
        out += [a.logs() for a in self.agents]
        return "\n".join(out)

    def ctl(self, *args, **kw):
        return shoalctl(*args, "--tracker", self.url, "--cluster-secret-file", self.secret_file,
                        **kw)


def cached(agent):
    d = os.path.join(agent.data_dir, "blobs", "sha256")
    if not os.path.isdir(d):
        return set()
    return {"sha256:" + n for n in os.listdir(d) if len(n) == 64}


def assert_warm(agents, built):
    for a in agents:
        have = cached(a)
        for b in built.blobs:
            assert b["digest"] in have, "%s lacks %s" % (a.host, b["digest"])


@pytest.fixture
def cluster(tmp_path, agent_factory, registry):
    made = []

    def make(**kw):
        c = Cluster(tmp_path / ("c%d" % len(made)), agent_factory, kw.pop("registry", registry),
                    **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()


def push(registry, built, repo, tag=None):
    return registry.push(built, repo, tag)


# --------------------------------------------------------------- inventory --

def test_agents_register_heartbeat_and_expire(cluster, registry):
    c = cluster(n=2)
    doc = c.get("/v1/agents")
    by = {a["name"]: a for a in doc["agents"]}
    assert sorted(by) == ["node-0", "node-1"]
    a0 = by["node-0"]
    assert a0["mirror_url"] == c.agents[0].url
    assert a0["labels"] == {"zone": "z0", "pool": "gpu"}
    assert a0["version"] and a0["address"] == "127.0.0.1"
    assert a0["cache_max_bytes"] == 20 << 30 and a0["cache_free_bytes"] > 0
    assert a0["last_seen_ms_ago"] < 3000

    # shoalctl agents, both ways.
    r = c.ctl("agents")
    assert r.returncode == 0, r.stderr
    assert "node-0" in r.stdout and "pool=gpu" in r.stdout and "2 agents" in r.stdout
    r = c.ctl("agents", "-o", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["agents"]) == 2

    # Without the secret the tracker refuses.
    r = shoalctl("agents", "--tracker", c.url)
    assert r.returncode == 1 and "401" in r.stderr

    # The agent's own status shows its registration.
    r = shoalctl("status", "--agent", c.agents[1].url, "-o", "json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["node"] == "node-1" and st["registration"]["registered"] is True
    assert st["labels"] == {"zone": "z1", "pool": "cpu"}
    assert st["upstreams"][0]["host"] == registry.host
    r = shoalctl("status", "--agent", c.agents[1].url)
    assert r.returncode == 0 and "registered" in r.stdout and "node-1" in r.stdout

    # An agent that stops heartbeating leaves the inventory.
    c.agents[1].crashed_ok = True  # stopped on purpose
    assert c.agents[1].stop() == 0
    wait_for(lambda: [a["name"] for a in c.get("/v1/agents")["agents"]] == ["node-0"], 15,
             "node-1 to expire", interval=0.3)


# ------------------------------------------------------------------- jobs --

def test_cluster_prewarm_with_shoalctl(cluster, registry, tmp_path):
    c = cluster(n=3)
    b = ocibuild.build_multilayer(str(tmp_path / "img"), tag="v1")
    push(registry, b, "team/app")
    ref = "%s/team/app:v1" % registry.host

    # Selector: the gpu pool is node-0 alone.
    r = c.ctl("prewarm", "--selector", "pool=gpu", ref)
    assert r.returncode == 0, "%s\n%s" % (r.stdout, r.stderr)
    assert "\x1b[" not in r.stdout
    assert "node-0: done 100%" in r.stdout, r.stdout
    assert "SUCCESS, 1 of 1 agents done" in r.stdout, r.stdout
    assert_warm(c.agents[:1], b)
    assert not (cached(c.agents[1]) & set(b.blob_digests()))

    # All agents, JSON at the end.
    r = c.ctl("prewarm", "-o", "json", ref)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["state"] == "SUCCESS" and job["agents"]["succeeded"] == 3
    assert job["digest"] == b.digest
    assert sorted(t["agent"] for t in job["tasks"]) == c.names()
    for t in job["tasks"]:
        assert t["bytes_done"] == t["bytes_total"] == sum(x["size"] for x in b.blobs)
    assert_warm(c.agents, b)

    # jobs, jobs ID, jobs --watch, swarms.
    r = c.ctl("jobs")
    assert r.returncode == 0 and "SUCCESS" in r.stdout and ref in r.stdout, r.stdout
    r = c.ctl("jobs", str(job["id"]))
    assert r.returncode == 0 and "node-2: done 100%" in r.stdout, r.stdout
    r = c.ctl("jobs", str(job["id"]), "--watch", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == job["id"]
    r = c.ctl("jobs", "999999")
    assert r.returncode == 1 and "404" in r.stderr
    r = c.ctl("swarms", "-o", "json")
    assert r.returncode == 0 and "swarms" in json.loads(r.stdout)

    # A selector nobody matches: FAILURE at once, saying why.
    r = c.ctl("prewarm", "--selector", "zone=mars", ref)
    assert r.returncode == 1
    assert "no registered agent matches the selector \"zone=mars\"" in r.stdout + r.stderr

    # count=2 takes two of three; max-concurrent 1 still finishes.
    st, _, body = c.post_job({"ref": ref, "selector": {"count": 2}, "max_concurrent": 1})
    assert st == 201, body
    j = c.wait_job(json.loads(body)["id"])
    assert j["state"] == "SUCCESS" and j["agents"]["total"] == 2

    # Bad requests are refused with a reason.
    for doc, want in (({"ref": "Bad Ref"}, "ref"), ({"ref": ref, "selector": "count=x"}, "count"),
                      ({"ref": ref, "bogus": 1}, "unknown key"),
                      ({"ref": ref, "layers": {"paths": [""]}}, "layers")):
        st, _, body = c.post_job(doc)
        assert st == 400 and want in json.loads(body)["error"], body


def test_weights_only_prewarm(cluster, registry, tmp_path):
    c = cluster(n=2)
    b = ocibuild.build_modelpack_parts(str(tmp_path / "mp"), tag="v1", size=600 * 1024)
    push(registry, b, "models/qwen")
    ref = "%s/models/qwen:v1" % registry.host
    weights = {x["digest"] for x in b.blobs if x["mediaType"] == ocibuild.MT_MODELPACK_WEIGHT_RAW}
    config = b.manifest["config"]["digest"]
    assert len(weights) == 2 and len(b.blobs) == 7

    # Cluster job, by media type: the config and the two shards, nothing else.
    r = c.ctl("prewarm", "--layers-media-type", WEIGHTS, "-o", "json", ref)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["layers"]["media_types"] == [WEIGHTS]
    for a in c.agents:
        have = cached(a) & set(b.blob_digests())
        assert have == weights | {config}, "%s fetched %s" % (a.host, have - weights - {config})
    for t in job["tasks"]:
        assert t["blobs_total"] == 3

    # One agent directly, by file path: the tokenizer too.
    a = c.agents[1]
    r = shoalctl("prewarm", "--agent", a.url, "--layers-path", "*.json", "-o", "json", ref)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["state"] == "SUCCESS" and out["agents"][0]["agent"] == a.url
    assert out["agents"][0]["blobs_total"] == 3  # the config and two .json files
    paths = {x["digest"] for x in b.blobs
             if x.get("annotations", {}).get("org.cncf.model.filepath", "").endswith(".json")}
    assert len(paths) == 2 and paths <= cached(a)
    st, _, body = a.get("/_shoal/prewarm")
    last = json.loads(body)["jobs"][0]
    assert last["blobs_skipped"] == 4 and last["layers"]["paths"] == ["*.json"], last


def test_inspect_models(registry, agent_factory, tmp_path):
    a = agent_factory(registry.host)
    ormb = ocibuild.build_ormb(str(tmp_path / "ormb"), tag="v1", size=300 * 1024)
    mp = ocibuild.build_modelpack_parts(str(tmp_path / "mp"), tag="v1", size=100 * 1024)
    kit = ocibuild.build_kitops(str(tmp_path / "kit"), tag="v1", size=200 * 1024)
    img = ocibuild.build_image(str(tmp_path / "img"), tag="v1", layers=2, layer_size=10000)
    for built, repo in ((ormb, "models/mnist"), (mp, "models/qwen"), (kit, "models/kit"),
                        (img, "apps/web")):
        push(registry, built, repo)

    def inspect(ref, *extra):
        r = shoalctl("inspect", "--plain-http", "-o", "json", *extra, ref)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    d = inspect("%s/models/mnist:v1" % registry.host)
    assert d["kind"] == "ormb" and d["digest"] == ormb.digest
    m = d["model"]
    assert m["format"] == "SavedModel" and m["framework"] == "TensorFlow"
    assert m["signature"]["inputs"][0]["name"] == "input_1"
    assert m["signature"]["outputs"][0]["size"] == [-1, 10]
    assert m["size"] == 300 * 1024 + 1234
    assert len(d["layers"]) == 1 and d["layers"][0]["media_type"] == ocibuild.MT_ORMB_LAYER

    d = inspect("%s/models/qwen:v1" % registry.host)
    assert d["kind"] == "modelpack" and d["artifact_type"] == ocibuild.MT_MODELPACK_ARTIFACT
    m = d["model"]
    assert (m["family"], m["name"], m["format"], m["precision"], m["quantization"]) == \
        ("qwen2", "tiny-qwen", "safetensors", "fp16", "gptq")
    assert m["paramSize"] == "0.5b" and m["modelfs"]["diff_ids"] == 6
    paths = [l.get("filepath") for l in d["layers"]]
    assert paths[:2] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert [l["role"] for l in d["layers"]][:3] == ["weights", "weights", "weight config"]

    d = inspect("%s/models/kit:v1" % registry.host)
    assert d["kind"] == "kitops"
    m = d["model"]
    assert m["package"]["name"] == "mnist-kit" and m["package"]["version"] == "1.2.0"
    assert m["model"]["framework"] == "onnx" and m["datasets"][0]["name"] == "training"
    assert [l["role"] for l in d["layers"]] == ["model", "dataset", "docs"]

    d = inspect("%s/apps/web:v1" % registry.host)
    assert d["kind"] == "image" and d["image"]["os"] == "linux" and len(d["layers"]) == 2

    # Text form, and the same through the agent's mirror.
    r = shoalctl("inspect", "--plain-http", "%s/models/qwen:v1" % registry.host)
    assert r.returncode == 0, r.stderr
    for want in ("CNCF ModelPack model", "family", "qwen2", "quantization", "gptq",
                 "model-00002-of-00002.safetensors", "weights"):
        assert want in r.stdout, r.stdout
    d = inspect("%s/models/kit:v1" % registry.host, "--agent", a.url)
    assert d["kind"] == "kitops" and d["model"]["model"]["name"] == "mnist"
    # Manifest and config only: no layer reached the agent's cache.
    layer_digests = {l["digest"] for l in kit.manifest["layers"]}
    assert not (cached(a) & layer_digests)

    r = shoalctl("inspect", "--plain-http", "%s/models/none:v1" % registry.host)
    assert r.returncode == 1 and "404" in r.stderr


# -------------------------------------------------------- Harbor: Dragonfly --

def dragonfly_body(registry, repo, tag, scope="all_peers", authz="Bearer harbor-jwt-abc"):
    """Harbor v2.13 dragonflyCreateJobRequest, fields in declaration order,
    nothing omitted."""
    return json.dumps({
        "type": "preheat",
        "args": {"type": "image",
                 "url": "http://%s/v2/%s/manifests/%s" % (registry.host, repo, tag),
                 "tag": "", "filtered_query_params": "",
                 "headers": {"Authorization": authz}, "scope": scope,
                 "concurrent_count": 0, "timeout": 0},
        "scheduler_cluster_ids": None}).encode()


def harbor_call(c, method, path, body=None, token=PROVIDER_TOKEN):
    h = {"Accept": "application/json", "User-Agent": "Go-http-client/1.1"}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    if body is not None:
        h["Content-Type"] = "application/json"
    return http_request(c.tracker.port, method, path, headers=h, body=body)


def test_harbor_dragonfly_sequence(cluster, registry, tmp_path):
    c = cluster(n=3)
    b = ocibuild.build_image(str(tmp_path / "img"), tag="latest", layers=2, layer_size=200 * 1024)
    push(registry, b, "library/busybox")

    # Harbor's health check (it sends its auth header there too).
    st, _, body = harbor_call(c, "GET", "/healthy")
    assert 200 <= st < 300
    st, _, _ = harbor_call(c, "GET", "/healthy", token=None)
    assert st == 200

    # Create: a 2xx with an integer id, RFC 3339 times, PENDING.
    st, hdrs, body = harbor_call(c, "POST", "/oapi/v1/jobs",
                                 dragonfly_body(registry, "library/busybox", "latest"))
    assert st == 200, body
    assert hdrs["content-type"].startswith("application/json")
    created = harbor_decode(body)
    assert created["state"] == "PENDING"
    assert "harbor-jwt-abc" not in body.decode()

    # Poll as Harbor does (every 10 s there; faster here) until not PENDING.
    polls = 0
    while True:
        st, _, body = harbor_call(c, "GET", "/oapi/v1/jobs/%d" % created["id"])
        assert st == 200, body
        d = harbor_decode(body)
        polls += 1
        if d["state"] != "PENDING":
            break
        assert polls < 300, "still PENDING"
        time.sleep(0.2)
    assert d["state"] == "SUCCESS", body
    ok, bad, _ = harbor_tasks(d)
    assert ok == c.names() and bad == {}
    assert d["created_at"] <= d["updated_at"]
    assert_warm(c.agents, b)
    assert "harbor-jwt-abc" not in body.decode()

    # single_seed_peer (Harbor's UI default): one agent.
    st, _, body = harbor_call(c, "POST", "/oapi/v1/jobs",
                              dragonfly_body(registry, "library/busybox", "latest",
                                             scope="single_seed_peer"))
    one = harbor_decode(body)
    d = wait_for(lambda: (lambda x: x if x["state"] != "PENDING" else None)(
        harbor_decode(harbor_call(c, "GET", "/oapi/v1/jobs/%d" % one["id"])[2])), 60,
        "single_seed_peer job")
    assert d["state"] == "SUCCESS" and len(harbor_tasks(d)[0]) == 1

    # all_seed_peers with no agent labelled seed=true: FAILURE saying so.
    st, _, body = harbor_call(c, "POST", "/oapi/v1/jobs",
                              dragonfly_body(registry, "library/busybox", "latest",
                                             scope="all_seed_peers"))
    seeds = harbor_decode(body)
    st, _, body = harbor_call(c, "GET", "/oapi/v1/jobs/%d" % seeds["id"])
    d = harbor_decode(body)
    assert d["state"] == "FAILURE" and "seed=true" in harbor_tasks(d)[2]

    # Auth: no header, a wrong token; Harbor's error handling needs non-2xx.
    st, _, _ = harbor_call(c, "POST", "/oapi/v1/jobs", dragonfly_body(registry, "a/b", "c"),
                           token=None)
    assert st == 401
    st, _, _ = harbor_call(c, "GET", "/oapi/v1/jobs/%d" % created["id"], token="wrong")
    assert st == 401
    # Refusals Harbor reads as errors (never a 2xx).
    st, _, body = harbor_call(c, "POST", "/oapi/v1/jobs", b'{"type":"preheat","args":{}}')
    assert st == 422 and json.loads(body)["message"]
    st, _, body = harbor_call(c, "POST", "/oapi/v1/jobs",
                              dragonfly_body(registry, "x", "y").replace(b'"all_peers"',
                                                                         b'"nearby"'))
    assert st == 422 and b"scope" in body
    st, _, _ = harbor_call(c, "GET", "/oapi/v1/jobs/987654")
    assert st == 404
    st, _, _ = harbor_call(c, "GET", "/oapi/v1/jobs/abc")
    assert st == 422


def test_harbor_dragonfly_agent_killed_mid_job(cluster, registry, proxy_factory, tmp_path):
    # A slow upstream keeps the job running long enough to kill an agent.
    proxy = proxy_factory(registry.port, rate=3 << 20)
    c = cluster(n=3, upstream=proxy.host)
    b = ocibuild.build_image(str(tmp_path / "img"), tag="v1", layers=2, layer_size=6 << 20)
    push(registry, b, "big/app")
    body = dragonfly_body(registry, "big/app", "v1").replace(
        registry.host.encode(), proxy.host.encode())
    st, _, body = harbor_call(c, "POST", "/oapi/v1/jobs", body)
    assert st == 200, body
    jid = harbor_decode(body)["id"]
    wait_for(lambda: all(t["state"] == "running" for t in c.get("/v1/jobs/%d" % jid)["tasks"]),
             20, "every agent running")
    victim = c.agents[1]
    victim.crashed_ok = True
    victim.kill9()

    d = wait_for(lambda: (lambda x: x if x["state"] != "PENDING" else None)(
        harbor_decode(harbor_call(c, "GET", "/oapi/v1/jobs/%d" % jid)[2])), 120, "job end")
    assert d["state"] == "FAILURE"
    ok, bad, errors = harbor_tasks(d)
    assert ok == ["node-0", "node-2"], d
    assert list(bad) == ["node-1"] and "lost contact" in bad["node-1"], bad
    assert "node-1" in errors and "1 of 3 agents failed" in errors
    assert_warm([c.agents[0], c.agents[2]], b)


# ------------------------------------------------------------ credentials --

def test_job_credentials_used_and_never_shown(cluster, registry_factory, tmp_path):
    user, password = "puller", "S3cret-pass-" + uuid.uuid4().hex[:8]
    reg = registry_factory(auth=(user, password))
    c = cluster(n=2, registry=reg)
    b = ocibuild.build_image(str(tmp_path / "img"), tag="v1", layers=2, layer_size=150 * 1024)
    reg.push(b, "private/app")
    ref = "%s/private/app:v1" % reg.host
    wrong = "Wr0ng-pass-" + uuid.uuid4().hex[:8]
    basic_ok = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    basic_bad = base64.b64encode(("%s:%s" % (user, wrong)).encode()).decode()
    secrets = [password, wrong, basic_ok, basic_bad]

    # The agents have no credentials of their own: without any, 401.
    st, _, body = c.post_job({"ref": ref})
    j = c.wait_job(json.loads(body)["id"])
    assert j["state"] == "FAILURE" and "UNAUTHORIZED" in j["error"], j

    # Wrong job credentials: FAILURE with the upstream's error.
    st, _, body = c.post_job({"ref": ref, "credentials": {"username": user, "password": wrong}})
    assert st == 201, body
    j = c.wait_job(json.loads(body)["id"])
    assert j["state"] == "FAILURE", j
    for t in j["tasks"]:
        assert "refused the job's credentials" in t["error"], t
        assert "UNAUTHORIZED" in t["error"] and "authentication required" in t["error"], t

    # Right credentials through shoalctl (sealed on the way): SUCCESS.
    pwfile = tmp_path / "pw"
    pwfile.write_text(password + "\n")
    r = c.ctl("prewarm", "--username", user, "--password-file", str(pwfile), "-o", "json", ref)
    assert r.returncode == 0, r.stdout + r.stderr
    good = json.loads(r.stdout)
    assert good["state"] == "SUCCESS"
    assert_warm(c.agents, b)

    # Harbor's way: an Authorization header for the registry, as is.
    ids = []
    for authz, want in (("Basic " + basic_ok, "SUCCESS"), ("Basic " + basic_bad, "FAILURE")):
        st, _, body = harbor_call(c, "POST", "/oapi/v1/jobs",
                                  dragonfly_body(reg, "private/app", "v1", authz=authz))
        assert st == 200, body
        jid = harbor_decode(body)["id"]
        ids.append(jid)
        d = wait_for(lambda: (lambda x: x if x["state"] != "PENDING" else None)(
            harbor_decode(harbor_call(c, "GET", "/oapi/v1/jobs/%d" % jid)[2])), 60, "df job")
        assert d["state"] == want, d
        if want == "FAILURE":
            assert "UNAUTHORIZED" in harbor_tasks(d)[2]

    # The job's credentials did not become the agent's: a plain pull of the
    # private repository still needs credentials the agent lacks.
    a = c.agents[0]
    st, _, _ = a.get("/v2/%s/private/app/manifests/v1" % reg.host)
    assert st == 401
    st, _, _ = a.get("/v2/%s/private/app/blobs/%s" % (reg.host, b.blobs[1]["digest"]))
    assert st == 401

    # Nowhere: logs, metrics, job answers (both APIs), job lists, statuses.
    seen = [c.logs()]
    for x in c.agents:
        seen.append(x.metrics_text())
        seen.append(x.get("/_shoal/prewarm")[2].decode())
        seen.append(x.get("/_shoal/status")[2].decode())
    seen.append(http_request(c.tracker.port, "GET", "/metrics")[2].decode())
    seen.append(json.dumps(c.get("/v1/jobs")))
    for j in c.jobs():
        seen.append(json.dumps(c.get("/v1/jobs/%d" % j["id"])))
        seen.append(harbor_call(c, "GET", "/oapi/v1/jobs/%d" % j["id"])[2].decode())
    seen.append(r.stdout + r.stderr)
    text = "\n".join(seen)
    for s in secrets:
        assert s not in text, "a credential leaked"
    # The jobs ended: the agents hold no job credentials any more.
    assert "own_credentials\":true" in text  # they were used ...
    for x in c.agents:
        assert json.loads(x.get("/_shoal/prewarm")[2])["jobs"][0]["state"] != "running"


# ----------------------------------------------------------- Harbor: Kraken --

def test_harbor_kraken_notification(cluster, registry, tmp_path):
    c = cluster(n=3)
    b = ocibuild.build_image(str(tmp_path / "img"), tag="v2", layers=1, layer_size=300 * 1024)
    push(registry, b, "library/redis")
    st, _, body = harbor_call(c, "GET", "/health")
    assert st == 200 and body == b"OK\n"
    # Harbor's notification.Notification: Go field names, no omitempty, the
    # docker media type even for OCI manifests, Request and Actor null.
    note = {"Events": [{
        "Id": "q3ZK0cV8lT1bX9mYc2Wn4RfA7uEo5PiS",
        "TimeStamp": "2026-03-08T14:00:00.123456789Z",
        "Action": "push",
        "Target": {"MediaType": "application/vnd.docker.distribution.manifest.v2+json",
                   "Digest": b.digest, "Repository": "library/redis",
                   "Url": "http://%s/v2/library/redis/manifests/v2" % registry.host,
                   "Tag": "v2"},
        "Request": None, "Actor": None}]}
    before = len(c.jobs())
    st, _, _ = harbor_call(c, "POST", "/registry/notifications", json.dumps(note).encode())
    assert 200 <= st < 300
    jobs = c.wait_new_jobs(1, before)
    job = jobs[0]
    assert job["source"] == "kraken" and job["ref"] == "%s/library/redis@%s" % (
        registry.host, b.digest)
    j = c.wait_job(job["id"])
    assert j["state"] == "SUCCESS" and j["agents"]["succeeded"] == 3
    assert_warm(c.agents, b)
    st, _, _ = harbor_call(c, "POST", "/registry/notifications", json.dumps(note).encode(),
                           token="nope")
    assert st == 401


# ------------------------------------------------------- Harbor: webhooks --

def test_harbor_webhooks_both_formats(cluster, registry, tmp_path):
    rules = [{"repository": "library/*", "tag": "v*"}]
    c = cluster(n=3, push_rules=rules)
    b1 = ocibuild.build_image(str(tmp_path / "i1"), tag="v1", layers=1, layer_size=100 * 1024)
    b2 = ocibuild.build_image(str(tmp_path / "i2"), tag="v2", layers=1, layer_size=120 * 1024)
    push(registry, b1, "library/nginx")
    push(registry, b2, "library/nginx")

    def hook(body, ctype, auth=WEBHOOK_AUTH):
        h = {"Content-Type": ctype, "User-Agent": "Go-http-client/1.1"}
        if auth:
            h["Authorization"] = auth
        return http_request(c.tracker.port, "POST", "/v1/webhooks/harbor", headers=h,
                            body=json.dumps(body).encode())

    repo = {"date_created": 1772970000, "name": "nginx", "namespace": "library",
            "repo_full_name": "library/nginx", "repo_type": "private"}
    default = {"type": "PUSH_ARTIFACT", "occur_at": 1772978400, "operator": "admin",
               "event_data": {"resources": [{
                   "digest": b1.digest, "tag": "v1",
                   "resource_url": "%s/library/nginx:v1" % registry.host}],
                   "repository": repo}}
    before = len(c.jobs())
    st, _, body = hook(default, "application/json")
    assert st == 200 and json.loads(body)["matched"] == 1, body
    j1 = c.wait_job(c.wait_new_jobs(1, before)[0]["id"])
    assert j1["state"] == "SUCCESS" and j1["source"] == "webhook"
    assert j1["ref"] == "%s/library/nginx@%s" % (registry.host, b1.digest)
    assert_warm(c.agents, b1)

    # Harbor retries: the same delivery again makes no second job.
    st, _, _ = hook(default, "application/json")
    assert st == 200
    time.sleep(0.5)
    assert len(c.jobs()) == before + 1

    # CloudEvents, structured mode; extension keys after data.
    ce = {"specversion": "1.0", "id": str(uuid.uuid4()),
          "source": "/projects/1/webhook/policies/3", "type": "harbor.artifact.pushed",
          "datacontenttype": "application/json", "time": "2026-03-08T14:00:00Z",
          "data": {"resources": [{"digest": b2.digest, "tag": "v2",
                                  "resource_url": "%s/library/nginx:v2" % registry.host}],
                   "repository": repo},
          "requestid": "", "operator": "admin"}
    st, _, body = hook(ce, "application/cloudevents+json")
    assert st == 200 and json.loads(body)["matched"] == 1, body
    j2 = c.wait_job(c.wait_new_jobs(2, before)[0]["id"])
    assert j2["state"] == "SUCCESS" and j2["ref"].endswith(b2.digest)
    assert_warm(c.agents, b2)

    # A tag the rule does not take, another event type: accepted, no job.
    other = json.loads(json.dumps(default))
    other["event_data"]["resources"][0]["tag"] = "latest"
    assert hook(other, "application/json")[0] == 200
    pull = dict(default, type="PULL_ARTIFACT")
    assert hook(pull, "application/json")[0] == 200
    time.sleep(0.5)
    assert len(c.jobs()) == before + 2

    # The auth header must be exactly the configured one.
    assert hook(default, "application/json", auth="Bearer nope")[0] == 401
    assert hook(default, "application/json", auth=None)[0] == 401


# ------------------------------------------------ registry notifications --

def test_registry_push_warms_three_agents(tmp_path, cluster, agent_factory):
    """docker-registry with `notifications:` pointed at the tracker: a push
    is enough, no other command."""
    reg = Registry(str(tmp_path / "notifying"))
    c = None
    try:
        # The tracker's port must be known before the registry starts: start
        # the cluster on a stand-in registry address, then the registry.
        c = cluster(n=3, registry=reg,
                    push_rules=[{"repository": "models/*", "kinds": ["modelpack", "image"]}])
        with open(reg.config) as f:
            cfg = json.load(f)
        cfg["notifications"] = {"endpoints": [{
            "name": "shoal", "url": c.url + "/registry/notifications",
            "headers": {"Authorization": ["Bearer " + PROVIDER_TOKEN]},
            "timeout": "2s", "threshold": 5, "backoff": "1s"}]}
        with open(reg.config, "w") as f:
            json.dump(cfg, f)
        reg.start()
        b = ocibuild.build_modelpack(str(tmp_path / "mp"), tag="v3", size=400 * 1024)
        before = len(c.jobs())
        reg.push(b, "models/llama")
        jobs = c.wait_new_jobs(1, before, timeout=30)
        job = jobs[0]
        assert job["source"] == "registry"
        assert job["ref"] == "%s/models/llama@%s" % (reg.host, b.digest)
        j = c.wait_job(job["id"])
        assert j["state"] == "SUCCESS" and sorted(t["agent"] for t in j["tasks"]) == c.names()
        assert_warm(c.agents, b)
        # Blob pushes and pulls are not pushes of manifests: one job only.
        time.sleep(1)
        assert len(c.jobs()) == before + 1
        # A repository no rule takes is pushed without warming anything.
        other = ocibuild.build_image(str(tmp_path / "o"), tag="v1", layers=1, layer_size=5000)
        reg.push(other, "scratch/tmp")
        time.sleep(2)
        assert len(c.jobs()) == before + 1
        log = open(reg.log, "rb").read().decode("utf-8", "replace")
        assert "retrying" not in log, tail(reg.log)
    finally:
        reg.stop()


# ------------------------------------------------------------------ bench --

def test_bench_small(cluster, registry, tmp_path):
    c = cluster(n=3)
    plot = str(tmp_path / "bench.svg")
    r = c.ctl("bench", "--push", "%s/bench/payload" % registry.host, "--size", "3MiB",
              "--plain-http", "--link-rate", "1Gbit", "--plot", plot, "-o", "json",
              "--tmp-dir", str(tmp_path), timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["state"] == "SUCCESS" and d["agents"] == 3 and d["succeeded"] == 3
    cm = d["completion_ms"]
    assert 0 < cm["first"] <= cm["median"] <= cm["p90"] <= cm["last"]
    assert d["size"] == 3 << 20 and d["throughput_bytes_per_s"] > 0
    # The swarm fetched the payload from upstream about once, not three times.
    assert 0.9 <= d["upstream_ratio"] < 2.5, d
    assert d["t_min_ms"] > 0 and d["t_min_basis"] == "given link rates"
    assert d["deleted"] is True, d["note"]
    assert open(plot).read().startswith("<svg")
    st, _, _ = http_request(registry.port, "GET", "/v2/bench/payload/manifests/" +
                            d["ref"].split("@")[1])
    assert st == 404
