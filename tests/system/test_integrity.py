"""An upstream that serves bytes not matching the digest: the agent counts
the mismatch, never caches the bytes, and never hands them to a client as
a complete, successful answer."""

import hashlib
import http.client
import json
import os

import ocibuild
from conftest import http_request
from faultyregistry import blob_bytes, faulty_registry  # noqa: F401


def storage_blob(registry, digest):
    """Path of a blob's data file in docker-registry's filesystem storage."""
    h = digest[7:]
    return os.path.join(registry.storage, "docker", "registry", "v2", "blobs", "sha256",
                        h[:2], h, "data")


def corrupt(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


def get_body(port, path):
    """(status, bytes received, complete?) where complete means the body
    arrived in full per its framing, without a connection error."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = b""
    try:
        c.request("GET", path)
        r = c.getresponse()
        status = r.status
        try:
            while True:
                b = r.read(65536)
                if not b:
                    break
                data += b
            complete = True
        except (http.client.IncompleteRead, ConnectionError, OSError) as e:
            if isinstance(e, http.client.IncompleteRead):
                data += e.partial
            complete = False
        return status, data, complete
    finally:
        c.close()


def test_corrupt_blob_is_detected_and_not_cached(registry, agent, build):
    d, desc = build.blob(4 << 20)
    registry.push_blob(d, "integ/blob", desc["digest"])
    corrupt(storage_blob(registry, desc["digest"]))
    path = "/v2/integ/blob/blobs/" + desc["digest"]
    st, _, raw = http_request(registry.port, "GET", path)
    assert st == 200 and hashlib.sha256(raw).hexdigest() != desc["digest"][7:], \
        "the registry does not serve the corrupted bytes: test set-up broken"

    for attempt in range(2):
        status, data, complete = get_body(agent.port, path)
        good = "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
        assert not good, "corrupt upstream, yet the right bytes?"
        assert not (status == 200 and complete and len(data) == desc["size"]), \
            "attempt %d: corrupt blob delivered as a complete 200 (%d bytes)" % (
                attempt, len(data))
        assert not os.path.exists(os.path.join(agent.data_dir, "blobs", "sha256",
                                               desc["digest"][7:])), "corrupt blob cached"
    m = agent.metrics()
    assert m.get("shoal_digest_mismatches_total", 0) >= 1
    assert m.get("shoal_cache_hits_total", 0) == 0
    st, _, _ = agent.get("/_shoal/health")
    assert st == 200


def test_corrupt_manifest_by_digest_is_refused(registry, agent, build):
    b = build.image(layers=1, layer_size=1000)
    registry.push(b, "integ/img")
    # Still valid JSON, different bytes: the registry serves it as is.
    p = storage_blob(registry, b.digest)
    doc = json.loads(open(p, "rb").read())
    doc.setdefault("annotations", {})["evil"] = "yes"
    with open(p, "wb") as f:
        f.write(json.dumps(doc).encode())
    st, _, raw = http_request(registry.port, "GET", "/v2/integ/img/manifests/" + b.digest,
                              headers={"Accept": ocibuild.MT_OCI_MANIFEST})
    assert st == 200 and b"evil" in raw, "registry does not serve the altered manifest"
    st, hd, body = agent.get("/v2/integ/img/manifests/" + b.digest,
                             headers={"Accept": ocibuild.MT_OCI_MANIFEST})
    assert st != 200, "manifest with a wrong digest served: %r" % body[:200]
    assert agent.metrics().get("shoal_digest_mismatches_total", 0) >= 1
    st, _, _ = agent.get("/_shoal/health")
    assert st == 200


def test_cached_blob_not_served_through_another_repository(faulty_registry, agent_factory):
    """A cached blob is served only through a repository whose upstream
    holds it: naming a repository that lacks it gets the upstream's 404 and
    no byte of the blob, cached or not, whole or as a Range."""
    reg = faulty_registry
    data = blob_bytes(1 << 20, "integ/scope")
    digest = reg.add_blob("integ/private", data)
    reg.add_blob("integ/public", b"something else")
    a = agent_factory(reg.host)
    st, _, body = a.get("/v2/integ/private/blobs/" + digest)
    assert st == 200 and body == data
    assert os.path.exists(os.path.join(a.data_dir, "blobs", "sha256", digest[7:]))
    for headers in ({}, {"Range": "bytes=0-99"}):
        st, _, body = a.get("/v2/integ/public/blobs/" + digest, headers=headers)
        assert st == 404, (st, body[:200])
        assert data[:64] not in body
    st, _, _ = a.head("/v2/integ/public/blobs/" + digest)
    assert st == 404
    heads = reg.requests("HEAD", "/v2/integ/public/blobs/")
    assert heads, "the agent never asked upstream whether the repository holds the blob"
