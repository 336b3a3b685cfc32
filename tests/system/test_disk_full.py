"""A full disk gives the client a 503 error JSON and leaves no corrupt entry:
a blob that cannot fit (on a small tmpfs data dir, or over --cache-max-bytes)
is refused with 503 UNAVAILABLE before any body is sent, nothing of it stays
under blobs/ or partial/, the space comes back, and the agent keeps serving
blobs that do fit."""

import hashlib
import os
import subprocess

import pytest

from conftest import need_root, need_tool, oci_error_codes, unavailable, wait_for

MIB = 1 << 20
TMPFS_SIZE = 24 * MIB


@pytest.fixture
def tmpfs_mount():
    """mount(dir, size) mounts a tmpfs there. Set up before agent_factory, so
    the unmount runs after every agent has stopped, even when a test fails."""
    need_root("mounting a small tmpfs as the agent's data dir")
    mount_bin = need_tool("mount")
    mounted = []

    def mount(path, size):
        os.makedirs(path, exist_ok=True)
        r = subprocess.run([mount_bin, "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", path],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            unavailable("cannot mount a tmpfs here: %s" % r.stderr.strip(),
                        "run as root where mount(2) is allowed, as CI does")
        mounted.append(path)
        return path
    yield mount
    for path in reversed(mounted):
        r = subprocess.run(["umount", path], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            # Something still holds it (a process that outlived its fixture):
            # detach it anyway, so no mount outlives the test run.
            subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


def files_for(data_dir, digest):
    """Every path under the data dir whose name mentions the digest's hex."""
    hexd = digest.split(":", 1)[1]
    out = []
    for d, _, files in os.walk(data_dir):
        for f in files:
            if hexd in f:
                out.append(os.path.join(d, f))
    return out


def used_bytes(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def assert_refused_cleanly(agent, repo, digest):
    path = "/v2/%s/blobs/%s" % (repo, digest)
    for _ in range(2):  # a second try fails the same way: nothing half-stored
        st, hd, body = agent.get(path)
        assert st == 503, "GET big blob -> %d (%d body bytes)\nagent log:\n%s" % (
            st, len(body), agent.logs()[-3000:])
        assert "UNAVAILABLE" in oci_error_codes(body), body[:300]
        assert hd.get("content-type", "").startswith("application/json"), hd
        assert files_for(agent.data_dir, digest) == [], files_for(agent.data_dir, digest)
    st, _, body = agent.get("/_shoal/health")
    assert st == 200 and agent.alive(), body


def assert_pulls(agent, repo, digest, size):
    st, hd, body = agent.get("/v2/%s/blobs/%s" % (repo, digest))
    assert st == 200, "GET small blob -> %d %r" % (st, body[:300])
    assert len(body) == size and "sha256:" + hashlib.sha256(body).hexdigest() == digest
    assert hd.get("docker-content-digest") == digest
    hexd = digest.split(":", 1)[1]
    wait_for(lambda: os.path.exists(os.path.join(agent.data_dir, "blobs", "sha256", hexd)),
             10, "small blob stored in the cache")


def test_full_tmpfs_data_dir_is_503(tmpfs_mount, registry, agent_factory, build):
    repo = "disk/full"
    big_dir, big = build.blob(64 * MIB)
    small_dir, small = build.blob(1 * MIB)
    registry.push_blob(big_dir, repo, big["digest"])
    registry.push_blob(small_dir, repo, small["digest"])

    a = agent_factory(registry.host, start=False)
    tmpfs_mount(a.data_dir, TMPFS_SIZE)
    a.start()
    base = used_bytes(a.data_dir)

    assert_refused_cleanly(a, repo, big["digest"])
    # No unlinked-but-open file or leftover allocation keeps the space.
    wait_for(lambda: used_bytes(a.data_dir) - base < 2 * MIB, 10,
             "tmpfs space back after the refused blob (used %d bytes over the start)"
             % (used_bytes(a.data_dir) - base))
    assert_pulls(a, repo, small["digest"], small["size"])
    assert a.metric("shoal_digest_mismatches_total") == 0


def test_blob_over_cache_cap_is_503(registry, agent_factory, build):
    repo = "disk/cap"
    big_dir, big = build.blob(16 * MIB)
    small_dir, small = build.blob(1 * MIB)
    registry.push_blob(big_dir, repo, big["digest"])
    registry.push_blob(small_dir, repo, small["digest"])

    a = agent_factory(registry.host, extra_args=["--cache-max-bytes", "8MiB"])
    assert_refused_cleanly(a, repo, big["digest"])
    assert_pulls(a, repo, small["digest"], small["size"])
    assert a.metric("shoal_cache_bytes") <= 8 * MIB


def test_full_disk_evicts_least_recently_used(tmpfs_mount, registry, agent_factory, build):
    """The disk fills before cache-max-bytes (20 GiB by default, a 24 MiB
    disk here): storing the next blob evicts the least recently used one and
    tries once more, instead of answering 503."""
    repo = "disk/lru"
    blobs = []
    for _ in range(3):
        d, b = build.blob(9 * MIB)
        registry.push_blob(d, repo, b["digest"])
        blobs.append(b)
    a = agent_factory(registry.host, start=False)
    tmpfs_mount(a.data_dir, TMPFS_SIZE)
    a.start()
    assert_pulls(a, repo, blobs[0]["digest"], blobs[0]["size"])
    assert_pulls(a, repo, blobs[1]["digest"], blobs[1]["size"])
    # 18 MiB in: the third does not fit beside them.
    assert_pulls(a, repo, blobs[2]["digest"], blobs[2]["size"])
    assert files_for(a.data_dir, blobs[0]["digest"]) == []
    assert files_for(a.data_dir, blobs[1]["digest"]) != []
    assert "op=disk-full" in a.logs()
    assert a.metric("shoal_digest_mismatches_total") == 0
