"""skopeo pulls images and model artifacts through shoal-agent (default
upstream) and gets every digest of the source layout back; manifest
headers follow the distribution spec."""

import hashlib
import json

import pytest

import ocibuild
from conftest import layout_digests, oci_error_codes, skopeo_copy, wait_for

KINDS = ["image", "multilayer", "ormb", "modelpack"]


def make(build, kind):
    if kind == "image":
        return build.image(layers=3, layer_size=200 * 1024)
    if kind == "multilayer":
        return build.multilayer()
    if kind == "ormb":
        return build.ormb(size=300 * 1024)
    return build.modelpack(size=512 * 1024)


@pytest.mark.parametrize("kind", KINDS)
def test_skopeo_pull_keeps_digests(kind, registry, agent, build, tmp_path):
    b = make(build, kind)
    repo = "pull/" + kind
    assert registry.push(b, repo) == b.digest
    out = str(tmp_path / "out")
    r = skopeo_copy("docker://%s/%s:%s" % (agent.host, repo, b.tag), "oci:%s:%s" % (out, b.tag))
    assert r.returncode == 0, "skopeo through the agent failed:\n" + r.stderr
    assert layout_digests(out, b.tag) == (b.digest, b.blob_digests())
    # Pulled again: now from the cache, same result.
    out2 = str(tmp_path / "out2")
    r = skopeo_copy("docker://%s/%s@%s" % (agent.host, repo, b.digest), "oci:%s:%s" % (out2, b.tag))
    assert r.returncode == 0, r.stderr
    assert layout_digests(out2, b.tag) == (b.digest, b.blob_digests())
    m = agent.metrics()
    assert m.get("shoal_digest_mismatches_total", 0) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_headers(kind, registry, agent, build):
    b = make(build, kind)
    repo = "hdr/" + kind
    registry.push(b, repo)
    accept = {"Accept": ", ".join([ocibuild.MT_OCI_MANIFEST, ocibuild.MT_OCI_INDEX, "*/*"])}
    for method in ("HEAD", "GET", "GET", "HEAD"):
        for ref in (b.tag, b.digest):
            path = "/v2/%s/manifests/%s" % (repo, ref)
            st, hd, body = (agent.head if method == "HEAD" else agent.get)(path, headers=accept)
            assert st == 200, "%s %s -> %d %r" % (method, path, st, body[:200])
            assert hd.get("content-type") == b.media_type, (method, ref, hd)
            assert hd.get("docker-content-digest") == b.digest, (method, ref, hd)
            assert int(hd.get("content-length", -1)) == len(b.raw), (method, ref, hd)
            if method == "GET":
                assert body == b.raw, "manifest bytes differ from what was pushed"
                assert "sha256:" + hashlib.sha256(body).hexdigest() == b.digest
            else:
                assert body == b""


def test_blobs_by_digest_and_v2_root(registry, agent, build):
    b = build.image(layers=2, layer_size=4096)
    registry.push(b, "pull/blobs")
    st, hd, body = agent.get("/v2/")
    assert st == 200
    assert hd.get("docker-distribution-api-version") == "registry/2.0"
    for d in b.blob_digests():
        st, hd, body = agent.get("/v2/pull/blobs/blobs/" + d)
        assert st == 200
        assert "sha256:" + hashlib.sha256(body).hexdigest() == d
        assert hd.get("docker-content-digest") == d
        assert hd.get("content-type") == "application/octet-stream"
        assert int(hd["content-length"]) == len(body)
    registry.push(b, "pull/blobs", "second")
    st, hd, body = agent.get("/v2/pull/blobs/tags/list")
    assert st == 200, body
    assert sorted(json.loads(body)["tags"]) == sorted([b.tag, "second"])


def test_tags_list_query_goes_upstream(registry, proxy_factory, agent_factory, build):
    # docker-registry 2.8 ignores n/last, so look at what reached it.
    b = build.image(layers=1, layer_size=10)
    registry.push(b, "pull/tags")
    proxy = proxy_factory(registry.port)
    a = agent_factory(proxy.host)
    st, hd, body = a.get("/v2/pull/tags/tags/list?n=1&last=a")
    assert st == 200, body
    assert json.loads(body)["tags"] == [b.tag]
    # The proxy records a request in its own thread, which may run after the
    # answer has reached the agent: wait for the record.
    def recorded():
        return [r["path"] for r in proxy.requests if "/tags/list" in r["path"]]
    wait_for(lambda: recorded(), 5, "the proxy's record of the tags/list request")
    paths = recorded()
    assert paths[-1] == "/v2/pull/tags/tags/list?n=1&last=a", paths


def test_unknown_manifest_and_blob(registry, agent, build):
    b = build.image(layers=1, layer_size=10)
    registry.push(b, "pull/known")
    st, _, body = agent.get("/v2/pull/known/manifests/nope")
    assert st == 404 and "MANIFEST_UNKNOWN" in oci_error_codes(body)
    st, _, body = agent.get("/v2/pull/known/blobs/sha256:" + "0" * 64)
    assert st == 404 and "BLOB_UNKNOWN" in oci_error_codes(body)
    st, _, body = agent.get("/v2/pull/never/manifests/v1")
    assert st == 404
    assert set(oci_error_codes(body)) & {"NAME_UNKNOWN", "MANIFEST_UNKNOWN"}


def test_upstream_from_path_host_and_ns(registry, agent_factory, build, tmp_path):
    """A host-like first path component, or ?ns=, picks the upstream; the
    default upstream (a dead port here) is not used for them."""
    b = build.image(layers=1, layer_size=3000)
    registry.push(b, "sel/img")
    a = agent_factory("127.0.0.1:1", upstreams=[
        {"host": registry.host, "url": registry.url, "insecure": False}],
        extra_args=["--upstream-retries", "0"])
    accept = {"Accept": ocibuild.MT_OCI_MANIFEST}

    st, hd, body = a.get("/v2/%s/sel/img/manifests/%s" % (registry.host, b.tag), headers=accept)
    assert st == 200 and body == b.raw, (st, body[:200])
    for d in b.blob_digests():
        st, _, body = a.get("/v2/%s/sel/img/blobs/%s" % (registry.host, d))
        assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == d

    for ns in (registry.host, registry.host.replace(":", "%3A")):
        st, hd, body = a.get("/v2/sel/img/manifests/%s?ns=%s" % (b.tag, ns), headers=accept)
        assert st == 200 and body == b.raw, (st, body[:200])
        assert hd.get("oci-namespace") == registry.host, hd
        d = b.manifest["layers"][0]["digest"]
        st, hd, body = a.get("/v2/sel/img/blobs/%s?ns=%s" % (d, ns))
        assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == d
        assert hd.get("oci-namespace") == registry.host, hd

    # The default upstream is dead: a request without host gives 503.
    st, _, body = a.get("/v2/sel/img/manifests/" + b.tag, headers=accept)
    assert st == 503, st
    assert "UNAVAILABLE" in oci_error_codes(body)
