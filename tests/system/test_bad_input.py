"""Hostile and malformed requests get the documented OCI error, nothing
reaches the disk or the upstream, and the agent keeps serving."""

import hashlib
import socket
import time

import pytest

from conftest import oci_error_codes, raw_request

HEX = "a" * 64


@pytest.fixture
def setup(registry, agent_factory, build):
    b = build.image(layers=1, layer_size=1000)
    registry.push(b, "ok/img")
    # No unlisted upstreams: a bad host component must never become a URL.
    a = agent_factory(registry.host, extra_args=["--upstream-allow-unlisted=false",
                                                 "--header-timeout", "1s"])
    return a, b, registry


def raw_get(port, path, method="GET", extra=b""):
    return raw_request(port, b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n"
                       % (method.encode(), path.encode(), extra))


def healthy_and_pulls(a, b):
    st, _, body = raw_get(a.port, "/_shoal/health")
    assert st == 200, body
    st, hd, body = raw_get(a.port, "/v2/ok/img/manifests/" + b.tag,
                           extra=b"Accept: application/vnd.oci.image.manifest.v1+json\r\n")
    assert st == 200 and body == b.raw
    for d in b.blob_digests():
        st, _, body = raw_get(a.port, "/v2/ok/img/blobs/" + d)
        assert st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == d


def expect(a, path, status, code, method="GET", extra=b""):
    st, hd, body = raw_get(a.port, path, method, extra)
    assert st == status, "%s %s -> %d (want %d): %r" % (method, path, st, status, body[:300])
    assert hd.get("content-type", "").startswith("application/json"), (path, hd)
    codes = oci_error_codes(body)
    assert code in codes, "%s %s -> codes %s (want %s)" % (method, path, codes, code)


