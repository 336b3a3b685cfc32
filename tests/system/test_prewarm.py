"""Prewarm: `shoalctl prewarm` starts a job on several agents at once
(POST /_shoal/prewarm), each agent fetches every blob through its own
mirror, and afterwards every data dir holds every blob, verified."""

import hashlib
import json
import os
import subprocess
import time

import pytest

import ocibuild
from conftest import bin_dir, http_request, oci_error_codes, raw_request


def shoalctl(*args, timeout=120):
    path = os.path.join(bin_dir(), "shoalctl")
    if not os.access(path, os.X_OK):
        pytest.fail("shoalctl not built at %s (set SHOAL_BIN_DIR)" % path)
    # stdout is a pipe: shoalctl prints plain lines, not progress bars.
    return subprocess.run([path] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def cached_blobs(agent):
    """{digest: sha256 of the file} for the complete blobs in the data dir."""
    d = os.path.join(agent.data_dir, "blobs", "sha256")
    out = {}
    if not os.path.isdir(d):
        return out
    for name in os.listdir(d):
        if len(name) != 64:
            continue  # .repos side files
        out["sha256:" + name] = ocibuild.sha256_file(os.path.join(d, name))
    return out


def assert_cached(agent, blobs):
    have = cached_blobs(agent)
    for b in blobs:
        assert b["digest"] in have, "agent %s lacks blob %s" % (agent.host, b["digest"])
        assert have[b["digest"]] == b["digest"], "agent %s holds a corrupt %s" % (
            agent.host, b["digest"])
        size = os.path.getsize(os.path.join(agent.data_dir, "blobs", "sha256",
                                            b["digest"].split(":", 1)[1]))
        assert size == b["size"]


def jobs(agent):
    st, _, body = agent.get("/_shoal/prewarm")
    assert st == 200, body
    return json.loads(body)["jobs"]


def post_prewarm(agent, doc):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return http_request(agent.port, "POST", "/_shoal/prewarm", body=body,
                        headers={"Content-Type": "application/json"})


def push_index(registry, build, repo, tag):
    """Two single-platform images and an OCI index over them. Returns
    {"linux/amd64": Built, "linux/arm64": Built} and the index digest."""
    imgs = {
        "linux/amd64": build.image(tag="amd64", layers=2, layer_size=150 * 1024),
        "linux/arm64": build.image(tag="arm64", layers=3, layer_size=100 * 1024),
    }
    entries = []
    for plat, b in imgs.items():
        registry.push(b, repo)
        os_, arch = plat.split("/")
        entries.append({"mediaType": ocibuild.MT_OCI_MANIFEST, "digest": b.digest,
                        "size": len(b.raw), "platform": {"os": os_, "architecture": arch}})
    index = {"schemaVersion": 2, "mediaType": ocibuild.MT_OCI_INDEX, "manifests": entries}
    raw = json.dumps(index).encode()
    registry.client().put_manifest(repo, tag, raw, ocibuild.MT_OCI_INDEX)
    return imgs, "sha256:" + hashlib.sha256(raw).hexdigest()


def test_prewarm_two_agents(registry, agent_factory, build):
    a1 = agent_factory(registry.host)
    a2 = agent_factory(registry.host)
    b = build.multilayer(tag="v1")
    registry.push(b, "test/img")
    ref = "%s/test/img:v1" % registry.host

    r = shoalctl("prewarm", "--agent", a1.url, "--agent", "http://" + a2.host, ref)
    assert r.returncode == 0, "shoalctl failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert "\x1b[" not in r.stdout, "progress bars drawn on a pipe"
    assert "2 of 2 agents done" in r.stdout, r.stdout
    for a in (a1, a2):
        assert "%s: done 100%%" % a.host in r.stdout, r.stdout
    total = sum(x["size"] for x in b.blobs)
    for a in (a1, a2):
        assert_cached(a, b.blobs)
        js = [j for j in jobs(a) if j["ref"] == ref]
        assert len(js) == 1, js
        j = js[0]
        assert j["state"] == "done" and j["error"] is None, j
        assert j["bytes_done"] == j["bytes_total"] == total, j
        assert j["blobs_done"] == j["blobs_total"] == len(b.blobs), j
        assert j["digest"] == b.digest, j
        st, _, body = a.get("/_shoal/prewarm/" + j["id"])
        assert st == 200 and json.loads(body)["state"] == "done"
        m = a.metrics()
        assert m.get(("shoal_prewarm_jobs_total", (("state", "done"),))) == 1

    # Pulling now is served from the cache: no upstream blob download.
    before = a1.metric("shoal_upstream_blob_fetches_total")
    for x in b.blobs:
        st, _, body = a1.get("/v2/%s/test/img/blobs/%s" % (registry.host, x["digest"]))
        assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == x["digest"]
    assert a1.metric("shoal_upstream_blob_fetches_total") == before

    # Again: every blob is already cached, still done.
    r = shoalctl("prewarm", "--agent", a1.url, ref)
    assert r.returncode == 0, r.stderr
    j = jobs(a1)[0]
    assert j["state"] == "done" and j["blobs_cached"] == len(b.blobs), j


def test_prewarm_index_all_platforms(registry, agent_factory, build):
    a1 = agent_factory(registry.host)
    a2 = agent_factory(registry.host)
    imgs, idx_digest = push_index(registry, build, "test/multi", "v1")
    ref = "%s/test/multi:v1" % registry.host
    r = shoalctl("prewarm", "-a", a1.url, "-a", a2.url, "--timeout", "2m", ref)
    assert r.returncode == 0, "shoalctl failed:\n%s\n%s" % (r.stdout, r.stderr)
    every = imgs["linux/amd64"].blobs + imgs["linux/arm64"].blobs
    for a in (a1, a2):
        assert_cached(a, every)
        j = jobs(a)[0]
        assert j["state"] == "done" and j["digest"] == idx_digest, j
        assert j["manifests"] == 3, j
        assert j["bytes_done"] == j["bytes_total"] == sum(x["size"] for x in every), j

    # By digest, too.
    r = shoalctl("prewarm", "-a", a1.url, "%s/test/multi@%s" % (registry.host, idx_digest))
    assert r.returncode == 0, r.stderr


def test_prewarm_platform_filter(registry, agent_factory, build):
    a = agent_factory(registry.host)
    imgs, _ = push_index(registry, build, "test/plat", "v1")
    ref = "%s/test/plat:v1" % registry.host
    r = shoalctl("prewarm", "--agent", a.url, "--platform", "linux/arm64", ref)
    assert r.returncode == 0, "shoalctl failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert_cached(a, imgs["linux/arm64"].blobs)
    have = cached_blobs(a)
    for x in imgs["linux/amd64"].blobs:
        assert x["digest"] not in have, "amd64 blob %s fetched despite the filter" % x["digest"]
    j = jobs(a)[0]
    assert j["platforms"] == ["linux/arm64"] and j["state"] == "done", j
    assert j["blobs_total"] == len(imgs["linux/arm64"].blobs), j

    # A platform the index does not have: the job fails, saying so.
    r = shoalctl("prewarm", "--agent", a.url, "--platform", "linux/s390x", ref)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "linux/s390x" in r.stderr and a.url in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["ormb", "modelpack"])
def test_prewarm_model_artifacts(kind, registry, agent_factory, build):
    a = agent_factory(registry.host)
    b = build.ormb(size=200 * 1024) if kind == "ormb" else build.modelpack(size=300 * 1024)
    registry.push(b, "models/" + kind)
    r = shoalctl("prewarm", "--agent", a.url, "%s/models/%s:%s" % (registry.host, kind, b.tag))
    assert r.returncode == 0, r.stdout + r.stderr
    assert_cached(a, b.blobs)


def test_prewarm_missing_ref_fails(registry, agent_factory):
    a1 = agent_factory(registry.host)
    a2 = agent_factory(registry.host)
    ref = "%s/test/nothing:v1" % registry.host
    r = shoalctl("prewarm", "--agent", a1.url, "--agent", a2.url, ref)
    assert r.returncode == 1, r.stdout + r.stderr
    for a in (a1, a2):
        assert "agent %s:" % a.url in r.stderr, r.stderr
        j = jobs(a)[0]
        assert j["state"] == "failed" and "MANIFEST_UNKNOWN" in j["error"], j
    assert "MANIFEST_UNKNOWN" in r.stderr, r.stderr
    assert "2 of 2 agents failed" in r.stdout, r.stdout


def test_prewarm_unreachable_agent(registry, agent_factory, build):
    from conftest import free_port
    a = agent_factory(registry.host)
    b = build.image(layers=1, layer_size=4096)
    registry.push(b, "test/one")
    dead = "http://127.0.0.1:%d" % free_port()
    r = shoalctl("prewarm", "-a", a.url, "-a", dead, "%s/test/one:%s" % (registry.host, b.tag))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "agent %s: cannot reach the agent" % dead in r.stderr, r.stderr
    assert_cached(a, b.blobs)  # the live agent still did its job


def test_bad_ref_and_usage(registry, agent_factory):
    a = agent_factory(registry.host)
    for bad in ("Upper/Case:v1", "%s/test/img:bad tag" % registry.host,
                "%s/test/img@sha256:1234" % registry.host, ""):
        r = shoalctl("prewarm", "--agent", a.url, bad)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert "invalid reference" in r.stderr or "required" in r.stderr, r.stderr
    assert shoalctl("prewarm", "ref").returncode == 2  # no agent
    assert shoalctl("prewarm", "--agent", a.url).returncode == 2  # no ref
    assert shoalctl("prewarm", "--agent", a.url, "--platform", "linux", "x").returncode == 2
    assert shoalctl("prewarm", "--agent", a.url, "--timeout", "soon", "x").returncode == 2
    assert shoalctl("prewarm", "--bogus").returncode == 2
    assert shoalctl("frobnicate").returncode == 2
    for args in (["--help"], ["prewarm", "--help"], ["version"]):
        r = shoalctl(*args)
        assert r.returncode == 0 and r.stdout, (args, r.stderr)
    assert "--platform" in shoalctl("prewarm", "--help").stdout
    assert jobs(a) == []  # nothing reached the agent


def test_prewarm_api_errors(registry, agent):
    cases = [
        ({"ref": "Upper/Case"}, "NAME_INVALID"),
        ({"ref": "%s/a/b:-bad" % registry.host}, "TAG_INVALID"),
        ({"ref": "%s/a/b@sha256:abc" % registry.host}, "DIGEST_INVALID"),
        ({"ref": 7}, "INVALID_REQUEST"),
        ({}, "INVALID_REQUEST"),
        ({"ref": "x", "platforms": "linux/amd64"}, "INVALID_REQUEST"),
        ({"ref": "x", "platforms": ["linux"]}, "INVALID_REQUEST"),
        (b"not json", "INVALID_REQUEST"),
        (b"", "INVALID_REQUEST"),
    ]
    for doc, code in cases:
        st, hd, body = post_prewarm(agent, doc)
        assert st == 400, (doc, st, body)
        assert hd.get("content-type") == "application/json"
        assert oci_error_codes(body) == [code], (doc, body)
    st, _, body = agent.get("/_shoal/prewarm/0123456789abcdef")
    assert st == 404 and oci_error_codes(body) == ["NOT_FOUND"], body
    st, _, body = agent.get("/_shoal/prewarm/" + "x" * 300)
    assert st == 404, body
    st, _, body = http_request(agent.port, "DELETE", "/_shoal/prewarm")
    assert st == 405, body
    st, _, body = http_request(agent.port, "POST", "/_shoal/health", body=b"{}")
    assert st == 405, body
    # A body over the agent's limit is refused before it is read.
    st, _, _ = raw_request(agent.port, b"POST /_shoal/prewarm HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\n"
                           b"Content-Length: 200000\r\n\r\n{")
    assert st == 413
    assert jobs(agent) == []


def test_prewarm_api_job_lifecycle(registry, agent, build):
    from conftest import wait_for
    b = build.image(layers=2, layer_size=64 * 1024)
    registry.push(b, "test/api")
    ref = "%s/test/api:%s" % (registry.host, b.tag)
    st, _, body = post_prewarm(agent, {"ref": ref})
    assert st == 202, body
    j = json.loads(body)
    assert j["state"] in ("running", "done") and j["ref"] == ref and len(j["id"]) >= 8, j

    def finished():
        st2, _, body2 = agent.get("/_shoal/prewarm/" + j["id"])
        assert st2 == 200
        doc = json.loads(body2)
        return doc if doc["state"] != "running" else None
    doc = wait_for(finished, 30, "prewarm job to finish")
    assert doc["state"] == "done", doc
    assert doc["bytes_done"] == doc["bytes_total"] == sum(x["size"] for x in b.blobs)
    assert doc["error"] is None
    assert_cached(agent, b.blobs)


def test_stop_during_prewarm(registry, agent_factory, proxy_factory, build):
    """SIGTERM while a job is fetching: the agent exits 0 (and, under ASan,
    the fixture checks the sanitizer logs)."""
    from conftest import wait_for
    proxy = proxy_factory(registry.port, rate=256 * 1024)
    a = agent_factory(proxy.host)
    b = build.image(layers=2, layer_size=2 << 20)
    registry.push(b, "test/slow")
    st, _, body = post_prewarm(a, {"ref": "%s/test/slow:%s" % (proxy.host, b.tag)})
    assert st == 202, body
    jid = json.loads(body)["id"]

    def fetching():
        _, _, body2 = a.get("/_shoal/prewarm/" + jid)
        doc = json.loads(body2)
        assert doc["state"] == "running", doc
        return doc["bytes_done"] > 0
    wait_for(fetching, 30, "the job to fetch bytes")
    m = a.metrics()
    assert m.get("shoal_prewarm_jobs_running") == 1
    assert a.stop() == 0
    # Restarted, with upstream at full speed: the job list is empty and a
    # new prewarm completes (resuming the partial downloads).
    proxy.rate = None
    a.start()
    assert jobs(a) == []
    r = shoalctl("prewarm", "--agent", a.url, "%s/test/slow:%s" % (proxy.host, b.tag))
    assert r.returncode == 0, r.stdout + r.stderr
    assert_cached(a, b.blobs)


def test_fill_head_caches_without_a_body(registry, agent, build):
    """What prewarm jobs send: HEAD with X-Shoal-Prewarm: fill answers once
    the blob is downloaded, verified and cached, and never with a body."""
    d, desc = build.blob(3 << 20)
    registry.push_blob(d, "test/fill", desc["digest"])
    path = "/v2/%s/test/fill/blobs/%s" % (registry.host, desc["digest"])
    fill = {"X-Shoal-Prewarm": "fill"}
    before = agent.metric("shoal_client_tx_bytes_total") or 0
    st, hs, body = http_request(agent.port, "HEAD", path, headers=fill)
    assert st == 200 and body == b"", (st, hs)
    assert hs["content-length"] == str(desc["size"]) and hs["docker-content-digest"] == \
        desc["digest"], hs
    assert_cached(agent, [desc])
    assert (agent.metric("shoal_client_tx_bytes_total") or 0) == before
    # A plain HEAD still answers at once and fetches nothing.
    d2, desc2 = build.blob(1 << 20)
    registry.push_blob(d2, "test/fill", desc2["digest"])
    st, _, _ = http_request(agent.port, "HEAD", "/v2/%s/test/fill/blobs/%s" % (
        registry.host, desc2["digest"]))
    assert st == 200 and desc2["digest"] not in cached_blobs(agent)
    # A blob the repository lacks: the status, and the reason in a header.
    missing = "sha256:" + "0" * 64
    st, hs, body = http_request(agent.port, "HEAD", "/v2/%s/test/fill/blobs/%s" % (
        registry.host, missing), headers=fill)
    assert st == 404 and body == b"" and hs.get("x-shoal-error"), (st, hs)


def test_progress_never_goes_back(registry, agent_factory, proxy_factory, build):
    """bytes_done follows the blobs still downloading (from the fetcher) and
    never decreases, also when a download ends before its blob is marked
    done."""
    proxy = proxy_factory(registry.port, rate=8 << 20)
    a = agent_factory(proxy.host)
    b = build.image(layers=2, layer_size=6 << 20)
    registry.push(b, "test/progress")
    st, _, body = post_prewarm(a, {"ref": "%s/test/progress:%s" % (proxy.host, b.tag)})
    assert st == 202, body
    jid = json.loads(body)["id"]
    seen = []
    deadline = time.time() + 60
    while time.time() < deadline:
        _, _, body2 = a.get("/_shoal/prewarm/" + jid)
        doc = json.loads(body2)
        seen.append(doc["bytes_done"])
        if doc["state"] != "running":
            break
        time.sleep(0.03)
    assert doc["state"] == "done", doc
    assert seen == sorted(seen), seen
    assert seen[-1] == doc["bytes_total"] == sum(x["size"] for x in b.blobs), doc
    # Progress showed up within a blob, not only blob by finished blob.
    sums = {0}
    for x in b.blobs:
        sums |= {v + x["size"] for v in sums}
    assert any(v not in sums for v in seen), (seen, sorted(sums))
