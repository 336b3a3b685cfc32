"""After an unclean stop (kill -9), cached blobs are checked before they are
served again: an intact one is verified once (off the loop) and served, a
corrupt one is deleted and fetched again from upstream, so no client gets
its wrong bytes, whole or as a Range. After a clean stop nothing is
checked."""

import hashlib
import os

from conftest import wait_for


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def blob_file(agent, digest):
    return os.path.join(agent.data_dir, "blobs", "sha256", digest.split(":", 1)[1])


def test_kill9_then_check_before_serving(registry, agent_factory, build):
    repo = "unclean/img"
    blobs = []
    for _ in range(2):
        d, b = build.blob(2 * 1024 * 1024 + 123)
        registry.push_blob(d, repo, b["digest"])
        blobs.append(b)
    good, bad = blobs
    a = agent_factory(registry.host)
    for b in blobs:
        st, _, body = a.get("/v2/%s/blobs/%s" % (repo, b["digest"]))
        assert st == 200 and sha(body) == b["digest"]
        wait_for(lambda: os.path.exists(blob_file(a, b["digest"])), 10, "blob cached")

    a.crashed_ok = True
    a.kill9()
    # The crash "tore" one blob: a byte in its middle differs.
    with open(blob_file(a, bad["digest"]), "r+b") as f:
        f.seek(1 << 20)
        c = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([c[0] ^ 0x5a]))
    a.start()
    assert "clean_stop=no to_verify=2" in a.logs()
    assert a.metric("shoal_cache_unverified_blobs") == 2

    up_before = a.metric("shoal_upstream_blob_fetches_total")
    st, _, body = a.get("/v2/%s/blobs/%s" % (repo, good["digest"]))
    assert st == 200 and sha(body) == good["digest"]
    assert a.metric("shoal_cache_verified_total") == 1
    assert a.metric("shoal_upstream_blob_fetches_total") == up_before  # served from disk

    # The torn one: never served as it is, neither whole nor in part.
    st, hd, body = a.get("/v2/%s/blobs/%s" % (repo, bad["digest"]),
                         headers={"Range": "bytes=1048000-1049000"})
    with open(os.path.join(registry.storage, "docker", "registry", "v2", "blobs", "sha256",
                           bad["digest"][7:9], bad["digest"][7:], "data"), "rb") as f:
        f.seek(1048000)
        want = f.read(1001)
    assert st == 206 and body == want, (st, len(body))
    st, _, body = a.get("/v2/%s/blobs/%s" % (repo, bad["digest"]))
    assert st == 200 and sha(body) == bad["digest"]
    assert a.metric("shoal_cache_corrupt_total") == 1
    assert a.metric("shoal_cache_unverified_blobs") == 0
    assert "result=corrupt action=deleted" in a.logs()

    # A clean stop: the next start checks nothing.
    assert a.stop() == 0
    a.start()
    assert a.logs().count("clean_stop=yes to_verify=0") == 1
    for b in blobs:
        st, _, body = a.get("/v2/%s/blobs/%s" % (repo, b["digest"]))
        assert st == 200 and sha(body) == b["digest"]
    assert a.metric("shoal_cache_verified_total") == 0
