"""Checks of the test harness itself (builder, pusher, registry fixture,
throttling proxy), without shoal-agent: a failure here is a harness bug."""

import hashlib
import time

import ocibuild
from conftest import http_request, layout_digests, skopeo_copy


def test_builder_is_reproducible(tmp_path):
    a = ocibuild.build_image(str(tmp_path / "a"), "t", layers=2, layer_size=3000, seed="s")
    b = ocibuild.build_image(str(tmp_path / "b"), "t", layers=2, layer_size=3000, seed="s")
    c = ocibuild.build_image(str(tmp_path / "c"), "t", layers=2, layer_size=3000, seed="x")
    assert a.digest == b.digest
    assert a.digest != c.digest
    assert len(a.manifest["layers"]) == 2


def test_push_and_pull_straight_from_registry(registry, build, tmp_path):
    for b in (build.image(layers=2, layer_size=10000), build.ormb(size=5000),
              build.modelpack(size=5000), build.multilayer()):
        digest = registry.push(b, "harness/x", b.tag)
        assert digest == b.digest
        out = str(tmp_path / ("out-" + b.digest[7:19]))
        r = skopeo_copy("docker://%s/harness/x:%s" % (registry.host, b.tag),
                        "oci:%s:%s" % (out, b.tag))
        assert r.returncode == 0, r.stderr
        assert layout_digests(out, b.tag) == (b.digest, b.blob_digests())


def test_proxy_throttles_and_records_range(registry, build, proxy_factory):
    d, desc = build.blob(1 << 20)
    registry.push_blob(d, "harness/blob", desc["digest"])
    p = proxy_factory(registry.port, rate=2 << 20)
    t0 = time.monotonic()
    st, hd, body = http_request(p.port, "GET", "/v2/harness/blob/blobs/" + desc["digest"],
                                headers={"Range": "bytes=100-"})
    dt = time.monotonic() - t0
    assert st == 206
    assert len(body) == (1 << 20) - 100
    assert 0.3 < dt < 3, dt
    reqs = [r for r in p.requests if "/blobs/" in r["path"]]
    assert reqs and reqs[-1]["range"] == "bytes=100-" and reqs[-1]["method"] == "GET"
    p.rate = None
    st, _, body = http_request(p.port, "GET", "/v2/harness/blob/blobs/" + desc["digest"])
    assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == desc["digest"]


def test_registry_stop_start_keeps_content(registry, build):
    b = build.image(layers=1, layer_size=100)
    registry.push(b, "harness/keep")
    registry.stop()
    registry.start()
    st, hd, _ = http_request(registry.port, "HEAD", "/v2/harness/keep/manifests/" + b.tag,
                             headers={"Accept": ocibuild.MT_OCI_MANIFEST})
    assert st == 200 and hd["docker-content-digest"] == b.digest
