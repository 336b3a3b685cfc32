"""An upstream registry with htpasswd Basic auth: the agent uses the
credentials of its "upstreams" entry; without them clients get 401."""

import ocibuild
from conftest import layout_digests, oci_error_codes, skopeo_copy

USER, PASSWORD = "shoal", "s3cret-Pa55"
ACCEPT = {"Accept": ocibuild.MT_OCI_MANIFEST}


def test_credentials_in_config(registry_factory, agent_factory, build, tmp_path):
    reg = registry_factory(auth=(USER, PASSWORD))
    b = build.image(layers=2, layer_size=20000)
    reg.push(b, "auth/img")
    a = agent_factory(reg.host, username=USER, password=PASSWORD)
    out = str(tmp_path / "out")
    # The client itself sends no credentials to the agent.
    r = skopeo_copy("docker://%s/auth/img:%s" % (a.host, b.tag), "oci:%s:%s" % (out, b.tag))
    assert r.returncode == 0, r.stderr
    assert layout_digests(out, b.tag) == (b.digest, b.blob_digests())


def test_password_file(registry_factory, agent_factory, build, tmp_path):
    reg = registry_factory(auth=(USER, PASSWORD))
    b = build.ormb(size=10000)
    reg.push(b, "auth/model")
    pf = tmp_path / "password"
    pf.write_text(PASSWORD)
    pf.chmod(0o600)
    a = agent_factory(reg.host, username=USER, password_file=str(pf))
    st, hd, body = a.get("/v2/auth/model/manifests/" + b.tag, headers=ACCEPT)
    assert st == 200, body
    assert body == b.raw and hd.get("docker-content-digest") == b.digest
    out = str(tmp_path / "out")
    r = skopeo_copy("docker://%s/auth/model:%s" % (a.host, b.tag), "oci:%s:%s" % (out, b.tag))
    assert r.returncode == 0, r.stderr
    assert layout_digests(out, b.tag) == (b.digest, b.blob_digests())


def test_without_or_with_wrong_credentials_is_401(registry_factory, agent_factory, build):
    reg = registry_factory(auth=(USER, PASSWORD))
    b = build.image(layers=1, layer_size=1000)
    reg.push(b, "auth/img")
    for kw in ({}, {"username": USER, "password": "wrong"}):
        a = agent_factory(reg.host, **kw)
        for path in ("/v2/auth/img/manifests/" + b.tag,
                     "/v2/auth/img/blobs/" + b.manifest["layers"][0]["digest"]):
            st, hd, body = a.get(path, headers=ACCEPT)
            assert st == 401, "%s with %s -> %d" % (path, kw, st)
            assert "UNAUTHORIZED" in oci_error_codes(body)
        st, _, _ = a.get("/_shoal/health")
        assert st == 200
