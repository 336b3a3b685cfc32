"""Range requests on blobs through shoal-agent: the REFERENCE.md table for
a 2048-byte blob, on a cold blob (the first request carries the Range while
nothing is cached) and on a warm one (served from the complete cache)."""

import hashlib
import os

import pytest

from conftest import oci_error_codes, wait_for

SIZE = 2048
# Range, status, Content-Length, Content-Range, (first, last) of the body.
TABLE = [
    ("bytes=500-1499", 206, 1000, "bytes 500-1499/2048", (500, 1499)),
    ("bytes=500-", 206, 1548, "bytes 500-2047/2048", (500, 2047)),
    ("bytes=-500", 206, 500, "bytes 1548-2047/2048", (1548, 2047)),
    ("bytes=2000-5000", 206, 48, "bytes 2000-2047/2048", (2000, 2047)),
    ("bytes=500-0", 416, None, "bytes */2048", None),
    ("bytes=5000-10000", 416, None, "bytes */2048", None),
]


@pytest.fixture
def blob(registry, build):
    d, desc = build.blob(SIZE)
    registry.push_blob(d, "range/blob", desc["digest"])
    with open(os.path.join(d, "blobs", "sha256", desc["digest"][7:]), "rb") as f:
        data = f.read()
    assert len(data) == SIZE
    return desc["digest"], data


def check(resp, row, data, digest):
    rng, status, clen, crange, span = row
    st, hd, body = resp
    assert st == status, "Range %s -> %d (want %d) %r" % (rng, st, status, body[:200])
    assert hd.get("content-range") == crange, (rng, hd)
    if status == 206:
        assert int(hd["content-length"]) == clen, (rng, hd)
        assert body == data[span[0]:span[1] + 1], rng
        assert hd.get("accept-ranges") == "bytes"
        assert hd.get("docker-content-digest") == digest
    else:
        # An unsatisfiable range is an error; if it has a JSON body, it is
        # an OCI error.
        if body and hd.get("content-type", "").startswith("application/json"):
            oci_error_codes(body)


def blob_cached(agent, digest):
    return os.path.exists(os.path.join(agent.data_dir, "blobs", "sha256", digest[7:]))


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_range_cold_then_warm(row, agent, blob):
    digest, data = blob
    path = "/v2/range/blob/blobs/" + digest
    assert not blob_cached(agent, digest)
    check(agent.get(path, headers={"Range": row[0]}), row, data, digest)
    assert agent.alive()

    # Fill the cache with a full GET, then ask again.
    st, hd, body = agent.get(path)
    assert st == 200 and body == data
    wait_for(lambda: blob_cached(agent, digest), 10, "blob in the cache")
    hits = agent.metric("shoal_cache_hits_total")
    check(agent.get(path, headers={"Range": row[0]}), row, data, digest)
    if row[1] == 206:
        assert agent.metric("shoal_cache_hits_total") > hits, "warm Range not served from cache"


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_multi_range_gives_whole_body(warm, agent, blob):
    digest, data = blob
    path = "/v2/range/blob/blobs/" + digest
    if warm:
        assert agent.get(path)[0] == 200
        wait_for(lambda: blob_cached(agent, digest), 10, "blob in the cache")
    st, hd, body = agent.get(path, headers={"Range": "bytes=0-9,100-199"})
    assert st == 200, st
    assert body == data
    assert int(hd["content-length"]) == SIZE
    assert "content-range" not in hd


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_blob_headers_get_and_head(warm, agent, blob):
    digest, data = blob
    path = "/v2/range/blob/blobs/" + digest
    if warm:
        assert agent.get(path)[0] == 200
        wait_for(lambda: blob_cached(agent, digest), 10, "blob in the cache")
    st, hd, body = agent.head(path)
    assert st == 200 and body == b""
    assert int(hd["content-length"]) == SIZE
    assert hd.get("docker-content-digest") == digest
    assert hd.get("etag") == '"%s"' % digest
    assert hd.get("accept-ranges") == "bytes"
    assert hd.get("content-type") == "application/octet-stream"
    st, hd, body = agent.get(path)
    assert st == 200
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    assert int(hd["content-length"]) == SIZE
    assert hd.get("docker-content-digest") == digest
    assert hd.get("etag") == '"%s"' % digest
    assert hd.get("accept-ranges") == "bytes"
    # HEAD with a Range answers like GET, without a body.
    st, hd, body = agent.head(path, headers={"Range": "bytes=10-19"})
    assert st == 206 and body == b""
    assert hd.get("content-range") == "bytes 10-19/2048"
    assert int(hd["content-length"]) == 10
