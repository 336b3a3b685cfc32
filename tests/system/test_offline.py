"""With the registry gone, shoal-agent still serves what it has: tags from
the last known answer, manifests by digest and cached blobs. What it never
fetched is an OCI error, and the agent stays healthy."""

import hashlib
import time

import ocibuild
from conftest import layout_digests, oci_error_codes, skopeo_copy, wait_for


def test_pull_survives_registry_outage(registry, agent_factory, build, tmp_path):
    b = build.image(layers=2, layer_size=64 * 1024)
    registry.push(b, "off/img")
    never_dir, never = build.blob(5000)
    registry.push_blob(never_dir, "off/img", never["digest"])
    # Fewer retries keep the outage phase quick; the answers must not change.
    a = agent_factory(registry.host, extra_args=["--upstream-retries", "1",
                                                 "--upstream-retry-max", "1s"])

    out1 = str(tmp_path / "online")
    r = skopeo_copy("docker://%s/off/img:%s" % (a.host, b.tag), "oci:%s:%s" % (out1, b.tag))
    assert r.returncode == 0, r.stderr
    assert layout_digests(out1, b.tag) == (b.digest, b.blob_digests())

    registry.stop()

    out2 = str(tmp_path / "by-tag")
    r = skopeo_copy("docker://%s/off/img:%s" % (a.host, b.tag), "oci:%s:%s" % (out2, b.tag))
    assert r.returncode == 0, "pull by tag with the registry down:\n" + r.stderr
    assert layout_digests(out2, b.tag) == (b.digest, b.blob_digests())

    out3 = str(tmp_path / "by-digest")
    r = skopeo_copy("docker://%s/off/img@%s" % (a.host, b.digest), "oci:%s:%s" % (out3, b.tag))
    assert r.returncode == 0, "pull by digest with the registry down:\n" + r.stderr
    assert layout_digests(out3, b.tag) == (b.digest, b.blob_digests())

    # Manifest headers by tag are those of the last known answer.
    st, hd, body = a.get("/v2/off/img/manifests/" + b.tag,
                         headers={"Accept": ocibuild.MT_OCI_MANIFEST})
    assert st == 200
    assert hd.get("docker-content-digest") == b.digest
    assert body == b.raw

    # A blob the agent never fetched cannot be served.
    st, hd, body = a.get("/v2/off/img/blobs/" + never["digest"])
    assert st in (503, 404), st
    codes = oci_error_codes(body)
    assert set(codes) & {"UNAVAILABLE", "BLOB_UNKNOWN"}, codes
    # Nor can a tag it never resolved.
    st, hd, body = a.get("/v2/off/img/manifests/never-seen",
                         headers={"Accept": ocibuild.MT_OCI_MANIFEST})
    assert st in (503, 404), st
    oci_error_codes(body)

    st, _, body = a.get("/_shoal/health")
    assert st == 200
    # Cached blobs still stream correctly.
    d = b.manifest["layers"][0]["digest"]
    st, _, body = a.get("/v2/off/img/blobs/" + d)
    assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == d

    # Back online: the registry is consulted again (a short back-off is
    # allowed) and the never-fetched blob arrives.
    registry.start()

    def fetched():
        st, _, body = a.get("/v2/off/img/blobs/" + never["digest"])
        return st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == never["digest"]
    wait_for(fetched, 15, "the blob once the registry is back", interval=0.5)


def test_stale_tag_only_within_tag_stale_max(registry, agent_factory, build):
    """A tag's last known answer is served while upstream is down only as long
    as tag-stale-max allows; the manifest by digest stays available."""
    b = build.image(layers=1, layer_size=4096)
    registry.push(b, "off/stale")
    a = agent_factory(registry.host, extra_args=["--upstream-retries", "0",
                                                 "--tag-stale-max", "3s"])
    path = "/v2/off/stale/manifests/" + b.tag
    accept = {"Accept": ocibuild.MT_OCI_MANIFEST}
    st, hd, _ = a.get(path, headers=accept)
    assert st == 200
    answered = time.monotonic()
    registry.stop()

    st, hd, body = a.get(path, headers=accept)
    assert time.monotonic() - answered < 3, "the machine was too slow to check inside the window"
    assert st == 200 and hd.get("docker-content-digest") == b.digest
    assert body == b.raw

    time.sleep(max(0.0, answered + 3.5 - time.monotonic()))
    st, _, body = a.get(path, headers=accept)
    assert st in (502, 503), st
    assert set(oci_error_codes(body)) & {"UNAVAILABLE", "MANIFEST_UNKNOWN"}, body
    assert "stale=refused" in a.logs() and "tag_stale_max_s=3" in a.logs()

    # By digest the manifest is content-addressed: no window applies.
    st, _, body = a.get("/v2/off/stale/manifests/" + b.digest, headers=accept)
    assert st == 200 and body == b.raw