BAD_DIGESTS = [
    "sha256:" + "A" * 64,             # upper-case hex
    "sha256:" + "a" * 63,             # too short
    "sha256:" + "a" * 65,             # too long
    "sha256:" + "g" * 64,             # not hex
    "sha1:" + "a" * 40,               # not an accepted algorithm
    "sha256:",
    "sha256",
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_invalid_digest(setup, digest):
    a, b, _ = setup
    expect(a, "/v2/ok/img/blobs/" + digest, 400, "DIGEST_INVALID")
    healthy_and_pulls(a, b)


def test_invalid_digest_head_and_manifest(setup):
    a, b, _ = setup
    st, hd, body = raw_get(a.port, "/v2/ok/img/blobs/sha256:" + "A" * 64, method="HEAD")
    assert st == 400 and body == b""
    # A manifest reference with ':' is a digest and must be a valid one.
    expect(a, "/v2/ok/img/manifests/sha256:" + "A" * 64, 400, "DIGEST_INVALID")
    expect(a, "/v2/ok/img/manifests/sha1:" + "a" * 40, 400, "DIGEST_INVALID")
    healthy_and_pulls(a, b)


BAD_NAMES = [
    "/v2/Upper/img/manifests/latest",
    "/v2/ok/Img/manifests/latest",
    "/v2/ok/a..b/manifests/latest",
    "/v2/a..b/img/manifests/latest",
    "/v2/ok/-img/manifests/latest",
    "/v2/ok//img/manifests/latest",
    "/v2/ok/img_/manifests/latest",
    "/v2/" + "a" * 300 + "/manifests/latest",
]

TRAVERSAL = [
    "/v2/../../etc/passwd/blobs/sha256:" + HEX,
    "/v2/%2e%2e/x/manifests/latest",
    "/v2/%2E%2E/%2E%2E/etc/manifests/latest",
    "/v2/foo/../bar/manifests/latest",
    "/v2/foo/..%2fbar/manifests/latest",
    "/v2/foo%2f..%2f..%2fetc/manifests/latest",
    "/v2/ok/img/../../../etc/blobs/sha256:" + HEX,
]


@pytest.mark.parametrize("path", BAD_NAMES + TRAVERSAL)
def test_invalid_name_and_traversal(setup, path):
    a, b, reg = setup
    expect(a, path, 400, "NAME_INVALID")
    healthy_and_pulls(a, b)


BAD_TAGS = ["-bad", ".bad", "a" * 129, "t!g", "t%20g"]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_invalid_tag(setup, tag):
    a, b, _ = setup
    expect(a, "/v2/ok/img/manifests/" + tag, 400, "TAG_INVALID")
    healthy_and_pulls(a, b)


PUSHES = [
    ("POST", "/v2/ok/img/blobs/uploads/", b"Content-Length: 0\r\n"),
    ("PUT", "/v2/ok/img/manifests/latest",
     b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 2\r\n\r\n{}"),
    ("PATCH", "/v2/ok/img/blobs/uploads/0123-4567", b"Content-Length: 3\r\n\r\nabc"),
    ("DELETE", "/v2/ok/img/manifests/sha256:" + HEX, b""),
    ("DELETE", "/v2/ok/img/blobs/sha256:" + HEX, b""),
    ("PUT", "/v2/ok/img/blobs/uploads/0123?digest=sha256:" + HEX, b"Content-Length: 0\r\n"),
]


@pytest.mark.parametrize("method,path,extra", PUSHES, ids=[p[0] + p[1][:24] for p in PUSHES])
def test_push_is_unsupported(setup, method, path, extra):
    a, b, reg = setup
    # The body (if any) follows the head; raw_get adds the final CRLF, so
    # build the request by hand here.
    head, _, body = extra.partition(b"\r\n\r\n")
    req = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n%s" % (
        method.encode(), path.encode(), (head + b"\r\n") if head else b"", body)
    st, hd, resp = raw_request(a.port, req)
    assert st == 405, "%s %s -> %d %r" % (method, path, st, resp[:200])
    assert "UNSUPPORTED" in oci_error_codes(resp)
    healthy_and_pulls(a, b)
    # Nothing reached the registry: the manifest there is unchanged.
    st, hd, _ = raw_request(reg.port, b"HEAD /v2/ok/img/manifests/latest HTTP/1.1\r\nHost: x\r\n"
                            b"Accept: application/vnd.oci.image.manifest.v1+json\r\n"
                            b"Connection: close\r\n\r\n")
    assert st == 200 and hd.get("docker-content-digest") == b.digest


def test_oversized_header_is_431(setup):
    a, b, _ = setup
    big = b"X-Big: " + b"a" * (20 * 1024) + b"\r\n"
    st, hd, body = raw_get(a.port, "/v2/", extra=big)
    assert st == 431, st
    oci_error_codes(body)
    # Many moderately sized headers adding up past 16 KiB too.
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(20))
    st, hd, body = raw_get(a.port, "/v2/", extra=many)
    assert st == 431, st
    healthy_and_pulls(a, b)


def test_unknown_paths_are_404(setup):
    a, b, _ = setup
    for p in ("/nothing", "/v2/ok/img/unknown/thing", "/v3/", "/_shoal/nothing",
              "/v2/ok/img/blobs/", "/v2/ok/img/manifests/"):
        st, hd, body = raw_get(a.port, p)
        assert st in (404, 400), "%s -> %d" % (p, st)
        codes = oci_error_codes(body)
        if st == 404:
            assert set(codes) & {"NOT_FOUND", "NAME_UNKNOWN", "BLOB_UNKNOWN",
                                 "MANIFEST_UNKNOWN"}, (p, codes)
    expect(a, "/nothing", 404, "NOT_FOUND")
    expect(a, "/v2/ok/img/unknown/thing", 404, "NOT_FOUND")
    healthy_and_pulls(a, b)


def test_malformed_http_and_header_timeout(setup):
    a, b, _ = setup
    st, hd, body = raw_request(a.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert st == 400, st
    # Half a request head, then silence: 408 after --header-timeout (1s).
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    try:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        dt = time.monotonic() - t0
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert 0.5 <= dt <= 5, dt
    healthy_and_pulls(a, b)


def test_many_bad_requests_on_one_connection(setup):
    """Keep-alive: an error answer must not desynchronise the connection."""
    a, b, _ = setup
    reqs = b"".join(b"GET /v2/ok/img/blobs/sha256:%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"Z" * 64)
                    for _ in range(5))
    reqs += b"GET /_shoal/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    data = b""
    try:
        s.sendall(reqs)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.count(b"HTTP/1.1 400") == 5, data[:500]
    assert data.count(b"HTTP/1.1 200") == 1
    healthy_and_pulls(a, b)
